//! # pyisapie
//!
//! An ISAPI extension that serves Python WSGI applications, for IIS and for any ISAPI host
//! (such as this workspace's `isapi-host`). A modern take on PyISAPIe: complete PEP 3333,
//! keep-alive and chunked framing done right, the GIL released around every blocking call.
//!
//! The library talks to the server only through the `EXTENSION_CONTROL_BLOCK`, so the
//! same code runs under IIS (as `pyisapie.dll`) and under `isapi-host` (as
//! `libpyisapie.so`).
//!
//! # Map of the crate
//! - `ffi`: the ISAPI exports and every `unsafe` block (ECB callbacks, Python start-up).
//! - [`config`]: `pyisapie.toml`, `PYISAPIE_CONFIG`, `PYISAPIE_APP`.
//! - [`mount`]: the app for a URL and the `SCRIPT_NAME`/`PATH_INFO` split.
//! - [`paths`]: Windows and Unix path rules as pure functions (config paths, the
//!   library's folder, a virtualenv's layout).
//! - [`http`]: response validation and framing, as pure functions.
//! - `wsgi`: the Python-facing types (`wsgi.input`, `start_response`/`write`,
//!   `wsgi.file_wrapper`, `wsgi.errors`) and the per-interpreter context.
//! - `request`: the environ and the run of one request.
//! - `extension`: start-up, per-request entry and termination.
#![deny(unsafe_code)]

pub mod config;
mod extension;
#[allow(unsafe_code)]
mod ffi;
pub mod http;
mod log;
pub mod mount;
pub mod paths;
mod request;
mod wsgi;

// The three exported ISAPI entry points, written in `ffi` and calling the extension's life
// cycle through `ffi::exports::Extension`.
ffi::exports::isapi_exports!(extension::Pyisapie);
