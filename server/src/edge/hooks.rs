//! REST Hooks (`POST /hooks`, `GET /hooks`, `GET /hooks/{id}`,
//! `DELETE /hooks/{id}`) and the WebSub hub (`POST /websub`), over
//! [`crate::hooks::Hooks`].

use std::collections::HashMap;

use axum::extract::rejection::{FormRejection, JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde::Deserialize;

use super::auth::Caller;
use super::json;
use super::openapi::HookPath;
use super::{ApiError, EdgeState, blocking};
use crate::hooks::HookView;
use crate::hooks::{Delivery, HookError, HookUpdate, Hooks, NewHook, WebSubRequest};
use serde::Serialize;
use utoipa::ToSchema;

/// A webhook to make.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateJson {
    topic: String,
    /// Where deliveries are POSTed (`http` or `https`).
    url: String,
    /// The signing secret (`whsec_...`); one is made when none is given.
    secret: Option<String>,
    /// The first seq to deliver (default: what is published from now on).
    from: Option<u64>,
    #[serde(default)]
    delivery: Delivery,
    /// The CloudEvents types delivered (all when empty).
    #[serde(default)]
    types: Vec<String>,
    /// Deliveries per second at most.
    rate_limit: Option<f64>,
    /// Verify the receiver first (a signed `webhook.verify` request it
    /// must answer with 2xx).
    #[serde(default)]
    handshake: bool,
    /// `topic` (default) or `key`: per-key lanes.
    ordering: Option<String>,
    /// Deliveries at once with `ordering: key` (default 8).
    parallelism: Option<u32>,
    /// Set aside a message still failing after the retry schedule.
    #[serde(default)]
    dead_letter: bool,
}

/// A hook's change.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchJson {
    /// `active` or `disabled`.
    state: Option<String>,
    /// Deliveries per second; `null` removes the limit.
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<f64>)]
    rate_limit: Option<Option<f64>>,
}

/// Tells a field given as `null` from a missing one.
fn some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<f64>>, D::Error> {
    Option::<f64>::deserialize(d).map(Some)
}

/// A new secret (or one made up).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateJson {
    secret: Option<String>,
    /// How long the old secret keeps signing (default one day).
    grace_seconds: Option<u64>,
}

impl From<HookError> for ApiError {
    fn from(e: HookError) -> Self {
        match e {
            HookError::Invalid(m) => Self::bad_request(m),
            HookError::NotFound(_) => Self::new(StatusCode::NOT_FOUND, e.to_string()),
            HookError::Broker(b) => b.into(),
            HookError::Io(_) => Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            HookError::TopicInUse { .. } => Self::new(StatusCode::CONFLICT, e.to_string()),
            HookError::Changed => Self::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        let status = match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self::new(status, e.body_text())
    }
}

/// A hook the caller may manage.
fn own(s: &EdgeState, caller: &Caller, id: &str) -> Result<crate::hooks::HookView, ApiError> {
    let view = hooks(s)?
        .get(id)
        .ok_or_else(|| HookError::NotFound(id.to_owned()))?;
    caller.hook(&view.topic)?;
    Ok(view)
}

fn hooks(s: &EdgeState) -> Result<&Hooks, ApiError> {
    s.hooks.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "hooks are not enabled on this broker",
        )
    })
}

/// `POST /hooks`: `201 {"id", "secret", ...}`.
#[utoipa::path(
    post,
    path = "/hooks",
    operation_id = "createHook",
    tag = "hooks",
    request_body = CreateJson,
    responses((status = CREATED, description = "The hook, with its signing secret (shown once)", body = CreatedHookJson)),
)]
pub(crate) async fn create(
    State(s): State<EdgeState>,
    axum::Extension(caller): axum::Extension<Caller>,
    body: Result<Json<CreateJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = body?;
    caller.hook(&b.topic)?;
    let (view, secret) = hooks(&s)?
        .create(NewHook {
            topic: b.topic,
            url: b.url,
            secret: b.secret,
            from: b.from,
            delivery: b.delivery,
            types: b.types,
            rate_limit: b.rate_limit,
            handshake: b.handshake,
            lanes: match b.ordering.as_deref() {
                None | Some("topic") if b.parallelism.is_none() => None,
                None | Some("topic") => {
                    return Err(ApiError::bad_request(
                        "parallelism goes with \"ordering\": \"key\"",
                    ));
                }
                Some("key") => Some(b.parallelism.unwrap_or(8)),
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "ordering {other:?} is not \"topic\" or \"key\""
                    )));
                }
            },
            dead_letter: b.dead_letter,
        })
        .await?;
    Ok(json::body(
        StatusCode::CREATED,
        &CreatedHookJson { hook: view, secret },
    ))
}

/// A hook made, with its secret.
#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedHookJson {
    #[serde(flatten)]
    hook: HookView,
    /// The signing secret: shown here and on rotation only.
    secret: String,
}

/// A rotation's answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct RotatedJson {
    id: String,
    /// The new secret.
    secret: String,
}

/// A WebSub request (W3C WebSub, form-encoded).
#[derive(ToSchema)]
#[allow(dead_code)] // described, not extracted: the hub reads the form as a map
pub(crate) struct WebSubForm {
    /// `subscribe` or `unsubscribe`.
    #[schema(rename = "hub.mode")]
    mode: String,
    /// The topic URL (`{base}/topics/{topic}`).
    #[schema(rename = "hub.topic")]
    topic: String,
    /// Where the hub delivers and verifies.
    #[schema(rename = "hub.callback")]
    callback: String,
    /// Seconds the subscription lasts.
    #[schema(rename = "hub.lease_seconds")]
    lease_seconds: Option<u64>,
    /// Signs deliveries (`X-Hub-Signature`).
    #[schema(rename = "hub.secret")]
    secret: Option<String>,
}

/// `GET /hooks`
#[utoipa::path(
    get,
    path = "/hooks",
    operation_id = "listHooks",
    tag = "hooks",
    responses((status = OK, description = "The hooks the caller may manage", body = [HookView])),
)]
pub(crate) async fn list(
    State(s): State<EdgeState>,
    axum::Extension(caller): axum::Extension<Caller>,
) -> Result<Response, ApiError> {
    let mine: Vec<_> = hooks(&s)?
        .list()
        .into_iter()
        .filter(|h| caller.hook(&h.topic).is_ok())
        .collect();
    Ok(json::body(StatusCode::OK, &mine))
}

/// `GET /hooks/{id}`
#[utoipa::path(
    get,
    path = "/hooks/{id}",
    operation_id = "getHook",
    tag = "hooks",
    params(HookPath),
    responses((status = OK, description = "The hook, with its cursor, lag and last error", body = HookView)),
)]
pub(crate) async fn get(
    State(s): State<EdgeState>,
    axum::Extension(caller): axum::Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    let view = own(&s, &caller, &id)?;
    Ok(json::body(StatusCode::OK, &view))
}

/// `PATCH /hooks/{id}`: `{"state": "active"}` re-enables a disabled hook
/// (delivery resumes at its cursor); `"rate_limit"` sets or removes its
/// limit.
#[utoipa::path(
    patch,
    path = "/hooks/{id}",
    operation_id = "updateHook",
    tag = "hooks",
    params(HookPath),
    request_body = PatchJson,
    responses((status = OK, description = "The hook, updated", body = HookView)),
)]
pub(crate) async fn patch(
    State(s): State<EdgeState>,
    axum::Extension(caller): axum::Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<PatchJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    own(&s, &caller, &id)?;
    let Json(b) = body?;
    let enabled = match b.state.as_deref() {
        None => None,
        Some("active") => Some(true),
        Some("disabled" | "paused") => Some(false),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "state {other:?} is not active, paused or disabled"
            )));
        }
    };
    let hooks = hooks(&s)?.clone();
    // The update is stored (hooks.json): off the runtime's threads.
    let update = HookUpdate {
        enabled,
        rate_limit: b.rate_limit,
    };
    let view = blocking(move || hooks.update(&id, update)).await??;
    Ok(json::body(StatusCode::OK, &view))
}

/// `POST /hooks/{id}/rotate`: a new secret (given or generated); the old
/// one keeps signing beside it for the grace period. `{"secret": NEW}`.
#[utoipa::path(
    post,
    path = "/hooks/{id}/rotate",
    operation_id = "rotateHookSecret",
    tag = "hooks",
    params(HookPath),
    request_body = RotateJson,
    responses((status = OK, description = "The new secret; the old one signs beside it until the grace period ends", body = RotatedJson)),
)]
pub(crate) async fn rotate(
    State(s): State<EdgeState>,
    axum::Extension(caller): axum::Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<RotateJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    own(&s, &caller, &id)?;
    let Json(b) = body?;
    let grace = std::time::Duration::from_secs(b.grace_seconds.unwrap_or(24 * 3600));
    let hooks = hooks(&s)?.clone();
    let rotated = id.clone();
    let secret = blocking(move || hooks.rotate(&rotated, b.secret, grace)).await??;
    Ok(json::body(StatusCode::OK, &RotatedJson { id, secret }))
}

/// `DELETE /hooks/{id}`: 204.
#[utoipa::path(
    delete,
    path = "/hooks/{id}",
    operation_id = "deleteHook",
    tag = "hooks",
    params(HookPath),
    responses((status = NO_CONTENT, description = "Deleted")),
)]
pub(crate) async fn delete(
    State(s): State<EdgeState>,
    axum::Extension(caller): axum::Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    own(&s, &caller, &id)?;
    let hooks = hooks(&s)?.clone();
    blocking(move || hooks.delete(&id)).await??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// This hub's URL: from the configured public URL, never from a request's
/// `Host` when there is one.
fn hub_url(s: &EdgeState, headers: &HeaderMap) -> String {
    if let Some(base) = &s.config.public_url {
        return format!("{base}/websub");
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}/websub")
}

/// `POST /websub`: a WebSub hub request (form-encoded `hub.*`); `202`.
#[utoipa::path(
    post,
    path = "/websub",
    operation_id = "websub",
    tag = "hooks",
    request_body(content = WebSubForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = ACCEPTED, description = "Accepted; the hub verifies the subscriber's intent asynchronously")),
)]
pub(crate) async fn websub(
    State(s): State<EdgeState>,
    axum::Extension(caller): axum::Extension<Caller>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Result<Response, ApiError> {
    let Form(params) = form.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    // Rights on the topic named; a URL that names none needs an admin.
    let named = params
        .get("hub.topic")
        .or_else(|| params.get("hub.url"))
        .and_then(|u| reqwest::Url::parse(u).ok())
        .and_then(|u| {
            let mut seg = u.path_segments()?;
            match (seg.next(), seg.next(), seg.next()) {
                (Some("topics"), Some(t), None) => Some(t.to_owned()),
                _ => None,
            }
        });
    match named {
        Some(topic) => caller.hook(&topic)?,
        None if caller.grant.is_admin() => {}
        None => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "this token may not use the hub for that topic",
            ));
        }
    }
    hooks(&s)?
        .websub(WebSubRequest {
            params,
            hub_url: hub_url(&s, &headers),
        })
        .await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// The WebSub discovery links of a topic: its hub and itself.
pub(crate) fn discovery_links(
    s: &EdgeState,
    headers: &HeaderMap,
    topic: &str,
) -> Option<HeaderValue> {
    let hub = hub_url(s, headers);
    let base = hub.strip_suffix("/websub")?;
    HeaderValue::from_str(&format!(
        "<{hub}>; rel=\"hub\", <{base}/topics/{topic}>; rel=\"self\""
    ))
    .ok()
}

/// Where to deliver from again.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplayJson {
    /// The seq to deliver from again.
    from: u64,
}

/// `POST /hooks/{id}/replay` `{"from": SEQ}`: moves the hook's cursor and
/// delivers from there again.
#[utoipa::path(
    post,
    path = "/hooks/{id}/replay",
    operation_id = "replayHook",
    tag = "hooks",
    params(HookPath),
    request_body = ReplayJson,
    responses((status = OK, description = "The hook, its cursor moved: delivery resumes there", body = HookView)),
)]
pub(crate) async fn replay(
    State(s): State<EdgeState>,
    axum::Extension(caller): axum::Extension<Caller>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<ReplayJson>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id?;
    own(&s, &caller, &id)?;
    let Json(b) = body?;
    let view = hooks(&s)?.replay(&id, b.from).await?;
    Ok(json::body(StatusCode::OK, &view))
}
