//! Leases: exclusive, expiring ownership of a name. In one process the
//! owner of a name is whoever holds its unexpired lease; a cluster store
//! keeps them where every process sees them, with the same contract.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A lease held: the name, who holds it and the token that proves it (it
/// changes on every new grant, so a holder that lost the lease and got it
/// back is told apart from one that never lost it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// What is owned.
    pub name: String,
    /// Who owns it.
    pub holder: String,
    /// Moves on every grant to a new holder (or after an expiry).
    pub token: u64,
}

/// Exclusive, expiring ownership of names.
pub trait Leases: Send + Sync + fmt::Debug {
    /// Grants `name` to `holder` for `ttl` when nobody else holds an
    /// unexpired lease on it; a holder renews its own lease the same way.
    /// `None` while another holder's lease runs.
    fn acquire(&self, name: &str, holder: &str, ttl: Duration) -> Option<Lease>;
    /// Whether `lease` still holds (same holder and token, unexpired): what
    /// a holder checks before it acts as the owner.
    fn holds(&self, lease: &Lease) -> bool;
    /// Gives the lease up at once (nothing when it no longer holds).
    fn release(&self, lease: &Lease);
    /// Whether `lease` holds, asked of the store itself (and renewed for
    /// `ttl` when it does): what a holder checks right before a write
    /// that only the owner may make. In one process the same as
    /// [`Leases::holds`].
    fn fence(&self, lease: &Lease, _ttl: Duration) -> bool {
        self.holds(lease)
    }
}

/// Leases within one process: the embedded broker's, where every holder
/// lives in the same process.
#[derive(Debug, Default)]
pub struct LocalLeases {
    held: Mutex<HashMap<String, (String, u64, Instant)>>,
    grants: std::sync::atomic::AtomicU64,
}

impl Leases for LocalLeases {
    fn acquire(&self, name: &str, holder: &str, ttl: Duration) -> Option<Lease> {
        let now = Instant::now();
        let mut held = self.held.lock();
        let token = match held.get(name) {
            Some((h, token, until)) if h == holder && *until > now => *token,
            Some((_, _, until)) if *until > now => return None,
            _ => {
                self.grants
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    + 1
            }
        };
        held.insert(name.to_owned(), (holder.to_owned(), token, now + ttl));
        Some(Lease {
            name: name.to_owned(),
            holder: holder.to_owned(),
            token,
        })
    }

    fn holds(&self, lease: &Lease) -> bool {
        self.held
            .lock()
            .get(&lease.name)
            .is_some_and(|(h, t, until)| {
                *h == lease.holder && *t == lease.token && *until > Instant::now()
            })
    }

    fn release(&self, lease: &Lease) {
        let mut held = self.held.lock();
        if held
            .get(&lease.name)
            .is_some_and(|(h, t, _)| *h == lease.holder && *t == lease.token)
        {
            held.remove(&lease.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_until_expiry_or_release() {
        let l = LocalLeases::default();
        let a = l.acquire("hooks/1", "a", Duration::from_secs(60)).unwrap();
        assert!(l.acquire("hooks/1", "b", Duration::from_secs(60)).is_none());
        // Renewal keeps the token.
        let again = l.acquire("hooks/1", "a", Duration::from_secs(60)).unwrap();
        assert_eq!(again.token, a.token);
        assert!(l.holds(&a));
        l.release(&a);
        assert!(!l.holds(&a));
        let b = l.acquire("hooks/1", "b", Duration::from_millis(1)).unwrap();
        assert_ne!(b.token, a.token);
        std::thread::sleep(Duration::from_millis(5));
        // Expired: b no longer holds, and a stale b cannot act.
        assert!(!l.holds(&b));
        let a2 = l.acquire("hooks/1", "a", Duration::from_secs(60)).unwrap();
        assert!(!l.holds(&b));
        assert!(l.holds(&a2));
        // Releasing a stale lease does not end the new one.
        l.release(&b);
        assert!(l.holds(&a2));
    }
}
