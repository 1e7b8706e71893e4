//! What Portico reads from a request besides its path, and what it changes in a request it
//! forwards.
//!
//! - **The token** (RFC 6750 §2): from the places an API reads ([`TokenSources`]). The places
//!   Portico recognises are the `Authorization` header, the `access_token` query parameter and
//!   the API's configured query parameter and cookie; a request with a token in more than one
//!   of them (two `Authorization` headers, the header and `?access_token=`, a parameter or a
//!   cookie twice) is refused with 400 `invalid_request`, and a token in a place the API does
//!   not read is never forwarded unverified ([`edits`] strips it).
//! - **Method overrides**: `X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`
//!   (in any spelling, `_` for `-` included) and the `_method` query parameter, which
//!   frameworks honour to replace the method that policies checked.
//! - **CORS preflights**: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
//! - **Trusted headers** (identity, policies): removed from every forwarded request in any
//!   spelling, since PHP, WSGI and Rack read `x_portico_client_id` as `x-portico-client-id`.
//!
//! Query parameter names are compared form-decoded, case-insensitively and with PHP's
//! mangling (see [`rules::parameter_key`]); pieces are split at `&` and at `;` (which older
//! Python and Java servers also treat as a separator). Form bodies are not read: a token or a
//! `_method` in a request body is the upstream's to refuse.

use std::borrow::Cow;

use crate::decision::Decision;
use crate::denial::Denial;
use crate::rules::{
    self, ACCESS_TOKEN_PARAMETER, METHOD_OVERRIDE_HEADERS, METHOD_OVERRIDE_PARAMETER,
};
use crate::snapshot::{CompiledApi, CompiledSnapshot, TokenSources};

/// What the filter knows about a request when it decides.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// The request target (path and query), as received.
    pub path: &'a str,
    /// The `:authority` (host and optional port).
    pub host: Option<&'a str>,
    /// Every request header as received, repeated ones repeated, in order (names lower-case,
    /// as Envoy hands them; pseudo-headers may be included).
    pub headers: &'a [(&'a str, &'a str)],
    /// The API id that the request's Envoy route names in its metadata
    /// (`filter_metadata.portico.api`), which selects the API before any path matching.
    pub route_api: Option<&'a str>,
}

// === impl Request ===

impl<'a> Request<'a> {
    /// A request from Envoy's header map (pseudo-headers `:method`, `:path`, `:authority`
    /// included) and the route's API id.
    pub fn from_headers(headers: &'a [(&'a str, &'a str)], route_api: Option<&'a str>) -> Self {
        let pseudo = |name: &str| {
            headers
                .iter()
                .find(|(header, _)| *header == name)
                .map(|(_, value)| *value)
        };
        Request {
            method: pseudo(":method").unwrap_or_default(),
            path: pseudo(":path").unwrap_or_default(),
            host: pseudo(":authority"),
            headers,
            route_api,
        }
    }

    /// The request id Envoy gave the request (`x-request-id`, RFC-less but Envoy's tracing
    /// convention), when it may be echoed ([`rules::is_echoable_request_id`]); a refusal carries
    /// it so that an operator can find the request in the access log.
    pub fn request_id(&self) -> Option<&'a str> {
        self.header_values("x-request-id")
            .next()
            .filter(|value| rules::is_echoable_request_id(value))
    }

    /// The path alone, without the query or a fragment: what a log line may show of the
    /// target, since a query can carry a token (`?access_token=…`, RFC 6750 §2.3).
    pub fn path_without_query(&self) -> &'a str {
        let end = self.path.find(['?', '#']).unwrap_or(self.path.len());
        &self.path[..end]
    }

    /// The values of the header `name` (lower-case), in order.
    fn header_values(&self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| *value)
    }

    /// The query (after the first `?`, without any fragment), if any.
    fn query(&self) -> Option<&'a str> {
        let (_, query) = self.path.split_once('?')?;
        Some(query.split('#').next().unwrap_or(""))
    }

    /// The query's parameters: each piece, its name as compared and its decoded value.
    fn parameters(&self) -> impl Iterator<Item = (String, Cow<'a, str>)> + 'a {
        self.query()
            .into_iter()
            .flat_map(|query| query.split(['&', ';']))
            .filter(|piece| !piece.is_empty())
            .filter_map(|piece| {
                let (name, value) = form_urlencoded::parse(piece.as_bytes()).next()?;
                Some((rules::parameter_key(&name), value))
            })
    }

    /// The values of the cookie `name`, across every `Cookie` header (RFC 6265 §5.4), without
    /// surrounding double quotes: every cookie whose name some upstream reads as `name`
    /// ([`rules::parameter_key`]: `sess.tok` and `sess_tok` are one cookie to PHP).
    fn cookies(&self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let key = rules::parameter_key(name);
        self.header_values("cookie")
            .flat_map(|header| header.split(';'))
            .filter_map(move |pair| {
                let (cookie, value) = pair.trim().split_once('=')?;
                rules::parameter_key_chars(cookie.trim())
                    .eq(key.chars())
                    .then(|| value.trim().trim_matches('"'))
            })
    }

    /// Whether the request is a CORS preflight: `OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method` (the Fetch standard's CORS-preflight request).
    pub fn is_cors_preflight(&self) -> bool {
        self.method.eq_ignore_ascii_case("OPTIONS")
            && self.header_values("origin").next().is_some()
            && self
                .header_values("access-control-request-method")
                .next()
                .is_some()
    }

    /// Whether the request asks the upstream to replace its method.
    pub fn has_method_override(&self) -> bool {
        self.headers
            .iter()
            .any(|(name, _)| METHOD_OVERRIDE_HEADERS.contains(&&*rules::header_key(name)))
            || self
                .parameters()
                .any(|(name, _)| name == METHOD_OVERRIDE_PARAMETER)
    }

    /// The token for an API reading `sources`: `Ok(None)` when there is none in a place it
    /// reads.
    ///
    /// # Errors
    /// [`Denial::InvalidRequest`] when the request carries tokens in more than one place:
    /// several `Authorization` headers, or more than one non-empty bearer token, `access_token`
    /// or configured parameter, or configured cookie, together.
    pub fn token(&self, sources: &TokenSources) -> Result<Option<Cow<'a, str>>, Denial> {
        let mut authorization = self.header_values("authorization");
        let first = authorization.next();
        if authorization.next().is_some() {
            return Err(Denial::InvalidRequest("several Authorization headers"));
        }
        // (place, read by the API, token)
        let mut found: Vec<(&'static str, bool, Cow<'a, str>)> = Vec::new();
        if let Some(token) = bearer_token(first) {
            found.push(("header", sources.header, Cow::Borrowed(token)));
        }
        for (name, value) in self.parameters() {
            let read = sources.query.as_deref() == Some(name.as_str());
            if (read || name == ACCESS_TOKEN_PARAMETER) && !value.is_empty() {
                found.push(("query", read, value));
            }
        }
        if let Some(cookie) = &sources.cookie {
            for value in self.cookies(cookie) {
                if !value.is_empty() {
                    found.push(("cookie", true, Cow::Borrowed(value)));
                }
            }
        }
        match found.as_slice() {
            [] => Ok(None),
            [(_, read, _)] if !read => Ok(None),
            [_] => Ok(found.pop().map(|(_, _, token)| token)),
            [(first, ..), (second, ..), ..] => {
                Err(Denial::InvalidRequest(match (*first, *second) {
                    ("header", "query") => "the Authorization header and the query",
                    ("header", _) => "the Authorization header and a cookie",
                    ("query", "query") => "the query, twice",
                    ("query", _) => "the query and a cookie",
                    _ => "a cookie, twice",
                }))
            }
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer_token(authorization: Option<&str>) -> Option<&str> {
    let value = authorization?.trim_start();
    let scheme = value.get(..6)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let rest = &value[6..];
    if !rest.starts_with(' ') {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty()).then_some(token)
}

/// What the filter changes in a request before forwarding it: first the removals, then the
/// headers set, then the new `:path`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Edits {
    /// Header names to remove, as received.
    pub remove: Vec<String>,
    /// Headers to set, replacing any value: the caller's identity, policies and plan metadata,
    /// or a `Cookie` header rebuilt without a token cookie.
    pub set: Vec<(String, String)>,
    /// The request target without stripped query parameters, when some were stripped.
    pub path: Option<String>,
}

/// The edits for a request the gateway decided to forward (none for a refusal):
/// - every client-sent spelling of a trusted header is removed, on every path;
/// - [`Decision::Allow`]: token places the API does not read are stripped (the
///   `access_token` parameter, an empty copy of the API's own), and the identity (and
///   policies and metadata) headers are set;
/// - [`Decision::Preflight`]: every token place is stripped, since nothing was verified.
pub fn edits(
    snapshot: Option<&CompiledSnapshot>,
    decision: &Decision,
    request: &Request<'_>,
) -> Edits {
    let mut edits = Edits::default();
    let Some(snapshot) = snapshot else {
        return edits;
    };
    if matches!(decision, Decision::Deny { .. }) {
        return edits;
    }
    for (name, _) in request.headers {
        if name.starts_with(':') {
            continue;
        }
        let key = rules::header_key(name);
        if snapshot.trusted_headers.iter().any(|header| *header == key)
            && !edits.remove.iter().any(|n| n == name)
        {
            edits.remove.push((*name).to_owned());
        }
    }
    match decision {
        Decision::Allow(grant) => {
            let Some(api) = snapshot.apis.get(grant.api) else {
                return edits;
            };
            let own = api.token_sources.query.as_deref();
            edits.path = strip_parameters(
                request.path,
                |name| name == ACCESS_TOKEN_PARAMETER || own == Some(name),
                |name, value| own == Some(name) && !value.is_empty(),
            );
            edits
                .set
                .push((api.identity_header.clone(), String::from(&*grant.identity)));
            if let Some(header) = &api.policies_header {
                let policies: Vec<&str> = grant.policies.iter().map(|id| &**id).collect();
                edits.set.push((header.clone(), policies.join(",")));
            }
            // A metadata header that no granting policy fills stays removed.
            edits.set.extend(grant.metadata_headers.iter().cloned());
        }
        Decision::Preflight { api } => {
            if let Some(api) = snapshot.apis.get(*api) {
                strip_every_token_place(&mut edits, api, request);
            }
        }
        Decision::PassThrough | Decision::Deny { .. } => {}
    }
    edits
}

fn strip_every_token_place(edits: &mut Edits, api: &CompiledApi, request: &Request<'_>) {
    let sources = &api.token_sources;
    edits.path = strip_parameters(
        request.path,
        |name| name == ACCESS_TOKEN_PARAMETER || sources.query.as_deref() == Some(name),
        |_, _| false,
    );
    if bearer_token(request.header_values("authorization").next()).is_some() {
        edits.remove.push("authorization".to_owned());
    }
    if let Some(cookie) = &sources.cookie
        && request.cookies(cookie).next().is_some()
    {
        let key = rules::parameter_key(cookie);
        let kept: Vec<&str> = request
            .header_values("cookie")
            .flat_map(|header| header.split(';'))
            .map(str::trim)
            .filter(|pair| {
                !pair.is_empty()
                    && pair.split_once('=').is_none_or(|(name, _)| {
                        !rules::parameter_key_chars(name.trim()).eq(key.chars())
                    })
            })
            .collect();
        edits.remove.push("cookie".to_owned());
        if !kept.is_empty() {
            edits.set.push(("cookie".to_owned(), kept.join("; ")));
        }
    }
}

/// `target` without the query pieces whose name (as compared) `strip` selects, unless `keep`
/// keeps it by name and decoded value; `None` when nothing is stripped. The other pieces keep
/// their spelling and the separator before them.
fn strip_parameters(
    target: &str,
    strip: impl Fn(&str) -> bool,
    keep: impl Fn(&str, &str) -> bool,
) -> Option<String> {
    let (path, query) = target.split_once('?')?;
    // Each piece with the separator before it (none for the first).
    let mut pieces: Vec<(Option<char>, &str)> = Vec::new();
    let mut separator = None;
    let mut rest = query;
    loop {
        let end = rest.find(['&', ';']).unwrap_or(rest.len());
        pieces.push((separator, &rest[..end]));
        let Some(next) = rest[end..].chars().next() else {
            break;
        };
        separator = Some(next);
        rest = &rest[end + 1..];
    }
    let before = pieces.len();
    pieces.retain(|(_, piece)| {
        !form_urlencoded::parse(piece.as_bytes())
            .next()
            .is_some_and(|(name, value)| {
                let name = rules::parameter_key(&name);
                strip(&name) && !keep(&name, &value)
            })
    });
    if pieces.len() == before {
        return None;
    }
    let mut rebuilt = path.to_owned();
    for (index, (separator, piece)) in pieces.iter().enumerate() {
        rebuilt.push(if index == 0 {
            '?'
        } else {
            separator.unwrap_or('&')
        });
        rebuilt.push_str(piece);
    }
    Some(rebuilt)
}

#[cfg(test)]
mod tests;
