//! `conform`: run the cases against servers over raw TCP and judge the bytes.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::cases::{After, Case, Expect, Fragment, Target, fragment, pattern, unescape};
use crate::servers::{self, Env, ServerSpec};
use crate::wire::{Conn, PeerState, ReadOptions, Response, WireError};

/// The follow-up request used to prove a connection is still usable, and its answer.
pub const FOLLOW_UP: &[u8] = b"GET /hello HTTP/1.1\r\nHost: conform\r\n\r\n";
/// The body of the answer to [`FOLLOW_UP`].
pub const FOLLOW_UP_BODY: &[u8] = b"Hello, world!";

/// Result of one case on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every expectation held.
    Pass,
    /// Why the case failed.
    Fail(String),
    /// Why the case does not apply to this server.
    NotApplicable(String),
}

impl Outcome {
    /// Whether the case failed.
    pub fn is_fail(&self) -> bool {
        matches!(self, Outcome::Fail(_))
    }
}

/// One case on one server.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case's name.
    pub case: String,
    /// What happened.
    pub outcome: Outcome,
    /// How long it took.
    pub duration: Duration,
}

/// Every case on one server.
#[derive(Debug, Clone)]
pub struct ServerResult {
    /// The server.
    pub spec: ServerSpec,
    /// How it was launched.
    pub description: String,
    /// Why it did not start, if it did not (every case then fails).
    pub start_error: Option<String>,
    /// One result per case, in case order.
    pub results: Vec<CaseResult>,
}

impl ServerResult {
    /// How many cases passed, failed and did not apply.
    pub fn count(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for r in &self.results {
            match r.outcome {
                Outcome::Pass => c.0 += 1,
                Outcome::Fail(_) => c.1 += 1,
                Outcome::NotApplicable(_) => c.2 += 1,
            }
        }
        c
    }
}

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

fn snippet(b: &[u8]) -> String {
    let max = 60;
    let s: String = b[..b.len().min(max)].escape_ascii().to_string();
    if b.len() > max {
        format!("\"{s}\"...")
    } else {
        format!("\"{s}\"")
    }
}

fn is_closed_error(e: &WireError) -> bool {
    match e {
        WireError::EofBeforeHead => true,
        WireError::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
        ),
        _ => false,
    }
}

fn describe_err(e: &WireError, timeout: Duration) -> String {
    if e.is_timeout() {
        format!(
            "timed out after {} ms waiting for the response",
            timeout.as_millis()
        )
    } else if is_closed_error(e) {
        "connection closed without a response".to_owned()
    } else {
        format!("bad response: {e}")
    }
}

/// Check the response fields of an expectation (not the read mode fields).
pub fn check_fields(exp: &Expect, r: &Response) -> Result<(), String> {
    if let Some(st) = &exp.status
        && !st.contains(&r.status)
    {
        let want: Vec<String> = st.as_slice().iter().map(u16::to_string).collect();
        return Err(format!(
            "status {}, want {} (body {})",
            r.status,
            want.join(" or "),
            snippet(&r.body)
        ));
    }
    if let Some(reason) = &exp.reason
        && &r.reason != reason
    {
        return Err(format!("reason phrase {:?}, want {reason:?}", r.reason));
    }
    if exp.interim_only && exp.status.is_none() && !(100..200).contains(&r.status) {
        return Err(format!(
            "got final status {} where an interim 1xx was expected",
            r.status
        ));
    }
    if let Some(i) = exp.interim
        && !r.interim.iter().any(|x| x.status == i)
    {
        return Err(format!(
            "no {i} interim response before the final {}",
            r.status
        ));
    }
    if exp.no_interim && !r.interim.is_empty() {
        return Err(format!(
            "unexpected interim {} response",
            r.interim[0].status
        ));
    }
    if let Some(f) = &exp.framing
        && !f.as_slice().iter().any(|n| n.matches(r.framing))
    {
        return Err(format!("framing {:?}, want {:?}", r.framing, f.as_slice()));
    }
    if let Some(b) = &exp.body {
        let want = unescape(b).map_err(|e| e.to_string())?;
        if r.body != want {
            return Err(format!(
                "body {} ({} bytes), want {} ({} bytes)",
                snippet(&r.body),
                r.body.len(),
                snippet(&want),
                want.len()
            ));
        }
    }
    if let Some(n) = exp.body_pattern
        && r.body != pattern(n)
    {
        let first_diff = r.body.iter().zip(pattern(n)).position(|(a, b)| *a != b);
        return Err(format!(
            "body is not the {n}-byte pattern: got {} bytes, first difference at {:?}",
            r.body.len(),
            first_diff
        ));
    }
    if let Some(n) = exp.body_len
        && r.body.len() != n
    {
        return Err(format!(
            "body length {}, want {n} (body {})",
            r.body.len(),
            snippet(&r.body)
        ));
    }
    for c in &exp.body_contains {
        let want = unescape(c).map_err(|e| e.to_string())?;
        if !r
            .body
            .windows(want.len().max(1))
            .any(|w| w == want.as_slice())
        {
            return Err(format!(
                "body lacks {} (body {})",
                snippet(&want),
                snippet(&r.body)
            ));
        }
    }
    for c in &exp.body_lacks {
        let bad = unescape(c).map_err(|e| e.to_string())?;
        if r.body
            .windows(bad.len().max(1))
            .any(|w| w == bad.as_slice())
        {
            return Err(format!("body contains {}", snippet(&bad)));
        }
    }
    for (name, value) in &exp.headers {
        match r.header(name) {
            Some(v) if v == value => {}
            Some(v) => return Err(format!("header {name}: {v:?}, want {value:?}")),
            None => return Err(format!("header {name} missing, want {value:?}")),
        }
    }
    for name in &exp.headers_present {
        if r.header(name).is_none() {
            return Err(format!("header {name} missing"));
        }
    }
    for name in &exp.headers_absent {
        if let Some(v) = r.header(name) {
            return Err(format!("header {name}: {v:?} present, want absent"));
        }
    }
    if let Some(tok) = &exp.connection_token
        && !r.connection_has(tok)
    {
        return Err(format!(
            "Connection header {:?} lacks {tok:?}",
            r.headers_all("connection").collect::<Vec<_>>()
        ));
    }
    if !exp.any_of.is_empty() {
        let mut why = Vec::new();
        for (i, alt) in exp.any_of.iter().enumerate() {
            match check_fields(alt, r) {
                Ok(()) => return Ok(()),
                Err(e) => why.push(format!("#{}: {e}", i + 1)),
            }
        }
        return Err(format!("no alternative matched ({})", why.join("; ")));
    }
    Ok(())
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

/// Run every case against one server (started and stopped here).
pub fn run_server(
    env: &Env,
    spec: &ServerSpec,
    cases: &[Case],
    opts: &RunOptions,
    mut progress: impl FnMut(&str, &Outcome),
) -> ServerResult {
    let description = env.describe(spec);
    let target = spec.target();
    let c_fixtures = if target == Target::Isapi {
        servers::available_c_fixtures_for(env, spec)
    } else {
        Vec::new()
    };
    let mut running = match servers::start(env, spec) {
        Ok(r) => Some(r),
        Err(e) => {
            let msg = format!("{e:#}");
            let results = cases
                .iter()
                .map(|c| CaseResult {
                    case: c.name.clone(),
                    outcome: if c.targets.contains(&target) {
                        Outcome::Fail(format!("server did not start: {}", first_line(&msg)))
                    } else {
                        Outcome::NotApplicable(format!("{target:?} server"))
                    },
                    duration: Duration::ZERO,
                })
                .collect();
            return ServerResult {
                spec: spec.clone(),
                description,
                start_error: Some(msg),
                results,
            };
        }
    };
    let mut results = Vec::new();
    for case in cases {
        let start = Instant::now();
        let outcome = if !case.targets.contains(&target) {
            Outcome::NotApplicable(format!("not applicable to {}", target_label(target)))
        } else if target == Target::Isapi
            && let Some(fx) = &case.isapi_fixture
            && !c_fixtures.contains(fx)
        {
            Outcome::NotApplicable(format!("C fixture {fx}.c not available"))
        } else {
            let Some(srv) = running.as_mut() else {
                results.push(CaseResult {
                    case: case.name.clone(),
                    outcome: Outcome::Fail("server could not be restarted".into()),
                    duration: Duration::ZERO,
                });
                continue;
            };
            let mut outcome = match run_case(case, srv.addr, opts) {
                Ok(()) => Outcome::Pass,
                Err(e) => Outcome::Fail(e),
            };
            if !srv.alive() {
                let tail = srv.log_tail(3).replace('\n', " | ");
                let msg = format!("server died during this case (log: {tail})");
                outcome = Outcome::Fail(match outcome {
                    Outcome::Fail(e) => format!("{e}; {msg}"),
                    _ => msg,
                });
                if let Some(old) = running.take() {
                    old.stop();
                }
                running = servers::start(env, spec).ok();
            }
            outcome
        };
        progress(&case.name, &outcome);
        results.push(CaseResult {
            case: case.name.clone(),
            outcome,
            duration: start.elapsed(),
        });
    }
    if let Some(r) = running {
        r.stop();
    }
    ServerResult {
        spec: spec.clone(),
        description,
        start_error: None,
        results,
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// The servers a case target is for, in words.
pub fn target_label(t: Target) -> &'static str {
    match t {
        Target::Wsgi => "WSGI servers",
        Target::Isapi => "the C ISAPI fixtures",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::path::Path;

    fn repo_case(name: &str) -> Case {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../fixtures/cases/{name}.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        Case::parse(&text, name).unwrap()
    }

    fn start_bare() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        std::thread::spawn(move || {
            let _ = crate::bare::serve(crate::bare::BareArgs {
                bind: addr,
                threads: 1,
            });
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "bare server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        addr
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
            &mut &b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad"
                [..],
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
}
