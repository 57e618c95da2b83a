//! The logs: the access log's formats (NCSA common and combined, IIS's W3C
//! with its header), its files (one, or IIS's daily files), the host's own
//! refusals in it, the JSON application log, and a web garden's workers
//! sharing one file under load without a torn or lost line.

use std::path::Path;
use std::time::{Duration, Instant};

use regex::Regex;

use crate::support::{self, Host, RawConn, c_fixture_str, request, text};

/// The access log's test clock (src/accesslog/mod.rs, `TEST_CLOCK_ENV`).
const CLOCK_ENV: &str = "ISAPI_HOST_TEST_ACCESS_LOG_CLOCK";

/// NCSA's `[10/Oct/2000:13:55:36 -0700]`.
const NCSA_TIME: &str = r"\[\d{2}/(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\]";

/// A W3C line's fields, IIS's defaults, as a regex over the line.
fn w3c_line(method: &str, stem: &str, query: &str, status: u16) -> Regex {
    Regex::new(&format!(
        r"^\d{{4}}-\d{{2}}-\d{{2}} \d{{2}}:\d{{2}}:\d{{2}} 127\.0\.0\.1 {method} {stem} {query} \d+ - 127\.0\.0\.1 \S+ \S+ {status} 0 0 \d+$"
    ))
    .unwrap()
}

/// Waits until a line of `what` (stdout, or a file) matches `re`; returns it.
fn wait_line(what: impl Fn() -> String, re: &Regex) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(l) = what().lines().find(|l| re.is_match(l)) {
            return Some(l.to_owned());
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn expect_line(host: &Host, re: &Regex) -> String {
    wait_line(|| host.stdout(), re).unwrap_or_else(|| {
        panic!(
            "no access-log line matching {re} on stdout:\n{}\nstderr:\n{}",
            host.stdout(),
            host.stderr()
        )
    })
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn common_is_ncsa() {
    let host = Host::with_c_fixture("hello", &["--access-log", "common"]);
    let mut c = host.connect();
    assert_eq!(
        c.roundtrip(b"GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: t\r\nUser-Agent: ua\r\n\r\n")
            .status,
        200
    );
    let re = Regex::new(&format!(
        r#"^127\.0\.0\.1 - - {NCSA_TIME} "GET /a/b\?x=1&y=%20 HTTP/1\.1" 200 13$"#
    ))
    .unwrap();
    expect_line(&host, &re);
    // No body sent: bytes are `-`, as Apache writes them.
    c.send(b"HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response_to_head().unwrap().status, 200);
    let re = Regex::new(&format!(
        r#"^127\.0\.0\.1 - - {NCSA_TIME} "HEAD /h HTTP/1\.1" 200 -$"#
    ))
    .unwrap();
    expect_line(&host, &re);
    assert!(
        !host.stderr().contains("HEAD /h"),
        "access lines go to stdout, not the host's log:\n{}",
        host.stderr()
    );
}

#[test]
fn combined_adds_referer_and_user_agent_escaped() {
    let host = Host::with_c_fixture("hello", &["--access-log", "combined"]);
    let mut c = host.connect();
    c.roundtrip(
        b"GET /c HTTP/1.1\r\nHost: t\r\nReferer: http://r.example/p?q\r\nUser-Agent: Mozilla/5.0 (X; \"quoted\" \\ x)\r\n\r\n",
    );
    let re = Regex::new(&format!(
        r#"^127\.0\.0\.1 - - {NCSA_TIME} "GET /c HTTP/1\.1" 200 13 "http://r\.example/p\?q" "Mozilla/5\.0 \(X; \\"quoted\\" \\\\ x\)"$"#
    ))
    .unwrap();
    expect_line(&host, &re);
    c.roundtrip(b"GET /none HTTP/1.1\r\nHost: t\r\n\r\n");
    let re = Regex::new(&format!(
        r#"^127\.0\.0\.1 - - {NCSA_TIME} "GET /none HTTP/1\.1" 200 13 "-" "-"$"#
    ))
    .unwrap();
    expect_line(&host, &re);
}

#[test]
fn w3c_is_iis_with_its_header_once() {
    let mut args = vec!["--access-log", "w3c"];
    if !support::windows_host() {
        // Two workers: the header is still written once, by the supervisor.
        args.extend(["--workers", "2"]);
    }
    let host = Host::with_c_fixture("hello", &args);
    let mut c = host.connect();
    c.roundtrip(
        b"GET /w3c/a%20b?x=1 HTTP/1.1\r\nHost: t\r\nUser-Agent: e2e test agent\r\nReferer: http://r/\r\n\r\n",
    );
    let line = expect_line(&host, &w3c_line("GET", "/w3c/a\\+b", "x=1", 200));
    assert!(
        line.contains(" e2e+test+agent http://r/ 200 0 0 "),
        "spaces as +: {line}"
    );
    c.roundtrip(b"GET /w3c-bare HTTP/1.1\r\nHost: t\r\n\r\n");
    let bare = expect_line(&host, &w3c_line("GET", "/w3c-bare", "-", 200));
    assert!(
        bare.contains(" - 127.0.0.1 - - 200 "),
        "`-` for empty: {bare}"
    );
    let out = host.stdout();
    let header: Vec<&str> = out.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(header.len(), 4, "one header:\n{out}");
    assert!(header[0].starts_with("#Software: isapi-host "), "{out}");
    assert_eq!(header[1], "#Version: 1.0");
    assert!(
        Regex::new(r"^#Date: \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
            .unwrap()
            .is_match(header[2]),
        "{out}"
    );
    assert_eq!(
        header[3],
        "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip \
         cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken"
    );
    let first = out
        .lines()
        .position(|l| l.starts_with("#Software"))
        .unwrap();
    let entry = out.lines().position(|l| l == line).unwrap();
    assert!(first < entry, "the header comes first:\n{out}");
}

#[test]
fn the_hosts_own_refusals_are_logged() {
    let lib = c_fixture_str("hello");
    let map = format!("/app={lib}");
    let host = Host::start(&[
        "--map",
        &map,
        "--access-log",
        "common",
        "--max-header",
        "8192",
        "--header-timeout",
        "1",
        "--max-body",
        "100",
    ]);
    let line = |req: &str, status: u16, bytes: &str| {
        Regex::new(&format!(
            r#"^127\.0\.0\.1 - - {NCSA_TIME} "{req}" {status} {bytes}$"#
        ))
        .unwrap()
    };
    // An unmapped URL: 404.
    assert_eq!(support::get(host.addr(), "/nowhere").status, 404);
    expect_line(&host, &line(r"GET /nowhere HTTP/1\.1", 404, r"\d+"));
    // A malformed request line: hyper's own 400, with the line as read.
    let mut c = host.connect();
    c.send(b"GARBAGE\r\n\r\n");
    let (bytes, _) = c.read_until_close();
    assert!(bytes.starts_with(b"HTTP/1.1 400"), "{bytes:?}");
    expect_line(&host, &line("GARBAGE", 400, "-"));
    // HTTP/1.1 without Host: the host's 400.
    let r = request(host.addr(), b"GET /app/nohost HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 400);
    expect_line(&host, &line(r"GET /app/nohost HTTP/1\.1", 400, r"\d+"));
    // A head over --max-header: 431.
    let big = format!(
        "GET /app/big HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(9000)
    );
    assert_eq!(request(host.addr(), big.as_bytes()).status, 431);
    expect_line(&host, &line(r"GET /app/big HTTP/1\.1", 431, r"\d+"));
    // A body over --max-body, by its Content-Length: 413.
    let r = request(
        host.addr(),
        b"POST /app/upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n",
    );
    assert_eq!(r.status, 413);
    expect_line(&host, &line(r"POST /app/upload HTTP/1\.1", 413, r"\d+"));
    // A head cut off by the header timeout after its request line: 408.
    let mut c = host.connect();
    c.send(b"GET /app/slow HTTP/1.1\r\nHost: t\r\n");
    let (_, closed) = c.read_until_close();
    assert!(closed);
    expect_line(&host, &line(r"GET /app/slow HTTP/1\.1", 408, "-"));
    // And the host still serves.
    assert_eq!(text(&support::get(host.addr(), "/app/ok")), "Hello, world!");
}

#[test]
fn json_log_lines_parse() {
    let host = Host::with_c_fixture("hello", &["--log-format", "json"]);
    assert_eq!(host.get("/x").status, 200);
    assert_eq!(host.get("/../../etc").status, 400); // a warning in the log
    assert!(host.wait_for_log("\"level\":\"WARN\"", Duration::from_secs(5)));
    let log = host.stderr();
    let mut n = 0;
    for l in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(l)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\nall:\n{log}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{l}");
        assert!(v["message"].is_string(), "{l}");
        n += 1;
    }
    assert!(n >= 2, "{log}");
    assert!(log.contains("\"message\":\"listening\""), "{log}");
}

#[test]
fn a_file_and_daily_files_with_iis_names() {
    let dir = support::temp_dir("access-log-files");
    // One file, NCSA.
    let file = dir.join("access.log");
    let f = file.to_str().unwrap();
    let host = Host::with_c_fixture("hello", &["--access-log-file", f]);
    assert_eq!(host.get("/to-a-file").status, 200);
    let re = Regex::new(&format!(
        r#"^127\.0\.0\.1 - - {NCSA_TIME} "GET /to-a-file HTTP/1\.1" 200 13$"#
    ))
    .unwrap();
    assert!(wait_line(|| read(&file), &re).is_some(), "{}", read(&file));
    assert!(!host.stdout().contains("/to-a-file"));
    drop(host);

    // A directory, W3C: the clock starts two seconds before midnight UTC
    // on 2029-12-31, so the second request is the next day's, in the next
    // day's file, which starts with its own header.
    let daily = dir.join("w3c");
    let d = format!("{}/", daily.display());
    let lib = c_fixture_str("hello");
    let host = Host::start_env(
        &[
            "--extension",
            &lib,
            "--access-log",
            "w3c",
            "--access-log-file",
            &d,
        ],
        [(CLOCK_ENV, "1893455998")],
    );
    assert_eq!(host.get("/before-midnight").status, 200);
    let day1 = daily.join("u_ex291231.log");
    let re1 = w3c_line("GET", "/before-midnight", "-", 200);
    let l1 = wait_line(|| read(&day1), &re1).unwrap_or_else(|| panic!("{}", read(&day1)));
    assert!(l1.starts_with("2029-12-31 23:59:5"), "{l1}");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(host.get("/after-midnight").status, 200);
    let day2 = daily.join("u_ex300101.log");
    let re2 = w3c_line("GET", "/after-midnight", "-", 200);
    let l2 = wait_line(|| read(&day2), &re2).unwrap_or_else(|| panic!("{}", read(&day2)));
    assert!(l2.starts_with("2030-01-01 00:00:0"), "{l2}");
    for (path, stamp) in [(&day1, "2029-12-31"), (&day2, "2030-01-01")] {
        let text = read(path);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("#Software: isapi-host"), "{text}");
        assert_eq!(lines[1], "#Version: 1.0");
        assert!(lines[2].starts_with(&format!("#Date: {stamp} ")), "{text}");
        assert!(lines[3].starts_with("#Fields: date time s-ip"), "{text}");
        assert_eq!(text.matches("#Software").count(), 1, "{text}");
    }
    assert!(!read(&day1).contains("after-midnight"));
    assert!(!host.stdout().contains("#Software"), "no header on stdout");
}

#[test]
fn a_bad_access_log_path_fails_at_start_up() {
    let path = support::host_path(support::temp_dir("access-log-bad").join("missing/access.log"));
    let exit = Host::run_to_exit(
        &[
            "--extension",
            &c_fixture_str("hello"),
            "--access-log-file",
            &path,
        ],
        std::iter::empty::<(&str, &str)>(),
        Duration::from_secs(30),
    );
    assert!(!exit.status.success());
    assert!(
        exit.stderr
            .contains(&format!("cannot open the access log file {path}")),
        "{}",
        exit.stderr
    );
}

/// Issue 24: the workers of a web garden share one file. Under load from
/// 4 threads of 2000 requests with long URLs, on connections that come and
/// go (so both workers take some), every line is whole and well-formed, and
/// there is one per request, the last ones written at SIGTERM included.
#[test]
fn workers_share_one_file_without_torn_or_lost_lines() {
    if support::windows_host() {
        println!("skipped: worker processes are Unix-only");
        return;
    }
    let dir = support::temp_dir("access-log-workers");
    let file = dir.join("garden.log");
    let mut host = Host::with_c_fixture(
        "hello",
        &[
            "--workers",
            "2",
            "--access-log-file",
            file.to_str().unwrap(),
        ],
    );
    const THREADS: usize = 4;
    const REQUESTS: usize = 2000;
    let addr = host.addr();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = RawConn::connect(addr).unwrap();
                for i in 0..REQUESTS {
                    if i % 50 == 0 {
                        c = RawConn::connect(addr).unwrap();
                    }
                    let long = format!("{t}-{i}-{}", "x".repeat(1500 + (i * 37) % 3000));
                    let req = format!("GET /load/{long}?t={t}&i={i} HTTP/1.1\r\nHost: t\r\n\r\n");
                    let r = c.roundtrip(req.as_bytes());
                    assert_eq!(r.status, 200, "{t}-{i}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    host.terminate();
    let log = read(&file);
    let re = Regex::new(&format!(
        r#"^127\.0\.0\.1 - - {NCSA_TIME} "GET /load/(\d)-(\d+)-x+\?t=(\d)&i=(\d+) HTTP/1\.1" 200 13$"#
    ))
    .unwrap();
    let mut seen = std::collections::HashSet::new();
    for l in log.lines() {
        let short = || format!("{:.200}...{}", l, &l[l.len().saturating_sub(60)..]);
        let caps = re
            .captures(l)
            .unwrap_or_else(|| panic!("a torn or malformed line: {}", short()));
        assert_eq!((&caps[1], &caps[2]), (&caps[3], &caps[4]), "{}", short());
        let new = seen.insert((caps[1].to_owned(), caps[2].to_owned()));
        assert!(new, "twice: {}", short());
    }
    assert_eq!(seen.len(), THREADS * REQUESTS, "one line per request");
    assert!(log.ends_with('\n'));
}
