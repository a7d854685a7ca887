//! Flow control: a subscriber that stops reading for 10 s while 1 GiB is
//! published keeps the broker's memory bounded (its resident memory is
//! sampled from /proc throughout and reported), and then catches up with
//! every message in order.

mod common;

use std::time::{Duration, Instant};

use fanlog::client::{Client, Event, StartFrom};
use fanlog::protocol::Message;
use futures_util::StreamExt;

const MSG: usize = 64 << 10;
const TOTAL: usize = 1 << 30;
const COUNT: u64 = (TOTAL / MSG) as u64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_subscriber_keeps_broker_memory_bounded_then_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let serve = common::ServeProcess::start(dir.path(), &["--quic", "off"]);
    let pid = serve.child.id();
    let (anon_before, rss_before) = common::rss_kb(pid);

    let consumer = Client::connect(&serve.tcp).await.unwrap();
    let mut sub = consumer.subscribe("bulk", StartFrom::Latest).await.unwrap();

    // Sample the broker's memory every 50 ms until told to stop.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(async move {
        let (mut peak_anon, mut peak_rss) = (0, 0);
        while !*stop_rx.borrow() {
            let (a, r) = common::rss_kb(pid);
            peak_anon = peak_anon.max(a);
            peak_rss = peak_rss.max(r);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (peak_anon, peak_rss)
    });

    let started = Instant::now();
    let producer = Client::connect(&serve.tcp).await.unwrap();
    let mut pending = Vec::new();
    for batch in 0..COUNT / 16 {
        let msgs: Vec<Message> = (0..16)
            .map(|i| {
                let n = batch * 16 + i;
                let mut p = vec![0u8; MSG];
                p[..8].copy_from_slice(&n.to_le_bytes());
                Message::new(p)
            })
            .collect();
        pending.push(producer.publish_batch("bulk", msgs));
        if pending.len() >= 8 {
            pending.remove(0).await.unwrap();
        }
    }
    for p in pending {
        p.await.unwrap();
    }
    let published_in = started.elapsed();
    // The subscriber has not read anything yet: keep it stalled for 10 s in all.
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(started.elapsed())).await;
    let (anon_stalled, rss_stalled) = common::rss_kb(pid);

    let catch_up = Instant::now();
    for want in 0..COUNT {
        match tokio::time::timeout(Duration::from_secs(30), sub.next()).await {
            Ok(Some(Ok(Event::Record(d)))) => {
                assert_eq!(d.seq(), want);
                assert_eq!(d.payload().len(), MSG);
                assert_eq!(
                    u64::from_le_bytes(d.payload()[..8].try_into().unwrap()),
                    want
                );
            }
            other => panic!("at {want}: {other:?}"),
        }
    }
    let caught_up_in = catch_up.elapsed();
    stop_tx.send(true).unwrap();
    let (peak_anon, peak_rss) = sampler.await.unwrap();
    eprintln!(
        "flow control: 1 GiB published in {published_in:?}; broker RssAnon {anon_before} kB at start, {anon_stalled} kB after 10 s stalled, \
         peak {peak_anon} kB; VmRSS {rss_before} / {rss_stalled} / peak {peak_rss} kB; catch-up of 1 GiB in {caught_up_in:?}"
    );
    // The stalled subscriber buffers nothing at the broker beyond its credit
    // window: anonymous memory stays far below what was published.
    assert!(
        peak_anon < anon_before + 96 * 1024,
        "broker anonymous memory grew to {peak_anon} kB (from {anon_before})"
    );
    assert!(serve.terminate().success());
}
