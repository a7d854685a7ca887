//! `GET /asyncapi.json`: the broker described as an AsyncAPI 3.0 document.
//! Servers are the listeners (the binary protocol over TCP and QUIC, and
//! this HTTP edge as `http` for REST, SSE and long poll and as `ws`); each
//! topic is a channel, with the broker's two operations on it: it receives
//! publishes and sends to subscribers.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::{EdgeState, json};

/// A listener to list under `servers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiServer {
    /// Key in `servers`: `tcp`, `quic`.
    pub name: String,
    /// `HOST:PORT`.
    pub host: String,
    /// AsyncAPI protocol name.
    pub protocol: String,
    /// What the server is, in a sentence.
    pub description: String,
}

/// JSON Pointer escaping of one reference token.
fn pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// `GET /asyncapi.json`
#[utoipa::path(
    get,
    path = "/asyncapi.json",
    operation_id = "asyncapi",
    tag = "meta",
    responses((status = OK, description = "The AsyncAPI 3.0 document of the broker's servers and channels (one per topic the caller may see)", content_type = "application/json", body = serde_json::Value)),
)]
pub(crate) async fn document(
    State(s): State<EdgeState>,
    headers: HeaderMap,
    axum::Extension(caller): axum::Extension<super::auth::Caller>,
) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()));
    let public_base = match (&s.config.public_url, host) {
        (Some(base), _) => base.clone(),
        (None, Some(host)) => format!("http://{host}"),
        (None, None) => "http://localhost".to_owned(),
    };
    let mut servers = Map::new();
    for srv in &s.config.api_servers {
        servers.insert(
            srv.name.clone(),
            json!({
                "host": srv.host,
                "protocol": srv.protocol,
                "description": srv.description,
            }),
        );
    }
    if let Some(host) = host {
        servers.insert(
            "http".into(),
            json!({
                "host": host,
                "protocol": "http",
                "pathname": "/topics",
                "description": "REST publish and paged reads, Server-Sent Events (`/{topic}/events`, resume with Last-Event-ID) and long polling (`/{topic}/poll`).",
            }),
        );
        servers.insert(
            "ws".into(),
            json!({
                "host": host,
                "protocol": "ws",
                "pathname": "/topics",
                "description": "WebSocket per topic (`/{topic}/ws?from=SEQ`): JSON text frames, publish with acks.",
            }),
        );
    }
    let mut channels = Map::new();
    let mut operations = Map::new();
    for t in s.broker.topics() {
        if !caller.grant.can_see(t.name.as_str()) {
            continue;
        }
        let name = t.name.to_string();
        let reference = format!("#/channels/{}", pointer(&name));
        channels.insert(
            name.clone(),
            json!({
                "address": name,
                "title": name,
                "description": format!(
                    "Topic {name}: an append-only log, seq {} to {} stored. The seq is the cursor on every interface.",
                    t.first_seq, t.next_seq
                ),
                "messages": {
                    "message": { "$ref": "#/components/messages/message" },
                    "cloudEvent": { "$ref": "#/components/messages/cloudEvent" },
                    "job": { "$ref": "#/components/messages/job" },
                    "settle": { "$ref": "#/components/messages/settle" },
                },
            }),
        );
        // Work-sharing groups of the topic (docs/shared-groups.md), with
        // the ones running now named.
        let running: Vec<String> = fanlog_broker::work::running(&s.broker)
            .iter()
            .map(fanlog_broker::work::SharedGroup::info)
            .filter(|g| g.topic == name)
            .map(|g| g.group)
            .collect();
        let running = if running.is_empty() {
            String::new()
        } else {
            format!(" Running now: {}.", running.join(", "))
        };
        operations.insert(
            format!("{name}.work"),
            json!({
                "action": "send",
                "title": format!("Share the work of {name}"),
                "summary": "Each message to one worker of a work-sharing group.",
                "description": format!(
                    "Workers join a group (`POST /topics/{name}/shared/GROUP/fetch`, the WebSocket `/topics/{name}/shared/GROUP/ws`, or a Join in protocol version 2) and get each message once; one not acknowledged within the group's ack wait goes to another worker with its delivery count, one that fails max_deliver times is set aside in the dead-letter topic, and with key order the messages of one key go to one worker at a time, in seq order.{running}"
                ),
                "channel": { "$ref": reference },
                "messages": [{ "$ref": format!("{reference}/messages/job") }],
            }),
        );
        operations.insert(
            format!("{name}.settle"),
            json!({
                "action": "receive",
                "title": format!("Settle work of {name}"),
                "summary": "A worker acknowledges messages, or nacks one to have it delivered again.",
                "channel": { "$ref": reference },
                "messages": [{ "$ref": format!("{reference}/messages/settle") }],
            }),
        );
        let messages = json!([
            { "$ref": format!("{reference}/messages/message") },
            { "$ref": format!("{reference}/messages/cloudEvent") },
        ]);
        for (op, action, title, summary) in [
            (
                "publish",
                "receive",
                "Publish to",
                "The broker appends each message and answers with its seq.",
            ),
            (
                "subscribe",
                "send",
                "Subscribe to",
                "The broker sends every message from a start seq, in order.",
            ),
        ] {
            operations.insert(
                format!("{name}.{op}"),
                json!({
                    "action": action,
                    "title": format!("{title} {name}"),
                    "summary": summary,
                    "channel": { "$ref": reference },
                    "messages": messages,
                }),
            );
        }
    }
    let doc = json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "fanlog",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A pub/sub broker with a durable, mmap-backed log per topic. Every message has a per-topic seq; consumers resume from a seq over TCP, QUIC, WebSocket, Server-Sent Events, long polling and webhooks.",
            // The HTTP API's request/response contract, for client generators.
            "externalDocs": {
                "description": "The HTTP API: an OpenAPI 3.1 document",
                "url": format!("{}/openapi.json", public_base),
            },
        },
        "defaultContentType": "application/octet-stream",
        "servers": Value::Object(servers),
        "channels": Value::Object(channels),
        "operations": Value::Object(operations),
        "components": {
            "messages": {
                "message": {
                    "name": "message",
                    "title": "A message",
                    "summary": "Any bytes, kept with the Content-Type it was published with.",
                    "payload": {},
                },
                "job": {
                    "name": "job",
                    "title": "A message handed to one worker",
                    "summary": "A message of a work-sharing group, as a fetch or the group's WebSocket sends it: the message's fields plus its delivery count and key.",
                    "contentType": "application/json",
                    "payload": {
                        "type": "object",
                        "required": ["seq", "time", "data", "deliveries"],
                        "properties": {
                            "seq": { "type": "integer", "minimum": 0 },
                            "time": { "type": "string", "format": "date-time" },
                            "content_type": { "type": ["string", "null"] },
                            "data": { "type": "string" },
                            "encoding": { "type": "string", "const": "base64" },
                            "deliveries": { "type": "integer", "minimum": 1, "description": "1 on the first delivery." },
                            "key": { "type": "string" },
                        },
                    },
                },
                "settle": {
                    "name": "settle",
                    "title": "An ack or a nack",
                    "summary": "Sent by a worker over the group's WebSocket (or as the body of .../ack and .../nack).",
                    "contentType": "application/json",
                    "payload": {
                        "oneOf": [
                            {
                                "type": "object",
                                "required": ["op", "seqs"],
                                "properties": {
                                    "op": { "const": "ack" },
                                    "seqs": { "type": "array", "items": { "type": "integer", "minimum": 0 } },
                                },
                            },
                            {
                                "type": "object",
                                "required": ["op", "seq"],
                                "properties": {
                                    "op": { "const": "nack" },
                                    "seq": { "type": "integer", "minimum": 0 },
                                    "delay": { "type": "string", "description": "Like 500ms or 10s." },
                                    "error": { "type": "string" },
                                },
                            },
                        ],
                    },
                },
                "cloudEvent": {
                    "name": "cloudEvent",
                    "title": "A CloudEvent (binary mode)",
                    "summary": "A CloudEvents 1.0 event: data as the payload, attributes as ce-* headers.",
                    "headers": {
                        "type": "object",
                        "required": ["ce-specversion", "ce-id", "ce-source", "ce-type"],
                        "properties": {
                            "ce-specversion": { "type": "string", "const": "1.0" },
                            "ce-id": { "type": "string", "minLength": 1 },
                            "ce-source": { "type": "string", "minLength": 1 },
                            "ce-type": { "type": "string", "minLength": 1 },
                            "ce-time": { "type": "string", "format": "date-time" },
                            "ce-sequence": { "type": "string", "description": "The seq, zero-padded to 20 digits." },
                        },
                    },
                    "payload": {},
                },
            },
        },
    });
    json::body(StatusCode::OK, &doc)
}
