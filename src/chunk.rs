//! Strict framing of chunked request bodies (RFC 9112 §7.1).
//!
//! hyper decodes chunked request bodies, and its framing (sizes, data,
//! CRLFs, where the trailer section ends) is exact, but it is lenient about
//! the text it skips: whitespace after the size, anything but LF between
//! `;` and the CR of a size line, and anything but a CRLF inside a trailer
//! line (which it hands to `httparse`, which also takes a bare LF as a line
//! end). A proxy that parses those bytes differently is a smuggling vector.
//!
//! [`Framing`] sees every byte the client sends, in order, before hyper does
//! (it sits in the connection's I/O). It finds the end of each request head
//! (the first empty line, as `httparse` does), is told the body's framing by
//! the connection's service when hyper hands it the request
//! ([`Framing::begin_request`]; hyper calls the service as soon as it parsed
//! the head, before it reads on), skips `Content-Length` bodies and checks
//! every chunk-size line and trailer line of chunked ones byte by byte.
//!
//! A violation marks the request's [`BodyCheck`] with the number of body
//! bytes before the bad line: the body reader fails the body there with the
//! same error as hyper's own framing errors (hyper must read the bad line
//! before it yields any byte after it, so the mark is always there in time).
//! The connection is then poisoned: it is asked to close, and a request
//! hyper would still parse after it never reaches an extension.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

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

#[derive(Debug)]
struct Chunked {
    line: Line,
    /// The size being read, then the data still to skip.
    size: u64,
    /// Body bytes before the current line.
    data: u64,
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
                    line: Line::Start,
                    size: 0,
                    data: 0,
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
                State::Chunked(c) => match c.feed(bytes) {
                    Ok((n, false)) => bytes = &bytes[n..],
                    Ok((n, true)) => {
                        bytes = &bytes[n..];
                        self.state = State::default();
                    }
                    Err(why) => {
                        tracing::warn!(why, "invalid chunked request framing");
                        c.check.bad_at.store(c.data, Ordering::Release);
                        self.poisoned = true;
                        self.state = State::Off;
                    }
                },
            }
        }
        all.len() - bytes.len()
    }
}

/// Where in a chunked body the parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    /// Before the first digit of a chunk size.
    Start,
    /// In the size.
    Size,
    /// Whitespace that must lead to a `;` (after the size or a value).
    BwsSemi,
    /// After `;`, before the extension name.
    BwsName,
    Name,
    /// Whitespace after a name: `=` or `;` must follow.
    BwsAfterName,
    /// After `=`, before the value.
    BwsValue,
    TokenValue,
    Quoted,
    QuotedPair,
    /// After the closing quote.
    AfterQuoted,
    /// The CR of the size line was seen.
    SizeLf,
    /// In chunk data (`size` bytes left).
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    EndLf,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `qdtext` (RFC 9110 §5.6.4).
fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5B | 0x5D..=0x7E | 0x80..=0xFF)
}

/// What may follow a backslash in a quoted string.
fn is_quoted_pair_char(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21..=0x7E | 0x80..=0xFF)
}

/// `field-vchar` or whitespace: a byte of a field value.
fn is_field_value_byte(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21..=0x7E | 0x80..=0xFF)
}

/// The state after one byte of a chunk-size line (from the first byte
/// after `Line::Start`'s digit to its CR), or `None` if the byte is invalid
/// there. `Line::SizeLf` means the CR was seen.
fn size_line_step(state: Line, b: u8) -> Option<Line> {
    use Line::*;
    Some(match (state, b) {
        (Size, b) if b.is_ascii_hexdigit() => Size,
        (Size | TokenValue | AfterQuoted | Name, b'\r') => SizeLf,
        (Size | TokenValue | AfterQuoted | BwsSemi, b) if is_ws(b) => BwsSemi,
        (Size | TokenValue | AfterQuoted | BwsSemi | Name | BwsAfterName, b';') => BwsName,
        (BwsName | BwsAfterName | BwsValue, b) if is_ws(b) => state,
        (Name, b) if is_ws(b) => BwsAfterName,
        (BwsName | Name, b) if is_tchar(b) => Name,
        (Name | BwsAfterName, b'=') => BwsValue,
        (BwsValue | TokenValue, b) if is_tchar(b) => TokenValue,
        (BwsValue, b'"') => Quoted,
        (Quoted, b'"') => AfterQuoted,
        (Quoted, b'\\') => QuotedPair,
        (Quoted, b) if is_qdtext(b) => Quoted,
        (QuotedPair, b) if is_quoted_pair_char(b) => Quoted,
        _ => return None,
    })
}

impl Chunked {
    /// Consumes bytes of the body: how many, and whether the body ended.
    fn feed(&mut self, bytes: &[u8]) -> Result<(usize, bool), &'static str> {
        use Line::*;
        let mut i = 0;
        while i < bytes.len() {
            if self.line == Data {
                let n = self.size.min((bytes.len() - i) as u64);
                self.size -= n;
                self.data += n;
                i += n as usize;
                if self.size == 0 {
                    self.line = DataCr;
                }
                continue;
            }
            let b = bytes[i];
            i += 1;
            self.line = match self.line {
                Start => {
                    let d = hex(b).ok_or("chunk size is not hexadecimal")?;
                    self.size = u64::from(d);
                    Size
                }
                SizeLf => match b {
                    b'\n' if self.size == 0 => TrailerStart,
                    b'\n' => Data,
                    _ => return Err("chunk-size line not ended by CRLF"),
                },
                DataCr if b == b'\r' => DataLf,
                DataLf if b == b'\n' => Start,
                DataCr | DataLf => return Err("chunk data not followed by CRLF"),
                TrailerStart if b == b'\r' => EndLf,
                TrailerStart | TrailerName if is_tchar(b) => TrailerName,
                TrailerName if b == b':' => TrailerValue,
                TrailerStart | TrailerName => return Err("invalid trailer field name"),
                TrailerValue if b == b'\r' => TrailerLf,
                TrailerValue if is_field_value_byte(b) => TrailerValue,
                TrailerValue => return Err("invalid byte in a trailer field value"),
                TrailerLf if b == b'\n' => TrailerStart,
                TrailerLf | EndLf if b != b'\n' => return Err("trailer line not ended by CRLF"),
                EndLf => return Ok((i, true)),
                Size if b.is_ascii_hexdigit() => {
                    self.size = self
                        .size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(u64::from(hex(b).unwrap_or(0))))
                        .ok_or("chunk size overflows")?;
                    Size
                }
                state => size_line_step(state, b).ok_or("invalid chunk extension")?,
            };
        }
        Ok((i, false))
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Is `line` (with its CRLF) a valid `chunk-size [ chunk-ext ] CRLF`?
#[cfg(test)]
fn valid_size_line(line: &[u8]) -> bool {
    let mut c = Chunked {
        line: Line::Start,
        size: 0,
        data: 0,
        check: Arc::new(BodyCheck::new()),
    };
    // A zero size leads to the trailer section, any other to data: either
    // way, the line was consumed whole and valid.
    match c.feed(line) {
        Ok((n, false)) => n == line.len() && matches!(c.line, Line::Data | Line::TrailerStart),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_lines_follow_the_rfc_9112_grammar() {
        let valid: &[&[u8]] = &[
            b"20\r\n",
            b"0\r\n",
            b"00000000000000000020\r\n",
            b"aF\r\n",
            b"20;name=value\r\n",
            b"20;name\r\n",
            b"20; a\r\n",
            b"20 ;a=b\r\n",
            b"20\t;\ta\t=\tb\r\n",
            b"20;a = b\r\n",
            b"20;a=b;c=\"d\"\r\n",
            b"20;a=\"x\\\"y\"\r\n",
            b"20;a=\"quoted;value with spaces\"\r\n",
            b"20;a=\"\"\r\n",
            b"20;a=\"\\\t\"\r\n",
            b"20;a=\"\x80\xff\"\r\n",
            b"20;a;b;c\r\n",
            b"20;!#$%&'*+-.^_`|~=!#$%&'*+-.^_`|~\r\n",
            b"20 ; a ; b = c\r\n",
        ];
        for line in valid {
            assert!(
                valid_size_line(line),
                "{:?}",
                line.escape_ascii().to_string()
            );
        }
        let invalid: &[&[u8]] = &[
            b"20;invalid=\r\n",
            b"20;a=\"unterminated\r\n",
            b"20;;\r\n",
            b"20;\r\n",
            b"20; \r\n",
            b"20;a=b c\r\n",
            b"20;a=b \r\n",
            b"20;a \r\n",
            b"20 \r\n",
            b"20\t\r\n",
            b"20;a=\"x\" \r\n",
            b"20;a=\"x\"y\r\n",
            b"20;=b\r\n",
            b"20;a==b\r\n",
            b"20;a=b=c\r\n",
            b"20;a=\"x\r\n",
            b"20;a=\"x\\\"\r\n",
            b"20;a=\"x\\\x01\"\r\n",
            b"20;a=\"x\x01\"\r\n",
            b"20;a=\"x\x7f\"\r\n",
            b"20;a\x00\r\n",
            b"20;a=b\x01\r\n",
            b"20;a=\x7f\r\n",
            b"20;a\x0bb\r\n",
            b"20;a(b)\r\n",
            b"20;a=b,c\r\n",
            b"20;\xc3\xa9\r\n",
            b"20;a\r\r\n",
            b"20;a\n",
            b"20\n",
            b"20 20\r\n",
            b" 20\r\n",
            b"\r\n",
            b";a\r\n",
            b"0x20\r\n",
            b"-1\r\n",
            b"10000000000000000\r\n",
        ];
        for line in invalid {
            assert!(
                !valid_size_line(line),
                "{:?}",
                line.escape_ascii().to_string()
            );
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
