//! A fixed pool of OS threads for extension code.
//!
//! `HttpExtensionProc` and I/O completion routines block and call back into
//! the host, so they never run on tokio's workers.
//!
//! Handing a job to a sleeping thread costs a futex wake and two context
//! switches, which dominate a small request on a busy machine; and threads
//! that run Python at the same time only queue on the GIL, each hand-over of
//! which is another wake. So the pool keeps as few threads running as keep
//! the queue moving (in the spirit of IIS's completion-port concurrency limit
//! and granian's on-demand blocking threads):
//!
//! - A thread that finishes a job takes the next one without sleeping,
//!   unless `parallel` other threads run, one of them has just started a
//!   job, and (on Linux, asking the kernel) one of them is computing rather
//!   than blocked: then it is one too many, and it sleeps.
//! - A job wakes a sleeping thread when no thread is running or on its way.
//!   Otherwise the running threads take it, unless the queue falls behind.
//!   One more thread is woken, and another after each further [`STALL`]:
//!   - when the oldest job has waited [`STALL`] and fewer threads run than
//!     the pool's `parallel` limit (the work is CPU-bound and can spread:
//!     the CPU count, or 1 for Python, whose GIL runs one thread at a time);
//!   - when no job has started for [`STALL`] and every running thread is
//!     blocked (on a database, or on a slow client). On Linux the kernel
//!     says whether a thread is blocked or only waiting for a CPU; a thread
//!     preempted by the runtime is not a reason to wake another;
//!   - when no job has started for [`BUSY_STALL`], whatever the running
//!     threads do, so that one long computation does not hold up every
//!     request behind it;
//!   - when a running thread enters a bulk [`Transfer`] (a large
//!     `ReadClient`): until it returns, it does not count as running.
//!
//!   A watcher thread checks while jobs wait.
//! - At most one thread is on its way at a time, and idle threads sleep in a
//!   stack, so the thread woken is the one whose caches are still warm.
//! - A thread that finds the queue empty while jobs come in fast yields its
//!   CPU (`sched_yield`) for up to the pool's yield time (`--yield-us`,
//!   [`YIELD_TIME`] by default; zero: never) before it sleeps, and
//!   takes a job queued meanwhile without a wake-up. Sleeping costs a futex
//!   wait, and the job that ends it a futex wake on the runtime's thread and
//!   two context switches, often on a CPU that has gone idle and must be
//!   woken itself. A yield lets every other runnable thread run first (the
//!   runtime that feeds the pool, the client on the same machine), so it
//!   takes no CPU anyone else wants; on an idle CPU it shows as CPU time.
//!   Jobs come in fast when the thread's last wait ended within the
//!   yield time, or it was woken to more than one queued job; a wait
//!   in vain ends that, so at a low request rate threads sleep at once (see
//!   [`Patience`](patience::Patience)). While a thread yields, it counts as on its way, and no
//!   job wakes another.
//!
//! The runtime's threads wait the same way for the pool ([`RuntimeWait`]),
//! but for [`RESPONSE_YIELD`] at most.
//!
//! No thread spins on the CPU: on a two-core machine a spinning thread
//! takes the CPU from the runtime that feeds it (measured, BENCHMARKS.md
//! "Measured and not kept").
mod kernel;
mod patience;
mod queue;
#[cfg(test)]
mod tests;

use std::cell::OnceCell;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub(crate) use kernel::cpu_share;
use patience::QUEUED_JOB;
pub(crate) use patience::RuntimeWait;
use queue::{Shared, Slot, State};

/// How far the queue may fall behind (the oldest job waiting, or no job
/// starting) before another thread is woken.
pub(crate) const STALL: Duration = Duration::from_millis(1);

/// How long running threads that are not blocked (computing, or waiting for
/// a CPU) may keep the queue from moving before another thread is woken
/// anyway: a long computation does not hold up every request behind it.
pub(crate) const BUSY_STALL: Duration = Duration::from_millis(10);

/// How long a thread out of work goes on yielding for more at most, unless
/// `--yield-us` says otherwise: longer than a request's round trip on a
/// loopback connection, and short enough that when other threads keep the
/// CPU for whole time slices, a wake-up (which may preempt them) is the
/// quicker way back.
pub(crate) const YIELD_TIME: Duration = Duration::from_micros(100);

/// How long a runtime thread yields for an extension's response at most
/// (less when `--yield-us` says so): about what parking costs it and the
/// extension thread that wakes it (an `epoll_wait`, an `eventfd` write, two
/// context switches). A response that takes longer (an app that computes,
/// or waits for the GIL behind other requests) is cheaper to sleep through:
/// yielding up to [`YIELD_TIME`] for each cost a one-worker Python host about
/// 50 `sched_yield` calls and 10 µs of CPU per request on `work`, and two
/// workers on two CPUs took that CPU from each other's Python.
pub(crate) const RESPONSE_YIELD: Duration = Duration::from_micros(20);

/// A `ReadClient` of at least this many bytes is a bulk [`Transfer`].
pub(crate) const BULK: usize = 32 * 1024;

type Job = Box<dyn FnOnce() + Send + 'static>;

thread_local! {
    /// On a pool thread: its pool and its index there.
    static SLOT: OnceCell<(Arc<Shared>, usize)> = const { OnceCell::new() };
}

/// A bulk transfer of request bytes to an extension, for as long as it lives.
///
/// Copying a large request body out of the host (and waiting for the client
/// to send it) runs without the extension's own locks: pyisapie lets go of
/// Python's GIL around `ReadClient`. A pool thread in a bulk transfer so
/// does not count against `parallel`, and a queued job may start on another
/// thread meanwhile: a Python app that takes uploads copies one body while
/// it runs Python for another. Small reads, over in a few microseconds, are
/// not worth the hand-over and count as running. `WriteClient` is not a
/// transfer: stepping aside there let Python make the next large response
/// before the client took the last, which cost memory and CPU (measured,
/// BENCHMARKS.md, "Measured and not kept").
#[must_use = "the transfer ends when the value is dropped"]
pub(crate) struct Transfer(Option<(Arc<Shared>, usize)>);

impl Transfer {
    /// Starts a transfer of `len` bytes on the calling thread: a bulk one
    /// (at least [`BULK`] bytes, on a pool thread running a job) steps
    /// aside from its pool's count of running threads until dropped.
    pub(crate) fn begin(len: usize) -> Transfer {
        if len < BULK {
            return Transfer(None);
        }
        let slot = SLOT.with(|slot| slot.get().cloned());
        if let Some((shared, me)) = &slot {
            shared.step_aside(*me);
        }
        Transfer(slot)
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        if let Some((shared, me)) = &self.0 {
            shared.step_back(*me);
        }
    }
}

/// A named pool of threads fed through an unbounded queue.
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    /// Starts `threads` threads named `name-N`, and the queue's watcher. A
    /// backlog spreads over at most `parallel` running threads; threads
    /// beyond that are woken only when every running one is blocked. A
    /// thread out of work yields for the next job for up to `yield_time`
    /// (zero: never; see [`Patience`](patience::Patience)).
    pub(crate) fn new(
        name: &str,
        threads: usize,
        parallel: usize,
        yield_time: Duration,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                idle: Vec::with_capacity(threads),
                threads: vec![Slot::default(); threads],
                waking: 0,
                running: 0,
                last_start: Instant::now(),
                last_starter: usize::MAX,
                watching: false,
                parallel: parallel.max(1),
                #[cfg(test)]
                yielded: 0,
                #[cfg(test)]
                slept: 0,
            }),
            watch: Condvar::new(),
            yield_time,
        });
        for i in 0..threads {
            let shared = shared.clone();
            thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    let mine = (shared.clone(), i);
                    SLOT.with(move |slot| {
                        let _ = slot.set(mine);
                    });
                    shared.worker(i)
                })?;
        }
        let watcher = shared.clone();
        thread::Builder::new()
            .name(format!("{name}-watch"))
            .spawn(move || watcher.watcher())?;
        Ok(Pool { shared })
    }

    /// Queues a job; it runs when a thread is free.
    pub(crate) fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        QUEUED_JOB.set(true);
        let (wake, arm) = {
            let mut st = self.shared.lock();
            let now = Instant::now();
            st.jobs.push_back((now, Box::new(job)));
            let wake = st.pick_sleeper(now, false);
            // The job waits behind running threads: have the watcher make
            // sure they do not all stay blocked.
            let arm = wake.is_none() && !st.watching && !st.idle.is_empty();
            if arm {
                st.watching = true;
            }
            (wake, arm)
        };
        if let Some(t) = wake {
            t.unpark();
        }
        if arm {
            self.shared.watch.notify_one();
        }
    }
}
