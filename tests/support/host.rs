//! [`Host`]: a running `isapi-host serve` process, started on a free port,
//! with its output captured, stopped on drop.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use isapi_harness::procfs::{listening_on_port, listening_sockets, rss_kib};
use isapi_harness::wire::Response;

use super::conn::{RawConn, get};
use super::extensions::c_fixture_str;
use super::platform::{host_bin, host_runner, repo_root, windows_host};

/// How long [`Host::start`] waits for the `listening on` line (a Wine process
/// starts in about a second, the first in a fresh prefix in several).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `isapi-host serve` process.
#[derive(Debug)]
pub struct Host {
    child: Option<Child>,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    /// The threads copying stdout and stderr: each ends at its pipe's end.
    readers: [thread::JoinHandle<()>; 2],
    args: Vec<String>,
}

/// Result of a host process that was run to completion (start-up failures).
#[derive(Debug)]
pub struct HostExit {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

fn spawn_reader<R: Read + Send + 'static>(
    mut r: R,
    sink: Arc<Mutex<String>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => sink
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    })
}

/// Reads stdout line by line into `sink`; the first `listening on http://`
/// address is sent on `tx`.
fn spawn_stdout_reader(
    out: ChildStdout,
    sink: Arc<Mutex<String>>,
    tx: mpsc::Sender<SocketAddr>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(out);
        let mut tx = Some(tx);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_str(&line);
            if let Some(rest) = line.trim().split("listening on http://").nth(1) {
                let addr = rest.trim().trim_end_matches('/');
                if let (Ok(a), Some(t)) = (addr.parse::<SocketAddr>(), tx.as_ref()) {
                    let _ = t.send(a);
                    tx = None;
                }
            }
        }
    })
}

/// Spawn [`host_command`] with no stdin and stdout and stderr piped.
fn spawn_host<I, K, V>(args: &[&str], envs: I) -> std::io::Result<Child>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    host_command(args, envs)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
}

fn host_command<I, K, V>(args: &[&str], envs: I) -> Command
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let mut cmd = match host_runner() {
        Some(runner) => {
            let mut c = Command::new(runner);
            c.arg(host_bin());
            c
        }
        None => Command::new(host_bin()),
    };
    cmd.arg("serve").arg("--bind").arg("127.0.0.1:0").args(args);
    // Tests read the host's INFO lines (access log, traces), so the host's
    // filter does not follow an inherited RUST_LOG; ISAPI_HOST_TEST_LOG
    // overrides it (e.g. "debug").
    let filter = std::env::var("ISAPI_HOST_TEST_LOG").unwrap_or_else(|_| "info".to_owned());
    cmd.env("RUST_LOG", filter);
    // For sanitizer runs of the C fixtures: a library to preload into the
    // host only (e.g. libasan.so.8), never into the test process.
    // (Not for a Windows host: the library would go into Wine's loader.)
    if let Some(preload) = std::env::var_os("ISAPI_HOST_TEST_LD_PRELOAD") {
        assert!(
            !windows_host(),
            "ISAPI_HOST_TEST_LD_PRELOAD is for a Linux host only"
        );
        cmd.env("LD_PRELOAD", preload);
    }
    cmd.envs(envs);
    cmd.current_dir(repo_root());
    cmd
}

impl Host {
    /// Start `isapi-host serve --bind 127.0.0.1:0 <args>` and wait until it
    /// listens. Panics (with the stderr captured so far) if it does not print
    /// its `listening on` line within [`STARTUP_TIMEOUT`].
    pub fn start(args: &[&str]) -> Host {
        Host::start_env(args, std::iter::empty::<(&str, &str)>())
    }

    /// [`Host::start`] with extra environment variables.
    pub fn start_env<I, K, V>(args: &[&str], envs: I) -> Host
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        match Host::try_start_env(args, envs) {
            Ok(h) => h,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`Host::start_env`] but returns the failure (with stderr) instead
    /// of panicking.
    pub fn try_start_env<I, K, V>(args: &[&str], envs: I) -> Result<Host, String>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let envs: Vec<(OsString, OsString)> = envs
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect();
        match Host::start_once(args, &envs) {
            // Under Wine, a start now and then ends with status 1 before the host
            // has written a byte (seen twice in about 1,300 starts, in different
            // tests, never reproduced); the host itself never fails silently (its
            // start-up errors are printed), so that one is started again, once.
            Err((e, true)) if windows_host() => {
                eprintln!("{e}\n(exited 1 with no output under Wine: starting it once more)");
                Host::start_once(args, &envs).map_err(|(e, _)| e)
            }
            other => other.map_err(|(e, _)| e),
        }
    }

    /// One start; the error says whether the host exited with status 1
    /// without writing anything on stdout or stderr.
    fn start_once(args: &[&str], envs: &[(OsString, OsString)]) -> Result<Host, (String, bool)> {
        let mut child = spawn_host(args, envs.iter().cloned()).map_err(|e| {
            (
                format!(
                    "cannot spawn {}: {e} (build it: cargo build -p isapi-host)",
                    host_bin().display()
                ),
                false,
            )
        })?;
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let out_reader = spawn_stdout_reader(
            child.stdout.take().expect("piped stdout"),
            stdout.clone(),
            tx,
        );
        let err_pipe: ChildStderr = child.stderr.take().expect("piped stderr");
        let err_reader = spawn_reader(err_pipe, stderr.clone());
        let args_owned: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(addr) => {
                    return Ok(Host {
                        child: Some(child),
                        addr,
                        stderr,
                        stdout,
                        readers: [out_reader, err_reader],
                        args: args_owned,
                    });
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed without the line: wait briefly for the exit.
                    let _ = wait_timeout(&mut child, Duration::from_secs(5));
                }
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                if exited.is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                // Let stderr drain to its end (it ends with the process, or with a
                // child that inherited it), for 5 s at most: under Wine a pipe can
                // lag well behind the exit.
                let drained = Instant::now() + Duration::from_secs(5);
                while !err_reader.is_finished() && Instant::now() < drained {
                    thread::sleep(Duration::from_millis(20));
                }
                let out = stdout.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let err = stderr.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let silent_1 =
                    exited.and_then(|s| s.code()) == Some(1) && out.is_empty() && err.is_empty();
                return Err((
                    format!(
                        "isapi-host {args_owned:?} did not start ({}).\n--- stdout ---\n{out}\n--- stderr ---\n{err}",
                        match exited {
                            Some(s) => format!("exited with {s}"),
                            None => format!("no `listening on` line within {STARTUP_TIMEOUT:?}"),
                        },
                    ),
                    silent_1,
                ));
            }
        }
    }

    /// Run `isapi-host serve --bind 127.0.0.1:0 <args>` expecting it to exit on
    /// its own (e.g. a start-up error) within `timeout`. If it starts listening
    /// instead, it is killed and the returned status is the kill's.
    pub fn run_to_exit<I, K, V>(args: &[&str], envs: I, timeout: Duration) -> HostExit
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let mut child = spawn_host(args, envs).expect("spawn isapi-host");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let t1 = spawn_reader(child.stdout.take().expect("stdout"), stdout.clone());
        let t2 = spawn_reader(child.stderr.take().expect("stderr"), stderr.clone());
        let status = match wait_timeout(&mut child, timeout) {
            Some(s) => s,
            None => {
                let _ = child.kill();
                child.wait().expect("wait")
            }
        };
        let _ = t1.join();
        let _ = t2.join();
        let stdout = stdout.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let stderr = stderr.lock().unwrap_or_else(|e| e.into_inner()).clone();
        HostExit {
            status,
            stdout,
            stderr,
        }
    }

    /// Start the host serving every URL with the C fixture `name` (see
    /// [`c_fixture_str`]), plus `extra` arguments.
    pub fn with_c_fixture(name: &str, extra: &[&str]) -> Host {
        let lib = c_fixture_str(name);
        let mut args = vec!["--extension", lib.as_str()];
        args.extend_from_slice(extra);
        Host::start(&args)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Process id of the process that serves requests, whose /proc the
    /// tests read (memory, threads, sockets): under the supervisor (the
    /// default on Linux) its first worker, else the host process itself.
    /// Signals go to [`Host::supervisor_pid`].
    pub fn pid(&self) -> u32 {
        let host = self.supervisor_pid();
        if windows_host() {
            return host;
        }
        std::fs::read_to_string(format!("/proc/{host}/task/{host}/children"))
            .ok()
            .and_then(|c| c.split_whitespace().next()?.parse().ok())
            .unwrap_or(host)
    }

    /// Process id of the host process started (the supervisor, unless
    /// `--no-supervisor`): the one signals go to.
    pub fn supervisor_pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Everything the host wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Everything the host wrote to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Wait until stderr contains `pattern` (plain substring). Returns false on
    /// timeout.
    pub fn wait_for_log(&self, pattern: &str, timeout: Duration) -> bool {
        self.wait_for_log_matching(|s| s.contains(pattern), timeout)
    }

    /// Wait until `pred(stderr)` holds. Returns false on timeout.
    pub fn wait_for_log_matching(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> bool {
        Self::wait_for(&self.stderr, pred, timeout)
    }

    /// Wait until the access log (on stdout, the default) contains `pattern`.
    /// Returns false on timeout.
    pub fn wait_for_access_log(&self, pattern: &str, timeout: Duration) -> bool {
        Self::wait_for(&self.stdout, |s| s.contains(pattern), timeout)
    }

    fn wait_for(out: &Mutex<String>, pred: impl Fn(&str) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&out.lock().unwrap_or_else(|e| e.into_inner())) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// How many TCP sockets of the host listen: [`listening_sockets`] of its
    /// pid. A Windows host's sockets live in wineserver, not in the Wine
    /// process's descriptor table, so for it this counts every listening socket
    /// on the host's port instead (the port is the host's own, from port 0).
    pub fn listening_sockets(&self) -> usize {
        if windows_host() {
            listening_on_port(self.addr.port())
        } else {
            listening_sockets(self.pid())
        }
    }

    /// Resident set size of the host in KiB (from /proc/<pid>/status VmRSS).
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid())
    }

    /// Send SIGTERM and wait (up to 30 s) for the process to exit. Returns its
    /// exit status; panics if it does not exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.terminate_timeout(Duration::from_secs(30))
    }

    /// Ask the host to shut down gracefully (without waiting): SIGTERM on
    /// Unix. A Windows host under Wine gets SIGINT instead, which Wine turns
    /// into the console's Ctrl+C event (its SIGTERM ends the process at once,
    /// as `TerminateProcess` would).
    pub fn signal_term(&self) {
        let sig = if windows_host() { "-INT" } else { "-TERM" };
        send_signal(self.supervisor_pid(), sig);
    }

    /// SIGTERM, then wait up to `timeout` for the exit.
    pub fn terminate_timeout(&mut self, timeout: Duration) -> ExitStatus {
        self.signal_term();
        self.wait_exit(timeout)
    }

    /// Wait up to `timeout` for the process to exit on its own; panics (with
    /// stderr) on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("host already reaped");
        match wait_timeout(child, timeout) {
            Some(s) => {
                // Let stdout and stderr drain to their ends (each ends with the
                // process, or with a child that inherited it), for 5 s at most:
                // a pipe can lag behind the exit, under load and under Wine.
                let drained = Instant::now() + Duration::from_secs(5);
                while !self.readers.iter().all(|r| r.is_finished()) && Instant::now() < drained {
                    thread::sleep(Duration::from_millis(10));
                }
                s
            }
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "isapi-host did not exit within {timeout:?}\n--- stderr ---\n{}",
                    self.stderr()
                );
            }
        }
    }

    /// Open a raw connection to the host.
    pub fn connect(&self) -> RawConn {
        RawConn::connect(self.addr).expect("connect to host")
    }

    /// One `GET path` on a fresh connection (with `Connection: close`).
    pub fn get(&self, path: &str) -> Response {
        get(self.addr, path)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        if thread::panicking() {
            thread::sleep(Duration::from_millis(50));
            eprintln!(
                "--- isapi-host {:?} stderr (test failed) ---\n{}\n--- end of stderr ---",
                self.args,
                self.stderr()
            );
        }
    }
}

/// Sends `sig` (`-TERM`, `-HUP`, `-STOP`...) to process `pid` with `kill`;
/// panics if it fails.
pub fn send_signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(sig)
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {sig} {pid} failed");
}

/// Poll `child` until it exits or `timeout` passes.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
