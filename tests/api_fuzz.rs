//! schemathesis (PyPI, pinned in `tests/interop/requirements.txt`)
//! fuzzes a real `fanlog serve` from its own `GET /openapi.json`, with a
//! token: no response may be a server error, and every one must conform
//! to the document (status, content type, headers, body). The checks and
//! per-operation settings are in `tests/fuzz_api/schemathesis.toml`.
//! Then the broker must still serve and have lost nothing acknowledged.
//!
//! Bounded: a fixed number of examples per operation (`FANLOG_FUZZ_EXAMPLES`,
//! default 40) and seed (`FANLOG_FUZZ_SEED`, default 1, so a failure
//! reproduces), and a deadline. The streams that never end on their own
//! (`/events`, and the WebSocket routes, which need an upgrade) are left
//! to the tests that drive them with real clients.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const TOKEN: &str = "fuzz-admin-token";
const USER: &str = "fuzz-user-token";
const CANARY: &str = "fuzz-canary-7f3a";

fn schemathesis() -> std::path::PathBuf {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .expect("python3 (scripts/test.sh installs it)");
    let scripts = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let bin = std::path::Path::new(&scripts).join("schemathesis");
    if bin.exists() {
        bin
    } else {
        // pip may have put it elsewhere (a distribution's Python).
        "schemathesis".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("fanlog.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[auth.tokens]]\ntoken = \"{TOKEN}\"\npublish = [\"*\"]\nsubscribe = [\"*\"]\nadmin = true\n\n\
             [[auth.tokens]]\ntoken = \"{USER}\"\npublish = [\"*\"]\nsubscribe = [\"*\"]\n"
        ),
    )
    .unwrap();
    let serve = common::ServeProcess::start(
        &dir.path().join("data"),
        &[
            "--http",
            "127.0.0.1:0",
            "--config",
            cfg.to_str().unwrap(),
            "--allow-hook-target",
            "127.0.0.1",
        ],
    );
    let base = format!("http://{}", serve.http.clone().unwrap());
    let client = reqwest::Client::new();
    let auth = format!("Bearer {TOKEN}");

    // What must survive the fuzzing: messages acknowledged on a topic whose
    // name the generator will not hit, and a hook for the hook routes.
    let mut acked = Vec::new();
    for i in 0..5 {
        let r = client
            .post(format!("{base}/topics/{CANARY}/messages"))
            .header("authorization", &auth)
            .body(format!("canary {i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        acked.push(r.json::<Value>().await.unwrap()["seq"].as_u64().unwrap());
    }
    let hook = common::send_json(
        client
            .post(format!("{base}/hooks"))
            .header("authorization", &auth)
            .json(&json!({"topic": CANARY, "url": "http://127.0.0.1:9/hook"})),
    )
    .await;
    let hook_id = hook["id"].as_str().unwrap().to_owned();

    // A token that may publish and read everything but not administer:
    // the canary must come through its run whole. Then the admin token,
    // which may delete and truncate topics (the canary too: schemathesis
    // learns topic names from GET /topics), and the broker must still serve.
    tokio::task::block_in_place(|| fuzz(&base, USER, &hook_id, dir.path()));
    let page = common::send_json(
        client
            .get(format!("{base}/topics/{CANARY}/messages?from=0&limit=5"))
            .header("authorization", &auth),
    )
    .await;
    let got: Vec<(u64, String)> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["seq"].as_u64().unwrap(),
                m["data"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(u64, String)> = acked
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, format!("canary {i}")))
        .collect();
    assert_eq!(got, want, "acknowledged messages lost");
    tokio::task::block_in_place(|| fuzz(&base, TOKEN, &hook_id, dir.path()));

    // The broker still serves: a publish and its read-back.
    let r = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = client
        .post(format!("{base}/topics/after-fuzz/messages"))
        .header("authorization", &auth)
        .body("after")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let seq = r.json::<Value>().await.unwrap()["seq"].as_u64().unwrap();
    let page = common::send_json(
        client
            .get(format!("{base}/topics/after-fuzz/messages?from={seq}"))
            .header("authorization", &auth),
    )
    .await;
    assert_eq!(page["messages"][0]["data"], "after");
    serve.terminate();
}

/// One bounded schemathesis run over every operation with `token`.
fn fuzz(base: &str, token: &str, hook_id: &str, work: &std::path::Path) {
    let examples = std::env::var("FANLOG_FUZZ_EXAMPLES").unwrap_or_else(|_| "40".into());
    let seed = std::env::var("FANLOG_FUZZ_SEED").unwrap_or_else(|_| "1".into());
    let config =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_api/schemathesis.toml");
    // To a file: a pipe nobody reads while it runs could fill and stall it.
    let log_path = work.join(format!("schemathesis-{token}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let started = Instant::now();
    let mut child = Command::new(schemathesis())
        .arg("--no-color")
        .arg("--config-file")
        .arg(&config)
        .args(["run", &format!("{base}/openapi.json")])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--max-examples", &examples, "--seed", &seed])
        .args(["--request-timeout", "10", "--workers", "1"])
        .args(["--exclude-path-regex", "/(events|ws)$"])
        .env("FANLOG_HOOK_ID", hook_id)
        .current_dir(work)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("schemathesis (scripts/test.sh installs it from tests/interop/requirements.txt)");
    // Bounded: a run that hangs is a failure, not a stuck CI.
    let deadline = Duration::from_secs(600);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            panic!("schemathesis ran past {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let report = std::fs::read_to_string(&log_path).unwrap();
    eprintln!(
        "schemathesis ran with {token:?} for {:.0?}:\n{}",
        started.elapsed(),
        report
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        status.success(),
        "schemathesis found failures with {token:?}:\n{report}"
    );
    // It did test: every operation but the streams.
    assert!(report.contains("Tested:"), "{report}");
}
