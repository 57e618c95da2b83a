//! Yielding for the next piece of work before sleeping: [`Patience`] for
//! the pool's threads and [`RuntimeWait`] for the runtime's.

use std::thread;
use std::time::{Duration, Instant};

/// Whether a thread that has run out of work yields its CPU for more before
/// it sleeps: it does while the work it waits for has been coming within
/// the yield time its caller passes in (see the module docs).
#[derive(Default)]
pub(super) struct Patience {
    /// The thread's last wait ended within the yield time: yielding is
    /// likely to find the next piece of work.
    pub(super) hot: bool,
    /// When the thread went to sleep, if it did.
    slept: Option<Instant>,
}

impl Patience {
    /// If the work has been coming fast, yields the CPU until `poll` has
    /// something, for `limit` at most; a wait in vain ends the yielding
    /// until a wait is short again.
    pub(super) fn wait<T>(
        &mut self,
        limit: Duration,
        mut poll: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        if !self.hot || limit.is_zero() {
            return None;
        }
        let start = Instant::now();
        loop {
            thread::yield_now();
            if let Some(found) = poll() {
                return Some(found);
            }
            if start.elapsed() > limit {
                self.hot = false;
                return None;
            }
        }
    }

    /// The thread goes to sleep.
    pub(super) fn sleeping(&mut self) {
        self.slept = Some(Instant::now());
    }

    /// The thread is awake again, for the work it waits for (`for_work`)
    /// or not: if that came within `limit`, yielding would have found it.
    pub(super) fn woken(&mut self, limit: Duration, for_work: bool) {
        if let Some(slept) = self.slept.take() {
            self.hot = for_work && slept.elapsed() < limit;
        }
    }
}

thread_local! {
    /// On a runtime thread: its [`Patience`] for extension threads.
    static RUNTIME_PATIENCE: std::cell::RefCell<Patience> = std::cell::RefCell::default();
    /// The thread has queued a job since it last parked.
    pub(super) static QUEUED_JOB: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// How the async runtime's threads wait for extension threads, through
/// tokio's `on_thread_park` and `on_thread_unpark` hooks.
///
/// A runtime thread that has queued a job since it last parked (a request
/// for the extension) and has nothing else to do yields its CPU for the
/// result, as a pool thread does for jobs ([`Patience`]), rather than
/// parking at once. Parking costs an `epoll_wait`, and the response that
/// ends it an `eventfd` write on the extension thread and two context
/// switches; a small response from a fast extension comes back sooner. The
/// park hook runs before tokio counts the thread as parked, so a response
/// meanwhile costs no system call, and tokio checks its queues again after
/// the hook.
///
/// While it yields, the thread does not poll sockets, so it yields only
/// while responses have been coming back fast: after a park that a response
/// (not socket I/O) ended within the yield time. Requests that stay long in
/// the extension end the yielding after one wait in vain, and a thread that
/// queued nothing (it waits for clients) parks at once.
pub(crate) struct RuntimeWait {
    /// How long a runtime thread yields for a response at most (zero:
    /// never).
    pub(super) yield_time: Duration,
    /// The runtime's metrics, once it is built: tokio's global queue, where
    /// a task woken from outside the runtime (by an extension thread) lands.
    pub(crate) metrics: std::sync::OnceLock<tokio::runtime::RuntimeMetrics>,
}

impl RuntimeWait {
    /// Waits that yield for up to `yield_time`, and never longer than
    /// [`RESPONSE_YIELD`](super::RESPONSE_YIELD) (zero: never).
    pub(crate) fn new(yield_time: Duration) -> Self {
        RuntimeWait {
            yield_time: yield_time.min(super::RESPONSE_YIELD),
            metrics: std::sync::OnceLock::new(),
        }
    }

    /// A task woken from outside the runtime is queued for it.
    fn queued(&self) -> bool {
        self.metrics
            .get()
            .is_some_and(|m| m.global_queue_depth() > 0)
    }

    /// For `on_thread_park`: after queuing a job, yields for its result
    /// while results have been coming back fast.
    pub(crate) fn parking(&self) {
        if !QUEUED_JOB.replace(false) {
            return;
        }
        RUNTIME_PATIENCE.with_borrow_mut(|p| {
            if p.wait(self.yield_time, || self.queued().then_some(()))
                .is_none()
            {
                p.sleeping();
            }
        });
    }

    /// For `on_thread_unpark`: a park for the extension that a response
    /// ended soon makes the next one worth yielding for; one that socket
    /// I/O ended does not.
    pub(crate) fn unparked(&self) {
        let queued = self.queued();
        RUNTIME_PATIENCE.with_borrow_mut(|p| p.woken(self.yield_time, queued));
    }
}
