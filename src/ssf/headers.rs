//! Response heads: `HSE_REQ_SEND_RESPONSE_HEADER(_EX)`, the redirects
//! `HSE_REQ_SEND_URL_REDIRECT_RESP` and `HSE_REQ_SEND_URL`, and
//! `HSE_REQ_SEND_CUSTOM_ERROR`.

use std::sync::Arc;

use http::StatusCode;
use windows_sys::Win32::Foundation::ERROR_INVALID_PARAMETER;
use windows_sys::Win32::System::Iis::HSE_IO_ASYNC;

use super::async_io::{completion_for, run_io};
use crate::request::{RequestCtx, error_html};

/// `HSE_REQ_SEND_RESPONSE_HEADER` (legacy, which keeps the connection) and
/// `HSE_REQ_SEND_RESPONSE_HEADER_EX`.
pub(super) fn send_response_header(
    ctx: &RequestCtx,
    status: Option<&[u8]>,
    headers: &[u8],
    keep_conn: bool,
) -> Result<(), u32> {
    ctx.send_headers(status, headers, keep_conn)
}

/// `HSE_REQ_SEND_URL_REDIRECT_RESP` and `HSE_REQ_SEND_URL`: a `302 Found`
/// to the URL.
///
/// IIS 6 and later answer `SEND_URL` with a redirect too rather than the
/// internal fetch of IIS 4; the host does the same.
pub(super) fn redirect(ctx: &RequestCtx, url: &[u8]) -> Result<(), u32> {
    let url = String::from_utf8_lossy(url);
    if url.contains(['\r', '\n']) {
        return Err(ERROR_INVALID_PARAMETER);
    }
    let body = format!(
        "<html><head><title>Object moved</title></head><body><h1>Object Moved</h1>This object may be found <a href=\"{}\">here</a>.</body></html>",
        html_escape(&url)
    );
    ctx.send_simple(StatusCode::FOUND, &[("Location", &url)], &body)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `HSE_REQ_SEND_CUSTOM_ERROR`: the host's error page for the status.
pub(super) fn send_custom_error(
    ctx: &Arc<RequestCtx>,
    status: &[u8],
    sub_error: u16,
    async_: bool,
) -> Result<(), u32> {
    let (code, _) = crate::response::parse_status(status).map_err(|_| ERROR_INVALID_PARAMETER)?;
    let completion = completion_for(ctx, if async_ { HSE_IO_ASYNC } else { 0 })?;
    let reason = code.canonical_reason().unwrap_or("Error");
    let c = code.as_u16();
    let body = error_html(
        &format!("{c} - {reason}"),
        &format!("{c}.{sub_error} - {reason}"),
    );
    run_io(ctx, completion, move |ctx| {
        ctx.send_simple(code, &[], &body).map(|_| 0)
    })
}
