//! Crash test: a child process publishes under `Durability::Always` from
//! several concurrent producers and prints each acknowledged seq; the parent
//! `kill -9`s it at random moments, 20 rounds on the same data directory. On
//! every reopen each acknowledged seq is present with its exact payload, seqs
//! are dense, and only an unacknowledged tail may be missing.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use fanlog::{Durability, Message};
use rand::Rng;

const TOPIC: &str = "crash";
const CHILD_ENV: &str = "FANLOG_CRASH_CHILD_DIR";

fn payload(producer: u32, round: u64, i: u64) -> String {
    // Sizes vary so records straddle pages and segments roll.
    let pad = (i * 37 + producer as u64 * 11) % 700;
    format!("p{producer}-r{round}-m{i}-{}", "x".repeat(pad as usize))
}

/// The child: runs only when the parent re-executes this test binary.
#[test]
fn crash_child_publisher() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: u64 = std::env::var("FANLOG_CRASH_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cfg = common::config(Durability::Always, 64 << 10);
    let broker = common::open(std::path::Path::new(&dir), &cfg);
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for producer in 0..4u32 {
            let b = broker.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let p = payload(producer, round, i);
                    let seqs = if i % 3 == 0 {
                        let p2 = payload(producer, round, i + 1_000_000);
                        let seqs = b
                            .publish_batch(
                                TOPIC,
                                &[Message::new(p.clone()), Message::new(p2.clone())],
                            )
                            .await
                            .unwrap();
                        vec![(seqs[0], p), (seqs[1], p2)]
                    } else {
                        vec![(b.publish(TOPIC, Message::new(p.clone())).await.unwrap(), p)]
                    };
                    let mut out = std::io::stdout().lock();
                    for (seq, p) in seqs {
                        use std::io::Write;
                        writeln!(out, "ACK\t{seq}\t{p}").unwrap();
                    }
                    std::io::Write::flush(&mut out).unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn acked_messages_survive_kill_9() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    let mut rng = rand::rng();
    let cfg = common::config(Durability::Always, 64 << 10);
    for round in 0..20u64 {
        // Kill at a random moment: before the first ack, mid-stream, mid-roll.
        let lines = common::run_child_then_kill(
            "crash_child_publisher",
            &[
                (CHILD_ENV, dir.path().display().to_string()),
                ("FANLOG_CRASH_ROUND", round.to_string()),
            ],
            Duration::from_millis(rng.random_range(30..250)),
        );
        let mut round_acks = 0;
        for line in lines {
            let mut parts = line.splitn(3, '\t');
            if parts.next() != Some("ACK") {
                continue;
            }
            // A line cut by the kill has no third field or a short payload;
            // lines() only yields complete lines, except possibly the last.
            let (Some(seq), Some(p)) = (parts.next(), parts.next()) else {
                continue;
            };
            let Ok(seq) = seq.parse::<u64>() else {
                continue;
            };
            if let Some(prev) = acked.insert(seq, p.to_owned()) {
                panic!("seq {seq} acknowledged twice: {prev:?} and {p:?}");
            }
            round_acks += 1;
        }

        let broker = common::open(dir.path(), &cfg);
        let all = common::read_all(&broker, TOPIC);
        for (i, (seq, _)) in all.iter().enumerate() {
            assert_eq!(*seq, i as u64, "round {round}: seqs not dense");
        }
        for (seq, p) in &acked {
            let got = all.get(*seq as usize).unwrap_or_else(|| {
                panic!(
                    "round {round}: acked seq {seq} lost (log has {})",
                    all.len()
                )
            });
            assert_eq!(
                got.1,
                p.as_bytes(),
                "round {round}: seq {seq} payload differs"
            );
        }
        // Whatever survived beyond the acks is an unacked tail: well-formed.
        for (seq, p) in &all {
            let text = std::str::from_utf8(p).expect("payload is a child's text");
            assert!(text.starts_with('p'), "seq {seq}: garbage {text:?}");
        }
        eprintln!(
            "round {round}: {round_acks} acks, log has {} records",
            all.len()
        );
        broker.close().unwrap();
        // Acked seqs of this round are now facts: carry survivors forward so
        // the next round's reopen checks them again.
        for (seq, p) in &all {
            acked
                .entry(*seq)
                .or_insert_with(|| String::from_utf8(p.clone()).unwrap());
        }
    }
    assert!(
        acked.len() > 100,
        "the child acknowledged too little to test: {}",
        acked.len()
    );
}
