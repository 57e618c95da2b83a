//! The host under test and the platform it runs on: which binary, run by
//! what (Wine for a Windows build), how it names paths, and how a test that
//! cannot run there says so.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::thread;

/// The host binary cargo built for these tests (the Linux one).
pub const HOST_BIN: &str = env!("CARGO_BIN_EXE_isapi-host");

/// The host binary under test: `$ISAPI_HOST_TEST_BIN`, else [`HOST_BIN`].
pub fn host_bin() -> PathBuf {
    match std::env::var_os("ISAPI_HOST_TEST_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(HOST_BIN),
    }
}

/// The program that runs the host binary (`$ISAPI_HOST_TEST_RUNNER`, e.g.
/// Wine's loader), if any.
pub fn host_runner() -> Option<PathBuf> {
    std::env::var_os("ISAPI_HOST_TEST_RUNNER")
        .filter(|r| !r.is_empty())
        .map(PathBuf::from)
}

/// Whether the host under test is a Windows build (its binary ends in `.exe`).
pub fn windows_host() -> bool {
    static WINDOWS: OnceLock<bool> = OnceLock::new();
    *WINDOWS.get_or_init(|| {
        host_bin()
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("exe"))
    })
}

/// The drive Wine maps the Unix root `/` to (its default).
pub const WINE_ROOT_DRIVE: &str = "Z:";

/// `path` as the host under test names it. For a Windows host, an absolute
/// Unix path becomes the Windows path Wine maps it to (`/a/b` ->
/// `Z:\a\b`); otherwise (and for relative paths) the path is unchanged.
pub fn host_path(path: impl AsRef<Path>) -> String {
    let s = path.as_ref().to_str().expect("utf-8 path");
    if windows_host() && s.starts_with('/') {
        format!("{WINE_ROOT_DRIVE}{}", s.replace('/', "\\"))
    } else {
        s.to_owned()
    }
}

/// The host's path separator: `\` for a Windows host, `/` otherwise.
pub fn host_sep() -> char {
    if windows_host() { '\\' } else { '/' }
}

/// `root` (as the host names it) joined with the `/`-separated `rel`, in the
/// host's own form: what `PATH_TRANSLATED` or `MAP_URL_TO_PATH` give for the
/// URL `/rel` below the document root `root`.
pub fn host_join(root: &str, rel: &str) -> String {
    let sep = host_sep();
    let mut out = root.trim_end_matches(sep).to_owned();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        out.push(sep);
        out.push_str(part);
    }
    out
}

/// The name of the running test (libtest names each test's thread after it).
pub fn current_test() -> String {
    thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned()
}

/// Record that the running test is skipped, and why: prints
/// `SKIPPED: <test>: <reason>` on stderr and appends the same line to
/// `$ISAPI_TEST_SKIP_LOG` if set (ci/windows-test.sh counts those lines, so a
/// skipped test never counts as a pass). The caller returns right after.
pub fn skip(reason: &str) {
    let line = format!("SKIPPED: {}: {reason}", current_test());
    eprintln!("{line}");
    if let Some(log) = std::env::var_os("ISAPI_TEST_SKIP_LOG").filter(|l| !l.is_empty()) {
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = appended {
            panic!("cannot append to ISAPI_TEST_SKIP_LOG {log:?}: {e}");
        }
    }
}

/// With a Windows host, skips the running test (see [`skip`]) and returns true;
/// the test then returns without asserting. Returns false otherwise.
pub fn skip_on_windows(reason: &str) -> bool {
    if windows_host() {
        skip(reason);
        true
    } else {
        false
    }
}

/// Root of the repository (the root package's manifest directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A text file an extension wrote, with the C runtime's text-mode line ends
/// (`\r\n` on Windows) read back as `\n`; "" if it does not exist.
pub fn read_extension_text(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    if windows_host() {
        text.replace("\r\n", "\n")
    } else {
        text
    }
}
