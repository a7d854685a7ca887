//! Opening connections and their links, per transport.

use std::sync::{Arc, Mutex};

use tokio::net::TcpStream;

use crate::client::{ConnectOptions, Transport};
use crate::error::ClientError;
use crate::link::{self, Inbox, Link, LinkId};

/// An open connection to the broker.
#[derive(Debug, Clone)]
pub(crate) enum Connection {
    /// The stream, until the control link takes it.
    Tcp(Arc<Mutex<Option<TcpStream>>>),
    /// A QUIC connection: each link is a bidirectional stream.
    #[cfg(feature = "tls")]
    Quic(quinn::Connection),
    /// A TLS stream, until the control link takes it.
    #[cfg(feature = "tls")]
    Tls(Arc<Mutex<Option<TlsStream>>>),
}

#[cfg(feature = "tls")]
type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// Opens a connection to `addr`, one of [`ConnectOptions::addresses`].
pub(crate) async fn open(opts: &ConnectOptions, addr: &str) -> Result<Connection, ClientError> {
    let fail = |reason: String| ClientError::Connect {
        addr: addr.to_owned(),
        reason,
    };
    match &opts.transport {
        Transport::Tcp => {
            let stream = tokio::time::timeout(opts.connect_timeout, TcpStream::connect(addr))
                .await
                .map_err(|_| fail("timed out".into()))?
                .map_err(|e| fail(e.to_string()))?;
            let _ = stream.set_nodelay(true);
            Ok(Connection::Tcp(Arc::new(Mutex::new(Some(stream)))))
        }
        #[cfg(feature = "tls")]
        Transport::Quic(q) => crate::quic::connect(addr, q, opts.connect_timeout)
            .await
            .map(Connection::Quic),
        #[cfg(feature = "tls")]
        Transport::Tls(q) => {
            let config = crate::quic::rustls_config(q, true)?;
            let name = q.server_name.as_deref().unwrap_or("localhost").to_owned();
            let name = rustls::pki_types::ServerName::try_from(name)
                .map_err(|e| ClientError::Tls(format!("server name: {e}")))?;
            let connecting = async {
                let tcp = TcpStream::connect(addr).await?;
                let _ = tcp.set_nodelay(true);
                tokio_rustls::TlsConnector::from(Arc::new(config))
                    .connect(name, tcp)
                    .await
            };
            let stream = tokio::time::timeout(opts.connect_timeout, connecting)
                .await
                .map_err(|_| fail("timed out".into()))?
                .map_err(|e| fail(e.to_string()))?;
            Ok(Connection::Tls(Arc::new(Mutex::new(Some(stream)))))
        }
    }
}

impl Connection {
    /// True when each subscription gets a stream of its own.
    pub(crate) fn streams_per_subscription(&self) -> bool {
        #[cfg(feature = "tls")]
        return matches!(self, Connection::Quic(_));
        #[cfg(not(feature = "tls"))]
        false
    }

    pub(crate) async fn open_link(
        &self,
        generation: u64,
        id: LinkId,
        max_frame: usize,
        inbox: Inbox,
    ) -> Result<Link, ClientError> {
        match self {
            Connection::Tcp(slot) => {
                let stream = slot
                    .lock()
                    .map_err(|_| ClientError::Protocol("connection state poisoned".into()))?
                    .take()
                    .ok_or_else(|| ClientError::Protocol("a TCP connection has one link".into()))?;
                let (rd, wr) = stream.into_split();
                Ok(link::spawn(
                    rd,
                    link::Stream(wr),
                    generation,
                    id,
                    max_frame,
                    inbox,
                ))
            }
            #[cfg(feature = "tls")]
            Connection::Tls(slot) => {
                let stream = slot
                    .lock()
                    .map_err(|_| ClientError::Protocol("connection state poisoned".into()))?
                    .take()
                    .ok_or_else(|| ClientError::Protocol("a TLS connection has one link".into()))?;
                let (rd, wr) = tokio::io::split(stream);
                Ok(link::spawn(
                    rd,
                    link::Stream(wr),
                    generation,
                    id,
                    max_frame,
                    inbox,
                ))
            }
            #[cfg(feature = "tls")]
            Connection::Quic(conn) => {
                let (send, recv) = conn.open_bi().await.map_err(|e| ClientError::Connect {
                    addr: conn.remote_address().to_string(),
                    reason: e.to_string(),
                })?;
                Ok(link::spawn(recv, send, generation, id, max_frame, inbox))
            }
        }
    }

    pub(crate) fn close(&self) {
        #[cfg(feature = "tls")]
        if let Connection::Quic(c) = self {
            c.close(0u32.into(), b"reconnecting");
        }
    }
}
