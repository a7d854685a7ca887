//! fanlog's broker core: durable topic logs, consumer offsets and fan-out to
//! subscribers, usable in-process as a library.
//!
//! Every topic is an append-only log of records in memory-mapped segment
//! files, with dense per-topic sequence numbers. A publish appends; a
//! [`Subscription`] is a cursor that reads straight from the mapping, so the
//! log itself is the only buffer between a publisher and any number of
//! subscribers. Consumer groups commit offsets that survive crashes.
//!
//! Transports (TCP, QUIC, the HTTP edge) are peers over the same [`Broker`]
//! handle; each takes a bound listener and a shutdown future.
//!
//! # Layout
//! - `log/`: segments, the mmap module (all `unsafe`), recovery, the writer
//! - `offsets`: consumer group offsets
//! - `flusher`: background syncs (group commit) and retention
//! - `subscription`: the subscriber stream
//! - `broker`: the embedded API
//! - `transport/`: the binary protocol over TCP and QUIC
//! - `auth`: tokens, their rights per topic pattern, tickets and sessions
//! - `edge/`: the HTTP edge (REST, SSE, WebSocket, long poll, console)
//! - `hooks/`: push delivery (webhooks over REST Hooks), the SSRF guard
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

pub mod auth;
mod broker;
pub mod cloudevents;
mod config;
pub mod edge;
mod error;
mod flusher;
pub mod hooks;
mod log;
pub mod metrics;
mod offsets;
mod record;
mod subscription;
mod topic_settings;
pub mod transport;

pub use broker::{Appended, Broker, ReadBatch, TopicInfo, TopicStats};
pub use config::{
    BrokerConfig, Durability, ParseDurabilityError, ParsePatternError, TopicConfig, TopicOverrides,
    TopicPattern,
};
pub use error::{BrokerError, Result};
pub use fanlog_protocol::{GroupName, Header, Message, Producer, RecordMeta, TopicName};
pub use log::RecoveryReport;
pub use record::Record;
pub use subscription::{Event, StartFrom, Subscription};
