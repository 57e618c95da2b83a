//! Extensions that break the rules (fixtures/isapi-c/misbehave.c). The host
//! must never desync a connection: the next request on the same connection
//! gets its own correct response, or the connection is closed; never bytes of
//! the previous response.

use std::time::Duration;

use crate::support::*;

fn host() -> Host {
    Host::with_c_fixture("misbehave", &[])
}

const PROBE: &str = "/unknown-ssf";
const PROBE_BODY: &str = "ret=0 errno=87";

/// Send a probe request on `c`: either the connection is closed (write fails
/// or EOF before a response), or the response is exactly the probe's own.
/// Returns true if the connection was still usable.
fn assert_next_clean(c: &mut RawConn) -> bool {
    if c.try_send(&get_req(PROBE)).is_err() {
        return false;
    }
    match c.read_response() {
        Ok(r) => {
            assert_eq!(r.status, 200, "next response on the same connection: {r:?}");
            assert_eq!(text(&r), PROBE_BODY, "next response must be its own: {r:?}");
            true
        }
        Err(WireError::EofBeforeHead) => false,
        Err(WireError::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
            ) =>
        {
            false
        }
        Err(e) => panic!("garbage on the connection after a misbehaving response: {e}"),
    }
}

#[test]
fn unknown_support_function_is_invalid_parameter() {
    let host = host();
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/unknown-ssf"));
    assert_eq!(text(&r), "ret=0 errno=87");
    assert!(
        assert_next_clean(&mut c),
        "a normal response keeps the connection"
    );
}

#[test]
fn short_content_length_closes() {
    let host = host();
    let mut c = host.connect();
    c.send(&get_req("/short-cl"));
    match c.read_response() {
        Err(WireError::TruncatedBody { expected, got }) => {
            assert_eq!((expected, got), (Some(10), 5));
        }
        other => panic!("a short body must end with a closed connection: {other:?}"),
    }
    assert!(c.is_closed());
    assert!(!assert_next_clean(&mut c));
}

#[test]
fn long_content_length_is_truncated_and_connection_kept() {
    let host = host();
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/long-cl"));
    assert_eq!(r.status, 200);
    assert_eq!(r.framing, Framing::ContentLength(5));
    assert_eq!(text(&r), "01234");
    assert!(
        assert_next_clean(&mut c),
        "surplus bytes are dropped, the connection stays usable"
    );
}

#[test]
fn write_client_without_headers() {
    let host = host();
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/no-headers"));
    assert_eq!(r.status, 200);
    assert_eq!(r.framing, Framing::CloseDelimited);
    assert_eq!(text(&r), "raw body without headers\n");
    assert!(c.is_closed());
}

#[test]
fn error_before_anything_is_500() {
    let host = host();
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/error"));
    assert_eq!(r.status, 500, "{r:?}");
    assert_next_clean(&mut c);
}

#[test]
fn error_after_headers_closes() {
    let host = host();
    let mut c = host.connect();
    c.send(&get_req("/error-after-headers"));
    // HSE_STATUS_ERROR: the response may be cut short after what was written,
    // dropped entirely (nothing was flushed), or replaced by a 500 if nothing
    // went out yet; in every case the connection is closed.
    match c.read_response() {
        Err(WireError::TruncatedBody { expected, got }) => {
            assert_eq!(expected, Some(100));
            assert!(got <= 20, "{got}");
        }
        Err(WireError::EofBeforeHead) => {}
        Ok(r) if r.status == 500 => {}
        other => panic!("an error after headers must close the connection: {other:?}"),
    }
    assert!(c.is_closed());
}

#[test]
fn write_after_done_with_session_fails() {
    let host = host();
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/write-after-done"));
    assert_eq!(r.status, 200);
    assert_eq!(text(&r), "done\n");
    assert!(
        host.wait_for_log("misbehave.c: write-after-done ret=", Duration::from_secs(5)),
        "{}",
        host.stderr()
    );
    let log = host.stderr();
    assert!(
        log.contains("misbehave.c: write-after-done ret=0 errno="),
        "WriteClient after DONE_WITH_SESSION must return FALSE:\n{log}"
    );
    // The host's log lines go through a background writer: its WARN, logged
    // before WriteClient returned, may still trail the fixture's own line.
    assert!(
        host.wait_for_log_matching(
            |log| log
                .lines()
                .any(|l| l.contains("WARN") && l.contains("WriteClient")),
            Duration::from_secs(5)
        ),
        "the host must log the late WriteClient:\n{}",
        host.stderr()
    );
    // The late write never reaches this connection.
    assert!(assert_next_clean(&mut c));
    assert!(!c.buffered().windows(7).any(|w| w == b"GARBAGE"));
}

#[test]
fn bad_chunk_framing_from_extension_closes() {
    let host = host();
    let mut c = host.connect();
    c.send(&get_req("/bad-chunks"));
    let (raw, closed) = c.read_until_close();
    assert!(closed, "the host must close the connection");
    let s = String::from_utf8_lossy(&raw);
    // The host may have sent the head and the valid first chunk, or nothing.
    assert!(s.is_empty() || s.starts_with("HTTP/1.1 200"), "{s:?}");
    assert!(
        !s.contains("GARBAGE"),
        "invalid chunk data must never reach the client: {s:?}"
    );
    assert!(!s.contains("ZZ not a chunk"), "{s:?}");
    // Whatever was sent must not form a complete chunked response.
    let mut r = &raw[..];
    assert!(wire::read_response(&mut r, false).is_err(), "{s:?}");
    assert!(
        host.wait_for_log("chunk", Duration::from_secs(5)),
        "the framing error is logged:\n{}",
        host.stderr()
    );
}

#[test]
fn async_write_without_io_completion_is_invalid_parameter() {
    let host = host();
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/async-no-completion"));
    assert_eq!(r.status, 200);
    assert_eq!(
        text(&r),
        "ret=0 errno=87",
        "HSE_IO_ASYNC needs HSE_REQ_IO_COMPLETION first"
    );
    assert!(assert_next_clean(&mut c));
}

#[test]
fn done_with_session_twice() {
    let host = host();
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/double-done"));
    assert_eq!(text(&r), "once\n");
    assert!(
        host.wait_for_log("misbehave.c: double-done ret=", Duration::from_secs(5)),
        "{}",
        host.stderr()
    );
    assert!(
        host.stderr()
            .contains("misbehave.c: double-done ret=0 errno="),
        "a second DONE_WITH_SESSION must fail:\n{}",
        host.stderr()
    );
    // The host's log lines go through a background writer (see above).
    assert!(
        host.wait_for_log_matching(
            |log| log.lines().any(|l| l.contains("WARN")
                && (l.contains("ServerSupportFunction") || l.contains("DONE_WITH_SESSION"))),
            Duration::from_secs(5)
        ),
        "the host must log the second DONE_WITH_SESSION:\n{}",
        host.stderr()
    );
    assert!(assert_next_clean(&mut c));
}

#[test]
fn get_server_variable_null_size_is_invalid_parameter() {
    let host = host();
    let r = host.get("/gsv-null-size");
    assert_eq!(text(&r), "ret=0 errno=87");
}

#[test]
fn bare_lf_header_block_is_accepted() {
    let host = host();
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/lf-headers"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/x-lf"));
    assert_eq!(text(&r), "lf\n");
    assert!(assert_next_clean(&mut c));
}

#[test]
fn self_chunked_response_to_http10_client_is_dechunked() {
    let host = host();
    let mut c = host.connect();
    let r = c.roundtrip(b"GET /good-chunks HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_ne!(
        r.framing,
        Framing::Chunked,
        "HTTP/1.0 clients cannot receive chunked framing"
    );
    assert_eq!(text(&r), "hello, world");
}

#[test]
fn self_chunked_response_to_head() {
    let host = host();
    let mut c = host.connect();
    c.send(b"HEAD /good-chunks HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response_to_head().expect("HEAD response");
    assert_eq!(r.status, 200);
    assert!(
        assert_next_clean(&mut c),
        "no chunk bytes may follow a HEAD response"
    );
}

#[test]
fn good_chunks_pass_through() {
    let host = host();
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/good-chunks"));
    assert_eq!(r.status, 200);
    assert_eq!(r.framing, Framing::Chunked);
    assert_eq!(text(&r), "hello, world");
    assert!(
        assert_next_clean(&mut c),
        "valid self-chunked response keeps the connection"
    );
}

#[test]
fn misbehaving_responses_in_a_row() {
    // The host survives all of them, and each fresh connection works.
    let host = host();
    for path in [
        "/short-cl",
        "/long-cl",
        "/no-headers",
        "/error",
        "/error-after-headers",
        "/bad-chunks",
        "/good-chunks",
        "/write-after-done",
    ] {
        let mut c = host.connect();
        c.send(&get_req(path));
        let _ = c.read_response();
        let r = host.get(PROBE);
        assert_eq!(text(&r), PROBE_BODY, "after {path}");
    }
}
