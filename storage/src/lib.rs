//! fanlog's storage room: what the broker core stores through, and the
//! embedded default that implements it.
//!
//! The core (`fanlog-broker`) reaches storage only through the traits here:
//! - [`Storage`]: the set of topics (list, open, create, remove), the
//!   [`MetaStore`] and the [`Leases`];
//! - [`TopicLog`]: one topic's log (append in order with a durability
//!   watermark, read from a seq, seek by time, truncate, bounds, sync);
//! - [`OffsetStore`]: one topic's consumer group offsets, group-committed;
//! - [`MetaStore`]: small documents by namespace and key with revisions
//!   (topic settings, the hook registry);
//! - [`Leases`]: exclusive, expiring ownership of a name (which process
//!   delivers a hook).
//!
//! A record leaves storage as a [`Record`], a reference-counted view of its
//! bytes ([`RecordSource`]), never as a storage-internal type.
//!
//! [`local`] is the embedded default: a data directory of mmap-backed,
//! append-only segment logs, offsets logs and settings files. Nothing here
//! knows a transport, HTTP or a metrics format.

#![warn(missing_docs)]

mod config;
mod error;
#[cfg(feature = "cluster")]
pub mod jetstream;
mod leases;
pub mod local;
mod record;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use fanlog_protocol::{GroupName, Producer, TopicName};
use tokio::sync::watch;

pub use config::{Durability, ParseDurabilityError, TopicConfig, TopicOverrides};
pub use error::{Result, StorageError};
pub use leases::{Lease, Leases, LocalLeases};
pub use local::RecoveryReport;
pub use record::{Record, RecordRun, RecordSource};

/// One message to append, borrowed; its metadata already archived.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Producer id and sequence, for deduplication.
    pub producer: Option<Producer>,
    /// The idempotency key, for deduplication.
    pub idempotency_key: Option<&'a [u8]>,
    /// Archived metadata (rkyv), or empty.
    pub meta: &'a [u8],
    /// The message key.
    pub key: &'a [u8],
    /// The payload.
    pub payload: &'a [u8],
}

/// Durability watermark: records below `upto` are synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Durable {
    /// Records below this seq are durable.
    pub upto: u64,
    /// A sync failed: nothing more will become durable.
    pub failed: bool,
}

/// The result of looking up one seq.
#[derive(Debug)]
pub enum ReadAt {
    /// The record.
    Record(Record),
    /// The seq was removed by retention; the log now starts at `to`.
    Gap {
        /// The first seq still stored.
        to: u64,
    },
    /// The seq, and those up to `to`, were quarantined by recovery (they
    /// failed their checksum); the record at `to` (if any) is readable.
    Lost {
        /// The seq after the quarantined run.
        to: u64,
    },
    /// The seq is not (yet) readable.
    End,
}

/// Where a reader of a [`TopicLog`] was, so that the next read of a nearby
/// seq is cheap (the local log keeps the segment of the previous read).
/// Opaque to the reader; start with `ReadCursor::default()`.
#[derive(Default)]
pub struct ReadCursor(pub(crate) Option<Arc<dyn std::any::Any + Send + Sync>>);

impl fmt::Debug for ReadCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ReadCursor")
            .field(&self.0.is_some())
            .finish()
    }
}

/// One topic's log: dense seqs from 0, one writer, any number of readers.
///
/// Invariants every implementation keeps (the core relies on them): seqs
/// are dense and never renumbered; a record is readable only once complete
/// (and, under [`Durability::Always`], durable); published bytes never
/// change; retention and truncation remove only from the front, moving
/// [`TopicLog::first_seq`] up, and readers below it get [`ReadAt::Gap`].
pub trait TopicLog: Send + Sync + fmt::Debug {
    /// The topic.
    fn name(&self) -> &TopicName;
    /// Its settings, as opened.
    fn config(&self) -> &TopicConfig;
    /// What was found and repaired when it was opened.
    fn recovery_report(&self) -> &RecoveryReport;
    /// The first stored seq.
    fn first_seq(&self) -> u64;
    /// The seq the next append gets.
    fn next_seq(&self) -> u64;
    /// Bytes stored.
    fn bytes(&self) -> u64;
    /// Moves to the readable head each time it advances.
    fn watch_readable(&self) -> watch::Receiver<u64>;
    /// Moves to the durable head each time a sync completes (or fails).
    fn watch_durable(&self) -> watch::Receiver<Durable>;
    /// Why the log refuses writes, once a sync failed.
    fn poisoned(&self) -> Option<StorageError>;
    /// Appends `entries` in order. A log that numbers records itself
    /// pushes each one's seq to `seqs` (for a remembered duplicate, the seq
    /// the original got) and returns [`Appending::Stored`]; a log whose
    /// engine numbers them returns [`Appending::Replicating`], which
    /// resolves to the seqs once the engine acknowledged them. Entries of
    /// one caller's successive appends keep their order either way.
    ///
    /// # Errors
    /// [`StorageError::Poisoned`], [`StorageError::Closed`],
    /// [`StorageError::IdempotencyConflict`], [`StorageError::Io`] (nothing
    /// of the batch kept).
    fn append(&self, entries: &[Entry<'_>], now_us: u64, seqs: &mut Vec<u64>) -> Result<Appending>;
    /// Looks up `seq`, starting from `cursor` (the previous read's place).
    ///
    /// # Errors
    /// [`StorageError::Corrupt`] when stored bytes fail validation.
    fn read_at(&self, seq: u64, cursor: &mut ReadCursor) -> Result<ReadAt>;
    /// The first readable seq appended at or after `ts_us`, or the head.
    ///
    /// # Errors
    /// [`StorageError::Corrupt`].
    fn seek_time(&self, ts_us: u64) -> Result<u64>;
    /// Removes what lies wholly below `before`; returns the new first seq.
    ///
    /// # Errors
    /// [`StorageError::Io`], [`StorageError::Poisoned`].
    fn truncate(&self, before: u64, now_us: u64) -> Result<u64>;
    /// Applies the retention settings now.
    fn enforce_retention(&self, now_us: u64);
    /// Whether appended records await a sync.
    fn dirty(&self) -> bool;
    /// Makes everything appended durable and moves the durable head.
    ///
    /// # Errors
    /// The sync failed: the log is poisoned from now on.
    fn sync(&self) -> Result<()>;
    /// Syncs that wrote something since open.
    fn syncs(&self) -> u64;
    /// Records below this seq are durable.
    fn durable_seq(&self) -> u64;
    /// How often to sync, when the durability mode asks for a period.
    fn sync_interval(&self) -> Option<Duration> {
        match self.config().durability {
            Durability::Interval(d) => Some(d),
            _ => None,
        }
    }
    /// Takes the log's request for [`TopicLog::maintain`]: true once after
    /// an append made background work due.
    fn take_maintenance(&self) -> bool {
        false
    }
    /// Background work that must not run on a writer's thread (the local
    /// log rolls a filling segment ahead of need, so that an append does
    /// not create files or sync a directory). The broker runs it on its
    /// flusher thread.
    fn maintain(&self, _now_us: u64) {}
    /// Resolves once a read of `seq` can be answered without waiting
    /// (the local log: at once; a cluster log: once a block below its
    /// tail is fetched, or after a bounded wait): for one-shot readers
    /// (a page of messages) that must not mistake "not fetched yet" for
    /// the end.
    fn warm(&self, _seq: u64) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(std::future::ready(()))
    }
    /// Whether a read of `seq` is answered now, without [`TopicLog::warm`].
    fn is_warm(&self, _seq: u64) -> bool {
        true
    }
    /// Refuses appends from now on; readers end at the head.
    fn close(&self);
    /// [`TopicLog::close`], then waits until no append is under way.
    fn close_and_wait(&self);
    /// Whether it was closed.
    fn is_closed(&self) -> bool;
}

/// Resolves to the seqs of an append once its engine acknowledged it.
pub type AckFuture = Pin<Box<dyn Future<Output = Result<Vec<u64>>> + Send>>;

/// What [`TopicLog::append`] hands back.
#[must_use = "an append is acknowledged only once durable"]
pub enum Appending {
    /// In the log now, its seqs pushed; durable once
    /// [`TopicLog::watch_durable`] passes `upto`.
    Stored {
        /// The head to wait for.
        upto: u64,
    },
    /// Handed to a replicated engine (cluster mode): the seqs come with its
    /// acknowledgement, which is the durability promise.
    Replicating(AckFuture),
}

impl fmt::Debug for Appending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stored { upto } => f.debug_struct("Stored").field("upto", upto).finish(),
            Self::Replicating(_) => f.write_str("Replicating"),
        }
    }
}

/// A wait for a commit to become durable (see [`OffsetStore::durable`]).
pub type DurableWait<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// One topic's consumer group offsets.
pub trait OffsetStore: Send + Sync + fmt::Debug {
    /// The committed offset of `group`, if it ever committed.
    fn committed(&self, group: &GroupName) -> Option<u64>;
    /// Every group and its committed offset, sorted.
    fn groups(&self) -> Vec<(GroupName, u64)>;
    /// Records `seq` as `group`'s offset (visible to readers at once);
    /// returns a ticket for [`OffsetStore::durable`] when the commit needs
    /// a sync before the durability mode's promise holds.
    ///
    /// # Errors
    /// [`StorageError::LimitReached`] past `max_groups`,
    /// [`StorageError::Io`].
    fn commit(&self, group: &GroupName, seq: u64, max_groups: usize) -> Result<Option<u64>>;
    /// Resolves once the commit of `ticket` is durable.
    fn durable(&self, ticket: u64) -> DurableWait<'_>;
    /// Makes every commit so far durable (and compacts).
    ///
    /// # Errors
    /// The sync failed.
    fn sync(&self) -> Result<()>;
}

/// A topic as opened from storage: its log and its offsets.
#[derive(Debug)]
pub struct OpenedTopic {
    /// The log.
    pub log: Box<dyn TopicLog>,
    /// The consumer group offsets.
    pub offsets: Box<dyn OffsetStore>,
}

/// What a metadata document is about; each namespace is its own key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Namespace {
    /// A topic's own settings, keyed by topic name ([`TopicOverrides`] as
    /// JSON).
    Settings,
    /// The hook registry and what was set aside from it.
    Hooks,
    /// Single-use tickets, each stored with a time to live
    /// ([`MetaStore::put_expiring`]) and redeemed by [`MetaStore::take`].
    Tickets,
    /// A work-sharing group's settled seqs (its floor and the acks above
    /// it), keyed `<topic>/<group>`.
    Shared,
}

/// A document with the revision it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The stored bytes.
    pub value: Vec<u8>,
    /// Moves on every write of the key.
    pub revision: u64,
}

/// What a [`MetaStore::put`] expects of the stored revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Write whatever is stored.
    Any,
    /// Write only if the key does not exist.
    Absent,
    /// Write only if the key is still at this revision.
    Revision(u64),
}

/// Small documents by namespace and key, each write durable and atomic (a
/// crash leaves the old value or the new one), with compare-and-swap on a
/// revision.
pub trait MetaStore: Send + Sync + fmt::Debug {
    /// The document, if stored.
    ///
    /// # Errors
    /// [`StorageError::Io`].
    fn get(&self, ns: Namespace, key: &str) -> Result<Option<Versioned>>;
    /// Stores `value` if the stored revision is as `expect`ed; returns the
    /// new revision.
    ///
    /// # Errors
    /// [`StorageError::Conflict`] when the revision moved, or
    /// [`StorageError::Io`].
    fn put(&self, ns: Namespace, key: &str, value: &[u8], expect: Expect) -> Result<u64>;
    /// Removes the document (nothing when absent).
    ///
    /// # Errors
    /// [`StorageError::Io`].
    fn delete(&self, ns: Namespace, key: &str) -> Result<()>;
    /// Stores a new document that is gone after `ttl` (a ticket); the key
    /// must not exist.
    ///
    /// # Errors
    /// [`StorageError::Conflict`] when the key exists,
    /// [`StorageError::LimitReached`] when too many live documents are
    /// stored, [`StorageError::Io`].
    fn put_expiring(&self, ns: Namespace, key: &str, value: &[u8], ttl: Duration) -> Result<u64>;
    /// Removes the document and returns it, atomically: of two callers
    /// taking one key, one gets it and the other `None` (a single-use
    /// ticket). An expired document is `None`.
    ///
    /// # Errors
    /// [`StorageError::Io`].
    fn take(&self, ns: Namespace, key: &str) -> Result<Option<Versioned>>;
}

/// Where the broker core keeps topics and metadata. The embedded default
/// is [`local::LocalStorage`].
pub trait Storage: Send + Sync + fmt::Debug {
    /// Every stored topic, read at start.
    ///
    /// # Errors
    /// [`StorageError::Io`].
    fn topics(&self) -> Result<Vec<TopicName>>;
    /// Opens a stored topic, recovering it, with its own settings applied
    /// over `config`; with `create`, makes it first when missing (with no
    /// settings of its own), leaving nothing behind when that fails.
    ///
    /// # Errors
    /// [`StorageError::TopicFailed`] for a topic whose stored settings are
    /// missing or bad, [`StorageError::Io`], [`StorageError::Corrupt`].
    fn open(
        &self,
        name: &TopicName,
        config: TopicConfig,
        create: bool,
        now_us: u64,
    ) -> Result<OpenedTopic>;
    /// Makes a topic with `settings` of its own applied over `config`;
    /// leaves nothing behind when that fails.
    ///
    /// # Errors
    /// [`StorageError::Io`], [`StorageError::Config`].
    fn create(
        &self,
        name: &TopicName,
        config: TopicConfig,
        settings: &TopicOverrides,
        now_us: u64,
    ) -> Result<OpenedTopic>;
    /// Removes a topic's records, offsets and settings; its log must be
    /// closed (and waited for) first.
    ///
    /// # Errors
    /// [`StorageError::Io`].
    fn remove(&self, name: &TopicName) -> Result<()>;
    /// The metadata documents.
    fn meta(&self) -> &dyn MetaStore;
    /// The leases.
    fn leases(&self) -> &dyn Leases;
    /// Whether other processes share this storage (a cluster): then a
    /// topic this process does not know may exist all the same, and is
    /// looked up with [`Storage::exists`].
    fn shared(&self) -> bool {
        false
    }
    /// Whether `name` is stored (asked of shared storage only).
    ///
    /// # Errors
    /// [`StorageError::Unavailable`] when the store cannot tell now.
    fn exists(&self, _name: &TopicName) -> Result<bool> {
        Ok(false)
    }
}
