//! The HTTP edge: publish and read over REST, and the browser bridges
//! (Server-Sent Events, WebSocket, long polling) plus a live console page.
//!
//! Every handler is a thin adapter over the same [`Broker`] the binary
//! transports use; a browser stream is a [`fanlog_broker::Subscription`], read
//! straight from the log, so an idle connection holds no message queue and
//! a slow one only lags. Routes and bodies follow the outside contract
//! (`CONTRACT.md`); [`router`] builds them so tests can drive the service
//! directly, [`serve`] runs them on a listener.

mod admin;
mod asyncapi;
mod auth;
mod console;
mod hooks;
mod json;
mod metrics;
pub mod openapi;
mod poll;
mod sse;
mod topics;
mod work;
mod ws;

use crate::MetricsExt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::transport::connections::{Connections, Permit};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowOrigin, CorsLayer};

use fanlog_broker::Broker;
use fanlog_broker::BrokerError;
use fanlog_protocol::frame::ErrorCode;

pub use asyncapi::ApiServer;
pub use ws::{PublishOp, close_code, parse_op};

/// Settings of the HTTP edge.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest request body (a published message), in bytes; larger ones get
    /// 413. Also the largest WebSocket message accepted.
    pub max_body: usize,
    /// Origins allowed to call the API from a browser page of another origin
    /// (CORS). Empty: none; same-origin pages (the console) always work.
    pub cors_origins: Vec<String>,
    /// The URL clients reach this edge at (no trailing `/`), for WebSub
    /// `Link` headers and the hub's URL. `None`: taken from each request's
    /// `Host` (an embedding that serves one known host); `fanlog serve`
    /// always sets it.
    pub public_url: Option<String>,
    /// A comment line is sent on an idle SSE stream at least this often.
    pub sse_heartbeat: Duration,
    /// The `retry:` reconnection hint sent to EventSource; each stream gets it
    /// with up to +50% jitter so that a restarted broker is not hit by every
    /// browser in the same millisecond.
    pub sse_retry: Duration,
    /// Interval of WebSocket pings; a peer that answers none of two in a row
    /// is dropped.
    pub ws_ping: Duration,
    /// A browser connection whose socket takes no bytes for this long while
    /// it has messages to receive is closed as a slow consumer, with the seq
    /// to resume from.
    pub slow_consumer_timeout: Duration,
    /// Bytes of messages put in one response page: a paged read, a long-poll
    /// answer, or one WebSocket write.
    pub page_bytes: usize,
    /// WebSocket publish ops awaiting their acks, per socket; at the bound
    /// the socket is not read until an ack goes out (TCP pushes back on the
    /// client), so a client that never reads its acks costs bounded memory.
    pub ws_max_inflight_publishes: usize,
    /// The binary-protocol listeners to list in `/asyncapi.json` (the HTTP
    /// edge lists itself from the request's `Host`).
    pub api_servers: Vec<ApiServer>,
    /// Connections served at once, and from one address; more are closed
    /// at once (and counted in `/metrics`).
    pub max_connections: usize,
    /// Open connections from one address, at most.
    pub max_connections_per_ip: usize,
    /// Time to send a request's headers, and the longest a kept-alive
    /// connection may sit idle between requests; then it is closed. A
    /// silent socket holds a connection slot no longer.
    pub header_timeout: Duration,
    /// Time to send a request's whole body; a slower one (a trickle, a
    /// chunked body that never ends) gets 408 and the connection closes.
    pub body_timeout: Duration,
    /// Bytes of a response a connection buffers ahead of its socket (at
    /// least 8 KiB). A stream (SSE, long poll) is read from the log only
    /// while its buffer has room, so this bounds what a stalled reader
    /// costs; hyper's own default is about 400 KiB per connection.
    pub max_buffered: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body: 1 << 20,
            cors_origins: Vec::new(),
            public_url: None,
            sse_heartbeat: Duration::from_secs(15),
            sse_retry: Duration::from_secs(1),
            ws_ping: Duration::from_secs(20),
            slow_consumer_timeout: Duration::from_secs(30),
            page_bytes: 256 << 10,
            ws_max_inflight_publishes: 1024,
            api_servers: Vec::new(),
            max_connections: 10_000,
            max_connections_per_ip: 10_000,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_buffered: 64 << 10,
        }
    }
}

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct EdgeState {
    broker: Broker,
    config: Arc<HttpConfig>,
    /// Built from `config.cors_origins` once, when the state is made.
    cors: CorsLayer,
    shutdown: CancellationToken,
    /// Push delivery, when the broker runs it.
    hooks: Option<crate::hooks::Hooks>,
    /// Tokens and their rights (open unless configured).
    auth: crate::auth::Auth,
}

impl EdgeState {
    /// The edge over `broker`. Cancelling `shutdown` ends every open stream
    /// (SSE, WebSocket, long poll), so that a graceful shutdown completes.
    ///
    /// # Errors
    /// An origin in `cors_origins` that is not a valid header value.
    pub fn new(
        broker: Broker,
        config: HttpConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, String> {
        Ok(Self {
            broker,
            cors: cors(&config.cors_origins)?,
            config: Arc::new(config),
            shutdown,
            hooks: None,
            auth: crate::auth::Auth::open(),
        })
    }

    /// Requires the tokens of `auth` on every route but `/` and `/healthz`.
    #[must_use]
    pub fn with_auth(mut self, auth: crate::auth::Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Serves `/hooks` over `hooks`.
    #[must_use]
    pub fn with_hooks(mut self, hooks: crate::hooks::Hooks) -> Self {
        self.hooks = Some(hooks);
        self
    }
}

/// Every route of the contract, each registered with its description in
/// the OpenAPI document (see [`openapi`]): `routes!` takes a handler's
/// path and method from its `#[utoipa::path]`, so there is no other way
/// to add one here.
pub(crate) fn routes() -> openapi::ApiRouter {
    use utoipa_axum::routes;
    openapi::base()
        .routes(routes!(console::page))
        .routes(routes!(healthz))
        .routes(routes!(openapi::serve))
        .routes(routes!(asyncapi::document))
        .routes(routes!(metrics::metrics))
        .routes(routes!(topics::list))
        .routes(routes!(topics::info, admin::create, admin::delete))
        .routes(routes!(admin::truncate))
        .routes(routes!(admin::groups))
        .routes(routes!(admin::reset))
        .routes(routes!(topics::read, topics::publish))
        .routes(routes!(topics::publish_batch))
        .routes(routes!(sse::events))
        .routes(routes!(ws::upgrade))
        .routes(routes!(poll::poll))
        .routes(routes!(work::info))
        .routes(routes!(work::fetch))
        .routes(routes!(work::ack))
        .routes(routes!(work::nack))
        .routes(routes!(work::upgrade))
        .routes(routes!(hooks::list, hooks::create))
        .routes(routes!(hooks::get, hooks::delete, hooks::patch))
        .routes(routes!(hooks::rotate))
        .routes(routes!(hooks::replay))
        .routes(routes!(hooks::websub))
        .routes(routes!(auth::ticket))
        .routes(routes!(auth::open_session, auth::close_session))
}

/// The HTTP routes of the contract, over `state`.
pub fn router(state: EdgeState) -> Router {
    let cors = state.cors.clone();
    let max_body = state.config.max_body;
    let (routes, _) = routes().split_for_parts();
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            body_deadline,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::layer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::count_refusals,
        ))
        .layer(cors)
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` resolves; then
/// cancels the open streams and waits for every connection to finish.
///
/// # Errors
/// An accept loop failure.
pub async fn serve(
    listener: TcpListener,
    state: EdgeState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(listener, None, state, shutdown).await
}

/// Serves `router(state)` over TLS (HTTPS) on `listener`, like [`serve`].
///
/// # Errors
/// An accept loop failure.
pub async fn serve_tls(
    listener: TcpListener,
    tls: crate::transport::tls::Acceptor,
    state: EdgeState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(listener, Some(tls.0), state, shutdown).await
}

async fn serve_on(
    tcp: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: EdgeState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let token = state.shutdown.clone();
    let https = tls.is_some();
    let listener = EdgeListener {
        tcp,
        tls,
        handshakes: tokio::task::JoinSet::new(),
        connections: Connections::new(
            state.config.max_connections,
            state.config.max_connections_per_ip,
        ),
        broker: state.broker.clone(),
    };
    let mut listener = listener;
    // Each connection gets a clone of the built router (a reference count);
    // serving a fresh `Router` would rebuild its route table, about 13 KiB
    // per connection.
    let app = if https {
        // Handlers learn that the request came over TLS (the session
        // cookie is then `Secure`).
        router(state.clone()).layer(axum::Extension(auth::Https))
    } else {
        router(state.clone())
    };
    // HTTP/1 only (what the edge speaks). The header timeout also runs
    // from the first byte a connection could send and while a kept-alive
    // connection waits for its next request (hyper starts it whenever it
    // reads a head), so a silent socket is closed too.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Some(state.config.header_timeout))
        .max_buf_size(state.config.max_buffered.max(8192));
    let connections = tokio_util::task::TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let (io, _peer) = tokio::select! {
            conn = axum::serve::Listener::accept(&mut listener) => conn,
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = builder
            .serve_connection(hyper_util::rt::TokioIo::new(io), service)
            .with_upgrades();
        let token = token.clone();
        connections.spawn(async move {
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = token.cancelled() => {
                    // Finish the response under way, take no new request.
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    // Streams end (SSE, WebSocket, long poll), then every connection
    // finishes its response and closes.
    token.cancel();
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Reads a request's body within [`HttpConfig::body_timeout`], or answers
/// 408. Bodies are bounded by `max_body` (413 past it), so holding one in
/// memory costs what the handler would hold anyway.
async fn body_deadline(
    axum::extract::State(s): axum::extract::State<EdgeState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use http_body::Body as _;
    let (parts, body) = req.into_parts();
    if body.is_end_stream() {
        return next
            .run(axum::extract::Request::from_parts(parts, body))
            .await;
    }
    let limited = http_body_util::Limited::new(body, s.config.max_body);
    let read = http_body_util::BodyExt::collect(limited);
    match tokio::time::timeout(s.config.body_timeout, read).await {
        Ok(Ok(collected)) => {
            let body = axum::body::Body::from(collected.to_bytes());
            next.run(axum::extract::Request::from_parts(parts, body))
                .await
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over the limit of {} bytes", s.config.max_body),
        )
        .into_response(),
        Ok(Err(e)) => {
            ApiError::bad_request(format!("cannot read the request body: {e}")).into_response()
        }
        Err(_) => {
            let mut r = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {:?}",
                    s.config.body_timeout
                ),
            )
            .into_response();
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
    }
}

/// Most TLS handshakes under way at once; more connections wait in the
/// kernel's backlog.
const MAX_HANDSHAKES: usize = 1024;

/// An accepted connection, plain or TLS, holding its place under the
/// connection limits until it closes.
pub(crate) struct Conn {
    io: ConnIo,
    _place: (Permit, crate::metrics::ConnectionGuard),
}

enum ConnIo {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>),
}

impl tokio::io::AsyncRead for Conn {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            ConnIo::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            ConnIo::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Conn {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match &mut self.get_mut().io {
            ConnIo::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            ConnIo::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match &mut self.get_mut().io {
            ConnIo::Plain(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
            ConnIo::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            ConnIo::Plain(s) => s.is_write_vectored(),
            ConnIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            ConnIo::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            ConnIo::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match &mut self.get_mut().io {
            ConnIo::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            ConnIo::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The edge's listener: TCP accepts under the connection limits (a
/// connection over them is closed at once and counted), then, with TLS,
/// handshakes that run concurrently so a slow client holds up no other.
struct EdgeListener {
    tcp: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handshakes: tokio::task::JoinSet<Option<(Conn, std::net::SocketAddr)>>,
    connections: Connections,
    broker: Broker,
}

impl axum::serve::Listener for EdgeListener {
    type Io = Conn;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept(), if self.handshakes.len() < MAX_HANDSHAKES => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    // Events go out as they happen: no Nagle delay behind
                    // a small write.
                    let _ = stream.set_nodelay(true);
                    let place = match self.connections.admit(peer.ip()) {
                        Ok(p) => p,
                        Err(refusal) => {
                            tracing::debug!(%peer, ?refusal, "HTTP connection refused");
                            self.broker
                                .metrics()
                                .refused("http", format!("{refusal:?}Connections"));
                            continue;
                        }
                    };
                    let transport = if self.tls.is_some() { "https" } else { "http" };
                    let place = (place, self.broker.metrics().connection(transport));
                    let Some(tls) = self.tls.clone() else {
                        return (Conn { io: ConnIo::Plain(stream), _place: place }, peer);
                    };
                    self.handshakes.spawn(async move {
                        let timeout = crate::transport::tls::HANDSHAKE_TIMEOUT;
                        match tokio::time::timeout(timeout, tls.accept(stream)).await {
                            Ok(Ok(s)) => Some((Conn { io: ConnIo::Tls(Box::new(s)), _place: place }, peer)),
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                None
                            }
                            Err(_) => None,
                        }
                    });
                }
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(conn)) = done {
                        return conn;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

fn cors(origins: &[String]) -> Result<CorsLayer, String> {
    let list = origins
        .iter()
        .map(|o| HeaderValue::from_str(o).map_err(|_| format!("{o:?} is not a valid CORS origin")))
        .collect::<Result<Vec<_>, _>>()?;
    // An explicit list, never a reflected origin; no credentials.
    Ok(CorsLayer::new()
        .allow_origin(AllowOrigin::list(list))
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::HeaderName::from_static("last-event-id"),
            header::HeaderName::from_static("idempotency-key"),
        ])
        .max_age(Duration::from_secs(600)))
}

/// Health: `{"status": "ok"}` while the broker serves.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "health",
    tag = "meta",
    security(()),
    responses((status = OK, description = "The broker serves", body = HealthJson)),
)]
async fn healthz() -> Response {
    json::body(StatusCode::OK, &HealthJson { status: "ok" })
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct HealthJson {
    /// `ok`.
    status: &'static str,
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    )
}

/// An error answer: `{"error": "..."}` with a fitting status.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    /// Seconds for a `Retry-After` header.
    retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        if let BrokerError::RateLimited(wait) = &e {
            return Self {
                status: StatusCode::TOO_MANY_REQUESTS,
                message: e.to_string(),
                retry_after: Some(wait.as_secs().max(1)),
            };
        }
        if let BrokerError::Unavailable(_) = &e {
            // A cluster without quorum or mid-election: nothing was
            // acknowledged, and a retry soon may pass.
            return Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: e.to_string(),
                retry_after: Some(2),
            };
        }
        if e.is_out_of_space() {
            return Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: format!("the broker's disk is full; nothing was written ({e})"),
                retry_after: Some(5),
            };
        }
        Self::new(status_of(e.code()), e.to_string())
    }
}

/// Runs file-system work (creating and removing directories, renames,
/// syncs) on tokio's blocking pool, so that it never stalls a runtime
/// thread that serves sockets.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the operation did not complete: {e}"),
        )
    })
}

/// The HTTP status of a refusal, from the one classification every
/// interface shares ([`BrokerError::code`]).
#[must_use]
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidName
        | ErrorCode::EmptyBatch
        | ErrorCode::OffsetOutOfRange
        | ErrorCode::BadFrame
        | ErrorCode::UnknownFrame => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized | ErrorCode::HandshakeRequired => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden | ErrorCode::LimitReached => StatusCode::FORBIDDEN,
        ErrorCode::TopicNotFound | ErrorCode::UnknownSubscription => StatusCode::NOT_FOUND,
        ErrorCode::TopicExists
        | ErrorCode::DuplicateSubscription
        | ErrorCode::NotHeld
        | ErrorCode::GroupConflict => StatusCode::CONFLICT,
        ErrorCode::MessageTooLarge | ErrorCode::FrameTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::IdempotencyConflict => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Unavailable | ErrorCode::ShuttingDown | ErrorCode::TooManyConnections => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        // UnsupportedVersion, Internal, and codes this version does not know.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        Self::bad_request(format!("bad query string: {}", e.body_text()))
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(e: axum::extract::rejection::PathRejection) -> Self {
        Self::new(e.status(), e.body_text())
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(e: axum::extract::rejection::BytesRejection) -> Self {
        let status = e.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "request body is over the size limit".to_owned()
        } else {
            e.body_text()
        };
        Self::new(status, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = json::body(
            self.status,
            &openapi::ErrorJson {
                error: self.message,
            },
        );
        if let Some(secs) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, secs.into());
        }
        r
    }
}
