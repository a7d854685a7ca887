//! A segment: one data file of records and one index file, both mapped.
//!
//! File names are the segment's base seq, zero-padded to 20 digits, so a
//! directory listing sorts in log order: `00000000000000001024.log` and
//! `00000000000000001024.idx`.
//!
//! Index wire format: entry `i` (bytes `[4i, 4i + 4)`, u32 little-endian) is
//! the byte position in the data file of the record with seq `base + i`.
//! Positions are multiples of 8, strictly increasing, the first is 0. Seqs are
//! dense, so finding a seq is one subtraction and one load: O(1). An entry of
//! `0xFFFF_FFFF` marks a seq whose record was quarantined by recovery (it
//! failed its checksum); such entries are skipped by the ordering rule.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use fanlog_protocol::record::{HEADER_LEN, RecordError, RecordView};

use super::mmap::MappedFile;

/// Bytes per index entry.
pub(crate) const INDEX_ENTRY: usize = 4;

/// The index entry of a seq whose record failed its checksum at recovery and
/// was quarantined: kept in place on disk, never served. Real positions are
/// multiples of 8, so this value cannot be one.
pub(crate) const QUARANTINED: u32 = u32::MAX;

/// Index capacity for a data file of `data_len` bytes: every record takes at
/// least a header, so this many entries always suffice.
pub(crate) fn index_len_for(data_len: u64) -> u64 {
    data_len / HEADER_LEN as u64 * INDEX_ENTRY as u64
}

pub(crate) fn data_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

pub(crate) fn index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.idx"))
}

/// Parses a segment file name back into its base seq.
pub(crate) fn parse_data_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

#[derive(Debug)]
pub(crate) struct Segment {
    base: u64,
    data_path: PathBuf,
    index_path: PathBuf,
    /// Records; its published mark is the bytes of complete records.
    data: MappedFile,
    /// Index entries; its published mark is the records' count times
    /// [`INDEX_ENTRY`], moved after the data's.
    index: MappedFile,
    /// Durable prefix of the data and index files; touched only under the
    /// topic's sync lock.
    synced_bytes: AtomicU64,
    synced_count: AtomicU64,
    /// Timestamp of the newest record, for age-based retention.
    last_timestamp_us: AtomicU64,
    /// Sealed: full, never written again; its files are closed once synced.
    sealed: AtomicBool,
}

impl Segment {
    /// Creates a new, empty segment able to hold `data_len` bytes.
    pub(crate) fn create(dir: &Path, base: u64, data_len: u64) -> io::Result<Self> {
        let data_path = data_path(dir, base);
        let index_path = index_path(dir, base);
        let data = MappedFile::create(&data_path, data_len)?;
        let index = MappedFile::create(&index_path, index_len_for(data_len))?;
        Ok(Self::new(base, data_path, index_path, data, index))
    }

    /// Opens an existing segment's files, mapping at least `min_data_len`
    /// bytes of data and room for `min_entries` index entries (the files
    /// grow when shorter). Counts start at zero: recovery sets them.
    pub(crate) fn open(
        dir: &Path,
        base: u64,
        min_data_len: u64,
        min_entries: u64,
    ) -> io::Result<Self> {
        let data_path = data_path(dir, base);
        let index_path = index_path(dir, base);
        let data = MappedFile::open(&data_path, min_data_len)?;
        // A crash between creating a segment's two files leaves no index;
        // recovery rebuilds it from the data.
        let index_len = index_len_for(data.len() as u64).max(min_entries * INDEX_ENTRY as u64);
        let index = MappedFile::open_or_create(&index_path, index_len)?;
        Ok(Self::new(base, data_path, index_path, data, index))
    }

    fn new(
        base: u64,
        data_path: PathBuf,
        index_path: PathBuf,
        data: MappedFile,
        index: MappedFile,
    ) -> Self {
        Self {
            base,
            data_path,
            index_path,
            data,
            index,
            synced_bytes: AtomicU64::new(0),
            synced_count: AtomicU64::new(0),
            last_timestamp_us: AtomicU64::new(0),
            sealed: AtomicBool::new(false),
        }
    }

    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    pub(crate) fn data_path(&self) -> &Path {
        &self.data_path
    }

    /// Records published in this segment.
    pub(crate) fn count(&self) -> u64 {
        (self.index.published() / INDEX_ENTRY) as u64
    }

    /// Bytes of published records.
    pub(crate) fn written(&self) -> u64 {
        self.data.published() as u64
    }

    pub(crate) fn capacity(&self) -> usize {
        self.data.len()
    }

    pub(crate) fn index_capacity(&self) -> u64 {
        (self.index.len() / INDEX_ENTRY) as u64
    }

    pub(crate) fn last_timestamp_us(&self) -> u64 {
        self.last_timestamp_us.load(Ordering::Relaxed)
    }

    /// Published index entry `i` (of a published record), else `None`.
    pub(crate) fn entry(&self, i: u64) -> Option<u32> {
        let at = usize::try_from(i).ok()?.checked_mul(INDEX_ENTRY)?;
        self.index.read(at, INDEX_ENTRY).map(le_u32)
    }

    /// The record with `seq`, which the caller knows to be published in this
    /// segment; returns its position and a view of it, or `None` when
    /// recovery quarantined it. A mismatch between index and record is
    /// corruption, reported, never a panic.
    pub(crate) fn record(
        &self,
        seq: u64,
        limit: u64,
    ) -> Result<Option<(usize, RecordView<'_>)>, String> {
        let i = seq
            .checked_sub(self.base)
            .ok_or_else(|| format!("seq {seq} is below segment base {}", self.base))?;
        let entry = self
            .entry(i)
            .ok_or_else(|| format!("index entry {i} is outside the index"))?;
        if entry == QUARANTINED {
            return Ok(None);
        }
        let pos = entry as usize;
        let view = self
            .view_at(pos, limit)
            .map_err(|e| format!("index entry {i} -> position {pos}: {e}"))?;
        if view.seq() != seq {
            return Err(format!("index entry {i} points at seq {}", view.seq()));
        }
        Ok(Some((pos, view)))
    }

    /// One past the last seq of the quarantined run that starts at `seq`
    /// (bounded by the published count).
    pub(crate) fn quarantined_until(&self, seq: u64) -> u64 {
        let end = self.base + self.count();
        let mut s = seq;
        while s < end && self.entry(s - self.base) == Some(QUARANTINED) {
            s += 1;
        }
        s
    }

    /// Published bytes `[pos, pos + len)`, else `None`.
    pub(crate) fn bytes(&self, pos: usize, len: usize) -> Option<&[u8]> {
        self.data.read(pos, len)
    }

    /// Parses the published record at `pos` without its checksum, reading
    /// no further than `limit` bytes into the segment.
    pub(crate) fn view_at(&self, pos: usize, limit: u64) -> Result<RecordView<'_>, RecordError> {
        let limit = (limit as usize).min(self.data.published());
        let bytes = self
            .data
            .read(pos, limit.saturating_sub(pos))
            .unwrap_or(&[]);
        RecordView::parse_trusted(bytes).map(|(v, _)| v)
    }

    /// Writes encoded records, the slices of `bufs` one after the other, at
    /// `pos`; not yet visible. Only the topic's
    /// writer calls this, at positions beyond `written`.
    pub(crate) fn write_records(
        &self,
        pos: usize,
        bufs: &mut [std::io::IoSlice<'_>],
    ) -> io::Result<()> {
        self.data.write_vectored_at(pos, bufs)
    }

    /// Writes index entries starting at entry `first` (little-endian u32
    /// positions, concatenated); the writer beyond `count`, or recovery.
    pub(crate) fn write_entries(&self, first: u64, entries: &[u8]) -> io::Result<()> {
        self.index.write_at(first as usize * INDEX_ENTRY, entries)
    }

    /// Makes `count` records / `written` bytes visible and immutable:
    /// the data first, then the index, so a reader that sees an entry
    /// sees its record.
    pub(crate) fn publish(&self, count: u64, written: u64, last_timestamp_us: u64) {
        self.last_timestamp_us
            .store(last_timestamp_us, Ordering::Relaxed);
        self.data.publish(written as usize);
        self.index.publish(count as usize * INDEX_ENTRY);
    }

    /// True when published bytes are not yet synced.
    pub(crate) fn dirty(&self) -> bool {
        self.synced_count.load(Ordering::Relaxed) < self.count()
    }

    /// Syncs what was published since the last sync. Callers hold the
    /// topic's sync lock.
    pub(crate) fn sync(&self) -> io::Result<()> {
        let count = self.count();
        let written = self.written();
        let from = self.synced_bytes.load(Ordering::Relaxed);
        let from_count = self.synced_count.load(Ordering::Relaxed);
        if from_count >= count {
            return Ok(());
        }
        if self.data.is_released() {
            // Released unsynced only under `never`: the OS writes it back.
            self.synced_bytes.store(written, Ordering::Relaxed);
            self.synced_count.store(count, Ordering::Relaxed);
            return Ok(());
        }
        // fdatasync covers exactly what was written since the last one: the
        // files are only ever appended to.
        if written > from {
            self.data.sync_data()?;
        }
        self.index.sync_data()?;
        self.synced_bytes.store(written, Ordering::Relaxed);
        self.synced_count.store(count, Ordering::Relaxed);
        self.release_if_done();
        Ok(())
    }

    /// Closes the files of a sealed segment whose bytes are all synced: it
    /// is read through its mappings alone, so a topic holds file
    /// descriptors for its active segment only.
    fn release_if_done(&self) {
        if self.sealed.load(Ordering::Acquire) && !self.dirty() {
            self.release_files();
        }
    }

    /// Closes the files of a sealed segment now, synced or not (under
    /// `never`, where the OS writes back what the page cache holds).
    pub(crate) fn release_files(&self) {
        self.data.release();
        self.index.release();
    }

    /// Shrinks both files to their published contents: the segment is full
    /// and will not be written again.
    pub(crate) fn seal(&self) -> io::Result<()> {
        self.data.truncate(self.written())?;
        self.index.truncate(self.count() * INDEX_ENTRY as u64)?;
        self.sealed.store(true, Ordering::Release);
        Ok(())
    }

    /// Zeroes the data file from `pos` and the index from entry `count`
    /// (recovery, after a torn tail).
    pub(crate) fn zero_tail(&mut self, pos: usize, count: u64) -> io::Result<()> {
        self.data.zero_tail(pos)?;
        self.index.zero_tail(count as usize * INDEX_ENTRY)
    }

    pub(crate) fn data_file_len(&self) -> io::Result<u64> {
        self.data.file_len()
    }

    pub(crate) fn index_file_len(&self) -> io::Result<u64> {
        self.index.file_len()
    }

    /// Deletes the segment's files. Readers that still hold the segment keep
    /// reading its mapping until they let go.
    pub(crate) fn remove_files(&self) -> io::Result<()> {
        std::fs::remove_file(&self.data_path)?;
        std::fs::remove_file(&self.index_path)
    }
}

/// A record that recovery found whole at a position.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found {
    pub(crate) seq: u64,
    pub(crate) timestamp_us: u64,
    /// Bytes it takes, padding included.
    pub(crate) used: usize,
}

impl Found {
    fn of(view: &RecordView<'_>, used: usize) -> Self {
        Self {
            seq: view.seq(),
            timestamp_us: view.timestamp_us(),
            used,
        }
    }
}

/// Recovery's access: bytes that were never published, read and rewritten
/// while recovery owns the segment alone (`&mut`, before it is shared).
/// Answers are owned, so no borrow outlives a call.
impl Segment {
    /// Index entry `i`, published or not, or `None` outside the index.
    pub(crate) fn stored_entry(&mut self, i: u64) -> Option<u32> {
        let at = usize::try_from(i).ok()?.checked_mul(INDEX_ENTRY)?;
        self.index.read_exclusive(at, INDEX_ENTRY).map(le_u32)
    }

    /// One past the last non-zero byte of the mapping, rounded up to the
    /// record alignment: nothing can be found beyond it.
    pub(crate) fn nonzero_end(&mut self) -> usize {
        let len = self.data.len();
        let all = self.data.read_exclusive(0, len).unwrap_or(&[]);
        // Whole pages first (the common tail is zero pages), then bytes.
        let mut end = all.len();
        while end >= 4096 && all[end - 4096..end].iter().all(|&b| b == 0) {
            end -= 4096;
        }
        let end = all[..end]
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |i| i + 1);
        fanlog_protocol::record::padded_len(end)
    }

    /// True when `len` bytes at `pos` are zero or lie past the mapping: a
    /// clean end of the log.
    pub(crate) fn is_zero(&mut self, pos: usize, len: usize) -> bool {
        let len = len.min(self.data.len().saturating_sub(pos));
        self.data
            .read_exclusive(pos, len)
            .is_none_or(|b| b.iter().all(|&x| x == 0))
    }

    /// The record at `pos`, structure only (no checksum), reading no
    /// further than `limit`.
    pub(crate) fn peek_at(&mut self, pos: usize, limit: usize) -> Result<Found, RecordError> {
        let limit = limit.min(self.data.len());
        let bytes = self
            .data
            .read_exclusive(pos, limit.saturating_sub(pos))
            .unwrap_or(&[]);
        RecordView::parse_trusted(bytes).map(|(v, used)| Found::of(&v, used))
    }

    /// The record at `pos`, structure and checksum.
    pub(crate) fn verify_at(&mut self, pos: usize) -> Result<Found, RecordError> {
        let avail = self.data.len().saturating_sub(pos);
        let bytes = self.data.read_exclusive(pos, avail).unwrap_or(&[]);
        RecordView::parse(bytes).map(|(v, used)| Found::of(&v, used))
    }
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

impl crate::RecordSource for Segment {
    fn bytes(&self, pos: usize, len: usize) -> Option<&[u8]> {
        Segment::bytes(self, pos, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_sort_and_parse() {
        let p = data_path(Path::new("/t"), 1024);
        assert_eq!(p.file_name().unwrap(), "00000000000000001024.log");
        assert_eq!(parse_data_name("00000000000000001024.log"), Some(1024));
        for bad in [
            "1024.log",
            "0000000000000000102x.log",
            "00000000000000001024.idx",
            "x",
        ] {
            assert_eq!(parse_data_name(bad), None, "{bad}");
        }
    }
}
