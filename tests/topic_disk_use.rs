//! What a topic costs on disk, and who may make one, through a real
//! `fanlog serve`: a new topic reserves a few blocks, not its whole segment
//! (disk is reserved in steps that grow with the topic), and a token that may
//! only read cannot create topics by subscribing (over SSE, WebSocket, long
//! poll, or the binary protocol) unless the broker is configured to allow it.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use fanlog::client::{Client, ConnectOptions, StartFrom};
use fanlog::protocol::frame::ErrorCode;

/// Bytes of disk held under `dir` (allocated blocks, reservations included).
fn disk_use(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            disk_use(&e.path())
        } else {
            m.blocks() * 512
        };
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_topic_reserves_blocks_in_steps_not_its_whole_segment() {
    let dir = tempfile::tempdir().unwrap();
    let serve = common::ServeProcess::start(dir.path(), &["--http", "127.0.0.1:0"]);
    let http = serve.http.clone().unwrap();
    let c = reqwest::Client::new();
    const TOPICS: u64 = 40;
    for i in 0..TOPICS {
        let r = c
            .post(format!("http://{http}/topics/t{i}/messages"))
            .body("one small message")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let used = disk_use(&dir.path().join("topics"));
    // Each topic's segment is 64 MiB (plus an 8 MiB index) long, sparse:
    // what it holds on disk is its first reservation steps.
    let per_topic = used / TOPICS;
    println!(
        "disk per new topic: {} KiB ({TOPICS} topics)",
        per_topic / 1024
    );
    assert!(per_topic <= 256 * 1024, "{per_topic} bytes per topic");

    // A topic that grows reserves ahead by at most what it holds.
    let body = vec![b'x'; 64 * 1024];
    for _ in 0..64 {
        let r = c
            .post(format!("http://{http}/topics/big/messages"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let big = disk_use(&dir.path().join("topics/big"));
    println!("disk of a 4 MiB topic: {} KiB", big / 1024);
    assert!((4 << 20..=10 << 20).contains(&big), "{big}");
    assert!(serve.terminate().success());
}

const CONFIG: &str = r#"
[[auth.tokens]]
token = "reader"
subscribe = ["*"]

[[auth.tokens]]
token = "writer"
publish = ["*"]
subscribe = ["*"]
"#;

fn start(dir: &Path, extra: &str) -> common::ServeProcess {
    let cfg = dir.join("fanlog.toml");
    std::fs::write(&cfg, format!("{extra}\n{CONFIG}")).unwrap();
    common::ServeProcess::start(
        &dir.join("data"),
        &["--http", "127.0.0.1:0", "--config", cfg.to_str().unwrap()],
    )
}

async fn http_status(http: &str, path: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("http://{http}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn ws_status(http: &str, topic: &str, token: &str) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{http}/topics/{topic}/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("{e}"),
    }
}

async fn binary(addr: &str, token: &str) -> Client {
    let mut o = ConnectOptions::new(addr);
    o.token = Some(token.to_owned());
    Client::connect_with(o).await.unwrap()
}

fn topic_dirs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("data/topics"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_token_cannot_create_topics_by_subscribing() {
    let dir = tempfile::tempdir().unwrap();
    let serve = start(dir.path(), "");
    let http = serve.http.clone().unwrap();
    for (i, path) in [
        "/topics/r0/events",
        "/topics/r1/poll?timeout=0",
        "/topics/r2/messages",
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(http_status(&http, path, "reader").await, 404, "{i}: {path}");
    }
    assert_eq!(ws_status(&http, "r3", "reader").await, 404);
    let reader = binary(&serve.tcp, "reader").await;
    let e = reader
        .subscribe("r4", StartFrom::Earliest)
        .await
        .expect_err("no such topic");
    assert_eq!(e.code(), Some(ErrorCode::TopicNotFound), "{e}");
    assert!(
        topic_dirs(dir.path()).is_empty(),
        "{:?}",
        topic_dirs(dir.path())
    );

    // A token that may publish creates the topic by subscribing, as it
    // could by publishing; the reader then subscribes to it.
    assert_eq!(ws_status(&http, "w0", "writer").await, 101);
    let writer = binary(&serve.tcp, "writer").await;
    writer.subscribe("w1", StartFrom::Earliest).await.unwrap();
    assert!(reader.subscribe("w1", StartFrom::Earliest).await.is_ok());
    assert_eq!(topic_dirs(dir.path()), ["w0", "w1"]);
    assert!(serve.terminate().success());

    // Configured to, a read-only subscription creates it.
    let dir = tempfile::tempdir().unwrap();
    let serve = start(dir.path(), "[limits]\nsubscribe_creates_topics = true\n");
    let http = serve.http.clone().unwrap();
    assert_eq!(ws_status(&http, "r5", "reader").await, 101);
    assert_eq!(topic_dirs(dir.path()), ["r5"]);
    assert!(serve.terminate().success());
}

/// A segment filling up is rolled by the broker's flusher thread ahead of
/// need, so an append finds room without creating files or syncing a
/// directory on its own (a runtime's) thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flusher_rolls_a_filling_segment_before_an_append_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = fanlog::BrokerConfig::default();
    config.topic.segment_bytes = 64 * 1024;
    config.topic.max_message_bytes = 1024;
    let broker = fanlog::Broker::open(dir.path(), config).unwrap();
    let segments = || {
        let mut v: Vec<String> = std::fs::read_dir(dir.path().join("topics/t"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 24 && n.ends_with(".log"))
            .collect();
        v.sort();
        v
    };
    // 48 records of about 1 KiB: past three quarters of the 64 KiB
    // segment, and every one of them fits it.
    let message = fanlog::Message::new(vec![7u8; 1000]);
    for _ in 0..48 {
        broker.publish("t", message.clone()).await.unwrap();
    }
    let bytes = broker.topic_info("t").unwrap().bytes;
    assert!((48 * 1024..64 * 1024).contains(&bytes), "{bytes}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while segments().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no segment rolled ahead: {:?}",
            segments()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(segments().len(), 2, "{:?}", segments());
    // The next record goes into the new segment, readable in order.
    let seq = broker.publish("t", message.clone()).await.unwrap();
    assert_eq!(seq, 48);
    let batch = broker.read("t", 0, 100).unwrap();
    assert_eq!(batch.records.len(), 49);
    assert!(
        batch
            .records
            .iter()
            .enumerate()
            .all(|(i, r)| r.seq() == i as u64)
    );
}

/// A subscribe that is refused anyway (a bad Last-Event-ID over SSE, a bad
/// group name or a duplicate subscription over the binary protocol) makes
/// no topic, although the caller may create topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_subscribe_makes_no_topic() {
    let dir = tempfile::tempdir().unwrap();
    let serve = common::ServeProcess::start(dir.path(), &["--http", "127.0.0.1:0"]);
    let http = serve.http.clone().unwrap();
    let topics = dir.path().join("topics");
    let r = reqwest::Client::new()
        .get(format!("http://{http}/topics/sse-new/events"))
        .header("last-event-id", "not-a-seq")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        !topics.join("sse-new").exists(),
        "a refused SSE made a topic"
    );

    let client = Client::connect(&serve.tcp).await.unwrap();
    let e = client
        .subscribe("wire-new", StartFrom::Group("no spaces allowed".into()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("name"), "{e}");
    assert!(
        !topics.join("wire-new").exists(),
        "a refused subscribe made a topic"
    );
    // The same caller subscribing properly does make it.
    let _sub = client
        .subscribe("wire-new", StartFrom::Latest)
        .await
        .unwrap();
    assert!(topics.join("wire-new").exists());
}
