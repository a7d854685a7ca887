//! Encoding: frames appended to a buffer.

use super::*;

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
    /// Appends the frame, with request id `id`, to `buf`.
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] when a field does not fit; `buf` is left as it was.
    pub fn encode(&self, id: u32, buf: &mut Vec<u8>) -> Result<(), FrameError> {
        // One allocation for a batch, rather than a doubling series of
        // reallocations (and page faults) as its messages are appended.
        if let Frame::Publish { topic, messages } = self {
            buf.reserve(
                HEADER_LEN + 5 + topic.len() + messages.iter().map(message_len).sum::<usize>(),
            );
        }
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
            Frame::Join {
                member,
                topic,
                group,
                dead_letter,
                options,
            } => {
                buf.extend_from_slice(&member.to_le_bytes());
                put_str8(buf, topic)?;
                put_str8(buf, group)?;
                put_str8(buf, dead_letter)?;
                let o = options.unwrap_or(WorkOptions {
                    ack_wait_ms: 0,
                    max_deliver: 0,
                    max_inflight: 0,
                    key_order: false,
                });
                buf.push(u8::from(options.is_some()) | (u8::from(o.key_order) << 1));
                buf.extend_from_slice(&o.ack_wait_ms.to_le_bytes());
                buf.extend_from_slice(&o.max_deliver.to_le_bytes());
                buf.extend_from_slice(&o.max_inflight.to_le_bytes());
            }
            Frame::Joined {
                member,
                floor,
                options,
            } => {
                buf.extend_from_slice(&member.to_le_bytes());
                buf.extend_from_slice(&floor.to_le_bytes());
                buf.extend_from_slice(&options.ack_wait_ms.to_le_bytes());
                buf.extend_from_slice(&options.max_deliver.to_le_bytes());
                buf.extend_from_slice(&options.max_inflight.to_le_bytes());
                buf.push(u8::from(options.key_order));
            }
            Frame::Jobs {
                member,
                deliveries,
                records,
            } => {
                if deliveries.len() != records.count as usize {
                    return Err(FrameError::TooLarge(
                        "jobs need one delivery count per record",
                    ));
                }
                buf.extend_from_slice(&member.to_le_bytes());
                buf.extend_from_slice(&records.count.to_le_bytes());
                for d in deliveries {
                    buf.extend_from_slice(&d.to_le_bytes());
                }
                buf.extend_from_slice(records.bytes);
            }
            Frame::Ack { member, seqs } => {
                buf.extend_from_slice(&member.to_le_bytes());
                buf.extend_from_slice(&u32_of(seqs.len(), "too many seqs")?.to_le_bytes());
                for s in seqs {
                    buf.extend_from_slice(&s.to_le_bytes());
                }
            }
            Frame::Nack {
                member,
                seq,
                delay_ms,
                error,
            } => {
                buf.extend_from_slice(&member.to_le_bytes());
                buf.extend_from_slice(&seq.to_le_bytes());
                buf.extend_from_slice(&delay_ms.to_le_bytes());
                put_str16(buf, error);
            }
            Frame::Leave { member } => buf.extend_from_slice(&member.to_le_bytes()),
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

/// The bytes [`encode_message`] appends for `m`.
fn message_len(m: &WireMessage<'_>) -> usize {
    let producer = if m.producer.is_some() { 17 } else { 1 };
    producer + 2 + m.key.len() + 4 + m.meta.len() + 4 + m.payload.len()
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
