//! [`Running`]: a started server in its own process group, from its start
//! (and readiness) to its stop, also on SIGINT/SIGTERM.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::command::{Launch, command};
use super::env::Env;
use super::spec::ServerSpec;
use crate::procfs;

/// A running server: a process (or process group) the harness started, or a
/// `url:` server it only measures.
#[derive(Debug)]
pub struct Running {
    /// Which server.
    pub spec: ServerSpec,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its stdout and stderr (empty for a `url:` server).
    pub log: PathBuf,
    /// The process the harness started; `None` for a `url:` server.
    child: Option<Child>,
    /// The process whose CPU time and memory are sampled (with its descendants).
    pid: Option<u32>,
}

/// Process groups of the servers currently running (for cleanup on SIGINT/SIGTERM).
static GROUPS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Stop every server still running (called from the signal handler).
pub fn kill_all_groups() {
    let groups = GROUPS.lock().map(|g| g.clone()).unwrap_or_default();
    for pgid in groups {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
    }
    std::thread::sleep(Duration::from_millis(500));
    let groups = GROUPS.lock().map(|g| g.clone()).unwrap_or_default();
    for pgid in groups {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
    }
}

fn log_file(env: &Env, spec: &ServerSpec) -> Result<(PathBuf, File)> {
    std::fs::create_dir_all(env.logs_dir())?;
    let safe: String = spec
        .label()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = env.logs_dir().join(format!("{safe}.log"));
    let f = File::create(&path)?;
    Ok((path, f))
}

/// Start a server and wait until it answers HTTP; a `url:` server is only
/// checked (see [`attach`]).
pub fn start(env: &Env, spec: &ServerSpec) -> Result<Running> {
    if let Some(target) = spec.url() {
        return attach(spec, &target.authority, env.attach_pid);
    }
    let (log, file) = log_file(env, spec)?;
    let Launch {
        mut cmd,
        port,
        pipe_stderr,
    } = command(env, spec)?;
    if pipe_stderr {
        cmd.stderr(Stdio::piped());
    } else {
        cmd.stderr(Stdio::from(file.try_clone()?));
    }
    let announced = port.is_none();
    if announced {
        cmd.stdout(Stdio::piped());
    } else {
        cmd.stdout(Stdio::from(file.try_clone()?));
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", spec.name))?;
    if let Ok(mut g) = GROUPS.lock() {
        g.push(child.id());
    }
    if let Some(err) = child.stderr.take() {
        let mut log = file.try_clone()?;
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut BufReader::new(err), &mut log);
        });
    }
    let addr = if announced {
        match read_announced_addr(&mut child, file, Duration::from_secs(60)) {
            Ok(a) => a,
            Err(e) => {
                let _ = kill_group(&mut child, Duration::from_secs(2));
                return Err(e.context(format!(
                    "{} did not start; log: {}",
                    spec.name,
                    log.display()
                )));
            }
        }
    } else {
        SocketAddr::from(([127, 0, 0, 1], port.unwrap_or(0)))
    };
    let mut running = Running {
        spec: spec.clone(),
        addr,
        log,
        pid: Some(child.id()),
        child: Some(child),
    };
    if let Err(e) = running.wait_ready(Duration::from_secs(60)) {
        let log = running.log.clone();
        running.stop();
        return Err(e.context(format!(
            "{} did not become ready; log: {}",
            spec.name,
            log.display()
        )));
    }
    Ok(running)
}

/// Parse `... listening on http://ADDR` from the child's stdout, then copy the
/// rest of its stdout into the log in the background.
fn read_announced_addr(child: &mut Child, log: File, timeout: Duration) -> Result<SocketAddr> {
    let stdout = child.stdout.take().context("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut log = log;
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(log, "{line}");
            if !sent && let Some(rest) = line.split("listening on http://").nth(1) {
                let _ = tx.send(rest.trim().to_owned());
                sent = true;
            }
        }
    });
    let deadline = Instant::now() + timeout;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(a) => return a.parse().with_context(|| format!("bad address {a:?}")),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Some(status) = child.try_wait()? {
                    bail!("exited with {status} before announcing its address");
                }
                if Instant::now() > deadline {
                    bail!("no 'listening on http://' line within {timeout:?}");
                }
            }
            Err(_) => {
                let status = child.wait()?;
                bail!("exited with {status} before announcing its address");
            }
        }
    }
}

fn kill_group(child: &mut Child, grace: Duration) -> Result<()> {
    if let Ok(mut g) = GROUPS.lock() {
        g.retain(|p| *p != child.id());
    }
    let pgid = child.id().to_string();
    if child.try_wait()?.is_none() {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{pgid}")])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // the leader may be gone while workers linger: always sweep the group
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
    Ok(())
}

/// A server already running at `authority` (`HOST:PORT`), which must accept a
/// connection within 10 s; `pid`, when given, is sampled for CPU and memory.
fn attach(spec: &ServerSpec, authority: &str, pid: Option<u32>) -> Result<Running> {
    use std::net::{TcpStream, ToSocketAddrs};
    let addrs: Vec<SocketAddr> = authority
        .to_socket_addrs()
        .with_context(|| format!("{}: cannot resolve {authority}", spec.name))?
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reached = addrs
            .iter()
            .find(|a| TcpStream::connect_timeout(a, Duration::from_secs(2)).is_ok());
        if let Some(&addr) = reached {
            return Ok(Running {
                spec: spec.clone(),
                addr,
                log: PathBuf::new(),
                child: None,
                pid,
            });
        }
        if Instant::now() > deadline {
            bail!("{}: nothing accepts connections at {authority}", spec.name);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Running {
    /// The process whose CPU time and memory are sampled: the one the harness
    /// started (its process group's leader), or `--pid` for a `url:` server.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Whether the process is still running (a `url:` server is assumed to be).
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// How the process ended, if it did (e.g. "signal: 9 (SIGKILL)").
    pub fn exit_status(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        child.try_wait().ok().flatten().map(|s| s.to_string())
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .no_proxy()
            .build()?;
        let url = format!("http://{}/hello", self.addr);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                bail!("exited with {status}");
            }
            if client.get(&url).send().is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("no HTTP answer on {url} within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Resident memory (KiB) of the server process and all its descendants.
    /// (0 when there is no process to sample.)
    pub fn rss_kib(&self) -> u64 {
        self.pid.map_or(0, procfs::tree_rss_kib)
    }

    /// SIGTERM the process group, then SIGKILL after a grace period; a `url:`
    /// server is left running.
    pub fn stop(mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = kill_group(child, Duration::from_secs(5));
        }
    }

    /// The last `n` lines of the server log (for failure reports).
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut()
            && matches!(child.try_wait(), Ok(None))
        {
            let _ = kill_group(child, Duration::from_secs(2));
        }
    }
}
