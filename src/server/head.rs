//! The host's checks of a request head, before any extension sees it:
//! its size, `Host`, `Content-Length` and URL path (normalized, as IIS
//! routes and reports it).

use std::borrow::Cow;

use http::{HeaderValue, Request, StatusCode, Version, header};

use crate::config::ServeConfig;

/// A request head that passed the host's checks.
pub(crate) struct CheckedHead {
    /// The percent-decoded, normalized path.
    pub(crate) url: Vec<u8>,
    /// The declared body length.
    pub(crate) content_length: Option<u64>,
    /// A Transfer-Encoding header is present (the body is chunked).
    pub(crate) chunked: bool,
    /// `Expect: 100-continue`.
    pub(crate) expect_continue: bool,
    /// Does the client allow keep-alive?
    pub(crate) client_keep_alive: bool,
}

/// Checks a request head, in IIS's order; an `Err` is the status the host
/// refuses it with, and why.
pub(crate) fn check<B>(
    req: &Request<B>,
    cfg: &ServeConfig,
) -> Result<CheckedHead, (StatusCode, &'static str)> {
    let facts = HeadFacts::of(req);
    // IIS's MaxRequestBytes: the whole head, closing the connection.
    if facts.size > cfg.max_header {
        return Err((
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request head over --max-header",
        ));
    }
    // RFC 9112 §3.2: a 1.1 request without exactly one Host is a 400 ...
    if req.version() == Version::HTTP_11 && facts.hosts != 1 {
        return Err((
            StatusCode::BAD_REQUEST,
            "HTTP/1.1 request without exactly one Host header",
        ));
    }
    // ... and so is one whose Host is not a valid uri-host[:port] (an
    // HTTP/1.0 request may have several: each is checked).
    if facts.bad_host {
        return Err((StatusCode::BAD_REQUEST, "invalid Host header"));
    }
    // Content-Type is one value (RFC 9110 §8.3): two that differ leave the
    // media type to whichever layer reads which, so neither is guessed.
    if facts.conflicting_content_types {
        return Err((StatusCode::BAD_REQUEST, "conflicting Content-Type headers"));
    }
    // RFC 9112 §6.1: Content-Length with Transfer-Encoding is a smuggling
    // shape. hyper drops the Content-Length, reads the body as chunked and
    // closes the connection after the response, as the RFC allows.
    let content_length = match facts
        .content_length
        .map(|v| crate::response::parse_decimal(v.as_bytes().trim_ascii()))
    {
        None => None,
        Some(Some(n)) => Some(n),
        Some(None) => return Err((StatusCode::BAD_REQUEST, "invalid Content-Length")),
    };
    if content_length.is_some_and(|n| n > cfg.max_body) {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body over --max-body",
        ));
    }
    let decoded: Cow<'_, [u8]> =
        percent_encoding::percent_decode(req.uri().path().as_bytes()).into();
    // Route and report the normalized path, as IIS does: no control bytes,
    // no dot-segments, never above the root.
    let Some(url) = normalize_path(&decoded) else {
        return Err((StatusCode::BAD_REQUEST, "invalid URL path"));
    };
    Ok(CheckedHead {
        url,
        content_length,
        chunked: facts.chunked,
        expect_continue: facts.expect_continue,
        client_keep_alive: match req.version() {
            Version::HTTP_10 => facts.keep_alive,
            _ => !facts.close,
        },
    })
}

/// What the host checks in a request head, read in one pass over its
/// headers (a lookup per header name costs more for a typical head).
#[derive(Default)]
struct HeadFacts<'a> {
    /// The size of the head as it came on the wire (request line, headers
    /// and the blank line), for `--max-header`.
    size: usize,
    /// How many Host headers there are.
    hosts: usize,
    /// A Host header is not a valid `uri-host[:port]`.
    bad_host: bool,
    /// A Transfer-Encoding header is present.
    chunked: bool,
    /// The first Content-Length value.
    content_length: Option<&'a HeaderValue>,
    /// The first Content-Type value, and whether a later one differs.
    content_type: Option<&'a HeaderValue>,
    conflicting_content_types: bool,
    /// `Connection` tokens.
    close: bool,
    /// `Connection: keep-alive`.
    keep_alive: bool,
    /// `Expect: 100-continue`.
    expect_continue: bool,
}

impl<'a> HeadFacts<'a> {
    /// The facts of a request's head.
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
            } else if name == header::CONTENT_TYPE {
                match f.content_type {
                    Some(first) => f.conflicting_content_types |= first != value,
                    None => f.content_type = Some(value),
                }
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
