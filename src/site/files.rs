//! Serving a static mount: tower-http's `ServeDir` does the file work
//! (content types from mime_guess, `Last-Modified`, `If-Modified-Since`
//! and `If-Unmodified-Since`, single `Range`s, `HEAD`, 405 for other
//! methods, no path outside the directory); around it, what IIS's
//! StaticFileModule adds: an `ETag` and `If-None-Match`, `If-Range`, the
//! site's default documents, hidden segments and denied extensions, its
//! MIME map and `Cache-Control`, the host's error pages and the access log.
//!
//! Paths: the host has already percent-decoded the URL and removed its
//! dot-segments (a path never climbs above `/`, `server::head`); the part
//! after the prefix is encoded again for `ServeDir`, which decodes it and
//! refuses any component that is not a plain name (`..`, a drive, a root).
//! Symbolic links inside the directory are followed, as IIS and nginx do by
//! default: whoever can place a link in the directory chose to publish it.

use std::sync::Arc;
use std::time::{Instant, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::Empty;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tower_http::services::ServeDir;

use super::{FileOptions, StaticMount};
use crate::request::{HostBody, error_page};
use crate::vars::{Endpoints, SERVER_SOFTWARE};

/// What stays as is when the path is encoded again for `ServeDir`.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A directory served at a URL prefix.
pub(crate) struct StaticFiles {
    /// In `url_prefix`'s form: `""` for the root, else `/name`.
    prefix: String,
    serve: ServeDir,
    /// The directory, for the default documents.
    dir: std::path::PathBuf,
    options: FileOptions,
    /// `Cache-Control`, made once.
    cache_control: Option<HeaderValue>,
}

impl StaticFiles {
    /// Serves `m`.
    pub(crate) fn new(m: &StaticMount) -> Self {
        StaticFiles {
            prefix: m.prefix.clone(),
            // Default documents are the site's list, tried below; a
            // directory URL without its `/` is redirected by ServeDir.
            serve: ServeDir::new(&m.dir).append_index_html_on_directories(true),
            dir: m.dir.clone(),
            options: m.options.clone(),
            cache_control: m
                .options
                .max_age
                .and_then(|s| HeaderValue::from_str(&format!("max-age={s}")).ok()),
        }
    }

    /// The URL prefix.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Answers a request routed here; `url` is its decoded, normalized path.
    pub(crate) async fn serve<B>(
        self: Arc<Self>,
        req: Request<B>,
        url: Vec<u8>,
        ends: Arc<Endpoints>,
    ) -> Response<HostBody> {
        let started = Instant::now();
        let (parts, _) = req.into_parts();
        let resp = self.respond(&parts, &url).await;
        if crate::accesslog::enabled() {
            let sent = match (resp.status(), &parts.method) {
                (StatusCode::NOT_MODIFIED, _) | (_, &Method::HEAD) => 0,
                _ => content_length(resp.headers()).unwrap_or(0),
            };
            crate::accesslog::write(&crate::accesslog::Entry {
                ends: &ends,
                request: crate::accesslog::Request::Parsed(crate::accesslog::Parsed {
                    method: parts.method.as_str(),
                    target: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
                    stem: &url,
                    query: parts.uri.query().unwrap_or(""),
                    version: parts.version,
                    headers: &parts.headers,
                }),
                status: resp.status().as_u16(),
                sent,
                extra: ["", ""],
                win32: 0,
                elapsed: started.elapsed(),
            });
        }
        resp
    }

    async fn respond(&self, parts: &http::request::Parts, url: &[u8]) -> Response<HostBody> {
        let rest = url_prefix::strip(url, &self.prefix).unwrap_or_default();
        let Ok(rest) = std::str::from_utf8(rest) else {
            return error_page(StatusCode::NOT_FOUND, false);
        };
        if rest.is_empty() {
            return redirect_to_slash(&parts.uri);
        }
        if self.hidden(rest) {
            return error_page(StatusCode::NOT_FOUND, false);
        }
        let get = parts.method == Method::GET || parts.method == Method::HEAD;
        let mut path = rest.to_owned();
        if path.ends_with('/') && get {
            match self.default_document(&path).await {
                Some(doc) => path.push_str(&doc),
                None => {
                    let dir = self.dir.join(path.trim_start_matches('/'));
                    // IIS's 403.14: no directory listing.
                    let status = if tokio::fs::metadata(dir).await.is_ok_and(|m| m.is_dir()) {
                        StatusCode::FORBIDDEN
                    } else {
                        StatusCode::NOT_FOUND
                    };
                    return error_page(status, false);
                }
            }
        }
        let Ok(uri) = Uri::try_from(utf8_percent_encode(&path, PATH).to_string()) else {
            return error_page(StatusCode::NOT_FOUND, false);
        };
        // If-None-Match is answered here, from the ETag; with it,
        // If-Modified-Since is ignored (RFC 9110, 13.2.2).
        let mut headers = parts.headers.clone();
        let if_none_match = headers.remove(header::IF_NONE_MATCH);
        if if_none_match.is_some() {
            headers.remove(header::IF_MODIFIED_SINCE);
        }
        let if_range = headers.remove(header::IF_RANGE);
        let retry = if_range.is_some().then(|| (headers.clone(), uri.clone()));
        let mut resp = match self.call(&parts.method, headers, uri).await {
            Ok(r) => r,
            Err(r) => return r,
        };
        let etag = etag(resp.headers());
        // If-Range: a range only of the representation the client has.
        if resp.status() == StatusCode::PARTIAL_CONTENT
            && let (Some(v), Some((mut headers, uri))) = (&if_range, retry)
            && !if_range_matches(v, resp.headers())
        {
            headers.remove(header::RANGE);
            resp = match self.call(&parts.method, headers, uri).await {
                Ok(r) => r,
                Err(r) => return r,
            };
        }
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return error_page(StatusCode::NOT_FOUND, false);
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            let mut page = error_page(status, false);
            let allow = HeaderValue::from_static("GET, HEAD");
            page.headers_mut().insert(header::ALLOW, allow);
            return page;
        }
        if status == StatusCode::TEMPORARY_REDIRECT {
            // A directory without its `/`; ServeDir's Location lacks the prefix.
            return redirect_to_slash(&parts.uri);
        }
        let ok = status.is_success();
        if ok
            && let (Some(inm), Some(tag)) = (&if_none_match, &etag)
            && none_match_hits(inm, tag)
        {
            resp = Response::new(HostBody::Full(None));
            *resp.status_mut() = StatusCode::NOT_MODIFIED;
        }
        let h = resp.headers_mut();
        h.insert(header::SERVER, HeaderValue::from_static(SERVER_SOFTWARE));
        if let Some(tag) = etag {
            h.insert(header::ETAG, tag);
        }
        if ok || status == StatusCode::NOT_MODIFIED {
            if let Some(cc) = &self.cache_control {
                h.insert(header::CACHE_CONTROL, cc.clone());
            }
            if let Some(t) = self.mime_override(&path) {
                h.insert(header::CONTENT_TYPE, t);
            }
        }
        resp
    }

    /// ServeDir's answer for `uri` with the request's method and headers.
    async fn call(
        &self,
        method: &Method,
        headers: HeaderMap,
        uri: Uri,
    ) -> Result<Response<HostBody>, Response<HostBody>> {
        let mut req = Request::new(Empty::<bytes::Bytes>::new());
        *req.method_mut() = method.clone();
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        match self.serve.clone().try_call(req).await {
            Ok(r) => Ok(r.map(HostBody::File)),
            Err(e) => {
                tracing::error!(dir = %self.dir.display(), error = %e, "static file failed");
                Err(error_page(StatusCode::INTERNAL_SERVER_ERROR, false))
            }
        }
    }

    /// A hidden segment or a denied extension anywhere in the path.
    fn hidden(&self, rest: &str) -> bool {
        let o = &self.options;
        if o.hidden_segments.is_empty() && o.denied_extensions.is_empty() {
            return false;
        }
        rest.split('/').any(|seg| {
            let seg = seg.to_ascii_lowercase();
            o.hidden_segments.contains(&seg)
                || seg
                    .rsplit_once('.')
                    .is_some_and(|(_, ext)| o.denied_extensions.iter().any(|d| d == ext))
        })
    }

    /// The first default document that is a file in the directory `path`.
    async fn default_document(&self, path: &str) -> Option<String> {
        let dir = self.dir.join(path.trim_start_matches('/'));
        for doc in &self.options.default_documents {
            if tokio::fs::metadata(dir.join(doc))
                .await
                .is_ok_and(|m| m.is_file())
            {
                return Some(doc.clone());
            }
        }
        None
    }

    /// The site's MIME map's type for `path`, if it has one.
    fn mime_override(&self, path: &str) -> Option<HeaderValue> {
        let (_, ext) = path.rsplit_once('.')?;
        let ext = ext.to_ascii_lowercase();
        let (_, t) = self.options.mime.iter().find(|(e, _)| *e == ext)?;
        HeaderValue::from_str(t).ok()
    }
}

/// IIS's courtesy redirect: a directory URL gets its `/`.
fn redirect_to_slash(uri: &Uri) -> Response<HostBody> {
    let location = match uri.query() {
        Some(q) => format!("{}/?{q}", uri.path()),
        None => format!("{}/", uri.path()),
    };
    let mut resp = Response::new(HostBody::Full(None));
    *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
    let h = resp.headers_mut();
    h.insert(header::SERVER, HeaderValue::from_static(SERVER_SOFTWARE));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    resp
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// A weak ETag from the file's modification time and size (what IIS's is
/// made of): `W/"<mtime hex>-<size hex>"`.
fn etag(h: &HeaderMap) -> Option<HeaderValue> {
    let modified = h.get(header::LAST_MODIFIED)?.to_str().ok()?;
    let secs = httpdate::parse_http_date(modified)
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_secs();
    let size = match h.get(header::CONTENT_RANGE) {
        Some(range) => range.to_str().ok()?.rsplit_once('/')?.1.parse().ok()?,
        None => content_length(h)?,
    };
    HeaderValue::from_str(&format!("W/\"{secs:x}-{size:x}\"")).ok()
}

/// `If-None-Match` against the ETag: `*`, or the weak comparison of any tag.
fn none_match_hits(inm: &HeaderValue, tag: &HeaderValue) -> bool {
    let Ok(list) = inm.to_str() else { return false };
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let ours = opaque(tag.to_str().unwrap_or_default());
    list.trim() == "*" || list.split(',').any(|t| opaque(t) == ours)
}

/// `If-Range`: a date equal to `Last-Modified`, or our ETag (weak tags
/// never match a strong comparison, so only the date form can).
fn if_range_matches(v: &HeaderValue, h: &HeaderMap) -> bool {
    h.get(header::LAST_MODIFIED).is_some_and(|lm| lm == v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_compare_weakly() {
        let tag = HeaderValue::from_static("W/\"5f-10\"");
        assert!(none_match_hits(
            &HeaderValue::from_static("\"x\", W/\"5f-10\""),
            &tag
        ));
        assert!(none_match_hits(&HeaderValue::from_static("*"), &tag));
        assert!(!none_match_hits(
            &HeaderValue::from_static("\"5f-11\""),
            &tag
        ));
        let mut h = HeaderMap::new();
        h.insert(
            header::LAST_MODIFIED,
            HeaderValue::from_static("Thu, 01 Jan 1970 00:01:00 GMT"),
        );
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 0-1/32"),
        );
        assert_eq!(etag(&h).unwrap(), "W/\"3c-20\"");
    }
}
