//! Work-sharing groups over HTTP (issue 17), for any language: fetch a
//! batch with a wait, ack, nack and the group's figures, with subscribe
//! rights on the topic.
//!
//! - `POST /topics/{topic}/shared/{group}/fetch?worker=W&max=N&wait=5s`
//!   (options when the request opens the group: `ack_wait`, `max_deliver`,
//!   `max_inflight`, `key_order`, `dead_letter`) answers
//!   `{"worker": W, "messages": [...]}`, each message with its
//!   `deliveries` and `key`. Without `worker`, a new name is made and
//!   answered: later requests name it.
//! - `POST .../ack?worker=W` with `{"seqs": [..]}`: 204, or 409 for a seq
//!   the worker does not hold (any more).
//! - `POST .../nack?worker=W` with `{"seq": S, "delay": "1s", "error": ".."}`.
//! - `GET /topics/{topic}/shared/{group}`: the group's figures.
//!
//! A worker is a name: one that asks for nothing during twice the ack wait
//! (at least a minute) leaves, and what it held goes to others.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::{Granted, Read};
use super::json::{self, MessageJson};
use super::openapi::{ErrorJson, GroupPath};
use super::{ApiError, EdgeState};
use crate::MetricsExt;
use fanlog_broker::shared::SharedOptions;
use fanlog_broker::work::GroupInfo;
use fanlog_broker::work::{Job, SharedGroup};
use utoipa::{IntoParams, ToSchema};

/// The longest a fetch waits.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Records one fetch answers at most.
const MAX_BATCH: usize = 1000;

/// A group's options as query parameters: each one given must match a
/// running group's.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct OptionsQuery {
    /// How long a worker has to acknowledge a job (`30s`, `500ms`;
    /// default 30s, at least 10ms).
    ack_wait: Option<String>,
    /// Deliveries of one job before its next failure sets it aside
    /// (default 5, at least 1).
    max_deliver: Option<u32>,
    /// Jobs one worker holds at most (default 100, at least 1).
    max_inflight: Option<usize>,
    /// Jobs of one key go to one worker at a time, in seq order.
    key_order: Option<bool>,
    /// The topic dead jobs go to (default `{topic}.dead`).
    dead_letter: Option<String>,
}

impl OptionsQuery {
    /// The options asked for, over the defaults; `None` when none is given.
    pub(crate) fn options(&self) -> Result<Option<SharedOptions>, ApiError> {
        if self.ack_wait.is_none()
            && self.max_deliver.is_none()
            && self.max_inflight.is_none()
            && self.key_order.is_none()
        {
            return Ok(None);
        }
        let d = SharedOptions::default();
        let ack_wait = match &self.ack_wait {
            Some(t) => parse_duration("ack_wait", t)?,
            None => d.ack_wait,
        };
        if ack_wait < Duration::from_millis(10) {
            return Err(ApiError::bad_request("ack_wait must be at least 10ms"));
        }
        let max_deliver = self.max_deliver.unwrap_or(d.max_deliver);
        let max_inflight = self.max_inflight.unwrap_or(d.max_inflight);
        if max_deliver == 0 || max_inflight == 0 {
            return Err(ApiError::bad_request(
                "max_deliver and max_inflight must be at least 1",
            ));
        }
        Ok(Some(SharedOptions {
            ack_wait,
            max_deliver,
            max_inflight: max_inflight.min(100_000),
            key_order: self.key_order.unwrap_or(d.key_order),
        }))
    }
}

pub(crate) fn parse_duration(what: &str, t: &str) -> Result<Duration, ApiError> {
    humantime::parse_duration(t).map_err(|e| {
        ApiError::bad_request(format!(
            "{what} {t:?} is not a duration such as \"500ms\" or \"30s\": {e}"
        ))
    })
}

/// The fetch's own parameters and the group's options (not flattened:
/// serde's flatten loses the query string's number types).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FetchQuery {
    /// The worker's name (1 to 64 of `A-Z a-z 0-9 - _ .`); one is made
    /// up and answered when none is given.
    #[param(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    worker: Option<String>,
    /// Jobs at most (default 10, at most 1000).
    max: Option<usize>,
    /// How long to wait for a first job (`5s`; default 0, at most 60s).
    wait: Option<String>,
    /// As in the group's options.
    ack_wait: Option<String>,
    max_deliver: Option<u32>,
    max_inflight: Option<usize>,
    key_order: Option<bool>,
    dead_letter: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WorkerQuery {
    /// The worker that holds the jobs.
    #[param(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    worker: String,
}

/// A record handed to a worker, as JSON.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobJson {
    #[serde(flatten)]
    message: MessageJson,
    deliveries: u32,
    /// The record's key (lossy UTF-8), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

impl JobJson {
    pub(crate) fn new(j: &Job) -> Self {
        let key = j.record.key();
        Self {
            message: MessageJson::new(&j.record),
            deliveries: j.deliveries,
            key: (!key.is_empty()).then(|| String::from_utf8_lossy(key).into_owned()),
        }
    }
}

/// A fetch's answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FetchedJson {
    worker: String,
    messages: Vec<JobJson>,
}

/// `{"seqs": [..]}` acknowledges those; `{"upto": N}` every record the
/// worker holds below N (a range).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AckJson {
    #[serde(default)]
    seqs: Vec<u64>,
    upto: Option<u64>,
}

/// Settles what an ack names.
async fn ack_json(w: &fanlog_broker::work::Worker, b: AckJson) -> Result<(), ApiError> {
    match (b.seqs.is_empty(), b.upto) {
        (false, None) => Ok(w.ack_all(&b.seqs).await?),
        (true, Some(upto)) => Ok(w.ack_below(upto).await.map(drop)?),
        _ => Err(ApiError::bad_request("give one of seqs and upto")),
    }
}

/// A job given back: handed out again after `delay`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NackJson {
    seq: u64,
    /// `1s`, `500ms` (default 0).
    #[serde(default)]
    delay: Option<String>,
    /// Why, kept with a dead job.
    #[serde(default)]
    error: Option<String>,
}

/// Worker names: what a topic name may hold, up to 64 bytes.
fn check_worker(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "worker {name:?} is not 1 to 64 of A-Z a-z 0-9 - _ ."
        )))
    }
}

/// The running group (or the one opened now, made if the caller may).
pub(crate) async fn group(
    s: &EdgeState,
    granted: &Granted<Read>,
    group: &str,
    options: &OptionsQuery,
) -> Result<SharedGroup, ApiError> {
    fanlog_broker::GroupName::new(group).map_err(fanlog_broker::BrokerError::from)?;
    let topic = &granted.topic;
    let create = s
        .broker
        .creates_on_subscribe(granted.caller.may_publish(topic));
    s.broker.ready(topic, create).await?;
    Ok(SharedGroup::open_async(
        &s.broker,
        topic,
        group,
        options.options()?,
        options.dead_letter.as_deref(),
        fanlog_broker::work::LEASE_TTL + Duration::from_secs(2),
    )
    .await?)
}

fn group_of(path: Result<Path<(String, String)>, PathRejection>) -> Result<String, ApiError> {
    let Path((_, group)) = path?;
    Ok(group)
}

/// `POST /topics/{topic}/shared/{group}/fetch`
#[utoipa::path(
    post,
    path = "/topics/{topic}/shared/{group}/fetch",
    operation_id = "fetchJobs",
    tag = "work",
    params(GroupPath, FetchQuery),
    responses(
        (status = OK, description = "Jobs handed to the worker, each to be acknowledged within the group's ack wait", body = FetchedJson),
        (status = CONFLICT, description = "The options differ from the running group's", body = ErrorJson),
    ),
)]
pub(crate) async fn fetch(
    State(s): State<EdgeState>,
    granted: Granted<Read>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<FetchQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let name = group_of(path)?;
    let Query(q) = query?;
    let worker = match q.worker {
        Some(w) => {
            check_worker(&w)?;
            w
        }
        None => format!("w{:016x}", rand::random::<u64>()),
    };
    let wait = match &q.wait {
        Some(t) => parse_duration("wait", t)?.min(MAX_WAIT),
        None => Duration::ZERO,
    };
    let max = q.max.unwrap_or(10).clamp(1, MAX_BATCH);
    let options = OptionsQuery {
        ack_wait: q.ack_wait,
        max_deliver: q.max_deliver,
        max_inflight: q.max_inflight,
        key_order: q.key_order,
        dead_letter: q.dead_letter,
    };
    let g = group(&s, &granted, &name, &options).await?;
    let member = g.named(&worker);
    let jobs = tokio::select! {
        jobs = member.fetch(max, wait) => jobs?,
        () = s.shutdown.cancelled() => Vec::new(),
    };
    s.broker
        .metrics()
        .delivery_counter("work")
        .inc_by(jobs.len() as u64);
    let body = FetchedJson {
        worker,
        messages: jobs.iter().map(JobJson::new).collect(),
    };
    Ok(json::body(StatusCode::OK, &body))
}

/// `POST /topics/{topic}/shared/{group}/ack`
#[utoipa::path(
    post,
    path = "/topics/{topic}/shared/{group}/ack",
    operation_id = "ackJobs",
    tag = "work",
    params(GroupPath, WorkerQuery),
    request_body = AckJson,
    responses(
        (status = NO_CONTENT, description = "Settled, durably"),
        (status = CONFLICT, description = "The worker does not hold a job named", body = ErrorJson),
    ),
)]
pub(crate) async fn ack(
    State(s): State<EdgeState>,
    granted: Granted<Read>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<WorkerQuery>, QueryRejection>,
    body: Result<Json<AckJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let name = group_of(path)?;
    let Query(q) = query?;
    let Json(b) = body?;
    check_worker(&q.worker)?;
    let g = group(&s, &granted, &name, &OptionsQuery::default()).await?;
    ack_json(&g.named(&q.worker), b).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /topics/{topic}/shared/{group}/nack`
#[utoipa::path(
    post,
    path = "/topics/{topic}/shared/{group}/nack",
    operation_id = "nackJob",
    tag = "work",
    params(GroupPath, WorkerQuery),
    request_body = NackJson,
    responses(
        (status = NO_CONTENT, description = "Handed out again after the delay (or set aside past max_deliver)"),
        (status = CONFLICT, description = "The worker does not hold that job", body = ErrorJson),
    ),
)]
pub(crate) async fn nack(
    State(s): State<EdgeState>,
    granted: Granted<Read>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<WorkerQuery>, QueryRejection>,
    body: Result<Json<NackJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let name = group_of(path)?;
    let Query(q) = query?;
    let Json(b) = body?;
    check_worker(&q.worker)?;
    let delay = match &b.delay {
        Some(t) => parse_duration("delay", t)?,
        None => Duration::ZERO,
    };
    let g = group(&s, &granted, &name, &OptionsQuery::default()).await?;
    g.named(&q.worker)
        .nack(b.seq, delay, b.error.as_deref().unwrap_or("nacked"))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /topics/{topic}/shared/{group}`
#[utoipa::path(
    get,
    path = "/topics/{topic}/shared/{group}",
    operation_id = "getSharedGroup",
    tag = "work",
    params(GroupPath),
    responses((status = OK, description = "The work-sharing group's figures (opened if it was not running)", body = GroupInfo)),
)]
pub(crate) async fn info(
    State(s): State<EdgeState>,
    granted: Granted<Read>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let name = group_of(path)?;
    let g = group(&s, &granted, &name, &OptionsQuery::default()).await?;
    Ok(json::body(StatusCode::OK, &g.info()))
}

/// Ops a WebSocket worker sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum WorkOp {
    Ack {
        #[serde(default)]
        seqs: Vec<u64>,
        upto: Option<u64>,
    },
    Nack {
        seq: u64,
        #[serde(default)]
        delay: Option<String>,
        #[serde(default)]
        error: Option<String>,
    },
}

/// `GET /topics/{topic}/shared/{group}/ws`: a worker over a WebSocket, for
/// browsers and scripts. The broker sends each record handed to it as a
/// text frame (a message with `deliveries` and `key`) while it holds fewer
/// than `max_inflight`; the worker sends `{"op": "ack", "seqs": [..]}`,
/// answered `{"op": "acked", "seqs": [..]}` once durable, and
/// `{"op": "nack", "seq": S, "delay"?: "1s", "error"?: ".."}`, answered
/// `{"op": "nacked", "seq": S}`. A refused op is answered
/// `{"op": "error", "error": "..", "seq"?: S}`; a frame that is no op
/// closes the socket with 4400. When the socket closes, what the worker
/// held goes to others at once.
#[utoipa::path(
    get,
    path = "/topics/{topic}/shared/{group}/ws",
    operation_id = "workWebSocket",
    tag = "work",
    params(GroupPath, OptionsQuery),
    responses(
        (status = SWITCHING_PROTOCOLS, description = "A worker over a WebSocket: jobs as text frames; `ack` and `nack` ops"),
        (status = UPGRADE_REQUIRED, description = "Not a WebSocket handshake", body = ErrorJson),
        (status = METHOD_NOT_ALLOWED, description = "Not a WebSocket handshake", body = ErrorJson),
        (status = CONFLICT, description = "The options differ from the running group's", body = ErrorJson),
    ),
)]
pub(crate) async fn upgrade(
    State(s): State<EdgeState>,
    granted: Granted<Read>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<OptionsQuery>, QueryRejection>,
    ws: Result<
        axum::extract::WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> Result<Response, ApiError> {
    let name = group_of(path)?;
    let Query(q) = query?;
    let ws = ws.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let g = group(&s, &granted, &name, &q).await?;
    Ok(ws
        .max_message_size(64 << 10)
        .max_frame_size(64 << 10)
        .read_buffer_size(super::ws::WS_READ_BUFFER)
        .on_upgrade(move |socket| work_socket(s, g, socket)))
}

type Fetching =
    std::pin::Pin<Box<dyn std::future::Future<Output = fanlog_broker::Result<Vec<Job>>> + Send>>;

fn fetching(w: &std::sync::Arc<fanlog_broker::work::Worker>, room: usize) -> Fetching {
    let w = w.clone();
    Box::pin(async move { w.next_jobs(room, Duration::from_secs(30)).await })
}

async fn work_socket(s: EdgeState, g: SharedGroup, mut socket: axum::extract::ws::WebSocket) {
    use super::ws::{End, close_code, send};
    use axum::extract::ws::{CloseFrame, Message as WsMessage};
    use futures_util::StreamExt;

    let worker = std::sync::Arc::new(g.join());
    let room = g.options().max_inflight.min(MAX_BATCH);
    let timeout = s.config.slow_consumer_timeout;
    let mut next = fetching(&worker, room);
    let text = |v: serde_json::Value| WsMessage::Text(v.to_string().into());
    let end = loop {
        tokio::select! {
            jobs = &mut next => {
                let jobs = match jobs {
                    Ok(jobs) => jobs,
                    Err(e) => break End::Close(close_code::INTERNAL, e.to_string()),
                };
                next = fetching(&worker, room);
                s.broker.metrics().delivery_counter("work").inc_by(jobs.len() as u64);
                let frames = jobs
                    .iter()
                    .map(|j| WsMessage::Text(serde_json::to_string(&JobJson::new(j)).unwrap_or_default().into()))
                    .collect();
                if let Err(end) = send(&mut socket, timeout, frames).await {
                    break end;
                }
            }
            msg = socket.next() => {
                let t = match msg {
                    Some(Ok(WsMessage::Text(t))) => t,
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                    Some(Ok(WsMessage::Binary(_))) => {
                        break End::Close(close_code::BAD_REQUEST, "ops are JSON text frames".into())
                    }
                    Some(Ok(WsMessage::Close(_)) | Err(_)) | None => break End::PeerGone,
                };
                let reply = match serde_json::from_str::<WorkOp>(&t) {
                    Err(e) => break End::Close(close_code::BAD_REQUEST, format!("not an op: {e}")),
                    Ok(WorkOp::Ack { seqs, upto: None }) => match worker.ack_all(&seqs).await {
                        Ok(()) => serde_json::json!({ "op": "acked", "seqs": seqs }),
                        Err(e) => op_error(&e),
                    },
                    Ok(WorkOp::Ack { seqs, upto: Some(upto) }) if seqs.is_empty() => {
                        match worker.ack_below(upto).await {
                            Ok(n) => serde_json::json!({ "op": "acked", "upto": upto, "count": n }),
                            Err(e) => op_error(&e),
                        }
                    }
                    Ok(WorkOp::Ack { .. }) => {
                        break End::Close(close_code::BAD_REQUEST, "an ack gives one of seqs and upto".into())
                    }
                    Ok(WorkOp::Nack { seq, delay, error }) => {
                        let delay = match delay.as_deref().map(|d| parse_duration("delay", d)).transpose() {
                            Ok(d) => d.unwrap_or(Duration::ZERO),
                            Err(e) => {
                                let reply = serde_json::json!({ "op": "error", "error": e.message(), "seq": seq });
                                if let Err(end) = send(&mut socket, timeout, vec![text(reply)]).await {
                                    break end;
                                }
                                continue;
                            }
                        };
                        match worker.nack(seq, delay, error.as_deref().unwrap_or("nacked")).await {
                            Ok(()) => serde_json::json!({ "op": "nacked", "seq": seq }),
                            Err(e) => op_error(&e),
                        }
                    }
                };
                if let Err(end) = send(&mut socket, timeout, vec![text(reply)]).await {
                    break end;
                }
            }
            () = s.shutdown.cancelled() => break End::Close(close_code::GOING_AWAY, "shutting down".into()),
        }
    };
    if let End::Close(code, reason) = end {
        let reason: String = reason.chars().take(120).collect();
        let _ = tokio::time::timeout(
            timeout,
            socket.send(WsMessage::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            }))),
        )
        .await;
    }
}

fn op_error(e: &fanlog_broker::BrokerError) -> serde_json::Value {
    match e {
        fanlog_broker::BrokerError::NotHeld { seq } => {
            serde_json::json!({ "op": "error", "error": e.to_string(), "seq": seq })
        }
        _ => serde_json::json!({ "op": "error", "error": e.to_string() }),
    }
}
