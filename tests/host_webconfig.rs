//! `--web-config` with a `web.config` written as IIS Manager writes it:
//! the ISAPI handler mapped through `--path-map` to a C fixture, the
//! `requestFiltering` limits, `defaultDocument`, `staticContent`, the
//! site root's hidden files, precedence of the command line, and the
//! start-up warnings, listed once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::*;

/// IIS Manager's layout: XML declaration, four-space indents, `<clear />`.
const HANDLER_SITE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<configuration>
    <system.webServer>
        <handlers>
            <add name="PyISAPIe" path="*" verb="*" modules="IsapiModule" scriptProcessor="C:\inetpub\site\pyisapie.dll" resourceType="Unspecified" requireAccess="Script" preCondition="bitness64" />
        </handlers>
        <security>
            <requestFiltering>
                <requestLimits maxAllowedContentLength="1000" maxUrl="64" maxQueryString="16">
                    <headerLimits>
                        <add header="X-Big" sizeLimit="10" />
                    </headerLimits>
                </requestLimits>
            </requestFiltering>
        </security>
        <httpErrors errorMode="Detailed" />
        <urlCompression doStaticCompression="true" />
    </system.webServer>
    <system.web>
        <compilation debug="true" />
    </system.web>
</configuration>
"#;

/// A site with no ISAPI handler: its files, from its root.
const STATIC_SITE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<configuration>
    <system.webServer>
        <defaultDocument>
            <files>
                <clear />
                <add value="home.html" />
                <add value="index.html" />
            </files>
        </defaultDocument>
        <staticContent>
            <mimeMap fileExtension=".webmanifest" mimeType="application/manifest+json" />
            <clientCache cacheControlMode="UseMaxAge" cacheControlMaxAge="1.00:00:00" />
        </staticContent>
    </system.webServer>
</configuration>
"#;

/// A site folder holding `web.config` and, for the handler site, the
/// `hello` fixture copied in as `pyisapie.dll` (the loader ignores the name).
fn site(tag: &str, config: &str) -> PathBuf {
    let dir = temp_dir(tag);
    std::fs::write(dir.join("web.config"), config).unwrap();
    std::fs::copy(c_fixture("hello"), dir.join("pyisapie.dll")).unwrap();
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("home.html"), "<h1>home</h1>").unwrap();
    std::fs::write(dir.join("sub").join("index.html"), "<h1>sub</h1>").unwrap();
    std::fs::write(dir.join("app.webmanifest"), "{}").unwrap();
    std::fs::write(dir.join("app.py"), "SECRET = 1").unwrap();
    dir
}

fn args(dir: &Path) -> Vec<String> {
    vec![
        "--web-config".into(),
        host_path(dir.join("web.config")),
        "--path-map".into(),
        format!(r"C:\inetpub\site={}", host_path(dir)),
    ]
}

fn start(dir: &Path, extra: &[&str]) -> Host {
    let mut a = args(dir);
    a.extend(extra.iter().map(|s| s.to_string()));
    Host::start(&a.iter().map(String::as_str).collect::<Vec<_>>())
}

fn post(host: &Host, len: usize) -> Response {
    let mut raw = format!(
        "POST /upload HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n"
    )
    .into_bytes();
    raw.extend(std::iter::repeat_n(b'x', len));
    request(host.addr(), &raw)
}

#[test]
fn the_isapi_handler_is_mapped_through_path_map() {
    let dir = site("webconfig-handler", HANDLER_SITE);
    let host = start(&dir, &[]);
    let r = host.get("/anything/at/all");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"Hello, world!"[..]),
        "{r:?}"
    );
    // The handler claims every URL: the site's files are not served.
    assert_eq!(host.get("/home.html").body, b"Hello, world!");
}

#[test]
fn request_limits_are_enforced_as_iis_does() {
    let dir = site("webconfig-limits", HANDLER_SITE);
    let host = start(&dir, &[]);
    assert_eq!(post(&host, 1000).status, 200);
    assert_eq!(post(&host, 1001).status, 413, "maxAllowedContentLength");
    // maxUrl (404.14) and maxQueryString (404.15).
    assert_eq!(host.get(&format!("/{}", "a".repeat(63))).status, 200);
    assert_eq!(host.get(&format!("/{}", "a".repeat(64))).status, 404);
    assert_eq!(host.get("/q?0123456789abcde").status, 200);
    assert_eq!(host.get("/q?0123456789abcdef0").status, 404);
    // headerLimits (404.10).
    let big = |v: &str| {
        request(
            host.addr(),
            format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {v}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
    };
    assert_eq!(big("0123456789").status, 200);
    assert_eq!(big("0123456789a").status, 404);
    assert!(
        host.wait_for_log("404.15", Duration::from_secs(5)),
        "{}",
        host.stderr()
    );

    // The command line wins over the web.config.
    let host = start(&dir, &["--max-body", "5000"]);
    assert_eq!(post(&host, 4000).status, 200);
}

#[test]
fn unsupported_parts_are_listed_once_at_start_up() {
    let dir = site("webconfig-warn", HANDLER_SITE);
    let workers: &[&str] = if windows_host() {
        &[]
    } else {
        &["--workers", "2"]
    };
    let host = start(&dir, workers);
    assert_eq!(host.get("/").status, 200);
    std::thread::sleep(Duration::from_millis(300));
    let err = host.stderr();
    for what in ["<httpErrors>", "<urlCompression>", "<system.web>"] {
        let n = err.lines().filter(|l| l.contains(what)).count();
        assert_eq!(n, 1, "{what} warned {n} times:\n{err}");
    }
    // What is honoured is not warned about.
    assert!(!err.contains("PyISAPIe"), "{err}");
    assert!(!err.contains("requestLimits"), "{err}");
}

#[test]
fn the_site_root_serves_default_documents_and_hides_its_code() {
    let dir = site("webconfig-static", STATIC_SITE);
    let hello = format!("/api={}", c_fixture_str("hello"));
    let host = start(&dir, &["--map", &hello]);
    let r = host.get("/");
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"<h1>home</h1>"[..]),
        "{r:?}"
    );
    assert_eq!(r.header("cache-control"), Some("max-age=86400"));
    assert_eq!(host.get("/sub/").body, b"<h1>sub</h1>");
    assert_eq!(host.get("/sub").header("location"), Some("/sub/"));
    let r = host.get("/app.webmanifest");
    assert_eq!(
        r.header("content-type"),
        Some("application/manifest+json"),
        "{r:?}"
    );
    assert_eq!(host.get("/api/x").body, b"Hello, world!");
    // IIS never serves the web.config, nor the code the host runs.
    for path in ["/web.config", "/WEB.CONFIG", "/app.py", "/pyisapie.dll"] {
        assert_eq!(host.get(path).status, 404, "{path}");
    }
    // IIS's default limits apply with a web.config.
    assert_eq!(host.get(&format!("/{}", "a".repeat(5000))).status, 404);
}

#[test]
fn an_unmapped_windows_path_is_a_clear_error() {
    if skip_on_windows("a Windows host loads Windows paths as they are") {
        return;
    }
    let dir = site("webconfig-unmapped", HANDLER_SITE);
    let cfg = host_path(dir.join("web.config"));
    let exit = Host::run_to_exit(
        &["--web-config", &cfg],
        std::iter::empty::<(&str, &str)>(),
        Duration::from_secs(30),
    );
    assert!(!exit.status.success());
    assert!(exit.stderr.contains("--path-map"), "{}", exit.stderr);
    assert!(exit.stderr.contains("PyISAPIe"), "{}", exit.stderr);
}
