//! The extension's life cycle: start-up (configuration, logging, Python, the apps), the
//! per-request entry and termination. Rust-only state lives in a process-wide `OnceLock`;
//! Python objects live in the interpreter's [`Context`].

use std::sync::{Mutex, OnceLock, PoisonError};

use pyo3::prelude::*;
use pyo3::types::{PyList, PyModule};
use windows_sys::Win32::System::Iis::HSE_STATUS_ERROR;

use crate::config::{self, AppSpec, Config, Env, InterpreterMode};
use crate::ffi::Ecb;
use crate::ffi::exports::Extension as IsapiExtension;
use crate::ffi::library;
use crate::ffi::python::{self, PythonSettings};
use crate::interpreters::{Home, Homes};
use crate::paths::{self, Style};
use crate::request;
use crate::server_vars::{BaseSource, RequestInfo, Var};
use crate::wsgi::{Context, Link, Options, error_text};

/// Process-wide, Rust-only state of a started extension.
struct Extension {
    config: Config,
    description: String,
    base: OnceLock<BaseSource>,
    /// Each app's interpreter(s).
    homes: Homes,
}

static EXTENSION: OnceLock<Extension> = OnceLock::new();
static START: Mutex<()> = Mutex::new(());

/// The extension behind the ISAPI exports (the crate root names it with
/// `ffi::exports::isapi_exports!`).
pub(crate) struct Pyisapie;

impl IsapiExtension for Pyisapie {
    /// `GetExtensionVersion`: starts everything once; later calls report the first result.
    fn start() -> Result<String, ()> {
        let _serialised = START.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ext) = EXTENSION.get() {
            return Ok(ext.description.clone());
        }
        let mut log = None;
        match start_inner(&mut log) {
            Ok(ext) => {
                let description = ext.description.clone();
                let _ = EXTENSION.set(ext);
                Ok(description)
            }
            Err(message) => {
                report_start_failure(&message, log.as_ref());
                Err(())
            }
        }
    }

    /// `HttpExtensionProc`: gathers the server variables, routes the URL, runs the app.
    fn handle(ecb: Ecb) -> u32 {
        let Some(ext) = EXTENSION.get() else {
            return request::plain_response(
                ecb,
                "503 Service Unavailable",
                "pyisapie did not start\n",
            );
        };
        let base = ext
            .base
            .get_or_init(|| BaseSource::detect(ext.config.base.as_deref(), ecb));
        let info = match RequestInfo::gather(ecb, base) {
            Ok(info) => info,
            Err(e) => {
                tracing::error!(target: "pyisapie", "cannot read the request's server variables: {e}");
                return HSE_STATUS_ERROR;
            }
        };
        let Some(route) =
            crate::mount::route(&ext.config.apps, info.get(Var::Base), info.get(Var::Url))
        else {
            return request::plain_response(ecb, "404 Not Found", "Not Found\n");
        };
        let link = Link::new(ecb);
        let entered = match &ext.homes.apps[route.app] {
            Home::Main { slot } => {
                let route = crate::mount::Route {
                    app: *slot,
                    ..route
                };
                ext.homes
                    .main
                    .enter(|py| request::run(py, ecb, &link, &info, &route))
            }
            Home::Own(replicas) => {
                let route = crate::mount::Route { app: 0, ..route };
                replicas.run(|py| request::run(py, ecb, &link, &info, &route))
            }
        };
        let finished = match entered {
            Ok(finished) => finished,
            Err(e) => {
                tracing::error!(target: "pyisapie", "cannot run the app: {e}");
                link.close();
                return request::plain_response(
                    ecb,
                    "503 Service Unavailable",
                    "pyisapie is shutting down\n",
                );
            }
        };
        let status = finished.complete(&link);
        link.close();
        status
    }

    /// `TerminateExtension`: first every sub-interpreter is ended, newest first, each after
    /// flushing its streams; then the main interpreter's `sys.stdout`, `sys.stderr` and
    /// `wsgi.errors` are flushed (a partial line is logged). The main interpreter is
    /// deliberately not finalised (server threads may still be inside it).
    fn terminate(flags: u32) {
        tracing::info!(target: "pyisapie", "TerminateExtension({flags}): unloading");
        if let Some(ext) = EXTENSION.get() {
            for e in ext.homes.end(&flush_streams) {
                tracing::error!(target: "pyisapie", "cannot end {e}");
            }
            if let Err(e) = ext.homes.main.enter(flush_streams) {
                tracing::warn!(target: "pyisapie", "cannot flush the main interpreter's streams: {e}");
            }
        }
    }
}

/// Flushes the current interpreter's `sys.stdout`, `sys.stderr` and `wsgi.errors`.
fn flush_streams(py: Python<'_>) {
    for name in ["stdout", "stderr"] {
        if let Ok(stream) = py.import("sys").and_then(|sys| sys.getattr(name)) {
            let _ = stream.call_method0("flush");
        }
    }
    if let Ok(ctx) = Context::get(py) {
        ctx.flush_errors(py);
    }
}

/// The directory holding this library (for `pyisapie.toml`).
fn library_dir() -> Option<std::path::PathBuf> {
    paths::parent_native(&library::library_file()?)
}

/// Says once, on stderr, why the extension did not start; and in the log when it is a file.
///
/// Under `isapi-host serve --app` (which sets `PYISAPIE_APP_SOURCE`) the message is the
/// user's only news of it, as `error: ...`; the host adds nothing. Otherwise (IIS, or the
/// host's `--extension`) it is logged, and also written to stderr when the log is not there
/// or did not start.
fn report_start_failure(message: &str, log: Option<&config::LogTarget>) {
    let hosted = std::env::var_os("PYISAPIE_APP_SOURCE").is_some();
    let log_is_file = matches!(log, Some(config::LogTarget::File(_)));
    if log.is_some() && (log_is_file || !hosted) {
        tracing::error!(target: "pyisapie", "{message}");
    }
    if hosted {
        eprintln!("error: {message}");
    } else if log.is_none() || log_is_file {
        eprintln!("pyisapie: start-up failed: {message}");
    }
}

/// Loads the configuration, starts the log and Python, and imports the applications.
/// `log` is set once the log is started.
fn start_inner(log: &mut Option<config::LogTarget>) -> Result<Extension, String> {
    let library_dir = library_dir();
    let config =
        config::load(&Env::from_process(), library_dir.as_deref()).map_err(|e| e.to_string())?;
    crate::log::init(&config.log, &config.log_level)?;
    *log = Some(config.log.clone());
    match library::promote_libpython() {
        Ok(lib) => tracing::debug!(target: "pyisapie", "libpython symbols made global: {lib}"),
        Err(e) => tracing::warn!(target: "pyisapie", "{e}"),
    }
    let fresh = python::initialize_python(PythonSettings {
        optimize: config.optimize,
        write_bytecode: config.write_bytecode,
        home: config.python_home.as_deref(),
    })
    .map_err(|e| python_start_failed(e, config.python_home.as_deref()))?;
    let options = Options {
        debug: config.debug,
        redirect_std_streams: fresh,
    };
    Python::attach(|py| {
        Context::install(py, options).map(drop).map_err(|e| {
            format!(
                "cannot set up pyisapie in the interpreter: {}",
                error_text(py, &e)
            )
        })
    })?;
    if !fresh {
        tracing::warn!(
            target: "pyisapie",
            "Python was already running in this process: optimize and write_bytecode are not \
             applied, and sys.stdout and sys.stderr are left as they are"
        );
    }
    Python::attach(log_python);
    let homes = Homes::start(
        &config,
        &|py| {
            let options = Options {
                debug: config.debug,
                redirect_std_streams: true,
            };
            Context::install(py, options).map(drop).map_err(|e| {
                format!(
                    "cannot set up pyisapie in a sub-interpreter: {}",
                    error_text(py, &e)
                )
            })
        },
        &|py, apps, app_paths, mode| load_apps(py, &config, apps, app_paths, mode),
    )?;
    let python = crate::interpreters::python_version();
    let description = format!("pyisapie {} (Python {python})", env!("CARGO_PKG_VERSION"));
    for (index, app) in config.apps.iter().enumerate() {
        let prefix = if app.prefix.is_empty() {
            "/"
        } else {
            &app.prefix
        };
        tracing::info!(target: "pyisapie", "mounted {app} at {prefix} ({})", homes.describe(index));
    }
    tracing::info!(target: "pyisapie", "{description} ready (configuration from {})", config.source);
    Ok(Extension {
        config,
        description,
        base: OnceLock::new(),
        homes,
    })
}

/// The message for a Python that did not start, with where its library was loaded from
/// and what to configure (most often: the standard library is not where Python looks).
fn python_start_failed(message: String, home: Option<&std::path::Path>) -> String {
    let library = library::python_library()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(unknown)".to_owned());
    let (landmark, example) = if cfg!(windows) {
        (
            r"Lib\os.py, or the python3XX.zip of an embeddable Python",
            r"'C:\Python311'",
        )
    } else {
        ("lib/python3.X/os.py", "'/usr'")
    };
    match home {
        Some(home) => format!(
            "{message}. The Python library is {library}; python_home is {}: it must be the \
             folder of that Python's installation, holding {landmark}",
            home.display()
        ),
        None => format!(
            "{message}. The Python library is {library}; Python looks for its standard \
             library ({landmark}) from that library's folder. If the standard library is \
             elsewhere (for example when python3XX.dll was copied away from its \
             installation), set python_home = {example} in pyisapie.toml, the folder of \
             that Python's installation"
        ),
    }
}

/// Imports the app's module and returns its WSGI callable (calling a factory once). The
/// errors are the user's, in the user's words: the app as written, where it was configured
/// (`--app`, a `pyisapie.toml`), and the exception with only the user's frames.
fn load_app<'py>(
    py: Python<'py>,
    boot: &Bound<'py, PyModule>,
    app: &config::AppSpec,
    source: &str,
    mode: InterpreterMode,
) -> Result<Bound<'py, PyAny>, String> {
    let describe = |e: &PyErr| -> (String, Option<String>) {
        boot.call_method1("describe_exception", (e.value(py), e.traceback(py)))
            .and_then(|t| t.extract())
            .unwrap_or_else(|_| (error_text(py, e), None))
    };
    // `what (from source):` then the exception: on the same line when it is one line.
    let failed = |what: String, e: &PyErr| {
        let (only, traceback) = describe(e);
        let message = match traceback {
            Some(tb) => format!("{what}:\n{tb}"),
            None if only.contains('\n') => format!("{what}:\n{only}"),
            None => format!("{what}: {only}"),
        };
        match refusing_module(py, boot, e) {
            Some(module) => format!("{}\n{message}", refused(app, source, mode, &module)),
            None => message,
        }
    };
    let module = boot
        .call_method1("import_module", (&app.module,))
        .map_err(|e| {
            let mut message = failed(format!("cannot import app \"{app}\" (from {source})"), &e);
            if e.is_instance_of::<pyo3::exceptions::PyModuleNotFoundError>(py) {
                let sys_path = py
                    .import("sys")
                    .and_then(|sys| sys.getattr("path"))
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                message.push_str(&format!("\n(sys.path is {sys_path})"));
            }
            message
        })?;
    let mut obj = boot
        .call_method1("lookup", (module, &app.module, &app.attr))
        .map_err(|e| failed(format!("cannot load app \"{app}\" (from {source})"), &e))?;
    if let Some(text) = &app.args {
        let (args, kwargs): (
            Bound<'py, pyo3::types::PyList>,
            Bound<'py, pyo3::types::PyDict>,
        ) = boot
            .call_method1("factory_arguments", (text,))
            .and_then(|t| t.extract())
            .map_err(|e| failed(format!("cannot load app \"{app}\" (from {source})"), &e))?;
        let args = pyo3::types::PyTuple::new(py, args.iter()).map_err(|e| error_text(py, &e))?;
        obj = obj.call(args, Some(&kwargs)).map_err(|e| {
            failed(
                format!("the app factory \"{app}\" (from {source}) raised an exception"),
                &e,
            )
        })?;
    }
    if !obj.is_callable() {
        let kind = obj
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        return Err(match app.args {
            Some(_) => format!(
                "the app factory \"{app}\" (from {source}) returned {kind}, not a WSGI callable"
            ),
            None => format!("app \"{app}\" (from {source}) is not callable: it is {kind}"),
        });
    }
    Ok(obj)
}

/// The module named by an `ImportError` (in `e` or what caused it) saying that it cannot
/// load in a sub-interpreter.
fn refusing_module(py: Python<'_>, boot: &Bound<'_, PyModule>, e: &PyErr) -> Option<String> {
    boot.call_method1("refusing_module", (e.value(py),))
        .and_then(|m| m.extract::<Option<String>>())
        .ok()
        .flatten()
}

/// The start-up error for an app whose import reached a module that refuses this
/// interpreter mode: the app, the module, the Python version and the fix.
fn refused(app: &AppSpec, source: &str, mode: InterpreterMode, module: &str) -> String {
    let python = crate::interpreters::python_version();
    let (what, fix) = match mode {
        InterpreterMode::Isolated => (
            "an isolated sub-interpreter (own GIL)",
            "set interpreter = \"shared\" (its own sub-interpreter, sharing the main GIL) or \
             interpreter = \"main\" for this app",
        ),
        _ => (
            "a sub-interpreter",
            "set interpreter = \"main\" for this app",
        ),
    };
    format!(
        "app \"{app}\" (from {source}) cannot run in {what} on Python {python}: the module \
         {module} does not support sub-interpreters. To fix it, {fix} (in pyisapie.toml, or \
         PYISAPIE_INTERPRETER with --app)."
    )
}

/// Logs the Python in use, once.
fn log_python(py: Python<'_>) {
    if let Ok(sys) = py.import("sys") {
        let get = |name: &str| sys.getattr(name).map(|v| v.to_string()).unwrap_or_default();
        tracing::info!(
            target: "pyisapie",
            "Python {} from {} (sys.base_prefix {})",
            crate::interpreters::python_version(),
            library::python_library()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(unknown)".to_owned()),
            get("base_prefix")
        );
    }
}

/// In the current interpreter: sets up `sys.path` (`app_paths`, then the global
/// `python_path` and virtualenv), imports `apps` and installs the interpreter's context.
/// Errors carry the traceback.
fn load_apps(
    py: Python<'_>,
    config: &Config,
    apps: &[&AppSpec],
    app_paths: &[std::path::PathBuf],
    mode: InterpreterMode,
) -> Result<(), String> {
    let ctx = Context::get(py).map_err(|e| error_text(py, &e))?;
    let boot = ctx.boot(py);
    let format = |e: &PyErr| {
        boot.call_method1("format_exception", (e.value(py), e.traceback(py)))
            .and_then(|s| s.extract::<String>())
            .unwrap_or_else(|_| error_text(py, e))
    };
    let python_path: Vec<String> = app_paths
        .iter()
        .chain(&config.python_path)
        .map(|p| p.display().to_string())
        .collect();
    let venv = config.virtualenv.as_ref().map(|p| p.display().to_string());
    let version = py.version_info();
    let (site_dirs, venv_python) = match &venv {
        Some(v) => (
            paths::venv_site_packages(Style::NATIVE, v, version.major, version.minor),
            Some(paths::venv_python(Style::NATIVE, v)),
        ),
        None => (Vec::new(), None),
    };
    let skipped = boot
        .call_method1(
            "setup_paths",
            (
                PyList::new(py, &python_path).map_err(|e| error_text(py, &e))?,
                venv,
                PyList::new(py, &site_dirs).map_err(|e| error_text(py, &e))?,
                venv_python,
                config.virtualenv_found,
            ),
        )
        .map_err(|e| {
            format!(
                "cannot set up the Python path ({}): {}",
                config.source,
                format(&e)
            )
        })?;
    if !skipped.is_none() {
        tracing::warn!(target: "pyisapie", "{skipped}");
    } else if let (Some(venv), true) = (&config.virtualenv, config.virtualenv_found) {
        tracing::info!(target: "pyisapie", "using the virtualenv {} (found, not configured)", venv.display());
    }
    let mut loaded = Vec::with_capacity(apps.len());
    for app in apps {
        loaded.push(load_app(py, boot, app, &config.source, mode)?);
    }
    ctx.set_apps(loaded)
        .map_err(|e| format!("cannot create the interpreter context: {}", format(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a test executable the module holding this library's code is the executable
    /// itself; on Windows this goes through `GetModuleHandleExW` and `GetModuleFileNameW`
    /// (run it under Wine, see `ci/windows.sh`).
    #[test]
    fn library_dir_is_the_folder_of_the_module() {
        let dir = library_dir().expect("the module's folder");
        let exe = std::env::current_exe().unwrap();
        let canonical = |p: &std::path::Path| std::fs::canonicalize(p).unwrap();
        assert_eq!(canonical(&dir), canonical(exe.parent().unwrap()));
    }
}
