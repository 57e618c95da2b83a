//! The response-head parser, fed the way extensions feed it: the status
//! and header strings of `HSE_REQ_SEND_RESPONSE_HEADER` (C strings) and
//! `_EX` (counted strings, which may hold a NUL), decoded in process by the
//! host's `ServerSupportFunction`; and the heads pyisapie builds from a
//! WSGI app's `start_response`, which the host must accept as sent.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use isapi_host::fuzzing::{self, SsfCall};
use libfuzzer_sys::fuzz_target;
use pyisapie::http as wsgi;
use windows_sys::Win32::System::Iis as iis;

/// The input: a mode byte, two count bytes, then the strings. Modes 0
/// and 1 take `status NUL headers` (seeds are real heads); mode 2 reads a
/// structured WSGI head from the rest.
#[derive(Arbitrary, Debug)]
enum Input {
    /// `SEND_RESPONSE_HEADER`: `lpvBuffer` and `lpdwDataType` as C strings.
    Legacy {
        status: Option<Vec<u8>>,
        headers: Option<Vec<u8>>,
    },
    /// `SEND_RESPONSE_HEADER_EX`: an `HSE_SEND_HEADER_EX_INFO`.
    Ex {
        status: Option<Vec<u8>>,
        cch_status: u32,
        headers: Option<Vec<u8>>,
        cch_headers: u32,
        keep_conn: u32,
    },
    /// A WSGI app's status and headers, as pyisapie sends them.
    Wsgi {
        status: String,
        headers: Vec<(String, String)>,
        known_length: Option<u64>,
        chunked_ok: bool,
    },
}

fn input(data: &[u8]) -> Option<Input> {
    let (&[mode, cs, ch], rest) = data.split_first_chunk::<3>()?;
    let (status, headers) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (Some(rest[..i].to_vec()), Some(rest[i + 1..].to_vec())),
        None => (None, Some(rest.to_vec())),
    };
    Some(match mode % 3 {
        0 => Input::Legacy { status, headers },
        1 => Input::Ex {
            status,
            cch_status: u32::from(cs),
            headers,
            cch_headers: if ch == 0 {
                0
            } else {
                u32::from(ch) * 16 + u32::from(cs)
            },
            keep_conn: u32::from(mode & 0x80),
        },
        _ => Input::arbitrary(&mut Unstructured::new(rest)).ok()?,
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = input(data) else { return };
    match input {
        Input::Legacy { status, headers } => {
            let call = SsfCall {
                code: iis::HSE_REQ_SEND_RESPONSE_HEADER,
                strings: [status, headers, None],
                numbers: [0, 0, 0, 2],
                ..SsfCall::default()
            };
            parse(&call);
        }
        Input::Ex {
            status,
            cch_status,
            headers,
            cch_headers,
            keep_conn,
        } => {
            let call = SsfCall {
                code: iis::HSE_REQ_SEND_RESPONSE_HEADER_EX,
                strings: [status, headers, None],
                numbers: [cch_status, cch_headers, keep_conn, 2],
                ..SsfCall::default()
            };
            parse(&call);
        }
        Input::Wsgi {
            status,
            headers,
            known_length,
            chunked_ok,
        } => wsgi_head(&status, &headers, known_length, chunked_ok),
    }
});

/// Decodes the call, then parses the strings the host decoded.
fn parse(call: &SsfCall) {
    let out = fuzzing::server_support_function(call);
    assert!(out.ok, "a response head call refused: error {}", out.error);
    let (status, headers) = out.response_head.expect("the decoded head");
    let _ = fuzzing::response_head(status.as_deref(), &headers);
}

/// pyisapie checks the app's status and headers, chooses the framing and
/// builds the head; the host must take it, with the same status, every
/// header, and the framing pyisapie chose.
fn wsgi_head(status: &str, headers: &[(String, String)], known: Option<u64>, chunked_ok: bool) {
    let Ok(code) = wsgi::parse_status(status) else {
        return;
    };
    if headers
        .iter()
        .any(|(n, v)| wsgi::check_header(n, v).is_err())
    {
        return;
    }
    let lengths: Vec<&String> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v)
        .collect();
    let app_length = match lengths.as_slice() {
        [] => None,
        [one] => match wsgi::parse_content_length(one) {
            Ok(n) => Some(n),
            Err(_) => return,
        },
        _ => return, // pyisapie's request layer refuses a repeated Content-Length
    };
    let framing = wsgi::choose_framing(code, app_length, known, || chunked_ok);
    let mut block = Vec::new();
    for (n, v) in headers {
        wsgi::push_header(&mut block, n, v);
    }
    wsgi::end_header_block(&mut block, framing, app_length.is_none());
    let status_bytes = wsgi::latin1_bytes(status);
    let parsed = fuzzing::response_head(Some(&status_bytes), &block);
    if code < 200 {
        assert!(parsed.is_err(), "a 1xx head accepted");
        return;
    }
    // A `Status` header from the app is an IIS head's status override:
    // what it does is the host's business, checked elsewhere.
    if headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("status"))
    {
        return;
    }
    let head =
        parsed.unwrap_or_else(|e| panic!("the host refused pyisapie's head: {e}\n{block:?}"));
    assert_eq!(head.status, code);
    assert!(head.body.is_empty(), "body bytes after pyisapie's head");
    match framing {
        wsgi::Framing::Chunked => assert!(head.chunked),
        wsgi::Framing::Length(n) => assert_eq!(head.content_length, Some(n)),
        wsgi::Framing::Close | wsgi::Framing::None => {
            assert!(!head.chunked);
            assert_eq!(head.content_length, app_length);
        }
    }
    for (n, v) in headers {
        let name = n.to_ascii_lowercase();
        if [
            "content-length",
            "connection",
            "keep-alive",
            "transfer-encoding",
        ]
        .contains(&name.as_str())
        {
            continue;
        }
        let value = wsgi::latin1_bytes(v);
        let value = value.trim_ascii();
        assert!(
            head.headers
                .iter()
                .any(|(hn, hv)| *hn == name && hv == value),
            "header {n}: {v:?} lost"
        );
    }
}
