//! A fixed pool of OS threads for extension code.
//!
//! `HttpExtensionProc` and I/O completion routines block and call back into
//! the host, so they never run on tokio's workers.
//!
//! Handing a job to a sleeping thread costs a futex wake and two context
//! switches, which dominate a small request on a busy machine. The pool keeps
//! that to the minimum:
//!
//! - A thread that finishes a job takes the next one without sleeping.
//! - A job wakes a sleeping thread only if no thread is already on its way to
//!   the queue (woken but not yet running). A woken thread that finds more
//!   jobs queued wakes the next one, so a burst fans out over the pool
//!   without a wake per job.
//! - Idle threads sleep in a stack: the thread woken is the one that ran most
//!   recently, whose caches are still warm.
//!
//! No thread spins: on a two-core machine a spinning thread takes the CPU
//! from the runtime that feeds it.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, Thread};

type Job = Box<dyn FnOnce() + Send + 'static>;

struct State {
    jobs: VecDeque<Job>,
    /// Sleeping threads, most recently idle last.
    idle: Vec<(usize, Thread)>,
    /// Per thread: has it been handed the queue since it went to sleep?
    woken: Vec<bool>,
    /// Threads woken and not yet at the queue.
    waking: usize,
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Picks a sleeping thread to wake, unless one is already waking.
    /// The caller unparks the returned thread after dropping the lock.
    fn pick_sleeper(st: &mut State) -> Option<Thread> {
        if st.waking > 0 {
            return None;
        }
        let (i, thread) = st.idle.pop()?;
        st.woken[i] = true;
        st.waking += 1;
        Some(thread)
    }

    fn worker(&self, me: usize) {
        let mut st = self.lock();
        loop {
            let Some(job) = st.jobs.pop_front() else {
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
            let wake = if st.jobs.is_empty() {
                None
            } else {
                Self::pick_sleeper(&mut st)
            };
            drop(st);
            if let Some(t) = wake {
                t.unpark();
            }
            if catch_unwind(AssertUnwindSafe(job)).is_err() {
                tracing::error!("a job panicked on an extension thread; the thread goes on");
            }
            st = self.lock();
        }
    }
}

/// A named pool of threads fed through an unbounded queue.
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    /// Starts `threads` threads named `name-N`.
    pub(crate) fn new(name: &str, threads: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                idle: Vec::with_capacity(threads),
                woken: vec![false; threads],
                waking: 0,
            }),
        });
        for i in 0..threads {
            let shared = shared.clone();
            thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || shared.worker(i))?;
        }
        Ok(Pool { shared })
    }

    /// Queues a job; it runs when a thread is free.
    pub(crate) fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        let wake = {
            let mut st = self.shared.lock();
            st.jobs.push_back(Box::new(job));
            Shared::pick_sleeper(&mut st)
        };
        if let Some(t) = wake {
            t.unpark();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

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
    fn a_blocked_job_does_not_hold_up_the_queue() {
        // Every thread but one blocks; the jobs queued behind them still run
        // on the last one, and a burst wakes the whole pool.
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
                .expect("three jobs run at once on a four-thread pool");
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
}
