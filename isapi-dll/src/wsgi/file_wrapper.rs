//! `wsgi.file_wrapper`: a file-like object the application returns as its body, sent with
//! `HSE_REQ_TRANSMIT_FILE` when it wraps a real file (see `request`).

use std::ffi::CStr;

use pyo3::prelude::*;

use crate::ffi::pytype::{Args, Instance, Method, Owned, PyValue, Slots, required};

/// `wsgi.file_wrapper(filelike, blksize=8192)`. When the application returns one wrapping
/// a real file, the body is sent with TRANSMIT_FILE from the file's current position;
/// otherwise it is iterated in `blksize` blocks.
pub(crate) struct FileWrapper {
    filelike: Owned,
    blksize: usize,
}

impl FileWrapper {
    /// The wrapped object.
    pub(crate) fn filelike<'py>(&self, py: Python<'py>) -> &Bound<'py, PyAny> {
        self.filelike.bind(py)
    }
}

fn new<'py>(_py: Python<'py>, args: Args<'_, 'py>) -> PyResult<FileWrapper> {
    let [filelike, blksize] = args.parse("FileWrapper", ["filelike", "blksize"], 1)?;
    let blksize = match blksize {
        Some(b) => b.extract::<usize>()?,
        None => 8192,
    };
    Ok(FileWrapper {
        filelike: Owned::new(required(filelike)?),
        blksize: blksize.max(1),
    })
}

fn next<'py>(this: &Instance<'py, FileWrapper>) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = this.py();
    let (filelike, blksize) = {
        let w = this.try_borrow()?;
        (w.filelike.bind(py).clone(), w.blksize)
    };
    let data = filelike.call_method1("read", (blksize,))?;
    Ok((data.len()? > 0).then_some(data))
}

/// Closes the wrapped object (PEP 3333).
fn close<'py>(
    this: &Instance<'py, FileWrapper>,
    args: Args<'_, 'py>,
) -> PyResult<Bound<'py, PyAny>> {
    args.none("close")?;
    let py = this.py();
    let f = this.try_borrow()?.filelike.bind(py).clone();
    if f.hasattr("close")? {
        f.call_method0("close")?;
    }
    Ok(py.None().into_bound(py))
}

impl PyValue for FileWrapper {
    const NAME: &'static CStr = c"pyisapie.FileWrapper";
    const DOC: &'static CStr = c"wsgi.file_wrapper(filelike, blksize=8192)";
    const METHODS: &'static [Method<Self>] = &[
        Method::new(c"close", c"close(): close the wrapped object", close),
        Method::END,
    ];
    const SLOTS: Slots<Self> = Slots::NONE.constructor(new).iterate(next);
}
