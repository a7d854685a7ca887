//! The bookkeeping every listener shares: a connection limit, the tasks of
//! live connections, and the signal that tells them to end.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Live connections of one listener.
#[derive(Debug, Clone)]
pub(crate) struct Connections {
    token: CancellationToken,
    tracker: TaskTracker,
    slots: Arc<Semaphore>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max_per_ip: usize,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The listener's connection limit.
    Total,
    /// The limit for one peer address.
    PerAddress,
}

/// A live connection's place; freed on drop.
#[derive(Debug)]
pub(crate) struct Permit {
    _slot: OwnedSemaphorePermit,
    ip: IpAddr,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut m = self.per_ip.lock();
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

impl Connections {
    pub(crate) fn new(max_connections: usize, max_per_ip: usize) -> Self {
        Self {
            token: CancellationToken::new(),
            tracker: TaskTracker::new(),
            slots: Arc::new(Semaphore::new(max_connections)),
            per_ip: Arc::default(),
            max_per_ip,
        }
    }

    /// A place for a connection from `ip`, or why there is none.
    pub(crate) fn admit(&self, ip: IpAddr) -> Result<Permit, Refusal> {
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Total)?;
        let ip = ip.to_canonical();
        let mut m = self.per_ip.lock();
        let n = m.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(Refusal::PerAddress);
        }
        *n += 1;
        drop(m);
        Ok(Permit {
            _slot: slot,
            ip,
            per_ip: self.per_ip.clone(),
        })
    }

    /// Cancelled when the listener shuts down.
    pub(crate) fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Runs a task that shutdown waits for.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(task);
    }

    /// Tells every session to end and waits until all have.
    pub(crate) async fn shutdown(self) {
        self.token.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}
