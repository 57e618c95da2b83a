//! What the ISAPI callbacks do to a request: the [`Handler`] the `ffi`
//! layer calls, implemented for [`RequestCtx`], and every `HSE_REQ_*`
//! handler, each code in exactly one function, grouped by concern:
//!
//! - [`headers`]: `SEND_RESPONSE_HEADER`, `SEND_RESPONSE_HEADER_EX`,
//!   `SEND_URL_REDIRECT_RESP`, `SEND_URL`, `SEND_CUSTOM_ERROR`;
//! - [`io`]: `WriteClient` (with `HSE_IO_ASYNC`), `ASYNC_READ_CLIENT`,
//!   `IO_COMPLETION`, `SET_FLUSH_FLAG`;
//! - [`files`]: `TRANSMIT_FILE`, `VECTOR_SEND`;
//! - [`connection`]: `IS_KEEP_CONN`, `IS_CONNECTED`, `CLOSE_CONNECTION`,
//!   `ABORTIVE_CLOSE`;
//! - [`mapping`]: `MAP_URL_TO_PATH`, `MAP_URL_TO_PATH_EX`;
//! - [`session`]: `DONE_WITH_SESSION`, `APPEND_LOG_PARAMETER`;
//! - [`async_io`]: running an operation on the I/O threads, then the
//!   extension's completion routine;
//! - here: every other code is refused ([`unsupported`]).

mod async_io;
mod connection;
mod files;
mod headers;
mod io;
mod mapping;
mod session;

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use windows_sys::Win32::Foundation::ERROR_INVALID_PARAMETER;

use crate::ffi::{Handler, SupportRequest, request_name};
use crate::request::RequestCtx;

impl Handler for RequestCtx {
    fn id(&self) -> usize {
        self.id
    }

    fn traced(&self) -> bool {
        self.shared.cfg.trace_callbacks
    }

    fn server_variable(&self, name: &[u8]) -> Option<Cow<'_, [u8]>> {
        self.info.get(name).ok()
    }

    fn read_client(&self, buf: &mut [u8]) -> Result<usize, u32> {
        self.read_body(buf)
    }

    fn write_client(self: Arc<Self>, data: &[u8], flags: u32) -> Result<(), u32> {
        io::write_client(&self, data, flags)
    }

    fn support_function(self: Arc<Self>, request: SupportRequest<'_>) -> Result<(), u32> {
        use SupportRequest as R;
        let ctx = &self;
        match request {
            R::SendResponseHeader { status, headers } => {
                headers::send_response_header(ctx, status, headers, true)
            }
            R::SendResponseHeaderEx {
                status,
                headers,
                keep_conn,
            } => headers::send_response_header(ctx, status, headers, keep_conn),
            R::SendUrlRedirectResp { url } | R::SendUrl { url } => headers::redirect(ctx, url),
            R::SendCustomError {
                status,
                sub_error,
                async_,
            } => headers::send_custom_error(ctx, status, sub_error, async_),
            R::AsyncReadClient { buf, flags } => io::async_read_client(ctx, buf, flags),
            R::IoCompletion { completion } => io::io_completion(ctx, completion),
            R::SetFlushFlag { on } => io::set_flush_flag(ctx, on),
            R::TransmitFile(t) => files::transmit_file(ctx, t),
            R::VectorSend(v) => files::vector_send(ctx, v),
            R::IsKeepConn { out } => connection::is_keep_conn(ctx, out),
            R::IsConnected { out } => connection::is_connected(ctx, out),
            R::CloseConnection => connection::close_connection(ctx),
            R::AbortiveClose => connection::abortive_close(ctx),
            R::MapUrlToPath { url, out } => mapping::map_url_to_path(ctx, &url, out),
            R::MapUrlToPathEx { url, info, size } => {
                mapping::map_url_to_path_ex(ctx, &url, info, size)
            }
            R::DoneWithSession { status } => session::done_with_session(ctx, status),
            R::AppendLogParameter { param } => session::append_log_parameter(ctx, param),
            R::Unsupported { code } => unsupported(code),
        }
    }
}

/// Any code the host does not implement: `ERROR_INVALID_PARAMETER`, and the
/// code logged once per process.
fn unsupported(code: u32) -> Result<(), u32> {
    static SEEN: Mutex<Option<HashSet<u32>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if seen.get_or_insert_with(HashSet::new).insert(code) {
        tracing::warn!(
            code,
            name = request_name(code),
            "unsupported ServerSupportFunction request; returning ERROR_INVALID_PARAMETER"
        );
    }
    Err(ERROR_INVALID_PARAMETER)
}
