//! The crates keep to their rooms: an embedded user's build has no HTTP,
//! TLS or metrics stack, and the broker core knows no transport. Read from
//! `cargo tree` over the workspace's lock file (it may fetch the registry
//! index on a machine that never built these crates).

use std::process::Command;

/// The crates in `package`'s normal dependency tree with `features`.
fn tree(package: &str, features: &[&str]) -> Vec<String> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "tree",
        "--offline",
        "--locked",
        "-e",
        "normal",
        "--prefix",
        "none",
        "-p",
        package,
    ]);
    if !features.is_empty() {
        cmd.args(["--no-default-features", "--features", &features.join(",")]);
    }
    let out = cmd.output().expect("cargo tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut crates: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect();
    crates.sort();
    crates.dedup();
    crates
}

const SERVER_STACK: [&str; 9] = [
    "axum",
    "hyper",
    "reqwest",
    "prometheus-client",
    "ring",
    "rustls",
    "quinn",
    "tower-http",
    "fanlog-server",
];

#[test]
fn an_embedded_client_builds_without_the_server_stack() {
    let crates = tree("fanlog-client", &["embedded"]);
    assert!(crates.iter().any(|c| c == "fanlog-broker"), "{crates:?}");
    for c in SERVER_STACK {
        assert!(!crates.iter().any(|have| have == c), "{c} in {crates:?}");
    }
}

#[test]
fn the_broker_core_knows_no_transport_http_or_metrics() {
    let crates = tree("fanlog-broker", &[]);
    for c in SERVER_STACK {
        assert!(!crates.iter().any(|have| have == c), "{c} in {crates:?}");
    }
}

#[test]
fn storage_knows_neither_the_core_nor_the_servers() {
    let crates = tree("fanlog-storage", &[]);
    assert!(crates.iter().any(|c| c == "memmap2"), "{crates:?}");
    for c in SERVER_STACK.iter().chain(&["fanlog-broker"]) {
        assert!(!crates.iter().any(|have| have == c), "{c} in {crates:?}");
    }
    // The core reaches the files only through the storage crate.
    let core = tree("fanlog-broker", &[]);
    assert!(core.iter().any(|c| c == "fanlog-storage"), "{core:?}");
}

#[test]
fn the_default_client_still_speaks_tls_and_quic() {
    let crates = tree("fanlog-client", &[]);
    for c in ["quinn", "rustls", "fanlog-broker"] {
        assert!(crates.iter().any(|have| have == c), "{c} not in {crates:?}");
    }
    for c in ["axum", "reqwest", "prometheus-client", "fanlog-server"] {
        assert!(!crates.iter().any(|have| have == c), "{c} in {crates:?}");
    }
}
