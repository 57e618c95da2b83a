//! `GetServerVariable` with size probing: random and known names (any
//! case, `UNICODE_`, `HTTP_`, `HEADER_` forms), buffer sizes of 0, too
//! small, exact and larger, NULL buffers and NULL sizes, against a request
//! built from fuzzed parts. The host entry asserts the protocol on every
//! call (ERROR_INSUFFICIENT_BUFFER with the size needed, the NUL, nothing
//! written past it) and that the ECB and the variables agree.
#![no_main]

use std::net::{IpAddr, SocketAddr};

use arbitrary::Arbitrary;
use isapi_host::fuzzing::{self, RequestSpec};
use libfuzzer_sys::fuzz_target;

const KNOWN: &[&str] = &[
    "REQUEST_METHOD",
    "QUERY_STRING",
    "SERVER_PROTOCOL",
    "URL",
    "PATH_INFO",
    "SCRIPT_NAME",
    "PATH_TRANSLATED",
    "HTTP_URL",
    "UNENCODED_URL",
    "CONTENT_LENGTH",
    "CONTENT_TYPE",
    "REMOTE_ADDR",
    "REMOTE_HOST",
    "REMOTE_PORT",
    "LOCAL_ADDR",
    "SERVER_PORT",
    "SERVER_NAME",
    "SERVER_SOFTWARE",
    "GATEWAY_INTERFACE",
    "HTTPS",
    "SERVER_PORT_SECURE",
    "INSTANCE_ID",
    "APPL_MD_PATH",
    "APPL_PHYSICAL_PATH",
    "ALL_HTTP",
    "ALL_RAW",
    "AUTH_TYPE",
    "LOGON_USER",
    "HTTP_HOST",
    "HTTP_COOKIE",
    "HTTP_X_FORWARDED_FOR",
    "HEADER_Host",
    "HEADER_x-a",
    "UNICODE_URL",
    "UNICODE_SCRIPT_NAME",
    "UNICODE_HTTP_HOST",
    "UNICODE_ALL_RAW",
];

#[derive(Arbitrary, Debug)]
enum Name {
    Known {
        index: u8,
        lower: bool,
        unicode: bool,
    },
    Header {
        index: u8,
        http: bool,
    },
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    path: Vec<u8>,
    query: Option<Vec<u8>>,
    minor: u8,
    host: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    remote: (IpAddr, u16),
    local: (IpAddr, u16),
    script_name: u8,
    preload: Vec<u8>,
    names: Vec<(Name, Vec<(Option<u16>, bool)>)>,
}

const METHODS: [&[u8]; 6] = [b"GET", b"POST", b"HEAD", b"PUT", b"OPTIONS", b"PROPFIND"];
const MOUNTS: [&str; 4] = ["", "/app", "/a/b", "/ünï"];

fuzz_target!(|input: Input| {
    // An origin-form target made of the fuzzed bytes, percent-encoded
    // where the URI grammar wants it.
    let mut target = b"/".to_vec();
    for &b in input.path.iter().take(200) {
        if b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@%".contains(&b) {
            target.push(b);
        } else {
            target.extend(format!("%{b:02X}").bytes());
        }
    }
    if let Some(q) = &input.query {
        target.push(b'?');
        target.extend(q.iter().take(100).map(|&b| {
            if b.is_ascii_graphic() && b != b'#' {
                b
            } else {
                b'x'
            }
        }));
    }
    let mut headers: Vec<(Vec<u8>, Vec<u8>)> = input.headers.into_iter().take(16).collect();
    if let Some(h) = input.host {
        headers.insert(0, (b"host".to_vec(), h));
    }
    let spec = RequestSpec {
        method: METHODS[usize::from(input.method) % METHODS.len()].to_vec(),
        target,
        minor: input.minor % 2,
        headers: headers.clone(),
        remote: SocketAddr::new(input.remote.0, input.remote.1),
        local: SocketAddr::new(input.local.0, input.local.1),
        script_name: MOUNTS[usize::from(input.script_name) % MOUNTS.len()].to_owned(),
        preload: input.preload,
    };
    let names: Vec<(Vec<u8>, Vec<(Option<u32>, bool)>)> = input
        .names
        .into_iter()
        .take(16)
        .map(|(name, probes)| {
            let name = match name {
                Name::Known {
                    index,
                    lower,
                    unicode,
                } => {
                    let mut n = KNOWN[usize::from(index) % KNOWN.len()].to_owned();
                    if lower {
                        n = n.to_ascii_lowercase();
                    }
                    if unicode {
                        n.insert_str(0, "UNICODE_");
                    }
                    n.into_bytes()
                }
                Name::Header { index, http } => {
                    let h = headers.get(usize::from(index) % headers.len().max(1));
                    let h = h.map_or(&b"x-missing"[..], |(n, _)| n);
                    if http {
                        let cgi: Vec<u8> = h
                            .iter()
                            .map(|&b| {
                                if b == b'-' {
                                    b'_'
                                } else {
                                    b.to_ascii_uppercase()
                                }
                            })
                            .collect();
                        [&b"HTTP_"[..], &cgi].concat()
                    } else {
                        [&b"HEADER_"[..], h].concat()
                    }
                }
                Name::Raw(raw) => raw,
            };
            let probes = probes
                .into_iter()
                .take(4)
                .map(|(s, b)| (s.map(u32::from), b))
                .collect();
            (name, probes)
        })
        .collect();
    let _ = fuzzing::request(&spec, &names);
});
