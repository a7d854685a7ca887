//! Publish/subscribe end to end through the client over real sockets, on TCP
//! and on QUIC: start positions, consumer groups that resume after a client
//! restart, fetch, topics, and errors the broker reports.

mod common;

use std::time::Duration;

use fanlog::Durability;
use fanlog::client::{Client, ConnectOptions, ErrorCode, Event, StartFrom};
use fanlog::protocol::Message;
use futures_util::StreamExt;

async fn next_record(sub: &mut fanlog::client::Subscription) -> fanlog::client::Delivery {
    match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
        Ok(Some(Ok(Event::Record(d)))) => d,
        other => panic!("expected a record, got {other:?}"),
    }
}

async fn exercise(opts: ConnectOptions) {
    let client = Client::connect_with(opts.clone()).await.expect("connect");

    // Subscribe before anything exists (latest), then publish.
    let mut live = client.subscribe("orders", StartFrom::Latest).await.unwrap();
    let seqs = client
        .publish_batch(
            "orders",
            (0..10)
                .map(|i| Message::new(format!("order {i}")).with_content_type("text/plain"))
                .collect(),
        )
        .await
        .unwrap();
    assert_eq!(seqs, (0..10).collect::<Vec<u64>>());
    for i in 0..10u64 {
        let d = next_record(&mut live).await;
        assert_eq!((d.seq(), d.payload()), (i, format!("order {i}").as_bytes()));
        assert_eq!(d.content_type().as_deref(), Some("text/plain"));
    }

    // Earliest and a given seq.
    let mut early = client
        .subscribe("orders", StartFrom::Earliest)
        .await
        .unwrap();
    assert_eq!(next_record(&mut early).await.seq(), 0);
    let mut at7 = client.subscribe("orders", StartFrom::Seq(7)).await.unwrap();
    assert_eq!(next_record(&mut at7).await.seq(), 7);

    // Consumer group: consume 4, commit, drop the client; a new client resumes.
    let mut g = client
        .subscribe("orders", StartFrom::Group("billing".into()))
        .await
        .unwrap();
    for i in 0..4 {
        assert_eq!(next_record(&mut g).await.seq(), i);
    }
    client.commit("orders", "billing", 4).await.unwrap();
    drop(g);
    drop(client);
    let client = Client::connect_with(opts).await.unwrap();
    assert_eq!(
        client.committed("orders", "billing").await.unwrap(),
        Some(4)
    );
    let mut g = client
        .subscribe("orders", StartFrom::Group("billing".into()))
        .await
        .unwrap();
    assert_eq!(next_record(&mut g).await.seq(), 4);

    // Fetch and topics.
    let f = client.fetch("orders", 8, 100).await.unwrap();
    assert_eq!(
        f.records.iter().map(|d| d.seq()).collect::<Vec<_>>(),
        [8, 9]
    );
    assert_eq!(f.next, 10);
    let topics = client.topics().await.unwrap();
    assert_eq!(topics.len(), 1);
    assert_eq!(
        (
            topics[0].name.as_str(),
            topics[0].first_seq,
            topics[0].next_seq
        ),
        ("orders", 0, 10)
    );

    // Errors come back as codes, and the connection keeps working.
    let e = client.publish("../x", Message::new("x")).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidName), "{e}");
    let e = client.commit("orders", "billing", 99).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::OffsetOutOfRange), "{e}");
    let e = client.fetch("nope", 0, 1).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::TopicNotFound), "{e}");
    let e = client
        .subscribe("orders", StartFrom::Group("bad/group".into()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidName), "{e}");
    let e = client
        .publish("orders", Message::new(vec![0u8; 2 << 20]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::MessageTooLarge), "{e}");
    assert_eq!(
        client
            .publish("orders", Message::new("after errors"))
            .await
            .unwrap(),
        10
    );
    assert_eq!(next_record(&mut live).await.seq(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::TestServer::start(
        dir.path(),
        &common::config(Durability::Interval(Duration::from_millis(20)), 1 << 20),
    )
    .await;
    exercise(server.tcp_options()).await;
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
    exercise(server.quic_options()).await;
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
    let broker = fanlog::Broker::open(dir.path(), fanlog::BrokerConfig::default()).unwrap();
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
