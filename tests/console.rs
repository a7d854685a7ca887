//! The console (`GET /`) as an operator uses it, in headless Chromium
//! against a real `fanlog serve`: topics, consumer groups and their lag,
//! hooks and their last error, a live tail with times that seeks by seq or
//! time, publishing JSON as JSON, a token prompt, and a layout that holds
//! below 800 px. Screenshots are kept under the target directory and named
//! on stderr.
//!
//! Needs `chromium` on PATH (`./scripts/test.sh` installs it).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::browser::{Browser, DevTools};
use common::receiver::{Receiver, Reply};
use serde_json::{Value, json};

/// The seqs the tail shows, in order.
async fn tail_seqs(page: &mut DevTools) -> Vec<u64> {
    let v = page
        .eval("[...document.querySelectorAll('#tail li[data-seq]')].map(li => Number(li.dataset.seq))")
        .await;
    serde_json::from_value(v).unwrap()
}

/// Waits until the tail shows exactly `want`.
async fn wait_tail(page: &mut DevTools, want: &[u64]) {
    let t = std::time::Instant::now();
    loop {
        let got = tail_seqs(page).await;
        if got == want {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "tail: want {want:?}, shown {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of the element `selector`, or null when there is none.
async fn text(page: &mut DevTools, selector: &str) -> Value {
    page.eval(&format!(
        "(document.querySelector({}) || {{}}).textContent ?? null",
        json!(selector)
    ))
    .await
}

/// Types `value` into the input `id` and submits the form `form`.
async fn submit(page: &mut DevTools, id: &str, value: &str, form: &str) {
    page.eval(&format!(
        "document.getElementById({}).value = {}; document.getElementById({}).requestSubmit(); true",
        json!(id),
        json!(value),
        json!(form)
    ))
    .await;
}

fn shots() -> &'static Path {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_groups_hooks_and_a_tail_that_seeks() {
    let dir = tempfile::tempdir().unwrap();
    let broker = common::ServeProcess::start_for_hooks(dir.path());
    let http = broker.http.clone().unwrap();
    let base = format!("http://{http}");
    common::publish_numbered(&http, "console-demo", 0..5, None).await;
    common::publish_numbered(&http, "second-topic", 0..2, None).await;
    let c = reqwest::Client::new();
    // A consumer group 3 behind, and a hook whose receiver fails.
    let group = common::send_json(
        c.put(format!("{base}/topics/console-demo/groups/billing"))
            .json(&json!({ "seq": 2 })),
    )
    .await;
    assert_eq!(group["lag"], 3, "{group}");
    // A work-sharing group with one HTTP worker holding 2 records.
    let fetched = common::send_json(c.post(format!(
        "{base}/topics/second-topic/shared/workers/fetch?worker=w1&max=2&wait=5s&key_order=true"
    )))
    .await;
    assert_eq!(
        fetched["messages"].as_array().map(Vec::len),
        Some(2),
        "{fetched}"
    );
    let receiver = Receiver::start(Arc::new(|_: &str, _| Reply::Status(500))).await;
    let hook = common::send_json(c.post(format!("{base}/hooks")).json(&json!({
        "topic": "console-demo", "url": receiver.url, "from": 0,
    })))
    .await;
    let hook_id = hook["id"].as_str().expect("a hook id").to_owned();
    let t = std::time::Instant::now();
    let failed = loop {
        let h = common::get_json(&format!("{base}/hooks/{hook_id}")).await;
        if h["last_error"].is_string() {
            break h;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "{h}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let url = format!("{base}/?topic=console-demo");
    let browser = Browser::open(&url);
    let mut page = DevTools::attach(&browser, &url).await;

    // Topics, the group's lag, the hook's state and error, and the tail of
    // the chosen topic with the time of each message.
    let html = page
        .wait_html("topics, groups and hooks", |h| {
            h.contains(r#"data-topic="console-demo""#)
                && h.contains(r#"data-topic="second-topic""#)
                && h.contains(r#"data-group="console-demo/billing""#)
                && h.contains(&format!(r#"data-hook="{hook_id}""#))
        })
        .await;
    assert!(html.contains("connected · 2 topics"), "{html}");
    // The hook's own cursor group shows as the hook, not as a group.
    assert!(
        !html.contains(r#"data-group="console-demo/_hooks."#),
        "{html}"
    );
    wait_tail(&mut page, &[0, 1, 2, 3, 4]).await;
    let group_row = page
        .eval("[...document.querySelector('tr[data-group=\"console-demo/billing\"]').cells].map(c => c.textContent)")
        .await;
    assert_eq!(group_row, json!(["console-demo", "billing", "2", "3", ""]));
    let shared_row = page
        .eval("[...document.querySelector('tr[data-group=\"second-topic/workers\"]').cells].map(c => c.textContent)")
        .await;
    let shared_row = shared_row
        .as_array()
        .expect("the shared group's row")
        .clone();
    assert_eq!(
        shared_row[..4],
        [
            json!("second-topic"),
            json!("workers"),
            json!("0"),
            json!("2")
        ]
    );
    let figures = shared_row[4].as_str().unwrap();
    assert!(
        figures.starts_with("1 worker · 2 pending · 2 in flight · oldest ")
            && figures.ends_with(" s · key order"),
        "{figures}"
    );
    let hook_row = text(&mut page, &format!(r#"tr[data-hook="{hook_id}"]"#)).await;
    let hook_row = hook_row.as_str().unwrap();
    let error = failed["last_error"].as_str().unwrap();
    assert!(
        hook_row.contains("active") && hook_row.contains(error) && hook_row.contains("HTTP 500"),
        "{hook_row} lacks {error}"
    );
    let page0 = common::get_json(&format!("{base}/topics/console-demo/messages?from=0")).await;
    let time0 = page0["messages"][0]["time"].as_str().unwrap();
    let shown = page
        .eval("document.querySelector('#tail li[data-seq=\"0\"] time').dateTime")
        .await;
    assert_eq!(shown, time0);
    assert_eq!(
        text(&mut page, r#"#tail li[data-seq="4"] .data"#).await,
        "m4"
    );
    // An open broker asks for no token: the sign-in form is not shown.
    let shown = page
        .eval("getComputedStyle(document.getElementById('login')).display")
        .await;
    assert_eq!(shown, "none");

    // Live: a message published elsewhere, then JSON and text from the
    // page's own form, each stored with its content type.
    common::publish_numbered(&http, "console-demo", 5..6, None).await;
    wait_tail(&mut page, &[0, 1, 2, 3, 4, 5]).await;
    submit(&mut page, "message", r#"{"n": 7, "ok": true}"#, "publish").await;
    wait_tail(&mut page, &[0, 1, 2, 3, 4, 5, 6]).await;
    submit(&mut page, "message", "plain words", "publish").await;
    wait_tail(&mut page, &[0, 1, 2, 3, 4, 5, 6, 7]).await;
    let stored = common::get_json(&format!("{base}/topics/console-demo/messages?from=6")).await;
    assert_eq!(stored["messages"][0]["content_type"], "application/json");
    assert_eq!(stored["messages"][0]["data"], r#"{"n": 7, "ok": true}"#);
    assert_eq!(stored["messages"][1]["content_type"], "text/plain");
    let json_cell = page
        .eval("document.querySelector('#tail li[data-seq=\"6\"] .data').className")
        .await;
    assert_eq!(json_cell, "data json");
    let shown: Value = serde_json::from_str(
        text(&mut page, r#"#tail li[data-seq="6"] .data"#)
            .await
            .as_str()
            .unwrap(),
    )
    .expect("JSON shown as JSON");
    assert_eq!(shown, json!({ "n": 7, "ok": true }));
    page.viewport(1280, 900).await;
    page.keep_screenshot(shots(), "console-wide.png").await;

    // Seek by seq, then by time: the tail restarts there, and the address
    // names the position so it can be shared.
    submit(&mut page, "seek-to", "3", "seek").await;
    wait_tail(&mut page, &[3, 4, 5, 6, 7]).await;
    let page5 = common::get_json(&format!("{base}/topics/console-demo/messages?from=5")).await;
    let time5 = page5["messages"][0]["time"].as_str().unwrap();
    submit(&mut page, "seek-to", time5, "seek").await;
    wait_tail(&mut page, &[5, 6, 7]).await;
    let search = page.eval("location.search").await;
    assert!(search.as_str().unwrap().contains("from_time="), "{search}");
    page.eval("document.getElementById('earliest').click(); true")
        .await;
    wait_tail(&mut page, &[0, 1, 2, 3, 4, 5, 6, 7]).await;

    // Below 800 px: one column, nothing wider than the screen.
    let layout = "({ columns: getComputedStyle(document.querySelector('main')).gridTemplateColumns.split(' ').length, \
                    overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth })";
    assert_eq!(
        page.eval(layout).await,
        json!({ "columns": 2, "overflow": 0 })
    );
    page.viewport(600, 1000).await;
    assert_eq!(
        page.eval(layout).await,
        json!({ "columns": 1, "overflow": 0 })
    );
    let width = page.eval("document.documentElement.clientWidth").await;
    assert!(width.as_u64().is_some_and(|w| w <= 600), "{width}");
    page.keep_screenshot(shots(), "console-narrow.png").await;
    assert!(broker.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_asks_for_a_token_and_signs_in_and_out() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fanlog.toml");
    std::fs::write(
        &config,
        "[[auth.tokens]]\ntoken = \"console-token\"\npublish = [\"*\"]\nsubscribe = [\"*\"]\n",
    )
    .unwrap();
    let broker = common::ServeProcess::start(
        &dir.path().join("data"),
        &[
            "--quic",
            "off",
            "--http",
            "127.0.0.1:0",
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let http = broker.http.clone().unwrap();
    common::publish_numbered(&http, "signed-in", 0..3, Some("console-token")).await;
    let url = format!("http://{http}/?topic=signed-in");
    let browser = Browser::open(&url);
    let mut page = DevTools::attach(&browser, &url).await;

    // Refused at first: a token prompt, not an error, and no topic.
    let html = page
        .wait_html("the sign-in form", |h| h.contains(r#"<form id="login">"#))
        .await;
    assert!(!html.contains("data-topic="), "{html}");
    assert_eq!(text(&mut page, "#conn").await, "sign in needed");
    submit(&mut page, "token", "not-a-token", "login").await;
    page.wait_html("the refusal", |h| {
        h.contains("that token is not known to this broker")
    })
    .await;

    // Signed in: the session cookie carries the page's fetches and its
    // WebSocket; this token may not see consumer groups, and the page says so.
    submit(&mut page, "token", "console-token", "login").await;
    page.wait_html("the topics", |h| {
        h.contains(r#"<form id="login" hidden="">"#) && h.contains(r#"data-topic="signed-in""#)
    })
    .await;
    wait_tail(&mut page, &[0, 1, 2]).await;
    common::publish_numbered(&http, "signed-in", 3..4, Some("console-token")).await;
    wait_tail(&mut page, &[0, 1, 2, 3]).await;
    page.wait_html("the groups note", |h| {
        h.contains("consumer groups need a token with admin rights")
    })
    .await;
    page.keep_screenshot(shots(), "console-signed-in.png").await;

    // Signing out ends the session: the prompt is back.
    page.eval("document.getElementById('signout').click(); true")
        .await;
    page.wait_html("the sign-in form again", |h| {
        h.contains(r#"<form id="login">"#)
    })
    .await;
    assert_eq!(text(&mut page, "#conn").await, "sign in needed");
    assert!(broker.terminate().success());
}
