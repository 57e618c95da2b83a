//! Shared helpers for the end-to-end test binaries of the root package
//! (`tests/e2e.rs` and `tests/wsgi.rs`).
//!
//! Everything here talks to the *real* `isapi-host` binary over real
//! loopback sockets:
//!
//! - [`Host`] starts `isapi-host serve --bind 127.0.0.1:0 ...`, waits for the
//!   `isapi-host listening on http://ADDR` line on stdout, captures stderr, and
//!   kills the process on drop (printing the captured stderr if the test is
//!   panicking).
//! - [`c_fixture`] compiles a C extension from `fixtures/isapi-c/<name>.c` once
//!   per test process; [`pyisapie_lib`] locates `libpyisapie.so`.
//! - [`RawConn`] is a raw TCP client for byte-exact framing, keep-alive and
//!   pipelining checks; responses are parsed by the harness crate's strict
//!   reader ([`isapi_harness::wire`]).
//! - [`http_get`] / [`get`] / [`request`] are one-shot conveniences.
//!
//! The host runs with `RUST_LOG=info` (override with `ISAPI_HOST_TEST_LOG`), since
//! tests read its access log and traces from stderr.
//!
//! # Running the suites against another build of the host (Windows under Wine)
//!
//! The same test binaries drive a Windows build of the host (see
//! `ci/windows-test.sh`), through these environment variables:
//!
//! - `ISAPI_HOST_TEST_BIN`: the host binary to run (default: the one cargo built
//!   for these tests). A name ending in `.exe` makes it a Windows host.
//! - `ISAPI_HOST_TEST_RUNNER`: a program that runs it (e.g. `/usr/lib/wine/wine64`).
//! - `ISAPI_TEST_FIXTURE_DIR`: prebuilt C fixtures (`hello.dll`, ... or
//!   `libhello.so`, ...) instead of compiling `fixtures/isapi-c/*.c` with `cc`.
//! - `ISAPI_TEST_PYISAPIE`: the pyisapie library (default: next to the host binary).
//! - `ISAPI_TEST_SKIP_LOG`: a file each skipped test appends one line to.
//!
//! With a Windows host, every path handed to it goes through [`host_path`]
//! (`/abs/path` becomes `Z:\abs\path`, Wine's default mapping of `/`), and
//! tests that expect a path back expect the Windows form ([`host_join`]). Tests
//! that cannot run there call [`skip_on_windows`], which prints
//! `SKIPPED: <test>: <reason>` and makes the test return without asserting.
//!
//! Each binary uses a subset of these helpers (and of the re-exports), hence
//! the `dead_code` and `unused_imports` allowances.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

pub use isapi_harness::fixtures::{self, FNV1A64_INIT, fnv1a64};
pub use isapi_harness::procfs::{
    self, listening_on_port, listening_sockets, peak_rss_kib, rss_kib, threads_named,
};
pub use isapi_harness::wire::{self, Framing, PeerState, ReadOptions, Response, WireError};

/// The host binary cargo built for these tests (the Linux one).
pub const HOST_BIN: &str = env!("CARGO_BIN_EXE_isapi-host");

/// The host binary under test: `$ISAPI_HOST_TEST_BIN`, else [`HOST_BIN`].
pub fn host_bin() -> PathBuf {
    match std::env::var_os("ISAPI_HOST_TEST_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(HOST_BIN),
    }
}

/// The program that runs the host binary (`$ISAPI_HOST_TEST_RUNNER`, e.g.
/// Wine's loader), if any.
pub fn host_runner() -> Option<PathBuf> {
    std::env::var_os("ISAPI_HOST_TEST_RUNNER")
        .filter(|r| !r.is_empty())
        .map(PathBuf::from)
}

/// Whether the host under test is a Windows build (its binary ends in `.exe`).
pub fn windows_host() -> bool {
    static WINDOWS: OnceLock<bool> = OnceLock::new();
    *WINDOWS.get_or_init(|| {
        host_bin()
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("exe"))
    })
}

/// The drive Wine maps the Unix root `/` to (its default).
pub const WINE_ROOT_DRIVE: &str = "Z:";

/// `path` as the host under test names it. For a Windows host, an absolute
/// Unix path becomes the Windows path Wine maps it to (`/a/b` ->
/// `Z:\a\b`); otherwise (and for relative paths) the path is unchanged.
pub fn host_path(path: impl AsRef<Path>) -> String {
    let s = path.as_ref().to_str().expect("utf-8 path");
    if windows_host() && s.starts_with('/') {
        format!("{WINE_ROOT_DRIVE}{}", s.replace('/', "\\"))
    } else {
        s.to_owned()
    }
}

/// The host's path separator: `\` for a Windows host, `/` otherwise.
pub fn host_sep() -> char {
    if windows_host() { '\\' } else { '/' }
}

/// `root` (as the host names it) joined with the `/`-separated `rel`, in the
/// host's own form: what `PATH_TRANSLATED` or `MAP_URL_TO_PATH` give for the
/// URL `/rel` below the document root `root`.
pub fn host_join(root: &str, rel: &str) -> String {
    let sep = host_sep();
    let mut out = root.trim_end_matches(sep).to_owned();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        out.push(sep);
        out.push_str(part);
    }
    out
}

/// The name of the running test (libtest names each test's thread after it).
pub fn current_test() -> String {
    thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned()
}

/// Record that the running test is skipped, and why: prints
/// `SKIPPED: <test>: <reason>` on stderr and appends the same line to
/// `$ISAPI_TEST_SKIP_LOG` if set (ci/windows-test.sh counts those lines, so a
/// skipped test never counts as a pass). The caller returns right after.
pub fn skip(reason: &str) {
    let line = format!("SKIPPED: {}: {reason}", current_test());
    eprintln!("{line}");
    if let Some(log) = std::env::var_os("ISAPI_TEST_SKIP_LOG").filter(|l| !l.is_empty()) {
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = appended {
            panic!("cannot append to ISAPI_TEST_SKIP_LOG {log:?}: {e}");
        }
    }
}

/// With a Windows host, skips the running test (see [`skip`]) and returns true;
/// the test then returns without asserting. Returns false otherwise.
pub fn skip_on_windows(reason: &str) -> bool {
    if windows_host() {
        skip(reason);
        true
    } else {
        false
    }
}

/// Root of the repository (the root package's manifest directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// How long [`Host::start`] waits for the `listening on` line (a Wine process
/// starts in about a second, the first in a fresh prefix in several).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Default read timeout of [`RawConn`].
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Host process
// ---------------------------------------------------------------------------

/// A running `isapi-host serve` process.
#[derive(Debug)]
pub struct Host {
    child: Option<Child>,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
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
fn spawn_stdout_reader(out: ChildStdout, sink: Arc<Mutex<String>>, tx: mpsc::Sender<SocketAddr>) {
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
    });
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
        let mut cmd = host_command(args, envs);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            format!(
                "cannot spawn {}: {e} (build it: cargo build -p isapi-host)",
                host_bin().display()
            )
        })?;
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        spawn_stdout_reader(
            child.stdout.take().expect("piped stdout"),
            stdout.clone(),
            tx,
        );
        let err_pipe: ChildStderr = child.stderr.take().expect("piped stderr");
        spawn_reader(err_pipe, stderr.clone());
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
                thread::sleep(Duration::from_millis(100)); // let the readers drain
                return Err(format!(
                    "isapi-host {args_owned:?} did not start ({}).\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    match exited {
                        Some(s) => format!("exited with {s}"),
                        None => format!("no `listening on` line within {STARTUP_TIMEOUT:?}"),
                    },
                    stdout.lock().unwrap_or_else(|e| e.into_inner()),
                    stderr.lock().unwrap_or_else(|e| e.into_inner()),
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
        let mut cmd = host_command(args, envs);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn isapi-host");
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

    /// Process id of the host.
    pub fn pid(&self) -> u32 {
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
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.stderr.lock().unwrap_or_else(|e| e.into_inner())) {
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
        let status = Command::new("kill")
            .arg(sig)
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} {} failed", self.pid());
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
                thread::sleep(Duration::from_millis(50)); // let the readers drain
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

/// A text file an extension wrote, with the C runtime's text-mode line ends
/// (`\r\n` on Windows) read back as `\n`; "" if it does not exist.
pub fn read_extension_text(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    if windows_host() {
        text.replace("\r\n", "\n")
    } else {
        text
    }
}

// ---------------------------------------------------------------------------
// Extensions under test
// ---------------------------------------------------------------------------

/// Directory of the C fixtures.
pub fn c_fixture_dir() -> PathBuf {
    repo_root().join("fixtures").join("isapi-c")
}

/// Compile `fixtures/isapi-c/<name>.c` into a shared library (once per test
/// process) under `CARGO_TARGET_TMPDIR` and return its path: the harness's
/// [`fixtures::compile`] (`-shared -fPIC -pthread -Wall -Wextra -Werror`) plus
/// `$ISAPI_FIXTURE_CFLAGS`, e.g. `"-fsanitize=address -g"` (run the host with
/// `ISAPI_HOST_TEST_LD_PRELOAD=libasan.so.8`); builds with extra flags go to
/// their own directory. With `$ISAPI_TEST_FIXTURE_DIR`, the prebuilt library
/// there instead. Panics with the compiler output on failure.
pub fn c_fixture(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("ISAPI_TEST_FIXTURE_DIR").filter(|d| !d.is_empty()) {
        let dir = Path::new(&dir);
        return fixtures::prebuilt(dir, name, windows_host()).unwrap_or_else(|| {
            panic!(
                "fixture {name} not found in ISAPI_TEST_FIXTURE_DIR={} (looked for {:?})",
                dir.display(),
                fixtures::prebuilt_names(name, windows_host())
            )
        });
    }
    let extra: Vec<String> = std::env::var("ISAPI_FIXTURE_CFLAGS")
        .map(|v| v.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let out_root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    fixtures::compile(&c_fixture_dir(), name, out_root, &extra).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The file name (without extension) of the fixture library `name` as the host
/// reports it in errors: `libname` when compiled here, `name` for a prebuilt
/// Windows DLL.
pub fn c_fixture_stem(name: &str) -> String {
    c_fixture(name)
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("utf-8 fixture name")
        .to_owned()
}

/// `c_fixture(name)` as the host names it (see [`host_path`]), as a `String`
/// (handy for building argument lists).
pub fn c_fixture_str(name: &str) -> String {
    host_path(c_fixture(name))
}

/// The workspace's own extension: `$ISAPI_TEST_PYISAPIE`, else
/// `libpyisapie.so` next to the host binary (`pyisapie.dll` for a Windows
/// host). Panics if it has not been built.
pub fn pyisapie_lib() -> PathBuf {
    let lib = match std::env::var_os("ISAPI_TEST_PYISAPIE").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => {
            let bin = host_bin();
            let dir = bin.parent().expect("host binary has a parent dir");
            let name = if windows_host() {
                "pyisapie.dll".to_owned()
            } else {
                format!(
                    "{}pyisapie{}",
                    std::env::consts::DLL_PREFIX,
                    std::env::consts::DLL_SUFFIX
                )
            };
            dir.join(name)
        }
    };
    assert!(
        lib.is_file(),
        "{} not found: build it first: cargo build -p pyisapie",
        lib.display()
    );
    lib
}

// ---------------------------------------------------------------------------
// Raw TCP client
// ---------------------------------------------------------------------------

/// A raw HTTP/1.x client connection: the harness's [`wire::Conn`] (requests
/// written verbatim, responses read by its strict reader, which never consumes
/// bytes past the end of one response, so keep-alive and pipelining can be
/// checked), with conveniences that panic instead of returning errors.
#[derive(Debug)]
pub struct RawConn {
    conn: wire::Conn,
}

impl RawConn {
    /// Connect with TCP_NODELAY and a [`READ_TIMEOUT`] read timeout.
    pub fn connect(addr: SocketAddr) -> io::Result<RawConn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        Ok(RawConn {
            conn: wire::Conn::new(stream),
        })
    }

    /// The socket.
    pub fn stream(&self) -> &TcpStream {
        self.conn.stream()
    }

    /// The buffered connection (for custom raw reads that must not lose
    /// buffered bytes).
    pub fn reader(&mut self) -> &mut wire::Conn {
        &mut self.conn
    }

    /// Set the read timeout.
    pub fn set_read_timeout(&self, t: Option<Duration>) {
        self.conn.set_read_timeout(t).expect("set_read_timeout");
    }

    /// Write all bytes (panics on error).
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).expect("send request bytes");
    }

    /// Write all bytes.
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.conn.send(bytes)
    }

    /// Half-close the sending side (the server sees EOF).
    pub fn shutdown_write(&self) {
        let _ = self.stream().shutdown(std::net::Shutdown::Write);
    }

    /// Read the next final response (1xx interim responses are collected into
    /// [`Response::interim`]).
    pub fn read_response(&mut self) -> Result<Response, WireError> {
        self.conn.read_response(false)
    }

    /// Read the response to a HEAD request (no body whatever the headers say).
    pub fn read_response_to_head(&mut self) -> Result<Response, WireError> {
        self.conn.read_response(true)
    }

    /// Read the next response, returning 1xx interim responses on their own.
    pub fn read_response_or_interim(&mut self) -> Result<Response, WireError> {
        self.conn.read_response_with(ReadOptions {
            head_request: false,
            return_interim: true,
        })
    }

    /// Send a request and read its response (panics on a wire error).
    pub fn roundtrip(&mut self, request: &[u8]) -> Response {
        self.send(request);
        match self.read_response() {
            Ok(r) => r,
            Err(e) => panic!(
                "reading response to {:?}: {e}",
                String::from_utf8_lossy(request)
            ),
        }
    }

    /// Read raw bytes until `n` bytes arrived, EOF, or the read timeout.
    pub fn read_raw(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        while out.len() < n {
            let want = (n - out.len()).min(buf.len());
            match self.conn.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(k) => out.extend_from_slice(&buf[..k]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        out
    }

    /// Read raw bytes until the peer closes (or resets) the connection or the
    /// read timeout expires. Returns the bytes and whether EOF/reset was seen.
    pub fn read_until_close(&mut self) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match self.conn.read(&mut buf) {
                Ok(0) => return (out, true),
                Ok(k) => out.extend_from_slice(&buf[..k]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::BrokenPipe
                    ) =>
                {
                    return (out, true);
                }
                Err(_) => return (out, false),
            }
        }
    }

    /// Bytes received but not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        self.conn.buffered()
    }

    /// What the peer does within `timeout`: closes, stays silent, or sends
    /// unexpected bytes (buffered leftovers count as data).
    pub fn peer_state(&mut self, timeout: Duration) -> PeerState {
        self.conn.wait_closed(timeout).unwrap_or(PeerState::Closed)
    }

    /// True if the peer closes the connection within 3 s (a leftover or new
    /// byte also counts as "not closed").
    pub fn is_closed(&mut self) -> bool {
        self.peer_state(Duration::from_secs(3)) == PeerState::Closed
    }

    /// True if the connection stays open and silent for `timeout`.
    pub fn stays_open(&mut self, timeout: Duration) -> bool {
        self.peer_state(timeout) == PeerState::Open
    }
}

// ---------------------------------------------------------------------------
// One-shot helpers
// ---------------------------------------------------------------------------

/// `GET path HTTP/1.1` with `Connection: close` on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// Send raw request bytes on a fresh connection and read one response
/// (panics on a wire error).
pub fn request(addr: SocketAddr, raw: &[u8]) -> Response {
    let mut c = RawConn::connect(addr).expect("connect");
    c.roundtrip(raw)
}

/// `GET path`, returning `(status, headers, body)`.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let r = get(addr, path);
    (r.status, r.headers, r.body)
}

/// A `POST` request with a Content-Length body (keep-alive).
pub fn post_request(addr: SocketAddr, path: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// Encode `body` with chunked transfer coding, in chunks of `chunk` bytes.
pub fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / chunk.max(1) * 10 + 8);
    for part in body.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Deterministic pseudo-random bytes (xorshift), for upload bodies.
pub fn pattern_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&b[..take]);
    }
    out
}

/// `GET path HTTP/1.1` request bytes (keep-alive, no body).
pub fn get_req(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

/// A fresh, empty directory for one test, under
/// `CARGO_TARGET_TMPDIR/test-dirs/<pid>/`. The directories of earlier test
/// processes that have exited are removed the first time this is called, so
/// runs do not accumulate files (and a failed run's files stay until the next).
pub fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    static SWEEP: OnceLock<()> = OnceLock::new();
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-dirs");
    SWEEP.get_or_init(|| {
        if let Ok(entries) = std::fs::read_dir(&base) {
            for e in entries.flatten() {
                let name = e.file_name();
                let alive = name
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(procfs::process_exists);
                if !alive {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    });
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = base
        .join(std::process::id().to_string())
        .join(format!("{tag}-{n}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Body as UTF-8 (lossy), for assertions and messages.
pub fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}
