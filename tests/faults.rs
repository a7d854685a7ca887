//! The fault suite, bounded in time (`cargo test --test faults`): a real
//! `fanlog serve` is killed with SIGKILL under publish load, 60 rounds over
//! the three fsync modes, and every acknowledged message must be there after
//! the restart, dense and in order; clients vanish in the middle of frames;
//! 10,000 connections open and close. The broker keeps serving throughout,
//! and its peak resident memory is reported (and bounded).
//! (Full disks: `tests/disk_full.rs`; hanging hook receivers:
//! `tests/webhooks.rs`.)

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fanlog::client::{Client, Event, StartFrom};
use fanlog::protocol::Message;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

/// Peak and current resident memory of a process, KiB.
fn memory_kb(pid: u32) -> (u64, u64) {
    let [peak, now] = common::status_kb(pid, ["VmHWM:", "VmRSS:"]);
    (peak, now)
}

fn payload(round: u32, i: u64) -> Vec<u8> {
    format!("round {round} message {i}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_in_every_fsync_mode_loses_nothing_acknowledged() {
    const ROUNDS_PER_MODE: u32 = 20;
    let mut total_acked = 0u64;
    for mode in ["always", "interval:50", "never"] {
        let dir = tempfile::tempdir().unwrap();
        // Every acknowledged (seq, payload), over all rounds of this mode.
        let mut acked: Vec<Vec<u8>> = Vec::new();
        for round in 0..ROUNDS_PER_MODE {
            let serve =
                common::ServeProcess::start(dir.path(), &["--quic", "off", "--fsync", mode]);
            let c = Client::connect(&serve.tcp).await.unwrap();
            // Pipelined publishes from two tasks until the kill.
            let stop = Arc::new(AtomicBool::new(false));
            let mut tasks = Vec::new();
            for lane in 0..2u64 {
                let (c, stop) = (c.clone(), stop.clone());
                tasks.push(tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut i = lane;
                    while !stop.load(Ordering::Relaxed) {
                        let p = payload(round, i);
                        // The client would reconnect and resend forever;
                        // an answer that does not come soon means the kill.
                        let sent = c.publish("load", Message::new(p.clone()));
                        match tokio::time::timeout(Duration::from_millis(500), sent).await {
                            Ok(Ok(seq)) => got.push((seq, p)),
                            _ => break,
                        }
                        i += 2;
                    }
                    got
                }));
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
            serve.kill9();
            stop.store(true, Ordering::Relaxed);
            let mut round_acked: Vec<(u64, Vec<u8>)> = Vec::new();
            for t in tasks {
                round_acked.extend(t.await.unwrap());
            }
            drop(c);
            round_acked.sort();
            for (seq, p) in round_acked {
                // Seqs continue from what survived the last round; every
                // ack names the next free seq or one already counted.
                assert!(seq as usize >= acked.len() || acked[seq as usize] == p);
                if seq as usize >= acked.len() {
                    acked.resize(seq as usize + 1, Vec::new());
                }
                acked[seq as usize] = p;
            }

            // Restart and read everything back.
            let serve =
                common::ServeProcess::start(dir.path(), &["--quic", "off", "--fsync", mode]);
            let c = Client::connect(&serve.tcp).await.unwrap();
            let info = c.topics().await.unwrap();
            let next = info
                .iter()
                .find(|t| t.name == "load")
                .map_or(0, |t| t.next_seq);
            assert!(
                next as usize >= acked.len(),
                "{mode} round {round}: {} acknowledged, {next} recovered",
                acked.len()
            );
            let mut sub = c.subscribe("load", StartFrom::Seq(0)).await.unwrap();
            for (seq, want) in acked.iter().enumerate() {
                match tokio::time::timeout(Duration::from_secs(10), sub.next())
                    .await
                    .unwrap()
                {
                    Some(Ok(Event::Record(d))) => {
                        assert_eq!(d.seq(), seq as u64);
                        if !want.is_empty() {
                            assert_eq!(d.payload(), &want[..], "{mode} round {round} seq {seq}");
                        }
                    }
                    other => panic!("{mode} round {round} seq {seq}: {other:?}"),
                }
            }
            // Whatever survived beyond the acks is kept as the new prefix.
            acked.resize(next as usize, Vec::new());
            drop((sub, c));
            assert!(serve.terminate().success());
        }
        let n = acked.iter().filter(|p| !p.is_empty()).count() as u64;
        eprintln!(
            "fsync {mode}: {ROUNDS_PER_MODE} kill -9 rounds, {n} acknowledged messages, none lost"
        );
        total_acked += n;
    }
    assert!(total_acked > 1000, "the load was real: {total_acked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanishing_clients_and_connection_churn_leave_the_broker_serving() {
    common::raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let serve = common::ServeProcess::start(dir.path(), &["--quic", "off"]);
    let pid = serve.child.id();
    let c = Client::connect(&serve.tcp).await.unwrap();
    c.publish("t", Message::new("before")).await.unwrap();
    let (_, rss_start) = memory_kb(pid);
    let started = Instant::now();

    // 1,000 clients that send a Hello and half of a publish frame, then
    // vanish (some reset, some close).
    let hello = {
        let mut buf = Vec::new();
        fanlog::protocol::frame::Frame::Hello {
            version: fanlog::protocol::frame::VERSION,
            token: "",
            client: "vanishing",
        }
        .encode(1, &mut buf)
        .unwrap();
        buf
    };
    let publish = {
        let mut buf = Vec::new();
        let payload = vec![7u8; 4096];
        fanlog::protocol::frame::Frame::Publish {
            topic: "t",
            messages: vec![fanlog::protocol::frame::WireMessage {
                producer: None,
                key: &[],
                meta: &[],
                payload: &payload,
            }],
        }
        .encode(2, &mut buf)
        .unwrap();
        buf
    };
    let addr = serve.tcp.clone();
    futures_util::stream::iter(0..1000u32)
        .for_each_concurrent(50, |i| {
            let (addr, hello, publish) = (addr.clone(), hello.clone(), publish.clone());
            async move {
                let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
                s.write_all(&hello).await.unwrap();
                let cut = 1 + (i as usize * 37) % (publish.len() - 1);
                let _ = s.write_all(&publish[..cut]).await;
                if i % 2 == 0 {
                    // Closing with the broker's HelloOk unread makes the
                    // kernel reset the connection (RST) instead of a FIN.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                drop(s);
            }
        })
        .await;

    // 10,000 connections that open, shake hands and close.
    futures_util::stream::iter(0..10_000u32)
        .for_each_concurrent(64, |_| {
            let addr = addr.clone();
            async move {
                let c = Client::connect(&addr).await.unwrap();
                drop(c);
            }
        })
        .await;

    // Still serving everyone else, and nothing half-sent was appended.
    let seq = c.publish("t", Message::new("after")).await.unwrap();
    assert_eq!(seq, 1, "no half frame became a message");
    let fresh = Client::connect(&serve.tcp).await.unwrap();
    assert_eq!(fresh.publish("t", Message::new("fresh")).await.unwrap(), 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (peak, rss_end) = memory_kb(pid);
    eprintln!(
        "11,000 vanishing and churning connections in {:.1} s: broker RSS {rss_start} -> {rss_end} KiB, peak {peak} KiB",
        started.elapsed().as_secs_f64()
    );
    // Bounded: connections do not leak their buffers.
    assert!(
        rss_end < rss_start + 64 * 1024,
        "RSS grew from {rss_start} to {rss_end} KiB"
    );
    drop((c, fresh));
    assert!(serve.terminate().success());
}
