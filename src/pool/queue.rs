//! The pool's queue and its threads: when a job wakes a sleeping thread,
//! when a thread between jobs is one too many, and the watcher that wakes
//! another thread when the queue stalls (see the parent module's docs).

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use super::kernel::{current_tid, runnable};
use super::patience::Patience;
use super::{BUSY_STALL, Job, STALL};

/// The queue and the threads, behind the pool's lock.
pub(super) struct State {
    /// Queued jobs, with the time each was queued.
    pub(super) jobs: VecDeque<(Instant, Job)>,
    /// Sleeping threads, most recently idle last.
    pub(super) idle: Vec<(usize, Thread)>,
    /// Per thread.
    pub(super) threads: Vec<Slot>,
    /// Threads woken and not yet at the queue.
    pub(super) waking: usize,
    /// Threads running a job.
    pub(super) running: usize,
    /// When a thread last took a job, and which one.
    pub(super) last_start: Instant,
    /// The thread that last took a job.
    pub(super) last_starter: usize,
    /// The watcher is checking the queue for stalls.
    pub(super) watching: bool,
    /// How many threads may run at once while the queue moves: the CPUs the
    /// work can spread over.
    pub(super) parallel: usize,
    /// Times threads yielded for a job, and went to sleep.
    #[cfg(test)]
    pub(super) yielded: u32,
    #[cfg(test)]
    pub(super) slept: u32,
}

impl State {
    /// Picks a sleeping thread to wake if the queue needs one: jobs wait,
    /// no thread is on its way, and either none runs, or the backlog may
    /// spread (the oldest job has waited [`STALL`] and fewer than
    /// `parallel` threads run), or the queue stalled: no job started for
    /// [`STALL`] while `blocked` says the running threads are blocked (not
    /// computing or waiting for a CPU), or for [`BUSY_STALL`] whatever they
    /// do. The caller unparks the thread after dropping the lock.
    pub(super) fn pick_sleeper(&mut self, now: Instant, blocked: bool) -> Option<Thread> {
        let (queued, _) = self.jobs.front()?;
        if self.waking > 0 {
            return None;
        }
        let needed = self.running == 0
            || (self.running < self.parallel && now.saturating_duration_since(*queued) >= STALL)
            || match now.saturating_duration_since(self.last_start) {
                since if since >= BUSY_STALL => true,
                since => blocked && since >= STALL,
            };
        if !needed {
            return None;
        }
        let (i, thread) = self.idle.pop()?;
        self.threads[i].woken = true;
        self.waking += 1;
        Some(thread)
    }

    /// Whether thread `me`, between jobs, may be one too many: at least
    /// `parallel` other threads run a job, and one of them started a job
    /// within [`STALL`], so they keep the queue moving without it (the
    /// caller also asks the kernel whether they compute or are blocked).
    fn excess(&self, me: usize) -> bool {
        self.running >= self.parallel
            && !self.jobs.is_empty()
            && self.last_starter != me
            && self.last_start.elapsed() < STALL
    }

    /// Thread `me` starts or stops counting as running a job: the count and
    /// its flag move together.
    fn set_working(&mut self, me: usize, working: bool) {
        if working {
            self.running += 1;
        } else {
            self.running -= 1;
        }
        self.threads[me].working = working;
    }

    /// The kernel's ids of the threads that run a job.
    fn running_tids(&self) -> Vec<u32> {
        self.threads
            .iter()
            .filter(|t| t.working)
            .filter_map(|t| t.tid)
            .collect()
    }
}

/// What the pool knows of one of its threads.
#[derive(Clone, Copy, Default)]
pub(super) struct Slot {
    /// Handed the queue since it went to sleep.
    woken: bool,
    /// Running a job.
    working: bool,
    /// The kernel's thread id, where [`runnable`] can use it.
    tid: Option<u32>,
}

/// What the pool's threads, its watcher and its handle share.
pub(super) struct Shared {
    /// The queue and the threads.
    pub(super) state: Mutex<State>,
    /// Arms the watcher.
    pub(super) watch: Condvar,
    /// How long a thread out of work yields for the next job at most.
    pub(super) yield_time: Duration,
}

impl Shared {
    /// Locks the state (a panic while locked leaves it usable).
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Thread `me`'s loop: take a job, run it, and sleep when there is
    /// none (or when it is one too many).
    pub(super) fn worker(&self, me: usize) {
        let mut st = self.lock();
        st.threads[me].tid = current_tid();
        let mut patience = Patience::default();
        loop {
            // One too many only if, as the kernel says, another running
            // thread is computing rather than blocked (on a slow upload,
            // say); where the kernel cannot be asked, the thread stays.
            let mut retire = st.excess(me);
            if retire {
                let busy;
                (st, busy) = self.any_computing(st);
                retire = busy && st.excess(me);
            }
            let next = if retire {
                // Sleep with jobs queued: the watcher wakes a thread again
                // if the ones that run stop taking them.
                if !st.watching {
                    st.watching = true;
                    self.watch.notify_one();
                }
                None
            } else {
                st.jobs.pop_front()
            };
            let next = match next {
                None if !retire && patience.hot && st.waking == 0 => {
                    let got;
                    (st, got) = self.yield_for_job(st, &mut patience);
                    got
                }
                next => next,
            };
            let Some((_, job)) = next else {
                patience.sleeping();
                #[cfg(test)]
                {
                    st.slept += 1;
                }
                st.idle.push((me, thread::current()));
                st.threads[me].woken = false;
                while !st.threads[me].woken {
                    drop(st);
                    thread::park();
                    st = self.lock();
                }
                st.waking -= 1;
                patience.woken(self.yield_time, true);
                if st.jobs.len() > 1 {
                    // Jobs came in faster than a wake-up: worth yielding for.
                    patience.hot = true;
                }
                continue;
            };
            st.set_working(me, true);
            let now = Instant::now();
            st.last_start = now;
            st.last_starter = me;
            let wake = st.pick_sleeper(now, false);
            drop(st);
            if let Some(t) = wake {
                t.unpark();
            }
            if catch_unwind(AssertUnwindSafe(job)).is_err() {
                tracing::error!("a job panicked on an extension thread; the thread goes on");
            }
            st = self.lock();
            st.set_working(me, false);
        }
    }

    /// Yields the CPU for the next job (see [`Patience::wait`]). The
    /// yielding thread counts as on its way to the queue, so no job wakes a
    /// sleeper while it yields.
    fn yield_for_job<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        patience: &mut Patience,
    ) -> (MutexGuard<'a, State>, Option<(Instant, Job)>) {
        st.waking += 1;
        drop(st);
        let got = patience.wait(self.yield_time, || {
            let mut st = self.lock();
            #[cfg(test)]
            {
                st.yielded += 1;
            }
            st.jobs.pop_front()
        });
        st = self.lock();
        st.waking -= 1;
        (st, got)
    }

    /// Asks the kernel whether a thread running a job is computing (or
    /// waiting for a CPU) rather than blocked, with the lock let go while it
    /// reads; false where the kernel cannot be asked.
    fn any_computing<'a>(&'a self, st: MutexGuard<'a, State>) -> (MutexGuard<'a, State>, bool) {
        let tids = st.running_tids();
        drop(st);
        let computing = tids.into_iter().any(runnable);
        (self.lock(), computing)
    }

    /// Thread `me` leaves its job for a bulk [`Transfer`](super::Transfer): it stops counting
    /// as running, and a queued job may take its place.
    pub(super) fn step_aside(&self, me: usize) {
        let mut st = self.lock();
        st.set_working(me, false);
        let wake = st.pick_sleeper(Instant::now(), false);
        drop(st);
        if let Some(t) = wake {
            t.unpark();
        }
    }

    /// Thread `me` is back at its job from a bulk [`Transfer`](super::Transfer).
    pub(super) fn step_back(&self, me: usize) {
        let mut st = self.lock();
        st.set_working(me, true);
    }

    /// While jobs wait behind running threads, wakes one more thread each
    /// [`STALL`] that the queue stays behind.
    pub(super) fn watcher(&self) {
        let mut st = self.lock();
        loop {
            while !st.watching {
                st = self.watch.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            st = self
                .watch
                .wait_timeout(st, STALL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if st.jobs.is_empty() || st.idle.is_empty() {
                // Nothing waits, or nobody is left to wake: a later job re-arms.
                st.watching = false;
                continue;
            }
            // Before it counts a stall, the watcher asks the kernel whether
            // the running threads are blocked or only waiting for a CPU
            // (preempted by the runtime, say); waking another thread for
            // the latter only adds a thread to the queue for the CPU (or the
            // GIL).
            let now = Instant::now();
            let stalled = now.saturating_duration_since(st.last_start) >= STALL;
            let blocked = stalled && {
                let computing;
                (st, computing) = self.any_computing(st);
                !computing
            };
            if let Some(t) = st.pick_sleeper(now, blocked) {
                drop(st);
                t.unpark();
                st = self.lock();
            }
        }
    }
}
