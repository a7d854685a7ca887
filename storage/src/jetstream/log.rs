//! One topic's log in cluster mode: publishes go to the topic's stream,
//! reads come from this edge's tail of it.
//!
//! - **Append**: each entry is encoded as a fanlog record (seq and time
//!   left 0: the stream numbers it) and published with a `Nats-Msg-Id`.
//!   One task per topic sends in call order; the PubAcks give the seqs.
//!   A publish whose ack does not come (a leader election) is resent with
//!   the same id until `publish_timeout`, so the stream stores it once.
//! - **Tail**: one ordered consumer per topic per edge appends every
//!   stored message, renumbered with the stream's sequence and time, to
//!   an in-memory run of [`Record`]s bounded by `cache_bytes`. The
//!   readable head moves as they arrive; every local subscriber reads
//!   the tail, so the engine sends each message to an edge once.
//! - **Cold reads** (below the tail): blocks of about [`BLOCK_BYTES`]
//!   fetched by one bounded pull each, one fetch per block whoever asks,
//!   kept in a cache of half `cache_bytes`; readers are woken when a
//!   block lands.
//! - **Retention**: the stream's limits remove from the front; the tail
//!   task polls the stream's first sequence, and readers below it get the
//!   same gap as from the local log.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::context::{Publish, PublishErrorKind};
use async_nats::jetstream::stream::Stream as JsStream;
use bytes::Bytes;
use fanlog_protocol::TopicName;
use fanlog_protocol::record::{RecordParts, RecordView};
use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, oneshot, watch};

use super::{ClusterOptions, Engine};
use crate::{
    AckFuture, Appending, Durable, Entry, ReadAt, ReadCursor, Record, RecoveryReport, Result,
    StorageError, TopicConfig, TopicLog,
};

/// The bytes a cold-read block aims at: its length in records is this
/// over the topic's typical record size (a power of two, 16 to 2048), so
/// that readers near each other share one fetch, whatever the sizes.
const BLOCK_BYTES: usize = 4 << 20;
/// A fetch stops past twice [`BLOCK_BYTES`] (after at least one record),
/// also when the records are larger than the typical ones.
const BLOCK_CAP: usize = 2 * BLOCK_BYTES;
const MIN_BLOCK: u64 = 16;
const MAX_BLOCK: u64 = 2048;
/// Bytes of cold blocks kept per topic at least; more is half of
/// `cache_bytes` (the oldest go first; the newest stays whatever its size).
const MIN_COLD_BYTES: usize = 8 << 20;

struct Tail {
    /// The seq of `records[0]` (the next seq when empty).
    base: u64,
    records: VecDeque<Record>,
    bytes: usize,
    last_ts: u64,
}

impl Tail {
    fn next(&self) -> u64 {
        self.base + self.records.len() as u64
    }
}

/// Records fetched from below the tail: the seqs `start..end` as they
/// were found (records removed by retention meanwhile are missing from
/// the front).
struct Block {
    start: u64,
    end: u64,
    records: Vec<Record>,
    bytes: usize,
}

impl Block {
    fn get(&self, seq: u64) -> Option<&Record> {
        let first = self.records.first()?.seq();
        let r = self
            .records
            .get(usize::try_from(seq.checked_sub(first)?).ok()?)?;
        (r.seq() == seq).then_some(r)
    }
}

#[derive(Default)]
struct Cold {
    /// By start seq.
    blocks: BTreeMap<u64, Arc<Block>>,
    /// Start seqs, oldest fetch first.
    order: VecDeque<u64>,
    bytes: usize,
    /// Start seqs of fetches under way.
    fetching: HashSet<u64>,
}

impl Cold {
    /// The block holding `seq`'s place, if fetched.
    fn covering(&self, seq: u64) -> Option<Arc<Block>> {
        let (_, b) = self.blocks.range(..=seq).next_back()?;
        (seq < b.end).then(|| b.clone())
    }

    /// Where the fetch for `seq` starts: its place in the grid of `len`
    /// records, or where a block that stopped short (large records) in
    /// the same place ended.
    fn fetch_start(&self, seq: u64, len: u64) -> u64 {
        let grid = seq - seq % len;
        self.blocks
            .range(grid..=seq)
            .map(|(_, b)| b.end)
            .filter(|&e| e <= seq)
            .max()
            .unwrap_or(grid)
    }

    fn insert(&mut self, block: Block, limit: usize) {
        let start = block.start;
        self.bytes += block.bytes;
        if let Some(old) = self.blocks.insert(start, Arc::new(block)) {
            self.bytes -= old.bytes;
            self.order.retain(|&s| s != start);
        }
        self.order.push_back(start);
        while self.bytes > limit && self.order.len() > 1 {
            if let Some(old) = self.order.pop_front().and_then(|s| self.blocks.remove(&s)) {
                self.bytes -= old.bytes;
            }
        }
    }
}

struct Shared {
    name: TopicName,
    tail: RwLock<Tail>,
    cold: Mutex<Cold>,
    readable: watch::Sender<u64>,
    durable: watch::Sender<Durable>,
    first: AtomicU64,
    bytes: AtomicU64,
    /// The stream's last sequence when `bytes` was last read from it:
    /// messages above it are added to `bytes` as they come.
    bytes_upto: AtomicU64,
    /// The stream's `max_bytes`, if any: `bytes` never says more.
    max_bytes: Option<u64>,
    /// The stream's average message size at open (for [`Shared::block_len`]
    /// until the tail holds records).
    avg_record: AtomicU64,
    closed: AtomicBool,
    cache_bytes: usize,
}

impl Shared {
    /// Records per cold block for this topic's typical record size (the
    /// tail's average, else the stream's at open), a power of two.
    fn block_len(&self) -> u64 {
        let avg = {
            let tail = self.tail.read();
            if tail.records.is_empty() {
                self.avg_record.load(Ordering::Relaxed)
            } else {
                (tail.bytes / tail.records.len()) as u64
            }
        };
        (BLOCK_BYTES as u64 / avg.max(1))
            .clamp(MIN_BLOCK, MAX_BLOCK)
            .next_power_of_two()
            .min(MAX_BLOCK)
    }

    /// Takes the stream's first seq and size from its state.
    fn refreshed(&self, state: &async_nats::jetstream::stream::State) {
        let first = state.first_sequence.saturating_sub(1);
        self.bytes.store(state.bytes, Ordering::Relaxed);
        self.bytes_upto
            .store(state.last_sequence, Ordering::Relaxed);
        if self.first.fetch_max(first, Ordering::AcqRel) < first {
            self.wake();
        }
    }

    /// Counts a message that came after the last state read into `bytes`.
    fn count_bytes(&self, stream_seq: u64, m: &async_nats::Message) {
        if stream_seq <= self.bytes_upto.load(Ordering::Relaxed) {
            return;
        }
        // JetStream's file store keeps a 30-byte frame, the subject,
        // headers and payload per message; retention keeps the sum below
        // max_bytes.
        let add = (30 + m.subject.len() + m.length) as u64;
        let max = self.max_bytes.unwrap_or(u64::MAX);
        let _ = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_add(add).min(max))
            });
    }

    fn wake(&self) {
        self.readable.send_modify(|_| {});
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake();
    }
}

/// A message on its way to the stream.
struct Outgoing {
    id: String,
    body: Bytes,
}

struct PubReq {
    msgs: Vec<Outgoing>,
    reply: oneshot::Sender<Result<Vec<u64>>>,
}

/// A topic's log held by the cluster, followed by this edge.
pub struct JsLog {
    name: TopicName,
    config: TopicConfig,
    report: RecoveryReport,
    engine: Engine,
    stream: JsStream,
    shared: Arc<Shared>,
    fetcher: Fetcher,
    publisher: mpsc::UnboundedSender<PubReq>,
    tasks: Vec<tokio::task::AbortHandle>,
    node: String,
    ids: AtomicU64,
    /// How long an ack waits for this edge's tail to hold what it
    /// acknowledges (the publish timeout).
    settle: Duration,
}

impl fmt::Debug for JsLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsLog")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl JsLog {
    pub(crate) fn open(
        engine: Engine,
        name: TopicName,
        config: TopicConfig,
        mut stream: JsStream,
        opts: &ClusterOptions,
    ) -> Result<Self> {
        let info = engine
            .block(async move {
                let i = stream.info().await.map(|i| i.state.clone());
                (stream, i)
            })
            .and_then(|(s, i)| {
                i.map(|st| (s, st))
                    .map_err(|e| StorageError::Unavailable(format!("cannot read the stream: {e}")))
            })?;
        let (stream, state) = info;
        // fanlog seq = stream sequence - 1.
        let next = state.last_sequence;
        let first = state.first_sequence.saturating_sub(1).min(next);
        let shared = Arc::new(Shared {
            name: name.clone(),
            tail: RwLock::new(Tail {
                base: next,
                records: VecDeque::new(),
                bytes: 0,
                last_ts: 0,
            }),
            cold: Mutex::new(Cold::default()),
            readable: watch::channel(next).0,
            durable: watch::channel(Durable {
                upto: next,
                failed: false,
            })
            .0,
            first: AtomicU64::new(first),
            bytes: AtomicU64::new(state.bytes),
            bytes_upto: AtomicU64::new(state.last_sequence),
            max_bytes: config.retention_bytes,
            avg_record: AtomicU64::new(state.bytes / state.messages.max(1)),
            closed: AtomicBool::new(false),
            cache_bytes: opts.cache_bytes.max(1 << 20),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let follow = engine.spawn(follow(stream.clone(), shared.clone()));
        let publish = engine.spawn(publisher(
            shared.clone(),
            engine.clone(),
            stream.clone(),
            engine.subject(&name),
            rx,
            opts.publish_timeout,
        ));
        let fetcher = Fetcher {
            shared: shared.clone(),
            stream: stream.clone(),
            engine: engine.clone(),
            subject: engine.subject(&name),
            max_bytes: BLOCK_CAP.max(config.max_message_bytes + (128 << 10)),
        };
        Ok(Self {
            name,
            config,
            report: RecoveryReport::default(),
            engine,
            stream,
            shared,
            fetcher,
            publisher: tx,
            tasks: vec![follow.abort_handle(), publish.abort_handle()],
            node: opts.node_id.clone(),
            ids: AtomicU64::new(0),
            settle: opts.publish_timeout,
        })
    }

    fn message_id(&self, e: &Entry<'_>) -> String {
        if let Some(p) = e.producer {
            return format!("p-{:x}-{}", p.id, p.seq);
        }
        if let Some(k) = e.idempotency_key {
            let mut id = String::with_capacity(2 + k.len() * 2);
            id.push_str("k-");
            for b in k {
                id.push_str(&format!("{b:02x}"));
            }
            return id;
        }
        format!(
            "g-{}-{}",
            self.node,
            self.ids.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// What cold reads need, shared by a log and its pending `warm`s.
#[derive(Clone)]
struct Fetcher {
    shared: Arc<Shared>,
    stream: JsStream,
    engine: Engine,
    subject: String,
    /// Bytes one fetch asks for: [`BLOCK_CAP`], or one largest record.
    max_bytes: usize,
}

impl Fetcher {
    /// Whether `seq` is in the tail or a fetched block.
    fn is_warm(&self, seq: u64) -> bool {
        // A read below the first seq goes on from the first (after the gap).
        let seq = seq.max(self.shared.first.load(Ordering::Acquire));
        seq >= self.shared.tail.read().base || self.shared.cold.lock().covering(seq).is_some()
    }

    /// Starts the fetch of the cold block for `seq` unless it is fetched
    /// or under way; readers are woken when it lands. Returns where that
    /// fetch starts.
    fn fetch_cold(&self, seq: u64) -> u64 {
        let len = self.shared.block_len();
        let start = {
            let mut cold = self.shared.cold.lock();
            if let Some(b) = cold.covering(seq) {
                return b.start;
            }
            let start = cold.fetch_start(seq, len);
            if !cold.fetching.insert(start) {
                return start;
            }
            start
        };
        let shared = self.shared.clone();
        let stream = self.stream.clone();
        let subject = self.subject.clone();
        let max_bytes = self.max_bytes;
        self.engine.spawn(async move {
            let end = start - start % len + len;
            let got = fetch_block(&stream, subject, &shared, start, end, max_bytes).await;
            let failed = {
                let mut cold = shared.cold.lock();
                cold.fetching.remove(&start);
                match got {
                    Ok(block) => {
                        cold.insert(block, (shared.cache_bytes / 2).max(MIN_COLD_BYTES));
                        false
                    }
                    Err(e) => {
                        tracing::warn!(topic = %shared.name, start, "cold read from the cluster failed: {e}");
                        true
                    }
                }
            };
            if failed {
                // Readers retry after a pause, not in a tight loop.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            shared.wake();
        });
        start
    }
}

/// The messages of one pull (at most `max_messages` and `max_bytes`, 0 for
/// no bound in bytes, or
/// what is there within `expires`) through an ephemeral consumer of its
/// own from `deliver_policy`, deleted after. A pull that finds no one to
/// answer it (a consumer made a moment ago, whose server's interest has
/// not reached this client's server yet: a 503 status) is sent again, for
/// up to about 2 s.
async fn pull_once(
    stream: &JsStream,
    subject: String,
    deliver_policy: DeliverPolicy,
    max_messages: usize,
    max_bytes: usize,
    expires: Duration,
) -> std::result::Result<Vec<async_nats::jetstream::Message>, String> {
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: subject,
            deliver_policy,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let name = consumer.cached_info().name.clone();
    let pulled = async {
        let mut attempts = 0;
        loop {
            let mut messages = consumer
                .batch()
                .max_messages(max_messages)
                .max_bytes(max_bytes)
                .expires(expires)
                .messages()
                .await
                .map_err(|e| e.to_string())?;
            let mut got = Vec::new();
            let mut failed = None;
            while let Some(m) = messages.next().await {
                match m {
                    Ok(m) => got.push(m),
                    // The pull ends with a status once `max_bytes` is
                    // reached: what came before it is the pull.
                    Err(e) if got.is_empty() => {
                        failed = Some(e.to_string());
                        break;
                    }
                    Err(_) => break,
                }
            }
            match failed {
                None => return Ok(got),
                Some(e) if e.contains("503") && attempts < 40 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Some(e) => return Err(e),
            }
        }
    }
    .await;
    let s = stream.clone();
    tokio::spawn(async move { s.delete_consumer(&name).await });
    pulled
}

/// Reads the records from `start` up to `end` (or the tail, or past
/// [`BLOCK_CAP`] bytes), renumbered.
async fn fetch_block(
    stream: &JsStream,
    subject: String,
    shared: &Shared,
    start: u64,
    end: u64,
    max_bytes: usize,
) -> std::result::Result<Block, String> {
    let first = shared.first.load(Ordering::Acquire);
    let end = end.min(shared.tail.read().base);
    let mut block = Block {
        start,
        end: start,
        records: Vec::new(),
        bytes: 0,
    };
    let from = start.max(first);
    if from >= end {
        // All of it removed by retention meanwhile: known empty (`end`
        // lies above `start`: fetches are for seqs below the tail).
        block.end = end.max(start + 1);
        return Ok(block);
    }
    // One pull of exactly the records wanted (bounded in bytes) through a
    // consumer of its own, not an ordered consumer's standing 500-message
    // pulls: large records would fetch far more than the block.
    let fetched = pull_once(
        stream,
        subject,
        DeliverPolicy::ByStartSequence {
            start_sequence: from + 1,
        },
        usize::try_from(end - from).unwrap_or(usize::MAX),
        max_bytes,
        Duration::from_secs(5),
    )
    .await;
    let mut last_ts = 0;
    let mut expect = from;
    for m in fetched? {
        let info = m.info().map_err(|e| e.to_string())?;
        let seq = info.stream_sequence - 1;
        let ts = published_us(info.published).max(last_ts);
        if seq > expect {
            // Retention removed the front meanwhile: readers get the gap.
            shared.first.fetch_max(seq, Ordering::AcqRel);
            if block.records.is_empty() {
                block.end = seq.min(end);
                return Ok(block);
            }
            break;
        }
        if seq < expect {
            continue;
        }
        last_ts = ts;
        let r = renumber(&m.payload, seq, ts)?;
        block.bytes += r.padded_len();
        block.records.push(r);
        expect = seq + 1;
    }
    if expect == from && block.records.is_empty() {
        return Err("the cluster sent none of the records asked for".into());
    }
    block.end = expect;
    Ok(block)
}

fn published_us(t: time::OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(0)
}

/// The stored message (a record numbered 0) numbered `seq` at `ts`.
fn renumber(body: &[u8], seq: u64, ts: u64) -> std::result::Result<Record, String> {
    let v = RecordView::parse_trusted_unpadded(body)
        .map_err(|e| format!("stream message {} is not a fanlog record: {e}", seq + 1))?;
    v.verify_checksum()
        .map_err(|e| format!("stream message {} failed its checksum: {e}", seq + 1))?;
    let parts = RecordParts {
        seq,
        timestamp_us: ts,
        producer: v.producer(),
        meta: v.meta_bytes(),
        key: v.key(),
        payload: v.payload(),
    };
    let mut buf = Vec::with_capacity(parts.padded_len());
    parts.encode(&mut buf).map_err(|e| e.to_string())?;
    Record::from_bytes(&buf[..parts.len()]).map_err(|e| e.to_string())
}

/// Follows the stream from the tail's head into the tail, for as long as
/// the log is open; polls the stream's state every second for retention
/// moving the front.
async fn follow(mut stream: JsStream, shared: Arc<Shared>) {
    let subject = stream
        .cached_info()
        .config
        .subjects
        .first()
        .cloned()
        .unwrap_or_default();
    let mut last_poll = tokio::time::Instant::now();
    while !shared.closed.load(Ordering::Acquire) {
        let start = shared.tail.read().next();
        let consumer = match stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: subject.clone(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: start + 1,
                },
                ..Default::default()
            })
            .await
        {
            Ok(c) => c,
            Err(e) => {
                if e.to_string().contains("stream not found") {
                    tracing::warn!(topic = %shared.name, "the topic's stream was deleted: closing it on this edge");
                    shared.close();
                    return;
                }
                tracing::debug!(topic = %shared.name, "cannot follow the stream yet: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(topic = %shared.name, "cannot follow the stream yet: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        let mut last_message = tokio::time::Instant::now();
        loop {
            let next = tokio::time::timeout(Duration::from_secs(1), messages.next()).await;
            if last_poll.elapsed() >= Duration::from_secs(1) {
                last_poll = tokio::time::Instant::now();
                let polled = stream.info().await;
                if let Err(e) = &polled
                    && e.to_string().contains("not found")
                {
                    tracing::info!(topic = %shared.name, "the topic's stream was deleted: closing it on this edge");
                    shared.close();
                    return;
                }
                if let Ok(info) = polled {
                    shared.refreshed(&info.state);
                    // The stream holds more than the tail and nothing came
                    // for a while: the consumer is stuck (its server died
                    // and its heartbeats have not told it yet). Make a
                    // new one rather than wait.
                    let behind = info.state.last_sequence > shared.tail.read().next();
                    if behind && last_message.elapsed() >= Duration::from_secs(2) {
                        tracing::debug!(topic = %shared.name, "the tail's consumer is stuck; making a new one");
                        break;
                    }
                }
            }
            let m = match next {
                Err(_) => continue,
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    tracing::debug!(topic = %shared.name, "following the stream: {e}; resuming");
                    break;
                }
                Ok(Some(Ok(m))) => m,
            };
            last_message = tokio::time::Instant::now();
            let Ok(info) = m.info() else { continue };
            shared.count_bytes(info.stream_sequence, &m);
            let seq = info.stream_sequence - 1;
            let ts = published_us(info.published);
            let mut tail = shared.tail.write();
            if seq < tail.next() {
                continue; // Seen before a resume.
            }
            if seq > tail.next() {
                // Retention removed what this edge had not seen yet.
                tail.records.clear();
                tail.bytes = 0;
                tail.base = seq;
                shared.first.fetch_max(seq, Ordering::AcqRel);
            }
            let ts = ts.max(tail.last_ts);
            match renumber(&m.payload, seq, ts) {
                Ok(r) => {
                    tail.bytes += r.padded_len();
                    tail.records.push_back(r);
                    tail.last_ts = ts;
                }
                Err(e) => {
                    tracing::error!(topic = %shared.name, "{e}: the edge stops following this topic");
                    drop(tail);
                    shared.close();
                    return;
                }
            }
            while tail.bytes > shared.cache_bytes && tail.records.len() > 1 {
                if let Some(r) = tail.records.pop_front() {
                    tail.bytes -= r.padded_len();
                    tail.base += 1;
                }
            }
            let head = tail.next();
            drop(tail);
            shared.durable.send_replace(Durable {
                upto: head,
                failed: false,
            });
            shared.readable.send_replace(head);
        }
        if !shared.closed.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Sends publishes in call order, without waiting for earlier acks; one
/// acker task then awaits the acks in the same order. A publish that
/// must be resent (no responders yet, a leader election) is resent by
/// that one task, so resends go out in call order too: independent
/// retries with their own timers would store a burst refused by a
/// stream not yet reachable in any order.
async fn publisher(
    shared: Arc<Shared>,
    engine: Engine,
    stream: JsStream,
    subject: String,
    mut rx: mpsc::UnboundedReceiver<PubReq>,
    timeout: Duration,
) {
    let (sent_tx, sent_rx) = mpsc::unbounded_channel();
    engine.spawn(acker(
        shared.clone(),
        engine.clone(),
        stream,
        subject.clone(),
        sent_rx,
        timeout,
    ));
    reachable(
        &shared,
        &engine,
        &subject,
        tokio::time::Instant::now() + timeout / 3,
    )
    .await;
    while let Some(req) = rx.recv().await {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut acks = Vec::with_capacity(req.msgs.len());
        for m in &req.msgs {
            acks.push(send(&engine, &subject, m).await);
        }
        if sent_tx.send((req, acks, deadline)).is_err() {
            return;
        }
    }
}

/// A sent request whose acks are being awaited.
struct InFlight {
    req: PubReq,
    /// The attempts of the messages not answered yet, in order.
    acks: VecDeque<AckWait>,
    seqs: Vec<u64>,
    deadline: tokio::time::Instant,
}

/// Awaits the acks of sent requests in order (see [`publisher`]) and
/// answers each request with its seqs. When a message must be sent again,
/// it and every later message not yet stored are sent again together, in
/// order (go-back-N), so a leader election costs one round of resends,
/// not one round trip per message in flight.
async fn acker(
    shared: Arc<Shared>,
    engine: Engine,
    stream: JsStream,
    subject: String,
    mut rx: mpsc::UnboundedReceiver<(PubReq, Vec<AckWait>, tokio::time::Instant)>,
    timeout: Duration,
) {
    // A request that waited behind another's resends still gets its own
    // time to be resent.
    let admit = |(req, acks, deadline): (PubReq, Vec<AckWait>, tokio::time::Instant)| InFlight {
        req,
        acks: acks.into(),
        seqs: Vec::new(),
        deadline: deadline.max(tokio::time::Instant::now() + timeout / 2),
    };
    let mut window: VecDeque<InFlight> = VecDeque::new();
    let mut pause = Duration::from_millis(50);
    loop {
        if window.is_empty() {
            match rx.recv().await {
                Some(sent) => window.push_back(admit(sent)),
                None => return,
            }
        }
        let Some(front) = window.front_mut() else {
            continue;
        };
        let Some(attempt) = front.acks.pop_front() else {
            if let Some(done) = window.pop_front() {
                let _ = done.req.reply.send(Ok(done.seqs));
            }
            continue;
        };
        let m = &front.req.msgs[front.seqs.len()];
        let refused = match outcome(&shared, attempt).await {
            Outcome::Stored(seq, false) => {
                front.seqs.push(seq);
                pause = Duration::from_millis(50);
                None
            }
            Outcome::Stored(seq, true) => match same_as_stored(&shared, &stream, m, seq).await {
                Ok(seq) => {
                    front.seqs.push(seq);
                    None
                }
                Err(e) => Some(e),
            },
            Outcome::Refused(e) => Some(e),
            Outcome::Retry(why) if tokio::time::Instant::now() + pause > front.deadline => {
                Some(StorageError::Unavailable(format!(
                    "the cluster did not acknowledge the publish in time ({why}); it may or may not be stored: retry it with the same producer sequence or idempotency key"
                )))
            }
            Outcome::Retry(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
                while let Ok(sent) = rx.try_recv() {
                    window.push_back(admit(sent));
                }
                resend_from(&engine, &subject, &mut window).await;
                None
            }
        };
        if let Some(e) = refused {
            // The rest of a refused request is not answered; its first
            // sends may have stored some of it, which a retry under the
            // same ids finds.
            if let Some(failed) = window.pop_front() {
                let _ = failed.req.reply.send(Err(e));
            }
        }
    }
}

/// Sends again, in order, the front request's message whose attempt just
/// failed and every later message whose attempt has not been answered as
/// stored (an answered one keeps its answer, checked when its turn comes).
async fn resend_from(engine: &Engine, subject: &str, window: &mut VecDeque<InFlight>) {
    for (i, f) in window.iter_mut().enumerate() {
        // The front's failed attempt was taken out of `acks`.
        let first = f.seqs.len();
        let mut attempts = std::mem::take(&mut f.acks);
        let mut fresh = VecDeque::with_capacity(f.req.msgs.len() - first);
        if i == 0 {
            fresh.push_back(send(engine, subject, &f.req.msgs[first]).await);
        }
        let rest = first + usize::from(i == 0);
        for m in &f.req.msgs[rest..] {
            let kept = match attempts.pop_front() {
                Some(Ok(mut fut)) => match futures_util::poll!(fut.as_mut()) {
                    std::task::Poll::Ready(Ok(ack)) => {
                        Some(Ok(Box::pin(std::future::ready(Ok(ack))) as AckFuturePin))
                    }
                    _ => None,
                },
                _ => None,
            };
            fresh.push_back(match kept {
                Some(k) => k,
                None => send(engine, subject, m).await,
            });
        }
        f.acks = fresh;
    }
}

enum Outcome {
    /// The seq, and whether the stream answered it as a duplicate.
    Stored(u64, bool),
    /// Not stored, or not known to be: sent again with the same id.
    Retry(String),
    Refused(StorageError),
}

async fn outcome(shared: &Shared, attempt: AckWait) -> Outcome {
    let e = match attempt {
        Err(e) => return Outcome::Retry(e),
        Ok(fut) => match fut.await {
            Ok(a) => return Outcome::Stored(a.sequence - 1, a.duplicate),
            Err(e) => e,
        },
    };
    match e.kind() {
        // No responders (mapped to StreamNotFound by the client) is what
        // a stream without a leader answers too: retried, unless this
        // edge saw the stream go.
        PublishErrorKind::StreamNotFound if shared.closed.load(Ordering::Acquire) => {
            Outcome::Refused(StorageError::Closed)
        }
        PublishErrorKind::TimedOut
        | PublishErrorKind::BrokenPipe
        | PublishErrorKind::StreamNotFound => Outcome::Retry(e.to_string()),
        _ if e.to_string().contains("no responders") => Outcome::Retry(e.to_string()),
        // The same id is being stored for another send (a retry through
        // another edge, or a duplicate in one batch): resent, it answers
        // the first one's seq.
        _ if e.to_string().contains("10158") => Outcome::Retry(e.to_string()),
        _ if e.to_string().contains("503") => Outcome::Retry(e.to_string()),
        _ => Outcome::Refused(StorageError::Unavailable(format!(
            "the cluster refused the publish: {e}"
        ))),
    }
}

/// Waits (until `deadline`) for the stream to answer a publish on
/// `subject` through this edge's server. A stream just made is reachable
/// from the other servers a moment after it has a leader; a burst sent
/// before would be refused with "no responders" and resent. The probe
/// names another stream and an impossible last sequence, so the stream
/// refuses it and stores nothing.
async fn reachable(
    shared: &Shared,
    engine: &Engine,
    subject: &str,
    deadline: tokio::time::Instant,
) {
    let mut pause = Duration::from_millis(10);
    while tokio::time::Instant::now() < deadline {
        let probe = Publish::build()
            .expected_stream("fanlog-reachability-probe")
            .expected_last_sequence(u64::MAX);
        // Answered: refused (or, never seen from a supported server, 2.11
        // and later, stored), rather than a publish to send again.
        if !matches!(
            outcome(shared, send_publish(engine, subject, probe).await).await,
            Outcome::Retry(_)
        ) {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

type AckFuturePin = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = std::result::Result<
                    async_nats::jetstream::publish::PublishAck,
                    async_nats::jetstream::context::PublishError,
                >,
            > + Send,
    >,
>;
/// One send of a message: its ack to come, or why it could not be sent.
type AckWait = std::result::Result<AckFuturePin, String>;

async fn send(engine: &Engine, subject: &str, m: &Outgoing) -> AckWait {
    send_publish(
        engine,
        subject,
        Publish::build().payload(m.body.clone()).message_id(&m.id),
    )
    .await
}

async fn send_publish(engine: &Engine, subject: &str, publish: Publish) -> AckWait {
    engine
        .js()
        .send_publish(subject.to_owned(), publish)
        .await
        .map(std::future::IntoFuture::into_future)
        .map_err(|e| e.to_string())
}

/// `seq` if the message stored there (under `m`'s id) is `m`; a retry
/// carries the same message, and anything else reusing its identity is
/// refused, never answered as stored. Records are encoded with seq and
/// timestamp 0, so the same message has the same bytes.
async fn same_as_stored(shared: &Shared, stream: &JsStream, m: &Outgoing, seq: u64) -> Result<u64> {
    let stored = stream
        .get_raw_message(seq + 1)
        .await
        .map_err(|e| StorageError::Unavailable(format!("cannot read the stored duplicate: {e}")))?;
    if stored.payload == m.body {
        Ok(seq)
    } else {
        Err(StorageError::IdempotencyConflict {
            topic: shared.name.to_string(),
            seq,
        })
    }
}

impl TopicLog for JsLog {
    fn name(&self) -> &TopicName {
        &self.name
    }

    fn config(&self) -> &TopicConfig {
        &self.config
    }

    fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    fn first_seq(&self) -> u64 {
        self.shared.first.load(Ordering::Acquire)
    }

    fn next_seq(&self) -> u64 {
        self.shared.tail.read().next()
    }

    fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::Relaxed)
    }

    fn watch_readable(&self) -> watch::Receiver<u64> {
        self.shared.readable.subscribe()
    }

    fn watch_durable(&self) -> watch::Receiver<Durable> {
        self.shared.durable.subscribe()
    }

    fn poisoned(&self) -> Option<StorageError> {
        None
    }

    fn append(
        &self,
        entries: &[Entry<'_>],
        _now_us: u64,
        _seqs: &mut Vec<u64>,
    ) -> Result<Appending> {
        if self.is_closed() {
            return Err(StorageError::Closed);
        }
        let mut msgs = Vec::with_capacity(entries.len());
        for e in entries {
            let parts = RecordParts {
                seq: 0,
                timestamp_us: 0,
                producer: e.producer,
                meta: e.meta,
                key: e.key,
                payload: e.payload,
            };
            let mut body = Vec::with_capacity(parts.padded_len());
            parts
                .encode(&mut body)
                .map_err(|err| StorageError::Corrupt {
                    topic: self.name.to_string(),
                    seq: 0,
                    reason: format!("cannot encode record: {err}"),
                })?;
            body.truncate(parts.len());
            msgs.push(Outgoing {
                id: self.message_id(e),
                body: Bytes::from(body),
            });
        }
        let (reply, rx) = oneshot::channel();
        self.publisher
            .send(PubReq { msgs, reply })
            .map_err(|_| StorageError::Closed)?;
        let mut readable = self.shared.readable.subscribe();
        let settle = self.settle;
        let name = self.name.clone();
        let ack: AckFuture = Box::pin(async move {
            let seqs = rx
                .await
                .map_err(|_| StorageError::Unavailable("the cluster client stopped".into()))??;
            // Read your writes on this edge: the ack waits for the tail
            // to hold what it acknowledges (a moment; longer while the
            // tail's consumer is being made again), so a publisher that
            // reads right after sees its messages here. Past `settle` the
            // ack goes anyway: the messages are stored.
            if let Some(&last) = seqs.iter().max()
                && tokio::time::timeout(settle, readable.wait_for(|head| *head > last))
                    .await
                    .is_err()
            {
                tracing::warn!(topic = %name, seq = last, "acknowledged before this edge's tail holds it: the tail is behind the stream");
            }
            Ok(seqs)
        });
        Ok(Appending::Replicating(ack))
    }

    fn read_at(&self, seq: u64, _cursor: &mut ReadCursor) -> Result<ReadAt> {
        let first = self.first_seq();
        if seq < first {
            return Ok(ReadAt::Gap { to: first });
        }
        {
            let tail = self.shared.tail.read();
            if seq >= tail.next() {
                return Ok(ReadAt::End);
            }
            if seq >= tail.base {
                return Ok(ReadAt::Record(
                    tail.records[(seq - tail.base) as usize].clone(),
                ));
            }
        }
        let found = self.shared.cold.lock().covering(seq);
        if let Some(b) = found {
            if let Some(r) = b.get(seq) {
                // Read ahead: a reader halfway through a block will want
                // the next one.
                if (seq - b.start) * 2 >= b.end - b.start && b.end < self.shared.tail.read().base {
                    self.fetcher.fetch_cold(b.end);
                }
                return Ok(ReadAt::Record(r.clone()));
            }
            // Fetched, but the seq is not in it: removed by retention
            // meanwhile.
            let first = self.first_seq().max(seq + 1);
            return Ok(ReadAt::Gap { to: first });
        }
        self.fetcher.fetch_cold(seq);
        Ok(ReadAt::End)
    }

    fn seek_time(&self, ts_us: u64) -> Result<u64> {
        let stream = self.stream.clone();
        let subject = self.engine.subject(&self.name);
        let head = self.next_seq();
        let found = self.engine.block(async move {
            let secs = i64::try_from(ts_us / 1_000_000).unwrap_or(i64::MAX);
            let start = time::OffsetDateTime::from_unix_timestamp(secs)
                .map_err(|e| e.to_string())?
                + Duration::from_micros(ts_us % 1_000_000);
            // One pull of one message through a plain consumer of its own.
            // Not an ordered consumer: one that resets before its first
            // message comes back with `DeliverPolicy::All` (async-nats
            // 0.42, `recreate_consumer_stream`), and the seek would answer
            // seq 0 (seen in the cluster pass of tests/time_seek.rs).
            let got = pull_once(
                &stream,
                subject,
                DeliverPolicy::ByStartTime { start_time: start },
                1,
                0, // no bound
                Duration::from_millis(500),
            )
            .await?;
            // Nothing at or after that time: the head.
            got.first()
                .map(|m| {
                    m.info()
                        .map(|i| i.stream_sequence - 1)
                        .map_err(|e| e.to_string())
                })
                .transpose()
        })?;
        Ok(found
            .map_err(|e| StorageError::Unavailable(format!("cannot seek the stream by time: {e}")))?
            .unwrap_or(head))
    }

    fn truncate(&self, before: u64, _now_us: u64) -> Result<u64> {
        let stream = self.stream.clone();
        let first = self.engine.block(async move {
            stream
                .purge()
                .sequence(before + 1)
                .await
                .map_err(|e| e.to_string())?;
            let mut s = stream;
            s.info()
                .await
                .map(|i| i.state.first_sequence.saturating_sub(1))
                .map_err(|e| e.to_string())
        })?;
        let first = first.map_err(|e| StorageError::Unavailable(format!("cannot purge: {e}")))?;
        self.shared.first.fetch_max(first, Ordering::AcqRel);
        self.shared.wake();
        Ok(self.first_seq())
    }

    fn enforce_retention(&self, _now_us: u64) {
        // The stream's own limits (max_bytes, max_age) do it.
    }

    fn dirty(&self) -> bool {
        false
    }

    /// Every acknowledged message is already stored by a quorum; what a
    /// sync adds here is this edge's view of what the cluster did since
    /// its last poll (retention moving the first seq, the stored size),
    /// read now, so that a flush is a point after which the topic's info
    /// is current. Best effort, bounded: the state is polled anyway.
    fn sync(&self) -> Result<()> {
        if self.is_closed() {
            return Ok(());
        }
        let mut stream = self.stream.clone();
        let shared = self.shared.clone();
        self.engine.block(async move {
            match tokio::time::timeout(Duration::from_secs(1), stream.info()).await {
                Ok(Ok(info)) => shared.refreshed(&info.state),
                Ok(Err(e)) => {
                    tracing::debug!(topic = %shared.name, "cannot read the stream's state: {e}")
                }
                Err(_) => {
                    tracing::debug!(topic = %shared.name, "the stream's state did not come in 1 s")
                }
            }
        })?;
        Ok(())
    }

    fn syncs(&self) -> u64 {
        0
    }

    fn durable_seq(&self) -> u64 {
        self.shared.durable.borrow().upto
    }

    fn is_warm(&self, seq: u64) -> bool {
        self.fetcher.is_warm(seq)
    }

    fn warm(&self, seq: u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        if self.is_warm(seq) {
            return Box::pin(std::future::ready(()));
        }
        let seq = seq.max(self.first_seq());
        let log = self.fetcher.clone();
        let mut start = log.fetch_cold(seq);
        let mut woken = self.shared.readable.subscribe();
        Box::pin(async move {
            let landed = async {
                loop {
                    let settled = {
                        let cold = log.shared.cold.lock();
                        cold.covering(seq).is_some() || !cold.fetching.contains(&start)
                    };
                    if settled {
                        if log.is_warm(seq) || log.shared.closed.load(Ordering::Acquire) {
                            return;
                        }
                        // A fetch that stopped short of `seq` (large
                        // records) or failed: the next one.
                        start = log.fetch_cold(seq);
                        continue;
                    }
                    if woken.changed().await.is_err() {
                        return;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), landed).await;
        })
    }

    fn close(&self) {
        self.shared.close();
        for t in &self.tasks {
            t.abort();
        }
    }

    fn close_and_wait(&self) {
        self.close();
    }

    fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }
}

impl Drop for JsLog {
    fn drop(&mut self) {
        self.close();
    }
}
