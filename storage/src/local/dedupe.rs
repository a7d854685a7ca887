//! Remembered producer identities and idempotency keys, so that a retried
//! publish appends once.
//!
//! A producer numbers its messages, and a batch of them lands at consecutive
//! seqs, so per producer the table keeps *runs*: producer seq `p..p+len` was
//! appended as seqs `s..s+len`. That is one entry (and one eviction) per
//! batch instead of per message. Idempotency keys (from HTTP) are kept one
//! by one.
//!
//! The table is not persisted: it is rebuilt on open from the records of the
//! last window, which carry their producer block and idempotency key. So the
//! window survives restarts exactly as far as the log does.

use std::collections::{HashMap, VecDeque};

use fanlog_protocol::Producer;

/// Longest run: a run is forgotten whole, by the time it started, so runs
/// are capped to keep the newest messages from going with an old start.
const MAX_RUN: u64 = 1024;

#[derive(Debug, Clone, Copy)]
struct Run {
    pseq: u64,
    seq: u64,
    len: u64,
}

#[derive(Debug)]
enum Entry {
    /// The oldest run of this producer.
    Run(u64),
    Key(Box<[u8]>),
}

#[derive(Debug)]
pub(crate) struct Dedupe {
    producers: HashMap<u64, VecDeque<Run>>,
    keys: HashMap<Box<[u8]>, u64>,
    /// Creation order of runs and keys, for forgetting: (timestamp, entry).
    order: VecDeque<(u64, Entry)>,
    window_us: u64,
    max_entries: usize,
}

impl Dedupe {
    pub(crate) fn new(window_us: u64, max_entries: usize) -> Self {
        Self {
            producers: HashMap::new(),
            keys: HashMap::new(),
            order: VecDeque::new(),
            window_us,
            max_entries,
        }
    }

    /// The seq an earlier message with this identity got, if remembered.
    pub(crate) fn lookup(&self, producer: Option<Producer>, key: Option<&[u8]>) -> Option<u64> {
        if let Some(p) = producer
            && let Some(runs) = self.producers.get(&p.id)
            // A new message comes after the newest run: no search.
            && runs.back().is_some_and(|r| p.seq < r.pseq + r.len)
        {
            // Runs are in producer-seq order: binary search the one holding it.
            let i = runs.partition_point(|r| r.pseq + r.len <= p.seq);
            if let Some(r) = runs.get(i)
                && r.pseq <= p.seq
            {
                return Some(r.seq + (p.seq - r.pseq));
            }
        }
        key.and_then(|k| self.keys.get(k).copied())
    }

    /// Remembers the identities of a message appended as `seq` at `ts`.
    pub(crate) fn insert(
        &mut self,
        producer: Option<Producer>,
        key: Option<&[u8]>,
        seq: u64,
        ts: u64,
    ) {
        if let Some(p) = producer {
            let runs = self.producers.entry(p.id).or_default();
            match runs.back_mut() {
                Some(r) if r.pseq + r.len == p.seq && r.seq + r.len == seq && r.len < MAX_RUN => {
                    r.len += 1
                }
                // Older than the newest run (a retry of a message already
                // forgotten, into a gap): keep the runs sorted.
                Some(r) if p.seq < r.pseq + r.len => {
                    let at = runs.partition_point(|r| r.pseq < p.seq);
                    runs.insert(
                        at,
                        Run {
                            pseq: p.seq,
                            seq,
                            len: 1,
                        },
                    );
                    self.order.push_back((ts, Entry::Run(p.id)));
                }
                _ => {
                    runs.push_back(Run {
                        pseq: p.seq,
                        seq,
                        len: 1,
                    });
                    self.order.push_back((ts, Entry::Run(p.id)));
                }
            }
        }
        if let Some(k) = key {
            let k: Box<[u8]> = k.into();
            self.keys.insert(k.clone(), seq);
            self.order.push_back((ts, Entry::Key(k)));
        }
        if self.order.len() > self.max_entries {
            self.forget(ts);
        }
    }

    /// Forgets entries older than the window or beyond the entry limit.
    pub(crate) fn forget(&mut self, now: u64) {
        let horizon = now.saturating_sub(self.window_us);
        while let Some((ts, _)) = self.order.front() {
            if *ts >= horizon && self.order.len() <= self.max_entries {
                break;
            }
            match self.order.pop_front().map(|(_, e)| e) {
                Some(Entry::Run(id)) => {
                    if let Some(runs) = self.producers.get_mut(&id) {
                        runs.pop_front();
                        if runs.is_empty() {
                            self.producers.remove(&id);
                        }
                    }
                }
                Some(Entry::Key(k)) => {
                    self.keys.remove(&k);
                }
                None => {}
            }
        }
    }

    /// Forgets the identities of seqs `>= min_seq` (an append that failed
    /// before it was published). Rare: it scans the table.
    pub(crate) fn forget_from(&mut self, min_seq: u64) {
        for runs in self.producers.values_mut() {
            while let Some(r) = runs.back_mut() {
                if r.seq >= min_seq {
                    runs.pop_back();
                } else {
                    r.len = r.len.min(min_seq - r.seq);
                    break;
                }
            }
        }
        self.producers.retain(|_, runs| !runs.is_empty());
        self.keys.retain(|_, seq| *seq < min_seq);
        // Order entries of what was removed stay behind; forgetting them
        // later only narrows the window, it never invents a duplicate.
    }

    pub(crate) fn window_us(&self) -> u64 {
        self.window_us
    }

    pub(crate) fn max_entries(&self) -> usize {
        self.max_entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: u64, seq: u64) -> Option<Producer> {
        Some(Producer { id, seq })
    }

    #[test]
    fn remembers_within_the_window_and_forgets_after() {
        let mut d = Dedupe::new(1_000, 10);
        d.insert(p(1, 5), Some(b"k"), 42, 100);
        assert_eq!(d.lookup(p(1, 5), None), Some(42));
        assert_eq!(d.lookup(None, Some(b"k")), Some(42));
        assert_eq!(d.lookup(p(1, 6), None), None);
        d.forget(1_200);
        assert_eq!(d.lookup(p(1, 5), None), None);
        assert_eq!(d.lookup(None, Some(b"k")), None);
    }

    #[test]
    fn consecutive_messages_form_runs_and_interleaving_splits_them() {
        let mut d = Dedupe::new(u64::MAX, 1000);
        // Producer 1: pseq 0..100 at seqs 0..100, then producer 2 interleaves.
        for i in 0..100 {
            d.insert(p(1, i), None, i, 0);
        }
        d.insert(p(2, 0), None, 100, 0);
        for i in 100..150 {
            d.insert(p(1, i), None, i + 1, 0);
        }
        assert_eq!(d.producers[&1].len(), 2, "two runs, not 150 entries");
        assert_eq!(d.order.len(), 3);
        assert_eq!(d.lookup(p(1, 0), None), Some(0));
        assert_eq!(d.lookup(p(1, 99), None), Some(99));
        assert_eq!(d.lookup(p(1, 100), None), Some(101));
        assert_eq!(d.lookup(p(1, 149), None), Some(150));
        assert_eq!(d.lookup(p(1, 150), None), None);
        assert_eq!(d.lookup(p(2, 0), None), Some(100));
        assert_eq!(d.lookup(p(3, 0), None), None);
    }

    #[test]
    fn bounded_by_entries_oldest_first() {
        let mut d = Dedupe::new(u64::MAX, 3);
        // Gaps in producer seqs make every message its own run.
        for i in 0..10 {
            d.insert(p(1, i * 2), None, i, 0);
        }
        assert!(d.order.len() <= 3);
        assert_eq!(d.lookup(p(1, 18), None), Some(9));
        assert_eq!(d.lookup(p(1, 0), None), None);
    }

    #[test]
    fn runs_are_capped() {
        let mut d = Dedupe::new(u64::MAX, usize::MAX);
        for i in 0..(MAX_RUN * 2 + 1) {
            d.insert(p(7, i), None, i, 0);
        }
        assert_eq!(d.producers[&7].len(), 3);
        assert_eq!(d.lookup(p(7, MAX_RUN * 2), None), Some(MAX_RUN * 2));
    }

    #[test]
    fn a_failed_append_is_forgotten() {
        let mut d = Dedupe::new(u64::MAX, 100);
        for i in 0..10 {
            d.insert(p(1, i), Some(format!("k{i}").as_bytes()), i, 0);
        }
        d.forget_from(6);
        assert_eq!(d.lookup(p(1, 5), None), Some(5));
        assert_eq!(d.lookup(p(1, 6), None), None);
        assert_eq!(d.lookup(None, Some(b"k7")), None);
        assert_eq!(d.lookup(None, Some(b"k5")), Some(5));
    }

    #[test]
    fn an_older_producer_seq_keeps_the_newer_runs() {
        let mut d = Dedupe::new(u64::MAX, 100);
        for i in 100..110 {
            d.insert(p(1, i), None, i, 0);
        }
        // A message the table had forgotten comes again, and is new.
        d.insert(p(1, 3), None, 200, 0);
        assert_eq!(d.lookup(p(1, 3), None), Some(200));
        assert_eq!(
            d.lookup(p(1, 105), None),
            Some(105),
            "recent messages still remembered"
        );
        assert_eq!(d.lookup(p(1, 50), None), None);
    }
}
