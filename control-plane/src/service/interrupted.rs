//! Interrupted registrations: client registrations at the IdP whose outcome Portico could not
//! learn or record, shown to the operators instead of lost.
//!
//! RFC 7591 gives no way to find a client again without its `client_id`, so a registration cut
//! short after the IdP created the client (the process killed between the IdP's answer and the
//! commit, an IdP that never answered, an answer without `client_id`) would leave a client at
//! the IdP that nobody knows. To close that gap, every registration (and every rotation by
//! re-registration) first writes an *intent* durably ([`Intents::begin`]): who asked, for which
//! catalogue entries, the client name and redirect URIs, the registration endpoint. The commit
//! that records the new client removes the intent in the same transaction; an outcome that is
//! known and accounted for (a refusal, a client deleted again or recorded as `orphaned`)
//! removes it too ([`Intents::finish`]). What is left is listed at
//! `GET /admin/v1/interrupted-registrations` with a [`InterruptionReason`]: the operator looks
//! for the client at the IdP (by name, redirect URIs and time), deletes it there if it exists,
//! and acknowledges the entry with `DELETE` (audited).
//!
//! An intent written by an earlier run of the process and still present is interrupted
//! ([`InterruptionReason::ProcessStopped`]); one of the running process without a reason is in
//! progress and not listed.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit::AuditAction;
use super::{Actor, AppState, Change, Precondition, ResourceKind, ResourceRef, Versioned};
use crate::error::ApiError;
use crate::idp::dcr::Provider;
use crate::store::{Order, Tree, Write};

/// Why a registration's outcome at the IdP is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InterruptionReason {
    /// The process stopped (killed, crashed, powered off) while the registration was under way.
    ProcessStopped,
    /// The request reached the IdP but no answer came that Portico could read (timeout,
    /// connection lost mid-exchange, an answer larger than Portico reads, a gateway's 502 or
    /// 504): the IdP may have created the client.
    NoAnswer,
    /// The IdP created the client, and Portico could neither delete it there nor record it.
    Unrecorded,
}

/// What was being done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationOperation {
    /// A new client registered through the portal.
    Register,
    /// A secret rotation by re-registration of an existing client (`oauth_client`).
    RotateSecret,
}

/// A registration whose outcome at the IdP is unknown, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InterruptedRegistration {
    /// The entry's id (`reg_` and 32 hex digits).
    pub id: String,
    /// What was being done.
    pub operation: RegistrationOperation,
    /// For a rotation, the Portico id of the OAuth client being rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth_client: Option<String>,
    /// The developer the client was registered for.
    pub developer_id: String,
    /// The RFC 7591 `client_name` sent to the IdP.
    pub client_name: String,
    /// The RFC 7591 `redirect_uris` sent to the IdP.
    pub redirect_uris: Vec<String>,
    /// The catalogue entries asked for.
    pub catalogue_entries: Vec<String>,
    /// The DCR provider.
    pub provider: Provider,
    /// The registration endpoint called.
    pub registration_endpoint: String,
    /// When the registration started (RFC 3339, UTC): the client, if it exists, was created at
    /// the IdP shortly after.
    pub started_at: String,
    /// Why the outcome is unknown (absent while in progress; never listed then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<InterruptionReason>,
    /// What happened, in words (never a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The stored form: the entry, the run of the process that wrote it, and the store revision
/// at that time (its ETag).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredIntent {
    #[serde(flatten)]
    registration: InterruptedRegistration,
    run: String,
    revision: u64,
}

/// What a registration is about to do, for [`Intents::begin`].
#[derive(Debug)]
pub(crate) struct IntentStart<'a> {
    pub operation: RegistrationOperation,
    pub oauth_client: Option<&'a str>,
    pub developer_id: &'a str,
    pub client_name: &'a str,
    pub redirect_uris: &'a [String],
    pub catalogue_entries: &'a [String],
    pub provider: Provider,
    pub registration_endpoint: &'a str,
}

/// A written intent: pass [`Intent::removal`] to the commit that records the outcome.
#[derive(Debug)]
pub(crate) struct Intent {
    id: String,
}

impl Intent {
    /// The write that removes this intent, for the commit that records the outcome.
    pub(crate) fn removal(&self) -> Write {
        Write::remove(Tree::RegistrationIntents, self.id.as_bytes())
    }
}

/// An identifier of this run of the process: the process id, a per-process counter and the
/// start time, so that two runs (or two states in one test process) never share one.
pub(crate) fn run_id(now: std::time::SystemTime) -> String {
    static STATES: AtomicU64 = AtomicU64::new(0);
    let nanos = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!(
        "{}-{}-{nanos}",
        std::process::id(),
        STATES.fetch_add(1, Ordering::Relaxed)
    )
}

/// The interrupted registrations.
#[derive(Debug)]
pub struct Intents<'a> {
    state: &'a AppState,
}

impl<'a> Intents<'a> {
    pub(crate) fn new(state: &'a AppState) -> Self {
        Intents { state }
    }

    /// Writes the intent durably, before the IdP is called. Errors: the store's (503
    /// `storage_unavailable` on a full disk); then nothing must be sent to the IdP.
    pub(crate) fn begin(&self, start: IntentStart<'_>) -> Result<Intent, ApiError> {
        let id = super::random_id("reg_")?;
        let stored = StoredIntent {
            registration: InterruptedRegistration {
                id: id.clone(),
                operation: start.operation,
                oauth_client: start.oauth_client.map(str::to_owned),
                developer_id: start.developer_id.to_owned(),
                client_name: start.client_name.to_owned(),
                redirect_uris: start.redirect_uris.to_vec(),
                catalogue_entries: start.catalogue_entries.to_vec(),
                provider: start.provider,
                registration_endpoint: start.registration_endpoint.to_owned(),
                started_at: self.state.now_rfc3339(),
                reason: None,
                detail: None,
            },
            run: self.state.run().to_owned(),
            revision: self.state.revision()?,
        };
        self.put(&stored)?;
        Ok(Intent { id })
    }

    /// Removes the intent of a registration whose outcome is known and accounted for. A
    /// failure only leaves the entry listed (the operator finds nothing at the IdP), so it is
    /// logged, not returned.
    pub(crate) fn finish(&self, intent: &Intent) {
        if let Err(error) = self.state.store().write_unversioned(&[intent.removal()]) {
            tracing::warn!(intent = %intent.id, %error, "a finished registration's intent could not be removed; it will be listed as interrupted");
        }
    }

    /// Keeps the intent as interrupted, with why (`reason`) and what happened (`detail`, never
    /// a secret). A failure to write is logged: the intent stays, and is listed as
    /// [`InterruptionReason::ProcessStopped`] after the next start.
    pub(crate) fn keep(&self, intent: &Intent, reason: InterruptionReason, detail: &str) {
        let stored = self
            .state
            .load_from::<StoredIntent>(Tree::RegistrationIntents, intent.id.as_bytes());
        let written = match stored {
            Ok(Some(mut stored)) => {
                stored.registration.reason = Some(reason);
                stored.registration.detail = Some(detail.to_owned());
                self.put(&stored)
            }
            Ok(None) => Ok(()),
            Err(error) => Err(error),
        };
        tracing::error!(
            intent = %intent.id,
            ?reason,
            detail,
            "a registration's outcome at the identity provider is unknown: it is listed at GET /admin/v1/interrupted-registrations"
        );
        if let Err(error) = written {
            tracing::error!(intent = %intent.id, %error, "the interrupted registration could not be updated");
        }
    }

    fn put(&self, stored: &StoredIntent) -> Result<(), ApiError> {
        let bytes = serde_json::to_vec(stored).map_err(|error| ApiError::Internal(error.into()))?;
        self.state.store().write_unversioned(&[Write::put(
            Tree::RegistrationIntents,
            stored.registration.id.as_bytes(),
            bytes,
        )])?;
        Ok(())
    }

    /// Every interrupted registration, oldest first (in-progress ones of this run left out).
    /// Errors: the store's.
    pub fn list(&self) -> Result<Vec<Versioned<InterruptedRegistration>>, ApiError> {
        let mut listed = Vec::new();
        for entry in self
            .state
            .store()
            .scan(Tree::RegistrationIntents, None, Order::Ascending)
        {
            let (_, bytes) = entry?;
            let stored: StoredIntent =
                serde_json::from_slice(&bytes).map_err(|error| ApiError::Internal(error.into()))?;
            if let Some(listed_as) = self.interrupted(stored) {
                listed.push(listed_as);
            }
        }
        listed.sort_by(|a, b| a.value.started_at.cmp(&b.value.started_at));
        Ok(listed)
    }

    /// The stored intent as listed, or `None` while it is in progress in this run.
    fn interrupted(&self, stored: StoredIntent) -> Option<Versioned<InterruptedRegistration>> {
        let mut registration = stored.registration;
        if registration.reason.is_none() {
            if stored.run == self.state.run() {
                return None;
            }
            registration.reason = Some(InterruptionReason::ProcessStopped);
            registration.detail = Some(
                "Portico stopped while the registration was under way; the identity provider may \
                 have created the client"
                    .to_owned(),
            );
        }
        Some(Versioned {
            revision: stored.revision,
            value: registration,
        })
    }

    /// One interrupted registration. Errors: 404 `not_found` (unknown, acknowledged, or still
    /// in progress).
    pub fn get(&self, id: &str) -> Result<Versioned<InterruptedRegistration>, ApiError> {
        self.state
            .load_from::<StoredIntent>(Tree::RegistrationIntents, id.as_bytes())?
            .and_then(|stored| self.interrupted(stored))
            .ok_or_else(|| ApiError::NotFound {
                kind: ResourceKind::InterruptedRegistration.label(),
                id: id.to_owned(),
            })
    }

    /// Acknowledges (removes) an interrupted registration once the operator has dealt with the
    /// client at the IdP; audited (action `delete`). Errors: 404 `not_found`, 428/412 for
    /// `If-Match`.
    pub async fn acknowledge(
        &self,
        actor: &Actor,
        id: &str,
        precondition: &Precondition,
    ) -> Result<(), ApiError> {
        let writer = self.state.writer().await?;
        let current = self.get(id)?;
        precondition.check(current.revision, true)?;
        let change = Change {
            writes: vec![Write::remove(Tree::RegistrationIntents, id.as_bytes())],
            action: AuditAction::Delete,
            resource: ResourceRef::new(ResourceKind::InterruptedRegistration, id),
            before: Some(super::to_value(&current.value)),
            after: None,
            also: Vec::new(),
        };
        writer.commit(actor, change).await?;
        Ok(())
    }
}
