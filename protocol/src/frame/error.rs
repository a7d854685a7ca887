//! Error codes on the wire and why bytes are not a frame.

use super::Kind;

/// The one table of error codes, each with its number on the wire:
/// [`ErrorCode`], [`ErrorCode::to_u16`] and [`ErrorCode::from_u16`] are made
/// from it.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident = $code:literal,)*) => {
        /// Error codes carried by [`Frame::Error`](super::Frame::Error) and
        /// [`Frame::Close`](super::Frame::Close).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $name,)*
            /// A code this version does not know.
            Other(u16),
        }

        impl ErrorCode {
            /// The code on the wire.
            pub fn to_u16(self) -> u16 {
                match self {
                    $(ErrorCode::$name => $code,)*
                    ErrorCode::Other(c) => c,
                }
            }

            /// The code from the wire.
            pub fn from_u16(c: u16) -> Self {
                match c {
                    $($code => ErrorCode::$name,)*
                    c => ErrorCode::Other(c),
                }
            }
        }
    };
}

error_codes! {
    /// The frame could not be decoded; the connection is closed.
    BadFrame = 1,
    /// A frame's length is over the limit; the connection is closed.
    FrameTooLarge = 2,
    /// The Hello named a version this side does not speak.
    UnsupportedVersion = 3,
    /// A request came before the Hello.
    HandshakeRequired = 4,
    /// Missing or wrong token.
    Unauthorized = 5,
    /// The token does not allow this.
    Forbidden = 6,
    /// A topic or group name breaks the naming rules.
    InvalidName = 7,
    /// The topic does not exist.
    TopicNotFound = 8,
    /// A message is over the size limit; nothing of the batch was written.
    MessageTooLarge = 9,
    /// A commit past the end of the topic.
    OffsetOutOfRange = 10,
    /// The broker cannot take writes on this topic now (I/O error, failed sync).
    Unavailable = 11,
    /// The connection limit is reached.
    TooManyConnections = 12,
    /// A subscription id that is not open.
    UnknownSubscription = 13,
    /// A subscription id that is already open.
    DuplicateSubscription = 14,
    /// A publish with no messages.
    EmptyBatch = 15,
    /// A frame kind this side does not know or does not accept.
    UnknownFrame = 16,
    /// The broker is shutting down.
    ShuttingDown = 17,
    /// Anything else.
    Internal = 18,
    /// The token's publish rate is exceeded; the message says when to retry.
    RateLimited = 19,
    /// A configured limit (topics, connections per address, ...) is reached.
    LimitReached = 20,
    /// A producer sequence or idempotency key already used for a different
    /// message; nothing of the batch from that message on was written.
    IdempotencyConflict = 21,
    /// Creating a topic that exists already.
    TopicExists = 22,
    /// An ack or nack of a seq this worker does not hold (its ack wait ran
    /// out and it went to another worker, or it never had it).
    NotHeld = 23,
    /// Joining a work-sharing group with options other than the ones it
    /// runs with.
    GroupConflict = 24,
    /// A request this session's negotiated protocol version does not have.
    NeedsVersion = 25,
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
