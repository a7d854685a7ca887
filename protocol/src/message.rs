//! A message to publish.

use bytes::Bytes;

use crate::record::{Header, Producer, RecordMeta};

/// A message to publish: payload plus optional key, metadata and producer
/// identity.
///
/// ```
/// use fanlog_protocol::Message;
/// let m = Message::new("hello")
///     .with_content_type("text/plain")
///     .with_idempotency_key("order-17");
/// assert_eq!(m.payload.as_ref(), b"hello");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// The payload, opaque.
    pub payload: Bytes,
    /// A message key, opaque (empty = none).
    pub key: Bytes,
    /// Content type, headers and idempotency key.
    pub meta: RecordMeta,
    /// Producer id + sequence, for deduplicating retries.
    pub producer: Option<Producer>,
}

impl Message {
    /// A message with this payload and nothing else.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self {
            payload: payload.into(),
            ..Self::default()
        }
    }

    /// Sets the content type.
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.meta.content_type = Some(content_type.into());
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.meta.headers.push(Header {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = key.into();
        self
    }

    /// Makes retries idempotent: a second message with the same key within the
    /// topic's dedupe window is not appended; it gets the first one's seq.
    pub fn with_idempotency_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.meta.idempotency_key = Some(key.into());
        self
    }

    /// Makes retries idempotent by producer id and the producer's own
    /// sequence number.
    pub fn with_producer(mut self, id: u64, seq: u64) -> Self {
        self.producer = Some(Producer { id, seq });
        self
    }
}

macro_rules! message_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Message {
            /// A message with this payload and nothing else.
            fn from(payload: $t) -> Self {
                Message::new(payload)
            }
        }
    )*};
}

message_from!(&'static str, String, Vec<u8>, Bytes, &'static [u8]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_set_only_the_payload() {
        let m: Message = "hi".into();
        assert_eq!(m, Message::new(Bytes::from_static(b"hi")));
        let m: Message = String::from("x").into();
        assert_eq!(m.payload.as_ref(), b"x");
        assert!(m.meta.is_empty() && m.key.is_empty() && m.producer.is_none());
    }
}
