//! `GET /metrics`: Prometheus text. Refusals by interface and reason, and
//! each topic's seqs and bytes. An admin token is needed when the broker
//! has tokens.

use std::fmt::Write;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::Caller;
use super::{ApiError, EdgeState};
use crate::metrics::escape;

pub(crate) async fn metrics(
    State(s): State<EdgeState>,
    axum::Extension(caller): axum::Extension<Caller>,
) -> Result<Response, ApiError> {
    if !caller.grant.is_admin() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "metrics need an admin token",
        ));
    }
    let mut out = String::new();
    s.broker.metrics().write_refusals(&mut out);
    let topics = s.broker.topics();
    for (name, help, kind) in [
        (
            "fanlog_topic_next_seq",
            "The seq the next message of a topic will get.",
            "counter",
        ),
        (
            "fanlog_topic_first_seq",
            "The first seq a topic still stores.",
            "gauge",
        ),
        (
            "fanlog_topic_bytes",
            "Bytes of records a topic stores.",
            "gauge",
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for t in &topics {
            let v = match name {
                "fanlog_topic_next_seq" => t.next_seq,
                "fanlog_topic_first_seq" => t.first_seq,
                _ => t.bytes,
            };
            let _ = writeln!(out, "{name}{{topic=\"{}\"}} {v}", escape(t.name.as_str()));
        }
    }
    let mut r = out.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    Ok(r)
}

/// Counts every HTTP refusal (4xx and 5xx) by status.
pub(crate) async fn count_refusals(
    State(s): State<EdgeState>,
    req: Request,
    next: Next,
) -> Response {
    let r = next.run(req).await;
    if r.status().is_client_error() || r.status().is_server_error() {
        s.broker
            .metrics()
            .refused("http", r.status().as_u16().to_string());
    }
    r
}
