//! Which Python served: the version the extension was built against, and (on
//! Linux) the one libpython mapped into the host. This is the proof behind
//! the Python version matrix (`ci/pymatrix.sh`), which builds pyisapie against
//! each Python and names it here:
//!
//! - `ISAPI_TEST_PYTHON_VERSION`: the expected `3.X.Y` (or `3.X`);
//! - `ISAPI_TEST_PYTHON_PREFIX`: the expected `sys.base_prefix`, which also
//!   holds the mapped libpython (pyenv's `~/.pyenv/versions/3.X.Y`).
//!
//! Without them, the expected version is that of `$PYO3_PYTHON` (cargo sets
//! it from `.cargo/config.toml`: `/usr/bin/python3`), the Python the default
//! build links; a Windows host without them is skipped.

use crate::body;
use crate::support::{self, Host};

/// An app that reports its interpreter, one `key=value` per line.
const APP: &str = r#"import sys

def app(environ, start_response):
    mapped = set()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(None, 5)
                if len(fields) == 6 and "libpython" in fields[5]:
                    mapped.add(fields[5].strip())
    except OSError:
        pass
    lines = ["version=" + sys.version.split()[0], "base_prefix=" + sys.base_prefix]
    lines += ["libpython=" + path for path in sorted(mapped)]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["\n".join(lines).encode()]
"#;

/// The expected version: `$ISAPI_TEST_PYTHON_VERSION`, else `$PYO3_PYTHON`'s
/// (or `/usr/bin/python3`'s); `None` for a Windows host without the variable.
fn expected_version() -> Option<String> {
    if let Some(v) = std::env::var("ISAPI_TEST_PYTHON_VERSION")
        .ok()
        .filter(|v| !v.is_empty())
    {
        return Some(v);
    }
    if support::windows_host() {
        return None;
    }
    let python = std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".to_owned());
    let out = std::process::Command::new(&python)
        .args(["-c", "import platform; print(platform.python_version())"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} (PYO3_PYTHON): {e}"));
    assert!(out.status.success(), "{python} failed: {out:?}");
    Some(String::from_utf8(out.stdout).unwrap().trim().to_owned())
}

/// `key=value` lines: every value of `key`.
fn values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

fn canonical(path: &str) -> std::path::PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_interpreter_is_the_python_pyisapie_was_built_against() {
    let Some(expected) = expected_version() else {
        support::skip("set ISAPI_TEST_PYTHON_VERSION to the Windows Python's version");
        return;
    };
    let dir = support::temp_dir("which-python");
    std::fs::write(dir.join("which_python.py"), APP).unwrap();
    support::pyisapie_lib();
    let host = Host::start(&[
        "--app",
        "which_python:app",
        "--python-path",
        &support::host_path(&dir),
    ]);
    let r = host.get("/");
    let text = body(&r);
    assert_eq!(r.status, 200, "{text}");
    let version = values(&text, "version");
    // "3.12.1" must match exactly, "3.12" as a prefix of "3.12.1".
    assert!(
        version.len() == 1
            && (version[0] == expected || version[0].starts_with(&format!("{expected}."))),
        "expected Python {expected}, the app ran on {version:?}:\n{text}"
    );
    if support::windows_host() {
        return;
    }
    // Exactly one libpython in the host, of that version (no second Python
    // pulled in by the loader).
    let mapped = values(&text, "libpython");
    let major_minor: String = version[0].split('.').take(2).collect::<Vec<_>>().join(".");
    assert!(
        mapped.len() == 1 && mapped[0].contains(&format!("libpython{major_minor}")),
        "expected one libpython{major_minor} mapped, found {mapped:?}"
    );
    if let Some(prefix) = std::env::var("ISAPI_TEST_PYTHON_PREFIX")
        .ok()
        .filter(|p| !p.is_empty())
    {
        let prefix = canonical(&prefix);
        let base = values(&text, "base_prefix");
        assert!(
            base.len() == 1 && canonical(base[0]) == prefix,
            "sys.base_prefix is {base:?}, expected {}",
            prefix.display()
        );
        assert!(
            canonical(mapped[0]).starts_with(&prefix),
            "libpython {} is not under {}",
            mapped[0],
            prefix.display()
        );
    }
}
