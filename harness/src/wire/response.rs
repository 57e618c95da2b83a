//! [`Response`]: one response as read from the wire, owned, and the
//! [`Collect`] sink that builds it.

use super::decode::Sink;
use super::error::lossy;
use super::head::{Fields, Framing, Head};

/// A 1xx interim response (RFC 9110 §15.2) that preceded the final response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interim {
    /// The status code (100–199).
    pub status: u16,
    /// The reason phrase (may be empty).
    pub reason: String,
    /// Header fields in wire order.
    pub headers: Vec<(String, String)>,
}

/// One HTTP/1.x response as read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Protocol version from the status line, e.g. `"HTTP/1.1"`.
    pub version: String,
    /// The status code.
    pub status: u16,
    /// Reason phrase (may be empty).
    pub reason: String,
    /// Header fields in wire order, names as sent, values with surrounding
    /// whitespace trimmed.
    pub headers: Vec<(String, String)>,
    /// The decoded body (chunk framing removed).
    pub body: Vec<u8>,
    /// How the body was delimited.
    pub framing: Framing,
    /// Trailer fields after the last chunk (chunked only).
    pub trailers: Vec<(String, String)>,
    /// Sizes of the data chunks received, in order (chunked only; excludes the
    /// terminating zero-size chunk).
    pub chunk_sizes: Vec<u64>,
    /// 1xx interim responses skipped before this one (see
    /// [`ReadOptions`](super::decode::ReadOptions)).
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

/// A [`Sink`] that keeps everything: it builds a [`Response`].
#[derive(Debug, Default)]
pub struct Collect {
    response: Option<Response>,
    interim: Vec<Interim>,
}

impl Collect {
    /// The response, once its head has been decoded.
    pub fn into_response(self) -> Option<Response> {
        self.response
    }
}

impl Sink for Collect {
    fn interim(&mut self, head: &Head<'_>) {
        self.interim.push(Interim {
            status: head.status,
            reason: lossy(head.reason),
            headers: head.fields.to_vec(),
        });
    }

    fn head(&mut self, head: &Head<'_>, framing: Framing) {
        let body = match framing {
            // the length is the server's word: trust it only so far
            Framing::ContentLength(n) => Vec::with_capacity(n.min(1 << 24) as usize),
            _ => Vec::new(),
        };
        self.response = Some(Response {
            version: head.version.to_owned(),
            status: head.status,
            reason: lossy(head.reason),
            headers: head.fields.to_vec(),
            body,
            framing,
            trailers: Vec::new(),
            chunk_sizes: Vec::new(),
            interim: std::mem::take(&mut self.interim),
        });
    }

    fn chunk(&mut self, size: u64) {
        if let Some(r) = &mut self.response {
            r.chunk_sizes.push(size);
        }
    }

    fn data(&mut self, bytes: &[u8]) {
        if let Some(r) = &mut self.response {
            r.body.extend_from_slice(bytes);
        }
    }

    fn trailers(&mut self, fields: Fields<'_>) {
        if let Some(r) = &mut self.response {
            r.trailers = fields.to_vec();
        }
    }
}
