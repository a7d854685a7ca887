//! Delivery: order and signatures, retries on the schedule, a restart in
//! the middle, 410 Gone, disabling a failing hook, a thousand hooks on one
//! topic, and a real broker killed with SIGKILL.

use super::*;

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
    // The receiver's answer comes before the hook's cursor moves past it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let view = loop {
        let (s, view) = rig.get(&format!("/hooks/{id}")).await;
        assert_eq!(s, StatusCode::OK);
        if view["cursor"] == 50 || Instant::now() > deadline {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
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
    if !common::backend::cluster() {
        let stored = std::fs::read_to_string(dir.path().join("hooks.json")).unwrap();
        assert!(!stored.contains(&id), "{stored}");
    }
    // Deleted where it is stored: a broker opened again does not have it.
    rig.stop().await;
    let rig = common::Rig::start(dir.path(), common::local_hooks()).await;
    assert_eq!(
        rig.get(&format!("/hooks/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
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
