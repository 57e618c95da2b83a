//! One connection's request framing: where each head ends, and each body, so that a
//! chunked body is checked by [`ChunkedBody`] on the bytes the client sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::ChunkedBody;

/// Where a request's chunked body broke, for the body reader.
#[derive(Debug)]
pub(crate) struct BodyCheck {
    /// Body bytes before the first invalid line (`u64::MAX`: none so far).
    bad_at: AtomicU64,
}

impl BodyCheck {
    fn new() -> Self {
        BodyCheck {
            bad_at: AtomicU64::new(u64::MAX),
        }
    }

    /// Is a body that has delivered `received` bytes broken at this point
    /// (its next frame, or its end, comes after an invalid line)?
    pub(crate) fn broken_at(&self, received: u64) -> bool {
        self.bad_at.load(Ordering::Acquire) <= received
    }
}

/// How hyper frames the body of the request it just parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    /// `Content-Length` (0: no body).
    Length(u64),
    Chunked,
}

/// One connection's request framing, fed by its I/O.
#[derive(Debug, Default)]
pub(crate) struct Framing(Mutex<Tracker>);

/// A request framing error was found on the connection: it must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Poisoned;

impl Framing {
    fn lock(&self) -> MutexGuard<'_, Tracker> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes the client sent, before hyper reads them. Returns true when
    /// they made the connection's framing invalid (just now).
    pub(crate) fn received(&self, bytes: &[u8]) -> bool {
        let mut t = self.lock();
        let was = t.poisoned;
        t.feed(bytes);
        t.poisoned && !was
    }

    /// hyper parsed a request head and frames its body so: the check its
    /// body reader consults (chunked bodies only), or `Poisoned` when the
    /// request must not be served.
    pub(crate) fn begin_request(
        &self,
        framing: BodyFraming,
    ) -> Result<Option<Arc<BodyCheck>>, Poisoned> {
        let mut t = self.lock();
        t.begin(framing)
    }
}

#[derive(Debug, Default)]
struct Tracker {
    state: State,
    poisoned: bool,
    /// Bytes received after a head ended (from `pending_at`), before hyper
    /// handed over its request: each byte is copied at most once, however
    /// many pipelined requests they hold.
    pending: Vec<u8>,
    pending_at: usize,
}

#[derive(Debug)]
enum State {
    /// In a head (or between requests): `started` once the request line
    /// (a non-empty line) began, `nonempty` while the current line has a
    /// byte other than CR.
    Head {
        started: bool,
        nonempty: bool,
    },
    /// The head ended; the bytes after it wait in `Tracker::pending` for
    /// [`Framing::begin_request`].
    Await,
    /// `Content-Length` body bytes still to come.
    Length(u64),
    Chunked(Chunked),
    /// Framing is invalid (or unknown): nothing more is tracked.
    Off,
}

impl Default for State {
    fn default() -> Self {
        State::Head {
            started: false,
            nonempty: false,
        }
    }
}

/// A chunked body in progress, and its mark for the body reader.
#[derive(Debug)]
struct Chunked {
    body: ChunkedBody,
    check: Arc<BodyCheck>,
}

impl Tracker {
    fn begin(&mut self, framing: BodyFraming) -> Result<Option<Arc<BodyCheck>>, Poisoned> {
        if self.poisoned {
            return Err(Poisoned);
        }
        let State::Await = self.state else {
            // hyper parsed a head where none ended: never expected.
            tracing::error!("request framing lost track of the connection");
            self.poisoned = true;
            self.state = State::Off;
            return Err(Poisoned);
        };
        let check = match framing {
            BodyFraming::Length(n) => {
                self.state = State::Length(n);
                None
            }
            BodyFraming::Chunked => {
                let check = Arc::new(BodyCheck::new());
                self.state = State::Chunked(Chunked {
                    body: ChunkedBody::default(),
                    check: check.clone(),
                });
                Some(check)
            }
        };
        let mut pending = std::mem::take(&mut self.pending);
        let n = self.advance(&pending[self.pending_at..]);
        self.pending_at += n;
        if self.pending_at == pending.len() {
            pending.clear();
            self.pending_at = 0;
        }
        self.pending = pending;
        Ok(check)
    }

    /// Takes bytes the client sent.
    fn feed(&mut self, bytes: &[u8]) {
        let n = if matches!(self.state, State::Await) {
            0
        } else {
            self.advance(bytes)
        };
        self.pending.extend_from_slice(&bytes[n..]);
    }

    /// Consumes bytes up to the end of the next head (then the state is
    /// `Await`) or all of them: how many.
    fn advance(&mut self, all: &[u8]) -> usize {
        let mut bytes = all;
        while !bytes.is_empty() {
            match &mut self.state {
                State::Off => return all.len(),
                State::Await => break,
                State::Head { started, nonempty } => {
                    let mut end = None;
                    for (i, &b) in bytes.iter().enumerate() {
                        match b {
                            b'\n' if *nonempty => {
                                *started = true;
                                *nonempty = false;
                            }
                            b'\n' if *started => {
                                end = Some(i + 1);
                                break;
                            }
                            b'\n' | b'\r' => {}
                            _ => *nonempty = true,
                        }
                    }
                    let Some(end) = end else {
                        return all.len();
                    };
                    bytes = &bytes[end..];
                    self.state = State::Await;
                }
                State::Length(left) => {
                    let n = (*left).min(bytes.len() as u64);
                    *left -= n;
                    bytes = &bytes[n as usize..];
                    if *left == 0 {
                        self.state = State::default();
                    }
                }
                State::Chunked(c) => match c.body.feed(bytes, |_| {}) {
                    Ok((n, false)) => bytes = &bytes[n..],
                    Ok((n, true)) => {
                        bytes = &bytes[n..];
                        self.state = State::default();
                    }
                    Err(why) => {
                        tracing::warn!(why, "invalid chunked request framing");
                        c.check
                            .bad_at
                            .store(c.body.data_before(), Ordering::Release);
                        self.poisoned = true;
                        self.state = State::Off;
                    }
                },
            }
        }
        all.len() - bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            if !begun && matches!(f.lock().state, State::Await) {
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
            let t = f.lock();
            assert!(!t.poisoned);
            assert!(
                matches!(
                    t.state,
                    State::Head {
                        started: false,
                        nonempty: false
                    }
                ),
                "step {step}: {:?}",
                t.state
            );
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
                assert!(f.lock().poisoned);
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
        assert!(!f.lock().poisoned);
        assert!(matches!(f.lock().state, State::Head { started: false, .. }));
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
}
