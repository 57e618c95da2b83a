//! `wsgi.errors`, `sys.stdout` and `sys.stderr`: text streams whose lines go to the log.

use std::sync::{Mutex, PoisonError};

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyString;

/// The log a [`LogWriter`] writes to: its `tracing` target and level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LogStream {
    /// `sys.stdout`: target `sys.stdout`, level INFO.
    Stdout,
    /// `sys.stderr`: target `sys.stderr`, level WARN.
    Stderr,
    /// `environ["wsgi.errors"]`: target `wsgi.errors`, level WARN.
    WsgiErrors,
}

impl LogStream {
    fn name(self) -> &'static str {
        match self {
            Self::Stdout => "<stdout>",
            Self::Stderr => "<stderr>",
            Self::WsgiErrors => "wsgi.errors",
        }
    }

    fn emit(self, line: &str) {
        match self {
            Self::Stdout => tracing::info!(target: "sys.stdout", "{line}"),
            Self::Stderr => tracing::warn!(target: "sys.stderr", "{line}"),
            Self::WsgiErrors => tracing::warn!(target: "wsgi.errors", "{line}"),
        }
    }
}

/// A partial line longer than this is logged as it is, so that a writer that never ends
/// its line cannot grow the buffer without bound.
const MAX_PENDING: usize = 64 * 1024;

/// Appends `text` to `pending` and takes out the lines it completes, without their line
/// ends and without blank lines. A partial line stays in `pending`, unless it grows past
/// [`MAX_PENDING`]: then it is taken out as it is.
fn complete_lines(pending: &mut String, text: &str) -> Vec<String> {
    pending.push_str(text);
    let Some(last) = pending.rfind('\n') else {
        if pending.len() > MAX_PENDING {
            return vec![std::mem::take(pending)];
        }
        return Vec::new();
    };
    let rest = pending.split_off(last + 1);
    let lines = pending
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    *pending = rest;
    lines
}

/// A text stream whose lines go to the log: `wsgi.errors`, and `sys.stdout` and
/// `sys.stderr` (see [`redirect_std_streams`]).
///
/// Lines are logged when they are complete (`print("a", "b")` makes one line, not four),
/// or at `flush()`; blank lines are dropped.
#[pyclass(frozen, module = "pyisapie", name = "LogWriter")]
pub(crate) struct LogWriter {
    stream: LogStream,
    pending: Mutex<String>,
    /// The stream CPython made on the process's descriptor, if any: `fileno()` gives its
    /// descriptor, for C-level writers such as `faulthandler.enable()`.
    original: Option<Py<PyAny>>,
}

impl LogWriter {
    pub(crate) fn new(stream: LogStream) -> Self {
        Self {
            stream,
            pending: Mutex::new(String::new()),
            original: None,
        }
    }

    /// Appends `text`; logs every line it completes.
    fn push(&self, text: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for line in complete_lines(&mut pending, text) {
            self.stream.emit(&line);
        }
    }

    /// Logs a pending partial line.
    pub(crate) fn flush_pending(&self) {
        let line =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        if !line.trim().is_empty() {
            self.stream.emit(line.trim_end_matches('\r'));
        }
    }
}

#[pymethods]
impl LogWriter {
    fn write(&self, text: &Bound<'_, PyAny>) -> PyResult<usize> {
        let text = text
            .cast::<PyString>()
            .map_err(|_| {
                PyTypeError::new_err(format!(
                    "write() argument must be str, not {}",
                    text.get_type()
                ))
            })?
            .to_cow()?;
        self.push(&text);
        Ok(text.chars().count())
    }

    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            self.write(&line?)?;
        }
        Ok(())
    }

    fn flush(&self) {
        self.flush_pending();
    }

    fn writable(&self) -> bool {
        true
    }

    fn readable(&self) -> bool {
        false
    }

    fn seekable(&self) -> bool {
        false
    }

    fn isatty(&self) -> bool {
        false
    }

    /// The descriptor of the stream CPython made on the process's standard descriptor
    /// (for C-level writers such as `faulthandler`, which bypass the log); without one,
    /// `io.UnsupportedOperation`, as for an `io.StringIO`.
    fn fileno(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if let Some(original) = &self.original {
            return original.bind(py).call_method0("fileno").map(Bound::unbind);
        }
        let unsupported = py.import("io")?.getattr("UnsupportedOperation")?;
        Err(PyErr::from_type(
            unsupported.cast_into()?,
            "pyisapie's log streams have no file descriptor",
        ))
    }

    /// Logs the pending partial line; the stream stays usable (closing the log is the
    /// server's business).
    fn close(&self) {
        self.flush_pending();
    }

    #[getter]
    fn closed(&self) -> bool {
        false
    }

    #[getter]
    fn name(&self) -> &'static str {
        self.stream.name()
    }

    #[getter]
    fn mode(&self) -> &'static str {
        "w"
    }

    #[getter]
    fn encoding(&self) -> &'static str {
        "utf-8"
    }

    #[getter]
    fn errors(&self) -> &'static str {
        "strict"
    }

    #[getter]
    fn line_buffering(&self) -> bool {
        true
    }

    #[getter]
    fn newlines(&self) -> Option<&'static str> {
        None
    }

    fn __repr__(&self) -> String {
        format!("<pyisapie log writer {}>", self.stream.name())
    }
}

/// Sends `sys.stdout` and `sys.stderr` to the log, as the original PyISAPIe did: a server
/// process has no console (IIS's w3wp has no standard handles at all), and under
/// `isapi-host` the log is where the server's own messages are. `sys.__stdout__` and
/// `sys.__stderr__` keep CPython's own streams on the process's descriptors, when it could
/// make them (a debugger can still use them); where it could not (no standard handles),
/// they are the log writers too, and `sys.stdin` is an empty stream instead of `None`.
pub(crate) fn redirect_std_streams(py: Python<'_>) -> PyResult<()> {
    let sys = py.import("sys")?;
    for (name, dunder, stream) in [
        ("stdout", "__stdout__", LogStream::Stdout),
        ("stderr", "__stderr__", LogStream::Stderr),
    ] {
        let original = sys.getattr(name)?;
        let writer = LogWriter {
            original: (!original.is_none()).then(|| original.unbind()),
            ..LogWriter::new(stream)
        };
        let writer = Bound::new(py, writer)?;
        sys.setattr(name, &writer)?;
        if sys.getattr(dunder)?.is_none() {
            sys.setattr(dunder, &writer)?;
        }
    }
    for name in ["stdin", "__stdin__"] {
        if sys.getattr(name)?.is_none() {
            let empty = py.import("io")?.getattr("StringIO")?.call0()?;
            sys.setattr(name, empty)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_writers_log_whole_lines() {
        let mut pending = String::new();
        // print("a", "b") writes "a", " ", "b", "\n"
        assert!(complete_lines(&mut pending, "a").is_empty());
        assert!(complete_lines(&mut pending, " ").is_empty());
        assert!(complete_lines(&mut pending, "b").is_empty());
        assert_eq!(complete_lines(&mut pending, "\n"), ["a b"]);
        assert_eq!(pending, "");
        assert_eq!(
            complete_lines(&mut pending, "one\r\n\n  \ntwo\nthr"),
            ["one", "two"]
        );
        assert_eq!(pending, "thr");
        assert_eq!(complete_lines(&mut pending, "ee\n"), ["three"]);
        let long = "x".repeat(MAX_PENDING + 1);
        assert_eq!(complete_lines(&mut pending, &long), [long]);
        assert_eq!(pending, "");
    }
}
