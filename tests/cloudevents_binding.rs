//! CloudEvents over HTTP as the spec's HTTP binding and JSON format say,
//! through a real broker and real webhook receivers: header values are
//! percent-decoded on the way in and percent-encoded on the way out, JSON
//! data without `datacontenttype` is `application/json`, integer and boolean
//! extensions keep their type in structured mode, a null attribute is unset,
//! times may carry an offset, and two invalid events are refused.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use common::receiver::{Receiver, Reply, header, post};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_the_http_binding_and_json_format() {
    let dir = tempfile::tempdir().unwrap();
    let rig = common::Rig::start(dir.path(), common::local_hooks()).await;
    let binary_rx = Receiver::start(Arc::new(|_, _| Reply::Status(200))).await;
    let structured_rx = Receiver::start(Arc::new(|_, _| Reply::Status(200))).await;
    for (rx, delivery) in [(&binary_rx, "binary"), (&structured_rx, "structured")] {
        let (s, v) = rig
            .create(json!({"topic": "ce", "url": rx.url, "delivery": delivery}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let binary = |subject: &'static str| {
        vec![
            ("content-type", "text/plain"),
            ("ce-specversion", "1.0"),
            ("ce-id", "B-1"),
            ("ce-source", "/shop"),
            ("ce-type", "order.shipped"),
            ("ce-subject", subject),
        ]
    };
    // seq 0: binary, a percent-encoded subject ("a bé").
    let (s, v) = post(&rig, "ce", &binary("a%20b%C3%A9"), "parcel").await;
    assert_eq!((s, v["seq"].as_u64()), (201, Some(0)), "{v}");
    // seq 1: structured, JSON data with no datacontenttype, typed
    // extensions, a null subject, a time with an offset.
    let structured = [("content-type", "application/cloudevents+json")];
    let (s, v) = post(
        &rig,
        "ce",
        &structured,
        r#"{"specversion":"1.0","id":"S-1","source":"/shop","type":"order.created",
            "time":"2026-11-22T12:00:00+02:00","subject":null,"count":5,"rush":true,
            "data":{"total":12}}"#,
    )
    .await;
    assert_eq!((s, v["seq"].as_u64()), (201, Some(1)), "{v}");
    // Invalid: ce-datacontenttype in binary mode; specversion as a number.
    let mut bad = binary("x");
    bad.push(("ce-datacontenttype", "text/plain"));
    assert_eq!(post(&rig, "ce", &bad, "x").await.0, 400);
    let (s, v) = post(
        &rig,
        "ce",
        &structured,
        r#"{"specversion":1.0,"id":"S-2","source":"/shop","type":"t"}"#,
    )
    .await;
    assert_eq!(s, 400, "{v}");

    binary_rx.wait_accepted(2, Duration::from_secs(10)).await;
    let hits = binary_rx.hits();
    assert_eq!(header(&hits[0], "ce-subject"), "a%20b%C3%A9");
    assert_eq!(header(&hits[1], "content-type"), "application/json");
    assert_eq!(header(&hits[1], "ce-count"), "5");
    assert_eq!(
        header(&hits[1], "ce-subject"),
        "",
        "a null subject is unset"
    );

    structured_rx
        .wait_accepted(2, Duration::from_secs(10))
        .await;
    let hits = structured_rx.hits();
    let e0: Value = serde_json::from_slice(&hits[0].body).unwrap();
    assert_eq!(e0["subject"], json!("a bé"));
    let e1: Value = serde_json::from_slice(&hits[1].body).unwrap();
    assert_eq!(
        (
            &e1["count"],
            &e1["rush"],
            &e1["datacontenttype"],
            &e1["data"]["total"]
        ),
        (
            &json!(5),
            &json!(true),
            &json!("application/json"),
            &json!(12)
        )
    );
    assert!(e1.get("subject").is_none(), "{e1}");
    rig.stop().await;
}
