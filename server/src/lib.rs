//! fanlog's servers: every interface that reaches the broker core from
//! outside the process, as peers over one [`fanlog_broker::Broker`].
//!
//! # Layout
//! - `transport/`: the binary protocol over TCP (plain or TLS) and QUIC
//! - `edge/`: the HTTP edge (REST, SSE, WebSocket, long poll, console)
//! - `hooks/`: push delivery (webhooks over REST Hooks, the WebSub hub), the
//!   SSRF guard
//! - `auth`: tokens, their rights per topic pattern, tickets and sessions
//! - `cloudevents`: CloudEvents 1.0 over HTTP
//! - `metrics`: `GET /metrics`, one set per broker
//! - `server`: [`Server`], the composition root that wires them

#![warn(missing_docs)]

pub mod auth;
pub mod cloudevents;
pub mod edge;
pub mod hooks;
pub mod metrics;
mod server;
pub mod transport;

pub use metrics::MetricsExt;
pub use server::{Server, ServerBuilder, ServerError, Shutdown};
