//! `wsgi.errors` goes to the log; an exception before the headers is a 500
//! (traceback in the log, and in the body only with debug); after the headers
//! the connection is closed. The server survives either way.

use std::time::Duration;

use crate::support::get_req;
use crate::{body, probe_host, probe_host_with};

#[test]
fn wsgi_errors_goes_to_the_log() {
    let host = probe_host();
    assert_eq!(body(&host.get("/errors?marker-3141")), "logged");
    assert!(host.wait_for_log(
        "probe wrote to wsgi.errors: marker-3141",
        Duration::from_secs(5)
    ));
    assert!(host.wait_for_log("second line", Duration::from_secs(5)));
}

#[test]
fn exception_before_headers_is_a_500_with_the_traceback_in_the_log() {
    let host = probe_host();
    let mut c = host.connect();
    for path in ["/raise-before", "/raise-after-start"] {
        let r = c.roundtrip(&get_req(path));
        assert_eq!(r.status, 500, "{path}");
        assert!(
            !body(&r).contains("Traceback"),
            "no traceback in the body without debug"
        );
    }
    assert!(host.wait_for_log("Traceback (most recent call last)", Duration::from_secs(5)));
    assert!(host.wait_for_log(
        "RuntimeError: probe raised before start_response",
        Duration::from_secs(5)
    ));
    assert!(
        host.stderr().contains("probe.py"),
        "the traceback names the file"
    );
    // the keep-alive connection is still usable
    let r = c.roundtrip(&get_req("/hello"));
    assert_eq!(body(&r), "Hello, world!");
}

#[test]
fn debug_puts_the_traceback_in_the_body() {
    let host = probe_host_with(&[], &[("PYISAPIE_DEBUG", "1")]);
    let r = host.get("/raise-before");
    assert_eq!(r.status, 500);
    let text = body(&r);
    assert!(
        text.contains("Traceback") && text.contains("probe raised before start_response"),
        "{text}"
    );
}

#[test]
fn exception_after_headers_closes_the_connection() {
    let host = probe_host();
    let mut c = host.connect();
    c.send(&get_req("/raise-after-headers"));
    let (raw, closed) = c.read_until_close();
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.contains("partial;"),
        "{text}"
    );
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "the body must not look complete"
    );
    assert!(closed);
    assert!(host.wait_for_log(
        "probe raised after the headers were sent",
        Duration::from_secs(5)
    ));
    assert_eq!(host.get("/hello").status, 200);
}
