//! Bad input through the embedded API: invalid names and oversized messages
//! are refused with a clear error, and nothing is written for them.

mod common;

use fanlog::broker::BrokerError;
use fanlog::{Durability, Message, StartFrom};

#[tokio::test]
async fn invalid_topic_names_are_refused_everywhere_and_touch_no_disk() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::open(dir.path(), &common::config(Durability::Never, 1 << 20));
    let long = "a".repeat(256);
    for bad in [
        "../x",
        "",
        long.as_str(),
        "/",
        "a/b",
        "nul\0byte",
        ".hidden",
        "..",
        "sp ace",
    ] {
        let e = broker.publish(bad, Message::new("x")).await.unwrap_err();
        assert!(matches!(e, BrokerError::InvalidName(_)), "{bad:?}: {e}");
        assert!(e.to_string().contains("topic name"), "{e}");
        assert!(matches!(
            broker.subscribe(bad, StartFrom::Earliest),
            Err(BrokerError::InvalidName(_))
        ));
        assert!(matches!(
            broker.read(bad, 0, 1),
            Err(BrokerError::InvalidName(_))
        ));
        assert!(matches!(
            broker.commit(bad, "g", 0).await,
            Err(BrokerError::InvalidName(_))
        ));
    }
    let entries: Vec<_> = std::fs::read_dir(dir.path().join("topics"))
        .unwrap()
        .collect();
    assert!(entries.is_empty(), "nothing created: {entries:?}");
    assert!(!dir.path().parent().unwrap().join("x").exists());

    broker.publish("ok", Message::new("x")).await.unwrap();
    for bad_group in ["", "../g", "a/b"] {
        assert!(matches!(
            broker.commit("ok", bad_group, 0).await,
            Err(BrokerError::InvalidName(_))
        ));
    }
    assert!(matches!(
        broker.read("missing", 0, 1),
        Err(BrokerError::TopicNotFound(_))
    ));
}

#[tokio::test]
async fn oversized_messages_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(Durability::Never, 1 << 20);
    let max = cfg.topic.max_message_bytes;
    let broker = common::open(dir.path(), &cfg);
    broker.publish("t", Message::new("first")).await.unwrap();
    let before = broker.topic_info("t").unwrap();

    let e = broker
        .publish("t", Message::new(vec![0u8; max + 1]))
        .await
        .unwrap_err();
    assert!(
        matches!(e, BrokerError::MessageTooLarge { index: 0, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("nothing was written"), "{e}");

    // One bad message in a batch refuses the whole batch.
    let batch = [
        Message::new("ok"),
        Message::new(vec![1u8; max + 10]),
        Message::new("ok"),
    ];
    let e = broker.publish_batch("t", &batch).await.unwrap_err();
    assert!(
        matches!(e, BrokerError::MessageTooLarge { index: 1, .. }),
        "{e}"
    );

    // Metadata counts toward the limit.
    let m = Message::new(vec![2u8; max - 4]).with_content_type("application/octet-stream");
    assert!(matches!(
        broker.publish("t", m).await,
        Err(BrokerError::MessageTooLarge { .. })
    ));

    assert!(matches!(
        broker.publish_batch("t", &[]).await,
        Err(BrokerError::EmptyBatch)
    ));
    assert_eq!(broker.topic_info("t").unwrap(), before);

    // Exactly at the limit is fine.
    let seq = broker
        .publish("t", Message::new(vec![3u8; max]))
        .await
        .unwrap();
    assert_eq!(seq, before.next_seq);
}

#[tokio::test]
async fn commit_past_the_end_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::open(dir.path(), &common::config(Durability::Never, 1 << 20));
    broker.publish("t", Message::new("a")).await.unwrap();
    broker.commit("t", "g", 1).await.unwrap();
    let e = broker.commit("t", "g", 2).await.unwrap_err();
    assert!(
        matches!(
            e,
            BrokerError::OffsetOutOfRange {
                seq: 2,
                next_seq: 1,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(broker.committed("t", "g").unwrap(), Some(1));
}

#[test]
fn a_data_directory_is_held_by_one_broker() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(Durability::Never, 1 << 20);
    let a = common::open(dir.path(), &cfg);
    let e = fanlog::Broker::open(dir.path(), cfg.clone()).unwrap_err();
    assert!(matches!(e, BrokerError::DataDirInUse(_)), "{e}");
    drop(a);
    common::open(dir.path(), &cfg);
}

#[tokio::test]
async fn a_refused_publish_creates_no_topic() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(Durability::Never, 1 << 20);
    let broker = common::open(dir.path(), &cfg);
    let big = Message::new(vec![0u8; cfg.topic.max_message_bytes + 1]);
    assert!(broker.publish("fresh", big).await.is_err());
    assert!(matches!(
        broker.topic_info("fresh"),
        Err(BrokerError::TopicNotFound(_))
    ));
    assert!(!dir.path().join("topics").join("fresh").exists());
}
