//! Every `unsafe` line of the extension lives here.
//!
//! - The three ISAPI exports (`GetExtensionVersion`, `HttpExtensionProc`,
//!   `TerminateExtension`), each behind `ffi_guard!` so that no panic crosses the ABI.
//! - `Ecb`, a safe handle on the `EXTENSION_CONTROL_BLOCK` with the callbacks the
//!   extension uses (ReadClient, WriteClient, GetServerVariable with size probing, and the
//!   ServerSupportFunction requests).
//! - Process set-up: making libpython's symbols global, finding the library's own
//!   directory, starting the interpreter from a `PyConfig`, giving each server thread a
//!   lasting Python thread state, and the per-interpreter dictionary.
//!
//! Errors: ISAPI reports failures through `GetLastError` on Windows. On other systems the
//! host sets `errno` to the same Win32 code (122 `ERROR_INSUFFICIENT_BUFFER`, 1413
//! `ERROR_INVALID_INDEX`, ...) before it returns FALSE; `last_error` reads whichever applies.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_void};
use std::io;
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::{Arc, Condvar, Mutex};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::System::Iis::{
    EXTENSION_CONTROL_BLOCK, HSE_IO_ASYNC, HSE_REQ_CLOSE_CONNECTION, HSE_REQ_IS_KEEP_CONN,
    HSE_REQ_SEND_RESPONSE_HEADER_EX, HSE_REQ_SET_FLUSH_FLAG, HSE_REQ_TRANSMIT_FILE,
    HSE_SEND_HEADER_EX_INFO, HSE_STATUS_ERROR, HSE_TF_INFO, HSE_VERSION_INFO, HSE_VERSION_MAJOR,
    HSE_VERSION_MINOR,
};
use windows_sys::core::BOOL;

#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(size_of::<EXTENSION_CONTROL_BLOCK>() == 192);
    assert!(size_of::<HSE_VERSION_INFO>() == 260);
    assert!(size_of::<HSE_SEND_HEADER_EX_INFO>() == 32);
    assert!(size_of::<HSE_TF_INFO>() == 72);
};

#[cfg(windows)]
mod winstdio;

const TRUE: BOOL = 1;
const FALSE: BOOL = 0;

/// `ERROR_INSUFFICIENT_BUFFER`
pub(crate) const ERROR_INSUFFICIENT_BUFFER: u32 = 122;
/// `ERROR_INVALID_INDEX`
pub(crate) const ERROR_INVALID_INDEX: u32 = 1413;
/// `ERROR_NO_DATA`
pub(crate) const ERROR_NO_DATA: u32 = 232;

/// Runs `$body`, catching any panic: the panic is logged and `$default` returned.
macro_rules! ffi_guard {
    ($name:literal, $default:expr, $body:block) => {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| $body)) {
            Ok(value) => value,
            Err(payload) => {
                crate::log::panic_caught($name, &*payload);
                $default
            }
        }
    };
}

// ---------------------------------------------------------------------------------------
// Exports
// ---------------------------------------------------------------------------------------

/// ISAPI entry point: called once when the server loads the library. Loads the
/// configuration, starts Python and imports the applications. Returns FALSE (and prints why
/// on stderr and in the log) when any of that fails.
///
/// # Safety
/// `version` must be NULL or point to a writable `HSE_VERSION_INFO`.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn GetExtensionVersion(version: *mut HSE_VERSION_INFO) -> BOOL {
    ffi_guard!("GetExtensionVersion", FALSE, {
        let Some(mut version) = NonNull::new(version) else {
            return FALSE;
        };
        match crate::extension::start() {
            Ok(description) => {
                // SAFETY: the server passes a valid, writable HSE_VERSION_INFO (checked non-NULL).
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

/// ISAPI entry point: serves one request. Runs the WSGI application synchronously on the
/// calling server thread.
///
/// # Safety
/// `ecb` must point to a valid `EXTENSION_CONTROL_BLOCK` that stays valid until this
/// function returns (we never return `HSE_STATUS_PENDING`).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn HttpExtensionProc(ecb: *mut EXTENSION_CONTROL_BLOCK) -> u32 {
    ffi_guard!("HttpExtensionProc", HSE_STATUS_ERROR, {
        let Some(ecb) = NonNull::new(ecb) else {
            return HSE_STATUS_ERROR;
        };
        crate::extension::handle(Ecb(ecb))
    })
}

/// ISAPI entry point: the server is about to unload the library. Python is not finalized
/// (other threads of the server may still hold references); logs are flushed.
///
/// # Safety
/// Always safe to call; marked unsafe as an exported ABI function.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn TerminateExtension(flags: u32) -> BOOL {
    ffi_guard!("TerminateExtension", TRUE, {
        crate::extension::terminate(flags);
        TRUE
    })
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// The Win32 error code of the last failed ISAPI callback (errno on Unix, see module docs).
pub(crate) fn last_error() -> u32 {
    let code = io::Error::last_os_error().raw_os_error().unwrap_or(0);
    u32::try_from(code).unwrap_or(0)
}

fn clear_last_error() {
    #[cfg(target_os = "linux")]
    // SAFETY: __errno_location returns this thread's errno slot, always valid to write.
    unsafe {
        *libc::__errno_location() = 0;
    }
    #[cfg(windows)]
    // SAFETY: SetLastError only writes this thread's last-error value.
    unsafe {
        windows_sys::Win32::Foundation::SetLastError(0);
    }
}

/// An `io::Error` for a failed ISAPI call, with the Win32 code in the message.
pub(crate) fn isapi_error(op: &str, code: u32) -> io::Error {
    let (kind, name) = match code {
        87 => (io::ErrorKind::InvalidInput, "ERROR_INVALID_PARAMETER"),
        122 => (io::ErrorKind::InvalidInput, "ERROR_INSUFFICIENT_BUFFER"),
        232 => (io::ErrorKind::BrokenPipe, "ERROR_NO_DATA"),
        1413 => (io::ErrorKind::NotFound, "ERROR_INVALID_INDEX"),
        10053 | 10054 | 64 => (io::ErrorKind::ConnectionReset, "connection reset"),
        _ => (io::ErrorKind::Other, "error"),
    };
    io::Error::new(kind, format!("{op} failed (Win32 error {code}, {name})"))
}

// ---------------------------------------------------------------------------------------
// The ECB
// ---------------------------------------------------------------------------------------

/// A handle on the server's `EXTENSION_CONTROL_BLOCK` for one request.
///
/// Only [`HttpExtensionProc`] creates one. It is valid until `HttpExtensionProc` returns;
/// code that may outlive the request reaches it through `request::Link`, which is cleared
/// before the return.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ecb(NonNull<EXTENSION_CONTROL_BLOCK>);

// SAFETY: ISAPI allows every ECB callback from any thread while the request is live;
// the ECB itself is owned by the server and only read (or written in fields the server
// expects extensions to write) here.
unsafe impl Send for Ecb {}
// SAFETY: as above; concurrent callbacks on one ECB are allowed by the server contract,
// and `Link` serialises ours anyway.
unsafe impl Sync for Ecb {}

impl Ecb {
    fn raw(&self) -> &EXTENSION_CONTROL_BLOCK {
        // SAFETY: the pointer is valid for the request's lifetime (see type docs).
        unsafe { self.0.as_ref() }
    }

    fn cstr_field(ptr: *mut u8) -> &'static [u8] {
        if ptr.is_null() {
            return b"";
        }
        // SAFETY: the server passes NUL-terminated strings valid for the request; the
        // 'static is narrowed by callers, which never keep the slice past the request.
        unsafe { CStr::from_ptr(ptr.cast()) }.to_bytes()
    }

    /// `lpszMethod`.
    pub(crate) fn method(&self) -> &[u8] {
        Self::cstr_field(self.raw().lpszMethod)
    }

    /// `lpszQueryString`.
    pub(crate) fn query_string(&self) -> &[u8] {
        Self::cstr_field(self.raw().lpszQueryString)
    }

    /// `lpszContentType`.
    pub(crate) fn content_type(&self) -> &[u8] {
        Self::cstr_field(self.raw().lpszContentType)
    }

    /// `cbTotalBytes`: the Content-Length, or `u32::MAX` for a chunked (or ≥ 4 GB) body.
    pub(crate) fn total_bytes(&self) -> u32 {
        self.raw().cbTotalBytes
    }

    /// The body bytes the server preloaded (`lpbData[..cbAvailable]`).
    pub(crate) fn preload(&self) -> &[u8] {
        let raw = self.raw();
        if raw.lpbData.is_null() || raw.cbAvailable == 0 {
            return &[];
        }
        // SAFETY: the server guarantees lpbData holds cbAvailable readable bytes.
        unsafe { std::slice::from_raw_parts(raw.lpbData, raw.cbAvailable as usize) }
    }

    /// Records the response status in the ECB (IIS logs it).
    pub(crate) fn set_status_code(&self, code: u16) {
        // SAFETY: dwHttpStatusCode is an extension-writable field of a valid ECB; the write
        // goes through the raw pointer, never through a shared reference.
        unsafe { (*self.0.as_ptr()).dwHttpStatusCode = u32::from(code) };
    }

    /// Reads server variable `name` into `buf` (without the NUL), probing for the size.
    /// Returns `Ok(false)` when the variable is unknown or has no value.
    pub(crate) fn server_variable(&self, name: &CStr, buf: &mut Vec<u8>) -> io::Result<bool> {
        buf.clear();
        self.append_server_variable(name, buf)
    }

    /// Like [`server_variable`](Self::server_variable), but appends the value to `out`,
    /// so that several variables share one allocation.
    pub(crate) fn append_server_variable(
        &self,
        name: &CStr,
        out: &mut Vec<u8>,
    ) -> io::Result<bool> {
        let Some(get) = self.raw().GetServerVariable else {
            return Err(io::Error::other("the server provides no GetServerVariable"));
        };
        let start = out.len();
        out.reserve(256);
        for _ in 0..4 {
            let spare = out.capacity() - start;
            let mut size = u32::try_from(spare).unwrap_or(u32::MAX);
            clear_last_error();
            // SAFETY: `out` has `spare` writable bytes from `start` (its capacity); name is
            // NUL-terminated; ConnID comes from the server for this request.
            let ok = unsafe {
                get(
                    self.raw().ConnID,
                    name.as_ptr().cast_mut().cast(),
                    out.as_mut_ptr().add(start).cast(),
                    &mut size,
                )
            };
            if ok != 0 {
                let written = (size as usize).min(spare);
                // SAFETY: the server initialised `written` bytes from `start`.
                unsafe { out.set_len(start + written) };
                // `size` includes the terminating NUL; tolerate servers that omit it.
                while out.len() > start && out.last() == Some(&0) {
                    out.pop();
                }
                return Ok(true);
            }
            match last_error() {
                ERROR_INSUFFICIENT_BUFFER => {
                    let want = (size as usize).max(spare * 2);
                    out.reserve(want);
                }
                ERROR_INVALID_INDEX | ERROR_NO_DATA => return Ok(false),
                code => return Err(isapi_error("GetServerVariable", code)),
            }
        }
        Err(io::Error::other(
            "GetServerVariable kept asking for a larger buffer",
        ))
    }

    /// `ReadClient`: reads up to `buf.len()` body bytes; `Ok(0)` at the end of the body.
    pub(crate) fn read_client(&self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(read) = self.raw().ReadClient else {
            return Err(io::Error::other("the server provides no ReadClient"));
        };
        let mut size = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        clear_last_error();
        // SAFETY: `buf` has `size` writable bytes; ConnID is this request's.
        let ok = unsafe { read(self.raw().ConnID, buf.as_mut_ptr().cast(), &mut size) };
        if ok == 0 {
            return Err(isapi_error("ReadClient", last_error()));
        }
        Ok((size as usize).min(buf.len()))
    }

    /// `WriteClient` (synchronous), repeated until every byte is written.
    pub(crate) fn write_client(&self, mut data: &[u8]) -> io::Result<()> {
        let Some(write) = self.raw().WriteClient else {
            return Err(io::Error::other("the server provides no WriteClient"));
        };
        while !data.is_empty() {
            let chunk = &data[..data.len().min(u32::MAX as usize)];
            let mut size = chunk.len() as u32;
            clear_last_error();
            // SAFETY: `chunk` is readable for `size` bytes; flags 0 means synchronous.
            let ok = unsafe {
                write(
                    self.raw().ConnID,
                    chunk.as_ptr().cast_mut().cast(),
                    &mut size,
                    0,
                )
            };
            if ok == 0 {
                return Err(isapi_error("WriteClient", last_error()));
            }
            if size == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "WriteClient wrote nothing",
                ));
            }
            data = &data[(size as usize).min(data.len())..];
        }
        Ok(())
    }

    fn support(
        &self,
        request: u32,
        buffer: *mut c_void,
        size: *mut u32,
        data_type: *mut u32,
    ) -> io::Result<()> {
        let Some(ssf) = self.raw().ServerSupportFunction else {
            return Err(io::Error::other(
                "the server provides no ServerSupportFunction",
            ));
        };
        clear_last_error();
        // SAFETY: callers pass the argument shapes the request code documents.
        let ok = unsafe { ssf(self.raw().ConnID, request, buffer, size, data_type) };
        if ok == 0 {
            return Err(isapi_error("ServerSupportFunction", last_error()));
        }
        Ok(())
    }

    /// `HSE_REQ_SEND_RESPONSE_HEADER_EX`. `status` is like `200 OK`; `headers` is the
    /// header block ending in `\r\n\r\n`.
    pub(crate) fn send_response_header_ex(
        &self,
        status: &CStr,
        headers: &CStr,
        keep_conn: bool,
    ) -> io::Result<()> {
        let mut info = HSE_SEND_HEADER_EX_INFO {
            pszStatus: status.as_ptr().cast(),
            pszHeader: headers.as_ptr().cast(),
            cchStatus: u32::try_from(status.count_bytes()).unwrap_or(u32::MAX),
            cchHeader: u32::try_from(headers.count_bytes()).unwrap_or(u32::MAX),
            fKeepConn: if keep_conn { TRUE } else { FALSE },
        };
        self.support(
            HSE_REQ_SEND_RESPONSE_HEADER_EX,
            (&raw mut info).cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    }

    /// `HSE_REQ_IS_KEEP_CONN`: whether the connection can be kept open after this response.
    pub(crate) fn is_keep_conn(&self) -> bool {
        let mut keep: BOOL = 0;
        self.support(
            HSE_REQ_IS_KEEP_CONN,
            (&raw mut keep).cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
        .is_ok()
            && keep != 0
    }

    /// `HSE_REQ_SET_FLUSH_FLAG` (the BOOL is passed by value, as IIS expects).
    pub(crate) fn set_flush_flag(&self, flush: bool) -> io::Result<()> {
        let value = usize::from(flush) as *mut c_void;
        self.support(
            HSE_REQ_SET_FLUSH_FLAG,
            value,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    }

    /// `HSE_REQ_CLOSE_CONNECTION`: close the connection once the response is done.
    pub(crate) fn close_connection(&self) -> io::Result<()> {
        self.support(
            HSE_REQ_CLOSE_CONNECTION,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    }

    /// `HSE_REQ_TRANSMIT_FILE` of `length` bytes of `file` from `offset`, asynchronously (IIS
    /// requires it), blocking the calling thread until the completion arrives. Call it with
    /// the GIL released. Returns the bytes the server reports sent.
    pub(crate) fn transmit_file(&self, file: RawFile, offset: u32, length: u32) -> io::Result<u32> {
        let completion = Arc::new(Completion::default());
        let context = Arc::into_raw(Arc::clone(&completion))
            .cast_mut()
            .cast::<c_void>();
        let mut info = HSE_TF_INFO {
            pfnHseIO: Some(on_io_completion),
            pContext: context,
            hFile: file.0,
            pszStatusCode: std::ptr::null(),
            BytesToWrite: length,
            Offset: offset,
            pHead: std::ptr::null_mut(),
            HeadLength: 0,
            pTail: std::ptr::null_mut(),
            TailLength: 0,
            dwFlags: HSE_IO_ASYNC,
        };
        let started = self.support(
            HSE_REQ_TRANSMIT_FILE,
            (&raw mut info).cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        if let Err(e) = started {
            // SAFETY: the server refused the request, so it will never call the completion:
            // take back the reference handed over with `into_raw`.
            drop(unsafe { Arc::from_raw(context.cast::<Completion>()) });
            return Err(e);
        }
        let (bytes, error) = completion.wait();
        if error != 0 {
            return Err(isapi_error("TRANSMIT_FILE", error));
        }
        Ok(bytes)
    }
}

/// An OS file handle for TRANSMIT_FILE.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawFile(HANDLE);

// SAFETY: a handle value is just a number; the file stays open while the caller holds the
// Python file object.
unsafe impl Send for RawFile {}
// SAFETY: as above: copying the number between threads is harmless.
unsafe impl Sync for RawFile {}

impl RawFile {
    /// The file for `handle` as `boot.regular_file` reports it: the descriptor itself on
    /// Unix (the host borrows it as a descriptor), the OS `HANDLE` on Windows.
    ///
    /// On Windows the handle must come from Python's own C runtime
    /// (`msvcrt.get_osfhandle`): a descriptor is an index into one CRT's private table,
    /// and python.org's CPython uses the UCRT while this library (built by mingw) has
    /// msvcrt.dll, so looking Python's descriptor up here would name another file or none.
    pub(crate) fn from_handle(handle: i64) -> Option<Self> {
        let value = isize::try_from(handle).ok()?;
        // -1 is INVALID_HANDLE_VALUE (and never a descriptor); 0 is no handle on Windows.
        if value == -1 || (cfg!(windows) && value == 0) || (cfg!(not(windows)) && value < 0) {
            return None;
        }
        Some(Self(value as HANDLE))
    }
}

#[derive(Default)]
struct Completion {
    result: Mutex<Option<(u32, u32)>>,
    ready: Condvar,
}

impl Completion {
    fn wait(&self) -> (u32, u32) {
        let mut guard = self.result.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(result) = *guard {
                return result;
            }
            guard = self.ready.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// `PFN_HSE_IO_COMPLETION` for TRANSMIT_FILE: wakes the waiting request thread.
unsafe extern "system" fn on_io_completion(
    _ecb: *mut EXTENSION_CONTROL_BLOCK,
    context: *mut c_void,
    bytes: u32,
    error: u32,
) {
    ffi_guard!("IO completion", (), {
        if context.is_null() {
            return;
        }
        // SAFETY: `context` is the `Arc::into_raw` pointer from `transmit_file`; the server
        // calls the completion once, so this takes back exactly that one reference.
        let completion = unsafe { Arc::from_raw(context.cast::<Completion>()) };
        *completion.result.lock().unwrap_or_else(|e| e.into_inner()) = Some((bytes, error));
        completion.ready.notify_all();
    })
}

// ---------------------------------------------------------------------------------------
// Process set-up
// ---------------------------------------------------------------------------------------

/// The directory holding this library (for `pyisapie.toml`).
pub(crate) fn library_dir() -> Option<PathBuf> {
    let path = module_path(library_dir as *const c_void)?;
    #[cfg(unix)]
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    crate::paths::parent_native(&path)
}

/// The file of the loaded Python library (`python3XX.dll`, `libpython3.X.so`), for
/// messages: on Windows, Python looks for its standard library relative to it.
pub(crate) fn python_library() -> Option<PathBuf> {
    #[cfg(windows)]
    {
        // A function's address here is the import thunk inside this DLL: ask for the
        // loaded module by the name this library imports instead.
        let name: Vec<u16> = env!("PYISAPIE_LIBPYTHON")
            .encode_utf16()
            .chain([0])
            .collect();
        // SAFETY: `name` is NUL-terminated; GetModuleHandleW only looks up loaded modules
        // and does not change reference counts.
        let module =
            unsafe { windows_sys::Win32::System::LibraryLoader::GetModuleHandleW(name.as_ptr()) };
        if module.is_null() {
            return None;
        }
        module_file(module)
    }
    #[cfg(not(windows))]
    {
        module_path(pyo3::ffi::Py_IsInitialized as *const c_void)
    }
}

/// The file of the loaded module (executable or library) that holds `addr`.
fn module_path(addr: *const c_void) -> Option<PathBuf> {
    #[cfg(unix)]
    {
        let mut info: libc::Dl_info = unsafe_zeroed_dl_info();
        // SAFETY: dladdr only inspects the loaded-object list; `info` is writable.
        let found = unsafe { libc::dladdr(addr, &mut info) };
        if found == 0 || info.dli_fname.is_null() {
            return None;
        }
        // SAFETY: dli_fname is a NUL-terminated path owned by the loader.
        let name = unsafe { CStr::from_ptr(info.dli_fname) };
        use std::os::unix::ffi::OsStrExt;
        Some(PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes())))
    }
    #[cfg(windows)]
    {
        use windows_sys::Win32::System::LibraryLoader::{
            GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS, GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
            GetModuleHandleExW,
        };
        let mut module = std::ptr::null_mut();
        // SAFETY: looks up the module containing `addr` without changing its reference
        // count; `module` is writable.
        let ok = unsafe {
            GetModuleHandleExW(
                GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS
                    | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                addr.cast::<u16>(),
                &mut module,
            )
        };
        if ok == 0 {
            return None;
        }
        module_file(module)
    }
}

/// The file of a loaded module.
#[cfg(windows)]
fn module_file(module: windows_sys::Win32::Foundation::HMODULE) -> Option<PathBuf> {
    use std::os::windows::ffi::OsStringExt;
    let mut buf = vec![0u16; 32768];
    // SAFETY: buf is writable for its length; `module` is a loaded module.
    let n = unsafe {
        windows_sys::Win32::System::LibraryLoader::GetModuleFileNameW(
            module,
            buf.as_mut_ptr(),
            buf.len() as u32,
        )
    } as usize;
    if n == 0 || n >= buf.len() {
        return None;
    }
    Some(PathBuf::from(std::ffi::OsString::from_wide(&buf[..n])))
}

#[cfg(unix)]
fn unsafe_zeroed_dl_info() -> libc::Dl_info {
    // SAFETY: Dl_info is a plain C struct of pointers; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Re-opens libpython with `RTLD_GLOBAL`, so that C extension modules (`math`, `_json`,
/// ...) resolve their `Py*` symbols even when the host loaded us with `RTLD_LOCAL`.
/// Returns the library path on success.
#[cfg(unix)]
pub(crate) fn promote_libpython() -> Result<String, String> {
    let mut info: libc::Dl_info = unsafe_zeroed_dl_info();
    let addr = pyo3::ffi::Py_IsInitialized as *const c_void;
    // SAFETY: dladdr only inspects the loaded-object list; `info` is writable.
    let found = unsafe { libc::dladdr(addr, &mut info) };
    let mut candidates: Vec<std::ffi::CString> = Vec::new();
    if found != 0 && !info.dli_fname.is_null() {
        // SAFETY: dli_fname is a NUL-terminated path owned by the loader.
        candidates.push(unsafe { CStr::from_ptr(info.dli_fname) }.to_owned());
    }
    let built = env!("PYISAPIE_LIBPYTHON");
    if !built.is_empty() {
        if let Ok(name) = std::ffi::CString::new(built) {
            candidates.push(name);
        }
    }
    for name in &candidates {
        // SAFETY: RTLD_NOLOAD never loads anything new: it only changes the flags of an
        // already loaded object (adding RTLD_GLOBAL) and bumps its reference count, which
        // we deliberately leak so the library stays loaded for the process's life.
        let handle = unsafe {
            libc::dlopen(
                name.as_ptr(),
                libc::RTLD_NOW | libc::RTLD_GLOBAL | libc::RTLD_NOLOAD,
            )
        };
        if !handle.is_null() {
            return Ok(name.to_string_lossy().into_owned());
        }
    }
    Err(format!(
        "libpython is not loaded as a shared library (tried {candidates:?}); C extension \
         modules may fail to import"
    ))
}

/// On Windows, symbols are resolved per DLL: nothing to do.
#[cfg(not(unix))]
pub(crate) fn promote_libpython() -> Result<String, String> {
    Ok("not needed on this platform".to_owned())
}

/// Interpreter settings applied through `PyConfig` before start-up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PythonSettings<'a> {
    /// `-O` level.
    pub(crate) optimize: u8,
    /// `sys.dont_write_bytecode` is the negation.
    pub(crate) write_bytecode: bool,
    /// `PyConfig.home` (`PYTHONHOME`), when set.
    pub(crate) home: Option<&'a std::path::Path>,
}

/// Starts the interpreter once for the process (from a `PyConfig`, with Python's signal
/// handlers and C stdio configuration left alone, since we are a guest in the server
/// process) and releases the GIL. Returns `Ok(false)` if Python was already running.
pub(crate) fn initialize_python(settings: PythonSettings<'_>) -> Result<bool, String> {
    use pyo3::ffi;
    // SAFETY: Py_IsInitialized may be called at any time.
    if unsafe { ffi::Py_IsInitialized() } != 0 {
        return Ok(false);
    }
    #[cfg(windows)]
    for note in winstdio::hide_unusable_std_handles() {
        tracing::warn!(target: "pyisapie", "{note}");
    }
    let mut config = std::mem::MaybeUninit::<ffi::PyConfig>::uninit();
    // SAFETY: PyConfig_InitPythonConfig fully initialises the struct it is given.
    unsafe { ffi::PyConfig_InitPythonConfig(config.as_mut_ptr()) };
    // SAFETY: initialised just above.
    let mut config = unsafe { config.assume_init() };
    config.install_signal_handlers = 0;
    config.parse_argv = 0;
    config.configure_c_stdio = 0;
    config.optimization_level = i32::from(settings.optimize);
    config.write_bytecode = i32::from(settings.write_bytecode);
    if let Some(home) = settings.home {
        let config_ptr = &raw mut config;
        let status = set_home(config_ptr, home)?;
        // SAFETY: PyStatus_Exception only inspects the status value.
        if unsafe { ffi::PyStatus_Exception(status) } != 0 {
            // SAFETY: `config` was initialised and is not used again.
            unsafe { ffi::PyConfig_Clear(&mut config) };
            return Err("cannot set python_home".to_owned());
        }
    }
    // SAFETY: `config` is a valid, initialised PyConfig; this is the process's first
    // initialisation (checked above); the config is cleared afterwards in both cases.
    let status = unsafe { ffi::Py_InitializeFromConfig(&config) };
    // SAFETY: `config` was initialised by PyConfig_InitPythonConfig and is not used again.
    unsafe { ffi::PyConfig_Clear(&mut config) };
    // SAFETY: PyStatus_Exception only inspects the status value.
    if unsafe { ffi::PyStatus_Exception(status) } != 0 {
        let message = if status.err_msg.is_null() {
            "unknown error".to_owned()
        } else {
            // SAFETY: err_msg is a static NUL-terminated string from CPython.
            unsafe { CStr::from_ptr(status.err_msg) }
                .to_string_lossy()
                .into_owned()
        };
        return Err(format!("Python failed to start: {message}"));
    }
    // SAFETY: this thread holds the GIL right after initialisation; release it so that
    // server threads can attach. The main thread state stays bound to this thread.
    unsafe { ffi::PyEval_SaveThread() };
    Ok(true)
}

/// Sets `PyConfig.home`: from UTF-16 on Windows (any path), from the path's bytes on Unix
/// (decoded as Python decodes file names).
fn set_home(
    config: *mut pyo3::ffi::PyConfig,
    home: &std::path::Path,
) -> Result<pyo3::ffi::PyStatus, String> {
    #[cfg(windows)]
    {
        use std::os::windows::ffi::OsStrExt;
        let wide: Vec<u16> = home.as_os_str().encode_wide().chain([0]).collect();
        if wide[..wide.len() - 1].contains(&0) {
            return Err("python_home contains a NUL character".to_owned());
        }
        // SAFETY: `config` points to an initialised PyConfig (raw pointers only, no
        // overlapping references); `wide` is NUL-terminated UTF-16, which is wchar_t on
        // Windows, and only read during the call (PyConfig copies it).
        Ok(unsafe {
            pyo3::ffi::PyConfig_SetString(config, &raw mut (*config).home, wide.as_ptr().cast())
        })
    }
    #[cfg(not(windows))]
    {
        use std::os::unix::ffi::OsStrExt;
        let bytes = std::ffi::CString::new(home.as_os_str().as_bytes())
            .map_err(|_| "python_home contains a NUL byte".to_owned())?;
        // SAFETY: `config` points to an initialised PyConfig (raw pointers only);
        // `bytes` is NUL-terminated and only read during the call (PyConfig copies it,
        // decoding with the locale encoding, as for any file name).
        Ok(unsafe {
            pyo3::ffi::PyConfig_SetBytesString(config, &raw mut (*config).home, bytes.as_ptr())
        })
    }
}

thread_local! {
    static ADOPTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Gives the calling server thread a Python thread state that lasts as long as the thread,
/// so that each request's `Python::attach` reuses it instead of creating and destroying
/// one. Must be called without the GIL held (as at the start of `HttpExtensionProc`).
pub(crate) fn adopt_thread() {
    if ADOPTED.get() {
        return;
    }
    // SAFETY: Python is initialised (checked by the caller, which only runs after a
    // successful start) and this thread is not attached. PyGILState_Ensure creates the
    // thread's state with a use count of one; PyEval_SaveThread releases the GIL without
    // dropping that count, so later Ensure/Release pairs reuse the state.
    unsafe {
        pyo3::ffi::PyGILState_Ensure();
        pyo3::ffi::PyEval_SaveThread();
    }
    ADOPTED.set(true);
}

/// The current interpreter's private dictionary (`PyInterpreterState_GetDict`): the home of
/// per-interpreter state, never shared between interpreters.
pub(crate) fn interpreter_dict(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    // SAFETY: we hold the GIL (the `py` token), so the current interpreter exists.
    // GetDict returns a borrowed reference (or NULL without an exception set).
    let dict =
        unsafe { pyo3::ffi::PyInterpreterState_GetDict(pyo3::ffi::PyInterpreterState_Get()) };
    if dict.is_null() {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "no per-interpreter dictionary",
        ));
    }
    // SAFETY: `dict` is a valid borrowed reference to a dict, kept alive by the interpreter.
    let any = unsafe { Bound::from_borrowed_ptr(py, dict) };
    Ok(any.cast_into::<PyDict>()?)
}

/// Decodes bytes as latin-1 into a native string (PEP 3333's rule for the environ).
pub(crate) fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyString>> {
    let len = pyo3::ffi::Py_ssize_t::try_from(bytes.len())
        .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("string too long"))?;
    // SAFETY: the pointer and length describe a readable buffer; errors=NULL means strict,
    // which latin-1 decoding never triggers. The result is a new reference or NULL with an
    // exception set, which from_owned_ptr_or_err handles.
    let obj = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            pyo3::ffi::PyUnicode_DecodeLatin1(bytes.as_ptr().cast(), len, std::ptr::null()),
        )
    }?;
    // SAFETY: PyUnicode_DecodeLatin1 returns a str.
    Ok(unsafe { obj.cast_into_unchecked::<PyString>() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a test executable the module holding `library_dir` is the executable itself; on
    /// Windows this goes through `GetModuleHandleExW` and `GetModuleFileNameW` (run it
    /// under Wine, see `ci/windows.sh`).
    #[test]
    fn library_dir_is_the_folder_of_the_module() {
        let dir = library_dir().expect("the module's folder");
        let exe = std::env::current_exe().unwrap();
        let canonical = |p: &std::path::Path| std::fs::canonicalize(p).unwrap();
        assert_eq!(canonical(&dir), canonical(exe.parent().unwrap()));
    }

    #[test]
    fn transmit_file_handles() {
        assert!(RawFile::from_handle(-1).is_none());
        assert!(RawFile::from_handle(3).is_some());
        assert_eq!(RawFile::from_handle(0).is_none(), cfg!(windows));
        assert_eq!(RawFile::from_handle(-2).is_none(), cfg!(not(windows)));
    }
}
