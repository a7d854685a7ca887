//! Who is calling: `Authorization: Bearer TOKEN`, the HttpOnly session
//! cookie (`POST /session`), or, on a GET, a single-use `?ticket=` from
//! `POST /tickets` (what an `EventSource` or `WebSocket` can carry). A
//! long-lived token is never taken from a URL.
//!
//! Every request gets a [`Caller`]; a request with credentials that do not
//! hold is refused with 401 before it reaches a handler, and so is one
//! without any when the broker has tokens (except the console page and
//! `/healthz`). A route's `{topic}` comes to its handler only through
//! [`Granted`], which checks the caller's right on it (403) and the topic
//! name (400) once, before the handler runs.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, EdgeState, json};
use crate::auth::{Grant, TICKET_TTL};

/// Name of the session cookie.
pub(crate) const COOKIE: &str = "fanlog_session";

/// The rights of the request's caller.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) grant: Arc<Grant>,
    /// Authenticated with a token (not a ticket or cookie), so it may be
    /// exchanged for tickets and sessions.
    pub(crate) by_token: bool,
}

impl Caller {
    /// True when the caller may publish to `topic` (so creating it by
    /// subscribing gives it nothing it could not do anyway).
    pub(crate) fn may_publish(&self, topic: &str) -> bool {
        self.grant.can_publish(topic)
    }

    /// Hooks and WebSub: an admin, or a token that may read the topic.
    pub(crate) fn hook(&self, topic: &str) -> Result<(), ApiError> {
        let ok = self.grant.is_admin() || self.grant.can_subscribe(topic);
        self.check(ok, "hook", topic)
    }

    fn check(&self, ok: bool, what: &str, topic: &str) -> Result<(), ApiError> {
        if ok {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("this token may not {what} {topic}"),
            ))
        }
    }
}

/// A right a route needs on its `{topic}`.
pub(crate) trait Right: Send + Sync + 'static {
    /// The refusal's verb: "this token may not {WHAT} {topic}".
    const WHAT: &'static str;
    /// Whether `grant` has the right on `topic`.
    fn allows(grant: &Grant, topic: &str) -> bool;
    /// What using the right costs the caller (a publish, against its rate).
    fn charge(_grant: &Grant) -> Result<(), ApiError> {
        Ok(())
    }
}

/// Read a topic: pages, SSE, WebSocket, long poll.
pub(crate) enum Read {}
/// Publish one message (charged against the token's rate).
pub(crate) enum Publish {}
/// Publish a batch (its handler charges each message against the rate).
pub(crate) enum PublishBatch {}
/// See that a topic exists and its numbers.
pub(crate) enum See {}
/// Administer a topic and its consumer groups.
pub(crate) enum Admin {}

impl Right for Read {
    const WHAT: &'static str = "read";
    fn allows(grant: &Grant, topic: &str) -> bool {
        grant.can_subscribe(topic)
    }
}

impl Right for Publish {
    const WHAT: &'static str = "publish to";
    fn allows(grant: &Grant, topic: &str) -> bool {
        grant.can_publish(topic)
    }
    fn charge(grant: &Grant) -> Result<(), ApiError> {
        Ok(grant.charge_publish(1)?)
    }
}

impl Right for PublishBatch {
    const WHAT: &'static str = "publish to";
    fn allows(grant: &Grant, topic: &str) -> bool {
        grant.can_publish(topic)
    }
}

impl Right for See {
    const WHAT: &'static str = "see";
    fn allows(grant: &Grant, topic: &str) -> bool {
        grant.can_see(topic)
    }
}

impl Right for Admin {
    const WHAT: &'static str = "administer";
    fn allows(grant: &Grant, _topic: &str) -> bool {
        grant.is_admin()
    }
}

/// The route's `{topic}` with the caller, once the caller's right `R` on it
/// and the topic name held: the one policy check of the HTTP edge.
pub(crate) struct Granted<R> {
    pub(crate) topic: String,
    pub(crate) caller: Caller,
    right: PhantomData<R>,
}

impl<S: Send + Sync, R: Right> FromRequestParts<S> for Granted<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let caller = parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "no caller"))?;
        let Path(params) =
            Path::<HashMap<String, String>>::from_request_parts(parts, state).await?;
        let topic = params.get("topic").cloned().ok_or_else(|| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "no {topic} in the route")
        })?;
        caller.check(R::allows(&caller.grant, &topic), R::WHAT, &topic)?;
        fanlog_broker::TopicName::new(topic.as_str()).map_err(fanlog_broker::BrokerError::from)?;
        R::charge(&caller.grant)?;
        Ok(Self {
            topic,
            caller,
            right: PhantomData,
        })
    }
}

fn unauthorized(why: &str) -> Response {
    let mut r = ApiError::new(StatusCode::UNAUTHORIZED, why).into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

fn cookie<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn query<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.uri()
        .query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Marks a request that came over TLS.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Https;

/// The routes a ticket opens: one stream of one topic.
fn is_stream_route(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/topics/") else {
        return false;
    };
    match rest.rsplit_once('/') {
        Some((topic, "events" | "ws" | "poll")) => !topic.is_empty() && !topic.contains('/'),
        _ => false,
    }
}

/// Checks that a cookie-authenticated request comes from a page of this
/// origin (or an allowed CORS origin): by `Origin` when the browser sends
/// it (it does for every cross-origin POST and WebSocket), else by
/// `Sec-Fetch-Site`. A request with neither is not from a browser page.
fn same_origin(req: &Request, allowed: &[String]) -> Result<(), String> {
    let headers = req.headers();
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        if (!host.is_empty() && origin_host == host) || allowed.iter().any(|a| a == origin) {
            return Ok(());
        }
        return Err(format!(
            "a request from origin {origin:?} may not use the session cookie of {host}"
        ));
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some("cross-site") => Err("a cross-site request may not use the session cookie".to_owned()),
        _ => Ok(()),
    }
}

/// The middleware: finds the caller, or refuses the request.
pub(crate) async fn layer(State(s): State<EdgeState>, mut req: Request, next: Next) -> Response {
    let auth = &s.auth;
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("").trim().to_owned());
    let caller = if let Some(value) = bearer {
        let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        else {
            return unauthorized("Authorization must be `Bearer TOKEN`");
        };
        match auth.authenticate(Some(token.trim())) {
            Some(grant) => Caller {
                grant,
                by_token: true,
            },
            None => return unauthorized("the token is not known"),
        }
    } else if auth.is_open() {
        Caller {
            grant: auth
                .authenticate(None)
                .unwrap_or_else(|| Arc::new(Grant::none())),
            by_token: true,
        }
    } else if let Some(id) = cookie(&req, COOKIE) {
        match auth.session(id) {
            Some(grant) => {
                // A browser sends the cookie with any request to this host,
                // a cross-site form or WebSocket too: only pages of this
                // origin (or an allowed CORS origin) may use it.
                if let Err(why) = same_origin(&req, &s.config.cors_origins) {
                    return ApiError::new(StatusCode::FORBIDDEN, why).into_response();
                }
                Caller {
                    grant,
                    by_token: false,
                }
            }
            None => {
                return unauthorized("the session has ended; open a new one with POST /session");
            }
        }
    } else if let Some(ticket) = query(&req, "ticket").filter(|_| req.method() == "GET") {
        if !is_stream_route(req.uri().path()) {
            return unauthorized(
                "a ticket opens one stream only: GET /topics/{topic}/events, /ws or /poll",
            );
        }
        match auth.redeem_ticket(s.broker.meta(), ticket) {
            Some(grant) => Caller {
                grant,
                by_token: false,
            },
            None => return unauthorized("the ticket is unknown, used or expired"),
        }
    } else if matches!(req.uri().path(), "/" | "/healthz" | "/openapi.json") {
        Caller {
            grant: Arc::new(Grant::none()),
            by_token: false,
        }
    } else {
        return unauthorized(
            "a token is needed: Authorization: Bearer TOKEN, the session cookie \
             (POST /session), or ?ticket= from POST /tickets",
        );
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

fn by_token(caller: &Caller) -> Result<(), ApiError> {
    if caller.by_token {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "tickets and sessions are exchanged for an Authorization: Bearer token",
        ))
    }
}

/// `POST /tickets`: `{"ticket", "expires_in"}`, single use, for one
/// stream's URL (`?ticket=`).
#[utoipa::path(
    post,
    path = "/tickets",
    operation_id = "createTicket",
    tag = "auth",
    security(("bearer" = [])),
    responses((status = CREATED, description = "A single-use ticket for one stream's URL (`?ticket=`)", body = TicketJson)),
)]
pub(crate) async fn ticket(
    State(s): State<EdgeState>,
    axum::Extension(caller): axum::Extension<Caller>,
) -> Result<Response, ApiError> {
    by_token(&caller)?;
    let ticket = s
        .auth
        .issue_ticket(s.broker.meta(), &caller.grant)
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, &e))?;
    Ok(json::body(
        StatusCode::CREATED,
        &TicketJson {
            ticket,
            expires_in: TICKET_TTL.as_secs(),
        },
    ))
}

/// A ticket.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct TicketJson {
    /// Put in a stream's URL as `?ticket=`.
    ticket: String,
    /// Seconds it stays valid (single use).
    expires_in: u64,
}

/// `POST /session`: sets the HttpOnly session cookie; 204.
#[utoipa::path(
    post,
    path = "/session",
    operation_id = "openSession",
    tag = "auth",
    security(("bearer" = [])),
    responses((status = NO_CONTENT, description = "The HttpOnly session cookie is set", headers(("Set-Cookie" = String, description = "fanlog_session=...; HttpOnly; SameSite=Strict")))),
)]
pub(crate) async fn open_session(
    State(s): State<EdgeState>,
    axum::Extension(caller): axum::Extension<Caller>,
    https: Option<axum::Extension<Https>>,
) -> Result<Response, ApiError> {
    by_token(&caller)?;
    let id = s.auth.open_session(caller.grant);
    // Over HTTPS the cookie never travels over plain HTTP.
    let secure = if https.is_some() { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        crate::auth::SESSION_TTL.as_secs()
    );
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
    );
    Ok(r)
}

/// `DELETE /session`: ends the session and clears the cookie; 204.
#[utoipa::path(
    delete,
    path = "/session",
    operation_id = "closeSession",
    tag = "auth",
    responses((status = NO_CONTENT, description = "The session ended and its cookie cleared")),
)]
pub(crate) async fn close_session(State(s): State<EdgeState>, req: Request) -> Response {
    if let Some(id) = cookie(&req, COOKIE) {
        s.auth.close_session(id);
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("fanlog_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    r
}
