//! What the broker exports at `GET /metrics`, in the Prometheus text format
//! (version 0.0.4), through `prometheus-client`.
//!
//! Counters and gauges that the broker moves as things happen (refusals,
//! connections, deliveries, hook retries, sync latency) are registered
//! once; per-topic and per-group figures are read from the topics at each
//! scrape, so a topic costs nothing between scrapes.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use fanlog_broker::{Broker, TopicFigures, WeakBroker};

/// The metrics of a broker: one set per broker, made on first use and
/// shared by every server over it.
pub trait MetricsExt {
    /// This broker's metrics.
    fn metrics(&self) -> Arc<Metrics>;
}

impl MetricsExt for Broker {
    fn metrics(&self) -> Arc<Metrics> {
        self.extension(Metrics::new)
    }
}

/// The consumer groups that hold hooks' cursors start with this.
pub(crate) const HOOK_GROUP_PREFIX: &str = "_hooks.";

/// Labels of a refusal: the interface (`binary`, `http`) and the reason
/// (the protocol's error code, or the HTTP status).
type RefusalLabels = [(&'static str, String); 2];
/// Label of a transport: `tcp`, `quic`, `http`, `sse`, `ws`, `poll`,
/// `webhook`.
type TransportLabel = [(&'static str, &'static str); 1];

/// The broker's metrics. One per broker; every clone of a counter is the
/// same counter.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    refusals: Family<RefusalLabels, Counter>,
    connections: Family<TransportLabel, Gauge>,
    deliveries: Family<TransportLabel, Counter>,
    hook_retries: Counter,
}

impl Metrics {
    /// Registers the metrics of `broker`: the figures of its topics read at
    /// each scrape, and the time of each of its syncs. Use
    /// [`MetricsExt::metrics`], which makes one per broker.
    fn new(broker: &Broker) -> Self {
        let mut registry = Registry::with_prefix("fanlog");
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "refusals",
            "Requests refused, by interface and reason",
            refusals.clone(),
        );
        let connections = Family::<TransportLabel, Gauge>::default();
        registry.register(
            "connections",
            "Open connections (tcp, tls, quic, http) and streams (sse, ws), by transport",
            connections.clone(),
        );
        let deliveries = Family::<TransportLabel, Counter>::default();
        registry.register(
            "deliveries",
            "Messages delivered to subscribers, by transport",
            deliveries.clone(),
        );
        let hook_retries = Counter::default();
        registry.register(
            "hook_retries",
            "Webhook and WebSub deliveries that failed and will be tried again",
            hook_retries.clone(),
        );
        // 50 us to ~1.6 s.
        let fsync = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "fsync_seconds",
            "Time one sync (fdatasync) of a topic took",
            fsync.clone(),
        );
        let observed = fsync.clone();
        broker.on_sync(move |took| observed.observe(took.as_secs_f64()));
        registry.register_collector(Box::new(TopicCollector {
            broker: broker.downgrade(),
        }));
        Self {
            registry,
            refusals,
            connections,
            deliveries,
            hook_retries,
        }
    }

    /// Counts one refusal.
    pub fn refused(&self, interface: &'static str, reason: impl Into<String>) {
        self.refusals
            .get_or_create(&[
                ("interface", interface.to_owned()),
                ("reason", reason.into()),
            ])
            .inc();
    }

    /// The count of one kind of refusal.
    #[must_use]
    pub fn refusals(&self, interface: &str, reason: &str) -> u64 {
        self.refusals
            .get(&[
                ("interface", interface.to_owned()),
                ("reason", reason.to_owned()),
            ])
            .map_or(0, |c| c.get())
    }

    /// Counts an open connection or stream of `transport` until the guard
    /// is dropped.
    #[must_use]
    pub fn connection(&self, transport: &'static str) -> ConnectionGuard {
        let gauge = self
            .connections
            .get_or_create_owned(&[("transport", transport)]);
        gauge.inc();
        ConnectionGuard { gauge }
    }

    /// Open connections or streams of `transport`.
    #[must_use]
    pub fn connections(&self, transport: &'static str) -> i64 {
        self.connections
            .get(&[("transport", transport)])
            .map_or(0, |g| g.get())
    }

    /// The counter of messages delivered over `transport`, for a
    /// connection to keep and bump without a lookup.
    #[must_use]
    pub fn delivery_counter(&self, transport: &'static str) -> Counter {
        self.deliveries
            .get_or_create_owned(&[("transport", transport)])
    }

    /// Messages delivered over `transport`.
    #[must_use]
    pub fn deliveries(&self, transport: &'static str) -> u64 {
        self.deliveries
            .get(&[("transport", transport)])
            .map_or(0, |c| c.get())
    }

    /// Counts a hook delivery that failed and will be retried.
    pub fn hook_retry(&self) {
        self.hook_retries.inc();
    }

    /// Everything, in the Prometheus text format (version 0.0.4).
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// The `Content-Type` of [`Metrics::render`].
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// An open connection or stream, counted until dropped.
#[derive(Debug)]
pub struct ConnectionGuard {
    gauge: Gauge,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Per-topic and per-group figures, read at each scrape.
#[derive(Debug)]
struct TopicCollector {
    /// Weak: the broker holds its metrics.
    broker: WeakBroker,
}

impl Collector for TopicCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let topics = self
            .broker
            .upgrade()
            .map(|b| b.open_topic_figures())
            .unwrap_or_default();
        let label = |t: &TopicFigures| [("topic", t.info.name.as_str().to_owned())];

        type Read = fn(&TopicFigures) -> u64;
        let counters: [(&str, &str, Read); 3] = [
            (
                "topic_messages_in",
                "Messages appended to a topic since the broker started",
                |t| t.messages_in,
            ),
            (
                "topic_bytes_in",
                "Payload bytes appended to a topic since the broker started",
                |t| t.bytes_in,
            ),
            (
                "topic_corrupt_reads",
                "Records refused to a reader because they failed their checksum (bit rot on disk)",
                |t| t.corrupt_reads,
            ),
        ];
        encode_each(&mut encoder, Kind::Counter, &counters, &topics, label)?;
        let gauges: [(&str, &str, Read); 4] = [
            (
                "topic_next_seq",
                "The seq the next message of a topic will get",
                |t| t.info.next_seq,
            ),
            (
                "topic_first_seq",
                "The first seq a topic still stores",
                |t| t.info.first_seq,
            ),
            (
                "topic_bytes",
                "Bytes of records a topic stores on disk",
                |t| t.info.bytes,
            ),
            (
                "topic_quarantined_records",
                "Records that failed their checksum when the topic was opened: kept on disk, served as a gap",
                |t| t.quarantined_records,
            ),
        ];
        encode_each(&mut encoder, Kind::Gauge, &gauges, &topics, label)?;
        // Lag per consumer group; a hook's cursor is group `_hooks.ID`, so
        // hooks are shown twice: as that group and by their own id.
        let lags: Vec<(String, String, i64)> = topics
            .iter()
            .flat_map(|t| {
                t.groups.iter().map(move |(g, committed)| {
                    (
                        t.info.name.as_str().to_owned(),
                        g.as_str().to_owned(),
                        t.info.next_seq.saturating_sub(*committed) as i64,
                    )
                })
            })
            .collect();
        let mut family = encoder.encode_descriptor(
            "group_lag",
            "Messages of a topic past a consumer group's committed offset",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (topic, group, lag) in &lags {
            let labels = [("topic", topic.clone()), ("group", group.clone())];
            ConstGauge::new(*lag).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "hook_lag",
            "Messages of a topic past a webhook's or WebSub subscription's cursor",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (topic, group, lag) in &lags {
            if let Some(hook) = group.strip_prefix(HOOK_GROUP_PREFIX) {
                let labels = [("topic", topic.clone()), ("hook", hook.to_owned())];
                ConstGauge::new(*lag).encode(family.encode_family(&labels)?)?;
            }
        }
        self.encode_shared(&mut encoder)
    }
}

impl TopicCollector {
    /// The work-sharing groups running now (docs/shared-groups.md).
    fn encode_shared(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        use fanlog_broker::work::GroupInfo;
        let groups: Vec<GroupInfo> = self
            .broker
            .upgrade()
            .map(|b| {
                fanlog_broker::work::running(&b)
                    .iter()
                    .map(fanlog_broker::work::SharedGroup::info)
                    .collect()
            })
            .unwrap_or_default();
        type Read = fn(&GroupInfo) -> u64;
        let gauges: [(&str, &str, Read); 6] = [
            (
                "shared_group_pending",
                "Records of a work-sharing group from its floor to the topic's end not settled yet",
                |g| g.pending,
            ),
            (
                "shared_group_in_flight",
                "Records a work-sharing group has handed out and not settled",
                |g| g.in_flight as u64,
            ),
            (
                "shared_group_waiting_for_retry",
                "Records of a work-sharing group due for another delivery",
                |g| g.waiting_for_retry as u64,
            ),
            (
                "shared_group_members",
                "Workers joined to a work-sharing group",
                |g| g.members as u64,
            ),
            (
                "shared_group_floor",
                "A work-sharing group's floor: every seq below it is settled",
                |g| g.floor,
            ),
            (
                "shared_group_oldest_unacked_seconds",
                "Age of a work-sharing group's oldest record not settled (0 when none)",
                |g| g.oldest_unacked_ms.unwrap_or(0) / 1000,
            ),
        ];
        let label = |g: &GroupInfo| [("topic", g.topic.clone()), ("group", g.group.clone())];
        encode_each(encoder, Kind::Gauge, &gauges, &groups, label)?;
        let counters: [(&str, &str, Read); 2] = [
            (
                "shared_group_redelivered",
                "Deliveries of a work-sharing group's records after the first, since the group started running",
                |g| g.redelivered,
            ),
            (
                "shared_group_dead_lettered",
                "Records a work-sharing group set aside in its dead-letter topic, since the group started running",
                |g| g.dead_lettered,
            ),
        ];
        encode_each(encoder, Kind::Counter, &counters, &groups, label)
    }
}

/// A figure: its name, its help, how to read it of one item.
type Figure<'a, T> = (&'a str, &'a str, fn(&T) -> u64);

/// Whether the figures [`encode_each`] writes are counters or gauges.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// One metric family per `(name, help, read)`, each with a sample per
/// item, labelled by `label`: the per-topic and per-group figures read at
/// a scrape.
fn encode_each<T, const L: usize>(
    encoder: &mut DescriptorEncoder<'_>,
    kind: Kind,
    metrics: &[Figure<'_, T>],
    items: &[T],
    label: impl Fn(&T) -> [(&'static str, String); L],
) -> Result<(), std::fmt::Error> {
    let ty = match kind {
        Kind::Counter => prometheus_client::metrics::MetricType::Counter,
        Kind::Gauge => prometheus_client::metrics::MetricType::Gauge,
    };
    for (name, help, read) in metrics {
        let mut family = encoder.encode_descriptor(name, help, None, ty)?;
        for item in items {
            let labels = label(item);
            let sample = family.encode_family(&labels)?;
            match kind {
                Kind::Counter => ConstCounter::new(read(item)).encode(sample)?,
                Kind::Gauge => ConstGauge::new(read(item) as i64).encode(sample)?,
            }
        }
    }
    Ok(())
}
