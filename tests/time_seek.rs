//! Reading and subscribing from a time, on every interface of a real
//! `fanlog serve`: the first message at or after the time comes first.

mod common;

use std::time::Duration;

use fanlog::client::{
    Client, ConnectOptions, Event, QuicOptions, StartFrom, Subscription, Transport,
};
use futures_util::StreamExt;
use serde_json::Value;

async fn first_seq(mut sub: Subscription) -> u64 {
    match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
        Ok(Some(Ok(Event::Record(r)))) => r.seq(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_interface_starts_at_the_first_message_at_or_after_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = common::ServeProcess::start(&data, &["--http", "127.0.0.1:0"]);
    let base = format!("http://{}", serve.http.clone().unwrap());
    let http = reqwest::Client::new();

    // Three bursts of five, 30 ms apart; `between` falls in the second gap.
    let client = Client::connect(&serve.tcp).await.unwrap();
    let mut between = None;
    for burst in 0..3u64 {
        let msgs = (0..5).map(|i| format!("{burst}-{i}").into()).collect();
        client.publish_batch("t", msgs).await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        if burst == 1 {
            between = Some(std::time::SystemTime::now());
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let between = between.unwrap();
    let between_text = humantime::format_rfc3339_micros(between).to_string();

    // The broker's own time of seq 5, as the messages API shows it.
    let page: Value = common::get_json(&format!("{base}/topics/t/messages?from=5&limit=1")).await;
    let time_of_5 = page["messages"][0]["time"].as_str().unwrap().to_owned();

    // HTTP read.
    for (time, want) in [(&time_of_5, 5), (&between_text, 10)] {
        let page: Value =
            common::get_json(&format!("{base}/topics/t/messages?from_time={time}")).await;
        assert_eq!(page["messages"][0]["seq"], want, "{time}: {page}");
        assert_eq!(page["next"], 15);
    }
    // A time after every message: nothing, and the next seq.
    let later =
        humantime::format_rfc3339_micros(std::time::SystemTime::now() + Duration::from_secs(60));
    let page: Value =
        common::get_json(&format!("{base}/topics/t/messages?from_time={later}")).await;
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(0), "{page}");
    assert_eq!(page["next"], 15);

    // Long poll.
    let page: Value = common::get_json(&format!(
        "{base}/topics/t/poll?from_time={between_text}&timeout=5"
    ))
    .await;
    assert_eq!(page["messages"][0]["seq"], 10, "{page}");

    // SSE: the first event's id.
    let resp = http
        .get(format!("{base}/topics/t/events?from_time={time_of_5}"))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    while !text.contains("\n\n") || !text.contains("id: ") {
        text.push_str(&String::from_utf8_lossy(
            &body.next().await.unwrap().unwrap(),
        ));
    }
    let first_id = text.lines().find_map(|l| l.strip_prefix("id: ")).unwrap();
    assert_eq!(first_id, "5", "{text}");
    drop(body);

    // WebSocket: the first frame.
    let url = format!(
        "ws://{}/topics/t/ws?from_time={between_text}",
        serve.http.clone().unwrap()
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let frame = ws.next().await.unwrap().unwrap();
    let v: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
    assert_eq!(v["seq"], 10, "{v}");
    drop(ws);

    // The binary protocol over TCP and over QUIC.
    let sub = client
        .subscribe("t", StartFrom::time(between))
        .await
        .unwrap();
    assert_eq!(first_seq(sub).await, 10);
    let mut quic = ConnectOptions::new(serve.quic.clone().unwrap());
    quic.transport = Transport::Quic(QuicOptions {
        ca: Some(data.join("tls/cert.pem")),
        ..Default::default()
    });
    let qc = Client::connect_with(quic).await.unwrap();
    let sub = qc.subscribe("t", StartFrom::time(between)).await.unwrap();
    assert_eq!(first_seq(sub).await, 10);

    // The CLI.
    let out = common::fanlog(&[
        "sub", "t", "--server", &serve.tcp, "--from", &time_of_5, "--count", "1",
    ]);
    assert_eq!(out, "5\t1-0\n");

    // Bad times and ambiguous starts are refused.
    for q in [
        "from_time=yesterday",
        "from=1&from_time=2026-01-01T00:00:00Z",
    ] {
        let r = http
            .get(format!("{base}/topics/t/messages?{q}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{q}");
        let e: Value = r.json().await.unwrap();
        assert!(e["error"].as_str().unwrap().contains("from_time"), "{e}");
    }
    assert!(serve.terminate().success());
}
