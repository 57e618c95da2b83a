//! The settings as given: one struct that is both the command line's
//! options and the TOML file's keys, and the defaults, written once.
//!
//! Every field of [`Settings`] is unset by default. The command line's
//! values are laid over the file's ([`Settings::or`]), and
//! [`super::ServeConfig::resolve`] fills what is still unset from the
//! defaults below, which the help text quotes.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

/// `--bind`'s default.
pub(crate) const DEFAULT_BIND: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 8080));
/// IIS's `UploadReadAheadSize` default.
pub(crate) const DEFAULT_READ_AHEAD: usize = 49152;
/// IIS's `maxAllowedContentLength` default.
pub(crate) const DEFAULT_MAX_BODY: u64 = 30_000_000;
/// `--max-header`'s default.
pub(crate) const DEFAULT_MAX_HEADER: usize = 16384;
/// hyper's smallest read buffer, and so the smallest head limit.
pub(crate) const MIN_MAX_HEADER: usize = 8192;
/// Extension threads by default.
pub(crate) const DEFAULT_THREADS: usize = 64;
/// Extension threads by default when the WSGI sugar runs pyisapie.
pub(crate) const DEFAULT_PYTHON_THREADS: usize = 8;
/// The most `--replicas` (pyisapie's limit).
pub(crate) const MAX_REPLICAS: usize = 64;
/// `--parallel` when the WSGI sugar runs pyisapie: Python's GIL runs one
/// thread at a time.
pub(crate) const DEFAULT_PYTHON_PARALLEL: usize = 1;
/// How long a thread out of work yields for more by default.
pub(crate) const DEFAULT_YIELD: Duration = crate::pool::YIELD_TIME;
/// The longest `--yield-us`: past a few milliseconds a wake-up is sooner.
pub(crate) const MAX_YIELD_US: u64 = 10_000;
/// `--header-timeout`'s default, in seconds.
pub(crate) const DEFAULT_HEADER_TIMEOUT: u64 = 30;
/// `--keepalive-timeout`'s default, in seconds.
pub(crate) const DEFAULT_KEEPALIVE_TIMEOUT: u64 = 15;
/// `--io-timeout`'s default, in seconds.
pub(crate) const DEFAULT_IO_TIMEOUT: u64 = 120;
/// IIS's `appConcurrentRequestLimit` default.
pub(crate) const DEFAULT_MAX_REQUESTS: usize = 5000;
/// `--shutdown-timeout`'s default, in seconds.
pub(crate) const DEFAULT_SHUTDOWN_TIMEOUT: u64 = 30;

/// IIS's rapid-fail protection: this many worker crashes...
pub(crate) const DEFAULT_RAPID_FAIL_COUNT: u32 = 5;
/// ... within this many seconds stop the application pool.
pub(crate) const DEFAULT_RAPID_FAIL_SECS: u64 = 300;

/// Parses `--rapid-fail COUNT/SECONDS` (both at least 1).
pub(crate) fn rapid_fail_parts(s: &str) -> Result<(u32, u64), String> {
    let err = || format!("expected COUNT/SECONDS (e.g. 5/300), got {s:?}");
    let (count, secs) = s.split_once('/').ok_or_else(err)?;
    let count: u32 = count.trim().parse().map_err(|_| err())?;
    let secs: u64 = secs.trim().parse().map_err(|_| err())?;
    if count == 0 || secs == 0 {
        return Err(format!(
            "--rapid-fail COUNT and SECONDS must be at least 1, got {s:?}"
        ));
    }
    Ok((count, secs))
}

/// `--rapid-fail`'s value parser: checks it, keeps the text.
fn parse_rapid_fail(s: &str) -> Result<String, String> {
    rapid_fail_parts(s).map(|_| s.to_owned())
}

/// An IIS-compatible host for ISAPI extensions.
#[derive(Debug, Parser)]
#[command(name = "isapi-host", version, about)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The host's subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve HTTP, dispatching requests to ISAPI extensions.
    Serve(Box<ServeArgs>),
    /// Ask a running supervisor (`isapi-host serve`, Unix) for its status, or to
    /// recycle, restart or stop its worker processes.
    Ctl(CtlArgs),
}

/// Options of `isapi-host ctl`. Without `--control` or `--pid`, the one
/// supervisor whose default control socket is found is asked.
#[derive(Debug, Args)]
#[cfg_attr(not(unix), allow(dead_code))] // no supervisor on Windows yet
pub(crate) struct CtlArgs {
    /// status: the workers (pid, requests, uptime), restarts and whether rapid-fail
    /// protection stopped the pool (exit status 3 then); recycle: recycle every worker,
    /// overlapped (as SIGHUP does); start: restart a pool that rapid-fail protection
    /// stopped; stop: drain every worker and exit (as SIGTERM does), waiting for it.
    #[arg(value_enum)]
    pub(crate) command: CtlCommand,
    /// The supervisor's control socket (`serve --control`).
    #[arg(long, value_name = "PATH", conflicts_with = "pid")]
    pub(crate) control: Option<PathBuf>,
    /// The supervisor's process id: its default control socket (isapi-host-PID.sock).
    #[arg(long, value_name = "PID")]
    pub(crate) pid: Option<u32>,
}

/// What `isapi-host ctl` asks of the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CtlCommand {
    /// Print the workers, restarts and the pool's state.
    Status,
    /// Recycle every worker, overlapped (SIGHUP).
    Recycle,
    /// Restart the pool after rapid-fail protection stopped it.
    Start,
    /// Drain every worker and exit (SIGTERM).
    Stop,
}

/// Options of `isapi-host serve`.
#[derive(Debug, Default, Args)]
pub(crate) struct ServeArgs {
    /// The WSGI app to serve, as --app takes it (the two must agree when both are given).
    #[arg(value_name = "APP", value_parser = parse_app)]
    pub(crate) app_positional: Option<String>,
    /// A TOML file holding any of the settings below (the command line and the environment win).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Where each setting given on the command line or in the environment came from.
    #[arg(skip)]
    pub(crate) origins: super::cli::Origins,
    /// The settings given on the command line.
    #[command(flatten)]
    pub(crate) settings: Settings,
}

/// How a setting given at a higher level (the command line) takes the
/// place of the same setting at a lower level (the file).
trait Merge {
    /// `self`, or `lower` where `self` is unset.
    fn or(self, lower: Self) -> Self;
}

impl<T> Merge for Option<T> {
    fn or(self, lower: Self) -> Self {
        Option::or(self, lower)
    }
}

/// A repeatable option: the values of one level, never a mix of both.
impl<T> Merge for Vec<T> {
    fn or(self, lower: Self) -> Self {
        if self.is_empty() { lower } else { self }
    }
}

/// A switch: on at either level.
impl Merge for bool {
    fn or(self, lower: Self) -> Self {
        self || lower
    }
}

/// Declares [`Settings`] and its field-by-field [`Settings::or`], so that
/// the list of settings is written once.
macro_rules! settings {
    (
        $(#[$meta:meta])*
        pub(crate) struct $name:ident {
            $( $(#[$attr:meta])* $field:ident: $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        pub(crate) struct $name {
            $( $(#[$attr])* pub(crate) $field: $ty, )*
        }

        impl $name {
            /// These settings, with `lower`'s wherever one is unset here.
            pub(crate) fn or(self, lower: Self) -> Self {
                $name { $( $field: Merge::or(self.$field, lower.$field), )* }
            }
        }
    };
}

settings! {
    /// Every setting of `isapi-host serve`: the long options, and the keys
    /// of the TOML file (the same names, in kebab case). A field's help text
    /// documents it.
    #[derive(Debug, Default, Args, Deserialize)]
    #[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
    pub(crate) struct Settings {
        #[arg(long, value_name = "ADDR", value_parser = super::bind::parse_bind, help = format!(
            "Address to listen on, as HOST:PORT, [IPV6]:PORT or HOST (port 8080); a name \
             listens on its first IPv4 address [default: {DEFAULT_BIND}]. Port 0 picks a free port"
        ))]
        bind: Option<super::bind::BindAddr>,
        /// ISAPI extension library that serves every URL not claimed by a --map.
        #[arg(long, value_name = "PATH")]
        extension: Option<PathBuf>,
        /// Mount an extension library at a URL prefix, as /prefix=PATH (repeatable).
        #[arg(long = "map", value_name = "/PREFIX=PATH", value_parser = parse_map)]
        #[serde(rename = "map")]
        maps: Vec<Mapping>,
        /// Serve one WSGI app through pyisapie, as MODULE:CALLABLE, or MODULE:FACTORY() to call a factory once at start-up (literal arguments allowed).
        #[arg(long, value_name = "MODULE:CALLABLE", value_parser = parse_app)]
        app: Option<String>,
        /// Change to this directory before loading anything: relative paths and the app's imports start there, and it is on the Python path for --app [default: the current directory].
        #[arg(long, value_name = "DIR")]
        chdir: Option<PathBuf>,
        /// Directory added to the Python path for --app (repeatable).
        #[arg(long = "python-path", value_name = "DIR")]
        python_path: Vec<PathBuf>,
        /// With --app: the interpreter pyisapie runs the app in: main, shared (its own sub-interpreter, sharing the main GIL) or isolated (its own GIL, Python 3.12+) [default: isolated from Python 3.13, else main].
        #[arg(long, value_enum, value_name = "MODE")]
        interpreter: Option<InterpreterMode>,
        #[arg(long, value_name = "N", help = format!(
            "With --app: run the app in N own-GIL sub-interpreters (Python 3.12+), so that \
             N of its requests run Python at once in one process; --parallel then defaults \
             to N, at most the CPU share [default: 1; at most {MAX_REPLICAS}]"
        ))]
        replicas: Option<usize>,
        #[arg(long, value_name = "BYTES", help = format!(
            "Request-body bytes preloaded into the ECB before the extension runs \
             [default: {DEFAULT_READ_AHEAD}]"
        ))]
        read_ahead: Option<usize>,
        #[arg(long, value_name = "BYTES", help = format!(
            "Largest request body accepted, in bytes; larger ones get 413 \
             [default: {DEFAULT_MAX_BODY}]"
        ))]
        max_body: Option<u64>,
        #[arg(long, value_name = "BYTES", help = format!(
            "Largest request head (request line plus headers), in bytes; larger ones get 431 \
             [default: {DEFAULT_MAX_HEADER}]"
        ))]
        max_header: Option<usize>,
        #[arg(long, value_name = "N", help = format!(
            "Threads that run HttpExtensionProc (IIS caps its pool at 256) \
             [default: {DEFAULT_THREADS}; {DEFAULT_PYTHON_THREADS} for --app and the demo]"
        ))]
        threads: Option<usize>,
        #[arg(long, value_name = "N", help = format!(
            "Extension threads that may run at once while none of them is blocked \
             [default: the CPU count divided among --workers; {DEFAULT_PYTHON_PARALLEL} for --app and the demo]"
        ))]
        parallel: Option<usize>,
        /// Threads of the async runtime that parse HTTP and move bytes for every connection [default: the CPU count divided among --workers, at least 1].
        #[arg(long, value_name = "N")]
        io_threads: Option<usize>,
        #[arg(long, value_name = "MICROS", help = format!(
            "Microseconds a thread out of work yields its CPU for more before it sleeps, \
             while work comes that fast; 0 sleeps at once, for machines where idle CPU must \
             stay idle [default: {}; at most {MAX_YIELD_US}]",
            DEFAULT_YIELD.as_micros()
        ))]
        yield_us: Option<u64>,
        /// Physical directory for PATH_TRANSLATED and MAP_URL_TO_PATH [default: the current directory].
        #[arg(long, value_name = "DIR")]
        doc_root: Option<PathBuf>,
        /// Log every ISAPI callback with its arguments and byte counts.
        #[arg(long)]
        trace_callbacks: bool,
        #[arg(long, value_enum, value_name = "FORMAT", help = format!(
            "Access log format [default: {}]",
            AccessLogFormat::default().to_possible_value().expect("not skipped").get_name()
        ))]
        access_log: Option<AccessLogFormat>,
        /// Write the access log to a file rather than standard output. A directory (an existing one, or a path ending in /) gets a file per day as IIS names them: u_exYYMMDD.log for w3c (UTC dates), u_ncYYMMDD.log for common and combined (local dates). Any other path is one file, appended to.
        #[arg(long, value_name = "PATH")]
        access_log_file: Option<PathBuf>,
        #[arg(long, value_enum, value_name = "FORMAT", help = format!(
            "Format of the host's own log on stderr: text, or json (one JSON object per line) \
             [default: {}]",
            LogFormat::default().to_possible_value().expect("not skipped").get_name()
        ))]
        log_format: Option<LogFormat>,
        #[arg(long, value_name = "SECS", help = format!(
            "Seconds a client has to send a complete request head, from its first byte \
             [default: {DEFAULT_HEADER_TIMEOUT}]"
        ))]
        header_timeout: Option<u64>,
        #[arg(long, value_name = "SECS", help = format!(
            "Seconds an idle keep-alive connection is kept open [default: {DEFAULT_KEEPALIVE_TIMEOUT}]"
        ))]
        keepalive_timeout: Option<u64>,
        #[arg(long, value_name = "SECS", help = format!(
            "Seconds an extension may wait on a client that sends and takes nothing before \
             the connection is dropped [default: {DEFAULT_IO_TIMEOUT}]"
        ))]
        io_timeout: Option<u64>,
        #[arg(long, value_name = "N", help = format!(
            "Requests in flight (running or queued) before new ones get 503 \
             [default: {DEFAULT_MAX_REQUESTS}]"
        ))]
        max_requests: Option<usize>,
        #[arg(long, value_name = "SECS", help = format!(
            "Seconds to wait for in-flight requests on shutdown [default: {DEFAULT_SHUTDOWN_TIMEOUT}]"
        ))]
        shutdown_timeout: Option<u64>,
        /// Worker processes that serve requests, each with its own extensions (IIS's web garden, `maxProcesses`) [default: 1].
        #[arg(long, value_name = "N")]
        workers: Option<usize>,
        /// One process, no supervisor: the extensions run in the process that listens, and a crash ends the server (for debuggers).
        #[arg(long)]
        no_supervisor: bool,
        #[arg(long, value_name = "COUNT/SECONDS", value_parser = parse_rapid_fail, help = format!(
            "Rapid-fail protection: after COUNT worker crashes within SECONDS the supervisor \
             stops restarting workers and answers 503 until `isapi-host ctl start` or SIGHUP \
             [default: {DEFAULT_RAPID_FAIL_COUNT}/{DEFAULT_RAPID_FAIL_SECS}]"
        ))]
        rapid_fail: Option<String>,
        /// Recycle a worker after it has taken this many requests (IIS's `periodicRestart` `requests`), overlapped: its successor is ready before it stops accepting [default: never].
        #[arg(long, value_name = "N")]
        recycle_requests: Option<u64>,
        /// Recycle a worker whose private memory (RssAnon) exceeds this many MiB, checked every second (IIS's `privateMemory`) [default: never].
        #[arg(long, value_name = "MIB")]
        recycle_memory: Option<u64>,
        /// Recycle a worker this many seconds after it started (IIS's `periodicRestart` `time`) [default: never].
        #[arg(long, value_name = "SECS")]
        recycle_time: Option<u64>,
        /// Hang detection (IIS's `pingResponseTime`): a worker with a request in an extension for longer than this many seconds is logged with its requests and recycled [default: never].
        #[arg(long, value_name = "SECS")]
        hang_timeout: Option<u64>,
        /// Serve the files under DIR at a URL prefix, as /PREFIX=DIR (repeatable; the longest prefix wins, and an extension mounted at the same prefix wins over the files).
        #[arg(long = "static", value_name = "/PREFIX=DIR", value_parser = crate::site::parse_static)]
        #[serde(rename = "static")]
        statics: Vec<crate::site::StaticArg>,
        /// A site's IIS web.config: its IsapiModule handlers, requestFiltering limits, defaultDocument and staticContent, and its directory served as the site's static root (options given here win over it).
        #[arg(long, value_name = "PATH")]
        web_config: Option<PathBuf>,
        /// Map a Windows path prefix in --web-config to a local path, as 'C:\inetpub\site=./site' (repeatable; case-insensitive).
        #[arg(long = "path-map", value_name = "WINDOWS=LOCAL", value_parser = crate::site::webconfig::parse_path_map)]
        path_map: Vec<crate::site::webconfig::PathMap>,
        /// For development: watch the app's Python files (*.py under each --python-path, or the --app module's folder) and every extension library, and recycle every worker, overlapped, when one changes (like `gunicorn --reload`). Needs the supervisor.
        #[arg(long)]
        reload: bool,
        /// The supervisor's control socket, for `isapi-host ctl` [default: isapi-host-PID.sock in $XDG_RUNTIME_DIR, else in the temporary directory].
        #[arg(long, value_name = "PATH")]
        control: Option<PathBuf>,
    }
}

/// pyisapie's interpreter modes (`--interpreter`, its `interpreter` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum InterpreterMode {
    /// The main interpreter.
    Main,
    /// Its own sub-interpreter, sharing the main GIL (any Python).
    Shared,
    /// Its own sub-interpreter with its own GIL (Python 3.12+).
    Isolated,
}

impl InterpreterMode {
    /// The name pyisapie reads (`PYISAPIE_INTERPRETER`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Main => "main",
            Self::Shared => "shared",
            Self::Isolated => "isolated",
        }
    }
}

/// Access-log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AccessLogFormat {
    /// NCSA common log format, as Apache writes it.
    #[default]
    Common,
    /// NCSA combined: common, then the Referer and User-Agent.
    Combined,
    /// W3C extended log format, as IIS writes it: its header and default fields.
    W3c,
    /// No access log.
    Off,
}

/// Formats of the host's own log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// One extension mounted at a URL prefix.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Mapping {
    /// URL prefix in [`url_prefix`]'s form: `""` for the root, else `/name` without a trailing slash.
    pub(crate) prefix: String,
    /// Path of the extension library.
    pub(crate) path: PathBuf,
}

/// Parses `--map /prefix=PATH`.
pub(crate) fn parse_map(s: &str) -> Result<Mapping, String> {
    let (prefix, path) = url_prefix::split_mount(s, "/prefix=PATH", "library path")?;
    Ok(Mapping {
        prefix,
        path: PathBuf::from(path),
    })
}

/// A URL prefix in its one form (`""` for the root); the rules are [`url_prefix`]'s.
pub(crate) fn normalize_prefix(prefix: &str) -> anyhow::Result<String> {
    Ok(url_prefix::normalize(prefix)?)
}

/// Checks `MODULE:CALLABLE` (and `MODULE:FACTORY(ARGS)`; pyisapie checks the arguments).
pub(crate) fn parse_app(s: &str) -> Result<String, String> {
    let dotted = |s: &str| {
        s.split('.').all(|part| {
            let mut chars = part.chars();
            chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
                && chars.all(|c| c == '_' || c.is_alphanumeric())
        })
    };
    let (module, callable) = s.split_once(':').unwrap_or((s, ""));
    let name = match callable.split_once('(') {
        Some((name, args)) if args.ends_with(')') => name,
        Some(_) => "",
        None => callable,
    };
    if dotted(module) && dotted(name) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "expected MODULE:CALLABLE or MODULE:FACTORY() with dotted Python names \
             (e.g. myapp:app, myapp:create_app()), got {s:?}"
        ))
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
        assert_eq!(parse_map("/=x.so").unwrap().prefix, "");
        assert!(parse_map("app=x.so").is_err());
        assert!(parse_map("/app").is_err());
        assert!(parse_map("/app=").is_err());
    }

    #[test]
    fn app_needs_module_and_callable() {
        assert!(parse_app("demo:app").is_ok());
        assert!(parse_app("demo").is_err());
        assert!(parse_app(":app").is_err());
        assert!(parse_app("pkg.web:create_app()").is_ok());
        assert!(parse_app("m:make('x', debug=True)").is_ok());
        assert!(parse_app("m:make(").is_err());
        assert!(parse_app("m:1app").is_err());
    }

    #[test]
    fn the_command_line_wins_field_by_field() {
        let cli = Settings {
            threads: Some(5),
            python_path: vec!["cli".into()],
            ..Default::default()
        };
        let file = Settings {
            threads: Some(3),
            parallel: Some(2),
            python_path: vec!["a".into(), "b".into()],
            trace_callbacks: true,
            ..Default::default()
        };
        let s = cli.or(file);
        assert_eq!(s.threads, Some(5));
        assert_eq!(s.parallel, Some(2));
        assert_eq!(s.python_path, [PathBuf::from("cli")]);
        assert!(s.trace_callbacks);
        assert_eq!(s.bind, None);
    }
}
