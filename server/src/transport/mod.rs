//! Network transports: the binary protocol over TCP and over QUIC. Both run
//! the same `session` over a byte stream; neither knows the log.

pub(crate) mod connections;
mod outbox;
pub mod quic;
mod session;
pub mod tcp;
pub mod tls;

pub use session::SessionLimits;
