//! Decoding: a frame's length, kind and body, borrowed from the input.

use super::*;
use crate::record::Producer;

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
        Kind::Join => {
            let member = c.u32()?;
            let (topic, group, dead_letter) = (c.str8()?, c.str8()?, c.str8()?);
            let flags = c.u8()?;
            let o = WorkOptions {
                ack_wait_ms: c.u32()?,
                max_deliver: c.u32()?,
                max_inflight: c.u32()?,
                key_order: flags & 2 != 0,
            };
            let options = match flags {
                0 if o.ack_wait_ms == 0 && o.max_deliver == 0 && o.max_inflight == 0 => None,
                0 => return Err(c.bad("options set without the options flag")),
                1 | 3 => Some(o),
                _ => return Err(c.bad("unknown join flags")),
            };
            Frame::Join {
                member,
                topic,
                group,
                dead_letter,
                options,
            }
        }
        Kind::Joined => Frame::Joined {
            member: c.u32()?,
            floor: c.u64()?,
            options: WorkOptions {
                ack_wait_ms: c.u32()?,
                max_deliver: c.u32()?,
                max_inflight: c.u32()?,
                key_order: match c.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(c.bad("key_order is not 0 or 1")),
                },
            },
        },
        Kind::Jobs => {
            let member = c.u32()?;
            let n = c.count(4 + crate::record::HEADER_LEN)?;
            let mut deliveries = Vec::with_capacity(n);
            for _ in 0..n {
                deliveries.push(c.u32()?);
            }
            let bytes = c.take(c.b.len())?;
            Frame::Jobs {
                member,
                deliveries,
                records: Records {
                    count: n as u32,
                    bytes,
                },
            }
        }
        Kind::Ack => {
            let member = c.u32()?;
            let n = c.count(8)?;
            let mut seqs = Vec::with_capacity(n);
            for _ in 0..n {
                seqs.push(c.u64()?);
            }
            Frame::Ack { member, seqs }
        }
        Kind::Nack => Frame::Nack {
            member: c.u32()?,
            seq: c.u64()?,
            delay_ms: c.u32()?,
            error: c.str16()?,
        },
        Kind::Leave => Frame::Leave { member: c.u32()? },
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
