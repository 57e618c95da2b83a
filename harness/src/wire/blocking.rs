//! The blocking front end: [`read_response`] from any [`BufRead`], and
//! [`Conn`], a client connection whose read buffer survives between
//! responses (keep-alive, pipelining), with [`wait_closed`] to tell what the
//! server does with the connection afterwards.

use std::io::{self, BufRead, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::decode::{Decoder, ReadOptions, Sink};
use super::error::WireError;
use super::response::{Collect, Response};

/// Reads one final response from `reader`, collecting 1xx interim responses
/// into [`Response::interim`]. `req_method_is_head`: the request was HEAD.
pub fn read_response<R: BufRead + ?Sized>(
    reader: &mut R,
    req_method_is_head: bool,
) -> Result<Response, WireError> {
    read_response_with(
        reader,
        ReadOptions {
            head_request: req_method_is_head,
            return_interim: false,
        },
    )
}

/// Reads one response with explicit options.
pub fn read_response_with<R: BufRead + ?Sized>(
    reader: &mut R,
    opts: ReadOptions,
) -> Result<Response, WireError> {
    let mut collect = Collect::default();
    read_with(reader, opts, &mut collect)?;
    collect.into_response().ok_or(WireError::EofBeforeHead)
}

/// Reads one response from `reader` into `sink`. Consumes exactly the bytes
/// of that response (and of the 1xx responses before it).
pub fn read_with<R: BufRead + ?Sized>(
    reader: &mut R,
    opts: ReadOptions,
    sink: &mut impl Sink,
) -> Result<(), WireError> {
    let mut decoder = Decoder::new(opts);
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if buf.is_empty() {
            return decoder.finish();
        }
        let used = decoder.feed(buf, sink)?;
        reader.consume(used);
        if decoder.is_done() {
            return Ok(());
        }
    }
}

/// Whether the peer closed the connection, as observed by [`wait_closed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerState {
    /// Orderly EOF (FIN) or a reset was seen within the timeout.
    Closed,
    /// Nothing arrived within the timeout: the connection is still open.
    Open,
    /// Unexpected bytes arrived instead (e.g. a spurious extra response).
    Data(Vec<u8>),
}

/// Whether an I/O error of this kind means the peer has gone: it reset or
/// aborted the connection, or closed it under a write.
pub fn is_peer_gone(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// Wait up to `timeout` for the peer to close `stream`. Reads (and returns)
/// any bytes that arrive instead. Restores the previous read timeout.
pub fn wait_closed(stream: &TcpStream, timeout: Duration) -> io::Result<PeerState> {
    let prev = stream.read_timeout()?;
    let deadline = Instant::now() + timeout;
    let result = (|| {
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(PeerState::Open);
            }
            stream.set_read_timeout(Some(left))?;
            match (&*stream).read(&mut buf) {
                Ok(0) => return Ok(PeerState::Closed),
                Ok(n) => return Ok(PeerState::Data(buf[..n].to_vec())),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(PeerState::Open);
                }
                Err(e) if is_peer_gone(e.kind()) => return Ok(PeerState::Closed),
                Err(e) => return Err(e),
            }
        }
    })();
    stream.set_read_timeout(prev)?;
    result
}

/// A client connection with a read buffer that survives between responses,
/// for keep-alive and pipelining tests.
#[derive(Debug)]
pub struct Conn {
    reader: Buffered,
}

/// A growable read buffer over a `TcpStream` (unlike `BufReader`, it can keep
/// reading more bytes without consuming the ones already buffered, which
/// [`Conn::peek_until`] needs).
#[derive(Debug)]
struct Buffered {
    stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
}

impl Buffered {
    fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Read once from the socket, appending to the buffer. Returns the byte count (0 = EOF).
    fn fill_more(&mut self) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + 64 * 1024, 0);
        let r = loop {
            match (&self.stream).read(&mut self.buf[old..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        self.buf.truncate(old + *r.as_ref().unwrap_or(&0));
        r
    }
}

impl Read for Buffered {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            if out.len() >= 64 * 1024 {
                return (&self.stream).read(out);
            }
            if self.fill_more()? == 0 {
                return Ok(0);
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl BufRead for Buffered {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.buf.len() {
            self.fill_more()?;
        }
        Ok(self.pending())
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
    }
}

/// Reads what the server sent, buffered bytes first.
impl Read for Conn {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.reader.read(out)
    }
}

impl BufRead for Conn {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.reader.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.reader.consume(n)
    }
}

impl Conn {
    /// Connect with TCP_NODELAY and a default 10 s read timeout.
    pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Conn::new(stream))
    }

    /// Wrap an existing stream (its timeouts are left as they are).
    pub fn new(stream: TcpStream) -> Conn {
        Conn {
            reader: Buffered {
                stream,
                buf: Vec::new(),
                pos: 0,
            },
        }
    }

    /// The underlying stream (for timeouts, shutdown, peer address, `try_clone`...).
    pub fn stream(&self) -> &TcpStream {
        &self.reader.stream
    }

    /// Set the read timeout used by the `read_*` methods.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.stream().set_read_timeout(t)
    }

    /// Write all of `bytes` and flush.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut s = &self.reader.stream;
        s.write_all(bytes)?;
        s.flush()
    }

    /// Read the next final response (1xx skipped into [`Response::interim`]).
    pub fn read_response(&mut self, req_method_is_head: bool) -> Result<Response, WireError> {
        read_response(&mut self.reader, req_method_is_head)
    }

    /// Read the next response with explicit options.
    pub fn read_response_with(&mut self, opts: ReadOptions) -> Result<Response, WireError> {
        read_response_with(&mut self.reader, opts)
    }

    /// Read the next response into `sink`.
    pub fn read_with(&mut self, opts: ReadOptions, sink: &mut impl Sink) -> Result<(), WireError> {
        read_with(&mut self.reader, opts, sink)
    }

    /// Send a request and read its response.
    pub fn roundtrip(
        &mut self,
        request: &[u8],
        req_method_is_head: bool,
    ) -> Result<Response, WireError> {
        self.send(request)?;
        self.read_response(req_method_is_head)
    }

    /// Bytes already received but not yet consumed by a response.
    pub fn buffered(&self) -> &[u8] {
        self.reader.pending()
    }

    /// Keep receiving (without consuming) until the unconsumed bytes contain
    /// `needle`, the peer closes, or `timeout` passes. Returns whether
    /// `needle` was seen. Used to check that a server streams a block before
    /// the application produces the next one.
    pub fn peek_until(&mut self, needle: &[u8], timeout: Duration) -> io::Result<bool> {
        let prev = self.stream().read_timeout()?;
        let deadline = Instant::now() + timeout;
        let result = loop {
            if self
                .reader
                .pending()
                .windows(needle.len().max(1))
                .any(|w| w == needle)
            {
                break Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Ok(false);
            }
            self.stream().set_read_timeout(Some(left))?;
            match self.reader.fill_more() {
                Ok(0) => break Ok(false),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break Ok(false);
                }
                Err(e) => break Err(e),
            }
        };
        self.stream().set_read_timeout(prev)?;
        result
    }

    /// Wait up to `timeout` for the server to close the connection. Bytes left
    /// over in the buffer count as [`PeerState::Data`].
    pub fn wait_closed(&mut self, timeout: Duration) -> io::Result<PeerState> {
        if !self.reader.pending().is_empty() {
            let data = self.reader.pending().to_vec();
            self.reader.pos = self.reader.buf.len();
            return Ok(PeerState::Data(data));
        }
        wait_closed(&self.reader.stream, timeout)
    }

    /// Give back the stream; buffered bytes are lost.
    pub fn into_inner(self) -> TcpStream {
        self.reader.stream
    }
}
