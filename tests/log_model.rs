//! Property test: random publishes, batches, reopens, reads and subscriptions
//! against a model (a Vec of payloads). Every read returns exactly what was
//! published, with dense seqs, in order, across reopens and segment rolls.

mod common;

use fanlog::{Durability, Event, Message, StartFrom};
use futures_util::{FutureExt, StreamExt};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Publish(Vec<u8>),
    Batch(Vec<Vec<u8>>),
    Reopen,
    Read { from: u64, max: usize },
    Subscribe { from: u64 },
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => proptest::collection::vec(any::<u8>(), 500..1500),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => payload().prop_map(Op::Publish),
        3 => proptest::collection::vec(payload(), 1..40).prop_map(Op::Batch),
        1 => Just(Op::Reopen),
        2 => (0u64..300, 1usize..200).prop_map(|(from, max)| Op::Read { from, max }),
        2 => (0u64..300).prop_map(|from| Op::Subscribe { from }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        // 8 KiB segments: a few large payloads roll a segment.
        let cfg = common::config(Durability::Never, 8192);
        let rt = common::runtime();
        let mut broker = common::open(dir.path(), &cfg);
        let mut model: Vec<Vec<u8>> = Vec::new();
        let topic = "model";
        for op in ops {
            match op {
                Op::Publish(p) => {
                    let seq = rt.block_on(broker.publish(topic, Message::new(p.clone()))).unwrap();
                    prop_assert_eq!(seq, model.len() as u64);
                    model.push(p);
                }
                Op::Batch(ps) => {
                    let msgs: Vec<Message> = ps.iter().cloned().map(Message::new).collect();
                    let seqs = rt.block_on(broker.publish_batch(topic, &msgs)).unwrap();
                    let want: Vec<u64> = (model.len() as u64..).take(ps.len()).collect();
                    prop_assert_eq!(seqs, want);
                    model.extend(ps);
                }
                Op::Reopen => {
                    broker.close().unwrap();
                    drop(broker);
                    broker = common::open(dir.path(), &cfg);
                }
                Op::Read { from, max } => {
                    if model.is_empty() {
                        continue;
                    }
                    let batch = broker.read(topic, from, max).unwrap();
                    let end = (from as usize + max).min(model.len()).max(from as usize);
                    let want = model.get(from as usize..end).unwrap_or(&[]);
                    prop_assert_eq!(batch.records.len(), want.len());
                    for (i, (r, w)) in batch.records.iter().zip(want).enumerate() {
                        prop_assert_eq!(r.seq(), from + i as u64);
                        prop_assert_eq!(r.payload(), &w[..]);
                    }
                    prop_assert_eq!(batch.next, from.max(from + want.len() as u64));
                    prop_assert!(batch.gap.is_none());
                }
                Op::Subscribe { from } => {
                    let mut sub = broker.subscribe(topic, StartFrom::Seq(from)).unwrap();
                    for (i, w) in model.iter().enumerate().skip(from as usize) {
                        match sub.next().now_or_never() {
                            Some(Some(Ok(Event::Record(r)))) => {
                                prop_assert_eq!(r.seq(), i as u64);
                                prop_assert_eq!(r.payload(), &w[..]);
                            }
                            other => prop_assert!(false, "seq {}: {:?}", i, other),
                        }
                    }
                    // Caught up: the stream waits rather than inventing records.
                    prop_assert!(sub.next().now_or_never().is_none());
                }
            }
        }
        if model.is_empty() && broker.topic_info(topic).is_err() {
            return Ok(());
        }
        let all = common::read_all(&broker, topic);
        prop_assert_eq!(all.len(), model.len());
        for (i, ((seq, p), w)) in all.iter().zip(&model).enumerate() {
            prop_assert_eq!(*seq, i as u64);
            prop_assert_eq!(p, w);
        }
        let info = broker.topic_info(topic);
        if let Ok(info) = info {
            prop_assert_eq!(info.next_seq, model.len() as u64);
            prop_assert_eq!(info.first_seq, 0);
        }
    }
}
