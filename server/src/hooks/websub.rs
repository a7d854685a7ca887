//! A WebSub hub (W3C Recommendation) over the hooks machinery.
//!
//! A topic URL is `{scheme}://{host}/topics/{name}`. A subscription request
//! is answered `202 Accepted` and then verified asynchronously: the hub GETs
//! the callback with `hub.challenge` and the subscription becomes active
//! only if the callback echoes it (a failed verification leaves the previous
//! state unchanged). An active subscription is a hook: a durable cursor from
//! the live tail at verification, delivering each message in order with the
//! message's `Content-Type`, `Link` headers (`rel="hub"`, `rel="self"`) and,
//! when a `hub.secret` was given, `X-Hub-Signature: sha256=HEX`. Leases are
//! clamped to the configured bounds and enforced; subscribing again
//! replaces the lease and secret and keeps the cursor; unsubscribing is
//! verified the same way. A topic the hub does not serve is `denied`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::{HookError, HookSpec, Hooks, WebSubSpec, group, now_ms};
use fanlog_broker::StartFrom;

/// A `POST /websub` form: every `hub.*` parameter; unknown ones ignored.
#[derive(Debug, Clone, Default)]
pub struct WebSubRequest {
    /// The form's `hub.*` parameters (others are ignored).
    pub params: HashMap<String, String>,
    /// This hub's URL as the request reached it.
    pub hub_url: String,
}

/// `X-Hub-Signature` of `body`: `sha256=` + hex HMAC-SHA256 with `key`.
pub(super) fn signature(key: &[u8], body: &[u8]) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let tag = ring::hmac::sign(&k, body);
    format!("sha256={}", crate::auth::hex(tag.as_ref()))
}

/// The fanlog topic a topic URL names, if it names one.
fn topic_of(topic_url: &str) -> Option<String> {
    let url = reqwest::Url::parse(topic_url).ok()?;
    let mut segments = url.path_segments()?;
    let (Some("topics"), Some(name), None) = (segments.next(), segments.next(), segments.next())
    else {
        return None;
    };
    fanlog_broker::TopicName::new(name)
        .ok()
        .map(|n| n.to_string())
}

enum Mode {
    Subscribe,
    Unsubscribe,
}

impl Hooks {
    /// Handles a hub request. `Ok` means `202 Accepted`: a subscription
    /// change goes on to be verified (or denied) in the background.
    ///
    /// # Errors
    /// [`HookError::Invalid`] for a request the hub cannot act on: no or an
    /// unknown `hub.mode`, a missing or malformed URL, a refused callback,
    /// a secret of 200 bytes or more, a publish of a topic it does not
    /// serve.
    pub async fn websub(&self, req: WebSubRequest) -> Result<(), HookError> {
        let p = &req.params;
        let get = |k: &str| p.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let invalid = |m: &str| HookError::Invalid(m.to_owned());
        let mode = match get("hub.mode") {
            Some("subscribe") => Mode::Subscribe,
            Some("unsubscribe") => Mode::Unsubscribe,
            Some("publish") => {
                // Content reaches the hub as messages published to the
                // topic; a ping needs only to name a topic it serves.
                let topic = get("hub.topic")
                    .or_else(|| get("hub.url"))
                    .ok_or_else(|| invalid("hub.mode=publish needs hub.topic or hub.url"))?;
                return match topic_of(topic) {
                    Some(_) => Ok(()),
                    None => Err(invalid("hub.topic is not a topic of this hub")),
                };
            }
            Some(m) => {
                return Err(HookError::Invalid(format!(
                    "hub.mode {m:?} is not supported"
                )));
            }
            None => return Err(invalid("hub.mode is missing")),
        };
        let topic_url = get("hub.topic").ok_or_else(|| invalid("hub.topic is missing"))?;
        reqwest::Url::parse(topic_url)
            .map_err(|e| HookError::Invalid(format!("hub.topic: {e}")))?;
        let callback = get("hub.callback").ok_or_else(|| invalid("hub.callback is missing"))?;
        let callback_url = reqwest::Url::parse(callback)
            .map_err(|e| HookError::Invalid(format!("hub.callback: {e}")))?;
        self.inner
            .guard
            .check_url(&callback_url)
            .await
            .map_err(HookError::Invalid)?;
        let secret = get("hub.secret").map(str::to_owned);
        if secret.as_ref().is_some_and(|s| s.len() >= 200) {
            return Err(invalid("hub.secret must be shorter than 200 bytes"));
        }
        let config = &self.inner.config;
        let lease = get("hub.lease_seconds")
            .and_then(|l| l.parse::<u64>().ok())
            .map_or(config.lease_default, Duration::from_secs)
            .clamp(config.lease_min, config.lease_max);
        let hooks = self.clone();
        let (topic_url, callback, hub_url) = (topic_url.to_owned(), callback_url, req.hub_url);
        self.inner.tracker.spawn(async move {
            // Only this broker's own topic URLs: a topic URL of another
            // host must not label this broker's messages as that host's.
            let base = hub_url.strip_suffix("/websub").unwrap_or(&hub_url);
            let own = topic_url
                .strip_prefix(base)
                .is_some_and(|rest| rest.starts_with("/topics/"));
            let Some(topic) = topic_of(&topic_url).filter(|_| own) else {
                let why = format!("this hub serves its own topics only: {base}/topics/{{name}}");
                hooks.deny(&callback, &topic_url, &why).await;
                return;
            };
            let verified = hooks.verify(&callback, &mode, &topic_url, lease).await;
            match (mode, verified) {
                (_, Err(why)) => {
                    tracing::info!(%callback, %topic_url, "WebSub intent not verified: {why}");
                }
                (Mode::Subscribe, Ok(())) => {
                    let spec = WebSubSpec {
                        topic_url,
                        hub_url,
                        secret,
                        expires_ms: now_ms().saturating_add(lease.as_millis() as u64),
                    };
                    // Stored in hooks.json: off the runtime's threads.
                    let (store, cb) = (hooks.clone(), callback.to_string());
                    let stored = tokio::task::spawn_blocking(move || {
                        store.websub_subscribe(&topic, &cb, spec)
                    })
                    .await;
                    let durable = match stored {
                        Ok(Ok(Some(committing))) => {
                            committing.durable().await.map_err(HookError::from)
                        }
                        Ok(Ok(None)) => Ok(()),
                        Ok(Err(e)) => Err(e),
                        Err(e) => Err(HookError::Io(std::io::Error::other(e))),
                    };
                    if let Err(e) = durable {
                        tracing::error!(%callback, "WebSub subscription not stored: {e}");
                    }
                }
                (Mode::Unsubscribe, Ok(())) => {
                    let ids = hooks.websub_ids(callback.as_str(), &topic_url);
                    let store = hooks.clone();
                    let deleted = tokio::task::spawn_blocking(move || {
                        ids.iter()
                            .filter_map(|id| store.delete(id).err())
                            .map(|e| e.to_string())
                            .collect::<Vec<_>>()
                    })
                    .await
                    .unwrap_or_else(|e| vec![e.to_string()]);
                    for e in deleted {
                        tracing::error!(%callback, "WebSub unsubscribe: {e}");
                    }
                }
            }
        });
        Ok(())
    }

    /// Subscriptions of `callback` to `topic_url`.
    fn websub_ids(&self, callback: &str, topic_url: &str) -> Vec<String> {
        self.inner
            .hooks
            .lock()
            .values()
            .filter(|e| {
                e.spec.url == callback
                    && e.spec
                        .websub
                        .as_ref()
                        .is_some_and(|w| w.topic_url == topic_url)
            })
            .map(|e| e.spec.id.clone())
            .collect()
    }

    /// Verification of intent: the callback must echo `hub.challenge`.
    async fn verify(
        &self,
        callback: &reqwest::Url,
        mode: &Mode,
        topic_url: &str,
        lease: Duration,
    ) -> Result<(), String> {
        let challenge = format!("{:032x}", rand::random::<u128>());
        let mut url = callback.clone();
        {
            let mut q = url.query_pairs_mut();
            match mode {
                Mode::Subscribe => {
                    q.append_pair("hub.mode", "subscribe");
                    q.append_pair("hub.lease_seconds", &lease.as_secs().to_string());
                }
                Mode::Unsubscribe => {
                    q.append_pair("hub.mode", "unsubscribe");
                }
            }
            q.append_pair("hub.topic", topic_url);
            q.append_pair("hub.challenge", &challenge);
        }
        let resp = self
            .inner
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("the callback answered {}", resp.status()));
        }
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        if body.as_ref() != challenge.as_bytes() {
            return Err("the callback did not echo hub.challenge".into());
        }
        Ok(())
    }

    /// Tells a subscriber its subscription was refused.
    async fn deny(&self, callback: &reqwest::Url, topic_url: &str, reason: &str) {
        let mut url = callback.clone();
        url.query_pairs_mut()
            .append_pair("hub.mode", "denied")
            .append_pair("hub.topic", topic_url)
            .append_pair("hub.reason", reason);
        if let Err(e) = self.inner.client.get(url).send().await {
            tracing::info!(%callback, "WebSub denial not delivered: {e}");
        }
    }

    /// Activates a verified subscription: a new hook from the live tail, or
    /// the existing one with its new lease and secret (its cursor kept).
    /// A new hook's cursor commit is returned to be awaited once the lock
    /// is released.
    fn websub_subscribe(
        &self,
        topic: &str,
        callback: &str,
        spec: WebSubSpec,
    ) -> Result<Option<fanlog_broker::Committing>, HookError> {
        let _topics = self.inner.topics.lock();
        let existing = self.websub_ids(callback, &spec.topic_url);
        let mut committing = None;
        let (id, created_ms) = match existing.first() {
            Some(id) => {
                let created = self
                    .inner
                    .hooks
                    .lock()
                    .get(id)
                    .map_or_else(now_ms, |e| e.spec.created_ms);
                for id in &existing {
                    self.forget(id);
                }
                (id.clone(), created)
            }
            None => {
                self.check_room()?;
                let id = format!("websub_{:016x}", rand::random::<u64>());
                let next = self
                    .inner
                    .broker
                    .subscribe(topic, StartFrom::Latest)?
                    .position();
                committing = Some(self.inner.broker.begin_commit(topic, &group(&id), next)?);
                (id, now_ms())
            }
        };
        self.start(HookSpec {
            lanes: None,
            dead_letter: false,
            id,
            topic: topic.to_owned(),
            url: callback.to_owned(),
            secret: String::new(),
            old_secrets: Vec::new(),
            rate_limit: None,
            created_ms,
            enabled: true,
            delivery: super::Delivery::Binary,
            types: Vec::new(),
            websub: Some(spec),
        })?;
        self.save()?;
        Ok(committing)
    }
}

/// How long until a lease ends (zero when it has).
pub(super) fn lease_left(spec: &WebSubSpec) -> Duration {
    let end = SystemTime::UNIX_EPOCH + Duration::from_millis(spec.expires_ms);
    end.duration_since(SystemTime::now()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_urls_name_topics() {
        assert_eq!(
            topic_of("http://h:1/topics/orders").as_deref(),
            Some("orders")
        );
        assert_eq!(
            topic_of("https://x.example/topics/a.b-c").as_deref(),
            Some("a.b-c")
        );
        for bad in [
            "http://h/topics/",
            "http://h/topics/a/b",
            "http://h/other/a",
            "http://h/topics/bad%20name",
            "nope",
        ] {
            assert_eq!(topic_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn signatures_are_sha256_hex() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
        assert_eq!(
            signature(b"key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }
}
