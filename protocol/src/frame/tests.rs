//! The codec's tests: every frame round-trips, bad bytes are refused.

use super::*;
use crate::record::{Producer, RecordParts};

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
        Frame::Join {
            member: 1,
            topic: "t",
            group: "g",
            dead_letter: "",
            options: None,
        },
        Frame::Join {
            member: 2,
            topic: "t",
            group: "g",
            dead_letter: "t.dlq",
            options: Some(WorkOptions {
                ack_wait_ms: 30_000,
                max_deliver: 5,
                max_inflight: 100,
                key_order: true,
            }),
        },
        Frame::Joined {
            member: 2,
            floor: 12,
            options: WorkOptions {
                ack_wait_ms: 30_000,
                max_deliver: 5,
                max_inflight: 100,
                key_order: false,
            },
        },
        Frame::Jobs {
            member: 2,
            deliveries: vec![1, 2, 1],
            records: Records {
                count: 3,
                bytes: recs,
            },
        },
        Frame::Ack {
            member: 2,
            seqs: vec![4, 5, 9],
        },
        Frame::Nack {
            member: 2,
            seq: 7,
            delay_ms: 500,
            error: "cannot parse",
        },
        Frame::Leave { member: 2 },
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
fn exact_bytes_of_a_join_and_its_refusals() {
    let mut buf = Vec::new();
    Frame::Join {
        member: 3,
        topic: "t",
        group: "g",
        dead_letter: "",
        options: Some(WorkOptions {
            ack_wait_ms: 0x0102,
            max_deliver: 5,
            max_inflight: 7,
            key_order: true,
        }),
    }
    .encode(1, &mut buf)
    .unwrap();
    let body = [
        3, 0, 0, 0, // member
        1, b't', 1, b'g', 0, // topic, group, no dead-letter topic
        3, // options given, key order
        2, 1, 0, 0, // ack_wait_ms
        5, 0, 0, 0, // max_deliver
        7, 0, 0, 0, // max_inflight
    ];
    assert_eq!(&buf[HEADER_LEN..], &body);
    // Options without the flag, and unknown flags, are malformed.
    let flags = HEADER_LEN + 9;
    for bad in [0u8, 4] {
        buf[flags] = bad;
        assert!(decode(&buf, DEFAULT_MAX_FRAME).is_err(), "flags {bad}");
    }
}

#[test]
fn jobs_whose_counts_disagree_do_not_encode() {
    let recs = records();
    let f = Frame::Jobs {
        member: 1,
        deliveries: vec![1],
        records: Records {
            count: 3,
            bytes: &recs,
        },
    };
    assert!(f.encode(0, &mut Vec::new()).is_err());
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
    let Some((_, Frame::Deliver { records, .. }, _)) = decode(&full, DEFAULT_MAX_FRAME).unwrap()
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

#[test]
fn the_tables_round_trip_every_kind_and_code() {
    for k in Kind::ALL {
        assert_eq!(Kind::from_u8(*k as u8), Some(*k));
    }
    let unknown = (0..=255u8).filter(|b| Kind::from_u8(*b).is_none()).count();
    assert_eq!(unknown, 256 - Kind::ALL.len(), "each kind has its own byte");
    for c in 0..=64u16 {
        assert_eq!(ErrorCode::from_u16(c).to_u16(), c);
    }
    assert_eq!(ErrorCode::from_u16(22), ErrorCode::TopicExists);
    assert_eq!(ErrorCode::from_u16(25), ErrorCode::NeedsVersion);
    assert_eq!(ErrorCode::from_u16(26), ErrorCode::Other(26));
}
