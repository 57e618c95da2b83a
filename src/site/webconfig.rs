//! A site's IIS `web.config`, read with roxmltree: what the host honours
//! (ISAPI handler mappings, `requestFiltering`, `defaultDocument`,
//! `staticContent`), and one warning per element or attribute it does not.
//!
//! Pure: the file's text in, a [`WebConfig`] out. Paths in it are Windows
//! paths; [`PathMap`] maps them to local ones.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use roxmltree::Node;

use super::{FileOptions, Limits};

/// `--path-map WINDOWS=LOCAL`: a Windows path prefix in `web.config`, and
/// the local directory it stands for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub(crate) struct PathMap {
    /// The Windows prefix, as written (`C:\inetpub\site`).
    pub(crate) windows: String,
    /// The local directory (or file) it maps to.
    pub(crate) local: PathBuf,
}

/// Parses `--path-map 'C:\inetpub\site=./site'`.
pub(crate) fn parse_path_map(s: &str) -> Result<PathMap, String> {
    // A Windows path has no `=`; the local side may.
    let (windows, local) = s
        .split_once('=')
        .ok_or_else(|| format!("expected WINDOWS_PATH=LOCAL_PATH, got {s:?}"))?;
    if windows.is_empty() || local.is_empty() {
        return Err(format!("expected WINDOWS_PATH=LOCAL_PATH, got {s:?}"));
    }
    Ok(PathMap {
        windows: windows.to_owned(),
        local: PathBuf::from(local),
    })
}

/// `C:/a\\b\` as `c:\a\b`: lowercase, backslashes, no doubled or trailing ones.
fn windows_key(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for c in p.trim().trim_matches('"').chars() {
        let c = if c == '/' {
            '\\'
        } else {
            c.to_ascii_lowercase()
        };
        if !(c == '\\' && out.ends_with('\\') && out.len() > 1) {
            out.push(c);
        }
    }
    while out.len() > 1 && out.ends_with('\\') {
        out.pop();
    }
    out
}

/// Whether `p` is a Windows absolute path (`C:\...` or `\\server\share`).
fn is_windows_absolute(p: &str) -> bool {
    let b = p.as_bytes();
    (b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && matches!(b[2], b'\\' | b'/'))
        || p.starts_with("\\\\")
}

/// Maps a path written in `web.config` to a local one: the longest
/// `--path-map` prefix (case-insensitive, on whole components), a relative
/// path below the `web.config`'s directory, or (on Windows) the path as is.
pub(crate) fn map_path(written: &str, maps: &[PathMap], base: &Path) -> anyhow::Result<PathBuf> {
    let key = windows_key(written);
    let best = maps
        .iter()
        .map(|m| (windows_key(&m.windows), m))
        .filter(|(k, _)| {
            key == *k || (key.starts_with(k.as_str()) && key.as_bytes()[k.len()] == b'\\')
        })
        .max_by_key(|(k, _)| k.len());
    if let Some((k, m)) = best {
        // The rest keeps the case it was written in.
        let trimmed = written.trim().trim_matches('"').replace('/', "\\");
        let rest: String = trimmed.chars().skip(k.chars().count()).collect();
        let mut out = m.local.clone();
        out.extend(rest.split('\\').filter(|s| !s.is_empty()));
        return Ok(out);
    }
    if is_windows_absolute(written) {
        if cfg!(windows) {
            return Ok(PathBuf::from(written));
        }
        bail!(
            "{written} is a Windows path: map it to a local one with --path-map 'WINDOWS_DIR=LOCAL_DIR'"
        );
    }
    let mut out = base.to_path_buf();
    out.extend(written.split(['\\', '/']).filter(|s| !s.is_empty()));
    Ok(out)
}

/// An ISAPI handler mapping taken from `web.config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Handler {
    /// Its `name`.
    pub(crate) name: String,
    /// The URL prefix it serves (`""`, the root, for `path="*"`).
    pub(crate) prefix: String,
    /// The extension library (`scriptProcessor`, mapped).
    pub(crate) library: PathBuf,
}

/// What the host takes from a `web.config`.
#[derive(Debug, Clone, Default)]
pub(crate) struct WebConfig {
    /// The `web.config`'s directory: the site's physical root.
    pub(crate) root: PathBuf,
    /// `IsapiModule` handlers, in the file's order.
    pub(crate) handlers: Vec<Handler>,
    /// `requestLimits maxAllowedContentLength`.
    pub(crate) max_body: Option<u64>,
    /// The rest of `requestFiltering`.
    pub(crate) limits: Limits,
    /// `defaultDocument`, `staticContent` and the hidden parts of the site.
    pub(crate) files: FileOptions,
    /// One line per element or attribute the host does not honour.
    pub(crate) warnings: Vec<String>,
}

/// Reads and parses the `web.config` at `path`.
pub(crate) fn read(path: &Path, maps: &[PathMap]) -> anyhow::Result<WebConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --web-config {}", path.display()))?;
    let abs = std::path::absolute(path)
        .with_context(|| format!("cannot resolve --web-config {}", path.display()))?;
    let root = abs.parent().unwrap_or(Path::new("/")).to_path_buf();
    parse(&text, root, maps).with_context(|| format!("invalid web.config {}", path.display()))
}

/// Parses a `web.config`'s text; `root` is its directory.
pub(crate) fn parse(text: &str, root: PathBuf, maps: &[PathMap]) -> anyhow::Result<WebConfig> {
    let doc = roxmltree::Document::parse(text)?;
    let top = doc.root_element();
    if top.tag_name().name() != "configuration" {
        bail!(
            "the root element is <{}>, not <configuration>",
            top.tag_name().name()
        );
    }
    let mut w = Reader {
        out: WebConfig {
            root,
            files: FileOptions::site_root(),
            ..WebConfig::default()
        },
        maps,
    };
    for el in elements(top) {
        match el.tag_name().name() {
            "system.webServer" => w.web_server(el)?,
            other => w.unsupported(el, &format!("<{other}>")),
        }
    }
    Ok(w.out)
}

/// The element children of a node (comments and text skipped).
fn elements<'a, 'i>(n: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children().filter(Node::is_element)
}

/// The parse in progress.
struct Reader<'m> {
    out: WebConfig,
    maps: &'m [PathMap],
}

impl Reader<'_> {
    /// Records what is not honoured, once.
    fn warn(&mut self, line: String) {
        if !self.out.warnings.contains(&line) {
            self.out.warnings.push(line);
        }
    }

    fn unsupported(&mut self, el: Node<'_, '_>, what: &str) {
        let pos = el.document().text_pos_at(el.range().start);
        self.warn(format!(
            "web.config line {}: {what} is not supported; ignored",
            pos.row
        ));
    }

    /// Warns for each attribute of `el` not in `known`.
    fn attrs(&mut self, el: Node<'_, '_>, known: &[&str]) {
        for a in el.attributes() {
            if !known.contains(&a.name()) {
                let what = format!(
                    "attribute {}=\"{}\" of <{}>",
                    a.name(),
                    a.value(),
                    el.tag_name().name()
                );
                self.unsupported(el, &what);
            }
        }
    }

    fn web_server(&mut self, ws: Node<'_, '_>) -> anyhow::Result<()> {
        self.attrs(ws, &[]);
        for el in elements(ws) {
            match el.tag_name().name() {
                "handlers" => self.handlers(el)?,
                "security" => {
                    self.attrs(el, &[]);
                    for s in elements(el) {
                        match s.tag_name().name() {
                            "requestFiltering" => self.request_filtering(s)?,
                            other => self.unsupported(s, &format!("<security><{other}>")),
                        }
                    }
                }
                "defaultDocument" => self.default_document(el),
                "staticContent" => self.static_content(el)?,
                other => self.unsupported(el, &format!("<system.webServer><{other}>")),
            }
        }
        Ok(())
    }

    fn handlers(&mut self, hs: Node<'_, '_>) -> anyhow::Result<()> {
        self.attrs(hs, &[]);
        for el in elements(hs) {
            match el.tag_name().name() {
                "clear" => self.out.handlers.clear(),
                "remove" => {
                    let name = el.attribute("name").unwrap_or_default();
                    self.out.handlers.retain(|h| h.name != name);
                }
                "add" => self.handler(el)?,
                other => self.unsupported(el, &format!("<handlers><{other}>")),
            }
        }
        Ok(())
    }

    fn handler(&mut self, el: Node<'_, '_>) -> anyhow::Result<()> {
        let name = el.attribute("name").unwrap_or_default().to_owned();
        let modules = el.attribute("modules").unwrap_or_default();
        let path = el.attribute("path").unwrap_or_default();
        if !modules.split(',').any(|m| m.trim() == "IsapiModule") {
            // The host serves static files itself (the site root, below).
            let static_only = !modules.is_empty()
                && modules.split(',').all(|m| {
                    matches!(
                        m.trim(),
                        "StaticFileModule" | "DefaultDocumentModule" | "DirectoryListingModule"
                    )
                });
            if !static_only {
                let what = if modules.is_empty() {
                    el.attribute("type").unwrap_or("no module")
                } else {
                    modules
                };
                self.unsupported(el, &format!("handler {name:?} ({what})"));
            }
            return Ok(());
        }
        self.attrs(
            el,
            &[
                "name",
                "path",
                "verb",
                "modules",
                "scriptProcessor",
                "resourceType",
                "requireAccess",
                "preCondition",
            ],
        );
        let Some(script) = el.attribute("scriptProcessor") else {
            bail!("handler {name:?} (IsapiModule) has no scriptProcessor");
        };
        let library = map_path(script, self.maps, &self.out.root)
            .with_context(|| format!("handler {name:?}"))?;
        let prefix = match path.trim() {
            "*" => String::new(),
            other => {
                self.unsupported(
                    el,
                    &format!(
                        "handler {name:?} path=\"{other}\" (only path=\"*\" maps: use --map /PREFIX=LIBRARY)"
                    ),
                );
                return Ok(());
            }
        };
        if let Some(v) = el.attribute("verb").filter(|v| v.trim() != "*") {
            self.unsupported(
                el,
                &format!("handler {name:?} verb=\"{v}\" (every verb is served)"),
            );
        }
        if let Some(r) = el.attribute("resourceType").filter(|r| *r != "Unspecified") {
            self.unsupported(
                el,
                &format!("handler {name:?} resourceType=\"{r}\" (no file check: Unspecified)"),
            );
        }
        if let Some(p) = el.attribute("preCondition")
            && p.split(',')
                .any(|c| c.trim().eq_ignore_ascii_case("bitness32"))
        {
            self.unsupported(
                el,
                &format!("handler {name:?} preCondition=\"{p}\" (the host is 64-bit)"),
            );
        }
        if self.out.handlers.iter().any(|h| h.prefix == prefix) {
            self.unsupported(
                el,
                &format!("handler {name:?}: an earlier handler already claims path=\"*\""),
            );
            return Ok(());
        }
        self.out.handlers.push(Handler {
            name,
            prefix,
            library,
        });
        Ok(())
    }

    fn request_filtering(&mut self, rf: Node<'_, '_>) -> anyhow::Result<()> {
        self.attrs(rf, &[]);
        for el in elements(rf) {
            match el.tag_name().name() {
                "requestLimits" => {
                    self.attrs(el, &["maxAllowedContentLength", "maxUrl", "maxQueryString"]);
                    let num = |a: &str| -> anyhow::Result<Option<u64>> {
                        el.attribute(a)
                            .map(|v| {
                                v.trim().parse::<u64>().with_context(|| {
                                    format!("requestLimits {a}=\"{v}\" is not a number")
                                })
                            })
                            .transpose()
                    };
                    self.out.max_body = num("maxAllowedContentLength")?.or(self.out.max_body);
                    if let Some(n) = num("maxUrl")? {
                        self.out.limits.max_url = n as usize;
                    }
                    if let Some(n) = num("maxQueryString")? {
                        self.out.limits.max_query = n as usize;
                    }
                    for h in elements(el) {
                        match h.tag_name().name() {
                            "headerLimits" => self.header_limits(h)?,
                            other => self.unsupported(h, &format!("<requestLimits><{other}>")),
                        }
                    }
                }
                "hiddenSegments" => {
                    self.attrs(el, &["applyToWebDAV"]);
                    let list = &mut self.out.files.hidden_segments;
                    for (op, v) in list_ops(el, "segment") {
                        apply(list, op, v.to_ascii_lowercase());
                    }
                }
                "fileExtensions" => {
                    self.attrs(el, &["applyToWebDAV"]);
                    for a in elements(el) {
                        let ext = a.attribute("fileExtension").unwrap_or_default();
                        let ext = ext.trim().trim_start_matches('.').to_ascii_lowercase();
                        let list = &mut self.out.files.denied_extensions;
                        match a.tag_name().name() {
                            "clear" => list.clear(),
                            "remove" => list.retain(|e| *e != ext),
                            "add" if a.attribute("allowed") == Some("false") => {
                                apply(list, Op::Add, ext)
                            }
                            "add" => list.retain(|e| *e != ext),
                            other => self.unsupported(a, &format!("<fileExtensions><{other}>")),
                        }
                    }
                }
                other => self.unsupported(el, &format!("<requestFiltering><{other}>")),
            }
        }
        Ok(())
    }

    fn header_limits(&mut self, hl: Node<'_, '_>) -> anyhow::Result<()> {
        self.attrs(hl, &[]);
        for el in elements(hl) {
            let header = el
                .attribute("header")
                .unwrap_or_default()
                .to_ascii_lowercase();
            let limits = &mut self.out.limits.headers;
            match el.tag_name().name() {
                "clear" => limits.clear(),
                "remove" => limits.retain(|(h, _)| h.as_str() != header),
                "add" => {
                    let v = el.attribute("sizeLimit").unwrap_or_default();
                    let n: usize = v.trim().parse().with_context(|| {
                        format!("headerLimits sizeLimit=\"{v}\" of {header:?} is not a number")
                    })?;
                    let name = http::HeaderName::from_bytes(header.as_bytes())
                        .with_context(|| format!("headerLimits header=\"{header}\""))?;
                    limits.retain(|(h, _)| *h != name);
                    limits.push((name, n));
                }
                other => self.unsupported(el, &format!("<headerLimits><{other}>")),
            }
        }
        Ok(())
    }

    fn default_document(&mut self, dd: Node<'_, '_>) {
        self.attrs(dd, &["enabled"]);
        let enabled = dd.attribute("enabled") != Some("false");
        for el in elements(dd) {
            match el.tag_name().name() {
                "files" => {
                    let list = &mut self.out.files.default_documents;
                    for (op, v) in list_ops(el, "value") {
                        apply(list, op, v.to_owned());
                    }
                }
                other => self.unsupported(el, &format!("<defaultDocument><{other}>")),
            }
        }
        if !enabled {
            self.out.files.default_documents.clear();
        }
    }

    fn static_content(&mut self, sc: Node<'_, '_>) -> anyhow::Result<()> {
        self.attrs(sc, &[]);
        for el in elements(sc) {
            let ext = el.attribute("fileExtension").unwrap_or_default();
            let ext = ext.trim().trim_start_matches('.').to_ascii_lowercase();
            let mime = &mut self.out.files.mime;
            match el.tag_name().name() {
                "mimeMap" => {
                    let t = el.attribute("mimeType").unwrap_or_default().trim();
                    http::HeaderValue::from_str(t)
                        .with_context(|| format!("mimeMap mimeType=\"{t}\""))?;
                    mime.retain(|(e, _)| *e != ext);
                    mime.push((ext, t.to_owned()));
                }
                "remove" => mime.retain(|(e, _)| *e != ext),
                "clear" => mime.clear(),
                "clientCache" => self.client_cache(el)?,
                other => self.unsupported(el, &format!("<staticContent><{other}>")),
            }
        }
        Ok(())
    }

    fn client_cache(&mut self, cc: Node<'_, '_>) -> anyhow::Result<()> {
        self.attrs(cc, &["cacheControlMode", "cacheControlMaxAge"]);
        match cc.attribute("cacheControlMode") {
            Some("UseMaxAge") => {
                let v = cc.attribute("cacheControlMaxAge").unwrap_or("1.00:00:00");
                self.out.files.max_age = Some(
                    timespan_secs(v)
                        .with_context(|| format!("clientCache cacheControlMaxAge=\"{v}\""))?,
                );
            }
            Some("DisableCache") => self.out.files.max_age = None,
            None | Some("NoControl") => {}
            Some(other) => {
                self.unsupported(cc, &format!("clientCache cacheControlMode=\"{other}\""))
            }
        }
        Ok(())
    }
}

/// One entry of an `add`/`remove`/`clear` list.
#[derive(Clone, Copy)]
enum Op {
    Add,
    Remove,
    Clear,
}

/// The `add`/`remove`/`clear` children of a list element, by `attr`.
fn list_ops<'a>(el: Node<'a, '_>, attr: &str) -> Vec<(Op, &'a str)> {
    elements(el)
        .filter_map(|c| {
            let v = c.attribute(attr).unwrap_or_default().trim();
            match c.tag_name().name() {
                "add" => Some((Op::Add, v)),
                "remove" => Some((Op::Remove, v)),
                "clear" => Some((Op::Clear, v)),
                _ => None,
            }
        })
        .collect()
}

fn apply(list: &mut Vec<String>, op: Op, v: String) {
    match op {
        Op::Add if !list.iter().any(|e| e.eq_ignore_ascii_case(&v)) => list.push(v),
        Op::Add => {}
        Op::Remove => list.retain(|e| !e.eq_ignore_ascii_case(&v)),
        Op::Clear => list.clear(),
    }
}

/// A .NET `TimeSpan` (`[d.]hh:mm:ss`) in seconds.
fn timespan_secs(v: &str) -> anyhow::Result<u64> {
    let v = v.trim();
    let (days, hms) = match v.split_once('.') {
        Some((d, rest)) if !d.contains(':') => (d.parse::<u64>()?, rest),
        _ => (0, v),
    };
    let parts: Vec<u64> = hms
        .split(':')
        .map(|p| p.split('.').next().unwrap_or("0").parse::<u64>())
        .collect::<Result<_, _>>()?;
    let [h, m, s] = parts[..] else {
        bail!("expected [days.]hh:mm:ss");
    };
    Ok(days * 86400 + h * 3600 + m * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_paths_map_case_insensitively() {
        let maps = [parse_path_map(r"C:\inetpub\site=/srv/site").unwrap()];
        let base = Path::new("/base");
        assert_eq!(
            map_path(r"c:\InetPub\Site\Bin\pyisapie.dll", &maps, base).unwrap(),
            PathBuf::from("/srv/site/Bin/pyisapie.dll")
        );
        assert_eq!(
            map_path(r#""C:/inetpub/site""#, &maps, base).unwrap(),
            PathBuf::from("/srv/site")
        );
        assert_eq!(
            map_path(r"bin\x.dll", &maps, base).unwrap(),
            base.join("bin/x.dll")
        );
        // Not a whole-component match.
        if cfg!(unix) {
            assert!(map_path(r"C:\inetpub\site2\x.dll", &maps, base).is_err());
        }
        assert!(parse_path_map("nothing").is_err());
    }

    #[test]
    fn timespans() {
        assert_eq!(timespan_secs("7.00:00:00").unwrap(), 604_800);
        assert_eq!(timespan_secs("01:02:03").unwrap(), 3723);
        assert!(timespan_secs("soon").is_err());
    }
}
