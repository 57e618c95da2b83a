//! URL prefixes: where an extension is mounted in the host (`--map /PREFIX=PATH`) and where
//! an app is mounted in pyisapie (`[[app]] prefix`). One set of rules for both, so that a
//! prefix means the same thing on each side of the ISAPI boundary.
//!
//! - A prefix is `""` or `"/"` (the root), or starts with `/`.
//! - Trailing slashes are dropped: `/app/` and `/app` are the same mount. The root is kept
//!   as `""`, so that a mount's `SCRIPT_NAME` is its prefix.
//! - It is a plain path: no `?`, `#` or control characters. Spaces are allowed, as IIS
//!   allows them in virtual directory names.
//! - It matches a URL path on whole segments: `/api` matches `/api` and `/api/x`, never
//!   `/apix`. Among several, the longest match wins ([`longest_first`]).

#![warn(missing_docs)]

use std::fmt;

/// Why a prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixError {
    prefix: String,
    why: &'static str,
}

impl fmt::Display for PrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "URL prefix {:?} {}", self.prefix, self.why)
    }
}

impl std::error::Error for PrefixError {}

/// Checks a prefix and puts it in its one form: `""` for the root, else `/a/b` with no
/// trailing slash.
pub fn normalize(prefix: &str) -> Result<String, PrefixError> {
    let refuse = |why| {
        Err(PrefixError {
            prefix: prefix.to_owned(),
            why,
        })
    };
    if !prefix.is_empty() && !prefix.starts_with('/') {
        return refuse("must start with /");
    }
    if prefix.contains(['?', '#']) || prefix.chars().any(char::is_control) {
        return refuse("must be a plain path (no ?, # or control characters)");
    }
    Ok(prefix.trim_end_matches('/').to_owned())
}

/// Splits a mount given as `PREFIX=VALUE` (`--map /app=lib.so`, `--static /s=dir`) into
/// its normalized prefix and its value. `form` (`/prefix=PATH`) and `value` (`library
/// path`) name the parts in the messages.
pub fn split_mount<'a>(arg: &'a str, form: &str, value: &str) -> Result<(String, &'a str), String> {
    let (prefix, rest) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected {form}, got {arg:?}"))?;
    if rest.is_empty() {
        return Err(format!("missing {value} in {arg:?}"));
    }
    Ok((normalize(prefix).map_err(|e| e.to_string())?, rest))
}

/// How a normalized prefix reads in messages: `/` for the root.
pub fn shown(prefix: &str) -> &str {
    if prefix.is_empty() { "/" } else { prefix }
}

/// The rest of `path` after a normalized `prefix`, when the prefix matches on a segment
/// boundary: `strip(b"/api/x", "/api") == Some(b"/x")`, `strip(b"/apix", "/api") == None`.
/// The root matches every path.
pub fn strip(path: &[u8], prefix: impl AsRef<[u8]>) -> Option<&[u8]> {
    let prefix = prefix.as_ref();
    let rest = path.strip_prefix(prefix)?;
    (prefix.is_empty() || rest.is_empty() || rest[0] == b'/').then_some(rest)
}

/// Sorts mounts longest prefix first, so that the first match of [`strip`] is the longest.
pub fn longest_first<T>(mounts: &mut [T], prefix: impl Fn(&T) -> &str) {
    mounts.sort_by_key(|m| std::cmp::Reverse(prefix(m).len()));
}

/// The first of `prefixes` that two mounts share, for a "mounted twice" error.
pub fn first_duplicate<'a>(prefixes: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut seen = std::collections::HashSet::new();
    prefixes.into_iter().find(|p| !seen.insert(*p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_to_one_form() {
        assert_eq!(normalize("/").unwrap(), "");
        assert_eq!(normalize("").unwrap(), "");
        assert_eq!(normalize("//").unwrap(), "");
        assert_eq!(normalize("/app/").unwrap(), "/app");
        assert_eq!(normalize("/my app").unwrap(), "/my app");
    }

    #[test]
    fn refuses_what_is_not_a_plain_path() {
        for bad in ["app", "/a?b", "/a#b", "/a\tb", "/a\nb"] {
            let e = normalize(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
        assert!(
            normalize("x")
                .unwrap_err()
                .to_string()
                .contains("must start with /")
        );
    }

    #[test]
    fn splits_mounts() {
        assert_eq!(
            split_mount("/a/=x.so", "/prefix=PATH", "path"),
            Ok(("/a".into(), "x.so"))
        );
        assert_eq!(split_mount("/=d=e", "F", "V"), Ok((String::new(), "d=e")));
        assert_eq!(
            split_mount("/a", "/prefix=PATH", "path").unwrap_err(),
            "expected /prefix=PATH, got \"/a\""
        );
        assert_eq!(
            split_mount("/a=", "F", "library path").unwrap_err(),
            "missing library path in \"/a=\""
        );
        assert!(
            split_mount("a=x", "F", "V")
                .unwrap_err()
                .contains("must start with /")
        );
    }

    #[test]
    fn strips_on_segment_boundaries() {
        assert_eq!(strip(b"/api", "/api"), Some(&b""[..]));
        assert_eq!(strip(b"/api/x", "/api"), Some(&b"/x"[..]));
        assert_eq!(strip(b"/apix", "/api"), None);
        assert_eq!(strip(b"/anything", ""), Some(&b"/anything"[..]));
        assert_eq!(strip(b"/", ""), Some(&b"/"[..]));
        assert_eq!(strip(b"*", ""), Some(&b"*"[..]));
    }

    #[test]
    fn longest_first_and_duplicates() {
        let mut v = vec!["", "/a", "/a/b"];
        longest_first(&mut v, |p| p);
        assert_eq!(v, ["/a/b", "/a", ""]);
        assert_eq!(first_duplicate(["/a", "", "/a"]), Some("/a"));
        assert_eq!(first_duplicate(["/a", ""]), None);
        assert_eq!(shown(""), "/");
        assert_eq!(shown("/a"), "/a");
    }
}
