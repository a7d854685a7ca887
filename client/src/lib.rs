//! fanlog's async client handle.
//!
//! Not built yet: the binary protocol, the TCP/QUIC transports and this
//! client arrive together (the wire issue). Until then, embed the broker with
//! `fanlog_broker::Broker`.
