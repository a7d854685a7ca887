//! Remembered producer identities and idempotency keys, so that a retried
//! publish appends once.
//!
//! The table is not persisted: it is rebuilt on open from the records of the
//! last window, which carry their producer block and idempotency key. So the
//! window survives restarts exactly as far as the log does.

use std::collections::{HashMap, VecDeque};

use fanlog_protocol::Producer;

#[derive(Debug)]
enum Id {
    Producer(u64, u64),
    Key(Box<[u8]>),
}

#[derive(Debug)]
pub(crate) struct Dedupe {
    producers: HashMap<(u64, u64), u64>,
    keys: HashMap<Box<[u8]>, u64>,
    /// Insertion order, for forgetting: (timestamp, identity).
    order: VecDeque<(u64, Id)>,
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
            && let Some(seq) = self.producers.get(&(p.id, p.seq))
        {
            return Some(*seq);
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
            self.producers.insert((p.id, p.seq), seq);
            self.order.push_back((ts, Id::Producer(p.id, p.seq)));
        }
        if let Some(k) = key {
            let k: Box<[u8]> = k.into();
            self.keys.insert(k.clone(), seq);
            self.order.push_back((ts, Id::Key(k)));
        }
        self.forget(ts);
    }

    /// Forgets identities older than the window or beyond the entry limit.
    pub(crate) fn forget(&mut self, now: u64) {
        let horizon = now.saturating_sub(self.window_us);
        while let Some((ts, _)) = self.order.front() {
            if *ts >= horizon && self.order.len() <= self.max_entries {
                break;
            }
            if let Some((_, id)) = self.order.pop_front() {
                match id {
                    Id::Producer(a, b) => self.producers.remove(&(a, b)),
                    Id::Key(k) => self.keys.remove(&k),
                };
            }
        }
    }

    /// Forgets the identities of seqs `>= min_seq` (an append that failed
    /// before it was published).
    pub(crate) fn forget_from(&mut self, min_seq: u64) {
        while let Some((_, id)) = self.order.back() {
            let seq = match id {
                Id::Producer(a, b) => self.producers.get(&(*a, *b)),
                Id::Key(k) => self.keys.get(k),
            };
            if seq.is_some_and(|s| *s < min_seq) {
                break;
            }
            if let Some((_, id)) = self.order.pop_back() {
                match id {
                    Id::Producer(a, b) => self.producers.remove(&(a, b)),
                    Id::Key(k) => self.keys.remove(&k),
                };
            }
        }
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

    #[test]
    fn remembers_within_the_window_and_forgets_after() {
        let mut d = Dedupe::new(1_000, 10);
        let p = Producer { id: 1, seq: 5 };
        d.insert(Some(p), Some(b"k"), 42, 100);
        assert_eq!(d.lookup(Some(p), None), Some(42));
        assert_eq!(d.lookup(None, Some(b"k")), Some(42));
        assert_eq!(d.lookup(Some(Producer { id: 1, seq: 6 }), None), None);
        d.forget(1_200);
        assert_eq!(d.lookup(Some(p), None), None);
        assert_eq!(d.lookup(None, Some(b"k")), None);
    }

    #[test]
    fn bounded_by_entries() {
        let mut d = Dedupe::new(u64::MAX, 3);
        for i in 0..10 {
            d.insert(Some(Producer { id: 1, seq: i }), None, i, 0);
        }
        assert!(d.order.len() <= 3);
        assert_eq!(d.lookup(Some(Producer { id: 1, seq: 9 }), None), Some(9));
        assert_eq!(d.lookup(Some(Producer { id: 1, seq: 0 }), None), None);
    }
}
