//! The framing tracker's tests: its fast path against the tracker alone.
use super::*;

/// The state wherever it lives: (a head ended and awaits its request,
/// between requests with nothing started, poisoned).
fn view(f: &Framing) -> (bool, bool, bool) {
    match f.fast() {
        Fast::SLOW => {
            let t = f.lock();
            (
                matches!(t.state, State::Await),
                matches!(
                    t.state,
                    State::Head {
                        started: false,
                        nonempty: false
                    }
                ),
                t.poisoned,
            )
        }
        fast => (fast == Fast::AWAIT, fast == Fast::head(false, false), false),
    }
}

/// Feeds `wire` (head, then body) in pieces of `step` bytes; returns the
/// check and whether the connection was poisoned, and the state.
fn run(
    head: &[u8],
    framing: BodyFraming,
    body: &[u8],
    step: usize,
) -> (Framing, Option<Arc<BodyCheck>>) {
    let f = Framing::default();
    let wire = [head, body].concat();
    let mut check = None;
    let mut begun = false;
    for piece in wire.chunks(step) {
        f.received(piece);
        if !begun && view(&f).0 {
            begun = true;
            check = f.begin_request(framing).ok().flatten();
        }
    }
    (f, check)
}

const HEAD: &[u8] = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";

#[test]
fn a_valid_chunked_body_returns_to_the_next_head_in_any_pieces() {
    let body = b"5;a=\"b;c\"\r\nhello\r\n1 ;x\r\n!\r\n0\r\nX-T: v \t\r\nY:\r\n\r\n";
    for step in 1..=body.len() + HEAD.len() {
        let (f, check) = run(HEAD, BodyFraming::Chunked, body, step);
        let check = check.expect("chunked");
        assert!(!check.broken_at(u64::MAX - 1), "step {step}");
        assert_eq!(view(&f), (false, true, false), "step {step}");
        assert_ne!(f.fast(), Fast::SLOW, "step {step}: back on the fast path");
    }
}

#[test]
fn an_invalid_line_marks_the_body_at_the_bytes_before_it_and_poisons() {
    for (body, at) in [
        (&b"5\r\nhello\r\n3;;\r\nabc\r\n0\r\n\r\n"[..], 5),
        (b"20;invalid=\r\n", 0),
        (b"2\r\nhi\r\n0;a=\"x\r\n\r\n", 2),
        (b"2\r\nhi\r\n0\r\nnot a field\r\n\r\n", 2),
        (b"2\r\nhi\r\n0\r\nA: b\nC: d\r\n\r\n", 2),
        (b"2\r\nhi\r\n0\r\nA: b\r\n c\r\n\r\n", 2),
        (b"2\r\nhi\r\n0\r\nA: \x01\r\n\r\n", 2),
        (b"2\r\nhi\r\n0\r\n\r\r\n", 2),
        (b"2\r\nhix\r\n", 2),
    ] {
        for step in 1..=body.len() + HEAD.len() {
            let (f, check) = run(HEAD, BodyFraming::Chunked, body, step);
            let check = check.expect("chunked");
            assert!(check.broken_at(at), "{body:?} step {step}");
            assert!(
                !check.broken_at(at.wrapping_sub(1)) || at == 0,
                "{body:?} step {step}"
            );
            assert!(view(&f).2);
            assert_eq!(
                f.begin_request(BodyFraming::Length(0)).unwrap_err(),
                Poisoned
            );
            // A poisoned connection never goes back to the fast path.
            f.received(b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(f.fast(), Fast::SLOW);
            assert_eq!(
                f.begin_request(BodyFraming::Length(0)).unwrap_err(),
                Poisoned
            );
        }
    }
}

#[test]
fn heads_and_length_bodies_are_skipped_across_pipelined_requests() {
    let f = Framing::default();
    let wire = b"\r\nPOST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n5;;\r\nGET / HTTP/1.1\n\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;x\r\na\r\n0\r\n\r\n";
    f.received(wire);
    assert!(f.begin_request(BodyFraming::Length(5)).unwrap().is_none());
    assert!(f.begin_request(BodyFraming::Length(0)).unwrap().is_none());
    let check = f.begin_request(BodyFraming::Chunked).unwrap().unwrap();
    assert!(!check.broken_at(1));
    assert_eq!(view(&f), (false, true, false));
}

#[test]
fn a_request_where_no_head_ended_poisons() {
    let f = Framing::default();
    f.received(b"GET / HTTP/1.1\r\n");
    assert_eq!(
        f.begin_request(BodyFraming::Length(0)).unwrap_err(),
        Poisoned
    );
}

#[test]
fn bodyless_requests_one_per_read_stay_on_the_fast_path() {
    let f = Framing::default();
    for head in [
        &b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"\r\n\r\nGET /b HTTP/1.1\nHost: x\n\n",
        b"GET /c HTTP/1.1\r\n\r\r\n",
    ] {
        for piece in head.chunks(7) {
            assert!(!f.received(piece));
        }
        assert_eq!(f.fast(), Fast::AWAIT, "{head:?}");
        assert!(f.begin_request(BodyFraming::Length(0)).unwrap().is_none());
        assert_eq!(f.fast(), Fast::head(false, false));
    }
    // A head followed by bytes in the same read takes the slow path.
    f.received(b"GET /d HTTP/1.1\r\n\r\nGET");
    assert_eq!(f.fast(), Fast::SLOW);
    assert!(f.begin_request(BodyFraming::Length(0)).unwrap().is_none());
    assert_eq!(
        f.fast(),
        Fast::head(false, true),
        "back, in the next request line"
    );
}

/// The byte-by-byte head scan that `head_end` replaced.
fn head_end_bytewise(started: &mut bool, nonempty: &mut bool, bytes: &[u8]) -> Option<usize> {
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\n' if *nonempty => {
                *started = true;
                *nonempty = false;
            }
            b'\n' if *started => return Some(i + 1),
            b'\n' | b'\r' => {}
            _ => *nonempty = true,
        }
    }
    None
}

#[test]
fn head_end_agrees_with_a_byte_by_byte_scan_on_every_short_input() {
    let alphabet = [b'\r', b'\n', b'a'];
    for len in 0..=8u32 {
        for mut code in 0..3usize.pow(len) {
            let mut bytes = Vec::new();
            for _ in 0..len {
                bytes.push(alphabet[code % 3]);
                code /= 3;
            }
            for start in 0..4u8 {
                let init = (start & 1 != 0, start & 2 != 0);
                let (mut s1, mut n1) = init;
                let (mut s2, mut n2) = init;
                let got = head_end(&mut s1, &mut n1, &bytes);
                let want = head_end_bytewise(&mut s2, &mut n2, &bytes);
                assert_eq!(got, want, "{bytes:?} from {init:?}");
                if want.is_none() {
                    assert_eq!((s1, n1), (s2, n2), "{bytes:?} from {init:?}");
                }
            }
        }
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

/// A random pipelined wire of requests, with the framing hyper would
/// announce for each.
fn random_wire(rng: &mut Rng) -> (Vec<u8>, Vec<BodyFraming>) {
    let mut wire = Vec::new();
    let mut framings = Vec::new();
    for _ in 0..1 + rng.below(4) {
        if rng.below(4) == 0 {
            wire.extend_from_slice(b"\r\n");
        }
        match rng.below(4) {
            0 | 1 => {
                let eol: &[u8] = [&b"\r\n"[..], b"\n", b"\r\r\n"][rng.below(3)];
                for line in [&b"GET /x HTTP/1.1"[..], b"Host: a"] {
                    wire.extend_from_slice(line);
                    wire.extend_from_slice(eol);
                }
                wire.extend_from_slice(eol);
                framings.push(BodyFraming::Length(0));
            }
            2 => {
                let n = rng.below(12);
                wire.extend_from_slice(
                    format!("POST / HTTP/1.1\r\nContent-Length: {n}\r\n\r\n").as_bytes(),
                );
                for _ in 0..n {
                    wire.push(b"\r\n5;a0 "[rng.below(7)]);
                }
                framings.push(BodyFraming::Length(n as u64));
            }
            _ => {
                wire.extend_from_slice(HEAD);
                let body: &[u8] = [
                    &b"3\r\nabc\r\n0\r\n\r\n"[..],
                    b"1;x=\"y\"\r\nz\r\n0\r\nT: v\r\n\r\n",
                    b"2\r\nhi\r\n0;;\r\n\r\n",
                    b"1\r\nab\r\n0\r\n\r\n",
                    b"0\r\nA: b\nC: d\r\n\r\n",
                ][rng.below(5)];
                wire.extend_from_slice(body);
                framings.push(BodyFraming::Chunked);
            }
        }
    }
    (wire, framings)
}

#[test]
fn the_fast_path_agrees_with_the_tracker_alone_on_random_pipelined_wires() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for case in 0..3000 {
        let (wire, framings) = random_wire(&mut rng);
        let f = Framing::default();
        let mut t = Tracker::default();
        let mut checks = Vec::new();
        let mut next = framings.iter();
        let mut at = 0;
        while at < wire.len() {
            let end = (at + 1 + rng.below(24)).min(wire.len());
            let piece = &wire[at..end];
            at = end;
            let was = t.poisoned;
            t.feed(piece);
            assert_eq!(f.received(piece), t.poisoned && !was, "case {case}");
            // hyper takes each head that ended, as the tracker sees it.
            while matches!(t.state, State::Await) || t.poisoned {
                let Some(&framing) = next.next() else { break };
                let want = t.begin(framing);
                let got = f.begin_request(framing);
                assert_eq!(got.is_err(), want.is_err(), "case {case}");
                match (got, want) {
                    (Ok(Some(a)), Ok(Some(b))) => checks.push((a, b)),
                    (Ok(None), Ok(None)) | (Err(_), Err(_)) => {}
                    _ => panic!("case {case}: a check on one side only"),
                }
            }
        }
        let tv = (
            matches!(t.state, State::Await),
            matches!(
                t.state,
                State::Head {
                    started: false,
                    nonempty: false
                }
            ),
            t.poisoned,
        );
        let fv = view(&f);
        assert_eq!(fv.2, tv.2, "case {case}: poisoned");
        if !tv.2 {
            assert_eq!(fv.0, tv.0, "case {case}: awaiting");
        }
        for (a, b) in checks {
            assert_eq!(
                a.bad_at.load(Ordering::Relaxed),
                b.bad_at.load(Ordering::Relaxed),
                "case {case}"
            );
        }
    }
}
