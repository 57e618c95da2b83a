//! The extensions under test: the C fixtures (compiled here, or prebuilt for
//! a Windows host) and the workspace's pyisapie library.

use std::path::{Path, PathBuf};

use isapi_harness::fixtures;

use super::platform::{host_bin, host_path, repo_root, windows_host};

/// Directory of the C fixtures.
pub fn c_fixture_dir() -> PathBuf {
    repo_root().join("fixtures").join("isapi-c")
}

/// Compile `fixtures/isapi-c/<name>.c` into a shared library (once per test
/// process) under `CARGO_TARGET_TMPDIR` and return its path: the harness's
/// [`fixtures::compile`] (`-shared -fPIC -pthread -Wall -Wextra -Werror`) plus
/// `$ISAPI_FIXTURE_CFLAGS`, e.g. `"-fsanitize=address -g"` (run the host with
/// `ISAPI_HOST_TEST_LD_PRELOAD=libasan.so.8`); builds with extra flags go to
/// their own directory. With `$ISAPI_TEST_FIXTURE_DIR`, the prebuilt library
/// there instead. Panics with the compiler output on failure.
pub fn c_fixture(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("ISAPI_TEST_FIXTURE_DIR").filter(|d| !d.is_empty()) {
        let dir = Path::new(&dir);
        return fixtures::prebuilt(dir, name, windows_host()).unwrap_or_else(|| {
            panic!(
                "fixture {name} not found in ISAPI_TEST_FIXTURE_DIR={} (looked for {:?})",
                dir.display(),
                fixtures::prebuilt_names(name, windows_host())
            )
        });
    }
    let extra: Vec<String> = std::env::var("ISAPI_FIXTURE_CFLAGS")
        .map(|v| v.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let out_root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    fixtures::compile(&c_fixture_dir(), name, out_root, &extra).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The file name (without extension) of the fixture library `name` as the host
/// reports it in errors: `libname` when compiled here, `name` for a prebuilt
/// Windows DLL.
pub fn c_fixture_stem(name: &str) -> String {
    c_fixture(name)
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("utf-8 fixture name")
        .to_owned()
}

/// `c_fixture(name)` as the host names it (see [`host_path`]), as a `String`
/// (handy for building argument lists).
pub fn c_fixture_str(name: &str) -> String {
    host_path(c_fixture(name))
}

/// The workspace's own extension: `$ISAPI_TEST_PYISAPIE`, else
/// `libpyisapie.so` next to the host binary (`pyisapie.dll` for a Windows
/// host). Panics if it has not been built.
pub fn pyisapie_lib() -> PathBuf {
    let lib = match std::env::var_os("ISAPI_TEST_PYISAPIE").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => {
            let bin = host_bin();
            let dir = bin.parent().expect("host binary has a parent dir");
            let name = if windows_host() {
                "pyisapie.dll".to_owned()
            } else {
                format!(
                    "{}pyisapie{}",
                    std::env::consts::DLL_PREFIX,
                    std::env::consts::DLL_SUFFIX
                )
            };
            dir.join(name)
        }
    };
    assert!(
        lib.is_file(),
        "{} not found: build it first: cargo build -p pyisapie",
        lib.display()
    );
    lib
}
