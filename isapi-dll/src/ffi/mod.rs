//! Every `unsafe` line of the extension lives here, at the bottom of the crate. This layer
//! knows nothing of WSGI, applications or configuration: it reaches the extension above it
//! only through the [`exports::Extension`] trait, which the crate root names.
//!
//! - [`exports`]: the three ISAPI exports (`GetExtensionVersion`, `HttpExtensionProc`,
//!   `TerminateExtension`), each behind `ffi_guard!` so that no panic crosses the ABI.
//! - [`ecb`]: [`Ecb`], a safe handle on the `EXTENSION_CONTROL_BLOCK` with the callbacks
//!   the extension uses (ReadClient, WriteClient, GetServerVariable with size probing, and
//!   the ServerSupportFunction requests), and the Win32 error codes they report.
//! - [`python`]: starting the interpreter from a `PyConfig`, the per-interpreter
//!   dictionary, latin-1 strings.
//! - [`interp`]: sub-interpreters (own GIL or the main one's), each thread's lasting
//!   thread state in each, entering and leaving them, ending them in order.
//! - [`pytype`]: per-interpreter heap types whose instances own a Rust value, owned
//!   references that stay in their interpreter, values kept in the interpreter's own
//!   dictionary, and the trampolines through which Python calls Rust.
//! - [`library`]: this library's own file, the loaded Python library, and making
//!   libpython's symbols global.
//! - `winstdio` (Windows only): standard handles CPython cannot use, hidden from it before
//!   it starts.
//! - `guard`: `ffi_guard!`, which catches panics at the ABI boundary (exports and the
//!   I/O completion callback).
//!
//! Errors: ISAPI reports failures through `GetLastError` on Windows. On other systems the
//! host sets `errno` to the same Win32 code (122 `ERROR_INSUFFICIENT_BUFFER`, 1413
//! `ERROR_INVALID_INDEX`, ...) before it returns FALSE; the [`ecb`] callbacks read
//! whichever applies.

use windows_sys::Win32::System::Iis::{
    EXTENSION_CONTROL_BLOCK, HSE_SEND_HEADER_EX_INFO, HSE_TF_INFO, HSE_VERSION_INFO,
};

pub(crate) mod exports;

pub(crate) mod ecb;
mod guard;
pub(crate) mod interp;
pub(crate) mod library;
pub(crate) mod python;
pub(crate) mod pytype;
#[cfg(test)]
mod tests;
#[cfg(windows)]
mod winstdio;

pub(crate) use ecb::{Ecb, RawFile};

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(size_of::<EXTENSION_CONTROL_BLOCK>() == 192);
    assert!(size_of::<HSE_VERSION_INFO>() == 260);
    assert!(size_of::<HSE_SEND_HEADER_EX_INFO>() == 32);
    assert!(size_of::<HSE_TF_INFO>() == 72);
};
