//! The borrowed shapes inside frames: a subscription's start, a publish
//! message, a topic entry, a run of records.

use crate::record::{Producer, RecordError, RecordView};

/// Where a subscription starts, on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start<'a> {
    /// The first record still stored.
    Earliest,
    /// Records appended after subscribing.
    Latest,
    /// This seq.
    Seq(u64),
    /// The group's committed offset (earliest when none).
    Group(&'a str),
    /// The first record appended at or after this time, in microseconds
    /// since the Unix epoch.
    Time(u64),
}

/// One message of a Publish frame, borrowed from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireMessage<'a> {
    /// Producer identity, for deduplication.
    pub producer: Option<Producer>,
    /// Key (empty = none).
    pub key: &'a [u8],
    /// Archived metadata (empty = none).
    pub meta: &'a [u8],
    /// Payload.
    pub payload: &'a [u8],
}

/// A work-sharing group's options on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkOptions {
    /// Milliseconds a worker has to acknowledge a record.
    pub ack_wait_ms: u32,
    /// Deliveries of one record before its next failure sets it aside.
    pub max_deliver: u32,
    /// Records one worker holds at most.
    pub max_inflight: u32,
    /// Records of one key go to one worker at a time, in seq order.
    pub key_order: bool,
}

/// A topic's numbers in a TopicList.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicEntry<'a> {
    /// Name.
    pub name: &'a str,
    /// First stored seq.
    pub first_seq: u64,
    /// Next seq to be assigned.
    pub next_seq: u64,
    /// Bytes stored.
    pub bytes: u64,
}

/// Records carried by a Deliver or Fetched frame: `count` records back to back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Records<'a> {
    /// Number of records.
    pub count: u32,
    /// The encoded records.
    pub bytes: &'a [u8],
}

impl<'a> Records<'a> {
    /// Iterates the records, verifying each checksum (bytes from a peer).
    pub fn iter(&self) -> RecordIter<'a> {
        RecordIter {
            rest: self.bytes,
            left: self.count,
        }
    }
}

/// Iterator over [`Records`].
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    rest: &'a [u8],
    left: u32,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<(RecordView<'a>, &'a [u8]), RecordError>;

    /// Yields each record's view and its padded bytes.
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        match RecordView::parse(self.rest) {
            Ok((view, used)) => {
                let bytes = &self.rest[..used];
                self.rest = &self.rest[used..];
                Some(Ok((view, bytes)))
            }
            Err(e) => {
                self.left = 0;
                Some(Err(e))
            }
        }
    }
}
