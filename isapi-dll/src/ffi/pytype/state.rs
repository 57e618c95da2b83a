//! [`Key`] and [`Stored`]: a Rust value kept in the current interpreter's own dictionary
//! (`PyInterpreterState_GetDict`), in a capsule.

use std::any::TypeId;
use std::ffi::CStr;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;

use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::prelude::*;

/// The name of a value of type `T` in the interpreter's dictionary (also the capsule's
/// name).
pub(crate) struct Key<T> {
    name: &'static CStr,
    _value: PhantomData<fn() -> T>,
}

impl<T: 'static> Key<T> {
    /// The key `name`.
    pub(crate) const fn new(name: &'static CStr) -> Self {
        Self {
            name,
            _value: PhantomData,
        }
    }

    /// Stores `value` in the current interpreter, replacing (and dropping) any earlier one.
    pub(crate) fn store<'py>(&self, py: Python<'py>, value: T) -> PyResult<Stored<'py, T>> {
        let entry = Box::into_raw(Box::new(Entry {
            type_id: TypeId::of::<T>(),
            value,
        }));
        // SAFETY: the GIL is held; the name is static (the capsule keeps the pointer); on
        // success the capsule owns `entry` and frees it in `destroy::<T>`, on failure it
        // is freed here.
        let capsule = unsafe {
            let capsule = ffi::PyCapsule_New(entry.cast(), self.name.as_ptr(), Some(destroy::<T>));
            if capsule.is_null() {
                drop(Box::from_raw(entry));
            }
            Bound::from_owned_ptr_or_err(py, capsule)?
        };
        let dict = crate::ffi::python::interpreter_dict(py)?;
        // SAFETY: the GIL is held; a live dict, a NUL-terminated key and a live value (the
        // dict takes its own reference). Returns -1 with an exception set on failure.
        if unsafe { ffi::PyDict_SetItemString(dict.as_ptr(), self.name.as_ptr(), capsule.as_ptr()) }
            < 0
        {
            return Err(PyErr::fetch(py));
        }
        Ok(Stored {
            _capsule: capsule,
            value: entry,
        })
    }

    /// The value stored in the current interpreter, if any.
    pub(crate) fn load<'py>(&self, py: Python<'py>) -> PyResult<Option<Stored<'py, T>>> {
        let dict = crate::ffi::python::interpreter_dict(py)?;
        // SAFETY: the GIL is held; `dict` is a live dict and the key a NUL-terminated
        // string. The result is borrowed (null when absent, without an exception).
        let found = unsafe { ffi::PyDict_GetItemString(dict.as_ptr(), self.name.as_ptr()) };
        if found.is_null() {
            return Ok(None);
        }
        // SAFETY: `found` is a live object kept by the dictionary; take our own reference.
        let capsule = unsafe { Bound::from_borrowed_ptr(py, found) };
        // SAFETY: checking the type reads the object's header only.
        if unsafe { ffi::PyCapsule_CheckExact(capsule.as_ptr()) } == 0 {
            return Err(PyRuntimeError::new_err(format!(
                "{} is not a pyisapie capsule",
                self.name.to_string_lossy()
            )));
        }
        // SAFETY: a capsule; GetPointer checks its name (null with ValueError otherwise).
        let entry = unsafe { ffi::PyCapsule_GetPointer(capsule.as_ptr(), self.name.as_ptr()) };
        if entry.is_null() {
            return Err(PyErr::fetch(py));
        }
        // SAFETY: a capsule of this name holds an `Entry<U>` made by `store`, whose first
        // field (repr(C)) is the TypeId of U, whatever U is.
        if unsafe { (*entry.cast::<Entry<()>>()).type_id } != TypeId::of::<T>() {
            return Err(PyRuntimeError::new_err("pyisapie capsule of another type"));
        }
        Ok(Some(Stored {
            _capsule: capsule,
            value: entry.cast(),
        }))
    }
}

#[repr(C)]
struct Entry<T> {
    type_id: TypeId,
    value: T,
}

/// The capsule's destructor: drops the value (with the GIL held, when the interpreter's
/// dictionary lets go of it).
unsafe extern "C" fn destroy<T>(capsule: *mut ffi::PyObject) {
    // SAFETY: CPython calls the destructor once, with the GIL, for a capsule made by
    // `store::<T>`; its name is the one it was made with.
    unsafe {
        let name = ffi::PyCapsule_GetName(capsule);
        let entry = ffi::PyCapsule_GetPointer(capsule, name).cast::<Entry<T>>();
        if entry.is_null() {
            ffi::PyErr_Clear();
            return;
        }
        if let Err(payload) =
            std::panic::catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(entry))))
        {
            crate::ffi::guard::panic_caught("a per-interpreter value's drop", &*payload);
        }
    }
}

/// A value stored in the current interpreter, borrowed with a token: it stays alive while
/// this lives (the capsule is held).
pub(crate) struct Stored<'py, T> {
    _capsule: Bound<'py, PyAny>,
    value: *const Entry<T>,
}

impl<T> std::ops::Deref for Stored<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the capsule (held) owns the entry until its destructor runs, and the
        // value is never moved or changed through the capsule. Only threads holding this
        // interpreter's GIL reach it (through a token), one at a time.
        unsafe { &(*self.value).value }
    }
}
