//! CloudEvents v1.0 over HTTP: validation of what publishers send, and the
//! two forms hooks deliver.
//!
//! An event is stored in *binary* form whatever form it came in: the
//! record's payload is the event's data, its content type the event's
//! `datacontenttype`, and every other attribute a `ce-{name}` header of the
//! record. So every consumer (wire client, SSE, WebSocket, hook) reads the
//! data as the payload, and the structured form is rebuilt on delivery.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use fanlog_protocol::Header;
use serde_json::{Map, Value};

/// The media type of structured mode.
pub const STRUCTURED: &str = "application/cloudevents+json";
/// The media type of batched mode.
pub const BATCH: &str = "application/cloudevents-batch+json";
/// Header prefix of binary mode, and of attributes stored in a record.
pub const PREFIX: &str = "ce-";
/// Record header prefix naming an attribute's JSON type when it is not a
/// string (`integer`, `boolean`); never delivered as a header.
const KIND_PREFIX: &str = "fanlog-cetype-";
const INTEGER: &str = "integer";
const BOOLEAN: &str = "boolean";

/// An event as stored: payload, content type, `ce-*` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The event's data: the message payload.
    pub data: Bytes,
    /// The data's content type (`datacontenttype`).
    pub content_type: Option<String>,
    /// The other attributes, as `ce-*` headers.
    pub headers: Vec<Header>,
}

/// Context attributes whose JSON form must be a string.
const STRING_ATTRIBUTES: &[&str] = &[
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
];

/// Characters a `ce-*` header value carries percent-encoded (the HTTP
/// binding): controls, space, `"` and `%`; every non-ASCII byte is encoded
/// anyway.
const HEADER_ESCAPES: &percent_encoding::AsciiSet =
    &percent_encoding::CONTROLS.add(b' ').add(b'"').add(b'%');

/// A `ce-*` header value as sent: percent-encoded UTF-8.
#[must_use]
pub fn encode_header_value(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, HEADER_ESCAPES).to_string()
}

/// A received `ce-*` header value, percent-decoded.
///
/// # Errors
/// The decoded bytes are not UTF-8.
pub fn decode_header_value(value: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| format!("header value {value:?} is not percent-encoded UTF-8"))
}

fn required(name: &str, value: Option<&str>) -> Result<(), String> {
    match value {
        Some(v) if !v.is_empty() => Ok(()),
        Some(_) => Err(format!("CloudEvents attribute {name} is empty")),
        None => Err(format!("CloudEvents attribute {name} is missing")),
    }
}

/// Attribute names: lower-case ASCII letters and digits (CloudEvents 1.0).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn check_attributes(get: impl Fn(&str) -> Option<String>) -> Result<(), String> {
    match get("specversion").as_deref() {
        Some("1.0") => {}
        Some(v) => {
            return Err(format!(
                "CloudEvents specversion {v:?} is not supported (1.0 is)"
            ));
        }
        None => return Err("CloudEvents attribute specversion is missing".into()),
    }
    for name in ["id", "source", "type"] {
        required(name, get(name).as_deref())?;
    }
    if let Some(t) = get("time")
        && chrono::DateTime::parse_from_rfc3339(&t).is_err()
    {
        return Err(format!(
            "CloudEvents time {t:?} is not an RFC 3339 timestamp"
        ));
    }
    Ok(())
}

fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_none_or(|ct| {
        let ct = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        ct == "application/json" || ct.ends_with("+json") || ct == "text/json"
    })
}

/// Validates a structured-mode body and turns it into the stored form.
///
/// # Errors
/// What is wrong with the event.
pub fn from_structured(body: &[u8]) -> Result<Stored, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("CloudEvent is not JSON: {e}"))?;
    let Value::Object(mut obj) = v else {
        return Err("a structured CloudEvent is a JSON object".into());
    };
    // A null attribute is an unset one (the JSON event format).
    obj.retain(|_, v| !v.is_null());
    // The context attributes the spec types as strings (or URIs, or
    // timestamps, which JSON carries as strings) must be JSON strings: a
    // `specversion` of the number 1.0 is not an event.
    for name in STRING_ATTRIBUTES {
        if let Some(v) = obj.get(*name)
            && !v.is_string()
        {
            return Err(format!(
                "CloudEvents attribute {name} must be a JSON string"
            ));
        }
    }
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    check_attributes(|name| obj.get(name).and_then(text))?;
    let data = obj.remove("data");
    let data_base64 = obj.remove("data_base64");
    let mut content_type = obj
        .remove("datacontenttype")
        .map(|v| text(&v).ok_or("datacontenttype is not a string"))
        .transpose()?;
    // In the JSON format, `data` without a `datacontenttype` is JSON.
    if content_type.is_none() && data.is_some() {
        content_type = Some("application/json".to_owned());
    }
    let data = match (data, data_base64) {
        (Some(_), Some(_)) => return Err("a CloudEvent has data or data_base64, not both".into()),
        (None, Some(Value::String(b64))) => Bytes::from(
            STANDARD
                .decode(b64)
                .map_err(|_| "data_base64 is not base64".to_owned())?,
        ),
        (None, Some(_)) => return Err("data_base64 is not a string".into()),
        (Some(Value::String(s)), None) if !is_json(content_type.as_deref()) => Bytes::from(s),
        (Some(d), None) => Bytes::from(serde_json::to_vec(&d).map_err(|e| e.to_string())?),
        (None, None) => Bytes::new(),
    };
    let mut headers = Vec::with_capacity(obj.len());
    for (name, value) in obj {
        if !valid_name(&name) {
            return Err(format!(
                "CloudEvents attribute name {name:?} is not lower-case letters and digits"
            ));
        }
        // Extensions keep their JSON type (integer, boolean) for the
        // structured form, in a record header beside the attribute.
        let kind = match &value {
            Value::Number(n) if n.is_i64() => Some(INTEGER),
            Value::Number(_) => {
                return Err(format!(
                    "CloudEvents attribute {name} is not an integer (the type system has no fractions)"
                ));
            }
            Value::Bool(_) => Some(BOOLEAN),
            _ => None,
        };
        let value = text(&value).ok_or_else(|| {
            format!("CloudEvents attribute {name} is not a string, integer or boolean")
        })?;
        if let Some(kind) = kind {
            headers.push(Header {
                name: format!("{KIND_PREFIX}{name}"),
                value: kind.as_bytes().to_vec(),
            });
        }
        headers.push(Header {
            name: format!("{PREFIX}{name}"),
            value: value.into_bytes(),
        });
    }
    Ok(Stored {
        data,
        content_type,
        headers,
    })
}

/// Validates binary-mode `ce-*` headers (name lower-cased, value) and
/// returns them as stored headers.
///
/// # Errors
/// What is wrong with the event.
pub fn from_binary(ce_headers: &[(String, String)]) -> Result<Vec<Header>, String> {
    // Values arrive percent-encoded (the HTTP binding).
    let decoded = ce_headers
        .iter()
        .map(|(n, v)| Ok((n.clone(), decode_header_value(v)?)))
        .collect::<Result<Vec<_>, String>>()?;
    let get = |name: &str| {
        decoded
            .iter()
            .find(|(n, _)| n.strip_prefix(PREFIX) == Some(name))
            .map(|(_, v)| v.clone())
    };
    check_attributes(get)?;
    decoded
        .into_iter()
        .map(|(n, v)| {
            let attr = n.strip_prefix(PREFIX).unwrap_or(&n);
            if attr == "datacontenttype" {
                return Err(
                    "in binary mode the data's content type is the Content-Type header, never ce-datacontenttype"
                        .to_owned(),
                );
            }
            if !valid_name(attr) {
                return Err(format!(
                    "CloudEvents attribute name {attr:?} is not lower-case letters and digits"
                ));
            }
            Ok(Header {
                name: n,
                value: v.into_bytes(),
            })
        })
        .collect()
}

/// The `ce-*` attributes of a stored record, names without the prefix.
pub fn attributes(headers: &[(String, Vec<u8>)]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(n, v)| {
            let name = n.strip_prefix(PREFIX)?;
            Some((name.to_owned(), String::from_utf8_lossy(v).into_owned()))
        })
        .collect()
}

/// The `sequence` extension value of a seq: zero-padded so that it sorts.
#[must_use]
pub fn sequence(seq: u64) -> String {
    format!("{seq:020}")
}

/// The attributes of a stored record that are not strings, with their JSON
/// type (`integer`, `boolean`).
pub fn attribute_kinds(headers: &[(String, Vec<u8>)]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(n, v)| {
            let name = n.strip_prefix(KIND_PREFIX)?;
            Some((name.to_owned(), String::from_utf8_lossy(v).into_owned()))
        })
        .collect()
}

/// The structured form of a stored event, every attribute a string.
#[must_use]
pub fn structured(attrs: &[(String, String)], content_type: Option<&str>, data: &[u8]) -> Vec<u8> {
    structured_with_kinds(attrs, &[], content_type, data)
}

/// The structured form of a stored event; attributes named in `kinds` (see
/// [`attribute_kinds`]) get their JSON type back.
#[must_use]
pub fn structured_with_kinds(
    attrs: &[(String, String)],
    kinds: &[(String, String)],
    content_type: Option<&str>,
    data: &[u8],
) -> Vec<u8> {
    let mut obj = Map::new();
    for (name, value) in attrs {
        let kind = kinds
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, k)| k.as_str());
        let typed = match kind {
            Some(INTEGER) => value.parse::<i64>().ok().map(Value::from),
            Some(BOOLEAN) => value.parse::<bool>().ok().map(Value::Bool),
            _ => None,
        };
        obj.insert(
            name.clone(),
            typed.unwrap_or_else(|| Value::String(value.clone())),
        );
    }
    if let Some(ct) = content_type {
        obj.insert("datacontenttype".into(), Value::String(ct.to_owned()));
    }
    if !data.is_empty() {
        let json_data = is_json(content_type)
            .then(|| serde_json::from_slice::<Value>(data).ok())
            .flatten();
        match (json_data, std::str::from_utf8(data)) {
            (Some(v), _) => {
                obj.insert("data".into(), v);
            }
            (None, Ok(text)) if content_type.is_some() => {
                obj.insert("data".into(), Value::String(text.to_owned()));
            }
            _ => {
                obj.insert("data_base64".into(), Value::String(STANDARD.encode(data)));
            }
        }
    }
    serde_json::to_vec(&Value::Object(obj)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn h(headers: &[Header]) -> Vec<(String, Vec<u8>)> {
        headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect()
    }

    #[test]
    fn structured_events_are_stored_binary_and_rebuilt() {
        let body = br#"{"specversion":"1.0","id":"A-1","source":"/orders","type":"order.created",
            "time":"2026-11-22T10:00:00Z","datacontenttype":"application/json","data":{"n":1},"tenant":"x"}"#;
        let s = from_structured(body).unwrap();
        assert_eq!(&s.data[..], br#"{"n":1}"#);
        assert_eq!(s.content_type.as_deref(), Some("application/json"));
        let attrs = attributes(&h(&s.headers));
        assert!(attrs.contains(&("type".into(), "order.created".into())));
        assert!(attrs.contains(&("tenant".into(), "x".into())));
        let back: Value =
            serde_json::from_slice(&structured(&attrs, s.content_type.as_deref(), &s.data))
                .unwrap();
        assert_eq!(back["data"]["n"], 1);
        assert_eq!(back["id"], "A-1");
        assert_eq!(back["datacontenttype"], "application/json");

        let bin = from_structured(
            br#"{"specversion":"1.0","id":"2","source":"s","type":"t","data_base64":"AAEC"}"#,
        )
        .unwrap();
        assert_eq!(&bin.data[..], &[0, 1, 2]);
        let back: Value =
            serde_json::from_slice(&structured(&attributes(&h(&bin.headers)), None, &bin.data))
                .unwrap();
        assert_eq!(back["data_base64"], "AAEC");
        let text = from_structured(
            br#"{"specversion":"1.0","id":"3","source":"s","type":"t","datacontenttype":"text/plain","data":"hi"}"#,
        )
        .unwrap();
        assert_eq!(&text.data[..], b"hi");
    }

    #[test]
    fn invalid_events_are_refused() {
        for (body, why) in [
            (&br#"{"id":"1","source":"s","type":"t"}"#[..], "specversion"),
            (br#"{"specversion":"0.3","id":"1","source":"s","type":"t"}"#, "0.3"),
            (br#"{"specversion":"1.0","source":"s","type":"t"}"#, "id"),
            (br#"{"specversion":"1.0","id":"1","type":"t"}"#, "source"),
            (br#"{"specversion":"1.0","id":"1","source":"s"}"#, "type"),
            (br#"{"specversion":"1.0","id":"","source":"s","type":"t"}"#, "empty"),
            (br#"{"specversion":"1.0","id":"1","source":"s","type":"t","data":1,"data_base64":"AA=="}"#, "not both"),
            (br#"{"specversion":"1.0","id":"1","source":"s","type":"t","time":"yesterday"}"#, "RFC 3339"),
            (br#"{"specversion":"1.0","id":"1","source":"s","type":"t","Bad":"x"}"#, "lower-case"),
            (br#"[1]"#, "object"),
            (br#"{nope"#, "not JSON"),
        ] {
            let e = from_structured(body).unwrap_err();
            assert!(e.contains(why), "{}: {e}", String::from_utf8_lossy(body));
        }
        let ok = [
            ("ce-specversion".to_owned(), "1.0".to_owned()),
            ("ce-id".to_owned(), "1".to_owned()),
            ("ce-source".to_owned(), "/s".to_owned()),
            ("ce-type".to_owned(), "t".to_owned()),
        ];
        assert_eq!(from_binary(&ok).unwrap().len(), 4);
        assert!(from_binary(&ok[1..]).unwrap_err().contains("specversion"));
        assert!(from_binary(&ok[..3]).unwrap_err().contains("type"));
    }

    #[test]
    fn the_json_format_and_http_binding_rules_hold() {
        // 4: a null attribute is unset. 5: times with an offset.
        let e = from_structured(
            br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","subject":null,
                "time":"2026-11-22T12:00:00+02:00"}"#,
        )
        .unwrap();
        let attrs = attributes(&h(&e.headers));
        assert!(!attrs.iter().any(|(n, _)| n == "subject"), "{attrs:?}");
        // 6: specversion as a number is not an event.
        let e = from_structured(br#"{"specversion":1.0,"id":"1","source":"/s","type":"t"}"#)
            .unwrap_err();
        assert!(e.contains("specversion must be a JSON string"), "{e}");
        // 2: JSON data without datacontenttype is application/json.
        let e = from_structured(
            br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(e.content_type.as_deref(), Some("application/json"));
        // 3: integer and boolean extensions keep their type in the
        // structured form.
        let e = from_structured(
            br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","count":5,"ok":true,"name":"5"}"#,
        )
        .unwrap();
        let hs = h(&e.headers);
        let back: Value = serde_json::from_slice(&structured_with_kinds(
            &attributes(&hs),
            &attribute_kinds(&hs),
            None,
            &[],
        ))
        .unwrap();
        assert_eq!(back["count"], json!(5));
        assert_eq!(back["ok"], json!(true));
        assert_eq!(back["name"], json!("5"));
        assert!(
            from_structured(br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","x":1.5}"#)
                .is_err()
        );
        // 1: binary header values are percent-decoded on input and encoded
        // on output; 6: ce-datacontenttype is refused in binary mode.
        let base = [
            ("ce-specversion".to_owned(), "1.0".to_owned()),
            ("ce-id".to_owned(), "1".to_owned()),
            ("ce-source".to_owned(), "/s".to_owned()),
            ("ce-type".to_owned(), "t".to_owned()),
        ];
        let mut with_subject = base.to_vec();
        with_subject.push(("ce-subject".into(), "a%20b%C3%A9".into()));
        let stored = from_binary(&with_subject).unwrap();
        let subject = stored.iter().find(|h| h.name == "ce-subject").unwrap();
        assert_eq!(subject.value, "a bé".as_bytes());
        assert_eq!(encode_header_value("a bé\"%"), "a%20b%C3%A9%22%25");
        let mut with_ct = base.to_vec();
        with_ct.push(("ce-datacontenttype".into(), "text/plain".into()));
        assert!(from_binary(&with_ct).unwrap_err().contains("Content-Type"));
    }

    #[test]
    fn sequences_sort_as_text() {
        assert_eq!(sequence(42), "00000000000000000042");
        assert!(sequence(9) < sequence(10));
        assert_eq!(sequence(u64::MAX).len(), 20);
    }
}
