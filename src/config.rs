//! The effective configuration of `fanlog serve`.
//!
//! Four layers, each over the one before: built-in defaults, the TOML file
//! (`--config`), `FANLOG_*` environment variables, command-line flags. Every
//! key of the file can come from any layer:
//!
//! | file | environment | flag |
//! |---|---|---|
//! | `tcp = "127.0.0.1:7400"` | `FANLOG_TCP` | `--tcp` |
//! | `[limits] max_topics = 10` | `FANLOG_LIMITS__MAX_TOPICS` | (none) |
//! | `[log] format = "json"` | `FANLOG_LOG__FORMAT` | `--log-format` |
//! | `[topics."orders.*"] fsync = "always"` | `FANLOG_TOPICS__orders__FSYNC` | (none) |
//!
//! A nested key's environment name joins its path with `__`. Unknown keys,
//! in the file or in the environment, are an error that names the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use fanlog::server::auth::AuthConfig;
use fanlog::server::transport::tcp;
use fanlog::server::{edge, hooks};
use fanlog::{BrokerConfig, Durability, TopicConfig, TopicOverrides, TopicPattern};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The prefix of every environment variable that sets a key.
pub const ENV_PREFIX: &str = "FANLOG_";

/// The top-level keys of [`Config`] (a test keeps this list whole).
const KEYS: &[&str] = &[
    "data",
    "tcp",
    "quic",
    "http",
    "tls",
    "https",
    "fsync",
    "tls_cert",
    "tls_key",
    "cors_origins",
    "public_url",
    "allow_hook_targets",
    "hook_cas",
    "allow_open_network",
    "log",
    "limits",
    "hooks",
    "auth",
    "topics",
    "cluster",
];

/// An address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    Off,
    At(SocketAddr),
}

impl Listen {
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            Listen::Off => None,
            Listen::At(a) => Some(a),
        }
    }
}

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "off" {
            return Ok(Listen::Off);
        }
        // `http://127.0.0.1:7480` as well as `127.0.0.1:7480`: the same
        // FANLOG_HTTP then serves the broker and the client commands.
        let s = s
            .strip_prefix("http://")
            .or_else(|| s.strip_prefix("https://"))
            .unwrap_or(s)
            .trim_end_matches('/');
        s.parse()
            .map(Listen::At)
            .map_err(|e| format!("{s:?} is not `off` or an IP:PORT address: {e}"))
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Off => f.write_str("off"),
            Listen::At(a) => a.fmt(f),
        }
    }
}

/// Serde through `Display` / `FromStr`, for values written as strings.
mod as_string {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<T: std::fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
        D: Deserializer<'de>,
    {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }

    /// An optional value, written the same way (the flags layer is only
    /// ever serialized).
    pub fn serialize_option<T: std::fmt::Display, S: Serializer>(
        v: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }
}

/// A duration written like `7d`, `12h` or `90s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Age(pub Duration);

impl std::str::FromStr for Age {
    type Err = humantime::DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s).map(Age)
    }
}

impl std::fmt::Display for Age {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

/// Everything `fanlog serve` runs with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Data directory.
    pub data: PathBuf,
    /// TCP listener for the binary protocol.
    pub tcp: SocketAddr,
    /// QUIC listener for the binary protocol, or `off`.
    #[serde(with = "as_string")]
    pub quic: Listen,
    /// HTTP listener, or `off`.
    #[serde(with = "as_string")]
    pub http: Listen,
    /// The binary protocol over TLS, or `off`.
    #[serde(with = "as_string")]
    pub tls: Listen,
    /// HTTPS listener, or `off`.
    #[serde(with = "as_string")]
    pub https: Listen,
    /// The durability of every topic that `[topics]` does not set.
    #[serde(with = "as_string")]
    pub fsync: Durability,
    /// Certificate (PEM) for QUIC, TLS and HTTPS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `tls_cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Origins whose pages may call the HTTP API (CORS).
    pub cors_origins: Vec<String>,
    /// The URL clients reach the HTTP edge at (`https://fanlog.example`),
    /// used in WebSub `Link` headers and as the hub's URL; default: the
    /// HTTP (or HTTPS) listener's own address. Never taken from `Host`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Networks that webhook targets may be in although the SSRF guard
    /// refuses them.
    pub allow_hook_targets: Vec<String>,
    /// CA certificates (PEM) to trust for https webhook targets.
    pub hook_cas: Vec<PathBuf>,
    /// Listen beyond loopback without tokens.
    pub allow_open_network: bool,
    /// Logging.
    pub log: LogConfig,
    /// Limits on what clients may ask for.
    pub limits: Limits,
    /// Webhook and WebSub delivery.
    /// The `[hooks]` section, as the hooks take it.
    pub hooks: hooks::HooksConfig,
    /// Tokens and their rights.
    pub auth: AuthConfig,
    /// Per-topic settings by topic pattern (an exact name, or a prefix
    /// ending in `*`); the most specific pattern wins.
    pub topics: BTreeMap<String, TopicOverrides>,
    /// Cluster mode: topics in a NATS JetStream cluster (off when
    /// `servers` is empty).
    pub cluster: ClusterConfig,
}

/// The `[cluster]` section: where the NATS JetStream cluster is and how
/// this edge uses it. Empty `servers`: no cluster, the local data
/// directory holds every topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://HOST:PORT`), any of the cluster's.
    pub servers: Vec<String>,
    /// Copies of every stream and bucket; 3 survives the loss of one
    /// server. 1 is refused unless `allow_single_replica`.
    pub replicas: usize,
    /// Run with one replica anyway (a test cluster, nothing survives).
    pub allow_single_replica: bool,
    /// This edge's name in leases and message ids [default: random].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Bytes of each topic's tail this edge keeps in memory.
    pub cache_bytes: usize,
    /// How long a publish is resent through a leader election before it
    /// is refused as unavailable (`15s`).
    #[serde(with = "as_string")]
    pub publish_timeout: Age,
    /// How long an edge's lease on a hook's deliveries lasts without
    /// renewal (`10s`): a dead edge's hooks move to another within this
    /// and a second. At least 3 s.
    #[serde(with = "as_string")]
    pub lease_ttl: Age,
    /// A NATS user token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A NATS credentials file (`.creds`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<PathBuf>,
    /// CA certificate (PEM) for `tls://` NATS servers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// The servers' HTTP monitoring URLs (`http://HOST:8222`), where an
    /// edge reads each server's `sync_always`: required when any topic
    /// is `fsync = "always"`.
    pub monitor_urls: Vec<String>,
    /// Keeps this deployment's streams and buckets apart from other
    /// deployments on the same NATS cluster (letters, digits, `-`; every
    /// edge of one deployment sets the same) [default: none].
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            replicas: 3,
            allow_single_replica: false,
            node_id: None,
            cache_bytes: 64 << 20,
            publish_timeout: Age(Duration::from_secs(15)),
            lease_ttl: Age(Duration::from_secs(10)),
            token: None,
            credentials: None,
            ca: None,
            monitor_urls: Vec::new(),
            namespace: String::new(),
        }
    }
}

impl ClusterConfig {
    /// Whether cluster mode is on.
    pub fn enabled(&self) -> bool {
        !self.servers.is_empty()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data: PathBuf::from("./fanlog-data"),
            tcp: SocketAddr::from(([127, 0, 0, 1], 7400)),
            quic: Listen::At(SocketAddr::from(([127, 0, 0, 1], 7401))),
            http: Listen::At(SocketAddr::from(([127, 0, 0, 1], 7480))),
            tls: Listen::Off,
            https: Listen::Off,
            fsync: Durability::default(),
            tls_cert: None,
            tls_key: None,
            cors_origins: Vec::new(),
            public_url: None,
            allow_hook_targets: Vec::new(),
            hook_cas: Vec::new(),
            allow_open_network: false,
            log: LogConfig::default(),
            limits: Limits::default(),
            hooks: hooks::HooksConfig::default(),
            auth: AuthConfig::default(),
            topics: BTreeMap::new(),
            cluster: ClusterConfig::default(),
        }
    }
}

/// The `[log]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `RUST_LOG`-style filter (`info`, `warn,fanlog_broker=debug`);
    /// empty: `RUST_LOG`, else `info`.
    pub filter: String,
    /// `text` or `json` (one JSON object per line).
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: String::new(),
            format: LogFormat::Text,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per event.
    Json,
}

/// The `[limits]` section: each refusal is a clear error (the binary
/// protocol's code, or HTTP 403/413/429/503).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest message (payload and metadata), bytes; the default of topics
    /// that `[topics]` does not set.
    pub max_message_bytes: usize,
    /// Largest HTTP request body, bytes.
    pub max_request_body: usize,
    /// Largest binary-protocol frame (so a publish batch), bytes.
    pub max_frame_bytes: usize,
    pub max_topics: usize,
    pub max_hooks: usize,
    /// Per listener (TCP, TLS, QUIC, HTTP).
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_subscriptions_per_connection: usize,
    /// Publishes of one connection (binary protocol or WebSocket) awaiting
    /// their acknowledgement before it reads no more: the memory a fast
    /// publisher may hold in the broker.
    pub max_inflight_publishes: usize,
    /// Whether subscribing creates a missing topic for a token that may only
    /// read it (a caller that may publish creates it either way).
    pub subscribe_creates_topics: bool,
    /// Most consumer groups per topic (hooks' cursors included).
    pub max_groups_per_topic: usize,
    /// Time a binary-protocol connection has to send its Hello (`10s`).
    #[serde(with = "as_string")]
    pub hello_timeout: Age,
    /// Time an HTTP client has to send a request's headers, and the longest
    /// a kept-alive connection may idle between requests (`10s`).
    #[serde(with = "as_string")]
    pub header_timeout: Age,
    /// Time an HTTP client has to send a request's whole body (`30s`).
    #[serde(with = "as_string")]
    pub body_timeout: Age,
    /// Most topics open at once (idle ones beyond are closed and reopened on
    /// use); default: from the open-file limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_open_topics: Option<usize>,
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
            max_inflight_publishes: tcp.limits.max_inflight_publishes,
            subscribe_creates_topics: broker.subscribe_creates_topics,
            max_open_topics: broker.max_open_topics,
            max_groups_per_topic: broker.max_groups_per_topic,
            hello_timeout: Age(tcp.limits.hello_timeout),
            header_timeout: Age(edge::HttpConfig::default().header_timeout),
            body_timeout: Age(edge::HttpConfig::default().body_timeout),
        }
    }
}

/// What the command line sets; `None` (or empty, or false) leaves the key
/// to the layers below.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<SocketAddr>,
    #[serde(
        serialize_with = "as_string::serialize_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub quic: Option<Listen>,
    #[serde(
        serialize_with = "as_string::serialize_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub http: Option<Listen>,
    #[serde(
        serialize_with = "as_string::serialize_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub tls: Option<Listen>,
    #[serde(
        serialize_with = "as_string::serialize_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub https: Option<Listen>,
    #[serde(
        serialize_with = "as_string::serialize_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub fsync: Option<Durability>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cors_origins: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_hook_targets: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hook_cas: Vec<PathBuf>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_open_network: bool,
    #[serde(skip_serializing_if = "LogOverrides::is_empty")]
    pub log: LogOverrides,
    #[serde(skip_serializing_if = "ClusterOverrides::is_empty")]
    pub cluster: ClusterOverrides,
}

/// The `[cluster]` keys the command line sets.
#[derive(Debug, Default, Serialize)]
pub struct ClusterOverrides {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,
}

impl ClusterOverrides {
    fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }
}

/// The `[log]` keys the command line sets.
#[derive(Debug, Default, Serialize)]
pub struct LogOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<LogFormat>,
}

impl LogOverrides {
    fn is_empty(&self) -> bool {
        self.filter.is_none() && self.format.is_none()
    }
}

impl Config {
    /// Defaults, then `file`, then the process's `FANLOG_*` variables, then
    /// `flags`.
    ///
    /// # Errors
    /// An unreadable file, or a key that is unknown or has a bad value
    /// (named, with the layer it came from), or settings that do not fit
    /// together.
    pub fn load(file: Option<&Path>, flags: &Overrides) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            figment = figment.merge(Toml::string(&text));
        }
        // Only the variables that name a key of this file: the client
        // commands read FANLOG_SERVER and FANLOG_TOKEN, and another tool's
        // FANLOG_* variable must not stop a broker from starting.
        let env = Env::prefixed(ENV_PREFIX).split("__").filter(|key| {
            let top = key.as_str().split('.').next().unwrap_or("");
            let known = KEYS.iter().any(|k| top.eq_ignore_ascii_case(k));
            if !known {
                eprintln!(
                    "fanlog: ignoring {ENV_PREFIX}{}: not a configuration key",
                    key.as_str().to_ascii_uppercase()
                );
            }
            known
        });
        let config: Config = figment
            .merge(env)
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(|e| {
                let file = file.map_or("no file".to_owned(), |p| p.display().to_string());
                anyhow::anyhow!("bad configuration ({file}): {}", describe(&e))
            })?;
        config.broker().map_err(anyhow::Error::msg)?;
        config.hooks.validate().map_err(anyhow::Error::msg)?;
        Ok(config)
    }

    /// The broker's settings: topic defaults from `fsync` and `[limits]`,
    /// and a pattern per `[topics]` table.
    ///
    /// # Errors
    /// A bad topic pattern, or settings out of range (named).
    pub fn broker(&self) -> Result<BrokerConfig, String> {
        let topics = self
            .topics
            .iter()
            .map(|(pattern, o)| {
                let p: TopicPattern = pattern
                    .parse()
                    .map_err(|e| format!("[topics.{pattern:?}]: {e}"))?;
                Ok((p, o.clone()))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let config = BrokerConfig {
            topic: TopicConfig {
                durability: self.fsync,
                max_message_bytes: self.limits.max_message_bytes,
                ..TopicConfig::default()
            },
            max_topics: self.limits.max_topics,
            subscribe_creates_topics: self.limits.subscribe_creates_topics,
            max_open_topics: self.limits.max_open_topics,
            max_groups_per_topic: self.limits.max_groups_per_topic,
            topics,
        };
        config.validate()?;
        Ok(config)
    }

    /// The configuration as TOML, with tokens shown only as digests.
    ///
    /// # Errors
    /// A value TOML cannot hold (none is expected).
    pub fn to_toml(&self) -> anyhow::Result<String> {
        let shown = Config {
            auth: self.auth.redacted(),
            ..self.clone()
        };
        toml::to_string(&shown).context("cannot render the configuration")
    }
}

/// A figment error in one line: what is wrong, with which key.
fn describe(e: &figment::Error) -> String {
    e.clone()
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = e
                .metadata
                .as_ref()
                .map(|m| m.name.to_string())
                .unwrap_or_default();
            if key.is_empty() {
                format!("{} ({source})", e.kind)
            } else {
                format!("key `{key}`: {} ({source})", e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_the_file_is_known_to_the_environment_layer() {
        let v = serde_json::to_value(Config::default()).unwrap();
        for key in v.as_object().unwrap().keys() {
            assert!(KEYS.contains(&key.as_str()), "{key} missing from KEYS");
        }
    }

    #[test]
    fn a_listen_address_may_be_a_url() {
        let want: SocketAddr = "127.0.0.1:7480".parse().unwrap();
        for s in [
            "127.0.0.1:7480",
            "http://127.0.0.1:7480",
            "http://127.0.0.1:7480/",
        ] {
            assert_eq!(s.parse::<Listen>().unwrap(), Listen::At(want), "{s}");
        }
    }
}
