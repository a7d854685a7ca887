//! REST routes over topics: publish, list, info, paged read.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use fanlog_protocol::{Header, Message, RecordMeta};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::{Granted, Publish, PublishBatch, Read, See};
use super::json::{self, GapJson, Page};
use super::openapi::{ErrorJson, TopicPath};
use super::{ApiError, EdgeState};
use crate::cloudevents;
use fanlog_broker::StartFrom;
use fanlog_broker::TopicInfo;

/// A topic.
#[derive(Serialize, ToSchema)]
pub(crate) struct TopicJson {
    name: String,
    /// The oldest seq still stored.
    first_seq: u64,
    /// The seq the next message will get.
    next_seq: u64,
    /// Bytes stored.
    bytes: u64,
}

/// A message's payload: any bytes.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // described, not extracted: the handler reads the body
pub(crate) struct Payload(Vec<u8>);

/// A CloudEvent 1.0 in structured mode; other (extension) attributes
/// may follow.
#[derive(ToSchema)]
#[allow(dead_code)] // described, not extracted: `cloudevents` reads the body
pub(crate) struct CloudEventJson {
    /// `1.0`.
    specversion: String,
    id: String,
    /// A URI reference.
    source: String,
    #[schema(rename = "type")]
    kind: String,
    datacontenttype: Option<String>,
    subject: Option<String>,
    /// RFC 3339.
    time: Option<String>,
    /// The data, as JSON (or a string), ...
    data: Option<serde_json::Value>,
    /// ... or as base64.
    data_base64: Option<String>,
}

/// A publish's answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct PublishedJson {
    topic: String,
    /// The message's seq.
    seq: u64,
}

impl From<TopicInfo> for TopicJson {
    fn from(t: TopicInfo) -> Self {
        Self {
            name: t.name.to_string(),
            first_seq: t.first_seq,
            next_seq: t.next_seq,
            bytes: t.bytes,
        }
    }
}

/// `GET /topics`
#[utoipa::path(
    get,
    path = "/topics",
    operation_id = "listTopics",
    tag = "topics",
    responses((status = OK, description = "The topics the caller may see", body = [TopicJson])),
)]
pub(crate) async fn list(
    State(s): State<EdgeState>,
    axum::Extension(caller): axum::Extension<super::auth::Caller>,
) -> Response {
    let topics: Vec<TopicJson> = s
        .broker
        .topics()
        .into_iter()
        .filter(|t| caller.grant.can_see(t.name.as_str()))
        .map(Into::into)
        .collect();
    json::body(StatusCode::OK, &topics)
}

/// `GET /topics/{topic}`
/// The topic URL of WebSub: its `Link` headers name the hub and the topic
/// (discovery).
#[utoipa::path(
    get,
    path = "/topics/{topic}",
    operation_id = "getTopic",
    tag = "topics",
    params(TopicPath),
    responses((status = OK, description = "The topic; `Link` headers name its WebSub hub", body = TopicJson)),
)]
pub(crate) async fn info(
    State(s): State<EdgeState>,
    granted: Granted<See>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Granted { topic, .. } = granted;
    let info = s.broker.topic_info(&topic)?;
    let mut response = json::body(StatusCode::OK, &TopicJson::from(info));
    if let Some(links) = super::hooks::discovery_links(&s, &headers, &topic) {
        response.headers_mut().insert(header::LINK, links);
    }
    Ok(response)
}

/// `POST /topics/{topic}/messages`: the body is the payload; the request's
/// `Content-Type` is kept; `Idempotency-Key` makes a retry append nothing.
/// Answers once the message is as durable as the topic's mode promises.
#[utoipa::path(
    post,
    path = "/topics/{topic}/messages",
    operation_id = "publishMessage",
    tag = "topics",
    params(
        TopicPath,
        ("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key appends nothing and answers the first seq"),
    ),
    request_body(
        description = "The payload, any bytes; its content type is kept. `application/cloudevents+json` (structured) or `ce-*` headers (binary) make it a CloudEvent, validated",
        // Any other content type is taken as it is, like octet-stream. Not
        // required: an empty body is an empty message (see `openapi.rs`).
        content(
            (Payload = "application/octet-stream"),
            (CloudEventJson = "application/cloudevents+json"),
        ),
    ),
    responses(
        (status = CREATED, description = "Stored, as durable as the topic's mode promises", body = PublishedJson),
        (status = UNPROCESSABLE_ENTITY, description = "The idempotency key was used for another message", body = ErrorJson),
        (status = TOO_MANY_REQUESTS, description = "Over the token's publish rate; `Retry-After` says when", body = ErrorJson),
    ),
)]
pub(crate) async fn publish(
    State(s): State<EdgeState>,
    granted: Granted<Publish>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Granted { topic, caller, .. } = granted;
    let body = body?;
    let content_type = header_text(&headers, &header::CONTENT_TYPE)?;
    let idempotency_key = header_text(&headers, &IDEMPOTENCY_KEY)?.map(String::into_bytes);
    let (payload, content_type, headers) = cloud_event(&headers, content_type, body)?;
    let mut message = message(payload, content_type, headers);
    message.meta.idempotency_key = idempotency_key;
    caller.grant.scope_message(&mut message);
    let seq = s.broker.publish(&topic, message).await?;
    Ok(json::body(
        StatusCode::CREATED,
        &PublishedJson { topic, seq },
    ))
}

/// One message of a batch: the fields of a WebSocket publish op.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchEntryJson {
    /// The payload: a string is its UTF-8 bytes (or, with `encoding`, the
    /// bytes its base64 encodes); any other JSON value is stored as its
    /// text, `application/json` unless `content_type` says otherwise.
    #[schema(required = true)]
    #[serde(default, deserialize_with = "json::present")]
    data: Option<serde_json::Value>,
    /// Kept with the message.
    content_type: Option<String>,
    /// `base64` when `data` is base64.
    encoding: Option<String>,
    /// A retry with the same key appends nothing and answers the first
    /// seq; default: the request's `Idempotency-Key`, then `:` and the
    /// message's index.
    idempotency_key: Option<String>,
}

/// A batch to publish, in order.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchJson {
    /// At least one, at most 10,000, in at most the request body limit.
    messages: Vec<BatchEntryJson>,
}

/// A batch's answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct PublishedBatchJson {
    topic: String,
    /// Each message's seq, in the batch's order.
    seqs: Vec<u64>,
}

/// Most messages in one batch.
const MAX_BATCH: usize = 10_000;

/// `POST /topics/{topic}/batch`: many messages in one request, appended in
/// order with one append (and under `--fsync always` one sync), answered
/// with every seq. The body is `{"messages": [...]}`.
#[utoipa::path(
    post,
    path = "/topics/{topic}/batch",
    operation_id = "publishBatch",
    tag = "topics",
    params(
        TopicPath,
        ("Idempotency-Key" = Option<String>, Header, description = "Gives message i without its own key the key `KEY:i`, so a retry of the whole batch appends nothing twice"),
    ),
    request_body(content = BatchJson, description = "The messages, in order", content_type = "application/json"),
    responses(
        (status = CREATED, description = "Every message stored, as durable as the topic's mode promises", body = PublishedBatchJson),
        (status = UNPROCESSABLE_ENTITY, description = "An idempotency key was used for another message; the messages before it may be stored (a retry under the same keys answers their seqs)", body = ErrorJson),
        (status = TOO_MANY_REQUESTS, description = "Over the token's publish rate; `Retry-After` says when", body = ErrorJson),
    ),
)]
pub(crate) async fn publish_batch(
    State(s): State<EdgeState>,
    granted: Granted<PublishBatch>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Granted { topic, caller, .. } = granted;
    let body = body?;
    let key = header_text(&headers, &IDEMPOTENCY_KEY)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if media_type(content_type).as_deref() != Some("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a batch is application/json: {\"messages\": [...]}",
        ));
    }
    let batch: BatchJson = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("bad batch: {e}")))?;
    let n = batch.messages.len();
    if n == 0 || n > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "a batch holds 1 to {MAX_BATCH} messages, not {n}"
        )));
    }
    let messages = batch
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let (payload, content_type) =
                json::payload(m.data, m.encoding.as_deref(), m.content_type)
                    .map_err(|e| ApiError::bad_request(format!("message {i}: {e}")))?;
            let mut message = message(payload, content_type, Vec::new());
            message.meta.idempotency_key = m
                .idempotency_key
                .or_else(|| key.as_ref().map(|k| format!("{k}:{i}")))
                .map(String::into_bytes);
            caller.grant.scope_message(&mut message);
            Ok(message)
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    caller.grant.charge_publish(messages.len())?;
    let seqs = s.broker.publish_batch(&topic, &messages).await?;
    Ok(json::body(
        StatusCode::CREATED,
        &PublishedBatchJson { topic, seqs },
    ))
}

const IDEMPOTENCY_KEY: header::HeaderName = header::HeaderName::from_static("idempotency-key");

/// A header's value as text, when the request has it.
fn header_text(headers: &HeaderMap, name: &header::HeaderName) -> Result<Option<String>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| ApiError::bad_request(format!("header {name} is not visible ASCII")))
        })
        .transpose()
}

/// A content type's media type, lowercased, without its parameters.
fn media_type(content_type: Option<&str>) -> Option<String> {
    content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
}

/// A message to publish.
fn message(payload: Bytes, content_type: Option<String>, headers: Vec<Header>) -> Message {
    Message {
        payload,
        meta: RecordMeta {
            content_type,
            headers,
            idempotency_key: None,
        },
        ..Message::default()
    }
}

/// A CloudEvent in structured mode (`application/cloudevents+json`) or
/// binary mode (`ce-*` headers) is validated and stored in binary form; any
/// other body is stored as it is.
fn cloud_event(
    headers: &HeaderMap,
    content_type: Option<String>,
    body: Bytes,
) -> Result<(Bytes, Option<String>, Vec<Header>), ApiError> {
    match media_type(content_type.as_deref()).as_deref() {
        Some(cloudevents::STRUCTURED) => {
            let e = cloudevents::from_structured(&body).map_err(ApiError::bad_request)?;
            return Ok((e.data, e.content_type, e.headers));
        }
        Some(cloudevents::BATCH) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "publish the events of a batch one by one",
            ));
        }
        _ => {}
    }
    let mut ce = Vec::new();
    for (name, value) in headers {
        if let Some(attr) = name.as_str().strip_prefix(cloudevents::PREFIX) {
            let value = value.to_str().map_err(|_| {
                ApiError::bad_request(format!("header {name} is not visible ASCII"))
            })?;
            ce.push((format!("{}{attr}", cloudevents::PREFIX), value.to_owned()));
        }
    }
    if ce.is_empty() {
        return Ok((body, content_type, Vec::new()));
    }
    let stored = cloudevents::from_binary(&ce).map_err(ApiError::bad_request)?;
    Ok((body, content_type, stored))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReadQuery {
    /// The first seq (default: the earliest stored).
    from: Option<u64>,
    /// Instead of `from`: the first message at or after this RFC 3339 time.
    from_time: Option<String>,
    /// Messages at most (default 100, at most 1000).
    limit: Option<usize>,
}

/// `GET /topics/{topic}/messages?from=N&limit=K`: a page of stored
/// messages from `from` (default: the earliest) or from the first message
/// at or after `from_time`, with the seq to ask next.
#[utoipa::path(
    get,
    path = "/topics/{topic}/messages",
    operation_id = "readMessages",
    tag = "topics",
    params(TopicPath, ReadQuery),
    responses((status = OK, description = "A page of stored messages and the seq to ask next", body = Page)),
)]
pub(crate) async fn read(
    State(s): State<EdgeState>,
    granted: Granted<Read>,
    query: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Granted { topic, .. } = granted;
    let Query(q) = query?;
    // An idle topic is reopened on the blocking pool, not on this thread.
    s.broker.ready(&topic, false).await?;
    let info = s.broker.topic_info(&topic)?;
    let from = match json::start_from(q.from, q.from_time.as_deref(), StartFrom::Earliest)? {
        StartFrom::Seq(seq) => seq,
        StartFrom::Time(ts) => s.broker.seek_time(&topic, ts)?,
        _ => info.first_seq,
    };
    let limit = json::page_limit(q.limit);
    s.broker.warm(&topic, from).await?;
    let batch = s.broker.read_verified(&topic, from, limit)?;
    let mut page = Page::empty(batch.gap.map_or(from, |(_, to)| to));
    page.gap = batch.gap.map(|(from, to)| GapJson { from, to });
    let mut bytes = 0;
    for r in &batch.records {
        if !page.push(r, limit, s.config.page_bytes, &mut bytes) {
            break;
        }
    }
    Ok(json::body(StatusCode::OK, &page))
}
