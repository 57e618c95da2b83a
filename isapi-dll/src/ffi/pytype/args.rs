//! [`Args`]: the arguments of a call from Python, parsed by name.

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

/// One argument, borrowed for the call.
pub(crate) type Arg<'a, 'py> = Borrowed<'a, 'py, PyAny>;

/// A required argument: [`Args::parse`] has checked that it was given.
pub(crate) fn required<'a, 'py>(arg: Option<Arg<'a, 'py>>) -> PyResult<Bound<'py, PyAny>> {
    arg.map(|a| a.to_owned())
        .ok_or_else(|| PyTypeError::new_err("a required argument is missing"))
}

/// The arguments of one call from Python, borrowed for the call: positional ones, then
/// keyword ones, from a vectorcall (`METH_FASTCALL`) or from a tuple and a dict.
pub(crate) struct Args<'a, 'py> {
    py: Python<'py>,
    positional: Positional<'a>,
    keywords: Keywords<'a, 'py>,
}

enum Positional<'a> {
    Vector(&'a [*mut ffi::PyObject]),
    /// A tuple (borrowed for 'a).
    Tuple(*mut ffi::PyObject),
}

enum Keywords<'a, 'py> {
    None,
    /// The names (a tuple of str) and, in the same order, the values.
    Vector(Borrowed<'a, 'py, PyTuple>, &'a [*mut ffi::PyObject]),
    Dict(*mut ffi::PyObject),
}

impl<'a, 'py> Args<'a, 'py> {
    /// The arguments of a `METH_FASTCALL | METH_KEYWORDS` call.
    ///
    /// # Safety
    /// `args` points to `nargs` objects followed by one per name in `kwnames` (null or a
    /// tuple of str), all alive for `'a`; the thread holds the GIL.
    pub(super) unsafe fn from_vector(
        py: Python<'py>,
        args: *const *mut ffi::PyObject,
        nargs: ffi::Py_ssize_t,
        kwnames: *mut ffi::PyObject,
    ) -> Self {
        let nargs = usize::try_from(nargs).unwrap_or(0);
        let nkw = if kwnames.is_null() {
            0
        } else {
            // SAFETY: kwnames is a tuple (caller).
            usize::try_from(unsafe { ffi::PyTuple_GET_SIZE(kwnames) }).unwrap_or(0)
        };
        let all: &'a [*mut ffi::PyObject] = if args.is_null() {
            &[]
        } else {
            // SAFETY: `args` holds nargs + nkw pointers, alive for the call (caller).
            unsafe { std::slice::from_raw_parts(args, nargs + nkw) }
        };
        let (positional, values) = all.split_at(nargs.min(all.len()));
        let keywords = if kwnames.is_null() {
            Keywords::None
        } else {
            // SAFETY: kwnames is a live tuple for the call (caller).
            let names = unsafe { Borrowed::from_ptr(py, kwnames).cast_unchecked::<PyTuple>() };
            Keywords::Vector(names, values)
        };
        Self {
            py,
            positional: Positional::Vector(positional),
            keywords,
        }
    }

    /// The arguments of a `tp_call` or `tp_new` call.
    ///
    /// # Safety
    /// `args` is a tuple and `kwargs` a dict or null, alive for `'a`; the thread holds the
    /// GIL.
    pub(super) unsafe fn from_tuple(
        py: Python<'py>,
        args: *mut ffi::PyObject,
        kwargs: *mut ffi::PyObject,
    ) -> Self {
        Self {
            py,
            positional: Positional::Tuple(args),
            keywords: if kwargs.is_null() {
                Keywords::None
            } else {
                Keywords::Dict(kwargs)
            },
        }
    }

    fn positional_len(&self) -> usize {
        match &self.positional {
            Positional::Vector(v) => v.len(),
            Positional::Tuple(t) => {
                // SAFETY: a live tuple (from_tuple's contract).
                let len = unsafe { ffi::PyTuple_GET_SIZE(*t) };
                usize::try_from(len).unwrap_or(0)
            }
        }
    }

    /// Positional argument `i` (< `positional_len()`).
    fn positional(&self, i: usize) -> Arg<'a, 'py> {
        match &self.positional {
            // SAFETY: the pointers are live objects for 'a (from_vector's contract).
            Positional::Vector(v) => unsafe { Borrowed::from_ptr(self.py, v[i]) },
            // SAFETY: a live tuple for 'a (from_tuple's contract) with more than `i`
            // items, each a live object it holds.
            Positional::Tuple(t) => unsafe {
                Borrowed::from_ptr(
                    self.py,
                    ffi::PyTuple_GET_ITEM(*t, ffi::Py_ssize_t::try_from(i).unwrap_or(0)),
                )
            },
        }
    }

    /// Calls `f` with each keyword argument's name and value.
    fn each_keyword(
        &self,
        mut f: impl FnMut(&Bound<'py, PyAny>, Arg<'a, 'py>) -> PyResult<()>,
    ) -> PyResult<()> {
        match &self.keywords {
            Keywords::None => Ok(()),
            Keywords::Vector(names, values) => {
                for (name, &value) in names.iter_borrowed().zip(values.iter()) {
                    // SAFETY: the values are live objects for 'a (from_vector's contract).
                    f(&name.to_owned(), unsafe {
                        Borrowed::from_ptr(self.py, value)
                    })?;
                }
                Ok(())
            }
            &Keywords::Dict(dict) => {
                let mut pos: ffi::Py_ssize_t = 0;
                let mut key = std::ptr::null_mut();
                let mut value = std::ptr::null_mut();
                // SAFETY: `dict` is a live dict (from_tuple's contract) that nothing
                // changes during the loop (`f` only reads); PyDict_Next yields borrowed
                // references that live as long as the dict, so for 'a.
                while unsafe { ffi::PyDict_Next(dict, &mut pos, &mut key, &mut value) } != 0 {
                    // SAFETY: as above.
                    let (key, value) = unsafe {
                        (
                            Borrowed::from_ptr(self.py, key).to_owned(),
                            Borrowed::from_ptr(self.py, value),
                        )
                    };
                    f(&key, value)?;
                }
                Ok(())
            }
        }
    }

    /// Matches the arguments to the parameters `names` of `func` (the first `required`
    /// are required): positional ones first, then keyword ones by name. Errors are
    /// Python's `TypeError`s.
    pub(crate) fn parse<const N: usize>(
        &self,
        func: &str,
        names: [&str; N],
        required: usize,
    ) -> PyResult<[Option<Arg<'a, 'py>>; N]> {
        let mut out: [Option<Arg<'a, 'py>>; N] = [None; N];
        let given = self.positional_len();
        if given > N {
            let s = if N == 1 { "" } else { "s" };
            return Err(PyTypeError::new_err(format!(
                "{func}() takes at most {N} argument{s} ({given} given)"
            )));
        }
        for (i, slot) in out.iter_mut().enumerate().take(given) {
            *slot = Some(self.positional(i));
        }
        self.each_keyword(|name, value| {
            let name = name
                .cast::<PyString>()
                .map_err(|_| PyTypeError::new_err(format!("{func}() keywords must be strings")))?
                .to_cow()?;
            let Some(i) = names.iter().position(|n| *n == name) else {
                return Err(PyTypeError::new_err(format!(
                    "{func}() got an unexpected keyword argument '{name}'"
                )));
            };
            if out[i].is_some() {
                return Err(PyTypeError::new_err(format!(
                    "{func}() got multiple values for argument '{name}'"
                )));
            }
            out[i] = Some(value);
            Ok(())
        })?;
        if let Some(missing) = (0..required.min(N)).find(|&i| out[i].is_none()) {
            return Err(PyTypeError::new_err(format!(
                "{func}() missing required argument '{}'",
                names[missing]
            )));
        }
        Ok(out)
    }

    /// Parses a call that takes no arguments.
    pub(crate) fn none(&self, func: &str) -> PyResult<()> {
        self.parse(func, [], 0).map(|[]| ())
    }
}
