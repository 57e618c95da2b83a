//! Limits and start-up errors: oversized headers (431), oversized bodies
//! (413), malformed requests (400), extensions that cannot be loaded.

use std::io::Write;
use std::time::Duration;

use crate::support::*;

#[test]
fn oversized_header_is_431() {
    let host = Host::with_c_fixture("hello", &[]);
    let mut c = host.connect();
    let mut req = b"GET / HTTP/1.1\r\nHost: t\r\n".to_vec();
    let filler = "a".repeat(64 * 1024);
    for i in 0..16 {
        req.extend_from_slice(format!("X-Filler-{i}: {filler}\r\n").as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    // Write from another thread: the host may stop reading once over its limit.
    let mut w = c.stream().try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&req);
    });
    let r = c
        .read_response()
        .expect("an answer to a 1 MiB header block");
    assert_eq!(r.status, 431, "{r:?}");
    let _ = writer.join();
    // The host is fine afterwards.
    assert_eq!(host.get("/").status, 200);
}

#[test]
fn body_over_max_body_is_413() {
    let host = Host::with_c_fixture("echo", &["--max-body", "1000"]);
    let mut c = host.connect();
    let body = pattern_bytes(5000, 1);
    let req = post_request(host.addr(), "/echo", &body);
    let mut w = c.stream().try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&req);
    });
    let r = c.read_response().expect("response");
    assert_eq!(r.status, 413, "{r:?}");
    let _ = writer.join();
    // Within the limit it works.
    let r = request(
        host.addr(),
        &post_request(host.addr(), "/echo", &body[..1000]),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, &body[..1000]);
}

#[test]
fn malformed_requests_are_400() {
    let host = Host::with_c_fixture("hello", &[]);
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: t\r\nBad Header Line\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ] {
        let mut c = host.connect();
        c.send(raw);
        let r = c
            .read_response()
            .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(raw)));
        assert_eq!(r.status, 400, "{:?} -> {r:?}", String::from_utf8_lossy(raw));
        assert!(c.is_closed(), "connection closed after a 400");
    }
    assert_eq!(host.get("/").status, 200);
}

fn expect_startup_failure(args: &[&str], must_mention: &[&str]) -> HostExit {
    let exit = Host::run_to_exit(
        args,
        std::iter::empty::<(&str, &str)>(),
        Duration::from_secs(30),
    );
    assert!(
        !exit.status.success(),
        "host must exit non-zero for {args:?}: {}\n{}",
        exit.status,
        exit.stderr
    );
    assert!(
        !exit.stdout.contains("listening on"),
        "host must not listen for {args:?}: {}",
        exit.stdout
    );
    for word in must_mention {
        assert!(
            exit.stderr.contains(word),
            "stderr must mention {word:?} for {args:?}:\n{}",
            exit.stderr
        );
    }
    exit
}

#[test]
fn get_extension_version_false_is_a_startup_error() {
    let lib = c_fixture_str("noversion");
    let stem = c_fixture_stem("noversion");
    expect_startup_failure(&["--extension", &lib], &[&stem, "GetExtensionVersion"]);
}

#[test]
fn missing_http_extension_proc_is_a_startup_error() {
    let lib = c_fixture_str("noproc");
    let stem = c_fixture_stem("noproc");
    expect_startup_failure(&["--extension", &lib], &[&stem, "HttpExtensionProc"]);
}

#[test]
fn missing_library_is_a_startup_error() {
    let dir = temp_dir("missing-lib");
    if windows_host() {
        // Checked before loading: the DLL named once, with where it came from.
        let lib = host_path(dir.join("doesnotexist.dll"));
        let exit = expect_startup_failure(
            &["--extension", &lib],
            &[&lib, "(from --extension) does not exist"],
        );
        assert_eq!(
            exit.stderr.matches("doesnotexist.dll").count(),
            1,
            "the error names the DLL once:\n{}",
            exit.stderr
        );
        return;
    }
    let lib = dir.join("libdoesnotexist.so");
    let lib = lib.to_str().unwrap();
    // Checked before any worker starts: the path, where it came from, named once, and no
    // "dlopen failed".
    let exit = expect_startup_failure(
        &["--extension", lib],
        &["libdoesnotexist", "(from --extension) does not exist"],
    );
    assert_eq!(
        exit.stderr.matches("libdoesnotexist.so").count(),
        1,
        "the error names the library once:\n{}",
        exit.stderr
    );
    assert!(!exit.stderr.contains("dlopen failed"), "{}", exit.stderr);
}

#[test]
fn bad_mount_among_good_ones_is_a_startup_error() {
    let good = format!("/a={}", c_fixture_str("hello"));
    let bad = format!("/b={}", c_fixture_str("noproc"));
    let stem = c_fixture_stem("noproc");
    expect_startup_failure(
        &["--map", &good, "--map", &bad],
        &[&stem, "HttpExtensionProc"],
    );
}

#[test]
fn max_header_option() {
    let host = Host::with_c_fixture("hello", &["--max-header", "20000"]);
    let small = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Small: {}\r\n\r\n",
        "s".repeat(15000)
    );
    let r = request(host.addr(), small.as_bytes());
    assert_eq!(r.status, 200, "a 15 KB head is within --max-header 20000");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(30000)
    );
    let r = request(host.addr(), big.as_bytes());
    assert_eq!(
        r.status, 431,
        "a 30 KB head exceeds --max-header 20000: {r:?}"
    );
}

#[test]
fn default_max_header_is_16k() {
    let host = Host::with_c_fixture("hello", &[]);
    let ok = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Small: {}\r\n\r\n",
        "s".repeat(12000)
    );
    assert_eq!(request(host.addr(), ok.as_bytes()).status, 200);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20000)
    );
    assert_eq!(request(host.addr(), big.as_bytes()).status, 431);
}

#[test]
fn small_max_header_is_enforced_or_refused() {
    // --max-header 2000 must either be enforced or rejected at start-up; it
    // must not be silently raised.
    let lib = c_fixture_str("hello");
    let args = ["--extension", lib.as_str(), "--max-header", "2000"];
    match Host::try_start_env(&args, std::iter::empty::<(&str, &str)>()) {
        Err(_) => {}
        Ok(host) => {
            let big = format!(
                "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
                "b".repeat(3000)
            );
            let r = request(host.addr(), big.as_bytes());
            assert_eq!(
                r.status, 431,
                "a 3 KB head exceeds --max-header 2000: {r:?}"
            );
        }
    }
}

#[test]
fn header_timeout_closes_a_slow_client() {
    let host = Host::with_c_fixture("hello", &["--header-timeout", "1"]);
    let mut c = host.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n"); // never finished
    let start = std::time::Instant::now();
    let (bytes, closed) = c.read_until_close();
    let elapsed = start.elapsed();
    assert!(
        closed,
        "the host must close a connection whose head never completes"
    );
    assert!(
        elapsed >= Duration::from_millis(800) && elapsed < Duration::from_secs(8),
        "closed after {elapsed:?}, expected about 1 s"
    );
    if !bytes.is_empty() {
        let mut r = &bytes[..];
        let resp = wire::read_response(&mut r, false).expect("a well-formed timeout response");
        assert_eq!(resp.status, 408, "{resp:?}");
    }
    assert_eq!(host.get("/").status, 200);
}

#[test]
fn header_timeout_counts_from_the_first_byte_however_slowly_it_trickles() {
    // A slowloris client: a byte every 200 ms keeps the connection from
    // being quiet, but the head is still due a second after it began.
    let host = Host::with_c_fixture(
        "hello",
        &["--header-timeout", "1", "--keepalive-timeout", "30"],
    );
    let mut c = host.connect();
    let start = std::time::Instant::now();
    let head = b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed_after = None;
    for &b in head.iter() {
        if c.try_send(&[b]).is_err() {
            closed_after = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        if start.elapsed() > Duration::from_secs(6) {
            break;
        }
    }
    let closed_after = closed_after.unwrap_or_else(|| {
        assert!(c.is_closed(), "a head trickling in for 6 s must be cut off");
        start.elapsed()
    });
    assert!(
        closed_after >= Duration::from_millis(800) && closed_after < Duration::from_secs(6),
        "closed after {closed_after:?}, expected about 1 s"
    );
    assert_eq!(host.get("/").status, 200, "the server goes on");
}

#[test]
fn header_timeout_leaves_idle_keepalive_connections_to_the_keepalive_timeout() {
    // Between requests with nothing sent, only --keepalive-timeout applies;
    // a head that then arrives whole is served.
    let host = Host::with_c_fixture(
        "hello",
        &["--header-timeout", "1", "--keepalive-timeout", "30"],
    );
    let mut c = host.connect();
    assert_eq!(c.roundtrip(&get_req("/")).status, 200);
    assert!(
        c.stays_open(Duration::from_millis(2500)),
        "an idle connection outlives --header-timeout"
    );
    assert_eq!(c.roundtrip(&get_req("/")).status, 200);
}

#[test]
fn keepalive_timeout_closes_idle_connections() {
    let host = Host::with_c_fixture("hello", &["--keepalive-timeout", "1"]);
    let mut c = host.connect();
    assert_eq!(c.roundtrip(&get_req("/")).status, 200);
    assert!(
        c.stays_open(Duration::from_millis(300)),
        "not closed right away"
    );
    assert_eq!(
        c.roundtrip(&get_req("/")).status,
        200,
        "reusable before the timeout"
    );
    let start = std::time::Instant::now();
    assert_eq!(
        c.peer_state(Duration::from_secs(8)),
        PeerState::Closed,
        "idle connection closed"
    );
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(700),
        "closed too early ({elapsed:?})"
    );
}

#[test]
fn content_length_with_transfer_encoding_does_not_smuggle() {
    // RFC 9112 section 6.1: reject, or treat as chunked and close after responding.
    let host = Host::with_c_fixture("echo", &[]);
    let mut c = host.connect();
    c.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n\
          0\r\n\r\nGET /echo?smuggled HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let r = c.read_response().expect("first response");
    assert!(r.status == 400 || r.status == 200, "{r:?}");
    if r.status == 200 {
        assert!(
            r.body.is_empty(),
            "the body is the (empty) chunked one: {r:?}"
        );
    }
    assert!(
        c.is_closed(),
        "the connection must be closed: no response to the smuggled request"
    );
}

#[test]
fn transfer_encoding_without_final_chunked_is_400() {
    // RFC 9112 section 6.3: chunked not last in a request -> 400 and close.
    let host = Host::with_c_fixture("echo", &[]);
    let mut c = host.connect();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nabc");
    let r = c.read_response().expect("response");
    assert!(r.status == 400 || r.status == 501, "{r:?}");
    assert!(c.is_closed());
}
