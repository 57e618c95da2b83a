//! The host runs a Python app with `--parallel 1` (the `--app` default): one
//! thread runs Python at a time, but a request that blocks or computes for long
//! does not hold up the requests queued behind it.

use std::thread;
use std::time::Duration;

use crate::{body, probe_host};

/// Starts `slow` on its own connection, then sends `/environ` and checks that
/// it is answered while `slow` is still running.
fn fast_request_overtakes(slow: &'static str) {
    let host = probe_host();
    let addr = host.addr();
    let slow_req = thread::spawn(move || crate::support::get(addr, slow));
    // Let the slow request reach the app before the fast one is queued.
    thread::sleep(Duration::from_millis(200));
    let fast = host.get("/environ");
    assert_eq!(fast.status, 200);
    assert!(
        !slow_req.is_finished(),
        "{slow} finished before the request queued behind it was answered"
    );
    let slow_resp = slow_req.join().unwrap();
    assert_eq!(slow_resp.status, 200);
    assert!(body(&slow_resp).ends_with(" 2000"), "{}", body(&slow_resp));
}

#[test]
fn a_request_sleeping_without_the_gil_does_not_hold_up_the_next() {
    // time.sleep releases the GIL inside the app: the host sees its thread
    // blocked and runs the next request on another thread.
    fast_request_overtakes("/sleep?ms=2000");
}

#[test]
fn a_long_computation_does_not_hold_up_the_next() {
    // The app holds the GIL computing: after a while another thread takes the
    // queue, and Python's switch interval lets it run beside the computation.
    fast_request_overtakes("/compute?ms=2000");
}
