//! Servers by name: starting them on a free loopback port, waiting until they
//! answer, measuring them and stopping them.
//!
//! Names: `host-py` (our isapi-host + pyisapie), `host-c` (our host + the C
//! fixtures), `gunicorn` (gthread), `waitress`, `granian` (WSGI),
//! `bare-hyper` (a plain hyper server inside this binary; bench only) and
//! `cmd:<shell template>` with `{port}`, `{app}` (`module:callable`) and
//! `{dir}` (the WSGI fixture directory) placeholders.
//!
//! The Windows builds run under Wine, from the layout `ci/windows.sh` writes
//! (`--windows-out`, default `target/windows/out`): `host-c-win` is
//! `bin/isapi-host.exe` with the PE fixtures of `fixtures/` (`hello.dll`, ...),
//! `host-py-win-py3XX` is `py3XX/isapi-host.exe` with the `pyisapie.dll` and
//! embeddable CPython of that folder, and `host-py-win` the first `py3XX`
//! folder there (or `--windows-python`). Paths handed to them are Wine's
//! `Z:\...` form; their stdout and stderr are pipes (embedded CPython under
//! Wine cannot start with a regular file as its stderr).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cases::Target;
use crate::{fixtures, procfs};

/// The names `--server` accepts besides `cmd:...` and `host-py-win-py3XX`.
pub const KNOWN: &[&str] = &[
    "host-py",
    "host-c",
    "host-py-win",
    "host-c-win",
    "gunicorn",
    "waitress",
    "granian",
    "bare-hyper",
];

/// The prefix of `host-py-win-py3XX` (the Windows host with the pyisapie.dll
/// and CPython of `--windows-out`'s `py3XX` folder).
const HOST_PY_WIN_PREFIX: &str = "host-py-win-";

/// URL prefix → C fixture (without `.c`) for `host-c`; everything else goes to `hello`.
pub const HOST_C_MAPS: &[(&str, &str)] = &[
    ("/echo", "echo"),
    ("/count", "echo"),
    ("/short-cl", "misbehave"),
    ("/long-cl", "misbehave"),
    ("/no-headers", "misbehave"),
    ("/error", "misbehave"),
    ("/error-after-headers", "misbehave"),
    ("/bad-chunks", "misbehave"),
    ("/good-chunks", "misbehave"),
];

/// A server as named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// The name as given (`host-py`, `cmd:...`).
    pub name: String,
}

impl ServerSpec {
    /// Checks a `--server` name.
    pub fn parse(name: &str) -> Result<ServerSpec> {
        let py_win_folder = name
            .strip_prefix(HOST_PY_WIN_PREFIX)
            .is_some_and(is_py_folder_name);
        if KNOWN.contains(&name) || py_win_folder || (name.starts_with("cmd:") && name.len() > 4) {
            Ok(ServerSpec {
                name: name.to_owned(),
            })
        } else {
            bail!(
                "unknown server {name:?}; known: {}, host-py-win-py3XX, or cmd:<template with {{port}}>",
                KNOWN.join(", ")
            )
        }
    }

    /// Which case targets this server runs.
    pub fn target(&self) -> Target {
        if self.name == "host-c" || self.name == "host-c-win" || self.name == "bare-hyper" {
            Target::Isapi
        } else {
            Target::Wsgi
        }
    }

    /// One of ours: the host, Linux or Windows build, with pyisapie or the C fixtures.
    pub fn is_ours(&self) -> bool {
        self.name == "host-py" || self.name == "host-c" || self.is_windows()
    }

    /// Whether a failed case fails a `conform` run: for our servers, and for a
    /// `cmd:` server (one under test); not for the named peers, which are
    /// reference columns known to fail some cases.
    pub fn must_pass(&self) -> bool {
        self.is_ours() || self.name.starts_with("cmd:")
    }

    /// A Windows build of our host, run under Wine.
    pub fn is_windows(&self) -> bool {
        self.name == "host-c-win" || self.name.starts_with("host-py-win")
    }

    /// A short label for reports (cmd: templates are abbreviated).
    pub fn label(&self) -> String {
        match self.name.strip_prefix("cmd:") {
            Some(t) => {
                let first = t.split_whitespace().next().unwrap_or("cmd");
                let base = Path::new(first)
                    .file_name()
                    .and_then(|s| s.to_str())
                    .unwrap_or(first);
                format!("cmd:{base}")
            }
            None => self.name.clone(),
        }
    }
}

/// Everything needed to launch servers.
#[derive(Debug, Clone)]
pub struct Env {
    /// Repository root (holds fixtures/).
    pub repo: PathBuf,
    /// The isapi-host binary (libpyisapie.so is expected next to it).
    pub host_bin: PathBuf,
    /// The virtualenv with gunicorn, waitress and granian.
    pub venv: PathBuf,
    /// Thread budget for every server (1 process, N threads).
    pub threads: usize,
    /// Directory for logs and compiled fixtures.
    pub out_dir: PathBuf,
    /// WSGI module:callable in fixtures/wsgi (conform_app:app or bench_app:app).
    pub wsgi_app: String,
    /// Extra args for every server (e.g. backlog for benchmarks) — unused by default.
    pub bench_mode: bool,
    /// The Windows build's layout (`ci/windows.sh`'s `target/windows/out`).
    pub windows_out: PathBuf,
    /// The `py3XX` folder `host-py-win` uses (None: the first one in `windows_out`).
    pub windows_python: Option<String>,
    /// Wine's 64-bit loader, which runs the Windows servers.
    pub wine: PathBuf,
}

/// `py3XX` (one or more digits after `py3`).
fn is_py_folder_name(s: &str) -> bool {
    s.strip_prefix("py3")
        .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
}

/// `path` as a Windows program under Wine names it: `/a/b` -> `Z:\a\b` (Wine maps
/// the Unix root to drive Z: by default). Relative paths are only re-separated.
pub fn wine_path(path: &Path) -> String {
    let s = path.to_string_lossy();
    let win = s.replace('/', "\\");
    if s.starts_with('/') {
        format!("Z:{win}")
    } else {
        win
    }
}

impl Env {
    /// The WSGI fixture directory (`fixtures/wsgi`), every server's working directory.
    pub fn wsgi_dir(&self) -> PathBuf {
        self.repo.join("fixtures/wsgi")
    }

    /// The `py3XX` folder of `windows_out` a `host-py-win*` server runs from.
    pub fn windows_python_dir(&self, spec: &ServerSpec) -> Result<PathBuf> {
        let folder = match spec.name.strip_prefix(HOST_PY_WIN_PREFIX) {
            Some(f) => f.to_owned(),
            None => match &self.windows_python {
                Some(f) => f.clone(),
                None => self
                    .windows_python_folders()
                    .into_iter()
                    .next()
                    .with_context(|| {
                        format!(
                            "no py3XX folder in {} (build it: ci/windows.sh)",
                            self.windows_out.display()
                        )
                    })?,
            },
        };
        Ok(self.windows_out.join(folder))
    }

    /// The `py3XX` folders of `windows_out`, sorted.
    pub fn windows_python_folders(&self) -> Vec<String> {
        let mut found: Vec<String> = std::fs::read_dir(&self.windows_out)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| is_py_folder_name(n))
                    .collect()
            })
            .unwrap_or_default();
        found.sort_by_key(|n| (n.len(), n.clone()));
        found
    }

    /// A PE fixture of `windows_out/fixtures` (`<name>.dll`), if it exists.
    pub fn windows_fixture(&self, name: &str) -> Option<PathBuf> {
        fixtures::prebuilt(&self.windows_out.join("fixtures"), name, true)
    }

    /// `wine64 --version`, for reports.
    fn wine_version(&self) -> String {
        Command::new(&self.wine)
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "wine".into())
    }

    fn logs_dir(&self) -> PathBuf {
        self.out_dir.join("logs")
    }

    /// Describe a server's launch for reports: version and settings.
    pub fn describe(&self, spec: &ServerSpec) -> String {
        let t = self.threads;
        let bench = |flags: &str| {
            if self.bench_mode {
                format!(" {flags}")
            } else {
                String::new()
            }
        };
        let host_flags = bench("--access-log off --max-body 1073741824");
        let ver = |p: &str| self.pkg_version(p).unwrap_or_else(|| "?".into());
        match spec.name.as_str() {
            "host-py" => format!(
                "isapi-host + pyisapie ({}), --threads {t}{host_flags}",
                self.wsgi_app
            ),
            "host-c" => format!(
                "isapi-host + C fixtures (hello, echo, misbehave), --threads {t}{host_flags}"
            ),
            "gunicorn" => format!(
                "gunicorn {} -k gthread -w 1 --threads {t}{}",
                ver("gunicorn"),
                bench("--backlog 2048 --worker-connections 2048")
            ),
            "waitress" => format!(
                "waitress {} --threads={t}{}",
                ver("waitress"),
                bench("--backlog=2048 --connection-limit=2048")
            ),
            "granian" => format!(
                "granian {} --interface wsgi --workers 1 --blocking-threads {t}{}",
                ver("granian"),
                bench("--backlog 2048")
            ),
            "host-c-win" => format!(
                "isapi-host.exe + PE C fixtures (hello, echo, misbehave) under {}, --threads {t}{host_flags}",
                self.wine_version()
            ),
            name if name.starts_with("host-py-win") => {
                let folder = self
                    .windows_python_dir(spec)
                    .ok()
                    .and_then(|d| d.file_name().map(|f| f.to_string_lossy().into_owned()))
                    .unwrap_or_else(|| "?".into());
                format!(
                    "isapi-host.exe + pyisapie.dll ({}) with the embeddable CPython of {folder} under {}, --threads {t}{host_flags}",
                    self.wsgi_app,
                    self.wine_version()
                )
            }
            "bare-hyper" => format!("hyper 1.x in isapi-harness, tokio worker threads {t}"),
            other => other.to_owned(),
        }
    }

    /// Version of a Python package in the venv.
    pub fn pkg_version(&self, pkg: &str) -> Option<String> {
        let out = Command::new(self.venv.join("bin/python"))
            .args([
                "-c",
                &format!("import importlib.metadata as m; print(m.version({pkg:?}))"),
            ])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

/// A running server process (or process group).
#[derive(Debug)]
pub struct Running {
    /// Which server.
    pub spec: ServerSpec,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its stdout and stderr.
    pub log: PathBuf,
    child: Child,
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

/// Compile `fixtures/isapi-c/<name>.c` into `OUT/isapi-c` (once per process).
pub fn compile_c_fixture(env: &Env, name: &str) -> Result<PathBuf> {
    fixtures::compile(&env.repo.join("fixtures/isapi-c"), name, &env.out_dir, &[])
}

/// Which C fixtures `host-c` has (those that compiled).
pub fn available_c_fixtures(env: &Env) -> Vec<String> {
    ["hello", "echo", "misbehave"]
        .iter()
        .filter(|n| compile_c_fixture(env, n).is_ok())
        .map(|s| (*s).to_owned())
        .collect()
}

/// Which C fixtures a server has: `host-c-win` the PE DLLs of `windows_out`,
/// the others those that compile here.
pub fn available_c_fixtures_for(env: &Env, spec: &ServerSpec) -> Vec<String> {
    if spec.name == "host-c-win" {
        ["hello", "echo", "misbehave"]
            .iter()
            .filter(|n| env.windows_fixture(n).is_some())
            .map(|s| (*s).to_owned())
            .collect()
    } else {
        available_c_fixtures(env)
    }
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
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

/// Start a server and wait until it answers HTTP.
pub fn start(env: &Env, spec: &ServerSpec) -> Result<Running> {
    let (log, file) = log_file(env, spec)?;
    let t = env.threads.to_string();
    let mut cmd;
    let mut port = None;
    // Wine: stderr must be a pipe, copied into the log by a thread.
    let mut pipe_stderr = false;
    match spec.name.as_str() {
        name if spec.is_windows() => {
            let (exe, is_py) = if name == "host-c-win" {
                (env.windows_out.join("bin").join("isapi-host.exe"), false)
            } else {
                (env.windows_python_dir(spec)?.join("isapi-host.exe"), true)
            };
            if !exe.exists() {
                bail!(
                    "{} not found (build the Windows binaries: ci/windows.sh, or pass --windows-out)",
                    exe.display()
                );
            }
            if !env.wine.exists() {
                bail!(
                    "Wine's loader {} not found (apt-get install wine64, or pass --wine)",
                    env.wine.display()
                );
            }
            cmd = Command::new(&env.wine);
            cmd.arg(&exe);
            cmd.args(["serve", "--bind", "127.0.0.1:0", "--threads", &t]);
            if env.bench_mode {
                cmd.args(["--max-body", "1073741824", "--access-log", "off"]);
            }
            if is_py {
                cmd.args(["--app", &env.wsgi_app, "--python-path"])
                    .arg(wine_path(&env.wsgi_dir()));
            } else {
                let hello = env.windows_fixture("hello").with_context(|| {
                    format!(
                        "{} has no fixtures/hello.dll (build it: ci/windows.sh)",
                        env.windows_out.display()
                    )
                })?;
                cmd.arg("--extension").arg(wine_path(&hello));
                for (prefix, fixture) in HOST_C_MAPS {
                    if let Some(lib) = env.windows_fixture(fixture) {
                        cmd.arg("--map")
                            .arg(format!("{prefix}={}", wine_path(&lib)));
                    }
                }
            }
            cmd.env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            );
            // Quiet, no Mono/Gecko installers, and the prefix ci/windows.sh uses,
            // unless the caller chose otherwise.
            for (k, v) in [
                ("WINEDEBUG", "-all"),
                ("WINEDLLOVERRIDES", "mscoree,mshtml="),
            ] {
                if std::env::var_os(k).is_none() {
                    cmd.env(k, v);
                }
            }
            if std::env::var_os("WINEPREFIX").is_none() {
                cmd.env("WINEPREFIX", env.repo.join("target/windows/wineprefix"));
            }
            pipe_stderr = true;
        }
        "host-py" | "host-c" => {
            if !env.host_bin.exists() {
                bail!(
                    "isapi-host binary not found at {} (build it: cargo build -p isapi-host, or pass --host-bin)",
                    env.host_bin.display()
                );
            }
            cmd = Command::new(&env.host_bin);
            cmd.args(["serve", "--bind", "127.0.0.1:0", "--threads", &t]);
            if env.bench_mode {
                // IIS's default request limit (30 MB) would refuse the 100 MiB upload benchmark;
                // waitress's default is 1 GiB, granian and gunicorn have none
                cmd.args(["--max-body", "1073741824"]);
                // like the peers (none writes an access log by default)
                cmd.args(["--access-log", "off"]);
            }
            if spec.name == "host-py" {
                cmd.args(["--app", &env.wsgi_app, "--python-path"])
                    .arg(env.wsgi_dir());
            } else {
                let hello = compile_c_fixture(env, "hello")?;
                cmd.arg("--extension").arg(&hello);
                for (prefix, fixture) in HOST_C_MAPS {
                    if let Ok(lib) = compile_c_fixture(env, fixture) {
                        cmd.arg("--map").arg(format!("{prefix}={}", lib.display()));
                    }
                }
            }
            cmd.env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            );
        }
        "gunicorn" | "waitress" | "granian" => {
            let p = free_port()?;
            port = Some(p);
            let bin = env.venv.join("bin").join(if spec.name == "waitress" {
                "waitress-serve"
            } else {
                spec.name.as_str()
            });
            if !bin.exists() {
                bail!(
                    "{} not found (install the peers: {}/bin/pip install -r ci/peers-requirements.txt)",
                    bin.display(),
                    env.venv.display()
                );
            }
            cmd = Command::new(&bin);
            let ps = p.to_string();
            match spec.name.as_str() {
                "gunicorn" => {
                    cmd.args(["-k", "gthread", "-w", "1", "--threads", &t, "-b"]);
                    cmd.arg(format!("127.0.0.1:{p}"));
                    if env.bench_mode {
                        cmd.args(["--backlog", "2048", "--worker-connections", "2048"]);
                    }
                    cmd.arg(&env.wsgi_app);
                }
                "waitress" => {
                    cmd.arg(format!("--listen=127.0.0.1:{p}"));
                    cmd.arg(format!("--threads={t}"));
                    if env.bench_mode {
                        // waitress refuses connections beyond connection_limit (default 100)
                        cmd.args(["--backlog=2048", "--connection-limit=2048"]);
                    }
                    cmd.arg(&env.wsgi_app);
                }
                _ => {
                    cmd.args(["--interface", "wsgi", "--host", "127.0.0.1", "--port", &ps]);
                    cmd.args(["--workers", "1", "--blocking-threads", &t]);
                    if env.bench_mode {
                        cmd.args(["--backlog", "2048"]);
                    }
                    cmd.arg(&env.wsgi_app);
                }
            }
        }
        "bare-hyper" => {
            let exe = std::env::current_exe()?;
            cmd = Command::new(exe);
            cmd.args(["serve-bare", "--bind", "127.0.0.1:0", "--threads", &t]);
        }
        other => {
            let template = other.strip_prefix("cmd:").context("unknown server")?;
            let p = free_port()?;
            port = Some(p);
            let line = template
                .replace("{port}", &p.to_string())
                .replace("{app}", &env.wsgi_app)
                .replace("{dir}", &env.wsgi_dir().to_string_lossy())
                .replace("{threads}", &t);
            cmd = Command::new("sh");
            cmd.args(["-c", &format!("exec {line}")]);
        }
    }
    cmd.current_dir(env.wsgi_dir())
        .stdin(Stdio::null())
        .process_group(0);
    if pipe_stderr {
        cmd.stderr(Stdio::piped());
    } else {
        cmd.stderr(Stdio::from(file.try_clone()?));
    }
    // The venv's bin first on PATH (for cmd: templates), and unbuffered Python output.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![env.venv.join("bin")];
    paths.extend(std::env::split_paths(&path));
    cmd.env("PATH", std::env::join_paths(paths)?);
    cmd.env("PYTHONUNBUFFERED", "1");
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
        child,
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

impl Running {
    /// The process id (of the process group's leader).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// How the process ended, if it did (e.g. "signal: 9 (SIGKILL)").
    pub fn exit_status(&mut self) -> Option<String> {
        self.child.try_wait().ok().flatten().map(|s| s.to_string())
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .no_proxy()
            .build()?;
        let url = format!("http://{}/hello", self.addr);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
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
    pub fn rss_kib(&self) -> u64 {
        procfs::tree_rss_kib(self.child.id())
    }

    /// SIGTERM the process group, then SIGKILL after a grace period.
    pub fn stop(mut self) {
        let _ = kill_group(&mut self.child, Duration::from_secs(5));
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
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = kill_group(&mut self.child, Duration::from_secs(2));
        }
    }
}

/// Locate the repository root: `--repo`, else the harness's source checkout,
/// else the first ancestor of the current directory holding `fixtures/cases`.
pub fn find_repo(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return p
            .canonicalize()
            .with_context(|| format!("--repo {}", p.display()));
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if built.join("fixtures/cases").is_dir() {
        return Ok(built.canonicalize()?);
    }
    let mut dir = std::env::current_dir()?;
    loop {
        if dir.join("fixtures/cases").is_dir() {
            return Ok(dir);
        }
        if !dir.pop() {
            bail!("cannot find the repository (fixtures/cases); pass --repo");
        }
    }
}

/// Default isapi-host path: next to this executable.
pub fn default_host_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("isapi-host")))
        .unwrap_or_else(|| PathBuf::from("isapi-host"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        assert!(ServerSpec::parse("host-py").unwrap().is_ours());
        assert_eq!(ServerSpec::parse("host-c").unwrap().target(), Target::Isapi);
        assert_eq!(ServerSpec::parse("granian").unwrap().target(), Target::Wsgi);
        assert!(!ServerSpec::parse("waitress").unwrap().is_ours());
        let c = ServerSpec::parse("cmd:/opt/bin/uwsgi --http :{port}").unwrap();
        assert_eq!(c.label(), "cmd:uwsgi");
        assert!(c.must_pass() && !c.is_ours());
        assert!(ServerSpec::parse("host-c").unwrap().must_pass());
        assert!(!ServerSpec::parse("gunicorn").unwrap().must_pass());
        assert!(ServerSpec::parse("cmd:").is_err());
        assert!(ServerSpec::parse("nginx").is_err());
    }

    #[test]
    fn windows_server_names() {
        let c = ServerSpec::parse("host-c-win").unwrap();
        assert!(c.is_ours() && c.is_windows());
        assert_eq!(c.target(), Target::Isapi);
        for name in ["host-py-win", "host-py-win-py311", "host-py-win-py312"] {
            let p = ServerSpec::parse(name).unwrap();
            assert!(p.is_ours() && p.is_windows(), "{name}");
            assert_eq!(p.target(), Target::Wsgi, "{name}");
            assert_eq!(p.label(), name);
        }
        assert!(!ServerSpec::parse("host-c").unwrap().is_windows());
        for bad in [
            "host-py-win-",
            "host-py-win-py2",
            "host-py-win-py3",
            "host-py-win-py31x",
        ] {
            assert!(ServerSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wine_paths() {
        assert_eq!(
            wine_path(Path::new("/work/main/fixtures/wsgi")),
            r"Z:\work\main\fixtures\wsgi"
        );
        assert_eq!(wine_path(Path::new("rel/x.dll")), r"rel\x.dll");
    }
}
