//! The open connections: the set the sweeper walks and shutdown drains.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::conn::ConnSignals;
use crate::shared::wait_until;

/// The open connections, for the sweeper and for shutdown.
#[derive(Default)]
pub(super) struct Connections {
    open: Mutex<HashMap<u64, Arc<ConnSignals>>>,
    next: AtomicU64,
    /// Shutting down: new connections close after their first response.
    closing: AtomicBool,
    /// The last connection closed.
    empty: Notify,
}

impl Connections {
    /// The open connections.
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnSignals>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new connection from `remote`: its id and signals.
    pub(super) fn open(&self, remote: SocketAddr) -> (u64, Arc<ConnSignals>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let signals = Arc::new(ConnSignals::new(remote));
        self.lock().insert(id, signals.clone());
        if self.closing.load(Ordering::Acquire) {
            signals.request_drain();
        }
        (id, signals)
    }

    /// The connection's task has ended.
    pub(super) fn close(&self, id: u64) {
        let mut open = self.lock();
        open.remove(&id);
        if open.is_empty() {
            self.empty.notify_waiters();
        }
    }

    /// How many are open.
    pub(super) fn count(&self) -> usize {
        self.lock().len()
    }

    /// Every connection closes once its current response is done (see
    /// [`ConnSignals::request_drain`]).
    pub(super) fn shut_down(&self) {
        self.closing.store(true, Ordering::Release);
        for s in self.lock().values() {
            s.request_drain();
        }
    }

    /// Resolves once none is open.
    pub(super) async fn drained(&self) {
        wait_until(&self.empty, || self.count() == 0).await;
    }
}
