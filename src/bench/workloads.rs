//! The workloads of `fanlog bench`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use fanlog::client::{Client, ConnectOptions};
use fanlog::protocol::Message;
use futures_util::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch;

use super::feeds::{self, Feed, Got, Start, stamped};
use super::report::{BenchResult, Memory};
use super::{BenchArgs, Target, TransportArg, Workload};

type Hist = Histogram<u64>;

fn histogram() -> Hist {
    // 1 µs .. 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// What one publisher sends.
#[derive(Debug, Clone)]
struct Plan {
    topic: String,
    count: Option<u64>,
    deadline: Option<Instant>,
    batch: usize,
    size: usize,
    /// Messages per second for this publisher (open loop), if paced.
    rate: Option<f64>,
    inflight: usize,
    /// Put the scheduled send time in each payload (for e2e latency).
    stamp: bool,
}

/// Nanoseconds since `base`, as carried in stamped payloads.
fn ns_since(base: Instant, t: Instant) -> u64 {
    t.saturating_duration_since(base).as_nanos() as u64
}

/// Publishes per `plan`; returns (messages acknowledged, ack latency
/// histogram measured from each batch's scheduled send time).
async fn publisher(
    client: Client,
    plan: Plan,
    base: Instant,
    done: Arc<AtomicU64>,
) -> anyhow::Result<(u64, Hist)> {
    let mut hist = histogram();
    let shared = Bytes::from(vec![0xA5u8; plan.size]);
    let mut window: VecDeque<(Instant, u64, _)> = VecDeque::new();
    let start = Instant::now();
    let (mut sent, mut acked) = (0u64, 0u64);
    loop {
        let left = plan.count.map_or(u64::MAX, |c| c - sent);
        if left == 0 || plan.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let n = (plan.batch as u64).min(left);
        // Open loop: a batch is due when its last message is; if we are
        // late it goes at once, and its latency still counts from then.
        let scheduled = match plan.rate {
            Some(r) => start + Duration::from_secs_f64((sent + n) as f64 / r),
            None => Instant::now(),
        };
        if plan.rate.is_some() {
            tokio::time::sleep_until(scheduled.into()).await;
        }
        let msgs: Vec<Message> = (0..n)
            .map(|_| {
                Message::new(if plan.stamp {
                    stamped(plan.size, ns_since(base, scheduled))
                } else {
                    shared.clone()
                })
            })
            .collect();
        window.push_back((scheduled, n, client.publish_batch(&plan.topic, msgs)));
        sent += n;
        while window.len() >= plan.inflight {
            acked += settle(&mut window, &mut hist, &done).await?;
        }
    }
    while !window.is_empty() {
        acked += settle(&mut window, &mut hist, &done).await?;
    }
    Ok((acked, hist))
}

async fn settle<F>(
    window: &mut VecDeque<(Instant, u64, F)>,
    hist: &mut Hist,
    done: &AtomicU64,
) -> anyhow::Result<u64>
where
    F: std::future::Future<Output = Result<Vec<u64>, fanlog::client::ClientError>>,
{
    let Some((scheduled, n, ack)) = window.pop_front() else {
        return Ok(0);
    };
    ack.await.context("publish failed")?;
    let us = scheduled.elapsed().as_micros().max(1) as u64;
    hist.saturating_record_n(us, n);
    done.fetch_add(n, Ordering::Relaxed);
    Ok(n)
}

/// Reads messages until `target` (set once publishers finish) is reached;
/// records end-to-end latency from stamped payloads when `stamped`.
async fn subscriber(
    mut feed: Feed,
    mut target: watch::Receiver<Option<u64>>,
    base: Instant,
    done: Arc<AtomicU64>,
) -> anyhow::Result<(u64, Hist)> {
    let mut hist = histogram();
    let mut got = 0u64;
    loop {
        if target.borrow().is_some_and(|t| got >= t) {
            return Ok((got, hist));
        }
        tokio::select! {
            item = feed.next() => match item {
                Some(Ok(Got::Msg(stamp))) => {
                    if let Some(sent) = stamp {
                        let us = (ns_since(base, Instant::now()).saturating_sub(sent) / 1000).max(1);
                        hist.saturating_record(us);
                    }
                    got += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(Got::Gap { from, to })) => bail!("messages {from}..{to} were removed by retention during the run"),
                Some(Err(e)) => return Err(e),
                None => bail!("subscription ended"),
            },
            changed = target.changed() => {
                if changed.is_err() {
                    bail!("the run was abandoned");
                }
            }
        }
    }
}

/// Opens `n` subscriptions to `topic`, each on its own connection, a few
/// at a time (so the listen backlog never overflows), with a progress bar.
async fn open_feeds(
    target: &Target,
    transport: TransportArg,
    topic: &str,
    start: Start,
    stamped: bool,
    n: usize,
) -> anyhow::Result<Vec<Feed>> {
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .context("HTTP client")?;
    for base in &target.http {
        feeds::check_http(&http, base).await?;
    }
    let opened = Arc::new(AtomicU64::new(0));
    let (bar, stop) = sampler(opened.clone(), Some(n as u64), "connect", None);
    let open_one = |_| {
        let (http, opened) = (http.clone(), opened.clone());
        async move {
            let feed = match (transport, target.next_http()) {
                (TransportArg::Sse, Some(base)) => {
                    feeds::sse(&http, base, topic, start, stamped).await
                }
                (TransportArg::Ws, Some(base)) => feeds::ws(base, topic, start, stamped).await,
                _ => {
                    let client = connect(&target.sub_options).await?;
                    feeds::native(client, topic, start, stamped).await
                }
            };
            opened.fetch_add(1, Ordering::Relaxed);
            feed
        }
    };
    let feeds = futures_util::stream::iter(0..n)
        .map(open_one)
        .buffer_unordered(64)
        .try_collect()
        .await;
    let _ = stop.send(true);
    let _ = bar.await;
    feeds
}

/// What a progress bar fills with: a count of units, or the time of a run
/// bounded by `--duration`.
#[derive(Debug, Clone, Copy)]
enum Goal {
    Units(u64),
    Time(Duration),
}

/// Samples completed units every 200 ms for the timeline and progress bar.
/// Without a count the bar fills with time when the run has a duration (it
/// shows units done and their rate beside it), else it spins.
fn sampler(
    done: Arc<AtomicU64>,
    total: Option<u64>,
    label: &'static str,
    duration: Option<Duration>,
) -> (
    tokio::task::JoinHandle<Vec<(f64, f64)>>,
    watch::Sender<bool>,
) {
    let (stop, mut stopped) = watch::channel(false);
    let goal = total.map(Goal::Units).or(duration.map(Goal::Time));
    let (bar, template) = match goal {
        Some(Goal::Units(t)) => (
            ProgressBar::new(t),
            "{spinner} {msg:>9} [{elapsed_precise}] {wide_bar} {pos}/{len} {prefix}",
        ),
        Some(Goal::Time(d)) => (
            ProgressBar::new(d.as_millis() as u64),
            "{spinner} {msg:>9} [{elapsed_precise}] {wide_bar} {percent:>3}% {prefix}",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{spinner} {msg:>9} [{elapsed_precise}] {prefix}",
        ),
    };
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(label);
    let task = tokio::spawn(async move {
        let start = Instant::now();
        let mut timeline = Vec::new();
        let (mut last_t, mut last_n) = (0.0f64, 0u64);
        loop {
            let stop_now = tokio::time::timeout(Duration::from_millis(200), stopped.changed())
                .await
                .is_ok();
            let t = start.elapsed().as_secs_f64();
            let n = done.load(Ordering::Relaxed);
            match goal {
                Some(Goal::Time(d)) => {
                    bar.set_position((t * 1000.0).min(d.as_millis() as f64) as u64);
                    bar.set_prefix(format!("{n} done, {}/s", rounded(n as f64 / t.max(1e-9))));
                }
                _ => {
                    bar.set_position(n);
                    bar.set_prefix(format!("{}/s", rounded(n as f64 / t.max(1e-9))));
                }
            }
            if t > last_t {
                timeline.push((t, (n - last_n) as f64 / (t - last_t)));
            }
            (last_t, last_n) = (t, n);
            if stop_now {
                bar.finish_and_clear();
                return timeline;
            }
        }
    });
    (task, stop)
}

/// A rate for people: whole units, with thousands separated (`123,457`).
pub(crate) fn rounded(rate: f64) -> String {
    let n = rate.round().max(0.0) as u64;
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

async fn connect(options: &ConnectOptions) -> anyhow::Result<Client> {
    Client::connect_with(options.clone())
        .await
        .with_context(|| format!("cannot connect to {}", options.addr))
}

fn plans(args: &BenchArgs, topic: &str, stamp: bool, started: Instant) -> Vec<Plan> {
    let count = match (args.count, args.duration) {
        (Some(c), _) => Some(c),
        (None, Some(_)) => None,
        (None, None) => Some(100_000),
    };
    let p = args.producers as u64;
    (0..p)
        .map(|i| Plan {
            topic: topic.to_owned(),
            count: count.map(|c| c / p + u64::from(i < c % p)),
            deadline: args.duration.map(|d| started + d),
            batch: args.batch,
            size: args.size,
            rate: args.rate.map(|r| r as f64 / p as f64),
            inflight: args.inflight,
            stamp,
        })
        .collect()
}

pub(super) async fn run(args: &BenchArgs, target: &Target) -> anyhow::Result<BenchResult> {
    let options = &target.options;
    let topic = args
        .topic
        .clone()
        .unwrap_or_else(|| format!("bench-{}-{}", std::process::id(), rand::random::<u32>()));
    let base = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    match args.workload {
        Workload::Publish => {
            let clients =
                futures_util::future::try_join_all((0..args.producers).map(|_| connect(options)))
                    .await?;
            let started = Instant::now();
            let plans = plans(args, &topic, false, started);
            let total = plans.iter().map(|p| p.count).sum::<Option<u64>>();
            let (timeline, stop) = sampler(done.clone(), total, "publish", args.duration);
            let tasks: Vec<_> = clients
                .into_iter()
                .zip(plans)
                .map(|(c, p)| tokio::spawn(publisher(c, p, base, done.clone())))
                .collect();
            let (msgs, hist) = join_counts(tasks).await?;
            let secs = started.elapsed().as_secs_f64();
            let _ = stop.send(true);
            Ok(BenchResult::new(
                args,
                msgs,
                msgs,
                secs,
                Some(&hist),
                timeline.await?,
            ))
        }
        Workload::Consume => {
            let count = args.count.unwrap_or(100_000);
            let loader = connect(options).await?;
            let have = loader
                .topics()
                .await?
                .into_iter()
                .find(|t| t.name == topic)
                .map_or(0, |t| t.next_seq);
            if have < count {
                let mut plan = plans(args, &topic, false, Instant::now()).remove(0);
                plan.count = Some(count - have);
                plan.deadline = None;
                plan.rate = None;
                let (t, stop) = sampler(done.clone(), Some(count - have), "loading", None);
                publisher(loader, plan, base, done.clone()).await?;
                let _ = stop.send(true);
                let _ = t.await;
                done.store(0, Ordering::Relaxed);
            }
            let (target_tx, goal) = watch::channel(Some(count));
            let feeds = open_feeds(
                target,
                args.transport,
                &topic,
                Start::At(0),
                false,
                args.consumers,
            )
            .await?;
            let started = Instant::now();
            let (timeline, stop) = sampler(
                done.clone(),
                Some(count * args.consumers as u64),
                "consume",
                None,
            );
            let tasks: Vec<_> = feeds
                .into_iter()
                .map(|f| tokio::spawn(subscriber(f, goal.clone(), base, done.clone())))
                .collect();
            let (msgs, _) = join_counts(tasks).await?;
            let secs = started.elapsed().as_secs_f64();
            let _ = stop.send(true);
            drop(target_tx);
            Ok(BenchResult::new(
                args,
                msgs,
                msgs,
                secs,
                None,
                timeline.await?,
            ))
        }
        Workload::Idle => idle(args, target, &topic, base, done).await,
        Workload::E2e | Workload::Fanout => {
            // Subscribed before anything is published: every message is live.
            let feeds = open_feeds(
                target,
                args.transport,
                &topic,
                Start::Live,
                true,
                args.consumers,
            )
            .await?;
            let (target_tx, goal) = watch::channel(None);
            let producers =
                futures_util::future::try_join_all((0..args.producers).map(|_| connect(options)))
                    .await?;
            let started = Instant::now();
            let plans = plans(args, &topic, true, started);
            let total = plans
                .iter()
                .map(|p| p.count)
                .sum::<Option<u64>>()
                .map(|t| t * args.consumers as u64);
            let (timeline, stop) = sampler(done.clone(), total, "deliver", args.duration);
            let readers: Vec<_> = feeds
                .into_iter()
                .map(|f| tokio::spawn(subscriber(f, goal.clone(), base, done.clone())))
                .collect();
            let pub_done = Arc::new(AtomicU64::new(0));
            let writers: Vec<_> = producers
                .into_iter()
                .zip(plans)
                .map(|(c, p)| tokio::spawn(publisher(c, p, base, pub_done.clone())))
                .collect();
            let (published, _) = join_counts(writers).await?;
            let _ = target_tx.send(Some(published));
            let (deliveries, hist) = join_counts(readers).await?;
            let secs = started.elapsed().as_secs_f64();
            let _ = stop.send(true);
            // e2e reports messages per second through the broker; fanout
            // reports deliveries per second to all subscribers.
            let msgs = if args.workload == Workload::Fanout {
                deliveries
            } else {
                published
            };
            Ok(BenchResult::new(
                args,
                msgs,
                deliveries,
                secs,
                Some(&hist),
                timeline.await?,
            ))
        }
    }
}

/// `--consumers` idle subscriptions: the broker's memory per connection,
/// then `--count` broadcasts, each received by every subscriber before the
/// next is sent.
async fn idle(
    args: &BenchArgs,
    target: &Target,
    topic: &str,
    base: Instant,
    done: Arc<AtomicU64>,
) -> anyhow::Result<BenchResult> {
    let n = args.consumers;
    let broadcasts = args.count.unwrap_or(1);
    let publisher = connect(&target.options).await?;
    // One subscription first, so that the baseline already has the topic,
    // the code paths and the per-thread caches that the first one brings.
    let mut feeds = open_feeds(target, args.transport, topic, Start::Live, true, 1).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = target.rss_kb();
    feeds.extend(open_feeds(target, args.transport, topic, Start::Live, true, n - 1).await?);
    // Let every connection go idle before reading the broker's memory.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = target.rss_kb();
    let memory = match (before, after) {
        (Some(b), Some(a)) => Some(Memory::new(n, b, a)),
        _ => None,
    };
    if let Some(m) = &memory {
        eprintln!(
            "{n} idle connections: broker RSS {} -> {} KiB, {:.0} B per connection",
            m.rss_before_kb, m.rss_after_kb, m.bytes_per_connection
        );
    }
    let (goal_tx, goal) = watch::channel(None);
    let readers: Vec<_> = feeds
        .into_iter()
        .map(|f| tokio::spawn(subscriber(f, goal.clone(), base, done.clone())))
        .collect();
    let started = Instant::now();
    let (timeline, stop) = sampler(done.clone(), Some(broadcasts * n as u64), "deliver", None);
    for k in 1..=broadcasts {
        let sent = Instant::now();
        let msg = Message::new(stamped(args.size, ns_since(base, sent)));
        publisher
            .publish(topic, msg)
            .await
            .context("publish failed")?;
        let want = k * n as u64;
        loop {
            let got = done.load(Ordering::Relaxed);
            if got >= want {
                break;
            }
            if sent.elapsed() > Duration::from_secs(60) {
                bail!(
                    "broadcast {k}: {} of {n} subscribers received it within 60 s",
                    got - (want - n as u64)
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = goal_tx.send(Some(broadcasts));
    let (deliveries, hist) = join_counts(readers).await?;
    let _ = stop.send(true);
    let mut result = BenchResult::new(
        args,
        broadcasts,
        deliveries,
        secs,
        Some(&hist),
        timeline.await?,
    );
    result.memory = memory;
    Ok(result)
}

async fn join_counts(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<(u64, Hist)>>>,
) -> anyhow::Result<(u64, Hist)> {
    let mut total = 0;
    let mut hist = histogram();
    for t in tasks {
        let (n, h) = t.await.context("a bench task panicked")??;
        total += n;
        hist.add(&h).context("merging histograms")?;
    }
    Ok((total, hist))
}

#[cfg(test)]
mod tests {
    use super::rounded;

    #[test]
    fn rates_are_whole_and_grouped() {
        assert_eq!(rounded(0.4), "0");
        assert_eq!(rounded(999.6), "1,000");
        assert_eq!(rounded(123456.789), "123,457");
        assert_eq!(rounded(1234567.0), "1,234,567");
    }
}
