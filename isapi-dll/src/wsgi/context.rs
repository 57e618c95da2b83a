//! [`Context`]: the per-interpreter state, kept in the interpreter's own dictionary, never
//! in a `static` (so that each sub-interpreter can later have its own).

use pyo3::prelude::*;
use pyo3::types::PyModule;

use super::environ::Environ;
use super::errors::{LogStream, LogWriter};
use crate::ffi::python::interpreter_dict;

/// Per-interpreter state: everything the request path needs from Python, created once at
/// start-up and stored in the interpreter's private dictionary.
#[pyclass(frozen, module = "pyisapie", name = "Context")]
pub(crate) struct Context {
    /// The app callables, in the order of the configuration's (sorted) app list.
    pub(crate) apps: Vec<Py<PyAny>>,
    /// The interned keys and the template of every environ.
    pub(crate) environ: Environ,
    /// The bootstrap module (traceback formatting, file inspection).
    pub(crate) boot: Py<PyModule>,
    /// Tracebacks in 500 responses.
    pub(crate) debug: bool,
    /// `wsgi.errors`, shared by every request.
    pub(crate) errors: Py<LogWriter>,
}

const CONTEXT_KEY: &str = "pyisapie.context";

impl Context {
    /// Builds the context and stores it in the current interpreter.
    pub(crate) fn install(
        py: Python<'_>,
        apps: Vec<Py<PyAny>>,
        boot: Py<PyModule>,
        debug: bool,
    ) -> PyResult<()> {
        let errors = Py::new(py, LogWriter::new(LogStream::WsgiErrors))?;
        let environ = Environ::new(py, errors.bind(py))?;
        let context = Self {
            apps,
            environ,
            boot,
            debug,
            errors,
        };
        interpreter_dict(py)?.set_item(CONTEXT_KEY, Bound::new(py, context)?)
    }

    /// The current interpreter's context.
    pub(crate) fn get(py: Python<'_>) -> PyResult<Bound<'_, Self>> {
        let dict = interpreter_dict(py)?;
        let item = dict
            .get_item(pyo3::intern!(py, CONTEXT_KEY))?
            .ok_or_else(|| {
                pyo3::exceptions::PyRuntimeError::new_err(
                    "pyisapie is not initialised in this interpreter",
                )
            })?;
        Ok(item.cast_into::<Self>()?)
    }

    /// Formats an exception with its traceback.
    pub(crate) fn format_exception(&self, py: Python<'_>, err: &PyErr) -> String {
        self.boot
            .bind(py)
            .call_method1("format_exception", (err.value(py), err.traceback(py)))
            .and_then(|s| s.extract::<String>())
            .unwrap_or_else(|_| err.to_string())
    }
}
