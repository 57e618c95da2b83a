//! The site around the extensions, as IIS serves it: static files
//! (`--static`, and a `web.config`'s site root), a `web.config`'s settings,
//! and its request filtering.
//!
//! - [`webconfig`] (layer 0, pure): reading a `web.config` and `--path-map`;
//! - [`filter`] (layer 0, pure): `requestFiltering`'s limits on a request head;
//! - [`files`] (layer 2, beside `request`): serving a static mount with
//!   tower-http's `ServeDir`, and its access-log line.
//!
//! The types below are what `config` resolves and `server` routes to.

pub(crate) mod files;
pub(crate) mod filter;
pub(crate) mod webconfig;

use std::path::PathBuf;

pub(crate) use filter::Limits;

/// IIS's default `defaultDocument` list, less the ASP and ASP.NET pages
/// the host cannot run (it would send their source).
pub(crate) const DEFAULT_DOCUMENTS: [&str; 4] =
    ["Default.htm", "index.htm", "index.html", "iisstart.htm"];

/// IIS's `requestFiltering` `hiddenSegments` defaults (404 whatever the
/// case), for a `web.config`'s site root.
const HIDDEN_SEGMENTS: [&str; 8] = [
    "web.config",
    "bin",
    "app_code",
    "app_globalresources",
    "app_localresources",
    "app_webreferences",
    "app_data",
    "app_browsers",
];

/// Extensions a `web.config`'s site root never serves: IIS's
/// `fileExtensions` deny list, and the code the host itself runs (IIS's
/// MIME map has no entry for them, so IIS answers 404.3).
const DENIED_EXTENSIONS: [&str; 14] = [
    "config", "cs", "vb", "csproj", "mdb", "mdf", "ldf", "resx", "py", "pyc", "pyo", "pyd", "dll",
    "so",
];

/// How one static mount serves its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileOptions {
    /// Tried in order for a directory URL (one ending in `/`).
    pub(crate) default_documents: Vec<String>,
    /// Content types by lowercase extension (no dot), over mime_guess's.
    pub(crate) mime: Vec<(String, String)>,
    /// `Cache-Control: max-age` in seconds.
    pub(crate) max_age: Option<u64>,
    /// Lowercase path segments answered with 404.
    pub(crate) hidden_segments: Vec<String>,
    /// Lowercase extensions (no dot) answered with 404.
    pub(crate) denied_extensions: Vec<String>,
}

impl Default for FileOptions {
    /// A `--static` directory: every file in it, IIS's default documents.
    fn default() -> Self {
        FileOptions {
            default_documents: DEFAULT_DOCUMENTS.map(String::from).to_vec(),
            mime: Vec::new(),
            max_age: None,
            hidden_segments: Vec::new(),
            denied_extensions: Vec::new(),
        }
    }
}

impl FileOptions {
    /// A `web.config`'s site root, before the file's own lists: IIS's
    /// hidden segments and denied extensions too.
    pub(crate) fn site_root() -> Self {
        FileOptions {
            hidden_segments: HIDDEN_SEGMENTS.map(String::from).to_vec(),
            denied_extensions: DENIED_EXTENSIONS.map(String::from).to_vec(),
            ..FileOptions::default()
        }
    }
}

/// A directory served at a URL prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StaticMount {
    /// In `url_prefix`'s form, as `--map`'s: `""` for the root, else `/name`.
    pub(crate) prefix: String,
    /// The directory (absolute).
    pub(crate) dir: PathBuf,
    /// How it is served.
    pub(crate) options: FileOptions,
}

/// `--static /PREFIX=DIR` as given (TOML: `[[static]]` with `prefix` and `dir`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StaticArg {
    /// The URL prefix as written.
    pub(crate) prefix: String,
    /// The directory as written.
    pub(crate) dir: PathBuf,
}

/// Parses `--static /prefix=DIR`.
pub(crate) fn parse_static(s: &str) -> Result<StaticArg, String> {
    let (prefix, dir) = url_prefix::split_mount(s, "/PREFIX=DIR", "directory")?;
    Ok(StaticArg {
        prefix,
        dir: PathBuf::from(dir),
    })
}

/// What `--static` and `--web-config` add to the settings, resolved.
#[derive(Debug, Clone, Default)]
pub(crate) struct Site {
    /// The static mounts, longest prefix first: `--static`'s, then the
    /// `web.config`'s directory at the root unless a `--static` claims it.
    pub(crate) statics: Vec<StaticMount>,
    /// `requestFiltering`'s limits, with a `web.config` (IIS's defaults
    /// for what it does not set).
    pub(crate) limits: Option<Limits>,
    /// The `web.config`'s warnings, logged once at start-up.
    pub(crate) warnings: Vec<String>,
    /// The `web.config`'s `IsapiModule` handlers, as (prefix, library).
    pub(crate) handlers: Vec<(String, PathBuf)>,
    /// `maxAllowedContentLength`.
    pub(crate) max_body: Option<u64>,
    /// The `web.config`'s directory: the site's physical root.
    pub(crate) root: Option<PathBuf>,
}

impl Site {
    /// Reads the `web.config` (with `path_map`) and checks the `--static`
    /// directories (`(prefix, dir)`, relative ones below `work_dir`).
    pub(crate) fn resolve(
        web_config: Option<&std::path::Path>,
        path_map: &[webconfig::PathMap],
        statics: &[StaticArg],
        work_dir: &std::path::Path,
    ) -> anyhow::Result<Site> {
        let mut site = Site::default();
        for StaticArg { prefix, dir } in statics {
            let prefix = url_prefix::normalize(prefix)?;
            let abs = std::path::absolute(work_dir.join(dir))?;
            if !abs.is_dir() {
                anyhow::bail!(
                    "--static {}={}: {} is not a directory",
                    url_prefix::shown(&prefix),
                    dir.display(),
                    abs.display()
                );
            }
            site.statics.push(StaticMount {
                prefix,
                dir: abs,
                options: FileOptions::default(),
            });
        }
        if let Some(p) = url_prefix::first_duplicate(site.statics.iter().map(|m| &*m.prefix)) {
            anyhow::bail!("--static {} is given twice", url_prefix::shown(p));
        }
        if !path_map.is_empty() && web_config.is_none() {
            anyhow::bail!("--path-map maps the paths of a --web-config: give one");
        }
        if let Some(path) = web_config {
            let path_map: Vec<_> = path_map
                .iter()
                .map(|m| webconfig::PathMap {
                    windows: m.windows.clone(),
                    local: work_dir.join(&m.local),
                })
                .collect();
            let wc = webconfig::read(&work_dir.join(path), &path_map)?;
            // The site's files, where no --static and no handler claims them.
            if !site.statics.iter().any(|m| m.prefix.is_empty()) {
                site.statics.push(StaticMount {
                    prefix: String::new(),
                    dir: wc.root.clone(),
                    options: wc.files.clone(),
                });
            }
            // The --static directories follow the site's documents and types.
            for m in &mut site.statics {
                m.options.default_documents = wc.files.default_documents.clone();
                m.options.mime = wc.files.mime.clone();
                m.options.max_age = wc.files.max_age;
            }
            site.limits = Some(wc.limits);
            site.warnings = wc.warnings;
            site.handlers = wc
                .handlers
                .into_iter()
                .map(|h| (h.prefix, h.library))
                .collect();
            site.max_body = wc.max_body;
            site.root = Some(wc.root);
        }
        url_prefix::longest_first(&mut site.statics, |m| &m.prefix);
        Ok(site)
    }

    /// The `web.config`'s handlers whose prefix nothing given on the
    /// command line (or TOML) claims; a warning for each that is claimed.
    pub(crate) fn take_handlers(
        &mut self,
        claimed: impl Fn(&str) -> bool,
    ) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        for (prefix, lib) in std::mem::take(&mut self.handlers) {
            if claimed(&prefix) {
                self.warnings.push(format!(
                    "web.config handler for {} ({}) is overridden by the command line or --config",
                    url_prefix::shown(&prefix),
                    lib.display()
                ));
            } else {
                out.push((prefix, lib));
            }
        }
        out
    }
}
