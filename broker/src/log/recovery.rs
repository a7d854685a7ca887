//! Opening a topic directory after a clean stop or a crash.
//!
//! Segments other than the last are sealed: their index is checked (entries
//! start at 0, increase, are aligned, and the last one points at a record with
//! a valid checksum and the expected seq) and rebuilt by scanning when it is
//! not. The last segment is the active one: it is always scanned, every
//! record's checksum and seq verified and its index entry rewritten; the scan
//! stops at the first record that is torn, corrupt or out of sequence, and
//! everything from there on is zeroed. Nothing that survived is renumbered.

use std::io;
use std::path::Path;
use std::sync::Arc;

use fanlog_protocol::record::RECORD_ALIGN;

use super::segment::{self, Segment};
use crate::config::TopicConfig;

/// What recovery found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Bytes cut from the active segment's tail (torn or corrupt records,
    /// and anything after them).
    pub truncated_tail: bool,
    /// Sealed segments whose index had to be rebuilt.
    pub rebuilt_indexes: usize,
    /// Segments removed because an earlier one ended short (a hole in the seqs).
    pub dropped_segments: usize,
}

pub(crate) struct Recovered {
    pub(crate) segments: Vec<Arc<Segment>>,
    /// Write position, record count and newest timestamp of the active segment.
    pub(crate) active_pos: usize,
    pub(crate) active_count: u64,
    pub(crate) last_timestamp_us: u64,
    pub(crate) report: RecoveryReport,
}

/// Scans records from position 0, checking checksum and seq, rewriting index
/// entries; stops at the first bad record or after `max` records.
/// Returns (records, end position, newest timestamp).
fn scan(seg: &Segment, max: Option<u64>) -> io::Result<(u64, usize, u64)> {
    let (mut pos, mut count, mut ts) = (0usize, 0u64, 0u64);
    let mut entries = Vec::new();
    while max.is_none_or(|m| count < m) && count < seg.index_capacity() {
        match seg.verify_at(pos) {
            Ok((view, used))
                if view.seq() == seg.base() + count && pos.is_multiple_of(RECORD_ALIGN) =>
            {
                entries.extend_from_slice(&(pos as u32).to_le_bytes());
                ts = view.timestamp_us();
                pos += used;
                count += 1;
            }
            _ => break,
        }
    }
    seg.write_entries(0, &entries)?;
    Ok((count, pos, ts))
}

/// Checks a sealed segment's index without reading every record. Returns
/// (end position, newest timestamp) or why it is not trustworthy.
fn validate_sealed(seg: &Segment, expected: u64) -> Result<(usize, u64), String> {
    let index_len = seg.index_file_len().map_err(|e| e.to_string())?;
    if index_len < expected * segment::INDEX_ENTRY as u64 {
        return Err(format!(
            "index holds {} entries, expected {expected}",
            index_len / 4
        ));
    }
    let data_len = seg.data_file_len().map_err(|e| e.to_string())?;
    let mut prev: Option<usize> = None;
    let mut last = 0usize;
    for i in 0..expected {
        let pos = seg
            .entry(i)
            .ok_or_else(|| format!("index entry {i} unreadable"))? as usize;
        let ok = match prev {
            None => pos == 0,
            Some(p) => pos > p && pos.is_multiple_of(RECORD_ALIGN),
        };
        if !ok {
            return Err(format!("index entry {i} ({pos}) is out of order"));
        }
        prev = Some(pos);
        last = pos;
    }
    let (view, used) = seg
        .verify_at(last)
        .map_err(|e| format!("last record: {e}"))?;
    if view.seq() != seg.base() + expected - 1 {
        return Err(format!(
            "last record has seq {}, expected {}",
            view.seq(),
            seg.base() + expected - 1
        ));
    }
    let end = last + used;
    if end as u64 > data_len {
        return Err("last record runs past the end of the file".into());
    }
    Ok((end, view.timestamp_us()))
}

/// Opens (or creates) the segments of the topic in `dir`.
pub(crate) fn recover(dir: &Path, config: &TopicConfig) -> io::Result<Recovered> {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| segment::parse_data_name(e.file_name().to_str()?))
        .collect();
    bases.sort_unstable();
    let mut report = RecoveryReport::default();
    if bases.is_empty() {
        let seg = Segment::create(dir, 0, config.segment_bytes)?;
        return Ok(Recovered {
            segments: vec![Arc::new(seg)],
            active_pos: 0,
            active_count: 0,
            last_timestamp_us: 0,
            report,
        });
    }

    let mut segments = Vec::with_capacity(bases.len());
    let mut k = 0;
    while k + 1 < bases.len() {
        let (base, next) = (bases[k], bases[k + 1]);
        let expected = next - base;
        let seg = Segment::open(dir, base, 0)?;
        let (end, ts) = match validate_sealed(&seg, expected) {
            Ok(found) => found,
            Err(why) => {
                tracing::warn!(segment = %seg.data_path().display(), %why, "rebuilding index");
                report.rebuilt_indexes += 1;
                let (count, end, ts) = scan(&seg, Some(expected))?;
                if count < expected {
                    // A hole: the seqs after this point cannot be trusted to be
                    // dense. Keep what is verified; this segment becomes active.
                    tracing::warn!(
                        segment = %seg.data_path().display(), count, expected,
                        "segment ends short; dropping the segments after it"
                    );
                    for &later in &bases[k + 1..] {
                        std::fs::remove_file(segment::data_path(dir, later))?;
                        let _ = std::fs::remove_file(segment::index_path(dir, later));
                        report.dropped_segments += 1;
                    }
                    bases.truncate(k + 1);
                    break;
                }
                (end, ts)
            }
        };
        seg.publish(expected, end as u64, ts);
        seg.seal()?;
        segments.push(Arc::new(seg));
        k += 1;
    }

    let base = bases[k];
    let seg = Segment::open(dir, base, config.segment_bytes)?;
    let (count, end, ts) = scan(&seg, None)?;
    if !seg.is_zero(end, fanlog_protocol::record::HEADER_LEN) {
        report.truncated_tail = true;
        tracing::warn!(segment = %seg.data_path().display(), records = count, at = end, "truncating torn tail");
    }
    // Always zero past the end: a crash may have left partial bytes of a
    // record beyond a zero header, which a later, shorter record must not
    // make look valid again.
    seg.zero_tail(end, count)?;
    seg.publish(count, end as u64, ts);
    segments.push(Arc::new(seg));
    Ok(Recovered {
        segments,
        active_pos: end,
        active_count: count,
        last_timestamp_us: ts,
        report,
    })
}
