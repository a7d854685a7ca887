//! A record handed out of storage: a reference-counted view of its bytes,
//! whatever holds them.

use std::fmt;
use std::sync::Arc;

use fanlog_protocol::Producer;
use fanlog_protocol::record::{ArchivedRecordMeta, RecordError, RecordView, padded_len};

/// What holds records' bytes for as long as any [`Record`] of it lives: a
/// segment's mapping in the local store (no copy), a buffer elsewhere.
pub trait RecordSource: Send + Sync + 'static {
    /// `len` bytes from `pos`, or `None` when the range is not (yet) a
    /// published part of the source.
    fn bytes(&self, pos: usize, len: usize) -> Option<&[u8]>;
}

/// A buffer that holds one record, padded or not (see [`Record::from_bytes`]).
struct Owned(Box<[u8]>);

impl RecordSource for Owned {
    fn bytes(&self, pos: usize, len: usize) -> Option<&[u8]> {
        self.0.get(pos..pos.checked_add(len)?)
    }
}

/// One message read from a topic: a reference-counted view of its bytes in
/// their source. In the local store no copy is made, and the segment stays
/// mapped while any record of it is alive (even if retention removes its
/// file meanwhile).
#[derive(Clone)]
pub struct Record {
    source: Arc<dyn RecordSource>,
    pos: usize,
    len: usize,
}

impl Record {
    /// The record of `len` bytes at `pos` of `source`. The caller has
    /// parsed it there (structure and seq), and the source never changes
    /// those bytes while it lives.
    #[must_use]
    pub fn new(source: Arc<dyn RecordSource>, pos: usize, len: usize) -> Self {
        Self { source, pos, len }
    }

    /// A record owning a copy of `bytes`, one encoded record as stored: for
    /// a store that reads records into buffers.
    ///
    /// # Errors
    /// The bytes are not exactly one record (its structure is checked, its
    /// checksum is not: see [`Record::verify`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RecordError> {
        let len = RecordView::parse_trusted_unpadded(bytes)?.as_bytes().len();
        let mut padded = vec![0; padded_len(len)];
        padded[..len].copy_from_slice(bytes);
        Ok(Self::new(Arc::new(Owned(padded.into())), 0, len))
    }

    /// The parsed record. Its structure was checked when this handle was made
    /// and a source never changes published bytes, so parsing cannot fail.
    pub fn view(&self) -> RecordView<'_> {
        match RecordView::parse_trusted_unpadded(self.unpadded()) {
            Ok(v) => v,
            // Invariant: published bytes are immutable, and this record was
            // validated (structure and seq) when it was read.
            Err(e) => unreachable!("validated record changed under a reader: {e}"),
        }
    }

    fn unpadded(&self) -> &[u8] {
        &self.padded_bytes()[..self.len]
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
        match self.source.bytes(self.pos, self.padded_len()) {
            Some(b) => b,
            // Invariant: the padded record was published in its source,
            // checked when this handle was made.
            None => unreachable!("published record outside its source"),
        }
    }
}

/// Records lying back to back in one source, as one slice of it: what a
/// delivery hands to a vectored socket write without copying.
#[derive(Clone)]
pub struct RecordRun {
    source: Arc<dyn RecordSource>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for RecordRun {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl RecordRun {
    /// A run of the one record `r`, with its padding.
    #[must_use]
    pub fn new(r: &Record) -> Self {
        Self {
            source: Arc::clone(&r.source),
            start: r.pos,
            end: r.pos + r.padded_len(),
        }
    }

    /// Appends `r` when it directly follows the run in the same source.
    pub fn extend(&mut self, r: &Record) -> bool {
        if Arc::ptr_eq(&self.source, &r.source) && r.pos == self.end {
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

    /// The padded records, straight from their source.
    #[must_use]
    pub fn as_slice(&self) -> &[u8] {
        match self.source.bytes(self.start, self.end - self.start) {
            Some(b) => b,
            // Invariant: every record of the run was published in its
            // source.
            None => unreachable!("published run outside its source"),
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
