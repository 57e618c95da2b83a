//! [`Ecb`]: a safe handle on the server's `EXTENSION_CONTROL_BLOCK` for one request, with
//! the callbacks the extension uses (`GetServerVariable` with size probing, `ReadClient`,
//! `WriteClient`, and the `ServerSupportFunction` requests, `HSE_REQ_TRANSMIT_FILE`'s
//! completion included), and the Win32 error codes they report.

use std::ffi::{CStr, c_void};
use std::io;
use std::ptr::NonNull;
use std::sync::{Arc, Condvar, Mutex};

use windows_sys::Win32::Foundation::{
    ERROR_INSUFFICIENT_BUFFER, ERROR_INVALID_INDEX, ERROR_INVALID_PARAMETER, ERROR_NETNAME_DELETED,
    ERROR_NO_DATA, FALSE, HANDLE, TRUE,
};
use windows_sys::Win32::System::Iis::{
    EXTENSION_CONTROL_BLOCK, HSE_IO_ASYNC, HSE_REQ_CLOSE_CONNECTION, HSE_REQ_IS_KEEP_CONN,
    HSE_REQ_SEND_RESPONSE_HEADER_EX, HSE_REQ_SET_FLUSH_FLAG, HSE_REQ_TRANSMIT_FILE,
    HSE_SEND_HEADER_EX_INFO, HSE_TF_INFO,
};
use windows_sys::core::BOOL;

use super::guard::ffi_guard;

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// The Win32 error code of the last failed ISAPI callback (errno on Unix, see the
/// [module docs](super)).
fn last_error() -> u32 {
    let code = io::Error::last_os_error().raw_os_error().unwrap_or(0);
    u32::try_from(code).unwrap_or(0)
}

fn clear_last_error() {
    set_last_error(0);
}

/// Stores a Win32 code where [`last_error`] reads it, as a host does (errno on Unix).
pub(super) fn set_last_error(code: u32) {
    #[cfg(target_os = "linux")]
    // SAFETY: __errno_location returns this thread's errno slot, always valid to write.
    unsafe {
        *libc::__errno_location() = code as i32;
    }
    #[cfg(windows)]
    // SAFETY: SetLastError only writes this thread's last-error value.
    unsafe {
        windows_sys::Win32::Foundation::SetLastError(code);
    }
}

/// An `io::Error` for a failed ISAPI call, with the Win32 code in the message.
fn isapi_error(op: &str, code: u32) -> io::Error {
    let (kind, name) = match code {
        ERROR_INVALID_PARAMETER => (io::ErrorKind::InvalidInput, "ERROR_INVALID_PARAMETER"),
        ERROR_INSUFFICIENT_BUFFER => (io::ErrorKind::InvalidInput, "ERROR_INSUFFICIENT_BUFFER"),
        ERROR_NO_DATA => (io::ErrorKind::BrokenPipe, "ERROR_NO_DATA"),
        ERROR_INVALID_INDEX => (io::ErrorKind::NotFound, "ERROR_INVALID_INDEX"),
        // WSAECONNABORTED, WSAECONNRESET
        10053 | 10054 | ERROR_NETNAME_DELETED => {
            (io::ErrorKind::ConnectionReset, "connection reset")
        }
        _ => (io::ErrorKind::Other, "error"),
    };
    io::Error::new(kind, format!("{op} failed (Win32 error {code}, {name})"))
}

/// A handle on the server's `EXTENSION_CONTROL_BLOCK` for one request.
///
/// Only `HttpExtensionProc` creates one (in `exports`). It is valid until
/// `HttpExtensionProc` returns; code that may outlive the request reaches it through
/// `wsgi::Link`, which is cleared before the return.
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
    /// Wraps the server's ECB.
    ///
    /// # Safety
    /// `ecb` must point to a valid `EXTENSION_CONTROL_BLOCK` that stays valid, and keeps
    /// its callbacks usable from any thread, for as long as the handle (or a copy) is used.
    pub(super) unsafe fn new(ecb: NonNull<EXTENSION_CONTROL_BLOCK>) -> Self {
        Self(ecb)
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transmit_file_handles() {
        assert!(RawFile::from_handle(-1).is_none());
        assert!(RawFile::from_handle(3).is_some());
        assert_eq!(RawFile::from_handle(0).is_none(), cfg!(windows));
        assert_eq!(RawFile::from_handle(-2).is_none(), cfg!(not(windows)));
    }
}
