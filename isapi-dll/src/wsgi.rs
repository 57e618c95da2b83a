//! The Python-facing types, all in one module (so that they can later become
//! per-interpreter heap types without touching the rest):
//!
//! - [`Context`], the per-interpreter state (the mounted apps, interned environ keys, the
//!   shared `wsgi.errors`), kept in the interpreter's own dictionary, never in a `static`;
//! - [`Input`], `wsgi.input`;
//! - [`Response`], the `start_response` callable, its `write()`, and the response writer
//!   that frames the body (Content-Length, chunked or close-delimited);
//! - [`FileWrapper`], `wsgi.file_wrapper`;
//! - [`LogWriter`], `wsgi.errors`, `sys.stdout` and `sys.stderr`, which write to the log.

use std::ffi::CString;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use pyo3::exceptions::{PyAssertionError, PyOSError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyModule, PyString, PyTuple};

use crate::ffi::{Ecb, RawFile};
use crate::http::{self, Framing};

// ---------------------------------------------------------------------------------------
// The link to the request
// ---------------------------------------------------------------------------------------

/// The way Python objects reach the request's ECB. Cleared when `HttpExtensionProc`
/// returns, so that an object the application kept (a stashed `wsgi.input`, a `write`)
/// gets an error instead of touching a finished request.
#[derive(Debug)]
pub(crate) struct Link {
    ecb: Mutex<Option<Ecb>>,
}

impl Link {
    pub(crate) fn new(ecb: Ecb) -> Arc<Self> {
        Arc::new(Self {
            ecb: Mutex::new(Some(ecb)),
        })
    }

    /// Runs `f` with the ECB if the request is still live. The lock is held during `f`, so
    /// `close` waits for a call in progress. Never blocks while holding the GIL for long:
    /// callers run blocking calls inside `py.detach`.
    pub(crate) fn with<R>(&self, f: impl FnOnce(Ecb) -> io::Result<R>) -> io::Result<R> {
        let guard = self.ecb.lock().unwrap_or_else(PoisonError::into_inner);
        match *guard {
            Some(ecb) => f(ecb),
            None => Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the request has already finished",
            )),
        }
    }

    /// Detaches the ECB (end of the request).
    pub(crate) fn close(&self) {
        *self.ecb.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

// ---------------------------------------------------------------------------------------
// Context
// ---------------------------------------------------------------------------------------

macro_rules! keys {
    ($($field:ident = $name:literal),* $(,)?) => {
        /// Interned strings used on every request (environ keys and a few values).
        pub(crate) struct Keys { $(pub(crate) $field: Py<PyString>,)* }
        impl Keys {
            fn new(py: Python<'_>) -> Self {
                Self { $($field: PyString::intern(py, $name).unbind(),)* }
            }
        }
    };
}

keys! {
    request_method = "REQUEST_METHOD",
    script_name = "SCRIPT_NAME",
    path_info = "PATH_INFO",
    query_string = "QUERY_STRING",
    content_type = "CONTENT_TYPE",
    content_length = "CONTENT_LENGTH",
    server_name = "SERVER_NAME",
    server_port = "SERVER_PORT",
    server_protocol = "SERVER_PROTOCOL",
    remote_addr = "REMOTE_ADDR",
    remote_port = "REMOTE_PORT",
    https = "HTTPS",
    wsgi_version = "wsgi.version",
    wsgi_url_scheme = "wsgi.url_scheme",
    wsgi_input = "wsgi.input",
    wsgi_errors = "wsgi.errors",
    wsgi_multithread = "wsgi.multithread",
    wsgi_multiprocess = "wsgi.multiprocess",
    wsgi_run_once = "wsgi.run_once",
    wsgi_input_terminated = "wsgi.input_terminated",
    wsgi_file_wrapper = "wsgi.file_wrapper",
    http = "http",
    https_scheme = "https",
    on = "on",
    get = "GET",
    head = "HEAD",
    post = "POST",
    http11 = "HTTP/1.1",
    http10 = "HTTP/1.0",
    close = "close",
    empty = "",
    http_host = "HTTP_HOST",
    http_user_agent = "HTTP_USER_AGENT",
    http_accept = "HTTP_ACCEPT",
    http_accept_encoding = "HTTP_ACCEPT_ENCODING",
    http_accept_language = "HTTP_ACCEPT_LANGUAGE",
    http_connection = "HTTP_CONNECTION",
    http_cookie = "HTTP_COOKIE",
}

impl Keys {
    /// The interned environ key of a common request header (`name` in any case), so that
    /// most requests make no key string.
    pub(crate) fn common_header(&self, name: &[u8]) -> Option<&Py<PyString>> {
        let mut lower = [0u8; 15];
        let lower = lower.get_mut(..name.len())?;
        lower.copy_from_slice(name);
        lower.make_ascii_lowercase();
        Some(match &*lower {
            b"host" => &self.http_host,
            b"user-agent" => &self.http_user_agent,
            b"accept" => &self.http_accept,
            b"accept-encoding" => &self.http_accept_encoding,
            b"accept-language" => &self.http_accept_language,
            b"connection" => &self.http_connection,
            b"cookie" => &self.http_cookie,
            _ => return None,
        })
    }
}

/// Per-interpreter state: everything the request path needs from Python, created once at
/// start-up and stored in the interpreter's private dictionary.
#[pyclass(frozen, module = "pyisapie", name = "Context")]
pub(crate) struct Context {
    /// The app callables, in the order of the configuration's (sorted) app list.
    pub(crate) apps: Vec<Py<PyAny>>,
    /// Interned strings.
    pub(crate) keys: Keys,
    /// The start of every environ ([`Context::new_environ`]).
    environ_base: Py<PyDict>,
    /// The last string made for each [`Repeated`] environ value.
    repeated: [Mutex<LastString>; Repeated::COUNT],
    /// The bootstrap module (traceback formatting, file inspection).
    pub(crate) boot: Py<PyModule>,
    /// Tracebacks in 500 responses.
    pub(crate) debug: bool,
    /// `wsgi.errors`, shared by every request.
    pub(crate) errors: Py<LogWriter>,
}

const CONTEXT_KEY: &str = "pyisapie.context";

/// Environ values that are mostly the same from one request to the next
/// ([`Context::repeated`]).
#[derive(Clone, Copy)]
pub(crate) enum Repeated {
    ScriptName,
    ServerName,
    ServerPort,
    RemoteAddr,
}

impl Repeated {
    const COUNT: usize = 4;
}

/// The bytes of a [`Repeated`] value and the string last made of them.
type LastString = (Vec<u8>, Option<Py<PyString>>);

impl Context {
    /// Builds the context and stores it in the current interpreter.
    pub(crate) fn install(
        py: Python<'_>,
        apps: Vec<Py<PyAny>>,
        boot: Py<PyModule>,
        debug: bool,
    ) -> PyResult<()> {
        let keys = Keys::new(py);
        let errors = Py::new(py, LogWriter::new(LogStream::WsgiErrors))?;
        let file_wrapper = py.get_type::<FileWrapper>();
        let environ_base = PyDict::new(py);
        let k = &keys;
        // The constant entries, then placeholders for the keys every request sets: a copy
        // of this dict has room for them and a few headers, so filling it in replaces
        // values rather than growing the table.
        environ_base.set_item(k.wsgi_version.bind(py), PyTuple::new(py, [1, 0])?)?;
        environ_base.set_item(k.wsgi_url_scheme.bind(py), k.http.bind(py))?;
        environ_base.set_item(k.wsgi_errors.bind(py), errors.bind(py))?;
        environ_base.set_item(k.wsgi_multithread.bind(py), true)?;
        environ_base.set_item(k.wsgi_multiprocess.bind(py), false)?;
        environ_base.set_item(k.wsgi_run_once.bind(py), false)?;
        environ_base.set_item(k.wsgi_input_terminated.bind(py), true)?;
        environ_base.set_item(k.wsgi_file_wrapper.bind(py), &file_wrapper)?;
        for key in [
            &k.request_method,
            &k.script_name,
            &k.path_info,
            &k.query_string,
            &k.server_protocol,
            &k.server_name,
            &k.server_port,
            &k.remote_addr,
            &k.remote_port,
            &k.wsgi_input,
        ] {
            environ_base.set_item(key.bind(py), py.None())?;
        }
        let context = Self {
            apps,
            keys,
            environ_base: environ_base.unbind(),
            repeated: Default::default(),
            boot,
            debug,
            errors,
        };
        crate::ffi::python::interpreter_dict(py)?.set_item(CONTEXT_KEY, Bound::new(py, context)?)
    }

    /// The current interpreter's context.
    pub(crate) fn get(py: Python<'_>) -> PyResult<Bound<'_, Self>> {
        let dict = crate::ffi::python::interpreter_dict(py)?;
        let item = dict
            .get_item(pyo3::intern!(py, CONTEXT_KEY))?
            .ok_or_else(|| {
                pyo3::exceptions::PyRuntimeError::new_err(
                    "pyisapie is not initialised in this interpreter",
                )
            })?;
        Ok(item.cast_into::<Self>()?)
    }

    /// A new environ holding the constant WSGI entries and a placeholder (`None`) under
    /// each key that [`request`](crate::request) fills in for every request.
    pub(crate) fn new_environ<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.environ_base.bind(py).copy()
    }

    /// `bytes` as a latin-1 string, reusing the string of the last request when `bytes`
    /// are the same, as they mostly are for a [`Repeated`] value.
    pub(crate) fn repeated<'py>(
        &self,
        py: Python<'py>,
        which: Repeated,
        bytes: &[u8],
    ) -> PyResult<Bound<'py, PyString>> {
        // Held with the GIL, so never contended.
        let mut last = self.repeated[which as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let (b, Some(s)) = &*last {
            if b == bytes {
                return Ok(s.bind(py).clone());
            }
        }
        let s = crate::ffi::python::latin1(py, bytes)?;
        last.0.clear();
        last.0.extend_from_slice(bytes);
        last.1 = Some(s.clone().unbind());
        Ok(s)
    }

    /// Formats an exception with its traceback.
    pub(crate) fn format_exception(&self, py: Python<'_>, err: &PyErr) -> String {
        self.boot
            .bind(py)
            .call_method1("format_exception", (err.value(py), err.traceback(py)))
            .and_then(|s| s.extract::<String>())
            .unwrap_or_else(|_| err.to_string())
    }
}

// ---------------------------------------------------------------------------------------
// wsgi.input
// ---------------------------------------------------------------------------------------

const READ_CHUNK: usize = 64 * 1024;

/// A read that asks `ReadClient` for at least this many bytes of a body whose length is
/// known goes straight into the `bytes` object it returns, not through the buffer.
const DIRECT_READ: usize = 16 * 1024;

/// `wsgi.input`: the request body, read through `ReadClient` with the GIL released.
///
/// The server's preloaded bytes come first. A Content-Length body ends after exactly that
/// many bytes; a chunked one when `ReadClient` reports the end. A body that ends early or a
/// `ReadClient` failure raises `OSError` (and keeps raising): never a silently short body.
#[pyclass(module = "pyisapie", name = "Input")]
pub(crate) struct Input {
    link: Arc<Link>,
    buf: Vec<u8>,
    pos: usize,
    /// Bytes still to fetch with ReadClient; `None` for a chunked body.
    remaining: Option<u64>,
    preloaded: bool,
    eof: bool,
    error: Option<(io::ErrorKind, String)>,
}

impl Input {
    pub(crate) fn new(link: Arc<Link>, total_bytes: u32) -> Self {
        Self {
            link,
            buf: Vec::new(),
            pos: 0,
            remaining: (total_bytes != u32::MAX).then_some(u64::from(total_bytes)),
            preloaded: false,
            eof: total_bytes == 0,
            error: None,
        }
    }

    /// Whether reading the body failed (a broken or truncated upload).
    pub(crate) fn broken(&self) -> bool {
        self.error.is_some()
    }

    fn available(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn raise(&self) -> PyErr {
        let (kind, message) = self
            .error
            .clone()
            .unwrap_or((io::ErrorKind::Other, String::new()));
        PyErr::from(io::Error::new(kind, message))
    }

    /// Buffers until at least `want` bytes are available or the body ends.
    fn fill(&mut self, py: Python<'_>, want: usize) -> PyResult<()> {
        if self.error.is_some() {
            return Err(self.raise());
        }
        if !self.preloaded {
            self.preloaded = true;
            let remaining = &mut self.remaining;
            let buf = &mut self.buf;
            let res = self.link.with(|ecb| {
                let pre = ecb.preload();
                let pre = match remaining {
                    Some(r) => &pre[..pre.len().min(usize::try_from(*r).unwrap_or(usize::MAX))],
                    None => pre,
                };
                buf.extend_from_slice(pre);
                if let Some(r) = remaining {
                    *r -= pre.len() as u64;
                }
                Ok(())
            });
            if let Err(e) = res {
                self.error = Some((e.kind(), e.to_string()));
                return Err(self.raise());
            }
            if self.remaining == Some(0) {
                self.eof = true;
            }
        }
        if self.available() >= want || self.eof {
            return Ok(());
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let link = Arc::clone(&self.link);
        let buf = &mut self.buf;
        let remaining = &mut self.remaining;
        let outcome = py.detach(|| -> io::Result<bool> {
            while buf.len() < want {
                let mut ask = (want - buf.len()).max(READ_CHUNK);
                if let Some(r) = *remaining {
                    if r == 0 {
                        return Ok(true);
                    }
                    ask = ask.min(usize::try_from(r).unwrap_or(usize::MAX));
                }
                let start = buf.len();
                buf.resize(start + ask, 0);
                let n = link.with(|ecb| ecb.read_client(&mut buf[start..]));
                let n = match n {
                    Ok(n) => n,
                    Err(e) => {
                        buf.truncate(start);
                        return Err(e);
                    }
                };
                buf.truncate(start + n);
                if n == 0 {
                    return match *remaining {
                        Some(r) => Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("the request body ended {r} bytes short of its Content-Length"),
                        )),
                        None => Ok(true),
                    };
                }
                if let Some(r) = remaining.as_mut() {
                    *r -= n as u64;
                    if *r == 0 {
                        return Ok(true);
                    }
                }
            }
            Ok(false)
        });
        match outcome {
            Ok(eof) => {
                self.eof = eof;
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Records a broken body (sticky: every later read raises it too) and returns the error.
    fn fail(&mut self, e: io::Error) -> PyErr {
        tracing::warn!(target: "pyisapie", "reading the request body failed: {e}");
        self.error = Some((e.kind(), format!("reading the request body failed: {e}")));
        self.raise()
    }

    /// How many bytes a read of up to `want` (`None`: all) returns straight from
    /// `ReadClient` into its `bytes` object ([`Input::take_direct`]): when the body's length
    /// is known and at least [`DIRECT_READ`] of them are still to fetch. Called after the
    /// preload is buffered.
    fn direct_len(&self, want: Option<usize>) -> Option<usize> {
        let remaining = usize::try_from(self.remaining?).ok()?;
        let held = self.available();
        let len = want.map_or(held + remaining, |w| w.min(held + remaining));
        (self.error.is_none() && len.saturating_sub(held) >= DIRECT_READ).then_some(len)
    }

    /// Returns the next `len` bytes, no more than are buffered plus what the Content-Length
    /// leaves, as one `bytes` object: the buffered ones copied, the rest read into it by
    /// `ReadClient` with the GIL released. An upload so crosses memory once on its way to
    /// Python.
    fn take_direct<'py>(&mut self, py: Python<'py>, len: usize) -> PyResult<Bound<'py, PyBytes>> {
        let held = self.available().min(len);
        let link = Arc::clone(&self.link);
        let buffered = &self.buf[self.pos..self.pos + held];
        let remaining = self.remaining.unwrap_or(0);
        let mut broken = None;
        let out = PyBytes::new_with(py, len, |dst| {
            dst[..held].copy_from_slice(buffered);
            let rest = &mut dst[held..];
            let read = py.detach(|| -> io::Result<()> {
                let mut got = 0;
                while got < rest.len() {
                    match link.with(|ecb| ecb.read_client(&mut rest[got..]))? {
                        0 => {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                format!(
                                    "the request body ended {} bytes short of its Content-Length",
                                    remaining - got as u64
                                ),
                            ));
                        }
                        n => got += n,
                    }
                }
                Ok(())
            });
            broken = read.err();
            Ok(())
        })?;
        if let Some(e) = broken {
            return Err(self.fail(e));
        }
        self.pos += held;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        if let Some(r) = self.remaining.as_mut() {
            *r -= (len - held) as u64;
            self.eof = *r == 0;
        }
        Ok(out)
    }

    fn take<'py>(&mut self, py: Python<'py>, n: usize) -> Bound<'py, PyBytes> {
        let n = n.min(self.available());
        let out = PyBytes::new(py, &self.buf[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        out
    }

    fn read_all<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.fill(py, 0)?;
        if let Some(len) = self.direct_len(None) {
            return self.take_direct(py, len);
        }
        while !self.eof {
            let want = self.available() + READ_CHUNK;
            self.fill(py, want)?;
        }
        Ok(self.take(py, usize::MAX))
    }

    fn read_line<'py>(
        &mut self,
        py: Python<'py>,
        limit: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut scanned = 0;
        loop {
            let avail = &self.buf[self.pos..];
            if let Some(i) = avail[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + i + 1;
                return Ok(self.take(py, limit.map_or(end, |l| l.min(end))));
            }
            scanned = avail.len();
            if limit.is_some_and(|l| scanned >= l) || self.eof {
                return Ok(self.take(py, limit.unwrap_or(usize::MAX)));
            }
            let want = self.available() + 8192;
            let want = limit.map_or(want, |l| want.min(l));
            self.fill(py, want)?;
        }
    }
}

fn size_arg(size: Option<isize>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

#[pymethods]
impl Input {
    /// `read(size=-1)`: up to `size` bytes (fewer only at the end of the body), or all.
    #[pyo3(signature = (size = None))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        match size_arg(size) {
            None => self.read_all(py),
            Some(n) => {
                self.fill(py, 0)?;
                if let Some(len) = self.direct_len(Some(n)) {
                    return self.take_direct(py, len);
                }
                self.fill(py, n)?;
                Ok(self.take(py, n))
            }
        }
    }

    /// `readline(size=-1)`: one line including its `\n`, at most `size` bytes.
    #[pyo3(signature = (size = None))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<isize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.read_line(py, size_arg(size))
    }

    /// `readlines(hint=-1)`: lines until their total size reaches `hint` (or all).
    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<isize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let hint = size_arg(hint).filter(|&h| h > 0);
        let lines = PyList::empty(py);
        let mut total = 0;
        loop {
            let line = self.read_line(py, None)?;
            if line.as_bytes().is_empty() {
                break;
            }
            total += line.as_bytes().len();
            lines.append(line)?;
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.read_line(py, None)?;
        Ok((!line.as_bytes().is_empty()).then_some(line))
    }

    fn readable(&self) -> bool {
        true
    }

    /// Closing the input is a no-op: the server owns the connection.
    fn close(&self) {}
}

// ---------------------------------------------------------------------------------------
// start_response, write() and the response writer
// ---------------------------------------------------------------------------------------

/// The `start_response` callable of one request, and the response writer behind it and
/// behind `write()`.
///
/// The status and headers are validated when `start_response` is called (hop-by-hop
/// headers and malformed values are errors) but only sent with the first non-empty body
/// chunk (or at the end), so `exc_info` can still replace them and a generator that calls
/// `start_response` lazily is honoured.
#[pyclass(module = "pyisapie", name = "StartResponse")]
pub(crate) struct Response {
    link: Arc<Link>,
    /// The client speaks HTTP/1.1 (chunked framing possible).
    http11: bool,
    /// The status code, once `start_response` has been called.
    code: Option<u16>,
    /// The status line's text (`200 OK`) and the header lines ([`http::push_header`]),
    /// in latin-1; taken when the headers go out.
    status: Vec<u8>,
    headers: Vec<u8>,
    app_length: Option<u64>,
    /// Set once the headers are sent.
    framing: Option<Framing>,
    /// Body bytes handed to the server (without chunk framing).
    sent: u64,
    surplus_logged: bool,
    /// A write failed (the client is gone); nothing more is sent.
    failed: bool,
    scratch: Vec<u8>,
    /// A whole response waiting to go out once the GIL is released.
    deferred: Option<Deferred>,
}

/// A status line and header block ready for `SEND_RESPONSE_HEADER_EX`.
struct Head {
    code: u16,
    status: CString,
    block: CString,
    keep: bool,
    streaming: bool,
}

impl Head {
    fn send(&self, ecb: Ecb) -> io::Result<()> {
        ecb.set_status_code(self.code);
        if self.streaming {
            // IIS 7+ buffers extension output unless asked not to (KB946086).
            let _ = ecb.set_flush_flag(true);
        }
        ecb.send_response_header_ex(&self.status, &self.block, self.keep)
    }
}

/// A body chunk ready to write ([`Response::frame`]).
struct Framed<'a> {
    /// The head, if it has not gone out yet.
    head: Option<Head>,
    /// The bytes to write: cut to the Content-Length, or chunk-framed.
    bytes: &'a [u8],
    /// The body bytes they carry.
    body_len: usize,
}

/// Writes the head (if any) and the bytes (if any).
fn write_out(ecb: Ecb, head: Option<&Head>, bytes: &[u8]) -> io::Result<()> {
    if let Some(head) = head {
        head.send(ecb)?;
    }
    if bytes.is_empty() {
        Ok(())
    } else {
        ecb.write_client(bytes)
    }
}

/// A complete response held back until the GIL is released
/// ([`Response::defer_body`]).
pub(crate) struct Deferred {
    head: Option<Head>,
    body: Vec<u8>,
}

impl Deferred {
    /// Sends it; call without the GIL.
    pub(crate) fn send(&self, link: &Link) -> io::Result<()> {
        link.with(|ecb| write_out(ecb, self.head.as_ref(), &self.body))
    }
}

/// What the response writer reports when the connection broke under it.
#[derive(Debug)]
pub(crate) struct Disconnected(pub(crate) io::Error);

impl From<Disconnected> for PyErr {
    fn from(d: Disconnected) -> Self {
        PyOSError::new_err(format!("client disconnected: {}", d.0))
    }
}

impl Response {
    pub(crate) fn new(link: Arc<Link>, http11: bool) -> Self {
        Self {
            link,
            http11,
            code: None,
            status: Vec::new(),
            headers: Vec::new(),
            app_length: None,
            framing: None,
            sent: 0,
            surplus_logged: false,
            failed: false,
            scratch: Vec::new(),
            deferred: None,
        }
    }

    /// Whether `start_response` has been called.
    pub(crate) fn started(&self) -> bool {
        self.code.is_some()
    }

    /// Whether the headers have gone out.
    pub(crate) fn headers_sent(&self) -> bool {
        self.framing.is_some()
    }

    /// Whether a write to the client failed.
    pub(crate) fn failed(&self) -> bool {
        self.failed
    }

    /// Replaces the status and headers (for the error page, before headers are sent).
    pub(crate) fn set_error_status(&mut self, status: &str, content_type: &str, length: usize) {
        self.code = Some(status.get(..3).and_then(|c| c.parse().ok()).unwrap_or(500));
        self.status = http::latin1_bytes(status);
        self.headers.clear();
        http::push_header(&mut self.headers, "Content-Type", content_type);
        http::push_header(&mut self.headers, "Content-Length", &length.to_string());
        self.app_length = Some(length as u64);
    }

    /// Sends the status and headers. `known` is the whole body's length when known.
    pub(crate) fn send_headers(
        &mut self,
        py: Python<'_>,
        known: Option<u64>,
    ) -> Result<(), Disconnected> {
        let head = self.prepare_headers(known)?;
        let link = &self.link;
        let result = py.detach(|| link.with(|ecb| head.send(ecb)));
        result.map_err(|e| {
            self.failed = true;
            Disconnected(e)
        })
    }

    /// Decides the framing and builds the status and header block (sets `framing`).
    fn prepare_headers(&mut self, known: Option<u64>) -> Result<Head, Disconnected> {
        let Some(code) = self.code else {
            return Err(Disconnected(io::Error::other(
                "start_response() was not called",
            )));
        };
        let link = &self.link;
        let http11 = self.http11;
        let framing = http::choose_framing(code, self.app_length, known, || {
            http11 && link.with(|ecb| Ok(ecb.is_keep_conn())).unwrap_or(false)
        });
        let mut block = std::mem::take(&mut self.headers);
        http::end_header_block(&mut block, framing, self.app_length.is_none());
        // Checked when start_response took them: no control characters, so no NUL.
        let no_nul = |_| Disconnected(io::Error::other("a NUL in the response head"));
        let status = CString::new(std::mem::take(&mut self.status)).map_err(no_nul)?;
        let block = CString::new(block).map_err(no_nul)?;
        self.framing = Some(framing);
        Ok(Head {
            code,
            status,
            block,
            keep: framing != Framing::Close,
            streaming: known.is_none() && framing != Framing::None,
        })
    }

    /// Sends a body chunk: the headers first if they have not gone out yet (with `known`
    /// as the body length if known), then the bytes framed as decided. Empty chunks send
    /// nothing (PEP 3333: headers go out with the first non-empty chunk).
    pub(crate) fn send_body(
        &mut self,
        py: Python<'_>,
        data: &[u8],
        known: Option<u64>,
    ) -> Result<(), Disconnected> {
        let link = Arc::clone(&self.link);
        let Some(Framed {
            head,
            bytes,
            body_len,
        }) = self.frame(data, known)?
        else {
            return Ok(());
        };
        // The headers and the chunk go out under one release of the GIL.
        let result = py.detach(|| link.with(|ecb| write_out(ecb, head.as_ref(), bytes)));
        self.settle(result, body_len)
    }

    /// Like [`send_body`](Self::send_body) for a whole body, but the bytes go out only
    /// after the GIL is released for good ([`take_deferred`](Self::take_deferred)), so
    /// that a small response costs one GIL acquisition instead of two.
    pub(crate) fn defer_body(&mut self, data: &[u8], known: u64) -> Result<(), Disconnected> {
        let Some(Framed {
            head,
            bytes,
            body_len,
        }) = self.frame(data, Some(known))?
        else {
            return Ok(());
        };
        let body = bytes.to_vec();
        self.sent += body_len as u64;
        self.deferred = Some(Deferred { head, body });
        Ok(())
    }

    /// A response held back by [`defer_body`](Self::defer_body), to send without the GIL.
    pub(crate) fn take_deferred(&mut self) -> Option<Deferred> {
        self.deferred.take()
    }

    /// Sends a deferred response now (under this GIL token), for paths that must write
    /// before they go on.
    pub(crate) fn flush_deferred(&mut self, py: Python<'_>) -> Result<(), Disconnected> {
        let Some(d) = self.deferred.take() else {
            return Ok(());
        };
        let link = &self.link;
        let result = py.detach(|| d.send(link));
        self.settle(result, 0)
    }

    fn settle(&mut self, result: io::Result<()>, body_len: usize) -> Result<(), Disconnected> {
        match result {
            Ok(()) => {
                self.sent += body_len as u64;
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(Disconnected(e))
            }
        }
    }

    /// Frames a body chunk: the head if it has not gone out yet, the bytes to write (cut
    /// to the Content-Length, or chunk-framed) and the body bytes they carry. `None` when
    /// there is nothing to write.
    fn frame<'a>(
        &'a mut self,
        data: &'a [u8],
        known: Option<u64>,
    ) -> Result<Option<Framed<'a>>, Disconnected> {
        if self.failed {
            return Err(Disconnected(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "an earlier write failed",
            )));
        }
        if data.is_empty() {
            return Ok(None);
        }
        let head = if self.framing.is_none() {
            Some(self.prepare_headers(known)?)
        } else {
            None
        };
        let bytes: &[u8] = match self.framing {
            Some(Framing::Length(n)) => {
                let allowed = usize::try_from(n.saturating_sub(self.sent)).unwrap_or(usize::MAX);
                if data.len() > allowed && !self.surplus_logged {
                    self.surplus_logged = true;
                    tracing::warn!(
                        target: "pyisapie",
                        "the application sent more than its Content-Length of {n} bytes; the surplus is cut"
                    );
                }
                &data[..data.len().min(allowed)]
            }
            Some(Framing::Chunked) => {
                self.scratch.clear();
                http::push_chunk(&mut self.scratch, data);
                &self.scratch
            }
            Some(Framing::Close) => data,
            Some(Framing::None) | None => &[],
        };
        if bytes.is_empty() && head.is_none() {
            return Ok(None);
        }
        let body_len = if self.framing == Some(Framing::Chunked) {
            data.len()
        } else {
            bytes.len()
        };
        Ok(Some(Framed {
            head,
            bytes,
            body_len,
        }))
    }

    /// Sends `length` bytes of `file` from `offset` with TRANSMIT_FILE (the headers first,
    /// with that length unless the application declared its own).
    pub(crate) fn send_file(
        &mut self,
        py: Python<'_>,
        file: RawFile,
        offset: u64,
        length: u64,
    ) -> Result<(), Disconnected> {
        if self.framing.is_none() {
            self.send_headers(py, Some(length))?;
        }
        let length = match self.framing {
            Some(Framing::Length(n)) => length.min(n.saturating_sub(self.sent)),
            Some(Framing::None) => 0,
            _ => length,
        };
        if length == 0 {
            return Ok(());
        }
        let (Ok(offset32), Ok(length32)) = (u32::try_from(offset), u32::try_from(length)) else {
            return Err(Disconnected(io::Error::other("file range beyond 4 GiB")));
        };
        let link = &self.link;
        let result = py.detach(|| link.with(|ecb| ecb.transmit_file(file, offset32, length32)));
        match result {
            Ok(n) => {
                self.sent += u64::from(n.min(length32));
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(Disconnected(e))
            }
        }
    }

    /// Completes a response whose body was fully produced; returns the `HSE_STATUS_*`.
    pub(crate) fn finish(&mut self, py: Python<'_>) -> Result<u32, Disconnected> {
        use windows_sys::Win32::System::Iis::{
            HSE_STATUS_SUCCESS, HSE_STATUS_SUCCESS_AND_KEEP_CONN,
        };
        if self.framing.is_none() {
            self.send_headers(py, Some(0))?;
        }
        match self.framing {
            Some(Framing::Chunked) => {
                let link = &self.link;
                let result = py.detach(|| link.with(|ecb| ecb.write_client(http::LAST_CHUNK)));
                result.map_err(|e| {
                    self.failed = true;
                    Disconnected(e)
                })?;
                Ok(HSE_STATUS_SUCCESS_AND_KEEP_CONN)
            }
            Some(Framing::Length(n)) if self.sent < n => {
                tracing::warn!(
                    target: "pyisapie",
                    "the application declared Content-Length {n} but sent {} bytes; closing the connection",
                    self.sent
                );
                let _ = self.link.with(|ecb| ecb.close_connection());
                Ok(HSE_STATUS_SUCCESS)
            }
            Some(Framing::Close) => Ok(HSE_STATUS_SUCCESS),
            _ => Ok(HSE_STATUS_SUCCESS_AND_KEEP_CONN),
        }
    }

    /// Ends a response that failed after its headers went out: the connection is closed so
    /// that the client sees an incomplete response rather than a wrong one.
    pub(crate) fn abort(&mut self) -> u32 {
        let _ = self.link.with(|ecb| ecb.close_connection());
        windows_sys::Win32::System::Iis::HSE_STATUS_ERROR
    }
}

#[pymethods]
impl Response {
    /// `start_response(status, response_headers, exc_info=None)`; returns `write`.
    #[pyo3(signature = (status, response_headers, exc_info = None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        response_headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let exc_info = exc_info.filter(|e| !e.is_none());
        {
            let this = slf.borrow();
            if let Some(exc_info) = exc_info {
                if this.headers_sent() {
                    // PEP 3333: too late to change the status; re-raise the original error.
                    return Err(PyErr::from_value(exc_info.get_item(1)?));
                }
            } else if this.started() {
                return Err(PyAssertionError::new_err(
                    "start_response() called a second time without exc_info",
                ));
            }
        }
        let status = status
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err("the status must be a str, like '200 OK'"))?
            .to_str()?;
        let code = http::parse_status(status).map_err(PyAssertionError::new_err)?;
        let list = response_headers.cast::<PyList>().map_err(|_| {
            PyTypeError::new_err("response_headers must be a list of (name, value) tuples")
        })?;
        let mut headers = Vec::with_capacity(64 * list.len() + 32);
        let mut app_length = None;
        for item in list.iter() {
            let pair = item
                .cast::<PyTuple>()
                .ok()
                .filter(|t| t.len() == 2)
                .ok_or_else(|| {
                    PyTypeError::new_err(format!(
                        "response header {item} is not a (name, value) tuple"
                    ))
                })?;
            let name = pair.get_item(0)?;
            let value = pair.get_item(1)?;
            let (Ok(name), Ok(value)) = (name.cast::<PyString>(), value.cast::<PyString>()) else {
                return Err(PyTypeError::new_err(format!(
                    "response header {item} must hold two str"
                )));
            };
            let (name, value) = (name.to_str()?, value.to_str()?);
            http::check_header(name, value).map_err(PyAssertionError::new_err)?;
            if name.eq_ignore_ascii_case("content-length") {
                app_length =
                    Some(http::parse_content_length(value).map_err(PyAssertionError::new_err)?);
            }
            http::push_header(&mut headers, name, value);
        }
        {
            let mut this = slf.borrow_mut();
            this.code = Some(code);
            this.status = http::latin1_bytes(status);
            this.headers = headers;
            this.app_length = app_length;
        }
        slf.getattr(pyo3::intern!(slf.py(), "write"))
    }

    /// `write(data)`: the imperative API PEP 3333 keeps for old frameworks. Sends the data
    /// at once (headers first if needed).
    fn write(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        if !self.started() {
            return Err(PyAssertionError::new_err(
                "write() called before start_response()",
            ));
        }
        let data = data.cast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!("write() takes bytes, not {}", data.get_type()))
        })?;
        self.send_body(py, data.as_bytes(), None)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// wsgi.file_wrapper
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// wsgi.errors, sys.stdout, sys.stderr
// ---------------------------------------------------------------------------------------

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
