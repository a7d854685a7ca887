//! The examples in `examples/`, run as the programs they are against a
//! real `fanlog serve`: the publisher, the consumer-group worker (stopped
//! and started again), and the webhook receiver verifying signatures.
//! (`examples/browser/index.html` runs in `tests/browser.rs`.)

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An example's binary, built by `cargo test` beside the test binaries.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test` (it builds the examples)",
        path.display()
    );
    path
}

fn run(name: &str, args: &[&str]) -> String {
    let out = Command::new(example(name)).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn publisher_and_worker() {
    let dir = tempfile::tempdir().unwrap();
    let serve = common::ServeProcess::start(&dir.path().join("data"), &[]);
    let seqs = run("publisher", &[&serve.tcp, "20"]);
    let want: Vec<String> = (0..20).map(|s| s.to_string()).collect();
    assert_eq!(seqs.lines().collect::<Vec<_>>(), want);
    // The worker handles 15, stops, and a second run resumes at 15.
    let first = run("worker", &[&serve.tcp, "billing", "15"]);
    let second = run("worker", &[&serve.tcp, "billing", "5"]);
    let seen: Vec<u64> = first
        .lines()
        .chain(second.lines())
        .map(|l| l.split('\t').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(seen, (0..20).collect::<Vec<_>>());
    assert!(
        first.lines().next().unwrap().contains(r#""order": 0"#),
        "{first}"
    );
    assert!(serve.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_receiver_verifies_and_prints_each_delivery() {
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let mut receiver = Command::new(example("webhook_receiver"))
        .args(["127.0.0.1:0", SECRET])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(receiver.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    // A forged delivery is refused.
    let forged = reqwest::Client::new()
        .post(format!("http://{addr}/hook"))
        .header("webhook-id", "t:0")
        .header("webhook-timestamp", "1")
        .header("webhook-signature", "v1,AAAA")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    let dir = tempfile::tempdir().unwrap();
    let serve = common::ServeProcess::start(
        &dir.path().join("data"),
        &["--http", "127.0.0.1:0", "--allow-hook-target", "127.0.0.1"],
    );
    let http = format!("http://{}", serve.http.clone().unwrap());
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{http}/hooks"))
        .json(&serde_json::json!({
            "topic": "orders",
            "url": format!("http://{addr}/hook"),
            "secret": SECRET,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for i in 0..5 {
        c.post(format!("{http}/topics/orders/messages"))
            .body(format!("{{\"order\": {i}}}"))
            .send()
            .await
            .unwrap();
    }
    let stdout = receiver.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .take(5)
            .map(Result::unwrap)
            .collect::<Vec<_>>()
    });
    let t = Instant::now();
    while !lines.is_finished() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the receiver printed fewer than 5 deliveries"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines = lines.join().unwrap();
    let want: Vec<String> = (0..5)
        .map(|i| format!("orders:{i}\t{{\"order\": {i}}}"))
        .collect();
    assert_eq!(lines, want);
    let _ = receiver.kill();
    let _ = receiver.wait();
    assert!(serve.terminate().success());
}
