//! Work-sharing groups in this process (issue 17): [`SharedGroup`] hands
//! each record of a topic to one of its [`Worker`]s, over the dispatch
//! state of [`crate::shared`].
//!
//! One reader per group follows the topic from the group's floor into a
//! buffer of the records not settled yet (bounded: the reader waits while
//! it is full); workers take records from it through the dispatch. The
//! floor is committed as the group's offset whenever it moves. A record
//! that fails `max_deliver` times is published to the dead-letter topic
//! (with its original topic, seq, delivery count and last error as
//! headers) before it counts as settled.
//!
//! Acks above the floor live in memory only so far: after a restart a
//! group delivers again what was acknowledged above its floor, at most
//! `max_inflight` per worker that was running (docs/shared-groups.md).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fanlog_protocol::Message;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_stream::StreamExt;

use crate::shared::{Dead, Dispatch, MemberId, NotHeld, SharedOptions, Slot};
use crate::{Broker, Event, Record, Result, StartFrom};

/// Records a group's reader keeps unsettled at most before it waits.
const BUFFER: usize = 10_000;

/// A record handed to a worker.
#[derive(Debug, Clone)]
pub struct Job {
    /// The record.
    pub record: Record,
    /// 1 on the first delivery.
    pub deliveries: u32,
}

/// A work-sharing group of one topic: add [`Worker`]s with
/// [`SharedGroup::join`]. Dropping the last handle (and its workers)
/// stops its reader.
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
    state: Mutex<State>,
    /// Something changed: a record came, a seq settled or is due again.
    changed: Arc<Notify>,
    members: AtomicU64,
    epoch: Instant,
    committed: tokio::sync::Mutex<u64>,
    reader: std::sync::OnceLock<tokio::task::AbortHandle>,
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(r) = self.reader.get() {
            r.abort();
        }
    }
}

#[derive(Debug)]
struct State {
    dispatch: Dispatch,
    /// Records from the floor up to the reader's position, not settled.
    records: BTreeMap<u64, Record>,
    /// The next seq the reader yields (past a retention gap too).
    read_upto: u64,
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

impl SharedGroup {
    /// Opens the shared group `group` of `topic` from its committed offset
    /// (the topic's first seq if none), setting dead records aside into
    /// `dead_letter` (default: `<topic>.<group>.dead`).
    ///
    /// # Errors
    /// [`crate::BrokerError::InvalidName`] for a bad topic, group or dead-letter
    /// name; as [`Broker::subscribe`].
    pub fn open(
        broker: &Broker,
        topic: &str,
        group: &str,
        options: SharedOptions,
        dead_letter: Option<&str>,
    ) -> Result<Self> {
        let dead_letter =
            dead_letter.map_or_else(|| format!("{topic}.{group}.dead"), str::to_owned);
        fanlog_protocol::TopicName::new(&dead_letter)?;
        let mut sub = broker.subscribe(topic, StartFrom::Group(group.to_owned()))?;
        let floor = sub.position();
        let changed = Arc::new(Notify::new());
        let inner = Arc::new(Group {
            broker: broker.clone(),
            topic: topic.to_owned(),
            group: group.to_owned(),
            dead_letter,
            state: Mutex::new(State {
                dispatch: Dispatch::new(options, floor, []),
                records: BTreeMap::new(),
                read_upto: floor,
            }),
            changed: changed.clone(),
            members: AtomicU64::new(0),
            epoch: Instant::now(),
            committed: tokio::sync::Mutex::new(floor),
            reader: std::sync::OnceLock::new(),
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
                let Some(event) = sub.next().await else {
                    return;
                };
                let Some(g) = weak.upgrade() else { return };
                match event {
                    Ok(Event::Record(r)) => {
                        let mut st = g.state.lock();
                        st.read_upto = r.seq() + 1;
                        if r.seq() >= st.dispatch.floor() {
                            st.records.insert(r.seq(), r);
                        }
                    }
                    Ok(Event::Gap { to, .. }) => {
                        let mut st = g.state.lock();
                        st.read_upto = st.read_upto.max(to);
                    }
                    Err(e) => {
                        tracing::warn!(topic = %g.topic, group = %g.group, "shared group reader: {e}");
                        return;
                    }
                }
                g.changed.notify_waiters();
            }
        });
        let _ = inner.reader.set(reader.abort_handle());
        Ok(Self { inner })
    }

    /// A new member of the group.
    #[must_use]
    pub fn join(&self) -> Worker {
        Worker {
            group: self.inner.clone(),
            id: self.inner.members.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Every seq below this is settled.
    #[must_use]
    pub fn floor(&self) -> u64 {
        self.inner.state.lock().dispatch.floor()
    }

    /// The group's counters now.
    #[must_use]
    pub fn stats(&self) -> crate::shared::DispatchStats {
        self.inner.state.lock().dispatch.stats()
    }
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
                let m = Message::new(r.payload().to_vec())
                    .with_key(r.key().to_vec())
                    .with_header("fanlog-dead-topic", g.topic.clone())
                    .with_header("fanlog-dead-seq", d.seq.to_string())
                    .with_header("fanlog-dead-deliveries", d.deliveries.to_string())
                    .with_header("fanlog-dead-error", d.last_error.clone());
                let m = match r.content_type() {
                    Some(ct) => m.with_content_type(ct.to_owned()),
                    None => m,
                };
                if let Err(e) = g.broker.publish(&g.dead_letter, m).await {
                    // Not settled: the floor waits at it (said in the log).
                    tracing::error!(topic = %g.topic, group = %g.group, seq = d.seq, "cannot set a dead record aside: {e}");
                    return;
                }
                g.state.lock().dispatch.settle(d.seq, r.key());
                g.settled().await;
            });
        }
    }

    /// After a settle: drops settled records below the floor, commits the
    /// floor if it moved, wakes waiters.
    async fn settled(&self) {
        let floor = {
            let mut st = self.state.lock();
            let floor = st.dispatch.floor();
            st.records = st.records.split_off(&floor);
            floor
        };
        self.changed.notify_waiters();
        let mut committed = self.committed.lock().await;
        if floor > *committed {
            match self.broker.commit(&self.topic, &self.group, floor).await {
                Ok(()) => *committed = floor,
                Err(e) => {
                    tracing::warn!(topic = %self.topic, group = %self.group, "cannot commit the floor: {e}")
                }
            }
        }
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
    /// Up to `max` records for this worker, waiting up to `wait` for the
    /// first; fewer (or none) when the wait ends first.
    ///
    /// # Errors
    /// None yet; kept for the storage's refusals to come.
    pub async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Job>> {
        let g = &self.group;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = g.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (jobs, dead, next_due) = {
                let mut st = g.state.lock();
                let now = g.now_us();
                let State {
                    dispatch,
                    records,
                    read_upto,
                } = &mut *st;
                let read_upto = *read_upto;
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
                (jobs, dead, next_due)
            };
            // Each burial wakes the waiters once it settled.
            g.bury(dead);
            if !jobs.is_empty() {
                // Records skipped as gone may have moved the floor.
                g.settled().await;
                return Ok(jobs);
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

    /// This worker processed `seq`.
    ///
    /// # Errors
    /// [`NotHeld`] when it does not hold `seq` (any more: its ack wait ran
    /// out and it went to another worker).
    pub async fn ack(&self, seq: u64) -> std::result::Result<(), NotHeld> {
        self.group.state.lock().dispatch.ack(self.id, seq)?;
        self.group.settled().await;
        Ok(())
    }

    /// This worker could not process `seq`: it is due again after `delay`
    /// (to any worker), or set aside as dead once it was delivered
    /// `max_deliver` times.
    ///
    /// # Errors
    /// As [`Worker::ack`].
    pub async fn nack(
        &self,
        seq: u64,
        delay: Duration,
        error: &str,
    ) -> std::result::Result<(), NotHeld> {
        let now = self.group.now_us();
        let dead = self
            .group
            .state
            .lock()
            .dispatch
            .nack(self.id, seq, delay, error, now)?;
        self.group.bury(dead.into_iter().collect());
        self.group.changed.notify_waiters();
        Ok(())
    }
}
