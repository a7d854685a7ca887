//! Topic and consumer-group administration (admin tokens):
//! `PUT /topics/{t}` creates a topic with its own settings,
//! `DELETE /topics/{t}` deletes one, `POST /topics/{t}/truncate` applies
//! retention now, `GET /topics/{t}/groups` lists consumer groups and
//! `PUT /topics/{t}/groups/{g}` moves a group's offset to a seq or a time.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::{Admin, Granted};
use super::json;
use super::openapi::{ErrorJson, GroupPath, TopicPath};
use super::topics::TopicJson;
use super::{ApiError, EdgeState, blocking};
use fanlog_broker::TopicOverrides;

/// `PUT /topics/{topic}` with [`TopicOverrides`] as the body: `201` and
/// the topic; `409` when it exists.
#[utoipa::path(
    put,
    path = "/topics/{topic}",
    operation_id = "createTopic",
    tag = "admin",
    params(TopicPath),
    request_body(content = TopicOverrides, description = "The topic's own settings, each optional"),
    responses(
        (status = CREATED, description = "Created", body = TopicJson),
        (status = CONFLICT, description = "The topic exists", body = ErrorJson),
    ),
)]
pub(crate) async fn create(
    State(s): State<EdgeState>,
    granted: Granted<Admin>,
    body: Result<Json<TopicOverrides>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Granted { topic, .. } = granted;
    let Json(settings) = body?;
    // Directories, settings.json and their syncs: off the runtime's threads.
    let info = blocking(move || s.broker.create_topic(&topic, &settings))
        .await?
        .map_err(|e| match e {
            // The only configuration here is the request's: its settings
            // are out of range (found by schemathesis: this was a 500).
            fanlog_broker::BrokerError::Config(why) => {
                ApiError::bad_request(format!("invalid topic settings: {why}"))
            }
            e => ApiError::from(e),
        })?;
    Ok(json::body(StatusCode::CREATED, &TopicJson::from(info)))
}

/// `DELETE /topics/{topic}`: `204`; `409` while hooks deliver the topic
/// (delete them first: their cursors would point into a topic that is
/// gone).
#[utoipa::path(
    delete,
    path = "/topics/{topic}",
    operation_id = "deleteTopic",
    tag = "admin",
    params(TopicPath),
    responses(
        (status = NO_CONTENT, description = "Deleted"),
        (status = CONFLICT, description = "Hooks deliver the topic: delete them first", body = ErrorJson),
    ),
)]
pub(crate) async fn delete(
    State(s): State<EdgeState>,
    granted: Granted<Admin>,
) -> Result<Response, ApiError> {
    let Granted { topic, .. } = granted;
    // Closing the log and removing its directory: off the runtime's threads.
    blocking(move || match &s.hooks {
        Some(hooks) => hooks.delete_topic(&topic).map_err(ApiError::from),
        None => s.broker.delete_topic(&topic).map_err(ApiError::from),
    })
    .await??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TruncateJson {
    /// Remove what lies below this seq (whole segments).
    before: u64,
}

/// `POST /topics/{topic}/truncate` `{"before": SEQ}`: `{"first_seq": N}`.
#[utoipa::path(
    post,
    path = "/topics/{topic}/truncate",
    operation_id = "truncateTopic",
    tag = "admin",
    params(TopicPath),
    request_body = TruncateJson,
    responses((status = OK, description = "Whole segments below `before` removed", body = TruncatedJson)),
)]
pub(crate) async fn truncate(
    State(s): State<EdgeState>,
    granted: Granted<Admin>,
    body: Result<Json<TruncateJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Granted { topic, .. } = granted;
    let Json(b) = body?;
    let broker = s.broker.clone();
    let truncated = topic.clone();
    // Segment removal and its directory sync: off the runtime's threads.
    let first_seq = blocking(move || broker.truncate(&truncated, b.before)).await??;
    Ok(json::body(
        StatusCode::OK,
        &TruncatedJson { topic, first_seq },
    ))
}

/// A truncation's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TruncatedJson {
    topic: String,
    /// The oldest seq still stored.
    first_seq: u64,
}

/// A consumer group.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct GroupJson {
    group: String,
    /// The next seq the group will read.
    committed: u64,
    /// Messages from `committed` to the topic's end.
    lag: u64,
    /// A work-sharing group running now: its figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    shared: Option<fanlog_broker::work::GroupInfo>,
}

/// `GET /topics/{topic}/groups`: every consumer group, with its lag.
#[utoipa::path(
    get,
    path = "/topics/{topic}/groups",
    operation_id = "listGroups",
    tag = "admin",
    params(TopicPath),
    responses((status = OK, description = "Every consumer group of the topic, with its lag", body = [GroupJson])),
)]
pub(crate) async fn groups(
    State(s): State<EdgeState>,
    granted: Granted<Admin>,
) -> Result<Response, ApiError> {
    let Granted { topic, .. } = granted;
    let next = s.broker.topic_info(&topic)?.next_seq;
    let mut shared: std::collections::HashMap<String, _> = fanlog_broker::work::running(&s.broker)
        .into_iter()
        .map(|g| g.info())
        .filter(|i| i.topic == topic)
        .map(|i| (i.group.clone(), i))
        .collect();
    let mut groups: Vec<GroupJson> = s
        .broker
        .groups(&topic)?
        .into_iter()
        .map(|(g, committed)| GroupJson {
            group: g.to_string(),
            committed,
            lag: next.saturating_sub(committed),
            shared: shared.remove(g.as_str()),
        })
        .collect();
    // Running shared groups that committed nothing yet.
    groups.extend(shared.into_values().map(|i| GroupJson {
        group: i.group.clone(),
        committed: i.floor,
        lag: next.saturating_sub(i.floor),
        shared: Some(i),
    }));
    groups.sort_by(|a, b| a.group.cmp(&b.group));
    Ok(json::body(StatusCode::OK, &groups))
}

/// One of `seq` and `time`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResetJson {
    /// A seq, or ...
    seq: Option<u64>,
    /// ... an RFC 3339 time: the first message at or after it.
    time: Option<String>,
}

/// `PUT /topics/{topic}/groups/{group}` `{"seq": N}` or `{"time": T}`:
/// moves the group's offset (back to re-read, ahead to skip).
#[utoipa::path(
    put,
    path = "/topics/{topic}/groups/{group}",
    operation_id = "resetGroup",
    tag = "admin",
    params(GroupPath),
    request_body = ResetJson,
    responses((status = OK, description = "The group's offset moved", body = GroupJson)),
)]
pub(crate) async fn reset(
    State(s): State<EdgeState>,
    granted: Granted<Admin>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<ResetJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Granted { topic, .. } = granted;
    let Path((_, group)) = path?;
    let Json(b) = body?;
    s.broker.ready(&topic, false).await?;
    let seq = match (b.seq, b.time.as_deref()) {
        (Some(seq), None) => seq,
        (None, Some(t)) => s.broker.seek_time(&topic, json::parse_time(t)?)?,
        _ => return Err(ApiError::bad_request("give one of seq and time")),
    };
    s.broker.commit(&topic, &group, seq).await?;
    let next = s.broker.topic_info(&topic)?.next_seq;
    Ok(json::body(
        StatusCode::OK,
        &GroupJson {
            group,
            committed: seq,
            lag: next.saturating_sub(seq),
            shared: None,
        },
    ))
}
