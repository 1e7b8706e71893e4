//! Compiling a [`Snapshot`]: every rule of [`crate::rules`] and every reference checked, then
//! the per-request lookup structures built. A snapshot that does not compile is never applied.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use base64::Engine as _;

use super::{
    AccessRight, ApiSpec, ClientBinding, GlobalSpec, IssuerSpec, LimitScope, PolicySpec,
    PolicyState, QuotaSpec, RateLimitSpec, Snapshot, TokenSources, Unmatched,
};
use crate::alg::{AlgorithmSet, KeyFamily};
use crate::jwk::{KeySet, SkippedKey, VerifyingKey};
use crate::routing::{HostPattern, NormalizedPath, RouteTable};
use crate::rules::{self, RuleViolation};
use crate::token::{TokenRules, TrustedIssuer};

/// The sections of a snapshot whose items have ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Section {
    /// `apis`.
    Apis,
    /// `issuers`.
    Issuers,
    /// `policies`.
    Policies,
    /// `clients` (bindings, by `client_id`).
    Clients,
    /// `global`.
    Global,
}

/// One item of a section, by id, and the field at fault (`listen_path`, `hosts[1]`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// The section.
    pub section: Section,
    /// The item's id (empty for `global`).
    pub id: String,
    /// The field within the item, as a path.
    pub field: String,
}

/// Why a snapshot cannot be applied, naming the offending field by its path, and, when the
/// fault lies with one item, that item (and the item it clashes with, for conflicts), so that
/// the control plane can answer the admin write that caused it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SnapshotError {
    /// Where, e.g. `apis[2].issuers[0]`.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// The item at fault, when there is one.
    pub subject: Option<Box<Subject>>,
    /// The other item of a conflict (the one that already holds a route, say).
    pub conflicts_with: Option<Box<Subject>>,
}

// === impl SnapshotError ===

impl SnapshotError {
    /// An error at `path` that names no item (decoding, the whole snapshot).
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        SnapshotError {
            path: path.into(),
            message: message.into(),
            subject: None,
            conflicts_with: None,
        }
    }
}

/// Where in the snapshot a check runs: a section item with its position and id.
#[derive(Clone, Copy)]
struct Item<'a> {
    section: Section,
    index: usize,
    id: &'a str,
}

impl Item<'_> {
    fn path(&self, field: &str) -> String {
        let section = match self.section {
            Section::Apis => "apis",
            Section::Issuers => "issuers",
            Section::Policies => "policies",
            Section::Clients => "clients",
            Section::Global => return format!("global.{field}"),
        };
        if field.is_empty() {
            format!("{section}[{}]", self.index)
        } else {
            format!("{section}[{}].{field}", self.index)
        }
    }

    fn subject(&self, field: &str) -> Subject {
        Subject {
            section: self.section,
            id: self.id.to_owned(),
            field: field.to_owned(),
        }
    }

    fn error(&self, field: &str, message: impl Into<String>) -> SnapshotError {
        SnapshotError {
            path: self.path(field),
            message: message.into(),
            subject: Some(Box::new(self.subject(field))),
            conflicts_with: None,
        }
    }

    fn rule<T>(&self, field: &str, result: Result<T, RuleViolation>) -> Result<T, SnapshotError> {
        result.map_err(|violation| self.error(field, violation.0))
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
    api_index: HashMap<Box<str>, usize>,
    /// The issuers, with parsed keys.
    pub issuers: Vec<CompiledIssuer>,
    /// The policies.
    pub policies: Vec<CompiledPolicy>,
    policy_index: HashMap<Box<str>, usize>,
    /// Client bindings sorted by client id (binary search needs no hashing to build).
    bindings: Vec<Binding>,
    revoked: HashSet<Box<str>>,
    /// Quotas spent across the fleet: (policy index, subject key) to when they renew.
    exhausted: HashMap<(usize, Box<str>), u64>,
    /// What happens to requests that match no API.
    pub unmatched: UnmatchedRule,
    /// Every header name that carries identity, policies or metadata upstream, lower-case:
    /// stripped from client requests everywhere (in any spelling: see [`rules::header_key`]), so
    /// no upstream can be fooled by a client-sent copy.
    pub trusted_headers: Vec<String>,
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
    /// Upstream metadata headers: name (lower-case) and the policy metadata key filling it.
    pub metadata_headers: Vec<(String, String)>,
    /// Where the token is read; the query parameter as [`rules::parameter_key`] compares it.
    pub token_sources: TokenSources,
    /// Whether paths match letter case exactly.
    pub case_sensitive_paths: bool,
    /// Whether CORS preflights pass without a token.
    pub bypass_cors_preflight: bool,
    /// Whether some policy restricts the methods it grants on this API: then method-override
    /// headers and parameters are refused.
    pub restricts_methods: bool,
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
    /// Whom its rate limit and quota count.
    pub limit_scope: LimitScope,
    /// Its metadata, for the APIs' metadata headers.
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// The Portico client and developer of a caller's binding ([`CompiledSnapshot::caller_binding`]);
/// both absent for a caller that is not a registered client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallerBinding<'a> {
    client: Option<&'a str>,
    developer: Option<&'a str>,
}

impl<'a> CallerBinding<'a> {
    /// The Portico client (record id) the caller is bound as, if its binding names one.
    pub fn client(&self) -> Option<&'a str> {
        self.client
    }

    /// Whom a limit of `scope` counts for this caller, whose identity is `identity`: the
    /// developer for [`LimitScope::Developer`] when the binding names one, else the Portico
    /// client when it names one, else the identity itself (a caller that is not a registered
    /// client, or a binding from a snapshot that names neither).
    pub fn limit_subject(&self, identity: &'a str, scope: LimitScope) -> LimitSubject<'a> {
        match (scope, self.developer, self.client) {
            (LimitScope::Developer, Some(developer), _) => LimitSubject::Developer(developer),
            (_, _, Some(client)) => LimitSubject::Client(client),
            _ => LimitSubject::Identity(identity),
        }
    }
}

/// Whom a rate limit or a quota counts (see [`CallerBinding::limit_subject`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitSubject<'a> {
    /// All the clients of this developer together.
    Developer(&'a str),
    /// This Portico OAuth client, whatever its current `client_id`.
    Client(&'a str),
    /// A caller that is not a registered client: its identity (usually the `client_id`).
    Identity(&'a str),
}

impl LimitSubject<'_> {
    /// A one-letter kind and the id: the subject's part of a counter key, unambiguous across
    /// kinds (`d`, `c`, `i`).
    pub fn key_part(&self) -> (char, &str) {
        match self {
            LimitSubject::Developer(id) => ('d', id),
            LimitSubject::Client(id) => ('c', id),
            LimitSubject::Identity(id) => ('i', id),
        }
    }

    /// The subject as usage reports and exhausted quotas name it: `<kind>:<id>`.
    pub fn key(&self) -> String {
        let (kind, id) = self.key_part();
        format!("{kind}:{id}")
    }
}

/// A policy bound to a client through its registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoundPolicy {
    /// The policy index.
    pub policy: usize,
    /// When the binding stops granting, in seconds since the Unix epoch; `None`: never.
    pub expires_at: Option<u64>,
}

// === impl BoundPolicy ===

impl BoundPolicy {
    /// Whether the binding still grants at `now_seconds` (since the Unix epoch): it expires
    /// at the second `expires_at`, not after it.
    pub fn live_at(&self, now_seconds: u64) -> bool {
        self.expires_at
            .is_none_or(|expires_at| now_seconds < expires_at)
    }
}

/// Access to one API, compiled.
#[derive(Debug)]
pub struct CompiledAccess {
    /// The API index.
    pub api: usize,
    /// Allowed methods, upper-case; empty means all.
    pub methods: Vec<String>,
    /// Allowed path prefixes, in normal form without trailing slash, letter case as written
    /// (grants compare case-sensitively, [`crate::policy::granting_policies`]); empty means all.
    pub path_prefixes: Vec<String>,
}

// === impl CompiledSnapshot ===

impl CompiledSnapshot {
    /// Validates `snapshot` against the rules and builds its lookup structures.
    ///
    /// # Errors
    /// The first [`SnapshotError`] found: a field that breaks a rule of [`crate::rules`], an
    /// unknown reference, a duplicate id, two APIs on one route, or key material that is not
    /// a public key.
    pub fn compile(snapshot: Snapshot) -> Result<CompiledSnapshot, SnapshotError> {
        let fingerprint = verification_fingerprint(&snapshot);
        let issuers = compile_issuers(&snapshot.issuers)?;
        let issuer_index = unique_ids(
            Section::Issuers,
            snapshot.issuers.iter().map(|i| i.id.as_str()),
        )?;
        let api_index = unique_ids(Section::Apis, snapshot.apis.iter().map(|a| a.id.as_str()))?;
        let policy_index = unique_ids(
            Section::Policies,
            snapshot.policies.iter().map(|p| p.id.as_str()),
        )?;
        let mut apis = snapshot
            .apis
            .iter()
            .enumerate()
            .map(|(index, spec)| {
                let item = Item {
                    section: Section::Apis,
                    index,
                    id: &spec.id,
                };
                compile_api(spec, item, &issuers, &issuer_index, &policy_index)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let routes = route_table(&snapshot.apis)?;
        let policies = snapshot
            .policies
            .iter()
            .enumerate()
            .map(|(index, spec)| {
                let item = Item {
                    section: Section::Policies,
                    index,
                    id: &spec.id,
                };
                compile_policy(spec, item, &api_index)
            })
            .collect::<Result<Vec<_>, _>>()?;
        for access in policies.iter().flat_map(|policy| &policy.access) {
            if !access.methods.is_empty() {
                apis[access.api].restricts_methods = true;
            }
        }
        let bindings = compile_bindings(snapshot.clients, &policy_index)?;
        let exhausted = snapshot
            .exhausted_quotas
            .iter()
            .filter_map(|entry| {
                let policy = *policy_index.get(entry.policy.as_str())?;
                Some(((policy, Box::from(entry.subject.as_str())), entry.until))
            })
            .collect();
        let unmatched = compile_global(&snapshot.global).map_err(|(field, message)| {
            Item {
                section: Section::Global,
                index: 0,
                id: "",
            }
            .error(&field, message)
        })?;
        let trusted_headers = trusted_headers(&apis);
        Ok(CompiledSnapshot {
            version: snapshot.version,
            verification_fingerprint: fingerprint,
            api_index: owned_index(api_index),
            policy_index: owned_index(policy_index),
            apis,
            routes,
            issuers,
            policies,
            bindings,
            exhausted,
            revoked: snapshot
                .revoked_clients
                .iter()
                .map(|id| Box::from(id.as_str()))
                .collect(),
            unmatched,
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

    /// The API with this id (as Envoy route metadata names it).
    pub fn api(&self, id: &str) -> Option<usize> {
        self.api_index.get(id).copied()
    }

    /// The policy with this id.
    pub fn policy(&self, id: &str) -> Option<usize> {
        self.policy_index.get(id).copied()
    }

    /// The policies a client holds through its registration, live or expired.
    pub fn bindings(&self, client_id: &str) -> &[BoundPolicy] {
        self.binding(client_id)
            .map_or(&[], |binding| &binding.policies)
    }

    fn binding(&self, client_id: &str) -> Option<&Binding> {
        self.bindings
            .binary_search_by(|binding| binding.client_id.as_str().cmp(client_id))
            .ok()
            .map(|index| &self.bindings[index])
    }

    /// What the binding of the caller `client_id` says about whom its limits count (one
    /// lookup, for every limit of the request).
    pub fn caller_binding(&self, client_id: &str) -> CallerBinding<'_> {
        self.binding(client_id)
            .map_or_else(CallerBinding::default, |binding| CallerBinding {
                client: binding.client.as_deref(),
                developer: binding.developer.as_deref(),
            })
    }

    /// When the quota of policy `policy` (an index) for `subject` (a [`LimitSubject::key`])
    /// renews, if the control plane found it spent across the fleet and it has not renewed
    /// at `now_seconds` (since the Unix epoch).
    pub fn quota_exhausted_until(
        &self,
        policy: usize,
        subject: &str,
        now_seconds: u64,
    ) -> Option<u64> {
        self.exhausted
            .get(&(policy, Box::from(subject)))
            .copied()
            .filter(|until| now_seconds < *until)
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

fn owned_index(index: HashMap<&str, usize>) -> HashMap<Box<str>, usize> {
    index
        .into_iter()
        .map(|(id, position)| (Box::from(id), position))
        .collect()
}

/// Ids of one section: non-empty and distinct.
fn unique_ids<'a>(
    section: Section,
    ids: impl Iterator<Item = &'a str>,
) -> Result<HashMap<&'a str, usize>, SnapshotError> {
    let mut index = HashMap::new();
    for (position, id) in ids.enumerate() {
        let item = Item {
            section,
            index: position,
            id,
        };
        if id.is_empty() {
            return Err(item.error("id", "must not be empty"));
        }
        if index.insert(id, position).is_some() {
            return Err(item.error("id", format!("duplicate id `{id}`")));
        }
    }
    Ok(index)
}

/// Resolves each id of a list field against an index.
fn references(
    item: Item<'_>,
    field: &str,
    ids: &[String],
    index: &HashMap<&str, usize>,
    kind: &str,
) -> Result<Vec<usize>, SnapshotError> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            index.get(id.as_str()).copied().ok_or_else(|| {
                item.error(&format!("{field}[{i}]"), format!("unknown {kind} `{id}`"))
            })
        })
        .collect()
}

/// Issuers: their keys parsed (public keys only) and their HMAC secrets decoded.
fn compile_issuers(specs: &[IssuerSpec]) -> Result<Vec<CompiledIssuer>, SnapshotError> {
    specs
        .iter()
        .enumerate()
        .map(|(index, spec)| {
            let item = Item {
                section: Section::Issuers,
                index,
                id: &spec.id,
            };
            if spec.issuer.is_empty() {
                return Err(item.error("issuer", "must not be empty"));
            }
            for (i, jwk) in spec.keys.0.iter().enumerate() {
                item.rule(&format!("keys[{i}]"), crate::jwk::public_only(jwk))?;
            }
            if let Some(lifetime) = spec.max_token_lifetime_seconds {
                item.rule(
                    "max_token_lifetime_seconds",
                    rules::lifetime_seconds(lifetime),
                )?;
            }
            let mut set = KeySet::from_jwks(&spec.keys.0);
            for (i, secret) in spec.hmac_secrets.iter().enumerate() {
                let field = format!("hmac_secrets[{i}]");
                let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(secret.secret.trim_end_matches('='))
                    .map_err(|_| item.error(&format!("{field}.secret"), "not valid base64url"))?;
                let key = VerifyingKey::hmac(secret.kid.clone(), secret.alg, bytes)
                    .map_err(|err| item.error(&field, err.to_string()))?;
                set.keys.push(key);
            }
            Ok(CompiledIssuer {
                id: spec.id.clone(),
                trusted: TrustedIssuer {
                    issuer: spec.issuer.clone(),
                    keys: set.keys,
                    max_token_lifetime_seconds: spec.max_token_lifetime_seconds,
                },
                skipped_keys: set.skipped,
            })
        })
        .collect()
}

/// One API: every field against the rules, references resolved.
fn compile_api(
    spec: &ApiSpec,
    item: Item<'_>,
    issuers: &[CompiledIssuer],
    issuer_index: &HashMap<&str, usize>,
    policy_index: &HashMap<&str, usize>,
) -> Result<CompiledApi, SnapshotError> {
    item.rule("listen_path", rules::listen_path(&spec.listen_path))?;
    if spec.issuers.is_empty() {
        return Err(item.error("issuers", "must name at least one issuer"));
    }
    let api_issuers = references(item, "issuers", &spec.issuers, issuer_index, "issuer")?;
    let allowed_algorithms: AlgorithmSet = spec.allowed_algorithms.iter().copied().collect();
    if allowed_algorithms.is_empty() {
        return Err(item.error("allowed_algorithms", "must not be empty"));
    }
    for (i, alg) in spec.allowed_algorithms.iter().enumerate() {
        let hmac_available = api_issuers.iter().any(|issuer| {
            issuers[*issuer]
                .trusted
                .keys
                .iter()
                .any(|key| key.family() == KeyFamily::Hmac)
        });
        if alg.family() == KeyFamily::Hmac && !hmac_available {
            return Err(item.error(
                &format!("allowed_algorithms[{i}]"),
                format!("{alg} needs an issuer with an HMAC secret"),
            ));
        }
    }
    if spec.audiences.is_empty() && !spec.accept_any_audience {
        return Err(item.error(
            "audiences",
            "must name at least one audience (or set accept_any_audience: true to accept \
             tokens minted for any service of the issuer)",
        ));
    }
    for (i, audience) in spec.audiences.iter().enumerate() {
        item.rule(&format!("audiences[{i}]"), rules::token_text(audience))?;
    }
    if spec.identity_claims.is_empty() {
        return Err(item.error("identity_claims", "must list at least one claim name"));
    }
    for (i, claim) in spec.identity_claims.iter().enumerate() {
        item.rule(&format!("identity_claims[{i}]"), rules::token_text(claim))?;
    }
    item.rule("policy_claim", rules::token_text(&spec.policy_claim))?;
    if let Some(typ) = &spec.expected_typ {
        item.rule("expected_typ", rules::token_text(typ))?;
    }
    item.rule(
        "clock_skew_seconds",
        rules::clock_skew_seconds(spec.clock_skew_seconds),
    )?;
    item.rule(
        "max_token_bytes",
        rules::max_token_bytes(spec.max_token_bytes),
    )?;
    let default_policies = references(
        item,
        "default_policies",
        &spec.default_policies,
        policy_index,
        "policy",
    )?;
    let identity_header =
        item.rule("identity_header", rules::header_name(&spec.identity_header))?;
    let policies_header = spec
        .policies_header
        .as_deref()
        .map(|name| item.rule("policies_header", rules::header_name(name)))
        .transpose()?;
    if policies_header.as_ref() == Some(&identity_header) {
        return Err(item.error("policies_header", "must differ from identity_header"));
    }
    let metadata_headers = rules::metadata_headers(
        spec.metadata_headers.iter(),
        &identity_header,
        policies_header.as_deref(),
    )
    .map_err(|(field, violation)| item.error(&field, violation.0))?;
    let sources = &spec.token_sources;
    let query = sources
        .query
        .as_deref()
        .map(|name| item.rule("token_sources.query", rules::query_parameter(name)))
        .transpose()?;
    if let Some(cookie) = &sources.cookie {
        item.rule("token_sources.cookie", rules::cookie_name(cookie))?;
    }
    if !sources.header && query.is_none() && sources.cookie.is_none() {
        return Err(item.error(
            "token_sources",
            "must read the token from at least one place (header, query or cookie)",
        ));
    }
    Ok(CompiledApi {
        id: spec.id.clone(),
        issuers: api_issuers,
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
        metadata_headers,
        token_sources: TokenSources {
            header: sources.header,
            query,
            cookie: sources.cookie.clone(),
        },
        case_sensitive_paths: spec.case_sensitive_paths,
        bypass_cors_preflight: spec.bypass_cors_preflight,
        restricts_methods: false,
    })
}

/// The route table: each API's listen path and hosts in canonical form; two APIs on one
/// route are a conflict that names both.
fn route_table(apis: &[ApiSpec]) -> Result<RouteTable, SnapshotError> {
    let mut routes = RouteTable::for_apis();
    for (index, spec) in apis.iter().enumerate() {
        let item = Item {
            section: Section::Apis,
            index,
            id: &spec.id,
        };
        let hosts = spec
            .hosts
            .iter()
            .enumerate()
            .map(|(i, host)| item.rule(&format!("hosts[{i}]"), rules::host(host)))
            .collect::<Result<Vec<HostPattern>, _>>()?;
        if let Some((i, _)) = hosts
            .iter()
            .enumerate()
            .find(|(i, host)| hosts[..*i].contains(host))
        {
            return Err(item.error(&format!("hosts[{i}]"), "repeats an earlier host"));
        }
        routes
            .insert(index, &spec.listen_path, &hosts, spec.case_sensitive_paths)
            .map_err(|conflict| {
                let other = &apis[conflict.other];
                let other_item = Item {
                    section: Section::Apis,
                    index: conflict.other,
                    id: &other.id,
                };
                let mut error = item.error(
                    "listen_path",
                    format!(
                        "listen_path `{}` is the same route as API `{}` (`{}`) on an overlapping \
                         host set",
                        spec.listen_path, other.id, other.listen_path
                    ),
                );
                error.conflicts_with = Some(Box::new(other_item.subject("listen_path")));
                error
            })?;
    }
    Ok(routes)
}

/// One policy: its access rights resolved, path prefixes in normal form, limits positive.
fn compile_policy(
    spec: &PolicySpec,
    item: Item<'_>,
    api_index: &HashMap<&str, usize>,
) -> Result<CompiledPolicy, SnapshotError> {
    let access = spec
        .access_rights
        .iter()
        .enumerate()
        .map(|(i, right)| compile_access(right, item, &format!("access_rights[{i}]"), api_index))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(limit) = spec.rate_limit {
        item.rule(
            "rate_limit.requests",
            rules::request_count(u64::from(limit.requests), rules::MAX_RATE_LIMIT_REQUESTS),
        )?;
        item.rule(
            "rate_limit.per_seconds",
            rules::period_seconds(u64::from(limit.per_seconds)),
        )?;
    }
    if let Some(quota) = spec.quota {
        item.rule(
            "quota.max",
            rules::request_count(quota.max, rules::MAX_QUOTA_REQUESTS),
        )?;
        item.rule(
            "quota.renewal_seconds",
            rules::period_seconds(quota.renewal_seconds),
        )?;
    }
    if let Some(lifetime) = spec.lifetime_seconds {
        item.rule("lifetime_seconds", rules::lifetime_seconds(lifetime))?;
    }
    rules::metadata(spec.metadata.iter())
        .map_err(|(field, violation)| item.error(&field, violation.0))?;
    Ok(CompiledPolicy {
        id: Arc::from(spec.id.as_str()),
        active: spec.state == PolicyState::Active,
        access,
        rate_limit: spec.rate_limit,
        quota: spec.quota,
        limit_scope: spec.limit_scope,
        metadata: spec.metadata.clone(),
    })
}

fn compile_access(
    right: &AccessRight,
    item: Item<'_>,
    field: &str,
    api_index: &HashMap<&str, usize>,
) -> Result<CompiledAccess, SnapshotError> {
    let api = api_index.get(right.api.as_str()).copied().ok_or_else(|| {
        item.error(
            &format!("{field}.api"),
            format!("unknown API `{}`", right.api),
        )
    })?;
    let mut methods = Vec::with_capacity(right.methods.len());
    for (j, method) in right.methods.iter().enumerate() {
        methods.push(item.rule(&format!("{field}.methods[{j}]"), rules::method(method))?);
    }
    let path_prefixes = right
        .path_prefixes
        .iter()
        .enumerate()
        .map(|(j, prefix)| {
            item.rule(
                &format!("{field}.path_prefixes[{j}]"),
                rules::path_prefix(prefix, true),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CompiledAccess {
        api,
        methods,
        path_prefixes,
    })
}

/// A client id, the policies it is bound to, and whom its limits count.
#[derive(Debug)]
struct Binding {
    client_id: String,
    policies: Box<[BoundPolicy]>,
    client: Option<Box<str>>,
    developer: Option<Box<str>>,
}

/// Client bindings, resolved and sorted by client id; one binding per client.
fn compile_bindings(
    clients: Vec<ClientBinding>,
    policy_index: &HashMap<&str, usize>,
) -> Result<Vec<Binding>, SnapshotError> {
    let mut bindings = Vec::with_capacity(clients.len());
    for (index, binding) in clients.into_iter().enumerate() {
        let item = Item {
            section: Section::Clients,
            index,
            id: &binding.client_id,
        };
        let resolved = references(item, "policies", &binding.policies, policy_index, "policy")?;
        if let Some(policy) = binding
            .expires_at
            .keys()
            .find(|policy| !binding.policies.contains(policy))
        {
            return Err(item.error(
                &format!("expires_at.{policy}"),
                format!("policy `{policy}` is not one of the binding's policies"),
            ));
        }
        let bound = resolved
            .into_iter()
            .zip(&binding.policies)
            .map(|(policy, id)| BoundPolicy {
                policy,
                expires_at: binding.expires_at.get(id).copied(),
            })
            .collect();
        bindings.push(Binding {
            client_id: binding.client_id,
            policies: bound,
            client: binding.client.map(String::into_boxed_str),
            developer: binding.developer.map(String::into_boxed_str),
        });
    }
    // The control plane sends bindings sorted; sort only when they are not.
    if !bindings.is_sorted_by(|a, b| a.client_id <= b.client_id) {
        bindings.sort_unstable_by(|a, b| a.client_id.cmp(&b.client_id));
    }
    if let Some(pair) = bindings
        .windows(2)
        .find(|pair| pair[0].client_id == pair[1].client_id)
    {
        let duplicate = &pair[0].client_id;
        let item = Item {
            section: Section::Clients,
            index: 0,
            id: duplicate,
        };
        let mut error = item.error("client_id", format!("duplicate client `{duplicate}`"));
        error.path = "clients".to_owned();
        return Err(error);
    }
    Ok(bindings)
}

/// What happens to a request that matches no API, compiled from a [`GlobalSpec`] (the
/// snapshot's, or the plugin configuration's when it overrides it).
#[derive(Clone, Debug, Default)]
pub struct UnmatchedRule {
    /// Pass or deny.
    pub unmatched: Unmatched,
    /// Prefixes that pass under `deny`.
    public_prefixes: RouteTable,
}

// === impl UnmatchedRule ===

impl UnmatchedRule {
    /// Whether a request that matched no API passes untouched.
    pub fn passes(&self, path: &NormalizedPath<'_>) -> bool {
        self.unmatched == Unmatched::Pass || self.public_prefixes.exempts(path)
    }
}

/// The global section: public prefixes in normal form, none repeated.
///
/// # Errors
/// The field (`public_prefixes[i]`) and what is wrong with it.
pub fn compile_global(global: &GlobalSpec) -> Result<UnmatchedRule, (String, String)> {
    let mut public_prefixes = RouteTable::default();
    for (i, prefix) in global.public_prefixes.iter().enumerate() {
        let field = format!("public_prefixes[{i}]");
        rules::path_prefix(prefix, true).map_err(|violation| (field.clone(), violation.0))?;
        public_prefixes
            .insert(i, prefix, &[], true)
            .map_err(|_| (field, "repeats an earlier prefix".to_owned()))?;
    }
    Ok(UnmatchedRule {
        unmatched: global.unmatched,
        public_prefixes,
    })
}

/// Every identity, policies and metadata header name, sorted and distinct.
fn trusted_headers(apis: &[CompiledApi]) -> Vec<String> {
    let mut headers: Vec<String> = apis
        .iter()
        .flat_map(|api| {
            std::iter::once(api.identity_header.clone())
                .chain(api.policies_header.clone())
                .chain(api.metadata_headers.iter().map(|(name, _)| name.clone()))
        })
        .collect();
    headers.sort_unstable();
    headers.dedup();
    headers
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
