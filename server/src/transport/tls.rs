//! TLS over TCP (rustls, ring) for the binary protocol and HTTPS, with the
//! same certificate as QUIC ([`super::quic::identity`]).

use std::sync::Arc;

use super::quic::Identity;

/// Accepts TLS on TCP connections. Cheap to clone.
#[derive(Clone)]
pub struct Acceptor(pub(crate) tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Acceptor(..)")
    }
}

/// How long a client may take over its TLS handshake.
pub(crate) const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Acceptor {
    /// A TLS 1.2/1.3 server with `identity`, offering `alpn` (e.g.
    /// `fanlog/1`, `http/1.1`).
    ///
    /// # Errors
    /// The key does not fit the certificate.
    pub fn new(identity: &Identity, alpn: &[&[u8]]) -> std::io::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(std::io::Error::other)?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Self(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }
}
