//! Which protected API a request belongs to: the longest listen-path prefix (at a segment
//! boundary) whose hosts admit the request's host. At one prefix, an API naming the request's
//! host exactly wins over one naming it by a wildcard (`*.example.com`, the longest suffix
//! first), which wins over one that accepts any host, as Envoy chooses among virtual hosts.
//! Host names compare case-insensitively, without port and without a trailing dot.
//!
//! Matching runs on a path key that every common upstream would read the same way, so that no
//! spelling of a protected path slips past it (protecting too much is harmless, too little is
//! a bypass). [`NormalizedPath::new`] builds the key:
//!
//! 1. the path alone (query and fragment dropped), every `%XX` escape decoded (repeatedly, for
//!    double-encoded spellings; `%2F`, `%5C` and `%3B` included), so `/%4Frders` is `/Orders`;
//! 2. NFKC (Unicode compatibility normalisation), so full-width `／ｏｒｄｅｒｓ` is `/orders`;
//! 3. segments split at `/` and `\`, each without its `;` parameters (RFC 3986 §3.3, as servlet
//!    containers and Spring read them), dot segments resolved (RFC 3986 §5.2.4), empty segments
//!    dropped (`//` merged), trailing dots and spaces dropped (as Windows servers read them);
//! 4. escapes put back for what is not printable ASCII (and for `%`, `?`, `#`), so that keys are
//!    ASCII like the listen paths they are compared with.
//!
//! The key has an exact form and a case-folded one (per character upper- then lower-case after
//! NFKC, so `K` (Kelvin), `ſ`, `ı` and `İ` meet their ASCII letters): an API matches
//! case-insensitively unless it opts into case-sensitive paths, since Express, ASP.NET and some
//! Spring setups route case-insensitively. Route tables for APIs also try each segment without
//! a format suffix (`/orders.json` and `/orders.json.bak` belong to `/orders`, as Rails and
//! older Spring serve them); grants ([`crate::policy`]) do not, so a suffix never widens access.
//! A path holding a NUL byte (`%00`), which C-based upstreams cut short, is refused outright.
//! The request itself is forwarded unchanged.
//!
//! That key widens what a path may mean, which is right for choosing what to protect and wrong
//! for exempting: a grant or a public prefix that matched it alone would reach further than
//! written (`/orders/private/..%20/public` is `/orders/public` once trailing spaces go, and a
//! grant of `/orders/public` would let it through to an upstream that reads `..%20` as a name).
//! So a path also has a strict reading ([`NormalizedPath::strict`]), the one an upstream that
//! matches the path as received reads (Express, Django and Rack do, unless Envoy normalised it
//! first): letter case as written, each escape decoded once except those of a separator or a
//! parameter (`/`, `\`, `;`) and controls, which stay part of their segment's name, and nothing
//! resolved, trimmed or merged (`..` is a name). A request belongs to an API when either reading
//! falls under its listen path (when they fall under two different APIs, it is refused as
//! `invalid_path`: which API's rules hold would depend on the upstream); an exemption holds
//! only when both do.

use std::borrow::Cow;
use std::collections::HashMap;

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use unicode_normalization::UnicodeNormalization;

/// A lookup table from listen paths (and hosts) to API indices, built once per snapshot.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    /// Case-folded path key without its trailing slash (`""` for `/`) → routes there, the
    /// host-specific ones first.
    by_prefix: HashMap<Box<str>, Vec<Route>>,
    /// Whether a segment also matches without its format suffix (`.json`): on for protected
    /// APIs, off for prefixes that exempt requests from protection.
    format_suffixes: bool,
}

#[derive(Clone, Debug)]
struct Route {
    api: usize,
    /// Empty means any host.
    hosts: Vec<HostPattern>,
    /// For a case-sensitive route, its exact key; `None` matches any letter case.
    exact: Option<Box<str>>,
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
    /// A table for protected APIs: a segment also matches without its format suffix, so
    /// `/orders.json` belongs to `/orders`. ([`RouteTable::default`] is a table of exempt
    /// prefixes, which match only as written.)
    pub fn for_apis() -> Self {
        RouteTable {
            by_prefix: HashMap::new(),
            format_suffixes: true,
        }
    }

    /// Adds API `api` at `listen_path` (which starts with `/`) for `hosts` (empty: any host),
    /// matching letter case exactly when `case_sensitive`. Two APIs conflict when their paths
    /// have the same key (case-folded, unless both are case-sensitive) and their host sets
    /// overlap: both accept any host, or both name one same host or wildcard.
    pub fn insert(
        &mut self,
        api: usize,
        listen_path: &str,
        hosts: &[HostPattern],
        case_sensitive: bool,
    ) -> Result<(), RouteConflict> {
        let path = NormalizedPath::new(listen_path);
        let exact = prefix_key(path.exact());
        let hosts = hosts.to_vec();
        let routes = self
            .by_prefix
            .entry(prefix_key(path.folded()).into())
            .or_default();
        for route in routes.iter() {
            let same_path = !case_sensitive || route.exact.as_deref().is_none_or(|x| x == exact);
            let overlaps = (route.hosts.is_empty() && hosts.is_empty())
                || route.hosts.iter().any(|host| hosts.contains(host));
            if same_path && overlaps {
                return Err(RouteConflict {
                    listen_path: listen_path.to_owned(),
                    other: route.api,
                });
            }
        }
        routes.push(Route {
            api,
            hosts,
            exact: case_sensitive.then(|| exact.into()),
        });
        Ok(())
    }

    /// Whether the table exempts `path` (public prefixes, the prefixes served before the first
    /// snapshot): both its readings, the normalised and the strict one, fall under its prefixes,
    /// so that no spelling reaches an upstream as a path the table does not name.
    pub fn exempts(&self, path: &NormalizedPath<'_>) -> bool {
        self.find(path, None).is_some()
            && path
                .strict_reading()
                .is_none_or(|strict| self.find(strict, None).is_some())
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
        let exact = prefix_key(path.exact());
        let folded = prefix_key(path.folded());
        let exact_cuts = cut_points(exact, self.format_suffixes);
        let folded_cuts = cut_points(folded, self.format_suffixes);
        for (exact_end, folded_end) in exact_cuts.zip(folded_cuts) {
            let Some(routes) = self.by_prefix.get(&folded[..folded_end]) else {
                continue;
            };
            let best = routes
                .iter()
                .filter(|route| {
                    route
                        .exact
                        .as_deref()
                        .is_none_or(|key| key == &exact[..exact_end])
                })
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
        None
    }
}

/// Where a key may be cut into a candidate prefix, longest first: its end, before each `/`
/// (the root is the cut at 0) and, with `format_suffixes`, before each `.` that does not start
/// its segment. Folding never creates or removes a `/` or `.` (the normalised key is NFKC
/// already, and the strict one is folded by case alone, [`fold_case`]), so the exact and the
/// folded key of one reading have corresponding cuts.
fn cut_points(key: &str, format_suffixes: bool) -> impl Iterator<Item = usize> + '_ {
    let bytes = key.as_bytes();
    std::iter::once(key.len()).chain((0..bytes.len()).rev().filter(move |&index| {
        match bytes[index] {
            b'/' => true,
            b'.' => format_suffixes && index > 0 && bytes[index - 1] != b'/',
            _ => false,
        }
    }))
}

/// A request path as matching sees it (see the module docs): its exact key and its
/// case-folded key. A request's path is normalised once and the result handed to routing and
/// to the policies' path checks; a plain `&str` converts by normalising.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormalizedPath<'a> {
    exact: Cow<'a, str>,
    /// `None` when folding changes nothing.
    folded: Option<String>,
    /// The strict reading and its case-folded form (`None` when folding changes nothing);
    /// `None` for a plain path, whose strict reading is the path as received.
    strict: Option<(String, Option<String>)>,
    has_nul: bool,
}

// === impl NormalizedPath ===

impl<'a> NormalizedPath<'a> {
    /// Normalises `target` (path and query, as received).
    pub fn new(target: &'a str) -> Self {
        let path = target.split(['?', '#']).next().unwrap_or("");
        if is_plain(path) {
            let folded = path
                .bytes()
                .any(|b| b.is_ascii_uppercase())
                .then(|| path.to_ascii_lowercase());
            return NormalizedPath {
                exact: Cow::Borrowed(path),
                folded,
                strict: None,
                has_nul: false,
            };
        }
        let strict = strict_key(path);
        let text = decode_all(path);
        let has_nul = text.contains('\0');
        let trailing_slash = text.ends_with(['/', '\\']);
        let mut segments: Vec<&str> = Vec::new();
        for raw in text.split(['/', '\\']) {
            let segment = raw.split(';').next().unwrap_or("").trim_end_matches(' ');
            match segment {
                "" | "." => {}
                ".." => {
                    segments.pop();
                }
                other => {
                    let trimmed = other.trim_end_matches(['.', ' ']);
                    if !trimmed.is_empty() {
                        segments.push(trimmed);
                    }
                }
            }
        }
        let exact = join(segments.iter().copied(), trailing_slash);
        let folded = join(segments.iter().map(|s| fold(s)), trailing_slash);
        NormalizedPath {
            folded: (folded != exact).then_some(folded),
            exact: Cow::Owned(exact),
            strict: Some(strict),
            has_nul,
        }
    }

    /// The strict reading (see the module docs), in key form: what an upstream that matches the
    /// path as received, decoded once, serves. Exemptions (grants' path prefixes, public
    /// prefixes) must hold for it as well as for [`NormalizedPath::exact`].
    pub fn strict(&self) -> &str {
        match &self.strict {
            Some((strict, _)) => strict,
            None => &self.exact,
        }
    }

    /// The strict reading as a path to match routes with (its own exact and folded key), or
    /// `None` for a plain path, whose strict reading is its normalised one: matching it again
    /// would repeat the same lookup on every ordinary request.
    pub fn strict_reading(&self) -> Option<NormalizedPath<'_>> {
        let (strict, folded) = self.strict.as_ref()?;
        Some(NormalizedPath {
            exact: Cow::Borrowed(strict),
            folded: folded.clone(),
            strict: None,
            has_nul: self.has_nul,
        })
    }

    /// The key with letter case as written (for case-sensitive APIs).
    pub fn exact(&self) -> &str {
        &self.exact
    }

    /// The case-folded key (for case-insensitive APIs, the default).
    pub fn folded(&self) -> &str {
        self.folded.as_deref().unwrap_or(&self.exact)
    }

    /// The key an API compares: folded unless the API is case-sensitive.
    pub fn key(&self, case_sensitive: bool) -> &str {
        if case_sensitive {
            self.exact()
        } else {
            self.folded()
        }
    }

    /// Whether the path holds a NUL byte (`%00`), which upstreams written in C cut short: such
    /// a request is refused rather than matched.
    pub fn has_nul(&self) -> bool {
        self.has_nul
    }
}

impl<'a> From<&'a str> for NormalizedPath<'a> {
    fn from(target: &'a str) -> Self {
        NormalizedPath::new(target)
    }
}

impl<'a> From<&'a NormalizedPath<'_>> for NormalizedPath<'a> {
    fn from(path: &'a NormalizedPath<'_>) -> Self {
        NormalizedPath {
            exact: Cow::Borrowed(path.exact()),
            folded: path.folded.clone(),
            strict: path.strict.clone(),
            has_nul: path.has_nul,
        }
    }
}

/// Whether a path is already its own key: printable ASCII starting with `/`, without escapes,
/// backslashes, `;`, empty or dot segments, or segments ending in a dot.
///
/// One pass over the bytes, looking at each byte and the one before it (substring searches
/// cost more than the whole decision on a short path inside the VM).
fn is_plain(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') || bytes.last() == Some(&b'.') {
        return false;
    }
    let mut previous = 0u8;
    for &b in bytes {
        let bad_pair = matches!((previous, b), (b'/', b'/' | b'.') | (b'.', b'/'));
        if !b.is_ascii_graphic() || matches!(b, b'%' | b'\\' | b';') || bad_pair {
            return false;
        }
        previous = b;
    }
    true
}

/// Decodes every `%XX` escape and applies NFKC, again while that reveals new escapes (at most
/// four rounds, for double-encoded spellings such as `%252F`, and for an escape that NFKC
/// completes, such as `%B` followed by a full-width `ｅ`); bytes that are not UTF-8 become
/// U+FFFD. Decoding and NFKC in one loop keep the key a fixed point: normalising a key again
/// gives the same key (found by the `path_and_routing` fuzz target).
fn decode_all(path: &str) -> String {
    let mut text = path.to_owned();
    for _ in 0..4 {
        let decoded = String::from(percent_decode_str(&text).decode_utf8_lossy());
        let normalised = if decoded.is_ascii() {
            decoded
        } else {
            decoded.nfkc().collect()
        };
        if normalised == text {
            break;
        }
        text = normalised;
    }
    text
}

/// The strict reading of a path that is not plain: its key, and its case-folded key when that
/// differs. Escapes are decoded once, except those of `/`, `\`, `;` and controls, which stay
/// as they were (an escaped separator or parameter is part of its segment's name); segments
/// are split at `/` only; nothing is resolved, trimmed, merged or folded in the key itself.
fn strict_key(path: &str) -> (String, Option<String>) {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while let Some(&byte) = bytes.get(index) {
        let escaped = (byte == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok())
            .filter(|value| !value.is_ascii_control() && !matches!(value, b'/' | b'\\' | b';'));
        match escaped {
            Some(value) => {
                decoded.push(value);
                index += 3;
            }
            None => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    let text = String::from_utf8_lossy(&decoded);
    let trailing_slash = text.len() > 1 && text.ends_with('/');
    let body = text
        .strip_suffix('/')
        .filter(|_| trailing_slash)
        .unwrap_or(&text);
    let segments: Vec<&str> = body.split('/').skip(1).collect();
    let key = join(segments.iter().copied(), trailing_slash);
    let folded = join(segments.iter().map(|s| fold_case(s)), trailing_slash);
    let folded = (folded != key).then_some(folded);
    (key, folded)
}

/// Joins normalised segments into a key: `/a/b` (`/` when there are none), with a trailing
/// slash when the path had one, escaping what is not printable ASCII.
fn join<S: AsRef<str>>(segments: impl Iterator<Item = S>, trailing_slash: bool) -> String {
    let mut key = String::new();
    for segment in segments {
        key.push('/');
        key.extend(utf8_percent_encode(segment.as_ref(), KEY_ESCAPES));
    }
    if key.is_empty() || trailing_slash {
        key.push('/');
    }
    key
}

/// What a key escapes besides non-ASCII: controls, space, and the characters that would make
/// it read as something else (`%`, `?`, `#`).
const KEY_ESCAPES: &AsciiSet = &CONTROLS.add(b' ').add(b'%').add(b'?').add(b'#');

/// Case folding per character ([`fold_case`]), then NFKC, for the normalised key.
fn fold(segment: &str) -> String {
    if segment.is_ascii() {
        return segment.to_ascii_lowercase();
    }
    fold_case(segment).nfkc().collect()
}

/// Case folding per character alone: upper- then lower-case (so `ı`, `ſ` and `K` meet `i`, `s`
/// and `k`); `İ` (whose lower case is `i` with a combining dot above) folds to `i`, as Java's
/// `equalsIgnoreCase` and .NET's invariant culture read it. No case mapping yields `/` or `.`,
/// so the strict reading, folded so, keeps its cut points (NFKC would not: `／` is `/`).
fn fold_case(segment: &str) -> String {
    if segment.is_ascii() {
        return segment.to_ascii_lowercase();
    }
    let lower: String = segment
        .chars()
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .collect();
    lower.replace("i\u{307}", "i")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_strict_reading_decodes_once_and_resolves_nothing() {
        for (target, strict) in [
            ("/orders/1", "/orders/1"),
            ("/Orders/1?x=1", "/Orders/1"),
            ("/orders/%70ublic/", "/orders/public/"),
            ("/orders/x/%2e%2E/public", "/orders/x/../public"),
            ("/orders/..", "/orders/.."),
            ("/orders/..%20/x", "/orders/..%20/x"),
            ("/orders/..;/x", "/orders/..;/x"),
            ("/orders/a%2F..%2F..", "/orders/a%252F..%252F.."),
            ("/orders/%252e%252e/x", "/orders/%252e%252e/x"),
            ("/orders/a%5C..", "/orders/a%255C.."),
            ("/orders/caf%C3%A9", "/orders/caf%C3%A9"),
            ("/100%25/x%3Fy%23z/", "/100%25/x%3Fy%23z/"),
            ("/orders/public.", "/orders/public."),
            ("/orders//x", "/orders//x"),
            ("/a%00b", "/a%2500b"),
        ] {
            assert_eq!(NormalizedPath::new(target).strict(), strict, "{target}");
        }
        // Its folded form keeps escapes as the listen paths' keys write them.
        let path = NormalizedPath::new("/CAF%C3%89/x;y");
        let strict = path.strict_reading().unwrap();
        assert_eq!(strict.exact(), "/CAF%C3%89/x;y");
        assert_eq!(strict.folded(), "/caf%C3%A9/x;y");
        assert!(NormalizedPath::new("/Orders/1").strict_reading().is_none());
    }

    #[test]
    fn a_key_normalises_to_itself_even_when_nfkc_completes_an_escape() {
        // Found by the `path_and_routing` fuzz target: `%B` then a full-width `ｅ` (from
        // `%EF%BD%85`) read `%Be` only after NFKC, which once left the key `…%25Be…` and its
        // own normalisation `…%EF%BF%BD…`.
        for target in [
            "/92%DF%BD%84%EF%BD%8/%EF%CD%8F%EB%BD%92%DFD%84%B%EF%BD%85orders",
            "/a%B%EF%BD%85",
            "/%25%EF%BC%94%EF%BC%91",
        ] {
            let path = NormalizedPath::new(target);
            let again = NormalizedPath::new(path.exact());
            assert_eq!(again.exact(), path.exact(), "{target}");
            assert_eq!(again.folded(), path.folded(), "{target}");
        }
    }

    fn hosts(hosts: &[&str]) -> Vec<HostPattern> {
        hosts
            .iter()
            .map(|host| crate::rules::host(host).unwrap())
            .collect()
    }

    fn table(routes: &[(&str, &[&str])]) -> RouteTable {
        let mut table = RouteTable::for_apis();
        for (api, (path, names)) in routes.iter().enumerate() {
            table.insert(api, path, &hosts(names), false).unwrap();
        }
        table
    }

    fn key(path: &str) -> String {
        NormalizedPath::new(path).exact().to_owned()
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
        assert!(table.insert(2, "/api/", &[], false).is_err());
        assert!(
            table
                .insert(2, "/api", &hosts(&["A.example.com"]), false)
                .is_err()
        );
        assert!(
            table
                .insert(2, "/api", &hosts(&["b.example.com"]), false)
                .is_ok()
        );
        assert!(
            table
                .insert(3, "/api", &hosts(&["*.example.com"]), false)
                .is_ok()
        );
        assert!(
            table
                .insert(4, "/api/", &hosts(&["*.Example.com"]), false)
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
        let plain = NormalizedPath::new("/a/b?c=/../d");
        assert!(matches!(plain.exact, Cow::Borrowed("/a/b")));
        assert_eq!(plain.folded(), "/a/b");
        assert_eq!(key("/a/./b/../c/"), "/a/c/");
        assert_eq!(key("/../../"), "/");
        assert_eq!(key(""), "/");
        assert_eq!(key("/a%20b/%7euser"), "/a%20b/~user");
        assert_eq!(key("/caf%c3%a9"), "/caf%C3%A9");
        assert_eq!(key("/100%"), "/100%25");
        assert_eq!(key("/é/../x"), "/x");
        assert_eq!(key("/a%3Fb"), "/a%3Fb");
    }

    /// Every spelling of issue 12 (and its "others to check"): each reaches the protected
    /// `/orders` API, so none can pass without a token.
    const SPELLINGS_OF_ORDERS: &[&str] = &[
        "/orders;jsessionid=0/1",
        "/orders;/42",
        "/orders;jsessionid=0",
        "/orders/..;/orders/1",
        "/Orders/42",
        "/ORDERS",
        "/%4Frders/42",
        "/%4frders/42",
        "/%6Frders/42",
        "/%6frders/42",
        "/ord%65rs",
        "/orders%20",
        "/orders%20/1",
        "/orders%20%20",
        "/orders.json",
        "/orders.json.bak",
        "/orders.xml/1",
        "/orders.",
        "/orders./1",
        "/orders...",
        "/orders%2e",
        "/orders%3Bjsessionid=0/1",
        "/orders%3bx",
        "/x%2F..%2Forders/1",
        "/x%2f..%2forders",
        "/orders%2F1",
        "\\orders\\1",
        "/x/..\\orders",
        "/x%5C..%5Corders",
        "/%2561rders/../orders",
        "/%252e%252e/orders",
        "/ｏｒｄｅｒｓ/1",
        "/%EF%BD%8F%EF%BD%92%EF%BD%84%EF%BD%85%EF%BD%92%EF%BD%93",
        "/ＯＲＤＥＲＳ",
        "／orders",
        "/x／．．／orders",
        "/orderſ",
        "/ORDERſ",
    ];

    #[test]
    fn every_spelling_of_a_protected_path_reaches_its_api() {
        let table = table(&[("/orders", &[]), ("/public", &[])]);
        for path in SPELLINGS_OF_ORDERS {
            assert_eq!(table.find(*path, None), Some(0), "{path}");
        }
    }

    #[test]
    fn unicode_letters_that_fold_to_ascii_reach_the_ascii_prefix() {
        let table = table(&[("/kind", &[]), ("/admin", &[]), ("/list", &[])]);
        // KELVIN SIGN, dotless i, capital I with dot above, long s.
        assert_eq!(table.find("/\u{212A}ind/1", None), Some(0));
        assert_eq!(table.find("/adm\u{131}n", None), Some(1));
        assert_eq!(table.find("/adm\u{130}n", None), Some(1));
        assert_eq!(table.find("/li\u{17F}t", None), Some(2));
        assert_eq!(table.find("/adm%C4%B1n", None), Some(1));
    }

    #[test]
    fn a_nul_byte_is_reported_for_refusal() {
        assert!(NormalizedPath::new("/orders%00.json").has_nul());
        assert!(NormalizedPath::new("/orders%2500").has_nul());
        assert!(!NormalizedPath::new("/orders/00").has_nul());
    }

    #[test]
    fn case_sensitive_routes_match_only_their_spelling() {
        let mut table = RouteTable::for_apis();
        table.insert(0, "/Orders", &[], true).unwrap();
        table.insert(1, "/orders", &[], true).unwrap();
        assert_eq!(table.find("/Orders/1", None), Some(0));
        assert_eq!(table.find("/orders/1", None), Some(1));
        assert_eq!(table.find("/ORDERS/1", None), None);
        assert_eq!(table.find("/%4Frders;x=1/1", None), Some(0));
        // A case-insensitive route clashes with any spelling of its path.
        assert!(table.insert(2, "/ORDERS", &[], false).is_err());
        let mut table = table_of_one("/orders");
        assert!(table.insert(1, "/Orders", &[], false).is_err());
        assert!(table.insert(1, "/Orders", &[], true).is_err());
    }

    fn table_of_one(path: &str) -> RouteTable {
        let mut table = RouteTable::for_apis();
        table.insert(0, path, &[], false).unwrap();
        table
    }

    #[test]
    fn format_suffixes_widen_protection_but_not_exempt_prefixes() {
        let table = table(&[("/api/v1.0", &[]), ("/orders", &[])]);
        assert_eq!(table.find("/api/v1.0/x", None), Some(0));
        assert_eq!(table.find("/api/v1.0.json", None), Some(0));
        assert_eq!(table.find("/orders.json", None), Some(1));
        assert_eq!(table.find("/.orders", None), None);
        let mut exempt = RouteTable::default();
        exempt.insert(0, "/health", &[], true).unwrap();
        assert_eq!(exempt.find("/health/live", None), Some(0));
        assert_eq!(exempt.find("/health.json", None), None);
        assert_eq!(exempt.find("/Health", None), None);
    }

    #[test]
    fn longer_literal_routes_win_over_suffix_readings() {
        let table = table(&[("/orders", &[]), ("/orders.json", &[])]);
        assert_eq!(table.find("/orders.json", None), Some(1));
        assert_eq!(table.find("/orders.xml", None), Some(0));
    }

    proptest::proptest! {
        /// The one-pass check says what the plain definition says.
        #[test]
        fn plain_paths_are_what_the_definition_says(path in "[/.a%;\\\\ ]{0,8}") {
            let defined = path.starts_with('/')
                && path.bytes().all(|b| b.is_ascii_graphic() && !b"%\\;".contains(&b))
                && !path.contains("//")
                && !path.contains("/.")
                && !path.contains("./")
                && !path.ends_with('.');
            proptest::prop_assert_eq!(is_plain(&path), defined);
        }
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
