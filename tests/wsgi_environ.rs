//! The environ: a real dict of native strings (latin-1), the CGI and wsgi.*
//! keys, request headers, and SCRIPT_NAME / PATH_INFO from the mount prefix.

use crate::support::{self, Host};
use crate::{body, fixtures, probe_host, quoted};

fn environ(host: &Host, raw: &[u8]) -> String {
    body(&support::request(host.addr(), raw))
}

#[test]
fn environ_is_a_dict_of_native_strings() {
    let host = probe_host();
    let text = environ(
        &host,
        b"GET /environ?a=1&b=%20x HTTP/1.1\r\nHost: example.test:8080\r\nX-Custom: one\r\nX-Custom: two\r\n\
          Cookie: a=1\r\nCookie: b=2\r\nX_Under: dropped\r\nConnection: close\r\n\r\n",
    );
    for expected in [
        r#""__dict__": true"#,
        r#""__types__": ["str"]"#,
        r#""__version__": [1, 0]"#,
        r#""REQUEST_METHOD": "GET""#,
        r#""QUERY_STRING": "a=1&b=%20x""#,
        r#""PATH_INFO": "/environ""#,
        r#""SCRIPT_NAME": """#,
        r#""SERVER_PROTOCOL": "HTTP/1.1""#,
        r#""REMOTE_ADDR": "127.0.0.1""#,
        r#""HTTP_HOST": "example.test:8080""#,
        r#""HTTP_X_CUSTOM": "one, two""#,
        r#""HTTP_COOKIE": "a=1; b=2""#,
        r#""wsgi.url_scheme": "http""#,
        r#""wsgi.input_terminated": true"#,
        r#""wsgi.multithread": true"#,
        r#""wsgi.multiprocess": false"#,
        r#""wsgi.run_once": false"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in {text}");
    }
    assert!(
        !text.contains("X_UNDER") && !text.contains("dropped"),
        "headers with _ are dropped: {text}"
    );
    assert!(text.contains(r#""SERVER_PORT": ""#) && text.contains(r#""SERVER_NAME": ""#));
    assert!(text.contains(r#""REMOTE_PORT": ""#), "{text}");
    for object in ["wsgi.input", "wsgi.errors", "wsgi.file_wrapper"] {
        assert!(
            text.contains(&format!(r#""{object}": "'"#)),
            "{object}: {text}"
        );
    }
}

#[test]
fn each_request_gets_a_fresh_environ() {
    let host = probe_host();
    let get = b"GET /environ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let first = environ(&host, get);
    // The app adds, replaces and deletes keys of its environ after reading it.
    environ(
        &host,
        b"GET /environ?mutate HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let after = environ(&host, get);
    assert!(!after.contains("probe.mark"), "{after}");
    assert!(after.contains(r#""REQUEST_METHOD": "GET""#), "{after}");
    assert!(after.contains(r#""wsgi.url_scheme": "http""#), "{after}");
    let keys = |text: &str| {
        text.split("\": ")
            .filter_map(|s| s.rsplit('"').next().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&first), keys(&after));
}

#[test]
fn server_name_follows_each_request() {
    // pyisapie reuses the last request's string while the bytes are the same.
    let host = probe_host();
    for name in ["a.test", "a.test", "b.test", "a.test"] {
        let raw = format!("GET /environ HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
        let text = environ(&host, raw.as_bytes());
        assert!(
            text.contains(&format!(r#""SERVER_NAME": "{name}""#)),
            "{name}: {text}"
        );
    }
}

#[test]
fn content_type_and_length_are_cgi_keys() {
    let host = probe_host();
    let text = environ(
        &host,
        b"POST /environ HTTP/1.1\r\nHost: t\r\nContent-Type: text/x-probe\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    );
    assert!(text.contains(r#""CONTENT_TYPE": "text/x-probe""#), "{text}");
    assert!(text.contains(r#""CONTENT_LENGTH": "3""#), "{text}");
    assert!(
        !text.contains("HTTP_CONTENT_TYPE") && !text.contains("HTTP_CONTENT_LENGTH"),
        "{text}"
    );
}

#[test]
fn path_info_is_latin1_decoded_bytes() {
    let host = probe_host();
    // %C3%A9 is UTF-8 for é: PATH_INFO holds the two bytes as latin-1 characters,
    // which the app encodes back with latin-1.
    let r = support::request(
        host.addr(),
        b"GET /unicode-path/%C3%A9 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.body, "/unicode-path/\u{e9}".as_bytes());
}

fn write_config(tag: &str, text: &str) -> std::path::PathBuf {
    let dir = support::temp_dir(tag);
    let path = dir.join("pyisapie.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn apps_mounted_by_prefix() {
    let config = write_config(
        "mounts",
        &format!(
            "python_path = [{}]\n[[app]]\nprefix = \"/\"\ncallable = \"probe:other_app\"\n\
             [[app]]\nprefix = \"/sub/\"\ncallable = \"probe:other_app\"\n\
             [[app]]\nprefix = \"/sub/deeper\"\ncallable = \"probe:other_app\"\n",
            quoted(fixtures())
        ),
    );
    let lib = support::pyisapie_lib();
    let lib = support::host_path(&lib);
    let lib = lib.as_str();
    let config = support::host_path(&config);
    let config = config.as_str();
    // served at the root
    let host = Host::start_env(&["--extension", lib], [("PYISAPIE_CONFIG", config)]);
    let cases = [
        ("/", r#"["", "/"]"#),
        ("/x/y", r#"["", "/x/y"]"#),
        ("/sub", r#"["/sub", ""]"#),
        ("/sub/x/y", r#"["/sub", "/x/y"]"#),
        ("/subway", r#"["", "/subway"]"#),
        ("/sub/deeper/z", r#"["/sub/deeper", "/z"]"#),
    ];
    for (path, expected) in cases {
        assert_eq!(body(&host.get(path)), expected, "{path}");
    }
    drop(host);
    // the extension itself mounted below /ext: SCRIPT_NAME starts with the mount
    let map = format!("/ext={lib}");
    let host = Host::start_env(&["--map", &map], [("PYISAPIE_CONFIG", config)]);
    assert_eq!(body(&host.get("/ext/sub/x")), r#"["/ext/sub", "/x"]"#);
    assert_eq!(body(&host.get("/ext/q")), r#"["/ext", "/q"]"#);
    assert_eq!(body(&host.get("/ext")), r#"["/ext", ""]"#);
}

#[test]
fn no_app_for_the_url_is_a_404() {
    let config = write_config(
        "nomatch",
        &format!(
            "python_path = [{}]\n[[app]]\nprefix = \"/only\"\ncallable = \"probe:other_app\"\n",
            quoted(fixtures())
        ),
    );
    let lib = support::pyisapie_lib();
    let host = Host::start_env(
        &["--extension", &support::host_path(&lib)],
        [("PYISAPIE_CONFIG", support::host_path(&config))],
    );
    assert_eq!(host.get("/elsewhere").status, 404);
    assert_eq!(body(&host.get("/only/a")), r#"["/only", "/a"]"#);
}
