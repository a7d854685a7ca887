//! A topic's log: segments of records in memory-mapped files, with one writer
//! and any number of readers.
//!
//! The log knows nothing of sockets or tasks: it appends, reads, syncs and
//! enforces retention, and signals appends through a `watch` channel.
//!
//! # Invariants
//! 1. Seqs are dense: the record at index entry `i` of the segment with base
//!    `b` has seq `b + i`, and each segment's base is the previous segment's
//!    base plus its record count. Checked on every read and at recovery.
//! 2. Single writer: only the holder of the writer lock writes record bytes,
//!    index entries, or the segment list; it writes only past the published
//!    head, with positional writes, while readers read a read-only mapping of
//!    the same page cache.
//! 3. Publication: a record becomes visible when `readable_head` passes its
//!    seq (release store after its bytes and index entry are written; under
//!    [`Durability::Always`] only after they are also synced). Readers load it
//!    with acquire and read nothing at or beyond it, so they never see a
//!    partial record and never take the writer lock.
//! 4. Bytes below the head are never rewritten while the log is open; sealed
//!    segments are only ever removed whole, from the front, by retention,
//!    which moves `first_seq` up.
//! 5. A failed sync poisons the log: no further append is accepted, because
//!    what is acknowledged next could not be promised durable.

use std::io::IoSlice;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use fanlog_protocol::TopicName;
use fanlog_protocol::record::{RECORD_ALIGN, RecordError, RecordParts};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use super::dedupe::Dedupe;
use super::recovery::{self, RecoveryReport};
use super::segment::{self, Segment};
use crate::{Appending, Durable, Entry, ReadAt, ReadCursor, Record, TopicLog};
use crate::{Durability, TopicConfig};
use crate::{Result, StorageError};

#[derive(Debug)]
struct Writer {
    active: Arc<Segment>,
    pos: usize,
    count: u64,
    next_seq: u64,
    last_timestamp_us: u64,
    dedupe: Dedupe,
    /// The records of the next write: their prefixes and padding
    /// (`stage`), what each is made of (`pieces`: staged bytes and the
    /// callers' parts, written side by side, never copied here), their
    /// bytes in all, and their index entries.
    stage: Vec<u8>,
    pieces: Vec<Piece>,
    staged: usize,
    stage_index: Vec<u8>,
    /// The flusher was asked to roll the active segment ahead.
    roll_asked: bool,
}

/// One slice of a staged write.
#[derive(Debug, Clone, Copy)]
enum Piece {
    /// `stage[from..to]`.
    Stage { from: usize, to: usize },
    /// Part `part` (see [`RecordParts::parts`]) of entry `entry` of the
    /// append under way.
    Part { entry: usize, part: usize },
}

impl Writer {
    /// Bytes staged so far.
    fn staged_len(&self) -> usize {
        self.staged
    }

    /// Stages `parts`, entry `entry` of the append under way: its prefix
    /// and padding are copied, its parts only named.
    fn stage_record(
        &mut self,
        entry: usize,
        parts: &RecordParts<'_>,
    ) -> std::result::Result<(), RecordError> {
        let head = parts.head()?;
        self.stage_bytes(head.prefix());
        for (i, part) in parts.parts().iter().enumerate() {
            if !part.is_empty() {
                self.pieces.push(Piece::Part { entry, part: i });
            }
        }
        self.stage_bytes(&[0; RECORD_ALIGN][..head.padding]);
        self.staged += parts.padded_len();
        Ok(())
    }

    fn stage_bytes(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let from = self.stage.len();
        self.stage.extend_from_slice(bytes);
        let to = self.stage.len();
        match self.pieces.last_mut() {
            Some(Piece::Stage { to: end, .. }) if *end == from => *end = to,
            _ => self.pieces.push(Piece::Stage { from, to }),
        }
    }

    fn clear_stage(&mut self) {
        self.stage.clear();
        self.pieces.clear();
        self.staged = 0;
        self.stage_index.clear();
    }
}

/// A topic's log in a directory of memory-mapped segments (see the
/// module's invariants); the local [`crate::TopicLog`].
#[derive(Debug)]
pub struct LocalLog {
    name: TopicName,
    dir: PathBuf,
    config: TopicConfig,
    writer: Mutex<Writer>,
    segments: RwLock<Arc<[Arc<Segment>]>>,
    first_seq: AtomicU64,
    append_head: AtomicU64,
    readable_head: AtomicU64,
    readable_tx: watch::Sender<u64>,
    durable_tx: watch::Sender<Durable>,
    sync_lock: Mutex<()>,
    poison: OnceLock<String>,
    report: RecoveryReport,
    /// Syncs that wrote something; with the appended count this shows how
    /// many publishes each sync served (group commit).
    syncs: AtomicU64,
    closed: std::sync::atomic::AtomicBool,
    /// Set when an append filled the active segment past
    /// [`ROLL_AHEAD_AT`]: the flusher should roll it (see `maintain`).
    roll_wanted: std::sync::atomic::AtomicBool,
    /// Rolls made by an append itself: the segment filled before the
    /// flusher rolled it ahead (a burst of more than a quarter segment).
    inline_rolls: AtomicU64,
    /// Makes the next syncs fail, to test poisoning.
    #[cfg(test)]
    fail_syncs: std::sync::atomic::AtomicBool,
}

/// True when `dir` holds a segment data file (a topic that has had records).
pub(crate) fn has_segments(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(|e| e.ok()).any(|e| {
            e.file_name()
                .to_str()
                .and_then(segment::parse_data_name)
                .is_some()
        })
    })
}

impl LocalLog {
    /// Opens the log in `dir` (created when missing), recovering it.
    pub(crate) fn open(
        name: TopicName,
        dir: &Path,
        config: TopicConfig,
        now_us: u64,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(StorageError::io(dir))?;
        let rec = recovery::recover(dir, &config).map_err(StorageError::io(dir))?;
        let active = rec
            .segments
            .last()
            .cloned()
            .ok_or_else(|| StorageError::Corrupt {
                topic: name.to_string(),
                seq: 0,
                reason: "recovery produced no segment".into(),
            })?;
        let first = rec.segments[0].base();
        let next_seq = active.base() + rec.active_count;
        let window_us = u64::try_from(config.dedupe_window.as_micros()).unwrap_or(u64::MAX);
        let writer = Writer {
            active: active.clone(),
            pos: rec.active_pos,
            count: rec.active_count,
            next_seq,
            last_timestamp_us: rec.last_timestamp_us,
            stage: Vec::new(),
            pieces: Vec::new(),
            staged: 0,
            stage_index: Vec::new(),
            roll_asked: false,
            dedupe: Dedupe::new(window_us, config.dedupe_max_entries),
        };
        let log = Self {
            name,
            dir: dir.to_owned(),
            writer: Mutex::new(writer),
            segments: RwLock::new(rec.segments.into()),
            first_seq: AtomicU64::new(first),
            append_head: AtomicU64::new(next_seq),
            readable_head: AtomicU64::new(next_seq),
            readable_tx: watch::Sender::new(next_seq),
            durable_tx: watch::Sender::new(Durable {
                upto: 0,
                failed: false,
            }),
            sync_lock: Mutex::new(()),
            poison: OnceLock::new(),
            report: rec.report,
            syncs: AtomicU64::new(0),
            closed: std::sync::atomic::AtomicBool::new(false),
            roll_wanted: std::sync::atomic::AtomicBool::new(false),
            inline_rolls: AtomicU64::new(0),
            #[cfg(test)]
            fail_syncs: std::sync::atomic::AtomicBool::new(false),
            config,
        };
        // What recovery kept may sit only in the page cache (a process crash
        // before a sync); make it durable before anyone reads it.
        log.sync()?;
        log.rebuild_dedupe(now_us)?;
        Ok(log)
    }

    /// True when the record stored as `seq` has another key or payload than
    /// `e`. A record not readable yet (staged in this very batch) counts as
    /// the same: a batch that repeats an identity is the producer's own.
    fn stored_differs(&self, w: &Writer, seq: u64, e: &Entry<'_>) -> bool {
        let Ok(seg) = self.segment_holding(seq) else {
            return false;
        };
        let limit = if Arc::ptr_eq(&seg, &w.active) {
            if seq >= seg.base() + w.count {
                return false;
            }
            w.pos as u64
        } else {
            seg.written()
        };
        match seg.record(seq, limit) {
            Ok(Some((_, v))) => v.payload() != e.payload || v.key() != e.key,
            _ => false,
        }
    }

    /// The segment whose seqs start at or below `seq` (the last such), or
    /// the first seq still stored when `seq` lies below every segment.
    fn segment_holding(&self, seq: u64) -> std::result::Result<Arc<Segment>, u64> {
        let list = self.segments.read().clone();
        let i = list.partition_point(|s| s.base() <= seq);
        i.checked_sub(1)
            .map(|i| list[i].clone())
            .ok_or_else(|| list[0].base())
    }

    /// Writes the staged records and index entries of the active segment,
    /// whose parts are those of `entries`: one positional vectored write
    /// from the callers' buffers. On failure the staged records are
    /// dropped and their seqs reused.
    fn flush_stage(&self, w: &mut Writer, entries: &[Entry<'_>]) -> Result<()> {
        if w.staged_len() == 0 {
            return Ok(());
        }
        let staged = (w.stage_index.len() / segment::INDEX_ENTRY) as u64;
        let mut bufs: Vec<IoSlice<'_>> = w
            .pieces
            .iter()
            .map(|p| {
                IoSlice::new(match *p {
                    Piece::Stage { from, to } => &w.stage[from..to],
                    Piece::Part { entry, part } => {
                        let e = &entries[entry];
                        [e.meta, e.key, e.payload][part]
                    }
                })
            })
            .collect();
        let written = w
            .active
            .write_records(w.pos, &mut bufs)
            .and_then(|()| w.active.write_entries(w.count, &w.stage_index));
        drop(bufs);
        let result = match written {
            Ok(()) => {
                w.pos += w.staged;
                w.count += staged;
                Ok(())
            }
            Err(e) => {
                w.next_seq -= staged;
                w.dedupe.forget_from(w.next_seq);
                Err(StorageError::Io {
                    path: w.active.data_path().to_owned(),
                    source: e,
                })
            }
        };
        w.clear_stage();
        result
    }

    /// Rolls the active segment once it is past [`ROLL_AHEAD_AT`], off the
    /// writers' threads (the broker's flusher calls this when asked).
    fn roll_ahead(&self, now_us: u64) {
        let mut guard = self.writer.lock();
        let w = &mut *guard;
        if self.is_closed() || self.poison.get().is_some() || !roll_due(w) {
            return;
        }
        let ts = now_us.max(w.last_timestamp_us);
        if let Err(e) = self.roll(w, ts) {
            // The next append that does not fit rolls, and reports it.
            tracing::warn!(topic = %self.name, error = %e, "rolling a segment ahead failed");
        }
    }

    /// Rolls made by appends themselves since open (see `inline_rolls`).
    pub fn inline_rolls(&self) -> u64 {
        self.inline_rolls.load(Ordering::Relaxed)
    }

    /// Seals the active segment and starts a new one at the writer's next seq.
    fn roll(&self, w: &mut Writer, now_us: u64) -> Result<()> {
        w.active.publish(w.count, w.pos as u64, w.last_timestamp_us);
        w.active
            .seal()
            .map_err(StorageError::io(w.active.data_path()))?;
        if self.config.durability == Durability::Never {
            w.active.release_files();
        }
        let seg = Segment::create(&self.dir, w.next_seq, self.config.segment_bytes)
            .map_err(StorageError::io(&self.dir))?;
        if self.config.durability != Durability::Never {
            super::mmap::sync_dir(&self.dir).map_err(StorageError::io(&self.dir))?;
        }
        let seg = Arc::new(seg);
        {
            let mut list = self.segments.write();
            let mut v: Vec<Arc<Segment>> = list.iter().cloned().collect();
            v.push(seg.clone());
            *list = v.into();
        }
        w.active = seg;
        w.pos = 0;
        w.count = 0;
        w.roll_asked = false;
        self.retain(now_us);
        Ok(())
    }

    /// Removes the oldest sealed segments beyond the size or age limit.
    /// Called with the writer lock held (the writer owns the segment list).
    fn retain(&self, now_us: u64) {
        let (max_bytes, max_age) = (self.config.retention_bytes, self.config.retention_age);
        if max_bytes.is_none() && max_age.is_none() {
            return;
        }
        let list = self.segments.read().clone();
        let mut total: u64 = list.iter().map(|s| s.written()).sum();
        let horizon = max_age
            .map(|a| now_us.saturating_sub(u64::try_from(a.as_micros()).unwrap_or(u64::MAX)));
        // Never the active segment, nor the one holding the newest record
        // (the sealed one before an active segment rolled ahead and still
        // empty): retention leaves the newest records readable.
        let newest = list.len()
            - if list.len() >= 2 && list[list.len() - 1].count() == 0 {
                2
            } else {
                1
            };
        let mut drop_n = 0;
        for seg in &list[..newest] {
            let too_big = max_bytes.is_some_and(|m| total > m);
            let too_old = horizon.is_some_and(|h| seg.last_timestamp_us() < h);
            if !(too_big || too_old) {
                break;
            }
            total -= seg.written();
            drop_n += 1;
        }
        self.drop_front(&list, drop_n);
    }

    /// Removes the first `drop_n` segments of `list` (the current list,
    /// sealed ones only), moving `first_seq` up. Writer lock held.
    fn drop_front(&self, list: &[Arc<Segment>], drop_n: usize) {
        if drop_n == 0 {
            return;
        }
        let kept: Arc<[Arc<Segment>]> = list[drop_n..].iter().cloned().collect();
        let first = kept[0].base();
        *self.segments.write() = kept;
        self.first_seq.store(first, Ordering::Release);
        for seg in &list[..drop_n] {
            if let Err(e) = seg.remove_files() {
                tracing::warn!(topic = %self.name, segment = %seg.data_path().display(), error = %e, "cannot remove segment");
            }
        }
        tracing::debug!(topic = %self.name, removed = drop_n, first_seq = first, "retention");
    }

    fn advance_readable(&self, head: u64) {
        self.readable_head.fetch_max(head, Ordering::Release);
        self.readable_tx.send_if_modified(|h| {
            let moved = *h < head;
            *h = (*h).max(head);
            moved
        });
    }

    /// Looks up `seq`, reusing `hint` (the segment of the previous read).
    fn read_hinted(&self, seq: u64, hint: &mut Option<Arc<Segment>>) -> Result<ReadAt> {
        if seq >= self.readable_head.load(Ordering::Acquire) {
            return Ok(ReadAt::End);
        }
        let first = self.first_seq();
        if seq < first {
            return Ok(ReadAt::Gap { to: first });
        }
        let seg = match hint {
            Some(s) if s.base() <= seq && seq < s.base() + s.count() => s.clone(),
            _ => match self.segment_holding(seq) {
                Ok(s) => s,
                Err(first) => return Ok(ReadAt::Gap { to: first }),
            },
        };
        let limit = seg.written();
        let (pos, len) = match seg.record(seq, limit) {
            Ok(Some((pos, view))) => (pos, view.as_bytes().len()),
            Ok(None) => {
                *hint = Some(seg.clone());
                return Ok(ReadAt::Lost {
                    to: seg.quarantined_until(seq),
                });
            }
            Err(reason) => {
                return Err(StorageError::Corrupt {
                    topic: self.name.to_string(),
                    seq,
                    reason,
                });
            }
        };
        *hint = Some(seg.clone());
        Ok(ReadAt::Record(Record::new(seg, pos, len)))
    }

    /// Rebuilds the dedupe table from the records of the last window.
    fn rebuild_dedupe(&self, now_us: u64) -> Result<()> {
        let mut w = self.writer.lock();
        let horizon = now_us.saturating_sub(w.dedupe.window_us());
        let head = self.next_seq();
        let mut hint = None;
        let lo = self.seek_time(horizon)?;
        let start = lo.max(head.saturating_sub(w.dedupe.max_entries() as u64));
        for seq in start..head {
            if let ReadAt::Record(r) = self.read_hinted(seq, &mut hint)? {
                let view = r.view();
                let key = match view.meta() {
                    Ok(Some(m)) => m.idempotency_key.as_ref().map(|k| k.as_slice().to_vec()),
                    _ => None,
                };
                if view.producer().is_some() || key.is_some() {
                    w.dedupe
                        .insert(view.producer(), key.as_deref(), seq, view.timestamp_us());
                }
            }
        }
        w.dedupe.forget(now_us);
        Ok(())
    }
}

/// The share of a segment past which the flusher rolls it ahead: an
/// append then finds room without creating files itself, unless a burst
/// writes the last quarter before the flusher wakes.
const ROLL_AHEAD_AT: (usize, usize) = (3, 4);

fn roll_due(w: &Writer) -> bool {
    w.count > 0 && w.pos >= w.active.capacity() / ROLL_AHEAD_AT.1 * ROLL_AHEAD_AT.0
}

impl TopicLog for LocalLog {
    fn take_maintenance(&self) -> bool {
        self.roll_wanted.swap(false, Ordering::AcqRel)
    }
    fn maintain(&self, now_us: u64) {
        self.roll_ahead(now_us);
    }
    fn name(&self) -> &TopicName {
        &self.name
    }
    fn config(&self) -> &TopicConfig {
        &self.config
    }
    fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }
    /// The first seq still in the log.
    fn first_seq(&self) -> u64 {
        self.first_seq.load(Ordering::Acquire)
    }
    /// One past the last seq a reader may read.
    fn next_seq(&self) -> u64 {
        self.readable_head.load(Ordering::Acquire)
    }
    /// Bytes of records on disk.
    fn bytes(&self) -> u64 {
        self.segments.read().iter().map(|s| s.written()).sum()
    }
    /// Changes of the readable head, for subscribers to wait on.
    fn watch_readable(&self) -> watch::Receiver<u64> {
        self.readable_tx.subscribe()
    }
    fn watch_durable(&self) -> watch::Receiver<Durable> {
        self.durable_tx.subscribe()
    }
    /// Why the log refuses writes, once a sync failed.
    fn poisoned(&self) -> Option<StorageError> {
        self.poison.get().map(|reason| StorageError::Poisoned {
            topic: self.name.to_string(),
            reason: reason.clone(),
        })
    }
    /// Appends entries in order, pushing each one's seq to `seqs` (the earlier
    /// seq for a remembered duplicate). Returns one past the highest seq
    /// appended or referred to, which is what a caller waits to be durable.
    ///
    /// Records are written with one positional vectored write per batch
    /// (and per segment roll): their headers and padding from the stage,
    /// their metadata, key and payload straight from `entries`. Entries must already
    /// be validated against the size limits. On an I/O error, records written
    /// before it stay in the log (published); the rest are rolled back (seqs
    /// and remembered identities), and the error is returned: the caller was
    /// not acknowledged, so a retry with the same producer id or idempotency
    /// key appends nothing twice.
    fn append(&self, entries: &[Entry<'_>], now_us: u64, seqs: &mut Vec<u64>) -> Result<Appending> {
        let mut guard = self.writer.lock();
        let w = &mut *guard;
        if let Some(e) = self.poisoned() {
            return Err(e);
        }
        // Closed (the broker closing, or the topic deleted): nothing more
        // is written into its files.
        if self.is_closed() {
            return Err(StorageError::Closed);
        }
        let ts = now_us.max(w.last_timestamp_us);
        // Expired identities must not match: a retry after the window is new.
        w.dedupe.forget(ts);
        let mut upto = 0;
        let mut result = Ok(());
        for (i, e) in entries.iter().enumerate() {
            if let Some(seq) = w.dedupe.lookup(e.producer, e.idempotency_key) {
                // A retry carries the same message; anything else reusing
                // its identity is refused, never answered as stored.
                if self.stored_differs(w, seq, e) {
                    result = Err(StorageError::IdempotencyConflict {
                        topic: self.name.to_string(),
                        seq,
                    });
                    break;
                }
                seqs.push(seq);
                upto = upto.max(seq + 1);
                continue;
            }
            let parts = RecordParts {
                seq: w.next_seq,
                timestamp_us: ts,
                producer: e.producer,
                meta: e.meta,
                key: e.key,
                payload: e.payload,
            };
            if w.pos + w.staged_len() + parts.padded_len() > w.active.capacity() {
                // Full before the flusher rolled it ahead: roll here.
                self.inline_rolls.fetch_add(1, Ordering::Relaxed);
                if let Err(err) = self.flush_stage(w, entries).and_then(|()| self.roll(w, ts)) {
                    result = Err(err);
                    break;
                }
            }
            let at = w.pos + w.staged_len();
            if let Err(err) = w.stage_record(i, &parts) {
                result = Err(StorageError::Corrupt {
                    topic: self.name.to_string(),
                    seq: parts.seq,
                    reason: format!("cannot encode record: {err}"),
                });
                break;
            }
            w.stage_index.extend_from_slice(&(at as u32).to_le_bytes());
            let seq = w.next_seq;
            w.next_seq += 1;
            w.dedupe.insert(e.producer, e.idempotency_key, seq, ts);
            seqs.push(seq);
            upto = seq + 1;
        }
        let flushed = self.flush_stage(w, entries);
        if result.is_ok() {
            result = flushed;
        }
        w.last_timestamp_us = ts;
        w.active.publish(w.count, w.pos as u64, ts);
        if !w.roll_asked && roll_due(w) {
            w.roll_asked = true;
            self.roll_wanted.store(true, Ordering::Release);
        }
        let head = w.next_seq;
        self.append_head.store(head, Ordering::Release);
        drop(guard);
        if self.config.durability != Durability::Always {
            self.advance_readable(head);
        }
        result.map(|()| Appending::Stored { upto })
    }
    fn read_at(&self, seq: u64, cursor: &mut ReadCursor) -> Result<ReadAt> {
        // The cursor holds the segment of the previous read.
        let mut hint = cursor.0.take().and_then(|s| s.downcast::<Segment>().ok());
        let found = self.read_hinted(seq, &mut hint);
        cursor.0 = hint.map(|s| s as Arc<dyn std::any::Any + Send + Sync>);
        found
    }
    /// The first readable seq whose timestamp is at or after `ts_us`
    /// (microseconds since the Unix epoch), or the head when there is none.
    ///
    /// The seq index is the time index: the writer never lets a timestamp
    /// go below the one before it (its clock is clamped), so timestamps are
    /// sorted along the log and a binary search over seqs reads O(log n)
    /// record headers from the mapping.
    fn seek_time(&self, ts_us: u64) -> Result<u64> {
        let mut hint = None;
        let (mut lo, mut hi) = (self.first_seq(), self.next_seq());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.read_hinted(mid, &mut hint)? {
                ReadAt::Record(r) if r.timestamp_us() < ts_us => lo = mid + 1,
                // Removed by retention meanwhile: what is left starts later.
                ReadAt::Gap { to } if to > mid => lo = to.min(hi),
                // Quarantined: its time is unknown, so it stands for the
                // first readable record after it; none of the run is ever
                // an answer.
                ReadAt::Lost { to } => match self.read_hinted(to, &mut hint)? {
                    ReadAt::Record(r) if r.timestamp_us() < ts_us => lo = (to + 1).min(hi),
                    _ => hi = mid,
                },
                _ => hi = mid,
            }
        }
        Ok(lo)
    }
    /// Retention now: removes every segment whose records all lie below
    /// `before`; returns the new first seq. Only whole segments go (seqs
    /// stay dense, readers below get a gap); when `before` reaches the
    /// head, the active segment is sealed first so that it can go too.
    fn truncate(&self, before: u64, now_us: u64) -> Result<u64> {
        let mut guard = self.writer.lock();
        let w = &mut *guard;
        if let Some(e) = self.poisoned() {
            return Err(e);
        }
        if w.count > 0 && before >= w.next_seq {
            self.roll(w, now_us)?;
        }
        let list = self.segments.read().clone();
        let drop_n = list[..list.len() - 1]
            .iter()
            .take_while(|s| s.base() + s.count() <= before)
            .count();
        self.drop_front(&list, drop_n);
        Ok(self.first_seq())
    }
    /// Applies retention by age (called periodically).
    fn enforce_retention(&self, now_us: u64) {
        let _w = self.writer.lock();
        self.retain(now_us);
    }
    /// True when appended records are not yet synced.
    fn dirty(&self) -> bool {
        self.durable_tx.borrow().upto < self.append_head.load(Ordering::Acquire)
    }
    /// Syncs everything appended so far (group commit: one sync covers every
    /// append made before it started). A failure poisons the log.
    fn sync(&self) -> Result<()> {
        let _g = self.sync_lock.lock();
        if let Some(e) = self.poisoned() {
            return Err(e);
        }
        // The head is loaded before the segments' counts: each segment
        // published its count before the head moved past it.
        let head = self.append_head.load(Ordering::Acquire);
        let list = self.segments.read().clone();
        let mut synced = false;
        for seg in list.iter().filter(|s| s.dirty()) {
            synced = true;
            #[cfg(test)]
            let injected = self
                .fail_syncs
                .load(Ordering::Relaxed)
                .then(|| std::io::Error::other("injected sync failure"));
            #[cfg(not(test))]
            let injected: Option<std::io::Error> = None;
            if let Err(e) = injected.map_or_else(|| seg.sync(), Err) {
                let reason = format!("sync of {} failed: {e}", seg.data_path().display());
                tracing::error!(topic = %self.name, %reason, "poisoning topic");
                let _ = self.poison.set(reason);
                self.durable_tx.send_modify(|d| d.failed = true);
                return Err(self.poisoned().unwrap_or(StorageError::Io {
                    path: seg.data_path().to_owned(),
                    source: e,
                }));
            }
        }
        if synced {
            self.syncs.fetch_add(1, Ordering::Relaxed);
        }
        // Readable first: the durable signal acknowledges publishers, and a
        // publisher that reads right after its ack must find its records.
        if self.config.durability == Durability::Always {
            self.advance_readable(head);
        }
        self.durable_tx.send_if_modified(|d| {
            let moved = d.upto < head;
            d.upto = d.upto.max(head);
            moved
        });
        Ok(())
    }
    /// Syncs performed that wrote something.
    fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
    /// Records below this seq are durable.
    fn durable_seq(&self) -> u64 {
        self.durable_tx.borrow().upto
    }
    /// Marks the log closed and wakes every subscriber, so that subscribers
    /// end once they have read everything.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.readable_tx.send_modify(|_| {});
    }
    /// Closes the log and waits for an append in progress to finish, so
    /// that nothing writes into its files afterwards.
    fn close_and_wait(&self) {
        self.close();
        drop(self.writer.lock());
    }
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(payload: &[u8]) -> Entry<'_> {
        Entry {
            producer: None,
            idempotency_key: None,
            meta: &[],
            key: &[],
            payload,
        }
    }

    #[test]
    fn a_batch_of_more_slices_than_one_vectored_write_takes_is_stored_whole() {
        use crate::TopicLog as _;
        let dir = tempfile::tempdir().unwrap();
        let config = TopicConfig {
            durability: Durability::Never,
            ..TopicConfig::default()
        };
        let log = LocalLog::open(TopicName::new("v").unwrap(), dir.path(), config, 1).unwrap();
        // Odd sizes (padding after each), keys and metadata: four or five
        // slices a record, so 1,500 records take several writes.
        let payloads: Vec<Vec<u8>> = (0..1500u32)
            .map(|i| vec![(i % 251) as u8; 1 + (i as usize * 7) % 300])
            .collect();
        let keys: Vec<Vec<u8>> = (0..1500u32).map(|i| format!("k{i}").into_bytes()).collect();
        let entries: Vec<Entry<'_>> = payloads
            .iter()
            .zip(&keys)
            .map(|(p, k)| Entry {
                key: k,
                meta: if p.len() % 2 == 0 { b"m" } else { &[] },
                ..entry(p)
            })
            .collect();
        let mut seqs = Vec::new();
        let _ = log.append(&entries, 10, &mut seqs).unwrap();
        assert_eq!(seqs, (0..1500).collect::<Vec<u64>>());
        let mut cursor = ReadCursor::default();
        for (seq, (p, k)) in payloads.iter().zip(&keys).enumerate() {
            match log.read_at(seq as u64, &mut cursor).unwrap() {
                ReadAt::Record(r) => {
                    r.verify().unwrap();
                    assert_eq!((r.payload(), r.key()), (&p[..], &k[..]), "seq {seq}");
                }
                _ => panic!("seq {seq} missing"),
            }
        }
    }

    #[test]
    fn a_segment_rolls_ahead_once_and_retention_keeps_the_newest_records() {
        use crate::TopicLog as _;
        let dir = tempfile::tempdir().unwrap();
        let config = TopicConfig {
            segment_bytes: 4096,
            max_message_bytes: 512,
            retention_age: Some(std::time::Duration::from_micros(1)),
            durability: Durability::Never,
            ..TopicConfig::default()
        };
        let log = LocalLog::open(TopicName::new("p").unwrap(), dir.path(), config, 1).unwrap();
        let mut seqs = Vec::new();
        let mut asked = 0;
        while log.segments.read().len() == 1 {
            let _ = log.append(&[entry(&[7; 200])], 10, &mut seqs).unwrap();
            if log.take_maintenance() {
                asked += 1;
                // What the broker's flusher does when asked.
                log.maintain(10);
            }
        }
        assert_eq!(asked, 1, "asked once, when three quarters were full");
        assert_eq!(log.inline_rolls(), 0, "no append had to roll");
        let head = log.next_seq();
        assert_eq!(log.writer.lock().count, 0, "the new segment is empty");
        // Everything is past its age, yet the newest records stay readable.
        LocalLog::enforce_retention(&log, 1_000_000);
        assert!(log.first_seq() < head);
        let mut cursor = None;
        assert!(matches!(
            log.read_hinted(head - 1, &mut cursor).unwrap(),
            ReadAt::Record(r) if r.seq() == head - 1
        ));
    }

    #[test]
    fn a_failed_sync_poisons_the_log_and_keeps_what_was_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let config = TopicConfig {
            durability: Durability::Always,
            ..TopicConfig::default()
        };
        let log =
            LocalLog::open(TopicName::new("p").unwrap(), dir.path(), config.clone(), 1).unwrap();
        let mut seqs = Vec::new();
        let _ = log.append(&[entry(b"acked")], 2, &mut seqs).unwrap();
        log.sync().unwrap();
        assert_eq!(log.next_seq(), 1, "durable, so readable");

        log.fail_syncs.store(true, Ordering::Relaxed);
        let _ = log.append(&[entry(b"never acked")], 3, &mut seqs).unwrap();
        let err = log.sync().unwrap_err();
        assert!(matches!(err, StorageError::Poisoned { .. }), "{err}");
        assert!(err.to_string().contains("injected sync failure"), "{err}");
        assert!(log.durable_tx.borrow().failed);
        // Not durable, so never readable under Always.
        assert_eq!(log.next_seq(), 1);
        // No more writes, and later syncs keep failing: nothing is acked again.
        let err = log.append(&[entry(b"x")], 4, &mut seqs).unwrap_err();
        assert!(matches!(err, StorageError::Poisoned { .. }), "{err}");
        log.fail_syncs.store(false, Ordering::Relaxed);
        assert!(log.sync().is_err());
        // Readers keep reading what was acknowledged.
        let mut hint = None;
        match log.read_hinted(0, &mut hint).unwrap() {
            ReadAt::Record(r) => assert_eq!(r.payload(), b"acked"),
            other => panic!("{other:?}"),
        }
        drop(log);
        // A reopen starts clean and keeps the acknowledged record.
        let log = LocalLog::open(TopicName::new("p").unwrap(), dir.path(), config, 5).unwrap();
        let mut hint = None;
        assert!(matches!(
            log.read_hinted(0, &mut hint).unwrap(),
            ReadAt::Record(_)
        ));
    }

    #[test]
    fn seek_time_finds_the_first_record_at_or_after_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let config = TopicConfig {
            durability: Durability::Never,
            segment_bytes: 4096,
            max_message_bytes: 512,
            ..TopicConfig::default()
        };
        let name = TopicName::new("t").unwrap();
        let log = LocalLog::open(name.clone(), dir.path(), config.clone(), 1).unwrap();
        let mut seqs = Vec::new();
        // Ten records per time step, over several segments; the clock goes
        // back once (at 55), and the writer keeps the time from going down.
        let payload = [7u8; 200];
        for ts in [10, 20, 30, 40, 50, 55, 60] {
            let clock = if ts == 55 { 25 } else { ts };
            for _ in 0..10 {
                let _ = log.append(&[entry(&payload)], clock, &mut seqs).unwrap();
            }
        }
        assert!(log.segments.read().len() > 2, "several segments");
        let check = |log: &LocalLog| {
            assert_eq!(log.seek_time(0).unwrap(), 0);
            assert_eq!(log.seek_time(10).unwrap(), 0);
            assert_eq!(log.seek_time(11).unwrap(), 10);
            assert_eq!(log.seek_time(20).unwrap(), 10);
            assert_eq!(log.seek_time(35).unwrap(), 30);
            // The step whose clock went back was stamped 50.
            assert_eq!(log.seek_time(50).unwrap(), 40);
            assert_eq!(log.seek_time(51).unwrap(), 60);
            assert_eq!(log.seek_time(60).unwrap(), 60);
            assert_eq!(log.seek_time(61).unwrap(), 70, "past the end: the head");
        };
        check(&log);
        drop(log);
        // After a reopen, from the records themselves.
        let log = LocalLog::open(name, dir.path(), config, 100).unwrap();
        check(&log);
    }
}
