//! Push delivery to servers: webhooks (Standard Webhooks), managed over
//! REST (REST Hooks).
//!
//! A hook is a durable cursor over one topic's log: a consumer offset under
//! the group `_hooks.{id}`. Its worker delivers one message at a time, in
//! seq order, and commits the offset past a message only when the receiver
//! answered 2xx. Nothing is queued outside the log, so a restart resumes at
//! the committed offset: a message whose outcome was unknown is sent again
//! with the same `webhook-id` (`TOPIC:SEQ`), and receivers dedupe by it
//! (at least once).
//!
//! Failures are retried on a schedule with jitter (`Retry-After` wins on
//! 429 and 503); 410 Gone deletes the hook; a hook that fails for
//! `disable_after` without a success is disabled and keeps its cursor.
//! Every outgoing connection goes through the SSRF [`guard`].

pub mod guard;
pub mod sign;
mod store;
mod websub;
mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use fanlog_broker::Broker;
use fanlog_broker::BrokerError;
use fanlog_broker::StartFrom;
use guard::Guard;
use sign::Secret;
pub use store::Delivery;
use store::{HookSpec, OldSecret, Store, WebSubSpec};
pub use websub::WebSubRequest;
pub use worker::{LEASE_TTL, lease_name};

/// Settings of push delivery. Also the `[hooks]` section of `fanlog
/// serve`'s configuration, as it is: durations are written like `15s`,
/// `5m` or `5days`; the networks, CAs and the count limit come from other
/// keys and are not part of the section.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HooksConfig {
    /// A delivery attempt that has no complete answer by then failed.
    #[serde(with = "text::duration")]
    pub timeout: Duration,
    /// Waits after the 1st, 2nd, ... consecutive failure of a message; the
    /// last one repeats. Each is jittered by up to ±[`Self::jitter`].
    #[serde(with = "text::durations")]
    pub retry_schedule: Vec<Duration>,
    /// Relative jitter of each retry wait, 0.0 to 1.0.
    pub jitter: f64,
    /// A hook with no success for this long is disabled.
    #[serde(with = "text::duration")]
    pub disable_after: Duration,
    /// Networks deliveries may reach although the guard refuses them
    /// (loopback, private, ...): `127.0.0.1`, `10.0.0.0/8`.
    #[serde(skip)]
    pub allow_targets: Vec<String>,
    /// Most deliveries per second to one hook, if limited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<f64>,
    /// CA certificates (PEM) trusted for https targets, beside the
    /// Mozilla root store.
    #[serde(skip)]
    pub trust_pem: Vec<Vec<u8>>,
    /// Most hooks and WebSub subscriptions; creating one more is refused.
    #[serde(skip)]
    pub max_hooks: usize,
    /// WebSub lease when the subscriber asks for none.
    #[serde(with = "text::duration")]
    pub lease_default: Duration,
    /// Shortest and longest WebSub lease granted.
    #[serde(with = "text::duration")]
    pub lease_min: Duration,
    /// See `lease_min`.
    #[serde(with = "text::duration")]
    pub lease_max: Duration,
    /// How long the lease on a hook's deliveries lasts without renewal
    /// (its owner renews it every third of that): with storage shared by
    /// several edges, a dead owner's hooks move to another edge within
    /// this and a second. `[cluster] lease_ttl`.
    #[serde(skip)]
    pub delivery_lease: Duration,
}

impl Default for HooksConfig {
    fn default() -> Self {
        let m = |n: u64| Duration::from_secs(60 * n);
        Self {
            timeout: Duration::from_secs(15),
            retry_schedule: vec![
                Duration::from_secs(5),
                m(5),
                m(30),
                m(120),
                m(300),
                m(600),
                m(600),
            ],
            jitter: 0.2,
            disable_after: Duration::from_secs(5 * 24 * 3600),
            allow_targets: Vec::new(),
            rate_limit: None,
            trust_pem: Vec::new(),
            max_hooks: 10_000,
            lease_default: Duration::from_secs(10 * 24 * 3600),
            lease_min: Duration::from_secs(60),
            lease_max: Duration::from_secs(30 * 24 * 3600),
            delivery_lease: LEASE_TTL,
        }
    }
}

impl HooksConfig {
    /// Checks the settings that can be wrong on their own.
    ///
    /// # Errors
    /// An empty retry schedule, a jitter outside 0..=1, a rate limit that is
    /// not a positive number, or a default lease outside `lease_min..=lease_max`.
    pub fn validate(&self) -> Result<(), String> {
        if self.retry_schedule.is_empty() {
            return Err("hooks.retry_schedule: give at least one wait".into());
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(format!("hooks.jitter {} is outside 0..=1", self.jitter));
        }
        if self.rate_limit.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            return Err("hooks.rate_limit must be a positive number".into());
        }
        if !(self.lease_min <= self.lease_default && self.lease_default <= self.lease_max) {
            return Err("hooks.lease_default must lie within lease_min..=lease_max".into());
        }
        Ok(())
    }
}

/// Durations as text (`15s`, `5m`, `5days`), for the configuration.
mod text {
    pub(super) mod duration {
        use serde::{Deserialize, Deserializer, Serializer, de::Error};
        use std::time::Duration;

        pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(&humantime::format_duration(*d))
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
            let text = String::deserialize(d)?;
            humantime::parse_duration(&text).map_err(|e| {
                D::Error::custom(format!("{text:?} is not a duration like 15s or 5m: {e}"))
            })
        }
    }

    pub(super) mod durations {
        use serde::ser::SerializeSeq;
        use serde::{Deserialize, Deserializer, Serializer, de::Error};
        use std::time::Duration;

        pub(crate) fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(v.len()))?;
            for d in v {
                seq.serialize_element(&humantime::format_duration(*d).to_string())?;
            }
            seq.end()
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Vec<Duration>, D::Error> {
            Vec::<String>::deserialize(d)?
                .iter()
                .map(|text| {
                    humantime::parse_duration(text).map_err(|e| {
                        D::Error::custom(format!("{text:?} is not a duration like 15s or 5m: {e}"))
                    })
                })
                .collect()
        }
    }
}

/// Why a hook operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// A bad request: topic, URL, refused target, secret, start.
    #[error("{0}")]
    Invalid(String),
    /// No hook has this id.
    #[error("no hook {0}")]
    NotFound(String),
    /// The broker refused (a bad topic, a cursor past the end, ...).
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// `hooks.json` could not be written.
    #[error("cannot store the hooks: {0}")]
    Io(#[from] std::io::Error),
    /// The registry changed through another process sharing the storage
    /// (a cluster's other edge) since this one read it; it is read again,
    /// and the request may be retried.
    #[error("the hooks changed through another edge meanwhile: retry")]
    Changed,
    /// A topic that hooks deliver cannot be deleted.
    #[error("hooks deliver {topic}: delete them first ({})", ids.join(", "))]
    TopicInUse {
        /// The topic.
        topic: String,
        /// The hooks (and WebSub subscriptions) that deliver it.
        ids: Vec<String>,
    },
}

/// A new hook.
#[derive(Debug, Clone, Default)]
pub struct NewHook {
    /// The topic to deliver.
    pub topic: String,
    /// Where to POST each delivery.
    pub url: String,
    /// `whsec_...`; generated when absent.
    pub secret: Option<String>,
    /// First seq to deliver; the live tail when absent.
    pub from: Option<u64>,
    /// How CloudEvents are delivered.
    pub delivery: Delivery,
    /// Only CloudEvents of these types, when not empty (other messages are
    /// passed over).
    pub types: Vec<String>,
    /// Most deliveries per second, if limited.
    pub rate_limit: Option<f64>,
    /// Confirm the target first: POST `X-Hook-Secret: SECRET`, which it
    /// must echo in its answer's `X-Hook-Secret`.
    pub handshake: bool,
    /// Per-key lanes: up to this many deliveries at once, in order within
    /// a key (messages without a key are not held back). None: one at a
    /// time in topic order.
    pub lanes: Option<u32>,
    /// Set aside a message still failing after the retry schedule in the
    /// hook's dead-letter topic, and go on.
    pub dead_letter: bool,
}

/// Most deliveries at once of a hook with per-key lanes.
pub const MAX_LANES: u32 = 64;

/// A change to a hook (`PATCH /hooks/{id}`).
#[derive(Debug, Clone, Default)]
pub struct HookUpdate {
    /// Re-enable (`true`: delivery resumes at the cursor) or disable.
    pub enabled: Option<bool>,
    /// A new rate limit; `Some(None)` removes it.
    pub rate_limit: Option<Option<f64>>,
}

/// A hook as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HookView {
    /// `hook_...`.
    pub id: String,
    /// The topic delivered.
    pub topic: String,
    /// Where deliveries go.
    pub url: String,
    /// `webhook` or `websub`.
    pub kind: &'static str,
    /// `active` or `disabled`.
    pub state: &'static str,
    /// When a WebSub lease ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// How CloudEvents are delivered.
    pub delivery: Delivery,
    /// The CloudEvents types delivered (all when empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// When the hook was created (RFC 3339).
    pub created: String,
    /// The next seq to deliver.
    pub cursor: u64,
    /// Messages published past the cursor.
    pub lag: u64,
    /// Most deliveries per second, if limited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<f64>,
    /// Rotated secrets that still sign, until then.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub old_secrets_until: Vec<String>,
    /// `topic` (one delivery at a time, in seq order) or `key` (per-key
    /// lanes).
    pub ordering: &'static str,
    /// Deliveries at once with `ordering: key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
    /// Where a message still failing after the retry schedule is set
    /// aside, when the hook asked for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<String>,
    /// Messages delivered since the broker started.
    pub delivered: u64,
    /// Failed attempts at the message at the cursor.
    pub attempts: u32,
    /// The HTTP status of the last attempt.
    pub last_status: Option<u16>,
    /// What went wrong last, if the last attempt failed.
    pub last_error: Option<String>,
    /// When the last attempt was made (RFC 3339).
    pub last_attempt: Option<String>,
    /// When the next attempt is due, while retrying (RFC 3339).
    pub next_attempt: Option<String>,
}

/// What a worker reports; read by [`Hooks::get`].
#[derive(Debug, Default)]
struct Status {
    delivered: u64,
    attempts: u32,
    last_status: Option<u16>,
    last_error: Option<String>,
    last_attempt: Option<SystemTime>,
    next_attempt: Option<SystemTime>,
}

#[derive(Debug)]
struct Entry {
    spec: HookSpec,
    status: Arc<Mutex<Status>>,
    stop: CancellationToken,
    /// The worker, while the hook is enabled.
    worker: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Debug)]
struct Inner {
    broker: Broker,
    config: HooksConfig,
    guard: Guard,
    client: reqwest::Client,
    store: Store,
    hooks: Mutex<BTreeMap<String, Entry>>,
    /// Held while `hooks.json` is written, taken before `hooks`: writes
    /// are serialized and each writes the registry as it is then, so the
    /// last write on disk is always the newest state.
    persist: Mutex<()>,
    /// The registry's stored revision as this process last read or wrote
    /// it (`None`: none stored).
    revision: Mutex<Option<u64>>,
    /// Storage shared with other processes (a cluster): writes expect
    /// `revision`, and a task follows what the others write.
    shared: bool,
    /// Held from a new hook's topic lookup to its registration, and by a
    /// topic's deletion from its check for hooks to the deletion: the two
    /// never interleave, so a hook never points at a deleted topic.
    topics: Mutex<()>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

/// The webhooks of a broker. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Hooks {
    inner: Arc<Inner>,
}

/// The consumer group that holds a hook's cursor.
fn group(id: &str) -> String {
    format!("{}{id}", crate::metrics::HOOK_GROUP_PREFIX)
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Hooks {
    /// Loads the hooks stored in the broker's directory and starts a
    /// delivery worker for each enabled one. Call within a tokio runtime.
    ///
    /// # Errors
    /// A bad allow-list entry, an unreadable registry, or an HTTP client
    /// that cannot be built.
    pub fn open(broker: Broker, config: HooksConfig) -> Result<Self, HookError> {
        let guard = Guard::new(&config.allow_targets).map_err(HookError::Invalid)?;
        let mut builder = reqwest::Client::builder();
        for pem in &config.trust_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| HookError::Invalid(format!("a trusted CA certificate: {e}")))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .use_rustls_tls()
            .https_only(false)
            .dns_resolver(Arc::new(guard.clone()))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("fanlog/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HookError::Invalid(format!("HTTP client: {e}")))?;
        let store = Store::new(broker.clone());
        let (specs, revision) = store.load_versioned()?;
        let shared = broker.storage_shared();
        let hooks = Self {
            inner: Arc::new(Inner {
                broker,
                config,
                guard,
                client,
                store,
                hooks: Mutex::new(BTreeMap::new()),
                persist: Mutex::new(()),
                revision: Mutex::new(revision),
                shared,
                topics: Mutex::new(()),
                shutdown: CancellationToken::new(),
                tracker: TaskTracker::new(),
            }),
        };
        for spec in specs {
            let (id, kept) = (spec.id.clone(), spec.clone());
            if let Err(e) = hooks.start(spec) {
                // One bad hook stops only itself: kept as stored (so the
                // next save loses nothing), not running, its error shown.
                tracing::error!(hook = %id, error = %e, "hook not started");
                let status = Status {
                    last_error: Some(format!("not started: {e}")),
                    ..Status::default()
                };
                hooks.register(kept, status);
            }
        }
        if shared {
            hooks.inner.tracker.spawn(hooks.clone().follow_registry());
        }
        Ok(hooks)
    }

    /// With storage shared by several edges: reads the registry's revision
    /// every half second and, when another edge changed it, makes this
    /// edge's hooks what is stored (new ones start, deleted ones stop,
    /// changed ones restart). Which edge delivers a hook is decided by its
    /// lease, not here.
    async fn follow_registry(self) {
        loop {
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            let store = self.inner.store.clone();
            let read = tokio::task::spawn_blocking(move || {
                let rev = store.revision()?;
                Ok::<_, std::io::Error>((rev, store))
            })
            .await;
            let Ok(Ok((rev, store))) = read else {
                continue;
            };
            if rev == *self.inner.revision.lock() {
                continue;
            }
            match tokio::task::spawn_blocking(move || store.load_versioned()).await {
                Ok(Ok((specs, rev))) => self.reconcile(specs, rev),
                Ok(Err(e)) => tracing::warn!("cannot read the hooks registry: {e}"),
                Err(_) => {}
            }
        }
    }

    /// Makes the running hooks `stored` (read at `revision`).
    fn reconcile(&self, stored: Vec<HookSpec>, revision: Option<u64>) {
        let _write = self.inner.persist.lock();
        // Read before this process's own later write: older than what it
        // knows (revisions only grow), so applying it would undo that
        // write here and make the next one a conflict.
        if let (Some(read), Some(known)) = (revision, *self.inner.revision.lock())
            && read <= known
        {
            return;
        }
        let local: BTreeMap<String, HookSpec> = self
            .inner
            .hooks
            .lock()
            .iter()
            .map(|(id, e)| (id.clone(), e.spec.clone()))
            .collect();
        let ids: std::collections::BTreeSet<&str> = stored.iter().map(|h| h.id.as_str()).collect();
        for id in local.keys().filter(|id| !ids.contains(id.as_str())) {
            tracing::info!(hook = %id, "deleted through another edge");
            self.forget(id);
        }
        for spec in stored {
            if local.get(&spec.id) == Some(&spec) {
                continue;
            }
            let id = spec.id.clone();
            self.forget(&id);
            if let Err(e) = self.start(spec) {
                tracing::error!(hook = %id, error = %e, "hook from another edge not started");
            }
        }
        *self.inner.revision.lock() = revision;
    }

    /// Writes `specs` as the registry (the persist lock is held): over
    /// whatever is stored on one machine; over the revision this process
    /// knows when others share the storage, else [`HookError::Changed`]
    /// (and the registry is read again).
    fn persist(&self, specs: &[HookSpec]) -> Result<(), HookError> {
        let expect = match (self.inner.shared, *self.inner.revision.lock()) {
            (false, _) => fanlog_broker::storage::Expect::Any,
            (true, Some(r)) => fanlog_broker::storage::Expect::Revision(r),
            (true, None) => fanlog_broker::storage::Expect::Absent,
        };
        match self.inner.store.save(specs, expect) {
            Ok(rev) => {
                *self.inner.revision.lock() = Some(rev);
                Ok(())
            }
            Err(HookError::Changed) => {
                // Forces the follower to read the registry again.
                *self.inner.revision.lock() = None;
                Err(HookError::Changed)
            }
            Err(e) => Err(e),
        }
    }

    /// Registers `spec` and starts its worker when it is enabled.
    fn start(&self, spec: HookSpec) -> Result<(), HookError> {
        let signer = match &spec.websub {
            Some(w) => worker::Signer::WebSub(w.secret.clone().map(String::into_bytes)),
            None => {
                let mut keys = vec![(
                    Secret::parse(&spec.secret).map_err(HookError::Invalid)?,
                    None,
                )];
                for old in &spec.old_secrets {
                    keys.push((
                        Secret::parse(&old.secret).map_err(HookError::Invalid)?,
                        Some(old.until_ms),
                    ));
                }
                worker::Signer::Webhook(keys)
            }
        };
        // Registered before its worker runs, so that the worker can find
        // it (to disable or delete it) from its first step.
        let (status, stop) = self.register(spec.clone(), Status::default());
        if spec.enabled {
            let id = spec.id.clone();
            let job = worker::Job {
                hooks: self.clone(),
                spec,
                signer,
                status,
                stop,
            };
            let handle = self.inner.tracker.spawn(worker::run(job));
            if let Some(e) = self.inner.hooks.lock().get_mut(&id) {
                e.worker = Some(handle);
            }
        }
        Ok(())
    }

    /// Puts `spec` in the registry with `status` and no worker; returns the
    /// status and the stop token a worker shares.
    fn register(&self, spec: HookSpec, status: Status) -> (Arc<Mutex<Status>>, CancellationToken) {
        let status = Arc::new(Mutex::new(status));
        let stop = self.inner.shutdown.child_token();
        self.inner.hooks.lock().insert(
            spec.id.clone(),
            Entry {
                spec,
                status: status.clone(),
                stop: stop.clone(),
                worker: None,
            },
        );
        (status, stop)
    }

    /// Moves a hook's cursor to `from` and restarts its delivery there:
    /// messages from `from` on are delivered again (or skipped, when
    /// `from` is ahead). The worker is stopped and waited for first, so no
    /// delivery in flight moves the cursor afterwards.
    ///
    /// # Errors
    /// [`HookError::NotFound`], or the broker refuses the cursor (past the
    /// topic's end); the hook runs on from its old cursor then.
    pub async fn replay(&self, id: &str, from: u64) -> Result<HookView, HookError> {
        let entry = self
            .inner
            .hooks
            .lock()
            .remove(id)
            .ok_or_else(|| HookError::NotFound(id.to_owned()))?;
        entry.stop.cancel();
        if let Some(worker) = entry.worker {
            let _ = worker.await;
        }
        let moved = self
            .inner
            .broker
            .commit(&entry.spec.topic, &group(id), from)
            .await;
        self.start(entry.spec)?;
        moved?;
        self.get(id)
            .ok_or_else(|| HookError::NotFound(id.to_owned()))
    }

    fn save(&self) -> Result<(), HookError> {
        let _write = self.inner.persist.lock();
        let specs: Vec<HookSpec> = self
            .inner
            .hooks
            .lock()
            .values()
            .map(|e| e.spec.clone())
            .collect();
        self.persist(&specs)
    }

    /// Deletes `topic` from the broker unless hooks deliver it
    /// ([`HookError::TopicInUse`]); never interleaved with a hook's creation.
    ///
    /// # Errors
    /// [`HookError::TopicInUse`], or the broker's refusal.
    pub fn delete_topic(&self, topic: &str) -> Result<(), HookError> {
        let _topics = self.inner.topics.lock();
        let ids: Vec<String> = self
            .inner
            .hooks
            .lock()
            .values()
            .filter(|e| e.spec.topic == topic)
            .map(|e| e.spec.id.clone())
            .collect();
        if !ids.is_empty() {
            return Err(HookError::TopicInUse {
                topic: topic.to_owned(),
                ids,
            });
        }
        self.inner.broker.delete_topic(topic)?;
        Ok(())
    }

    /// Creates a hook; returns it and its secret.
    ///
    /// # Errors
    /// [`HookError::Invalid`] for a bad topic, URL, refused target, secret
    /// or start; broker and storage errors.
    pub async fn create(&self, new: NewHook) -> Result<(HookView, String), HookError> {
        fanlog_broker::TopicName::new(new.topic.as_str())
            .map_err(|e| HookError::Invalid(e.to_string()))?;
        let url = reqwest::Url::parse(&new.url)
            .map_err(|e| HookError::Invalid(format!("url {:?}: {e}", new.url)))?;
        self.inner
            .guard
            .check_url(&url)
            .await
            .map_err(HookError::Invalid)?;
        let secret = match &new.secret {
            Some(s) => Secret::parse(s).map_err(HookError::Invalid)?,
            None => Secret::generate(),
        };
        self.check_room()?;
        if new.rate_limit.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            return Err(HookError::Invalid(
                "rate_limit must be a positive number".into(),
            ));
        }
        if new.lanes.is_some_and(|n| !(1..=MAX_LANES).contains(&n)) {
            return Err(HookError::Invalid(format!(
                "parallelism must be 1 to {MAX_LANES}"
            )));
        }
        if new.lanes.is_some() && new.delivery == Delivery::Batch {
            return Err(HookError::Invalid(
                "per-key ordering delivers one message per request: it does not go with batch delivery".into(),
            ));
        }
        if new.handshake {
            self.handshake(&url, secret.as_str()).await?;
        }
        let id = format!("hook_{:016x}", rand::random::<u64>());
        let committing = {
            let _topics = self.inner.topics.lock();
            self.register_new(&id, new, &url, &secret)?
        };
        // Stored, and its cursor durable, before the hook is acknowledged.
        if let Err(e) = self.save_off_runtime().await {
            self.forget(&id);
            return Err(e);
        }
        if let Err(e) = committing.durable().await {
            self.forget(&id);
            let _ = self.save_off_runtime().await;
            return Err(e.into());
        }
        let view = self.get(&id).ok_or(HookError::NotFound(id))?;
        Ok((view, secret.as_str().to_owned()))
    }

    /// The part of [`Hooks::create`] under the topics lock: the cursor and
    /// the registry. The cursor's commit is written; the caller stores the
    /// registry and waits for the commit to be durable once the lock is
    /// released.
    fn register_new(
        &self,
        id: &str,
        new: NewHook,
        url: &reqwest::Url,
        secret: &Secret,
    ) -> Result<fanlog_broker::Committing, HookError> {
        let next = self
            .inner
            .broker
            .subscribe(&new.topic, StartFrom::Latest)?
            .position();
        let start = new.from.unwrap_or(next);
        if start > next {
            return Err(HookError::Invalid(format!(
                "from {start} is past the end of {} (next seq {next})",
                new.topic
            )));
        }
        let committing = self
            .inner
            .broker
            .begin_commit(&new.topic, &group(id), start)?;
        let spec = HookSpec {
            id: id.to_owned(),
            topic: new.topic,
            url: url.to_string(),
            secret: secret.as_str().to_owned(),
            created_ms: now_ms(),
            enabled: true,
            delivery: new.delivery,
            types: new.types,
            websub: None,
            old_secrets: Vec::new(),
            rate_limit: new.rate_limit,
            lanes: new.lanes,
            dead_letter: new.dead_letter,
        };
        self.start(spec)?;
        Ok(committing)
    }

    /// Writes `hooks.json` on the blocking pool (a rename and syncs), so a
    /// runtime thread never waits for the disk.
    async fn save_off_runtime(&self) -> Result<(), HookError> {
        let hooks = self.clone();
        tokio::task::spawn_blocking(move || hooks.save())
            .await
            .map_err(|e| HookError::Io(std::io::Error::other(e)))?
    }

    /// Refuses a new hook at the limit.
    fn check_room(&self) -> Result<(), HookError> {
        let max = self.inner.config.max_hooks;
        if self.inner.hooks.lock().len() >= max {
            return Err(HookError::Broker(BrokerError::LimitReached(format!(
                "the broker holds its limit of {max} hooks"
            ))));
        }
        Ok(())
    }

    /// The `X-Hook-Secret` handshake of REST Hooks.
    async fn handshake(&self, url: &reqwest::Url, secret: &str) -> Result<(), HookError> {
        let fail = |why: String| HookError::Invalid(format!("X-Hook-Secret handshake: {why}"));
        let resp = self
            .inner
            .client
            .post(url.clone())
            .header("x-hook-secret", secret)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body("{}")
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("the target answered {}", resp.status())));
        }
        let echoed = resp
            .headers()
            .get("x-hook-secret")
            .and_then(|v| v.to_str().ok());
        if echoed != Some(secret) {
            return Err(fail("the target did not echo X-Hook-Secret".into()));
        }
        Ok(())
    }

    /// Applies `change` to a hook's stored spec and restarts its worker
    /// (its cursor is kept; an attempt in flight is made again).
    fn restart_with(
        &self,
        id: &str,
        change: impl FnOnce(&mut HookSpec) -> Result<(), HookError>,
    ) -> Result<HookView, HookError> {
        let mut spec = self
            .inner
            .hooks
            .lock()
            .get(id)
            .map(|e| e.spec.clone())
            .ok_or_else(|| HookError::NotFound(id.to_owned()))?;
        change(&mut spec)?;
        self.forget(id);
        self.start(spec)?;
        self.save()?;
        self.get(id)
            .ok_or_else(|| HookError::NotFound(id.to_owned()))
    }

    /// Re-enables or disables a hook, or changes its rate limit.
    ///
    /// # Errors
    /// [`HookError::NotFound`], [`HookError::Invalid`] for a bad rate.
    pub fn update(&self, id: &str, update: HookUpdate) -> Result<HookView, HookError> {
        if let Some(Some(r)) = update.rate_limit
            && !(r > 0.0 && r.is_finite())
        {
            return Err(HookError::Invalid(
                "rate_limit must be a positive number".into(),
            ));
        }
        self.restart_with(id, |spec| {
            if let Some(on) = update.enabled {
                spec.enabled = on;
            }
            if let Some(rate) = update.rate_limit {
                spec.rate_limit = rate;
            }
            Ok(())
        })
    }

    /// Rotates a webhook's secret: `new` (or a generated one) signs from
    /// now on, and the old one keeps signing beside it for `grace`.
    /// Returns the new secret.
    ///
    /// # Errors
    /// [`HookError::NotFound`], [`HookError::Invalid`] for a bad secret or
    /// a WebSub subscription (whose secret is the subscriber's).
    pub fn rotate(
        &self,
        id: &str,
        new: Option<String>,
        grace: Duration,
    ) -> Result<String, HookError> {
        let secret = match new {
            Some(s) => Secret::parse(&s).map_err(HookError::Invalid)?,
            None => Secret::generate(),
        };
        let text = secret.as_str().to_owned();
        let now = now_ms();
        self.restart_with(id, |spec| {
            if spec.websub.is_some() {
                return Err(HookError::Invalid(
                    "a WebSub subscription's secret is set by subscribing again".into(),
                ));
            }
            spec.old_secrets.retain(|o| o.until_ms > now);
            let old = std::mem::replace(&mut spec.secret, text.clone());
            spec.old_secrets.push(OldSecret {
                secret: old,
                until_ms: now.saturating_add(grace.as_millis() as u64),
            });
            Ok(())
        })?;
        Ok(text)
    }

    /// Stops and unregisters a hook, without saving.
    fn forget(&self, id: &str) -> bool {
        match self.inner.hooks.lock().remove(id) {
            Some(e) => {
                e.stop.cancel();
                true
            }
            None => false,
        }
    }

    /// Deletes a hook.
    ///
    /// # Errors
    /// [`HookError::NotFound`], or the registry cannot be saved.
    pub fn delete(&self, id: &str) -> Result<(), HookError> {
        // Stored first, then gone from the API: once a client sees 404 the
        // deletion survives a crash. (The registry is small and rarely
        // changes; it is written under the lock to keep the two in step.)
        let _write = self.inner.persist.lock();
        let mut hooks = self.inner.hooks.lock();
        if !hooks.contains_key(id) {
            return Err(HookError::NotFound(id.to_owned()));
        }
        let rest: Vec<HookSpec> = hooks
            .values()
            .filter(|e| e.spec.id != id)
            .map(|e| e.spec.clone())
            .collect();
        self.persist(&rest)?;
        if let Some(e) = hooks.remove(id) {
            e.stop.cancel();
        }
        Ok(())
    }

    /// Marks a hook disabled (its worker has stopped); it keeps its cursor.
    fn disable(&self, id: &str) {
        if let Some(e) = self.inner.hooks.lock().get_mut(id) {
            e.spec.enabled = false;
        }
        if let Err(e) = self.save() {
            tracing::error!(hook = id, "cannot save the hooks: {e}");
        }
    }

    /// One hook, with its cursor and delivery state.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<HookView> {
        let hooks = self.inner.hooks.lock();
        hooks.get(id).map(|e| self.view(e))
    }

    /// Every hook.
    #[must_use]
    pub fn list(&self) -> Vec<HookView> {
        let hooks = self.inner.hooks.lock();
        hooks.values().map(|e| self.view(e)).collect()
    }

    fn view(&self, e: &Entry) -> HookView {
        let broker = &self.inner.broker;
        let next = broker.topic_info(&e.spec.topic).map_or(0, |t| t.next_seq);
        let cursor = broker
            .committed(&e.spec.topic, &group(&e.spec.id))
            .ok()
            .flatten()
            .unwrap_or(next);
        let s = e.status.lock();
        HookView {
            id: e.spec.id.clone(),
            topic: e.spec.topic.clone(),
            url: e.spec.url.clone(),
            kind: if e.spec.websub.is_some() {
                "websub"
            } else {
                "webhook"
            },
            state: if e.spec.enabled { "active" } else { "disabled" },
            expires: e
                .spec
                .websub
                .as_ref()
                .map(|w| rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(w.expires_ms))),
            delivery: e.spec.delivery,
            types: e.spec.types.clone(),
            rate_limit: e.spec.rate_limit,
            ordering: if e.spec.lanes.is_some() {
                "key"
            } else {
                "topic"
            },
            parallelism: e.spec.lanes,
            dead_letter: e.spec.dead_letter.then(|| e.spec.dead_letter_topic()),
            old_secrets_until: e
                .spec
                .old_secrets
                .iter()
                .map(|o| rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(o.until_ms)))
                .collect(),
            created: rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(e.spec.created_ms)),
            cursor,
            lag: next.saturating_sub(cursor),
            delivered: s.delivered,
            attempts: s.attempts,
            last_status: s.last_status,
            last_error: s.last_error.clone(),
            last_attempt: s.last_attempt.map(rfc3339),
            next_attempt: s.next_attempt.map(rfc3339),
        }
    }

    /// Stops every worker and waits for them (an attempt in flight is
    /// abandoned; its message is sent again after a restart).
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }
}
