//! The response writer: the head and body an extension sends, framed as
//! IIS frames them, handed to hyper as one piece or through a bounded
//! channel.

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Response, StatusCode, Version, header};
use tokio::sync::{mpsc, oneshot};
use windows_sys::Win32::Foundation::{ERROR_INVALID_PARAMETER, ERROR_NETNAME_DELETED};

use super::error_page::{error_page, simple_response};
use super::hyper_body::{HostBody, StreamBody};
use super::{RequestCtx, lock};
use crate::response::{self, ChunkDecoder, Head};
use crate::vars::SERVER_SOFTWARE;

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
pub(super) struct Responder {
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

impl Responder {
    /// A writer whose head goes out on `head_tx`.
    pub(super) fn new(head_tx: oneshot::Sender<Response<HostBody>>) -> Self {
        Responder {
            head_tx: Some(head_tx),
            body_tx: None,
            pending: None,
            length_header: None,
            framing: Framing::Unsent,
            status: 0,
            sent: 0,
            surplus_logged: false,
        }
    }
}

impl RequestCtx {
    /// Writes body bytes, framed as the headers declared (`WriteClient`). Headers not
    /// sent yet are taken from the data if it starts with a header block,
    /// otherwise a bare `200` with a close-delimited body goes out.
    pub(crate) fn write(&self, data: &[u8]) -> Result<(), u32> {
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
            return Err(ERROR_INVALID_PARAMETER);
        }
        self.start_response(&mut r, head, keep_conn);
        match end {
            Some(end) if end < headers.len() => self.write_body(&mut r, &headers[end..]),
            _ => Ok(()),
        }
    }

    fn bad_head(&self, e: response::HeadError) -> u32 {
        tracing::error!(request = self.id, error = %e, "extension sent an invalid response head");
        ERROR_INVALID_PARAMETER
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
                HostBody::Stream(StreamBody::new(rx, self.outcome.clone()))
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
                        return Err(ERROR_INVALID_PARAMETER);
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
            return Err(ERROR_INVALID_PARAMETER);
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
            return Err(ERROR_NETNAME_DELETED);
        }
        r.sent += len;
        Ok(())
    }

    fn break_response(&self, r: &mut Responder) {
        self.outcome.break_off();
        self.conn.request_close();
        self.flush_head(r, None);
        r.body_tx = None;
    }

    /// Drops the response and the connection at once (an abortive close).
    pub(crate) fn abort(&self) {
        self.outcome.abort();
        self.conn.hard_abort();
        // A writer blocked on a full channel holds the lock; the body then
        // sees the broken state the next time hyper polls it.
        if let Ok(mut r) = self.resp.try_lock() {
            r.pending = None;
            r.head_tx = None;
            r.body_tx = None;
        }
    }

    /// Ends the response when the extension is done with the request
    /// (`error`: it returned `HSE_STATUS_ERROR`): a response never started
    /// is made now, one that ended short or broke closes the connection.
    /// Returns the status and the body bytes sent, for the access log.
    pub(super) fn end_response(&self, error: bool) -> (u16, u64) {
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
        if !self.outcome.end(complete) {
            self.conn.request_close();
        }
        let ended_empty = complete && matches!(r.framing, Framing::Length(0) | Framing::Discard);
        if ended_empty {
            // An empty body hyper sees as ended: it keeps the extension's
            // Content-Length on HEAD, 204 and 304 and sends no bytes.
            if let Some(resp) = r.pending.take()
                && let Some(tx) = r.head_tx.take()
            {
                let _ = tx.send(resp.map(|()| HostBody::Full(None)));
            }
        }
        self.flush_head(&mut r, None);
        r.body_tx = None;
        (r.status, r.sent)
    }
}
