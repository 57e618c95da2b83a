//! Choosing the application for a URL, and the WSGI `SCRIPT_NAME` / `PATH_INFO` split.
//!
//! The server tells us where the extension itself is mounted (its `SCRIPT_NAME`, or under
//! IIS the application's virtual path); apps are mounted by prefix below that. The longest
//! matching prefix wins, matched on whole path segments by [`url_prefix`] (`/api` matches
//! `/api` and `/api/x`, not `/apix`). IIS's own `PATH_INFO` is never used: it holds the full
//! path.

use crate::config::AppSpec;

/// The result of routing one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'u> {
    /// Index of the app in the configuration's (sorted) list.
    pub app: usize,
    /// WSGI `SCRIPT_NAME`: the extension's base plus the app's prefix, no trailing slash.
    pub script_name: Vec<u8>,
    /// WSGI `PATH_INFO`: the rest of the URL.
    pub path_info: &'u [u8],
}

/// Routes `url` (the decoded path, without the query string) given the extension's `base`.
/// `apps` must be sorted longest prefix first, as [`crate::config`] leaves them.
pub fn route<'u>(apps: &[AppSpec], base: &[u8], url: &'u [u8]) -> Option<Route<'u>> {
    let base = trim_trailing_slashes(base);
    let (base, rest) = match url_prefix::strip(url, base) {
        Some(rest) if !base.is_empty() => (base, rest),
        _ => (&b""[..], url),
    };
    apps.iter().enumerate().find_map(|(index, app)| {
        let path_info = url_prefix::strip(rest, &app.prefix)?;
        let mut script_name = Vec::with_capacity(base.len() + app.prefix.len());
        script_name.extend_from_slice(base);
        script_name.extend_from_slice(app.prefix.as_bytes());
        Some(Route {
            app: index,
            script_name,
            path_info,
        })
    })
}

fn trim_trailing_slashes(mut s: &[u8]) -> &[u8] {
    while let [head @ .., b'/'] = s {
        s = head;
    }
    s
}

/// The URL path of an IIS application from its `APPL_MD_PATH`
/// (`/LM/W3SVC/1/ROOT/myapp` → `/myapp`, `/LM/W3SVC/1/ROOT` → ``).
pub fn iis_application_path(appl_md_path: &[u8]) -> Vec<u8> {
    let upper = appl_md_path.to_ascii_uppercase();
    match upper.windows(5).position(|w| w == b"/ROOT") {
        Some(at) => trim_trailing_slashes(&appl_md_path[at + 5..]).to_vec(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::app_spec;

    fn apps() -> Vec<AppSpec> {
        // sorted longest first, as the config module leaves them
        vec![
            app_spec("/api/v2", "v2:app").unwrap(),
            app_spec("/api", "api:app").unwrap(),
            app_spec("/", "root:app").unwrap(),
        ]
    }

    fn r(base: &str, url: &str) -> (usize, String, String) {
        let apps = apps();
        let route = route(&apps, base.as_bytes(), url.as_bytes()).unwrap();
        (
            route.app,
            String::from_utf8(route.script_name).unwrap(),
            String::from_utf8(route.path_info.to_vec()).unwrap(),
        )
    }

    #[test]
    fn longest_prefix_on_segments() {
        assert_eq!(r("", "/api/v2/x"), (0, "/api/v2".into(), "/x".into()));
        assert_eq!(r("", "/api/v2"), (0, "/api/v2".into(), "".into()));
        assert_eq!(r("", "/api/v3"), (1, "/api".into(), "/v3".into()));
        assert_eq!(r("", "/apix"), (2, "".into(), "/apix".into()));
        assert_eq!(r("", "/"), (2, "".into(), "/".into()));
    }

    #[test]
    fn base_from_server() {
        assert_eq!(r("/ext", "/ext/api/a"), (1, "/ext/api".into(), "/a".into()));
        assert_eq!(r("/ext/", "/ext/a"), (2, "/ext".into(), "/a".into()));
        assert_eq!(r("/ext", "/ext"), (2, "/ext".into(), "".into()));
        // a base that is not a segment prefix of the URL is ignored
        assert_eq!(r("/ex", "/ext/a"), (2, "".into(), "/ext/a".into()));
    }

    #[test]
    fn no_match() {
        let apps = vec![app_spec("/only", "m:a").unwrap()];
        assert!(route(&apps, b"", b"/other").is_none());
    }

    #[test]
    fn iis_paths() {
        assert_eq!(iis_application_path(b"/LM/W3SVC/1/ROOT/myapp"), b"/myapp");
        assert_eq!(iis_application_path(b"/LM/W3SVC/1/root"), b"");
        assert_eq!(iis_application_path(b"/LM/W3SVC/1/ROOT/a/b/"), b"/a/b");
    }
}
