//! Webhooks over REST Hooks, against real HTTP receivers on 127.0.0.1:
//! ordered delivery with Standard Webhooks signatures, retries on the
//! schedule, `Retry-After`, 410 Gone, a restart in the middle, the SSRF
//! guard, and CloudEvents in (structured and binary) and out (binary and
//! structured, with a type filter). One test binary, a module per behaviour.

#[path = "../common/mod.rs"]
mod common;

mod cloudevents;
mod delivery;
mod lanes;
mod management;
mod targets;

pub(crate) use common::receiver::{Hit, Receiver, Reply, header, ids, post};

pub(crate) use std::sync::Arc;
pub(crate) use std::time::{Duration, Instant};

pub(crate) use axum::http::{HeaderMap, StatusCode};
pub(crate) use fanlog::server::hooks::HooksConfig;
pub(crate) use fanlog::server::hooks::sign::Secret;
pub(crate) use serde_json::{Value, json};
pub(crate) use std::sync::Mutex;
