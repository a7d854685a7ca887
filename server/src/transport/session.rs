//! One protocol session: a TCP connection, or one QUIC stream. The same
//! frames, the same rules, over any byte stream.
//!
//! A session is one task. Requests are read and answered in order; publishes
//! are appended at once and their acknowledgements wait in order for
//! durability, so a client may pipeline. Deliveries are read from the log
//! only while the subscription has credit and the session's outgoing buffer
//! is small, so a slow reader costs a bounded amount of memory: the log is
//! the buffer.

use crate::MetricsExt;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use fanlog_protocol::frame::{self, ErrorCode, Frame, Records, Start, TopicEntry, WireMessage};
use fanlog_protocol::{Message, RecordMeta};
use futures_util::stream::FuturesOrdered;
use std::sync::Arc;

use futures_util::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::outbox::{self, Chunk, Outbox};
use crate::auth::{Auth, Grant};
use fanlog_broker::Broker;
use fanlog_broker::BrokerError;
use fanlog_broker::RecordRun;
use fanlog_broker::{Event, StartFrom, Subscription};

/// Limits of one session.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// Largest frame accepted, in bytes.
    pub max_frame: usize,
    /// Open subscriptions per session.
    pub max_subscriptions: usize,
    /// Publishes waiting for durability before the session stops reading.
    pub max_inflight_publishes: usize,
    /// Bytes of outgoing frames buffered before the session stops producing more.
    pub max_buffered: usize,
    /// Time a connection has to send its Hello; one that has not is closed,
    /// so silent sockets cannot hold connection slots.
    pub hello_timeout: std::time::Duration,
}

/// Largest frame accepted before the Hello: a Hello with the longest token
/// and client name fits, and an unauthenticated peer can make the session
/// buffer no more than this.
pub const PRE_AUTH_MAX_FRAME: usize = 70 << 10;

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max_frame: frame::DEFAULT_MAX_FRAME,
            max_subscriptions: 10_000,
            max_inflight_publishes: 1024,
            max_buffered: 64 << 10,
            hello_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// Most bytes of records packed into one Deliver frame.
const DELIVER_CHUNK: usize = 64 << 10;

struct Slot {
    sub: Subscription,
    credit: i64,
}

/// A reply that waits: a publish's seqs or a commit's Ok (for
/// durability), a join (for its group to open).
enum Answer {
    Published(Vec<u64>),
    Committed,
    Joined {
        member: u32,
        worker: Arc<fanlog_broker::work::Worker>,
        floor: u64,
    },
    JoinRefused {
        member: u32,
        error: BrokerError,
    },
}

type Ack = Pin<Box<dyn Future<Output = (u32, Result<Answer, BrokerError>)> + Send>>;

/// A request held until its topic is open: opening (recovery) or making
/// one does file work and syncs, which run on the blocking pool, never on
/// the session's thread. The session reads nothing more meanwhile, so
/// requests keep their order.
struct Parked {
    id: u32,
    /// The whole frame, handled again once the topic is open.
    raw: bytes::Bytes,
    ready: Pin<Box<dyn Future<Output = Result<(), BrokerError>> + Send>>,
}

/// Resolves when the parked request's topic is open (never without one).
async fn parked_ready(parked: &mut Option<Parked>) -> Result<(), BrokerError> {
    match parked {
        Some(p) => p.ready.as_mut().await,
        None => std::future::pending().await,
    }
}

/// A work-sharing group member of this session: its next hand-out is
/// always being waited for, so records come as soon as it has room.
struct Member {
    worker: Arc<fanlog_broker::work::Worker>,
    next: Fetching,
}

type Fetching =
    Pin<Box<dyn Future<Output = Result<Vec<fanlog_broker::work::Job>, BrokerError>> + Send>>;

/// The next hand-out for `w`: up to its room, waiting for the first.
fn fetching(w: &Arc<fanlog_broker::work::Worker>) -> Fetching {
    let w = w.clone();
    Box::pin(async move {
        let room = w.group().options().max_inflight;
        w.next_jobs(room, std::time::Duration::from_secs(30)).await
    })
}

/// Polls the members; the first with a hand-out (or an error) wins, and
/// its next hand-out is waited for from then on.
fn poll_members(
    members: &mut HashMap<u32, Member>,
) -> impl Future<Output = (u32, Result<Vec<fanlog_broker::work::Job>, BrokerError>)> + '_ {
    futures_util::future::poll_fn(move |cx: &mut Context<'_>| {
        for (id, m) in members.iter_mut() {
            if let Poll::Ready(r) = m.next.as_mut().poll(cx) {
                m.next = fetching(&m.worker);
                return Poll::Ready((*id, r));
            }
        }
        Poll::Pending
    })
}

enum Step {
    Read(std::io::Result<usize>),
    Jobs(u32, Result<Vec<fanlog_broker::work::Job>, BrokerError>),
    Ack((u32, Result<Answer, BrokerError>)),
    Deliver(u32, Option<Result<Event, BrokerError>>),
    Send(Result<mpsc::OwnedPermit<Vec<Chunk>>, mpsc::error::SendError<()>>),
    Shutdown,
    HelloTimeout,
    Ready(Result<(), BrokerError>),
}

/// Runs one session until the peer closes, a protocol error, or `shutdown`.
pub(crate) async fn run<R, W>(
    broker: Broker,
    mut rd: R,
    wr: W,
    limits: SessionLimits,
    auth: Auth,
    shutdown: CancellationToken,
    transport: &'static str,
) where
    R: AsyncRead + Unpin + Send,
    W: outbox::ChunkWriter,
{
    // A writer task drains encoded frames, so that a blocked socket write
    // never stops the session from reading credits or acks. Two buffers in
    // flight at most: with `max_buffered` that bounds a session's memory.
    let (tx, rx) = mpsc::channel::<Vec<Chunk>>(2);
    let writer = tokio::spawn(write_loop(wr, rx));
    let mut s = Session {
        delivered: broker.metrics().delivery_counter(transport),
        broker,
        limits,
        auth,
        grant: None,
        inbuf: BytesMut::with_capacity(8 << 10),
        out: Outbox::default(),
        hello: false,
        version: frame::VERSION,
        subs: HashMap::new(),
        members: HashMap::new(),
        joining: std::collections::HashSet::new(),
        acks: FuturesOrdered::new(),
        closing: false,
        parked: None,
    };
    let hello_deadline = tokio::time::sleep(s.limits.hello_timeout);
    tokio::pin!(hello_deadline);
    loop {
        let can_read = !s.closing
            && s.parked.is_none()
            && s.out.len() < s.limits.max_buffered
            && s.acks.len() < s.limits.max_inflight_publishes;
        let can_deliver = !s.closing
            && s.out.len() < s.limits.max_buffered
            && s.subs.values().any(|sl| sl.credit > 0);
        let can_hand_out =
            !s.closing && s.out.len() < s.limits.max_buffered && !s.members.is_empty();
        let step = tokio::select! {
            biased;
            () = shutdown.cancelled(), if !s.closing => Step::Shutdown,
            () = &mut hello_deadline, if !s.hello && !s.closing => Step::HelloTimeout,
            p = tx.clone().reserve_owned(), if !s.out.is_empty() => Step::Send(p),
            a = s.acks.next(), if !s.acks.is_empty() => match a { Some(a) => Step::Ack(a), None => continue },
            r = parked_ready(&mut s.parked), if s.parked.is_some() => Step::Ready(r),
            r = rd.read_buf(&mut s.inbuf), if can_read => Step::Read(r),
            (id, ev) = poll_subs(&mut s.subs), if can_deliver => Step::Deliver(id, ev),
            (id, jobs) = poll_members(&mut s.members), if can_hand_out => Step::Jobs(id, jobs),
        };
        match step {
            Step::Shutdown => {
                s.close(ErrorCode::ShuttingDown, "broker is shutting down");
            }
            Step::HelloTimeout => {
                let why = format!("no Hello within {:?}", s.limits.hello_timeout);
                s.close(ErrorCode::HandshakeRequired, &why);
            }
            Step::Send(Ok(permit)) => {
                permit.send(s.out.take());
                if s.closing && s.acks.is_empty() {
                    break;
                }
            }
            Step::Send(Err(_)) => break, // writer gone: the peer hung up
            Step::Ack((id, result)) => match result {
                Ok(Answer::Published(seqs)) => s.send(id, &Frame::PublishAck { seqs }),
                Ok(Answer::Committed) => s.send(id, &Frame::Ok),
                Ok(Answer::Joined {
                    member,
                    worker,
                    floor,
                }) => s.joined(id, member, worker, floor),
                Ok(Answer::JoinRefused { member, error }) => {
                    s.joining.remove(&member);
                    s.send_error(id, error.code(), &error.to_string());
                }
                Err(e) => s.send_error(id, e.code(), &e.to_string()),
            },
            Step::Read(Ok(0)) | Step::Read(Err(_)) => break,
            Step::Read(Ok(_)) => s.handle_input(),
            Step::Deliver(id, ev) => s.deliver(id, ev),
            Step::Jobs(id, jobs) => s.hand_out(id, jobs),
            Step::Ready(r) => s.unpark(r),
        }
        if s.closing && s.out.is_empty() && s.acks.is_empty() {
            break;
        }
    }
    // Flush what is buffered, then let the writer finish and close.
    if !s.out.is_empty() {
        let _ = tx.send(s.out.take()).await;
    }
    drop(tx);
    let _ = writer.await;
}

async fn write_loop<W: outbox::ChunkWriter>(mut wr: W, mut rx: mpsc::Receiver<Vec<Chunk>>) {
    while let Some(chunks) = rx.recv().await {
        if wr.write(chunks).await.is_err() {
            return;
        }
    }
    wr.shutdown().await;
}

/// Polls subscriptions that have credit; the first with an event wins.
fn poll_subs(
    subs: &mut HashMap<u32, Slot>,
) -> impl Future<Output = (u32, Option<Result<Event, BrokerError>>)> + '_ {
    futures_util::future::poll_fn(move |cx: &mut Context<'_>| {
        for (id, slot) in subs.iter_mut() {
            if slot.credit <= 0 {
                continue;
            }
            if let Poll::Ready(ev) = slot.sub.poll_next_unpin(cx) {
                return Poll::Ready((*id, ev));
            }
        }
        Poll::Pending
    })
}

struct Session {
    broker: Broker,
    /// Messages delivered over this session's transport.
    delivered: prometheus_client::metrics::counter::Counter,
    limits: SessionLimits,
    auth: Auth,
    /// What the Hello's token allows.
    grant: Option<Arc<Grant>>,
    inbuf: BytesMut,
    out: Outbox,
    hello: bool,
    /// The protocol version agreed in the Hello.
    version: u16,
    subs: HashMap<u32, Slot>,
    members: HashMap<u32, Member>,
    /// Members whose join waits for its group to open.
    joining: std::collections::HashSet<u32>,
    acks: FuturesOrdered<Ack>,
    closing: bool,
    /// A request waiting for its topic to open; nothing is read meanwhile.
    parked: Option<Parked>,
}

impl Session {
    fn send(&mut self, id: u32, f: &Frame<'_>) {
        if let Err(e) = f.encode(id, self.out.buf()) {
            self.send_error(id, ErrorCode::Internal, &e.to_string());
        }
    }

    fn send_error(&mut self, id: u32, code: ErrorCode, message: &str) {
        self.broker.metrics().refused("binary", format!("{code:?}"));
        // An Error frame always encodes (the message is cut to fit).
        let _ = Frame::Error { code, message }.encode(id, self.out.buf());
    }

    /// Sends Error and stops reading; the session ends once it is written.
    fn close(&mut self, code: ErrorCode, reason: &str) {
        if !self.closing {
            self.send_error(0, code, reason);
            self.closing = true;
            self.subs.clear();
            self.members.clear();
        }
    }

    fn handle_input(&mut self) {
        while !self.closing && self.parked.is_none() {
            // Before the Hello only a Hello-sized frame: a peer that has not
            // authenticated cannot make the session reserve a large buffer.
            let max_frame = if self.hello {
                self.limits.max_frame
            } else {
                PRE_AUTH_MAX_FRAME.min(self.limits.max_frame)
            };
            let size = match frame::frame_size(&self.inbuf, max_frame) {
                Ok(Some(size)) => size,
                Ok(None) => return,
                Err(e) => return self.close(e.code(), &e.to_string()),
            };
            if self.inbuf.len() < size {
                self.inbuf.reserve(size - self.inbuf.len());
                return;
            }
            // The frame becomes shared bytes: published payloads are slices
            // of it, not copies.
            let raw = self.inbuf.split_to(size).freeze();
            match frame::decode(&raw, max_frame) {
                Ok(Some((id, f, _))) => self.handle(id, f, &raw),
                Ok(None) => {
                    return self.close(ErrorCode::BadFrame, "frame shorter than its length");
                }
                Err(e) => return self.close(e.code(), &e.to_string()),
            }
        }
    }

    /// Holds a request whose topic is not open (see [`Parked`]); true when
    /// it did. A publish parks itself (`publish`), once its batch passed
    /// the checks that make no topic.
    fn park(&mut self, id: u32, f: &Frame<'_>, raw: &bytes::Bytes) -> bool {
        let (topic, create) = match f {
            Frame::Subscribe {
                topic, sub, start, ..
            } => {
                // A subscribe refused anyway is answered without opening
                // (or making) anything.
                let bad_group =
                    matches!(start, Start::Group(g) if fanlog_broker::GroupName::new(*g).is_err());
                if bad_group || self.subscribe_refusal(*sub).is_some() {
                    return false;
                }
                let may_publish = self.grant.as_ref().is_some_and(|g| g.can_publish(topic));
                (*topic, self.broker.creates_on_subscribe(may_publish))
            }
            Frame::Fetch { topic, from, .. } => {
                // In a cluster, records below the edge's tail are fetched
                // first: the request waits for them, so that a page is
                // never cut short by "not fetched yet".
                if self.broker.is_open(topic) && self.broker.is_warm(topic, *from) {
                    return false;
                }
                let (broker, name, from) = (self.broker.clone(), (*topic).to_owned(), *from);
                self.parked = Some(Parked {
                    id,
                    raw: raw.clone(),
                    ready: Box::pin(async move {
                        broker.ready(&name, false).await?;
                        broker.warm(&name, from).await
                    }),
                });
                return true;
            }
            Frame::Commit { topic, .. } | Frame::Committed { topic, .. } => (*topic, false),
            Frame::Join { topic, member, .. } => {
                if self.join_refusal(*member).is_some() {
                    return false;
                }
                let may_publish = self.grant.as_ref().is_some_and(|g| g.can_publish(topic));
                (*topic, self.broker.creates_on_subscribe(may_publish))
            }
            _ => return false,
        };
        if self.broker.is_open(topic) {
            return false;
        }
        self.park_until_open(id, raw, topic, create);
        true
    }

    fn park_until_open(&mut self, id: u32, raw: &bytes::Bytes, topic: &str, create: bool) {
        let (broker, name) = (self.broker.clone(), topic.to_owned());
        self.parked = Some(Parked {
            id,
            raw: raw.clone(),
            ready: Box::pin(async move { broker.ready(&name, create).await }),
        });
    }

    /// Answers `id` with `e` behind the answers already queued, so that
    /// replies stay in request order.
    fn refuse_in_order(&mut self, id: u32, e: BrokerError) {
        self.acks.push_back(Box::pin(async move { (id, Err(e)) }));
    }

    /// The parked request's topic is open (or cannot be): handle it, then
    /// what was read after it.
    fn unpark(&mut self, r: Result<(), BrokerError>) {
        let Some(p) = self.parked.take() else { return };
        match r {
            Ok(()) => match frame::decode(&p.raw, self.limits.max_frame) {
                Ok(Some((id, f, _))) => self.handle_ready(id, f, &p.raw),
                _ => self.close(ErrorCode::Internal, "a parked frame no longer decodes"),
            },
            Err(e) => self.refuse_in_order(p.id, e),
        }
        self.handle_input();
    }

    /// The dispatch table: one small handler per request a client may send,
    /// after the Hello and the rights check.
    fn handle(&mut self, id: u32, f: Frame<'_>, raw: &bytes::Bytes) {
        if !self.hello {
            return self.on_hello(id, f);
        }
        if let Some(refusal) = self.refuse(&f) {
            return self.send_error(id, ErrorCode::Forbidden, &refusal);
        }
        if self.version < 2
            && matches!(
                f,
                Frame::Join { .. } | Frame::Ack { .. } | Frame::Nack { .. } | Frame::Leave { .. }
            )
        {
            return self.send_error(
                id,
                ErrorCode::NeedsVersion,
                "work-sharing groups need protocol version 2; this session agreed on 1",
            );
        }
        if self.park(id, &f, raw) {
            return;
        }
        self.handle_ready(id, f, raw);
    }

    /// Dispatches a request whose caller is checked and whose topic is open.
    fn handle_ready(&mut self, id: u32, f: Frame<'_>, raw: &bytes::Bytes) {
        match f {
            Frame::Publish { topic, messages } => self.publish(id, topic, &messages, raw),
            Frame::Subscribe {
                sub,
                topic,
                start,
                credit,
            } => self.subscribe(id, sub, topic, start, credit),
            Frame::Credit { sub, bytes } => self.on_credit(id, sub, bytes),
            Frame::Unsubscribe { sub } => self.on_unsubscribe(id, sub),
            Frame::Commit { topic, group, seq } => self.on_commit(id, topic, group, seq),
            Frame::Committed { topic, group } => self.on_committed(id, topic, group),
            Frame::Fetch {
                topic,
                from,
                max_count,
                max_bytes,
            } => self.fetch(id, topic, from, max_count, max_bytes),
            Frame::Topics => self.on_topics(id),
            Frame::Join {
                member,
                topic,
                group,
                dead_letter,
                options,
            } => self.on_join(id, member, topic, group, dead_letter, options),
            Frame::Ack { member, seqs } => self.on_ack(id, member, seqs),
            Frame::Nack {
                member,
                seq,
                delay_ms,
                error,
            } => self.on_nack(id, member, seq, delay_ms, error),
            Frame::Leave { member } => match self.members.remove(&member) {
                Some(_) => self.send(id, &Frame::Ok),
                None => self.no_member(id, member),
            },
            Frame::Ping { nonce } => self.send(id, &Frame::Pong { nonce }),
            Frame::Close { .. } => self.closing = true,
            Frame::Hello { .. } => {
                self.send_error(id, ErrorCode::BadFrame, "Hello was already received")
            }
            other => self.close(
                ErrorCode::UnknownFrame,
                &format!("{:?} frames are not accepted from clients", other.kind()),
            ),
        }
    }

    /// The first frame: a Hello of a version this broker speaks or a later
    /// one (the session speaks the lower of the two) with a known token
    /// (or none on an open broker); anything else closes the session.
    fn on_hello(&mut self, id: u32, f: Frame<'_>) {
        match f {
            Frame::Hello { version, token, .. } if version >= frame::MIN_VERSION => {
                let token = (!token.is_empty()).then_some(token);
                let Some(grant) = self.auth.authenticate(token) else {
                    return self.close(
                        ErrorCode::Unauthorized,
                        if token.is_some() {
                            "the token is not known"
                        } else {
                            "this broker needs a token in the Hello"
                        },
                    );
                };
                self.grant = Some(grant);
                self.hello = true;
                self.version = version.min(frame::VERSION);
                self.send(
                    id,
                    &Frame::HelloOk {
                        version: self.version,
                        max_frame: self.limits.max_frame as u32,
                        server: concat!("fanlog ", env!("CARGO_PKG_VERSION")),
                    },
                );
            }
            Frame::Hello { version, .. } => self.close(
                ErrorCode::UnsupportedVersion,
                &format!(
                    "protocol version {version} is not supported; this broker speaks {} and later",
                    frame::MIN_VERSION
                ),
            ),
            _ => self.close(
                ErrorCode::HandshakeRequired,
                "the first frame must be Hello",
            ),
        }
    }

    fn on_credit(&mut self, id: u32, sub: u32, bytes: u32) {
        match self.subs.get_mut(&sub) {
            Some(slot) => slot.credit = slot.credit.saturating_add(i64::from(bytes)),
            None => self.send_error(
                id,
                ErrorCode::UnknownSubscription,
                &format!("no subscription {sub}"),
            ),
        }
    }

    fn on_unsubscribe(&mut self, id: u32, sub: u32) {
        if self.subs.remove(&sub).is_some() {
            self.send(id, &Frame::Ok);
        } else {
            self.send_error(
                id,
                ErrorCode::UnknownSubscription,
                &format!("no subscription {sub}"),
            );
        }
    }

    /// Answered once durable (a sync under `always`, shared with every
    /// commit meanwhile), in order behind earlier acks.
    fn on_commit(&mut self, id: u32, topic: &str, group: &str, seq: u64) {
        let (broker, topic, group) = (self.broker.clone(), topic.to_owned(), group.to_owned());
        self.acks.push_back(Box::pin(async move {
            let r = broker.commit(&topic, &group, seq).await;
            (id, r.map(|()| Answer::Committed))
        }));
    }

    fn on_committed(&mut self, id: u32, topic: &str, group: &str) {
        match self.broker.committed(topic, group) {
            Ok(seq) => self.send(id, &Frame::CommittedOffset { seq }),
            Err(e) => self.send_error(id, e.code(), &e.to_string()),
        }
    }

    /// Why this session refuses to add `member`, if it does.
    fn join_refusal(&self, member: u32) -> Option<(ErrorCode, String)> {
        if self.members.contains_key(&member) || self.joining.contains(&member) {
            return Some((
                ErrorCode::DuplicateSubscription,
                format!("member {member} has joined already"),
            ));
        }
        if self.members.len() >= self.limits.max_subscriptions {
            return Some((
                ErrorCode::Forbidden,
                format!(
                    "at most {} members per connection",
                    self.limits.max_subscriptions
                ),
            ));
        }
        None
    }

    fn on_join(
        &mut self,
        id: u32,
        member: u32,
        topic: &str,
        group: &str,
        dead_letter: &str,
        options: Option<frame::WorkOptions>,
    ) {
        if let Some((code, why)) = self.join_refusal(member) {
            return self.send_error(id, code, &why);
        }
        let options = options.map(|o| fanlog_broker::shared::SharedOptions {
            ack_wait: std::time::Duration::from_millis(u64::from(o.ack_wait_ms.max(10))),
            max_deliver: o.max_deliver.max(1),
            max_inflight: (o.max_inflight as usize).clamp(1, 100_000),
            key_order: o.key_order,
        });
        let dead_letter = (!dead_letter.is_empty()).then_some(dead_letter);
        // Opened off this thread (the group's document), waiting while
        // another edge of a cluster still holds the group; answered in
        // order with the replies before it.
        self.joining.insert(member);
        let (broker, topic, group) = (self.broker.clone(), topic.to_owned(), group.to_owned());
        let dead_letter = dead_letter.map(str::to_owned);
        self.acks.push_back(Box::pin(async move {
            let wait = fanlog_broker::work::LEASE_TTL + std::time::Duration::from_secs(2);
            let opened = fanlog_broker::work::SharedGroup::open_async(
                &broker,
                &topic,
                &group,
                options,
                dead_letter.as_deref(),
                wait,
            )
            .await;
            let answer = match opened {
                Ok(g) => Answer::Joined {
                    member,
                    floor: g.floor(),
                    worker: Arc::new(g.join()),
                },
                Err(error) => Answer::JoinRefused { member, error },
            };
            (id, Ok(answer))
        }));
    }

    /// A join's group is open: the member is answered and from now on
    /// handed records.
    fn joined(
        &mut self,
        id: u32,
        member: u32,
        worker: Arc<fanlog_broker::work::Worker>,
        floor: u64,
    ) {
        self.joining.remove(&member);
        if self.closing {
            return;
        }
        let o = worker.group().options();
        self.send(
            id,
            &Frame::Joined {
                member,
                floor,
                options: frame::WorkOptions {
                    ack_wait_ms: u32::try_from(o.ack_wait.as_millis()).unwrap_or(u32::MAX),
                    max_deliver: o.max_deliver,
                    max_inflight: u32::try_from(o.max_inflight).unwrap_or(u32::MAX),
                    key_order: o.key_order,
                },
            },
        );
        let next = fetching(&worker);
        self.members.insert(member, Member { worker, next });
    }

    fn no_member(&mut self, id: u32, member: u32) {
        self.send_error(
            id,
            ErrorCode::UnknownSubscription,
            &format!("no member {member} in this session"),
        );
    }

    /// Answered once the acks are durable, in order behind earlier answers.
    fn on_ack(&mut self, id: u32, member: u32, seqs: Vec<u64>) {
        let Some(m) = self.members.get(&member) else {
            return self.no_member(id, member);
        };
        let w = m.worker.clone();
        self.acks.push_back(Box::pin(async move {
            let r = w.ack_all(&seqs).await;
            (id, r.map(|()| Answer::Committed))
        }));
    }

    fn on_nack(&mut self, id: u32, member: u32, seq: u64, delay_ms: u32, error: &str) {
        let Some(m) = self.members.get(&member) else {
            return self.no_member(id, member);
        };
        let (w, error) = (m.worker.clone(), error.to_owned());
        self.acks.push_back(Box::pin(async move {
            let delay = std::time::Duration::from_millis(u64::from(delay_ms));
            let r = w.nack(seq, delay, &error).await;
            (id, r.map(|()| Answer::Committed))
        }));
    }

    /// Encodes a member's hand-out as a Jobs frame (records copied: a
    /// hand-out is at most `max_inflight` records, in any seq order).
    fn hand_out(&mut self, member: u32, jobs: Result<Vec<fanlog_broker::work::Job>, BrokerError>) {
        let jobs = match jobs {
            Ok(jobs) => jobs,
            Err(e) => {
                // The group stopped (its topic was deleted): the member
                // is told and removed.
                self.members.remove(&member);
                let msg = e.to_string();
                return self.send_error(0, e.code(), &msg);
            }
        };
        if jobs.is_empty() {
            return;
        }
        let mut bytes = Vec::with_capacity(jobs.iter().map(|j| j.record.padded_len()).sum());
        let mut deliveries = Vec::with_capacity(jobs.len());
        for j in &jobs {
            bytes.extend_from_slice(j.record.padded_bytes());
            deliveries.push(j.deliveries);
        }
        self.delivered.inc_by(jobs.len() as u64);
        self.send(
            0,
            &Frame::Jobs {
                member,
                deliveries,
                records: Records {
                    count: jobs.len() as u32,
                    bytes: &bytes,
                },
            },
        );
    }

    /// The topics this session's token may see.
    fn on_topics(&mut self, id: u32) {
        let topics = self.broker.topics();
        let grant = self.grant.clone();
        let list: Vec<TopicEntry<'_>> = topics
            .iter()
            .filter(|t| grant.as_ref().is_some_and(|g| g.can_see(t.name.as_str())))
            .map(|t| TopicEntry {
                name: t.name.as_str(),
                first_seq: t.first_seq,
                next_seq: t.next_seq,
                bytes: t.bytes,
            })
            .collect();
        self.send(id, &Frame::TopicList { topics: list });
    }

    /// Why the session's token may not make this request, if it may not.
    fn refuse(&self, f: &Frame<'_>) -> Option<String> {
        let grant = self.grant.as_ref()?;
        let (topic, publish) = match f {
            Frame::Publish { topic, .. } => (*topic, true),
            Frame::Subscribe { topic, .. }
            | Frame::Join { topic, .. }
            | Frame::Commit { topic, .. }
            | Frame::Committed { topic, .. }
            | Frame::Fetch { topic, .. } => (*topic, false),
            _ => return None,
        };
        let allowed = if publish {
            grant.can_publish(topic)
        } else {
            grant.can_subscribe(topic)
        };
        (!allowed).then(|| {
            format!(
                "the token may not {} {topic}",
                if publish { "publish to" } else { "read" }
            )
        })
    }

    fn publish(&mut self, id: u32, topic: &str, messages: &[WireMessage<'_>], raw: &bytes::Bytes) {
        if !self.broker.is_open(topic) {
            // Made (or reopened) off this thread first, unless the batch is
            // refused: a refused publish makes no topic.
            match self
                .batch(messages, raw)
                .map(|batch| self.broker.validate(topic, &batch))
            {
                Err(why) => self.send_error(id, ErrorCode::BadFrame, &why),
                Ok(Err(e)) => self.refuse_in_order(id, e),
                Ok(Ok(())) => self.park_until_open(id, raw, topic, true),
            }
            return;
        }
        if let Some(Err(e)) = self
            .grant
            .as_ref()
            .map(|g| g.charge_publish(messages.len()))
        {
            return self.send_error(id, e.code(), &e.to_string());
        }
        let batch = match self.batch(messages, raw) {
            Ok(batch) => batch,
            Err(why) => return self.send_error(id, ErrorCode::BadFrame, &why),
        };
        match self.broker.append(topic, &batch) {
            Ok(appended) => self.acks.push_back(Box::pin(
                appended
                    .durable()
                    .map(move |r| (id, r.map(Answer::Published))),
            )),
            Err(e) => self.refuse_in_order(id, e),
        }
    }

    /// A publish frame's messages as the broker takes them: payloads and
    /// keys stay slices of the frame, metadata is decoded, and the caller's
    /// scope is applied to their identities.
    fn batch(
        &self,
        messages: &[WireMessage<'_>],
        raw: &bytes::Bytes,
    ) -> Result<Vec<Message>, String> {
        let mut batch = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            let meta = RecordMeta::decode(m.meta).map_err(|e| format!("message {i}: {e}"))?;
            let mut message = Message {
                payload: raw.slice_ref(m.payload),
                key: raw.slice_ref(m.key),
                meta,
                producer: m.producer,
            };
            if let Some(g) = &self.grant {
                g.scope_message(&mut message);
            }
            batch.push(message);
        }
        Ok(batch)
    }

    /// Why this session refuses to open subscription `sub`, if it does.
    fn subscribe_refusal(&self, sub: u32) -> Option<(ErrorCode, String)> {
        if self.subs.contains_key(&sub) {
            return Some((
                ErrorCode::DuplicateSubscription,
                format!("subscription {sub} is already open"),
            ));
        }
        if self.subs.len() >= self.limits.max_subscriptions {
            return Some((
                ErrorCode::Forbidden,
                format!(
                    "at most {} subscriptions per connection",
                    self.limits.max_subscriptions
                ),
            ));
        }
        None
    }

    fn subscribe(&mut self, id: u32, sub: u32, topic: &str, start: Start<'_>, credit: u32) {
        if let Some((code, why)) = self.subscribe_refusal(sub) {
            return self.send_error(id, code, &why);
        }
        let from = StartFrom::from(start);
        // Unverified: the client checks every record's checksum itself.
        let may_publish = self.grant.as_ref().is_some_and(|g| g.can_publish(topic));
        match self.broker.subscribe_as(topic, from, may_publish) {
            Ok(s) => {
                self.send(
                    id,
                    &Frame::Subscribed {
                        sub,
                        start_seq: s.position(),
                    },
                );
                self.subs.insert(
                    sub,
                    Slot {
                        sub: s,
                        credit: i64::from(credit),
                    },
                );
            }
            Err(e) => self.send_error(id, e.code(), &e.to_string()),
        }
    }

    fn fetch(&mut self, id: u32, topic: &str, from: u64, max_count: u32, max_bytes: u32) {
        let batch = match self
            .broker
            .read(topic, from, max_count.min(10_000) as usize)
        {
            Ok(b) => b,
            Err(e) => return self.send_error(id, e.code(), &e.to_string()),
        };
        let budget = (max_bytes as usize).min(self.limits.max_frame - 64);
        let mut bytes = Vec::new();
        let mut count = 0u32;
        let mut next = batch.gap.map_or(from, |(_, to)| to);
        for r in &batch.records {
            let b = r.padded_bytes();
            if count > 0 && bytes.len() + b.len() > budget {
                break;
            }
            bytes.extend_from_slice(b);
            count += 1;
            next = r.seq() + 1;
        }
        self.send(
            id,
            &Frame::Fetched {
                next,
                gap: batch.gap,
                records: Records {
                    count,
                    bytes: &bytes,
                },
            },
        );
    }

    /// Encodes the event `ev` of subscription `id`, then whatever else the
    /// subscription has ready, within its credit, into Deliver/Gap frames.
    fn deliver(&mut self, id: u32, ev: Option<Result<Event, BrokerError>>) {
        let Some(slot) = self.subs.get_mut(&id) else {
            return;
        };
        let mut next = ev;
        let mut pending = Pending::default();
        let mut records = 0;
        loop {
            match next {
                None if self.broker.is_closed() => {
                    // The broker is closing: the session ends with it.
                    self.subs.remove(&id);
                    break;
                }
                None => {
                    // The topic's log closed under a live broker: the topic
                    // was deleted. The subscriber is told, never left waiting.
                    pending.flush(&mut self.out, id);
                    let topic = slot.sub.topic().to_string();
                    self.subs.remove(&id);
                    let message = format!("topic {topic:?} was deleted");
                    let _ = Frame::SubEnd {
                        sub: id,
                        code: ErrorCode::TopicNotFound,
                        message: &message,
                    }
                    .encode(0, self.out.buf());
                    break;
                }
                Some(Err(e)) => {
                    let (code, msg) = (e.code(), e.to_string());
                    pending.flush(&mut self.out, id);
                    self.subs.remove(&id);
                    let _ = Frame::SubEnd {
                        sub: id,
                        code,
                        message: &msg,
                    }
                    .encode(0, self.out.buf());
                    return;
                }
                Some(Ok(Event::Gap { from, to })) => {
                    pending.flush(&mut self.out, id);
                    let _ = Frame::Gap { sub: id, from, to }.encode(0, self.out.buf());
                }
                Some(Ok(Event::Record(r))) => {
                    slot.credit -= pending.push(&r) as i64;
                    records += 1;
                }
            }
            if slot.credit <= 0 || pending.size >= DELIVER_CHUNK {
                break;
            }
            next = match slot.sub.try_next() {
                Ok(Some(ev)) => Some(Ok(ev)),
                Ok(None) => break,
                Err(e) => Some(Err(e)),
            };
        }
        pending.flush(&mut self.out, id);
        self.delivered.inc_by(records);
    }
}

/// Records read for one Deliver frame, as runs of the mapping.
#[derive(Default)]
struct Pending {
    runs: Vec<RecordRun>,
    count: u32,
    size: usize,
}

impl Pending {
    /// Adds a record; returns its size on the wire.
    fn push(&mut self, r: &fanlog_broker::Record) -> usize {
        let n = r.padded_len();
        if !self.runs.last_mut().is_some_and(|run| run.extend(r)) {
            self.runs.push(RecordRun::new(r));
        }
        self.count += 1;
        self.size += n;
        n
    }

    /// Queues a Deliver frame of what is pending: its head is encoded, its
    /// records stay in the log mapping until the socket takes them.
    fn flush(&mut self, out: &mut Outbox, sub: u32) {
        if self.count == 0 {
            return;
        }
        if frame::encode_deliver_head(out.buf(), sub, self.count, self.size).is_ok() {
            for run in self.runs.drain(..) {
                out.push_run(run);
            }
        }
        *self = Self::default();
    }
}
