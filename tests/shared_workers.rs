//! Work-sharing groups over real sockets (issue 17): workers over TCP (the
//! client crate), HTTP and WebSocket share one group of a `fanlog serve`
//! process; a worker that vanishes has its records delivered again after
//! the ack wait; a poison record lands in the dead-letter topic; a
//! `kill -9` of the broker under `--fsync always` loses nothing and
//! delivers no acknowledged record again.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fanlog::client::{Client, Message, WorkerOptions};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message as Ws;

const N: u64 = 30_000;
const KEYS: u64 = 1_000;

/// What every worker saw: (key, seq, deliveries) in processing order.
#[derive(Default)]
struct Seen {
    log: Mutex<Vec<(String, u64, u32)>>,
    settled: AtomicUsize,
}

impl Seen {
    fn process(&self, key: &str, seq: u64, deliveries: u32) {
        self.log
            .lock()
            .unwrap()
            .push((key.to_owned(), seq, deliveries));
    }
    fn done(&self, n: usize) -> usize {
        self.settled.fetch_add(n, Ordering::AcqRel) + n
    }
    fn all_done(&self, of: u64) -> bool {
        self.settled.load(Ordering::Acquire) as u64 >= of
    }
}

/// A `fanlog serve` with HTTP on (and `args`), its HTTP base URL and a
/// client connected over TCP.
async fn serve_http(
    data: &std::path::Path,
    args: &[&str],
) -> (common::ServeProcess, String, Client) {
    let args: Vec<&str> = ["--http", "127.0.0.1:0"]
        .iter()
        .chain(args)
        .copied()
        .collect();
    let serve = common::ServeProcess::start(data, &args);
    let http = format!("http://{}", serve.http.clone().unwrap());
    let client = Client::connect(&serve.tcp).await.unwrap();
    (serve, http, client)
}

async fn publish_keyed(client: &Client, topic: &str, n: u64, keys: u64) {
    let mut i = 0;
    while i < n {
        let batch: Vec<Message> = (i..(i + 1000).min(n))
            .map(|s| Message::new(format!("job {s}")).with_key(format!("k{}", s % keys)))
            .collect();
        i += batch.len() as u64;
        client.publish_batch(topic, batch).await.unwrap();
    }
}

fn worker_options(key_order: bool, ack_wait: Duration) -> WorkerOptions {
    WorkerOptions {
        ack_wait: Some(ack_wait),
        max_deliver: Some(3),
        max_inflight: Some(50),
        key_order: Some(key_order),
        dead_letter: None,
    }
}

fn http_options(key_order: bool, ack_wait: Duration) -> String {
    format!(
        "ack_wait={}ms&max_deliver=3&max_inflight=50&key_order={key_order}",
        ack_wait.as_millis()
    )
}

/// A worker over the client crate (TCP): processes and acks until every
/// record of the run is settled.
async fn tcp_worker(client: Client, topic: &str, opts: WorkerOptions, seen: Arc<Seen>, of: u64) {
    let mut w = client.worker(topic, "g", opts).await.unwrap();
    while !seen.all_done(of) {
        let job = match tokio::time::timeout(Duration::from_millis(200), w.next()).await {
            Ok(Some(job)) => job.unwrap(),
            Ok(None) => panic!("the worker stream ended"),
            Err(_) => continue,
        };
        let r = job.record();
        seen.process(&String::from_utf8_lossy(r.key()), r.seq(), job.deliveries());
        job.ack().await.unwrap();
        seen.done(1);
    }
}

/// A worker over HTTP: fetch a batch with a wait, process, ack the batch.
async fn http_worker(http: String, topic: &str, query: String, seen: Arc<Seen>, of: u64) {
    let c = reqwest::Client::new();
    let base = format!("{http}/topics/{topic}/shared/g");
    while !seen.all_done(of) {
        let page =
            common::send_json(c.post(format!("{base}/fetch?worker=h1&max=50&wait=200ms&{query}")))
                .await;
        let msgs = page["messages"].as_array().unwrap();
        if msgs.is_empty() {
            continue;
        }
        let mut seqs = Vec::new();
        for m in msgs {
            let seq = m["seq"].as_u64().unwrap();
            seen.process(
                m["key"].as_str().unwrap_or(""),
                seq,
                m["deliveries"].as_u64().unwrap() as u32,
            );
            seqs.push(seq);
        }
        let r = c
            .post(format!("{base}/ack?worker=h1"))
            .json(&serde_json::json!({ "seqs": seqs }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());
        seen.done(seqs.len());
    }
}

/// A worker over a WebSocket: records arrive as the worker has room; acks
/// go back as ops, each answered once durable.
async fn ws_worker(http: String, topic: &str, query: String, seen: Arc<Seen>, of: u64) {
    let url = format!(
        "{}/topics/{topic}/shared/g/ws?{query}",
        http.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    while !seen.all_done(of) {
        let msg = match tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
            Ok(Some(m)) => m.unwrap(),
            Ok(None) => panic!("the socket closed"),
            Err(_) => continue,
        };
        let Ws::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(&t).unwrap();
        match v["op"].as_str() {
            Some("acked") => {
                seen.done(v["seqs"].as_array().unwrap().len());
            }
            None => {
                let seq = v["seq"].as_u64().unwrap();
                seen.process(
                    v["key"].as_str().unwrap_or(""),
                    seq,
                    v["deliveries"].as_u64().unwrap() as u32,
                );
                let ack = serde_json::json!({ "op": "ack", "seqs": [seq] });
                ws.send(Ws::Text(ack.to_string().into())).await.unwrap();
            }
            other => panic!("unexpected op {other:?}: {v}"),
        }
    }
    let _ = ws.close(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_over_tcp_http_and_websocket_share_30000_records_in_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let (serve, http, client) = serve_http(&dir.path().join("data"), &["--quic", "off"]).await;
    publish_keyed(&client, "orders", N, KEYS).await;

    let seen = Arc::new(Seen::default());
    let ack_wait = Duration::from_secs(30);
    let tcp = tokio::spawn(tcp_worker(
        client.clone(),
        "orders",
        worker_options(true, ack_wait),
        seen.clone(),
        N,
    ));
    let web = tokio::spawn(http_worker(
        http.clone(),
        "orders",
        http_options(true, ack_wait),
        seen.clone(),
        N,
    ));
    let sock = tokio::spawn(ws_worker(
        http.clone(),
        "orders",
        http_options(true, ack_wait),
        seen.clone(),
        N,
    ));
    tokio::time::timeout(Duration::from_secs(240), async {
        tcp.await.unwrap();
        web.await.unwrap();
        sock.await.unwrap();
    })
    .await
    .expect("30,000 records settled within 4 minutes");

    let log = seen.log.lock().unwrap().clone();
    // Every record processed exactly once, on its first delivery.
    let mut seqs: Vec<u64> = log.iter().map(|(_, s, _)| *s).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..N).collect::<Vec<_>>(), "each record once");
    assert!(log.iter().all(|(_, _, d)| *d == 1), "nobody failed");
    // Each key's records were processed in seq order.
    let mut by_key: HashMap<&str, Vec<u64>> = HashMap::new();
    for (k, s, _) in &log {
        by_key.entry(k.as_str()).or_default().push(*s);
    }
    assert_eq!(by_key.len(), KEYS as usize);
    for (k, s) in &by_key {
        assert!(s.windows(2).all(|w| w[0] < w[1]), "key {k} out of order");
    }
    // The work was shared: the group's figures say three joined, and the
    // floor is at the end.
    let info = common::get_json(&format!("{http}/topics/orders/shared/g")).await;
    assert_eq!(info["floor"], N, "{info}");
    assert_eq!(info["pending"], 0, "{info}");
    assert_eq!(info["key_order"], true);
    let groups = common::get_json(&format!("{http}/topics/orders/groups")).await;
    assert_eq!(groups[0]["committed"], N, "{groups}");
    // The same figures from `fanlog admin group`.
    let out = common::fanlog(&["admin", "--http", &http, "group", "orders", "g"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["floor"].as_u64(), v["key_order"].as_bool()),
        (Some(N), Some(true)),
        "{v}"
    );
    assert!(serve.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_workers_records_go_to_another_after_the_ack_wait() {
    let dir = tempfile::tempdir().unwrap();
    let (serve, http, client) = serve_http(&dir.path().join("data"), &["--quic", "off"]).await;
    publish_keyed(&client, "jobs", 100, 100).await;
    let ack_wait = Duration::from_millis(1500);
    // An HTTP worker takes 10 records and is never heard of again. (The
    // clock starts before the fetch: the records are handed out during it.)
    let started = std::time::Instant::now();
    let page = common::send_json(reqwest::Client::new().post(format!(
        "{http}/topics/jobs/shared/g/fetch?worker=gone&max=10&wait=5s&{}",
        http_options(false, ack_wait)
    )))
    .await;
    let lost: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(lost, (0..10).collect::<Vec<_>>());
    // A TCP worker gets the other 90 at once, then the 10 after the wait,
    // each on its second delivery.
    let mut w = client
        .worker("jobs", "g", worker_options(false, ack_wait))
        .await
        .unwrap();
    let mut got = BTreeMap::new();
    while got.len() < 100 {
        let job = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("all 100 within 10 s")
            .unwrap()
            .unwrap();
        got.insert(job.record().seq(), (job.deliveries(), started.elapsed()));
        job.ack().await.unwrap();
    }
    for seq in 0..100u64 {
        let (deliveries, at) = got[&seq];
        if seq < 10 {
            assert_eq!(deliveries, 2, "seq {seq}");
            assert!(at >= ack_wait, "seq {seq} came back after {at:?}");
        } else {
            assert_eq!(deliveries, 1, "seq {seq}");
        }
    }
    // The vanished worker's late ack is refused: the record is not its own.
    let r = reqwest::Client::new()
        .post(format!("{http}/topics/jobs/shared/g/ack?worker=gone"))
        .json(&serde_json::json!({ "seqs": [0] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let info = common::get_json(&format!("{http}/topics/jobs/shared/g")).await;
    assert_eq!(info["floor"], 100, "{info}");
    assert_eq!(info["redelivered"], 10, "{info}");
    // The same figures for Prometheus.
    let metrics = reqwest::get(format!("{http}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"fanlog_shared_group_redelivered_total{topic="jobs",group="g"} 10"#,
        r#"fanlog_shared_group_pending{topic="jobs",group="g"} 0"#,
        r#"fanlog_shared_group_floor{topic="jobs",group="g"} 100"#,
        r#"fanlog_shared_group_in_flight{topic="jobs",group="g"} 0"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line} in\n{metrics}"
        );
    }
    assert!(serve.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_record_lands_in_the_dead_letter_topic_and_the_group_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (serve, http, client) = serve_http(&dir.path().join("data"), &["--quic", "off"]).await;
    publish_keyed(&client, "jobs", 20, 20).await;
    let mut w = client
        .worker("jobs", "g", worker_options(false, Duration::from_secs(30)))
        .await
        .unwrap();
    let mut acked = Vec::new();
    let mut poison_deliveries = Vec::new();
    while acked.len() < 19 || poison_deliveries.len() < 3 {
        let job = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("a job")
            .unwrap()
            .unwrap();
        if job.record().seq() == 7 {
            poison_deliveries.push(job.deliveries());
            job.nack(Duration::ZERO, "cannot parse order 7")
                .await
                .unwrap();
        } else {
            acked.push(job.record().seq());
            job.ack().await.unwrap();
        }
    }
    // Delivered max_deliver (3) times, then set aside.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let dead = loop {
        let page = common::get_json(&format!("{http}/topics/jobs.g.dead/messages?from=0")).await;
        if page["messages"].as_array().is_some_and(|m| !m.is_empty()) {
            break page;
        }
        assert!(tokio::time::Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(poison_deliveries, [1, 2, 3]);
    assert_eq!(dead["messages"][0]["data"], "job 7");
    // Its origin travels in its headers.
    let f = client.fetch("jobs.g.dead", 0, 1).await.unwrap();
    let headers: HashMap<String, String> = f.records[0]
        .meta()
        .headers
        .iter()
        .map(|h| {
            (
                h.name.clone(),
                String::from_utf8_lossy(&h.value).into_owned(),
            )
        })
        .collect();
    assert_eq!(headers["fanlog-dead-topic"], "jobs");
    assert_eq!(headers["fanlog-dead-seq"], "7");
    assert_eq!(headers["fanlog-dead-deliveries"], "3");
    assert_eq!(headers["fanlog-dead-error"], "cannot parse order 7");
    // The group went on past it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info = common::get_json(&format!("{http}/topics/jobs/shared/g")).await;
        if info["floor"] == 20 {
            assert_eq!(info["dead_lettered"], 1, "{info}");
            let metrics = reqwest::get(format!("{http}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let line = r#"fanlog_shared_group_dead_lettered_total{topic="jobs",group="g"} 1"#;
            assert!(metrics.lines().any(|l| l == line), "{metrics}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{info}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(serve.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_broker_under_fsync_always_loses_nothing_and_repeats_no_ack() {
    const M: u64 = 4_000;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["--quic", "off", "--fsync", "always"];
    let serve = common::ServeProcess::start(&data, &args);
    let client = Client::connect(&serve.tcp).await.unwrap();
    publish_keyed(&client, "jobs", M, 50).await;
    // Two workers ack concurrently (so acks land above the floor); the
    // broker is killed while they do, about half way.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let received = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (client, acked, received) = (client.clone(), acked.clone(), received.clone());
        tasks.push(tokio::spawn(async move {
            let mut w = client
                .worker("jobs", "g", worker_options(false, Duration::from_secs(30)))
                .await
                .unwrap();
            while let Ok(Some(Ok(job))) =
                tokio::time::timeout(Duration::from_secs(5), w.next()).await
            {
                let seq = job.record().seq();
                received.lock().unwrap().push(seq);
                // Only an answered ack counts as acknowledged.
                if job.ack().await.is_ok() {
                    acked.lock().unwrap().push(seq);
                }
            }
        }));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while (acked.lock().unwrap().len() as u64) < M / 2 {
        assert!(tokio::time::Instant::now() < deadline, "acks stalled");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    serve.kill9();
    for t in tasks {
        t.abort();
    }
    drop(client);
    let before: Vec<u64> = acked.lock().unwrap().clone();
    let handed: Vec<u64> = received.lock().unwrap().clone();

    let serve = common::ServeProcess::start(&data, &args);
    let client = Client::connect(&serve.tcp).await.unwrap();
    let mut w = client
        .worker("jobs", "g", WorkerOptions::default())
        .await
        .unwrap();
    let mut after = Vec::new();
    while let Ok(Some(job)) = tokio::time::timeout(Duration::from_secs(3), w.next()).await {
        let job = job.unwrap();
        after.push(job.record().seq());
        job.ack().await.unwrap();
    }
    let again: Vec<&u64> = before.iter().filter(|s| after.contains(s)).collect();
    assert!(
        again.is_empty(),
        "{} acknowledged records delivered again: {:?}",
        again.len(),
        &again[..again.len().min(10)]
    );
    // Nothing lost: every record was handed out before the kill (an ack in
    // flight at the kill may or may not have been stored) or after it.
    let mut all: Vec<u64> = handed.iter().chain(&after).copied().collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all, (0..M).collect::<Vec<_>>(), "nothing lost");
    let unanswered = handed.len() - before.len();
    let again_unanswered = handed
        .iter()
        .filter(|s| !before.contains(s) && after.contains(s))
        .count();
    eprintln!(
        "acked before the kill: {}, handed out and not answered: {unanswered} ({again_unanswered} delivered again), delivered after: {}",
        before.len(),
        after.len()
    );
    assert!(serve.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_cli_worker_over_quic_gives_back_what_it_held_after_the_ack_wait() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (serve, http, client) = serve_http(&data, &[]).await;
    publish_keyed(&client, "jobs", 200, 200).await;
    // `fanlog sub --shared` over QUIC, holding up to 10.
    let ca = data.join("tls/cert.pem");
    let spawned = std::time::Instant::now();
    let mut cli = std::process::Command::new(env!("CARGO_BIN_EXE_fanlog"))
        .args(["sub", "jobs", "--group", "g", "--shared", "--json"])
        .args(["--max-inflight", "10", "--ack-wait", "1500ms", "--quic"])
        .args(["--server", serve.quic.as_deref().unwrap()])
        .arg("--ca")
        .arg(&ca)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(cli.stdout.take().unwrap()).lines();
    let mut printed: Vec<Value> = Vec::new();
    while printed.len() < 5 {
        printed.push(serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap());
    }
    // Stopped with records in flight: its connection stays open, so they
    // come back only after the ack wait.
    let pid = rustix::process::Pid::from_raw(cli.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    let stopped = spawned.elapsed();
    let mut w = client
        .worker("jobs", "g", WorkerOptions::default())
        .await
        .expect("joins with the running group's options");
    let mut got: BTreeMap<u64, (u32, Duration)> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let info = common::get_json(&format!("{http}/topics/jobs/shared/g")).await;
        if info["floor"] == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{info}");
        if let Ok(Some(job)) = tokio::time::timeout(Duration::from_millis(100), w.next()).await {
            let job = job.unwrap();
            got.insert(job.record().seq(), (job.deliveries(), spawned.elapsed()));
            job.ack().await.unwrap();
        }
    }
    cli.kill().unwrap();
    cli.wait().unwrap();
    printed.extend(
        lines
            .map_while(Result::ok)
            .map(|l| serde_json::from_str(&l).unwrap()),
    );
    let by_cli: Vec<u64> = printed.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
    assert!(printed.iter().all(|v| v["deliveries"] == 1), "{printed:?}");
    // Nothing lost; what the stopped worker held came back, each on its
    // second delivery and not before the ack wait (counted from the
    // worker's start: each was handed to it after that).
    let mut all: Vec<u64> = by_cli.iter().copied().chain(got.keys().copied()).collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all, (0..200).collect::<Vec<_>>());
    let returned: Vec<(&u64, &(u32, Duration))> = got.iter().filter(|(_, (d, _))| *d > 1).collect();
    assert!(!returned.is_empty(), "the stopped worker held records");
    for (seq, (d, at)) in &returned {
        assert_eq!(*d, 2, "seq {seq}");
        assert!(
            *at >= Duration::from_millis(1500) && *at > stopped,
            "seq {seq} after {at:?}"
        );
    }
    // A record on its first delivery to the TCP worker was never the
    // stopped worker's.
    for (seq, (d, _)) in &got {
        if *d == 1 {
            assert!(!by_cli.contains(seq), "seq {seq} twice on first delivery");
        }
    }
    assert!(serve.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_ack_a_range_over_http_and_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let (serve, http, client) = serve_http(&dir.path().join("data"), &["--quic", "off"]).await;
    publish_keyed(&client, "jobs", 20, 20).await;
    let c = reqwest::Client::new();
    let base = format!("{http}/topics/jobs/shared/g");
    let page = common::send_json(c.post(format!("{base}/fetch?worker=w1&max=10&wait=5s"))).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 10);
    let ack = |body: Value| c.post(format!("{base}/ack?worker=w1")).json(&body).send();
    assert_eq!(
        ack(serde_json::json!({ "upto": 5 }))
            .await
            .unwrap()
            .status(),
        204
    );
    let info = common::get_json(&base).await;
    assert_eq!(
        (info["floor"].as_u64(), info["in_flight"].as_u64()),
        (Some(5), Some(5)),
        "{info}"
    );
    assert_eq!(ack(serde_json::json!({})).await.unwrap().status(), 400);
    assert_eq!(
        ack(serde_json::json!({ "upto": 10, "seqs": [1] }))
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        ack(serde_json::json!({ "upto": 10 }))
            .await
            .unwrap()
            .status(),
        204
    );
    // Over a WebSocket: the other 10 arrive; one op acknowledges them all.
    let url = format!("{}/ws", base.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut seqs = Vec::new();
    while seqs.len() < 10 {
        let Some(Ok(Ws::Text(t))) = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a job")
        else {
            continue;
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        seqs.push(v["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs, (10..20).collect::<Vec<_>>());
    let op = serde_json::json!({ "op": "ack", "upto": 20 });
    ws.send(Ws::Text(op.to_string().into())).await.unwrap();
    let Some(Ok(Ws::Text(t))) = ws.next().await else {
        panic!("no answer")
    };
    let v: Value = serde_json::from_str(&t).unwrap();
    assert_eq!(
        (v["op"].as_str(), v["count"].as_u64()),
        (Some("acked"), Some(10)),
        "{v}"
    );
    let info = common::get_json(&base).await;
    assert_eq!(info["floor"], 20, "{info}");
    // A frame that is no op closes the socket with 4400.
    ws.send(Ws::Text("{\"op\": \"dance\"}".into()))
        .await
        .unwrap();
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("close")
        {
            Some(Ok(Ws::Close(Some(f)))) => break f,
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(u16::from(closed.code), 4400);
    assert!(serve.terminate().success());
}
