//! Hook and topic administration raced against itself on a real `fanlog
//! serve`: concurrent hook creations and deletions all succeed (no shared
//! temporary file, no 500) and a deleted hook never comes back after a
//! restart; a topic's deletion raced against a hook's creation on it never
//! leaves a hook on a topic that is gone.

mod common;

use serde_json::{Value, json};

async fn create_hook(c: &reqwest::Client, http: &str, topic: &str) -> (u16, Value) {
    let r = c
        .post(format!("http://{http}/hooks"))
        .json(&json!({"topic": topic, "url": "http://127.0.0.1:9/hook"}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn hook_ids(c: &reqwest::Client, http: &str) -> Vec<String> {
    let v = common::send_json(c.get(format!("http://{http}/hooks"))).await;
    let mut ids: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_hook_creates_and_deletes_stay_consistent_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let serve = common::ServeProcess::start_for_hooks(dir.path());
    let http = serve.http.clone().unwrap();
    let c = reqwest::Client::new();
    // 40 writers at once: each creates two hooks and deletes the first.
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (c, http) = (c.clone(), http.clone());
            tokio::spawn(async move {
                let topic = format!("t{}", i % 4);
                let (s1, a) = create_hook(&c, &http, &topic).await;
                let (s2, b) = create_hook(&c, &http, &topic).await;
                assert_eq!((s1, s2), (201, 201), "{a} {b}");
                let gone = a["id"].as_str().unwrap().to_owned();
                let d = c
                    .delete(format!("http://{http}/hooks/{gone}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(d.status().as_u16(), 204, "{}", d.text().await.unwrap());
                b["id"].as_str().unwrap().to_owned()
            })
        })
        .collect();
    let mut kept = Vec::new();
    for t in tasks {
        kept.push(t.await.unwrap());
    }
    kept.sort();
    assert_eq!(hook_ids(&c, &http).await, kept);
    assert!(serve.terminate().success());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let serve = common::ServeProcess::start_for_hooks(dir.path());
    let http = serve.http.clone().unwrap();
    assert_eq!(
        hook_ids(&c, &http).await,
        kept,
        "deleted hooks stay deleted"
    );
    assert!(serve.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_topic_raced_with_a_new_hook_never_orphans_the_hook() {
    let dir = tempfile::tempdir().unwrap();
    let serve = common::ServeProcess::start_for_hooks(dir.path());
    let http = serve.http.clone().unwrap();
    let c = reqwest::Client::new();
    let (mut deleted, mut refused) = (0, 0);
    for round in 0..60 {
        let topic = format!("race{round}");
        let r = c
            .post(format!("http://{http}/topics/{topic}/messages"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let del = {
            let (c, http, topic) = (c.clone(), http.clone(), topic.clone());
            tokio::spawn(async move {
                c.delete(format!("http://{http}/topics/{topic}"))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        };
        let (hook_status, _) = create_hook(&c, &http, &topic).await;
        let del_status = del.await.unwrap();
        assert_eq!(hook_status, 201);
        match del_status {
            204 => deleted += 1,
            409 => refused += 1,
            s => panic!("round {round}: delete answered {s}"),
        }
        // Whatever the order, a hook that exists has its topic.
        let t = c
            .get(format!("http://{http}/topics/{topic}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            t.status().as_u16(),
            200,
            "round {round}: the hook's topic is gone"
        );
    }
    println!("deleted first: {deleted}, refused (hook first): {refused}");
    assert!(serve.terminate().success());
}
