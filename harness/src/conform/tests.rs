//! The runner against servers that are right and servers that are wrong in
//! known ways.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;

use super::*;
use crate::cases::{Expect, Fragment};
use crate::testing::start_bare;

fn repo_case(name: &str) -> Case {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../fixtures/cases/{name}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    Case::parse(&text, name).unwrap()
}

/// A raw server answering every request head with `answer`, then doing `after`.
fn start_raw(answer: &'static [u8], close_after: bool) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut chunk) else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        if s.write_all(answer).is_err() {
                            return;
                        }
                        if close_after {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn runner_passes_a_correct_server() {
    let addr = start_bare();
    let opts = RunOptions::default();
    for name in [
        "ka-http11-implicit",
        "ka-http11-close",
        "ka-sequential-3",
        "pipe-10-get",
        "pipe-post-bodies-order",
        "pipe-random-split",
        "chunk-valid",
        "chunk-extensions",
        "chunk-trailers",
        "head-no-body",
        "expect-100-wait",
        "large-upload-1m-content-length",
        "slow-client-bytes",
    ] {
        let case = repo_case(name);
        assert_eq!(run_case(&case, addr, &opts), Ok(()), "{name}");
    }
    // every case also passes when fragmented at random
    let opts = RunOptions {
        fragment: Some(Fragment::Random),
        timeout_scale: 1.0,
    };
    for name in ["pipe-10-get", "chunk-valid", "expect-100-wait"] {
        assert_eq!(
            run_case(&repo_case(name), addr, &opts),
            Ok(()),
            "{name} fragmented"
        );
    }
}

#[test]
fn runner_catches_a_body_sent_for_head() {
    let addr = start_raw(
        b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!",
        false,
    );
    let err = run_case(&repo_case("head-no-body"), addr, &RunOptions::default()).unwrap_err();
    assert!(err.contains("after:"), "{err}");
    let err = run_case(
        &repo_case("pipe-head-then-get"),
        addr,
        &RunOptions::default(),
    )
    .unwrap_err();
    assert!(err.contains("response 2/2: bad response"), "{err}");
}

#[test]
fn runner_catches_a_connection_left_open() {
    let addr = start_raw(
        b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!",
        false,
    );
    let mut case = repo_case("ka-http11-close");
    case.close_timeout_ms = 300;
    let err = run_case(&case, addr, &RunOptions::default()).unwrap_err();
    assert!(err.contains("still open"), "{err}");
}

#[test]
fn runner_catches_a_short_body_hang_and_a_wrong_status() {
    // announces 10 bytes, sends 5, keeps the connection: the client must time out
    let addr = start_raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345", false);
    let mut case = repo_case("ka-http11-implicit");
    case.timeout_ms = 300;
    let err = run_case(&case, addr, &RunOptions::default()).unwrap_err();
    assert!(err.contains("timed out"), "{err}");
    // a 200 where 400 is required
    let addr = start_raw(
        b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!",
        true,
    );
    let err = run_case(
        &repo_case("req-no-host-http11"),
        addr,
        &RunOptions::default(),
    )
    .unwrap_err();
    assert!(err.starts_with("status 200, want 400"), "{err}");
}

#[test]
fn runner_rejects_content_length_with_transfer_encoding() {
    let addr = start_raw(
        b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\nd\r\nHello, world!\r\n0\r\n\r\n",
        false,
    );
    let err = run_case(
        &repo_case("ka-http11-implicit"),
        addr,
        &RunOptions::default(),
    )
    .unwrap_err();
    assert!(
        err.contains("both Content-Length and Transfer-Encoding"),
        "{err}"
    );
}

#[test]
fn alternatives_and_fields() {
    let r = crate::wire::read_response(
        &mut &b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad"[..],
        false,
    )
    .unwrap();
    let exp: Expect = toml::from_str(
        "connection_token = \"close\"\n[[any_of]]\nstatus = 200\n[[any_of]]\nstatus = 400\nbody = \"bad\"\n",
    )
    .unwrap();
    assert_eq!(check_fields(&exp, &r), Ok(()));
    let exp: Expect =
        toml::from_str("[[any_of]]\nstatus = 200\n[[any_of]]\nstatus = 411\n").unwrap();
    let err = check_fields(&exp, &r).unwrap_err();
    assert!(err.starts_with("no alternative matched"), "{err}");
    let exp: Expect = toml::from_str("headers_absent = [\"connection\"]").unwrap();
    assert!(
        check_fields(&exp, &r)
            .unwrap_err()
            .contains("present, want absent")
    );
}
