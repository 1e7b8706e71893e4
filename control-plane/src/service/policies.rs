//! Access policies: which APIs (and methods and paths) they grant, with which limits.

use portico_core::rules;
use portico_core::snapshot::{
    AccessRight, LimitScope, PolicySpec, PolicyState, QuotaSpec, RateLimitSpec,
};
use serde::Deserialize;
use utoipa::ToSchema;

use super::apis::Api;
use super::catalogue::CatalogueEntry;
use super::{
    Actor, AppState, Page, PageRequest, Precondition, Resource, ResourceKind, ResourceRef,
    Versioned, to_value, validate,
};
use crate::error::ApiError;
use crate::store::Tree;

/// An access policy: exactly the snapshot's policy (core's [`PolicySpec`]).
pub type Policy = PolicySpec;

/// The body of a create or update of a policy.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyInput {
    /// The id: required on create; on update it may be given but must match the path.
    #[serde(default)]
    pub id: Option<String>,
    /// A human name.
    pub name: String,
    /// What the policy grants (at least one API).
    pub access_rights: Vec<AccessRight>,
    /// Default: no rate limit.
    #[serde(default)]
    pub rate_limit: Option<RateLimitSpec>,
    /// Default: no quota.
    #[serde(default)]
    pub quota: Option<QuotaSpec>,
    /// Whom `rate_limit` and `quota` count: `developer` (the default: all the clients one
    /// developer registered share one count, so registering more clients does not multiply
    /// the limit) or `client` (each OAuth client alone, across its secret rotations).
    #[serde(default)]
    pub limit_scope: LimitScope,
    /// Default: `active`.
    #[serde(default)]
    pub state: PolicyState,
    /// How long a registration through the catalogue keeps this policy, in seconds (1 to
    /// 316224000). Default: for ever. Changing it applies to new registrations only.
    #[serde(default)]
    pub lifetime_seconds: Option<u64>,
    /// Metadata for upstream headers (string keys and header-safe values, at most 16).
    /// Default: none.
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// Which policies to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyFilter {
    /// Only policies granting access to this API id.
    pub api: Option<String>,
    /// Only policies in this state.
    pub state: Option<PolicyState>,
}

impl Resource for Policy {
    const KIND: ResourceKind = ResourceKind::Policy;
    const TREE: Tree = Tree::Policies;

    fn id(&self) -> &str {
        &self.id
    }

    fn audit_view(&self) -> serde_json::Value {
        to_value(self)
    }
}

impl PolicyInput {
    fn validate(self, id: String) -> Result<Policy, ApiError> {
        let name = validate::name("name", &self.name)?;
        validate::non_empty("access_rights", &self.access_rights)?;
        if self.access_rights.len() > validate::MAX_LIST_LEN {
            return Err(ApiError::invalid(
                "access_rights",
                format!("must contain at most {} items", validate::MAX_LIST_LEN),
            ));
        }
        let mut access_rights = Vec::with_capacity(self.access_rights.len());
        for (i, right) in self.access_rights.into_iter().enumerate() {
            let field = format!("access_rights[{i}]");
            validate::slug(&format!("{field}.api"), &right.api)?;
            let methods = right
                .methods
                .iter()
                .enumerate()
                .map(|(j, method)| {
                    validate::rule(&format!("{field}.methods[{j}]"), rules::method(method))
                })
                .collect::<Result<Vec<_>, _>>()?;
            validate::distinct(&format!("{field}.methods"), &methods)?;
            for (j, prefix) in right.path_prefixes.iter().enumerate() {
                validate::rule(
                    &format!("{field}.path_prefixes[{j}]"),
                    rules::path_prefix(prefix, true),
                )?;
            }
            validate::distinct(&format!("{field}.path_prefixes"), &right.path_prefixes)?;
            access_rights.push(AccessRight {
                api: right.api,
                methods,
                path_prefixes: right.path_prefixes,
            });
        }
        if let Some(limit) = &self.rate_limit {
            validate::rule(
                "rate_limit.requests",
                rules::request_count(u64::from(limit.requests), rules::MAX_RATE_LIMIT_REQUESTS),
            )?;
            validate::rule(
                "rate_limit.per_seconds",
                rules::period_seconds(u64::from(limit.per_seconds)),
            )?;
        }
        if let Some(quota) = &self.quota {
            validate::rule(
                "quota.max",
                rules::request_count(quota.max, rules::MAX_QUOTA_REQUESTS),
            )?;
            validate::rule(
                "quota.renewal_seconds",
                rules::period_seconds(quota.renewal_seconds),
            )?;
        }
        if let Some(lifetime) = self.lifetime_seconds {
            validate::rule("lifetime_seconds", rules::lifetime_seconds(lifetime))?;
        }
        rules::metadata(self.metadata.iter())
            .map_err(|(field, violation)| ApiError::invalid(field, violation.0))?;
        Ok(PolicySpec {
            id,
            name,
            access_rights,
            rate_limit: self.rate_limit,
            quota: self.quota,
            limit_scope: self.limit_scope,
            state: self.state,
            lifetime_seconds: self.lifetime_seconds,
            metadata: self.metadata,
        })
    }
}

/// Access policies.
#[derive(Debug, Clone, Copy)]
pub struct Policies<'a> {
    state: &'a AppState,
}

impl<'a> Policies<'a> {
    pub(crate) fn new(state: &'a AppState) -> Self {
        Policies { state }
    }

    /// Creates a policy. 422 if an access right names an unknown API.
    pub async fn create(
        &self,
        actor: &Actor,
        input: PolicyInput,
    ) -> Result<Versioned<Policy>, ApiError> {
        let id = validate::new_id(input.id.as_deref())?;
        let value = input.validate(id)?;
        self.state
            .create_checked(actor, value, |value| self.check(value))
            .await
    }

    /// Every policy, in id order (the snapshot builder reads them all).
    pub fn all(&self) -> Result<Vec<Policy>, ApiError> {
        self.state.values::<Policy>()
    }

    /// Reads a policy.
    pub fn get(&self, id: &str) -> Result<Versioned<Policy>, ApiError> {
        self.state.fetch(id)
    }

    /// Lists policies in id order.
    pub fn list(
        &self,
        page: &PageRequest,
        filter: &PolicyFilter,
    ) -> Result<Page<Versioned<Policy>>, ApiError> {
        self.state.page(page, |policy: &Policy| {
            filter
                .api
                .as_ref()
                .is_none_or(|api| policy.access_rights.iter().any(|right| right.api == *api))
                && filter.state.is_none_or(|state| policy.state == state)
        })
    }

    /// Replaces a policy.
    pub async fn update(
        &self,
        actor: &Actor,
        id: &str,
        precondition: &Precondition,
        input: PolicyInput,
    ) -> Result<Versioned<Policy>, ApiError> {
        validate::same_id(id, input.id.as_deref())?;
        let value = input.validate(id.to_owned())?;
        self.state
            .replace_checked(actor, precondition, value, |value| self.check(value))
            .await
    }

    /// Deletes a policy. 409 while an API names it as a default or a catalogue entry hands
    /// it out.
    pub async fn delete(
        &self,
        actor: &Actor,
        id: &str,
        precondition: &Precondition,
    ) -> Result<(), ApiError> {
        self.state
            .delete_unreferenced::<Policy>(
                actor,
                id,
                precondition,
                || {
                    let apis = self
                        .state
                        .values::<Api>()?
                        .into_iter()
                        .filter(|api| api.default_policies.iter().any(|policy| policy == id))
                        .map(|api| ResourceRef::new(ResourceKind::Api, api.id));
                    let entries = self
                        .state
                        .values::<CatalogueEntry>()?
                        .into_iter()
                        .filter(|entry| entry.policy == id)
                        .map(|entry| ResourceRef::new(ResourceKind::CatalogueEntry, entry.id));
                    Ok(apis.chain(entries).collect())
                },
                || Ok(Vec::new()),
            )
            .await
    }

    fn check(&self, policy: &Policy) -> Result<(), ApiError> {
        for (i, right) in policy.access_rights.iter().enumerate() {
            if !self.state.exists::<Api>(&right.api)? {
                return Err(ApiError::unknown_reference(
                    format!("access_rights[{i}].api"),
                    format!("API `{}` does not exist", right.api),
                ));
            }
        }
        Ok(())
    }
}
