//! `GET /topics/{topic}/ws`: a WebSocket per browser, both ways.
//!
//! Server → client: one JSON text frame per message,
//! `{"seq", "time", "content_type", "data"[, "encoding": "base64"]}`.
//! Client → server: `{"op": "publish", "data": ...[, "content_type", "encoding",
//! "id", "idempotency_key"]}`, answered in order with `{"op": "ack", "seq": N[, "id"]}` once the
//! message is durable, or `{"op": "error", "error": "..."[, "id"]}`.
//!
//! Messages are read from the log a page at a time and written with one
//! flush, so a connection holds at most one page; a browser that takes no
//! bytes for [`super::HttpConfig::slow_consumer_timeout`] is closed with
//! [`close_code::SLOW_CONSUMER`]. Every close the broker starts carries, as
//! its reason, `{"reason": "...", "resume_from": SEQ}`: reconnect with
//! `?from=SEQ` to continue with no gap and no duplicate.

use crate::MetricsExt;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use bytes::Bytes;
use fanlog_protocol::{Message, RecordMeta};
use futures_util::stream::FuturesOrdered;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::auth::{Granted, Read};
use super::json::{GapJson, MessageJson};
use super::openapi::{ErrorJson, TopicPath};
use super::{ApiError, EdgeState};
use fanlog_broker::BrokerError;
use fanlog_broker::{Event, StartFrom, Subscription};

/// Close codes the broker uses (the 4000-4999 range is the application's).
/// The close reason is JSON with the seq to resume from.
pub mod close_code {
    /// A frame that is not a JSON text message of a known `op`.
    pub const BAD_REQUEST: u16 = 4400;
    /// No valid credentials.
    pub const UNAUTHORIZED: u16 = 4401;
    /// Credentials that do not allow this topic.
    pub const FORBIDDEN: u16 = 4403;
    /// The browser did not take its messages in time.
    pub const SLOW_CONSUMER: u16 = 4408;
    /// The broker is shutting down (the standard "going away").
    pub const GOING_AWAY: u16 = 1001;
    /// The broker failed to read the topic (the standard "internal error").
    pub const INTERNAL: u16 = 1011;
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WsQuery {
    /// The first seq (default: the live tail).
    from: Option<u64>,
    /// Instead of `from`: the first message at or after this RFC 3339 time.
    from_time: Option<String>,
}

/// `GET /topics/{topic}/ws`: the subscription is opened before the upgrade,
/// so a bad topic is an HTTP error and the start position is fixed by the
/// time the socket opens.
#[utoipa::path(
    get,
    path = "/topics/{topic}/ws",
    operation_id = "streamWebSocket",
    tag = "streams",
    params(TopicPath, WsQuery),
    responses(
        (status = SWITCHING_PROTOCOLS, description = "A WebSocket: one text frame per message (JSON, as in a page), `{\"gap\": ...}` frames; the client may publish with `{\"op\": \"publish\", ...}`"),
        (status = UPGRADE_REQUIRED, description = "Not a WebSocket handshake", body = ErrorJson),
        (status = METHOD_NOT_ALLOWED, description = "Not a WebSocket handshake", body = ErrorJson),
    ),
)]
pub(crate) async fn upgrade(
    State(s): State<EdgeState>,
    granted: Granted<Read>,
    query: Result<Query<WsQuery>, QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Granted { topic, caller, .. } = granted;
    let Query(q) = query?;
    let ws = ws.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let from = super::json::start_from(q.from, q.from_time.as_deref(), StartFrom::Latest)?;
    // Opened or made on the blocking pool, not on this thread.
    let sub = s
        .broker
        .subscribe_ready(&topic, from, caller.may_publish(&topic))
        .await?
        .verified();
    Ok(ws
        .max_message_size(s.config.max_body + 4096)
        // A frame is refused from its header when it is over the message
        // limit, before any of it is buffered (tungstenite's own default
        // would buffer 16 MiB).
        .max_frame_size(s.config.max_body + 4096)
        // tungstenite zero-fills its whole read buffer before the first
        // read: at the default 128 KiB that is what every idle socket would
        // keep resident. Frames from browsers are small; a large one grows
        // the buffer to its size as it arrives.
        .read_buffer_size(WS_READ_BUFFER)
        .on_upgrade(move |socket| WsStream::new(s, topic, sub, caller.grant).run(socket)))
}

/// Bytes read from a WebSocket per system call.
pub(crate) const WS_READ_BUFFER: usize = 4096;

type Ack =
    Pin<Box<dyn Future<Output = (Option<serde_json::Value>, Result<u64, BrokerError>)> + Send>>;

#[derive(Deserialize)]
struct Op {
    op: String,
    #[serde(default, deserialize_with = "super::json::present")]
    data: Option<serde_json::Value>,
    content_type: Option<String>,
    encoding: Option<String>,
    id: Option<serde_json::Value>,
    idempotency_key: Option<String>,
}

/// A client's publish op, decoded.
#[derive(Debug)]
pub struct PublishOp {
    /// The client's request id, echoed in the ack.
    pub id: Option<serde_json::Value>,
    /// The message to publish.
    pub message: Message,
}

/// Decodes one text frame from a client: `{"op": "publish", "data": ...,
/// "content_type"?, "encoding"?: "base64", "id"?, "idempotency_key"?}`.
///
/// # Errors
/// Why the frame is not a publish op (the socket closes with 4400).
pub fn parse_op(text: &str) -> Result<PublishOp, String> {
    let op: Op = serde_json::from_str(text).map_err(|e| format!("bad JSON: {e}"))?;
    if op.op != "publish" {
        return Err(format!("unknown op {:?}", op.op));
    }
    let (payload, content_type) =
        super::json::payload(op.data, op.encoding.as_deref(), op.content_type)?;
    Ok(PublishOp {
        id: op.id,
        message: Message {
            payload,
            meta: RecordMeta {
                content_type,
                idempotency_key: op.idempotency_key.map(String::into_bytes),
                ..RecordMeta::default()
            },
            ..Message::default()
        },
    })
}

/// Why the loop ended: the peer left, or the broker closes with a code.
pub(crate) enum End {
    PeerGone,
    Close(u16, String),
}

/// One WebSocket of the edge: a subscription out, publish ops in.
struct WsStream {
    state: EdgeState,
    topic: String,
    sub: Subscription,
    /// The seq after the last message the socket took: where a reconnect
    /// resumes.
    resume: u64,
    acks: FuturesOrdered<Ack>,
    /// Whether the caller's token may publish to the topic.
    may_publish: bool,
    /// The caller's rights (its publish rate).
    grant: std::sync::Arc<crate::auth::Grant>,
}

impl WsStream {
    fn new(
        state: EdgeState,
        topic: String,
        sub: Subscription,
        grant: std::sync::Arc<crate::auth::Grant>,
    ) -> Self {
        let may_publish = grant.can_publish(&topic);
        Self {
            state,
            topic,
            resume: sub.position(),
            sub,
            acks: FuturesOrdered::new(),
            may_publish,
            grant,
        }
    }

    async fn run(mut self, mut socket: WebSocket) {
        let shutdown = self.state.shutdown.clone();
        let mut ping = tokio::time::interval(self.state.config.ws_ping);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        let mut unanswered = 0u32;
        let _open = self.state.broker.metrics().connection("ws");
        let delivered = self.state.broker.metrics().delivery_counter("ws");
        let end = loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    break End::Close(close_code::GOING_AWAY, "broker is shutting down".into());
                }
                Some((id, result)) = self.acks.next(), if !self.acks.is_empty() => {
                    let reply = match result {
                        Ok(seq) => serde_json::json!({ "op": "ack", "seq": seq }),
                        Err(e) => serde_json::json!({ "op": "error", "error": e.to_string() }),
                    };
                    if let Err(end) = send(&mut socket, self.state.config.slow_consumer_timeout, vec![with_id(reply, id)]).await {
                        break end;
                    }
                }
                msg = socket.recv(), if self.acks.len() < self.state.config.ws_max_inflight_publishes.max(1) => match msg {
                    None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => break End::PeerGone,
                    Some(Ok(WsMessage::Text(text))) => {
                        if let Err((code, why)) = self.op(text.as_str()) {
                            break End::Close(code, why);
                        }
                    }
                    Some(Ok(WsMessage::Binary(_))) => {
                        break End::Close(
                            close_code::BAD_REQUEST,
                            "binary frames are not accepted; send JSON text".into(),
                        );
                    }
                    Some(Ok(WsMessage::Pong(_))) => unanswered = 0,
                    // Pings are answered by the WebSocket layer itself.
                    Some(Ok(WsMessage::Ping(_))) => {}
                },
                ev = self.sub.next() => match ev {
                    Some(Ok(ev)) => {
                        let (page, records) = self.page(ev);
                        if let Err(end) = send(&mut socket, self.state.config.slow_consumer_timeout, page).await {
                            break end;
                        }
                        delivered.inc_by(records);
                        self.resume = self.sub.position();
                    }
                    Some(Err(e)) => break End::Close(close_code::INTERNAL, e.to_string()),
                    None => break End::Close(close_code::GOING_AWAY, "broker closed".into()),
                },
                _ = ping.tick() => {
                    if unanswered >= 2 {
                        break End::PeerGone;
                    }
                    unanswered += 1;
                    if let Err(end) = send(&mut socket, self.state.config.slow_consumer_timeout, vec![WsMessage::Ping(Bytes::new())]).await {
                        break end;
                    }
                }
            }
        };
        if let End::Close(code, why) = end {
            let reason = close_reason(&why, self.resume);
            let frame = WsMessage::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            }));
            // The close waits behind what is still buffered; a consumer that
            // is slow, not gone, gets it. Twice the timeout, then drop.
            let grace = self.state.config.slow_consumer_timeout * 2;
            let _ = tokio::time::timeout(grace, socket.send(frame)).await;
        }
    }

    /// The event `first` and what else is ready, up to a page, as frames,
    /// and how many of them are records.
    fn page(&mut self, first: Event) -> (Vec<WsMessage>, u64) {
        let mut frames = Vec::new();
        let mut bytes = 0;
        let mut records = 0;
        let mut next = Some(first);
        while let Some(ev) = next {
            let value = match ev {
                Event::Record(r) => {
                    bytes += r.payload().len();
                    records += 1;
                    serde_json::to_string(&MessageJson::new(&r))
                }
                Event::Gap { from, to } => {
                    serde_json::to_string(&serde_json::json!({ "gap": GapJson { from, to } }))
                }
            };
            if let Ok(text) = value {
                frames.push(WsMessage::Text(text.into()));
            }
            if bytes >= self.state.config.page_bytes {
                break;
            }
            // A read error surfaces on the next poll of the stream.
            next = self.sub.try_next().ok().flatten();
        }
        (frames, records)
    }

    /// Handles one client frame; an error closes the socket.
    /// Runs one client op; a refusal closes the socket with its code.
    fn op(&mut self, text: &str) -> Result<(), (u16, String)> {
        let op = parse_op(text).map_err(|why| (close_code::BAD_REQUEST, why))?;
        if !self.may_publish {
            return Err((
                close_code::FORBIDDEN,
                format!("this token may not publish to {}", self.topic),
            ));
        }
        self.publish(op);
        Ok(())
    }

    /// A publish op: appended, its ack queued in order.
    fn publish(&mut self, op: PublishOp) {
        let PublishOp { id, mut message } = op;
        self.grant.scope_message(&mut message);
        // A refused publish is answered, in order, and the socket stays open.
        let appended = self
            .grant
            .charge_publish(1)
            .and_then(|()| self.state.broker.append(&self.topic, &[message]));
        let ack: Ack = match appended {
            Ok(appended) => Box::pin(async move {
                let r = appended
                    .durable()
                    .await
                    .and_then(|seqs| seqs.first().copied().ok_or(BrokerError::EmptyBatch));
                (id, r)
            }),
            Err(e) => Box::pin(async move { (id, Err(e)) }),
        };
        self.acks.push_back(ack);
    }
}

/// Writes `frames` with one flush, or ends the session: a socket that takes
/// nothing for `timeout` is closed as a slow consumer.
pub(crate) async fn send(
    socket: &mut WebSocket,
    timeout: Duration,
    frames: Vec<WsMessage>,
) -> Result<(), End> {
    let write = async {
        for f in frames {
            socket.feed(f).await?;
        }
        socket.flush().await
    };
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(End::PeerGone),
        Err(_) => Err(End::Close(
            close_code::SLOW_CONSUMER,
            "slow consumer".into(),
        )),
    }
}

fn with_id(mut reply: serde_json::Value, id: Option<serde_json::Value>) -> WsMessage {
    if let (Some(id), Some(obj)) = (id, reply.as_object_mut()) {
        obj.insert("id".into(), id);
    }
    WsMessage::Text(reply.to_string().into())
}

/// The close reason: JSON with the resume seq, within the 123 bytes a close
/// frame allows (the human part is cut to fit).
fn close_reason(why: &str, resume_from: u64) -> String {
    let mut why: String = why.chars().take(80).collect();
    loop {
        let reason = serde_json::json!({ "reason": why, "resume_from": resume_from }).to_string();
        if reason.len() <= 123 || why.is_empty() {
            return reason;
        }
        why.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_close_frame_and_carry_the_seq() {
        let long = "x\"".repeat(200);
        for why in ["slow consumer", long.as_str(), ""] {
            let r = close_reason(why, u64::MAX);
            assert!(r.len() <= 123, "{r}");
            let v: serde_json::Value = serde_json::from_str(&r).unwrap();
            assert_eq!(v["resume_from"], u64::MAX);
        }
    }
}
