//! Request bodies: preload (lpbData/cbAvailable) + ReadClient, Content-Length
//! and chunked uploads, `--read-ahead 0`, async reads, a 100 MB streamed
//! upload with bounded memory, `Expect: 100-continue`, and a client that
//! disconnects mid-body.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::*;

const MIB: usize = 1024 * 1024;
const DEFAULT_READ_AHEAD: usize = 49152;
const UNKNOWN_LENGTH: &str = "4294967295";

fn chunked_post(path: &str, body: &[u8], chunk: usize) -> Vec<u8> {
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        .into_bytes();
    req.extend_from_slice(&chunked(body, chunk));
    req
}

/// Send `req` from a separate thread (a large body can fill the socket
/// buffers before the extension starts reading) and read the response.
fn send_and_read(c: &mut RawConn, req: Vec<u8>) -> Response {
    let mut w = c.stream().try_clone().expect("clone stream");
    let writer = std::thread::spawn(move || w.write_all(&req));
    let r = c.read_response().expect("response");
    writer
        .join()
        .expect("writer thread")
        .expect("write request");
    r
}

#[test]
fn echo_small_content_length() {
    let host = Host::with_c_fixture("echo", &[]);
    let mut c = host.connect();
    let r = c.roundtrip(&post_request(host.addr(), "/echo", b"hello"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello");
    assert_eq!(r.header("x-total-bytes"), Some("5"));
    assert_eq!(r.header("x-available"), Some("5"));
    // And a request without a body on the same connection.
    let r = c.roundtrip(&get_req("/echo"));
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("x-total-bytes"), Some("0"));
    assert_eq!(r.header("x-available"), Some("0"));
}

#[test]
fn echo_1mib_content_length() {
    let host = Host::with_c_fixture("echo", &[]);
    let body = pattern_bytes(MIB, 1);
    let mut c = host.connect();
    for _ in 0..2 {
        let r = send_and_read(&mut c, post_request(host.addr(), "/echo", &body));
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), body.len());
        assert!(r.body == body, "echoed body differs");
        assert_eq!(r.header("x-total-bytes"), Some("1048576"));
        assert_eq!(
            r.header("x-available"),
            Some(DEFAULT_READ_AHEAD.to_string().as_str()),
            "the default read-ahead (49152) is preloaded"
        );
    }
}

#[test]
fn echo_1mib_chunked() {
    let host = Host::with_c_fixture("echo", &[]);
    let body = pattern_bytes(MIB, 2);
    let mut c = host.connect();
    for chunk in [7919, 65536] {
        let r = send_and_read(&mut c, chunked_post("/echo", &body, chunk));
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), body.len());
        assert!(r.body == body, "echoed body differs (chunk size {chunk})");
        assert_eq!(
            r.header("x-total-bytes"),
            Some(UNKNOWN_LENGTH),
            "chunked: cbTotalBytes = 0xFFFFFFFF"
        );
    }
}

#[test]
fn echo_small_chunked_with_extensions_and_trailers() {
    let host = Host::with_c_fixture("echo", &[]);
    let mut c = host.connect();
    let req = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
                3;ext=1\r\nabc\r\n4\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n";
    let r = c.roundtrip(req);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"abcdefg");
    let r = c.roundtrip(&get_req("/echo"));
    assert_eq!(
        r.status, 200,
        "connection usable after a chunked upload with trailers"
    );
}

#[test]
fn echo_read_ahead_zero() {
    let host = Host::with_c_fixture("echo", &["--read-ahead", "0"]);
    let body = pattern_bytes(MIB, 3);
    let mut c = host.connect();
    let r = send_and_read(&mut c, post_request(host.addr(), "/echo", &body));
    assert_eq!(r.status, 200);
    assert!(r.body == body, "echoed body differs");
    assert_eq!(
        r.header("x-available"),
        Some("0"),
        "--read-ahead 0 preloads nothing"
    );
    assert_eq!(r.header("x-total-bytes"), Some("1048576"));
    let r = send_and_read(&mut c, chunked_post("/echo", &body, 10000));
    assert_eq!(r.status, 200);
    assert!(r.body == body, "echoed chunked body differs");
    assert_eq!(r.header("x-available"), Some("0"));
}

#[test]
fn echo_custom_read_ahead() {
    let host = Host::with_c_fixture("echo", &["--read-ahead", "1000"]);
    let body = pattern_bytes(5000, 4);
    let mut c = host.connect();
    let r = send_and_read(&mut c, post_request(host.addr(), "/echo", &body));
    assert_eq!(r.body, body);
    assert_eq!(r.header("x-available"), Some("1000"));
}

#[test]
fn async_read_content_length_and_chunked() {
    let host = Host::with_c_fixture("echo", &[]);
    let body = pattern_bytes(MIB, 5);
    let mut c = host.connect();
    let r = send_and_read(&mut c, post_request(host.addr(), "/async-read", &body));
    assert_eq!(r.status, 200, "{}", text(&r));
    assert!(r.body == body, "async-read body differs (content-length)");
    let r = send_and_read(&mut c, chunked_post("/async-read", &body, 30000));
    assert_eq!(r.status, 200, "{}", text(&r));
    assert!(r.body == body, "async-read body differs (chunked)");
    // A body that fits in the preload is answered synchronously.
    let r = c.roundtrip(&post_request(host.addr(), "/async-read", b"tiny"));
    assert_eq!(r.body, b"tiny");
}

#[test]
fn async_read_with_read_ahead_zero() {
    let host = Host::with_c_fixture("echo", &["--read-ahead", "0"]);
    let body = pattern_bytes(200_000, 6);
    let mut c = host.connect();
    let r = send_and_read(&mut c, post_request(host.addr(), "/async-read", &body));
    assert_eq!(r.status, 200, "{}", text(&r));
    assert!(r.body == body);
}

#[test]
fn count_100mb_chunked_with_bounded_memory() {
    const TOTAL: usize = 100 * MIB + 12345;
    const CHUNK: usize = 64 * 1024;
    // The default --max-body is IIS's maxAllowedContentLength (30 MB).
    let host = Host::with_c_fixture("echo", &["--max-body", "1000000000"]);
    // Warm up (thread pool, buffers) before the baseline.
    assert_eq!(host.get("/count").status, 200);
    let before = host.rss_kib().expect("VmRSS");

    let mut c = host.connect();
    c.set_read_timeout(Some(Duration::from_secs(120)));
    let mut w: TcpStream = c.stream().try_clone().unwrap();
    let writer = std::thread::spawn(move || -> std::io::Result<(u64, u64)> {
        w.write_all(b"POST /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")?;
        let block = pattern_bytes(CHUNK, 7);
        let mut h = FNV1A64_INIT;
        let mut sent = 0usize;
        let mut i = 0u8;
        while sent < TOTAL {
            let n = CHUNK.min(TOTAL - sent);
            // vary the data a little per chunk so a replayed chunk would show
            let mut data = block[..n].to_vec();
            data[0] = i;
            i = i.wrapping_add(1);
            h = fnv1a64(h, &data);
            let mut frame = format!("{n:x}\r\n").into_bytes();
            frame.extend_from_slice(&data);
            frame.extend_from_slice(b"\r\n");
            w.write_all(&frame)?;
            sent += n;
        }
        w.write_all(b"0\r\n\r\n")?;
        Ok((sent as u64, h))
    });
    let start = Instant::now();
    let r = c.read_response().expect("response to the 100 MB upload");
    let (sent, hash) = writer.join().unwrap().expect("upload");
    let peak = host.rss_kib().expect("VmRSS");
    let hwm = peak_rss_kib(host.pid()).expect("VmHWM");
    assert_eq!(r.status, 200);
    assert_eq!(text(&r), format!("bytes={sent} fnv={hash:016x}\n"));
    let grown = hwm.saturating_sub(before).max(peak.saturating_sub(before));
    assert!(
        grown < 64 * 1024,
        "host RSS grew by {grown} KiB during a 100 MB upload (before {before} KiB, after {peak} KiB, peak {hwm} KiB)"
    );
    eprintln!(
        "100 MB upload took {:?}; RSS before {before} KiB, peak {hwm} KiB",
        start.elapsed()
    );
}

#[test]
fn count_content_length_upload() {
    let host = Host::with_c_fixture("echo", &[]);
    let body = pattern_bytes(3 * MIB + 7, 8);
    let mut c = host.connect();
    let r = send_and_read(&mut c, post_request(host.addr(), "/count", &body));
    let expect = format!(
        "bytes={} fnv={:016x}\n",
        body.len(),
        fnv1a64(FNV1A64_INIT, &body)
    );
    assert_eq!(text(&r), expect);
}

#[test]
fn expect_100_continue() {
    let host = Host::with_c_fixture("echo", &[]);
    let mut c = host.connect();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.read_response_or_interim().expect("100 Continue");
    assert_eq!(interim.status, 100, "{interim:?}");
    c.send(b"hello world");
    let r = c.read_response().expect("final response");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello world");
    assert_eq!(
        r.header("x-available"),
        Some("0"),
        "no preload with Expect: 100-continue"
    );
    // Connection is still in sync.
    let r = c.roundtrip(&post_request(host.addr(), "/echo", b"again"));
    assert_eq!(r.body, b"again");
}

#[test]
fn expect_100_continue_not_sent_when_body_is_not_read() {
    // hello never calls ReadClient: the host must not send 100 Continue, and it
    // must answer; whether it keeps the connection is its choice, but it must
    // never take the unsent body for a request.
    let host = Host::with_c_fixture("hello", &[]);
    let mut c = host.connect();
    c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let r = c.read_response_or_interim().expect("response");
    assert_eq!(r.status, 200, "expected the final response, not {r:?}");
    assert_eq!(r.body, b"Hello, world!");
}

/// Send the head of a 1 MB Content-Length upload plus `sent` body bytes, then
/// close the connection.
fn disconnect_mid_body(host: &Host, sent: usize) {
    let mut c = host.connect();
    let mut req =
        format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {MIB}\r\n\r\n").into_bytes();
    req.extend_from_slice(&pattern_bytes(sent, 9));
    c.send(&req);
    std::thread::sleep(Duration::from_millis(200));
    drop(c);
}

fn assert_serves_next(host: &Host) {
    let mut c = host.connect();
    let r = c.roundtrip(&post_request(host.addr(), "/echo", b"next"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"next");
}

#[test]
fn client_disconnects_mid_body() {
    // No preload: the extension's ReadClient sees the disconnect.
    let host = Host::with_c_fixture("echo", &["--read-ahead", "0"]);
    disconnect_mid_body(&host, 1000);
    assert!(
        host.wait_for_access_log("readclient failed errno=", Duration::from_secs(10)),
        "the ReadClient failure (lpszLogData) must be logged:\n{}",
        host.stdout()
    );
    // The host stays up and serves the next connection.
    assert_serves_next(&host);
}

#[test]
fn client_disconnects_after_the_preload() {
    // More than the default read-ahead arrives, then the client goes away:
    // the extension is running and its ReadClient must fail.
    let host = Host::with_c_fixture("echo", &[]);
    disconnect_mid_body(&host, 100_000);
    assert!(
        host.wait_for_access_log("readclient failed errno=", Duration::from_secs(10)),
        "the ReadClient failure (lpszLogData) must be logged:\n{}",
        host.stdout()
    );
    assert_serves_next(&host);
}

#[test]
fn client_disconnects_during_the_preload() {
    // 1000 bytes of a 1 MB body, default read-ahead: the host notices while
    // preloading; it logs it and stays up.
    let host = Host::with_c_fixture("echo", &[]);
    disconnect_mid_body(&host, 1000);
    assert!(
        host.wait_for_log_matching(
            |log| log
                .lines()
                .any(|l| l.contains("WARN") || l.contains("ERROR")),
            Duration::from_secs(10)
        ),
        "the broken upload must be logged:\n{}",
        host.stderr()
    );
    assert_serves_next(&host);
}

#[test]
fn client_disconnects_mid_chunked_body() {
    let host = Host::with_c_fixture("echo", &["--read-ahead", "0"]);
    {
        let mut c = host.connect();
        c.send(b"POST /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n100\r\nshort");
        std::thread::sleep(Duration::from_millis(200));
        drop(c);
    }
    assert!(
        host.wait_for_access_log("readclient failed errno=", Duration::from_secs(10)),
        "a truncated chunked body must make ReadClient fail:\n{}",
        host.stdout()
    );
    assert_eq!(host.get("/echo").status, 200);
}

#[test]
fn bad_chunk_framing_fails_read_client() {
    let host = Host::with_c_fixture("echo", &["--read-ahead", "0"]);
    let mut c = host.connect();
    c.send(b"POST /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZZ\r\n");
    // Either a 4xx/5xx answer or a closed connection; never a 200 with a short count.
    match c.read_response() {
        Ok(r) => assert!(r.status >= 400, "bad chunk framing must not succeed: {r:?}"),
        Err(e) => assert!(
            matches!(e, WireError::EofBeforeHead) || !e.is_timeout(),
            "expected an error response or a close, got {e}"
        ),
    }
    assert!(
        host.wait_for_access_log("readclient failed errno=", Duration::from_secs(10)),
        "{}",
        host.stdout()
    );
}

#[test]
fn pipelined_uploads_without_preload() {
    // ReadClient must stop at the end of each body, never eating into the
    // next pipelined request.
    let host = Host::with_c_fixture("echo", &["--read-ahead", "0"]);
    let mut c = host.connect();
    let mut batch = Vec::new();
    let bodies: Vec<Vec<u8>> = (0..6)
        .map(|i| pattern_bytes(1000 + i * 3000, i as u64))
        .collect();
    for (i, b) in bodies.iter().enumerate() {
        if i % 2 == 0 {
            batch.extend_from_slice(&post_request(host.addr(), "/echo", b));
        } else {
            batch.extend_from_slice(&chunked_post("/echo", b, 777));
        }
    }
    c.send(&batch);
    for (i, b) in bodies.iter().enumerate() {
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("response {i}: {e}"));
        assert_eq!(r.status, 200);
        assert!(&r.body == b, "body {i} differs");
    }
}

#[test]
fn unread_large_body_does_not_desync() {
    // hello never reads the body; the host must drain it or close.
    let host = Host::with_c_fixture("hello", &[]);
    let mut c = host.connect();
    let body = pattern_bytes(MIB, 11);
    let mut req = post_request(host.addr(), "/", &body);
    req.extend_from_slice(&get_req("/second"));
    let mut w = c.stream().try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&req);
    });
    let r = c.read_response().expect("first response");
    assert_eq!(r.body, b"Hello, world!");
    match c.read_response() {
        Ok(r) => assert_eq!(r.body, b"Hello, world!", "second response must be its own"),
        Err(e) => assert!(
            matches!(e, WireError::EofBeforeHead | WireError::Io(_)),
            "either a clean second response or a close: {e}"
        ),
    }
    let _ = writer.join();
}

#[test]
fn expect_100_continue_over_max_body_is_413_without_100() {
    let host = Host::with_c_fixture("echo", &["--max-body", "1000"]);
    let mut c = host.connect();
    c.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
    );
    let r = c.read_response_or_interim().expect("response");
    assert_eq!(r.status, 413, "reject before asking for the body: {r:?}");
}
