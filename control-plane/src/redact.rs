//! What of a URL may be written to a log line.
//!
//! A query string can carry credentials (`?key=…`, `?access_token=…`, `?client_secret=…`) and
//! a URL's userinfo a password; neither is ever logged. The redacted form keeps what an operator
//! needs to find the request: the path and the names of the query parameters, each value
//! replaced by [`REDACTED`] (RFC 3986 §3.4 query, §3.2.1 userinfo).

use std::fmt::Write as _;

use url::Url;

/// What stands in a log line for a query parameter's value or for userinfo.
pub const REDACTED: &str = "REDACTED";

/// `path` followed by `query` with every value replaced by [`REDACTED`]: `/a?key=1&x` logs as
/// `/a?key=REDACTED&x=REDACTED`. Parameter names are kept as sent (still percent-encoded, so a
/// name cannot inject a line break); empty parameters are left out, and without a query the
/// path stands alone.
pub fn path_and_query(path: &str, query: Option<&str>) -> String {
    let mut out = String::from(path);
    let Some(query) = query else {
        return out;
    };
    let pairs = query.split('&').filter(|pair| !pair.is_empty());
    for (index, pair) in pairs.enumerate() {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        let separator = if index == 0 { '?' } else { '&' };
        // Writing to a String cannot fail.
        let _ = write!(out, "{separator}{name}={REDACTED}");
    }
    out
}

/// `url` for a log line: scheme, host, port and path as they are, userinfo replaced by
/// [`REDACTED`], the query redacted as in [`path_and_query`], no fragment.
pub fn url(url: &Url) -> String {
    let mut origin = format!("{}://", url.scheme());
    if !url.username().is_empty() || url.password().is_some() {
        origin.push_str(REDACTED);
        origin.push('@');
    }
    if let Some(host) = url.host_str() {
        origin.push_str(host);
    }
    if let Some(port) = url.port() {
        let _ = write!(origin, ":{port}");
    }
    origin + &path_and_query(url.path(), url.query())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_never_reach_the_log() {
        assert_eq!(path_and_query("/a", None), "/a");
        assert_eq!(
            path_and_query("/admin/v1/apis", Some("key=s3cr3t&x&access_token=t0k=en")),
            "/admin/v1/apis?key=REDACTED&x=REDACTED&access_token=REDACTED"
        );
        assert_eq!(path_and_query("/a", Some("")), "/a");
        assert_eq!(path_and_query("/a", Some("&b=1&&")), "/a?b=REDACTED");
    }

    #[test]
    fn userinfo_and_query_leave_a_url() {
        let parsed = Url::parse("https://user:pa55@idp.example:8443/reg?token=abc#frag").unwrap();
        assert_eq!(
            url(&parsed),
            "https://REDACTED@idp.example:8443/reg?token=REDACTED"
        );
        let plain = Url::parse("http://127.0.0.1:9000/.well-known/jwks.json").unwrap();
        assert_eq!(url(&plain), "http://127.0.0.1:9000/.well-known/jwks.json");
    }
}
