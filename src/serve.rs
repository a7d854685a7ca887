//! `fanlog serve`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use fanlog::broker::transport::{quic, tcp, tls};
use fanlog::broker::{edge, hooks};
use fanlog::{Broker, BrokerConfig, Durability, TopicConfig};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// An address, or `off`.
#[derive(Debug, Clone, Copy)]
pub enum Listen {
    Off,
    At(SocketAddr),
}

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "off" {
            return Ok(Listen::Off);
        }
        s.parse()
            .map(Listen::At)
            .map_err(|e| format!("{s:?} is not `off` or an IP:PORT address: {e}"))
    }
}

/// The config file (`--config`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    auth: fanlog::broker::auth::AuthConfig,
    #[serde(default)]
    limits: Limits,
}

/// The `[limits]` section: each refusal is a clear error (the binary
/// protocol's code, or HTTP 403/413/429/503).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Limits {
    /// Largest message (payload and metadata), bytes.
    max_message_bytes: usize,
    /// Largest HTTP request body, bytes.
    max_request_body: usize,
    /// Largest binary-protocol frame (so a publish batch), bytes.
    max_frame_bytes: usize,
    max_topics: usize,
    max_hooks: usize,
    /// Per listener (TCP, TLS, QUIC).
    max_connections: usize,
    max_connections_per_ip: usize,
    max_subscriptions_per_connection: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let tcp = tcp::TcpConfig::default();
        let broker = BrokerConfig::default();
        Self {
            max_message_bytes: broker.topic.max_message_bytes,
            max_request_body: edge::HttpConfig::default().max_body,
            max_frame_bytes: tcp.limits.max_frame,
            max_topics: broker.max_topics,
            max_hooks: hooks::HooksConfig::default().max_hooks,
            max_connections: tcp.max_connections,
            max_connections_per_ip: tcp.max_connections_per_ip,
            max_subscriptions_per_connection: tcp.limits.max_subscriptions,
        }
    }
}

fn load_config(path: &std::path::Path) -> anyhow::Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{} is not a valid config", path.display()))
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Config file (TOML): `[[auth.tokens]]` with `token` or `token_sha256`,
    /// `publish` and `subscribe` topic patterns, and `admin`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Without tokens the broker is open, so it listens on loopback only;
    /// this lets it listen on other addresses anyway.
    #[arg(long)]
    allow_open_network: bool,
    /// Data directory.
    #[arg(long, default_value = "./fanlog-data")]
    data: PathBuf,
    /// TCP listener for the binary protocol.
    #[arg(long, default_value = "127.0.0.1:7400")]
    tcp: SocketAddr,
    /// QUIC listener for the binary protocol, or `off`.
    #[arg(long, default_value = "127.0.0.1:7401")]
    quic: Listen,
    /// The binary protocol over TLS (same certificate as QUIC), or `off`.
    #[arg(long, default_value = "off")]
    tls: Listen,
    /// HTTPS listener (the same routes as --http, certificate as QUIC), or
    /// `off`.
    #[arg(long, default_value = "off")]
    https: Listen,
    /// HTTP listener (REST, SSE, WebSocket, long polling, console), or `off`.
    #[arg(long, default_value = "127.0.0.1:7480")]
    http: Listen,
    /// An origin (e.g. `https://app.example.com`) whose pages may call the
    /// HTTP API (CORS). Repeatable; none by default.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
    /// A network (`127.0.0.1`, `10.0.0.0/8`, `::1`) that webhook targets may
    /// be in although the SSRF guard refuses it (loopback, private, ...).
    /// Repeatable; none by default.
    #[arg(long = "allow-hook-target", value_name = "NET")]
    allow_hook_targets: Vec<String>,
    /// A CA certificate (PEM) to trust for https webhook targets, beside
    /// the Mozilla roots. Repeatable.
    #[arg(long = "hook-ca", value_name = "FILE")]
    hook_cas: Vec<PathBuf>,
    /// When a publish is acknowledged: always | interval:MS | never.
    #[arg(long, default_value = "interval:100")]
    fsync: Durability,
    /// Certificate (PEM) for QUIC; without it a self-signed one is generated
    /// into DATA/tls/cert.pem.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(p) => load_config(p)?,
        None => FileConfig::default(),
    };
    let auth = fanlog::broker::auth::Auth::new(&file.auth)
        .map_err(anyhow::Error::msg)
        .context("bad [auth] section")?;
    if auth.is_open() {
        let exposed: Vec<String> = [
            Some(args.tcp),
            listen_addr(args.quic),
            listen_addr(args.http),
            listen_addr(args.tls),
            listen_addr(args.https),
        ]
        .into_iter()
        .flatten()
        .filter(|a| !a.ip().is_loopback())
        .map(|a| a.to_string())
        .collect();
        if !exposed.is_empty() && !args.allow_open_network {
            anyhow::bail!(
                "no tokens are configured (--config with [[auth.tokens]]), so the broker is open to anyone \
                 who reaches it; it listens on loopback only unless --allow-open-network is given \
                 (asked for {})",
                exposed.join(", ")
            );
        }
        tracing::warn!("no tokens configured: every client may publish, read and administer");
    }
    let limits = &file.limits;
    let config = BrokerConfig {
        topic: TopicConfig {
            durability: args.fsync,
            max_message_bytes: limits.max_message_bytes,
            ..TopicConfig::default()
        },
        max_topics: limits.max_topics,
    };
    config
        .topic
        .validate()
        .map_err(anyhow::Error::msg)
        .context("bad [limits]")?;
    let session_limits = fanlog::broker::transport::SessionLimits {
        max_frame: limits.max_frame_bytes,
        max_subscriptions: limits.max_subscriptions_per_connection,
        ..Default::default()
    };
    let broker = Broker::open(&args.data, config)
        .with_context(|| format!("cannot open {}", args.data.display()))?;
    let trust_pem = args
        .hook_cas
        .iter()
        .map(|p| std::fs::read(p).with_context(|| format!("cannot read {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let hooks = hooks::Hooks::open(
        broker.clone(),
        hooks::HooksConfig {
            allow_targets: args.allow_hook_targets.clone(),
            trust_pem,
            max_hooks: limits.max_hooks,
            ..hooks::HooksConfig::default()
        },
    )
    .context("cannot start the webhooks")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let identity = || {
        quic::identity(
            &args.data,
            args.tls_cert.as_deref(),
            args.tls_key.as_deref(),
        )
        .context("cannot load the TLS certificate")
    };
    let mut listening: Vec<(&str, SocketAddr)> = Vec::new();
    let mut servers = tokio::task::JoinSet::new();
    let tcp_config = tcp::TcpConfig {
        auth: auth.clone(),
        max_connections: limits.max_connections,
        max_connections_per_ip: limits.max_connections_per_ip,
        limits: session_limits.clone(),
        tls: None,
    };
    let listener = tokio::net::TcpListener::bind(args.tcp)
        .await
        .with_context(|| format!("cannot listen on tcp {}", args.tcp))?;
    listening.push(("tcp", listener.local_addr()?));
    servers.spawn(tcp::serve(
        listener,
        broker.clone(),
        tcp_config.clone(),
        stopped(stop_rx.clone()),
    ));
    if let Listen::At(addr) = args.tls {
        let acceptor = tls::Acceptor::new(&identity()?, &[quic::ALPN])?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on tls {addr}"))?;
        listening.push(("tls", listener.local_addr()?));
        servers.spawn(tcp::serve(
            listener,
            broker.clone(),
            tcp::TcpConfig {
                tls: Some(acceptor),
                ..tcp_config
            },
            stopped(stop_rx.clone()),
        ));
    }
    if let Listen::At(addr) = args.quic {
        let identity = identity()?;
        tracing::info!(cert = %identity.cert_path.display(), "TLS certificate (pass it to clients with --ca)");
        let config = quic::QuicConfig {
            auth: auth.clone(),
            max_connections: limits.max_connections,
            max_connections_per_ip: limits.max_connections_per_ip,
            limits: session_limits.clone(),
            ..quic::QuicConfig::default()
        };
        let endpoint = quic::endpoint(addr, identity, &config)
            .with_context(|| format!("cannot listen on quic {addr}"))?;
        listening.push(("quic", endpoint.local_addr()?));
        servers.spawn(quic::serve(
            endpoint,
            broker.clone(),
            config,
            stopped(stop_rx.clone()),
        ));
    }
    if matches!(args.http, Listen::At(_)) || matches!(args.https, Listen::At(_)) {
        let api_servers = listening
            .iter()
            .map(|(kind, a)| {
                let (protocol, description) = match *kind {
                    "tcp" => (
                        "fanlog",
                        "fanlog's binary protocol over TCP (the client crate).",
                    ),
                    "tls" => ("fanlog-tls", "fanlog's binary protocol over TLS."),
                    _ => (
                        "fanlog-quic",
                        "fanlog's binary protocol over QUIC, one stream per session.",
                    ),
                };
                edge::ApiServer {
                    name: (*kind).into(),
                    host: a.to_string(),
                    protocol: protocol.into(),
                    description: description.into(),
                }
            })
            .collect();
        let config = edge::HttpConfig {
            cors_origins: args.cors_origins.clone(),
            api_servers,
            max_body: limits.max_request_body,
            max_connections: limits.max_connections,
            max_connections_per_ip: limits.max_connections_per_ip,
            ..edge::HttpConfig::default()
        };
        let state = edge::EdgeState::new(broker.clone(), config, CancellationToken::new())
            .map_err(anyhow::Error::msg)?
            .with_hooks(hooks.clone())
            .with_auth(auth.clone());
        if let Listen::At(addr) = args.http {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on http {addr}"))?;
            listening.push(("http", listener.local_addr()?));
            servers.spawn(edge::serve(
                listener,
                state.clone(),
                stopped(stop_rx.clone()),
            ));
        }
        if let Listen::At(addr) = args.https {
            let acceptor = tls::Acceptor::new(&identity()?, &[b"http/1.1"])?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on https {addr}"))?;
            listening.push(("https", listener.local_addr()?));
            servers.spawn(edge::serve_tls(
                listener,
                acceptor,
                state,
                stopped(stop_rx.clone()),
            ));
        }
    }

    let signals = ShutdownSignals::install()?;
    let mut out = tokio::io::stdout();
    let lines: String = listening
        .iter()
        .map(|(kind, a)| format!("listening {kind} {a}\n"))
        .collect();
    out.write_all(lines.as_bytes()).await?;
    out.flush().await?;

    signals.wait().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    while let Some(r) = servers.join_next().await {
        r.context("a listener task failed")??;
    }
    hooks.shutdown().await;
    broker.close()?;
    Ok(())
}

fn listen_addr(l: Listen) -> Option<SocketAddr> {
    match l {
        Listen::Off => None,
        Listen::At(a) => Some(a),
    }
}

/// SIGINT and SIGTERM, handled from the moment this is made: a supervisor
/// may signal as soon as it reads the `listening` lines.
struct ShutdownSignals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}
