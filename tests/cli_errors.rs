//! Errors that say what to do, from the real binaries: the CLI pointed at
//! the HTTP port says so, a failed connection is named once, a missing
//! token says how to pass one, and a refused hook target names the flag
//! that allows it.

mod common;

use std::process::Command;

fn fanlog_err(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_fanlog"))
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "fanlog {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let serve =
        common::ServeProcess::start(dir.path(), &["--http", "127.0.0.1:0", "--quic", "off"]);
    let http = serve.http.clone().unwrap();

    let e = fanlog_err(&["pub", "t", "x", "--server", &http]);
    assert!(
        e.contains("HTTP port") && !e.contains("frame length"),
        "{e}"
    );

    let e = fanlog_err(&["pub", "t", "x", "--server", "127.0.0.1:1"]);
    assert_eq!(e.matches("cannot connect to").count(), 1, "{e}");

    let r = reqwest::Client::new()
        .post(format!("http://{http}/hooks"))
        .json(&serde_json::json!({"topic": "t", "url": "http://127.0.0.1:9/"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains("--allow-hook-target"), "{text}");
    assert!(serve.terminate().success());

    let cfg = dir.path().join("auth.toml");
    std::fs::write(&cfg, "[[auth.tokens]]\ntoken = \"t\"\npublish = [\"*\"]\n").unwrap();
    let serve = common::ServeProcess::start(
        &dir.path().join("data2"),
        &["--quic", "off", "--config", cfg.to_str().unwrap()],
    );
    let e = fanlog_err(&["pub", "t", "x", "--server", &serve.tcp]);
    assert!(e.contains("pass --token"), "{e}");
    assert!(serve.terminate().success());
}
