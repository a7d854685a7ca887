//! Deduplication belongs to whoever published, through a real `fanlog serve`
//! with tokens: another token's `Idempotency-Key` or producer id (read from
//! the log) cannot make a message vanish; a key or producer sequence reused
//! with a different body is refused, never answered as stored; and a token's
//! publish rate is charged per message, so one large batch cannot pass it
//! (over the binary protocol or `POST /topics/{t}/batch`).

mod common;

use fanlog::client::{Client, ConnectOptions};
use fanlog::protocol::frame::ErrorCode;
use fanlog::protocol::{Message, Producer};
use serde_json::Value;

const CONFIG: &str = r#"
[[auth.tokens]]
token = "alice"
publish = ["*"]
subscribe = ["*"]

[[auth.tokens]]
token = "bob"
publish = ["*"]
subscribe = ["*"]

[[auth.tokens]]
token = "slow"
publish = ["*"]
publish_rate = 5.0
"#;

fn start(dir: &std::path::Path) -> common::ServeProcess {
    let cfg = dir.join("fanlog.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    common::ServeProcess::start(
        &dir.join("data"),
        &["--http", "127.0.0.1:0", "--config", cfg.to_str().unwrap()],
    )
}

async fn post(http: &str, token: &str, key: &str, body: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("http://{http}/topics/t/messages"))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn bodies(http: &str, topic: &str) -> Vec<String> {
    let v = common::send_json(
        reqwest::Client::new()
            .get(format!(
                "http://{http}/topics/{topic}/messages?from=0&limit=1000"
            ))
            .bearer_auth("alice"),
    )
    .await;
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["data"].as_str().unwrap().to_owned())
        .collect()
}

async fn native(addr: &str, token: &str) -> Client {
    let mut o = ConnectOptions::new(addr);
    o.token = Some(token.to_owned());
    Client::connect_with(o).await.unwrap()
}

fn with_producer(body: &str, id: u64, seq: u64) -> Message {
    let mut m = Message::new(body.to_owned());
    m.producer = Some(Producer { id, seq });
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tokens_identity_never_swallows_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let serve = start(dir.path());
    let http = serve.http.clone().unwrap();

    // Bob uses the key first; Alice's message under the same key is hers.
    assert_eq!(post(&http, "bob", "k1", "from bob").await.0, 201);
    let (s, v) = post(&http, "alice", "k1", "from alice").await;
    assert_eq!((s, v["seq"].as_u64()), (201, Some(1)));
    // Alice's own retry is deduplicated.
    let (s, v) = post(&http, "alice", "k1", "from alice").await;
    assert_eq!((s, v["seq"].as_u64()), (201, Some(1)));
    // The same key with another body is refused: not stored, not "201".
    let (s, v) = post(&http, "alice", "k1", "something else").await;
    assert_eq!(s, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("seq 1"), "{v}");
    assert_eq!(bodies(&http, "t").await, ["from bob", "from alice"]);

    // The binary protocol: Bob copies Alice's producer id (which any reader
    // can see in the log) and publishes her next sequence first.
    let alice = native(&serve.tcp, "alice").await;
    let bob = native(&serve.tcp, "bob").await;
    let id = 0xA11CE;
    assert_eq!(
        alice
            .publish("p", with_producer("a0", id, 0))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        bob.publish("p", with_producer("b1", id, 1)).await.unwrap(),
        1
    );
    // Alice's seq 1 is stored all the same.
    assert_eq!(
        alice
            .publish("p", with_producer("a1", id, 1))
            .await
            .unwrap(),
        2
    );
    // Her retry of it appends nothing.
    assert_eq!(
        alice
            .publish("p", with_producer("a1", id, 1))
            .await
            .unwrap(),
        2
    );
    // Her producer sequence reused for another body: refused.
    let e = alice
        .publish("p", with_producer("not a1", id, 1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::IdempotencyConflict), "{e}");
    assert_eq!(bodies(&http, "p").await, ["a0", "b1", "a1"]);
    drop((alice, bob));

    // All of it holds after a restart, when the table is rebuilt from the log.
    assert!(serve.terminate().success());
    let serve = start(dir.path());
    let http = serve.http.clone().unwrap();
    let (s, v) = post(&http, "alice", "k1", "from alice").await;
    assert_eq!((s, v["seq"].as_u64()), (201, Some(1)));
    assert_eq!(post(&http, "bob", "k1", "from bob again").await.0, 422);
    let alice = native(&serve.tcp, "alice").await;
    assert_eq!(
        alice
            .publish("p", with_producer("a1", id, 1))
            .await
            .unwrap(),
        2
    );
    assert_eq!(bodies(&http, "t").await, ["from bob", "from alice"]);
    assert!(serve.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_charged_per_message() {
    let dir = tempfile::tempdir().unwrap();
    let serve = start(dir.path());
    let slow = native(&serve.tcp, "slow").await;
    let batch: Vec<Message> = (0..5_000).map(|i| Message::new(format!("{i}"))).collect();
    let e = slow.publish_batch("r", batch).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::LimitReached), "{e}");
    assert!(e.to_string().contains("5000 messages"), "{e}");
    // Within the rate: 5 messages pass, the 6th waits.
    let five: Vec<Message> = (0..5).map(|i| Message::new(format!("{i}"))).collect();
    assert_eq!(slow.publish_batch("r", five).await.unwrap().len(), 5);
    let e = slow.publish("r", Message::new("6th")).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::RateLimited), "{e}");
    // The same over HTTP: `POST /topics/{t}/batch` is charged per message.
    let http = serve.http.clone().unwrap();
    let messages: Vec<Value> = (0..5_000).map(|i| serde_json::json!({"data": i})).collect();
    let r = reqwest::Client::new()
        .post(format!("http://{http}/topics/r/batch"))
        .bearer_auth("slow")
        .json(&serde_json::json!({ "messages": messages }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("5000 messages"),
        "{v}"
    );
    let admin = native(&serve.tcp, "alice").await;
    let info = admin.topics().await.unwrap();
    let r = info.iter().find(|t| t.name == "r").unwrap();
    assert_eq!(r.next_seq, 5, "nothing of the refused batches was stored");
    assert!(serve.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batchs_keys_are_its_tokens_own() {
    let dir = tempfile::tempdir().unwrap();
    let serve = start(dir.path());
    let http = serve.http.clone().unwrap();
    let batch = |token: &str, key: &str, bodies: &[&str]| {
        let messages: Vec<Value> = bodies
            .iter()
            .map(|b| serde_json::json!({"data": b}))
            .collect();
        reqwest::Client::new()
            .post(format!("http://{http}/topics/t/batch"))
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(&serde_json::json!({ "messages": messages }))
            .send()
    };
    let r = batch("bob", "b", &["bob 0", "bob 1"]).await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    // Alice's batch under Bob's key is hers; her retry appends nothing.
    for _ in 0..2 {
        let v: Value = batch("alice", "b", &["alice 0", "alice 1"])
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["seqs"], serde_json::json!([2, 3]), "{v}");
    }
    // Her key reused for other bodies: refused, and nothing stored.
    let r = batch("alice", "b", &["other 0"]).await.unwrap();
    assert_eq!(r.status().as_u16(), 422);
    assert_eq!(
        bodies(&http, "t").await,
        ["bob 0", "bob 1", "alice 0", "alice 1"]
    );
    assert!(serve.terminate().success());
}
