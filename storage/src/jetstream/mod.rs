//! Cluster mode: topics, offsets, metadata and leases in a NATS JetStream
//! cluster, so that several fanlog processes (edges) serve one replicated
//! log and any one machine may be lost.
//!
//! ```text
//! stream  FL_<topic>           one per topic, subject fanlog.t.<topic>, R3,
//!                              file storage, deny_delete, direct get
//! KV      fanlog_offsets       <topic>.<group> -> committed seq (decimal)
//! KV      fanlog_meta          <namespace>.<key> -> document (settings, hooks, tickets)
//! KV      fanlog_leases        <name> -> {holder, token, until_ms}
//! ```
//! (`<topic>` and `<key>` encoded into the characters NATS allows, see
//! [`encode`].) A deployment with a [`ClusterOptions::namespace`] `NS`
//! uses `FL-NS_<topic>`, `fanlog.n.NS.<topic>` and `fanlog-NS_offsets`
//! (and so on) instead, so several deployments share one NATS cluster
//! without seeing each other's topics.
//!
//! fanlog's seq is the stream's sequence minus one, dense from 0 because
//! streams deny single-message deletes and retention only moves the first
//! sequence up. A publish is acknowledged by the stream's PubAck (a quorum
//! stored it); every message carries a `Nats-Msg-Id` (the producer id and
//! sequence, the idempotency key, or one made by this edge) so that resends
//! across a leader election and retries through another edge are
//! deduplicated within the stream's duplicate window.
//!
//! Each edge follows each topic it serves with **one** ordered consumer
//! into a tail kept in memory ([`JsLog`]); every local subscriber
//! reads that tail. Reads below it are fetched from the stream in blocks,
//! one fetch per block shared by every reader that needs it.
//!
//! The async client lives on a small runtime of its own (`Engine`), so
//! that the synchronous storage traits can wait for it from any thread
//! (the broker calls them from its blocking pool and flusher) without
//! stalling the caller's runtime on its own I/O; a wait on a worker of
//! the caller's runtime is announced with `block_in_place`.

mod kv;
mod log;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::stream::{Config as StreamConfig, DiscardPolicy, StorageType};
use fanlog_protocol::TopicName;
use futures_util::StreamExt;

pub use kv::{JsLeases, JsMeta, JsOffsets};
pub use log::JsLog;

use crate::{
    Durability, Leases, MetaStore, Namespace, OpenedTopic, Result, Storage, StorageError,
    TopicConfig, TopicOverrides,
};

/// The oldest nats-server that cluster mode accepts: 2.11 brought the
/// settings and batch semantics it relies on.
pub const MIN_SERVER_VERSION: (u64, u64) = (2, 11);

/// How a cluster is reached and what it keeps.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterOptions {
    /// NATS server URLs (`nats://HOST:PORT`), any of the cluster's.
    pub servers: Vec<String>,
    /// Copies of every stream and bucket (3 survives the loss of one
    /// server; 1 keeps no copy and is refused unless forced).
    pub replicas: usize,
    /// This edge's name, in leases and generated message ids.
    pub node_id: String,
    /// Bytes of each topic's tail kept in memory on this edge.
    pub cache_bytes: usize,
    /// How long a publish keeps being resent through a leader election
    /// before it is refused as unavailable.
    pub publish_timeout: Duration,
    /// A NATS user token, if the servers want one.
    pub token: Option<String>,
    /// A NATS credentials file, if the servers want one.
    pub credentials: Option<std::path::PathBuf>,
    /// Extra root certificates for `tls://` servers.
    pub root_certificates: Option<std::path::PathBuf>,
    /// Keeps this deployment's streams and buckets apart from others' on
    /// the same NATS cluster (ASCII letters, digits and `-`; empty: the
    /// unprefixed names). Every edge of one deployment uses the same.
    pub namespace: String,
}

impl ClusterOptions {
    /// Options for `servers` with the defaults: 3 replicas, a random node
    /// id, a 64 MiB tail per topic, publishes resent for up to 15 s.
    #[must_use]
    pub fn new(servers: Vec<String>) -> Self {
        Self {
            servers,
            replicas: 3,
            node_id: format!("edge-{:08x}", rand::random::<u32>()),
            cache_bytes: 64 << 20,
            publish_timeout: Duration::from_secs(15),
            token: None,
            credentials: None,
            root_certificates: None,
            namespace: String::new(),
        }
    }
}

/// The runtime that drives the NATS client, and the JetStream context.
/// Cloned freely; the runtime stops when the last clone goes.
#[derive(Clone)]
pub(crate) struct Engine {
    rt: tokio::runtime::Handle,
    js: jetstream::Context,
    replicas: usize,
    names: Arc<Names>,
    _runtime: Arc<OwnRuntime>,
}

/// The names of a deployment's streams, subjects and buckets.
#[derive(Debug)]
struct Names {
    stream: String,
    subject: String,
    bucket: String,
}

impl Names {
    fn new(namespace: &str) -> Result<Self> {
        if namespace.is_empty() {
            return Ok(Self {
                stream: "FL_".into(),
                subject: "fanlog.t.".into(),
                bucket: "fanlog_".into(),
            });
        }
        if namespace.len() > 32
            || !namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(StorageError::Config(format!(
                "cluster namespace {namespace:?} must be 1 to 32 ASCII letters, digits or '-'"
            )));
        }
        // `-` after FL and a fourth subject token keep these apart from
        // the unprefixed names; `_` after the namespace (which never holds
        // one) keeps one namespace's names apart from a longer one's.
        Ok(Self {
            stream: format!("FL-{namespace}_"),
            subject: format!("fanlog.n.{namespace}."),
            bucket: format!("fanlog-{namespace}_"),
        })
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("replicas", &self.replicas)
            .finish_non_exhaustive()
    }
}

/// A runtime that may be dropped from any thread, async or not.
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Engine {
    /// Runs `f` on the engine's runtime and waits for it from this thread
    /// (never call it from the engine's own runtime).
    pub(crate) fn block<T: Send + 'static>(
        &self,
        f: impl Future<Output = T> + Send + 'static,
    ) -> Result<T> {
        block_on(&self.rt, f)
    }

    pub(crate) fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.rt.spawn(f)
    }

    pub(crate) fn js(&self) -> &jetstream::Context {
        &self.js
    }

    /// The stream that holds `topic`.
    pub(crate) fn stream_name(&self, topic: &TopicName) -> String {
        format!("{}{}", self.names.stream, encode(topic.as_str()))
    }

    /// The subject `topic` is published on.
    pub(crate) fn subject(&self, topic: &TopicName) -> String {
        format!("{}{}", self.names.subject, encode(topic.as_str()))
    }

    /// The topic a stream holds, if it is one of this deployment's.
    fn topic_of(&self, stream: &str) -> Option<TopicName> {
        let enc = stream.strip_prefix(self.names.stream.as_str())?;
        TopicName::new(&decode(enc)?).ok()
    }

    /// The full name of the bucket `base` (`meta`, `offsets`, `leases`).
    pub(crate) fn bucket_name(&self, base: &str) -> String {
        format!("{}{base}", self.names.bucket)
    }
}

/// Runs `f` on `rt` and waits for it from this thread (not one of `rt`'s).
/// On a worker of another multi-thread runtime (a storage call from an
/// async handler: a group's offset, a time seek, a topic looked up) the
/// wait is announced with `block_in_place`, so that the worker's other
/// tasks move to another thread instead of stalling behind a round trip.
fn block_on<T: Send + 'static>(
    rt: &tokio::runtime::Handle,
    f: impl Future<Output = T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    rt.spawn(async move {
        let _ = tx.send(f.await);
    });
    let wait = move || rx.recv();
    let got = match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    };
    got.map_err(|_| StorageError::Unavailable("the cluster client stopped".into()))
}

/// Maps a NATS error to storage's: everything the engine says is either
/// "not now" or a refusal in its own words.
pub(crate) fn unavailable(what: &str) -> impl FnOnce(String) -> StorageError + '_ {
    move |e| StorageError::Unavailable(format!("{what}: {e}"))
}

/// Encodes `s` into the characters that stream names, subjects and KV keys
/// all allow: ASCII letters, digits and `-` stay, every other byte becomes
/// `_` and two hex digits. Injective, so names never collide.
#[must_use]
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// The inverse of [`encode`]; `None` for text it never makes.
#[must_use]
pub fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'_' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The stream's duplicate window for `config`'s `dedupe_window`: at least
/// JetStream's shortest (100 ms), at most the stream's `max_age` (which
/// JetStream requires).
fn duplicate_window(config: &TopicConfig) -> Duration {
    let w = config.dedupe_window.max(Duration::from_millis(100));
    match config.retention_age {
        Some(age) if !age.is_zero() => w.min(age),
        _ => w,
    }
}

/// Topics, offsets, metadata and leases in a JetStream cluster.
#[derive(Debug)]
pub struct JsStorage {
    engine: Engine,
    opts: ClusterOptions,
    meta: JsMeta,
    leases: JsLeases,
    offsets: kv::Bucket,
    server_version: String,
}

impl JsStorage {
    /// Connects to the cluster, checks the servers (version at least
    /// [`MIN_SERVER_VERSION`], JetStream enabled, `max_payload` above
    /// `max_message_bytes` and headers) and makes the buckets.
    ///
    /// # Errors
    /// [`StorageError::Config`] with one line saying what to change, or
    /// [`StorageError::Unavailable`] when no server answers.
    pub fn connect(opts: ClusterOptions, max_message_bytes: usize) -> Result<Self> {
        if opts.servers.is_empty() {
            return Err(StorageError::Config(
                "cluster mode needs at least one server address".into(),
            ));
        }
        if !(1..=5).contains(&opts.replicas) {
            return Err(StorageError::Config(format!(
                "cluster replicas must be 1 to 5 (JetStream's limit), not {}",
                opts.replicas
            )));
        }
        let names = Arc::new(Names::new(&opts.namespace)?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fanlog-cluster")
            .enable_all()
            .build()
            .map_err(|e| {
                StorageError::Unavailable(format!("cannot start the cluster client: {e}"))
            })?;
        let rt = runtime.handle().clone();
        let own = Arc::new(OwnRuntime(Some(runtime)));
        let o = opts.clone();
        let client = block_on(&rt, async move { connect_client(&o).await })??;
        let info = client.server_info();
        let version = info.version.clone();
        check_version(&version)?;
        let payload_needed = max_message_bytes + 64 * 1024;
        if info.max_payload < payload_needed {
            return Err(StorageError::Config(format!(
                "the NATS servers' max_payload is {} bytes, below fanlog's message limit plus headers ({payload_needed} bytes): raise max_payload or lower [limits] max_message_bytes",
                info.max_payload
            )));
        }
        // The client's default ack timeout (5 s) stays: a shorter one
        // (1 s, tried) resent thousands of pipelined publishes at once
        // under load and made the failover stall longer (15 s, not 9).
        let js = jetstream::new(client.clone());
        let engine = Engine {
            rt,
            js,
            replicas: opts.replicas,
            names,
            _runtime: own,
        };
        let e = engine.clone();
        engine.block(async move {
            // A cluster that is starting answers late until its meta
            // leader is elected: wait for it (bounded), then refuse.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                match e.js.query_account().await {
                    Ok(_) => return Ok(()),
                    Err(err) if tokio::time::Instant::now() < deadline => {
                        tracing::debug!("JetStream not ready yet: {err}");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    Err(err) => return Err(StorageError::Config(format!(
                        "the NATS servers do not offer JetStream to this account ({err}): start them with -js (or jetstream {{}} in their config)"
                    ))),
                }
            }
        })??;
        let bucket = |name: String| {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                match kv::Bucket::open(&engine, name.clone()) {
                    Err(e) if std::time::Instant::now() < deadline => {
                        tracing::debug!("bucket {name} not ready yet: {e}");
                        std::thread::sleep(Duration::from_millis(250));
                    }
                    other => return other,
                }
            }
        };
        let meta = JsMeta::new(bucket(engine.bucket_name("meta"))?);
        let leases = JsLeases::new(bucket(engine.bucket_name("leases"))?);
        let offsets = bucket(engine.bucket_name("offsets"))?;
        tracing::info!(servers = ?opts.servers, version, replicas = opts.replicas, node = %opts.node_id, "cluster mode: connected to NATS JetStream");
        Ok(Self {
            engine,
            opts,
            meta,
            leases,
            offsets,
            server_version: version,
        })
    }

    /// The version the connected server reported.
    #[must_use]
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// This edge's node id.
    #[must_use]
    pub fn node_id(&self) -> &str {
        &self.opts.node_id
    }

    fn stream_config(&self, name: &TopicName, config: &TopicConfig) -> StreamConfig {
        StreamConfig {
            name: self.engine.stream_name(name),
            subjects: vec![self.engine.subject(name)],
            description: Some(format!("fanlog topic {}", name.as_str())),
            storage: StorageType::File,
            num_replicas: self.opts.replicas,
            discard: DiscardPolicy::Old,
            deny_delete: true,
            allow_direct: true,
            max_bytes: config
                .retention_bytes
                .and_then(|b| i64::try_from(b).ok())
                .unwrap_or(-1),
            max_age: config.retention_age.unwrap_or_default(),
            max_message_size: i32::try_from(config.max_message_bytes + 64 * 1024)
                .unwrap_or(i32::MAX),
            duplicate_window: duplicate_window(config),
            ..Default::default()
        }
    }

    fn own_settings(&self, name: &TopicName) -> Result<Option<TopicOverrides>> {
        match self.meta.get(Namespace::Settings, name.as_str())? {
            None => Ok(None),
            Some(doc) => serde_json::from_slice(&doc.value).map(Some).map_err(|e| {
                StorageError::TopicFailed {
                    topic: name.to_string(),
                    reason: format!("invalid settings in the cluster's fanlog_meta bucket: {e}"),
                }
            }),
        }
    }

    fn open_stream(
        &self,
        name: &TopicName,
        config: TopicConfig,
        make: bool,
    ) -> Result<Option<OpenedTopic>> {
        let js = self.engine.js.clone();
        let stream_cfg = self.stream_config(name, &config);
        let sname = stream_cfg.name.clone();
        let stream = self.engine.block(async move {
            if make {
                let mut stream = js
                    .get_or_create_stream(stream_cfg)
                    .await
                    .map_err(|e| e.to_string())?;
                // A stream just made elects its leader a moment later; a
                // publish sent before goes unanswered until the client's
                // ack timeout (5 s) and is resent. Wait for the leader
                // (bounded: the publish path resends anyway).
                let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
                while tokio::time::Instant::now() < deadline {
                    match stream.info().await {
                        Ok(info) if info.cluster.as_ref().is_none_or(|c| c.leader.is_some()) => {
                            break;
                        }
                        _ => tokio::time::sleep(std::time::Duration::from_millis(25)).await,
                    }
                }
                Ok(Some(stream))
            } else {
                match js.get_stream(&sname).await {
                    Ok(s) => Ok(Some(s)),
                    Err(e) if e.to_string().contains("not found") => Ok(None),
                    Err(e) => Err(e.to_string()),
                }
            }
        })?;
        let Some(stream) = stream.map_err(unavailable("cannot open the topic's stream"))? else {
            return Ok(None);
        };
        let log = JsLog::open(
            self.engine.clone(),
            name.clone(),
            config,
            stream,
            &self.opts,
        )?;
        let offsets = JsOffsets::open(self.offsets.clone(), name)?;
        Ok(Some(OpenedTopic {
            log: Box::new(log),
            offsets: Box::new(offsets),
        }))
    }
}

fn check_version(version: &str) -> Result<()> {
    let mut parts = version
        .trim_start_matches('v')
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found < MIN_SERVER_VERSION {
        return Err(StorageError::Config(format!(
            "the NATS server is version {version}; cluster mode needs {}.{} or newer",
            MIN_SERVER_VERSION.0, MIN_SERVER_VERSION.1
        )));
    }
    Ok(())
}

async fn connect_client(o: &ClusterOptions) -> Result<async_nats::Client> {
    let mut c = async_nats::ConnectOptions::new()
        .name(format!("fanlog {}", o.node_id))
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(5)));
    if let Some(t) = &o.token {
        c = c.token(t.clone());
    }
    if let Some(path) = &o.credentials {
        c = c.credentials_file(path).await.map_err(|e| {
            StorageError::Config(format!("NATS credentials {}: {e}", path.display()))
        })?;
    }
    if let Some(path) = &o.root_certificates {
        c = c.add_root_certificates(path.clone()).require_tls(true);
    }
    let addrs: Vec<async_nats::ServerAddr> = o
        .servers
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|e| StorageError::Config(format!("bad NATS server address {s:?}: {e}")))
        })
        .collect::<Result<_>>()?;
    // retry_on_initial_connect returns at once: wait (bounded) for the
    // first connection, so that a wrong address fails at start.
    let client = c
        .connect(addrs)
        .await
        .map_err(|e| StorageError::Unavailable(format!("cannot connect to NATS: {e}")))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while client.connection_state() != async_nats::connection::State::Connected {
        if tokio::time::Instant::now() > deadline {
            return Err(StorageError::Unavailable(format!(
                "no NATS server answered at {} within 10 s",
                o.servers.join(",")
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(client)
}

impl Storage for JsStorage {
    fn topics(&self) -> Result<Vec<TopicName>> {
        let js = self.engine.js.clone();
        let names = self.engine.block(async move {
            let mut list = js.stream_names();
            let mut out = Vec::new();
            while let Some(n) = list.next().await {
                out.push(n.map_err(|e| e.to_string())?);
            }
            Ok::<_, String>(out)
        })?;
        let mut topics: Vec<TopicName> = names
            .map_err(unavailable("cannot list the cluster's streams"))?
            .iter()
            .filter_map(|n| self.engine.topic_of(n))
            .collect();
        topics.sort();
        Ok(topics)
    }

    fn open(
        &self,
        name: &TopicName,
        mut config: TopicConfig,
        create: bool,
        _now_us: u64,
    ) -> Result<OpenedTopic> {
        if let Some(own) = self.own_settings(name)? {
            own.apply(&mut config);
        }
        if let Some(t) = self.open_stream(name, config.clone(), false)? {
            return Ok(t);
        }
        if !create {
            return Err(StorageError::TopicFailed {
                topic: name.to_string(),
                reason: "its stream is gone from the cluster".into(),
            });
        }
        self.open_stream(name, config, true)?
            .ok_or_else(|| StorageError::Unavailable("the stream vanished as it was made".into()))
    }

    fn create(
        &self,
        name: &TopicName,
        mut config: TopicConfig,
        settings: &TopicOverrides,
        _now_us: u64,
    ) -> Result<OpenedTopic> {
        settings.apply(&mut config);
        if config.durability == Durability::Never {
            tracing::debug!(topic = %name, "durability never: the cluster still replicates every publish");
        }
        settings.store(&self.meta, name)?;
        self.open_stream(name, config, true)?
            .ok_or_else(|| StorageError::Unavailable("the stream vanished as it was made".into()))
    }

    fn remove(&self, name: &TopicName) -> Result<()> {
        let js = self.engine.js.clone();
        let sname = self.engine.stream_name(name);
        self.engine
            .block(async move {
                js.delete_stream(&sname)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            })?
            .map_err(unavailable("cannot delete the topic's stream"))?;
        self.offsets
            .delete_prefix(&format!("{}.", encode(name.as_str())))?;
        self.meta.delete(Namespace::Settings, name.as_str())
    }

    fn meta(&self) -> &dyn MetaStore {
        &self.meta
    }

    fn leases(&self) -> &dyn Leases {
        &self.leases
    }

    fn shared(&self) -> bool {
        true
    }

    fn exists(&self, name: &TopicName) -> Result<bool> {
        let js = self.engine.js.clone();
        let sname = self.engine.stream_name(name);
        let found = self.engine.block(async move {
            match js.get_stream(&sname).await {
                Ok(_) => Ok(true),
                Err(e) if e.to_string().contains("not found") => Ok(false),
                Err(e) => Err(e.to_string()),
            }
        })?;
        found.map_err(unavailable("cannot look the topic up"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A storage call that waits for the cluster on the only worker of an
    /// async caller's runtime does not stall that runtime's other tasks.
    #[test]
    fn a_wait_on_a_runtime_worker_lets_its_other_tasks_run() {
        let engine = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let caller = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let ticks = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let t = ticks.clone();
        caller.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                t.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
        let h = engine.handle().clone();
        let ticks_during = caller.block_on(async move {
            // On the worker, like a handler's call into storage.
            tokio::spawn(async move {
                let before = ticks.load(std::sync::atomic::Ordering::Relaxed);
                // The timer made on the engine's runtime, not this one's.
                let pause = async { tokio::time::sleep(Duration::from_millis(500)).await };
                block_on(&h, pause).unwrap();
                ticks.load(std::sync::atomic::Ordering::Relaxed) - before
            })
            .await
            .unwrap()
        });
        assert!(ticks_during >= 5, "{ticks_during} ticks while blocked");
    }

    #[test]
    fn encoding_is_reversible_and_safe() {
        for s in ["orders", "a.b", "a_b", "x/y z", "ünï", "-_-", "a__2e"] {
            let e = encode(s);
            assert!(
                e.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            assert_eq!(decode(&e).as_deref(), Some(s));
        }
        assert_ne!(encode("a.b"), encode("a_2eb"));
        assert_eq!(decode("bad_zz"), None);
    }

    #[test]
    fn old_servers_are_refused() {
        assert!(check_version("2.9.10").is_err());
        assert!(check_version("2.10.26").is_err());
        assert!(check_version("2.11.0").is_ok());
        assert!(check_version("v2.15.1").is_ok());
        assert!(check_version("3.0.0-beta").is_ok());
    }
}
