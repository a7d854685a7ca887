//! fanlog side by side with NATS JetStream, core NATS and Redis Streams on
//! this machine, in one run. Run: `cargo bench --bench compare`.
//!
//! Installs `nats-server` and `redis-server` with apt when missing (as root),
//! starts them on loopback with their data in a temporary directory (NATS
//! with JetStream file storage, Redis without persistence), and drives each
//! peer through its official Rust client (async-nats, redis). fanlog's
//! figures come from its own load tool, `fanlog bench --json`, against a
//! broker it starts in-process. Same message size (1 KiB unless stated), one
//! producer, the same window of about 1,000 messages in flight, the same
//! acknowledgement semantics (a fanlog ack means in the log, a JetStream ack
//! means stored). Prints a table of ratios and writes
//! target/compare/report.html.

use std::collections::VecDeque;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

const SIZE: usize = 1024;
const WINDOW: usize = 1000;

#[path = "common/peers.rs"]
mod peers;
#[path = "common/raw.rs"]
mod raw;
use peers::*;

fn fanlog_bench(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_fanlog"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .stderr(Stdio::inherit())
        .output()
        .expect("run fanlog bench");
    assert!(out.status.success(), "fanlog bench {args:?} failed");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().expect("output")).expect("JSON line")
}

fn num(v: &serde_json::Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

async fn js_publish(
    js: &async_nats::jetstream::Context,
    subject: &str,
    n: usize,
    size: usize,
) -> f64 {
    let p = payload(size);
    let start = Instant::now();
    let mut window = VecDeque::new();
    for _ in 0..n {
        window.push_back(
            js.publish(subject.to_owned(), p.clone())
                .await
                .expect("publish"),
        );
        if window.len() >= WINDOW {
            window.pop_front().unwrap().await.expect("ack");
        }
    }
    for ack in window {
        ack.await.expect("ack");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn js_consume(js: &async_nats::jetstream::Context, stream: &str, n: usize) -> f64 {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
    let stream = js.get_stream(stream).await.expect("stream");
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let start = Instant::now();
    let mut messages = consumer.messages().await.expect("messages");
    for _ in 0..n {
        messages.next().await.expect("message").expect("ok");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Core NATS, 1 publisher and `subs` subscribers: deliveries per second,
/// and the p99 latency in µs when paced at `rate`.
async fn nats_pubsub(
    client: &async_nats::Client,
    subs: usize,
    n: usize,
    size: usize,
    rate: Option<u64>,
) -> (f64, f64) {
    let subject = format!("bench.{}", rand::random::<u32>());
    let base = Instant::now();
    let mut readers = Vec::new();
    for _ in 0..subs {
        let mut sub = client.subscribe(subject.clone()).await.expect("subscribe");
        readers.push(tokio::spawn(async move {
            let mut hist =
                hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let mut got = 0;
            while got < n {
                match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
                    Ok(Some(m)) => {
                        let sent = u64::from_le_bytes(m.payload[..8].try_into().unwrap());
                        let now = base.elapsed().as_nanos() as u64;
                        hist.saturating_record((now.saturating_sub(sent) / 1000).max(1));
                        got += 1;
                    }
                    _ => break, // a slow subscriber lost messages: count what came
                }
            }
            (got, hist)
        }));
    }
    client.flush().await.expect("flush");
    let start = Instant::now();
    for i in 0..n {
        let due = rate.map(|r| start + Duration::from_secs_f64((i + 1) as f64 / r as f64));
        if let Some(d) = due {
            tokio::time::sleep_until(d.into()).await;
        }
        let sched = due.unwrap_or_else(Instant::now);
        let mut p = vec![0u8; size];
        p[..8].copy_from_slice(&(sched.duration_since(base).as_nanos() as u64).to_le_bytes());
        client
            .publish(subject.clone(), p.into())
            .await
            .expect("publish");
        if i % 1000 == 999 {
            client.flush().await.expect("flush");
        }
    }
    client.flush().await.expect("flush");
    let mut total = 0;
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for r in readers {
        let (got, h) = r.await.unwrap();
        total += got;
        hist.add(&h).unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    (total as f64 / secs, hist.value_at_quantile(0.99) as f64)
}

async fn redis_xadd(con: &mut redis::aio::MultiplexedConnection, n: usize, size: usize) -> f64 {
    let p = payload(size);
    let start = Instant::now();
    let mut sent = 0;
    while sent < n {
        let k = WINDOW.min(n - sent);
        let mut pipe = redis::pipe();
        for _ in 0..k {
            pipe.cmd("XADD")
                .arg("bench")
                .arg("*")
                .arg("d")
                .arg(&p[..])
                .ignore();
        }
        let () = pipe.query_async(con).await.expect("XADD");
        sent += k;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn redis_xread(con: &mut redis::aio::MultiplexedConnection, n: usize) -> f64 {
    let start = Instant::now();
    let mut last = "0-0".to_owned();
    let mut got = 0;
    while got < n {
        let reply: redis::streams::StreamReadReply = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(WINDOW)
            .arg("STREAMS")
            .arg("bench")
            .arg(&last)
            .query_async(con)
            .await
            .expect("XREAD");
        let Some(key) = reply.keys.first() else { break };
        for id in &key.ids {
            last.clone_from(&id.id);
            got += 1;
        }
    }
    got as f64 / start.elapsed().as_secs_f64()
}

/// Raw loopback TCP: bytes per second of 16 KiB writes through one socket.
async fn raw_tcp_bytes_per_s(total: usize) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let w = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let chunk = vec![1u8; 16 << 10];
        for _ in 0..total / chunk.len() {
            s.write_all(&chunk).await.unwrap();
        }
    });
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = vec![0u8; 256 << 10];
    let start = Instant::now();
    let mut got = 0;
    while got < total {
        got += c.read(&mut buf).await.unwrap();
    }
    w.await.unwrap();
    got as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would run us with
    // other flags: only run for real under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    ensure_installed("nats-server", "nats-server");
    ensure_installed("redis-server", "redis-server");
    let dir = tempfile::tempdir().unwrap();
    let (_nats, nats_port) = start_nats(dir.path());
    let (_redis, redis_port) = start_redis(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    const N: usize = 200_000;

    eprintln!(
        "fanlog: durable publish, catch-up, e2e, latency, fanout, 16 KiB, fsync always, QUIC"
    );
    let f_pub = fanlog_bench(&[
        "publish",
        "--count",
        &N.to_string(),
        "--batch",
        "64",
        "--inflight",
        "16",
    ]);
    let f_con = fanlog_bench(&["consume", "--count", &N.to_string()]);
    let f_e2e = fanlog_bench(&["e2e", "--count", &N.to_string()]);
    let f_lat = fanlog_bench(&[
        "e2e",
        "--count",
        "100000",
        "--rate",
        "20000",
        "--batch",
        "1",
        "--inflight",
        "1000",
    ]);
    let f_fan = fanlog_bench(&["fanout", "--count", "20000", "--consumers", "100"]);
    let f_16k = fanlog_bench(&[
        "publish", "--size", "16384", "--count", "20000", "--batch", "16",
    ]);
    // fsync timings suffer from earlier runs' writeback: start each from a
    // clean page cache. Eight producers, each pipelining single-message
    // publishes (as a real producer does), against one producer that waits
    // for each sync.
    let _ = Command::new("sync").status();
    let f_gc = fanlog_bench(&[
        "publish",
        "--fsync",
        "always",
        "--producers",
        "8",
        "--batch",
        "1",
        "--count",
        "40000",
        "--inflight",
        "64",
    ]);
    let _ = Command::new("sync").status();
    let f_one = fanlog_bench(&[
        "publish",
        "--fsync",
        "always",
        "--producers",
        "1",
        "--batch",
        "1",
        "--count",
        "1000",
        "--inflight",
        "1",
    ]);
    // The browser edges, subscribers on WebSocket / SSE beside TCP.
    let edge = |transport: &str| {
        let fan = fanlog_bench(&[
            "fanout",
            "--count",
            "20000",
            "--consumers",
            "100",
            "--transport",
            transport,
        ]);
        let lat = fanlog_bench(&[
            "e2e",
            "--count",
            "20000",
            "--rate",
            "5000",
            "--batch",
            "1",
            "--transport",
            transport,
        ]);
        (fan, lat)
    };
    let (t_fan, t_lat) = edge("tcp");
    let (w_fan, w_lat) = edge("ws");
    let (s_fan, s_lat) = edge("sse");
    let f_qpub = fanlog_bench(&["publish", "--transport", "quic", "--count", &N.to_string()]);
    let f_qcon = fanlog_bench(&["consume", "--transport", "quic", "--count", &N.to_string()]);

    let (js_pub, js_con, nats_e2e, nats_lat, nats_fan, rx_add, rx_read, raw) = rt.block_on(async {
        eprintln!("NATS JetStream, core NATS, Redis Streams, raw TCP");
        let client = async_nats::connect(format!("127.0.0.1:{nats_port}"))
            .await
            .expect("nats");
        let js = async_nats::jetstream::new(client.clone());
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "BENCH".into(),
            subjects: vec!["js.bench".into()],
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("stream");
        let js_pub = js_publish(&js, "js.bench", N, SIZE).await;
        let js_con = js_consume(&js, "BENCH", N).await;
        let (nats_e2e, _) = nats_pubsub(&client, 1, N, SIZE, None).await;
        let (_, nats_lat) = nats_pubsub(&client, 1, 100_000, SIZE, Some(20_000)).await;
        let (nats_fan, _) = nats_pubsub(&client, 100, 20_000, SIZE, None).await;
        let redis = redis::Client::open(format!("redis://127.0.0.1:{redis_port}/")).expect("redis");
        let mut con = redis
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection");
        let rx_add = redis_xadd(&mut con, N, SIZE).await;
        let rx_read = redis_xread(&mut con, N).await;
        let raw = raw_tcp_bytes_per_s(1 << 30).await;
        (
            js_pub, js_con, nats_e2e, nats_lat, nats_fan, rx_add, rx_read, raw,
        )
    });
    // One quinn stream with fanlog's QUIC settings, both ways, as 1 KiB
    // messages per second.
    let (quic_up, quic_down) = rt.block_on(async {
        eprintln!("raw quinn stream, both ways");
        let total = 256 << 20;
        let per_s = |d: Duration| (total / SIZE) as f64 / d.as_secs_f64();
        let up = per_s(raw::raw_quic(total, true, dir.path()).await);
        let down = per_s(raw::raw_quic(total, false, dir.path()).await);
        (up, down)
    });

    let f16_bytes = num(&f_16k, "mb_per_s") * 1e6;
    // Targets: the "must hold" ratios of the latest performance issue.
    let mut rows = vec![
        Row {
            what: "durable publish 1 KiB (msgs/s)".into(),
            fanlog: num(&f_pub, "msgs_per_s"),
            peer: "NATS JetStream",
            peer_value: js_pub,
            unit: "/s",
            target: Some(5.0),
            lower_is_better: false,
        },
        Row {
            what: "durable publish 1 KiB (msgs/s)".into(),
            fanlog: num(&f_pub, "msgs_per_s"),
            peer: "Redis XADD",
            peer_value: rx_add,
            unit: "/s",
            target: Some(3.0),
            lower_is_better: false,
        },
        Row {
            what: "catch-up consume (msgs/s)".into(),
            fanlog: num(&f_con, "msgs_per_s"),
            peer: "NATS JetStream",
            peer_value: js_con,
            unit: "/s",
            target: Some(4.0),
            lower_is_better: false,
        },
        Row {
            what: "catch-up consume (msgs/s)".into(),
            fanlog: num(&f_con, "msgs_per_s"),
            peer: "Redis XREAD",
            peer_value: rx_read,
            unit: "/s",
            target: None,
            lower_is_better: false,
        },
        Row {
            what: "e2e live, max rate (msgs/s)".into(),
            fanlog: num(&f_e2e, "msgs_per_s"),
            peer: "core NATS",
            peer_value: nats_e2e,
            unit: "/s",
            target: Some(1.0),
            lower_is_better: false,
        },
        Row {
            what: "e2e p99 at 20,000 msgs/s (us)".into(),
            fanlog: num(&f_lat, "p99_us"),
            peer: "core NATS",
            peer_value: nats_lat,
            unit: "us",
            target: Some(1.0),
            lower_is_better: true,
        },
        Row {
            what: "fanout to 100 (deliveries/s)".into(),
            fanlog: num(&f_fan, "msgs_per_s"),
            peer: "core NATS",
            peer_value: nats_fan,
            unit: "/s",
            target: Some(3.0),
            lower_is_better: false,
        },
        Row {
            what: "16 KiB batched publish (bytes/s)".into(),
            fanlog: f16_bytes,
            peer: "raw loopback TCP",
            peer_value: raw,
            unit: "B/s",
            target: Some(0.4),
            lower_is_better: false,
        },
        Row {
            what: "fsync always: 8 producers vs 1 (msgs/s)".into(),
            fanlog: num(&f_gc, "msgs_per_s"),
            peer: "fanlog, 1 producer",
            peer_value: num(&f_one, "msgs_per_s"),
            unit: "/s",
            target: Some(20.0),
            lower_is_better: false,
        },
        Row {
            what: "QUIC publish vs a raw quinn stream (1 KiB msgs/s)".into(),
            fanlog: num(&f_qpub, "msgs_per_s"),
            peer: "raw quinn stream",
            peer_value: quic_up,
            unit: "/s",
            target: Some(0.8),
            lower_is_better: false,
        },
        Row {
            what: "QUIC consume vs a raw quinn stream (1 KiB msgs/s)".into(),
            fanlog: num(&f_qcon, "msgs_per_s"),
            peer: "raw quinn stream",
            peer_value: quic_down,
            unit: "/s",
            target: Some(0.8),
            lower_is_better: false,
        },
        Row {
            what: "QUIC vs TCP publish (msgs/s)".into(),
            fanlog: num(&f_qpub, "msgs_per_s"),
            peer: "fanlog over TCP",
            peer_value: num(&f_pub, "msgs_per_s"),
            unit: "/s",
            target: Some(0.7),
            lower_is_better: false,
        },
        Row {
            what: "QUIC vs TCP consume (msgs/s)".into(),
            fanlog: num(&f_qcon, "msgs_per_s"),
            peer: "fanlog over TCP",
            peer_value: num(&f_con, "msgs_per_s"),
            unit: "/s",
            target: Some(0.7),
            lower_is_better: false,
        },
    ];
    // The browser edges beside TCP, from the same run.
    for (edge, fan, lat) in [("WebSocket", &w_fan, &w_lat), ("SSE", &s_fan, &s_lat)] {
        rows.push(Row {
            what: format!("{edge} vs TCP fanout to 100 (deliveries/s)"),
            fanlog: num(fan, "msgs_per_s"),
            peer: "fanlog over TCP",
            peer_value: num(&t_fan, "msgs_per_s"),
            unit: "/s",
            target: None,
            lower_is_better: false,
        });
        rows.push(Row {
            what: format!("{edge} vs TCP e2e p99 at 5,000/s (us)"),
            fanlog: num(lat, "p99_us"),
            peer: "fanlog over TCP",
            peer_value: num(&t_lat, "p99_us"),
            unit: "us",
            target: None,
            lower_is_better: true,
        });
    }
    print_table(&rows);
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/compare");
    std::fs::create_dir_all(&out).unwrap();
    // Each run is kept; the report shows the one before beside this one.
    let previous = save_run(&out.join("runs"), &rows);
    std::fs::write(
        out.join("report.html"),
        html_beside(
            "fanlog vs peers, one run on this machine",
            &rows,
            previous.as_ref(),
        ),
    )
    .unwrap();
    println!("report: {}", out.join("report.html").display());
}
