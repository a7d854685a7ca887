//! The TypeScript SDK (`sdk/typescript`): type-checked and bundled with
//! its pinned toolchain (`npm ci` in scripts/test.sh), then its Node tests
//! (`sdk/typescript/test/`) run against this build's `fanlog serve`,
//! including a broker killed with SIGKILL and restarted mid-stream.

use std::path::Path;
use std::process::Command;

fn sdk() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk/typescript")
}

/// Runs npm in the SDK's folder, bounded: a hung run is killed (with its
/// children: `timeout` signals its whole process group) and fails.
fn npm(args: &[&str]) -> String {
    let out = Command::new("timeout")
        .args(["--kill-after=10", "600", "npm"])
        .args(args)
        .current_dir(sdk())
        .env("FANLOG_BIN", env!("CARGO_BIN_EXE_fanlog"))
        .output()
        .expect("npm (scripts/test.sh installs Node and the SDK's packages)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "npm {args:?} failed:\n{text}");
    text
}

#[test]
fn the_sdk_builds_and_its_node_tests_pass_against_a_real_broker() {
    npm(&["run", "build", "--silent"]);
    let size = npm(&["run", "size", "--silent"]);
    eprintln!("SDK bundle: {}", size.trim());
    let v: serde_json::Value = serde_json::from_str(size.trim()).unwrap();
    assert!(v["minified_bytes"].as_u64().unwrap() > 0);
    let report = npm(&["test", "--silent"]);
    eprintln!("{report}");
    // Every test ran and passed (npm fails the run otherwise).
    assert!(report.contains("# fail 0"), "{report}");
    assert!(report.contains("# pass 14"), "{report}");
}

/// The SDK's types come from the broker's OpenAPI document: the copy in
/// `sdk/typescript/openapi.json` must be the one this build serves
/// (regenerate with `fanlog openapi > sdk/typescript/openapi.json` and
/// `npm run types`).
#[test]
fn the_sdk_is_typed_from_the_current_openapi_document() {
    let kept: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sdk().join("openapi.json")).unwrap())
            .unwrap();
    assert_eq!(
        kept,
        fanlog::server::edge::openapi::document(),
        "sdk/typescript/openapi.json is stale: run `fanlog openapi > sdk/typescript/openapi.json` and `npm run types` there"
    );
    let types = std::fs::read_to_string(sdk().join("src/api.d.ts")).unwrap();
    for schema in [
        "MessageJson",
        "Page",
        "PublishedJson",
        "ErrorJson",
        "TopicJson",
    ] {
        assert!(
            types.contains(&format!("{schema}: {{")),
            "{schema} not in api.d.ts"
        );
    }
}
