//! The snapshot: everything a filter needs to decide, as the control plane publishes it (or as
//! a static plugin configuration carries it), and its compiled, validated runtime form.
//!
//! [`Snapshot`] is the wire format: plain serde types, unknown fields rejected. Compiling it
//! ([`CompiledSnapshot::compile`]) validates every reference and builds the lookup structures
//! used on each request; a snapshot that does not compile is never applied.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::alg::{Algorithm, AlgorithmSet};
use crate::jwk::{KeySet, SkippedKey, VerifyingKey};
use crate::routing::{NormalizedPath, RouteTable};
use crate::token::{
    DEFAULT_CLOCK_SKEW_SECONDS, DEFAULT_MAX_TOKEN_BYTES, TokenRules, TrustedIssuer,
};

/// The default upstream header carrying the caller's identity.
pub const DEFAULT_IDENTITY_HEADER: &str = "x-portico-client-id";
/// The default claim naming the caller's policies.
pub const DEFAULT_POLICY_CLAIM: &str = "pol";
/// The most a clock skew may be configured to, in seconds.
pub const MAX_CLOCK_SKEW_SECONDS: u64 = 600;

/// Everything a filter enforces, at one version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Monotonically increasing; a filter applies only newer versions.
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
}

/// A protected API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSpec {
    /// Stable id, referenced by policies.
    pub id: String,
    /// Requests whose path starts with this (at a segment boundary) belong to the API.
    pub listen_path: String,
    /// When not empty, only requests for one of these hosts belong to the API.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Ids of the issuers whose tokens the API accepts.
    pub issuers: Vec<String>,
    /// Accepted signature algorithms.
    #[serde(default = "default_algorithms")]
    pub allowed_algorithms: Vec<Algorithm>,
    /// When not empty, the token's `aud` must name one of these.
    #[serde(default)]
    pub audiences: Vec<String>,
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
}

/// A token issuer and its keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSpec {
    /// Stable id, referenced by APIs.
    pub id: String,
    /// The exact `iss` value of its tokens.
    pub issuer: String,
    /// Its public keys, as JWKs (unusable ones are skipped, each with a reason).
    #[serde(default)]
    pub keys: Jwks,
    /// Shared HMAC secrets, for static configurations only (never from a key set).
    #[serde(default)]
    pub hmac_secrets: Vec<HmacSecretSpec>,
}

/// Public JWKs, kept as JSON values. Human-readable formats carry them as a JSON array;
/// binary formats as one JSON string, because a JWK's members are open-ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Jwks(pub Vec<Value>);

/// An HMAC secret from configuration.
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
pub struct PolicySpec {
    /// Stable id, named by tokens' policy claims and client bindings.
    pub id: String,
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
}

/// Whether a policy grants anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
pub struct RateLimitSpec {
    /// Requests allowed per period.
    pub requests: u32,
    /// The period, in seconds.
    pub per_seconds: u32,
}

/// At most `max` requests per fixed renewal period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
}

fn default_algorithms() -> Vec<Algorithm> {
    vec![Algorithm::RS256, Algorithm::ES256]
}
fn default_identity_claims() -> Vec<String> {
    vec!["sub".to_owned()]
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

// === impl Jwks ===

impl Serialize for Jwks {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            self.0.serialize(serializer)
        } else {
            let text = serde_json::to_string(&self.0).map_err(serde::ser::Error::custom)?;
            serializer.serialize_str(&text)
        }
    }
}

impl<'de> Deserialize<'de> for Jwks {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            Vec::<Value>::deserialize(deserializer).map(Jwks)
        } else {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            serde_json::from_str(&text)
                .map(Jwks)
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

/// Why a snapshot cannot be applied, naming the offending field by its path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SnapshotError {
    /// Where, e.g. `apis[2].issuers[0]`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> SnapshotError {
    SnapshotError {
        path: path.into(),
        message: message.into(),
    }
}

/// A validated snapshot with its per-request lookup structures.
#[derive(Debug)]
pub struct CompiledSnapshot {
    /// The snapshot's version.
    pub version: u64,
    /// The APIs, indexed by the route table.
    pub apis: Vec<CompiledApi>,
    routes: RouteTable,
    /// The issuers, with parsed keys.
    pub issuers: Vec<CompiledIssuer>,
    /// The policies.
    pub policies: Vec<CompiledPolicy>,
    policy_index: HashMap<Box<str>, usize>,
    /// Client bindings sorted by client id (binary search needs no hashing to build).
    bindings: Vec<(String, Box<[usize]>)>,
    revoked: HashSet<Box<str>>,
    /// Every header name that carries identity or policies upstream, lower-case: stripped from
    /// client requests everywhere, so no upstream can be fooled by a client-sent copy.
    pub trusted_headers: Vec<String>,
    /// Whether some policy restricts methods (if none does, the method need not be read).
    pub reads_method: bool,
    /// Whether some API is restricted to hosts (if none is, the host need not be read).
    pub reads_host: bool,
    verification_fingerprint: u64,
}

/// An API ready for requests.
#[derive(Debug)]
pub struct CompiledApi {
    /// The API id.
    pub id: String,
    /// Indices into [`CompiledSnapshot::issuers`].
    pub issuers: Vec<usize>,
    /// What tokens must satisfy.
    pub rules: TokenRules,
    /// Claims naming the caller, first present wins.
    pub identity_claims: Vec<String>,
    /// The claim naming the caller's policies.
    pub policy_claim: String,
    /// Indices of the default policies.
    pub default_policies: Vec<usize>,
    /// Upstream identity header, lower-case.
    pub identity_header: String,
    /// Upstream policies header, lower-case.
    pub policies_header: Option<String>,
}

/// An issuer with its usable keys, and the keys that were skipped.
#[derive(Debug)]
pub struct CompiledIssuer {
    /// The issuer id.
    pub id: String,
    /// The issuer and its usable keys.
    pub trusted: TrustedIssuer,
    /// Keys left out, with their reasons (for logs).
    pub skipped_keys: Vec<SkippedKey>,
}

/// A policy ready for access and limit checks.
#[derive(Debug)]
pub struct CompiledPolicy {
    /// The policy id.
    pub id: Arc<str>,
    /// Whether it grants anything.
    pub active: bool,
    /// What it grants, by API index.
    pub access: Vec<CompiledAccess>,
    /// Its rate limit.
    pub rate_limit: Option<RateLimitSpec>,
    /// Its quota.
    pub quota: Option<QuotaSpec>,
}

/// Access to one API, compiled.
#[derive(Debug)]
pub struct CompiledAccess {
    /// The API index.
    pub api: usize,
    /// Allowed methods, upper-case; empty means all.
    pub methods: Vec<String>,
    /// Allowed path prefixes, without trailing slash; empty means all.
    pub path_prefixes: Vec<String>,
}

// === impl CompiledSnapshot ===

impl CompiledSnapshot {
    /// Validates `snapshot` and builds its lookup structures.
    pub fn compile(snapshot: Snapshot) -> Result<CompiledSnapshot, SnapshotError> {
        let fingerprint = verification_fingerprint(&snapshot);
        let issuers = compile_issuers(&snapshot.issuers)?;
        let issuer_index: HashMap<&str, usize> = issuers
            .iter()
            .enumerate()
            .map(|(index, issuer)| (issuer.id.as_str(), index))
            .collect();
        let api_index = unique_ids(snapshot.apis.iter().map(|api| api.id.as_str()), "apis")?;
        let policy_index = unique_ids(
            snapshot.policies.iter().map(|policy| policy.id.as_str()),
            "policies",
        )?;

        let mut apis = Vec::with_capacity(snapshot.apis.len());
        let mut routes = RouteTable::default();
        for (index, spec) in snapshot.apis.iter().enumerate() {
            let path = format!("apis[{index}]");
            let api = compile_api(spec, &path, &issuer_index, &policy_index)?;
            routes
                .insert(index, &spec.listen_path, &spec.hosts)
                .map_err(|conflict| {
                    invalid(
                        format!("{path}.listen_path"),
                        format!(
                            "`{}` is already used by API `{}` for the same hosts",
                            conflict.listen_path, snapshot.apis[conflict.other].id
                        ),
                    )
                })?;
            apis.push(api);
        }

        let policies = snapshot
            .policies
            .iter()
            .enumerate()
            .map(|(index, spec)| compile_policy(spec, &format!("policies[{index}]"), &api_index))
            .collect::<Result<Vec<_>, _>>()?;

        let mut bindings = Vec::with_capacity(snapshot.clients.len());
        for (index, binding) in snapshot.clients.into_iter().enumerate() {
            let resolved = binding
                .policies
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    policy_index.get(id.as_str()).copied().ok_or_else(|| {
                        invalid(
                            format!("clients[{index}].policies[{i}]"),
                            format!("unknown policy `{id}`"),
                        )
                    })
                })
                .collect::<Result<Box<[usize]>, _>>()?;
            bindings.push((binding.client_id, resolved));
        }
        // The control plane sends bindings sorted; sort only when they are not.
        if !bindings.is_sorted_by(|a, b| a.0 <= b.0) {
            bindings.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        if let Some(pair) = bindings.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(invalid(
                "clients",
                format!("duplicate client `{}`", pair[0].0),
            ));
        }

        let mut trusted_headers: Vec<String> = apis
            .iter()
            .flat_map(|api| {
                std::iter::once(api.identity_header.clone()).chain(api.policies_header.clone())
            })
            .collect();
        trusted_headers.sort_unstable();
        trusted_headers.dedup();

        let reads_method = policies.iter().any(|policy| {
            policy
                .access
                .iter()
                .any(|access| !access.methods.is_empty())
        });
        let reads_host = snapshot.apis.iter().any(|api| !api.hosts.is_empty());
        Ok(CompiledSnapshot {
            reads_method,
            reads_host,
            version: snapshot.version,
            verification_fingerprint: fingerprint,
            apis,
            routes,
            issuers,
            policies,
            policy_index: policy_index
                .into_iter()
                .map(|(id, index)| (Box::from(id), index))
                .collect(),
            bindings,
            revoked: snapshot
                .revoked_clients
                .iter()
                .map(|id| Box::from(id.as_str()))
                .collect(),
            trusted_headers,
        })
    }

    /// The API a request belongs to, by path and host.
    pub fn route<'p>(
        &self,
        path: impl Into<NormalizedPath<'p>>,
        host: Option<&str>,
    ) -> Option<usize> {
        self.routes.find(path, host)
    }

    /// The policy with this id.
    pub fn policy(&self, id: &str) -> Option<usize> {
        self.policy_index.get(id).copied()
    }

    /// The policies a client holds through its registration.
    pub fn bindings(&self, client_id: &str) -> &[usize] {
        match self
            .bindings
            .binary_search_by(|(id, _)| id.as_str().cmp(client_id))
        {
            Ok(index) => &self.bindings[index].1,
            Err(_) => &[],
        }
    }

    /// Whether a client's tokens are refused.
    pub fn is_revoked(&self, client_id: &str) -> bool {
        self.revoked.contains(client_id)
    }

    /// A hash of everything token verification depends on (APIs and issuers): when it changes,
    /// cached verification results must be dropped.
    pub fn verification_fingerprint(&self) -> u64 {
        self.verification_fingerprint
    }

    /// The trusted issuers of an API, in its configured order.
    pub fn api_issuers(&self, api: &CompiledApi) -> Vec<&TrustedIssuer> {
        api.issuers
            .iter()
            .map(|index| &self.issuers[*index].trusted)
            .collect()
    }
}

/// The media type of the binary snapshot encoding.
pub const BINARY_MEDIA_TYPE: &str = "application/vnd.portico.snapshot.v1+postcard";
/// The first bytes of a binary snapshot: a magic number and the format version, so that a
/// filter can tell the encodings apart and never misreads another format.
const BINARY_MAGIC: &[u8; 4] = b"PSN\x01";

// === impl Snapshot ===

impl Snapshot {
    /// The compact binary encoding (postcard, behind a magic prefix).
    pub fn to_binary(&self) -> Result<Vec<u8>, SnapshotError> {
        let out = BINARY_MAGIC.to_vec();
        postcard::to_extend(self, out).map_err(|err| invalid(".", format!("cannot encode: {err}")))
    }

    /// Decodes either encoding: binary when the magic prefix is there, JSON otherwise.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        match bytes.strip_prefix(BINARY_MAGIC) {
            Some(payload) => {
                let (snapshot, rest) = postcard::take_from_bytes::<Snapshot>(payload)
                    .map_err(|err| invalid(".", format!("not a binary snapshot: {err}")))?;
                if !rest.is_empty() {
                    return Err(invalid(
                        ".",
                        format!("{} bytes after the snapshot", rest.len()),
                    ));
                }
                Ok(snapshot)
            }
            None => {
                let mut deserializer = serde_json::Deserializer::from_slice(bytes);
                serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
                    let message = err.inner().to_string();
                    let message = message
                        .split(" at line ")
                        .next()
                        .unwrap_or(&message)
                        .to_owned();
                    invalid(err.path().to_string(), message)
                })
            }
        }
    }
}

fn unique_ids<'a>(
    ids: impl Iterator<Item = &'a str>,
    collection: &str,
) -> Result<HashMap<&'a str, usize>, SnapshotError> {
    let mut index = HashMap::new();
    for (position, id) in ids.enumerate() {
        if id.is_empty() {
            return Err(invalid(
                format!("{collection}[{position}].id"),
                "must not be empty",
            ));
        }
        if index.insert(id, position).is_some() {
            return Err(invalid(
                format!("{collection}[{position}].id"),
                format!("duplicate id `{id}`"),
            ));
        }
    }
    Ok(index)
}

fn compile_issuers(specs: &[IssuerSpec]) -> Result<Vec<CompiledIssuer>, SnapshotError> {
    unique_ids(specs.iter().map(|spec| spec.id.as_str()), "issuers")?;
    specs
        .iter()
        .enumerate()
        .map(|(index, spec)| {
            let path = format!("issuers[{index}]");
            if spec.issuer.is_empty() {
                return Err(invalid(format!("{path}.issuer"), "must not be empty"));
            }
            let mut set = KeySet::from_jwks(&spec.keys.0);
            for (i, secret) in spec.hmac_secrets.iter().enumerate() {
                let field = format!("{path}.hmac_secrets[{i}]");
                let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(secret.secret.trim_end_matches('='))
                    .map_err(|_| invalid(format!("{field}.secret"), "not valid base64url"))?;
                let key = VerifyingKey::hmac(secret.kid.clone(), secret.alg, bytes)
                    .map_err(|err| invalid(field, err.to_string()))?;
                set.keys.push(key);
            }
            Ok(CompiledIssuer {
                id: spec.id.clone(),
                trusted: TrustedIssuer {
                    issuer: spec.issuer.clone(),
                    keys: set.keys,
                },
                skipped_keys: set.skipped,
            })
        })
        .collect()
}

fn compile_api(
    spec: &ApiSpec,
    path: &str,
    issuer_index: &HashMap<&str, usize>,
    policy_index: &HashMap<&str, usize>,
) -> Result<CompiledApi, SnapshotError> {
    if !spec.listen_path.starts_with('/') {
        return Err(invalid(
            format!("{path}.listen_path"),
            "must start with `/`",
        ));
    }
    if spec.issuers.is_empty() {
        return Err(invalid(
            format!("{path}.issuers"),
            "must name at least one issuer",
        ));
    }
    let issuers = spec
        .issuers
        .iter()
        .enumerate()
        .map(|(i, id)| {
            issuer_index.get(id.as_str()).copied().ok_or_else(|| {
                invalid(
                    format!("{path}.issuers[{i}]"),
                    format!("unknown issuer `{id}`"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let allowed_algorithms: AlgorithmSet = spec.allowed_algorithms.iter().copied().collect();
    if allowed_algorithms.is_empty() {
        return Err(invalid(
            format!("{path}.allowed_algorithms"),
            "must not be empty",
        ));
    }
    if spec.identity_claims.is_empty() || spec.identity_claims.iter().any(String::is_empty) {
        return Err(invalid(
            format!("{path}.identity_claims"),
            "must list at least one claim name",
        ));
    }
    if spec.clock_skew_seconds > MAX_CLOCK_SKEW_SECONDS {
        return Err(invalid(
            format!("{path}.clock_skew_seconds"),
            format!("must be at most {MAX_CLOCK_SKEW_SECONDS}"),
        ));
    }
    if spec.max_token_bytes == 0 {
        return Err(invalid(
            format!("{path}.max_token_bytes"),
            "must be positive",
        ));
    }
    let default_policies = spec
        .default_policies
        .iter()
        .enumerate()
        .map(|(i, id)| {
            policy_index.get(id.as_str()).copied().ok_or_else(|| {
                invalid(
                    format!("{path}.default_policies[{i}]"),
                    format!("unknown policy `{id}`"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let identity_header = header_name(&spec.identity_header, &format!("{path}.identity_header"))?;
    let policies_header = spec
        .policies_header
        .as_deref()
        .map(|name| header_name(name, &format!("{path}.policies_header")))
        .transpose()?;
    Ok(CompiledApi {
        id: spec.id.clone(),
        issuers,
        rules: TokenRules {
            allowed_algorithms,
            max_token_bytes: spec.max_token_bytes,
            require_exp: spec.require_exp,
            clock_skew_seconds: spec.clock_skew_seconds,
            audiences: spec.audiences.clone(),
            expected_typ: spec.expected_typ.clone(),
        },
        identity_claims: spec.identity_claims.clone(),
        policy_claim: spec.policy_claim.clone(),
        default_policies,
        identity_header,
        policies_header,
    })
}

/// Header names are HTTP tokens; pseudo-headers and hop-by-hop names are refused.
fn header_name(name: &str, path: &str) -> Result<String, SnapshotError> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    let lower = name.to_ascii_lowercase();
    let reserved = matches!(
        lower.as_str(),
        "authorization" | "host" | "connection" | "content-length" | "transfer-encoding" | "te"
    );
    if !valid || reserved {
        return Err(invalid(
            path,
            format!("`{name}` is not a usable header name"),
        ));
    }
    Ok(lower)
}

fn compile_policy(
    spec: &PolicySpec,
    path: &str,
    api_index: &HashMap<&str, usize>,
) -> Result<CompiledPolicy, SnapshotError> {
    let access = spec
        .access_rights
        .iter()
        .enumerate()
        .map(|(i, right)| {
            let field = format!("{path}.access_rights[{i}]");
            let api = api_index.get(right.api.as_str()).copied().ok_or_else(|| {
                invalid(
                    format!("{field}.api"),
                    format!("unknown API `{}`", right.api),
                )
            })?;
            for (j, prefix) in right.path_prefixes.iter().enumerate() {
                if !prefix.starts_with('/') {
                    return Err(invalid(
                        format!("{field}.path_prefixes[{j}]"),
                        "must start with `/`",
                    ));
                }
            }
            Ok(CompiledAccess {
                api,
                methods: right
                    .methods
                    .iter()
                    .map(|m| m.to_ascii_uppercase())
                    .collect(),
                path_prefixes: right
                    .path_prefixes
                    .iter()
                    .map(|prefix| {
                        crate::routing::normalize_path(prefix)
                            .trim_end_matches('/')
                            .to_owned()
                    })
                    .collect(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(limit) = spec.rate_limit
        && (limit.requests == 0 || limit.per_seconds == 0)
    {
        return Err(invalid(
            format!("{path}.rate_limit"),
            "requests and per_seconds must be positive",
        ));
    }
    if let Some(quota) = spec.quota
        && quota.renewal_seconds == 0
    {
        return Err(invalid(
            format!("{path}.quota.renewal_seconds"),
            "must be positive",
        ));
    }
    Ok(CompiledPolicy {
        id: Arc::from(spec.id.as_str()),
        active: spec.state == PolicyState::Active,
        access,
        rate_limit: spec.rate_limit,
        quota: spec.quota,
    })
}

fn verification_fingerprint(snapshot: &Snapshot) -> u64 {
    // Derived `Hash` is not available for JSON values, so hash their canonical text.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(&snapshot.apis)
        .unwrap_or_default()
        .hash(&mut hasher);
    serde_json::to_string(&snapshot.issuers)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests;
