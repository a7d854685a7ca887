//! The hook registry: the `hooks.json` document of the broker's metadata
//! store (in the local store, `DATA/hooks.json`), rewritten whole on every
//! change, atomically, so a crash leaves the old registry or the new one.
//! Hook cursors are not in it: they are consumer offsets of the topic.

use fanlog_broker::Broker;
use fanlog_broker::storage::{Expect, Namespace};
use serde::{Deserialize, Serialize};

/// The registry's key in [`Namespace::Hooks`].
const KEY: &str = "hooks.json";

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
    /// Per-key lanes (`"ordering": "key"`): this many deliveries at once,
    /// in order within a key. None: one at a time, in topic order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lanes: Option<u32>,
    /// A message still failing after the retry schedule is set aside in
    /// the hook's dead-letter topic and delivery goes on (instead of
    /// retrying it until the hook is disabled).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dead_letter: bool,
}

impl HookSpec {
    /// Where this hook sets aside what it gave up on.
    #[must_use]
    pub fn dead_letter_topic(&self) -> String {
        format!("{}.{}.dead", self.topic, self.id)
    }
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone)]
pub struct Store {
    broker: Broker,
}

fn io(e: fanlog_broker::storage::StorageError) -> std::io::Error {
    std::io::Error::other(e)
}

impl Store {
    pub fn new(broker: Broker) -> Self {
        Self { broker }
    }

    /// Every stored hook (see [`Store::load_versioned`]).
    #[cfg(test)]
    pub fn load(&self) -> std::io::Result<Vec<HookSpec>> {
        self.load_versioned().map(|(hooks, _)| hooks)
    }

    /// The stored revision of the registry, `None` when there is none:
    /// cheap enough to poll for changes other processes made.
    ///
    /// # Errors
    /// The registry cannot be read.
    pub fn revision(&self) -> std::io::Result<Option<u64>> {
        Ok(self
            .broker
            .meta()
            .get(Namespace::Hooks, KEY)
            .map_err(io)?
            .map(|d| d.revision))
    }

    /// Every stored hook, with the revision read (`None`: no registry yet).
    ///
    /// A damaged file stops no more than what it damages: an entry that is
    /// not a valid hook is skipped (and kept in `hooks.rejected-MS.json`),
    /// and a document that is not JSON at all is moved aside to
    /// `hooks.json.bad-MS`, so that nothing is lost when the registry is
    /// written next. Each is logged as an error.
    ///
    /// # Errors
    /// The registry cannot be read or moved aside.
    pub fn load_versioned(&self) -> std::io::Result<(Vec<HookSpec>, Option<u64>)> {
        let meta = self.broker.meta();
        let Some(doc) = meta.get(Namespace::Hooks, KEY).map_err(io)? else {
            return Ok((Vec::new(), None));
        };
        let revision = Some(doc.revision);
        let ms = super::now_ms();
        let entries = match serde_json::from_slice::<RawFile>(&doc.value) {
            Ok(f) => f.hooks,
            Err(e) => {
                let aside = format!("{KEY}.bad-{ms}");
                meta.put(Namespace::Hooks, &aside, &doc.value, Expect::Any)
                    .and_then(|_| meta.delete(Namespace::Hooks, KEY))
                    .map_err(io)?;
                tracing::error!(
                    document = KEY, moved_to = %aside, error = %e,
                    "the hooks registry is not valid JSON: moved aside, starting without its hooks"
                );
                return Ok((Vec::new(), None));
            }
        };
        let mut hooks = Vec::with_capacity(entries.len());
        let mut rejected = Vec::new();
        for (i, v) in entries.into_iter().enumerate() {
            match serde_json::from_value::<HookSpec>(v.clone()) {
                Ok(h) => hooks.push(h),
                Err(e) => {
                    tracing::error!(document = KEY, entry = i, error = %e, "a stored hook is not valid: skipped");
                    rejected.push(v);
                }
            }
        }
        if !rejected.is_empty() {
            let body = serde_json::to_vec_pretty(&rejected).map_err(std::io::Error::other)?;
            meta.put(
                Namespace::Hooks,
                &format!("hooks.rejected-{ms}.json"),
                &body,
                Expect::Any,
            )
            .map_err(io)?;
        }
        Ok((hooks, revision))
    }

    /// Replaces the registry with `hooks`, durably and atomically, if it
    /// is still as `expect`ed (storage shared with other processes: the
    /// registry they changed since is not written over); returns the new
    /// revision. Callers serialize their writes.
    ///
    /// # Errors
    /// [`super::HookError::Changed`] when the registry changed meanwhile,
    /// [`super::HookError::Io`] when the write failed.
    pub fn save(&self, hooks: &[HookSpec], expect: Expect) -> Result<u64, super::HookError> {
        let body = serde_json::to_vec_pretty(&File {
            hooks: hooks.to_vec(),
        })
        .map_err(std::io::Error::other)?;
        self.broker
            .meta()
            .put(Namespace::Hooks, KEY, &body, expect)
            .map_err(|e| match e {
                fanlog_broker::storage::StorageError::Conflict { .. } => super::HookError::Changed,
                e => io(e).into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(dir.path(), fanlog_broker::BrokerConfig::default()).unwrap();
        let s = Store::new(broker.clone());
        assert!(s.load().unwrap().is_empty());
        let h = HookSpec {
            lanes: None,
            dead_letter: false,
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
        s.save(std::slice::from_ref(&h), Expect::Any).unwrap();
        assert_eq!(Store::new(broker).load().unwrap(), vec![h.clone()]);
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
