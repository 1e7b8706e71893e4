//! Which protected API a request belongs to: the longest listen-path prefix (at a segment
//! boundary) whose hosts admit the request's host. At one prefix, an API naming the request's
//! host exactly wins over one naming it by a wildcard (`*.example.com`, the longest suffix
//! first), which wins over one that accepts any host, as Envoy chooses among virtual hosts.
//! Host names compare case-insensitively, without port and without a trailing dot.
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
    /// Empty means any host.
    hosts: Vec<HostPattern>,
}

/// A host an API is served on, in canonical form (see [`crate::rules::host`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Exactly this host: lower-case, without port.
    Exact(String),
    /// Any host ending with this suffix, which starts with a dot (`*.example.com` is
    /// `.example.com`): at least one label stands before it.
    Suffix(String),
}

// === impl HostPattern ===

impl HostPattern {
    /// How well the pattern matches a canonical host: `None` when it does not; an exact match
    /// outranks every wildcard, and a longer wildcard suffix outranks a shorter one.
    fn rank(&self, host: &str) -> Option<usize> {
        match self {
            HostPattern::Exact(name) => (name == host).then_some(usize::MAX),
            HostPattern::Suffix(suffix) => (host.len() > suffix.len()
                && host.ends_with(suffix.as_str()))
            .then_some(suffix.len()),
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(name) => f.write_str(name),
            HostPattern::Suffix(suffix) => write!(f, "*{suffix}"),
        }
    }
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
    /// Two APIs conflict when their paths have the same normal form and their host sets
    /// overlap: both accept any host, or both name one same host or wildcard.
    pub fn insert(
        &mut self,
        api: usize,
        listen_path: &str,
        hosts: &[HostPattern],
    ) -> Result<(), RouteConflict> {
        let normalized = normalize_path(listen_path);
        let key = prefix_key(&normalized);
        let hosts = hosts.to_vec();
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
        Ok(())
    }

    /// The API for a request: longest matching prefix first; at one prefix, an API naming the
    /// request's host exactly, then by the longest wildcard, then one that accepts any host.
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
                let best = routes
                    .iter()
                    .filter_map(|route| {
                        if route.hosts.is_empty() {
                            return Some((0, route.api));
                        }
                        let host = host.as_deref()?;
                        let rank = route.hosts.iter().filter_map(|h| h.rank(host)).max()?;
                        Some((rank.saturating_add(1), route.api))
                    })
                    .max_by_key(|(rank, _)| *rank);
                if let Some((_, api)) = best {
                    return Some(api);
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

/// Host names compare case-insensitively, without the port and without a trailing dot.
fn host_key(host: &str) -> Cow<'_, str> {
    let without_port = match host.rsplit_once(':') {
        // `[::1]:8080` and `example.com:8080`, but not a bare IPv6 address.
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') => {
            name
        }
        _ => host,
    };
    let without_port = without_port.strip_suffix('.').unwrap_or(without_port);
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

    fn hosts(hosts: &[&str]) -> Vec<HostPattern> {
        hosts
            .iter()
            .map(|host| crate::rules::host(host).unwrap())
            .collect()
    }

    fn table(routes: &[(&str, &[&str])]) -> RouteTable {
        let mut table = RouteTable::default();
        for (api, (path, names)) in routes.iter().enumerate() {
            table.insert(api, path, &hosts(names)).unwrap();
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
        assert!(table.insert(2, "/api", &hosts(&["A.example.com"])).is_err());
        assert!(table.insert(2, "/api", &hosts(&["b.example.com"])).is_ok());
        assert!(table.insert(3, "/api", &hosts(&["*.example.com"])).is_ok());
        assert!(
            table
                .insert(4, "/api/", &hosts(&["*.Example.com"]))
                .is_err()
        );
    }

    #[test]
    fn wildcards_match_any_subdomain_depth_but_not_the_bare_domain() {
        let table = table(&[("/secure", &["*.example.com"])]);
        assert_eq!(table.find("/secure/x", Some("a.example.com")), Some(0));
        assert_eq!(
            table.find("/secure/x", Some("A.B.Example.COM:8443")),
            Some(0)
        );
        assert_eq!(table.find("/secure/x", Some("a.example.com.")), Some(0));
        assert_eq!(table.find("/secure/x", Some("example.com")), None);
        assert_eq!(table.find("/secure/x", Some("aexample.com")), None);
        assert_eq!(table.find("/secure/x", None), None);
    }

    #[test]
    fn exact_hosts_win_over_wildcards_and_longer_wildcards_over_shorter() {
        let table = table(&[
            ("/api", &[]),
            ("/api", &["*.example.com"]),
            ("/api", &["*.eu.example.com"]),
            ("/api", &["shop.eu.example.com"]),
        ]);
        assert_eq!(table.find("/api", Some("shop.eu.example.com")), Some(3));
        assert_eq!(table.find("/api", Some("x.eu.example.com")), Some(2));
        assert_eq!(table.find("/api", Some("x.example.com")), Some(1));
        assert_eq!(table.find("/api", Some("other.org")), Some(0));
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
        assert_eq!(host_key("Example.com.:443"), "example.com");
    }
}
