//! Server-wide state that requests reach: the settings, the runtime, the
//! I/O threads, and the count of requests inside extensions.
//!
//! It sits below the request layer, so that a request holds it without
//! knowing the server that made it.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

use crate::config::ServeConfig;
use crate::pool::Pool;

/// Server-wide state the callbacks reach through a request.
pub(crate) struct Shared {
    /// The settings.
    pub(crate) cfg: ServeConfig,
    /// The async runtime, for the request-body pump.
    pub(crate) rt: tokio::runtime::Handle,
    /// Threads that run asynchronous I/O and completion routines.
    pub(crate) io: Pool,
    /// Requests inside extensions (running, queued or pending).
    active: AtomicUsize,
    /// Notified when `active` falls to zero.
    idle: Notify,
    /// A worker's request-count recycling (`--recycle-requests`).
    recycle: Option<Recycle>,
}

/// Asks the supervisor for a successor once enough requests have come.
pub(crate) struct Recycle {
    /// Requests to take before asking.
    after: u64,
    /// Requests taken.
    taken: std::sync::atomic::AtomicU64,
    /// Says `recycle` to the supervisor (once).
    ask: Box<dyn Fn() + Send + Sync>,
}

impl Recycle {
    /// Calls `ask` once, at the `after`-th request.
    #[cfg_attr(windows, allow(dead_code))] // a worker's, and workers are Unix-only
    pub(crate) fn new(after: u64, ask: Box<dyn Fn() + Send + Sync>) -> Self {
        Recycle {
            after,
            taken: std::sync::atomic::AtomicU64::new(0),
            ask,
        }
    }
}

impl Shared {
    /// State for a server with these settings.
    pub(crate) fn new(cfg: ServeConfig, rt: tokio::runtime::Handle, io: Pool) -> Self {
        Shared {
            cfg,
            rt,
            io,
            active: AtomicUsize::new(0),
            idle: Notify::new(),
            recycle: None,
        }
    }

    /// With request-count recycling.
    pub(crate) fn with_recycle(mut self, recycle: Option<Recycle>) -> Self {
        self.recycle = recycle;
        self
    }

    /// A request has been handed to an extension.
    pub(crate) fn request_started(&self) {
        self.active.fetch_add(1, Ordering::AcqRel);
        if let Some(r) = &self.recycle
            && r.taken.fetch_add(1, Ordering::Relaxed) + 1 == r.after
        {
            (r.ask)();
        }
    }

    /// An extension request has finished.
    pub(crate) fn request_done(&self) {
        if self.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Requests inside extensions now.
    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Resolves once no request is inside an extension.
    pub(crate) async fn drained(&self) {
        wait_until(&self.idle, || self.active() == 0).await;
    }
}

/// Waits until `done()` holds, re-checking each time `notify` fires (the
/// future is made before the check, so no notification is missed).
pub(crate) async fn wait_until(notify: &Notify, done: impl Fn() -> bool) {
    loop {
        let notified = notify.notified();
        if done() {
            return;
        }
        notified.await;
    }
}
