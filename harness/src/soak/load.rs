//! The soak's mixed load: N keep-alive clients, each cycling through a fixed
//! mix of requests to the WSGI fixture app (`fixtures/wsgi/conform_app.py`)
//! until the deadline, checking every response and sorting every failure into
//! expected (a 500 from an app that raises, a connection we cut mid-body) or
//! unexpected.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::wire::{AsyncConn, Response, WireError};

/// One kind of request of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `GET /hello`.
    Hello,
    /// `POST /count` with a 64 KiB Content-Length body.
    UploadLength,
    /// `POST /count` with a 64 KiB chunked body (4 chunks).
    UploadChunked,
    /// `GET /big-stream?n=262144`: a generator's 256 KiB, streamed chunked.
    Stream,
    /// `GET /error`: the app raises before `start_response` (500 expected).
    Raise,
    /// `POST /count` announcing 1 MiB, 16 KiB sent, then the connection is cut.
    Disconnect,
    /// `GET /big-stream?n=262144` read 4 KiB every 5 ms on its own connection.
    SlowReader,
}

/// The mix each client cycles through (starting at its own offset).
pub const MIX: &[Kind] = &[
    Kind::Hello,
    Kind::UploadLength,
    Kind::Hello,
    Kind::Stream,
    Kind::Hello,
    Kind::UploadChunked,
    Kind::Raise,
    Kind::Hello,
    Kind::UploadLength,
    Kind::Hello,
    Kind::Stream,
    Kind::UploadChunked,
    Kind::Hello,
    Kind::Disconnect,
    Kind::Hello,
    Kind::Raise,
    Kind::SlowReader,
    Kind::Hello,
];

const UPLOAD: usize = 64 * 1024;
const STREAM: usize = 256 * 1024;
/// How long one request may take before it counts as an unexpected error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What the clients did, updated as they go.
#[derive(Debug, Default)]
pub struct Counters {
    /// Responses checked and correct (500s of the raising app included).
    pub ok: AtomicU64,
    /// 500s from the raising app (expected).
    pub raised: AtomicU64,
    /// Connections we cut mid-body (expected).
    pub cut: AtomicU64,
    /// Requests re-sent on a new connection because the server had closed an
    /// idle keep-alive one between requests (allowed by RFC 9112 §9.3.1).
    pub resent: AtomicU64,
    /// Anything else: wrong status or body, protocol errors, timeouts.
    pub unexpected: AtomicU64,
    /// Body bytes received.
    pub bytes_in: AtomicU64,
    /// The first unexpected errors, for the report.
    pub samples: Mutex<Vec<String>>,
}

impl Counters {
    fn fail(&self, what: String) {
        self.unexpected.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut s) = self.samples.lock()
            && s.len() < 20
        {
            s.push(what);
        }
    }

    /// Responses so far (correct ones and expected failures).
    pub fn done(&self) -> u64 {
        self.ok.load(Ordering::Relaxed) + self.cut.load(Ordering::Relaxed)
    }
}

/// A stream whose reads return at most 4 KiB, each after a 5 ms pause: a
/// client that takes its response slowly.
struct Slow {
    inner: TcpStream,
    pause: Option<Pin<Box<Sleep>>>,
}

impl AsyncRead for Slow {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = &mut *self;
        let pause = me
            .pause
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(5))));
        ready!(pause.as_mut().poll(cx));
        let mut small = [0u8; 4096];
        let mut rb = ReadBuf::new(&mut small);
        ready!(Pin::new(&mut me.inner).poll_read(cx, &mut rb))?;
        me.pause = None;
        let n = rb.filled().len().min(buf.remaining());
        buf.put_slice(&rb.filled()[..n]);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Slow {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The request bytes of `kind`.
fn request(kind: Kind) -> Vec<u8> {
    let head = |line: &str, extra: &str| {
        format!("{line} HTTP/1.1\r\nHost: soak.test\r\n{extra}\r\n").into_bytes()
    };
    match kind {
        Kind::Hello => head("GET /hello", ""),
        Kind::Stream | Kind::SlowReader => head(&format!("GET /big-stream?n={STREAM}"), ""),
        Kind::Raise => head("GET /error", ""),
        Kind::UploadLength => {
            let mut r = head("POST /count", &format!("Content-Length: {UPLOAD}\r\n"));
            r.extend(std::iter::repeat_n(b'u', UPLOAD));
            r
        }
        Kind::UploadChunked => {
            let mut r = head("POST /count", "Transfer-Encoding: chunked\r\n");
            let part = UPLOAD / 4;
            for _ in 0..4 {
                r.extend(format!("{part:x}\r\n").bytes());
                r.extend(std::iter::repeat_n(b'c', part));
                r.extend(b"\r\n");
            }
            r.extend(b"0\r\n\r\n");
            r
        }
        Kind::Disconnect => {
            let mut r = head("POST /count", "Content-Length: 1048576\r\n");
            r.extend(std::iter::repeat_n(b'd', 16 * 1024));
            r
        }
    }
}

/// Checks a response to `kind`; `Err` says what is wrong.
fn check(kind: Kind, r: &Response) -> Result<(), String> {
    let want = |status: u16, ok: bool, what: &str| {
        if r.status == status && ok {
            Ok(())
        } else {
            Err(format!(
                "{kind:?}: status {} ({} B body), want {status} {what}",
                r.status,
                r.body.len()
            ))
        }
    };
    match kind {
        Kind::Hello => want(200, !r.body.is_empty(), "with a body"),
        Kind::UploadLength | Kind::UploadChunked => want(
            200,
            r.body == format!("bytes={UPLOAD}\n").as_bytes(),
            "bytes=65536",
        ),
        Kind::Stream | Kind::SlowReader => want(200, r.body.len() == STREAM, "with 262144 B"),
        Kind::Raise => want(500, true, ""),
        Kind::Disconnect => Ok(()),
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut AsyncConn<S>,
    bytes: &[u8],
) -> Result<Response, WireError> {
    conn.send(bytes).await?;
    match tokio::time::timeout(REQUEST_TIMEOUT, conn.read_response(false)).await {
        Ok(r) => r,
        Err(_) => Err(WireError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no response within 30 s",
        ))),
    }
}

/// One client: cycles through [`MIX`] from `offset` until `deadline`.
pub async fn client(addr: SocketAddr, offset: usize, deadline: Instant, c: Arc<Counters>) {
    let mut conn: Option<AsyncConn> = None;
    let mut i = offset;
    while Instant::now() < deadline {
        let kind = MIX[i % MIX.len()];
        i += 1;
        match kind {
            Kind::Disconnect => {
                if let Ok(mut s) = TcpStream::connect(addr).await {
                    let _ = s.write_all(&request(kind)).await;
                    drop(s);
                    c.cut.fetch_add(1, Ordering::Relaxed);
                } else {
                    c.fail("Disconnect: connect failed".into());
                }
                continue;
            }
            Kind::SlowReader => {
                let r = match TcpStream::connect(addr).await {
                    Ok(s) => {
                        let mut slow = AsyncConn::new(Slow {
                            inner: s,
                            pause: None,
                        });
                        exchange(&mut slow, &request(kind)).await
                    }
                    Err(e) => Err(WireError::Io(e)),
                };
                record(kind, r, &c);
                continue;
            }
            _ => {}
        }
        let bytes = request(kind);
        let reused = conn.is_some();
        let mut current = match conn.take() {
            Some(k) => k,
            None => match AsyncConn::connect(addr).await {
                Ok(k) => k,
                Err(e) => {
                    c.fail(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let mut r = exchange(&mut current, &bytes).await;
        // An idle keep-alive connection the server closed before our request
        // arrived: re-send once on a new connection.
        if reused && matches!(r, Err(WireError::EofBeforeHead)) {
            c.resent.fetch_add(1, Ordering::Relaxed);
            match AsyncConn::connect(addr).await {
                Ok(k) => {
                    current = k;
                    r = exchange(&mut current, &bytes).await;
                }
                Err(e) => r = Err(WireError::Io(e)),
            }
        }
        let keep = matches!(&r, Ok(resp) if resp.keep_alive_signalled());
        record(kind, r, &c);
        if keep {
            conn = Some(current);
        }
    }
}

fn record(kind: Kind, r: Result<Response, WireError>, c: &Counters) {
    match r {
        Ok(resp) => match check(kind, &resp) {
            Ok(()) => {
                c.ok.fetch_add(1, Ordering::Relaxed);
                c.bytes_in
                    .fetch_add(resp.body.len() as u64, Ordering::Relaxed);
                if kind == Kind::Raise {
                    c.raised.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => c.fail(e),
        },
        Err(e) => c.fail(format!("{kind:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_well_framed() {
        let chunked = request(Kind::UploadChunked);
        assert!(chunked.ends_with(b"\r\n0\r\n\r\n"));
        let cl = request(Kind::UploadLength);
        let head_end = cl.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert_eq!(cl.len() - head_end, UPLOAD);
        assert!(MIX.contains(&Kind::SlowReader) && MIX.contains(&Kind::Raise));
    }
}
