//! Real frameworks served end to end: Flask (a chunked upload read with
//! `request.get_data()`, a multipart form, streaming) and Django (a page and a
//! CSRF-protected form POST), both from the test venv.
//!
//! The venv is `$PYISAPIE_TEST_VENV`, or `.venv` at the repository root, with
//! `ci/python-requirements.txt` installed (ci/install.sh does it). Without
//! Flask or Django there the tests fail with that instruction: they never skip.
//!
//! For a Windows host the venv has the Windows layout (`Lib\site-packages`,
//! `pyvenv.cfg`) with packages for Windows: ci/windows-test.sh makes one per
//! Python version and points `PYISAPIE_TEST_VENV` at it.

use std::path::PathBuf;

use crate::support::{self, Host};
use crate::{body, fixtures, quoted};

pub(crate) fn venv() -> PathBuf {
    let venv = std::env::var_os("PYISAPIE_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| support::repo_root().join(".venv"));
    let site = if support::windows_host() {
        venv.join("Lib").join("site-packages")
    } else {
        // lib/python3.X/site-packages, for whichever 3.X made the venv.
        std::fs::read_dir(venv.join("lib"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("python3."))
            })
            .unwrap_or_else(|| venv.join("lib").join("python3"))
            .join("site-packages")
    };
    for package in ["flask", "django"] {
        assert!(
            site.join(package).join("__init__.py").is_file(),
            "{package} is not installed in the test venv {}: {}",
            venv.display(),
            if support::windows_host() {
                "ci/windows-test.sh makes a Windows venv (set PYISAPIE_TEST_VENV to it)".to_owned()
            } else {
                format!(
                    "run `{}/bin/python -m pip install -r ci/python-requirements.txt` (or set PYISAPIE_TEST_VENV)",
                    venv.display()
                )
            }
        );
    }
    venv
}

/// Flask at `/`, Django at `/dj`, from one pyisapie.toml.
fn frameworks_host() -> Host {
    let venv = venv();
    let dir = support::temp_dir("frameworks");
    let config = dir.join("pyisapie.toml");
    std::fs::write(
        &config,
        format!(
            "virtualenv = {}\npython_path = [{}, {}]\n\
             [[app]]\nprefix = \"/\"\ncallable = \"flask_app:app\"\n\
             [[app]]\nprefix = \"/dj\"\ncallable = \"site_app.wsgi:application\"\n",
            quoted(&venv),
            quoted(fixtures()),
            quoted(fixtures().join("django_site")),
        ),
    )
    .unwrap();
    let lib = support::pyisapie_lib();
    Host::start_env(
        &["--extension", &support::host_path(&lib)],
        [("PYISAPIE_CONFIG", support::host_path(&config))],
    )
}

fn sha256_hex(data: &[u8]) -> String {
    // The hash is computed by Python's hashlib in the app; compute ours with the same
    // tool to compare (no Rust crypto dependency needed for one test).
    let dir = support::temp_dir("sha");
    let file = dir.join("data");
    std::fs::write(&file, data).unwrap();
    let out = std::process::Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import hashlib,sys;print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest())",
        ])
        .arg(&file)
        .output()
        .expect("python3");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn flask_reads_a_chunked_upload_with_get_data() {
    let host = frameworks_host();
    let r = host.get("/");
    assert_eq!((r.status, body(&r).as_str()), (200, "Hello from Flask"));
    let data = support::pattern_bytes(300_000, 99);
    let expected = sha256_hex(&data);
    let r = crate::post_chunked(host.addr(), "/upload", &data, 7000);
    let text = body(&r);
    assert_eq!(r.status, 200, "{text}");
    assert!(text.contains(r#""size":300000"#), "{text}");
    assert!(text.contains(&expected), "{text}");
    assert!(text.contains(r#""input_terminated":true"#), "{text}");
    // and with a Content-Length
    let r = crate::post(host.addr(), "/upload", &data);
    assert!(body(&r).contains(&expected), "{}", body(&r));
}

#[test]
fn flask_form_stream_and_errors() {
    let host = frameworks_host();
    let boundary = "XyZbOuNdArY";
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nada\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"doc\"; filename=\"a.txt\"\r\n\
         Content-Type: text/plain\r\n\r\n0123456789\r\n--{boundary}--\r\n"
    );
    let req = format!(
        "POST /form HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {}\r\n\r\n{form}",
        form.len()
    );
    let r = support::request(host.addr(), req.as_bytes());
    assert_eq!(body(&r), "{\"files\":{\"doc\":10},\"name\":\"ada\"}\n");
    let r = host.get("/stream");
    assert_eq!(
        (body(&r).as_str(), r.framing),
        ("part0;part1;part2;", support::Framing::CloseDelimited)
    );
    let mut c = host.connect();
    let r = c.roundtrip(&support::get_req("/stream"));
    assert_eq!(
        (body(&r).as_str(), r.framing),
        ("part0;part1;part2;", support::Framing::Chunked)
    );
    assert_eq!(host.get("/boom").status, 500);
    assert!(host.wait_for_log("flask view raised", std::time::Duration::from_secs(5)));
}

#[test]
fn django_page_and_form_post() {
    let host = frameworks_host();
    let mut c = host.connect();
    let r = c.roundtrip(&support::get_req("/dj/"));
    let page = body(&r);
    assert_eq!(r.status, 200, "{page}");
    assert!(
        page.contains("Django on pyisapie") && page.contains("script_name=/dj path=/dj/"),
        "{page}"
    );
    let cookie = r
        .headers_all("set-cookie")
        .find_map(|c| c.strip_prefix("csrftoken="))
        .and_then(|c| c.split(';').next())
        .expect("a csrftoken cookie")
        .to_owned();
    let token = page
        .split("name=\"csrfmiddlewaretoken\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a csrf token in the form")
        .to_owned();
    let form = format!("csrfmiddlewaretoken={token}&name=grace");
    let req = format!(
        "POST /dj/form/ HTTP/1.1\r\nHost: t\r\nCookie: csrftoken={cookie}\r\nReferer: http://t/dj/\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    let r = c.roundtrip(req.as_bytes());
    assert_eq!(
        (r.status, body(&r).as_str()),
        (200, r#"{"name": "grace", "method": "POST"}"#)
    );
    // without the token, Django's CSRF protection answers 403
    let req = "POST /dj/form/ HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n\
               Content-Length: 10\r\n\r\nname=grace";
    let r = c.roundtrip(req.as_bytes());
    assert_eq!(r.status, 403);
    // a Content-Length body through Django's LimitedStream
    let data = support::pattern_bytes(100_000, 5);
    let r = crate::post(host.addr(), "/dj/echo/", &data);
    assert!(body(&r).contains(&sha256_hex(&data)), "{}", body(&r));
}

/// `isapi-host serve --app flask_app:app --python-path DIR` with no pyisapie
/// configuration: the activated virtualenv (`VIRTUAL_ENV`) provides Flask.
#[test]
fn app_sugar_uses_the_activated_virtualenv() {
    let venv = venv();
    let dir = fixtures();
    let host = Host::start_env(
        &[
            "--app",
            "flask_app:app",
            "--python-path",
            &support::host_path(&dir),
        ],
        [("VIRTUAL_ENV", support::host_path(&venv))],
    );
    let r = crate::post_chunked(host.addr(), "/upload", b"0123456789", 3);
    assert!(body(&r).contains(r#""size":10"#), "{}", body(&r));
}
