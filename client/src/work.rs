//! Work-sharing groups from the client: [`Client::worker`](crate::Client::worker)
//! joins a group and yields [`Job`]s, each settled with [`Job::ack`] or
//! [`Job::nack`].

use std::pin::Pin;

use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::{mpsc, oneshot};

use crate::delivery::Delivery;
use crate::driver::Cmd;
use crate::error::ClientError;

/// How to join a work-sharing group. Every option left `None` takes the
/// running group's (or the broker's default for a group that starts now);
/// an option given must match a running group's, or the join is refused
/// with [`ErrorCode::GroupConflict`](crate::ErrorCode::GroupConflict).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerOptions {
    /// A record not acknowledged within this goes to another worker
    /// (default 30 s).
    pub ack_wait: Option<Duration>,
    /// Deliveries of one record before its next failure sets it aside in
    /// the dead-letter topic (default 5).
    pub max_deliver: Option<u32>,
    /// Records one worker holds unacknowledged at most (default 100).
    pub max_inflight: Option<u32>,
    /// Records with the same key go to one worker at a time, in seq order.
    pub key_order: Option<bool>,
    /// Where dead records go (default `<topic>.<group>.dead`).
    pub dead_letter: Option<String>,
}

impl WorkerOptions {
    pub(crate) fn wire(&self) -> Option<fanlog_protocol::frame::WorkOptions> {
        if self.ack_wait.is_none()
            && self.max_deliver.is_none()
            && self.max_inflight.is_none()
            && self.key_order.is_none()
        {
            return None;
        }
        Some(fanlog_protocol::frame::WorkOptions {
            ack_wait_ms: self
                .ack_wait
                .map_or(30_000, |d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX)),
            max_deliver: self.max_deliver.unwrap_or(5),
            max_inflight: self.max_inflight.unwrap_or(100),
            key_order: self.key_order.unwrap_or(false),
        })
    }
}

/// Who settles a job.
#[derive(Debug, Clone)]
pub(crate) enum Settler {
    Remote {
        cmds: mpsc::Sender<Cmd>,
        member: u32,
    },
    #[cfg(feature = "embedded")]
    Embedded(std::sync::Arc<fanlog_broker::work::Worker>),
}

/// A record handed to this worker: process it, then [`Job::ack`] it (or
/// [`Job::nack`] it to have it delivered again).
#[derive(Debug)]
pub struct Job {
    record: Delivery,
    deliveries: u32,
    settler: Settler,
}

impl Job {
    pub(crate) fn new(record: Delivery, deliveries: u32, settler: Settler) -> Self {
        Self {
            record,
            deliveries,
            settler,
        }
    }

    /// The record.
    #[must_use]
    pub fn record(&self) -> &Delivery {
        &self.record
    }

    /// 1 on the first delivery, more when it was delivered before and not
    /// acknowledged in time or nacked.
    #[must_use]
    pub fn deliveries(&self) -> u32 {
        self.deliveries
    }

    /// This record is done; answered once the ack is durable.
    ///
    /// # Errors
    /// [`ErrorCode::NotHeld`](crate::ErrorCode::NotHeld) when its ack wait
    /// ran out and it went to another worker (or the connection was lost
    /// meanwhile: it will be delivered again).
    pub async fn ack(&self) -> Result<(), ClientError> {
        match &self.settler {
            Settler::Remote { cmds, member } => {
                let (reply, answered) = oneshot::channel();
                cmds.send(Cmd::WorkAck {
                    member: *member,
                    seqs: vec![self.record.seq()],
                    reply,
                })
                .await
                .map_err(|_| ClientError::Closed)?;
                answered.await.map_err(|_| ClientError::Closed)?
            }
            #[cfg(feature = "embedded")]
            Settler::Embedded(w) => Ok(w.ack(self.record.seq()).await?),
        }
    }

    /// This record could not be processed: it is delivered again after
    /// `delay` (to any worker), or set aside in the dead-letter topic once
    /// it was delivered `max_deliver` times; `error` travels with it.
    ///
    /// # Errors
    /// As [`Job::ack`].
    pub async fn nack(&self, delay: Duration, error: &str) -> Result<(), ClientError> {
        match &self.settler {
            Settler::Remote { cmds, member } => {
                let (reply, answered) = oneshot::channel();
                cmds.send(Cmd::Nack {
                    member: *member,
                    seq: self.record.seq(),
                    delay_ms: u32::try_from(delay.as_millis()).unwrap_or(u32::MAX),
                    error: error.to_owned(),
                    reply,
                })
                .await
                .map_err(|_| ClientError::Closed)?;
                answered.await.map_err(|_| ClientError::Closed)?
            }
            #[cfg(feature = "embedded")]
            Settler::Embedded(w) => Ok(w.nack(self.record.seq(), delay, error).await?),
        }
    }
}

/// A member of a work-sharing group: a stream of the [`Job`]s handed to
/// it, at most `max_inflight` unacknowledged at once. After a lost
/// connection it joins again; what it held goes to other workers (or back
/// to it) after their ack wait. Dropped, it leaves: what it held goes to
/// others at once.
#[derive(Debug)]
pub struct Worker {
    pub(crate) floor: u64,
    pub(crate) rx: mpsc::UnboundedReceiver<Result<Job, ClientError>>,
    pub(crate) leave: Option<(mpsc::UnboundedSender<Cmd>, u32)>,
    /// The embedded fetch loop, stopped on drop.
    pub(crate) task: Option<tokio::task::AbortHandle>,
}

impl Worker {
    /// The group's floor when this worker joined: every seq below it was
    /// settled.
    #[must_use]
    pub fn floor(&self) -> u64 {
        self.floor
    }
}

impl Stream for Worker {
    type Item = Result<Job, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some((ctl, member)) = &self.leave {
            let _ = ctl.send(Cmd::Leave { member: *member });
        }
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}
