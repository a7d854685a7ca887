//! Webhooks over REST Hooks, against real HTTP receivers on 127.0.0.1:
//! ordered delivery with Standard Webhooks signatures, retries on the
//! schedule, `Retry-After`, 410 Gone, a restart in the middle, the SSRF
//! guard, and CloudEvents in (structured and binary) and out (binary and
//! structured, with a type filter).

mod common;

use common::receiver::{Hit, Receiver, Reply, header, ids, post};

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use fanlog::server::hooks::HooksConfig;
use fanlog::server::hooks::sign::Secret;
use serde_json::{Value, json};
use std::sync::Mutex;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_in_order_with_standard_webhooks_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let rig = common::Rig::start(dir.path(), common::local_hooks()).await;
    let rx = Receiver::start(Arc::new(|_, _| Reply::Status(204))).await;
    rig.publish("orders", 5).await;
    // From seq 2: the earlier two are not delivered.
    let (status, hook) = rig
        .create(json!({"topic": "orders", "url": rx.url, "from": 2}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    let secret = Secret::parse(hook["secret"].as_str().unwrap()).unwrap();
    let id = hook["id"].as_str().unwrap().to_owned();
    rig.publish("orders", 45).await;
    let got = rx.wait_accepted(48, Duration::from_secs(20)).await;
    assert_eq!(got, ids("orders", 2..50));
    for h in rx.hits() {
        assert_eq!(
            h.signature,
            secret.sign(&h.id, h.timestamp, &h.body),
            "signature of {}",
            h.id
        );
        assert_eq!(h.content_type, "application/json");
        // Seqs 0..5 carry n = 0..5, then seqs 5..50 carry n = 0..45.
        let seq: u64 = h.id.rsplit(':').next().unwrap().parse().unwrap();
        let n = if seq < 5 { seq } else { seq - 5 };
        assert_eq!(h.body, format!("{{\"n\":{n}}}").into_bytes());
    }
    let (s, view) = rig.get(&format!("/hooks/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (view["cursor"].as_u64(), view["lag"].as_u64()),
        (Some(50), Some(0)),
        "{view}"
    );
    assert_eq!(view["state"], "active");
    assert!(
        view.get("secret").is_none(),
        "the secret is shown once: {view}"
    );
    let (_, all) = rig.get("/hooks").await;
    assert_eq!(all.as_array().unwrap().len(), 1);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_receiver_gets_everything_in_order_on_the_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let schedule = [100, 200, 400].map(Duration::from_millis);
    let config = HooksConfig {
        retry_schedule: schedule.to_vec(),
        jitter: 0.2,
        timeout: Duration::from_millis(500),
        ..common::local_hooks()
    };
    let rig = common::Rig::start(dir.path(), config).await;
    // t:3 fails three times (500, 502, refused-like 503 without a hint),
    // t:5 hangs past the timeout once, t:7 is rate limited with
    // Retry-After: 1, t:9 fails and then flaps.
    let rx = Receiver::start(Arc::new(|id, n| match (id, n) {
        ("t:3", 0) => Reply::Status(500),
        ("t:3", 1) => Reply::Status(502),
        ("t:3", 2) => Reply::Status(503),
        ("t:5", 0) => Reply::Hang(Duration::from_secs(2)),
        ("t:7", 0) => Reply::RetryAfter(429, 1),
        ("t:9", 0 | 2) => Reply::Status(500),
        ("t:9", 1) => Reply::Status(301),
        _ => Reply::Status(200),
    }))
    .await;
    let (status, _) = rig.create(json!({"topic": "t", "url": rx.url})).await;
    assert_eq!(status, StatusCode::CREATED);
    rig.publish("t", 12).await;
    let got = rx.wait_accepted(12, Duration::from_secs(30)).await;
    assert_eq!(got, ids("t", 0..12), "every message once, in order");
    let hits = rx.hits();
    let times =
        |id: &str| -> Vec<Instant> { hits.iter().filter(|h| h.id == id).map(|h| h.at).collect() };
    // Retries of t:3 follow the schedule (jitter at most 20%).
    let t3 = times("t:3");
    assert_eq!(t3.len(), 4);
    for (i, w) in t3.windows(2).enumerate() {
        let gap = w[1] - w[0];
        assert!(
            gap >= schedule[i].mul_f64(0.8)
                && gap < schedule[i].mul_f64(1.2) + Duration::from_millis(300),
            "retry {i} of t:3 after {gap:?}, schedule {:?}",
            schedule[i]
        );
    }
    // Retry-After wins over the schedule.
    let t7 = times("t:7");
    assert!(
        t7[1] - t7[0] >= Duration::from_millis(950),
        "{:?}",
        t7[1] - t7[0]
    );
    // A hang is a timeout, then a retry.
    assert_eq!(times("t:5").len(), 2);
    // Nothing after a message is sent before it is accepted.
    let first_t4 = times("t:4")[0];
    assert!(t3.iter().all(|t| *t < first_t4));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_loses_and_reorders_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(Arc::new(|_, _| Reply::Slow(Duration::from_millis(5)))).await;
    let rig = common::Rig::start(dir.path(), common::local_hooks()).await;
    let (_, hook) = rig.create(json!({"topic": "r", "url": rx.url})).await;
    let id = hook["id"].as_str().unwrap().to_owned();
    rig.publish("r", 200).await;
    rx.wait_accepted(40, Duration::from_secs(20)).await;
    rig.stop().await;
    let before = rx.accepted().len();
    assert!(before < 200, "the restart comes in the middle");

    let rig = common::Rig::start(dir.path(), common::local_hooks()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while rx.accepted().last().map(String::as_str) != Some("r:199") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = rx.accepted();
    // At least once: the message in flight at the stop may come twice, in
    // place; nothing is skipped or out of order.
    let mut dedup = got.clone();
    dedup.dedup();
    assert_eq!(dedup, ids("r", 0..200));
    assert!(
        got.len() - dedup.len() <= 1,
        "{} duplicates",
        got.len() - dedup.len()
    );
    // The last commit follows the last answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, view) = rig.get(&format!("/hooks/{id}")).await;
        if view["cursor"] == 200 && view["lag"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{view}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_deletes_the_hook() {
    let dir = tempfile::tempdir().unwrap();
    let rig = common::Rig::start(dir.path(), common::local_hooks()).await;
    let rx = Receiver::start(Arc::new(|id, _| {
        if id == "g:2" {
            Reply::Status(410)
        } else {
            Reply::Status(200)
        }
    }))
    .await;
    let (_, hook) = rig.create(json!({"topic": "g", "url": rx.url})).await;
    let id = hook["id"].as_str().unwrap().to_owned();
    rig.publish("g", 5).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while rig.get(&format!("/hooks/{id}")).await.0 != StatusCode::NOT_FOUND {
        assert!(Instant::now() < deadline, "the hook was not deleted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rx.accepted(), ids("g", 0..2));
    assert_eq!(rx.hits().len(), 3, "nothing is sent after 410");
    let stored = std::fs::read_to_string(dir.path().join("hooks.json")).unwrap();
    assert!(!stored.contains(&id), "{stored}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_failing_for_too_long_is_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let config = HooksConfig {
        retry_schedule: vec![Duration::from_millis(50)],
        disable_after: Duration::from_millis(400),
        ..common::local_hooks()
    };
    let rig = common::Rig::start(dir.path(), config).await;
    let rx = Receiver::start(Arc::new(|_, _| Reply::Status(500))).await;
    let (_, hook) = rig.create(json!({"topic": "d", "url": rx.url})).await;
    let id = hook["id"].as_str().unwrap().to_owned();
    rig.publish("d", 3).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = rig.get(&format!("/hooks/{id}")).await;
        if v["state"] == "disabled" {
            assert_eq!(v["cursor"], 0, "{v}");
            assert_eq!(v["last_status"], 500, "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "not disabled: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let n = rx.hits().len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.hits().len(), n, "a disabled hook sends nothing");
    assert!(rx.hits().iter().all(|h| h.id == "d:0"));
    rig.stop().await;
    // Still disabled, with its cursor, after a restart.
    let rig = common::Rig::start(dir.path(), common::local_hooks()).await;
    let (_, v) = rig.get(&format!("/hooks/{id}")).await;
    assert_eq!(
        (v["state"].as_str(), v["cursor"].as_u64()),
        (Some("disabled"), Some(0))
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_the_ssrf_guard() {
    let dir = tempfile::tempdir().unwrap();
    // No allow-list: the guard refuses every loopback and private target.
    let rig = common::Rig::start(dir.path(), HooksConfig::default()).await;
    for url in [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:9/hook",
        "http://localhost:9/hook",
        "http://127.0.0.1:9/hook",
        "http://[::ffff:127.0.0.1]/",
    ] {
        let (s, v) = rig.create(json!({"topic": "t", "url": url})).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{url}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains("refused"),
            "{url}: {v}"
        );
    }
    for (body, why) in [
        (
            json!({"topic": "bad topic", "url": "http://93.184.216.34/"}),
            "topic",
        ),
        (json!({"topic": "t", "url": "not a url"}), "url"),
        (json!({"topic": "t", "url": "ftp://93.184.216.34/"}), "http"),
        (json!({"topic": "t"}), "url"),
        (
            json!({"topic": "t", "url": "http://93.184.216.34/", "secret": "nope"}),
            "whsec_",
        ),
        (
            json!({"topic": "t", "url": "http://93.184.216.34/", "from": 99}),
            "past the end",
        ),
    ] {
        let (s, v) = rig.create(body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v["error"].as_str().unwrap().contains(why), "{body}: {v}");
    }
    let resp = reqwest::Client::new()
        .post(rig.http.url("/hooks"))
        .header("content-type", "application/json")
        .body("{broken")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let resp = reqwest::Client::new()
        .delete(rig.http.url("/hooks/hook_nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(rig.get("/hooks/hook_nope").await.0, StatusCode::NOT_FOUND);
    assert_eq!(rig.get("/hooks").await.1, json!([]));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_no_longer_allowed_is_not_delivered_to() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(Arc::new(|_, _| Reply::Status(200))).await;
    let rig = common::Rig::start(dir.path(), common::local_hooks()).await;
    let (_, hook) = rig.create(json!({"topic": "a", "url": rx.url})).await;
    let id = hook["id"].as_str().unwrap().to_owned();
    rig.stop().await;
    // The next run does not allow 127.0.0.1 any more.
    let rig = common::Rig::start(dir.path(), HooksConfig::default()).await;
    rig.publish("a", 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, v) = rig.get(&format!("/hooks/{id}")).await;
    assert_eq!(v["state"], "disabled", "{v}");
    assert!(v["last_error"].as_str().unwrap().contains("refused"), "{v}");
    assert!(rx.hits().is_empty());
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_round_trip_to_hooks_in_both_modes() {
    let dir = tempfile::tempdir().unwrap();
    let rig = common::Rig::start(dir.path(), common::local_hooks()).await;
    let binary_rx = Receiver::start(Arc::new(|_, _| Reply::Status(200))).await;
    let structured_rx = Receiver::start(Arc::new(|_, _| Reply::Status(200))).await;
    let created_rx = Receiver::start(Arc::new(|_, _| Reply::Status(200))).await;
    for (rx, extra) in [
        (&binary_rx, json!({})),
        (&structured_rx, json!({"delivery": "structured"})),
        (&created_rx, json!({"types": ["order.created"]})),
    ] {
        let mut body = json!({"topic": "ce", "url": rx.url});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (s, v) = rig.create(body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    // seq 0: structured in.
    let (s, v) = post(
        &rig,
        "ce",
        &[("content-type", "application/cloudevents+json")],
        r#"{"specversion":"1.0","id":"A-1","source":"/shop","type":"order.created",
            "datacontenttype":"application/json","data":{"total":12},"tenant":"acme"}"#,
    )
    .await;
    assert_eq!((s, v["seq"].as_u64()), (201, Some(0)), "{v}");
    // seq 1: binary in.
    let (s, v) = post(
        &rig,
        "ce",
        &[
            ("content-type", "text/plain"),
            ("ce-specversion", "1.0"),
            ("ce-id", "B-2"),
            ("ce-source", "/shop"),
            ("ce-type", "order.shipped"),
        ],
        "parcel 7",
    )
    .await;
    assert_eq!((s, v["seq"].as_u64()), (201, Some(1)), "{v}");
    // seq 2: not a CloudEvent.
    assert_eq!(post(&rig, "ce", &[], "plain").await.0, 201);

    let got = binary_rx.wait_accepted(3, Duration::from_secs(10)).await;
    assert_eq!(got, ids("ce", 0..3));
    let hits = binary_rx.hits();
    assert_eq!(hits[0].body, br#"{"total":12}"#);
    assert_eq!(header(&hits[0], "content-type"), "application/json");
    for (k, v) in [
        ("ce-specversion", "1.0"),
        ("ce-id", "A-1"),
        ("ce-source", "/shop"),
        ("ce-type", "order.created"),
        ("ce-tenant", "acme"),
        ("ce-sequence", "00000000000000000000"),
    ] {
        assert_eq!(header(&hits[0], k), v, "{k}");
    }
    assert_eq!(hits[1].body, b"parcel 7");
    assert_eq!(header(&hits[1], "content-type"), "text/plain");
    assert_eq!(header(&hits[1], "ce-id"), "B-2");
    assert_eq!(header(&hits[1], "ce-sequence"), "00000000000000000001");
    assert_eq!(hits[2].body, b"plain");
    assert_eq!(header(&hits[2], "ce-id"), "");

    structured_rx
        .wait_accepted(3, Duration::from_secs(10))
        .await;
    let hits = structured_rx.hits();
    assert_eq!(
        header(&hits[0], "content-type"),
        "application/cloudevents+json"
    );
    let e0: Value = serde_json::from_slice(&hits[0].body).unwrap();
    assert_eq!(
        (
            &e0["id"],
            &e0["type"],
            &e0["data"]["total"],
            &e0["sequence"],
            &e0["tenant"]
        ),
        (
            &json!("A-1"),
            &json!("order.created"),
            &json!(12),
            &json!("00000000000000000000"),
            &json!("acme")
        )
    );
    let e1: Value = serde_json::from_slice(&hits[1].body).unwrap();
    assert_eq!(
        (&e1["data"], &e1["datacontenttype"]),
        (&json!("parcel 7"), &json!("text/plain"))
    );
    assert_eq!(hits[2].body, b"plain", "a plain message stays plain");

    // The type filter passes over the rest, and its cursor still moves.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(created_rx.accepted(), ids("ce", 0..1));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_cloudevents_are_refused_and_nothing_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let rig = common::Rig::start(dir.path(), common::local_hooks()).await;
    assert_eq!(post(&rig, "v", &[], "first").await.0, 201);
    let structured = [("content-type", "application/cloudevents+json")];
    for body in [
        r#"{"specversion":"1.0","source":"/s","type":"t"}"#,
        r#"{"specversion":"1.0","id":"1","type":"t"}"#,
        r#"{"specversion":"1.0","id":"1","source":"/s"}"#,
        r#"{"specversion":"0.3","id":"1","source":"/s","type":"t"}"#,
        r#"{"id":"1","source":"/s","type":"t"}"#,
        r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":1,"data_base64":"AA=="}"#,
        "{broken",
    ] {
        let (s, v) = post(&rig, "v", &structured, body).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert!(v["error"].as_str().is_some(), "{v}");
    }
    for missing in ["ce-id", "ce-source", "ce-type", "ce-specversion"] {
        let headers: Vec<(&str, &str)> = [
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
        ]
        .into_iter()
        .filter(|(k, _)| *k != missing)
        .collect();
        let (s, v) = post(&rig, "v", &headers, "x").await;
        assert_eq!(s, 400, "without {missing}: {v}");
    }
    let (s, v) = post(
        &rig,
        "v",
        &[
            ("ce-specversion", "2.0"),
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
        ],
        "x",
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let (_, info) = rig.get("/topics/v").await;
    assert_eq!(info["next_seq"], 1, "nothing appended: {info}");
    rig.stop().await;
}

/// An https receiver on 127.0.0.1 with a certificate for 127.0.0.1; returns
/// its URL, the certificate (PEM) and the requests' `webhook-id`s.
async fn https_receiver() -> (String, String, Arc<Mutex<Vec<String>>>) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let pem = cert.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/hook", listener.local_addr().unwrap());
    let ids: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = ids.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                let id = headers["webhook-id"].to_str().unwrap().to_owned();
                seen.lock().unwrap().push(id);
                StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
            });
        }
    });
    (url, pem, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_targets_are_verified_against_trusted_roots() {
    let (url, pem, seen) = https_receiver().await;
    // Trusted: every message arrives over TLS.
    let dir = tempfile::tempdir().unwrap();
    let trusted = HooksConfig {
        trust_pem: vec![pem.into_bytes()],
        ..common::local_hooks()
    };
    let rig = common::Rig::start(dir.path(), trusted).await;
    let (s, v) = rig.create(json!({"topic": "tls", "url": url})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    rig.publish("tls", 5).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < 5 {
        assert!(Instant::now() < deadline, "no https deliveries");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(*seen.lock().unwrap(), ids("tls", 0..5));
    rig.stop().await;

    // Not trusted (a self-signed certificate outside the roots): the
    // attempt fails with a certificate error and nothing is delivered.
    let rig = common::Rig::start(dir.path(), common::local_hooks()).await;
    rig.publish("tls", 1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = rig.get(&format!("/hooks/{id}")).await;
        if v["attempts"].as_u64() >= Some(1) {
            let err = v["last_error"].as_str().unwrap().to_lowercase();
            assert!(err.contains("certificate"), "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen.lock().unwrap().len(), 5);
    rig.stop().await;
}

async fn send(method: reqwest::Method, url: String, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .request(method, url)
        .json(&body)
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_the_old_signature_during_its_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let rig = common::Rig::start(dir.path(), common::local_hooks()).await;
    let rx = Receiver::start(Arc::new(|_, _| Reply::Status(200))).await;
    let (_, hook) = rig.create(json!({"topic": "rot", "url": rx.url})).await;
    let id = hook["id"].as_str().unwrap().to_owned();
    let old = Secret::parse(hook["secret"].as_str().unwrap()).unwrap();
    rig.publish("rot", 1).await;
    rx.wait_accepted(1, Duration::from_secs(10)).await;

    let url = rig.http.url(&format!("/hooks/{id}/rotate"));
    let (s, v) = send(
        reqwest::Method::POST,
        url.clone(),
        json!({"grace_seconds": 1}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let new = Secret::parse(v["secret"].as_str().unwrap()).unwrap();
    assert_ne!(new, old);
    rig.publish("rot", 1).await;
    rx.wait_accepted(2, Duration::from_secs(10)).await;
    // Past the grace period only the new secret signs.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    rig.publish("rot", 1).await;
    let got = rx.wait_accepted(3, Duration::from_secs(10)).await;
    assert_eq!(got, ids("rot", 0..3), "the cursor was kept");
    let hits = rx.hits();
    let sigs = |h: &Hit| -> Vec<String> { h.signature.split(' ').map(str::to_owned).collect() };
    assert_eq!(
        sigs(&hits[0]),
        [old.sign(&hits[0].id, hits[0].timestamp, &hits[0].body)]
    );
    assert_eq!(
        sigs(&hits[1]),
        [
            new.sign(&hits[1].id, hits[1].timestamp, &hits[1].body),
            old.sign(&hits[1].id, hits[1].timestamp, &hits[1].body)
        ]
    );
    assert_eq!(
        sigs(&hits[2]),
        [new.sign(&hits[2].id, hits[2].timestamp, &hits[2].body)]
    );

    let (s, _) = send(reqwest::Method::POST, url, json!({"secret": "nope"})).await;
    assert_eq!(s, 400);
    let (s, _) = send(
        reqwest::Method::POST,
        rig.http.url("/hooks/hook_x/rotate"),
        json!({}),
    )
    .await;
    assert_eq!(s, 404);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_hook_re_enabled_resumes_at_its_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let config = HooksConfig {
        retry_schedule: vec![Duration::from_millis(30)],
        disable_after: Duration::from_millis(200),
        ..common::local_hooks()
    };
    let rig = common::Rig::start(dir.path(), config).await;
    // The receiver is down (500) until `up`.
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let is_up = up.clone();
    let rx = Receiver::start(Arc::new(move |_, _| {
        if is_up.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::Status(200)
        } else {
            Reply::Status(500)
        }
    }))
    .await;
    let (_, hook) = rig.create(json!({"topic": "re", "url": rx.url})).await;
    let id = hook["id"].as_str().unwrap().to_owned();
    rig.publish("re", 5).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while rig.get(&format!("/hooks/{id}")).await.1["state"] != "disabled" {
        assert!(Instant::now() < deadline, "not disabled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let tries = rx.hits().len();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.hits().len(), tries, "a disabled hook sends nothing");
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    let url = rig.http.url(&format!("/hooks/{id}"));
    let (s, v) = send(
        reqwest::Method::PATCH,
        url.clone(),
        json!({"state": "active"}),
    )
    .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("active")), "{v}");
    let got = rx.wait_accepted(5, Duration::from_secs(10)).await;
    assert_eq!(got, ids("re", 0..5));
    let (s, _) = send(
        reqwest::Method::PATCH,
        url.clone(),
        json!({"state": "sleeping"}),
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = send(reqwest::Method::PATCH, url, json!({"rate_limit": -1})).await;
    assert_eq!(s, 400);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_and_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let rig = common::Rig::start(dir.path(), common::local_hooks()).await;
    // A target that echoes X-Hook-Secret is created; one that does not is
    // refused and nothing is stored.
    let echo = Receiver::start(Arc::new(|_, _| Reply::Status(200))).await;
    let (s, hook) = rig
        .create(json!({"topic": "hs", "url": echo.url, "handshake": true, "rate_limit": 20.0}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{hook}");
    let first = &echo.hits()[0];
    assert_eq!(
        first.headers["x-hook-secret"].to_str().unwrap(),
        hook["secret"].as_str().unwrap()
    );
    let silent = Receiver::start(Arc::new(|_, _| Reply::Status(204))).await;
    let (s, v) = rig
        .create(json!({"topic": "hs", "url": silent.url, "handshake": true}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("X-Hook-Secret"),
        "{v}"
    );
    assert_eq!(rig.get("/hooks").await.1.as_array().unwrap().len(), 1);

    // 20 per second: deliveries at least 50 ms apart.
    rig.publish("hs", 6).await;
    echo.wait_accepted(7, Duration::from_secs(10)).await;
    let times: Vec<Instant> = echo.hits()[1..].iter().map(|h| h.at).collect();
    assert_eq!(times.len(), 6);
    for w in times.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(45),
            "{:?}",
            w[1] - w[0]
        );
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_hooks_on_one_topic_each_get_every_message_in_order() {
    // The full 1,000 x 1,000 run with its deliveries per second is
    // `cargo bench --bench hooks`; here 1,000 hooks x 10 messages.
    const HOOKS: usize = 1000;
    const MSGS: u64 = 10;
    common::raise_fd_limit();
    let got: Arc<Mutex<Vec<Vec<u64>>>> = Arc::new(Mutex::new(vec![Vec::new(); HOOKS]));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/h/{i}",
        axum::routing::post(
            move |axum::extract::Path(i): axum::extract::Path<usize>, headers: HeaderMap| {
                let g = g.clone();
                async move {
                    let id = headers["webhook-id"].to_str().unwrap();
                    let seq = id.rsplit(':').next().unwrap().parse().unwrap();
                    g.lock().unwrap()[i].push(seq);
                    StatusCode::NO_CONTENT
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let rig = common::Rig::start(dir.path(), common::local_hooks()).await;
    for i in 0..HOOKS {
        rig.hooks
            .create(fanlog::server::hooks::NewHook {
                topic: "many".into(),
                url: format!("{base}/h/{i}"),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    rig.publish("many", MSGS).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = got
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v.len() as u64 >= MSGS)
            .count();
        if done == HOOKS {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {HOOKS} hooks complete"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let want: Vec<u64> = (0..MSGS).collect();
    for (i, v) in got.lock().unwrap().iter().enumerate() {
        assert_eq!(v, &want, "hook {i}");
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_cloudevents_when_a_hook_asks_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let rig = common::Rig::start(dir.path(), common::local_hooks()).await;
    // 250 messages already stored: CloudEvents and plain ones, alternating.
    for i in 0..250 {
        if i % 2 == 0 {
            let body = format!(
                r#"{{"specversion":"1.0","id":"e{i}","source":"/b","type":"t","data":{{"i":{i}}}}}"#
            );
            post(
                &rig,
                "b",
                &[("content-type", "application/cloudevents+json")],
                &body,
            )
            .await;
        } else {
            post(
                &rig,
                "b",
                &[("content-type", "text/plain")],
                &format!("p{i}"),
            )
            .await;
        }
    }
    let rx = Receiver::start(Arc::new(|_, _| Reply::Status(200))).await;
    let (s, v) = rig
        .create(json!({"topic": "b", "url": rx.url, "delivery": "batch", "from": 0}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let events = loop {
        let events: Vec<Value> = rx
            .hits()
            .iter()
            .flat_map(|h| {
                assert_eq!(
                    header(h, "content-type"),
                    "application/cloudevents-batch+json"
                );
                serde_json::from_slice::<Vec<Value>>(&h.body).unwrap()
            })
            .collect();
        if events.len() >= 250 || Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(events.len(), 250);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["sequence"], format!("{i:020}"));
        if i % 2 == 0 {
            assert_eq!(
                (&e["id"], &e["data"]["i"]),
                (&json!(format!("e{i}")), &json!(i))
            );
        } else {
            assert_eq!(
                (&e["type"], &e["data"]),
                (&json!("fanlog.message"), &json!(format!("p{i}")))
            );
        }
    }
    let hits = rx.hits();
    assert!(
        hits.len() >= 3,
        "at most 100 events per request: {}",
        hits.len()
    );
    assert!(hits.len() < 250, "batched: {} requests", hits.len());
    assert_eq!(hits[0].id, "b:0-99");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_of_a_real_broker_survive_kill_9() {
    // A slow receiver, so that the kill comes in the middle of delivery.
    let rx = Receiver::start(Arc::new(|_, _| Reply::Slow(Duration::from_millis(10)))).await;
    let dir = tempfile::tempdir().unwrap();
    let args = ["--http", "127.0.0.1:0", "--allow-hook-target", "127.0.0.1"];
    let serve = common::ServeProcess::start(dir.path(), &args);
    let http = format!("http://{}", serve.http.clone().unwrap());
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{http}/hooks"))
        .json(&json!({"topic": "k", "url": rx.url}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let publish = |http: String, range: std::ops::Range<u64>| {
        let client = client.clone();
        async move {
            for i in range {
                let r = client
                    .post(format!("{http}/topics/k/messages"))
                    .body(format!("m{i}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 201);
            }
        }
    };
    publish(http.clone(), 0..50).await;
    let before = rx.wait_accepted(20, Duration::from_secs(20)).await.len();
    serve.kill9();
    assert!(
        before < 50,
        "the kill comes mid-delivery ({before} delivered)"
    );

    let serve = common::ServeProcess::start(dir.path(), &args);
    let http = format!("http://{}", serve.http.clone().unwrap());
    publish(http, 50..100).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while rx.accepted().last().map(String::as_str) != Some("k:99") {
        assert!(Instant::now() < deadline, "{:?}", rx.accepted().last());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // At least once across the crash: whatever was delivered but not yet
    // committed comes again, in order; nothing is skipped.
    let got = rx.accepted();
    let first_after: Vec<String> = {
        let mut seen = std::collections::HashSet::new();
        got.iter()
            .filter(|id| seen.insert(id.to_string()))
            .cloned()
            .collect()
    };
    assert_eq!(first_after, ids("k", 0..100));
    let resent = got.len() - 100;
    assert!(
        got.windows(2)
            .filter(|w| w[1][2..].parse::<u64>().unwrap() <= w[0][2..].parse::<u64>().unwrap())
            .count()
            <= 1,
        "one rewind at most (the restart): {got:?}"
    );
    eprintln!("{resent} messages sent again after kill -9");
    assert!(serve.terminate().success());
}
