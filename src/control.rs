//! `isapi-host ctl`, the supervisor's control command, and the protocol it
//! speaks on the supervisor's control socket (a Unix stream socket, mode
//! 0600; docs/ARCHITECTURE.md, "Process model").
//!
//! The client writes one line, the command's name (`status`, `recycle`,
//! `start` or `stop`). The supervisor answers with a first line, [`OK`],
//! [`POOL_STOPPED`] (the status of a pool that rapid-fail protection
//! stopped) or [`ERROR`], then lines for a person, and closes the
//! connection; for `stop`, once it has drained its workers and is about to
//! exit, so that the command returns when the server is down.
//!
//! Unless `serve --control PATH` says otherwise, the socket is
//! `isapi-host-PID.sock` ([`default_socket`]) in `$XDG_RUNTIME_DIR`, else
//! in the temporary directory.
// On Windows only `run`'s error is built: no supervisor answers there yet.
#![cfg_attr(not(unix), allow(dead_code))]

use std::path::{Path, PathBuf};

use crate::config::{CtlArgs, CtlCommand};

/// The answer's first line: done.
pub(crate) const OK: &str = "ok";
/// The answer's first line: the status of a pool that rapid-fail protection
/// stopped (`ctl status` exits with 3, LSB's "not running").
pub(crate) const POOL_STOPPED: &str = "stopped";
/// The answer's first line: refused; the reason follows.
pub(crate) const ERROR: &str = "error";

/// `ctl status`'s exit status when the pool is stopped.
const EXIT_POOL_STOPPED: u8 = 3;

/// The command's name on the wire and on the command line.
pub(crate) fn name(cmd: CtlCommand) -> &'static str {
    match cmd {
        CtlCommand::Status => "status",
        CtlCommand::Recycle => "recycle",
        CtlCommand::Start => "start",
        CtlCommand::Stop => "stop",
    }
}

/// The command named `word`, if any.
pub(crate) fn parse(word: &str) -> Option<CtlCommand> {
    [
        CtlCommand::Status,
        CtlCommand::Recycle,
        CtlCommand::Start,
        CtlCommand::Stop,
    ]
    .into_iter()
    .find(|c| name(*c) == word)
}

/// Where default control sockets go: `$XDG_RUNTIME_DIR` (private to the
/// user), else the temporary directory.
pub(crate) fn socket_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(d) if d.is_absolute() && d.is_dir() => d,
        _ => std::env::temp_dir(),
    }
}

/// The control socket of the supervisor with process id `pid`, unless it
/// was given `--control`.
pub(crate) fn default_socket(pid: u32) -> PathBuf {
    socket_dir().join(format!("isapi-host-{pid}.sock"))
}

/// The command line that sends `cmd` to the supervisor listening on
/// `socket` (its default one when `default`), for log lines and answers.
pub(crate) fn command_line(cmd: CtlCommand, socket: &Path, default: bool) -> String {
    if default {
        format!("isapi-host ctl --pid {} {}", std::process::id(), name(cmd))
    } else {
        format!(
            "isapi-host ctl --control {} {}",
            socket.display(),
            name(cmd)
        )
    }
}

/// Runs `isapi-host ctl`: returns the exit status (0 done, 1 refused, 3 the
/// pool is stopped), or an error when the supervisor cannot be reached.
#[cfg(unix)]
pub(crate) fn run(args: CtlArgs) -> anyhow::Result<u8> {
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::os::unix::net::UnixStream;

    use anyhow::Context as _;

    let path = match (args.control, args.pid) {
        (Some(p), _) => p,
        (None, Some(pid)) => default_socket(pid),
        (None, None) => discover()?,
    };
    let stream = UnixStream::connect(&path).with_context(|| {
        format!(
            "cannot reach an isapi-host supervisor on {} (is `isapi-host serve` running? \
             give the socket it was started with: --control PATH, or --pid PID for its default one)",
            path.display()
        )
    })?;
    if args.command != CtlCommand::Stop {
        stream.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    }
    (&stream)
        .write_all(format!("{}\n", name(args.command)).as_bytes())
        .context("cannot send the command")?;
    let mut lines = BufReader::new(&stream).lines();
    let first = match lines.next() {
        Some(line) => line.context("cannot read the supervisor's answer")?,
        None => anyhow::bail!("the supervisor closed the connection without an answer"),
    };
    let code = match first.as_str() {
        OK => 0,
        POOL_STOPPED => EXIT_POOL_STOPPED,
        ERROR => 1,
        other => anyhow::bail!("unexpected answer from {}: {other:?}", path.display()),
    };
    let mut out = std::io::stdout().lock();
    for line in lines {
        let line = line.context("the supervisor's answer broke off")?;
        if code == 1 {
            eprintln!("isapi-host: {line}");
        } else {
            writeln!(out, "{line}")?;
        }
    }
    out.flush()?;
    Ok(code)
}

/// Without `--control` or `--pid`: the one live supervisor whose default
/// socket is in [`socket_dir`].
#[cfg(unix)]
fn discover() -> anyhow::Result<PathBuf> {
    let dir = socket_dir();
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name();
                    let pid: u32 = name
                        .to_str()?
                        .strip_prefix("isapi-host-")?
                        .strip_suffix(".sock")?
                        .parse()
                        .ok()?;
                    crate::os::alive(pid).then(|| (pid, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    match found.as_slice() {
        [(_, path)] => Ok(path.clone()),
        [] => anyhow::bail!(
            "no running isapi-host supervisor has its control socket in {} \
             (give --pid PID, or --control PATH for one started with --control)",
            dir.display()
        ),
        many => anyhow::bail!(
            "{} isapi-host supervisors are running (pids {}): choose one with --pid PID",
            many.len(),
            many.iter()
                .map(|(pid, _)| pid.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// On Windows there is no supervisor to talk to yet.
#[cfg(not(unix))]
pub(crate) fn run(_args: CtlArgs) -> anyhow::Result<u8> {
    anyhow::bail!(
        "isapi-host ctl talks to the supervisor, which is not built on Windows yet \
         (docs/ARCHITECTURE.md, \"Process model\"): one process serves; stop it with Ctrl+C"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in [
            CtlCommand::Status,
            CtlCommand::Recycle,
            CtlCommand::Start,
            CtlCommand::Stop,
        ] {
            assert_eq!(parse(name(c)), Some(c));
        }
        assert_eq!(parse("reboot"), None);
    }

    #[test]
    fn command_lines_name_the_socket() {
        let pid = std::process::id();
        assert_eq!(
            command_line(CtlCommand::Start, Path::new("/x"), true),
            format!("isapi-host ctl --pid {pid} start")
        );
        assert_eq!(
            command_line(CtlCommand::Start, Path::new("/run/h.sock"), false),
            "isapi-host ctl --control /run/h.sock start"
        );
        assert!(default_socket(42).ends_with("isapi-host-42.sock"));
    }
}
