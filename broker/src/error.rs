//! The broker's error type.

use std::io;
use std::path::PathBuf;

use fanlog_protocol::NameError;
use fanlog_protocol::frame::ErrorCode;

/// What went wrong in a broker operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The cluster's engine cannot take the operation now (no quorum, a
    /// leader election under way, no connection); retrying may pass.
    #[error("{0}")]
    Unavailable(String),
    /// A topic or group name breaks the naming rules.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// Reading a topic that does not exist.
    #[error("topic {0:?} does not exist")]
    TopicNotFound(String),
    /// Creating a topic that exists already.
    #[error("topic {0:?} exists already")]
    TopicExists(String),
    /// A message is over the topic's size limit; nothing was written.
    #[error(
        "message {index} of the batch is {size} bytes, over the limit of {max} bytes; nothing was written"
    )]
    MessageTooLarge {
        /// Position in the batch.
        index: usize,
        /// Payload + key + metadata bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A batch with no messages.
    #[error("empty batch: nothing to publish")]
    EmptyBatch,
    /// A producer sequence or idempotency key that was already used for a
    /// different message: the first one is kept, this one is not stored.
    #[error(
        "the producer sequence or idempotency key was already used for a different message (stored as seq {seq} of topic {topic:?}); this message was not stored"
    )]
    IdempotencyConflict {
        /// The topic.
        topic: String,
        /// The seq of the message first stored under that identity.
        seq: u64,
    },
    /// A configured limit (topics, hooks, connections) is reached.
    #[error("{0}")]
    LimitReached(String),
    /// A token's publish rate is exceeded; retry after the duration.
    #[error("publish rate exceeded: retry in {} ms", .0.as_millis())]
    RateLimited(std::time::Duration),
    /// A topic that could not be opened (a bad or missing `settings.json`,
    /// a log that cannot be recovered): it is refused, never served with
    /// other settings, while every other topic works.
    #[error("topic {topic:?} cannot be opened: {reason}")]
    TopicFailed {
        /// The topic.
        topic: String,
        /// Why, and what to do.
        reason: String,
    },
    /// A file operation failed.
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A sync failed earlier, so the topic refuses writes: what it
    /// acknowledged is intact, but its durability can no longer be promised.
    #[error("topic {topic:?} refuses writes after a failed sync: {reason}")]
    Poisoned {
        /// The topic.
        topic: String,
        /// The failure that poisoned it.
        reason: String,
    },
    /// Stored bytes failed validation.
    #[error("topic {topic:?} is corrupt at seq {seq}: {reason}")]
    Corrupt {
        /// The topic.
        topic: String,
        /// Where.
        seq: u64,
        /// What was wrong.
        reason: String,
    },
    /// A committed offset beyond the end of the topic.
    #[error("cannot commit offset {seq} for group {group:?}: topic {topic:?} ends at {next_seq}")]
    OffsetOutOfRange {
        /// The topic.
        topic: String,
        /// The group.
        group: String,
        /// The requested offset.
        seq: u64,
        /// The topic's next seq.
        next_seq: u64,
    },
    /// Another process holds the data directory.
    #[error("data directory {} is in use by another broker", .0.display())]
    DataDirInUse(PathBuf),
    /// An ack or nack of a seq the worker does not hold (any more).
    #[error(
        "seq {seq} is not held by this worker: its ack wait ran out and it went to another worker, or it was never handed to this one"
    )]
    NotHeld {
        /// The seq.
        seq: u64,
    },
    /// Joining a work-sharing group with options other than the ones it
    /// runs with.
    #[error("{0}")]
    GroupConflict(String),
    /// Invalid configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The broker was closed.
    #[error("broker is closed")]
    Closed,
}

impl BrokerError {
    /// What kind of refusal this is, the one classification every interface
    /// reports: the binary protocol sends the code, HTTP maps it to a status
    /// (`fanlog-server`'s `edge::status_of`), the embedded client keeps it.
    /// Corruption of stored bytes is `Internal` (retrying will not help);
    /// I/O failures, a full disk and a topic refused at open are
    /// `Unavailable` (they may pass).
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            BrokerError::InvalidName(_) => ErrorCode::InvalidName,
            BrokerError::TopicNotFound(_) => ErrorCode::TopicNotFound,
            BrokerError::TopicExists(_) => ErrorCode::TopicExists,
            BrokerError::MessageTooLarge { .. } => ErrorCode::MessageTooLarge,
            BrokerError::EmptyBatch => ErrorCode::EmptyBatch,
            BrokerError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            BrokerError::Poisoned { .. }
            | BrokerError::Io { .. }
            | BrokerError::TopicFailed { .. }
            | BrokerError::Unavailable(_) => ErrorCode::Unavailable,
            BrokerError::Closed => ErrorCode::ShuttingDown,
            BrokerError::LimitReached(_) => ErrorCode::LimitReached,
            BrokerError::RateLimited(_) => ErrorCode::RateLimited,
            BrokerError::IdempotencyConflict { .. } => ErrorCode::IdempotencyConflict,
            BrokerError::NotHeld { .. } => ErrorCode::NotHeld,
            BrokerError::GroupConflict(_) => ErrorCode::GroupConflict,
            BrokerError::Corrupt { .. } | BrokerError::DataDirInUse(_) | BrokerError::Config(_) => {
                ErrorCode::Internal
            }
        }
    }

    /// True for a write refused because the disk (or the process's file
    /// size limit, or a quota) is full: the topic takes writes again once
    /// space returns.
    #[must_use]
    pub fn is_out_of_space(&self) -> bool {
        const ENOSPC: i32 = 28;
        const EFBIG: i32 = 27;
        const EDQUOT: i32 = 122;
        matches!(self, BrokerError::Io { source, .. }
            if matches!(source.raw_os_error(), Some(ENOSPC | EFBIG | EDQUOT)))
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| BrokerError::Io { path, source }
    }
}

impl From<fanlog_storage::StorageError> for BrokerError {
    fn from(e: fanlog_storage::StorageError) -> Self {
        use fanlog_storage::StorageError as S;
        match e {
            S::Io { path, source } => BrokerError::Io { path, source },
            S::Corrupt { topic, seq, reason } => BrokerError::Corrupt { topic, seq, reason },
            S::Poisoned { topic, reason } => BrokerError::Poisoned { topic, reason },
            S::IdempotencyConflict { topic, seq } => {
                BrokerError::IdempotencyConflict { topic, seq }
            }
            S::TopicFailed { topic, reason } => BrokerError::TopicFailed { topic, reason },
            S::LimitReached(m) => BrokerError::LimitReached(m),
            S::InUse(dir) => BrokerError::DataDirInUse(dir),
            S::Closed => BrokerError::Closed,
            S::Unavailable(m) => BrokerError::Unavailable(m),
            // A conflicting metadata write, or anything newer: refused as
            // a configuration problem with its own words.
            other => BrokerError::Config(other.to_string()),
        }
    }
}

/// Result alias for broker operations.
pub type Result<T, E = BrokerError> = std::result::Result<T, E>;
