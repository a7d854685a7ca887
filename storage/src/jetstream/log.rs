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
//! - **Cold reads** (below the tail): blocks of records fetched by a short
//!   ordered consumer, one fetch per block whoever asks, kept in a small
//!   cache; readers are woken when a block lands.
//! - **Retention**: the stream's limits remove from the front; the tail
//!   task polls the stream's first sequence, and readers below it get the
//!   same gap as from the local log.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::context::{Publish, PublishErrorKind};
use async_nats::jetstream::stream::Stream as JsStream;
use bytes::Bytes;
use fanlog_protocol::TopicName;
use fanlog_protocol::record::{RecordParts, RecordView};
use futures_util::StreamExt;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, oneshot, watch};

use super::{ClusterOptions, Engine, subject};
use crate::{
    AckFuture, Appending, Durable, Entry, ReadAt, ReadCursor, Record, RecoveryReport, Result,
    StorageError, TopicConfig, TopicLog,
};

/// Records per cold-read block.
const BLOCK: u64 = 2048;
/// Cold blocks kept per topic.
const COLD_BLOCKS: usize = 16;

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

#[derive(Default)]
struct Cold {
    blocks: HashMap<u64, Arc<Vec<Record>>>,
    order: VecDeque<u64>,
    fetching: HashSet<u64>,
}

struct Shared {
    name: TopicName,
    tail: RwLock<Tail>,
    cold: Mutex<Cold>,
    readable: watch::Sender<u64>,
    durable: watch::Sender<Durable>,
    first: AtomicU64,
    bytes: AtomicU64,
    closed: AtomicBool,
    cache_bytes: usize,
}

impl Shared {
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
    publisher: mpsc::UnboundedSender<PubReq>,
    tasks: Vec<tokio::task::AbortHandle>,
    node: String,
    ids: AtomicU64,
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
            closed: AtomicBool::new(false),
            cache_bytes: opts.cache_bytes.max(1 << 20),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let follow = engine.spawn(follow(stream.clone(), shared.clone()));
        let publish = engine.spawn(publisher(
            shared.clone(),
            engine.clone(),
            subject(&name),
            rx,
            opts.publish_timeout,
        ));
        Ok(Self {
            name,
            config,
            report: RecoveryReport::default(),
            engine,
            stream,
            shared,
            publisher: tx,
            tasks: vec![follow.abort_handle(), publish.abort_handle()],
            node: opts.node_id.clone(),
            ids: AtomicU64::new(0),
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

    /// Starts the fetch of the cold block holding `seq` unless it is under
    /// way; readers are woken when it lands.
    fn fetch_cold(&self, block: u64) {
        {
            let mut cold = self.shared.cold.lock();
            if cold.blocks.contains_key(&block) || !cold.fetching.insert(block) {
                return;
            }
        }
        let shared = self.shared.clone();
        let stream = self.stream.clone();
        let subject = subject(&self.name);
        self.engine.spawn(async move {
            let got = fetch_block(&stream, subject, &shared, block).await;
            let failed = {
                let mut cold = shared.cold.lock();
                cold.fetching.remove(&block);
                match got {
                    Ok(records) => {
                        cold.blocks.insert(block, Arc::new(records));
                        cold.order.push_back(block);
                        while cold.order.len() > COLD_BLOCKS {
                            if let Some(old) = cold.order.pop_front() {
                                cold.blocks.remove(&old);
                            }
                        }
                        false
                    }
                    Err(e) => {
                        tracing::warn!(topic = %shared.name, block, "cold read from the cluster failed: {e}");
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
    }
}

/// Reads the records of `block` that lie below the tail, renumbered.
async fn fetch_block(
    stream: &JsStream,
    subject: String,
    shared: &Shared,
    block: u64,
) -> std::result::Result<Vec<Record>, String> {
    let first = shared.first.load(Ordering::Acquire);
    let start = block.max(first);
    let end = (block + BLOCK).min(shared.tail.read().base);
    if start >= end {
        return Ok(Vec::new());
    }
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subject,
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start + 1,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity((end - start) as usize);
    let mut last_ts = 0;
    let mut expect = start;
    while expect < end {
        let m = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .map_err(|_| "timed out".to_owned())?
            .ok_or("the consumer ended")?
            .map_err(|e| e.to_string())?;
        let info = m.info().map_err(|e| e.to_string())?;
        let seq = info.stream_sequence - 1;
        let ts = published_us(info.published).max(last_ts);
        if seq > expect {
            // Retention removed the front meanwhile: readers get the gap.
            shared.first.fetch_max(seq, Ordering::AcqRel);
            if out.is_empty() {
                return Ok(out);
            }
            break;
        }
        last_ts = ts;
        out.push(renumber(&m.payload, seq, ts)?);
        expect = seq + 1;
    }
    Ok(out)
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
            .create_consumer(OrderedConfig {
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
                    let first = info.state.first_sequence.saturating_sub(1);
                    shared.bytes.store(info.state.bytes, Ordering::Relaxed);
                    if shared.first.fetch_max(first, Ordering::AcqRel) < first {
                        shared.wake();
                    }
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

/// Sends publishes in call order; each request's acks are awaited (and
/// resent through an election) apart, so later sends do not wait.
async fn publisher(
    shared: Arc<Shared>,
    engine: Engine,
    subject: String,
    mut rx: mpsc::UnboundedReceiver<PubReq>,
    timeout: Duration,
) {
    while let Some(req) = rx.recv().await {
        let mut acks = Vec::with_capacity(req.msgs.len());
        for m in &req.msgs {
            acks.push(send(&engine, &subject, m).await);
        }
        let engine = engine.clone();
        let subject = subject.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            let mut seqs = Vec::with_capacity(req.msgs.len());
            for (m, first) in req.msgs.iter().zip(acks) {
                match await_ack(&shared, &engine, &subject, m, first, deadline).await {
                    Ok(seq) => seqs.push(seq),
                    Err(e) => {
                        let _ = req.reply.send(Err(e));
                        return;
                    }
                }
            }
            let _ = req.reply.send(Ok(seqs));
        });
    }
}

type AckWait = std::result::Result<async_nats::jetstream::context::PublishAckFuture, String>;

async fn send(engine: &Engine, subject: &str, m: &Outgoing) -> AckWait {
    engine
        .js()
        .send_publish(
            subject.to_owned(),
            Publish::build().payload(m.body.clone()).message_id(&m.id),
        )
        .await
        .map_err(|e| e.to_string())
}

/// Waits for the ack of `m`, resending it (same id, so stored once) while
/// the stream has no leader, until `deadline`.
async fn await_ack(
    shared: &Shared,
    engine: &Engine,
    subject: &str,
    m: &Outgoing,
    mut pending: AckWait,
    deadline: tokio::time::Instant,
) -> Result<u64> {
    let mut pause = Duration::from_millis(50);
    loop {
        let outcome = match pending {
            Ok(ack) => match ack.await {
                Ok(a) => return Ok(a.sequence - 1),
                Err(e) => match e.kind() {
                    // No responders (mapped to StreamNotFound by the
                    // client) is what a stream without a leader answers
                    // too: retried, unless this edge saw the stream go.
                    PublishErrorKind::StreamNotFound if shared.closed.load(Ordering::Acquire) => {
                        return Err(StorageError::Closed);
                    }
                    PublishErrorKind::TimedOut
                    | PublishErrorKind::BrokenPipe
                    | PublishErrorKind::StreamNotFound => e.to_string(),
                    _ if e.to_string().contains("no responders") => e.to_string(),
                    _ if e.to_string().contains("503") => e.to_string(),
                    _ => {
                        return Err(StorageError::Unavailable(format!(
                            "the cluster refused the publish: {e}"
                        )));
                    }
                },
            },
            Err(e) => e,
        };
        if tokio::time::Instant::now() + pause > deadline {
            return Err(StorageError::Unavailable(format!(
                "the cluster did not acknowledge the publish in time ({outcome}); it may or may not be stored: retry it with the same producer sequence or idempotency key"
            )));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
        pending = send(engine, subject, m).await;
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
        let ack: AckFuture = Box::pin(async move {
            let seqs = rx
                .await
                .map_err(|_| StorageError::Unavailable("the cluster client stopped".into()))??;
            // Read your writes on this edge: the ack waits (briefly) for
            // the tail to hold what it acknowledges, so a publisher that
            // reads right after sees its messages here.
            if let Some(&last) = seqs.iter().max() {
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    readable.wait_for(|head| *head > last),
                )
                .await;
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
        let block = seq - seq % BLOCK;
        let found = self.shared.cold.lock().blocks.get(&block).cloned();
        if let Some(b) = found {
            // Records lie in seq order from the block's first stored one.
            let at = b
                .first()
                .and_then(|r| usize::try_from(seq.checked_sub(r.seq())?).ok());
            if let Some(r) = at.and_then(|i| b.get(i)).filter(|r| r.seq() == seq) {
                // Read ahead: a reader halfway through a block will want
                // the next one.
                if seq - block >= BLOCK / 2 && block + BLOCK < self.shared.tail.read().base {
                    self.fetch_cold(block + BLOCK);
                }
                return Ok(ReadAt::Record(r.clone()));
            }
            if b.last().is_some_and(|r| r.seq() >= seq) || b.is_empty() {
                // Fetched, but the seq is not in it: removed by retention
                // meanwhile.
                let first = self.first_seq().max(seq + 1);
                return Ok(ReadAt::Gap { to: first });
            }
        }
        self.fetch_cold(block);
        Ok(ReadAt::End)
    }

    fn seek_time(&self, ts_us: u64) -> Result<u64> {
        let stream = self.stream.clone();
        let subject = subject(&self.name);
        let head = self.next_seq();
        let found = self.engine.block(async move {
            let secs = i64::try_from(ts_us / 1_000_000).unwrap_or(i64::MAX);
            let start = time::OffsetDateTime::from_unix_timestamp(secs)
                .map_err(|e| e.to_string())?
                + Duration::from_micros(ts_us % 1_000_000);
            let consumer = stream
                .create_consumer(OrderedConfig {
                    filter_subject: subject,
                    deliver_policy: DeliverPolicy::ByStartTime { start_time: start },
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
            match tokio::time::timeout(Duration::from_millis(500), messages.next()).await {
                Ok(Some(Ok(m))) => Ok(Some(
                    m.info().map_err(|e| e.to_string())?.stream_sequence - 1,
                )),
                Ok(Some(Err(e))) => Err(e.to_string()),
                // Nothing at or after that time: the head.
                Ok(None) | Err(_) => Ok(None),
            }
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

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn syncs(&self) -> u64 {
        0
    }

    fn durable_seq(&self) -> u64 {
        self.shared.durable.borrow().upto
    }

    fn is_warm(&self, seq: u64) -> bool {
        // A read below the first seq goes on from the first (after the gap).
        let seq = seq.max(self.first_seq());
        seq >= self.shared.tail.read().base
            || self
                .shared
                .cold
                .lock()
                .blocks
                .contains_key(&(seq - seq % BLOCK))
    }

    fn warm(&self, seq: u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        if self.is_warm(seq) {
            return Box::pin(std::future::ready(()));
        }
        let seq = seq.max(self.first_seq());
        let block = seq - seq % BLOCK;
        self.fetch_cold(block);
        let shared = self.shared.clone();
        let mut woken = shared.readable.subscribe();
        Box::pin(async move {
            let landed = async {
                loop {
                    {
                        let cold = shared.cold.lock();
                        if cold.blocks.contains_key(&block) || !cold.fetching.contains(&block) {
                            return;
                        }
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
