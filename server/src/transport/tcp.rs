//! The binary protocol over TCP.

use crate::MetricsExt;
use fanlog_protocol::frame::{ErrorCode, Frame};
use std::future::Future;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use super::connections::{Connections, Refusal};
use super::session::{self, SessionLimits};
use super::tls::{Acceptor, HANDSHAKE_TIMEOUT};
use crate::auth::Auth;
use fanlog_broker::Broker;

/// Settings of the TCP listener.
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// Connections served at once; more are refused with an Error frame.
    pub max_connections: usize,
    /// Connections from one address at once (`LimitReached` beyond).
    pub max_connections_per_ip: usize,
    /// Per-connection limits.
    pub limits: SessionLimits,
    /// Tokens and their rights (open by default).
    pub auth: Auth,
    /// TLS on every connection, when set.
    pub tls: Option<Acceptor>,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_ip: 10_000,
            limits: SessionLimits::default(),
            auth: Auth::open(),
            tls: None,
        }
    }
}

/// Serves the binary protocol on an already-bound listener until `shutdown`
/// completes; then tells every connection, and returns once all have ended.
///
/// # Errors
/// Only an error of the listener itself that is not per-connection.
pub async fn serve(
    listener: TcpListener,
    broker: Broker,
    config: TcpConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let connections = Connections::new(config.max_connections, config.max_connections_per_ip);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Per-connection failures (e.g. EMFILE, a reset
                        // before accept) must not stop the listener.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                match connections.admit(peer.ip()) {
                    Ok(permit) => {
                        let (broker, limits, auth, tls, token) = (broker.clone(), config.limits.clone(), config.auth.clone(), config.tls.clone(), connections.token());
                        connections.spawn(async move {
                            let transport = if tls.is_some() { "tls" } else { "tcp" };
                            let _open = broker.metrics().connection(transport);
                            match tls {
                                None => {
                                    let (rd, wr) = stream.into_split();
                                    session::run(broker, rd, super::outbox::Stream(wr), limits, auth, token, transport).await;
                                }
                                Some(Acceptor(tls)) => {
                                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                                        Ok(Ok(stream)) => {
                                            let (rd, wr) = tokio::io::split(stream);
                                            session::run(broker, rd, super::outbox::Stream(wr), limits, auth, token, transport).await;
                                        }
                                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                                    }
                                }
                            }
                            drop(permit);
                            tracing::debug!(%peer, "connection closed");
                        });
                    }
                    Err(refusal) => {
                        broker.metrics().refused("binary", format!("{refusal:?}Connections"));
                        connections.spawn(async move {
                        let mut stream = stream;
                        let mut buf = Vec::new();
                        let (code, message) = match refusal {
                            Refusal::Total => (ErrorCode::TooManyConnections, "too many connections"),
                            Refusal::PerAddress => (ErrorCode::LimitReached, "too many connections from this address"),
                        };
                        tracing::debug!(%peer, message, "connection refused");
                        let _ = Frame::Error { code, message }.encode(0, &mut buf);
                        let _ = stream.write_all(&buf).await;
                        let _ = stream.shutdown().await;
                        });
                    }
                }
            }
        }
    }
    connections.shutdown().await;
    Ok(())
}
