//! `serve --reload` (docs/ARCHITECTURE.md, "Process model"): the supervisor
//! watches the app's Python files and the extension libraries and recycles
//! every worker, overlapped, when one changes. Real processes, real files,
//! real sockets; Linux hosts only (no supervisor on Windows).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{self, Host, RawConn, count};

/// A WSGI app answering `body`.
fn app_source(body: &str) -> String {
    format!(
        "def app(environ, start_response):\n    \
         start_response('200 OK', [('Content-Type', 'text/plain')])\n    \
         return [b'{body}']\n"
    )
}

/// Replaces `path`'s content the way editors save: a new file renamed over it.
fn save(path: &Path, text: &str) {
    let tmp = path.with_extension("py.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Keep-alive GET load that records every body and every failure.
struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    threads: Vec<thread::JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(addr: SocketAddr, conns: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..conns)
            .map(|_| {
                let (stop, seen) = (stop.clone(), seen.clone());
                thread::spawn(move || {
                    let mut failed = Vec::new();
                    let mut conn: Option<RawConn> = None;
                    let req = format!("GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n");
                    while !stop.load(Ordering::Relaxed) {
                        let c = match conn.as_mut() {
                            Some(c) => c,
                            None => conn.insert(RawConn::connect(addr).expect("connect")),
                        };
                        let got = c
                            .try_send(req.as_bytes())
                            .map_err(|e| e.to_string())
                            .and_then(|()| c.read_response().map_err(|e| format!("{e:?}")));
                        match got {
                            Ok(r) if r.status == 200 => {
                                let body = String::from_utf8_lossy(&r.body).into_owned();
                                let mut seen = seen.lock().unwrap();
                                if seen.last() != Some(&body) {
                                    seen.push(body);
                                }
                                drop(seen);
                                if r.headers.iter().any(|(n, v)| {
                                    n.eq_ignore_ascii_case("connection")
                                        && v.eq_ignore_ascii_case("close")
                                }) {
                                    conn = None;
                                }
                            }
                            Ok(r) => {
                                failed.push(format!("status {}", r.status));
                                conn = None;
                            }
                            Err(e) => {
                                failed.push(e);
                                conn = None;
                            }
                        }
                        thread::sleep(Duration::from_millis(5));
                    }
                    failed
                })
            })
            .collect();
        Load {
            stop,
            seen,
            threads,
        }
    }

    /// Stops; asserts that no request failed; returns the bodies seen.
    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        let failed: Vec<String> = self
            .threads
            .into_iter()
            .flat_map(|t| t.join().expect("load thread"))
            .collect();
        assert!(failed.is_empty(), "failed requests: {failed:?}");
        Arc::try_unwrap(self.seen).unwrap().into_inner().unwrap()
    }
}

/// Polls `/` on fresh connections until it answers `body`; how long that took.
fn wait_for_body(host: &Host, body: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    while start.elapsed() < timeout {
        let r = host.get("/");
        if r.status == 200 && r.body == body.as_bytes() {
            return start.elapsed();
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("{body:?} not served within {timeout:?}\n{}", host.stderr());
}

#[test]
fn reload_serves_an_edited_py_file_without_failing_a_request() {
    if support::skip_on_windows("the supervisor is not built on Windows") {
        return;
    }
    if std::panic::catch_unwind(support::pyisapie_lib).is_err() {
        support::skip("pyisapie is not built (cargo build -p pyisapie)");
        return;
    }
    let dir = support::temp_dir("reload-py");
    let file = dir.join("reload_app.py");
    std::fs::write(&file, app_source("version 1")).unwrap();
    let dir_arg = dir.to_str().unwrap();
    let mut host = Host::start(&[
        "--app",
        "reload_app:app",
        "--python-path",
        dir_arg,
        "--workers",
        "2",
        "--reload",
    ]);
    assert!(host.wait_for_log_matching(|l| count(l, "worker ready") == 2, Duration::from_secs(30)));
    assert!(
        host.stderr().contains("--reload: watching *.py in"),
        "{}",
        host.stderr()
    );
    assert_eq!(host.get("/").body, b"version 1");
    let load = Load::start(host.addr(), 4);
    thread::sleep(Duration::from_millis(300));

    // An edit: the next requests see it, within seconds.
    save(&file, &app_source("version 2, edited"));
    let delay = wait_for_body(&host, "version 2, edited", Duration::from_secs(10));
    eprintln!(
        "--reload: the edit was served {} ms after it was saved",
        delay.as_millis()
    );
    assert!(
        host.wait_for_log_matching(
            |l| count(l, "worker ready") == 4 && count(l, "worker exited") == 2,
            Duration::from_secs(30)
        ),
        "{}",
        host.stderr()
    );
    let log = host.stderr();
    assert!(
        log.contains(&format!("--reload: {} changed", file.display())),
        "the log names the file: {log}"
    );
    for _ in 0..10 {
        assert_eq!(host.get("/").body, b"version 2, edited");
    }

    // A broken edit: the new workers fail to start, the old ones go on.
    save(&file, "def app(:\n");
    assert!(
        host.wait_for_log_matching(
            |l| count(l, "--reload: the new worker failed to start") == 2,
            Duration::from_secs(30)
        ),
        "{}",
        host.stderr()
    );
    for _ in 0..5 {
        assert_eq!(host.get("/").body, b"version 2, edited");
    }
    // Its fix is served.
    save(&file, &app_source("version 3, fixed"));
    let fixed = wait_for_body(&host, "version 3, fixed", Duration::from_secs(10));
    eprintln!(
        "--reload: the fix was served {} ms after it was saved",
        fixed.as_millis()
    );
    thread::sleep(Duration::from_millis(300));

    let seen = load.finish();
    assert!(seen.iter().any(|b| b == "version 1"), "{seen:?}");
    let log = host.stderr();
    assert_eq!(count(&log, "worker died"), 0, "{log}");
    assert_eq!(
        count(&log, "restarts="),
        0,
        "a failed reload is no crash: {log}"
    );
    assert!(host.is_running());
    let status = host.terminate();
    assert!(status.success(), "exit {status:?}");
    if delay > Duration::from_secs(2) {
        eprintln!(
            "note: --reload took {} ms here (the goal is 2 s; the machine is loaded)",
            delay.as_millis()
        );
    }
}

#[test]
fn reload_recycles_when_an_extension_library_is_rebuilt() {
    if support::skip_on_windows("the supervisor is not built on Windows") {
        return;
    }
    let dir = support::temp_dir("reload-lib");
    let built = support::c_fixture("hello");
    let lib = dir.join(built.file_name().unwrap());
    std::fs::copy(&built, &lib).unwrap();
    let mut host = Host::start(&["--extension", lib.to_str().unwrap(), "--reload"]);
    assert_eq!(host.get("/").status, 200);
    let first = host.pid();
    // A linker writes a new file and renames it over the old one.
    let tmp = dir.join("new-build.tmp");
    std::fs::copy(&built, &tmp).unwrap();
    std::fs::rename(&tmp, &lib).unwrap();
    assert!(
        host.wait_for_log_matching(
            |l| count(l, "worker ready") == 2 && count(l, "worker exited") == 1,
            Duration::from_secs(30)
        ),
        "{}",
        host.stderr()
    );
    let log = host.stderr();
    assert!(
        log.contains(&format!("--reload: {} changed", lib.display())),
        "{log}"
    );
    assert!(log.contains("recycling worker: --reload"), "{log}");
    assert_eq!(host.get("/").status, 200);
    assert_ne!(host.pid(), first, "a new worker serves");
    let status = host.terminate();
    assert!(status.success(), "exit {status:?}");
}
