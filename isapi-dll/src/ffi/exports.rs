//! The three ISAPI exports: `GetExtensionVersion`, `HttpExtensionProc` and
//! `TerminateExtension`.
//!
//! They are the top of every call into the library, but this module sits at the bottom of
//! the crate: the exports check the server's pointers, catch panics, and hand over to an
//! [`Extension`], the trait the layer above implements. The crate root defines the exported
//! symbols for that implementation with [`isapi_exports!`], so no arrow points from here
//! back up.

use std::ptr::NonNull;

use windows_sys::Win32::Foundation::{FALSE, TRUE};
use windows_sys::Win32::System::Iis::{
    EXTENSION_CONTROL_BLOCK, HSE_STATUS_ERROR, HSE_VERSION_INFO, HSE_VERSION_MAJOR,
    HSE_VERSION_MINOR,
};
use windows_sys::core::BOOL;

use super::ecb::Ecb;
use super::guard::ffi_guard;

/// What the exports call: the extension's life cycle, in safe Rust.
pub(crate) trait Extension {
    /// `GetExtensionVersion`: starts the extension (once; later calls report the first
    /// result). Returns the description the server shows, or `Err` when it cannot start
    /// (it has logged why).
    fn start() -> Result<String, ()>;

    /// `HttpExtensionProc`: serves one request synchronously; returns an `HSE_STATUS_*`.
    fn handle(ecb: Ecb) -> u32;

    /// `TerminateExtension(flags)`: the server is about to unload the library.
    fn terminate(flags: u32);
}

/// Defines the three exported ISAPI functions for an [`Extension`] type, at the place of
/// the call (the crate root). Each one only forwards to the function of the same role in
/// this module.
macro_rules! isapi_exports {
    ($extension:ty) => {
        /// ISAPI entry point: called once when the server loads the library. Loads the
        /// configuration, starts Python and imports the applications. Returns FALSE (and
        /// prints why on stderr and in the log) when any of that fails.
        ///
        /// # Safety
        /// `version` must be NULL or point to a writable `HSE_VERSION_INFO`.
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub unsafe extern "system" fn GetExtensionVersion(
            version: *mut ::windows_sys::Win32::System::Iis::HSE_VERSION_INFO,
        ) -> ::windows_sys::core::BOOL {
            // SAFETY: the caller keeps this function's contract, which is the callee's.
            unsafe { $crate::ffi::exports::get_extension_version::<$extension>(version) }
        }

        /// ISAPI entry point: serves one request. Runs the WSGI application synchronously
        /// on the calling server thread.
        ///
        /// # Safety
        /// `ecb` must be NULL or point to a valid `EXTENSION_CONTROL_BLOCK` that stays
        /// valid until this function returns (it never returns `HSE_STATUS_PENDING`).
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub unsafe extern "system" fn HttpExtensionProc(
            ecb: *mut ::windows_sys::Win32::System::Iis::EXTENSION_CONTROL_BLOCK,
        ) -> u32 {
            // SAFETY: the caller keeps this function's contract, which is the callee's.
            unsafe { $crate::ffi::exports::http_extension_proc::<$extension>(ecb) }
        }

        /// ISAPI entry point: the server is about to unload the library. Python is not
        /// finalized (other threads of the server may still hold references); logs are
        /// flushed.
        ///
        /// # Safety
        /// Always safe to call; marked unsafe as an exported ABI function.
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub unsafe extern "system" fn TerminateExtension(flags: u32) -> ::windows_sys::core::BOOL {
            $crate::ffi::exports::terminate_extension::<$extension>(flags)
        }
    };
}
pub(crate) use isapi_exports;

/// `GetExtensionVersion` for `E`: fills in the version and description when `E` starts.
///
/// # Safety
/// `version` must be NULL or point to a writable `HSE_VERSION_INFO`.
#[inline]
pub(crate) unsafe fn get_extension_version<E: Extension>(version: *mut HSE_VERSION_INFO) -> BOOL {
    ffi_guard!("GetExtensionVersion", FALSE, {
        let Some(mut version) = NonNull::new(version) else {
            return FALSE;
        };
        match E::start() {
            Ok(description) => {
                // SAFETY: the server passes a valid, writable HSE_VERSION_INFO (checked
                // non-NULL).
                let info = unsafe { version.as_mut() };
                info.dwExtensionVersion = (HSE_VERSION_MAJOR << 16) | HSE_VERSION_MINOR;
                let desc = description.as_bytes();
                let n = desc.len().min(info.lpszExtensionDesc.len() - 1);
                for (dst, src) in info.lpszExtensionDesc.iter_mut().zip(&desc[..n]) {
                    *dst = *src as i8;
                }
                info.lpszExtensionDesc[n] = 0;
                TRUE
            }
            Err(()) => FALSE,
        }
    })
}

/// `HttpExtensionProc` for `E`: wraps the ECB in an [`Ecb`] and hands it over.
///
/// # Safety
/// `ecb` must be NULL or point to a valid `EXTENSION_CONTROL_BLOCK` that stays valid until
/// this function returns.
#[inline]
pub(crate) unsafe fn http_extension_proc<E: Extension>(ecb: *mut EXTENSION_CONTROL_BLOCK) -> u32 {
    ffi_guard!("HttpExtensionProc", HSE_STATUS_ERROR, {
        let Some(ecb) = NonNull::new(ecb) else {
            return HSE_STATUS_ERROR;
        };
        // SAFETY: the server's ECB stays valid until we return (this function's contract),
        // and `E::handle` runs the whole request before it returns.
        E::handle(unsafe { Ecb::new(ecb) })
    })
}

/// `TerminateExtension` for `E`.
#[inline]
pub(crate) fn terminate_extension<E: Extension>(flags: u32) -> BOOL {
    ffi_guard!("TerminateExtension", TRUE, {
        E::terminate(flags);
        TRUE
    })
}
