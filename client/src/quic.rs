//! QUIC client setup (quinn + rustls).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use crate::error::ClientError;

/// ALPN protocol id of fanlog's binary protocol over QUIC.
pub const ALPN: &[u8] = b"fanlog/1";

/// Largest UDP payload quinn will send (65,535 minus IP and UDP headers).
const MAX_UDP_PAYLOAD: u16 = 65_527;

/// First datagram size toward a loopback peer. Larger first packets were
/// dropped on this machine's receive path (between 9,000 and 16,384 bytes);
/// MTU discovery takes it further where it can.
const LOOPBACK_INITIAL_MTU: u16 = 9_000;

/// TLS settings of a QUIC or TLS connection.
pub type TlsOptions = QuicOptions;

/// TLS settings of a QUIC (or TLS, see [`TlsOptions`]) connection.
#[derive(Debug, Clone, Default)]
pub struct QuicOptions {
    /// PEM file with the certificate(s) to trust: the broker's self-signed
    /// certificate (`DATA/tls/cert.pem`) or the CA that issued its certificate.
    pub ca: Option<PathBuf>,
    /// Name the certificate must be valid for (default `localhost`).
    pub server_name: Option<String>,
    /// Accepts any certificate. For development only: anyone who can reach
    /// the network path can impersonate the broker.
    pub dangerous_skip_verification: bool,
}

fn tls_err(e: impl std::fmt::Display) -> ClientError {
    ClientError::Tls(e.to_string())
}

/// The rustls client of `q`, offering ALPN [`ALPN`]: TLS 1.3 for QUIC,
/// TLS 1.2 or 1.3 over TCP.
pub(crate) fn rustls_config(
    q: &QuicOptions,
    tls12: bool,
) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12 {
        rustls::DEFAULT_VERSIONS
    } else {
        &[&rustls::version::TLS13]
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(tls_err)?;
    let mut crypto = if q.dangerous_skip_verification {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SkipVerification(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        let path = q.ca.as_ref().ok_or_else(|| {
            ClientError::Tls("no CA certificate given (use the broker's cert.pem)".into())
        })?;
        for cert in CertificateDer::pem_file_iter(path)
            .map_err(|e| tls_err(format!("{}: {e}", path.display())))?
        {
            roots.add(cert.map_err(tls_err)?).map_err(tls_err)?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    Ok(crypto)
}

fn client_config(q: &QuicOptions, loopback: bool) -> Result<quinn::ClientConfig, ClientError> {
    let crypto = rustls_config(q, false)?;
    let mut config = quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(crypto).map_err(tls_err)?,
    ));
    config.transport_config(Arc::new(transport_config(loopback)));
    Ok(config)
}

/// Windows sized for throughput on fast links. Datagram size is what bounds
/// QUIC on a CPU budget: MTU discovery may probe up to the largest UDP
/// payload (failed probes are harmless on any path), and toward a loopback
/// peer the first packets are already large.
fn transport_config(loopback: bool) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.stream_receive_window((8u32 << 20).into());
    t.receive_window((32u32 << 20).into());
    t.send_window(32 << 20);
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MAX_UDP_PAYLOAD);
    t.mtu_discovery_config(Some(mtu));
    if loopback {
        t.initial_mtu(LOOPBACK_INITIAL_MTU);
    }
    t.keep_alive_interval(Some(Duration::from_secs(5)));
    t
}

pub(crate) async fn connect(
    addr: &str,
    q: &QuicOptions,
    timeout: Duration,
) -> Result<quinn::Connection, ClientError> {
    let fail = |reason: String| ClientError::Connect {
        addr: addr.to_owned(),
        reason,
    };
    let remote: SocketAddr = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| fail(e.to_string()))?
        .next()
        .ok_or_else(|| fail("no address".into()))?;
    let local: SocketAddr = if remote.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let mut endpoint = quinn::Endpoint::client(local).map_err(|e| fail(e.to_string()))?;
    endpoint.set_default_client_config(client_config(q, remote.ip().is_loopback())?);
    let name = q.server_name.as_deref().unwrap_or("localhost");
    let connecting = endpoint
        .connect(remote, name)
        .map_err(|e| fail(e.to_string()))?;
    tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| fail("timed out".into()))?
        .map_err(|e| fail(e.to_string()))
}

#[derive(Debug)]
struct SkipVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for SkipVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
