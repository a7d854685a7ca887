//! One hook's delivery loop: read the next record at the cursor, POST it
//! until it is accepted, commit, repeat.

use crate::MetricsExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::sign::Secret;
use super::store::{Delivery, HookSpec};
use super::{Hooks, Status, group};
use crate::cloudevents;
use fanlog_broker::Record;
use fanlog_broker::{Event, StartFrom};

/// How deliveries are authenticated.
pub(super) enum Signer {
    /// Standard Webhooks headers: the current secret, then rotated ones
    /// with the end of their grace period (ms since the epoch).
    Webhook(Vec<(Secret, Option<u64>)>),
    /// WebSub: `Link` headers, and `X-Hub-Signature` with `hub.secret`.
    WebSub(Option<Vec<u8>>),
}

pub(super) struct Job {
    pub(super) hooks: Hooks,
    pub(super) spec: HookSpec,
    pub(super) signer: Signer,
    pub(super) status: Arc<Mutex<Status>>,
    pub(super) stop: CancellationToken,
}

/// How the attempts at one message ended.
enum Outcome {
    Delivered,
    /// 410: the receiver asked for the hook to go.
    Gone,
    /// No success for `disable_after`.
    Disabled,
    /// Still failing after the retry schedule, on a hook that sets such
    /// messages aside: the last error, and the attempts made.
    GaveUp(String, u32),
    Stopped,
}

/// How long a hook's delivery lease lasts by default
/// ([`super::HooksConfig::delivery_lease`]); its owner renews it every
/// third of that.
pub const LEASE_TTL: Duration = Duration::from_secs(10);

/// The name of hook `id`'s delivery lease in the broker's leases.
pub fn lease_name(id: &str) -> String {
    format!("hooks/{id}")
}

/// This process, as a lease holder.
fn node() -> &'static str {
    static NODE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NODE.get_or_init(|| format!("node-{:016x}", rand::random::<u64>()))
}

/// The ownership of one hook's deliveries: one owner at a time delivers a
/// hook and moves its cursor, whether the other would-be owner is another
/// process sharing the storage or this hook's previous worker still
/// finishing after a restart. Released when dropped.
struct Owner {
    broker: fanlog_broker::Broker,
    name: String,
    /// This worker, as a lease holder: the process and a number of its own,
    /// so that a restarted hook's new worker waits for the old one.
    holder: String,
    lease: Option<fanlog_broker::storage::Lease>,
    renew_at: Instant,
    /// The lease's time to live.
    ttl: Duration,
}

impl Owner {
    /// Waits until this process holds the lease (renewing it if it does);
    /// false when stopped first.
    async fn acquire(&mut self, status: &Mutex<Status>, stop: &CancellationToken) -> bool {
        let mut wait = Duration::from_millis(10);
        loop {
            // A cluster's leases are a network round trip: off the runtime.
            let (broker, name, holder) =
                (self.broker.clone(), self.name.clone(), self.holder.clone());
            let ttl = self.ttl;
            let got =
                tokio::task::spawn_blocking(move || broker.leases().acquire(&name, &holder, ttl))
                    .await
                    .ok()
                    .flatten();
            if let Some(l) = got {
                self.lease = Some(l);
                self.renew_at = Instant::now() + self.ttl / 3;
                return true;
            }
            self.lease = None;
            status.lock().last_error = Some("another worker owns this hook's deliveries".into());
            if pause(stop, wait).await {
                return false;
            }
            // Waiting edges look at least once a second, so a dead
            // owner's hooks move within the lease's time to live + 1 s.
            wait = (wait * 2).min(Duration::from_secs(1));
        }
    }

    /// Whether the lease still holds, as this process knows it.
    fn holds(&self) -> bool {
        self.lease
            .as_ref()
            .is_some_and(|l| self.broker.leases().holds(l))
    }

    /// Whether the lease still holds, as the lease store says: checked
    /// right before the cursor moves. In a cluster this is a write that
    /// succeeds only if nobody took the lease since (a compare-and-swap),
    /// so an owner that stalled past its lease has its cursor write
    /// refused even if its own clock has not noticed.
    async fn fence(&self) -> bool {
        let Some(l) = self.lease.clone() else {
            return false;
        };
        let (broker, ttl) = (self.broker.clone(), self.ttl);
        tokio::task::spawn_blocking(move || broker.leases().fence(&l, ttl))
            .await
            .unwrap_or(false)
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        if let Some(l) = &self.lease {
            self.broker.leases().release(l);
        }
    }
}

pub(super) async fn run(job: Job) {
    let id = job.spec.id.clone();
    let group = group(&id);
    let broker = job.hooks.inner.broker.clone();
    let delivered = broker.metrics().delivery_counter("webhook");
    let Ok(group_name) = fanlog_broker::GroupName::new(group.as_str()) else {
        tracing::error!(hook = %id, "bad hook id");
        return;
    };
    // Names are checked by the client's resolver on every connection; an
    // address in the URL never reaches it, so it is checked here, against
    // this run's allow-list.
    if let Some(ip) = literal_ip(&job.spec.url)
        && !job.hooks.inner.guard.permits(ip)
    {
        job.status.lock().last_error = Some(format!(
            "{ip} is refused by the SSRF guard (not in --allow-hook-target): hook disabled"
        ));
        job.hooks.disable(&id);
        return;
    }
    // A WebSub lease ends the subscription.
    let lease_end = job
        .spec
        .websub
        .as_ref()
        .map(|w| Instant::now() + super::websub::lease_left(w));
    let expired = async move {
        match lease_end {
            Some(t) => tokio::time::sleep_until(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);
    let mut last_sent: Option<Instant> = None;
    let mut owner = Owner {
        broker: broker.clone(),
        name: lease_name(&id),
        holder: format!("{}/{:016x}", node(), rand::random::<u64>()),
        lease: None,
        renew_at: Instant::now(),
        ttl: job.hooks.inner.config.delivery_lease,
    };
    if let Some(lanes) = job.spec.lanes {
        return run_lanes(&job, &mut owner, expired, lanes as usize, &delivered).await;
    }
    'subscribe: loop {
        if !owner.holds() && !owner.acquire(&job.status, &job.stop).await {
            return;
        }
        // An idle topic is reopened on the blocking pool; the subscribe
        // below reports any failure.
        let _ = broker.ready(&job.spec.topic, true).await;
        // Verified: a receiver cannot check a record's checksum.
        let mut sub = match broker
            .subscribe(&job.spec.topic, StartFrom::Group(group_name.to_string()))
            .map(fanlog_broker::Subscription::verified)
        {
            Ok(s) => s,
            Err(e) => {
                job.status.lock().last_error = Some(e.to_string());
                if pause(&job.stop, Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
        };
        loop {
            let ev = tokio::select! {
                () = job.stop.cancelled() => return,
                () = tokio::time::sleep_until(owner.renew_at) => {
                    if !owner.acquire(&job.status, &job.stop).await {
                        return;
                    }
                    continue;
                }
                () = &mut expired => {
                    tracing::info!(hook = %id, "WebSub lease ended");
                    if let Err(e) = job.hooks.delete(&id) {
                        tracing::error!(hook = %id, "cannot delete: {e}");
                    }
                    return;
                }
                ev = sub.next() => ev,
            };
            let next = match ev {
                Some(Ok(Event::Record(r))) => {
                    let rate = job.spec.rate_limit.or(job.hooks.inner.config.rate_limit);
                    if let (Some(rate), Some(t)) = (rate, last_sent) {
                        let gap = Duration::from_secs_f64(1.0 / rate.max(1e-6));
                        tokio::select! {
                            () = job.stop.cancelled() => return,
                            () = tokio::time::sleep_until(t + gap) => {}
                        }
                    }
                    last_sent = Some(Instant::now());
                    let mut records = vec![r];
                    let mut gap_after = None;
                    if job.spec.delivery == Delivery::Batch {
                        gather(&mut sub, &mut records, &mut gap_after);
                    }
                    let last = records.last().map_or(0, Record::seq);
                    let first = records.first().map_or(0, Record::seq);
                    let msg_id = if first == last {
                        format!("{}:{first}", job.spec.topic)
                    } else {
                        format!("{}:{first}-{last}", job.spec.topic)
                    };
                    let shaped = if job.spec.delivery == Delivery::Batch {
                        shape_batch(&job.spec, &records)
                    } else {
                        shape(&job.spec, &records[0])
                    };
                    let outcome = match shaped {
                        Some(shaped) => {
                            let outcome = deliver(&job, &msg_id, shaped).await;
                            if matches!(outcome, Outcome::Delivered) {
                                delivered.inc_by(records.len() as u64);
                            }
                            outcome
                        }
                        None => Outcome::Delivered,
                    };
                    match outcome {
                        Outcome::Delivered => match gap_after {
                            // A gap found while gathering comes after the
                            // batch: its end is the next position.
                            Some((from, to)) => {
                                job.status.lock().last_error = Some(format!(
                                    "messages {from}..{to} were removed by retention before delivery"
                                ));
                                to
                            }
                            None => last + 1,
                        },
                        Outcome::Gone => {
                            tracing::info!(hook = %id, "the receiver answered 410 Gone: hook deleted");
                            if let Err(e) = job.hooks.delete(&id) {
                                tracing::error!(hook = %id, "cannot delete: {e}");
                            }
                            return;
                        }
                        Outcome::Disabled => {
                            tracing::warn!(hook = %id, "no successful delivery for too long: hook disabled");
                            job.hooks.disable(&id);
                            return;
                        }
                        Outcome::GaveUp(error, attempts) => {
                            // Set aside (durably) before the cursor moves
                            // past them; a failure to do so retries them.
                            let dead: Vec<_> = records
                                .iter()
                                .map(|r| {
                                    fanlog_broker::work::dead_letter(
                                        &job.spec.topic,
                                        r,
                                        attempts,
                                        &error,
                                    )
                                })
                                .collect();
                            let topic = job.spec.dead_letter_topic();
                            if let Err(e) = broker.publish_batch(&topic, &dead).await {
                                job.status.lock().last_error =
                                    Some(format!("cannot set messages aside in {topic}: {e}"));
                                if pause(&job.stop, Duration::from_secs(1)).await {
                                    return;
                                }
                                continue 'subscribe;
                            }
                            last + 1
                        }
                        Outcome::Stopped => return,
                    }
                }
                Some(Ok(Event::Gap { from, to })) => {
                    job.status.lock().last_error = Some(format!(
                        "messages {from}..{to} were removed by retention before delivery"
                    ));
                    to
                }
                Some(Err(e)) => {
                    job.status.lock().last_error = Some(e.to_string());
                    if pause(&job.stop, Duration::from_secs(1)).await {
                        return;
                    }
                    continue 'subscribe;
                }
                None => return,
            };
            if !owner.holds() || !owner.fence().await {
                // Lost (this process stalled past the lease): the cursor is
                // not moved; deliveries resume from it once owned again.
                job.status.lock().last_error =
                    Some("the delivery lease was lost: cursor not moved".into());
                continue 'subscribe;
            }
            if let Err(e) = broker.commit(&job.spec.topic, &group, next).await {
                // The subscription goes on; the commit is retried with the
                // next message, and a restart re-sends from the last one.
                tracing::error!(hook = %id, "cannot commit the hook's cursor: {e}");
                job.status.lock().last_error = Some(format!("cannot commit the cursor: {e}"));
            }
        }
    }
}

/// A hook with per-key lanes: its cursor group is a work-sharing group
/// with key order ([`fanlog_broker::work`]) of which this loop is the one
/// worker, delivering up to `lanes` messages at once. Messages of one key
/// go one at a time, in seq order; other keys (and messages without a
/// key) go on meanwhile, so one slow key holds back only itself. The
/// cursor is the group's floor: every message below it was delivered (or
/// set aside).
async fn run_lanes(
    job: &Job,
    owner: &mut Owner,
    mut expired: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    lanes: usize,
    delivered: &prometheus_client::metrics::counter::Counter,
) {
    use fanlog_broker::shared::SharedOptions;
    use fanlog_broker::work::{SharedGroup, Worker};
    use futures_util::stream::FuturesUnordered;

    type Attempt<'a> =
        std::pin::Pin<Box<dyn std::future::Future<Output = (u64, Outcome)> + Send + 'a>>;
    type Fetching = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = fanlog_broker::Result<Vec<fanlog_broker::work::Job>>>
                + Send,
        >,
    >;
    fn fetching(w: &Arc<Worker>, room: usize) -> Fetching {
        let w = w.clone();
        Box::pin(async move { w.next_jobs(room, Duration::from_secs(1)).await })
    }

    let id = &job.spec.id;
    let broker = job.hooks.inner.broker.clone();
    let options = SharedOptions {
        // The one worker is this loop: nothing is taken from it while it
        // runs, and a restart delivers again what was in flight.
        ack_wait: Duration::from_secs(365 * 24 * 3600),
        // `deliver` retries a message itself, and a hook that gives up on
        // one sets it aside itself: the group never buries anything.
        max_deliver: u32::MAX,
        max_inflight: lanes,
        key_order: true,
    };
    let mut last_sent: Option<Instant> = None;
    loop {
        if !owner.holds() && !owner.acquire(&job.status, &job.stop).await {
            return;
        }
        let _ = broker.ready(&job.spec.topic, true).await;
        let opened = SharedGroup::open_async(
            &broker,
            &job.spec.topic,
            &group(id),
            Some(options),
            Some(&job.spec.dead_letter_topic()),
            Duration::ZERO,
        )
        .await;
        let worker = match opened {
            Ok(g) => Arc::new(g.join()),
            Err(e) => {
                // Also a restarted hook whose previous loop has not let go
                // of the group yet.
                job.status.lock().last_error = Some(e.to_string());
                if pause(&job.stop, Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
        };
        let mut running: FuturesUnordered<Attempt<'_>> = FuturesUnordered::new();
        let mut next: Option<Fetching> = Some(fetching(&worker, lanes));
        loop {
            let room = lanes.saturating_sub(running.len());
            if next.is_none() && room > 0 {
                next = Some(fetching(&worker, room));
            }
            tokio::select! {
                () = job.stop.cancelled() => return,
                () = tokio::time::sleep_until(owner.renew_at) => {
                    if !owner.acquire(&job.status, &job.stop).await {
                        return;
                    }
                }
                () = &mut expired => {
                    tracing::info!(hook = %id, "WebSub lease ended");
                    if let Err(e) = job.hooks.delete(id) {
                        tracing::error!(hook = %id, "cannot delete: {e}");
                    }
                    return;
                }
                jobs = async { next.as_mut().expect("a fetch").await }, if next.is_some() => {
                    next = None;
                    let jobs = match jobs {
                        Ok(jobs) => jobs,
                        Err(e) => {
                            job.status.lock().last_error = Some(e.to_string());
                            if pause(&job.stop, Duration::from_secs(1)).await {
                                return;
                            }
                            break;
                        }
                    };
                    for j in jobs {
                        let rate = job.spec.rate_limit.or(job.hooks.inner.config.rate_limit);
                        if let (Some(rate), Some(t)) = (rate, last_sent) {
                            let gap = Duration::from_secs_f64(1.0 / rate.max(1e-6));
                            tokio::select! {
                                () = job.stop.cancelled() => return,
                                () = tokio::time::sleep_until(t + gap) => {}
                            }
                        }
                        last_sent = Some(Instant::now());
                        let seq = j.record.seq();
                        running.push(Box::pin(async move {
                            let outcome = match shape(&job.spec, &j.record) {
                                Some(shaped) => {
                                    deliver(job, &format!("{}:{seq}", job.spec.topic), shaped).await
                                }
                                None => Outcome::Delivered,
                            };
                            (seq, outcome)
                        }));
                    }
                }
                Some((seq, outcome)) = running.next(), if !running.is_empty() => {
                    let settled = match outcome {
                        Outcome::Delivered => {
                            delivered.inc();
                            worker.ack(seq).await
                        }
                        Outcome::GaveUp(error, attempts) => {
                            // Set aside durably, then settled like a
                            // delivery (the same copy as a topic-ordered
                            // hook makes); on failure it is tried again.
                            match set_aside(job, seq, attempts, &error).await {
                                Ok(()) => worker.ack(seq).await,
                                Err(e) => worker.nack(seq, Duration::from_secs(1), &e).await,
                            }
                        }
                        Outcome::Gone => {
                            tracing::info!(hook = %id, "the receiver answered 410 Gone: hook deleted");
                            if let Err(e) = job.hooks.delete(id) {
                                tracing::error!(hook = %id, "cannot delete: {e}");
                            }
                            return;
                        }
                        Outcome::Disabled => {
                            tracing::warn!(hook = %id, "no successful delivery for too long: hook disabled");
                            job.hooks.disable(id);
                            return;
                        }
                        Outcome::Stopped => return,
                    };
                    if let Err(e) = settled {
                        tracing::error!(hook = %id, seq, "cannot settle a delivery: {e}");
                        job.status.lock().last_error = Some(format!("cannot move the cursor: {e}"));
                    }
                }
            }
            if !owner.holds() {
                // Lost the lease: what is in flight is dropped and
                // delivered again once owned (at most once more each).
                job.status.lock().last_error =
                    Some("the delivery lease was lost: deliveries paused".into());
                break;
            }
        }
    }
}

/// Publishes the record at `seq` to the hook's dead-letter topic; the
/// error says why not.
async fn set_aside(job: &Job, seq: u64, attempts: u32, error: &str) -> Result<(), String> {
    let broker = &job.hooks.inner.broker;
    let batch = broker
        .read(&job.spec.topic, seq, 1)
        .map_err(|e| e.to_string())?;
    let Some(r) = batch.records.first().filter(|r| r.seq() == seq) else {
        // Removed by retention meanwhile: nothing to set aside.
        return Ok(());
    };
    let m = fanlog_broker::work::dead_letter(&job.spec.topic, r, attempts, error);
    let topic = job.spec.dead_letter_topic();
    broker
        .publish(&topic, m)
        .await
        .map(drop)
        .map_err(|e| format!("cannot set message {seq} aside in {topic}: {e}"))
}

/// The IP address a URL names directly, if it does.
fn literal_ip(url: &str) -> Option<std::net::IpAddr> {
    match reqwest::Url::parse(url).ok()?.host()? {
        url::Host::Ipv4(ip) => Some(ip.into()),
        url::Host::Ipv6(ip) => Some(ip.into()),
        url::Host::Domain(_) => None,
    }
}

/// Sleeps unless stopped first; true when stopped.
async fn pause(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(d) => false,
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// An error with its causes, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// Reads and drops up to 64 KiB of a response body, so that the connection
/// can be reused; a longer body closes it.
async fn drain(resp: reqwest::Response) {
    let mut body = resp.bytes_stream();
    let mut seen = 0usize;
    while let Some(Ok(chunk)) = body.next().await {
        seen += chunk.len();
        if seen > 64 << 10 {
            return;
        }
    }
}

/// What one delivery of a record sends.
struct Shaped {
    body: Bytes,
    content_type: String,
    /// `ce-*` headers in binary mode.
    headers: Vec<(String, String)>,
}

/// CloudEvents attributes, names without the `ce-` prefix.
type Attributes = Vec<(String, String)>;

/// The CloudEvents attributes of `r` and its type (none for a plain
/// message), or `None` when the hook's type filter passes over it.
fn attributes(spec: &HookSpec, r: &Record) -> Option<(Attributes, Option<String>)> {
    let attrs = cloudevents::attributes(&stored_headers(r));
    let ty = attrs
        .iter()
        .find(|(n, _)| n == "type")
        .map(|(_, v)| v.clone());
    let wanted = spec.types.is_empty() || ty.as_ref().is_some_and(|t| spec.types.contains(t));
    wanted.then_some((attrs, ty))
}

/// The request body and headers for `r`, or `None` when the hook's type
/// filter passes over it.
fn shape(spec: &HookSpec, r: &Record) -> Option<Shaped> {
    let (mut attrs, ty) = attributes(spec, r)?;
    let content_type = r.content_type();
    if ty.is_none() {
        return Some(Shaped {
            body: Bytes::copy_from_slice(r.payload()),
            content_type: content_type
                .unwrap_or("application/octet-stream")
                .to_owned(),
            headers: Vec::new(),
        });
    }
    attrs.retain(|(n, _)| n != "sequence");
    attrs.push(("sequence".into(), cloudevents::sequence(r.seq())));
    Some(match spec.delivery {
        Delivery::Binary => Shaped {
            body: Bytes::copy_from_slice(r.payload()),
            content_type: content_type
                .unwrap_or("application/octet-stream")
                .to_owned(),
            headers: attrs
                .into_iter()
                .map(|(n, v)| {
                    (
                        format!("{}{n}", cloudevents::PREFIX),
                        cloudevents::encode_header_value(&v),
                    )
                })
                .collect(),
        },
        Delivery::Structured | Delivery::Batch => Shaped {
            body: Bytes::from(cloudevents::structured_with_kinds(
                &attrs,
                &cloudevents::attribute_kinds(&stored_headers(r)),
                content_type,
                r.payload(),
            )),
            content_type: cloudevents::STRUCTURED.to_owned(),
            headers: Vec::new(),
        },
    })
}

/// Most events in one batch delivery, and about the most bytes.
const BATCH_EVENTS: usize = 100;
const BATCH_BYTES: usize = 1 << 20;

/// Adds the records that are available now to `records`, up to a batch;
/// a gap met on the way ends the batch and is handed back.
fn gather(
    sub: &mut fanlog_broker::Subscription,
    records: &mut Vec<Record>,
    gap_after: &mut Option<(u64, u64)>,
) {
    let mut bytes: usize = records.iter().map(|r| r.payload().len()).sum();
    while records.len() < BATCH_EVENTS && bytes < BATCH_BYTES {
        match sub.try_next() {
            Ok(Some(Event::Record(r))) => {
                bytes += r.payload().len();
                records.push(r);
            }
            Ok(Some(Event::Gap { from, to })) => {
                *gap_after = Some((from, to));
                return;
            }
            // Caught up, or an error the next read reports again.
            Ok(None) | Err(_) => return,
        }
    }
}

/// One `application/cloudevents-batch+json` body for `records` (those the
/// type filter keeps); a message that is not a CloudEvent goes in as one
/// of type `fanlog.message` with source `/topics/{topic}`.
fn shape_batch(spec: &HookSpec, records: &[Record]) -> Option<Shaped> {
    let mut events = Vec::with_capacity(records.len());
    for r in records {
        let Some((mut attrs, ty)) = attributes(spec, r) else {
            continue;
        };
        if ty.is_none() {
            attrs = vec![
                ("specversion".into(), "1.0".into()),
                ("id".into(), format!("{}:{}", spec.topic, r.seq())),
                ("source".into(), format!("/topics/{}", spec.topic)),
                ("type".into(), "fanlog.message".into()),
            ];
        }
        attrs.retain(|(n, _)| n != "sequence");
        attrs.push(("sequence".into(), cloudevents::sequence(r.seq())));
        let event = cloudevents::structured_with_kinds(
            &attrs,
            &cloudevents::attribute_kinds(&stored_headers(r)),
            r.content_type(),
            r.payload(),
        );
        events.push(serde_json::from_slice::<serde_json::Value>(&event).ok()?);
    }
    if events.is_empty() {
        return None;
    }
    Some(Shaped {
        body: Bytes::from(serde_json::to_vec(&events).ok()?),
        content_type: cloudevents::BATCH.to_owned(),
        headers: Vec::new(),
    })
}

fn stored_headers(r: &Record) -> Vec<(String, Vec<u8>)> {
    r.meta()
        .map(|m| {
            m.headers
                .iter()
                .map(|h| (h.name.as_str().to_owned(), h.value.as_slice().to_vec()))
                .collect()
        })
        .unwrap_or_default()
}

async fn deliver(job: &Job, msg_id: &str, shaped: Shaped) -> Outcome {
    let inner = &job.hooks.inner;
    let config = &inner.config;
    let Shaped {
        body,
        content_type,
        headers,
    } = shaped;
    let mut failing_since: Option<Instant> = None;
    let mut failures: usize = 0;
    loop {
        let ts = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut request = inner.client.post(job.spec.url.as_str());
        match (&job.signer, &job.spec.websub) {
            (Signer::WebSub(secret), Some(w)) => {
                request = request.header(
                    header::LINK,
                    format!(
                        "<{}>; rel=\"hub\", <{}>; rel=\"self\"",
                        w.hub_url, w.topic_url
                    ),
                );
                if let Some(key) = secret {
                    request =
                        request.header("x-hub-signature", super::websub::signature(key, &body));
                }
            }
            (Signer::Webhook(keys), _) => {
                let now_ms = super::now_ms();
                let signatures: Vec<String> = keys
                    .iter()
                    .filter(|(_, until)| until.is_none_or(|u| u > now_ms))
                    .map(|(k, _)| k.sign(msg_id, ts, &body))
                    .collect();
                request = request
                    .header("webhook-id", msg_id)
                    .header("webhook-timestamp", ts.to_string())
                    .header("webhook-signature", signatures.join(" "));
            }
            (Signer::WebSub(_), None) => {}
        }
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .header(header::CONTENT_TYPE, content_type.as_str())
            .body(body.clone());
        job.status.lock().last_attempt = Some(SystemTime::now());
        let sent = tokio::select! {
            () = job.stop.cancelled() => return Outcome::Stopped,
            sent = request.send() => sent,
        };
        let (status, wait_hint, error) = match sent {
            Ok(resp) => {
                let code = resp.status();
                let hint = match code {
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                        retry_after(resp.headers())
                    }
                    _ => None,
                };
                drain(resp).await;
                if code.is_success() {
                    let mut s = job.status.lock();
                    s.delivered += 1;
                    s.attempts = 0;
                    s.last_status = Some(code.as_u16());
                    s.last_error = None;
                    s.next_attempt = None;
                    return Outcome::Delivered;
                }
                if code == StatusCode::GONE {
                    return Outcome::Gone;
                }
                (
                    Some(code.as_u16()),
                    hint,
                    format!("the receiver answered {code}"),
                )
            }
            Err(e) => (None, None, chain(&e)),
        };
        failures += 1;
        if job.spec.dead_letter && failures > config.retry_schedule.len().max(1) {
            let mut s = job.status.lock();
            s.last_status = status;
            s.last_error = Some(format!(
                "{error}; set aside in {}",
                job.spec.dead_letter_topic()
            ));
            s.next_attempt = None;
            s.attempts = 0;
            return Outcome::GaveUp(error, u32::try_from(failures).unwrap_or(u32::MAX));
        }
        let since = *failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= config.disable_after {
            let mut s = job.status.lock();
            s.last_error = Some(format!("{error}; disabled"));
            s.next_attempt = None;
            return Outcome::Disabled;
        }
        let wait = wait_hint.unwrap_or_else(|| {
            let schedule = &config.retry_schedule;
            let base = schedule
                .get((failures - 1).min(schedule.len().saturating_sub(1)))
                .copied()
                .unwrap_or(Duration::from_secs(5));
            let j = config.jitter.clamp(0.0, 1.0);
            base.mul_f64(1.0 + rand::random_range(-j..=j))
        });
        {
            let mut s = job.status.lock();
            s.attempts = u32::try_from(failures).unwrap_or(u32::MAX);
            s.last_status = status;
            s.last_error = Some(error);
            s.next_attempt = Some(SystemTime::now() + wait);
        }
        job.hooks.inner.broker.metrics().hook_retry();
        if pause(&job.stop, wait).await {
            return Outcome::Stopped;
        }
    }
}

#[cfg(test)]
mod tests {

    /// A restarted hook's new worker waits for the old one to let go, and
    /// the old one letting go does not free the new one's lease.
    #[tokio::test]
    async fn a_new_worker_takes_the_lease_only_from_a_finished_one() {
        let dir = tempfile::tempdir().unwrap();
        let broker =
            fanlog_broker::Broker::open(dir.path(), fanlog_broker::BrokerConfig::default())
                .unwrap();
        let owner = |n: u64| Owner {
            broker: broker.clone(),
            name: lease_name("h1"),
            holder: format!("{}/{n}", node()),
            lease: None,
            renew_at: Instant::now(),
            ttl: LEASE_TTL,
        };
        let (status, stop) = (Mutex::new(Status::default()), CancellationToken::new());
        let mut old = owner(1);
        assert!(old.acquire(&status, &stop).await);
        let mut new = owner(2);
        let waited =
            tokio::time::timeout(Duration::from_millis(200), new.acquire(&status, &stop)).await;
        assert!(
            waited.is_err(),
            "the new worker waits while the old one holds"
        );
        drop(old);
        assert!(new.acquire(&status, &stop).await);
        assert!(new.holds());
        let other = broker.leases().acquire(&lease_name("h1"), "x", LEASE_TTL);
        assert!(other.is_none(), "held by the new worker");
    }

    use super::*;

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = SystemTime::now() + Duration::from_secs(120);
        h.insert(
            header::RETRY_AFTER,
            httpdate::fmt_http_date(later).parse().unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(110) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert(header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
