//! The rulebook: what a valid snapshot field is, and the defaults of the ones that may be
//! left out. The filter applies these rules when it compiles a snapshot
//! ([`crate::snapshot::CompiledSnapshot::compile`]), and the control plane applies the same
//! functions to every admin write, so what the admin API accepts is exactly what every filter
//! enforces. Nothing here is repeated elsewhere: `docs/snapshot.md`, `docs/admin-api.md` and
//! `docs/filter-config.md` are checked against these constants by a test.
//!
//! Each validator takes the value as written and returns its canonical form (what matching and
//! conflict detection use), or a [`RuleViolation`] whose message names the value.

use std::borrow::Cow;

use crate::alg::Algorithm;
use crate::routing::{HostPattern, NormalizedPath};

/// The default upstream header carrying the caller's identity.
pub const DEFAULT_IDENTITY_HEADER: &str = "x-portico-client-id";
/// The default claim naming the caller's policies (a string or an array of strings).
pub const DEFAULT_POLICY_CLAIM: &str = "pol";
/// The default claims naming the caller, first present wins.
pub const DEFAULT_IDENTITY_CLAIMS: [&str; 1] = ["sub"];
/// The algorithms an API accepts when it names none.
pub const DEFAULT_ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];
/// The default tolerance for clock differences on `exp`, `nbf` and `iat`, in seconds.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 60;
/// The most a clock skew may be configured to, in seconds.
pub const MAX_CLOCK_SKEW_SECONDS: u64 = 600;
/// The default size limit of a token, in bytes: longer tokens are refused unread.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The largest configurable token size limit, in bytes (Envoy's default limit on all request
/// headers together is 60 KiB).
pub const MAX_MAX_TOKEN_BYTES: usize = 64 * 1024;
/// The longest listen path or path prefix, in bytes.
pub const MAX_PATH_BYTES: usize = 2048;
/// The longest header name, in bytes.
pub const MAX_HEADER_NAME_BYTES: usize = 100;

/// The longest request id echoed in a refusal, in bytes (Envoy's UUIDs are 36).
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// The longest rate-limit or quota period, in seconds (366 days).
pub const MAX_PERIOD_SECONDS: u64 = 366 * 24 * 3600;
/// The most requests a rate limit may allow per period.
pub const MAX_RATE_LIMIT_REQUESTS: u64 = 1_000_000_000;
/// The most requests a quota may allow per renewal period.
pub const MAX_QUOTA_REQUESTS: u64 = 1_000_000_000_000;

/// The longest access lifetime a policy may give a registration, in seconds (ten years).
pub const MAX_LIFETIME_SECONDS: u64 = 10 * 366 * 24 * 3600;
/// The maximum token lifetime a control-plane issuer has unless its operator says otherwise,
/// in seconds (24 hours): longer than any common IdP's access tokens.
pub const DEFAULT_MAX_TOKEN_LIFETIME_SECONDS: u64 = 24 * 3600;
/// The most metadata entries a policy may carry.
pub const MAX_METADATA_ENTRIES: usize = 16;
/// The longest metadata key, in bytes.
pub const MAX_METADATA_KEY_BYTES: usize = 64;
/// The longest metadata value, in bytes.
pub const MAX_METADATA_VALUE_BYTES: usize = 256;
/// The most metadata headers an API may name.
pub const MAX_METADATA_HEADERS: usize = 16;

/// Custom headers that proxies, tracers and frameworks already give a meaning: they can never
/// carry identity, policies or metadata upstream. Compared lower-case. (Standard headers are
/// out anyway: a Portico header starts with `x-`.)
pub const RESERVED_HEADERS: [&str; 12] = [
    "x-amzn-trace-id",
    "x-client-trace-id",
    "x-cloud-trace-context",
    "x-http-method",
    "x-http-method-override",
    "x-method-override",
    "x-original-url",
    "x-ot-span-context",
    "x-real-ip",
    "x-request-id",
    "x-requested-with",
    "x-rewrite-url",
];

/// The query parameter that carries a token in RFC 6750 §2.3: recognised on every API, so a
/// request carrying a token there and in the header is refused (RFC 6750 §2: one method only),
/// and stripped when the API does not read it.
pub const ACCESS_TOKEN_PARAMETER: &str = "access_token";

/// Headers through which upstream frameworks let a client replace the request's method (Rails,
/// Laravel, Express `method-override`, ASP.NET, Spring's `HiddenHttpMethodFilter` and Jersey
/// read one or more of them), compared after lower-casing and turning `_` into `-`. Refused on
/// APIs whose policies restrict methods, since they would turn a granted `GET` into a `DELETE`
/// upstream.
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The query (and form) parameter through which Rails, Laravel and Express replace the method.
pub const METHOD_OVERRIDE_PARAMETER: &str = "_method";

/// The longest query parameter or cookie name a token source may name, in bytes.
pub const MAX_SOURCE_NAME_BYTES: usize = 64;

/// Header name prefixes that belong to Envoy (`x-envoy-`), to proxies (`x-forwarded-`) and to
/// tracing (`x-b3-`).
pub const RESERVED_HEADER_PREFIXES: [&str; 3] = ["x-envoy-", "x-forwarded-", "x-b3-"];

/// Why a value breaks a rule, in words that name the value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleViolation(pub String);

fn violation(message: impl Into<String>) -> RuleViolation {
    RuleViolation(message.into())
}

/// A listen path: starts with `/`, printable ASCII without spaces, `?` or `#`, at most
/// [`MAX_PATH_BYTES`], and already in normal form (see [`crate::routing`]: no dot segments, no
/// `//`, no escapes but of reserved characters, no `;` parameters, no segment ending in a dot),
/// so that the path an operator reads is the path that matches. Returns it without its
/// trailing slash (`""` for `/`); route keys fold its letter case unless the API is
/// case-sensitive.
pub fn listen_path(value: &str) -> Result<String, RuleViolation> {
    normal_path(value)
}

fn normal_path(value: &str) -> Result<String, RuleViolation> {
    path_syntax(value)?;
    let normal = NormalizedPath::new(value);
    let key = normal.exact().trim_end_matches('/');
    if key != value.trim_end_matches('/') {
        let suggestion = if key.is_empty() { "/" } else { key };
        return Err(violation(format!(
            "`{value}` is not in normal form; write `{suggestion}`"
        )));
    }
    Ok(key.to_owned())
}

/// A policy's path prefix (or the gateway's public prefix): the rules of a listen path, normal
/// form included, so that `/static/..` cannot quietly mean `/`. Returns the prefix without its
/// trailing slash, case-folded unless `case_sensitive` (its API's setting), as it is compared.
pub fn path_prefix(value: &str, case_sensitive: bool) -> Result<String, RuleViolation> {
    normal_path(value)?;
    Ok(NormalizedPath::new(value)
        .key(case_sensitive)
        .trim_end_matches('/')
        .to_owned())
}

fn path_syntax(value: &str) -> Result<(), RuleViolation> {
    if !value.starts_with('/') {
        return Err(violation(format!("`{value}` must start with `/`")));
    }
    if value.len() > MAX_PATH_BYTES {
        return Err(violation(format!("must be at most {MAX_PATH_BYTES} bytes")));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) || value.contains(['?', '#']) {
        return Err(violation(format!(
            "`{}` must be printable ASCII without spaces, `?` or `#`",
            value.escape_debug()
        )));
    }
    Ok(())
}

/// A host an API is served on: a DNS name or IPv4 address, a bracketed IPv6 address, or a
/// wildcard `*.example.com` (Envoy's suffix wildcard: it matches `a.example.com` and
/// `a.b.example.com`, not `example.com`). Case does not matter and a `:port` is dropped, since
/// matching ignores ports. Returns the canonical pattern.
pub fn host(value: &str) -> Result<HostPattern, RuleViolation> {
    let bad = || {
        violation(format!(
            "`{}` is not a host name such as api.example.com or *.example.com",
            value.escape_debug()
        ))
    };
    let lower = value.to_ascii_lowercase();
    let name = strip_port(&lower).ok_or_else(bad)?;
    if let Some(address) = name.strip_prefix('[') {
        let address = address.strip_suffix(']').ok_or_else(bad)?;
        let address = address.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        // One spelling per address: `[0:0::1]` is `[::1]`.
        return Ok(HostPattern::Exact(format!("[{address}]")));
    }
    let (wildcard, dns) = match name.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    let labels_ok = !dns.is_empty()
        && dns.len() <= 253
        && dns.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !labels_ok {
        return Err(bad());
    }
    // A name whose last label is numeric is an IPv4 address, and only its canonical dotted
    // quad is one (`127.1`, `0x7f.0.0.1` and `2130706433` are spellings that clients resolve
    // differently).
    let numeric_tail = dns
        .rsplit('.')
        .next()
        .is_some_and(|label| label.bytes().all(|b| b.is_ascii_digit()) || label.starts_with("0x"));
    if numeric_tail
        && (wildcard
            || dns
                .parse::<std::net::Ipv4Addr>()
                .map_or(true, |address| address.to_string() != dns))
    {
        return Err(bad());
    }
    Ok(if wildcard {
        HostPattern::Suffix(format!(".{dns}"))
    } else {
        HostPattern::Exact(dns.to_owned())
    })
}

/// `name[:port]` without the port; `None` when the port is not a number in 1..=65535.
fn strip_port(host: &str) -> Option<&str> {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port))
            if !name.ends_with(':') && (!name.starts_with('[') || name.ends_with(']')) =>
        {
            (name, Some(port))
        }
        _ => (host, None),
    };
    match port {
        None => Some(name),
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|port| *port > 0)
            .map(|_| name),
    }
}

/// Whether `value` is an HTTP token (RFC 9110 §5.6.2) of 1 to `max_bytes` bytes.
fn is_token(value: &str, max_bytes: usize) -> bool {
    const TOKEN_SPECIALS: &[u8] = b"!#$%&'*+-.^_`|~";
    !value.is_empty()
        && value.len() <= max_bytes
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || TOKEN_SPECIALS.contains(&b))
}

/// A header name that Portico sets upstream: an HTTP token (RFC 9110 §5.6.2) of at most
/// [`MAX_HEADER_NAME_BYTES`] that starts with `x-` (a custom header: every standard header,
/// `range` or `origin` as much as `authorization`, means something else to someone), and is
/// not reserved ([`RESERVED_HEADERS`], [`RESERVED_HEADER_PREFIXES`]), without `_` (so that the
/// name is its own [`header_key`] and every client spelling of it is caught). Every API's
/// headers are removed from every request a client sends, so a name is never shared with real
/// traffic. Returns it lower-case, as Envoy sees it.
pub fn header_name(value: &str) -> Result<String, RuleViolation> {
    if !is_token(value, MAX_HEADER_NAME_BYTES) {
        return Err(violation(format!(
            "`{}` is not a valid HTTP header name",
            value.escape_debug()
        )));
    }
    if value.contains('_') {
        return Err(violation(format!(
            "`{value}` holds `_`: PHP, WSGI and Rack read `_` as `-`, and the shipped Envoy \
             configurations drop client headers with `_`; use `-`"
        )));
    }
    let lower = value.to_ascii_lowercase();
    if !lower.starts_with("x-") || lower.len() < 3 {
        return Err(violation(format!(
            "`{value}` is not a custom header: Portico's headers start with `x-`"
        )));
    }
    if RESERVED_HEADERS.contains(&lower.as_str())
        || RESERVED_HEADER_PREFIXES
            .iter()
            .any(|prefix| lower.starts_with(prefix))
    {
        return Err(violation(format!(
            "`{value}` is reserved and cannot be set by Portico"
        )));
    }
    Ok(lower)
}

/// The name of a query parameter that carries an API's token: 1 to [`MAX_SOURCE_NAME_BYTES`]
/// unreserved characters (RFC 3986 §2.3). Returns it as requests are compared with it
/// ([`parameter_key`]).
pub fn query_parameter(value: &str) -> Result<String, RuleViolation> {
    let valid = !value.is_empty()
        && value.len() <= MAX_SOURCE_NAME_BYTES
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !valid {
        return Err(violation(format!(
            "`{}` is not a query parameter name (letters, digits, `-`, `.`, `_`, `~`)",
            value.escape_debug()
        )));
    }
    Ok(parameter_key(value))
}

/// How a query parameter's or a cookie's name is compared, once form-decoded:
/// case-insensitively (as ASP.NET reads queries and cookies) and with `.`, ` ` and `[` read as
/// `_` (as PHP reads both), so that no spelling of a token parameter or cookie reaches an
/// upstream unnoticed.
pub fn parameter_key(name: &str) -> String {
    parameter_key_chars(name).collect()
}

/// [`parameter_key`] as characters, to compare a name without allocating its key.
pub fn parameter_key_chars(name: &str) -> impl Iterator<Item = char> + '_ {
    name.chars().map(|c| match c {
        '.' | ' ' | '[' => '_',
        other => other.to_ascii_lowercase(),
    })
}

/// The name of a cookie that carries an API's token: an HTTP token (RFC 6265 §4.1.1) of 1 to
/// [`MAX_SOURCE_NAME_BYTES`] bytes. Cookie names compare as [`parameter_key`] reads them.
pub fn cookie_name(value: &str) -> Result<(), RuleViolation> {
    if !is_token(value, MAX_SOURCE_NAME_BYTES) {
        return Err(violation(format!(
            "`{}` is not a cookie name (an HTTP token)",
            value.escape_debug()
        )));
    }
    Ok(())
}

/// How a received header name is compared with the names Portico sets or refuses:
/// lower-case, with `_` read as `-`, as PHP, WSGI and Rack read `x_portico_client_id` as
/// `x-portico-client-id`.
/// Borrowed when `name` is already in that form (as Envoy hands every header name over:
/// lower-case), so that the request path allocates nothing for it.
pub fn header_key(name: &str) -> Cow<'_, str> {
    if !name.bytes().any(|b| b.is_ascii_uppercase() || b == b'_') {
        return Cow::Borrowed(name);
    }
    Cow::Owned(
        name.chars()
            .map(|c| match c {
                '_' => '-',
                other => other.to_ascii_lowercase(),
            })
            .collect(),
    )
}

/// The longest filter instance id, in bytes (the filter sends 16 hex digits).
pub const MAX_INSTANCE_ID_BYTES: usize = 64;

/// Whether `value` is a filter instance id as the snapshot poll carries it (`instance=`): 1 to
/// [`MAX_INSTANCE_ID_BYTES`] ASCII letters, digits or `-`.
pub fn is_instance_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_INSTANCE_ID_BYTES
        && value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
}

/// Whether `value` (an `x-request-id` header) may be echoed in a refusal's body and headers:
/// 1 to [`MAX_REQUEST_ID_BYTES`] bytes of visible ASCII (`!` to `~`), so that echoing it can
/// neither split a header nor flood a response.
pub fn is_echoable_request_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_BYTES
        && value.bytes().all(|byte| byte.is_ascii_graphic())
}

/// A claim name, a `typ` or an audience: 1 to 200 bytes without whitespace or control
/// characters.
pub fn token_text(value: &str) -> Result<(), RuleViolation> {
    if value.is_empty() {
        return Err(violation("must not be empty"));
    }
    if value.len() > 200 {
        return Err(violation("must be at most 200 bytes"));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(violation("must not contain spaces or control characters"));
    }
    Ok(())
}

/// An HTTP method a policy grants (RFC 9110 §9.1; the registered ones are letters with an
/// occasional `-`, as WebDAV's `VERSION-CONTROL`), returned upper-case.
pub fn method(value: &str) -> Result<String, RuleViolation> {
    let valid = !value.is_empty()
        && value.len() <= 32
        && value.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-');
    if !valid {
        return Err(violation(format!(
            "`{}` is not an HTTP method",
            value.escape_debug()
        )));
    }
    Ok(value.to_ascii_uppercase())
}

/// A count of requests in a rate limit or a quota: 1 to `max`.
pub fn request_count(value: u64, max: u64) -> Result<(), RuleViolation> {
    if value == 0 || value > max {
        return Err(violation(format!("must be between 1 and {max}")));
    }
    Ok(())
}

/// A rate-limit or quota period, in seconds: 1 to [`MAX_PERIOD_SECONDS`].
pub fn period_seconds(value: u64) -> Result<(), RuleViolation> {
    request_count(value, MAX_PERIOD_SECONDS)
}

/// A clock skew, in seconds: at most [`MAX_CLOCK_SKEW_SECONDS`].
pub fn clock_skew_seconds(value: u64) -> Result<(), RuleViolation> {
    if value > MAX_CLOCK_SKEW_SECONDS {
        return Err(violation(format!(
            "must be at most {MAX_CLOCK_SKEW_SECONDS}"
        )));
    }
    Ok(())
}

/// A token size limit, in bytes: 1 to [`MAX_MAX_TOKEN_BYTES`].
pub fn max_token_bytes(value: usize) -> Result<(), RuleViolation> {
    if value == 0 || value > MAX_MAX_TOKEN_BYTES {
        return Err(violation(format!(
            "must be between 1 and {MAX_MAX_TOKEN_BYTES}"
        )));
    }
    Ok(())
}

/// An access lifetime, in seconds: 1 to [`MAX_LIFETIME_SECONDS`].
pub fn lifetime_seconds(value: u64) -> Result<(), RuleViolation> {
    request_count(value, MAX_LIFETIME_SECONDS)
}

/// The moment (seconds since the Unix epoch) from which the revocation of a client deleted at
/// its IdP at `deleted_at` can leave the snapshot: no token of that client can still pass.
///
/// The IdP issues no token for a deleted client, so every token of it has `iat` before
/// `deleted_at` (give or take the IdP's clock, `clock_skew_seconds` off ours); a filter refuses
/// a token of an issuer with `max_token_lifetime_seconds` that lives longer, and accepts one
/// until `exp` + `clock_skew_seconds`. Hence `deleted_at` + `max_token_lifetime_seconds` + 2 ×
/// `clock_skew_seconds`, saturating. `None` when the lifetime is unbounded: the revocation stays.
pub fn revocation_ends_at(
    deleted_at: u64,
    max_token_lifetime_seconds: Option<u64>,
    clock_skew_seconds: u64,
) -> Option<u64> {
    max_token_lifetime_seconds.map(|lifetime| {
        deleted_at
            .saturating_add(lifetime)
            .saturating_add(clock_skew_seconds.saturating_mul(2))
    })
}

/// A metadata key: 1 to [`MAX_METADATA_KEY_BYTES`] of ASCII letters, digits, `_`, `-` and
/// `.`.
pub fn metadata_key(value: &str) -> Result<(), RuleViolation> {
    let valid = !value.is_empty()
        && value.len() <= MAX_METADATA_KEY_BYTES
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !valid {
        return Err(violation(format!(
            "`{}` is not a metadata key (1 to {MAX_METADATA_KEY_BYTES} letters, digits, `_`, \
             `-` or `.`)",
            value.escape_debug()
        )));
    }
    Ok(())
}

/// A metadata value, safe to send as a header value: at most [`MAX_METADATA_VALUE_BYTES`] of
/// printable ASCII (spaces allowed inside, not at either end).
pub fn metadata_value(value: &str) -> Result<(), RuleViolation> {
    let valid = value.len() <= MAX_METADATA_VALUE_BYTES
        && value.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
        && value.trim() == value;
    if !valid {
        return Err(violation(format!(
            "`{}` is not a header-safe value (at most {MAX_METADATA_VALUE_BYTES} bytes of \
             printable ASCII, no leading or trailing space)",
            value.escape_debug()
        )));
    }
    Ok(())
}

/// A rule broken by one field of a record, with the field's path inside the record
/// (`metadata.plan`), for rules that look at a whole map.
pub type FieldViolation = (String, RuleViolation);

/// A policy's metadata: at most [`MAX_METADATA_ENTRIES`] entries, each key and value by
/// [`metadata_key`] and [`metadata_value`]. The error names the field at fault: `metadata`, or
/// `metadata.<key>`.
pub fn metadata<'a>(
    entries: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
) -> Result<(), FieldViolation> {
    if entries.len() > MAX_METADATA_ENTRIES {
        return Err((
            "metadata".to_owned(),
            violation(format!("must have at most {MAX_METADATA_ENTRIES} entries")),
        ));
    }
    for (key, value) in entries {
        let field = || format!("metadata.{key}");
        metadata_key(key).map_err(|error| (field(), error))?;
        metadata_value(value).map_err(|error| (field(), error))?;
    }
    Ok(())
}

/// An API's metadata headers, header name to source: at most [`MAX_METADATA_HEADERS`], each
/// name a [`header_name`] that differs from the API's identity and policies headers and from
/// the other metadata headers in every spelling ([`header_key`]), each source a
/// [`metadata_source`]. Returns the lower-case header names with the metadata keys that fill
/// them; the error names the field at fault: `metadata_headers`, or `metadata_headers.<name>`.
pub fn metadata_headers<'a>(
    headers: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
    identity_header: &str,
    policies_header: Option<&str>,
) -> Result<Vec<(String, String)>, FieldViolation> {
    if headers.len() > MAX_METADATA_HEADERS {
        return Err((
            "metadata_headers".to_owned(),
            violation(format!(
                "must name at most {MAX_METADATA_HEADERS} metadata headers"
            )),
        ));
    }
    let taken: Vec<Cow<'_, str>> = std::iter::once(identity_header)
        .chain(policies_header)
        .map(header_key)
        .collect();
    let mut compiled: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for (name, source) in headers {
        let field = || format!("metadata_headers.{name}");
        let header = header_name(name).map_err(|error| (field(), error))?;
        let key = header_key(&header);
        if taken.contains(&key) {
            return Err((
                field(),
                violation("must differ from identity_header and policies_header"),
            ));
        }
        if compiled.iter().any(|(other, _)| header_key(other) == key) {
            return Err((
                field(),
                violation(
                    "repeats an earlier header (names compare case-insensitively, `_` as `-`)",
                ),
            ));
        }
        let metadata = metadata_source(source).map_err(|error| (field(), error))?;
        compiled.push((header, metadata));
    }
    Ok(compiled)
}

/// What a metadata header is filled from: exactly `{policy.metadata.<key>}`. Returns the key.
pub fn metadata_source(value: &str) -> Result<String, RuleViolation> {
    let key = value
        .strip_prefix("{policy.metadata.")
        .and_then(|rest| rest.strip_suffix('}'))
        .ok_or_else(|| {
            violation(format!(
                "`{}` must be `{{policy.metadata.<key>}}`",
                value.escape_debug()
            ))
        })?;
    metadata_key(key)?;
    Ok(key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_paths_must_be_in_normal_form() {
        assert_eq!(listen_path("/orders").unwrap(), "/orders");
        assert_eq!(listen_path("/orders/").unwrap(), "/orders");
        assert_eq!(listen_path("/").unwrap(), "");
        assert_eq!(listen_path("/Orders/v1.0").unwrap(), "/Orders/v1.0");
        for bad in [
            "//orders",
            "/%6Frders",
            "/x/../orders",
            "/./orders",
            "/orders\\x",
            "/orders;v=1",
            "/orders.",
            "/orders%2Fx",
            "/100%",
        ] {
            let error = listen_path(bad).unwrap_err();
            assert!(error.0.contains("normal form"), "{bad}: {error}");
        }
        assert!(path_prefix("/static/..", true).is_err());
        assert_eq!(path_prefix("/v1/", true).unwrap(), "/v1");
        assert!(listen_path("orders").is_err());
        assert!(listen_path("/a b").is_err());
        assert!(listen_path("/a?b").is_err());
        assert!(listen_path(&format!("/{}", "a".repeat(MAX_PATH_BYTES))).is_err());
    }

    #[test]
    fn hosts_are_canonical_without_port_and_wildcards_are_suffixes() {
        assert_eq!(
            host("API.Example.com:8443").unwrap(),
            HostPattern::Exact("api.example.com".to_owned())
        );
        assert_eq!(
            host("*.Example.com").unwrap(),
            HostPattern::Suffix(".example.com".to_owned())
        );
        assert_eq!(
            host("[::1]:8080").unwrap(),
            HostPattern::Exact("[::1]".to_owned())
        );
        assert_eq!(
            host("127.0.0.1").unwrap(),
            HostPattern::Exact("127.0.0.1".to_owned())
        );
        assert_eq!(
            host("[0:0::1]").unwrap(),
            HostPattern::Exact("[::1]".to_owned())
        );
        for bad in [
            "*",
            "*example.com",
            "a.*.com",
            "example.*",
            "exa mple.com",
            "-a.com",
            "a.com:0",
            "a.com:99999",
            "127.1",
            "0x7f.0.0.1",
            "123",
            "*.10.0.0.1",
            "a.com:x",
            "[zz]",
            "",
            "a..com",
        ] {
            assert!(host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_names_are_tokens_and_not_reserved() {
        assert_eq!(header_name("X-Client").unwrap(), "x-client");
        for reserved in RESERVED_HEADERS {
            assert!(header_name(reserved).is_err(), "{reserved}");
            assert!(
                header_name(&reserved.to_ascii_uppercase()).is_err(),
                "{reserved}"
            );
        }
        for standard in [
            "te",
            "range",
            "if-none-match",
            "origin",
            "authorization",
            "x-",
        ] {
            assert!(header_name(standard).is_err(), "{standard}");
        }
        assert!(header_name("x-envoy-original-path").is_err());
        assert!(header_name("X-Forwarded-For").is_err());
        assert!(header_name(":path").is_err());
        assert!(header_name("bad header").is_err());
        assert!(header_name("x-portico_client").is_err());
        assert!(header_name("").is_err());
    }

    #[test]
    fn metadata_is_bounded_and_header_safe() {
        assert!(metadata_key("plan").is_ok());
        assert!(metadata_key("").is_err());
        assert!(metadata_key("a b").is_err());
        assert!(metadata_key(&"k".repeat(MAX_METADATA_KEY_BYTES + 1)).is_err());
        assert!(metadata_value("gold tier").is_ok());
        assert!(metadata_value("").is_ok());
        assert!(metadata_value("a\r\nx-injected: 1").is_err());
        assert!(metadata_value(" padded").is_err());
        assert!(metadata_value("caf\u{e9}").is_err());
        assert!(metadata_value(&"v".repeat(MAX_METADATA_VALUE_BYTES + 1)).is_err());
        assert_eq!(metadata_source("{policy.metadata.plan}").unwrap(), "plan");
        assert!(metadata_source("{policy.metadata.}").is_err());
        assert!(metadata_source("plan").is_err());
        let plan = ("x-plan".to_owned(), "{policy.metadata.plan}".to_owned());
        let headers = |pairs: &[(String, String)]| {
            metadata_headers(
                pairs.iter().map(|(name, source)| (name, source)),
                "x-caller-id",
                Some("x-policies"),
            )
        };
        assert_eq!(
            headers(std::slice::from_ref(&plan)).unwrap(),
            [("x-plan".to_owned(), "plan".to_owned())]
        );
        let clash = ("X-Caller-ID".to_owned(), plan.1.clone());
        let error = headers(&[clash]).unwrap_err();
        assert_eq!(error.0, "metadata_headers.X-Caller-ID");
        assert!(error.1.0.contains("must differ"), "{error:?}");
        let underscore = ("X-Caller_ID".to_owned(), plan.1.clone());
        let error = headers(&[underscore]).unwrap_err();
        assert_eq!(error.0, "metadata_headers.X-Caller_ID");
        assert!(error.1.0.contains("holds `_`"), "{error:?}");
        let twice = ("X-Plan".to_owned(), plan.1.clone());
        let error = headers(&[plan.clone(), twice]).unwrap_err();
        assert!(error.1.0.contains("repeats"), "{error:?}");
        let standard = ("range".to_owned(), plan.1.clone());
        assert!(headers(&[standard]).is_err(), "only custom headers");
        let many: Vec<_> = (0..=MAX_METADATA_HEADERS)
            .map(|n| (format!("x-m{n}"), plan.1.clone()))
            .collect();
        assert_eq!(headers(&many).unwrap_err().0, "metadata_headers");
        let entries: std::collections::BTreeMap<String, String> =
            [("plan".to_owned(), "a\tb".to_owned())].into();
        assert_eq!(metadata(entries.iter()).unwrap_err().0, "metadata.plan");
        assert!(lifetime_seconds(0).is_err());
        assert!(lifetime_seconds(MAX_LIFETIME_SECONDS).is_ok());
        assert!(lifetime_seconds(MAX_LIFETIME_SECONDS + 1).is_err());
        assert_eq!(revocation_ends_at(1_000, Some(3_600), 60), Some(4_720));
        assert_eq!(revocation_ends_at(1_000, None, 60), None);
        assert_eq!(
            revocation_ends_at(u64::MAX - 1, Some(3_600), 60),
            Some(u64::MAX)
        );
    }

    /// `docs/snapshot.md` describes these rules once; every constant must appear there as it is.
    #[test]
    fn docs_state_the_rules() {
        let docs = include_str!("../../docs/snapshot.md");
        let rules = &docs[docs.find("## The rules").expect("a rules section")..];
        let mut expected = vec![
            format!("default {DEFAULT_CLOCK_SKEW_SECONDS}, at most {MAX_CLOCK_SKEW_SECONDS}"),
            format!("default {DEFAULT_MAX_TOKEN_BYTES}, between 1 and {MAX_MAX_TOKEN_BYTES}"),
            format!(
                "`requests` 1–{MAX_RATE_LIMIT_REQUESTS} per `per_seconds` 1–{MAX_PERIOD_SECONDS}"
            ),
            format!("`max` 1–{MAX_QUOTA_REQUESTS} per `renewal_seconds` 1–{MAX_PERIOD_SECONDS}"),
            format!("at most {MAX_PATH_BYTES} bytes"),
            format!("`lifetime_seconds` 1–{MAX_LIFETIME_SECONDS}"),
            format!("at most {MAX_METADATA_ENTRIES} entries"),
            format!("keys of 1–{MAX_METADATA_KEY_BYTES} bytes"),
            format!("values of at most {MAX_METADATA_VALUE_BYTES} bytes"),
            format!("at most {MAX_METADATA_HEADERS} metadata headers"),
            format!("an HTTP token of at most {MAX_HEADER_NAME_BYTES} bytes"),
            format!("default `{DEFAULT_IDENTITY_HEADER}`"),
            format!(
                "default `[\"{}\"]` and `\"{DEFAULT_POLICY_CLAIM}\"`",
                DEFAULT_IDENTITY_CLAIMS[0]
            ),
            format!(
                "default `[{}]`",
                DEFAULT_ALGORITHMS
                    .iter()
                    .map(|alg| format!("\"{alg}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ];
        expected.extend(RESERVED_HEADERS.iter().map(|name| format!("`{name}`")));
        expected.extend(
            RESERVED_HEADER_PREFIXES
                .iter()
                .map(|prefix| format!("`{prefix}`")),
        );
        expected.extend(
            crate::jwk::PRIVATE_MEMBERS
                .iter()
                .map(|member| format!("`{member}`")),
        );
        for text in expected {
            assert!(
                rules.contains(&text),
                "docs/snapshot.md's rules do not say {text}"
            );
        }
        let line = rules
            .lines()
            .find(|line| line.starts_with("| header names"))
            .expect("a header-name rule");
        let listed = line
            .split_once("never one of")
            .and_then(|(_, rest)| rest.split_once(", nor"))
            .map(|(listed, _)| listed)
            .expect("the reserved names, listed");
        assert_eq!(
            listed.matches("`, `").count() + 1,
            RESERVED_HEADERS.len(),
            "docs/snapshot.md lists other reserved headers than core: {listed}"
        );
    }

    /// The field references of the filter configuration and the admin API give the same
    /// defaults as core.
    #[test]
    fn field_references_give_core_defaults() {
        let filter = include_str!("../../docs/filter-config.md");
        let admin = include_str!("../../docs/admin-api.md");
        let algorithms = format!(
            "`[{}]`",
            DEFAULT_ALGORITHMS
                .iter()
                .map(|alg| format!("\"{alg}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (doc, name) in [(filter, "filter-config.md"), (admin, "admin-api.md")] {
            for text in [
                format!("`{DEFAULT_CLOCK_SKEW_SECONDS}`"),
                format!("at most {MAX_CLOCK_SKEW_SECONDS}"),
                format!("`{DEFAULT_MAX_TOKEN_BYTES}`"),
                format!("{MAX_MAX_TOKEN_BYTES}"),
                format!("`[\"{}\"]`", DEFAULT_IDENTITY_CLAIMS[0]),
                format!("`\"{DEFAULT_POLICY_CLAIM}\"`"),
                DEFAULT_IDENTITY_HEADER.to_owned(),
                algorithms.clone(),
            ] {
                assert!(
                    doc.contains(&text),
                    "docs/{name} does not give the default {text}"
                );
            }
        }
    }

    #[test]
    fn token_source_names_are_checked_and_compared_loosely() {
        assert_eq!(query_parameter("Token").unwrap(), "token");
        assert_eq!(query_parameter("access.token").unwrap(), "access_token");
        assert!(query_parameter("").is_err());
        assert!(query_parameter("a b").is_err());
        assert!(query_parameter("a&b").is_err());
        assert_eq!(parameter_key("ACCESS[TOKEN"), "access_token");
        assert!(cookie_name("session_token").is_ok());
        assert!(cookie_name("a=b").is_err());
        assert!(cookie_name("a;b").is_err());
        assert_eq!(header_key("X_Portico_Client-ID"), "x-portico-client-id");
    }

    #[test]
    fn numbers_have_bounds() {
        assert!(clock_skew_seconds(MAX_CLOCK_SKEW_SECONDS).is_ok());
        assert!(clock_skew_seconds(MAX_CLOCK_SKEW_SECONDS + 1).is_err());
        assert!(max_token_bytes(0).is_err());
        assert!(max_token_bytes(MAX_MAX_TOKEN_BYTES).is_ok());
        assert!(max_token_bytes(MAX_MAX_TOKEN_BYTES + 1).is_err());
    }
}
