//! Hooks with per-key lanes (`"ordering": "key"`): one slow key holds back
//! only itself, each key stays in seq order; and hooks that set a message
//! still failing after the retry schedule aside in their dead-letter topic
//! and go on (`"dead_letter": true`), topic-ordered or in lanes.

use super::*;

/// Publishes `n` JSON messages `{"n": i}` keyed `k{i % keys}`.
async fn publish_keyed(rig: &common::Rig, topic: &str, n: u64, keys: u64) {
    for i in 0..n {
        let m = fanlog::Message::new(format!("{{\"n\":{i}}}"))
            .with_content_type("application/json")
            .with_key(format!("k{}", i % keys));
        rig.broker.publish(topic, m).await.unwrap();
    }
}

fn seq_of(id: &str) -> u64 {
    id.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_key_holds_back_only_itself_and_each_key_stays_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let rig = common::Rig::start(dir.path(), common::local_hooks()).await;
    publish_keyed(&rig, "lanes", 100, 10).await;
    // Key k0 (seqs 0, 10, 20, ...) takes 300 ms per delivery.
    let rx = Receiver::start(Arc::new(|id: &str, _| {
        if seq_of(id).is_multiple_of(10) {
            Reply::Slow(Duration::from_millis(300))
        } else {
            Reply::Status(204)
        }
    }))
    .await;
    let (status, hook) = rig
        .create(json!({"topic": "lanes", "url": rx.url, "from": 0, "ordering": "key", "parallelism": 4}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{hook}");
    assert_eq!(
        (hook["ordering"].as_str(), hook["parallelism"].as_u64()),
        (Some("key"), Some(4))
    );
    let mut got = rx.wait_accepted(100, Duration::from_secs(30)).await;
    let hits = rx.hits();
    // Each message once; each key in seq order (a key's next message is
    // sent only once the receiver answered the one before).
    got.sort_by_key(|id| seq_of(id));
    assert_eq!(got, ids("lanes", 0..100));
    for k in 0..10 {
        let order: Vec<u64> = hits
            .iter()
            .map(|h| seq_of(&h.id))
            .filter(|s| s % 10 == k)
            .collect();
        let want: Vec<u64> = (0..100).filter(|s| s % 10 == k).collect();
        assert_eq!(order, want, "key k{k}");
    }
    // The other keys flowed past the slow one: all 90 of theirs arrived
    // before the slow key's last message (it needs 10 x 300 ms).
    let at = |pred: &dyn Fn(u64) -> bool| {
        hits.iter()
            .filter(|h| pred(seq_of(&h.id)))
            .map(|h| h.at)
            .max()
            .unwrap()
    };
    let others_done = at(&|s| s % 10 != 0);
    let slow_done = at(&|s| s % 10 == 0);
    assert!(
        others_done + Duration::from_millis(1500) < slow_done,
        "other keys finished {:?} before the slow key",
        slow_done - others_done
    );
    // The cursor is the lanes' floor.
    let id = hook["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, view) = rig.get(&format!("/hooks/{id}")).await;
        if view["cursor"] == 100 {
            break;
        }
        assert!(Instant::now() < deadline, "{view}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Bad lane settings are refused.
    for bad in [
        json!({"topic": "lanes", "url": rx.url, "ordering": "key", "parallelism": 0}),
        json!({"topic": "lanes", "url": rx.url, "ordering": "key", "parallelism": 65}),
        json!({"topic": "lanes", "url": rx.url, "ordering": "sideways"}),
        json!({"topic": "lanes", "url": rx.url, "parallelism": 4}),
        json!({"topic": "lanes", "url": rx.url, "ordering": "key", "delivery": "batch"}),
    ] {
        let (status, body) = rig.create(bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} -> {body}");
    }
    rig.stop().await;
}

/// The dead-letter copies in `topic`: (original seq, attempts, error).
fn dead_letters(rig: &common::Rig, topic: &str) -> Vec<(String, String, String)> {
    let Ok(batch) = rig.broker.read(topic, 0, 100) else {
        return Vec::new();
    };
    batch
        .records
        .iter()
        .map(|r| {
            let h = |name: &str| {
                r.meta()
                    .and_then(|m| {
                        m.headers
                            .iter()
                            .find(|h| h.name.as_str() == name)
                            .map(|h| String::from_utf8_lossy(h.value.as_slice()).into_owned())
                    })
                    .unwrap_or_default()
            };
            (
                h("fanlog-dead-seq"),
                h("fanlog-dead-deliveries"),
                h("fanlog-dead-error"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_that_sets_failures_aside_goes_on_in_order_and_in_lanes() {
    let dir = tempfile::tempdir().unwrap();
    let config = HooksConfig {
        retry_schedule: vec![Duration::from_millis(20), Duration::from_millis(20)],
        jitter: 0.0,
        ..common::local_hooks()
    };
    let rig = common::Rig::start(dir.path(), config).await;
    // Seq 3 of each topic fails every time.
    let rx = Receiver::start(Arc::new(|id: &str, _| {
        if seq_of(id) == 3 {
            Reply::Status(500)
        } else {
            Reply::Status(204)
        }
    }))
    .await;
    for (topic, extra) in [
        ("ordered", json!({})),
        ("keyed", json!({"ordering": "key", "parallelism": 2})),
    ] {
        publish_keyed(&rig, topic, 10, 3).await;
        let mut body = json!({"topic": topic, "url": rx.url, "from": 0, "dead_letter": true});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (status, hook) = rig.create(body).await;
        assert_eq!(status, StatusCode::CREATED, "{hook}");
        let id = hook["id"].as_str().unwrap().to_owned();
        let dead_topic = format!("{topic}.{id}.dead");
        assert_eq!(hook["dead_letter"], dead_topic.as_str());
        // Everything but seq 3 is delivered, seq 3 is set aside after the
        // first attempt and the two retries, and the hook stays active.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let accepted = rx
                .accepted()
                .into_iter()
                .filter(|a| a.starts_with(&format!("{topic}:")))
                .count();
            let (_, view) = rig.get(&format!("/hooks/{id}")).await;
            if accepted == 9 && view["cursor"] == 10 {
                assert_eq!(view["state"], "active", "{view}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{topic}: {accepted} accepted, {view}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let attempts = rx
            .hits()
            .iter()
            .filter(|h| h.id == format!("{topic}:3"))
            .count();
        assert_eq!(attempts, 3, "{topic}");
        assert_eq!(
            dead_letters(&rig, &dead_topic),
            [(
                "3".to_owned(),
                "3".to_owned(),
                "the receiver answered 500 Internal Server Error".to_owned()
            )],
            "{topic}"
        );
    }
    rig.stop().await;
}
