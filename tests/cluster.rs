//! Cluster mode: fanlog edges over a 3-node NATS JetStream cluster, every
//! process real (nats-server and `fanlog serve --cluster`), on 127.0.0.1.
//!
//! - the client scenario of `wire_pubsub.rs` through an edge, on TCP and
//!   QUIC;
//! - one topic through two edges: one dense seq, deduplication across
//!   edges, SSE resume by `Last-Event-ID` on either;
//! - kill -9 of the stream leader under pipelined publishing through both
//!   edges: every acknowledged message read back once at its seq.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::nats::NatsCluster;
use common::scenarios::next_record;
use fanlog::client::{Client, ConnectOptions, QuicOptions, StartFrom, Transport};
use fanlog::protocol::Message;

fn quic_options(edge: &common::ServeProcess, data: &std::path::Path) -> ConnectOptions {
    let mut o = ConnectOptions::new(edge.quic.clone().expect("quic listener"));
    o.transport = Transport::Quic(QuicOptions {
        ca: Some(data.join("tls").join("cert.pem")),
        ..Default::default()
    });
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_scenario_runs_through_a_cluster_edge_over_tcp() {
    let nats = NatsCluster::start().await;
    let data = tempfile::tempdir().unwrap();
    let edge = nats.edge(data.path(), &[]);
    common::scenarios::pubsub(ConnectOptions::new(edge.tcp.clone())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_scenario_runs_through_a_cluster_edge_over_quic() {
    let nats = NatsCluster::start().await;
    let data = tempfile::tempdir().unwrap();
    let edge = nats.edge(data.path(), &[]);
    common::scenarios::pubsub(quic_options(&edge, data.path())).await;
}

/// Reads `n` records of `topic` from `seq` through `client`.
async fn read(client: &Client, topic: &str, from: u64, n: u64) -> Vec<(u64, Vec<u8>)> {
    let mut sub = client.subscribe(topic, StartFrom::Seq(from)).await.unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let d = next_record(&mut sub).await;
        out.push((d.seq(), d.payload().to_vec()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_topic_through_two_edges_has_one_dense_seq() {
    let nats = NatsCluster::start().await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = nats.edge(da.path(), &[]);
    let b = nats.edge(db.path(), &[]);
    let ca = Client::connect(&a.tcp).await.unwrap();
    let cb = Client::connect(&b.tcp).await.unwrap();

    // A live subscriber on B sees what is published through A.
    let mut live_b = cb.subscribe("orders", StartFrom::Latest).await.unwrap();
    let batch = |from: u64| {
        (from..from + 50)
            .map(|i| Message::new(format!("m{i}")))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ca.publish_batch("orders", batch(0)).await.unwrap(),
        (0..50).collect::<Vec<u64>>()
    );
    assert_eq!(
        cb.publish_batch("orders", batch(50)).await.unwrap(),
        (50..100).collect::<Vec<u64>>()
    );
    for i in 0..100u64 {
        let d = next_record(&mut live_b).await;
        assert_eq!((d.seq(), d.payload()), (i, format!("m{i}").as_bytes()));
    }
    // Each edge reads the whole topic back, the same.
    let want: Vec<(u64, Vec<u8>)> = (0..100)
        .map(|i| (i, format!("m{i}").into_bytes()))
        .collect();
    assert_eq!(read(&ca, "orders", 0, 100).await, want);
    assert_eq!(read(&cb, "orders", 0, 100).await, want);

    // An Idempotency-Key repeated through the other edge is the same
    // message: the first seq, nothing appended.
    let http = reqwest::Client::new();
    for edge in [&a, &b, &a] {
        let r = http
            .post(format!(
                "http://{}/topics/orders/messages",
                edge.http.as_ref().unwrap()
            ))
            .header("idempotency-key", "order-7")
            .body("seven")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["seq"], 100, "{v}");
    }
    // A producer's retry through the other edge is deduplicated too.
    let first = ca
        .publish("orders", Message::new("p1").with_producer(77, 1))
        .await
        .unwrap();
    let again = cb
        .publish("orders", Message::new("p1").with_producer(77, 1))
        .await
        .unwrap();
    assert_eq!((first, again), (101, 101));
    assert_eq!(
        cb.publish("orders", Message::new("after")).await.unwrap(),
        102
    );

    // A consumer group committed through A resumes through B.
    let mut g = ca
        .subscribe("orders", StartFrom::Group("billing".into()))
        .await
        .unwrap();
    for i in 0..30 {
        assert_eq!(next_record(&mut g).await.seq(), i);
    }
    ca.commit("orders", "billing", 30).await.unwrap();
    drop(g);
    assert_eq!(cb.committed("orders", "billing").await.unwrap(), Some(30));
    let mut g = cb
        .subscribe("orders", StartFrom::Group("billing".into()))
        .await
        .unwrap();
    assert_eq!(next_record(&mut g).await.seq(), 30);

    // A third edge, whose tail starts at the head: a binary Fetch of old
    // records waits for them to come from the stream.
    let dc = tempfile::tempdir().unwrap();
    let c = nats.edge(dc.path(), &[]);
    let cc = Client::connect(&c.tcp).await.unwrap();
    let page = cc.fetch("orders", 0, 100).await.unwrap();
    assert_eq!(
        page.records
            .iter()
            .map(|d| (d.seq(), d.payload().to_vec()))
            .collect::<Vec<_>>(),
        want
    );
    assert_eq!(page.next, 100);

    // SSE on either edge resumes after its Last-Event-ID.
    for edge in [&a, &b] {
        let r = http
            .get(format!(
                "http://{}/topics/orders/events",
                edge.http.as_ref().unwrap()
            ))
            .header("last-event-id", "98")
            .send()
            .await
            .unwrap();
        let ids = sse_ids(r, 4).await;
        assert_eq!(ids, ["99", "100", "101", "102"]);
    }
}

/// Every record of `topic` from 0, read until none comes for 3 s once
/// `past` was read (at most 30 s for that).
async fn read_until_quiet(client: &Client, topic: &str, past: u64) -> Vec<(u64, Vec<u8>)> {
    use futures_util::StreamExt;
    let mut sub = client.subscribe(topic, StartFrom::Seq(0)).await.unwrap();
    let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
    let quiet = |out: &Vec<(u64, Vec<u8>)>| {
        if out.last().is_some_and(|(s, _)| *s >= past) {
            Duration::from_secs(3)
        } else {
            Duration::from_secs(30)
        }
    };
    while let Ok(Some(ev)) = tokio::time::timeout(quiet(&out), sub.next()).await {
        match ev.unwrap() {
            fanlog::client::Event::Record(d) => out.push((d.seq(), d.payload().to_vec())),
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

/// The first `n` event ids of an SSE response.
async fn sse_ids(mut r: reqwest::Response, n: usize) -> Vec<String> {
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ids: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("id:"))
            .map(|s| s.trim().to_owned())
            .collect();
        if ids.len() >= n {
            return ids[..n].to_vec();
        }
        assert!(Instant::now() < deadline, "SSE gave only {ids:?}");
        match tokio::time::timeout(Duration::from_secs(10), r.chunk()).await {
            Ok(Ok(Some(c))) => text.push_str(&String::from_utf8_lossy(&c)),
            other => panic!("SSE ended: {other:?} after {text:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_stream_leader_under_load_loses_and_repeats_nothing() {
    let mut nats = NatsCluster::start().await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = nats.edge(da.path(), &[]);
    let b = nats.edge(db.path(), &[]);
    let ca = Client::connect(&a.tcp).await.unwrap();
    let cb = Client::connect(&b.tcp).await.unwrap();
    ca.publish("load", Message::new("first")).await.unwrap();

    // Two producers, one per edge, pipelining for 10 s; each message
    // names its producer and number. The leader is killed 1.5 s in.
    let acks = std::sync::Arc::new(parking_lot::Mutex::new(Vec::<Instant>::new()));
    let start = Instant::now();
    let run = |c: Client, name: &'static str, id: u64| {
        let acks = acks.clone();
        tokio::spawn(async move {
            let producer = c.producer("load", fanlog::client::ProducerOptions::default());
            let mut waits = Vec::new();
            let mut i = 0u64;
            while start.elapsed() < Duration::from_secs(10) {
                let m = Message::new(format!("{name}-{i}")).with_producer(id, i);
                let Ok(receipt) = producer.send(m).await else {
                    break;
                };
                let acks = acks.clone();
                let text = format!("{name}-{i}");
                waits.push(tokio::spawn(async move {
                    let seq = receipt.await.ok()?;
                    acks.lock().push(Instant::now());
                    Some((text, seq))
                }));
                i += 1;
                if i.is_multiple_of(50) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            let mut acked = Vec::new();
            for w in waits {
                if let Some(a) = w.await.unwrap() {
                    acked.push(a);
                }
            }
            acked
        })
    };
    let pa = run(ca.clone(), "a", 1);
    let pb = run(cb.clone(), "b", 2);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let leader = nats.leader_of("FL_load").await;
    let killed_at = Instant::now();
    nats.kill9(leader);
    let acked_a = pa.await.unwrap();
    let acked_b = pb.await.unwrap();
    nats.restart(leader);
    // The write stall: the longest time without an acknowledgement after
    // the kill.
    let mut times: Vec<Instant> = acks
        .lock()
        .iter()
        .copied()
        .filter(|t| *t >= killed_at)
        .collect();
    times.sort();
    let stall = std::iter::once(killed_at)
        .chain(times.iter().copied())
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();

    // Every acknowledged message is in the log once, at its seq, and the
    // seqs are dense from 0.
    let acked: BTreeMap<u64, String> = acked_a
        .into_iter()
        .chain(acked_b)
        .map(|(m, s)| (s, m))
        .collect();
    assert!(acked.len() > 500, "only {} acked", acked.len());
    let last_acked = *acked.keys().next_back().unwrap();
    let all = read_until_quiet(&cb, "load", last_acked).await;
    let next = all.len() as u64;
    let mut seen = std::collections::HashSet::new();
    for (i, (seq, payload)) in all.iter().enumerate() {
        assert_eq!(*seq, i as u64, "dense seqs");
        let text = String::from_utf8(payload.clone()).unwrap();
        assert!(seen.insert(text.clone()), "{text} stored twice");
        if let Some(m) = acked.get(seq) {
            assert_eq!(m, &text, "acked message at its seq");
        }
    }
    for (seq, m) in &acked {
        assert!(*seq < next, "{m} acked at {seq} beyond the head {next}");
    }
    assert!(!times.is_empty(), "nothing was acknowledged after the kill");
    let gaps: Vec<String> = std::iter::once(killed_at)
        .chain(times.iter().copied())
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[1] - w[0] > Duration::from_millis(500))
        .map(|w| {
            format!(
                "{:.2}s at +{:.2}s",
                (w[1] - w[0]).as_secs_f64(),
                (w[0] - killed_at).as_secs_f64()
            )
        })
        .collect();
    eprintln!("gaps over 0.5 s after the kill: {gaps:?}");
    eprintln!(
        "leader n{leader} killed: {} acked ({} after the kill), {next} stored, write stall {:.2} s",
        acked.len(),
        times.len(),
        stall.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_publishes_are_refused_and_reads_go_on() {
    let mut nats = NatsCluster::start().await;
    let data = tempfile::tempdir().unwrap();
    let urls = nats.urls();
    // Under fsync always, which the edge checks the servers keep (they
    // run sync_interval: always).
    let conf = data.path().join("fanlog.toml");
    std::fs::write(
        &conf,
        format!("[cluster]\nmonitor_urls = {}\n", nats.monitor_urls_toml()),
    )
    .unwrap();
    let edge = common::ServeProcess::start_with_env(
        data.path(),
        &[
            "--cluster",
            &urls,
            "--http",
            "127.0.0.1:0",
            "--fsync",
            "always",
            "--config",
            conf.to_str().unwrap(),
        ],
        &[("FANLOG_CLUSTER__PUBLISH_TIMEOUT", "2s")],
    );
    let client = Client::connect(&edge.tcp).await.unwrap();
    let batch: Vec<Message> = (0..10).map(|i| Message::new(format!("m{i}"))).collect();
    assert_eq!(
        client.publish_batch("q", batch).await.unwrap(),
        (0..10).collect::<Vec<u64>>()
    );

    // Two of three servers gone: no quorum.
    nats.kill9(0);
    nats.kill9(1);
    let http = reqwest::Client::new();
    let url = format!("http://{}/topics/q/messages", edge.http.as_ref().unwrap());
    let r = http.post(&url).body("no quorum").send().await.unwrap();
    assert_eq!(r.status(), 503, "{:?}", r.text().await);
    assert!(
        r.headers().contains_key("retry-after"),
        "{:?}",
        r.text().await
    );
    let e = client
        .publish("q", Message::new("no quorum"))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(fanlog::client::ErrorCode::Unavailable),
        "{e}"
    );

    // Reads go on from the edge's tail: the client and REST.
    let want: Vec<(u64, Vec<u8>)> = (0..10).map(|i| (i, format!("m{i}").into_bytes())).collect();
    assert_eq!(read(&client, "q", 0, 10).await, want);
    let r = http
        .get(format!("{url}?from=0&limit=100"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["messages"].as_array().map(Vec::len), Some(10), "{v}");

    // The servers return: nothing acknowledged was lost, and publishing
    // works again (refused messages may or may not be stored: they were
    // never acknowledged).
    nats.restart(0);
    nats.restart(1);
    let deadline = Instant::now() + Duration::from_secs(30);
    let seq = loop {
        match client.publish("q", Message::new("back")).await {
            Ok(seq) => break seq,
            Err(e) => {
                assert!(Instant::now() < deadline, "no quorum after restart: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    assert!(seq >= 10, "{seq}");
    let all = read(&client, "q", 0, seq + 1).await;
    assert_eq!(&all[..10], &want[..]);
    assert_eq!(all[seq as usize].1, b"back");
}

/// A reader that keeps the seqs it got, whatever the interface.
#[derive(Default)]
struct Seen {
    seqs: Vec<u64>,
}

impl Seen {
    fn next(&self) -> u64 {
        self.seqs.last().map_or(0, |s| s + 1)
    }

    /// Exactly `0..n`, once each, in order.
    fn assert_whole(&self, n: u64, what: &str) {
        assert_eq!(
            self.seqs,
            (0..n).collect::<Vec<_>>(),
            "{what}: every seq once, in order"
        );
    }
}

/// Reads SSE events from `url` after `seen`'s last seq into `seen` until
/// `n` are seen or the stream breaks (the edge died); false on a break.
async fn sse_into(url: &str, seen: &mut Seen, n: u64) -> bool {
    // From 0 at first; then as a browser's EventSource resumes: the
    // same URL with Last-Event-ID (here on another edge).
    let mut req = reqwest::Client::new().get(format!("{url}?from=0"));
    if let Some(last) = seen.seqs.last() {
        req = reqwest::Client::new()
            .get(url)
            .header("last-event-id", last.to_string());
    }
    let Ok(mut r) = req.send().await else {
        return false;
    };
    let mut buf = String::new();
    while seen.next() < n {
        match tokio::time::timeout(Duration::from_secs(20), r.chunk()).await {
            Ok(Ok(Some(c))) => buf.push_str(&String::from_utf8_lossy(&c)),
            Ok(_) => return false,
            Err(_) => panic!("SSE stalled at {}", seen.next()),
        }
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            assert!(!event.contains("event: gap"), "a gap event: {event}");
            if let Some(id) = event.lines().find_map(|l| l.strip_prefix("id:")) {
                seen.seqs.push(id.trim().parse().unwrap());
            }
        }
    }
    true
}

/// Reads WebSocket messages from `base` (`ws://.../topics/t/ws`) from
/// `seen`'s next seq until `n` are seen or the socket breaks.
async fn ws_into(base: &str, seen: &mut Seen, n: u64) -> bool {
    use futures_util::StreamExt;
    let url = format!("{base}?from={}", seen.next());
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
        return false;
    };
    while seen.next() < n {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                assert_ne!(v["op"], "gap", "a gap: {v}");
                if let Some(seq) = v["seq"].as_u64() {
                    seen.seqs.push(seq);
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(_) => return false,
            Err(_) => panic!("WebSocket stalled at {}", seen.next()),
        }
    }
    true
}

/// A browser-like reader.
#[derive(Debug, Clone, Copy)]
enum Feed {
    Sse,
    Ws,
}

/// Reads topic `e` through `hosts` in turn, moving to the next when one
/// breaks and resuming after its last seq, until `n` seqs are seen.
async fn follow_across(hosts: [String; 2], feed: Feed, n: u64) -> Seen {
    let mut seen = Seen::default();
    let mut hosts = hosts.into_iter().cycle();
    let mut breaks = 0;
    loop {
        let host = hosts.next().unwrap();
        let done = match feed {
            Feed::Sse => sse_into(&format!("http://{host}/topics/e/events"), &mut seen, n).await,
            Feed::Ws => ws_into(&format!("ws://{host}/topics/e/ws"), &mut seen, n).await,
        };
        if done {
            return seen;
        }
        breaks += 1;
        assert!(breaks < 10, "{feed:?} never finished");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_edge_moves_its_clients_to_another() {
    const N: u64 = 300;
    let nats = NatsCluster::start().await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = nats.edge(da.path(), &[]);
    let b = nats.edge(db.path(), &[]);
    let (ha, hb) = (a.http.clone().unwrap(), b.http.clone().unwrap());

    // The client knows both edges and starts on A.
    let client = Client::connect_with(ConnectOptions::new(format!("{},{}", a.tcp, b.tcp)))
        .await
        .unwrap();
    assert_eq!(client.publish("e", Message::new("0")).await.unwrap(), 0);
    let mut sub = client.subscribe("e", StartFrom::Seq(0)).await.unwrap();

    // Publishing through the client, one at a time, for about 3 s.
    let publisher = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut seqs = vec![0];
            for i in 1..N {
                seqs.push(
                    client
                        .publish("e", Message::new(i.to_string()))
                        .await
                        .unwrap(),
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            seqs
        })
    };
    // A browser-like SSE reader and a WebSocket reader on A, resuming on B
    // with their last seq when A goes.
    let sse = tokio::spawn(follow_across([ha.clone(), hb.clone()], Feed::Sse, N));
    let ws = tokio::spawn(follow_across([ha, hb], Feed::Ws, N));

    tokio::time::sleep(Duration::from_millis(1_200)).await;
    a.kill9();

    let seqs = publisher.await.unwrap();
    assert_eq!(
        seqs,
        (0..N).collect::<Vec<_>>(),
        "every publish acked once, in order"
    );
    let mut got = Seen::default();
    while got.next() < N {
        match tokio::time::timeout(
            Duration::from_secs(20),
            futures_util::StreamExt::next(&mut sub),
        )
        .await
        {
            Ok(Some(Ok(fanlog::client::Event::Record(d)))) => {
                assert_eq!(d.payload(), d.seq().to_string().as_bytes());
                got.seqs.push(d.seq());
            }
            other => panic!("client subscription: {other:?} at {}", got.next()),
        }
    }
    got.assert_whole(N, "client subscription");
    sse.await.unwrap().assert_whole(N, "SSE");
    ws.await.unwrap().assert_whole(N, "WebSocket");
}

/// Two edges that may deliver hooks to a receiver on 127.0.0.1.
/// Two edges that may deliver hooks to 127.0.0.1, with `lease_ttl` if
/// given (else the default 10 s).
fn hook_edges(
    nats: &NatsCluster,
    lease_ttl: Option<&str>,
) -> (
    tempfile::TempDir,
    tempfile::TempDir,
    common::ServeProcess,
    common::ServeProcess,
) {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let envs: Vec<(&str, &str)> = lease_ttl
        .map(|t| ("FANLOG_CLUSTER__LEASE_TTL", t))
        .into_iter()
        .collect();
    let a = nats.edge_with_env(da.path(), &["--allow-hook-target", "127.0.0.1"], &envs);
    let b = nats.edge_with_env(db.path(), &["--allow-hook-target", "127.0.0.1"], &envs);
    (da, db, a, b)
}

async fn publish_http(edge: &common::ServeProcess, topic: &str, range: std::ops::Range<u64>) {
    let http = reqwest::Client::new();
    for i in range {
        let r = http
            .post(format!(
                "http://{}/topics/{topic}/messages",
                edge.http.as_ref().unwrap()
            ))
            .body(format!("{{\"n\":{i}}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
}

async fn hook_view(edge: &common::ServeProcess, id: &str) -> Option<serde_json::Value> {
    let r = reqwest::get(format!("http://{}/hooks/{id}", edge.http.as_ref().unwrap()))
        .await
        .ok()?;
    (r.status() == 200).then_some(())?;
    r.json().await.ok()
}

/// Which of the edges owns the hook's deliveries (the other says so in its
/// status), once both know the hook.
async fn owner_of(edges: [&common::ServeProcess; 2], id: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut waiting = [false; 2];
        for (i, e) in edges.iter().enumerate() {
            if let Some(v) = hook_view(e, id).await {
                waiting[i] = v["last_error"]
                    .as_str()
                    .is_some_and(|m| m.contains("another worker owns"));
            }
        }
        match waiting {
            [true, false] => return 1,
            [false, true] => return 0,
            _ => {}
        }
        assert!(Instant::now() < deadline, "no single owner of {id}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The accepted ids with adjacent repeats removed, and how many there were.
fn without_repeats(ids: Vec<String>) -> (Vec<String>, usize) {
    let n = ids.len();
    let mut out = ids;
    out.dedup();
    let repeats = n - out.len();
    (out, repeats)
}

/// Waits (5 s at most) until `edge` shows the hook's cursor at `want`:
/// the cursor moves just after the receiver answered.
async fn wait_cursor(edge: &common::ServeProcess, id: &str, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = hook_view(edge, id).await.unwrap();
        if v["cursor"] == want {
            return;
        }
        assert!(Instant::now() < deadline, "cursor not {want}: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create_hook(edge: &common::ServeProcess, topic: &str, url: &str) -> String {
    let r = reqwest::Client::new()
        .post(format!("http://{}/hooks", edge.http.as_ref().unwrap()))
        .json(&serde_json::json!({"topic": topic, "url": url, "from": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: serde_json::Value = r.json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_hook_owner_hands_its_hooks_to_another_edge() {
    use common::receiver::{Receiver, Reply, ids};
    let nats = NatsCluster::start().await;
    // A lease of 5 s instead of 10 ([cluster] lease_ttl).
    let (_da, _db, a, b) = hook_edges(&nats, Some("5s"));
    let rx = Receiver::start(std::sync::Arc::new(|_, _| Reply::Status(204))).await;
    publish_http(&a, "h", 0..1).await;
    // Made through A; B learns of it from the registry in the cluster.
    let id = create_hook(&a, "h", &rx.url).await;
    publish_http(&b, "h", 1..20).await;
    assert_eq!(
        rx.wait_accepted(20, Duration::from_secs(20)).await.len(),
        20
    );
    let owner = owner_of([&a, &b], &id).await;
    let (dead, alive) = if owner == 0 { (a, b) } else { (b, a) };
    let killed = Instant::now();
    dead.kill9();
    publish_http(&alive, "h", 20..40).await;
    let got = rx.wait_accepted(40, Duration::from_secs(30)).await;
    let first_new = rx
        .hits()
        .into_iter()
        .find(|h| h.id == "h:20" && h.answered == 204)
        .expect("h:20 delivered")
        .at;
    let takeover = first_new - killed;
    let (ordered, repeats) = without_repeats(got);
    assert_eq!(ordered, ids("h", 0..40), "in order, nothing lost");
    assert!(repeats <= 1, "{repeats} repeats");
    // The lease's time to live (5 s) + 2 s.
    assert!(
        takeover <= Duration::from_secs(7),
        "taken over in {takeover:?}"
    );
    eprintln!(
        "hook taken over {:.2} s after its owner died, {repeats} repeat(s)",
        takeover.as_secs_f64()
    );
    wait_cursor(&alive, &id, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_hook_owner_delivers_nothing_more_and_moves_no_cursor() {
    use common::receiver::{Receiver, Reply, ids};
    let nats = NatsCluster::start().await;
    let (_da, _db, a, b) = hook_edges(&nats, None);
    // h:5 is answered after 3 s: its owner is stopped while it waits.
    let rx = Receiver::start(std::sync::Arc::new(|id: &str, n| {
        if id == "h:5" && n == 0 {
            Reply::Slow(Duration::from_secs(3))
        } else {
            Reply::Status(204)
        }
    }))
    .await;
    publish_http(&a, "h", 0..1).await;
    let id = create_hook(&a, "h", &rx.url).await;
    publish_http(&a, "h", 1..5).await;
    assert_eq!(rx.wait_accepted(5, Duration::from_secs(20)).await.len(), 5);
    let owner = owner_of([&a, &b], &id).await;
    let (stalled, alive) = if owner == 0 { (&a, &b) } else { (&b, &a) };
    publish_http(alive, "h", 5..6).await;
    // The owner is in its POST of h:5: stop it past its lease.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rx.hits().iter().any(|h| h.id == "h:5") {
        assert!(Instant::now() < deadline, "h:5 never sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = rustix::process::Pid::from_raw(stalled.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    publish_http(alive, "h", 6..10).await;
    // The other edge takes over (h:5 again, then on).
    let got = rx.wait_accepted(10, Duration::from_secs(30)).await;
    assert!(got.len() >= 10, "{got:?}");
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
    publish_http(alive, "h", 10..15).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (ordered, repeats) = without_repeats(rx.accepted());
    assert_eq!(ordered, ids("h", 0..15), "in order, nothing lost");
    assert!(repeats <= 1, "{repeats} repeats: {:?}", rx.accepted());
    // Every delivery after the stalled owner resumed was the new owner's:
    // nothing was sent twice but h:5, whose answer it got too late.
    let sent: Vec<String> = rx.hits().into_iter().map(|h| h.id).collect();
    let (_, sent_repeats) = without_repeats(sent.clone());
    assert!(sent_repeats <= 1, "sent {sent:?}");
    // It moved no cursor: it says why, and both edges see the new owner's.
    let v = hook_view(stalled, &id).await.unwrap();
    let why = v["last_error"].as_str().unwrap_or_default();
    assert!(
        why.contains("lease was lost") || why.contains("another worker owns"),
        "{v}"
    );
    for e in [stalled, alive] {
        wait_cursor(e, &id, 15).await;
    }
}

/// What `fanlog serve ARGS` printed on stderr when it refused to start.
fn refusal(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fanlog"))
        .arg("serve")
        .args(["--tcp", "127.0.0.1:0", "--quic", "off", "--http", "off"])
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "it started: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_always_needs_servers_that_sync_before_they_ack() {
    // JetStream's default: acknowledged, synced within two minutes.
    let nats = NatsCluster::start_with(false).await;
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let urls = nats.urls();
    let e = refusal(&["--data", d, "--cluster", &urls, "--fsync", "always"]);
    assert!(e.contains("monitor_urls"), "{e}");
    let conf = data.path().join("fanlog.toml");
    std::fs::write(
        &conf,
        format!("[cluster]\nmonitor_urls = {}\n", nats.monitor_urls_toml()),
    )
    .unwrap();
    let c = conf.to_str().unwrap();
    let e = refusal(&[
        "--data",
        d,
        "--cluster",
        &urls,
        "--fsync",
        "always",
        "--config",
        c,
    ]);
    assert!(e.contains("sync_interval: always"), "{e}");
    assert_eq!(
        e.lines().filter(|l| l.starts_with("fanlog:")).count(),
        1,
        "one line: {e}"
    );
    // A hook lease too short to renew in time.
    std::fs::write(&conf, "[cluster]\nlease_ttl = \"1s\"\n").unwrap();
    let e = refusal(&["--data", d, "--cluster", &urls, "--config", c]);
    assert!(e.contains("lease_ttl must be at least 3s"), "{e}");
    // Other modes start (the ack is the quorum's; docs/cluster.md).
    let edge = nats.edge(data.path(), &["--fsync", "interval:100"]);
    let client = Client::connect(&edge.tcp).await.unwrap();
    assert_eq!(client.publish("s", Message::new("x")).await.unwrap(), 0);

    // An old server is refused in one line too: Debian's 2.9, when present.
    let old = std::path::Path::new("/usr/sbin/nats-server");
    if old.exists() && common::nats::version_of(old).is_some_and(|v| v < (2, 11)) {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let store = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(old)
            .args(["-p", &port.to_string(), "-a", "127.0.0.1", "-js", "-sd"])
            .arg(store.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let e = refusal(&[
            "--data",
            d,
            "--cluster",
            &format!("nats://127.0.0.1:{port}"),
        ]);
        let _ = child.kill();
        let _ = child.wait();
        assert!(e.contains("2.11 or newer"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_time_seek_truncation_tickets_and_deletion_across_edges() {
    let nats = NatsCluster::start().await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The same tokens on every edge.
    let conf = "[[auth.tokens]]\ntoken = \"admin-token\"\npublish = [\"*\"]\nsubscribe = [\"*\"]\nadmin = true\n";
    let mut edges = Vec::new();
    for d in [&da, &db] {
        let path = d.path().join("fanlog.toml");
        std::fs::write(&path, conf).unwrap();
        edges.push(nats.edge(d.path(), &["--config", path.to_str().unwrap()]));
    }
    let (ha, hb) = (
        format!("http://{}", edges[0].http.as_ref().unwrap()),
        format!("http://{}", edges[1].http.as_ref().unwrap()),
    );
    let http = reqwest::Client::new();
    let auth = "Bearer admin-token";
    let post = |base: &str, topic: &str, body: String| {
        http.post(format!("{base}/topics/{topic}/messages"))
            .header("authorization", auth)
            .body(body)
            .send()
    };
    let get = |url: String| http.get(url).header("authorization", auth).send();

    // Long poll on B answers with what is published through A.
    assert_eq!(post(&ha, "lp", "0".into()).await.unwrap().status(), 201);
    let poll = get(format!("{hb}/topics/lp/poll?after=0&timeout=20"));
    let publish = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        post(&ha, "lp", "1".into()).await.unwrap()
    };
    let (r, p) = tokio::join!(poll, publish);
    assert_eq!(p.status(), 201);
    let page: serde_json::Value = r.unwrap().json().await.unwrap();
    assert_eq!(page["messages"][0]["seq"], 1, "{page}");
    assert_eq!(page["messages"][0]["data"], "1");

    // Time seek through either edge finds the first message at or after
    // a time.
    for i in 0..5 {
        assert_eq!(post(&ha, "ts", i.to_string()).await.unwrap().status(), 201);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 5..10 {
        assert_eq!(post(&hb, "ts", i.to_string()).await.unwrap().status(), 201);
    }
    for base in [&ha, &hb] {
        let page: serde_json::Value = get(format!("{base}/topics/ts/messages?from_time={t}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(page["messages"][0]["seq"], 5, "{page}");
    }

    // Truncation through A: readers through B get the gap.
    for i in 0..50 {
        assert_eq!(post(&ha, "tr", i.to_string()).await.unwrap().status(), 201);
    }
    let r = http
        .post(format!("{ha}/topics/tr/truncate"))
        .header("authorization", auth)
        .json(&serde_json::json!({"before": 20}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let page: serde_json::Value = get(format!("{hb}/topics/tr/messages?from=0&limit=1"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if page["gap"]["to"] == 20 {
            assert_eq!(page["messages"][0]["seq"], 20, "{page}");
            break;
        }
        assert!(Instant::now() < deadline, "no gap on B: {page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Metrics on B show the topic as the stream holds it, though every
    // message came through A: next and first seq.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = get(format!("{hb}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let has = |line: &str| text.lines().any(|l| l == line);
        if has("fanlog_topic_next_seq{topic=\"tr\"} 50")
            && has("fanlog_topic_first_seq{topic=\"tr\"} 20")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            text.lines()
                .filter(|l| l.contains("\"tr\""))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A topic made through A with settings of its own keeps them on B.
    let r = http
        .put(format!("{ha}/topics/small"))
        .header("authorization", auth)
        .json(&serde_json::json!({"max_message_bytes": 1024}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    assert_eq!(
        post(&hb, "small", "x".repeat(1025)).await.unwrap().status(),
        413
    );
    assert_eq!(
        post(&hb, "small", "x".repeat(1024)).await.unwrap().status(),
        201
    );
    // Exists, through either edge, whether that edge opened it ("small")
    // or never saw it ("small2", made through A only): its settings stay.
    let r = http
        .put(format!("{ha}/topics/small2"))
        .header("authorization", auth)
        .json(&serde_json::json!({"max_message_bytes": 1024}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for t in ["small", "small2"] {
        let r = http
            .put(format!("{hb}/topics/{t}"))
            .header("authorization", auth)
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 409, "{t} exists, through either edge");
    }
    assert_eq!(
        post(&hb, "small2", "x".repeat(1025))
            .await
            .unwrap()
            .status(),
        413
    );

    // A ticket issued by A is good once, on any edge.
    let t: serde_json::Value = http
        .post(format!("{ha}/tickets"))
        .header("authorization", auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ticket = t["ticket"].as_str().unwrap();
    let r = reqwest::get(format!("{hb}/topics/lp/events?ticket={ticket}"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(r);
    for base in [&ha, &hb] {
        let r = reqwest::get(format!("{base}/topics/lp/events?ticket={ticket}"))
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "a ticket is single use across edges");
    }

    // Deleted through A: B's subscribers end, and the name starts again
    // at seq 0 through B.
    let mut sse = get(format!("{hb}/topics/lp/events?from=0")).await.unwrap();
    let mut body = String::new();
    while !body.contains("id: 1\n") {
        match tokio::time::timeout(Duration::from_secs(10), sse.chunk()).await {
            Ok(Ok(Some(c))) => body.push_str(&String::from_utf8_lossy(&c)),
            other => panic!("SSE on B: {other:?} after {body:?}"),
        }
    }
    let r = http
        .delete(format!("{ha}/topics/lp"))
        .header("authorization", auth)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        while let Ok(Some(_)) = sse.chunk().await {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "B's SSE stream ends when the topic is deleted"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = post(&hb, "lp", "again".into()).await.unwrap();
        let v: serde_json::Value = r.json().await.unwrap();
        if v["seq"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "not started again: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `fanlog bench idle` with two edges' HTTP addresses spreads its SSE
/// subscribers over both, adds both edges' memory up, and every
/// subscriber gets every broadcast published through the first edge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_idle_spreads_sse_subscribers_over_two_edges() {
    let nats = NatsCluster::start_with(false).await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (nats.edge(da.path(), &[]), nats.edge(db.path(), &[]));
    let (ha, hb) = (a.http.clone().unwrap(), b.http.clone().unwrap());
    let http = format!("{ha},{hb}");
    let pids = format!("{},{}", a.child.id(), b.child.id());
    let args: Vec<String> = [
        "idle",
        "--transport",
        "sse",
        "--consumers",
        "20",
        "--count",
        "3",
        "--server",
        a.tcp.as_str(),
        "--http",
        http.as_str(),
        "--broker-pid",
        pids.as_str(),
    ]
    .map(str::to_owned)
    .into();
    let run = tokio::task::spawn_blocking(move || {
        common::bench_json(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    assert_eq!(run["memory"]["connections"], 20, "{run}");
    assert!(
        run["memory"]["rss_after_kb"].as_u64().unwrap()
            > run["memory"]["rss_before_kb"].as_u64().unwrap(),
        "{run}"
    );
    assert_eq!(common::num(&run, "deliveries"), 60.0, "{run}");
    // Half of the subscribers on each edge: each delivered 10 x 3 over SSE.
    for base in [&ha, &hb] {
        let text = reqwest::get(format!("http://{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            text.lines()
                .any(|l| l == "fanlog_deliveries_total{transport=\"sse\"} 30"),
            "{base}: {}",
            text.lines()
                .filter(|l| l.contains("deliveries"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// A work-sharing group is dispatched by one edge at a time (under a
/// lease): a worker joining through another edge waits, and gets the
/// group once the dispatching edge is gone, with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_group_is_dispatched_by_one_edge_and_moves_when_it_dies() {
    use fanlog::client::WorkerOptions;
    use futures_util::StreamExt;
    const N: u64 = 100;
    let nats = NatsCluster::start().await;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = nats.edge(da.path(), &[]);
    let b = nats.edge(db.path(), &[]);
    let ca = Client::connect(&a.tcp).await.unwrap();
    let batch: Vec<Message> = (0..N).map(|i| Message::new(i.to_string())).collect();
    ca.publish_batch("jobs", batch).await.unwrap();
    // A worker on A acknowledges 5 records and holds 5 more.
    let opts = WorkerOptions {
        max_inflight: Some(5),
        ..WorkerOptions::default()
    };
    let mut wa = ca.worker("jobs", "g", opts.clone()).await.unwrap();
    let mut acked = Vec::new();
    while acked.len() < 5 {
        let job = tokio::time::timeout(Duration::from_secs(10), wa.next())
            .await
            .expect("a job on A")
            .unwrap()
            .unwrap();
        job.ack().await.unwrap();
        acked.push(job.record().seq());
    }
    // A worker on B waits while A dispatches the group...
    let cb = Client::connect(&b.tcp).await.unwrap();
    let join_b = tokio::spawn(async move { cb.worker("jobs", "g", opts).await.map(|w| (cb, w)) });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!join_b.is_finished(), "B dispatches the group beside A");
    // ... and gets it once A is gone (its lease runs out).
    let killed = Instant::now();
    a.kill9();
    let (_cb, mut wb) = tokio::time::timeout(Duration::from_secs(20), join_b)
        .await
        .expect("B joins within the lease's time")
        .unwrap()
        .expect("joined on B");
    let moved = killed.elapsed();
    let mut got = Vec::new();
    while let Ok(Some(job)) = tokio::time::timeout(Duration::from_secs(3), wb.next()).await {
        let job = job.unwrap();
        got.push(job.record().seq());
        job.ack().await.unwrap();
    }
    // Nothing lost: what A held unacknowledged came to B.
    let mut all: Vec<u64> = acked.iter().chain(&got).copied().collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all, (0..N).collect::<Vec<_>>(), "A acked {acked:?}");
    assert!(
        moved <= fanlog::broker::work::LEASE_TTL + Duration::from_secs(3),
        "moved after {moved:?}"
    );
    eprintln!("the group moved to B {moved:?} after A was killed");
}
