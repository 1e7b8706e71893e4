//! Fetching an issuer's JSON Web Key Set from its `jwks_uri`.
//!
//! [`fetch_jwks`] answers with the raw JWKs of the keys Portico can verify with (so that the
//! control plane can publish them to the filters as the IdP wrote them, less any private key
//! members), the keys it skipped with the reason for each (from
//! [`portico_core::jwk::KeySet`]), and how long to wait before fetching again.
//!
//! A set without a single usable key is an error ([`JwksFetchError::NoUsableKeys`]), never an
//! empty success: the caller keeps its last good set instead of publishing nothing. Each way a
//! fetch can fail is its own variant, so that an operator sees a timeout, a refused connection,
//! a `503`, an HTML error page, a document without `keys` and an oversized answer as what they
//! are.
//!
//! The refresh hint comes from [`refresh_after`], a pure function of the response headers:
//! `Cache-Control: max-age` (less `Age`), else `Expires` relative to `Date`, else the
//! configured default, always clamped to [`RefreshBounds`].

use std::fmt;
use std::time::Duration;

use portico_core::jwk::{KeySet, SkippedKey};
use reqwest::header::{ACCEPT, AGE, CACHE_CONTROL, DATE, EXPIRES, HeaderMap};
use serde_json::Value;
use url::Url;

use super::{CallOutcome, IdpHttp, TransportError, read_body_limited, snippet, without_bom};

/// The largest key set accepted, in bytes.
pub const DEFAULT_MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Bounds on how long a fetched document is used before it is fetched again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshBounds {
    /// Never refetch sooner than this, whatever the IdP says (`no-store`, `max-age=0`).
    pub min: Duration,
    /// Never keep a document longer than this, whatever the IdP says.
    pub max: Duration,
    /// Used when the IdP gives no caching headers.
    pub default: Duration,
}

impl RefreshBounds {
    /// The defaults for key sets: at least 5 minutes, at most 24 hours, 1 hour when the IdP
    /// says nothing. (An unknown `kid` triggers an immediate refetch anyway.)
    pub const JWKS: RefreshBounds = RefreshBounds {
        min: Duration::from_secs(5 * 60),
        max: Duration::from_secs(24 * 60 * 60),
        default: Duration::from_secs(60 * 60),
    };

    fn clamp(&self, value: Duration) -> Duration {
        value.clamp(self.min, self.max.max(self.min))
    }
}

impl Default for RefreshBounds {
    fn default() -> Self {
        RefreshBounds::JWKS
    }
}

/// How a key set is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksFetchConfig {
    /// The largest body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Bounds on the refresh hint.
    pub refresh: RefreshBounds,
    /// A bound on the whole fetch, body included, replacing the IdP client's own total bound;
    /// `None` keeps the client's.
    pub timeout: Option<Duration>,
}

impl Default for JwksFetchConfig {
    fn default() -> Self {
        JwksFetchConfig {
            max_body_bytes: DEFAULT_MAX_JWKS_BYTES,
            refresh: RefreshBounds::JWKS,
            timeout: None,
        }
    }
}

/// A fetched key set.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedJwks {
    /// The usable keys as JWK objects, in the IdP's order, without private members. Never
    /// empty.
    pub keys: Vec<Value>,
    /// The keys left out, each with its position in the IdP's `keys` array and the reason.
    pub skipped: Vec<SkippedKey>,
    /// When to fetch again, from the caching headers within the configured bounds.
    pub refresh_after: Duration,
}

/// Why a key set could not be fetched. The caller keeps its last good set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksFetchError {
    /// The IdP could not be reached or did not answer properly in time.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The IdP answered with a status other than 2xx.
    #[error("the key set at {url} answered HTTP {status}: {body_snippet}")]
    Status {
        /// The `jwks_uri`.
        url: String,
        /// The HTTP status.
        status: u16,
        /// A bounded excerpt of the body.
        body_snippet: String,
    },
    /// The body is not JSON (an HTML error page, a login page, truncated output).
    #[error("the key set at {url} is not JSON: {reason}")]
    NotJson {
        /// The `jwks_uri`.
        url: String,
        /// What the JSON parser said, and a bounded excerpt of the body.
        reason: String,
    },
    /// The document is JSON but not an object with a `keys` array.
    #[error("the document at {url} is not a key set: it has no `keys` array")]
    NoKeysArray {
        /// The `jwks_uri`.
        url: String,
    },
    /// Not one key of the set can be used, so publishing it would lock every client out.
    #[error("the key set at {url} has no key Portico can verify with{}", SkippedList(.skipped))]
    NoUsableKeys {
        /// The `jwks_uri`.
        url: String,
        /// Every key of the set, with why it was skipped (empty for `{"keys": []}`).
        skipped: Vec<SkippedKey>,
    },
}

// === impl JwksFetchError ===

impl JwksFetchError {
    /// The failure as a [`CallOutcome`] (the `outcome` label of the key-fetch metrics).
    pub fn outcome(&self) -> CallOutcome {
        match self {
            JwksFetchError::Transport(error) => error.outcome(),
            JwksFetchError::Status { status, .. } => CallOutcome::of_status(*status),
            JwksFetchError::NotJson { .. }
            | JwksFetchError::NoKeysArray { .. }
            | JwksFetchError::NoUsableKeys { .. } => CallOutcome::InvalidResponse,
        }
    }
}

/// Formats skipped keys as `: 2 skipped (#0 kid "a": reason; #1: reason)`.
struct SkippedList<'a>(&'a [SkippedKey]);

impl fmt::Display for SkippedList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str(" (the set is empty)");
        }
        write!(f, ": {} skipped (", self.0.len())?;
        for (i, key) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "#{}", key.index)?;
            if let Some(kid) = &key.kid {
                write!(f, " kid {kid:?}")?;
            }
            write!(f, ": {}", key.reason)?;
        }
        f.write_str(")")
    }
}

/// Fetches the key set at `jwks_uri` with `http` (see [`super::http_client`] for its
/// timeouts).
pub async fn fetch_jwks(
    http: &IdpHttp,
    jwks_uri: &Url,
    config: &JwksFetchConfig,
) -> Result<FetchedJwks, JwksFetchError> {
    let mut request = http
        .get(jwks_uri.clone())
        .header(ACCEPT, "application/jwk-set+json, application/json");
    if let Some(timeout) = config.timeout {
        request = request.timeout(timeout);
    }
    let response = http.send(request, jwks_uri).await?;
    let status = response.status();
    let refresh = refresh_after(response.headers(), &config.refresh);
    let body = read_body_limited(response, jwks_uri, config.max_body_bytes).await?;
    if !status.is_success() {
        return Err(JwksFetchError::Status {
            url: jwks_uri.to_string(),
            status: status.as_u16(),
            body_snippet: snippet(&body),
        });
    }
    let (keys, skipped) = usable_keys(jwks_uri, &body)?;
    for key in &skipped {
        tracing::warn!(
            jwks_uri = %jwks_uri,
            index = key.index,
            kid = key.kid.as_deref().unwrap_or(""),
            reason = %key.reason,
            "skipping a key Portico cannot use",
        );
    }
    tracing::debug!(
        jwks_uri = %jwks_uri,
        keys = keys.len(),
        skipped = skipped.len(),
        refresh_after_secs = refresh.as_secs(),
        "fetched key set",
    );
    Ok(FetchedJwks {
        keys,
        skipped,
        refresh_after: refresh,
    })
}

/// Splits a key set document into usable raw keys (private members removed) and skipped keys.
fn usable_keys(url: &Url, body: &[u8]) -> Result<(Vec<Value>, Vec<SkippedKey>), JwksFetchError> {
    let document: Value =
        serde_json::from_slice(without_bom(body)).map_err(|err| JwksFetchError::NotJson {
            url: url.to_string(),
            reason: format!("{err}; the body starts with: {}", snippet(body)),
        })?;
    let Some(Value::Array(jwks)) = document.get("keys") else {
        return Err(JwksFetchError::NoKeysArray {
            url: url.to_string(),
        });
    };
    let parsed = KeySet::from_jwks(jwks);
    let mut skipped_at = parsed.skipped.iter().map(|key| key.index).peekable();
    let mut keys = Vec::with_capacity(parsed.keys.len());
    for (index, jwk) in jwks.iter().enumerate() {
        if skipped_at.peek() == Some(&index) {
            skipped_at.next();
            continue;
        }
        let mut jwk = jwk.clone();
        if let Value::Object(members) = &mut jwk {
            for member in portico_core::jwk::PRIVATE_MEMBERS {
                if members.remove(member).is_some() {
                    tracing::warn!(jwks_uri = %url, index, member, "removed a private key member the IdP published");
                }
            }
        }
        keys.push(jwk);
    }
    if keys.is_empty() {
        return Err(JwksFetchError::NoUsableKeys {
            url: url.to_string(),
            skipped: parsed.skipped,
        });
    }
    Ok((keys, parsed.skipped))
}

/// How long to use a fetched document, from its response headers, within `bounds`:
///
/// 1. `Cache-Control: no-store` or `no-cache`: the minimum.
/// 2. `Cache-Control: max-age=N`: `N` less the `Age` header.
/// 3. `Expires` minus `Date` (both IMF-fixdate), less `Age`; an `Expires` that is not a date
///    means "already expired" (RFC 9111 §5.3), so the minimum.
/// 4. Otherwise the default.
///
/// The result is always clamped to `[min, max]`.
pub fn refresh_after(headers: &HeaderMap, bounds: &RefreshBounds) -> Duration {
    let age = headers
        .get(AGE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let mut max_age = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let (name, argument) = match directive.split_once('=') {
                Some((name, argument)) => (name.trim(), Some(argument.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return bounds.min;
            }
            if name.eq_ignore_ascii_case("max-age")
                && let Some(seconds) = argument.and_then(parse_delta_seconds)
            {
                max_age = Some(seconds);
            }
        }
    }
    if let Some(seconds) = max_age {
        return bounds.clamp(Duration::from_secs(seconds.saturating_sub(age)));
    }
    if let Some(expires) = headers.get(EXPIRES) {
        let expires = expires.to_str().ok().and_then(parse_http_date);
        let date = headers
            .get(DATE)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_http_date);
        return match (expires, date) {
            (None, _) => bounds.min,
            (Some(expires), Some(date)) => bounds.clamp(Duration::from_secs(
                expires.saturating_sub(date).saturating_sub(age),
            )),
            // Without `Date` the lifetime needs a clock, which this function does not read.
            (Some(_), None) => bounds.clamp(bounds.default),
        };
    }
    bounds.clamp(bounds.default)
}

/// `delta-seconds` (RFC 9111 §1.2.2): digits; values too large for `u64` saturate.
fn parse_delta_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse::<u64>().unwrap_or(u64::MAX))
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §5.6.7) into seconds since
/// the Unix epoch. The obsolete formats are not read (the caller then treats the header as
/// absent or as "already expired").
fn parse_http_date(text: &str) -> Option<u64> {
    let mut parts = text.split_ascii_whitespace();
    let weekday = parts.next()?;
    let day: u64 = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let year: u64 = parts.next()?.parse().ok()?;
    let time = parts.next()?;
    if parts.next()? != "GMT" || parts.next().is_some() || !weekday.ends_with(',') {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let mut clock = time.split(':').map(|part| part.parse::<u64>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if clock.next().is_some()
        || !(1..=31).contains(&day)
        || year < 1970
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), for years from 1970 on.
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

#[cfg(test)]
mod tests;
