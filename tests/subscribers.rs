//! Fan-out: many concurrent subscribers each receive every message in order
//! while a publisher appends; a subscriber that starts below the retained
//! log gets a gap signal, then the records that remain.

mod common;

use std::time::Duration;

use fanlog::{Durability, Event, Message, StartFrom};
use futures_util::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_subscribers_receive_everything_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(Durability::Interval(Duration::from_millis(20)), 256 << 10);
    let broker = common::open(dir.path(), &cfg);
    const N: u64 = 3000;
    let mut subs = Vec::new();
    for i in 0..100 {
        // Half start before anything exists (from the latest), half from seq 0.
        let from = if i % 2 == 0 {
            StartFrom::Latest
        } else {
            StartFrom::Seq(0)
        };
        let mut sub = broker.subscribe("fan", from).unwrap();
        subs.push(tokio::spawn(async move {
            let mut want = 0u64;
            while want < N {
                match tokio::time::timeout(Duration::from_secs(20), sub.next()).await {
                    Ok(Some(Ok(Event::Record(r)))) => {
                        assert_eq!(r.seq(), want, "subscriber {i}");
                        assert_eq!(r.payload(), format!("m{want}").as_bytes());
                        want += 1;
                    }
                    other => panic!("subscriber {i} at {want}: {other:?}"),
                }
            }
            want
        }));
    }
    let publisher = {
        let b = broker.clone();
        tokio::spawn(async move {
            let mut seq = 0;
            while seq < N {
                let n = (seq % 7 + 1).min(N - seq);
                let msgs: Vec<Message> = (seq..seq + n)
                    .map(|i| Message::new(format!("m{i}")))
                    .collect();
                let seqs = b.publish_batch("fan", &msgs).await.unwrap();
                assert_eq!(seqs[0], seq);
                seq += n;
                if seq % 100 < 7 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    publisher.await.unwrap();
    for s in subs {
        assert_eq!(s.await.unwrap(), N);
    }
}

#[tokio::test]
async fn subscriber_below_retention_gets_a_gap_then_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::retention_config(Some(3 * 4096), None);
    let broker = common::open(dir.path(), &cfg);
    for i in 0..500u64 {
        broker
            .publish("old", Message::new(format!("{i:0>100}")))
            .await
            .unwrap();
    }
    let info = common::retention_settled(&broker, "old").await;
    assert!(info.first_seq > 0, "retention removed segments: {info:?}");
    assert!(info.bytes <= 4 * 4096, "{info:?}");
    assert_eq!(info.next_seq, 500);

    let mut sub = broker.subscribe("old", StartFrom::Seq(0)).unwrap();
    match sub.next().await {
        Some(Ok(Event::Gap { from: 0, to })) => assert_eq!(to, info.first_seq),
        other => panic!("expected a gap first: {other:?}"),
    }
    for want in info.first_seq..500 {
        match sub.next().await {
            Some(Ok(Event::Record(r))) => assert_eq!(r.seq(), want),
            other => panic!("at {want}: {other:?}"),
        }
    }
    // Reads report the gap too.
    let batch = broker.read("old", 0, 5).unwrap();
    assert_eq!(batch.gap, Some((0, info.first_seq)));
    assert_eq!(batch.records[0].seq(), info.first_seq);

    // And retention holds across a reopen.
    drop(sub);
    broker.close().unwrap();
    drop(broker);
    let broker = common::open(dir.path(), &cfg);
    assert_eq!(broker.topic_info("old").unwrap().first_seq, info.first_seq);
}

#[tokio::test]
async fn retention_by_age_removes_old_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::retention_config(None, Some(Duration::from_millis(200)));
    let broker = common::open(dir.path(), &cfg);
    for i in 0..200u64 {
        broker
            .publish("aged", Message::new(format!("{i:0>100}")))
            .await
            .unwrap();
    }
    assert_eq!(broker.topic_info("aged").unwrap().first_seq, 0);
    // The flusher applies age retention about once a second.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info = broker.topic_info("aged").unwrap();
        if info.first_seq > 0 {
            if common::backend::cluster() {
                // A stream removes each record as it ages, not segments:
                // all of them may be gone by now.
                assert!(info.first_seq <= 200);
            } else {
                // Only sealed segments go; the active one and its records stay.
                assert!(info.first_seq < 200);
            }
            assert_eq!(info.next_seq, 200);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "age retention never ran"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
