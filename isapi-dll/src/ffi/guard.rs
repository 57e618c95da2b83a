//! `ffi_guard!`: no panic crosses the ABI. Every export and callback runs its body through
//! it, so that a panic is logged and turned into the function's failure value.

use std::any::Any;

/// Runs `$body`, catching any panic: the panic is logged and `$default` returned.
macro_rules! ffi_guard {
    ($name:literal, $default:expr, $body:block) => {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| $body)) {
            Ok(value) => value,
            Err(payload) => {
                $crate::ffi::guard::panic_caught($name, &*payload);
                $default
            }
        }
    };
}
pub(super) use ffi_guard;

/// Reports a panic caught at the ABI boundary.
pub(super) fn panic_caught(entry: &str, payload: &(dyn Any + Send)) {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    tracing::error!(target: "pyisapie", "panic in {entry}: {message}");
    eprintln!("pyisapie: panic in {entry}: {message}");
}
