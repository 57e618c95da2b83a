//! Test support (`cfg(test)`): own-GIL sub-interpreters made the way the reference
//! prescribes, and a fake server for one request, so that the WSGI types can be driven in
//! several interpreters at once from safe test code. The production version of the
//! interpreter code is `ffi::interp`'s.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::Mutex;

use pyo3::ffi;
use pyo3::prelude::*;
use windows_sys::Win32::Foundation::{FALSE, TRUE};
use windows_sys::Win32::System::Iis::{
    EXTENSION_CONTROL_BLOCK, HCONN, HSE_REQ_IS_KEEP_CONN, HSE_REQ_SEND_RESPONSE_HEADER_EX,
    HSE_SEND_HEADER_EX_INFO,
};
use windows_sys::core::{BOOL, PCSTR};

use crate::ffi::Ecb;

/// How many owned references this thread dropped outside their interpreter (and leaked).
pub(crate) fn leaked() -> usize {
    super::owned::LEAKED.get()
}

/// Starts Python for the test process (once), with the GIL released afterwards.
pub(crate) fn start_python() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        crate::ffi::python::initialize_python(crate::ffi::python::PythonSettings {
            optimize: 0,
            write_bytecode: false,
            home: None,
        })
        .expect("Python starts");
    });
}

/// A sub-interpreter with its own GIL (`use_main_obmalloc = 0`,
/// `check_multi_interp_extensions = 1`), made on this thread and used only from it (it is
/// neither `Send` nor `Sync`); ended with `Py_EndInterpreter` when dropped.
pub(crate) struct OwnGil {
    tstate: NonNull<ffi::PyThreadState>,
}

impl OwnGil {
    /// Makes the interpreter (Python must be started, and this thread not attached).
    pub(crate) fn new() -> Result<Self, String> {
        let config = ffi::PyInterpreterConfig {
            use_main_obmalloc: 0,
            allow_fork: 0,
            allow_exec: 0,
            allow_threads: 1,
            allow_daemon_threads: 0,
            check_multi_interp_extensions: 1,
            gil: ffi::PyInterpreterConfig_OWN_GIL,
        };
        let mut tstate = std::ptr::null_mut();
        // SAFETY: Python is started and this thread holds no thread state. A fresh thread
        // state of the main interpreter is made current (taking the main GIL), as
        // Py_NewInterpreterFromConfig requires; on success the new interpreter's state is
        // current with its own GIL and the main GIL is released; on failure (3.13) the
        // main state is current again.
        let main = unsafe {
            let main = ffi::PyThreadState_New(ffi::PyInterpreterState_Main());
            ffi::PyEval_RestoreThread(main);
            main
        };
        // SAFETY: as above; `config` and `tstate` are valid for the call.
        let status = unsafe { ffi::Py_NewInterpreterFromConfig(&mut tstate, &config) };
        // SAFETY: only inspects the status.
        let failed = unsafe { ffi::PyStatus_Exception(status) } != 0;
        if failed || tstate.is_null() {
            // SAFETY: the main thread state is current again (3.13; the test needs 3.12
            // or later, and 3.12.1's failure path is not exercised here).
            unsafe {
                ffi::PyThreadState_Clear(main);
                ffi::PyThreadState_DeleteCurrent();
            }
            return Err("Py_NewInterpreterFromConfig failed".to_owned());
        }
        // SAFETY: the new interpreter's state is current: release its GIL. Then dispose of
        // the main thread state, which must be current (with the main GIL) to be cleared.
        unsafe {
            ffi::PyEval_SaveThread();
            ffi::PyEval_RestoreThread(main);
            ffi::PyThreadState_Clear(main);
            ffi::PyThreadState_DeleteCurrent();
        }
        Ok(Self {
            tstate: NonNull::new(tstate).ok_or("no thread state")?,
        })
    }

    /// Runs `f` in the interpreter: its thread state made current with
    /// `PyEval_RestoreThread` (never `PyGILState_*`), then `Python::attach`, then left with
    /// `PyEval_SaveThread`.
    pub(crate) fn run<R>(&self, f: impl for<'py> FnOnce(Python<'py>) -> R) -> R {
        // SAFETY: the thread state is this interpreter's, made on this thread, and not
        // current; this thread holds no other.
        unsafe { ffi::PyEval_RestoreThread(self.tstate.as_ptr()) };
        struct Leave;
        impl Drop for Leave {
            fn drop(&mut self) {
                // SAFETY: the interpreter's state is current (restored above).
                unsafe { ffi::PyEval_SaveThread() };
            }
        }
        let _leave = Leave;
        Python::attach(f)
    }
}

impl Drop for OwnGil {
    fn drop(&mut self) {
        // SAFETY: as in `run`; Py_EndInterpreter needs the interpreter's own state current
        // and leaves none current.
        unsafe {
            ffi::PyEval_RestoreThread(self.tstate.as_ptr());
            ffi::Py_EndInterpreter(self.tstate.as_ptr());
        }
    }
}

/// The server side of one fake request: its body, what was written, the head sent.
struct Server {
    body: Mutex<(Vec<u8>, usize)>,
    written: Mutex<Vec<u8>>,
    head: Mutex<Vec<u8>>,
}

/// A fake `EXTENSION_CONTROL_BLOCK` for one request, with ReadClient, WriteClient and the
/// ServerSupportFunction requests the response writer makes.
pub(crate) struct FakeRequest {
    /// Both from `Box::into_raw`, freed on drop.
    ecb: NonNull<EXTENSION_CONTROL_BLOCK>,
    server: NonNull<Server>,
}

// SAFETY (for the callbacks below): `connid` is the `Server` the ECB was made with, alive
// as long as the `FakeRequest`; the buffers are the ones the ECB's contract describes.
fn server<'a>(connid: HCONN) -> &'a Server {
    // SAFETY: see above.
    unsafe { &*connid.cast::<Server>() }
}

unsafe extern "system" fn read_client(connid: HCONN, buffer: *mut c_void, size: *mut u32) -> BOOL {
    let mut body = server(connid).body.lock().unwrap();
    let (data, pos) = &mut *body;
    // SAFETY: `size` points to the buffer's size, which `buffer` holds.
    let out = unsafe { std::slice::from_raw_parts_mut(buffer.cast::<u8>(), *size as usize) };
    let n = out.len().min(data.len() - *pos);
    out[..n].copy_from_slice(&data[*pos..*pos + n]);
    *pos += n;
    // SAFETY: as above.
    unsafe { *size = n as u32 };
    TRUE
}

unsafe extern "system" fn write_client(
    connid: HCONN,
    buffer: *mut c_void,
    bytes: *mut u32,
    _reserved: u32,
) -> BOOL {
    // SAFETY: `buffer` holds `*bytes` bytes.
    let data = unsafe { std::slice::from_raw_parts(buffer.cast::<u8>(), *bytes as usize) };
    server(connid)
        .written
        .lock()
        .unwrap()
        .extend_from_slice(data);
    TRUE
}

unsafe extern "system" fn server_support_function(
    connid: HCONN,
    request: u32,
    buffer: *mut c_void,
    _size: *mut u32,
    _data_type: *mut u32,
) -> BOOL {
    match request {
        HSE_REQ_SEND_RESPONSE_HEADER_EX => {
            // SAFETY: the request passes an HSE_SEND_HEADER_EX_INFO with its strings.
            let info = unsafe { &*buffer.cast::<HSE_SEND_HEADER_EX_INFO>() };
            let mut head = server(connid).head.lock().unwrap();
            // SAFETY: the strings hold the lengths given.
            unsafe {
                head.extend_from_slice(std::slice::from_raw_parts(
                    info.pszStatus,
                    info.cchStatus as usize,
                ));
                head.extend_from_slice(b"\r\n");
                head.extend_from_slice(std::slice::from_raw_parts(
                    info.pszHeader,
                    info.cchHeader as usize,
                ));
            }
            TRUE
        }
        HSE_REQ_IS_KEEP_CONN => {
            // SAFETY: the request passes a BOOL to fill.
            unsafe { *buffer.cast::<BOOL>() = TRUE };
            TRUE
        }
        _ => TRUE,
    }
}

unsafe extern "system" fn get_server_variable(
    _connid: HCONN,
    _name: PCSTR,
    _buffer: *mut c_void,
    _size: *mut u32,
) -> BOOL {
    FALSE
}

impl FakeRequest {
    /// A POST request whose body is `body` (none of it preloaded).
    pub(crate) fn new(body: &[u8]) -> Self {
        let server = NonNull::from(Box::leak(Box::new(Server {
            body: Mutex::new((body.to_vec(), 0)),
            written: Mutex::new(Vec::new()),
            head: Mutex::new(Vec::new()),
        })));
        // SAFETY: EXTENSION_CONTROL_BLOCK is plain data (integers, pointers and optional
        // function pointers), for which all zeroes is valid.
        let mut ecb: Box<EXTENSION_CONTROL_BLOCK> = Box::new(unsafe { std::mem::zeroed() });
        ecb.cbSize = size_of::<EXTENSION_CONTROL_BLOCK>() as u32;
        ecb.ConnID = server.as_ptr().cast();
        ecb.lpszMethod = c"POST".as_ptr().cast_mut().cast();
        ecb.cbTotalBytes = body.len() as u32;
        ecb.ReadClient = Some(read_client);
        ecb.WriteClient = Some(write_client);
        ecb.ServerSupportFunction = Some(server_support_function);
        ecb.GetServerVariable = Some(get_server_variable);
        Self {
            ecb: NonNull::from(Box::leak(ecb)),
            server,
        }
    }

    /// The handle the extension's code takes.
    pub(crate) fn ecb(&self) -> Ecb {
        // SAFETY: the ECB and its server live as long as `self`; the callbacks may be
        // called from any thread (they lock their state). Callers drop what holds the
        // handle (the request's `Link`) before `self`.
        unsafe { Ecb::new(self.ecb) }
    }

    /// The status line and header block sent, then the body bytes written.
    pub(crate) fn sent(&self) -> (Vec<u8>, Vec<u8>) {
        // SAFETY: the server lives as long as `self`.
        let server = unsafe { self.server.as_ref() };
        (
            server.head.lock().unwrap().clone(),
            server.written.lock().unwrap().clone(),
        )
    }
}

impl Drop for FakeRequest {
    fn drop(&mut self) {
        // SAFETY: both were leaked from boxes in `new` and nothing uses them any more.
        unsafe {
            drop(Box::from_raw(self.ecb.as_ptr()));
            drop(Box::from_raw(self.server.as_ptr()));
        }
    }
}
