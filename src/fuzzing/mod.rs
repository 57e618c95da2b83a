//! Entry points for the fuzz targets in `fuzz/` (cargo feature `fuzzing`;
//! hidden, not an API). Each takes raw bytes or a plain structured input,
//! runs the host's own code on it, and asserts the invariants that code
//! promises; a broken one panics, which the fuzzer reports as a crash.
//!
//! - [`response_head`]: the status and header strings an extension passes
//!   to `SEND_RESPONSE_HEADER(_EX)`, parsed as the response writer parses
//!   them (the strings come from [`server_support_function`]'s decoding);
//! - [`chunked_response`]: an extension's self-chunked body;
//! - [`request_framing`]: a request's chunked body on the raw bytes;
//! - [`server_support_function`]: every `HSE_REQ_*` code, in process;
//! - [`request`]: a request head to its ECB and server variables, with
//!   the `GetServerVariable` size-probing protocol.

mod request;

use bytes::BytesMut;

use crate::chunk::{BodyFraming, ChunkedBody, Framing};
use crate::ffi::fuzz as ffi_fuzz;
use crate::response::{self, ChunkDecoder, HeaderLines};

pub use request::{Probe, RequestOutcome, RequestSpec, request};

/// One `ServerSupportFunction` call to build: the request code, and the
/// values its arguments are made of (each code takes what it needs).
#[derive(Debug, Clone, Default)]
pub struct SsfCall {
    /// `dwHSERequest`.
    pub code: u32,
    /// Strings (`None`: a NULL pointer).
    pub strings: [Option<Vec<u8>>; 3],
    /// Counts, sizes, flags and handles; `numbers[3] % 8` picks which
    /// optional pointer is NULL (0: `lpvBuffer`, 1: the second one).
    pub numbers: [u32; 4],
    /// A BOOL, or whether an optional pointer is given.
    pub flag: bool,
    /// `VECTOR_SEND`'s elements: type, bytes (`None`: NULL), offset, size.
    pub elements: Vec<(u32, Option<Vec<u8>>, u32, u32)>,
}

/// What [`server_support_function`] saw.
#[derive(Debug, Clone)]
pub struct SsfResult {
    /// The callback returned TRUE.
    pub ok: bool,
    /// The Win32 error of a FALSE return.
    pub error: u32,
    /// For `SEND_RESPONSE_HEADER(_EX)`: the status and header strings the
    /// host decoded.
    pub response_head: Option<(Option<Vec<u8>>, Vec<u8>)>,
}

/// Calls the host's `ServerSupportFunction` in process with arguments
/// built from `call`, and asserts that the decoded request is what was
/// built and that outputs stay in their buffers.
pub fn server_support_function(call: &SsfCall) -> SsfResult {
    let input = ffi_fuzz::SsfInput {
        code: call.code,
        strings: call.strings.clone(),
        numbers: call.numbers,
        flag: call.flag,
        elements: call
            .elements
            .iter()
            .map(|(kind, data, offset, size)| ffi_fuzz::ElementInput {
                kind: *kind,
                data: data.clone(),
                offset: *offset,
                size: *size,
            })
            .collect(),
    };
    let out = ffi_fuzz::server_support_function_call(&input);
    SsfResult {
        ok: out.ok,
        error: out.error,
        response_head: match out.seen {
            Some(ffi_fuzz::Seen::Header {
                status, headers, ..
            }) => Some((status, headers)),
            _ => None,
        },
    }
}

/// A response head the host accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedHead {
    /// The status code.
    pub status: u16,
    /// A reason phrase other than the canonical one.
    pub reason: Option<String>,
    /// The headers passed on (lowercase names), framing ones aside.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The declared Content-Length.
    pub content_length: Option<u64>,
    /// The extension frames its own chunks.
    pub chunked: bool,
    /// `Connection: close`.
    pub close: bool,
    /// Bytes after the blank line (body bytes sent with the head).
    pub body: Vec<u8>,
}

/// Parses a response head as the response writer does
/// (`RequestCtx::send_headers`), and asserts what a parsed head promises.
/// `Err` is the host's refusal, as text.
pub fn response_head(status: Option<&[u8]>, headers: &[u8]) -> Result<ParsedHead, String> {
    let headers = response::trim_nul(headers);
    // Every line the iterator yields is a well-formed header line.
    let mut count = 0;
    let mut all = HeaderLines::new(headers);
    for (name, value) in all.by_ref() {
        count += 1;
        assert!(!name.is_empty(), "empty header name");
        assert!(
            !name.iter().any(|b| b.is_ascii_whitespace() || *b == b':'),
            "name {name:?}"
        );
        assert_eq!(value, value.trim_ascii(), "untrimmed value");
        assert!(!value.contains(&b'\n'), "value spans lines");
    }
    let end = all.end();
    if let Some(end) = end {
        assert!(
            end <= headers.len() && headers[..end].ends_with(b"\n"),
            "block end {end}"
        );
    }
    assert!(count <= headers.split(|&b| b == b'\n').count());
    let (lines, end2) = response::split_header_block(headers);
    assert_eq!(
        (lines.len(), end2),
        (count, end),
        "split_header_block disagrees"
    );
    if let Some((lead, n)) = response::leading_header_block(headers) {
        assert_eq!(
            (lead.len(), Some(n)),
            (count, end),
            "leading block disagrees"
        );
    }

    let mut lines = HeaderLines::new(headers);
    let head = response::build_head(status, &mut lines).map_err(|e| e.to_string())?;
    let again = response::build_head(status, HeaderLines::new(headers)).map_err(|e| e.to_string());
    assert_eq!(
        again.map(|h| format!("{h:?}")),
        Ok(format!("{head:?}")),
        "not deterministic"
    );
    let code = head.status.as_u16();
    assert!((200..=999).contains(&code), "status {code}");
    if head.chunked {
        assert_eq!(head.content_length, None, "chunked with a length");
    }
    for name in [
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "status",
    ] {
        assert!(!head.headers.contains_key(name), "{name} passed on");
    }
    if let Some(r) = &head.reason {
        assert!(!r.is_empty());
        assert_ne!(
            Some(r.as_str()),
            head.status.canonical_reason(),
            "canonical reason kept"
        );
    }
    let body = match lines.end() {
        Some(end) if end < headers.len() => headers[end..].to_vec(),
        _ => Vec::new(),
    };
    if head.chunked {
        // The body bytes sent with the head go to the chunk validator.
        let _ = chunked_response(&[&body]);
    }
    Ok(ParsedHead {
        status: code,
        reason: head.reason.clone(),
        headers: head
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect(),
        content_length: head.content_length,
        chunked: head.chunked,
        close: head.close,
        body,
    })
}

/// A self-chunked body as the validator saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dechunked {
    /// The data the chunks carried.
    pub data: Vec<u8>,
    /// The final chunk and the trailers were seen.
    pub done: bool,
    /// Bytes after the end.
    pub surplus: usize,
}

/// Feeds an extension's self-chunked body to the validator in `pieces`, as
/// `WriteClient` calls; asserts that the outcome does not depend on how
/// the bytes were split (fed at once as the reference) and that the data
/// never outgrows the input. `Err` is the validator's refusal.
pub fn chunked_response(pieces: &[&[u8]]) -> Result<Dechunked, String> {
    let run = |pieces: &mut dyn Iterator<Item = &[u8]>| {
        let mut d = ChunkDecoder::default();
        let mut out = BytesMut::new();
        let mut surplus = 0;
        for p in pieces {
            surplus += d.feed(p, &mut out).map_err(|e| e.to_string())?;
        }
        Ok(Dechunked {
            data: out.to_vec(),
            done: d.is_done(),
            surplus,
        })
    };
    let split = run(&mut pieces.iter().copied());
    let whole: Vec<u8> = pieces.concat();
    let at_once = run(&mut std::iter::once(&whole[..]));
    assert_eq!(split, at_once, "the outcome depends on the split");
    if let Ok(d) = &split {
        assert!(d.data.len() + d.surplus <= whole.len());
        assert!(d.done || d.surplus == 0, "surplus before the end");
    }
    split
}

/// What [`request_framing`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramingOutcome {
    /// The connection was poisoned.
    pub poisoned: bool,
    /// The body data before the invalid line, if one was found.
    pub bad_at: Option<u64>,
}

/// The head [`request_framing`] sends before the body.
pub const FRAMING_HEAD: &[u8] =
    b"POST /f HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";

/// Sends [`FRAMING_HEAD`] and `body` through a connection's request framing
/// in pieces cut at `cuts` (the head's framing is handed over at the first
/// cut past the head, as hyper does once it parsed it, or `begin_at` cuts
/// later); `length` frames the body by Content-Length instead of chunked.
/// Asserts that the connection is poisoned exactly when the chunk grammar
/// (fed the whole body at once) breaks, and that the body reader's mark
/// sits at the data before the bad line.
pub fn request_framing(
    body: &[u8],
    cuts: &[usize],
    begin_at: usize,
    length: Option<u64>,
) -> FramingOutcome {
    let wire = [FRAMING_HEAD, body].concat();
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    at.push(FRAMING_HEAD.len());
    at.push(wire.len());
    at.sort_unstable();
    at.dedup();
    let f = Framing::default();
    let mut poisoned = false;
    let mut check = None;
    let mut begun = false;
    let mut past_head = 0;
    let mut from = 0;
    for to in at {
        poisoned |= f.received(&wire[from..to]);
        from = to;
        if to >= FRAMING_HEAD.len() && !begun {
            if past_head == begin_at % 4 || to == wire.len() {
                begun = true;
                let framing = length.map_or(BodyFraming::Chunked, BodyFraming::Length);
                // Nothing before a body can poison: the head is valid.
                check = f.begin_request(framing).expect("the request begins");
                assert_eq!(
                    check.is_some(),
                    length.is_none(),
                    "a check for chunked bodies only"
                );
            }
            past_head += 1;
        }
    }
    assert!(begun);
    let Some(check) = check else {
        assert!(!poisoned, "a Content-Length body poisoned the connection");
        return FramingOutcome {
            poisoned,
            bad_at: None,
        };
    };
    let mut reference = ChunkedBody::default();
    let bad_at = match reference.feed(body, |_| {}) {
        Ok(_) => None,
        Err(_) => Some(reference.data_before()),
    };
    // A bad line found while the head's framing was being handed over
    // poisons the connection without `received` saying so: the body
    // reader's mark is what counts.
    let marked = check.broken_at(u64::MAX - 1);
    assert_eq!(
        marked,
        bad_at.is_some(),
        "marked {marked}, but the grammar says {bad_at:?}"
    );
    assert!(!poisoned || marked, "poisoned without a mark");
    if let Some(d) = bad_at {
        assert!(check.broken_at(d), "not broken at {d}");
        assert!(d == 0 || !check.broken_at(d - 1), "broken before {d}");
    }
    let poisoned = marked;
    FramingOutcome { poisoned, bad_at }
}
