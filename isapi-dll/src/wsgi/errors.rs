//! `wsgi.errors`, `sys.stdout` and `sys.stderr`: text streams whose lines go to the log.

use std::ffi::CStr;
use std::sync::{Mutex, PoisonError};

use pyo3::IntoPyObjectExt;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyString;

use super::context::text_of;
use crate::ffi::pytype::{
    Args, Getter, HeapType, Instance, Method, Owned, PyValue, Slots, required,
};

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
pub(crate) struct LogWriter {
    stream: LogStream,
    pending: Mutex<String>,
    /// The stream CPython made on the process's descriptor, if any: `fileno()` gives its
    /// descriptor, for C-level writers such as `faulthandler.enable()`.
    original: Option<Owned>,
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

    /// `write(text)`: the number of characters written.
    fn write(&self, text: &Bound<'_, PyAny>) -> PyResult<usize> {
        let text = text
            .cast::<PyString>()
            .map_err(|_| {
                PyTypeError::new_err(format!(
                    "write() argument must be str, not {}",
                    text_of(&text.get_type())
                ))
            })?
            .to_cow()?;
        self.push(&text);
        Ok(text.chars().count())
    }
}

type PyResultAny<'py> = PyResult<Bound<'py, PyAny>>;

fn write<'py>(this: &Instance<'py, LogWriter>, args: Args<'_, 'py>) -> PyResultAny<'py> {
    let [text] = args.parse("write", ["text"], 1)?;
    let n = this.try_borrow()?.write(&required(text)?)?;
    n.into_bound_py_any(this.py())
}

fn writelines<'py>(this: &Instance<'py, LogWriter>, args: Args<'_, 'py>) -> PyResultAny<'py> {
    let [lines] = args.parse("writelines", ["lines"], 1)?;
    for line in required(lines)?.try_iter()? {
        this.try_borrow()?.write(&line?)?;
    }
    Ok(this.py().None().into_bound(this.py()))
}

fn flush<'py>(this: &Instance<'py, LogWriter>, args: Args<'_, 'py>) -> PyResultAny<'py> {
    args.none("flush")?;
    this.try_borrow()?.flush_pending();
    Ok(this.py().None().into_bound(this.py()))
}

/// Logs the pending partial line; the stream stays usable (closing the log is the
/// server's business).
fn close<'py>(this: &Instance<'py, LogWriter>, args: Args<'_, 'py>) -> PyResultAny<'py> {
    args.none("close")?;
    this.try_borrow()?.flush_pending();
    Ok(this.py().None().into_bound(this.py()))
}

/// Methods that take no arguments and return a constant.
macro_rules! constant_methods {
    ($($name:ident = $value:expr),* $(,)?) => {
        $(
            fn $name<'py>(this: &Instance<'py, LogWriter>, args: Args<'_, 'py>) -> PyResultAny<'py> {
                args.none(stringify!($name))?;
                $value.into_bound_py_any(this.py())
            }
        )*
    };
}

constant_methods! {
    writable = true,
    readable = false,
    seekable = false,
    isatty = false,
}

/// The descriptor of the stream CPython made on the process's standard descriptor
/// (for C-level writers such as `faulthandler`, which bypass the log); without one,
/// `io.UnsupportedOperation`, as for an `io.StringIO`.
fn fileno<'py>(this: &Instance<'py, LogWriter>, args: Args<'_, 'py>) -> PyResultAny<'py> {
    args.none("fileno")?;
    let py = this.py();
    if let Some(original) = &this.try_borrow()?.original {
        return original.bind(py).call_method0("fileno");
    }
    let unsupported = py.import("io")?.getattr("UnsupportedOperation")?;
    Err(PyErr::from_type(
        unsupported.cast_into()?,
        "pyisapie's log streams have no file descriptor",
    ))
}

/// Attributes that are constants.
macro_rules! constant_getters {
    ($($name:ident = $value:expr),* $(,)?) => {
        $(
            fn $name<'py>(this: &Instance<'py, LogWriter>) -> PyResultAny<'py> {
                $value.into_bound_py_any(this.py())
            }
        )*
    };
}

constant_getters! {
    closed = false,
    mode = "w",
    encoding = "utf-8",
    errors = "strict",
    line_buffering = true,
    newlines = Option::<&str>::None,
}

fn name<'py>(this: &Instance<'py, LogWriter>) -> PyResultAny<'py> {
    this.try_borrow()?
        .stream
        .name()
        .into_bound_py_any(this.py())
}

fn repr<'py>(this: &Instance<'py, LogWriter>) -> PyResultAny<'py> {
    let name = this.try_borrow()?.stream.name();
    format!("<pyisapie log writer {name}>").into_bound_py_any(this.py())
}

impl PyValue for LogWriter {
    const NAME: &'static CStr = c"pyisapie.LogWriter";
    const DOC: &'static CStr = c"A text stream whose lines go to pyisapie's log.";
    const METHODS: &'static [Method<Self>] = &[
        Method::new(c"write", c"write(text): log the lines it completes", write),
        Method::new(c"writelines", c"writelines(lines)", writelines),
        Method::new(c"flush", c"flush(): log a partial line", flush),
        Method::new(
            c"close",
            c"close(): log a partial line; the stream stays usable",
            close,
        ),
        Method::new(c"writable", c"", writable),
        Method::new(c"readable", c"", readable),
        Method::new(c"seekable", c"", seekable),
        Method::new(c"isatty", c"", isatty),
        Method::new(
            c"fileno",
            c"the descriptor of the process's own stream",
            fileno,
        ),
        Method::END,
    ];
    const GETTERS: &'static [Getter<Self>] = &[
        Getter::new(c"closed", closed),
        Getter::new(c"name", name),
        Getter::new(c"mode", mode),
        Getter::new(c"encoding", encoding),
        Getter::new(c"errors", errors),
        Getter::new(c"line_buffering", line_buffering),
        Getter::new(c"newlines", newlines),
        Getter::END,
    ];
    const SLOTS: Slots<Self> = Slots::NONE.repr(repr);
}

/// Sends `sys.stdout` and `sys.stderr` to the log, as the original PyISAPIe did: a server
/// process has no console (IIS's w3wp has no standard handles at all), and under
/// `isapi-host` the log is where the server's own messages are. `sys.__stdout__` and
/// `sys.__stderr__` keep CPython's own streams on the process's descriptors, when it could
/// make them (a debugger can still use them); where it could not (no standard handles),
/// they are the log writers too, and `sys.stdin` is an empty stream instead of `None`.
pub(crate) fn redirect_std_streams(py: Python<'_>, writers: &HeapType<LogWriter>) -> PyResult<()> {
    let sys = py.import("sys")?;
    for (name, dunder, stream) in [
        ("stdout", "__stdout__", LogStream::Stdout),
        ("stderr", "__stderr__", LogStream::Stderr),
    ] {
        let original = sys.getattr(name)?;
        let writer = LogWriter {
            original: (!original.is_none()).then(|| Owned::new(original)),
            ..LogWriter::new(stream)
        };
        let writer = writers.instantiate(py, writer)?;
        sys.setattr(name, writer.as_any())?;
        if sys.getattr(dunder)?.is_none() {
            sys.setattr(dunder, writer.as_any())?;
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
