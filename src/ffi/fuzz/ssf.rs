//! `ServerSupportFunction` with every request code: the arguments each
//! code takes, built around fuzzed bytes, and the checks of what the
//! decoder handed up and what the handler wrote back.

use std::ffi::c_void;
use std::sync::{Arc, Mutex};

use windows_sys::Win32::Foundation::{
    ERROR_INSUFFICIENT_BUFFER, ERROR_INVALID_PARAMETER, FALSE, TRUE,
};
use windows_sys::Win32::System::Iis::{
    self as iis, EXTENSION_CONTROL_BLOCK, HCONN, HSE_CUSTOM_ERROR_INFO, HSE_RESPONSE_VECTOR,
    HSE_SEND_HEADER_EX_INFO, HSE_TF_INFO, HSE_URL_MAPEX_INFO, HSE_VECTOR_ELEMENT,
};
use windows_sys::core::BOOL;

use super::{CANARY, FILL, ROOT, Recorder, Registered, cstring, no_completion, ptr};
use crate::ffi::callbacks::server_support_function;
use crate::ffi::decode::trim_nul;
use crate::ffi::error::{last_error, set_last_error};
use crate::ffi::registry;

/// One `ServerSupportFunction` call to build: the request code and the
/// values its arguments are made of (each code takes what it needs).
#[derive(Debug, Clone, Default)]
pub(crate) struct SsfInput {
    /// `dwHSERequest`.
    pub(crate) code: u32,
    /// Strings (`None`: a NULL pointer).
    pub(crate) strings: [Option<Vec<u8>>; 3],
    /// Counts, sizes, flags, handles.
    pub(crate) numbers: [u32; 4],
    /// A BOOL, or whether an optional pointer is given.
    pub(crate) flag: bool,
    /// `VECTOR_SEND`'s elements.
    pub(crate) elements: Vec<ElementInput>,
}

/// One `HSE_VECTOR_ELEMENT` to build.
#[derive(Debug, Clone, Default)]
pub(crate) struct ElementInput {
    /// `ElementType` (0: memory, 1: file, others invalid).
    pub(crate) kind: u32,
    /// A memory element's bytes (`None`: `pvContext` NULL).
    pub(crate) data: Option<Vec<u8>>,
    /// `cbOffset` (kept inside `data` for memory elements).
    pub(crate) offset: u32,
    /// `cbSize` (kept inside `data` for memory elements).
    pub(crate) size: u32,
}

/// What the handler was handed, owned, to compare with what was built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    /// `SEND_URL` or `SEND_URL_REDIRECT_RESP`.
    Redirect { send_url: bool, url: Vec<u8> },
    /// `SEND_RESPONSE_HEADER(_EX)`.
    Header {
        ex: bool,
        status: Option<Vec<u8>>,
        headers: Vec<u8>,
        keep_conn: bool,
    },
    /// `DONE_WITH_SESSION`.
    Done { status: Option<u32> },
    /// `MAP_URL_TO_PATH`.
    MapUrl { url: Vec<u8> },
    /// `MAP_URL_TO_PATH_EX`.
    MapUrlEx { url: Vec<u8>, size_given: bool },
    /// `APPEND_LOG_PARAMETER`.
    Log { param: Vec<u8> },
    /// `IO_COMPLETION`.
    IoCompletion { set: bool, context: usize },
    /// `ASYNC_READ_CLIENT`.
    AsyncRead { len: usize, flags: u32 },
    /// `TRANSMIT_FILE`.
    Transmit {
        flags: u32,
        status: Option<Vec<u8>>,
        head: Vec<u8>,
        file: (isize, u64, u64),
        tail: Vec<u8>,
        completion: bool,
    },
    /// `VECTOR_SEND`.
    Vector {
        flags: u32,
        status: Option<Vec<u8>>,
        headers: Option<Vec<u8>>,
        pieces: Vec<SeenPiece>,
    },
    /// `IS_KEEP_CONN`.
    IsKeepConn,
    /// `IS_CONNECTED`.
    IsConnected,
    /// `CLOSE_CONNECTION`.
    Close,
    /// `ABORTIVE_CLOSE`.
    Abortive,
    /// `SET_FLUSH_FLAG`.
    Flush { on: bool },
    /// `SEND_CUSTOM_ERROR`.
    CustomError {
        status: Vec<u8>,
        sub_error: u16,
        async_: bool,
    },
    /// Any other code.
    Unsupported { code: u32 },
}

/// A `VECTOR_SEND` element as handed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SeenPiece {
    /// Memory bytes.
    Memory(Vec<u8>),
    /// A file range: handle, offset, length.
    File(isize, u64, u64),
}

/// The outcome of one fuzzed `ServerSupportFunction` call.
#[derive(Debug)]
pub(crate) struct SsfOutcome {
    /// The callback returned TRUE.
    pub(crate) ok: bool,
    /// The Win32 error it set, if it returned FALSE.
    pub(crate) error: u32,
    /// What the handler was handed.
    pub(crate) seen: Option<Seen>,
}

/// Calls `ServerSupportFunction` with arguments built from `input`, as the
/// ABI defines them for its code, and asserts that the decoded request is
/// the one built, that the output arguments were written within their
/// bounds, and that a FALSE return set an error.
pub(crate) fn server_support_function_call(input: &SsfInput) -> SsfOutcome {
    let id = registry::next_id();
    let recorder = Arc::new(Recorder {
        id,
        seen: Mutex::new(None),
        vars: None,
    });
    let _registered = Registered::new(recorder.clone(), id);
    let outcome = call(id as HCONN, input, &recorder.seen);
    if !outcome.ok {
        assert_ne!(outcome.error, 0, "FALSE without an error");
    }
    outcome
}

/// The bytes and a NUL after them (a counted string may hold NULs).
fn with_nul(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    v.push(0);
    v
}

/// A string as the decoder hands it up: up to the first NUL.
fn text(s: &Option<Vec<u8>>) -> Option<Vec<u8>> {
    s.as_deref().map(|v| trim_nul(v).to_vec())
}

/// `n` reduced to `0..=max`.
fn upto(n: u32, max: usize) -> usize {
    n as usize % (max + 1)
}

/// Builds the arguments `input.code` takes, calls the callback, and checks
/// the decoded request and the outputs.
fn call(hconn: HCONN, input: &SsfInput, slot: &Mutex<Option<Seen>>) -> SsfOutcome {
    let code = input.code;
    let [n0, n1, n2, n3] = input.numbers;
    let flag = input.flag;
    // Which optional pointer is NULL this time, for the codes that need one.
    let null_buf = n3 % 8 == 0;
    let null_second = n3 % 8 == 1;
    let mut strs = input.strings.clone().map(|o| o.map(|v| cstring(&v)));
    let raw = input.strings.clone().map(|o| o.map(|v| with_nul(&v)));
    let mut raw = raw;
    let mut size: u32 = n1;
    let mut data_type: u32 = n2;
    let mut number: u32 = n0;
    let mut boolean: BOOL = 0x55;
    let mut bytes: Vec<u8> = Vec::new();
    let mut header_ex: HSE_SEND_HEADER_EX_INFO;
    let mut tf: HSE_TF_INFO;
    let mut vector: HSE_RESPONSE_VECTOR;
    let mut elements: Vec<HSE_VECTOR_ELEMENT> = Vec::new();
    let mut element_data: Vec<Vec<u8>> = Vec::new();
    let mut custom: HSE_CUSTOM_ERROR_INFO;
    let mut mapex = HSE_URL_MAPEX_INFO::default();
    let null = std::ptr::null_mut::<c_void>();
    let buf: *mut c_void;
    let (mut size_p, mut dt_p): (*mut u32, *mut u32) = (&raw mut size, &raw mut data_type);
    // `None`: the call must fail with ERROR_INVALID_PARAMETER.
    let expected: Option<Seen>;
    // The MAP_URL_TO_PATH output buffer's offered size.
    let mut offered = 0usize;
    // The path MAP_URL_TO_PATH must write back (the URL below the root).
    let mut path = Vec::new();
    match code {
        iis::HSE_REQ_SEND_URL_REDIRECT_RESP
        | iis::HSE_REQ_SEND_URL
        | iis::HSE_APPEND_LOG_PARAMETER => {
            buf = ptr(&mut strs[0]).cast();
            expected = text(&strs[0]).map(|url| match code {
                iis::HSE_APPEND_LOG_PARAMETER => Seen::Log { param: url },
                _ => Seen::Redirect {
                    send_url: code == iis::HSE_REQ_SEND_URL,
                    url,
                },
            });
        }
        iis::HSE_REQ_SEND_RESPONSE_HEADER => {
            buf = ptr(&mut strs[0]).cast();
            dt_p = ptr(&mut strs[1]).cast();
            expected = Some(Seen::Header {
                ex: false,
                status: text(&strs[0]),
                headers: text(&strs[1]).unwrap_or_default(),
                keep_conn: true,
            });
        }
        iis::HSE_REQ_SEND_RESPONSE_HEADER_EX => {
            // A count of 0 means NUL-terminated; any other counts bytes
            // (which may hold a NUL, and end at it).
            let counted = |s: &Option<Vec<u8>>, n: u32| -> (u32, Option<Vec<u8>>) {
                match s {
                    None => (n, None),
                    Some(v) => {
                        let cch = upto(n, v.len());
                        let seen = if cch == 0 { v.as_slice() } else { &v[..cch] };
                        (cch as u32, Some(trim_nul(seen).to_vec()))
                    }
                }
            };
            let (cch_status, status) = counted(&raw[0], n0);
            let (cch_header, headers) = counted(&raw[1], n1);
            header_ex = HSE_SEND_HEADER_EX_INFO {
                pszStatus: ptr(&mut raw[0]),
                pszHeader: ptr(&mut raw[1]),
                cchStatus: cch_status,
                cchHeader: cch_header,
                fKeepConn: n2 as BOOL,
            };
            buf = if null_buf {
                null
            } else {
                (&raw mut header_ex).cast()
            };
            expected = (!null_buf).then(|| Seen::Header {
                ex: true,
                status,
                headers: headers.unwrap_or_default(),
                keep_conn: n2 != 0,
            });
        }
        iis::HSE_REQ_DONE_WITH_SESSION => {
            buf = if flag { (&raw mut number).cast() } else { null };
            expected = Some(Seen::Done {
                status: flag.then_some(n0),
            });
        }
        iis::HSE_REQ_MAP_URL_TO_PATH => {
            let url = strs[0].clone().unwrap_or_else(|| vec![0]);
            offered = url.len().max(n0 as usize % 1024);
            path = [ROOT, trim_nul(&url)].concat();
            bytes = vec![0xEE; offered + CANARY];
            bytes[..url.len()].copy_from_slice(&url);
            size = offered as u32;
            buf = if null_buf {
                null
            } else {
                bytes.as_mut_ptr().cast()
            };
            if null_second {
                size_p = std::ptr::null_mut();
            }
            expected = (!null_buf && !null_second).then(|| Seen::MapUrl {
                url: trim_nul(&url).to_vec(),
            });
        }
        iis::HSE_REQ_MAP_URL_TO_PATH_EX => {
            buf = ptr(&mut strs[0]).cast();
            dt_p = if null_second {
                std::ptr::null_mut()
            } else {
                (&raw mut mapex).cast()
            };
            size_p = if flag {
                &raw mut size
            } else {
                std::ptr::null_mut()
            };
            expected = text(&strs[0])
                .filter(|_| !null_second)
                .map(|url| Seen::MapUrlEx {
                    url,
                    size_given: flag,
                });
        }
        iis::HSE_REQ_IO_COMPLETION => {
            let f: unsafe extern "system" fn(*mut EXTENSION_CONTROL_BLOCK, *mut c_void, u32, u32) =
                no_completion;
            buf = if flag { f as *mut c_void } else { null };
            // The context is opaque: never dereferenced.
            dt_p = std::ptr::without_provenance_mut(n0 as usize);
            expected = Some(Seen::IoCompletion {
                set: flag,
                context: if flag { n0 as usize } else { 0 },
            });
        }
        iis::HSE_REQ_ASYNC_READ_CLIENT => {
            let len = n0 as usize % 4096;
            bytes = vec![0; len + CANARY];
            size = len as u32;
            buf = if null_buf {
                null
            } else {
                bytes.as_mut_ptr().cast()
            };
            if null_second {
                size_p = std::ptr::null_mut();
            }
            if !flag {
                dt_p = std::ptr::null_mut();
            }
            expected = (!null_buf && !null_second).then_some(Seen::AsyncRead {
                len,
                flags: if flag { n2 } else { 0 },
            });
        }
        iis::HSE_REQ_TRANSMIT_FILE => {
            let part = |s: &Option<Vec<u8>>, n: u32| match s {
                None => (n, Vec::new()),
                Some(v) => {
                    let len = upto(n, v.len() - 1);
                    (len as u32, v[..len].to_vec())
                }
            };
            let (head_len, head) = part(&raw[1], n1);
            let (tail_len, tail) = part(&raw[2], n2);
            tf = HSE_TF_INFO {
                pfnHseIO: flag.then_some(no_completion as _),
                pContext: std::ptr::without_provenance_mut(n2 as usize),
                hFile: std::ptr::without_provenance_mut(n0 as usize),
                pszStatusCode: ptr(&mut strs[0]),
                BytesToWrite: n1,
                Offset: n2,
                pHead: ptr(&mut raw[1]).cast(),
                HeadLength: head_len,
                pTail: ptr(&mut raw[2]).cast(),
                TailLength: tail_len,
                dwFlags: n3,
            };
            buf = if null_buf { null } else { (&raw mut tf).cast() };
            expected = (!null_buf).then(|| Seen::Transmit {
                flags: n3,
                status: text(&strs[0]),
                head,
                file: (n0 as isize, u64::from(n2), u64::from(n1)),
                tail,
                completion: flag,
            });
        }
        iis::HSE_REQ_VECTOR_SEND => {
            let mut pieces = Some(Vec::new());
            for e in &input.elements {
                let (context, offset, size, piece) = match (e.kind, &e.data) {
                    (iis::HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER, Some(data)) => {
                        let offset = upto(e.offset, data.len());
                        let size = upto(e.size, data.len() - offset);
                        element_data.push(data.clone());
                        let p = element_data
                            .last_mut()
                            .map_or(null, |d| d.as_mut_ptr().cast());
                        let piece = SeenPiece::Memory(data[offset..offset + size].to_vec());
                        (p, offset as u64, size as u64, Some(piece))
                    }
                    // A NULL buffer is empty, whatever the size says.
                    (iis::HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER, None) => (
                        null,
                        0,
                        u64::from(e.size),
                        Some(SeenPiece::Memory(Vec::new())),
                    ),
                    (iis::HSE_VECTOR_ELEMENT_TYPE_FILE_HANDLE, _) => {
                        let handle = e.data.as_ref().map_or(0, Vec::len);
                        let piece = SeenPiece::File(
                            handle as isize,
                            u64::from(e.offset),
                            u64::from(e.size),
                        );
                        let h = std::ptr::without_provenance_mut(handle);
                        (h, u64::from(e.offset), u64::from(e.size), Some(piece))
                    }
                    _ => (null, u64::from(e.offset), u64::from(e.size), None),
                };
                match (piece, pieces.as_mut()) {
                    (Some(p), Some(v)) => v.push(p),
                    _ => pieces = None,
                }
                elements.push(HSE_VECTOR_ELEMENT {
                    ElementType: e.kind,
                    pvContext: context,
                    cbOffset: offset,
                    cbSize: size,
                });
            }
            let null_array = null_second && !elements.is_empty();
            vector = HSE_RESPONSE_VECTOR {
                dwFlags: n0,
                pszStatus: ptr(&mut strs[0]),
                pszHeaders: ptr(&mut strs[1]),
                nElementCount: elements.len() as u32,
                lpElementArray: if null_array || elements.is_empty() {
                    std::ptr::null_mut()
                } else {
                    elements.as_mut_ptr()
                },
            };
            buf = if null_buf {
                null
            } else {
                (&raw mut vector).cast()
            };
            expected = pieces
                .filter(|_| !null_buf && !null_array)
                .map(|pieces| Seen::Vector {
                    flags: n0,
                    status: text(&strs[0]),
                    headers: text(&strs[1]),
                    pieces,
                });
        }
        iis::HSE_REQ_IS_KEEP_CONN | iis::HSE_REQ_IS_CONNECTED => {
            buf = if flag {
                (&raw mut boolean).cast()
            } else {
                null
            };
            expected = flag.then_some(if code == iis::HSE_REQ_IS_KEEP_CONN {
                Seen::IsKeepConn
            } else {
                Seen::IsConnected
            });
        }
        iis::HSE_REQ_SET_FLUSH_FLAG => {
            // The BOOL comes by value, in the pointer.
            buf = std::ptr::without_provenance_mut(n0 as usize);
            expected = Some(Seen::Flush { on: n0 != 0 });
        }
        iis::HSE_REQ_SEND_CUSTOM_ERROR => {
            custom = HSE_CUSTOM_ERROR_INFO {
                pszStatus: ptr(&mut strs[0]),
                uHttpSubError: n0 as u16,
                fAsync: n1 as BOOL,
            };
            buf = if null_buf {
                null
            } else {
                (&raw mut custom).cast()
            };
            expected = text(&strs[0])
                .filter(|_| !null_buf)
                .map(|status| Seen::CustomError {
                    status,
                    sub_error: n0 as u16,
                    async_: n1 != 0,
                });
        }
        _ => {
            // Valid pointers all the same: a code the host does not know
            // must not be read as one it does.
            buf = ptr(&mut strs[0]).cast();
            expected = Some(match code {
                iis::HSE_REQ_CLOSE_CONNECTION => Seen::Close,
                iis::HSE_REQ_ABORTIVE_CLOSE => Seen::Abortive,
                _ => Seen::Unsupported { code },
            });
        }
    }
    set_last_error(0);
    // SAFETY: every pointer is NULL or points to live, well-formed storage
    // of this function, as the ABI defines the arguments for `code`; the
    // opaque ones (contexts, handles, the flush BOOL) are never
    // dereferenced.
    let ret = unsafe { server_support_function(hconn, code, buf, size_p, dt_p) };
    let error = last_error() as u32;
    let seen = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    let ok = ret == TRUE;
    assert!(ret == TRUE || ret == FALSE, "BOOL {ret}");
    let Some(want) = expected else {
        assert_eq!(
            (ret, error),
            (FALSE, ERROR_INVALID_PARAMETER),
            "code {code}: invalid arguments accepted"
        );
        assert_eq!(seen, None, "code {code}: invalid arguments handed up");
        return SsfOutcome { ok, error, seen };
    };
    assert_eq!(seen.as_ref(), Some(&want), "code {code}: decoded request");
    match code {
        iis::HSE_REQ_MAP_URL_TO_PATH => {
            let needed = path.len() + 1;
            assert_eq!(size as usize, needed, "MAP_URL_TO_PATH size");
            if offered < needed {
                assert_eq!((ret, error), (FALSE, ERROR_INSUFFICIENT_BUFFER));
            } else {
                assert_eq!(ret, TRUE);
                assert_eq!(&bytes[..needed], with_nul(&path).as_slice());
            }
            assert!(
                bytes[offered..].iter().all(|&b| b == 0xEE),
                "written past the buffer"
            );
        }
        _ => assert_eq!(ret, TRUE, "code {code}: refused (error {error})"),
    }
    match code {
        iis::HSE_REQ_MAP_URL_TO_PATH_EX => {
            assert_eq!((mapex.dwFlags, size == 11), (7, flag || size == 11));
        }
        iis::HSE_REQ_ASYNC_READ_CLIENT => {
            let len = size as usize;
            assert!(bytes[..len].iter().all(|&b| b == FILL), "the read buffer");
            assert!(bytes[len..].iter().all(|&b| b == 0), "read past the buffer");
        }
        iis::HSE_REQ_IS_KEEP_CONN => assert_eq!(boolean, TRUE),
        iis::HSE_REQ_IS_CONNECTED => assert_eq!(boolean, FALSE),
        _ => {}
    }
    SsfOutcome { ok, error, seen }
}
