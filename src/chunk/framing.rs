//! One connection's request framing: where each head ends, and each body, so that a
//! chunked body is checked by [`ChunkedBody`] on the bytes the client sent.
//!
//! Most requests have no body and arrive one per read: for them the state
//! lives in one atomic word ([`Fast`]), read and written by the connection's
//! task alone (its I/O and its service run inside one `poll`, never at the
//! same time), and heads are scanned line by line with `memchr`. Anything
//! else (a body, bytes after a head, a poisoned connection) moves the state
//! into the [`Tracker`] behind the mutex until the connection is between
//! requests again, with nothing pending.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
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
pub(crate) struct Framing {
    /// The state while it is simple (see [`Fast`]); [`Fast::SLOW`]: `slow` holds it.
    fast: AtomicU8,
    slow: Mutex<Tracker>,
}

/// A request framing error was found on the connection: it must close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Poisoned;

/// The fast path's states, in [`Framing::fast`]: in a head (or between
/// requests) with nothing pending, or just after a head that ended at the
/// end of a read. Any other state is in the [`Tracker`].
struct Fast;

impl Fast {
    /// In a head: `+ STARTED` once the request line began, `+ NONEMPTY`
    /// while the current line has a byte other than CR (see [`State::Head`]).
    const HEAD: u8 = 0;
    const STARTED: u8 = 1;
    const NONEMPTY: u8 = 2;
    /// A head ended with the bytes read so far, and nothing came after it.
    const AWAIT: u8 = 4;
    /// The [`Tracker`] holds the state.
    const SLOW: u8 = 8;

    fn head(started: bool, nonempty: bool) -> u8 {
        Fast::HEAD
            | if started { Fast::STARTED } else { 0 }
            | if nonempty { Fast::NONEMPTY } else { 0 }
    }
}

impl Framing {
    fn lock(&self) -> MutexGuard<'_, Tracker> {
        self.slow.lock().unwrap_or_else(|e| e.into_inner())
    }

    // Internal: `fast` is only ever touched by the connection's task, so
    // relaxed loads and stores suffice (tokio orders a task's polls across
    // threads); the mutex is for the slow path's larger state.
    fn fast(&self) -> u8 {
        self.fast.load(Ordering::Relaxed)
    }

    fn set_fast(&self, state: u8) {
        self.fast.store(state, Ordering::Relaxed);
    }

    /// Moves a fast state into the tracker (which then holds the truth).
    fn to_slow(&self, fast: u8) -> MutexGuard<'_, Tracker> {
        let mut t = self.lock();
        if fast != Fast::SLOW {
            t.state = if fast == Fast::AWAIT {
                State::Await
            } else {
                State::Head {
                    started: fast & Fast::STARTED != 0,
                    nonempty: fast & Fast::NONEMPTY != 0,
                }
            };
            t.pending.clear();
            t.pending_at = 0;
            self.set_fast(Fast::SLOW);
        }
        t
    }

    /// Back to the fast path when the tracker is in a head with nothing
    /// pending (and the connection is not poisoned).
    fn settle(&self, t: &Tracker) {
        if let State::Head { started, nonempty } = t.state
            && !t.poisoned
            && t.pending.is_empty()
        {
            self.set_fast(Fast::head(started, nonempty));
        }
    }

    /// Bytes the client sent, before hyper reads them. Returns true when
    /// they made the connection's framing invalid (just now).
    pub(crate) fn received(&self, bytes: &[u8]) -> bool {
        let fast = self.fast();
        if fast < Fast::AWAIT {
            let (mut started, mut nonempty) =
                (fast & Fast::STARTED != 0, fast & Fast::NONEMPTY != 0);
            match head_end(&mut started, &mut nonempty, bytes) {
                None => {
                    self.set_fast(Fast::head(started, nonempty));
                    return false;
                }
                Some(end) if end == bytes.len() => {
                    self.set_fast(Fast::AWAIT);
                    return false;
                }
                // Bytes follow the head (a body, or pipelined requests):
                // they wait in the tracker for `begin_request`.
                Some(end) => {
                    let mut t = self.to_slow(Fast::AWAIT);
                    t.pending.extend_from_slice(&bytes[end..]);
                    return false;
                }
            }
        }
        let mut t = self.to_slow(fast);
        let was = t.poisoned;
        t.feed(bytes);
        self.settle(&t);
        t.poisoned && !was
    }

    /// hyper parsed a request head and frames its body so: the check its
    /// body reader consults (chunked bodies only), or `Poisoned` when the
    /// request must not be served.
    pub(crate) fn begin_request(
        &self,
        framing: BodyFraming,
    ) -> Result<Option<Arc<BodyCheck>>, Poisoned> {
        let fast = self.fast();
        if fast == Fast::AWAIT && framing == BodyFraming::Length(0) {
            // No body, and nothing after the head: the next head begins.
            self.set_fast(Fast::head(false, false));
            return Ok(None);
        }
        let mut t = self.to_slow(fast);
        let begun = t.begin(framing);
        self.settle(&t);
        begun
    }
}

/// Scans `bytes` for the end of a request head, in the state `started`
/// (the request line, a non-empty line, began) and `nonempty` (the current
/// line has a byte other than CR): just past the LF of the first empty line
/// after the request line (empty lines before it are skipped, and a line of
/// only CRs is empty, as `httparse` has them), or `None` with the state
/// moved on. Line by line with `memchr`: a line's first byte usually
/// settles whether it is empty.
fn head_end(started: &mut bool, nonempty: &mut bool, bytes: &[u8]) -> Option<usize> {
    let has_text = |line: &[u8]| line.iter().any(|&b| b != b'\r');
    let mut line_start = 0;
    for lf in memchr::memchr_iter(b'\n', bytes) {
        if *nonempty || has_text(&bytes[line_start..lf]) {
            *started = true;
            *nonempty = false;
        } else if *started {
            return Some(lf + 1);
        }
        line_start = lf + 1;
    }
    if !*nonempty && has_text(&bytes[line_start..]) {
        *nonempty = true;
    }
    None
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
                    let Some(end) = head_end(started, nonempty, bytes) else {
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
mod tests;
