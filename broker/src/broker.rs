//! The embedded broker: topics, their logs and consumer offsets, behind one
//! cloneable handle.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fanlog_protocol::{GroupName, TopicName};
use parking_lot::{Mutex, RwLock};

use crate::config::{BrokerConfig, Durability, TopicOverrides};
use crate::error::{BrokerError, Result};
use crate::flusher::{Flusher, Registry};
use crate::subscription::{StartFrom, Subscription};
use fanlog_protocol::Message;
use fanlog_storage::local::LocalStorage;
use fanlog_storage::{
    Appending, Entry, MetaStore, OffsetStore, OpenedTopic, ReadAt, ReadCursor, Record,
    RecoveryReport, Storage, TopicLog,
};

/// Microseconds since the Unix epoch, now.
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A topic: its log and its consumer groups' offsets.
#[derive(Debug)]
pub(crate) struct Topic {
    pub(crate) log: Box<dyn TopicLog>,
    pub(crate) offsets: Box<dyn OffsetStore>,
    /// Messages and payload bytes appended since the broker opened.
    pub(crate) messages_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    /// Records that failed their checksum when read for a client.
    pub(crate) corrupt_reads: AtomicU64,
    /// When the topic was last looked up (microseconds), for closing the
    /// least recently used idle topic.
    last_used: AtomicU64,
}

impl Topic {
    /// Checks `r`'s checksum before its bytes leave for a client that cannot
    /// check it (every interface but the binary protocol, whose client
    /// verifies each record itself).
    pub(crate) fn verified(&self, r: Record) -> Result<Record> {
        match r.verify() {
            Ok(()) => Ok(r),
            Err(reason) => {
                self.corrupt_reads.fetch_add(1, Ordering::Relaxed);
                let seq = r.seq();
                tracing::error!(topic = %self.log.name(), seq, %reason, "a stored record fails its checksum: refused to the reader");
                Err(BrokerError::Corrupt {
                    topic: self.log.name().to_string(),
                    seq,
                    reason,
                })
            }
        }
    }
}

pub use fanlog_protocol::TopicInfo;

/// Messages appended by [`Broker::append`], not yet known durable.
#[derive(Debug)]
#[must_use = "an append is acknowledged only once `durable` returns"]
pub struct Appended {
    broker: Broker,
    state: AppendState,
}

/// Where an append's acknowledgement comes from.
enum AppendState {
    /// Numbered by the local log; under `Always` durable past `upto`.
    Stored {
        seqs: Vec<u64>,
        wait: Option<(Arc<Topic>, u64)>,
    },
    /// Numbered and made durable by the cluster's engine.
    Replicating(fanlog_storage::AckFuture),
}

impl std::fmt::Debug for AppendState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stored { seqs, .. } => f.debug_struct("Stored").field("seqs", seqs).finish(),
            Self::Replicating(_) => f.write_str("Replicating"),
        }
    }
}

impl Appended {
    /// Each message's seq, in order, when the local log numbered them as
    /// it appended; `None` in a cluster, where they come with the
    /// engine's acknowledgement ([`Appended::durable`]).
    #[must_use]
    pub fn seqs(&self) -> Option<&[u64]> {
        match &self.state {
            AppendState::Stored { seqs, .. } => Some(seqs),
            AppendState::Replicating(_) => None,
        }
    }

    /// Waits until the messages are as durable as the topic's mode promises
    /// (at once unless [`Durability::Always`]; in a cluster, once the
    /// engine acknowledged them) and returns their seqs.
    ///
    /// # Errors
    /// [`BrokerError::Poisoned`] when the sync failed;
    /// [`BrokerError::Unavailable`] when a cluster cannot acknowledge.
    pub async fn durable(self) -> Result<Vec<u64>> {
        match self.state {
            AppendState::Stored { seqs, wait } => {
                if let Some((t, upto)) = &wait {
                    self.broker.wait_durable(t, *upto).await?;
                }
                Ok(seqs)
            }
            AppendState::Replicating(ack) => Ok(ack.await?),
        }
    }
}

/// Counters of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicStats {
    /// Syncs (fdatasync) that wrote something since the broker opened.
    pub syncs: u64,
    /// Records below this seq are durable.
    pub durable_seq: u64,
}

/// Figures of one open topic, read at once (see
/// [`Broker::open_topic_figures`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicFigures {
    /// The topic's name, first and next seq and bytes stored.
    pub info: TopicInfo,
    /// Messages appended since the broker opened.
    pub messages_in: u64,
    /// Payload bytes appended since the broker opened.
    pub bytes_in: u64,
    /// Records refused to a reader because they failed their checksum.
    pub corrupt_reads: u64,
    /// Records quarantined when the topic was opened.
    pub quarantined_records: u64,
    /// Consumer groups and their committed offsets.
    pub groups: Vec<(GroupName, u64)>,
}

/// A commit written but perhaps not yet durable (see
/// [`Broker::begin_commit`]).
#[derive(Debug)]
#[must_use = "a commit is durable only once `durable` resolves"]
pub struct Committing {
    /// The topic and the commit's ticket, under `always`.
    wait: Option<(Arc<Topic>, u64)>,
}

impl Committing {
    /// Resolves once the commit is durable under its topic's mode: at once
    /// unless the mode is `always`, else after the next sync.
    ///
    /// # Errors
    /// The sync of the offsets failed.
    pub async fn durable(self) -> Result<()> {
        match self.wait {
            Some((t, ticket)) => Ok(t.offsets.durable(ticket).await?),
            None => Ok(()),
        }
    }
}

/// A [`Broker`] handle that does not keep it open: upgrade it to use it.
#[derive(Debug, Clone)]
pub struct WeakBroker(std::sync::Weak<Inner>);

impl WeakBroker {
    /// The broker, while some strong handle still holds it.
    #[must_use]
    pub fn upgrade(&self) -> Option<Broker> {
        self.0.upgrade().map(|inner| Broker { inner })
    }
}

/// Records read from a topic by [`Broker::read`].
#[derive(Debug, Clone)]
pub struct ReadBatch {
    /// Consecutive records, in seq order.
    pub records: Vec<Record>,
    /// The seq to read next.
    pub next: u64,
    /// Set when the requested start was removed by retention: `(requested,
    /// first available)`; `records` then start at the first available.
    pub gap: Option<(u64, u64)>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    /// Where topics and metadata are kept.
    storage: Box<dyn Storage>,
    config: BrokerConfig,
    /// Open topics.
    topics: Registry,
    /// Topics on disk that are not open (idle ones closed to keep file
    /// descriptors for the busy ones), with their figures when closed:
    /// nothing changes a closed topic.
    idle: Mutex<HashMap<TopicName, TopicInfo>>,
    /// Most topics open at once (see [`BrokerConfig::max_open_topics`]).
    max_open: usize,
    /// Topics on disk that could not be opened, and why: refused on every
    /// interface until fixed, never served with other settings.
    failed: Mutex<HashMap<TopicName, String>>,
    /// Held while a topic is created, opened, closed or deleted.
    create: Mutex<()>,
    flusher: Flusher,
    closed: AtomicBool,
    /// Told how long each sync took.
    sync_observer: crate::flusher::SyncObserver,
    /// Values that other layers keep one of per broker (see
    /// [`Broker::extension`]).
    extensions: Mutex<Vec<Arc<dyn std::any::Any + Send + Sync>>>,
}

/// The broker as a library: open a data directory, publish, read, subscribe,
/// commit offsets. Cheap to clone; every clone is the same broker.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), fanlog_broker::BrokerError> {
/// use fanlog_broker::{Broker, BrokerConfig, Message, StartFrom, Event};
/// use futures_util::StreamExt;
///
/// let dir = tempfile::tempdir().unwrap();
/// let broker = Broker::open(dir.path(), BrokerConfig::default())?;
/// let seq = broker.publish("orders", Message::new("hello")).await?;
/// assert_eq!(seq, 0);
///
/// let mut sub = broker.subscribe("orders", StartFrom::Earliest)?;
/// match sub.next().await {
///     Some(Ok(Event::Record(r))) => assert_eq!(r.payload(), b"hello"),
///     other => panic!("{other:?}"),
/// }
/// broker.commit("orders", "billing", 1).await?;
/// assert_eq!(broker.committed("orders", "billing")?, Some(1));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

impl Broker {
    /// Opens (creating when missing) the data directory `dir`, recovering
    /// every topic in it.
    ///
    /// # Errors
    /// [`BrokerError::Config`] for inconsistent settings,
    /// [`BrokerError::DataDirInUse`] when another broker holds `dir`,
    /// [`BrokerError::Io`] when files cannot be opened.
    pub fn open(dir: impl AsRef<Path>, config: BrokerConfig) -> Result<Self> {
        config.validate().map_err(BrokerError::Config)?;
        let storage = LocalStorage::open(dir.as_ref())?;
        Self::with_storage(dir, Box::new(storage), config)
    }

    /// Opens a broker over `storage`, recovering every topic in it; `dir`
    /// is this process's own data directory (for what is not shared, such
    /// as a generated certificate).
    ///
    /// # Errors
    /// As [`Broker::open`].
    pub fn with_storage(
        dir: impl AsRef<Path>,
        storage: Box<dyn Storage>,
        config: BrokerConfig,
    ) -> Result<Self> {
        config.validate().map_err(BrokerError::Config)?;
        let dir = dir.as_ref().to_owned();
        let registry: Registry = Arc::new(RwLock::new(HashMap::new()));
        let mut closed = HashMap::new();
        let mut failed = HashMap::new();
        let max_open = config.open_topics_limit();
        let now = now_us();
        for name in storage.topics()? {
            // Every topic is recovered now, so that damage shows at start;
            // past the open limit each is closed again right after (recovery
            // synced it), so a broker starts with any number of topics. A
            // topic that cannot be opened is refused, and only it.
            let opened = open_topic(&*storage, &name, &config, false, now);
            let topic = match opened {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(topic = %name, error = %e, "topic not opened: it is refused until fixed; every other topic is served");
                    failed.insert(name, e.to_string());
                    continue;
                }
            };
            if registry.read().len() < max_open {
                registry.write().insert(name, Arc::new(topic));
            } else {
                closed.insert(name, info(&topic));
            }
        }
        let period = config.shortest_interval().unwrap_or(Duration::from_secs(1));
        let sync_observer = crate::flusher::SyncObserver::default();
        let flusher = Flusher::start(registry.clone(), period, sync_observer.clone())
            .map_err(BrokerError::io(&dir))?;
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                storage,
                config,
                topics: registry,
                idle: Mutex::new(closed),
                max_open,
                failed: Mutex::new(failed),
                create: Mutex::new(()),
                flusher,
                closed: AtomicBool::new(false),
                sync_observer,
                extensions: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The one `T` of this broker, made by `make` on first use: how a
    /// layer above the core (metrics, for one) keeps per-broker state that
    /// every clone of the handle shares. `make` must not hold the broker
    /// strongly (keep a [`WeakBroker`]), or the broker is never dropped.
    pub fn extension<T: Send + Sync + 'static>(&self, make: impl FnOnce(&Broker) -> T) -> Arc<T> {
        let mut all = self.inner.extensions.lock();
        if let Some(found) = all.iter().find_map(|e| e.clone().downcast::<T>().ok()) {
            return found;
        }
        let made = Arc::new(make(self));
        all.push(made.clone());
        made
    }

    /// Has `observe` told how long each sync of a topic takes (on the
    /// flusher thread: it must be quick). Only the first observer set is
    /// kept; returns whether this one was.
    pub fn on_sync(&self, observe: impl Fn(Duration) + Send + Sync + 'static) -> bool {
        self.inner.sync_observer.set(Box::new(observe))
    }

    /// A handle that does not keep the broker open.
    #[must_use]
    pub fn downgrade(&self) -> WeakBroker {
        WeakBroker(Arc::downgrade(&self.inner))
    }

    /// Figures of every open topic, by name: what a metrics scrape reads.
    /// Idle topics closed to save file descriptors are not included.
    #[must_use]
    pub fn open_topic_figures(&self) -> Vec<TopicFigures> {
        let mut all: Vec<TopicFigures> = self
            .inner
            .topics
            .read()
            .values()
            .map(|t| TopicFigures {
                info: info(t),
                messages_in: t.messages_in.load(Ordering::Relaxed),
                bytes_in: t.bytes_in.load(Ordering::Relaxed),
                corrupt_reads: t.corrupt_reads.load(Ordering::Relaxed),
                quarantined_records: t.log.recovery_report().quarantined_records,
                groups: t.offsets.groups(),
            })
            .collect();
        all.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        all
    }

    /// Whether other processes share this broker's storage (the edges of
    /// a cluster): layers above keep their state in step through it.
    #[must_use]
    pub fn storage_shared(&self) -> bool {
        self.inner.storage.shared()
    }

    /// This process's own data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The metadata documents of the broker's storage (the hook registry
    /// is one), for the layers above the core.
    #[must_use]
    pub fn meta(&self) -> &dyn MetaStore {
        self.inner.storage.meta()
    }

    /// The leases of the broker's storage: exclusive, expiring ownership
    /// of a name.
    #[must_use]
    pub fn leases(&self) -> &dyn fanlog_storage::Leases {
        self.inner.storage.leases()
    }

    /// The configuration the broker runs with.
    pub fn config(&self) -> &BrokerConfig {
        &self.inner.config
    }

    /// True once [`Broker::close`] ran (or began).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(BrokerError::Closed);
        }
        Ok(())
    }

    fn existing(&self, topic: &str) -> Result<Arc<Topic>> {
        self.check_open()?;
        let shared = self.inner.storage.shared();
        if let Some(t) = self.inner.topics.read().get(topic) {
            // In a cluster another edge may delete the topic: its log
            // closes here, and the name is looked up afresh below.
            if !(shared && t.log.is_closed()) {
                t.last_used.store(now_us(), Ordering::Relaxed);
                return Ok(t.clone());
            }
        }
        let name = TopicName::new(topic)?;
        if shared {
            self.forget_if_closed(topic);
        }
        if !self.inner.idle.lock().contains_key(topic) {
            if let Some(reason) = self.inner.failed.lock().get(topic) {
                return Err(BrokerError::TopicFailed {
                    topic: topic.to_owned(),
                    reason: reason.clone(),
                });
            }
            // Storage shared with other processes may hold topics this
            // one has not seen (made through another edge).
            if !(shared && self.inner.storage.exists(&name)?) {
                return Err(BrokerError::TopicNotFound(topic.to_owned()));
            }
            self.inner.idle.lock().insert(
                name.clone(),
                TopicInfo {
                    name: name.clone(),
                    first_seq: 0,
                    next_seq: 0,
                    bytes: 0,
                },
            );
        }
        let _g = self.inner.create.lock();
        if let Some(t) = self.inner.topics.read().get(topic) {
            return Ok(t.clone());
        }
        if !self.inner.idle.lock().contains_key(topic) {
            // Deleted meanwhile.
            return Err(BrokerError::TopicNotFound(topic.to_owned()));
        }
        self.make_room();
        let t = match open_topic(
            &*self.inner.storage,
            &name,
            &self.inner.config,
            false,
            now_us(),
        ) {
            Ok(t) => Arc::new(t),
            Err(e) => {
                // Broken while closed: refused from now on, like at start.
                tracing::error!(topic, error = %e, "topic not reopened: it is refused until fixed");
                self.inner.idle.lock().remove(topic);
                self.inner.failed.lock().insert(name, e.to_string());
                return Err(e);
            }
        };
        self.inner.idle.lock().remove(topic);
        self.inner.topics.write().insert(name, t.clone());
        tracing::debug!(topic, "reopened");
        Ok(t)
    }

    /// Drops `topic` from the open ones if its log closed under it (its
    /// stream deleted through another edge of a cluster).
    fn forget_if_closed(&self, topic: &str) {
        let _g = self.inner.create.lock();
        let mut open = self.inner.topics.write();
        if open.get(topic).is_some_and(|t| t.log.is_closed()) {
            open.remove(topic);
        }
    }

    /// Closes the least recently used idle topics (no subscription, no
    /// operation under way: only the registry holds them) while the open
    /// ones are at the limit. The create lock is held, so no topic is opened
    /// or deleted meanwhile. When every open topic is busy, none is closed
    /// and the limit is exceeded for a while rather than refusing service.
    fn make_room(&self) {
        loop {
            let victim = {
                let mut open = self.inner.topics.write();
                if open.len() < self.inner.max_open {
                    return;
                }
                let Some(name) = open
                    .iter()
                    .filter(|(_, t)| Arc::strong_count(t) == 1)
                    .min_by_key(|(_, t)| t.last_used.load(Ordering::Relaxed))
                    .map(|(n, _)| n.clone())
                else {
                    tracing::warn!(
                        open = open.len(),
                        limit = self.inner.max_open,
                        "every open topic is busy: none closed"
                    );
                    return;
                };
                let t = open.remove(&name);
                // Listed as closed before the registry lock is let go, so a
                // lookup always finds the topic one way or the other.
                if let Some(t) = &t {
                    self.inner.idle.lock().insert(name, info(t));
                }
                t
            };
            if let Some(t) = victim {
                if let Err(e) = t.log.sync().and_then(|()| t.offsets.sync()) {
                    tracing::error!(topic = %t.log.name(), error = %e, "sync before closing an idle topic failed");
                }
                t.log.close();
                tracing::debug!(topic = %t.log.name(), "closed an idle topic");
            }
        }
    }

    fn topic_or_create(&self, topic: &str) -> Result<Arc<Topic>> {
        match self.existing(topic) {
            Err(BrokerError::TopicNotFound(_)) => {}
            found => return found,
        }
        let name = TopicName::new(topic)?;
        let _g = self.inner.create.lock();
        if let Some(t) = self.inner.topics.read().get(topic) {
            return Ok(t.clone());
        }
        if self.inner.idle.lock().contains_key(topic) {
            // Closed by another caller since: open it again.
            drop(_g);
            return self.existing(topic);
        }
        self.create_locked(name, None)
    }

    /// Creates topic `name`, with `settings` of its own when given; the
    /// create lock is held and it does not exist. A topic that cannot be
    /// made leaves nothing in storage.
    fn create_locked(
        &self,
        name: TopicName,
        settings: Option<&TopicOverrides>,
    ) -> Result<Arc<Topic>> {
        let count = self.inner.topics.read().len()
            + self.inner.idle.lock().len()
            + self.inner.failed.lock().len();
        if count >= self.inner.config.max_topics {
            return Err(BrokerError::LimitReached(format!(
                "the broker holds its limit of {} topics",
                self.inner.config.max_topics
            )));
        }
        self.make_room();
        let made = match settings {
            None => open_topic(
                &*self.inner.storage,
                &name,
                &self.inner.config,
                true,
                now_us(),
            ),
            Some(own) => self
                .inner
                .storage
                .create(
                    &name,
                    self.inner.config.topic_config(name.as_str()),
                    own,
                    now_us(),
                )
                .map_err(BrokerError::from)
                .map(topic),
        };
        match made {
            Ok(t) => {
                let t = Arc::new(t);
                self.inner.topics.write().insert(name, t.clone());
                Ok(t)
            }
            Err(e) => {
                tracing::warn!(topic = %name, error = %e, "cannot create topic");
                Err(e)
            }
        }
    }

    /// Creates a topic with its own settings over those the broker's
    /// patterns give it. The settings are stored in the topic's directory
    /// and apply again after a restart.
    ///
    /// # Errors
    /// [`BrokerError::TopicExists`], [`BrokerError::InvalidName`],
    /// [`BrokerError::Config`] for settings out of range,
    /// [`BrokerError::LimitReached`], [`BrokerError::Io`].
    pub fn create_topic(&self, topic: &str, settings: &TopicOverrides) -> Result<TopicInfo> {
        self.check_open()?;
        let name = TopicName::new(topic)?;
        let _g = self.inner.create.lock();
        // A topic that failed to open exists too: creating it again would
        // write new settings over the ones it was refused for.
        if self.inner.topics.read().contains_key(topic)
            || self.inner.idle.lock().contains_key(topic)
            || self.inner.failed.lock().contains_key(topic)
        {
            return Err(BrokerError::TopicExists(topic.to_owned()));
        }
        // Made by another process sharing the storage (a cluster's edge).
        if self.inner.storage.shared() && self.inner.storage.exists(&name)? {
            return Err(BrokerError::TopicExists(topic.to_owned()));
        }
        let mut c = self.inner.config.topic_config(topic);
        settings.apply(&mut c);
        c.validate().map_err(BrokerError::Config)?;
        Ok(info(&*self.create_locked(name, Some(settings))?))
    }

    /// Deletes a topic: its subscriptions end, its files and consumer
    /// offsets are removed. Publishing to the name later creates a new,
    /// empty topic whose seqs start at 0.
    ///
    /// # Errors
    /// [`BrokerError::TopicNotFound`], [`BrokerError::InvalidName`],
    /// [`BrokerError::Io`].
    pub fn delete_topic(&self, topic: &str) -> Result<()> {
        self.check_open()?;
        let name = TopicName::new(topic)?;
        let _g = self.inner.create.lock();
        match self.inner.topics.write().remove(topic) {
            Some(t) => {
                // No append is under way once this returns, so nothing
                // writes into the topic while it is removed (or after a
                // new topic of the same name is created).
                t.log.close_and_wait();
            }
            None => {
                // Closed, or failed to open: its directory goes all the same.
                let idle = self.inner.idle.lock().remove(topic).is_some();
                let failed = self.inner.failed.lock().remove(topic).is_some();
                if !(idle || failed) {
                    return Err(BrokerError::TopicNotFound(topic.to_owned()));
                }
            }
        }
        Ok(self.inner.storage.remove(&name)?)
    }

    /// Retention now: removes the segments of `topic` whose messages all
    /// lie below `before` (whole segments only, so a few messages below it
    /// may stay); returns the new first seq. Subscribers below it get a gap.
    ///
    /// # Errors
    /// [`BrokerError::TopicNotFound`], [`BrokerError::InvalidName`],
    /// [`BrokerError::Io`], [`BrokerError::Poisoned`].
    pub fn truncate(&self, topic: &str, before: u64) -> Result<u64> {
        Ok(self.existing(topic)?.log.truncate(before, now_us())?)
    }

    /// Publishes one message, creating the topic on first use, and returns
    /// its seq (for a remembered duplicate, the seq the original got).
    ///
    /// Returns once the message is in the log, or under
    /// [`Durability::Always`] once it is also on disk.
    ///
    /// # Errors
    /// [`BrokerError::InvalidName`], [`BrokerError::MessageTooLarge`] (nothing
    /// written), [`BrokerError::Poisoned`] after a failed sync,
    /// [`BrokerError::Io`].
    pub async fn publish(&self, topic: &str, message: Message) -> Result<u64> {
        let seqs = self
            .publish_batch(topic, std::slice::from_ref(&message))
            .await?;
        seqs.first().copied().ok_or(BrokerError::EmptyBatch)
    }

    /// Publishes messages in order, with one append (and under `Always` one
    /// shared sync) for the whole batch; returns every message's seq.
    ///
    /// The batch is validated as a whole first: if any message is over the
    /// limits, nothing is written.
    ///
    /// # Errors
    /// As [`Broker::publish`], plus [`BrokerError::EmptyBatch`].
    pub async fn publish_batch(&self, topic: &str, messages: &[Message]) -> Result<Vec<u64>> {
        // Refused before anything is made: a refused publish leaves no
        // trace.
        let metas = self.check(topic, messages)?;
        self.ready(topic, true).await?;
        self.append_checked(topic, messages, &metas)?
            .durable()
            .await
    }

    /// Makes `topic` open for use without blocking the caller's runtime: a
    /// topic already open is ready at once; one that must be reopened
    /// (recovery reads and syncs its files) or, with `create`, made (its
    /// directory, settings and segment files, synced) is opened on the
    /// runtime's blocking pool. The async paths call this before the
    /// synchronous ones ([`Broker::append`], [`Broker::subscribe`]), which
    /// would otherwise do that work on the calling thread. Outside a tokio
    /// runtime the work runs inline.
    ///
    /// # Errors
    /// As [`Broker::subscribe`] with `create`, else
    /// [`BrokerError::TopicNotFound`] too.
    pub async fn ready(&self, topic: &str, create: bool) -> Result<()> {
        if self.is_open(topic) {
            return Ok(());
        }
        let broker = self.clone();
        let topic = topic.to_owned();
        let open = move || {
            if create {
                broker.topic_or_create(&topic).map(drop)
            } else {
                broker.existing(&topic).map(drop)
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => rt.spawn_blocking(open).await.map_err(|e| BrokerError::Io {
                path: self.inner.dir.clone(),
                source: std::io::Error::other(e),
            })?,
            Err(_) => open(),
        }
    }

    /// Whether `topic` is open now (its operations do no file work to
    /// reach it).
    #[must_use]
    pub fn is_open(&self, topic: &str) -> bool {
        self.inner.topics.read().contains_key(topic)
    }

    /// Appends messages like [`Broker::publish_batch`] but returns as soon as
    /// they are in the log: the seqs are known at once, and
    /// [`Appended::durable`] waits for what the durability mode promises.
    /// Lets a connection keep appending while earlier batches sync, and still
    /// acknowledge them in order.
    ///
    /// # Errors
    /// As [`Broker::publish_batch`].
    pub fn append(&self, topic: &str, messages: &[Message]) -> Result<Appended> {
        let metas = self.check(topic, messages)?;
        self.append_checked(topic, messages, &metas)
    }

    /// The checks [`Broker::append`] makes before anything is written or
    /// made (sizes against the topic's limits, metadata that archives), for
    /// a caller that must refuse a batch before it opens the topic.
    ///
    /// # Errors
    /// [`BrokerError::EmptyBatch`], [`BrokerError::MessageTooLarge`],
    /// [`BrokerError::Config`].
    pub fn validate(&self, topic: &str, messages: &[Message]) -> Result<()> {
        self.check(topic, messages).map(drop)
    }

    /// [`Broker::append`] of a batch that `check` passed, with
    /// the metadata it archived.
    fn append_checked(
        &self,
        topic: &str,
        messages: &[Message],
        metas: &[Vec<u8>],
    ) -> Result<Appended> {
        let t = self.topic_or_create(topic)?;
        // Checked before against the broker's limits when the topic was
        // not open; its own (stored with it, perhaps made by another edge
        // of a cluster) hold now.
        within(t.log.config().max_message_bytes, messages, metas)?;
        let entries: Vec<Entry<'_>> = messages
            .iter()
            .zip(metas)
            .map(|(m, meta)| Entry {
                producer: m.producer,
                idempotency_key: m.meta.idempotency_key.as_deref(),
                meta,
                key: &m.key,
                payload: &m.payload,
            })
            .collect();
        let mut seqs = Vec::with_capacity(messages.len());
        let appending = t.log.append(&entries, now_us(), &mut seqs)?;
        if t.log.take_maintenance() {
            self.inner.flusher.request_maintenance(t.clone());
        }
        t.messages_in
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        t.bytes_in.fetch_add(
            messages.iter().map(|m| m.payload.len() as u64).sum(),
            Ordering::Relaxed,
        );
        let state = match appending {
            Appending::Stored { upto } => {
                let wait = (t.log.config().durability == Durability::Always).then_some((t, upto));
                AppendState::Stored { seqs, wait }
            }
            Appending::Replicating(ack) => AppendState::Replicating(ack),
        };
        Ok(Appended {
            broker: self.clone(),
            state,
        })
    }

    /// Validates a batch for `topic` against its limits (the topic's own
    /// when open, else the broker's for its name) and archives each
    /// message's metadata.
    fn check(&self, topic: &str, messages: &[Message]) -> Result<Vec<Vec<u8>>> {
        if messages.is_empty() {
            return Err(BrokerError::EmptyBatch);
        }
        let max = match self.inner.topics.read().get(topic) {
            Some(t) => t.log.config().max_message_bytes,
            None => self.inner.config.topic_config(topic).max_message_bytes,
        };
        let metas = messages
            .iter()
            .map(|m| {
                m.meta
                    .encode()
                    .map_err(|e| BrokerError::Config(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        within(max, messages, &metas)?;
        Ok(metas)
    }

    async fn wait_durable(&self, t: &Arc<Topic>, upto: u64) -> Result<()> {
        let mut rx = t.log.watch_durable();
        if rx.borrow().upto >= upto {
            return Ok(());
        }
        self.inner.flusher.request(t.clone());
        let d = *rx
            .wait_for(|d| d.upto >= upto || d.failed)
            .await
            .map_err(|_| BrokerError::Closed)?;
        if d.upto >= upto {
            Ok(())
        } else {
            // The sync failed: the topic is poisoned and says why.
            Err(t
                .log
                .poisoned()
                .map_or(BrokerError::Closed, BrokerError::from))
        }
    }

    /// Waits until a read of `topic` from `from` can be answered from what
    /// this process holds (at once for the local log; in a cluster, once
    /// the records below the edge's tail are fetched): one-shot readers
    /// call it before [`Broker::read`].
    ///
    /// # Errors
    /// As [`Broker::read`].
    pub async fn warm(&self, topic: &str, from: u64) -> Result<()> {
        let t = self.existing(topic)?;
        t.log.warm(from).await;
        Ok(())
    }

    /// Whether a read of `topic` from `from` is answered now (see
    /// [`Broker::warm`]); true for a topic that is not open.
    #[must_use]
    pub fn is_warm(&self, topic: &str, from: u64) -> bool {
        self.inner
            .topics
            .read()
            .get(topic)
            .is_none_or(|t| t.log.is_warm(from))
    }

    /// Reads up to `max` records from seq `from`. Reading past the end gives
    /// no records; reading below the first stored seq gives a gap and the
    /// records from the first available one. In a cluster the batch ends
    /// early at records this edge has not fetched yet (the read starts
    /// their fetch): [`Broker::warm`] first waits for them.
    ///
    /// # Errors
    /// [`BrokerError::TopicNotFound`], [`BrokerError::InvalidName`],
    /// [`BrokerError::Corrupt`].
    pub fn read(&self, topic: &str, from: u64, max: usize) -> Result<ReadBatch> {
        self.read_checked(topic, from, max, false)
    }

    /// [`Broker::read`], checking each record's checksum first: a record
    /// whose bytes changed on disk is [`BrokerError::Corrupt`], never data.
    /// For readers that cannot check records themselves (the HTTP edge).
    ///
    /// # Errors
    /// As [`Broker::read`].
    pub fn read_verified(&self, topic: &str, from: u64, max: usize) -> Result<ReadBatch> {
        self.read_checked(topic, from, max, true)
    }

    fn read_checked(&self, topic: &str, from: u64, max: usize, verify: bool) -> Result<ReadBatch> {
        let t = self.existing(topic)?;
        let mut records = Vec::with_capacity(max.min(1024));
        let mut gap = None;
        let mut next = from;
        let mut cursor = ReadCursor::default();
        while records.len() < max {
            match t.log.read_at(next, &mut cursor)? {
                ReadAt::Record(r) => {
                    records.push(if verify { t.verified(r)? } else { r });
                    next += 1;
                }
                // A gap after records ends the batch, so that the one gap a
                // batch reports is always the one before its records.
                ReadAt::Gap { .. } | ReadAt::Lost { .. } if !records.is_empty() => break,
                ReadAt::Gap { to } | ReadAt::Lost { to } => {
                    gap = Some((next, to));
                    next = to;
                }
                ReadAt::End => break,
            }
        }
        Ok(ReadBatch { records, next, gap })
    }

    /// Subscribes to a topic (creating it when missing) from a start position.
    ///
    /// # Errors
    /// [`BrokerError::InvalidName`] for a bad topic or group name,
    /// [`BrokerError::Io`] when the topic cannot be created.
    pub fn subscribe(&self, topic: &str, from: StartFrom) -> Result<Subscription> {
        // A bad group name is refused before the topic is looked up or made.
        let group = match &from {
            StartFrom::Group(g) => Some(GroupName::new(g.as_str())?),
            _ => None,
        };
        let t = self.topic_or_create(topic)?;
        let start = match from {
            StartFrom::Earliest => t.log.first_seq(),
            StartFrom::Latest => t.log.next_seq(),
            StartFrom::Seq(s) => s,
            StartFrom::Group(_) => group
                .and_then(|g| t.offsets.committed(&g))
                .unwrap_or_else(|| t.log.first_seq()),
            StartFrom::Time(ts_us) => t.log.seek_time(ts_us)?,
        };
        Ok(Subscription::new(t, start))
    }

    /// Subscribes on behalf of a caller of the server's interfaces: a missing
    /// topic is created only when the caller `may_publish` to it (it could
    /// create it by publishing anyway) or the broker is configured with
    /// [`BrokerConfig::subscribe_creates_topics`]; otherwise a missing topic
    /// is [`BrokerError::TopicNotFound`], so that read-only rights cannot
    /// make directories on disk.
    ///
    /// # Errors
    /// As [`Broker::subscribe`], plus [`BrokerError::TopicNotFound`].
    pub fn subscribe_as(
        &self,
        topic: &str,
        from: StartFrom,
        may_publish: bool,
    ) -> Result<Subscription> {
        if !self.creates_on_subscribe(may_publish) {
            self.existing(topic)?;
        }
        self.subscribe(topic, from)
    }

    /// [`Broker::subscribe_as`] for async callers: a topic that must be
    /// opened or made is opened on the blocking pool first (see
    /// [`Broker::ready`]); a start that is refused anyway (a bad group
    /// name) opens and makes nothing.
    ///
    /// # Errors
    /// As [`Broker::subscribe_as`].
    pub async fn subscribe_ready(
        &self,
        topic: &str,
        from: StartFrom,
        may_publish: bool,
    ) -> Result<Subscription> {
        if let StartFrom::Group(g) = &from {
            GroupName::new(g.as_str())?;
        }
        self.ready(topic, self.creates_on_subscribe(may_publish))
            .await?;
        self.subscribe_as(topic, from, may_publish)
    }

    /// Whether a subscription of a caller who `may_publish` (or not)
    /// creates a missing topic (see [`Broker::subscribe_as`]).
    #[must_use]
    pub fn creates_on_subscribe(&self, may_publish: bool) -> bool {
        may_publish || self.inner.config.subscribe_creates_topics
    }

    /// The seq of the first message of `topic` appended at or after
    /// `ts_us` (microseconds since the Unix epoch); the next seq when every
    /// stored message is older. A binary search over the log (timestamps
    /// never decrease along a topic).
    ///
    /// # Errors
    /// [`BrokerError::TopicNotFound`], [`BrokerError::InvalidName`],
    /// [`BrokerError::Corrupt`].
    pub fn seek_time(&self, topic: &str, ts_us: u64) -> Result<u64> {
        Ok(self.existing(topic)?.log.seek_time(ts_us)?)
    }

    /// Commits `group`'s offset on `topic`: the next seq the group will read.
    /// Durable under the broker's durability mode; survives a process crash
    /// in every mode. Under [`Durability::Always`] it resolves after the
    /// flusher's next sync of the offsets, which every commit made meanwhile
    /// shares; the sync never runs on the caller's thread.
    ///
    /// # Errors
    /// [`BrokerError::OffsetOutOfRange`] past the end of the topic,
    /// [`BrokerError::TopicNotFound`], [`BrokerError::InvalidName`],
    /// [`BrokerError::Io`].
    pub async fn commit(&self, topic: &str, group: &str, seq: u64) -> Result<()> {
        self.begin_commit(topic, group, seq)?.durable().await
    }

    /// [`Broker::commit`] in two steps, for a caller that holds a lock it
    /// must not hold across a wait: the commit is written (readers of the
    /// group's offset see it) when this returns, and durable once
    /// [`Committing::durable`] resolves.
    ///
    /// # Errors
    /// As [`Broker::commit`].
    pub fn begin_commit(&self, topic: &str, group: &str, seq: u64) -> Result<Committing> {
        let t = self.existing(topic)?;
        let group = GroupName::new(group)?;
        let next_seq = t.log.next_seq();
        if seq > next_seq {
            return Err(BrokerError::OffsetOutOfRange {
                topic: topic.to_owned(),
                group: group.to_string(),
                seq,
                next_seq,
            });
        }
        let ticket = t
            .offsets
            .commit(&group, seq, self.inner.config.max_groups_per_topic)?;
        if ticket.is_some() {
            self.inner.flusher.request_offsets(t.clone());
        }
        Ok(Committing {
            wait: ticket.map(|n| (t, n)),
        })
    }

    /// The durability mode `topic` runs under (its own setting or the
    /// broker's).
    ///
    /// # Errors
    /// [`BrokerError::TopicNotFound`], [`BrokerError::InvalidName`].
    pub fn durability(&self, topic: &str) -> Result<Durability> {
        Ok(self.existing(topic)?.log.config().durability)
    }

    /// The committed offset of `group` on `topic`, if it ever committed.
    ///
    /// # Errors
    /// [`BrokerError::TopicNotFound`], [`BrokerError::InvalidName`].
    pub fn committed(&self, topic: &str, group: &str) -> Result<Option<u64>> {
        let t = self.existing(topic)?;
        Ok(t.offsets.committed(&GroupName::new(group)?))
    }

    /// Every consumer group of `topic` with its committed offset.
    ///
    /// # Errors
    /// [`BrokerError::TopicNotFound`], [`BrokerError::InvalidName`].
    pub fn groups(&self, topic: &str) -> Result<Vec<(GroupName, u64)>> {
        Ok(self.existing(topic)?.offsets.groups())
    }

    /// Every topic, sorted by name.
    pub fn topics(&self) -> Vec<TopicInfo> {
        let mut v: Vec<TopicInfo> = self.inner.topics.read().values().map(|t| info(t)).collect();
        v.extend(self.inner.idle.lock().values().cloned());
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// One topic's numbers.
    ///
    /// # Errors
    /// [`BrokerError::TopicNotFound`], [`BrokerError::InvalidName`].
    pub fn topic_info(&self, topic: &str) -> Result<TopicInfo> {
        if let Some(i) = self.inner.idle.lock().get(topic) {
            return Ok(i.clone());
        }
        Ok(info(&*self.existing(topic)?))
    }

    /// What recovery did when `topic` was opened.
    ///
    /// # Errors
    /// [`BrokerError::TopicNotFound`], [`BrokerError::InvalidName`].
    pub fn recovery_report(&self, topic: &str) -> Result<RecoveryReport> {
        Ok(self.existing(topic)?.log.recovery_report().clone())
    }

    /// Syncs every topic and every offset store now.
    ///
    /// # Errors
    /// The first sync failure ([`BrokerError::Poisoned`] or [`BrokerError::Io`]).
    pub fn flush(&self) -> Result<()> {
        let topics: Vec<Arc<Topic>> = self.inner.topics.read().values().cloned().collect();
        let mut first_err = None;
        for t in topics {
            if let Err(e) = t.log.sync().and_then(|()| t.offsets.sync()) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), |e| Err(e.into()))
    }

    /// Flushes everything and stops the background flusher; afterwards every
    /// operation fails with [`BrokerError::Closed`] and subscriptions end
    /// once they have read what was published. Dropping the last clone closes
    /// too, ignoring errors.
    ///
    /// # Errors
    /// As [`Broker::flush`].
    pub fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.inner.flusher.stop();
        let result = self.flush();
        for t in self.inner.topics.read().values() {
            t.log.close();
        }
        result
    }

    /// Counters of one topic, for metrics.
    ///
    /// # Errors
    /// [`BrokerError::TopicNotFound`], [`BrokerError::InvalidName`].
    pub fn stats(&self, topic: &str) -> Result<TopicStats> {
        let t = self.existing(topic)?;
        Ok(TopicStats {
            syncs: t.log.syncs(),
            durable_seq: t.log.durable_seq(),
        })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.flusher.stop();
            for t in self.topics.read().values() {
                if let Err(e) = t.log.sync().and_then(|()| t.offsets.sync()) {
                    tracing::error!(topic = %t.log.name(), error = %e, "flush on drop failed");
                }
                t.log.close();
            }
        }
    }
}

/// Opens `name` from `storage` under the broker's settings for it (see
/// [`Storage::open`]).
/// Refuses a batch with a message over `max` bytes (payload, key and
/// archived metadata) or a key over 64 KiB.
fn within(max: usize, messages: &[Message], metas: &[Vec<u8>]) -> Result<()> {
    for (index, (m, meta)) in messages.iter().zip(metas).enumerate() {
        let size = m.payload.len() + m.key.len() + meta.len();
        if size > max || m.key.len() > u16::MAX as usize {
            return Err(BrokerError::MessageTooLarge { index, size, max });
        }
    }
    Ok(())
}

fn open_topic(
    storage: &dyn Storage,
    name: &TopicName,
    config: &BrokerConfig,
    create: bool,
    now: u64,
) -> Result<Topic> {
    let opened = storage.open(name, config.topic_config(name.as_str()), create, now)?;
    Ok(topic(opened))
}

fn topic(opened: OpenedTopic) -> Topic {
    Topic {
        log: opened.log,
        offsets: opened.offsets,
        messages_in: AtomicU64::new(0),
        bytes_in: AtomicU64::new(0),
        corrupt_reads: AtomicU64::new(0),
        last_used: AtomicU64::new(now_us()),
    }
}

fn info(t: &Topic) -> TopicInfo {
    TopicInfo {
        name: t.log.name().clone(),
        first_seq: t.log.first_seq(),
        next_seq: t.log.next_seq(),
        bytes: t.log.bytes(),
    }
}
