//! Configuration sources and start-up errors: a bad config or an app that
//! fails to import stops the host with a message naming the file or module
//! (and the traceback); pyisapie.toml beside the library; log file; optimize
//! and write_bytecode; C extension modules import under the host.

use std::time::Duration;

use crate::support::{self, Host};
use crate::{body, fixtures, probe_host, quoted};

fn lib() -> String {
    support::host_path(support::pyisapie_lib())
}

#[test]
fn missing_module_is_a_clear_startup_error() {
    let dir = fixtures();
    let exit = Host::run_to_exit(
        &[
            "--app",
            "no_such_module_xyz:app",
            "--python-path",
            &support::host_path(&dir),
        ],
        std::iter::empty::<(&str, &str)>(),
        Duration::from_secs(30),
    );
    assert!(!exit.status.success(), "the host must refuse to start");
    assert!(
        exit.stderr.contains("no_such_module_xyz"),
        "{}",
        exit.stderr
    );
    assert!(
        exit.stderr.contains("ModuleNotFoundError"),
        "{}",
        exit.stderr
    );
    assert!(
        exit.stderr
            .contains("cannot import app \"no_such_module_xyz:app\" (from --app)"),
        "the app and where it was given are named: {}",
        exit.stderr
    );
    assert!(
        !exit.stderr.contains("GetExtensionVersion") && !exit.stderr.contains("PYISAPIE_APP"),
        "no ISAPI words for the app's fault: {}",
        exit.stderr
    );
}

#[test]
fn import_error_shows_the_traceback() {
    let dir = support::temp_dir("broken-app");
    std::fs::write(
        dir.join("broken_app.py"),
        "x = 1\nraise ValueError('broken at import time')\n",
    )
    .unwrap();
    let exit = Host::run_to_exit(
        &[
            "--app",
            "broken_app:app",
            "--python-path",
            &support::host_path(&dir),
        ],
        std::iter::empty::<(&str, &str)>(),
        Duration::from_secs(30),
    );
    assert!(!exit.status.success());
    assert!(
        exit.stderr.contains("Traceback (most recent call last)"),
        "{}",
        exit.stderr
    );
    assert!(exit.stderr.contains("broken_app.py"), "{}", exit.stderr);
    assert!(
        exit.stderr.contains("ValueError: broken at import time"),
        "{}",
        exit.stderr
    );
}

#[test]
fn missing_callable_is_named() {
    let exit = Host::run_to_exit(
        &[
            "--app",
            "probe:nope",
            "--python-path",
            &support::host_path(fixtures()),
        ],
        std::iter::empty::<(&str, &str)>(),
        Duration::from_secs(30),
    );
    assert!(!exit.status.success());
    assert!(
        exit.stderr.contains(
            "cannot load app \"probe:nope\" (from --app): AttributeError: module 'probe' has no attribute 'nope'"
        ),
        "{}",
        exit.stderr
    );
}

#[test]
fn bad_config_file_names_the_file() {
    let dir = support::temp_dir("bad-config");
    let config = dir.join("pyisapie.toml");
    std::fs::write(
        &config,
        "[[app]]\ncallable = \"probe:app\"\nunknown_key = 1\n",
    )
    .unwrap();
    let exit = Host::run_to_exit(
        &["--extension", &lib()],
        [("PYISAPIE_CONFIG", support::host_path(&config))],
        Duration::from_secs(30),
    );
    assert!(!exit.status.success());
    assert!(
        exit.stderr.contains(&support::host_path(&config)),
        "{}",
        exit.stderr
    );
    assert!(exit.stderr.contains("unknown_key"), "{}", exit.stderr);
}

#[test]
fn config_beside_the_library_with_log_file_and_interpreter_settings() {
    let dir = support::temp_dir("beside");
    let copy = dir.join(support::pyisapie_lib().file_name().unwrap());
    std::fs::copy(support::pyisapie_lib(), &copy).unwrap();
    // The Python home: the system's on Linux (or $ISAPI_TEST_PYTHON_PREFIX:
    // the Python ci/pymatrix.sh built pyisapie against); on Windows the folder
    // of python3XX.dll (the embeddable CPython beside the host's pyisapie.dll),
    // which must also be on PATH for the copy of pyisapie.dll to load.
    let (home, envs) = if support::windows_host() {
        let py = support::pyisapie_lib()
            .parent()
            .expect("pyisapie's folder")
            .to_path_buf();
        (
            support::host_path(&py),
            vec![("WINEPATH", support::host_path(&py))],
        )
    } else {
        let prefix = std::env::var("ISAPI_TEST_PYTHON_PREFIX").ok();
        (
            prefix
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/usr".to_owned()),
            vec![],
        )
    };
    std::fs::write(
        dir.join("pyisapie.toml"),
        format!(
            "python_path = [{}]\noptimize = 1\nwrite_bytecode = false\nlog = \"pyisapie.log\"\npython_home = {home:?}\n\
             [[app]]\nprefix = \"/\"\ncallable = \"probe:app\"\n",
            quoted(fixtures())
        ),
    )
    .unwrap();
    let host = Host::start_env(&["--extension", &support::host_path(&copy)], envs);
    let text = body(&host.get("/flags"));
    assert!(text.contains(r#""optimize": 1"#), "{text}");
    assert!(text.contains(r#""dont_write_bytecode": true"#), "{text}");
    assert!(
        text.contains(&format!(r#""base_prefix": {home:?}"#)),
        "python_home is Python's base prefix: {text}"
    );
    let r = host.get("/errors?to-the-file");
    assert_eq!(r.status, 200);
    let log = dir.join("pyisapie.log");
    assert!(
        crate::eventually(Duration::from_secs(5), || std::fs::read_to_string(&log)
            .is_ok_and(|s| s.contains("ready") && s.contains("to-the-file"))),
        "the log file gets the start-up line and wsgi.errors"
    );
}

#[test]
fn c_extension_modules_import() {
    let host = probe_host();
    let text = body(&host.get("/flags"));
    assert!(text.contains(r#""c_extensions": "ok""#), "{text}");
}

#[test]
fn terminate_extension_on_sigterm() {
    let mut host = probe_host();
    assert_eq!(host.get("/hello").status, 200);
    let status = host.terminate();
    assert!(status.success(), "graceful exit: {status:?}");
    assert!(
        host.stderr().contains("TerminateExtension"),
        "{}",
        host.stderr()
    );
}

#[test]
fn a_factory_in_pyisapie_toml_is_called_once() {
    let dir = support::temp_dir("toml-factory");
    std::fs::write(
        dir.join("factory_app.py"),
        "CALLS = []\n\
         def create_app(name, debug=False):\n\
         \x20   CALLS.append(1)\n\
         \x20   def app(environ, start_response):\n\
         \x20       start_response('200 OK', [('Content-Type', 'text/plain')])\n\
         \x20       return [f'{name} debug={debug} calls={len(CALLS)}'.encode()]\n\
         \x20   return app\n",
    )
    .unwrap();
    let config = dir.join("pyisapie.toml");
    std::fs::write(
        &config,
        format!(
            "python_path = [{}]\n[[app]]\nprefix = \"/\"\ncallable = \"factory_app:create_app('site', debug=True)\"\n",
            quoted(&dir)
        ),
    )
    .unwrap();
    let host = Host::start_env(
        &["--extension", &lib()],
        [("PYISAPIE_CONFIG", support::host_path(&config))],
    );
    for _ in 0..3 {
        assert_eq!(body(&host.get("/")), "site debug=True calls=1");
    }
}
