//! TLS over TCP for the binary protocol (`--tls`) and HTTPS (`--https`) on a
//! real `fanlog serve`, with the certificate QUIC uses.

mod common;

use std::time::Duration;

use fanlog::client::{Client, ConnectOptions, Event, QuicOptions, StartFrom, Transport};
use fanlog::protocol::Message;
use futures_util::StreamExt;

fn tls(addr: &str, ca: &std::path::Path) -> ConnectOptions {
    let mut o = ConnectOptions::new(addr);
    o.transport = Transport::Tls(QuicOptions {
        ca: Some(ca.to_owned()),
        ..QuicOptions::default()
    });
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_protocol_and_http_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let serve = common::ServeProcess::start(
        dir.path(),
        &[
            "--tls",
            "127.0.0.1:0",
            "--https",
            "127.0.0.1:0",
            "--quic",
            "off",
        ],
    );
    let (tls_addr, https_addr) = (serve.listener("tls"), serve.listener("https"));
    let cert = dir.path().join("tls/cert.pem");

    // Publish and subscribe over TLS.
    let c = Client::connect_with(tls(&tls_addr, &cert)).await.unwrap();
    let mut sub = c.subscribe("secure", StartFrom::Earliest).await.unwrap();
    for i in 0..20 {
        assert_eq!(
            c.publish("secure", Message::new(format!("m{i}")))
                .await
                .unwrap(),
            i
        );
    }
    for i in 0..20u64 {
        match tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .unwrap()
        {
            Some(Ok(Event::Record(d))) => {
                assert_eq!((d.seq(), d.payload()), (i, format!("m{i}").as_bytes()));
            }
            other => panic!("{other:?}"),
        }
    }

    // A certificate the client does not trust, and a client without TLS.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let other_pem = dir.path().join("other.pem");
    std::fs::write(&other_pem, other.cert.pem()).unwrap();
    let e = Client::connect_with(tls(&tls_addr, &other_pem))
        .await
        .expect_err("untrusted certificate");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    let mut plain = ConnectOptions::new(&tls_addr);
    plain.connect_timeout = Duration::from_secs(5);
    assert!(Client::connect_with(plain).await.is_err());

    // The CLI over TLS.
    let out = common::fanlog(&[
        "pub",
        "secure",
        "from-cli",
        "--tls",
        "--server",
        &tls_addr,
        "--ca",
        cert.to_str().unwrap(),
    ]);
    assert_eq!(out.trim(), "20");

    // HTTPS: REST and Server-Sent Events.
    let pem = std::fs::read(&cert).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let base = format!("https://{https_addr}");
    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = http
        .post(format!("{base}/topics/secure/messages"))
        .body("over https")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let mut events = http
        .get(format!("{base}/topics/secure/events?from=21"))
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let mut text = String::new();
    while !text.contains("data: over https") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("id: 21"), "{text}");
    // Plain HTTP to the HTTPS port gets nothing useful.
    assert!(
        reqwest::get(format!("http://{https_addr}/healthz"))
            .await
            .is_err()
    );
    assert!(serve.terminate().success());
}
