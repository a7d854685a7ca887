//! Managing a hook over REST: secret rotation with a grace period,
//! disabling and re-enabling at the cursor, the intent handshake and a rate
//! limit.

use super::*;

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

    // 20 per second: deliveries sent at least 50 ms apart. The receiver
    // sees arrivals, and one that was late in transit (a loaded machine,
    // a cluster) lands closer to the next: so the spacing is checked over
    // the run (the sixth arrives at least five gaps after the first was
    // sent), and each pair only loosely.
    rig.publish("hs", 6).await;
    echo.wait_accepted(7, Duration::from_secs(10)).await;
    let times: Vec<Instant> = echo.hits()[1..].iter().map(|h| h.at).collect();
    assert_eq!(times.len(), 6);
    let span = times[5] - times[0];
    assert!(
        span >= Duration::from_millis(230),
        "6 deliveries in {span:?}"
    );
    for w in times.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(20),
            "{:?}",
            w[1] - w[0]
        );
    }
    rig.stop().await;
}

/// One owner delivers a hook: while its worker runs, the hook's lease in
/// the broker's leases is held and refused to anyone else; once the hook
/// is deleted, it is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_hook_holds_its_delivery_lease() {
    let dir = tempfile::tempdir().unwrap();
    let rig = common::Rig::start(dir.path(), common::local_hooks()).await;
    let rx = Receiver::start(Arc::new(|_, _| Reply::Status(200))).await;
    let (_, hook) = rig.create(json!({"topic": "leased", "url": rx.url})).await;
    let id = hook["id"].as_str().unwrap().to_owned();
    rig.publish("leased", 3).await;
    assert_eq!(
        rx.wait_accepted(3, Duration::from_secs(10)).await,
        ids("leased", 0..3)
    );
    let name = fanlog::server::hooks::lease_name(&id);
    let ttl = Duration::from_secs(60);
    assert!(
        rig.broker
            .leases()
            .acquire(&name, "another-node", ttl)
            .is_none(),
        "the running hook owns its deliveries"
    );
    // A restart (a changed rate limit) hands the lease from the old worker
    // to the new one: the old one letting go must not free it.
    let (s, _) = send(
        reqwest::Method::PATCH,
        rig.http.url(&format!("/hooks/{id}")),
        json!({"rate_limit": 1000}),
    )
    .await;
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        rig.broker
            .leases()
            .acquire(&name, "another-node", ttl)
            .is_none(),
        "the restarted hook's new worker owns its deliveries"
    );
    rig.publish("leased", 2).await;
    let got = rx.wait_accepted(5, Duration::from_secs(10)).await;
    assert_eq!(got, ids("leased", 0..5), "each message once, in order");
    let (s, _) = send(
        reqwest::Method::DELETE,
        rig.http.url(&format!("/hooks/{id}")),
        json!({}),
    )
    .await;
    assert_eq!(s, 204);
    let deadline = Instant::now() + Duration::from_secs(5);
    let lease = loop {
        if let Some(l) = rig.broker.leases().acquire(&name, "another-node", ttl) {
            break l;
        }
        assert!(Instant::now() < deadline, "a deleted hook keeps its lease");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(lease.holder, "another-node");
    rig.stop().await;
}
