//! The client survives a broker restart: a producer keeps publishing and a
//! subscriber keeps receiving, and the subscriber's stream has every seq
//! exactly once, in order. Over TCP and over QUIC.

mod common;

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

    const N: u64 = 600;
    let producer = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..N {
                // Each publish retries across the restart by itself.
                let seq = client
                    .publish("r", Message::new(format!("m{i}")))
                    .await
                    .expect("publish");
                acked.push(seq);
                if i % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            acked
        })
    };
    let consumer = tokio::spawn(async move {
        let mut got = Vec::new();
        while (got.len() as u64) < N {
            match tokio::time::timeout(Duration::from_secs(30), sub.next()).await {
                Ok(Some(Ok(Event::Record(d)))) => got.push((d.seq(), d.payload().to_vec())),
                other => panic!("after {} records: {other:?}", got.len()),
            }
        }
        got
    });

    // Restart the broker twice while both run, on the same ports.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        !producer.is_finished() && !consumer.is_finished(),
        "the first restart must happen mid-stream"
    );
    server.stop().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let server = restart(dir.path(), &cfg, tcp_addr, quic_addr).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !producer.is_finished(),
        "the second restart must happen mid-stream"
    );
    server.stop().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let server = restart(dir.path(), &cfg, tcp_addr, quic_addr).await;

    let acked = tokio::time::timeout(Duration::from_secs(60), producer)
        .await
        .expect("producer finished")
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(60), consumer)
        .await
        .expect("consumer finished")
        .unwrap();
    assert_eq!(
        acked,
        (0..N).collect::<Vec<_>>(),
        "each message appended once, in order"
    );
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
