//! Opening a topic directory after a clean stop or a crash.
//!
//! Segments other than the last are sealed: their index is checked (entries
//! start at 0, increase, are aligned, and the last one points at a record with
//! a valid checksum and the expected seq) and rebuilt by scanning when it is
//! not. The last segment is the active one: it is always scanned, every
//! record's checksum and seq verified and its index entry rewritten.
//!
//! A record that fails its checksum (or is not the seq expected there) is
//! either the torn tail of the active segment or corruption in the middle of
//! the log, and the two are told apart by what follows it: the scan looks for
//! the next record that verifies, carries a higher seq and is no older. If
//! there is one, the bad bytes are corruption: the seqs between are
//! *quarantined* (their index entries say so, the bytes stay on disk for
//! inspection, readers get a gap over them) and every later record keeps its
//! seq. Only when nothing valid follows, in the active segment, is the rest a
//! torn tail, which is cut and zeroed. A sealed segment is never cut and no
//! segment is ever removed: recovery deletes nothing that was valid.

use std::io;
use std::path::Path;
use std::sync::Arc;

use fanlog_protocol::record::RECORD_ALIGN;

use super::segment::{self, Found, QUARANTINED, Segment};
use crate::TopicConfig;

/// What recovery found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Bytes cut from the active segment's tail (a torn last write: bad
    /// records with nothing valid after them).
    pub truncated_tail: bool,
    /// Sealed segments whose index had to be rebuilt.
    pub rebuilt_indexes: usize,
    /// Records that failed their checksum in the middle of the log (or are
    /// missing from a sealed segment that ends short): their seqs are kept
    /// as a gap, every record after them is kept at its seq.
    pub quarantined_records: u64,
}

pub(crate) struct Recovered {
    pub(crate) segments: Vec<Arc<Segment>>,
    /// Write position, record count and newest timestamp of the active segment.
    pub(crate) active_pos: usize,
    pub(crate) active_count: u64,
    pub(crate) last_timestamp_us: u64,
    pub(crate) report: RecoveryReport,
}

/// What a scan of one segment found.
struct Scan {
    /// Index entries written (records plus quarantined seqs).
    count: u64,
    /// End of the last valid record.
    end: usize,
    /// Newest timestamp of a valid record.
    ts: u64,
    quarantined: u64,
}

/// The record at `pos` if it verifies (checksum, alignment) and has seq
/// `want`; returns its padded length and timestamp.
fn valid_at(seg: &mut Segment, pos: usize, want: u64) -> Option<(usize, u64)> {
    if !pos.is_multiple_of(RECORD_ALIGN) {
        return None;
    }
    match seg.verify_at(pos) {
        Ok(found) if found.seq == want => Some((found.used, found.timestamp_us)),
        _ => None,
    }
}

/// After a bad record at `from` where seq `want` was expected: the first
/// later position holding a record that verifies, with a seq in
/// `(want, seq_limit)` and a timestamp no older than `min_ts` (the writer
/// never lets time go back, so an older record is stale, not the log's
/// continuation). Returns (position, seq).
/// Nothing is looked for at or past `limit`, the end of the segment's
/// non-zero bytes.
fn resync(
    seg: &mut Segment,
    from: usize,
    limit: usize,
    want: u64,
    seq_limit: u64,
    min_ts: u64,
) -> Option<(usize, u64)> {
    let fits = |r: &Found| r.seq > want && r.seq < seq_limit && r.timestamp_us >= min_ts;
    let mut pos = from + RECORD_ALIGN;
    while pos < limit {
        // The cheap structural parse first; the checksum only for a
        // candidate whose seq and time fit.
        if let Ok(found) = seg.peek_at(pos, limit)
            && fits(&found)
            && let Ok(found) = seg.verify_at(pos)
            && fits(&found)
        {
            return Some((pos, found.seq));
        }
        pos += RECORD_ALIGN;
    }
    None
}

/// Bytes looked at past a zero header before it is taken for the end: a
/// lost page (a power cut writes pages out of order) is 4 KiB.
const LOOK_AHEAD: usize = 64 * 1024;

/// True when something follows a zero header at `pos` (entry `i`): non-zero
/// data within [`LOOK_AHEAD`], or a later index entry. Bounded, so that a
/// clean end costs a few pages, not a read of the whole preallocated file.
fn more_after(seg: &mut Segment, pos: usize, i: u64) -> bool {
    let data = !seg.is_zero(pos, LOOK_AHEAD);
    let capacity = seg.index_capacity();
    let index = (i + 1..i + 1 + (LOOK_AHEAD / segment::INDEX_ENTRY) as u64)
        .take_while(|&k| k < capacity)
        .any(|k| seg.stored_entry(k).is_some_and(|e| e != 0));
    data || index
}

/// Scans records from position 0, checking checksum and seq, rewriting index
/// entries, quarantining records that fail when a valid record follows them.
/// Stops at the end of the records (or after `max` entries).
fn scan(seg: &mut Segment, max: Option<u64>) -> io::Result<Scan> {
    let cap = max.map_or(seg.index_capacity(), |m| m.min(seg.index_capacity()));
    let seq_limit = seg.base() + cap;
    let mut found = Scan {
        count: 0,
        end: 0,
        ts: 0,
        quarantined: 0,
    };
    let mut pos = 0usize;
    let mut entries = Vec::new();
    // Found once, when a bad record first needs a resync: it reads the
    // whole mapping.
    let mut data_end = None;
    while found.count < cap {
        let want = seg.base() + found.count;
        if let Some((used, ts)) = valid_at(seg, pos, want) {
            entries.extend_from_slice(&(pos as u32).to_le_bytes());
            found.ts = ts;
            pos += used;
            found.end = pos;
            found.count += 1;
            continue;
        }
        if seg.is_zero(pos, fanlog_protocol::record::HEADER_LEN)
            && !more_after(seg, pos, found.count)
        {
            break; // the clean end
        }
        let limit = *data_end.get_or_insert_with(|| seg.nonzero_end());
        let Some((next, seq)) = resync(seg, pos, limit, want, seq_limit, found.ts) else {
            break; // nothing valid follows: a torn tail
        };
        let lost = seq - want;
        tracing::error!(
            segment = %seg.data_path().display(), position = pos, first_seq = want, records = lost,
            "records fail their checksum in the middle of the log: quarantined (their bytes stay on disk, readers get a gap), the records after them are kept"
        );
        for _ in 0..lost {
            entries.extend_from_slice(&QUARANTINED.to_le_bytes());
        }
        found.quarantined += lost;
        found.count += lost;
        pos = next;
    }
    seg.write_entries(0, &entries)?;
    Ok(found)
}

/// Checks a sealed segment's index without reading every record. Returns
/// (end position, newest timestamp) or why it is not trustworthy.
fn validate_sealed(seg: &mut Segment, expected: u64) -> Result<(usize, u64), String> {
    let index_len = seg.index_file_len().map_err(|e| e.to_string())?;
    if index_len < expected * segment::INDEX_ENTRY as u64 {
        return Err(format!(
            "index holds {} entries, expected {expected}",
            index_len / 4
        ));
    }
    let data_len = seg.data_file_len().map_err(|e| e.to_string())?;
    let mut prev: Option<usize> = None;
    let mut last = None;
    for i in 0..expected {
        let entry = seg
            .stored_entry(i)
            .ok_or_else(|| format!("index entry {i} unreadable"))?;
        if entry == QUARANTINED {
            continue;
        }
        let pos = entry as usize;
        let ok = match prev {
            None => pos == 0 || i > 0,
            Some(p) => pos > p,
        } && pos.is_multiple_of(RECORD_ALIGN);
        if !ok {
            return Err(format!("index entry {i} ({pos}) is out of order"));
        }
        prev = Some(pos);
        last = Some((i, pos));
    }
    let Some((i, last)) = last else {
        return Ok((0, 0));
    };
    let found = seg
        .verify_at(last)
        .map_err(|e| format!("last record: {e}"))?;
    if found.seq != seg.base() + i {
        return Err(format!(
            "last record has seq {}, expected {}",
            found.seq,
            seg.base() + i
        ));
    }
    let end = last + found.used;
    if end as u64 > data_len {
        return Err("last record runs past the end of the file".into());
    }
    Ok((end, found.timestamp_us))
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
    for k in 0..bases.len() - 1 {
        let (base, next) = (bases[k], bases[k + 1]);
        let expected = next - base;
        let mut seg = Segment::open(dir, base, 0, expected)?;
        let (end, ts) = match validate_sealed(&mut seg, expected) {
            Ok(found) => found,
            Err(why) => {
                tracing::warn!(segment = %seg.data_path().display(), %why, "rebuilding index");
                report.rebuilt_indexes += 1;
                let mut found = scan(&mut seg, Some(expected))?;
                if found.count < expected {
                    // The segment ends short (its end is lost): the seqs up
                    // to the next segment's base stay reserved, quarantined,
                    // so every later segment keeps its seqs.
                    let lost = expected - found.count;
                    tracing::error!(
                        segment = %seg.data_path().display(), first_seq = base + found.count, records = lost,
                        "sealed segment ends short: its missing records are quarantined, the segments after it are kept"
                    );
                    let marks = QUARANTINED.to_le_bytes().repeat(lost as usize);
                    seg.write_entries(found.count, &marks)?;
                    found.quarantined += lost;
                }
                report.quarantined_records += found.quarantined;
                (found.end, found.ts)
            }
        };
        seg.publish(expected, end as u64, ts);
        seg.seal()?;
        segments.push(Arc::new(seg));
    }

    let base = bases[bases.len() - 1];
    let mut seg = Segment::open(dir, base, config.segment_bytes, 0)?;
    let found = scan(&mut seg, None)?;
    report.quarantined_records += found.quarantined;
    let (count, end, ts) = (found.count, found.end, found.ts);
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
