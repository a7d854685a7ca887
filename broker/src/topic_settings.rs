//! A topic's own settings (from [`Broker::create_topic`](crate::Broker::create_topic)),
//! kept as `settings.json` in its directory so that they apply again after
//! a restart.
//!
//! ```text
//! {"fsync": "always", "retention_bytes": 1073741824, "retention_age_ms": 604800000,
//!  "segment_bytes": 67108864, "max_message_bytes": 262144}
//! ```
//! Every key is optional; one left out keeps the broker's setting.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Durability, TopicOverrides};
use crate::error::{BrokerError, Result};

const FILE: &str = "settings.json";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    #[serde(skip_serializing_if = "Option::is_none")]
    fsync: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retention_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retention_age_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    segment_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_message_bytes: Option<usize>,
}

/// Writes `settings` into `dir` atomically (a temporary file synced, then
/// renamed over the old one, then the directory synced).
pub(crate) fn store(dir: &Path, settings: &TopicOverrides) -> Result<()> {
    let stored = Stored {
        fsync: settings.durability.map(|d| d.to_string()),
        retention_bytes: settings.retention_bytes,
        retention_age_ms: settings
            .retention_age
            .map(|a| u64::try_from(a.as_millis()).unwrap_or(u64::MAX)),
        segment_bytes: settings.segment_bytes,
        max_message_bytes: settings.max_message_bytes,
    };
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let text = serde_json::to_vec(&stored).map_err(|e| BrokerError::Config(e.to_string()))?;
    let mut f = std::fs::File::create(&tmp).map_err(BrokerError::io(&tmp))?;
    f.write_all(&text).map_err(BrokerError::io(&tmp))?;
    f.sync_all().map_err(BrokerError::io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(BrokerError::io(&path))?;
    crate::log::mmap::sync_dir(dir).map_err(BrokerError::io(dir))
}

/// The settings stored in `dir`, if any.
///
/// # Errors
/// [`BrokerError::Config`] naming the file when it cannot be understood:
/// the topic is not opened with settings other than its own.
pub(crate) fn load(dir: &Path) -> Result<Option<TopicOverrides>> {
    let path = dir.join(FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BrokerError::io(&path)(e)),
    };
    let bad = |why: String| BrokerError::Config(format!("{}: {why}", path.display()));
    let s: Stored = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    let durability = s
        .fsync
        .map(|f| f.parse::<Durability>())
        .transpose()
        .map_err(|e| bad(e.to_string()))?;
    Ok(Some(TopicOverrides {
        segment_bytes: s.segment_bytes,
        max_message_bytes: s.max_message_bytes,
        retention_bytes: s.retention_bytes,
        retention_age: s.retention_age_ms.map(Duration::from_millis),
        durability,
    }))
}
