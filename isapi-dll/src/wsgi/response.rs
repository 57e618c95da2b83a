//! `start_response`, its `write()`, and the response writer behind both: it validates the
//! status and headers, decides the framing (Content-Length, chunked or close-delimited),
//! sends the head with the first non-empty chunk, and frames the body.

use std::ffi::{CStr, CString};
use std::io;
use std::sync::Arc;

use pyo3::exceptions::{PyAssertionError, PyOSError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use super::context::text_of;
use super::link::Link;
use crate::ffi::pytype::{Args, Instance, Method, Owned, PyValue, Slots, required};
use crate::ffi::{Ecb, RawFile};
use crate::http::{self, Framing};

/// The `start_response` callable of one request, and the response writer behind it and
/// behind `write()`.
///
/// The status and headers are validated when `start_response` is called (hop-by-hop
/// headers and malformed values are errors) but only sent with the first non-empty body
/// chunk (or at the end), so `exc_info` can still replace them and a generator that calls
/// `start_response` lazily is honoured.
pub(crate) struct Response {
    link: Arc<Link>,
    /// `"write"`, interned in this interpreter: `start_response` returns that attribute.
    write_name: Owned<PyString>,
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
    pub(crate) fn new(link: Arc<Link>, http11: bool, write_name: Owned<PyString>) -> Self {
        Self {
            link,
            write_name,
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

/// `start_response(status, response_headers, exc_info=None)`; returns `write`.
fn start_response<'py>(
    slf: &Instance<'py, Response>,
    args: Args<'_, 'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let [status, response_headers, exc_info] = args.parse(
        "start_response",
        ["status", "response_headers", "exc_info"],
        2,
    )?;
    let (status, response_headers) = (required(status)?, required(response_headers)?);
    let exc_info = exc_info.filter(|e| !e.is_none());
    {
        let this = slf.try_borrow()?;
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
                    "response header {} is not a (name, value) tuple",
                    text_of(&item)
                ))
            })?;
        let name = pair.get_item(0)?;
        let value = pair.get_item(1)?;
        let (Ok(name), Ok(value)) = (name.cast::<PyString>(), value.cast::<PyString>()) else {
            return Err(PyTypeError::new_err(format!(
                "response header {} must hold two str",
                text_of(&item)
            )));
        };
        let (name, value) = (name.to_str()?, value.to_str()?);
        http::check_header(name, value).map_err(PyAssertionError::new_err)?;
        if http::is_status_header(name) {
            drop_status_header(value);
            continue;
        }
        if name.eq_ignore_ascii_case("content-length") {
            app_length =
                Some(http::parse_content_length(value).map_err(PyAssertionError::new_err)?);
        }
        http::push_header(&mut headers, name, value);
    }
    let write_name = {
        let mut this = slf.try_borrow_mut()?;
        this.code = Some(code);
        this.status = http::latin1_bytes(status);
        this.headers = headers;
        this.app_length = app_length;
        this.write_name.bind(slf.py()).clone()
    };
    slf.as_any().getattr(write_name)
}

/// An app's own `Status` header is not sent: ISAPI servers (Apache's mod_isapi, this
/// project's host) read a `Status:` line of the header block as the response's status, so
/// it would override `start_response`'s. Logged once per process, with its value.
fn drop_status_header(value: &str) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            target: "pyisapie",
            "the app sent a Status response header ({value:?}): not sent (an ISAPI server \
             would take it for the response's status; the status is start_response's); \
             logged once"
        );
    }
}

/// `write(data)`: the imperative API PEP 3333 keeps for old frameworks. Sends the data
/// at once (headers first if needed).
fn write<'py>(this: &Instance<'py, Response>, args: Args<'_, 'py>) -> PyResult<Bound<'py, PyAny>> {
    let [data] = args.parse("write", ["data"], 1)?;
    let data = required(data)?;
    let py = this.py();
    let mut response = this.try_borrow_mut()?;
    if !response.started() {
        return Err(PyAssertionError::new_err(
            "write() called before start_response()",
        ));
    }
    let data = data.cast::<PyBytes>().map_err(|_| {
        PyTypeError::new_err(format!(
            "write() takes bytes, not {}",
            text_of(&data.get_type())
        ))
    })?;
    response.send_body(py, data.as_bytes(), None)?;
    Ok(py.None().into_bound(py))
}

impl PyValue for Response {
    const NAME: &'static CStr = c"pyisapie.StartResponse";
    const DOC: &'static CStr =
        c"start_response(status, response_headers, exc_info=None): returns write(data).";
    const METHODS: &'static [Method<Self>] = &[
        Method::new(c"write", c"write(data): send data now", write),
        Method::END,
    ];
    const SLOTS: Slots<Self> = Slots::NONE.call(start_response);
}
