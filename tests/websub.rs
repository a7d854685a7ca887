//! The WebSub hub, recreating the websub.rocks hub tests 100-106 against a
//! real subscriber on 127.0.0.1: verification of intent, content
//! distribution with `Link` and `X-Hub-Signature`, extra parameters,
//! re-subscription, unsubscription, text and JSON topics; plus failed
//! verification, denial, lease expiry and bad requests.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query};
use axum::http::HeaderMap;
use fanlog::server::hooks::HooksConfig;
use serde_json::Value;

#[derive(Debug, Clone)]
struct Verification {
    callback: String,
    params: HashMap<String, String>,
}

#[derive(Debug, Clone)]
struct Delivery {
    callback: String,
    content_type: String,
    link: String,
    signature: Option<String>,
    body: Vec<u8>,
}

/// A WebSub subscriber: `GET /cb/{name}` answers verifications (names
/// starting with `ok` echo the challenge, others answer something else),
/// `POST /cb/{name}` takes content.
#[derive(Clone, Default)]
struct Subscriber {
    verifications: Arc<Mutex<Vec<Verification>>>,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    base: String,
}

impl Subscriber {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let me = Self {
            base: format!("http://{}", listener.local_addr().unwrap()),
            ..Self::default()
        };
        let (v, d) = (me.verifications.clone(), me.deliveries.clone());
        let app = axum::Router::new().route(
            "/cb/{name}",
            axum::routing::get(
                move |Path(name): Path<String>, Query(q): Query<HashMap<String, String>>| {
                    let v = v.clone();
                    async move {
                        let challenge = q.get("hub.challenge").cloned().unwrap_or_default();
                        v.lock().unwrap().push(Verification {
                            callback: name.clone(),
                            params: q,
                        });
                        if name.starts_with("ok") {
                            challenge
                        } else {
                            "not the challenge".into()
                        }
                    }
                },
            )
            .post(
                move |Path(name): Path<String>, headers: HeaderMap, body: axum::body::Bytes| {
                    let d = d.clone();
                    async move {
                        let h = |k: &str| {
                            headers
                                .get(k)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned)
                        };
                        d.lock().unwrap().push(Delivery {
                            callback: name,
                            content_type: h("content-type").unwrap_or_default(),
                            link: h("link").unwrap_or_default(),
                            signature: h("x-hub-signature"),
                            body: body.to_vec(),
                        });
                        ""
                    }
                },
            ),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        me
    }

    fn callback(&self, name: &str) -> String {
        format!("{}/cb/{name}", self.base)
    }

    fn verifications(&self, name: &str) -> Vec<HashMap<String, String>> {
        self.verifications
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v.callback == name)
            .map(|v| v.params.clone())
            .collect()
    }

    fn deliveries(&self, name: &str) -> Vec<Delivery> {
        self.deliveries
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.callback == name)
            .cloned()
            .collect()
    }
}

async fn until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn hub(rig: &common::Rig, params: &[(&str, &str)]) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(rig.http.url("/websub"))
        .form(params)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn publish(rig: &common::Rig, topic: &str, content_type: &str, body: &str) {
    let resp = reqwest::Client::new()
        .post(rig.http.url(&format!("/topics/{topic}/messages")))
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
}

async fn websub_hooks(rig: &common::Rig) -> Vec<Value> {
    let (_, all) = rig.get("/hooks").await;
    all.as_array()
        .unwrap()
        .iter()
        .filter(|h| h["kind"] == "websub")
        .cloned()
        .collect()
}

/// Subscribes `name` to `topic` and waits until the hub verified and
/// activated it.
async fn subscribe(
    rig: &common::Rig,
    sub: &Subscriber,
    name: &str,
    topic: &str,
    extra: &[(&str, &str)],
) {
    let before = sub.verifications(name).len();
    let topic_url = rig.http.url(&format!("/topics/{topic}"));
    let callback = sub.callback(name);
    let mut params = vec![
        ("hub.mode", "subscribe"),
        ("hub.topic", topic_url.as_str()),
        ("hub.callback", callback.as_str()),
    ];
    params.extend_from_slice(extra);
    let (status, body) = hub(rig, &params).await;
    assert_eq!(status, 202, "{body}");
    until("verification", Duration::from_secs(10), || {
        sub.verifications(name).len() > before
    })
    .await;
    let callback = sub.callback(name);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !websub_hooks(rig)
        .await
        .iter()
        .any(|h| h["url"] == callback.as_str())
    {
        assert!(
            Instant::now() < deadline,
            "subscription of {name} not active"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&k, body)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_100_to_106_websub_rocks_hub_recreations() {
    let dir = tempfile::tempdir().unwrap();
    let rig = common::Rig::start(dir.path(), common::local_hooks()).await;
    let sub = Subscriber::start().await;
    let topic_url = rig.http.url("/topics/news");
    let hub_url = rig.http.url("/websub");

    // The topic URL advertises the hub (discovery).
    publish(&rig, "news", "text/plain", "before anyone subscribed").await;
    let resp = reqwest::get(&topic_url).await.unwrap();
    let link = resp.headers()["link"].to_str().unwrap().to_owned();
    assert_eq!(
        link,
        format!("<{hub_url}>; rel=\"hub\", <{topic_url}>; rel=\"self\"")
    );

    // 100: a typical subscription, no secret.
    subscribe(&rig, &sub, "ok100", "news", &[]).await;
    let v = &sub.verifications("ok100")[0];
    assert_eq!(v["hub.mode"], "subscribe");
    assert_eq!(v["hub.topic"], topic_url);
    assert_eq!(
        v["hub.lease_seconds"], "864000",
        "the default lease is 10 days"
    );
    assert!(v["hub.challenge"].len() >= 16);
    // 101: with a secret.
    subscribe(&rig, &sub, "ok101", "news", &[("hub.secret", "s3cr3t")]).await;
    // 102: extra parameters are ignored.
    subscribe(
        &rig,
        &sub,
        "ok102",
        "news",
        &[
            ("foo", "bar"),
            ("hub.unknown", "1"),
            ("hub.lease_seconds", "3600"),
        ],
    )
    .await;
    assert_eq!(sub.verifications("ok102")[0]["hub.lease_seconds"], "3600");
    // 103: subscribing again replaces the subscription.
    subscribe(
        &rig,
        &sub,
        "ok103",
        "news",
        &[("hub.lease_seconds", "3600")],
    )
    .await;
    subscribe(
        &rig,
        &sub,
        "ok103",
        "news",
        &[("hub.lease_seconds", "7200")],
    )
    .await;
    assert_eq!(
        websub_hooks(&rig)
            .await
            .iter()
            .filter(|h| h["url"] == sub.callback("ok103").as_str())
            .count(),
        1
    );

    // 105 and 106: a text topic and a JSON topic; each message reaches
    // every subscriber once, with its own Content-Type and the links.
    publish(&rig, "news", "text/plain", "hello, world").await;
    publish(&rig, "news", "application/json", r#"{"headline":"json"}"#).await;
    for name in ["ok100", "ok101", "ok102", "ok103"] {
        until(name, Duration::from_secs(10), || {
            sub.deliveries(name).len() >= 2
        })
        .await;
        let d = sub.deliveries(name);
        assert_eq!(d.len(), 2, "{name}: only new content, each once");
        assert_eq!(
            (d[0].content_type.as_str(), &d[0].body[..]),
            ("text/plain", &b"hello, world"[..])
        );
        assert_eq!(
            (d[1].content_type.as_str(), &d[1].body[..]),
            ("application/json", &br#"{"headline":"json"}"#[..])
        );
        for x in &d {
            assert_eq!(x.link, link, "{name}");
            if name == "ok101" {
                let want = format!("sha256={}", hmac_hex(b"s3cr3t", &x.body));
                assert_eq!(x.signature.as_deref(), Some(want.as_str()));
            } else {
                assert_eq!(x.signature, None, "{name}");
            }
        }
    }

    // 104: unsubscribe, verified, stops delivery.
    let cb = sub.callback("ok100");
    let (status, _) = hub(
        &rig,
        &[
            ("hub.mode", "unsubscribe"),
            ("hub.topic", topic_url.as_str()),
            ("hub.callback", cb.as_str()),
        ],
    )
    .await;
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    while websub_hooks(&rig)
        .await
        .iter()
        .any(|h| h["url"] == cb.as_str())
    {
        assert!(Instant::now() < deadline, "not unsubscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        sub.verifications("ok100").last().unwrap()["hub.mode"],
        "unsubscribe"
    );
    publish(&rig, "news", "text/plain", "after").await;
    until("ok101", Duration::from_secs(10), || {
        sub.deliveries("ok101").len() >= 3
    })
    .await;
    assert_eq!(
        sub.deliveries("ok100").len(),
        2,
        "nothing after unsubscribing"
    );

    // hub.mode=publish naming a topic of this hub is accepted.
    let (status, _) = hub(
        &rig,
        &[("hub.mode", "publish"), ("hub.url", topic_url.as_str())],
    )
    .await;
    assert_eq!(status, 202);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_verification_denial_leases_and_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let config = HooksConfig {
        lease_min: Duration::from_secs(1),
        ..common::local_hooks()
    };
    let rig = common::Rig::start(dir.path(), config).await;
    let sub = Subscriber::start().await;
    let topic_url = rig.http.url("/topics/t");

    // A callback that does not echo the challenge gets nothing.
    let bad = sub.callback("wrong");
    let (s, _) = hub(
        &rig,
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", topic_url.as_str()),
            ("hub.callback", bad.as_str()),
        ],
    )
    .await;
    assert_eq!(s, 202);
    until("verification", Duration::from_secs(10), || {
        !sub.verifications("wrong").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(websub_hooks(&rig).await.is_empty());

    // A failed unsubscribe verification leaves the subscription in place.
    subscribe(&rig, &sub, "ok-keep", "t", &[]).await;
    let (s, _) = hub(
        &rig,
        &[
            ("hub.mode", "unsubscribe"),
            ("hub.topic", topic_url.as_str()),
            ("hub.callback", bad.as_str()),
        ],
    )
    .await;
    assert_eq!(s, 202);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(websub_hooks(&rig).await.len(), 1);

    // A topic the hub does not serve is denied at the callback.
    let elsewhere = rig.http.url("/not-a-topic/x");
    let cb = sub.callback("ok-denied");
    let (s, _) = hub(
        &rig,
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", elsewhere.as_str()),
            ("hub.callback", cb.as_str()),
        ],
    )
    .await;
    assert_eq!(s, 202);
    until("denial", Duration::from_secs(10), || {
        !sub.verifications("ok-denied").is_empty()
    })
    .await;
    let d = &sub.verifications("ok-denied")[0];
    assert_eq!(
        (d["hub.mode"].as_str(), d["hub.topic"].as_str()),
        ("denied", elsewhere.as_str())
    );
    assert!(!d["hub.reason"].is_empty());

    // A topic URL of another host is denied too: this hub serves its own.
    let foreign = "http://other.example/topics/t";
    let cb = sub.callback("ok-foreign");
    let (s, _) = hub(
        &rig,
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", foreign),
            ("hub.callback", cb.as_str()),
        ],
    )
    .await;
    assert_eq!(s, 202);
    until("foreign denial", Duration::from_secs(10), || {
        !sub.verifications("ok-foreign").is_empty()
    })
    .await;
    let d = &sub.verifications("ok-foreign")[0];
    assert_eq!(
        (d["hub.mode"].as_str(), d["hub.topic"].as_str()),
        ("denied", foreign)
    );

    // A lease ends the subscription (1 s, the configured minimum; asking
    // for 0 is raised to it).
    subscribe(&rig, &sub, "ok-lease", "t", &[("hub.lease_seconds", "0")]).await;
    assert_eq!(sub.verifications("ok-lease")[0]["hub.lease_seconds"], "1");
    let cb = sub.callback("ok-lease");
    let deadline = Instant::now() + Duration::from_secs(10);
    while websub_hooks(&rig)
        .await
        .iter()
        .any(|h| h["url"] == cb.as_str())
    {
        assert!(Instant::now() < deadline, "the lease did not end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    publish(&rig, "t", "text/plain", "late").await;
    until("ok-keep", Duration::from_secs(10), || {
        !sub.deliveries("ok-keep").is_empty()
    })
    .await;
    assert!(sub.deliveries("ok-lease").is_empty());

    // Bad requests: 400 with a reason.
    let ok_cb = sub.callback("ok-x");
    let long_secret = "x".repeat(200);
    for params in [
        vec![
            ("hub.topic", topic_url.as_str()),
            ("hub.callback", ok_cb.as_str()),
        ],
        vec![
            ("hub.mode", "watch"),
            ("hub.topic", topic_url.as_str()),
            ("hub.callback", ok_cb.as_str()),
        ],
        vec![("hub.mode", "subscribe"), ("hub.topic", topic_url.as_str())],
        vec![("hub.mode", "subscribe"), ("hub.callback", ok_cb.as_str())],
        vec![
            ("hub.mode", "subscribe"),
            ("hub.topic", topic_url.as_str()),
            ("hub.callback", "not a url"),
        ],
        vec![
            ("hub.mode", "subscribe"),
            ("hub.topic", topic_url.as_str()),
            ("hub.callback", "http://10.0.0.1/cb"),
        ],
        vec![
            ("hub.mode", "subscribe"),
            ("hub.topic", topic_url.as_str()),
            ("hub.callback", ok_cb.as_str()),
            ("hub.secret", long_secret.as_str()),
        ],
        vec![("hub.mode", "publish"), ("hub.url", "http://h/elsewhere")],
    ] {
        let (s, body) = hub(&rig, &params).await;
        assert_eq!(s, 400, "{params:?}: {body}");
        assert!(body.contains("error"), "{body}");
    }
    rig.stop().await;
}
