//! A record read from a topic: a zero-copy view into the log's mapping.

use std::fmt;
use std::sync::Arc;

use fanlog_protocol::Producer;
use fanlog_protocol::record::{ArchivedRecordMeta, RecordView, padded_len};

use crate::log::Segment;

/// One message read from a topic, borrowed in place from the log's memory
/// mapping: no copy is made, and the segment stays mapped while any record of
/// it is alive (even if retention removes its file meanwhile).
#[derive(Clone)]
pub struct Record {
    segment: Arc<Segment>,
    pos: usize,
    len: usize,
}

impl Record {
    pub(crate) fn new(segment: Arc<Segment>, pos: usize, len: usize) -> Self {
        Self { segment, pos, len }
    }

    /// The parsed record. Its structure was checked when this handle was made
    /// and log bytes below the head never change, so parsing cannot fail here.
    pub(crate) fn view(&self) -> RecordView<'_> {
        match self
            .segment
            .view_at(self.pos, (self.pos + self.padded_len()) as u64)
        {
            Ok(v) => v,
            // Invariant 4 of the log: bytes below the head are immutable, and
            // this record was validated (structure and seq) when it was read.
            Err(e) => unreachable!("validated record changed under a reader: {e}"),
        }
    }

    /// Checks the record's checksum, computed once at append, against its
    /// bytes as they are now (bit rot on disk shows here).
    ///
    /// # Errors
    /// The checksum mismatch, as text.
    pub fn verify(&self) -> Result<(), String> {
        self.view().verify_checksum().map_err(|e| e.to_string())
    }

    /// Sequence number in its topic.
    pub fn seq(&self) -> u64 {
        self.view().seq()
    }

    /// Append time, microseconds since the Unix epoch.
    pub fn timestamp_us(&self) -> u64 {
        self.view().timestamp_us()
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        self.view().payload()
    }

    /// The message key (empty when none).
    pub fn key(&self) -> &[u8] {
        self.view().key()
    }

    /// The producer identity it was published with, if any.
    pub fn producer(&self) -> Option<Producer> {
        self.view().producer()
    }

    /// Content type, headers and idempotency key, read in place; `None` when
    /// the message has none (or, never expected, when the archive is invalid).
    pub fn meta(&self) -> Option<&ArchivedRecordMeta> {
        self.view().meta().ok().flatten()
    }

    /// The content type the message was published with.
    pub fn content_type(&self) -> Option<&str> {
        self.meta()
            .and_then(|m| m.content_type.as_ref())
            .map(|s| s.as_str())
    }

    /// The whole encoded record (header, metadata, key, payload), as stored,
    /// without padding.
    pub fn as_bytes(&self) -> &[u8] {
        self.view().as_bytes()
    }

    /// Bytes of [`Self::padded_bytes`], without touching the mapping.
    #[must_use]
    pub fn padded_len(&self) -> usize {
        padded_len(self.len)
    }

    /// The record with its zero padding to 8 bytes: what a delivery frame
    /// carries, straight from the log's mapping.
    pub fn padded_bytes(&self) -> &[u8] {
        match self.segment.bytes(self.pos, self.padded_len()) {
            Some(b) => b,
            // Invariant: the padded record lies below the published
            // `written` of its segment, checked when this handle was made.
            None => unreachable!("published record outside its segment"),
        }
    }
}

/// Records lying back to back in one segment, as one slice of the mapping:
/// what a delivery hands to a vectored socket write without copying.
#[derive(Clone)]
pub struct RecordRun {
    segment: Arc<Segment>,
    start: usize,
    end: usize,
}

impl RecordRun {
    /// A run of the one record `r`, with its padding.
    #[must_use]
    pub fn new(r: &Record) -> Self {
        Self {
            segment: Arc::clone(&r.segment),
            start: r.pos,
            end: r.pos + r.padded_len(),
        }
    }

    /// Appends `r` when it directly follows the run in the same segment.
    pub fn extend(&mut self, r: &Record) -> bool {
        if Arc::ptr_eq(&self.segment, &r.segment) && r.pos == self.end {
            self.end += r.padded_len();
            true
        } else {
            false
        }
    }

    /// Bytes in the run.
    #[must_use]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Never: a run holds at least one record.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// The padded records, straight from the mapping.
    #[must_use]
    pub fn as_slice(&self) -> &[u8] {
        match self.segment.bytes(self.start, self.end - self.start) {
            Some(b) => b,
            // Invariant: every record of the run was published, so the run
            // lies below the segment's `written`.
            None => unreachable!("published run outside its segment"),
        }
    }
}

impl fmt::Debug for RecordRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordRun")
            .field("len", &self.len())
            .finish()
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.view();
        f.debug_struct("Record")
            .field("seq", &v.seq())
            .field("timestamp_us", &v.timestamp_us())
            .field("payload_len", &v.payload().len())
            .finish()
    }
}
