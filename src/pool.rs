//! A fixed pool of OS threads for extension code.
//!
//! `HttpExtensionProc` and I/O completion routines block and call back into
//! the host, so they never run on tokio's workers.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A named pool of threads fed through an unbounded queue.
pub(crate) struct Pool {
    tx: crossbeam_channel::Sender<Job>,
}

impl Pool {
    /// Starts `threads` threads named `name-N`.
    pub(crate) fn new(name: &str, threads: usize) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        for i in 0..threads {
            let rx = rx.clone();
            thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    for job in rx {
                        if catch_unwind(AssertUnwindSafe(job)).is_err() {
                            tracing::error!(
                                "a job panicked on an extension thread; the thread goes on"
                            );
                        }
                    }
                })?;
        }
        Ok(Pool { tx })
    }

    /// Queues a job; it runs when a thread is free.
    pub(crate) fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        // The receivers live as long as the threads, which never exit
        // while the pool's sender exists.
        let _ = self.tx.send(Box::new(job));
    }
}
