//! Command line and configuration file.
//!
//! Every setting can come from the command line or from a TOML file given with
//! `--config`; a value on the command line wins over the file, and the file
//! wins over the built-in default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

/// An IIS-compatible host for ISAPI extensions.
#[derive(Debug, Parser)]
#[command(name = "isapi-host", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The host's subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve HTTP, dispatching requests to ISAPI extensions.
    Serve(Box<ServeArgs>),
}

/// Options of `isapi-host serve`.
#[derive(Debug, Default, Args)]
pub(crate) struct ServeArgs {
    /// A TOML file holding any of the settings below (command-line values win).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080]. Port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    pub(crate) bind: Option<SocketAddr>,
    /// ISAPI extension library that serves every URL not claimed by a --map.
    #[arg(long, value_name = "PATH")]
    pub(crate) extension: Option<PathBuf>,
    /// Mount an extension library at a URL prefix, as /prefix=PATH (repeatable).
    #[arg(long = "map", value_name = "/PREFIX=PATH", value_parser = parse_map)]
    pub(crate) maps: Vec<Mapping>,
    /// Serve one WSGI app through pyisapie, as MODULE:CALLABLE.
    #[arg(long, value_name = "MODULE:CALLABLE", value_parser = parse_app)]
    pub(crate) app: Option<String>,
    /// Directory added to the Python path for --app (repeatable).
    #[arg(long = "python-path", value_name = "DIR")]
    pub(crate) python_path: Vec<PathBuf>,
    /// Request-body bytes preloaded into the ECB before the extension runs [default: 49152].
    #[arg(long, value_name = "BYTES")]
    pub(crate) read_ahead: Option<usize>,
    /// Largest request body accepted, in bytes; larger ones get 413 [default: 30000000].
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_body: Option<u64>,
    /// Largest request head (request line plus headers), in bytes; larger ones get 431 [default: 16384].
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_header: Option<usize>,
    /// Threads that run HttpExtensionProc (IIS caps its pool at 256) [default: 64; 8 for --app and the demo].
    #[arg(long, value_name = "N")]
    pub(crate) threads: Option<usize>,
    /// Extension threads that may run at once while none of them is blocked [default: the CPU count; 1 for --app and the demo].
    #[arg(long, value_name = "N")]
    pub(crate) parallel: Option<usize>,
    /// Threads of the async runtime that parse HTTP and move bytes for every connection [default: the CPU count].
    #[arg(long, value_name = "N")]
    pub(crate) io_threads: Option<usize>,
    /// Microseconds a thread out of work yields its CPU for more before it sleeps, while work comes that fast; 0 sleeps at once, for machines where idle CPU must stay idle [default: 100; at most 10000].
    #[arg(long, value_name = "MICROS")]
    pub(crate) yield_us: Option<u64>,
    /// Physical directory for PATH_TRANSLATED and MAP_URL_TO_PATH [default: the current directory].
    #[arg(long, value_name = "DIR")]
    pub(crate) doc_root: Option<PathBuf>,
    /// Log every ISAPI callback with its arguments and byte counts.
    #[arg(long)]
    pub(crate) trace_callbacks: bool,
    /// Access log format [default: common].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub(crate) access_log: Option<AccessLogFormat>,
    /// Seconds a client has to send a complete request head, from its first byte [default: 30].
    #[arg(long, value_name = "SECS")]
    pub(crate) header_timeout: Option<u64>,
    /// Seconds an idle keep-alive connection is kept open [default: 15].
    #[arg(long, value_name = "SECS")]
    pub(crate) keepalive_timeout: Option<u64>,
    /// Seconds an extension may wait on a client that sends and takes nothing before the connection is dropped [default: 120].
    #[arg(long, value_name = "SECS")]
    pub(crate) io_timeout: Option<u64>,
    /// Requests in flight (running or queued) before new ones get 503 [default: 5000].
    #[arg(long, value_name = "N")]
    pub(crate) max_requests: Option<usize>,
    /// Seconds to wait for in-flight requests on shutdown [default: 30].
    #[arg(long, value_name = "SECS")]
    pub(crate) shutdown_timeout: Option<u64>,
}

/// Access-log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AccessLogFormat {
    /// NCSA common log format, plus the ISAPI log data.
    #[default]
    Common,
    /// W3C extended log format, with IIS's default fields.
    W3c,
    /// No access log.
    Off,
}

/// One extension mounted at a URL prefix.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Mapping {
    /// URL prefix, `/` or `/name` without a trailing slash.
    pub(crate) prefix: String,
    /// Path of the extension library.
    pub(crate) path: PathBuf,
}

/// The settings a TOML file can hold; the same names as the long options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    bind: Option<SocketAddr>,
    extension: Option<PathBuf>,
    #[serde(default, rename = "map")]
    maps: Vec<Mapping>,
    app: Option<String>,
    #[serde(default)]
    python_path: Vec<PathBuf>,
    read_ahead: Option<usize>,
    max_body: Option<u64>,
    max_header: Option<usize>,
    threads: Option<usize>,
    parallel: Option<usize>,
    io_threads: Option<usize>,
    yield_us: Option<u64>,
    doc_root: Option<PathBuf>,
    trace_callbacks: Option<bool>,
    access_log: Option<AccessLogFormat>,
    header_timeout: Option<u64>,
    keepalive_timeout: Option<u64>,
    io_timeout: Option<u64>,
    max_requests: Option<usize>,
    shutdown_timeout: Option<u64>,
}

/// What the WSGI sugar (`--app`, or no extension at all) asks of pyisapie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PythonApp {
    /// `MODULE:CALLABLE`.
    pub(crate) app: String,
    /// Directories for the Python path.
    pub(crate) python_path: Vec<PathBuf>,
}

/// The resolved settings the server runs with.
#[derive(Debug, Clone)]
pub(crate) struct ServeConfig {
    pub(crate) bind: SocketAddr,
    /// Mounts, longest prefix first.
    pub(crate) maps: Vec<Mapping>,
    pub(crate) python: Option<PythonApp>,
    pub(crate) read_ahead: usize,
    pub(crate) max_body: u64,
    pub(crate) max_header: usize,
    pub(crate) threads: usize,
    /// How many extension threads the pool runs at once while none is blocked.
    pub(crate) parallel: usize,
    /// The async runtime's worker threads.
    pub(crate) io_threads: usize,
    /// How long a thread out of work yields for more at most.
    pub(crate) yield_time: Duration,
    /// Shared with every request's `PATH_TRANSLATED`.
    pub(crate) doc_root: Arc<Path>,
    pub(crate) trace_callbacks: bool,
    pub(crate) access_log: AccessLogFormat,
    pub(crate) header_timeout: Duration,
    pub(crate) keepalive_timeout: Duration,
    pub(crate) io_timeout: Duration,
    pub(crate) max_requests: usize,
    pub(crate) shutdown_timeout: Duration,
}

/// Extension threads by default.
pub(crate) const DEFAULT_THREADS: usize = 64;
/// Extension threads by default when the WSGI sugar runs pyisapie.
pub(crate) const DEFAULT_PYTHON_THREADS: usize = 8;
/// Async runtime threads by default: one per CPU. Every request's work is
/// split between a runtime thread (HTTP and sockets) and an extension thread;
/// since the threads yield for each other rather than sleep (`--yield-us`),
/// one runtime thread per CPU serves more requests than one per two CPUs
/// (BENCHMARKS.md, "Session 12", which reverses "Session 10").
fn default_io_threads() -> usize {
    crate::pool::cpus()
}

/// The longest `--yield-us`: past a few milliseconds a wake-up is sooner.
const MAX_YIELD_US: u64 = 10_000;

/// IIS's `UploadReadAheadSize` default.
pub(crate) const DEFAULT_READ_AHEAD: usize = 49152;
/// hyper's smallest read buffer, and so the smallest head limit.
pub(crate) const MIN_MAX_HEADER: usize = 8192;
/// IIS's `maxAllowedContentLength` default.
pub(crate) const DEFAULT_MAX_BODY: u64 = 30_000_000;

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
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                let mut file: FileConfig = toml::from_str(&text)
                    .with_context(|| format!("invalid config file {}", path.display()))?;
                // Relative paths in the file are relative to the file.
                let base = path.parent().unwrap_or(Path::new("."));
                let rebase = |p: &mut PathBuf| {
                    if p.is_relative() {
                        *p = base.join(&*p);
                    }
                };
                file.extension.as_mut().map(rebase);
                file.doc_root.as_mut().map(rebase);
                file.maps.iter_mut().for_each(|m| rebase(&mut m.path));
                file.python_path.iter_mut().for_each(rebase);
                for m in &mut file.maps {
                    m.prefix = normalize_prefix(&m.prefix)?;
                }
                if let Some(app) = &file.app {
                    parse_app(app).map_err(anyhow::Error::msg)?;
                }
                file
            }
            None => FileConfig::default(),
        };

        let app = args.app.or(file.app);
        let python_path = if args.python_path.is_empty() {
            file.python_path
        } else {
            args.python_path
        };
        let extension = args.extension.or(file.extension);
        let mut maps = if args.maps.is_empty() {
            file.maps
        } else {
            args.maps
        };

        if !python_path.is_empty() && app.is_none() {
            bail!("--python-path needs --app MODULE:CALLABLE");
        }
        let python = match (&app, &extension, maps.is_empty()) {
            (Some(app), _, _) => Some(PythonApp {
                app: app.clone(),
                python_path,
            }),
            // Nothing to serve was named: the demo WSGI app.
            (None, None, true) => Some(PythonApp {
                app: "demo:app".to_owned(),
                python_path: vec![demo_dir.to_path_buf()],
            }),
            (None, _, _) => None,
        };
        let root_lib = match (extension, &python) {
            (Some(ext), _) => Some(ext),
            (None, Some(_)) => Some(pyisapie.to_path_buf()),
            (None, None) => None,
        };
        if let Some(lib) = root_lib {
            if maps.iter().any(|m| m.prefix == "/") {
                bail!("--extension and --map /=... both claim the root URL");
            }
            maps.push(Mapping {
                prefix: "/".to_owned(),
                path: lib,
            });
        }
        if maps.is_empty() {
            bail!(
                "nothing to serve: give --extension PATH, --map /prefix=PATH or --app MODULE:CALLABLE"
            );
        }
        for (i, m) in maps.iter().enumerate() {
            if maps[..i].iter().any(|o| o.prefix == m.prefix) {
                bail!("URL prefix {} is mapped twice", m.prefix);
            }
        }
        maps.sort_by_key(|m| std::cmp::Reverse(m.prefix.len()));

        // Python code runs under one GIL: a few threads serve a WSGI app
        // faster than many that convoy on the lock, and a second thread
        // running Python beside the first only trades the GIL with it.
        let (default_threads, default_parallel) = if python.is_some() {
            (DEFAULT_PYTHON_THREADS, 1)
        } else {
            (DEFAULT_THREADS, crate::pool::cpus())
        };
        let at_least_one = |n: usize, flag: &str| {
            if n == 0 {
                bail!("{flag} must be at least 1");
            }
            Ok(n)
        };
        let threads = at_least_one(
            args.threads.or(file.threads).unwrap_or(default_threads),
            "--threads",
        )?;
        let parallel = at_least_one(
            args.parallel.or(file.parallel).unwrap_or(default_parallel),
            "--parallel",
        )?;
        let io_threads = at_least_one(
            args.io_threads
                .or(file.io_threads)
                .unwrap_or_else(default_io_threads),
            "--io-threads",
        )?;
        let yield_us = args
            .yield_us
            .or(file.yield_us)
            .unwrap_or(crate::pool::YIELD_TIME.as_micros() as u64);
        if yield_us > MAX_YIELD_US {
            bail!("--yield-us must be at most {MAX_YIELD_US}, got {yield_us}");
        }
        // Absolute, as IIS's physical paths are: on Windows that also turns a
        // `/unix/style` root (under Wine) into `Z:\unix\style`.
        let doc_root = match args.doc_root.or(file.doc_root) {
            Some(dir) => std::path::absolute(&dir)
                .with_context(|| format!("cannot resolve --doc-root {}", dir.display()))?,
            None => std::env::current_dir().context("cannot read the current directory")?,
        };
        let max_header = args.max_header.or(file.max_header).unwrap_or(16384);
        if max_header < MIN_MAX_HEADER {
            bail!(
                "--max-header must be at least {MIN_MAX_HEADER} bytes (the HTTP parser's smallest read buffer), got {max_header}"
            );
        }
        let secs =
            |a: Option<u64>, f: Option<u64>, d: u64| Duration::from_secs(a.or(f).unwrap_or(d));
        Ok(ServeConfig {
            bind: args
                .bind
                .or(file.bind)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            maps,
            python,
            read_ahead: args
                .read_ahead
                .or(file.read_ahead)
                .unwrap_or(DEFAULT_READ_AHEAD),
            max_body: args.max_body.or(file.max_body).unwrap_or(DEFAULT_MAX_BODY),
            max_header,
            threads,
            parallel,
            io_threads,
            yield_time: Duration::from_micros(yield_us),
            doc_root: doc_root.into(),
            trace_callbacks: args.trace_callbacks || file.trace_callbacks.unwrap_or(false),
            access_log: args.access_log.or(file.access_log).unwrap_or_default(),
            header_timeout: secs(args.header_timeout, file.header_timeout, 30),
            keepalive_timeout: secs(args.keepalive_timeout, file.keepalive_timeout, 15),
            io_timeout: secs(args.io_timeout, file.io_timeout, 120),
            max_requests: args
                .max_requests
                .or(file.max_requests)
                .unwrap_or(5000)
                .max(1),
            shutdown_timeout: secs(args.shutdown_timeout, file.shutdown_timeout, 30),
        })
    }
}

/// Parses `--map /prefix=PATH`.
fn parse_map(s: &str) -> Result<Mapping, String> {
    let (prefix, path) = s
        .split_once('=')
        .ok_or_else(|| format!("expected /prefix=PATH, got {s:?}"))?;
    if path.is_empty() {
        return Err(format!("missing library path in {s:?}"));
    }
    Ok(Mapping {
        prefix: normalize_prefix(prefix).map_err(|e| e.to_string())?,
        path: PathBuf::from(path),
    })
}

/// `/app/` and `/app` are the same mount; the root is `/`.
fn normalize_prefix(prefix: &str) -> anyhow::Result<String> {
    if !prefix.starts_with('/') {
        bail!("URL prefix {prefix:?} must start with /");
    }
    if prefix.contains(['?', '#', ' ']) {
        bail!("URL prefix {prefix:?} must be a plain path");
    }
    let trimmed = prefix.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    })
}

/// Checks `MODULE:CALLABLE`.
fn parse_app(s: &str) -> Result<String, String> {
    match s.split_once(':') {
        Some((m, c)) if !m.is_empty() && !c.is_empty() => Ok(s.to_owned()),
        _ => Err(format!("expected MODULE:CALLABLE, got {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_parses_and_normalizes() {
        let m = parse_map("/app/=lib.so").unwrap();
        assert_eq!(m.prefix, "/app");
        assert_eq!(m.path, PathBuf::from("lib.so"));
        assert_eq!(parse_map("/=x.so").unwrap().prefix, "/");
        assert!(parse_map("app=x.so").is_err());
        assert!(parse_map("/app").is_err());
        assert!(parse_map("/app=").is_err());
    }

    #[test]
    fn app_needs_module_and_callable() {
        assert!(parse_app("demo:app").is_ok());
        assert!(parse_app("demo").is_err());
        assert!(parse_app(":app").is_err());
    }

    #[test]
    fn no_arguments_serve_the_demo() {
        let cfg = ServeConfig::resolve(
            ServeArgs::default(),
            Path::new("/lib/libpyisapie.so"),
            Path::new("/demo"),
        )
        .unwrap();
        assert_eq!(
            cfg.maps,
            vec![Mapping {
                prefix: "/".into(),
                path: "/lib/libpyisapie.so".into()
            }]
        );
        assert_eq!(cfg.python.unwrap().app, "demo:app");
        assert_eq!(cfg.read_ahead, 49152);
        assert_eq!(cfg.max_body, 30_000_000);
        assert_eq!(cfg.bind, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(cfg.threads, DEFAULT_PYTHON_THREADS);
        assert_eq!(cfg.parallel, 1, "Python runs one thread at a time");
        assert_eq!(cfg.yield_time, crate::pool::YIELD_TIME);
    }

    #[test]
    fn yield_time_is_bounded_and_zero_turns_it_off() {
        let with = |yield_us| {
            ServeConfig::resolve(
                ServeArgs {
                    extension: Some("x.so".into()),
                    yield_us: Some(yield_us),
                    ..Default::default()
                },
                Path::new("p.so"),
                Path::new("d"),
            )
        };
        assert_eq!(with(0).unwrap().yield_time, Duration::ZERO);
        assert_eq!(with(250).unwrap().yield_time, Duration::from_micros(250));
        let err = with(MAX_YIELD_US + 1).unwrap_err();
        assert!(format!("{err:#}").contains("--yield-us"), "{err:#}");
    }

    #[test]
    fn thread_counts_must_be_positive() {
        for (threads, parallel, io_threads, flag) in [
            (Some(0), None, None, "--threads"),
            (None, Some(0), None, "--parallel"),
            (None, None, Some(0), "--io-threads"),
        ] {
            let args = ServeArgs {
                extension: Some("x.so".into()),
                threads,
                parallel,
                io_threads,
                ..Default::default()
            };
            let err = ServeConfig::resolve(args, Path::new("p.so"), Path::new("d")).unwrap_err();
            assert!(err.to_string().contains(flag), "{err}");
        }
        let args = ServeArgs {
            app: Some("m:app".into()),
            parallel: Some(3),
            ..Default::default()
        };
        let cfg = ServeConfig::resolve(args, Path::new("p.so"), Path::new("d")).unwrap();
        assert_eq!(
            cfg.parallel, 3,
            "an explicit --parallel wins over the Python default"
        );
    }

    #[test]
    fn maps_sort_longest_first_and_reject_duplicates() {
        let args = ServeArgs {
            extension: Some("root.so".into()),
            maps: vec![
                parse_map("/a=a.so").unwrap(),
                parse_map("/a/b=b.so").unwrap(),
            ],
            ..Default::default()
        };
        let cfg = ServeConfig::resolve(args, Path::new("p.so"), Path::new("d")).unwrap();
        let prefixes: Vec<_> = cfg.maps.iter().map(|m| m.prefix.as_str()).collect();
        assert_eq!(prefixes, ["/a/b", "/a", "/"]);
        assert!(cfg.python.is_none());
        assert_eq!(cfg.threads, DEFAULT_THREADS);
        assert_eq!(cfg.parallel, crate::pool::cpus());
        assert_eq!(cfg.io_threads, crate::pool::cpus());

        let dup = ServeArgs {
            maps: vec![
                parse_map("/a=a.so").unwrap(),
                parse_map("/a/=b.so").unwrap(),
            ],
            ..Default::default()
        };
        assert!(ServeConfig::resolve(dup, Path::new("p.so"), Path::new("d")).is_err());
    }

    #[test]
    fn toml_file_is_read_and_command_line_wins() {
        let dir = std::env::temp_dir().join(format!("isapi-host-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("host.toml");
        std::fs::write(
            &file,
            "bind = \"127.0.0.1:9000\"\nread-ahead = 10\nthreads = 3\nparallel = 2\nio-threads = 1\nyield-us = 40\n[[map]]\nprefix = \"/x/\"\npath = \"x.so\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file.clone()),
            threads: Some(5),
            ..Default::default()
        };
        let cfg = ServeConfig::resolve(args, Path::new("p.so"), Path::new("d")).unwrap();
        assert_eq!(cfg.bind, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(cfg.read_ahead, 10);
        assert_eq!(cfg.threads, 5);
        assert_eq!(cfg.parallel, 2);
        assert_eq!(cfg.io_threads, 1);
        assert_eq!(cfg.yield_time, Duration::from_micros(40));
        assert_eq!(cfg.maps[0].prefix, "/x");
        assert_eq!(cfg.maps[0].path, dir.join("x.so"));

        std::fs::write(&file, "no-such-setting = 1\n").unwrap();
        let err = ServeConfig::resolve(
            ServeArgs {
                config: Some(file),
                ..Default::default()
            },
            Path::new("p"),
            Path::new("d"),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("host.toml"), "{err:#}");
    }
}
