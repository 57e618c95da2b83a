//! `wsgi.input`: read(n), read(), readline(), readline(n), readlines(hint),
//! iteration, EOF, chunked uploads, broken bodies, Expect: 100-continue, and
//! the GIL being released while a slow upload is read.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::support::{self, Framing};
use crate::{body, eventually, post, post_chunked, probe_host, probe_host_with};

#[test]
fn read_all_and_read_n() {
    let host = probe_host();
    let r = post(host.addr(), "/read-all", b"hello body");
    assert_eq!((r.status, body(&r).as_str()), (200, "hello body"));
    // read(n) returns exactly n bytes until the last, short, part at EOF
    let r = post(host.addr(), "/read-n?3", b"abcdefghij");
    assert_eq!(body(&r), "3,3,3,1|abcdefghij");
    let r = post_chunked(host.addr(), "/read-n?4", b"abcdefghij", 3);
    assert_eq!(body(&r), "4,4,2|abcdefghij");
}

#[test]
fn readline_variants() {
    let host = probe_host();
    let r = post(host.addr(), "/readline", b"line1\nline2\nline3");
    assert_eq!(body(&r), r#"["line1\n", "line2\n", "line3"]"#);
    let r = post(host.addr(), "/readline-n?4", b"abcdefgh\nxy\n");
    assert_eq!(body(&r), r#"["abcd", "efgh", "\n", "xy\n"]"#);
    // the line is not lost between readline() and read() (Granian's bug)
    let r = post(host.addr(), "/readline-then-read", b"line1\nline2\nline3\n");
    assert_eq!(body(&r), r#"["line1\n", "line2\nline3\n"]"#);
    // lines split across chunk boundaries
    let r = post_chunked(host.addr(), "/readline", b"line1\nline2\nline3", 4);
    assert_eq!(body(&r), r#"["line1\n", "line2\n", "line3"]"#);
}

#[test]
fn readlines_hint_and_iteration() {
    let host = probe_host();
    let r = post(host.addr(), "/readlines?4", b"a\nbb\nccc\ndddd\n");
    assert_eq!(body(&r), r#"[["a\n", "bb\n"], "ccc\ndddd\n"]"#);
    let r = post(host.addr(), "/readlines", b"a\nbb\nccc");
    assert_eq!(body(&r), r#"[["a\n", "bb\n", "ccc"], ""]"#);
    let r = post(host.addr(), "/iter", b"x\ny\nz");
    assert_eq!(body(&r), r#"["x\n", "y\n", "z"]"#);
}

#[test]
fn eof_at_end_of_body() {
    let host = probe_host();
    let r = post(host.addr(), "/read-eof", b"0123456789");
    assert_eq!(body(&r), "[10, [0, 0, 0]]");
    let r = post_chunked(host.addr(), "/read-eof", b"0123456789", 4);
    assert_eq!(body(&r), "[10, [0, 0, 0]]");
    // GET without a body: EOF at once
    let r = host.get("/read-eof");
    assert_eq!(body(&r), "[0, [0, 0, 0]]");
}

#[test]
fn large_bodies_beyond_the_preload() {
    let data = support::pattern_bytes(1 << 20, 7);
    for read_ahead in ["49152", "0"] {
        let host = probe_host_with(&["--read-ahead", read_ahead], &[]);
        let r = post(host.addr(), "/upload-size", &data);
        assert_eq!(body(&r), "1048576 True", "read-ahead {read_ahead}");
        let r = post_chunked(host.addr(), "/upload-size", &data, 10_000);
        assert_eq!(body(&r), "1048576 True", "read-ahead {read_ahead}, chunked");
        let r = post(host.addr(), "/read-all", &data[..200_000]);
        assert!(r.body == data[..200_000], "read() returned other bytes");
        // read(n) of a known length: whole parts (the preload's bytes first, then
        // straight from ReadClient), the bytes in order.
        let r = post(host.addr(), "/read-n?70000", &data[..300_000]);
        let split = r.body.iter().position(|&b| b == b'|').expect("sizes|body");
        assert_eq!(
            std::str::from_utf8(&r.body[..split]).unwrap(),
            "70000,70000,70000,70000,20000",
            "read-ahead {read_ahead}"
        );
        assert!(
            r.body[split + 1..] == data[..300_000],
            "read(n) returned other bytes"
        );
    }
}

#[test]
fn chunked_upload_environ() {
    let host = probe_host();
    let r = post_chunked(host.addr(), "/environ", b"some body", 4);
    let text = body(&r);
    assert!(text.contains(r#""wsgi.input_terminated": true"#), "{text}");
    assert!(
        !text.contains("CONTENT_LENGTH"),
        "a chunked body has no CONTENT_LENGTH: {text}"
    );
    let r = post(host.addr(), "/environ", b"some body");
    assert!(
        body(&r).contains(r#""CONTENT_LENGTH": "9""#),
        "{}",
        body(&r)
    );
}

/// A chunked body with a bad chunk size: the app's read raises, never returns
/// a short body; when the app lets the error through the client gets a 400
/// and the connection is closed. (`--read-ahead 0` so that the app, not the
/// host's read-ahead, meets the bad chunk.)
#[test]
fn broken_chunked_body_raises() {
    let host = probe_host_with(&["--read-ahead", "0"], &[]);
    let bad = b"POST /read-error HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nZZ\r\nnope\r\n0\r\n\r\n";
    let mut c = host.connect();
    c.send(bad);
    let r = c.read_response().expect("a response");
    let text = body(&r);
    assert!(
        text.starts_with("raised "),
        "the app must see an exception, got {text:?}"
    );
    assert!(
        c.is_closed(),
        "the connection must be closed after a broken body"
    );

    let bad = b"POST /read-uncaught HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nZZ\r\nnope\r\n0\r\n\r\n";
    let mut c = host.connect();
    c.send(bad);
    let r = c.read_response().expect("a response");
    assert_eq!(r.status, 400, "{}", body(&r));
    assert!(c.is_closed());
    assert!(host.wait_for_log("reading the request body failed", Duration::from_secs(5)));
    // the server survives
    assert_eq!(host.get("/hello").status, 200);
}

/// A Content-Length body cut short by the client: the app gets an error, not a
/// short body.
#[test]
fn truncated_body_raises() {
    let host = probe_host_with(&["--read-ahead", "0"], &[]);
    let mut c = host.connect();
    c.send(b"POST /read-error HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n0123456789");
    std::thread::sleep(Duration::from_millis(200));
    drop(c);
    assert!(
        host.wait_for_log("reading the request body failed", Duration::from_secs(10)),
        "the app's read must fail"
    );
    assert!(
        !host.stderr().contains("no error, got"),
        "the app must not get a short body"
    );
    assert_eq!(host.get("/hello").status, 200);
}

#[test]
fn expect_100_continue() {
    let host = probe_host();
    let mut c = host.connect();
    c.send(
        b"POST /read-all HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    );
    let interim = c.read_response_or_interim().expect("100 Continue");
    assert_eq!(interim.status, 100);
    c.send(b"hello");
    let r = c.read_response().expect("final response");
    assert_eq!((r.status, body(&r).as_str()), (200, "hello"));
}

/// A slow chunked upload is read with the GIL released: while the app waits in
/// `wsgi.input.read()`, other requests are served at once.
#[test]
fn slow_upload_does_not_stall_other_requests() {
    let host = probe_host();
    let mut up = host.connect();
    up.send(b"POST /slow-upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    // more than the host's read-ahead (49152), so that the app starts reading
    let first = vec![b'x'; 60_000];
    up.send(&support::chunked(&first, 60_000)[..first.len() + 8]);
    assert!(
        eventually(Duration::from_secs(20), || body(&host.get("/progress"))
            == "60000"),
        "the app should have read the first chunk"
    );
    // The upload is now blocked in ReadClient. Other requests must not wait.
    for _ in 0..5 {
        let t = Instant::now();
        let r = host.get("/hello");
        assert_eq!(r.status, 200);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "a request took {:?} during the upload",
            t.elapsed()
        );
    }
    let mut more = Vec::new();
    write!(more, "6\r\n world\r\n0\r\n\r\n").unwrap();
    up.send(&more);
    let r = up.read_response().expect("upload response");
    assert_eq!(body(&r), "slow upload done: 60006");
    assert!(matches!(r.framing, Framing::ContentLength(_)));
}
