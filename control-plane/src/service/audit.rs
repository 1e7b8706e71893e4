//! The audit log: one entry per committed change, written in the change's transaction and
//! keyed by its revision. Entries name the actor (an admin key by its id, never the key), the
//! action, the resource, and the resource's non-secret fields before and after.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Actor, AppState, Page, PageRequest, ResourceKind, ResourceRef};
use crate::error::ApiError;
use crate::store::{Order, Tree};

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// Created the resource.
    Create,
    /// Replaced the resource.
    Update,
    /// Deleted the resource.
    Delete,
    /// Disabled a developer.
    Disable,
    /// Enabled a developer.
    Enable,
    /// Set a developer's password.
    ResetPassword,
    /// Revoked an OAuth client.
    Revoke,
    /// Rotated an OAuth client's secret.
    RotateSecret,
    /// Renewed, extended or ended an OAuth client's access (its bindings' expiry).
    SetAccessExpiry,
    /// Recorded an OAuth client that the IdP created but Portico could neither accept nor
    /// delete there (state `orphaned`).
    RecordOrphan,
}

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// The store revision that the change created.
    pub revision: u64,
    /// When, as an RFC 3339 UTC timestamp.
    pub at: String,
    /// Who.
    pub actor: Actor,
    /// What.
    pub action: AuditAction,
    /// Which resource.
    pub resource: ResourceRef,
    /// The resource's non-secret fields before the change (absent on create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    /// The resource's non-secret fields after the change (absent on delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
    /// The other resources the same transaction changed (a cascade, such as a catalogue
    /// entry's DCR override deleted with it, or a record kept alongside, such as the revoked
    /// record of a client whose secret was rotated by re-registration); absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<AuditChange>,
}

/// One more resource changed in an audited transaction: what [`AuditEntry`] says of its main
/// resource, for another one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditChange {
    /// What.
    pub action: AuditAction,
    /// Which resource.
    pub resource: ResourceRef,
    /// Its non-secret fields before the change (absent on create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    /// Its non-secret fields after the change (absent on delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
}

/// Which audit entries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only changes to this kind of resource.
    pub resource_type: Option<ResourceKind>,
    /// Only changes to resources with this id.
    pub resource_id: Option<String>,
    /// Only changes made with the admin key of this id.
    pub admin_key: Option<String>,
}

/// Reads the audit log.
#[derive(Debug, Clone, Copy)]
pub struct Audit<'a> {
    state: &'a AppState,
}

impl<'a> Audit<'a> {
    pub(crate) fn new(state: &'a AppState) -> Self {
        Audit { state }
    }

    /// A page of entries, newest first.
    pub fn list(
        &self,
        page: &PageRequest,
        filter: &AuditFilter,
    ) -> Result<Page<AuditEntry>, ApiError> {
        if let Some(after) = &page.after
            && after.len() != 8
        {
            return Err(ApiError::invalid(
                "cursor",
                "the cursor is not one returned by this list (next_cursor)",
            ));
        }
        self.state.page_of(
            Tree::Audit,
            page,
            Order::Descending,
            |entry: &AuditEntry| {
                // The resource filters match the entry's main resource or any it also changed.
                let concerns = |resource: &ResourceRef| {
                    filter
                        .resource_type
                        .is_none_or(|kind| resource.kind == kind)
                        && filter
                            .resource_id
                            .as_ref()
                            .is_none_or(|id| resource.id == *id)
                };
                (concerns(&entry.resource)
                    || entry.also.iter().any(|also| concerns(&also.resource)))
                    && filter.admin_key.as_ref().is_none_or(
                        |key| matches!(&entry.actor, Actor::AdminKey { id } if id == key),
                    )
            },
        )
    }
}
