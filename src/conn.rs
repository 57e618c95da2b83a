//! One connection's signals: what its requests, and the server's
//! sweeper, tell the task that drives it (close, abort, the client gone),
//! and the activity the timeouts are measured on.
//!
//! It sits below the request layer: a request signals its connection
//! without knowing the server's connection task.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::Waker;
use std::time::Duration;

/// What one connection's requests, and the server's sweeper, tell its task.
///
/// The task polls hyper's connection and, on each wake, two flags; the
/// timeouts are checked by one server-wide sweeper (`server::sweeper`) rather than
/// by a timer in every connection.
pub(crate) struct ConnSignals {
    /// The client, for logs.
    pub(crate) remote: SocketAddr,
    close: AtomicBool,
    /// The server drains: close once no request is in flight and the next
    /// one (if it comes soon) has been answered.
    drain: AtomicBool,
    gone: AtomicBool,
    /// Drop the connection now: wakes every thread blocked on this client.
    abort: AtomicBool,
    /// The connection's task, woken when a flag is set. Kept across wakes
    /// (unlike an `AtomicWaker`'s), so the task stores it only when it
    /// changes, not on every poll; the lock is taken only then and to wake.
    task: Mutex<Option<Waker>>,
    /// Threads blocked until this client sends or takes bytes.
    client_waits: AtomicUsize,
    in_flight: AtomicUsize,
    /// A byte moved (or a request started or ended) since the sweeper last
    /// looked: I/O sets a flag rather than reading the clock.
    active: AtomicBool,
    /// The sweeper's time (ms) when it last saw `active`.
    quiet_since: AtomicU64,
    /// Bytes of a request head arrived between requests, and the head is
    /// not complete yet (for `--header-timeout`).
    head_started: AtomicBool,
    /// Requests started: tells one head from the next.
    heads: AtomicU64,
    /// The head the sweeper is timing (a `heads` value), and since when
    /// (its clock, ms; `u64::MAX` when it times none).
    head_seen: AtomicU64,
    head_since: AtomicU64,
}

impl ConnSignals {
    /// The signals of a new connection from `remote`.
    pub(crate) fn new(remote: SocketAddr) -> Self {
        ConnSignals {
            remote,
            close: AtomicBool::new(false),
            drain: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            task: Mutex::new(None),
            client_waits: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            // The sweeper's first look stamps the connection.
            active: AtomicBool::new(true),
            quiet_since: AtomicU64::new(0),
            head_started: AtomicBool::new(false),
            heads: AtomicU64::new(0),
            head_seen: AtomicU64::new(0),
            head_since: AtomicU64::new(u64::MAX),
        }
    }

    /// Close the connection once the current response is done.
    pub(crate) fn request_close(&self) {
        if !self.close.swap(true, Ordering::AcqRel) {
            self.wake_task();
        }
    }

    /// Drops the connection at once (`HSE_REQ_ABORTIVE_CLOSE`, a stalled
    /// client): a `ReadClient` or `WriteClient` blocked on it fails.
    pub(crate) fn hard_abort(&self) {
        self.close.store(true, Ordering::Release);
        self.abort.store(true, Ordering::Release);
        self.wake_task();
    }

    /// Has the connection been dropped ([`Self::hard_abort`])?
    pub(crate) fn is_aborted(&self) -> bool {
        self.abort.load(Ordering::Acquire)
    }

    fn wake_task(&self) {
        if let Some(w) = &*self.task.lock().unwrap_or_else(|e| e.into_inner()) {
            w.wake_by_ref();
        }
    }

    /// Stores the task's waker if it is not the one stored already (`seen`
    /// is the task's copy of that one).
    pub(crate) fn register_task(&self, seen: &mut Option<Waker>, waker: &Waker) {
        if !seen.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *seen = Some(waker.clone());
            *self.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(waker.clone());
        }
    }

    /// Runs `f`, which blocks until the client moves, counted for `--io-timeout`.
    pub(crate) fn waiting_on_client<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Done<'a>(&'a AtomicUsize);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.client_waits.fetch_add(1, Ordering::AcqRel);
        let _done = Done(&self.client_waits);
        f()
    }

    /// Has closing been asked for?
    pub(crate) fn close_requested(&self) -> bool {
        self.close.load(Ordering::Acquire)
    }

    /// The server drains (shutdown, a recycled worker): a response under
    /// way finishes as it began; the next request, if it comes within a
    /// short linger, is answered with `Connection: close`; then the
    /// connection closes. A client already sending its next request (or
    /// its first, on a connection just accepted) gets an answer instead of
    /// a closed connection.
    pub(crate) fn request_drain(&self) {
        if !self.drain.swap(true, Ordering::AcqRel) {
            self.wake_task();
        }
    }

    /// See [`ConnSignals::request_drain`].
    pub(crate) fn drain_requested(&self) -> bool {
        self.drain.load(Ordering::Acquire)
    }

    /// The client is gone.
    pub(crate) fn mark_gone(&self) {
        self.gone.store(true, Ordering::Release);
    }

    /// Is the client gone?
    pub(crate) fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// A byte moved: the connection is not idle.
    pub(crate) fn touch(&self) {
        // Read first: a store on every I/O would keep the line bouncing
        // between the runtime and the extension threads.
        if !self.active.load(Ordering::Relaxed) {
            self.active.store(true, Ordering::Relaxed);
        }
    }

    /// Bytes arrived: between requests, they start a head.
    pub(crate) fn received(&self) {
        self.touch();
        if self.between_requests() && !self.head_started.load(Ordering::Relaxed) {
            self.head_started.store(true, Ordering::Relaxed);
        }
    }

    /// A request head arrived on this connection.
    pub(crate) fn request_started(&self) {
        self.heads.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        if self.head_started.load(Ordering::Relaxed) {
            self.head_started.store(false, Ordering::Relaxed);
        }
        self.touch();
    }

    /// A request on this connection has finished.
    pub(crate) fn request_ended(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.touch();
    }

    /// How long the connection has been quiet, as the sweeper sees it at
    /// `now_ms` (its clock): never more than the truth, and at most one
    /// sweep less.
    pub(crate) fn quiet_for(&self, now_ms: u64) -> Duration {
        if self.active.swap(false, Ordering::Relaxed) {
            self.quiet_since.store(now_ms, Ordering::Relaxed);
        }
        Duration::from_millis(now_ms.saturating_sub(self.quiet_since.load(Ordering::Relaxed)))
    }

    /// How long the head in progress has taken, as the sweeper sees it at
    /// `now_ms`: never more than the truth, and at most one sweep less;
    /// `None` when no head is in progress.
    pub(crate) fn head_for(&self, now_ms: u64) -> Option<Duration> {
        if !self.head_started.load(Ordering::Relaxed) {
            self.head_since.store(u64::MAX, Ordering::Relaxed);
            return None;
        }
        let head = self.heads.load(Ordering::Relaxed);
        if self.head_since.load(Ordering::Relaxed) == u64::MAX
            || self.head_seen.load(Ordering::Relaxed) != head
        {
            // A head the sweeper has not timed yet.
            self.head_seen.store(head, Ordering::Relaxed);
            self.head_since.store(now_ms, Ordering::Relaxed);
        }
        Some(Duration::from_millis(
            now_ms.saturating_sub(self.head_since.load(Ordering::Relaxed)),
        ))
    }

    /// Is a thread blocked until this client sends or takes bytes?
    pub(crate) fn client_waited_on(&self) -> bool {
        self.client_waits.load(Ordering::Acquire) > 0
    }

    /// Is no request in flight?
    pub(crate) fn between_requests(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::ConnSignals;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_connection_task_is_woken_by_every_signal_after_one_registration() {
        let signals = ConnSignals::new(([127, 0, 0, 1], 1).into());
        let count = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut seen = None;
        signals.register_task(&mut seen, &waker);
        // Later polls with the same waker store nothing; the stored one
        // must survive each wake (an `AtomicWaker` gives it up).
        signals.register_task(&mut seen, &waker);
        signals.request_close();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        signals.register_task(&mut seen, &waker);
        signals.hard_abort();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        // A second close request wakes no one: the flag was already set.
        signals.request_close();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
        // A new waker (the task moved) replaces the stored one.
        let other = Arc::new(CountingWaker(AtomicUsize::new(0)));
        signals.register_task(&mut seen, &Waker::from(other.clone()));
        signals.hard_abort();
        assert_eq!(other.0.load(Ordering::SeqCst), 1);
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
    }
}
