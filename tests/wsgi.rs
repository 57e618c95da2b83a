//! End-to-end tests of the pyisapie extension: the real `isapi-host`, the real
//! `libpyisapie.so` and real loopback sockets. The WSGI apps live in
//! `fixtures/wsgi/` (`probe.py` routes on PATH_INFO, one route per behaviour;
//! `flask_app.py` and `django_site/` need the venv, see `wsgi_frameworks`).
//!
//! Build the extension first: `cargo build -p pyisapie` (CI builds the whole
//! workspace), since the host loads the library found next to its binary.

mod support;

mod wsgi_close;
mod wsgi_config;
mod wsgi_environ;
mod wsgi_errors;
mod wsgi_files;
mod wsgi_frameworks;
mod wsgi_input;
mod wsgi_interpreters;
mod wsgi_python;
mod wsgi_response;
mod wsgi_threads;

use std::net::SocketAddr;
use std::path::PathBuf;

pub(crate) use support::eventually;
use support::{Host, Response};

/// `fixtures/wsgi`.
pub(crate) fn fixtures() -> PathBuf {
    support::repo_root().join("fixtures").join("wsgi")
}

/// A file the probe's file_wrapper routes send (PROBE_FILE), with known bytes:
/// its path as the host names it (see [`support::host_path`]), and the bytes.
pub(crate) fn probe_file() -> (String, Vec<u8>) {
    let data = support::pattern_bytes(200_000, 42);
    let dir = support::temp_dir("probe-file");
    let path = dir.join("data.bin");
    std::fs::write(&path, &data).expect("write probe file");
    (support::host_path(&path), data)
}

/// A path inside a TOML or JSON string (`"..."`, backslashes escaped), as the
/// host names it.
pub(crate) fn quoted(path: impl AsRef<std::path::Path>) -> String {
    format!("{:?}", support::host_path(path))
}

/// The host serving `probe:app` through `--app` / `--python-path`, plus `extra` args.
pub(crate) fn probe_host_with(extra: &[&str], envs: &[(&str, &str)]) -> Host {
    support::pyisapie_lib();
    let dir = support::host_path(fixtures());
    let mut args = vec!["--app", "probe:app", "--python-path", &dir];
    args.extend_from_slice(extra);
    Host::start_env(&args, envs.iter().copied())
}

/// The host serving `probe:app`.
pub(crate) fn probe_host() -> Host {
    probe_host_with(&[], &[])
}

/// A request with a Content-Length body, `Connection: close`.
pub(crate) fn post(addr: SocketAddr, path: &str, body: &[u8]) -> Response {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    support::request(addr, &req)
}

/// A request with a chunked body (chunks of `chunk` bytes), `Connection: close`.
pub(crate) fn post_chunked(addr: SocketAddr, path: &str, body: &[u8], chunk: usize) -> Response {
    let mut req =
        format!("POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n")
            .into_bytes();
    req.extend_from_slice(&support::chunked(body, chunk));
    support::request(addr, &req)
}

/// The body as text.
pub(crate) fn body(r: &Response) -> String {
    support::text(r)
}
