//! `close()` on the application's iterable is always called: after a normal
//! response, when iterating raises (before or after the headers), and when the
//! client disconnects in the middle of the body.

use std::time::Duration;

use crate::support::get_req;
use crate::{body, eventually, probe_host};

fn closed(host: &crate::support::Host, key: &str) -> bool {
    body(&host.get(&format!("/closed?{key}"))) == "closed"
}

#[test]
fn close_after_a_normal_response() {
    let host = probe_host();
    assert!(!closed(&host, "normal"));
    let r = host.get("/tracked?normal");
    assert_eq!(body(&r), "tracked body");
    assert!(closed(&host, "normal"));
}

#[test]
fn close_when_iteration_raises_before_headers() {
    let host = probe_host();
    let r = host.get("/tracked-error-before?before");
    assert_eq!(r.status, 500);
    assert!(closed(&host, "before"));
}

#[test]
fn close_when_iteration_raises_after_headers() {
    let host = probe_host();
    let mut c = host.connect();
    c.send(&get_req("/tracked-error-after?after"));
    let (raw, was_closed) = c.read_until_close();
    assert!(String::from_utf8_lossy(&raw).contains("part1;"));
    assert!(was_closed);
    assert!(closed(&host, "after"));
}

#[test]
fn close_when_the_client_disconnects() {
    let host = probe_host();
    let mut c = host.connect();
    c.send(&get_req("/tracked-slow?gone"));
    let first = c.read_raw(100_000);
    assert!(first.len() >= 1000, "some of the body arrived");
    drop(c);
    assert!(
        eventually(Duration::from_secs(20), || closed(&host, "gone")),
        "close() must run after the client went away"
    );
    assert!(host.wait_for_log("client went away", Duration::from_secs(5)));
}
