//! [`Context`]: the per-interpreter state, kept in the interpreter's own dictionary, never
//! in a `static`, so that each interpreter (the main one, or any sub-interpreter) has its
//! own.

use std::cell::OnceCell;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyModule;

use super::environ::Environ;
use super::errors::{LogStream, LogWriter, redirect_std_streams};
use super::file_wrapper::FileWrapper;
use super::input::Input;
use super::response::Response;
use crate::ffi::pytype::{HeapType, Held, Instance, Key, Owned, Stored};

/// The Python-facing types of one interpreter, made when its context is installed.
pub(crate) struct Types {
    /// `wsgi.input`.
    pub(crate) input: HeapType<Input>,
    /// `start_response` (and its `write`).
    pub(crate) response: HeapType<Response>,
    /// `wsgi.file_wrapper`.
    pub(crate) file_wrapper: HeapType<FileWrapper>,
    /// `wsgi.errors`, `sys.stdout`, `sys.stderr`.
    pub(crate) log_writer: HeapType<LogWriter>,
}

impl Types {
    fn new(py: Python<'_>) -> PyResult<Self> {
        Ok(Self {
            input: HeapType::new(py)?,
            response: HeapType::new(py)?,
            file_wrapper: HeapType::new(py)?,
            log_writer: HeapType::new(py)?,
        })
    }
}

/// How [`Context::install`] sets up an interpreter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// Tracebacks in 500 responses.
    pub(crate) debug: bool,
    /// Send `sys.stdout` and `sys.stderr` to the log (see `redirect_std_streams`): for an
    /// interpreter pyisapie started itself.
    pub(crate) redirect_std_streams: bool,
}

/// Per-interpreter state: everything the request path needs from Python. Installed once
/// per interpreter, in that interpreter's private dictionary, and reached only through
/// [`Context::get`] with a token of that interpreter: it holds [`Owned`] references, so it
/// is neither `Send` nor `Sync`, and nothing of it can be carried to another interpreter.
pub(crate) struct Context {
    /// This interpreter's Python-facing types.
    pub(crate) types: Types,
    /// The interned keys and the template of every environ.
    pub(crate) environ: Environ,
    /// The bootstrap module (`boot.py`: paths, imports, tracebacks, file inspection).
    boot: Owned<PyModule>,
    /// Tracebacks in 500 responses.
    pub(crate) debug: bool,
    /// `wsgi.errors`, shared by every request.
    errors: Held<LogWriter>,
    /// The app callables, in the order of the configuration's (sorted) app list; set once
    /// they are imported ([`Context::set_apps`]).
    apps: OnceCell<Vec<Owned>>,
}

/// The current interpreter's context, borrowed with its token.
pub(crate) type ContextRef<'py> = Stored<'py, Context>;

const CONTEXT: Key<Context> = Key::new(c"pyisapie.context");

impl Context {
    /// Sets up the current interpreter (the main one, or a sub-interpreter whose thread
    /// state is current): makes its types, its `wsgi.errors`, the environ template and
    /// the bootstrap module, sends its `sys.stdout` and `sys.stderr` to the log if asked,
    /// and stores the context in the interpreter's dictionary (replacing an earlier one).
    /// The apps come later, with [`Context::set_apps`], so that their imports already
    /// print to the log.
    pub(crate) fn install(py: Python<'_>, options: Options) -> PyResult<ContextRef<'_>> {
        let types = Types::new(py)?;
        let errors = types
            .log_writer
            .instantiate(py, LogWriter::new(LogStream::WsgiErrors))?;
        let environ = Environ::new(py, errors.as_any(), types.file_wrapper.type_object(py))?;
        let boot = PyModule::from_code(
            py,
            pyo3::ffi::c_str!(include_str!("../boot.py")),
            c"<pyisapie boot>",
            c"_pyisapie_boot",
        )?;
        if options.redirect_std_streams {
            redirect_std_streams(py, &types.log_writer)?;
        }
        let context = Self {
            types,
            environ,
            boot: Owned::new(boot),
            debug: options.debug,
            errors: errors.unbind(),
            apps: OnceCell::new(),
        };
        CONTEXT.store(py, context)
    }

    /// The current interpreter's context.
    pub(crate) fn get(py: Python<'_>) -> PyResult<ContextRef<'_>> {
        CONTEXT.load(py)?.ok_or_else(|| {
            PyRuntimeError::new_err("pyisapie is not initialised in this interpreter")
        })
    }

    /// Keeps the imported apps (once).
    pub(crate) fn set_apps(&self, apps: Vec<Bound<'_, PyAny>>) -> PyResult<()> {
        self.apps
            .set(apps.into_iter().map(Owned::new).collect())
            .map_err(|_| PyRuntimeError::new_err("the apps are already set"))
    }

    /// App number `index` (of the configuration's list).
    pub(crate) fn app<'py>(&self, py: Python<'py>, index: usize) -> PyResult<&Bound<'py, PyAny>> {
        self.apps
            .get()
            .and_then(|apps| apps.get(index))
            .map(|app| app.bind(py))
            .ok_or_else(|| PyRuntimeError::new_err(format!("no app number {index}")))
    }

    /// The bootstrap module.
    pub(crate) fn boot<'py>(&self, py: Python<'py>) -> &Bound<'py, PyModule> {
        self.boot.bind(py)
    }

    /// `wsgi.errors`.
    pub(crate) fn errors<'py>(&self, py: Python<'py>) -> Instance<'py, LogWriter> {
        self.errors.bind(py)
    }

    /// Logs a line left unfinished in `wsgi.errors`.
    pub(crate) fn flush_errors(&self, py: Python<'_>) {
        if let Ok(errors) = self.errors(py).try_borrow() {
            errors.flush_pending();
        }
    }

    /// Formats an exception with its traceback.
    pub(crate) fn format_exception(&self, py: Python<'_>, err: &PyErr) -> String {
        self.boot
            .bind(py)
            .call_method1("format_exception", (err.value(py), err.traceback(py)))
            .and_then(|s| s.extract::<String>())
            .unwrap_or_else(|_| error_text(py, err))
    }
}

/// `str(obj)`, like pyo3's `Display` of an object but without its fallback for a failing
/// `__str__`, which reads the type's name through an `intern!`ed (process-wide) string.
pub(crate) fn text_of(obj: &Bound<'_, PyAny>) -> String {
    match obj.str() {
        Ok(s) => s.to_string_lossy().into_owned(),
        Err(_) => "<unprintable object>".to_owned(),
    }
}

/// An exception as `TypeName: message`, like pyo3's `Display` of a `PyErr` but without
/// its `intern!`ed attribute names (process-wide statics, shared by every interpreter).
pub(crate) fn error_text(py: Python<'_>, err: &PyErr) -> String {
    let value = err.value(py);
    let name = value
        .get_type()
        .getattr("__qualname__")
        .and_then(|n| n.extract::<String>())
        .unwrap_or_else(|_| "Exception".to_owned());
    match value.str() {
        Ok(s) => format!("{name}: {}", s.to_string_lossy()),
        Err(_) => format!("{name}: <exception str() failed>"),
    }
}
