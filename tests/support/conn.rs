//! Raw TCP clients: [`RawConn`] for byte-exact framing, keep-alive and
//! pipelining checks, one-shot requests, and request bytes.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use isapi_harness::wire::{self, PeerState, ReadOptions, Response, WireError};

/// Default read timeout of [`RawConn`].
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A raw HTTP/1.x client connection: the harness's [`wire::Conn`] (requests
/// written verbatim, responses read by its strict reader, which never consumes
/// bytes past the end of one response, so keep-alive and pipelining can be
/// checked), with conveniences that panic instead of returning errors.
#[derive(Debug)]
pub struct RawConn {
    conn: wire::Conn,
}

impl RawConn {
    /// Connect with TCP_NODELAY and a [`READ_TIMEOUT`] read timeout.
    pub fn connect(addr: SocketAddr) -> io::Result<RawConn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        Ok(RawConn {
            conn: wire::Conn::new(stream),
        })
    }

    /// The socket.
    pub fn stream(&self) -> &TcpStream {
        self.conn.stream()
    }

    /// The buffered connection (for custom raw reads that must not lose
    /// buffered bytes).
    pub fn reader(&mut self) -> &mut wire::Conn {
        &mut self.conn
    }

    /// Set the read timeout.
    pub fn set_read_timeout(&self, t: Option<Duration>) {
        self.conn.set_read_timeout(t).expect("set_read_timeout");
    }

    /// Write all bytes (panics on error).
    pub fn send(&mut self, bytes: &[u8]) {
        self.try_send(bytes).expect("send request bytes");
    }

    /// Write all bytes.
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.conn.send(bytes)
    }

    /// Half-close the sending side (the server sees EOF).
    pub fn shutdown_write(&self) {
        let _ = self.stream().shutdown(std::net::Shutdown::Write);
    }

    /// Read the next final response (1xx interim responses are collected into
    /// [`Response::interim`]).
    pub fn read_response(&mut self) -> Result<Response, WireError> {
        self.conn.read_response(false)
    }

    /// Read the response to a HEAD request (no body whatever the headers say).
    pub fn read_response_to_head(&mut self) -> Result<Response, WireError> {
        self.conn.read_response(true)
    }

    /// Read the next response, returning 1xx interim responses on their own.
    pub fn read_response_or_interim(&mut self) -> Result<Response, WireError> {
        self.conn.read_response_with(ReadOptions {
            head_request: false,
            return_interim: true,
        })
    }

    /// Send a request and read its response (panics on a wire error).
    pub fn roundtrip(&mut self, request: &[u8]) -> Response {
        self.send(request);
        match self.read_response() {
            Ok(r) => r,
            Err(e) => panic!(
                "reading response to {:?}: {e}",
                String::from_utf8_lossy(request)
            ),
        }
    }

    /// Read raw bytes until `n` bytes arrived, EOF, or the read timeout.
    pub fn read_raw(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        while out.len() < n {
            let want = (n - out.len()).min(buf.len());
            match self.conn.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(k) => out.extend_from_slice(&buf[..k]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        out
    }

    /// Read raw bytes until the peer closes (or resets) the connection or the
    /// read timeout expires. Returns the bytes and whether EOF/reset was seen.
    pub fn read_until_close(&mut self) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match self.conn.read(&mut buf) {
                Ok(0) => return (out, true),
                Ok(k) => out.extend_from_slice(&buf[..k]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if wire::is_peer_gone(e.kind()) => return (out, true),
                Err(_) => return (out, false),
            }
        }
    }

    /// Bytes received but not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        self.conn.buffered()
    }

    /// What the peer does within `timeout`: closes, stays silent, or sends
    /// unexpected bytes (buffered leftovers count as data).
    pub fn peer_state(&mut self, timeout: Duration) -> PeerState {
        self.conn.wait_closed(timeout).unwrap_or(PeerState::Closed)
    }

    /// True if the peer closes the connection within 3 s (a leftover or new
    /// byte also counts as "not closed").
    pub fn is_closed(&mut self) -> bool {
        self.peer_state(Duration::from_secs(3)) == PeerState::Closed
    }

    /// True if the connection stays open and silent for `timeout`.
    pub fn stays_open(&mut self, timeout: Duration) -> bool {
        self.peer_state(timeout) == PeerState::Open
    }
}

/// `GET path HTTP/1.1` with `Connection: close` on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// Send raw request bytes on a fresh connection and read one response
/// (panics on a wire error).
pub fn request(addr: SocketAddr, raw: &[u8]) -> Response {
    let mut c = RawConn::connect(addr).expect("connect");
    c.roundtrip(raw)
}

/// `GET path`, returning `(status, headers, body)`.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let r = get(addr, path);
    (r.status, r.headers, r.body)
}

/// A `POST` request with a Content-Length body (keep-alive).
pub fn post_request(addr: SocketAddr, path: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// Encode `body` with chunked transfer coding, in chunks of `chunk` bytes.
pub fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / chunk.max(1) * 10 + 8);
    for part in body.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Deterministic pseudo-random bytes (xorshift), for upload bodies.
pub fn pattern_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&b[..take]);
    }
    out
}

/// `GET path HTTP/1.1` request bytes (keep-alive, no body).
pub fn get_req(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

/// Body as UTF-8 (lossy), for assertions and messages.
pub fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}
