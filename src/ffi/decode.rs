//! `ServerSupportFunction`'s raw arguments, decoded into a safe
//! [`SupportRequest`]: the pointers each request code defines, read once
//! here, so that the handlers above see only references and values.

use std::ffi::{CStr, c_char, c_void};

use windows_sys::Win32::Foundation::{ERROR_INVALID_PARAMETER, FALSE, TRUE};
use windows_sys::Win32::System::Iis::{self as iis, PFN_HSE_IO_COMPLETION};
use windows_sys::Win32::System::Iis::{
    HSE_CUSTOM_ERROR_INFO, HSE_RESPONSE_VECTOR, HSE_SEND_HEADER_EX_INFO, HSE_TF_INFO,
    HSE_URL_MAPEX_INFO, HSE_VECTOR_ELEMENT,
};
use windows_sys::core::BOOL;

use super::raw::{Completion, FileRange, RawBuf, RawSlice, SizedOut};

const _: () = assert!(size_of::<HSE_TF_INFO>() == 72 || size_of::<usize>() != 8);
const _: () = assert!(size_of::<HSE_SEND_HEADER_EX_INFO>() == 32 || size_of::<usize>() != 8);
const _: () = assert!(size_of::<HSE_URL_MAPEX_INFO>() == 280);
const _: () = assert!(size_of::<HSE_VECTOR_ELEMENT>() == 32 || size_of::<usize>() != 8);
const _: () = assert!(size_of::<HSE_RESPONSE_VECTOR>() == 40 || size_of::<usize>() != 8);

/// One `ServerSupportFunction` call, decoded. `'a` is the call: borrowed
/// strings and output slots are valid only until it returns.
pub(crate) enum SupportRequest<'a> {
    /// `HSE_REQ_SEND_URL_REDIRECT_RESP`: the URL to redirect to.
    SendUrlRedirectResp { url: &'a [u8] },
    /// `HSE_REQ_SEND_URL`: the URL (IIS 6 and later redirect to it).
    SendUrl { url: &'a [u8] },
    /// `HSE_REQ_SEND_RESPONSE_HEADER` (legacy): the status and the header
    /// block, which may carry body bytes after the blank line.
    SendResponseHeader {
        status: Option<&'a [u8]>,
        headers: &'a [u8],
    },
    /// `HSE_REQ_SEND_RESPONSE_HEADER_EX`: as above, with `fKeepConn`.
    SendResponseHeaderEx {
        status: Option<&'a [u8]>,
        headers: &'a [u8],
        keep_conn: bool,
    },
    /// `HSE_REQ_DONE_WITH_SESSION`, with the status the extension passed.
    DoneWithSession { status: Option<u32> },
    /// `HSE_REQ_MAP_URL_TO_PATH`: the URL, and the caller's buffer (which
    /// held the URL) for the path.
    MapUrlToPath { url: Vec<u8>, out: SizedOut<'a> },
    /// `HSE_REQ_MAP_URL_TO_PATH_EX`: the URL, the structure to fill, and
    /// the size to set, if given.
    MapUrlToPathEx {
        url: Vec<u8>,
        info: &'a mut HSE_URL_MAPEX_INFO,
        size: Option<&'a mut u32>,
    },
    /// `HSE_APPEND_LOG_PARAMETER`: the text to log.
    AppendLogParameter { param: &'a [u8] },
    /// `HSE_REQ_IO_COMPLETION`: sets (or clears) the completion routine.
    IoCompletion { completion: Option<Completion> },
    /// `HSE_REQ_ASYNC_READ_CLIENT`: the buffer and the `HSE_IO_*` flags.
    AsyncReadClient { buf: RawBuf, flags: u32 },
    /// `HSE_REQ_TRANSMIT_FILE`.
    TransmitFile(Transmit),
    /// `HSE_REQ_VECTOR_SEND`.
    VectorSend(VectorSend),
    /// `HSE_REQ_IS_KEEP_CONN`: where to answer.
    IsKeepConn { out: BoolOut<'a> },
    /// `HSE_REQ_IS_CONNECTED`: where to answer.
    IsConnected { out: BoolOut<'a> },
    /// `HSE_REQ_CLOSE_CONNECTION`.
    CloseConnection,
    /// `HSE_REQ_ABORTIVE_CLOSE`.
    AbortiveClose,
    /// `HSE_REQ_SET_FLUSH_FLAG`, with the BOOL passed by value.
    SetFlushFlag { on: bool },
    /// `HSE_REQ_SEND_CUSTOM_ERROR`.
    SendCustomError {
        status: &'a [u8],
        sub_error: u16,
        async_: bool,
    },
    /// Any other code: not implemented by the host.
    Unsupported { code: u32 },
}

/// The decoded `HSE_TF_INFO` of `TRANSMIT_FILE`.
pub(crate) struct Transmit {
    /// `HSE_IO_*` flags.
    pub(crate) flags: u32,
    /// `pszStatusCode`, for `HSE_IO_SEND_HEADERS`.
    pub(crate) status: Option<Vec<u8>>,
    /// `pHead`: the headers with `HSE_IO_SEND_HEADERS`, else body bytes.
    pub(crate) head: RawSlice,
    /// The file range.
    pub(crate) file: FileRange,
    /// `pTail`.
    pub(crate) tail: RawSlice,
    /// `pfnHseIO` and `pContext`, when given.
    pub(crate) completion: Option<Completion>,
}

/// The decoded `HSE_RESPONSE_VECTOR` of `VECTOR_SEND`.
pub(crate) struct VectorSend {
    /// `HSE_IO_*` flags.
    pub(crate) flags: u32,
    /// `pszStatus`.
    pub(crate) status: Option<Vec<u8>>,
    /// `pszHeaders`.
    pub(crate) headers: Option<Vec<u8>>,
    /// The elements, in order.
    pub(crate) pieces: Vec<Piece>,
}

/// One element of a `VECTOR_SEND`.
pub(crate) enum Piece {
    /// Bytes in memory.
    Memory(RawSlice),
    /// A file range.
    File(FileRange),
}

/// A caller's BOOL to answer in.
pub(crate) struct BoolOut<'a>(&'a mut BOOL);

impl BoolOut<'_> {
    /// Answers `yes`.
    pub(crate) fn set(self, yes: bool) {
        *self.0 = if yes { TRUE } else { FALSE };
    }
}

/// Trims a string the extension passed with an explicit length that may
/// count the NUL: it ends at its first NUL.
pub(crate) fn trim_nul(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|&b| b == 0) {
        Some(i) => &bytes[..i],
        None => bytes,
    }
}

/// Reads a NUL-terminated string; NULL is `None`.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for `'a`.
pub(super) unsafe fn opt_cstr<'a>(p: *const u8) -> Option<&'a [u8]> {
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
    Some(trim_nul(s))
}

/// Decodes one `ServerSupportFunction` call; a malformed one is
/// `ERROR_INVALID_PARAMETER`.
///
/// # Safety
/// The pointers are as the ABI defines them for `request` (the extension
/// guarantees it), valid for `'a`.
#[inline]
pub(super) unsafe fn decode<'a>(
    request: u32,
    buf: *mut c_void,
    size: *mut u32,
    data_type: *mut u32,
) -> Result<SupportRequest<'a>, u32> {
    use SupportRequest as R;
    let invalid = ERROR_INVALID_PARAMETER;
    Ok(match request {
        iis::HSE_REQ_SEND_URL_REDIRECT_RESP | iis::HSE_REQ_SEND_URL => {
            // SAFETY: `lpvBuffer` is the URL, a C string.
            let url = unsafe { opt_cstr(buf as *const u8) }.ok_or(invalid)?;
            if request == iis::HSE_REQ_SEND_URL {
                R::SendUrl { url }
            } else {
                R::SendUrlRedirectResp { url }
            }
        }
        iis::HSE_REQ_SEND_RESPONSE_HEADER => {
            // SAFETY: `lpvBuffer` is the status and `lpdwDataType` the
            // header block, both C strings or NULL.
            let (status, headers) = unsafe {
                (
                    opt_cstr(buf as *const u8),
                    opt_cstr(data_type as *const u8).unwrap_or_default(),
                )
            };
            R::SendResponseHeader { status, headers }
        }
        iis::HSE_REQ_SEND_RESPONSE_HEADER_EX => {
            // SAFETY: `lpvBuffer` is an HSE_SEND_HEADER_EX_INFO whose
            // strings are counted (or NUL-terminated when the count is 0).
            unsafe {
                let info = (buf as *const HSE_SEND_HEADER_EX_INFO)
                    .as_ref()
                    .ok_or(invalid)?;
                R::SendResponseHeaderEx {
                    status: counted_str(info.pszStatus, info.cchStatus),
                    headers: counted_str(info.pszHeader, info.cchHeader).unwrap_or_default(),
                    keep_conn: info.fKeepConn != FALSE,
                }
            }
        }
        iis::HSE_REQ_DONE_WITH_SESSION => {
            // SAFETY: `lpvBuffer` is NULL or points to the HSE_STATUS_* value.
            let status = unsafe { (buf as *const u32).as_ref() }.copied();
            R::DoneWithSession { status }
        }
        iis::HSE_REQ_MAP_URL_TO_PATH => {
            if buf.is_null() || size.is_null() {
                return Err(invalid);
            }
            // SAFETY: `lpvBuffer` is the output buffer of `*lpdwSize` bytes and
            // holds the URL as a C string within them: the NUL is looked for in
            // those bytes only (an unterminated URL is refused, never read past
            // the buffer). The URL is copied before the buffer is handed out
            // for writing.
            unsafe {
                let offered = std::slice::from_raw_parts(buf as *const u8, *size as usize);
                let end = offered.iter().position(|&b| b == 0).ok_or(invalid)?;
                R::MapUrlToPath {
                    url: offered[..end].to_vec(),
                    out: SizedOut::new(buf, size),
                }
            }
        }
        iis::HSE_REQ_MAP_URL_TO_PATH_EX => {
            // SAFETY: `lpvBuffer` is the URL, a C string, and
            // `lpdwDataType` the HSE_URL_MAPEX_INFO to fill; `lpdwSize` is
            // NULL or the size to set. Extensions often pass
            // `info.lpszPath` as the URL: it is copied before the structure
            // is taken mutably.
            unsafe {
                let url = opt_cstr(buf as *const u8).ok_or(invalid)?.to_vec();
                let info = (data_type as *mut HSE_URL_MAPEX_INFO)
                    .as_mut()
                    .ok_or(invalid)?;
                R::MapUrlToPathEx {
                    url,
                    info,
                    size: size.as_mut(),
                }
            }
        }
        iis::HSE_APPEND_LOG_PARAMETER => {
            // SAFETY: `lpvBuffer` is the parameter, a C string.
            let param = unsafe { opt_cstr(buf as *const u8) }.ok_or(invalid)?;
            R::AppendLogParameter { param }
        }
        iis::HSE_REQ_IO_COMPLETION => {
            // SAFETY: `lpvBuffer` is the completion routine (or NULL, which
            // clears it) and `lpdwDataType` its context, an opaque pointer.
            let func = unsafe { std::mem::transmute::<*mut c_void, PFN_HSE_IO_COMPLETION>(buf) };
            R::IoCompletion {
                completion: func.map(|func| Completion {
                    func,
                    context: data_type as usize,
                }),
            }
        }
        iis::HSE_REQ_ASYNC_READ_CLIENT => {
            if buf.is_null() || size.is_null() {
                return Err(invalid);
            }
            // SAFETY: `lpvBuffer` holds `*lpdwSize` bytes the extension
            // leaves alone until the read completes; `lpdwDataType` is NULL
            // or the flags.
            unsafe {
                R::AsyncReadClient {
                    buf: RawBuf::new(buf as *mut u8, *size as usize),
                    flags: data_type.as_ref().copied().unwrap_or(0),
                }
            }
        }
        iis::HSE_REQ_TRANSMIT_FILE => {
            // SAFETY: `lpvBuffer` is an HSE_TF_INFO whose head and tail
            // stay valid until the operation completes.
            unsafe {
                let tf = (buf as *const HSE_TF_INFO).as_ref().ok_or(invalid)?;
                R::TransmitFile(Transmit {
                    flags: tf.dwFlags,
                    status: opt_cstr(tf.pszStatusCode).map(<[u8]>::to_vec),
                    head: RawSlice::new(tf.pHead as *const u8, tf.HeadLength as usize),
                    file: FileRange {
                        handle: tf.hFile as isize,
                        offset: tf.Offset as u64,
                        len: tf.BytesToWrite as u64,
                    },
                    tail: RawSlice::new(tf.pTail as *const u8, tf.TailLength as usize),
                    completion: tf.pfnHseIO.map(|func| Completion {
                        func,
                        context: tf.pContext as usize,
                    }),
                })
            }
        }
        iis::HSE_REQ_VECTOR_SEND => {
            // SAFETY: `lpvBuffer` is an HSE_RESPONSE_VECTOR whose element
            // array and memory elements stay valid until the operation
            // completes.
            unsafe {
                let v = (buf as *const HSE_RESPONSE_VECTOR)
                    .as_ref()
                    .ok_or(invalid)?;
                R::VectorSend(vector(v)?)
            }
        }
        iis::HSE_REQ_IS_KEEP_CONN => {
            // SAFETY: `lpvBuffer` is NULL or the BOOL to answer in.
            let out = unsafe { (buf as *mut BOOL).as_mut() }.ok_or(invalid)?;
            R::IsKeepConn { out: BoolOut(out) }
        }
        iis::HSE_REQ_IS_CONNECTED => {
            // SAFETY: `lpvBuffer` is NULL or the BOOL to answer in.
            let out = unsafe { (buf as *mut BOOL).as_mut() }.ok_or(invalid)?;
            R::IsConnected { out: BoolOut(out) }
        }
        iis::HSE_REQ_CLOSE_CONNECTION => R::CloseConnection,
        iis::HSE_REQ_ABORTIVE_CLOSE => R::AbortiveClose,
        // The BOOL comes by value, in the pointer.
        iis::HSE_REQ_SET_FLUSH_FLAG => R::SetFlushFlag {
            on: buf as usize != 0,
        },
        iis::HSE_REQ_SEND_CUSTOM_ERROR => {
            // SAFETY: `lpvBuffer` is an HSE_CUSTOM_ERROR_INFO whose status
            // is a C string.
            unsafe {
                let info = (buf as *const HSE_CUSTOM_ERROR_INFO)
                    .as_ref()
                    .ok_or(invalid)?;
                R::SendCustomError {
                    status: opt_cstr(info.pszStatus).ok_or(invalid)?,
                    sub_error: info.uHttpSubError,
                    async_: info.fAsync != FALSE,
                }
            }
        }
        code => R::Unsupported { code },
    })
}

/// Decodes an `HSE_RESPONSE_VECTOR`.
///
/// # Safety
/// The vector's element array, strings and memory elements are valid (the
/// memory until the operation completes).
unsafe fn vector(v: &HSE_RESPONSE_VECTOR) -> Result<VectorSend, u32> {
    let count = v.nElementCount as usize;
    let mut pieces = Vec::with_capacity(count);
    if count > 0 {
        if v.lpElementArray.is_null() {
            return Err(ERROR_INVALID_PARAMETER);
        }
        // SAFETY: the array holds `nElementCount` elements (caller).
        let elements = unsafe { std::slice::from_raw_parts(v.lpElementArray, count) };
        for e in elements {
            pieces.push(match e.ElementType {
                iis::HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER => {
                    let base = (e.pvContext as *const u8).wrapping_add(e.cbOffset as usize);
                    // SAFETY: the element's bytes stay valid (caller).
                    Piece::Memory(unsafe { RawSlice::new(base, e.cbSize as usize) })
                }
                iis::HSE_VECTOR_ELEMENT_TYPE_FILE_HANDLE => Piece::File(FileRange {
                    handle: e.pvContext as isize,
                    offset: e.cbOffset,
                    len: e.cbSize,
                }),
                _ => return Err(ERROR_INVALID_PARAMETER),
            });
        }
    }
    // SAFETY: the status and headers are C strings or NULL (caller).
    let (status, headers) = unsafe { (opt_cstr(v.pszStatus), opt_cstr(v.pszHeaders)) };
    Ok(VectorSend {
        flags: v.dwFlags,
        status: status.map(<[u8]>::to_vec),
        headers: headers.map(<[u8]>::to_vec),
        pieces,
    })
}

/// The name of a request code, for logs.
pub(crate) fn request_name(code: u32) -> &'static str {
    match code {
        iis::HSE_REQ_SEND_URL_REDIRECT_RESP => "HSE_REQ_SEND_URL_REDIRECT_RESP",
        iis::HSE_REQ_SEND_URL => "HSE_REQ_SEND_URL",
        iis::HSE_REQ_SEND_RESPONSE_HEADER => "HSE_REQ_SEND_RESPONSE_HEADER",
        iis::HSE_REQ_DONE_WITH_SESSION => "HSE_REQ_DONE_WITH_SESSION",
        iis::HSE_REQ_MAP_URL_TO_PATH => "HSE_REQ_MAP_URL_TO_PATH",
        iis::HSE_REQ_GET_SSPI_INFO => "HSE_REQ_GET_SSPI_INFO",
        iis::HSE_APPEND_LOG_PARAMETER => "HSE_APPEND_LOG_PARAMETER",
        iis::HSE_REQ_IO_COMPLETION => "HSE_REQ_IO_COMPLETION",
        iis::HSE_REQ_TRANSMIT_FILE => "HSE_REQ_TRANSMIT_FILE",
        iis::HSE_REQ_REFRESH_ISAPI_ACL => "HSE_REQ_REFRESH_ISAPI_ACL",
        iis::HSE_REQ_IS_KEEP_CONN => "HSE_REQ_IS_KEEP_CONN",
        iis::HSE_REQ_ASYNC_READ_CLIENT => "HSE_REQ_ASYNC_READ_CLIENT",
        iis::HSE_REQ_GET_IMPERSONATION_TOKEN => "HSE_REQ_GET_IMPERSONATION_TOKEN",
        iis::HSE_REQ_MAP_URL_TO_PATH_EX => "HSE_REQ_MAP_URL_TO_PATH_EX",
        iis::HSE_REQ_ABORTIVE_CLOSE => "HSE_REQ_ABORTIVE_CLOSE",
        iis::HSE_REQ_GET_CERT_INFO_EX => "HSE_REQ_GET_CERT_INFO_EX",
        iis::HSE_REQ_SEND_RESPONSE_HEADER_EX => "HSE_REQ_SEND_RESPONSE_HEADER_EX",
        iis::HSE_REQ_CLOSE_CONNECTION => "HSE_REQ_CLOSE_CONNECTION",
        iis::HSE_REQ_IS_CONNECTED => "HSE_REQ_IS_CONNECTED",
        iis::HSE_REQ_EXEC_URL => "HSE_REQ_EXEC_URL",
        iis::HSE_REQ_EXEC_UNICODE_URL => "HSE_REQ_EXEC_UNICODE_URL",
        iis::HSE_REQ_GET_EXEC_URL_STATUS => "HSE_REQ_GET_EXEC_URL_STATUS",
        iis::HSE_REQ_SEND_CUSTOM_ERROR => "HSE_REQ_SEND_CUSTOM_ERROR",
        iis::HSE_REQ_IS_IN_PROCESS => "HSE_REQ_IS_IN_PROCESS",
        iis::HSE_REQ_REPORT_UNHEALTHY => "HSE_REQ_REPORT_UNHEALTHY",
        iis::HSE_REQ_NORMALIZE_URL => "HSE_REQ_NORMALIZE_URL",
        iis::HSE_REQ_VECTOR_SEND => "HSE_REQ_VECTOR_SEND",
        iis::HSE_REQ_SET_FLUSH_FLAG => "HSE_REQ_SET_FLUSH_FLAG",
        iis::HSE_REQ_CANCEL_IO => "HSE_REQ_CANCEL_IO",
        _ => "unknown",
    }
}
