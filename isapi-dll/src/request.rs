//! One request: the call of the application with its environ and `start_response`,
//! sending what it returns (a list, an iterable or a `wsgi.file_wrapper`), and the error
//! page when it fails.

use std::ffi::CString;
use std::io;
use std::sync::Arc;

use pyo3::exceptions::{PyAssertionError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use windows_sys::Win32::System::Iis::{HSE_STATUS_ERROR, HSE_STATUS_SUCCESS};

use crate::ffi::pytype::Instance;
use crate::ffi::{Ecb, RawFile};
use crate::mount::Route;
use crate::server_vars::{RequestInfo, Var};
use crate::wsgi::{
    Context, Deferred, Disconnected, FileWrapper, Input, Link, Response, error_text, text_of,
};

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
            tracing::error!(target: "pyisapie", "no interpreter context: {}", error_text(py, &e));
            return Finished::status(plain_response(
                ecb,
                "500 Internal Server Error",
                "Internal Server Error\n",
            ));
        }
    };
    let ctx = &*ctx;
    let http11 = info.get(Var::Protocol).eq_ignore_ascii_case(b"HTTP/1.1");
    let write_name = ctx.environ.keys.write.clone_ref(py);
    let setup = ctx
        .types
        .response
        .instantiate(py, Response::new(Arc::clone(link), http11, write_name))
        .and_then(|r| {
            let input = Input::new(Arc::clone(link), ecb.total_bytes());
            Ok((r, ctx.types.input.instantiate(py, input)?))
        });
    let (response, input) = match setup {
        Ok(pair) => pair,
        Err(e) => {
            tracing::error!(target: "pyisapie", "cannot create the request objects: {}", error_text(py, &e));
            return Finished::status(plain_response(
                ecb,
                "500 Internal Server Error",
                "Internal Server Error\n",
            ));
        }
    };
    let outcome = call_app(py, ctx, ecb, info, route, &response, &input);
    // A line the app left unfinished in wsgi.errors is logged with its request.
    ctx.flush_errors(py);
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
    response: &Instance<'_, Response>,
    input: &Instance<'_, Input>,
) -> Result<u32, Failure> {
    let environ = ctx.environ.build(py, ecb, info, route, input)?;
    let app = ctx.app(py, route.app)?;
    let result = app.call1((environ, response.as_any()))?;
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
            tracing::error!(
                target: "pyisapie",
                "the response iterable's close() raised: {}",
                error_text(py, &e)
            );
        }
    }
    body
}

fn close_result(ctx: &Context, result: &Bound<'_, PyAny>) -> PyResult<()> {
    if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() {
        return Ok(()); // no close() to call (and no AttributeError to build)
    }
    let py = result.py();
    let close = ctx.environ.keys.close.bind(py);
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
            text_of(&item.get_type())
        )))
    })
}

/// A one-item list or tuple body up to this size is copied and sent after the GIL is
/// released, rather than written with the GIL released and taken again.
const DEFER_MAX: u64 = 64 * 1024;

fn send_result(
    py: Python<'_>,
    ctx: &Context,
    response: &Instance<'_, Response>,
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
        if let [item] = items.as_slice()
            && total <= DEFER_MAX
            && !r.headers_sent()
        {
            r.defer_body(as_bytes(item)?.as_bytes(), total)?;
            return Ok(());
        }
        for item in &items {
            r.send_body(py, as_bytes(item)?.as_bytes(), Some(total))?;
        }
        return Ok(());
    }
    if let Some(wrapper) = ctx.types.file_wrapper.cast(result) {
        let filelike = FileWrapper::filelike(&wrapper.borrow(), py).clone();
        let file = ctx.boot(py).call_method1("regular_file", (filelike,))?;
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
    response: &Instance<'_, Response>,
    input: &Instance<'_, Input>,
    err: &PyErr,
) -> u32 {
    let mut r = response.borrow_mut();
    let method = String::from_utf8_lossy(ecb.method()).into_owned();
    let url = String::from_utf8_lossy(info.get(Var::Url)).into_owned();
    if r.failed() {
        tracing::info!(
            target: "pyisapie",
            "{method} {url}: client went away; the application stopped with: {}",
            error_text(py, err)
        );
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
