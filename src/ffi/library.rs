//! Loading an extension library: its three exports, `GetExtensionVersion`
//! at start-up, `HttpExtensionProc` per request and `TerminateExtension`
//! at shutdown.

use std::path::{Path, PathBuf};

use windows_sys::Win32::Foundation::FALSE;
use windows_sys::Win32::System::Iis::{
    HSE_MAX_EXT_DLL_NAME_LEN, HSE_TERM_MUST_UNLOAD, HSE_VERSION_INFO, PFN_GETEXTENSIONVERSION,
    PFN_HTTPEXTENSIONPROC, PFN_TERMINATEEXTENSION,
};

use super::ecb::EcbCell;
use super::error::{last_error, set_last_error};

const _: () = assert!(size_of::<HSE_VERSION_INFO>() == 260);

/// `HttpExtensionProc`, resolved.
type HttpExtensionProcFn =
    unsafe extern "system" fn(*mut windows_sys::Win32::System::Iis::EXTENSION_CONTROL_BLOCK) -> u32;

/// Why an extension library could not be started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    /// The system loader refused the library; `reason` is its own message
    /// (`dlerror()`, or the Windows error text and code).
    #[error("cannot load the extension library {path}: {reason}")]
    Open { path: String, reason: String },
    /// A required export is missing.
    #[error("{path} is not an ISAPI extension: it does not export {symbol}")]
    Symbol { path: String, symbol: &'static str },
    /// `GetExtensionVersion` returned FALSE. `code` is the last error the
    /// extension left, which it may not have set: shown only when not 0.
    #[error("the ISAPI extension {path} refused to start (GetExtensionVersion returned FALSE{}); its own messages, above, say why", last_error_note(*code))]
    Refused { path: String, code: i32 },
}

impl LoadError {
    /// The library refused to start, having said why itself.
    pub(crate) fn is_refused(&self) -> bool {
        matches!(self, LoadError::Refused { .. })
    }

    /// Names where the library was configured, after its path: `x.so (from --extension)`.
    pub(crate) fn with_origin(mut self, origin: &str) -> Self {
        let (LoadError::Open { path, .. }
        | LoadError::Symbol { path, .. }
        | LoadError::Refused { path, .. }) = &mut self;
        *path = format!("{path} (from {origin})");
        self
    }
}

/// An extension library, loaded once, with `GetExtensionVersion` done.
pub(crate) struct Extension {
    path: PathBuf,
    proc_: HttpExtensionProcFn,
    terminate: PFN_TERMINATEEXTENSION,
    /// Keeps the code mapped as long as the pointers above are used.
    _lib: libloading::Library,
}

impl Extension {
    /// Loads the library, resolves its exports and calls `GetExtensionVersion`.
    pub(crate) fn load(path: &Path) -> Result<Self, LoadError> {
        let shown = path.display().to_string();
        // SAFETY: loading a library runs its initialisers; loading the
        // extension the user named is the purpose of this program.
        let lib = unsafe { open_library(path) }.map_err(|e| {
            let reason = loader_message(&e, &shown);
            let hint = missing_import_hint(path, &reason);
            LoadError::Open {
                path: shown.clone(),
                reason: reason + hint,
            }
        })?;
        let symbol = |name: &'static str| LoadError::Symbol {
            path: shown.clone(),
            symbol: name,
        };
        // SAFETY: the ISAPI ABI fixes these exports' signatures.
        let (version, proc_, terminate) = unsafe {
            (
                *lib.get::<PFN_GETEXTENSIONVERSION>(c"GetExtensionVersion")
                    .map_err(|_| symbol("GetExtensionVersion"))?,
                *lib.get::<PFN_HTTPEXTENSIONPROC>(c"HttpExtensionProc")
                    .map_err(|_| symbol("HttpExtensionProc"))?,
                lib.get::<PFN_TERMINATEEXTENSION>(c"TerminateExtension")
                    .ok()
                    .and_then(|s| *s),
            )
        };
        let version = version.ok_or_else(|| symbol("GetExtensionVersion"))?;
        let proc_ = proc_.ok_or_else(|| symbol("HttpExtensionProc"))?;
        let mut info = HSE_VERSION_INFO {
            dwExtensionVersion: 0,
            lpszExtensionDesc: [0; HSE_MAX_EXT_DLL_NAME_LEN as usize],
        };
        set_last_error(0);
        // SAFETY: `info` is a valid, writable HSE_VERSION_INFO for the call.
        if unsafe { version(&mut info) } == FALSE {
            return Err(LoadError::Refused {
                path: shown,
                code: last_error(),
            });
        }
        let bytes: Vec<u8> = info
            .lpszExtensionDesc
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        let description = String::from_utf8_lossy(&bytes);
        tracing::info!(path = %shown, description = %description, "loaded ISAPI extension");
        Ok(Extension {
            path: path.to_path_buf(),
            proc_,
            terminate,
            _lib: lib,
        })
    }

    /// Runs `HttpExtensionProc` for a request on the calling (pool) thread;
    /// returns its `HSE_STATUS_*`.
    pub(crate) fn call(&self, ecb: &EcbCell) -> u32 {
        // SAFETY: the ECB is fully initialised and outlives the request: the
        // context owning it is shared in an `Arc` (so the ECB no longer
        // moves) and stays registered until the request finishes.
        unsafe { (self.proc_)(ecb.ptr()) }
    }

    /// Calls `TerminateExtension(HSE_TERM_MUST_UNLOAD)`, if exported.
    pub(crate) fn terminate(&self) {
        let path = self.path.display();
        match self.terminate {
            Some(f) => {
                // SAFETY: the export has the documented signature; no
                // request is in flight.
                let ok = unsafe { f(HSE_TERM_MUST_UNLOAD) } != FALSE;
                tracing::info!(path = %path, ok, "TerminateExtension called");
            }
            None => tracing::debug!(path = %path, "extension has no TerminateExtension"),
        }
    }
}

/// `, last error N` when the extension left one.
fn last_error_note(code: i32) -> String {
    match code {
        0 => String::new(),
        code => format!(", last error {code}"),
    }
}

/// Windows says "module not found" (error 126, `reason`'s end) both for a
/// missing DLL and for a DLL whose own imports are missing; when the file is
/// there, it is the second, and the likely culprit for pyisapie is
/// `python3XX.dll`.
fn missing_import_hint(path: &Path, reason: &str) -> &'static str {
    // libloading keeps the Windows code private; its message ends with
    // std's "(os error N)".
    if cfg!(windows) && reason.ends_with("(os error 126)") && path.is_file() {
        " (the file exists, so a DLL it imports was not found: for pyisapie.dll, the \
         python3XX.dll of the Python it was built for, whose folder must be on PATH)"
    } else {
        ""
    }
}

/// # Safety
/// Loading a library runs arbitrary initialisation code from it.
#[cfg(unix)]
unsafe fn open_library(path: &Path) -> Result<libloading::Library, libloading::Error> {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // SAFETY: forwarded to the caller. RTLD_LOCAL keeps each extension's
    // symbols to itself.
    unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map(Into::into)
}

/// Loads with `LOAD_WITH_ALTERED_SEARCH_PATH`, as Apache's mod_isapi does
/// (through APR): the library's own folder is searched first for the DLLs it
/// imports, so `python3XX.dll` next to `pyisapie.dll` is found wherever the
/// host's .exe is. The flag needs an absolute path.
///
/// # Safety
/// Loading a library runs arbitrary initialisation code from it.
#[cfg(windows)]
unsafe fn open_library(path: &Path) -> Result<libloading::Library, libloading::Error> {
    use libloading::os::windows::{LOAD_WITH_ALTERED_SEARCH_PATH, Library};
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // SAFETY: forwarded to the caller.
    unsafe { Library::load_with_flags(&absolute, LOAD_WITH_ALTERED_SEARCH_PATH) }.map(Into::into)
}

/// The loader's own words for a failed load: the innermost error of
/// libloading's chain (`dlerror()`'s text, or the Windows message with its
/// code), without libloading's "dlopen failed" / "LoadLibraryExW failed"
/// wrapper. `dlerror()` starts with the path, which the caller names already.
fn loader_message(e: &libloading::Error, path: &str) -> String {
    let mut inner: &dyn std::error::Error = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    let text = inner.to_string();
    match text.strip_prefix(path).and_then(|t| t.strip_prefix(": ")) {
        Some(rest) => rest.to_owned(),
        None => text,
    }
}
