//! The unsafe layer as an extension sees it, small enough for Miri (`ci/miri.sh`): a
//! request is registered with a fake [`Handler`], and the tests call the four callbacks
//! through the function pointers of a real [`EcbCell`], with buffers and structures laid
//! out the way a C extension passes them. Miri checks every read and write the decoder,
//! the size-probing protocol and the ECB make against those allocations (bounds,
//! initialisation, aliasing), and the registry's locking across threads.

use std::borrow::Cow;
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

use windows_sys::Win32::Foundation::{
    ERROR_INSUFFICIENT_BUFFER, ERROR_INVALID_INDEX, ERROR_INVALID_PARAMETER, FALSE, TRUE,
};
use windows_sys::Win32::System::Iis::{EXTENSION_CONTROL_BLOCK, HCONN};
use windows_sys::core::BOOL;

use super::error::last_error;
use super::{EcbCell, EcbStrings, Handler, Piece, SupportRequest, registry, trim_nul};

mod ssf;

/// A live request's upper half: answers from plain data and records what it was asked.
struct Fake {
    id: usize,
    body: Mutex<Vec<u8>>,
    log: Mutex<Vec<String>>,
}

impl Fake {
    fn record(&self, line: String) {
        self.log.lock().unwrap().push(line);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Handler for Fake {
    fn id(&self) -> usize {
        self.id
    }

    fn traced(&self) -> bool {
        false
    }

    fn server_variable(&self, name: &[u8]) -> Option<Cow<'_, [u8]>> {
        match name {
            b"SERVER_NAME" => Some(Cow::Borrowed(b"example.test")),
            b"UNICODE_SERVER_NAME" => Some(Cow::Owned(b"e\0x\0".to_vec())),
            b"EMPTY" => Some(Cow::Borrowed(b"")),
            _ => None,
        }
    }

    fn read_client(&self, buf: &mut [u8]) -> Result<usize, u32> {
        let mut body = self.body.lock().unwrap();
        let n = buf.len().min(body.len());
        buf[..n].copy_from_slice(&body[..n]);
        body.drain(..n);
        Ok(n)
    }

    fn write_client(self: Arc<Self>, data: &[u8], flags: u32) -> Result<(), u32> {
        self.record(format!("write {:?} flags={flags}", text(data)));
        Ok(())
    }

    fn support_function(self: Arc<Self>, request: SupportRequest<'_>) -> Result<(), u32> {
        use SupportRequest as R;
        let line = match request {
            R::SendUrlRedirectResp { url } => format!("redirect {:?}", text(url)),
            R::SendUrl { url } => format!("send-url {:?}", text(url)),
            R::SendResponseHeader { status, headers } => {
                format!("header {:?} {:?}", status.map(text), text(headers))
            }
            R::SendResponseHeaderEx {
                status,
                headers,
                keep_conn,
            } => format!(
                "header-ex {:?} {:?} keep={keep_conn}",
                status.map(text),
                text(headers)
            ),
            R::DoneWithSession { status } => format!("done {status:?}"),
            R::MapUrlToPath { url, out } => {
                let mut path = b"/www".to_vec();
                path.extend_from_slice(&url);
                let offered = out.offered();
                let r = out.write(&path, 1);
                self.record(format!("map {:?} offered={offered}", text(&url)));
                return r;
            }
            R::MapUrlToPathEx { url, info, size } => {
                let mut path = b"/www".to_vec();
                path.extend_from_slice(&url);
                for (d, s) in info.lpszPath.iter_mut().zip(path.iter().chain(&[0])) {
                    *d = *s as i8;
                }
                info.cchMatchingURL = url.len() as u32;
                if let Some(size) = size {
                    *size = path.len() as u32 + 1;
                }
                format!("map-ex {:?}", text(&url))
            }
            R::AppendLogParameter { param } => format!("log {:?}", text(param)),
            R::IoCompletion { completion } => format!("io-completion set={}", completion.is_some()),
            R::AsyncReadClient { mut buf, flags } => {
                let n = self.read_client(buf.as_mut())?;
                format!("async-read {n} flags={flags}")
            }
            R::TransmitFile(t) => format!(
                "transmit status={:?} head={:?} fd={} offset={} len={} tail={:?} completion={}",
                t.status.as_deref().map(text),
                text(t.head.bytes()),
                t.file.handle,
                t.file.offset,
                t.file.len,
                text(t.tail.bytes()),
                t.completion.is_some()
            ),
            R::VectorSend(v) => {
                let pieces: Vec<String> = v
                    .pieces
                    .iter()
                    .map(|p| match p {
                        Piece::Memory(m) => format!("mem {:?}", text(m.bytes())),
                        Piece::File(f) => format!("file {} {} {}", f.handle, f.offset, f.len),
                    })
                    .collect();
                format!(
                    "vector {:?} {:?} {pieces:?}",
                    v.status.as_deref().map(text),
                    v.headers.as_deref().map(text)
                )
            }
            R::IsKeepConn { out } => {
                out.set(true);
                "keep-conn".to_owned()
            }
            R::IsConnected { out } => {
                out.set(false);
                "connected".to_owned()
            }
            R::CloseConnection => "close".to_owned(),
            R::AbortiveClose => "abort".to_owned(),
            R::SetFlushFlag { on } => format!("flush {on}"),
            R::SendCustomError {
                status,
                sub_error,
                async_,
            } => format!("custom-error {:?} {sub_error} {async_}", text(status)),
            R::Unsupported { code } => {
                if code == PANIC_CODE {
                    panic!("a handler bug");
                }
                return Err(ERROR_INVALID_PARAMETER);
            }
        };
        self.record(line);
        Ok(())
    }
}

/// A request code the fake panics on, to check that no panic leaves a callback.
const PANIC_CODE: u32 = 0x7fff_0001;

/// A registered request with its ECB; unregistered on drop.
struct Request {
    fake: Arc<Fake>,
    cell: EcbCell,
}

impl Request {
    fn new(preload: &[u8], body: &[u8]) -> Self {
        let id = registry::next_id();
        let fake = Arc::new(Fake {
            id,
            body: Mutex::new(body.to_vec()),
            log: Mutex::new(Vec::new()),
        });
        registry::register(id, fake.clone());
        let translated = |out: &mut Vec<u8>| out.extend_from_slice(b"/www/index");
        let cell = EcbCell::new(
            id,
            &EcbStrings {
                method: b"POST",
                query: b"a=1",
                path_info: b"/index",
                content_type: b"text/plain\0ignored",
                path_translated: &translated,
                path_translated_len: 10,
            },
            preload.to_vec(),
            (preload.len() + body.len()) as u32,
        );
        Request { fake, cell }
    }

    fn ecb(&self) -> *mut EXTENSION_CONTROL_BLOCK {
        self.cell.ptr()
    }

    fn conn(&self) -> HCONN {
        // SAFETY: the ECB is valid while `self` lives.
        unsafe { (*self.ecb()).ConnID }
    }

    fn log(&self) -> Vec<String> {
        std::mem::take(&mut *self.fake.log.lock().unwrap())
    }

    /// `GetServerVariable` through the ECB, as an extension calls it.
    fn gsv(&self, name: &[u8], buf: *mut c_void, size: &mut u32) -> BOOL {
        // SAFETY: the ECB is valid; `name` is NUL-terminated; `buf` holds `*size` bytes.
        unsafe {
            let f = (*self.ecb()).GetServerVariable.unwrap();
            f(self.conn(), name.as_ptr(), buf, size)
        }
    }

    /// `ServerSupportFunction` through the ECB.
    fn ssf(&self, code: u32, buf: *mut c_void, size: *mut u32, data_type: *mut u32) -> BOOL {
        // SAFETY: the ECB is valid; the arguments are as the ABI defines them for `code`
        // (each test builds them so).
        unsafe {
            let f = (*self.ecb()).ServerSupportFunction.unwrap();
            f(self.conn(), code, buf, size, data_type)
        }
    }
}

impl Request {
    /// `ServerSupportFunction` with NULL `lpdwSize` and `lpdwDataType`.
    fn ssf1(&self, code: u32, buf: *mut c_void) -> BOOL {
        self.ssf(code, buf, std::ptr::null_mut(), std::ptr::null_mut())
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        registry::unregister(self.fake.id);
    }
}

/// A C string of the ECB.
///
/// # Safety
/// `p` is a NUL-terminated string.
unsafe fn ecb_str(p: *const u8) -> Vec<u8> {
    // SAFETY: guaranteed by the caller.
    unsafe { std::ffi::CStr::from_ptr(p.cast()) }
        .to_bytes()
        .to_vec()
}

#[test]
fn ecb_strings_and_preload() {
    let r = Request::new(b"pre", b"rest");
    // SAFETY: the ECB and its strings live as long as `r`.
    unsafe {
        let e = &*r.ecb();
        assert_eq!(e.cbSize, 192);
        assert_eq!(ecb_str(e.lpszMethod), b"POST");
        assert_eq!(ecb_str(e.lpszQueryString), b"a=1");
        assert_eq!(ecb_str(e.lpszPathInfo), b"/index");
        assert_eq!(ecb_str(e.lpszPathTranslated), b"/www/index");
        assert_eq!(ecb_str(e.lpszContentType), b"text/plain", "ends at its NUL");
        assert_eq!((e.cbAvailable, e.cbTotalBytes), (3, 7));
        // IIS NUL-terminates lpbData: one byte past cbAvailable is readable.
        assert_eq!(std::slice::from_raw_parts(e.lpbData, 4), b"pre\0");
    }
    let r = Request::new(b"", b"");
    // SAFETY: as above.
    unsafe {
        let e = &*r.ecb();
        assert_eq!(e.cbAvailable, 0);
        assert_eq!(*e.lpbData, 0, "an empty lpbData is \"\", never NULL");
    }
}

#[test]
fn ecb_fields_the_extension_writes() {
    let r = Request::new(b"", b"");
    // SAFETY: the extension's two writable fields, through the ECB pointer.
    unsafe {
        (*r.ecb()).dwHttpStatusCode = 404;
        let log = &raw mut (*r.ecb()).lpszLogData;
        for (i, b) in b"note\0junk".iter().enumerate() {
            (*log)[i] = *b as i8;
        }
    }
    assert_eq!(r.cell.http_status_code(), 404);
    assert_eq!(r.cell.log_data(), "note");
}

#[test]
fn get_server_variable_size_probing() {
    let r = Request::new(b"", b"");
    // NULL buffer and size 0, the usual probe: the size needed, NUL included.
    let mut size = 0;
    assert_eq!(
        r.gsv(b"SERVER_NAME\0", std::ptr::null_mut(), &mut size),
        FALSE
    );
    assert_eq!(last_error(), ERROR_INSUFFICIENT_BUFFER as i32);
    assert_eq!(size, 13);
    // One byte short: still too small, nothing written past the buffer.
    let mut buf = vec![0xAAu8; 12];
    let mut size = 12;
    assert_eq!(
        r.gsv(b"SERVER_NAME\0", buf.as_mut_ptr().cast(), &mut size),
        FALSE
    );
    assert_eq!(size, 13);
    // Exactly right: the value and its NUL, and the size written.
    let mut buf = vec![0xAAu8; 13];
    let mut size = 13;
    assert_eq!(
        r.gsv(b"SERVER_NAME\0", buf.as_mut_ptr().cast(), &mut size),
        TRUE
    );
    assert_eq!((&buf[..], size), (&b"example.test\0"[..], 13));
    // UNICODE_ values end in two NUL bytes.
    let mut buf = [0xAAu8; 8];
    let mut size = 8;
    assert_eq!(
        r.gsv(b"UNICODE_SERVER_NAME\0", buf.as_mut_ptr().cast(), &mut size),
        TRUE
    );
    assert_eq!((&buf[..6], size), (&b"e\0x\0\0\0"[..], 6));
    // An empty value is one NUL.
    let mut byte = 0xAAu8;
    let mut size = 1;
    assert_eq!(r.gsv(b"EMPTY\0", (&raw mut byte).cast(), &mut size), TRUE);
    assert_eq!((byte, size), (0, 1));
    // Unknown names and NULL arguments.
    let mut size = 0;
    assert_eq!(r.gsv(b"NOPE\0", std::ptr::null_mut(), &mut size), FALSE);
    assert_eq!(last_error(), ERROR_INVALID_INDEX as i32);
    // SAFETY: NULL name and size are checked by the callback.
    let ok = unsafe {
        let f = (*r.ecb()).GetServerVariable.unwrap();
        f(
            r.conn(),
            std::ptr::null(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(ok, FALSE);
    assert_eq!(last_error(), ERROR_INVALID_PARAMETER as i32);
}

#[test]
fn read_and_write_client() {
    let r = Request::new(b"", b"0123456789");
    let mut buf = [0u8; 4];
    let mut size = 4;
    // SAFETY: `buf` holds `size` bytes; the ECB is valid.
    let ok =
        unsafe { (*r.ecb()).ReadClient.unwrap()(r.conn(), buf.as_mut_ptr().cast(), &mut size) };
    assert_eq!((ok, size, &buf), (TRUE, 4, b"0123"));
    // SAFETY: NULL buffer: refused before any access.
    let ok = unsafe { (*r.ecb()).ReadClient.unwrap()(r.conn(), std::ptr::null_mut(), &mut size) };
    assert_eq!(ok, FALSE);
    let data = *b"out!";
    let mut n = 4;
    // SAFETY: `data` holds `n` bytes.
    let ok = unsafe {
        (*r.ecb()).WriteClient.unwrap()(r.conn(), data.as_ptr().cast_mut().cast(), &mut n, 0)
    };
    assert_eq!(ok, TRUE);
    let mut zero = 0;
    // SAFETY: zero bytes from a NULL buffer is allowed; NULL with bytes is refused.
    let (ok_zero, ok_null) = unsafe {
        let w = (*r.ecb()).WriteClient.unwrap();
        let ok_zero = w(r.conn(), std::ptr::null_mut(), &mut zero, 0);
        let mut some = 3;
        (ok_zero, w(r.conn(), std::ptr::null_mut(), &mut some, 0))
    };
    assert_eq!((ok_zero, ok_null), (TRUE, FALSE));
    assert_eq!(r.log(), ["write \"out!\" flags=0", "write \"\" flags=0"]);
}

#[test]
fn stale_hconn_is_refused() {
    let r = Request::new(b"", b"");
    let ecb = r.ecb();
    let conn = r.conn();
    // The ECB outlives the registration only inside this test: the callbacks must
    // refuse the unregistered HCONN without touching anything.
    registry::unregister(r.fake.id);
    let mut size = 0;
    // SAFETY: the ECB is still allocated (`r` lives).
    let ok = unsafe {
        (*ecb).GetServerVariable.unwrap()(
            conn,
            c"SERVER_NAME".as_ptr().cast(),
            std::ptr::null_mut(),
            &mut size,
        )
    };
    assert_eq!((ok, size), (FALSE, 0));
    assert_eq!(last_error(), ERROR_INVALID_PARAMETER as i32);
}

#[test]
fn registry_across_threads() {
    let ids: Vec<usize> = (0..3).map(|_| registry::next_id()).collect();
    let handles: Vec<_> = ids
        .iter()
        .map(|&id| {
            std::thread::spawn(move || {
                let fake = Arc::new(Fake {
                    id,
                    body: Mutex::new(Vec::new()),
                    log: Mutex::new(Vec::new()),
                });
                registry::register(id, fake);
                let found =
                    registry::lookup(std::ptr::without_provenance_mut(id)).expect("registered");
                assert_eq!(found.id(), id);
                registry::unregister(id);
                assert!(registry::lookup(std::ptr::without_provenance_mut(id)).is_none());
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert!(registry::lookup(std::ptr::without_provenance_mut(usize::MAX)).is_none());
}

#[test]
fn trim_nul_ends_at_the_first_nul() {
    assert_eq!(trim_nul(b"ab\0cd"), b"ab");
    assert_eq!(trim_nul(b"abc"), b"abc");
    assert_eq!(trim_nul(b"\0"), b"");
}
