//! `GET /metrics`: Prometheus text (see [`crate::metrics`]). An admin token
//! is needed when the broker has tokens.

use crate::MetricsExt;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::Caller;
use super::{ApiError, EdgeState};

/// `GET /metrics`
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "meta",
    responses((status = OK, description = "Prometheus text exposition (admin tokens)", content_type = "text/plain", body = String)),
)]
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
    let mut r = s.broker.metrics().render().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
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
