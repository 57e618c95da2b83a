//! `isapi-host ctl`, the supervisor's control command (docs/ARCHITECTURE.md,
//! "Process model"): status, recycle, start (after rapid-fail protection
//! stopped the pool) and stop, each end to end against a real supervisor
//! on its control socket. Linux hosts only (no supervisor on Windows).

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use crate::support::{self, Host, RawConn, count};

/// What one `isapi-host ctl` run printed, and its exit status.
pub(crate) struct Ctl {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `isapi-host ctl ARGS` to its end.
pub(crate) fn ctl(args: &[&str]) -> Ctl {
    let out = Command::new(support::host_bin())
        .arg("ctl")
        .args(args)
        .output()
        .expect("run isapi-host ctl");
    Ctl {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `ctl --pid PID status` of `host`'s supervisor, expected to succeed.
pub(crate) fn status(host: &Host) -> String {
    let pid = host.supervisor_pid().to_string();
    let out = ctl(&["--pid", &pid, "status"]);
    assert_eq!(out.code, 0, "ctl status: {}{}", out.stdout, out.stderr);
    out.stdout
}

/// One `worker N: pid P, STATE, R requests[, C connections], up T` line of
/// a status.
pub(crate) struct WorkerLine {
    pub(crate) pid: u32,
    pub(crate) state: String,
    pub(crate) requests: u64,
    /// The connections it holds, while it accepts.
    pub(crate) connections: Option<u64>,
}

/// The worker lines of a status.
pub(crate) fn workers(status: &str) -> Vec<WorkerLine> {
    status
        .lines()
        .filter_map(|l| l.strip_prefix("worker "))
        .map(|l| {
            let fields: Vec<&str> = l.split(", ").collect();
            let count = |suffix: &str| {
                fields
                    .iter()
                    .find_map(|f| f.strip_suffix(suffix))
                    .map(|n| n.parse().unwrap())
            };
            WorkerLine {
                pid: fields[0].split("pid ").nth(1).unwrap().parse().unwrap(),
                state: fields[1].to_owned(),
                requests: count(" requests").unwrap(),
                connections: count(" connections"),
            }
        })
        .collect()
}

#[test]
fn ctl_status_recycle_and_stop() {
    if support::skip_on_windows("the supervisor is not built on Windows") {
        return;
    }
    let mut host = Host::with_c_fixture("crash", &["--workers", "2"]);
    assert!(host.wait_for_log_matching(|l| count(l, "worker ready") == 2, Duration::from_secs(30)));
    let pid = host.supervisor_pid().to_string();
    for _ in 0..10 {
        assert_eq!(host.get("/hello").status, 200);
    }

    // status: the pool, the restarts, each worker with its requests.
    let text = status(&host);
    eprintln!("{text}");
    assert!(
        text.contains(&format!("supervisor: pid {pid}, up ")),
        "{text}"
    );
    assert!(
        text.contains(&format!("listening on http://{}", host.addr())),
        "{text}"
    );
    assert!(
        text.contains("application pool: running, 2 of 2 worker(s) ready"),
        "{text}"
    );
    assert!(text.contains("restarts: 0 "), "{text}");
    let before = workers(&text);
    assert_eq!(before.len(), 2, "{text}");
    assert!(before.iter().all(|w| w.state == "ready"), "{text}");
    assert_eq!(before.iter().map(|w| w.requests).sum::<u64>(), 10, "{text}");
    // Each ready worker holds its seat in the connection-balancing table.
    assert!(before.iter().all(|w| w.connections.is_some()), "{text}");

    // recycle: two new workers, the old ones drained.
    let out = ctl(&["--pid", &pid, "recycle"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("recycling 2 worker(s)"),
        "{}",
        out.stdout
    );
    assert!(
        host.wait_for_log_matching(
            |l| count(l, "worker ready") == 4 && count(l, "worker exited") == 2,
            Duration::from_secs(30)
        ),
        "{}",
        host.stderr()
    );
    assert!(
        host.stderr()
            .contains("recycling worker: isapi-host ctl recycle")
    );
    let after = workers(&status(&host));
    assert_eq!(after.len(), 2);
    assert!(
        after.iter().all(|w| before.iter().all(|b| b.pid != w.pid)),
        "new pids"
    );
    assert!(status(&host).contains("recycles: 2"));
    assert_eq!(host.get("/hello").status, 200);

    // stop: answers when the supervisor is done, which exits 0.
    let out = ctl(&["--pid", &pid, "stop"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("stopping: draining 2 worker(s)"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.trim_end().ends_with("stopped"), "{}", out.stdout);
    let status = host.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "exit {status:?}\n{}", host.stderr());
    assert!(host.stderr().contains("isapi-host ctl stop: shutting down"));
    // The socket is gone with it: ctl says so clearly.
    let out = ctl(&["--pid", &pid, "status"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("cannot reach an isapi-host supervisor"),
        "{}",
        out.stderr
    );
}

#[test]
fn ctl_start_restarts_a_pool_stopped_by_rapid_fail_protection() {
    if support::skip_on_windows("the supervisor is not built on Windows") {
        return;
    }
    let dir = support::temp_dir("ctl-start");
    let socket = dir.join("control.sock");
    let socket_arg = socket.to_str().unwrap();
    let mut host =
        Host::with_c_fixture("crash", &["--rapid-fail", "2/60", "--control", socket_arg]);
    let addr = host.addr();
    for i in 0..2 {
        let mut c = RawConn::connect(addr).expect("connect");
        let _ = c.try_send(format!("GET /crash?n={i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        assert!(c.read_response().is_err(), "the worker crashed");
        if i == 0 {
            assert!(
                host.wait_for_log_matching(
                    |l| count(l, "worker ready") == 2,
                    Duration::from_secs(30)
                )
            );
        }
    }
    assert!(
        host.wait_for_log(
            "rapid-fail protection: 2 worker crashes",
            Duration::from_secs(10)
        ),
        "{}",
        host.stderr()
    );
    // The log line and the 503 body say how to restart: the command and the signal.
    let log = host.stderr();
    assert!(
        log.contains(&format!("isapi-host ctl --control {socket_arg} start")),
        "{log}"
    );
    assert!(
        log.contains(&format!("kill -HUP {}", host.supervisor_pid())),
        "{log}"
    );
    let r = host.get("/hello");
    assert_eq!(r.status, 503);
    let body = String::from_utf8_lossy(&r.body);
    assert!(
        body.contains("isapi-host ctl start") && body.contains("SIGHUP"),
        "{body}"
    );

    // status: exit 3, the pool stopped; recycle is refused.
    let out = ctl(&["--control", socket_arg, "status"]);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("application pool: stopped by rapid-fail protection"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("restarts: 1 "), "{}", out.stdout);
    assert_eq!(workers(&out.stdout).len(), 0, "{}", out.stdout);
    let out = ctl(&["--control", socket_arg, "recycle"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("stopped by rapid-fail protection"),
        "{}",
        out.stderr
    );

    // start: the pool serves again.
    let out = ctl(&["--control", socket_arg, "start"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("restarting the application pool"),
        "{}",
        out.stdout
    );
    assert!(host.wait_for_log_matching(|l| count(l, "worker ready") == 3, Duration::from_secs(30)));
    let r = host.get("/hello");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"Hello, world!"[..]));
    let out = ctl(&["--control", socket_arg, "status"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("application pool: running, 1 of 1 worker(s) ready"),
        "{}",
        out.stdout
    );
    // start on a running pool changes nothing.
    let out = ctl(&["--control", socket_arg, "start"]);
    assert_eq!(out.code, 0);
    assert!(out.stdout.contains("nothing to start"), "{}", out.stdout);
    let status = host.terminate();
    assert!(status.success(), "exit {status:?}");
    thread::sleep(Duration::from_millis(100));
    assert!(
        !Path::new(&socket).exists(),
        "the socket is removed on exit"
    );
}

#[test]
fn control_and_reload_need_the_supervisor() {
    if support::skip_on_windows("the supervisor is not built on Windows") {
        return;
    }
    let lib = support::c_fixture_str("hello");
    for flag in ["--reload", "--control=/tmp/x.sock"] {
        let out = Host::run_to_exit(
            &["--extension", &lib, flag, "--no-supervisor"],
            std::iter::empty::<(&str, &str)>(),
            Duration::from_secs(30),
        );
        assert!(!out.status.success());
        let name = flag.split('=').next().unwrap();
        assert!(
            out.stderr.contains(&format!("{name} needs the supervisor")),
            "{}",
            out.stderr
        );
    }
    let out = ctl(&["--control", "/nonexistent/isapi-host.sock", "status"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("/nonexistent/isapi-host.sock"),
        "{}",
        out.stderr
    );
}
