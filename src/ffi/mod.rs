//! The ISAPI ABI: every line of unsafe code in the host, at the bottom of
//! the crate. It knows nothing of requests or servers, and calls upward only
//! through the [`Handler`] trait, which the request layer implements.
//!
//! - [`library`]: loading an extension and calling its three exports;
//! - [`ecb`]: the `EXTENSION_CONTROL_BLOCK`, and the calls that pass it
//!   (the extension's completion routine);
//! - [`callbacks`]: the four callbacks in the ECB;
//! - [`registry`]: `HCONN` to the live request's [`Handler`];
//! - [`handler`]: the [`Handler`] trait, the one way up;
//! - [`decode`]: `ServerSupportFunction`'s raw arguments into a safe
//!   [`SupportRequest`];
//! - [`raw`]: what the extension hands over for an operation (memory,
//!   files, its completion routine);
//! - [`error`]: Win32 error codes, through `SetLastError` or `errno`;
//! - [`env`](mod@env): the environment, set before threads start;
//! - `alloc`: the global allocator (mimalloc, on Unix);
//! - `os` (Unix): the process plumbing of the supervisor and its workers
//!   (inherited descriptors, signals, the shared in-flight table).
//!
//! Errors go back the Win32 way: `SetLastError` on Windows; on other systems
//! the Win32 code is stored in `errno` before the callback returns FALSE.
#![allow(unsafe_code)]

#[cfg(not(windows))]
mod alloc;
mod callbacks;
mod decode;
mod ecb;
mod env;
mod error;
/// In-process drivers for `crate::fuzzing`.
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz;
mod handler;
mod library;
#[cfg(unix)]
pub(crate) mod os;
mod raw;
mod registry;
#[cfg(test)]
mod tests;

#[cfg(not(windows))]
pub(crate) use alloc::MiMalloc;
#[cfg(target_os = "linux")]
pub(crate) use alloc::no_huge_pages;
pub(crate) use decode::{
    BoolOut, Piece, SupportRequest, Transmit, VectorSend, request_name, trim_nul,
};
pub(crate) use ecb::{EcbCell, EcbStrings};
pub(crate) use env::set_env_before_threads;
pub(crate) use handler::Handler;
pub(crate) use library::Extension;
pub(crate) use raw::{Completion, FileRange, RawBuf, SizedOut};
pub(crate) use registry::{next_id, register, unregister};
