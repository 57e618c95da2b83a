//! The unsafe layer against a fake server, small enough for Miri (`ci/miri.sh`): the
//! four ECB callbacks are Rust functions over plain state, so every pointer [`Ecb`] and
//! the exports hand over (size-probed buffers, `HSE_SEND_HEADER_EX_INFO`, `HSE_TF_INFO`
//! and its completion context, `HSE_VERSION_INFO`) is checked by Miri for bounds,
//! initialisation, aliasing and leaks. Nothing here needs Python or a loaded library.

use std::ffi::{CStr, c_void};
use std::ptr::NonNull;
use std::sync::Mutex;
use std::thread::JoinHandle;

use windows_sys::Win32::Foundation::{
    ERROR_INSUFFICIENT_BUFFER, ERROR_INVALID_INDEX, ERROR_INVALID_PARAMETER, FALSE, TRUE,
};
use windows_sys::Win32::System::Iis::{
    EXTENSION_CONTROL_BLOCK, HCONN, HSE_IO_ASYNC, HSE_REQ_CLOSE_CONNECTION, HSE_REQ_IS_KEEP_CONN,
    HSE_REQ_SEND_RESPONSE_HEADER_EX, HSE_REQ_SET_FLUSH_FLAG, HSE_REQ_TRANSMIT_FILE,
    HSE_SEND_HEADER_EX_INFO, HSE_STATUS_ERROR, HSE_STATUS_SUCCESS, HSE_TF_INFO, HSE_VERSION_INFO,
    PFN_HSE_IO_COMPLETION,
};
use windows_sys::core::{BOOL, PCSTR};

use super::ecb::{Ecb, RawFile};
use super::exports::{self, Extension};

/// What the fake server does with `HSE_REQ_TRANSMIT_FILE`.
#[derive(Clone, Copy)]
enum Transmit {
    /// Refuses it (FALSE, `ERROR_INVALID_PARAMETER`): no completion ever runs.
    Refuse,
    /// Accepts it and completes on another thread with these bytes and this error.
    Complete { bytes: u32, error: u32 },
}

/// The server side of one request: what the callbacks read and what they record.
struct Fake {
    vars: Vec<(&'static [u8], Vec<u8>)>,
    /// Whether `GetServerVariable` counts the NUL in the size it reports.
    counts_nul: bool,
    /// `GetServerVariable` always wants a buffer one byte larger than offered.
    always_short: bool,
    body: Mutex<(Vec<u8>, usize)>,
    /// At most this many bytes per `ReadClient` / `WriteClient`.
    chunk: usize,
    written: Mutex<Vec<u8>>,
    log: Mutex<Vec<String>>,
    transmit: Transmit,
    completer: Mutex<Option<JoinHandle<()>>>,
}

impl Fake {
    fn new() -> Self {
        Fake {
            vars: vec![
                (b"SERVER_NAME", b"example.test".to_vec()),
                (b"BIG", vec![b'x'; 1000]),
                (b"EMPTY", Vec::new()),
            ],
            counts_nul: true,
            always_short: false,
            body: Mutex::new((b"hello, body".to_vec(), 0)),
            chunk: 4,
            written: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            transmit: Transmit::Refuse,
            completer: Mutex::new(None),
        }
    }

    fn record(&self, what: String) {
        self.log.lock().unwrap().push(what);
    }

    /// Joins the thread that ran a TRANSMIT_FILE completion, if any.
    fn join(&self) {
        if let Some(t) = self.completer.lock().unwrap().take() {
            t.join().unwrap();
        }
    }
}

/// The extension's completion context, carried to the thread that completes (as a
/// pointer, so that it keeps its provenance).
struct Context(*mut c_void);

// SAFETY: the extension hands the context over for the completion, on any thread.
unsafe impl Send for Context {}

/// The fake's state from an `HCONN` (the address of a live [`Fake`]).
fn fake<'a>(hconn: HCONN) -> &'a Fake {
    // SAFETY: every ECB in these tests carries the address of a `Fake` that outlives it.
    unsafe { &*hconn.cast::<Fake>() }
}

unsafe extern "system" fn get_server_variable(
    hconn: HCONN,
    name: PCSTR,
    buf: *mut c_void,
    size: *mut u32,
) -> BOOL {
    let f = fake(hconn);
    // SAFETY: the extension passes a NUL-terminated name and a valid size.
    let (name, offered) = unsafe { (CStr::from_ptr(name.cast()).to_bytes(), *size) };
    let Some((_, value)) = f.vars.iter().find(|(n, _)| *n == name) else {
        super::ecb::set_last_error(ERROR_INVALID_INDEX);
        return FALSE;
    };
    let needed = value.len() as u32 + 1;
    if f.always_short || buf.is_null() || offered < needed {
        // SAFETY: as above.
        unsafe { *size = offered.max(needed) + u32::from(f.always_short) };
        super::ecb::set_last_error(ERROR_INSUFFICIENT_BUFFER);
        return FALSE;
    }
    // SAFETY: `buf` holds `offered` >= `needed` writable bytes (the ABI's promise, which
    // Miri checks against the extension's allocation).
    unsafe {
        std::ptr::copy_nonoverlapping(value.as_ptr(), buf.cast::<u8>(), value.len());
        *buf.cast::<u8>().add(value.len()) = 0;
        *size = if f.counts_nul { needed } else { needed - 1 };
    }
    TRUE
}

unsafe extern "system" fn read_client(hconn: HCONN, buf: *mut c_void, size: *mut u32) -> BOOL {
    let f = fake(hconn);
    let mut body = f.body.lock().unwrap();
    let (data, pos) = &mut *body;
    // SAFETY: the extension passes a valid size.
    let asked = unsafe { *size } as usize;
    let n = asked.min(f.chunk).min(data.len() - *pos);
    // SAFETY: `buf` holds `asked` >= `n` writable bytes (ABI).
    unsafe {
        std::ptr::copy_nonoverlapping(data[*pos..].as_ptr(), buf.cast::<u8>(), n);
        *size = n as u32;
    }
    *pos += n;
    TRUE
}

unsafe extern "system" fn write_client(
    hconn: HCONN,
    buf: *mut c_void,
    bytes: *mut u32,
    flags: u32,
) -> BOOL {
    let f = fake(hconn);
    assert_eq!(flags, 0, "pyisapie writes synchronously");
    // SAFETY: the extension passes a valid count and `buf` readable for it (ABI).
    let data = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), *bytes as usize) };
    // A partial write: the extension must come back for the rest.
    let n = data.len().min(f.chunk);
    f.written.lock().unwrap().extend_from_slice(&data[..n]);
    // SAFETY: as above.
    unsafe { *bytes = n as u32 };
    TRUE
}

/// A counted string of `HSE_SEND_HEADER_EX_INFO`, read the way the host reads it.
///
/// # Safety
/// `p` is valid for `len` bytes.
unsafe fn counted(p: PCSTR, len: u32) -> String {
    // SAFETY: guaranteed by the caller.
    let bytes = unsafe { std::slice::from_raw_parts(p, len as usize) };
    String::from_utf8_lossy(bytes).into_owned()
}

unsafe extern "system" fn server_support_function(
    hconn: HCONN,
    request: u32,
    buf: *mut c_void,
    _size: *mut u32,
    _data_type: *mut u32,
) -> BOOL {
    let f = fake(hconn);
    match request {
        HSE_REQ_SEND_RESPONSE_HEADER_EX => {
            // SAFETY: the extension passes an HSE_SEND_HEADER_EX_INFO whose strings hold
            // their counts (Miri checks the counts against the allocations).
            let line = unsafe {
                let info = &*buf.cast::<HSE_SEND_HEADER_EX_INFO>();
                format!(
                    "header {:?} {:?} keep={}",
                    counted(info.pszStatus, info.cchStatus),
                    counted(info.pszHeader, info.cchHeader),
                    info.fKeepConn
                )
            };
            f.record(line);
            TRUE
        }
        HSE_REQ_IS_KEEP_CONN => {
            // SAFETY: the extension passes a BOOL to answer in.
            unsafe { *buf.cast::<BOOL>() = TRUE };
            TRUE
        }
        HSE_REQ_SET_FLUSH_FLAG => {
            f.record(format!("flush {}", buf as usize));
            TRUE
        }
        HSE_REQ_CLOSE_CONNECTION => {
            f.record("close".to_owned());
            TRUE
        }
        HSE_REQ_TRANSMIT_FILE => {
            // SAFETY: the extension passes an HSE_TF_INFO, read by value here.
            let tf = unsafe { std::ptr::read(buf.cast::<HSE_TF_INFO>()) };
            f.record(format!(
                "transmit fd={} offset={} len={} flags={:#x}",
                tf.hFile as isize, tf.Offset, tf.BytesToWrite, tf.dwFlags
            ));
            match f.transmit {
                Transmit::Refuse => {
                    super::ecb::set_last_error(ERROR_INVALID_PARAMETER);
                    FALSE
                }
                Transmit::Complete { bytes, error } => {
                    let func: PFN_HSE_IO_COMPLETION = tf.pfnHseIO;
                    let func = func.expect("a completion routine");
                    let context = Context(tf.pContext);
                    // Completes on another thread, as the host does (never inline).
                    let t = std::thread::spawn(move || {
                        let context = context;
                        // SAFETY: the routine and context the extension registered.
                        unsafe { func(std::ptr::null_mut(), context.0, bytes, error) }
                    });
                    *f.completer.lock().unwrap() = Some(t);
                    TRUE
                }
            }
        }
        _ => {
            super::ecb::set_last_error(ERROR_INVALID_PARAMETER);
            FALSE
        }
    }
}

/// An ECB for `fake`, with the four callbacks and a preloaded body.
fn ecb_for(fake: &Fake, preload: &mut [u8]) -> EXTENSION_CONTROL_BLOCK {
    EXTENSION_CONTROL_BLOCK {
        cbSize: size_of::<EXTENSION_CONTROL_BLOCK>() as u32,
        ConnID: std::ptr::from_ref(fake).cast_mut().cast(),
        lpszMethod: c"POST".as_ptr().cast_mut().cast(),
        lpszQueryString: c"a=1".as_ptr().cast_mut().cast(),
        lpszContentType: std::ptr::null_mut(),
        cbTotalBytes: 42,
        cbAvailable: preload.len() as u32,
        lpbData: preload.as_mut_ptr(),
        GetServerVariable: Some(get_server_variable),
        ReadClient: Some(read_client),
        WriteClient: Some(write_client),
        ServerSupportFunction: Some(server_support_function),
        ..Default::default()
    }
}

/// Runs `f` with an [`Ecb`] on `fake`'s ECB, then returns the ECB as the extension left it.
fn with_ecb(fake: &Fake, f: impl FnOnce(Ecb)) -> EXTENSION_CONTROL_BLOCK {
    let mut preload = *b"pre";
    let mut raw = ecb_for(fake, &mut preload);
    let ptr = NonNull::from(&mut raw);
    // SAFETY: `raw` outlives the handle, which does not escape `f`.
    f(unsafe { Ecb::new(ptr) });
    raw
}

#[test]
fn ecb_fields() {
    let fake = Fake::new();
    let raw = with_ecb(&fake, |ecb| {
        assert_eq!(ecb.method(), b"POST");
        assert_eq!(ecb.query_string(), b"a=1");
        assert_eq!(ecb.content_type(), b"", "NULL reads as empty");
        assert_eq!(ecb.total_bytes(), 42);
        assert_eq!(ecb.preload(), b"pre");
        ecb.set_status_code(404);
    });
    assert_eq!(raw.dwHttpStatusCode, 404);
}

#[test]
fn ecb_preload_null_is_empty() {
    let fake = Fake::new();
    let mut raw = ecb_for(&fake, &mut []);
    raw.lpbData = std::ptr::null_mut();
    raw.cbAvailable = 7; // a NULL pointer wins over the count
    // SAFETY: `raw` outlives the handle.
    let ecb = unsafe { Ecb::new(NonNull::from(&mut raw)) };
    assert_eq!(ecb.preload(), b"");
}

#[test]
fn server_variable_size_probing() {
    let fake = Fake::new();
    with_ecb(&fake, |ecb| {
        let mut buf = Vec::new();
        assert!(ecb.server_variable(c"SERVER_NAME", &mut buf).unwrap());
        assert_eq!(buf, b"example.test");
        // Larger than the first offer (256): one probe, then a retry with room.
        assert!(ecb.server_variable(c"BIG", &mut buf).unwrap());
        assert_eq!(buf, vec![b'x'; 1000]);
        assert!(ecb.server_variable(c"EMPTY", &mut buf).unwrap());
        assert_eq!(buf, b"");
        assert!(!ecb.server_variable(c"NOPE", &mut buf).unwrap());
        // Appending keeps what is there.
        let mut out = b"name=".to_vec();
        assert!(
            ecb.append_server_variable(c"SERVER_NAME", &mut out)
                .unwrap()
        );
        assert_eq!(out, b"name=example.test");
    });
}

#[test]
fn server_variable_without_the_nul_in_the_size() {
    let mut fake = Fake::new();
    fake.counts_nul = false;
    with_ecb(&fake, |ecb| {
        let mut buf = Vec::new();
        assert!(ecb.server_variable(c"SERVER_NAME", &mut buf).unwrap());
        assert_eq!(buf, b"example.test");
    });
}

#[test]
fn server_variable_that_never_fits_is_an_error() {
    let mut fake = Fake::new();
    fake.always_short = true;
    with_ecb(&fake, |ecb| {
        let mut buf = Vec::new();
        let err = ecb.server_variable(c"SERVER_NAME", &mut buf).unwrap_err();
        assert!(err.to_string().contains("larger buffer"), "{err}");
    });
}

#[test]
fn read_and_write_client_in_pieces() {
    let fake = Fake::new();
    with_ecb(&fake, |ecb| {
        let mut body = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            let n = ecb.read_client(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            assert!(n <= 4, "the fake hands out 4 bytes at a time");
            body.extend_from_slice(&buf[..n]);
        }
        assert_eq!(body, b"hello, body");
        // The fake takes 4 bytes per call: write_client loops until all are written.
        ecb.write_client(b"0123456789").unwrap();
        ecb.write_client(b"").unwrap();
    });
    assert_eq!(*fake.written.lock().unwrap(), b"0123456789");
}

#[test]
fn support_functions() {
    let fake = Fake::new();
    with_ecb(&fake, |ecb| {
        ecb.send_response_header_ex(c"200 OK", c"A: b\r\n\r\n", true)
            .unwrap();
        assert!(ecb.is_keep_conn());
        ecb.set_flush_flag(true).unwrap();
        ecb.close_connection().unwrap();
    });
    assert_eq!(
        *fake.log.lock().unwrap(),
        [
            "header \"200 OK\" \"A: b\\r\\n\\r\\n\" keep=1",
            "flush 1",
            "close"
        ]
    );
}

#[test]
fn transmit_file_refused_takes_its_context_back() {
    // Refused: the completion never runs, and the reference handed over as the context
    // is taken back (Miri's leak check fails this test otherwise).
    let fake = Fake::new();
    with_ecb(&fake, |ecb| {
        let err = ecb
            .transmit_file(RawFile::from_handle(3).unwrap(), 10, 20)
            .unwrap_err();
        assert!(err.to_string().contains("ERROR_INVALID_PARAMETER"), "{err}");
    });
    assert_eq!(
        *fake.log.lock().unwrap(),
        [format!(
            "transmit fd=3 offset=10 len=20 flags={HSE_IO_ASYNC:#x}"
        )]
    );
}

#[test]
fn transmit_file_completes_on_another_thread() {
    let mut fake = Fake::new();
    fake.transmit = Transmit::Complete {
        bytes: 20,
        error: 0,
    };
    with_ecb(&fake, |ecb| {
        let sent = ecb
            .transmit_file(RawFile::from_handle(3).unwrap(), 0, 20)
            .unwrap();
        assert_eq!(sent, 20);
    });
    fake.join();
}

#[test]
fn transmit_file_completion_error() {
    let mut fake = Fake::new();
    fake.transmit = Transmit::Complete {
        bytes: 0,
        error: 10054,
    };
    with_ecb(&fake, |ecb| {
        let err = ecb
            .transmit_file(RawFile::from_handle(3).unwrap(), 0, 20)
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    });
    fake.join();
}

/// An extension with a description longer than `HSE_VERSION_INFO` holds.
struct Wordy;

impl Extension for Wordy {
    fn start() -> Result<String, ()> {
        Ok("d".repeat(300))
    }
    fn handle(ecb: Ecb) -> u32 {
        ecb.set_status_code(201);
        HSE_STATUS_SUCCESS
    }
    fn terminate(_flags: u32) {}
}

/// An extension that panics everywhere.
struct Panicky;

impl Extension for Panicky {
    fn start() -> Result<String, ()> {
        panic!("start")
    }
    fn handle(_ecb: Ecb) -> u32 {
        panic!("handle")
    }
    fn terminate(_flags: u32) {
        panic!("terminate")
    }
}

#[test]
fn get_extension_version_truncates_the_description() {
    let mut info = HSE_VERSION_INFO {
        dwExtensionVersion: 0,
        lpszExtensionDesc: [1; 256],
    };
    // SAFETY: a writable HSE_VERSION_INFO.
    let ok = unsafe { exports::get_extension_version::<Wordy>(&mut info) };
    assert_eq!(ok, TRUE);
    assert_eq!(info.dwExtensionVersion >> 16, 8);
    assert!(
        info.lpszExtensionDesc[..255]
            .iter()
            .all(|&c| c == b'd' as i8)
    );
    assert_eq!(
        info.lpszExtensionDesc[255], 0,
        "NUL-terminated within the array"
    );
    // SAFETY: NULL is allowed.
    let ok = unsafe { exports::get_extension_version::<Wordy>(std::ptr::null_mut()) };
    assert_eq!(ok, FALSE);
}

#[test]
fn http_extension_proc_passes_the_ecb() {
    let fake = Fake::new();
    let mut preload: [u8; 0] = [];
    let mut raw = ecb_for(&fake, &mut preload);
    // SAFETY: a valid ECB, for the duration of the call.
    let status = unsafe { exports::http_extension_proc::<Wordy>(&mut raw) };
    assert_eq!(status, HSE_STATUS_SUCCESS);
    assert_eq!(raw.dwHttpStatusCode, 201);
    // SAFETY: NULL is allowed.
    let status = unsafe { exports::http_extension_proc::<Wordy>(std::ptr::null_mut()) };
    assert_eq!(status, HSE_STATUS_ERROR);
}

#[test]
fn panics_stop_at_the_exports() {
    let fake = Fake::new();
    let mut preload: [u8; 0] = [];
    let mut raw = ecb_for(&fake, &mut preload);
    let mut info = HSE_VERSION_INFO {
        dwExtensionVersion: 0,
        lpszExtensionDesc: [0; 256],
    };
    // SAFETY: valid arguments; the panics are caught inside.
    unsafe {
        assert_eq!(exports::get_extension_version::<Panicky>(&mut info), FALSE);
        assert_eq!(
            exports::http_extension_proc::<Panicky>(&mut raw),
            HSE_STATUS_ERROR
        );
    }
    assert_eq!(exports::terminate_extension::<Panicky>(0), TRUE);
}
