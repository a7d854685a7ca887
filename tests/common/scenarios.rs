//! Behaviour scenarios that run against more than one kind of broker:
//! embedded, a served process, and edges of a cluster.

use std::time::Duration;

use fanlog::client::{Client, ConnectOptions, ErrorCode, Event, StartFrom};
use fanlog::protocol::Message;
use futures_util::StreamExt;

pub async fn next_record(sub: &mut fanlog::client::Subscription) -> fanlog::client::Delivery {
    match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
        Ok(Some(Ok(Event::Record(d)))) => d,
        other => panic!("expected a record, got {other:?}"),
    }
}

/// Publish/subscribe through the client: start positions, a consumer
/// group resumed by a new client, fetch, topics, and refusals, on a broker
/// with no topics yet. Run over TCP and QUIC against one broker
/// (`wire_pubsub.rs`) and against cluster edges (`cluster.rs`).
pub async fn pubsub(opts: ConnectOptions) {
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
