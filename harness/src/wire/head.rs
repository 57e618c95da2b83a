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
        self.fields
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| trim(h.value))
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
        // one pass: the last transfer coding, and the Content-Length (whose
        // errors count only without a Transfer-Encoding)
        let mut te_last: Option<&[u8]> = None;
        let mut len: Result<Option<u64>, &[u8]> = Ok(None);
        for h in self.fields.fields {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                let last = h
                    .value
                    .rsplit(|&b| b == b',')
                    .map(trim)
                    .find(|t| !t.is_empty());
                te_last = Some(last.unwrap_or(te_last.unwrap_or(b"")));
            } else if h.name.eq_ignore_ascii_case("content-length") && len.is_ok() {
                let v = trim(h.value);
                for part in v.split(|&b| b == b',') {
                    len = match (decimal(trim(part)), len) {
                        (Some(n), Ok(None)) => Ok(Some(n)),
                        (Some(n), Ok(Some(prev))) if prev == n => Ok(Some(n)),
                        _ => Err(v),
                    };
                    if len.is_err() {
                        break;
                    }
                }
            }
        }
        if let Some(last) = te_last {
            return Ok(if last.eq_ignore_ascii_case(b"chunked") {
                Framing::Chunked
            } else {
                Framing::CloseDelimited
            });
        }
        let len = len.map_err(|v| WireError::InvalidContentLength(lossy(v)))?;
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
    let Some(lf) = memchr::memchr(b'\n', buf) else {
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
    while let Some(lf) = memchr::memchr(b'\n', &buf[start..]) {
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

/// Runs `attempt` with 32 header slots on the stack, then with more on the
/// heap until they are enough.
fn with_slots<'b, T>(
    mut attempt: impl FnMut(&mut [Header<'b>]) -> Result<Attempt<T>, WireError>,
) -> Result<Option<(usize, T)>, WireError> {
    let mut stack: [Header<'b>; 32] = [EMPTY_HEADER; 32];
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
    let line = memchr::memchr(b'\n', buf).map_or(buf, |lf| &buf[..lf]);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Whether some LF in `block` is not preceded by CR.
fn has_bare_lf(block: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', block).any(|i| i == 0 || block[i - 1] != b'\r')
}

/// A non-empty run of decimal digits that fits a `u64`.
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let d = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
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
