//! fanlog's async client: publish, subscribe and commit over the binary
//! protocol on TCP or QUIC, or in-process over an embedded broker with the
//! same API.
//!
//! [`Client`] is a cheap, cloneable handle to a driver task that `connect`
//! spawns: users never poll an event loop. On a dropped connection the driver
//! reconnects with backoff, resends unanswered publishes (each message
//! carries a producer id and sequence, so the broker appends it once), and
//! resumes every [`Subscription`] from the seq after the last one it
//! delivered: no gap, no duplicate.
//!
//! Subscriptions are flow-controlled: the broker sends at most
//! [`ConnectOptions::window`] bytes ahead of what the application consumed.
//!
//! # Features
//! - `embedded` (default): [`Client::embedded`], the same API over an
//!   in-process `fanlog_broker::Broker`.
//! - `tls` (default): `Transport::Quic` and `Transport::Tls` (quinn and
//!   rustls). Plain TCP needs neither. A program that only embeds the
//!   broker takes `default-features = false, features = ["embedded"]` and
//!   builds no HTTP, TLS or metrics stack (`tests/rooms.rs` checks it).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), fanlog_client::ClientError> {
//! use fanlog_client::{Client, Event, StartFrom};
//! use futures_util::StreamExt;
//!
//! // In-process here; `Client::connect("127.0.0.1:7400")` talks to a server
//! // with the same calls.
//! let dir = tempfile::tempdir().unwrap();
//! let broker = fanlog_broker::Broker::open(dir.path(), Default::default())?;
//! let client = Client::embedded(broker);
//! let seq = client.publish("orders", "hello".into()).await?;
//! let mut sub = client.subscribe("orders", StartFrom::Earliest).await?;
//! match sub.next().await {
//!     Some(Ok(Event::Record(d))) => assert_eq!((d.seq(), d.payload()), (seq, &b"hello"[..])),
//!     other => panic!("{other:?}"),
//! }
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod client;
mod connect;
mod delivery;
mod driver;
mod error;
mod link;
mod pool;
mod producer;
#[cfg(feature = "tls")]
mod quic;
mod work;

pub use client::{Client, ConnectOptions, Fetched, StartFrom, Subscription, TopicInfo, Transport};
pub use delivery::{Delivery, Event};
pub use error::ClientError;
pub use fanlog_protocol::frame::ErrorCode;
pub use fanlog_protocol::{Header, Message, RecordMeta};
pub use producer::{Producer, ProducerOptions, Receipt};
#[cfg(feature = "tls")]
pub use quic::{ALPN, QuicOptions, TlsOptions};
pub use work::{Job, Worker, WorkerOptions};

/// A bare QUIC connection with the client's TLS and transport settings, for
/// benchmarks that measure the transport without the protocol.
///
/// # Errors
/// As [`Client::connect_with`].
#[doc(hidden)]
#[cfg(feature = "tls")]
pub async fn raw_quic_connection(
    options: &ConnectOptions,
) -> Result<quinn::Connection, ClientError> {
    match &options.transport {
        Transport::Quic(q) => quic::connect(&options.addr, q, options.connect_timeout).await,
        Transport::Tcp | Transport::Tls(_) => {
            Err(ClientError::Protocol("not a QUIC transport".into()))
        }
    }
}
