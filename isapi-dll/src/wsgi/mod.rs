//! The Python-facing types, all in this one module family, one file per WSGI concept,
//! each using only the files listed before it:
//!
//! - [`link`]: [`Link`], the way a request's Python objects reach its ECB, cut when the
//!   request ends (it holds no Python object, so it may cross threads);
//! - [`errors`]: `wsgi.errors`, `sys.stdout` and `sys.stderr`, which write to the log;
//! - [`file_wrapper`]: [`FileWrapper`], `wsgi.file_wrapper`;
//! - [`input`]: [`Input`], `wsgi.input`;
//! - [`response`]: [`Response`], the `start_response` callable, its `write()`, and the
//!   response writer that frames the body (Content-Length, chunked or close-delimited);
//! - [`environ`]: the interned keys, the environ template and the environ of one request;
//! - [`context`]: [`Context`], the per-interpreter state.
//!
//! # One interpreter, one context
//! Every Python object here belongs to exactly one interpreter, and the types say so:
//!
//! - The Python types are heap types made per interpreter (`ffi::pytype::HeapType`,
//!   `PyType_FromSpec`), not `#[pyclass]` statics; the interned strings are made per
//!   interpreter too, not with `intern!`. All of them live in that interpreter's
//!   [`Context`], which lives in the interpreter's own dictionary.
//! - [`Context::get`] finds the current interpreter's context and lends it for the
//!   token's lifetime. What it holds is kept as `ffi::pytype::Owned` references, which
//!   are neither `Send` nor `Sync`: no Rust code can carry them to another thread or
//!   interpreter, and they are released at once (never through pyo3's process-wide
//!   pool). Instances (`Instance<'py, T>`) are bound to a token too.
//! - What crosses threads ([`Link`], [`Deferred`], the request's status) holds no Python
//!   object.
//! - Nothing here calls `Python::assume_attached`; calls from Python come in through
//!   `ffi::pytype`'s trampolines, which use `Python::attach`.
//!
//! # Entry points (for the interpreter modes)
//! With an interpreter's thread state current (the main interpreter, a sub-interpreter
//! sharing the main GIL, or one with its own GIL), inside `Python::attach`:
//!
//! 1. [`Context::install`]`(py, Options { debug, redirect_std_streams })` makes that
//!    interpreter's types, its `wsgi.errors`, the environ template and the bootstrap
//!    module (`boot.py`), sends its `sys.stdout`/`sys.stderr` to the log if asked (do so
//!    for every interpreter pyisapie creates), and stores the context.
//! 2. Import the apps with the bootstrap module ([`Context::boot`]: `setup_paths`,
//!    `import_module`, ...), then [`Context::set_apps`] keeps them, in the order of the
//!    configuration's app list (what `mount::Route::app` indexes).
//! 3. Per request, `request::run(py, ...)` finds the context with [`Context::get`].
//!
//! The context is dropped when its interpreter's dictionary is cleared (by
//! `Py_EndInterpreter`, with that interpreter's thread state current).
//!
//! Notes for the code that enters interpreters:
//! - The token must come from `Python::attach` called *after* the interpreter's thread
//!   state is made current (`PyEval_RestoreThread`). With no pyo3 attach on the thread,
//!   `Python::attach` calls `PyGILState_Ensure`, which finds that current state on 3.12+
//!   (activation rebinds the thread's gilstate); on 3.11 and earlier it finds the
//!   thread's *first* state, so a thread that already has a main-interpreter state (see
//!   `ffi::python::adopt_thread`) must not enter a sub-interpreter that way.
//! - Calls from Python into these types (from the app's own threads too) take the same
//!   route, and need nothing more.
//! - Never let a pyo3 `Py<T>` or `PyErr` outlive the attach scope of its interpreter:
//!   pyo3 then defers its release to a process-wide pool that the next attach on *any*
//!   interpreter drains. Format errors with [`error_text`] (pyo3's `Display` of a
//!   `PyErr` reads an `intern!`ed, process-wide string) before leaving the scope.

mod context;
mod environ;
mod errors;
mod file_wrapper;
mod input;
mod link;
mod response;

pub(crate) use context::{Context, Options, error_text, text_of};
pub(crate) use file_wrapper::FileWrapper;
pub(crate) use input::Input;
pub(crate) use link::Link;
pub(crate) use response::{Deferred, Disconnected, Response};
#[cfg(test)]
mod tests;
