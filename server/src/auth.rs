//! Who may do what: tokens from the config file's `[auth]` section, each
//! with topic patterns it may publish to and subscribe to, and whether it
//! may administer (hooks, WebSub, topics).
//!
//! Tokens are kept only as SHA-256 digests; a presented token is hashed and
//! compared with every configured digest in constant time, so neither the
//! comparison nor which entry matched shows in the timing. With no tokens
//! configured the broker is open: every request has every right.
//!
//! Browsers cannot put a header on an `EventSource`, and a long-lived token
//! must never travel in a URL, so a token can be exchanged for a
//! single-use ticket that lives for seconds (for one connection's URL), or
//! for an HttpOnly session cookie.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use fanlog_broker::TopicPattern;
use fanlog_broker::storage::{MetaStore, Namespace};

/// The `[auth]` section of the config file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The tokens; none means the broker is open.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
}

impl AuthConfig {
    /// The same tokens with each plain `token` replaced by its
    /// `token_sha256`, so the configuration can be shown without secrets.
    #[must_use]
    pub fn redacted(&self) -> Self {
        let tokens = self
            .tokens
            .iter()
            .map(|t| TokenConfig {
                token: None,
                token_sha256: t
                    .token
                    .as_ref()
                    .map(|tok| hex(&sha256(tok.as_bytes())))
                    .or_else(|| t.token_sha256.clone()),
                ..t.clone()
            })
            .collect();
        Self { tokens }
    }
}

/// One `[[auth.tokens]]` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The token itself, or ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// ... its SHA-256 in hex, to keep it out of the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    /// Topic patterns: an exact name, or a prefix ending in `*`.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Topic patterns the token may read.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Hooks, WebSub and topic administration.
    #[serde(default)]
    pub admin: bool,
    /// Most messages per second this token may publish (over all its
    /// connections), with a burst of one second's worth.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_rate: Option<f64>,
}

/// A token bucket: `rate` per second, up to `burst`.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(rate: f64) -> Self {
        let burst = rate.max(1.0);
        Self {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes `n` tokens, one per message, or says why not: how long until
    /// there are enough, or that `n` is over the burst and never will be.
    fn take(&self, n: f64) -> Result<(), Refused> {
        if n > self.burst {
            return Err(Refused::OverBurst(self.burst));
        }
        let mut s = self.state.lock();
        let now = Instant::now();
        let (tokens, at) = *s;
        let tokens = (tokens + now.duration_since(at).as_secs_f64() * self.rate).min(self.burst);
        if tokens >= n {
            *s = (tokens - n, now);
            Ok(())
        } else {
            *s = (tokens, now);
            Err(Refused::Wait(Duration::from_secs_f64(
                (n - tokens) / self.rate,
            )))
        }
    }
}

/// Why a bucket refused.
enum Refused {
    /// Enough tokens after this long.
    Wait(Duration),
    /// More than the bucket ever holds.
    OverBurst(f64),
}

/// What one token may do.
#[derive(Debug, Clone)]
pub struct Grant {
    publish: Vec<TopicPattern>,
    subscribe: Vec<TopicPattern>,
    admin: bool,
    /// The token's publish rate, shared by all its connections.
    limiter: Option<Arc<Bucket>>,
    /// Who publishes under this grant, for deduplication: 0 for an open
    /// broker, else taken from the token's digest. Producer ids and
    /// idempotency keys of different tokens never match.
    scope: u64,
}

impl PartialEq for Grant {
    fn eq(&self, other: &Self) -> bool {
        self.publish == other.publish
            && self.subscribe == other.subscribe
            && self.admin == other.admin
            && self.scope == other.scope
            && match (&self.limiter, &other.limiter) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

impl Eq for Grant {}

impl Grant {
    /// Every right (an open broker).
    #[must_use]
    pub fn all() -> Self {
        let any = vec![TopicPattern::Prefix(String::new())];
        Self {
            publish: any.clone(),
            subscribe: any,
            admin: true,
            limiter: None,
            scope: 0,
        }
    }

    /// No right at all.
    #[must_use]
    pub fn none() -> Self {
        Self {
            publish: Vec::new(),
            subscribe: Vec::new(),
            admin: false,
            limiter: None,
            scope: 0,
        }
    }

    /// Whether the token may publish to `topic`.
    #[must_use]
    pub fn can_publish(&self, topic: &str) -> bool {
        self.publish.iter().any(|p| p.matches(topic))
    }

    /// Whether the token may read `topic`.
    #[must_use]
    pub fn can_subscribe(&self, topic: &str) -> bool {
        self.subscribe.iter().any(|p| p.matches(topic))
    }

    /// Charges `messages` publishes to the token's rate.
    ///
    /// # Errors
    /// [`fanlog_broker::BrokerError::RateLimited`] with the wait before a retry.
    pub fn charge_publish(&self, messages: usize) -> fanlog_broker::Result<()> {
        match &self.limiter {
            Some(b) => b.take(messages as f64).map_err(|r| match r {
                Refused::Wait(d) => fanlog_broker::BrokerError::RateLimited(d),
                Refused::OverBurst(burst) => fanlog_broker::BrokerError::LimitReached(format!(
                    "a batch of {messages} messages is over the token's publish rate of {burst} per second; send smaller batches"
                )),
            }),
            None => Ok(()),
        }
    }

    /// Puts a message's deduplication identity (producer id, idempotency
    /// key) in this grant's scope, so that another token's message can
    /// never be taken for its retry. The stored producer id is the one
    /// given, xor the scope; an idempotency key gets the scope as a prefix.
    pub fn scope_message(&self, m: &mut fanlog_protocol::Message) {
        if self.scope == 0 {
            return;
        }
        if let Some(p) = &mut m.producer {
            p.id ^= self.scope;
        }
        if let Some(k) = &mut m.meta.idempotency_key {
            let mut scoped = format!("{:016x}/", self.scope).into_bytes();
            scoped.extend_from_slice(k);
            *k = scoped;
        }
    }

    /// Whether the token may administer (hooks, WebSub, topics, metrics).
    #[must_use]
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// Whether the token may see that `topic` exists.
    #[must_use]
    pub fn can_see(&self, topic: &str) -> bool {
        self.admin || self.can_publish(topic) || self.can_subscribe(topic)
    }
}

/// How long a ticket may wait to be used.
pub const TICKET_TTL: Duration = Duration::from_secs(30);
/// How long a session cookie is good for.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Most tickets and sessions outstanding at once (older ones are dropped).
const MAX_OUTSTANDING: usize = 100_000;

#[derive(Debug)]
struct Inner {
    tokens: Vec<([u8; 32], Arc<Grant>)>,
    sessions: Mutex<HashMap<String, (Arc<Grant>, Instant)>>,
}

/// The broker's tokens, tickets and sessions. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Auth {
    inner: Arc<Inner>,
    all: Arc<Grant>,
}

impl Default for Auth {
    fn default() -> Self {
        Self::open()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hi = (chunk[0] as char).to_digit(16)?;
        let lo = (chunk[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Equal without an early exit.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_id() -> String {
    hex(&rand::random::<[u8; 24]>())
}

impl Auth {
    /// No tokens: every request may do everything.
    #[must_use]
    pub fn open() -> Self {
        Self {
            inner: Arc::new(Inner {
                tokens: Vec::new(),
                sessions: Mutex::default(),
            }),
            all: Arc::new(Grant::all()),
        }
    }

    /// The tokens of `config`.
    ///
    /// # Errors
    /// An entry with neither or both of `token` and `token_sha256`, a bad
    /// digest, or a bad topic pattern.
    pub fn new(config: &AuthConfig) -> Result<Self, String> {
        let mut tokens = Vec::with_capacity(config.tokens.len());
        for (i, t) in config.tokens.iter().enumerate() {
            let n = i + 1;
            let digest = match (&t.token, &t.token_sha256) {
                (Some(tok), None) if !tok.is_empty() => sha256(tok.as_bytes()),
                (None, Some(hex)) => unhex(hex)
                    .ok_or_else(|| format!("auth token {n}: token_sha256 is not 64 hex digits"))?,
                _ => {
                    return Err(format!(
                        "auth token {n}: give exactly one of token and token_sha256"
                    ));
                }
            };
            let patterns = |list: &[String]| {
                list.iter()
                    .map(|p| {
                        p.parse::<TopicPattern>()
                            .map_err(|e| format!("auth token {n}: {e}"))
                    })
                    .collect::<Result<Vec<_>, _>>()
            };
            let limiter = match t.publish_rate {
                Some(r) if r > 0.0 && r.is_finite() => Some(Arc::new(Bucket::new(r))),
                Some(_) => return Err(format!("auth token {n}: publish_rate must be positive")),
                None => None,
            };
            let grant = Grant {
                publish: patterns(&t.publish)?,
                subscribe: patterns(&t.subscribe)?,
                admin: t.admin,
                limiter,
                // Never 0: that is the open broker's scope.
                scope: u64::from_le_bytes(digest[..8].try_into().unwrap_or_default()) | 1,
            };
            tokens.push((digest, Arc::new(grant)));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                tokens,
                sessions: Mutex::default(),
            }),
            all: Arc::new(Grant::all()),
        })
    }

    /// Whether no tokens are configured.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.inner.tokens.is_empty()
    }

    /// The rights of a presented token (of any request, when open).
    #[must_use]
    pub fn authenticate(&self, token: Option<&str>) -> Option<Arc<Grant>> {
        if self.is_open() {
            return Some(self.all.clone());
        }
        let presented = sha256(token?.as_bytes());
        let mut found = None;
        for (digest, grant) in &self.inner.tokens {
            if same(digest, &presented) && found.is_none() {
                found = Some(grant.clone());
            }
        }
        found
    }

    fn issue(
        map: &Mutex<HashMap<String, (Arc<Grant>, Instant)>>,
        grant: Arc<Grant>,
        ttl: Duration,
    ) -> String {
        let id = random_id();
        let now = Instant::now();
        let mut m = map.lock();
        if m.len() >= MAX_OUTSTANDING {
            m.retain(|_, (_, until)| *until > now);
        }
        if m.len() < MAX_OUTSTANDING {
            m.insert(id.clone(), (grant, now + ttl));
        }
        id
    }

    /// Which configured token `grant` is (`None` for the open broker's).
    fn token_of(&self, grant: &Arc<Grant>) -> Option<Option<usize>> {
        if Arc::ptr_eq(grant, &self.all) {
            return Some(None);
        }
        self.inner
            .tokens
            .iter()
            .position(|(_, g)| Arc::ptr_eq(g, grant))
            .map(Some)
    }

    /// A single-use ticket for `grant`, good for [`TICKET_TTL`], kept in
    /// the broker's metadata store (as the token it stands for, never the
    /// token itself).
    ///
    /// # Errors
    /// A grant that is no configured token's, or the store's refusal (too
    /// many tickets outstanding).
    pub fn issue_ticket(&self, meta: &dyn MetaStore, grant: &Arc<Grant>) -> Result<String, String> {
        let token = self
            .token_of(grant)
            .ok_or("tickets are issued for a configured token only")?;
        let id = random_id();
        let doc = serde_json::json!({ "token": token }).to_string();
        meta.put_expiring(Namespace::Tickets, &id, doc.as_bytes(), TICKET_TTL)
            .map_err(|e| e.to_string())?;
        Ok(id)
    }

    /// The rights of a ticket, which is used up (taken from the store, so
    /// of two requests with one ticket only one gets in).
    #[must_use]
    pub fn redeem_ticket(&self, meta: &dyn MetaStore, ticket: &str) -> Option<Arc<Grant>> {
        let doc = meta.take(Namespace::Tickets, ticket).ok()??;
        let v: serde_json::Value = serde_json::from_slice(&doc.value).ok()?;
        match v.get("token")? {
            serde_json::Value::Null if self.is_open() => Some(self.all.clone()),
            n => {
                let i = usize::try_from(n.as_u64()?).ok()?;
                self.inner.tokens.get(i).map(|(_, g)| g.clone())
            }
        }
    }

    /// A session (the value of an HttpOnly cookie) for `grant`.
    #[must_use]
    pub fn open_session(&self, grant: Arc<Grant>) -> String {
        Self::issue(&self.inner.sessions, grant, SESSION_TTL)
    }

    /// The rights of a live session.
    #[must_use]
    pub fn session(&self, id: &str) -> Option<Arc<Grant>> {
        let sessions = self.inner.sessions.lock();
        let (grant, until) = sessions.get(id)?;
        (*until > Instant::now()).then(|| grant.clone())
    }

    /// Ends a session.
    pub fn close_session(&self, id: &str) {
        self.inner.sessions.lock().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_like: Vec<TokenConfig>) -> Auth {
        Auth::new(&AuthConfig { tokens: toml_like }).unwrap()
    }

    #[test]
    fn tokens_grant_by_topic_pattern() {
        let digest = hex(&sha256(b"hashed"));
        let auth = config(vec![
            TokenConfig {
                token: Some("a-writer".into()),
                publish: vec!["a.*".into()],
                subscribe: vec!["a.*".into(), "public".into()],
                ..TokenConfig::default()
            },
            TokenConfig {
                token_sha256: Some(digest),
                admin: true,
                ..TokenConfig::default()
            },
        ]);
        assert!(!auth.is_open());
        assert!(auth.authenticate(None).is_none());
        assert!(auth.authenticate(Some("wrong")).is_none());
        let g = auth.authenticate(Some("a-writer")).unwrap();
        assert!(g.can_publish("a.x") && g.can_subscribe("a.y") && g.can_subscribe("public"));
        assert!(!g.can_publish("b") && !g.can_subscribe("b") && !g.can_publish("public"));
        assert!(!g.can_subscribe("a") && !g.can_subscribe("publicity"));
        assert!(!g.is_admin());
        let admin = auth.authenticate(Some("hashed")).unwrap();
        assert!(admin.is_admin() && !admin.can_publish("a.x"));
        assert!(admin.can_see("anything"));
    }

    #[test]
    fn open_grants_everything() {
        let auth = Auth::open();
        assert!(auth.is_open());
        let g = auth.authenticate(None).unwrap();
        assert!(g.can_publish("x") && g.can_subscribe("y") && g.is_admin());
    }

    #[test]
    fn tickets_are_single_use_and_sessions_last() {
        let auth = config(vec![TokenConfig {
            token: Some("t".into()),
            subscribe: vec!["s".into()],
            ..TokenConfig::default()
        }]);
        let g = auth.authenticate(Some("t")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let broker =
            fanlog_broker::Broker::open(dir.path(), fanlog_broker::BrokerConfig::default())
                .unwrap();
        let meta = broker.meta();
        let ticket = auth.issue_ticket(meta, &g).unwrap();
        assert_eq!(auth.redeem_ticket(meta, &ticket), Some(g.clone()));
        assert_eq!(auth.redeem_ticket(meta, &ticket), None);
        assert_eq!(auth.redeem_ticket(meta, "made-up"), None);
        // A grant that is no token's gets no ticket.
        assert!(auth.issue_ticket(meta, &Arc::new(Grant::none())).is_err());
        let s = auth.open_session(g.clone());
        assert_eq!(auth.session(&s), Some(g.clone()));
        assert_eq!(auth.session(&s), Some(g));
        auth.close_session(&s);
        assert_eq!(auth.session(&s), None);
    }

    #[test]
    fn bad_entries_are_refused() {
        for t in [
            TokenConfig::default(),
            TokenConfig {
                token: Some("x".into()),
                token_sha256: Some("00".repeat(32)),
                ..TokenConfig::default()
            },
            TokenConfig {
                token_sha256: Some("zz".into()),
                ..TokenConfig::default()
            },
            TokenConfig {
                token: Some("x".into()),
                publish: vec!["a*b*".into()],
                ..TokenConfig::default()
            },
        ] {
            assert!(Auth::new(&AuthConfig { tokens: vec![t] }).is_err());
        }
    }
}
