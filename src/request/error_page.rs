//! The responses the host writes itself: error pages and other short
//! answers.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::hyper_body::HostBody;
use crate::vars::SERVER_SOFTWARE;

/// A response the host writes itself (errors, redirects).
pub(crate) fn simple_response(
    status: StatusCode,
    extra: &[(header::HeaderName, &str)],
    body: &str,
) -> Response<HostBody> {
    let mut resp = Response::new(HostBody::Full(Some(Bytes::copy_from_slice(
        body.as_bytes(),
    ))));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::SERVER, HeaderValue::from_static(SERVER_SOFTWARE));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    if !body.is_empty() {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    for (n, v) in extra {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(n.clone(), v);
        }
    }
    resp
}

/// An HTML error page with a `Connection: close` when asked.
pub(crate) fn error_page(status: StatusCode, close: bool) -> Response<HostBody> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let title = format!("{} {reason}", status.as_u16());
    let body = error_html(&title, &title);
    let close_hdr = [(header::CONNECTION, "close")];
    simple_response(status, if close { &close_hdr } else { &[] }, &body)
}

/// The HTML of the host's error pages.
pub(crate) fn error_html(title: &str, heading: &str) -> String {
    format!(
        "<!DOCTYPE html><html><head><title>{title}</title></head><body><h1>{heading}</h1></body></html>\n"
    )
}
