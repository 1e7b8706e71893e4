//! The wire format: plain serde types, unknown fields rejected, every default from
//! [`crate::rules`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::alg::Algorithm;
use crate::rules::{
    DEFAULT_ALGORITHMS, DEFAULT_CLOCK_SKEW_SECONDS, DEFAULT_IDENTITY_CLAIMS,
    DEFAULT_IDENTITY_HEADER, DEFAULT_MAX_TOKEN_BYTES, DEFAULT_POLICY_CLAIM,
};

/// Everything a filter enforces, at one version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Grows with every change the control plane publishes. A filter applies any version other
    /// than the one in force, a lower one too (a control plane restored from a backup).
    #[serde(default)]
    pub version: u64,
    /// The protected APIs.
    #[serde(default)]
    pub apis: Vec<ApiSpec>,
    /// The token issuers the APIs trust, with their keys.
    #[serde(default)]
    pub issuers: Vec<IssuerSpec>,
    /// The access policies.
    #[serde(default)]
    pub policies: Vec<PolicySpec>,
    /// Policies bound to registered clients (from DCR), by client id.
    #[serde(default)]
    pub clients: Vec<ClientBinding>,
    /// Client ids whose tokens are refused even while unexpired.
    #[serde(default)]
    pub revoked_clients: Vec<String>,
    /// Quotas spent across the whole fleet, as the control plane counted them from the
    /// filters' usage reports: refused with 429 `quota_exceeded` until they renew, whatever
    /// this Envoy counted itself.
    #[serde(default)]
    pub exhausted_quotas: Vec<ExhaustedQuota>,
    /// Settings that concern every request, matched or not.
    #[serde(default)]
    pub global: GlobalSpec,
}

/// Settings that concern every request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GlobalSpec {
    /// What happens to a request that matches no API.
    #[serde(default)]
    pub unmatched: Unmatched,
    /// With `unmatched: deny`, requests under these path prefixes (at a segment boundary,
    /// compared in normal form) still pass untouched: health checks, public pages.
    #[serde(default)]
    pub public_prefixes: Vec<String>,
}

/// What happens to a request that matches no API.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Unmatched {
    /// It passes untouched (minus client-sent trusted headers): the filter protects only
    /// configured APIs.
    #[default]
    Pass,
    /// It is refused with 404 `no_api`, except under the public prefixes (default deny).
    Deny,
}

/// A protected API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiSpec {
    /// Stable id, referenced by policies and by Envoy route metadata
    /// (`filter_metadata.portico.api`).
    pub id: String,
    /// A human name, for operators and logs; no decision reads it.
    #[serde(default)]
    pub name: String,
    /// Requests whose path starts with this (at a segment boundary) belong to the API.
    pub listen_path: String,
    /// When not empty, only requests for one of these hosts belong to the API: exact names or
    /// wildcards `*.example.com` (see [`crate::rules::host`]).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Ids of the issuers whose tokens the API accepts.
    pub issuers: Vec<String>,
    /// Accepted signature algorithms (HMAC ones only with an issuer's configured secret).
    #[serde(default = "default_algorithms")]
    pub allowed_algorithms: Vec<Algorithm>,
    /// The token's `aud` must name one of these. Required unless `accept_any_audience`.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Accept tokens whatever their audience: an explicit opt-out of the audience check,
    /// which lets a token minted for another service of the same IdP in (RFC 8725 §3.9).
    #[serde(default)]
    pub accept_any_audience: bool,
    /// Claims that name the caller, first present wins (IdPs differ: `client_id`, `cid`,
    /// `azp`, `clientId`, `sub`).
    #[serde(default = "default_identity_claims")]
    pub identity_claims: Vec<String>,
    /// The claim naming the caller's policies (a string or an array of strings).
    #[serde(default = "default_policy_claim")]
    pub policy_claim: String,
    /// Policies for callers that have none from their token or registration.
    #[serde(default)]
    pub default_policies: Vec<String>,
    /// Tolerance for clock differences on `exp`, `nbf` and `iat`, in seconds.
    #[serde(default = "default_clock_skew")]
    pub clock_skew_seconds: u64,
    /// Whether tokens without `exp` are refused.
    #[serde(default = "default_true")]
    pub require_exp: bool,
    /// When set, the token header's `typ` must be this (e.g. `at+jwt`).
    #[serde(default)]
    pub expected_typ: Option<String>,
    /// Longer tokens are refused unread.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
    /// Upstream header set to the caller's identity (any client-sent copy is removed).
    #[serde(default = "default_identity_header")]
    pub identity_header: String,
    /// Upstream header set to the caller's policy ids, comma-separated, when configured.
    #[serde(default)]
    pub policies_header: Option<String>,
    /// Upstream headers filled from the granting policy's metadata: header name to source,
    /// which is exactly `{policy.metadata.<key>}` (e.g. `x-plan: {policy.metadata.plan}`).
    /// The value comes from the first granting policy that has the key (token's policy claim
    /// first, then bindings); when none has it, the header is not set. Client-sent copies are
    /// always removed.
    #[serde(default)]
    pub metadata_headers: BTreeMap<String, String>,
    /// Where the API reads its token (RFC 6750 §2); by default the `Authorization: Bearer`
    /// header only.
    #[serde(default)]
    pub token_sources: TokenSources,
    /// Whether listen path and policy path prefixes match letter case exactly. By default
    /// they do not, since many upstreams (Express, ASP.NET, some Spring setups) route
    /// `/Orders/42` as `/orders/42`: protecting a spelling too many is harmless, one too few is
    /// a bypass. Set it only when every upstream of the API routes case-sensitively.
    #[serde(default)]
    pub case_sensitive_paths: bool,
    /// Whether CORS preflights (`OPTIONS` with `Origin` and `Access-Control-Request-Method`,
    /// which browsers send without credentials) pass to the upstream without a token, as
    /// Envoy's `jwt_authn` `bypass_cors_preflight`. Off by default.
    #[serde(default)]
    pub bypass_cors_preflight: bool,
}

/// Where an API reads its bearer token (RFC 6750 §2). A request carrying a token in more than
/// one place, counting the `Authorization` header and the `access_token` query parameter even
/// when the API reads neither, is refused with 400 `invalid_request`; a token in a place the
/// API does not read is never forwarded unverified.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenSources {
    /// The `Authorization: Bearer <token>` header (RFC 6750 §2.1). Default `true`.
    #[serde(default = "default_true")]
    pub header: bool,
    /// A query parameter (RFC 6750 §2.3 names it `access_token`), e.g. for WebSocket clients
    /// that cannot set headers. Default: none.
    #[serde(default)]
    pub query: Option<String>,
    /// A cookie, e.g. for browser applications. Default: none.
    #[serde(default)]
    pub cookie: Option<String>,
}

impl Default for TokenSources {
    fn default() -> Self {
        TokenSources {
            header: true,
            query: None,
            cookie: None,
        }
    }
}

/// A token issuer and its keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSpec {
    /// Stable id, referenced by APIs.
    pub id: String,
    /// The exact `iss` value of its tokens.
    pub issuer: String,
    /// Its public keys, as JWKs (unusable ones are skipped, each with a reason; private or
    /// symmetric key material is refused).
    #[serde(default)]
    pub keys: JwkList,
    /// Shared HMAC secrets, for static configurations only (never from a key set).
    #[serde(default)]
    pub hmac_secrets: Vec<HmacSecretSpec>,
    /// The longest lifetime (`exp` − `iat`, in seconds) the issuer gives its tokens. When set,
    /// a token of this issuer without `iat` or `exp`, or living longer, is refused
    /// (`missing_iat`, `missing_exp`, `token_lifetime_too_long`), so that no token can outlive
    /// its issue time by more than this: what lets the control plane drop a deleted client's
    /// revocation once that time has passed. 1 to [`crate::rules::MAX_LIFETIME_SECONDS`];
    /// unset: no bound.
    #[serde(default)]
    pub max_token_lifetime_seconds: Option<u64>,
}

/// A bare array of public JWKs (the `keys` member of a JWK Set, RFC 7517 §5), kept as JSON
/// values. Human-readable formats carry it as a JSON array; binary formats as one JSON string,
/// because a JWK's members are open-ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JwkList(pub Vec<Value>);

/// An HMAC secret, from a static configuration or an issuer's sealed secrets.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacSecretSpec {
    /// The `kid` tokens name it by, if any.
    #[serde(default)]
    pub kid: Option<String>,
    /// The one algorithm it verifies, if restricted.
    #[serde(default)]
    pub alg: Option<Algorithm>,
    /// The secret, base64url (padding optional).
    pub secret: String,
}

/// An access policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicySpec {
    /// Stable id, named by tokens' policy claims and client bindings.
    pub id: String,
    /// A human name, for operators and logs; no decision reads it.
    #[serde(default)]
    pub name: String,
    /// An inactive policy grants nothing.
    #[serde(default)]
    pub state: PolicyState,
    /// What the policy grants.
    #[serde(default)]
    pub access_rights: Vec<AccessRight>,
    /// Requests per period, per caller.
    #[serde(default)]
    pub rate_limit: Option<RateLimitSpec>,
    /// Requests per renewal period, per caller.
    #[serde(default)]
    pub quota: Option<QuotaSpec>,
    /// Whom `rate_limit` and `quota` count: all the clients of one developer together (the
    /// default), or each client alone.
    #[serde(default)]
    pub limit_scope: LimitScope,
    /// How long a registration through the catalogue keeps this policy, in seconds; none:
    /// for ever. The control plane sets each binding's `expires_at` from it when a client
    /// registers; changing it applies to new registrations only.
    #[serde(default)]
    pub lifetime_seconds: Option<u64>,
    /// Small string metadata (a plan name, a tier) that APIs can forward upstream through
    /// their `metadata_headers`; bounded and header-safe (see [`crate::rules::metadata`]).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// Whether a policy grants anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PolicyState {
    /// The policy grants its access rights.
    #[default]
    Active,
    /// The policy grants nothing.
    Inactive,
}

/// Access to one API, optionally only for some methods and path prefixes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessRight {
    /// The API id.
    pub api: String,
    /// When not empty, only these methods (case-insensitive).
    #[serde(default)]
    pub methods: Vec<String>,
    /// When not empty, only paths under one of these prefixes (at a segment boundary).
    #[serde(default)]
    pub path_prefixes: Vec<String>,
}

/// At most `requests` per `per_seconds`, smoothed (a burst of `requests` is allowed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RateLimitSpec {
    /// Requests allowed per period.
    pub requests: u32,
    /// The period, in seconds.
    pub per_seconds: u32,
}

/// At most `max` requests per fixed renewal period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaSpec {
    /// Requests allowed per renewal period.
    pub max: u64,
    /// The renewal period, in seconds.
    pub renewal_seconds: u64,
}

/// The policies a registered client holds through its registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientBinding {
    /// The IdP's `client_id`.
    pub client_id: String,
    /// Policy ids.
    pub policies: Vec<String>,
    /// When bound policies stop granting: policy id to seconds since the Unix epoch. At and
    /// after that second the binding grants nothing; policies absent here never expire.
    #[serde(default)]
    pub expires_at: BTreeMap<String, u64>,
    /// The Portico OAuth client this `client_id` belongs to (its record id, `cli_…`).
    /// Rate-limit and quota counters are kept under it, so they follow the client across
    /// secret rotations and re-registrations that give it a new `client_id`. Absent: counted
    /// under the `client_id`.
    #[serde(default)]
    pub client: Option<String>,
    /// The developer who registered the client (`dev_…`): the counters of a policy limited
    /// per developer ([`LimitScope::Developer`]) are shared by all of that developer's
    /// clients. Absent: the client counts alone.
    #[serde(default)]
    pub developer: Option<String>,
}

/// A quota spent across the fleet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExhaustedQuota {
    /// The policy whose quota is spent (an entry naming no policy of the snapshot is ignored).
    pub policy: String,
    /// Whom it counts: `d:<developer id>`, `c:<client record id>` or `i:<identity>`, as in the
    /// usage reports.
    pub subject: String,
    /// When the quota renews, in seconds since the Unix epoch; the entry is ignored from then
    /// on.
    pub until: u64,
}

/// Whom a policy's `rate_limit` and `quota` count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LimitScope {
    /// The default: one count for all the clients one developer registered (a developer can
    /// register any number of clients, so a per-client limit is one a developer could
    /// multiply). A caller without a developer (a client not registered through the portal,
    /// a token whose policies come from a claim) counts alone, as with `client`.
    #[default]
    Developer,
    /// One count per OAuth client (the Portico client, across secret rotations), or per
    /// caller identity when the caller is not a registered client.
    Client,
}

fn default_algorithms() -> Vec<Algorithm> {
    DEFAULT_ALGORITHMS.to_vec()
}
fn default_identity_claims() -> Vec<String> {
    DEFAULT_IDENTITY_CLAIMS.map(str::to_owned).to_vec()
}
fn default_policy_claim() -> String {
    DEFAULT_POLICY_CLAIM.to_owned()
}
fn default_clock_skew() -> u64 {
    DEFAULT_CLOCK_SKEW_SECONDS
}
fn default_true() -> bool {
    true
}
fn default_max_token_bytes() -> usize {
    DEFAULT_MAX_TOKEN_BYTES
}
fn default_identity_header() -> String {
    DEFAULT_IDENTITY_HEADER.to_owned()
}

// === impl JwkList ===

impl Serialize for JwkList {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            self.0.serialize(serializer)
        } else {
            let text = serde_json::to_string(&self.0).map_err(serde::ser::Error::custom)?;
            serializer.serialize_str(&text)
        }
    }
}

impl<'de> Deserialize<'de> for JwkList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            Vec::<Value>::deserialize(deserializer).map(JwkList)
        } else {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            serde_json::from_str(&text)
                .map(JwkList)
                .map_err(serde::de::Error::custom)
        }
    }
}

impl std::fmt::Debug for HmacSecretSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacSecretSpec")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("secret", &"[redacted]")
            .finish()
    }
}
