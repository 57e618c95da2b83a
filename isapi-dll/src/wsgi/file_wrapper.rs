//! `wsgi.file_wrapper`: a file-like object the application returns as its body, sent with
//! `HSE_REQ_TRANSMIT_FILE` when it wraps a real file (see `request`).

use pyo3::prelude::*;

/// `wsgi.file_wrapper(filelike, blksize=8192)`. When the application returns one wrapping
/// a real file, the body is sent with TRANSMIT_FILE from the file's current position;
/// otherwise it is iterated in `blksize` blocks.
#[pyclass(frozen, module = "pyisapie", name = "FileWrapper")]
pub(crate) struct FileWrapper {
    filelike: Py<PyAny>,
    blksize: usize,
}

impl FileWrapper {
    /// The wrapped object.
    pub(crate) fn filelike(&self) -> &Py<PyAny> {
        &self.filelike
    }
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize = 8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> Self {
        Self {
            filelike,
            blksize: blksize.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let data = self
            .filelike
            .bind(py)
            .call_method1("read", (self.blksize,))?;
        Ok((data.len()? > 0).then_some(data))
    }

    /// Closes the wrapped object (PEP 3333).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let f = self.filelike.bind(py);
        if f.hasattr("close")? {
            f.call_method0("close")?;
        }
        Ok(())
    }
}
