//! Offsets, metadata documents and leases in JetStream KV buckets, with
//! their revisions as compare-and-swap.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv;
use bytes::Bytes;
use fanlog_protocol::{GroupName, TopicName};
use futures_util::{FutureExt, StreamExt};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{Engine, encode, unavailable};
use crate::{
    DurableWait, Expect, Lease, Leases, MetaStore, Namespace, OffsetStore, Result, StorageError,
    Versioned,
};

/// One KV bucket of the cluster.
#[derive(Clone)]
pub(crate) struct Bucket {
    engine: Engine,
    store: kv::Store,
    name: String,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket").field("name", &self.name).finish()
    }
}

/// A key's value and the revision it was written at.
pub(crate) struct Entry {
    value: Bytes,
    revision: u64,
}

/// What a compare-and-swap write came to.
enum Swap {
    Done(u64),
    Conflict,
}

impl Bucket {
    /// Opens `name`, making it (with the engine's replicas) when missing.
    pub(crate) fn open(engine: &Engine, name: String) -> Result<Self> {
        let js = engine.js().clone();
        let replicas = engine.replicas;
        let bucket = name.clone();
        let store = engine
            .block(async move {
                match js.get_key_value(bucket.as_str()).await {
                    Ok(s) => Ok(s),
                    Err(_) => js
                        .create_key_value(kv::Config {
                            bucket,
                            history: 1,
                            num_replicas: replicas,
                            storage: async_nats::jetstream::stream::StorageType::File,
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| e.to_string()),
                }
            })?
            .map_err(unavailable("cannot open a KV bucket"))?;
        Ok(Self {
            engine: engine.clone(),
            store,
            name,
        })
    }

    /// The key's current value, read through the bucket's stream leader:
    /// the client's `entry` uses direct gets, which any replica answers
    /// and a lagging one answers stale (an offset committed through one
    /// edge read as absent through another; found by `tests/cluster.rs`
    /// under load).
    fn entry(&self, key: String) -> Result<Option<Entry>> {
        let s = self.store.clone();
        let found = self
            .engine
            .block(async move {
                let subject = format!("{}{key}", s.prefix);
                match s.stream.get_last_raw_message_by_subject(&subject).await {
                    Ok(m) => Ok(Some(m)),
                    Err(e)
                        if e.kind()
                            == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(e.to_string()),
                }
            })?
            .map_err(unavailable("cannot read the cluster's KV"))?;
        Ok(found.and_then(|m| {
            // A delete or purge leaves a marker with an operation header.
            let op = m.headers.get("KV-Operation").map(|v| v.as_str().to_owned());
            let removed = matches!(op.as_deref(), Some("DEL" | "PURGE"))
                || m.headers.get("Nats-Marker-Reason").is_some();
            (!removed).then(|| Entry {
                value: m.payload,
                revision: m.sequence,
            })
        }))
    }

    /// Writes `key` if its revision is still `revision` (0: absent, or
    /// deleted at `deleted`).
    fn swap(&self, key: String, value: Bytes, expect: Expect) -> Result<Swap> {
        let s = self.store.clone();
        self.engine
            .block(async move {
                // A bucket made a moment ago may not have reached the server
                // this client talks to: its writes are refused with "no
                // stream found" until it has (seen once in the cluster pass
                // of the tests, on a fresh cluster under load). Nothing was
                // written then, so the write is tried again, for a moment.
                let mut wait = std::time::Duration::from_millis(20);
                loop {
                    let r = match expect {
                        Expect::Any => s
                            .put(key.clone(), value.clone())
                            .await
                            .map_err(|e| Some(e.to_string())),
                        Expect::Absent => {
                            s.create(key.clone(), value.clone())
                                .await
                                .map_err(|e| match e.kind() {
                                    kv::CreateErrorKind::AlreadyExists => None,
                                    _ => Some(e.to_string()),
                                })
                        }
                        Expect::Revision(rev) => s
                            .update(key.clone(), value.clone(), rev)
                            .await
                            .map_err(|e| match e.kind() {
                                kv::UpdateErrorKind::WrongLastRevision => None,
                                _ => Some(e.to_string()),
                            }),
                    };
                    match r {
                        Ok(rev) => return Ok(Swap::Done(rev)),
                        Err(None) => return Ok(Swap::Conflict),
                        Err(Some(e))
                            if e.contains("no stream found")
                                && wait < std::time::Duration::from_secs(2) =>
                        {
                            tokio::time::sleep(wait).await;
                            wait *= 2;
                        }
                        Err(Some(e)) => return Err(e),
                    }
                }
            })?
            .map_err(unavailable("cannot write the cluster's KV"))
    }

    fn delete(&self, key: String, revision: Option<u64>) -> Result<bool> {
        let s = self.store.clone();
        self.engine
            .block(async move {
                match s.delete_expect_revision(key, revision).await {
                    Ok(()) => Ok(true),
                    Err(e)
                        if revision.is_some() && e.to_string().contains("wrong last sequence") =>
                    {
                        Ok(false)
                    }
                    Err(e) => Err(e.to_string()),
                }
            })?
            .map_err(unavailable("cannot delete from the cluster's KV"))
    }

    fn keys(&self, prefix: String) -> Result<Vec<String>> {
        let s = self.store.clone();
        self.engine
            .block(async move {
                let mut keys = match s.keys().await {
                    Ok(k) => k,
                    // An empty bucket has no keys to list.
                    Err(e) if e.to_string().contains("no keys") => return Ok(Vec::new()),
                    Err(e) => return Err(e.to_string()),
                };
                let mut out = Vec::new();
                while let Some(k) = keys.next().await {
                    let k = k.map_err(|e| e.to_string())?;
                    if k.starts_with(&prefix) {
                        out.push(k);
                    }
                }
                Ok(out)
            })?
            .map_err(unavailable("cannot list the cluster's KV"))
    }

    pub(crate) fn delete_prefix(&self, prefix: &str) -> Result<()> {
        for k in self.keys(prefix.to_owned())? {
            self.delete(k, None)?;
        }
        Ok(())
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Metadata documents in the `fanlog_meta` bucket, keyed
/// `<namespace>.<encoded key>`.
#[derive(Debug)]
pub struct JsMeta {
    bucket: Bucket,
}

impl JsMeta {
    pub(crate) fn new(bucket: Bucket) -> Self {
        Self { bucket }
    }
}

fn meta_key(ns: Namespace, key: &str) -> String {
    let ns = match ns {
        Namespace::Settings => "settings",
        Namespace::Hooks => "hooks",
        Namespace::Tickets => "tickets",
        Namespace::Shared => "shared",
    };
    format!("{ns}.{}", encode(key))
}

fn conflict(ns: Namespace, key: &str) -> StorageError {
    StorageError::Conflict {
        namespace: format!("{ns:?}"),
        key: key.to_owned(),
    }
}

impl MetaStore for JsMeta {
    fn get(&self, ns: Namespace, key: &str) -> Result<Option<Versioned>> {
        Ok(self.bucket.entry(meta_key(ns, key))?.map(|e| Versioned {
            value: e.value.to_vec(),
            revision: e.revision,
        }))
    }

    fn put(&self, ns: Namespace, key: &str, value: &[u8], expect: Expect) -> Result<u64> {
        match self
            .bucket
            .swap(meta_key(ns, key), Bytes::copy_from_slice(value), expect)?
        {
            Swap::Done(rev) => Ok(rev),
            Swap::Conflict => Err(conflict(ns, key)),
        }
    }

    fn delete(&self, ns: Namespace, key: &str) -> Result<()> {
        self.bucket.delete(meta_key(ns, key), None).map(drop)
    }

    fn put_expiring(&self, ns: Namespace, key: &str, value: &[u8], ttl: Duration) -> Result<u64> {
        // The expiry travels in the value (8 bytes, milliseconds since the
        // epoch, big-endian): `take` refuses an expired document.
        let until = now_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let mut doc = until.to_be_bytes().to_vec();
        doc.extend_from_slice(value);
        match self
            .bucket
            .swap(meta_key(ns, key), Bytes::from(doc), Expect::Absent)?
        {
            Swap::Done(rev) => Ok(rev),
            Swap::Conflict => Err(conflict(ns, key)),
        }
    }

    fn take(&self, ns: Namespace, key: &str) -> Result<Option<Versioned>> {
        let k = meta_key(ns, key);
        let Some(e) = self.bucket.entry(k.clone())? else {
            return Ok(None);
        };
        // Of two edges taking one ticket, the delete with the expected
        // revision succeeds for one only.
        if !self.bucket.delete(k, Some(e.revision))? {
            return Ok(None);
        }
        let Some((until, value)) = e.value.split_first_chunk::<8>() else {
            return Ok(None);
        };
        if u64::from_be_bytes(*until) < now_ms() {
            return Ok(None);
        }
        Ok(Some(Versioned {
            value: value.to_vec(),
            revision: e.revision,
        }))
    }
}

/// One topic's consumer group offsets in the `fanlog_offsets` bucket,
/// keyed `<encoded topic>.<encoded group>`. A commit is written at once
/// and awaited through its ticket; reads ask the bucket, so a group that
/// committed through another edge resumes where it left off.
#[derive(Debug)]
pub struct JsOffsets {
    bucket: Bucket,
    prefix: String,
    /// The last value written, read or seen, per group.
    known: Arc<Mutex<HashMap<GroupName, u64>>>,
    /// Commits not yet known written, by ticket. A write that succeeds
    /// removes its own entry; one that fails stays until a waiter (or a
    /// sync) reports it. Waiters share the write, none takes it from
    /// another (the flusher's sync and a client's wait race otherwise).
    pending: Arc<Mutex<HashMap<u64, PendingWrite>>>,
    tickets: AtomicU64,
    watch: tokio::task::AbortHandle,
}

impl Drop for JsOffsets {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

/// Keeps `known` current with every commit of the topic's groups,
/// through whichever edge, for as long as the topic is open here.
async fn follow_groups(
    store: kv::Store,
    prefix: String,
    known: Arc<Mutex<HashMap<GroupName, u64>>>,
) {
    loop {
        match store.watch_with_history(format!("{prefix}>")).await {
            Ok(mut w) => {
                while let Some(Ok(e)) = w.next().await {
                    let Some(group) = e
                        .key
                        .strip_prefix(&prefix)
                        .and_then(super::decode)
                        .and_then(|g| GroupName::new(&g).ok())
                    else {
                        continue;
                    };
                    let mut known = known.lock();
                    match e.operation {
                        kv::Operation::Put => {
                            if let Some(seq) = std::str::from_utf8(&e.value)
                                .ok()
                                .and_then(|v| v.parse().ok())
                            {
                                known.insert(group, seq);
                            }
                        }
                        _ => {
                            known.remove(&group);
                        }
                    }
                }
            }
            Err(e) => tracing::debug!("cannot watch the cluster's offsets yet: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl JsOffsets {
    pub(crate) fn open(bucket: Bucket, topic: &TopicName) -> Result<Self> {
        let prefix = format!("{}.", encode(topic.as_str()));
        let known = Arc::new(Mutex::new(HashMap::new()));
        // The groups every edge committed, kept current by a watch of the
        // topic's keys (not a listing of the bucket at open: that is a
        // scan of every topic's groups, and timed out under load).
        let watch = bucket.engine.spawn(follow_groups(
            bucket.store.clone(),
            prefix.clone(),
            known.clone(),
        ));
        Ok(Self {
            bucket,
            prefix,
            known,
            pending: Arc::new(Mutex::new(HashMap::new())),
            tickets: AtomicU64::new(0),
            watch: watch.abort_handle(),
        })
    }

    fn key(&self, group: &GroupName) -> String {
        format!("{}{}", self.prefix, encode(group.as_str()))
    }
}

fn read_seq(e: Option<Entry>) -> Option<u64> {
    std::str::from_utf8(&e?.value).ok()?.parse().ok()
}

impl OffsetStore for JsOffsets {
    fn committed(&self, group: &GroupName) -> Option<u64> {
        match self.bucket.entry(self.key(group)) {
            Ok(found) => {
                let seq = read_seq(found)?;
                self.known.lock().insert(group.clone(), seq);
                Some(seq)
            }
            Err(e) => {
                tracing::warn!(group = %group, "cluster offsets unreadable, using the last known: {e}");
                self.known.lock().get(group).copied()
            }
        }
    }

    fn groups(&self) -> Vec<(GroupName, u64)> {
        let mut all: Vec<_> = self
            .known
            .lock()
            .iter()
            .map(|(g, s)| (g.clone(), *s))
            .collect();
        all.sort();
        all
    }

    fn commit(&self, group: &GroupName, seq: u64, max_groups: usize) -> Result<Option<u64>> {
        {
            let mut known = self.known.lock();
            if !known.contains_key(group) && known.len() >= max_groups {
                return Err(StorageError::LimitReached(format!(
                    "the topic holds its limit of {max_groups} consumer groups"
                )));
            }
            known.insert(group.clone(), seq);
        }
        let s = self.bucket.store.clone();
        let key = self.key(group);
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed) + 1;
        let (done, outcome) = tokio::sync::oneshot::channel();
        let write: PendingWrite = outcome
            .map(|r| r.unwrap_or_else(|_| Err("the cluster client stopped".to_owned())))
            .boxed()
            .shared();
        // In the map before the write starts, so that its removal (on
        // success) always finds it.
        self.pending.lock().insert(ticket, write);
        let pending = self.pending.clone();
        self.bucket.engine.spawn(async move {
            let r = s
                .put(key, Bytes::from(seq.to_string()))
                .await
                .map(drop)
                .map_err(|e| e.to_string());
            if r.is_ok() {
                pending.lock().remove(&ticket);
            }
            let _ = done.send(r);
        });
        Ok(Some(ticket))
    }

    fn durable(&self, ticket: u64) -> DurableWait<'_> {
        // Absent: written (its entry goes on success).
        let write = self.pending.lock().get(&ticket).cloned();
        Box::pin(async move {
            let Some(w) = write else { return Ok(()) };
            w.await.map_err(|e| {
                self.pending.lock().remove(&ticket);
                StorageError::Unavailable(format!("cannot write the offset to the cluster: {e}"))
            })
        })
    }

    fn sync(&self) -> Result<()> {
        let all: Vec<(u64, PendingWrite)> = self
            .pending
            .lock()
            .iter()
            .map(|(t, w)| (*t, w.clone()))
            .collect();
        let (tickets, writes): (Vec<u64>, Vec<PendingWrite>) = all.into_iter().unzip();
        let results = self
            .bucket
            .engine
            .block(async move { futures_util::future::join_all(writes).await })?;
        let mut first = None;
        for (t, r) in tickets.into_iter().zip(results) {
            if let Err(e) = r {
                self.pending.lock().remove(&t);
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), |e| Err(StorageError::Unavailable(e)))
    }
}

/// An offset write under way, shared by whoever waits for it.
type PendingWrite = futures_util::future::Shared<
    futures_util::future::BoxFuture<'static, std::result::Result<(), String>>,
>;

/// A lease as stored in `fanlog_leases`.
#[derive(Debug, Serialize, Deserialize)]
struct Held {
    holder: String,
    token: u64,
    until_ms: u64,
}

/// Leases in the `fanlog_leases` bucket: a grant and each renewal are
/// compare-and-swap writes on the key's revision, so two edges never both
/// hold one; expiry is by the wall clock, so edges' clocks must agree to
/// well within a lease's time to live (NTP does).
#[derive(Debug)]
pub struct JsLeases {
    bucket: Bucket,
    /// What this process holds: name -> (holder, token, revision, until).
    held: Mutex<HashMap<String, (String, u64, u64, Instant)>>,
}

impl JsLeases {
    pub(crate) fn new(bucket: Bucket) -> Self {
        Self {
            bucket,
            held: Mutex::new(HashMap::new()),
        }
    }

    fn try_acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<Option<Lease>> {
        let key = encode(name);
        let now = now_ms();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let started = Instant::now();
        let current = self.bucket.entry(key.clone())?;
        let (expect, token) = match &current {
            None => (Expect::Absent, rand::random::<u64>() | 1),
            Some(e) => {
                let held: Option<Held> = serde_json::from_slice(&e.value).ok();
                match held {
                    Some(h) if h.until_ms > now && h.holder != holder => return Ok(None),
                    Some(h) if h.until_ms > now => (Expect::Revision(e.revision), h.token),
                    _ => (Expect::Revision(e.revision), rand::random::<u64>() | 1),
                }
            }
        };
        let doc = serde_json::to_vec(&Held {
            holder: holder.to_owned(),
            token,
            until_ms: now.saturating_add(ttl_ms),
        })
        .map_err(|e| StorageError::Config(e.to_string()))?;
        // A deleted key keeps a tombstone revision: create over it.
        let expect = match (expect, &current) {
            (Expect::Absent, None) => Expect::Absent,
            (e, _) => e,
        };
        match self.bucket.swap(key, Bytes::from(doc), expect)? {
            Swap::Done(rev) => {
                // The lease runs from before the write, as the store saw it.
                self.held.lock().insert(
                    name.to_owned(),
                    (holder.to_owned(), token, rev, started + ttl),
                );
                Ok(Some(Lease {
                    name: name.to_owned(),
                    holder: holder.to_owned(),
                    token,
                }))
            }
            Swap::Conflict => Ok(None),
        }
    }
}

impl Leases for JsLeases {
    fn acquire(&self, name: &str, holder: &str, ttl: Duration) -> Option<Lease> {
        match self.try_acquire(name, holder, ttl) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(lease = name, "cannot reach the cluster's leases: {e}");
                None
            }
        }
    }

    fn holds(&self, lease: &Lease) -> bool {
        self.held
            .lock()
            .get(&lease.name)
            .is_some_and(|(h, t, _, until)| {
                *h == lease.holder && *t == lease.token && *until > Instant::now()
            })
    }

    fn fence(&self, lease: &Lease, ttl: Duration) -> bool {
        // A renewal at the revision this holder last wrote: it fails if
        // anyone took the lease since, whatever this process's clock says.
        let Some(rev) = self
            .held
            .lock()
            .get(&lease.name)
            .filter(|(h, t, _, _)| *h == lease.holder && *t == lease.token)
            .map(|(_, _, rev, _)| *rev)
        else {
            return false;
        };
        let started = Instant::now();
        let Ok(doc) = serde_json::to_vec(&Held {
            holder: lease.holder.clone(),
            token: lease.token,
            until_ms: now_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
        }) else {
            return false;
        };
        match self
            .bucket
            .swap(encode(&lease.name), Bytes::from(doc), Expect::Revision(rev))
        {
            Ok(Swap::Done(new)) => {
                self.held.lock().insert(
                    lease.name.clone(),
                    (lease.holder.clone(), lease.token, new, started + ttl),
                );
                true
            }
            Ok(Swap::Conflict) => {
                self.held.lock().remove(&lease.name);
                false
            }
            Err(e) => {
                tracing::warn!(lease = %lease.name, "cannot reach the cluster's leases: {e}");
                false
            }
        }
    }

    fn release(&self, lease: &Lease) {
        let mine = {
            let mut held = self.held.lock();
            match held.get(&lease.name) {
                Some((h, t, rev, _)) if *h == lease.holder && *t == lease.token => {
                    let rev = *rev;
                    held.remove(&lease.name);
                    Some(rev)
                }
                _ => None,
            }
        };
        if let Some(rev) = mine
            && let Err(e) = self.bucket.delete(encode(&lease.name), Some(rev))
        {
            tracing::warn!(lease = %lease.name, "cannot release the lease (it expires by itself): {e}");
        }
    }
}
