//! A topic's own settings (from [`Broker::create_topic`](crate::Broker::create_topic)),
//! kept as `settings.json` in its directory so that they apply again after
//! a restart.
//!
//! The file is [`TopicOverrides`] as JSON:
//! `{"fsync": "always", "retention_age": "7days", "segment_bytes": 67108864}`.
//!
//! Every topic has one (`{}` when it has no settings of its own), so that a
//! deleted file is noticed: a topic whose `settings.json` is missing or bad
//! is not opened (see [`crate::BrokerError::TopicFailed`]) rather than
//! opened with the broker's settings, which could be weaker (a topic made
//! with `fsync = always` must never silently run under `interval`).

use std::io::Write;
use std::path::Path;

use crate::config::TopicOverrides;
use crate::error::{BrokerError, Result};

const FILE: &str = "settings.json";

/// Writes `settings` into `dir` atomically (a temporary file synced, then
/// renamed over the old one, then the directory synced).
pub(crate) fn store(dir: &Path, settings: &TopicOverrides) -> Result<()> {
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.{:016x}.tmp", rand::random::<u64>()));
    let text = serde_json::to_vec(settings).map_err(|e| BrokerError::Config(e.to_string()))?;
    let mut f = std::fs::File::create_new(&tmp).map_err(BrokerError::io(&tmp))?;
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
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| BrokerError::Config(format!("{}: {e}", path.display())))
}
