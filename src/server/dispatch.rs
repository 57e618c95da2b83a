//! From hyper's request to the extension and back: admission (the head
//! checks, routing, the request limit), the body's read-ahead, the request's
//! context and ECB, the hand-off to an extension thread, and the response
//! head hyper waits for.

use std::pin::Pin;
use std::sync::Arc;

use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use windows_sys::Win32::System::Iis::HSE_STATUS_PENDING;

use super::head;
use super::routing::{App, Route};
use crate::body::BodyReader;
use crate::conn::ConnSignals;
use crate::ffi::{self, Extension};
use crate::request::{Aborted, HostBody, RequestCtx, RequestParts, error_page};
use crate::vars::{Endpoints, RequestInfo};

/// What [`begin`] made of a request.
pub(super) enum Begun {
    /// The host answers it itself.
    Answered(Response<HostBody>),
    /// Queued for an extension thread: its response head arrives here.
    Started(HeadReceiver),
    /// Its body's read-ahead comes first (boxed: its state would otherwise
    /// make the request future of every connection, which hyper keeps and
    /// moves for each request, several times larger).
    ReadAhead(Pin<Box<dyn Future<Output = Result<HeadReceiver, Response<HostBody>>> + Send>>),
    /// A static file (`crate::site::files`), answered on this task.
    Static(Pin<Box<dyn Future<Output = Response<HostBody>> + Send>>),
}

/// Where an extension's response head arrives.
type HeadReceiver = tokio::sync::oneshot::Receiver<Response<HostBody>>;

/// Takes a request from hyper: checks, routes and (unless its body is to be
/// read ahead) queues it, before the returned future is first polled.
pub(super) fn begin(
    req: Request<Incoming>,
    app: &Arc<App>,
    conn: &Arc<ConnSignals>,
    ends: &Arc<Endpoints>,
) -> Begun {
    conn.request_started();
    // The server drains: this response is the connection's last, and says
    // so (`Connection: close`) before the client sends another.
    if conn.drain_requested() {
        conn.request_close();
    }
    match admit(req, app, ends.clone()) {
        Err(begun) => begun,
        Ok(a) if a.read_ahead > 0 => {
            Begun::ReadAhead(Box::pin(a.read_ahead(app.clone(), conn.clone())))
        }
        Ok(a) => Begun::Started(a.start(app, conn, Vec::new())),
    }
}

/// The response to a request [`begin`] took.
pub(super) async fn respond(
    begun: Begun,
    conn: Arc<ConnSignals>,
) -> Result<Response<HostBody>, Aborted> {
    let started = match begun {
        Begun::Answered(resp) => Err(resp),
        Begun::Started(head_rx) => Ok(head_rx),
        Begun::ReadAhead(read_ahead) => read_ahead.await,
        Begun::Static(file) => Err(file.await),
    };
    match started {
        Err(resp) => {
            if resp.headers().contains_key(header::CONNECTION) {
                conn.request_close();
            }
            conn.request_ended();
            Ok(resp)
        }
        Ok(head_rx) => {
            let mut guard = GoneOnDrop(Some(conn.clone()));
            let head = head_rx.await.map_err(|_| Aborted);
            guard.0 = None;
            if head.is_err() {
                // Aborted before any head: hyper drops the connection.
                conn.mark_gone();
            }
            head
        }
    }
}

/// A request head, as the logs show it: method, target, version, headers.
type Head<'a> = (
    &'a http::Method,
    &'a http::Uri,
    http::Version,
    &'a http::HeaderMap,
);

/// The head of a request the host answers itself.
fn head_of<B>(req: &Request<B>) -> Head<'_> {
    (req.method(), req.uri(), req.version(), req.headers())
}

/// A response the host refuses a request with, and its log lines.
fn rejected(ends: &Endpoints, head: Head<'_>, status: StatusCode, why: &str) -> Response<HostBody> {
    let (method, uri, ..) = head;
    let remote = ends.remote;
    tracing::warn!(%remote, %method, %uri, status = status.as_u16(), "{why}");
    answered(ends, head, error_page(status, true))
}

/// A response the host makes itself, with its access-log line.
fn answered(ends: &Endpoints, head: Head<'_>, resp: Response<HostBody>) -> Response<HostBody> {
    crate::accesslog::answered(ends, head.0, head.1, head.2, head.3, &resp);
    resp
}

/// A request that passed the host's checks and is routed to an extension.
struct Admitted {
    parts: http::request::Parts,
    url: Vec<u8>,
    /// The mount's `SCRIPT_NAME` and extension.
    script_name: Arc<str>,
    ext: Arc<Extension>,
    ends: Arc<Endpoints>,
    reader: BodyReader,
    /// How many body bytes to read before the extension runs.
    read_ahead: usize,
    content_length: Option<u64>,
    total_bytes: u32,
    client_keep_alive: bool,
}

/// Checks the request head and routes it; an `Err` is a response the host
/// sends itself, or a static file.
// The `Ok` side is larger still; either is moved once.
#[allow(clippy::result_large_err)]
fn admit(req: Request<Incoming>, app: &App, ends: Arc<Endpoints>) -> Result<Admitted, Begun> {
    let cfg = &app.shared.cfg;
    let reject = |status, why| Begun::Answered(rejected(&ends, head_of(&req), status, why));
    let head = head::check(&req, cfg).map_err(|(status, why)| reject(status, why))?;
    // A web.config's requestFiltering limits (src/site/filter.rs).
    if let Some(limits) = &cfg.site.limits {
        limits
            .check(&req)
            .map_err(|(status, why)| reject(status, why))?;
    }
    let url = head.url;
    let content_length = head.content_length;
    let chunked = head.chunked;
    let mount = match app.route(&url) {
        Some(Route::Extension(mount)) => mount,
        Some(Route::Static(files)) => {
            return Err(Begun::Static(Box::pin(files.clone().serve(req, url, ends))));
        }
        None => {
            let page = error_page(StatusCode::NOT_FOUND, false);
            return Err(Begun::Answered(answered(&ends, head_of(&req), page)));
        }
    };
    // IIS's appConcurrentRequestLimit: past it, 503 rather than an
    // ever-growing queue of requests holding their read-ahead.
    if app.shared.active() >= cfg.max_requests {
        return Err(reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in flight (--max-requests)",
        ));
    }
    let total_bytes = match content_length {
        Some(n) if n < u32::MAX as u64 => n as u32,
        Some(_) => u32::MAX,
        None if chunked => u32::MAX,
        None => 0,
    };
    let has_body = chunked || content_length.is_some_and(|n| n > 0);
    // With Expect: 100-continue nothing is preloaded: the 100 goes out when
    // the extension first reads.
    let read_ahead = if has_body && !head.expect_continue {
        cfg.read_ahead
    } else {
        0
    };
    let (parts, body) = req.into_parts();
    let check = parts.extensions.get().cloned();
    Ok(Admitted {
        parts,
        url,
        script_name: mount.script_name.clone(),
        ext: mount.ext.clone(),
        ends,
        reader: BodyReader::new(has_body.then_some(body), cfg.max_body, check),
        read_ahead,
        content_length,
        total_bytes,
        client_keep_alive: head.client_keep_alive,
    })
}

impl Admitted {
    /// Reads ahead up to `read_ahead` body bytes, then starts the request.
    async fn read_ahead(
        mut self,
        app: Arc<App>,
        conn: Arc<ConnSignals>,
    ) -> Result<HeadReceiver, Response<HostBody>> {
        let preload = self
            .reader
            .preload(self.read_ahead, app.shared.cfg.io_timeout)
            .await;
        if let Some(e) = self.reader.failed() {
            let p = &self.parts;
            return Err(rejected(
                &self.ends,
                (&p.method, &p.uri, p.version, &p.headers),
                e.status(),
                "request body failed during read-ahead",
            ));
        }
        Ok(self.start(&app, &conn, preload))
    }

    /// Builds the request's context and ECB and queues it for an extension
    /// thread; the response head arrives on the receiver.
    fn start(self, app: &App, conn: &Arc<ConnSignals>, preload: Vec<u8>) -> HeadReceiver {
        let parts = self.parts;
        // What a crash log names, if this worker dies in the extension.
        #[cfg(unix)]
        let label = (parts.method.clone(), parts.uri.path_and_query().cloned());
        let info = RequestInfo {
            target: parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
            method: parts.method,
            version: parts.version,
            url: self.url,
            headers: parts.headers,
            ends: self.ends,
            script_name: self.script_name,
            physical_path: app.shared.cfg.doc_root.clone(),
            content_length: self.content_length,
        };
        let new = RequestCtx::start(RequestParts {
            id: ffi::next_id(),
            info,
            shared: app.shared.clone(),
            conn: conn.clone(),
            body: self.reader,
            preload,
            total_bytes: self.total_bytes,
            client_keep_alive: self.client_keep_alive,
        });
        let ctx = new.ctx;
        ffi::register(ctx.id, ctx.clone());
        app.shared.request_started();
        let ext = self.ext;
        app.workers.spawn(move || {
            #[cfg(unix)]
            let _in_flight = crate::os::inflight::claim(
                label.0.as_str(),
                label.1.as_ref().map_or("/", |t| t.as_str()),
            );
            let status = ext.call(&ctx.ecb);
            if status != HSE_STATUS_PENDING {
                ctx.finish(status);
            }
        });
        new.head_rx
    }
}

/// Marks the client gone if the service future is dropped before the head.
struct GoneOnDrop(Option<Arc<ConnSignals>>);

impl Drop for GoneOnDrop {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            s.mark_gone();
        }
    }
}
