//! A subscription: a cursor over a topic's log that is a `Stream`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use fanlog_protocol::TopicName;
use futures_core::Stream;
use tokio_stream::wrappers::WatchStream;

use crate::broker::Topic;
use crate::error::BrokerError;
use fanlog_storage::{ReadAt, ReadCursor, Record};

/// What a subscription yields: the next [`Record`] or a gap.
pub type Event = fanlog_protocol::Event<Record>;

pub use fanlog_protocol::StartFrom;

/// A stream of a topic's records from a start position, in seq order, with
/// no gap and no duplicate.
///
/// There is no queue behind it: each poll reads the next record straight from
/// the log's mapping, and when it has caught up it waits for the writer's
/// signal. A slow subscriber therefore costs no memory; it only lags.
#[derive(Debug)]
pub struct Subscription {
    topic: Arc<Topic>,
    next: u64,
    cursor: ReadCursor,
    wake: WatchStream<u64>,
    /// Check each record's checksum before yielding it.
    verify: bool,
}

impl Subscription {
    pub(crate) fn new(topic: Arc<Topic>, next: u64) -> Self {
        let wake = WatchStream::new(topic.log.watch_readable());
        Self {
            topic,
            next,
            cursor: ReadCursor::default(),
            wake,
            verify: false,
        }
    }

    /// Checks each record's checksum before yielding it, and yields
    /// [`BrokerError::Corrupt`] instead of a record whose bytes changed on
    /// disk (bit rot). For readers that cannot check a record themselves:
    /// the HTTP edge and hooks use it. Without it a subscription yields
    /// records as stored, the fastest catch-up, for a reader that checks
    /// them itself (the binary protocol's client checks every record it
    /// receives) or calls [`crate::Record::verify`] where it matters.
    #[must_use]
    pub fn verified(mut self) -> Self {
        self.verify = true;
        self
    }

    /// The seq the subscription yields next.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The topic.
    pub fn topic(&self) -> &TopicName {
        self.topic.log.name()
    }

    /// The next event that is available now, without waiting; `Ok(None)`
    /// when caught up. Lets a transport drain a batch before it writes.
    ///
    /// # Errors
    /// [`BrokerError::Corrupt`] when the log fails validation.
    pub fn try_next(&mut self) -> Result<Option<Event>, BrokerError> {
        match self.topic.log.read_at(self.next, &mut self.cursor)? {
            ReadAt::Record(r) => {
                let r = if self.verify {
                    self.topic.verified(r)?
                } else {
                    r
                };
                self.next += 1;
                Ok(Some(Event::Record(r)))
            }
            ReadAt::Gap { to } | ReadAt::Lost { to } => {
                let from = self.next;
                self.next = to;
                Ok(Some(Event::Gap { from, to }))
            }
            ReadAt::End => Ok(None),
        }
    }
}

impl Stream for Subscription {
    type Item = Result<Event, BrokerError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match self.try_next() {
                Ok(Some(ev)) => return Poll::Ready(Some(Ok(ev))),
                Err(e) => return Poll::Ready(Some(Err(e))),
                Ok(None) if self.topic.log.is_closed() => return Poll::Ready(None),
                Ok(None) => {}
            }
            // Caught up. The watch's version moves after the head does, so a
            // change between the read above and this poll is never missed:
            // the stream yields at once and the loop reads again.
            match Pin::new(&mut self.wake).poll_next(cx) {
                Poll::Ready(Some(_)) => continue,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
