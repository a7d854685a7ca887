//! Work-sharing groups (issue 17): a [`SharedGroup`] hands each record of
//! a topic to one of its [`Worker`]s, over the dispatch state of
//! [`crate::shared`]. Every interface (the embedded API, the binary
//! protocol, HTTP, WebSocket) joins the same running group: a broker runs
//! one per `(topic, group)` ([`SharedGroup::open`] finds it).
//!
//! One reader per group follows the topic from the group's floor into a
//! buffer of the records not settled yet (bounded: the reader waits while
//! it is full); workers take records from it through the dispatch. A
//! record that fails `max_deliver` times is published to the dead-letter
//! topic (with its original topic, seq, delivery count and last error as
//! headers) and counts as settled once that publish is durable.
//!
//! What is settled survives a restart: the floor is committed as the
//! group's offset, and the seqs settled above it are written to the
//! group's document ([`Namespace::Shared`]). Under [`Durability::Always`]
//! an ack is answered once both are durable, so a restart (even after
//! `kill -9`) delivers again only what was not acknowledged; under the
//! other modes they are written in the background, and a crash can deliver
//! again what was acknowledged since the last write (docs/shared-groups.md).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use fanlog_protocol::{GroupName, Message, TopicName};
use fanlog_storage::{Expect, Namespace};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_stream::StreamExt;

use crate::shared::{Dead, Dispatch, DispatchStats, MemberId, SharedOptions, Slot};
use crate::{Broker, BrokerError, Durability, Event, Record, Result, StartFrom};

/// Records a group's reader keeps unsettled at most before it waits.
const BUFFER: usize = 10_000;

/// How long a group's dispatch lease lasts on storage that other
/// processes share (a cluster): its edge renews it every third of that;
/// another edge takes the group over this long after the edge died.
pub const LEASE_TTL: Duration = Duration::from_secs(10);

/// A record handed to a worker.
#[derive(Debug, Clone)]
pub struct Job {
    /// The record.
    pub record: Record,
    /// 1 on the first delivery.
    pub deliveries: u32,
}

/// The groups running in one broker, so that every interface joins the
/// same one; and the named members of the interfaces that have no
/// connection to hold a member by (HTTP).
#[derive(Debug, Default)]
struct Registry {
    groups: Mutex<HashMap<(String, String), Weak<Group>>>,
    named: Mutex<HashMap<(String, String, String), Named>>,
}

#[derive(Debug)]
struct Named {
    worker: Arc<Worker>,
    seen: Instant,
}

/// A work-sharing group of one topic: add [`Worker`]s with
/// [`SharedGroup::join`]. The group stops (its reader ends) when its last
/// handle and worker are dropped.
#[derive(Debug, Clone)]
pub struct SharedGroup {
    inner: Arc<Group>,
}

#[derive(Debug)]
struct Group {
    broker: Broker,
    topic: String,
    group: String,
    dead_letter: String,
    options: SharedOptions,
    /// The topic runs under [`Durability::Always`]: acks wait for the save.
    always: bool,
    state: Mutex<State>,
    /// Something changed: a record came, a seq settled or is due again.
    changed: Arc<Notify>,
    next_member: AtomicU64,
    members: AtomicUsize,
    epoch: Instant,
    saved: tokio::sync::Mutex<Saved>,
    /// A background save is scheduled.
    saving: AtomicBool,
    /// Why the reader stopped (the topic was deleted, a read failed, the
    /// lease was lost).
    ended: Mutex<Option<String>>,
    reader: OnceLock<tokio::task::AbortHandle>,
    /// On shared storage: this process's lease on the group's dispatch.
    lease: Mutex<Option<fanlog_storage::Lease>>,
    renewer: OnceLock<tokio::task::AbortHandle>,
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(r) = self.reader.get() {
            r.abort();
        }
        if let Some(r) = self.renewer.get() {
            r.abort();
        }
        if let Some(l) = self.lease.lock().take() {
            self.broker.leases().release(&l);
        }
    }
}

/// This process, as a holder of group leases.
fn holder() -> &'static str {
    static HOLDER: OnceLock<String> = OnceLock::new();
    HOLDER.get_or_init(|| format!("work-{:016x}", rand::random::<u64>()))
}

#[derive(Debug)]
struct State {
    dispatch: Dispatch,
    /// Records from the floor up to the reader's position, not settled.
    records: BTreeMap<u64, Record>,
    /// The next seq the reader yields (past a retention gap too).
    read_upto: u64,
    /// Moves on every settle: what a save has to catch up with.
    version: u64,
}

/// What the last save wrote.
#[derive(Debug)]
struct Saved {
    version: u64,
    /// The floor committed as the group's offset.
    floor: u64,
}

/// The group's document: its floor and the runs of seqs settled above it,
/// each `[from, to)`. A settled seq stays settled, so an older document is
/// never wrong, only short.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Doc {
    floor: u64,
    settled: Vec<[u64; 2]>,
    /// The options the group was last opened with, taken again when it is
    /// opened without any.
    #[serde(default)]
    options: Option<SavedOptions>,
    #[serde(default)]
    dead_letter: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct SavedOptions {
    ack_wait_ms: u64,
    max_deliver: u32,
    max_inflight: usize,
    key_order: bool,
}

impl From<SharedOptions> for SavedOptions {
    fn from(o: SharedOptions) -> Self {
        Self {
            ack_wait_ms: u64::try_from(o.ack_wait.as_millis()).unwrap_or(u64::MAX),
            max_deliver: o.max_deliver,
            max_inflight: o.max_inflight,
            key_order: o.key_order,
        }
    }
}

impl From<SavedOptions> for SharedOptions {
    fn from(o: SavedOptions) -> Self {
        Self {
            ack_wait: Duration::from_millis(o.ack_wait_ms),
            max_deliver: o.max_deliver.max(1),
            max_inflight: o.max_inflight.max(1),
            key_order: o.key_order,
        }
    }
}

fn runs(seqs: impl Iterator<Item = u64>) -> Vec<[u64; 2]> {
    let mut out: Vec<[u64; 2]> = Vec::new();
    for s in seqs {
        match out.last_mut() {
            Some(run) if run[1] == s => run[1] = s + 1,
            _ => out.push([s, s + 1]),
        }
    }
    out
}

impl State {
    /// A seq the reader passed that the buffer lacks was removed by
    /// retention (the dispatch never asks below the floor).
    fn slot(records: &BTreeMap<u64, Record>, read_upto: u64, seq: u64) -> Slot {
        match records.get(&seq) {
            Some(r) => Slot::Record(r.key().to_vec()),
            None if seq < read_upto => Slot::Gone,
            None => Slot::End,
        }
    }
}

/// A group's figures, as `fanlog admin`, HTTP and the metrics show them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupInfo {
    /// The topic.
    pub topic: String,
    /// The group.
    pub group: String,
    /// Where dead records go.
    pub dead_letter: String,
    /// Milliseconds a worker has to acknowledge.
    pub ack_wait_ms: u64,
    /// Deliveries of one record before its next failure sets it aside.
    pub max_deliver: u32,
    /// Records one worker holds at most.
    pub max_inflight: usize,
    /// Records of one key go to one worker at a time, in seq order.
    pub key_order: bool,
    /// Workers joined now.
    pub members: usize,
    /// Every seq below it is settled: the committed offset.
    pub floor: u64,
    /// The topic's next seq.
    pub next_seq: u64,
    /// Records from the floor to the end not settled yet.
    pub pending: u64,
    /// Records handed out and not settled.
    pub in_flight: usize,
    /// Records due for another delivery.
    pub waiting_for_retry: usize,
    /// Records waiting behind a busy key.
    pub held_by_key: usize,
    /// Deliveries after the first, since the group started running.
    pub redelivered: u64,
    /// Records set aside, since the group started running.
    pub dead_lettered: u64,
    /// Age of the oldest record not settled, in milliseconds.
    pub oldest_unacked_ms: Option<u64>,
}

/// The group running in `slot`, unless its reader stopped.
fn live(
    groups: &HashMap<(String, String), Weak<Group>>,
    slot: &(String, String),
) -> Option<Arc<Group>> {
    groups
        .get(slot)
        .and_then(Weak::upgrade)
        .filter(|g| g.ended.lock().is_none())
}

fn registry(broker: &Broker) -> Arc<Registry> {
    broker.extension(|_| Registry::default())
}

/// The shared groups running in `broker` now.
#[must_use]
pub fn running(broker: &Broker) -> Vec<SharedGroup> {
    let mut out: Vec<SharedGroup> = registry(broker)
        .groups
        .lock()
        .values()
        .filter_map(Weak::upgrade)
        .map(|inner| SharedGroup { inner })
        .collect();
    out.sort_by(|a, b| (&a.inner.topic, &a.inner.group).cmp(&(&b.inner.topic, &b.inner.group)));
    out
}

impl SharedGroup {
    /// The shared group `group` of `topic`: the one running in this broker,
    /// or opened from its saved state (its committed offset and the seqs
    /// settled above it; the topic's first seq if none). Dead records go to
    /// `dead_letter` (default: `<topic>.<group>.dead`).
    ///
    /// `options` (and `dead_letter`) given for a group that runs with
    /// others are refused; given for a group that does not run, they
    /// replace its saved ones. `None` takes the running group's, or the
    /// saved ones (the defaults for a new group).
    ///
    /// # Errors
    /// [`BrokerError::InvalidName`] for a bad topic, group or dead-letter
    /// name; [`BrokerError::GroupConflict`] for other options than the
    /// running group's; as [`Broker::subscribe`].
    pub fn open(
        broker: &Broker,
        topic: &str,
        group: &str,
        options: impl Into<Option<SharedOptions>>,
        dead_letter: Option<&str>,
    ) -> Result<Self> {
        let options = options.into();
        TopicName::new(topic)?;
        GroupName::new(group)?;
        if let Some(d) = dead_letter {
            TopicName::new(d)?;
        }
        let reg = registry(broker);
        let mut groups = reg.groups.lock();
        let slot = (topic.to_owned(), group.to_owned());
        if let Some(inner) = live(&groups, &slot) {
            return Self::join_running(inner, options, dead_letter);
        }
        let this = Self::start(broker, topic, group, options, dead_letter)?;
        groups.retain(|_, g| g.strong_count() > 0);
        groups.insert(slot, Arc::downgrade(&this.inner));
        Ok(this)
    }

    /// The running group `inner`, if `options` and `dead_letter` (when
    /// given) are the ones it runs with.
    fn join_running(
        inner: Arc<Group>,
        options: Option<SharedOptions>,
        dead_letter: Option<&str>,
    ) -> Result<Self> {
        let (topic, group) = (&inner.topic, &inner.group);
        if options.is_some_and(|o| o != inner.options) {
            return Err(BrokerError::GroupConflict(format!(
                "group {group:?} of {topic:?} runs with other options ({}); join it with those or none",
                describe(&inner.options)
            )));
        }
        if dead_letter.is_some_and(|d| d != inner.dead_letter) {
            return Err(BrokerError::GroupConflict(format!(
                "group {group:?} of {topic:?} sets dead records aside into {:?}",
                inner.dead_letter
            )));
        }
        Ok(Self { inner })
    }

    /// [`SharedGroup::open`] off the runtime's threads (it reads and may
    /// write the group's document), waiting up to `wait` while another
    /// edge of a cluster holds the group (until its lease runs out).
    ///
    /// # Errors
    /// As [`SharedGroup::open`]; [`BrokerError::Unavailable`] when another
    /// edge still holds the group after `wait`.
    pub async fn open_async(
        broker: &Broker,
        topic: &str,
        group: &str,
        options: Option<SharedOptions>,
        dead_letter: Option<&str>,
        wait: Duration,
    ) -> Result<Self> {
        // A running group (every request of an HTTP worker) needs no file
        // work: joined here, without a trip to the blocking pool.
        // The names checked as `open` checks them.
        TopicName::new(topic)?;
        GroupName::new(group)?;
        if let Some(d) = dead_letter {
            TopicName::new(d)?;
        }
        let slot = (topic.to_owned(), group.to_owned());
        let running = live(&registry(broker).groups.lock(), &slot);
        if let Some(inner) = running {
            return Self::join_running(inner, options, dead_letter);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let (b, t, g, d) = (
                broker.clone(),
                topic.to_owned(),
                group.to_owned(),
                dead_letter.map(str::to_owned),
            );
            let opened =
                tokio::task::spawn_blocking(move || Self::open(&b, &t, &g, options, d.as_deref()))
                    .await
                    .map_err(|e| BrokerError::Unavailable(format!("opening the group: {e}")))?;
            match opened {
                Err(BrokerError::Unavailable(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => return other,
            }
        }
    }

    /// Opens the group from its saved state: options given replace the
    /// saved ones (nobody runs the group), none take them.
    fn start(
        broker: &Broker,
        topic: &str,
        group: &str,
        given: Option<SharedOptions>,
        dead_letter: Option<&str>,
    ) -> Result<Self> {
        // Other processes share the storage (a cluster): one of them
        // dispatches the group, under a lease.
        let lease = if broker.storage_shared() {
            let name = format!("shared/{topic}/{group}");
            match broker.leases().acquire(&name, holder(), LEASE_TTL) {
                Some(l) => Some(l),
                None => {
                    return Err(BrokerError::Unavailable(format!(
                        "group {group:?} of {topic:?} is dispatched by another edge: connect its workers there, or retry (it moves here within {} s of that edge stopping)",
                        LEASE_TTL.as_secs()
                    )));
                }
            }
        } else {
            None
        };
        let opened = Self::start_leased(broker, topic, group, given, dead_letter, lease.clone());
        if let (Err(_), Some(l)) = (&opened, &lease) {
            // Refused after all: the group is free for another edge.
            broker.leases().release(l);
        }
        opened
    }

    fn start_leased(
        broker: &Broker,
        topic: &str,
        group: &str,
        given: Option<SharedOptions>,
        dead_letter: Option<&str>,
        lease: Option<fanlog_storage::Lease>,
    ) -> Result<Self> {
        let mut sub = broker.subscribe(topic, StartFrom::Group(group.to_owned()))?;
        let committed = sub.position();
        let next_seq = broker.topic_info(topic)?.next_seq;
        let key = format!("{topic}/{group}");
        let doc = broker.meta().get(Namespace::Shared, &key)?.and_then(|v| {
            match serde_json::from_slice::<Doc>(&v.value) {
                Ok(doc) if doc.floor <= next_seq => Some(doc),
                Ok(_) => None, // of an earlier topic of this name
                Err(e) => {
                    tracing::warn!(
                        topic,
                        group,
                        "the group's saved acks are unreadable, so they are delivered again: {e}"
                    );
                    None
                }
            }
        });
        let saved = doc.as_ref().and_then(|d| d.options);
        let options = given.or(saved.map(SharedOptions::from)).unwrap_or_default();
        let saved_dead = doc.as_ref().and_then(|d| d.dead_letter.clone());
        let dead_letter = dead_letter
            .map(str::to_owned)
            .or(saved_dead.clone())
            .unwrap_or_else(|| format!("{topic}.{group}.dead"));
        TopicName::new(&dead_letter)?;
        if saved != Some(options.into()) || saved_dead.as_ref() != Some(&dead_letter) {
            // Saved at once, so that a group opened without options (an
            // ack after a restart, a look at its figures) runs with these.
            let d = Doc {
                floor: doc.as_ref().map_or(0, |d| d.floor),
                settled: doc.as_ref().map_or_else(Vec::new, |d| d.settled.clone()),
                options: Some(options.into()),
                dead_letter: Some(dead_letter.clone()),
            };
            let bytes = serde_json::to_vec(&d).unwrap_or_default();
            broker
                .meta()
                .put(Namespace::Shared, &key, &bytes, Expect::Any)?;
        }
        let floor = doc.as_ref().map_or(committed, |d| d.floor.max(committed));
        if floor > committed {
            sub = broker.subscribe(topic, StartFrom::Seq(floor))?;
        }
        let settled = doc
            .iter()
            .flat_map(|d| d.settled.iter().flat_map(|&[a, b]| a..b.min(next_seq)))
            .filter(|&s| s >= floor);
        let dispatch = Dispatch::new(options, floor, settled);
        let floor = dispatch.floor();
        let changed = Arc::new(Notify::new());
        let inner = Arc::new(Group {
            broker: broker.clone(),
            topic: topic.to_owned(),
            group: group.to_owned(),
            dead_letter,
            options,
            always: broker.durability(topic)? == Durability::Always,
            state: Mutex::new(State {
                dispatch,
                records: BTreeMap::new(),
                read_upto: sub.position(),
                version: 0,
            }),
            changed: changed.clone(),
            next_member: AtomicU64::new(0),
            members: AtomicUsize::new(0),
            epoch: Instant::now(),
            saved: tokio::sync::Mutex::new(Saved {
                version: 0,
                floor: committed,
            }),
            saving: AtomicBool::new(false),
            ended: Mutex::new(None),
            reader: OnceLock::new(),
            lease: Mutex::new(lease),
            renewer: OnceLock::new(),
        });
        // Spawned once the group exists: the reader holds it weakly.
        let weak = Arc::downgrade(&inner);
        let room = changed;
        let reader = tokio::spawn(async move {
            loop {
                // Wait for room in the buffer (holding no strong
                // reference: the group may go meanwhile).
                loop {
                    let notified = room.notified();
                    let Some(g) = weak.upgrade() else { return };
                    if g.state.lock().records.len() < BUFFER {
                        break;
                    }
                    drop(g);
                    notified.await;
                }
                let event = sub.next().await;
                let Some(g) = weak.upgrade() else { return };
                match event {
                    Some(Ok(Event::Record(r))) => {
                        let mut st = g.state.lock();
                        st.read_upto = r.seq() + 1;
                        if r.seq() >= st.dispatch.floor() {
                            st.records.insert(r.seq(), r);
                        }
                    }
                    Some(Ok(Event::Gap { to, .. })) => {
                        let mut st = g.state.lock();
                        st.read_upto = st.read_upto.max(to);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(topic = %g.topic, group = %g.group, "shared group reader: {e}");
                        *g.ended.lock() = Some(e.to_string());
                        g.changed.notify_waiters();
                        return;
                    }
                    None => {
                        *g.ended.lock() = Some("the topic's reader ended".into());
                        g.changed.notify_waiters();
                        return;
                    }
                }
                g.changed.notify_waiters();
            }
        });
        let _ = inner.reader.set(reader.abort_handle());
        if inner.lease.lock().is_some() {
            let weak = Arc::downgrade(&inner);
            let renewer = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LEASE_TTL / 3).await;
                    let Some(g) = weak.upgrade() else { return };
                    let Some(l) = g.lease.lock().clone() else {
                        return;
                    };
                    let b = g.broker.clone();
                    let renewed = tokio::task::spawn_blocking(move || {
                        b.leases().acquire(&l.name, &l.holder, LEASE_TTL)
                    })
                    .await
                    .ok()
                    .flatten();
                    if renewed.is_none() {
                        tracing::warn!(topic = %g.topic, group = %g.group, "the group's dispatch lease was lost: its workers join again");
                        *g.ended.lock() = Some("its dispatch lease was lost".into());
                        g.changed.notify_waiters();
                        return;
                    }
                }
            });
            let _ = inner.renewer.set(renewer.abort_handle());
        }
        if floor > committed {
            // Settled seqs from the document moved the floor on.
            inner.save_later();
        }
        Ok(Self { inner })
    }

    /// A new member of the group.
    #[must_use]
    pub fn join(&self) -> Worker {
        self.inner.members.fetch_add(1, Ordering::Relaxed);
        Worker {
            group: self.inner.clone(),
            id: self.inner.next_member.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The member named `name` (made when missing): for interfaces with no
    /// connection to hold a member by, such as HTTP. A named member that
    /// has not been asked for during twice the ack wait (and at least a
    /// minute) leaves the group; the records it held are due again.
    #[must_use]
    pub fn named(&self, name: &str) -> Arc<Worker> {
        let reg = registry(&self.inner.broker);
        let mut named = reg.named.lock();
        let now = Instant::now();
        named.retain(|_, n| now.duration_since(n.seen) < idle_limit(&n.worker.group.options));
        let slot = (
            self.inner.topic.clone(),
            self.inner.group.clone(),
            name.to_owned(),
        );
        match named.get_mut(&slot) {
            Some(n) if Arc::ptr_eq(&n.worker.group, &self.inner) => {
                n.seen = now;
                n.worker.clone()
            }
            _ => {
                let worker = Arc::new(self.join());
                named.insert(
                    slot,
                    Named {
                        worker: worker.clone(),
                        seen: now,
                    },
                );
                worker
            }
        }
    }

    /// Every seq below this is settled.
    #[must_use]
    pub fn floor(&self) -> u64 {
        self.inner.state.lock().dispatch.floor()
    }

    /// The dispatch's counters now.
    #[must_use]
    pub fn stats(&self) -> DispatchStats {
        self.inner.state.lock().dispatch.stats()
    }

    /// The options the group runs with.
    #[must_use]
    pub fn options(&self) -> SharedOptions {
        self.inner.options
    }

    /// The group's figures now.
    #[must_use]
    pub fn info(&self) -> GroupInfo {
        let g = &self.inner;
        let next_seq = g.broker.topic_info(&g.topic).map_or(0, |t| t.next_seq);
        let st = g.state.lock();
        let stats = st.dispatch.stats();
        let floor = st.dispatch.floor();
        let above = st.dispatch.settled_above_floor().count() as u64;
        let now_us = crate::broker::now_us();
        GroupInfo {
            topic: g.topic.clone(),
            group: g.group.clone(),
            dead_letter: g.dead_letter.clone(),
            ack_wait_ms: u64::try_from(g.options.ack_wait.as_millis()).unwrap_or(u64::MAX),
            max_deliver: g.options.max_deliver,
            max_inflight: g.options.max_inflight,
            key_order: g.options.key_order,
            members: g.members.load(Ordering::Relaxed),
            floor,
            next_seq,
            pending: next_seq.saturating_sub(floor).saturating_sub(above),
            in_flight: stats.in_flight,
            waiting_for_retry: stats.waiting_for_retry,
            held_by_key: stats.held_by_key,
            redelivered: stats.redelivered,
            dead_lettered: stats.dead_lettered,
            oldest_unacked_ms: st
                .records
                .values()
                .find(|r| r.seq() >= floor)
                .filter(|_| floor < next_seq)
                .map(|r| now_us.saturating_sub(r.timestamp_us()) / 1000),
        }
    }
}

/// The copy of `record` (of `topic`) set aside in a dead-letter topic:
/// its payload, key and content type, and where it came from as the
/// headers `fanlog-dead-topic`, `fanlog-dead-seq`,
/// `fanlog-dead-deliveries` and `fanlog-dead-error`.
#[must_use]
pub fn dead_letter(topic: &str, record: &Record, deliveries: u32, error: &str) -> Message {
    let m = Message::new(record.payload().to_vec())
        .with_key(record.key().to_vec())
        .with_header("fanlog-dead-topic", topic.to_owned())
        .with_header("fanlog-dead-seq", record.seq().to_string())
        .with_header("fanlog-dead-deliveries", deliveries.to_string())
        .with_header("fanlog-dead-error", error.to_owned());
    match record.content_type() {
        Some(ct) => m.with_content_type(ct.to_owned()),
        None => m,
    }
}

fn idle_limit(o: &SharedOptions) -> Duration {
    (o.ack_wait * 2).max(Duration::from_secs(60))
}

fn describe(o: &SharedOptions) -> String {
    format!(
        "ack_wait {} ms, max_deliver {}, max_inflight {}, key_order {}",
        o.ack_wait.as_millis(),
        o.max_deliver,
        o.max_inflight,
        o.key_order
    )
}

impl Group {
    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Publishes each dead record to the dead-letter topic, then settles
    /// it (in the background: the caller holds no lock across it).
    fn bury(self: &Arc<Self>, dead: Vec<Dead>) {
        for d in dead {
            let g = self.clone();
            tokio::spawn(async move {
                let Some(r) = g.state.lock().records.get(&d.seq).cloned() else {
                    return;
                };
                let m = dead_letter(&g.topic, &r, d.deliveries, &d.last_error);
                if let Err(e) = g.broker.publish(&g.dead_letter, m).await {
                    // Not settled: the floor waits at it (said in the log).
                    tracing::error!(topic = %g.topic, group = %g.group, seq = d.seq, "cannot set a dead record aside: {e}");
                    return;
                }
                g.state.lock().dispatch.settle(d.seq, r.key());
                if let Err(e) = g.settled().await {
                    tracing::warn!(topic = %g.topic, group = %g.group, "cannot save the group's acks: {e}");
                }
            });
        }
    }

    /// After a settle: drops settled records below the floor, wakes
    /// waiters, and saves what is settled: awaited under `always`, in the
    /// background otherwise.
    async fn settled(self: &Arc<Self>) -> Result<()> {
        {
            let mut st = self.state.lock();
            let floor = st.dispatch.floor();
            st.records = st.records.split_off(&floor);
            st.version += 1;
        }
        self.changed.notify_waiters();
        if self.always {
            self.save().await
        } else {
            self.save_later();
            Ok(())
        }
    }

    fn save_later(self: &Arc<Self>) {
        if self.saving.swap(true, Ordering::AcqRel) {
            return;
        }
        let g = self.clone();
        tokio::spawn(async move {
            // Cleared first: a settle from now on schedules another save.
            g.saving.store(false, Ordering::Release);
            if let Err(e) = g.save().await {
                tracing::warn!(topic = %g.topic, group = %g.group, "cannot save the group's acks: {e}");
            }
        });
    }

    /// Makes what is settled now durable: the seqs settled above the floor
    /// in the group's document (when there are any), the floor as the
    /// group's offset. Callers that come while a save runs share the next
    /// one (group commit).
    async fn save(&self) -> Result<()> {
        let target = self.state.lock().version;
        let mut saved = self.saved.lock().await;
        if saved.version >= target {
            return Ok(());
        }
        let (version, floor, settled) = {
            let st = self.state.lock();
            (
                st.version,
                st.dispatch.floor(),
                runs(st.dispatch.settled_above_floor()),
            )
        };
        if !settled.is_empty() {
            let doc = serde_json::to_vec(&Doc {
                floor,
                settled,
                options: Some(self.options.into()),
                dead_letter: Some(self.dead_letter.clone()),
            })
            .unwrap_or_default();
            let broker = self.broker.clone();
            let key = format!("{}/{}", self.topic, self.group);
            tokio::task::spawn_blocking(move || {
                broker
                    .meta()
                    .put(Namespace::Shared, &key, &doc, Expect::Any)
            })
            .await
            .map_err(|e| BrokerError::Unavailable(format!("saving the group's acks: {e}")))??;
        }
        if floor > saved.floor {
            self.broker.commit(&self.topic, &self.group, floor).await?;
            saved.floor = floor;
        }
        saved.version = version;
        Ok(())
    }

    fn ended(&self) -> Option<BrokerError> {
        self.ended.lock().as_ref().map(|why| {
            BrokerError::Unavailable(format!(
                "group {:?} of {:?} stopped: {why}",
                self.group, self.topic
            ))
        })
    }
}

/// A member of a [`SharedGroup`]: takes records with [`Worker::fetch`]
/// and settles each with [`Worker::ack`] or [`Worker::nack`]. Dropped, its
/// records are due again at once.
#[derive(Debug)]
pub struct Worker {
    group: Arc<Group>,
    id: MemberId,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.group.members.fetch_sub(1, Ordering::Relaxed);
        let now = self.group.now_us();
        let dead = self.group.state.lock().dispatch.leave(self.id, now);
        // Outside a runtime the dead cannot be set aside (nothing to run
        // the publish on): they stay unsettled.
        if tokio::runtime::Handle::try_current().is_ok() {
            self.group.bury(dead);
        }
        self.group.changed.notify_waiters();
    }
}

impl Worker {
    /// The group this worker belongs to.
    #[must_use]
    pub fn group(&self) -> SharedGroup {
        SharedGroup {
            inner: self.group.clone(),
        }
    }

    /// Up to `max` records for this worker, waiting up to `wait` for the
    /// first; fewer (or none) when the wait ends first. A fetch is a sign
    /// of life: a worker whose ack wait ran out (taken for stalled, and
    /// handed nothing meanwhile) gets records again.
    ///
    /// # Errors
    /// [`BrokerError::Unavailable`] once the group stopped (its topic was
    /// deleted, a read failed).
    pub async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Job>> {
        self.group.state.lock().dispatch.wake(self.id);
        self.next_jobs(max, wait).await
    }

    /// [`Worker::fetch`] for interfaces that push records to a worker as
    /// it has room (a session, a WebSocket): waiting here is no sign of
    /// life, so a worker whose ack wait ran out is handed nothing until
    /// it acks or nacks (even a record it no longer holds).
    ///
    /// # Errors
    /// As [`Worker::fetch`].
    pub async fn next_jobs(&self, max: usize, wait: Duration) -> Result<Vec<Job>> {
        // A fetch that finds records at once never waits: the budget makes
        // a busy worker yield now and then, so that workers woken on its
        // thread get their turn.
        tokio::task::consume_budget().await;
        let g = &self.group;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = g.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (jobs, dead, next_due, floor_moved) = {
                let mut st = g.state.lock();
                let now = g.now_us();
                let State {
                    dispatch,
                    records,
                    read_upto,
                    ..
                } = &mut *st;
                let read_upto = *read_upto;
                let floor = dispatch.floor();
                let (handed, dead) =
                    dispatch.hand_out(self.id, max, now, |s| State::slot(records, read_upto, s));
                let jobs: Vec<Job> = handed
                    .iter()
                    .filter_map(|h| {
                        records.get(&h.seq).map(|r| Job {
                            record: r.clone(),
                            deliveries: h.deliveries,
                        })
                    })
                    .collect();
                let next_due = dispatch
                    .next_due_us()
                    .map(|t| Duration::from_micros(t.saturating_sub(now)));
                (jobs, dead, next_due, dispatch.floor() != floor)
            };
            // Each burial wakes the waiters once it settled.
            g.bury(dead);
            if floor_moved {
                // Records skipped as gone moved the floor.
                g.settled().await?;
            }
            if !jobs.is_empty() {
                return Ok(jobs);
            }
            if let Some(e) = g.ended() {
                return Err(e);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let until = next_due.map_or(deadline, |d| (now + d).min(deadline));
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    /// This worker processed `seq`. Answered once the ack is durable under
    /// the topic's durability mode.
    ///
    /// # Errors
    /// [`BrokerError::NotHeld`] when it does not hold `seq` (any more: its
    /// ack wait ran out and it went to another worker); a failed save.
    pub async fn ack(&self, seq: u64) -> Result<()> {
        self.ack_all(&[seq]).await
    }

    /// [`Worker::ack`] for several seqs at once: every held one is
    /// acknowledged; the first not held is the error.
    ///
    /// # Errors
    /// As [`Worker::ack`].
    pub async fn ack_all(&self, seqs: &[u64]) -> Result<()> {
        tokio::task::consume_budget().await;
        let mut not_held = None;
        {
            let mut st = self.group.state.lock();
            for &seq in seqs {
                if st.dispatch.ack(self.id, seq).is_err() {
                    not_held.get_or_insert(seq);
                }
            }
        }
        if not_held.is_none_or(|_| seqs.len() > 1) {
            self.group.settled().await?;
        } else {
            // Nothing settled, but a stalled worker showed life: its
            // waiting hand-out looks again.
            self.group.changed.notify_waiters();
        }
        match not_held {
            Some(seq) => Err(BrokerError::NotHeld { seq }),
            None => Ok(()),
        }
    }

    /// Acknowledges every record this worker holds below `upto` (a range
    /// ack); answers how many.
    ///
    /// # Errors
    /// A failed save.
    pub async fn ack_below(&self, upto: u64) -> Result<usize> {
        let seqs = self.group.state.lock().dispatch.held_below(self.id, upto);
        if seqs.is_empty() {
            self.group.state.lock().dispatch.wake(self.id);
            self.group.changed.notify_waiters();
            return Ok(0);
        }
        self.ack_all(&seqs).await?;
        Ok(seqs.len())
    }

    /// This worker could not process `seq`: it is due again after `delay`
    /// (to any worker), or set aside as dead once it was delivered
    /// `max_deliver` times.
    ///
    /// # Errors
    /// [`BrokerError::NotHeld`], as [`Worker::ack`].
    pub async fn nack(&self, seq: u64, delay: Duration, error: &str) -> Result<()> {
        let now = self.group.now_us();
        let dead = self
            .group
            .state
            .lock()
            .dispatch
            .nack(self.id, seq, delay, error, now);
        let dead = match dead {
            Ok(dead) => dead,
            Err(_) => {
                self.group.changed.notify_waiters();
                return Err(BrokerError::NotHeld { seq });
            }
        };
        self.group.bury(dead.into_iter().collect());
        self.group.changed.notify_waiters();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::runs;

    #[test]
    fn settled_seqs_are_saved_as_runs() {
        assert_eq!(runs([].into_iter()), Vec::<[u64; 2]>::new());
        assert_eq!(
            runs([3, 4, 5, 9, 11, 12].into_iter()),
            vec![[3, 6], [9, 10], [11, 13]]
        );
    }
}
