//! `fanlog serve`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use fanlog::server::transport::SessionLimits;
use fanlog::server::{Server, ServerBuilder, edge, hooks};
use fanlog::{Broker, Durability};
use tokio::io::AsyncWriteExt;

use crate::config::{ClusterOverrides, Config, Listen, LogFormat, LogOverrides, Overrides};

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
    /// Cluster mode: keep topics, offsets, hooks and leases in the NATS
    /// JetStream cluster at these servers (comma-separated
    /// `nats://HOST:PORT`), serving as one of its edges. `[cluster]` in the
    /// config file holds the rest (replicas, credentials, cache size).
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    cluster: Vec<String>,
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
            cluster: ClusterOverrides {
                servers: self.cluster.clone(),
            },
        }
    }
}

/// Under `fsync = "always"` (the default or any `[topics]` entry) an
/// acknowledgement in a cluster must mean "on disk on a quorum": JetStream
/// acks after replication but syncs every two minutes unless a server runs
/// `jetstream { sync_interval: always }`. Each server's monitoring page
/// says whether it does; without the pages, or with a server that does
/// not, the edge refuses to start.
async fn check_cluster_sync(cfg: &Config, broker: &fanlog::BrokerConfig) -> anyhow::Result<()> {
    let always = broker.topic.durability == Durability::Always
        || cfg
            .topics
            .values()
            .any(|o| o.durability == Some(Durability::Always));
    if !always {
        return Ok(());
    }
    let urls = &cfg.cluster.monitor_urls;
    if urls.is_empty() {
        anyhow::bail!(
            "fsync = always in cluster mode needs every NATS server to sync before it acknowledges; \
             list the servers' monitoring URLs in [cluster] monitor_urls so that this edge can check it"
        );
    }
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    for url in urls {
        let varz = format!("{}/varz", url.trim_end_matches('/'));
        let v: serde_json::Value = http
            .get(&varz)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("cannot read {varz}"))?
            .json()
            .await
            .with_context(|| format!("{varz} is not a NATS monitoring page"))?;
        let config = &v["jetstream"]["config"];
        if config["sync_always"].as_bool() != Some(true) {
            anyhow::bail!(
                "fsync = always in cluster mode needs every NATS server to sync before it acknowledges, \
                 but {} ({url}) does not (sync_interval {}): run it with jetstream {{ sync_interval: always }}",
                v["server_name"].as_str().unwrap_or("a server"),
                config["sync_interval"]
                    .as_u64()
                    .map_or("unknown".to_owned(), |ns| format!(
                        "{} s",
                        ns / 1_000_000_000
                    ))
            );
        }
    }
    Ok(())
}

/// Opens the broker as an edge of the `[cluster]`: its topics, offsets,
/// hooks and leases in NATS JetStream; the data directory keeps only what
/// is this process's own (a generated certificate).
fn open_cluster(cfg: &Config, broker_config: fanlog::BrokerConfig) -> anyhow::Result<Broker> {
    use fanlog::storage::jetstream::{ClusterOptions, JsStorage};
    let c = &cfg.cluster;
    if c.lease_ttl.0 < std::time::Duration::from_secs(3) {
        anyhow::bail!(
            "[cluster] lease_ttl must be at least 3s (an owner renews every third of it), not {}",
            c.lease_ttl
        );
    }
    if c.replicas == 1 && !c.allow_single_replica {
        anyhow::bail!(
            "[cluster] replicas = 1 keeps one copy of every topic: losing that server loses them; \
             set allow_single_replica = true to run so anyway"
        );
    }
    let mut opts = ClusterOptions::new(c.servers.clone());
    opts.replicas = c.replicas;
    if let Some(id) = &c.node_id {
        opts.node_id.clone_from(id);
    }
    opts.cache_bytes = c.cache_bytes;
    opts.publish_timeout = c.publish_timeout.0;
    opts.token.clone_from(&c.token);
    opts.credentials.clone_from(&c.credentials);
    opts.root_certificates.clone_from(&c.ca);
    opts.namespace.clone_from(&c.namespace);
    std::fs::create_dir_all(&cfg.data)
        .with_context(|| format!("cannot make {}", cfg.data.display()))?;
    let storage = JsStorage::connect(opts, broker_config.topic.max_message_bytes)
        .context("cannot join the cluster")?;
    Broker::with_storage(&cfg.data, Box::new(storage), broker_config)
        .context("cannot open the cluster's topics")
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
    let broker = if cfg.cluster.enabled() {
        check_cluster_sync(cfg, &broker_config).await?;
        open_cluster(cfg, broker_config)?
    } else {
        Broker::open(&cfg.data, broker_config)
            .with_context(|| format!("cannot open {}", cfg.data.display()))?
    };
    let trust_pem = args
        .hook_cas
        .iter()
        .map(|p| std::fs::read(p).with_context(|| format!("cannot read {}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut builder = Server::builder(broker)
        .tcp(cfg.tcp)
        .auth(auth)
        .session_limits(SessionLimits {
            max_frame: limits.max_frame_bytes,
            max_subscriptions: limits.max_subscriptions_per_connection,
            max_inflight_publishes: limits.max_inflight_publishes,
            hello_timeout: limits.hello_timeout.0,
            ..Default::default()
        })
        .connection_limits(limits.max_connections, limits.max_connections_per_ip)
        .hooks(hooks::HooksConfig {
            allow_targets: cfg.allow_hook_targets.clone(),
            trust_pem,
            max_hooks: limits.max_hooks,
            delivery_lease: cfg.cluster.lease_ttl.0,
            ..cfg.hooks.clone()
        })
        .http_config(edge::HttpConfig {
            cors_origins: cfg.cors_origins.clone(),
            public_url: cfg.public_url.clone(),
            max_body: limits.max_request_body,
            header_timeout: limits.header_timeout.0,
            body_timeout: limits.body_timeout.0,
            ws_max_inflight_publishes: limits.max_inflight_publishes,
            ..edge::HttpConfig::default()
        });
    if let (Some(cert), Some(key)) = (&cfg.tls_cert, &cfg.tls_key) {
        builder = builder.certificate(cert, key);
    }
    for (listen, set) in [
        (
            cfg.tls,
            ServerBuilder::tls as fn(ServerBuilder, SocketAddr) -> ServerBuilder,
        ),
        (cfg.quic, ServerBuilder::quic),
        (cfg.http, ServerBuilder::http),
        (cfg.https, ServerBuilder::https),
    ] {
        if let Listen::At(addr) = listen {
            builder = set(builder, addr);
        }
    }
    let server = builder.start().await?;
    if let Some(cert) = server.certificate() {
        tracing::info!(cert = %cert.display(), "TLS certificate (pass it to clients with --ca)");
    }
    let listening = server.listeners();

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

    server
        .wait(async {
            signals.wait().await;
            tracing::info!("shutting down");
        })
        .await?;
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
