//! 1,000 concurrent TCP connections, each with a subscription, all receive a
//! broadcast message (and a second one, to show they stay live).

mod common;

use std::time::Duration;

use fanlog::Durability;
use fanlog::client::{Client, Event, StartFrom};
use fanlog::protocol::Message;
use futures_util::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_connections_all_receive_a_broadcast() {
    let limit = common::raise_fd_limit();
    assert!(
        limit >= 2_500,
        "need file descriptors for 1,000 connections on both ends: {limit}"
    );
    let dir = tempfile::tempdir().unwrap();
    let server = common::TestServer::start(
        dir.path(),
        &common::config(Durability::Interval(Duration::from_millis(20)), 1 << 20),
    )
    .await;
    const N: usize = 1_000;
    let mut subs = Vec::with_capacity(N);
    for _ in 0..N {
        // One client = one TCP connection.
        let client = Client::connect(&server.tcp.to_string()).await.unwrap();
        let sub = client
            .subscribe("broadcast", StartFrom::Latest)
            .await
            .unwrap();
        subs.push((client, sub));
    }
    let publisher = Client::connect(&server.tcp.to_string()).await.unwrap();
    for round in 0..2u64 {
        let seq = publisher
            .publish("broadcast", Message::new(format!("hello all {round}")))
            .await
            .unwrap();
        assert_eq!(seq, round);
        let receives = subs.iter_mut().map(|(_, sub)| async move {
            match tokio::time::timeout(Duration::from_secs(30), sub.next()).await {
                Ok(Some(Ok(Event::Record(d)))) => (d.seq(), d.payload().to_vec()),
                other => panic!("{other:?}"),
            }
        });
        let got = futures_util::future::join_all(receives).await;
        assert_eq!(got.len(), N);
        assert!(
            got.iter()
                .all(|(s, p)| *s == round && p == format!("hello all {round}").as_bytes())
        );
    }
    drop(subs);
    server.stop().await;
}
