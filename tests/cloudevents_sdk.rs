//! CloudEvents interoperability with the official Python SDK (`cloudevents`,
//! pinned in tests/interop/requirements.txt): events the SDK builds are accepted in both
//! HTTP modes, and what hooks deliver in both modes is read back by the
//! SDK's own parser with every attribute, its JSON type, and the data.

mod common;

use serde_json::{Value, json};

#[test]
fn the_official_sdk_reads_back_what_it_sent() {
    let dir = tempfile::tempdir().unwrap();
    let serve = common::ServeProcess::start_for_hooks(dir.path());
    let http = serve.http.clone().unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/cloudevents_sdk.py"
    );
    let out = std::process::Command::new("python3")
        .args([script, &http])
        .output()
        .expect("python3 with the cloudevents package (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    for mode in ["binary", "structured"] {
        let got = v["received"][mode].as_array().unwrap();
        assert_eq!(got.len(), 2, "{mode}: {v}");
        let (s, b) = (&got[0], &got[1]);
        let a = &s["attributes"];
        assert_eq!(
            (&a["id"], &a["type"], &a["source"], &a["specversion"]),
            (
                &json!("S-1"),
                &json!("order.created"),
                &json!("/shop"),
                &json!("1.0")
            ),
            "{mode}: {s}"
        );
        assert_eq!(
            a["datacontenttype"],
            json!("application/json"),
            "{mode}: {s}"
        );
        assert_eq!(s["data"], json!({"total": 12}), "{mode}: {s}");
        assert_eq!(a["sequence"], json!("00000000000000000000"), "{mode}");
        if mode == "structured" {
            // Typed extensions keep their JSON type in structured mode; the
            // time keeps its instant.
            assert_eq!((&a["count"], &a["rush"]), (&json!(5), &json!(true)), "{s}");
        } else {
            assert_eq!(
                (&a["count"], &a["rush"]),
                (&json!("5"), &json!("true")),
                "{s}"
            );
        }
        let sent = chrono_like(v["sent_time"].as_str().unwrap());
        assert_eq!(chrono_like(a["time"].as_str().unwrap()), sent, "{mode}");
        let a = &b["attributes"];
        assert_eq!(
            (&a["id"], &a["subject"], &a["datacontenttype"]),
            (&json!("B-1"), &json!("parcel-7"), &json!("text/plain")),
            "{mode}: {b}"
        );
        assert_eq!(b["data"], json!("on its way"), "{mode}: {b}");
    }
    assert!(serve.terminate().success());
}

/// The instant of an RFC 3339 time, whatever its offset notation.
fn chrono_like(t: &str) -> String {
    humantime::format_rfc3339_micros(
        humantime::parse_rfc3339_weak(&t.replace("+00:00", "Z")).unwrap(),
    )
    .to_string()
}
