//! HSE_STATUS_PENDING, DONE_WITH_SESSION from foreign threads, and
//! asynchronous WriteClient with IO_COMPLETION.

use std::time::Duration;

use crate::support::*;

#[test]
fn async_write_client_with_completion() {
    let host = Host::with_c_fixture("async", &[]);
    let mut c = host.connect();
    for round in 0..3 {
        let r = c.roundtrip(&get_req("/async"));
        assert_eq!(r.status, 200, "round {round}");
        assert_eq!(
            text(&r),
            "part-one\npart-two\n",
            "round {round}: a replaced second part means the completion ran inline, got a wrong \
             pContext, or wrong cbIO/dwError"
        );
        assert_eq!(r.framing, Framing::ContentLength(18));
    }
    // DONE_WITH_SESSION(SUCCESS_AND_KEEP_CONN) keeps the connection.
    assert!(c.stays_open(Duration::from_millis(300)));
    assert!(
        !host.stderr().contains("async.c:"),
        "fixture reported a problem:\n{}",
        host.stderr()
    );
}

#[test]
fn async_write_many_concurrent() {
    let host = Host::with_c_fixture("async", &[]);
    let addr = host.addr();
    let threads: Vec<_> = (0..6)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = RawConn::connect(addr).unwrap();
                for _ in 0..10 {
                    assert_eq!(
                        text(&c.roundtrip(&get_req("/async"))),
                        "part-one\npart-two\n"
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client");
    }
    assert!(!host.stderr().contains("async.c:"), "{}", host.stderr());
}

#[test]
fn pending_then_sync_writes_from_another_thread() {
    let host = Host::with_c_fixture("async", &[]);
    let mut c = host.connect();
    for _ in 0..3 {
        let r = c.roundtrip(&get_req("/pending-sync"));
        assert_eq!(r.status, 200);
        assert_eq!(text(&r), "sync-one\nsync-two\n");
    }
    assert!(c.stays_open(Duration::from_millis(300)));
}

#[test]
fn pending_requests_pipelined() {
    let host = Host::with_c_fixture("async", &[]);
    let mut c = host.connect();
    let mut batch = Vec::new();
    for i in 0..6 {
        batch.extend_from_slice(&get_req(if i % 2 == 0 {
            "/async"
        } else {
            "/pending-sync"
        }));
    }
    c.send(&batch);
    for i in 0..6 {
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("response {i}: {e}"));
        let want = if i % 2 == 0 {
            "part-one\npart-two\n"
        } else {
            "sync-one\nsync-two\n"
        };
        assert_eq!(text(&r), want, "response {i}");
    }
}

#[test]
fn pending_then_done_with_error_is_500() {
    let host = Host::with_c_fixture("async", &[]);
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/pending-error"));
    assert_eq!(r.status, 500, "{r:?}");
    // Either closed, or usable for the next request.
    if c.try_send(&get_req("/pending-sync")).is_ok() {
        match c.read_response() {
            Ok(r) => assert_eq!(text(&r), "sync-one\nsync-two\n"),
            Err(e) => assert!(
                matches!(e, WireError::EofBeforeHead | WireError::Io(_)),
                "{e}"
            ),
        }
    }
}

#[test]
fn done_with_session_null_status() {
    let host = Host::with_c_fixture("async", &[]);
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/pending-null-status"));
    assert_eq!(r.status, 200);
    assert_eq!(text(&r), "null-status\n");
    let r = c.roundtrip(&get_req("/pending-sync"));
    assert_eq!(
        text(&r),
        "sync-one\nsync-two\n",
        "connection kept after DONE_WITH_SESSION(NULL)"
    );
}

#[test]
fn is_connected_sees_a_client_disconnect() {
    let host = Host::with_c_fixture("async", &[]);
    {
        let mut c = host.connect();
        c.send(&get_req("/connected-later"));
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        host.wait_for_log(
            "async.c-info: connected-later saw disconnect",
            Duration::from_secs(8)
        ),
        "IS_CONNECTED must report FALSE once the client is gone:\n{}",
        host.stderr()
    );
}

#[test]
fn pending_requests_do_not_hold_pool_threads() {
    // With one pool thread, three PENDING requests that each take 1 s on the
    // extension's own threads still run concurrently.
    let host = Host::with_c_fixture("async", &["--threads", "1"]);
    let addr = host.addr();
    let start = std::time::Instant::now();
    let clients: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = RawConn::connect(addr).unwrap();
                text(&c.roundtrip(&get_req("/pending-sync?sleep=1000")))
            })
        })
        .collect();
    for t in clients {
        assert_eq!(t.join().expect("client"), "sync-one\nsync-two\n");
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed < Duration::from_millis(2500),
        "PENDING must release the pool thread (3 x 1 s took {elapsed:?})"
    );
}
