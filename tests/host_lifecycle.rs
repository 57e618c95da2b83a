//! Graceful shutdown: in-flight requests complete, TerminateExtension is
//! called, the process exits 0.

use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn sigterm_drains_and_calls_terminate_extension() {
    let dir = temp_dir("term");
    let log = dir.join("term.log");
    let lib = c_fixture_str("hello");
    let mut host = Host::start_env(
        &["--extension", &lib],
        [("ISAPI_FIXTURE_TERM_LOG", host_path(&log))],
    );
    let addr = host.addr();
    // An in-flight request that takes 1.5 s.
    let inflight = std::thread::spawn(move || {
        let mut c = RawConn::connect(addr).unwrap();
        c.roundtrip(&get_req("/?sleep=1500"))
    });
    std::thread::sleep(Duration::from_millis(400));
    let start = Instant::now();
    let status = host.terminate();
    let r = inflight.join().expect("in-flight client");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, b"Hello, world!", "the in-flight request completes");
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
    assert!(
        start.elapsed() >= Duration::from_millis(800),
        "the host must wait for the in-flight request"
    );
    let term = read_extension_text(&log);
    assert_eq!(
        term, "TerminateExtension flags=2\n",
        "TerminateExtension(HSE_TERM_MUST_UNLOAD) exactly once"
    );
}

#[test]
fn sigterm_when_idle_exits_zero() {
    let dir = temp_dir("term-idle");
    let log = dir.join("term.log");
    let lib = c_fixture_str("hello");
    let mut host = Host::start_env(
        &["--extension", &lib],
        [("ISAPI_FIXTURE_TERM_LOG", host_path(&log))],
    );
    assert_eq!(host.get("/").status, 200);
    // An idle keep-alive connection must not block the shutdown.
    let mut idle = host.connect();
    assert_eq!(idle.roundtrip(&get_req("/")).status, 200);
    let status = host.terminate_timeout(Duration::from_secs(15));
    assert!(status.success(), "{status}");
    assert_eq!(read_extension_text(&log), "TerminateExtension flags=2\n");
    assert!(idle.is_closed(), "idle connections are closed on shutdown");
}

#[test]
fn listener_closed_as_soon_as_shutdown_begins() {
    let lib = c_fixture_str("hello");
    let mut host = Host::start(&["--extension", &lib]);
    let addr = host.addr();
    assert_eq!(host.listening_sockets(), 1, "the host listens once");
    // An in-flight request keeps the host draining for 1.5 s.
    let inflight = std::thread::spawn(move || {
        let mut c = RawConn::connect(addr).unwrap();
        c.roundtrip(&get_req("/?sleep=1500"))
    });
    std::thread::sleep(Duration::from_millis(300));
    host.signal_term();
    let deadline = Instant::now() + Duration::from_secs(1);
    while host.listening_sockets() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(host.is_running(), "still draining the in-flight request");
    assert_eq!(
        host.listening_sockets(),
        0,
        "no new connections are accepted while draining"
    );
    let r = inflight.join().expect("in-flight client");
    assert_eq!(r.body, b"Hello, world!", "the in-flight request completes");
    assert!(host.wait_exit(Duration::from_secs(30)).success());
}

#[test]
fn sigterm_waits_for_pending_requests() {
    let lib = c_fixture_str("async");
    let mut host = Host::start(&["--extension", &lib]);
    let addr = host.addr();
    let inflight = std::thread::spawn(move || {
        let mut c = RawConn::connect(addr).unwrap();
        c.roundtrip(&get_req("/pending-sync?sleep=1500"))
    });
    std::thread::sleep(Duration::from_millis(400));
    let status = host.terminate();
    let r = inflight.join().expect("in-flight client");
    assert_eq!(
        text(&r),
        "sync-one\nsync-two\n",
        "the PENDING request completes"
    );
    assert!(status.success(), "{status}");
}

/// Transparent huge pages are off in the supervisor and in its worker:
/// mimalloc asks for them on its arenas, where each thread's first small
/// block could otherwise fault in 2 MiB.
#[test]
fn huge_pages_are_off_in_every_host_process() {
    if skip_on_windows("THP is a Linux setting; Wine's host keeps Linux's") {
        return;
    }
    let host = Host::with_c_fixture("hello", &[]);
    assert_eq!(host.get("/").status, 200);
    let (supervisor, worker) = (host.supervisor_pid(), host.pid());
    assert_ne!(supervisor, worker, "a worker process is checked too");
    for pid in [supervisor, worker] {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) else {
            skip("this kernel does not report THP_enabled in /proc/PID/status (Linux < 5.0)");
            return;
        };
        assert_eq!(
            line.split_whitespace().nth(1),
            Some("0"),
            "pid {pid}: {line}"
        );
    }
}
