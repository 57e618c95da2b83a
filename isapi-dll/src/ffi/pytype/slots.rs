//! The methods, getters and slots of a [`PyValue`] type, as static C data whose
//! functions are trampolines into Rust functions.
//!
//! Each Rust function is a zero-sized function item; its trampoline is instantiated for
//! that item's type, and calls it without needing a pointer to it (so `PyMethodDef`s can
//! be `const`).

use std::ffi::{CStr, c_void};
use std::marker::PhantomData;

use pyo3::ffi;
use pyo3::prelude::*;

use super::args::Args;
use super::call_from_python;
use super::class::{Instance, PyValue, alloc};

/// The function item `F`, made from nothing.
fn conjure<F: Copy>() -> F {
    const {
        assert!(
            size_of::<F>() == 0,
            "a Python method must be a function item"
        );
    };
    // SAFETY: F is zero-sized (asserted above) and inhabited: the constructors below take
    // a value of it, and accept only `Fn` types (function items and capture-less
    // closures, which have no invariants), so reading one from a dangling, well-aligned
    // pointer reads nothing and yields a valid value.
    unsafe { std::ptr::NonNull::<F>::dangling().read() }
}

/// One method of a [`PyValue`] type (a `PyMethodDef`).
#[repr(transparent)]
pub(crate) struct Method<T>(ffi::PyMethodDef, PhantomData<T>);

impl<T: PyValue> Method<T> {
    /// The end of the method array.
    pub(crate) const END: Self = Self(ffi::PyMethodDef::zeroed(), PhantomData);

    /// `name(*args, **kwargs)`, calling `f` with the instance and the arguments.
    pub(crate) const fn new<F>(name: &'static CStr, doc: &'static CStr, f: F) -> Self
    where
        F: for<'a, 'py> Fn(&'a Instance<'py, T>, Args<'a, 'py>) -> PyResult<Bound<'py, PyAny>>
            + Copy,
    {
        let _ = f;
        Self(
            ffi::PyMethodDef {
                ml_name: name.as_ptr(),
                ml_meth: ffi::PyMethodDefPointer {
                    PyCFunctionFastWithKeywords: method::<T, F>,
                },
                ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
                ml_doc: doc.as_ptr(),
            },
            PhantomData,
        )
    }

    pub(super) fn is_end(&self) -> bool {
        self.0.ml_name.is_null()
    }
}

unsafe extern "C" fn method<T: PyValue, F>(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject
where
    F: for<'a, 'py> Fn(&'a Instance<'py, T>, Args<'a, 'py>) -> PyResult<Bound<'py, PyAny>> + Copy,
{
    call_from_python(T::NAME, std::ptr::null_mut(), |py| {
        // SAFETY: CPython calls a METH_FASTCALL | METH_KEYWORDS method of T's type with an
        // instance of that type (the method descriptor checks it), `nargs` positional
        // arguments followed by one value per name in `kwnames` (null or a tuple of str),
        // all borrowed for the call.
        let (this, args) = unsafe {
            (
                Instance::<T>::from_borrowed_ptr(py, slf),
                Args::from_vector(py, args, nargs, kwnames),
            )
        };
        conjure::<F>()(&this, args).map(Bound::into_ptr)
    })
}

/// One read-only attribute of a [`PyValue`] type (a `PyGetSetDef`).
#[repr(transparent)]
pub(crate) struct Getter<T>(ffi::PyGetSetDef, PhantomData<T>);

impl<T: PyValue> Getter<T> {
    /// The end of the getter array.
    pub(crate) const END: Self = Self(
        ffi::PyGetSetDef {
            name: std::ptr::null(),
            get: None,
            set: None,
            doc: std::ptr::null(),
            closure: std::ptr::null_mut(),
        },
        PhantomData,
    );

    /// The attribute `name`, whose value `f` returns.
    pub(crate) const fn new<F>(name: &'static CStr, f: F) -> Self
    where
        F: for<'py> Fn(&Instance<'py, T>) -> PyResult<Bound<'py, PyAny>> + Copy,
    {
        let _ = f;
        Self(
            ffi::PyGetSetDef {
                name: name.as_ptr(),
                get: Some(getter::<T, F>),
                set: None,
                doc: std::ptr::null(),
                closure: std::ptr::null_mut(),
            },
            PhantomData,
        )
    }

    pub(super) fn is_end(&self) -> bool {
        self.0.name.is_null()
    }
}

unsafe extern "C" fn getter<T: PyValue, F>(
    slf: *mut ffi::PyObject,
    _closure: *mut c_void,
) -> *mut ffi::PyObject
where
    F: for<'py> Fn(&Instance<'py, T>) -> PyResult<Bound<'py, PyAny>> + Copy,
{
    call_from_python(T::NAME, std::ptr::null_mut(), |py| {
        // SAFETY: CPython calls a getter of T's type with an instance of it (the getset
        // descriptor checks it).
        let this = unsafe { Instance::<T>::from_borrowed_ptr(py, slf) };
        conjure::<F>()(&this).map(Bound::into_ptr)
    })
}

/// The slots of a [`PyValue`] type: construction from Python, calling, iteration, `repr`.
pub(crate) struct Slots<T> {
    pub(super) new: Option<ffi::newfunc>,
    pub(super) call: Option<ffi::ternaryfunc>,
    pub(super) iter: Option<ffi::getiterfunc>,
    pub(super) iternext: Option<ffi::iternextfunc>,
    pub(super) repr: Option<ffi::reprfunc>,
    _value: PhantomData<T>,
}

impl<T> Clone for Slots<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Slots<T> {}

impl<T: PyValue> Slots<T> {
    /// No slots: instances are made by Rust only, and are neither callable nor iterable.
    pub(crate) const NONE: Self = Self {
        new: None,
        call: None,
        iter: None,
        iternext: None,
        repr: None,
        _value: PhantomData,
    };

    /// `Type(*args, **kwargs)` makes an instance holding what `f` returns.
    pub(crate) const fn constructor<F>(self, f: F) -> Self
    where
        F: for<'a, 'py> Fn(Python<'py>, Args<'a, 'py>) -> PyResult<T> + Copy,
    {
        let _ = f;
        Self {
            new: Some(construct::<T, F>),
            ..self
        }
    }

    /// `instance(*args, **kwargs)` calls `f`.
    pub(crate) const fn call<F>(self, f: F) -> Self
    where
        F: for<'a, 'py> Fn(&'a Instance<'py, T>, Args<'a, 'py>) -> PyResult<Bound<'py, PyAny>>
            + Copy,
    {
        let _ = f;
        Self {
            call: Some(call::<T, F>),
            ..self
        }
    }

    /// `iter(instance)` is the instance; `next(instance)` calls `f` (`None`: the end).
    pub(crate) const fn iterate<F>(self, f: F) -> Self
    where
        F: for<'py> Fn(&Instance<'py, T>) -> PyResult<Option<Bound<'py, PyAny>>> + Copy,
    {
        let _ = f;
        Self {
            iter: Some(iter_self),
            iternext: Some(iternext::<T, F>),
            ..self
        }
    }

    /// `repr(instance)` is what `f` returns.
    pub(crate) const fn repr<F>(self, f: F) -> Self
    where
        F: for<'py> Fn(&Instance<'py, T>) -> PyResult<Bound<'py, PyAny>> + Copy,
    {
        let _ = f;
        Self {
            repr: Some(repr::<T, F>),
            ..self
        }
    }
}

unsafe extern "C" fn construct<T: PyValue, F>(
    subtype: *mut ffi::PyTypeObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject
where
    F: for<'a, 'py> Fn(Python<'py>, Args<'a, 'py>) -> PyResult<T> + Copy,
{
    call_from_python(T::NAME, std::ptr::null_mut(), |py| {
        // SAFETY: CPython calls tp_new with a tuple of positional arguments and a dict of
        // keyword arguments or null, borrowed for the call.
        let args = unsafe { Args::from_tuple(py, args, kwargs) };
        let value = conjure::<F>()(py, args)?;
        // SAFETY: `subtype` is T's type (it cannot be subclassed), made for `T`.
        unsafe { alloc(py, subtype, value) }.map(|i| i.as_any().clone().into_ptr())
    })
}

unsafe extern "C" fn call<T: PyValue, F>(
    slf: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject
where
    F: for<'a, 'py> Fn(&'a Instance<'py, T>, Args<'a, 'py>) -> PyResult<Bound<'py, PyAny>> + Copy,
{
    call_from_python(T::NAME, std::ptr::null_mut(), |py| {
        // SAFETY: CPython calls tp_call of T's type with an instance of it, a tuple of
        // positional arguments and a dict of keyword arguments or null.
        let (this, args) = unsafe {
            (
                Instance::<T>::from_borrowed_ptr(py, slf),
                Args::from_tuple(py, args, kwargs),
            )
        };
        conjure::<F>()(&this, args).map(Bound::into_ptr)
    })
}

unsafe extern "C" fn iter_self(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython calls tp_iter with a live object and the GIL held; the result is a
    // new reference.
    unsafe { ffi::Py_INCREF(slf) };
    slf
}

unsafe extern "C" fn iternext<T: PyValue, F>(slf: *mut ffi::PyObject) -> *mut ffi::PyObject
where
    F: for<'py> Fn(&Instance<'py, T>) -> PyResult<Option<Bound<'py, PyAny>>> + Copy,
{
    call_from_python(T::NAME, std::ptr::null_mut(), |py| {
        // SAFETY: CPython calls tp_iternext of T's type with an instance of it.
        let this = unsafe { Instance::<T>::from_borrowed_ptr(py, slf) };
        // The end of iteration is null without an exception.
        Ok(conjure::<F>()(&this)?.map_or(std::ptr::null_mut(), Bound::into_ptr))
    })
}

unsafe extern "C" fn repr<T: PyValue, F>(slf: *mut ffi::PyObject) -> *mut ffi::PyObject
where
    F: for<'py> Fn(&Instance<'py, T>) -> PyResult<Bound<'py, PyAny>> + Copy,
{
    call_from_python(T::NAME, std::ptr::null_mut(), |py| {
        // SAFETY: CPython calls tp_repr of T's type with an instance of it.
        let this = unsafe { Instance::<T>::from_borrowed_ptr(py, slf) };
        conjure::<F>()(&this).map(Bound::into_ptr)
    })
}
