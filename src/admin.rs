//! `fanlog admin`: topic, consumer-group and hook administration over the
//! broker's HTTP API (an admin token when the broker has tokens). Prints
//! the broker's JSON answer.

use anyhow::Context;
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// The broker's HTTP address: `host:port` or a URL (`--https`
    /// listeners: an https:// URL).
    #[arg(
        long,
        default_value = "http://127.0.0.1:7480",
        global = true,
        env = "FANLOG_HTTP"
    )]
    http: String,
    /// A token with admin rights.
    #[arg(long, global = true, env = "FANLOG_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    action: Action,
}

/// The HTTP base URL of `addr`: a URL as given, `host:port` as http.
pub(crate) fn base_url(addr: &str) -> String {
    let addr = addr.trim_end_matches('/');
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Create a topic with its own settings (kept across restarts).
    Create {
        topic: String,
        /// always | interval:MS | never.
        #[arg(long)]
        fsync: Option<String>,
        #[arg(long)]
        retention_bytes: Option<u64>,
        /// Like `7days` or `12h`.
        #[arg(long)]
        retention_age: Option<String>,
        #[arg(long)]
        segment_bytes: Option<u64>,
        #[arg(long)]
        max_message_bytes: Option<usize>,
    },
    /// Delete a topic, its messages and its consumer offsets.
    Delete { topic: String },
    /// Retention now: remove the segments whose messages all lie below SEQ.
    Truncate {
        topic: String,
        #[arg(long)]
        before: u64,
    },
    /// List a topic's consumer groups with their offsets and lag (and the
    /// figures of the work-sharing groups running).
    Groups { topic: String },
    /// A work-sharing group's options and figures: members, floor,
    /// pending, in flight, redelivered, dead-lettered, oldest unacked.
    Group { topic: String, group: String },
    /// Move a group's offset to a seq or to a time (RFC 3339).
    Reset {
        topic: String,
        group: String,
        /// A seq, or an RFC 3339 time (the first message at or after it).
        #[arg(long)]
        to: String,
    },
    /// List hooks with their cursors, lag and last error.
    Hooks,
    /// Stop delivering to a hook (its cursor is kept).
    Pause { id: String },
    /// Deliver to a paused or disabled hook again, from its cursor.
    Resume { id: String },
    /// Deliver a hook's messages again from SEQ.
    Replay {
        id: String,
        #[arg(long)]
        from: u64,
    },
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    use reqwest::Method;
    let (method, path, body) = match args.action {
        Action::Create {
            topic,
            fsync,
            retention_bytes,
            retention_age,
            segment_bytes,
            max_message_bytes,
        } => {
            let mut settings = serde_json::Map::new();
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    settings.insert(k.into(), v);
                }
            };
            put("fsync", fsync.map(Value::from));
            put("retention_bytes", retention_bytes.map(Value::from));
            put("retention_age", retention_age.map(Value::from));
            put("segment_bytes", segment_bytes.map(Value::from));
            put("max_message_bytes", max_message_bytes.map(Value::from));
            (
                Method::PUT,
                format!("/topics/{topic}"),
                Some(Value::Object(settings)),
            )
        }
        Action::Delete { topic } => (Method::DELETE, format!("/topics/{topic}"), None),
        Action::Truncate { topic, before } => (
            Method::POST,
            format!("/topics/{topic}/truncate"),
            Some(json!({ "before": before })),
        ),
        Action::Groups { topic } => (Method::GET, format!("/topics/{topic}/groups"), None),
        Action::Group { topic, group } => {
            (Method::GET, format!("/topics/{topic}/shared/{group}"), None)
        }
        Action::Reset { topic, group, to } => {
            let body = match to.parse::<u64>() {
                Ok(seq) => json!({ "seq": seq }),
                Err(_) => json!({ "time": to }),
            };
            (
                Method::PUT,
                format!("/topics/{topic}/groups/{group}"),
                Some(body),
            )
        }
        Action::Hooks => (Method::GET, "/hooks".into(), None),
        Action::Pause { id } => (
            Method::PATCH,
            format!("/hooks/{id}"),
            Some(json!({ "state": "paused" })),
        ),
        Action::Resume { id } => (
            Method::PATCH,
            format!("/hooks/{id}"),
            Some(json!({ "state": "active" })),
        ),
        Action::Replay { id, from } => (
            Method::POST,
            format!("/hooks/{id}/replay"),
            Some(json!({ "from": from })),
        ),
    };
    let url = format!("{}{path}", base_url(&args.http));
    let mut req = reqwest::Client::new().request(method, &url);
    if let Some(t) = &args.token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = &body {
        req = req.json(b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let text = resp.text().await.context("cannot read the answer")?;
    if !status.is_success() {
        let why = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(text);
        anyhow::bail!("{status}: {why}");
    }
    if !text.is_empty() {
        let v: Value = serde_json::from_str(&text).context("the answer is not JSON")?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::base_url;

    #[test]
    fn an_http_address_may_be_host_port_or_a_url() {
        assert_eq!(base_url("127.0.0.1:7480"), "http://127.0.0.1:7480");
        assert_eq!(base_url("http://127.0.0.1:7480/"), "http://127.0.0.1:7480");
        assert_eq!(base_url("https://h:7444"), "https://h:7444");
    }
}
