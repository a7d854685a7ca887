//! Broker and topic settings.

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

/// Settings of a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Settings every topic gets.
    pub topic: TopicConfig,
    /// Most topics; creating one more is refused.
    pub max_topics: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            topic: TopicConfig::default(),
            max_topics: 10_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_parses_the_cli_forms() {
        assert_eq!("always".parse(), Ok(Durability::Always));
        assert_eq!("never".parse(), Ok(Durability::Never));
        assert_eq!(
            "interval:250".parse(),
            Ok(Durability::Interval(Duration::from_millis(250)))
        );
        for bad in ["", "interval:", "interval:0", "interval:x", "sometimes"] {
            assert!(bad.parse::<Durability>().is_err(), "{bad}");
        }
        assert_eq!(Durability::default().to_string(), "interval:100");
    }

    #[test]
    fn config_validation_names_the_setting() {
        assert!(TopicConfig::default().validate().is_ok());
        let small = TopicConfig {
            segment_bytes: 4096,
            max_message_bytes: 8192,
            ..TopicConfig::default()
        };
        assert!(small.validate().unwrap_err().contains("max_message_bytes"));
    }
}
