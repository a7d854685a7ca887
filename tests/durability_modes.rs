//! What each durability mode promises, observed through the embedded API:
//! group commit under `Always`, background syncs under `Interval`, syncs only
//! on flush under `Never`, and subscribers that end when the broker closes.

mod common;

use std::time::Duration;

use fanlog::{Durability, Event, Message, StartFrom};
use futures_util::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_shares_syncs_between_concurrent_publishers() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::open(dir.path(), &common::config(Durability::Always, 1 << 20));
    const PRODUCERS: u64 = 8;
    const EACH: u64 = 100;
    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let b = broker.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                b.publish("gc", Message::new(format!("{p}-{i}")))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = broker.stats("gc").unwrap();
    let total = PRODUCERS * EACH;
    assert_eq!(stats.durable_seq, total, "every ack was durable");
    eprintln!(
        "group commit: {total} acknowledged publishes, {} syncs ({:.1} publishes per sync)",
        stats.syncs,
        total as f64 / stats.syncs as f64
    );
    // Eight publishers each wait for their sync; while one runs the others
    // append, so syncs must be shared. One sync per publish would be `total`.
    assert!(
        stats.syncs * 2 <= total,
        "syncs were not shared: {} for {total}",
        stats.syncs
    );
}

#[tokio::test]
async fn interval_syncs_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::open(
        dir.path(),
        &common::config(Durability::Interval(Duration::from_millis(20)), 1 << 20),
    );
    for i in 0..10 {
        broker
            .publish("iv", Message::new(format!("{i}")))
            .await
            .unwrap();
    }
    // Acknowledged at once, readable at once, durable within the interval.
    assert_eq!(broker.topic_info("iv").unwrap().next_seq, 10);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while broker.stats("iv").unwrap().durable_seq < 10 {
        assert!(tokio::time::Instant::now() < deadline, "never synced");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(broker.stats("iv").unwrap().syncs >= 1);
}

#[tokio::test]
async fn never_syncs_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::open(dir.path(), &common::config(Durability::Never, 1 << 20));
    for i in 0..10 {
        broker
            .publish("nv", Message::new(format!("{i}")))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(broker.stats("nv").unwrap().durable_seq, 0);
    broker.flush().unwrap();
    assert_eq!(broker.stats("nv").unwrap().durable_seq, 10);
}

#[tokio::test]
async fn each_topic_keeps_the_durability_its_pattern_gives() {
    use fanlog::{TopicOverrides, TopicPattern};
    let dir = tempfile::tempdir().unwrap();
    let with = |d| TopicOverrides {
        durability: Some(d),
        ..Default::default()
    };
    let config = fanlog::BrokerConfig {
        topics: vec![
            (
                "sync.*".parse::<TopicPattern>().unwrap(),
                with(Durability::Always),
            ),
            (
                "slow".parse().unwrap(),
                with(Durability::Interval(Duration::from_millis(600))),
            ),
            (
                "fast".parse().unwrap(),
                with(Durability::Interval(Duration::from_millis(20))),
            ),
        ],
        ..common::config(Durability::Never, 1 << 20)
    };
    let broker = common::open(dir.path(), &config);
    for topic in ["sync.a", "slow", "fast", "lazy"] {
        broker.publish(topic, Message::new("x")).await.unwrap();
    }
    // `Always`: durable when acknowledged.
    assert_eq!(broker.stats("sync.a").unwrap().durable_seq, 1);
    // Interval 20 ms: synced well before the 600 ms topic.
    let start = tokio::time::Instant::now();
    while broker.stats("fast").unwrap().durable_seq < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "fast never synced"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if start.elapsed() < Duration::from_millis(300) {
        assert_eq!(broker.stats("slow").unwrap().durable_seq, 0, "synced early");
    }
    while broker.stats("slow").unwrap().durable_seq < 1 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "slow never synced"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The default, `Never`: only a flush syncs it.
    assert_eq!(broker.stats("lazy").unwrap().durable_seq, 0);
    broker.flush().unwrap();
    assert_eq!(broker.stats("lazy").unwrap().durable_seq, 1);
}

#[tokio::test]
async fn a_topic_created_with_a_short_interval_is_synced_at_that_interval() {
    use fanlog::TopicOverrides;
    let dir = tempfile::tempdir().unwrap();
    // Every configured topic is `Never`: the flusher starts ticking at 1 s.
    let broker = common::open(dir.path(), &common::config(Durability::Never, 1 << 20));
    broker
        .create_topic(
            "fast",
            &TopicOverrides {
                durability: Some(Durability::Interval(Duration::from_millis(20))),
                ..Default::default()
            },
        )
        .unwrap();
    let wait_durable = async |upto: u64| {
        let start = tokio::time::Instant::now();
        while broker.stats("fast").unwrap().durable_seq < upto {
            assert!(start.elapsed() < Duration::from_secs(5), "never synced");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        start.elapsed()
    };
    broker.publish("fast", Message::new("a")).await.unwrap();
    wait_durable(1).await;
    // From then on the tick follows the topic's 20 ms, not the 1 s it
    // started with (600 ms leaves room for a loaded machine).
    broker.publish("fast", Message::new("b")).await.unwrap();
    let took = wait_durable(2).await;
    assert!(took < Duration::from_millis(600), "synced after {took:?}");
}

#[tokio::test]
async fn closing_ends_subscriptions_after_what_was_published() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::open(dir.path(), &common::config(Durability::Never, 1 << 20));
    broker.publish("c", Message::new("a")).await.unwrap();
    let mut sub = broker.subscribe("c", StartFrom::Earliest).unwrap();
    let waiter = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(ev) = sub.next().await {
            match ev.unwrap() {
                Event::Record(r) => seen.push(r.payload().to_vec()),
                Event::Gap { .. } => panic!("no gap expected"),
            }
        }
        seen
    });
    broker.publish("c", Message::new("b")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    broker.close().unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("subscription ended")
        .unwrap();
    assert_eq!(seen, [b"a".to_vec(), b"b".to_vec()]);
    assert!(matches!(
        broker.publish("c", Message::new("late")).await,
        Err(fanlog::broker::BrokerError::Closed)
    ));
}
