//! A JSON payload comes back in the documented (and contracted) form on
//! every JSON interface: pages, long poll and WebSocket carry it as a
//! string (`data: "{\"id\":1}"`), with its content type, so a JSON string
//! and a text message never look alike.

mod common;

use futures_util::StreamExt;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_payloads_come_back_as_strings_with_their_content_type() {
    let dir = tempfile::tempdir().unwrap();
    let rig = common::Rig::start(dir.path(), common::local_hooks()).await;
    let (s, _) = common::receiver::post(
        &rig,
        "j",
        &[("content-type", "application/json")],
        r#"{"id":1}"#,
    )
    .await;
    assert_eq!(s, 201);
    let want = (json!(r#"{"id":1}"#), json!("application/json"));
    let page = common::get_json(&rig.http.url("/topics/j/messages?from=0")).await;
    let m = &page["messages"][0];
    assert_eq!(
        (m["data"].clone(), m["content_type"].clone()),
        want,
        "{page}"
    );
    let poll = common::get_json(&rig.http.url("/topics/j/poll?after=0&timeout=0")).await;
    assert_eq!(poll["messages"], json!([]), "nothing after seq 0 yet");
    let poll = common::get_json(
        &rig.http
            .url("/topics/j/poll?timeout=1&from_time=1970-01-01T00:00:00Z"),
    )
    .await;
    let m = &poll["messages"][0];
    assert_eq!(
        (m["data"].clone(), m["content_type"].clone()),
        want,
        "{poll}"
    );
    let url = rig
        .http
        .url("/topics/j/ws?from=0")
        .replace("http://", "ws://");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let frame = ws.next().await.unwrap().unwrap();
    let m: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
    assert_eq!((m["data"].clone(), m["content_type"].clone()), want, "{m}");
    rig.stop().await;
}
