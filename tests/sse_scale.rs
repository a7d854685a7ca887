//! Scale of the Server-Sent Events edge, through the load tool and a real
//! `fanlog serve` process: 10,000 concurrent SSE connections on one broker
//! all receive every broadcast, and 1,000 SSE subscribers receive every
//! message of a fan-out. The broker's memory per idle connection and the
//! deliveries per second are reported (figures, not pass/fail: the targets
//! live in the load tool's results, see README "Performance").

mod common;

/// File descriptors each side needs: one per connection, plus slack.
const CONNECTIONS: usize = 10_000;

fn hard_fd_limit() -> u64 {
    use rustix::process::{Resource, getrlimit};
    getrlimit(Resource::Nofile).maximum.unwrap_or(u64::MAX)
}

#[test]
fn ten_thousand_sse_connections_all_receive_every_broadcast() {
    let limit = hard_fd_limit();
    assert!(
        limit >= CONNECTIONS as u64 + 200,
        "10,000 connections need a hard open-file limit above 10,200 (have {limit})"
    );
    let n = CONNECTIONS.to_string();
    let v = common::bench_json(&[
        "idle",
        "--transport",
        "sse",
        "--consumers",
        &n,
        "--count",
        "3",
    ]);
    assert_eq!(common::num(&v, "consumers"), CONNECTIONS as f64, "{v}");
    assert_eq!(common::num(&v, "msgs"), 3.0, "{v}");
    assert_eq!(
        common::num(&v, "deliveries"),
        3.0 * CONNECTIONS as f64,
        "every connection receives every broadcast: {v}"
    );
    let m = &v["memory"];
    assert_eq!(common::num(m, "connections"), CONNECTIONS as f64, "{v}");
    let before = common::num(m, "rss_before_kb");
    let after = common::num(m, "rss_after_kb");
    assert!(before > 0.0 && after > before, "{v}");
    eprintln!(
        "10,000 idle SSE connections: broker RSS {before} -> {after} KiB, {:.0} B per connection",
        common::num(m, "bytes_per_connection")
    );
}

#[test]
fn a_thousand_sse_subscribers_receive_every_message() {
    let v = common::bench_json(&[
        "fanout",
        "--transport",
        "sse",
        "--consumers",
        "1000",
        "--count",
        "300",
    ]);
    assert_eq!(common::num(&v, "deliveries"), 300_000.0, "{v}");
    eprintln!(
        "1,000 SSE subscribers: {:.0} deliveries/s",
        common::num(&v, "msgs_per_s")
    );
}
