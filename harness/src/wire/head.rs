//! Response heads, trailer sections and chunk-size lines, parsed in place with
//! `httparse`, and the framing decision of RFC 9112 §6.3. No I/O: each parser
//! looks at the start of a byte slice and answers "complete after N bytes",
//! "need more bytes" (`Ok(None)`) or what is wrong.
//!
//! `httparse` is more lenient than a judge of servers should be, so every
//! complete line is also held to the strict rules: CRLF line ends (no bare LF),
//! no empty lines before the status line, a status code of at least 100, a
//! chunk size before any whitespace, whitespace only before an extension. An
//! error is reported for the first bad line, in wire order, and only once that
//! line is complete: a line cut short by the end of the input is "need more".

use httparse::{EMPTY_HEADER, Header, Status};

use super::error::{MAX_HEAD_BYTES, WireError, lossy};

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

/// Header (or trailer) fields in wire order, borrowed from the bytes they were
/// parsed from. Values are returned without surrounding spaces and tabs.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    fields: &'a [Header<'a>],
}

impl<'a> Fields<'a> {
    /// Every field as `(name as sent, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        self.fields.iter().map(|h| (h.name, trim(h.value)))
    }

    /// How many fields there are.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The first value of field `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.all(name).next()
    }

    /// Every value of field `name` (case-insensitive), in wire order.
    pub fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Whether the comma-separated values of field `name` hold `token`
    /// (case-insensitive), as `Connection: keep-alive, close` holds `close`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.all(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
    }

    /// The fields as owned `(name, value)` strings (values decoded lossily).
    pub fn to_vec(&self) -> Vec<(String, String)> {
        self.iter().map(|(n, v)| (n.to_owned(), lossy(v))).collect()
    }
}

/// A status line and its header section.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// `"HTTP/1.0"` or `"HTTP/1.1"`.
    pub version: &'static str,
    /// The status code (100 or more).
    pub status: u16,
    /// The reason phrase as sent (may be empty).
    pub reason: &'a [u8],
    /// The header fields.
    pub fields: Fields<'a>,
}

impl Head<'_> {
    /// How the body that follows this head is delimited (RFC 9112 §6.3): no
    /// body for a response to HEAD (`head_request`) and for 1xx, 204 and 304;
    /// `Transfer-Encoding` with `chunked` last: chunked, and any other
    /// transfer coding: close-delimited; otherwise `Content-Length` (identical
    /// duplicates tolerated, RFC 9110 §8.6); otherwise close-delimited.
    pub fn framing(&self, head_request: bool) -> Result<Framing, WireError> {
        let status = self.status;
        if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(Framing::None);
        }
        let mut te = self.fields.all("transfer-encoding").peekable();
        if te.peek().is_some() {
            let last = te
                .flat_map(|v| v.split(|&b| b == b','))
                .map(trim)
                .filter(|t| !t.is_empty())
                .last()
                .unwrap_or(b"");
            return Ok(if last.eq_ignore_ascii_case(b"chunked") {
                Framing::Chunked
            } else {
                Framing::CloseDelimited
            });
        }
        let mut len: Option<u64> = None;
        for v in self.fields.all("content-length") {
            for part in v.split(|&b| b == b',') {
                let part = trim(part);
                let n = std::str::from_utf8(part)
                    .ok()
                    .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|p| p.parse::<u64>().ok())
                    .ok_or_else(|| WireError::InvalidContentLength(lossy(v)))?;
                match len {
                    Some(prev) if prev != n => {
                        return Err(WireError::InvalidContentLength(lossy(v)));
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
}

/// Parses the response head at the start of `buf` and hands it to `f`.
/// Returns the head's length (through its empty line) and what `f` returned,
/// or `None` if the head is not complete yet.
pub fn parse_head<R>(
    buf: &[u8],
    f: impl FnOnce(&Head<'_>) -> R,
) -> Result<Option<(usize, R)>, WireError> {
    if matches!(buf.first(), Some(b'\r' | b'\n')) {
        // httparse skips empty lines before a status line; a server must not send any
        check_lines(buf, Block::Head, MAX_HEAD_BYTES)?;
        return Ok(None);
    }
    let mut f = Some(f);
    with_slots(|slots| {
        let mut resp = httparse::Response::new(slots);
        match resp.parse(buf) {
            Ok(Status::Complete(len)) => {
                let status = resp.code.unwrap_or(0);
                if status < 100 || len > MAX_HEAD_BYTES || has_bare_lf(&buf[..len]) {
                    check_lines(&buf[..len], Block::Head, MAX_HEAD_BYTES)?;
                }
                let line = first_line(buf);
                let head = Head {
                    version: if resp.version == Some(0) {
                        "HTTP/1.0"
                    } else {
                        "HTTP/1.1"
                    },
                    status,
                    // httparse drops a reason with obs-text: take it as sent
                    reason: line.get(13..).unwrap_or_default(),
                    fields: Fields {
                        fields: resp.headers,
                    },
                };
                Ok(Attempt::Done(len, f.take().map(|f| f(&head))))
            }
            Ok(Status::Partial) => {
                check_lines(buf, Block::Head, MAX_HEAD_BYTES)?;
                Ok(Attempt::Partial)
            }
            Err(httparse::Error::TooManyHeaders) => Ok(Attempt::TooMany),
            Err(_) => {
                // reported once the bad line is complete, after any earlier bad line
                check_lines(buf, Block::Head, MAX_HEAD_BYTES)?;
                Ok(Attempt::Partial)
            }
        }
    })
    .map(|done| done.and_then(|(len, r)| Some((len, r?))))
}

/// Parses the trailer section (RFC 9112 §7.1.2) at the start of `buf`: field
/// lines up to an empty line, at most `limit` bytes. Returns its length and
/// what `f` returned, or `None` if it is not complete yet.
pub fn parse_trailers<R>(
    buf: &[u8],
    limit: usize,
    f: impl FnOnce(Fields<'_>) -> R,
) -> Result<Option<(usize, R)>, WireError> {
    let mut f = Some(f);
    with_slots(|slots| match httparse::parse_headers(buf, slots) {
        Ok(Status::Complete((len, fields))) => {
            if len > limit || has_bare_lf(&buf[..len]) {
                check_lines(&buf[..len], Block::Trailers, limit)?;
            }
            Ok(Attempt::Done(len, f.take().map(|f| f(Fields { fields }))))
        }
        Ok(Status::Partial) => {
            check_lines(buf, Block::Trailers, limit)?;
            Ok(Attempt::Partial)
        }
        Err(httparse::Error::TooManyHeaders) => Ok(Attempt::TooMany),
        Err(_) => {
            check_lines(buf, Block::Trailers, limit)?;
            Ok(Attempt::Partial)
        }
    })
    .map(|done| done.and_then(|(len, r)| Some((len, r?))))
}

/// Parses the chunk-size line (`chunk-size [ chunk-ext ] CRLF`, RFC 9112 §7.1,
/// §7.1.1) at the start of `buf`, at most `limit` bytes. Returns the line's
/// length with its CRLF and the chunk size, or `None` if the line is not
/// complete yet.
pub fn parse_chunk_line(buf: &[u8], limit: usize) -> Result<Option<(usize, u64)>, WireError> {
    let Some(lf) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > limit {
            return Err(WireError::HeadTooLarge);
        }
        return Ok(None);
    };
    if lf + 1 > limit {
        return Err(WireError::HeadTooLarge);
    }
    let raw = &buf[..lf];
    let Some(line) = raw.strip_suffix(b"\r") else {
        return Err(WireError::BadChunkSize(lossy(raw)));
    };
    let bad = || WireError::BadChunkSize(lossy(line));
    // httparse takes an empty size as 0 and allows trailing whitespace: not here
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let rest = &line[digits..];
    let ext = trim(rest);
    if digits == 0 || !(rest.is_empty() || ext.first() == Some(&b';')) {
        return Err(bad());
    }
    match httparse::parse_chunk_size(&buf[..=lf]) {
        Ok(Status::Complete((n, size))) if n == lf + 1 => Ok(Some((n, size))),
        _ => Err(bad()),
    }
}

/// Which kind of block [`check_lines`] looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    /// A status line, then header fields.
    Head,
    /// Trailer fields only.
    Trailers,
}

/// Holds every complete line of `buf` to the strict rules, in order: returns
/// the first violation, or `HeadTooLarge` once the lines pass `limit` bytes.
/// `Ok(())` means every complete line is good and the block has not ended; a
/// block that ended with every line good, which httparse refused anyway, is
/// reported as a bad header block.
fn check_lines(buf: &[u8], block: Block, limit: usize) -> Result<(), WireError> {
    let mut start = 0;
    let mut first = true;
    while let Some(lf) = buf[start..].iter().position(|&b| b == b'\n') {
        let end = start + lf;
        if end + 1 > limit {
            return Err(WireError::HeadTooLarge);
        }
        let raw = &buf[start..end];
        let Some(line) = raw.strip_suffix(b"\r") else {
            return Err(WireError::BareLf(lossy(raw)));
        };
        if first && block == Block::Head {
            check_status_line(line)?;
        } else if line.is_empty() {
            return Err(WireError::BadHeader(lossy(&buf[..end])));
        } else {
            check_field_line(line)?;
        }
        first = false;
        start = end + 1;
    }
    if buf.len() > limit {
        return Err(WireError::HeadTooLarge);
    }
    Ok(())
}

/// `HTTP/1.x SP 3DIGIT [SP reason-phrase]` with a code of at least 100.
fn check_status_line(line: &[u8]) -> Result<(), WireError> {
    let mut text = Vec::with_capacity(line.len() + 4);
    text.extend_from_slice(line);
    text.extend_from_slice(b"\r\n\r\n");
    let mut resp = httparse::Response::new(&mut []);
    match resp.parse(&text) {
        Ok(Status::Complete(_)) if resp.code.is_some_and(|c| c >= 100) => Ok(()),
        _ => Err(WireError::BadStatusLine(lossy(line))),
    }
}

/// `token ":" OWS field-value OWS`, without obs-fold.
fn check_field_line(line: &[u8]) -> Result<(), WireError> {
    let mut text = Vec::with_capacity(line.len() + 4);
    text.extend_from_slice(line);
    text.extend_from_slice(b"\r\n\r\n");
    match httparse::parse_headers(&text, &mut [EMPTY_HEADER; 1]) {
        Ok(Status::Complete(_)) => Ok(()),
        _ => Err(WireError::BadHeader(lossy(line))),
    }
}

/// What one parse with a given number of header slots gave.
enum Attempt<T> {
    Partial,
    /// More fields than slots: try again with more.
    TooMany,
    Done(usize, T),
}

/// Runs `attempt` with 48 header slots on the stack, then with more on the
/// heap until they are enough.
fn with_slots<'b, T>(
    mut attempt: impl FnMut(&mut [Header<'b>]) -> Result<Attempt<T>, WireError>,
) -> Result<Option<(usize, T)>, WireError> {
    let mut stack: [Header<'b>; 48] = [EMPTY_HEADER; 48];
    let mut result = attempt(&mut stack)?;
    let mut slots = 512;
    loop {
        match result {
            Attempt::Partial => return Ok(None),
            Attempt::Done(len, t) => return Ok(Some((len, t))),
            Attempt::TooMany => {
                let mut heap = vec![EMPTY_HEADER; slots];
                result = attempt(&mut heap)?;
                slots *= 4;
            }
        }
    }
}

/// The first line of `buf`, without its line end.
fn first_line(buf: &[u8]) -> &[u8] {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Whether some LF in `block` is not preceded by CR.
fn has_bare_lf(block: &[u8]) -> bool {
    block
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || block[i - 1] != b'\r'))
}

/// `v` without leading and trailing spaces and tabs.
fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| b != b' ' && b != b'\t');
    let end = v.iter().rposition(|&b| b != b' ' && b != b'\t');
    match (start, end) {
        (Some(s), Some(e)) => &v[s..=e],
        _ => &[],
    }
}
