//! One request's life: the body the extension reads, the response it
//! writes, and the bookkeeping that ends it.
//!
//! A [`RequestCtx`] is shared between the tokio task that serves the
//! connection and the OS threads that run the extension. It holds the
//! request's ECB, its body reader and response writer, and reaches the
//! connection and the server only through what sits below it
//! ([`ConnSignals`], [`Shared`]). The `HSE_REQ_*` handlers, in `crate::ssf`,
//! are built from its methods.
//!
//! - [`hyper_body`]: the response body hyper streams;
//! - [`error_page`](mod@error_page): the responses the host writes itself;
//! - [`writer`]: the response writer and its framing.

mod error_page;
mod hyper_body;
mod writer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use http::Response;
use tokio::sync::oneshot;

use crate::body::{BodyError, BodyReader};
use crate::config::AccessLogFormat;
use crate::conn::ConnSignals;
use crate::ffi::{self, Completion, EcbCell, EcbStrings};
use crate::shared::Shared;
use crate::vars::RequestInfo;

pub(crate) use error_page::{error_html, error_page};
use hyper_body::Outcome;
pub(crate) use hyper_body::{Aborted, HostBody};
use writer::Responder;

/// One request, as the extension sees it.
pub(crate) struct RequestCtx {
    /// Its id, which is the ECB's `HCONN`.
    pub(crate) id: usize,
    /// What the server variables are made from.
    pub(crate) info: RequestInfo,
    /// The server-wide state.
    pub(crate) shared: Arc<Shared>,
    /// Its connection.
    pub(crate) conn: Arc<ConnSignals>,
    /// The ECB the extension gets.
    pub(crate) ecb: EcbCell,
    /// Did the client allow keep-alive?
    pub(crate) client_keep_alive: bool,
    body: Mutex<BodyReader>,
    resp: Mutex<Responder>,
    outcome: Arc<Outcome>,
    completion: Mutex<Option<Completion>>,
    /// `HSE_APPEND_LOG_PARAMETER` values, joined with `&`.
    log_params: Mutex<String>,
    finished: AtomicBool,
    /// An asynchronous operation is outstanding.
    async_busy: AtomicBool,
    head_request: bool,
    /// When the request started, for the access log; `None` without one
    /// (no clock read).
    started: Option<Instant>,
    body_error: Mutex<Option<BodyError>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while a lock was held is already logged; the data stays usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a caller of [`RequestCtx::start`] gets back: the context and the
/// future response head.
pub(crate) struct NewRequest {
    /// The request.
    pub(crate) ctx: Arc<RequestCtx>,
    /// Where its response head arrives.
    pub(crate) head_rx: oneshot::Receiver<Response<HostBody>>,
}

/// Parameters of [`RequestCtx::start`].
pub(crate) struct RequestParts {
    /// The request's id (from [`ffi::next_id`]).
    pub(crate) id: usize,
    /// The request as the server variables see it.
    pub(crate) info: RequestInfo,
    /// The server-wide state.
    pub(crate) shared: Arc<Shared>,
    /// The connection's signals.
    pub(crate) conn: Arc<ConnSignals>,
    /// The body still to read after the preload.
    pub(crate) body: BodyReader,
    /// The read-ahead body, for `lpbData`.
    pub(crate) preload: Vec<u8>,
    /// `cbTotalBytes`.
    pub(crate) total_bytes: u32,
    /// Did the client allow keep-alive?
    pub(crate) client_keep_alive: bool,
}

impl RequestCtx {
    /// Builds the context and its ECB; the head arrives on the receiver.
    pub(crate) fn start(p: RequestParts) -> NewRequest {
        let (head_tx, head_rx) = oneshot::channel();
        let info = &p.info;
        let content_type = info
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        let ecb = EcbCell::new(
            p.id,
            &EcbStrings {
                method: info.method.as_str().as_bytes(),
                query: info.query().as_bytes(),
                path_info: &info.url,
                content_type,
                path_translated: &|out| info.push_path_translated(out),
                path_translated_len: info.physical_path.as_os_str().len() + info.url.len(),
            },
            p.preload,
            p.total_bytes,
        );
        let head_request = p.info.method == http::Method::HEAD;
        let started = (p.shared.cfg.access_log != AccessLogFormat::Off).then(Instant::now);
        let ctx = Arc::new(RequestCtx {
            id: p.id,
            info: p.info,
            shared: p.shared,
            conn: p.conn,
            ecb,
            client_keep_alive: p.client_keep_alive,
            body: Mutex::new(p.body),
            resp: Mutex::new(Responder::new(head_tx)),
            outcome: Arc::new(Outcome::default()),
            completion: Mutex::new(None),
            log_params: Mutex::new(String::new()),
            finished: AtomicBool::new(false),
            async_busy: AtomicBool::new(false),
            head_request,
            started,
            body_error: Mutex::new(None),
        });
        NewRequest { ctx, head_rx }
    }

    /// Reads the body (`ReadClient`): blocks until some bytes arrive;
    /// `Ok(0)` at the end.
    pub(crate) fn read_body(&self, buf: &mut [u8]) -> Result<usize, u32> {
        let mut body = lock(&self.body);
        let rt = &self.shared.rt;
        let _transfer = crate::pool::Transfer::begin(buf.len());
        self.conn
            .waiting_on_client(|| body.read(rt, buf))
            .map_err(|e| {
                *lock(&self.body_error) = Some(e);
                if e == BodyError::Disconnected {
                    self.conn.mark_gone();
                }
                tracing::warn!(request = self.id, error = ?e, "ReadClient failed");
                e.win32()
            })
    }

    /// Claims the request's single slot for asynchronous I/O.
    pub(crate) fn begin_async(&self) -> bool {
        !self.async_busy.swap(true, Ordering::AcqRel)
    }

    /// Frees the slot, before the completion runs (it may start the next operation).
    pub(crate) fn end_async(&self) {
        self.async_busy.store(false, Ordering::Release);
    }

    /// Has the request ended (`DONE_WITH_SESSION` or a non-pending return)?
    pub(crate) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Sets or clears the completion routine.
    pub(crate) fn set_completion(&self, c: Option<Completion>) {
        *lock(&self.completion) = c;
    }

    /// The completion routine in force, if any.
    pub(crate) fn completion(&self) -> Option<Completion> {
        *lock(&self.completion)
    }

    /// The parameters the extension added to the log line.
    pub(crate) fn log_params(&self) -> MutexGuard<'_, String> {
        lock(&self.log_params)
    }

    /// Ends the request: after `HttpExtensionProc` returns anything but
    /// `PENDING`, or at `DONE_WITH_SESSION`. Only the first call counts.
    pub(crate) fn finish(&self, hse_status: u32) {
        if self.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        let error = hse_status == windows_sys::Win32::System::Iis::HSE_STATUS_ERROR;
        let (status, sent) = self.end_response(error);
        self.access_log(status, sent);
        ffi::unregister(self.id);
        self.conn.request_ended();
        self.shared.request_done();
    }

    fn access_log(&self, status: u16, sent: u64) {
        // Set exactly when there is an access log.
        let Some(started) = self.started else {
            return;
        };
        let i = &self.info;
        let (params, log_data) = (std::mem::take(&mut *self.log_params()), self.ecb.log_data());
        crate::accesslog::write(&crate::accesslog::Entry {
            ends: &i.ends,
            request: crate::accesslog::Request::Parsed(crate::accesslog::Parsed {
                method: i.method.as_str(),
                target: i.raw_target(),
                stem: &i.url,
                query: i.query(),
                version: i.version,
                headers: &i.headers,
            }),
            status,
            sent,
            extra: [&params, &log_data],
            win32: 0,
            elapsed: started.elapsed(),
        });
    }
}
