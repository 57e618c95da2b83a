//! The ISAPI ABI: every line of unsafe code in the host.
//!
//! This module loads extension libraries, builds the
//! `EXTENSION_CONTROL_BLOCK`, and implements the four callbacks IIS hands an
//! extension: [`get_server_variable`], [`read_client`], [`write_client`] and
//! [`server_support_function`]. Each callback turns its raw arguments into
//! safe values and calls a method of [`RequestCtx`]; the `HSE_REQ_*` logic
//! lives in [`crate::ssf`].
//!
//! Errors go back the Win32 way: `SetLastError` on Windows; on other systems
//! the Win32 code is stored in `errno` before the callback returns FALSE.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_void};
use std::hash::{BuildHasherDefault, Hasher};
use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, RwLock};

use windows_sys::Win32::System::Iis::{
    EXTENSION_CONTROL_BLOCK, HCONN, HSE_CUSTOM_ERROR_INFO, HSE_RESPONSE_VECTOR,
    HSE_SEND_HEADER_EX_INFO, HSE_TF_INFO, HSE_URL_MAPEX_INFO, HSE_VECTOR_ELEMENT, HSE_VERSION_INFO,
};
use windows_sys::core::BOOL;

use crate::request::{RequestCtx, win32};
use crate::ssf::{self, FileRange, Piece, SsfError};
use crate::vars::RequestInfo;

pub(crate) use windows_sys::Win32::System::Iis::{HSE_STATUS_ERROR, HSE_STATUS_PENDING};

const _: () = assert!(size_of::<EXTENSION_CONTROL_BLOCK>() == 192 || size_of::<usize>() != 8);
const _: () = assert!(size_of::<HSE_TF_INFO>() == 72 || size_of::<usize>() != 8);
const _: () = assert!(size_of::<HSE_SEND_HEADER_EX_INFO>() == 32 || size_of::<usize>() != 8);
const _: () = assert!(size_of::<HSE_URL_MAPEX_INFO>() == 280);
const _: () = assert!(size_of::<HSE_VECTOR_ELEMENT>() == 32 || size_of::<usize>() != 8);
const _: () = assert!(size_of::<HSE_RESPONSE_VECTOR>() == 40 || size_of::<usize>() != 8);
const _: () = assert!(size_of::<HSE_VERSION_INFO>() == 260);

const TRUE: BOOL = 1;
const FALSE: BOOL = 0;

/// `HSE_VERSION`: major 8, minor 0.
const HSE_VERSION: u32 = 8 << 16;

type HttpExtensionProcFn = unsafe extern "system" fn(*mut EXTENSION_CONTROL_BLOCK) -> u32;
type GetExtensionVersionFn = unsafe extern "system" fn(*mut HSE_VERSION_INFO) -> BOOL;
type TerminateExtensionFn = unsafe extern "system" fn(u32) -> BOOL;
type CompletionFn = unsafe extern "system" fn(*mut EXTENSION_CONTROL_BLOCK, *mut c_void, u32, u32);

/// Why an extension library could not be started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    /// The system loader refused the library; `reason` is its own message
    /// (`dlerror()`, or the Windows error text and code).
    #[error("cannot load ISAPI extension {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("ISAPI extension {path} does not export {symbol}")]
    Symbol { path: String, symbol: &'static str },
    #[error("ISAPI extension {path}: GetExtensionVersion returned FALSE (error {code})")]
    Refused { path: String, code: i32 },
}

/// A loaded extension library and its entry points.
pub(crate) struct ExtensionLib {
    proc_: HttpExtensionProcFn,
    terminate: Option<TerminateExtensionFn>,
    /// Keeps the code mapped as long as the pointers above are used.
    _lib: libloading::Library,
}

impl ExtensionLib {
    /// Loads a library, resolves its exports and calls `GetExtensionVersion`.
    /// Returns the library and the extension's description.
    pub(crate) fn load(path: &Path) -> Result<(Self, String), LoadError> {
        let shown = path.display().to_string();
        // SAFETY: loading a library runs its initialisers; loading the
        // extension the user named is the purpose of this program.
        let lib = unsafe { open_library(path) }.map_err(|e| LoadError::Open {
            path: shown.clone(),
            reason: loader_message(&e, &shown),
        })?;
        let symbol = |name: &'static str| LoadError::Symbol {
            path: shown.clone(),
            symbol: name,
        };
        // SAFETY: the ISAPI ABI fixes these exports' signatures.
        let (version, proc_, terminate) = unsafe {
            (
                *lib.get::<GetExtensionVersionFn>(c"GetExtensionVersion")
                    .map_err(|_| symbol("GetExtensionVersion"))?,
                *lib.get::<HttpExtensionProcFn>(c"HttpExtensionProc")
                    .map_err(|_| symbol("HttpExtensionProc"))?,
                lib.get::<TerminateExtensionFn>(c"TerminateExtension")
                    .ok()
                    .map(|s| *s),
            )
        };
        let mut info = HSE_VERSION_INFO {
            dwExtensionVersion: 0,
            lpszExtensionDesc: [0; 256],
        };
        set_last_error(0);
        // SAFETY: `info` is a valid, writable HSE_VERSION_INFO for the call.
        if unsafe { version(&mut info) } == FALSE {
            return Err(LoadError::Refused {
                path: shown,
                code: last_error(),
            });
        }
        let desc = &info.lpszExtensionDesc;
        let bytes: Vec<u8> = desc
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        Ok((
            ExtensionLib {
                proc_,
                terminate,
                _lib: lib,
            },
            String::from_utf8_lossy(&bytes).into_owned(),
        ))
    }

    /// Calls `TerminateExtension(HSE_TERM_MUST_UNLOAD)` if the library has it.
    pub(crate) fn terminate(&self) -> Option<bool> {
        const HSE_TERM_MUST_UNLOAD: u32 = 2;
        let f = self.terminate?;
        // SAFETY: the export has the documented signature; no request is in flight.
        Some(unsafe { f(HSE_TERM_MUST_UNLOAD) } != FALSE)
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

/// Sets the environment for the WSGI sugar. Must run before any thread starts.
pub(crate) fn set_env_before_threads(vars: &[(&str, std::ffi::OsString)]) {
    for (k, v) in vars {
        // SAFETY: called from `main` before the runtime and pools start, so
        // no other thread reads the environment concurrently.
        unsafe { std::env::set_var(k, v) };
    }
}

fn set_last_error(code: u32) {
    #[cfg(windows)]
    // SAFETY: SetLastError has no preconditions.
    unsafe {
        windows_sys::Win32::Foundation::SetLastError(code)
    };
    #[cfg(not(windows))]
    errno::set_errno(errno::Errno(code as i32));
}

fn last_error() -> i32 {
    #[cfg(windows)]
    // SAFETY: GetLastError has no preconditions.
    return unsafe { windows_sys::Win32::Foundation::GetLastError() } as i32;
    #[cfg(not(windows))]
    errno::errno().0
}

/// The ECB and the strings it points to, alive as long as the request.
///
/// The ECB is stored inline: the extension gets its address only once the
/// request context that owns it is shared (in an `Arc`), where it no longer
/// moves.
pub(crate) struct EcbCell {
    ecb: UnsafeCell<EXTENSION_CONTROL_BLOCK>,
    /// The ECB's five strings, each NUL-terminated, in one allocation.
    _strings: Box<[u8]>,
    _preload: Vec<u8>,
}

// SAFETY: the ECB holds pointers into the strings' and the preload's heap
// data, which does not move and is only read through them; the extension's
// writes to `dwHttpStatusCode` and `lpszLogData` are read by the host after
// the extension is done with the request.
unsafe impl Send for EcbCell {}
// SAFETY: as above; shared access never creates Rust references into the ECB.
unsafe impl Sync for EcbCell {}

/// Appends `bytes` up to its first NUL, then a NUL; returns where it starts.
fn push_cstr(out: &mut Vec<u8>, bytes: &[u8]) -> usize {
    let start = out.len();
    out.extend_from_slice(crate::response::trim_nul(bytes));
    out.push(0);
    start
}

impl EcbCell {
    /// Builds the ECB for request `id`; `preload` is the read-ahead body.
    pub(crate) fn new(
        id: usize,
        info: &RequestInfo,
        mut preload: Vec<u8>,
        total_bytes: u32,
    ) -> Self {
        let available = preload.len() as u32;
        if available > 0 {
            preload.push(0); // IIS NUL-terminates lpbData
        }
        let content_type = info
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        let mut buf = Vec::with_capacity(
            info.method.as_str().len()
                + info.query().len()
                + info.url.len()
                + info.physical_path.as_os_str().len()
                + info.url.len()
                + content_type.len()
                + 6,
        );
        let at = [
            push_cstr(&mut buf, info.method.as_str().as_bytes()),
            push_cstr(&mut buf, info.query().as_bytes()),
            push_cstr(&mut buf, &info.url),
            {
                let start = buf.len();
                info.push_path_translated(&mut buf);
                buf.push(0);
                start
            },
            push_cstr(&mut buf, content_type),
            // lpbData when nothing is preloaded: no allocation for a GET.
            push_cstr(&mut buf, b""),
        ];
        let mut strings = buf.into_boxed_slice();
        // The strings' heap data never moves: these pointers stay valid.
        let base = strings.as_mut_ptr();
        let ptr = |i: usize| base.wrapping_add(at[i]);
        let ecb = EXTENSION_CONTROL_BLOCK {
            cbSize: size_of::<EXTENSION_CONTROL_BLOCK>() as u32,
            dwVersion: HSE_VERSION,
            ConnID: id as HCONN,
            dwHttpStatusCode: 200,
            lpszLogData: [0; 80],
            lpszMethod: ptr(0),
            lpszQueryString: ptr(1),
            lpszPathInfo: ptr(2),
            lpszPathTranslated: ptr(3),
            cbTotalBytes: total_bytes,
            cbAvailable: available,
            lpbData: if available > 0 {
                preload.as_mut_ptr()
            } else {
                ptr(5)
            },
            lpszContentType: ptr(4),
            GetServerVariable: Some(get_server_variable),
            WriteClient: Some(write_client),
            ReadClient: Some(read_client),
            ServerSupportFunction: Some(server_support_function),
        };
        EcbCell {
            ecb: UnsafeCell::new(ecb),
            _strings: strings,
            _preload: preload,
        }
    }

    fn ptr(&self) -> *mut EXTENSION_CONTROL_BLOCK {
        self.ecb.get()
    }

    /// `dwHttpStatusCode` as the extension left it.
    pub(crate) fn http_status_code(&self) -> u32 {
        // SAFETY: the pointer is valid and aligned; a volatile read of a u32
        // the extension may have written.
        unsafe { std::ptr::addr_of!((*self.ptr()).dwHttpStatusCode).read_volatile() }
    }

    /// `lpszLogData` as the extension left it.
    pub(crate) fn log_data(&self) -> String {
        // SAFETY: the pointer is valid and aligned; the array is read by value.
        let raw = unsafe { std::ptr::addr_of!((*self.ptr()).lpszLogData).read_volatile() };
        let bytes: Vec<u8> = raw
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Runs `HttpExtensionProc` for a request on the calling (pool) thread.
pub(crate) fn call_extension(lib: &ExtensionLib, ctx: &RequestCtx) -> u32 {
    // SAFETY: the ECB is fully initialised and outlives the request: the
    // context owning it is shared in an `Arc` (so the ECB no longer moves)
    // and stays registered until the request finishes.
    unsafe { (lib.proc_)(ctx.ecb.ptr()) }
}

/// An I/O completion routine and its context, from `HSE_REQ_IO_COMPLETION`.
#[derive(Clone, Copy)]
pub(crate) struct Completion {
    func: CompletionFn,
    context: usize,
}

impl Completion {
    /// Calls the routine; run it on a host thread, never inline.
    pub(crate) fn invoke(self, ctx: &RequestCtx, bytes: u32, error: u32) {
        trace(
            ctx,
            format_args!("IoCompletion(cbIO={bytes}, dwError={error})"),
        );
        // SAFETY: the extension registered this routine for this ECB and
        // must keep the context valid until its I/O completes.
        unsafe { (self.func)(ctx.ecb.ptr(), self.context as *mut c_void, bytes, error) }
    }
}

// ---- The request registry: HCONN -> context -------------------------------

/// Live requests by `HCONN`, sharded so that requests on different threads
/// rarely meet on a lock.
type Shard = RwLock<HashMap<usize, Arc<RequestCtx>, BuildHasherDefault<IdHasher>>>;

/// Hashes a request id (unique, sequential) with one multiplication, rather
/// than SipHash on every callback.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

static REGISTRY: LazyLock<[Shard; 16]> = LazyLock::new(Default::default);

fn shard(id: usize) -> &'static Shard {
    &REGISTRY[id % REGISTRY.len()]
}
static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

/// A fresh connection id for an ECB.
pub(crate) fn next_id() -> usize {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Makes a request reachable from its `HCONN`.
pub(crate) fn register(ctx: Arc<RequestCtx>) {
    shard(ctx.id)
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(ctx.id, ctx);
}

/// After this, callbacks with the request's `HCONN` fail with `ERROR_INVALID_PARAMETER`.
pub(crate) fn unregister(id: usize) {
    shard(id)
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
}

fn lookup(hconn: HCONN) -> Option<Arc<RequestCtx>> {
    let id = hconn as usize;
    shard(id)
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&id)
        .cloned()
}

fn trace(ctx: &RequestCtx, what: std::fmt::Arguments<'_>) {
    if ctx.shared.cfg.trace_callbacks {
        tracing::info!(target: "isapi::trace", request = ctx.id, "{what}");
    }
}

/// Runs a callback body: a panic or a Win32 error becomes FALSE with the
/// error code set; a stale `HCONN` is `ERROR_INVALID_PARAMETER`.
fn callback(
    name: &'static str,
    hconn: HCONN,
    f: impl FnOnce(&Arc<RequestCtx>) -> Result<(), u32>,
) -> BOOL {
    let Some(ctx) = lookup(hconn) else {
        tracing::warn!(
            callback = name,
            hconn = hconn as usize,
            "callback for a finished or unknown request (HCONN)"
        );
        set_last_error(win32::ERROR_INVALID_PARAMETER);
        return FALSE;
    };
    match catch_unwind(AssertUnwindSafe(|| f(&ctx))) {
        Ok(Ok(())) => TRUE,
        Ok(Err(code)) => {
            trace(&ctx, format_args!("{name} -> FALSE (error {code})"));
            set_last_error(code);
            FALSE
        }
        Err(_) => {
            tracing::error!(
                callback = name,
                request = ctx.id,
                "host panicked inside an ISAPI callback"
            );
            set_last_error(win32::ERROR_INVALID_PARAMETER);
            FALSE
        }
    }
}

/// Reads a NUL-terminated string; NULL is `None`.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string.
unsafe fn opt_cstr<'a>(p: *const u8) -> Option<&'a [u8]> {
    // SAFETY: guaranteed by the caller.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p as *const c_char) }.to_bytes())
}

/// Reads a string with a length that may count a NUL; length 0 means NUL-terminated.
///
/// # Safety
/// `p` is NULL, or valid for `len` bytes, or NUL-terminated when `len` is 0.
unsafe fn counted_str<'a>(p: *const u8, len: u32) -> Option<&'a [u8]> {
    if p.is_null() {
        return None;
    }
    if len == 0 {
        // SAFETY: guaranteed by the caller.
        return unsafe { opt_cstr(p) };
    }
    // SAFETY: guaranteed by the caller.
    let s = unsafe { std::slice::from_raw_parts(p, len as usize) };
    Some(crate::response::trim_nul(s))
}

/// Writes `value` plus a NUL into a caller's buffer, following the
/// size-probing protocol: too small sets `*size` to the size needed.
///
/// # Safety
/// `size` is valid; `buf` is NULL or valid for `*size` bytes.
unsafe fn write_sized(
    value: &[u8],
    nul: usize,
    buf: *mut c_void,
    size: *mut u32,
) -> Result<(), u32> {
    let needed = (value.len() + nul) as u32;
    // SAFETY: `size` is valid (caller).
    let have = unsafe { *size };
    if buf.is_null() || have < needed {
        // SAFETY: as above.
        unsafe { *size = needed };
        return Err(win32::ERROR_INSUFFICIENT_BUFFER);
    }
    // SAFETY: `buf` holds at least `needed` bytes (checked above).
    unsafe {
        std::ptr::copy_nonoverlapping(value.as_ptr(), buf as *mut u8, value.len());
        std::ptr::write_bytes((buf as *mut u8).add(value.len()), 0, nul);
        *size = needed;
    }
    Ok(())
}

// ---- The four callbacks ----------------------------------------------------

/// `GetServerVariable(hConn, lpszVariableName, lpvBuffer, lpdwSize)`.
pub(crate) unsafe extern "system" fn get_server_variable(
    hconn: HCONN,
    name: *const u8,
    buf: *mut c_void,
    size: *mut u32,
) -> BOOL {
    callback("GetServerVariable", hconn, |ctx| {
        if name.is_null() || size.is_null() {
            return Err(win32::ERROR_INVALID_PARAMETER);
        }
        // SAFETY: the extension passes a NUL-terminated name.
        let name = unsafe { CStr::from_ptr(name as *const c_char) }.to_bytes();
        let value = ctx.info.get(name).map_err(|_| {
            trace(
                ctx,
                format_args!("GetServerVariable({}) -> unknown", name.escape_ascii()),
            );
            win32::ERROR_INVALID_INDEX
        })?;
        let nul = if name.len() > 8 && name[..8].eq_ignore_ascii_case(b"UNICODE_") {
            2
        } else {
            1
        };
        // SAFETY: `size` is valid (checked non-NULL above).
        let offered = unsafe { *size };
        // SAFETY: `size` is valid and `buf` is NULL or holds `*size` bytes (ABI).
        let result = unsafe { write_sized(&value, nul, buf, size) };
        let needed = value.len() + nul;
        match result {
            Ok(()) => trace(
                ctx,
                format_args!(
                    "GetServerVariable({}, size={offered}) -> {needed} bytes",
                    name.escape_ascii()
                ),
            ),
            Err(_) => trace(
                ctx,
                format_args!(
                    "GetServerVariable({}, size={offered}) -> needs {needed} bytes",
                    name.escape_ascii()
                ),
            ),
        }
        result
    })
}

/// `ReadClient(hConn, lpvBuffer, lpdwSize)`.
pub(crate) unsafe extern "system" fn read_client(
    hconn: HCONN,
    buf: *mut c_void,
    size: *mut u32,
) -> BOOL {
    callback("ReadClient", hconn, |ctx| {
        if buf.is_null() || size.is_null() {
            return Err(win32::ERROR_INVALID_PARAMETER);
        }
        // SAFETY: `buf` holds `*size` writable bytes (ABI).
        let slice = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, *size as usize) };
        let asked = slice.len();
        let result = ctx.read_client(slice);
        let n = result.unwrap_or(0);
        // SAFETY: `size` is valid.
        unsafe { *size = n as u32 };
        trace(ctx, format_args!("ReadClient(size={asked}) -> {n} bytes"));
        result.map(|_| ())
    })
}

/// `WriteClient(hConn, Buffer, lpdwBytes, dwReserved)`; `HSE_IO_ASYNC` completes on an I/O thread.
pub(crate) unsafe extern "system" fn write_client(
    hconn: HCONN,
    buf: *mut c_void,
    bytes: *mut u32,
    flags: u32,
) -> BOOL {
    callback("WriteClient", hconn, |ctx| {
        if bytes.is_null() {
            return Err(win32::ERROR_INVALID_PARAMETER);
        }
        // SAFETY: `bytes` is valid.
        let len = unsafe { *bytes } as usize;
        if buf.is_null() && len > 0 {
            return Err(win32::ERROR_INVALID_PARAMETER);
        }
        let data: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: `buf` holds `len` readable bytes (ABI).
            unsafe { std::slice::from_raw_parts(buf as *const u8, len) }
        };
        trace(
            ctx,
            format_args!("WriteClient(bytes={len}, flags={flags:#x})"),
        );
        ssf::write_client(ctx, data, flags)
    })
}

/// `ServerSupportFunction(hConn, dwHSERequest, lpvBuffer, lpdwSize, lpdwDataType)`.
pub(crate) unsafe extern "system" fn server_support_function(
    hconn: HCONN,
    request: u32,
    buf: *mut c_void,
    size: *mut u32,
    data_type: *mut u32,
) -> BOOL {
    callback("ServerSupportFunction", hconn, |ctx| {
        let name = ssf::request_name(request);
        trace(ctx, format_args!("ServerSupportFunction({name}={request})"));
        // SAFETY: each arm reads the arguments as the ABI defines them for
        // that request code; the extension guarantees their validity.
        let result = unsafe { dispatch_ssf(ctx, request, buf, size, data_type) };
        result.map_err(|e| match e {
            SsfError::Unsupported => {
                ssf::log_unsupported_once(request);
                win32::ERROR_INVALID_PARAMETER
            }
            SsfError::Win32(code) => code,
        })
    })
}

/// Decodes one `ServerSupportFunction` call.
///
/// # Safety
/// The pointers are as the ABI defines them for `request`.
unsafe fn dispatch_ssf(
    ctx: &Arc<RequestCtx>,
    request: u32,
    buf: *mut c_void,
    size: *mut u32,
    data_type: *mut u32,
) -> Result<(), SsfError> {
    use windows_sys::Win32::System::Iis as iis;
    let invalid = SsfError::Win32(win32::ERROR_INVALID_PARAMETER);
    // SAFETY: forwarded from the caller: each arm reads the pointers as the
    // ABI defines them for its request code.
    unsafe {
        match request {
            iis::HSE_REQ_SEND_URL_REDIRECT_RESP | iis::HSE_REQ_SEND_URL => {
                let url = opt_cstr(buf as *const u8).ok_or(invalid)?;
                ssf::redirect(ctx, url)
            }
            iis::HSE_REQ_SEND_RESPONSE_HEADER => {
                let status = opt_cstr(buf as *const u8);
                let headers = opt_cstr(data_type as *const u8).unwrap_or_default();
                ssf::send_response_header(ctx, status, headers, true)
            }
            iis::HSE_REQ_SEND_RESPONSE_HEADER_EX => {
                let info = (buf as *const HSE_SEND_HEADER_EX_INFO)
                    .as_ref()
                    .ok_or(invalid)?;
                let status = counted_str(info.pszStatus, info.cchStatus);
                let headers = counted_str(info.pszHeader, info.cchHeader).unwrap_or_default();
                ssf::send_response_header(ctx, status, headers, info.fKeepConn != FALSE)
            }
            iis::HSE_REQ_DONE_WITH_SESSION => {
                let status = (buf as *const u32).as_ref().copied();
                ssf::done_with_session(ctx, status);
                Ok(())
            }
            iis::HSE_REQ_MAP_URL_TO_PATH => {
                if buf.is_null() || size.is_null() {
                    return Err(invalid);
                }
                let url = opt_cstr(buf as *const u8).unwrap_or_default().to_vec();
                let path = ssf::map_url(ctx, &url);
                write_sized(path.as_bytes(), 1, buf, size).map_err(SsfError::Win32)
            }
            iis::HSE_REQ_MAP_URL_TO_PATH_EX => {
                // Extensions often pass info.lpszPath as the URL: copy it
                // before taking the output structure mutably.
                let url = opt_cstr(buf as *const u8).ok_or(invalid)?.to_vec();
                let info = (data_type as *mut HSE_URL_MAPEX_INFO)
                    .as_mut()
                    .ok_or(invalid)?;
                let m = ssf::map_url_ex(ctx, &url);
                if m.path.len() >= info.lpszPath.len() {
                    return Err(SsfError::Win32(win32::ERROR_INSUFFICIENT_BUFFER));
                }
                info.lpszPath = [0; 260];
                for (d, s) in info.lpszPath.iter_mut().zip(m.path.bytes()) {
                    *d = s as _;
                }
                info.dwFlags = m.flags;
                info.cchMatchingPath = m.matching_path;
                info.cchMatchingURL = m.matching_url;
                info.dwReserved1 = 0;
                info.dwReserved2 = 0;
                if let Some(size) = size.as_mut() {
                    *size = m.path.len() as u32 + 1;
                }
                Ok(())
            }
            iis::HSE_APPEND_LOG_PARAMETER => {
                let param = opt_cstr(buf as *const u8).ok_or(invalid)?;
                ctx.append_log(&String::from_utf8_lossy(param));
                Ok(())
            }
            iis::HSE_REQ_IO_COMPLETION => {
                let func: Option<CompletionFn> =
                    std::mem::transmute::<*mut c_void, Option<CompletionFn>>(buf);
                ctx.set_completion(func.map(|func| Completion {
                    func,
                    context: data_type as usize,
                }));
                Ok(())
            }
            iis::HSE_REQ_ASYNC_READ_CLIENT => {
                if buf.is_null() || size.is_null() {
                    return Err(invalid);
                }
                let flags = data_type.as_ref().copied().unwrap_or(0);
                let target = RawBuf {
                    ptr: buf as *mut u8,
                    len: *size as usize,
                };
                ssf::async_read_client(ctx, target, flags)
            }
            iis::HSE_REQ_TRANSMIT_FILE => {
                let tf = (buf as *const HSE_TF_INFO).as_ref().ok_or(invalid)?;
                let completion = tf.pfnHseIO.map(|func| Completion {
                    func,
                    context: tf.pContext as usize,
                });
                let head = RawSlice::new(tf.pHead as *const u8, tf.HeadLength);
                let tail = RawSlice::new(tf.pTail as *const u8, tf.TailLength);
                let file = FileRange {
                    handle: tf.hFile as isize,
                    offset: tf.Offset as u64,
                    len: tf.BytesToWrite as u64,
                };
                let status = opt_cstr(tf.pszStatusCode).map(<[u8]>::to_vec);
                ssf::transmit_file(
                    ctx,
                    ssf::Transmit {
                        flags: tf.dwFlags,
                        status,
                        head,
                        file,
                        tail,
                        completion,
                    },
                )
            }
            iis::HSE_REQ_VECTOR_SEND => {
                let v = (buf as *const HSE_RESPONSE_VECTOR)
                    .as_ref()
                    .ok_or(invalid)?;
                let mut pieces = Vec::with_capacity(v.nElementCount as usize);
                if v.nElementCount > 0 {
                    if v.lpElementArray.is_null() {
                        return Err(invalid);
                    }
                    for e in std::slice::from_raw_parts(v.lpElementArray, v.nElementCount as usize)
                    {
                        pieces.push(match e.ElementType {
                            iis::HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER => {
                                let base =
                                    (e.pvContext as *const u8).wrapping_add(e.cbOffset as usize);
                                Piece::Memory(RawSlice {
                                    ptr: base,
                                    len: e.cbSize as usize,
                                })
                            }
                            iis::HSE_VECTOR_ELEMENT_TYPE_FILE_HANDLE => Piece::File(FileRange {
                                handle: e.pvContext as isize,
                                offset: e.cbOffset,
                                len: e.cbSize,
                            }),
                            _ => return Err(invalid),
                        });
                    }
                }
                let status = opt_cstr(v.pszStatus).map(<[u8]>::to_vec);
                let headers = opt_cstr(v.pszHeaders).map(<[u8]>::to_vec);
                ssf::vector_send(ctx, v.dwFlags, status, headers, pieces)
            }
            iis::HSE_REQ_IS_KEEP_CONN | iis::HSE_REQ_IS_CONNECTED => {
                let out = (buf as *mut BOOL).as_mut().ok_or(invalid)?;
                let yes = if request == iis::HSE_REQ_IS_KEEP_CONN {
                    ctx.is_keep_conn()
                } else {
                    ctx.is_connected()
                };
                *out = if yes { TRUE } else { FALSE };
                Ok(())
            }
            iis::HSE_REQ_CLOSE_CONNECTION => {
                ctx.conn.request_close();
                Ok(())
            }
            iis::HSE_REQ_ABORTIVE_CLOSE => {
                ctx.abort();
                Ok(())
            }
            iis::HSE_REQ_SET_FLUSH_FLAG => {
                // The BOOL comes by value. The host never buffers a
                // response, so every write is already flushed.
                trace(ctx, format_args!("SET_FLUSH_FLAG({})", buf as usize != 0));
                Ok(())
            }
            iis::HSE_REQ_SEND_CUSTOM_ERROR => {
                let info = (buf as *const HSE_CUSTOM_ERROR_INFO)
                    .as_ref()
                    .ok_or(invalid)?;
                let status = opt_cstr(info.pszStatus).ok_or(invalid)?;
                ssf::send_custom_error(ctx, status, info.uHttpSubError, info.fAsync != FALSE)
            }
            _ => Err(SsfError::Unsupported),
        }
    }
}

/// A caller's byte range that must stay valid until its I/O completes.
#[derive(Clone, Copy)]
pub(crate) struct RawSlice {
    ptr: *const u8,
    len: usize,
}

// SAFETY: the extension keeps the memory valid and unchanged until the
// operation's completion routine runs (the ISAPI async contract).
unsafe impl Send for RawSlice {}

impl RawSlice {
    fn new(ptr: *const u8, len: u32) -> Self {
        RawSlice {
            ptr,
            len: if ptr.is_null() { 0 } else { len as usize },
        }
    }

    /// The bytes; a NULL pointer reads as empty.
    pub(crate) fn bytes(&self) -> &[u8] {
        if self.ptr.is_null() || self.len == 0 {
            return &[];
        }
        // SAFETY: valid for `len` bytes while the operation runs (see the Send impl).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// A caller's writable buffer for an asynchronous read.
pub(crate) struct RawBuf {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the extension keeps the buffer valid and untouched until the
// read's completion routine runs.
unsafe impl Send for RawBuf {}

impl RawBuf {
    /// The buffer as a slice.
    pub(crate) fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: valid for `len` bytes until completion (see the Send impl).
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// Borrows an extension's open file (a Unix descriptor or a Windows
/// `HANDLE`) without taking ownership of it.
pub(crate) fn borrow_file(handle: isize) -> Option<ManuallyDrop<std::fs::File>> {
    #[cfg(unix)]
    {
        use std::os::fd::FromRawFd;
        let fd = i32::try_from(handle).ok().filter(|fd| *fd >= 0)?;
        // SAFETY: the extension passes an open descriptor it keeps open
        // until the operation completes; ManuallyDrop never closes it.
        Some(ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) }))
    }
    #[cfg(windows)]
    {
        use std::os::windows::io::FromRawHandle;
        if handle == 0 || handle == -1 {
            return None;
        }
        // SAFETY: as above, for a Windows file HANDLE.
        Some(ManuallyDrop::new(unsafe {
            std::fs::File::from_raw_handle(handle as *mut c_void)
        }))
    }
}

/// The global allocator on Unix: mimalloc.
///
/// Word-aligned requests, nearly all of them, go to `mi_malloc`, which
/// always returns word-aligned blocks; the `mimalloc` crate sends every
/// request through `mi_malloc_aligned`, whose fast path misses for blocks
/// over 1 KiB and costs several times as much. Stricter alignments still
/// use the aligned calls.
#[cfg(not(windows))]
pub(crate) struct MiMalloc;

#[cfg(not(windows))]
const WORD: usize = size_of::<usize>();

/// Allocates `layout` with `plain` when word alignment suffices, else with
/// `aligned`.
///
/// # Safety
/// The pair must be one of mimalloc's allocation calls and its `_aligned`
/// twin, and `layout` non-zero in size (as `GlobalAlloc` guarantees).
#[cfg(not(windows))]
unsafe fn mi_alloc(
    layout: std::alloc::Layout,
    plain: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    // SAFETY: plain C allocation calls; see `MiMalloc`'s impl.
    unsafe {
        if layout.align() <= WORD {
            plain(layout.size()).cast()
        } else {
            aligned(layout.size(), layout.align()).cast()
        }
    }
}

#[cfg(not(windows))]
// SAFETY: every block comes from mimalloc with at least the layout's
// alignment (word alignment is what `mi_malloc` guarantees; anything
// stricter goes through the `_aligned` calls), and is freed by `mi_free`.
unsafe impl std::alloc::GlobalAlloc for MiMalloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: see the impl's comment.
        unsafe {
            mi_alloc(
                layout,
                libmimalloc_sys::mi_malloc,
                libmimalloc_sys::mi_malloc_aligned,
            )
        }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe {
            mi_alloc(
                layout,
                libmimalloc_sys::mi_zalloc,
                libmimalloc_sys::mi_zalloc_aligned,
            )
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: std::alloc::Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { libmimalloc_sys::mi_free(ptr.cast()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        use libmimalloc_sys::{mi_realloc, mi_realloc_aligned};
        // SAFETY: `ptr` came from this allocator with `layout`; the new
        // block keeps the alignment, as in `alloc`.
        unsafe {
            if layout.align() <= WORD {
                mi_realloc(ptr.cast(), new_size).cast()
            } else {
                mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(all(test, not(windows)))]
mod tests {
    use super::MiMalloc;
    use std::alloc::{GlobalAlloc, Layout};

    #[test]
    fn allocator_keeps_every_alignment() {
        // Sizes across mimalloc's bins, with word and stricter alignments;
        // several live blocks of each, so that not only a page's first
        // block is seen.
        for size in [1, 7, 8, 12, 24, 40, 100, 1000, 1500, 5000, 70_000] {
            for align in [1, 2, 4, 8, 16, 64, 4096] {
                let layout = Layout::from_size_align(size, align).unwrap();
                let blocks: Vec<*mut u8> = (0..16)
                    .map(|i| {
                        // SAFETY: a non-zero layout; freed below.
                        let p = unsafe {
                            if i % 2 == 0 {
                                MiMalloc.alloc(layout)
                            } else {
                                MiMalloc.alloc_zeroed(layout)
                            }
                        };
                        assert!(!p.is_null());
                        assert_eq!(p as usize % align, 0, "size {size} align {align}");
                        p
                    })
                    .collect();
                for p in blocks {
                    // SAFETY: grown then freed with the layout it came with.
                    unsafe {
                        let q = MiMalloc.realloc(p, layout, size * 3);
                        assert_eq!(q as usize % align, 0, "realloc {size} align {align}");
                        let grown = Layout::from_size_align(size * 3, align).unwrap();
                        MiMalloc.dealloc(q, grown);
                    }
                }
            }
        }
    }
}
