//! A small, strict, synchronous HTTP/1.x *response* reader for tests.
//!
//! It reads exactly one response from any [`std::io::Read`] and never consumes
//! bytes beyond the end of that response, so pipelined responses can be read
//! one after another from the same reader. Because reading is done in small
//! steps, wrap raw sockets in a [`std::io::BufReader`] — or use [`Conn`], which
//! does that and keeps leftover bytes between responses.
//!
//! Message framing follows RFC 9112 §6.3: no body for responses to HEAD and
//! for 1xx/204/304; `Transfer-Encoding` with `chunked` last → chunked (with
//! chunk extensions and trailers, RFC 9112 §7.1); otherwise `Content-Length`
//! (identical duplicates tolerated, RFC 9110 §8.6); otherwise the body is
//! delimited by the server closing the connection.
//!
//! Malformed server output is reported as a typed [`WireError`]; the reader is
//! deliberately strict (CRLF line endings, no obs-fold, no whitespace before
//! the colon) because it is used to judge servers.
//!
//! ```
//! use isapi_harness::wire::{read_response, Framing};
//! let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 204 No Content\r\n\r\n";
//! let mut r = &raw[..];
//! let first = read_response(&mut r, false).unwrap();
//! assert_eq!(first.body, b"hi");
//! assert_eq!(first.framing, Framing::ContentLength(2));
//! let second = read_response(&mut r, false).unwrap();
//! assert_eq!(second.status, 204);
//! ```

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Upper bound on the size of a response head (status line + headers) or a
/// trailer section, to keep a misbehaving server from exhausting memory.
pub const MAX_HEAD_BYTES: usize = 1 << 20;

/// How the body of a response was delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length: n` (and no Transfer-Encoding).
    ContentLength(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// No length information: the body ran until the server closed the connection.
    CloseDelimited,
    /// The response cannot have a body (HEAD request, 1xx, 204, 304).
    None,
}

/// A 1xx interim response (RFC 9110 §15.2) that preceded the final response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interim {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
}

/// One HTTP/1.x response as read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Protocol version from the status line, e.g. `"HTTP/1.1"`.
    pub version: String,
    pub status: u16,
    /// Reason phrase (may be empty).
    pub reason: String,
    /// Header fields in wire order, names as sent, values with surrounding
    /// whitespace trimmed.
    pub headers: Vec<(String, String)>,
    /// The decoded body (chunk framing removed).
    pub body: Vec<u8>,
    pub framing: Framing,
    /// Trailer fields after the last chunk (chunked only).
    pub trailers: Vec<(String, String)>,
    /// Sizes of the data chunks received, in order (chunked only; excludes the
    /// terminating zero-size chunk).
    pub chunk_sizes: Vec<u64>,
    /// 1xx interim responses skipped before this one (see [`ReadOptions`]).
    pub interim: Vec<Interim>,
}

impl Response {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// All values of header `name` (case-insensitive), in wire order.
    pub fn headers_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// First value of trailer field `name` (case-insensitive).
    pub fn trailer(&self, name: &str) -> Option<&str> {
        find_header(&self.trailers, name)
    }

    /// Whether a `Connection` header contains the token `token` (case-insensitive).
    pub fn connection_has(&self, token: &str) -> bool {
        self.headers_all("connection")
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Whether, by RFC 9112 §9.3, the server intends to keep the connection
    /// open after this response (ignores whether it actually does).
    pub fn keep_alive_signalled(&self) -> bool {
        if self.framing == Framing::CloseDelimited || self.connection_has("close") {
            return false;
        }
        if self.version == "HTTP/1.0" {
            return self.connection_has("keep-alive");
        }
        true
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Malformed or incomplete server output, or an I/O failure.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The connection was closed before any byte of a response arrived.
    #[error("connection closed before a response started")]
    EofBeforeHead,
    /// The connection was closed in the middle of the status line or headers.
    #[error("connection closed inside the response head after {0} bytes")]
    TruncatedHead(usize),
    #[error("bad status line: {0:?}")]
    BadStatusLine(String),
    #[error("bad header line: {0:?}")]
    BadHeader(String),
    /// A line in the head ended with a bare LF instead of CRLF.
    #[error("bare LF line ending in response head: {0:?}")]
    BareLf(String),
    #[error("response head exceeds {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    /// Content-Length is not a decimal number, or duplicate values differ.
    #[error("invalid Content-Length: {0:?}")]
    InvalidContentLength(String),
    #[error("bad chunk size line: {0:?}")]
    BadChunkSize(String),
    /// Chunk data was not followed by CRLF.
    #[error("chunk data not followed by CRLF (got {0:?})")]
    BadChunkTerminator(Vec<u8>),
    /// The connection closed before the announced body was complete.
    #[error("body truncated: got {got} bytes, expected {expected:?}")]
    TruncatedBody { expected: Option<u64>, got: u64 },
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl WireError {
    /// True when the error is a read timeout (the server stalled).
    pub fn is_timeout(&self) -> bool {
        matches!(self, WireError::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }
}

/// Options for [`read_response_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// The request was `HEAD`: the response has no body whatever its headers say.
    pub head_request: bool,
    /// Return a 1xx interim response as its own [`Response`] (framing
    /// [`Framing::None`]) instead of skipping it and collecting it into
    /// [`Response::interim`].
    pub return_interim: bool,
}

/// Read one final response, skipping (and collecting) any 1xx interim responses.
pub fn read_response<R: Read + ?Sized>(
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

/// Read one response with explicit options.
pub fn read_response_with<R: Read + ?Sized>(
    reader: &mut R,
    opts: ReadOptions,
) -> Result<Response, WireError> {
    let mut interim = Vec::new();
    loop {
        let (version, status, reason, headers) = read_head(reader)?;
        if (100..200).contains(&status) && !opts.return_interim && status != 101 {
            interim.push(Interim {
                status,
                reason,
                headers,
            });
            continue;
        }
        let mut resp = Response {
            version,
            status,
            reason,
            headers,
            body: Vec::new(),
            framing: Framing::None,
            trailers: Vec::new(),
            chunk_sizes: Vec::new(),
            interim,
        };
        resp.framing = framing_of(&resp, opts.head_request)?;
        match resp.framing {
            Framing::None => {}
            Framing::ContentLength(n) => read_exact_body(reader, n, &mut resp.body)?,
            Framing::Chunked => read_chunked(reader, &mut resp)?,
            Framing::CloseDelimited => {
                reader.read_to_end(&mut resp.body)?;
            }
        }
        return Ok(resp);
    }
}

/// Decide the framing per RFC 9112 §6.3.
fn framing_of(resp: &Response, head_request: bool) -> Result<Framing, WireError> {
    if head_request || (100..200).contains(&resp.status) || resp.status == 204 || resp.status == 304
    {
        return Ok(Framing::None);
    }
    let te: Vec<&str> = resp.headers_all("transfer-encoding").collect();
    if !te.is_empty() {
        let last = te
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|t| !t.is_empty())
            .unwrap_or("");
        return Ok(if last.eq_ignore_ascii_case("chunked") {
            Framing::Chunked
        } else {
            Framing::CloseDelimited
        });
    }
    let mut len: Option<u64> = None;
    for v in resp.headers_all("content-length") {
        for part in v.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(WireError::InvalidContentLength(v.to_owned()));
            }
            let n: u64 = part
                .parse()
                .map_err(|_| WireError::InvalidContentLength(v.to_owned()))?;
            match len {
                Some(prev) if prev != n => {
                    return Err(WireError::InvalidContentLength(v.to_owned()));
                }
                _ => len = Some(n),
            }
        }
    }
    Ok(match len {
        Some(n) => Framing::ContentLength(n),
        None => Framing::CloseDelimited,
    })
}

/// Read one CRLF-terminated line (without the CRLF). `Ok(None)` on EOF before
/// any byte. `budget` is decremented by the bytes consumed.
fn read_line<R: Read + ?Sized>(
    reader: &mut R,
    budget: &mut usize,
) -> Result<Option<Vec<u8>>, LineError> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let n = loop {
            match reader.read(&mut byte) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LineError::Io(e)),
            }
        };
        if n == 0 {
            return if line.is_empty() {
                Ok(None)
            } else {
                Err(LineError::Eof)
            };
        }
        if *budget == 0 {
            return Err(LineError::TooLong);
        }
        *budget -= 1;
        if byte[0] == b'\n' {
            if line.last() == Some(&b'\r') {
                line.pop();
                return Ok(Some(line));
            }
            return Err(LineError::BareLf(line));
        }
        line.push(byte[0]);
    }
}

enum LineError {
    Io(io::Error),
    /// EOF in the middle of a line.
    Eof,
    BareLf(Vec<u8>),
    TooLong,
}

type Head = (String, u16, String, Vec<(String, String)>);

fn read_head<R: Read + ?Sized>(reader: &mut R) -> Result<Head, WireError> {
    let mut budget = MAX_HEAD_BYTES;
    let next = |reader: &mut R, budget: &mut usize| -> Result<Option<Vec<u8>>, WireError> {
        match read_line(reader, budget) {
            Ok(v) => Ok(v),
            Err(LineError::Io(e)) => Err(WireError::Io(e)),
            Err(LineError::Eof) => Err(WireError::TruncatedHead(MAX_HEAD_BYTES - *budget)),
            Err(LineError::BareLf(l)) => Err(WireError::BareLf(lossy(&l))),
            Err(LineError::TooLong) => Err(WireError::HeadTooLarge),
        }
    };
    let status_line = match next(reader, &mut budget)? {
        None => return Err(WireError::EofBeforeHead),
        Some(l) => l,
    };
    let (version, status, reason) = parse_status_line(&status_line)?;
    let mut headers = Vec::new();
    loop {
        let line = match next(reader, &mut budget)? {
            None => return Err(WireError::TruncatedHead(MAX_HEAD_BYTES - budget)),
            Some(l) => l,
        };
        if line.is_empty() {
            break;
        }
        headers.push(parse_header_line(&line)?);
    }
    Ok((version, status, reason, headers))
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn parse_status_line(line: &[u8]) -> Result<(String, u16, String), WireError> {
    let bad = || WireError::BadStatusLine(lossy(line));
    // HTTP-version SP 3DIGIT SP reason-phrase  (RFC 9112 §4)
    if line.len() < 12 || &line[..5] != b"HTTP/" {
        return Err(bad());
    }
    let v = &line[5..8];
    if !(v[0].is_ascii_digit() && v[1] == b'.' && v[2].is_ascii_digit()) || line[8] != b' ' {
        return Err(bad());
    }
    let code = &line[9..12];
    if !code.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let status: u16 = std::str::from_utf8(code)
        .map_err(|_| bad())?
        .parse()
        .map_err(|_| bad())?;
    if status < 100 {
        return Err(bad());
    }
    let reason = match line.get(12) {
        None => String::new(), // tolerated: missing SP before an empty reason
        Some(b' ') => lossy(&line[13..]),
        Some(_) => return Err(bad()),
    };
    Ok((lossy(&line[..8]), status, reason))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_header_line(line: &[u8]) -> Result<(String, String), WireError> {
    let bad = || WireError::BadHeader(lossy(line));
    let colon = line.iter().position(|&b| b == b':').ok_or_else(bad)?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        // also rejects obs-fold continuation lines and whitespace before ':'
        return Err(bad());
    }
    let value = &line[colon + 1..];
    if value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(bad());
    }
    let value = lossy(value)
        .trim_matches(|c| c == ' ' || c == '\t')
        .to_owned();
    Ok((lossy(name), value))
}

fn read_exact_body<R: Read + ?Sized>(
    reader: &mut R,
    n: u64,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let start = out.len() as u64;
    let got = reader.take(n).read_to_end(out)? as u64;
    if got < n {
        return Err(WireError::TruncatedBody {
            expected: Some(n),
            got: out.len() as u64 - start,
        });
    }
    Ok(())
}

fn read_chunked<R: Read + ?Sized>(reader: &mut R, resp: &mut Response) -> Result<(), WireError> {
    let mut budget = MAX_HEAD_BYTES;
    let truncated = |resp: &Response| WireError::TruncatedBody {
        expected: None,
        got: resp.body.len() as u64,
    };
    loop {
        let line = match read_line(reader, &mut budget) {
            Ok(Some(l)) => l,
            Ok(None) | Err(LineError::Eof) => return Err(truncated(resp)),
            Err(LineError::Io(e)) => return Err(e.into()),
            Err(LineError::BareLf(l)) => return Err(WireError::BadChunkSize(lossy(&l))),
            Err(LineError::TooLong) => return Err(WireError::HeadTooLarge),
        };
        let size = parse_chunk_size(&line)?;
        if size == 0 {
            break;
        }
        resp.chunk_sizes.push(size);
        let before = resp.body.len() as u64;
        let got = reader.take(size).read_to_end(&mut resp.body)? as u64;
        if got < size {
            return Err(truncated(resp));
        }
        debug_assert_eq!(resp.body.len() as u64, before + size);
        let mut crlf = [0u8; 2];
        let mut filled = 0;
        while filled < 2 {
            let n = reader.read(&mut crlf[filled..])?;
            if n == 0 {
                return Err(truncated(resp));
            }
            filled += n;
        }
        if &crlf != b"\r\n" {
            return Err(WireError::BadChunkTerminator(crlf.to_vec()));
        }
    }
    // trailer-section CRLF (RFC 9112 §7.1.2)
    loop {
        let line = match read_line(reader, &mut budget) {
            Ok(Some(l)) => l,
            Ok(None) | Err(LineError::Eof) => return Err(truncated(resp)),
            Err(LineError::Io(e)) => return Err(e.into()),
            Err(LineError::BareLf(l)) => return Err(WireError::BareLf(lossy(&l))),
            Err(LineError::TooLong) => return Err(WireError::HeadTooLarge),
        };
        if line.is_empty() {
            return Ok(());
        }
        resp.trailers.push(parse_header_line(&line)?);
    }
}

/// `chunk-size [ chunk-ext ]` (RFC 9112 §7.1, §7.1.1).
fn parse_chunk_size(line: &[u8]) -> Result<u64, WireError> {
    let bad = || WireError::BadChunkSize(lossy(line));
    let hex_len = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if hex_len == 0 || hex_len > 16 {
        return Err(bad());
    }
    let rest = &line[hex_len..];
    let rest_trimmed: &[u8] = {
        let ws = rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        &rest[ws..]
    };
    if !rest_trimmed.is_empty() && rest_trimmed[0] != b';' {
        return Err(bad());
    }
    if rest.len() != rest_trimmed.len() && rest_trimmed.is_empty() {
        return Err(bad()); // trailing whitespace without an extension
    }
    let s = std::str::from_utf8(&line[..hex_len]).map_err(|_| bad())?;
    u64::from_str_radix(s, 16).map_err(|_| bad())
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
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::BrokenPipe
                    ) =>
                {
                    return Ok(PeerState::Closed);
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read(raw: &[u8]) -> Result<Response, WireError> {
        let mut r = raw;
        read_response(&mut r, false)
    }

    #[test]
    fn content_length() {
        let r = read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  b \r\n\r\nhello").unwrap();
        assert_eq!(r.version, "HTTP/1.1");
        assert_eq!(r.status, 200);
        assert_eq!(r.reason, "OK");
        assert_eq!(r.body, b"hello");
        assert_eq!(r.framing, Framing::ContentLength(5));
        assert_eq!(r.header("x-a"), Some("b"));
        assert_eq!(r.header("CONTENT-LENGTH"), Some("5"));
        assert!(r.keep_alive_signalled());
    }

    #[test]
    fn does_not_overread_pipelined() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\nHTTP/1.0 200 OK\r\n\r\nrest";
        let mut r = &raw[..];
        assert_eq!(read_response(&mut r, false).unwrap().body, b"a");
        let two = read_response(&mut r, false).unwrap();
        assert_eq!(two.body, b"b");
        assert_eq!(two.framing, Framing::Chunked);
        let three = read_response(&mut r, false).unwrap();
        assert_eq!(three.framing, Framing::CloseDelimited);
        assert_eq!(three.body, b"rest");
        assert!(!three.keep_alive_signalled());
        assert!(matches!(
            read_response(&mut r, false),
            Err(WireError::EofBeforeHead)
        ));
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let r = read(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
              3;name=val\r\nabc\r\nA ; x\r\n0123456789\r\n0;last\r\nX-Check: 1\r\nX-Other:  two \r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.framing, Framing::Chunked);
        assert_eq!(r.body, b"abc0123456789");
        assert_eq!(r.chunk_sizes, vec![3, 10]);
        assert_eq!(r.trailer("x-check"), Some("1"));
        assert_eq!(r.trailer("x-other"), Some("two"));
    }

    #[test]
    fn te_not_chunked_last_is_close_delimited() {
        let r = read(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\nContent-Length: 2\r\n\r\nxyz",
        )
        .unwrap();
        assert_eq!(r.framing, Framing::CloseDelimited);
        assert_eq!(r.body, b"xyz");
    }

    #[test]
    fn te_overrides_content_length() {
        let r = read(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.framing, Framing::Chunked);
        assert_eq!(r.body, b"ok");
    }

    #[test]
    fn no_body_statuses_and_head() {
        for raw in [
            &b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"[..],
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
        ] {
            let r = read(raw).unwrap();
            assert_eq!(r.framing, Framing::None);
            assert!(r.body.is_empty());
        }
        let mut raw = &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[..];
        let r = read_response(&mut raw, true).unwrap();
        assert_eq!(r.framing, Framing::None);
        assert_eq!(r.header("content-length"), Some("5"));
        assert_eq!(
            read_response(&mut raw, false).unwrap().framing,
            Framing::ContentLength(0)
        );
    }

    #[test]
    fn interim_responses() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let r = read(raw).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.interim.len(), 2);
        assert_eq!(r.interim[0].status, 100);
        assert_eq!(
            r.interim[1].headers,
            vec![("Link".to_owned(), "</a>".to_owned())]
        );

        let mut rd = &raw[..];
        let opts = ReadOptions {
            head_request: false,
            return_interim: true,
        };
        assert_eq!(read_response_with(&mut rd, opts).unwrap().status, 100);
        assert_eq!(read_response_with(&mut rd, opts).unwrap().status, 103);
        let fin = read_response_with(&mut rd, opts).unwrap();
        assert_eq!(fin.status, 200);
        assert!(fin.interim.is_empty());
    }

    #[test]
    fn duplicate_content_length() {
        let r = read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nok")
            .unwrap();
        assert_eq!(r.framing, Framing::ContentLength(2));
        assert!(matches!(
            read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"),
            Err(WireError::InvalidContentLength(_))
        ));
        for bad in ["-1", "+2", "0x10", "", "1 2", "99999999999999999999999"] {
            let raw = format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\n");
            assert!(
                matches!(
                    read(raw.as_bytes()),
                    Err(WireError::InvalidContentLength(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn malformed_status_lines() {
        for bad in [
            &b"HTTP/1.1 20 OK\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1  200 OK\r\n\r\n",
            b"HTTP/11 200 OK\r\n\r\n",
            b"http/1.1 200 OK\r\n\r\n",
            b"ICY 200 OK\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 099 Low\r\n\r\n",
            b"\r\n",
        ] {
            assert!(
                matches!(read(bad), Err(WireError::BadStatusLine(_))),
                "{:?}",
                lossy(bad)
            );
        }
        // empty reason is fine, with or without the SP
        assert_eq!(
            read(b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n")
                .unwrap()
                .reason,
            ""
        );
        assert_eq!(
            read(b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n")
                .unwrap()
                .status,
            200
        );
    }

    #[test]
    fn malformed_headers() {
        for bad in [
            &b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nName : v\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n: v\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA\x00: v\r\n\r\n",
        ] {
            assert!(
                matches!(read(bad), Err(WireError::BadHeader(_))),
                "{:?}",
                lossy(bad)
            );
        }
        assert!(matches!(
            read(b"HTTP/1.1 200 OK\nA: b\r\n\r\n"),
            Err(WireError::BareLf(_))
        ));
        assert!(matches!(
            read(b"HTTP/1.1 200 OK\r\nA: b\n\r\n"),
            Err(WireError::BareLf(_))
        ));
    }

    #[test]
    fn truncation() {
        assert!(matches!(read(b""), Err(WireError::EofBeforeHead)));
        assert!(matches!(
            read(b"HTTP/1.1 200"),
            Err(WireError::TruncatedHead(_))
        ));
        assert!(matches!(
            read(b"HTTP/1.1 200 OK\r\nA: b\r\n"),
            Err(WireError::TruncatedHead(_))
        ));
        match read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc") {
            Err(WireError::TruncatedBody { expected, got }) => {
                assert_eq!(expected, Some(10));
                assert_eq!(got, 3);
            }
            other => panic!("{other:?}"),
        }
        for raw in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nX: y\r\n",
        ] {
            assert!(
                matches!(
                    read(raw),
                    Err(WireError::TruncatedBody { expected: None, .. })
                ),
                "{:?}",
                lossy(raw)
            );
        }
    }

    #[test]
    fn bad_chunks() {
        let pre = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        for bad in [
            "zz\r\n",
            "\r\n",
            "-1\r\n",
            "0x5\r\n",
            "5 x\r\n",
            "5 \r\n",
            "11111111111111111\r\n",
            "5\n",
        ] {
            let raw = format!("{pre}{bad}hello\r\n0\r\n\r\n");
            assert!(
                matches!(read(raw.as_bytes()), Err(WireError::BadChunkSize(_))),
                "{bad:?}"
            );
        }
        let raw = format!("{pre}5\r\nhelloXX0\r\n\r\n");
        assert!(matches!(
            read(raw.as_bytes()),
            Err(WireError::BadChunkTerminator(_))
        ));
        // uppercase hex and leading zeros are fine
        let raw = format!("{pre}00A\r\n0123456789\r\n000\r\n\r\n");
        assert_eq!(read(raw.as_bytes()).unwrap().body, b"0123456789");
    }

    #[test]
    fn head_too_large() {
        let mut raw = b"HTTP/1.1 200 OK\r\n".to_vec();
        while raw.len() <= MAX_HEAD_BYTES {
            raw.extend_from_slice(b"X-Fill: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        raw.extend_from_slice(b"\r\n");
        assert!(matches!(read(&raw), Err(WireError::HeadTooLarge)));
    }

    #[test]
    fn connection_tokens() {
        let r = read(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        assert!(r.keep_alive_signalled());
        let r = read(b"HTTP/1.1 200 OK\r\nConnection: foo, close\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        assert!(r.connection_has("CLOSE"));
        assert!(!r.keep_alive_signalled());
    }

    #[test]
    fn conn_peek_until() {
        use std::net::TcpListener;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n")
                .unwrap();
            std::thread::sleep(Duration::from_millis(400));
            s.write_all(b"7\r\nsecond\n\r\n0\r\n\r\n").unwrap();
        });
        let mut c = Conn::connect(addr).unwrap();
        assert!(c.peek_until(b"first", Duration::from_secs(5)).unwrap());
        assert!(!c.peek_until(b"second", Duration::from_millis(50)).unwrap());
        let r = c.read_response(false).unwrap();
        assert_eq!(r.body, b"first\nsecond\n");
        assert_eq!(r.chunk_sizes, vec![6, 7]);
        t.join().unwrap();
    }

    #[test]
    fn conn_pipelined_and_close_detection() {
        use std::net::TcpListener;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf).unwrap();
            // two responses in one write, then a pause, then close
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb")
                .unwrap();
            std::thread::sleep(Duration::from_millis(300));
            drop(s);
        });
        let mut c = Conn::connect(addr).unwrap();
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(c.read_response(false).unwrap().body, b"a");
        assert_eq!(c.read_response(false).unwrap().body, b"b");
        assert!(c.buffered().is_empty());
        assert_eq!(
            c.wait_closed(Duration::from_millis(50)).unwrap(),
            PeerState::Open
        );
        assert_eq!(
            c.wait_closed(Duration::from_secs(5)).unwrap(),
            PeerState::Closed
        );
        t.join().unwrap();
    }
}
