//! Connection management: keep-alive reuse and every reason to close.

use std::time::Duration;

use crate::support::*;

const HELLO: &[u8] = b"Hello, world!";

#[test]
fn http11_keep_alive_is_implicit() {
    let host = Host::with_c_fixture("hello", &[]);
    let mut c = host.connect();
    let local = c.stream().local_addr().unwrap();
    for _ in 0..5 {
        let r = c.roundtrip(&get_req("/"));
        assert_eq!(r.body, HELLO);
        assert!(r.keep_alive_signalled(), "{r:?}");
    }
    assert_eq!(c.stream().local_addr().unwrap(), local);
    assert!(c.stays_open(Duration::from_millis(300)));
}

#[test]
fn http10_with_keep_alive_header() {
    let host = Host::with_c_fixture("hello", &[]);
    let mut c = host.connect();
    for _ in 0..3 {
        let r = c.roundtrip(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, HELLO);
        assert!(
            r.connection_has("keep-alive"),
            "an HTTP/1.0 keep-alive response must say Connection: keep-alive: {r:?}"
        );
    }
    assert!(c.stays_open(Duration::from_millis(300)));
}

#[test]
fn http10_closes_by_default() {
    let host = Host::with_c_fixture("hello", &[]);
    let mut c = host.connect();
    let r = c.roundtrip(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, HELLO);
    assert!(!r.keep_alive_signalled(), "{r:?}");
    assert!(c.is_closed(), "HTTP/1.0 without keep-alive must close");
}

#[test]
fn client_connection_close() {
    let host = Host::with_c_fixture("hello", &[]);
    let mut c = host.connect();
    let r = c.roundtrip(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(r.body, HELLO);
    assert!(r.connection_has("close"), "{r:?}");
    assert!(c.is_closed());
}

#[test]
fn is_keep_conn_reflects_the_client() {
    let host = Host::with_c_fixture("ssf", &[]);
    let mut c = host.connect();
    assert_eq!(text(&c.roundtrip(&get_req("/keepconn"))), "keep=1");
    let r = c.roundtrip(b"GET /keepconn HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(text(&r), "keep=0");
    let r = request(host.addr(), b"GET /keepconn HTTP/1.0\r\n\r\n");
    assert_eq!(text(&r), "keep=0");
    let mut c = host.connect();
    let r = c.roundtrip(b"GET /keepconn HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(text(&r), "keep=1");
}

#[test]
fn close_delimited_response_closes() {
    // Legacy SEND_RESPONSE_HEADER without a length: close-delimited.
    let host = Host::with_c_fixture("ssf", &[]);
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/legacy"));
    assert_eq!(r.status, 200);
    assert_eq!(r.framing, Framing::CloseDelimited);
    assert_eq!(text(&r), "legacy body, close-delimited\n");
    assert!(!r.keep_alive_signalled());
    assert!(c.is_closed());
}

#[test]
fn fkeepconn_false_closes() {
    let host = Host::with_c_fixture("ssf", &[]);
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/nokeep"));
    assert_eq!(r.status, 200);
    assert_eq!(text(&r), "nokeep\n");
    assert_eq!(r.framing, Framing::ContentLength(7));
    assert!(
        r.connection_has("close"),
        "fKeepConn FALSE must announce Connection: close: {r:?}"
    );
    assert!(c.is_closed());
}

#[test]
fn close_connection_closes_after_response() {
    let host = Host::with_c_fixture("ssf", &[]);
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/close"));
    assert_eq!(r.status, 200);
    assert_eq!(text(&r), "closing\n");
    assert!(
        c.is_closed(),
        "HSE_REQ_CLOSE_CONNECTION must close the connection"
    );
}

#[test]
fn disconnect_after_send_closes() {
    let host = Host::with_c_fixture("ssf", &[]);
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/disconnect-after-send"));
    assert_eq!(r.status, 200);
    assert_eq!(text(&r), "disconnect\n");
    assert!(
        c.is_closed(),
        "HSE_IO_DISCONNECT_AFTER_SEND must close the connection"
    );
}

#[test]
fn many_sequential_connections() {
    let host = Host::with_c_fixture("hello", &[]);
    for _ in 0..50 {
        let r = host.get("/");
        assert_eq!(r.body, HELLO);
    }
}

#[test]
fn concurrent_clients() {
    let host = Host::with_c_fixture("hello", &[]);
    let addr = host.addr();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = RawConn::connect(addr).unwrap();
                for _ in 0..25 {
                    let r = c.roundtrip(&get_req("/"));
                    assert_eq!(r.body, HELLO);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
}

#[test]
fn more_clients_than_pool_threads() {
    let host = Host::with_c_fixture("hello", &["--threads", "2"]);
    let addr = host.addr();
    let start = std::time::Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = RawConn::connect(addr).unwrap();
                c.roundtrip(&get_req("/?sleep=200"))
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("client").body, HELLO);
    }
    // 8 requests of 200 ms on 2 threads take at least 4 rounds.
    assert!(
        start.elapsed() >= Duration::from_millis(750),
        "--threads 2 must bound the pool (took {:?})",
        start.elapsed()
    );
}
