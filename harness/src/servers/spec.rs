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
}

impl ServerSpec {
    /// Checks a `--server` name.
    pub fn parse(name: &str) -> Result<ServerSpec> {
        let py_win_folder = name
            .strip_prefix(HOST_PY_WIN_PREFIX)
            .is_some_and(is_py_folder_name);
        if KNOWN.contains(&name) || py_win_folder || (name.starts_with("cmd:") && name.len() > 4) {
            Ok(ServerSpec {
                name: name.to_owned(),
            })
        } else {
            bail!(
                "unknown server {name:?}; known: {}, host-py-win-py3XX, or cmd:<template with {{port}}>",
                KNOWN.join(", ")
            )
        }
    }

    /// Which case targets this server runs.
    pub fn target(&self) -> Target {
        if self.name == "host-c" || self.name == "host-c-win" || self.name == "bare-hyper" {
            Target::Isapi
        } else {
            Target::Wsgi
        }
    }

    /// One of ours: the host, Linux or Windows build, with pyisapie or the C fixtures.
    pub fn is_ours(&self) -> bool {
        self.name == "host-py" || self.name == "host-c" || self.is_windows()
    }

    /// Whether a failed case fails a `conform` run: for our servers, and for a
    /// `cmd:` server (one under test); not for the named peers, which are
    /// reference columns known to fail some cases.
    pub fn must_pass(&self) -> bool {
        self.is_ours() || self.name.starts_with("cmd:")
    }

    /// A Windows build of our host, run under Wine.
    pub fn is_windows(&self) -> bool {
        self.name == "host-c-win" || self.name.starts_with("host-py-win")
    }

    /// A short label for reports (cmd: templates are abbreviated).
    pub fn label(&self) -> String {
        match self.name.strip_prefix("cmd:") {
            Some(t) => {
                let first = t.split_whitespace().next().unwrap_or("cmd");
                let base = Path::new(first)
                    .file_name()
                    .and_then(|s| s.to_str())
                    .unwrap_or(first);
                format!("cmd:{base}")
            }
            None => self.name.clone(),
        }
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
}
