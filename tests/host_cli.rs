//! The command line as a user meets it: a positional APP, app factories,
//! `--chdir` (and the working directory on `sys.path`), host names in
//! `--bind`, every option from `ISAPI_HOST_<OPTION>` with the precedence
//! command line > environment > `--config` file > defaults, and start-up
//! errors printed once, naming where the bad setting was given, without ISAPI
//! words when the fault is the app's.
//!
//! These start `isapi-host serve` themselves, in a directory of their own and
//! with no `--bind` added (unlike [`Host`]), as a shell would.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{self, Response, count};

/// A test's own `isapi-host serve`, killed on drop.
struct Served {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Served {
    fn get(&self, path: &str) -> Response {
        support::get(self.addr, path)
    }

    fn post(&self, path: &str, len: usize) -> Response {
        let body = vec![b'x'; len];
        support::request(self.addr, &support::post_request(self.addr, path, &body))
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- isapi-host stderr ---\n{}", self.stderr());
        }
    }
}

/// `isapi-host serve ARGS` in `dir` with `env` (and nothing else of the
/// host's settings from this process's environment).
fn command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(support::host_bin());
    cmd.arg("serve").args(args).current_dir(dir);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ISAPI_HOST_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("RUST_LOG", "info").envs(env.iter().copied());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn collect(r: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let sink = Arc::new(Mutex::new(String::new()));
    let out = sink.clone();
    thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut line = String::new();
        while r.read_line(&mut line).is_ok_and(|n| n > 0) {
            out.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    sink
}

/// Starts the host and waits for its `listening on` line.
fn serve(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Served {
    let mut child = command(dir, args, env).spawn().expect("spawn isapi-host");
    let stderr = collect(child.stderr.take().unwrap());
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("listening on http://").nth(1) {
                let _ = tx.send(addr.trim().trim_end_matches('/').parse::<SocketAddr>());
            }
        }
    });
    match rx.recv_timeout(support::STARTUP_TIMEOUT) {
        Ok(Ok(addr)) => Served {
            child,
            addr,
            stderr,
        },
        other => {
            let _ = child.kill();
            let _ = child.wait();
            thread::sleep(Duration::from_millis(100));
            panic!(
                "isapi-host {args:?} did not start ({other:?}):\n{}",
                stderr.lock().unwrap()
            );
        }
    }
}

/// Runs the host expecting it to refuse to start: its status and stderr.
fn refused(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let mut cmd = command(dir, args, env);
    // A start-up that gets as far as listening must not race other tests for the
    // default port: any free port, unless the test sets the address itself (the
    // command line and the test's own ISAPI_HOST_BIND still win).
    if !env.iter().any(|(name, _)| *name == "ISAPI_HOST_BIND") {
        cmd.env("ISAPI_HOST_BIND", "127.0.0.1:0");
    }
    let mut child = cmd.spawn().expect("spawn isapi-host");
    let stderr = collect(child.stderr.take().unwrap());
    let _stdout = collect(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "isapi-host {args:?} did not exit:\n{}",
                stderr.lock().unwrap()
            );
        }
        thread::sleep(Duration::from_millis(50));
    };
    thread::sleep(Duration::from_millis(100)); // the reader drains the pipe
    let text = stderr.lock().unwrap().clone();
    assert!(!status.success(), "isapi-host {args:?} must fail:\n{text}");
    (status, text)
}

/// The directory for a test, or `None` (with a skip line) on a Windows host,
/// which these tests do not drive.
fn dir_or_skip(tag: &str) -> Option<PathBuf> {
    if support::skip_on_windows("these tests start the Linux host themselves") {
        return None;
    }
    Some(std::fs::canonicalize(support::temp_dir(tag)).unwrap())
}

/// [`dir_or_skip`], and pyisapie must be built.
fn python_dir_or_skip(tag: &str) -> Option<PathBuf> {
    let dir = dir_or_skip(tag)?;
    if std::panic::catch_unwind(support::pyisapie_lib).is_err() {
        support::skip("pyisapie is not built (cargo build -p pyisapie)");
        return None;
    }
    Some(dir)
}

/// An app that says where it runs and what `sys.path` starts with, and a
/// factory that counts its calls.
const APP: &str = r#"
import os, sys

CALLS = []

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"cwd={os.getcwd()} path={sys.path[:3]}".encode()]

def create_app(greeting="hello", times=1):
    CALLS.append(1)
    def made(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{greeting} x{times} factory calls={len(CALLS)}".encode()]
    return made

def broken_factory():
    raise RuntimeError("the factory broke")
"#;

fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

#[test]
fn a_positional_app_is_found_in_the_working_directory() {
    let Some(dir) = python_dir_or_skip("cli-positional") else {
        return;
    };
    std::fs::write(dir.join("cwd_app.py"), APP).unwrap();
    let host = serve(&dir, &["--bind", "127.0.0.1:0", "cwd_app:app"], &[]);
    let r = host.get("/");
    assert_eq!(r.status, 200, "{}", text(&r));
    let body = text(&r);
    assert!(body.contains(&format!("cwd={}", dir.display())), "{body}");
    assert!(
        body.contains(&format!("{:?}", dir.display().to_string()).replace('"', "'")),
        "the working directory is on sys.path: {body}"
    );
}

#[test]
fn chdir_moves_every_worker_before_the_app_is_imported() {
    let Some(dir) = python_dir_or_skip("cli-chdir") else {
        return;
    };
    let site = dir.join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("site_app.py"), APP).unwrap();
    // A relative --chdir, from where the host starts; two workers, each
    // started by the supervisor (which stays where it started).
    let host = serve(
        &dir,
        &[
            "--bind",
            "127.0.0.1:0",
            "--chdir",
            "site",
            "--workers",
            "2",
            "--app",
            "site_app:app",
        ],
        &[],
    );
    for _ in 0..4 {
        let r = host.get("/");
        assert_eq!(r.status, 200, "{}", text(&r));
        assert!(
            text(&r).contains(&format!("cwd={}", site.display())),
            "{}",
            text(&r)
        );
    }
    let (_, err) = refused(&dir, &["--chdir", "nowhere", "site_app:app"], &[]);
    assert!(
        err.contains("cannot change to the directory nowhere (from --chdir): it does not exist"),
        "{err}"
    );
}

#[test]
fn a_factory_is_called_once_with_its_literal_arguments() {
    let Some(dir) = python_dir_or_skip("cli-factory") else {
        return;
    };
    std::fs::write(dir.join("fac_app.py"), APP).unwrap();
    let host = serve(
        &dir,
        &["--bind", "127.0.0.1:0", "fac_app:create_app('hi', times=3)"],
        &[],
    );
    for _ in 0..3 {
        assert_eq!(text(&host.get("/")), "hi x3 factory calls=1");
    }
    drop(host);
    let host = serve(
        &dir,
        &["--bind", "127.0.0.1:0", "fac_app:create_app()"],
        &[],
    );
    assert_eq!(text(&host.get("/")), "hello x1 factory calls=1");
    let (_, err) = refused(&dir, &["fac_app:create_app(open('x'))"], &[]);
    assert!(err.contains("must be Python literals"), "{err}");
}

#[test]
fn settings_come_from_the_command_line_then_the_environment_then_the_file() {
    let Some(dir) = dir_or_skip("cli-env") else {
        return;
    };
    let echo = support::c_fixture_str("echo");
    // The file says port 1 and 10 bytes; the environment overrides the port.
    let toml = dir.join("host.toml");
    std::fs::write(&toml, "bind = \"127.0.0.1:1\"\nmax-body = 10\n").unwrap();
    let toml = toml.display().to_string();
    let base = [
        ("ISAPI_HOST_BIND", "127.0.0.1:0"),
        ("ISAPI_HOST_EXTENSION", echo.as_str()),
    ];

    let file_only = serve(&dir, &["--config", &toml], &base);
    assert_ne!(
        file_only.addr.port(),
        1,
        "ISAPI_HOST_BIND wins over the file"
    );
    assert_eq!(
        file_only.post("/echo", 50).status,
        413,
        "max-body 10 from the file"
    );
    drop(file_only);

    let mut env = base.to_vec();
    env.extend([
        ("ISAPI_HOST_CONFIG", toml.as_str()),
        ("ISAPI_HOST_MAX_BODY", "100"),
        ("ISAPI_HOST_NO_SUPERVISOR", "1"),
    ]);
    let from_env = serve(&dir, &[], &env);
    assert_eq!(
        from_env.post("/echo", 50).status,
        200,
        "max-body 100 from the environment"
    );
    assert_eq!(from_env.post("/echo", 500).status, 413);
    assert!(
        !from_env.stderr().contains("supervisor started"),
        "ISAPI_HOST_NO_SUPERVISOR=1: {}",
        from_env.stderr()
    );
    drop(from_env);

    let from_cli = serve(&dir, &["--max-body", "1000"], &env);
    assert_eq!(from_cli.post("/echo", 500).status, 200, "--max-body wins");
    assert_eq!(from_cli.post("/echo", 5000).status, 413);
}

#[test]
fn repeatable_options_take_commas_in_the_environment() {
    let Some(dir) = dir_or_skip("cli-env-list") else {
        return;
    };
    let (echo, hello) = (
        support::c_fixture_str("echo"),
        support::c_fixture_str("hello"),
    );
    let maps = format!("/a={echo}, /b={hello}");
    let host = serve(
        &dir,
        &["--bind", "127.0.0.1:0"],
        &[("ISAPI_HOST_MAP", maps.as_str())],
    );
    assert_eq!(host.post("/a/echo", 5).status, 200);
    assert_eq!(host.get("/b/").status, 200);
    assert_eq!(host.get("/c/").status, 404);
}

#[test]
fn a_bad_value_in_the_environment_names_its_variable() {
    let Some(dir) = dir_or_skip("cli-env-bad") else {
        return;
    };
    let (status, err) = refused(&dir, &[], &[("ISAPI_HOST_WORKERS", "many")]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("invalid value 'many' for '--workers <N>' (from ISAPI_HOST_WORKERS)"),
        "{err}"
    );
    let (_, err) = refused(&dir, &[], &[("ISAPI_HOST_BIND", "no such host!:80")]);
    assert!(err.contains("(from ISAPI_HOST_BIND)"), "{err}");
}

#[test]
fn an_address_in_use_is_named_with_where_it_was_given() {
    let Some(dir) = dir_or_skip("cli-bind-in-use") else {
        return;
    };
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let echo = support::c_fixture_str("echo");
    for (args, env, from) in [
        (vec!["--bind", &addr], vec![], "--bind"),
        (
            vec![],
            vec![("ISAPI_HOST_BIND", addr.as_str())],
            "ISAPI_HOST_BIND",
        ),
    ] {
        let mut args = args;
        args.extend(["--extension", &echo]);
        let (status, err) = refused(&dir, &args, &env);
        assert!(!status.success());
        assert!(
            err.contains(&format!("cannot listen on {addr} (from {from})")),
            "{err}"
        );
    }
}

#[test]
fn bind_takes_a_host_name() {
    let Some(dir) = dir_or_skip("cli-bind") else {
        return;
    };
    let echo = support::c_fixture_str("echo");
    let host = serve(&dir, &["--bind", "localhost:0", "--extension", &echo], &[]);
    assert_eq!(
        host.addr.ip(),
        std::net::Ipv4Addr::LOCALHOST,
        "a name listens on its first IPv4 address"
    );
    assert_eq!(host.post("/echo", 5).status, 200);
    let toml = dir.join("host.toml");
    std::fs::write(
        &toml,
        format!("bind = \"localhost:0\"\nextension = {echo:?}\n"),
    )
    .unwrap();
    let host = serve(&dir, &["--config", &toml.display().to_string()], &[]);
    assert_eq!(host.addr.ip(), std::net::Ipv4Addr::LOCALHOST);
}

#[test]
fn a_missing_app_module_is_one_line_naming_where_it_was_given() {
    let Some(dir) = python_dir_or_skip("cli-err-missing") else {
        return;
    };
    let line = |from: &str| {
        format!(
            "error: cannot import app \"no_such_module_h3:app\" (from {from}): \
             ModuleNotFoundError: No module named 'no_such_module_h3'"
        )
    };
    let toml = dir.join("host.toml");
    std::fs::write(&toml, "app = \"no_such_module_h3:app\"\n").unwrap();
    let toml_from = format!("{}, key app", toml.display());
    for (args, env, from) in [
        (vec!["no_such_module_h3:app"], vec![], "the positional APP"),
        (vec!["--app", "no_such_module_h3:app"], vec![], "--app"),
        (
            vec!["--no-supervisor"],
            vec![("ISAPI_HOST_APP", "no_such_module_h3:app")],
            "ISAPI_HOST_APP",
        ),
        (
            vec!["--config", toml.to_str().unwrap()],
            vec![],
            toml_from.as_str(),
        ),
    ] {
        let (_, err) = refused(&dir, &args, &env);
        assert_eq!(count(&err, &line(from)), 1, "once, from {from}:\n{err}");
        assert_eq!(count(&err, "No module named"), 1, "{err}");
        for jargon in [
            "GetExtensionVersion",
            "ISAPI extension",
            "Traceback",
            "PYISAPIE_APP",
            // the supervisor adds nothing to the worker's own error
            "the worker failed to start",
        ] {
            assert!(!err.contains(jargon), "no {jargon:?}:\n{err}");
        }
    }
}

#[test]
fn an_app_that_raises_on_import_shows_its_own_traceback_once() {
    let Some(dir) = python_dir_or_skip("cli-err-raises") else {
        return;
    };
    std::fs::write(
        dir.join("boom_app.py"),
        "x = 1\nraise ValueError('broken at import time')\n",
    )
    .unwrap();
    let (_, err) = refused(&dir, &[], &[("ISAPI_HOST_APP", "boom_app:app")]);
    let expected = format!(
        "error: cannot import app \"boom_app:app\" (from ISAPI_HOST_APP):\n\
         Traceback (most recent call last):\n  File \"{}\", line 2, in <module>\n",
        dir.join("boom_app.py").display()
    );
    assert_eq!(count(&err, &expected), 1, "{err}");
    assert_eq!(count(&err, "ValueError: broken at import time"), 1, "{err}");
    for noise in ["GetExtensionVersion", "<pyisapie boot>", "importlib"] {
        assert!(!err.contains(noise), "no {noise:?}:\n{err}");
    }

    std::fs::write(dir.join("fac_app.py"), APP).unwrap();
    let (_, err) = refused(&dir, &["--app", "fac_app:broken_factory()"], &[]);
    assert_eq!(
        count(
            &err,
            "error: the app factory \"fac_app:broken_factory()\" (from --app) raised an exception:\nTraceback"
        ),
        1,
        "{err}"
    );
    assert_eq!(count(&err, "RuntimeError: the factory broke"), 1, "{err}");
}

#[test]
fn a_missing_extension_library_is_named_with_its_source() {
    let Some(dir) = dir_or_skip("cli-err-lib") else {
        return;
    };
    let (_, err) = refused(&dir, &["--extension", "./missing/lib.so"], &[]);
    assert_eq!(
        count(
            &err,
            "isapi-host: the extension library ./missing/lib.so (from --extension) does not exist"
        ),
        1,
        "{err}"
    );
    let (_, err) = refused(&dir, &[], &[("ISAPI_HOST_MAP", "/x=./missing/lib.so")]);
    assert!(
        err.contains("the extension library ./missing/lib.so (from ISAPI_HOST_MAP) does not exist"),
        "{err}"
    );
    // A file that is not a library: the loader's own words, once.
    std::fs::write(dir.join("not-a-library.so"), "text\n").unwrap();
    let (_, err) = refused(
        &dir,
        &["--no-supervisor", "--extension", "./not-a-library.so"],
        &[],
    );
    assert_eq!(
        count(
            &err,
            "isapi-host: cannot load the extension library ./not-a-library.so (from --extension): "
        ),
        1,
        "{err}"
    );
    assert!(!err.contains("dlopen failed"), "{err}");
}
