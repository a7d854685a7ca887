//! The dispatch state of one work-sharing consumer group (issue 17): which
//! member holds which seq, what is acknowledged, what waits to be delivered
//! again, which keys are busy. Sans-IO: the caller tells it the time and
//! what the log holds (each seq's key), and it answers what to hand out,
//! what to deliver again and what to set aside as dead.
//!
//! - **Floor**: every seq below it is acknowledged (or dead-lettered): the
//!   group's committed offset. Acks above it are kept in a set until the
//!   floor reaches them.
//! - **Hand-out order**: seqs due for another delivery first, then seqs
//!   released by their key, then new seqs from the log, lowest seq first;
//!   at most `max_inflight` per member.
//! - **Ack wait**: a seq handed out and not acknowledged within `ack_wait`
//!   is due again at once, its delivery count kept; a nack may ask for a
//!   delay. After `max_deliver` deliveries, the next failure makes it
//!   dead: the caller copies it to the dead-letter topic and then calls
//!   [`Dispatch::settle`].
//! - **Per-key order** (`key_order`): a key is busy from the hand-out of one
//!   of its seqs until that seq is settled (acknowledged or dead), waits
//!   for a redelivery included; later seqs of a busy key wait behind it in
//!   seq order while other keys go on. Records without a key are never
//!   held back.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Duration;

/// What a shared group promises its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedOptions {
    /// A seq handed out and not acknowledged within this goes to another
    /// member.
    pub ack_wait: Duration,
    /// Deliveries of one seq before its next failure sets it aside.
    pub max_deliver: u32,
    /// Seqs one member holds unacknowledged at most.
    pub max_inflight: usize,
    /// Seqs of one key are handed to one member at a time, in seq order.
    pub key_order: bool,
}

impl Default for SharedOptions {
    fn default() -> Self {
        Self {
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            max_inflight: 100,
            key_order: false,
        }
    }
}

/// A member of the group, as the caller numbers them.
pub type MemberId = u64;

/// A seq handed to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handout {
    /// The record's seq.
    pub seq: u64,
    /// 1 on the first delivery.
    pub deliveries: u32,
}

/// A seq that failed `max_deliver` times: the caller copies it to the
/// dead-letter topic, then calls [`Dispatch::settle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dead {
    /// The record's seq.
    pub seq: u64,
    /// Deliveries it had.
    pub deliveries: u32,
    /// The last nack's reason, or that the ack wait ran out.
    pub last_error: String,
}

/// Why an ack or nack was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotHeld {
    /// The member does not hold the seq (its ack wait ran out and the seq
    /// went to another member, or it never had it).
    #[error("this worker does not hold that seq (its ack wait ran out, or it never had it)")]
    NotHeld,
}

/// What the log holds at a seq, as the dispatch needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// A record, with its key (empty: none).
    Record(Vec<u8>),
    /// Removed by retention: skipped, counted as settled.
    Gone,
    /// Not written yet.
    End,
}

#[derive(Debug)]
struct InFlight {
    member: MemberId,
    deadline_us: u64,
    deliveries: u32,
    key: Vec<u8>,
}

#[derive(Debug)]
struct Retry {
    due_us: u64,
    deliveries: u32,
    key: Vec<u8>,
}

/// Counters a group's metrics show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchStats {
    /// Seqs handed out and not settled.
    pub in_flight: usize,
    /// Seqs due for another delivery (now or after a nack's delay).
    pub waiting_for_retry: usize,
    /// Seqs waiting behind a busy key.
    pub held_by_key: usize,
    /// Deliveries after the first, since this dispatch began.
    pub redelivered: u64,
    /// Seqs set aside as dead, since this dispatch began.
    pub dead_lettered: u64,
}

/// The dispatch state of one shared group.
#[derive(Debug)]
pub struct Dispatch {
    opts: SharedOptions,
    floor: u64,
    /// The next seq never looked at.
    next: u64,
    /// Settled seqs above the floor.
    settled: BTreeSet<u64>,
    in_flight: BTreeMap<u64, InFlight>,
    retry: BTreeMap<u64, Retry>,
    /// Seqs a key released: handed out before new ones.
    released: BTreeMap<u64, Vec<u8>>,
    /// Per busy key, the seqs waiting behind its busy one, in seq order.
    waiting: HashMap<Vec<u8>, VecDeque<u64>>,
    /// Keys with a seq in flight or due again.
    busy: HashMap<Vec<u8>, u64>,
    /// Dead seqs the caller has not settled yet.
    dead: BTreeSet<u64>,
    held: HashMap<MemberId, usize>,
    /// Members whose ack wait ran out: handed nothing until they show
    /// life (an ack or nack, even a refused one, or [`Dispatch::wake`]),
    /// so that a stalled worker does not take record after record and
    /// burn their deliveries.
    stalled: HashSet<MemberId>,
    last_errors: HashMap<u64, String>,
    stats: DispatchStats,
}

impl Dispatch {
    /// A group whose floor (committed offset) is `floor`, with `settled`
    /// the seqs above it already acknowledged (restored after a restart).
    pub fn new(opts: SharedOptions, floor: u64, settled: impl IntoIterator<Item = u64>) -> Self {
        let mut d = Self {
            opts,
            floor,
            next: floor,
            settled: settled.into_iter().filter(|&s| s >= floor).collect(),
            in_flight: BTreeMap::new(),
            retry: BTreeMap::new(),
            released: BTreeMap::new(),
            waiting: HashMap::new(),
            busy: HashMap::new(),
            dead: BTreeSet::new(),
            held: HashMap::new(),
            stalled: HashSet::new(),
            last_errors: HashMap::new(),
            stats: DispatchStats::default(),
        };
        d.advance_floor();
        d
    }

    /// Every seq below this is settled: the group's committed offset.
    #[must_use]
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// The settled seqs above the floor (what a restart must not deliver
    /// again).
    pub fn settled_above_floor(&self) -> impl Iterator<Item = u64> + '_ {
        self.settled.iter().copied()
    }

    /// The group's counters now.
    #[must_use]
    pub fn stats(&self) -> DispatchStats {
        DispatchStats {
            in_flight: self.in_flight.len(),
            waiting_for_retry: self.retry.len(),
            held_by_key: self.waiting.values().map(VecDeque::len).sum(),
            ..self.stats
        }
    }

    /// The seqs `member` holds below `upto`, in order.
    #[must_use]
    pub fn held_below(&self, member: MemberId, upto: u64) -> Vec<u64> {
        self.in_flight
            .range(..upto)
            .filter(|(_, f)| f.member == member)
            .map(|(&s, _)| s)
            .collect()
    }

    /// Seqs `member` holds now.
    #[must_use]
    pub fn held_by(&self, member: MemberId) -> usize {
        self.held.get(&member).copied().unwrap_or(0)
    }

    /// Hands `member` up to `max` seqs (and no more than its room under
    /// `max_inflight`), reading new ones from the log through `slot`.
    /// Seqs whose ack wait ran out are due again first; the dead among
    /// them are returned for the caller to set aside.
    pub fn hand_out(
        &mut self,
        member: MemberId,
        max: usize,
        now_us: u64,
        mut slot: impl FnMut(u64) -> Slot,
    ) -> (Vec<Handout>, Vec<Dead>) {
        let dead = self.expire(now_us);
        if self.stalled.contains(&member) {
            return (Vec::new(), dead);
        }
        let room = self
            .opts
            .max_inflight
            .saturating_sub(self.held_by(member))
            .min(max);
        let mut out = Vec::with_capacity(room);
        while out.len() < room {
            // The lowest seq among those due again and those released.
            let due = self
                .retry
                .iter()
                .find(|(_, r)| r.due_us <= now_us)
                .map(|(&s, _)| s);
            let released = self.released.keys().next().copied();
            let pick = match (due, released) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if let Some(seq) = pick {
                let (deliveries, key) = if let Some(r) = self.retry.remove(&seq) {
                    self.stats.redelivered += 1;
                    (r.deliveries, r.key)
                } else {
                    let key = self.released.remove(&seq).unwrap_or_default();
                    (0, key)
                };
                out.push(self.give(member, seq, deliveries, key, now_us));
                continue;
            }
            // A new seq from the log.
            match slot(self.next) {
                Slot::End => break,
                Slot::Gone => {
                    let seq = self.next;
                    self.next += 1;
                    self.settle_seq(seq);
                }
                Slot::Record(key) => {
                    let seq = self.next;
                    self.next += 1;
                    if self.settled.contains(&seq) {
                        continue;
                    }
                    if self.opts.key_order && !key.is_empty() {
                        if self.busy.contains_key(&key) {
                            self.waiting.entry(key).or_default().push_back(seq);
                            continue;
                        }
                        self.busy.insert(key.clone(), seq);
                    }
                    out.push(self.give(member, seq, 0, key, now_us));
                }
            }
        }
        (out, dead)
    }

    fn give(
        &mut self,
        member: MemberId,
        seq: u64,
        deliveries: u32,
        key: Vec<u8>,
        now_us: u64,
    ) -> Handout {
        let deliveries = deliveries + 1;
        self.in_flight.insert(
            seq,
            InFlight {
                member,
                deadline_us: now_us.saturating_add(micros(self.opts.ack_wait)),
                deliveries,
                key,
            },
        );
        *self.held.entry(member).or_default() += 1;
        Handout { seq, deliveries }
    }

    /// Takes `seq` out of `member`'s hands.
    fn take(&mut self, member: MemberId, seq: u64) -> Result<InFlight, NotHeld> {
        match self.in_flight.get(&seq) {
            Some(f) if f.member == member => {}
            _ => return Err(NotHeld::NotHeld),
        }
        let f = self.in_flight.remove(&seq).ok_or(NotHeld::NotHeld)?;
        if let Some(n) = self.held.get_mut(&member) {
            *n = n.saturating_sub(1);
        }
        Ok(f)
    }

    /// `member` processed `seq`.
    ///
    /// # Errors
    /// [`NotHeld`] when the member does not hold it (any more).
    pub fn ack(&mut self, member: MemberId, seq: u64) -> Result<(), NotHeld> {
        self.stalled.remove(&member);
        let f = self.take(member, seq)?;
        self.release_key(&f.key, seq);
        self.settle_seq(seq);
        Ok(())
    }

    /// `member` could not process `seq`: due again after `delay`, or dead
    /// (returned) when it was delivered `max_deliver` times.
    ///
    /// # Errors
    /// [`NotHeld`] when the member does not hold it (any more).
    pub fn nack(
        &mut self,
        member: MemberId,
        seq: u64,
        delay: Duration,
        error: &str,
        now_us: u64,
    ) -> Result<Option<Dead>, NotHeld> {
        self.stalled.remove(&member);
        let f = self.take(member, seq)?;
        Ok(self.failed(seq, f, now_us.saturating_add(micros(delay)), error))
    }

    /// A member left or died: everything it holds is due again at once.
    pub fn leave(&mut self, member: MemberId, now_us: u64) -> Vec<Dead> {
        let seqs: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.member == member)
            .map(|(&s, _)| s)
            .collect();
        self.held.remove(&member);
        self.stalled.remove(&member);
        let mut dead = Vec::new();
        for seq in seqs {
            if let Some(f) = self.in_flight.remove(&seq) {
                dead.extend(self.failed(seq, f, now_us, "its member left"));
            }
        }
        dead
    }

    /// Seqs whose ack wait ran out are due again now (or dead).
    pub fn expire(&mut self, now_us: u64) -> Vec<Dead> {
        let late: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline_us <= now_us)
            .map(|(&s, _)| s)
            .collect();
        let mut dead = Vec::new();
        for seq in late {
            if let Some(f) = self.in_flight.remove(&seq) {
                if let Some(n) = self.held.get_mut(&f.member) {
                    *n = n.saturating_sub(1);
                }
                self.stalled.insert(f.member);
                dead.extend(self.failed(seq, f, now_us, "not acknowledged within the ack wait"));
            }
        }
        dead
    }

    /// `member` asked for records of its own accord (a pull): it is no
    /// longer taken for stalled.
    pub fn wake(&mut self, member: MemberId) {
        self.stalled.remove(&member);
    }

    /// Whether `member` is handed nothing until it shows life.
    #[must_use]
    pub fn is_stalled(&self, member: MemberId) -> bool {
        self.stalled.contains(&member)
    }

    /// The earliest time something is due (an ack wait running out or a
    /// delayed redelivery): when the caller should look again.
    #[must_use]
    pub fn next_due_us(&self) -> Option<u64> {
        let a = self.in_flight.values().map(|f| f.deadline_us).min();
        let b = self.retry.values().map(|r| r.due_us).min();
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn failed(&mut self, seq: u64, f: InFlight, due_us: u64, error: &str) -> Option<Dead> {
        self.last_errors.insert(seq, error.to_owned());
        if f.deliveries >= self.opts.max_deliver {
            // The key stays busy until the caller settles it: a later seq
            // of the key must not overtake a message being set aside.
            self.dead.insert(seq);
            self.stats.dead_lettered += 1;
            return Some(Dead {
                seq,
                deliveries: f.deliveries,
                last_error: self.last_errors.remove(&seq).unwrap_or_default(),
            });
        }
        self.retry.insert(
            seq,
            Retry {
                due_us,
                deliveries: f.deliveries,
                key: f.key,
            },
        );
        None
    }

    /// A dead seq was copied to the dead-letter topic: it counts as
    /// settled, and its key goes on. `key` is the record's key.
    pub fn settle(&mut self, seq: u64, key: &[u8]) {
        if self.dead.remove(&seq) {
            self.release_key(key, seq);
            self.settle_seq(seq);
        }
    }

    /// The next waiting seq of `key` (if `seq` held it) may go.
    fn release_key(&mut self, key: &[u8], seq: u64) {
        if !self.opts.key_order || key.is_empty() || self.busy.get(key) != Some(&seq) {
            return;
        }
        let next = self.waiting.get_mut(key).and_then(VecDeque::pop_front);
        match next {
            Some(n) => {
                self.busy.insert(key.to_vec(), n);
                self.released.insert(n, key.to_vec());
                if self.waiting.get(key).is_some_and(VecDeque::is_empty) {
                    self.waiting.remove(key);
                }
            }
            None => {
                self.busy.remove(key);
            }
        }
    }

    fn settle_seq(&mut self, seq: u64) {
        self.last_errors.remove(&seq);
        if seq >= self.floor {
            self.settled.insert(seq);
        }
        self.advance_floor();
    }

    fn advance_floor(&mut self) {
        while self.settled.remove(&self.floor) {
            self.floor += 1;
        }
        self.next = self.next.max(self.floor);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;

    fn opts(max_inflight: usize, key_order: bool) -> SharedOptions {
        SharedOptions {
            ack_wait: Duration::from_millis(100),
            max_deliver: 3,
            max_inflight,
            key_order,
        }
    }

    /// A log of `n` records; record `s` has key `keys[s % keys.len()]`.
    fn log(n: u64, keys: &'static [&'static str]) -> impl FnMut(u64) -> Slot {
        move |s| {
            if s >= n {
                Slot::End
            } else if keys.is_empty() {
                Slot::Record(Vec::new())
            } else {
                Slot::Record(keys[(s % keys.len() as u64) as usize].as_bytes().to_vec())
            }
        }
    }

    fn handout(seq: u64, deliveries: u32) -> Handout {
        Handout { seq, deliveries }
    }

    fn seqs(h: &[Handout]) -> Vec<u64> {
        h.iter().map(|h| h.seq).collect()
    }

    #[test]
    fn each_seq_goes_to_one_member_and_acks_move_the_floor() {
        let mut d = Dispatch::new(opts(4, false), 0, []);
        let (a, _) = d.hand_out(1, 10, 0, log(10, &[]));
        let (b, _) = d.hand_out(2, 10, 0, log(10, &[]));
        assert_eq!(seqs(&a), [0, 1, 2, 3], "at most max_inflight");
        assert_eq!(seqs(&b), [4, 5, 6, 7]);
        // Out of order acks: the floor moves only over a settled prefix.
        d.ack(2, 4).unwrap();
        assert_eq!(d.floor(), 0);
        for s in 0..4 {
            d.ack(1, s).unwrap();
        }
        assert_eq!(d.floor(), 5);
        assert_eq!(d.ack(1, 6), Err(NotHeld::NotHeld), "another member's");
        let (a, _) = d.hand_out(1, 10, 0, log(10, &[]));
        assert_eq!(seqs(&a), [8, 9]);
    }

    #[test]
    fn an_unacked_seq_goes_to_another_member_after_the_ack_wait() {
        let mut d = Dispatch::new(opts(10, false), 0, []);
        let (a, _) = d.hand_out(1, 2, 0, log(2, &[]));
        assert_eq!(a[0].deliveries, 1);
        // Before the wait ran out: nothing for member 2.
        assert!(d.hand_out(2, 10, 50 * MS, log(2, &[])).0.is_empty());
        let (b, dead) = d.hand_out(2, 10, 100 * MS, log(2, &[]));
        assert!(dead.is_empty());
        assert_eq!(b, [handout(0, 2), handout(1, 2)]);
        // The first member's late ack is refused; the new holder's counts.
        assert_eq!(d.ack(1, 0), Err(NotHeld::NotHeld));
        d.ack(2, 0).unwrap();
        d.ack(2, 1).unwrap();
        assert_eq!(d.floor(), 2);
        assert_eq!(d.stats().redelivered, 2);
    }

    #[test]
    fn a_member_whose_ack_wait_ran_out_gets_nothing_until_it_shows_life() {
        let mut d = Dispatch::new(opts(10, false), 0, []);
        let (a, _) = d.hand_out(1, 2, 0, log(4, &[]));
        assert_eq!(a.len(), 2);
        // Its wait runs out: it is stalled and takes nothing, not even
        // its own records back (that would burn their deliveries).
        assert!(d.hand_out(1, 10, 100 * MS, log(4, &[])).0.is_empty());
        assert!(d.is_stalled(1));
        let (b, _) = d.hand_out(2, 1, 100 * MS, log(4, &[]));
        assert_eq!(b, [handout(0, 2)]);
        // A refused ack is a sign of life: it gets records again.
        assert_eq!(d.ack(1, 0), Err(NotHeld::NotHeld));
        assert!(!d.is_stalled(1));
        assert_eq!(
            d.hand_out(1, 10, 100 * MS, log(4, &[])).0,
            [handout(1, 2), handout(2, 1), handout(3, 1)]
        );
        // So is a pull of its own accord.
        let (_, _) = d.hand_out(1, 10, 300 * MS, log(4, &[]));
        assert!(d.is_stalled(1));
        d.wake(1);
        assert!(!d.is_stalled(1));
    }

    #[test]
    fn a_message_failing_max_deliver_times_is_dead_and_the_group_goes_on() {
        let mut d = Dispatch::new(opts(10, false), 0, []);
        let mut now = 0;
        for attempt in 1..=3 {
            let (h, _) = d.hand_out(1, 1, now, log(3, &[]));
            assert_eq!(h, [handout(0, attempt)]);
            let dead = d.nack(1, 0, Duration::ZERO, "boom", now).unwrap();
            assert_eq!(dead.is_some(), attempt == 3);
            if let Some(dead) = dead {
                assert_eq!(
                    dead,
                    Dead {
                        seq: 0,
                        deliveries: 3,
                        last_error: "boom".into()
                    }
                );
            }
            now += MS;
        }
        // Not handed out again while being set aside; settled, the floor
        // passes it.
        let (h, _) = d.hand_out(1, 10, now, log(3, &[]));
        assert_eq!(seqs(&h), [1, 2]);
        assert_eq!(d.floor(), 0);
        d.settle(0, b"");
        assert_eq!(d.floor(), 1);
        assert_eq!(d.stats().dead_lettered, 1);
    }

    #[test]
    fn a_nack_delay_holds_the_seq_back() {
        let mut d = Dispatch::new(opts(10, false), 0, []);
        d.hand_out(1, 1, 0, log(1, &[]));
        assert_eq!(
            d.nack(1, 0, Duration::from_millis(500), "later", 0),
            Ok(None)
        );
        assert!(d.hand_out(2, 10, 400 * MS, log(1, &[])).0.is_empty());
        assert_eq!(d.next_due_us(), Some(500 * MS));
        let (h, _) = d.hand_out(2, 10, 500 * MS, log(1, &[]));
        assert_eq!(h, [handout(0, 2)]);
    }

    #[test]
    fn with_key_order_one_key_is_with_one_member_at_a_time_in_seq_order() {
        // Seqs 0..8 with keys a, b, a, b, ...
        let mut d = Dispatch::new(opts(10, true), 0, []);
        let (m1, _) = d.hand_out(1, 10, 0, log(8, &["a", "b"]));
        assert_eq!(seqs(&m1), [0, 1], "one seq per key in flight");
        assert!(d.hand_out(2, 10, 0, log(8, &["a", "b"])).0.is_empty());
        // a's seq 0 acked: a's next (2) goes out, b stays behind 1.
        d.ack(1, 0).unwrap();
        let (m2, _) = d.hand_out(2, 10, 0, log(8, &["a", "b"]));
        assert_eq!(seqs(&m2), [2]);
        // b's 1 fails: due again before b's 3, still one at a time.
        d.nack(1, 1, Duration::ZERO, "x", 0).unwrap();
        let (m2b, _) = d.hand_out(2, 10, 0, log(8, &["a", "b"]));
        assert_eq!(m2b, [handout(1, 2)]);
        d.ack(2, 1).unwrap();
        d.ack(2, 2).unwrap();
        let (rest, _) = d.hand_out(1, 10, 0, log(8, &["a", "b"]));
        assert_eq!(seqs(&rest), [3, 4]);
        assert_eq!(d.stats().held_by_key, 3);
    }

    #[test]
    fn a_member_leaving_frees_its_seqs_and_keys_at_once() {
        let mut d = Dispatch::new(opts(10, true), 0, []);
        d.hand_out(1, 10, 0, log(4, &["a", "b"]));
        assert!(d.leave(1, 10 * MS).is_empty());
        let (h, _) = d.hand_out(2, 10, 10 * MS, log(4, &["a", "b"]));
        assert_eq!(h, [handout(0, 2), handout(1, 2)]);
        assert_eq!(d.held_by(1), 0);
    }

    #[test]
    fn a_restart_delivers_only_what_was_not_settled() {
        let mut d = Dispatch::new(opts(10, false), 0, []);
        d.hand_out(1, 10, 0, log(6, &[]));
        for s in [0, 1, 3, 5] {
            d.ack(1, s).unwrap();
        }
        let (floor, settled): (u64, Vec<u64>) = (d.floor(), d.settled_above_floor().collect());
        assert_eq!((floor, settled.as_slice()), (2, &[3, 5][..]));
        let mut again = Dispatch::new(opts(10, false), floor, settled);
        let (h, _) = again.hand_out(2, 10, 0, log(6, &[]));
        assert_eq!(seqs(&h), [2, 4]);
    }

    proptest::proptest! {
        /// Any interleaving of hand-outs, acks, nacks, members leaving and
        /// time passing, with per-key order: see [`model`].
        #[test]
        fn shared_dispatch_keeps_its_promises(
            ops in proptest::collection::vec((0u8..5, 0u64..3, 0u64..4), 1..300),
        ) {
            model(&ops);
        }
    }

    /// Runs `ops` (what, member, amount) against a dispatch with per-key
    /// order and checks: a seq is never held by two members at once, a
    /// key's seqs are handed out one at a time and in seq order, and once
    /// everything is settled every seq was settled exactly once and the
    /// floor is the log's end.
    fn model(ops: &[(u8, u64, u64)]) {
        const N: u64 = 40;
        const KEYS: &[&str] = &["a", "b", "c", ""];
        let key_of = |s: u64| KEYS[(s * 7 % 4) as usize].as_bytes().to_vec();
        let slot = |s: u64| {
            if s < N {
                Slot::Record(key_of(s))
            } else {
                Slot::End
            }
        };
        let o = SharedOptions {
            ack_wait: Duration::from_millis(10),
            max_deliver: 3,
            max_inflight: 3,
            key_order: true,
        };
        let mut m = Model {
            d: Dispatch::new(o, 0, []),
            held: BTreeMap::new(),
            settled: BTreeSet::new(),
            key_last: HashMap::new(),
            key_of: &key_of,
        };
        let mut now = 0u64;
        for &(op, member, x) in ops {
            let dead = m.d.expire(now);
            m.bury(dead);
            let d = &m.d;
            m.held.retain(|s, _| d.in_flight.contains_key(s));
            match op {
                0 => {
                    let (h, dead) = m.d.hand_out(member, x as usize + 1, now, slot);
                    m.bury(dead);
                    m.given(&h, member);
                }
                1 => {
                    if let Some(seq) = m.held_by(member) {
                        m.d.ack(member, seq).unwrap();
                        m.held.remove(&seq);
                        m.settled_once(seq);
                    }
                }
                2 => {
                    if let Some(seq) = m.held_by(member) {
                        m.held.remove(&seq);
                        let dead =
                            m.d.nack(member, seq, Duration::from_millis(x), "no", now)
                                .unwrap();
                        m.bury(dead);
                    }
                }
                3 => {
                    let dead = m.d.leave(member, now);
                    m.bury(dead);
                    m.held.retain(|_, hm| *hm != member);
                }
                _ => now += x * 4 * MS,
            }
            // A seq is with at most one member, as the dispatch says.
            for (s, hm) in &m.held {
                assert_eq!(m.d.in_flight.get(s).map(|f| f.member), Some(*hm));
            }
        }
        // Drain: everything left is handed out and acknowledged.
        for _ in 0..10_000 {
            now += 20 * MS;
            let dead = m.d.expire(now);
            m.bury(dead);
            let (h, dead) = m.d.hand_out(9, 3, now, slot);
            m.bury(dead);
            if h.is_empty() && m.d.in_flight.is_empty() && m.d.retry.is_empty() {
                break;
            }
            m.held.clear();
            m.given(&h, 9);
            for x in h {
                m.d.ack(9, x.seq).unwrap();
                m.settled_once(x.seq);
            }
        }
        assert_eq!(m.settled.len() as u64, N);
        assert_eq!(m.d.floor(), N);
    }

    /// What the model test knows besides the dispatch.
    struct Model<'a> {
        d: Dispatch,
        held: BTreeMap<u64, MemberId>,
        settled: BTreeSet<u64>,
        /// Per key: the seq last handed out, and whether it is settled.
        key_last: HashMap<Vec<u8>, (u64, bool)>,
        key_of: &'a dyn Fn(u64) -> Vec<u8>,
    }

    impl Model<'_> {
        fn held_by(&self, member: MemberId) -> Option<u64> {
            self.held
                .iter()
                .find(|(_, hm)| **hm == member)
                .map(|(&s, _)| s)
        }

        fn given(&mut self, h: &[Handout], member: MemberId) {
            for x in h {
                self.held.insert(x.seq, member);
                let k = (self.key_of)(x.seq);
                if k.is_empty() {
                    continue;
                }
                match self.key_last.get(&k) {
                    Some(&(last, done)) if last == x.seq => {
                        assert!(!done, "{} handed out again after settling", x.seq);
                    }
                    Some(&(last, done)) => {
                        assert!(
                            done,
                            "key {k:?}: {} handed out while {last} unsettled",
                            x.seq
                        );
                        assert!(x.seq > last, "key {k:?}: {} after {last}", x.seq);
                    }
                    None => {}
                }
                self.key_last.insert(k, (x.seq, false));
            }
        }

        fn settled_once(&mut self, seq: u64) {
            assert!(self.settled.insert(seq), "{seq} settled twice");
            if let Some(e) = self.key_last.get_mut(&(self.key_of)(seq))
                && e.0 == seq
            {
                e.1 = true;
            }
        }

        /// The dead are copied aside (here: nowhere) and settled.
        fn bury(&mut self, dead: impl IntoIterator<Item = Dead>) {
            for dd in dead {
                self.d.settle(dd.seq, &(self.key_of)(dd.seq));
                self.settled_once(dd.seq);
            }
        }
    }

    #[test]
    fn records_removed_by_retention_are_skipped() {
        let mut d = Dispatch::new(opts(10, false), 0, []);
        let (h, _) = d.hand_out(1, 10, 0, |s| match s {
            0..=2 => Slot::Gone,
            3..=4 => Slot::Record(Vec::new()),
            _ => Slot::End,
        });
        assert_eq!(seqs(&h), [3, 4]);
        assert_eq!(d.floor(), 3);
    }
}
