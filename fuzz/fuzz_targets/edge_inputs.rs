//! What browsers send the HTTP edge, on arbitrary bytes: WebSocket text
//! frames (client ops) and HTTP publish bodies with ce-* headers. Never
//! panics; a decoded publish keeps its data (text as-is, base64 decoded).
#![no_main]

use base64::Engine;
use fanlog_server::cloudevents::from_binary;
use fanlog_server::edge::parse_op;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(op) = parse_op(text) {
            let v: serde_json::Value = serde_json::from_str(text).expect("parsed once");
            match (&v["data"], v["encoding"].as_str()) {
                (serde_json::Value::String(s), None) => {
                    assert_eq!(&op.message.payload[..], s.as_bytes());
                }
                (serde_json::Value::String(s), Some("base64")) => {
                    let raw = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
                    assert_eq!(&op.message.payload[..], &raw[..]);
                }
                (other, None) => assert_eq!(op.message.payload, other.to_string()),
                _ => panic!("accepted an unknown encoding: {text}"),
            }
        }
    }
    // Binary-mode CloudEvent headers: "name: value" lines.
    let headers: Vec<(String, String)> = String::from_utf8_lossy(data)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .filter(|(k, _)| k.starts_with("ce-"))
        .collect();
    if let Ok(stored) = from_binary(&headers) {
        assert_eq!(stored.len(), headers.len());
        assert!(stored.iter().all(|h| h.name.starts_with("ce-")));
    }
});
