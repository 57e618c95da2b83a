//! [`ServerSpec`]: a server as named on the command line, and what kind of
//! server the name means.

use std::path::Path;

use anyhow::{Result, bail};

use crate::cases::Target;

/// The names `--server` accepts besides `cmd:...` and `host-py-win-py3XX`.
pub const KNOWN: &[&str] = &[
    "host-py",
    "host-c",
    "host-py-win",
    "host-c-win",
    "gunicorn",
    "waitress",
    "granian",
    "bare-hyper",
];

/// The prefix of `host-py-win-py3XX` (the Windows host with the pyisapie.dll
/// and CPython of `--windows-out`'s `py3XX` folder).
pub(super) const HOST_PY_WIN_PREFIX: &str = "host-py-win-";

/// A server as named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// The name as given (`host-py`, `cmd:...`).
    pub name: String,
    /// What reports and log files call it ([`ServerSpec::label`]).
    label: String,
}

impl ServerSpec {
    /// Checks a `--server` name.
    pub fn parse(name: &str) -> Result<ServerSpec> {
        let spec = ServerSpec {
            name: name.to_owned(),
            label: short_label(name),
        };
        let kind = spec.kind();
        let py_win_folder = kind
            .strip_prefix(HOST_PY_WIN_PREFIX)
            .is_some_and(is_py_folder_name);
        let template = ["cmd:", "url:"]
            .iter()
            .any(|p| name.starts_with(p) && name.len() > p.len());
        if !(KNOWN.contains(&kind) || py_win_folder || template) {
            bail!(
                "unknown server {name:?}; known: {}, host-py-win-py3XX, cmd:<template with {{port}}> \
                 or url:http://HOST:PORT/PATH (a server already running); \
                 host-py, host-c, granian and gunicorn also take @wN (N worker processes), \
                 host-py and host-c @single (--no-supervisor), host-py @rN (N own-GIL \
                 replicas) and @main (the main interpreter)",
                KNOWN.join(", ")
            )
        }
        if let Some(url) = name.strip_prefix("url:") {
            UrlTarget::parse(url)?;
        }
        if let Some(variant) = spec.variant() {
            let ok = match variant {
                "single" => matches!(kind, "host-py" | "host-c"),
                "main" => kind == "host-py",
                _ if variant.starts_with('r') => spec.replicas().is_some() && kind == "host-py",
                _ => {
                    spec.workers().is_some()
                        && matches!(kind, "host-py" | "host-c" | "granian" | "gunicorn")
                }
            };
            if !ok {
                bail!(
                    "server {name:?}: @{variant} is not a variant of {kind} (host-py, host-c, \
                     granian and gunicorn take @wN with N at least 1; host-py and host-c take \
                     @single; host-py takes @rN, N own-GIL replicas from 1 to 64, and @main)"
                );
            }
        }
        Ok(spec)
    }

    /// The kind of server: the name without its `@` variant (`host-py@w2` is a `host-py`).
    pub fn kind(&self) -> &str {
        self.parts().0
    }

    /// The variant after `@` (`w2`, `single`), if any; a `cmd:` template or a URL has none.
    fn variant(&self) -> Option<&str> {
        self.parts().1
    }

    /// The name split at its `@`: kind and variant (a template or URL is all kind).
    fn parts(&self) -> (&str, Option<&str>) {
        match self.name.split_once('@') {
            Some((kind, variant))
                if !self.name.starts_with("cmd:") && !self.name.starts_with("url:") =>
            {
                (kind, Some(variant))
            }
            _ => (&self.name, None),
        }
    }

    /// `@wN`: run N worker processes (the host's `--workers`, granian's `--workers`,
    /// gunicorn's `-w`).
    pub fn workers(&self) -> Option<u32> {
        let n: u32 = self.variant()?.strip_prefix('w')?.parse().ok()?;
        (n >= 1).then_some(n)
    }

    /// `@rN` (host-py): the app in N own-GIL sub-interpreter replicas in one worker
    /// (the host's `--interpreter isolated --replicas N`; Python 3.12+).
    pub fn replicas(&self) -> Option<u32> {
        let n: u32 = self.variant()?.strip_prefix('r')?.parse().ok()?;
        (1..=64).contains(&n).then_some(n)
    }

    /// `@main` (host-py): the app in the main interpreter (`--interpreter main`),
    /// whatever the Python's default mode.
    pub fn main_interpreter(&self) -> bool {
        self.variant() == Some("main")
    }

    /// The host's options for this variant's interpreter mode.
    pub fn interpreter_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(n) = self.replicas() {
            args.extend(["--interpreter", "isolated", "--replicas"].map(String::from));
            args.push(n.to_string());
        } else if self.main_interpreter() {
            args.extend(["--interpreter", "main"].map(String::from));
        }
        args
    }

    /// `@single`: our host as one process, without the supervisor (`--no-supervisor`).
    pub fn single_process(&self) -> bool {
        self.variant() == Some("single")
    }

    /// `url:URL`: a server already running, which the harness measures but neither
    /// starts nor stops.
    pub fn url(&self) -> Option<UrlTarget> {
        UrlTarget::parse(self.name.strip_prefix("url:")?).ok()
    }

    /// Which case targets this server runs.
    pub fn target(&self) -> Target {
        if matches!(self.kind(), "host-c" | "host-c-win" | "bare-hyper") {
            Target::Isapi
        } else {
            Target::Wsgi
        }
    }

    /// One of ours: the host, Linux or Windows build, with pyisapie or the C fixtures.
    pub fn is_ours(&self) -> bool {
        matches!(self.kind(), "host-py" | "host-c") || self.is_windows()
    }

    /// Whether a failed case fails a `conform` run: for our servers, and for a
    /// `cmd:` server (one under test); not for the named peers, which are
    /// reference columns known to fail some cases.
    pub fn must_pass(&self) -> bool {
        self.is_ours() || self.name.starts_with("cmd:") || self.name.starts_with("url:")
    }

    /// A Windows build of our host, run under Wine.
    pub fn is_windows(&self) -> bool {
        self.name == "host-c-win" || self.name.starts_with("host-py-win")
    }

    /// Checks the `--server` names of one run. Two `cmd:` templates of the
    /// same program would share a label, and so a column of the report and a
    /// log file: the second and later are labelled `#2`, `#3` (each one's whole
    /// command is in the JSON report).
    pub fn parse_all<S: AsRef<str>>(names: &[S]) -> Result<Vec<ServerSpec>> {
        let mut specs = Vec::with_capacity(names.len());
        for name in names {
            let mut spec = ServerSpec::parse(name.as_ref())?;
            let same = specs
                .iter()
                .filter(|s: &&ServerSpec| short_label(&s.name) == spec.label)
                .count();
            if same > 0 {
                spec.label = format!("{}#{}", spec.label, same + 1);
            }
            specs.push(spec);
        }
        Ok(specs)
    }

    /// A short label for reports (cmd: templates are abbreviated).
    pub fn label(&self) -> String {
        self.label.clone()
    }
}

/// A name's label before [`ServerSpec::parse_all`] tells apart repeats: a
/// `cmd:` template is shortened to its program's file name.
fn short_label(name: &str) -> String {
    match name.strip_prefix("cmd:") {
        Some(t) => {
            let first = t.split_whitespace().next().unwrap_or("cmd");
            let base = Path::new(first)
                .file_name()
                .and_then(|s| s.to_str())
                .unwrap_or(first);
            format!("cmd:{base}")
        }
        None => name.to_owned(),
    }
}

/// Where an already-running server is: an `http://` URL split for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTarget {
    /// `HOST:PORT` (port 80 when the URL has none): what to connect to, and the `Host` header.
    pub authority: String,
    /// The request target: path and query (`/` when the URL has none).
    pub path: String,
}

impl UrlTarget {
    /// Splits `http://HOST[:PORT][/PATH[?QUERY]]`; refuses other schemes and fragments.
    pub fn parse(url: &str) -> Result<UrlTarget> {
        let Some(rest) = url.strip_prefix("http://") else {
            bail!("{url:?}: only http:// URLs can be measured (no TLS in the load generator)");
        };
        if url.contains('#') {
            bail!("{url:?}: a URL to measure has no #fragment");
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_owned()),
        };
        if authority.is_empty() || authority.contains('@') {
            bail!("{url:?}: expected http://HOST[:PORT]/PATH");
        }
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(h, p)| !p.contains(']') && !h.is_empty());
        let authority = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Ok(UrlTarget { authority, path })
    }
}

/// `py3XX` (one or more digits after `py3`).
pub(super) fn is_py_folder_name(s: &str) -> bool {
    s.strip_prefix("py3")
        .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        assert!(ServerSpec::parse("host-py").unwrap().is_ours());
        assert_eq!(ServerSpec::parse("host-c").unwrap().target(), Target::Isapi);
        assert_eq!(ServerSpec::parse("granian").unwrap().target(), Target::Wsgi);
        assert!(!ServerSpec::parse("waitress").unwrap().is_ours());
        let c = ServerSpec::parse("cmd:/opt/bin/uwsgi --http :{port}").unwrap();
        assert_eq!(c.label(), "cmd:uwsgi");
        assert!(c.must_pass() && !c.is_ours());
        assert!(ServerSpec::parse("host-c").unwrap().must_pass());
        assert!(!ServerSpec::parse("gunicorn").unwrap().must_pass());
        assert!(ServerSpec::parse("cmd:").is_err());
        assert!(ServerSpec::parse("nginx").is_err());
    }

    #[test]
    fn repeated_cmd_labels_are_numbered() {
        let specs = ServerSpec::parse_all(&[
            "cmd:/a/isapi-host serve --bind 127.0.0.1:{port}",
            "host-c",
            "cmd:/b/isapi-host serve --bind 127.0.0.1:{port} --yield-us 0",
            "cmd:/a/isapi-host serve --bind 127.0.0.1:{port} --threads 2",
        ])
        .unwrap();
        let labels: Vec<String> = specs.iter().map(ServerSpec::label).collect();
        assert_eq!(
            labels,
            [
                "cmd:isapi-host",
                "host-c",
                "cmd:isapi-host#2",
                "cmd:isapi-host#3"
            ]
        );
        assert!(ServerSpec::parse_all(&["host-c", "nginx"]).is_err());
    }

    #[test]
    fn windows_server_names() {
        let c = ServerSpec::parse("host-c-win").unwrap();
        assert!(c.is_ours() && c.is_windows());
        assert_eq!(c.target(), Target::Isapi);
        for name in ["host-py-win", "host-py-win-py311", "host-py-win-py312"] {
            let p = ServerSpec::parse(name).unwrap();
            assert!(p.is_ours() && p.is_windows(), "{name}");
            assert_eq!(p.target(), Target::Wsgi, "{name}");
            assert_eq!(p.label(), name);
        }
        assert!(!ServerSpec::parse("host-c").unwrap().is_windows());
        for bad in [
            "host-py-win-",
            "host-py-win-py2",
            "host-py-win-py3",
            "host-py-win-py31x",
        ] {
            assert!(ServerSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn url_servers() {
        let u = ServerSpec::parse("url:http://127.0.0.1:8080/api/x?y=1").unwrap();
        let t = u.url().unwrap();
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("127.0.0.1:8080", "/api/x?y=1")
        );
        assert!(u.must_pass() && !u.is_ours());
        assert_eq!(u.workers(), None);
        let t = ServerSpec::parse("url:http://localhost")
            .unwrap()
            .url()
            .unwrap();
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("localhost:80", "/")
        );
        let t = UrlTarget::parse("http://[::1]:81?q").unwrap();
        assert_eq!((t.authority.as_str(), t.path.as_str()), ("[::1]:81", "/?q"));
        assert_eq!(
            UrlTarget::parse("http://[::1]/").unwrap().authority,
            "[::1]:80"
        );
        for bad in ["url:https://x/", "url:http:///x", "url:http://x/#f", "url:"] {
            assert!(ServerSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn worker_and_single_process_variants() {
        let w = ServerSpec::parse("host-py@w2").unwrap();
        assert_eq!(
            (w.kind(), w.workers(), w.single_process()),
            ("host-py", Some(2), false)
        );
        assert!(w.is_ours() && w.must_pass());
        assert_eq!(w.label(), "host-py@w2");
        let g = ServerSpec::parse("granian@w2").unwrap();
        assert_eq!((g.kind(), g.workers()), ("granian", Some(2)));
        assert_eq!(g.target(), Target::Wsgi);
        let s = ServerSpec::parse("host-c@single").unwrap();
        assert_eq!(
            (s.kind(), s.workers(), s.single_process()),
            ("host-c", None, true)
        );
        assert_eq!(s.target(), Target::Isapi);
        let r = ServerSpec::parse("host-py@r2").unwrap();
        assert_eq!(
            (r.replicas(), r.workers(), r.is_ours()),
            (Some(2), None, true)
        );
        assert_eq!(
            r.interpreter_args(),
            ["--interpreter", "isolated", "--replicas", "2"]
        );
        let m = ServerSpec::parse("host-py@main").unwrap();
        assert!(m.main_interpreter() && m.replicas().is_none());
        assert_eq!(m.interpreter_args(), ["--interpreter", "main"]);
        assert!(
            ServerSpec::parse("host-py")
                .unwrap()
                .interpreter_args()
                .is_empty()
        );
        for bad in [
            "host-py@w0",
            "host-py@wx",
            "host-py@r0",
            "host-py@r65",
            "host-c@r2",
            "host-c@main",
            "granian@r2",
            "waitress@w2",
            "granian@single",
            "host-py@",
            "nginx@w2",
        ] {
            assert!(ServerSpec::parse(bad).is_err(), "{bad}");
        }
        let cmd = ServerSpec::parse("cmd:curl user@host {port}").unwrap();
        assert_eq!(cmd.kind(), "cmd:curl user@host {port}");
    }
}
