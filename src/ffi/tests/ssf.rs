//! `ServerSupportFunction` through the ECB: every request code the decoder reads
//! pointers for, with the structures a C extension passes.

use std::ffi::c_void;
use std::sync::Mutex;

use windows_sys::Win32::Foundation::{
    ERROR_INSUFFICIENT_BUFFER, ERROR_INVALID_PARAMETER, FALSE, TRUE,
};
use windows_sys::Win32::System::Iis::{self as iis, EXTENSION_CONTROL_BLOCK};
use windows_sys::Win32::System::Iis::{
    HSE_CUSTOM_ERROR_INFO, HSE_RESPONSE_VECTOR, HSE_SEND_HEADER_EX_INFO, HSE_TF_INFO,
    HSE_URL_MAPEX_INFO, HSE_VECTOR_ELEMENT,
};
use windows_sys::core::BOOL;

use super::super::Completion;
use super::super::error::last_error;
use super::{PANIC_CODE, Request, ecb_str};

#[test]
fn send_response_headers() {
    let r = Request::new(b"", b"");
    let null = std::ptr::null_mut();
    let mut headers = *b"A: b\r\n\r\n\0";
    let status = c"200 OK".as_ptr().cast_mut().cast();
    assert_eq!(
        r.ssf(
            iis::HSE_REQ_SEND_RESPONSE_HEADER,
            status,
            std::ptr::null_mut(),
            headers.as_mut_ptr().cast()
        ),
        TRUE
    );
    // _EX: counted strings, a count that includes the NUL, and a count of 0
    // (NUL-terminated).
    let mut info = HSE_SEND_HEADER_EX_INFO {
        pszStatus: c"201 Created".as_ptr().cast(),
        pszHeader: b"X: y\r\n\r\n".as_ptr(),
        cchStatus: 12,
        cchHeader: 8,
        fKeepConn: TRUE,
    };
    assert_eq!(
        r.ssf1(iis::HSE_REQ_SEND_RESPONSE_HEADER_EX, (&raw mut info).cast()),
        TRUE
    );
    info.pszHeader = c"Z: 1\r\n\r\n".as_ptr().cast();
    info.cchHeader = 0;
    info.fKeepConn = FALSE;
    assert_eq!(
        r.ssf1(iis::HSE_REQ_SEND_RESPONSE_HEADER_EX, (&raw mut info).cast()),
        TRUE
    );
    assert_eq!(r.ssf1(iis::HSE_REQ_SEND_RESPONSE_HEADER_EX, null), FALSE);
    assert_eq!(
        r.log(),
        [
            "header Some(\"200 OK\") \"A: b\\r\\n\\r\\n\"",
            "header-ex Some(\"201 Created\") \"X: y\\r\\n\\r\\n\" keep=true",
            "header-ex Some(\"201 Created\") \"Z: 1\\r\\n\\r\\n\" keep=false",
        ]
    );
}

#[test]
fn map_url_to_path_rewrites_the_callers_buffer() {
    let r = Request::new(b"", b"");
    // The buffer holds the URL and receives the path: the decoder copies the URL
    // before it hands the same buffer out for writing.
    let mut buf = [0u8; 32];
    buf[..4].copy_from_slice(b"/a/b");
    let mut size = 32;
    let ok = r.ssf(
        iis::HSE_REQ_MAP_URL_TO_PATH,
        buf.as_mut_ptr().cast(),
        &mut size,
        std::ptr::null_mut(),
    );
    assert_eq!((ok, size), (TRUE, 9));
    assert_eq!(&buf[..9], b"/www/a/b\0");
    // Too small: the size needed, nothing written past the 5 bytes offered.
    let mut small = *b"/a/b\0";
    let mut size = 5;
    let ok = r.ssf(
        iis::HSE_REQ_MAP_URL_TO_PATH,
        small.as_mut_ptr().cast(),
        &mut size,
        std::ptr::null_mut(),
    );
    assert_eq!(
        (ok, size, last_error()),
        (FALSE, 9, ERROR_INSUFFICIENT_BUFFER as i32)
    );
    assert_eq!(
        r.ssf(
            iis::HSE_REQ_MAP_URL_TO_PATH,
            std::ptr::null_mut(),
            &mut size,
            std::ptr::null_mut()
        ),
        FALSE
    );
    // No NUL within the bytes offered: refused, and nothing read past them (the
    // bytes after the buffer are not the caller's; Miri checks that none is read).
    let mut unterminated = *b"/a/b";
    let mut size = 4;
    let ok = r.ssf(
        iis::HSE_REQ_MAP_URL_TO_PATH,
        unterminated.as_mut_ptr().cast(),
        &mut size,
        std::ptr::null_mut(),
    );
    assert_eq!((ok, last_error()), (FALSE, ERROR_INVALID_PARAMETER as i32));
    assert_eq!(
        r.log(),
        ["map \"/a/b\" offered=32", "map \"/a/b\" offered=5"]
    );
}

#[test]
fn map_url_to_path_ex_with_the_url_in_the_structure() {
    let r = Request::new(b"", b"");
    let mut info = HSE_URL_MAPEX_INFO {
        lpszPath: [0; 260],
        dwFlags: 0,
        cchMatchingPath: 0,
        cchMatchingURL: 0,
        dwReserved1: 0,
        dwReserved2: 0,
    };
    // Extensions often pass info.lpszPath itself as the URL: both pointers come from
    // one, as a C caller's would.
    let info_ptr = &raw mut info;
    // SAFETY: in bounds of `info`.
    let path = unsafe { (&raw mut (*info_ptr).lpszPath).cast::<u8>() };
    // SAFETY: `path` holds 260 bytes.
    unsafe { std::ptr::copy_nonoverlapping(c"/x".as_ptr().cast(), path, 3) };
    let mut size = 0u32;
    let ok = r.ssf(
        iis::HSE_REQ_MAP_URL_TO_PATH_EX,
        path.cast(),
        &mut size,
        info_ptr.cast(),
    );
    assert_eq!((ok, size), (TRUE, 7));
    // SAFETY: `path` is still valid, and NUL-terminated by the handler.
    assert_eq!(unsafe { ecb_str(path) }, b"/www/x");
    assert_eq!(info.cchMatchingURL, 2);
    // NULL size is allowed; a NULL structure is not.
    let info_ptr = &raw mut info;
    let ok = r.ssf(
        iis::HSE_REQ_MAP_URL_TO_PATH_EX,
        c"/y".as_ptr().cast_mut().cast(),
        std::ptr::null_mut(),
        info_ptr.cast(),
    );
    assert_eq!(ok, TRUE);
    let ok = r.ssf(
        iis::HSE_REQ_MAP_URL_TO_PATH_EX,
        c"/y".as_ptr().cast_mut().cast(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    assert_eq!(ok, FALSE);
    assert_eq!(r.log(), ["map-ex \"/x\"", "map-ex \"/y\""]);
}

#[test]
fn transmit_file_and_vector_send() {
    let r = Request::new(b"", b"");
    let null = std::ptr::null_mut();
    let mut head = *b"HEAD";
    let mut tail = *b"TAIL";
    let mut tf = HSE_TF_INFO {
        pfnHseIO: None,
        pContext: null,
        hFile: std::ptr::without_provenance_mut(7),
        pszStatusCode: c"200 OK".as_ptr().cast(),
        BytesToWrite: 100,
        Offset: 5,
        pHead: head.as_mut_ptr().cast(),
        HeadLength: 4,
        pTail: tail.as_mut_ptr().cast(),
        TailLength: 4,
        dwFlags: 0,
    };
    assert_eq!(
        r.ssf1(iis::HSE_REQ_TRANSMIT_FILE, (&raw mut tf).cast()),
        TRUE
    );
    // A NULL head with a length reads as empty.
    tf.pHead = null;
    tf.pszStatusCode = std::ptr::null();
    assert_eq!(
        r.ssf1(iis::HSE_REQ_TRANSMIT_FILE, (&raw mut tf).cast()),
        TRUE
    );
    let mut mem = *b"..body..";
    let mut elements = [
        HSE_VECTOR_ELEMENT {
            ElementType: iis::HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER,
            pvContext: mem.as_mut_ptr().cast(),
            cbOffset: 2,
            cbSize: 4,
        },
        HSE_VECTOR_ELEMENT {
            ElementType: iis::HSE_VECTOR_ELEMENT_TYPE_FILE_HANDLE,
            pvContext: std::ptr::without_provenance_mut(9),
            cbOffset: 1,
            cbSize: 0,
        },
    ];
    let mut v = HSE_RESPONSE_VECTOR {
        dwFlags: 0,
        pszStatus: c"200 OK".as_ptr().cast_mut().cast(),
        pszHeaders: std::ptr::null_mut(),
        nElementCount: 2,
        lpElementArray: elements.as_mut_ptr(),
    };
    assert_eq!(r.ssf1(iis::HSE_REQ_VECTOR_SEND, (&raw mut v).cast()), TRUE);
    // A bad element type, and a NULL array with a count, are refused.
    // (Through the array pointer the vector holds, as a C caller would: a write through
    // `elements` itself would invalidate that pointer.)
    // SAFETY: the array has two elements.
    unsafe { (*v.lpElementArray.add(1)).ElementType = 7 };
    assert_eq!(r.ssf1(iis::HSE_REQ_VECTOR_SEND, (&raw mut v).cast()), FALSE);
    v.lpElementArray = null.cast();
    assert_eq!(r.ssf1(iis::HSE_REQ_VECTOR_SEND, (&raw mut v).cast()), FALSE);
    assert_eq!(last_error(), ERROR_INVALID_PARAMETER as i32);
    v.nElementCount = 0;
    assert_eq!(r.ssf1(iis::HSE_REQ_VECTOR_SEND, (&raw mut v).cast()), TRUE);
    assert_eq!(
        r.log(),
        [
            "transmit status=Some(\"200 OK\") head=\"HEAD\" fd=7 offset=5 len=100 tail=\"TAIL\" completion=false",
            "transmit status=None head=\"\" fd=7 offset=5 len=100 tail=\"TAIL\" completion=false",
            "vector Some(\"200 OK\") None [\"mem \\\"body\\\"\", \"file 9 1 0\"]",
            "vector Some(\"200 OK\") None []",
        ]
    );
}

/// The extension's completion routine: records its arguments in the context.
unsafe extern "system" fn on_completion(
    _ecb: *mut EXTENSION_CONTROL_BLOCK,
    context: *mut c_void,
    bytes: u32,
    error: u32,
) {
    // SAFETY: the context is the `Mutex` the test registered, alive until completion.
    let seen = unsafe { &*context.cast::<Mutex<Vec<(u32, u32)>>>() };
    seen.lock().unwrap().push((bytes, error));
}

#[test]
fn io_completion_and_async_read() {
    let r = Request::new(b"", b"abcdef");
    let seen = Mutex::new(Vec::<(u32, u32)>::new());
    let func = on_completion as unsafe extern "system" fn(_, _, _, _);
    let context = std::ptr::from_ref(&seen).cast_mut().cast::<u32>();
    assert_eq!(
        r.ssf(
            iis::HSE_REQ_IO_COMPLETION,
            func as *mut c_void,
            std::ptr::null_mut(),
            context
        ),
        TRUE
    );
    let mut buf = [0u8; 4];
    let mut size = 4;
    let mut flags = iis::HSE_IO_ASYNC;
    assert_eq!(
        r.ssf(
            iis::HSE_REQ_ASYNC_READ_CLIENT,
            buf.as_mut_ptr().cast(),
            &mut size,
            &mut flags
        ),
        TRUE
    );
    assert_eq!(&buf, b"abcd");
    // The completion, as the host runs it: through the ECB, with the registered context.
    let c = Completion {
        func: on_completion,
        context: context as usize,
    };
    r.cell.complete(c, 4, 0);
    assert_eq!(*seen.lock().unwrap(), [(4, 0)]);
    // NULL clears the routine.
    assert_eq!(
        r.ssf(
            iis::HSE_REQ_IO_COMPLETION,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut()
        ),
        TRUE
    );
    assert_eq!(
        r.log(),
        [
            "io-completion set=true",
            "async-read 4 flags=2",
            "io-completion set=false"
        ]
    );
}

#[test]
fn small_requests() {
    let r = Request::new(b"", b"");
    let null = std::ptr::null_mut();
    let mut yes: BOOL = FALSE;
    assert_eq!(
        r.ssf1(iis::HSE_REQ_IS_KEEP_CONN, (&raw mut yes).cast()),
        TRUE
    );
    assert_eq!(yes, TRUE);
    assert_eq!(
        r.ssf1(iis::HSE_REQ_IS_CONNECTED, (&raw mut yes).cast()),
        TRUE
    );
    assert_eq!(yes, FALSE);
    assert_eq!(r.ssf1(iis::HSE_REQ_IS_KEEP_CONN, null), FALSE);
    let mut status = iis::HSE_STATUS_SUCCESS;
    assert_eq!(
        r.ssf1(iis::HSE_REQ_DONE_WITH_SESSION, (&raw mut status).cast()),
        TRUE
    );
    assert_eq!(r.ssf1(iis::HSE_REQ_DONE_WITH_SESSION, null), TRUE);
    // SET_FLUSH_FLAG: the BOOL by value, in the pointer.
    assert_eq!(
        r.ssf1(
            iis::HSE_REQ_SET_FLUSH_FLAG,
            std::ptr::without_provenance_mut(1)
        ),
        TRUE
    );
    let url = c"/elsewhere".as_ptr().cast_mut().cast();
    assert_eq!(r.ssf1(iis::HSE_REQ_SEND_URL_REDIRECT_RESP, url), TRUE);
    assert_eq!(r.ssf1(iis::HSE_REQ_SEND_URL, url), TRUE);
    assert_eq!(
        r.ssf1(
            iis::HSE_APPEND_LOG_PARAMETER,
            c"p=1".as_ptr().cast_mut().cast()
        ),
        TRUE
    );
    assert_eq!(r.ssf1(iis::HSE_APPEND_LOG_PARAMETER, null), FALSE);
    let mut custom = HSE_CUSTOM_ERROR_INFO {
        pszStatus: c"500 Oops".as_ptr().cast_mut().cast(),
        uHttpSubError: 13,
        fAsync: FALSE,
    };
    assert_eq!(
        r.ssf1(iis::HSE_REQ_SEND_CUSTOM_ERROR, (&raw mut custom).cast()),
        TRUE
    );
    custom.pszStatus = null.cast();
    assert_eq!(
        r.ssf1(iis::HSE_REQ_SEND_CUSTOM_ERROR, (&raw mut custom).cast()),
        FALSE
    );
    assert_eq!(r.ssf1(iis::HSE_REQ_CLOSE_CONNECTION, null), TRUE);
    assert_eq!(r.ssf1(iis::HSE_REQ_ABORTIVE_CLOSE, null), TRUE);
    assert_eq!(r.ssf1(iis::HSE_REQ_GET_SSPI_INFO, null), FALSE);
    assert_eq!(last_error(), ERROR_INVALID_PARAMETER as i32);
    assert_eq!(
        r.log(),
        [
            "keep-conn",
            "connected",
            "done Some(1)",
            "done None",
            "flush true",
            "redirect \"/elsewhere\"",
            "send-url \"/elsewhere\"",
            "log \"p=1\"",
            "custom-error \"500 Oops\" 13 false",
            "close",
            "abort",
        ]
    );
}

#[test]
fn a_panic_in_the_handler_stays_in_the_callback() {
    let r = Request::new(b"", b"");
    let null = std::ptr::null_mut();
    assert_eq!(r.ssf1(PANIC_CODE, null), FALSE);
    assert_eq!(last_error(), ERROR_INVALID_PARAMETER as i32);
    // The request still works.
    assert_eq!(r.ssf1(iis::HSE_REQ_CLOSE_CONNECTION, null), TRUE);
}
