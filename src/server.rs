//! The HTTP side: listening, connections, request checks, routing to an
//! extension, and graceful shutdown.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::body::BodyReader;
use crate::config::{ServeArgs, ServeConfig};
use crate::conn::ConnSignals;
use crate::ffi::{self, Extension};
use crate::pool::{Pool, RuntimeWait};
use crate::request::{Aborted, HostBody, RequestCtx, RequestParts, error_page};
use crate::shared::{Shared, wait_until};
use crate::vars::{Endpoints, RequestInfo};
use windows_sys::Win32::System::Iis::HSE_STATUS_PENDING;

/// Records I/O activity for the keep-alive idle timeout.
struct ActivityIo {
    inner: TcpStream,
    signals: Arc<ConnSignals>,
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
            self.signals.received();
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

/// An extension mounted at a URL prefix.
struct Mount {
    prefix: String,
    /// `SCRIPT_NAME`: the prefix, or `""` for the root.
    script_name: Arc<str>,
    ext: Arc<Extension>,
}

/// Everything a connection task needs.
struct App {
    shared: Arc<Shared>,
    /// Threads that run `HttpExtensionProc`.
    workers: Pool,
    mounts: Vec<Mount>,
}

impl App {
    fn route(&self, path: &[u8]) -> Option<&Mount> {
        self.mounts.iter().find(|m| {
            let p = m.prefix.as_bytes();
            p == b"/" || (path.starts_with(p) && (path.len() == p.len() || path[p.len()] == b'/'))
        })
    }
}

/// The file name of the workspace's pyisapie library on this platform.
fn pyisapie_file_name() -> String {
    format!(
        "{}pyisapie{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

/// Runs `isapi-host serve` until SIGINT or SIGTERM.
pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let pyisapie = exe_dir.join(pyisapie_file_name());
    let demo_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("wsgi");
    let cfg = ServeConfig::resolve(args, &pyisapie, &demo_dir)?;

    if let Some(py) = &cfg.python {
        if cfg.maps.iter().any(|m| m.path == pyisapie) && !pyisapie.exists() {
            anyhow::bail!(
                "the pyisapie library is not built: {} is missing (run `cargo build --release --workspace`, or pass --extension)",
                pyisapie.display()
            );
        }
        let path = std::env::join_paths(&py.python_path)
            .context("--python-path holds a path separator")?;
        ffi::set_env_before_threads(&[
            ("PYISAPIE_APP", py.app.clone().into()),
            ("PYISAPIE_PYTHONPATH", path),
        ]);
    }

    // Each library is loaded once, however many prefixes it serves.
    let mut loaded: HashMap<PathBuf, Arc<Extension>> = HashMap::new();
    let mut mounts = Vec::new();
    for m in &cfg.maps {
        let ext = match loaded.get(&m.path) {
            Some(ext) => ext.clone(),
            None => {
                let ext = Arc::new(Extension::load(&m.path)?);
                loaded.insert(m.path.clone(), ext.clone());
                ext
            }
        };
        tracing::info!(prefix = %m.prefix, extension = %m.path.display(), "mounted");
        mounts.push(Mount {
            prefix: m.prefix.clone(),
            script_name: if m.prefix == "/" { "" } else { &m.prefix }.into(),
            ext,
        });
    }

    let wait = Arc::new(RuntimeWait::new(cfg.yield_time));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.io_threads)
        .enable_all()
        .thread_name("isapi-http")
        .on_thread_park({
            let wait = wait.clone();
            move || wait.parking()
        })
        .on_thread_unpark({
            let wait = wait.clone();
            move || wait.unparked()
        })
        .build()?;
    let _ = wait.metrics.set(rt.metrics());
    let workers = Pool::new("isapi-worker", cfg.threads, cfg.parallel, cfg.yield_time)?;
    let io = Pool::new(
        "isapi-io",
        cfg.threads.clamp(4, 64),
        crate::pool::cpus(),
        cfg.yield_time,
    )?;
    let shared = Arc::new(Shared::new(cfg, rt.handle().clone(), io));
    let app = Arc::new(App {
        shared: shared.clone(),
        workers,
        mounts,
    });
    rt.block_on(serve(app))?;

    // TerminateExtension(MUST_UNLOAD) promises that no request runs any more.
    let still_running = shared.active();
    if still_running == 0 {
        for ext in loaded.values() {
            ext.terminate();
        }
    } else {
        tracing::warn!(
            requests = still_running,
            "requests still inside extensions: not calling TerminateExtension"
        );
    }
    // Extension threads may still be parked in the pools; do not wait for them.
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

async fn serve(app: Arc<App>) -> anyhow::Result<()> {
    let cfg = &app.shared.cfg;
    let listener = TcpListener::bind(cfg.bind)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.bind))?;
    let addr = listener.local_addr()?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "isapi-host listening on http://{addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, threads = cfg.threads, parallel = cfg.parallel, "listening");

    let conns = Arc::new(Connections::default());
    let sweeper = tokio::spawn(sweep(conns.clone(), Limits::of(cfg)));
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().unwrap_or(addr);
                // Registered before the task starts, so that shutdown waits for it.
                let (id, signals) = conns.open(remote);
                let (app, conns) = (app.clone(), conns.clone());
                tokio::spawn(async move {
                    serve_connection(stream, remote, local, app, signals).await;
                    conns.close(id);
                });
            }
            () = &mut signal => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    conns.shut_down();
    let drain = async {
        app.shared.drained().await;
        conns.drained().await;
    };
    if tokio::time::timeout(app.shared.cfg.shutdown_timeout, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            requests = app.shared.active(),
            connections = conns.count(),
            "shutdown timeout: requests still in flight"
        );
    }
    sweeper.abort();
    Ok(())
}

/// The open connections, for the sweeper and for shutdown.
#[derive(Default)]
struct Connections {
    open: Mutex<HashMap<u64, Arc<ConnSignals>>>,
    next: AtomicU64,
    /// Shutting down: new connections close after their first response.
    closing: AtomicBool,
    /// The last connection closed.
    empty: Notify,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnSignals>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn open(&self, remote: SocketAddr) -> (u64, Arc<ConnSignals>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let signals = Arc::new(ConnSignals::new(remote));
        self.lock().insert(id, signals.clone());
        if self.closing.load(Ordering::Acquire) {
            signals.request_close();
        }
        (id, signals)
    }

    fn close(&self, id: u64) {
        let mut open = self.lock();
        open.remove(&id);
        if open.is_empty() {
            self.empty.notify_waiters();
        }
    }

    fn count(&self) -> usize {
        self.lock().len()
    }

    /// Every connection closes once its current response is done.
    fn shut_down(&self) {
        self.closing.store(true, Ordering::Release);
        for s in self.lock().values() {
            s.request_close();
        }
    }

    async fn drained(&self) {
        wait_until(&self.empty, || self.count() == 0).await;
    }
}

/// The connection timeouts the sweeper enforces.
struct Limits {
    /// `--keepalive-timeout`: quiet between requests.
    idle: Duration,
    /// `--io-timeout`: quiet while an extension waits on the client.
    io: Duration,
    /// `--header-timeout`: from a head's first byte to its end.
    head: Duration,
}

impl Limits {
    fn of(cfg: &ServeConfig) -> Self {
        Limits {
            idle: cfg.keepalive_timeout,
            io: cfg.io_timeout,
            head: cfg.header_timeout,
        }
    }
}

/// Checks every connection once a second (or more often, for shorter
/// limits): one whose client stalled while an extension waited on it, or
/// whose request head is late, is dropped; one idle too long is closed.
async fn sweep(conns: Arc<Connections>, limits: Limits) {
    // A time is seen a sweep late at most, so sweep at least twice per limit.
    let every = Duration::from_secs(1)
        .min(limits.idle / 2)
        .min(limits.io / 2)
        .min(limits.head / 2)
        .max(Duration::from_millis(10));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let epoch = Instant::now();
    loop {
        tick.tick().await;
        let now_ms = epoch.elapsed().as_millis() as u64;
        for s in conns.lock().values() {
            let quiet = s.quiet_for(now_ms);
            let head = s.head_for(now_ms);
            if s.is_aborted() {
                continue;
            }
            if s.client_waited_on() && quiet >= limits.io {
                tracing::warn!(remote = %s.remote, timeout = ?limits.io, "client stalled while the extension waited on it; dropping the connection");
                s.hard_abort();
            } else if !s.between_requests() {
                continue;
            } else if head.is_some_and(|h| h >= limits.head) {
                tracing::warn!(remote = %s.remote, timeout = ?limits.head, "request head not complete within --header-timeout; dropping the connection");
                s.hard_abort();
            } else if !s.close_requested() && quiet >= limits.idle {
                tracing::debug!(remote = %s.remote, "closing idle keep-alive connection");
                s.request_close();
            }
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    // A console's Ctrl+C and Ctrl+Break, its window closing, and the
    // system's shutdown or log-off all drain like SIGTERM.
    #[cfg(windows)]
    {
        use tokio::signal::windows::{ctrl_break, ctrl_close, ctrl_shutdown};
        let (Ok(mut brk), Ok(mut close), Ok(mut shut)) =
            (ctrl_break(), ctrl_close(), ctrl_shutdown())
        else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = brk.recv() => {}
            _ = close.recv() => {}
            _ = shut.recv() => {}
        }
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
    app: Arc<App>,
    signals: Arc<ConnSignals>,
) {
    let io = TokioIo::new(ActivityIo {
        inner: stream,
        signals: signals.clone(),
    });
    let cfg = &app.shared.cfg;
    let svc = {
        let (app, signals) = (app.clone(), signals.clone());
        let ends = Endpoints::new(remote, local);
        service_fn(move |req| respond(begin(req, &app, &signals, &ends), signals.clone()))
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
    let ended = std::future::poll_fn(|cx| {
        signals.register_task(&mut registered, cx.waker());
        if signals.is_aborted() {
            return Poll::Ready(None);
        }
        if !closing && signals.close_requested() {
            closing = true;
            conn.as_mut().graceful_shutdown();
        }
        conn.as_mut().poll(cx).map(Some)
    })
    .await;
    match ended {
        None => tracing::debug!(%remote, "connection aborted"),
        Some(Err(e)) => tracing::debug!(%remote, error = %e, "connection ended with an error"),
        Some(Ok(())) => {}
    }
    signals.mark_gone();
}

/// hyper's read buffer: the largest body frame, and the largest head hyper
/// parses (a larger one gets hyper's own 431).
const HYPER_BUF: usize = 64 * 1024;

/// What the host checks in a request head, read in one pass over its
/// headers (a lookup per header name costs more for a typical head).
#[derive(Default)]
struct HeadFacts<'a> {
    /// The size of the head as it came on the wire (request line, headers
    /// and the blank line), for `--max-header`.
    size: usize,
    /// How many Host headers there are, and whether one is not a valid
    /// `uri-host[:port]`.
    hosts: usize,
    bad_host: bool,
    /// A Transfer-Encoding header is present.
    chunked: bool,
    /// The first Content-Length value.
    content_length: Option<&'a HeaderValue>,
    /// `Connection` tokens.
    close: bool,
    keep_alive: bool,
    /// `Expect: 100-continue`.
    expect_continue: bool,
}

impl<'a> HeadFacts<'a> {
    fn of<B>(req: &'a Request<B>) -> Self {
        let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
        let line = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
        let mut f = HeadFacts {
            size: line + 2,
            ..HeadFacts::default()
        };
        for (name, value) in req.headers() {
            f.size += name.as_str().len() + 2 + value.len() + 2;
            if name == header::HOST {
                f.hosts += 1;
                f.bad_host |= !valid_host(value.as_bytes());
            } else if name == header::TRANSFER_ENCODING {
                f.chunked = true;
            } else if name == header::CONTENT_LENGTH {
                f.content_length.get_or_insert(value);
            } else if name == header::CONNECTION {
                for t in crate::response::tokens(value.as_bytes()) {
                    f.close |= t.eq_ignore_ascii_case(b"close");
                    f.keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if name == header::EXPECT {
                f.expect_continue |= crate::response::tokens(value.as_bytes())
                    .any(|t| t.eq_ignore_ascii_case(b"100-continue"));
            }
        }
        f
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

/// Removes dot-segments from a decoded path (RFC 3986 §5.2.4); `None` for
/// control bytes (NUL included) or a path that climbs above the root.
fn normalize_path(path: &[u8]) -> Option<Vec<u8>> {
    if path.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return None;
    }
    let dot_segment = |s: &[u8]| s == b"." || s == b"..";
    if path.first() == Some(&b'/') && !path.split(|&b| b == b'/').any(dot_segment) {
        return Some(path.to_vec()); // already normal
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    let trailing = path.ends_with(b"/") || path.ends_with(b"/.") || path.ends_with(b"/..");
    for seg in path.split(|&b| b == b'/').skip(1) {
        match seg {
            b"." => {}
            b".." => {
                segments.pop()?;
            }
            s => segments.push(s),
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for seg in &segments {
        out.push(b'/');
        out.extend_from_slice(seg);
    }
    if out.is_empty() || (trailing && !out.ends_with(b"/")) {
        out.push(b'/');
    }
    Some(out)
}

/// The bytes of a reg-name or IPv4address (RFC 3986 §3.2.2): unreserved,
/// pct-encoded and sub-delims.
const REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let extra = b"-._~%!$&'()*+,;=";
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
};

/// `uri-host [":" port]` (RFC 9110 §7.2), without userinfo; empty is allowed
/// for HTTP/1.0.
fn valid_host(value: &[u8]) -> bool {
    if value.is_empty() {
        return true;
    }
    let (host, port) = if let Some(rest) = value.strip_prefix(b"[") {
        // IP-literal (RFC 3986 §3.2.2): an IPv6 address in brackets.
        let Some(end) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let ip = &rest[..end];
        let ok = !ip.is_empty()
            && ip
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        (ok.then_some(ip), &rest[end + 1..])
    } else {
        let end = value.iter().position(|&b| b == b':').unwrap_or(value.len());
        let name = &value[..end];
        let ok = !name.is_empty() && name.iter().all(|&b| REG_NAME[b as usize]);
        (ok.then_some(name), &value[end..])
    };
    host.is_some()
        && (port.is_empty()
            || port
                .strip_prefix(b":")
                .and_then(crate::response::parse_decimal)
                .is_some_and(|p| p <= u64::from(u16::MAX)))
}

/// What [`begin`] made of a request.
enum Begun {
    /// The host answers it itself.
    Answered(Response<HostBody>),
    /// Queued for an extension thread: its response head arrives here.
    Started(HeadReceiver),
    /// Its body's read-ahead comes first (boxed: its state would otherwise
    /// make the request future of every connection, which hyper keeps and
    /// moves for each request, several times larger).
    ReadAhead(Pin<Box<dyn Future<Output = Result<HeadReceiver, Response<HostBody>>> + Send>>),
}

/// Where an extension's response head arrives.
type HeadReceiver = tokio::sync::oneshot::Receiver<Response<HostBody>>;

/// Takes a request from hyper: checks, routes and (unless its body is to be
/// read ahead) queues it, before the returned future is first polled.
fn begin(
    req: Request<Incoming>,
    app: &Arc<App>,
    conn: &Arc<ConnSignals>,
    ends: &Arc<Endpoints>,
) -> Begun {
    conn.request_started();
    match admit(req, app, ends.clone()) {
        Err(resp) => Begun::Answered(resp),
        Ok(a) if a.read_ahead > 0 => {
            Begun::ReadAhead(Box::pin(a.read_ahead(app.clone(), conn.clone())))
        }
        Ok(a) => Begun::Started(a.start(app, conn, Vec::new())),
    }
}

/// The response to a request [`begin`] took.
async fn respond(begun: Begun, conn: Arc<ConnSignals>) -> Result<Response<HostBody>, Aborted> {
    let started = match begun {
        Begun::Answered(resp) => Err(resp),
        Begun::Started(head_rx) => Ok(head_rx),
        Begun::ReadAhead(read_ahead) => read_ahead.await,
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

/// A response the host refuses a request with, and its log line.
fn rejected(
    remote: SocketAddr,
    method: &http::Method,
    uri: &http::Uri,
    status: StatusCode,
    why: &str,
) -> Response<HostBody> {
    tracing::warn!(%remote, %method, %uri, status = status.as_u16(), "{why}");
    error_page(status, true)
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
/// sends itself.
// The `Ok` side is larger still; either is moved once.
#[allow(clippy::result_large_err)]
fn admit(
    req: Request<Incoming>,
    app: &App,
    ends: Arc<Endpoints>,
) -> Result<Admitted, Response<HostBody>> {
    let cfg = &app.shared.cfg;
    let remote = ends.remote;
    let reject = |status, why| rejected(remote, req.method(), req.uri(), status, why);
    let facts = HeadFacts::of(&req);
    // IIS's MaxRequestBytes: the whole head, closing the connection.
    if facts.size > cfg.max_header {
        return Err(reject(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request head over --max-header",
        ));
    }
    // RFC 9112 §3.2: a 1.1 request without exactly one Host is a 400 ...
    if req.version() == Version::HTTP_11 && facts.hosts != 1 {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            "HTTP/1.1 request without exactly one Host header",
        ));
    }
    // ... and so is one whose Host is not a valid uri-host[:port] (an
    // HTTP/1.0 request may have several: each is checked).
    if facts.bad_host {
        return Err(reject(StatusCode::BAD_REQUEST, "invalid Host header"));
    }
    let chunked = facts.chunked;
    // RFC 9112 §6.1: Content-Length with Transfer-Encoding is a smuggling
    // shape. hyper drops the Content-Length, reads the body as chunked and
    // closes the connection after the response, as the RFC allows.
    let content_length = match facts
        .content_length
        .map(|v| crate::response::parse_decimal(v.as_bytes().trim_ascii()))
    {
        None => None,
        Some(Some(n)) => Some(n),
        Some(None) => return Err(reject(StatusCode::BAD_REQUEST, "invalid Content-Length")),
    };
    if content_length.is_some_and(|n| n > cfg.max_body) {
        return Err(reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body over --max-body",
        ));
    }
    let decoded: Cow<'_, [u8]> =
        percent_encoding::percent_decode(req.uri().path().as_bytes()).into();
    // Route and report the normalized path, as IIS does: no control bytes,
    // no dot-segments, never above the root.
    let Some(url) = normalize_path(&decoded) else {
        return Err(reject(StatusCode::BAD_REQUEST, "invalid URL path"));
    };
    let Some(mount) = app.route(&url) else {
        return Err(error_page(StatusCode::NOT_FOUND, false));
    };
    // IIS's appConcurrentRequestLimit: past it, 503 rather than an
    // ever-growing queue of requests holding their read-ahead.
    if app.shared.active() >= cfg.max_requests {
        return Err(reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in flight (--max-requests)",
        ));
    }
    let client_keep_alive = match req.version() {
        Version::HTTP_10 => facts.keep_alive,
        _ => !facts.close,
    };
    let total_bytes = match content_length {
        Some(n) if n < u32::MAX as u64 => n as u32,
        Some(_) => u32::MAX,
        None if chunked => u32::MAX,
        None => 0,
    };
    let has_body = chunked || content_length.is_some_and(|n| n > 0);
    // With Expect: 100-continue nothing is preloaded: the 100 goes out when
    // the extension first reads.
    let read_ahead = if has_body && !facts.expect_continue {
        cfg.read_ahead
    } else {
        0
    };
    let (parts, body) = req.into_parts();
    Ok(Admitted {
        parts,
        url,
        script_name: mount.script_name.clone(),
        ext: mount.ext.clone(),
        ends,
        reader: BodyReader::new(has_body.then_some(body), cfg.max_body),
        read_ahead,
        content_length,
        total_bytes,
        client_keep_alive,
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
            return Err(rejected(
                self.ends.remote,
                &self.parts.method,
                &self.parts.uri,
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
            let status = ext.call(&ctx.ecb);
            if status != HSE_STATUS_PENDING {
                ctx.finish(status);
            }
        });
        new.head_rx
    }
}

#[cfg(test)]
mod tests {
    use super::{normalize_path, valid_host};

    #[test]
    fn paths_are_normalized() {
        let n = |p: &str| normalize_path(p.as_bytes()).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(n("/").as_deref(), Some("/"));
        assert_eq!(n("/a/b").as_deref(), Some("/a/b"));
        assert_eq!(n("/a/./b/../c").as_deref(), Some("/a/c"));
        assert_eq!(n("/a/b/..").as_deref(), Some("/a/"));
        assert_eq!(n("/a/").as_deref(), Some("/a/"));
        assert_eq!(n("/public/../admin/x").as_deref(), Some("/admin/x"));
        assert_eq!(n("/a/../.."), None);
        assert_eq!(n("/x.py\0.txt"), None);
        assert_eq!(n("/a\nb"), None);
        // Paths that are already normal come back as they are (fast path),
        // including empty segments and dots inside names.
        for p in ["/a//b", "/a/.b/c..", "/...", "//", "/a/b/"] {
            assert_eq!(n(p).as_deref(), Some(p));
        }
        assert_eq!(n("").as_deref(), Some("/"));
    }

    #[test]
    fn host_values() {
        for ok in [
            "example.com",
            "example.com:8080",
            "127.0.0.1:1",
            "[::1]:80",
            "[::1]",
            "a-b.c",
            "a:65535",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "con form",
            "a@b",
            "example.com:x",
            "exa mple",
            "[::1",
            "h:1:2",
            "a:65536",
            "a:",
            "a:+1",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
    }
}
