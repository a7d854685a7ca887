//! The OpenAPI 3.1 document of the HTTP API, served at `GET /openapi.json`.
//!
//! It is generated, not kept by hand. Every route is registered through
//! `utoipa_axum::routes!`, which takes the route's path and method from
//! the handler's own `#[utoipa::path]` annotation and its schemas from the
//! types the handler reads and writes (`ToSchema`). So a route cannot be
//! served without being described, and the two cannot name different
//! paths. What every route shares is added here once: the ways to
//! authenticate, and the refusals (`{"error": "..."}`) that the layers in
//! front of every handler may answer.

use std::sync::LazyLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoParams, Modify, ToSchema};

/// Every refusal's body.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorJson {
    /// What was wrong, for a person to read.
    pub(crate) error: String,
}

/// The `{topic}` of a route.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // described, not extracted: `Granted` reads the topic
pub(crate) struct TopicPath {
    /// A topic name: 1 to 255 of `A-Z a-z 0-9 - _ .`, not starting with
    /// `.`.
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}$")]
    topic: String,
}

/// The `{topic}` and `{group}` of a route.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // described, not extracted
pub(crate) struct GroupPath {
    /// A topic name.
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}$")]
    topic: String,
    /// A consumer group name, spelled as a topic name.
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}$")]
    group: String,
}

/// The `{id}` of a hook's routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // described, not extracted
pub(crate) struct HookPath {
    /// The hook's id (`hook_...`).
    id: String,
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "fanlog HTTP API",
        description = "Publish to and read from fanlog's topics over HTTP: REST, \
            Server-Sent Events, WebSocket and long polling; administration, \
            consumer and work-sharing groups, webhooks (REST Hooks), a WebSub hub, \
            and browser tickets and sessions. Every refusal is a JSON body \
            `{\"error\": \"...\"}` with a 4xx or 5xx status. The broker's channels \
            are described by the AsyncAPI document at `/asyncapi.json`.",
        license(name = "MIT OR Apache-2.0"),
    ),
    components(schemas(ErrorJson)),
    tags(
        (name = "topics", description = "Publish, list and read topics"),
        (name = "streams", description = "Follow a topic: Server-Sent Events, WebSocket, long polling"),
        (name = "admin", description = "Topic and consumer-group administration (admin tokens)"),
        (name = "work", description = "Work-sharing groups: jobs fetched, acknowledged, retried"),
        (name = "hooks", description = "Webhooks managed over REST (REST Hooks), and the WebSub hub"),
        (name = "auth", description = "Browser tickets and sessions"),
        (name = "meta", description = "Health, metrics, the console and the API documents"),
    )
)]
struct ApiDoc;

/// What every route shares: security schemes and common refusals.
struct Shared;

/// Refusals any route may answer, from the layers in front of its handler:
/// a bad query or path (400), no or a bad token (401), a token without the
/// right (403), an unknown topic or hook (404), a broker shutting down or
/// without quorum (503).
const COMMON: &[(StatusCode, &str)] = &[
    (StatusCode::BAD_REQUEST, "The request is malformed"),
    (
        StatusCode::UNAUTHORIZED,
        "No token, or one the broker does not know",
    ),
    (StatusCode::FORBIDDEN, "The token does not allow this"),
    (StatusCode::NOT_FOUND, "No such topic, group or hook"),
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "The broker is shutting down, full or without quorum; retry later",
    ),
];

/// Refusals of a request with a body.
const WITH_BODY: &[(StatusCode, &str)] = &[
    (
        StatusCode::REQUEST_TIMEOUT,
        "The body did not arrive in time",
    ),
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        "The body is over the size limit",
    ),
    (
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "The body's content type is not the one expected",
    ),
];

impl Modify for Shared {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::edge::auth::COOKIE,
                "The browser session opened by POST /session",
            ))),
        );
        components.add_security_scheme(
            "ticket",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "ticket",
                "A single-use ticket from POST /tickets: opens one stream (events, ws, poll)",
            ))),
        );
        doc.security = Some(
            ["bearer", "session", "ticket"]
                .into_iter()
                .map(|name| {
                    utoipa::openapi::security::SecurityRequirement::new(name, Vec::<String>::new())
                })
                .collect(),
        );
        let refusal = |what: &str| {
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorJson")))
                        .build(),
                )
                .build()
        };
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                // utoipa makes a body required unless its schemas are
                // `Option`s, which would make them nullable too; a publish's
                // empty body is an empty message.
                if op.operation_id.as_deref() == Some("publishMessage")
                    && let Some(RefOr::T(body)) = op.request_body.as_mut()
                {
                    body.required = Some(utoipa::openapi::Required::False);
                }
                let with_body = op.request_body.is_some();
                let extra = if with_body { WITH_BODY } else { &[] };
                for (status, what) in COMMON.iter().chain(extra) {
                    op.responses
                        .responses
                        .entry(status.as_str().to_owned())
                        .or_insert_with(|| RefOr::T(refusal(what)));
                }
            }
        }
    }
}

/// The routes and their document, before the state is given.
pub(crate) type ApiRouter = utoipa_axum::router::OpenApiRouter<super::EdgeState>;

/// A fresh router with the document's shared parts.
pub(crate) fn base() -> ApiRouter {
    ApiRouter::with_openapi(<ApiDoc as utoipa::OpenApi>::openapi())
}

/// The document, made once from the routes themselves.
static DOCUMENT: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut doc = super::routes().into_openapi();
    Shared.modify(&mut doc);
    serde_json::to_vec_pretty(&doc).unwrap_or_default()
});

/// The OpenAPI document of the HTTP API.
#[must_use]
pub fn document() -> serde_json::Value {
    serde_json::from_slice(&DOCUMENT).unwrap_or_default()
}

/// `GET /openapi.json`
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "meta",
    security(()),
    responses((status = OK, description = "This document (OpenAPI 3.1)", content_type = "application/json", body = Object)),
)]
pub(crate) async fn serve() -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        DOCUMENT.as_slice(),
    )
        .into_response()
}
