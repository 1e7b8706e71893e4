//! OAuth clients registered at the IdP for developers. The registration flow
//! ([`super::registration`]) creates and manages them; operators can list, inspect, revoke and
//! delete them. The client secret and the registration access token are sealed at rest and
//! never shown by the admin API; the IdP's `client_id` is unique (kept in an index tree).
//!
//! # The record contract (what the snapshot builder reads)
//!
//! Every record has a `state`: `active` clients are bound to the policies of their catalogue
//! entries; `revoked` clients must be refused by the data plane. A record in state `revoked`
//! stays in the store and readable, by id and in lists, until an operator purges it: a client
//! deleted at the IdP (by its developer or an operator) is kept as `revoked` with `deleted_at`
//! set, so that access tokens it obtained before (which stay valid at the IdP until they
//! expire) keep being refused. [`OAuthClients::bindings`] reads the whole tree once and answers
//! both lists: active `client_id`s with their policies, and revoked `client_id`s.

use portico_core::snapshot::ClientBinding;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit::{AuditAction, AuditChange};
use super::catalogue::CatalogueEntry;
use super::developers::StoredDeveloper;
use super::{
    Actor, AppState, Change, Page, PageRequest, Precondition, Resource, ResourceKind, ResourceRef,
    Versioned, put, random_id, remove, to_value, validate,
};
use crate::error::ApiError;
use crate::idp::dcr::{ClientMetadata, Provider};
use crate::secret::{SealContext, Secret};
use crate::store::{Tree, Write};

const KIND: &str = "oauth_client";
const CLIENT_SECRET: &str = "client_secret";
const REGISTRATION_ACCESS_TOKEN: &str = "registration_access_token";

/// An OAuth client as the API shows it: secrets are reported as set or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OAuthClient {
    /// The client's id in Portico (`cli_` and 32 hex digits, assigned by the server).
    pub id: String,
    /// The developer who owns it.
    pub developer_id: String,
    /// The catalogue entries it was registered for.
    pub catalogue_entries: Vec<String>,
    /// The client's name.
    pub client_name: String,
    /// Redirect URIs registered at the IdP.
    pub redirect_uris: Vec<String>,
    /// The IdP's `client_id`.
    pub client_id: String,
    /// Whether a client secret is stored (it is never returned).
    pub client_secret_set: bool,
    /// Whether a registration access token (RFC 7592) is stored (it is never returned).
    pub registration_access_token_set: bool,
    /// The client's configuration URL at the IdP (RFC 7592).
    pub registration_client_uri: Option<String>,
    /// When the secret expires (seconds since the epoch; 0: never), as the IdP said.
    pub client_secret_expires_at: Option<u64>,
    /// When the IdP issued the `client_id` (seconds since the epoch).
    pub client_id_issued_at: Option<u64>,
    /// When Portico recorded the client (RFC 3339).
    pub created_at: String,
    /// When the access through each catalogue entry ends: entry id to seconds since the Unix
    /// epoch. Set at registration from the entry's policy `lifetime_seconds`; entries absent
    /// here never expire. Renewal and the admin API change it; a policy's lifetime does not.
    #[serde(default)]
    pub access_expires_at: std::collections::BTreeMap<String, u64>,
    /// Revoked clients are refused by the data plane.
    pub state: OAuthClientState,
    /// When the client was revoked (RFC 3339).
    #[serde(default)]
    pub revoked_at: Option<String>,
    /// When the client was deleted at the IdP (RFC 3339); such a record stays `revoked` until
    /// an operator purges it.
    #[serde(default)]
    pub deleted_at: Option<String>,
    /// For the record of a client replaced by a secret rotation: the record that now holds the
    /// new `client_id`.
    #[serde(default)]
    pub replaced_by: Option<String>,
    /// For an `orphaned` client: why Portico refused the IdP's answer and why the client could
    /// not be deleted at the IdP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orphan_reason: Option<String>,
}

/// Whether a client may call APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OAuthClientState {
    /// The client may call APIs.
    Active,
    /// The client is refused.
    Revoked,
    /// The IdP created the client, but Portico refused the IdP's answer and could not delete
    /// the client there (no RFC 7592 `registration_client_uri` and token, or the deletion
    /// failed): `orphan_reason` says why. Nobody was given its secret, and the data plane
    /// refuses its `client_id`. Delete it at the IdP by hand, then delete the record with
    /// `?skip_idp=true`.
    Orphaned,
}

/// An OAuth client as stored: the view plus the sealed secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredOAuthClient {
    pub(crate) client: OAuthClient,
    client_secret: Option<String>,
    registration_access_token: Option<String>,
    /// How the client was registered: what RFC 7592 management sends again.
    #[serde(default)]
    pub(crate) registration: Option<StoredRegistration>,
}

/// How a client was registered, kept for RFC 7592 management: an update replaces the whole
/// registration, so it must send what was registered, not today's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredRegistration {
    /// The provider family (the driver).
    pub(crate) provider: Provider,
    /// The registration endpoint used.
    pub(crate) registration_endpoint: String,
    /// The token endpoint shown to the developer.
    pub(crate) token_endpoint: Option<String>,
    /// The metadata registered (with the IdP's echoed authentication method).
    pub(crate) metadata: ClientMetadata,
}

/// What RFC 7592 management changed at the IdP, to record.
#[derive(Debug, Clone, Default)]
pub(crate) struct ManagedChange {
    /// A new client secret.
    pub(crate) client_secret: Option<Secret>,
    /// The registration access token to use from now on.
    pub(crate) registration_access_token: Option<Secret>,
    /// A new client configuration URL.
    pub(crate) registration_client_uri: Option<String>,
    /// New metadata (and redirect URIs).
    pub(crate) metadata: Option<ClientMetadata>,
}

/// The data plane's view of every client, read in one pass (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientBindings {
    /// Active clients: `client_id`, the ids of the policies of their catalogue entries
    /// (entries that no longer exist are skipped) with their expiries, and the record and
    /// developer ids the data plane counts limits under; in `client_id` order.
    pub active: Vec<ClientBinding>,
    /// The `client_id`s of revoked clients, sorted: every revoked client, except those
    /// deleted at the IdP long enough ago that none of their tokens can still pass
    /// ([`portico_core::rules::revocation_ends_at`]).
    pub revoked: Vec<String>,
    /// The next moment (seconds since the Unix epoch) a revocation in `revoked` can leave, if
    /// any: when the snapshot must be built again.
    pub next_revocation_end: Option<u64>,
}

impl Resource for StoredOAuthClient {
    const KIND: ResourceKind = ResourceKind::OauthClient;
    const TREE: Tree = Tree::OAuthClients;

    fn id(&self) -> &str {
        &self.client.id
    }

    fn audit_view(&self) -> serde_json::Value {
        to_value(&self.client)
    }
}

/// A client that the IdP has just registered, to be recorded.
#[derive(Debug, Clone)]
pub struct NewOAuthClient {
    /// The owning developer's id.
    pub developer_id: String,
    /// The catalogue entries it is registered for (at least one).
    pub catalogue_entries: Vec<String>,
    /// The client's name.
    pub client_name: String,
    /// Redirect URIs.
    pub redirect_uris: Vec<String>,
    /// The IdP's `client_id`.
    pub client_id: String,
    /// The IdP's `client_secret`.
    pub client_secret: Option<Secret>,
    /// The RFC 7592 registration access token.
    pub registration_access_token: Option<Secret>,
    /// The RFC 7592 client configuration URL.
    pub registration_client_uri: Option<String>,
    /// As the IdP said.
    pub client_secret_expires_at: Option<u64>,
    /// As the IdP said.
    pub client_id_issued_at: Option<u64>,
    /// Set for a client the IdP created but Portico could neither accept nor delete: it is
    /// recorded as [`OAuthClientState::Orphaned`] with this reason.
    pub orphan_reason: Option<String>,
}

/// A client's secrets, decrypted, for the registration flow (RFC 7592 calls) only.
#[derive(Debug, Clone)]
pub struct OAuthClientSecrets {
    /// The IdP's `client_secret`.
    pub client_secret: Option<Secret>,
    /// The RFC 7592 registration access token.
    pub registration_access_token: Option<Secret>,
}

/// Which clients to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OAuthClientFilter {
    /// Only clients of this developer id.
    pub developer: Option<String>,
    /// Only clients registered for this catalogue entry id.
    pub catalogue_entry: Option<String>,
    /// Only clients in this state.
    pub state: Option<OAuthClientState>,
    /// Only the client with this IdP `client_id`.
    pub client_id: Option<String>,
    /// Only clients with some access expiring before this time (seconds since the Unix
    /// epoch; the admin API takes RFC 3339).
    pub expires_before: Option<u64>,
}

/// An operator's change to a client's access expiry.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessExpiryInput {
    /// The new expiry, in seconds since the Unix epoch: a future time extends (or shortens)
    /// the access, a past one (such as `0`) ends it at once, `null` makes it never expire.
    pub expires_at: Option<u64>,
    /// Only the access through this catalogue entry of the client. Default: all its entries.
    #[serde(default)]
    pub catalogue_entry: Option<String>,
}

impl OAuthClient {
    /// The time left on each expiring access at `now` (seconds since the Unix epoch):
    /// catalogue entry id to seconds, 0 once expired. Entries absent never expire.
    pub fn access_seconds_left(&self, now: u64) -> std::collections::BTreeMap<String, u64> {
        self.access_expires_at
            .iter()
            .map(|(entry, at)| (entry.clone(), at.saturating_sub(now)))
            .collect()
    }
}

impl NewOAuthClient {
    fn validate(&self) -> Result<(), ApiError> {
        validate::non_empty("catalogue_entries", &self.catalogue_entries)?;
        validate::distinct("catalogue_entries", &self.catalogue_entries)?;
        validate::name("client_name", &self.client_name)?;
        validate::distinct("redirect_uris", &self.redirect_uris)?;
        for (i, uri) in self.redirect_uris.iter().enumerate() {
            validate::http_url(&format!("redirect_uris[{i}]"), uri)?;
        }
        validate::token("client_id", &self.client_id)?;
        if let Some(uri) = &self.registration_client_uri {
            validate::http_url("registration_client_uri", uri)?;
        }
        for (field, secret) in [
            (CLIENT_SECRET, &self.client_secret),
            (REGISTRATION_ACCESS_TOKEN, &self.registration_access_token),
        ] {
            if secret
                .as_ref()
                .is_some_and(|secret| secret.expose().is_empty())
            {
                return Err(ApiError::invalid(field, "must not be empty"));
            }
        }
        Ok(())
    }
}

/// OAuth clients.
#[derive(Debug, Clone, Copy)]
pub struct OAuthClients<'a> {
    state: &'a AppState,
}

impl<'a> OAuthClients<'a> {
    pub(crate) fn new(state: &'a AppState) -> Self {
        OAuthClients { state }
    }

    /// Records a client registered at the IdP, sealing its secrets. 422 if the developer or
    /// a catalogue entry does not exist; 409 if the `client_id` is already recorded.
    pub async fn create(
        &self,
        actor: &Actor,
        input: NewOAuthClient,
    ) -> Result<Versioned<OAuthClient>, ApiError> {
        self.create_registered(actor, input, None, Vec::new(), None)
            .await
    }

    /// [`OAuthClients::create`] with the registration to keep for RFC 7592 management, and
    /// further writes that must land in the same transaction (the idempotency record).
    /// `unchanged`, when given, is what one key must still hold when the change commits (as a
    /// [`Write`] would leave it: `None` for absent), else 409 `conflict` and nothing is written:
    /// the idempotency record read before the IdP was called, so that two replicas serving
    /// one `Idempotency-Key` at once record one client (the other undoes its registration).
    pub(crate) async fn create_registered(
        &self,
        actor: &Actor,
        input: NewOAuthClient,
        registration: Option<StoredRegistration>,
        extra_writes: Vec<Write>,
        unchanged: Option<Write>,
    ) -> Result<Versioned<OAuthClient>, ApiError> {
        input.validate()?;
        let id = random_id("cli_")?;
        let seal = |field: &str, secret: &Option<Secret>| -> Result<Option<String>, ApiError> {
            secret
                .as_ref()
                .map(|secret| {
                    self.state
                        .cipher()
                        .seal(
                            secret,
                            SealContext {
                                kind: KIND,
                                id: &id,
                                field,
                            },
                        )
                        .map_err(|error| ApiError::Internal(error.into()))
                })
                .transpose()
        };
        let client_secret = seal(CLIENT_SECRET, &input.client_secret)?;
        let registration_access_token =
            seal(REGISTRATION_ACCESS_TOKEN, &input.registration_access_token)?;
        let writer = self.state.writer().await?;
        if let Some(unchanged) = unchanged
            && self.state.store().get(unchanged.tree, &unchanged.key)? != unchanged.value
        {
            return Err(ApiError::Store(crate::store::StoreError::Conflict {
                expected: writer.revision() - 1,
                found: self.state.revision()?,
            }));
        }
        if !self.state.exists::<StoredDeveloper>(&input.developer_id)? {
            return Err(ApiError::unknown_reference(
                "developer_id",
                format!("developer `{}` does not exist", input.developer_id),
            ));
        }
        let now = unix_seconds(self.state.now());
        let mut access_expires_at = std::collections::BTreeMap::new();
        for (i, entry) in input.catalogue_entries.iter().enumerate() {
            if !self.state.exists::<CatalogueEntry>(entry)? {
                return Err(ApiError::unknown_reference(
                    format!("catalogue_entries[{i}]"),
                    format!("catalogue entry `{entry}` does not exist"),
                ));
            }
            if let Some(lifetime) = self.entry_lifetime(entry)? {
                access_expires_at.insert(entry.clone(), now.saturating_add(lifetime));
            }
        }
        if self
            .state
            .store()
            .get(Tree::OAuthClientIds, input.client_id.as_bytes())?
            .is_some()
        {
            return Err(ApiError::AlreadyExists {
                field: "client_id".to_owned(),
                message: format!(
                    "an OAuth client with client_id `{}` exists",
                    input.client_id
                ),
            });
        }
        let stored = StoredOAuthClient {
            client: OAuthClient {
                id: id.clone(),
                developer_id: input.developer_id,
                catalogue_entries: input.catalogue_entries,
                client_name: input.client_name.trim().to_owned(),
                redirect_uris: input.redirect_uris,
                client_id: input.client_id,
                client_secret_set: client_secret.is_some(),
                registration_access_token_set: registration_access_token.is_some(),
                registration_client_uri: input.registration_client_uri,
                client_secret_expires_at: input.client_secret_expires_at,
                client_id_issued_at: input.client_id_issued_at,
                created_at: self.state.now_rfc3339(),
                access_expires_at,
                state: if input.orphan_reason.is_some() {
                    OAuthClientState::Orphaned
                } else {
                    OAuthClientState::Active
                },
                revoked_at: None,
                deleted_at: None,
                replaced_by: None,
                orphan_reason: input.orphan_reason,
            },
            client_secret,
            registration_access_token,
            registration,
        };
        let revision = writer.revision();
        let mut writes = vec![
            put(revision, &stored)?,
            Write::put(
                Tree::OAuthClientIds,
                stored.client.client_id.as_bytes(),
                id.clone().into_bytes(),
            ),
        ];
        writes.extend(extra_writes);
        let change = Change {
            writes,
            action: if stored.client.state == OAuthClientState::Orphaned {
                AuditAction::RecordOrphan
            } else {
                AuditAction::Create
            },
            resource: ResourceRef::new(ResourceKind::OauthClient, &id),
            before: None,
            after: Some(stored.audit_view()),
            also: Vec::new(),
        };
        writer.commit(actor, change).await?;
        Ok(Versioned {
            revision,
            value: stored.client,
        })
    }

    /// Reads a client.
    pub fn get(&self, id: &str) -> Result<Versioned<OAuthClient>, ApiError> {
        Ok(self
            .state
            .fetch::<StoredOAuthClient>(id)?
            .map(|stored| stored.client))
    }

    /// Decrypts a client's secrets (for RFC 7592 calls by the registration flow).
    pub fn secrets(&self, id: &str) -> Result<OAuthClientSecrets, ApiError> {
        let stored = self.state.fetch::<StoredOAuthClient>(id)?.value;
        self.open_secrets(&stored)
    }

    /// Decrypts the secrets of a stored copy of a client (which may be older than the record).
    pub(crate) fn open_secrets(
        &self,
        stored: &StoredOAuthClient,
    ) -> Result<OAuthClientSecrets, ApiError> {
        let id = stored.client.id.as_str();
        let open = |field: &str, sealed: &Option<String>| -> Result<Option<Secret>, ApiError> {
            sealed
                .as_ref()
                .map(|sealed| {
                    self.state
                        .cipher()
                        .open(
                            sealed,
                            SealContext {
                                kind: KIND,
                                id,
                                field,
                            },
                        )
                        .map_err(|error| ApiError::Internal(error.into()))
                })
                .transpose()
        };
        Ok(OAuthClientSecrets {
            client_secret: open(CLIENT_SECRET, &stored.client_secret)?,
            registration_access_token: open(
                REGISTRATION_ACCESS_TOKEN,
                &stored.registration_access_token,
            )?,
        })
    }

    /// Lists clients in id order.
    pub fn list(
        &self,
        page: &PageRequest,
        filter: &OAuthClientFilter,
    ) -> Result<Page<Versioned<OAuthClient>>, ApiError> {
        Ok(self
            .state
            .page(page, |stored: &StoredOAuthClient| {
                let client = &stored.client;
                filter
                    .developer
                    .as_ref()
                    .is_none_or(|developer| client.developer_id == *developer)
                    && filter
                        .catalogue_entry
                        .as_ref()
                        .is_none_or(|entry| client.catalogue_entries.contains(entry))
                    && filter.state.is_none_or(|state| client.state == state)
                    && filter
                        .client_id
                        .as_ref()
                        .is_none_or(|client_id| client.client_id == *client_id)
                    && filter.expires_before.is_none_or(|before| {
                        client.access_expires_at.values().any(|at| *at < before)
                    })
            })?
            .map(|record| record.map(|stored| stored.client)))
    }

    /// Revokes a client (it stays recorded). `If-Match` is optional here. Revoking a revoked
    /// client answers it as it is, without a new revision.
    pub async fn revoke(
        &self,
        actor: &Actor,
        id: &str,
        precondition: &Precondition,
    ) -> Result<Versioned<OAuthClient>, ApiError> {
        let writer = self.state.writer().await?;
        let current = self.state.fetch::<StoredOAuthClient>(id)?;
        precondition.check(current.revision, false)?;
        if current.value.client.state == OAuthClientState::Revoked {
            // Revoking a revoked client changes nothing: no commit, no audit, no new snapshot.
            return Ok(current.map(|stored| stored.client));
        }
        let mut stored = current.value.clone();
        stored.client.state = OAuthClientState::Revoked;
        stored.client.revoked_at = Some(self.state.now_rfc3339());
        let revision = writer.revision();
        let change = Change {
            writes: vec![put(revision, &stored)?],
            action: AuditAction::Revoke,
            resource: ResourceRef::new(ResourceKind::OauthClient, id),
            before: Some(current.value.audit_view()),
            after: Some(stored.audit_view()),
            also: Vec::new(),
        };
        writer.commit(actor, change).await?;
        Ok(Versioned {
            revision,
            value: stored.client,
        })
    }

    /// Renews a developer's client from the portal: each of its catalogue entries that allows
    /// renewal and whose policy has a lifetime gets access until now plus that lifetime.
    /// 404 when the client is not the developer's; 409 `conflict` when no entry allows
    /// renewal.
    pub async fn renew(
        &self,
        actor: &Actor,
        developer_id: &str,
        id: &str,
    ) -> Result<Versioned<OAuthClient>, ApiError> {
        let current = self.state.fetch::<StoredOAuthClient>(id)?;
        if current.value.client.developer_id != developer_id {
            return Err(ApiError::NotFound {
                kind: "OAuth client",
                id: id.to_owned(),
            });
        }
        if current.value.client.state != OAuthClientState::Active {
            return Err(ApiError::Conflict {
                field: None,
                message: "this client was revoked: register a new one".to_owned(),
            });
        }
        let now = unix_seconds(self.state.now());
        let renewed: std::collections::BTreeMap<String, u64> = self
            .renewable_entries(&current.value.client)?
            .into_iter()
            .map(|(entry, lifetime)| (entry, now.saturating_add(lifetime)))
            .collect();
        if renewed.is_empty() {
            return Err(ApiError::Conflict {
                field: None,
                message: "this client's access cannot be renewed from the portal: ask the \
                          operator"
                    .to_owned(),
            });
        }
        self.modify(actor, id, AuditAction::SetAccessExpiry, |stored| {
            // Renewal never shortens an access that an operator extended further.
            for (entry, at) in renewed {
                let expires_at = stored.client.access_expires_at.entry(entry).or_insert(at);
                *expires_at = (*expires_at).max(at);
            }
        })
        .await
    }

    /// Sets when a client's access ends (an operator's extension or ending of any binding).
    /// 422 when `catalogue_entry` is not one of the client's entries.
    pub async fn set_access_expiry(
        &self,
        actor: &Actor,
        id: &str,
        input: AccessExpiryInput,
    ) -> Result<Versioned<OAuthClient>, ApiError> {
        let current = self.state.fetch::<StoredOAuthClient>(id)?;
        let entries = match input.catalogue_entry {
            Some(entry) if current.value.client.catalogue_entries.contains(&entry) => vec![entry],
            Some(entry) => {
                return Err(ApiError::invalid(
                    "catalogue_entry",
                    format!("the client is not registered for catalogue entry `{entry}`"),
                ));
            }
            None => current.value.client.catalogue_entries.clone(),
        };
        self.modify(actor, id, AuditAction::SetAccessExpiry, |stored| {
            for entry in entries {
                match input.expires_at {
                    Some(at) => stored.client.access_expires_at.insert(entry, at),
                    None => stored.client.access_expires_at.remove(&entry),
                };
            }
        })
        .await
    }

    /// The catalogue entries of `client` whose access its developer may renew from the portal
    /// (the entry allows renewal and its policy has a lifetime), each with that lifetime in
    /// seconds.
    pub fn renewable_entries(
        &self,
        client: &OAuthClient,
    ) -> Result<std::collections::BTreeMap<String, u64>, ApiError> {
        let mut renewable = std::collections::BTreeMap::new();
        for entry in &client.catalogue_entries {
            let allowed = self
                .state
                .fetch::<CatalogueEntry>(entry)
                .is_ok_and(|entry| entry.value.renewable);
            if let (true, Some(lifetime)) = (allowed, self.entry_lifetime(entry)?) {
                renewable.insert(entry.clone(), lifetime);
            }
        }
        Ok(renewable)
    }

    /// The lifetime of a catalogue entry's policy, in seconds, if the entry and its policy
    /// exist and the policy has one.
    fn entry_lifetime(&self, entry: &str) -> Result<Option<u64>, ApiError> {
        let Ok(entry) = self.state.fetch::<CatalogueEntry>(entry) else {
            return Ok(None);
        };
        Ok(self
            .state
            .fetch::<super::policies::Policy>(&entry.value.policy)
            .ok()
            .and_then(|policy| policy.value.lifetime_seconds))
    }

    /// Removes the record of a client for good (the client at the IdP is not touched): the
    /// data plane stops refusing its `client_id`. The admin API's `DELETE` purges only records
    /// whose client was deleted at the IdP (see [`super::registration`]).
    pub async fn delete(
        &self,
        actor: &Actor,
        id: &str,
        precondition: &Precondition,
    ) -> Result<(), ApiError> {
        let writer = self.state.writer().await?;
        let current = self.state.fetch::<StoredOAuthClient>(id)?;
        precondition.check(current.revision, true)?;
        self.check_revocation_ended(&current.value.client)?;
        let change = Change {
            writes: vec![
                remove::<StoredOAuthClient>(id),
                Write::remove(
                    Tree::OAuthClientIds,
                    current.value.client.client_id.as_bytes(),
                ),
            ],
            action: AuditAction::Delete,
            resource: ResourceRef::new(ResourceKind::OauthClient, id),
            before: Some(current.value.audit_view()),
            after: None,
            also: Vec::new(),
        };
        writer.commit(actor, change).await?;
        Ok(())
    }

    /// Refuses to purge `client` while its `client_id` is still on the snapshot's revoked list:
    /// purging it would let its unexpired tokens pass again at once.
    ///
    /// # Errors
    /// 409 `conflict` with the moment the revocation ends (or that it never does); the store's.
    fn check_revocation_ended(&self, client: &OAuthClient) -> Result<(), ApiError> {
        let developer_disabled = self
            .state
            .fetch::<super::developers::StoredDeveloper>(&client.developer_id)
            .is_ok_and(|stored| {
                stored.value.developer.state == super::developers::DeveloperState::Disabled
            });
        let retention = Retention::read(super::Reader::new(self.state.store()))?;
        let now = unix_seconds(self.state.now());
        let message = match revocation_ends_at(client, developer_disabled, &retention) {
            Some(ends_at) if ends_at <= now => return Ok(()),
            Some(ends_at) => format!(
                "the client's tokens can pass until {}: its revocation stays in the snapshot \
                 until then (deleted_at + the issuers' longest max_token_lifetime_seconds + twice \
                 the largest clock_skew_seconds); purge it after that moment",
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(ends_at)
                )
            ),
            None => "the client's revocation stays in the snapshot while its developer is \
                     disabled (or while no issuer is configured to bound its tokens' lifetime): \
                     purging it would let its tokens pass again"
                .to_owned(),
        };
        Err(ApiError::Conflict {
            field: None,
            message,
        })
    }

    /// Every client (active and revoked), in id order, in one pass over the tree.
    pub fn all(&self) -> Result<Vec<Versioned<OAuthClient>>, ApiError> {
        Ok(self
            .state
            .load_all::<StoredOAuthClient>()?
            .into_iter()
            .map(|record| record.map(|stored| stored.client))
            .collect())
    }

    /// What the data plane needs: active clients with their policies (the policy of each of
    /// their catalogue entries) and the revoked `client_id`s — revoked clients, and every client
    /// of a disabled developer — as of now. One pass over the clients, the catalogue and the
    /// developers.
    pub fn bindings(&self) -> Result<ClientBindings, ApiError> {
        let reader = super::Reader::new(self.state.store());
        bindings_in(
            reader,
            unix_seconds(self.state.now()),
            &Retention::read(reader)?,
        )
    }

    /// A client with what is stored about it, for the registration flow.
    pub(crate) fn stored(&self, id: &str) -> Result<Versioned<StoredOAuthClient>, ApiError> {
        self.state.fetch::<StoredOAuthClient>(id)
    }

    /// Records what RFC 7592 management changed at the IdP: secrets re-sealed, metadata and
    /// redirect URIs replaced.
    pub(crate) async fn record_managed(
        &self,
        actor: &Actor,
        id: &str,
        action: AuditAction,
        change: ManagedChange,
    ) -> Result<Versioned<OAuthClient>, ApiError> {
        let client_secret = self.seal_for(id, CLIENT_SECRET, change.client_secret.as_ref())?;
        let token = self.seal_for(
            id,
            REGISTRATION_ACCESS_TOKEN,
            change.registration_access_token.as_ref(),
        )?;
        self.modify(actor, id, action, |stored| {
            if let Some(sealed) = client_secret {
                stored.client_secret = Some(sealed);
                stored.client.client_secret_set = true;
            }
            if let Some(sealed) = token {
                stored.registration_access_token = Some(sealed);
                stored.client.registration_access_token_set = true;
            }
            if let Some(uri) = change.registration_client_uri {
                stored.client.registration_client_uri = Some(uri);
            }
            if let Some(metadata) = change.metadata {
                stored.client.redirect_uris = metadata.redirect_uris.clone();
                if let Some(registration) = &mut stored.registration {
                    registration.metadata = metadata;
                }
            }
        })
        .await
    }

    /// Marks a client deleted at the IdP: `revoked`, with `deleted_at`, kept for the data
    /// plane.
    pub(crate) async fn mark_deleted(
        &self,
        actor: &Actor,
        id: &str,
    ) -> Result<Versioned<OAuthClient>, ApiError> {
        let now = self.state.now_rfc3339();
        self.modify(actor, id, AuditAction::Delete, |stored| {
            if stored.client.state != OAuthClientState::Revoked {
                stored.client.state = OAuthClientState::Revoked;
                stored.client.revoked_at = Some(now.clone());
            }
            stored.client.deleted_at = Some(now);
        })
        .await
    }

    /// Records a secret rotation by re-registration: the record `id` takes over the new
    /// client (new `client_id`, secret and management credentials), and a new record keeps the
    /// old `client_id` as `revoked` (with `replaced_by`) so that the data plane refuses it and
    /// its IdP registration can still be deleted. `deleted_at` is set on that record when the
    /// old client was already deleted at the IdP. `intent_removal` removes the rotation's
    /// registration intent ([`super::interrupted`]). One transaction.
    pub(crate) async fn record_replacement(
        &self,
        actor: &Actor,
        id: &str,
        replacement: Replacement,
        intent_removal: Write,
    ) -> Result<(Versioned<OAuthClient>, String), ApiError> {
        let tombstone_id = random_id("cli_")?;
        let old_secrets = self.secrets(id)?;
        let client_secret = self.seal_for(id, CLIENT_SECRET, replacement.client_secret.as_ref())?;
        let token = self.seal_for(
            id,
            REGISTRATION_ACCESS_TOKEN,
            replacement.registration_access_token.as_ref(),
        )?;
        let old_token = self.seal_for(
            &tombstone_id,
            REGISTRATION_ACCESS_TOKEN,
            old_secrets.registration_access_token.as_ref(),
        )?;
        let writer = self.state.writer().await?;
        let current = self.state.fetch::<StoredOAuthClient>(id)?;
        if self
            .state
            .store()
            .get(Tree::OAuthClientIds, replacement.client_id.as_bytes())?
            .is_some()
        {
            return Err(ApiError::AlreadyExists {
                field: "client_id".to_owned(),
                message: format!(
                    "an OAuth client with client_id `{}` exists",
                    replacement.client_id
                ),
            });
        }
        let now = self.state.now_rfc3339();
        let mut tombstone = current.value.clone();
        tombstone.client.id = tombstone_id.clone();
        tombstone.client.state = OAuthClientState::Revoked;
        tombstone.client.revoked_at = Some(now.clone());
        tombstone.client.deleted_at = None;
        tombstone.client.replaced_by = Some(id.to_owned());
        tombstone.client_secret = None;
        tombstone.client.client_secret_set = false;
        tombstone.registration_access_token = old_token;
        tombstone.client.registration_access_token_set =
            tombstone.registration_access_token.is_some();
        let mut stored = current.value.clone();
        stored.client.client_id = replacement.client_id;
        stored.client_secret = client_secret;
        stored.client.client_secret_set = stored.client_secret.is_some();
        stored.registration_access_token = token;
        stored.client.registration_access_token_set = stored.registration_access_token.is_some();
        stored.client.registration_client_uri = replacement.registration_client_uri;
        stored.client.client_secret_expires_at = replacement.client_secret_expires_at;
        stored.client.client_id_issued_at = replacement.client_id_issued_at;
        let revision = writer.revision();
        let change = Change {
            writes: vec![
                put(revision, &stored)?,
                put(revision, &tombstone)?,
                Write::put(
                    Tree::OAuthClientIds,
                    stored.client.client_id.as_bytes(),
                    id.as_bytes().to_vec(),
                ),
                Write::put(
                    Tree::OAuthClientIds,
                    tombstone.client.client_id.as_bytes(),
                    tombstone_id.clone().into_bytes(),
                ),
                intent_removal,
            ],
            action: AuditAction::RotateSecret,
            resource: ResourceRef::new(ResourceKind::OauthClient, id),
            before: Some(current.value.audit_view()),
            after: Some(stored.audit_view()),
            // The record that keeps the old `client_id`, revoked, is created alongside.
            also: vec![AuditChange {
                action: AuditAction::Create,
                resource: ResourceRef::new(ResourceKind::OauthClient, &tombstone_id),
                before: None,
                after: Some(tombstone.audit_view()),
            }],
        };
        writer.commit(actor, change).await?;
        Ok((
            Versioned {
                revision,
                value: stored.client,
            },
            tombstone_id,
        ))
    }

    async fn modify(
        &self,
        actor: &Actor,
        id: &str,
        action: AuditAction,
        apply: impl FnOnce(&mut StoredOAuthClient),
    ) -> Result<Versioned<OAuthClient>, ApiError> {
        let writer = self.state.writer().await?;
        let current = self.state.fetch::<StoredOAuthClient>(id)?;
        let mut stored = current.value.clone();
        apply(&mut stored);
        let revision = writer.revision();
        let change = Change {
            writes: vec![put(revision, &stored)?],
            action,
            resource: ResourceRef::new(ResourceKind::OauthClient, id),
            before: Some(current.value.audit_view()),
            after: Some(stored.audit_view()),
            also: Vec::new(),
        };
        writer.commit(actor, change).await?;
        Ok(Versioned {
            revision,
            value: stored.client,
        })
    }

    fn seal_for(
        &self,
        id: &str,
        field: &str,
        secret: Option<&Secret>,
    ) -> Result<Option<String>, ApiError> {
        secret
            .map(|secret| {
                self.state
                    .cipher()
                    .seal(
                        secret,
                        SealContext {
                            kind: KIND,
                            id,
                            field,
                        },
                    )
                    .map_err(|error| ApiError::Internal(error.into()))
            })
            .transpose()
    }
}

/// The new client of a secret rotation by re-registration.
#[derive(Debug, Clone)]
pub(crate) struct Replacement {
    pub(crate) client_id: String,
    pub(crate) client_secret: Option<Secret>,
    pub(crate) registration_access_token: Option<Secret>,
    pub(crate) registration_client_uri: Option<String>,
    pub(crate) client_secret_expires_at: Option<u64>,
    pub(crate) client_id_issued_at: Option<u64>,
}

/// [`OAuthClients::bindings`] over any reader (the committed store, or a staged change) at
/// `now` (seconds since the Unix epoch), with `retention` computed from the same reader's
/// issuers and APIs.
pub(crate) fn bindings_in(
    reader: super::Reader<'_>,
    now: u64,
    retention: &Retention,
) -> Result<ClientBindings, ApiError> {
    let policies: std::collections::HashMap<String, String> = reader
        .load_all::<CatalogueEntry>()?
        .into_iter()
        .map(|entry| (entry.value.id, entry.value.policy))
        .collect();
    let disabled: std::collections::HashSet<String> = reader
        .values::<super::developers::StoredDeveloper>()?
        .into_iter()
        .map(|stored| stored.developer)
        .filter(|developer| developer.state == super::developers::DeveloperState::Disabled)
        .map(|developer| developer.id)
        .collect();
    let mut bindings = ClientBindings::default();
    for record in reader.load_all::<StoredOAuthClient>()? {
        let client = record.value.client;
        let state = if disabled.contains(&client.developer_id) {
            OAuthClientState::Revoked
        } else {
            client.state
        };
        match state {
            OAuthClientState::Active => {
                let mut bound: Vec<String> = Vec::new();
                // Per policy: the latest expiry of the entries granting it; `None` (never)
                // wins over any time.
                let mut expiry: std::collections::BTreeMap<String, Option<u64>> =
                    std::collections::BTreeMap::new();
                for entry in &client.catalogue_entries {
                    let Some(policy) = policies.get(entry) else {
                        continue;
                    };
                    bound.push(policy.clone());
                    let at = client.access_expires_at.get(entry).copied();
                    let merged = match expiry.get(policy) {
                        None => at,
                        Some(earlier) => earlier.zip(at).map(|(a, b)| a.max(b)),
                    };
                    expiry.insert(policy.clone(), merged);
                }
                bound.sort_unstable();
                bound.dedup();
                let expires_at = expiry
                    .into_iter()
                    .filter_map(|(policy, at)| at.map(|at| (policy, at)))
                    .collect();
                bindings.active.push(ClientBinding {
                    client_id: client.client_id,
                    policies: bound,
                    expires_at,
                    client: Some(client.id),
                    developer: Some(client.developer_id),
                });
            }
            OAuthClientState::Revoked | OAuthClientState::Orphaned => {
                let ends_at =
                    revocation_ends_at(&client, disabled.contains(&client.developer_id), retention);
                match ends_at {
                    Some(ends_at) if ends_at <= now => {}
                    Some(ends_at) => {
                        bindings.next_revocation_end = Some(
                            bindings
                                .next_revocation_end
                                .map_or(ends_at, |next| next.min(ends_at)),
                        );
                        bindings.revoked.push(client.client_id);
                    }
                    None => bindings.revoked.push(client.client_id),
                }
            }
        }
    }
    bindings
        .active
        .sort_unstable_by(|a, b| a.client_id.cmp(&b.client_id));
    // One entry per client id, whatever the records say, so the snapshot always compiles.
    bindings.active.dedup_by(|later, earlier| {
        if later.client_id != earlier.client_id {
            return false;
        }
        // Expiries only where both records expire (a never-expiring one wins).
        let later_expiry = std::mem::take(&mut later.expires_at);
        earlier
            .expires_at
            .retain(|policy, at| match later_expiry.get(policy) {
                Some(other) => {
                    *at = (*at).max(*other);
                    true
                }
                None => !later.policies.contains(policy),
            });
        for (policy, at) in later_expiry {
            if !earlier.policies.contains(&policy) {
                earlier.expires_at.insert(policy, at);
            }
        }
        earlier.policies.append(&mut later.policies);
        earlier.policies.sort_unstable();
        earlier.policies.dedup();
        true
    });
    bindings.revoked.sort_unstable();
    bindings.revoked.dedup();
    Ok(bindings)
}

/// What bounds the life of a deleted client's tokens across the snapshot.
pub(crate) struct Retention {
    /// The longest `max_token_lifetime_seconds` of every issuer (a client's tokens may come
    /// from any of them); `None` without issuers.
    max_token_lifetime_seconds: Option<u64>,
    /// The largest clock skew any API tolerates, in seconds.
    clock_skew_seconds: u64,
}

impl Retention {
    /// The bound that `issuers` and `apis` (all of them) set.
    pub(crate) fn of(issuers: &[super::issuers::Issuer], apis: &[super::apis::Api]) -> Retention {
        Retention {
            max_token_lifetime_seconds: issuers
                .iter()
                .map(|issuer| issuer.max_token_lifetime_seconds)
                .max(),
            clock_skew_seconds: apis
                .iter()
                .map(|api| api.clock_skew_seconds)
                .max()
                .unwrap_or(portico_core::rules::DEFAULT_CLOCK_SKEW_SECONDS),
        }
    }

    /// The bound that `reader`'s issuers and APIs set. Errors: the store's.
    fn read(reader: super::Reader<'_>) -> Result<Retention, ApiError> {
        Ok(Retention::of(&reader.values()?, &reader.values()?))
    }
}

/// When a revoked client's `client_id` may leave the snapshot's revoked list (seconds since the
/// Unix epoch, [`portico_core::rules::revocation_ends_at`]), `None` when it must stay for good.
/// Only a client gone from the IdP can get no new token; the others (revoked here only,
/// orphaned, or of a disabled developer, `developer_disabled`) stay revoked for good, as do all
/// clients while no issuer is configured (`retention` then bounds no token's lifetime).
fn revocation_ends_at(
    client: &OAuthClient,
    developer_disabled: bool,
    retention: &Retention,
) -> Option<u64> {
    client
        .deleted_at
        .as_deref()
        .filter(|_| client.state == OAuthClientState::Revoked && !developer_disabled)
        .and_then(|text| humantime::parse_rfc3339_weak(text).ok())
        .and_then(|deleted_at| {
            portico_core::rules::revocation_ends_at(
                unix_seconds(deleted_at),
                retention.max_token_lifetime_seconds,
                retention.clock_skew_seconds,
            )
        })
}

/// Seconds since the Unix epoch (0 before it).
pub fn unix_seconds(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
