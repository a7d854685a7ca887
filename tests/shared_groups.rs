//! Work-sharing groups in this process (issue 17, the embedded API so
//! far): workers share a topic's records, each settled once; a dropped
//! worker's records go to another with their delivery count; a poison
//! record lands in the dead-letter topic and the group goes on; per-key
//! order holds across workers; the floor is committed and resumed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fanlog::broker::shared::SharedOptions;
use fanlog::broker::work::SharedGroup;
use fanlog::{Durability, Message};

fn options(key_order: bool) -> SharedOptions {
    SharedOptions {
        ack_wait: Duration::from_millis(300),
        max_deliver: 3,
        max_inflight: 16,
        key_order,
    }
}

async fn publish(b: &fanlog::Broker, topic: &str, n: u64, keys: u64) {
    let msgs: Vec<Message> = (0..n)
        .map(|i| {
            let m = Message::new(format!("{i}"));
            if keys == 0 {
                m
            } else {
                m.with_key(format!("k{}", i % keys))
            }
        })
        .collect();
    for chunk in msgs.chunks(500) {
        b.publish_batch(topic, chunk).await.unwrap();
    }
}

/// Fetches and acks until a fetch waits 300 ms for nothing; the seqs in
/// the order they came.
async fn drain(w: &fanlog::broker::work::Worker) -> Vec<u64> {
    let mut seqs = Vec::new();
    loop {
        let jobs = w.fetch(10, Duration::from_millis(300)).await.unwrap();
        if jobs.is_empty() {
            return seqs;
        }
        for j in jobs {
            seqs.push(j.record.seq());
            w.ack(j.record.seq()).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let b = common::open(dir.path(), &common::config(Durability::Never, 1 << 20));
    publish(&b, "jobs", 3000, 0).await;
    let group = SharedGroup::open(&b, "jobs", "g", options(false), None).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (w, seen) = (group.join(), seen.clone());
            tokio::spawn(async move {
                let mut mine = 0;
                loop {
                    let jobs = w.fetch(50, Duration::from_millis(300)).await.unwrap();
                    if jobs.is_empty() {
                        return mine;
                    }
                    for j in jobs {
                        assert_eq!(j.deliveries, 1);
                        seen.lock().unwrap().push(j.record.seq());
                        w.ack(j.record.seq()).await.unwrap();
                        mine += 1;
                    }
                }
            })
        })
        .collect();
    let mut counts = Vec::new();
    for w in workers {
        counts.push(w.await.unwrap());
    }
    let mut all = seen.lock().unwrap().clone();
    all.sort_unstable();
    assert_eq!(all, (0..3000).collect::<Vec<u64>>(), "each once");
    assert!(counts.iter().all(|&c| c > 0), "shared: {counts:?}");
    assert_eq!(group.floor(), 3000);
    // The floor is the group's committed offset.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while b.committed("jobs", "g").unwrap() != Some(3000) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "floor not committed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_workers_records_go_to_another_with_delivery_count_two() {
    let dir = tempfile::tempdir().unwrap();
    let b = common::open(dir.path(), &common::config(Durability::Never, 1 << 20));
    publish(&b, "jobs", 10, 0).await;
    let group = SharedGroup::open(&b, "jobs", "g", options(false), None).unwrap();
    let dying = group.join();
    let mut held: Vec<u64> = Vec::new();
    while held.len() < 4 {
        let jobs = dying
            .fetch(4 - held.len(), Duration::from_secs(1))
            .await
            .unwrap();
        held.extend(jobs.iter().map(|j| j.record.seq()));
    }
    assert_eq!(held, [0, 1, 2, 3]);
    // Dies without a word: its ack wait runs out (it is not dropped yet).
    let other = group.join();
    let started = tokio::time::Instant::now();
    let mut got = BTreeMap::new();
    while got.len() < 10 {
        for j in other.fetch(10, Duration::from_secs(2)).await.unwrap() {
            got.insert(j.record.seq(), j.deliveries);
            other.ack(j.record.seq()).await.unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    for s in 0..4 {
        assert_eq!(got[&s], 2, "seq {s} redelivered");
    }
    for s in 4..10 {
        assert_eq!(got[&s], 1);
    }
    // Its late ack is refused: the record went to another worker.
    assert!(dying.ack(0).await.is_err());
    assert_eq!(group.stats().redelivered, 4);
    assert_eq!(group.floor(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_is_set_aside_and_the_group_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let b = common::open(dir.path(), &common::config(Durability::Never, 1 << 20));
    publish(&b, "jobs", 5, 0).await;
    let group = SharedGroup::open(&b, "jobs", "g", options(false), None).unwrap();
    let w = group.join();
    let mut acked = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while group.floor() < 5 {
        for j in w.fetch(10, Duration::from_millis(200)).await.unwrap() {
            let seq = j.record.seq();
            if seq == 2 {
                w.nack(seq, Duration::ZERO, "cannot parse").await.unwrap();
            } else {
                w.ack(seq).await.unwrap();
                acked.insert(seq);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "floor {}",
            group.floor()
        );
    }
    assert_eq!(acked, BTreeSet::from([0, 1, 3, 4]));
    // In the dead-letter topic: the record, where it came from, why.
    let dead = common::read_all(&b, "jobs.g.dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].1, b"2");
    let r = &b.read("jobs.g.dead", 0, 1).unwrap().records[0];
    let header = |name: &str| {
        r.meta()
            .and_then(|m| m.headers.iter().find(|h| h.name.as_str() == name))
            .map(|h| String::from_utf8_lossy(&h.value).into_owned())
    };
    assert_eq!(header("fanlog-dead-topic").as_deref(), Some("jobs"));
    assert_eq!(header("fanlog-dead-seq").as_deref(), Some("2"));
    assert_eq!(header("fanlog-dead-deliveries").as_deref(), Some("3"));
    assert_eq!(header("fanlog-dead-error").as_deref(), Some("cannot parse"));
    assert_eq!(group.stats().dead_lettered, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_key_order_each_keys_records_are_processed_in_seq_order() {
    let dir = tempfile::tempdir().unwrap();
    let b = common::open(dir.path(), &common::config(Durability::Never, 1 << 20));
    publish(&b, "orders", 600, 20).await;
    let group = SharedGroup::open(&b, "orders", "g", options(true), None).unwrap();
    // Per key: the seqs in the order they were processed (acked).
    let order: Arc<Mutex<BTreeMap<String, Vec<u64>>>> = Arc::default();
    let workers: Vec<_> = (0..3u64)
        .map(|n| {
            let (w, order) = (group.join(), order.clone());
            tokio::spawn(async move {
                loop {
                    let jobs = w.fetch(8, Duration::from_millis(400)).await.unwrap();
                    if jobs.is_empty() {
                        return;
                    }
                    for j in jobs {
                        // Uneven work, so that keys interleave across workers.
                        tokio::time::sleep(Duration::from_micros(50 * (n + 1))).await;
                        let key = String::from_utf8(j.record.key().to_vec()).unwrap();
                        order
                            .lock()
                            .unwrap()
                            .entry(key)
                            .or_default()
                            .push(j.record.seq());
                        w.ack(j.record.seq()).await.unwrap();
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let order = order.lock().unwrap();
    assert_eq!(order.len(), 20);
    for (k, seqs) in order.iter() {
        let n: u64 = k[1..].parse().unwrap();
        let want: Vec<u64> = (0..600).filter(|s| s % 20 == n).collect();
        assert_eq!(seqs, &want, "key {k} in seq order, each once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_opened_again_resumes_at_its_floor() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(Durability::Always, 1 << 20);
    let b = common::open(dir.path(), &cfg);
    publish(&b, "jobs", 10, 0).await;
    {
        let group = SharedGroup::open(&b, "jobs", "g", options(false), None).unwrap();
        let w = group.join();
        // A fetch answers with what is there: ask until 6 are done.
        let mut done = 0;
        while done < 6 {
            for j in w.fetch(6 - done, Duration::from_secs(1)).await.unwrap() {
                w.ack(j.record.seq()).await.unwrap();
                done += 1;
            }
        }
        assert_eq!(group.floor(), 6);
    }
    b.close().unwrap();
    drop(b);
    let b = common::open(dir.path(), &cfg);
    let group = SharedGroup::open(&b, "jobs", "g", options(false), None).unwrap();
    let w = group.join();
    let seqs = drain(&w).await;
    assert_eq!(seqs, [6, 7, 8, 9]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_above_the_floor_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config(Durability::Always, 1 << 20);
    let b = common::open(dir.path(), &cfg);
    publish(&b, "jobs", 10, 0).await;
    {
        let group = SharedGroup::open(&b, "jobs", "g", options(false), None).unwrap();
        let (slow, fast) = (group.join(), group.join());
        let held = slow.fetch(1, Duration::from_secs(1)).await.unwrap();
        assert_eq!(held[0].record.seq(), 0);
        let mut done = 0;
        while done < 9 {
            for j in fast.fetch(9 - done, Duration::from_secs(1)).await.unwrap() {
                fast.ack(j.record.seq()).await.unwrap();
                done += 1;
            }
        }
        // Seq 0 is not acknowledged: the floor stays below the 9 acks.
        assert_eq!(group.floor(), 0);
        assert_eq!(group.info().pending, 1);
    }
    b.close().unwrap();
    drop(b);
    let b = common::open(dir.path(), &cfg);
    let group = SharedGroup::open(&b, "jobs", "g", options(false), None).unwrap();
    let w = group.join();
    let seqs = drain(&w).await;
    assert_eq!(seqs, [0], "only what was not acknowledged");
    assert_eq!(group.floor(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_open_of_a_running_group_joins_the_same_one() {
    let dir = tempfile::tempdir().unwrap();
    let b = common::open(dir.path(), &common::config(Durability::Never, 1 << 20));
    publish(&b, "jobs", 2, 0).await;
    let first = SharedGroup::open(&b, "jobs", "g", options(false), None).unwrap();
    let again = SharedGroup::open(&b, "jobs", "g", None, None).unwrap();
    assert_eq!(again.options(), options(false), "the running group's");
    let (a, b2) = (first.join(), again.join());
    let x = a.fetch(1, Duration::from_secs(1)).await.unwrap();
    let y = b2.fetch(1, Duration::from_secs(1)).await.unwrap();
    assert_ne!(x[0].record.seq(), y[0].record.seq(), "one dispatch");
    assert_eq!(first.info().members, 2);
    let e = SharedGroup::open(&b, "jobs", "g", options(true), None).unwrap_err();
    assert!(
        matches!(e, fanlog::broker::BrokerError::GroupConflict(_)),
        "other options: {e}"
    );
    let e = SharedGroup::open(&b, "jobs", "g", None, Some("elsewhere")).unwrap_err();
    assert!(
        matches!(e, fanlog::broker::BrokerError::GroupConflict(_)),
        "{e}"
    );
    assert!(SharedGroup::open(&b, "jobs", "bad/group", None, None).is_err());
    // A named member (HTTP) is the same worker each time it is asked for.
    let n1 = first.named("w1");
    let n2 = again.named("w1");
    assert!(Arc::ptr_eq(&n1, &n2));
    assert_eq!(first.info().members, 3);
    assert_eq!(
        fanlog::broker::work::running(&b)
            .iter()
            .map(|g| g.info().group)
            .collect::<Vec<_>>(),
        ["g"]
    );
}
