//! What an extension says about its response: the status line and header
//! block it hands to `SEND_RESPONSE_HEADER(_EX)`, and the body framing that
//! follows from them.
//!
//! Parsing is lenient in the way IIS and `mod_isapi` are: `\n` or `\r\n` line
//! ends, a trailing NUL counted in the length, a `Status:` header, a status
//! line with or without the `HTTP/1.x` prefix. Framing is strict: whatever the
//! extension writes, the bytes that reach the client are well framed.

use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::chunk::ChunkedBody;

pub(crate) use crate::ffi::trim_nul;

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct Head {
    /// The status.
    pub(crate) status: StatusCode,
    /// A reason phrase other than the status's canonical one.
    pub(crate) reason: Option<String>,
    /// The headers to send, without the framing ones.
    pub(crate) headers: HeaderMap,
    /// The body length the extension declared.
    pub(crate) content_length: Option<u64>,
    /// The extension frames its own chunks.
    pub(crate) chunked: bool,
    /// The extension sent `Connection: close`.
    pub(crate) close: bool,
}

/// Why a head was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum HeadError {
    #[error("invalid status {0:?}")]
    Status(String),
    #[error("invalid Content-Length {0:?}")]
    ContentLength(String),
    #[error("unsupported Transfer-Encoding {0:?}")]
    TransferEncoding(String),
}

/// Parses a status string such as `200 OK`, `HTTP/1.1 404 Not Found` or `302`.
pub(crate) fn parse_status(raw: &[u8]) -> Result<(StatusCode, Option<String>), HeadError> {
    let raw = trim_nul(raw);
    let mut s = raw.trim_ascii();
    if s.len() >= 5 && s[..5].eq_ignore_ascii_case(b"HTTP/") {
        s = split_space(s).map_or(&[][..], |(_, rest)| rest.trim_ascii_start());
    }
    let (code, reason) = match split_space(s) {
        Some((c, r)) => (c, Some(r.trim_ascii())),
        None => (s, None),
    };
    let status = parse_decimal(code)
        .and_then(|c| u16::try_from(c).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|c| c.as_u16() >= 200) // no 1xx: the host supports no upgrades
        .ok_or_else(|| HeadError::Status(String::from_utf8_lossy(raw).into_owned()))?;
    let reason = reason
        .filter(|r| !r.is_empty() && status.canonical_reason().map(str::as_bytes) != Some(*r))
        .map(|r| String::from_utf8_lossy(r).into_owned());
    Ok((status, reason))
}

/// A non-negative decimal number (`1*DIGIT`), as in `Content-Length` or a
/// port; the value is already trimmed.
pub(crate) fn parse_decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        let digit = b.wrapping_sub(b'0');
        (digit < 10)
            .then(|| n.checked_mul(10)?.checked_add(u64::from(digit)))
            .flatten()
    })
}

/// The comma-separated tokens of a header value (`Connection`, `Expect`),
/// trimmed.
pub(crate) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii)
}

/// Splits at the first space.
fn split_space(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = s.iter().position(|&b| b == b' ')?;
    Some((&s[..i], &s[i + 1..]))
}

/// One `(name, value)` header line, borrowed from the extension's bytes.
pub(crate) type HeaderLine<'a> = (&'a [u8], &'a [u8]);

/// Splits a header block into `(name, value)` lines, stopping at the blank
/// line. Returns the lines and the number of bytes consumed, including the
/// blank line, or `None` when there is no complete block.
pub(crate) fn split_header_block(raw: &[u8]) -> (Vec<HeaderLine<'_>>, Option<usize>) {
    let mut lines = HeaderLines::new(raw);
    let v = lines.by_ref().collect();
    (v, lines.end())
}

/// The `(name, value)` lines of a header block, up to the blank line; lines
/// that are not headers are skipped, as IIS does.
pub(crate) struct HeaderLines<'a> {
    raw: &'a [u8],
    pos: usize,
    end: Option<usize>,
}

impl<'a> HeaderLines<'a> {
    /// The lines of `raw`.
    pub(crate) fn new(raw: &'a [u8]) -> Self {
        HeaderLines {
            raw,
            pos: 0,
            end: None,
        }
    }

    /// Once the lines are all read: the bytes the block took, including the
    /// blank line, or `None` when it has none.
    pub(crate) fn end(&self) -> Option<usize> {
        self.end
    }
}

impl<'a> Iterator for HeaderLines<'a> {
    type Item = HeaderLine<'a>;

    fn next(&mut self) -> Option<HeaderLine<'a>> {
        while self.end.is_none() && self.pos < self.raw.len() {
            let rest = &self.raw[self.pos..];
            let line = match memchr::memchr(b'\n', rest) {
                Some(nl) => {
                    self.pos += nl + 1;
                    let line = trim_cr(&rest[..nl]);
                    if line.is_empty() {
                        self.end = Some(self.pos);
                        return None;
                    }
                    line
                }
                None => {
                    // A last line without its end: IIS accepts a header
                    // string without the final CRLF.
                    self.pos = self.raw.len();
                    trim_cr(rest)
                }
            };
            if let Some(kv) = split_header_line(line) {
                return Some(kv);
            }
        }
        None
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn split_header_line(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = memchr::memchr(b':', line)?;
    let name = &line[..colon];
    if name.is_empty() || name.iter().any(|b| b.is_ascii_whitespace()) {
        return None;
    }
    let value = line[colon + 1..].trim_ascii();
    Some((name, value))
}

/// The header block a `WriteClient` with no headers sent first may start
/// with (`headers\r\n\r\nbody`, as `mod_isapi` accepts): its lines and the
/// bytes it takes, or `None` when the data does not start with one.
pub(crate) fn leading_header_block(data: &[u8]) -> Option<(Vec<HeaderLine<'_>>, usize)> {
    let (lines, end) = split_header_block(data);
    let end = end?;
    // Every line before the blank one must be a header.
    let count = data[..end]
        .split(|&b| b == b'\n')
        .filter(|l| !trim_cr(l).is_empty())
        .count();
    (!lines.is_empty() && count == lines.len()).then_some((lines, end))
}

/// Builds a [`Head`] from a status and a header block.
pub(crate) fn build_head<'a>(
    status: Option<&[u8]>,
    header_lines: impl IntoIterator<Item = HeaderLine<'a>>,
) -> Result<Head, HeadError> {
    let (mut status, mut reason) = match status {
        Some(s) if !trim_nul(s).trim_ascii().is_empty() => parse_status(s)?,
        _ => (StatusCode::OK, None),
    };
    // The map's first allocation has room for six headers, enough for most
    // heads; counting the lines up front costs more than a rare regrowth.
    let mut headers = HeaderMap::new();
    let mut content_length = None;
    let mut chunked = false;
    let mut close = false;
    for (name, value) in header_lines {
        if name.eq_ignore_ascii_case(b"status") {
            (status, reason) = parse_status(value)?;
            continue;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let bad = || HeadError::ContentLength(String::from_utf8_lossy(value).into_owned());
            let n = parse_decimal(value).ok_or_else(bad)?;
            if content_length.is_some_and(|c| c != n) {
                return Err(bad());
            }
            content_length = Some(n);
            continue;
        }
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if !value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(HeadError::TransferEncoding(
                    String::from_utf8_lossy(value).into_owned(),
                ));
            }
            chunked = true;
            continue;
        }
        if name.eq_ignore_ascii_case(b"connection") {
            close |= tokens(value).any(|t| t.eq_ignore_ascii_case(b"close"));
            continue;
        }
        if name.eq_ignore_ascii_case(b"keep-alive") {
            continue; // hop-by-hop: the host owns the connection
        }
        match (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            (Ok(n), Ok(v)) => {
                headers.append(n, v);
            }
            _ => tracing::warn!(
                name = %String::from_utf8_lossy(name),
                "dropping invalid header from extension"
            ),
        }
    }
    if chunked {
        // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length.
        content_length = None;
    }
    Ok(Head {
        status,
        reason,
        headers,
        content_length,
        chunked,
        close,
    })
}

/// A response status whose body is always empty.
pub(crate) fn bodiless(status: StatusCode, head_request: bool) -> bool {
    head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
}

/// Validates and decodes the chunked stream an extension frames itself.
///
/// The grammar is the one a request's chunked body must follow
/// ([`ChunkedBody`], RFC 9112 §7.1). The decoded data is handed to hyper,
/// which frames it again for the client; the extension's chunk boundaries,
/// chunk extensions and trailers do not survive.
#[derive(Debug, Default)]
pub(crate) struct ChunkDecoder {
    body: ChunkedBody,
    done: bool,
}

/// Invalid chunk framing from an extension.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid chunked framing from extension: {0}")]
pub(crate) struct ChunkError(&'static str);

impl ChunkDecoder {
    /// Feeds bytes; appends the data they carry to `out`. Returns how many
    /// bytes came after the final chunk's trailer section: surplus, reported
    /// as such.
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut BytesMut) -> Result<usize, ChunkError> {
        if self.done {
            return Ok(input.len());
        }
        let (taken, ended) = self
            .body
            .feed(input, |data| out.extend_from_slice(data))
            .map_err(ChunkError)?;
        self.done = ended;
        Ok(input.len() - taken)
    }

    /// Has the final chunk and the trailer section been seen?
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_values() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"13"), Some(13));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"18446744073709551616",
            b"-1",
            b"+1",
            b"1 2",
            b"0x10",
            b"1\0",
        ] {
            assert_eq!(
                parse_decimal(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Surrounding blanks are trimmed before the number is read.
        let (lines, _) = split_header_block(b"Content-Length:  7 \r\n\r\n");
        assert_eq!(build_head(None, lines).unwrap().content_length, Some(7));
    }

    #[test]
    fn status_strings_are_parsed_leniently() {
        assert_eq!(parse_status(b"200 OK").unwrap(), (StatusCode::OK, None));
        assert_eq!(
            parse_status(b"404 Not Found\0").unwrap(),
            (StatusCode::NOT_FOUND, None)
        );
        assert_eq!(
            parse_status(b"HTTP/1.1 302 Moved").unwrap(),
            (StatusCode::FOUND, Some("Moved".into()))
        );
        assert_eq!(
            parse_status(b"500").unwrap().0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert!(parse_status(b"OK").is_err());
        assert!(parse_status(b"+200 OK").is_err());
        assert!(parse_status(b"99 Low").is_err());
    }

    #[test]
    fn header_blocks_split_at_the_blank_line() {
        let (lines, end) = split_header_block(b"A: 1\r\nB:2\n\r\nbody");
        assert_eq!(lines, vec![(&b"A"[..], &b"1"[..]), (&b"B"[..], &b"2"[..])]);
        assert_eq!(end, Some(12));
        let (lines, end) = split_header_block(b"A: 1\r\nB: 2");
        assert_eq!(lines.len(), 2);
        assert_eq!(end, None);
        assert_eq!(
            leading_header_block(b"Content-Type: text/plain\r\n\r\nhi"),
            Some((vec![(&b"Content-Type"[..], &b"text/plain"[..])], 28))
        );
        assert!(leading_header_block(b"hello world\r\n\r\n").is_none());
        assert!(leading_header_block(b"no block").is_none());
    }

    #[test]
    fn head_extracts_framing() {
        let (lines, _) =
            split_header_block(b"Content-Length: 5\r\nConnection: close\r\nX: y\r\n\r\n");
        let head = build_head(Some(b"201 Created"), lines).unwrap();
        assert_eq!(head.status, StatusCode::CREATED);
        assert_eq!(head.content_length, Some(5));
        assert!(head.close);
        assert!(!head.headers.contains_key("content-length"));
        assert_eq!(head.headers["x"], "y");

        let (lines, _) =
            split_header_block(b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
        let head = build_head(None, lines).unwrap();
        assert!(head.chunked);
        assert_eq!(head.content_length, None);

        let (lines, _) = split_header_block(b"Content-Length: x\r\n\r\n");
        assert!(build_head(None, lines).is_err());
        let (lines, _) = split_header_block(b"Status: 404 Nope\r\n\r\n");
        assert_eq!(
            build_head(None, lines).unwrap().status,
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn chunk_decoder_accepts_valid_streams_in_pieces() {
        let wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n";
        for split in 1..wire.len() {
            let mut d = ChunkDecoder::default();
            let mut out = BytesMut::new();
            assert_eq!(d.feed(&wire[..split], &mut out), Ok(0));
            assert_eq!(d.feed(&wire[split..], &mut out), Ok(0));
            assert!(d.is_done());
            assert_eq!(&out[..], b"hello world");
        }
    }

    #[test]
    fn chunk_decoder_rejects_garbage_and_reports_surplus() {
        let mut out = BytesMut::new();
        assert!(ChunkDecoder::default().feed(b"zz\r\n", &mut out).is_err());
        assert!(
            ChunkDecoder::default()
                .feed(b"3\r\nabcd\r\n", &mut out)
                .is_err()
        );
        assert!(ChunkDecoder::default().feed(b"3\nabc", &mut out).is_err());
        let mut d = ChunkDecoder::default();
        assert_eq!(d.feed(b"0\r\n\r\nextra", &mut out), Ok(5));
        assert!(d.is_done());
    }
}
