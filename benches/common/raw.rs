//! Bare transports with fanlog's settings, as baselines: bytes over one
//! quinn stream with fanlog's QUIC server and client configuration (its
//! certificate, windows and MTU), no broker.

#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Moves `total` bytes in 64 KiB chunks over one stream: from the client
/// to the server when `upload` (the direction of a publish), else from the
/// server to the client (a subscription's). The time from the first byte
/// to the last one received.
pub async fn raw_quic(total: usize, upload: bool, dir: &std::path::Path) -> Duration {
    use fanlog::server::transport::quic;
    let identity = quic::identity(dir, None, None).unwrap();
    let cert = identity.cert_path.clone();
    let endpoint = quic::endpoint(
        ([127, 0, 0, 1], 0).into(),
        identity,
        &quic::QuicConfig::default(),
    )
    .unwrap();
    let addr = endpoint.local_addr().unwrap();
    let chunk = bytes::Bytes::from(vec![0x5Au8; 64 << 10]);
    let chunks = total / chunk.len();
    let server = {
        let chunk = chunk.clone();
        tokio::spawn(async move {
            let conn = endpoint.accept().await.unwrap().await.unwrap();
            let (mut send, mut recv) = conn.accept_bi().await.unwrap();
            let mut hello = [0u8; 2];
            recv.read_exact(&mut hello).await.unwrap();
            let t = Instant::now();
            if upload {
                let mut got = 0;
                while let Some(c) = recv.read_chunk(1 << 20, true).await.unwrap() {
                    got += c.bytes.len();
                }
                assert_eq!(got, chunks * chunk.len());
            } else {
                for _ in 0..chunks {
                    send.write_chunk(chunk.clone()).await.unwrap();
                }
                send.finish().unwrap();
                let _ = send.stopped().await;
            }
            let elapsed = t.elapsed();
            endpoint.close(0u32.into(), b"");
            elapsed
        })
    };
    let mut opts = fanlog::client::ConnectOptions::new(addr.to_string());
    opts.transport = fanlog::client::Transport::Quic(fanlog::client::QuicOptions {
        ca: Some(cert),
        ..Default::default()
    });
    let conn = fanlog::client::raw_quic_connection(&opts).await.unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(b"go").await.unwrap();
    let t = Instant::now();
    if upload {
        for _ in 0..chunks {
            send.write_chunk(chunk.clone()).await.unwrap();
        }
        send.finish().unwrap();
        // Done once the server read the last byte.
        server.await.unwrap()
    } else {
        let mut got = 0;
        while let Some(c) = recv.read_chunk(1 << 20, true).await.unwrap() {
            got += c.bytes.len();
        }
        assert_eq!(got, chunks * chunk.len());
        let elapsed = t.elapsed();
        server.await.unwrap();
        elapsed
    }
}
