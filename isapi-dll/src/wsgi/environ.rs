//! The WSGI environ: the interned keys, the per-interpreter template every environ is
//! copied from, and the environ of one request, built from the ECB and the server
//! variables fetched before the GIL was taken.
//!
//! `SCRIPT_NAME` and `PATH_INFO` come from the route ([`crate::mount`]), never from the
//! server's `PATH_INFO`. Request headers come from `ALL_RAW`; a header whose name holds
//! anything but letters, digits and dashes is dropped (underscores would collide with
//! dashes), and repeated headers are joined with `, ` (`; ` for `Cookie`).

use std::cell::RefCell;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple, PyType};

use super::input::Input;
use crate::ffi::Ecb;
use crate::ffi::python::latin1;
use crate::ffi::pytype::{Instance, Owned};
use crate::mount::Route;
use crate::server_vars::{RequestInfo, Var};

macro_rules! keys {
    ($($field:ident = $name:literal),* $(,)?) => {
        /// Strings used on every request (environ keys and a few values), interned in
        /// this interpreter.
        pub(crate) struct Keys { $(pub(crate) $field: Owned<PyString>,)* }
        impl Keys {
            fn new(py: Python<'_>) -> Self {
                Self { $($field: Owned::new(PyString::intern(py, $name)),)* }
            }
        }
    };
}

keys! {
    request_method = "REQUEST_METHOD",
    script_name = "SCRIPT_NAME",
    path_info = "PATH_INFO",
    query_string = "QUERY_STRING",
    content_type = "CONTENT_TYPE",
    content_length = "CONTENT_LENGTH",
    server_name = "SERVER_NAME",
    server_port = "SERVER_PORT",
    server_protocol = "SERVER_PROTOCOL",
    remote_addr = "REMOTE_ADDR",
    remote_port = "REMOTE_PORT",
    https = "HTTPS",
    wsgi_version = "wsgi.version",
    wsgi_url_scheme = "wsgi.url_scheme",
    wsgi_input = "wsgi.input",
    wsgi_errors = "wsgi.errors",
    wsgi_multithread = "wsgi.multithread",
    wsgi_multiprocess = "wsgi.multiprocess",
    wsgi_run_once = "wsgi.run_once",
    wsgi_input_terminated = "wsgi.input_terminated",
    wsgi_file_wrapper = "wsgi.file_wrapper",
    http = "http",
    https_scheme = "https",
    on = "on",
    get = "GET",
    head = "HEAD",
    post = "POST",
    http11 = "HTTP/1.1",
    http10 = "HTTP/1.0",
    close = "close",
    write = "write",
    empty = "",
    http_host = "HTTP_HOST",
    http_user_agent = "HTTP_USER_AGENT",
    http_accept = "HTTP_ACCEPT",
    http_accept_encoding = "HTTP_ACCEPT_ENCODING",
    http_accept_language = "HTTP_ACCEPT_LANGUAGE",
    http_connection = "HTTP_CONNECTION",
    http_cookie = "HTTP_COOKIE",
}

impl Keys {
    /// The interned environ key of a common request header (`name` in any case), so that
    /// most requests make no key string.
    pub(crate) fn common_header(&self, name: &[u8]) -> Option<&Owned<PyString>> {
        let mut lower = [0u8; 15];
        let lower = lower.get_mut(..name.len())?;
        lower.copy_from_slice(name);
        lower.make_ascii_lowercase();
        Some(match &*lower {
            b"host" => &self.http_host,
            b"user-agent" => &self.http_user_agent,
            b"accept" => &self.http_accept,
            b"accept-encoding" => &self.http_accept_encoding,
            b"accept-language" => &self.http_accept_language,
            b"connection" => &self.http_connection,
            b"cookie" => &self.http_cookie,
            _ => return None,
        })
    }
}

/// Environ values that are mostly the same from one request to the next
/// ([`Environ::repeated`]).
#[derive(Clone, Copy)]
enum Repeated {
    ScriptName,
    ServerName,
    ServerPort,
    RemoteAddr,
}

impl Repeated {
    const COUNT: usize = 4;
}

/// The bytes of a [`Repeated`] value and the string last made of them.
type LastString = (Vec<u8>, Option<Owned<PyString>>);

/// The per-interpreter part of every environ: the interned keys, the template each
/// request's environ is copied from, and the last string made for each [`Repeated`]
/// value. Lives in the interpreter's [`Context`](super::Context).
pub(crate) struct Environ {
    /// Interned strings.
    pub(crate) keys: Keys,
    /// The constant WSGI entries, and a placeholder (`None`) under each key that
    /// [`Environ::build`] sets for every request.
    base: Owned<PyDict>,
    /// The last string made for each [`Repeated`] environ value.
    repeated: [RefCell<LastString>; Repeated::COUNT],
}

impl Environ {
    /// The keys and the template, with `errors` as `wsgi.errors` and `file_wrapper` as
    /// `wsgi.file_wrapper`.
    pub(crate) fn new(
        py: Python<'_>,
        errors: &Bound<'_, PyAny>,
        file_wrapper: &Bound<'_, PyType>,
    ) -> PyResult<Self> {
        let keys = Keys::new(py);
        let base = PyDict::new(py);
        let k = &keys;
        // The constant entries, then placeholders for the keys every request sets: a copy
        // of this dict has room for them and a few headers, so filling it in replaces
        // values rather than growing the table.
        base.set_item(k.wsgi_version.bind(py), PyTuple::new(py, [1, 0])?)?;
        base.set_item(k.wsgi_url_scheme.bind(py), k.http.bind(py))?;
        base.set_item(k.wsgi_errors.bind(py), errors)?;
        base.set_item(k.wsgi_multithread.bind(py), true)?;
        base.set_item(k.wsgi_multiprocess.bind(py), false)?;
        base.set_item(k.wsgi_run_once.bind(py), false)?;
        base.set_item(k.wsgi_input_terminated.bind(py), true)?;
        base.set_item(k.wsgi_file_wrapper.bind(py), file_wrapper)?;
        for key in [
            &k.request_method,
            &k.script_name,
            &k.path_info,
            &k.query_string,
            &k.server_protocol,
            &k.server_name,
            &k.server_port,
            &k.remote_addr,
            &k.remote_port,
            &k.wsgi_input,
        ] {
            base.set_item(key.bind(py), py.None())?;
        }
        Ok(Self {
            keys,
            base: Owned::new(base),
            repeated: Default::default(),
        })
    }

    /// `bytes` as a latin-1 string, reusing the string of the last request when `bytes`
    /// are the same, as they mostly are for a [`Repeated`] value.
    fn repeated<'py>(
        &self,
        py: Python<'py>,
        which: Repeated,
        bytes: &[u8],
    ) -> PyResult<Bound<'py, PyString>> {
        // Borrowed under the GIL; should another thread of this interpreter be using it
        // (the GIL was released meanwhile), the string is just made afresh.
        let Ok(mut last) = self.repeated[which as usize].try_borrow_mut() else {
            return latin1(py, bytes);
        };
        if let (b, Some(s)) = &*last
            && b == bytes
        {
            return Ok(s.bind(py).clone());
        }
        let s = latin1(py, bytes)?;
        last.0.clear();
        last.0.extend_from_slice(bytes);
        last.1 = Some(Owned::new(s.clone()));
        Ok(s)
    }

    /// The environ of one request, with `input` as `wsgi.input`.
    pub(crate) fn build<'py>(
        &self,
        py: Python<'py>,
        ecb: Ecb,
        info: &RequestInfo,
        route: &Route<'_>,
        input: &Instance<'py, Input>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let k = &self.keys;
        // Holds the constant WSGI entries, and placeholders for the keys set below.
        let env = self.base.bind(py).copy()?;
        let method = ecb.method();
        let method = match method {
            b"GET" => k.get.bind(py).clone(),
            b"HEAD" => k.head.bind(py).clone(),
            b"POST" => k.post.bind(py).clone(),
            _ => latin1(py, method)?,
        };
        env.set_item(k.request_method.bind(py), method)?;
        let script_name = self.repeated(py, Repeated::ScriptName, &route.script_name)?;
        env.set_item(k.script_name.bind(py), script_name)?;
        env.set_item(k.path_info.bind(py), latin1(py, route.path_info)?)?;
        let query = ecb.query_string();
        if query.is_empty() {
            env.set_item(k.query_string.bind(py), k.empty.bind(py))?;
        } else {
            env.set_item(k.query_string.bind(py), latin1(py, query)?)?;
        }
        let content_type = ecb.content_type();
        if !content_type.is_empty() {
            env.set_item(k.content_type.bind(py), latin1(py, content_type)?)?;
        }
        let protocol = match info.get(Var::Protocol) {
            b"HTTP/1.1" => k.http11.bind(py).clone(),
            b"HTTP/1.0" => k.http10.bind(py).clone(),
            other => latin1(py, other)?,
        };
        env.set_item(k.server_protocol.bind(py), protocol)?;
        let server_name = self.repeated(py, Repeated::ServerName, info.get(Var::ServerName))?;
        env.set_item(k.server_name.bind(py), server_name)?;
        let server_port = self.repeated(py, Repeated::ServerPort, info.get(Var::ServerPort))?;
        env.set_item(k.server_port.bind(py), server_port)?;
        let remote_addr = self.repeated(py, Repeated::RemoteAddr, info.get(Var::RemoteAddr))?;
        env.set_item(k.remote_addr.bind(py), remote_addr)?;
        if info.get(Var::RemotePort).is_empty() {
            env.del_item(k.remote_port.bind(py))?;
        } else {
            env.set_item(
                k.remote_port.bind(py),
                latin1(py, info.get(Var::RemotePort))?,
            )?;
        }
        let mut content_length = None;
        for line in info.get(Var::AllRaw).split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = (trim(&line[..colon]), trim(&line[colon + 1..]));
            if name.eq_ignore_ascii_case(b"content-length") {
                content_length = Some(value);
                continue;
            }
            if name.eq_ignore_ascii_case(b"content-type") || name.is_empty() {
                continue;
            }
            // Underscores would collide with dashes (X-Auth vs X_Auth): drop such headers, as
            // gunicorn and nginx do.
            if !name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-') {
                tracing::debug!(target: "pyisapie", "dropped request header {:?}", String::from_utf8_lossy(name));
                continue;
            }
            let py_key = match k.common_header(name) {
                Some(key) => key.bind(py).clone(),
                None => header_key(py, name),
            };
            let value = latin1(py, value)?;
            let value = match env.get_item(&py_key)? {
                Some(prev) => {
                    let sep = if name.eq_ignore_ascii_case(b"cookie") {
                        "; "
                    } else {
                        ", "
                    };
                    PyString::new(
                        py,
                        &format!(
                            "{}{sep}{}",
                            prev.cast::<PyString>()?.to_cow()?,
                            value.to_cow()?
                        ),
                    )
                }
                None => value,
            };
            env.set_item(py_key, value)?;
        }
        let total = ecb.total_bytes();
        if total != u32::MAX {
            if content_length.is_some() || total > 0 {
                env.set_item(k.content_length.bind(py), total.to_string())?;
            }
        } else if let Some(value) = content_length {
            // a body of 4 GiB or more: the ECB cannot say, the header can
            env.set_item(k.content_length.bind(py), latin1(py, value)?)?;
        }
        if info.https() {
            env.set_item(k.https.bind(py), k.on.bind(py))?;
            env.set_item(k.wsgi_url_scheme.bind(py), k.https_scheme.bind(py))?;
        }
        env.set_item(k.wsgi_input.bind(py), input.as_any())?;
        Ok(env)
    }
}

/// `HTTP_` and the header's name, upper-cased with `-` as `_`. `name` is ASCII letters,
/// digits and dashes (checked by the caller).
fn header_key<'py>(py: Python<'py>, name: &[u8]) -> Bound<'py, PyString> {
    let mut key = Vec::with_capacity(5 + name.len());
    key.extend_from_slice(b"HTTP_");
    key.extend(name.iter().map(|&b| {
        if b == b'-' {
            b'_'
        } else {
            b.to_ascii_uppercase()
        }
    }));
    PyString::new(py, std::str::from_utf8(&key).unwrap_or_default())
}

/// `s` without leading and trailing spaces and tabs.
fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}
