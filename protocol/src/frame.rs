//! Frames of the binary protocol, the same over TCP and over QUIC streams.
//!
//! Wire format of every frame (integers little-endian):
//!
//! ```text
//! offset size  field
//!  0      4    len: bytes after this field (kind + request id + body), >= 5
//!  4      1    kind (see [`Kind`])
//!  5      4    request id: chosen by the client, echoed in the reply, so
//!              requests can be pipelined; 0 on frames that answer nothing
//!  9    len-5  body, per kind
//! ```
//!
//! Body fields use these shapes: `str8` = u8 length + UTF-8 bytes, `str16` =
//! u16 length + UTF-8, `bytes16` / `bytes32` = u16 / u32 length + bytes.
//!
//! | kind | frame | body |
//! |---|---|---|
//! | 0x01 | Hello (c→s, first frame) | magic `FNLG`, version u16, token str16, client str8 |
//! | 0x81 | HelloOk | version u16, max_frame u32, server str8 |
//! | 0x02 | Publish | topic str8, count u32, count × message |
//! | 0x82 | PublishAck | count u32, count × seq u64 |
//! | 0x03 | Subscribe | sub u32, topic str8, start u8 (0 earliest, 1 latest, 2 seq, 3 group, 4 time), seq u64 (the seq; for time, microseconds since the Unix epoch), group str8, credit u32 |
//! | 0x83 | Subscribed | sub u32, first seq to be delivered u64 |
//! | 0x04 | Credit | sub u32, bytes u32 |
//! | 0x05 | Unsubscribe | sub u32 |
//! | 0x84 | Deliver (s→c) | sub u32, count u32, count × record ([`crate::record`], padded) |
//! | 0x85 | Gap (s→c) | sub u32, from u64, to u64 |
//! | 0x8B | SubEnd (s→c) | sub u32, code u16, message str16 |
//! | 0x06 | Commit | topic str8, group str8, seq u64 (answered by Ok) |
//! | 0x86 | Ok | (empty) |
//! | 0x07 | Fetch | topic str8, from u64, max_count u32, max_bytes u32 |
//! | 0x87 | Fetched | next u64, gap u8 (0/1), gap_from u64, gap_to u64, count u32, count × record |
//! | 0x08 | Topics | (empty) |
//! | 0x88 | TopicList | count u32, count × (name str8, first_seq u64, next_seq u64, bytes u64) |
//! | 0x09 | Committed | topic str8, group str8 |
//! | 0x89 | CommittedOffset | present u8, seq u64 |
//! | 0x0A | Ping | nonce u64 |
//! | 0x8A | Pong | nonce u64 |
//! | 0x0F | Close (either side) | code u16, reason str16 |
//! | 0xEE | Error | code u16 ([`ErrorCode`]), message str16 |
//!
//! A publish message: flags u8 (bit 0: producer block present), producer id
//! u64 + producer seq u64 when flagged, key bytes16, meta bytes32 (an rkyv
//! archive of [`RecordMeta`](crate::RecordMeta), or empty), payload bytes32.
//!
//! Deliveries carry records exactly as the log stores them, so the broker
//! writes them from its mapping without re-encoding and the client can verify
//! each record's checksum.

use crate::record::{Producer, RecordError, RecordView};

/// Protocol version spoken by this crate.
pub const VERSION: u16 = 1;
/// First four body bytes of a Hello.
pub const MAGIC: [u8; 4] = *b"FNLG";
/// Bytes of the frame header.
pub const HEADER_LEN: usize = 9;
/// Default limit on a frame's `len` field.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// Frame kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum Kind {
    Hello = 0x01,
    HelloOk = 0x81,
    Publish = 0x02,
    PublishAck = 0x82,
    Subscribe = 0x03,
    Subscribed = 0x83,
    Credit = 0x04,
    Unsubscribe = 0x05,
    Deliver = 0x84,
    Gap = 0x85,
    SubEnd = 0x8B,
    Commit = 0x06,
    Ok = 0x86,
    Fetch = 0x07,
    Fetched = 0x87,
    Topics = 0x08,
    TopicList = 0x88,
    Committed = 0x09,
    CommittedOffset = 0x89,
    Ping = 0x0A,
    Pong = 0x8A,
    Close = 0x0F,
    Error = 0xEE,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Self> {
        use Kind::*;
        Some(match b {
            0x01 => Hello,
            0x81 => HelloOk,
            0x02 => Publish,
            0x82 => PublishAck,
            0x03 => Subscribe,
            0x83 => Subscribed,
            0x04 => Credit,
            0x05 => Unsubscribe,
            0x84 => Deliver,
            0x85 => Gap,
            0x8B => SubEnd,
            0x06 => Commit,
            0x86 => Ok,
            0x07 => Fetch,
            0x87 => Fetched,
            0x08 => Topics,
            0x88 => TopicList,
            0x09 => Committed,
            0x89 => CommittedOffset,
            0x0A => Ping,
            0x8A => Pong,
            0x0F => Close,
            0xEE => Error,
            _ => return None,
        })
    }
}

/// Error codes carried by [`Frame::Error`] and [`Frame::Close`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame could not be decoded; the connection is closed.
    BadFrame,
    /// A frame's length is over the limit; the connection is closed.
    FrameTooLarge,
    /// The Hello named a version this side does not speak.
    UnsupportedVersion,
    /// A request came before the Hello.
    HandshakeRequired,
    /// Missing or wrong token.
    Unauthorized,
    /// The token does not allow this.
    Forbidden,
    /// A topic or group name breaks the naming rules.
    InvalidName,
    /// The topic does not exist.
    TopicNotFound,
    /// A message is over the size limit; nothing of the batch was written.
    MessageTooLarge,
    /// A commit past the end of the topic.
    OffsetOutOfRange,
    /// The broker cannot take writes on this topic now (I/O error, failed sync).
    Unavailable,
    /// The connection limit is reached.
    TooManyConnections,
    /// A subscription id that is not open.
    UnknownSubscription,
    /// A subscription id that is already open.
    DuplicateSubscription,
    /// A publish with no messages.
    EmptyBatch,
    /// A frame kind this side does not know or does not accept.
    UnknownFrame,
    /// The broker is shutting down.
    ShuttingDown,
    /// Anything else.
    Internal,
    /// The token's publish rate is exceeded; the message says when to retry.
    RateLimited,
    /// A configured limit (topics, connections per address, ...) is reached.
    LimitReached,
    /// A producer sequence or idempotency key already used for a different
    /// message; nothing of the batch from that message on was written.
    IdempotencyConflict,
    /// Creating a topic that exists already.
    TopicExists,
    /// A code this version does not know.
    Other(u16),
}

impl ErrorCode {
    /// The code on the wire.
    pub fn to_u16(self) -> u16 {
        use ErrorCode::*;
        match self {
            BadFrame => 1,
            FrameTooLarge => 2,
            UnsupportedVersion => 3,
            HandshakeRequired => 4,
            Unauthorized => 5,
            Forbidden => 6,
            InvalidName => 7,
            TopicNotFound => 8,
            MessageTooLarge => 9,
            OffsetOutOfRange => 10,
            Unavailable => 11,
            TooManyConnections => 12,
            UnknownSubscription => 13,
            DuplicateSubscription => 14,
            EmptyBatch => 15,
            UnknownFrame => 16,
            ShuttingDown => 17,
            Internal => 18,
            RateLimited => 19,
            LimitReached => 20,
            IdempotencyConflict => 21,
            TopicExists => 22,
            Other(c) => c,
        }
    }

    /// The code from the wire.
    pub fn from_u16(c: u16) -> Self {
        use ErrorCode::*;
        match c {
            1 => BadFrame,
            2 => FrameTooLarge,
            3 => UnsupportedVersion,
            4 => HandshakeRequired,
            5 => Unauthorized,
            6 => Forbidden,
            7 => InvalidName,
            8 => TopicNotFound,
            9 => MessageTooLarge,
            10 => OffsetOutOfRange,
            11 => Unavailable,
            12 => TooManyConnections,
            13 => UnknownSubscription,
            14 => DuplicateSubscription,
            15 => EmptyBatch,
            16 => UnknownFrame,
            17 => ShuttingDown,
            18 => Internal,
            19 => RateLimited,
            20 => LimitReached,
            21 => IdempotencyConflict,
            22 => TopicExists,
            c => Other(c),
        }
    }
}

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

/// A decoded frame, borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Frame<'a> {
    Hello {
        version: u16,
        token: &'a str,
        client: &'a str,
    },
    HelloOk {
        version: u16,
        max_frame: u32,
        server: &'a str,
    },
    Publish {
        topic: &'a str,
        messages: Vec<WireMessage<'a>>,
    },
    PublishAck {
        seqs: Vec<u64>,
    },
    Subscribe {
        sub: u32,
        topic: &'a str,
        start: Start<'a>,
        credit: u32,
    },
    Subscribed {
        sub: u32,
        start_seq: u64,
    },
    Credit {
        sub: u32,
        bytes: u32,
    },
    Unsubscribe {
        sub: u32,
    },
    Deliver {
        sub: u32,
        records: Records<'a>,
    },
    Gap {
        sub: u32,
        from: u64,
        to: u64,
    },
    /// The broker ended subscription `sub` (its topic was deleted, or a
    /// read failed); nothing more comes for it.
    SubEnd {
        sub: u32,
        code: ErrorCode,
        message: &'a str,
    },
    Commit {
        topic: &'a str,
        group: &'a str,
        seq: u64,
    },
    Ok,
    Fetch {
        topic: &'a str,
        from: u64,
        max_count: u32,
        max_bytes: u32,
    },
    Fetched {
        next: u64,
        gap: Option<(u64, u64)>,
        records: Records<'a>,
    },
    Topics,
    TopicList {
        topics: Vec<TopicEntry<'a>>,
    },
    Committed {
        topic: &'a str,
        group: &'a str,
    },
    CommittedOffset {
        seq: Option<u64>,
    },
    Ping {
        nonce: u64,
    },
    Pong {
        nonce: u64,
    },
    Close {
        code: ErrorCode,
        reason: &'a str,
    },
    Error {
        code: ErrorCode,
        message: &'a str,
    },
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length field is over the limit (or under the minimum).
    #[error("frame length {len} outside 5..={max}")]
    BadLength {
        /// Claimed length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// An unknown kind byte.
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
    /// The body does not match its kind's layout.
    #[error("malformed {kind:?} frame: {reason}")]
    Malformed {
        /// The frame kind.
        kind: Kind,
        /// What was wrong.
        reason: &'static str,
    },
    /// A value too large for its field when encoding.
    #[error("cannot encode: {0}")]
    TooLarge(&'static str),
}

impl FrameError {
    /// The error code to send before closing.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::BadLength { .. } => ErrorCode::FrameTooLarge,
            FrameError::UnknownKind(_) => ErrorCode::UnknownFrame,
            _ => ErrorCode::BadFrame,
        }
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    kind: Kind,
}

impl<'a> Cursor<'a> {
    fn bad(&self, reason: &'static str) -> FrameError {
        FrameError::Malformed {
            kind: self.kind,
            reason,
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.b.len() < n {
            return Err(self.bad("body shorter than its fields"));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, FrameError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn utf8(&self, b: &'a [u8]) -> Result<&'a str, FrameError> {
        std::str::from_utf8(b).map_err(|_| self.bad("string is not UTF-8"))
    }
    fn str8(&mut self) -> Result<&'a str, FrameError> {
        let n = self.u8()? as usize;
        let b = self.take(n)?;
        self.utf8(b)
    }
    fn str16(&mut self) -> Result<&'a str, FrameError> {
        let n = self.u16()? as usize;
        let b = self.take(n)?;
        self.utf8(b)
    }
    fn bytes16(&mut self) -> Result<&'a [u8], FrameError> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    fn bytes32(&mut self) -> Result<&'a [u8], FrameError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A count of items each at least `min` bytes: refuses counts the body
    /// cannot hold, so a peer cannot make us reserve memory for nothing.
    fn count(&mut self, min: usize) -> Result<usize, FrameError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min) > self.b.len() {
            return Err(self.bad("count larger than the body can hold"));
        }
        Ok(n)
    }
    fn end(&self) -> Result<(), FrameError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(self.bad("trailing bytes"))
        }
    }
}

/// Total size (header included) of the frame at the start of `buf`, once its
/// length field is there: `Ok(None)` means read more.
///
/// # Errors
/// [`FrameError::BadLength`] when the length is out of range: close the
/// connection, the stream cannot be resynchronised.
pub fn frame_size(buf: &[u8], max_frame: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(5..=max_frame).contains(&len) {
        return Err(FrameError::BadLength {
            len: len as u64,
            max: max_frame,
        });
    }
    Ok(Some(4 + len))
}

/// Decodes the frame at the start of `buf`: `Ok(None)` means incomplete
/// (read more), `Ok(Some((request_id, frame, bytes_used)))` a frame.
///
/// # Errors
/// [`FrameError`] when the bytes are not a frame; the connection should send
/// an Error with [`FrameError::code`] and close.
pub fn decode(buf: &[u8], max_frame: usize) -> Result<Option<(u32, Frame<'_>, usize)>, FrameError> {
    let Some(size) = frame_size(buf, max_frame)? else {
        return Ok(None);
    };
    if buf.len() < size {
        return Ok(None);
    }
    let kind_byte = buf[4];
    let kind = Kind::from_u8(kind_byte).ok_or(FrameError::UnknownKind(kind_byte))?;
    let id = u32::from_le_bytes([buf[5], buf[6], buf[7], buf[8]]);
    let mut c = Cursor {
        b: &buf[HEADER_LEN..size],
        kind,
    };
    let frame = decode_body(kind, &mut c)?;
    c.end()?;
    Ok(Some((id, frame, size)))
}

fn decode_body<'a>(kind: Kind, c: &mut Cursor<'a>) -> Result<Frame<'a>, FrameError> {
    Ok(match kind {
        Kind::Hello => {
            if c.take(4)? != MAGIC {
                return Err(c.bad("bad magic"));
            }
            Frame::Hello {
                version: c.u16()?,
                token: c.str16()?,
                client: c.str8()?,
            }
        }
        Kind::HelloOk => Frame::HelloOk {
            version: c.u16()?,
            max_frame: c.u32()?,
            server: c.str8()?,
        },
        Kind::Publish => {
            let topic = c.str8()?;
            let n = c.count(11)?;
            let mut messages = Vec::with_capacity(n);
            for _ in 0..n {
                let flags = c.u8()?;
                if flags & !1 != 0 {
                    return Err(c.bad("unknown message flags"));
                }
                let producer = if flags & 1 != 0 {
                    Some(Producer {
                        id: c.u64()?,
                        seq: c.u64()?,
                    })
                } else {
                    None
                };
                messages.push(WireMessage {
                    producer,
                    key: c.bytes16()?,
                    meta: c.bytes32()?,
                    payload: c.bytes32()?,
                });
            }
            Frame::Publish { topic, messages }
        }
        Kind::PublishAck => {
            let n = c.count(8)?;
            let mut seqs = Vec::with_capacity(n);
            for _ in 0..n {
                seqs.push(c.u64()?);
            }
            Frame::PublishAck { seqs }
        }
        Kind::Subscribe => {
            let sub = c.u32()?;
            let topic = c.str8()?;
            let mode = c.u8()?;
            let seq = c.u64()?;
            let group = c.str8()?;
            let credit = c.u32()?;
            // One encoding per frame: fields unused by the mode must be zero.
            let start = match (mode, seq, group) {
                (0, 0, "") => Start::Earliest,
                (1, 0, "") => Start::Latest,
                (2, seq, "") => Start::Seq(seq),
                (3, 0, group) => Start::Group(group),
                (4, ts, "") => Start::Time(ts),
                (0..=4, _, _) => return Err(c.bad("a field unused by the start mode is set")),
                _ => return Err(c.bad("unknown start mode")),
            };
            Frame::Subscribe {
                sub,
                topic,
                start,
                credit,
            }
        }
        Kind::Subscribed => Frame::Subscribed {
            sub: c.u32()?,
            start_seq: c.u64()?,
        },
        Kind::Credit => Frame::Credit {
            sub: c.u32()?,
            bytes: c.u32()?,
        },
        Kind::Unsubscribe => Frame::Unsubscribe { sub: c.u32()? },
        Kind::Deliver => {
            let sub = c.u32()?;
            let count = c.count(crate::record::HEADER_LEN)? as u32;
            let bytes = c.take(c.b.len())?;
            Frame::Deliver {
                sub,
                records: Records { count, bytes },
            }
        }
        Kind::Gap => Frame::Gap {
            sub: c.u32()?,
            from: c.u64()?,
            to: c.u64()?,
        },
        Kind::SubEnd => Frame::SubEnd {
            sub: c.u32()?,
            code: ErrorCode::from_u16(c.u16()?),
            message: c.str16()?,
        },
        Kind::Commit => Frame::Commit {
            topic: c.str8()?,
            group: c.str8()?,
            seq: c.u64()?,
        },
        Kind::Ok => Frame::Ok,
        Kind::Fetch => Frame::Fetch {
            topic: c.str8()?,
            from: c.u64()?,
            max_count: c.u32()?,
            max_bytes: c.u32()?,
        },
        Kind::Fetched => {
            let next = c.u64()?;
            let has_gap = c.u8()?;
            let (from, to) = (c.u64()?, c.u64()?);
            let gap = match (has_gap, from, to) {
                (0, 0, 0) => None,
                (1, from, to) => Some((from, to)),
                (0, _, _) => return Err(c.bad("gap bounds set without the gap flag")),
                _ => return Err(c.bad("gap flag is not 0 or 1")),
            };
            let count = c.count(crate::record::HEADER_LEN)? as u32;
            let bytes = c.take(c.b.len())?;
            Frame::Fetched {
                next,
                gap,
                records: Records { count, bytes },
            }
        }
        Kind::Topics => Frame::Topics,
        Kind::TopicList => {
            let n = c.count(25)?;
            let mut topics = Vec::with_capacity(n);
            for _ in 0..n {
                topics.push(TopicEntry {
                    name: c.str8()?,
                    first_seq: c.u64()?,
                    next_seq: c.u64()?,
                    bytes: c.u64()?,
                });
            }
            Frame::TopicList { topics }
        }
        Kind::Committed => Frame::Committed {
            topic: c.str8()?,
            group: c.str8()?,
        },
        Kind::CommittedOffset => {
            let present = c.u8()?;
            let seq = c.u64()?;
            match (present, seq) {
                (0, 0) => Frame::CommittedOffset { seq: None },
                (1, seq) => Frame::CommittedOffset { seq: Some(seq) },
                (0, _) => return Err(c.bad("seq set without the present flag")),
                _ => return Err(c.bad("present flag is not 0 or 1")),
            }
        }
        Kind::Ping => Frame::Ping { nonce: c.u64()? },
        Kind::Pong => Frame::Pong { nonce: c.u64()? },
        Kind::Close => Frame::Close {
            code: ErrorCode::from_u16(c.u16()?),
            reason: c.str16()?,
        },
        Kind::Error => Frame::Error {
            code: ErrorCode::from_u16(c.u16()?),
            message: c.str16()?,
        },
    })
}

fn put_str8(buf: &mut Vec<u8>, s: &str) -> Result<(), FrameError> {
    let n = u8::try_from(s.len()).map_err(|_| FrameError::TooLarge("name over 255 bytes"))?;
    buf.push(n);
    buf.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_str16(buf: &mut Vec<u8>, s: &str) {
    // Longer text is cut at a char boundary rather than refused: it is a
    // message for people, never data.
    let mut end = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    buf.extend_from_slice(&(end as u16).to_le_bytes());
    buf.extend_from_slice(&s.as_bytes()[..end]);
}

/// Starts a frame in `buf`; returns the offset to pass to [`finish`].
pub fn begin(buf: &mut Vec<u8>, kind: Kind, id: u32) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    buf.push(kind as u8);
    buf.extend_from_slice(&id.to_le_bytes());
    start
}

/// Completes the frame started at `start` by writing its length.
///
/// # Errors
/// [`FrameError::TooLarge`] when the frame is over 4 GiB.
pub fn finish(buf: &mut [u8], start: usize) -> Result<(), FrameError> {
    let len = u32::try_from(buf.len() - start - 4)
        .map_err(|_| FrameError::TooLarge("frame over 4 GiB"))?;
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// Writes the header and fixed fields of a Deliver frame whose `count`
/// records (`records_len` bytes) the caller writes right after, possibly
/// straight from the log's mapping with a vectored write.
///
/// # Errors
/// [`FrameError::TooLarge`] when the frame would be over 4 GiB.
pub fn encode_deliver_head(
    buf: &mut Vec<u8>,
    sub: u32,
    count: u32,
    records_len: usize,
) -> Result<(), FrameError> {
    let len = u32::try_from(5 + 8 + records_len)
        .map_err(|_| FrameError::TooLarge("deliver frame over 4 GiB"))?;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.push(Kind::Deliver as u8);
    buf.extend_from_slice(&0u32.to_le_bytes());
    buf.extend_from_slice(&sub.to_le_bytes());
    buf.extend_from_slice(&count.to_le_bytes());
    Ok(())
}

impl Frame<'_> {
    /// The frame's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Frame::Hello { .. } => Kind::Hello,
            Frame::HelloOk { .. } => Kind::HelloOk,
            Frame::Publish { .. } => Kind::Publish,
            Frame::PublishAck { .. } => Kind::PublishAck,
            Frame::Subscribe { .. } => Kind::Subscribe,
            Frame::Subscribed { .. } => Kind::Subscribed,
            Frame::Credit { .. } => Kind::Credit,
            Frame::Unsubscribe { .. } => Kind::Unsubscribe,
            Frame::Deliver { .. } => Kind::Deliver,
            Frame::Gap { .. } => Kind::Gap,
            Frame::SubEnd { .. } => Kind::SubEnd,
            Frame::Commit { .. } => Kind::Commit,
            Frame::Ok => Kind::Ok,
            Frame::Fetch { .. } => Kind::Fetch,
            Frame::Fetched { .. } => Kind::Fetched,
            Frame::Topics => Kind::Topics,
            Frame::TopicList { .. } => Kind::TopicList,
            Frame::Committed { .. } => Kind::Committed,
            Frame::CommittedOffset { .. } => Kind::CommittedOffset,
            Frame::Ping { .. } => Kind::Ping,
            Frame::Pong { .. } => Kind::Pong,
            Frame::Close { .. } => Kind::Close,
            Frame::Error { .. } => Kind::Error,
        }
    }

    /// Appends the frame, with request id `id`, to `buf`.
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] when a field does not fit; `buf` is left as it was.
    pub fn encode(&self, id: u32, buf: &mut Vec<u8>) -> Result<(), FrameError> {
        let start = begin(buf, self.kind(), id);
        let r = self.encode_body(buf).and_then(|()| finish(buf, start));
        if r.is_err() {
            buf.truncate(start);
        }
        r
    }

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<(), FrameError> {
        let u32_of = |n: usize, what| u32::try_from(n).map_err(|_| FrameError::TooLarge(what));
        match self {
            Frame::Hello {
                version,
                token,
                client,
            } => {
                buf.extend_from_slice(&MAGIC);
                buf.extend_from_slice(&version.to_le_bytes());
                if token.len() > u16::MAX as usize {
                    return Err(FrameError::TooLarge("token over 65535 bytes"));
                }
                put_str16(buf, token);
                put_str8(buf, client)?;
            }
            Frame::HelloOk {
                version,
                max_frame,
                server,
            } => {
                buf.extend_from_slice(&version.to_le_bytes());
                buf.extend_from_slice(&max_frame.to_le_bytes());
                put_str8(buf, server)?;
            }
            Frame::Publish { topic, messages } => {
                put_str8(buf, topic)?;
                buf.extend_from_slice(&u32_of(messages.len(), "too many messages")?.to_le_bytes());
                for m in messages {
                    encode_message(buf, m)?;
                }
            }
            Frame::PublishAck { seqs } => {
                buf.extend_from_slice(&u32_of(seqs.len(), "too many seqs")?.to_le_bytes());
                for s in seqs {
                    buf.extend_from_slice(&s.to_le_bytes());
                }
            }
            Frame::Subscribe {
                sub,
                topic,
                start,
                credit,
            } => {
                buf.extend_from_slice(&sub.to_le_bytes());
                put_str8(buf, topic)?;
                let (mode, seq, group) = match start {
                    Start::Earliest => (0u8, 0, ""),
                    Start::Latest => (1, 0, ""),
                    Start::Seq(s) => (2, *s, ""),
                    Start::Group(g) => (3, 0, *g),
                    Start::Time(ts) => (4, *ts, ""),
                };
                buf.push(mode);
                buf.extend_from_slice(&seq.to_le_bytes());
                put_str8(buf, group)?;
                buf.extend_from_slice(&credit.to_le_bytes());
            }
            Frame::Subscribed { sub, start_seq } => {
                buf.extend_from_slice(&sub.to_le_bytes());
                buf.extend_from_slice(&start_seq.to_le_bytes());
            }
            Frame::Credit { sub, bytes } => {
                buf.extend_from_slice(&sub.to_le_bytes());
                buf.extend_from_slice(&bytes.to_le_bytes());
            }
            Frame::Unsubscribe { sub } => buf.extend_from_slice(&sub.to_le_bytes()),
            Frame::Deliver { sub, records } => {
                buf.extend_from_slice(&sub.to_le_bytes());
                buf.extend_from_slice(&records.count.to_le_bytes());
                buf.extend_from_slice(records.bytes);
            }
            Frame::Gap { sub, from, to } => {
                buf.extend_from_slice(&sub.to_le_bytes());
                buf.extend_from_slice(&from.to_le_bytes());
                buf.extend_from_slice(&to.to_le_bytes());
            }
            Frame::SubEnd { sub, code, message } => {
                buf.extend_from_slice(&sub.to_le_bytes());
                buf.extend_from_slice(&code.to_u16().to_le_bytes());
                put_str16(buf, message);
            }
            Frame::Commit { topic, group, seq } => {
                put_str8(buf, topic)?;
                put_str8(buf, group)?;
                buf.extend_from_slice(&seq.to_le_bytes());
            }
            Frame::Ok | Frame::Topics => {}
            Frame::Fetch {
                topic,
                from,
                max_count,
                max_bytes,
            } => {
                put_str8(buf, topic)?;
                buf.extend_from_slice(&from.to_le_bytes());
                buf.extend_from_slice(&max_count.to_le_bytes());
                buf.extend_from_slice(&max_bytes.to_le_bytes());
            }
            Frame::Fetched { next, gap, records } => {
                buf.extend_from_slice(&next.to_le_bytes());
                let (flag, (from, to)) = gap.map_or((0u8, (0, 0)), |g| (1, g));
                buf.push(flag);
                buf.extend_from_slice(&from.to_le_bytes());
                buf.extend_from_slice(&to.to_le_bytes());
                buf.extend_from_slice(&records.count.to_le_bytes());
                buf.extend_from_slice(records.bytes);
            }
            Frame::TopicList { topics } => {
                buf.extend_from_slice(&u32_of(topics.len(), "too many topics")?.to_le_bytes());
                for t in topics {
                    put_str8(buf, t.name)?;
                    buf.extend_from_slice(&t.first_seq.to_le_bytes());
                    buf.extend_from_slice(&t.next_seq.to_le_bytes());
                    buf.extend_from_slice(&t.bytes.to_le_bytes());
                }
            }
            Frame::Committed { topic, group } => {
                put_str8(buf, topic)?;
                put_str8(buf, group)?;
            }
            Frame::CommittedOffset { seq } => {
                buf.push(u8::from(seq.is_some()));
                buf.extend_from_slice(&seq.unwrap_or(0).to_le_bytes());
            }
            Frame::Ping { nonce } | Frame::Pong { nonce } => {
                buf.extend_from_slice(&nonce.to_le_bytes())
            }
            Frame::Close { code, reason: text }
            | Frame::Error {
                code,
                message: text,
            } => {
                buf.extend_from_slice(&code.to_u16().to_le_bytes());
                put_str16(buf, text);
            }
        }
        Ok(())
    }
}

/// Appends one publish message (the layout in the module docs).
///
/// # Errors
/// [`FrameError::TooLarge`] when the key is over 65535 bytes or a part over 4 GiB.
pub fn encode_message(buf: &mut Vec<u8>, m: &WireMessage<'_>) -> Result<(), FrameError> {
    let key_len =
        u16::try_from(m.key.len()).map_err(|_| FrameError::TooLarge("key over 65535 bytes"))?;
    let meta_len =
        u32::try_from(m.meta.len()).map_err(|_| FrameError::TooLarge("metadata over 4 GiB"))?;
    let payload_len =
        u32::try_from(m.payload.len()).map_err(|_| FrameError::TooLarge("payload over 4 GiB"))?;
    match m.producer {
        Some(p) => {
            buf.push(1);
            buf.extend_from_slice(&p.id.to_le_bytes());
            buf.extend_from_slice(&p.seq.to_le_bytes());
        }
        None => buf.push(0),
    }
    buf.extend_from_slice(&key_len.to_le_bytes());
    buf.extend_from_slice(m.key);
    buf.extend_from_slice(&meta_len.to_le_bytes());
    buf.extend_from_slice(m.meta);
    buf.extend_from_slice(&payload_len.to_le_bytes());
    buf.extend_from_slice(m.payload);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RecordParts;

    fn records() -> Vec<u8> {
        let mut buf = Vec::new();
        for seq in 5..8 {
            RecordParts {
                seq,
                timestamp_us: 1,
                producer: None,
                meta: &[],
                key: b"",
                payload: b"data",
            }
            .encode(&mut buf)
            .unwrap();
        }
        buf
    }

    fn samples(recs: &[u8]) -> Vec<Frame<'_>> {
        let msg = WireMessage {
            producer: Some(Producer { id: 1, seq: 2 }),
            key: b"k",
            meta: b"",
            payload: b"hello",
        };
        let plain = WireMessage {
            producer: None,
            key: b"",
            meta: b"",
            payload: b"",
        };
        vec![
            Frame::Hello {
                version: VERSION,
                token: "tok",
                client: "cli",
            },
            Frame::HelloOk {
                version: 1,
                max_frame: 1 << 20,
                server: "fanlog",
            },
            Frame::Publish {
                topic: "orders",
                messages: vec![msg, plain],
            },
            Frame::PublishAck {
                seqs: vec![1, 2, u64::MAX],
            },
            Frame::Subscribe {
                sub: 3,
                topic: "t",
                start: Start::Group("g"),
                credit: 65536,
            },
            Frame::Subscribe {
                sub: 4,
                topic: "t",
                start: Start::Seq(9),
                credit: 1,
            },
            Frame::Subscribe {
                sub: 5,
                topic: "t",
                start: Start::Earliest,
                credit: 1,
            },
            Frame::Subscribe {
                sub: 6,
                topic: "t",
                start: Start::Latest,
                credit: 1,
            },
            Frame::Subscribe {
                sub: 7,
                topic: "t",
                start: Start::Time(1_764_000_000_000_000),
                credit: 1,
            },
            Frame::Subscribed {
                sub: 3,
                start_seq: 42,
            },
            Frame::Credit { sub: 3, bytes: 100 },
            Frame::Unsubscribe { sub: 3 },
            Frame::Deliver {
                sub: 3,
                records: Records {
                    count: 3,
                    bytes: recs,
                },
            },
            Frame::Gap {
                sub: 3,
                from: 1,
                to: 10,
            },
            Frame::SubEnd {
                sub: 3,
                code: ErrorCode::TopicNotFound,
                message: "topic \"t\" was deleted",
            },
            Frame::Commit {
                topic: "t",
                group: "g",
                seq: 7,
            },
            Frame::Ok,
            Frame::Fetch {
                topic: "t",
                from: 0,
                max_count: 10,
                max_bytes: 1000,
            },
            Frame::Fetched {
                next: 8,
                gap: Some((0, 5)),
                records: Records {
                    count: 3,
                    bytes: recs,
                },
            },
            Frame::Fetched {
                next: 0,
                gap: None,
                records: Records {
                    count: 0,
                    bytes: &[],
                },
            },
            Frame::Topics,
            Frame::TopicList {
                topics: vec![TopicEntry {
                    name: "a",
                    first_seq: 1,
                    next_seq: 2,
                    bytes: 3,
                }],
            },
            Frame::Committed {
                topic: "t",
                group: "g",
            },
            Frame::CommittedOffset { seq: Some(4) },
            Frame::CommittedOffset { seq: None },
            Frame::Ping { nonce: 99 },
            Frame::Pong { nonce: 99 },
            Frame::Close {
                code: ErrorCode::ShuttingDown,
                reason: "bye",
            },
            Frame::Error {
                code: ErrorCode::InvalidName,
                message: "topic name \"../x\" ...",
            },
        ]
    }

    #[test]
    fn every_frame_roundtrips() {
        let recs = records();
        for (i, f) in samples(&recs).into_iter().enumerate() {
            let mut buf = vec![0xAB]; // encoding appends
            f.encode(i as u32, &mut buf).unwrap();
            let (id, back, used) = decode(&buf[1..], DEFAULT_MAX_FRAME).unwrap().unwrap();
            assert_eq!((id, &back, used), (i as u32, &f, buf.len() - 1));
        }
    }

    #[test]
    fn every_truncation_is_incomplete_not_an_error() {
        let recs = records();
        for f in samples(&recs) {
            let mut buf = Vec::new();
            f.encode(7, &mut buf).unwrap();
            for cut in 0..buf.len() {
                assert_eq!(
                    decode(&buf[..cut], DEFAULT_MAX_FRAME),
                    Ok(None),
                    "{f:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn exact_bytes_of_a_ping() {
        let mut buf = Vec::new();
        Frame::Ping { nonce: 0x0102 }
            .encode(0x0A0B0C0D, &mut buf)
            .unwrap();
        assert_eq!(
            buf,
            [
                13, 0, 0, 0, 0x0A, 0x0D, 0x0C, 0x0B, 0x0A, 0x02, 0x01, 0, 0, 0, 0, 0, 0
            ]
        );
    }

    #[test]
    fn exact_bytes_of_a_subscribe_from_a_time() {
        let mut buf = Vec::new();
        Frame::Subscribe {
            sub: 2,
            topic: "t",
            start: Start::Time(0x0102_0304_0506_0708),
            credit: 0x10,
        }
        .encode(1, &mut buf)
        .unwrap();
        let body = [
            2, 0, 0, 0, // sub
            1, b't', // topic
            4,    // start: time
            8, 7, 6, 5, 4, 3, 2, 1, // microseconds
            0, // no group
            0x10, 0, 0, 0, // credit
        ];
        assert_eq!(&buf[HEADER_LEN..], &body);
        // A time start with a group set is malformed.
        buf[HEADER_LEN + 4 + 2 + 1 + 8] = 1;
        buf.push(b'g');
        let len = (buf.len() - 4) as u32;
        buf[..4].copy_from_slice(&len.to_le_bytes());
        assert!(decode(&buf, DEFAULT_MAX_FRAME).is_err());
    }

    #[test]
    fn deliver_head_matches_the_full_encoding() {
        let recs = records();
        let mut full = Vec::new();
        Frame::Deliver {
            sub: 9,
            records: Records {
                count: 3,
                bytes: &recs,
            },
        }
        .encode(0, &mut full)
        .unwrap();
        let mut head = Vec::new();
        encode_deliver_head(&mut head, 9, 3, recs.len()).unwrap();
        head.extend_from_slice(&recs);
        assert_eq!(head, full);
        let Some((_, Frame::Deliver { records, .. }, _)) =
            decode(&full, DEFAULT_MAX_FRAME).unwrap()
        else {
            panic!()
        };
        let seqs: Vec<u64> = records.iter().map(|r| r.unwrap().0.seq()).collect();
        assert_eq!(seqs, [5, 6, 7]);
    }

    #[test]
    fn malformed_input_is_an_error() {
        // A frame claiming 4 GiB.
        assert!(matches!(
            decode(&[0xFF, 0xFF, 0xFF, 0xFF, 1], DEFAULT_MAX_FRAME),
            Err(FrameError::BadLength { .. })
        ));
        // Length below the minimum.
        assert!(matches!(
            decode(&[1, 0, 0, 0, 1], DEFAULT_MAX_FRAME),
            Err(FrameError::BadLength { .. })
        ));
        // Unknown kind.
        assert_eq!(
            decode(&[5, 0, 0, 0, 0x77, 0, 0, 0, 0], DEFAULT_MAX_FRAME),
            Err(FrameError::UnknownKind(0x77))
        );
        // Trailing bytes after a complete body.
        let mut buf = Vec::new();
        Frame::Ok.encode(1, &mut buf).unwrap();
        buf[0] += 1;
        buf.push(0);
        assert!(matches!(
            decode(&buf, DEFAULT_MAX_FRAME),
            Err(FrameError::Malformed { .. })
        ));
        // A count the body cannot hold.
        let mut buf = Vec::new();
        let s = begin(&mut buf, Kind::PublishAck, 1);
        buf.extend_from_slice(&u32::MAX.to_le_bytes());
        finish(&mut buf, s).unwrap();
        assert!(matches!(
            decode(&buf, DEFAULT_MAX_FRAME),
            Err(FrameError::Malformed { .. })
        ));
        // Bad magic.
        let mut buf = Vec::new();
        Frame::Hello {
            version: 1,
            token: "",
            client: "",
        }
        .encode(1, &mut buf)
        .unwrap();
        buf[9] = b'X';
        assert!(matches!(
            decode(&buf, DEFAULT_MAX_FRAME),
            Err(FrameError::Malformed {
                kind: Kind::Hello,
                ..
            })
        ));
        // Non-UTF-8 topic.
        let mut buf = Vec::new();
        Frame::Commit {
            topic: "ab",
            group: "g",
            seq: 1,
        }
        .encode(1, &mut buf)
        .unwrap();
        buf[10] = 0xFF;
        assert!(matches!(
            decode(&buf, DEFAULT_MAX_FRAME),
            Err(FrameError::Malformed { .. })
        ));
    }

    #[test]
    fn corrupted_records_in_a_delivery_are_detected() {
        let mut recs = records();
        recs[45] ^= 1;
        let r = Records {
            count: 3,
            bytes: &recs,
        };
        let out: Vec<_> = r.iter().collect();
        assert!(out[0].is_ok());
        assert!(out[1].is_err());
        assert_eq!(out.len(), 2);
    }

    /// Found by the frame_decode fuzz target: a Fetched frame with gap bounds
    /// but no gap flag decoded, so one frame had two encodings.
    #[test]
    fn fields_unused_by_a_flag_must_be_zero() {
        let mut buf = Vec::new();
        Frame::Fetched {
            next: 1,
            gap: None,
            records: Records {
                count: 0,
                bytes: &[],
            },
        }
        .encode(1, &mut buf)
        .unwrap();
        buf[HEADER_LEN + 9] = 1; // gap_from, flag still 0
        assert!(matches!(
            decode(&buf, DEFAULT_MAX_FRAME),
            Err(FrameError::Malformed {
                kind: Kind::Fetched,
                ..
            })
        ));
        let mut buf = Vec::new();
        Frame::CommittedOffset { seq: None }
            .encode(1, &mut buf)
            .unwrap();
        buf[HEADER_LEN + 1] = 1;
        assert!(decode(&buf, DEFAULT_MAX_FRAME).is_err());
        let mut buf = Vec::new();
        Frame::Subscribe {
            sub: 1,
            topic: "t",
            start: Start::Latest,
            credit: 1,
        }
        .encode(1, &mut buf)
        .unwrap();
        buf[HEADER_LEN + 4 + 2 + 1] = 9; // seq with mode Latest
        assert!(decode(&buf, DEFAULT_MAX_FRAME).is_err());
    }

    #[test]
    fn error_codes_roundtrip() {
        for c in 0..40u16 {
            assert_eq!(ErrorCode::from_u16(c).to_u16(), c);
        }
    }
}
