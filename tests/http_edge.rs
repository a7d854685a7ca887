//! The HTTP edge through real sockets (reqwest, tokio-tungstenite): every
//! route of the contract, its errors, SSE resume and gaps, long polling,
//! WebSocket publish/receive and close codes, CORS.

mod common;

use std::time::Duration;

use fanlog::server::edge::{HttpConfig, close_code};
use fanlog::{Broker, Durability, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn broker(dir: &std::path::Path) -> Broker {
    common::open(dir, &common::config(Durability::Never, 1 << 20))
}

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(ct.as_deref(), Some("application/json"), "status {status}");
    (status, r.json().await.expect("a JSON body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_routes_and_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let config = HttpConfig {
        max_body: 4096,
        ..HttpConfig::default()
    };
    let http = common::HttpServer::start(&b, config).await;
    let c = reqwest::Client::new();

    // Publish: 201 with the seq; the content type is kept.
    let r = c
        .post(http.url("/topics/orders/messages"))
        .header("content-type", "application/json")
        .body(r#"{"id":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_of(r).await,
        (201, json!({"topic": "orders", "seq": 0}))
    );
    let r = c
        .post(http.url("/topics/orders/messages"))
        .body(vec![0xff, 0x00, 0xfe])
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r).await.1["seq"], 1);

    // Idempotency-Key: a repeat returns the first seq and appends nothing.
    for _ in 0..2 {
        let r = c
            .post(http.url("/topics/orders/messages"))
            .header("idempotency-key", "order-7")
            .body("seven")
            .send()
            .await
            .unwrap();
        assert_eq!(
            json_of(r).await,
            (201, json!({"topic": "orders", "seq": 2}))
        );
    }
    assert_eq!(b.topic_info("orders").unwrap().next_seq, 3);

    // List and info.
    let (s, list) = json_of(c.get(http.url("/topics")).send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(list[0]["name"], "orders");
    assert_eq!(list[0]["first_seq"], 0);
    assert_eq!(list[0]["next_seq"], 3);
    assert!(list[0]["bytes"].as_u64().unwrap() > 0);
    let (s, info) = json_of(c.get(http.url("/topics/orders")).send().await.unwrap()).await;
    assert_eq!((s, &info["next_seq"]), (200, &json!(3)));

    // Paged read: text as a string, other bytes as base64, `next` to go on.
    let (s, page) = json_of(
        c.get(http.url("/topics/orders/messages?from=0&limit=2"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let m = page["messages"].as_array().unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m[0]["seq"], 0);
    assert_eq!(m[0]["data"], r#"{"id":1}"#);
    assert_eq!(m[0]["content_type"], "application/json");
    assert!(m[0]["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(m[1]["data"], "/wD+");
    assert_eq!(m[1]["encoding"], "base64");
    assert_eq!(page["next"], 2);
    let (_, page) = json_of(
        c.get(http.url("/topics/orders/messages?from=2"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page["messages"][0]["data"], "seven");
    assert_eq!(page["next"], 3);

    // Errors: each a JSON {"error"} with a fitting status.
    let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
        (c.get(http.url("/topics/missing")), 404),
        (c.get(http.url("/topics/missing/messages")), 404),
        (c.get(http.url("/topics/.hidden/messages")), 400),
        (c.post(http.url("/topics/a%20b/messages")).body("x"), 400),
        (c.get(http.url("/topics/orders/messages?from=abc")), 400),
        (c.get(http.url("/no/such/route")), 404),
        (c.delete(http.url("/topics/orders/messages")), 405),
        (
            c.post(http.url("/topics/orders/messages"))
                .body(vec![b'x'; 5000]),
            413,
        ),
        (
            c.get(http.url("/topics/orders/events"))
                .header("last-event-id", "not-a-seq"),
            400,
        ),
        (c.get(http.url("/topics/orders/ws")), 400),
        (c.get(http.url("/topics/orders/poll?timeout=-1")), 400),
    ];
    for (req, want) in cases {
        let (status, body) = json_of(req.send().await.unwrap()).await;
        assert_eq!(status, want, "{body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
    }
    assert!(!dir.path().join("topics").join("a b").exists());
    assert_eq!(
        b.topic_info("orders").unwrap().next_seq,
        3,
        "nothing appended"
    );

    // Health and the console page.
    let (s, h) = json_of(c.get(http.url("/healthz")).send().await.unwrap()).await;
    assert_eq!((s, h), (200, json!({"status": "ok"})));
    let page = c.get(http.url("/")).send().await.unwrap();
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().await.unwrap().contains("fanlog console"));

    // Topic settings out of range are the caller's error, not the
    // broker's (schemathesis found `segment_bytes` answered with a 500).
    for bad in [
        json!({"segment_bytes": 1}),
        json!({"segment_bytes": 18_782_207_575u64}),
        json!({"max_message_bytes": 0}),
    ] {
        let (s, e) = json_of(
            c.put(http.url("/topics/settings-t"))
                .json(&bad)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 400, "{bad}: {e}");
        assert!(
            e["error"]
                .as_str()
                .unwrap()
                .contains("invalid topic settings"),
            "{e}"
        );
    }
    let (s, _) = json_of(c.get(http.url("/topics/settings-t")).send().await.unwrap()).await;
    assert_eq!(s, 404, "a refused topic is not made");
    http.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_published_in_order_in_one_request() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let config = HttpConfig {
        max_body: 64 << 10,
        ..HttpConfig::default()
    };
    let http = common::HttpServer::start(&b, config).await;
    let c = reqwest::Client::new();
    let post = |body: Value| {
        c.post(http.url("/topics/b/batch"))
            .header("idempotency-key", "batch-1")
            .json(&body)
            .send()
    };
    let batch = json!({"messages": [
        {"data": "text"},
        {"data": {"n": 1}},
        {"data": "//4=", "encoding": "base64", "content_type": "application/octet-stream"},
        {"data": "own key", "idempotency_key": "mine"},
        {"data": null},
    ]});
    // Every seq, in order; a retry of the whole batch appends nothing.
    for _ in 0..2 {
        let r = post(batch.clone()).await.unwrap();
        assert_eq!(
            json_of(r).await,
            (201, json!({"topic": "b", "seqs": [0, 1, 2, 3, 4]}))
        );
    }
    assert_eq!(b.topic_info("b").unwrap().next_seq, 5);
    let (_, page) = json_of(c.get(http.url("/topics/b/messages")).send().await.unwrap()).await;
    let m = &page["messages"];
    assert_eq!(m[0]["data"], "text");
    assert_eq!(m[0]["content_type"], Value::Null);
    assert_eq!(m[1]["data"], r#"{"n":1}"#);
    assert_eq!(m[1]["content_type"], "application/json");
    assert_eq!(
        (&m[2]["data"], &m[2]["encoding"]),
        (&json!("//4="), &json!("base64"))
    );
    assert_eq!(m[2]["content_type"], "application/octet-stream");
    assert_eq!(
        (&m[4]["data"], &m[4]["content_type"]),
        (&json!("null"), &json!("application/json"))
    );
    // A message's own key is its own: a single publish under it is its retry.
    let r = c
        .post(http.url("/topics/b/messages"))
        .header("idempotency-key", "mine")
        .body("own key")
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r).await.1["seq"], 3);

    // Bad batches: a clear error each, and nothing of them stored.
    let r = c
        .put(http.url("/topics/small"))
        .json(&json!({"max_message_bytes": 1024}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            c.post(http.url("/topics/b/batch"))
                .json(&json!({"messages": []})),
            400,
            "1 to 10000",
        ),
        (
            c.post(http.url("/topics/b/batch"))
                .json(&json!([{"data": "x"}])),
            400,
            "bad batch",
        ),
        (
            c.post(http.url("/topics/b/batch"))
                .header("content-type", "application/json")
                .body("{not json"),
            400,
            "bad batch",
        ),
        (
            c.post(http.url("/topics/b/batch"))
                .json(&json!({"messages": [{"data": "x"}, {"data": "!", "encoding": "base64"}]})),
            400,
            "message 1: data is not base64",
        ),
        (
            c.post(http.url("/topics/b/batch"))
                .json(&json!({"messages": [{"content_type": "text/plain"}]})),
            400,
            "needs data",
        ),
        (
            c.post(http.url("/topics/b/batch"))
                .json(&json!({"messages": [{"data": "x", "extra": 1}]})),
            400,
            "unknown field",
        ),
        (
            c.post(http.url("/topics/b/batch")).body("x"),
            415,
            "application/json",
        ),
        (
            c.post(http.url("/topics/b/batch"))
                .header("content-type", "application/cloudevents-batch+json")
                .body("[]"),
            415,
            "application/json",
        ),
        (
            c.post(http.url("/topics/b/batch"))
                .header(
                    "idempotency-key",
                    reqwest::header::HeaderValue::from_bytes(b"k\xe9").unwrap(),
                )
                .json(&json!({"messages": [{"data": "x"}]})),
            400,
            "not visible ASCII",
        ),
        (
            c.post(http.url("/topics/.b/batch"))
                .json(&json!({"messages": [{"data": "x"}]})),
            400,
            "topic",
        ),
        // One message over its topic's limit refuses the whole batch.
        (
            c.post(http.url("/topics/small/batch"))
                .json(&json!({"messages": [{"data": "x"}, {"data": "y".repeat(2000)}]})),
            413,
            "limit",
        ),
        (
            c.post(http.url("/topics/b/batch"))
                .json(&json!({"messages": [{"data": "y".repeat(70 << 10)}]})),
            413,
            "limit",
        ),
    ];
    for (req, want, says) in cases {
        let (status, body) = json_of(req.send().await.unwrap()).await;
        assert_eq!(status, want, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{says}: {body}"
        );
    }
    assert_eq!(b.topic_info("b").unwrap().next_seq, 5, "nothing appended");
    assert_eq!(
        b.topic_info("small").unwrap().next_seq,
        0,
        "nothing appended"
    );

    // The WebSocket's publish op takes an idempotency key too.
    let mut ws = ws_connect(&http, "/topics/b/ws").await;
    for id in 0..2 {
        let op = json!({"op": "publish", "data": "once", "id": id, "idempotency_key": "ws-1"});
        ws.send(WsMessage::text(op.to_string())).await.unwrap();
    }
    let mut acks = Vec::new();
    while acks.len() < 2 {
        let v = ws_json(&mut ws).await;
        if v["op"] == "ack" {
            acks.push(v["seq"].clone());
        }
    }
    assert_eq!(acks, [json!(5), json!(5)]);
    assert_eq!(b.topic_info("b").unwrap().next_seq, 6);
    http.stop().await;
}

/// Reads an SSE response until `until` holds on the text so far.
async fn sse_until(r: reqwest::Response, until: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    let mut body = r.bytes_stream();
    let read = async {
        while !until(&text) {
            let chunk = body.next().await.expect("stream ended").expect("read");
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or_else(|_| panic!("timed out; got {text:?}"));
    text
}

/// The (id, event, data) of each complete event in SSE text.
fn events(text: &str) -> Vec<(Option<String>, Option<String>, String)> {
    // Line ends as EventSource reads them: \r\n, \r or \n.
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    text.split("\n\n")
        .filter(|block| block.lines().any(|l| l.starts_with("data:")))
        .map(|block| {
            let (mut id, mut ev, mut data) = (None, None, Vec::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("event: ") {
                    ev = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push(v.to_owned());
                } else if line == "data:" {
                    data.push(String::new());
                }
            }
            (id, ev, data.join("\n"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_resumes_and_never_lets_a_payload_inject_fields() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let http = common::HttpServer::start(&b, HttpConfig::default()).await;
    let c = reqwest::Client::new();
    for i in 0..5 {
        b.publish("t", Message::new(format!("m{i}"))).await.unwrap();
    }
    let url = http.url("/topics/t/events");

    // Headers that keep proxies from buffering; the retry hint comes first.
    let r = c.get(&url).query(&[("from", "0")]).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert_eq!(r.headers()["cache-control"], "no-cache, no-transform");
    assert_eq!(r.headers()["x-accel-buffering"], "no");
    let text = sse_until(r, |t| events(t).len() == 5).await;
    let retry: u64 = text
        .strip_prefix("retry: ")
        .and_then(|t| t.split('\n').next())
        .and_then(|n| n.parse().ok())
        .expect("retry first");
    assert!((1000..=1500).contains(&retry), "{retry}");
    let got = events(&text);
    for (i, (id, _, data)) in got.iter().enumerate() {
        assert_eq!(id.as_deref(), Some(i.to_string().as_str()));
        assert_eq!(data, &format!("m{i}"));
    }

    // Last-Event-ID resumes after that seq, and wins over the query.
    let r = c
        .get(&url)
        .query(&[("from", "0"), ("last_event_id", "0")])
        .header("last-event-id", "2")
        .send()
        .await
        .unwrap();
    let got = events(&sse_until(r, |t| events(t).len() == 2).await);
    assert_eq!(got[0].0.as_deref(), Some("3"));
    assert_eq!(got[1].0.as_deref(), Some("4"));
    // The query form of the same.
    let r = c
        .get(&url)
        .query(&[("last_event_id", "3")])
        .send()
        .await
        .unwrap();
    let got = events(&sse_until(r, |t| !events(t).is_empty()).await);
    assert_eq!(got[0].0.as_deref(), Some("4"));

    // The live tail sees only what comes after it; a payload's line breaks
    // become data lines, never a field of its own.
    let r = c.get(&url).send().await.unwrap();
    let evil = "line1\nid: 999\r\nevent: admin\rdata: x";
    let b2 = b.clone();
    let publisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        b2.publish("t", Message::new(evil)).await.unwrap()
    });
    let got = events(&sse_until(r, |t| !events(t).is_empty()).await);
    assert_eq!(publisher.await.unwrap(), 5);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.as_deref(), Some("5"));
    assert_eq!(got[0].1, None, "no injected event type");
    assert_eq!(got[0].2, "line1\nid: 999\nevent: admin\ndata: x");
    http.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_and_reads_report_a_gap_after_retention() {
    let dir = tempfile::tempdir().unwrap();
    let b = common::open(dir.path(), &common::retention_config(Some(8192), None));
    let payload = vec![b'r'; 600];
    for _ in 0..100 {
        b.publish("g", Message::new(payload.clone())).await.unwrap();
    }
    let first = common::retention_settled(&b, "g").await.first_seq;
    assert!(first > 0, "retention removed the start");
    let http = common::HttpServer::start(&b, HttpConfig::default()).await;
    let c = reqwest::Client::new();

    let r = c
        .get(http.url("/topics/g/events?from=0"))
        .send()
        .await
        .unwrap();
    let got = events(&sse_until(r, |t| events(t).len() >= 2).await);
    assert_eq!(got[0].1.as_deref(), Some("gap"));
    let gap: Value = serde_json::from_str(&got[0].2).unwrap();
    assert_eq!(gap, json!({"from": 0, "to": first}));
    assert_eq!(got[1].0, Some(first.to_string()));

    let (_, page) = json_of(
        c.get(http.url("/topics/g/messages?from=0&limit=1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page["gap"], json!({"from": 0, "to": first}));
    assert_eq!(page["messages"][0]["seq"], first);
    http.stop().await;
}

async fn next_frame(body: &mut axum::body::Body) -> String {
    use http_body_util::BodyExt;
    let f = body.frame().await.unwrap().unwrap();
    String::from_utf8(f.into_data().unwrap().to_vec()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn an_idle_sse_stream_gets_a_heartbeat_every_15_seconds() {
    use tower::ServiceExt;
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let state = fanlog::server::edge::EdgeState::new(
        b.clone(),
        HttpConfig::default(),
        tokio_util::sync::CancellationToken::new(),
    )
    .unwrap();
    let app = fanlog::server::edge::router(state);
    let req = axum::http::Request::get("/topics/quiet/events")
        .body(axum::body::Body::empty())
        .unwrap();
    let mut body = app.oneshot(req).await.unwrap().into_body();
    let start = tokio::time::Instant::now();
    assert!(next_frame(&mut body).await.starts_with("retry: "));
    for n in 1..=3 {
        assert_eq!(next_frame(&mut body).await, ": heartbeat\n\n");
        let at = start.elapsed();
        assert!(
            at >= Duration::from_secs(15 * n) && at < Duration::from_secs(15 * n + 1),
            "heartbeat {n} at {at:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_answers_as_soon_as_a_message_exists() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let http = common::HttpServer::start(&b, HttpConfig::default()).await;
    let c = reqwest::Client::new();
    b.publish("p", Message::new("zero")).await.unwrap();

    // Something past `after` exists: at once.
    let (s, page) = json_of(
        c.get(http.url("/topics/p/poll?after=-1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400, "after=-1 is not a seq: {page}");
    let (_, page) = json_of(
        c.get(http.url("/topics/p/poll?timeout=0.3"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        page,
        json!({"messages": [], "next": 1}),
        "live: nothing new"
    );

    // Nothing yet: it waits, and answers when a message is published.
    let b2 = b.clone();
    let t = std::time::Instant::now();
    let publisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        b2.publish("p", Message::new("one")).await.unwrap();
    });
    let (_, page) = json_of(
        c.get(http.url("/topics/p/poll?after=0&timeout=20"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    publisher.await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(250));
    assert!(t.elapsed() < Duration::from_secs(10), "answered on publish");
    assert_eq!(page["messages"][0]["data"], "one");
    assert_eq!(page["next"], 2);

    // A timeout: an empty page that continues at the same place.
    let (_, page) = json_of(
        c.get(http.url("/topics/p/poll?after=1&timeout=0.2"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page, json!({"messages": [], "next": 2}));
    http.stop().await;
}

async fn ws_connect(
    http: &common::HttpServer,
    path: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!("ws://{}{path}", http.addr);
    tokio_tungstenite::connect_async(url).await.expect("ws").0
}

/// The next text frame as JSON (pings are skipped).
async fn ws_json<S>(ws: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
{
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("frame");
        match m {
            WsMessage::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Reads until the close frame; returns its code and JSON reason.
async fn ws_close<S>(ws: &mut S) -> (u16, Value)
where
    S: futures_util::Stream<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
{
    loop {
        let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a close in time")
            .expect("open")
            .expect("frame");
        if let WsMessage::Close(Some(f)) = m {
            return (
                u16::from(f.code),
                serde_json::from_str(f.reason.as_str()).unwrap(),
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_publishes_receives_resumes_and_closes_with_codes() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let http = common::HttpServer::start(&b, HttpConfig::default()).await;

    let mut ws = ws_connect(&http, "/topics/w/ws").await;
    for (i, data) in [json!("hello"), json!({"n": 1})].into_iter().enumerate() {
        let op = json!({"op": "publish", "data": data, "id": i});
        ws.send(WsMessage::text(op.to_string())).await.unwrap();
    }
    // Acks (in order, with ids) and the messages themselves, live.
    let mut acks = Vec::new();
    let mut msgs = Vec::new();
    while acks.len() < 2 || msgs.len() < 2 {
        let v = ws_json(&mut ws).await;
        if v["op"] == "ack" {
            acks.push((v["id"].clone(), v["seq"].clone()));
        } else {
            msgs.push(v);
        }
    }
    assert_eq!(acks, [(json!(0), json!(0)), (json!(1), json!(1))]);
    assert_eq!(msgs[0]["seq"], 0);
    assert_eq!(msgs[0]["data"], "hello");
    assert_eq!(msgs[1]["data"], r#"{"n":1}"#);
    assert_eq!(msgs[1]["content_type"], "application/json");

    // A publish the topic refuses (over its 512 KiB message limit) is
    // answered with an error, and the socket stays open.
    let big = "x".repeat(600 << 10);
    ws.send(WsMessage::text(
        json!({"op": "publish", "data": big, "id": "big"}).to_string(),
    ))
    .await
    .unwrap();
    let v = ws_json(&mut ws).await;
    assert_eq!(
        (&v["op"], &v["id"]),
        (&json!("error"), &json!("big")),
        "{v}"
    );
    assert!(v["error"].as_str().unwrap().contains("over the limit"));
    ws.send(WsMessage::text(
        json!({"op": "publish", "data": "after"}).to_string(),
    ))
    .await
    .unwrap();
    let mut after = (false, false);
    while after != (true, true) {
        let v = ws_json(&mut ws).await;
        if v["op"] == "ack" {
            assert_eq!(v["seq"], 2);
            after.0 = true;
        } else {
            assert_eq!(v["data"], "after");
            after.1 = true;
        }
    }

    let mut ws = ws_connect(&http, "/topics/w/ws?from=1").await;
    assert_eq!(ws_json(&mut ws).await["seq"], 1, "?from= resumes");

    // Broken JSON: closed with 4400 and the seq to resume from.
    ws.send(WsMessage::text("{not json")).await.unwrap();
    let (code, reason) = ws_close(&mut ws).await;
    assert_eq!(code, close_code::BAD_REQUEST);
    assert_eq!(reason["resume_from"], 3);
    assert!(reason["reason"].as_str().unwrap().contains("JSON"));

    // A binary frame: the same.
    let mut ws = ws_connect(&http, "/topics/w/ws?from=0").await;
    for _ in 0..3 {
        ws_json(&mut ws).await;
    }
    ws.send(WsMessage::binary(vec![1, 2, 3])).await.unwrap();
    let (code, reason) = ws_close(&mut ws).await;
    assert_eq!(code, close_code::BAD_REQUEST);
    assert_eq!(reason["resume_from"], 3);

    // Shutdown: "going away", with the resume seq.
    let mut ws = ws_connect(&http, "/topics/w/ws").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stop = tokio::spawn(http.stop());
    let (code, reason) = ws_close(&mut ws).await;
    assert_eq!(code, close_code::GOING_AWAY);
    assert_eq!(reason["resume_from"], 3);
    stop.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_that_stops_reading_is_closed_as_a_slow_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let b = common::open(dir.path(), &common::config(Durability::Never, 64 << 20));
    let config = HttpConfig {
        slow_consumer_timeout: Duration::from_secs(1),
        ..HttpConfig::default()
    };
    let http = common::HttpServer::start(&b, config).await;
    let mut ws = ws_connect(&http, "/topics/slow/ws?from=0").await;
    // Far more than the socket buffers hold; the client reads nothing for
    // 2 s from the start (the publishing may take longer on a cluster: the
    // close must come while it goes on, not after).
    let chunk = Message::new(vec![b's'; 64 << 10]);
    let b2 = b.clone();
    let publisher = tokio::spawn(async move {
        for _ in 0..16 {
            b2.publish_batch("slow", &vec![chunk.clone(); 64])
                .await
                .unwrap();
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Now read: messages in order, then a 4408 close that says where to resume.
    let mut next = 0u64;
    let (code, reason) = loop {
        let m = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("frames in time")
            .expect("open")
            .expect("frame");
        match m {
            WsMessage::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                assert_eq!(v["seq"], next);
                next += 1;
            }
            WsMessage::Close(Some(f)) => {
                break (
                    u16::from(f.code),
                    serde_json::from_str::<Value>(f.reason.as_str()).unwrap(),
                );
            }
            _ => {}
        }
    };
    assert_eq!(code, close_code::SLOW_CONSUMER);
    assert!(next < 1024, "closed before everything was sent ({next})");
    let resume = reason["resume_from"].as_u64().unwrap();
    assert!(
        resume <= next,
        "resume {resume} after what was received {next}"
    );
    // Bounded, each step: a hang here is a failure that says where.
    tokio::time::timeout(Duration::from_secs(60), publisher)
        .await
        .expect("the publishing ends")
        .unwrap();
    // Resuming there continues with no gap.
    let mut ws = tokio::time::timeout(
        Duration::from_secs(30),
        ws_connect(&http, &format!("/topics/slow/ws?from={resume}")),
    )
    .await
    .expect("the resume connects");
    assert_eq!(ws_json(&mut ws).await["seq"], resume);
    tokio::time::timeout(Duration::from_secs(30), http.stop())
        .await
        .expect("the edge stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_only_the_configured_origins() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let config = HttpConfig {
        cors_origins: vec!["http://app.example".into()],
        ..HttpConfig::default()
    };
    let http = common::HttpServer::start(&b, config).await;
    let c = reqwest::Client::new();
    let allow = |r: &reqwest::Response| {
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let r = c
        .get(http.url("/topics"))
        .header("origin", "http://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(allow(&r).as_deref(), Some("http://app.example"));
    assert!(
        r.headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    let r = c
        .get(http.url("/topics"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(allow(&r), None, "an unlisted origin is never reflected");
    let r = c
        .request(reqwest::Method::OPTIONS, http.url("/topics/x/messages"))
        .header("origin", "http://app.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(allow(&r).as_deref(), Some("http://app.example"));
    http.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_with_many_publishes_in_flight_is_read_only_as_acks_go_out() {
    let dir = tempfile::tempdir().unwrap();
    let b = common::open(dir.path(), &common::config(Durability::Always, 1 << 20));
    let config = HttpConfig {
        ws_max_inflight_publishes: 2,
        ..HttpConfig::default()
    };
    let http = common::HttpServer::start(&b, config).await;
    // Subscribed past the end, so only acks come back.
    let mut ws = ws_connect(&http, "/topics/bounded/ws?from=1000000").await;
    // 200 publish ops sent at once; the broker holds at most 2 awaiting
    // their (synced) acks and reads the rest as acks go out.
    for i in 0..200 {
        let op = serde_json::json!({ "op": "publish", "data": format!("m{i}"), "id": i });
        ws.send(WsMessage::text(op.to_string())).await.unwrap();
    }
    for i in 0..200u64 {
        let ack = ws_json(&mut ws).await;
        assert_eq!(ack, serde_json::json!({ "op": "ack", "seq": i, "id": i }));
    }
    let stored = b.read("bounded", 0, 1000).unwrap();
    assert_eq!(stored.next, 200);
    http.stop().await;
}
