//! `GET /topics/{topic}/events`: Server-Sent Events for `EventSource`.
//!
//! Every message is an event whose `id:` is its seq, so a browser that
//! loses the connection comes back with `Last-Event-ID` and resumes right
//! after the last event it saw. The stream is a subscription read from the
//! log as the socket takes bytes (hyper polls the body only when it can
//! write), so a backlog is replayed one event at a time under TCP flow
//! control, and a stalled browser costs hyper's bounded write buffer, no
//! more.

use crate::MetricsExt;
use std::convert::Infallible;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{StreamExt, stream};
use serde::Deserialize;

use super::auth::{Granted, Read};
use super::json::{self, GapJson};
use super::openapi::TopicPath;
use super::{ApiError, EdgeState};
use fanlog_broker::{Event, StartFrom, Subscription};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// The first seq (default: the live tail).
    from: Option<u64>,
    /// Instead of `from`: the first message at or after this RFC 3339 time.
    from_time: Option<String>,
    /// Resume after this seq, as the `Last-Event-ID` header does (which
    /// wins when both are given).
    last_event_id: Option<String>,
}

/// Where a stream starts: after the `Last-Event-ID` header's seq, else after
/// the `last_event_id` parameter's, else at `from` or `from_time`, else at
/// the live tail.
fn start(headers: &HeaderMap, q: &EventsQuery) -> Result<StartFrom, ApiError> {
    let after = |id: &str| -> Result<StartFrom, ApiError> {
        id.trim()
            .parse::<u64>()
            .ok()
            .and_then(|seq| seq.checked_add(1))
            .map(StartFrom::Seq)
            .ok_or_else(|| ApiError::bad_request(format!("last event id {id:?} is not a seq")))
    };
    if let Some(v) = headers.get("last-event-id") {
        let id = v
            .to_str()
            .map_err(|_| ApiError::bad_request("Last-Event-ID is not visible ASCII"))?;
        return after(id);
    }
    if let Some(id) = &q.last_event_id {
        return after(id);
    }
    super::json::start_from(q.from, q.from_time.as_deref(), StartFrom::Latest)
}

/// `GET /topics/{topic}/events`
#[utoipa::path(
    get,
    path = "/topics/{topic}/events",
    operation_id = "streamEvents",
    tag = "streams",
    params(
        TopicPath,
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this seq (what EventSource sends on reconnect)"),
    ),
    responses((status = OK, description = "Server-Sent Events: one event per message (`id` its seq, `data` its payload), `gap` events, comments as heartbeats. The stream does not end", content_type = "text/event-stream", body = String)),
)]
pub(crate) async fn events(
    State(s): State<EdgeState>,
    granted: Granted<Read>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Granted { topic, caller, .. } = granted;
    let Query(q) = query?;
    let from = start(&headers, &q)?;
    // Opened or made on the blocking pool, not on this thread.
    let sub = s
        .broker
        .subscribe_ready(&topic, from, caller.may_publish(&topic))
        .await?
        .verified();

    // The retry hint goes first: it also gets the headers and the first
    // bytes out at once, so proxies and browsers see a live stream.
    let base = s.config.sse_retry.as_millis() as u64;
    let retry = base + rand::random_range(0..=base / 2);
    let first = stream::once(async move { Ok(Bytes::from(format!("retry: {retry}\n\n"))) });
    // The stream is counted open while its state lives.
    let open = s.broker.metrics().connection("sse");
    let delivered = s.broker.metrics().delivery_counter("sse");
    let heartbeat = s.config.sse_heartbeat;
    let events = stream::unfold(Some((sub, open)), move |state| {
        let delivered = delivered.clone();
        async move {
            let (mut sub, open): (Subscription, _) = state?;
            // A comment line when nothing was sent for a heartbeat, so that
            // proxies and browsers know the stream is alive. Waiting again
            // loses nothing: the subscription moves only when it yields.
            let (event, more) = match tokio::time::timeout(heartbeat, sub.next()).await {
                Err(_) => (Bytes::from_static(b": heartbeat\n\n"), true),
                Ok(Some(Ok(ev))) => {
                    if matches!(ev, Event::Record(_)) {
                        delivered.inc();
                    }
                    (to_sse(&ev), true)
                }
                Ok(Some(Err(e))) => (error_event(&e.to_string()), false),
                Ok(None) => return None,
            };
            Some((Ok::<_, Infallible>(event), more.then_some((sub, open))))
        }
    });
    let body = first
        .chain(events)
        .take_until(s.shutdown.clone().cancelled_owned());
    let mut response = axum::body::Body::from_stream(body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    let h = response.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// One event in the event stream format (HTML Living Standard, 9.2): the
/// fields, each on its line, then a blank line. Written here rather than by
/// axum's `Event`, which writes no `data:` line for empty data, so that
/// EventSource would skip a message with an empty payload altogether.
#[derive(Default)]
struct SseEvent(String);

impl SseEvent {
    fn field(mut self, name: &str, value: &str) -> Self {
        self.0.push_str(name);
        self.0.push_str(": ");
        self.0.push_str(value);
        self.0.push('\n');
        self
    }

    /// `data:` lines: one per line of `text` (a `\r\n`, `\r` or `\n` is one
    /// break, as EventSource reads it), so a payload can never start a field
    /// of its own; EventSource joins them back with `\n`. Empty text is one
    /// empty `data:` line: the event is still dispatched.
    fn data(mut self, text: &str) -> Self {
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        for line in text.split('\n') {
            self = self.field("data", line);
        }
        self
    }

    fn finish(mut self) -> Bytes {
        self.0.push('\n');
        Bytes::from(self.0)
    }
}

fn to_sse(ev: &Event) -> Bytes {
    match ev {
        Event::Record(r) => {
            let mut e = SseEvent::default().field("id", &r.seq().to_string());
            if let Some(ty) = json::event_type(r) {
                e = e.field("event", &ty);
            }
            let (text, encoding) = json::data(r.payload());
            if let Some(encoding) = encoding {
                e = e.field("", &format!("encoding={encoding}"));
            }
            e.data(&text).finish()
        }
        // The gap carries the id before the first available record, so that a
        // reconnect after it resumes there instead of asking for it again.
        Event::Gap { from, to } => SseEvent::default()
            .field("id", &to.saturating_sub(1).to_string())
            .field("event", "gap")
            .data(
                &serde_json::to_string(&GapJson {
                    from: *from,
                    to: *to,
                })
                .unwrap_or_default(),
            )
            .finish(),
    }
}

fn error_event(message: &str) -> Bytes {
    SseEvent::default()
        .field("event", "error")
        .data(&serde_json::json!({ "error": message }).to_string())
        .finish()
}
