//! Settings of a topic's storage: durability, segment size, retention,
//! limits, and the overrides a topic may carry of its own.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// When an appended message becomes durable, and so what survives a crash.
///
/// Every mode survives a crash of the process alone (`kill -9`): appended
/// bytes are in the kernel's page cache the moment the append returns. The
/// modes differ in what survives a crash of the machine (power loss, kernel
/// panic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// A publish is acknowledged only after its bytes are on disk (msync),
    /// and readers see a message only once it is durable. Concurrent
    /// publishers share one sync (group commit).
    Always,
    /// A publish is acknowledged once in the log; a background flusher makes
    /// it durable within this interval. A machine crash loses at most the
    /// last interval.
    Interval(Duration),
    /// Syncing is left to the operating system (and to a clean shutdown).
    Never,
}

impl Default for Durability {
    fn default() -> Self {
        Durability::Interval(Duration::from_millis(100))
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Durability::Always => f.write_str("always"),
            Durability::Interval(d) => write!(f, "interval:{}", d.as_millis()),
            Durability::Never => f.write_str("never"),
        }
    }
}

/// A `--fsync` value that is not `always`, `interval:MS` or `never`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid durability {0:?}: expected always, interval:MS (MS >= 1) or never")]
pub struct ParseDurabilityError(String);

impl FromStr for Durability {
    type Err = ParseDurabilityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(Durability::Always),
            "never" => Ok(Durability::Never),
            _ => s
                .strip_prefix("interval:")
                .and_then(|ms| ms.parse::<u64>().ok())
                .filter(|ms| *ms >= 1)
                .map(|ms| Durability::Interval(Duration::from_millis(ms)))
                .ok_or_else(|| ParseDurabilityError(s.to_owned())),
        }
    }
}

/// Settings of one topic's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    /// Size of a segment file; the active segment rolls when a record does not fit.
    pub segment_bytes: u64,
    /// Largest message accepted: payload + key + metadata, in bytes.
    pub max_message_bytes: usize,
    /// Remove the oldest sealed segments while the topic holds more than this.
    pub retention_bytes: Option<u64>,
    /// Remove sealed segments whose newest message is older than this.
    pub retention_age: Option<Duration>,
    /// What an acknowledgement promises.
    pub durability: Durability,
    /// How long a producer id + sequence or an idempotency key is remembered.
    pub dedupe_window: Duration,
    /// At most this many remembered identities per topic (oldest forgotten first).
    pub dedupe_max_entries: usize,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            max_message_bytes: 1 << 20,
            retention_bytes: None,
            retention_age: None,
            durability: Durability::default(),
            dedupe_window: Duration::from_secs(120),
            dedupe_max_entries: 100_000,
        }
    }
}

/// Largest per-record overhead besides payload, key and metadata: header,
/// producer block and padding.
pub(crate) const RECORD_OVERHEAD: usize = fanlog_protocol::record::HEADER_LEN
    + fanlog_protocol::record::PRODUCER_LEN
    + fanlog_protocol::record::RECORD_ALIGN;

impl TopicConfig {
    /// Checks that the settings fit together.
    ///
    /// # Errors
    /// A message naming the setting that is out of range.
    pub fn validate(&self) -> Result<(), String> {
        if self.segment_bytes < 4096 || self.segment_bytes > u32::MAX as u64 {
            return Err(format!(
                "segment_bytes {} is outside 4096..=4294967295",
                self.segment_bytes
            ));
        }
        if self.max_message_bytes == 0
            || (self.max_message_bytes + RECORD_OVERHEAD) as u64 > self.segment_bytes
        {
            return Err(format!(
                "max_message_bytes {} must be at least 1 and fit a segment of {} bytes with {} bytes of record overhead",
                self.max_message_bytes, self.segment_bytes, RECORD_OVERHEAD
            ));
        }
        Ok(())
    }
}

/// Settings that a topic pattern (or a topic created with settings)
/// overrides; `None` keeps the value the topic would have without it (the
/// broker's default, or a less specific pattern's).
///
/// The one written form of a topic's settings, in the config file's
/// `[topics."PATTERN"]` tables, the body of `PUT /topics/{t}` and a topic's
/// `settings.json`: `fsync = "always"`, `retention_bytes = N`,
/// `retention_age = "7days"`, `segment_bytes = N`, `max_message_bytes = N`,
/// each optional; any other key is an error.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct TopicOverrides {
    /// See [`TopicConfig::durability`]: `always`, `interval:MS` or `never`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "always", default = json!(null), pattern = r"^(always|never|interval:[1-9][0-9]*)$"))]
    #[serde(
        rename = "fsync",
        with = "durability_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub durability: Option<Durability>,
    /// See [`TopicConfig::retention_bytes`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_bytes: Option<u64>,
    /// See [`TopicConfig::retention_age`]: a duration such as `7days`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "7days", default = json!(null)))]
    #[serde(with = "duration_text", skip_serializing_if = "Option::is_none")]
    pub retention_age: Option<Duration>,
    /// See [`TopicConfig::segment_bytes`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment_bytes: Option<u64>,
    /// See [`TopicConfig::max_message_bytes`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_message_bytes: Option<usize>,
}

/// `fsync` as its `--fsync` text (`always`, `interval:MS`, `never`).
mod durability_text {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use super::Durability;

    pub(super) fn serialize<S: Serializer>(
        v: &Option<Durability>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.collect_str(d),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Durability>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| t.parse().map_err(D::Error::custom))
            .transpose()
    }
}

/// A duration as text like `7days` or `12h`.
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.collect_str(&humantime::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| {
                humantime::parse_duration(&t).map_err(|e| {
                    D::Error::custom(format!("{t:?} is not a duration like 7days: {e}"))
                })
            })
            .transpose()
    }
}

impl TopicOverrides {
    /// Stores these as `topic`'s own settings document
    /// ([`crate::Namespace::Settings`]), over whatever was stored: every
    /// storage keeps them the same way.
    ///
    /// # Errors
    /// As [`crate::MetaStore::put`].
    pub fn store(
        &self,
        meta: &dyn crate::MetaStore,
        topic: &fanlog_protocol::TopicName,
    ) -> crate::Result<()> {
        let text =
            serde_json::to_vec(self).map_err(|e| crate::StorageError::Config(e.to_string()))?;
        meta.put(
            crate::Namespace::Settings,
            topic.as_str(),
            &text,
            crate::Expect::Any,
        )
        .map(drop)
    }

    /// Sets in `c` every value these overrides set.
    pub fn apply(&self, c: &mut TopicConfig) {
        if let Some(v) = self.segment_bytes {
            c.segment_bytes = v;
        }
        if let Some(v) = self.max_message_bytes {
            c.max_message_bytes = v;
        }
        if let Some(v) = self.retention_bytes {
            c.retention_bytes = Some(v);
        }
        if let Some(v) = self.retention_age {
            c.retention_age = Some(v);
        }
        if let Some(v) = self.durability {
            c.durability = v;
        }
    }
}
