//! The browser edges in a real browser: headless Chromium runs pages that
//! use nothing but `EventSource`, `WebSocket` and `fetch` against a real
//! `fanlog serve` on 127.0.0.1. Each page reports what it received to a
//! small collector server in this test (the page's own origin), cumulatively,
//! so the test sees exactly what the browser's script saw.
//!
//! Needs `chromium` on PATH (`./scripts/test.sh` installs it).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::Html;
use axum::routing::{get, post};
use common::browser::{Browser, DevTools};
use serde_json::Value;

/// The collector: serves the test page and keeps the page's latest report.
struct Collector {
    addr: std::net::SocketAddr,
    latest: Arc<Mutex<Option<Value>>>,
}

impl Collector {
    async fn start(page: String) -> Self {
        let latest = Arc::new(Mutex::new(None));
        let app = axum::Router::new()
            .route("/page", get(move || async move { Html(page) }))
            .route(
                "/report",
                post(
                    |State(latest): State<Arc<Mutex<Option<Value>>>>, body: String| async move {
                        if let Ok(v) = serde_json::from_str(&body) {
                            *latest.lock().unwrap() = Some(v);
                        }
                    },
                ),
            )
            .with_state(latest.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, latest }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until the latest report satisfies `done`, and returns it.
    async fn wait(&self, what: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let t = Instant::now();
        loop {
            if let Some(v) = self.latest.lock().unwrap().clone()
                && done(&v)
            {
                return v;
            }
            assert!(
                t.elapsed() < timeout,
                "{what}: timed out; last report {:?}",
                self.latest.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A page whose `main(broker, state)` fills `state`; the state is posted to
/// the collector every 100 ms.
fn page(broker: &str, main: &str) -> String {
    format!(
        r#"<!doctype html><meta charset="utf-8"><body><script>
"use strict";
const BROKER = "{broker}";
const state = {{}};
setInterval(() => fetch("/report", {{ method: "POST", body: JSON.stringify(state) }}).catch(() => {{}}), 100);
{main}
main(BROKER, state);
</script></body>"#
    )
}

fn serve(data: &std::path::Path, http: &str, origin: &str) -> common::ServeProcess {
    common::ServeProcess::start(
        data,
        &["--quic", "off", "--http", http, "--cors-origin", origin],
    )
}

async fn publish_all(http: &str, topic: &str, range: std::ops::Range<u32>) {
    common::publish_numbered(http, topic, range, None).await;
}

/// The received list of a report as (seq, data).
fn received(v: &Value, key: &str) -> Vec<(u64, String)> {
    v[key]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e[0].as_str()
                            .and_then(|s| s.parse().ok())
                            .or(e[0].as_u64())
                            .unwrap(),
                        e[1].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn expect_exactly(got: &[(u64, String)], n: u32) {
    let want: Vec<(u64, String)> = (0..n).map(|i| (u64::from(i), format!("m{i}"))).collect();
    assert_eq!(got, want.as_slice(), "every message once, in order");
}

const SSE_MAIN: &str = r#"
function main(broker, state) {
  state.sse = []; state.opens = 0; state.errors = 0;
  const es = new EventSource(broker + "/topics/b/events?from=0");
  es.onopen = () => { state.opens += 1; };
  es.onerror = () => { state.errors += 1; };
  es.onmessage = (e) => { state.sse.push([e.lastEventId, e.data]); };
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_source_receives_in_order_and_resumes_after_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    // The broker's HTTP port must survive the restart: take one, keep it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let http = format!("127.0.0.1:{port}");
    let collector = Collector::start(page(&format!("http://{http}"), SSE_MAIN)).await;
    let broker = serve(dir.path(), &http, &collector.origin());
    publish_all(&http, "b", 0..50).await;

    let _browser = Browser::open(&format!("{}/page", collector.origin()));
    collector
        .wait("first 50 over SSE", Duration::from_secs(60), |v| {
            received(v, "sse").len() >= 50
        })
        .await;

    // Restart the broker under the page; the EventSource reconnects by
    // itself with Last-Event-ID.
    assert!(broker.terminate().success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let broker = serve(dir.path(), &http, &collector.origin());
    publish_all(&http, "b", 50..100).await;
    let v = collector
        .wait("all 100 after the restart", Duration::from_secs(60), |v| {
            received(v, "sse").len() >= 100
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let v = collector.latest.lock().unwrap().clone().unwrap_or(v);
    expect_exactly(&received(&v, "sse"), 100);
    assert!(v["opens"].as_u64().unwrap() >= 2, "reconnected: {v}");
    assert!(v["errors"].as_u64().unwrap() >= 1, "saw the drop: {v}");
    assert!(broker.terminate().success());
}

const EMPTY_MAIN: &str = r#"
function main(broker, state) {
  state.sse = [];
  const es = new EventSource(broker + "/topics/e/events?from=0");
  es.onmessage = (e) => { state.sse.push([e.lastEventId, e.data]); };
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_source_dispatches_empty_and_multi_line_messages() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let http = format!("127.0.0.1:{port}");
    let collector = Collector::start(page(&format!("http://{http}"), EMPTY_MAIN)).await;
    let broker = serve(dir.path(), &http, &collector.origin());
    let bodies = ["", "a\nb", "", "c\r\nd", "x"];
    let c = reqwest::Client::new();
    for b in bodies {
        let r = c
            .post(format!("http://{http}/topics/e/messages"))
            .header("content-type", "text/plain")
            .body(b)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    }
    let _browser = Browser::open(&format!("{}/page", collector.origin()));
    let v = collector
        .wait(
            "every message, empty ones too",
            Duration::from_secs(60),
            |v| received(v, "sse").len() >= bodies.len(),
        )
        .await;
    let want: Vec<(u64, String)> = [(0, ""), (1, "a\nb"), (2, ""), (3, "c\nd"), (4, "x")]
        .iter()
        .map(|(i, s)| (*i, (*s).to_owned()))
        .collect();
    assert_eq!(received(&v, "sse"), want);
    assert!(broker.terminate().success());
}

const WS_MAIN: &str = r#"
function main(broker, state) {
  state.acks = []; state.ws = []; state.closed = null;
  const ws = new WebSocket(broker.replace("http:", "ws:") + "/topics/w/ws?from=0");
  ws.onopen = () => {
    for (let i = 0; i < 30; i++) ws.send(JSON.stringify({ op: "publish", data: "m" + i, id: i }));
  };
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.op === "ack") state.acks.push([m.id, m.seq]);
    else state.ws.push([m.seq, m.data]);
  };
  ws.onclose = (e) => { state.closed = [e.code, e.reason]; };
}
"#;

const POLL_MAIN: &str = r#"
async function main(broker, state) {
  state.poll = []; state.polls = 0; state.failures = 0;
  let after = -1;
  for (;;) {
    const q = after < 0 ? "" : "after=" + after + "&";
    try {
      const res = await fetch(broker + "/topics/lp/poll?" + q + "timeout=5", { cache: "no-store" });
      const page = await res.json();
      state.polls += 1;
      for (const m of page.messages) state.poll.push([m.seq, m.data]);
      after = page.next - 1;
    } catch (e) {
      state.failures += 1;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_websocket_publishes_and_receives() {
    let dir = tempfile::tempdir().unwrap();
    // WebSockets need no CORS; any origin will do for the broker.
    let broker = serve(dir.path(), "127.0.0.1:0", "http://unused.example");
    let http = broker.http.clone().unwrap();
    let collector = Collector::start(page(&format!("http://{http}"), WS_MAIN)).await;
    let _browser = Browser::open(&format!("{}/page", collector.origin()));
    let v = collector
        .wait("30 acks and 30 messages", Duration::from_secs(60), |v| {
            v["acks"].as_array().is_some_and(|a| a.len() >= 30) && received(v, "ws").len() >= 30
        })
        .await;
    let acks: Vec<(u64, u64)> = v["acks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a[0].as_u64().unwrap(), a[1].as_u64().unwrap()))
        .collect();
    assert_eq!(
        acks,
        (0..30).map(|i| (i, i)).collect::<Vec<_>>(),
        "acks in order"
    );
    expect_exactly(&received(&v, "ws"), 30);
    assert!(v["closed"].is_null(), "still open: {v}");
    assert!(broker.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_loop_in_a_page_receives_everything() {
    let dir = tempfile::tempdir().unwrap();
    // The page's origin must be allowed (cross-origin fetch), so the
    // collector comes first and the page learns the broker's port later.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let http = format!("127.0.0.1:{port}");
    let collector = Collector::start(page(&format!("http://{http}"), POLL_MAIN)).await;
    let broker = serve(dir.path(), &http, &collector.origin());
    let _browser = Browser::open(&format!("{}/page", collector.origin()));
    // The first poll is live (no `after`): wait until the page polls.
    collector
        .wait("the page polls", Duration::from_secs(60), |v| {
            !v["poll"].is_null()
        })
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for batch in 0..4 {
        publish_all(&http, "lp", batch * 10..batch * 10 + 10).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let v = collector
        .wait("40 messages by long poll", Duration::from_secs(60), |v| {
            received(v, "poll").len() >= 40
        })
        .await;
    expect_exactly(&received(&v, "poll"), 40);
    assert_eq!(v["failures"], 0, "{v}");
    assert!(broker.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_page_resumes_after_a_reload() {
    // examples/browser/index.html as it ships, served from the collector's
    // origin, which the broker allows.
    let collector = Collector::start(include_str!("../examples/browser/index.html").into()).await;
    let dir = tempfile::tempdir().unwrap();
    let broker = serve(dir.path(), "127.0.0.1:0", &collector.origin());
    let http = broker.http.clone().unwrap();
    publish_all(&http, "feed", 0..5).await;
    let url = format!(
        "{}/page?broker=http://{http}&topic=feed",
        collector.origin()
    );
    let browser = Browser::open(&url);
    let mut page = DevTools::attach(&browser, &url).await;
    let shown = async |page: &mut DevTools, want: &[u32]| {
        let t = Instant::now();
        loop {
            let html = page.html().await;
            let seqs: Vec<u32> = html
                .split("data-seq=\"")
                .skip(1)
                .filter_map(|s| s.split('"').next()?.parse().ok())
                .collect();
            if seqs == want {
                return html;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "want {want:?}, shown {seqs:?}: {html}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let html = shown(&mut page, &[0, 1, 2, 3, 4]).await;
    assert!(html.contains("<span>#4</span>m4"), "{html}");
    // A reload starts a new page: it resumes after seq 4 from localStorage,
    // so it shows only what came after, once each.
    page.call("Page.reload", serde_json::json!({})).await;
    let html = shown(&mut page, &[]).await;
    assert!(!html.contains("#4"), "{html}");
    let t = Instant::now();
    while !page.html().await.contains("connected, from seq 5") {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the reloaded page never connected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    publish_all(&http, "feed", 5..8).await;
    shown(&mut page, &[5, 6, 7]).await;
    assert!(broker.terminate().success());
}
