//! fanlog driven by third-party clients that nobody here wrote, pinned in
//! `tests/interop/requirements.txt` (Python) and `tests/interop/package.json`
//! (npm) and installed by `scripts/test.sh`: two SSE client libraries, the
//! official Standard Webhooks verifier, a WebSocket library, the Prometheus
//! text-format parser and the AsyncAPI parser. Each runs as a child process
//! against a real `fanlog serve` and reports what it saw as JSON lines.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn script(name: &str) -> String {
    format!("{}/tests/interop/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A third-party client running as a child process, its stdout read as
/// JSON lines.
struct Client {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Client {
    /// Runs `program script args...`.
    fn start(program: &str, script_name: &str, args: &[&str]) -> Self {
        let what = format!("{program} {script_name}");
        let mut child = Command::new(program)
            .arg(script(script_name))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: {e} (scripts/test.sh installs it)"));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        Self {
            what,
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits until the lines seen so far satisfy `done`; returns them.
    fn wait(&mut self, why: &str, done: impl Fn(&[Value]) -> bool) -> &[Value] {
        let t = Instant::now();
        while !done(&self.seen) {
            let left = Duration::from_secs(60).saturating_sub(t.elapsed());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(v) => self.seen.push(v),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("{}: exited before {why}; saw {:?}", self.what, self.seen)
                }
            }
            assert!(
                left > Duration::ZERO,
                "{}: timed out waiting for {why}; saw {:?}",
                self.what,
                self.seen
            );
        }
        &self.seen
    }

    /// The one JSON line a run-to-completion client prints.
    fn output(mut self) -> Value {
        self.wait("its output", |s| !s.is_empty());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{}: {status}", self.what);
        self.seen.remove(0)
    }

    fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post(http: &str, topic: &str, headers: &[(&str, &str)], body: &str) -> Value {
    let mut req = reqwest::Client::new()
        .post(format!("http://{http}/topics/{topic}/messages"))
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 201, "publish {body:?}");
    resp.json().await.unwrap()
}

/// The events an SSE client dispatched, as (type, id, data).
fn events(seen: &[Value]) -> Vec<(String, String, String)> {
    seen.iter()
        .filter(|v| v["type"].is_string())
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            (s("type"), s("id"), s("data"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_client_libraries_dispatch_every_message_and_resume_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // The HTTP port must survive the restart: take one, keep it.
    let http = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let serve = |dir: &std::path::Path| {
        common::ServeProcess::start(dir, &["--quic", "off", "--http", &http])
    };
    let broker = serve(dir.path());
    post(&http, "feed", &[], "m0").await;
    // An empty message and a multi-line one must each be dispatched once.
    post(&http, "feed", &[], "").await;
    post(&http, "feed", &[], "line 1\nline 2").await;
    // A CloudEvent in binary mode comes as an event of its type.
    post(
        &http,
        "feed",
        &[
            ("ce-specversion", "1.0"),
            ("ce-type", "order.created"),
            ("ce-id", "o-1"),
            ("ce-source", "/shop"),
        ],
        "typed",
    )
    .await;
    let url = format!("http://{http}/topics/feed/events?from=0");
    let mut clients = [
        Client::start("node", "sse_eventsource.mjs", &[&url, "order.created"]),
        Client::start("python3", "sse_sseclient.py", &[&url]),
    ];
    for c in &mut clients {
        c.wait("the first four events", |s| events(s).len() >= 4);
    }

    // Restart the broker under them: each reconnects with Last-Event-ID
    // and gets what follows, with no gap and no duplicate.
    assert!(broker.terminate().success());
    for c in &mut clients {
        c.wait("the drop", |s| s.iter().any(|v| v["error"].is_string()));
    }
    let broker = serve(dir.path());
    post(&http, "feed", &[], "m4").await;
    post(&http, "feed", &[], "m5").await;
    let want: Vec<(String, String, String)> = [
        ("message", "0", "m0"),
        ("message", "1", ""),
        ("message", "2", "line 1\nline 2"),
        ("order.created", "3", "typed"),
        ("message", "4", "m4"),
        ("message", "5", "m5"),
    ]
    .iter()
    .map(|(t, i, d)| (t.to_string(), i.to_string(), d.to_string()))
    .collect();
    for c in &mut clients {
        let seen = c.wait("all six events", |s| events(s).len() >= 6);
        assert_eq!(events(seen), want, "{seen:?}");
        let opens = seen.iter().filter(|v| v["open"] == true).count();
        assert!(opens >= 2, "reconnected: {seen:?}");
    }
    // Nothing more arrives (no duplicate after the reconnect).
    std::thread::sleep(Duration::from_millis(300));
    for c in &mut clients {
        while let Ok(v) = c.lines.try_recv() {
            c.seen.push(v);
        }
        assert_eq!(events(&c.seen), want, "{}", c.what);
    }
    assert!(broker.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_webhooks_verifier_accepts_every_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let serve = common::ServeProcess::start_for_hooks(dir.path());
    let http = serve.http.clone().unwrap();
    let mut receiver = Client::start("python3", "standard_webhooks.py", &[]);
    let url = receiver.wait("its URL", |s| !s.is_empty())[0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    // The broker makes the secret; the receiver learns it as a user would.
    let hook = common::send_json(
        reqwest::Client::new()
            .post(format!("http://{http}/hooks"))
            .json(&json!({ "topic": "signed", "url": url })),
    )
    .await;
    receiver.send_line(hook["secret"].as_str().expect("a secret"));
    post(
        &http,
        "signed",
        &[("content-type", "application/json")],
        r#"{"order": 1}"#,
    )
    .await;
    post(
        &http,
        "signed",
        &[("content-type", "text/plain")],
        "plain text",
    )
    .await;
    let seen = receiver.wait("two deliveries", |s| s.len() >= 3)[1..].to_vec();
    assert_eq!(seen[0]["id"], "signed:0");
    assert_eq!(seen[0]["payload"], json!({ "order": 1 }));
    assert_eq!(seen[1]["id"], "signed:1");
    for d in &seen {
        assert_eq!(d["verified"], true, "{d}");
        assert_eq!(d["tampered_verified"], false, "{d}");
    }
    assert!(serve.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_library_publishes_and_receives_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let serve =
        common::ServeProcess::start(dir.path(), &["--quic", "off", "--http", "127.0.0.1:0"]);
    let http = serve.http.clone().unwrap();
    post(&http, "ws", &[("content-type", "text/plain")], "before").await;
    let frames = Client::start(
        "python3",
        "websockets_client.py",
        &[&format!("ws://{http}/topics/ws/ws?from=0")],
    )
    .output();
    let frames = frames.as_array().unwrap();
    let acks: Vec<&Value> = frames.iter().filter(|f| f["op"] == "ack").collect();
    assert_eq!(
        acks,
        [
            &json!({ "op": "ack", "id": "a", "seq": 1 }),
            &json!({ "op": "ack", "id": "b", "seq": 2 })
        ]
    );
    let messages: Vec<(u64, &str, &Value)> = frames
        .iter()
        .filter(|f| f["seq"].is_u64() && f.get("op").is_none())
        .map(|f| {
            (
                f["seq"].as_u64().unwrap(),
                f["data"].as_str().unwrap(),
                &f["content_type"],
            )
        })
        .collect();
    assert_eq!(
        messages,
        [
            (0, "before", &json!("text/plain")),
            (1, "from python", &Value::Null),
            (2, r#"{"n":2}"#, &json!("application/json")),
        ]
    );
    assert!(serve.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prometheus_parser_reads_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let serve =
        common::ServeProcess::start(dir.path(), &["--quic", "off", "--http", "127.0.0.1:0"]);
    let http = serve.http.clone().unwrap();
    for i in 0..3 {
        post(&http, "metered", &[], &format!("m{i}")).await;
    }
    let reset = reqwest::Client::new()
        .put(format!("http://{http}/topics/metered/groups/billing"))
        .json(&json!({ "seq": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    let v = Client::start(
        "python3",
        "prometheus_parse.py",
        &[&format!("http://{http}/metrics")],
    )
    .output();
    assert!(
        v["content_type"]
            .as_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{v}"
    );
    let families = &v["families"];
    let sample = |family: &str, name: &str, labels: Value| -> Value {
        families[family]["samples"]
            .as_array()
            .unwrap_or_else(|| panic!("no family {family}: {families}"))
            .iter()
            .find(|s| s[0] == name && s[1] == labels)
            .unwrap_or_else(|| panic!("no {name} {labels} in {}", families[family]))[2]
            .clone()
    };
    assert_eq!(families["fanlog_topic_next_seq"]["type"], "gauge");
    assert_eq!(
        sample(
            "fanlog_topic_next_seq",
            "fanlog_topic_next_seq",
            json!({ "topic": "metered" })
        ),
        3.0
    );
    assert_eq!(
        sample(
            "fanlog_group_lag",
            "fanlog_group_lag",
            json!({ "topic": "metered", "group": "billing" })
        ),
        2.0
    );
    assert_eq!(families["fanlog_fsync_seconds"]["type"], "histogram");
    assert!(serve.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_asyncapi_parser_validates_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let serve = common::ServeProcess::start(dir.path(), &["--http", "127.0.0.1:0"]);
    let http = serve.http.clone().unwrap();
    post(&http, "orders", &[], "o").await;
    post(&http, "audit.log", &[], "a").await;
    let v = Client::start(
        "node",
        "asyncapi_parse.mjs",
        &[&format!("http://{http}/asyncapi.json")],
    )
    .output();
    assert_eq!(v["errors"], json!([]), "{v}");
    assert_eq!(v["warnings"], json!([]), "{v}");
    assert_eq!(v["version"], "3.0.0");
    let mut channels: Vec<&str> = v["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    channels.sort_unstable();
    assert_eq!(channels, ["audit.log", "orders"], "{v}");
    let servers = v["servers"].as_array().unwrap();
    for proto in ["http", "ws", "fanlog"] {
        assert!(servers.iter().any(|s| s == proto), "{proto}: {v}");
    }
    assert!(serve.terminate().success());
}
