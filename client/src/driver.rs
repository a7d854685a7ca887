//! The driver task behind a remote [`Client`](crate::Client): owns the
//! connection, matches replies to requests, feeds subscriptions, and on a
//! lost connection reconnects with backoff, resends what was not answered
//! (publishes carry producer ids, so a resent batch is appended once) and
//! resubscribes each subscription from the seq after the last one it
//! delivered: no gap, no duplicate.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use fanlog_protocol::frame::{self, ErrorCode, Frame, Start, WireMessage};
use fanlog_protocol::{Message, Producer, TopicName};
use tokio::sync::{mpsc, oneshot};

use crate::client::{ConnectOptions, Fetched, StartFrom, TopicInfo};
use crate::connect::{self, Connection};
use crate::delivery::Delivery;
use crate::error::ClientError;
use crate::link::{Events, Inbox, Incoming, Link, LinkId, Route};
use crate::pool::Pool;
use crate::work::{Job, Settler, WorkerOptions};

type Reply<T> = oneshot::Sender<Result<T, ClientError>>;

/// A request from a client handle to its driver.
#[derive(Debug)]
pub(crate) enum Cmd {
    Publish {
        topic: String,
        messages: Vec<Message>,
        reply: Reply<Vec<u64>>,
    },
    Subscribe {
        topic: String,
        from: StartFrom,
        window: u32,
        events: mpsc::UnboundedSender<Events>,
        /// The subscription's id and the first seq it delivers.
        reply: Reply<(u32, u64)>,
    },
    Credit {
        sub: u32,
        bytes: u32,
    },
    Unsubscribe {
        sub: u32,
    },
    Commit {
        topic: String,
        group: String,
        seq: u64,
        reply: Reply<()>,
    },
    Committed {
        topic: String,
        group: String,
        reply: Reply<Option<u64>>,
    },
    Topics {
        reply: Reply<Vec<TopicInfo>>,
    },
    Fetch {
        topic: String,
        from: u64,
        max: u32,
        reply: Reply<Fetched>,
    },
    Join {
        topic: String,
        group: String,
        options: WorkerOptions,
        jobs: mpsc::UnboundedSender<Result<Job, ClientError>>,
        /// The member's number and the group's floor.
        reply: Reply<(u32, u64)>,
    },
    WorkAck {
        member: u32,
        seqs: Vec<u64>,
        reply: Reply<()>,
    },
    Nack {
        member: u32,
        seq: u64,
        delay_ms: u32,
        error: String,
        reply: Reply<()>,
    },
    Leave {
        member: u32,
    },
}

#[derive(Debug)]
enum Waiter {
    Publish(Reply<Vec<u64>>),
    Subscribed(u32),
    Ok(Reply<()>),
    Committed(Reply<Option<u64>>),
    Topics(Reply<Vec<TopicInfo>>),
    Fetch(Reply<Fetched>),
    Joined(u32),
    Ignore,
}

#[derive(Debug)]
struct Pending {
    /// The encoded request, resent after a reconnect (shared with the
    /// link's queue, not copied).
    frame: Bytes,
    waiter: Waiter,
}

#[derive(Debug)]
struct SubState {
    topic: String,
    from: StartFrom,
    window: u32,
    /// Where errors go; records and gaps go by the link's reader (the
    /// subscription's [`Route`]).
    events: mpsc::UnboundedSender<Events>,
    /// The first Subscribed answer goes to the caller of subscribe().
    reply: Option<Reply<(u32, u64)>>,
}

/// A work-sharing group member of this client: joined again after a
/// reconnect.
#[derive(Debug)]
struct MemberState {
    topic: String,
    group: String,
    options: WorkerOptions,
    jobs: mpsc::UnboundedSender<Result<Job, ClientError>>,
    /// The first Joined answer goes to the caller of worker().
    reply: Option<Reply<(u32, u64)>>,
}

enum Stop {
    /// Every client handle is gone.
    Closed,
    /// The connection broke; reconnect.
    Lost(String),
}

pub(crate) struct Driver {
    opts: ConnectOptions,
    /// Requests, bounded (see [`ConnectOptions::command_queue`]); taken
    /// only while fewer than [`ConnectOptions::max_in_flight`] await
    /// answers.
    cmds: mpsc::Receiver<Cmd>,
    /// Credit and unsubscribe notices (see `Backend::Remote`); closed once
    /// every handle, client or subscription, is gone.
    ctl: mpsc::UnboundedReceiver<Cmd>,
    /// Given to each link's reader: frames come back on `incoming`.
    inbox: Inbox,
    incoming: mpsc::UnboundedReceiver<Incoming>,
    generation: u64,
    conn: Option<Connection>,
    control: Option<Link>,
    sub_links: HashMap<u32, Link>,
    next_id: u32,
    next_sub: u32,
    pending: BTreeMap<u32, Pending>,
    subs: HashMap<u32, SubState>,
    members: HashMap<u32, MemberState>,
    /// Sends of a job's ack or nack (the request queue).
    settle: mpsc::Sender<Cmd>,
    producer_id: u64,
    next_pseq: u64,
    /// The address of [`ConnectOptions::addresses`] tried first.
    current: usize,
    /// Buffers for encoded requests.
    pool: Pool,
}

fn send_reply<T>(r: Reply<T>, v: Result<T, ClientError>) {
    let _ = r.send(v);
}

impl Driver {
    /// Connects once (the caller learns whether the broker is there) and
    /// returns the driver to spawn.
    pub(crate) async fn connect(
        opts: ConnectOptions,
        cmds: mpsc::Receiver<Cmd>,
        ctl: mpsc::UnboundedReceiver<Cmd>,
        settle: mpsc::Sender<Cmd>,
    ) -> Result<Self, ClientError> {
        let (incoming_tx, incoming) = mpsc::unbounded_channel();
        let mut d = Self {
            opts,
            cmds,
            ctl,
            inbox: Inbox {
                frames: incoming_tx,
                routes: Default::default(),
            },
            incoming,
            generation: 0,
            conn: None,
            control: None,
            sub_links: HashMap::new(),
            next_id: 0,
            next_sub: 0,
            pending: BTreeMap::new(),
            subs: HashMap::new(),
            members: HashMap::new(),
            settle,
            producer_id: rand::random(),
            next_pseq: 0,
            current: 0,
            pool: Pool::default(),
        };
        d.establish().await?;
        Ok(d)
    }

    pub(crate) async fn run(mut self) {
        loop {
            let why = match self.serve().await {
                Stop::Closed => return,
                Stop::Lost(why) => why,
            };
            tracing::info!(addr = %self.opts.addr, reason = %why, "connection lost; reconnecting");
            self.drop_links();
            let mut backoff = Duration::from_millis(20);
            loop {
                let jitter =
                    Duration::from_millis(rand::random_range(0..=backoff.as_millis() as u64 / 2));
                tokio::time::sleep(backoff + jitter).await;
                if self.ctl.is_closed() {
                    return;
                }
                match self.establish().await {
                    Ok(()) => break,
                    Err(e) if is_fatal(&e) => return self.fail_all(e),
                    Err(e) => {
                        tracing::debug!(error = %e, "reconnect failed");
                        backoff = (backoff * 2).min(self.opts.max_backoff);
                    }
                }
            }
        }
    }

    fn drop_links(&mut self) {
        self.control = None;
        self.sub_links.clear();
        if let Some(c) = self.conn.take() {
            c.close();
        }
    }

    fn fail_all(&mut self, e: ClientError) {
        for (_, p) in std::mem::take(&mut self.pending) {
            fail(p.waiter, e.clone());
        }
        self.inbox.routes.lock().subs.clear();
        for (_, s) in self.subs.drain() {
            if let Some(r) = s.reply {
                send_reply(r, Err(e.clone()));
            }
            let _ = s.events.send(Err(e.clone()));
        }
        for (_, m) in self.members.drain() {
            match m.reply {
                Some(r) => send_reply(r, Err(e.clone())),
                None => {
                    let _ = m.jobs.send(Err(e.clone()));
                }
            }
        }
    }

    fn id(&mut self) -> u32 {
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.next_id
    }

    /// Opens a connection to the first of the addresses that answers,
    /// starting with the one that answered last.
    async fn open_any(&mut self) -> Result<connect::Connection, ClientError> {
        let addrs: Vec<String> = self.opts.addresses().map(str::to_owned).collect();
        if addrs.is_empty() {
            return Err(ClientError::Connect {
                addr: self.opts.addr.clone(),
                reason: "no address".into(),
            });
        }
        let mut last = None;
        for k in 0..addrs.len() {
            let i = (self.current + k) % addrs.len();
            match connect::open(&self.opts, &addrs[i]).await {
                Ok(c) => {
                    if i != self.current {
                        tracing::info!(addr = %addrs[i], "connected to another address");
                    }
                    self.current = i;
                    return Ok(c);
                }
                Err(e) if is_fatal(&e) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(ClientError::Closed))
    }

    /// Opens a connection, says Hello, then resends what is pending and
    /// resubscribes.
    async fn establish(&mut self) -> Result<(), ClientError> {
        self.generation += 1;
        // The readers of the connection given up on deliver nothing more.
        self.inbox.routes.lock().generation = self.generation;
        let conn = self.open_any().await?;
        let control = self.open_link(&conn, 0).await?;
        self.conn = Some(conn);
        // Wait for the broker's answer to Hello on the control link.
        let answer = tokio::time::timeout(self.opts.connect_timeout, async {
            loop {
                let Some(inc) = self.incoming.recv().await else {
                    return Err(ClientError::Closed);
                };
                if inc.generation != self.generation || inc.link != 0 {
                    continue;
                }
                let bytes = inc.frame.map_err(|why| ClientError::Connect {
                    addr: self.opts.addr.clone(),
                    reason: why,
                })?;
                return match frame::decode(&bytes, self.opts.max_frame) {
                    Ok(Some((_, Frame::HelloOk { .. }, _))) => Ok(()),
                    Ok(Some((_, Frame::Error { code, message }, _))) => Err(ClientError::Server {
                        code,
                        message: message.to_owned(),
                    }),
                    _ => Err(ClientError::Protocol("expected HelloOk".into())),
                };
            }
        })
        .await
        .map_err(|_| ClientError::Connect {
            addr: self.opts.addr.clone(),
            reason: "no answer to Hello".into(),
        })?;
        answer?;
        self.control = Some(control.clone());
        // Requests that were never answered go again, in their order.
        let ids: Vec<u32> = self.pending.keys().copied().collect();
        for id in ids {
            let resend = !matches!(
                self.pending[&id].waiter,
                Waiter::Subscribed(_) | Waiter::Joined(_) | Waiter::Ignore
            );
            if resend {
                control.send(self.pending[&id].frame.clone());
            } else {
                self.pending.remove(&id);
            }
        }
        let subs: Vec<u32> = self.subs.keys().copied().collect();
        for sub in subs {
            self.send_subscribe(sub).await?;
        }
        let members: Vec<u32> = self.members.keys().copied().collect();
        for member in members {
            self.send_join(member);
        }
        Ok(())
    }

    fn send_join(&mut self, member: u32) {
        let Some(m) = self.members.get(&member) else {
            return;
        };
        let (topic, group) = (m.topic.clone(), m.group.clone());
        let dead_letter = m.options.dead_letter.clone().unwrap_or_default();
        let options = m.options.wire();
        let id = self.id();
        let mut buf = Vec::new();
        let f = Frame::Join {
            member,
            topic: &topic,
            group: &group,
            dead_letter: &dead_letter,
            options,
        };
        if let Err(e) = f.encode(id, &mut buf) {
            if let Some(m) = self.members.remove(&member) {
                let e = ClientError::Protocol(e.to_string());
                match m.reply {
                    Some(r) => send_reply(r, Err(e)),
                    None => {
                        let _ = m.jobs.send(Err(e));
                    }
                }
            }
            return;
        }
        if let Some(link) = &self.control {
            link.send(buf);
        }
        self.pending.insert(
            id,
            Pending {
                frame: Bytes::new(),
                waiter: Waiter::Joined(member),
            },
        );
    }

    /// Opens link `id` (the control link is 0, a QUIC subscription gets its
    /// own stream) and says Hello on it.
    async fn open_link(&mut self, conn: &Connection, id: LinkId) -> Result<Link, ClientError> {
        let link = conn
            .open_link(self.generation, id, self.opts.max_frame, self.inbox.clone())
            .await?;
        let mut hello = Vec::new();
        let token = self.opts.token.as_deref().unwrap_or("");
        let client = self.opts.client_name.as_str();
        Frame::Hello {
            version: frame::VERSION,
            token,
            client,
        }
        .encode(0, &mut hello)
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
        link.send(hello);
        Ok(link)
    }

    /// Forgets subscription `sub` wherever it is kept: its route (readers
    /// deliver nothing more to it), its state, its own QUIC stream (dropped:
    /// the stream finishes). Its state, and whether it had a stream of its
    /// own.
    fn forget_sub(&mut self, sub: u32) -> Option<(SubState, bool)> {
        self.inbox.routes.lock().subs.remove(&sub);
        let state = self.subs.remove(&sub)?;
        Some((state, self.sub_links.remove(&sub).is_some()))
    }

    /// The link a subscription's frames travel on.
    fn sub_link(&self, sub: u32) -> Option<&Link> {
        self.sub_links.get(&sub).or(self.control.as_ref())
    }

    async fn send_subscribe(&mut self, sub: u32) -> Result<(), ClientError> {
        if !self.subs.contains_key(&sub) {
            return Ok(());
        }
        let id = self.id();
        let Some(state) = self.subs.get(&sub) else {
            return Ok(());
        };
        let next = self.inbox.routes.lock().subs.get(&sub).and_then(|r| r.next);
        let start = match (next, &state.from) {
            (Some(next), _) => Start::Seq(next),
            (None, from) => from.to_wire(),
        };
        let mut buf = Vec::new();
        Frame::Subscribe {
            sub,
            topic: &state.topic,
            start,
            credit: state.window,
        }
        .encode(id, &mut buf)
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let conn = self.conn.as_ref().ok_or(ClientError::Closed)?;
        if conn.streams_per_subscription() {
            let conn = conn.clone();
            let link = self.open_link(&conn, sub).await?;
            self.sub_links.insert(sub, link);
        }
        if let Some(link) = self.sub_link(sub) {
            link.send(buf);
        }
        self.pending.insert(
            id,
            Pending {
                frame: Bytes::new(),
                waiter: Waiter::Subscribed(sub),
            },
        );
        Ok(())
    }

    async fn serve(&mut self) -> Stop {
        // False once every client handle is gone (subscriptions may live
        // on: they end with the control channel).
        let mut requests = true;
        loop {
            let room = requests && self.pending.len() < self.opts.max_in_flight.max(1);
            tokio::select! {
                // Requests only while the answers awaited are few: past
                // that the queue fills and callers wait (backpressure).
                cmd = self.cmds.recv(), if room => match cmd {
                    Some(cmd) => {
                        if let Err(why) = self.command(cmd).await {
                            return Stop::Lost(why);
                        }
                    }
                    None => requests = false,
                },
                cmd = self.ctl.recv() => match cmd {
                    Some(cmd) => {
                        if let Err(why) = self.command(cmd).await {
                            return Stop::Lost(why);
                        }
                    }
                    // Every handle (clients and subscriptions) is gone:
                    // nobody can receive an answer any more. Requests
                    // still queued are sent first, as before they closed.
                    None => {
                        while let Ok(cmd) = self.cmds.try_recv() {
                            if let Err(why) = self.command(cmd).await {
                                return Stop::Lost(why);
                            }
                        }
                        return Stop::Closed;
                    }
                },
                inc = self.incoming.recv() => match inc {
                    Some(inc) => if let Err(why) = self.incoming(inc) { return Stop::Lost(why) },
                    None => return Stop::Closed,
                },
            }
        }
    }

    fn incoming(&mut self, inc: Incoming) -> Result<(), String> {
        if inc.generation != self.generation {
            return Ok(());
        }
        let bytes = inc.frame?;
        let (id, f, _) = match frame::decode(&bytes, self.opts.max_frame) {
            Ok(Some(x)) => x,
            Ok(None) => return Err("truncated frame from the broker".into()),
            Err(e) => return Err(format!("bad frame from the broker: {e}")),
        };
        self.frame(inc.link, id, f, &bytes)
    }

    fn send_control(&mut self, id: u32, f: &Frame<'_>, waiter: Waiter) {
        let mut buf = self.pool.take();
        if let Err(e) = f.encode(id, &mut buf) {
            return fail(waiter, ClientError::Protocol(e.to_string()));
        }
        let buf = self.pool.share(buf);
        if let Some(link) = &self.control {
            link.send(buf.clone());
        }
        // Kept for a resend if the connection breaks before the answer
        // (`establish` sends again all but the ones whose answer is ignored).
        self.pending.insert(id, Pending { frame: buf, waiter });
    }

    async fn command(&mut self, cmd: Cmd) -> Result<(), String> {
        match cmd {
            Cmd::Publish {
                topic,
                mut messages,
                reply,
            } => {
                // Every message gets a producer identity, so that a resend
                // after a reconnect is deduplicated by the broker.
                for m in &mut messages {
                    if m.producer.is_none() {
                        m.producer = Some(Producer {
                            id: self.producer_id,
                            seq: self.next_pseq,
                        });
                        self.next_pseq += 1;
                    }
                }
                let metas: Result<Vec<Vec<u8>>, _> =
                    messages.iter().map(|m| m.meta.encode()).collect();
                let metas = match metas {
                    Ok(m) => m,
                    Err(e) => {
                        send_reply(reply, Err(ClientError::Protocol(e.to_string())));
                        return Ok(());
                    }
                };
                let wire: Vec<WireMessage<'_>> = messages
                    .iter()
                    .zip(&metas)
                    .map(|(m, meta)| WireMessage {
                        producer: m.producer,
                        key: &m.key,
                        meta,
                        payload: &m.payload,
                    })
                    .collect();
                let id = self.id();
                self.send_control(
                    id,
                    &Frame::Publish {
                        topic: &topic,
                        messages: wire,
                    },
                    Waiter::Publish(reply),
                );
            }
            Cmd::Subscribe {
                topic,
                from,
                window,
                events,
                reply,
            } => {
                self.next_sub = self.next_sub.wrapping_add(1).max(1);
                let sub = self.next_sub;
                self.inbox.routes.lock().subs.insert(
                    sub,
                    Route {
                        next: None,
                        events: events.clone(),
                    },
                );
                self.subs.insert(
                    sub,
                    SubState {
                        topic,
                        from,
                        window,
                        events,
                        reply: Some(reply),
                    },
                );
                if let Err(e) = self.send_subscribe(sub).await {
                    return Err(e.to_string());
                }
            }
            Cmd::Credit { sub, bytes } => {
                if self.subs.contains_key(&sub) {
                    let mut buf = Vec::new();
                    let _ = Frame::Credit { sub, bytes }.encode(0, &mut buf);
                    if let Some(link) = self.sub_link(sub) {
                        link.send(buf);
                    }
                }
            }
            Cmd::Unsubscribe { sub } => {
                // A QUIC subscription stream just ends: dropping its link
                // finishes the stream. Over TCP the broker is told.
                if let Some((_, false)) = self.forget_sub(sub) {
                    let id = self.id();
                    self.send_control(id, &Frame::Unsubscribe { sub }, Waiter::Ignore);
                }
            }
            Cmd::Commit {
                topic,
                group,
                seq,
                reply,
            } => {
                let id = self.id();
                self.send_control(
                    id,
                    &Frame::Commit {
                        topic: &topic,
                        group: &group,
                        seq,
                    },
                    Waiter::Ok(reply),
                );
            }
            Cmd::Committed {
                topic,
                group,
                reply,
            } => {
                let id = self.id();
                self.send_control(
                    id,
                    &Frame::Committed {
                        topic: &topic,
                        group: &group,
                    },
                    Waiter::Committed(reply),
                );
            }
            Cmd::Topics { reply } => {
                let id = self.id();
                self.send_control(id, &Frame::Topics, Waiter::Topics(reply));
            }
            Cmd::Fetch {
                topic,
                from,
                max,
                reply,
            } => {
                let id = self.id();
                let f = Frame::Fetch {
                    topic: &topic,
                    from,
                    max_count: max,
                    max_bytes: (self.opts.max_frame / 2) as u32,
                };
                self.send_control(id, &f, Waiter::Fetch(reply));
            }
            Cmd::Join {
                topic,
                group,
                options,
                jobs,
                reply,
            } => {
                self.next_sub = self.next_sub.wrapping_add(1).max(1);
                let member = self.next_sub;
                self.members.insert(
                    member,
                    MemberState {
                        topic,
                        group,
                        options,
                        jobs,
                        reply: Some(reply),
                    },
                );
                self.send_join(member);
            }
            Cmd::WorkAck {
                member,
                seqs,
                reply,
            } => {
                let id = self.id();
                self.send_control(id, &Frame::Ack { member, seqs }, Waiter::Ok(reply));
            }
            Cmd::Nack {
                member,
                seq,
                delay_ms,
                error,
                reply,
            } => {
                let id = self.id();
                let f = Frame::Nack {
                    member,
                    seq,
                    delay_ms,
                    error: &error,
                };
                self.send_control(id, &f, Waiter::Ok(reply));
            }
            Cmd::Leave { member } => {
                if self.members.remove(&member).is_some() {
                    let id = self.id();
                    // Not sent again after a reconnect: the session it
                    // names is gone.
                    self.send_control(id, &Frame::Leave { member }, Waiter::Ignore);
                }
            }
        }
        Ok(())
    }

    fn frame(&mut self, _link: LinkId, id: u32, f: Frame<'_>, bytes: &Bytes) -> Result<(), String> {
        match f {
            Frame::HelloOk { .. } | Frame::Pong { .. } => {}
            // Routed by the link's reader; none reaches here.
            Frame::Deliver { .. } | Frame::Gap { .. } => {}
            Frame::Jobs {
                member,
                deliveries,
                records,
            } => {
                let Some(m) = self.members.get(&member) else {
                    return Ok(()); // handed out before a Leave arrived
                };
                for (r, deliveries) in records.iter().zip(deliveries) {
                    let (view, _) =
                        r.map_err(|e| format!("corrupt record from the broker: {e}"))?;
                    let d = Delivery::from_verified(bytes.slice_ref(view.as_bytes()));
                    let settler = Settler::Remote {
                        cmds: self.settle.clone(),
                        member,
                    };
                    let _ = m.jobs.send(Ok(Job::new(d, deliveries, settler)));
                }
            }
            Frame::SubEnd { sub, code, message } => {
                // Ended by the broker: the stream ends with the reason and
                // is not resubscribed after a reconnect.
                if let Some((state, _)) = self.forget_sub(sub) {
                    let _ = state.events.send(Err(ClientError::Server {
                        code,
                        message: message.to_owned(),
                    }));
                }
            }
            Frame::Close { code, reason } => {
                return Err(format!("closed by the broker ({code:?}): {reason}"));
            }
            Frame::Error { code, message } if id == 0 => {
                return Err(format!("broker error ({code:?}): {message}"));
            }
            other => {
                let Some(p) = self.pending.remove(&id) else {
                    return Ok(()); // an answer to a request given up on
                };
                self.answer(p.waiter, other, bytes);
            }
        }
        Ok(())
    }

    fn answer(&mut self, waiter: Waiter, f: Frame<'_>, bytes: &Bytes) {
        if let Frame::Error { code, message } = f {
            let e = ClientError::Server {
                code,
                message: message.to_owned(),
            };
            if let Waiter::Subscribed(sub) = waiter {
                if let Some((s, _)) = self.forget_sub(sub) {
                    match s.reply {
                        Some(r) => send_reply(r, Err(e)),
                        None => {
                            let _ = s.events.send(Err(e));
                        }
                    }
                }
                return;
            }
            if let Waiter::Joined(member) = waiter {
                if let Some(m) = self.members.remove(&member) {
                    match m.reply {
                        Some(r) => send_reply(r, Err(e)),
                        None => {
                            let _ = m.jobs.send(Err(e));
                        }
                    }
                }
                return;
            }
            return fail(waiter, e);
        }
        let unexpected = || ClientError::Protocol(format!("unexpected {:?} answer", f.kind()));
        match waiter {
            Waiter::Publish(r) => match f {
                Frame::PublishAck { seqs } => send_reply(r, Ok(seqs)),
                _ => send_reply(r, Err(unexpected())),
            },
            Waiter::Subscribed(sub) => {
                if let (Frame::Subscribed { start_seq, .. }, Some(s)) =
                    (&f, self.subs.get_mut(&sub))
                {
                    if let Some(r) = self.inbox.routes.lock().subs.get_mut(&sub) {
                        r.next.get_or_insert(*start_seq);
                    }
                    if let Some(r) = s.reply.take() {
                        send_reply(r, Ok((sub, *start_seq)));
                    }
                }
            }
            Waiter::Ok(r) => send_reply(
                r,
                if matches!(f, Frame::Ok) {
                    Ok(())
                } else {
                    Err(unexpected())
                },
            ),
            Waiter::Committed(r) => match f {
                Frame::CommittedOffset { seq } => send_reply(r, Ok(seq)),
                _ => send_reply(r, Err(unexpected())),
            },
            Waiter::Topics(r) => match f {
                Frame::TopicList { topics } => send_reply(
                    r,
                    topics
                        .iter()
                        .map(|t| {
                            Ok(TopicInfo {
                                name: TopicName::new(t.name).map_err(|e| {
                                    ClientError::Protocol(format!(
                                        "the broker listed a bad topic name: {e}"
                                    ))
                                })?,
                                first_seq: t.first_seq,
                                next_seq: t.next_seq,
                                bytes: t.bytes,
                            })
                        })
                        .collect(),
                ),
                _ => send_reply(r, Err(unexpected())),
            },
            Waiter::Fetch(r) => match f {
                Frame::Fetched { next, gap, records } => {
                    let mut out = Vec::with_capacity(records.count as usize);
                    for rec in records.iter() {
                        match rec {
                            Ok((view, _)) => {
                                out.push(Delivery::from_verified(bytes.slice_ref(view.as_bytes())))
                            }
                            Err(e) => {
                                return send_reply(
                                    r,
                                    Err(ClientError::Protocol(format!("corrupt record: {e}"))),
                                );
                            }
                        }
                    }
                    send_reply(
                        r,
                        Ok(Fetched {
                            records: out,
                            next,
                            gap,
                        }),
                    );
                }
                _ => send_reply(r, Err(unexpected())),
            },
            Waiter::Joined(member) => {
                if let (Frame::Joined { floor, .. }, Some(m)) = (&f, self.members.get_mut(&member))
                    && let Some(r) = m.reply.take()
                {
                    send_reply(r, Ok((member, *floor)));
                }
            }
            Waiter::Ignore => {}
        }
    }
}

fn fail(w: Waiter, e: ClientError) {
    match w {
        Waiter::Publish(r) => send_reply(r, Err(e)),
        Waiter::Ok(r) => send_reply(r, Err(e)),
        Waiter::Committed(r) => send_reply(r, Err(e)),
        Waiter::Topics(r) => send_reply(r, Err(e)),
        Waiter::Fetch(r) => send_reply(r, Err(e)),
        Waiter::Subscribed(_) | Waiter::Joined(_) | Waiter::Ignore => {}
    }
}

/// Errors that a reconnect cannot fix.
fn is_fatal(e: &ClientError) -> bool {
    matches!(
        e.code(),
        Some(ErrorCode::Unauthorized | ErrorCode::Forbidden | ErrorCode::UnsupportedVersion)
    ) || matches!(e, ClientError::Tls(_))
}
