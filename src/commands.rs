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
    /// Broker address (default 127.0.0.1:7400, or :7401 with --quic).
    #[arg(long)]
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
    #[arg(long)]
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
        let addr = opts.addr.clone();
        Client::connect_with(opts)
            .await
            .with_context(|| format!("cannot connect to {addr}"))
    }
}

#[derive(Debug, clap::Args)]
pub struct PubArgs {
    topic: String,
    /// Messages; without any, each line of stdin is one.
    messages: Vec<String>,
    #[command(flatten)]
    conn: ConnArgs,
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
    /// Exit after this many messages.
    #[arg(long)]
    count: Option<u64>,
    #[command(flatten)]
    conn: ConnArgs,
}

#[derive(Debug, clap::Args)]
pub struct TopicsArgs {
    #[command(flatten)]
    conn: ConnArgs,
}

pub async fn publish(args: PubArgs) -> anyhow::Result<()> {
    let client = args.conn.connect().await?;
    let mut out = tokio::io::stdout();
    if !args.messages.is_empty() {
        let msgs: Vec<Message> = args.messages.into_iter().map(Message::new).collect();
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
        let receipt = producer.send(Message::new(line)).await?;
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
        t => StartFrom::time(humantime::parse_rfc3339_weak(t).map_err(|_| {
            anyhow::anyhow!(
                "--from {t:?}: expected a seq, earliest, latest or an RFC 3339 time (2026-11-29T12:00:00Z)"
            )
        })?),
    })
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
    let from = match (&args.from, &args.group) {
        (Some(f), _) => parse_from(f)?,
        (None, Some(g)) => StartFrom::Group(g.clone()),
        (None, None) => StartFrom::Latest,
    };
    let client = args.conn.connect().await?;
    let mut sub = client.subscribe(&args.topic, from).await?;
    let mut out = tokio::io::stdout();
    let mut seen = 0u64;
    if args.count == Some(0) {
        return Ok(());
    }
    while let Some(ev) = sub.next().await {
        match ev? {
            Event::Record(d) => {
                out.write_all(format!("{}\t{}\n", d.seq(), escape(d.payload())).as_bytes())
                    .await?;
                out.flush().await?;
                if let Some(g) = &args.group {
                    client.commit(&args.topic, g, d.seq() + 1).await?;
                }
                seen += 1;
                if args.count.is_some_and(|n| seen >= n) {
                    return Ok(());
                }
            }
            Event::Gap { from, to } => {
                eprintln!(
                    "fanlog: messages {from}..{to} were removed by retention before they were read"
                );
            }
        }
    }
    bail!("the subscription ended")
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
