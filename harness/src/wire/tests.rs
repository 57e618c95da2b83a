//! The reader's rules, byte for byte: framing, strictness, truncation,
//! pipelining, and the same answers however the bytes are split.

use std::io::{Read, Write};
use std::time::Duration;

use super::error::lossy;
use super::*;

fn read(raw: &[u8]) -> Result<Response, WireError> {
    let mut r = raw;
    read_response(&mut r, false)
}

#[test]
fn content_length() {
    let r = read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  b \r\n\r\nhello").unwrap();
    assert_eq!(r.version, "HTTP/1.1");
    assert_eq!(r.status, 200);
    assert_eq!(r.reason, "OK");
    assert_eq!(r.body, b"hello");
    assert_eq!(r.framing, Framing::ContentLength(5));
    assert_eq!(r.header("x-a"), Some("b"));
    assert_eq!(r.header("CONTENT-LENGTH"), Some("5"));
    assert!(r.keep_alive_signalled());
}

#[test]
fn does_not_overread_pipelined() {
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\nHTTP/1.0 200 OK\r\n\r\nrest";
    let mut r = &raw[..];
    assert_eq!(read_response(&mut r, false).unwrap().body, b"a");
    let two = read_response(&mut r, false).unwrap();
    assert_eq!(two.body, b"b");
    assert_eq!(two.framing, Framing::Chunked);
    let three = read_response(&mut r, false).unwrap();
    assert_eq!(three.framing, Framing::CloseDelimited);
    assert_eq!(three.body, b"rest");
    assert!(!three.keep_alive_signalled());
    assert!(matches!(
        read_response(&mut r, false),
        Err(WireError::EofBeforeHead)
    ));
}

#[test]
fn chunked_with_extensions_and_trailers() {
    let r = read(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
          3;name=val\r\nabc\r\nA ; x\r\n0123456789\r\n0;last\r\nX-Check: 1\r\nX-Other:  two \r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.framing, Framing::Chunked);
    assert_eq!(r.body, b"abc0123456789");
    assert_eq!(r.chunk_sizes, vec![3, 10]);
    assert_eq!(r.trailer("x-check"), Some("1"));
    assert_eq!(r.trailer("x-other"), Some("two"));
}

#[test]
fn te_not_chunked_last_is_close_delimited() {
    let r = read(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\nContent-Length: 2\r\n\r\nxyz",
    )
    .unwrap();
    assert_eq!(r.framing, Framing::CloseDelimited);
    assert_eq!(r.body, b"xyz");
}

#[test]
fn te_overrides_content_length() {
    let r = read(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n").unwrap();
    assert_eq!(r.framing, Framing::Chunked);
    assert_eq!(r.body, b"ok");
}

#[test]
fn no_body_statuses_and_head() {
    for raw in [
        &b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"[..],
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
    ] {
        let r = read(raw).unwrap();
        assert_eq!(r.framing, Framing::None);
        assert!(r.body.is_empty());
    }
    let mut raw = &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[..];
    let r = read_response(&mut raw, true).unwrap();
    assert_eq!(r.framing, Framing::None);
    assert_eq!(r.header("content-length"), Some("5"));
    assert_eq!(
        read_response(&mut raw, false).unwrap().framing,
        Framing::ContentLength(0)
    );
}

#[test]
fn interim_responses() {
    let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let r = read(raw).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.interim.len(), 2);
    assert_eq!(r.interim[0].status, 100);
    assert_eq!(
        r.interim[1].headers,
        vec![("Link".to_owned(), "</a>".to_owned())]
    );

    let mut rd = &raw[..];
    let opts = ReadOptions {
        head_request: false,
        return_interim: true,
    };
    assert_eq!(read_response_with(&mut rd, opts).unwrap().status, 100);
    assert_eq!(read_response_with(&mut rd, opts).unwrap().status, 103);
    let fin = read_response_with(&mut rd, opts).unwrap();
    assert_eq!(fin.status, 200);
    assert!(fin.interim.is_empty());
}

#[test]
fn duplicate_content_length() {
    let r =
        read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nok").unwrap();
    assert_eq!(r.framing, Framing::ContentLength(2));
    assert!(matches!(
        read(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"),
        Err(WireError::InvalidContentLength(_))
    ));
    for bad in ["-1", "+2", "0x10", "", "1 2", "99999999999999999999999"] {
        let raw = format!("HTTP/1.1 200 OK\r\nContent-Length: {bad}\r\n\r\n");
        assert!(
            matches!(
                read(raw.as_bytes()),
                Err(WireError::InvalidContentLength(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn malformed_status_lines() {
    for bad in [
        &b"HTTP/1.1 20 OK\r\n\r\n"[..],
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1  200 OK\r\n\r\n",
        b"HTTP/11 200 OK\r\n\r\n",
        b"http/1.1 200 OK\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 099 Low\r\n\r\n",
        b"\r\n",
    ] {
        assert!(
            matches!(read(bad), Err(WireError::BadStatusLine(_))),
            "{:?}",
            lossy(bad)
        );
    }
    // empty reason is fine, with or without the SP
    assert_eq!(
        read(b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .reason,
        ""
    );
    assert_eq!(
        read(b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .status,
        200
    );
}

#[test]
fn malformed_headers() {
    for bad in [
        &b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nName : v\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n: v\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nA\x00: v\r\n\r\n",
    ] {
        assert!(
            matches!(read(bad), Err(WireError::BadHeader(_))),
            "{:?}",
            lossy(bad)
        );
    }
    assert!(matches!(
        read(b"HTTP/1.1 200 OK\nA: b\r\n\r\n"),
        Err(WireError::BareLf(_))
    ));
    assert!(matches!(
        read(b"HTTP/1.1 200 OK\r\nA: b\n\r\n"),
        Err(WireError::BareLf(_))
    ));
}

#[test]
fn truncation() {
    assert!(matches!(read(b""), Err(WireError::EofBeforeHead)));
    assert!(matches!(
        read(b"HTTP/1.1 200"),
        Err(WireError::TruncatedHead(_))
    ));
    assert!(matches!(
        read(b"HTTP/1.1 200 OK\r\nA: b\r\n"),
        Err(WireError::TruncatedHead(_))
    ));
    match read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc") {
        Err(WireError::TruncatedBody { expected, got }) => {
            assert_eq!(expected, Some(10));
            assert_eq!(got, 3);
        }
        other => panic!("{other:?}"),
    }
    for raw in [
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nX: y\r\n",
    ] {
        assert!(
            matches!(
                read(raw),
                Err(WireError::TruncatedBody { expected: None, .. })
            ),
            "{:?}",
            lossy(raw)
        );
    }
}

#[test]
fn bad_chunks() {
    let pre = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    for bad in [
        "zz\r\n",
        "\r\n",
        "-1\r\n",
        "0x5\r\n",
        "5 x\r\n",
        "5 \r\n",
        "11111111111111111\r\n",
        "5\n",
    ] {
        let raw = format!("{pre}{bad}hello\r\n0\r\n\r\n");
        assert!(
            matches!(read(raw.as_bytes()), Err(WireError::BadChunkSize(_))),
            "{bad:?}"
        );
    }
    let raw = format!("{pre}5\r\nhelloXX0\r\n\r\n");
    assert!(matches!(
        read(raw.as_bytes()),
        Err(WireError::BadChunkTerminator(_))
    ));
    // uppercase hex and leading zeros are fine
    let raw = format!("{pre}00A\r\n0123456789\r\n000\r\n\r\n");
    assert_eq!(read(raw.as_bytes()).unwrap().body, b"0123456789");
}

#[test]
fn head_too_large() {
    let mut raw = b"HTTP/1.1 200 OK\r\n".to_vec();
    while raw.len() <= MAX_HEAD_BYTES {
        raw.extend_from_slice(b"X-Fill: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    raw.extend_from_slice(b"\r\n");
    assert!(matches!(read(&raw), Err(WireError::HeadTooLarge)));
}

#[test]
fn connection_tokens() {
    let r =
        read(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n").unwrap();
    assert!(r.keep_alive_signalled());
    let r =
        read(b"HTTP/1.1 200 OK\r\nConnection: foo, close\r\nContent-Length: 0\r\n\r\n").unwrap();
    assert!(r.connection_has("CLOSE"));
    assert!(!r.keep_alive_signalled());
}

#[test]
fn conn_peek_until() {
    use std::net::TcpListener;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(400));
        s.write_all(b"7\r\nsecond\n\r\n0\r\n\r\n").unwrap();
    });
    let mut c = Conn::connect(addr).unwrap();
    assert!(c.peek_until(b"first", Duration::from_secs(5)).unwrap());
    assert!(!c.peek_until(b"second", Duration::from_millis(50)).unwrap());
    let r = c.read_response(false).unwrap();
    assert_eq!(r.body, b"first\nsecond\n");
    assert_eq!(r.chunk_sizes, vec![6, 7]);
    t.join().unwrap();
}

#[test]
fn conn_pipelined_and_close_detection() {
    use std::net::TcpListener;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf).unwrap();
        // two responses in one write, then a pause, then close
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb")
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        drop(s);
    });
    let mut c = Conn::connect(addr).unwrap();
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response(false).unwrap().body, b"a");
    assert_eq!(c.read_response(false).unwrap().body, b"b");
    assert!(c.buffered().is_empty());
    assert_eq!(
        c.wait_closed(Duration::from_millis(50)).unwrap(),
        PeerState::Open
    );
    assert_eq!(
        c.wait_closed(Duration::from_secs(5)).unwrap(),
        PeerState::Closed
    );
    t.join().unwrap();
}

/// A reader that hands out at most `step` bytes per `fill_buf`, as a slow
/// server's segments would arrive.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = out.len().min(self.step).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

impl std::io::BufRead for Trickle<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        let n = self.step.min(self.data.len());
        Ok(&self.data[..n])
    }
    fn consume(&mut self, n: usize) {
        self.data = &self.data[n..];
    }
}

/// Every response (or error) of `raw`, read one after another to the first error.
fn read_all(reader: &mut dyn std::io::BufRead) -> Vec<Result<Response, String>> {
    let mut out = Vec::new();
    loop {
        match read_response(reader, false) {
            Ok(r) => out.push(Ok(r)),
            Err(WireError::EofBeforeHead) => return out,
            Err(e) => {
                out.push(Err(format!("{e:?}")));
                return out;
            }
        }
    }
}

/// Splitting the bytes anywhere changes nothing: not the responses, not where
/// one ends, not which error is reported.
#[test]
fn the_same_answers_however_the_bytes_are_split() {
    let corpus: &[&[u8]] = &[
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\nA\r\n0123456789\r\n0\r\nT: 1\r\n\r\nHTTP/1.0 200 OK\r\n\r\nclose-delimited",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nX: y\nZ: 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nX : y\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nA: b\nC : d\r\n\r\n",
        b"HTTP/1.1 099 Low\r\nA: b\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        b"\r\nHTTP/1.1 200 OK\r\n\r\n",
        b"garbage",
        b"HTTP/1.1 200 OK\r\nA: b\r\n",
    ];
    for raw in corpus {
        let mut whole = *raw;
        let want = read_all(&mut whole);
        for step in [1, 2, 3, 7, 64] {
            let got = read_all(&mut Trickle { data: raw, step });
            assert_eq!(got, want, "{:?} in steps of {step}", lossy(raw));
        }
    }
}

/// An error is reported for the first bad line in wire order, once that line
/// is complete; a line cut short by the end of the input is a truncation.
#[test]
fn errors_come_in_wire_order() {
    let bare = |r: Result<Response, WireError>| matches!(r, Err(WireError::BareLf(_)));
    assert!(bare(read(b"HTTP/1.1 099 Low\nA: b\r\n\r\n")));
    assert!(matches!(
        read(b"HTTP/1.1 099 Low\r\nA: b\n\r\n"),
        Err(WireError::BadStatusLine(_))
    ));
    assert!(matches!(
        read(b"HTTP/1.1 200 OK\r\nA : b\r\nC: d\n\r\n"),
        Err(WireError::BadHeader(l)) if l == "A : b"
    ));
    assert!(bare(read(b"HTTP/1.1 200 OK\r\nC: d\nA : b\r\n\r\n")));
    assert!(matches!(read(b"garbage"), Err(WireError::TruncatedHead(7))));
    assert!(matches!(
        read(b"garbage\r\n"),
        Err(WireError::BadStatusLine(l)) if l == "garbage"
    ));
    assert!(matches!(read(b"\n"), Err(WireError::BareLf(_))));
    assert!(matches!(
        read(b"HTTP/1.1 200 OK\r\nA"),
        Err(WireError::TruncatedHead(18))
    ));
}

#[test]
fn reason_headers_and_many_fields_as_sent() {
    let r = read(b"HTTP/1.1 200 Tr\xe8s bien\r\nContent-Length: 0\r\n\r\n").unwrap();
    assert_eq!(r.reason, "Tr\u{fffd}s bien");
    let mut raw = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..700 {
        raw.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
    }
    raw.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
    let r = read(&raw).unwrap();
    assert_eq!(r.headers.len(), 701);
    assert_eq!(r.header("x-699"), Some("699"));
    assert_eq!(r.body, b"ok");
}

#[test]
fn trailer_lines_are_held_to_the_rules() {
    let pre = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n";
    assert!(matches!(
        read(format!("{pre}X: y\n\r\n").as_bytes()),
        Err(WireError::BareLf(_))
    ));
    assert!(matches!(
        read(format!("{pre}X : y\r\n\r\n").as_bytes()),
        Err(WireError::BadHeader(_))
    ));
}

/// A sink that only counts, as the load generator's does.
#[derive(Default)]
struct Count {
    status: u16,
    bytes: usize,
    closing: bool,
}

impl Sink for Count {
    fn head(&mut self, head: &Head<'_>, framing: Framing) {
        self.status = head.status;
        self.closing =
            framing == Framing::CloseDelimited || head.fields.has_token("connection", "close");
    }
    fn data(&mut self, bytes: &[u8]) {
        self.bytes += bytes.len();
    }
}

/// The async front end reads every framing exactly and keeps pipelined bytes.
#[test]
fn async_conn_framings() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let addr = crate::testing::spawn_framing_server().await;
        let mut c = AsyncConn::connect(addr).await.unwrap();
        let req = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
        c.send(req).await.unwrap();
        let r = c.read_response(false).await.unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), r.interim.len()),
            (200, &b"Hello, world!"[..], 1)
        );
        c.send(req).await.unwrap();
        let r = c.read_response(false).await.unwrap();
        assert_eq!(
            (r.body.as_slice(), r.chunk_sizes.as_slice()),
            (&b"Hello, world!"[..], &[5, 8][..])
        );
        assert_eq!(r.trailer("t"), Some("v"));
        c.send(req).await.unwrap();
        let mut n = Count::default();
        c.read_with(
            ReadOptions {
                head_request: true,
                return_interim: false,
            },
            &mut n,
        )
        .await
        .unwrap();
        assert_eq!((n.status, n.bytes, n.closing), (200, 0, false));
        assert!(c.buffered().is_empty());
        c.send(req).await.unwrap();
        let mut n = Count::default();
        c.read_with(ReadOptions::default(), &mut n).await.unwrap();
        assert_eq!((n.bytes, n.closing), (15, true));
    });
}

/// The last transfer coding over every Transfer-Encoding field decides, and a
/// bad Content-Length does not matter next to one.
#[test]
fn transfer_codings_across_fields() {
    let chunked = "2\r\nok\r\n0\r\n\r\n";
    for te in [
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: \r\n",
        "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: abc\r\n",
    ] {
        let r = read(format!("HTTP/1.1 200 OK\r\n{te}\r\n{chunked}").as_bytes()).unwrap();
        assert_eq!(
            (r.framing, r.body.as_slice()),
            (Framing::Chunked, &b"ok"[..]),
            "{te:?}"
        );
    }
    let r =
        read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\nxy")
            .unwrap();
    assert_eq!(r.framing, Framing::CloseDelimited);
    let r = read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: ,\r\n\r\nxy").unwrap();
    assert_eq!(r.framing, Framing::CloseDelimited);
}
