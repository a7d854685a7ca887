//! `fanlog serve`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use fanlog::server::transport::{quic, tcp, tls};
use fanlog::server::{edge, hooks};
use fanlog::{Broker, Durability};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Listen, LogFormat, LogOverrides, Overrides};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Config file (TOML). Every key can also come from a `FANLOG_*`
    /// environment variable (`FANLOG_LIMITS__MAX_TOPICS`) and, for the keys
    /// below, a flag; flags win over the environment, which wins over the
    /// file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the effective configuration (TOML, tokens as digests) and exit.
    #[arg(long)]
    print_config: bool,
    /// Without tokens the broker is open, so it listens on loopback only;
    /// this lets it listen on other addresses anyway.
    #[arg(long)]
    allow_open_network: bool,
    /// Data directory [default: ./fanlog-data].
    #[arg(long)]
    data: Option<PathBuf>,
    /// TCP listener for the binary protocol [default: 127.0.0.1:7400].
    #[arg(long)]
    tcp: Option<SocketAddr>,
    /// QUIC listener for the binary protocol, or `off` [default: 127.0.0.1:7401].
    #[arg(long)]
    quic: Option<Listen>,
    /// The binary protocol over TLS (same certificate as QUIC), or `off`
    /// [default: off].
    #[arg(long)]
    tls: Option<Listen>,
    /// HTTPS listener (the same routes as --http, certificate as QUIC), or
    /// `off` [default: off].
    #[arg(long)]
    https: Option<Listen>,
    /// HTTP listener (REST, SSE, WebSocket, long polling, console), or `off`
    /// [default: 127.0.0.1:7480].
    #[arg(long)]
    http: Option<Listen>,
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
    /// When a publish is acknowledged, for topics that `[topics]` does not
    /// set: always | interval:MS | never [default: interval:100].
    #[arg(long)]
    fsync: Option<Durability>,
    /// Certificate (PEM) for QUIC; without it a self-signed one is generated
    /// into DATA/tls/cert.pem.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Log filter, `RUST_LOG` syntax [default: $RUST_LOG, else info].
    #[arg(long = "log", value_name = "FILTER")]
    log_filter: Option<String>,
    /// Log lines as text or as JSON objects [default: text].
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
}

impl ServeArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            data: self.data.clone(),
            tcp: self.tcp,
            quic: self.quic,
            http: self.http,
            tls: self.tls,
            https: self.https,
            fsync: self.fsync,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            cors_origins: self.cors_origins.clone(),
            allow_hook_targets: self.allow_hook_targets.clone(),
            hook_cas: self.hook_cas.clone(),
            allow_open_network: self.allow_open_network,
            log: LogOverrides {
                filter: self.log_filter.clone(),
                format: self.log_format,
            },
        }
    }
}

/// Starts logging to stderr as `[log]` says.
fn init_logging(log: &crate::config::LogConfig) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = if log.filter.is_empty() {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
    } else {
        EnvFilter::try_new(&log.filter)
            .with_context(|| format!("bad log filter {:?}", log.filter))?
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    }
    .map_err(|e| anyhow::anyhow!("cannot start logging: {e}"))
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref(), &args.overrides())?;
    if args.print_config {
        print!("{}", config.to_toml()?);
        return Ok(());
    }
    init_logging(&config.log)?;
    let cfg = &config;
    let auth = fanlog::server::auth::Auth::new(&cfg.auth)
        .map_err(anyhow::Error::msg)
        .context("bad [auth] section")?;
    if auth.is_open() {
        let exposed: Vec<String> = [
            Some(cfg.tcp),
            cfg.quic.addr(),
            cfg.http.addr(),
            cfg.tls.addr(),
            cfg.https.addr(),
        ]
        .into_iter()
        .flatten()
        .filter(|a| !a.ip().is_loopback())
        .map(|a| a.to_string())
        .collect();
        if !exposed.is_empty() && !cfg.allow_open_network {
            anyhow::bail!(
                "no tokens are configured (--config with [[auth.tokens]]), so the broker is open to anyone \
                 who reaches it; it listens on loopback only unless --allow-open-network is given \
                 (asked for {})",
                exposed.join(", ")
            );
        }
        tracing::warn!("no tokens configured: every client may publish, read and administer");
    }
    let limits = &cfg.limits;
    let broker_config = cfg.broker().map_err(anyhow::Error::msg)?;
    let session_limits = fanlog::server::transport::SessionLimits {
        max_frame: limits.max_frame_bytes,
        max_subscriptions: limits.max_subscriptions_per_connection,
        hello_timeout: limits.hello_timeout.0,
        ..Default::default()
    };
    let broker = Broker::open(&cfg.data, broker_config)
        .with_context(|| format!("cannot open {}", cfg.data.display()))?;
    let trust_pem = args
        .hook_cas
        .iter()
        .map(|p| std::fs::read(p).with_context(|| format!("cannot read {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let hooks = hooks::Hooks::open(
        broker.clone(),
        hooks::HooksConfig {
            allow_targets: cfg.allow_hook_targets.clone(),
            trust_pem,
            max_hooks: limits.max_hooks,
            ..cfg.hooks.hooks_config().map_err(anyhow::Error::msg)?
        },
    )
    .context("cannot start the webhooks")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let identity = || {
        quic::identity(&cfg.data, cfg.tls_cert.as_deref(), cfg.tls_key.as_deref())
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
    let listener = tokio::net::TcpListener::bind(cfg.tcp)
        .await
        .with_context(|| format!("cannot listen on tcp {}", cfg.tcp))?;
    listening.push(("tcp", listener.local_addr()?));
    servers.spawn(tcp::serve(
        listener,
        broker.clone(),
        tcp_config.clone(),
        stopped(stop_rx.clone()),
    ));
    if let Listen::At(addr) = cfg.tls {
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
    if let Listen::At(addr) = cfg.quic {
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
    if matches!(cfg.http, Listen::At(_)) || matches!(cfg.https, Listen::At(_)) {
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
        // Bound first: the public URL defaults to the listener's address.
        let http_listener = match cfg.http {
            Listen::At(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on http {addr}"))?,
            ),
            Listen::Off => None,
        };
        let https_listener = match cfg.https {
            Listen::At(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on https {addr}"))?,
            ),
            Listen::Off => None,
        };
        let public_url = match (&cfg.public_url, &https_listener, &http_listener) {
            (Some(u), _, _) => Some(u.trim_end_matches('/').to_owned()),
            (None, Some(l), _) => Some(format!("https://{}", l.local_addr()?)),
            (None, None, Some(l)) => Some(format!("http://{}", l.local_addr()?)),
            (None, None, None) => None,
        };
        let config = edge::HttpConfig {
            cors_origins: cfg.cors_origins.clone(),
            public_url,
            api_servers,
            max_body: limits.max_request_body,
            max_connections: limits.max_connections,
            max_connections_per_ip: limits.max_connections_per_ip,
            header_timeout: limits.header_timeout.0,
            body_timeout: limits.body_timeout.0,
            ..edge::HttpConfig::default()
        };
        let state = edge::EdgeState::new(broker.clone(), config, CancellationToken::new())
            .map_err(anyhow::Error::msg)?
            .with_hooks(hooks.clone())
            .with_auth(auth.clone());
        if let Some(listener) = http_listener {
            listening.push(("http", listener.local_addr()?));
            servers.spawn(edge::serve(
                listener,
                state.clone(),
                stopped(stop_rx.clone()),
            ));
        }
        if let Some(listener) = https_listener {
            let acceptor = tls::Acceptor::new(&identity()?, &[b"http/1.1"])?;
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
    // Stdout keeps exactly the `listening` lines (scripts read them); the
    // console's address is for the person at the terminal.
    if let Some((kind, a)) = listening
        .iter()
        .find(|(kind, _)| *kind == "https")
        .or_else(|| listening.iter().find(|(kind, _)| *kind == "http"))
    {
        let scheme = if *kind == "https" { "https" } else { "http" };
        eprintln!("console: {scheme}://{a}/");
    }

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
