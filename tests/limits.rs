//! Limits from the config file's `[limits]` section and per-token publish
//! rates, on a real `fanlog serve`: each refusal is a clear error (the
//! protocol's code, or HTTP 403/413/429 with `Retry-After`), and the broker
//! keeps serving.

mod common;

use std::time::Duration;

use fanlog::client::{Client, ConnectOptions, StartFrom};
use fanlog::protocol::Message;
use fanlog::protocol::frame::ErrorCode;

const CONFIG: &str = r#"
[limits]
max_topics = 3
max_hooks = 1
max_connections_per_ip = 4
max_request_body = 2048
max_message_bytes = 4096
max_subscriptions_per_connection = 2

[[auth.tokens]]
token = "fast"
publish = ["*"]
subscribe = ["*"]
admin = true

[[auth.tokens]]
token = "slow"
publish = ["*"]
subscribe = ["*"]
publish_rate = 5.0
"#;

async fn connect(addr: &str, token: &str) -> Result<Client, fanlog::client::ClientError> {
    let mut o = ConnectOptions::new(addr);
    o.token = Some(token.into());
    Client::connect_with(o).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_clearly_and_the_broker_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("fanlog.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let serve = common::ServeProcess::start(
        &dir.path().join("data"),
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--http",
            "127.0.0.1:0",
            "--quic",
            "off",
            "--allow-hook-target",
            "127.0.0.1",
        ],
    );
    let base = format!("http://{}", serve.http.clone().unwrap());
    let http = reqwest::Client::new();
    let c = connect(&serve.tcp, "fast").await.unwrap();

    // Topics.
    for t in ["t1", "t2", "t3"] {
        c.publish(t, Message::new("x")).await.unwrap();
    }
    let e = c.publish("t4", Message::new("x")).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::LimitReached), "{e}");
    assert!(e.to_string().contains("3 topics"), "{e}");
    let r = http
        .post(format!("{base}/topics/t5/messages"))
        .bearer_auth("fast")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    c.publish("t1", Message::new("still fine")).await.unwrap();

    // Message and body sizes.
    let e = c
        .publish("t1", Message::new(vec![0u8; 5000]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::MessageTooLarge), "{e}");
    let r = http
        .post(format!("{base}/topics/t1/messages"))
        .bearer_auth("fast")
        .body(vec![b'x'; 3000])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);

    // Subscriptions per connection.
    let _a = c.subscribe("t1", StartFrom::Latest).await.unwrap();
    let _b = c.subscribe("t2", StartFrom::Latest).await.unwrap();
    let e = c
        .subscribe("t3", StartFrom::Latest)
        .await
        .expect_err("third");
    assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{e}");

    // Connections per address: `c` and three more; the fifth is refused.
    let mut more = Vec::new();
    for _ in 0..3 {
        more.push(connect(&serve.tcp, "fast").await.unwrap());
    }
    let e = connect(&serve.tcp, "fast").await.expect_err("fifth");
    assert_eq!(e.code(), Some(ErrorCode::LimitReached), "{e}");
    drop(more.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match connect(&serve.tcp, "fast").await {
            Ok(c) => {
                more.push(c);
                break;
            }
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("a freed place is not reused: {e}"),
        }
    }
    drop(more);

    // A token's publish rate: 5/s with a burst of 5.
    let slow = loop {
        match connect(&serve.tcp, "slow").await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    for _ in 0..5 {
        slow.publish("t1", Message::new("s")).await.unwrap();
    }
    let e = slow.publish("t1", Message::new("s")).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::RateLimited), "{e}");
    let r = http
        .post(format!("{base}/topics/t1/messages"))
        .bearer_auth("slow")
        .body("s")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    slow.publish("t1", Message::new("s")).await.unwrap();
    c.publish("t1", Message::new("fast is not limited"))
        .await
        .unwrap();

    // Hooks.
    let hook = |n: u32| {
        http.post(format!("{base}/hooks"))
            .bearer_auth("fast")
            .json(&serde_json::json!({"topic": "t1", "url": format!("http://127.0.0.1:9/h{n}")}))
            .send()
    };
    assert_eq!(hook(1).await.unwrap().status().as_u16(), 201);
    let r = hook(2).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.text().await.unwrap().contains("1 hooks"));
    // Connections per address on the HTTP edge too: among a few raw
    // connections (beside the client's pooled one), one is closed at once.
    let http_addr = serve.http.clone().unwrap();
    let mut raw = Vec::new();
    let mut closed_at_once = false;
    for _ in 0..6 {
        let mut s = tokio::net::TcpStream::connect(&http_addr).await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(
            Duration::from_millis(300),
            tokio::io::AsyncReadExt::read(&mut s, &mut byte),
        )
        .await;
        if matches!(read, Ok(Ok(0)) | Ok(Err(_))) {
            closed_at_once = true;
            break;
        }
        raw.push(s);
    }
    assert!(
        closed_at_once,
        "the HTTP edge took {} raw connections",
        raw.len()
    );
    drop(raw);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Every refusal was counted, and /metrics shows them (admin only).
    let r = http
        .get(format!("{base}/metrics"))
        .bearer_auth("slow")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let text = http
        .get(format!("{base}/metrics"))
        .bearer_auth("fast")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |line: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(line))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {line} in {text}"))
    };
    for reason in [
        "LimitReached",
        "RateLimited",
        "MessageTooLarge",
        "Forbidden",
    ] {
        let line = format!("fanlog_refusals_total{{interface=\"binary\",reason=\"{reason}\"}}");
        assert!(count(&line) >= 1, "{line}");
    }
    assert!(
        count("fanlog_refusals_total{interface=\"binary\",reason=\"PerAddressConnections\"}") >= 1
    );
    assert!(
        count("fanlog_refusals_total{interface=\"http\",reason=\"PerAddressConnections\"}") >= 1
    );
    for status in ["403", "413", "429"] {
        let line = format!("fanlog_refusals_total{{interface=\"http\",reason=\"{status}\"}}");
        assert!(count(&line) >= 1, "{line}");
    }
    assert!(count("fanlog_topic_next_seq{topic=\"t1\"}") >= 8);
    drop((c, slow));
    assert!(serve.terminate().success());
}

#[test]
fn bad_limits_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    for (body, why) in [
        ("[limits]\nmax_message_bytes = 0\n", "max_message_bytes"),
        ("[limits]\nmax_topcs = 3\n", "max_topcs"),
        (
            "[[auth.tokens]]\ntoken = \"x\"\npublish_rate = -1.0\n",
            "publish_rate",
        ),
    ] {
        std::fs::write(&cfg, body).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fanlog"))
            .args(["serve", "--data"])
            .arg(dir.path().join("data"))
            .args([
                "--quic",
                "off",
                "--http",
                "off",
                "--tcp",
                "127.0.0.1:0",
                "--config",
            ])
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{body}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{body}: {err}");
    }
}
