//! `GET /topics/{topic}/poll?after=SEQ&timeout=SECS`: long polling, for
//! clients that can do nothing but plain requests.
//!
//! The answer comes the moment a message past `after` exists (with what else
//! is ready, up to a page), or after the timeout with an empty page. Either
//! way it says `next`, where the following poll continues, so a poll loop
//! sees every message once.

use crate::MetricsExt;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures_util::StreamExt;
use serde::Deserialize;

use super::auth::{Granted, Read};
use super::json::{self, GapJson, Page};
use super::openapi::TopicPath;
use super::{ApiError, EdgeState};
use fanlog_broker::{Event, StartFrom};

/// The longest a poll waits.
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PollQuery {
    /// The last seq seen: the answer starts after it (default: the live
    /// tail). A page's `next` minus one.
    after: Option<u64>,
    /// Instead of `after`: from the first message at or after this time.
    from_time: Option<String>,
    /// Seconds to wait for a message (default 30, at most 60).
    #[param(minimum = 0.0)]
    timeout: Option<f64>,
    /// Messages at most (default 100, at most 1000).
    limit: Option<usize>,
}

/// `GET /topics/{topic}/poll`
#[utoipa::path(
    get,
    path = "/topics/{topic}/poll",
    operation_id = "pollMessages",
    tag = "streams",
    params(TopicPath, PollQuery),
    responses((status = OK, description = "As soon as a message past `after` exists: it and what else is ready, up to a page; after the timeout: an empty page. Either way `next` is where the next poll continues", body = Page)),
)]
pub(crate) async fn poll(
    State(s): State<EdgeState>,
    granted: Granted<Read>,
    query: Result<Query<PollQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Granted { topic, caller, .. } = granted;
    let Query(q) = query?;
    let timeout = match q.timeout {
        None => DEFAULT_TIMEOUT,
        Some(t) if t.is_finite() && t >= 0.0 => Duration::from_secs_f64(t).min(MAX_TIMEOUT),
        Some(t) => {
            return Err(ApiError::bad_request(format!(
                "timeout {t} is not a number of seconds"
            )));
        }
    };
    let limit = json::page_limit(q.limit);
    let after = q
        .after
        .map(|after| {
            after
                .checked_add(1)
                .ok_or_else(|| ApiError::bad_request("after is the last possible seq"))
        })
        .transpose()?;
    let from = json::start_from(after, q.from_time.as_deref(), StartFrom::Latest)?;
    // Opened or made on the blocking pool, not on this thread.
    let mut sub = s
        .broker
        .subscribe_ready(&topic, from, caller.may_publish(&topic))
        .await?
        .verified();
    let mut page = Page::empty(sub.position());
    let first = tokio::select! {
        ev = sub.next() => ev,
        () = tokio::time::sleep(timeout) => return Ok(json::body(StatusCode::OK, &page)),
        () = s.shutdown.cancelled() => return Ok(json::body(StatusCode::OK, &page)),
    };
    // Then whatever else is ready now, up to a page.
    let mut bytes = 0;
    let mut next = first.transpose()?;
    while let Some(ev) = next {
        match ev {
            Event::Gap { from, to } => {
                page.gap = Some(GapJson { from, to });
                page.next = to;
            }
            Event::Record(r) => {
                if !page.push(&r, limit, s.config.page_bytes, &mut bytes) {
                    break;
                }
            }
        }
        next = sub.try_next()?;
    }
    s.broker
        .metrics()
        .delivery_counter("poll")
        .inc_by(page.messages.len() as u64);
    Ok(json::body(StatusCode::OK, &page))
}
