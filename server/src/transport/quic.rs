//! The binary protocol over QUIC (quinn). Every bidirectional stream a
//! client opens is a session of its own: the client uses one control stream
//! and one stream per subscription, so a slow subscription never holds up
//! another (no head-of-line blocking across streams).

use crate::MetricsExt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::connections::Connections;
use super::session::{self, SessionLimits};
use crate::auth::Auth;
use fanlog_broker::Broker;

/// ALPN protocol id of the binary protocol over QUIC.
pub const ALPN: &[u8] = b"fanlog/1";

/// Settings of the QUIC listener.
#[derive(Debug, Clone)]
pub struct QuicConfig {
    /// Connections served at once; more are refused.
    pub max_connections: usize,
    /// Connections from one address at once.
    pub max_connections_per_ip: usize,
    /// Streams a connection may open (its subscriptions + 1).
    pub max_streams: u32,
    /// Per-stream limits.
    pub limits: SessionLimits,
    /// Tokens and their rights (open by default).
    pub auth: Auth,
}

impl Default for QuicConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_ip: 10_000,
            max_streams: 1024,
            limits: SessionLimits::default(),
            auth: Auth::open(),
        }
    }
}

/// A certificate chain and its key, in DER.
#[derive(Debug)]
pub struct Identity {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
    /// Where the leaf certificate is, for clients to trust.
    pub cert_path: PathBuf,
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Loads `cert` + `key` (PEM), or without them the self-signed certificate
/// in `data_dir/tls/`, generating it (for `localhost` and `127.0.0.1`) on
/// first use.
///
/// # Errors
/// Unreadable or invalid PEM files.
pub fn identity(
    data_dir: &Path,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> std::io::Result<Identity> {
    let (cert_path, key_path) = match (cert, key) {
        (Some(c), Some(k)) => (c.to_owned(), k.to_owned()),
        (None, None) => {
            let dir = data_dir.join("tls");
            let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
            if !c.exists() || !k.exists() {
                std::fs::create_dir_all(&dir)?;
                let generated = rcgen::generate_simple_self_signed(vec![
                    "localhost".into(),
                    "127.0.0.1".into(),
                    "::1".into(),
                ])
                .map_err(io_err)?;
                write_private(&k, generated.key_pair.serialize_pem().as_bytes())?;
                std::fs::write(&c, generated.cert.pem())?;
                tracing::info!(cert = %c.display(), "generated a self-signed certificate for QUIC");
            }
            (c, k)
        }
        _ => return Err(io_err("--tls-cert and --tls-key go together")),
    };
    let chain = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| io_err(format!("{}: {e}", cert_path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io_err(format!("{}: {e}", cert_path.display())))?;
    if chain.is_empty() {
        return Err(io_err(format!("{}: no certificate", cert_path.display())));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| io_err(format!("{}: {e}", key_path.display())))?;
    Ok(Identity {
        chain,
        key,
        cert_path,
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

/// A quinn endpoint bound to `addr` serving `identity`.
///
/// # Errors
/// Binding fails, or the key does not fit the certificate.
pub fn endpoint(
    addr: std::net::SocketAddr,
    identity: Identity,
    config: &QuicConfig,
) -> std::io::Result<quinn::Endpoint> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(io_err)?
        .with_no_client_auth()
        .with_single_cert(identity.chain, identity.key)
        .map_err(io_err)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(
        QuicServerConfig::try_from(tls).map_err(io_err)?,
    ));
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(config.max_streams.into());
    t.max_concurrent_uni_streams(0u32.into());
    t.stream_receive_window((8u32 << 20).into());
    t.receive_window((32u32 << 20).into());
    t.send_window(32 << 20);
    // Datagram size bounds QUIC on a CPU budget: let MTU discovery probe up
    // to the largest UDP payload (failed probes are harmless on any path);
    // on loopback it settles near 64 KiB.
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(65_527);
    t.mtu_discovery_config(Some(mtu));
    if addr.ip().is_loopback() {
        // Every peer of a loopback listener is on loopback: start large.
        // (Larger first packets were dropped on this machine's receive path
        // between 9,000 and 16,384 bytes.)
        t.initial_mtu(9_000);
    }
    t.max_idle_timeout(Some(Duration::from_secs(30).try_into().map_err(io_err)?));
    server.transport_config(Arc::new(t));
    quinn::Endpoint::server(server, addr)
}

/// Serves the binary protocol on `endpoint` until `shutdown` completes; then
/// tells every stream, closes the connections and waits for them.
///
/// # Errors
/// None today; the signature leaves room for listener failures.
pub async fn serve(
    endpoint: quinn::Endpoint,
    broker: Broker,
    config: QuicConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let connections = Connections::new(config.max_connections, config.max_connections_per_ip);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                let Ok(permit) = connections.admit(incoming.remote_address().ip()) else {
                    incoming.refuse();
                    continue;
                };
                let (broker, limits, auth, streams) = (broker.clone(), config.limits.clone(), config.auth.clone(), connections.clone());
                connections.spawn(async move {
                    let conn = match incoming.await {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::debug!(error = %e, "quic handshake failed");
                            return;
                        }
                    };
                    let token = streams.token();
                    let _open = broker.metrics().connection("quic");
                    // A connection that opens no stream (so sends no Hello)
                    // in time is closed: it would hold a connection slot.
                    let mut first = true;
                    loop {
                        let accepted = tokio::select! {
                            () = token.cancelled() => break,
                            s = conn.accept_bi() => s,
                            () = tokio::time::sleep(limits.hello_timeout), if first => {
                                conn.close(0u32.into(), b"no stream opened in time");
                                break;
                            }
                        };
                        first = false;
                        let Ok((send, recv)) = accepted else { break };
                        streams.spawn(session::run(broker.clone(), recv, send, limits.clone(), auth.clone(), token.clone(), "quic"));
                    }
                    drop(permit);
                });
            }
        }
    }
    connections.shutdown().await;
    endpoint.close(0u32.into(), b"shutting down");
    endpoint.wait_idle().await;
    Ok(())
}
