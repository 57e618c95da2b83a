//! `ServerSupportFunction` in process, with every request code the host
//! knows and random others: the host entry builds each code's arguments
//! around the fuzzed strings, sizes and elements (well-formed pointers
//! only) and asserts that the decoded request is what was built, that
//! output arguments stay in their buffers (MAP_URL_TO_PATH's size probing
//! included) and that a refusal is ERROR_INVALID_PARAMETER.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use isapi_host::fuzzing::{self, SsfCall};
use libfuzzer_sys::fuzz_target;
use windows_sys::Win32::System::Iis as iis;

const CODES: [u32; 29] = [
    iis::HSE_REQ_SEND_URL_REDIRECT_RESP,
    iis::HSE_REQ_SEND_URL,
    iis::HSE_REQ_SEND_RESPONSE_HEADER,
    iis::HSE_REQ_DONE_WITH_SESSION,
    iis::HSE_REQ_MAP_URL_TO_PATH,
    iis::HSE_REQ_GET_SSPI_INFO,
    iis::HSE_APPEND_LOG_PARAMETER,
    iis::HSE_REQ_IO_COMPLETION,
    iis::HSE_REQ_TRANSMIT_FILE,
    iis::HSE_REQ_REFRESH_ISAPI_ACL,
    iis::HSE_REQ_IS_KEEP_CONN,
    iis::HSE_REQ_ASYNC_READ_CLIENT,
    iis::HSE_REQ_GET_IMPERSONATION_TOKEN,
    iis::HSE_REQ_MAP_URL_TO_PATH_EX,
    iis::HSE_REQ_ABORTIVE_CLOSE,
    iis::HSE_REQ_GET_CERT_INFO_EX,
    iis::HSE_REQ_SEND_RESPONSE_HEADER_EX,
    iis::HSE_REQ_CLOSE_CONNECTION,
    iis::HSE_REQ_IS_CONNECTED,
    iis::HSE_REQ_EXEC_URL,
    iis::HSE_REQ_EXEC_UNICODE_URL,
    iis::HSE_REQ_GET_EXEC_URL_STATUS,
    iis::HSE_REQ_SEND_CUSTOM_ERROR,
    iis::HSE_REQ_IS_IN_PROCESS,
    iis::HSE_REQ_REPORT_UNHEALTHY,
    iis::HSE_REQ_NORMALIZE_URL,
    iis::HSE_REQ_VECTOR_SEND,
    iis::HSE_REQ_SET_FLUSH_FLAG,
    iis::HSE_REQ_CANCEL_IO,
];

#[derive(Arbitrary, Debug)]
struct Input {
    strings: [Option<Vec<u8>>; 3],
    numbers: [u32; 4],
    flag: bool,
    elements: Vec<(u8, Option<Vec<u8>>, u32, u32)>,
}

// The input: a code byte (an index into the known codes, or 255 for a
// raw code in the next four bytes), then the structured arguments.
fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (code, rest) = match (pick, rest.split_first_chunk::<4>()) {
        (255, Some((raw, rest))) => (u32::from_le_bytes(*raw), rest),
        _ => (CODES[usize::from(pick) % CODES.len()], rest),
    };
    let Ok(input) = Input::arbitrary(&mut Unstructured::new(rest)) else {
        return;
    };
    let call = SsfCall {
        code,
        strings: input.strings,
        numbers: input.numbers,
        flag: input.flag,
        elements: input
            .elements
            .into_iter()
            .take(64)
            // Mostly the two valid types, sometimes an invalid one.
            .map(|(kind, data, offset, size)| (u32::from(kind % 3), data, offset, size))
            .collect(),
    };
    let out = fuzzing::server_support_function(&call);
    if !out.ok {
        assert_ne!(out.error, 0);
    }
});
