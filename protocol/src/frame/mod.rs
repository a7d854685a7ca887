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
//! | 0x0B | Join (v2) | member u32, topic str8, group str8, dead_letter str8 (empty: the default), flags u8 (bit 0: options given, bit 1: key order), ack_wait_ms u32, max_deliver u32, max_inflight u32 (zero when not given) |
//! | 0x8C | Joined (v2) | member u32, floor u64, ack_wait_ms u32, max_deliver u32, max_inflight u32, key_order u8 |
//! | 0x8D | Jobs (v2, s→c) | member u32, count u32, count × deliveries u32, count × record (padded) |
//! | 0x0C | Ack (v2) | member u32, count u32, count × seq u64 (answered by Ok once durable) |
//! | 0x0D | Nack (v2) | member u32, seq u64, delay_ms u32, error str16 (answered by Ok) |
//! | 0x0E | Leave (v2) | member u32 (answered by Ok) |
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

mod decode;
mod encode;
mod error;
#[cfg(test)]
mod tests;
mod types;

pub use decode::{decode, frame_size};
pub use encode::{begin, encode_deliver_head, encode_message, finish};
pub use error::{ErrorCode, FrameError};
pub use types::{RecordIter, Records, Start, TopicEntry, WireMessage, WorkOptions};

/// Protocol version spoken by this crate: 2 added work-sharing groups
/// (Join, Joined, Jobs, Ack, Nack, Leave).
pub const VERSION: u16 = 2;
/// The oldest version a broker of this crate still speaks: a Hello of
/// this version or any later one is answered with the lower of the
/// client's and [`VERSION`], and the session speaks that version.
pub const MIN_VERSION: u16 = 1;
/// First four body bytes of a Hello.
pub const MAGIC: [u8; 4] = *b"FNLG";
/// Bytes of the frame header.
pub const HEADER_LEN: usize = 9;
/// Default limit on a frame's `len` field.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// The one table of frame kinds, each with its byte: the [`Kind`] enum,
/// [`Kind::from_u8`] and [`Frame::kind`] are all made from it, so a kind is
/// written once.
macro_rules! frame_kinds {
    ($($name:ident = $byte:literal,)*) => {
        /// Frame kinds.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u8)]
        #[allow(missing_docs)]
        pub enum Kind {
            $($name = $byte,)*
        }

        impl Kind {
            /// Every kind, in table order.
            pub const ALL: &[Kind] = &[$(Kind::$name,)*];

            /// The kind of byte `b`, if it is one.
            #[must_use]
            pub fn from_u8(b: u8) -> Option<Self> {
                match b {
                    $($byte => Some(Kind::$name),)*
                    _ => None,
                }
            }
        }

        impl Frame<'_> {
            /// The frame's kind.
            pub fn kind(&self) -> Kind {
                match self {
                    $(Frame::$name { .. } => Kind::$name,)*
                }
            }
        }
    };
}

frame_kinds! {
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
    Join = 0x0B,
    Joined = 0x8C,
    Jobs = 0x8D,
    Ack = 0x0C,
    Nack = 0x0D,
    Leave = 0x0E,
    Close = 0x0F,
    Error = 0xEE,
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
    /// Joins a work-sharing group as `member` (a number the client picks,
    /// unique in its session); `options` must match a running group's.
    Join {
        member: u32,
        topic: &'a str,
        group: &'a str,
        dead_letter: &'a str,
        options: Option<WorkOptions>,
    },
    /// The group joined: its floor and the options it runs with. Jobs
    /// follow, up to `max_inflight` held at once.
    Joined {
        member: u32,
        floor: u64,
        options: WorkOptions,
    },
    /// Records handed to `member`, each with its delivery count.
    Jobs {
        member: u32,
        deliveries: Vec<u32>,
        records: Records<'a>,
    },
    Ack {
        member: u32,
        seqs: Vec<u64>,
    },
    Nack {
        member: u32,
        seq: u64,
        delay_ms: u32,
        error: &'a str,
    },
    Leave {
        member: u32,
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
