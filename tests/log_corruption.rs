//! Corruption tests: flipped bytes and truncation in the tail of the active
//! segment and in the indexes are detected at open; recovery truncates to the
//! last good record, keeps seqs dense, and keeps serving.

mod common;

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
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

fn flip(path: &Path, at: u64) {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    let mut b = [0u8];
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0x5A]).unwrap();
}

/// Byte position of the record with `seq` in the segment, from its index.
fn position(index: &Path, i: u64) -> u64 {
    let bytes = std::fs::read(index).unwrap();
    let at = (i * 4) as usize;
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as u64
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
    flip(seg, position(idx, 49) + 40);
    let b = common::open(dir.path(), &cfg);
    assert!(b.recovery_report(TOPIC).unwrap().truncated_tail);
    assert_prefix(&b, 49);
    assert_serves(&b, 49);
}

#[test]
fn flipped_byte_mid_segment_truncates_from_there() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = fill(dir.path(), 50, 1 << 20);
    let seg = &common::segment_files(dir.path(), TOPIC)[0];
    let idx = &common::index_files(dir.path(), TOPIC)[0];
    flip(seg, position(idx, 30) + 9); // inside the seq field of record 30
    let b = common::open(dir.path(), &cfg);
    assert_prefix(&b, 30);
    assert_serves(&b, 30);
    drop(b);
    // And a second reopen sees the same, with no resurrected old records.
    let b = common::open(dir.path(), &cfg);
    assert!(!b.recovery_report(TOPIC).unwrap().truncated_tail);
    assert_prefix(&b, 31);
}

#[test]
fn truncated_active_file_loses_only_the_cut_record() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = fill(dir.path(), 20, 1 << 20);
    let seg = &common::segment_files(dir.path(), TOPIC)[0];
    let idx = &common::index_files(dir.path(), TOPIC)[0];
    let cut = position(idx, 19) + 20; // mid-header of the last record
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
    flip(idx, 39 * 4);
    flip(idx, 10 * 4 + 1);
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
    flip(&idx[0], (n0 - 1) * 4);
    // Middle entry of the second sealed index: out of order.
    flip(&idx[1], 4 * 3 + 1);
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
    assert_eq!(report.dropped_segments, 0);
    assert_prefix(&b, 400);
    assert_serves(&b, 400);
}

#[test]
fn corrupt_sealed_segment_cuts_the_log_there_and_stays_dense() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = fill(dir.path(), 400, 4096);
    let segs = common::segment_files(dir.path(), TOPIC);
    let idx = common::index_files(dir.path(), TOPIC);
    let base1: u64 = segs[1]
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // Corrupt record 5 of the second segment and its index's last entry so
    // the index check fails and the scan finds the bad record.
    flip(&segs[1], position(&idx[1], 5) + 35);
    let n1 = std::fs::metadata(&idx[1]).unwrap().len() / 4;
    flip(&idx[1], (n1 - 1) * 4);
    let b = common::open(dir.path(), &cfg);
    let report = b.recovery_report(TOPIC).unwrap();
    assert!(report.dropped_segments > 0, "{report:?}");
    assert_prefix(&b, base1 + 5);
    assert_serves(&b, base1 + 5);
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
