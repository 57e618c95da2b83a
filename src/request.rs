//! One request's life: the body the extension reads, the response it
//! writes, and the bookkeeping that ends it.
//!
//! A [`RequestCtx`] is shared between the tokio task that serves the
//! connection and the OS threads that run the extension. Everything the ISAPI
//! callbacks do to a request is a method here; the `ffi` module only turns raw
//! pointers into these calls.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Response, StatusCode, Version, header};
use http_body::{Body, Frame, SizeHint};
use tokio::sync::{mpsc, oneshot};

use crate::body::{BodyError, BodyReader};
use crate::conn::ConnSignals;
use crate::extension::Extension;
use crate::ffi::{self, Completion, EcbCell};
use crate::response::{self, ChunkDecoder, Head};
use crate::shared::Shared;
use crate::vars::{RequestInfo, SERVER_SOFTWARE};

/// Win32 error codes the host reports through `errno` / `SetLastError`.
pub(crate) mod win32 {
    /// The request body is malformed or over the limit.
    pub(crate) const ERROR_INVALID_DATA: u32 = 13;
    /// The client went away.
    pub(crate) const ERROR_NETNAME_DELETED: u32 = 64;
    /// A bad argument, an unsupported request, or a call in the wrong state.
    pub(crate) const ERROR_INVALID_PARAMETER: u32 = 87;
    /// The buffer is too small; the size needed was written back.
    pub(crate) const ERROR_INSUFFICIENT_BUFFER: u32 = 122;
    /// No such server variable.
    pub(crate) const ERROR_INVALID_INDEX: u32 = 1413;
}

/// The response body hyper streams to the client.
pub(crate) enum HostBody {
    /// A response the host made itself.
    Full(Option<Bytes>),
    /// The extension's body, fed through a bounded channel.
    Stream(StreamBody),
}

/// The receiving half of an extension's response body.
pub(crate) struct StreamBody {
    rx: mpsc::Receiver<Bytes>,
    outcome: Arc<Outcome>,
    flushed: bool,
}

/// How an extension's response body ended, readable without a lock.
#[derive(Default)]
pub(crate) struct Outcome {
    state: AtomicU8,
}

const OUTCOME_OPEN: u8 = 0;
const OUTCOME_COMPLETE: u8 = 1;
const OUTCOME_BROKEN: u8 = 2;
const OUTCOME_ABORTED: u8 = 3;

/// A body that ended short, or an abortive close: hyper then closes the connection.
#[derive(Debug, thiserror::Error)]
#[error("response body aborted")]
pub(crate) struct Aborted;

impl Body for HostBody {
    type Data = Bytes;
    type Error = Aborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Aborted>>> {
        match self.get_mut() {
            HostBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            HostBody::Stream(s) => {
                // An abortive close drops what is queued; a body that ended
                // short still delivers what was written before the close.
                if s.outcome.state.load(Ordering::Acquire) == OUTCOME_ABORTED {
                    return Poll::Ready(Some(Err(Aborted)));
                }
                match s.rx.poll_recv(cx) {
                    Poll::Ready(Some(b)) => Poll::Ready(Some(Ok(Frame::data(b)))),
                    Poll::Ready(None) => match s.outcome.state.load(Ordering::Acquire) {
                        OUTCOME_COMPLETE => Poll::Ready(None),
                        // hyper drops unflushed bytes when a body fails: give
                        // it one turn to flush what was written, then fail.
                        _ if !s.flushed => {
                            s.flushed = true;
                            cx.waker().wake_by_ref();
                            Poll::Pending
                        }
                        _ => Poll::Ready(Some(Err(Aborted))),
                    },
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, HostBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            HostBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            HostBody::Full(None) => SizeHint::with_exact(0),
            HostBody::Stream(_) => SizeHint::default(),
        }
    }
}

/// A response the host writes itself (errors, redirects).
pub(crate) fn simple_response(
    status: StatusCode,
    extra: &[(header::HeaderName, &str)],
    body: &str,
) -> Response<HostBody> {
    let mut resp = Response::new(HostBody::Full(Some(Bytes::copy_from_slice(
        body.as_bytes(),
    ))));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::SERVER, HeaderValue::from_static(SERVER_SOFTWARE));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    if !body.is_empty() {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    for (n, v) in extra {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(n.clone(), v);
        }
    }
    resp
}

/// An HTML error page with a `Connection: close` when asked.
pub(crate) fn error_page(status: StatusCode, close: bool) -> Response<HostBody> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let title = format!("{} {reason}", status.as_u16());
    let body = error_html(&title, &title);
    let close_hdr = [(header::CONNECTION, "close")];
    simple_response(status, if close { &close_hdr } else { &[] }, &body)
}

/// The HTML of the host's error pages.
pub(crate) fn error_html(title: &str, heading: &str) -> String {
    format!(
        "<!DOCTYPE html><html><head><title>{title}</title></head><body><h1>{heading}</h1></body></html>\n"
    )
}

/// How the response body is framed on its way out.
#[derive(Debug)]
enum Framing {
    /// Headers not sent yet.
    Unsent,
    /// A declared length; the bytes still owed.
    Length(u64),
    /// The extension frames its own chunks.
    Chunked(ChunkDecoder),
    /// No length: the connection closes at the end.
    Close,
    /// HEAD, 204, 304: whatever is written is dropped.
    Discard,
}

/// The writing side of a request.
struct Responder {
    head_tx: Option<oneshot::Sender<Response<HostBody>>>,
    /// The streaming channel, made when a body does not go out in one piece.
    body_tx: Option<mpsc::Sender<Bytes>>,
    /// A head not handed to hyper yet: it waits for the first body bytes,
    /// so that a response complete in one write goes out as one piece
    /// without the streaming channel.
    pending: Option<Response<()>>,
    /// The extension's Content-Length, for the pending head of a
    /// `Framing::Length` body: it goes into the head only for a streamed
    /// body; for a whole body hyper writes it from the exact size.
    length_header: Option<u64>,
    framing: Framing,
    status: u16,
    /// Body bytes sent to the client.
    sent: u64,
    surplus_logged: bool,
}

/// Log fields collected over the request.
#[derive(Default)]
struct LogState {
    params: String,
}

/// One request, as the extension sees it.
pub(crate) struct RequestCtx {
    pub(crate) id: usize,
    pub(crate) info: RequestInfo,
    pub(crate) ext: Arc<Extension>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) conn: Arc<ConnSignals>,
    pub(crate) ecb: EcbCell,
    body: Mutex<BodyReader>,
    resp: Mutex<Responder>,
    outcome: Arc<Outcome>,
    completion: Mutex<Option<Completion>>,
    log: Mutex<LogState>,
    finished: AtomicBool,
    /// An asynchronous operation is outstanding.
    async_busy: AtomicBool,
    /// Did the client allow keep-alive?
    pub(crate) client_keep_alive: bool,
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
    pub(crate) ctx: Arc<RequestCtx>,
    pub(crate) head_rx: oneshot::Receiver<Response<HostBody>>,
}

/// Parameters of [`RequestCtx::start`].
pub(crate) struct RequestParts {
    pub(crate) id: usize,
    pub(crate) info: RequestInfo,
    pub(crate) ext: Arc<Extension>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) conn: Arc<ConnSignals>,
    pub(crate) body: BodyReader,
    pub(crate) preload: Vec<u8>,
    pub(crate) total_bytes: u32,
    pub(crate) client_keep_alive: bool,
}

impl RequestCtx {
    /// Builds the context and its ECB; the head arrives on the receiver.
    pub(crate) fn start(p: RequestParts) -> NewRequest {
        let (head_tx, head_rx) = oneshot::channel();
        let outcome = Arc::new(Outcome::default());
        let head_request = p.info.method == http::Method::HEAD;
        let ecb = EcbCell::new(p.id, &p.info, p.preload, p.total_bytes);
        let started =
            (p.shared.cfg.access_log != crate::config::AccessLogFormat::Off).then(Instant::now);
        let ctx = Arc::new(RequestCtx {
            id: p.id,
            info: p.info,
            ext: p.ext,
            shared: p.shared,
            conn: p.conn,
            ecb,
            body: Mutex::new(p.body),
            resp: Mutex::new(Responder {
                head_tx: Some(head_tx),
                body_tx: None,
                pending: None,
                length_header: None,
                framing: Framing::Unsent,
                status: 0,
                sent: 0,
                surplus_logged: false,
            }),
            outcome,
            completion: Mutex::new(None),
            log: Mutex::new(LogState::default()),
            finished: AtomicBool::new(false),
            async_busy: AtomicBool::new(false),
            client_keep_alive: p.client_keep_alive,
            head_request,
            started,
            body_error: Mutex::new(None),
        });
        NewRequest { ctx, head_rx }
    }
}

impl RequestCtx {
    /// `ReadClient`: blocks until some body bytes arrive; `Ok(0)` at the end.
    pub(crate) fn read_client(&self, buf: &mut [u8]) -> Result<usize, u32> {
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

    /// `WriteClient`: body bytes, framed as the headers declared. Headers not
    /// sent yet are taken from the data if it starts with a header block,
    /// otherwise a bare `200` with a close-delimited body goes out.
    pub(crate) fn write_client(&self, data: &[u8]) -> Result<(), u32> {
        let mut r = lock(&self.resp);
        let mut data = data;
        if matches!(r.framing, Framing::Unsent) {
            let head = match response::leading_header_block(data) {
                Some((lines, end)) => {
                    let head = response::build_head(None, lines);
                    data = &data[end..];
                    head
                }
                None => {
                    tracing::warn!(
                        request = self.id,
                        "WriteClient before any headers: sending 200 with a close-delimited body"
                    );
                    response::build_head(None, std::iter::empty())
                }
            };
            let head = head.map_err(|e| self.bad_head(e))?;
            self.start_response(&mut r, head, true);
        }
        self.write_body(&mut r, data)
    }

    /// `SEND_RESPONSE_HEADER(_EX)`: `headers` may carry body bytes after the blank line.
    pub(crate) fn send_headers(
        &self,
        status: Option<&[u8]>,
        headers: &[u8],
        keep_conn: bool,
    ) -> Result<(), u32> {
        let headers = response::trim_nul(headers);
        let mut lines = response::HeaderLines::new(headers);
        let head = response::build_head(status, &mut lines).map_err(|e| self.bad_head(e))?;
        let end = lines.end();
        let mut r = lock(&self.resp);
        if !matches!(r.framing, Framing::Unsent) {
            tracing::warn!(
                request = self.id,
                "extension sent response headers twice; ignoring the second set"
            );
            return Err(win32::ERROR_INVALID_PARAMETER);
        }
        self.start_response(&mut r, head, keep_conn);
        match end {
            Some(end) if end < headers.len() => self.write_body(&mut r, &headers[end..]),
            _ => Ok(()),
        }
    }

    fn bad_head(&self, e: response::HeadError) -> u32 {
        tracing::error!(request = self.id, error = %e, "extension sent an invalid response head");
        win32::ERROR_INVALID_PARAMETER
    }

    /// Sends a complete response the host composes (redirects, custom errors).
    pub(crate) fn send_simple(
        &self,
        status: StatusCode,
        extra: &[(&str, &str)],
        body: &str,
    ) -> Result<(), u32> {
        let mut headers = String::new();
        for (n, v) in extra {
            headers.push_str(&format!("{n}: {v}\r\n"));
        }
        headers.push_str(&format!(
            "Content-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
        self.send_headers(Some(status.as_str().as_bytes()), headers.as_bytes(), true)
    }

    fn start_response(&self, r: &mut Responder, head: Head, keep_conn: bool) {
        let framing = if response::bodiless(head.status, self.head_request) {
            Framing::Discard
        } else if let Some(n) = head.content_length {
            Framing::Length(n)
        } else if head.chunked {
            Framing::Chunked(ChunkDecoder::default())
        } else {
            Framing::Close
        };
        // An HTTP/1.0 client gets a self-chunked body de-chunked and
        // close-delimited: it cannot be kept alive either.
        let unframed_for_client =
            matches!(framing, Framing::Chunked(_)) && self.info.version == Version::HTTP_10;
        let close = head.close
            || !keep_conn
            || matches!(framing, Framing::Close)
            || unframed_for_client
            || self.conn.close_requested();
        let mut resp = Response::new(());
        *resp.status_mut() = head.status;
        if let Some(reason) = head
            .reason
            .and_then(|r| hyper::ext::ReasonPhrase::try_from(r.into_bytes()).ok())
        {
            resp.extensions_mut().insert(reason);
        }
        *resp.headers_mut() = head.headers;
        let h = resp.headers_mut();
        h.entry(header::SERVER)
            .or_insert(HeaderValue::from_static(SERVER_SOFTWARE));
        if let Some(n) = head.content_length {
            if matches!(framing, Framing::Length(_)) {
                r.length_header = Some(n);
            } else {
                h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
        }
        if close {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if matches!(framing, Framing::Close) || unframed_for_client {
            // hyper frames a body of unknown length with chunks on HTTP/1.1;
            // IIS sends such a body close-delimited, and hyper does that only
            // for an HTTP/1.0 response (which also keeps hyper from adding
            // `keep-alive` for a 1.0 client).
            *resp.version_mut() = Version::HTTP_10;
        }
        r.status = head.status.as_u16();
        r.framing = framing;
        r.pending = Some(resp);
    }

    /// Hands the pending head to hyper with `body`, or with the stream when
    /// `body` is `None`.
    fn flush_head(&self, r: &mut Responder, body: Option<Bytes>) {
        let Some(mut resp) = r.pending.take() else {
            return;
        };
        let length = r.length_header.take();
        let body = match body {
            // The whole declared body: hyper writes its length.
            Some(b) => HostBody::Full(Some(b)),
            None => {
                if let Some(n) = length {
                    resp.headers_mut()
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
                }
                let (tx, rx) = mpsc::channel(8);
                r.body_tx = Some(tx);
                HostBody::Stream(StreamBody {
                    rx,
                    outcome: self.outcome.clone(),
                    flushed: false,
                })
            }
        };
        if let Some(tx) = r.head_tx.take() {
            // The receiver is gone only if the client is: writes then fail.
            let _ = tx.send(resp.map(|()| body));
        }
    }

    fn write_body(&self, r: &mut Responder, data: &[u8]) -> Result<(), u32> {
        let bytes = match &mut r.framing {
            Framing::Unsent => unreachable!("headers are sent before the body"),
            Framing::Discard => return Ok(()),
            Framing::Close => Bytes::copy_from_slice(data),
            Framing::Length(left) => {
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(data.len());
                if n < data.len() && !r.surplus_logged {
                    r.surplus_logged = true;
                    tracing::warn!(
                        request = self.id,
                        surplus = data.len() - n,
                        "extension wrote past its Content-Length; dropping the surplus"
                    );
                }
                *left -= n as u64;
                Bytes::copy_from_slice(&data[..n])
            }
            Framing::Chunked(dec) => {
                let mut out = BytesMut::with_capacity(data.len());
                match dec.feed(data, &mut out) {
                    Ok(0) => {}
                    Ok(surplus) if !r.surplus_logged => {
                        r.surplus_logged = true;
                        tracing::warn!(
                            request = self.id,
                            surplus,
                            "extension wrote past its final chunk; dropping the surplus"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(request = self.id, error = %e, "closing the connection");
                        self.break_response(r);
                        return Err(win32::ERROR_INVALID_PARAMETER);
                    }
                }
                out.freeze()
            }
        };
        if bytes.is_empty() {
            return Ok(());
        }
        let len = bytes.len() as u64;
        if r.pending.is_some() {
            if matches!(r.framing, Framing::Length(0)) {
                // The whole declared body in one write: no streaming needed.
                self.flush_head(r, Some(bytes));
                r.sent += len;
                return Ok(());
            }
            self.flush_head(r, None);
        }
        let Some(tx) = r.body_tx.as_ref() else {
            return Err(win32::ERROR_INVALID_PARAMETER);
        };
        let sent = match tx.try_send(bytes) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(bytes)) => {
                // Backpressure: the client reads slower than the extension writes.
                self.conn
                    .waiting_on_client(|| tx.blocking_send(bytes))
                    .map_err(drop)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
        };
        if sent.is_err() {
            return Err(win32::ERROR_NETNAME_DELETED);
        }
        r.sent += len;
        Ok(())
    }

    fn break_response(&self, r: &mut Responder) {
        self.outcome.state.store(OUTCOME_BROKEN, Ordering::Release);
        self.conn.request_close();
        self.flush_head(r, None);
        r.body_tx = None;
    }

    /// `HSE_REQ_ABORTIVE_CLOSE`: the connection is dropped at once.
    pub(crate) fn abort(&self) {
        self.outcome.state.store(OUTCOME_ABORTED, Ordering::Release);
        self.conn.hard_abort();
        // A writer blocked on a full channel holds the lock; the body then
        // sees the broken state the next time hyper polls it.
        if let Ok(mut r) = self.resp.try_lock() {
            r.pending = None;
            r.head_tx = None;
            r.body_tx = None;
        }
    }

    /// `HSE_REQ_IS_CONNECTED`.
    pub(crate) fn is_connected(&self) -> bool {
        !self.conn.is_gone()
    }

    /// `HSE_REQ_IS_KEEP_CONN`: would the connection stay open if the response is well framed?
    pub(crate) fn is_keep_conn(&self) -> bool {
        self.client_keep_alive && !self.conn.close_requested()
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

    /// `HSE_REQ_IO_COMPLETION`: sets or clears the completion routine.
    pub(crate) fn set_completion(&self, c: Option<Completion>) {
        *lock(&self.completion) = c;
    }

    /// The completion routine in force, if any.
    pub(crate) fn completion(&self) -> Option<Completion> {
        *lock(&self.completion)
    }

    /// `HSE_APPEND_LOG_PARAMETER`.
    pub(crate) fn append_log(&self, param: &str) {
        let mut log = lock(&self.log);
        if !log.params.is_empty() {
            log.params.push('&');
        }
        log.params.push_str(param);
    }

    /// Ends the request: after `HttpExtensionProc` returns anything but
    /// `PENDING`, or at `DONE_WITH_SESSION`. Only the first call counts.
    pub(crate) fn finish(&self, hse_status: u32) {
        if self.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        let error = hse_status == ffi::HSE_STATUS_ERROR;
        let mut r = lock(&self.resp);
        let complete = match &r.framing {
            Framing::Unsent => {
                let resp = if error {
                    match *lock(&self.body_error) {
                        Some(e) => error_page(e.status(), true),
                        None => {
                            tracing::error!(
                                request = self.id,
                                "extension returned HSE_STATUS_ERROR before sending a response"
                            );
                            error_page(StatusCode::INTERNAL_SERVER_ERROR, false)
                        }
                    }
                } else {
                    let code = self.ecb.http_status_code();
                    let status = StatusCode::from_u16(code as u16)
                        .ok()
                        .filter(|s| s.as_u16() >= 200)
                        .unwrap_or(StatusCode::OK);
                    let close = [(header::CONNECTION, "close")];
                    simple_response(
                        status,
                        if self.conn.close_requested() {
                            &close
                        } else {
                            &[]
                        },
                        "",
                    )
                };
                r.status = resp.status().as_u16();
                if let Some(tx) = r.head_tx.take() {
                    let _ = tx.send(resp);
                }
                true
            }
            Framing::Length(0) | Framing::Close | Framing::Discard => true,
            Framing::Length(left) => {
                tracing::warn!(
                    request = self.id,
                    missing = left,
                    "extension ended short of its Content-Length; closing the connection"
                );
                false
            }
            Framing::Chunked(d) if d.is_done() => true,
            Framing::Chunked(_) => {
                tracing::warn!(
                    request = self.id,
                    "extension ended without the final chunk; closing the connection"
                );
                false
            }
        };
        if error && !matches!(r.framing, Framing::Unsent) {
            // HSE_STATUS_ERROR after headers: IIS closes the connection.
            if let Some(head) = r.pending.as_mut() {
                head.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            self.conn.request_close();
        }
        if complete && self.outcome.state.load(Ordering::Acquire) == OUTCOME_OPEN {
            self.outcome
                .state
                .store(OUTCOME_COMPLETE, Ordering::Release);
        } else {
            let _ = self.outcome.state.compare_exchange(
                OUTCOME_OPEN,
                OUTCOME_BROKEN,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            self.conn.request_close();
        }
        let ended_empty = complete && matches!(r.framing, Framing::Length(0) | Framing::Discard);
        if ended_empty {
            // An empty body hyper sees as ended: it keeps the extension's
            // Content-Length on HEAD, 204 and 304 and sends no bytes.
            if let Some(resp) = r.pending.take() {
                if let Some(tx) = r.head_tx.take() {
                    let _ = tx.send(resp.map(|()| HostBody::Full(None)));
                }
            }
        }
        self.flush_head(&mut r, None);
        r.body_tx = None;
        let (status, sent) = (r.status, r.sent);
        drop(r);
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
        crate::accesslog::emit(
            self.shared.cfg.access_log,
            &crate::accesslog::Entry {
                info: &self.info,
                status,
                sent,
                log_data: self.ecb.log_data(),
                params: std::mem::take(&mut lock(&self.log).params),
                elapsed: started.elapsed(),
            },
        );
    }
}
