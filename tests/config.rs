//! `fanlog serve` configuration: defaults, a TOML file, `FANLOG_*`
//! environment variables and flags, in that order of precedence; per-topic
//! settings by pattern; `--print-config`; unknown keys refused by name.

mod common;

use std::process::{Command, Output};

const FILE: &str = r#"
tcp = "127.0.0.1:1111"
http = "127.0.0.1:2222"
fsync = "never"

[limits]
max_topics = 7
max_hooks = 3

[log]
format = "json"

[topics."orders.*"]
fsync = "always"
retention_bytes = 1048576
retention_age = "7days"

[[auth.tokens]]
token = "s3cret-token"
publish = ["*"]
subscribe = ["*"]
admin = true
"#;

fn serve(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fanlog"))
        .arg("serve")
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("run fanlog serve")
}

fn write_config(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("fanlog.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// What `serve ARGS` printed with `--print-config`, parsed, and as text.
fn printed(args: &[&str], envs: &[(&str, &str)]) -> (toml::Table, String) {
    print_out(serve(args, envs))
}

fn print_out(out: Output) -> (toml::Table, String) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let c: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (c, text)
}

fn refusal(args: &[&str], envs: &[(&str, &str)]) -> String {
    let out = serve(args, envs);
    assert!(
        !out.status.success(),
        "expected a refusal for {args:?} {envs:?}"
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn flags_win_over_the_environment_which_wins_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), FILE);
    let out = serve(
        &[
            "--config",
            &path,
            "--print-config",
            "--tcp",
            "127.0.0.1:6666",
        ],
        &[
            ("FANLOG_TCP", "127.0.0.1:5555"),
            ("FANLOG_HTTP", "127.0.0.1:3333"),
            ("FANLOG_LIMITS__MAX_TOPICS", "9"),
            ("FANLOG_TOPICS__audit__SEGMENT_BYTES", "4194304"),
        ],
    );
    let (c, text) = print_out(out);
    assert_eq!(c["tcp"].as_str(), Some("127.0.0.1:6666"), "flag: {text}");
    assert_eq!(c["http"].as_str(), Some("127.0.0.1:3333"), "env: {text}");
    assert_eq!(c["fsync"].as_str(), Some("never"), "file: {text}");
    assert_eq!(
        c["quic"].as_str(),
        Some("127.0.0.1:7401"),
        "default: {text}"
    );
    assert_eq!(c["data"].as_str(), Some("./fanlog-data"), "default: {text}");
    assert_eq!(
        c["limits"]["max_topics"].as_integer(),
        Some(9),
        "env: {text}"
    );
    assert_eq!(
        c["limits"]["max_hooks"].as_integer(),
        Some(3),
        "file: {text}"
    );
    assert_eq!(c["log"]["format"].as_str(), Some("json"));
    let orders = &c["topics"]["orders.*"];
    assert_eq!(orders["fsync"].as_str(), Some("always"));
    assert_eq!(orders["retention_bytes"].as_integer(), Some(1 << 20));
    assert_eq!(orders["retention_age"].as_str(), Some("7days"));
    assert_eq!(
        c["topics"]["audit"]["segment_bytes"].as_integer(),
        Some(4194304),
        "env: {text}"
    );
    // The token is shown only as its digest.
    assert!(!text.contains("s3cret-token"), "{text}");
    let token = &c["auth"]["tokens"].as_array().unwrap()[0];
    assert_eq!(token["token_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(token["admin"].as_bool(), Some(true));
}

#[test]
fn unknown_keys_and_bad_values_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = write_config(dir.path(), "[limits]\nmax_topic = 3\n");
    let e = refusal(&["--config", &unknown, "--print-config"], &[]);
    assert!(e.contains("max_topic"), "{e}");

    let e = refusal(
        &["--print-config"],
        &[("FANLOG_LIMITS__NO_SUCH_LIMIT", "1")],
    );
    assert!(e.contains("no_such_limit"), "{e}");

    let e = refusal(&["--print-config"], &[("FANLOG_FSYNC", "sometimes")]);
    assert!(e.contains("fsync") && e.contains("sometimes"), "{e}");

    let bad_pattern = write_config(dir.path(), "[topics.\"a*b\"]\nfsync = \"always\"\n");
    let e = refusal(&["--config", &bad_pattern, "--print-config"], &[]);
    assert!(e.contains("a*b"), "{e}");

    let too_small = write_config(dir.path(), "[topics.tiny]\nsegment_bytes = 100\n");
    let e = refusal(&["--config", &too_small, "--print-config"], &[]);
    assert!(e.contains("tiny") && e.contains("segment_bytes"), "{e}");

    let e = refusal(&["--config", "/no/such/file.toml"], &[]);
    assert!(e.contains("/no/such/file.toml"), "{e}");
}

#[tokio::test]
async fn per_topic_settings_take_effect_in_a_running_broker() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = write_config(
        dir.path(),
        r#"
[topics."small.*"]
max_message_bytes = 64

[topics.short]
segment_bytes = 4096
max_message_bytes = 1024
retention_bytes = 8192
"#,
    );
    let serve = common::ServeProcess::start_with_env(
        &data,
        &["--config", &path, "--http", "127.0.0.1:0"],
        &[("FANLOG_TOPICS__tiny__MAX_MESSAGE_BYTES", "16")],
    );
    let base = format!("http://{}", serve.http.clone().unwrap());
    let http = reqwest::Client::new();
    let post = |topic: &str, len: usize| {
        let req = http
            .post(format!("{base}/topics/{topic}/messages"))
            .body(vec![b'x'; len]);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    // A pattern from the file, an exact name from the environment, and the
    // default elsewhere.
    assert_eq!(post("small.a", 65).await, 413);
    assert_eq!(post("small.a", 64).await, 201);
    assert_eq!(post("tiny", 17).await, 413);
    assert_eq!(post("tiny", 16).await, 201);
    assert_eq!(post("other", 65).await, 201);
    // Small segments and byte retention: the front of `short` goes.
    for _ in 0..100 {
        assert_eq!(post("short", 500).await, 201);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let topics: serde_json::Value = common::get_json(&format!("{base}/topics")).await;
        let short = topics
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "short")
            .unwrap()
            .clone();
        let other = topics
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "other")
            .unwrap()
            .clone();
        assert_eq!(other["first_seq"], 0);
        if short["first_seq"].as_u64().unwrap() > 0 {
            assert!(short["bytes"].as_u64().unwrap() <= 8192 + 4096, "{short}");
            assert_eq!(short["next_seq"], 100);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no retention: {short}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(serve.terminate().success());
}

#[test]
fn json_logs_when_asked() {
    use std::io::{BufRead, Read};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fanlog"))
        .args(["serve", "--data"])
        .arg(dir.path())
        .args(["--tcp", "127.0.0.1:0", "--quic", "off", "--http", "off"])
        .env("FANLOG_LOG__FORMAT", "json")
        .env("FANLOG_LOG__FILTER", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.starts_with("listening tcp 127.0.0.1:"), "{line}");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "INFO" && l["fields"]["message"] == "shutting down"),
        "{err}"
    );
}

#[test]
fn client_and_unrelated_variables_do_not_stop_serve() {
    // FANLOG_SERVER and FANLOG_TOKEN belong to the client commands;
    // FANLOG_HTTP may be a URL; another tool's FANLOG_* is not ours.
    let out = serve(
        &["--print-config"],
        &[
            ("FANLOG_SERVER", "127.0.0.1:7400"),
            ("FANLOG_TOKEN", "t"),
            ("FANLOG_HTTP", "http://127.0.0.1:7481"),
            ("FANLOG_SOMETHING_ELSE", "x"),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("http = \"127.0.0.1:7481\""), "{printed}");
    assert!(err.contains("ignoring FANLOG_TOKEN"), "{err}");
}

#[test]
fn the_hooks_section_is_the_hooks_settings_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[hooks]\ntimeout = \"3s\"\nretry_schedule = [\"1s\", \"2m\"]\njitter = 0.5\nrate_limit = 20.0\n",
    );
    let (c, text) = printed(&["--config", &path, "--print-config"], &[]);
    let hooks = &c["hooks"];
    assert_eq!(hooks["timeout"].as_str(), Some("3s"), "{text}");
    let schedule: Vec<&str> = hooks["retry_schedule"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(schedule, ["1s", "2m"], "{text}");
    assert_eq!(hooks["jitter"].as_float(), Some(0.5));
    assert_eq!(hooks["rate_limit"].as_float(), Some(20.0));
    // Defaults fill what the file leaves out; keys of other sections are
    // not part of it.
    assert_eq!(hooks["disable_after"].as_str(), Some("5days"), "{text}");
    assert!(hooks.get("max_hooks").is_none(), "{text}");

    for (bad, says) in [
        ("[hooks]\njitter = 2.0\n", "jitter"),
        ("[hooks]\nretry_schedule = []\n", "retry_schedule"),
        ("[hooks]\ntimeout = \"soon\"\n", "soon"),
        ("[hooks]\nretries = 3\n", "retries"),
    ] {
        let path = write_config(dir.path(), bad);
        let e = refusal(&["--config", &path, "--print-config"], &[]);
        assert!(e.contains(says), "{bad}: {e}");
    }
}

#[test]
fn the_per_connection_publish_bound_is_a_limit_operators_can_set() {
    let (c, text) = printed(&["--print-config"], &[]);
    assert_eq!(
        c["limits"]["max_inflight_publishes"].as_integer(),
        Some(1024),
        "the default: {text}"
    );
    let (c, text) = printed(
        &["--print-config"],
        &[("FANLOG_LIMITS__MAX_INFLIGHT_PUBLISHES", "16")],
    );
    assert_eq!(
        c["limits"]["max_inflight_publishes"].as_integer(),
        Some(16),
        "{text}"
    );
}
