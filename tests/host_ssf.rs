//! One test per ServerSupportFunction request (fixtures/isapi-c/ssf.c).

use std::io::Read;
use std::time::{Duration, Instant};

use crate::support::*;

fn ssf_host() -> Host {
    Host::with_c_fixture("ssf", &[])
}

#[test]
fn send_url_redirect_resp() {
    let host = ssf_host();
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/redirect"));
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(r.header("location"), Some("/elsewhere"));
    // The redirect response is self-delimited: the connection stays usable.
    let r = c.roundtrip(&get_req("/target"));
    assert_eq!(text(&r), "target");
}

/// IIS documents HSE_REQ_SEND_URL as "identical to
/// HSE_REQ_SEND_URL_REDIRECT_RESP": a 302 to the URL (IIS 6.0 SDK, ms524477).
/// (Apache's mod_isapi does an internal redirect instead; the host follows IIS.)
#[test]
fn send_url_is_a_302_like_iis() {
    let host = ssf_host();
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/send-url"));
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(r.header("location"), Some("/target"));
    // Following the redirect on the same connection works.
    let r = c.roundtrip(&get_req("/target"));
    assert_eq!(text(&r), "target");
}

#[test]
fn legacy_send_response_header_close_delimited() {
    let host = ssf_host();
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/legacy"));
    assert_eq!(r.status, 200);
    assert_eq!(r.reason, "OK");
    assert_eq!(r.header("x-legacy"), Some("1"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.framing, Framing::CloseDelimited);
    assert_eq!(text(&r), "legacy body, close-delimited\n");
    assert!(c.is_closed());
}

#[test]
fn legacy_send_response_header_with_body() {
    let host = ssf_host();
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/legacy-body"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-legacy"), Some("2"));
    assert_eq!(r.framing, Framing::ContentLength(15));
    assert_eq!(text(&r), "body-in-header\n");
    let r = c.roundtrip(&get_req("/target"));
    assert_eq!(
        text(&r),
        "target",
        "connection kept after a complete legacy response"
    );
}

fn data_file(tag: &str, len: usize) -> (std::path::PathBuf, Vec<u8>) {
    let dir = temp_dir(tag);
    let path = dir.join("data.bin");
    let data = pattern_bytes(len, 42);
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

#[test]
fn transmit_file_async_with_head_tail_offset() {
    let host = ssf_host();
    let (path, data) = data_file("transmit", 300_000);
    let mut c = host.connect();
    let p = host_path(&path);
    let r = c.roundtrip(&get_req(&format!(
        "/transmit-file?path={p}&offset=1000&len=200000"
    )));
    assert_eq!(r.status, 200, "{}", text(&r));
    let mut want = data[1000..201_000].to_vec();
    want.extend_from_slice(b"--tail--\n");
    assert_eq!(r.body.len(), want.len());
    assert!(r.body == want, "transmitted bytes differ");
    // Whole file (BytesToWrite 0), same connection.
    let r = c.roundtrip(&get_req(&format!("/transmit-file?path={p}")));
    let mut want = data.clone();
    want.extend_from_slice(b"--tail--\n");
    assert!(r.body == want, "whole-file transmit differs");
    assert!(c.stays_open(Duration::from_millis(200)));
}

#[test]
fn transmit_file_sync() {
    let host = ssf_host();
    let (path, data) = data_file("transmit-sync", 70_000);
    let mut c = host.connect();
    let r = c.roundtrip(&get_req(&format!(
        "/transmit-file-sync?path={}&offset=5&len=60000",
        host_path(&path)
    )));
    assert_eq!(r.status, 200, "{}", text(&r));
    let mut want = data[5..60_005].to_vec();
    want.extend_from_slice(b"--tail--\n");
    assert!(r.body == want, "transmitted bytes differ");
}

#[test]
fn vector_send_memory_and_file() {
    let host = ssf_host();
    let (path, data) = data_file("vector", 100_000);
    let mut c = host.connect();
    let r = c.roundtrip(&get_req(&format!(
        "/vector?path={}&offset=10&len=50000",
        host_path(&path)
    )));
    assert_eq!(r.status, 200, "{}", text(&r));
    let mut want = b"alpha-beta-".to_vec();
    want.extend_from_slice(&data[10..50_010]);
    assert_eq!(r.framing, Framing::ContentLength(want.len() as u64));
    assert!(r.body == want, "vector body differs");
    let r = c.roundtrip(&get_req("/target"));
    assert_eq!(text(&r), "target");
}

#[test]
fn map_url_to_path_with_size_probing() {
    let root = temp_dir("docroot");
    let root_s = host_path(&root);
    let host = Host::with_c_fixture("ssf", &["--doc-root", &root_s]);
    let r = host.get("/map?/some/dir/file.txt");
    let want_path = host_join(&root_s, "some/dir/file.txt");
    assert_eq!(
        text(&r),
        format!(
            "probe_errno=122 needed={n} size={n} path={want_path}\n",
            n = want_path.len() + 1
        )
    );
}

#[test]
fn map_url_to_path_cannot_escape_the_doc_root() {
    let root = temp_dir("docroot-escape");
    let root_s = host_path(&root);
    let host = Host::with_c_fixture("ssf", &["--doc-root", &root_s]);
    for url in [
        "/a/../../../etc/passwd",
        "/../etc/passwd",
        "/a/..\\..\\etc/passwd",
    ] {
        let body = text(&host.get(&format!("/map?{url}")));
        let path = body
            .split_once("path=")
            .map(|(_, p)| p.trim_end())
            .unwrap_or("");
        assert!(
            path.starts_with(&root_s),
            "{url} mapped outside the doc root: {body:?}"
        );
        assert!(!path.contains(".."), "{url}: {body:?}");
    }
}

#[test]
fn map_url_to_path_ex() {
    let root = temp_dir("docroot-ex");
    let root_s = host_path(&root);
    let host = Host::with_c_fixture("ssf", &["--doc-root", &root_s]);
    let r = host.get("/mapex?/some/file.txt");
    let body = text(&r);
    assert!(
        body.starts_with(&format!(
            "path={} flags=",
            host_join(&root_s, "some/file.txt")
        )),
        "MAP_URL_TO_PATH_EX: {body:?}"
    );
}

#[test]
fn is_keep_conn() {
    let host = ssf_host();
    let mut c = host.connect();
    assert_eq!(text(&c.roundtrip(&get_req("/keepconn"))), "keep=1");
    let r = request(
        host.addr(),
        b"GET /keepconn HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(text(&r), "keep=0");
}

#[test]
fn is_connected() {
    let host = ssf_host();
    assert_eq!(text(&host.get("/connected")), "connected=1");
}

#[test]
fn close_connection() {
    let host = ssf_host();
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/close"));
    assert_eq!(text(&r), "closing\n");
    assert_eq!(r.framing, Framing::ContentLength(8));
    assert!(c.is_closed());
}

#[test]
fn abortive_close() {
    let host = ssf_host();
    let mut c = host.connect();
    c.send(&get_req("/abort"));
    match c.read_response() {
        Err(WireError::TruncatedBody { expected, got }) => {
            assert_eq!(expected, Some(100));
            assert!(got <= 10, "got {got} bytes");
        }
        Err(WireError::Io(e)) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
            ),
            "expected a reset, got {e}"
        ),
        other => panic!("ABORTIVE_CLOSE must cut the response short: {other:?}"),
    }
    assert!(c.is_closed());
    // The host is unaffected.
    assert_eq!(text(&host.get("/target")), "target");
}

#[test]
fn set_flush_flag_streams_pieces() {
    let host = ssf_host();
    let mut c = host.connect();
    c.send(&get_req("/flush"));
    // Read raw bytes until the first piece arrives, then time the rest.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let first_at = loop {
        let n = c.stream().read(&mut buf).expect("read");
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        if got.windows(8).any(|w| w == b"piece-1\n") {
            break Instant::now();
        }
    };
    assert!(
        !got.windows(5).any(|w| w == b"done\n"),
        "the first piece must arrive before the last one is written"
    );
    while !got.ends_with(b"done\n") {
        let n = c.stream().read(&mut buf).expect("read");
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let elapsed = first_at.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400),
        "pieces are written 300 ms apart, so the first must be flushed early (gap {elapsed:?})"
    );
    let mut r = &got[..];
    let resp = wire::read_response(&mut r, false).expect("valid response");
    assert_eq!(text(&resp), "piece-1\npiece-2\ndone\n");
}

#[test]
fn append_log_parameter_and_log_data() {
    let host = ssf_host();
    let r = host.get("/logparam");
    assert_eq!(text(&r), "logged\n");
    // The access log goes to stdout; IIS logs both in the query.
    let logged = |log: &str| {
        log.lines().any(|l| {
            l.contains("\"GET /logparam?fixture-log-param&fixture-log-data HTTP/1.1\" 200 ")
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !logged(&host.stdout()) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        logged(&host.stdout()),
        "the access log line must carry the log parameter and lpszLogData:\n{}",
        host.stdout()
    );
}

#[test]
fn send_custom_error() {
    let host = ssf_host();
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/custom-error"));
    assert_eq!(r.status, 404, "{r:?}");
    // The custom error page is self-delimited; if kept alive, the next
    // response must be clean.
    if r.keep_alive_signalled() {
        assert_eq!(text(&c.roundtrip(&get_req("/target"))), "target");
    }
}

#[test]
fn status_and_headers_pass_through() {
    let host = ssf_host();
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/headers"));
    assert_eq!(r.status, 299);
    assert_eq!(r.reason, "Custom Reason");
    let cookies: Vec<&str> = r.headers_all("set-cookie").collect();
    assert_eq!(
        cookies,
        ["a=1; Path=/", "b=2"],
        "repeated headers are kept apart, in order"
    );
    assert_eq!(r.header("x-spaced"), Some("padded value"));
    assert_eq!(text(&r), "headers\n");
    assert_eq!(text(&c.roundtrip(&get_req("/target"))), "target");
}

#[test]
fn connection_close_header_from_extension_is_honoured() {
    let host = ssf_host();
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/conn-close-header"));
    assert_eq!(text(&r), "close\n");
    assert!(r.connection_has("close"), "{r:?}");
    assert!(c.is_closed());
}

#[test]
fn no_content_keeps_the_connection() {
    let host = ssf_host();
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/no-content"));
    assert_eq!(r.status, 204);
    assert_eq!(r.header("x-nothing"), Some("1"));
    assert!(r.header("transfer-encoding").is_none(), "{r:?}");
    assert!(r.keep_alive_signalled(), "a 204 is self-delimited: {r:?}");
    assert_eq!(text(&c.roundtrip(&get_req("/target"))), "target");
}

#[test]
fn legacy_send_response_header_null_status_is_200() {
    let host = ssf_host();
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/legacy-null-status"));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(text(&r), "null status\n");
    assert_eq!(text(&c.roundtrip(&get_req("/target"))), "target");
}
