//! Consumer offsets survive `kill -9`; idempotent retries (producer id +
//! sequence, or idempotency key) append once, also after a restart or a crash.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use fanlog::{Durability, Message};

const CHILD_ENV: &str = "FANLOG_OFFSETS_CHILD_DIR";

/// Child: publishes keyed messages and commits offsets as fast as it can,
/// printing each only after the broker returned.
#[test]
fn offsets_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = common::runtime();
    // `Never`: the promise under test is the process-crash one, which every mode keeps.
    let broker = common::open(
        std::path::Path::new(&dir),
        &common::config(Durability::Never, 1 << 20),
    );
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        let key = format!("key-{i}");
        let seq = rt
            .block_on(broker.publish(
                "jobs",
                Message::new(format!("job {i}")).with_idempotency_key(key.clone()),
            ))
            .unwrap();
        writeln!(out, "PUB\t{key}\t{seq}").unwrap();
        let group = format!("g{}", i % 4);
        rt.block_on(broker.commit("jobs", &group, seq + 1)).unwrap();
        writeln!(out, "COMMIT\t{group}\t{}", seq + 1).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn offsets_and_idempotency_keys_survive_kill_9() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(Durability::Never, 1 << 20);
    for round in 0..5 {
        let lines = common::run_child_then_kill(
            "offsets_child",
            &[(CHILD_ENV, dir.path().display().to_string())],
            Duration::from_millis(100 + 40 * round),
        );

        let mut committed: HashMap<String, u64> = HashMap::new();
        let mut published: Vec<(String, u64)> = Vec::new();
        for l in &lines {
            let f: Vec<&str> = l.split('\t').collect();
            match f.as_slice() {
                ["COMMIT", g, s] => {
                    if let Ok(s) = s.parse() {
                        committed.insert(g.to_string(), s);
                    }
                }
                ["PUB", k, s] => {
                    if let Ok(s) = s.parse() {
                        published.push((k.to_string(), s));
                    }
                }
                _ => {}
            }
        }
        assert!(
            !committed.is_empty(),
            "round {round}: child printed nothing"
        );

        let broker = common::open(dir.path(), &cfg);
        for (g, printed) in &committed {
            let got = broker.committed("jobs", g).unwrap().unwrap();
            // The child may have committed once more after its last print
            // (each group commits every 4th message).
            assert!(
                got == *printed || got == printed + 4,
                "round {round}: group {g}: printed {printed}, stored {got}"
            );
        }
        let rt = common::runtime();
        let next = broker.topic_info("jobs").unwrap().next_seq;
        for (k, seq) in published.iter().rev().take(50) {
            // A retry resends the same message under the same key.
            let i = k.trim_start_matches("key-");
            let again = rt
                .block_on(broker.publish(
                    "jobs",
                    Message::new(format!("job {i}")).with_idempotency_key(k.clone()),
                ))
                .unwrap();
            assert_eq!(again, *seq, "round {round}: retry of {k}");
            // The key with another body is refused, not answered as stored.
            let other = rt.block_on(broker.publish(
                "jobs",
                Message::new("retry").with_idempotency_key(k.clone()),
            ));
            assert!(
                matches!(other, Err(fanlog::broker::BrokerError::IdempotencyConflict { seq: s, .. }) if s == *seq),
                "round {round}: {other:?}"
            );
        }
        assert_eq!(
            broker.topic_info("jobs").unwrap().next_seq,
            next,
            "retries appended nothing"
        );
        broker.close().unwrap();
    }
}

#[tokio::test]
async fn producer_retries_append_once_also_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(Durability::Interval(Duration::from_millis(10)), 1 << 20);
    let broker = common::open(dir.path(), &cfg);
    let batch: Vec<Message> = (0..5)
        .map(|i| Message::new(format!("m{i}")).with_producer(77, i))
        .collect();
    let seqs = broker.publish_batch("p", &batch).await.unwrap();
    assert_eq!(seqs, [0, 1, 2, 3, 4]);
    // A retry of the whole batch, and one overlapping batch.
    assert_eq!(broker.publish_batch("p", &batch).await.unwrap(), seqs);
    let overlap: Vec<Message> = (3..7)
        .map(|i| Message::new(format!("m{i}")).with_producer(77, i))
        .collect();
    assert_eq!(
        broker.publish_batch("p", &overlap).await.unwrap(),
        [3, 4, 5, 6]
    );
    // Another producer's same sequence numbers are not duplicates.
    assert_eq!(
        broker
            .publish("p", Message::new("other").with_producer(78, 0))
            .await
            .unwrap(),
        7
    );
    // A duplicate inside one batch is appended once.
    let twice = [
        Message::new("k").with_idempotency_key("same"),
        Message::new("k").with_idempotency_key("same"),
    ];
    assert_eq!(broker.publish_batch("p", &twice).await.unwrap(), [8, 8]);
    broker.close().unwrap();
    drop(broker);

    let broker = common::open(dir.path(), &cfg);
    assert_eq!(broker.publish_batch("p", &batch).await.unwrap(), seqs);
    assert_eq!(
        broker
            .publish("p", Message::new("k").with_idempotency_key("same"))
            .await
            .unwrap(),
        8
    );
    assert_eq!(
        broker
            .publish("p", Message::new("m7").with_producer(77, 7))
            .await
            .unwrap(),
        9
    );
    let all = common::read_all(&broker, "p");
    assert_eq!(all.len(), 10);
    assert_eq!(all[6].1, b"m6");
    assert_eq!(all[8].1, b"k");
}

#[tokio::test]
async fn dedupe_window_expires() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::config(Durability::Never, 1 << 20);
    // 100 ms: JetStream's shortest duplicate window, so that this runs
    // against a cluster too (which forgets an id within twice the window).
    cfg.topic.dedupe_window = Duration::from_millis(100);
    let broker = common::open(dir.path(), &cfg);
    let m = Message::new("x").with_idempotency_key("once");
    assert_eq!(broker.publish("w", m.clone()).await.unwrap(), 0);
    assert_eq!(broker.publish("w", m.clone()).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(250)).await;
    // A retry after the window is a new message, as documented.
    assert_eq!(broker.publish("w", m).await.unwrap(), 1);
}

#[test]
fn group_offsets_survive_reopen_and_resume_subscriptions() {
    use fanlog::{Event, StartFrom};
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(Durability::Always, 1 << 20);
    let rt = common::runtime();
    let broker = common::open(dir.path(), &cfg);
    for i in 0..10 {
        rt.block_on(broker.publish("q", Message::new(format!("{i}"))))
            .unwrap();
    }
    rt.block_on(broker.commit("q", "workers", 6)).unwrap();
    drop(broker);
    let broker = common::open(dir.path(), &cfg);
    assert_eq!(broker.committed("q", "workers").unwrap(), Some(6));
    let mut sub = broker
        .subscribe("q", StartFrom::Group("workers".parse().unwrap()))
        .unwrap();
    match rt.block_on(sub.next()) {
        Some(Ok(Event::Record(r))) => assert_eq!(r.seq(), 6),
        other => panic!("{other:?}"),
    }
    // A group that never committed starts at the earliest record.
    let mut fresh = broker
        .subscribe("q", StartFrom::Group("new".parse().unwrap()))
        .unwrap();
    assert_eq!(fresh.position(), 0);
    assert!(matches!(
        rt.block_on(fresh.next()),
        Some(Ok(Event::Record(_)))
    ));
}
