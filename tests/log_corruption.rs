//! Corruption tests: flipped bytes and truncation in the tail of the active
//! segment and in the indexes are detected at open; recovery truncates only a
//! torn tail of the active segment, quarantines a bad record in the middle of
//! the log (its seq becomes a gap, every later record keeps its seq), never
//! deletes a segment, and keeps serving.

mod common;

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use fanlog::{Durability, Message};

const TOPIC: &str = "t";

fn payload(i: u64) -> Vec<u8> {
    format!("message-{i}-{}", "y".repeat((i % 50) as usize)).into_bytes()
}

/// Publishes `n` messages and closes; returns the config used.
fn fill(dir: &Path, n: u64, segment_bytes: u64) -> fanlog::BrokerConfig {
    let cfg = common::config(Durability::Never, segment_bytes);
    let rt = common::runtime();
    let b = common::open(dir, &cfg);
    for i in 0..n {
        rt.block_on(b.publish(TOPIC, Message::new(payload(i))))
            .unwrap();
    }
    b.close().unwrap();
    cfg
}

fn assert_prefix(b: &fanlog::Broker, n: u64) {
    let all = common::read_all(b, TOPIC);
    assert_eq!(all.len() as u64, n, "records kept");
    for (i, (seq, p)) in all.iter().enumerate() {
        assert_eq!(*seq, i as u64);
        assert_eq!(p, &payload(i as u64));
    }
}

/// After recovery the log keeps serving: the next publish gets the next seq.
fn assert_serves(b: &fanlog::Broker, next: u64) {
    let rt = common::runtime();
    assert_eq!(
        rt.block_on(b.publish(TOPIC, Message::new(payload(next))))
            .unwrap(),
        next
    );
    assert_prefix(b, next + 1);
}

#[test]
fn flipped_byte_in_the_last_record_truncates_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = fill(dir.path(), 50, 1 << 20);
    let seg = &common::segment_files(dir.path(), TOPIC)[0];
    let idx = &common::index_files(dir.path(), TOPIC)[0];
    common::flip(seg, common::index_entry(idx, 49) + 40);
    let b = common::open(dir.path(), &cfg);
    assert!(b.recovery_report(TOPIC).unwrap().truncated_tail);
    assert_prefix(&b, 49);
    assert_serves(&b, 49);
}

/// Every record below `n` except those in `lost`, at its own seq.
fn assert_all_but(b: &fanlog::Broker, n: u64, lost: &[u64]) {
    let all = common::read_all(b, TOPIC);
    let want: Vec<u64> = (0..n).filter(|s| !lost.contains(s)).collect();
    let seqs: Vec<u64> = all.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, want, "records kept");
    for (seq, p) in &all {
        assert_eq!(p, &payload(*seq), "payload of {seq}");
    }
}

#[test]
fn flipped_byte_mid_segment_quarantines_only_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = fill(dir.path(), 50, 1 << 20);
    let seg = &common::segment_files(dir.path(), TOPIC)[0];
    let idx = &common::index_files(dir.path(), TOPIC)[0];
    common::flip(seg, common::index_entry(idx, 30) + 9); // inside the seq field of record 30
    let b = common::open(dir.path(), &cfg);
    let report = b.recovery_report(TOPIC).unwrap();
    assert!(!report.truncated_tail, "{report:?}");
    assert_eq!(report.quarantined_records, 1, "{report:?}");
    assert_all_but(&b, 50, &[30]);
    // A subscriber is told: a gap over the lost seq, then the rest.
    let rt = common::runtime();
    let events = rt.block_on(async {
        use futures_util::StreamExt;
        let mut sub = b.subscribe(TOPIC, fanlog::StartFrom::Seq(29)).unwrap();
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(match sub.next().await.unwrap().unwrap() {
                fanlog::Event::Record(r) => format!("record {}", r.seq()),
                fanlog::Event::Gap { from, to } => format!("gap {from}..{to}"),
            });
        }
        v
    });
    assert_eq!(events, ["record 29", "gap 30..31", "record 31"]);
    // The next publish continues after the last record, not at the bad one.
    assert_eq!(
        rt.block_on(b.publish(TOPIC, Message::new(payload(50))))
            .unwrap(),
        50
    );
    drop(b);
    // A second reopen sees the same: nothing resurrected, nothing lost.
    let b = common::open(dir.path(), &cfg);
    let report = b.recovery_report(TOPIC).unwrap();
    assert!(!report.truncated_tail, "{report:?}");
    assert_eq!(report.quarantined_records, 1);
    assert_all_but(&b, 51, &[30]);
}

#[test]
fn a_zeroed_page_mid_segment_is_quarantined_not_taken_for_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = fill(dir.path(), 200, 1 << 20);
    let seg = &common::segment_files(dir.path(), TOPIC)[0];
    let idx = &common::index_files(dir.path(), TOPIC)[0];
    // A power cut can lose a page in the middle while later pages reached
    // the disk: zero the records 40..=45 whole.
    let (from, to) = (common::index_entry(idx, 40), common::index_entry(idx, 46));
    let mut f = OpenOptions::new().write(true).open(seg).unwrap();
    f.seek(SeekFrom::Start(from)).unwrap();
    f.write_all(&vec![0u8; (to - from) as usize]).unwrap();
    drop(f);
    let b = common::open(dir.path(), &cfg);
    let report = b.recovery_report(TOPIC).unwrap();
    assert_eq!(report.quarantined_records, 6, "{report:?}");
    assert_all_but(&b, 200, &[40, 41, 42, 43, 44, 45]);
    assert_eq!(b.topic_info(TOPIC).unwrap().next_seq, 200);
}

#[test]
fn truncated_active_file_loses_only_the_cut_record() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = fill(dir.path(), 20, 1 << 20);
    let seg = &common::segment_files(dir.path(), TOPIC)[0];
    let idx = &common::index_files(dir.path(), TOPIC)[0];
    let cut = common::index_entry(idx, 19) + 20; // mid-header of the last record
    OpenOptions::new()
        .write(true)
        .open(seg)
        .unwrap()
        .set_len(cut)
        .unwrap();
    let b = common::open(dir.path(), &cfg);
    assert!(b.recovery_report(TOPIC).unwrap().truncated_tail);
    assert_prefix(&b, 19);
    assert_serves(&b, 19);
}

#[test]
fn corrupt_or_truncated_active_index_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = fill(dir.path(), 40, 1 << 20);
    let idx = &common::index_files(dir.path(), TOPIC)[0];
    common::flip(idx, 39 * 4);
    common::flip(idx, 10 * 4 + 1);
    let b = common::open(dir.path(), &cfg);
    assert_prefix(&b, 40);
    drop(b);
    OpenOptions::new()
        .write(true)
        .open(idx)
        .unwrap()
        .set_len(7 * 4 + 2)
        .unwrap();
    let b = common::open(dir.path(), &cfg);
    assert_prefix(&b, 40);
    assert_serves(&b, 40);
}

#[test]
fn corrupt_sealed_index_is_detected_and_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    // 4 KiB segments: ~60-byte records, many segments.
    let cfg = fill(dir.path(), 400, 4096);
    let idx = common::index_files(dir.path(), TOPIC);
    assert!(idx.len() > 3, "segments rolled: {}", idx.len());
    // Last entry of the first sealed index: pointing elsewhere.
    let n0 = std::fs::metadata(&idx[0]).unwrap().len() / 4;
    common::flip(&idx[0], (n0 - 1) * 4);
    // Middle entry of the second sealed index: out of order.
    common::flip(&idx[1], 4 * 3 + 1);
    // Third sealed index cut short.
    let n2 = std::fs::metadata(&idx[2]).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&idx[2])
        .unwrap()
        .set_len(n2 - 6)
        .unwrap();
    let b = common::open(dir.path(), &cfg);
    let report = b.recovery_report(TOPIC).unwrap();
    assert_eq!(report.rebuilt_indexes, 3, "{report:?}");
    assert_eq!(report.quarantined_records, 0);
    assert_prefix(&b, 400);
    assert_serves(&b, 400);
}

#[test]
fn corrupt_sealed_segment_keeps_every_valid_record_and_segment() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = fill(dir.path(), 400, 4096);
    let segs = common::segment_files(dir.path(), TOPIC);
    let idx = common::index_files(dir.path(), TOPIC);
    let base1 = common::segment_base(&segs[1]);
    // Corrupt record 5 of the second segment and its index's last entry so
    // the index check fails and the scan finds the bad record.
    common::flip(&segs[1], common::index_entry(&idx[1], 5) + 35);
    let n1 = std::fs::metadata(&idx[1]).unwrap().len() / 4;
    common::flip(&idx[1], (n1 - 1) * 4);
    let b = common::open(dir.path(), &cfg);
    let report = b.recovery_report(TOPIC).unwrap();
    assert_eq!(report.quarantined_records, 1, "{report:?}");
    assert!(!report.truncated_tail, "{report:?}");
    assert_eq!(
        common::segment_files(dir.path(), TOPIC),
        segs,
        "no segment removed"
    );
    assert_all_but(&b, 400, &[base1 + 5]);
    let rt = common::runtime();
    assert_eq!(
        rt.block_on(b.publish(TOPIC, Message::new(payload(400))))
            .unwrap(),
        400
    );
    drop(b);
    let b = common::open(dir.path(), &cfg);
    assert_all_but(&b, 401, &[base1 + 5]);
}

#[test]
fn sealed_segment_cut_short_keeps_the_segments_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = fill(dir.path(), 400, 4096);
    let segs = common::segment_files(dir.path(), TOPIC);
    let idx = common::index_files(dir.path(), TOPIC);
    let (base1, base2) = (
        common::segment_base(&segs[1]),
        common::segment_base(&segs[2]),
    );
    // The second segment loses its last records and its index.
    let cut = common::index_entry(&idx[1], 7) + 3;
    OpenOptions::new()
        .write(true)
        .open(&segs[1])
        .unwrap()
        .set_len(cut)
        .unwrap();
    std::fs::remove_file(&idx[1]).unwrap();
    let b = common::open(dir.path(), &cfg);
    let report = b.recovery_report(TOPIC).unwrap();
    let lost: Vec<u64> = (base1 + 7..base2).collect();
    assert_eq!(report.quarantined_records, lost.len() as u64, "{report:?}");
    assert_eq!(
        common::segment_files(dir.path(), TOPIC),
        segs,
        "no segment removed"
    );
    assert_all_but(&b, 400, &lost);
    assert_serves_after(&b, 400, &lost);
}

/// The next publish gets `next`, and everything else is still there.
fn assert_serves_after(b: &fanlog::Broker, next: u64, lost: &[u64]) {
    let rt = common::runtime();
    assert_eq!(
        rt.block_on(b.publish(TOPIC, Message::new(payload(next))))
            .unwrap(),
        next
    );
    assert_all_but(b, next + 1, lost);
}

#[test]
fn crash_mid_roll_without_the_new_index_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = fill(dir.path(), 200, 4096);
    let idx = common::index_files(dir.path(), TOPIC);
    let segs = common::segment_files(dir.path(), TOPIC);
    // The last segment's index was never created, and its data file was
    // created but not yet sized.
    std::fs::remove_file(idx.last().unwrap()).unwrap();
    let b = common::open(dir.path(), &cfg);
    assert_prefix(&b, 200);
    drop(b);
    let last = segs.last().unwrap();
    let base: u64 = last.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(0)
        .unwrap();
    std::fs::remove_file(common::index_files(dir.path(), TOPIC).last().unwrap()).unwrap();
    let b = common::open(dir.path(), &cfg);
    assert_prefix(&b, base);
    assert_serves(&b, base);
}
