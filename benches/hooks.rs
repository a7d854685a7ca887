//! 1,000 webhooks on one topic, each receiving 1,000 messages, against a
//! local receiver on 127.0.0.1: deliveries per second, every hook checked
//! for order. `cargo bench --bench hooks [-- HOOKS MESSAGES [FSYNC]]`, FSYNC
//! one of `always`, `interval:MS` (default `interval:100`), `never`: under
//! `always` every cursor commit is durable before the next delivery.
//!
//! The baseline in the same run is the receiver alone: the same number of
//! POSTs sent straight to it by the same HTTP client (1,000 concurrent
//! senders), so the ratio is what the broker's hook machinery costs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::http::HeaderMap;
use fanlog::server::hooks::{Hooks, HooksConfig, NewHook};
use fanlog::{Broker, BrokerConfig, Durability, Message, TopicConfig};
use indicatif::{ProgressBar, ProgressStyle};

/// Per hook: the next seq it should receive, and whether order held.
struct Seen {
    next: Vec<AtomicU64>,
    out_of_order: AtomicU64,
    total: AtomicU64,
}

async fn receiver(seen: Arc<Seen>) -> String {
    let app = axum::Router::new().route(
        "/hook/{i}",
        axum::routing::post(move |Path(i): Path<usize>, headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                let seq: u64 = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|id| id.rsplit(':').next())
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(u64::MAX);
                if let Some(next) = seen.next.get(i) {
                    // In order means exactly the next seq (a resend of the
                    // previous one would also be tolerated by a receiver
                    // that dedupes, but there is no restart here).
                    if next.load(Ordering::Relaxed) == seq {
                        next.store(seq + 1, Ordering::Relaxed);
                    } else {
                        seen.out_of_order.fetch_add(1, Ordering::Relaxed);
                    }
                }
                seen.total.fetch_add(1, Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

fn bar(total: u64, label: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec}",
        )
        .unwrap(),
    );
    bar.set_message(label);
    bar
}

async fn wait(total: &AtomicU64, want: u64, bar: &ProgressBar) -> f64 {
    let start = Instant::now();
    loop {
        let n = total.load(Ordering::Relaxed);
        bar.set_position(n);
        if n >= want {
            bar.finish_and_clear();
            return start.elapsed().as_secs_f64();
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "stalled at {n} of {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn main() {
    // `cargo bench` passes `--bench`; positional numbers override the size.
    let nums: Vec<u64> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    let hooks_n = nums.first().copied().unwrap_or(1000) as usize;
    let msgs = nums.get(1).copied().unwrap_or(1000);
    let want = hooks_n as u64 * msgs;
    let fsync: Durability = std::env::args()
        .find_map(|a| {
            a.parse()
                .ok()
                .filter(|_| !a.starts_with('-') && a.parse::<u64>().is_err())
        })
        .unwrap_or(Durability::Interval(Duration::from_millis(100)));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let raise = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        let _ = rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit {
                current: raise.maximum,
                maximum: raise.maximum,
            },
        );
        let seen = Arc::new(Seen {
            next: (0..hooks_n).map(|_| AtomicU64::new(0)).collect(),
            out_of_order: AtomicU64::new(0),
            total: AtomicU64::new(0),
        });
        let base = receiver(seen.clone()).await;

        // Baseline: the same POSTs straight to the receiver, one sender
        // per hook, each waiting for its answer like a hook does.
        let client = reqwest::Client::new();
        let b = bar(want, "direct");
        let tasks: Vec<_> = (0..hooks_n)
            .map(|i| {
                let (client, url) = (client.clone(), format!("{base}/hook/{i}"));
                tokio::spawn(async move {
                    for seq in 0..msgs {
                        client
                            .post(&url)
                            .header("webhook-id", format!("direct:{seq}"))
                            .body(vec![b'x'; 64])
                            .send()
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        let direct_secs = wait(&seen.total, want, &b).await;
        for t in tasks {
            t.await.unwrap();
        }
        for n in &seen.next {
            n.store(0, Ordering::Relaxed);
        }
        seen.total.store(0, Ordering::Relaxed);
        seen.out_of_order.store(0, Ordering::Relaxed);

        // fanlog: hooks on one topic.
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(
            dir.path(),
            BrokerConfig {
                topic: TopicConfig {
                    durability: fsync,
                    ..TopicConfig::default()
                },
                ..BrokerConfig::default()
            },
        )
        .unwrap();
        let hooks = Hooks::open(
            broker.clone(),
            HooksConfig {
                allow_targets: vec!["127.0.0.1".into()],
                ..HooksConfig::default()
            },
        )
        .unwrap();
        let b = bar(hooks_n as u64, "hooks");
        for i in 0..hooks_n {
            hooks
                .create(NewHook {
                    topic: "bench".into(),
                    url: format!("{base}/hook/{i}"),
                    from: Some(0),
                    ..NewHook::default()
                })
                .await
                .unwrap();
            b.inc(1);
        }
        b.finish_and_clear();
        let b = bar(want, "deliver");
        let start = Instant::now();
        let batch: Vec<Message> = (0..msgs).map(|_| Message::new(vec![b'x'; 64])).collect();
        for chunk in batch.chunks(100) {
            broker.publish_batch("bench", chunk).await.unwrap();
        }
        let _ = wait(&seen.total, want, &b).await;
        let hook_secs = start.elapsed().as_secs_f64();
        let out_of_order = seen.out_of_order.load(Ordering::Relaxed);
        let complete = seen
            .next
            .iter()
            .filter(|n| n.load(Ordering::Relaxed) == msgs)
            .count();
        hooks.shutdown().await;
        broker.close().unwrap();

        let direct = want as f64 / direct_secs;
        let fanlog = want as f64 / hook_secs;
        println!("{hooks_n} hooks x {msgs} messages = {want} deliveries (64 B, local receiver, fsync {fsync})");
        println!("  direct POSTs (baseline): {direct:>10.0} /s  ({direct_secs:.2} s)");
        println!("  fanlog hooks:            {fanlog:>10.0} /s  ({hook_secs:.2} s)  = {:.2}x the baseline", fanlog / direct);
        println!("  hooks that got every message in order: {complete} of {hooks_n}; out of order: {out_of_order}");
        assert_eq!(complete, hooks_n, "every hook gets every message");
        assert_eq!(out_of_order, 0, "in order");
    });
}
