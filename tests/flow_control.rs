//! Flow control: a subscriber that stops reading for 10 s while 1 GiB is
//! published (256 MiB against a cluster) keeps the broker's memory bounded (its resident memory is
//! sampled from /proc throughout and reported), and then catches up with
//! every message in order.

mod common;

use std::time::{Duration, Instant};

use fanlog::client::{Client, Event, StartFrom};
use fanlog::protocol::Message;
use futures_util::StreamExt;

const MSG: usize = 64 << 10;
const TOTAL: usize = 1 << 30;

/// Messages published: 1 GiB, or 256 MiB against a cluster (which stores
/// three copies on this one machine; still 16 times the edge's tail).
fn count() -> u64 {
    let total = if common::backend::cluster() {
        TOTAL / 4
    } else {
        TOTAL
    };
    (total / MSG) as u64
}

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

    let count = count();
    let started = Instant::now();
    let producer = Client::connect(&serve.tcp).await.unwrap();
    let mut pending = Vec::new();
    for batch in 0..count / 16 {
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
    for want in 0..count {
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
        "flow control: {} MiB published in {published_in:?}; broker RssAnon {anon_before} kB at start, {anon_stalled} kB after 10 s stalled, \
         peak {peak_anon} kB; VmRSS {rss_before} / {rss_stalled} / peak {peak_rss} kB; catch-up in {caught_up_in:?}",
        (count * MSG as u64) >> 20
    );
    // The stalled subscriber buffers nothing at the broker beyond its credit
    // window: anonymous memory stays far below what was published.
    assert!(
        peak_anon < anon_before + 96 * 1024,
        "broker anonymous memory grew to {peak_anon} kB (from {anon_before})"
    );
    assert!(serve.terminate().success());
}

/// A broker that takes the handshake, then holds every publish unanswered
/// until told to answer: what a client sees when the broker is slower than
/// its requests.
struct SlowBroker {
    addr: String,
    /// Publish frames received so far.
    received: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Each `()` sent answers every publish received so far.
    answer: tokio::sync::mpsc::UnboundedSender<()>,
}

impl SlowBroker {
    async fn start() -> Self {
        use fanlog::protocol::frame::{self, Frame};
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (answer, mut answers) = tokio::sync::mpsc::unbounded_channel::<()>();
        let count = received.clone();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut unanswered: Vec<(u32, usize)> = Vec::new();
            let mut next_seq = 0u64;
            let mut chunk = vec![0u8; 64 << 10];
            loop {
                tokio::select! {
                    n = sock.read(&mut chunk) => {
                        let n = n.unwrap();
                        if n == 0 { return; }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some((id, f, used)) = frame::decode(&buf, 16 << 20).unwrap() {
                            match f {
                                Frame::Hello { .. } => {
                                    let mut out = Vec::new();
                                    Frame::HelloOk { version: frame::VERSION, max_frame: 16 << 20, server: "slow" }
                                        .encode(id, &mut out).unwrap();
                                    sock.write_all(&out).await.unwrap();
                                }
                                Frame::Publish { messages, .. } => {
                                    count.fetch_add(1, Ordering::SeqCst);
                                    unanswered.push((id, messages.len()));
                                }
                                _ => {}
                            }
                            buf.drain(..used);
                        }
                    }
                    Some(()) = answers.recv() => {
                        let mut out = Vec::new();
                        for (id, n) in unanswered.drain(..) {
                            let seqs: Vec<u64> = (next_seq..next_seq + n as u64).collect();
                            next_seq += n as u64;
                            Frame::PublishAck { seqs }.encode(id, &mut out).unwrap();
                        }
                        sock.write_all(&out).await.unwrap();
                    }
                }
            }
        });
        Self {
            addr,
            received,
            answer,
        }
    }
}

#[tokio::test]
async fn a_slow_broker_holds_publishers_back_at_the_chosen_bounds_and_order_holds() {
    use std::sync::atomic::Ordering;
    const IN_FLIGHT: usize = 4;
    const QUEUE: usize = 3;
    const CALLS: u64 = 40;
    let broker = SlowBroker::start().await;
    let mut options = fanlog::client::ConnectOptions::new(&broker.addr);
    options.max_in_flight = IN_FLIGHT;
    options.command_queue = QUEUE;
    let client = Client::connect_with(options).await.unwrap();

    // 40 publishes made one after another, awaited together (polled in
    // call order): only IN_FLIGHT reach the broker while it answers
    // nothing, QUEUE more wait in the queue, the rest wait for room.
    let futures: Vec<_> = (0..CALLS)
        .map(|i| client.publish_batch("t", vec![Message::new(format!("{i}"))]))
        .collect();
    let waiter = tokio::spawn(async move {
        futures_util::future::join_all(futures)
            .await
            .into_iter()
            .flat_map(Result::unwrap)
            .collect::<Vec<u64>>()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        broker.received.load(Ordering::SeqCst),
        IN_FLIGHT,
        "the client sends no more than max_in_flight unanswered requests"
    );
    // Answers let the rest through, a bounded number at a time.
    let deadline = Instant::now() + Duration::from_secs(10);
    while broker.received.load(Ordering::SeqCst) < CALLS as usize {
        assert!(Instant::now() < deadline, "publishes stalled");
        let before = broker.received.load(Ordering::SeqCst);
        broker.answer.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = broker.received.load(Ordering::SeqCst);
        assert!(now - before <= IN_FLIGHT, "{before} -> {now}");
    }
    broker.answer.send(()).unwrap();
    let seqs = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    // The broker numbered them in arrival order: call order was kept.
    assert_eq!(seqs, (0..CALLS).collect::<Vec<_>>());
}
