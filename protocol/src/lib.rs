//! fanlog's sans-IO codec: validated names and the record format shared by the
//! log on disk and the binary protocol.
//!
//! This crate does no I/O and has no async runtime: it turns values into bytes
//! in a caller-owned buffer and bytes back into values, telling "need more
//! bytes" apart from "these bytes are wrong". The broker and the client both
//! depend on it, so there is exactly one implementation of each format.
//!
//! ```
//! use fanlog_protocol::record::{RecordParts, RecordView};
//! let mut buf = Vec::new();
//! let parts = RecordParts { seq: 0, timestamp_us: 1, producer: None, meta: &[], key: b"", payload: b"hello" };
//! parts.encode(&mut buf)?;
//! let (view, used) = RecordView::parse(&buf)?;
//! assert_eq!((view.seq(), view.payload(), used), (0, &b"hello"[..], buf.len()));
//! # Ok::<_, fanlog_protocol::record::RecordError>(())
//! ```

#![warn(missing_docs)]

pub mod frame;
pub mod message;
pub mod name;
pub mod record;
pub mod stream;

pub use message::Message;
pub use name::{GroupName, NameError, TopicName};
pub use record::{Header, Producer, RecordMeta};
pub use stream::{Event, StartFrom, TopicInfo};
