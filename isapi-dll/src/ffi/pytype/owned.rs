//! [`Owned`]: an owned reference kept in per-interpreter state.

use std::marker::PhantomData;
use std::mem::ManuallyDrop;

use pyo3::ffi;
use pyo3::prelude::*;

/// An owned reference to a Python object of the interpreter that was current when it was
/// made, for per-interpreter state (the context, the values of [`HeapType`](super::HeapType)
/// instances).
///
/// Neither `Send` nor `Sync`: Rust code cannot give it to another thread, so it reaches
/// another thread only inside a Python object of its own interpreter, under that
/// interpreter's GIL. Its drop releases the reference at once, never through pyo3's
/// process-wide pool; should it ever be dropped where its interpreter is not current (it
/// was carried out of its interpreter's scope on the same thread), it is leaked, not
/// released under the wrong GIL.
pub(crate) struct Owned<T = PyAny> {
    obj: ManuallyDrop<Py<T>>,
    interp: *mut ffi::PyInterpreterState,
    _not_send: PhantomData<*mut ()>,
}

#[cfg(test)]
thread_local! {
    /// How many [`Owned`] this thread leaked (dropped outside their interpreter), for tests.
    pub(crate) static LEAKED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The interpreter of the thread's current thread state, or null when the thread has none.
fn current_interpreter() -> *mut ffi::PyInterpreterState {
    // SAFETY: may be called at any time; returns null when no thread state is current.
    let tstate = unsafe { ffi::compat::PyThreadState_GetUnchecked() };
    if tstate.is_null() {
        return std::ptr::null_mut();
    }
    // SAFETY: `tstate` is this thread's current, live thread state.
    unsafe { ffi::PyThreadState_GetInterpreter(tstate) }
}

impl<T> Owned<T> {
    /// Keeps `obj`, as belonging to the current interpreter.
    pub(crate) fn new(obj: Bound<'_, T>) -> Self {
        Self {
            obj: ManuallyDrop::new(obj.unbind()),
            interp: current_interpreter(),
            _not_send: PhantomData,
        }
    }

    /// The object, for as long as the token's scope.
    pub(crate) fn bind<'a, 'py>(&'a self, py: Python<'py>) -> &'a Bound<'py, T> {
        self.obj.bind(py)
    }

    /// A second reference to the same object.
    pub(crate) fn clone_ref(&self, py: Python<'_>) -> Self {
        Self {
            obj: ManuallyDrop::new(self.obj.clone_ref(py)),
            interp: self.interp,
            _not_send: PhantomData,
        }
    }

    /// The object's pointer (borrowed).
    pub(crate) fn as_ptr(&self) -> *mut ffi::PyObject {
        self.obj.as_ptr()
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        if current_interpreter() != self.interp {
            #[cfg(test)]
            LEAKED.set(LEAKED.get() + 1);
            tracing::error!(
                target: "pyisapie",
                "a Python object was dropped outside its interpreter; leaked"
            );
            return;
        }
        // SAFETY: the thread holds the GIL of the interpreter the object belongs to (its
        // thread state is current), and this reference is released exactly once.
        unsafe { ffi::Py_DECREF(self.obj.as_ptr()) }
    }
}
