//! The record: one message as it lies in a topic's log and as it travels in a
//! delivery.
//!
//! The same bytes serve both, so the broker can hand a subscriber a slice of
//! its log mapping without re-encoding, and a client can check the checksum
//! the broker computed once, at append.
//!
//! Wire format (integers little-endian; a record starts 8-byte aligned in the log):
//!
//! ```text
//! offset size  field
//!  0      4    crc32c (Castagnoli) of bytes [4, len)
//!  4      4    len: bytes of header + producer + meta + key + payload (padding excluded)
//!  8      8    seq, the record's sequence number in its topic
//! 16      8    timestamp, microseconds since the Unix epoch (broker's clock at append)
//! 24      2    flags: bit 0 = producer block present; other bits must be 0
//! 26      2    key_len
//! 28      4    meta_len
//! 32     16    producer block, only with flag bit 0: producer id u64, producer seq u64
//!  .   meta_len  meta: an rkyv archive of [`RecordMeta`] (empty = no metadata)
//!  .   key_len   key: opaque bytes
//!  .      ..    payload: opaque bytes, the rest up to len
//!  .      ..    zero padding up to the next multiple of 8
//! ```
//!
//! A header of all zeros (len 0) is never a record: the log's preallocated
//! tail reads as zeros, and that is how recovery finds its end.

use rkyv::rancor;

/// Fixed header size in bytes.
pub const HEADER_LEN: usize = 32;
/// Size of the optional producer block.
pub const PRODUCER_LEN: usize = 16;
/// Records start at multiples of this.
pub const RECORD_ALIGN: usize = 8;
/// Flag bit: the producer block is present.
pub const FLAG_PRODUCER: u16 = 1;
const KNOWN_FLAGS: u16 = FLAG_PRODUCER;

/// Rounds `len` up to the record alignment.
pub const fn padded_len(len: usize) -> usize {
    (len + RECORD_ALIGN - 1) & !(RECORD_ALIGN - 1)
}

/// A producer's identity and its own sequence number for one message: the
/// pair the broker deduplicates retries by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Producer {
    /// Chosen by the producer, unique among producers of a topic (random u64).
    pub id: u64,
    /// Increases by one per message of this producer.
    pub seq: u64,
}

/// One header of a message: a name and opaque bytes.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Header {
    /// Header name, as given.
    pub name: String,
    /// Header value, opaque.
    pub value: Vec<u8>,
}

/// Structured metadata kept with a message: content type, headers and the
/// idempotency key it was published with. Stored as an rkyv archive so a
/// reader can look at it in place, without deserialising.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct RecordMeta {
    /// MIME type of the payload, e.g. `application/json`.
    pub content_type: Option<String>,
    /// Further headers (CloudEvents attributes travel here as `ce-*`).
    pub headers: Vec<Header>,
    /// The key a publisher gave to make retries idempotent.
    pub idempotency_key: Option<Vec<u8>>,
}

impl RecordMeta {
    /// True when there is nothing to store (the record then has `meta_len` 0).
    pub fn is_empty(&self) -> bool {
        self.content_type.is_none() && self.headers.is_empty() && self.idempotency_key.is_none()
    }

    /// Archives the metadata; empty metadata archives to no bytes at all.
    ///
    /// # Errors
    /// [`RecordError::Meta`] if rkyv refuses the value.
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        if self.is_empty() {
            return Ok(Vec::new());
        }
        rkyv::to_bytes::<rancor::Error>(self)
            .map(|v| v.into_vec())
            .map_err(|e| RecordError::Meta(e.to_string()))
    }

    /// Validates archived metadata and gives access to it in place.
    ///
    /// # Errors
    /// [`RecordError::Meta`] if the bytes are not a valid archive.
    pub fn access(bytes: &[u8]) -> Result<&ArchivedRecordMeta, RecordError> {
        rkyv::access::<ArchivedRecordMeta, rancor::Error>(bytes)
            .map_err(|e| RecordError::Meta(e.to_string()))
    }

    /// Decodes archived metadata into an owned value; no bytes = empty.
    ///
    /// # Errors
    /// [`RecordError::Meta`] if the bytes are not a valid archive.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        let archived = Self::access(bytes)?;
        rkyv::deserialize::<Self, rancor::Error>(archived)
            .map_err(|e| RecordError::Meta(e.to_string()))
    }
}

/// Why bytes are not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// More bytes are needed: at least `needed` in all.
    #[error("record incomplete: need {needed} bytes, have {have}")]
    Incomplete {
        /// Total bytes needed from the record's start.
        needed: usize,
        /// Bytes available.
        have: usize,
    },
    /// The header is inconsistent.
    #[error("malformed record: {0}")]
    Malformed(&'static str),
    /// The checksum does not match the bytes.
    #[error("record checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The checksum in the header.
        stored: u32,
        /// The checksum of the bytes.
        computed: u32,
    },
    /// A field does not fit its size in the header.
    #[error("record too large: {0}")]
    TooLarge(&'static str),
    /// The metadata archive is invalid.
    #[error("invalid record metadata: {0}")]
    Meta(String),
}

/// The parts of a record to encode, borrowed from the caller.
#[derive(Debug, Clone, Copy)]
pub struct RecordParts<'a> {
    /// Sequence number.
    pub seq: u64,
    /// Microseconds since the Unix epoch.
    pub timestamp_us: u64,
    /// Producer identity, for deduplication.
    pub producer: Option<Producer>,
    /// Archived [`RecordMeta`] (from [`RecordMeta::encode`]), or empty.
    pub meta: &'a [u8],
    /// Message key, or empty.
    pub key: &'a [u8],
    /// Payload.
    pub payload: &'a [u8],
}

/// A record's prefix, from [`RecordParts::head`].
#[derive(Debug, Clone, Copy)]
pub struct RecordHead {
    bytes: [u8; HEADER_LEN + PRODUCER_LEN],
    prefix_len: usize,
    /// Zero bytes after the payload, up to the record's padded length.
    pub padding: usize,
}

impl RecordHead {
    /// The fixed header, checksum included, and the producer block if any.
    pub fn prefix(&self) -> &[u8] {
        &self.bytes[..self.prefix_len]
    }
}

impl RecordParts<'_> {
    fn prefix_len(&self) -> usize {
        HEADER_LEN
            + if self.producer.is_some() {
                PRODUCER_LEN
            } else {
                0
            }
    }

    /// The record's length without padding (the `len` field).
    pub fn len(&self) -> usize {
        self.prefix_len() + self.meta.len() + self.key.len() + self.payload.len()
    }

    /// Always false: a record has at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Bytes the record takes in the log, padding included.
    pub fn padded_len(&self) -> usize {
        padded_len(self.len())
    }

    /// The record's prefix (fixed header, checksum included, and producer
    /// block): the bytes that go before its metadata, key and payload. A
    /// writer can put the prefix, the parts as they are and
    /// [`RecordHead::padding`] zero bytes side by side (a vectored write)
    /// instead of copying the parts into one buffer first.
    ///
    /// # Errors
    /// [`RecordError::TooLarge`] if the key, metadata or total length does not
    /// fit its header field.
    pub fn head(&self) -> Result<RecordHead, RecordError> {
        let key_len = u16::try_from(self.key.len())
            .map_err(|_| RecordError::TooLarge("key over 65535 bytes"))?;
        let meta_len = u32::try_from(self.meta.len())
            .map_err(|_| RecordError::TooLarge("metadata over 4 GiB"))?;
        let len = self.len();
        let len32 = u32::try_from(len).map_err(|_| RecordError::TooLarge("record over 4 GiB"))?;
        let flags = if self.producer.is_some() {
            FLAG_PRODUCER
        } else {
            0
        };
        let mut bytes = [0u8; HEADER_LEN + PRODUCER_LEN];
        bytes[4..8].copy_from_slice(&len32.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.seq.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.timestamp_us.to_le_bytes());
        bytes[24..26].copy_from_slice(&flags.to_le_bytes());
        bytes[26..28].copy_from_slice(&key_len.to_le_bytes());
        bytes[28..32].copy_from_slice(&meta_len.to_le_bytes());
        if let Some(p) = self.producer {
            bytes[32..40].copy_from_slice(&p.id.to_le_bytes());
            bytes[40..48].copy_from_slice(&p.seq.to_le_bytes());
        }
        let prefix_len = self.prefix_len();
        let mut crc = crc32c::crc32c(&bytes[4..prefix_len]);
        crc = crc32c::crc32c_append(crc, self.meta);
        crc = crc32c::crc32c_append(crc, self.key);
        crc = crc32c::crc32c_append(crc, self.payload);
        bytes[0..4].copy_from_slice(&crc.to_le_bytes());
        Ok(RecordHead {
            bytes,
            prefix_len,
            padding: padded_len(len) - len,
        })
    }

    /// The record's parts in the order they are stored, after the prefix.
    pub fn parts(&self) -> [&[u8]; 3] {
        [self.meta, self.key, self.payload]
    }

    /// Writes the record at the start of `dst` (at least [`Self::padded_len`]
    /// bytes), padding included, and returns the bytes written.
    ///
    /// The checksum is computed from the parts, not by reading `dst` back,
    /// so `dst` may be a slow mapping.
    ///
    /// # Errors
    /// [`RecordError::TooLarge`] if the key, metadata or total length does not
    /// fit its header field; [`RecordError::Incomplete`] if `dst` is too small.
    /// Nothing is written on error.
    pub fn write(&self, dst: &mut [u8]) -> Result<usize, RecordError> {
        let head = self.head()?;
        let padded = self.padded_len();
        if dst.len() < padded {
            return Err(RecordError::Incomplete {
                needed: padded,
                have: dst.len(),
            });
        }
        let mut at = 0;
        for part in std::iter::once(head.prefix()).chain(self.parts()) {
            dst[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        dst[at..padded].fill(0);
        Ok(padded)
    }

    /// Appends the record, padding included, to a caller-owned buffer.
    ///
    /// # Errors
    /// As [`Self::write`]; `buf` is left as it was on error.
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<usize, RecordError> {
        let start = buf.len();
        buf.resize(start + self.padded_len(), 0);
        match self.write(&mut buf[start..]) {
            Ok(n) => Ok(n),
            Err(e) => {
                buf.truncate(start);
                Err(e)
            }
        }
    }
}

/// A record read in place from a byte slice.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    /// Exactly `len` bytes: the record without its padding.
    bytes: &'a [u8],
}

/// Checks the fixed header at the start of `bytes`; returns the record's
/// `len`.
fn check_header(bytes: &[u8]) -> Result<usize, RecordError> {
    if bytes.len() < HEADER_LEN {
        return Err(RecordError::Incomplete {
            needed: HEADER_LEN,
            have: bytes.len(),
        });
    }
    let len = le_u32(bytes, 4) as usize;
    if len < HEADER_LEN {
        return Err(RecordError::Malformed("length shorter than the header"));
    }
    let flags = le_u16(bytes, 24);
    if flags & !KNOWN_FLAGS != 0 {
        return Err(RecordError::Malformed("unknown flag bits"));
    }
    let prefix = HEADER_LEN
        + if flags & FLAG_PRODUCER != 0 {
            PRODUCER_LEN
        } else {
            0
        };
    let key_len = le_u16(bytes, 26) as usize;
    let meta_len = le_u32(bytes, 28) as usize;
    if prefix + key_len + meta_len > len {
        return Err(RecordError::Malformed(
            "key and metadata longer than the record",
        ));
    }
    Ok(len)
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl<'a> RecordView<'a> {
    /// Parses the record at the start of `bytes` and verifies its checksum.
    /// Returns the view and the bytes it takes, padding included.
    ///
    /// # Errors
    /// [`RecordError::Incomplete`] when `bytes` ends before the padded record
    /// does (read more); [`RecordError::Malformed`] or
    /// [`RecordError::Checksum`] when the bytes are not a record.
    pub fn parse(bytes: &'a [u8]) -> Result<(Self, usize), RecordError> {
        let (view, used) = Self::parse_trusted(bytes)?;
        view.verify_checksum()?;
        Ok((view, used))
    }

    /// Like [`Self::parse`] but without the checksum: for bytes whose checksum
    /// was already verified (the log after recovery). The structure is still
    /// checked, so no accessor can read out of bounds.
    ///
    /// # Errors
    /// As [`Self::parse`], without [`RecordError::Checksum`].
    pub fn parse_trusted(bytes: &'a [u8]) -> Result<(Self, usize), RecordError> {
        let len = check_header(bytes)?;
        let padded = padded_len(len);
        if bytes.len() < padded {
            return Err(RecordError::Incomplete {
                needed: padded,
                have: bytes.len(),
            });
        }
        Ok((
            Self {
                bytes: &bytes[..len],
            },
            padded,
        ))
    }

    /// Like [`Self::parse_trusted`] for exactly one record without its
    /// padding (as kept by a holder that trimmed it).
    ///
    /// # Errors
    /// As [`Self::parse_trusted`], or when `bytes` is not exactly one record.
    pub fn parse_trusted_unpadded(bytes: &'a [u8]) -> Result<Self, RecordError> {
        let len = check_header(bytes)?;
        if len != bytes.len() {
            return Err(RecordError::Malformed("length differs from the slice"));
        }
        Ok(Self { bytes })
    }

    fn flags(&self) -> u16 {
        le_u16(self.bytes, 24)
    }

    fn prefix_len(&self) -> usize {
        HEADER_LEN
            + if self.flags() & FLAG_PRODUCER != 0 {
                PRODUCER_LEN
            } else {
                0
            }
    }

    fn key_len(&self) -> usize {
        le_u16(self.bytes, 26) as usize
    }

    fn meta_len(&self) -> usize {
        le_u32(self.bytes, 28) as usize
    }

    /// The stored checksum.
    pub fn crc(&self) -> u32 {
        le_u32(self.bytes, 0)
    }

    /// Checks the stored checksum against the record's bytes.
    ///
    /// # Errors
    /// [`RecordError::Checksum`] when they differ.
    pub fn verify_checksum(&self) -> Result<(), RecordError> {
        let stored = self.crc();
        let computed = crc32c::crc32c(&self.bytes[4..]);
        if stored != computed {
            return Err(RecordError::Checksum { stored, computed });
        }
        Ok(())
    }

    /// Sequence number.
    pub fn seq(&self) -> u64 {
        le_u64(self.bytes, 8)
    }

    /// Microseconds since the Unix epoch, at append.
    pub fn timestamp_us(&self) -> u64 {
        le_u64(self.bytes, 16)
    }

    /// The producer identity, when the message carried one.
    pub fn producer(&self) -> Option<Producer> {
        (self.flags() & FLAG_PRODUCER != 0).then(|| Producer {
            id: le_u64(self.bytes, 32),
            seq: le_u64(self.bytes, 40),
        })
    }

    /// The archived metadata bytes (empty when there is none).
    pub fn meta_bytes(&self) -> &'a [u8] {
        let at = self.prefix_len();
        &self.bytes[at..at + self.meta_len()]
    }

    /// The metadata, validated and accessed in place; `None` when empty.
    ///
    /// # Errors
    /// [`RecordError::Meta`] when the archive is invalid.
    pub fn meta(&self) -> Result<Option<&'a ArchivedRecordMeta>, RecordError> {
        let bytes = self.meta_bytes();
        if bytes.is_empty() {
            return Ok(None);
        }
        RecordMeta::access(bytes).map(Some)
    }

    /// The message key (empty when none).
    pub fn key(&self) -> &'a [u8] {
        let at = self.prefix_len() + self.meta_len();
        &self.bytes[at..at + self.key_len()]
    }

    /// The payload.
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[self.prefix_len() + self.meta_len() + self.key_len()..]
    }

    /// The whole record without padding, as stored.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Bytes the record takes with padding.
    pub fn padded_len(&self) -> usize {
        padded_len(self.bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample_meta() -> Vec<u8> {
        RecordMeta {
            content_type: Some("application/json".into()),
            headers: vec![Header {
                name: "ce-type".into(),
                value: b"com.example.created".to_vec(),
            }],
            idempotency_key: Some(b"k-1".to_vec()),
        }
        .encode()
        .unwrap()
    }

    #[test]
    fn exact_bytes_of_a_minimal_record() {
        let parts = RecordParts {
            seq: 7,
            timestamp_us: 0x0102_0304_0506_0708,
            producer: None,
            meta: &[],
            key: b"",
            payload: b"hi",
        };
        let mut buf = Vec::new();
        assert_eq!(parts.encode(&mut buf).unwrap(), 40);
        let crc = crc32c::crc32c(&buf[4..34]);
        let mut want = Vec::new();
        want.extend_from_slice(&crc.to_le_bytes());
        want.extend_from_slice(&34u32.to_le_bytes());
        want.extend_from_slice(&7u64.to_le_bytes());
        want.extend_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(b"hi");
        want.extend_from_slice(&[0; 6]);
        assert_eq!(buf, want);
    }

    #[test]
    fn roundtrip_with_every_part() {
        let meta = sample_meta();
        let parts = RecordParts {
            seq: u64::MAX,
            timestamp_us: 42,
            producer: Some(Producer { id: 9, seq: 3 }),
            meta: &meta,
            key: b"user-17",
            payload: b"{\"a\":1}",
        };
        let mut buf = vec![0xAA; 3]; // encoding appends
        parts.encode(&mut buf).unwrap();
        let (view, used) = RecordView::parse(&buf[3..]).unwrap();
        assert_eq!(used, parts.padded_len());
        assert_eq!(view.seq(), u64::MAX);
        assert_eq!(view.timestamp_us(), 42);
        assert_eq!(view.producer(), Some(Producer { id: 9, seq: 3 }));
        assert_eq!(view.key(), b"user-17");
        assert_eq!(view.payload(), b"{\"a\":1}");
        let m = view.meta().unwrap().unwrap();
        assert_eq!(m.content_type.as_deref(), Some("application/json"));
        assert_eq!(m.headers[0].name.as_str(), "ce-type");
        assert_eq!(
            RecordMeta::decode(view.meta_bytes())
                .unwrap()
                .idempotency_key
                .unwrap(),
            b"k-1"
        );
    }

    #[test]
    fn every_truncation_is_incomplete() {
        let meta = sample_meta();
        let parts = RecordParts {
            seq: 1,
            timestamp_us: 2,
            producer: Some(Producer { id: 1, seq: 1 }),
            meta: &meta,
            key: b"k",
            payload: &[5; 100],
        };
        let mut buf = Vec::new();
        parts.encode(&mut buf).unwrap();
        for cut in 0..buf.len() {
            match RecordView::parse(&buf[..cut]) {
                Err(RecordError::Incomplete { needed, have }) => {
                    assert_eq!(have, cut);
                    assert!(needed > cut);
                }
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn zeros_are_not_a_record() {
        assert_eq!(
            RecordView::parse(&[0; 64]).unwrap_err(),
            RecordError::Malformed("length shorter than the header")
        );
    }

    #[test]
    fn unknown_flags_and_overlong_fields_are_malformed() {
        let parts = RecordParts {
            seq: 1,
            timestamp_us: 2,
            producer: None,
            meta: &[],
            key: b"",
            payload: b"x",
        };
        let mut buf = Vec::new();
        parts.encode(&mut buf).unwrap();
        let mut bad = buf.clone();
        bad[24] = 0x80;
        assert!(matches!(
            RecordView::parse(&bad),
            Err(RecordError::Malformed(_))
        ));
        let mut bad = buf.clone();
        bad[26] = 200; // key longer than the record
        assert!(matches!(
            RecordView::parse(&bad),
            Err(RecordError::Malformed(_))
        ));
    }

    #[test]
    fn oversized_key_is_refused_and_nothing_written() {
        let key = vec![0u8; 70_000];
        let parts = RecordParts {
            seq: 0,
            timestamp_us: 0,
            producer: None,
            meta: &[],
            key: &key,
            payload: b"",
        };
        let mut buf = vec![1, 2, 3];
        assert!(matches!(
            parts.encode(&mut buf),
            Err(RecordError::TooLarge(_))
        ));
        assert_eq!(buf, [1, 2, 3]);
    }

    #[test]
    fn invalid_meta_archive_is_an_error_not_a_panic() {
        assert!(matches!(
            RecordMeta::access(&[0xFF; 16]),
            Err(RecordError::Meta(_))
        ));
    }

    proptest! {
        #[test]
        fn any_flipped_byte_is_detected(payload in proptest::collection::vec(any::<u8>(), 0..300),
                                        at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let parts = RecordParts { seq: 3, timestamp_us: 4, producer: None, meta: &[], key: b"", payload: &payload };
            let mut buf = Vec::new();
            parts.encode(&mut buf).unwrap();
            let len = parts.len();
            let i = at.index(len);
            buf[i] ^= 1 << bit;
            prop_assert!(RecordView::parse(&buf).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok((v, used)) = RecordView::parse(&bytes) {
                prop_assert!(used <= bytes.len());
                let _ = (v.payload(), v.key(), v.meta(), v.producer());
            }
        }
    }
}
