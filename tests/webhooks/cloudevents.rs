//! CloudEvents in (structured and binary) and out (binary, structured,
//! batched, with a type filter), and invalid events refused.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_round_trip_to_hooks_in_both_modes() {
    let dir = tempfile::tempdir().unwrap();
    let rig = common::Rig::start(dir.path(), common::local_hooks()).await;
    let binary_rx = Receiver::start(Arc::new(|_, _| Reply::Status(200))).await;
    let structured_rx = Receiver::start(Arc::new(|_, _| Reply::Status(200))).await;
    let created_rx = Receiver::start(Arc::new(|_, _| Reply::Status(200))).await;
    for (rx, extra) in [
        (&binary_rx, json!({})),
        (&structured_rx, json!({"delivery": "structured"})),
        (&created_rx, json!({"types": ["order.created"]})),
    ] {
        let mut body = json!({"topic": "ce", "url": rx.url});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let (s, v) = rig.create(body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    // seq 0: structured in.
    let (s, v) = post(
        &rig,
        "ce",
        &[("content-type", "application/cloudevents+json")],
        r#"{"specversion":"1.0","id":"A-1","source":"/shop","type":"order.created",
            "datacontenttype":"application/json","data":{"total":12},"tenant":"acme"}"#,
    )
    .await;
    assert_eq!((s, v["seq"].as_u64()), (201, Some(0)), "{v}");
    // seq 1: binary in.
    let (s, v) = post(
        &rig,
        "ce",
        &[
            ("content-type", "text/plain"),
            ("ce-specversion", "1.0"),
            ("ce-id", "B-2"),
            ("ce-source", "/shop"),
            ("ce-type", "order.shipped"),
        ],
        "parcel 7",
    )
    .await;
    assert_eq!((s, v["seq"].as_u64()), (201, Some(1)), "{v}");
    // seq 2: not a CloudEvent.
    assert_eq!(post(&rig, "ce", &[], "plain").await.0, 201);

    let got = binary_rx.wait_accepted(3, Duration::from_secs(10)).await;
    assert_eq!(got, ids("ce", 0..3));
    let hits = binary_rx.hits();
    assert_eq!(hits[0].body, br#"{"total":12}"#);
    assert_eq!(header(&hits[0], "content-type"), "application/json");
    for (k, v) in [
        ("ce-specversion", "1.0"),
        ("ce-id", "A-1"),
        ("ce-source", "/shop"),
        ("ce-type", "order.created"),
        ("ce-tenant", "acme"),
        ("ce-sequence", "00000000000000000000"),
    ] {
        assert_eq!(header(&hits[0], k), v, "{k}");
    }
    assert_eq!(hits[1].body, b"parcel 7");
    assert_eq!(header(&hits[1], "content-type"), "text/plain");
    assert_eq!(header(&hits[1], "ce-id"), "B-2");
    assert_eq!(header(&hits[1], "ce-sequence"), "00000000000000000001");
    assert_eq!(hits[2].body, b"plain");
    assert_eq!(header(&hits[2], "ce-id"), "");

    structured_rx
        .wait_accepted(3, Duration::from_secs(10))
        .await;
    let hits = structured_rx.hits();
    assert_eq!(
        header(&hits[0], "content-type"),
        "application/cloudevents+json"
    );
    let e0: Value = serde_json::from_slice(&hits[0].body).unwrap();
    assert_eq!(
        (
            &e0["id"],
            &e0["type"],
            &e0["data"]["total"],
            &e0["sequence"],
            &e0["tenant"]
        ),
        (
            &json!("A-1"),
            &json!("order.created"),
            &json!(12),
            &json!("00000000000000000000"),
            &json!("acme")
        )
    );
    let e1: Value = serde_json::from_slice(&hits[1].body).unwrap();
    assert_eq!(
        (&e1["data"], &e1["datacontenttype"]),
        (&json!("parcel 7"), &json!("text/plain"))
    );
    assert_eq!(hits[2].body, b"plain", "a plain message stays plain");

    // The type filter passes over the rest, and its cursor still moves.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(created_rx.accepted(), ids("ce", 0..1));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_cloudevents_are_refused_and_nothing_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let rig = common::Rig::start(dir.path(), common::local_hooks()).await;
    assert_eq!(post(&rig, "v", &[], "first").await.0, 201);
    let structured = [("content-type", "application/cloudevents+json")];
    for body in [
        r#"{"specversion":"1.0","source":"/s","type":"t"}"#,
        r#"{"specversion":"1.0","id":"1","type":"t"}"#,
        r#"{"specversion":"1.0","id":"1","source":"/s"}"#,
        r#"{"specversion":"0.3","id":"1","source":"/s","type":"t"}"#,
        r#"{"id":"1","source":"/s","type":"t"}"#,
        r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":1,"data_base64":"AA=="}"#,
        "{broken",
    ] {
        let (s, v) = post(&rig, "v", &structured, body).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert!(v["error"].as_str().is_some(), "{v}");
    }
    for missing in ["ce-id", "ce-source", "ce-type", "ce-specversion"] {
        let headers: Vec<(&str, &str)> = [
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
        ]
        .into_iter()
        .filter(|(k, _)| *k != missing)
        .collect();
        let (s, v) = post(&rig, "v", &headers, "x").await;
        assert_eq!(s, 400, "without {missing}: {v}");
    }
    let (s, v) = post(
        &rig,
        "v",
        &[
            ("ce-specversion", "2.0"),
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
        ],
        "x",
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let (_, info) = rig.get("/topics/v").await;
    assert_eq!(info["next_seq"], 1, "nothing appended: {info}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_cloudevents_when_a_hook_asks_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let rig = common::Rig::start(dir.path(), common::local_hooks()).await;
    // 250 messages already stored: CloudEvents and plain ones, alternating.
    for i in 0..250 {
        if i % 2 == 0 {
            let body = format!(
                r#"{{"specversion":"1.0","id":"e{i}","source":"/b","type":"t","data":{{"i":{i}}}}}"#
            );
            post(
                &rig,
                "b",
                &[("content-type", "application/cloudevents+json")],
                &body,
            )
            .await;
        } else {
            post(
                &rig,
                "b",
                &[("content-type", "text/plain")],
                &format!("p{i}"),
            )
            .await;
        }
    }
    let rx = Receiver::start(Arc::new(|_, _| Reply::Status(200))).await;
    let (s, v) = rig
        .create(json!({"topic": "b", "url": rx.url, "delivery": "batch", "from": 0}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let events = loop {
        let events: Vec<Value> = rx
            .hits()
            .iter()
            .flat_map(|h| {
                assert_eq!(
                    header(h, "content-type"),
                    "application/cloudevents-batch+json"
                );
                serde_json::from_slice::<Vec<Value>>(&h.body).unwrap()
            })
            .collect();
        if events.len() >= 250 || Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(events.len(), 250);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["sequence"], format!("{i:020}"));
        if i % 2 == 0 {
            assert_eq!(
                (&e["id"], &e["data"]["i"]),
                (&json!(format!("e{i}")), &json!(i))
            );
        } else {
            assert_eq!(
                (&e["type"], &e["data"]),
                (&json!("fanlog.message"), &json!(format!("p{i}")))
            );
        }
    }
    let hits = rx.hits();
    assert!(
        hits.len() >= 3,
        "at most 100 events per request: {}",
        hits.len()
    );
    assert!(hits.len() < 250, "batched: {} requests", hits.len());
    assert_eq!(hits[0].id, "b:0-99");
    rig.stop().await;
}
