//! Administration through `fanlog admin` against a real `fanlog serve`:
//! topics created with settings that survive a restart, truncation,
//! deletion, consumer groups listed and reset (to a seq and to a time),
//! and hooks paused, resumed and replayed.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

fn admin(http: &str, args: &[&str]) -> Value {
    let mut all = vec!["admin", "--http", http];
    all.extend_from_slice(args);
    let out = common::fanlog(&all);
    if out.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }
}

fn admin_fails(http: &str, args: &[&str]) -> String {
    let mut all = vec!["admin", "--http", http];
    all.extend_from_slice(args);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fanlog"))
        .args(&all)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{all:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn post(http: &str, topic: &str, len: usize) -> u16 {
    reqwest::Client::new()
        .post(format!("{http}/topics/{topic}/messages"))
        .body(vec![b'x'; len])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_created_truncated_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = common::ServeProcess::start(&data, &["--http", "127.0.0.1:0"]);
    let http = format!("http://{}", serve.http.clone().unwrap());

    let created = admin(
        &http,
        &[
            "create",
            "audit",
            "--fsync",
            "always",
            "--segment-bytes",
            "4096",
            "--max-message-bytes",
            "1024",
        ],
    );
    assert_eq!(created["name"], "audit");
    assert_eq!(created["next_seq"], 0);
    let e = admin_fails(&http, &["create", "audit"]);
    assert!(e.contains("409") && e.contains("exists"), "{e}");
    let e = admin_fails(&http, &["create", "bad", "--fsync", "sometimes"]);
    assert!(e.contains("400"), "{e}");

    assert_eq!(post(&http, "audit", 1025).await, 413, "its own limit");
    assert_eq!(
        post(&http, "other", 1025).await,
        201,
        "the default elsewhere"
    );
    for _ in 0..200 {
        assert_eq!(post(&http, "audit", 500).await, 201);
    }

    // The settings are kept across a restart.
    assert!(serve.terminate().success());
    let serve = common::ServeProcess::start(&data, &["--http", "127.0.0.1:0"]);
    let http = format!("http://{}", serve.http.clone().unwrap());
    assert_eq!(post(&http, "audit", 1025).await, 413, "after a restart");

    // Truncate: whole segments below the seq go; readers get a gap.
    let t = admin(&http, &["truncate", "audit", "--before", "100"]);
    let first = t["first_seq"].as_u64().unwrap();
    assert!(first > 0 && first <= 100, "{t}");
    let page = common::get_json(&format!("{http}/topics/audit/messages?from=0&limit=1")).await;
    assert_eq!(page["gap"]["to"], first, "{page}");
    assert_eq!(page["messages"][0]["seq"], first);
    // Up to the head: everything goes, the seqs go on.
    let t = admin(&http, &["truncate", "audit", "--before", "200"]);
    assert_eq!(t["first_seq"], 200, "{t}");
    assert_eq!(post(&http, "audit", 10).await, 201);
    let info = common::get_json(&format!("{http}/topics/audit")).await;
    assert_eq!(
        (info["first_seq"].clone(), info["next_seq"].clone()),
        (200.into(), 201.into())
    );

    // Delete: gone from the list and the disk; the name starts again at 0.
    assert_eq!(admin(&http, &["delete", "audit"]), Value::Null);
    let names: Vec<Value> = common::get_json(&format!("{http}/topics"))
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert!(!names.contains(&"audit".into()), "{names:?}");
    assert!(!data.join("topics/audit").exists());
    let e = admin_fails(&http, &["delete", "audit"]);
    assert!(e.contains("404"), "{e}");
    let r: Value = reqwest::Client::new()
        .post(format!("{http}/topics/audit/messages"))
        .body("again")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["seq"], 0, "{r}");
    assert!(serve.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_groups_listed_and_reset() {
    let dir = tempfile::tempdir().unwrap();
    let serve = common::ServeProcess::start(&dir.path().join("data"), &["--http", "127.0.0.1:0"]);
    let http = format!("http://{}", serve.http.clone().unwrap());
    let client = fanlog::client::Client::connect(&serve.tcp).await.unwrap();
    for burst in 0..2 {
        let msgs = (0..10).map(|i| format!("{burst}-{i}").into()).collect();
        client.publish_batch("orders", msgs).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    client.commit("orders", "billing", 15).await.unwrap();
    let groups = admin(&http, &["groups", "orders"]);
    assert_eq!(groups[0]["group"], "billing");
    assert_eq!(groups[0]["committed"], 15);
    assert_eq!(groups[0]["lag"], 5);

    let g = admin(&http, &["reset", "orders", "billing", "--to", "3"]);
    assert_eq!(g["committed"], 3);
    assert_eq!(
        client.committed("orders", "billing").await.unwrap(),
        Some(3)
    );
    // To a time: the first message of the second burst.
    let page = common::get_json(&format!("{http}/topics/orders/messages?from=10&limit=1")).await;
    let time = page["messages"][0]["time"].as_str().unwrap().to_owned();
    let g = admin(&http, &["reset", "orders", "billing", "--to", &time]);
    assert_eq!(g["committed"], 10, "{g}");
    assert_eq!(
        client.committed("orders", "billing").await.unwrap(),
        Some(10)
    );
    let e = admin_fails(&http, &["reset", "orders", "billing", "--to", "999"]);
    assert!(e.contains("400"), "past the end: {e}");
    assert!(serve.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_paused_resumed_and_replayed() {
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap| {
            let g = g.clone();
            async move {
                g.lock()
                    .unwrap()
                    .push(headers["webhook-id"].to_str().unwrap().to_owned());
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let serve = common::ServeProcess::start(
        &dir.path().join("data"),
        &["--http", "127.0.0.1:0", "--allow-hook-target", "127.0.0.1"],
    );
    let http = format!("http://{}", serve.http.clone().unwrap());
    let hook: Value = reqwest::Client::new()
        .post(format!("{http}/hooks"))
        .json(&serde_json::json!({"topic": "h", "url": url, "from": 0}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = hook["id"].as_str().unwrap().to_owned();
    let wait_for = |n: usize| {
        let got = got.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while got.lock().unwrap().len() < n {
                assert!(Instant::now() < deadline, "{:?}", got.lock().unwrap());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    for _ in 0..3 {
        assert_eq!(post(&http, "h", 5).await, 201);
    }
    wait_for(3).await;

    let listed = admin(&http, &["hooks"]);
    assert_eq!(listed[0]["id"], id.as_str());
    let paused = admin(&http, &["pause", &id]);
    assert_eq!(paused["state"], "disabled", "{paused}");
    assert_eq!(post(&http, "h", 5).await, 201);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(got.lock().unwrap().len(), 3, "nothing while paused");
    admin(&http, &["resume", &id]);
    wait_for(4).await;

    // Replay from seq 1: 1, 2 and 3 come again, in order.
    let replayed = admin(&http, &["replay", &id, "--from", "1"]);
    assert_eq!(replayed["id"], id.as_str());
    wait_for(7).await;
    assert_eq!(
        *got.lock().unwrap(),
        ["h:0", "h:1", "h:2", "h:3", "h:1", "h:2", "h:3"],
    );
    let e = admin_fails(&http, &["replay", &id, "--from", "99"]);
    assert!(e.contains("400"), "past the end: {e}");
    // A topic that hooks deliver is not deleted under them.
    let e = admin_fails(&http, &["delete", "h"]);
    assert!(e.contains("409") && e.contains(&id), "{e}");
    assert!(serve.terminate().success());
}

#[test]
fn a_topic_refused_at_creation_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let config = fanlog::BrokerConfig {
        max_topics: 1,
        ..Default::default()
    };
    let settings = fanlog::TopicOverrides {
        max_message_bytes: Some(100),
        ..Default::default()
    };
    let broker = fanlog::Broker::open(dir.path(), config.clone()).unwrap();
    broker.create_topic("a", &settings).unwrap();
    let e = broker.create_topic("b", &settings).unwrap_err();
    assert!(
        matches!(e, fanlog::broker::BrokerError::LimitReached(_)),
        "{e}"
    );
    assert!(!dir.path().join("topics/b").exists());
    broker.close().unwrap();
    drop(broker);
    let broker = fanlog::Broker::open(dir.path(), config).unwrap();
    let names: Vec<String> = broker.topics().iter().map(|t| t.name.to_string()).collect();
    assert_eq!(names, ["a"]);
}
