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
//! From the top down; each module uses only those listed below it.
//! - `extension`: the life cycle (start-up, the per-request entry, termination), behind
//!   the ISAPI exports.
//! - `interpreters`: where each app runs (the main interpreter, an own sub-interpreter,
//!   own-GIL replicas) and which replica takes a request.
//! - `request`: one request: the call of the application and sending what it returns.
//! - `wsgi`: the Python-facing types, one file per WSGI concept (the environ,
//!   `wsgi.input`, `start_response` and the response writer, `wsgi.file_wrapper`,
//!   `wsgi.errors`) and the per-interpreter context.
//! - `server_vars`: the server variables of one request, fetched before the GIL is taken.
//! - [`mount`]: the app for a URL and the `SCRIPT_NAME`/`PATH_INFO` split.
//! - [`http`]: response validation and framing, as pure functions.
//! - `log`: the library's own `tracing` subscriber.
//! - [`config`]: `pyisapie.toml`, `PYISAPIE_CONFIG`, `PYISAPIE_APP`.
//! - [`paths`]: Windows and Unix path rules as pure functions (config paths, the
//!   library's folder, a virtualenv's layout).
//! - `ffi`: every `unsafe` block, at the bottom: the ISAPI exports, the ECB and its
//!   callbacks, Python's start-up, the loaded libraries, Windows' standard handles.
//!
//! The exported functions ([`GetExtensionVersion`], [`HttpExtensionProc`],
//! [`TerminateExtension`]) are defined here, at the root, by `ffi`'s `isapi_exports!`.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
mod extension;
#[allow(unsafe_code)]
mod ffi;
pub mod http;
mod interpreters;
mod log;
pub mod mount;
pub mod paths;
mod request;
mod server_vars;
mod wsgi;

// The three exported ISAPI entry points, written in `ffi` and calling the extension's life
// cycle through `ffi::exports::Extension`.
ffi::exports::isapi_exports!(extension::Pyisapie);
