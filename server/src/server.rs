//! The composition root: one [`Server`] wires a broker to its listeners
//! (binary protocol on TCP, TLS and QUIC; HTTP and HTTPS), its hooks, its
//! metrics and one shutdown. `fanlog serve`, the load tool and the test
//! helpers all start their servers here.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fanlog_broker::{Broker, BrokerError};
use tokio::task::JoinSet;

use crate::auth::Auth;
use crate::edge::{self, ApiServer, EdgeState, HttpConfig};
use crate::hooks::{HookError, Hooks, HooksConfig};
use crate::metrics::{Metrics, MetricsExt};
use crate::transport::{SessionLimits, quic, tcp, tls};

/// The one shutdown signal of a server: cancelling it ends every listener
/// and every open stream (SSE, WebSocket, long poll, binary sessions).
pub type Shutdown = tokio_util::sync::CancellationToken;

/// Why a server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A listener could not be bound.
    #[error("cannot listen on {kind} {addr}: {source}")]
    Listen {
        /// `tcp`, `tls`, `quic`, `http` or `https`.
        kind: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate could not be loaded or made.
    #[error("cannot load the TLS certificate: {0}")]
    Certificate(std::io::Error),
    /// The hooks could not be started.
    #[error("cannot start the webhooks: {0}")]
    Hooks(#[from] HookError),
    /// Settings of the HTTP edge that do not hold.
    #[error("bad HTTP settings: {0}")]
    Http(String),
    /// A listener failed while serving.
    #[error("a listener failed: {0}")]
    Serve(std::io::Error),
    /// Closing the broker failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// What a [`Server`] is to run; made by [`Server::builder`].
#[derive(Debug)]
#[must_use]
pub struct ServerBuilder {
    broker: Broker,
    tcp: Option<SocketAddr>,
    tls: Option<SocketAddr>,
    quic: Option<SocketAddr>,
    http: Option<SocketAddr>,
    https: Option<SocketAddr>,
    certificate: Option<(PathBuf, PathBuf)>,
    auth: Auth,
    session_limits: SessionLimits,
    max_connections: usize,
    max_connections_per_ip: usize,
    http_config: HttpConfig,
    hooks: Option<HooksConfig>,
}

impl ServerBuilder {
    /// The binary protocol over TCP on `addr` (port 0 picks one).
    pub fn tcp(mut self, addr: SocketAddr) -> Self {
        self.tcp = Some(addr);
        self
    }

    /// The binary protocol over TLS on `addr`.
    pub fn tls(mut self, addr: SocketAddr) -> Self {
        self.tls = Some(addr);
        self
    }

    /// The binary protocol over QUIC on `addr`.
    pub fn quic(mut self, addr: SocketAddr) -> Self {
        self.quic = Some(addr);
        self
    }

    /// The HTTP edge on `addr`.
    pub fn http(mut self, addr: SocketAddr) -> Self {
        self.http = Some(addr);
        self
    }

    /// The HTTP edge over TLS on `addr`.
    pub fn https(mut self, addr: SocketAddr) -> Self {
        self.https = Some(addr);
        self
    }

    /// The certificate (PEM) and key of TLS, QUIC and HTTPS; without one a
    /// self-signed certificate is made in the broker's directory
    /// (`DATA/tls/cert.pem`).
    pub fn certificate(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.certificate = Some((cert.into(), key.into()));
        self
    }

    /// Tokens and their rights on every interface (open by default).
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Limits of each binary-protocol session (frame size, subscriptions,
    /// the Hello's deadline, ...).
    pub fn session_limits(mut self, limits: SessionLimits) -> Self {
        self.session_limits = limits;
        self
    }

    /// Connections served at once, in all and from one address, by each
    /// listener.
    pub fn connection_limits(mut self, max: usize, per_ip: usize) -> Self {
        self.max_connections = max;
        self.max_connections_per_ip = per_ip;
        self
    }

    /// Settings of the HTTP edge (CORS, public URL, timeouts, body limit).
    /// Its connection limits and `api_servers` are set by the builder.
    pub fn http_config(mut self, config: HttpConfig) -> Self {
        self.http_config = config;
        self
    }

    /// Runs webhooks, REST Hooks and the WebSub hub with `config`.
    pub fn hooks(mut self, config: HooksConfig) -> Self {
        self.hooks = Some(config);
        self
    }

    /// Binds every listener asked for and starts serving.
    ///
    /// # Errors
    /// A listener that cannot be bound, a certificate that cannot be loaded,
    /// hooks that cannot start, or HTTP settings that do not hold. Nothing
    /// keeps running after an error.
    pub async fn start(self) -> Result<Server, ServerError> {
        let mut server = Server {
            broker: self.broker.clone(),
            listening: Vec::new(),
            certificate: None,
            hooks: None,
            shutdown: Shutdown::new(),
            tasks: JoinSet::new(),
        };
        let started = self.start_into(&mut server).await;
        match started {
            Ok(()) => Ok(server),
            Err(e) => {
                server.shutdown.cancel();
                while server.tasks.join_next().await.is_some() {}
                if let Some(h) = &server.hooks {
                    h.shutdown().await;
                }
                Err(e)
            }
        }
    }

    async fn start_into(self, server: &mut Server) -> Result<(), ServerError> {
        let identity = |server: &mut Server| -> Result<quic::Identity, ServerError> {
            let (cert, key) = match &self.certificate {
                Some((c, k)) => (Some(c.as_path()), Some(k.as_path())),
                None => (None, None),
            };
            let identity =
                quic::identity(self.broker.dir(), cert, key).map_err(ServerError::Certificate)?;
            server.certificate = Some(identity.cert_path.clone());
            Ok(identity)
        };
        let bind = |kind: &'static str, addr: SocketAddr| async move {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Listen { kind, addr, source })
        };
        let tcp_config = tcp::TcpConfig {
            auth: self.auth.clone(),
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            limits: self.session_limits.clone(),
            tls: None,
        };
        if let Some(addr) = self.tcp {
            let listener = bind("tcp", addr).await?;
            server.listening("tcp", listener.local_addr());
            let stop = server.shutdown.clone().cancelled_owned();
            let broker = self.broker.clone();
            let config = tcp_config.clone();
            server
                .tasks
                .spawn(tcp::serve(listener, broker, config, stop));
        }
        if let Some(addr) = self.tls {
            let acceptor = tls::Acceptor::new(&identity(server)?, &[quic::ALPN])
                .map_err(ServerError::Certificate)?;
            let listener = bind("tls", addr).await?;
            server.listening("tls", listener.local_addr());
            let config = tcp::TcpConfig {
                tls: Some(acceptor),
                ..tcp_config.clone()
            };
            let stop = server.shutdown.clone().cancelled_owned();
            server
                .tasks
                .spawn(tcp::serve(listener, self.broker.clone(), config, stop));
        }
        if let Some(addr) = self.quic {
            let identity = identity(server)?;
            let config = quic::QuicConfig {
                auth: self.auth.clone(),
                max_connections: self.max_connections,
                max_connections_per_ip: self.max_connections_per_ip,
                limits: self.session_limits.clone(),
                ..quic::QuicConfig::default()
            };
            let endpoint =
                quic::endpoint(addr, identity, &config).map_err(|source| ServerError::Listen {
                    kind: "quic",
                    addr,
                    source,
                })?;
            server.listening("quic", endpoint.local_addr());
            let stop = server.shutdown.clone().cancelled_owned();
            server
                .tasks
                .spawn(quic::serve(endpoint, self.broker.clone(), config, stop));
        }
        if let Some(config) = self.hooks.clone() {
            server.hooks = Some(Hooks::open(self.broker.clone(), config)?);
        }
        if self.http.is_none() && self.https.is_none() {
            return Ok(());
        }
        // Bound first: the public URL defaults to the listener's address.
        let http = match self.http {
            Some(addr) => Some(bind("http", addr).await?),
            None => None,
        };
        let https = match self.https {
            Some(addr) => Some(bind("https", addr).await?),
            None => None,
        };
        let local =
            |l: &Option<tokio::net::TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
        let public_url = match (&self.http_config.public_url, local(&https), local(&http)) {
            (Some(u), _, _) => Some(u.trim_end_matches('/').to_owned()),
            (None, Some(a), _) => Some(format!("https://{a}")),
            (None, None, Some(a)) => Some(format!("http://{a}")),
            (None, None, None) => None,
        };
        let config = HttpConfig {
            public_url,
            api_servers: api_servers(&server.listening),
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            ..self.http_config.clone()
        };
        let mut state = EdgeState::new(self.broker.clone(), config, server.shutdown.clone())
            .map_err(ServerError::Http)?
            .with_auth(self.auth.clone());
        if let Some(hooks) = &server.hooks {
            state = state.with_hooks(hooks.clone());
        }
        if let Some(listener) = http {
            server.listening("http", listener.local_addr());
            let stop = server.shutdown.clone().cancelled_owned();
            server
                .tasks
                .spawn(edge::serve(listener, state.clone(), stop));
        }
        if let Some(listener) = https {
            let acceptor = tls::Acceptor::new(&identity(server)?, &[b"http/1.1"])
                .map_err(ServerError::Certificate)?;
            server.listening("https", listener.local_addr());
            let stop = server.shutdown.clone().cancelled_owned();
            server
                .tasks
                .spawn(edge::serve_tls(listener, acceptor, state, stop));
        }
        Ok(())
    }
}

/// The binary-protocol listeners as the AsyncAPI document lists them.
fn api_servers(listening: &[(&'static str, SocketAddr)]) -> Vec<ApiServer> {
    listening
        .iter()
        .filter_map(|(kind, a)| {
            let (protocol, description) = match *kind {
                "tcp" => (
                    "fanlog",
                    "fanlog's binary protocol over TCP (the client crate).",
                ),
                "tls" => ("fanlog-tls", "fanlog's binary protocol over TLS."),
                "quic" => (
                    "fanlog-quic",
                    "fanlog's binary protocol over QUIC, one stream per session.",
                ),
                _ => return None,
            };
            Some(ApiServer {
                name: (*kind).into(),
                host: a.to_string(),
                protocol: protocol.into(),
                description: description.into(),
            })
        })
        .collect()
}

/// A broker served on its listeners (TCP, TLS, QUIC, HTTP, HTTPS), with
/// its hooks, metrics and one shutdown; made by [`Server::builder`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use fanlog_broker::{Broker, BrokerConfig};
/// use fanlog_server::Server;
///
/// let dir = tempfile::tempdir()?;
/// let broker = Broker::open(dir.path(), BrokerConfig::default())?;
/// let any = "127.0.0.1:0".parse()?;
/// let server = Server::builder(broker).tcp(any).http(any).start().await?;
/// assert!(server.addr("tcp").is_some() && server.addr("http").is_some());
/// server.stop().await?; // listeners, then hooks, then the broker
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Server {
    broker: Broker,
    listening: Vec<(&'static str, SocketAddr)>,
    certificate: Option<PathBuf>,
    hooks: Option<Hooks>,
    shutdown: Shutdown,
    tasks: JoinSet<std::io::Result<()>>,
}

impl Server {
    /// A server over `broker`, with no listener yet.
    pub fn builder(broker: Broker) -> ServerBuilder {
        ServerBuilder {
            broker,
            tcp: None,
            tls: None,
            quic: None,
            http: None,
            https: None,
            certificate: None,
            auth: Auth::open(),
            session_limits: SessionLimits::default(),
            max_connections: 10_000,
            max_connections_per_ip: 10_000,
            http_config: HttpConfig::default(),
            hooks: None,
        }
    }

    fn listening(&mut self, kind: &'static str, addr: std::io::Result<SocketAddr>) {
        if let Ok(addr) = addr {
            self.listening.push((kind, addr));
        }
    }

    /// The broker served.
    #[must_use]
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Every listener as `(kind, address)`, in the order they were bound:
    /// `tcp`, `tls`, `quic`, `http`, `https`.
    #[must_use]
    pub fn listeners(&self) -> &[(&'static str, SocketAddr)] {
        &self.listening
    }

    /// The address of the listener of `kind`, if there is one.
    #[must_use]
    pub fn addr(&self, kind: &str) -> Option<SocketAddr> {
        self.listening
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, a)| *a)
    }

    /// The certificate clients of TLS, QUIC and HTTPS should trust, when one
    /// of them runs.
    #[must_use]
    pub fn certificate(&self) -> Option<&Path> {
        self.certificate.as_deref()
    }

    /// The hooks, when the server runs them.
    #[must_use]
    pub fn hooks(&self) -> Option<&Hooks> {
        self.hooks.as_ref()
    }

    /// The broker's metrics.
    #[must_use]
    pub fn metrics(&self) -> Arc<Metrics> {
        self.broker.metrics()
    }

    /// The server's shutdown: cancelling it makes [`Server::wait`] return.
    #[must_use]
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Serves until `signal` completes (or the shutdown is cancelled), then
    /// stops as [`Server::stop`] does.
    ///
    /// # Errors
    /// As [`Server::stop`].
    pub async fn wait(self, signal: impl Future<Output = ()>) -> Result<(), ServerError> {
        tokio::select! {
            () = signal => {}
            () = self.shutdown.cancelled() => {}
        }
        self.stop().await
    }

    /// Graceful stop, in order: every listener tells its connections and
    /// streams and waits for them; the hooks finish their deliveries in
    /// flight; the broker syncs and closes.
    ///
    /// # Errors
    /// A listener that failed while serving, or a failed final sync.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        self.shutdown.cancel();
        let mut failed = None;
        while let Some(r) = self.tasks.join_next().await {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failed = failed.or(Some(ServerError::Serve(e))),
                Err(e) => {
                    failed = failed.or(Some(ServerError::Serve(std::io::Error::other(e))));
                }
            }
        }
        if let Some(h) = &self.hooks {
            h.shutdown().await;
        }
        self.broker.close()?;
        failed.map_or(Ok(()), Err)
    }
}
