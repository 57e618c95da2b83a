//! Static files (`--static /PREFIX=DIR`): a real file tree in a temp dir,
//! served beside the `hello` extension; validators, ranges, HEAD, methods,
//! traversal attempts, default documents and prefix precedence.

use std::path::{Path, PathBuf};

use crate::support::*;

/// A site: `static/` with a few files and `static/docs/` with an index,
/// plus a secret next to (not under) the served directory.
fn tree(tag: &str) -> PathBuf {
    let root = temp_dir(tag);
    let st = root.join("static");
    std::fs::create_dir_all(st.join("docs")).unwrap();
    std::fs::create_dir_all(st.join("empty")).unwrap();
    std::fs::write(st.join("app.css"), "body { color: red }\n").unwrap();
    std::fs::write(st.join("hello.txt"), "0123456789abcdef").unwrap();
    std::fs::write(st.join("page.html"), "<p>hi</p>").unwrap();
    std::fs::write(st.join("docs").join("index.html"), "<h1>docs</h1>").unwrap();
    std::fs::write(root.join("secret.txt"), "TOP SECRET").unwrap();
    root
}

fn arg(prefix: &str, dir: &Path) -> String {
    format!("{prefix}={}", host_path(dir))
}

/// The host with `hello` at `/`, `/static` from the tree, and `/hello/static`
/// (inside an extension's prefix) from it too.
fn host(root: &Path) -> Host {
    let st = arg("/static", &root.join("static"));
    Host::with_c_fixture("hello", &["--static", &st])
}

fn req(host: &Host, head: &str) -> Response {
    request(
        host.addr(),
        format!("{head}\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

#[test]
fn files_are_served_with_type_and_validators() {
    let root = tree("static-get");
    let host = host(&root);
    let r = host.get("/static/app.css");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, b"body { color: red }\n");
    assert_eq!(r.header("content-type"), Some("text/css"));
    assert_eq!(r.header("content-length"), Some("20"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let etag = r.header("etag").expect("ETag").to_owned();
    let modified = r.header("last-modified").expect("Last-Modified").to_owned();
    assert!(etag.starts_with("W/\""), "{etag}");
    assert_eq!(
        host.get("/static/page.html").header("content-type"),
        Some("text/html")
    );

    // 304 on a matching If-None-Match, and on If-Modified-Since.
    let r = req(
        &host,
        &format!("GET /static/app.css HTTP/1.1\r\nIf-None-Match: {etag}"),
    );
    assert_eq!(r.status, 304, "{r:?}");
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = req(
        &host,
        &format!("GET /static/app.css HTTP/1.1\r\nIf-Modified-Since: {modified}"),
    );
    assert_eq!(r.status, 304, "{r:?}");
    // A stale tag gets the file, even with a matching date (RFC 9110 13.2.2).
    let r = req(
        &host,
        &format!(
            "GET /static/app.css HTTP/1.1\r\nIf-None-Match: \"stale\"\r\nIf-Modified-Since: {modified}"
        ),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, b"body { color: red }\n");
}

#[test]
fn ranges_head_and_methods() {
    let root = tree("static-range");
    let host = host(&root);
    let r = req(&host, "GET /static/hello.txt HTTP/1.1\r\nRange: bytes=2-5");
    assert_eq!(r.status, 206, "{r:?}");
    assert_eq!(r.body, b"2345");
    assert_eq!(r.header("content-range"), Some("bytes 2-5/16"));
    let r = req(&host, "GET /static/hello.txt HTTP/1.1\r\nRange: bytes=-3");
    assert_eq!((r.status, r.body.as_slice()), (206, &b"def"[..]));
    let r = req(
        &host,
        "GET /static/hello.txt HTTP/1.1\r\nRange: bytes=100-200",
    );
    assert_eq!(r.status, 416, "{r:?}");
    // If-Range with another date: the whole file.
    let r = req(
        &host,
        "GET /static/hello.txt HTTP/1.1\r\nRange: bytes=2-5\r\nIf-Range: Thu, 01 Jan 1970 00:00:00 GMT",
    );
    assert_eq!((r.status, r.body.len()), (200, 16), "{r:?}");

    let mut c = host.connect();
    c.send(b"HEAD /static/hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response_to_head().expect("HEAD response");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("16"));
    // Nothing follows the head: the next response comes right away.
    let r = c.roundtrip(&get_req("/static/hello.txt"));
    assert_eq!(r.body, b"0123456789abcdef");

    for method in ["POST", "PUT", "DELETE"] {
        let r = req(
            &host,
            &format!("{method} /static/hello.txt HTTP/1.1\r\nContent-Length: 0"),
        );
        assert_eq!(r.status, 405, "{method}: {r:?}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
}

#[test]
fn missing_files_directories_and_default_documents() {
    let root = tree("static-dirs");
    let host = host(&root);
    let r = host.get("/static/nope.txt");
    assert_eq!(r.status, 404, "{r:?}");
    assert!(text(&r).contains("404"), "the host's error page: {r:?}");
    // A directory URL without its slash is redirected, with its prefix.
    let r = host.get("/static/docs?x=1");
    assert_eq!(r.status, 301, "{r:?}");
    assert_eq!(r.header("location"), Some("/static/docs/?x=1"));
    let r = host.get("/static");
    assert_eq!((r.status, r.header("location")), (301, Some("/static/")));
    let r = host.get("/static/docs/");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"<h1>docs</h1>"[..]),
        "{r:?}"
    );
    // No default document, no listing (IIS's 403.14).
    assert_eq!(host.get("/static/empty/").status, 403);
}

#[test]
fn traversal_never_leaves_the_directory() {
    let root = tree("static-escape");
    // No extension at `/`: what leaves /static would otherwise reach hello.
    let st = arg("/static", &root.join("static"));
    let other = arg("/other", &root.join("static").join("docs"));
    let hello = format!("/app={}", c_fixture_str("hello"));
    let host = Host::start(&["--map", &hello, "--static", &st, "--static", &other]);
    for path in [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/%2E%2E/secret.txt",
        "/static/..%2fsecret.txt",
        "/static/%2e%2e%2fsecret.txt",
        "/static/docs/../../secret.txt",
        "/static/%252e%252e/secret.txt",
        "/static/..\\secret.txt",
        "/static/%5c..%5csecret.txt",
        "/static/C:/secret.txt",
        "/static/%00secret.txt",
    ] {
        let r = host.get(path);
        assert!(matches!(r.status, 400 | 404), "{path}: {r:?}");
        assert!(!text(&r).contains("TOP SECRET"), "{path}: {r:?}");
    }
    // The raw request line too, unnormalized by any client.
    let r = request(
        host.addr(),
        b"GET /static/../../secret.txt HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert!(!text(&r).contains("TOP SECRET"), "{r:?}");
}

#[test]
fn the_longest_prefix_wins_between_extensions_and_files() {
    let root = tree("static-prefix");
    let st = root.join("static");
    let hello = c_fixture_str("hello");
    let host = Host::start(&[
        "--extension",
        &hello,
        // Files under an extension's prefix, and an extension under theirs.
        "--static",
        &arg("/app/files", &st),
        "--map",
        &format!("/app={hello}"),
        "--static",
        &arg("/static", &st),
        "--map",
        &format!("/static/dynamic={hello}"),
    ]);
    assert_eq!(host.get("/app/files/hello.txt").body, b"0123456789abcdef");
    assert_eq!(host.get("/app/other").body, b"Hello, world!");
    assert_eq!(host.get("/static/hello.txt").body, b"0123456789abcdef");
    assert_eq!(host.get("/static/dynamic/x").body, b"Hello, world!");
    assert_eq!(
        host.get("/staticx").body,
        b"Hello, world!",
        "whole segments only"
    );
    assert_eq!(host.get("/").body, b"Hello, world!");
    // At the same prefix, the extension wins.
    let same = Host::start(&["--extension", &hello, "--static", &arg("/", &st)]);
    assert_eq!(same.get("/hello.txt").body, b"Hello, world!");
}

#[test]
fn static_files_are_logged_and_served_by_every_worker() {
    if skip_on_windows("worker processes are Unix-only") {
        return;
    }
    let root = tree("static-workers");
    let st = arg("/static", &root.join("static"));
    let hello = c_fixture_str("hello");
    let host = Host::start(&["--extension", &hello, "--static", &st, "--workers", "2"]);
    for _ in 0..20 {
        assert_eq!(host.get("/static/hello.txt").body, b"0123456789abcdef");
    }
    // The access log (standard output) has their lines, as any request's.
    let line = "\"GET /static/hello.txt HTTP/1.1\" 200 16";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !host.stdout().contains(line) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(host.stdout().contains(line), "{}", host.stdout());
}

#[test]
fn a_static_option_must_name_a_directory() {
    let root = tree("static-bad");
    let exit = Host::run_to_exit(
        &[
            "--extension",
            &c_fixture_str("hello"),
            "--static",
            &arg("/s", &root.join("missing")),
        ],
        std::iter::empty::<(&str, &str)>(),
        std::time::Duration::from_secs(30),
    );
    assert!(!exit.status.success());
    assert!(
        exit.stderr.contains("is not a directory"),
        "{}",
        exit.stderr
    );
}

#[test]
fn static_directories_come_from_the_toml_file_too() {
    let root = tree("static-toml");
    // A relative directory is relative to the file.
    std::fs::write(
        root.join("host.toml"),
        "[[static]]\nprefix = \"/assets/\"\ndir = \"static\"\n",
    )
    .unwrap();
    let cfg = host_path(root.join("host.toml"));
    let host = Host::with_c_fixture("hello", &["--config", &cfg]);
    assert_eq!(host.get("/assets/hello.txt").body, b"0123456789abcdef");
    assert_eq!(host.get("/other").body, b"Hello, world!");
}
