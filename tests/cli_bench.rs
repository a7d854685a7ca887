//! `fanlog bench`, the load tool, through the real binary: every workload
//! over TCP, QUIC, WebSocket and Server-Sent Events gives a JSON line with
//! consistent counts, and `--html` writes a report with charts.

mod common;

use serde_json::Value;

#[test]
fn every_workload_reports_consistent_json() {
    let p = common::bench_json(&[
        "publish",
        "--count",
        "3000",
        "--batch",
        "50",
        "--producers",
        "2",
    ]);
    assert_eq!(p["workload"], "publish");
    assert_eq!(p["transport"], "tcp");
    assert_eq!(common::num(&p, "msgs"), 3000.0);
    assert!(
        common::num(&p, "msgs_per_s") > 0.0
            && common::num(&p, "mb_per_s") > 0.0
            && common::num(&p, "secs") > 0.0
    );
    assert!(
        common::num(&p, "p50_us") <= common::num(&p, "p99_us")
            && common::num(&p, "p99_us") <= common::num(&p, "p999_us")
    );

    let c = common::bench_json(&["consume", "--count", "2000", "--consumers", "3"]);
    assert_eq!(
        (common::num(&c, "msgs"), common::num(&c, "deliveries")),
        (6000.0, 6000.0)
    );

    let e = common::bench_json(&[
        "e2e",
        "--count",
        "1000",
        "--consumers",
        "2",
        "--batch",
        "1",
        "--rate",
        "5000",
    ]);
    assert_eq!(
        (common::num(&e, "msgs"), common::num(&e, "deliveries")),
        (1000.0, 2000.0)
    );
    assert!(
        common::num(&e, "secs") >= 0.19,
        "paced at 5000/s: 1000 messages take 0.2 s"
    );
    assert!(e["p999_us"].is_number());

    let f = common::bench_json(&[
        "fanout",
        "--count",
        "500",
        "--consumers",
        "4",
        "--transport",
        "quic",
    ]);
    assert_eq!(f["transport"], "quic");
    assert_eq!(common::num(&f, "msgs"), 2000.0, "fanout counts deliveries");
}

#[test]
fn against_a_running_server_with_an_html_report() {
    let dir = tempfile::tempdir().unwrap();
    let serve = common::ServeProcess::start(dir.path(), &[]);
    let html = dir.path().join("report.html");
    let html_s = html.to_str().unwrap();
    let v = common::bench_json(&[
        "publish", "--count", "2000", "--server", &serve.tcp, "--topic", "loadtest", "--html",
        html_s,
    ]);
    assert_eq!(common::num(&v, "msgs"), 2000.0);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<svg")
            && page.contains("Throughput over time")
            && page.contains("Latency distribution")
    );
    // The run's parameters are in the report and the JSON.
    assert_eq!(v["target"], serve.tcp.as_str());
    assert_eq!(common::num(&v, "inflight"), 16.0);
    for param in [
        "<th>target</th>",
        "<th>inflight</th>",
        "<th>batch</th>",
        "<th>fsync</th>",
    ] {
        assert!(page.contains(param), "{param} in the report");
    }
    // The broker kept what the load tool published.
    let topics = common::fanlog(&["topics", "--server", &serve.tcp]);
    assert!(
        topics.lines().any(|l| l.starts_with("loadtest\t0\t2000\t")),
        "{topics}"
    );
    let cert = dir.path().join("tls/cert.pem");
    let q = common::bench_json(&[
        "consume",
        "--count",
        "2000",
        "--transport",
        "quic",
        "--server",
        serve.quic.as_deref().unwrap(),
        "--ca",
        cert.to_str().unwrap(),
        "--topic",
        "loadtest",
    ]);
    assert_eq!(common::num(&q, "msgs"), 2000.0);
    assert!(serve.terminate().success());

    // The browser edges of a running broker, and its memory by process id.
    let dir = tempfile::tempdir().unwrap();
    let serve = common::ServeProcess::start(dir.path(), &["--http", "127.0.0.1:0"]);
    let http = serve.http.clone().unwrap();
    let pid = serve.child.id().to_string();
    let f = common::bench_json(&[
        "fanout",
        "--count",
        "300",
        "--consumers",
        "3",
        "--transport",
        "sse",
        "--server",
        &serve.tcp,
        "--http",
        &http,
    ]);
    assert_eq!(common::num(&f, "deliveries"), 900.0);
    let i = common::bench_json(&[
        "idle",
        "--consumers",
        "50",
        "--transport",
        "ws",
        "--server",
        &serve.tcp,
        "--http",
        &http,
        "--broker-pid",
        &pid,
    ]);
    assert_eq!(common::num(&i, "deliveries"), 50.0);
    assert!(common::num(&i["memory"], "rss_after_kb") > 0.0, "{i}");
    // Runs on a live broker remove their fresh topics (over --http).
    let topics = common::fanlog(&["topics", "--server", &serve.tcp]);
    assert!(!topics.contains("bench-"), "{topics}");
    assert!(serve.terminate().success());
}

#[test]
fn browser_edges_as_subscriber_transports() {
    for transport in ["ws", "sse"] {
        let f = common::bench_json(&[
            "fanout",
            "--count",
            "400",
            "--consumers",
            "5",
            "--transport",
            transport,
        ]);
        assert_eq!(f["transport"], transport);
        assert_eq!(
            (common::num(&f, "msgs"), common::num(&f, "deliveries")),
            (2000.0, 2000.0),
            "{f}"
        );
        let e = common::bench_json(&[
            "e2e",
            "--count",
            "300",
            "--consumers",
            "2",
            "--batch",
            "1",
            "--rate",
            "3000",
            "--transport",
            transport,
        ]);
        assert_eq!(
            (common::num(&e, "msgs"), common::num(&e, "deliveries")),
            (300.0, 600.0),
            "{e}"
        );
        assert!(common::num(&e, "p50_us") <= common::num(&e, "p99_us"));
        let c = common::bench_json(&[
            "consume",
            "--count",
            "500",
            "--consumers",
            "2",
            "--transport",
            transport,
        ]);
        assert_eq!(common::num(&c, "deliveries"), 1000.0, "{c}");
        // Idle connections: the broker runs as a child, so its memory is
        // its own; every subscriber gets every broadcast.
        let i = common::bench_json(&[
            "idle",
            "--consumers",
            "40",
            "--count",
            "2",
            "--transport",
            transport,
        ]);
        assert_eq!(
            (common::num(&i, "msgs"), common::num(&i, "deliveries")),
            (2.0, 80.0),
            "{i}"
        );
        let m = &i["memory"];
        assert_eq!(m["connections"], 40);
        assert!(common::num(m, "rss_after_kb") >= common::num(m, "rss_before_kb"));
    }
}

#[test]
fn bad_options_fail_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_run = dir.path().join("notes.txt");
    std::fs::write(&not_a_run, "just words\n").unwrap();
    let not_a_run = not_a_run.to_str().unwrap();
    let html = dir.path().join("r.html");
    let html = html.to_str().unwrap();
    for (args, says) in [
        (&["publish", "--size", "4"][..], "--size"),
        (&["publish", "--transport", "sse"], "publishers use TCP"),
        (
            &["publish", "--compare", not_a_run],
            "--compare needs --html",
        ),
        (
            &["publish", "--compare", not_a_run, "--html", html],
            "holds no run",
        ),
        (
            &[
                "publish",
                "--compare",
                "/nonexistent/run.json",
                "--html",
                html,
            ],
            "cannot read the run in /nonexistent/run.json",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fanlog"))
            .arg("bench")
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn saved_runs_compare_in_one_report() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (a, b, report) = (path("batch-1.json"), path("b.json"), path("cmp.html"));
    // The baseline, saved; then a run with bigger batches compared with it.
    let first = common::bench_json(&[
        "publish", "--count", "3000", "--batch", "1", "--label", "batch 1", "--save", &a,
    ]);
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&a).unwrap()).unwrap();
    assert_eq!(saved["msgs_per_s"], first["msgs_per_s"]);
    assert!(!saved["timeline"].as_array().unwrap().is_empty(), "{saved}");
    assert!(
        saved["percentiles"].as_array().unwrap().len() >= 5,
        "{saved}"
    );
    assert!(saved["started"].as_str().unwrap().ends_with('Z'), "{saved}");

    let out = common::fanlog(&[
        "bench",
        "publish",
        "--count",
        "3000",
        "--batch",
        "64",
        "--save",
        &b,
        "--compare",
        &a,
        "--html",
        &report,
        "--json",
    ]);
    let this: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    // A line per run with its ratio to the baseline, then the summary.
    let ratio = this["msgs_per_s"].as_f64().unwrap() / first["msgs_per_s"].as_f64().unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "batch 1: {:.0} msgs/s, 1.00x batch 1",
            first["msgs_per_s"].as_f64().unwrap()
        ),
        "{out}"
    );
    assert_eq!(
        lines[1],
        format!(
            "this run: {:.0} msgs/s, {ratio:.2}x batch 1",
            this["msgs_per_s"].as_f64().unwrap()
        ),
        "{out}"
    );

    let page = std::fs::read_to_string(&report).unwrap();
    for want in [
        "2 runs compared",
        "batch 1 (baseline)",
        "this run",
        "Messages per second",
        "p99 latency",
        "Throughput over time",
        "Latency distribution",
        // The parameter that differs, marked, with both values.
        "<tr class=\"differs\"><th>batch</th><td>1</td><td>64</td></tr>",
        &format!("{ratio:.2}×"),
    ] {
        assert!(page.contains(want), "{want:?} in the report");
    }
    // Parameters that are the same are not marked.
    assert!(page.contains("<tr><th>size</th><td>1024</td><td>1024</td></tr>"));
    // Two curves per chart: one path per run in each line chart.
    assert_eq!(page.matches("<path ").count(), 4, "{page}");
    // A --json output line compares as well as a saved file.
    std::fs::write(path("json-line.txt"), format!("noise\n{out}")).unwrap();
    let third = common::fanlog(&[
        "bench",
        "publish",
        "--count",
        "1000",
        "--compare",
        &path("json-line.txt"),
        "--compare",
        &b,
        "--html",
        &report,
    ]);
    assert!(third.starts_with("json-line: "), "{third}");
    assert!(
        std::fs::read_to_string(&report)
            .unwrap()
            .contains("3 runs compared")
    );
}
