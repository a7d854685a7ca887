//! The soak: a real `fanlog serve` under mixed traffic for a bounded time
//! (loopback only), then a checker that reads every topic back.
//!
//! `cargo bench --bench soak [-- SECONDS]` (default 600). Traffic: a TCP
//! publisher and a QUIC publisher (paced), a TCP and a QUIC subscriber, an
//! SSE and a WebSocket subscriber, and a webhook to a local receiver; each
//! consumer checks that seqs arrive dense and in order. The broker's
//! anonymous resident memory (heap; file pages of the mapped log are not a
//! leak) is sampled every 10 s and must stay within 10% of its level after
//! warm-up. Exits non-zero on any lost or reordered message.

use std::collections::HashMap;
use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use eventsource_stream::Eventsource;
use fanlog::client::{Client, ConnectOptions, Event, QuicOptions, StartFrom, Transport};
use fanlog::protocol::Message;
use futures_util::StreamExt;

/// Count of dense, in-order arrivals; any other seq is a fault.
#[derive(Default)]
struct Tally {
    next: AtomicU64,
    faults: AtomicU64,
}

impl Tally {
    fn see(&self, seq: u64) {
        if self.next.load(Ordering::Relaxed) == seq {
            self.next.store(seq + 1, Ordering::Relaxed);
        } else if seq >= self.next.load(Ordering::Relaxed) {
            // A gap: something was skipped.
            self.faults.fetch_add(1, Ordering::Relaxed);
            self.next.store(seq + 1, Ordering::Relaxed);
        }
        // seq below next: an at-least-once resend (hooks), not a loss.
    }
}

#[path = "../tests/common/mod.rs"]
mod common;

fn memory_kb(pid: u32) -> (u64, u64) {
    let [anon, rss] = common::status_kb(pid, ["RssAnon:", "VmRSS:"]);
    (anon, rss)
}

struct Broker {
    child: std::process::Child,
    addrs: HashMap<String, String>,
    _dir: tempfile::TempDir,
}

fn start_broker() -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_fanlog"))
        .arg("serve")
        .arg("--data")
        .arg(dir.path())
        .args([
            "--tcp",
            "127.0.0.1:0",
            "--quic",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ])
        .args([
            "--allow-hook-target",
            "127.0.0.1",
            "--fsync",
            "interval:100",
        ])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addrs = HashMap::new();
    while addrs.len() < 3 {
        let line = lines.next().unwrap().unwrap();
        let mut w = line.split_whitespace();
        if let (Some("listening"), Some(k), Some(a)) = (w.next(), w.next(), w.next()) {
            addrs.insert(k.to_owned(), a.to_owned());
        }
    }
    Broker {
        child,
        addrs,
        _dir: dir,
    }
}

fn payload(topic: &str, i: u64) -> Vec<u8> {
    format!("{topic}/{i}").into_bytes()
}

fn main() {
    let secs: u64 = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(600);
    let broker = start_broker();
    let pid = broker.child.id();
    let tcp = broker.addrs["tcp"].clone();
    let quic = broker.addrs["quic"].clone();
    let http = broker.addrs["http"].clone();
    let ca = broker._dir.path().join("tls/cert.pem");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ok = rt.block_on(async move {
        let quic_opts = {
            let mut o = ConnectOptions::new(&quic);
            o.transport = Transport::Quic(QuicOptions {
                ca: Some(ca.clone()),
                ..QuicOptions::default()
            });
            o
        };
        let stop = Arc::new(AtomicBool::new(false));
        let published: HashMap<&str, Arc<AtomicU64>> = [("soak.tcp", Arc::default()), ("soak.quic", Arc::default())].into();

        // Consumers.
        let tallies: Vec<(&str, Arc<Tally>)> = ["tcp sub", "quic sub", "sse", "websocket", "webhook"]
            .into_iter()
            .map(|n| (n, Arc::new(Tally::default())))
            .collect();
        let tally = |n: &str| tallies.iter().find(|(k, _)| *k == n).unwrap().1.clone();
        let tcp_client = Client::connect(&tcp).await.unwrap();
        let quic_client = Client::connect_with(quic_opts.clone()).await.unwrap();
        for (client, topic, name) in [(&tcp_client, "soak.tcp", "tcp sub"), (&quic_client, "soak.quic", "quic sub")] {
            let mut sub = client.subscribe(topic, StartFrom::Seq(0)).await.unwrap();
            let t = tally(name);
            tokio::spawn(async move {
                while let Some(Ok(ev)) = sub.next().await {
                    if let Event::Record(d) = ev {
                        t.see(d.seq());
                    }
                }
            });
        }
        {
            let t = tally("sse");
            let url = format!("http://{http}/topics/soak.tcp/events?from=0");
            tokio::spawn(async move {
                let resp = reqwest::get(url).await.unwrap();
                let mut events = resp.bytes_stream().eventsource();
                while let Some(Ok(ev)) = events.next().await {
                    if let Ok(seq) = ev.id.parse() {
                        t.see(seq);
                    }
                }
            });
        }
        {
            let t = tally("websocket");
            let url = format!("ws://{http}/topics/soak.quic/ws?from=0");
            tokio::spawn(async move {
                let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
                while let Some(Ok(m)) = ws.next().await {
                    if let tokio_tungstenite::tungstenite::Message::Text(text) = m {
                        let v: serde_json::Value = serde_json::from_str(text.as_str()).unwrap_or_default();
                        if let Some(seq) = v["seq"].as_u64() {
                            t.see(seq);
                        }
                    }
                }
            });
        }
        {
            let t = tally("webhook");
            let app = axum::Router::new().route(
                "/hook",
                axum::routing::post(move |headers: HeaderMap| {
                    let t = t.clone();
                    async move {
                        if let Some(seq) = headers
                            .get("webhook-id")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|id| id.rsplit(':').next())
                            .and_then(|s| s.parse().ok())
                        {
                            t.see(seq);
                        }
                        axum::http::StatusCode::NO_CONTENT
                    }
                }),
            );
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/hook", l.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
            let r = reqwest::Client::new()
                .post(format!("http://{http}/hooks"))
                .json(&serde_json::json!({"topic": "soak.tcp", "url": url, "from": 0}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201);
        }

        // Publishers, paced: 2,000/s over TCP, 1,000/s over QUIC.
        for (client, topic, per_tick) in [(tcp_client.clone(), "soak.tcp", 20u64), (quic_client.clone(), "soak.quic", 10)] {
            let (stop, count) = (stop.clone(), published[topic].clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let batch: Vec<Message> = (0..per_tick).map(|k| Message::new(payload(topic, i + k))).collect();
                    let seqs = client.publish_batch(topic, batch).await.unwrap();
                    assert_eq!(seqs.first(), Some(&i), "{topic}: seqs are dense");
                    i += per_tick;
                    count.store(i, Ordering::Relaxed);
                }
            });
        }

        // Sample memory every 10 s.
        let start = Instant::now();
        let warmup = Duration::from_secs((secs / 5).max(10));
        let mut baseline = None;
        let mut peak_after = 0u64;
        let mut samples = Vec::new();
        while start.elapsed() < Duration::from_secs(secs) {
            tokio::time::sleep(Duration::from_secs(10).min(Duration::from_secs(secs))).await;
            let (anon, rss) = memory_kb(pid);
            samples.push((start.elapsed().as_secs(), anon, rss));
            if start.elapsed() >= warmup {
                match baseline {
                    None => baseline = Some(anon),
                    Some(_) => peak_after = peak_after.max(anon),
                }
            }
            let line: Vec<String> = tallies
                .iter()
                .map(|(n, t)| format!("{n} {}", t.next.load(Ordering::Relaxed)))
                .collect();
            eprintln!(
                "[{:>4} s / {secs} s] published tcp {} quic {}; delivered {}; broker heap {anon} KiB, RSS {rss} KiB",
                start.elapsed().as_secs(),
                published["soak.tcp"].load(Ordering::Relaxed),
                published["soak.quic"].load(Ordering::Relaxed),
                line.join(", ")
            );
        }
        stop.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let final_tcp = published["soak.tcp"].load(Ordering::Relaxed);
        let final_quic = published["soak.quic"].load(Ordering::Relaxed);

        // Let every consumer catch up, then read every topic back.
        let deadline = Instant::now() + Duration::from_secs(120);
        let want = |n: &str| if n == "quic sub" || n == "websocket" { final_quic } else { final_tcp };
        while tallies.iter().any(|(n, t)| t.next.load(Ordering::Relaxed) < want(n)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let checker = Client::connect(&tcp).await.unwrap();
        let mut read_back_faults = 0u64;
        for (topic, n) in [("soak.tcp", final_tcp), ("soak.quic", final_quic)] {
            let mut sub = checker.subscribe(topic, StartFrom::Seq(0)).await.unwrap();
            for i in 0..n {
                match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
                    Ok(Some(Ok(Event::Record(d)))) if d.seq() == i && d.payload() == payload(topic, i) => {}
                    _ => read_back_faults += 1,
                }
            }
        }
        let mut all_ok = read_back_faults == 0;
        println!("soak: {secs} s, published {final_tcp} (TCP) + {final_quic} (QUIC)");
        println!("{:<12} {:>10} {:>10} {:>8}", "consumer", "expected", "received", "faults");
        for (n, t) in &tallies {
            let got = t.next.load(Ordering::Relaxed);
            let faults = t.faults.load(Ordering::Relaxed) + want(n).saturating_sub(got);
            all_ok &= faults == 0;
            println!("{n:<12} {:>10} {got:>10} {faults:>8}", want(n));
        }
        println!("read back: {} messages, {read_back_faults} missing, wrong or out of order", final_tcp + final_quic);
        let base = baseline.unwrap_or(0).max(1);
        let growth = peak_after as f64 / base as f64 - 1.0;
        println!(
            "broker heap after warm-up ({} s): {base} KiB, peak after {peak_after} KiB ({:+.1}%); samples (s, heap KiB, RSS KiB): {samples:?}",
            warmup.as_secs(),
            growth * 100.0
        );
        all_ok &= growth <= 0.10;
        all_ok
    });
    let mut child = broker.child;
    let _ = child.kill();
    let _ = child.wait();
    if !ok {
        eprintln!("soak FAILED");
        std::process::exit(1);
    }
    println!("soak passed");
}
