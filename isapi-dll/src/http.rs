//! Pure HTTP helpers for the response side: validating what the application passes to
//! `start_response`, choosing the framing, and building the bytes the server gets.

/// Hop-by-hop headers (RFC 2616 §13.5.1, as waitress and gunicorn use the set). PEP 3333:
/// an application must not send them; we treat one as a fatal error.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
];

/// Whether `name` is `Status`, which an ISAPI server reads as the response's status
/// (CGI's convention) rather than sending it.
pub fn is_status_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("status")
}

/// Whether `name` is a hop-by-hop header.
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// Parses and checks a WSGI status line such as `200 OK`; returns the code.
pub fn parse_status(status: &str) -> Result<u16, String> {
    let bytes = status.as_bytes();
    let valid = bytes.len() >= 4
        && bytes[..3].iter().all(u8::is_ascii_digit)
        && bytes[3] == b' '
        && bytes[0] != b'0';
    if !valid {
        return Err(format!(
            "status {status:?} must be a 3-digit code, a space and a reason phrase"
        ));
    }
    if let Some(c) = status.chars().find(|c| c.is_control() || !is_latin1(*c)) {
        return Err(format!(
            "status {status:?} contains the invalid character {c:?}"
        ));
    }
    status[..3]
        .parse()
        .map_err(|_| format!("status {status:?} has no valid code"))
}

fn is_latin1(c: char) -> bool {
    u32::from(c) <= 0xFF
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Checks one response header from the application.
pub fn check_header(name: &str, value: &str) -> Result<(), String> {
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(format!("header name {name:?} is not a valid HTTP token"));
    }
    if is_hop_by_hop(name) {
        return Err(format!(
            "hop-by-hop header {name:?} is not allowed from a WSGI application (PEP 3333)"
        ));
    }
    // Printable ASCII and tabs pass on bytes; anything else is judged by character.
    if value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return Ok(());
    }
    if let Some(c) = value
        .chars()
        .find(|&c| (c.is_control() && c != '\t') || !is_latin1(c))
    {
        return Err(format!(
            "header {name:?} has a value with the invalid character {c:?}"
        ));
    }
    Ok(())
}

/// Parses an application's Content-Length value.
pub fn parse_content_length(value: &str) -> Result<u64, String> {
    let v = value.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "Content-Length {value:?} is not a non-negative integer"
        ));
    }
    v.parse()
        .map_err(|_| format!("Content-Length {value:?} is too large"))
}

/// Statuses whose responses never have a body (RFC 9110 §6.4.1).
pub fn status_has_no_body(code: u16) -> bool {
    (100..200).contains(&code) || code == 204 || code == 304
}

/// How the response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A Content-Length (the application's, or one we computed). Surplus bytes are cut;
    /// a short body closes the connection.
    Length(u64),
    /// `Transfer-Encoding: chunked`, framed by us (HTTP/1.1 keep-alive, unknown length).
    Chunked,
    /// Close-delimited: the connection ends the body.
    Close,
    /// The status forbids a body.
    None,
}

/// Chooses the framing. `app_length` is the application's Content-Length, `known_length`
/// the body length when we know it in advance, `chunked_ok` whether the client speaks
/// HTTP/1.1 and the connection may stay open.
pub fn choose_framing(
    code: u16,
    app_length: Option<u64>,
    known_length: Option<u64>,
    chunked_ok: impl FnOnce() -> bool,
) -> Framing {
    if status_has_no_body(code) {
        Framing::None
    } else if let Some(n) = app_length.or(known_length) {
        Framing::Length(n)
    } else if chunked_ok() {
        Framing::Chunked
    } else {
        Framing::Close
    }
}

/// Appends one checked ([`check_header`]) header line, `Name: value\r\n`, in latin-1.
pub fn push_header(block: &mut Vec<u8>, name: &str, value: &str) {
    push_latin1(block, name);
    block.extend_from_slice(b": ");
    push_latin1(block, value);
    block.extend_from_slice(b"\r\n");
}

/// Ends a header block of [`push_header`] lines for `SEND_RESPONSE_HEADER_EX`: the framing
/// header we add, then the blank line.
pub fn end_header_block(block: &mut Vec<u8>, framing: Framing, add_length: bool) {
    use std::io::Write as _;
    match framing {
        Framing::Length(n) if add_length => {
            let _ = write!(block, "Content-Length: {n}\r\n");
        }
        Framing::Chunked => block.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        _ => {}
    }
    block.extend_from_slice(b"\r\n");
}

fn push_latin1(out: &mut Vec<u8>, s: &str) {
    if s.is_ascii() {
        out.extend_from_slice(s.as_bytes());
    } else {
        // checked to be latin-1 by check_header / parse_status
        out.extend(
            s.chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')),
        );
    }
}

/// A checked (latin-1) string as latin-1 bytes, for the ECB (with room for a NUL).
pub fn latin1_bytes(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 1);
    push_latin1(&mut out, s);
    out
}

/// Appends one chunk (`size-hex CRLF data CRLF`) to `out`. `data` must not be empty.
pub fn push_chunk(out: &mut Vec<u8>, data: &[u8]) {
    use std::io::Write as _;
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk of a chunked body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(parse_status("200 OK"), Ok(200));
        assert_eq!(parse_status("404 "), Ok(404));
        assert_eq!(parse_status("599 Custom thing"), Ok(599));
        for bad in [
            "200",
            "200OK",
            "20 OK",
            "abc OK",
            "200 OK\r\nX: y",
            "099 x",
            "",
        ] {
            assert!(parse_status(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn headers() {
        assert!(check_header("Content-Type", "text/plain").is_ok());
        assert!(check_header("X-Latin", "caf\u{e9}").is_ok());
        for hop in [
            "Connection",
            "keep-alive",
            "TE",
            "Transfer-Encoding",
            "Upgrade",
            "Trailer",
        ] {
            let e = check_header(hop, "x").unwrap_err();
            assert!(e.contains("hop-by-hop"), "{e}");
        }
        assert!(check_header("X-Bad", "a\r\nInjected: 1").is_err());
        assert!(check_header("Bad Name", "v").is_err());
        assert!(check_header("", "v").is_err());
        assert!(check_header("X-Uni", "\u{263a}").is_err());
        assert!(check_header("X-C1", "a\u{85}b").is_err());
        assert!(check_header("X-Del", "a\u{7f}").is_err());
        assert!(check_header("X-Tab", "a\tb").is_ok());
        assert!(check_header("X-N\u{e9}", "v").is_err());
    }

    #[test]
    fn content_length() {
        assert_eq!(parse_content_length(" 12 "), Ok(12));
        assert!(parse_content_length("-1").is_err());
        assert!(parse_content_length("1e3").is_err());
        assert!(parse_content_length("").is_err());
    }

    #[test]
    fn framing_choice() {
        assert_eq!(
            choose_framing(200, Some(5), Some(9), || true),
            Framing::Length(5)
        );
        assert_eq!(
            choose_framing(200, None, Some(9), || true),
            Framing::Length(9)
        );
        assert_eq!(choose_framing(200, None, None, || true), Framing::Chunked);
        assert_eq!(choose_framing(200, None, None, || false), Framing::Close);
        assert_eq!(choose_framing(204, None, None, || true), Framing::None);
        assert_eq!(choose_framing(304, Some(10), None, || true), Framing::None);
    }

    #[test]
    fn blocks_and_chunks() {
        let block = |framing, add_length| {
            let mut b = Vec::new();
            push_header(&mut b, "Content-Type", "text/plain");
            push_header(&mut b, "X-Latin", "caf\u{e9}");
            end_header_block(&mut b, framing, add_length);
            b
        };
        assert_eq!(
            block(Framing::Length(3), true),
            b"Content-Type: text/plain\r\nX-Latin: caf\xe9\r\nContent-Length: 3\r\n\r\n"
        );
        assert_eq!(
            block(Framing::Length(3), false),
            b"Content-Type: text/plain\r\nX-Latin: caf\xe9\r\n\r\n"
        );
        let mut b = Vec::new();
        end_header_block(&mut b, Framing::Chunked, false);
        assert_eq!(b, b"Transfer-Encoding: chunked\r\n\r\n");
        let mut out = Vec::new();
        push_chunk(&mut out, &[b'x'; 26]);
        assert_eq!(&out[..4], b"1a\r\n");
        assert!(out.ends_with(b"x\r\n"));
    }
}
