//! Corrupted files under a real `fanlog serve`, read back over HTTP, SSE and
//! WebSocket: a record that fails its checksum in the middle of the log is
//! quarantined at restart (a gap, every later record kept at its seq, counted
//! in `/metrics`), and bit rot that recovery does not look at (the middle of a
//! sealed segment) is refused as an error when a reader reaches it, never
//! served as data.

mod common;

use std::path::Path;

use futures_util::StreamExt;
use serde_json::Value;

const TOPIC: &str = "rot";

/// Starts `serve` with small segments for the topic.
fn serve(data: &Path) -> common::ServeProcess {
    let config = data.join("fanlog.toml");
    std::fs::write(
        &config,
        format!("[topics.{TOPIC}]\nsegment_bytes = 4096\nmax_message_bytes = 1024\n"),
    )
    .unwrap();
    common::ServeProcess::start(
        data,
        &[
            "--http",
            "127.0.0.1:0",
            "--quic",
            "off",
            "--config",
            config.to_str().unwrap(),
        ],
    )
}

fn body(i: u64) -> String {
    format!("message-{i:04}")
}

async fn publish(http: &str, n: u64) {
    let c = reqwest::Client::new();
    for i in 0..n {
        let r = c
            .post(format!("http://{http}/topics/{TOPIC}/messages"))
            .body(body(i))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
}

/// Every message over `GET /messages`, page by page: (seq, data), and the
/// gaps reported.
async fn read_all(http: &str) -> (Vec<(u64, String)>, Vec<(u64, u64)>) {
    let (mut out, mut gaps, mut from) = (Vec::new(), Vec::new(), 0u64);
    loop {
        let v: Value = reqwest::get(format!(
            "http://{http}/topics/{TOPIC}/messages?from={from}&limit=50"
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        if let Some(g) = v.get("gap").filter(|g| !g.is_null()) {
            gaps.push((g["from"].as_u64().unwrap(), g["to"].as_u64().unwrap()));
        }
        let msgs = v["messages"].as_array().unwrap();
        for m in msgs {
            out.push((
                m["seq"].as_u64().unwrap(),
                m["data"].as_str().unwrap().to_owned(),
            ));
        }
        let next = v["next"].as_u64().unwrap();
        if msgs.is_empty() && next == from {
            return (out, gaps);
        }
        from = next;
    }
}

/// The first `n` SSE events from `?from=SEQ`: (event type, id, data).
async fn sse(http: &str, from: u64, n: usize) -> Vec<(String, String, String)> {
    let r = reqwest::get(format!("http://{http}/topics/{TOPIC}/events?from={from}"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut events = eventsource_stream::EventStream::new(r.bytes_stream());
    let mut out = Vec::new();
    while out.len() < n {
        let ev = tokio::time::timeout(std::time::Duration::from_secs(10), events.next())
            .await
            .expect("an event in time")
            .expect("stream open")
            .expect("well-formed");
        out.push((ev.event, ev.id, ev.data));
    }
    out
}

async fn metric(http: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("http://{http}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let want = format!("{name}{{topic=\"{TOPIC}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(want.as_str()))
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_record_mid_log_is_quarantined_and_every_later_one_kept() {
    let dir = tempfile::tempdir().unwrap();
    let p = serve(dir.path());
    let http = p.http.clone().unwrap();
    publish(&http, 300).await;
    assert!(p.terminate().success());

    // One flipped byte in a record of the active segment, records after it.
    let segs = common::segment_files(dir.path(), TOPIC);
    let idx = common::index_files(dir.path(), TOPIC);
    let active = segs.len() - 1;
    let base = common::segment_base(&segs[active]);
    let count = std::fs::read(&idx[active])
        .unwrap()
        .chunks(4)
        .skip(1)
        .take_while(|c| c != &[0, 0, 0, 0])
        .count() as u64
        + 1;
    assert!(count > 4, "the active segment holds records: {count}");
    let bad = base + 1;
    common::flip(&segs[active], common::index_entry(&idx[active], 1) + 20);
    // And one in a sealed segment whose index is then wrong too, so that
    // recovery scans it.
    let sealed_bad = common::segment_base(&segs[1]) + 3;
    common::flip(&segs[1], common::index_entry(&idx[1], 3) + 36);
    let n1 = std::fs::metadata(&idx[1]).unwrap().len() / 4;
    common::flip(&idx[1], (n1 - 1) * 4);

    let p = serve(dir.path());
    let http = p.http.clone().unwrap();
    let (all, gaps) = read_all(&http).await;
    let want: Vec<u64> = (0..300).filter(|s| *s != bad && *s != sealed_bad).collect();
    assert_eq!(all.iter().map(|(s, _)| *s).collect::<Vec<_>>(), want);
    for (seq, data) in &all {
        assert_eq!(data, &body(*seq));
    }
    assert_eq!(
        gaps,
        [(sealed_bad, sealed_bad + 1), (bad, bad + 1)],
        "each lost seq is reported as a gap"
    );
    let events = sse(&http, bad - 1, 3).await;
    assert_eq!(events[0].1, (bad - 1).to_string());
    assert_eq!(events[1].0, "gap");
    let gap: Value = serde_json::from_str(&events[1].2).unwrap();
    assert_eq!(
        (gap["from"].as_u64(), gap["to"].as_u64()),
        (Some(bad), Some(bad + 1))
    );
    assert_eq!(events[2].1, (bad + 1).to_string());
    assert_eq!(metric(&http, "fanlog_topic_quarantined_records").await, 2.0);
    // The topic keeps taking writes after its last record.
    let r = common::send_json(
        reqwest::Client::new()
            .post(format!("http://{http}/topics/{TOPIC}/messages"))
            .body("after"),
    )
    .await;
    assert_eq!(r["seq"], 300);
    assert!(p.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bit_rot_in_a_sealed_segment_is_an_error_on_every_edge_never_data() {
    let dir = tempfile::tempdir().unwrap();
    let p = serve(dir.path());
    let http = p.http.clone().unwrap();
    publish(&http, 200).await;
    assert!(p.terminate().success());
    let segs = common::segment_files(dir.path(), TOPIC);
    let idx = common::index_files(dir.path(), TOPIC);
    // A payload byte of record 2 of the first sealed segment: recovery checks
    // a sealed segment's index and last record, not every record.
    let rotten = common::segment_base(&segs[0]) + 2;
    common::flip(&segs[0], common::index_entry(&idx[0], 2) + 34);

    let p = serve(dir.path());
    let http = p.http.clone().unwrap();
    // GET .../messages: an error naming the seq, not the changed bytes.
    let r = reqwest::get(format!(
        "http://{http}/topics/{TOPIC}/messages?from={rotten}&limit=5"
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 500);
    let e: Value = r.json().await.unwrap();
    let msg = e["error"].as_str().unwrap();
    assert!(
        msg.contains("checksum") && msg.contains(&rotten.to_string()),
        "{msg}"
    );
    // Records before it are still served.
    let ok: Value = reqwest::get(format!(
        "http://{http}/topics/{TOPIC}/messages?from=0&limit={rotten}"
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(ok["messages"].as_array().unwrap().len() as u64, rotten);
    // Long poll: the same error.
    let r = reqwest::get(format!(
        "http://{http}/topics/{TOPIC}/poll?after={}&timeout=1",
        rotten - 1
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 500);
    // SSE: the records before it, then an error event, never its data.
    let events = sse(&http, rotten - 1, 2).await;
    assert_eq!(events[0].1, (rotten - 1).to_string());
    assert_eq!(events[1].0, "error");
    assert!(events[1].2.contains("checksum"), "{:?}", events[1]);
    // WebSocket: the record before it, then a close with the reason.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{http}/topics/{TOPIC}/ws?from={}",
        rotten - 1
    ))
    .await
    .unwrap();
    let mut seen = Vec::new();
    let close = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("a frame in time")
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                seen.push(v["seq"].as_u64().unwrap());
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(c))) => break c,
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(seen, [rotten - 1]);
    let close = close.expect("a close frame with a reason");
    assert!(close.reason.contains("checksum"), "{close:?}");
    assert!(metric(&http, "fanlog_topic_corrupt_reads_total").await >= 4.0);
    assert!(p.terminate().success());
}
