//! REST routes over topics: publish, list, info, paged read.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use fanlog_protocol::{Header, Message, RecordMeta};
use serde::{Deserialize, Serialize};

use super::auth::{Granted, Publish, Read, See};
use super::json::{self, GapJson, Page};
use super::{ApiError, EdgeState};
use crate::cloudevents;
use fanlog_broker::StartFrom;
use fanlog_broker::TopicInfo;

#[derive(Serialize)]
pub(crate) struct TopicJson {
    name: String,
    first_seq: u64,
    next_seq: u64,
    bytes: u64,
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
pub(crate) async fn publish(
    State(s): State<EdgeState>,
    granted: Granted<Publish>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Granted { topic, caller, .. } = granted;
    let body = body?;
    let text = |name: header::HeaderName| -> Result<Option<String>, ApiError> {
        headers
            .get(&name)
            .map(|v| {
                v.to_str().map(str::to_owned).map_err(|_| {
                    ApiError::bad_request(format!("header {name} is not visible ASCII"))
                })
            })
            .transpose()
    };
    let content_type = text(header::CONTENT_TYPE)?;
    let idempotency_key =
        text(header::HeaderName::from_static("idempotency-key"))?.map(String::into_bytes);
    let (payload, content_type, headers) = cloud_event(&headers, content_type, body)?;
    let mut message = Message {
        payload,
        meta: RecordMeta {
            content_type,
            headers,
            idempotency_key,
        },
        ..Message::default()
    };
    caller.grant.scope_message(&mut message);
    let seq = s.broker.publish(&topic, message).await?;
    Ok(json::body(
        StatusCode::CREATED,
        &serde_json::json!({ "topic": topic, "seq": seq }),
    ))
}

/// A CloudEvent in structured mode (`application/cloudevents+json`) or
/// binary mode (`ce-*` headers) is validated and stored in binary form; any
/// other body is stored as it is.
fn cloud_event(
    headers: &HeaderMap,
    content_type: Option<String>,
    body: Bytes,
) -> Result<(Bytes, Option<String>, Vec<Header>), ApiError> {
    let media = content_type
        .as_deref()
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    match media.as_deref() {
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

#[derive(Deserialize)]
pub(crate) struct ReadQuery {
    from: Option<u64>,
    from_time: Option<String>,
    limit: Option<usize>,
}

/// `GET /topics/{topic}/messages?from=N&limit=K`: a page of stored
/// messages from `from` (default: the earliest) or from the first message
/// at or after `from_time`, with the seq to ask next.
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
