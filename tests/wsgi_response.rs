//! start_response, write(), exc_info, lazy start_response, hop-by-hop headers,
//! and the framing of responses: computed Content-Length, chunked on HTTP/1.1
//! keep-alive, close-delimited otherwise, the app's Content-Length enforced.

use std::time::Duration;

use crate::support::{self, Framing, get_req};
use crate::{body, probe_host};

#[test]
fn write_then_iterable_is_chunked_and_keeps_the_connection() {
    let host = probe_host();
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/write"));
    assert_eq!((r.status, body(&r).as_str()), (200, "via-write;via-iter"));
    assert_eq!(r.framing, Framing::Chunked);
    let r = c.roundtrip(&get_req("/write-only"));
    assert_eq!(body(&r), "only write");
    // the app's Content-Length covers write() and the iterable
    let r = c.roundtrip(&get_req("/write-cl"));
    assert_eq!(
        (body(&r).as_str(), r.framing),
        ("via-write;iter!!", Framing::ContentLength(16))
    );
    let r = c.roundtrip(&get_req("/hello"));
    assert_eq!(body(&r), "Hello, world!");
}

#[test]
fn write_honours_the_apps_content_length() {
    let host = probe_host();
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/write-cl-long"));
    assert_eq!(
        (body(&r).as_str(), r.framing),
        ("12345", Framing::ContentLength(5))
    );
    assert!(c.buffered().is_empty());
    let r = c.roundtrip(&get_req("/hello"));
    assert_eq!(body(&r), "Hello, world!");
    c.send(&get_req("/write-cl-short"));
    let (raw, closed) = c.read_until_close();
    assert!(String::from_utf8_lossy(&raw).ends_with("\r\n\r\nonly ten b"));
    assert!(closed, "a short body closes the connection");
}

#[test]
fn lazy_start_response_in_a_generator_is_honoured() {
    let host = probe_host();
    let r = host.get("/lazy");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-lazy"), Some("yes"));
    assert_eq!(body(&r), "lazy body");
    let r = host.get("/lazy-empty");
    assert_eq!((r.status, r.header("x-lazy")), (201, Some("empty")));
    assert_eq!(r.framing, Framing::ContentLength(0));
}

#[test]
fn exc_info_replaces_status_before_headers() {
    let host = probe_host();
    let r = host.get("/exc-info");
    assert_eq!((r.status, body(&r).as_str()), (503, "replaced by exc_info"));
}

#[test]
fn exc_info_after_headers_reraises_and_closes() {
    let host = probe_host();
    let mut c = host.connect();
    c.send(&get_req("/exc-info-after"));
    let (raw, closed) = c.read_until_close();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("first part;") && !text.contains("never"),
        "{text}"
    );
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "the chunked body must not be terminated: {text}"
    );
    assert!(closed, "the connection must be closed");
    assert!(host.wait_for_log("KeyError: 'late'", Duration::from_secs(5)));
    assert_eq!(host.get("/hello").status, 200);
}

#[test]
fn start_response_twice_without_exc_info_is_an_error() {
    let host = probe_host();
    assert_eq!(host.get("/twice").status, 500);
    assert!(host.wait_for_log("called a second time", Duration::from_secs(5)));
}

#[test]
fn hop_by_hop_headers_are_an_error() {
    let host = probe_host();
    for name in [
        "Connection",
        "Keep-Alive",
        "Transfer-Encoding",
        "Upgrade",
        "TE",
        "Trailer",
        "Proxy-Authenticate",
    ] {
        let r = host.get(&format!("/hop?{name}"));
        assert_eq!(r.status, 500, "{name}");
        assert!(!body(&r).contains("passed through"), "{name}");
    }
    assert!(host.wait_for_log("hop-by-hop header \"Upgrade\"", Duration::from_secs(5)));
}

#[test]
fn an_apps_status_header_is_not_sent_and_cannot_override_the_status() {
    let host = probe_host();
    for _ in 0..2 {
        let r = host.get("/status-header");
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.header("status").is_none(), "{r:?}");
        assert_eq!(body(&r), "the status is start_response's");
    }
    assert!(host.wait_for_log("sent a Status response header", Duration::from_secs(5)));
    assert_eq!(
        support::count(&host.stderr(), "sent a Status response header"),
        1,
        "logged once"
    );
}

#[test]
fn invalid_status_headers_and_body_types() {
    let host = probe_host();
    for path in ["/bad-status", "/bad-header", "/not-bytes", "/no-start"] {
        let r = host.get(path);
        assert_eq!(r.status, 500, "{path}");
        assert!(
            r.header("set-cookie").is_none(),
            "{path}: no header injection"
        );
    }
}

#[test]
fn known_lengths_get_a_content_length() {
    let host = probe_host();
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/list1"));
    assert_eq!(
        (body(&r).as_str(), r.framing),
        ("single item", Framing::ContentLength(11))
    );
    let r = c.roundtrip(&get_req("/list3"));
    assert_eq!(
        (body(&r).as_str(), r.framing),
        ("abbccc", Framing::ContentLength(6))
    );
    let r = c.roundtrip(&get_req("/empty"));
    assert_eq!(r.framing, Framing::ContentLength(0));
    let r = c.roundtrip(&get_req("/204"));
    assert_eq!((r.status, r.framing), (204, Framing::None));
    let r = c.roundtrip(&get_req("/hello"));
    assert_eq!(r.status, 200);
}

#[test]
fn unknown_length_is_chunked_on_http11_keep_alive() {
    let host = probe_host();
    let mut c = host.connect();
    for _ in 0..3 {
        let r = c.roundtrip(&get_req("/gen"));
        assert_eq!(
            (body(&r).as_str(), r.framing),
            ("chunk1;chunk2;chunk3", Framing::Chunked)
        );
        assert_eq!(r.chunk_sizes, [7, 7, 6]);
    }
}

#[test]
fn unknown_length_is_close_delimited_otherwise() {
    let host = probe_host();
    // HTTP/1.0
    let mut c = host.connect();
    c.send(b"GET /gen HTTP/1.0\r\nHost: t\r\n\r\n");
    let r = c.read_response().expect("response");
    assert_eq!(
        (body(&r).as_str(), r.framing),
        ("chunk1;chunk2;chunk3", Framing::CloseDelimited)
    );
    // HTTP/1.0 asking for keep-alive: still no chunked framing for 1.0
    let mut c = host.connect();
    c.send(b"GET /gen HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n");
    let r = c.read_response().expect("response");
    assert_eq!(
        (body(&r).as_str(), r.framing),
        ("chunk1;chunk2;chunk3", Framing::CloseDelimited)
    );
    // HTTP/1.1 with Connection: close
    let mut c = host.connect();
    c.send(b"GET /gen HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = c.read_response().expect("response");
    assert_eq!(
        (body(&r).as_str(), r.framing),
        ("chunk1;chunk2;chunk3", Framing::CloseDelimited)
    );
}

#[test]
fn http10_keep_alive_with_known_length() {
    let host = probe_host();
    let mut c = host.connect();
    for _ in 0..2 {
        c.send(b"GET /hello HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n");
        let r = c.read_response().expect("response");
        assert_eq!(
            (body(&r).as_str(), r.framing),
            ("Hello, world!", Framing::ContentLength(13))
        );
    }
}

#[test]
fn short_content_length_closes_the_connection() {
    let host = probe_host();
    let mut c = host.connect();
    c.send(&get_req("/short-cl"));
    let (raw, closed) = c.read_until_close();
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.contains("content-length: 100") || text.contains("Content-Length: 100"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nonly 13 bytes"), "{text}");
    assert!(closed);
    assert!(host.wait_for_log(
        "declared Content-Length 100 but sent 13",
        Duration::from_secs(5)
    ));
}

#[test]
fn long_content_length_is_cut_and_the_connection_stays_usable() {
    let host = probe_host();
    let mut c = host.connect();
    for path in ["/long-cl", "/long-cl-list"] {
        let r = c.roundtrip(&get_req(path));
        assert_eq!(
            (body(&r).as_str(), r.framing),
            ("12345", Framing::ContentLength(5)),
            "{path}"
        );
        assert!(
            c.buffered().is_empty(),
            "{path}: no surplus bytes on the wire"
        );
    }
    let r = c.roundtrip(&get_req("/hello"));
    assert_eq!(body(&r), "Hello, world!");
}

#[test]
fn head_requests() {
    let host = probe_host();
    let mut c = host.connect();
    for path in ["/gen", "/hello", "/list3"] {
        c.send(format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let r = c.read_response_to_head().expect("HEAD response");
        assert_eq!(r.status, 200, "{path}");
        assert!(r.body.is_empty());
    }
    let r = c.roundtrip(&get_req("/hello"));
    assert_eq!(body(&r), "Hello, world!");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let host = probe_host();
    let mut c = host.connect();
    let paths: Vec<String> = (0..25)
        .map(|i| ["/hello", "/gen", "/list3", "/write", "/lazy"][i % 5].to_owned())
        .collect();
    let mut all = Vec::new();
    for p in &paths {
        all.extend_from_slice(&get_req(p));
    }
    c.send(&all);
    for p in &paths {
        let r = c.read_response().expect("pipelined response");
        let expected = match p.as_str() {
            "/hello" => "Hello, world!",
            "/gen" => "chunk1;chunk2;chunk3",
            "/list3" => "abbccc",
            "/write" => "via-write;via-iter",
            _ => "lazy body",
        };
        assert_eq!(body(&r), expected, "{p}");
    }
}

#[test]
fn fifty_concurrent_clients() {
    let host = probe_host();
    let addr = host.addr();
    let handles: Vec<_> = (0..50)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = support::RawConn::connect(addr).expect("connect");
                for _ in 0..4 {
                    let path = if i % 2 == 0 { "/hello" } else { "/gen" };
                    let r = c.roundtrip(&get_req(path));
                    assert_eq!(r.status, 200);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
}
