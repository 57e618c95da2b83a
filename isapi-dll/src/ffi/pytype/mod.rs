//! Per-interpreter Python types and state, on pyo3-ffi, so that every Python object the
//! extension makes belongs to exactly one interpreter (the main one, or any
//! sub-interpreter, with its own GIL or not).
//!
//! pyo3's `#[pyclass]` type objects, `intern!` strings and `PyOnceLock` caches are Rust
//! `static`s, shared by every interpreter of the process; `Python::assume_attached` sends
//! drops through a process-wide pool. None of them is used here. Instead:
//!
//! - [`HeapType`]: a heap type made with `PyType_FromSpec` in the current interpreter,
//!   whose instances own a Rust value `T` ([`PyValue`] describes the type: its name, its
//!   [`Method`]s, [`Getter`]s and [`Slots`], as static C data). The interpreter's
//!   context keeps one per Rust type; [`Instance`] is a typed handle on one instance,
//!   bound to a `Python<'py>` token, with `RefCell`-like borrowing of its value.
//! - [`Owned`]: an owned reference kept in per-interpreter state. Unlike pyo3's `Py<T>`
//!   it is neither `Send` nor `Sync`, so Rust code cannot hand it to another thread (and
//!   so to another interpreter); its drop releases the reference at once, and never
//!   under another interpreter.
//! - [`Key`], [`Stored`]: a Rust value kept in the current interpreter's own dictionary
//!   (`PyInterpreterState_GetDict`), in a capsule, and borrowed back from a token.
//! - [`Args`]: the arguments of a call from Python, positional and keyword, parsed by
//!   name.
//!
//! Every call from Python into Rust goes through one trampoline
//! ([`call_from_python`]): it raises pyo3's attach count with `Python::attach` (which only
//! counts when, as here, the thread is already attached, and otherwise attaches through
//! `PyGILState_Ensure`, which finds the thread's current state on Python 3.12 and later),
//! catches panics (a `SystemError` in Python, and the log), and turns `Err` into the
//! Python exception.
//!
//! Soundness rests on the GIL: the values inside instances and in the interpreter's
//! dictionary are only ever reached by a thread holding their interpreter's GIL, one
//! thread at a time. Free-threaded Python (no GIL) is refused at compile time.

#[cfg(Py_GIL_DISABLED)]
compile_error!(
    "pyisapie's per-interpreter types rely on the GIL: free-threaded Python is not supported"
);

mod args;
mod class;
mod owned;
mod slots;
mod state;
#[cfg(all(test, Py_3_12))]
pub(crate) mod testing;

use std::panic::AssertUnwindSafe;

use pyo3::prelude::*;

pub(crate) use args::{Arg, Args, required};
pub(crate) use class::{HeapType, Held, Instance, PyValue};
pub(crate) use owned::Owned;
pub(crate) use slots::{Getter, Method, Slots};
pub(crate) use state::{Key, Stored};

/// Runs the Rust side of a call from Python (`what` names it in a panic's report) and
/// returns its result, or `failed` with a Python exception set: the `Err` it returned, or
/// a `SystemError` for a panic.
fn call_from_python<R>(
    what: &std::ffi::CStr,
    failed: R,
    body: impl for<'py> FnOnce(Python<'py>) -> PyResult<R>,
) -> R {
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
        Python::attach(|py| body(py).map_err(|e| e.restore(py)))
    }));
    match outcome {
        Ok(Ok(value)) => value,
        Ok(Err(())) => failed,
        Err(payload) => {
            let what = what.to_string_lossy();
            super::guard::panic_caught(&what, &*payload);
            let message =
                std::ffi::CString::new(format!("pyisapie: panic in {what}")).unwrap_or_default();
            // SAFETY: Python called us, so this thread holds the GIL; the message is a
            // NUL-terminated string that PyErr_SetString copies.
            unsafe { pyo3::ffi::PyErr_SetString(pyo3::ffi::PyExc_SystemError, message.as_ptr()) };
            failed
        }
    }
}
