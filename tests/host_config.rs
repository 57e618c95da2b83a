//! The TOML configuration file and the access-log formats.

use std::time::Duration;

use crate::support::*;

fn write_config(tag: &str, text: &str) -> std::path::PathBuf {
    let dir = temp_dir(tag);
    let path = dir.join("isapi-host.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn toml_str(p: &std::path::Path) -> String {
    format!("{:?}", host_path(p))
}

#[test]
fn config_file_mounts_and_settings() {
    let echo = c_fixture("echo");
    let vars = c_fixture("vars");
    let cfg = write_config(
        "cfg",
        &format!(
            "extension = {}\nread-ahead = 1000\n\n[[map]]\nprefix = \"/v\"\npath = {}\n",
            toml_str(&echo),
            toml_str(&vars)
        ),
    );
    let host = Host::start(&["--config", &host_path(&cfg)]);
    let mut c = host.connect();
    let r = c.roundtrip(&get_req("/v/vars?SCRIPT_NAME"));
    assert_eq!(text(&r), "probe_errno=122 needed=3 got=3\n/v");
    let body = pattern_bytes(5000, 3);
    let r = c.roundtrip(&post_request(host.addr(), "/echo", &body));
    assert_eq!(r.body, body);
    assert_eq!(
        r.header("x-available"),
        Some("1000"),
        "read-ahead from the file"
    );
}

#[test]
fn command_line_wins_over_config_file() {
    let echo = c_fixture("echo");
    let cfg = write_config(
        "cfg-cli",
        &format!("extension = {}\nread-ahead = 1000\n", toml_str(&echo)),
    );
    let host = Host::start(&["--config", &host_path(&cfg), "--read-ahead", "2000"]);
    let body = pattern_bytes(5000, 3);
    let r = request(host.addr(), &post_request(host.addr(), "/echo", &body));
    assert_eq!(r.header("x-available"), Some("2000"));
}

#[test]
fn config_paths_are_relative_to_the_file() {
    let dir = temp_dir("cfg-rel");
    let copy = if windows_host() {
        "hello-copy.dll"
    } else {
        "libhello-copy.so"
    };
    std::fs::copy(c_fixture("hello"), dir.join(copy)).unwrap();
    let cfg = dir.join("host.toml");
    std::fs::write(&cfg, format!("extension = \"{copy}\"\n")).unwrap();
    let host = Host::start(&["--config", &host_path(&cfg)]);
    assert_eq!(host.get("/").body, b"Hello, world!");
}

#[test]
fn invalid_config_file_is_a_startup_error() {
    let cfg = write_config("cfg-bad", "extension = \"x.so\"\nno-such-setting = 1\n");
    let exit = Host::run_to_exit(
        &["--config", &host_path(&cfg)],
        std::iter::empty::<(&str, &str)>(),
        Duration::from_secs(30),
    );
    assert!(!exit.status.success());
    assert!(
        exit.stderr.contains("isapi-host.toml"),
        "names the file:\n{}",
        exit.stderr
    );
}

#[test]
fn access_log_off() {
    let host = Host::with_c_fixture("ssf", &["--access-log", "off"]);
    assert_eq!(text(&host.get("/logparam")), "logged\n");
    assert_eq!(text(&host.get("/target")), "target");
    std::thread::sleep(Duration::from_millis(300));
    let log = host.stdout() + &host.stderr();
    assert!(
        !log.contains("/logparam"),
        "no access log with --access-log off:\n{log}"
    );
    assert!(!log.contains("fixture-log-param"), "{log}");
}

#[test]
fn access_log_w3c_has_iis_default_fields() {
    let host = Host::with_c_fixture("ssf", &["--access-log", "w3c"]);
    let mut c = host.connect();
    let r = c.roundtrip(b"GET /logparam?x=1 HTTP/1.1\r\nHost: t\r\nUser-Agent: e2e test\r\n\r\n");
    assert_eq!(text(&r), "logged\n");
    // The line is written raw, on stdout (no log prefix).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !host.stdout().contains("/logparam") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = host.stdout();
    let entry = log
        .lines()
        .find(|l| l.contains("/logparam"))
        .unwrap_or_else(|| panic!("no access line on stdout:\n{log}"));
    let f: Vec<&str> = entry.split(' ').collect();
    // date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip
    // cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken
    assert_eq!(f.len(), 15, "IIS's 15 default W3C fields: {entry:?}");
    let is_date = |s: &str| s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-';
    let is_time = |s: &str| s.len() == 8 && s.as_bytes()[2] == b':' && s.as_bytes()[5] == b':';
    assert!(
        is_date(f[0]) && is_time(f[1]),
        "W3C date (YYYY-MM-DD) and time (hh:mm:ss): {entry:?}"
    );
    assert_eq!(f[2], "127.0.0.1");
    assert_eq!(f[3], "GET");
    assert_eq!(f[4], "/logparam");
    assert!(
        f[5].contains("x=1") && f[5].contains("fixture-log-param"),
        "cs-uri-query: {entry:?}"
    );
    assert_eq!(f[6], host.addr().port().to_string());
    assert_eq!(f[8], "127.0.0.1");
    assert_eq!(f[9], "e2e+test");
    assert_eq!(f[11], "200");
    assert!(f[14].parse::<u64>().is_ok(), "time-taken in ms: {entry:?}");
}

#[test]
fn io_threads_sets_the_runtime_threads() {
    let hello = c_fixture_str("hello");
    for n in ["1", "3"] {
        let host = Host::start(&["--extension", &hello, "--io-threads", n]);
        let r = host.connect().roundtrip(&get_req("/"));
        assert_eq!(r.body, b"Hello, world!");
        // Each runtime thread names itself once it runs: wait for the names, then
        // count them (never more than --io-threads).
        let want = n.parse::<usize>().unwrap();
        eventually(Duration::from_secs(10), || {
            threads_named(host.pid(), "isapi-http") >= want
        });
        assert_eq!(
            threads_named(host.pid(), "isapi-http"),
            want,
            "--io-threads {n}"
        );
    }
    let err = Host::try_start_env(
        &["--extension", &hello, "--io-threads", "0"],
        std::iter::empty::<(&str, &str)>(),
    )
    .expect_err("--io-threads 0 is refused");
    assert!(err.contains("--io-threads must be at least 1"), "{err}");
}

#[test]
fn yield_us_zero_still_serves_and_a_too_long_one_is_refused() {
    let hello = c_fixture_str("hello");
    let host = Host::start(&["--extension", &hello, "--yield-us", "0"]);
    let mut conn = host.connect();
    for _ in 0..20 {
        let r = conn.roundtrip(&get_req("/"));
        assert_eq!(r.body, b"Hello, world!");
    }
    let err = Host::try_start_env(
        &["--extension", &hello, "--yield-us", "20000"],
        std::iter::empty::<(&str, &str)>(),
    )
    .expect_err("--yield-us 20000 is refused");
    assert!(err.contains("--yield-us must be at most 10000"), "{err}");
}
