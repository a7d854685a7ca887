//! `fanlog pub` and `fanlog sub` as a newcomer uses them, against a real
//! `fanlog serve`: binary-safe files, content type, key and idempotency key
//! on publish; a snapshot read to the current end, relative times and JSON
//! lines on subscribe; `--from` never silently moves a group; and the
//! FANLOG_SERVER default.

mod common;

use std::process::{Command, Output};

use base64::Engine;
use serde_json::Value;

fn fanlog(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fanlog"))
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("run fanlog")
}

fn ok(args: &[&str], envs: &[(&str, &str)]) -> String {
    let out = fanlog(args, envs);
    assert!(
        out.status.success(),
        "fanlog {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn refused(args: &[&str], envs: &[(&str, &str)]) -> String {
    let out = fanlog(args, envs);
    assert!(!out.status.success(), "fanlog {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn publish_and_subscribe_options_do_what_they_say() {
    let dir = tempfile::tempdir().unwrap();
    let serve = common::ServeProcess::start(&dir.path().join("data"), &["--quic", "off"]);
    let s = serve.tcp.as_str();
    let file = dir.path().join("blob.bin");
    let blob: Vec<u8> = vec![0, 1, 0xff, b'\n', 0xfe, b'x'];
    std::fs::write(&file, &blob).unwrap();
    let f = file.to_str().unwrap();
    assert_eq!(ok(&["pub", "t", "--file", f, "--server", s], &[]), "0\n");
    let args = [
        "pub",
        "t",
        r#"{"a":1}"#,
        "--content-type",
        "application/json",
        "--key",
        "k1",
    ];
    // The server from the environment.
    assert_eq!(ok(&args, &[("FANLOG_SERVER", s)]), "1\n");
    for _ in 0..2 {
        let out = ok(
            &["pub", "t", "once", "--idempotency-key", "K", "--server", s],
            &[],
        );
        assert_eq!(out, "2\n", "a retry with the key appends nothing");
    }
    let e = refused(
        &[
            "pub",
            "t",
            "a",
            "b",
            "--idempotency-key",
            "K2",
            "--server",
            s,
        ],
        &[],
    );
    assert!(e.contains("one message"), "{e}");

    // A snapshot to the current end, as JSON lines; then it exits.
    let lines = ok(
        &[
            "sub", "t", "--from", "earliest", "--to-end", "--json", "--server", s,
        ],
        &[],
    );
    let msgs: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(msgs.len(), 3, "{lines}");
    assert_eq!(msgs[0]["encoding"], "base64");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(msgs[0]["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes, blob, "binary-safe");
    assert_eq!(
        (&msgs[1]["data"], &msgs[1]["content_type"], &msgs[1]["key"]),
        (
            &Value::from(r#"{"a":1}"#),
            &Value::from("application/json"),
            &Value::from("k1")
        )
    );
    assert!(msgs[2]["time"].as_str().unwrap().ends_with('Z'));
    // A relative time: everything of the last 10 minutes.
    let recent = ok(
        &["sub", "t", "--from", "10m", "--to-end", "--server", s],
        &[],
    );
    assert_eq!(recent.lines().count(), 3, "{recent}");
    // Nothing past the end to wait for: exits at once.
    assert_eq!(ok(&["sub", "t", "--to-end", "--server", s], &[]), "");
    // --from with --group is refused, and the group did not move.
    let e = refused(
        &[
            "sub", "t", "--group", "g", "--from", "earliest", "--server", s,
        ],
        &[],
    );
    assert!(e.contains("would move group"), "{e}");
    let got = ok(
        &["sub", "t", "--group", "g", "--to-end", "--server", s],
        &[],
    );
    assert_eq!(got.lines().count(), 3, "a new group starts at the earliest");
    assert!(serve.terminate().success());
}
