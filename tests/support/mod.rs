//! Shared helpers for the end-to-end test binaries of the root package
//! (`tests/e2e.rs` and `tests/wsgi.rs`).
//!
//! Everything here talks to the *real* `isapi-host` binary over real
//! loopback sockets:
//!
//! - [`Host`] starts `isapi-host serve --bind 127.0.0.1:0 ...`, waits for the
//!   `isapi-host listening on http://ADDR` line on stdout, captures stderr, and
//!   kills the process on drop (printing the captured stderr if the test is
//!   panicking).
//! - [`c_fixture`] compiles a C extension from `fixtures/isapi-c/<name>.c` once
//!   per test process; [`pyisapie_lib`] locates `libpyisapie.so`.
//! - [`RawConn`] is a raw TCP client for byte-exact framing, keep-alive and
//!   pipelining checks; responses are parsed by the harness crate's strict
//!   reader ([`isapi_harness::wire`]).
//! - [`http_get`] / [`get`] / [`request`] are one-shot conveniences.
//!
//! The host runs with `RUST_LOG=info` (override with `ISAPI_HOST_TEST_LOG`), since
//! tests read its access log and traces from stderr.
//!
//! # Running the suites against another build of the host (Windows under Wine)
//!
//! The same test binaries drive a Windows build of the host (see
//! `ci/windows-test.sh`), through these environment variables:
//!
//! - `ISAPI_HOST_TEST_BIN`: the host binary to run (default: the one cargo built
//!   for these tests). A name ending in `.exe` makes it a Windows host.
//! - `ISAPI_HOST_TEST_RUNNER`: a program that runs it (e.g. `/usr/lib/wine/wine64`).
//! - `ISAPI_TEST_FIXTURE_DIR`: prebuilt C fixtures (`hello.dll`, ... or
//!   `libhello.so`, ...) instead of compiling `fixtures/isapi-c/*.c` with `cc`.
//! - `ISAPI_TEST_PYISAPIE`: the pyisapie library (default: next to the host binary).
//! - `ISAPI_TEST_SKIP_LOG`: a file each skipped test appends one line to.
//!
//! The Python version matrix (`ci/pymatrix.sh`) uses the same variables on
//! Linux: `ISAPI_HOST_TEST_BIN` is a hard link of the host next to the
//! `libpyisapie.so` built against another Python (the host loads the pyisapie
//! next to the path it was started by), and `tests/wsgi_python.rs` checks
//! `ISAPI_TEST_PYTHON_VERSION` and `ISAPI_TEST_PYTHON_PREFIX` against the
//! interpreter that served.
//!
//! With a Windows host, every path handed to it goes through [`host_path`]
//! (`/abs/path` becomes `Z:\abs\path`, Wine's default mapping of `/`), and
//! tests that expect a path back expect the Windows form ([`host_join`]). Tests
//! that cannot run there call [`skip_on_windows`], which prints
//! `SKIPPED: <test>: <reason>` and makes the test return without asserting.
//!
//! Each binary uses a subset of these helpers (and of the re-exports), hence
//! the `dead_code` and `unused_imports` allowances.
//!
//! - `platform`: the host under test, Windows paths, skips;
//! - `extensions`: the C fixtures and pyisapie;
//! - `host`: [`Host`];
//! - `conn`: [`RawConn`] and one-shot requests;
//! - `files`: [`temp_dir`].
#![allow(dead_code, unreachable_pub)]

mod conn;
mod extensions;
mod files;
mod host;
mod platform;

pub use conn::*;
pub use extensions::*;
pub use files::*;
pub use host::*;
pub use platform::*;

/// Polls `f` every 50 ms until it returns true or `timeout` passes; whether it did.
pub fn eventually(timeout: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// How many times `needle` occurs in `haystack` (a log, a response).
pub fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

// The harness's helpers the tests use (each binary a subset of them).
#[allow(unused_imports)]
pub use isapi_harness::fixtures::{self, FNV1A64_INIT, fnv1a64};
#[allow(unused_imports)]
pub use isapi_harness::procfs::{
    self, listening_on_port, listening_sockets, peak_rss_kib, rss_kib, threads_named,
};
#[allow(unused_imports)]
pub use isapi_harness::wire::{self, Framing, PeerState, ReadOptions, Response, WireError};
