//! Peers that never authenticate, through a real `fanlog serve` with short
//! timeouts: silent TCP sockets, a QUIC connection that opens no stream,
//! idle HTTP connections, slow headers and a chunked body that never ends
//! are all closed, so they cannot hold every connection slot; and before its
//! Hello a binary peer cannot make the broker reserve a large frame buffer.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fanlog::protocol::frame::{self, ErrorCode, Frame};

const SLOTS: usize = 20;

fn start(dir: &Path) -> common::ServeProcess {
    let cfg = dir.join("fanlog.toml");
    std::fs::write(
        &cfg,
        format!(
            "[limits]\nmax_connections = {SLOTS}\nhello_timeout = \"1s\"\n\
             header_timeout = \"1s\"\nbody_timeout = \"1s\"\n"
        ),
    )
    .unwrap();
    common::ServeProcess::start(
        &dir.join("data"),
        &["--http", "127.0.0.1:0", "--config", cfg.to_str().unwrap()],
    )
}

/// Waits until the server closes `s` (EOF or reset); returns how long it
/// took, or panics after `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Duration {
    let t = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return t.elapsed(),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return t.elapsed(),
            Err(e) => panic!("still open after {limit:?}: {e}"),
        }
    }
}

#[test]
fn silent_and_slow_peers_are_closed_and_free_their_slots() {
    let dir = tempfile::tempdir().unwrap();
    let serve = start(dir.path());
    let http = serve.http.clone().unwrap();

    // Every slot of the binary listener taken by a silent socket, then
    // every slot of the HTTP listener: each is closed after the timeout.
    let mut silent: Vec<TcpStream> = (0..SLOTS)
        .map(|_| TcpStream::connect(&serve.tcp).unwrap())
        .collect();
    let mut idle_http: Vec<TcpStream> = (0..SLOTS)
        .map(|_| TcpStream::connect(&http).unwrap())
        .collect();
    for s in silent.iter_mut().chain(idle_http.iter_mut()) {
        let took = closed_within(s, Duration::from_secs(5));
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
    // The slots are free again: a real client and a real request get in.
    let rt = common::runtime();
    rt.block_on(async {
        let c = fanlog::client::Client::connect(&serve.tcp).await.unwrap();
        c.publish("t", fanlog::protocol::Message::new("in"))
            .await
            .unwrap();
        let r = reqwest::get(format!("http://{http}/topics")).await.unwrap();
        assert_eq!(r.status(), 200);
    });

    // Headers that trickle in: closed.
    let mut slow = TcpStream::connect(&http).unwrap();
    slow.write_all(b"GET /topics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    closed_within(&mut slow, Duration::from_secs(5));

    // A chunked body that never ends: 408, then closed.
    let mut trickle = TcpStream::connect(&http).unwrap();
    trickle
        .write_all(
            b"POST /topics/t/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .unwrap();
    trickle
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    while started.elapsed() < Duration::from_secs(5) {
        let _ = trickle.write_all(b"1\r\nx\r\n");
        let mut buf = [0u8; 1024];
        match trickle.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if answer.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");

    // Before its Hello, a peer that announces a 15 MiB frame is refused at
    // once (nothing is reserved for it), with an error frame.
    let mut big = TcpStream::connect(&serve.tcp).unwrap();
    let mut head = Vec::new();
    head.extend_from_slice(&(15u32 << 20).to_le_bytes());
    head.push(0x01);
    head.extend_from_slice(&1u32.to_le_bytes());
    big.write_all(&head).unwrap();
    big.write_all(&[0u8; 1024]).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reply = Vec::new();
    let _ = big.read_to_end(&mut reply);
    match frame::decode(&reply, 1 << 20) {
        Ok(Some((_, Frame::Error { code, message }, _))) => {
            assert_eq!(code, ErrorCode::FrameTooLarge, "{message}");
        }
        other => panic!("{other:?}"),
    }

    // QUIC: a connection that opens no stream is closed by the server.
    rt.block_on(quic_without_stream(
        serve.quic.as_deref().unwrap(),
        &dir.path().join("data/tls/cert.pem"),
    ));
    assert!(serve.terminate().success());
}

async fn quic_without_stream(addr: &str, ca: &Path) {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read_to_string(ca).unwrap();
    let der = base64_der(&pem);
    roots
        .add(rustls::pki_types::CertificateDer::from(der))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    crypto.alpn_protocols = vec![fanlog::client::ALPN.to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap(),
    ));
    let mut t = quinn::TransportConfig::default();
    // Keep-alives: the connection stays alive at the QUIC level, so only
    // the broker's own deadline can close it.
    t.keep_alive_interval(Some(Duration::from_millis(300)));
    config.transport_config(Arc::new(t));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(config);
    let conn = endpoint
        .connect(addr.parse().unwrap(), "localhost")
        .unwrap()
        .await
        .unwrap();
    let why = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .expect("closed by the broker in time");
    assert!(
        matches!(why, quinn::ConnectionError::ApplicationClosed(_)),
        "{why:?}"
    );
}

/// The DER bytes of a PEM certificate.
fn base64_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}
