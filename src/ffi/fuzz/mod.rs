//! In-process drivers for the fuzz targets (cargo feature `fuzzing`, used
//! by `fuzz/` only). Each builds well-formed arguments around fuzzed bytes
//! (the fuzzer varies codes, sizes and contents, never whether a pointer is
//! valid), calls the real callback with the `HCONN` of a registered
//! [`Handler`], and asserts that what the callback handed up, wrote back and
//! returned is what the arguments said.

mod ssf;

use std::borrow::Cow;
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

use windows_sys::Win32::Foundation::{
    ERROR_INSUFFICIENT_BUFFER, ERROR_INVALID_INDEX, ERROR_INVALID_PARAMETER, FALSE, TRUE,
};
use windows_sys::Win32::System::Iis::{EXTENSION_CONTROL_BLOCK, HCONN};

use super::callbacks::get_server_variable;
use super::decode::{Piece, SupportRequest, trim_nul};
use super::ecb::EcbCell;
use super::error::{last_error, set_last_error};
use super::handler::Handler;
use super::registry;

pub(crate) use ssf::{ElementInput, Seen, SeenPiece, SsfInput, server_support_function_call};

/// The path the fuzz handler maps every URL below.
const ROOT: &[u8] = b"/fuzz/root";

/// What the fuzz handler writes into `ASYNC_READ_CLIENT` buffers.
const FILL: u8 = 0x5A;

/// A request that records what `ServerSupportFunction` handed it, answers
/// the output arguments, and serves server variables from `vars`.
struct Recorder {
    id: usize,
    seen: Mutex<Option<Seen>>,
    vars: Option<Arc<dyn Handler>>,
}

impl Handler for Recorder {
    fn id(&self) -> usize {
        self.id
    }

    fn traced(&self) -> bool {
        false
    }

    fn server_variable(&self, name: &[u8]) -> Option<Cow<'_, [u8]>> {
        self.vars.as_ref()?.server_variable(name)
    }

    fn read_client(&self, _buf: &mut [u8]) -> Result<usize, u32> {
        Ok(0)
    }

    fn write_client(self: Arc<Self>, _data: &[u8], _flags: u32) -> Result<(), u32> {
        Ok(())
    }

    fn support_function(self: Arc<Self>, request: SupportRequest<'_>) -> Result<(), u32> {
        use SupportRequest as R;
        let mut result = Ok(());
        let seen = match request {
            R::SendUrlRedirectResp { url } => Seen::Redirect {
                send_url: false,
                url: url.to_vec(),
            },
            R::SendUrl { url } => Seen::Redirect {
                send_url: true,
                url: url.to_vec(),
            },
            R::SendResponseHeader { status, headers } => Seen::Header {
                ex: false,
                status: status.map(<[u8]>::to_vec),
                headers: headers.to_vec(),
                keep_conn: true,
            },
            R::SendResponseHeaderEx {
                status,
                headers,
                keep_conn,
            } => Seen::Header {
                ex: true,
                status: status.map(<[u8]>::to_vec),
                headers: headers.to_vec(),
                keep_conn,
            },
            R::DoneWithSession { status } => Seen::Done { status },
            R::MapUrlToPath { url, out } => {
                result = out.write(&[ROOT, &url].concat(), 1);
                Seen::MapUrl { url }
            }
            R::MapUrlToPathEx { url, info, size } => {
                info.dwFlags = 7;
                info.cchMatchingURL = url.len() as u32;
                let size_given = size.is_some();
                if let Some(size) = size {
                    *size = 11;
                }
                Seen::MapUrlEx { url, size_given }
            }
            R::AppendLogParameter { param } => Seen::Log {
                param: param.to_vec(),
            },
            R::IoCompletion { completion } => Seen::IoCompletion {
                set: completion.is_some(),
                context: completion.map_or(0, |c| c.context),
            },
            R::AsyncReadClient { mut buf, flags } => {
                let b = buf.as_mut();
                b.fill(FILL);
                Seen::AsyncRead {
                    len: b.len(),
                    flags,
                }
            }
            R::TransmitFile(t) => Seen::Transmit {
                flags: t.flags,
                status: t.status,
                head: t.head.bytes().to_vec(),
                file: (t.file.handle, t.file.offset, t.file.len),
                tail: t.tail.bytes().to_vec(),
                completion: t.completion.is_some(),
            },
            R::VectorSend(v) => Seen::Vector {
                flags: v.flags,
                status: v.status,
                headers: v.headers,
                pieces: v
                    .pieces
                    .iter()
                    .map(|p| match p {
                        Piece::Memory(m) => SeenPiece::Memory(m.bytes().to_vec()),
                        Piece::File(f) => SeenPiece::File(f.handle, f.offset, f.len),
                    })
                    .collect(),
            },
            R::IsKeepConn { out } => {
                out.set(true);
                Seen::IsKeepConn
            }
            R::IsConnected { out } => {
                out.set(false);
                Seen::IsConnected
            }
            R::CloseConnection => Seen::Close,
            R::AbortiveClose => Seen::Abortive,
            R::SetFlushFlag { on } => Seen::Flush { on },
            R::SendCustomError {
                status,
                sub_error,
                async_,
            } => Seen::CustomError {
                status: status.to_vec(),
                sub_error,
                async_,
            },
            R::Unsupported { code } => Seen::Unsupported { code },
        };
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(seen);
        result
    }
}

/// A registered request, unregistered when dropped (also on a panic).
struct Registered(usize);

impl Registered {
    fn new(handler: Arc<dyn Handler>, id: usize) -> Self {
        registry::register(id, handler);
        Registered(id)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        registry::unregister(self.0);
    }
}

/// A C string: the bytes up to their first NUL, then a NUL.
fn cstring(bytes: &[u8]) -> Vec<u8> {
    let mut v = trim_nul(bytes).to_vec();
    v.push(0);
    v
}

/// A pointer to an optional C string kept alive by the caller.
fn ptr(s: &mut Option<Vec<u8>>) -> *mut u8 {
    s.as_mut().map_or(std::ptr::null_mut(), |v| v.as_mut_ptr())
}

/// The completion routine the fuzzed calls register; never called.
unsafe extern "system" fn no_completion(
    _ecb: *mut EXTENSION_CONTROL_BLOCK,
    _context: *mut c_void,
    _bytes: u32,
    _error: u32,
) {
}

/// One size probe of `GetServerVariable`: the buffer size offered
/// (`None`: `lpdwSize` NULL) and whether `lpvBuffer` is given.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Probe {
    /// `*lpdwSize`.
    pub(crate) size: Option<u32>,
    /// `lpvBuffer` is not NULL.
    pub(crate) buffer: bool,
}

/// Bytes after the offered size in every probe buffer, which the callback
/// must leave alone.
const CANARY: usize = 16;

/// Fetches server variable `name` (up to its first NUL) from the request
/// `vars` through the ECB's `GetServerVariable`, once per probe, then with
/// the size the protocol said it needs; asserts the protocol each time:
/// unknown names are `ERROR_INVALID_INDEX`; a NULL or too small buffer is
/// `ERROR_INSUFFICIENT_BUFFER` with the needed size (value and NUL, two for
/// `UNICODE_*`) written back and the buffer untouched; a large enough one
/// gets the value, its NUL, and the size. Returns the value.
pub(crate) fn server_variable(
    vars: Arc<dyn Handler>,
    name: &[u8],
    probes: &[Probe],
) -> Option<Vec<u8>> {
    let id = registry::next_id();
    let expected = vars.server_variable(trim_nul(name)).map(Cow::into_owned);
    let recorder = Arc::new(Recorder {
        id,
        seen: Mutex::new(None),
        vars: Some(vars),
    });
    let _registered = Registered::new(recorder, id);
    let cname = cstring(name);
    let trimmed = trim_nul(name);
    let nul = if trimmed.len() > 8 && trimmed[..8].eq_ignore_ascii_case(b"UNICODE_") {
        2
    } else {
        1
    };
    let needed = expected.as_ref().map(|v| (v.len() + nul) as u32);
    let mut probes = probes.to_vec();
    if let Some(n) = needed {
        probes.push(Probe {
            size: Some(n),
            buffer: true,
        });
    }
    let mut fetched = None;
    for probe in probes {
        let offered = probe.size.unwrap_or(0) as usize;
        let mut buf = vec![0xEEu8; offered + CANARY];
        let mut size = probe.size.unwrap_or(0);
        set_last_error(0);
        let buf_ptr = if probe.buffer {
            buf.as_mut_ptr().cast::<c_void>()
        } else {
            std::ptr::null_mut()
        };
        let size_ptr = if probe.size.is_some() {
            &raw mut size
        } else {
            std::ptr::null_mut()
        };
        // SAFETY: the name is a C string, `buf` holds `*size_ptr` bytes
        // (and more), `size_ptr` is NULL or valid; all live for the call.
        let ok = unsafe { get_server_variable(id as HCONN, cname.as_ptr(), buf_ptr, size_ptr) };
        let error = last_error() as u32;
        match (probe.size, needed) {
            (None, _) => {
                assert_eq!(
                    (ok, error),
                    (FALSE, ERROR_INVALID_PARAMETER),
                    "NULL lpdwSize"
                );
            }
            (Some(_), None) => {
                assert_eq!(
                    (ok, error),
                    (FALSE, ERROR_INVALID_INDEX),
                    "unknown variable"
                );
                assert_eq!(
                    size,
                    probe.size.unwrap_or(0),
                    "size of an unknown variable changed"
                );
            }
            (Some(s), Some(n)) if !probe.buffer || s < n => {
                assert_eq!(
                    (ok, error),
                    (FALSE, ERROR_INSUFFICIENT_BUFFER),
                    "short buffer"
                );
                assert_eq!(size, n, "the needed size, NUL included");
                assert!(buf.iter().all(|&b| b == 0xEE), "short buffer written to");
            }
            (Some(_), Some(n)) => {
                assert_eq!(ok, TRUE, "large enough buffer refused (error {error})");
                assert_eq!(size, n, "the size written back");
                let value = expected.as_deref().unwrap_or_default();
                assert_eq!(&buf[..value.len()], value, "the value");
                assert!(
                    buf[value.len()..n as usize].iter().all(|&b| b == 0),
                    "the NUL"
                );
                assert!(
                    buf[n as usize..].iter().all(|&b| b == 0xEE),
                    "written past the value"
                );
                fetched = Some(buf[..value.len()].to_vec());
            }
        }
    }
    fetched
}

/// The strings and counts of an ECB, read back as an extension reads them.
#[derive(Debug)]
pub(crate) struct EcbView {
    /// `lpszMethod`.
    pub(crate) method: Vec<u8>,
    /// `lpszQueryString`.
    pub(crate) query: Vec<u8>,
    /// `lpszPathInfo`.
    pub(crate) path_info: Vec<u8>,
    /// `lpszPathTranslated`.
    pub(crate) path_translated: Vec<u8>,
    /// `lpszContentType`.
    pub(crate) content_type: Vec<u8>,
    /// `cbTotalBytes`.
    pub(crate) total_bytes: u32,
    /// `lpbData`'s first `cbAvailable` bytes.
    pub(crate) data: Vec<u8>,
    /// `ConnID`.
    pub(crate) conn_id: usize,
}

/// Reads an ECB's strings and preload; asserts its size and version, that
/// every string is NUL-terminated and that `lpbData` is too.
pub(crate) fn ecb_view(cell: &EcbCell) -> EcbView {
    let p = cell.ptr();
    // SAFETY: the cell owns the ECB and the memory its pointers point to;
    // the strings are NUL-terminated and `lpbData` holds `cbAvailable`
    // bytes and a NUL (or is an empty string).
    unsafe {
        let ecb = &*p;
        assert_eq!(ecb.cbSize as usize, size_of::<EXTENSION_CONTROL_BLOCK>());
        let s = |q: *mut u8| std::ffi::CStr::from_ptr(q.cast()).to_bytes().to_vec();
        let data = std::slice::from_raw_parts(ecb.lpbData, ecb.cbAvailable as usize).to_vec();
        assert_eq!(
            *ecb.lpbData.add(ecb.cbAvailable as usize),
            0,
            "lpbData's NUL"
        );
        EcbView {
            method: s(ecb.lpszMethod),
            query: s(ecb.lpszQueryString),
            path_info: s(ecb.lpszPathInfo),
            path_translated: s(ecb.lpszPathTranslated),
            content_type: s(ecb.lpszContentType),
            total_bytes: ecb.cbTotalBytes,
            data,
            conn_id: ecb.ConnID as usize,
        }
    }
}
