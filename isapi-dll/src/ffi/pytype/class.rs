//! [`HeapType`]: a per-interpreter heap type whose instances own a Rust value, and
//! [`Instance`], a typed handle on one of them.

use std::cell::{Ref, RefCell, RefMut};
use std::ffi::{CStr, c_int, c_void};
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;

use pyo3::exceptions::{PyRuntimeError, PySystemError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyType;

use super::owned::Owned;
use super::slots::{Getter, Method, Slots};

/// A Rust value held by the instances of a per-interpreter heap type: the type's name,
/// documentation, methods, getters and slots, as static C data.
pub(crate) trait PyValue: Sized + 'static {
    /// The type's dotted name (`pyisapie.Input`: `__module__` is `pyisapie`).
    const NAME: &'static CStr;
    /// The type's docstring.
    const DOC: &'static CStr;
    /// The methods, ending with [`Method::END`] (or empty).
    const METHODS: &'static [Method<Self>] = &[];
    /// The read-only attributes, ending with [`Getter::END`] (or empty).
    const GETTERS: &'static [Getter<Self>] = &[];
    /// Construction, calling, iteration and `repr`.
    const SLOTS: Slots<Self> = Slots::NONE;
}

/// The memory layout of an instance: the object header, then the value.
#[repr(C)]
struct Object<T> {
    ob_base: ffi::PyObject,
    value: RefCell<T>,
}

/// A heap type of the current interpreter whose instances own a `T`. Made once per
/// interpreter and kept in its context; never shared with another interpreter (it holds
/// an [`Owned`]).
pub(crate) struct HeapType<T> {
    ty: Owned<PyType>,
    _value: PhantomData<T>,
}

impl<T: PyValue> HeapType<T> {
    /// Makes the type in the current interpreter (`PyType_FromSpec`).
    pub(crate) fn new(py: Python<'_>) -> PyResult<Self> {
        const {
            // PyObject_Malloc aligns to 16 bytes on 64-bit systems, 8 on 32-bit ones.
            assert!(align_of::<Object<T>>() <= align_of::<u64>());
        };
        let s = &T::SLOTS;
        let mut slots: Vec<ffi::PyType_Slot> = Vec::with_capacity(12);
        let mut push = |slot: c_int, pfunc: *mut c_void| {
            slots.push(ffi::PyType_Slot { slot, pfunc });
        };
        push(
            ffi::Py_tp_dealloc,
            dealloc::<T> as ffi::destructor as *mut c_void,
        );
        let new = s.new.unwrap_or(refuse_new::<T>);
        push(ffi::Py_tp_new, new as *mut c_void);
        push(ffi::Py_tp_doc, T::DOC.as_ptr().cast_mut().cast());
        if !T::METHODS.is_empty() {
            if !T::METHODS.last().is_some_and(Method::is_end) {
                return Err(PySystemError::new_err("methods must end with Method::END"));
            }
            push(ffi::Py_tp_methods, T::METHODS.as_ptr().cast_mut().cast());
        }
        if !T::GETTERS.is_empty() {
            if !T::GETTERS.last().is_some_and(Getter::is_end) {
                return Err(PySystemError::new_err("getters must end with Getter::END"));
            }
            push(ffi::Py_tp_getset, T::GETTERS.as_ptr().cast_mut().cast());
        }
        for (slot, f) in [
            (ffi::Py_tp_call, s.call.map(|f| f as *mut c_void)),
            (ffi::Py_tp_iter, s.iter.map(|f| f as *mut c_void)),
            (ffi::Py_tp_iternext, s.iternext.map(|f| f as *mut c_void)),
            (ffi::Py_tp_repr, s.repr.map(|f| f as *mut c_void)),
        ] {
            if let Some(f) = f {
                push(slot, f);
            }
        }
        push(0, std::ptr::null_mut());
        #[cfg(Py_3_10)]
        let flags = ffi::Py_TPFLAGS_DEFAULT | ffi::Py_TPFLAGS_IMMUTABLETYPE;
        #[cfg(not(Py_3_10))]
        let flags = ffi::Py_TPFLAGS_DEFAULT;
        let mut spec = ffi::PyType_Spec {
            name: T::NAME.as_ptr(),
            basicsize: c_int::try_from(size_of::<Object<T>>())
                .map_err(|_| PySystemError::new_err("instance too large"))?,
            itemsize: 0,
            flags: spec_flags(flags),
            slots: slots.as_mut_ptr(),
        };
        // SAFETY: the thread holds the GIL (`py`). The spec and slot array are read during
        // the call only; what the type keeps pointing to is static: the name (`tp_name`
        // before 3.12), the method and getter arrays (checked to be terminated above) and
        // the functions, which match their slots' signatures. The instance size covers
        // `Object<T>`, which `dealloc::<T>` and `alloc` use.
        let ty = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyType_FromSpec(&mut spec)) }?;
        Ok(Self {
            ty: Owned::new(ty.cast_into::<PyType>()?),
            _value: PhantomData,
        })
    }

    /// The type object.
    pub(crate) fn type_object<'py>(&self, py: Python<'py>) -> &Bound<'py, PyType> {
        self.ty.bind(py)
    }

    /// A new instance holding `value`.
    pub(crate) fn instantiate<'py>(&self, py: Python<'py>, value: T) -> PyResult<Instance<'py, T>> {
        // SAFETY: the type is a heap type made by `new` for `T` in this interpreter, and
        // the thread holds its GIL (`py`).
        unsafe { alloc(py, self.ty.as_ptr().cast(), value) }
    }

    /// `obj` as an instance of this type, if it is one (exactly: the types cannot be
    /// subclassed).
    pub(crate) fn cast<'py>(&self, obj: &Bound<'py, PyAny>) -> Option<Instance<'py, T>> {
        (obj.get_type_ptr().cast() == self.ty.as_ptr()).then(|| Instance {
            obj: obj.clone(),
            _value: PhantomData,
        })
    }
}

/// `Py_TPFLAGS_*` are `c_ulong` (64 bits on Unix, 32 on Windows); the spec's field is a
/// `c_uint`, and the flags used here fit in it.
#[allow(clippy::unnecessary_cast, reason = "a no-op on Windows only")]
fn spec_flags(flags: std::ffi::c_ulong) -> std::ffi::c_uint {
    flags as std::ffi::c_uint
}

/// Allocates an instance of `tp` holding `value`.
///
/// # Safety
/// `tp` is a type made by [`HeapType::new`] for `T` (or, in `tp_new`, a subtype of it,
/// which has its layout); the thread holds the GIL.
pub(super) unsafe fn alloc<T: PyValue>(
    py: Python<'_>,
    tp: *mut ffi::PyTypeObject,
    value: T,
) -> PyResult<Instance<'_, T>> {
    // SAFETY: `tp` is a live type object (caller); heap types have tp_alloc set by
    // PyType_Ready (PyType_GenericAlloc when not inherited otherwise).
    let alloc = unsafe { (*tp).tp_alloc }.unwrap_or(ffi::PyType_GenericAlloc);
    // SAFETY: the GIL is held; alloc returns a new reference to zeroed memory of the
    // type's basic size (room for `Object<T>`), or null with an exception set.
    let obj = unsafe { alloc(tp, 0) };
    if obj.is_null() {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `obj` points to an `Object<T>` whose value field is not initialised yet;
    // writing it makes the instance complete before anything else can see it.
    unsafe {
        std::ptr::write(
            &raw mut (*obj.cast::<Object<T>>()).value,
            RefCell::new(value),
        )
    };
    Ok(Instance {
        // SAFETY: `obj` is a new reference.
        obj: unsafe { Bound::from_owned_ptr(py, obj) },
        _value: PhantomData,
    })
}

/// `tp_dealloc`: drops the value, frees the object and releases its heap type.
unsafe extern "C" fn dealloc<T: PyValue>(obj: *mut ffi::PyObject) {
    // SAFETY: CPython calls tp_dealloc once, with the GIL held, for an instance of a type
    // made for `T` whose count reached zero; its value was written by `alloc`.
    unsafe {
        let tp = ffi::Py_TYPE(obj);
        let value = &raw mut (*obj.cast::<Object<T>>()).value;
        if let Err(payload) =
            std::panic::catch_unwind(AssertUnwindSafe(|| std::ptr::drop_in_place(value)))
        {
            crate::ffi::guard::panic_caught(&T::NAME.to_string_lossy(), &*payload);
        }
        match (*tp).tp_free {
            Some(free) => free(obj.cast()),
            None => ffi::PyObject_Free(obj.cast()),
        }
        // Instances of heap types hold a reference to their type.
        ffi::Py_DECREF(tp.cast());
    }
}

/// `tp_new` of a type that Python code cannot instantiate.
unsafe extern "C" fn refuse_new<T: PyValue>(
    _subtype: *mut ffi::PyTypeObject,
    _args: *mut ffi::PyObject,
    _kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    super::call_from_python(T::NAME, std::ptr::null_mut(), |_| {
        Err(PyTypeError::new_err(format!(
            "cannot create '{}' instances",
            T::NAME.to_string_lossy()
        )))
    })
}

/// An instance of the heap type of `T`, with a token: its value can be borrowed as a
/// `RefCell`'s (a conflicting borrow, from another thread while this one released the
/// GIL, is an error, never a data race).
pub(crate) struct Instance<'py, T> {
    obj: Bound<'py, PyAny>,
    _value: PhantomData<T>,
}

impl<'py, T: PyValue> Instance<'py, T> {
    /// The instance `obj` points to (a new reference is taken).
    ///
    /// # Safety
    /// `obj` is an instance of a type made for `T`; the thread holds the GIL.
    pub(super) unsafe fn from_borrowed_ptr(py: Python<'py>, obj: *mut ffi::PyObject) -> Self {
        Self {
            // SAFETY: `obj` is a live object (caller).
            obj: unsafe { Bound::from_borrowed_ptr(py, obj) },
            _value: PhantomData,
        }
    }

    fn cell(&self) -> &RefCell<T> {
        // SAFETY: the object is an instance of a type made for `T` (how every `Instance`
        // is made), so it is an `Object<T>` with its value written; it lives as long as
        // `self.obj`. Only threads holding the interpreter's GIL reach it, one at a time,
        // and the RefCell's flag orders the borrows across GIL releases.
        unsafe { &(*self.obj.as_ptr().cast::<Object<T>>()).value }
    }

    /// The value, shared; panics if it is mutably borrowed.
    pub(crate) fn borrow(&self) -> Ref<'_, T> {
        self.cell().borrow()
    }

    /// The value, exclusive; panics if it is borrowed.
    pub(crate) fn borrow_mut(&self) -> RefMut<'_, T> {
        self.cell().borrow_mut()
    }

    /// The value, shared, or `RuntimeError` if it is mutably borrowed.
    pub(crate) fn try_borrow(&self) -> PyResult<Ref<'_, T>> {
        self.cell()
            .try_borrow()
            .map_err(|_| PyRuntimeError::new_err("Already mutably borrowed"))
    }

    /// The value, exclusive, or `RuntimeError` if it is borrowed.
    pub(crate) fn try_borrow_mut(&self) -> PyResult<RefMut<'_, T>> {
        self.cell()
            .try_borrow_mut()
            .map_err(|_| PyRuntimeError::new_err("Already borrowed"))
    }

    /// The instance as a Python object.
    pub(crate) fn as_any(&self) -> &Bound<'py, PyAny> {
        &self.obj
    }

    /// The token.
    pub(crate) fn py(&self) -> Python<'py> {
        self.obj.py()
    }

    /// Keeps the instance in per-interpreter state.
    pub(crate) fn unbind(self) -> Held<T> {
        Held {
            obj: Owned::new(self.obj),
            _value: PhantomData,
        }
    }
}

/// An [`Instance`] kept in per-interpreter state (an [`Owned`] reference).
pub(crate) struct Held<T> {
    obj: Owned,
    _value: PhantomData<T>,
}

impl<T: PyValue> Held<T> {
    /// The instance, with a token.
    pub(crate) fn bind<'py>(&self, py: Python<'py>) -> Instance<'py, T> {
        Instance {
            obj: self.obj.bind(py).clone(),
            _value: PhantomData,
        }
    }
}
