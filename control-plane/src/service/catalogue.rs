//! The catalogue: APIs published in the developer portal, each with the policy that a
//! registered client receives.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::oauth_clients::StoredOAuthClient;
use super::policies::Policy;
use super::{
    Actor, AppState, Page, PageRequest, Precondition, Resource, ResourceKind, ResourceRef,
    Versioned, to_value, validate,
};
use crate::error::ApiError;
use crate::store::Tree;

/// A catalogue entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CatalogueEntry {
    /// The entry's id (an operator-chosen slug).
    pub id: String,
    /// The name shown in the portal.
    pub name: String,
    /// The description shown in the portal (plain text or Markdown).
    pub description: String,
    /// The id of the policy that a client registered for this entry receives.
    pub policy: String,
    /// A link to the API's documentation.
    pub documentation_url: Option<String>,
    /// Whether developers may renew, from the portal, the access that their clients got
    /// through this entry when its policy has a lifetime.
    #[serde(default)]
    pub renewable: bool,
}

/// The body of a create or update of a catalogue entry.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogueEntryInput {
    /// The id: required on create; on update it may be given but must match the path.
    #[serde(default)]
    pub id: Option<String>,
    /// The name shown in the portal.
    pub name: String,
    /// Default: empty.
    #[serde(default)]
    pub description: String,
    /// The policy id.
    pub policy: String,
    /// Default: none.
    #[serde(default)]
    pub documentation_url: Option<String>,
    /// Default: `false` (only operators can extend access).
    #[serde(default)]
    pub renewable: bool,
}

/// Which catalogue entries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogueFilter {
    /// Only entries handing out this policy id.
    pub policy: Option<String>,
}

impl Resource for CatalogueEntry {
    const KIND: ResourceKind = ResourceKind::CatalogueEntry;
    const TREE: Tree = Tree::Catalogue;

    fn id(&self) -> &str {
        &self.id
    }

    fn audit_view(&self) -> serde_json::Value {
        to_value(self)
    }
}

impl CatalogueEntryInput {
    fn validate(self, id: String) -> Result<CatalogueEntry, ApiError> {
        let name = validate::name("name", &self.name)?;
        let description = validate::text("description", &self.description, validate::MAX_TEXT_LEN)?;
        validate::slug("policy", &self.policy)?;
        let documentation_url = match &self.documentation_url {
            Some(url) => Some(validate::http_url("documentation_url", url)?),
            None => None,
        };
        Ok(CatalogueEntry {
            id,
            name,
            description,
            policy: self.policy,
            documentation_url,
            renewable: self.renewable,
        })
    }
}

/// Catalogue entries.
#[derive(Debug, Clone, Copy)]
pub struct Catalogue<'a> {
    state: &'a AppState,
}

impl<'a> Catalogue<'a> {
    pub(crate) fn new(state: &'a AppState) -> Self {
        Catalogue { state }
    }

    /// Creates an entry. 422 if its policy does not exist.
    pub async fn create(
        &self,
        actor: &Actor,
        input: CatalogueEntryInput,
    ) -> Result<Versioned<CatalogueEntry>, ApiError> {
        let id = validate::new_id(input.id.as_deref())?;
        let value = input.validate(id)?;
        self.state
            .create_checked(actor, value, |value| self.check(value))
            .await
    }

    /// Every entry, in id order (the snapshot builder reads them all).
    pub fn all(&self) -> Result<Vec<CatalogueEntry>, ApiError> {
        self.state.values::<CatalogueEntry>()
    }

    /// Reads an entry.
    pub fn get(&self, id: &str) -> Result<Versioned<CatalogueEntry>, ApiError> {
        self.state.fetch(id)
    }

    /// Lists entries in id order.
    pub fn list(
        &self,
        page: &PageRequest,
        filter: &CatalogueFilter,
    ) -> Result<Page<Versioned<CatalogueEntry>>, ApiError> {
        self.state.page(page, |entry: &CatalogueEntry| {
            filter
                .policy
                .as_ref()
                .is_none_or(|policy| entry.policy == *policy)
        })
    }

    /// Replaces an entry (its DCR override is kept).
    pub async fn update(
        &self,
        actor: &Actor,
        id: &str,
        precondition: &Precondition,
        input: CatalogueEntryInput,
    ) -> Result<Versioned<CatalogueEntry>, ApiError> {
        validate::same_id(id, input.id.as_deref())?;
        let value = input.validate(id.to_owned())?;
        self.state
            .replace_checked(actor, precondition, value, |value| self.check(value))
            .await
    }

    /// Deletes an entry together with its DCR override and its OpenAPI document, in one
    /// transaction. 409 while an OAuth client is bound to it.
    pub async fn delete(
        &self,
        actor: &Actor,
        id: &str,
        precondition: &Precondition,
    ) -> Result<(), ApiError> {
        self.state
            .delete_unreferenced::<CatalogueEntry>(
                actor,
                id,
                precondition,
                || {
                    Ok(self
                        .state
                        .values::<StoredOAuthClient>()?
                        .into_iter()
                        .filter(|stored| {
                            stored
                                .client
                                .catalogue_entries
                                .iter()
                                .any(|entry| entry == id)
                        })
                        .map(|stored| ResourceRef::new(ResourceKind::OauthClient, stored.client.id))
                        .collect())
                },
                || {
                    Ok([
                        self.state.dcr().cascade_removal(id)?,
                        self.state.api_docs().cascade_removal(id)?,
                    ]
                    .into_iter()
                    .flatten()
                    .collect())
                },
            )
            .await
    }

    fn check(&self, entry: &CatalogueEntry) -> Result<(), ApiError> {
        if self.state.exists::<Policy>(&entry.policy)? {
            Ok(())
        } else {
            Err(ApiError::unknown_reference(
                "policy",
                format!("policy `{}` does not exist", entry.policy),
            ))
        }
    }
}
