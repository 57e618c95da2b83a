//! The Python-facing types, all in this one module family, so that they can later become
//! per-interpreter heap types without touching the rest. One file per WSGI concept, each
//! using only the files listed before it:
//!
//! - [`link`]: [`Link`], the way a request's Python objects reach its ECB, cut when the
//!   request ends;
//! - [`errors`]: `wsgi.errors`, `sys.stdout` and `sys.stderr`, which write to the log;
//! - [`file_wrapper`]: [`FileWrapper`], `wsgi.file_wrapper`;
//! - [`input`]: [`Input`], `wsgi.input`;
//! - [`response`]: [`Response`], the `start_response` callable, its `write()`, and the
//!   response writer that frames the body (Content-Length, chunked or close-delimited);
//! - [`environ`]: the interned keys, the environ template and the environ of one request;
//! - [`context`]: [`Context`], the per-interpreter state (the mounted apps, the environ
//!   template, the shared `wsgi.errors`), kept in the interpreter's own dictionary, never
//!   in a `static`.

mod context;
mod environ;
mod errors;
mod file_wrapper;
mod input;
mod link;
mod response;

pub(crate) use context::Context;
pub(crate) use errors::redirect_std_streams;
pub(crate) use file_wrapper::FileWrapper;
pub(crate) use input::Input;
pub(crate) use link::Link;
pub(crate) use response::{Deferred, Disconnected, Response};
