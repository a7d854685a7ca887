//! fanlog's broker core: durable topic logs, consumer offsets and fan-out to
//! subscribers, usable in-process as a library.
//!
//! Every topic is an append-only log of records in memory-mapped segment
//! files, with dense per-topic sequence numbers. A publish appends; a
//! [`Subscription`] is a cursor that reads straight from the mapping, so the
//! log itself is the only buffer between a publisher and any number of
//! subscribers. Consumer groups commit offsets that survive crashes.
//!
//! This crate knows no transport, HTTP or metrics format: the servers
//! (`fanlog-server`: TCP, QUIC, the HTTP edge, hooks, auth, metrics) are
//! peers over the same [`Broker`] handle.
//!
//! Storage is reached only through the traits of [`storage`]
//! (`fanlog-storage`): [`Broker::open`] uses its embedded default, a data
//! directory of mmap-backed logs; [`Broker::with_storage`] takes another.
//!
//! # Layout
//! - `flusher`: background syncs (group commit) and retention
//! - `subscription`: the subscriber stream
//! - `broker`: the embedded API
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), fanlog_broker::BrokerError> {
//! use fanlog_broker::{Broker, BrokerConfig, Message};
//! let dir = tempfile::tempdir().unwrap();
//! let broker = Broker::open(dir.path(), BrokerConfig::default())?;
//! let seqs = broker
//!     .publish_batch("metrics", &[Message::new("a"), Message::new("b")])
//!     .await?;
//! assert_eq!(seqs, [0, 1]);
//! let batch = broker.read("metrics", 0, 10)?;
//! assert_eq!(batch.records[1].payload(), b"b");
//! assert_eq!(batch.next, 2);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod broker;
mod config;
mod error;
mod flusher;
pub mod shared;
mod subscription;
pub mod work;

pub use broker::{
    Appended, Broker, Committing, ReadBatch, TopicFigures, TopicInfo, TopicStats, WeakBroker,
};
pub use config::{
    BrokerConfig, Durability, ParseDurabilityError, ParsePatternError, TopicConfig, TopicOverrides,
    TopicPattern,
};
pub use error::{BrokerError, Result};
pub use fanlog_protocol::{GroupName, Header, Message, Producer, RecordMeta, TopicName};
pub use fanlog_storage::{self as storage, Record, RecordRun, RecoveryReport};
pub use subscription::{Event, StartFrom, Subscription};
