//! One request: the facts fetched from the server (without the GIL), the WSGI environ, the
//! call of the application, and sending what it returns.

use std::ffi::{CStr, CString};
use std::io;
use std::ops::Range;
use std::sync::Arc;

use pyo3::exceptions::{PyAssertionError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use windows_sys::Win32::System::Iis::{HSE_STATUS_ERROR, HSE_STATUS_SUCCESS};

use crate::ffi::{self, Ecb, RawFile};
use crate::mount::{self, Route};
use crate::wsgi::{Context, Deferred, Disconnected, FileWrapper, Input, Link, Repeated, Response};

/// Where the extension's own URL prefix comes from (decided once per process).
#[derive(Debug, Clone)]
pub(crate) enum BaseSource {
    /// `base` from the configuration.
    Fixed(Vec<u8>),
    /// The server's `SCRIPT_NAME` (isapi-host: the mount prefix).
    ScriptName,
    /// IIS: the application's virtual path from `APPL_MD_PATH` (IIS puts the whole URL in
    /// `SCRIPT_NAME` for wildcard handler mappings).
    IisApplication,
}

impl BaseSource {
    /// Decides from the configuration and the server's `SERVER_SOFTWARE`.
    pub(crate) fn detect(configured: Option<&str>, ecb: Ecb) -> Self {
        if let Some(base) = configured {
            return Self::Fixed(base.as_bytes().to_vec());
        }
        let mut buf = Vec::new();
        let iis = ecb
            .server_variable(c"SERVER_SOFTWARE", &mut buf)
            .unwrap_or(false)
            && buf.starts_with(b"Microsoft-IIS");
        if iis {
            Self::IisApplication
        } else {
            Self::ScriptName
        }
    }
}

/// Server variables of one request, fetched before taking the GIL, in one buffer.
#[derive(Debug, Default)]
pub(crate) struct RequestInfo {
    buf: Vec<u8>,
    url: Range<usize>,
    base: Range<usize>,
    protocol: Range<usize>,
    server_name: Range<usize>,
    server_port: Range<usize>,
    remote_addr: Range<usize>,
    remote_port: Range<usize>,
    all_raw: Range<usize>,
    pub(crate) https: bool,
}

impl RequestInfo {
    pub(crate) fn gather(ecb: Ecb, base: &BaseSource) -> io::Result<Self> {
        let mut buf = Vec::with_capacity(1024);
        let var = |name: &CStr, buf: &mut Vec<u8>| -> io::Result<Range<usize>> {
            let start = buf.len();
            ecb.append_server_variable(name, buf)?;
            Ok(start..buf.len())
        };
        let base = match base {
            BaseSource::Fixed(b) => {
                let start = buf.len();
                buf.extend_from_slice(b);
                start..buf.len()
            }
            BaseSource::ScriptName => var(c"SCRIPT_NAME", &mut buf)?,
            BaseSource::IisApplication => {
                let md = var(c"APPL_MD_PATH", &mut buf)?;
                let path = mount::iis_application_path(&buf[md.clone()]);
                buf.truncate(md.start);
                buf.extend_from_slice(&path);
                md.start..buf.len()
            }
        };
        let url = var(c"URL", &mut buf)?;
        let protocol = var(c"SERVER_PROTOCOL", &mut buf)?;
        let server_name = var(c"SERVER_NAME", &mut buf)?;
        let server_port = var(c"SERVER_PORT", &mut buf)?;
        let remote_addr = var(c"REMOTE_ADDR", &mut buf)?;
        let remote_port = var(c"REMOTE_PORT", &mut buf)?;
        let https = var(c"HTTPS", &mut buf)?;
        let all_raw = var(c"ALL_RAW", &mut buf)?;
        Ok(Self {
            https: buf[https].eq_ignore_ascii_case(b"on"),
            buf,
            url,
            base,
            protocol,
            server_name,
            server_port,
            remote_addr,
            remote_port,
            all_raw,
        })
    }

    /// `URL`: the request path, percent-decoded.
    pub(crate) fn url(&self) -> &[u8] {
        &self.buf[self.url.clone()]
    }

    /// The extension's own URL prefix ([`BaseSource`]).
    pub(crate) fn base(&self) -> &[u8] {
        &self.buf[self.base.clone()]
    }

    /// `SERVER_PROTOCOL`.
    pub(crate) fn protocol(&self) -> &[u8] {
        &self.buf[self.protocol.clone()]
    }

    /// `SERVER_NAME`.
    pub(crate) fn server_name(&self) -> &[u8] {
        &self.buf[self.server_name.clone()]
    }

    /// `SERVER_PORT`.
    pub(crate) fn server_port(&self) -> &[u8] {
        &self.buf[self.server_port.clone()]
    }

    /// `REMOTE_ADDR`.
    pub(crate) fn remote_addr(&self) -> &[u8] {
        &self.buf[self.remote_addr.clone()]
    }

    /// `REMOTE_PORT` (empty if the server has none).
    pub(crate) fn remote_port(&self) -> &[u8] {
        &self.buf[self.remote_port.clone()]
    }

    /// `ALL_RAW`: the request headers as `Name: value` lines.
    pub(crate) fn all_raw(&self) -> &[u8] {
        &self.buf[self.all_raw.clone()]
    }
}

/// Sends a small plain-text response without Python (no app mounted, not started).
pub(crate) fn plain_response(ecb: Ecb, status: &str, body: &str) -> u32 {
    let headers = format!(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let (Ok(status_z), Ok(headers)) = (CString::new(status), CString::new(headers)) else {
        return HSE_STATUS_ERROR;
    };
    ecb.set_status_code(status[..3].parse().unwrap_or(500));
    let sent = ecb
        .send_response_header_ex(&status_z, &headers, true)
        .and_then(|()| ecb.write_client(body.as_bytes()));
    match sent {
        Ok(()) => windows_sys::Win32::System::Iis::HSE_STATUS_SUCCESS_AND_KEEP_CONN,
        Err(_) => HSE_STATUS_ERROR,
    }
}

enum Failure {
    /// The application raised (or broke the WSGI contract).
    App(PyErr),
    /// The client went away while we wrote.
    Disconnected(io::Error),
}

impl From<PyErr> for Failure {
    fn from(e: PyErr) -> Self {
        Self::App(e)
    }
}

impl From<Disconnected> for Failure {
    fn from(d: Disconnected) -> Self {
        Self::Disconnected(d.0)
    }
}

/// What [`run`] leaves to do once the GIL is released.
pub(crate) struct Finished {
    /// The `HSE_STATUS_*` for `HttpExtensionProc`.
    status: u32,
    /// A response still to send.
    deferred: Option<Deferred>,
}

impl Finished {
    fn status(status: u32) -> Self {
        Self {
            status,
            deferred: None,
        }
    }

    /// Sends what is left (call without the GIL); returns the `HSE_STATUS_*`.
    pub(crate) fn complete(self, link: &Link) -> u32 {
        let Some(d) = self.deferred else {
            return self.status;
        };
        match d.send(link) {
            Ok(()) => self.status,
            Err(e) => {
                tracing::info!(target: "pyisapie", "client went away during the response: {e}");
                let _ = link.with(|ecb| ecb.close_connection());
                HSE_STATUS_ERROR
            }
        }
    }
}

/// Runs the application for one routed request. A small complete response is returned
/// unsent, for [`Finished::complete`] to send once the GIL is released.
pub(crate) fn run(
    py: Python<'_>,
    ecb: Ecb,
    link: &Arc<Link>,
    info: &RequestInfo,
    route: &Route<'_>,
) -> Finished {
    let ctx = match Context::get(py) {
        Ok(ctx) => ctx,
        Err(e) => {
            tracing::error!(target: "pyisapie", "no interpreter context: {e}");
            return Finished::status(plain_response(
                ecb,
                "500 Internal Server Error",
                "Internal Server Error\n",
            ));
        }
    };
    let ctx = ctx.get();
    let http11 = info.protocol().eq_ignore_ascii_case(b"HTTP/1.1");
    let setup = Bound::new(py, Response::new(Arc::clone(link), http11)).and_then(|r| {
        Ok((
            r,
            Bound::new(py, Input::new(Arc::clone(link), ecb.total_bytes()))?,
        ))
    });
    let (response, input) = match setup {
        Ok(pair) => pair,
        Err(e) => {
            tracing::error!(target: "pyisapie", "cannot create the request objects: {e}");
            return Finished::status(plain_response(
                ecb,
                "500 Internal Server Error",
                "Internal Server Error\n",
            ));
        }
    };
    let outcome = call_app(py, ctx, ecb, info, route, &response, &input);
    // A line the app left unfinished in wsgi.errors is logged with its request.
    ctx.errors.get().flush_pending();
    let status = match outcome {
        Ok(status) => status,
        Err(Failure::Disconnected(e)) => {
            tracing::info!(target: "pyisapie", "client went away during the response: {e}");
            response.borrow_mut().abort()
        }
        Err(Failure::App(err)) => app_failed(py, ctx, ecb, info, &response, &input, &err),
    };
    if input.borrow().broken() && status != HSE_STATUS_ERROR {
        // The body's framing is broken: the connection cannot carry another request.
        let sent = response.borrow_mut().flush_deferred(py);
        let _ = link.with(|ecb| ecb.close_connection());
        return Finished::status(if sent.is_ok() {
            HSE_STATUS_SUCCESS
        } else {
            HSE_STATUS_ERROR
        });
    }
    Finished {
        status,
        deferred: response.borrow_mut().take_deferred(),
    }
}

fn call_app(
    py: Python<'_>,
    ctx: &Context,
    ecb: Ecb,
    info: &RequestInfo,
    route: &Route<'_>,
    response: &Bound<'_, Response>,
    input: &Bound<'_, Input>,
) -> Result<u32, Failure> {
    let environ = build_environ(py, ctx, ecb, info, route, input)?;
    let app = ctx.apps[route.app].bind(py);
    let result = app.call1((environ, response))?;
    let body = send_result(py, ctx, response, &result)
        .and_then(|()| response.borrow_mut().finish(py).map_err(Failure::from));
    // PEP 3333: close() is called whatever happened, after the response is complete.
    if let Err(e) = close_result(ctx, &result) {
        if body.is_ok() {
            tracing::error!(
                target: "pyisapie",
                "the response iterable's close() raised:\n{}",
                ctx.format_exception(py, &e)
            );
        } else {
            tracing::error!(target: "pyisapie", "the response iterable's close() raised: {e}");
        }
    }
    body
}

fn close_result(ctx: &Context, result: &Bound<'_, PyAny>) -> PyResult<()> {
    if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() {
        return Ok(()); // no close() to call (and no AttributeError to build)
    }
    let py = result.py();
    let close = ctx.keys.close.bind(py);
    if result.hasattr(close)? {
        result.call_method0(close)?;
    }
    Ok(())
}

fn not_started() -> Failure {
    Failure::App(PyAssertionError::new_err(
        "the application sent a body before calling start_response()",
    ))
}

fn as_bytes<'a, 'py>(item: &'a Bound<'py, PyAny>) -> Result<&'a Bound<'py, PyBytes>, Failure> {
    item.cast::<PyBytes>().map_err(|_| {
        Failure::App(PyTypeError::new_err(format!(
            "the application's body must yield bytes, not {}",
            item.get_type()
        )))
    })
}

/// A one-item list or tuple body up to this size is copied and sent after the GIL is
/// released, rather than written with the GIL released and taken again.
const DEFER_MAX: u64 = 64 * 1024;

fn send_result(
    py: Python<'_>,
    ctx: &Context,
    response: &Bound<'_, Response>,
    result: &Bound<'_, PyAny>,
) -> Result<(), Failure> {
    // A list or tuple: the length is known, so the response gets a Content-Length.
    let items = if let Ok(list) = result.cast_exact::<PyList>() {
        Some(list.iter().collect::<Vec<_>>())
    } else {
        result
            .cast_exact::<PyTuple>()
            .ok()
            .map(|t| t.iter().collect::<Vec<_>>())
    };
    if let Some(items) = items {
        let mut total = 0u64;
        for item in &items {
            total += as_bytes(item)?.as_bytes().len() as u64;
        }
        if !response.borrow().started() {
            return Err(not_started());
        }
        let mut r = response.borrow_mut();
        if let [item] = items.as_slice() {
            if total <= DEFER_MAX && !r.headers_sent() {
                r.defer_body(as_bytes(item)?.as_bytes(), total)?;
                return Ok(());
            }
        }
        for item in &items {
            r.send_body(py, as_bytes(item)?.as_bytes(), Some(total))?;
        }
        return Ok(());
    }
    if let Ok(wrapper) = result.cast_exact::<FileWrapper>() {
        let filelike = wrapper.get().filelike().bind(py);
        let file = ctx
            .boot
            .bind(py)
            .call_method1("regular_file", (filelike,))?;
        if !file.is_none() {
            let (handle, offset, size): (i64, u64, u64) = file.extract()?;
            let length = size.saturating_sub(offset);
            let fits = u32::try_from(offset).is_ok() && u32::try_from(length).is_ok();
            if let (Some(raw), true) = (RawFile::from_handle(handle), fits) {
                if !response.borrow().started() {
                    return Err(not_started());
                }
                response.borrow_mut().send_file(py, raw, offset, length)?;
                return Ok(());
            }
        }
    }
    for item in result.try_iter()? {
        let item = item?;
        let bytes = as_bytes(&item)?.as_bytes();
        if bytes.is_empty() {
            continue;
        }
        if !response.borrow().started() {
            return Err(not_started());
        }
        response.borrow_mut().send_body(py, bytes, None)?;
    }
    if !response.borrow().started() {
        return Err(Failure::App(PyAssertionError::new_err(
            "the application never called start_response()",
        )));
    }
    Ok(())
}

fn app_failed(
    py: Python<'_>,
    ctx: &Context,
    ecb: Ecb,
    info: &RequestInfo,
    response: &Bound<'_, Response>,
    input: &Bound<'_, Input>,
    err: &PyErr,
) -> u32 {
    let mut r = response.borrow_mut();
    let method = String::from_utf8_lossy(ecb.method()).into_owned();
    let url = String::from_utf8_lossy(info.url()).into_owned();
    if r.failed() {
        tracing::info!(target: "pyisapie", "{method} {url}: client went away; the application stopped with: {err}");
        return r.abort();
    }
    let traceback = ctx.format_exception(py, err);
    tracing::error!(target: "pyisapie", "{method} {url}: the application raised an exception\n{traceback}");
    if r.headers_sent() {
        // Too late for a 500: close the connection so the client sees the response is cut.
        return r.abort();
    }
    let bad_body = input.borrow().broken();
    let (status, mut body) = if bad_body {
        (
            "400 Bad Request",
            String::from("Bad Request: the request body is malformed or incomplete\n"),
        )
    } else {
        (
            "500 Internal Server Error",
            String::from("Internal Server Error\n"),
        )
    };
    if ctx.debug {
        body.push('\n');
        body.push_str(&traceback);
        body.push('\n');
    }
    r.set_error_status(status, "text/plain; charset=utf-8", body.len());
    let sent = r
        .send_body(py, body.as_bytes(), Some(body.len() as u64))
        .and_then(|()| r.finish(py));
    match sent {
        Ok(status) if !bad_body => status,
        Ok(_) => HSE_STATUS_SUCCESS,
        Err(_) => r.abort(),
    }
}

/// `HTTP_` and the header's name, upper-cased with `-` as `_`. `name` is ASCII letters,
/// digits and dashes (checked by the caller).
fn header_key<'py>(py: Python<'py>, name: &[u8]) -> Bound<'py, PyString> {
    let mut key = Vec::with_capacity(5 + name.len());
    key.extend_from_slice(b"HTTP_");
    key.extend(name.iter().map(|&b| {
        if b == b'-' {
            b'_'
        } else {
            b.to_ascii_uppercase()
        }
    }));
    PyString::new(py, std::str::from_utf8(&key).unwrap_or_default())
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn build_environ<'py>(
    py: Python<'py>,
    ctx: &Context,
    ecb: Ecb,
    info: &RequestInfo,
    route: &Route<'_>,
    input: &Bound<'py, Input>,
) -> PyResult<Bound<'py, PyDict>> {
    let k = &ctx.keys;
    // Holds the constant WSGI entries, and placeholders for the keys set below.
    let env = ctx.new_environ(py)?;
    let method = ecb.method();
    let method = match method {
        b"GET" => k.get.bind(py).clone(),
        b"HEAD" => k.head.bind(py).clone(),
        b"POST" => k.post.bind(py).clone(),
        _ => ffi::python::latin1(py, method)?,
    };
    env.set_item(k.request_method.bind(py), method)?;
    let script_name = ctx.repeated(py, Repeated::ScriptName, &route.script_name)?;
    env.set_item(k.script_name.bind(py), script_name)?;
    env.set_item(
        k.path_info.bind(py),
        ffi::python::latin1(py, route.path_info)?,
    )?;
    let query = ecb.query_string();
    if query.is_empty() {
        env.set_item(k.query_string.bind(py), k.empty.bind(py))?;
    } else {
        env.set_item(k.query_string.bind(py), ffi::python::latin1(py, query)?)?;
    }
    let content_type = ecb.content_type();
    if !content_type.is_empty() {
        env.set_item(
            k.content_type.bind(py),
            ffi::python::latin1(py, content_type)?,
        )?;
    }
    let protocol = match info.protocol() {
        b"HTTP/1.1" => k.http11.bind(py).clone(),
        b"HTTP/1.0" => k.http10.bind(py).clone(),
        other => ffi::python::latin1(py, other)?,
    };
    env.set_item(k.server_protocol.bind(py), protocol)?;
    let server_name = ctx.repeated(py, Repeated::ServerName, info.server_name())?;
    env.set_item(k.server_name.bind(py), server_name)?;
    let server_port = ctx.repeated(py, Repeated::ServerPort, info.server_port())?;
    env.set_item(k.server_port.bind(py), server_port)?;
    let remote_addr = ctx.repeated(py, Repeated::RemoteAddr, info.remote_addr())?;
    env.set_item(k.remote_addr.bind(py), remote_addr)?;
    if info.remote_port().is_empty() {
        env.del_item(k.remote_port.bind(py))?;
    } else {
        env.set_item(
            k.remote_port.bind(py),
            ffi::python::latin1(py, info.remote_port())?,
        )?;
    }
    let mut content_length = None;
    for line in info.all_raw().split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (trim(&line[..colon]), trim(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            content_length = Some(value);
            continue;
        }
        if name.eq_ignore_ascii_case(b"content-type") || name.is_empty() {
            continue;
        }
        // Underscores would collide with dashes (X-Auth vs X_Auth): drop such headers, as
        // gunicorn and nginx do.
        if !name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-') {
            tracing::debug!(target: "pyisapie", "dropped request header {:?}", String::from_utf8_lossy(name));
            continue;
        }
        let py_key = match k.common_header(name) {
            Some(key) => key.bind(py).clone(),
            None => header_key(py, name),
        };
        let value = ffi::python::latin1(py, value)?;
        let value = match env.get_item(&py_key)? {
            Some(prev) => {
                let sep = if name.eq_ignore_ascii_case(b"cookie") {
                    "; "
                } else {
                    ", "
                };
                PyString::new(
                    py,
                    &format!(
                        "{}{sep}{}",
                        prev.cast::<PyString>()?.to_cow()?,
                        value.to_cow()?
                    ),
                )
            }
            None => value,
        };
        env.set_item(py_key, value)?;
    }
    let total = ecb.total_bytes();
    if total != u32::MAX {
        if content_length.is_some() || total > 0 {
            env.set_item(k.content_length.bind(py), total.to_string())?;
        }
    } else if let Some(value) = content_length {
        // a body of 4 GiB or more: the ECB cannot say, the header can
        env.set_item(k.content_length.bind(py), ffi::python::latin1(py, value)?)?;
    }
    if info.https {
        env.set_item(k.https.bind(py), k.on.bind(py))?;
        env.set_item(k.wsgi_url_scheme.bind(py), k.https_scheme.bind(py))?;
    }
    env.set_item(k.wsgi_input.bind(py), input)?;
    Ok(env)
}
