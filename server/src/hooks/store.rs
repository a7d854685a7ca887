//! The hook registry on disk: `DATA/hooks.json`, rewritten whole (write a
//! temporary file, sync it, rename it over the old one, sync the directory)
//! on every change, so a crash leaves the old registry or the new one.
//! Hook cursors are not in it: they are consumer offsets of the topic.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One hook as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookSpec {
    pub id: String,
    pub topic: String,
    pub url: String,
    /// `whsec_...`.
    pub secret: String,
    /// Secrets replaced by a rotation, still signing until their grace
    /// period ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub old_secrets: Vec<OldSecret>,
    /// Most deliveries per second to this hook, if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<f64>,
    /// Milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// False once disabled after failing for too long.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How CloudEvents are delivered.
    #[serde(default)]
    pub delivery: Delivery,
    /// Only CloudEvents of these types, when not empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    /// Set for a WebSub subscription (then `url` is its callback and
    /// `secret` is unused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websub: Option<WebSubSpec>,
}

/// A secret in its grace period after a rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OldSecret {
    pub secret: String,
    /// End of the grace period, in milliseconds since the Unix epoch.
    pub until_ms: u64,
}

/// What a WebSub subscription adds to a hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebSubSpec {
    /// `hub.topic` as the subscriber gave it (the `rel="self"` link).
    pub topic_url: String,
    /// This hub's URL as the subscriber reached it (the `rel="hub"` link).
    pub hub_url: String,
    /// `hub.secret`: the key of `X-Hub-Signature`.
    pub secret: Option<String>,
    /// When the lease ends, in milliseconds since the Unix epoch.
    pub expires_ms: u64,
}

/// The HTTP form a hook receives CloudEvents in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// Data as the body, attributes as `ce-*` headers.
    #[default]
    Binary,
    /// One `application/cloudevents+json` object.
    Structured,
    /// Every event available, up to 100, in one
    /// `application/cloudevents-batch+json` array.
    Batch,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    hooks: Vec<HookSpec>,
}

/// The file read entry by entry, so that one bad entry spoils no other.
#[derive(Debug, Deserialize)]
struct RawFile {
    hooks: Vec<serde_json::Value>,
}

#[derive(Debug)]
pub struct Store {
    path: PathBuf,
}

impl Store {
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join("hooks.json"),
        }
    }

    /// Every stored hook; none when the file does not exist yet.
    ///
    /// A damaged file stops no more than what it damages: an entry that is
    /// not a valid hook is skipped (and kept in `hooks.rejected-MS.json`),
    /// and a file that is not JSON at all is moved aside to
    /// `hooks.json.bad-MS`, so that nothing is lost when the registry is
    /// written next. Each is logged as an error.
    ///
    /// # Errors
    /// The file cannot be read or moved aside.
    pub fn load(&self) -> std::io::Result<Vec<HookSpec>> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let ms = super::now_ms();
        let entries = match serde_json::from_slice::<RawFile>(&bytes) {
            Ok(f) => f.hooks,
            Err(e) => {
                let aside = self.path.with_extension(format!("json.bad-{ms}"));
                std::fs::rename(&self.path, &aside)?;
                tracing::error!(
                    file = %self.path.display(), moved_to = %aside.display(), error = %e,
                    "the hooks registry is not valid JSON: moved aside, starting without its hooks"
                );
                return Ok(Vec::new());
            }
        };
        let mut hooks = Vec::with_capacity(entries.len());
        let mut rejected = Vec::new();
        for (i, v) in entries.into_iter().enumerate() {
            match serde_json::from_value::<HookSpec>(v.clone()) {
                Ok(h) => hooks.push(h),
                Err(e) => {
                    tracing::error!(file = %self.path.display(), entry = i, error = %e, "a stored hook is not valid: skipped");
                    rejected.push(v);
                }
            }
        }
        if !rejected.is_empty() {
            let aside = self
                .path
                .with_file_name(format!("hooks.rejected-{ms}.json"));
            let body = serde_json::to_vec_pretty(&rejected).map_err(std::io::Error::other)?;
            std::fs::write(&aside, body)?;
        }
        Ok(hooks)
    }

    /// Replaces the registry with `hooks`, durably, through a temporary
    /// file of its own (two writers never share one). Callers serialize
    /// their writes.
    pub fn save(&self, hooks: &[HookSpec]) -> std::io::Result<()> {
        let tmp = self
            .path
            .with_extension(format!("json.{:016x}.tmp", rand::random::<u64>()));
        let body = serde_json::to_vec_pretty(&File {
            hooks: hooks.to_vec(),
        })
        .map_err(std::io::Error::other)?;
        let written = (|| {
            let mut f = std::fs::File::create_new(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(dir.path());
        assert!(s.load().unwrap().is_empty());
        let h = HookSpec {
            id: "hook_1".into(),
            topic: "t".into(),
            url: "http://127.0.0.1:9/".into(),
            secret: "whsec_x".into(),
            old_secrets: vec![OldSecret {
                secret: "whsec_y".into(),
                until_ms: 5,
            }],
            rate_limit: Some(2.5),
            created_ms: 7,
            enabled: true,
            delivery: Delivery::Structured,
            types: vec!["a.b".into()],
            websub: Some(WebSubSpec {
                topic_url: "http://h/topics/t".into(),
                hub_url: "http://h/websub".into(),
                secret: None,
                expires_ms: 9,
            }),
        };
        s.save(std::slice::from_ref(&h)).unwrap();
        assert_eq!(Store::new(dir.path()).load().unwrap(), vec![h.clone()]);
        // One bad entry: the others load, it is kept aside.
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("hooks.json")).unwrap()).unwrap();
        v["hooks"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"id": "broken"}));
        std::fs::write(dir.path().join("hooks.json"), v.to_string()).unwrap();
        assert_eq!(s.load().unwrap(), vec![h]);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().any(|n| n.starts_with("hooks.rejected-")),
            "{names:?}"
        );
        // Not JSON: moved aside, nothing loaded, nothing lost.
        std::fs::write(dir.path().join("hooks.json"), b"{not json").unwrap();
        assert!(s.load().unwrap().is_empty());
        assert!(!dir.path().join("hooks.json").exists());
    }
}
