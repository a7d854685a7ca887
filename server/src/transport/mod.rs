//! Network transports: the binary protocol over TCP and over QUIC. Both run
//! the same `session` over a byte stream; neither knows the log.

mod outbox;
pub mod quic;
mod session;
pub(crate) mod sessions;
pub mod tcp;
pub mod tls;

pub use session::SessionLimits;
