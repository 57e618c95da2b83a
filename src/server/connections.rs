//! The open connections: the set the sweeper walks and shutdown drains,
//! and, in a web garden, the count the other workers balance against
//! ([`super::balance`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::balance::{Garden, Seat};
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
    /// The pool's table, in a worker of a web garden.
    garden: Option<Garden>,
    /// This worker's seat in it, while it accepts. Taken with `open`
    /// held, so that counts are published in order.
    seat: Mutex<Option<Seat>>,
}

impl Connections {
    /// The connections of a worker that balances them against the other
    /// workers of `garden` (it takes its seat with [`Self::join_garden`]).
    pub(super) fn in_garden(garden: Garden) -> Self {
        Connections {
            garden: Some(garden),
            ..Self::default()
        }
    }

    /// Starts (or starts again) taking part in the balancing: this
    /// process accepts. Without a seat free it takes no part, and says so.
    pub(super) fn join_garden(&self) {
        let Some(garden) = self.garden else { return };
        let open = self.lock();
        let mut seat = self.seat.lock().unwrap_or_else(|e| e.into_inner());
        if seat.is_some() {
            return;
        }
        *seat = garden.join(std::process::id());
        match &*seat {
            Some(s) => s.publish(open.len()),
            None => tracing::warn!(
                "every seat of the connection-balancing table is taken: this worker accepts without balancing"
            ),
        }
    }

    /// Stops taking part: this process no longer accepts (it drains, or
    /// its `accept`s fail).
    pub(super) fn leave_garden(&self) {
        let _open = self.lock();
        self.seat.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Whether this worker holds more than its share of the pool's
    /// connections, and should let the others accept first.
    pub(super) fn crowded(&self) -> bool {
        self.garden.is_some()
            && self
                .seat
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .is_some_and(Seat::crowded)
    }

    /// Publishes `open`, the number of connections now open.
    fn publish(&self, open: usize) {
        if self.garden.is_none() {
            return;
        }
        if let Some(seat) = &*self.seat.lock().unwrap_or_else(|e| e.into_inner()) {
            seat.publish(open);
        }
    }

    /// The open connections.
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnSignals>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new connection from `remote`: its id and signals.
    pub(super) fn open(&self, remote: SocketAddr) -> (u64, Arc<ConnSignals>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let signals = Arc::new(ConnSignals::new(remote));
        {
            let mut open = self.lock();
            open.insert(id, signals.clone());
            self.publish(open.len());
        }
        if self.closing.load(Ordering::Acquire) {
            signals.request_drain();
        }
        (id, signals)
    }

    /// The connection's task has ended.
    pub(super) fn close(&self, id: u64) {
        let mut open = self.lock();
        open.remove(&id);
        self.publish(open.len());
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
