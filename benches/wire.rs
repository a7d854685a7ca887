//! Wire benchmarks: the frame codec, and publish / subscribe end to end over
//! loopback TCP and QUIC through the client (1 KiB messages, batches of 64,
//! 16 batches in flight). QUIC is reported beside TCP from the same run.
//!
//! Run: `cargo bench --bench wire` (HTML report in target/criterion/report).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "common/raw.rs"]
mod raw;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fanlog::Durability;
use fanlog::client::{Client, ConnectOptions, Event, StartFrom};
use fanlog::protocol::Message;
use fanlog::protocol::frame::{self, Frame, Records, WireMessage};
use fanlog::protocol::record::RecordParts;
use futures_util::StreamExt;

const SIZES: [usize; 3] = [64, 1024, 16 * 1024];
const BATCH: usize = 64;

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    for size in SIZES {
        let payload = vec![0x42u8; size];
        let msgs: Vec<WireMessage<'_>> = (0..BATCH)
            .map(|_| WireMessage {
                producer: None,
                key: b"",
                meta: b"",
                payload: &payload,
            })
            .collect();
        let publish = Frame::Publish {
            topic: "bench",
            messages: msgs,
        };
        let mut buf = Vec::with_capacity(BATCH * (size + 64));
        g.throughput(Throughput::Bytes((BATCH * size) as u64));
        g.bench_with_input(BenchmarkId::new("encode_publish", size), &size, |b, _| {
            b.iter(|| {
                buf.clear();
                publish.encode(1, &mut buf).unwrap();
                black_box(&buf);
            })
        });
        let encoded = buf.clone();
        g.bench_with_input(BenchmarkId::new("decode_publish", size), &size, |b, _| {
            b.iter(|| black_box(frame::decode(&encoded, 64 << 20).unwrap()))
        });
        let mut recs = Vec::new();
        for seq in 0..BATCH as u64 {
            RecordParts {
                seq,
                timestamp_us: 1,
                producer: None,
                meta: &[],
                key: b"",
                payload: &payload,
            }
            .encode(&mut recs)
            .unwrap();
        }
        let mut deliver = Vec::new();
        Frame::Deliver {
            sub: 1,
            records: Records {
                count: BATCH as u32,
                bytes: &recs,
            },
        }
        .encode(0, &mut deliver)
        .unwrap();
        g.bench_with_input(
            BenchmarkId::new("decode_deliver_verified", size),
            &size,
            |b, _| {
                b.iter(|| {
                    let Some((_, Frame::Deliver { records, .. }, _)) =
                        frame::decode(&deliver, 64 << 20).unwrap()
                    else {
                        unreachable!()
                    };
                    for r in records.iter() {
                        black_box(r.unwrap().0.payload());
                    }
                })
            },
        );
    }
    g.finish();
}

fn end_to_end(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::config(Durability::Interval(Duration::from_millis(100)), 64 << 20);
    cfg.topic.retention_bytes = Some(512 << 20);
    let server = rt.block_on(common::TestServer::start(dir.path(), &cfg));
    let mut quic_opts = server.quic_options();
    quic_opts.window = 32 << 20;
    let transports: [(&str, ConnectOptions); 2] =
        [("tcp", server.tcp_options()), ("quic", quic_opts)];
    let payload = bytes::Bytes::from(vec![0x17u8; 1024]);

    let mut g = c.benchmark_group("e2e_publish_1KiB_batch64");
    g.measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, opts) in &transports {
        let client = rt.block_on(Client::connect_with(opts.clone())).unwrap();
        let topic = format!("pub-{name}");
        g.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    let mut inflight = std::collections::VecDeque::new();
                    for _ in 0..iters {
                        let msgs: Vec<Message> =
                            (0..BATCH).map(|_| Message::new(payload.clone())).collect();
                        inflight.push_back(client.publish_batch(&topic, msgs));
                        if inflight.len() >= 16 {
                            inflight.pop_front().unwrap().await.unwrap();
                        }
                    }
                    for f in inflight {
                        f.await.unwrap();
                    }
                    t.elapsed()
                })
            })
        });
    }
    g.finish();

    // Subscribe: catch up on 64 Ki messages of 1 KiB from seq 0.
    const N: usize = 64 * 1024;
    let mut g = c.benchmark_group("e2e_subscribe_1KiB_catchup");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(N as u64));
    let loader = rt
        .block_on(Client::connect_with(server.tcp_options()))
        .unwrap();
    rt.block_on(async {
        for _ in 0..N / BATCH {
            let msgs: Vec<Message> = (0..BATCH).map(|_| Message::new(payload.clone())).collect();
            loader.publish_batch("sub", msgs).await.unwrap();
        }
    });
    // Baselines: the same bytes through bare transports, no broker.
    g.bench_function("raw_tcp_pump", |b| {
        b.iter_custom(|iters| rt.block_on(raw_tcp_pump(iters, N * 1024)))
    });
    g.bench_function("raw_quic_pump", |b| {
        b.iter_custom(|iters| rt.block_on(raw_quic_pump(iters, N * 1024, dir.path())))
    });
    for (name, opts) in &transports {
        let client = rt.block_on(Client::connect_with(opts.clone())).unwrap();
        g.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        let mut sub = client.subscribe("sub", StartFrom::Seq(0)).await.unwrap();
                        for _ in 0..N {
                            match sub.next().await {
                                Some(Ok(Event::Record(d))) => {
                                    black_box(d.payload());
                                }
                                other => panic!("{other:?}"),
                            }
                        }
                    }
                    t.elapsed()
                })
            })
        });
    }
    g.finish();
    rt.block_on(server.stop());
}

/// Moves `bytes` over a loopback TCP connection in 64 KiB writes, `iters` times.
async fn raw_tcp_pump(iters: u64, bytes: usize) -> Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sender = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let chunk = vec![0x5Au8; 64 << 10];
        for _ in 0..iters as usize * bytes / chunk.len() {
            s.write_all(&chunk).await.unwrap();
        }
    });
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = vec![0u8; 256 << 10];
    let t = Instant::now();
    let mut got = 0;
    while got < iters as usize * bytes {
        got += c.read(&mut buf).await.unwrap();
    }
    let elapsed = t.elapsed();
    sender.await.unwrap();
    elapsed
}

/// The same over one quinn stream, with fanlog's QUIC settings and certificate.
async fn raw_quic_pump(iters: u64, bytes: usize, dir: &std::path::Path) -> Duration {
    raw::raw_quic(iters as usize * bytes, false, dir).await
}

criterion_group!(benches, codec, end_to_end);
criterion_main!(benches);
