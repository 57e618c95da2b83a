//! The process model (docs/ARCHITECTURE.md, "Process model"): a supervisor
//! that owns the listening socket and runs worker processes, crash
//! isolation, rapid-fail protection, web gardens and graceful shutdown.
//! Real processes, real sockets, port 0; Linux hosts only (the supervisor
//! is not built on Windows).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crate::support::{self, Host, RawConn, count};

/// What one load thread saw.
#[derive(Default)]
struct Stats {
    ok: u64,
    /// Requests re-sent on a fresh connection after theirs died with a
    /// worker (what any HTTP client does for an idempotent request), at
    /// most twice.
    retried: u64,
    /// Requests that failed even on fresh connections, or got an error
    /// status.
    failed: Vec<String>,
}

/// Keep-alive GET load on `conns` connections until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<Stats>>,
}

impl Load {
    fn start(addr: SocketAddr, conns: usize, path: &'static str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..conns)
            .map(|_| {
                let stop = stop.clone();
                thread::spawn(move || {
                    let mut stats = Stats::default();
                    let mut conn: Option<RawConn> = None;
                    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
                    while !stop.load(Ordering::Relaxed) {
                        let mut attempt = 0;
                        loop {
                            attempt += 1;
                            let c = match conn.as_mut() {
                                Some(c) => c,
                                None => match RawConn::connect(addr) {
                                    Ok(c) => conn.insert(c),
                                    Err(e) => {
                                        stats.failed.push(format!("connect: {e}"));
                                        break;
                                    }
                                },
                            };
                            let got = c
                                .try_send(req.as_bytes())
                                .map_err(|e| e.to_string())
                                .and_then(|()| c.read_response().map_err(|e| format!("{e:?}")));
                            match got {
                                Ok(r) if r.status == 200 && r.body == b"Hello, world!" => {
                                    stats.ok += 1;
                                    let close = r.headers.iter().any(|(n, v)| {
                                        n.eq_ignore_ascii_case("connection")
                                            && v.eq_ignore_ascii_case("close")
                                    });
                                    if close {
                                        conn = None;
                                    }
                                    break;
                                }
                                Ok(r) => {
                                    stats.failed.push(format!("status {}", r.status));
                                    conn = None;
                                    break;
                                }
                                Err(e) => {
                                    conn = None;
                                    // A connection accepted by a worker in the
                                    // instant it crashes dies with it too.
                                    if attempt < 3 {
                                        stats.retried += 1;
                                        continue;
                                    }
                                    stats.failed.push(e);
                                    break;
                                }
                            }
                        }
                    }
                    stats
                })
            })
            .collect();
        Load { stop, threads }
    }

    fn finish(self) -> Stats {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Stats::default();
        for t in self.threads {
            let s = t.join().expect("load thread");
            all.ok += s.ok;
            all.retried += s.retried;
            all.failed.extend(s.failed);
        }
        all
    }

    /// [`Load::finish`], printing the counts and asserting that no request
    /// failed.
    fn finish_without_failures(self) -> Stats {
        let stats = self.finish();
        eprintln!(
            "load: {} ok, {} re-sent on a fresh connection, {} failed",
            stats.ok,
            stats.retried,
            stats.failed.len()
        );
        assert!(
            stats.failed.is_empty(),
            "failed requests: {:?}",
            &stats.failed[..stats.failed.len().min(10)]
        );
        stats
    }
}

/// Sends `GET path` on a fresh connection and expects the connection to die
/// without a response (the worker crashes under it).
fn crash_request(addr: SocketAddr, path: &str) {
    let mut c = RawConn::connect(addr).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(20)));
    let _ = c.try_send(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    if let Ok(r) = c.read_response() {
        panic!(
            "{path} got a response from a worker that should have crashed: {}",
            r.status
        );
    }
}

/// 20 requests that crash a worker, under load at 64 connections against
/// two workers: every other request succeeds, 20 workers are restarted, and
/// the log names the signal and each crashing URL.
fn crashes_under_load(host: &mut Host, crash: &str, cause: &str) {
    let addr = host.addr();
    let load = Load::start(addr, 64, "/hello");
    thread::sleep(Duration::from_millis(300));
    for i in 0..20 {
        crash_request(addr, &format!("{crash}?n={i}"));
        // One crash at a time: the next once the replacement serves.
        assert!(
            host.wait_for_log_matching(
                |l| count(l, &format!("restarts={}", i + 1)) == 1
                    && count(l, "worker ready") > 2 + i,
                Duration::from_secs(30)
            ),
            "no replacement for crash {i}\n{}",
            host.stderr()
        );
    }
    thread::sleep(Duration::from_millis(300));
    let stats = load.finish_without_failures();
    let log = host.stderr();
    assert!(stats.ok > 1000, "too little load: {}", stats.ok);
    assert_eq!(count(&log, cause), 20, "{log}");
    for i in 0..20 {
        assert_eq!(
            count(
                &log,
                &format!("request in flight on the dead worker: GET {crash}?n={i} ")
            ),
            1,
            "the log names GET {crash}?n={i}\n{log}"
        );
    }
    assert_eq!(count(&log, "restarts=20"), 1);
    assert_eq!(count(&log, "restarts=21"), 0);
    assert!(host.is_running());
    assert_eq!(host.get("/hello").status, 200);
    assert_eq!(count(&host.stdout(), "listening on"), 1);
    let status = host.terminate();
    assert!(status.success(), "exit {status:?}\n{}", host.stderr());
}

#[test]
fn a_c_extension_that_segfaults_costs_only_its_requests() {
    if support::skip_on_windows("the supervisor is not built on Windows") {
        return;
    }
    let mut host = Host::with_c_fixture("crash", &["--workers", "2", "--rapid-fail", "100/600"]);
    crashes_under_load(&mut host, "/crash", "worker died: was killed by SIGSEGV");
}

/// The WSGI fixture folder as the host sees it, or `None` (with a skip line)
/// where these tests cannot run: on a Windows host (no supervisor there), or
/// when pyisapie is not built (the e2e binary does not build it; CI builds the
/// workspace first).
fn wsgi_fixtures_or_skip() -> Option<String> {
    if support::skip_on_windows("the supervisor is not built on Windows") {
        return None;
    }
    if std::panic::catch_unwind(support::pyisapie_lib).is_err() {
        support::skip("pyisapie is not built (cargo build -p pyisapie)");
        return None;
    }
    Some(support::host_path(
        support::repo_root().join("fixtures").join("wsgi"),
    ))
}

#[test]
fn a_python_app_that_calls_os_exit_costs_only_its_requests() {
    let Some(dir) = wsgi_fixtures_or_skip() else {
        return;
    };
    let mut host = Host::start(&[
        "--app",
        "crash_app:app",
        "--python-path",
        &dir,
        "--workers",
        "2",
        "--rapid-fail",
        "100/600",
    ]);
    crashes_under_load(&mut host, "/exit", "worker died: exited with code 1");
}

#[test]
fn rapid_fail_protection_answers_503_until_sighup() {
    if support::skip_on_windows("the supervisor is not built on Windows") {
        return;
    }
    let mut host = Host::with_c_fixture("crash", &["--rapid-fail", "3/60"]);
    let addr = host.addr();
    for i in 0..3 {
        crash_request(addr, &format!("/crash?n={i}"));
        if i < 2 {
            assert!(host.wait_for_log_matching(
                |l| count(l, "worker ready") == i + 2,
                Duration::from_secs(30)
            ));
        }
    }
    assert!(
        host.wait_for_log(
            "rapid-fail protection: 3 worker crashes within 60s",
            Duration::from_secs(10)
        ),
        "{}",
        host.stderr()
    );
    let log = host.stderr();
    assert!(log.contains("SIGHUP"), "the log says how to restart: {log}");
    assert_eq!(
        count(&log, "restarts="),
        2,
        "no restart after the third crash"
    );
    for _ in 0..3 {
        let r = host.get("/hello");
        assert_eq!(r.status, 503);
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            body.contains("rapid-fail") && body.contains("SIGHUP"),
            "{body}"
        );
    }
    // The supervisor's own 503s reach the access log (common, on stdout) like any response.
    assert!(
        host.wait_for_access_log("\"GET /hello HTTP/1.1\" 503 ", Duration::from_secs(10)),
        "{}",
        host.stdout()
    );
    support::send_signal(host.supervisor_pid(), "-HUP");
    assert!(host.wait_for_log_matching(|l| count(l, "worker ready") == 4, Duration::from_secs(30)));
    let r = host.get("/hello");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"Hello, world!"[..]));
    let status = host.terminate();
    assert!(status.success(), "exit {status:?}");
}

#[test]
fn sigterm_drains_every_worker() {
    if support::skip_on_windows("the supervisor is not built on Windows") {
        return;
    }
    let term_log = support::temp_dir("workers-term").join("term.log");
    let lib = support::c_fixture_str("hello");
    let mut host = Host::start_env(
        &["--extension", &lib, "--workers", "2"],
        [("ISAPI_FIXTURE_TERM_LOG", term_log.to_str().unwrap())],
    );
    let addr = host.addr();
    let slow: Vec<_> = (0..4)
        .map(|_| thread::spawn(move || support::get(addr, "/?sleep=800")))
        .collect();
    assert!(host.wait_for_log_matching(|l| count(l, "worker ready") == 2, Duration::from_secs(10)));
    thread::sleep(Duration::from_millis(200));
    let status = host.terminate();
    assert!(status.success(), "exit {status:?}\n{}", host.stderr());
    for t in slow {
        assert_eq!(t.join().unwrap().status, 200);
    }
    let terms = std::fs::read_to_string(&term_log).unwrap_or_default();
    assert_eq!(
        count(&terms, "TerminateExtension"),
        2,
        "one per worker: {terms}"
    );
}

#[test]
fn the_supervisor_never_loads_an_extension() {
    if support::skip_on_windows("the supervisor is not built on Windows") {
        return;
    }
    let host = Host::with_c_fixture("crash", &["--workers", "2"]);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", host.supervisor_pid())).unwrap();
    let stem = support::c_fixture_stem("crash");
    assert!(!maps.contains(&stem), "the supervisor mapped {stem}");
    assert_eq!(host.get("/hello").status, 200);
}

#[test]
fn workers_without_the_supervisor_is_an_error() {
    let lib = support::c_fixture_str("hello");
    let out = Host::run_to_exit(
        &["--extension", &lib, "--workers", "2", "--no-supervisor"],
        std::iter::empty::<(&str, &str)>(),
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    let expect = if support::windows_host() {
        "not supported on Windows yet"
    } else {
        "needs the supervisor"
    };
    assert!(out.stderr.contains(expect), "{}", out.stderr);
}

/// Load until `recycles` overlapped recycles happened, then checks that no
/// request failed and the host still serves.
fn recycles_under_load(host: &mut Host, recycles: usize, mut trigger: impl FnMut(&Host, usize)) {
    let load = Load::start(host.addr(), 64, "/hello");
    for i in 0..recycles {
        trigger(host, i);
        assert!(
            host.wait_for_log_matching(
                |l| count(l, "recycling worker") > i && count(l, "stopping worker") > i,
                Duration::from_secs(60)
            ),
            "recycle {i} did not happen\n{}",
            host.stderr()
        );
    }
    thread::sleep(Duration::from_millis(300));
    let stats = load.finish_without_failures();
    // A draining worker answers the next request on each of its
    // connections with `Connection: close`: no client meets a closed one.
    assert_eq!(
        stats.retried, 0,
        "requests re-sent after their connection closed"
    );
    let log = host.stderr();
    assert_eq!(count(&log, "worker died"), 0, "{log}");
    assert_eq!(host.get("/hello").status, 200);
    let status = host.terminate();
    assert!(status.success(), "exit {status:?}");
}

#[test]
fn recycle_requests_recycles_under_load_without_failing_a_request() {
    if support::skip_on_windows("the supervisor is not built on Windows") {
        return;
    }
    let mut host = Host::with_c_fixture("crash", &["--workers", "2", "--recycle-requests", "2000"]);
    recycles_under_load(&mut host, 4, |_, _| {});
}

#[test]
fn sighup_recycles_under_load_without_failing_a_request() {
    if support::skip_on_windows("the supervisor is not built on Windows") {
        return;
    }
    let mut host = Host::with_c_fixture("crash", &["--workers", "2"]);
    recycles_under_load(&mut host, 3, |host, i| {
        // Each SIGHUP recycles both workers; wait for the previous round.
        assert!(host.wait_for_log_matching(
            |l| count(l, "worker ready") >= 2 + 2 * i,
            Duration::from_secs(30)
        ));
        thread::sleep(Duration::from_millis(300));
        support::send_signal(host.supervisor_pid(), "-HUP");
    });
}

#[test]
fn recycle_memory_recycles_a_leaking_app_under_load_without_failing_a_request() {
    let Some(dir) = wsgi_fixtures_or_skip() else {
        return;
    };
    let mut host = Host::start(&[
        "--app",
        "leak_app:app",
        "--python-path",
        &dir,
        "--workers",
        "2",
        "--recycle-memory",
        "96",
    ]);
    recycles_under_load(&mut host, 3, |_, _| {});
    let log = host.stderr();
    assert!(log.contains("> --recycle-memory 96"), "{log}");
}

#[test]
fn recycle_time_recycles_each_worker() {
    if support::skip_on_windows("the supervisor is not built on Windows") {
        return;
    }
    let mut host = Host::with_c_fixture("crash", &["--recycle-time", "1"]);
    recycles_under_load(&mut host, 2, |_, _| {});
    assert!(
        host.stderr()
            .contains("recycling worker: --recycle-time 1s")
    );
}

#[test]
fn a_hung_worker_is_replaced_and_its_other_requests_are_answered() {
    let Some(dir) = wsgi_fixtures_or_skip() else {
        return;
    };
    let mut host = Host::start(&[
        "--app",
        "crash_app:app",
        "--python-path",
        &dir,
        "--hang-timeout",
        "2",
        "--shutdown-timeout",
        "1",
    ]);
    let addr = host.addr();
    // The hung request: its connection ends when its worker does.
    let hung = thread::spawn(move || {
        let mut c = RawConn::connect(addr).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(30)));
        let _ = c.try_send(format!("GET /hang HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes());
        c.read_response().ok().map(|r| r.status)
    });
    // The hung worker's other requests are answered, before and after the
    // replacement.
    let load = Load::start(addr, 8, "/hello");
    assert!(
        host.wait_for_log("hung request: GET /hang has run", Duration::from_secs(15)),
        "{}",
        host.stderr()
    );
    assert!(host.wait_for_log(
        "recycling worker: hung (--hang-timeout 2s)",
        Duration::from_secs(5)
    ));
    assert!(
        host.wait_for_log_matching(
            |l| count(l, "worker ready") == 2 && count(l, "stopping worker") == 1,
            Duration::from_secs(30)
        ),
        "{}",
        host.stderr()
    );
    thread::sleep(Duration::from_millis(500));
    let stats = load.finish_without_failures();
    assert!(stats.ok > 10);
    // The old worker gives up on the hung request after --shutdown-timeout.
    assert!(host.wait_for_log(
        "shutdown timeout: requests still in flight",
        Duration::from_secs(15)
    ));
    assert_ne!(hung.join().unwrap(), Some(200));
    assert_eq!(host.get("/hello").status, 200);
    let status = host.terminate();
    assert!(status.success(), "exit {status:?}\n{}", host.stderr());
}

/// The value of server variable `name` from the `vars` fixture at `path`,
/// on a fresh connection.
fn server_variable(addr: SocketAddr, path: &str, name: &str) -> String {
    let r = support::get(addr, &format!("{path}?{name}"));
    assert_eq!(r.status, 200, "{name}");
    let body = String::from_utf8_lossy(&r.body).into_owned();
    let (_, value) = body
        .split_once('\n')
        .unwrap_or_else(|| panic!("{name}: {body}"));
    value.to_owned()
}

#[test]
fn per_process_server_variables_are_the_same_in_every_worker() {
    if support::skip_on_windows("the supervisor is not built on Windows") {
        return;
    }
    let root = support::temp_dir("workers-vars");
    let vars = support::c_fixture_str("vars");
    let map = format!("/app={vars}");
    let host = Host::start(&[
        "--extension",
        &vars,
        "--map",
        &map,
        "--doc-root",
        root.to_str().unwrap(),
        "--workers",
        "2",
    ]);
    assert!(host.wait_for_log_matching(|l| count(l, "worker ready") == 2, Duration::from_secs(30)));
    let addr = host.addr();
    let physical = format!("{}/", root.display());
    let port = addr.port().to_string();
    let expected: Vec<(&str, &str, &str)> = vec![
        ("/vars", "INSTANCE_ID", "1"),
        ("/vars", "INSTANCE_META_PATH", "/LM/W3SVC/1"),
        ("/vars", "APPL_MD_PATH", "/LM/W3SVC/1/ROOT"),
        ("/app/vars", "APPL_MD_PATH", "/LM/W3SVC/1/ROOT/app"),
        ("/vars", "APPL_PHYSICAL_PATH", &physical),
        ("/app/vars", "APPL_PHYSICAL_PATH", &physical),
        ("/vars", "APP_POOL_ID", "isapi-host"),
        ("/vars", "SERVER_PORT", &port),
        ("/vars", "LOCAL_ADDR", "127.0.0.1"),
    ];
    // Rounds of concurrent fresh connections, until both workers have
    // answered some (the kernel picks the worker that accepts).
    for round in 0.. {
        thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for (path, name, want) in &expected {
                        assert_eq!(server_variable(addr, path, name), *want, "{name} at {path}");
                    }
                });
            }
        });
        let served: Vec<u64> = crate::host_control::workers(&crate::host_control::status(&host))
            .iter()
            .map(|w| w.requests)
            .collect();
        eprintln!("round {round}: requests per worker {served:?}");
        if served.len() == 2 && served.iter().all(|n| *n > 0) {
            break;
        }
        assert!(round < 20, "one worker took every request: {served:?}");
    }
}
