//! Which protected API a request belongs to: the longest listen-path prefix (at a segment
//! boundary) whose hosts admit the request's host.
//!
//! Matching runs on a normalised path (dot segments removed, slashes merged, percent-encoded
//! unreserved characters and slashes decoded) so that `/orders/../admin`, `//admin` or
//! `/%61dmin` cannot slip past a protected `/admin`: every spelling an upstream might read as a
//! protected path is treated as protected. The request itself is forwarded unchanged.

use std::borrow::Cow;
use std::collections::HashMap;

/// A lookup table from listen paths (and hosts) to API indices, built once per snapshot.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    /// Normalised listen path without its trailing slash (`""` for `/`) → routes there, the
    /// host-specific ones first.
    by_prefix: HashMap<Box<str>, Vec<Route>>,
}

#[derive(Clone, Debug)]
struct Route {
    api: usize,
    /// Lower-case host names without port; empty means any host.
    hosts: Vec<Box<str>>,
}

/// Why two routes cannot live in one table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("listen path `{listen_path}` is already used by API #{other} for the same hosts")]
pub struct RouteConflict {
    /// The contested listen path.
    pub listen_path: String,
    /// The index of the API that holds it.
    pub other: usize,
}

// === impl RouteTable ===

impl RouteTable {
    /// Adds API `api` at `listen_path` (which starts with `/`) for `hosts` (empty: any host).
    pub fn insert(
        &mut self,
        api: usize,
        listen_path: &str,
        hosts: &[String],
    ) -> Result<(), RouteConflict> {
        let normalized = normalize_path(listen_path);
        let key = prefix_key(&normalized);
        let hosts: Vec<Box<str>> = hosts.iter().map(|host| host_key(host).into()).collect();
        let routes = self.by_prefix.entry(key.into()).or_default();
        for route in routes.iter() {
            let overlaps = (route.hosts.is_empty() && hosts.is_empty())
                || route.hosts.iter().any(|host| hosts.contains(host));
            if overlaps {
                return Err(RouteConflict {
                    listen_path: listen_path.to_owned(),
                    other: route.api,
                });
            }
        }
        routes.push(Route { api, hosts });
        // Host-specific routes are tried before the catch-all at the same prefix.
        routes.sort_by_key(|route| route.hosts.is_empty());
        Ok(())
    }

    /// The API for a request: longest matching prefix first; at one prefix, an API naming the
    /// request's host wins over one that accepts any host.
    pub fn find<'p>(
        &self,
        path: impl Into<NormalizedPath<'p>>,
        host: Option<&str>,
    ) -> Option<usize> {
        if self.by_prefix.is_empty() {
            return None;
        }
        let path = path.into();
        let host = host.map(host_key);
        let mut prefix: &str = prefix_key(path.as_str());
        loop {
            if let Some(routes) = self.by_prefix.get(prefix) {
                let hit = routes.iter().find(|route| {
                    route.hosts.is_empty()
                        || host
                            .as_deref()
                            .is_some_and(|host| route.hosts.iter().any(|h| **h == *host))
                });
                if let Some(route) = hit {
                    return Some(route.api);
                }
            }
            if prefix.is_empty() {
                return None;
            }
            prefix = &prefix[..prefix.rfind('/').unwrap_or(0)];
        }
    }
}

/// A request target normalised for matching (see the module docs). A request's path is
/// normalised once and the result handed to routing and to the policies' path checks; a
/// plain `&str` converts by normalising.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormalizedPath<'a>(Cow<'a, str>);

// === impl NormalizedPath ===

impl<'a> NormalizedPath<'a> {
    /// Normalises `target` (path and query, as received).
    pub fn new(target: &'a str) -> Self {
        NormalizedPath(normalize_path(target))
    }

    /// The normalised path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'a> From<&'a str> for NormalizedPath<'a> {
    fn from(target: &'a str) -> Self {
        NormalizedPath::new(target)
    }
}

impl<'a> From<&'a NormalizedPath<'_>> for NormalizedPath<'a> {
    fn from(path: &'a NormalizedPath<'_>) -> Self {
        NormalizedPath(Cow::Borrowed(path.as_str()))
    }
}

/// `/orders/` and `/orders` are the same prefix; `/` is the empty prefix.
fn prefix_key(path: &str) -> &str {
    path.trim_end_matches('/')
}

/// Host names compare case-insensitively and without the port.
fn host_key(host: &str) -> Cow<'_, str> {
    let without_port = match host.rsplit_once(':') {
        // `[::1]:8080` and `example.com:8080`, but not a bare IPv6 address.
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') => {
            name
        }
        _ => host,
    };
    if without_port.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(without_port.to_ascii_lowercase())
    } else {
        Cow::Borrowed(without_port)
    }
}

/// The path part of a request target, normalised for matching (see the module docs).
pub fn normalize_path(target: &str) -> Cow<'_, str> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let needs_work = path.contains(['%', '\\'])
        || path.contains("//")
        || path.contains("/.")
        || !path.starts_with('/');
    if !needs_work {
        return Cow::Borrowed(path);
    }
    let decoded = percent_decode_for_matching(path);
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split(['/', '\\']) {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut normalized = String::with_capacity(decoded.len() + 1);
    for segment in &segments {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if normalized.is_empty() || (decoded.ends_with('/') && !segments.is_empty()) {
        normalized.push('/');
    }
    Cow::Owned(normalized)
}

/// Decodes `%XX` escapes of unreserved characters and of `/` and `\`; other escapes stay as
/// they are (upper-cased), since decoding them could change the meaning of the path.
fn percent_decode_for_matching(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && let (Some(high), Some(low)) = (
                bytes.get(index + 1).and_then(|b| (*b as char).to_digit(16)),
                bytes.get(index + 2).and_then(|b| (*b as char).to_digit(16)),
            )
        {
            let byte = (high * 16 + low) as u8;
            if byte.is_ascii_alphanumeric() || b"-._~/\\".contains(&byte) {
                out.push(byte as char);
            } else {
                out.push('%');
                out.push_str(&path[index + 1..index + 3].to_ascii_uppercase());
            }
            index += 3;
            continue;
        }
        let ch_len = path[index..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&path[index..index + ch_len]);
        index += ch_len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &[(&str, &[&str])]) -> RouteTable {
        let mut table = RouteTable::default();
        for (api, (path, hosts)) in routes.iter().enumerate() {
            let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
            table.insert(api, path, &hosts).unwrap();
        }
        table
    }

    #[test]
    fn matches_prefix_only_at_segment_boundaries() {
        let table = table(&[("/orders", &[])]);
        assert_eq!(table.find("/orders", None), Some(0));
        assert_eq!(table.find("/orders/", None), Some(0));
        assert_eq!(table.find("/orders/42?x=1", None), Some(0));
        assert_eq!(table.find("/orders?x=1", None), Some(0));
        assert_eq!(table.find("/ordersx", None), None);
        assert_eq!(table.find("/order", None), None);
        assert_eq!(table.find("/", None), None);
    }

    #[test]
    fn longest_prefix_wins() {
        let table = table(&[("/", &[]), ("/api", &[]), ("/api/v2/", &[])]);
        assert_eq!(table.find("/api/v2/items", None), Some(2));
        assert_eq!(table.find("/api/v1/items", None), Some(1));
        assert_eq!(table.find("/other", None), Some(0));
        assert_eq!(table.find("/", None), Some(0));
    }

    #[test]
    fn host_specific_route_wins_at_the_same_prefix() {
        let table = table(&[("/api", &[]), ("/api", &["Shop.Example.com"])]);
        assert_eq!(table.find("/api/x", Some("shop.example.com:8443")), Some(1));
        assert_eq!(table.find("/api/x", Some("SHOP.example.com")), Some(1));
        assert_eq!(table.find("/api/x", Some("other.example.com")), Some(0));
        assert_eq!(table.find("/api/x", None), Some(0));
    }

    #[test]
    fn host_restricted_route_does_not_match_other_hosts() {
        let table = table(&[("/api", &["a.example.com"])]);
        assert_eq!(table.find("/api", Some("b.example.com")), None);
        assert_eq!(table.find("/api", None), None);
    }

    #[test]
    fn rejects_two_routes_for_the_same_prefix_and_host() {
        let mut table = table(&[("/api", &[]), ("/api", &["a.example.com"])]);
        assert!(table.insert(2, "/api/", &[]).is_err());
        assert!(
            table
                .insert(2, "/api", &["A.example.com".to_owned()])
                .is_err()
        );
        assert!(
            table
                .insert(2, "/api", &["b.example.com".to_owned()])
                .is_ok()
        );
    }

    #[test]
    fn path_tricks_cannot_escape_a_protected_prefix() {
        let table = table(&[("/admin", &[])]);
        for path in [
            "/public/../admin",
            "//admin",
            "/./admin/x",
            "/%61dmin",
            "/%2e%2e/admin",
            "/x/%2E%2E/admin",
            "/public%2F..%2Fadmin",
            "\\admin",
            "/public/..\\admin",
        ] {
            assert_eq!(table.find(path, None), Some(0), "{path}");
        }
    }

    #[test]
    fn normalises_only_what_needs_it() {
        assert!(matches!(
            normalize_path("/a/b?c=/../d"),
            Cow::Borrowed("/a/b")
        ));
        assert_eq!(normalize_path("/a/./b/../c/"), "/a/c/");
        assert_eq!(normalize_path("/../../"), "/");
        assert_eq!(normalize_path(""), "/");
        assert_eq!(normalize_path("/a%20b/%7euser"), "/a%20b/~user");
        assert_eq!(normalize_path("/caf%c3%a9"), "/caf%C3%A9");
        assert_eq!(normalize_path("/100%"), "/100%");
        assert_eq!(normalize_path("/é/../x"), "/x");
    }

    #[test]
    fn host_keys_drop_ports_but_keep_ipv6_addresses() {
        assert_eq!(host_key("Example.com:8080"), "example.com");
        assert_eq!(host_key("[::1]:8080"), "[::1]");
        assert_eq!(host_key("[::1]"), "[::1]");
        assert_eq!(host_key("example.com"), "example.com");
    }
}
