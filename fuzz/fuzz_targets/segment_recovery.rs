//! Recovery on arbitrary bytes as a topic's first segment and its index:
//! opening never panics, every record read back is whole (or a gap over
//! quarantined seqs), and the topic
//! takes a new append at the seq after what survived.
#![no_main]

use fanlog_broker::{Broker, BrokerConfig, Message, StartFrom};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let idx_len = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    let (idx, log) = data[2..].split_at(idx_len);
    let dir = tempfile::tempdir().unwrap();
    let topic = dir.path().join("topics").join("t");
    std::fs::create_dir_all(&topic).unwrap();
    std::fs::write(topic.join("00000000000000000000.log"), log).unwrap();
    std::fs::write(topic.join("00000000000000000000.idx"), idx).unwrap();
    let Ok(broker) = Broker::open(dir.path(), BrokerConfig::default()) else {
        return;
    };
    let Ok(info) = broker.topic_info("t") else {
        return;
    };
    let mut sub = broker.subscribe("t", StartFrom::Earliest).unwrap();
    let mut expect = info.first_seq;
    while let Ok(Some(ev)) = sub.try_next() {
        match ev {
            fanlog_broker::Event::Record(r) => {
                assert_eq!(r.seq(), expect);
                let _ = (r.payload(), r.key(), r.content_type());
                expect += 1;
            }
            // Quarantined records: a gap from exactly where the reader was.
            fanlog_broker::Event::Gap { from, to } => {
                assert_eq!(from, expect);
                assert!(to > from);
                expect = to;
            }
        }
    }
    assert_eq!(expect, info.next_seq, "every surviving record is readable");
    if let Ok(appended) = broker.append("t", &[Message::new("after recovery")]) {
        assert_eq!(appended.seqs(), Some(&[info.next_seq][..]));
    }
    let _ = broker.close();
});
