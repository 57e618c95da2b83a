//! The accept loop: binding, accepting connections and handing each to its
//! task, and the graceful shutdown that ends it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use super::balance::{GIVE_WAY, Garden};
use super::connection::serve_connection;
use super::connections::Connections;
use super::routing::App;
use super::sweeper::{Limits, sweep};

/// Where the listening socket comes from.
pub(super) enum Listen {
    /// Bind `--bind` here (one process, no supervisor).
    Bind,
    /// A worker's: the supervisor's socket, the pipe to tell it this
    /// worker is ready, and the pool's connection-balancing table.
    #[cfg_attr(not(unix), allow(dead_code))]
    Inherited(std::net::TcpListener, std::fs::File, Garden),
}

/// Listens until SIGINT or SIGTERM (or their Windows console kin), then
/// drains: connections close after their current response, and requests
/// get `--shutdown-timeout` to finish.
pub(super) async fn serve(app: Arc<App>, listen: Listen) -> anyhow::Result<()> {
    let cfg = &app.shared.cfg;
    let (listener, control, conns) = match listen {
        Listen::Bind => (
            TcpListener::bind(cfg.bind).await.with_context(|| {
                format!("cannot listen on {} (from {})", cfg.bind, cfg.bind_origin)
            })?,
            None,
            Connections::default(),
        ),
        Listen::Inherited(listener, control, garden) => {
            listener.set_nonblocking(true)?;
            (
                TcpListener::from_std(listener)?,
                Some(control),
                Connections::in_garden(garden),
            )
        }
    };
    let conns = Arc::new(conns);
    conns.join_garden();
    let addr = listener.local_addr()?;
    match &control {
        // A worker: the supervisor prints the address once the first
        // worker says it is ready.
        Some(control) => {
            use std::io::Write;
            let _ = (&*control).write_all(b"ready\n");
        }
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "isapi-host listening on http://{addr}")?;
            out.flush()?;
        }
    }
    tracing::info!(%addr, threads = cfg.threads, parallel = cfg.parallel, "listening");

    let sweeper = tokio::spawn(sweep(conns.clone(), Limits::of(cfg)));
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut accept_errors = AcceptErrors::default();
    loop {
        tokio::select! {
            accepted = async {
                // A web garden's worker with more than its share lets the
                // others take what is pending first (super::balance).
                if conns.crowded() {
                    tokio::time::sleep(GIVE_WAY).await;
                }
                listener.accept().await
            } => {
                let (stream, remote) = match accepted {
                    Ok(a) => {
                        if accept_errors.recovered() {
                            conns.join_garden();
                        }
                        a
                    }
                    Err(e) => {
                        // EMFILE and friends: log once, back off instead of spinning;
                        // the connections already open go on being served. The other
                        // workers stop leaving connections to this one meanwhile.
                        conns.leave_garden();
                        let pause = accept_errors.failed(&e);
                        tokio::time::sleep(pause).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().unwrap_or(addr);
                // Registered before the task starts, so that shutdown waits for it.
                let (id, signals) = conns.open(remote);
                let (app, conns) = (app.clone(), conns.clone());
                tokio::spawn(async move {
                    serve_connection(stream, remote, local, app, signals).await;
                    conns.close(id);
                });
            }
            () = &mut signal => break,
        }
    }
    drop(listener);
    conns.leave_garden();
    tracing::info!("shutting down: waiting for in-flight requests");
    conns.shut_down();
    let drain = async {
        app.shared.drained().await;
        conns.drained().await;
    };
    if tokio::time::timeout(app.shared.cfg.shutdown_timeout, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            requests = app.shared.active(),
            connections = conns.count(),
            "shutdown timeout: requests still in flight"
        );
    }
    sweeper.abort();
    Ok(())
}

/// A run of failing `accept`s (out of descriptors, `EMFILE`/`ENFILE`, or
/// out of memory): logged once when it starts and once when it ends, with
/// the pause between attempts doubling from 10 ms to 1 s, so that the loop
/// neither spins nor floods the log while the open connections are served.
#[derive(Default)]
struct AcceptErrors {
    /// Failures in the current run (0: accepting normally).
    failures: u64,
    /// The pause before the next attempt.
    pause: Duration,
}

impl AcceptErrors {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    /// Counts a failure; returns how long to wait before accepting again.
    fn failed(&mut self, e: &std::io::Error) -> Duration {
        if self.failures == 0 {
            tracing::error!(
                error = %e,
                "accept failed: new connections wait (in the listen backlog) until it recovers; \
                 open connections are still served (raise `ulimit -n` if out of descriptors)"
            );
            self.pause = Self::FIRST;
        } else {
            self.pause = (self.pause * 2).min(Self::MAX);
        }
        self.failures += 1;
        self.pause
    }

    /// An accept succeeded: ends a run of failures, saying how long it
    /// was. Returns whether a run ended.
    fn recovered(&mut self) -> bool {
        if self.failures == 0 {
            return false;
        }
        tracing::warn!(
            failed_attempts = self.failures,
            "accepting connections again"
        );
        self.failures = 0;
        true
    }
}

/// Resolves at SIGINT or SIGTERM, or a console's close and the system's
/// shutdown on Windows.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    // A console's Ctrl+C and Ctrl+Break, its window closing, and the
    // system's shutdown or log-off all drain like SIGTERM.
    #[cfg(windows)]
    {
        use tokio::signal::windows::{ctrl_break, ctrl_close, ctrl_shutdown};
        let (Ok(mut brk), Ok(mut close), Ok(mut shut)) =
            (ctrl_break(), ctrl_close(), ctrl_shutdown())
        else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = brk.recv() => {}
            _ = close.recv() => {}
            _ = shut.recv() => {}
        }
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
