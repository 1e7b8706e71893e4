//! Protected APIs: where they listen, which issuers they trust, how tokens are checked and how
//! identity and policies are found in them.

use portico_core::alg::Algorithm;
use portico_core::rules;
use portico_core::snapshot::{ApiSpec, TokenSources};
use serde::Deserialize;
use utoipa::ToSchema;

use super::issuers::Issuer;
use super::policies::Policy;
use super::{
    Actor, AppState, Page, PageRequest, Precondition, Resource, ResourceKind, ResourceRef,
    Versioned, to_value, validate,
};
use crate::error::ApiError;
use crate::store::Tree;

/// A protected API: exactly the snapshot's API (core's [`ApiSpec`]), stored as the operator
/// wrote it after validation; the filter reads the same record.
pub type Api = ApiSpec;

/// The body of a create or update of an API. Omitted optional fields take their defaults.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiInput {
    /// The id: required on create; on update it may be given but must match the path.
    #[serde(default)]
    pub id: Option<String>,
    /// A human name.
    pub name: String,
    /// The path prefix; must start with `/`.
    pub listen_path: String,
    /// Host names; default: any host.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Ids of trusted issuers (at least one).
    pub issuers: Vec<String>,
    /// Default: `["RS256", "ES256"]`.
    #[serde(default)]
    pub allowed_algorithms: Option<Vec<Algorithm>>,
    /// Accepted `aud` values: required unless `accept_any_audience` is `true`.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Default: `false`. `true` accepts tokens minted for any audience (RFC 8725 §3.9 warns
    /// against it).
    #[serde(default)]
    pub accept_any_audience: bool,
    /// Default: `["sub"]`.
    #[serde(default)]
    pub identity_claims: Option<Vec<String>>,
    /// Default: `"pol"`.
    #[serde(default)]
    pub policy_claim: Option<String>,
    /// Default: none.
    #[serde(default)]
    pub default_policies: Vec<String>,
    /// Default: 60; at most 600.
    #[serde(default)]
    pub clock_skew_seconds: Option<u64>,
    /// Default: `true`.
    #[serde(default)]
    pub require_exp: Option<bool>,
    /// Default: not checked.
    #[serde(default)]
    pub expected_typ: Option<String>,
    /// Default: 16384; between 1 and 65536.
    #[serde(default)]
    pub max_token_bytes: Option<usize>,
    /// Default: `x-portico-client-id`.
    #[serde(default)]
    pub identity_header: Option<String>,
    /// Default: none.
    #[serde(default)]
    pub policies_header: Option<String>,
    /// Upstream headers filled from the granting policy's metadata, header name to
    /// `{policy.metadata.<key>}`. Default: none.
    #[serde(default)]
    pub metadata_headers: std::collections::BTreeMap<String, String>,
    /// Where the token is read (RFC 6750 §2). Default: the `Authorization: Bearer` header
    /// only. A request with a token in more than one place is refused with 400
    /// `invalid_request`.
    #[serde(default)]
    pub token_sources: Option<TokenSources>,
    /// Default: `false`: paths match in any letter case, as many upstreams route them.
    #[serde(default)]
    pub case_sensitive_paths: bool,
    /// Default: `false`. `true` lets CORS preflights pass without a token.
    #[serde(default)]
    pub bypass_cors_preflight: bool,
}

/// Which APIs to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiFilter {
    /// Only APIs that trust this issuer id.
    pub issuer: Option<String>,
    /// Only APIs served on this host.
    pub host: Option<String>,
    /// Only APIs with this listen path.
    pub listen_path: Option<String>,
}

impl Resource for Api {
    const KIND: ResourceKind = ResourceKind::Api;
    const TREE: Tree = Tree::Apis;

    fn id(&self) -> &str {
        &self.id
    }

    fn audit_view(&self) -> serde_json::Value {
        to_value(self)
    }
}

impl ApiInput {
    /// The API this input describes: each field checked against core's rules (naming the field
    /// at fault), omitted fields set to core's defaults. What only the whole snapshot can tell
    /// (references, route clashes) is checked when the write is committed.
    fn validate(self, id: String) -> Result<Api, ApiError> {
        let name = validate::name("name", &self.name)?;
        validate::rule("listen_path", rules::listen_path(&self.listen_path))?;
        let mut hosts = Vec::with_capacity(self.hosts.len());
        for (i, host) in self.hosts.iter().enumerate() {
            hosts.push(validate::rule(&format!("hosts[{i}]"), rules::host(host))?.to_string());
        }
        validate::distinct("hosts", &hosts)?;
        validate::non_empty("issuers", &self.issuers)?;
        validate::distinct("issuers", &self.issuers)?;
        for (i, issuer) in self.issuers.iter().enumerate() {
            validate::slug(&format!("issuers[{i}]"), issuer)?;
        }
        let allowed_algorithms = self
            .allowed_algorithms
            .unwrap_or_else(|| rules::DEFAULT_ALGORITHMS.to_vec());
        validate::non_empty("allowed_algorithms", &allowed_algorithms)?;
        validate::distinct("allowed_algorithms", &allowed_algorithms)?;
        if let Some((i, alg)) = allowed_algorithms
            .iter()
            .enumerate()
            .find(|(_, alg)| alg.family() == portico_core::alg::KeyFamily::Hmac)
        {
            return Err(ApiError::invalid(
                format!("allowed_algorithms[{i}]"),
                format!(
                    "{alg} (HMAC) is available in static filter configurations only, where the \
                     shared secret stays in the Envoy configuration (docs/filter-config.md)"
                ),
            ));
        }
        validate::distinct("audiences", &self.audiences)?;
        for (i, audience) in self.audiences.iter().enumerate() {
            validate::rule(&format!("audiences[{i}]"), rules::token_text(audience))?;
        }
        if self.audiences.is_empty() && !self.accept_any_audience {
            return Err(ApiError::invalid(
                "audiences",
                "name the audience (`aud`) your IdP puts in this API's tokens, or set \
                 accept_any_audience: true to accept tokens minted for any of its services",
            ));
        }
        let identity_claims = self
            .identity_claims
            .unwrap_or_else(|| rules::DEFAULT_IDENTITY_CLAIMS.map(str::to_owned).to_vec());
        validate::non_empty("identity_claims", &identity_claims)?;
        validate::distinct("identity_claims", &identity_claims)?;
        for (i, claim) in identity_claims.iter().enumerate() {
            validate::rule(&format!("identity_claims[{i}]"), rules::token_text(claim))?;
        }
        let policy_claim = self
            .policy_claim
            .unwrap_or_else(|| rules::DEFAULT_POLICY_CLAIM.to_owned());
        validate::rule("policy_claim", rules::token_text(&policy_claim))?;
        validate::distinct("default_policies", &self.default_policies)?;
        for (i, policy) in self.default_policies.iter().enumerate() {
            validate::slug(&format!("default_policies[{i}]"), policy)?;
        }
        let clock_skew_seconds = self
            .clock_skew_seconds
            .unwrap_or(rules::DEFAULT_CLOCK_SKEW_SECONDS);
        validate::rule(
            "clock_skew_seconds",
            rules::clock_skew_seconds(clock_skew_seconds),
        )?;
        if let Some(typ) = &self.expected_typ {
            validate::rule("expected_typ", rules::token_text(typ))?;
        }
        let max_token_bytes = self
            .max_token_bytes
            .unwrap_or(rules::DEFAULT_MAX_TOKEN_BYTES);
        validate::rule("max_token_bytes", rules::max_token_bytes(max_token_bytes))?;
        let identity_header = validate::rule(
            "identity_header",
            rules::header_name(
                self.identity_header
                    .as_deref()
                    .unwrap_or(rules::DEFAULT_IDENTITY_HEADER),
            ),
        )?;
        let policies_header = self
            .policies_header
            .as_deref()
            .map(|header| validate::rule("policies_header", rules::header_name(header)))
            .transpose()?;
        if policies_header.as_ref() == Some(&identity_header) {
            return Err(ApiError::invalid(
                "policies_header",
                "must differ from identity_header",
            ));
        }
        rules::metadata_headers(
            self.metadata_headers.iter(),
            &identity_header,
            policies_header.as_deref(),
        )
        .map_err(|(field, violation)| ApiError::invalid(field, violation.0))?;
        let token_sources = self.token_sources.unwrap_or_default();
        if let Some(query) = &token_sources.query {
            validate::rule("token_sources.query", rules::query_parameter(query))?;
        }
        if let Some(cookie) = &token_sources.cookie {
            validate::rule("token_sources.cookie", rules::cookie_name(cookie))?;
        }
        if !token_sources.header && token_sources.query.is_none() && token_sources.cookie.is_none()
        {
            return Err(ApiError::invalid(
                "token_sources",
                "read the token from at least one place (header, query or cookie)",
            ));
        }
        Ok(ApiSpec {
            id,
            name,
            listen_path: self.listen_path,
            hosts,
            issuers: self.issuers,
            allowed_algorithms,
            audiences: self.audiences,
            accept_any_audience: self.accept_any_audience,
            identity_claims,
            policy_claim,
            default_policies: self.default_policies,
            clock_skew_seconds,
            require_exp: self.require_exp.unwrap_or(true),
            expected_typ: self.expected_typ,
            max_token_bytes,
            identity_header,
            policies_header,
            metadata_headers: self.metadata_headers,
            token_sources,
            case_sensitive_paths: self.case_sensitive_paths,
            bypass_cors_preflight: self.bypass_cors_preflight,
        })
    }
}

/// Protected APIs.
#[derive(Debug, Clone, Copy)]
pub struct Apis<'a> {
    state: &'a AppState,
}

impl<'a> Apis<'a> {
    pub(crate) fn new(state: &'a AppState) -> Self {
        Apis { state }
    }

    /// Creates an API. 422 if it names an unknown issuer or default policy; 409 if the id is
    /// taken or another API already serves the same route (listen path in normal form, on an
    /// overlapping host set).
    pub async fn create(&self, actor: &Actor, input: ApiInput) -> Result<Versioned<Api>, ApiError> {
        let id = validate::new_id(input.id.as_deref())?;
        let value = input.validate(id)?;
        self.state
            .create_checked(actor, value, |value| self.check(value))
            .await
    }

    /// Every API, in id order (the snapshot builder reads them all).
    pub fn all(&self) -> Result<Vec<Api>, ApiError> {
        self.state.values::<Api>()
    }

    /// Reads an API.
    pub fn get(&self, id: &str) -> Result<Versioned<Api>, ApiError> {
        self.state.fetch(id)
    }

    /// Lists APIs in id order.
    pub fn list(
        &self,
        page: &PageRequest,
        filter: &ApiFilter,
    ) -> Result<Page<Versioned<Api>>, ApiError> {
        let host = filter.host.as_ref().map(|host| host.to_ascii_lowercase());
        self.state.page(page, |api: &Api| {
            filter
                .issuer
                .as_ref()
                .is_none_or(|issuer| api.issuers.contains(issuer))
                && host.as_ref().is_none_or(|host| api.hosts.contains(host))
                && filter
                    .listen_path
                    .as_ref()
                    .is_none_or(|path| api.listen_path == *path)
        })
    }

    /// Replaces an API.
    pub async fn update(
        &self,
        actor: &Actor,
        id: &str,
        precondition: &Precondition,
        input: ApiInput,
    ) -> Result<Versioned<Api>, ApiError> {
        validate::same_id(id, input.id.as_deref())?;
        let value = input.validate(id.to_owned())?;
        self.state
            .replace_checked(actor, precondition, value, |value| self.check(value))
            .await
    }

    /// Deletes an API. 409 while a policy grants access to it.
    pub async fn delete(
        &self,
        actor: &Actor,
        id: &str,
        precondition: &Precondition,
    ) -> Result<(), ApiError> {
        self.state
            .delete_unreferenced::<Api>(
                actor,
                id,
                precondition,
                || {
                    Ok(self
                        .state
                        .values::<Policy>()?
                        .into_iter()
                        .filter(|policy| policy.access_rights.iter().any(|right| right.api == id))
                        .map(|policy| ResourceRef::new(ResourceKind::Policy, policy.id))
                        .collect())
                },
                || Ok(Vec::new()),
            )
            .await
    }

    /// References exist (named by field; route clashes are found when the candidate snapshot
    /// is compiled at commit).
    fn check(&self, api: &Api) -> Result<(), ApiError> {
        for (i, issuer) in api.issuers.iter().enumerate() {
            if !self.state.exists::<Issuer>(issuer)? {
                return Err(ApiError::unknown_reference(
                    format!("issuers[{i}]"),
                    format!("issuer `{issuer}` does not exist"),
                ));
            }
        }
        for (i, policy) in api.default_policies.iter().enumerate() {
            if !self.state.exists::<Policy>(policy)? {
                return Err(ApiError::unknown_reference(
                    format!("default_policies[{i}]"),
                    format!("policy `{policy}` does not exist"),
                ));
            }
        }
        Ok(())
    }
}
