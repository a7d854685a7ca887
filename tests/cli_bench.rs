//! `fanlog bench`, the load tool, through the real binary: every workload
//! over TCP and QUIC gives a JSON line with consistent counts, and `--html`
//! writes a report with charts.

mod common;

fn bench_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = common::fanlog(&all);
    let last = out.lines().last().expect("output");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is JSON ({e}): {last}"))
}

fn num(v: &serde_json::Value, k: &str) -> f64 {
    v[k].as_f64()
        .unwrap_or_else(|| panic!("{k} missing in {v}"))
}

#[test]
fn every_workload_reports_consistent_json() {
    let p = bench_json(&[
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
    assert_eq!(num(&p, "msgs"), 3000.0);
    assert!(num(&p, "msgs_per_s") > 0.0 && num(&p, "mb_per_s") > 0.0 && num(&p, "secs") > 0.0);
    assert!(num(&p, "p50_us") <= num(&p, "p99_us") && num(&p, "p99_us") <= num(&p, "p999_us"));

    let c = bench_json(&["consume", "--count", "2000", "--consumers", "3"]);
    assert_eq!((num(&c, "msgs"), num(&c, "deliveries")), (6000.0, 6000.0));

    let e = bench_json(&[
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
    assert_eq!((num(&e, "msgs"), num(&e, "deliveries")), (1000.0, 2000.0));
    assert!(
        num(&e, "secs") >= 0.19,
        "paced at 5000/s: 1000 messages take 0.2 s"
    );
    assert!(e["p999_us"].is_number());

    let f = bench_json(&[
        "fanout",
        "--count",
        "500",
        "--consumers",
        "4",
        "--transport",
        "quic",
    ]);
    assert_eq!(f["transport"], "quic");
    assert_eq!(num(&f, "msgs"), 2000.0, "fanout counts deliveries");
}

#[test]
fn against_a_running_server_with_an_html_report() {
    let dir = tempfile::tempdir().unwrap();
    let serve = common::ServeProcess::start(dir.path(), &[]);
    let html = dir.path().join("report.html");
    let html_s = html.to_str().unwrap();
    let v = bench_json(&[
        "publish", "--count", "2000", "--server", &serve.tcp, "--topic", "loadtest", "--html",
        html_s,
    ]);
    assert_eq!(num(&v, "msgs"), 2000.0);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<svg")
            && page.contains("Throughput over time")
            && page.contains("Latency distribution")
    );
    // The broker kept what the load tool published.
    let topics = common::fanlog(&["topics", "--server", &serve.tcp]);
    assert!(
        topics.lines().any(|l| l.starts_with("loadtest\t0\t2000\t")),
        "{topics}"
    );
    let cert = dir.path().join("tls/cert.pem");
    let q = bench_json(&[
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
    assert_eq!(num(&q, "msgs"), 2000.0);
    assert!(serve.terminate().success());
}

#[test]
fn bad_options_fail_with_one_line() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fanlog"))
        .args(["bench", "publish", "--size", "4"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--size"), "{err}");
}
