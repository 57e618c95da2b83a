//! Basic request/response with the minimal `hello` extension, pipelining,
//! HEAD, and the `--trace-callbacks` log.

use std::time::Duration;

use crate::support::*;

#[test]
fn hello_get() {
    let host = Host::with_c_fixture("hello", &[]);
    let r = host.get("/");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.reason, "OK");
    assert_eq!(r.version, "HTTP/1.1");
    assert_eq!(r.body, b"Hello, world!");
    assert_eq!(r.framing, Framing::ContentLength(13));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert!(r.header("date").is_some(), "host must add Date: {r:?}");
    assert!(r.header("server").is_some(), "host must add Server: {r:?}");
    // The extension's headers are not duplicated.
    assert_eq!(r.headers_all("content-length").count(), 1);
}

#[test]
fn hello_any_url_and_method() {
    let host = Host::with_c_fixture("hello", &[]);
    let mut c = host.connect();
    for path in ["/", "/a/b/c.dll", "/x?y=z", "/%7Euser/"] {
        let r = c.roundtrip(&get_req(path));
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, &b"Hello, world!"[..]),
            "{path}"
        );
    }
    let r = c.roundtrip(&post_request(host.addr(), "/post", b"ignored body"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"Hello, world!");
    // The unread request body must not be taken for the next request.
    let r = c.roundtrip(&get_req("/after-post"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"Hello, world!");
}

#[test]
fn head_request_has_no_body() {
    let host = Host::with_c_fixture("hello", &[]);
    let mut c = host.connect();
    c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response_to_head().expect("HEAD response");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("13"));
    // No body bytes may follow: the next response must start right away.
    let r = c.roundtrip(&get_req("/"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"Hello, world!");
}

#[test]
fn pipelined_requests_answered_in_order() {
    let host = Host::with_c_fixture("echo", &[]);
    let mut c = host.connect();
    let mut batch = Vec::new();
    for i in 0..10 {
        let body = format!("request number {i}");
        batch.extend_from_slice(&post_request(host.addr(), "/echo", body.as_bytes()));
    }
    c.send(&batch);
    for i in 0..10 {
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("response {i}: {e}"));
        assert_eq!(r.status, 200);
        assert_eq!(text(&r), format!("request number {i}"));
    }
    assert!(
        c.stays_open(Duration::from_millis(300)),
        "no extra bytes, connection kept"
    );
}

#[test]
fn pipelined_gets_with_hello() {
    let host = Host::with_c_fixture("hello", &[]);
    let mut c = host.connect();
    let mut batch = Vec::new();
    for i in 0..10 {
        batch.extend_from_slice(&get_req(&format!("/{i}")));
    }
    c.send(&batch);
    for i in 0..10 {
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("response {i}: {e}"));
        assert_eq!(r.body, b"Hello, world!");
    }
}

#[test]
fn trace_callbacks_logs_write_client() {
    let host = Host::with_c_fixture("hello", &["--trace-callbacks"]);
    let r = host.get("/traced");
    assert_eq!(r.status, 200);
    let found = host.wait_for_log_matching(
        |log| {
            log.lines()
                .any(|l| l.contains("WriteClient") && l.contains("13"))
        },
        Duration::from_secs(5),
    );
    assert!(
        found,
        "stderr should log WriteClient with its byte count (13):\n{}",
        host.stderr()
    );
    assert!(
        host.wait_for_log("SEND_RESPONSE_HEADER_EX", Duration::from_secs(2))
            || host.stderr().contains("1016"),
        "stderr should log the ServerSupportFunction call:\n{}",
        host.stderr()
    );
}

#[test]
fn trace_callbacks_logs_reads_and_variable_probes() {
    let vars = format!("/v={}", c_fixture_str("vars"));
    let host = Host::with_c_fixture(
        "echo",
        &["--trace-callbacks", "--read-ahead", "0", "--map", &vars],
    );
    let mut c = host.connect();
    assert_eq!(
        c.roundtrip(&post_request(host.addr(), "/echo", b"hello-body"))
            .body,
        b"hello-body"
    );
    let r = c.roundtrip(&get_req("/v/vars?REQUEST_METHOD"));
    assert_eq!(r.status, 200);
    // Trace lines reach stderr through the log thread: wait for the probe's
    // line too, which may land after the response.
    let ok = host.wait_for_log_matching(
        |log| {
            log.lines()
                .any(|l| l.contains("ReadClient") && l.contains("10"))
                && log
                    .lines()
                    .any(|l| l.contains("GetServerVariable") && l.contains("REQUEST_METHOD"))
        },
        Duration::from_secs(5),
    );
    assert!(
        ok,
        "ReadClient and the REQUEST_METHOD probe are traced:\n{}",
        host.stderr()
    );
    let log = host.stderr();
    let probe = log
        .lines()
        .filter(|l| l.contains("GetServerVariable") && l.contains("REQUEST_METHOD"))
        .collect::<Vec<_>>();
    assert!(
        probe.iter().any(|l| l.contains("size=1")),
        "the probe call is traced with the caller's 1-byte buffer size: {probe:#?}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("GetServerVariable") && l.contains("122")),
        "the failed probe's error (122) is traced:\n{log}"
    );
}
