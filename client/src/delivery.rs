//! What a subscription yields.

use std::fmt;

use bytes::Bytes;
use fanlog_protocol::record::{RecordView, padded_len};
use fanlog_protocol::{Producer, RecordMeta};

/// One record received from the broker: owned bytes, checksum verified on
/// arrival, fields read in place.
#[derive(Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The record, unpadded, as the broker stored it.
    bytes: Bytes,
}

impl Delivery {
    /// Verifies the checksum of one encoded record and wraps it.
    ///
    /// # Errors
    /// The record error, when the bytes are not a valid record.
    pub fn from_record(bytes: Bytes) -> Result<Self, fanlog_protocol::record::RecordError> {
        let mut padded = bytes;
        let len = RecordView::parse(&padded)?.0.as_bytes().len();
        padded.truncate(len);
        Ok(Self { bytes: padded })
    }

    /// Wraps a record whose checksum was already verified, unpadded.
    pub(crate) fn from_verified(bytes: Bytes) -> Self {
        Self { bytes }
    }

    fn view(&self) -> RecordView<'_> {
        // The bytes were verified when the Delivery was made and are
        // immutable, so this cannot fail.
        match RecordView::parse_trusted_unpadded(&self.bytes) {
            Ok(v) => v,
            Err(e) => unreachable!("validated record no longer parses: {e}"),
        }
    }

    /// Sequence number in its topic.
    pub fn seq(&self) -> u64 {
        self.view().seq()
    }

    /// Append time at the broker, microseconds since the Unix epoch.
    pub fn timestamp_us(&self) -> u64 {
        self.view().timestamp_us()
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        self.view().payload()
    }

    /// The payload as shared bytes, without copying.
    pub fn payload_bytes(&self) -> Bytes {
        self.bytes.slice_ref(self.view().payload())
    }

    /// The message key (empty when none).
    pub fn key(&self) -> &[u8] {
        self.view().key()
    }

    /// The producer identity it was published with.
    pub fn producer(&self) -> Option<Producer> {
        self.view().producer()
    }

    /// Content type, headers and idempotency key (empty when none).
    pub fn meta(&self) -> RecordMeta {
        RecordMeta::decode(self.view().meta_bytes()).unwrap_or_default()
    }

    /// The content type the message was published with.
    pub fn content_type(&self) -> Option<String> {
        self.meta().content_type
    }

    /// Size of the record on the wire, padding included.
    pub fn wire_len(&self) -> usize {
        padded_len(self.bytes.len())
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("seq", &self.seq())
            .field("payload_len", &self.payload().len())
            .finish()
    }
}

/// What a subscription yields: the next [`Delivery`] or a gap.
pub type Event = fanlog_protocol::Event<Delivery>;
