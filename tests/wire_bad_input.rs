//! Bad input on the binary protocol, on raw TCP sockets: random bytes, a
//! frame claiming 4 GiB, an unknown frame kind, a truncated frame, requests
//! before the handshake, a publish to an invalid topic, a message over the
//! size limit. Each gets an Error frame or a closed connection (never a
//! crash), while another client keeps publishing and receiving without loss.

mod common;

use std::time::Duration;

use fanlog::Durability;
use fanlog::client::{Client, Event, StartFrom};
use fanlog::protocol::Message;
use fanlog::protocol::frame::{self, ErrorCode, Frame, WireMessage};
use futures_util::StreamExt;
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads frames until the peer closes (or 5 s pass); returns the Error codes seen.
async fn errors_until_close(s: &mut TcpStream) -> (Vec<ErrorCode>, bool) {
    let mut buf = Vec::new();
    let mut codes = Vec::new();
    let mut tmp = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => buf.extend_from_slice(&tmp[..n]),
            Err(_) => break false,
        }
        while let Ok(Some((_, f, used))) = frame::decode(&buf, frame::DEFAULT_MAX_FRAME) {
            if let Frame::Error { code, .. } = f {
                codes.push(code);
            }
            buf.drain(..used);
        }
    };
    (codes, closed)
}

fn hello() -> Vec<u8> {
    let mut b = Vec::new();
    Frame::Hello {
        version: frame::VERSION,
        token: "",
        client: "raw",
    }
    .encode(1, &mut b)
    .unwrap();
    b
}

/// Sends `bytes` on a fresh connection (after a Hello when `greet`).
async fn send_raw(addr: std::net::SocketAddr, greet: bool, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    if greet {
        s.write_all(&hello()).await.unwrap();
    }
    s.write_all(bytes).await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bytes_get_errors_and_others_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::TestServer::start(
        dir.path(),
        &common::config(Durability::Interval(Duration::from_millis(10)), 1 << 20),
    )
    .await;
    let addr = server.tcp;

    // A well-behaved client publishing and receiving all along.
    let good = Client::connect(&addr.to_string()).await.unwrap();
    let mut sub = good.subscribe("good", StartFrom::Earliest).await.unwrap();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let publisher = {
        let good = good.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !*stop_rx.borrow_and_update() {
                assert_eq!(
                    good.publish("good", Message::new(format!("g{n}")))
                        .await
                        .unwrap(),
                    n
                );
                n += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            n
        })
    };

    // Random bytes, several times.
    for _ in 0..5 {
        let mut junk = vec![0u8; 1024];
        rand::rng().fill_bytes(&mut junk);
        let mut s = send_raw(addr, false, &junk).await;
        let (_, closed) = errors_until_close(&mut s).await;
        assert!(closed, "random bytes: connection closed");
    }
    // A frame claiming 4 GiB.
    let mut s = send_raw(addr, true, &[0xFF, 0xFF, 0xFF, 0xFF, 0x02, 0, 0, 0, 0]).await;
    let (codes, closed) = errors_until_close(&mut s).await;
    assert!(
        closed && codes.contains(&ErrorCode::FrameTooLarge),
        "4 GiB claim: {codes:?}"
    );
    // An unknown frame kind.
    let mut s = send_raw(addr, true, &[5, 0, 0, 0, 0x77, 0, 0, 0, 0]).await;
    let (codes, closed) = errors_until_close(&mut s).await;
    assert!(
        closed && codes.contains(&ErrorCode::UnknownFrame),
        "unknown kind: {codes:?}"
    );
    // A request before the handshake.
    let mut ping = Vec::new();
    Frame::Ping { nonce: 1 }.encode(2, &mut ping).unwrap();
    let mut s = send_raw(addr, false, &ping).await;
    let (codes, closed) = errors_until_close(&mut s).await;
    assert!(
        closed && codes.contains(&ErrorCode::HandshakeRequired),
        "no hello: {codes:?}"
    );
    // A frame whose body does not match its kind.
    let mut bad = Vec::new();
    let at = frame::begin(&mut bad, frame::Kind::Subscribe, 3);
    bad.extend_from_slice(&[1, 2, 3]);
    frame::finish(&mut bad, at).unwrap();
    let mut s = send_raw(addr, true, &bad).await;
    let (codes, closed) = errors_until_close(&mut s).await;
    assert!(
        closed && codes.contains(&ErrorCode::BadFrame),
        "malformed body: {codes:?}"
    );
    // A truncated frame, then the client vanishes mid-frame.
    let mut publish = Vec::new();
    let msg = WireMessage {
        producer: None,
        key: b"",
        meta: b"",
        payload: b"half",
    };
    Frame::Publish {
        topic: "good",
        messages: vec![msg],
    }
    .encode(4, &mut publish)
    .unwrap();
    let s = send_raw(addr, true, &publish[..publish.len() - 3]).await;
    drop(s);

    // Request-level errors keep the connection open.
    let mut reqs = Vec::new();
    Frame::Publish {
        topic: "../etc",
        messages: vec![msg],
    }
    .encode(5, &mut reqs)
    .unwrap();
    let big = vec![7u8; (1 << 20) + 1];
    let big_msg = WireMessage {
        producer: None,
        key: b"",
        meta: b"",
        payload: &big,
    };
    Frame::Publish {
        topic: "good2",
        messages: vec![big_msg],
    }
    .encode(6, &mut reqs)
    .unwrap();
    Frame::Ping { nonce: 42 }.encode(7, &mut reqs).unwrap();
    let mut s = send_raw(addr, true, &reqs).await;
    let mut buf = Vec::new();
    let mut answers = Vec::new();
    while answers.len() < 4 {
        let mut tmp = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut tmp))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection stayed open");
        buf.extend_from_slice(&tmp[..n]);
        while let Ok(Some((id, f, used))) = frame::decode(&buf, frame::DEFAULT_MAX_FRAME) {
            answers.push(match f {
                Frame::Error { code, .. } => (id, Some(code)),
                _ => (id, None),
            });
            buf.drain(..used);
        }
    }
    assert_eq!(
        answers,
        [
            (1, None),
            (5, Some(ErrorCode::InvalidName)),
            (6, Some(ErrorCode::MessageTooLarge)),
            (7, None)
        ]
    );
    assert!(
        matches!(
            server.broker.topic_info("good2"),
            Err(fanlog::broker::BrokerError::TopicNotFound(_))
        ),
        "nothing written for the oversized message"
    );

    // The good client lost nothing.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop_tx.send(true).unwrap();
    let n = publisher.await.unwrap();
    assert!(n > 10, "the good client kept publishing: {n}");
    for want in 0..n {
        match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
            Ok(Some(Ok(Event::Record(d)))) => assert_eq!(
                (d.seq(), d.payload()),
                (want, format!("g{want}").as_bytes())
            ),
            other => panic!("good subscriber at {want}: {other:?}"),
        }
    }
    drop(sub);
    server.stop().await;
}

/// Reads frames until `n` have come (or 5 s pass).
async fn frames(s: &mut TcpStream, n: usize) -> Vec<(u32, String, Option<u16>)> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut tmp = [0u8; 4096];
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(k)) => buf.extend_from_slice(&tmp[..k]),
        }
        while let Ok(Some((id, f, used))) = frame::decode(&buf, frame::DEFAULT_MAX_FRAME) {
            let version = match &f {
                Frame::HelloOk { version, .. } => Some(*version),
                Frame::Error { code, .. } => Some(code.to_u16()),
                _ => None,
            };
            out.push((id, format!("{:?}", f.kind()), version));
            buf.drain(..used);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_version_is_negotiated_and_v2_frames_need_v2() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        common::TestServer::start(dir.path(), &common::config(Durability::Never, 1 << 20)).await;
    let addr: std::net::SocketAddr = server.tcp_options().addr.parse().unwrap();
    let join = |id| {
        let mut b = Vec::new();
        Frame::Join {
            member: 1,
            topic: "jobs",
            group: "g",
            dead_letter: "",
            options: None,
        }
        .encode(id, &mut b)
        .unwrap();
        b
    };
    for (version, hello_answer, join_answer) in [
        // A version 1 client: answered in version 1; the v2 frames are
        // refused, the session goes on.
        (
            1u16,
            ("HelloOk", Some(1)),
            ("Error", Some(ErrorCode::NeedsVersion.to_u16())),
        ),
        (2, ("HelloOk", Some(2)), ("Joined", None)),
        // A later client than this broker: answered in the broker's.
        (7, ("HelloOk", Some(2)), ("Joined", None)),
        (
            0,
            ("Error", Some(ErrorCode::UnsupportedVersion.to_u16())),
            ("", None),
        ),
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut b = Vec::new();
        Frame::Hello {
            version,
            token: "",
            client: "raw",
        }
        .encode(1, &mut b)
        .unwrap();
        b.extend(join(2));
        s.write_all(&b).await.unwrap();
        let got = frames(&mut s, 2).await;
        assert_eq!(
            (got[0].1.as_str(), got[0].2),
            hello_answer,
            "version {version}: {got:?}"
        );
        if version > 0 {
            assert_eq!(got[1].0, 2, "the Join's answer");
            assert_eq!(
                (got[1].1.as_str(), got[1].2),
                join_answer,
                "version {version}"
            );
        }
    }
    server.stop().await;
}
