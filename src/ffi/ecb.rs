//! The `EXTENSION_CONTROL_BLOCK` a request hands its extension, and the
//! calls that pass it: the extension's I/O completion routine.

use std::cell::UnsafeCell;
use std::ffi::c_void;

use windows_sys::Win32::System::Iis::{
    EXTENSION_CONTROL_BLOCK, HCONN, HSE_LOG_BUFFER_LEN, HSE_VERSION_MAJOR, HSE_VERSION_MINOR,
};

use super::callbacks::{get_server_variable, read_client, server_support_function, write_client};
use super::decode::trim_nul;
use super::raw::Completion;

const _: () = assert!(size_of::<EXTENSION_CONTROL_BLOCK>() == 192 || size_of::<usize>() != 8);

/// `HSE_VERSION`: 8.0.
const HSE_VERSION: u32 = HSE_VERSION_MAJOR << 16 | HSE_VERSION_MINOR;

/// The request's strings the ECB points to.
pub(crate) struct EcbStrings<'a> {
    /// `lpszMethod`.
    pub(crate) method: &'a [u8],
    /// `lpszQueryString`, without the `?`.
    pub(crate) query: &'a [u8],
    /// `lpszPathInfo`: the decoded URL path.
    pub(crate) path_info: &'a [u8],
    /// `lpszContentType`, empty when there is none.
    pub(crate) content_type: &'a [u8],
    /// Appends `lpszPathTranslated` to the buffer (no string of its own).
    pub(crate) path_translated: &'a dyn Fn(&mut Vec<u8>),
    /// About how long `lpszPathTranslated` is, for the buffer's capacity.
    pub(crate) path_translated_len: usize,
}

/// The ECB and the strings it points to, alive as long as the request.
///
/// The ECB is stored inline: the extension gets its address only once the
/// request context that owns it is shared (in an `Arc`), where it no longer
/// moves.
pub(crate) struct EcbCell {
    ecb: UnsafeCell<EXTENSION_CONTROL_BLOCK>,
    /// The ECB's five strings, each NUL-terminated, in one allocation. A `Vec`,
    /// not a `Box<[u8]>`: moving a `Box` asserts unique access to its heap data,
    /// which invalidates the ECB's pointers into it (Miri, Stacked Borrows).
    _strings: Vec<u8>,
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
    out.extend_from_slice(trim_nul(bytes));
    out.push(0);
    start
}

impl EcbCell {
    /// Builds the ECB for request `id` (its `HCONN`); `preload` is the
    /// read-ahead body and `total_bytes` the `cbTotalBytes`.
    #[inline]
    pub(crate) fn new(
        id: usize,
        s: &EcbStrings<'_>,
        mut preload: Vec<u8>,
        total_bytes: u32,
    ) -> Self {
        let available = preload.len() as u32;
        if available > 0 {
            preload.push(0); // IIS NUL-terminates lpbData
        }
        let mut buf = Vec::with_capacity(
            s.method.len()
                + s.query.len()
                + s.path_info.len()
                + s.path_translated_len
                + s.content_type.len()
                + 6,
        );
        let at = [
            push_cstr(&mut buf, s.method),
            push_cstr(&mut buf, s.query),
            push_cstr(&mut buf, s.path_info),
            {
                let start = buf.len();
                (s.path_translated)(&mut buf);
                buf.push(0);
                start
            },
            push_cstr(&mut buf, s.content_type),
            // lpbData when nothing is preloaded: no allocation for a GET.
            push_cstr(&mut buf, b""),
        ];
        let mut strings = buf;
        // The strings' heap data never moves: these pointers stay valid.
        let base = strings.as_mut_ptr();
        let ptr = |i: usize| base.wrapping_add(at[i]);
        let ecb = EXTENSION_CONTROL_BLOCK {
            cbSize: size_of::<EXTENSION_CONTROL_BLOCK>() as u32,
            dwVersion: HSE_VERSION,
            ConnID: id as HCONN,
            dwHttpStatusCode: 200,
            lpszLogData: [0; HSE_LOG_BUFFER_LEN as usize],
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

    /// The ECB's address, as the extension gets it.
    pub(super) fn ptr(&self) -> *mut EXTENSION_CONTROL_BLOCK {
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

    /// Calls the extension's completion routine for this request, with the
    /// bytes moved and the Win32 error (0: success). Run it on a host
    /// thread, never inline in the call that started the I/O.
    pub(crate) fn complete(&self, c: Completion, bytes: u32, error: u32) {
        // SAFETY: the extension registered this routine for this ECB and
        // must keep the context valid until its I/O completes.
        unsafe { (c.func)(self.ptr(), c.context as *mut c_void, bytes, error) }
    }
}
