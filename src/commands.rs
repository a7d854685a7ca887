//! The client commands: `pub`, `sub`, `topics`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use fanlog::client::{
    Client, ConnectOptions, Event, ProducerOptions, QuicOptions, StartFrom, Transport,
};
use fanlog::protocol::Message;
use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[derive(Debug, Clone, clap::Args)]
pub struct ConnArgs {
    /// Broker address of the binary protocol (default 127.0.0.1:7400, or
    /// :7401 with --quic).
    #[arg(long, env = "FANLOG_SERVER")]
    server: Option<String>,
    /// Use QUIC; --server is then the QUIC address.
    #[arg(long, conflicts_with = "tls")]
    quic: bool,
    /// Use TLS over TCP; --server is then the broker's --tls address.
    #[arg(long)]
    tls: bool,
    /// Certificate (PEM) to trust for QUIC or TLS: the broker's
    /// DATA/tls/cert.pem or its CA.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Token for the handshake.
    #[arg(long, env = "FANLOG_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl ConnArgs {
    async fn connect(&self) -> anyhow::Result<Client> {
        let default = if self.quic {
            "127.0.0.1:7401"
        } else {
            "127.0.0.1:7400"
        };
        let mut opts = ConnectOptions::new(self.server.clone().unwrap_or_else(|| default.into()));
        opts.token = self.token.clone();
        opts.client_name = concat!("fanlog-cli ", env!("CARGO_PKG_VERSION")).into();
        if self.quic || self.tls {
            let ca = self
                .ca
                .clone()
                .context("--quic and --tls need --ca FILE (the broker's certificate)")?;
            let tls = QuicOptions {
                ca: Some(ca),
                ..QuicOptions::default()
            };
            opts.transport = if self.quic {
                Transport::Quic(tls)
            } else {
                Transport::Tls(tls)
            };
        }
        // The client's error names the address already.
        Client::connect_with(opts)
            .await
            .map_err(|e| match e.code() {
                Some(fanlog::protocol::frame::ErrorCode::Unauthorized) => anyhow::anyhow!(
                    "{e}: pass --token TOKEN (or set FANLOG_TOKEN) with a token the broker knows"
                ),
                _ => anyhow::Error::new(e),
            })
    }
}

#[derive(Debug, clap::Args)]
pub struct PubArgs {
    topic: String,
    /// Messages; without any (and no --file), each line of stdin is one.
    messages: Vec<String>,
    /// A file whose bytes are one message, as they are (binary-safe);
    /// repeatable.
    #[arg(long = "file", value_name = "PATH")]
    files: Vec<PathBuf>,
    /// Content type of every message (`application/json`, ...).
    #[arg(long)]
    content_type: Option<String>,
    /// Key of every message.
    #[arg(long)]
    key: Option<String>,
    /// Idempotency key: a retry with it appends nothing (one message only).
    #[arg(long)]
    idempotency_key: Option<String>,
    #[command(flatten)]
    conn: ConnArgs,
}

impl PubArgs {
    /// A message with the flags' content type, key and idempotency key.
    fn message(&self, payload: impl Into<bytes::Bytes>) -> Message {
        let mut m = Message::new(payload.into());
        if let Some(ct) = &self.content_type {
            m = m.with_content_type(ct.clone());
        }
        if let Some(k) = &self.key {
            m.key = bytes::Bytes::from(k.clone().into_bytes());
        }
        if let Some(k) = &self.idempotency_key {
            m = m.with_idempotency_key(k.clone());
        }
        m
    }
}

#[derive(Debug, clap::Args)]
pub struct SubArgs {
    topic: String,
    /// Start: a seq, `earliest`, `latest` or an RFC 3339 time (the first
    /// message at or after it) (default: the group's offset with
    /// --group, else latest).
    #[arg(long)]
    from: Option<String>,
    /// Consumer group: resume from and commit its offset.
    #[arg(long)]
    group: Option<String>,
    /// With --group: a work-sharing group. Each message goes to one of the
    /// group's workers and is acknowledged once printed; run several to
    /// share the work (docs/shared-groups.md).
    #[arg(long, requires = "group")]
    shared: bool,
    /// Shared group: time to acknowledge before a message goes to another
    /// worker (like `30s`; default: the group's).
    #[arg(long, requires = "shared", value_parser = humantime::parse_duration)]
    ack_wait: Option<std::time::Duration>,
    /// Shared group: deliveries before a failing message is set aside.
    #[arg(long, requires = "shared")]
    max_deliver: Option<u32>,
    /// Shared group: messages this worker holds unacknowledged at most.
    #[arg(long, requires = "shared")]
    max_inflight: Option<u32>,
    /// Shared group: messages with the same key go to one worker at a
    /// time, in seq order.
    #[arg(long, requires = "shared")]
    key_order: bool,
    /// Exit after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Read up to the topic's end as it is when the command starts, then
    /// exit (a snapshot, not a tail).
    #[arg(long)]
    to_end: bool,
    /// One JSON object per line: {"seq", "time", "content_type", "key",
    /// "data"} (data as a string when UTF-8, else base64 with
    /// "encoding": "base64"), for jq.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Debug, clap::Args)]
pub struct TopicsArgs {
    #[command(flatten)]
    conn: ConnArgs,
}

pub async fn publish(args: PubArgs) -> anyhow::Result<()> {
    let given = args.messages.len() + args.files.len();
    if args.idempotency_key.is_some() && given != 1 {
        bail!("--idempotency-key names one message: give exactly one MESSAGE or --file");
    }
    let mut msgs: Vec<Message> = Vec::with_capacity(given);
    for m in &args.messages {
        msgs.push(args.message(m.clone()));
    }
    for path in &args.files {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        msgs.push(args.message(bytes));
    }
    let client = args.conn.connect().await?;
    let mut out = tokio::io::stdout();
    if !msgs.is_empty() {
        for seq in client.publish_batch(&args.topic, msgs).await? {
            out.write_all(format!("{seq}\n").as_bytes()).await?;
        }
        out.flush().await?;
        return Ok(());
    }
    // Stream stdin through a batching producer; print seqs in order as they
    // are acknowledged.
    let producer = client.producer(&args.topic, ProducerOptions::default());
    let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
    let printer = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        while let Some(receipt) = rx.recv().await {
            let seq: u64 = receipt.await?;
            out.write_all(format!("{seq}\n").as_bytes()).await?;
            if rx.is_empty() {
                out.flush().await?;
            }
        }
        out.flush().await?;
        anyhow::Ok(())
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let receipt = producer.send(args.message(line)).await?;
        if tx.send(receipt).await.is_err() {
            break;
        }
    }
    drop(tx);
    printer.await.context("printer task")??;
    Ok(())
}

fn parse_from(s: &str) -> anyhow::Result<StartFrom> {
    Ok(match s {
        "earliest" => StartFrom::Earliest,
        "latest" => StartFrom::Latest,
        n if n.bytes().all(|b| b.is_ascii_digit()) => StartFrom::Seq(
            n.parse()
                .with_context(|| format!("--from {n:?}: the seq is too large"))?,
        ),
        t => {
            // A time, or a duration back from now (`10m`, `2h`, `1day`).
            let at = humantime::parse_rfc3339_weak(t).ok().or_else(|| {
                humantime::parse_duration(t)
                    .ok()
                    .and_then(|ago| std::time::SystemTime::now().checked_sub(ago))
            });
            StartFrom::time(at.ok_or_else(|| {
                anyhow::anyhow!(
                    "--from {t:?}: expected a seq, earliest, latest, an RFC 3339 time (2026-11-29T12:00:00Z) or a duration back from now (10m, 2h)"
                )
            })?)
        }
    })
}

/// One message as a JSON line (`sub --json`).
fn json_line(d: &fanlog::client::Delivery) -> String {
    use base64::Engine;
    let mut v = serde_json::json!({
        "seq": d.seq(),
        "time": humantime::format_rfc3339_micros(
            std::time::UNIX_EPOCH + std::time::Duration::from_micros(d.timestamp_us())
        )
        .to_string(),
        "content_type": d.content_type(),
    });
    if !d.key().is_empty() {
        v["key"] = serde_json::Value::String(String::from_utf8_lossy(d.key()).into_owned());
    }
    match std::str::from_utf8(d.payload()) {
        Ok(text) => v["data"] = serde_json::Value::String(text.to_owned()),
        Err(_) => {
            v["data"] = serde_json::Value::String(
                base64::engine::general_purpose::STANDARD.encode(d.payload()),
            );
            v["encoding"] = serde_json::Value::String("base64".into());
        }
    }
    v.to_string()
}

/// The payload as UTF-8 on one line: `\`, newline, carriage return and tab
/// escaped; bytes that are not UTF-8 as `\xHH`. Lossless.
fn escape(payload: &[u8]) -> String {
    let mut out = String::with_capacity(payload.len());
    for chunk in payload.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

pub async fn subscribe(args: SubArgs) -> anyhow::Result<()> {
    if args.shared {
        return work(args).await;
    }
    let from = match (&args.from, &args.group) {
        (Some(_), Some(g)) => bail!(
            "--from with --group would move group {g:?} without saying so: reset the group with `fanlog admin` (or drop --from to resume from its offset)"
        ),
        (Some(f), None) => parse_from(f)?,
        (None, Some(g)) => StartFrom::Group(g.clone()),
        (None, None) => StartFrom::Latest,
    };
    let client = args.conn.connect().await?;
    // With --to-end: the topic's end now; the command stops there.
    let end = if args.to_end {
        let end = client
            .topics()
            .await?
            .into_iter()
            .find(|t| t.name == args.topic)
            .map_or(0, |t| t.next_seq);
        Some(end)
    } else {
        None
    };
    let mut sub = client.subscribe(&args.topic, from).await?;
    let mut out = tokio::io::stdout();
    let mut seen = 0u64;
    if args.count == Some(0) || end.is_some_and(|e| sub.start_seq() >= e) {
        return Ok(());
    }
    while let Some(ev) = sub.next().await {
        match ev? {
            Event::Record(d) => {
                let line = if args.json {
                    format!("{}\n", json_line(&d))
                } else {
                    format!("{}\t{}\n", d.seq(), escape(d.payload()))
                };
                out.write_all(line.as_bytes()).await?;
                out.flush().await?;
                if let Some(g) = &args.group {
                    client.commit(&args.topic, g, d.seq() + 1).await?;
                }
                seen += 1;
                if args.count.is_some_and(|n| seen >= n) || end.is_some_and(|e| d.seq() + 1 >= e) {
                    return Ok(());
                }
            }
            Event::Gap { from, to } => {
                eprintln!(
                    "fanlog: messages {from}..{to} cannot be read (removed by retention, or lost to corruption)"
                );
                if end.is_some_and(|e| to >= e) {
                    return Ok(());
                }
            }
        }
    }
    bail!("the subscription ended")
}

/// `fanlog sub --group G --shared`: a worker of a work-sharing group that
/// prints each message handed to it (with `--json`, its delivery count
/// too) and acknowledges it once written.
async fn work(args: SubArgs) -> anyhow::Result<()> {
    if args.from.is_some() || args.to_end {
        bail!("a shared group starts at its floor: --from and --to-end do not apply");
    }
    let group = args.group.clone().unwrap_or_default();
    let client = args.conn.connect().await?;
    let options = fanlog::client::WorkerOptions {
        ack_wait: args.ack_wait,
        max_deliver: args.max_deliver,
        max_inflight: args.max_inflight,
        key_order: args.key_order.then_some(true),
        dead_letter: None,
    };
    let mut worker = client.worker(&args.topic, &group, options).await?;
    let mut out = tokio::io::stdout();
    let mut seen = 0u64;
    if args.count == Some(0) {
        return Ok(());
    }
    while let Some(job) = worker.next().await {
        let job = job?;
        let d = job.record();
        let line = if args.json {
            let mut v: serde_json::Value = serde_json::from_str(&json_line(d))?;
            v["deliveries"] = job.deliveries().into();
            format!("{v}\n")
        } else {
            format!("{}\t{}\n", d.seq(), escape(d.payload()))
        };
        out.write_all(line.as_bytes()).await?;
        out.flush().await?;
        match job.ack().await {
            Ok(()) => {}
            // Its ack wait ran out (this worker was stopped or slow): the
            // message went to another worker, and was printed here too.
            Err(e) if e.code() == Some(fanlog::client::ErrorCode::NotHeld) => {
                eprintln!(
                    "fanlog: message {} was printed after its ack wait ran out; another worker has it: {e}",
                    d.seq()
                );
            }
            Err(e) => return Err(e.into()),
        }
        seen += 1;
        if args.count.is_some_and(|n| seen >= n) {
            return Ok(());
        }
    }
    bail!("the worker's stream ended")
}

pub async fn topics(args: TopicsArgs) -> anyhow::Result<()> {
    let client = args.conn.connect().await?;
    let mut out = tokio::io::stdout();
    for t in client.topics().await? {
        out.write_all(
            format!("{}\t{}\t{}\t{}\n", t.name, t.first_seq, t.next_seq, t.bytes).as_bytes(),
        )
        .await?;
    }
    out.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escaping_is_line_safe_and_lossless() {
        assert_eq!(escape(b"plain text"), "plain text");
        assert_eq!(escape("a\tb\nc\\d é".as_bytes()), "a\\tb\\nc\\\\d é");
        assert_eq!(escape(&[0x61, 0xff, 0x62]), "a\\xffb");
    }
}
