//! fanlog: a small pub/sub broker. Every topic is an mmap-backed append-only
//! log with dense sequence numbers; that number is the one cursor for every
//! kind of consumer.
//!
//! This facade re-exports the workspace's crates:
//! - [`protocol`]: the sans-IO codec (names, records),
//! - [`broker`]: the broker core, embeddable in a process,
//! - [`client`]: the async client handle.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), fanlog::broker::BrokerError> {
//! let dir = tempfile::tempdir().unwrap();
//! let broker = fanlog::Broker::open(dir.path(), fanlog::BrokerConfig::default())?;
//! assert_eq!(broker.publish("greetings", fanlog::Message::new("hi")).await?, 0);
//! # Ok(()) }
//! ```

pub use fanlog_broker as broker;
pub use fanlog_client as client;
pub use fanlog_protocol as protocol;
pub use fanlog_server as server;
/// The storage room, with cluster mode (`storage::jetstream`).
pub use fanlog_storage as storage;

pub use fanlog_broker::{
    Broker, BrokerConfig, Durability, Event, Message, StartFrom, TopicConfig, TopicOverrides,
    TopicPattern,
};

/// The README's Rust examples, compiled as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;
