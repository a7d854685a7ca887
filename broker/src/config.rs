//! Broker and topic settings.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use fanlog_storage::{Durability, ParseDurabilityError, TopicConfig, TopicOverrides};

/// A topic pattern: an exact name (`orders`), or a prefix ending in `*`
/// (`orders.*` matches every name starting `orders.`; `*` matches all).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TopicPattern {
    /// This name only.
    Exact(String),
    /// Every name starting with this prefix.
    Prefix(String),
}

/// A topic pattern that is neither a name nor a prefix ending in one `*`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("topic pattern {0:?}: expected a name, or a prefix ending in a single *")]
pub struct ParsePatternError(String);

impl FromStr for TopicPattern {
    type Err = ParsePatternError;

    fn from_str(p: &str) -> Result<Self, Self::Err> {
        match p.strip_suffix('*') {
            Some(prefix) if !prefix.contains('*') => Ok(Self::Prefix(prefix.to_owned())),
            None if !p.is_empty() && !p.contains('*') => Ok(Self::Exact(p.to_owned())),
            _ => Err(ParsePatternError(p.to_owned())),
        }
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(t) => f.write_str(t),
            Self::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

impl TopicPattern {
    /// Whether `topic` is matched.
    #[must_use]
    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Self::Exact(t) => t == topic,
            Self::Prefix(p) => topic.starts_with(p.as_str()),
        }
    }

    /// Orders patterns from the least to the most specific: prefixes by
    /// length, then exact names.
    fn specificity(&self) -> (bool, usize) {
        match self {
            Self::Exact(t) => (true, t.len()),
            Self::Prefix(p) => (false, p.len()),
        }
    }
}

/// Settings of a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Settings every topic gets, unless a pattern in `topics` overrides them.
    pub topic: TopicConfig,
    /// Most topics; creating one more is refused.
    pub max_topics: usize,
    /// Whether a subscription over the server's interfaces creates a missing
    /// topic for a caller that may only read it. Off by default: a topic is
    /// a directory on disk, and a token with only subscribe rights must not
    /// be able to make them. A caller that may publish to the topic (every
    /// caller of a broker without tokens) creates it by subscribing either
    /// way, as it could by publishing.
    pub subscribe_creates_topics: bool,
    /// Most topics open at once; idle ones beyond it are closed (their file
    /// descriptors and mappings let go) and opened again on their next use.
    /// `None`: from the process's open-file limit, a quarter of what is
    /// left after 256 kept for connections, at least 16 (an open topic
    /// holds three descriptors: the active segment's data and index, and
    /// its offsets).
    pub max_open_topics: Option<usize>,
    /// Most consumer groups (hooks' cursors included) one topic keeps;
    /// committing a new group beyond is refused.
    pub max_groups_per_topic: usize,
    /// Per-topic settings: every pattern that matches a topic applies, the
    /// more specific over the less (longer prefixes over shorter, an exact
    /// name over any prefix).
    pub topics: Vec<(TopicPattern, TopicOverrides)>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            topic: TopicConfig::default(),
            max_topics: 10_000,
            subscribe_creates_topics: false,
            max_open_topics: None,
            max_groups_per_topic: 1000,
            topics: Vec::new(),
        }
    }
}

impl BrokerConfig {
    /// [`BrokerConfig::max_open_topics`], or what the open-file limit allows.
    #[must_use]
    pub fn open_topics_limit(&self) -> usize {
        self.max_open_topics
            .unwrap_or_else(|| {
                let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile)
                    .current
                    .unwrap_or(1 << 20);
                let spare = usize::try_from(nofile.saturating_sub(256) / 4).unwrap_or(usize::MAX);
                spare.clamp(16, 100_000)
            })
            .max(1)
    }
    /// The settings of topic `name`: [`BrokerConfig::topic`] with every
    /// matching pattern's overrides applied, least specific first.
    #[must_use]
    pub fn topic_config(&self, name: &str) -> TopicConfig {
        let mut matching: Vec<&(TopicPattern, TopicOverrides)> = self
            .topics
            .iter()
            .filter(|(p, _)| p.matches(name))
            .collect();
        matching.sort_by_key(|(p, _)| p.specificity());
        let mut c = self.topic.clone();
        for (_, o) in matching {
            o.apply(&mut c);
        }
        c
    }

    /// Checks the defaults and every pattern's settings (each applied to
    /// the defaults).
    ///
    /// # Errors
    /// A message naming the pattern and the setting that is out of range.
    pub fn validate(&self) -> Result<(), String> {
        self.topic.validate()?;
        for (p, o) in &self.topics {
            let mut c = self.topic.clone();
            o.apply(&mut c);
            c.validate()
                .map_err(|e| format!("topics {:?}: {e}", p.to_string()))?;
        }
        Ok(())
    }

    /// The shortest sync interval of any topic: how often the flusher must
    /// look at `interval:MS` topics.
    pub(crate) fn shortest_interval(&self) -> Option<Duration> {
        std::iter::once(self.topic.durability)
            .chain(self.topics.iter().filter_map(|(_, o)| o.durability))
            .filter_map(|d| match d {
                Durability::Interval(i) => Some(i),
                _ => None,
            })
            .min()
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

    #[test]
    fn patterns_parse_and_the_most_specific_wins() {
        for bad in ["", "a*b*", "**", "a*b"] {
            assert!(bad.parse::<TopicPattern>().is_err(), "{bad}");
        }
        let p = |s: &str| s.parse::<TopicPattern>().unwrap();
        assert!(p("*").matches("anything"));
        assert!(p("orders.*").matches("orders.eu") && !p("orders.*").matches("orders"));
        assert!(p("orders").matches("orders") && !p("orders").matches("orders.eu"));
        assert_eq!(p("orders.*").to_string(), "orders.*");
        let config = BrokerConfig {
            topics: vec![
                (
                    p("orders"),
                    TopicOverrides {
                        durability: Some(Durability::Always),
                        ..Default::default()
                    },
                ),
                (
                    p("ord*"),
                    TopicOverrides {
                        retention_bytes: Some(1 << 30),
                        durability: Some(Durability::Never),
                        ..Default::default()
                    },
                ),
                (
                    p("*"),
                    TopicOverrides {
                        segment_bytes: Some(1 << 20),
                        durability: Some(Durability::Interval(Duration::from_millis(5))),
                        ..Default::default()
                    },
                ),
            ],
            ..BrokerConfig::default()
        };
        let orders = config.topic_config("orders");
        assert_eq!(orders.durability, Durability::Always);
        assert_eq!(orders.retention_bytes, Some(1 << 30));
        assert_eq!(orders.segment_bytes, 1 << 20);
        assert_eq!(config.topic_config("ordinal").durability, Durability::Never);
        assert_eq!(
            config.topic_config("other").durability,
            Durability::Interval(Duration::from_millis(5))
        );
        assert_eq!(config.shortest_interval(), Some(Duration::from_millis(5)));
        let bad = BrokerConfig {
            topics: vec![(
                p("big"),
                TopicOverrides {
                    segment_bytes: Some(10),
                    ..Default::default()
                },
            )],
            ..BrokerConfig::default()
        };
        let e = bad.validate().unwrap_err();
        assert!(e.contains("\"big\"") && e.contains("segment_bytes"), "{e}");
    }
}
