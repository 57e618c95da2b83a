//! The supervisor's control socket: `isapi-host ctl status|recycle|start|
//! stop` ([`crate::control`] holds the client and the protocol).
//!
//! The socket (mode 0600) is `--control PATH`, or by default
//! `isapi-host-PID.sock` in `$XDG_RUNTIME_DIR` or the temporary directory
//! (if that one cannot be made, the supervisor runs without it, saying so;
//! signals still work). It is removed when the supervisor exits.

use std::fmt::Write as _;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use super::{Event, Supervisor};
use crate::config::CtlCommand;
use crate::control::{self, ERROR, OK, POOL_STOPPED};
use crate::os::inflight;

/// The longest command line accepted.
const MAX_LINE: usize = 256;
/// How long a client has to send its command.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The bound control socket and its accept task; the file goes on drop.
pub(super) struct ControlSocket {
    path: PathBuf,
    /// The default path (`--pid PID` finds it), not `--control`.
    default: bool,
    task: JoinHandle<()>,
}

impl ControlSocket {
    /// Binds `given` (`--control`), else the default socket, and accepts
    /// commands on it, each sent as an [`Event::Control`].
    pub(super) fn open(
        given: Option<&Path>,
        tx: &UnboundedSender<Event>,
    ) -> anyhow::Result<Option<ControlSocket>> {
        let (path, default) = match given {
            Some(p) => (p.to_path_buf(), false),
            None => (control::default_socket(std::process::id()), true),
        };
        let listener = match bind(&path) {
            Ok(l) => l,
            Err(e) if default => {
                tracing::warn!(
                    "no control socket ({e:#}): `isapi-host ctl` cannot reach this supervisor (give --control PATH); signals still work"
                );
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        tracing::info!(path = %path.display(), "control socket ready (isapi-host ctl)");
        let task = tokio::spawn(accept(listener, tx.clone()));
        Ok(Some(ControlSocket {
            path,
            default,
            task,
        }))
    }

    /// The `isapi-host ctl` command line that sends `cmd` here.
    pub(super) fn command_line(&self, cmd: CtlCommand) -> String {
        control::command_line(cmd, &self.path, self.default)
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds a Unix socket at `path`, replacing a stale one (no process
/// answers on it) but nothing else, readable and writable by this user only.
fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            anyhow::bail!(
                "cannot make the control socket {}: a file that is not a socket is there",
                path.display()
            );
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "another process already answers on the control socket {}",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("cannot make the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict the control socket {}", path.display()))?;
    listener.set_nonblocking(true)?;
    Ok(UnixListener::from_std(listener)?)
}

/// Reads each connection's command and hands it to the supervisor.
async fn accept(listener: UnixListener, tx: UnboundedSender<Event>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let line = tokio::time::timeout(READ_TIMEOUT, read_line(&mut stream))
                .await
                .unwrap_or_default();
            match line.as_deref().map(str::trim).and_then(control::parse) {
                Some(cmd) => {
                    let _ = tx.send(Event::Control(cmd, stream));
                }
                None => {
                    let text = format!(
                        "unknown command {:?}: expected status, recycle, start or stop\n",
                        line.unwrap_or_default()
                    );
                    write_answer(stream, ERROR, &text).await;
                }
            }
        });
    }
}

/// The first line of a connection, if it comes whole.
async fn read_line(stream: &mut UnixStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 64];
    while buf.len() < MAX_LINE {
        let n = stream.read(&mut byte).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&byte[..n]);
        if let Some(end) = buf.iter().position(|&b| b == b'\n') {
            buf.truncate(end);
            return String::from_utf8(buf).ok();
        }
    }
    None
}

/// Writes an answer and closes the connection.
async fn write_answer(mut stream: UnixStream, first: &str, text: &str) {
    let _ = stream
        .write_all(format!("{first}\n{text}").as_bytes())
        .await;
    let _ = stream.shutdown().await;
}

/// Answers in the background.
fn answer(stream: UnixStream, first: &'static str, text: String) {
    tokio::spawn(async move { write_answer(stream, first, &text).await });
}

/// A command that came while the supervisor shuts down.
pub(super) fn refuse_while_stopping(cmd: CtlCommand, stream: UnixStream) {
    let first = if cmd == CtlCommand::Stop { OK } else { ERROR };
    answer(
        stream,
        first,
        "the supervisor is shutting down\n".to_owned(),
    );
}

impl Supervisor {
    /// Carries out an `isapi-host ctl` command; true for `stop`.
    pub(super) fn on_control(
        &mut self,
        cmd: CtlCommand,
        stream: UnixStream,
    ) -> anyhow::Result<bool> {
        let stopped = self.responder.is_some();
        match cmd {
            CtlCommand::Status => {
                let first = if stopped { POOL_STOPPED } else { OK };
                answer(stream, first, self.status());
            }
            CtlCommand::Recycle if stopped => answer(
                stream,
                ERROR,
                format!(
                    "the application pool is stopped by rapid-fail protection: nothing to recycle; restart it with {}\n",
                    self.command_line(CtlCommand::Start)
                ),
            ),
            CtlCommand::Recycle => {
                tracing::info!("isapi-host ctl recycle: recycling every worker");
                let n = self.recycle_all("isapi-host ctl recycle")?;
                answer(
                    stream,
                    OK,
                    format!(
                        "recycling {n} worker(s), overlapped: each stops once its successor is ready\n"
                    ),
                );
            }
            CtlCommand::Start if stopped => {
                self.restart_pool("isapi-host ctl start")?;
                answer(
                    stream,
                    OK,
                    format!(
                        "restarting the application pool: {} worker(s)\n",
                        self.cfg.workers
                    ),
                );
            }
            CtlCommand::Start => answer(
                stream,
                OK,
                "the application pool is running: nothing to start (`recycle` replaces its workers)\n"
                    .to_owned(),
            ),
            CtlCommand::Stop => {
                tracing::info!("isapi-host ctl stop: shutting down");
                let text = format!(
                    "{OK}\nstopping: draining {} worker(s) (--shutdown-timeout {}s)\n",
                    self.workers.len(),
                    self.cfg.shutdown_timeout.as_secs()
                );
                // A few bytes into an empty socket buffer: no wait.
                let _ = stream.try_write(text.as_bytes());
                self.stop_waiters.push(stream);
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Tells each `ctl stop` that every worker is gone.
    pub(super) async fn answer_stop_waiters(&mut self) {
        for mut stream in self.stop_waiters.drain(..) {
            let _ = stream.write_all(b"stopped\n").await;
            let _ = stream.shutdown().await;
        }
    }

    /// `ctl status`'s text.
    fn status(&self) -> String {
        let mut out = String::new();
        let (count, window) = self.cfg.rapid_fail;
        let _ = writeln!(
            out,
            "supervisor: pid {}, up {}, listening on http://{}",
            std::process::id(),
            human(self.started.elapsed()),
            self.addr
        );
        if let Some(c) = &self.control {
            let _ = writeln!(out, "control socket: {}", c.path.display());
        }
        match &self.responder {
            Some((_, since)) => {
                let _ = writeln!(
                    out,
                    "application pool: stopped by rapid-fail protection {} ago ({count} worker crashes within {}s); every request gets 503; restart it with {}",
                    human(since.elapsed()),
                    window.as_secs(),
                    self.command_line(CtlCommand::Start)
                );
            }
            None => {
                let ready = self
                    .workers
                    .values()
                    .filter(|w| w.ready && !w.stopping)
                    .count();
                let _ = writeln!(
                    out,
                    "application pool: running, {ready} of {} worker(s) ready",
                    self.cfg.workers
                );
            }
        }
        let recent = self
            .crashes
            .iter()
            .filter(|t| t.elapsed() <= window)
            .count();
        let _ = writeln!(
            out,
            "restarts: {} (crashes within the last {}s: {recent}; rapid-fail protection stops the pool at {count})",
            self.restarts,
            window.as_secs()
        );
        let _ = writeln!(out, "recycles: {}", self.recycles);
        if let Some(w) = &self.watch {
            let _ = writeln!(out, "reload: watching {}", w.describe());
        }
        let mut ids: Vec<u64> = self.workers.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let w = &self.workers[&id];
            let state = match (w.stopping, w.ready) {
                (true, _) => "stopping",
                (false, true) => "ready",
                (false, false) => "starting",
            };
            let _ = write!(
                out,
                "worker {id}: pid {}, {state}, {} requests, ",
                w.pid,
                inflight::served(&w.slots),
            );
            // Connections while it accepts (a draining worker has left the
            // balancing table).
            if let Some(n) = self.garden.connections(w.pid) {
                let _ = write!(out, "{n} connections, ");
            }
            let _ = write!(out, "up {}", human(w.started.elapsed()));
            if let Some(old) = w.replaces {
                let _ = write!(out, ", replacing worker {old}");
            }
            out.push('\n');
        }
        out
    }
}

/// A duration for a person: `42s`, `3m 5s`, `2h 10m`, `4d 1h`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, s / 60 % 60),
        _ => format!("{}d {}h", s / 86400, s / 3600 % 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_for_people() {
        assert_eq!(human(Duration::from_secs(42)), "42s");
        assert_eq!(human(Duration::from_secs(185)), "3m 5s");
        assert_eq!(human(Duration::from_secs(7800)), "2h 10m");
        assert_eq!(human(Duration::from_secs(90000)), "1d 1h");
    }
}
