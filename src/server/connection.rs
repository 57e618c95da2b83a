//! One connection's task: hyper's HTTP/1 connection over a socket that
//! records its activity, woken by the connection's signals.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Body as _;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::dispatch::{begin, respond};
use super::routing::App;
use crate::accesslog::PendingLine;
use crate::chunk::{BodyFraming, Framing};
use crate::config::AccessLogFormat;
use crate::conn::ConnSignals;
use crate::request::Aborted;
use crate::vars::Endpoints;

/// Records I/O activity for the keep-alive idle timeout, and shows the
/// client's bytes to the connection's strict request framing before hyper
/// reads them.
struct ActivityIo {
    inner: TcpStream,
    signals: Arc<ConnSignals>,
    framing: Arc<Framing>,
    /// The request line of a head in progress, for the access log (none
    /// when it is off).
    pending: Option<Arc<PendingLine>>,
}

impl AsyncRead for ActivityIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let between = self.signals.between_requests();
            if let Some(pending) = &self.pending {
                pending.received(&buf.filled()[before..], between);
            }
            self.signals.received();
            if self.framing.received(&buf.filled()[before..]) {
                self.signals.request_close();
            }
        }
        r
    }
}

impl AsyncWrite for ActivityIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.signals.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.signals.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves one connection with hyper until it ends, is closed or is
/// aborted; the client is then gone.
pub(super) async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
    app: Arc<App>,
    signals: Arc<ConnSignals>,
) {
    let cfg = &app.shared.cfg;
    let framing = Arc::new(Framing::default());
    let pending =
        (cfg.access_log != AccessLogFormat::Off).then(|| Arc::new(PendingLine::default()));
    let io = TokioIo::new(ActivityIo {
        inner: stream,
        signals: signals.clone(),
        framing: framing.clone(),
        pending: pending.clone(),
    });
    let ends = Endpoints::new(remote, local);
    let svc = {
        let (app, signals, ends, pending) =
            (app.clone(), signals.clone(), ends.clone(), pending.clone());
        service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            if let Some(pending) = &pending {
                pending.taken();
            }
            // hyper frames the body: a known length, or chunked.
            let body = match req.body().size_hint().exact() {
                Some(n) => BodyFraming::Length(n),
                None => BodyFraming::Chunked,
            };
            // After a request with invalid framing, nothing more is served.
            let begun = framing.begin_request(body).ok().map(|check| {
                if let Some(check) = check {
                    req.extensions_mut().insert(check);
                }
                begin(req, &app, &signals, &ends)
            });
            let signals = signals.clone();
            async move {
                match begun {
                    Some(begun) => respond(begun, signals).await,
                    None => Err(Aborted),
                }
            }
        })
    };
    let conn = http1::Builder::new()
        // The sweeper enforces `--header-timeout`: hyper's own timer costs
        // a timer-wheel entry per request.
        .header_read_timeout(None::<Duration>)
        // hyper's read buffer is also its limit on the head; body frames are
        // cut to it too, so it is kept at 64 KiB (16 KiB frames made a large
        // upload four times as many crossings to the extension thread), and
        // `--max-header` is checked on the parsed head (`HeadFacts::size`).
        .max_buf_size(cfg.max_header.max(HYPER_BUF))
        .keep_alive(true)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    let mut closing = false;
    let mut registered = None;
    let mut linger: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let ended = std::future::poll_fn(|cx| {
        signals.register_task(&mut registered, cx.waker());
        if signals.is_aborted() {
            return Poll::Ready(None);
        }
        // Draining, a connection between requests lingers for one more
        // (which `begin` marks to close, before its response head); one
        // with a response under way lets it finish as it began.
        if !closing
            && (signals.close_requested()
                || (signals.drain_requested()
                    && signals.between_requests()
                    && linger
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(DRAIN_LINGER)))
                        .as_mut()
                        .poll(cx)
                        .is_ready()))
        {
            closing = true;
            conn.as_mut().graceful_shutdown();
        }
        conn.as_mut().poll(cx).map(Some)
    })
    .await;
    match ended {
        None => {
            tracing::debug!(%remote, "connection aborted");
            // Aborted while a head was coming: the header timeout. A head
            // that got as far as its request line has a 408 in the log.
            if let Some((line, true)) = pending.as_ref().and_then(|p| p.unserved()) {
                crate::accesslog::unparsed(&ends, &line, 408);
            }
        }
        Some(Err(e)) => {
            tracing::debug!(%remote, error = %e, "connection ended with an error");
            if let Some(status) = refused_with(&e) {
                let line = pending
                    .as_ref()
                    .and_then(|p| p.unserved())
                    .map(|(line, _)| line)
                    .unwrap_or_default();
                crate::accesslog::unparsed(&ends, &line, status);
            }
        }
        Some(Ok(())) => {}
    }
    signals.mark_gone();
}

/// The status hyper answered a head it could not parse with, if it sent one.
fn refused_with(e: &hyper::Error) -> Option<u16> {
    if e.is_parse_too_large() {
        // hyper's 414 and 431 share the predicate; its message tells them apart.
        Some(if e.to_string().contains("URI too long") {
            414
        } else {
            431
        })
    } else if e.is_parse() && !e.is_parse_version_h2() {
        Some(400)
    } else {
        None
    }
}

/// How long a draining connection between requests waits for one more
/// (answered with `Connection: close`) before it closes.
const DRAIN_LINGER: Duration = Duration::from_millis(500);

/// hyper's read buffer: the largest body frame, and the largest head hyper
/// parses (a larger one gets hyper's own 431).
const HYPER_BUF: usize = 64 * 1024;
