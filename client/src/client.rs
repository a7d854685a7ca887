//! The client handle.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use fanlog_protocol::Message;
use fanlog_protocol::frame::DEFAULT_MAX_FRAME;
use futures_core::Stream;
use tokio::sync::{mpsc, oneshot};

use crate::delivery::{Delivery, Event};
use crate::driver::{Cmd, Driver};
use crate::error::ClientError;
use crate::link::Events;
use crate::producer::{Producer, ProducerOptions};
#[cfg(feature = "tls")]
pub use crate::quic::QuicOptions;
use crate::work::{Worker, WorkerOptions};

/// Which transport to use.
#[derive(Debug, Clone, Default)]
pub enum Transport {
    /// The binary protocol over one TCP connection.
    #[default]
    Tcp,
    /// The binary protocol over QUIC: a control stream plus one stream per
    /// subscription, so a slow subscription never holds up another.
    #[cfg(feature = "tls")]
    Quic(QuicOptions),
    /// The binary protocol over TLS on one TCP connection (the broker's
    /// `--tls` listener).
    #[cfg(feature = "tls")]
    Tls(QuicOptions),
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `host:port` of the broker, or of several brokers separated by
    /// commas (the edges of a cluster): the client connects to the first
    /// that answers and, when its connection is lost, to the next that
    /// does, resuming every subscription at its next seq and resending
    /// every unanswered request (publishes keep their producer sequence,
    /// so none is stored twice).
    pub addr: String,
    /// TCP or QUIC.
    pub transport: Transport,
    /// Token sent in the handshake.
    pub token: Option<String>,
    /// Name sent in the handshake (shows in broker logs).
    pub client_name: String,
    /// Bytes of records each subscription may have in flight to this client;
    /// more is sent as the application consumes.
    pub window: u32,
    /// Largest frame accepted.
    pub max_frame: usize,
    /// Limit for one connection attempt.
    pub connect_timeout: Duration,
    /// Longest wait between reconnect attempts.
    pub max_backoff: Duration,
    /// Requests (publishes, commits, fetches...) queued for the
    /// connection's task and not yet taken by it. When the queue is full a
    /// call waits (when awaited) for room: backpressure, not memory.
    pub command_queue: usize,
    /// Requests sent to the broker and not yet answered. Past this the
    /// connection's task takes no new request until an answer comes, so
    /// the queue above fills and callers wait. Unanswered requests are kept
    /// (to send again after a reconnect), so this bounds that memory too.
    pub max_in_flight: usize,
}

impl ConnectOptions {
    /// The addresses of [`ConnectOptions::addr`], in order.
    pub fn addresses(&self) -> impl Iterator<Item = &str> {
        self.addr
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
    }

    /// Defaults for a TCP connection to `addr`.
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            transport: Transport::Tcp,
            token: None,
            client_name: concat!("fanlog-client ", env!("CARGO_PKG_VERSION")).into(),
            window: 4 << 20,
            max_frame: DEFAULT_MAX_FRAME,
            connect_timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(2),
            command_queue: 1024,
            max_in_flight: 1024,
        }
    }
}

pub use fanlog_protocol::{StartFrom, TopicInfo};

/// Records pulled by [`Client::fetch`].
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Consecutive records.
    pub records: Vec<Delivery>,
    /// The seq to fetch next.
    pub next: u64,
    /// `(requested, first available)` when the start was removed by retention.
    pub gap: Option<(u64, u64)>,
}

#[derive(Debug, Clone)]
enum Backend {
    Remote {
        /// Requests, bounded by [`ConnectOptions::command_queue`].
        cmds: mpsc::Sender<Cmd>,
        /// Credit and unsubscribe notices of subscriptions. Unbounded but
        /// bounded by construction: a subscription sends one credit notice
        /// per half window the application consumed, and the broker sends
        /// nothing past the window until the notice is taken, so at most
        /// two wait per subscription; plus one unsubscribe when it drops.
        ctl: mpsc::UnboundedSender<Cmd>,
        /// Publishes that found the queue full and wait for room: while
        /// any does, new publishes queue behind them.
        waiting: Arc<AtomicUsize>,
        window: u32,
    },
    #[cfg(feature = "embedded")]
    Embedded(fanlog_broker::Broker),
}

/// A handle to a broker, remote or in-process. Cheap to clone; clones share
/// one connection, driven by a task that `connect` spawns.
///
/// ```no_run
/// # async fn demo() -> Result<(), fanlog_client::ClientError> {
/// use fanlog_client::{Client, StartFrom, Event};
/// use futures_util::StreamExt;
/// let client = Client::connect("127.0.0.1:7400").await?;
/// let seq = client.publish("orders", "hello".into()).await?;
/// let mut sub = client.subscribe("orders", StartFrom::Seq(seq)).await?;
/// if let Some(Ok(Event::Record(d))) = sub.next().await {
///     assert_eq!(d.payload(), b"hello");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    backend: Arc<Backend>,
}

fn closed<T>(_: T) -> ClientError {
    ClientError::Closed
}

impl Client {
    /// Connects over TCP with default options.
    ///
    /// # Errors
    /// [`ClientError::Connect`] when the broker cannot be reached or refuses
    /// the handshake.
    pub async fn connect(addr: &str) -> Result<Self, ClientError> {
        Self::connect_with(ConnectOptions::new(addr)).await
    }

    /// Connects with explicit options (transport, token, window...). Needs a
    /// tokio runtime: the driver task is spawned on it.
    ///
    /// # Errors
    /// As [`Client::connect`], plus [`ClientError::Tls`] for QUIC setup.
    pub async fn connect_with(options: ConnectOptions) -> Result<Self, ClientError> {
        let window = options.window;
        let (cmds, rx) = mpsc::channel(options.command_queue.max(1));
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let driver = Driver::connect(options, rx, ctl_rx, cmds.clone()).await?;
        tokio::spawn(driver.run());
        Ok(Self {
            backend: Arc::new(Backend::Remote {
                cmds,
                ctl,
                waiting: Arc::new(AtomicUsize::new(0)),
                window,
            }),
        })
    }

    /// The same API over a broker in this process: code can switch between
    /// embedded and remote without change.
    #[cfg(feature = "embedded")]
    pub fn embedded(broker: fanlog_broker::Broker) -> Self {
        Self {
            backend: Arc::new(Backend::Embedded(broker)),
        }
    }

    /// Queues a request, waiting for room in the queue.
    async fn remote(&self, cmd: Cmd) -> Result<(), ClientError> {
        match &*self.backend {
            Backend::Remote { cmds, .. } => cmds.send(cmd).await.map_err(closed),
            #[cfg(feature = "embedded")]
            Backend::Embedded(_) => Err(ClientError::Protocol("not a remote client".into())),
        }
    }

    /// Publishes one message; returns its seq.
    ///
    /// # Errors
    /// [`ClientError::Server`] when the broker refuses it (bad topic name,
    /// too large...), [`ClientError::Closed`].
    pub async fn publish(&self, topic: &str, message: Message) -> Result<u64, ClientError> {
        let seqs = self.publish_batch(topic, vec![message]).await?;
        seqs.first()
            .copied()
            .ok_or_else(|| ClientError::Protocol("empty acknowledgement".into()))
    }

    /// Publishes messages as one batch (one frame, one append); returns every
    /// seq. The request is queued before this returns its future, so batches
    /// published one after another from one task are appended in that order
    /// even when their futures are awaited later (pipelining).
    ///
    /// That holds while the request queue ([`ConnectOptions::command_queue`])
    /// has room. A call that finds it full (the broker answers slower than
    /// requests come) is queued when its future is awaited, and every call
    /// made while such a one waits queues behind it, in the order the
    /// futures are awaited: memory stays bounded, and a caller that awaits
    /// in call order keeps its order. Such a future dropped before it was
    /// awaited sends nothing.
    ///
    /// A batch that was sent but not answered when the connection broke is
    /// sent again after reconnecting; the broker appends it once.
    ///
    /// # Errors
    /// As [`Client::publish`].
    pub fn publish_batch(
        &self,
        topic: &str,
        messages: Vec<Message>,
    ) -> impl std::future::Future<Output = Result<Vec<u64>, ClientError>> + Send + 'static {
        let queued: Result<Queued, ClientError> = match &*self.backend {
            Backend::Remote { cmds, waiting, .. } => {
                let (reply, rx) = oneshot::channel();
                let cmd = Cmd::Publish {
                    topic: topic.to_owned(),
                    messages,
                    reply,
                };
                // In call order while nobody waits for room.
                let now = if waiting.load(Ordering::Acquire) == 0 {
                    cmds.try_send(cmd)
                } else {
                    Err(mpsc::error::TrySendError::Full(cmd))
                };
                match now {
                    Ok(()) => Ok(Queued::Sent(rx)),
                    Err(mpsc::error::TrySendError::Full(cmd)) => Ok(Queued::Later {
                        cmd,
                        cmds: cmds.clone(),
                        waiter: Waiter::new(waiting),
                        rx,
                    }),
                    Err(mpsc::error::TrySendError::Closed(_)) => Err(ClientError::Closed),
                }
            }
            #[cfg(feature = "embedded")]
            Backend::Embedded(b) => {
                let (reply, rx) = oneshot::channel();
                match append_in_order(b, topic, &messages) {
                    Ok(appended) => {
                        tokio::spawn(async move {
                            let _ = reply.send(appended.durable().await.map_err(ClientError::from));
                        });
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
                Ok(Queued::Sent(rx))
            }
        };
        async move {
            let rx = match queued? {
                Queued::Sent(rx) => rx,
                Queued::Later {
                    cmd,
                    cmds,
                    waiter,
                    rx,
                } => {
                    cmds.send(cmd).await.map_err(closed)?;
                    drop(waiter);
                    rx
                }
            };
            rx.await.map_err(closed)?
        }
    }

    /// A producer for `topic` that batches messages automatically (by size
    /// and linger time) and pipelines batches with a bounded window.
    pub fn producer(&self, topic: &str, options: ProducerOptions) -> Producer {
        Producer::start(self.clone(), topic.to_owned(), options)
    }

    /// Subscribes to `topic` from a start position.
    ///
    /// # Errors
    /// [`ClientError::Server`] for a bad topic or group name.
    pub async fn subscribe(
        &self,
        topic: &str,
        from: StartFrom,
    ) -> Result<Subscription, ClientError> {
        match &*self.backend {
            Backend::Remote {
                cmds, ctl, window, ..
            } => {
                // Bounded by the window: the broker sends at most `window`
                // bytes of records until the application consumes them.
                let (events, rx) = mpsc::unbounded_channel();
                let (reply, answered) = oneshot::channel();
                cmds.send(Cmd::Subscribe {
                    topic: topic.to_owned(),
                    from,
                    window: *window,
                    events,
                    reply,
                })
                .await
                .map_err(closed)?;
                let (sub, start) = answered.await.map_err(closed)??;
                Ok(Subscription {
                    start,
                    inner: SubInner::Remote {
                        sub,
                        rx,
                        ctl: ctl.clone(),
                        window: *window,
                        consumed: 0,
                    },
                })
            }
            #[cfg(feature = "embedded")]
            Backend::Embedded(b) => {
                // Made or reopened on the blocking pool.
                let sub = b.subscribe_ready(topic, from, true).await?;
                Ok(Subscription {
                    start: sub.position(),
                    inner: SubInner::Embedded(Box::new(sub)),
                })
            }
        }
    }

    /// Joins the work-sharing group `group` of `topic` as a new worker: the
    /// broker hands each record to one worker of the group, and delivers
    /// again what is not acknowledged within the ack wait (see
    /// [`WorkerOptions`]).
    ///
    /// # Errors
    /// [`ClientError::Server`] for a bad name, options other than the
    /// running group's ([`ErrorCode::GroupConflict`](crate::ErrorCode)), a
    /// token that may not read the topic, or a broker that speaks only
    /// protocol version 1 ([`ErrorCode::NeedsVersion`](crate::ErrorCode)).
    pub async fn worker(
        &self,
        topic: &str,
        group: &str,
        options: WorkerOptions,
    ) -> Result<Worker, ClientError> {
        match &*self.backend {
            Backend::Remote { cmds, ctl, .. } => {
                // Bounded by the group's max_inflight: the broker hands out
                // no more until jobs are settled.
                let (jobs, rx) = mpsc::unbounded_channel();
                let (reply, answered) = oneshot::channel();
                cmds.send(Cmd::Join {
                    topic: topic.to_owned(),
                    group: group.to_owned(),
                    options,
                    jobs,
                    reply,
                })
                .await
                .map_err(closed)?;
                let (member, floor) = answered.await.map_err(closed)??;
                Ok(Worker {
                    floor,
                    rx,
                    leave: Some((ctl.clone(), member)),
                    task: None,
                })
            }
            #[cfg(feature = "embedded")]
            Backend::Embedded(b) => {
                let shared = options
                    .wire()
                    .map(|o| fanlog_broker::shared::SharedOptions {
                        ack_wait: Duration::from_millis(u64::from(o.ack_wait_ms)),
                        max_deliver: o.max_deliver,
                        max_inflight: o.max_inflight as usize,
                        key_order: o.key_order,
                    });
                b.ready(topic, true).await?;
                let g = fanlog_broker::work::SharedGroup::open_async(
                    b,
                    topic,
                    group,
                    shared,
                    options.dead_letter.as_deref(),
                    Duration::ZERO,
                )
                .await?;
                let floor = g.floor();
                let room = g.options().max_inflight;
                let w = Arc::new(g.join());
                let (jobs, rx) = mpsc::unbounded_channel();
                let task = tokio::spawn(async move {
                    loop {
                        match w.next_jobs(room, Duration::from_secs(30)).await {
                            Ok(batch) => {
                                for j in batch {
                                    let job = crate::work::Job::new(
                                        embedded_delivery(&j.record),
                                        j.deliveries,
                                        crate::work::Settler::Embedded(w.clone()),
                                    );
                                    if jobs.send(Ok(job)).is_err() {
                                        return;
                                    }
                                }
                            }
                            Err(e) => {
                                let _ = jobs.send(Err(e.into()));
                                return;
                            }
                        }
                    }
                });
                Ok(Worker {
                    floor,
                    rx,
                    leave: None,
                    task: Some(task.abort_handle()),
                })
            }
        }
    }

    /// Commits `group`'s offset on `topic`: the next seq the group will read.
    ///
    /// # Errors
    /// [`ClientError::Server`] (unknown topic, offset past the end...).
    pub async fn commit(&self, topic: &str, group: &str, seq: u64) -> Result<(), ClientError> {
        #[cfg(feature = "embedded")]
        if let Backend::Embedded(b) = &*self.backend {
            return Ok(b.commit(topic, group, seq).await?);
        }
        let (reply, rx) = oneshot::channel();
        self.remote(Cmd::Commit {
            topic: topic.into(),
            group: group.into(),
            seq,
            reply,
        })
        .await?;
        rx.await.map_err(closed)?
    }

    /// The committed offset of `group` on `topic`.
    ///
    /// # Errors
    /// [`ClientError::Server`] (unknown topic, bad name).
    pub async fn committed(&self, topic: &str, group: &str) -> Result<Option<u64>, ClientError> {
        #[cfg(feature = "embedded")]
        if let Backend::Embedded(b) = &*self.backend {
            return Ok(b.committed(topic, group)?);
        }
        let (reply, rx) = oneshot::channel();
        self.remote(Cmd::Committed {
            topic: topic.into(),
            group: group.into(),
            reply,
        })
        .await?;
        rx.await.map_err(closed)?
    }

    /// Every topic with its numbers.
    ///
    /// # Errors
    /// [`ClientError::Closed`].
    pub async fn topics(&self) -> Result<Vec<TopicInfo>, ClientError> {
        #[cfg(feature = "embedded")]
        if let Backend::Embedded(b) = &*self.backend {
            return Ok(b.topics());
        }
        let (reply, rx) = oneshot::channel();
        self.remote(Cmd::Topics { reply }).await?;
        rx.await.map_err(closed)?
    }

    /// Pulls up to `max` records from seq `from`.
    ///
    /// # Errors
    /// [`ClientError::Server`] (unknown topic, bad name).
    pub async fn fetch(&self, topic: &str, from: u64, max: u32) -> Result<Fetched, ClientError> {
        #[cfg(feature = "embedded")]
        if let Backend::Embedded(b) = &*self.backend {
            let batch = b.read(topic, from, max as usize)?;
            return Ok(Fetched {
                records: batch.records.iter().map(embedded_delivery).collect(),
                next: batch.next,
                gap: batch.gap,
            });
        }
        let (reply, rx) = oneshot::channel();
        self.remote(Cmd::Fetch {
            topic: topic.into(),
            from,
            max,
            reply,
        })
        .await?;
        rx.await.map_err(closed)?
    }
}

/// A publish request, queued or to be queued when awaited.
enum Queued {
    Sent(oneshot::Receiver<Result<Vec<u64>, ClientError>>),
    Later {
        cmd: Cmd,
        cmds: mpsc::Sender<Cmd>,
        waiter: Waiter,
        rx: oneshot::Receiver<Result<Vec<u64>, ClientError>>,
    },
}

/// Counts a publish waiting for room in the queue, from the call until it
/// is queued (or its future is dropped).
struct Waiter(Arc<AtomicUsize>);

impl Waiter {
    fn new(waiting: &Arc<AtomicUsize>) -> Self {
        waiting.fetch_add(1, Ordering::AcqRel);
        Self(waiting.clone())
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Appends at once (the call order is the append order). A first append
/// to a topic that is not open makes or reopens it, which is file work:
/// on a multi-threaded runtime it runs under `block_in_place`, so the
/// runtime moves its other tasks off this thread meanwhile.
#[cfg(feature = "embedded")]
fn append_in_order(
    b: &fanlog_broker::Broker,
    topic: &str,
    messages: &[Message],
) -> Result<fanlog_broker::Appended, fanlog_broker::BrokerError> {
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_thread && !b.is_open(topic) {
        tokio::task::block_in_place(|| b.append(topic, messages))
    } else {
        b.append(topic, messages)
    }
}

#[cfg(feature = "embedded")]
fn embedded_delivery(r: &fanlog_broker::Record) -> Delivery {
    Delivery::from_verified(bytes::Bytes::copy_from_slice(r.as_bytes()))
}

#[derive(Debug)]
enum SubInner {
    Remote {
        sub: u32,
        rx: mpsc::UnboundedReceiver<Events>,
        ctl: mpsc::UnboundedSender<Cmd>,
        window: u32,
        consumed: u32,
    },
    #[cfg(feature = "embedded")]
    Embedded(Box<fanlog_broker::Subscription>),
}

/// A stream of a topic's records in seq order, with no gap and no duplicate,
/// across reconnects. Dropping it ends the subscription at the broker.
#[derive(Debug)]
pub struct Subscription {
    /// The first seq it delivers, as the broker resolved the start.
    start: u64,
    inner: SubInner,
}

impl Subscription {
    /// The first seq this subscription delivers: where its start position
    /// (earliest, latest, a group's offset, a time) resolved to when it
    /// was made.
    #[must_use]
    pub fn start_seq(&self) -> u64 {
        self.start
    }
}

impl Stream for Subscription {
    type Item = Result<Event, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match &mut self.inner {
            SubInner::Remote {
                sub,
                rx,
                ctl,
                window,
                consumed,
            } => {
                let item = std::task::ready!(rx.poll_recv(cx));
                if let Some(Ok(Event::Record(d))) = &item {
                    // Credit flows back as the application consumes, in
                    // chunks of half the window.
                    *consumed = consumed.saturating_add(d.wire_len() as u32);
                    if *consumed >= *window / 2 {
                        let _ = ctl.send(Cmd::Credit {
                            sub: *sub,
                            bytes: *consumed,
                        });
                        *consumed = 0;
                    }
                }
                Poll::Ready(item)
            }
            #[cfg(feature = "embedded")]
            SubInner::Embedded(s) => {
                let item = std::task::ready!(Pin::new(&mut **s).poll_next(cx));
                Poll::Ready(item.map(|r| match r {
                    Ok(ev) => Ok(ev.map(|rec| embedded_delivery(&rec))),
                    Err(e) => Err(e.into()),
                }))
            }
        }
    }
}

impl Drop for Subscription {
    // Without the `embedded` feature a subscription is always remote.
    #[cfg_attr(not(feature = "embedded"), allow(irrefutable_let_patterns))]
    fn drop(&mut self) {
        if let SubInner::Remote { sub, ctl, .. } = &self.inner {
            let _ = ctl.send(Cmd::Unsubscribe { sub: *sub });
        }
    }
}
