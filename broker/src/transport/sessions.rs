//! The bookkeeping every listener shares: a connection limit, the tasks of
//! live sessions, and the signal that tells them to end.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Live sessions of one listener.
#[derive(Debug, Clone)]
pub(crate) struct Sessions {
    token: CancellationToken,
    tracker: TaskTracker,
    slots: Arc<Semaphore>,
}

impl Sessions {
    pub(crate) fn new(max_connections: usize) -> Self {
        Self {
            token: CancellationToken::new(),
            tracker: TaskTracker::new(),
            slots: Arc::new(Semaphore::new(max_connections)),
        }
    }

    /// A connection slot, or `None` at the limit; the slot frees on drop.
    pub(crate) fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
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
