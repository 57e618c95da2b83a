//! The supervisor: IIS's WAS for one application pool. It binds the
//! listening socket, starts `--workers` worker processes (this executable
//! again, with [`os::WORKER_ENV`] set) that inherit it and serve, and never
//! loads an extension itself.
//!
//! - A worker that dies unasked (a signal, an exit, the OOM killer) is
//!   logged with its cause and the requests that were in flight on it (from
//!   its [`inflight`] table), and replaced.
//! - Rapid-fail protection: `COUNT` such deaths within `SECONDS` stop the
//!   restarts; the supervisor then answers every request itself with 503
//!   ([`unavailable`]), until SIGHUP or `isapi-host ctl start`.
//! - SIGHUP (or `ctl recycle`) recycles every worker, overlapped: each new
//!   worker is ready before its predecessor is told to stop accepting and
//!   drain. `--reload` ([`reload`]) does the same when the app's files change.
//! - SIGTERM, SIGINT (or `ctl stop`) drain every worker (each calls
//!   `TerminateExtension`), then the supervisor exits 0.
//! - [`control`]: the control socket `isapi-host ctl` talks to.
//! - [`limits`]: `--recycle-time`, `--recycle-memory`, `--hang-timeout`.
//!
//! It prints the `listening on` line once, when the first worker is ready.

mod control;
mod limits;
mod reload;
mod unavailable;

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::os::fd::AsRawFd as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::balance::Garden;
use crate::config::{CtlCommand, ServeConfig};
use crate::os::{self, inflight};

/// What a worker's watchers report.
enum Event {
    /// It is accepting.
    Ready(u64),
    /// It asks for a successor (`--recycle-requests`).
    Recycle(u64),
    /// It exited.
    Exited(u64, std::io::Result<ExitStatus>),
    /// `--reload`: these watched files changed.
    Changed(Vec<PathBuf>),
    /// `isapi-host ctl`: a command, and the connection to answer on.
    Control(CtlCommand, tokio::net::UnixStream),
}

/// A worker process.
struct Worker {
    pid: u32,
    /// Its in-flight table.
    slots: File,
    /// It has said it is accepting.
    ready: bool,
    /// It was told to stop (recycled, shut down): its exit is no crash.
    stopping: bool,
    /// The worker it takes over from once ready (overlapped recycling).
    replaces: Option<u64>,
    /// A successor is starting for it.
    succeeded: bool,
    /// When it started, for `--recycle-time`.
    started: Instant,
    /// It was started for `--reload`: if it fails to start, its
    /// predecessor keeps serving until the next change.
    for_reload: bool,
}

/// Runs the supervisor until SIGTERM or SIGINT.
pub(crate) fn run(cfg: ServeConfig) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(cfg.bind)
        .with_context(|| format!("cannot listen on {} (from {})", cfg.bind, cfg.bind_origin))?;
    // The supervisor's own 503s (a pool stopped by rapid-fail protection)
    // go to the access log like any response.
    crate::accesslog::open(&cfg)?;
    let (garden_file, garden) = Garden::create()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Every worker is spawned from this thread: the kernel's parent-death
    // signal follows the thread that forked.
    rt.block_on(async {
        let (tx, rx) = mpsc::unbounded_channel();
        let sup = Supervisor {
            exe: std::env::current_exe().context("cannot find this executable")?,
            args: std::env::args_os().skip(1).collect(),
            addr: listener.local_addr()?,
            listener: Some(listener),
            garden_file,
            garden,
            cfg,
            workers: HashMap::new(),
            next_id: 1,
            tx,
            rx,
            announced: false,
            crashes: VecDeque::new(),
            restarts: 0,
            recycles: 0,
            responder: None,
            started: Instant::now(),
            control: None,
            watch: None,
            reload_pending: false,
            changed: Vec::new(),
            change_due: None,
            stop_waiters: Vec::new(),
        };
        let ended = sup.run().await;
        crate::accesslog::flush();
        ended
    })
}

struct Supervisor {
    cfg: ServeConfig,
    /// The listening socket, until shutdown begins.
    listener: Option<std::net::TcpListener>,
    /// The file holding the workers' connection-balancing table, which
    /// they inherit.
    garden_file: File,
    /// Its mapping here: to free a dead worker's seat, and for `ctl status`.
    garden: Garden,
    addr: std::net::SocketAddr,
    exe: PathBuf,
    args: Vec<OsString>,
    workers: HashMap<u64, Worker>,
    next_id: u64,
    tx: mpsc::UnboundedSender<Event>,
    rx: mpsc::UnboundedReceiver<Event>,
    /// The `listening on` line is out.
    announced: bool,
    /// When recent crashes happened, for rapid-fail protection.
    crashes: VecDeque<Instant>,
    /// Workers started in place of crashed ones.
    restarts: u64,
    /// Workers recycled (a successor started for each).
    recycles: u64,
    /// The 503 responder, and when it started, while rapid-fail protection
    /// has stopped the pool.
    responder: Option<(JoinHandle<()>, Instant)>,
    /// When the supervisor started.
    started: Instant,
    /// The control socket `isapi-host ctl` talks to.
    control: Option<control::ControlSocket>,
    /// `--reload`'s file watcher.
    watch: Option<reload::Watch>,
    /// A change came while workers were starting: recycle once they are ready.
    reload_pending: bool,
    /// Files changed since the last reload.
    changed: Vec<PathBuf>,
    /// When those changes make a reload (unless more come first).
    change_due: Option<tokio::time::Instant>,
    /// `ctl stop` connections, answered once every worker is gone.
    stop_waiters: Vec<tokio::net::UnixStream>,
}

impl Supervisor {
    async fn run(mut self) -> anyhow::Result<()> {
        tracing::info!(
            addr = %self.addr,
            workers = self.cfg.workers,
            pid = std::process::id(),
            "supervisor started"
        );
        self.control = control::ControlSocket::open(self.cfg.control.as_deref(), &self.tx)?;
        if self.cfg.reload {
            self.watch = Some(reload::Watch::start(&self.cfg, self.tx.clone())?);
        }
        for _ in 0..self.cfg.workers {
            self.spawn(None)?;
        }
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let limits = self.cfg.recycle_time.is_some()
            || self.cfg.recycle_memory.is_some()
            || self.cfg.hang_timeout.is_some();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick(), if limits => self.check_limits()?,
                _ = tokio::time::sleep_until(
                    self.change_due.unwrap_or_else(tokio::time::Instant::now)
                ), if self.change_due.is_some() => self.on_change()?,
                Some(ev) = self.rx.recv() => match ev {
                    Event::Ready(id) => self.on_ready(id)?,
                    Event::Recycle(id) => self.recycle(id, "--recycle-requests").map(drop)?,
                    Event::Exited(id, status) => self.on_exit(id, status)?,
                    Event::Changed(paths) => self.note_change(paths),
                    Event::Control(cmd, stream) => {
                        if self.on_control(cmd, stream)? {
                            break;
                        }
                    }
                },
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => self.on_hup()?,
            }
        }
        self.shut_down().await;
        self.answer_stop_waiters().await;
        Ok(())
    }

    /// Starts a worker; `replaces` stops once it is ready. Returns its number.
    fn spawn(&mut self, replaces: Option<u64>) -> anyhow::Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let (reader, writer) = os::pipe().context("cannot make a worker's pipe")?;
        let slots = os::memfd(c"isapi-host-inflight", inflight::TABLE_BYTES as u64)
            .context("cannot make a worker's in-flight table")?;
        let listener = self
            .listener
            .as_ref()
            .context("no listening socket: shutting down")?;
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.args(&self.args)
            .env(os::WORKER_ENV, id.to_string())
            .stdin(Stdio::null());
        os::hand_down(
            &mut cmd,
            [
                listener.as_raw_fd(),
                writer.as_raw_fd(),
                slots.as_raw_fd(),
                self.garden_file.as_raw_fd(),
            ],
        );
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start a worker ({})", self.exe.display()))?;
        drop(writer);
        let pid = child.id().unwrap_or(0);
        tracing::info!(worker = id, pid, "worker started");
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            let _ = tx.send(Event::Exited(id, status));
        });
        let tx = self.tx.clone();
        std::thread::Builder::new()
            .name(format!("isapi-worker-{id}-pipe"))
            .spawn(move || {
                for line in BufReader::new(reader).lines() {
                    match line {
                        Ok(l) if l == "ready" => {
                            let _ = tx.send(Event::Ready(id));
                        }
                        Ok(l) if l == "recycle" => {
                            let _ = tx.send(Event::Recycle(id));
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            })?;
        self.workers.insert(
            id,
            Worker {
                pid,
                slots,
                ready: false,
                stopping: false,
                replaces,
                succeeded: false,
                started: Instant::now(),
                for_reload: false,
            },
        );
        Ok(id)
    }

    fn on_ready(&mut self, id: u64) -> anyhow::Result<()> {
        let Some(w) = self.workers.get_mut(&id) else {
            return Ok(());
        };
        w.ready = true;
        let (pid, replaces) = (w.pid, w.replaces.take());
        tracing::info!(worker = id, pid, "worker ready");
        if !self.announced {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            writeln!(out, "isapi-host listening on http://{}", self.addr)?;
            out.flush()?;
            self.announced = true;
        }
        if let Some(old) = replaces {
            self.stop(old);
        }
        self.reload_if_pending()
    }

    /// Overlapped recycling: a successor first; `id` stops once it is
    /// ready. Returns the successor's number, if one was started.
    fn recycle(&mut self, id: u64, why: &str) -> anyhow::Result<Option<u64>> {
        let Some(w) = self.workers.get_mut(&id) else {
            return Ok(None);
        };
        if w.stopping || w.succeeded || self.responder.is_some() {
            return Ok(None);
        }
        w.succeeded = true;
        tracing::info!(worker = id, pid = w.pid, "recycling worker: {why}");
        self.recycles += 1;
        self.spawn(Some(id)).map(Some)
    }

    /// Tells a worker to stop accepting and drain.
    fn stop(&mut self, id: u64) {
        if let Some(w) = self.workers.get_mut(&id)
            && !w.stopping
        {
            w.stopping = true;
            tracing::info!(worker = id, pid = w.pid, "stopping worker");
            let _ = os::kill(w.pid, os::SIGTERM);
        }
    }

    fn on_exit(&mut self, id: u64, status: std::io::Result<ExitStatus>) -> anyhow::Result<()> {
        let Some(w) = self.workers.remove(&id) else {
            return Ok(());
        };
        // A worker that died accepting leaves a seat the others would
        // balance against.
        self.garden.evict(w.pid);
        let cause = match &status {
            Ok(s) => describe(*s),
            Err(e) => format!("cannot tell how it ended ({e})"),
        };
        if w.stopping && status.as_ref().is_ok_and(ExitStatus::success) {
            tracing::info!(worker = id, pid = w.pid, "worker exited");
            return Ok(());
        }
        let in_flight = inflight::read(&w.slots);
        if !w.ready && !self.announced && !w.stopping {
            // It never served: a start-up error. Exit code 1 is the worker's own
            // failure exit, after it said why on stderr: nothing to add. Anything
            // else (a signal, a panic's 101) is said here.
            self.stop_all();
            if status.as_ref().is_ok_and(|s| s.code() == Some(1)) {
                return Err(crate::server::AlreadyReported.into());
            }
            anyhow::bail!("the worker failed to start: it {cause}");
        }
        if self.reload_failed(id, &w, &cause) {
            return Ok(());
        }
        tracing::error!(
            worker = id,
            pid = w.pid,
            in_flight = in_flight.len(),
            "worker died: {cause}"
        );
        for url in &in_flight {
            tracing::error!(
                worker = id,
                pid = w.pid,
                "request in flight on the dead worker: {url}"
            );
        }
        if w.stopping || self.responder.is_some() {
            return Ok(());
        }
        // A successor already starting for it takes its place.
        if let Some(successor) = self.workers.values_mut().find(|s| s.replaces == Some(id)) {
            successor.replaces = None;
            return Ok(());
        }
        // Whoever it was to replace keeps serving until its successor is up.
        let now = Instant::now();
        let (count, window) = self.cfg.rapid_fail;
        self.crashes.push_back(now);
        while self
            .crashes
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            self.crashes.pop_front();
        }
        if self.crashes.len() >= count as usize {
            self.trip(count, window);
            return Ok(());
        }
        self.restarts += 1;
        tracing::info!(
            dead = id,
            restarts = self.restarts,
            "starting a replacement worker"
        );
        self.spawn(w.replaces).map(drop)
    }

    /// Rapid-fail protection: no more workers; 503 for everyone.
    fn trip(&mut self, count: u32, window: Duration) {
        tracing::error!(
            "rapid-fail protection: {count} worker crashes within {}s; the application pool is stopped and every request gets 503. Fix the cause, then restart the workers with `{}` or SIGHUP (kill -HUP {})",
            window.as_secs(),
            self.command_line(CtlCommand::Start),
            std::process::id()
        );
        self.stop_all();
        match self
            .listener
            .as_ref()
            .map_or_else(
                || Err(std::io::Error::other("no socket")),
                |l| l.try_clone(),
            )
            .and_then(|l| {
                l.set_nonblocking(true)?;
                Ok(l)
            })
            .and_then(tokio::net::TcpListener::from_std)
        {
            Ok(l) => {
                self.responder = Some((tokio::spawn(unavailable::serve(l)), Instant::now()));
            }
            Err(e) => tracing::error!(error = %e, "cannot answer 503 on the listening socket"),
        }
    }

    /// The `isapi-host ctl` command line that sends `cmd` here.
    fn command_line(&self, cmd: CtlCommand) -> String {
        match &self.control {
            Some(c) => c.command_line(cmd),
            None => format!(
                "isapi-host ctl --pid {} {}",
                std::process::id(),
                crate::control::name(cmd)
            ),
        }
    }

    fn stop_all(&mut self) {
        let ids: Vec<u64> = self.workers.keys().copied().collect();
        for id in ids {
            self.stop(id);
        }
    }

    /// SIGHUP: restart after rapid-fail protection, else recycle every
    /// worker, overlapped.
    fn on_hup(&mut self) -> anyhow::Result<()> {
        if self.responder.is_some() {
            return self.restart_pool("SIGHUP");
        }
        tracing::info!("SIGHUP: recycling every worker");
        self.recycle_all("SIGHUP").map(drop)
    }

    /// Restarts the pool that rapid-fail protection stopped.
    fn restart_pool(&mut self, why: &str) -> anyhow::Result<()> {
        if let Some((r, _)) = self.responder.take() {
            r.abort();
        }
        self.crashes.clear();
        tracing::info!("{why}: restarting the application pool");
        for _ in 0..self.cfg.workers {
            self.spawn(None)?;
        }
        Ok(())
    }

    /// Recycles, overlapped, every worker not already stopping or being
    /// replaced; returns how many.
    fn recycle_all(&mut self, why: &str) -> anyhow::Result<usize> {
        let old: Vec<u64> = self
            .workers
            .iter()
            .filter(|(_, w)| !w.stopping && !w.succeeded)
            .map(|(id, _)| *id)
            .collect();
        for id in &old {
            self.recycle(*id, why)?;
        }
        Ok(old.len())
    }

    /// Drains every worker: `--shutdown-timeout`, plus a grace period for
    /// `TerminateExtension`, then SIGKILL.
    async fn shut_down(&mut self) {
        tracing::info!("shutting down: draining the workers");
        if let Some((r, _)) = self.responder.take() {
            r.abort();
        }
        // The control socket goes first: nobody asks a server going down.
        self.control = None;
        self.watch = None;
        // No new connections from now on: once the workers close their
        // copies too, nothing listens.
        self.listener = None;
        self.stop_all();
        let deadline =
            tokio::time::Instant::now() + self.cfg.shutdown_timeout + Duration::from_secs(5);
        while !self.workers.is_empty() {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(Event::Exited(id, status))) => {
                    if let Some(w) = self.workers.remove(&id) {
                        let cause = match &status {
                            Ok(s) => describe(*s),
                            Err(e) => e.to_string(),
                        };
                        tracing::info!(worker = id, pid = w.pid, "worker {cause}");
                    }
                }
                Ok(Some(Event::Ready(id))) => self.stop(id),
                Ok(Some(Event::Control(cmd, stream))) => {
                    control::refuse_while_stopping(cmd, stream);
                }
                Ok(Some(Event::Recycle(_) | Event::Changed(_))) => {}
                Ok(None) => break,
                Err(_) => {
                    for w in self.workers.values() {
                        tracing::warn!(pid = w.pid, "worker did not drain in time: SIGKILL");
                        let _ = os::kill(w.pid, os::SIGKILL);
                    }
                    break;
                }
            }
        }
    }
}

/// How a process ended, for the log: `exited with code 1`, `was killed by
/// SIGSEGV (core dumped)`.
fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with code {code}");
    }
    match status.signal() {
        Some(sig) => format!(
            "was killed by {}{}",
            os::signal_name(sig),
            if status.core_dumped() {
                " (core dumped)"
            } else {
                ""
            }
        ),
        None => format!("ended ({status})"),
    }
}
