//! JSON bodies shared by the HTTP routes: a message, a page of messages,
//! and the response helper.

use std::borrow::Cow;
use std::time::{Duration, UNIX_EPOCH};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Serialize;

use super::ApiError;
use fanlog_broker::Record;
use fanlog_broker::StartFrom;

/// A JSON response with `status`.
pub(crate) fn body(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response(),
        // Our own values always serialize; say so rather than panic.
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{{\"error\":\"cannot encode the answer: {e}\"}}"),
        )
            .into_response(),
    }
}

/// A payload as text: itself when it is UTF-8, else base64, with the
/// encoding to tell (`Some("base64")`).
pub(crate) fn data(payload: &[u8]) -> (Cow<'_, str>, Option<&'static str>) {
    match std::str::from_utf8(payload) {
        Ok(s) => (Cow::Borrowed(s), None),
        Err(_) => (
            Cow::Owned(base64::engine::general_purpose::STANDARD.encode(payload)),
            Some("base64"),
        ),
    }
}

/// A payload from its JSON form (a WebSocket publish op, a batch entry),
/// with its content type: a string is its UTF-8 bytes, or with `encoding:
/// "base64"` the bytes it encodes; any other JSON value is stored as its
/// text, `application/json` unless `content_type` says otherwise.
///
/// # Errors
/// No data, an unknown encoding, or data that is not base64.
pub(crate) fn payload(
    data: Option<serde_json::Value>,
    encoding: Option<&str>,
    content_type: Option<String>,
) -> Result<(bytes::Bytes, Option<String>), String> {
    use bytes::Bytes;
    match (data, encoding) {
        (Some(serde_json::Value::String(s)), None) => Ok((Bytes::from(s), content_type)),
        (Some(serde_json::Value::String(s)), Some("base64")) => Ok((
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map(Bytes::from)
                .map_err(|e| format!("data is not base64: {e}"))?,
            content_type,
        )),
        (Some(_), Some(other)) => Err(format!("unknown encoding {other:?}")),
        (Some(v), None) => Ok((
            Bytes::from(v.to_string()),
            content_type.or_else(|| Some("application/json".into())),
        )),
        (None, _) => Err("a message needs data".into()),
    }
}

/// Deserializes a field that may be JSON `null` as `Some(Null)`, so that
/// only a missing field is `None` (with `#[serde(default)]`): a message's
/// data may be the JSON value `null`.
pub(crate) fn present<'de, D>(d: D) -> Result<Option<serde_json::Value>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    <serde_json::Value as serde::Deserialize>::deserialize(d).map(Some)
}

/// Messages per page when the request does not say; at most [`MAX_LIMIT`].
pub(crate) fn page_limit(asked: Option<usize>) -> usize {
    asked.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

/// Most messages in one page, whatever `limit` asks.
const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 100;

/// RFC 3339 time of an append timestamp.
pub(crate) fn time(timestamp_us: u64) -> String {
    humantime::format_rfc3339_micros(UNIX_EPOCH + Duration::from_micros(timestamp_us)).to_string()
}

/// The CloudEvents `type` of a record published in binary mode, when it is
/// safe to put in an SSE `event:` field (printable, no line breaks).
pub(crate) fn event_type(r: &Record) -> Option<String> {
    let meta = r.meta()?;
    let h = meta.headers.iter().find(|h| h.name.as_str() == "ce-type")?;
    let ty = std::str::from_utf8(h.value.as_slice()).ok()?;
    let safe = !ty.is_empty() && ty.len() <= 256 && ty.chars().all(|c| !c.is_control());
    safe.then(|| ty.to_owned())
}

/// One message as the HTTP API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct MessageJson {
    pub(crate) seq: u64,
    /// When the broker appended it (RFC 3339).
    pub(crate) time: String,
    /// The content type it was published with.
    pub(crate) content_type: Option<String>,
    /// The payload: itself when it is UTF-8, else base64 (see `encoding`).
    pub(crate) data: String,
    /// `base64` when `data` is base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) encoding: Option<&'static str>,
}

impl MessageJson {
    pub(crate) fn new(r: &Record) -> Self {
        let (data, encoding) = data(r.payload());
        Self {
            seq: r.seq(),
            time: time(r.timestamp_us()),
            content_type: r.content_type().map(str::to_owned),
            data: data.into_owned(),
            encoding,
        }
    }
}

/// Records that retention removed before they were read: seqs `from`
/// up to (not including) `to`.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub(crate) struct GapJson {
    pub(crate) from: u64,
    pub(crate) to: u64,
}

/// A page of messages: a paged read or a long-poll answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Page {
    pub(crate) messages: Vec<MessageJson>,
    /// The seq to ask for next.
    pub(crate) next: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) gap: Option<GapJson>,
}

impl Page {
    /// An empty page that continues at `next`.
    pub(crate) fn empty(next: u64) -> Self {
        Self {
            messages: Vec::new(),
            next,
            gap: None,
        }
    }

    /// Adds `r` unless the page is full (`max` messages, or `max_bytes` of
    /// payload once it holds one); returns whether it was added.
    pub(crate) fn push(
        &mut self,
        r: &Record,
        max: usize,
        max_bytes: usize,
        bytes: &mut usize,
    ) -> bool {
        if self.messages.len() >= max || (!self.messages.is_empty() && *bytes >= max_bytes) {
            return false;
        }
        *bytes += r.payload().len();
        self.next = r.seq() + 1;
        self.messages.push(MessageJson::new(r));
        true
    }
}

/// Where a read or stream starts, from the `from` (a seq) and `from_time`
/// (an RFC 3339 UTC time: the first message at or after it) parameters;
/// `default` when neither is given.
///
/// # Errors
/// Both given, or a time that is not RFC 3339.
pub(crate) fn start_from(
    from: Option<u64>,
    from_time: Option<&str>,
    default: StartFrom,
) -> Result<StartFrom, ApiError> {
    match (from, from_time) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give from (a seq) or from_time (a time), not both",
        )),
        (Some(seq), None) => Ok(StartFrom::Seq(seq)),
        (None, Some(t)) => parse_time(t).map(StartFrom::Time),
        (None, None) => Ok(default),
    }
}

/// An RFC 3339 time (`2026-11-29T12:00:00Z`, fractions allowed) as
/// microseconds since the Unix epoch.
pub(crate) fn parse_time(t: &str) -> Result<u64, ApiError> {
    let at = humantime::parse_rfc3339_weak(t).map_err(|e| {
        ApiError::bad_request(format!(
            "from_time {t:?} is not an RFC 3339 time like 2026-11-29T12:00:00Z: {e}"
        ))
    })?;
    Ok(at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)))
}
