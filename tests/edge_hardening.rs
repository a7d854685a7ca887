//! The HTTP edge against hostile browsers and clients, on a real `fanlog
//! serve`: WebSocket frames over the message limit are refused from their
//! header (not buffered), the session cookie is refused to other origins
//! and is `Secure` over HTTPS, a ticket opens a stream and nothing else,
//! WebSub links name the configured public URL (never the request's Host),
//! and consumer groups per topic are bounded.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

const CONFIG: &str = r#"
[limits]
max_groups_per_topic = 5

[[auth.tokens]]
token = "user"
publish = ["*"]
subscribe = ["*"]
admin = true
"#;

fn start(dir: &Path, extra: &[&str]) -> common::ServeProcess {
    let cfg = dir.join("fanlog.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let mut args = vec![
        "--http",
        "127.0.0.1:0",
        "--quic",
        "off",
        "--config",
        cfg.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    common::ServeProcess::start(&dir.join("data"), &args)
}

/// A session cookie for the token, as `name=value`.
async fn session(c: &reqwest::Client, base: &str) -> (String, String) {
    let r = c
        .post(format!("{base}/session"))
        .bearer_auth("user")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    (set.split(';').next().unwrap().to_owned(), set)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_refuses_what_browsers_and_clients_must_not_do() {
    let dir = tempfile::tempdir().unwrap();
    let serve = start(dir.path(), &["--https", "127.0.0.1:0"]);
    let http = serve.http.clone().unwrap();
    let base = format!("http://{http}");
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{base}/topics/t/messages"))
        .bearer_auth("user")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);

    // The cookie: same origin works, another origin is refused (a form
    // POST and a WebSocket upgrade from an attacker's page).
    let (cookie, set) = session(&c, &base).await;
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let post = |origin: &'static str| {
        c.post(format!("{base}/topics/t/messages"))
            .header("cookie", cookie.clone())
            .header("origin", origin)
            .body("via cookie")
    };
    assert_eq!(
        post("http://evil.example").send().await.unwrap().status(),
        403
    );
    let same = format!("http://{http}");
    let r = c
        .post(format!("{base}/topics/t/messages"))
        .header("cookie", cookie.clone())
        .header("origin", same)
        .body("via cookie")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c
        .post(format!("{base}/topics/t/messages"))
        .header("cookie", cookie.clone())
        .header("sec-fetch-site", "cross-site")
        .body("via cookie")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://{http}/topics/t/ws")
            .into_client_request()
            .unwrap();
        req.headers_mut().insert("cookie", cookie.parse().unwrap());
        req.headers_mut()
            .insert("origin", "http://evil.example".parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status().as_u16(), 403)
            }
            other => panic!("a cross-origin WebSocket with the cookie: {other:?}"),
        }
    }

    // Over HTTPS the cookie is Secure.
    let pem = std::fs::read(dir.path().join("data/tls/cert.pem")).unwrap();
    let tls = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let (_, set) = session(&tls, &format!("https://{}", serve.listener("https"))).await;
    assert!(set.contains("; Secure"), "{set}");

    // A ticket opens a stream, and nothing else.
    for (path, want) in [
        ("/metrics", 401),
        ("/topics/t/messages", 401),
        ("/topics/t/poll?after=0&timeout=0", 200),
    ] {
        let t = common::send_json(c.post(format!("{base}/tickets")).bearer_auth("user")).await;
        let t = t["ticket"].as_str().unwrap();
        let sep = if path.contains('?') { '&' } else { '?' };
        let r = c
            .get(format!("{base}{path}{sep}ticket={t}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "{path}");
    }

    // WebSub discovery names this broker's public URL (by default its HTTPS
    // listener when it has one), whatever Host says.
    let r = c
        .get(format!("http://{http}/topics/t"))
        .bearer_auth("user")
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    assert!(
        link.contains(&format!("<https://{}/websub>", serve.listener("https")))
            && !link.contains("evil"),
        "{link}"
    );

    // Consumer groups are bounded per topic.
    for g in 0..5 {
        let r = c
            .put(format!("http://{http}/topics/t/groups/g{g}"))
            .bearer_auth("user")
            .json(&json!({"seq": 0}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "group {g}: {}", r.status());
    }
    let r = c
        .put(format!("http://{http}/topics/t/groups/g5"))
        .bearer_auth("user")
        .json(&json!({"seq": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("limit of 5 consumer groups")
    );

    // A WebSocket frame announced over the message limit is refused from
    // its header, before its bytes are read.
    ws_big_frame_is_refused_at_once(&http);
    assert!(serve.terminate().success());
}

fn ws_big_frame_is_refused_at_once(http: &str) {
    let mut s = TcpStream::connect(http).unwrap();
    write!(
        s,
        "GET /topics/t/ws HTTP/1.1\r\nHost: {http}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Authorization: Bearer user\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // A masked binary frame of 15 MiB, of which 64 KiB are sent.
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&(15u64 << 20).to_be_bytes());
    frame.extend_from_slice(&[1, 2, 3, 4]);
    s.write_all(&frame).unwrap();
    let _ = s.write_all(&vec![0u8; 64 << 10]);
    // The broker closes (a close frame, then EOF) without waiting for the
    // rest of the frame.
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let mut got = Vec::new();
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("not closed within 5 s: {e}; read {got:?}"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // If a close frame made it out before the socket closed, it says 1009
    // (message too big).
    if let Some(at) = got.windows(2).position(|w| w[0] == 0x88)
        && got.len() >= at + 4
    {
        assert_eq!(&got[at + 2..at + 4], &1009u16.to_be_bytes());
    }
}
