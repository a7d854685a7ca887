//! Log benchmarks: append, catch-up read and in-process publish-to-subscriber
//! latency. Every group measures a raw baseline in the same run so results
//! read as a fraction of what the machine does with no log at all:
//! - append: memcpy of the same payloads into a fresh, preallocated,
//!   prefaulted mmap of the segment's size;
//! - read: memcpy of the same payloads out of an mmap;
//! - latency: a ping-pong over a tokio channel between the same two tasks.
//!
//! Run: `cargo bench --bench log` (HTML report in target/criterion/report).

use std::fs::OpenOptions;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fanlog::{Broker, BrokerConfig, Durability, Event, Message, StartFrom, TopicConfig};
use futures_util::{FutureExt, StreamExt};
use memmap2::{Advice, MmapMut, MmapOptions};

const SIZES: [usize; 3] = [64, 1024, 16 * 1024];
const BATCHES: [usize; 3] = [1, 64, 1024];
const SEGMENT: u64 = 64 << 20;

fn config() -> BrokerConfig {
    BrokerConfig {
        topic: TopicConfig {
            durability: Durability::Interval(Duration::from_millis(100)),
            segment_bytes: SEGMENT,
            // Keep the disk footprint bounded however long criterion runs.
            retention_bytes: Some(4 * SEGMENT),
            ..TopicConfig::default()
        },
        ..BrokerConfig::default()
    }
}

/// A fresh, preallocated, prefaulted file mapping, like a new segment.
// The raw baseline is not fanlog's code: the one `unsafe` outside
// storage/src/local/mmap.rs, allowed here by name.
#[allow(unsafe_code)]
fn fresh_map(path: &Path) -> MmapMut {
    let _ = std::fs::remove_file(path);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.set_len(SEGMENT).unwrap();
    // SAFETY: the file is private to this benchmark; nothing else maps or
    // truncates it while the mapping lives.
    let m = unsafe { MmapOptions::new().len(SEGMENT as usize).map_mut(&f) }.unwrap();
    let _ = m.advise(Advice::PopulateWrite);
    m
}

/// The raw baseline: sequential memcpy into mmaps, rolling to a fresh file
/// when one is full.
struct RawAppender {
    path: std::path::PathBuf,
    map: MmapMut,
    pos: usize,
}

impl RawAppender {
    fn new(dir: &Path) -> Self {
        let path = dir.join("raw.bin");
        let map = fresh_map(&path);
        Self { path, map, pos: 0 }
    }

    fn append(&mut self, payload: &[u8]) {
        if self.pos + payload.len() > self.map.len() {
            self.map = fresh_map(&self.path);
            self.pos = 0;
        }
        self.map[self.pos..self.pos + payload.len()].copy_from_slice(payload);
        self.pos += payload.len();
    }
}

fn append(c: &mut Criterion) {
    for size in SIZES {
        let mut g = c.benchmark_group(format!("append/{size}B"));
        g.measurement_time(Duration::from_secs(3))
            .warm_up_time(Duration::from_secs(1));
        for batch in BATCHES {
            g.throughput(Throughput::Bytes((size * batch) as u64));
            let payload = Bytes::from(vec![0xA5u8; size]);
            let dir = tempfile::tempdir().unwrap();
            let mut raw = RawAppender::new(dir.path());
            g.bench_with_input(
                BenchmarkId::new("raw_memcpy_mmap", batch),
                &batch,
                |b, &n| {
                    b.iter(|| {
                        for _ in 0..n {
                            raw.append(&payload);
                        }
                    })
                },
            );
            drop(raw);
            let broker = Broker::open(dir.path().join("data"), config()).unwrap();
            let msgs: Vec<Message> = (0..batch).map(|_| Message::new(payload.clone())).collect();
            g.bench_with_input(
                BenchmarkId::new("fanlog_interval", batch),
                &batch,
                |b, _| {
                    b.iter(|| {
                        // Under Interval durability a publish completes without waiting.
                        let seqs = broker
                            .publish_batch("bench", &msgs)
                            .now_or_never()
                            .unwrap()
                            .unwrap();
                        black_box(seqs);
                    })
                },
            );
        }
        g.finish();
    }
}

fn read(c: &mut Criterion) {
    for size in SIZES {
        let mut g = c.benchmark_group(format!("read/{size}B"));
        g.measurement_time(Duration::from_secs(3))
            .warm_up_time(Duration::from_secs(1));
        let n = (48 << 20) / size; // 48 MiB of payload: one segment's worth
        g.throughput(Throughput::Bytes((n * size) as u64));
        let dir = tempfile::tempdir().unwrap();
        let payload = Bytes::from(vec![0x5Au8; size]);

        let mut raw = RawAppender::new(dir.path());
        for _ in 0..n {
            raw.append(&payload);
        }
        let mut out = vec![0u8; size];
        g.bench_function("raw_memcpy_mmap", |b| {
            b.iter(|| {
                for i in 0..n {
                    out.copy_from_slice(&raw.map[i * size..(i + 1) * size]);
                    black_box(&out);
                }
            })
        });

        let broker = Broker::open(dir.path().join("data"), config()).unwrap();
        let msgs: Vec<Message> = (0..1024).map(|_| Message::new(payload.clone())).collect();
        let mut left = n;
        while left > 0 {
            let k = left.min(1024);
            broker
                .publish_batch("bench", &msgs[..k])
                .now_or_never()
                .unwrap()
                .unwrap();
            left -= k;
        }
        g.bench_function("fanlog_catchup", |b| {
            b.iter(|| {
                let mut from = 0;
                loop {
                    let batch = broker.read("bench", from, 1024).unwrap();
                    if batch.records.is_empty() {
                        break;
                    }
                    for r in &batch.records {
                        out.copy_from_slice(r.payload());
                        black_box(&out);
                    }
                    from = batch.next;
                }
            })
        });
        g.finish();
    }
}

fn latency(c: &mut Criterion) {
    let mut g = c.benchmark_group("latency/64B");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // Baseline: ping-pong over tokio channels between two tasks.
    let (ping_tx, mut ping_rx) = tokio::sync::mpsc::channel::<u64>(1);
    let (pong_tx, mut pong_rx) = tokio::sync::mpsc::channel::<u64>(1);
    rt.spawn(async move {
        while let Some(v) = ping_rx.recv().await {
            if pong_tx.send(v).await.is_err() {
                break;
            }
        }
    });
    g.bench_function("raw_channel_roundtrip", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for i in 0..iters {
                    ping_tx.send(i).await.unwrap();
                    black_box(pong_rx.recv().await.unwrap());
                }
                t.elapsed()
            })
        })
    });

    // fanlog: publish, a subscriber task reads it from the log and answers.
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(dir.path(), config()).unwrap();
    let mut sub = broker.subscribe("lat", StartFrom::Latest).unwrap();
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::channel::<u64>(1);
    rt.spawn(async move {
        while let Some(Ok(Event::Record(r))) = sub.next().await {
            if ack_tx.send(r.seq()).await.is_err() {
                break;
            }
        }
    });
    let msg = Message::new(vec![7u8; 64]);
    g.bench_function("fanlog_publish_to_subscriber_roundtrip", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    let seq = broker.publish("lat", msg.clone()).await.unwrap();
                    assert_eq!(ack_rx.recv().await.unwrap(), seq);
                }
                t.elapsed()
            })
        })
    });
    g.finish();
}

criterion_group!(benches, append, read, latency);
criterion_main!(benches);
