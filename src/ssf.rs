//! `ServerSupportFunction` requests (`HSE_REQ_*`) and asynchronous
//! `WriteClient`, with their arguments already decoded by `ffi`.
//!
//! Asynchronous operations run their I/O and then the extension's completion
//! routine on the host's I/O threads, never inline in the call that started
//! them: extensions commonly start the next read from inside a completion.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use http::StatusCode;
use windows_sys::Win32::System::Iis as iis;

use crate::ffi::{self, Completion, RawBuf, RawSlice};
use crate::request::{RequestCtx, win32};

/// Why a support function failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SsfError {
    /// A request code the host does not implement (`ERROR_INVALID_PARAMETER`).
    Unsupported,
    /// Failed with this Win32 error.
    Win32(u32),
}

impl From<u32> for SsfError {
    fn from(code: u32) -> Self {
        SsfError::Win32(code)
    }
}

/// The name of a request code, for logs.
pub(crate) fn request_name(code: u32) -> &'static str {
    match code {
        iis::HSE_REQ_SEND_URL_REDIRECT_RESP => "HSE_REQ_SEND_URL_REDIRECT_RESP",
        iis::HSE_REQ_SEND_URL => "HSE_REQ_SEND_URL",
        iis::HSE_REQ_SEND_RESPONSE_HEADER => "HSE_REQ_SEND_RESPONSE_HEADER",
        iis::HSE_REQ_DONE_WITH_SESSION => "HSE_REQ_DONE_WITH_SESSION",
        iis::HSE_REQ_MAP_URL_TO_PATH => "HSE_REQ_MAP_URL_TO_PATH",
        iis::HSE_REQ_GET_SSPI_INFO => "HSE_REQ_GET_SSPI_INFO",
        iis::HSE_APPEND_LOG_PARAMETER => "HSE_APPEND_LOG_PARAMETER",
        iis::HSE_REQ_IO_COMPLETION => "HSE_REQ_IO_COMPLETION",
        iis::HSE_REQ_TRANSMIT_FILE => "HSE_REQ_TRANSMIT_FILE",
        iis::HSE_REQ_REFRESH_ISAPI_ACL => "HSE_REQ_REFRESH_ISAPI_ACL",
        iis::HSE_REQ_IS_KEEP_CONN => "HSE_REQ_IS_KEEP_CONN",
        iis::HSE_REQ_ASYNC_READ_CLIENT => "HSE_REQ_ASYNC_READ_CLIENT",
        iis::HSE_REQ_GET_IMPERSONATION_TOKEN => "HSE_REQ_GET_IMPERSONATION_TOKEN",
        iis::HSE_REQ_MAP_URL_TO_PATH_EX => "HSE_REQ_MAP_URL_TO_PATH_EX",
        iis::HSE_REQ_ABORTIVE_CLOSE => "HSE_REQ_ABORTIVE_CLOSE",
        iis::HSE_REQ_GET_CERT_INFO_EX => "HSE_REQ_GET_CERT_INFO_EX",
        iis::HSE_REQ_SEND_RESPONSE_HEADER_EX => "HSE_REQ_SEND_RESPONSE_HEADER_EX",
        iis::HSE_REQ_CLOSE_CONNECTION => "HSE_REQ_CLOSE_CONNECTION",
        iis::HSE_REQ_IS_CONNECTED => "HSE_REQ_IS_CONNECTED",
        iis::HSE_REQ_EXEC_URL => "HSE_REQ_EXEC_URL",
        iis::HSE_REQ_EXEC_UNICODE_URL => "HSE_REQ_EXEC_UNICODE_URL",
        iis::HSE_REQ_GET_EXEC_URL_STATUS => "HSE_REQ_GET_EXEC_URL_STATUS",
        iis::HSE_REQ_SEND_CUSTOM_ERROR => "HSE_REQ_SEND_CUSTOM_ERROR",
        iis::HSE_REQ_IS_IN_PROCESS => "HSE_REQ_IS_IN_PROCESS",
        iis::HSE_REQ_REPORT_UNHEALTHY => "HSE_REQ_REPORT_UNHEALTHY",
        iis::HSE_REQ_NORMALIZE_URL => "HSE_REQ_NORMALIZE_URL",
        iis::HSE_REQ_VECTOR_SEND => "HSE_REQ_VECTOR_SEND",
        iis::HSE_REQ_SET_FLUSH_FLAG => "HSE_REQ_SET_FLUSH_FLAG",
        iis::HSE_REQ_CANCEL_IO => "HSE_REQ_CANCEL_IO",
        _ => "unknown",
    }
}

/// Logs an unsupported request code, once per code for the process.
pub(crate) fn log_unsupported_once(code: u32) {
    static SEEN: Mutex<Option<HashSet<u32>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if seen.get_or_insert_with(HashSet::new).insert(code) {
        tracing::warn!(
            code,
            name = request_name(code),
            "unsupported ServerSupportFunction request; returning ERROR_INVALID_PARAMETER"
        );
    }
}

fn completion_for(ctx: &RequestCtx, flags: u32) -> Result<Option<Completion>, SsfError> {
    if flags & iis::HSE_IO_ASYNC == 0 {
        return Ok(None);
    }
    match ctx.completion() {
        Some(c) => Ok(Some(c)),
        None => {
            tracing::warn!(
                request = ctx.id,
                "asynchronous I/O without HSE_REQ_IO_COMPLETION"
            );
            Err(SsfError::Win32(win32::ERROR_INVALID_PARAMETER))
        }
    }
}

/// Claims the request's one slot for asynchronous I/O: a second outstanding
/// operation could reorder the body or run two completions at once.
fn claim_async(ctx: &RequestCtx) -> Result<(), SsfError> {
    if ctx.begin_async() {
        Ok(())
    } else {
        tracing::warn!(
            request = ctx.id,
            "asynchronous I/O while another is outstanding"
        );
        Err(SsfError::Win32(win32::ERROR_INVALID_PARAMETER))
    }
}

/// On an I/O thread: runs `op`, frees the async slot, then calls the
/// completion routine (never after `DONE_WITH_SESSION`, when the ECB is no
/// longer the extension's).
fn complete_on_io_thread(
    ctx: &Arc<RequestCtx>,
    c: Completion,
    op: impl FnOnce(&RequestCtx) -> Result<u64, u32> + Send + 'static,
) {
    let ctx2 = ctx.clone();
    ctx.shared.io.spawn(move || {
        let (n, err) = match op(&ctx2) {
            Ok(n) => (n, 0),
            Err(e) => (0, e),
        };
        ctx2.end_async();
        if ctx2.is_finished() {
            tracing::warn!(
                request = ctx2.id,
                "I/O completed after DONE_WITH_SESSION; completion not called"
            );
            return;
        }
        c.invoke(&ctx2, u32::try_from(n).unwrap_or(u32::MAX), err);
    });
}

/// Runs `op` now, or on an I/O thread followed by the completion routine.
fn run_io(
    ctx: &Arc<RequestCtx>,
    completion: Option<Completion>,
    op: impl FnOnce(&RequestCtx) -> Result<u64, u32> + Send + 'static,
) -> Result<(), SsfError> {
    match completion {
        None => op(ctx).map(|_| ()).map_err(SsfError::Win32),
        Some(c) => {
            claim_async(ctx)?;
            complete_on_io_thread(ctx, c, op);
            Ok(())
        }
    }
}

/// `WriteClient`, synchronous or with `HSE_IO_ASYNC`.
pub(crate) fn write_client(ctx: &Arc<RequestCtx>, data: &[u8], flags: u32) -> Result<(), u32> {
    let to_win32 = |e: SsfError| match e {
        SsfError::Win32(code) => code,
        SsfError::Unsupported => win32::ERROR_INVALID_PARAMETER,
    };
    let completion = completion_for(ctx, flags).map_err(to_win32)?;
    if completion.is_some() {
        claim_async(ctx).map_err(to_win32)?;
    }
    // The bytes are queued before returning, so the caller may reuse its
    // buffer at once; only the completion is deferred.
    if let Err(e) = ctx.write_client(data) {
        if completion.is_some() {
            ctx.end_async();
        }
        return Err(e);
    }
    if flags & iis::HSE_IO_DISCONNECT_AFTER_SEND != 0 {
        ctx.conn.request_close();
    }
    if let Some(c) = completion {
        let n = data.len() as u64;
        complete_on_io_thread(ctx, c, move |_| Ok(n));
    }
    Ok(())
}

/// `SEND_URL_REDIRECT_RESP` and `SEND_URL`: a `302 Found` to the URL.
///
/// IIS 6 and later answer `SEND_URL` with a redirect too rather than the
/// internal fetch of IIS 4; the host does the same.
pub(crate) fn redirect(ctx: &RequestCtx, url: &[u8]) -> Result<(), SsfError> {
    let url = String::from_utf8_lossy(url);
    if url.contains(['\r', '\n']) {
        return Err(SsfError::Win32(win32::ERROR_INVALID_PARAMETER));
    }
    let body = format!(
        "<html><head><title>Object moved</title></head><body><h1>Object Moved</h1>This object may be found <a href=\"{}\">here</a>.</body></html>",
        html_escape(&url)
    );
    ctx.send_simple(StatusCode::FOUND, &[("Location", &url)], &body)
        .map_err(SsfError::Win32)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `SEND_RESPONSE_HEADER` (legacy) and `SEND_RESPONSE_HEADER_EX`.
pub(crate) fn send_response_header(
    ctx: &RequestCtx,
    status: Option<&[u8]>,
    headers: &[u8],
    keep_conn: bool,
) -> Result<(), SsfError> {
    ctx.send_headers(status, headers, keep_conn)
        .map_err(SsfError::Win32)
}

/// `DONE_WITH_SESSION`: ends a request that returned `HSE_STATUS_PENDING`.
pub(crate) fn done_with_session(ctx: &RequestCtx, status: Option<u32>) {
    let status = match status {
        Some(ffi::HSE_STATUS_ERROR) => ffi::HSE_STATUS_ERROR,
        _ => iis::HSE_STATUS_SUCCESS,
    };
    ctx.finish(status);
}

/// `MAP_URL_TO_PATH`: the physical path for a URL below the document root.
pub(crate) fn map_url(ctx: &RequestCtx, url: &[u8]) -> String {
    crate::vars::translate(&ctx.shared.cfg.doc_root, url)
}

/// The result of `MAP_URL_TO_PATH_EX`.
pub(crate) struct MapEx {
    pub(crate) path: String,
    pub(crate) flags: u32,
    pub(crate) matching_path: u32,
    pub(crate) matching_url: u32,
}

/// `MAP_URL_TO_PATH_EX`: path, access flags and how much of each matched the application root.
pub(crate) fn map_url_ex(ctx: &RequestCtx, url: &[u8]) -> MapEx {
    let path = map_url(ctx, url);
    let root = ctx.shared.cfg.doc_root.display().to_string();
    let prefix = ctx.info.script_name.as_bytes();
    let matching_url = if url.starts_with(prefix) {
        prefix.len()
    } else {
        0
    };
    MapEx {
        matching_path: root.len().min(path.len()) as u32,
        matching_url: matching_url as u32,
        flags: iis::HSE_URL_FLAGS_READ | iis::HSE_URL_FLAGS_EXECUTE | iis::HSE_URL_FLAGS_SCRIPT,
        path,
    }
}

/// `ASYNC_READ_CLIENT`: reads on an I/O thread, then calls the completion
/// with the byte count (0 at the end of the body).
pub(crate) fn async_read_client(
    ctx: &Arc<RequestCtx>,
    mut buf: RawBuf,
    flags: u32,
) -> Result<(), SsfError> {
    if flags & iis::HSE_IO_ASYNC == 0 {
        return Err(SsfError::Win32(win32::ERROR_INVALID_PARAMETER));
    }
    let completion = completion_for(ctx, iis::HSE_IO_ASYNC)?;
    run_io(ctx, completion, move |ctx| {
        ctx.read_client(buf.as_mut()).map(|n| n as u64)
    })
}

/// A byte range of an extension's open file; `len` 0 means to the end.
#[derive(Clone, Copy)]
pub(crate) struct FileRange {
    pub(crate) handle: isize,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

/// Streams a file range to the client; returns the bytes sent.
fn send_file(ctx: &RequestCtx, range: FileRange) -> Result<u64, u32> {
    let file = ffi::borrow_file(range.handle).ok_or(win32::ERROR_INVALID_PARAMETER)?;
    let end = if range.len == 0 {
        file.metadata()
            .map_err(|_| win32::ERROR_INVALID_PARAMETER)?
            .len()
    } else {
        range.offset.saturating_add(range.len)
    };
    let mut pos = range.offset;
    let mut buf = vec![0u8; 64 * 1024];
    while pos < end {
        let want = usize::try_from(end - pos)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = read_at(&file, &mut buf[..want], pos).map_err(|e| {
            tracing::warn!(request = ctx.id, error = %e, "reading a file for TRANSMIT_FILE/VECTOR_SEND failed");
            win32::ERROR_INVALID_PARAMETER
        })?;
        if n == 0 {
            break; // the file is shorter than asked
        }
        ctx.write_client(&buf[..n])?;
        pos += n as u64;
    }
    Ok(pos - range.offset)
}

fn read_at(file: &std::fs::File, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_at(file, buf, pos)
    }
    #[cfg(windows)]
    {
        std::os::windows::fs::FileExt::seek_read(file, buf, pos)
    }
}

/// The decoded `HSE_TF_INFO` of `TRANSMIT_FILE`.
pub(crate) struct Transmit {
    pub(crate) flags: u32,
    pub(crate) status: Option<Vec<u8>>,
    pub(crate) head: RawSlice,
    pub(crate) file: FileRange,
    pub(crate) tail: RawSlice,
    pub(crate) completion: Option<Completion>,
}

/// `TRANSMIT_FILE`: optional headers (`HSE_IO_SEND_HEADERS`, with the status
/// in `pszStatusCode` and the headers in `pHead`), then head, file range and
/// tail. IIS requires `HSE_IO_ASYNC`; the host also performs it synchronously
/// without that flag.
pub(crate) fn transmit_file(ctx: &Arc<RequestCtx>, t: Transmit) -> Result<(), SsfError> {
    let completion = match (t.flags & iis::HSE_IO_ASYNC != 0, t.completion) {
        (true, Some(c)) => Some(c),
        (true, None) => completion_for(ctx, t.flags)?,
        (false, _) => None,
    };
    if t.flags & iis::HSE_IO_DISCONNECT_AFTER_SEND != 0 {
        ctx.conn.request_close();
    }
    run_io(ctx, completion, move |ctx| {
        let mut sent = 0;
        if t.flags & iis::HSE_IO_SEND_HEADERS != 0 {
            ctx.send_headers(t.status.as_deref(), t.head.bytes(), true)?;
        } else {
            ctx.write_client(t.head.bytes())?;
            sent += t.head.bytes().len() as u64;
        }
        sent += send_file(ctx, t.file)?;
        ctx.write_client(t.tail.bytes())?;
        Ok(sent + t.tail.bytes().len() as u64)
    })
}

/// One element of a `VECTOR_SEND`.
pub(crate) enum Piece {
    Memory(RawSlice),
    File(FileRange),
}

/// `VECTOR_SEND`: optional headers, then memory and file elements in order.
pub(crate) fn vector_send(
    ctx: &Arc<RequestCtx>,
    flags: u32,
    status: Option<Vec<u8>>,
    headers: Option<Vec<u8>>,
    pieces: Vec<Piece>,
) -> Result<(), SsfError> {
    let send_headers = flags & iis::HSE_IO_SEND_HEADERS != 0;
    if send_headers != (status.is_some() && headers.is_some()) {
        // ms525729: pszStatus and pszHeaders are set exactly when SEND_HEADERS is.
        return Err(SsfError::Win32(win32::ERROR_INVALID_PARAMETER));
    }
    let completion = completion_for(ctx, flags)?;
    if flags & iis::HSE_IO_DISCONNECT_AFTER_SEND != 0 {
        ctx.conn.request_close();
    }
    run_io(ctx, completion, move |ctx| {
        if let (Some(status), Some(headers)) = (&status, &headers) {
            ctx.send_headers(Some(status), headers, true)?;
        }
        let mut sent = 0;
        for piece in &pieces {
            sent += match piece {
                Piece::Memory(m) => {
                    ctx.write_client(m.bytes())?;
                    m.bytes().len() as u64
                }
                Piece::File(f) if f.len == 0 => 0,
                Piece::File(f) => send_file(ctx, *f)?,
            };
        }
        Ok(sent)
    })
}

/// `SEND_CUSTOM_ERROR`: the host's error page for the status.
pub(crate) fn send_custom_error(
    ctx: &Arc<RequestCtx>,
    status: &[u8],
    sub_error: u16,
    async_: bool,
) -> Result<(), SsfError> {
    let (code, _) = crate::response::parse_status(status)
        .map_err(|_| SsfError::Win32(win32::ERROR_INVALID_PARAMETER))?;
    let completion = completion_for(ctx, if async_ { iis::HSE_IO_ASYNC } else { 0 })?;
    let reason = code.canonical_reason().unwrap_or("Error");
    let c = code.as_u16();
    let body = crate::request::error_html(
        &format!("{c} - {reason}"),
        &format!("{c}.{sub_error} - {reason}"),
    );
    run_io(ctx, completion, move |ctx| {
        ctx.send_simple(code, &[], &body).map(|_| 0)
    })
}
