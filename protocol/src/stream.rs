//! What the broker, the client and the wire share about reading a topic:
//! where a subscription starts ([`StartFrom`]), what it yields
//! ([`Event`], over each side's own record type) and a topic's numbers
//! ([`TopicInfo`]). One definition each, so the embedded API, the client
//! and the protocol cannot drift apart.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::TopicName;
use crate::frame::Start;

/// Where a subscription starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFrom {
    /// The first record still stored.
    Earliest,
    /// Only records appended after subscribing.
    Latest,
    /// The record with this seq (waiting for it if it does not exist yet).
    Seq(u64),
    /// A consumer group's committed offset; the earliest record when the
    /// group has never committed. The name is checked by the broker.
    Group(String),
    /// The first record appended at or after this time, in microseconds
    /// since the Unix epoch (the live tail when every record is older). Use
    /// [`StartFrom::time`] to build it.
    Time(u64),
}

impl StartFrom {
    /// The first record appended at or after `t`.
    #[must_use]
    pub fn time(t: SystemTime) -> Self {
        let us = t
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        StartFrom::Time(us)
    }

    /// The start as the Subscribe frame carries it.
    #[must_use]
    pub fn to_wire(&self) -> Start<'_> {
        match self {
            StartFrom::Earliest => Start::Earliest,
            StartFrom::Latest => Start::Latest,
            StartFrom::Seq(s) => Start::Seq(*s),
            StartFrom::Group(g) => Start::Group(g),
            StartFrom::Time(t) => Start::Time(*t),
        }
    }
}

impl From<Start<'_>> for StartFrom {
    fn from(s: Start<'_>) -> Self {
        match s {
            Start::Earliest => StartFrom::Earliest,
            Start::Latest => StartFrom::Latest,
            Start::Seq(s) => StartFrom::Seq(s),
            Start::Group(g) => StartFrom::Group(g.to_owned()),
            Start::Time(t) => StartFrom::Time(t),
        }
    }
}

/// What a subscription yields: the next record (`R` is the broker's
/// `Record` in process, the client's `Delivery` over the network), or a gap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<R> {
    /// The next record, in seq order.
    Record(R),
    /// Records `from..to` cannot be read: removed by retention before they
    /// were read, or quarantined by recovery because they failed their
    /// checksum. The subscription continues at `to`.
    Gap {
        /// The first seq that was wanted.
        from: u64,
        /// The first seq still available.
        to: u64,
    },
}

impl<R> Event<R> {
    /// The same event over another record type: `f` makes the record, a
    /// gap stays the gap.
    pub fn map<S>(self, f: impl FnOnce(R) -> S) -> Event<S> {
        match self {
            Event::Record(r) => Event::Record(f(r)),
            Event::Gap { from, to } => Event::Gap { from, to },
        }
    }
}

/// A topic's numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic.
    pub name: TopicName,
    /// The first seq still stored (retention moves it up).
    pub first_seq: u64,
    /// The seq the next message will get.
    pub next_seq: u64,
    /// Bytes of records stored.
    pub bytes: u64,
}
