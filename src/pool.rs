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
//! - A thread that finishes a job takes the next one without sleeping.
//! - A job wakes a sleeping thread when no thread is running or on its way.
//!   Otherwise the running threads take it, unless the queue falls behind:
//!   when the oldest job has waited [`STALL`] and fewer threads run than
//!   there are CPUs (the work is CPU-bound and can spread), or when no job
//!   has started for [`STALL`] (every running thread is blocked, on a
//!   database or on a slow client), one more thread is woken, and another
//!   after each further [`STALL`]. A watcher thread checks while jobs wait.
//! - At most one thread is on its way at a time, and idle threads sleep in a
//!   stack, so the thread woken is the one whose caches are still warm.
//!
//! No thread spins: on a two-core machine a spinning thread takes the CPU
//! from the runtime that feeds it.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How far the queue may fall behind (the oldest job waiting, or no job
/// starting) before another thread is woken.
pub(crate) const STALL: Duration = Duration::from_millis(1);

type Job = Box<dyn FnOnce() + Send + 'static>;

struct State {
    /// Queued jobs, with the time each was queued.
    jobs: VecDeque<(Instant, Job)>,
    /// Sleeping threads, most recently idle last.
    idle: Vec<(usize, Thread)>,
    /// Per thread: has it been handed the queue since it went to sleep?
    woken: Vec<bool>,
    /// Threads woken and not yet at the queue.
    waking: usize,
    /// Threads running a job.
    running: usize,
    /// When a thread last took a job.
    last_start: Instant,
    /// The watcher is checking the queue for stalls.
    watching: bool,
    /// CPUs this process may use.
    cpus: usize,
}

impl State {
    /// Picks a sleeping thread to wake if the queue needs one: jobs wait,
    /// no thread is on its way, and either none runs or the queue fell
    /// behind, as of `now`. The caller unparks the thread after dropping the
    /// lock.
    fn pick_sleeper(&mut self, now: Instant) -> Option<Thread> {
        let (queued, _) = self.jobs.front()?;
        if self.waking > 0 {
            return None;
        }
        let needed = self.running == 0
            || (self.running < self.cpus && now.saturating_duration_since(*queued) >= STALL)
            || now.saturating_duration_since(self.last_start) >= STALL;
        if !needed {
            return None;
        }
        let (i, thread) = self.idle.pop()?;
        self.woken[i] = true;
        self.waking += 1;
        Some(thread)
    }
}

struct Shared {
    state: Mutex<State>,
    /// Arms the watcher.
    watch: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn worker(&self, me: usize) {
        let mut st = self.lock();
        loop {
            let Some((_, job)) = st.jobs.pop_front() else {
                st.idle.push((me, thread::current()));
                st.woken[me] = false;
                while !st.woken[me] {
                    drop(st);
                    thread::park();
                    st = self.lock();
                }
                st.waking -= 1;
                continue;
            };
            st.running += 1;
            let now = Instant::now();
            st.last_start = now;
            let wake = st.pick_sleeper(now);
            drop(st);
            if let Some(t) = wake {
                t.unpark();
            }
            if catch_unwind(AssertUnwindSafe(job)).is_err() {
                tracing::error!("a job panicked on an extension thread; the thread goes on");
            }
            st = self.lock();
            st.running -= 1;
        }
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
            if let Some(t) = st.pick_sleeper(Instant::now()) {
                drop(st);
                t.unpark();
                st = self.lock();
            }
        }
    }
}

/// A named pool of threads fed through an unbounded queue.
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    /// Starts `threads` threads named `name-N`, and the queue's watcher.
    pub(crate) fn new(name: &str, threads: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                idle: Vec::with_capacity(threads),
                woken: vec![false; threads],
                waking: 0,
                running: 0,
                last_start: Instant::now(),
                watching: false,
                cpus: thread::available_parallelism().map_or(1, |n| n.get()),
            }),
            watch: Condvar::new(),
        });
        for i in 0..threads {
            let shared = shared.clone();
            thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || shared.worker(i))?;
        }
        let watcher = shared.clone();
        thread::Builder::new()
            .name(format!("{name}-watch"))
            .spawn(move || watcher.watcher())?;
        Ok(Pool { shared })
    }

    /// Queues a job; it runs when a thread is free.
    pub(crate) fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        let (wake, arm) = {
            let mut st = self.shared.lock();
            let now = Instant::now();
            st.jobs.push_back((now, Box::new(job)));
            let wake = st.pick_sleeper(now);
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
        let pool = Pool::new("test-pool", 3).unwrap();
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

    #[test]
    fn blocked_threads_do_not_hold_up_the_queue() {
        // Three jobs block one after another: each stalls the queue, so
        // the pool wakes another thread for the next, and the last thread
        // runs the jobs queued behind them.
        let pool = Pool::new("test-block", 4).unwrap();
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

    #[test]
    fn a_backlog_of_cpu_bound_jobs_spreads_over_the_cpus() {
        // Jobs that compute for 0.5 ms each, never blocking: one starts
        // every 0.5 ms, so nothing stalls, but the queue falls behind, and
        // the pool runs more than one at a time when it may use more CPUs.
        let cpus = thread::available_parallelism().map_or(1, |n| n.get());
        if cpus < 2 {
            return;
        }
        let pool = Pool::new("test-cpu", 4).unwrap();
        let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        for _ in 0..40 {
            let (busy, peak, tx) = (busy.clone(), peak.clone(), tx.clone());
            pool.spawn(move || {
                use std::sync::atomic::Ordering::SeqCst;
                let now = busy.fetch_add(1, SeqCst) + 1;
                peak.fetch_max(now, SeqCst);
                let start = Instant::now();
                while start.elapsed() < Duration::from_micros(500) {
                    std::hint::spin_loop();
                }
                busy.fetch_sub(1, SeqCst);
                tx.send(()).unwrap();
            });
        }
        for _ in 0..40 {
            rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        assert!(
            peak.load(std::sync::atomic::Ordering::SeqCst) >= 2,
            "CPU-bound jobs ran one at a time"
        );
    }

    #[test]
    fn short_jobs_stay_on_few_threads() {
        // A burst of short jobs is served without waking the whole pool.
        let pool = Pool::new("test-few", 32).unwrap();
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
