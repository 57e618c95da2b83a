//! A fixed pool of OS threads for extension code.
//!
//! `HttpExtensionProc` and I/O completion routines block and call back into
//! the host, so they never run on tokio's workers.
//!
//! The queue is a mutex and a condition variable: an idle thread sleeps on
//! the futex until a job arrives. Spinning queues (crossbeam's backoff) spend
//! most of a two-core machine in `sched_yield` with dozens of idle threads.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Default)]
struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    ready: Condvar,
}

/// A named pool of threads fed through an unbounded queue.
pub(crate) struct Pool {
    queue: Arc<Queue>,
}

impl Pool {
    /// Starts `threads` threads named `name-N`.
    pub(crate) fn new(name: &str, threads: usize) -> std::io::Result<Self> {
        let queue = Arc::new(Queue::default());
        for i in 0..threads {
            let queue = queue.clone();
            thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    loop {
                        let job = {
                            let mut jobs = queue.jobs.lock().unwrap_or_else(|e| e.into_inner());
                            loop {
                                if let Some(job) = jobs.pop_front() {
                                    break job;
                                }
                                jobs = queue.ready.wait(jobs).unwrap_or_else(|e| e.into_inner());
                            }
                        };
                        if catch_unwind(AssertUnwindSafe(job)).is_err() {
                            tracing::error!(
                                "a job panicked on an extension thread; the thread goes on"
                            );
                        }
                    }
                })?;
        }
        Ok(Pool { queue })
    }

    /// Queues a job; it runs when a thread is free.
    pub(crate) fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        self.queue
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(Box::new(job));
        self.queue.ready.notify_one();
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
}
