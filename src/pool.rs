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
//!   [`Patience`]). While a thread yields, it counts as on its way, and no
//!   job wakes another.
//!
//! The runtime's threads wait the same way for the pool ([`RuntimeWait`]).
//!
//! No thread spins on the CPU: on a two-core machine a spinning thread
//! takes the CPU from the runtime that feeds it (measured, BENCHMARKS.md
//! sessions 2 and 3).

use std::cell::OnceCell;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

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

/// A `ReadClient` of at least this many bytes is a bulk [`Transfer`].
pub(crate) const BULK: usize = 32 * 1024;

type Job = Box<dyn FnOnce() + Send + 'static>;

thread_local! {
    /// On a pool thread: its pool and its index there.
    static SLOT: OnceCell<(Arc<Shared>, usize)> = const { OnceCell::new() };
}

struct State {
    /// Queued jobs, with the time each was queued.
    jobs: VecDeque<(Instant, Job)>,
    /// Sleeping threads, most recently idle last.
    idle: Vec<(usize, Thread)>,
    /// Per thread.
    threads: Vec<Slot>,
    /// Threads woken and not yet at the queue.
    waking: usize,
    /// Threads running a job.
    running: usize,
    /// When a thread last took a job, and which one.
    last_start: Instant,
    last_starter: usize,
    /// The watcher is checking the queue for stalls.
    watching: bool,
    /// How many threads may run at once while the queue moves: the CPUs the
    /// work can spread over.
    parallel: usize,
    /// Times threads yielded for a job, and went to sleep.
    #[cfg(test)]
    yielded: u32,
    #[cfg(test)]
    slept: u32,
}

impl State {
    /// Picks a sleeping thread to wake if the queue needs one: jobs wait,
    /// no thread is on its way, and either none runs, or the backlog may
    /// spread (the oldest job has waited [`STALL`] and fewer than
    /// `parallel` threads run), or the queue stalled: no job started for
    /// [`STALL`] while `blocked` says the running threads are blocked (not
    /// computing or waiting for a CPU), or for [`BUSY_STALL`] whatever they
    /// do. The caller unparks the thread after dropping the lock.
    fn pick_sleeper(&mut self, now: Instant, blocked: bool) -> Option<Thread> {
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
struct Slot {
    /// Handed the queue since it went to sleep.
    woken: bool,
    /// Running a job.
    working: bool,
    /// The kernel's thread id, where [`runnable`] can use it.
    tid: Option<u32>,
}

struct Shared {
    state: Mutex<State>,
    /// Arms the watcher.
    watch: Condvar,
    /// How long a thread out of work yields for the next job at most.
    yield_time: Duration,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn worker(&self, me: usize) {
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

    /// Thread `me` leaves its job for a bulk [`Transfer`]: it stops counting
    /// as running, and a queued job may take its place.
    fn step_aside(&self, me: usize) {
        let mut st = self.lock();
        st.set_working(me, false);
        let wake = st.pick_sleeper(Instant::now(), false);
        drop(st);
        if let Some(t) = wake {
            t.unpark();
        }
    }

    /// Thread `me` is back at its job from a bulk [`Transfer`].
    fn step_back(&self, me: usize) {
        let mut st = self.lock();
        st.set_working(me, true);
    }

    /// While jobs wait behind running threads, wakes one more thread each
    /// [`STALL`] that the queue stays behind.
    fn watcher(&self) {
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

/// The kernel's id of the calling thread (Linux), from `/proc/thread-self`.
fn current_tid() -> Option<u32> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Whether thread `tid` of this process is running or waiting for a CPU
/// (state `R` in `/proc/self/task/TID/stat`), rather than blocked.
fn runnable(tid: u32) -> bool {
    let Ok(stat) = std::fs::read(format!("/proc/self/task/{tid}/stat")) else {
        return false;
    };
    // "tid (comm) S ...": the name may hold spaces and parentheses.
    let after_name = stat.iter().rposition(|&b| b == b')').map_or(0, |i| i + 1);
    stat[after_name..].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'R')
}

/// The CPUs this process may use: the default `parallel` for work that can
/// spread.
pub(crate) fn cpus() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// Whether a thread that has run out of work yields its CPU for more before
/// it sleeps: it does while the work it waits for has been coming within
/// the yield time its caller passes in (see the module docs).
#[derive(Default)]
struct Patience {
    /// The thread's last wait ended within the yield time: yielding is
    /// likely to find the next piece of work.
    hot: bool,
    /// When the thread went to sleep, if it did.
    slept: Option<Instant>,
}

impl Patience {
    /// If the work has been coming fast, yields the CPU until `poll` has
    /// something, for `limit` at most; a wait in vain ends the yielding
    /// until a wait is short again.
    fn wait<T>(&mut self, limit: Duration, mut poll: impl FnMut() -> Option<T>) -> Option<T> {
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
    fn sleeping(&mut self) {
        self.slept = Some(Instant::now());
    }

    /// The thread is awake again, for the work it waits for (`for_work`)
    /// or not: if that came within `limit`, yielding would have found it.
    fn woken(&mut self, limit: Duration, for_work: bool) {
        if let Some(slept) = self.slept.take() {
            self.hot = for_work && slept.elapsed() < limit;
        }
    }
}

thread_local! {
    /// On a runtime thread: its [`Patience`] for extension threads.
    static RUNTIME_PATIENCE: std::cell::RefCell<Patience> = std::cell::RefCell::default();
    /// The thread has queued a job since it last parked.
    static QUEUED_JOB: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
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
    yield_time: Duration,
    /// The runtime's metrics, once it is built: tokio's global queue, where
    /// a task woken from outside the runtime (by an extension thread) lands.
    pub(crate) metrics: std::sync::OnceLock<tokio::runtime::RuntimeMetrics>,
}

impl RuntimeWait {
    pub(crate) fn new(yield_time: Duration) -> Self {
        RuntimeWait {
            yield_time,
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
/// BENCHMARKS.md session 6).
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
    /// (zero: never; see [`Patience`]).
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn runs_every_job_and_survives_a_panic() {
        let pool = Pool::new("test-pool", 3, 2, YIELD_TIME).unwrap();
        let (tx, rx) = mpsc::channel();
        pool.spawn(|| panic!("boom"));
        for i in 0..100 {
            let tx = tx.clone();
            pool.spawn(move || tx.send(i).unwrap());
        }
        let mut got: Vec<i32> = (0..100).map(|_| rx.recv().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }

    /// Waits until all of `pool`'s threads sleep.
    fn wait_all_asleep(pool: &Pool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let st = pool.shared.lock();
            if st.idle.len() == st.threads.len() {
                return;
            }
            drop(st);
            assert!(Instant::now() < deadline, "the pool's threads never slept");
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Queues a job and waits for it to run, after a pause well past
    /// [`YIELD_TIME`] when `pause`.
    fn one_job(pool: &Pool, pause: bool) {
        if pause {
            wait_all_asleep(pool);
            thread::sleep(YIELD_TIME * 20);
        }
        let (tx, rx) = mpsc::channel();
        pool.spawn(move || tx.send(()).unwrap());
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn jobs_at_a_low_rate_find_the_thread_asleep_and_it_never_yields() {
        let pool = Pool::new("test-slow", 1, 1, YIELD_TIME).unwrap();
        for _ in 0..20 {
            one_job(&pool, true);
        }
        wait_all_asleep(&pool);
        assert_eq!(
            pool.shared.lock().yielded,
            0,
            "a lone job is not worth yielding for"
        );
    }

    #[test]
    fn jobs_back_to_back_are_taken_while_the_thread_yields() {
        // One job at a time, each queued as soon as the last has run (a
        // client with one connection): the thread's sleeps are short, so it
        // yields for the next job instead, and most jobs find it awake.
        let pool = Pool::new("test-serial", 1, 1, YIELD_TIME).unwrap();
        let jobs = 200;
        for _ in 0..jobs {
            one_job(&pool, false);
        }
        let st = pool.shared.lock();
        assert!(
            st.slept < jobs / 2,
            "the thread slept {} times for {jobs} jobs queued back to back",
            st.slept
        );
    }

    #[test]
    fn a_pool_with_no_yield_time_never_yields() {
        let pool = Pool::new("test-noyield", 1, 1, Duration::ZERO).unwrap();
        for _ in 0..50 {
            one_job(&pool, false);
        }
        wait_all_asleep(&pool);
        assert_eq!(pool.shared.lock().yielded, 0);
    }

    #[test]
    fn patience_yields_only_after_a_short_wait_for_work() {
        let mut p = Patience::default();
        let mut polls = 0;
        let mut poll = || {
            polls += 1;
            Some(())
        };
        assert!(
            p.wait(YIELD_TIME, &mut poll).is_none(),
            "not before any wait"
        );
        assert_eq!(polls, 0);
        // Woken soon, but not for the work it waits for (socket I/O on a
        // runtime thread): no reason to yield.
        p.sleeping();
        p.woken(YIELD_TIME, false);
        assert!(p.wait(YIELD_TIME, || Some(())).is_none());
        // Woken soon for work: the next wait yields until the work comes.
        p.sleeping();
        p.woken(YIELD_TIME, true);
        assert_eq!(
            p.wait(YIELD_TIME, || {
                polls += 1;
                (polls == 3).then_some(polls)
            }),
            Some(3)
        );
        // A wait in vain lasts YIELD_TIME and ends the yielding.
        let start = Instant::now();
        assert!(p.wait(YIELD_TIME, || None::<()>).is_none());
        assert!(start.elapsed() >= YIELD_TIME);
        assert!(
            p.wait(YIELD_TIME, || Some(())).is_none(),
            "not after a wait in vain"
        );
        // A long sleep, even for work, does not start it again.
        p.sleeping();
        thread::sleep(YIELD_TIME * 2);
        p.woken(YIELD_TIME, true);
        assert!(!p.hot);
        // A limit of zero never yields.
        p.sleeping();
        p.woken(Duration::ZERO, true);
        assert!(p.wait(Duration::ZERO, || Some(())).is_none());
    }

    #[test]
    fn a_thread_woken_for_a_burst_yields_for_more_then_sleeps() {
        // Three jobs already queued when the thread wakes: jobs come faster
        // than a wake-up, so it yields before it sleeps; none comes within
        // YIELD_TIME, so it sleeps.
        let pool = Pool::new("test-burst", 1, 1, YIELD_TIME).unwrap();
        wait_all_asleep(&pool);
        let (tx, rx) = mpsc::channel();
        let wake = {
            let mut st = pool.shared.lock();
            for i in 0..3 {
                let tx = tx.clone();
                st.jobs
                    .push_back((Instant::now(), Box::new(move || tx.send(i).unwrap())));
            }
            st.pick_sleeper(Instant::now(), false)
        };
        wake.expect("no thread runs: the first job wakes one")
            .unpark();
        for i in 0..3 {
            assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), i);
        }
        wait_all_asleep(&pool);
        let yielded = pool.shared.lock().yielded;
        assert!(yielded > 0, "a thread woken for a burst yields for more");
        // Back to a low rate: the wait was in vain, and each sleep is long,
        // so the thread sleeps at once again.
        for _ in 0..10 {
            one_job(&pool, true);
        }
        let more = pool.shared.lock().yielded - yielded;
        assert_eq!(more, 0, "yielded {more} more times for ten lone jobs");
    }

    #[test]
    fn blocked_threads_do_not_hold_up_the_queue() {
        // Three jobs block one after another: each stalls the queue, so
        // the pool wakes another thread for the next, and the last thread
        // runs the jobs queued behind them. This holds past the `parallel`
        // limit, which counts threads that keep the queue moving.
        let pool = Pool::new("test-block", 4, 1, YIELD_TIME).unwrap();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let (started_tx, started_rx) = mpsc::channel();
        for _ in 0..3 {
            let (release_rx, started_tx) = (release_rx.clone(), started_tx.clone());
            pool.spawn(move || {
                started_tx.send(()).unwrap();
                let _ = release_rx.lock().unwrap().recv();
            });
        }
        for _ in 0..3 {
            started_rx
                .recv_timeout(Duration::from_secs(5))
                .expect("three blocking jobs run at once on a four-thread pool");
        }
        let (tx, rx) = mpsc::channel();
        for i in 0..50 {
            let tx = tx.clone();
            pool.spawn(move || tx.send(i).unwrap());
        }
        for _ in 0..50 {
            rx.recv_timeout(Duration::from_secs(5))
                .expect("the free thread runs the queued jobs");
        }
        drop(release_tx);
    }

    /// Queues `jobs` jobs that each compute for `each` without blocking, and
    /// returns how many of them started while another was running.
    fn overlapping_starts(pool: &Pool, jobs: usize, each: Duration) -> usize {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let busy = Arc::new(AtomicUsize::new(0));
        let overlapped = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        for _ in 0..jobs {
            let (busy, overlapped, tx) = (busy.clone(), overlapped.clone(), tx.clone());
            pool.spawn(move || {
                if busy.fetch_add(1, SeqCst) > 0 {
                    overlapped.fetch_add(1, SeqCst);
                }
                let start = Instant::now();
                while start.elapsed() < each {
                    std::hint::spin_loop();
                }
                busy.fetch_sub(1, SeqCst);
                tx.send(()).unwrap();
            });
        }
        for _ in 0..jobs {
            rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        overlapped.load(SeqCst)
    }

    #[test]
    fn a_backlog_of_cpu_bound_jobs_spreads_up_to_the_parallel_limit() {
        // Jobs that compute for 0.5 ms each, never blocking: one starts
        // every 0.5 ms, so nothing stalls, but the queue falls behind, and
        // the pool runs more than one at a time when `parallel` allows.
        let pool = Pool::new("test-cpu", 4, 2, YIELD_TIME).unwrap();
        assert!(
            overlapping_starts(&pool, 40, Duration::from_micros(500)) > 0,
            "CPU-bound jobs ran one at a time"
        );
    }

    #[test]
    fn a_backlog_stays_on_one_thread_when_parallel_is_one() {
        // The same backlog with `parallel` 1 (a Python app): the queue keeps
        // moving, so no second thread joins. A thread preempted for over
        // BUSY_STALL (or, where the kernel cannot be asked, over STALL) lets
        // one in for a job or two, which a loaded machine does now and then;
        // with no limit nearly every job overlaps another.
        let pool = Pool::new("test-one", 4, 1, YIELD_TIME).unwrap();
        let overlapped = overlapping_starts(&pool, 200, Duration::from_micros(200));
        assert!(
            overlapped < 100,
            "{overlapped} of 200 jobs ran beside another with parallel = 1"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_tells_a_running_thread_from_a_blocked_one() {
        let me = current_tid().expect("a thread id on Linux");
        assert!(runnable(me), "the calling thread runs");
        let (tx, rx) = mpsc::channel();
        let (release, wait) = mpsc::channel::<()>();
        let sleeper = thread::spawn(move || {
            tx.send(current_tid().unwrap()).unwrap();
            let _ = wait.recv();
        });
        let tid = rx.recv().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while runnable(tid) {
            assert!(
                Instant::now() < deadline,
                "a thread blocked on a channel stays runnable"
            );
            thread::sleep(Duration::from_millis(1));
        }
        drop(release);
        sleeper.join().unwrap();
        assert!(!runnable(u32::MAX), "no such thread");
    }

    #[test]
    fn a_long_computation_does_not_hold_up_the_queue() {
        // With `parallel` 1, one job that computes for 300 ms: the jobs
        // queued behind it get another thread after BUSY_STALL rather than
        // waiting for it.
        let pool = Pool::new("test-long", 4, 1, YIELD_TIME).unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        pool.spawn(move || {
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(300) {
                std::hint::spin_loop();
            }
            done_tx.send(()).unwrap();
        });
        thread::sleep(Duration::from_millis(5));
        let (tx, rx) = mpsc::channel();
        pool.spawn(move || tx.send(()).unwrap());
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(
            done_rx.try_recv().is_err(),
            "the short job waited for the long one to finish"
        );
        done_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn a_bulk_transfer_steps_aside_for_queued_jobs() {
        // With `parallel` 1, a job in a bulk transfer no longer counts as
        // running, and a job queued behind it is handed a thread at once;
        // a small transfer changes nothing.
        let pool = Pool::new("test-bulk", 4, 1, YIELD_TIME).unwrap();
        let shared = pool.shared.clone();
        while shared.lock().idle.len() < 4 {
            thread::sleep(Duration::from_millis(1));
        }
        let (queued_tx, queued_rx) = mpsc::channel::<()>();
        let (seen_tx, seen_rx) = mpsc::channel();
        pool.spawn(move || {
            queued_rx.recv().unwrap();
            let running = || shared.lock().running;
            let small = Transfer::begin(BULK - 1);
            let during_small = running();
            drop(small);
            let bulk = Transfer::begin(BULK);
            let during_bulk = running();
            let handed = {
                let st = shared.lock();
                st.waking > 0 || st.jobs.is_empty()
            };
            drop(bulk);
            let after = running();
            let seen = (during_small, during_bulk, handed, after);
            seen_tx.send(seen).unwrap();
        });
        let (tx, rx) = mpsc::channel();
        pool.spawn(move || tx.send(()).unwrap());
        queued_tx.send(()).unwrap();
        let (small, bulk, handed, after) = seen_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(small, 1, "a small transfer still counts as running");
        assert_eq!(bulk, 0, "a bulk transfer does not count as running");
        assert!(
            handed,
            "the queued job is handed a thread during the transfer"
        );
        assert!(after >= 1, "the job counts as running again after it");
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn short_jobs_stay_on_few_threads() {
        // A burst of short jobs is served without waking the whole pool.
        let pool = Pool::new("test-few", 32, 2, YIELD_TIME).unwrap();
        let (tx, rx) = mpsc::channel();
        for _ in 0..2000 {
            let tx = tx.clone();
            pool.spawn(move || tx.send(thread::current().id()).unwrap());
        }
        let mut threads: Vec<_> = (0..2000).map(|_| rx.recv().unwrap()).collect();
        threads.sort_unstable_by_key(|id| format!("{id:?}"));
        threads.dedup();
        assert!(
            threads.len() < 32,
            "2000 short jobs woke all {} threads",
            threads.len()
        );
    }
}
