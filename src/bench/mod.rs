//! `fanlog bench`: the load tool.
//!
//! Workloads run against a broker over real loopback sockets: the one at
//! `--server`, or one started in this process on a temporary directory.
//! Latency is measured from each message's scheduled send time, so with
//! `--rate` (open loop) a stall shows up in the percentiles instead of
//! silently slowing the sender (no coordinated omission).

mod report;
mod workloads;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use fanlog::client::{ConnectOptions, QuicOptions, Transport};
use fanlog::{Broker, BrokerConfig, Durability, TopicConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Publishers, acknowledgements awaited with a bounded in-flight window.
    Publish,
    /// Catch-up read from seq 0 of what was published.
    Consume,
    /// Live subscribers, then publishers; latency per message.
    E2e,
    /// One publisher, `--consumers` subscribers; deliveries per second.
    Fanout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportArg {
    Tcp,
    Quic,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub workload: Workload,
    /// Transport.
    #[arg(long, value_enum, default_value = "tcp")]
    pub transport: TransportArg,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Messages to publish (default 100000 unless --duration is given).
    #[arg(long)]
    pub count: Option<u64>,
    /// Publish for this long instead of a count, e.g. `10s` or `500ms`.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Messages per publish batch.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Concurrent publishers, each on its own connection.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Concurrent subscribers, each on its own connection.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Open-loop pacing: messages per second over all publishers.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Batches in flight per publisher.
    #[arg(long, default_value_t = 16)]
    pub inflight: usize,
    /// Broker address; without it a broker runs in this process on a
    /// temporary directory.
    #[arg(long)]
    pub server: Option<String>,
    /// Certificate to trust for QUIC (with --server).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Token for the handshake.
    #[arg(long)]
    pub token: Option<String>,
    /// Durability of the in-process broker: always | interval:MS | never.
    #[arg(long, default_value = "interval:100")]
    pub fsync: Durability,
    /// Topic to use (default: a fresh one per run).
    #[arg(long)]
    pub topic: Option<String>,
    /// Print the result as one JSON object (the last line of stdout).
    #[arg(long)]
    pub json: bool,
    /// Write a self-contained HTML report with charts to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number with s, ms or m"))?;
    let secs = match unit {
        "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: unit must be s, ms or m")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("{s:?}: must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Where to connect, and what to stop at the end.
struct Target {
    options: ConnectOptions,
    embedded: Option<Embedded>,
}

struct Embedded {
    broker: Broker,
    stop: tokio::sync::watch::Sender<bool>,
    servers: tokio::task::JoinSet<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn target(args: &BenchArgs) -> anyhow::Result<Target> {
    use fanlog::broker::transport::{quic, tcp};
    let (addr, ca, embedded) = match &args.server {
        Some(s) => (s.clone(), args.ca.clone(), None),
        None => {
            let dir = tempfile::tempdir().context("temporary directory")?;
            let config = BrokerConfig {
                topic: TopicConfig {
                    durability: args.fsync,
                    // Keep the disk bounded however long the run.
                    retention_bytes: Some(4 << 30),
                    max_message_bytes: (args.size + 1024).max(1 << 20),
                    ..TopicConfig::default()
                },
            };
            let broker = Broker::open(dir.path(), config)?;
            let (stop, rx) = tokio::sync::watch::channel(false);
            let stopped = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            let mut servers = tokio::task::JoinSet::new();
            let (addr, ca) = match args.transport {
                TransportArg::Tcp => {
                    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                    let a = l.local_addr()?;
                    servers.spawn(tcp::serve(
                        l,
                        broker.clone(),
                        tcp::TcpConfig::default(),
                        stopped(rx),
                    ));
                    (a.to_string(), None)
                }
                TransportArg::Quic => {
                    let identity = quic::identity(dir.path(), None, None)?;
                    let cert = identity.cert_path.clone();
                    let cfg = quic::QuicConfig::default();
                    let e = quic::endpoint(([127, 0, 0, 1], 0).into(), identity, &cfg)?;
                    let a = e.local_addr()?;
                    servers.spawn(quic::serve(e, broker.clone(), cfg, stopped(rx)));
                    (a.to_string(), Some(cert))
                }
            };
            (
                addr,
                ca,
                Some(Embedded {
                    broker,
                    stop,
                    servers,
                    _dir: dir,
                }),
            )
        }
    };
    let mut options = ConnectOptions::new(addr);
    options.token = args.token.clone();
    options.client_name = "fanlog-bench".into();
    if args.transport == TransportArg::Quic {
        let ca = ca.context("--transport quic with --server needs --ca FILE")?;
        options.transport = Transport::Quic(QuicOptions {
            ca: Some(ca),
            ..QuicOptions::default()
        });
    }
    Ok(Target { options, embedded })
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.size >= 16,
        "--size must be at least 16 bytes (the payload carries a timestamp)"
    );
    anyhow::ensure!(
        args.batch >= 1 && args.producers >= 1 && args.consumers >= 1 && args.inflight >= 1,
        "--batch, --producers, --consumers and --inflight must be at least 1"
    );
    let target = target(&args).await?;
    let result = workloads::run(&args, &target.options).await;
    if let Some(e) = target.embedded {
        let _ = e.stop.send(true);
        let mut servers = e.servers;
        while servers.join_next().await.is_some() {}
        e.broker.close()?;
    }
    let result = result?;
    if let Some(path) = &args.html {
        std::fs::write(path, report::html(&result))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    println!("{}", result.summary());
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        for bad in ["", "x", "10h", "0s", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
