//! `fanlog bench`: the load tool.
//!
//! Workloads run against a broker over real loopback sockets: the one at
//! `--server`, or one started in this process on a temporary directory.
//! Latency is measured from each message's scheduled send time, so with
//! `--rate` (open loop) a stall shows up in the percentiles instead of
//! silently slowing the sender (no coordinated omission).

mod feeds;
mod report;
mod workloads;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use fanlog::client::{ConnectOptions, QuicOptions, Transport};
use fanlog::server::Server;
use fanlog::{Broker, BrokerConfig, Durability, TopicConfig};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
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
    /// `--consumers` idle subscriptions, each on its own connection: the
    /// broker's resident memory per connection, then `--count` (default 1)
    /// broadcasts that every subscriber must receive. Without --server the
    /// broker runs as a child process, so that its memory is its own.
    Idle,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TransportArg {
    /// The binary protocol over TCP.
    Tcp,
    /// The binary protocol over QUIC.
    Quic,
    /// Subscribers on the WebSocket edge; publishers on TCP.
    Ws,
    /// Subscribers on the Server-Sent Events edge; publishers on TCP.
    Sse,
}

impl TransportArg {
    /// Whether subscribers use the HTTP edge.
    fn is_http(self) -> bool {
        matches!(self, Self::Ws | Self::Sse)
    }
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
    /// Broker address (TCP or QUIC); without it a broker runs in this
    /// process on a temporary directory.
    #[arg(long)]
    pub server: Option<String>,
    /// HTTP edge of --server (for --transport ws|sse), e.g. `127.0.0.1:7480`;
    /// several, comma-separated (edges of one cluster), spread ws and sse
    /// subscribers over them in turn.
    #[arg(long)]
    pub http: Option<String>,
    /// Process id of --server, to read its memory in the idle workload;
    /// several, comma-separated, add up (the edges of --http).
    #[arg(long, value_delimiter = ',')]
    pub broker_pid: Vec<u32>,
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
    /// Save the run (its figures, timeline and latency curve) as JSON to
    /// this file, for a later `--compare`.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Compare with a run saved by `--save` (or a `--json` output);
    /// repeatable. The first is the baseline: the `--html` report shows
    /// every run side by side with its ratio to it, and stdout a line per run.
    #[arg(long)]
    pub compare: Vec<PathBuf>,
    /// The run's name in comparisons (default: the saved file's name, or
    /// "this run").
    #[arg(long)]
    pub label: Option<String>,
    /// Cluster mode: instead of one in-process broker, two in-process
    /// edges over the NATS JetStream cluster at these servers
    /// (comma-separated `nats://HOST:PORT`); publishers use the first,
    /// subscribers the second, so latency is measured edge to edge.
    #[arg(long, value_name = "URLS")]
    pub cluster: Option<String>,
    /// Replicas of the run's stream in cluster mode.
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
}

/// Deletes the run's topic from the live broker through `--http`, or says
/// how to (the binary protocol has no deletion).
async fn remove_topic(args: &BenchArgs, topic: &str) {
    let Some(http) = args.http.as_deref().and_then(|h| h.split(',').next()) else {
        eprintln!(
            "bench topic {topic} is left on the broker: give --http (its HTTP edge) to have it removed, or `fanlog admin delete {topic}`"
        );
        return;
    };
    let base = crate::admin::base_url(http);
    let mut req = reqwest::Client::new().delete(format!("{base}/topics/{topic}"));
    if let Some(t) = &args.token {
        req = req.bearer_auth(t);
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => eprintln!("bench topic {topic} removed"),
        Ok(r) => eprintln!("bench topic {topic} not removed: HTTP {}", r.status()),
        Err(e) => eprintln!("bench topic {topic} not removed: {e}"),
    }
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
pub(crate) struct Target {
    /// Native connections of publishers.
    options: ConnectOptions,
    /// Native connections of subscribers (another edge in cluster mode).
    sub_options: ConnectOptions,
    /// `http://HOST:PORT` of each HTTP edge, for ws and sse subscribers
    /// (spread over them in turn).
    http: Vec<String>,
    /// Subscribers placed on `http` so far.
    http_turn: std::sync::atomic::AtomicUsize,
    /// The broker's processes, to read their memory from.
    broker_pid: Vec<u32>,
    embedded: Option<Embedded>,
    /// The second edge, in cluster mode.
    second: Option<Embedded>,
    child: Option<ChildBroker>,
}

impl Target {
    /// The broker's resident memory in KiB (its processes' together), when
    /// its processes are known.
    fn rss_kb(&self) -> Option<u64> {
        if self.broker_pid.is_empty() {
            return None;
        }
        self.broker_pid.iter().map(|&pid| rss_kb_of(pid)).sum()
    }

    /// The HTTP edge for the next ws or sse subscriber: each in turn.
    fn next_http(&self) -> Option<&str> {
        let i = self
            .http_turn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (!self.http.is_empty()).then(|| self.http[i % self.http.len()].as_str())
    }
}

/// A process's resident memory in KiB.
fn rss_kb_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

struct Embedded {
    server: Server,
    _dir: tempfile::TempDir,
}

/// A `fanlog serve` child process on a temporary directory.
struct ChildBroker {
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl ChildBroker {
    async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let pid = rustix::process::Pid::from_raw(pid as i32).context("child pid")?;
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .context("the broker did not stop within 30 s")??;
        anyhow::ensure!(status.success(), "the broker exited with {status}");
        Ok(())
    }
}

/// Listening addresses of a broker.
#[derive(Debug, Default, Clone)]
struct Addrs {
    tcp: Option<String>,
    quic: Option<String>,
    http: Option<String>,
    ca: Option<PathBuf>,
}

/// Runs this binary's `serve` on a temporary directory with every listener
/// it needs on port 0, and reads the addresses it prints.
async fn spawn_broker(args: &BenchArgs) -> anyhow::Result<(ChildBroker, Addrs)> {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().context("temporary directory")?;
    let exe = std::env::current_exe().context("cannot find this program")?;
    let port0 = |on: bool| if on { "127.0.0.1:0" } else { "off" };
    let room = (args.consumers + args.producers + 100)
        .max(10_000)
        .to_string();
    let mut child = tokio::process::Command::new(exe)
        .arg("serve")
        .arg("--data")
        .arg(dir.path())
        .args(["--tcp", "127.0.0.1:0"])
        .args(["--quic", port0(args.transport == TransportArg::Quic)])
        .args(["--http", port0(args.transport.is_http())])
        .args(["--fsync", &args.fsync.to_string()])
        // Room for every subscriber and publisher the workload opens, all
        // from 127.0.0.1, whatever the defaults.
        .env("FANLOG_LIMITS__MAX_CONNECTIONS", &room)
        .env("FANLOG_LIMITS__MAX_CONNECTIONS_PER_IP", &room)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the broker")?;
    let stdout = child.stdout.take().context("broker stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut addrs = Addrs::default();
    let wanted = 1
        + usize::from(args.transport == TransportArg::Quic)
        + usize::from(args.transport.is_http());
    let mut seen = 0;
    while seen < wanted {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("the broker did not start within 30 s")??
            .context("the broker exited before it listened")?;
        let mut words = line.split_whitespace();
        let (Some("listening"), Some(kind), Some(addr)) =
            (words.next(), words.next(), words.next())
        else {
            continue;
        };
        let slot = match kind {
            "tcp" => &mut addrs.tcp,
            "quic" => &mut addrs.quic,
            "http" => &mut addrs.http,
            _ => continue,
        };
        *slot = Some(addr.to_owned());
        seen += 1;
    }
    if args.transport == TransportArg::Quic {
        addrs.ca = Some(dir.path().join("tls").join("cert.pem"));
    }
    Ok((ChildBroker { child, _dir: dir }, addrs))
}

/// A broker in this process on a temporary directory, served by the same
/// composition root as `fanlog serve`.
async fn embed_broker(args: &BenchArgs) -> anyhow::Result<(Embedded, Addrs)> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let config = bench_config(args);
    let broker = match &args.cluster {
        None => Broker::open(dir.path(), config)?,
        Some(urls) => {
            use fanlog::storage::jetstream::{ClusterOptions, JsStorage};
            let mut opts =
                ClusterOptions::new(urls.split(',').map(|u| u.trim().to_owned()).collect());
            opts.replicas = args.replicas;
            let max = config.topic.max_message_bytes;
            let storage = tokio::task::spawn_blocking(move || JsStorage::connect(opts, max))
                .await?
                .context("cannot join the cluster")?;
            Broker::with_storage(dir.path(), Box::new(storage), config)?
        }
    };
    serve_embedded(args, broker, dir).await
}

/// The in-process broker's settings.
fn bench_config(args: &BenchArgs) -> BrokerConfig {
    BrokerConfig {
        topic: TopicConfig {
            durability: args.fsync,
            // Keep the disk bounded however long the run.
            retention_bytes: Some(4 << 30),
            max_message_bytes: (args.size + 1024).max(1 << 20),
            ..TopicConfig::default()
        },
        ..BrokerConfig::default()
    }
}

/// Serves `broker` on port 0 with the listeners the run needs.
async fn serve_embedded(
    args: &BenchArgs,
    broker: Broker,
    dir: tempfile::TempDir,
) -> anyhow::Result<(Embedded, Addrs)> {
    let any: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut builder = Server::builder(broker).tcp(any);
    if args.transport == TransportArg::Quic {
        builder = builder.quic(any);
    }
    if args.transport.is_http() {
        builder = builder.http(any);
    }
    let server = builder.start().await?;
    let addr = |kind: &str| server.addr(kind).map(|a| a.to_string());
    let addrs = Addrs {
        tcp: addr("tcp"),
        quic: addr("quic"),
        http: addr("http"),
        ca: server.certificate().map(std::path::Path::to_owned),
    };
    Ok((Embedded { server, _dir: dir }, addrs))
}

async fn target(args: &BenchArgs) -> anyhow::Result<Target> {
    anyhow::ensure!(
        args.cluster.is_none() || args.server.is_none(),
        "--cluster runs its own edges: leave out --server"
    );
    // In cluster mode subscribers use a second edge.
    let second = match &args.cluster {
        Some(_) => Some(embed_broker(args).await?),
        None => None,
    };
    let (addrs, embedded, child, broker_pid) = match &args.server {
        Some(s) => {
            let mut addrs = Addrs {
                http: args.http.clone(),
                ca: args.ca.clone(),
                ..Addrs::default()
            };
            if args.transport == TransportArg::Quic {
                addrs.quic = Some(s.clone());
            } else {
                addrs.tcp = Some(s.clone());
            }
            (addrs, None, None, args.broker_pid.clone())
        }
        None if args.workload == Workload::Idle => {
            let (child, addrs) = spawn_broker(args).await?;
            let pid = child.child.id().into_iter().collect();
            (addrs, None, Some(child), pid)
        }
        None => {
            let (embedded, addrs) = embed_broker(args).await?;
            (addrs, Some(embedded), None, Vec::new())
        }
    };
    let sub_addrs = second
        .as_ref()
        .map_or_else(|| addrs.clone(), |(_, a)| a.clone());
    let options = connect_options(args, &addrs)?;
    let sub_options = connect_options(args, &sub_addrs)?;
    let http = if args.transport.is_http() {
        let a = sub_addrs
            .http
            .context("--transport ws|sse with --server needs --http ADDR")?;
        a.split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| {
                if a.contains("://") {
                    a.to_owned()
                } else {
                    format!("http://{a}")
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(Target {
        options,
        sub_options,
        http,
        http_turn: std::sync::atomic::AtomicUsize::new(0),
        broker_pid,
        embedded,
        second: second.map(|(e, _)| e),
        child,
    })
}

/// How the run's clients reach the broker at `addrs`.
fn connect_options(args: &BenchArgs, addrs: &Addrs) -> anyhow::Result<ConnectOptions> {
    let mut options = if args.transport == TransportArg::Quic {
        let mut o = ConnectOptions::new(addrs.quic.clone().context("no QUIC address")?);
        let ca = addrs
            .ca
            .clone()
            .context("--transport quic with --server needs --ca FILE")?;
        o.transport = Transport::Quic(QuicOptions {
            ca: Some(ca),
            ..QuicOptions::default()
        });
        o
    } else {
        ConnectOptions::new(addrs.tcp.clone().context("no TCP address")?)
    };
    options.token = args.token.clone();
    options.client_name = "fanlog-bench".into();
    Ok(options)
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
    anyhow::ensure!(
        !(args.transport.is_http() && args.workload == Workload::Publish),
        "--transport ws|sse is for subscribers (consume, e2e, fanout, idle); publishers use TCP"
    );
    anyhow::ensure!(
        args.compare.is_empty() || args.html.is_some(),
        "--compare needs --html FILE: the comparison is a report"
    );
    // Read the runs to compare before spending time on this one.
    let mut runs = args
        .compare
        .iter()
        .map(|p| report::load(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let started = std::time::SystemTime::now();
    // A fresh topic per run unless one is named; on a live broker it is
    // removed afterwards (over its HTTP edge), so runs leave nothing behind.
    let fresh = args.topic.is_none();
    let mut args = args;
    let topic = args
        .topic
        .get_or_insert_with(|| format!("bench-{}-{}", std::process::id(), rand::random::<u32>()))
        .clone();
    let mut target = target(&args).await?;
    let result = workloads::run(&args, &target).await;
    if fresh && args.server.is_some() {
        remove_topic(&args, &topic).await;
    }
    if fresh && args.cluster.is_some() {
        // The run's stream holds cluster storage (its retention limit is
        // reserved on every replica) until it is deleted.
        if let Some(e) = &target.embedded {
            let broker = e.server.broker().clone();
            let t = topic.clone();
            let _ = tokio::task::spawn_blocking(move || broker.delete_topic(&t)).await;
        }
    }
    if let Some(e) = target.embedded.take() {
        e.server.stop().await?;
    }
    if let Some(e) = target.second.take() {
        e.server.stop().await?;
    }
    if let Some(child) = target.child.take() {
        child.stop().await?;
    }
    let mut result = result?;
    result.started = humantime::format_rfc3339_seconds(started).to_string();
    if let Some(path) = &args.save {
        std::fs::write(path, serde_json::to_string_pretty(&result)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("run saved to {}", path.display());
    }
    if let Some(path) = &args.html {
        let mut this = result.clone();
        if !runs.is_empty() && this.label.is_none() {
            this.label = Some("this run".to_owned());
        }
        runs.push(this);
        std::fs::write(path, report::html(&runs))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    if let [baseline, _, ..] = runs.as_slice() {
        let name = |r: &report::BenchResult| r.label.clone().unwrap_or_default();
        for r in &runs {
            println!(
                "{}: {:.0} msgs/s, {:.2}x {}",
                name(r),
                r.msgs_per_s,
                r.msgs_per_s / baseline.msgs_per_s.max(1e-9),
                name(baseline),
            );
        }
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
