//! Publish/subscribe end to end through the client over real sockets, on TCP
//! and on QUIC: start positions, consumer groups that resume after a client
//! restart, fetch, topics, and errors the broker reports.

mod common;

use std::time::Duration;

use fanlog::Durability;
use fanlog::client::{Client, ErrorCode, StartFrom};
use fanlog::protocol::Message;

use common::scenarios::next_record;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::TestServer::start(
        dir.path(),
        &common::config(Durability::Interval(Duration::from_millis(20)), 1 << 20),
    )
    .await;
    common::scenarios::pubsub(server.tcp_options()).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_over_quic() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::TestServer::start(
        dir.path(),
        &common::config(Durability::Interval(Duration::from_millis(20)), 1 << 20),
    )
    .await;
    common::scenarios::pubsub(server.quic_options()).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_embedded_has_the_same_api() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::open(dir.path(), &common::config(Durability::Never, 1 << 20));
    let client = Client::embedded(broker);
    let mut sub = client.subscribe("e", StartFrom::Latest).await.unwrap();
    assert_eq!(client.publish("e", Message::new("x")).await.unwrap(), 0);
    assert_eq!(next_record(&mut sub).await.payload(), b"x");
    let e = client.publish("../x", Message::new("x")).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidName));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_refuses_an_untrusted_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        common::TestServer::start(dir.path(), &common::config(Durability::Never, 1 << 20)).await;
    // Trust a different self-signed certificate than the server's.
    let other = tempfile::tempdir().unwrap();
    let wrong = fanlog::server::transport::quic::identity(other.path(), None, None)
        .unwrap()
        .cert_path;
    let mut opts = server.quic_options();
    opts.transport = fanlog::client::Transport::Quic(fanlog::client::QuicOptions {
        ca: Some(wrong),
        ..Default::default()
    });
    let e = Client::connect_with(opts).await.unwrap_err();
    assert!(e.to_string().contains("cannot connect"), "{e}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_batches_pipelines_and_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        common::TestServer::start(dir.path(), &common::config(Durability::Always, 1 << 20)).await;
    let client = Client::connect_with(server.tcp_options()).await.unwrap();
    let producer = client.producer(
        "p",
        fanlog::client::ProducerOptions {
            max_batch_messages: 100,
            ..Default::default()
        },
    );
    let mut receipts = Vec::new();
    for i in 0..2_000 {
        receipts.push(producer.send(Message::new(format!("{i}"))).await.unwrap());
    }
    for (i, r) in receipts.into_iter().enumerate() {
        assert_eq!(r.await.unwrap(), i as u64, "acknowledged in send order");
    }
    // Batching shared syncs: far fewer syncs than messages under Always.
    let stats = server.broker.stats("p").unwrap();
    assert!(
        stats.syncs < 500,
        "batched: {} syncs for 2000 messages",
        stats.syncs
    );
    let f = client.fetch("p", 1_234, 1).await.unwrap();
    assert_eq!(f.records[0].payload(), b"1234");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::open(dir.path(), &common::config(Durability::Never, 1 << 20));
    let server = fanlog::server::Server::builder(broker)
        .tcp(([127, 0, 0, 1], 0).into())
        .connection_limits(2, 10_000)
        .start()
        .await
        .unwrap();
    let addr = server.addr("tcp").unwrap().to_string();
    let a = Client::connect(&addr).await.unwrap();
    let b = Client::connect(&addr).await.unwrap();
    let e = Client::connect(&addr).await.unwrap_err();
    assert!(
        e.to_string().contains("TooManyConnections") || e.to_string().contains("too many"),
        "{e}"
    );
    // The two admitted clients keep working; when one leaves, a slot frees.
    assert_eq!(a.publish("t", Message::new("x")).await.unwrap(), 0);
    assert_eq!(b.publish("t", Message::new("y")).await.unwrap(), 1);
    drop(a);
    let mut admitted = None;
    for _ in 0..50 {
        if let Ok(c) = Client::connect(&addr).await {
            admitted = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted.is_some(), "a freed slot is reused");
    drop((b, admitted));
    server.stop().await.unwrap();
}

/// On a multi-threaded runtime the embedded client makes a new topic under
/// `block_in_place` (file work off the runtime's other tasks); pipelined
/// publishes to new topics keep their call order all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_publishes_to_new_topics_keep_call_order_on_a_multi_thread_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::open(dir.path(), &fanlog::BrokerConfig::default());
    let client = Client::embedded(broker.clone());
    for t in 0..5 {
        let topic = format!("new{t}");
        let futures: Vec<_> = (0..50)
            .map(|i| client.publish_batch(&topic, vec![Message::new(format!("{i}"))]))
            .collect();
        let seqs: Vec<u64> = futures_util::future::join_all(futures)
            .await
            .into_iter()
            .flat_map(Result::unwrap)
            .collect();
        assert_eq!(seqs, (0..50).collect::<Vec<u64>>());
        let batch = broker.read(&topic, 0, 100).unwrap();
        let payloads: Vec<String> = batch
            .records
            .iter()
            .map(|r| String::from_utf8(r.payload().to_vec()).unwrap())
            .collect();
        assert_eq!(payloads, (0..50).map(|i| i.to_string()).collect::<Vec<_>>());
    }
}
