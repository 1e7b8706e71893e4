//! Protected APIs: where they listen, which issuers they trust, how tokens are checked and how
//! identity and policies are found in them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::issuers::Issuer;
use super::policies::Policy;
use super::{
    Actor, AppState, Page, PageRequest, Precondition, Resource, ResourceKind, ResourceRef,
    Versioned, to_value, validate,
};
use crate::error::ApiError;
use crate::store::Tree;

/// The largest clock skew accepted, in seconds.
pub const MAX_CLOCK_SKEW_SECONDS: u32 = 600;

/// A signature algorithm that an API may accept. `none` and HMAC are not among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

impl From<Algorithm> for portico_core::alg::Algorithm {
    fn from(alg: Algorithm) -> Self {
        use portico_core::alg::Algorithm as Core;
        match alg {
            Algorithm::RS256 => Core::RS256,
            Algorithm::RS384 => Core::RS384,
            Algorithm::RS512 => Core::RS512,
            Algorithm::PS256 => Core::PS256,
            Algorithm::PS384 => Core::PS384,
            Algorithm::PS512 => Core::PS512,
            Algorithm::ES256 => Core::ES256,
            Algorithm::ES384 => Core::ES384,
            Algorithm::EdDSA => Core::EdDSA,
        }
    }
}

/// A protected API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Api {
    /// The API's id (an operator-chosen slug).
    pub id: String,
    /// A human name.
    pub name: String,
    /// The path prefix that the API is served under; starts with `/`.
    pub listen_path: String,
    /// Host names that the API is served on; empty: any host.
    pub hosts: Vec<String>,
    /// Ids of the issuers whose tokens are accepted.
    pub issuers: Vec<String>,
    /// Accepted signature algorithms.
    pub allowed_algorithms: Vec<Algorithm>,
    /// Accepted `aud` values; empty: the audience is not checked.
    pub audiences: Vec<String>,
    /// Claims that identify the client, in order: the first present wins.
    pub identity_claims: Vec<String>,
    /// The claim that names policies.
    pub policy_claim: String,
    /// Ids of the policies applied when a token names none.
    pub default_policies: Vec<String>,
    /// Tolerated clock difference for `exp`, `nbf` and `iat`, in seconds.
    pub clock_skew_seconds: u32,
    /// Whether tokens without `exp` are refused.
    pub require_exp: bool,
    /// The required JOSE `typ` header (e.g. `at+jwt`), if any.
    pub expected_typ: Option<String>,
    /// The request header that carries the client identity upstream.
    pub identity_header: String,
    /// The request header that carries the applied policy ids upstream, if any.
    pub policies_header: Option<String>,
}

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
    /// Default: not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
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
    pub clock_skew_seconds: Option<u32>,
    /// Default: `true`.
    #[serde(default)]
    pub require_exp: Option<bool>,
    /// Default: not checked.
    #[serde(default)]
    pub expected_typ: Option<String>,
    /// Default: `x-portico-client-id`.
    #[serde(default)]
    pub identity_header: Option<String>,
    /// Default: none.
    #[serde(default)]
    pub policies_header: Option<String>,
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
    fn validate(self, id: String) -> Result<Api, ApiError> {
        let name = validate::name("name", &self.name)?;
        validate::path_prefix("listen_path", &self.listen_path)?;
        let hosts = self
            .hosts
            .iter()
            .enumerate()
            .map(|(i, host)| validate::host(&format!("hosts[{i}]"), host))
            .collect::<Result<Vec<_>, _>>()?;
        validate::distinct("hosts", &hosts)?;
        validate::non_empty("issuers", &self.issuers)?;
        validate::distinct("issuers", &self.issuers)?;
        for (i, issuer) in self.issuers.iter().enumerate() {
            validate::slug(&format!("issuers[{i}]"), issuer)?;
        }
        let allowed_algorithms = self
            .allowed_algorithms
            .unwrap_or_else(|| vec![Algorithm::RS256, Algorithm::ES256]);
        validate::non_empty("allowed_algorithms", &allowed_algorithms)?;
        validate::distinct("allowed_algorithms", &allowed_algorithms)?;
        for (i, audience) in self.audiences.iter().enumerate() {
            validate::token(&format!("audiences[{i}]"), audience)?;
        }
        validate::distinct("audiences", &self.audiences)?;
        let identity_claims = self
            .identity_claims
            .unwrap_or_else(|| vec!["sub".to_owned()]);
        validate::non_empty("identity_claims", &identity_claims)?;
        validate::distinct("identity_claims", &identity_claims)?;
        for (i, claim) in identity_claims.iter().enumerate() {
            validate::token(&format!("identity_claims[{i}]"), claim)?;
        }
        let policy_claim = self.policy_claim.unwrap_or_else(|| "pol".to_owned());
        validate::token("policy_claim", &policy_claim)?;
        validate::distinct("default_policies", &self.default_policies)?;
        for (i, policy) in self.default_policies.iter().enumerate() {
            validate::slug(&format!("default_policies[{i}]"), policy)?;
        }
        let clock_skew_seconds = self.clock_skew_seconds.unwrap_or(60);
        validate::range(
            "clock_skew_seconds",
            u64::from(clock_skew_seconds),
            0,
            u64::from(MAX_CLOCK_SKEW_SECONDS),
        )?;
        if let Some(typ) = &self.expected_typ {
            validate::token("expected_typ", typ)?;
        }
        let identity_header = validate::header_name(
            "identity_header",
            self.identity_header
                .as_deref()
                .unwrap_or("x-portico-client-id"),
        )?;
        let policies_header = match &self.policies_header {
            Some(header) => {
                let header = validate::header_name("policies_header", header)?;
                if header == identity_header {
                    return Err(ApiError::invalid(
                        "policies_header",
                        "must differ from identity_header",
                    ));
                }
                Some(header)
            }
            None => None,
        };
        Ok(Api {
            id,
            name,
            listen_path: self.listen_path,
            hosts,
            issuers: self.issuers,
            allowed_algorithms,
            audiences: self.audiences,
            identity_claims,
            policy_claim,
            default_policies: self.default_policies,
            clock_skew_seconds,
            require_exp: self.require_exp.unwrap_or(true),
            expected_typ: self.expected_typ,
            identity_header,
            policies_header,
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
    /// taken or another API already serves the same listen path on an overlapping host set.
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
                Vec::new(),
            )
            .await
    }

    /// References exist, and no other API serves the same path on an overlapping host set.
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
        let overlaps = |other: &Api| {
            (other.hosts.is_empty() && api.hosts.is_empty())
                || other.hosts.iter().any(|host| api.hosts.contains(host))
        };
        let clash = self.state.load_all::<Api>()?.into_iter().find(|other| {
            other.value.id != api.id
                && other.value.listen_path == api.listen_path
                && overlaps(&other.value)
        });
        match clash {
            Some(other) => Err(ApiError::Conflict {
                field: Some("listen_path".to_owned()),
                message: format!(
                    "API `{}` already serves `{}` on the same hosts",
                    other.value.id, api.listen_path
                ),
            }),
            None => Ok(()),
        }
    }
}
