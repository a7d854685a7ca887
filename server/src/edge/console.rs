//! `GET /`: the console, one self-contained page compiled into the binary
//! (no CDN, no build step). Over the public routes only, it shows topics
//! with their rates, consumer groups and their lag, hooks with their state
//! and last error, and a live tail over the WebSocket route that seeks by
//! seq or time; it publishes with `POST /topics/{topic}/messages` and signs
//! in through `POST /session` (docs/http.md, "The console").

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("console.html");

#[utoipa::path(
    get,
    path = "/",
    operation_id = "console",
    tag = "meta",
    security(()),
    responses((status = OK, description = "The console: a self-contained page", content_type = "text/html", body = String)),
)]
pub(crate) async fn page() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            // The page runs only its own inline code and talks only to us.
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
                ),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        PAGE,
    )
        .into_response()
}
