//! `requestFiltering`'s `requestLimits` on a request head, as IIS applies
//! them: `maxUrl` (404.14), `maxQueryString` (404.15) and `headerLimits`
//! (404.10). `maxAllowedContentLength` is `--max-body` (413).

use http::{HeaderName, Request, StatusCode};

/// IIS's `maxUrl` default.
pub(crate) const DEFAULT_MAX_URL: usize = 4096;
/// IIS's `maxQueryString` default.
pub(crate) const DEFAULT_MAX_QUERY: usize = 2048;

/// The limits of a `web.config`'s `requestLimits`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The longest URL path, in bytes as sent.
    pub(crate) max_url: usize,
    /// The longest query string, in bytes as sent.
    pub(crate) max_query: usize,
    /// The longest value of each named header.
    pub(crate) headers: Vec<(HeaderName, usize)>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_url: DEFAULT_MAX_URL,
            max_query: DEFAULT_MAX_QUERY,
            headers: Vec::new(),
        }
    }
}

impl Limits {
    /// `Err` with IIS's status and why (its substatus named) when a limit
    /// is passed.
    pub(crate) fn check<B>(&self, req: &Request<B>) -> Result<(), (StatusCode, &'static str)> {
        if req.uri().path().len() > self.max_url {
            return Err((StatusCode::NOT_FOUND, "404.14: URL longer than maxUrl"));
        }
        if req.uri().query().map_or(0, str::len) > self.max_query {
            return Err((
                StatusCode::NOT_FOUND,
                "404.15: query string longer than maxQueryString",
            ));
        }
        for (name, limit) in &self.headers {
            if req.headers().get_all(name).iter().any(|v| v.len() > *limit) {
                return Err((
                    StatusCode::NOT_FOUND,
                    "404.10: request header over its headerLimits sizeLimit",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_answer_404_as_iis() {
        let l = Limits {
            max_url: 10,
            max_query: 5,
            headers: vec![(http::header::USER_AGENT, 3)],
        };
        let req = |uri: &str, ua: &str| {
            Request::builder()
                .uri(uri)
                .header("user-agent", ua)
                .body(())
                .unwrap()
        };
        assert!(l.check(&req("/a?b=1", "x")).is_ok());
        assert_eq!(l.check(&req("/abcdefghijk", "x")).unwrap_err().0, 404);
        assert!(
            l.check(&req("/a?b=1234", "x"))
                .unwrap_err()
                .1
                .contains("404.15")
        );
        assert!(
            l.check(&req("/a", "long"))
                .unwrap_err()
                .1
                .contains("404.10")
        );
    }
}
