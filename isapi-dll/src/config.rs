//! Configuration: where it comes from and what it holds.
//!
//! Sources, first match wins:
//! 1. the TOML file named by `PYISAPIE_CONFIG`;
//! 2. `PYISAPIE_APP=module:callable` (plus `PYISAPIE_PYTHONPATH`, a path list, and the optional
//!    `PYISAPIE_VIRTUALENV`, `PYISAPIE_DEBUG`, `PYISAPIE_LOG`, `PYISAPIE_INTERPRETER`,
//!    `PYISAPIE_REPLICAS`) — what `isapi-host serve --app`
//!    sets, with `PYISAPIE_APP_SOURCE` naming where its user gave the app (`--app`), for
//!    messages;
//! 3. `pyisapie.toml` in the directory of the library itself (the usual IIS deployment).
//!
//! When no virtualenv is configured, an activated one (`VIRTUAL_ENV`) is used, else a
//! `.venv` in the server's working directory; such a found virtualenv is skipped with a
//! warning if it was made for another Python version.
//!
//! ```toml
//! python_path = ["app", "/srv/lib"]   # relative paths are relative to this file
//! virtualenv = "/srv/venv"
//! optimize = 0                         # Python's -O level: 0, 1 or 2
//! write_bytecode = true
//! # python_home = 'C:\Python311'     # PYTHONHOME, if Python cannot find its stdlib
//! debug = false                        # tracebacks in 500 responses
//! log = "stderr"                       # or a file path (appended to)
//! log_level = "info"
//! # base = "/vdir"                     # URL prefix the extension is mounted at (see below)
//!
//! [[app]]
//! prefix = "/"
//! callable = "mysite.wsgi:application"   # or a factory, called once: "mysite:create_app()"
//! # interpreter = "isolated"           # "main", "shared" or "isolated" (see InterpreterMode)
//! # replicas = 2                       # isolated only: N interpreters of this app
//! # python_path = ["site_a"]           # this app's own folders, before the global ones
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::paths::{self, Style};

/// Name of the configuration file looked up beside the library.
pub const CONFIG_FILE_NAME: &str = "pyisapie.toml";

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// The process's standard error.
    Stderr,
    /// A file, opened for appending.
    File(PathBuf),
}

/// The interpreter an app runs in (`interpreter = ...` in its `[[app]]` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InterpreterMode {
    /// The main interpreter, shared with every other `main` app (pyisapie's behaviour before
    /// sub-interpreters).
    Main,
    /// An own sub-interpreter with its own GIL (PEP 684, Python 3.12 and later): its own
    /// modules and `os.environ`, and Python code running in parallel with other apps.
    Isolated,
    /// An own sub-interpreter that shares the main GIL (the classic `Py_NewInterpreter`, as
    /// the original PyISAPIe did): its own modules and `os.environ`, any Python version, and
    /// C extensions that do not declare sub-interpreter support still load.
    Shared,
}

impl InterpreterMode {
    /// The mode of an app that names none: `isolated` where the Python's standard library
    /// loads in own-GIL interpreters (`isolated_ok`: 3.13 and later), else `main`. (On
    /// 3.12, where `_datetime`, `_decimal`, `pyexpat` and `_ctypes` refuse them, an app
    /// asks for `isolated` itself, or has `replicas`.)
    pub fn default_for(isolated_ok: bool) -> Self {
        if isolated_ok {
            Self::Isolated
        } else {
            Self::Main
        }
    }

    /// The name used in `pyisapie.toml`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Main => "main",
            Self::Isolated => "isolated",
            Self::Shared => "shared",
        }
    }
}

/// The most replicas one app may have.
pub const MAX_REPLICAS: u32 = 64;

/// One WSGI application mounted at a URL prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// URL prefix relative to the extension's own mount, normalised: `""` for the root, else
    /// `/seg...` without a trailing slash.
    pub prefix: String,
    /// Module to import.
    pub module: String,
    /// Attribute path of the callable inside the module (`app`, `wsgi.application`).
    pub attr: String,
    /// For a factory (`create_app()`, `make('prod', debug=False)`), the text between its
    /// parentheses: literal arguments, which `boot.py` parses. The factory is called once,
    /// at start-up, and returns the WSGI callable.
    pub args: Option<String>,
    /// The interpreter mode asked for; `None` takes [`InterpreterMode::default_for`].
    pub interpreter: Option<InterpreterMode>,
    /// How many interpreters run this app (more than one only when isolated).
    pub replicas: u32,
    /// The app's own directories, put in front of `sys.path` before the global
    /// `python_path` (in its own interpreter; a `main` app shares the main one's).
    pub python_path: Vec<PathBuf>,
}

impl fmt::Display for AppSpec {
    /// As written: `module:callable` or `module:factory(args)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.module, self.attr)?;
        match &self.args {
            Some(args) => write!(f, "({args})"),
            None => Ok(()),
        }
    }
}

/// The complete, validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where this configuration came from, for messages.
    pub source: String,
    /// Applications, sorted by descending prefix length (longest match first).
    pub apps: Vec<AppSpec>,
    /// Directories put in front of `sys.path`, in order.
    pub python_path: Vec<PathBuf>,
    /// A virtualenv whose site-packages are used.
    pub virtualenv: Option<PathBuf>,
    /// The virtualenv was found (`VIRTUAL_ENV`, `./.venv`), not configured: a mismatch
    /// with the interpreter's version is a warning, not an error.
    pub virtualenv_found: bool,
    /// Python's optimisation level (`-O`, `-OO`).
    pub optimize: u8,
    /// Whether Python writes `.pyc` files.
    pub write_bytecode: bool,
    /// Python's home (`PYTHONHOME`): where its standard library lives. Rarely needed.
    pub python_home: Option<PathBuf>,
    /// Show tracebacks in 500 responses.
    pub debug: bool,
    /// Log destination.
    pub log: LogTarget,
    /// Log level filter (`error`, `warn`, `info`, `debug`, `trace`).
    pub log_level: String,
    /// Overrides the URL prefix the extension is mounted at (otherwise the server's
    /// `SCRIPT_NAME`, or under IIS the application's virtual path).
    pub base: Option<String>,
}

/// A configuration error, naming its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    source: String,
    message: String,
}

impl ConfigError {
    fn new(source: &str, message: impl Into<String>) -> Self {
        Self {
            source: source.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pyisapie configuration error in {}: {}",
            self.source, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    app: Vec<FileApp>,
    #[serde(default)]
    python_path: Vec<PathBuf>,
    virtualenv: Option<PathBuf>,
    optimize: Option<u8>,
    write_bytecode: Option<bool>,
    python_home: Option<PathBuf>,
    debug: Option<bool>,
    log: Option<String>,
    log_level: Option<String>,
    base: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileApp {
    #[serde(default = "root_prefix")]
    prefix: String,
    callable: String,
    interpreter: Option<InterpreterMode>,
    replicas: Option<u32>,
    #[serde(default)]
    python_path: Vec<PathBuf>,
}

fn root_prefix() -> String {
    "/".to_owned()
}

/// The environment variables the configuration reads, captured once (testable).
#[derive(Debug, Default, Clone)]
pub struct Env {
    /// `PYISAPIE_CONFIG`
    pub config: Option<String>,
    /// `PYISAPIE_APP`
    pub app: Option<String>,
    /// `PYISAPIE_APP_SOURCE`: where the host's user gave the app (`--app`, `ISAPI_HOST_APP`).
    pub app_source: Option<String>,
    /// `PYISAPIE_PYTHONPATH`
    pub python_path: Option<String>,
    /// `PYISAPIE_VIRTUALENV`
    pub virtualenv: Option<String>,
    /// `PYISAPIE_DEBUG`
    pub debug: Option<String>,
    /// `PYISAPIE_LOG`
    pub log: Option<String>,
    /// `PYISAPIE_LOG_LEVEL`
    pub log_level: Option<String>,
    /// `PYISAPIE_INTERPRETER`: the app's interpreter mode (`main`, `shared`, `isolated`).
    pub interpreter: Option<String>,
    /// `PYISAPIE_REPLICAS`: the app's replicas.
    pub replicas: Option<String>,
    /// `VIRTUAL_ENV` (an activated virtualenv)
    pub virtual_env: Option<String>,
    /// `.venv` in the working directory, if it holds a `pyvenv.cfg`.
    pub cwd_venv: Option<PathBuf>,
}

impl Env {
    /// Reads the variables from the process environment.
    pub fn from_process() -> Self {
        let get = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            config: get("PYISAPIE_CONFIG"),
            app: get("PYISAPIE_APP"),
            app_source: get("PYISAPIE_APP_SOURCE"),
            python_path: get("PYISAPIE_PYTHONPATH"),
            virtualenv: get("PYISAPIE_VIRTUALENV"),
            debug: get("PYISAPIE_DEBUG"),
            log: get("PYISAPIE_LOG"),
            log_level: get("PYISAPIE_LOG_LEVEL"),
            interpreter: get("PYISAPIE_INTERPRETER"),
            replicas: get("PYISAPIE_REPLICAS"),
            virtual_env: get("VIRTUAL_ENV"),
            cwd_venv: std::env::current_dir()
                .ok()
                .map(|d| d.join(".venv"))
                .filter(|v| v.join("pyvenv.cfg").is_file()),
        }
    }
}

/// Loads the configuration from the first source that applies.
///
/// `library_dir` is the directory holding the extension library (for `pyisapie.toml`).
pub fn load(env: &Env, library_dir: Option<&Path>) -> Result<Config, ConfigError> {
    let mut config = if let Some(path) = &env.config {
        load_file(Path::new(path))?
    } else if let Some(app) = &env.app {
        from_env(env, app)?
    } else {
        let candidate = library_dir.map(|dir| dir.join(CONFIG_FILE_NAME));
        match candidate {
            Some(path) if path.is_file() => load_file(&path)?,
            _ => {
                let looked = candidate
                    .map(|p| format!(" and {} does not exist", p.display()))
                    .unwrap_or_default();
                return Err(ConfigError::new(
                    "the environment",
                    format!(
                        "no application configured: set PYISAPIE_APP=module:callable or \
                         PYISAPIE_CONFIG=/path/to/{CONFIG_FILE_NAME}{looked}"
                    ),
                ));
            }
        }
    };
    if config.virtualenv.is_none() {
        config.virtualenv = env
            .virtual_env
            .as_ref()
            .map(PathBuf::from)
            .or_else(|| env.cwd_venv.clone());
        config.virtualenv_found = config.virtualenv.is_some();
    }
    Ok(config)
}

/// Reads and validates a TOML configuration file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(&source, format!("cannot read the file: {e}")))?;
    let base_dir = paths::parent_native(path).unwrap_or_else(|| PathBuf::from("."));
    parse_toml(&text, &source, &base_dir)
}

/// Parses TOML text; relative paths are resolved against `base_dir`.
pub fn parse_toml(text: &str, source: &str, base_dir: &Path) -> Result<Config, ConfigError> {
    parse_toml_in(Style::NATIVE, text, source, base_dir)
}

/// [`parse_toml`] with the path rules of `style` (tests use the other platform's).
fn parse_toml_in(
    style: Style,
    text: &str,
    source: &str,
    base_dir: &Path,
) -> Result<Config, ConfigError> {
    let file: FileConfig =
        toml::from_str(text).map_err(|e| ConfigError::new(source, e.to_string()))?;
    if file.app.is_empty() {
        return Err(ConfigError::new(
            source,
            "no [[app]] table: add one with prefix = \"/\" and callable = \"module:app\"",
        ));
    }
    let resolve = |p: &PathBuf| paths::resolve_path(style, base_dir, p);
    let mut apps = file
        .app
        .iter()
        .map(|app| {
            let mut spec = app_spec(&app.prefix, &app.callable)?;
            spec.interpreter = app.interpreter;
            spec.replicas = check_replicas(&spec, app.replicas)?;
            spec.python_path = app.python_path.iter().map(resolve).collect();
            Ok(spec)
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(|m| ConfigError::new(source, m))?;
    if let Some(p) = url_prefix::first_duplicate(apps.iter().map(|a| a.prefix.as_str())) {
        return Err(ConfigError::new(
            source,
            format!(
                "two apps are mounted at the same prefix {:?}",
                url_prefix::shown(p)
            ),
        ));
    }
    url_prefix::longest_first(&mut apps, |a| &a.prefix);
    let optimize = file.optimize.unwrap_or(0);
    if optimize > 2 {
        return Err(ConfigError::new(
            source,
            format!("optimize must be 0, 1 or 2, not {optimize}"),
        ));
    }
    let log_level = file.log_level.unwrap_or_else(|| "info".to_owned());
    check_level(&log_level).map_err(|m| ConfigError::new(source, m))?;
    let base = file.base.map(|b| normalize_prefix(&b)).transpose();
    Ok(Config {
        source: source.to_owned(),
        apps,
        python_path: file.python_path.iter().map(resolve).collect(),
        virtualenv: file.virtualenv.as_ref().map(resolve),
        virtualenv_found: false,
        optimize,
        write_bytecode: file.write_bytecode.unwrap_or(true),
        python_home: file.python_home.as_ref().map(resolve),
        debug: file.debug.unwrap_or(false),
        log: log_target(style, file.log.as_deref(), base_dir),
        log_level,
        base: base.map_err(|m| ConfigError::new(source, m))?,
    })
}

fn from_env(env: &Env, app: &str) -> Result<Config, ConfigError> {
    let source = env.app_source.as_deref().unwrap_or("PYISAPIE_APP");
    let mut spec = app_spec("/", app).map_err(|m| ConfigError::new(source, m))?;
    if let Some(mode) = &env.interpreter {
        spec.interpreter = Some(match mode.to_ascii_lowercase().as_str() {
            "main" => InterpreterMode::Main,
            "shared" => InterpreterMode::Shared,
            "isolated" => InterpreterMode::Isolated,
            _ => {
                return Err(ConfigError::new(
                    "PYISAPIE_INTERPRETER",
                    format!("must be main, shared or isolated, not {mode:?}"),
                ));
            }
        });
    }
    let replicas = env
        .replicas
        .as_deref()
        .map(|v| {
            v.parse::<u32>()
                .map_err(|_| ConfigError::new("PYISAPIE_REPLICAS", format!("not a number: {v:?}")))
        })
        .transpose()?;
    spec.replicas =
        check_replicas(&spec, replicas).map_err(|m| ConfigError::new("PYISAPIE_REPLICAS", m))?;
    let python_path = env
        .python_path
        .as_deref()
        .map(|list| {
            paths::split_list(Style::NATIVE, list)
                .into_iter()
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    let debug = match env.debug.as_deref() {
        None => false,
        Some(v) => parse_bool(v)
            .ok_or_else(|| ConfigError::new("PYISAPIE_DEBUG", format!("not a boolean: {v:?}")))?,
    };
    let log_level = env.log_level.clone().unwrap_or_else(|| "info".to_owned());
    check_level(&log_level).map_err(|m| ConfigError::new("PYISAPIE_LOG_LEVEL", m))?;
    Ok(Config {
        source: source.to_owned(),
        apps: vec![spec],
        python_path,
        virtualenv: env.virtualenv.as_ref().map(PathBuf::from),
        virtualenv_found: false,
        optimize: 0,
        write_bytecode: true,
        python_home: None,
        debug,
        log: log_target(Style::NATIVE, env.log.as_deref(), Path::new(".")),
        log_level,
        base: None,
    })
}

/// `replicas` of one app: 1 to [`MAX_REPLICAS`], and more than 1 only for an isolated app
/// (or one that names no mode: the default is checked against the Python at start-up).
fn check_replicas(app: &AppSpec, replicas: Option<u32>) -> Result<u32, String> {
    let Some(n) = replicas else { return Ok(1) };
    if !(1..=MAX_REPLICAS).contains(&n) {
        return Err(format!(
            "app \"{app}\": replicas must be between 1 and {MAX_REPLICAS}, not {n}"
        ));
    }
    match app.interpreter {
        Some(mode @ (InterpreterMode::Main | InterpreterMode::Shared)) if n > 1 => Err(format!(
            "app \"{app}\": replicas = {n} needs interpreter = \"isolated\" (each replica is \
             an own-GIL sub-interpreter), not \"{}\"; remove replicas or set \
             interpreter = \"isolated\" (Python 3.12 or later)",
            mode.name()
        )),
        _ => Ok(n),
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn check_level(level: &str) -> Result<(), String> {
    match level.to_ascii_lowercase().as_str() {
        "error" | "warn" | "info" | "debug" | "trace" | "off" => Ok(()),
        _ => Err(format!(
            "log_level must be error, warn, info, debug, trace or off, not {level:?}"
        )),
    }
}

fn log_target(style: Style, value: Option<&str>, base_dir: &Path) -> LogTarget {
    match value {
        None | Some("" | "stderr") => LogTarget::Stderr,
        Some(path) => LogTarget::File(paths::resolve_path(style, base_dir, Path::new(path))),
    }
}

/// Parses `module:callable` (or `module:factory(args)`) and a prefix into an [`AppSpec`].
pub fn app_spec(prefix: &str, callable: &str) -> Result<AppSpec, String> {
    let (module, target) = callable.split_once(':').ok_or_else(|| {
        format!(
            "callable {callable:?} must be written as module:callable or module:factory() \
             (e.g. myapp:app, myapp:create_app())"
        )
    })?;
    let (attr, args) = match target.split_once('(') {
        Some((name, rest)) => {
            let inner = rest.strip_suffix(')').ok_or_else(|| {
                format!("callable {callable:?}: a factory's arguments end with ')'")
            })?;
            (name, Some(inner.trim().to_owned()))
        }
        None => (target, None),
    };
    let is_dotted = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|part| {
                let mut chars = part.chars();
                chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
                    && chars.all(|c| c == '_' || c.is_alphanumeric())
            })
    };
    if !is_dotted(module) || !is_dotted(attr) {
        return Err(format!(
            "callable {callable:?} must be written as module:callable or module:factory() \
             with dotted Python names"
        ));
    }
    Ok(AppSpec {
        prefix: normalize_prefix(prefix)?,
        module: module.to_owned(),
        attr: attr.to_owned(),
        args,
        interpreter: None,
        replicas: 1,
        python_path: Vec::new(),
    })
}

/// A URL prefix in its one form (`""` for the root); the rules are [`url_prefix`]'s.
pub fn normalize_prefix(prefix: &str) -> Result<String, String> {
    url_prefix::normalize(prefix).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
