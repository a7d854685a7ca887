//! What a stalled SSE reader costs the broker, through a real `fanlog
//! serve`: readers that open a stream of a long backlog and never read. A
//! stream is read from the log only while its connection's buffer has room,
//! and that buffer is bounded (`max_buffered`, 64 KiB), so each stalled
//! stream holds a bounded amount of the broker's memory however much is
//! waiting for it.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

const STREAMS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_sse_reader_costs_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let serve =
        common::ServeProcess::start(dir.path(), &["--http", "127.0.0.1:0", "--quic", "off"]);
    let http = serve.http.clone().unwrap();
    let c = reqwest::Client::new();
    // A backlog of 12 MiB: more than the kernel's socket buffers take.
    let body = "x".repeat(16 << 10);
    for _ in 0..768 {
        let r = c
            .post(format!("http://{http}/topics/s/messages"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let pid = serve.child.id();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (before, _) = common::rss_kb(pid);
    let streams: Vec<TcpStream> = (0..STREAMS)
        .map(|_| {
            let mut s = TcpStream::connect(&http).unwrap();
            write!(
                s,
                "GET /topics/s/events?from=0 HTTP/1.1\r\nHost: {http}\r\n\r\n"
            )
            .unwrap();
            s
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (after, _) = common::rss_kb(pid);
    let per_stream = after.saturating_sub(before) / STREAMS as u64;
    println!(
        "broker memory per stalled SSE stream: {per_stream} KiB ({before} -> {after} KiB RSS, {STREAMS} streams)"
    );
    assert!(per_stream < 160, "{per_stream} KiB per stalled stream");
    drop(streams);
    assert!(serve.terminate().success());
}
