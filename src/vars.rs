//! IIS server variables, computed from the request.
//!
//! Values are bytes: the URL is percent-decoded and may hold any octets, and
//! header values are passed through as the client sent them. `UNICODE_*`
//! variants are UTF-16LE of the (lossily UTF-8 decoded) value.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Version};

/// Everything the server variables are derived from, fixed for the request.
#[derive(Debug)]
pub(crate) struct RequestInfo {
    /// The method.
    pub(crate) method: Method,
    /// The HTTP version.
    pub(crate) version: Version,
    /// The request target as sent (`/path?query`).
    pub(crate) target: PathAndQuery,
    /// Percent-decoded path, without the query.
    pub(crate) url: Vec<u8>,
    /// The request's headers.
    pub(crate) headers: HeaderMap,
    /// The connection's two ends.
    pub(crate) ends: Arc<Endpoints>,
    /// Mount prefix: `""` for the root mount, `/app` otherwise.
    pub(crate) script_name: Arc<str>,
    /// The document root, which URLs map below.
    pub(crate) physical_path: Arc<Path>,
    /// `CONTENT_LENGTH` as sent, if any.
    pub(crate) content_length: Option<u64>,
}

/// A connection's two ends, with the text of their addresses and ports made
/// once per connection rather than on every request's server variables.
#[derive(Debug)]
pub(crate) struct Endpoints {
    /// The client's address.
    pub(crate) remote: SocketAddr,
    /// `REMOTE_ADDR`.
    pub(crate) remote_ip: Box<str>,
    /// `REMOTE_PORT`.
    pub(crate) remote_port: Box<str>,
    /// `LOCAL_ADDR`.
    pub(crate) local_ip: Box<str>,
    /// `SERVER_PORT`.
    pub(crate) local_port: Box<str>,
}

impl Endpoints {
    /// The two ends of a connection.
    pub(crate) fn new(remote: SocketAddr, local: SocketAddr) -> Arc<Self> {
        Arc::new(Self {
            remote,
            remote_ip: remote.ip().to_string().into(),
            remote_port: remote.port().to_string().into(),
            local_ip: local.ip().to_string().into(),
            local_port: local.port().to_string().into(),
        })
    }
}

/// Failure of a lookup, mapped to a Win32 error by the caller.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum VarError {
    /// No such variable (`ERROR_INVALID_INDEX`).
    Unknown,
}

/// The server software string, as `SERVER_SOFTWARE` and the `Server` header.
pub(crate) const SERVER_SOFTWARE: &str = concat!("isapi-host/", env!("CARGO_PKG_VERSION"));

impl RequestInfo {
    /// The request target as sent (`/path?query`).
    pub(crate) fn raw_target(&self) -> &str {
        self.target.as_str()
    }

    /// The query string, without the `?`.
    pub(crate) fn query(&self) -> &str {
        self.target.query().unwrap_or("")
    }

    /// Looks a variable up by name (case-insensitive, as IIS).
    pub(crate) fn get(&self, name: &[u8]) -> Result<Cow<'_, [u8]>, VarError> {
        // Uppercase on the stack: names are short and this runs per call.
        let mut stack = [0u8; 64];
        let owned;
        let upper: &[u8] = if name.len() <= stack.len() {
            let buf = &mut stack[..name.len()];
            buf.copy_from_slice(name);
            buf.make_ascii_uppercase();
            buf
        } else {
            owned = name.to_ascii_uppercase();
            &owned
        };
        if let Some(inner) = upper.strip_prefix(b"UNICODE_") {
            if inner.starts_with(b"HTTP_") || inner.starts_with(b"HEADER_") {
                return Err(VarError::Unknown);
            }
            let value = self.get(&name[8..])?;
            let mut out = Vec::with_capacity(value.len() * 2);
            for unit in String::from_utf8_lossy(&value).encode_utf16() {
                out.extend_from_slice(&unit.to_le_bytes());
            }
            return Ok(Cow::Owned(out));
        }
        if upper.starts_with(b"HEADER_") {
            return self
                .header_value(&name[7..], false)
                .ok_or(VarError::Unknown);
        }
        // Borrowed from the request (or static), or made for this call.
        fn s(v: &str) -> Result<Cow<'_, [u8]>, VarError> {
            Ok(Cow::Borrowed(v.as_bytes()))
        }
        fn o<'a>(v: String) -> Result<Cow<'a, [u8]>, VarError> {
            Ok(Cow::Owned(v.into_bytes()))
        }
        match upper {
            b"REQUEST_METHOD" | b"HTTP_METHOD" => s(self.method.as_str()),
            b"QUERY_STRING" => s(self.query()),
            b"SERVER_PROTOCOL" | b"HTTP_VERSION" => s(self.protocol()),
            b"URL" | b"PATH_INFO" | b"CACHE_URL" | b"HTTP_CFG_ENC_URL" => {
                Ok(Cow::Borrowed(&self.url))
            }
            b"SCRIPT_NAME" => s(&self.script_name),
            b"PATH_TRANSLATED" | b"SCRIPT_TRANSLATED" => o(self.translate(&self.url)),
            b"HTTP_URL" | b"UNENCODED_URL" | b"REQUEST_URI" => s(self.raw_target()),
            // IIS reports 0 for a request without a body, nothing for a chunked one.
            b"CONTENT_LENGTH" => match self.content_length {
                Some(n) => o(n.to_string()),
                None if self.headers.contains_key(http::header::TRANSFER_ENCODING) => s(""),
                None => s("0"),
            },
            // One value, the ECB's `lpszContentType` (the head check refuses
            // differing duplicates; identical ones are one value, not a list).
            b"CONTENT_TYPE" => Ok(Cow::Borrowed(
                self.headers
                    .get(http::header::CONTENT_TYPE)
                    .map_or(&b""[..], |v| v.as_bytes()),
            )),
            b"REMOTE_ADDR" | b"REMOTE_HOST" => s(&self.ends.remote_ip),
            b"REMOTE_PORT" => s(&self.ends.remote_port),
            b"LOCAL_ADDR" => s(&self.ends.local_ip),
            b"SERVER_PORT" => s(&self.ends.local_port),
            b"SERVER_NAME" => s(self.server_name()),
            b"SERVER_SOFTWARE" => s(SERVER_SOFTWARE),
            b"GATEWAY_INTERFACE" => s("CGI/1.1"),
            b"HTTPS" => s("off"),
            b"SERVER_PORT_SECURE" => s("0"),
            b"INSTANCE_ID" => s("1"),
            b"INSTANCE_META_PATH" => s("/LM/W3SVC/1"),
            b"APPL_MD_PATH" => o(format!("/LM/W3SVC/1/ROOT{}", self.script_name)),
            b"APPL_PHYSICAL_PATH" => {
                let mut p = self.physical_path.display().to_string();
                if !p.ends_with(std::path::MAIN_SEPARATOR) {
                    p.push(std::path::MAIN_SEPARATOR);
                }
                o(p)
            }
            b"APP_POOL_ID" => s("isapi-host"),
            b"ALL_HTTP" => Ok(Cow::Owned(self.all_http())),
            b"ALL_RAW" => Ok(Cow::Owned(self.all_raw())),
            b"AUTH_TYPE"
            | b"AUTH_USER"
            | b"AUTH_PASSWORD"
            | b"LOGON_USER"
            | b"REMOTE_USER"
            | b"UNMAPPED_REMOTE_USER"
            | b"CERT_COOKIE"
            | b"CERT_FLAGS"
            | b"CERT_ISSUER"
            | b"CERT_KEYSIZE"
            | b"CERT_SECRETKEYSIZE"
            | b"CERT_SERIALNUMBER"
            | b"CERT_SERVER_ISSUER"
            | b"CERT_SERVER_SUBJECT"
            | b"CERT_SUBJECT"
            | b"HTTPS_KEYSIZE"
            | b"HTTPS_SECRETKEYSIZE"
            | b"HTTPS_SERVER_ISSUER"
            | b"HTTPS_SERVER_SUBJECT" => s(""),
            // The prefix is ASCII, so `name` splits after it.
            _ if upper.starts_with(b"HTTP_") => {
                self.header_value(&name[5..], true).ok_or(VarError::Unknown)
            }
            _ => Err(VarError::Unknown),
        }
    }

    fn protocol(&self) -> &'static str {
        match self.version {
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_09 => "HTTP/0.9",
            _ => "HTTP/1.1",
        }
    }

    fn server_name(&self) -> &str {
        let host = self
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if host.is_empty() {
            return &self.ends.local_ip;
        }
        // Strip the port, minding IPv6 literals.
        match host.rfind(':') {
            Some(i) if !host[i..].contains(']') => &host[..i],
            _ => host,
        }
    }

    /// The value of a header; `cgi` names use `_` for `-`. Repeated headers
    /// are joined with `, ` (`; ` for cookies).
    fn header_value(&self, name: &[u8], cgi: bool) -> Option<Cow<'_, [u8]>> {
        let mut found: Option<Cow<'_, [u8]>> = None;
        for (n, v) in &self.headers {
            let matches = if cgi {
                // A header spelled with `_` never answers an HTTP_ name, so
                // `X_Forwarded_For` cannot pose as `X-Forwarded-For` (as
                // Apache and nginx drop them from CGI variables).
                !n.as_str().contains('_')
                    && n.as_str().len() == name.len()
                    && n.as_str().bytes().zip(name).all(|(a, &b)| {
                        let a = if a == b'-' { b'_' } else { a };
                        a.eq_ignore_ascii_case(&b)
                    })
            } else {
                n.as_str().as_bytes().eq_ignore_ascii_case(name)
            };
            if !matches {
                continue;
            }
            found = Some(match found {
                None => Cow::Borrowed(v.as_bytes()),
                Some(prev) => {
                    let sep: &[u8] = if n == http::header::COOKIE {
                        b"; "
                    } else {
                        b", "
                    };
                    Cow::Owned([&prev[..], sep, v.as_bytes()].concat())
                }
            });
        }
        found
    }

    /// `HTTP_NAME:value` lines ending in `\n`, as IIS.
    fn all_http(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        for name in self.headers.keys().filter(|n| !n.as_str().contains('_')) {
            out.extend_from_slice(b"HTTP_");
            out.extend(name.as_str().bytes().map(|b| {
                if b == b'-' {
                    b'_'
                } else {
                    b.to_ascii_uppercase()
                }
            }));
            out.push(b':');
            out.extend_from_slice(
                &self
                    .header_value(name.as_str().as_bytes(), false)
                    .unwrap_or_default(),
            );
            out.push(b'\n');
        }
        out
    }

    /// `Name: value` lines ending in `\r\n`. Header names are title-cased:
    /// the client's own spelling is not kept by the HTTP parser.
    fn all_raw(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        for (name, value) in &self.headers {
            let mut upper = true;
            for b in name.as_str().bytes() {
                out.push(if upper { b.to_ascii_uppercase() } else { b });
                upper = b == b'-';
            }
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// Maps a URL path onto the physical directory, as `PATH_TRANSLATED` and
    /// `MAP_URL_TO_PATH` do.
    pub(crate) fn translate(&self, url: &[u8]) -> String {
        translate(&self.physical_path, url)
    }

    /// Appends `PATH_TRANSLATED` for this request's URL to `out`.
    pub(crate) fn push_path_translated(&self, out: &mut Vec<u8>) {
        push_translated(&self.physical_path, &self.url, out);
    }
}

/// Maps a URL path below `root`, refusing to climb out of it.
pub(crate) fn translate(root: &Path, url: &[u8]) -> String {
    let mut out = Vec::new();
    push_translated(root, url, &mut out);
    // Both ways of mapping make UTF-8: a UTF-8 root and URL, or a `String`.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Appends [`translate`]'s result to `out`, which the ECB's strings use
/// without a string of their own.
pub(crate) fn push_translated(root: &Path, url: &[u8], out: &mut Vec<u8>) {
    // A normalized URL (every request's, see `server::normalize_path`) under
    // a UTF-8 root is a plain concatenation on Unix.
    #[cfg(unix)]
    if let (Some(root), Ok(url)) = (root.to_str(), std::str::from_utf8(url)) {
        // One pass: `/`, or `/` and plain names with one optional
        // trailing `/`.
        let plain = match url.as_bytes() {
            [b'/'] => true,
            [b'/', rest @ ..] => {
                let names = rest.strip_suffix(b"/").unwrap_or(rest);
                !names.is_empty()
                    && names
                        .split(|&b| b == b'/')
                        .all(|s| !s.is_empty() && s != b"." && s != b".." && !s.contains(&b'\\'))
            }
            _ => false,
        };
        if plain {
            out.extend_from_slice(root.trim_end_matches('/').as_bytes());
            out.extend_from_slice(url.as_bytes());
            return;
        }
    }
    out.extend_from_slice(translate_path(root, url).as_bytes());
}

/// [`translate`] segment by segment.
fn translate_path(root: &Path, url: &[u8]) -> String {
    let url = String::from_utf8_lossy(url);
    let mut path = root.to_path_buf();
    for seg in url.split(['/', '\\']) {
        match seg {
            "" | "." => {}
            ".." => {
                if path.starts_with(root) && path != root {
                    path.pop();
                }
            }
            // A drive, stream or device name would leave the root on Windows.
            s if cfg!(windows) && (s.contains(':') || s.ends_with(['.', ' '])) => {}
            s => path.push(s),
        }
    }
    let mut s = path.display().to_string();
    if url.ends_with('/') && !s.ends_with(std::path::MAIN_SEPARATOR) {
        s.push(std::path::MAIN_SEPARATOR);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> RequestInfo {
        let mut headers = HeaderMap::new();
        headers.insert("host", "example.com:8080".parse().unwrap());
        headers.insert("x-custom-thing", "a".parse().unwrap());
        headers.append("x-custom-thing", "b".parse().unwrap());
        headers.insert("content-type", "text/plain".parse().unwrap());
        RequestInfo {
            method: Method::POST,
            version: Version::HTTP_11,
            target: PathAndQuery::from_static("/app/a%20b?x=1"),
            url: b"/app/a b".to_vec(),
            headers,
            ends: Endpoints::new(
                "10.0.0.1:5555".parse().unwrap(),
                "127.0.0.1:8080".parse().unwrap(),
            ),
            script_name: "/app".into(),
            physical_path: Path::new("/srv/www").into(),
            content_length: Some(3),
        }
    }

    fn get(name: &str) -> Result<Vec<u8>, VarError> {
        info().get(name.as_bytes()).map(|c| c.into_owned())
    }

    #[test]
    fn cgi_variables() {
        assert_eq!(get("REQUEST_METHOD").unwrap(), b"POST");
        assert_eq!(get("request_method").unwrap(), b"POST");
        assert_eq!(get("URL").unwrap(), b"/app/a b");
        assert_eq!(get("PATH_INFO").unwrap(), b"/app/a b");
        assert_eq!(get("SCRIPT_NAME").unwrap(), b"/app");
        assert_eq!(get("QUERY_STRING").unwrap(), b"x=1");
        assert_eq!(get("SERVER_NAME").unwrap(), b"example.com");
        assert_eq!(get("SERVER_PORT").unwrap(), b"8080");
        assert_eq!(get("REMOTE_ADDR").unwrap(), b"10.0.0.1");
        assert_eq!(get("REMOTE_PORT").unwrap(), b"5555");
        assert_eq!(get("LOCAL_ADDR").unwrap(), b"127.0.0.1");
        assert_eq!(get("CONTENT_LENGTH").unwrap(), b"3");
        assert_eq!(get("CONTENT_TYPE").unwrap(), b"text/plain");
        assert_eq!(get("PATH_TRANSLATED").unwrap(), b"/srv/www/app/a b");
        assert_eq!(get("APPL_MD_PATH").unwrap(), b"/LM/W3SVC/1/ROOT/app");
        assert_eq!(get("HTTPS").unwrap(), b"off");
        assert_eq!(get("NO_SUCH_THING"), Err(VarError::Unknown));
    }

    #[test]
    fn header_variables() {
        assert_eq!(get("HTTP_X_CUSTOM_THING").unwrap(), b"a, b");
        assert_eq!(get("http_x_custom_thing").unwrap(), b"a, b");
        assert_eq!(get("HEADER_X-Custom-Thing").unwrap(), b"a, b");
        assert_eq!(get("HTTP_ABSENT"), Err(VarError::Unknown));
        assert_eq!(get("HEADER_X_CUSTOM_THING"), Err(VarError::Unknown));
        let mut spoof = info();
        spoof
            .headers
            .insert("x_forwarded_for", "6.6.6.6".parse().unwrap());
        spoof
            .headers
            .insert("x-forwarded-for", "10.0.0.1".parse().unwrap());
        assert_eq!(
            &spoof.get(b"HTTP_X_FORWARDED_FOR").unwrap()[..],
            b"10.0.0.1"
        );
        assert!(
            !String::from_utf8(spoof.get(b"ALL_HTTP").unwrap().into_owned())
                .unwrap()
                .contains("6.6.6.6")
        );
        assert_eq!(
            &spoof.get(b"HEADER_x_forwarded_for").unwrap()[..],
            b"6.6.6.6"
        );
        let all_http = String::from_utf8(get("ALL_HTTP").unwrap()).unwrap();
        assert!(
            all_http.contains("HTTP_X_CUSTOM_THING:a, b\n"),
            "{all_http}"
        );
        let all_raw = String::from_utf8(get("ALL_RAW").unwrap()).unwrap();
        assert!(
            all_raw.contains("X-Custom-Thing: a\r\nX-Custom-Thing: b\r\n"),
            "{all_raw}"
        );
        assert!(all_raw.contains("Host: example.com:8080\r\n"), "{all_raw}");
    }

    #[test]
    fn unicode_variables_are_utf16() {
        assert_eq!(get("UNICODE_SCRIPT_NAME").unwrap(), b"/\0a\0p\0p\0");
        assert_eq!(get("UNICODE_HTTP_HOST"), Err(VarError::Unknown));
    }

    #[test]
    fn translate_shortcut_agrees_with_the_segment_walk() {
        for root in ["/srv/www", "/srv/www/", "/"] {
            for url in [
                "/",
                "/a",
                "/a/",
                "/a/b.py",
                "/a b/c",
                "/a//b",
                "//",
                "/a//",
                "/a/.",
                "/a/./b",
                "/a/../b",
                "/..",
                "/a\\b",
                "",
                "a",
                "/caf\u{e9}",
            ] {
                assert_eq!(
                    translate(Path::new(root), url.as_bytes()),
                    translate_path(Path::new(root), url.as_bytes()),
                    "root {root:?}, url {url:?}"
                );
            }
        }
    }

    #[test]
    fn translate_stays_below_the_root() {
        assert_eq!(
            translate(Path::new("/srv"), b"/a/../../etc/passwd"),
            "/srv/etc/passwd"
        );
        assert_eq!(translate(Path::new("/srv"), b"/dir/"), "/srv/dir/");
    }
}
