//! A request head to its ECB and server variables, as the dispatcher maps
//! it (`server::dispatch`, `RequestCtx::start`), then every variable asked
//! for through `GetServerVariable`'s size-probing protocol.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, Method, Request, Uri, Version};

use crate::config::{ServeArgs, ServeConfig};
use crate::ffi::{self, EcbCell, EcbStrings, Handler, SupportRequest};
use crate::server::check_head;
use crate::vars::{Endpoints, RequestInfo};

/// A request head, in parts (a fuzz target parses raw bytes into it).
#[derive(Debug, Clone)]
pub struct RequestSpec {
    /// The method.
    pub method: Vec<u8>,
    /// The request target.
    pub target: Vec<u8>,
    /// The minor version: 0 for HTTP/1.0, else HTTP/1.1.
    pub minor: u8,
    /// The header lines.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// The client's address.
    pub remote: SocketAddr,
    /// The server's address.
    pub local: SocketAddr,
    /// The mount prefix (`SCRIPT_NAME`).
    pub script_name: String,
    /// The read-ahead body.
    pub preload: Vec<u8>,
}

/// One `GetServerVariable` probe: the size offered (`None`: `lpdwSize`
/// NULL) and whether a buffer is given.
pub type Probe = (Option<u32>, bool);

/// What [`request`] made of a head the host accepted.
#[derive(Debug, Clone)]
pub struct RequestOutcome {
    /// The normalized, decoded path (`URL`).
    pub url: Vec<u8>,
    /// Each name asked for, and its value (`None`: unknown).
    pub vars: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// The document root the fuzzed requests map below.
const DOC_ROOT: &str = "/fuzz/doc root";

fn config() -> &'static ServeConfig {
    static CFG: OnceLock<ServeConfig> = OnceLock::new();
    CFG.get_or_init(|| {
        ServeConfig::resolve(
            ServeArgs::default(),
            Path::new("/fuzz/libpyisapie.so"),
            Path::new("/fuzz/demo"),
        )
        .expect("the default configuration")
    })
}

/// The server variables of one request, as `RequestCtx` serves them.
struct Vars(RequestInfo);

impl Handler for Vars {
    fn id(&self) -> usize {
        0
    }

    fn traced(&self) -> bool {
        false
    }

    fn server_variable(&self, name: &[u8]) -> Option<Cow<'_, [u8]>> {
        self.0.get(name).ok()
    }

    fn read_client(&self, _buf: &mut [u8]) -> Result<usize, u32> {
        Ok(0)
    }

    fn write_client(self: Arc<Self>, _data: &[u8], _flags: u32) -> Result<(), u32> {
        Ok(())
    }

    fn support_function(self: Arc<Self>, _request: SupportRequest<'_>) -> Result<(), u32> {
        Ok(())
    }
}

/// Builds the request hyper would hand over; `None` when hyper would not
/// (an invalid method, target or header).
fn http_request(spec: &RequestSpec) -> Option<Request<()>> {
    let mut req = Request::builder()
        .method(Method::from_bytes(&spec.method).ok()?)
        .uri(Uri::try_from(&spec.target[..]).ok()?)
        .version(if spec.minor == 0 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        })
        .body(())
        .ok()?;
    for (n, v) in &spec.headers {
        let name = HeaderName::from_bytes(n).ok()?;
        let value = HeaderValue::from_bytes(v).ok()?;
        req.headers_mut().append(name, value);
    }
    Some(req)
}

/// Runs a request head through the host's head checks and maps it to an
/// ECB and server variables as the dispatcher does; then fetches each of
/// `names` with its probes, and the variables the ECB's strings stand for,
/// through `GetServerVariable`. Asserts the protocol on every call, that
/// the ECB's strings agree with the variables, that `URL` is normalized and
/// `PATH_TRANSLATED` stays below the root, and that the header variables
/// carry the headers. `None`: hyper or the head checks refused the head.
pub fn request(spec: &RequestSpec, names: &[(Vec<u8>, Vec<Probe>)]) -> Option<RequestOutcome> {
    let req = http_request(spec)?;
    let checked = check_head(&req, config()).ok()?;
    let (parts, ()) = req.into_parts();
    let url = checked.url.clone();
    assert!(url.starts_with(b"/"), "URL {url:?}");
    assert!(
        !url.iter().any(|&b| b < 0x20 || b == 0x7f),
        "control byte in URL"
    );
    for seg in url.split(|&b| b == b'/') {
        assert!(seg != b".." && seg != b".", "dot-segment in URL {url:?}");
    }
    let info = RequestInfo {
        target: parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
        method: parts.method,
        version: parts.version,
        url: checked.url,
        headers: parts.headers,
        ends: Endpoints::new(spec.remote, spec.local),
        script_name: spec.script_name.as_str().into(),
        physical_path: Arc::from(Path::new(DOC_ROOT)),
        content_length: checked.content_length,
    };
    let total_bytes = match checked.content_length {
        Some(n) => n.min(u64::from(u32::MAX)) as u32,
        None if checked.chunked => u32::MAX,
        None => 0,
    };
    let content_type = info
        .headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.as_bytes())
        .unwrap_or_default()
        .to_vec();
    let id = ffi::next_id();
    let cell = EcbCell::new(
        id,
        &EcbStrings {
            method: info.method.as_str().as_bytes(),
            query: info.query().as_bytes(),
            path_info: &info.url,
            content_type: &content_type,
            path_translated: &|out| info.push_path_translated(out),
            path_translated_len: info.physical_path.as_os_str().len() + info.url.len(),
        },
        spec.preload.clone(),
        total_bytes,
    );
    let ecb = ffi::fuzz::ecb_view(&cell);
    assert_eq!(ecb.conn_id, id);
    assert_eq!(ecb.total_bytes, total_bytes);
    assert_eq!(ecb.data, spec.preload, "lpbData");
    let headers = info.headers.clone();
    let method = info.method.clone();
    let vars: Arc<dyn Handler> = Arc::new(Vars(info));
    let fetch = |name: &[u8], probes: &[Probe]| {
        let probes: Vec<_> = probes
            .iter()
            .map(|&(size, buffer)| ffi::fuzz::Probe { size, buffer })
            .collect();
        ffi::fuzz::server_variable(vars.clone(), name, &probes)
    };
    let var = |name: &str| fetch(name.as_bytes(), &[(Some(0), false)]);
    assert_eq!(
        var("REQUEST_METHOD").as_deref(),
        Some(method.as_str().as_bytes())
    );
    assert_eq!(var("REQUEST_METHOD"), Some(ecb.method));
    assert_eq!(var("QUERY_STRING"), Some(ecb.query));
    assert_eq!(var("URL").as_deref(), Some(&url[..]));
    assert_eq!(var("PATH_INFO"), Some(ecb.path_info));
    // The ECB and the variable have the same Content-Type: the first (the head check
    // refuses differing repeats before an extension runs).
    assert_eq!(var("CONTENT_TYPE"), Some(ecb.content_type));
    let translated = var("PATH_TRANSLATED").unwrap_or_default();
    assert_eq!(translated, ecb.path_translated, "PATH_TRANSLATED");
    let below = translated.strip_prefix(DOC_ROOT.as_bytes());
    assert!(
        below.is_some_and(|rest| rest.is_empty() || rest.starts_with(b"/")),
        "PATH_TRANSLATED {translated:?} leaves the root"
    );
    let lossy = String::from_utf8_lossy(&url);
    let utf16: Vec<u8> = lossy.encode_utf16().flat_map(u16::to_le_bytes).collect();
    assert_eq!(var("UNICODE_URL"), Some(utf16));
    assert_eq!(
        var("SCRIPT_NAME").as_deref(),
        Some(spec.script_name.as_bytes())
    );
    // Each header answers HEADER_<name>, repeated ones joined.
    for name in headers.keys() {
        let values: Vec<&[u8]> = headers
            .get_all(name)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        let sep: &[u8] = if name == http::header::COOKIE {
            b"; "
        } else {
            b", "
        };
        let joined = values.join(sep);
        let got = var(&format!("HEADER_{}", name.as_str()));
        assert_eq!(got.as_deref(), Some(&joined[..]), "HEADER_{name}");
        // Names IIS defines under HTTP_ answer for themselves, not a header.
        let special = ["url", "method", "version", "cfg-enc-url"].contains(&name.as_str());
        if !name.as_str().contains('_') && !special {
            let cgi = name.as_str().replace('-', "_").to_ascii_uppercase();
            assert_eq!(var(&format!("HTTP_{cgi}")), got, "HTTP_{cgi}");
        }
    }
    let raw = var("ALL_RAW").unwrap_or_default();
    assert_eq!(
        raw.windows(2).filter(|w| w == b"\r\n").count(),
        headers.len(),
        "ALL_RAW lines"
    );
    let vars = names
        .iter()
        .map(|(name, probes)| (name.clone(), fetch(name, probes)))
        .collect();
    Some(RequestOutcome { url, vars })
}
