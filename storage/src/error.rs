//! The storage room's error type.

use std::io;
use std::path::PathBuf;

/// What went wrong in a storage operation. The broker core turns each into
/// its own error (`fanlog_broker::BrokerError`) variant of the same name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A file operation failed.
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
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
    /// A sync failed earlier, so the log refuses writes.
    #[error("topic {topic:?} refuses writes after a failed sync: {reason}")]
    Poisoned {
        /// The topic.
        topic: String,
        /// The failure that poisoned it.
        reason: String,
    },
    /// A producer sequence or idempotency key already used for a different
    /// message.
    #[error(
        "the producer sequence or idempotency key was already used for a different message (stored as seq {seq} of topic {topic:?}); this message was not stored"
    )]
    IdempotencyConflict {
        /// The topic.
        topic: String,
        /// The seq of the message first stored under that identity.
        seq: u64,
    },
    /// A topic whose stored state cannot be used (bad or missing settings):
    /// refused, never opened with other settings.
    #[error("topic {topic:?} cannot be opened: {reason}")]
    TopicFailed {
        /// The topic.
        topic: String,
        /// Why, and what to do.
        reason: String,
    },
    /// A stored limit (groups per topic) is reached.
    #[error("{0}")]
    LimitReached(String),
    /// Settings that cannot be stored or read back.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Another process holds the data directory.
    #[error("data directory {} is in use by another broker", .0.display())]
    InUse(PathBuf),
    /// A metadata write whose expected revision no longer holds: someone
    /// else wrote the key first.
    #[error("{namespace} document {key:?} changed since it was read")]
    Conflict {
        /// The namespace, as text.
        namespace: String,
        /// The key.
        key: String,
    },
    /// The log or store was closed.
    #[error("storage is closed")]
    Closed,
    /// The cluster's engine cannot take the operation now (no quorum, no
    /// connection, a leader election under way); it may pass.
    #[error("the cluster cannot take this now: {0}")]
    Unavailable(String),
}

impl StorageError {
    /// Wraps an I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| StorageError::Io { path, source }
    }
}

/// Result alias for storage operations.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
