//! OAuth clients registered at the IdP for developers. The registration flow (a later DCR
//! service) creates them through [`OAuthClients::create`]; operators can list, inspect, revoke
//! and delete them. The client secret and the registration access token are sealed at rest
//! and never shown; the IdP's `client_id` is unique (kept in an index tree).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit::AuditAction;
use super::catalogue::CatalogueEntry;
use super::developers::StoredDeveloper;
use super::{
    Actor, AppState, Change, Page, PageRequest, Precondition, Resource, ResourceKind, ResourceRef,
    Versioned, put, random_id, remove, to_value, validate,
};
use crate::error::ApiError;
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
    /// Revoked clients are refused by the data plane.
    pub state: OAuthClientState,
}

/// Whether a client may call APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OAuthClientState {
    /// The client may call APIs.
    Active,
    /// The client is refused.
    Revoked,
}

/// An OAuth client as stored: the view plus the sealed secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredOAuthClient {
    pub(crate) client: OAuthClient,
    client_secret: Option<String>,
    registration_access_token: Option<String>,
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
        if !self.state.exists::<StoredDeveloper>(&input.developer_id)? {
            return Err(ApiError::unknown_reference(
                "developer_id",
                format!("developer `{}` does not exist", input.developer_id),
            ));
        }
        for (i, entry) in input.catalogue_entries.iter().enumerate() {
            if !self.state.exists::<CatalogueEntry>(entry)? {
                return Err(ApiError::unknown_reference(
                    format!("catalogue_entries[{i}]"),
                    format!("catalogue entry `{entry}` does not exist"),
                ));
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
                state: OAuthClientState::Active,
            },
            client_secret,
            registration_access_token,
        };
        let revision = writer.revision();
        let change = Change {
            writes: vec![
                put(revision, &stored)?,
                Write::put(
                    Tree::OAuthClientIds,
                    stored.client.client_id.as_bytes(),
                    id.clone().into_bytes(),
                ),
            ],
            action: AuditAction::Create,
            resource: ResourceRef::new(ResourceKind::OauthClient, &id),
            before: None,
            after: Some(stored.audit_view()),
        };
        writer.commit(actor, change).await?;
        Ok(Versioned {
            revision,
            value: stored.client,
        })
    }

    /// Every client, in id order (the snapshot builder reads them all).
    pub fn all(&self) -> Result<Vec<OAuthClient>, ApiError> {
        Ok(self
            .state
            .load_all::<StoredOAuthClient>()?
            .into_iter()
            .map(|versioned| versioned.value.client)
            .collect())
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
            })?
            .map(|record| record.map(|stored| stored.client)))
    }

    /// Revokes a client (it stays recorded). `If-Match` is optional here.
    pub async fn revoke(
        &self,
        actor: &Actor,
        id: &str,
        precondition: &Precondition,
    ) -> Result<Versioned<OAuthClient>, ApiError> {
        let writer = self.state.writer().await?;
        let current = self.state.fetch::<StoredOAuthClient>(id)?;
        precondition.check(current.revision, false)?;
        let mut stored = current.value.clone();
        stored.client.state = OAuthClientState::Revoked;
        let revision = writer.revision();
        let change = Change {
            writes: vec![put(revision, &stored)?],
            action: AuditAction::Revoke,
            resource: ResourceRef::new(ResourceKind::OauthClient, id),
            before: Some(current.value.audit_view()),
            after: Some(stored.audit_view()),
        };
        writer.commit(actor, change).await?;
        Ok(Versioned {
            revision,
            value: stored.client,
        })
    }

    /// Deletes the record of a client (not the client at the IdP).
    pub async fn delete(
        &self,
        actor: &Actor,
        id: &str,
        precondition: &Precondition,
    ) -> Result<(), ApiError> {
        let writer = self.state.writer().await?;
        let current = self.state.fetch::<StoredOAuthClient>(id)?;
        precondition.check(current.revision, true)?;
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
        };
        writer.commit(actor, change).await?;
        Ok(())
    }
}
