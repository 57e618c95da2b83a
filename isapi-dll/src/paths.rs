//! Path rules of both platforms, as pure functions of strings that take the platform's
//! [`Style`] as data: the Windows rules (drive letters, UNC shares, `\\?\` verbatim paths,
//! `;`-separated lists, a virtualenv's `Lib\site-packages` and `Scripts`) are tested on
//! Linux as well as the Unix ones. The rest of the crate calls them with
//! [`Style::NATIVE`].
//!
//! Only what the configuration needs is here: resolving a configured path against the
//! directory of `pyisapie.toml`, the directory of a file (the library's own folder, where
//! `pyisapie.toml` is looked up), path lists, and a virtualenv's layout.

use std::path::{Path, PathBuf};

/// Which platform's path rules apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// `/` separates; absolute paths start with `/`; lists use `:`.
    Unix,
    /// `\` (or `/`) separates; paths may start with a drive (`C:`), a UNC share
    /// (`\\server\share`) or a verbatim prefix (`\\?\C:`, `\\?\UNC\server\share`); lists
    /// use `;`.
    Windows,
}

impl Style {
    /// The rules of the platform this library is built for.
    pub const NATIVE: Self = if cfg!(windows) {
        Self::Windows
    } else {
        Self::Unix
    };

    /// The separator this style writes.
    pub fn separator(self) -> char {
        match self {
            Self::Unix => '/',
            Self::Windows => '\\',
        }
    }

    fn is_separator(self, c: char) -> bool {
        match self {
            Self::Unix => c == '/',
            Self::Windows => c == '\\' || c == '/',
        }
    }

    /// The separator of path lists (`PATH`, `PYISAPIE_PYTHONPATH`).
    pub fn list_separator(self) -> char {
        match self {
            Self::Unix => ':',
            Self::Windows => ';',
        }
    }
}

/// The prefix of a Windows path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prefix {
    /// `C:`
    Disk,
    /// `\\server\share`
    Unc,
    /// `\\?\...` or `\\.\...`: taken as is by Windows, no `/` and no `..` allowed.
    Verbatim,
}

/// The Windows prefix of `p` and its length in bytes (the root separator that may follow
/// is not counted).
fn windows_prefix(p: &str) -> Option<(Prefix, usize)> {
    let b = p.as_bytes();
    let sep = |c: u8| c == b'\\' || c == b'/';
    if b.len() >= 4
        && b[0] == b'\\'
        && b[1] == b'\\'
        && (b[2] == b'?' || b[2] == b'.')
        && b[3] == b'\\'
    {
        let rest = &p[4..];
        // \\?\UNC\server\share
        if rest.len() >= 4 && rest[..4].eq_ignore_ascii_case("UNC\\") {
            let end = component_end(p, 8, 2, |c| c == b'\\');
            return Some((Prefix::Verbatim, end));
        }
        // \\?\C:
        let rb = rest.as_bytes();
        if rb.len() >= 2 && rb[0].is_ascii_alphabetic() && rb[1] == b':' {
            return Some((Prefix::Verbatim, 6));
        }
        // \\?\Volume{...}, \\.\pipe\x: the first component
        return Some((Prefix::Verbatim, component_end(p, 4, 1, |c| c == b'\\')));
    }
    if b.len() >= 2 && sep(b[0]) && sep(b[1]) {
        // \\server\share
        return Some((Prefix::Unc, component_end(p, 2, 2, sep)));
    }
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        return Some((Prefix::Disk, 2));
    }
    None
}

/// The end of the `count`-th component of `p` from byte `start` (a component ends before
/// a separator), or the end of `p`.
fn component_end(p: &str, start: usize, count: usize, sep: impl Fn(u8) -> bool) -> usize {
    let b = p.as_bytes();
    let mut i = start;
    for n in 0..count {
        while i < b.len() && !sep(b[i]) {
            i += 1;
        }
        if n + 1 < count && i < b.len() {
            i += 1;
        }
    }
    i.min(b.len())
}

/// Whether `p` names the same place from any current directory.
///
/// Windows: a UNC or verbatim path, or a drive followed by a separator (`C:\x`). `\x`
/// (the root of the current drive) and `C:x` (relative to drive C's current directory) are
/// not absolute.
pub fn is_absolute(style: Style, p: &str) -> bool {
    match style {
        Style::Unix => p.starts_with('/'),
        Style::Windows => match windows_prefix(p) {
            Some((Prefix::Unc | Prefix::Verbatim, _)) => true,
            Some((Prefix::Disk, n)) => p[n..].starts_with(['\\', '/']),
            None => false,
        },
    }
}

/// `rel` resolved against the directory `base`: `rel` itself when it is absolute, else
/// `base` joined with it.
///
/// Windows: `\x` takes `base`'s drive or share (`\x` against `D:\site` is `D:\x`); `C:x`
/// is kept as is (Windows resolves it against drive C's current directory).
pub fn resolve(style: Style, base: &str, rel: &str) -> String {
    if is_absolute(style, rel) {
        return rel.to_owned();
    }
    if style == Style::Windows {
        if windows_prefix(rel).is_some() {
            return rel.to_owned();
        }
        if rel.starts_with(['\\', '/']) {
            let prefix = windows_prefix(base).map_or("", |(_, n)| &base[..n]);
            return format!("{prefix}{}", windows_separators(base, rel));
        }
    }
    join(style, base, rel)
}

/// `base` and the relative path `rel` joined with one separator.
///
/// Windows: `/` in `rel` becomes `\` when `base` is verbatim (`\\?\`), since Windows takes
/// verbatim paths exactly as written.
pub fn join(style: Style, base: &str, rel: &str) -> String {
    if base.is_empty() {
        return rel.to_owned();
    }
    let rel = rel.trim_start_matches(|c| style.is_separator(c));
    let rel = match style {
        Style::Windows => windows_separators(base, rel),
        Style::Unix => rel.to_owned(),
    };
    if rel.is_empty() {
        return base.to_owned();
    }
    let mut out = String::with_capacity(base.len() + 1 + rel.len());
    out.push_str(base);
    // "C:" + "x" is "C:x" (relative to drive C's current folder), as Windows joins it.
    let bare_drive =
        style == Style::Windows && windows_prefix(base) == Some((Prefix::Disk, base.len()));
    if !base.ends_with(|c| style.is_separator(c)) && !bare_drive {
        out.push(style.separator());
    }
    out.push_str(&rel);
    out
}

fn windows_separators(base: &str, rel: &str) -> String {
    if matches!(windows_prefix(base), Some((Prefix::Verbatim, _))) {
        rel.replace('/', "\\")
    } else {
        rel.to_owned()
    }
}

/// The directory that holds the file `p` (for the library's own folder). Never goes above
/// a root: `C:\pyisapie.dll` gives `C:\`, `\\server\share\pyisapie.dll` gives
/// `\\server\share\`. `None` when `p` has no directory part.
pub fn parent(style: Style, p: &str) -> Option<String> {
    let root_end = match style {
        Style::Unix => usize::from(p.starts_with('/')),
        Style::Windows => match windows_prefix(p) {
            Some((_, n)) => n + usize::from(p[n..].starts_with(['\\', '/'])),
            None => usize::from(p.starts_with(['\\', '/'])),
        },
    };
    let tail = p[root_end..].trim_end_matches(|c| style.is_separator(c));
    let cut = tail.rfind(|c| style.is_separator(c));
    match cut {
        Some(i) => {
            let dir = p[..root_end + i].trim_end_matches(|c| style.is_separator(c));
            Some(if dir.len() < root_end {
                p[..root_end].to_owned()
            } else {
                dir.to_owned()
            })
        }
        None if tail.is_empty() || root_end == 0 => None,
        None => Some(p[..root_end].to_owned()),
    }
}

/// Splits a path list (`PYISAPIE_PYTHONPATH`) as the platform splits `PATH`: on `:` on
/// Unix; on `;` on Windows, where double quotes protect a `;` inside a path and are
/// removed. Empty entries are dropped.
pub fn split_list(style: Style, list: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in list.chars() {
        match (style, c) {
            (Style::Windows, '"') => quoted = !quoted,
            (_, c) if c == style.list_separator() && !quoted => {
                out.push(std::mem::take(&mut current));
            }
            (_, c) => current.push(c),
        }
    }
    out.push(current);
    out.retain(|p| !p.is_empty());
    out
}

/// The site-packages directories a virtualenv may have for Python `major.minor`, in the
/// order they are looked for: `Lib\site-packages` on Windows;
/// `lib/pythonX.Y/site-packages` and `lib64/pythonX.Y/site-packages` on Unix.
pub fn venv_site_packages(style: Style, venv: &str, major: u8, minor: u8) -> Vec<String> {
    match style {
        Style::Windows => vec![join(style, venv, "Lib\\site-packages")],
        Style::Unix => ["lib", "lib64"]
            .iter()
            .map(|lib| {
                join(
                    style,
                    venv,
                    &format!("{lib}/python{major}.{minor}/site-packages"),
                )
            })
            .collect(),
    }
}

/// A virtualenv's folder of executables: `Scripts` on Windows, `bin` on Unix.
pub fn venv_scripts(style: Style, venv: &str) -> String {
    match style {
        Style::Windows => join(style, venv, "Scripts"),
        Style::Unix => join(style, venv, "bin"),
    }
}

/// A virtualenv's Python: `Scripts\python.exe` on Windows, `bin/python` on Unix.
pub fn venv_python(style: Style, venv: &str) -> String {
    let scripts = venv_scripts(style, venv);
    match style {
        Style::Windows => join(style, &scripts, "python.exe"),
        Style::Unix => join(style, &scripts, "python"),
    }
}

/// [`resolve`] for `Path`s. A path that is not valid Unicode (possible on Unix only) is
/// joined by `std::path` instead, with the same rule.
pub fn resolve_path(style: Style, base: &Path, rel: &Path) -> PathBuf {
    match (base.to_str(), rel.to_str()) {
        (Some(b), Some(r)) => PathBuf::from(resolve(style, b, r)),
        _ => base.join(rel),
    }
}

/// [`parent`] for a native path.
pub fn parent_native(p: &Path) -> Option<PathBuf> {
    match p.to_str() {
        Some(s) => parent(Style::NATIVE, s).map(PathBuf::from),
        None => p.parent().map(Path::to_path_buf),
    }
}

#[cfg(test)]
mod tests {
    use super::Style::{Unix, Windows};
    use super::*;

    #[test]
    fn absolute_paths() {
        for p in [
            r"C:\inetpub\app",
            "C:/inetpub/app",
            r"c:\x",
            r"\\server\share\app",
            r"\\server\share",
            "//server/share/app",
            r"\\?\C:\very\long",
            r"\\?\UNC\server\share\app",
            r"\\.\pipe\name",
        ] {
            assert!(is_absolute(Windows, p), "{p}");
        }
        // "/srv/app" has no drive: on Windows it is root-relative, not absolute
        for p in [r"app", r"..\app", r"\app", "C:app", "C:", "", "/srv/app"] {
            assert!(!is_absolute(Windows, p), "{p}");
        }
        assert!(is_absolute(Unix, "/srv/app"));
        for p in ["app", r"C:\app", r"\\server\share"] {
            assert!(!is_absolute(Unix, p), "{p}");
        }
    }

    #[test]
    fn resolving_against_the_config_folder() {
        let site = r"C:\inetpub\pyisapie";
        assert_eq!(resolve(Windows, site, "app"), r"C:\inetpub\pyisapie\app");
        assert_eq!(
            resolve(Windows, site, r"..\venv"),
            r"C:\inetpub\pyisapie\..\venv"
        );
        assert_eq!(
            resolve(Windows, site, "logs/py.log"),
            r"C:\inetpub\pyisapie\logs/py.log"
        );
        assert_eq!(resolve(Windows, site, r"D:\Python311"), r"D:\Python311");
        assert_eq!(resolve(Windows, site, r"\\fs\share\lib"), r"\\fs\share\lib");
        assert_eq!(resolve(Windows, site, r"\shared"), r"C:\shared");
        assert_eq!(resolve(Windows, site, "C:rel"), "C:rel");
        // a UNC folder: root-relative paths stay on the share
        let unc = r"\\fs\share\sites\a";
        assert_eq!(resolve(Windows, unc, "app"), r"\\fs\share\sites\a\app");
        assert_eq!(resolve(Windows, unc, r"\lib"), r"\\fs\share\lib");
        // a verbatim folder takes no '/'
        let long = r"\\?\C:\inetpub\pyisapie";
        assert_eq!(
            resolve(Windows, long, "app/sub"),
            r"\\?\C:\inetpub\pyisapie\app\sub"
        );
        assert_eq!(resolve(Windows, long, r"\x"), r"\\?\C:\x");
        let long_unc = r"\\?\UNC\fs\share\site";
        assert_eq!(
            resolve(Windows, long_unc, "venv"),
            r"\\?\UNC\fs\share\site\venv"
        );
        assert_eq!(resolve(Windows, long_unc, r"\lib"), r"\\?\UNC\fs\share\lib");
        // the root of a drive
        assert_eq!(resolve(Windows, r"C:\", "app"), r"C:\app");
        assert_eq!(resolve(Windows, "C:", "app"), "C:app");
        // Unix
        assert_eq!(resolve(Unix, "/etc/site", "app"), "/etc/site/app");
        assert_eq!(resolve(Unix, "/etc/site/", "/srv/app"), "/srv/app");
        assert_eq!(resolve(Unix, "/", "app"), "/app");
        assert_eq!(resolve(Unix, "", "app"), "app");
    }

    #[test]
    fn the_folder_of_the_library() {
        let cases = [
            (
                r"C:\inetpub\pyisapie\pyisapie.dll",
                Some(r"C:\inetpub\pyisapie"),
            ),
            (r"C:\pyisapie.dll", Some(r"C:\")),
            ("C:/sites/a/pyisapie.dll", Some("C:/sites/a")),
            (
                r"\\fs\share\pyisapie\pyisapie.dll",
                Some(r"\\fs\share\pyisapie"),
            ),
            (r"\\fs\share\pyisapie.dll", Some(r"\\fs\share\")),
            (
                r"\\?\C:\inetpub\pyisapie\pyisapie.dll",
                Some(r"\\?\C:\inetpub\pyisapie"),
            ),
            (r"\\?\C:\pyisapie.dll", Some(r"\\?\C:\")),
            (
                r"\\?\UNC\fs\share\app\pyisapie.dll",
                Some(r"\\?\UNC\fs\share\app"),
            ),
            (r"\\?\UNC\fs\share\pyisapie.dll", Some(r"\\?\UNC\fs\share\")),
            (r"Z:\work\target\pyisapie.dll", Some(r"Z:\work\target")),
            (r"C:\a\\b\\pyisapie.dll", Some(r"C:\a\\b")),
            ("pyisapie.dll", None),
            (r"C:\", None),
        ];
        for (path, dir) in cases {
            assert_eq!(parent(Windows, path).as_deref(), dir, "{path}");
        }
        assert_eq!(
            parent(Unix, "/usr/lib/libpyisapie.so").as_deref(),
            Some("/usr/lib")
        );
        assert_eq!(parent(Unix, "/libpyisapie.so").as_deref(), Some("/"));
        assert_eq!(parent(Unix, "libpyisapie.so"), None);
        assert_eq!(parent(Unix, "/"), None);
        // a backslash is an ordinary character on Unix
        assert_eq!(parent(Unix, r"C:\x\y.so"), None);
    }

    #[test]
    fn path_lists() {
        assert_eq!(
            split_list(Windows, r"C:\app;D:\lib;;\\fs\share\x"),
            [r"C:\app", r"D:\lib", r"\\fs\share\x"]
        );
        assert_eq!(
            split_list(Windows, r#""C:\odd;name\lib";C:\b"#),
            [r"C:\odd;name\lib", r"C:\b"]
        );
        // a drive letter's colon does not split on Windows
        assert_eq!(split_list(Windows, r"C:\a"), [r"C:\a"]);
        assert_eq!(split_list(Unix, "/a:/b::/c"), ["/a", "/b", "/c"]);
        assert_eq!(split_list(Unix, ""), Vec::<String>::new());
    }

    #[test]
    fn virtualenv_layout() {
        assert_eq!(
            venv_site_packages(Windows, r"C:\sites\venv", 3, 11),
            [r"C:\sites\venv\Lib\site-packages"]
        );
        assert_eq!(
            venv_site_packages(Windows, r"\\?\C:\sites\venv\", 3, 12),
            [r"\\?\C:\sites\venv\Lib\site-packages"]
        );
        assert_eq!(venv_scripts(Windows, r"C:\v"), r"C:\v\Scripts");
        assert_eq!(
            venv_python(Windows, r"\\fs\share\v"),
            r"\\fs\share\v\Scripts\python.exe"
        );
        assert_eq!(
            venv_site_packages(Unix, "/srv/venv", 3, 11),
            [
                "/srv/venv/lib/python3.11/site-packages",
                "/srv/venv/lib64/python3.11/site-packages"
            ]
        );
        assert_eq!(venv_scripts(Unix, "/srv/venv/"), "/srv/venv/bin");
        assert_eq!(venv_python(Unix, "/srv/venv"), "/srv/venv/bin/python");
    }
}
