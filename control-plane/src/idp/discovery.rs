//! OpenID Connect discovery: the few fields of an issuer's provider metadata Portico needs.
//!
//! [`discover`] fetches `<issuer>/.well-known/openid-configuration` (see [`well_known_url`]) or
//! an operator-given discovery URL, and checks it as OpenID Connect Discovery 1.0 §4.3
//! requires: the document's `issuer` must be *identical* to the issuer Portico expects (a
//! trailing slash counts), otherwise an attacker who controls the document could make Portico
//! trust another issuer's keys. `jwks_uri` is required; `registration_endpoint` and
//! `token_endpoint` are optional; every URL must be an absolute `http(s)` URL.
//!
//! [`DiscoveryCache`] keeps documents for as long as their `Cache-Control` allows within
//! [`DiscoveryConfig::cache`] (default one hour). It reads no clock: the caller passes `now`.
//! [`Discoverer`] puts the client, the configuration and the cache together.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::header::ACCEPT;
use serde_json::{Map, Value};
use url::Url;

use super::jwks_fetch::{RefreshBounds, refresh_after};
use super::{CallOutcome, IdpHttp, TransportError, read_body_limited, snippet, without_bom};

/// The path of the discovery document under the issuer (OpenID Connect Discovery §4).
pub const WELL_KNOWN_PATH: &str = "/.well-known/openid-configuration";
/// The largest discovery document accepted, in bytes.
pub const DEFAULT_MAX_DISCOVERY_BYTES: usize = 256 * 1024;

/// The provider metadata Portico uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderMetadata {
    /// The issuer, exactly as the document (and the expectation) wrote it.
    pub issuer: String,
    /// Where the issuer's signing keys are.
    pub jwks_uri: Url,
    /// The Dynamic Client Registration endpoint (RFC 7591), when the IdP offers one.
    pub registration_endpoint: Option<Url>,
    /// The token endpoint, shown to developers in the portal's sample requests.
    pub token_endpoint: Option<Url>,
}

/// A fetched document and how long it may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// The fields Portico needs.
    pub metadata: ProviderMetadata,
    /// How long the document may be used, from its caching headers within the bounds.
    pub refresh_after: Duration,
}

/// How discovery documents are fetched and cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// The largest body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long a document is kept: `Cache-Control` within `[min, max]`, else `default`.
    pub cache: RefreshBounds,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            max_body_bytes: DEFAULT_MAX_DISCOVERY_BYTES,
            cache: RefreshBounds {
                min: Duration::from_secs(60),
                max: Duration::from_secs(24 * 60 * 60),
                default: Duration::from_secs(60 * 60),
            },
        }
    }
}

/// Why a discovery document could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// The issuer cannot prefix a discovery URL.
    #[error("the issuer {issuer:?} is not a usable URL: {reason}")]
    InvalidIssuer {
        /// The issuer as configured.
        issuer: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The IdP could not be reached or did not answer properly in time.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The IdP answered with a status other than 2xx.
    #[error("the discovery document at {url} answered HTTP {status}: {body_snippet}")]
    Status {
        /// The discovery URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// A bounded excerpt of the body.
        body_snippet: String,
    },
    /// The body is not JSON.
    #[error("the discovery document at {url} is not JSON: {reason}")]
    NotJson {
        /// The discovery URL.
        url: String,
        /// What the JSON parser said, and a bounded excerpt of the body.
        reason: String,
    },
    /// The body is JSON but not an object.
    #[error("the discovery document at {url} is not a JSON object")]
    NotAnObject {
        /// The discovery URL.
        url: String,
    },
    /// A required field is absent.
    #[error("the discovery document at {url} has no `{field}`")]
    MissingField {
        /// The discovery URL.
        url: String,
        /// The field.
        field: &'static str,
    },
    /// A field is present but unusable.
    #[error("the discovery document at {url} has an invalid `{field}`: {reason}")]
    InvalidField {
        /// The discovery URL.
        url: String,
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The document speaks for another issuer than the expected one (Discovery §4.3).
    #[error(
        "the discovery document at {url} is for issuer {found:?}, not the expected {expected:?}; \
         the two must be identical (OpenID Connect Discovery §4.3){}",
        trailing_slash_hint(expected, found)
    )]
    IssuerMismatch {
        /// The discovery URL.
        url: String,
        /// The issuer Portico was configured with.
        expected: String,
        /// The issuer the document names.
        found: String,
    },
}

// === impl DiscoveryError ===

impl DiscoveryError {
    /// The failure as a [`CallOutcome`] (a key fetch through discovery fails with it).
    pub fn outcome(&self) -> CallOutcome {
        match self {
            DiscoveryError::InvalidIssuer { .. } => CallOutcome::NotSent,
            DiscoveryError::Transport(error) => error.outcome(),
            DiscoveryError::Status { status, .. } => CallOutcome::of_status(*status),
            DiscoveryError::NotJson { .. }
            | DiscoveryError::NotAnObject { .. }
            | DiscoveryError::MissingField { .. }
            | DiscoveryError::InvalidField { .. }
            | DiscoveryError::IssuerMismatch { .. } => CallOutcome::InvalidResponse,
        }
    }
}

fn trailing_slash_hint(expected: &str, found: &str) -> &'static str {
    if expected.trim_end_matches('/') == found.trim_end_matches('/') {
        ": they differ only in the trailing slash, so configure the issuer exactly as the IdP \
         writes it"
    } else {
        ""
    }
}

/// The discovery URL of an issuer: the issuer with any trailing `/` removed, followed by
/// [`WELL_KNOWN_PATH`] (Discovery §4.1).
pub fn well_known_url(issuer: &str) -> Result<Url, DiscoveryError> {
    let invalid = |reason: &str| DiscoveryError::InvalidIssuer {
        issuer: issuer.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = Url::parse(issuer).map_err(|err| invalid(&err.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("an issuer has no query or fragment"));
    }
    let base = parsed.as_str().trim_end_matches('/');
    Url::parse(&format!("{base}{WELL_KNOWN_PATH}")).map_err(|err| invalid(&err.to_string()))
}

/// Fetches the discovery document at `url` and checks it against `expected_issuer`.
pub async fn discover(
    http: &IdpHttp,
    url: &Url,
    expected_issuer: &str,
    config: &DiscoveryConfig,
) -> Result<Discovered, DiscoveryError> {
    let response = http
        .send(
            http.get(url.clone()).header(ACCEPT, "application/json"),
            url,
        )
        .await?;
    let status = response.status();
    let refresh = refresh_after(response.headers(), &config.cache);
    let body = read_body_limited(response, url, config.max_body_bytes).await?;
    if !status.is_success() {
        return Err(DiscoveryError::Status {
            url: url.to_string(),
            status: status.as_u16(),
            body_snippet: snippet(&body),
        });
    }
    let metadata = parse_metadata(url, &body, expected_issuer)?;
    tracing::debug!(
        discovery_url = %url,
        issuer = %metadata.issuer,
        jwks_uri = %metadata.jwks_uri,
        refresh_after_secs = refresh.as_secs(),
        "read discovery document",
    );
    Ok(Discovered {
        metadata,
        refresh_after: refresh,
    })
}

/// Reads and checks a discovery document fetched from `url`.
fn parse_metadata(
    url: &Url,
    body: &[u8],
    expected_issuer: &str,
) -> Result<ProviderMetadata, DiscoveryError> {
    let document: Value =
        serde_json::from_slice(without_bom(body)).map_err(|err| DiscoveryError::NotJson {
            url: url.to_string(),
            reason: format!("{err}; the body starts with: {}", snippet(body)),
        })?;
    let Value::Object(document) = document else {
        return Err(DiscoveryError::NotAnObject {
            url: url.to_string(),
        });
    };
    let issuer = match document.get("issuer") {
        None => {
            return Err(DiscoveryError::MissingField {
                url: url.to_string(),
                field: "issuer",
            });
        }
        Some(Value::String(issuer)) => issuer,
        Some(_) => {
            return Err(DiscoveryError::InvalidField {
                url: url.to_string(),
                field: "issuer",
                reason: "not a string".to_owned(),
            });
        }
    };
    if issuer != expected_issuer {
        return Err(DiscoveryError::IssuerMismatch {
            url: url.to_string(),
            expected: expected_issuer.to_owned(),
            found: issuer.clone(),
        });
    }
    let jwks_uri =
        endpoint(url, &document, "jwks_uri")?.ok_or_else(|| DiscoveryError::MissingField {
            url: url.to_string(),
            field: "jwks_uri",
        })?;
    Ok(ProviderMetadata {
        issuer: issuer.clone(),
        jwks_uri,
        registration_endpoint: endpoint(url, &document, "registration_endpoint")?,
        token_endpoint: endpoint(url, &document, "token_endpoint")?,
    })
}

/// An optional endpoint field: absent is `None`, present must be an absolute `http(s)` URL.
fn endpoint(
    url: &Url,
    document: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<Url>, DiscoveryError> {
    let invalid = |reason: String| DiscoveryError::InvalidField {
        url: url.to_string(),
        field,
        reason,
    };
    match document.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => {
            let parsed = Url::parse(text).map_err(|err| invalid(format!("{text:?}: {err}")))?;
            if matches!(parsed.scheme(), "http" | "https") {
                Ok(Some(parsed))
            } else {
                Err(invalid(format!("{text:?} is not an http(s) URL")))
            }
        }
        Some(_) => Err(invalid("not a string".to_owned())),
    }
}

/// Discovery documents by discovery URL, each until its refresh time.
#[derive(Debug, Default)]
pub struct DiscoveryCache {
    entries: HashMap<Url, CacheEntry>,
}

#[derive(Debug)]
struct CacheEntry {
    metadata: ProviderMetadata,
    fresh_until: Instant,
}

// === impl DiscoveryCache ===

impl DiscoveryCache {
    /// The cached metadata for `url`, if it is still fresh at `now` and names
    /// `expected_issuer`.
    pub fn get(&self, url: &Url, expected_issuer: &str, now: Instant) -> Option<&ProviderMetadata> {
        self.entries
            .get(url)
            .filter(|entry| now < entry.fresh_until && entry.metadata.issuer == expected_issuer)
            .map(|entry| &entry.metadata)
    }

    /// Keeps `discovered` for `url` until `now` plus its refresh time.
    pub fn insert(&mut self, url: Url, discovered: Discovered, now: Instant) {
        let fresh_until = now + discovered.refresh_after;
        self.entries.insert(
            url,
            CacheEntry {
                metadata: discovered.metadata,
                fresh_until,
            },
        );
    }

    /// Forgets the document for `url`, so that the next lookup fetches it (e.g. after the IdP
    /// rotated its keys to a new `jwks_uri`).
    pub fn invalidate(&mut self, url: &Url) {
        self.entries.remove(url);
    }
}

/// Discovery with a cache: one per control plane, shared by the JWKS refresher and the DCR
/// service.
#[derive(Debug)]
pub struct Discoverer {
    http: IdpHttp,
    config: DiscoveryConfig,
    cache: Mutex<DiscoveryCache>,
}

// === impl Discoverer ===

impl Discoverer {
    /// A discoverer over `http` (see [`super::http_client`]).
    pub fn new(http: IdpHttp, config: DiscoveryConfig) -> Self {
        Discoverer {
            http,
            config,
            cache: Mutex::new(DiscoveryCache::default()),
        }
    }

    /// The metadata at `url` for `expected_issuer`: from the cache when fresh at `now`,
    /// otherwise fetched (and cached). A failed fetch caches nothing. The lock is never held
    /// across the fetch, so two callers may fetch the same document at once; both results are
    /// correct and the later one stays.
    pub async fn metadata(
        &self,
        url: &Url,
        expected_issuer: &str,
        now: Instant,
    ) -> Result<ProviderMetadata, DiscoveryError> {
        if let Some(metadata) = self.lock().get(url, expected_issuer, now) {
            return Ok(metadata.clone());
        }
        let discovered = discover(&self.http, url, expected_issuer, &self.config).await?;
        let metadata = discovered.metadata.clone();
        self.lock().insert(url.clone(), discovered, now);
        Ok(metadata)
    }

    /// Forgets the cached document for `url`.
    pub fn invalidate(&self, url: &Url) {
        self.lock().invalidate(url);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DiscoveryCache> {
        // The cache holds no invariant a panicking holder could break.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
