//! The background flusher: one thread per broker that syncs topics.
//!
//! Under [`Durability::Always`](crate::Durability::Always) publishers ask it
//! for a sync and wait for the durable watermark; requests that arrive while
//! a sync runs are served by the next one, so concurrent publishers share
//! syncs (group commit). Under `Interval` it syncs every dirty topic on each
//! tick. It also applies age-based retention about once a second.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, select, tick, unbounded};
use fanlog_protocol::TopicName;
use parking_lot::RwLock;

use crate::broker::{Topic, now_us};

pub(crate) type Registry = Arc<RwLock<HashMap<TopicName, Arc<Topic>>>>;

/// What is told how long each sync took (see [`crate::Broker::on_sync`]);
/// set at most once.
#[derive(Clone, Default)]
pub(crate) struct SyncObserver(Arc<std::sync::OnceLock<Observe>>);

type Observe = Box<dyn Fn(Duration) + Send + Sync>;

impl SyncObserver {
    /// Sets the observer; false when one was already set.
    pub(crate) fn set(&self, observe: Observe) -> bool {
        self.0.set(observe).is_ok()
    }

    fn observe(&self, took: Duration) {
        if let Some(observe) = self.0.get() {
            observe(took);
        }
    }
}

impl std::fmt::Debug for SyncObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "SyncObserver(set)"
        } else {
            "SyncObserver(unset)"
        })
    }
}

enum Msg {
    /// Sync a topic's log (a publisher under `always` waits).
    Sync(Arc<Topic>),
    /// Sync a topic's consumer offsets (a committer under `always` waits).
    SyncOffsets(Arc<Topic>),
    /// A topic's log asked for background work (a segment roll ahead).
    Maintain(Arc<Topic>),
    Stop,
}

#[derive(Debug)]
pub(crate) struct Flusher {
    tx: Sender<Msg>,
    handle: parking_lot::Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Sync(_) => "Sync",
            Msg::SyncOffsets(_) => "SyncOffsets",
            Msg::Maintain(_) => "Maintain",
            Msg::Stop => "Stop",
        })
    }
}

impl Flusher {
    pub(crate) fn start(
        registry: Registry,
        period: Duration,
        observer: SyncObserver,
    ) -> std::io::Result<Self> {
        let (tx, rx) = unbounded();
        let handle = std::thread::Builder::new()
            .name("fanlog-flusher".into())
            .spawn(move || run(&registry, &rx, period, &observer))?;
        Ok(Self {
            tx,
            handle: parking_lot::Mutex::new(Some(handle)),
        })
    }

    /// Asks for `topic` to be synced soon.
    pub(crate) fn request(&self, topic: Arc<Topic>) {
        let _ = self.tx.send(Msg::Sync(topic));
    }

    /// Asks for `topic`'s consumer offsets to be synced soon.
    pub(crate) fn request_offsets(&self, topic: Arc<Topic>) {
        let _ = self.tx.send(Msg::SyncOffsets(topic));
    }

    /// Asks for `topic`'s background work (see `TopicLog::maintain`).
    pub(crate) fn request_maintenance(&self, topic: Arc<Topic>) {
        let _ = self.tx.send(Msg::Maintain(topic));
    }

    /// Stops the thread and waits for it.
    pub(crate) fn stop(&self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(h) = self.handle.lock().take() {
            let _ = h.join();
        }
    }
}

/// The tick is the shortest sync interval of any topic (`period` at
/// first, shortened when a topic with a shorter one appears, at most one
/// second); a topic with a longer interval is synced on the first tick
/// after its own interval passed.
fn run(registry: &Registry, rx: &Receiver<Msg>, period: Duration, observer: &SyncObserver) {
    let mut period = period.min(Duration::from_secs(1));
    let mut ticker = tick(period);
    let mut last_retention = Instant::now();
    let mut last_sync: HashMap<TopicName, Instant> = HashMap::new();
    loop {
        select! {
            recv(rx) -> msg => {
                // Every sender gone: the broker is gone.
                let Ok(first) = msg else { return };
                // Every request that arrived meanwhile is served by one
                // sync of each topic (group commit).
                let mut logs: Vec<Arc<Topic>> = Vec::new();
                let mut offsets: Vec<Arc<Topic>> = Vec::new();
                let mut maintain: Vec<Arc<Topic>> = Vec::new();
                let mut stop = false;
                let once = |batch: &mut Vec<Arc<Topic>>, t: Arc<Topic>| {
                    if !batch.iter().any(|b| Arc::ptr_eq(b, &t)) {
                        batch.push(t);
                    }
                };
                for m in std::iter::once(first).chain(rx.try_iter()) {
                    match m {
                        Msg::Sync(t) => once(&mut logs, t),
                        Msg::SyncOffsets(t) => once(&mut offsets, t),
                        Msg::Maintain(t) => once(&mut maintain, t),
                        Msg::Stop => stop = true,
                    }
                }
                for t in &logs {
                    timed_sync(t, observer);
                }
                for t in &offsets {
                    sync_offsets(t);
                }
                for t in &maintain {
                    t.log.maintain(now_us());
                }
                if stop {
                    return;
                }
            }
            recv(ticker) -> _ => {
                let topics: Vec<Arc<Topic>> = registry.read().values().cloned().collect();
                let now = Instant::now();
                for t in &topics {
                    if let Some(interval) = t.log.sync_interval() {
                        let last = last_sync.entry(t.log.name().clone()).or_insert(now);
                        // Half a tick of slack: ticks are not exact.
                        if now.duration_since(*last) + period / 2 >= interval {
                            *last = now;
                            if t.log.dirty() {
                                timed_sync(t, observer);
                            }
                        }
                    }
                    sync_offsets(t);
                }
                if last_retention.elapsed() >= Duration::from_secs(1) {
                    last_retention = Instant::now();
                    // Forget deleted topics.
                    last_sync.retain(|name, _| topics.iter().any(|t| t.log.name() == name));
                    let now = now_us();
                    for t in &topics {
                        t.log.enforce_retention(now);
                    }
                }
                // A topic created since (with its own settings) may want
                // syncs more often than the ticker gives.
                if let Some(shortest) = topics.iter().filter_map(|t| t.log.sync_interval()).min()
                    && shortest < period
                {
                    period = shortest;
                    ticker = tick(period);
                }
            }
        }
    }
}

/// Syncs `t`'s consumer offsets; a failure is recorded in the store (no
/// later commit is acknowledged) and reported to its waiters.
fn sync_offsets(t: &Topic) {
    if let Err(e) = t.offsets.sync() {
        tracing::error!(topic = %t.log.name(), error = %e, "offsets sync failed");
    }
}

/// Syncs `t`, recording the time it took; a failure is already recorded in
/// the topic (poisoned) and reported to every waiter through its watermark.
fn timed_sync(t: &Topic, observer: &SyncObserver) {
    let start = Instant::now();
    let _ = t.log.sync();
    observer.observe(start.elapsed());
}
