//! GetServerVariable: the size-probing protocol and the IIS variable set.

use std::time::Duration;

use crate::support::*;

/// Parsed body of the `vars` fixture: (probe_errno, needed, got, value).
#[derive(Debug, PartialEq, Eq)]
struct Var {
    probe_errno: i32,
    needed: u32,
    got: u32,
    value: Vec<u8>,
}

fn parse_var(r: &Response) -> Result<Var, String> {
    assert_eq!(r.status, 200, "{r:?}");
    let body = &r.body;
    let nl = body
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| String::from_utf8_lossy(body).into_owned())?;
    let head = std::str::from_utf8(&body[..nl]).unwrap();
    let mut it = head.split(' ').map(|kv| kv.split_once('=').unwrap().1);
    Ok(Var {
        probe_errno: it.next().unwrap().parse().unwrap(),
        needed: it.next().unwrap().parse().unwrap(),
        got: it.next().unwrap().parse().unwrap(),
        value: body[nl + 1..].to_vec(),
    })
}

/// Fetch variable `name` with an extra raw request header block.
fn var_with(c: &mut RawConn, path: &str, name: &str, extra_headers: &str) -> Result<Var, String> {
    let req = format!("GET {path}?{name} HTTP/1.1\r\nHost: test.example\r\n{extra_headers}\r\n");
    parse_var(&c.roundtrip(req.as_bytes()))
}

/// Fetch a variable and assert the probing protocol was followed exactly.
fn value(c: &mut RawConn, name: &str, extra_headers: &str) -> String {
    let v = var_with(c, "/vars", name, extra_headers).unwrap_or_else(|e| panic!("{name}: {e}"));
    check_probe(name, &v);
    String::from_utf8(v.value).expect("utf-8 value")
}

fn check_probe(name: &str, v: &Var) {
    let len = v.value.len() as u32;
    if len == 0 {
        // An empty value fits in the 1-byte probe buffer (just the NUL).
        assert_eq!((v.probe_errno, v.needed, v.got), (0, 1, 1), "{name}: {v:?}");
    } else {
        assert_eq!(
            v.probe_errno, 122,
            "{name}: probe must fail with ERROR_INSUFFICIENT_BUFFER: {v:?}"
        );
        assert_eq!(
            v.needed,
            len + 1,
            "{name}: needed size includes the NUL: {v:?}"
        );
        assert_eq!(
            v.got,
            len + 1,
            "{name}: returned size includes the NUL: {v:?}"
        );
    }
}

#[test]
fn size_probing_protocol() {
    let host = Host::with_c_fixture("vars", &[]);
    let mut c = host.connect();
    let v = var_with(&mut c, "/vars", "REQUEST_METHOD", "").unwrap();
    assert_eq!(
        v,
        Var {
            probe_errno: 122,
            needed: 4,
            got: 4,
            value: b"GET".to_vec()
        }
    );
}

#[test]
fn unknown_variable_is_invalid_index() {
    let host = Host::with_c_fixture("vars", &[]);
    let r = host.get("/vars?NO_SUCH_VARIABLE_XYZ");
    assert_eq!(text(&r), "error=1413");
}

#[test]
fn request_line_variables() {
    let host = Host::with_c_fixture("vars", &[]);
    let mut c = host.connect();
    assert_eq!(value(&mut c, "REQUEST_METHOD", ""), "GET");
    assert_eq!(value(&mut c, "QUERY_STRING", ""), "QUERY_STRING");
    assert_eq!(value(&mut c, "SERVER_PROTOCOL", ""), "HTTP/1.1");
    assert_eq!(value(&mut c, "URL", ""), "/vars");
    assert_eq!(
        value(&mut c, "PATH_INFO", ""),
        "/vars",
        "IIS puts the full path in PATH_INFO"
    );
    assert_eq!(
        value(&mut c, "SCRIPT_NAME", ""),
        "",
        "root mount: SCRIPT_NAME is empty"
    );
    assert_eq!(value(&mut c, "HTTPS", ""), "off");
    assert_eq!(value(&mut c, "SERVER_PORT_SECURE", ""), "0");
    assert_eq!(value(&mut c, "REMOTE_ADDR", ""), "127.0.0.1");
    assert_eq!(value(&mut c, "LOCAL_ADDR", ""), "127.0.0.1");
    assert_eq!(
        value(&mut c, "SERVER_PORT", ""),
        host.addr().port().to_string()
    );
    let remote_port = value(&mut c, "REMOTE_PORT", "");
    assert_eq!(
        remote_port,
        c.stream().local_addr().unwrap().port().to_string()
    );
    assert_eq!(value(&mut c, "SERVER_NAME", ""), "test.example");
    assert_eq!(value(&mut c, "HTTP_HOST", ""), "test.example");
    for name in [
        "INSTANCE_ID",
        "APPL_MD_PATH",
        "APPL_PHYSICAL_PATH",
        "PATH_TRANSLATED",
        "CONTENT_TYPE",
    ] {
        let v = var_with(&mut c, "/vars", name, "")
            .unwrap_or_else(|e| panic!("{name} must exist: {e}"));
        check_probe(name, &v);
    }
}

#[test]
fn content_length_of_a_get_is_zero() {
    let host = Host::with_c_fixture("vars", &[]);
    let mut c = host.connect();
    assert_eq!(
        value(&mut c, "CONTENT_LENGTH", ""),
        "0",
        "no body: IIS reports CONTENT_LENGTH 0"
    );
}

#[test]
fn null_buffer_size_probe() {
    // GetServerVariable(conn, name, NULL, &size = 0): FALSE, 122, needed size.
    let host = Host::with_c_fixture("vars", &[]);
    let mut c = host.connect();
    assert_eq!(
        text(&c.roundtrip(&get_req("/vars-null?REQUEST_METHOD"))),
        "ret=0 errno=122 needed=4"
    );
    assert_eq!(
        text(&c.roundtrip(&get_req("/vars-null?NO_SUCH_VARIABLE_XYZ"))),
        "ret=0 errno=1413 needed=0"
    );
}

#[test]
fn url_is_decoded_and_without_query() {
    let host = Host::with_c_fixture("vars", &[]);
    let mut c = host.connect();
    let v = var_with(&mut c, "/a%20b/vars", "URL", "").unwrap();
    check_probe("URL", &v);
    assert_eq!(String::from_utf8(v.value).unwrap(), "/a b/vars");
}

#[test]
fn post_variables() {
    let host = Host::with_c_fixture("vars", &[]);
    let mut c = host.connect();
    let req = b"POST /vars?CONTENT_LENGTH HTTP/1.1\r\nHost: t\r\nContent-Type: text/x-test\r\nContent-Length: 4\r\n\r\nbody";
    let v = parse_var(&c.roundtrip(req)).unwrap();
    assert_eq!(v.value, b"4");
    let req = b"POST /vars?CONTENT_TYPE HTTP/1.1\r\nHost: t\r\nContent-Type: text/x-test\r\nContent-Length: 4\r\n\r\nbody";
    let v = parse_var(&c.roundtrip(req)).unwrap();
    assert_eq!(v.value, b"text/x-test");
    let req = b"POST /vars?REQUEST_METHOD HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody";
    assert_eq!(parse_var(&c.roundtrip(req)).unwrap().value, b"POST");
    // The same Content-Type twice is one value (as in lpszContentType), not a list.
    let req = b"POST /vars?CONTENT_TYPE HTTP/1.1\r\nHost: t\r\nContent-Type: text/x-test\r\nContent-Type: text/x-test\r\nContent-Length: 4\r\n\r\nbody";
    assert_eq!(parse_var(&c.roundtrip(req)).unwrap().value, b"text/x-test");
}

#[test]
fn conflicting_content_types_are_refused_before_the_extension_runs() {
    let host = Host::with_c_fixture("vars", &[]);
    let mut c = host.connect();
    let req = b"POST /vars?CONTENT_TYPE HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\nbody";
    let r = c.roundtrip(req);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        host.wait_for_log("conflicting Content-Type headers", Duration::from_secs(5)),
        "the log says why:\n{}",
        host.stderr()
    );
    // the host stays up, and serves the next client
    let mut next = host.connect();
    let req = b"POST /vars?CONTENT_TYPE HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nbody";
    assert_eq!(
        parse_var(&next.roundtrip(req)).unwrap().value,
        b"text/plain"
    );
}

#[test]
fn header_variables() {
    let host = Host::with_c_fixture("vars", &[]);
    let mut c = host.connect();
    let hdrs = "X-Alpha: one\r\nX-Multi-Word-Name: two words\r\nUser-Agent: e2e/1.0\r\n";
    assert_eq!(value(&mut c, "HTTP_X_ALPHA", hdrs), "one");
    assert_eq!(value(&mut c, "HTTP_X_MULTI_WORD_NAME", hdrs), "two words");
    assert_eq!(value(&mut c, "HTTP_USER_AGENT", hdrs), "e2e/1.0");
    assert_eq!(value(&mut c, "HEADER_X-Alpha", hdrs), "one");
    assert_eq!(value(&mut c, "HEADER_X-Multi-Word-Name", hdrs), "two words");
}

#[test]
fn all_raw_and_all_http() {
    let host = Host::with_c_fixture("vars", &[]);
    let mut c = host.connect();
    let hdrs = "X-Alpha: one\r\nX-Beta: two\r\n";
    let raw = value(&mut c, "ALL_RAW", hdrs);
    for line in [
        "Host: test.example\r\n",
        "X-Alpha: one\r\n",
        "X-Beta: two\r\n",
    ] {
        assert!(
            raw.contains(line),
            "ALL_RAW should contain {line:?}: {raw:?}"
        );
    }
    assert!(
        raw.find("X-Alpha").unwrap() < raw.find("X-Beta").unwrap(),
        "ALL_RAW keeps the request order: {raw:?}"
    );
    let all = value(&mut c, "ALL_HTTP", hdrs);
    let lines: Vec<&str> = all.split('\n').map(|l| l.trim_end_matches('\r')).collect();
    for want in [
        "HTTP_HOST:test.example",
        "HTTP_X_ALPHA:one",
        "HTTP_X_BETA:two",
    ] {
        assert!(
            lines.contains(&want),
            "ALL_HTTP should have a line {want:?}: {all:?}"
        );
    }
}

#[test]
fn unicode_variables_are_utf16() {
    let host = Host::with_c_fixture("vars", &[]);
    let mut c = host.connect();
    // A percent-encoded UTF-8 path; URL is the decoded path.
    let r = c.roundtrip(b"GET /caf%C3%A9/vars-unicode?URL HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 200);
    let expect: Vec<u8> = "/café/vars-unicode"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    assert_eq!(r.body, expect, "UNICODE_URL is UTF-16LE");
    let size: usize = r.header("x-size").unwrap().parse().unwrap();
    assert_eq!(size, expect.len() + 2, "size in bytes incl. the 2-byte NUL");
    assert_eq!(r.header("x-probe-errno"), Some("122"));
    assert_eq!(r.header("x-needed"), Some(size.to_string().as_str()));

    let r = c.roundtrip(b"GET /vars-unicode?REQUEST_METHOD HTTP/1.1\r\nHost: t\r\n\r\n");
    let expect: Vec<u8> = "GET".encode_utf16().flat_map(u16::to_le_bytes).collect();
    assert_eq!(r.body, expect);

    let r = c.roundtrip(b"GET /vars-unicode?NO_SUCH_VARIABLE_XYZ HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(text(&r), "error=1413");
}

#[test]
fn mapped_prefix_script_name() {
    let lib = c_fixture_str("vars");
    let map = format!("/app={lib}");
    let host = Host::start(&["--map", &map]);
    let mut c = host.connect();
    let get = |c: &mut RawConn, name: &str| {
        let v = var_with(c, "/app/vars", name, "").unwrap_or_else(|e| panic!("{name}: {e}"));
        check_probe(name, &v);
        String::from_utf8(v.value).unwrap()
    };
    assert_eq!(get(&mut c, "SCRIPT_NAME"), "/app");
    assert_eq!(get(&mut c, "URL"), "/app/vars");
    assert_eq!(get(&mut c, "PATH_INFO"), "/app/vars");
    // Outside the mount: 404 from the host, not the extension.
    let r = c.roundtrip(&get_req("/other/vars?URL"));
    assert_eq!(r.status, 404);
}

#[test]
fn two_mounts_route_by_prefix() {
    let vars = format!("/v={}", c_fixture_str("vars"));
    let hello = format!("/h={}", c_fixture_str("hello"));
    let host = Host::start(&["--map", &vars, "--map", &hello]);
    let mut c = host.connect();
    assert_eq!(c.roundtrip(&get_req("/h/x")).body, b"Hello, world!");
    let v = parse_var(&c.roundtrip(&get_req("/v/vars?SCRIPT_NAME"))).unwrap();
    assert_eq!(v.value, b"/v");
}

#[test]
fn path_translated_is_below_the_doc_root() {
    let root = temp_dir("vars-docroot");
    let root_s = host_path(&root);
    let host = Host::with_c_fixture("vars", &["--doc-root", &root_s]);
    let mut c = host.connect();
    let v = var_with(&mut c, "/x/y/vars", "PATH_TRANSLATED", "").unwrap();
    check_probe("PATH_TRANSLATED", &v);
    assert_eq!(
        String::from_utf8(v.value).unwrap(),
        host_join(&root_s, "x/y/vars")
    );
}

#[test]
fn absolute_form_request_target() {
    let host = Host::with_c_fixture("vars", &[]);
    let mut c = host.connect();
    let r =
        c.roundtrip(b"GET http://test.example/abs/vars?URL HTTP/1.1\r\nHost: test.example\r\n\r\n");
    let v = parse_var(&r).unwrap();
    assert_eq!(
        v.value, b"/abs/vars",
        "URL is the path of an absolute-form target"
    );
}

#[test]
fn dot_segments_never_climb_out() {
    let root = temp_dir("vars-dots");
    let root_s = host_path(&root);
    let host = Host::with_c_fixture("vars", &["--doc-root", &root_s]);
    let mut c = host.connect();
    c.send(b"GET /../../etc/vars?PATH_TRANSLATED HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response().expect("response");
    if r.status == 200 {
        let v = parse_var(&r).unwrap();
        let p = String::from_utf8(v.value).unwrap();
        assert!(
            p.starts_with(&root_s) && !p.contains(".."),
            "PATH_TRANSLATED escaped: {p:?}"
        );
    } else {
        assert_eq!(r.status, 400, "{r:?}");
    }
}
