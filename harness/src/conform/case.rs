//! Running one case on one connection: send each step's bytes (fragmented
//! as the case says), read and judge each expected response, then check what
//! the server does with the connection.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::check::{check_fields, describe_err, is_closed_error, snippet};
use crate::cases::{After, Case, Expect, Fragment, fragment, unescape};
use crate::wire::{Conn, PeerState, ReadOptions, Response, WireError};

/// The follow-up request used to prove a connection is still usable, and its answer.
pub const FOLLOW_UP: &[u8] = b"GET /hello HTTP/1.1\r\nHost: conform\r\n\r\n";
/// The body of the answer to [`FOLLOW_UP`].
pub const FOLLOW_UP_BODY: &[u8] = b"Hello, world!";

/// Options that apply to every case.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Fragment every request this way instead of the case's own mode.
    pub fragment: Option<Fragment>,
    /// Multiply every timeout (slow machines, valgrind).
    pub timeout_scale: f64,
}

impl RunOptions {
    fn scale(&self, ms: u64) -> Duration {
        let s = if self.timeout_scale > 0.0 {
            self.timeout_scale
        } else {
            1.0
        };
        Duration::from_millis((ms as f64 * s) as u64)
    }
}

/// What reading one expected response produced.
enum Read {
    Response(Response),
    /// The server closed (allowed by `or_closed` or `truncated`).
    Closed,
    /// The server kept waiting (allowed by `or_timeout`); the connection is abandoned.
    Abandoned,
}

fn read_expected(
    conn: &mut Conn,
    exp: &Expect,
    timeout: Duration,
    opts: &RunOptions,
) -> Result<Read, String> {
    if let Some(m) = &exp.marker {
        let within = opts.scale(exp.marker_within_ms.unwrap_or(1000));
        let needle = unescape(m).map_err(|e| e.to_string())?;
        match conn.peek_until(&needle, within) {
            Ok(true) => {}
            Ok(false) => {
                return Err(format!(
                    "{} not received within {} ms (the server delayed a block)",
                    snippet(&needle),
                    within.as_millis()
                ));
            }
            Err(e) => return Err(format!("waiting for {}: {e}", snippet(&needle))),
        }
    }
    let ro = ReadOptions {
        head_request: exp.head,
        return_interim: exp.interim_only,
    };
    match conn.read_response_with(ro) {
        Ok(r) => {
            if exp.truncated {
                return Err(format!(
                    "response looks complete ({:?}, {} bytes, status {}); want it visibly truncated",
                    r.framing,
                    r.body.len(),
                    r.status
                ));
            }
            if r.header("content-length").is_some() && r.header("transfer-encoding").is_some() {
                return Err(format!(
                    "response has both Content-Length and Transfer-Encoding (RFC 9112 §6.2 MUST NOT), status {}",
                    r.status
                ));
            }
            check_fields(exp, &r)?;
            Ok(Read::Response(r))
        }
        Err(WireError::TruncatedBody { .. } | WireError::TruncatedHead(_))
            if exp.truncated || exp.or_truncated =>
        {
            Ok(Read::Closed)
        }
        Err(e) if exp.or_timeout && e.is_timeout() => Ok(Read::Abandoned),
        Err(e) if exp.or_closed && is_closed_error(&e) => Ok(Read::Closed),
        Err(e) => Err(describe_err(&e, timeout)),
    }
}

fn send_fragments(
    stream: TcpStream,
    bytes: Vec<u8>,
    mode: Fragment,
    seed: u64,
    delay: Duration,
) -> std::io::Result<()> {
    let mut s = stream;
    let parts = fragment(&bytes, mode, seed);
    let n = parts.len();
    for (i, p) in parts.into_iter().enumerate() {
        s.write_all(p)?;
        if !delay.is_zero() && i + 1 < n {
            std::thread::sleep(delay);
        }
    }
    s.flush()
}

/// Check that the connection still works: a follow-up request gets its own answer.
/// With `eof_ok`, a closed connection is fine too.
fn follow_up(conn: &mut Conn, eof_ok: bool, timeout: Duration) -> Result<(), String> {
    if !conn.buffered().is_empty() {
        return Err(format!(
            "unexpected bytes after the response: {}",
            snippet(conn.buffered())
        ));
    }
    if let Err(e) = conn.send(FOLLOW_UP) {
        return if eof_ok {
            Ok(())
        } else {
            Err(format!(
                "connection closed; want open (follow-up write failed: {e})"
            ))
        };
    }
    match conn.read_response(false) {
        Ok(r) if r.status == 200 && r.body == FOLLOW_UP_BODY => Ok(()),
        Ok(r) => Err(format!(
            "follow-up request got status {} body {} (desynchronised connection?)",
            r.status,
            snippet(&r.body)
        )),
        Err(e) if is_closed_error(&e) => {
            if eof_ok {
                Ok(())
            } else {
                Err("connection closed; want open (follow-up request got no answer)".to_owned())
            }
        }
        Err(e) => Err(format!("follow-up request: {}", describe_err(&e, timeout))),
    }
}

/// Run one case against a server at `addr`.
pub fn run_case(case: &Case, addr: SocketAddr, opts: &RunOptions) -> Result<(), String> {
    let timeout = opts.scale(case.timeout_ms);
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut conn = Conn::new(stream);
    conn.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let result = run_steps(case, &mut conn, timeout, opts);
    let _ = conn.stream().shutdown(std::net::Shutdown::Both);
    result
}

fn run_steps(
    case: &Case,
    conn: &mut Conn,
    timeout: Duration,
    opts: &RunOptions,
) -> Result<(), String> {
    let total = case.response_count();
    let mut index = 0usize;
    let mut last: Option<Response> = None;
    let mut closed = false;
    let mut abandoned = false;
    for (si, step) in case.steps.iter().enumerate() {
        if step.delay_ms > 0 {
            std::thread::sleep(Duration::from_millis(step.delay_ms));
        }
        let bytes = case.step_bytes(si).map_err(|e| e.to_string())?;
        let mode = opts
            .fragment
            .unwrap_or(step.fragment.unwrap_or(case.fragment));
        let delay = Duration::from_millis(
            case.fragment_delay_ms
                .unwrap_or(if mode == Fragment::Whole { 0 } else { 1 }),
        );
        let writer = if bytes.is_empty() {
            None
        } else {
            let ws = conn.stream().try_clone().map_err(|e| e.to_string())?;
            let seed = case.seed.wrapping_add(si as u64);
            Some(std::thread::spawn(move || {
                send_fragments(ws, bytes, mode, seed, delay)
            }))
        };
        for exp in &step.expect {
            index += 1;
            let label = if total > 1 {
                format!("response {index}/{total}: ")
            } else {
                String::new()
            };
            if closed || abandoned {
                return Err(format!("{label}connection already closed or abandoned"));
            }
            match read_expected(conn, exp, timeout, opts) {
                Ok(Read::Response(r)) => last = Some(r),
                Ok(Read::Closed) => closed = true,
                Ok(Read::Abandoned) => abandoned = true,
                Err(e) => {
                    let _ = conn.stream().shutdown(std::net::Shutdown::Both);
                    if let Some(w) = writer {
                        let _ = w.join();
                    }
                    return Err(format!("{label}{e}"));
                }
            }
        }
        if let Some(w) = writer {
            // a write error after the server closed is expected in error cases
            let _ = w.join();
        }
    }
    if abandoned {
        return Ok(());
    }
    let close_wait = opts.scale(case.close_timeout_ms);
    let want = match case.after {
        After::AsSignalled => match &last {
            Some(r) if !closed && r.keep_alive_signalled() => After::Open,
            _ => After::Closed,
        },
        other => other,
    };
    let after = |e: String| format!("after: {e}");
    match want {
        After::Open => {
            if closed {
                return Err(after("connection closed; want open".into()));
            }
            follow_up(conn, false, timeout).map_err(after)
        }
        After::Closed => {
            if closed {
                return Ok(());
            }
            match conn.wait_closed(close_wait) {
                Ok(PeerState::Closed) => Ok(()),
                Ok(PeerState::Open) => Err(after(format!(
                    "connection still open {} ms after the response; want closed",
                    close_wait.as_millis()
                ))),
                Ok(PeerState::Data(d)) => Err(after(format!(
                    "unexpected bytes after the response: {}",
                    snippet(&d)
                ))),
                Err(e) => Err(after(e.to_string())),
            }
        }
        After::Any | After::AsSignalled => {
            if closed {
                return Ok(());
            }
            follow_up(conn, true, timeout).map_err(after)
        }
    }
}
