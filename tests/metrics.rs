//! `GET /metrics` of a real `fanlog serve`, parsed with a Prometheus
//! text-format parser: the counters and gauges move as traffic flows.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use futures_util::StreamExt;
use prometheus_parse::{Scrape, Value};

async fn scrape(base: &str) -> Scrape {
    let resp = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        resp.headers()["content-type"]
    );
    let text = resp.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text format")
}

/// The value of the sample `metric` whose labels include `labels`.
fn value(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => panic!("no summaries here"),
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_with_traffic() {
    // A receiver that fails the first delivery, so the hook retries once.
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let h = h.clone();
            async move {
                if h.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::NO_CONTENT
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    // Retries after 100 ms instead of 5 s.
    let serve = common::ServeProcess::start_with_env(
        &dir.path().join("data"),
        &[
            "--http",
            "127.0.0.1:0",
            "--fsync",
            "always",
            "--allow-hook-target",
            "127.0.0.1",
        ],
        &[("FANLOG_HOOKS__RETRY_SCHEDULE", "[\"100ms\"]")],
    );
    let base = format!("http://{}", serve.http.clone().unwrap());
    let http = reqwest::Client::new();

    let before = scrape(&base).await;
    assert_eq!(
        value(&before, "fanlog_topic_next_seq", &[("topic", "m")]),
        None
    );
    assert_eq!(value(&before, "fanlog_fsync_seconds", &[]), Some(0.0));

    // Five messages over HTTP, 10 bytes each.
    for i in 0..5 {
        let r = http
            .post(format!("{base}/topics/m/messages"))
            .body(format!("message-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    // A consumer group over TCP that has read two.
    let client = fanlog::client::Client::connect(&serve.tcp).await.unwrap();
    client.commit("m", "billing", 2).await.unwrap();
    // A live SSE stream that has read all five.
    let sse = http
        .get(format!("{base}/topics/m/events?from=0"))
        .send()
        .await
        .unwrap();
    let mut body = sse.bytes_stream();
    let mut seen = String::new();
    while seen.matches("id: ").count() < 5 {
        seen.push_str(&String::from_utf8_lossy(
            &body.next().await.unwrap().unwrap(),
        ));
    }
    // A refusal.
    let r = http
        .get(format!("{base}/no/such/route"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // A hook that needs a retry for its first message.
    let r = http
        .post(format!("{base}/hooks"))
        .json(&serde_json::json!({"topic": "m", "url": receiver, "from": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let hook: serde_json::Value = r.json().await.unwrap();
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let after = loop {
        let s = scrape(&base).await;
        // Delivered, and the cursor committed past the last one.
        if value(&s, "fanlog_deliveries_total", &[("transport", "webhook")]) == Some(5.0)
            && value(&s, "fanlog_hook_lag", &[("hook", hook_id.as_str())]) == Some(0.0)
        {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "hook never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let m = [("topic", "m")];
    assert_eq!(
        value(&after, "fanlog_topic_messages_in_total", &m),
        Some(5.0)
    );
    assert_eq!(value(&after, "fanlog_topic_bytes_in_total", &m), Some(45.0));
    assert_eq!(value(&after, "fanlog_topic_next_seq", &m), Some(5.0));
    assert_eq!(value(&after, "fanlog_topic_first_seq", &m), Some(0.0));
    assert!(value(&after, "fanlog_topic_bytes", &m).unwrap() > 45.0);
    assert_eq!(
        value(
            &after,
            "fanlog_group_lag",
            &[("topic", "m"), ("group", "billing")]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(&after, "fanlog_connections", &[("transport", "sse")]),
        Some(1.0)
    );
    assert_eq!(
        value(&after, "fanlog_connections", &[("transport", "tcp")]),
        Some(1.0)
    );
    assert!(value(&after, "fanlog_connections", &[("transport", "http")]).unwrap() >= 1.0);
    assert_eq!(
        value(&after, "fanlog_deliveries_total", &[("transport", "sse")]),
        Some(5.0)
    );
    assert_eq!(value(&after, "fanlog_hook_retries_total", &[]), Some(1.0));
    assert_eq!(
        value(
            &after,
            "fanlog_refusals_total",
            &[("interface", "http"), ("reason", "404")]
        ),
        Some(1.0)
    );
    // Under `always` every publish waited for a sync.
    assert!(value(&after, "fanlog_fsync_seconds", &[]).unwrap() >= 1.0);

    // Closing the stream and the client lowers the gauges.
    drop(body);
    drop(client);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = scrape(&base).await;
        let sse = value(&s, "fanlog_connections", &[("transport", "sse")]);
        let tcp = value(&s, "fanlog_connections", &[("transport", "tcp")]);
        if sse == Some(0.0) && tcp == Some(0.0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sse {sse:?} tcp {tcp:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(serve.terminate().success());
}
