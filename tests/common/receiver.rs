//! One webhook receiver for every test: a real HTTP server on 127.0.0.1
//! that records each request and answers by a script.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

/// One request the receiver saw.
#[derive(Debug, Clone)]
pub struct Hit {
    pub id: String,
    pub timestamp: u64,
    pub signature: String,
    pub content_type: String,
    pub body: Vec<u8>,
    pub at: Instant,
    /// What the receiver answered (0: it never answered).
    pub answered: u16,
    pub headers: HeaderMap,
}

/// What the receiver does with attempt `n` (0-based) of message `id`.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Status(u16),
    RetryAfter(u16, u64),
    /// No answer within this long (past the hook's timeout).
    Hang(Duration),
    /// 200 after this long.
    Slow(Duration),
}

pub type Script = Arc<dyn Fn(&str, usize) -> Reply + Send + Sync>;

pub struct Receiver {
    pub url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(script: Script) -> Self {
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let h = hits.clone();
        let handler = move |headers: HeaderMap, body: axum::body::Bytes| {
            let (hits, seen, script) = (h.clone(), seen.clone(), script.clone());
            async move {
                let get = |k: &str| {
                    headers
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                let id = get("webhook-id");
                let n = {
                    let mut s = seen.lock().unwrap();
                    let c = s.entry(id.clone()).or_default();
                    *c += 1;
                    *c - 1
                };
                let reply = script(&id, n);
                let answered = match reply {
                    Reply::Status(c) | Reply::RetryAfter(c, _) => c,
                    Reply::Hang(_) => 0,
                    Reply::Slow(_) => 200,
                };
                hits.lock().unwrap().push(Hit {
                    id,
                    timestamp: get("webhook-timestamp").parse().unwrap_or(0),
                    signature: get("webhook-signature"),
                    content_type: get("content-type"),
                    body: body.to_vec(),
                    at: Instant::now(),
                    answered,
                    headers: headers.clone(),
                });
                match reply {
                    // A REST Hooks handshake (no webhook-id) is echoed on 200.
                    Reply::Status(200) if headers.contains_key("x-hook-secret") => {
                        let mut h = HeaderMap::new();
                        h.insert("x-hook-secret", headers["x-hook-secret"].clone());
                        (StatusCode::OK, h)
                    }
                    Reply::Status(c) => (StatusCode::from_u16(c).unwrap(), HeaderMap::new()),
                    Reply::RetryAfter(c, secs) => {
                        let mut h = HeaderMap::new();
                        h.insert("retry-after", secs.to_string().parse().unwrap());
                        (StatusCode::from_u16(c).unwrap(), h)
                    }
                    Reply::Hang(d) | Reply::Slow(d) => {
                        tokio::time::sleep(d).await;
                        (StatusCode::OK, HeaderMap::new())
                    }
                }
            }
        };
        let app = axum::Router::new().route("/hook", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            hits,
            _task: task,
        }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Ids answered 2xx, in the order they were.
    pub fn accepted(&self) -> Vec<String> {
        self.hits()
            .into_iter()
            .filter(|h| (200..300).contains(&h.answered))
            .map(|h| h.id)
            .collect()
    }

    pub async fn wait_accepted(&self, n: usize, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.accepted();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

pub fn ids(topic: &str, range: std::ops::Range<u64>) -> Vec<String> {
    range.map(|s| format!("{topic}:{s}")).collect()
}

/// A header of a hit, or "" when absent.
pub fn header(h: &Hit, name: &str) -> String {
    h.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// POSTs a message with `headers` to the rig's broker: (status, answer).
pub async fn post(
    rig: &super::Rig,
    topic: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(rig.http.url(&format!("/topics/{topic}/messages")));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.body(body.to_owned()).send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}
