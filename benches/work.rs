//! Work-sharing throughput, one run: a fanlog shared group with 1, 2 and
//! 4 workers beside a NATS JetStream pull consumer with explicit acks and
//! a Redis Streams consumer group (XREADGROUP / XACK), on this machine.
//! Run: `cargo bench --bench work`.
//!
//! Each system holds the same 100,000 messages of 1 KiB; each run is a new
//! group over them, timed from the first fetch until every message is
//! acknowledged. Every worker has its own connection and the same window:
//! at most 256 messages held unacknowledged (fanlog `max_inflight`,
//! JetStream `max_ack_pending` / batch, Redis `COUNT`). Acknowledgements:
//! fanlog's are answered (each ack's reply awaited, pipelined within the
//! window); JetStream's are sent without waiting for a reply (`ack()`, as
//! its clients do by default), Redis XACKs one batch per read. fanlog
//! runs as a `fanlog serve` child process with its default durability
//! (interval), JetStream on file storage (its default sync), Redis
//! without persistence. Prints the ratios and writes
//! target/work-bench/report.html.

#[path = "common/peers.rs"]
mod peers;

use std::process::{Command, Stdio};
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use peers::*;

const N: usize = 100_000;
const SIZE: usize = 1024;
const WINDOW: usize = 256;
const WORKERS: [usize; 3] = [1, 2, 4];

/// `fanlog serve` on a free port, data under `dir`.
fn start_fanlog(dir: &std::path::Path) -> (Peer, u16) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_fanlog"))
        .args(["serve", "--quic", "off", "--tcp"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data")
        .arg(dir.join("fanlog"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start fanlog serve");
    wait_port(port);
    (Peer(child), port)
}

async fn fanlog_load(addr: &str) {
    use fanlog::client::{Client, Message};
    let c = Client::connect(addr).await.expect("fanlog");
    let p = payload(SIZE);
    let mut acks = FuturesUnordered::new();
    for _ in 0..N / 100 {
        let batch: Vec<Message> = (0..100).map(|_| Message::new(p.clone())).collect();
        acks.push(c.publish_batch("work", batch));
        if acks.len() >= 16 {
            acks.next().await.unwrap().expect("publish");
        }
    }
    while let Some(r) = acks.next().await {
        r.expect("publish");
    }
}

/// `workers` fanlog workers of group `group`: messages per second.
async fn fanlog_run(addr: &str, group: &str, workers: usize) -> f64 {
    use fanlog::client::{Client, WorkerOptions};
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (addr, group, done) = (addr.to_owned(), group.to_owned(), done.clone());
            tokio::spawn(async move {
                let c = Client::connect(&addr).await.expect("fanlog");
                let opts = WorkerOptions {
                    max_inflight: Some(WINDOW as u32),
                    ..WorkerOptions::default()
                };
                let mut w = c.worker("work", &group, opts).await.expect("join");
                let mut acks = FuturesUnordered::new();
                loop {
                    if done.load(std::sync::atomic::Ordering::Acquire) >= N {
                        break;
                    }
                    tokio::select! {
                        job = w.next() => {
                            let job = job.expect("stream").expect("job");
                            acks.push(async move { job.ack().await });
                        }
                        Some(r) = acks.next(), if !acks.is_empty() => {
                            r.expect("ack");
                            done.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                        }
                        () = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
                    }
                }
                while let Some(r) = acks.next().await {
                    r.expect("ack");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    N as f64 / start.elapsed().as_secs_f64()
}

async fn js_load(js: &async_nats::jetstream::Context) {
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "WORK".into(),
        subjects: vec!["work".into()],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .expect("stream");
    let p = payload(SIZE);
    let mut acks = std::collections::VecDeque::new();
    for _ in 0..N {
        acks.push_back(js.publish("work", p.clone()).await.expect("publish"));
        if acks.len() >= 1000 {
            acks.pop_front().unwrap().await.expect("ack");
        }
    }
    for a in acks {
        a.await.expect("ack");
    }
}

/// `workers` pull-consumer workers of durable consumer `name`, explicit
/// acks: messages per second.
async fn js_run(js: &async_nats::jetstream::Context, name: &str, workers: usize) -> f64 {
    use async_nats::jetstream::consumer::{AckPolicy, pull};
    let stream = js.get_stream("WORK").await.expect("stream");
    stream
        .create_consumer(pull::Config {
            durable_name: Some(name.to_owned()),
            ack_policy: AckPolicy::Explicit,
            max_ack_pending: (WINDOW * workers) as i64,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (js, name, done) = (js.clone(), name.to_owned(), done.clone());
            tokio::spawn(async move {
                let stream = js.get_stream("WORK").await.expect("stream");
                let consumer: async_nats::jetstream::consumer::PullConsumer =
                    stream.get_consumer(&name).await.expect("consumer");
                let mut messages = consumer
                    .stream()
                    .max_messages_per_batch(WINDOW)
                    .expires(std::time::Duration::from_millis(200))
                    .messages()
                    .await
                    .expect("messages");
                while done.load(std::sync::atomic::Ordering::Acquire) < N {
                    let next = tokio::time::timeout(
                        std::time::Duration::from_millis(200),
                        messages.next(),
                    )
                    .await;
                    let Ok(Some(m)) = next else { continue };
                    m.expect("message").ack().await.expect("ack");
                    done.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    // Every ack reached the server (sent in order before this request).
    let _ = js.get_stream("WORK").await.expect("stream");
    N as f64 / start.elapsed().as_secs_f64()
}

async fn redis_load(con: &mut redis::aio::MultiplexedConnection) {
    let p = payload(SIZE);
    let mut sent = 0;
    while sent < N {
        let mut pipe = redis::pipe();
        for _ in 0..1000 {
            pipe.cmd("XADD")
                .arg("work")
                .arg("*")
                .arg("d")
                .arg(&p[..])
                .ignore();
        }
        let () = pipe.query_async(con).await.expect("XADD");
        sent += 1000;
    }
}

/// `workers` consumers of Redis group `group`: XREADGROUP a window, XACK
/// it: messages per second.
async fn redis_run(client: &redis::Client, group: &str, workers: usize) -> f64 {
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("work")
        .arg(group)
        .arg("0")
        .query_async(&mut con)
        .await
        .expect("XGROUP");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|i| {
            let (client, group, done) = (client.clone(), group.to_owned(), done.clone());
            tokio::spawn(async move {
                // Its own connection: a multiplexed one would share a socket.
                let mut con = client
                    .get_multiplexed_async_connection()
                    .await
                    .expect("redis");
                while done.load(std::sync::atomic::Ordering::Acquire) < N {
                    let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
                        .arg("GROUP")
                        .arg(&group)
                        .arg(format!("w{i}"))
                        .arg("COUNT")
                        .arg(WINDOW)
                        .arg("BLOCK")
                        .arg(100)
                        .arg("STREAMS")
                        .arg("work")
                        .arg(">")
                        .query_async(&mut con)
                        .await
                        .expect("XREADGROUP");
                    let Some(key) = reply.keys.first() else {
                        continue;
                    };
                    let ids: Vec<&str> = key.ids.iter().map(|id| id.id.as_str()).collect();
                    let n: usize = redis::cmd("XACK")
                        .arg("work")
                        .arg(&group)
                        .arg(&ids)
                        .query_async(&mut con)
                        .await
                        .expect("XACK");
                    done.fetch_add(n, std::sync::atomic::Ordering::AcqRel);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    N as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    ensure_installed("nats-server", "nats-server");
    ensure_installed("redis-server", "redis-server");
    let dir = tempfile::tempdir().unwrap();
    let (_fanlog, fanlog_port) = start_fanlog(dir.path());
    let (_nats, nats_port) = start_nats(dir.path());
    let (_redis, redis_port) = start_redis(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fanlog_addr = format!("127.0.0.1:{fanlog_port}");
    let results = rt.block_on(async {
        eprintln!("loading {N} messages of {SIZE} B into fanlog, JetStream and Redis");
        fanlog_load(&fanlog_addr).await;
        let nats = async_nats::connect(format!("127.0.0.1:{nats_port}"))
            .await
            .expect("nats");
        let js = async_nats::jetstream::new(nats);
        js_load(&js).await;
        let redis = redis::Client::open(format!("redis://127.0.0.1:{redis_port}/")).expect("redis");
        let mut con = redis
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        redis_load(&mut con).await;
        let mut results = Vec::new();
        for w in WORKERS {
            eprintln!("{w} worker(s): fanlog");
            let f = fanlog_run(&fanlog_addr, &format!("g{w}"), w).await;
            eprintln!("{w} worker(s): JetStream");
            let j = js_run(&js, &format!("c{w}"), w).await;
            eprintln!("{w} worker(s): Redis");
            let r = redis_run(&redis, &format!("g{w}"), w).await;
            eprintln!("{w} worker(s): fanlog {f:.0}/s, JetStream {j:.0}/s, Redis {r:.0}/s");
            results.push((w, f, j, r));
        }
        results
    });
    let mut rows = Vec::new();
    for (w, f, j, r) in results {
        for (peer, value) in [
            ("JetStream pull, explicit ack", j),
            ("Redis XREADGROUP/XACK", r),
        ] {
            rows.push(Row {
                what: format!(
                    "shared group, {w} worker{} (msgs/s, acked)",
                    if w == 1 { "" } else { "s" }
                ),
                fanlog: f,
                peer,
                peer_value: value,
                unit: "/s",
                target: None,
                lower_is_better: false,
            });
        }
    }
    print_table(&rows);
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/work-bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("report.html"),
        html(
            "Work-sharing groups: fanlog vs JetStream and Redis, one run",
            &rows,
        ),
    )
    .unwrap();
    println!("report: {}", out.join("report.html").display());
}
