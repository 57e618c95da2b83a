//! Command line and configuration file.
//!
//! Every setting can come from the command line, from the environment
//! (`ISAPI_HOST_<OPTION>`, read in [`cli`]) or from a TOML file given with
//! `--config`; the command line wins over the environment, which wins over
//! the file, which wins over the built-in default. [`settings`] declares the settings once,
//! for both; [`ServeConfig::resolve`] merges them into what the server runs
//! with.

mod bind;
mod cli;
mod settings;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::site::Site;

pub(crate) use cli::parse as parse_cli;
pub(crate) use settings::{
    AccessLogFormat, Cli, Command, CtlArgs, CtlCommand, InterpreterMode, LogFormat, Mapping,
    ServeArgs, Settings,
};
use settings::{
    DEFAULT_BIND, DEFAULT_HEADER_TIMEOUT, DEFAULT_IO_TIMEOUT, DEFAULT_KEEPALIVE_TIMEOUT,
    DEFAULT_MAX_BODY, DEFAULT_MAX_HEADER, DEFAULT_MAX_REQUESTS, DEFAULT_PYTHON_PARALLEL,
    DEFAULT_PYTHON_THREADS, DEFAULT_RAPID_FAIL_COUNT, DEFAULT_RAPID_FAIL_SECS, DEFAULT_READ_AHEAD,
    DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_THREADS, DEFAULT_YIELD, MAX_REPLICAS, MAX_YIELD_US,
    MIN_MAX_HEADER, normalize_prefix, parse_app, rapid_fail_parts,
};

/// What the WSGI sugar (`--app`, or no extension at all) asks of pyisapie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PythonApp {
    /// `MODULE:CALLABLE`.
    pub(crate) app: String,
    /// Directories for the Python path.
    pub(crate) python_path: Vec<PathBuf>,
    /// Where `app` was given, for messages: `--app`, `ISAPI_HOST_APP`, a file's key.
    pub(crate) source: String,
    /// `--interpreter`: pyisapie's mode for the app (its own default when unset).
    pub(crate) interpreter: Option<InterpreterMode>,
    /// `--replicas`: own-GIL sub-interpreters of the app (pyisapie's default, 1, when unset).
    pub(crate) replicas: Option<usize>,
}

/// The resolved settings the server runs with.
#[derive(Debug, Clone)]
pub(crate) struct ServeConfig {
    /// The address to listen on.
    pub(crate) bind: SocketAddr,
    /// Where `bind` was given (`--bind`, `ISAPI_HOST_BIND`, the file's key, the default).
    pub(crate) bind_origin: String,
    /// `--chdir`, absolute: the process changes to it before loading anything.
    pub(crate) chdir: Option<PathBuf>,
    /// Where each library of `maps` was given, for messages.
    pub(crate) lib_origins: Vec<(PathBuf, String)>,
    /// Mounts, longest prefix first.
    pub(crate) maps: Vec<Mapping>,
    /// The WSGI app pyisapie serves, for the WSGI sugar.
    pub(crate) python: Option<PythonApp>,
    /// Body bytes preloaded into the ECB.
    pub(crate) read_ahead: usize,
    /// The largest request body.
    pub(crate) max_body: u64,
    /// The largest request head.
    pub(crate) max_header: usize,
    /// Threads that run `HttpExtensionProc`.
    pub(crate) threads: usize,
    /// How many extension threads the pool runs at once while none is blocked.
    pub(crate) parallel: usize,
    /// The async runtime's worker threads.
    pub(crate) io_threads: usize,
    /// How long a thread out of work yields for more at most.
    pub(crate) yield_time: Duration,
    /// Shared with every request's `PATH_TRANSLATED`.
    pub(crate) doc_root: Arc<Path>,
    /// Log every callback.
    pub(crate) trace_callbacks: bool,
    /// The access log's format.
    pub(crate) access_log: AccessLogFormat,
    /// The access log's file or directory (else standard output), absolute.
    pub(crate) access_log_file: Option<PathBuf>,
    /// The host's own log's format.
    pub(crate) log_format: LogFormat,
    /// From a head's first byte to its end.
    pub(crate) header_timeout: Duration,
    /// Quiet between requests.
    pub(crate) keepalive_timeout: Duration,
    /// Quiet while an extension waits on the client.
    pub(crate) io_timeout: Duration,
    /// Requests in flight before new ones get 503.
    pub(crate) max_requests: usize,
    /// How long shutdown waits for requests in flight.
    pub(crate) shutdown_timeout: Duration,
    /// Worker processes (the web garden).
    #[cfg_attr(windows, allow(dead_code))] // the supervisor is Unix-only
    pub(crate) workers: usize,
    /// Whether a supervisor runs the workers (else one process serves).
    #[cfg_attr(windows, allow(dead_code))] // the supervisor is Unix-only
    pub(crate) supervisor: bool,
    /// Rapid-fail protection: this many crashes within the window stop restarts.
    #[cfg_attr(windows, allow(dead_code))] // the supervisor is Unix-only
    pub(crate) rapid_fail: (u32, Duration),
    /// Recycle a worker after this many requests.
    #[cfg_attr(windows, allow(dead_code))] // the supervisor is Unix-only
    pub(crate) recycle_requests: Option<u64>,
    /// Recycle a worker whose private memory exceeds this many MiB.
    #[cfg_attr(windows, allow(dead_code))] // the supervisor is Unix-only
    pub(crate) recycle_memory: Option<u64>,
    /// Recycle a worker this long after it started.
    #[cfg_attr(windows, allow(dead_code))] // the supervisor is Unix-only
    pub(crate) recycle_time: Option<Duration>,
    /// A worker with a request running longer than this is recycled.
    #[cfg_attr(windows, allow(dead_code))] // the supervisor is Unix-only
    pub(crate) hang_timeout: Option<Duration>,
    /// `--static` and `--web-config`, resolved (src/site).
    pub(crate) site: Site,
    /// Recycle every worker when the app's files change (`--reload`).
    #[cfg_attr(windows, allow(dead_code))] // the supervisor is Unix-only
    pub(crate) reload: bool,
    /// The supervisor's control socket, if not the default (absolute).
    #[cfg_attr(windows, allow(dead_code))] // the supervisor is Unix-only
    pub(crate) control: Option<PathBuf>,
}

/// Async runtime threads by default: one per CPU of the worker's share
/// ([`crate::pool::cpu_share`]). Every request's work is split between a
/// runtime thread (HTTP and sockets) and an extension thread; since the
/// threads yield for each other rather than sleep (`--yield-us`), one
/// runtime thread per CPU serves more requests than one per two CPUs
/// (BENCHMARKS.md, "Tuning knobs"). With a web garden, the workers share
/// the CPUs: two workers on two CPUs with two runtime threads each made
/// twice the context switches per request of one each (BENCHMARKS.md,
/// "Worker processes").
fn default_io_threads(workers: usize) -> usize {
    crate::pool::cpu_share(workers)
}

/// Reads a TOML settings file. Relative paths in it are made relative to
/// the file, and map prefixes are normalized.
fn read_file(path: &Path) -> anyhow::Result<Settings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let mut file: Settings =
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))?;
    // Absolute, so that --chdir does not move them.
    let base = std::path::absolute(path.parent().unwrap_or(Path::new(".")))
        .with_context(|| format!("cannot resolve the folder of {}", path.display()))?;
    let rebase = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    file.extension.as_mut().map(rebase);
    file.doc_root.as_mut().map(rebase);
    file.access_log_file.as_mut().map(rebase);
    file.chdir.as_mut().map(rebase);
    file.control.as_mut().map(rebase);
    file.maps.iter_mut().for_each(|m| rebase(&mut m.path));
    file.python_path.iter_mut().for_each(rebase);
    file.web_config.as_mut().map(rebase);
    file.statics.iter_mut().for_each(|m| rebase(&mut m.dir));
    file.path_map.iter_mut().for_each(|m| rebase(&mut m.local));
    for m in &mut file.maps {
        m.prefix = normalize_prefix(&m.prefix)?;
    }
    if let Some(app) = &file.app {
        parse_app(app).map_err(anyhow::Error::msg)?;
    }
    Ok(file)
}

/// An absolute path (workers may `--chdir`), still ending in a separator
/// if it did (`--access-log-file logs/` names a directory).
fn absolute_keeping_slash(p: PathBuf) -> anyhow::Result<PathBuf> {
    let text = p.as_os_str().to_string_lossy();
    let dir = text.ends_with('/') || text.ends_with(std::path::MAIN_SEPARATOR);
    let mut abs = std::path::absolute(&p)
        .with_context(|| format!("cannot resolve the path {}", p.display()))?;
    if dir {
        abs.push("");
    }
    Ok(abs)
}

impl ServeConfig {
    /// Merges the command line, the optional TOML file and the defaults.
    ///
    /// `pyisapie` is the library the WSGI sugar loads when no extension is named.
    pub(crate) fn resolve(
        args: ServeArgs,
        pyisapie: &Path,
        demo_dir: &Path,
    ) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => Settings::default(),
        };
        // Where a setting came from, for messages (`--app`, `ISAPI_HOST_APP`, the file's key).
        let origin =
            |id: &str, key: &str, in_file: bool| match (args.origins.given(id), &args.config) {
                (Some(given), _) => given.to_owned(),
                (None, Some(path)) if in_file => format!("{}, key {key}", path.display()),
                _ => "the default".to_owned(),
            };
        let app_origin = origin("app", "app", file.app.is_some());
        let bind_origin = origin("bind", "bind", file.bind.is_some());
        let ext_origin = origin("extension", "extension", file.extension.is_some());
        let map_origin = origin("maps", "map", !file.maps.is_empty());
        let chdir_origin = origin("chdir", "chdir", file.chdir.is_some());
        let mut s = args.settings.or(file);

        // --chdir: relative paths given on the command line or in the
        // environment start there (the file's start at the file); the
        // process moves there in `server::startup`, before loading anything.
        let chdir = match &s.chdir {
            Some(dir) => {
                let abs = std::path::absolute(dir)
                    .with_context(|| format!("cannot resolve --chdir {}", dir.display()))?;
                if !abs.is_dir() {
                    bail!(
                        "cannot change to the directory {} (from {chdir_origin}): it does not exist",
                        dir.display()
                    );
                }
                Some(abs)
            }
            None => None,
        };
        let work_dir = match &chdir {
            Some(dir) => dir.clone(),
            None => std::env::current_dir().context("cannot read the current directory")?,
        };
        if chdir.is_some() {
            // A bare library name is left to the system loader's search.
            let rebase = |p: &mut PathBuf| {
                if p.is_relative() && p.components().count() > 1 {
                    *p = work_dir.join(&*p);
                }
            };
            s.extension.as_mut().map(rebase);
            s.maps.iter_mut().for_each(|m| rebase(&mut m.path));
        }
        // --static and --web-config (src/site): the site's handlers join
        // the mounts where nothing given here claims their prefix.
        let mut site = Site::resolve(s.web_config.as_deref(), &s.path_map, &s.statics, &work_dir)?;
        let root_claimed = s.app.is_some() || s.extension.is_some();
        let handlers = site.take_handlers(|p| {
            (p.is_empty() && root_claimed) || s.maps.iter().any(|m| m.prefix == p)
        });
        s.max_body = s.max_body.or(site.max_body);
        s.doc_root = s.doc_root.or_else(|| site.root.clone());
        let (app, mut python_path, extension, mut maps) =
            (s.app, s.python_path, s.extension, s.maps);
        let mut lib_origins: Vec<(PathBuf, String)> = maps
            .iter()
            .map(|m| (m.path.clone(), map_origin.clone()))
            .collect();
        for (prefix, path) in handlers {
            lib_origins.push((path.clone(), "the web.config's handlers".to_owned()));
            maps.push(Mapping { prefix, path });
        }

        if !python_path.is_empty() && app.is_none() {
            bail!("--python-path needs --app MODULE:CALLABLE");
        }
        if app.is_none() {
            if s.interpreter.is_some() {
                bail!(
                    "--interpreter needs --app MODULE:CALLABLE (for an extension, pyisapie.toml's interpreter key)"
                );
            }
            if s.replicas.is_some() {
                bail!(
                    "--replicas needs --app MODULE:CALLABLE (for an extension, pyisapie.toml's replicas key)"
                );
            }
        }
        if let Some(n) = s.replicas {
            if !(1..=MAX_REPLICAS).contains(&n) {
                bail!("--replicas must be from 1 to {MAX_REPLICAS}, got {n}");
            }
            if n > 1
                && matches!(
                    s.interpreter,
                    Some(InterpreterMode::Main | InterpreterMode::Shared)
                )
            {
                bail!(
                    "--replicas {n} needs own-GIL sub-interpreters: drop --interpreter, or set it to isolated"
                );
            }
        }
        let python = match (&app, &extension, maps.is_empty()) {
            (Some(app), _, _) => Some(PythonApp {
                app: app.clone(),
                // Then the working directory, as gunicorn puts it on sys.path.
                python_path: {
                    for p in &mut python_path {
                        *p = work_dir.join(&*p);
                    }
                    if !python_path.contains(&work_dir) {
                        python_path.push(work_dir.clone());
                    }
                    python_path
                },
                source: app_origin.clone(),
                interpreter: s.interpreter,
                replicas: s.replicas,
            }),
            // Nothing to serve was named: the demo WSGI app.
            (None, None, true) if site.root.is_none() => Some(PythonApp {
                app: "demo:app".to_owned(),
                python_path: vec![demo_dir.to_path_buf()],
                source: "the demo".to_owned(),
                interpreter: None,
                replicas: None,
            }),
            (None, _, _) => None,
        };
        let root_lib = match (extension, &python) {
            (Some(ext), _) => {
                lib_origins.push((ext.clone(), ext_origin));
                Some(ext)
            }
            (None, Some(_)) => {
                lib_origins.push((pyisapie.to_path_buf(), app_origin));
                Some(pyisapie.to_path_buf())
            }
            (None, None) => None,
        };
        if let Some(lib) = root_lib {
            if maps.iter().any(|m| m.prefix.is_empty()) {
                bail!("--extension and --map /=... both claim the root URL");
            }
            maps.push(Mapping {
                prefix: String::new(),
                path: lib,
            });
        }
        if maps.is_empty() && site.statics.is_empty() {
            bail!(
                "nothing to serve: give --extension PATH, --map /prefix=PATH or --app MODULE:CALLABLE"
            );
        }
        if let Some(p) = url_prefix::first_duplicate(maps.iter().map(|m| m.prefix.as_str())) {
            bail!("URL prefix {} is mapped twice", url_prefix::shown(p));
        }
        url_prefix::longest_first(&mut maps, |m| &m.prefix);

        let at_least_one = |n: usize, flag: &str| {
            if n == 0 {
                bail!("{flag} must be at least 1");
            }
            Ok(n)
        };
        let workers = at_least_one(s.workers.unwrap_or(1), "--workers")?;
        // Python code runs under one GIL: a few threads serve a WSGI app
        // faster than many that convoy on the lock, and a second thread
        // running Python beside the first only trades the GIL with it. With
        // N replicas, N GILs: up to N threads (at most the CPU share) run.
        let (default_threads, default_parallel) = match &python {
            Some(py) => {
                let replicas = py.replicas.unwrap_or(1);
                (
                    DEFAULT_PYTHON_THREADS.max(replicas),
                    replicas
                        .min(crate::pool::cpu_share(workers))
                        .max(DEFAULT_PYTHON_PARALLEL),
                )
            }
            None => (DEFAULT_THREADS, crate::pool::cpu_share(workers)),
        };
        let threads = at_least_one(s.threads.unwrap_or(default_threads), "--threads")?;
        let parallel = at_least_one(s.parallel.unwrap_or(default_parallel), "--parallel")?;
        let io_threads = at_least_one(
            s.io_threads.unwrap_or_else(|| default_io_threads(workers)),
            "--io-threads",
        )?;
        let yield_us = s.yield_us.unwrap_or(DEFAULT_YIELD.as_micros() as u64);
        if yield_us > MAX_YIELD_US {
            bail!("--yield-us must be at most {MAX_YIELD_US}, got {yield_us}");
        }
        // Absolute, as IIS's physical paths are: on Windows that also turns a
        // `/unix/style` root (under Wine) into `Z:\unix\style`.
        let doc_root = match s.doc_root {
            Some(dir) => std::path::absolute(work_dir.join(&dir))
                .with_context(|| format!("cannot resolve --doc-root {}", dir.display()))?,
            None => work_dir.clone(),
        };
        let max_header = s.max_header.unwrap_or(DEFAULT_MAX_HEADER);
        if max_header < MIN_MAX_HEADER {
            bail!(
                "--max-header must be at least {MIN_MAX_HEADER} bytes (the HTTP parser's smallest read buffer), got {max_header}"
            );
        }
        let secs = |given: Option<u64>, default: u64| Duration::from_secs(given.unwrap_or(default));
        let rapid_fail = match &s.rapid_fail {
            Some(text) => rapid_fail_parts(text).map_err(anyhow::Error::msg)?,
            None => (DEFAULT_RAPID_FAIL_COUNT, DEFAULT_RAPID_FAIL_SECS),
        };
        for (given, flag) in [
            (s.recycle_requests, "--recycle-requests"),
            (s.recycle_memory, "--recycle-memory"),
            (s.recycle_time, "--recycle-time"),
            (s.hang_timeout, "--hang-timeout"),
        ] {
            if given == Some(0) {
                bail!("{flag} must be at least 1");
            }
        }
        // The supervisor is built on Unix only; on Windows one process serves.
        let supervisor = cfg!(unix) && !s.no_supervisor;
        if !supervisor && workers > 1 {
            if cfg!(windows) {
                bail!(
                    "--workers {workers}: worker processes are not supported on Windows yet (docs/ARCHITECTURE.md, \"Process model\"); one process serves"
                );
            }
            bail!("--workers {workers} needs the supervisor: drop --no-supervisor");
        }
        if !supervisor
            && (s.recycle_requests.is_some()
                || s.recycle_memory.is_some()
                || s.recycle_time.is_some())
        {
            bail!(
                "recycling (--recycle-*) needs the supervisor: it is not available with --no-supervisor or on Windows yet"
            );
        }
        for (given, flag) in [(s.reload, "--reload"), (s.control.is_some(), "--control")] {
            if given && !supervisor {
                if cfg!(windows) {
                    bail!(
                        "{flag} needs the supervisor, which is not built on Windows yet (docs/ARCHITECTURE.md, \"Process model\")"
                    );
                }
                bail!("{flag} needs the supervisor: drop --no-supervisor");
            }
        }
        let control = match s.control {
            Some(p) => Some(
                std::path::absolute(&p)
                    .with_context(|| format!("cannot resolve --control {}", p.display()))?,
            ),
            None => None,
        };
        Ok(ServeConfig {
            bind: match &s.bind {
                Some(addr) => addr.resolve().with_context(|| {
                    format!("cannot resolve the address {addr} to listen on (from {bind_origin})")
                })?,
                None => DEFAULT_BIND,
            },
            bind_origin,
            chdir,
            lib_origins,
            maps,
            python,
            read_ahead: s.read_ahead.unwrap_or(DEFAULT_READ_AHEAD),
            max_body: s.max_body.unwrap_or(DEFAULT_MAX_BODY),
            max_header,
            threads,
            parallel,
            io_threads,
            yield_time: Duration::from_micros(yield_us),
            doc_root: doc_root.into(),
            trace_callbacks: s.trace_callbacks,
            access_log: s.access_log.unwrap_or_default(),
            access_log_file: s.access_log_file.map(absolute_keeping_slash).transpose()?,
            log_format: s.log_format.unwrap_or_default(),
            header_timeout: secs(s.header_timeout, DEFAULT_HEADER_TIMEOUT),
            keepalive_timeout: secs(s.keepalive_timeout, DEFAULT_KEEPALIVE_TIMEOUT),
            io_timeout: secs(s.io_timeout, DEFAULT_IO_TIMEOUT),
            max_requests: s.max_requests.unwrap_or(DEFAULT_MAX_REQUESTS).max(1),
            shutdown_timeout: secs(s.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT),
            workers,
            supervisor,
            rapid_fail: (rapid_fail.0, Duration::from_secs(rapid_fail.1)),
            recycle_requests: s.recycle_requests,
            recycle_memory: s.recycle_memory,
            recycle_time: s.recycle_time.map(Duration::from_secs),
            hang_timeout: s.hang_timeout.map(Duration::from_secs),
            reload: s.reload,
            site,
            control,
        })
    }
}

#[cfg(test)]
mod tests;
