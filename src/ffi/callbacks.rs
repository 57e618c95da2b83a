//! The four callbacks IIS hands an extension in the ECB:
//! [`get_server_variable`], [`read_client`], [`write_client`] and
//! [`server_support_function`].
//!
//! Each turns its raw arguments into safe values, finds the request by its
//! `HCONN` ([`super::registry`]) and calls up through the [`Handler`] trait,
//! which the request layer implements: this layer never names it. A panic
//! or a Win32 error becomes FALSE with the error code set.

use std::ffi::{CStr, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use windows_sys::Win32::Foundation::{ERROR_INVALID_INDEX, ERROR_INVALID_PARAMETER, FALSE, TRUE};
use windows_sys::Win32::System::Iis::HCONN;
use windows_sys::core::BOOL;

use super::decode::{decode, request_name};
use super::error::set_last_error;
use super::handler::Handler;
use super::raw::SizedOut;
use super::registry;

/// Runs a callback body: a panic or a Win32 error becomes FALSE with the
/// error code set; a stale `HCONN` is `ERROR_INVALID_PARAMETER`. Nothing
/// unwinds out of it.
fn callback(
    name: &'static str,
    hconn: HCONN,
    f: impl FnOnce(&Arc<dyn Handler>) -> Result<(), u32>,
) -> BOOL {
    let run = || {
        let Some(h) = registry::lookup(hconn) else {
            tracing::warn!(
                callback = name,
                hconn = hconn as usize,
                "callback for a finished or unknown request (HCONN)"
            );
            return Err(ERROR_INVALID_PARAMETER);
        };
        match catch_unwind(AssertUnwindSafe(|| f(&h))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(code)) => {
                h.trace(format_args!("{name} -> FALSE (error {code})"));
                Err(code)
            }
            Err(_) => {
                tracing::error!(
                    callback = name,
                    request = h.id(),
                    "host panicked inside an ISAPI callback"
                );
                Err(ERROR_INVALID_PARAMETER)
            }
        }
    };
    // The outer guard catches what the inner one cannot: a panic while
    // looking the request up or logging.
    match catch_unwind(AssertUnwindSafe(run)).unwrap_or(Err(ERROR_INVALID_PARAMETER)) {
        Ok(()) => TRUE,
        Err(code) => {
            set_last_error(code);
            FALSE
        }
    }
}

/// `GetServerVariable(hConn, lpszVariableName, lpvBuffer, lpdwSize)`.
pub(super) unsafe extern "system" fn get_server_variable(
    hconn: HCONN,
    name: *const u8,
    buf: *mut c_void,
    size: *mut u32,
) -> BOOL {
    callback("GetServerVariable", hconn, |h| {
        if name.is_null() || size.is_null() {
            return Err(ERROR_INVALID_PARAMETER);
        }
        // SAFETY: the extension passes a NUL-terminated name.
        let name = unsafe { CStr::from_ptr(name as *const c_char) }.to_bytes();
        let Some(value) = h.server_variable(name) else {
            h.trace(format_args!(
                "GetServerVariable({}) -> unknown",
                name.escape_ascii()
            ));
            return Err(ERROR_INVALID_INDEX);
        };
        let nul = if name.len() > 8 && name[..8].eq_ignore_ascii_case(b"UNICODE_") {
            2
        } else {
            1
        };
        // SAFETY: `size` is valid (checked non-NULL above) and `buf` is
        // NULL or holds `*size` bytes (ABI).
        let out = unsafe { SizedOut::new(buf, size) };
        let offered = out.offered();
        let result = out.write(&value, nul);
        let needed = value.len() + nul;
        match result {
            Ok(()) => h.trace(format_args!(
                "GetServerVariable({}, size={offered}) -> {needed} bytes",
                name.escape_ascii()
            )),
            Err(_) => h.trace(format_args!(
                "GetServerVariable({}, size={offered}) -> needs {needed} bytes",
                name.escape_ascii()
            )),
        }
        result
    })
}

/// `ReadClient(hConn, lpvBuffer, lpdwSize)`.
pub(super) unsafe extern "system" fn read_client(
    hconn: HCONN,
    buf: *mut c_void,
    size: *mut u32,
) -> BOOL {
    callback("ReadClient", hconn, |h| {
        if buf.is_null() || size.is_null() {
            return Err(ERROR_INVALID_PARAMETER);
        }
        // SAFETY: `buf` holds `*size` writable bytes (ABI).
        let slice = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, *size as usize) };
        let asked = slice.len();
        let result = h.read_client(slice);
        let n = result.unwrap_or(0);
        // SAFETY: `size` is valid.
        unsafe { *size = n as u32 };
        h.trace(format_args!("ReadClient(size={asked}) -> {n} bytes"));
        result.map(|_| ())
    })
}

/// `WriteClient(hConn, Buffer, lpdwBytes, dwReserved)`; `HSE_IO_ASYNC`
/// completes on an I/O thread.
pub(super) unsafe extern "system" fn write_client(
    hconn: HCONN,
    buf: *mut c_void,
    bytes: *mut u32,
    flags: u32,
) -> BOOL {
    callback("WriteClient", hconn, |h| {
        if bytes.is_null() {
            return Err(ERROR_INVALID_PARAMETER);
        }
        // SAFETY: `bytes` is valid.
        let len = unsafe { *bytes } as usize;
        if buf.is_null() && len > 0 {
            return Err(ERROR_INVALID_PARAMETER);
        }
        let data: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: `buf` holds `len` readable bytes (ABI).
            unsafe { std::slice::from_raw_parts(buf as *const u8, len) }
        };
        h.trace(format_args!("WriteClient(bytes={len}, flags={flags:#x})"));
        Arc::clone(h).write_client(data, flags)
    })
}

/// `ServerSupportFunction(hConn, dwHSERequest, lpvBuffer, lpdwSize, lpdwDataType)`.
pub(super) unsafe extern "system" fn server_support_function(
    hconn: HCONN,
    request: u32,
    buf: *mut c_void,
    size: *mut u32,
    data_type: *mut u32,
) -> BOOL {
    callback("ServerSupportFunction", hconn, |h| {
        let name = request_name(request);
        h.trace(format_args!("ServerSupportFunction({name}={request})"));
        // SAFETY: the extension passes the arguments as the ABI defines
        // them for `request`, valid for the call.
        let decoded = unsafe { decode(request, buf, size, data_type) }?;
        Arc::clone(h).support_function(decoded)
    })
}
