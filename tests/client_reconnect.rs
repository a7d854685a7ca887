//! The client survives a broker restart: a producer keeps publishing and a
//! subscriber keeps receiving, and the subscriber's stream has every seq
//! exactly once, in order. Over TCP and over QUIC.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use fanlog::Durability;
use fanlog::client::{Client, ConnectOptions, Event, StartFrom};
use fanlog::protocol::Message;
use futures_util::StreamExt;

async fn survive_restart(quic: bool) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(Durability::Always, 1 << 20);
    let server = common::TestServer::start(dir.path(), &cfg).await;
    let (tcp_addr, quic_addr) = (server.tcp, server.quic);
    let opts: ConnectOptions = if quic {
        server.quic_options()
    } else {
        server.tcp_options()
    };
    let client = Client::connect_with(opts).await.unwrap();
    let mut sub = client.subscribe("r", StartFrom::Earliest).await.unwrap();

    // The producer publishes until told to stop, so both restarts fall in
    // the middle of the stream however fast this machine syncs.
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let producer = {
        let (client, stop, published) = (client.clone(), stop.clone(), published.clone());
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Each publish retries across the restart by itself.
                let seq = client
                    .publish("r", Message::new(format!("m{i}")))
                    .await
                    .expect("publish");
                acked.push(seq);
                published.store(i + 1, Ordering::Relaxed);
                i += 1;
                if i.is_multiple_of(50) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            acked
        })
    };
    // The consumer reads until it has as many records as were acked.
    let expected = Arc::new(AtomicU64::new(u64::MAX));
    let consumer = {
        let expected = expected.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            let mut idle = Duration::ZERO;
            while (got.len() as u64) < expected.load(Ordering::Relaxed) {
                // Short waits, so that a count set while waiting is seen.
                match tokio::time::timeout(Duration::from_millis(100), sub.next()).await {
                    Ok(Some(Ok(Event::Record(d)))) => {
                        got.push((d.seq(), d.payload().to_vec()));
                        idle = Duration::ZERO;
                    }
                    Err(_) if idle < Duration::from_secs(30) => idle += Duration::from_millis(100),
                    other => panic!("after {} records: {other:?}", got.len()),
                }
            }
            got
        })
    };

    // Restart the broker twice while both run, on the same ports, and check
    // that publishes went through between and after the restarts.
    // Each restart must be followed by new acks (reconnects take a backoff
    // and a handshake, so wait for them rather than for a fixed time).
    let advanced = |from: u64| {
        let published = published.clone();
        async move {
            let t = std::time::Instant::now();
            while published.load(Ordering::Relaxed) < from + 20 {
                assert!(
                    t.elapsed() < Duration::from_secs(20),
                    "no publishes for 20 s after a restart (at {from})"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            t.elapsed()
        }
    };
    advanced(0).await;
    server.stop().await;
    let mark = published.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server = restart(dir.path(), &cfg, tcp_addr, quic_addr).await;
    let first = advanced(mark).await;
    server.stop().await;
    let mark = published.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let server = restart(dir.path(), &cfg, tcp_addr, quic_addr).await;
    let second = advanced(mark).await;
    eprintln!("publishing resumed {first:?} and {second:?} after the restarts");
    stop.store(true, Ordering::Relaxed);

    let acked = tokio::time::timeout(Duration::from_secs(60), producer)
        .await
        .expect("producer finished")
        .unwrap();
    let n = acked.len() as u64;
    expected.store(n, Ordering::Relaxed);
    let got = tokio::time::timeout(Duration::from_secs(60), consumer)
        .await
        .expect("consumer finished")
        .unwrap();
    assert_eq!(
        acked,
        (0..n).collect::<Vec<_>>(),
        "each message appended once, in order"
    );
    assert_eq!(got.len() as u64, n);
    for (i, (seq, payload)) in got.iter().enumerate() {
        assert_eq!(*seq, i as u64, "every seq exactly once, in order");
        assert_eq!(payload, format!("m{i}").as_bytes());
    }
    server.stop().await;
}

async fn restart(
    dir: &std::path::Path,
    cfg: &fanlog::BrokerConfig,
    tcp: std::net::SocketAddr,
    quic: std::net::SocketAddr,
) -> common::TestServer {
    // The same ports: the client reconnects to the address it knows.
    common::TestServer::start_on(dir, cfg, tcp, quic).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_survives_broker_restart_over_tcp() {
    survive_restart(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_survives_broker_restart_over_quic() {
    survive_restart(true).await;
}
