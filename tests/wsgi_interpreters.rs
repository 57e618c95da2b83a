//! Interpreter modes (`interpreter = "main" | "shared" | "isolated"`), replicas, the
//! refusing-module error and ordered shutdown, with `fixtures/wsgi/interp_app.py`, which
//! reports what its interpreter sees (its id, `os.environ`, `sys.modules`, `sys.path`).
//!
//! Tests that need own-GIL sub-interpreters run when pyisapie is built against Python
//! 3.12 or later (`PYO3_PYTHON=.../python3.13 cargo build -p pyisapie`, as
//! ci/pymatrix.sh does) and are skipped otherwise, saying so. The two-Django demo
//! (`fixtures/wsgi/two_django`) needs the test venv (see `wsgi_frameworks`); isolated, it
//! runs on 3.13+ and is the clear start-up error on 3.12 (zoneinfo needs `_datetime`).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use crate::support::{self, Host};
use crate::{body, fixtures, quoted};

/// The host serving the apps of `toml` (a pyisapie.toml body; `python_path` to the fixtures
/// is added), or its start-up failure.
pub(crate) fn try_host(tag: &str, toml: &str) -> Result<Host, String> {
    let dir = support::temp_dir(tag);
    let config = dir.join("pyisapie.toml");
    std::fs::write(
        &config,
        format!("python_path = [{}]\n{toml}", quoted(fixtures())),
    )
    .unwrap();
    Host::try_start_env(
        &["--extension", &support::host_path(support::pyisapie_lib())],
        [("PYISAPIE_CONFIG", support::host_path(&config))],
    )
}

fn host(tag: &str, toml: &str) -> Host {
    try_host(tag, toml).unwrap_or_else(|e| panic!("{e}"))
}

/// An `[[app]]` table for `interp_app:make(name)` at `/name`.
fn app(name: &str, extra: &str) -> String {
    format!("[[app]]\nprefix = \"/{name}\"\ncallable = \"interp_app:make('{name}')\"\n{extra}\n")
}

fn report(host: &Host, path: &str) -> Value {
    let r = host.get(path);
    assert_eq!(r.status, 200, "{path}: {}\n{}", body(&r), host.stderr());
    serde_json::from_str(&body(&r)).unwrap_or_else(|e| panic!("{path}: {e}: {}", body(&r)))
}

/// The (major, minor) of the Python pyisapie is built against, asked of that Python.
pub(crate) fn python() -> (u64, u64) {
    static VERSION: OnceLock<(u64, u64)> = OnceLock::new();
    *VERSION.get_or_init(|| {
        let host = host("interp-version", &app("v", "interpreter = \"main\""));
        let v = report(&host, "/v");
        (
            v["python"][0].as_u64().unwrap(),
            v["python"][1].as_u64().unwrap(),
        )
    })
}

/// True (after printing why) when own-GIL sub-interpreters are not available.
pub(crate) fn skip_without_own_gil() -> bool {
    let (major, minor) = python();
    if (major, minor) < (3, 12) {
        support::skip(&format!(
            "skipped: needs Python >= 3.12 (built against {major}.{minor})"
        ));
        return true;
    }
    false
}

fn id(v: &Value) -> i64 {
    v["interpreter"].as_i64().expect("an interpreter id")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// Two apps at /a and /b, each with its own folder in `python_path`, in `mode`: what each
/// one sees.
fn two_apps(mode: &str) -> (Host, Value, Value, [std::path::PathBuf; 2]) {
    let dirs = ["a", "b"].map(|n| {
        let d = support::temp_dir(&format!("interp-path-{n}"));
        std::fs::create_dir_all(&d).unwrap();
        d
    });
    let toml = format!(
        "{}{}",
        app(
            "a",
            &format!(
                "interpreter = \"{mode}\"\npython_path = [{}]",
                quoted(&dirs[0])
            )
        ),
        app(
            "b",
            &format!(
                "interpreter = \"{mode}\"\npython_path = [{}]",
                quoted(&dirs[1])
            )
        ),
    );
    let host = host(&format!("interp-{mode}"), &toml);
    let a = report(&host, "/a");
    let b = report(&host, "/b");
    (host, a, b, dirs)
}

fn has_path(v: &Value, dir: &Path) -> bool {
    let dir = support::host_path(dir);
    strings(&v["path"]).contains(&dir)
}

/// Each app in its own interpreter: its own id, `os.environ`, `sys.modules` and `sys.path`.
fn assert_isolated(a: &Value, b: &Value, dirs: &[std::path::PathBuf; 2]) {
    assert!(id(a) > 0 && id(b) > 0 && id(a) != id(b), "{a}\n{b}");
    assert_eq!((&a["env_app"], &b["env_app"]), (&"a".into(), &"b".into()));
    assert_eq!(strings(&a["markers"]), ["interp_marker_a"]);
    assert_eq!(strings(&b["markers"]), ["interp_marker_b"]);
    assert!(has_path(a, &dirs[0]) && !has_path(a, &dirs[1]), "{a}");
    assert!(has_path(b, &dirs[1]) && !has_path(b, &dirs[0]), "{b}");
    assert_eq!(a["pid"], b["pid"], "one process");
}

#[test]
fn shared_mode_gives_each_app_its_own_modules_environ_and_path() {
    let (_host, a, b, dirs) = two_apps("shared");
    assert_isolated(&a, &b, &dirs);
}

#[test]
fn isolated_mode_gives_each_app_its_own_modules_environ_and_path() {
    if skip_without_own_gil() {
        return;
    }
    let (host, a, b, dirs) = two_apps("isolated");
    assert_isolated(&a, &b, &dirs);
    assert!(
        host.wait_for_log(
            "isolated (own GIL) sub-interpreter",
            Duration::from_secs(10)
        ),
        "{}",
        host.stderr()
    );
}

#[test]
fn main_mode_apps_share_one_interpreter() {
    let (_host, a, b, dirs) = two_apps("main");
    assert_eq!((id(&a), id(&b)), (0, 0));
    // the first app's setdefault wins for both: what sub-interpreters are for
    assert_eq!((&a["env_app"], &b["env_app"]), (&"a".into(), &"a".into()));
    assert_eq!(
        strings(&a["markers"]),
        ["interp_marker_a", "interp_marker_b"]
    );
    assert!(has_path(&a, &dirs[0]) && has_path(&a, &dirs[1]), "{a}");
}

#[test]
fn the_default_mode_is_isolated_from_python_3_13_else_main() {
    let host = host("interp-default", &app("d", ""));
    let v = report(&host, "/d");
    if python() >= (3, 13) {
        assert!(id(&v) > 0, "{v}");
        assert!(
            host.wait_for_log("isolated (own GIL)", Duration::from_secs(10)),
            "{}",
            host.stderr()
        );
    } else {
        assert_eq!(id(&v), 0, "{v}");
        assert!(
            host.wait_for_log("(main interpreter)", Duration::from_secs(10)),
            "{}",
            host.stderr()
        );
    }
}

#[test]
fn isolated_before_python_3_12_is_a_clear_startup_error() {
    let (major, minor) = python();
    if (major, minor) >= (3, 12) {
        support::skip(&format!(
            "skipped: needs Python < 3.12 (built against {major}.{minor})"
        ));
        return;
    }
    let e = try_host("interp-too-old", &app("a", "interpreter = \"isolated\"")).unwrap_err();
    assert!(
        e.contains("interp_app:make('a')")
            && e.contains("needs Python 3.12 or later")
            && e.contains(&format!("Python {major}.{minor}"))
            && e.contains("interpreter = \"shared\""),
        "{e}"
    );
    let e = try_host("interp-too-old-replicas", &app("a", "replicas = 2")).unwrap_err();
    assert!(e.contains("replicas = 2") && e.contains("3.12"), "{e}");
}

#[test]
fn replicas_take_concurrent_requests() {
    if skip_without_own_gil() {
        return;
    }
    let host = host(
        "interp-replicas",
        &app("r", "interpreter = \"isolated\"\nreplicas = 3"),
    );
    assert!(
        host.wait_for_log("3 replicas: sub-interpreters", Duration::from_secs(10)),
        "{}",
        host.stderr()
    );
    let addr = host.addr();
    // 6 requests at once, each holding its replica for 300 ms
    let seen: Vec<Value> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(move || {
                    let (status, _, body) = support::http_get(addr, "/r/sleep?ms=300");
                    assert_eq!(status, 200);
                    serde_json::from_slice::<Value>(&body).unwrap()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let ids: BTreeSet<i64> = seen.iter().map(id).collect();
    assert!(ids.len() > 1, "more than one replica served: {ids:?}");
    assert!(ids.len() <= 3 && !ids.contains(&0), "{ids:?}");
    for v in &seen {
        assert_eq!(v["env_app"], "r", "each replica imported the app: {v}");
    }
}

#[test]
fn the_hosts_replicas_option_runs_python_in_two_replicas_at_once() {
    let fixtures = support::host_path(fixtures());
    let args = [
        "--app",
        "interp_app:make('r')",
        "--python-path",
        &fixtures,
        "--replicas",
        "2",
    ];
    if python() < (3, 12) {
        // pyisapie's own error: replicas need own-GIL sub-interpreters
        let e = Host::try_start_env(&args, std::iter::empty::<(&str, &str)>()).unwrap_err();
        assert!(
            e.contains("replicas = 2") && e.contains("Python 3.12 or later"),
            "{e}"
        );
        return;
    }
    let host = Host::start(&args);
    // Four clients, each sending requests that run Python for 3 ms (holding their replica's
    // GIL), one after another: both replicas serve, and requests run Python at the same
    // time. (That the host runs two extension threads at once for two replicas is
    // config::tests' `replicas_run_that_many_python_threads_at_once_up_to_the_cpus`; how
    // much it gains is BENCHMARKS.md's "Sub-interpreter replicas". On an idle machine
    // nearly every request here overlaps another; with Wine on a machine loaded past its
    // CPUs, a tenth and more.)
    let addr = host.addr();
    let seen: Vec<Value> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(move || {
                    let mut c = support::RawConn::connect(addr).unwrap();
                    (0..40)
                        .map(|_| {
                            let r = c.roundtrip(&support::get_req("/spin?ms=3"));
                            assert_eq!(r.status, 200);
                            serde_json::from_slice::<Value>(&r.body).unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let ids: BTreeSet<i64> = seen.iter().map(id).collect();
    assert_eq!(ids.len(), 2, "both replicas served: {ids:?}");
    let spans: Vec<(f64, f64)> = seen
        .iter()
        .map(|v| {
            (
                v["spun"][0].as_f64().unwrap(),
                v["spun"][1].as_f64().unwrap(),
            )
        })
        .collect();
    let overlapping = spans
        .iter()
        .enumerate()
        .filter(|(i, (a0, a1))| {
            spans
                .iter()
                .enumerate()
                .any(|(j, (b0, b1))| *i != j && a0 < b1 && b0 < a1)
        })
        .count();
    assert!(
        overlapping > 0,
        "two replicas ran Python at once: none of {} requests overlapped another",
        spans.len()
    );
}

#[test]
fn a_module_refusing_sub_interpreters_is_a_clear_startup_error() {
    if skip_without_own_gil() {
        return;
    }
    let (major, minor) = python();
    // A standard module still on single-phase init, which refuses own-GIL interpreters:
    // _curses on Linux; Windows builds have none, but 3.12's _decimal refuses too.
    let module = match (support::windows_host(), minor) {
        (false, _) => "_curses",
        (true, 12) => "_decimal",
        (true, _) => {
            support::skip(&format!(
                "Windows CPython {major}.{minor} ships no module that refuses own-GIL \
                 interpreters (no _curses; _decimal is ported from 3.13)"
            ));
            return;
        }
    };
    let callable = format!("interp_app:make('x', needs='{module}')");
    let refusing = format!("[[app]]\nprefix = \"/x\"\ncallable = \"{callable}\"\n");
    let e = try_host(
        "interp-refuse",
        &format!("{refusing}interpreter = \"isolated\"\n"),
    )
    .unwrap_err();
    assert!(
        e.contains(&callable)
            && e.contains(module)
            && e.contains(&format!("Python {major}.{minor}"))
            && e.contains("interpreter = \"shared\"")
            && e.contains("interpreter = \"main\""),
        "{e}"
    );
    assert!(
        !e.contains("Segmentation") && !e.contains("Fatal Python error"),
        "{e}"
    );
    // the fix it names works: the same app in the main interpreter
    let host = host(
        "interp-refuse-main",
        &format!("{refusing}interpreter = \"main\"\n"),
    );
    assert_eq!(report(&host, "/x")["name"], "x");
}

#[test]
fn terminate_ends_every_sub_interpreter_without_a_crash() {
    let mut toml = app("s1", "interpreter = \"shared\"") + &app("s2", "interpreter = \"shared\"");
    toml += &app("m", "interpreter = \"main\"");
    if python() >= (3, 12) {
        toml += &app("i", "interpreter = \"isolated\"\nreplicas = 2");
    }
    let mut host = host("interp-terminate", &toml);
    // several server threads enter each interpreter, so each has several thread states
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for path in ["/s1/sleep?ms=20", "/s2", "/m", "/i/sleep?ms=20"] {
                    if path.starts_with("/i") && python() < (3, 12) {
                        continue;
                    }
                    assert_eq!(support::http_get(host.addr(), path).0, 200);
                }
            });
        }
    });
    let status = host.terminate();
    let log = host.stderr();
    assert!(status.success(), "graceful exit: {status:?}\n{log}");
    assert!(log.contains("TerminateExtension"), "{log}");
    assert!(
        !log.contains("Fatal Python error") && !log.contains("cannot end"),
        "{log}"
    );
}

#[test]
fn python_path_per_app_comes_first() {
    let (_host, a, _b, dirs) = two_apps("shared");
    let path = strings(&a["path"]);
    let fixtures = support::host_path(fixtures());
    let mine = path.iter().position(|p| *p == support::host_path(&dirs[0]));
    let global = path.iter().position(|p| *p == fixtures);
    assert!(
        mine.is_some() && global.is_some() && mine < global,
        "{path:?}"
    );
}

#[test]
fn replicas_without_a_mode_are_isolated_from_python_3_12() {
    if skip_without_own_gil() {
        return;
    }
    let host = host("interp-idle", &app("q", "replicas = 2"));
    let started = std::time::Instant::now();
    for _ in 0..20 {
        assert_eq!(report(&host, "/q")["name"], "q");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The two-Django demo (`fixtures/wsgi/two_django`): `interpreter` (when given) is set in
/// both app tables; replicas stay only for the isolated default.
fn two_django(tag: &str, interpreter: Option<&str>) -> Host {
    try_two_django(tag, interpreter).unwrap_or_else(|e| panic!("{e}"))
}

fn try_two_django(tag: &str, interpreter: Option<&str>) -> Result<Host, String> {
    let venv = crate::wsgi_frameworks::venv();
    let demo = fixtures().join("two_django");
    let mut toml = std::fs::read_to_string(demo.join("pyisapie.toml")).unwrap();
    if let Some(mode) = interpreter {
        toml = toml.replace("replicas = 2\n", "").replace(
            "wsgi:application\"\n",
            &format!("wsgi:application\"\ninterpreter = \"{mode}\"\n"),
        );
    }
    let dir = support::temp_dir(tag);
    std::fs::write(
        dir.join("pyisapie.toml"),
        format!(
            "virtualenv = {}\n{}",
            quoted(&venv),
            toml.replace(
                "[\"site_a\"]",
                &format!("[{}]", quoted(demo.join("site_a")))
            )
            .replace(
                "[\"site_b\"]",
                &format!("[{}]", quoted(demo.join("site_b")))
            )
        ),
    )
    .unwrap();
    Host::try_start_env(
        &["--extension", &support::host_path(support::pyisapie_lib())],
        [(
            "PYISAPIE_CONFIG",
            support::host_path(dir.join("pyisapie.toml")),
        )],
    )
}

/// Both sites under concurrent load: every answer comes from the right site, settings
/// module, `DJANGO_SETTINGS_MODULE` and "pages" app. Returns the interpreter ids per site.
fn assert_two_sites_under_load(host: &Host) -> [BTreeSet<i64>; 2] {
    let addr = host.addr();
    let answers: Vec<(usize, Value)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|t| {
                s.spawn(move || {
                    (0..24)
                        .map(|n| {
                            let site = (t + n) % 2;
                            let path = ["/a/", "/b/"][site];
                            let (status, _, body) = support::http_get(addr, path);
                            let text = String::from_utf8_lossy(&body).into_owned();
                            assert_eq!(status, 200, "{path}: {text}");
                            (site, serde_json::from_str::<Value>(&text).unwrap())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert_eq!(answers.len(), 8 * 24);
    let mut ids = [BTreeSet::new(), BTreeSet::new()];
    for (site, v) in &answers {
        let (name, letter) = [("Site A", "a"), ("Site B", "b")][*site];
        assert_eq!(v["site"], name, "{v}");
        assert_eq!(
            v["settings_module"],
            format!("site_{letter}.settings"),
            "{v}"
        );
        assert_eq!(v["env"], format!("site_{letter}.settings"), "{v}");
        assert_eq!(v["pages_owner"], format!("site_{letter}"), "{v}");
        assert_eq!(v["pages_label"], "pages", "{v}");
        assert_eq!(v["script_name"], format!("/{letter}"), "{v}");
        ids[*site].insert(v["interpreter"].as_i64().unwrap());
    }
    assert!(
        ids[0].is_disjoint(&ids[1]),
        "each site in its own interpreters: {ids:?}"
    );
    ids
}

#[test]
fn two_django_sites_in_shared_sub_interpreters_under_load() {
    let host = two_django("two-django-shared", Some("shared"));
    let ids = assert_two_sites_under_load(&host);
    assert_eq!([ids[0].len(), ids[1].len()], [1, 1], "{ids:?}");
}

#[test]
fn two_django_sites_isolated_with_replicas_under_load() {
    if skip_without_own_gil() {
        return;
    }
    if python() < (3, 13) {
        // 3.12: Django imports zoneinfo, whose C part needs _datetime, which refuses
        // own-GIL sub-interpreters there: the clear start-up error instead
        let e = try_two_django("two-django-isolated-312", None).unwrap_err();
        assert!(
            e.contains("site_a.wsgi:application")
                && e.contains("_datetime")
                && e.contains("Python 3.12")
                && e.contains("interpreter = \"shared\""),
            "{e}"
        );
        return;
    }
    // the demo's own pyisapie.toml: isolated by default, site A in two replicas
    let host = two_django("two-django-isolated", None);
    let ids = assert_two_sites_under_load(&host);
    assert_eq!(ids[1].len(), 1, "{ids:?}");
    assert!(!ids[0].is_empty() && ids[0].len() <= 2, "{ids:?}");
}
