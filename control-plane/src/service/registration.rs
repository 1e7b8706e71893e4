//! The registration flow: developers' OAuth clients registered at the IdP (RFC 7591) and
//! managed there (RFC 7592), with nothing lost and nothing orphaned.
//!
//! - **Register** ([`Registrations::register`]): the effective DCR settings of the catalogue
//!   entries (endpoints discovered when not configured), the developer's name and redirect URIs,
//!   the initial access token. An IdP refusal shows the IdP's `error` and `error_description`
//!   and stores nothing; an unreachable or slow IdP (10 s bound) stores nothing. When the IdP
//!   created the client but Portico refuses its answer or cannot record it, the client is
//!   deleted at the IdP again, or, when that is impossible or fails, recorded as `orphaned`
//!   for the operators ([`Registrations::undo_creation`]).
//! - **Double submits** create one client: each create carries an `Idempotency-Key`, remembered
//!   per developer for [`IDEMPOTENCY_TTL`] in the same transaction as the client. Concurrent
//!   requests with the same key are serialised (a per-key lock), so the second one waits and
//!   replays the first one's answer. A replay shows the client secret again only within
//!   [`SECRET_REPLAY_WINDOW`] of the creation (the first answer may have been lost to the double
//!   submit); later replays answer without it. The same key with a different request is 422.
//! - **Delete** (by the developer, or an operator through the admin API): the client is deleted
//!   at the IdP, then recorded as `revoked` with `deleted_at`, so the data plane refuses its
//!   tokens at once. An IdP 404/410 counts as deleted. When the IdP refuses (401/403, 5xx,
//!   timeout, no management possible), the client is revoked locally anyway (the gateway refuses
//!   it) and the error says why; deleting again retries the IdP.
//! - **Rotate the secret**: first RFC 7592 — `PUT` of the whole registration (with `client_id`)
//!   to the `registration_client_uri`; if the IdP answers with a new `client_secret`, that is
//!   the rotation. IdPs that keep the secret on update (node `oidc-provider` does: it answers
//!   with the same secret, and refuses a `client_secret` in the body unless it is the current
//!   one) get a rotation by re-registration: a new client with the same metadata takes over the
//!   record (new `client_id` and secret), and the old client is deleted at the IdP and kept as a
//!   `revoked` record (`replaced_by`) for the data plane.
//! - **Edit redirect URIs**: `PUT` of the whole registration with the new URIs.
//!
//! Every management answer's registration access token replaces the stored one (IdPs rotate
//! it). Management calls on one client are serialised. Each operation runs in its own task, so
//! a client that gives up (or the request timeout) cannot interrupt it between the IdP call and
//! the record, or the compensating delete.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;
use utoipa::ToSchema;

use super::audit::AuditAction;
use super::catalogue::CatalogueEntry;
use super::dcr::{ResolvedDcr, TokenEndpointAuthMethod};
use super::developers::Developer;
use super::interrupted::{Intent, IntentStart, InterruptionReason, RegistrationOperation};
use super::oauth_clients::{
    ManagedChange, NewOAuthClient, OAuthClient, OAuthClientState, Replacement, StoredRegistration,
};
use super::policies::Policy;
use super::redirect_uri::RedirectUri;
use super::throttle::retry_after;
use super::{Actor, AppState, Precondition, Versioned, validate};
use crate::error::ApiError;
use crate::idp::TransportError;
use crate::idp::dcr::{
    ClientMetadata, DcrDriver, DcrError, Deletion, ManagedClient, Provider, RegisteredClient,
    RegistrationTarget,
};
use crate::secret::Secret;
use crate::store::{Order, Tree, Write};

/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How long after its creation a replayed create shows the client secret again.
pub const SECRET_REPLAY_WINDOW: Duration = Duration::from_secs(10 * 60);
/// At most this many developers' recent registrations are remembered for the hourly limit.
pub(crate) const MAX_TRACKED_DEVELOPERS: usize = 10_000;
/// The longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

// === Per-key locks ===

/// Who and what a client that must be undone was registered for, to record it as an orphan.
#[derive(Debug)]
struct OrphanOf<'a> {
    actor: &'a Actor,
    developer_id: &'a str,
    catalogue_entries: &'a [String],
    client_name: &'a str,
    redirect_uris: &'a [String],
}

/// Async locks by name, dropped when nobody holds or waits for them: the registration flow
/// serialises requests with one idempotency key, and management calls on one client.
#[derive(Debug, Default)]
pub(crate) struct KeyedLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A held lock; releases (and forgets the lock when unused) on drop.
struct KeyedGuard<'a> {
    owner: &'a KeyedLocks,
    key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    async fn lock(&self, key: String) -> KeyedGuard<'_> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(locks.entry(key.clone()).or_default())
        };
        let guard = lock.lock_owned().await;
        KeyedGuard {
            owner: self,
            key,
            guard: Some(guard),
        }
    }
}

impl Drop for KeyedGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self
            .owner
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if locks
            .get(&self.key)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

// === Requests and answers ===

/// A developer's request for a new OAuth client.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientRequest {
    /// The catalogue entries to register the client for (at least one; all must use the same
    /// DCR settings).
    pub catalogue_entries: Vec<String>,
    /// The client's name, shown at the IdP.
    pub client_name: String,
    /// Redirect URIs (needed for redirect-based grants only). Default: none.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
}

/// The body of a redirect-URI edit.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedirectUris {
    /// The new redirect URIs (replacing the old ones).
    pub redirect_uris: Vec<String>,
}

/// A client with what its developer needs to use it, as data: the pages and the JSON API
/// each render it (sample commands are the presentation layer's, `http::present`). The secret
/// is present when it was just issued (creation, rotation, a replay within the replay
/// window), never otherwise.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The client.
    pub client: OAuthClient,
    /// The client secret, just issued (its `Debug` is redacted).
    pub client_secret: Option<Secret>,
    /// The IdP's token endpoint.
    pub token_endpoint: Option<String>,
    /// How the client authenticates at the token endpoint (`client_secret_post`, ...).
    pub token_endpoint_auth_method: String,
    /// The scope the client was registered with, if any.
    pub scope: Option<String>,
    /// The gateway paths the client's policies grant: one per API (its first granted path
    /// prefix, else its listen path).
    pub api_paths: Vec<String>,
    /// Whether this answer replays an earlier request with the same `Idempotency-Key`.
    pub replayed: bool,
    /// Time left on each expiring access, catalogue entry id to seconds (0: expired); entries
    /// absent here never expire. `client.access_expires_at` gives the times.
    pub access_seconds_left: std::collections::BTreeMap<String, u64>,
    /// Whether the developer can renew the access (`POST …/{id}/renew`): some catalogue entry
    /// of the client allows renewal and its policy has a lifetime.
    pub renewable: bool,
}

/// An `Idempotency-Key`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// 1 to 255 visible ASCII characters.
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        let valid = !value.is_empty()
            && value.len() <= MAX_IDEMPOTENCY_KEY_LEN
            && value.bytes().all(|byte| byte.is_ascii_graphic());
        if valid {
            Ok(IdempotencyKey(value.to_owned()))
        } else {
            Err(ApiError::invalid(
                "Idempotency-Key",
                format!(
                    "must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters, e.g. a UUID \
                     made when the form is shown"
                ),
            ))
        }
    }
}

/// What an idempotency key is remembered with.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct IdempotencyRecord {
    /// SHA-256 of the request, hex.
    fingerprint: String,
    /// The OAuth client's id.
    client: String,
    /// Seconds since the epoch.
    created_at: u64,
}

fn idempotency_key(developer: &str, key: &IdempotencyKey) -> Vec<u8> {
    let mut bytes = developer.as_bytes().to_vec();
    bytes.push(0);
    bytes.extend_from_slice(key.0.as_bytes());
    bytes
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |duration| duration.as_secs())
}

// === The flow ===

/// The registration flow.
#[derive(Debug, Clone, Copy)]
pub struct Registrations<'a> {
    state: &'a AppState,
}

impl<'a> Registrations<'a> {
    pub(crate) fn new(state: &'a AppState) -> Self {
        Registrations { state }
    }

    /// Registers a client for `developer` at the IdP and records it (see the module docs).
    pub async fn register(
        &self,
        developer: &Developer,
        key: IdempotencyKey,
        request: ClientRequest,
    ) -> Result<Issued, ApiError> {
        let state = self.state.clone();
        let developer = developer.clone();
        run_detached(async move {
            Registrations::new(&state)
                .register_attached(&developer, &key, request)
                .await
        })
        .await
    }

    async fn register_attached(
        &self,
        developer: &Developer,
        key: &IdempotencyKey,
        request: ClientRequest,
    ) -> Result<Issued, ApiError> {
        let request = normalise(request)?;
        let fingerprint = fingerprint(&request)?;
        let record_key = idempotency_key(&developer.id, key);
        let _guard = self
            .state
            .registration_locks()
            .lock(format!("idempotency:{}", hex_of(&record_key)))
            .await;
        let now = unix(self.state.now());
        // What the key holds now, which must not change before the new client is recorded:
        // another replica may serve the same key at once (the lock above is this process's).
        let previous = Write {
            tree: Tree::Idempotency,
            key: record_key.clone(),
            value: self.state.store().get(Tree::Idempotency, &record_key)?,
        };
        if let Some(record) = self
            .state
            .load_from::<IdempotencyRecord>(Tree::Idempotency, &record_key)?
            && now < record.created_at + IDEMPOTENCY_TTL.as_secs()
        {
            if record.fingerprint != fingerprint {
                return Err(ApiError::IdempotencyKeyReused);
            }
            return self.replay(&record, now).await;
        }
        self.check_client_cap(developer)?;
        self.charge_budget(developer)?;
        let resolved = self.resolve_all(&request.catalogue_entries).await?;
        let metadata = metadata(&resolved, &request);
        let target = RegistrationTarget {
            registration_endpoint: resolved.registration_endpoint.clone(),
            initial_access_token: resolved.effective.initial_access_token.clone(),
        };
        let provider = resolved.effective.settings.provider;
        let driver = self.state.idp().driver(provider);
        let actor = Actor::Developer {
            id: developer.id.clone(),
        };
        let orphan = OrphanOf {
            actor: &actor,
            developer_id: &developer.id,
            catalogue_entries: &request.catalogue_entries,
            client_name: &request.client_name,
            redirect_uris: &request.redirect_uris,
        };
        let intent = self.state.interrupted_registrations().begin(IntentStart {
            operation: RegistrationOperation::Register,
            oauth_client: None,
            developer_id: &developer.id,
            client_name: &request.client_name,
            redirect_uris: &metadata.redirect_uris,
            catalogue_entries: &request.catalogue_entries,
            provider,
            registration_endpoint: resolved.registration_endpoint.as_str(),
        })?;
        let registered = match driver.register(&target, &metadata).await {
            Ok(registered) => registered,
            Err(error) => {
                return Err(self
                    .undo_refused(
                        driver,
                        &target,
                        &orphan,
                        &intent,
                        error,
                        "registering the client",
                    )
                    .await);
            }
        };
        let registration = StoredRegistration {
            provider,
            registration_endpoint: resolved.registration_endpoint.to_string(),
            token_endpoint: resolved.token_endpoint.as_ref().map(Url::to_string),
            metadata: registered_metadata(metadata, &registered),
        };
        let idempotency = IdempotencyRecord {
            fingerprint,
            client: String::new(),
            created_at: now,
        };
        let recorded = self
            .record_new(
                developer,
                &request,
                &registered,
                registration,
                previous,
                idempotency,
                &intent,
            )
            .await;
        let client = match recorded {
            Ok(client) => client,
            Err(error) => {
                let reason = format!("recording the new client failed: {error}");
                self.undo_creation(
                    driver,
                    &target,
                    &orphan,
                    &intent,
                    Some(registered.managed()),
                    &reason,
                )
                .await;
                return Err(error);
            }
        };
        self.purge_expired_keys(&developer.id, now);
        let stored = self.state.oauth_clients().stored(&client.value.id)?.value;
        Ok(self.issued(
            client.value,
            registered.client_secret.as_ref(),
            stored.registration.as_ref(),
            false,
        ))
    }

    /// Records the new client with its idempotency record, and removes its intent, in one
    /// transaction, if the idempotency record is still `previous` (409 `conflict` otherwise).
    #[allow(clippy::too_many_arguments)]
    async fn record_new(
        &self,
        developer: &Developer,
        request: &ClientRequest,
        registered: &RegisteredClient,
        registration: StoredRegistration,
        previous: Write,
        mut idempotency: IdempotencyRecord,
        intent: &Intent,
    ) -> Result<Versioned<OAuthClient>, ApiError> {
        let input = NewOAuthClient {
            developer_id: developer.id.clone(),
            catalogue_entries: request.catalogue_entries.clone(),
            client_name: request.client_name.clone(),
            redirect_uris: registration.metadata.redirect_uris.clone(),
            client_id: registered.client_id.clone(),
            client_secret: registered.client_secret.clone(),
            registration_access_token: registered.registration_access_token.clone(),
            registration_client_uri: registered
                .registration_client_uri
                .as_ref()
                .map(Url::to_string),
            client_secret_expires_at: registered.client_secret_expires_at,
            client_id_issued_at: registered.client_id_issued_at,
            orphan_reason: None,
        };
        // The record's id is assigned by `create_registered`; the idempotency record names
        // the IdP's `client_id`, unique too, and is resolved through the index on replay.
        idempotency.client = registered.client_id.clone();
        let bytes =
            serde_json::to_vec(&idempotency).map_err(|error| ApiError::Internal(error.into()))?;
        self.state
            .oauth_clients()
            .create_registered(
                &Actor::Developer {
                    id: developer.id.clone(),
                },
                input,
                Some(registration),
                vec![
                    Write::put(Tree::Idempotency, previous.key.clone(), bytes),
                    intent.removal(),
                ],
                Some(previous),
            )
            .await
    }

    async fn replay(&self, record: &IdempotencyRecord, now: u64) -> Result<Issued, ApiError> {
        let id: Option<Vec<u8>> = self
            .state
            .store()
            .get(Tree::OAuthClientIds, record.client.as_bytes())?;
        let id = id
            .and_then(|id| String::from_utf8(id).ok())
            .ok_or_else(|| ApiError::Conflict {
                field: None,
                message: "the client created with this Idempotency-Key no longer exists; use a \
                          new key to register another"
                    .to_owned(),
            })?;
        let mut stored = self.state.oauth_clients().stored(&id)?.value;
        // A rotation by re-registration moved the client to another record: follow it.
        for _ in 0..8 {
            let Some(next) = stored.client.replaced_by.clone() else {
                break;
            };
            stored = self.state.oauth_clients().stored(&next)?.value;
        }
        let id = stored.client.id.clone();
        let secret = if now < record.created_at + SECRET_REPLAY_WINDOW.as_secs()
            && stored.client.state == OAuthClientState::Active
            && stored.client.client_id == record.client
        {
            self.state.oauth_clients().secrets(&id)?.client_secret
        } else {
            None
        };
        Ok(self.issued(
            stored.client,
            secret.as_ref(),
            stored.registration.as_ref(),
            true,
        ))
    }

    /// The resolved settings shared by every entry of a request.
    async fn resolve_all(&self, entries: &[String]) -> Result<ResolvedDcr, ApiError> {
        let mut resolved: Option<ResolvedDcr> = None;
        for (i, entry) in entries.iter().enumerate() {
            if !self.state.exists::<CatalogueEntry>(entry)? {
                return Err(ApiError::unknown_reference(
                    format!("catalogue_entries[{i}]"),
                    format!("catalogue entry `{entry}` does not exist"),
                ));
            }
            let next = self.state.dcr().resolve(entry).await?;
            match &resolved {
                None => resolved = Some(next),
                Some(first)
                    if first.effective.settings == next.effective.settings
                        && first.effective.initial_access_token
                            == next.effective.initial_access_token => {}
                Some(_) => {
                    return Err(ApiError::invalid(
                        "catalogue_entries",
                        "these catalogue entries register clients with different DCR settings; \
                         register one client per entry",
                    ));
                }
            }
        }
        resolved.ok_or_else(|| {
            ApiError::invalid("catalogue_entries", "name at least one catalogue entry")
        })
    }

    /// Removes this developer's expired idempotency records (operational state, unaudited).
    fn purge_expired_keys(&self, developer: &str, now: u64) {
        let mut prefix = developer.as_bytes().to_vec();
        prefix.push(0);
        let mut expired = Vec::new();
        for entry in self
            .state
            .store()
            .scan(Tree::Idempotency, Some(&prefix), Order::Ascending)
        {
            let Ok((key, bytes)) = entry else { break };
            if !key.starts_with(&prefix) {
                break;
            }
            let stale = serde_json::from_slice::<IdempotencyRecord>(&bytes)
                .map_or(true, |record| {
                    record.created_at + IDEMPOTENCY_TTL.as_secs() <= now
                });
            if stale {
                expired.push(Write::remove(Tree::Idempotency, key));
            }
        }
        if !expired.is_empty()
            && let Err(error) = self.state.store().write_unversioned(&expired)
        {
            tracing::warn!(%error, "could not purge expired idempotency records");
        }
    }

    /// 409 `client_limit` when the developer has the most clients allowed (deleted ones do not
    /// count).
    fn check_client_cap(&self, developer: &Developer) -> Result<(), ApiError> {
        let cap = self.state.settings().portal.max_clients_per_developer;
        if self.list_for(developer)?.len() >= cap as usize {
            return Err(ApiError::ClientLimit(cap));
        }
        Ok(())
    }

    /// Counts a registration or rotation against the developer's hourly limit; 429
    /// `rate_limited` with the wait when it is spent.
    fn charge_budget(&self, developer: &Developer) -> Result<(), ApiError> {
        let limit = self.state.settings().portal.registrations_per_hour;
        self.state
            .registration_budget()
            .record(developer.id.clone(), limit, self.state.now())
            .map_err(|wait| ApiError::RateLimited {
                retry_after: retry_after(wait),
            })
    }

    /// A developer's own clients, newest registration data, excluding those deleted at the
    /// IdP.
    pub fn list_for(&self, developer: &Developer) -> Result<Vec<OAuthClient>, ApiError> {
        Ok(self
            .state
            .oauth_clients()
            .all()?
            .into_iter()
            .map(|record| record.value)
            .filter(|client| {
                client.developer_id == developer.id
                    && client.deleted_at.is_none()
                    && client.state != OAuthClientState::Orphaned
            })
            .collect())
    }

    /// One of a developer's own clients, with the token endpoint and sample requests (without
    /// the secret). 404 for other developers' clients and deleted ones.
    pub fn get_for(&self, developer: &Developer, id: &str) -> Result<Issued, ApiError> {
        let stored = self.owned(developer, id)?;
        Ok(self.issued(stored.client, None, stored.registration.as_ref(), false))
    }

    /// Renews the access of one of the developer's clients: see
    /// [`super::oauth_clients::OAuthClients::renew`]. Audited and published at once.
    pub async fn renew_for(&self, developer: &Developer, id: &str) -> Result<Issued, ApiError> {
        self.owned(developer, id)?;
        let actor = Actor::Developer {
            id: developer.id.clone(),
        };
        self.state
            .oauth_clients()
            .renew(&actor, &developer.id, id)
            .await?;
        self.get_for(developer, id)
    }

    fn owned(
        &self,
        developer: &Developer,
        id: &str,
    ) -> Result<super::oauth_clients::StoredOAuthClient, ApiError> {
        let not_found = || ApiError::NotFound {
            kind: "OAuth client",
            id: id.to_owned(),
        };
        let stored = match self.state.oauth_clients().stored(id) {
            Ok(stored) => stored.value,
            Err(ApiError::NotFound { .. }) => return Err(not_found()),
            Err(error) => return Err(error),
        };
        if stored.client.developer_id != developer.id
            || stored.client.deleted_at.is_some()
            || stored.client.state == OAuthClientState::Orphaned
        {
            return Err(not_found());
        }
        Ok(stored)
    }

    /// Deletes a developer's client at the IdP and revokes it (see the module docs).
    pub async fn delete_for(&self, developer: &Developer, id: &str) -> Result<(), ApiError> {
        self.owned(developer, id)?;
        let actor = Actor::Developer {
            id: developer.id.clone(),
        };
        self.delete_detached(actor, id.to_owned(), Precondition::Missing, false)
            .await
    }

    /// The admin API's delete: a client not yet deleted at the IdP is deleted there (unless
    /// `skip_idp`) and kept as `revoked`; a client already deleted at the IdP is purged.
    pub async fn delete_as_operator(
        &self,
        actor: &Actor,
        id: &str,
        precondition: &Precondition,
        skip_idp: bool,
    ) -> Result<(), ApiError> {
        self.delete_detached(actor.clone(), id.to_owned(), precondition.clone(), skip_idp)
            .await
    }

    async fn delete_detached(
        &self,
        actor: Actor,
        id: String,
        precondition: Precondition,
        skip_idp: bool,
    ) -> Result<(), ApiError> {
        let state = self.state.clone();
        run_detached(async move {
            Registrations::new(&state)
                .delete_attached(&actor, &id, &precondition, skip_idp)
                .await
        })
        .await
    }

    async fn delete_attached(
        &self,
        actor: &Actor,
        id: &str,
        precondition: &Precondition,
        skip_idp: bool,
    ) -> Result<(), ApiError> {
        let _guard = self
            .state
            .registration_locks()
            .lock(format!("client:{id}"))
            .await;
        let clients = self.state.oauth_clients();
        let current = clients.stored(id)?;
        let required = matches!(actor, Actor::AdminKey { .. });
        precondition.check(current.revision, required)?;
        if current.value.client.deleted_at.is_some() {
            return clients.delete(actor, id, &Precondition::Any).await;
        }
        if !skip_idp {
            let outcome = self.delete_at_idp(&current.value).await;
            if let Err(error) = outcome {
                if current.value.client.state == OAuthClientState::Active {
                    clients.revoke(actor, id, &Precondition::Any).await?;
                }
                return Err(prefixed(
                    error,
                    "the client is revoked (the gateway refuses its tokens), but the identity \
                     provider did not delete it; delete it again to retry",
                ));
            }
        }
        clients.mark_deleted(actor, id).await?;
        Ok(())
    }

    async fn delete_at_idp(
        &self,
        stored: &super::oauth_clients::StoredOAuthClient,
    ) -> Result<Deletion, ApiError> {
        let (driver, target, managed) = self.management(stored)?;
        driver
            .delete(&target, &managed)
            .await
            .map_err(|error| idp_error(error, "deleting the client"))
    }

    /// What RFC 7592 calls on a stored client need: its driver, the target (with today's
    /// initial access token, which Okta manages with) and its management credentials.
    fn management(
        &self,
        stored: &super::oauth_clients::StoredOAuthClient,
    ) -> Result<(&'a dyn DcrDriver, RegistrationTarget, ManagedClient), ApiError> {
        let client = &stored.client;
        let secrets = self.state.oauth_clients().open_secrets(stored)?;
        let (provider, endpoint) = match &stored.registration {
            Some(registration) => (
                registration.provider,
                Some(registration.registration_endpoint.clone()),
            ),
            None => (Provider::Other, client.registration_client_uri.clone()),
        };
        let endpoint = endpoint
            .and_then(|endpoint| Url::parse(&endpoint).ok())
            .ok_or_else(|| {
                ApiError::ManagementNotSupported(
                    "Portico has no registration endpoint or client URI for this client".to_owned(),
                )
            })?;
        let initial_access_token = client
            .catalogue_entries
            .first()
            .and_then(|entry| self.state.dcr().effective(entry).ok())
            .and_then(|effective| effective.initial_access_token);
        let managed = ManagedClient {
            client_id: client.client_id.clone(),
            registration_client_uri: client
                .registration_client_uri
                .as_ref()
                .and_then(|uri| Url::parse(uri).ok()),
            registration_access_token: secrets.registration_access_token,
        };
        let target = RegistrationTarget {
            registration_endpoint: endpoint,
            initial_access_token,
        };
        Ok((self.state.idp().driver(provider), target, managed))
    }

    /// Replaces the redirect URIs of a developer's client at the IdP (RFC 7592 update).
    pub async fn set_redirect_uris(
        &self,
        developer: &Developer,
        id: &str,
        input: RedirectUris,
    ) -> Result<Issued, ApiError> {
        self.owned(developer, id)?;
        let uris = RedirectUri::strings(&RedirectUri::parse_all(&input.redirect_uris)?);
        let state = self.state.clone();
        let developer = developer.clone();
        let id = id.to_owned();
        run_detached(async move {
            Registrations::new(&state)
                .update_attached(&developer, &id, Some(uris))
                .await
        })
        .await
    }

    /// Rotates the secret of a developer's client (see the module docs). Counts against the
    /// developer's hourly registration limit.
    pub async fn rotate_secret(&self, developer: &Developer, id: &str) -> Result<Issued, ApiError> {
        self.owned(developer, id)?;
        self.charge_budget(developer)?;
        let state = self.state.clone();
        let developer = developer.clone();
        let id = id.to_owned();
        run_detached(async move {
            Registrations::new(&state)
                .update_attached(&developer, &id, None)
                .await
        })
        .await
    }

    /// An RFC 7592 update with the stored registration (and new redirect URIs when given);
    /// without new redirect URIs it is a secret rotation, completed by re-registration when
    /// the IdP keeps the secret.
    async fn update_attached(
        &self,
        developer: &Developer,
        id: &str,
        redirect_uris: Option<Vec<String>>,
    ) -> Result<Issued, ApiError> {
        let _guard = self
            .state
            .registration_locks()
            .lock(format!("client:{id}"))
            .await;
        let stored = self.owned(developer, id)?;
        if stored.client.state != OAuthClientState::Active {
            return Err(ApiError::Conflict {
                field: None,
                message: format!("OAuth client `{id}` is revoked; register a new one"),
            });
        }
        let registration = stored.registration.clone().ok_or_else(|| {
            ApiError::ManagementNotSupported(
                "Portico does not know how this client was registered, so it cannot update it"
                    .to_owned(),
            )
        })?;
        let mut metadata = registration.metadata.clone();
        let rotating = redirect_uris.is_none();
        if rotating {
            self.require_dcr_enabled(&stored.client)?;
        }
        if let Some(uris) = redirect_uris {
            metadata.redirect_uris = uris;
        }
        let (driver, target, managed) = self.management(&stored)?;
        let actor = Actor::Developer {
            id: developer.id.clone(),
        };
        let updated = driver
            .update(&target, &managed, &metadata)
            .await
            .map_err(|error| idp_error(error, "updating the client"))?;
        let old_secret = self.state.oauth_clients().secrets(id)?.client_secret;
        let new_secret = updated
            .client_secret
            .clone()
            .filter(|secret| Some(secret) != old_secret.as_ref());
        let action = if rotating {
            AuditAction::RotateSecret
        } else {
            AuditAction::Update
        };
        let change = ManagedChange {
            client_secret: new_secret.clone(),
            registration_access_token: updated.registration_access_token.clone(),
            registration_client_uri: updated.registration_client_uri.as_ref().map(Url::to_string),
            metadata: Some(metadata.clone()),
        };
        let client = self
            .state
            .oauth_clients()
            .record_managed(&actor, id, action, change)
            .await
            .inspect_err(|error| {
                tracing::error!(
                    client = id,
                    %error,
                    "the IdP updated the client but Portico could not record it; its stored \
                     registration access token may be stale"
                );
            })?;
        let registration = StoredRegistration {
            metadata,
            ..registration
        };
        if !rotating || new_secret.is_some() {
            return Ok(self.issued(
                client.value,
                new_secret.as_ref(),
                Some(&registration),
                false,
            ));
        }
        self.rotate_by_reregistration(&actor, id, driver, &target, &registration)
            .await
    }

    /// 409 `dcr_disabled` unless Dynamic Client Registration is enabled for every catalogue
    /// entry of `client`: a secret rotation may register a replacement client at the IdP,
    /// which an operator who disabled DCR did not allow (redirect-URI edits, which only update
    /// the existing client, stay possible).
    fn require_dcr_enabled(&self, client: &OAuthClient) -> Result<(), ApiError> {
        for entry in &client.catalogue_entries {
            if !self.state.dcr().effective(entry)?.settings.enabled {
                return Err(ApiError::DcrDisabled(format!(
                    "rotating the secret of OAuth client `{}` may register a new client at the \
                     identity provider, and Dynamic Client Registration is disabled for catalogue \
                     entry `{entry}`; enable it there to rotate, or delete the client and \
                     register a new one once it is enabled",
                    client.id
                )));
            }
        }
        Ok(())
    }

    /// Registers a replacement client, records it in place of the old one, and deletes the
    /// old one at the IdP.
    async fn rotate_by_reregistration(
        &self,
        actor: &Actor,
        id: &str,
        driver: &dyn DcrDriver,
        target: &RegistrationTarget,
        registration: &StoredRegistration,
    ) -> Result<Issued, ApiError> {
        let old = self.state.oauth_clients().stored(id)?.value;
        let orphan = OrphanOf {
            actor,
            developer_id: &old.client.developer_id,
            catalogue_entries: &old.client.catalogue_entries,
            client_name: &old.client.client_name,
            redirect_uris: &registration.metadata.redirect_uris,
        };
        let intent = self.state.interrupted_registrations().begin(IntentStart {
            operation: RegistrationOperation::RotateSecret,
            oauth_client: Some(id),
            developer_id: &old.client.developer_id,
            client_name: &old.client.client_name,
            redirect_uris: &registration.metadata.redirect_uris,
            catalogue_entries: &old.client.catalogue_entries,
            provider: registration.provider,
            registration_endpoint: &registration.registration_endpoint,
        })?;
        let registered = match driver.register(target, &registration.metadata).await {
            Ok(registered) => registered,
            Err(error) => {
                return Err(self
                    .undo_refused(
                        driver,
                        target,
                        &orphan,
                        &intent,
                        error,
                        "registering the replacement client",
                    )
                    .await);
            }
        };
        let replacement = Replacement {
            client_id: registered.client_id.clone(),
            client_secret: registered.client_secret.clone(),
            registration_access_token: registered.registration_access_token.clone(),
            registration_client_uri: registered
                .registration_client_uri
                .as_ref()
                .map(Url::to_string),
            client_secret_expires_at: registered.client_secret_expires_at,
            client_id_issued_at: registered.client_id_issued_at,
        };
        let recorded = self
            .state
            .oauth_clients()
            .record_replacement(actor, id, replacement, intent.removal())
            .await;
        let (client, tombstone) = match recorded {
            Ok(recorded) => recorded,
            Err(error) => {
                let reason = format!("recording the replacement client failed: {error}");
                self.undo_creation(
                    driver,
                    target,
                    &orphan,
                    &intent,
                    Some(registered.managed()),
                    &reason,
                )
                .await;
                return Err(error);
            }
        };
        match self.delete_at_idp(&old).await {
            Ok(_) => {
                self.state
                    .oauth_clients()
                    .mark_deleted(actor, &tombstone)
                    .await?;
            }
            Err(error) => tracing::warn!(
                client = id,
                replaced_record = %tombstone,
                %error,
                "rotated by re-registration, but the old client could not be deleted at the IdP; \
                 it is revoked, and deleting its record retries"
            ),
        }
        Ok(self.issued(
            client.value,
            registered.client_secret.as_ref(),
            Some(registration),
            false,
        ))
    }

    /// The error for a failed registration call, after settling its intent. When the IdP
    /// created the client but its answer was refused ([`DcrError::UnusableRegistration`]), the
    /// client is first deleted at the IdP or recorded as an orphan
    /// ([`Registrations::undo_creation`]). When the request reached the IdP but no answer came
    /// that Portico could read (a timeout, a connection lost mid-exchange, an answer larger
    /// than it reads, which may be a success, a 502 or 504 from a gateway in front of the IdP
    /// that stopped waiting for it), the IdP may hold a client Portico cannot name:
    /// the intent stays, listed as interrupted ([`InterruptionReason::NoAnswer`]). Any other
    /// failure created nothing, and the intent is removed.
    async fn undo_refused(
        &self,
        driver: &dyn DcrDriver,
        target: &RegistrationTarget,
        orphan: &OrphanOf<'_>,
        intent: &Intent,
        error: DcrError,
        doing: &str,
    ) -> ApiError {
        let intents = self.state.interrupted_registrations();
        match &error {
            DcrError::UnusableRegistration { reason, created } => {
                let reason = format!("the identity provider's answer was refused: {reason}");
                let created = created.as_deref().cloned();
                self.undo_creation(driver, target, orphan, intent, created, &reason)
                    .await;
            }
            DcrError::Transport(
                TransportError::Timeout { .. }
                | TransportError::Request { .. }
                | TransportError::TooLarge { .. },
            )
            | DcrError::Rejected {
                status: 502 | 504, ..
            } => {
                intents.keep(
                    intent,
                    InterruptionReason::NoAnswer,
                    &format!("{doing}: {error}"),
                );
            }
            _ => intents.finish(intent),
        }
        idp_error(error, doing)
    }

    /// Undoes the creation of a client that Portico will not use (`reason`): deletes it at the
    /// IdP (RFC 7592, or the provider's management API), and when that is impossible or fails,
    /// records it as [`OAuthClientState::Orphaned`] so that operators see it at
    /// `GET /admin/v1/oauth-clients?state=orphaned` and the data plane refuses it (removing the
    /// intent in the same commit). A client Portico can neither delete nor record (no
    /// `client_id` in the answer, or the store failing too) keeps its intent, listed at
    /// `GET /admin/v1/interrupted-registrations` ([`InterruptionReason::Unrecorded`]).
    async fn undo_creation(
        &self,
        driver: &dyn DcrDriver,
        target: &RegistrationTarget,
        orphan: &OrphanOf<'_>,
        intent: &Intent,
        created: Option<ManagedClient>,
        reason: &str,
    ) {
        let intents = self.state.interrupted_registrations();
        let Some(client) = created else {
            intents.keep(
                intent,
                InterruptionReason::Unrecorded,
                &format!(
                    "{reason}; the identity provider answered with success but named no \
                     client_id, so Portico can neither delete nor record the client"
                ),
            );
            return;
        };
        let Err(failure) = driver.delete(target, &client).await else {
            tracing::warn!(
                client_id = %client.client_id,
                reason,
                "the new client was refused, so it was deleted at the identity provider again"
            );
            intents.finish(intent);
            return;
        };
        let orphan_reason =
            format!("{reason}; deleting it at the identity provider failed: {failure}");
        tracing::error!(
            client_id = %client.client_id,
            reason = %orphan_reason,
            "recording the client as orphaned: delete it at the identity provider by hand"
        );
        let input = NewOAuthClient {
            developer_id: orphan.developer_id.to_owned(),
            catalogue_entries: orphan.catalogue_entries.to_vec(),
            client_name: orphan.client_name.to_owned(),
            redirect_uris: orphan.redirect_uris.to_vec(),
            client_id: client.client_id.clone(),
            client_secret: None,
            registration_access_token: None,
            registration_client_uri: client.registration_client_uri.as_ref().map(Url::to_string),
            client_secret_expires_at: None,
            client_id_issued_at: None,
            orphan_reason: Some(orphan_reason.clone()),
        };
        if let Err(error) = self
            .state
            .oauth_clients()
            .create_registered(orphan.actor, input, None, vec![intent.removal()], None)
            .await
        {
            intents.keep(
                intent,
                InterruptionReason::Unrecorded,
                &format!(
                    "client_id `{}`: {orphan_reason}; recording it as orphaned failed too: \
                     {error}",
                    client.client_id
                ),
            );
        }
    }

    /// The answer for a client.
    fn issued(
        &self,
        client: OAuthClient,
        secret: Option<&Secret>,
        registration: Option<&StoredRegistration>,
        replayed: bool,
    ) -> Issued {
        let now = super::oauth_clients::unix_seconds(self.state.now());
        let renewable = self
            .state
            .oauth_clients()
            .renewable_entries(&client)
            .is_ok_and(|entries| !entries.is_empty());
        Issued {
            api_paths: self.api_paths(&client.catalogue_entries),
            client_secret: secret.cloned(),
            token_endpoint: registration
                .and_then(|registration| registration.token_endpoint.clone()),
            token_endpoint_auth_method: registration.map_or_else(
                || "client_secret_post".to_owned(),
                |registration| registration.metadata.token_endpoint_auth_method.clone(),
            ),
            scope: registration.and_then(|registration| registration.metadata.scope.clone()),
            access_seconds_left: client.access_seconds_left(now),
            renewable,
            replayed,
            client,
        }
    }

    /// One gateway path per API that the entries' policies grant.
    fn api_paths(&self, entries: &[String]) -> Vec<String> {
        let mut paths: Vec<String> = Vec::new();
        for entry in entries {
            let Ok(Some(entry)) = self.state.load::<CatalogueEntry>(entry) else {
                continue;
            };
            let Ok(Some(policy)) = self.state.load::<Policy>(&entry.value.policy) else {
                continue;
            };
            for right in &policy.value.access_rights {
                let Ok(Some(api)) = self.state.load::<super::apis::Api>(&right.api) else {
                    continue;
                };
                let path = right
                    .path_prefixes
                    .first()
                    .map_or(api.value.listen_path.as_str(), String::as_str);
                if !paths.iter().any(|known| known == path) {
                    paths.push(path.to_owned());
                }
            }
        }
        paths
    }
}

/// Runs `work` in its own task, so that the caller going away (a closed connection, the
/// request timeout) cannot stop it between an IdP call and its record or compensation.
async fn run_detached<T: Send + 'static>(
    work: impl Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(work).await.map_err(|error| {
        ApiError::Internal(anyhow::anyhow!("the registration task failed: {error}"))
    })?
}

/// The request with its text trimmed and checked.
fn normalise(request: ClientRequest) -> Result<ClientRequest, ApiError> {
    validate::non_empty("catalogue_entries", &request.catalogue_entries)?;
    validate::distinct("catalogue_entries", &request.catalogue_entries)?;
    let client_name = validate::name("client_name", &request.client_name)?;
    let redirect_uris = RedirectUri::strings(&RedirectUri::parse_all(&request.redirect_uris)?);
    Ok(ClientRequest {
        client_name,
        redirect_uris,
        ..request
    })
}

fn fingerprint(request: &ClientRequest) -> Result<String, ApiError> {
    let bytes = serde_json::to_vec(request).map_err(|error| ApiError::Internal(error.into()))?;
    Ok(hex_of(&Sha256::digest(bytes)))
}

fn hex_of(bytes: &[u8]) -> String {
    crate::secret::hex(bytes)
}

/// The registration request from the settings and the developer's input.
fn metadata(resolved: &ResolvedDcr, request: &ClientRequest) -> ClientMetadata {
    let settings = &resolved.effective.settings;
    ClientMetadata {
        client_name: request.client_name.clone(),
        grant_types: settings.grant_types.clone(),
        token_endpoint_auth_method: auth_method(settings.token_endpoint_auth_method).to_owned(),
        response_types: settings.response_types.clone(),
        redirect_uris: request.redirect_uris.clone(),
        scope: settings.scope.clone(),
        application_type: settings.okta_application_type.and_then(|kind| {
            serde_json::to_value(kind)
                .ok()
                .and_then(|value| value.as_str().map(str::to_owned))
        }),
    }
}

/// What was registered: what was asked, with the values the IdP says it registered instead.
fn registered_metadata(mut asked: ClientMetadata, registered: &RegisteredClient) -> ClientMetadata {
    let echoed = &registered.metadata;
    if let Some(method) = &echoed.token_endpoint_auth_method {
        asked.token_endpoint_auth_method.clone_from(method);
    }
    if let Some(grants) = &echoed.grant_types {
        asked.grant_types.clone_from(grants);
    }
    if let Some(types) = &echoed.response_types {
        asked.response_types.clone_from(types);
    }
    if let Some(uris) = &echoed.redirect_uris {
        asked.redirect_uris.clone_from(uris);
    }
    asked
}

fn auth_method(method: TokenEndpointAuthMethod) -> &'static str {
    match method {
        TokenEndpointAuthMethod::ClientSecretPost => "client_secret_post",
        TokenEndpointAuthMethod::ClientSecretBasic => "client_secret_basic",
        TokenEndpointAuthMethod::ClientSecretJwt => "client_secret_jwt",
        TokenEndpointAuthMethod::PrivateKeyJwt => "private_key_jwt",
        TokenEndpointAuthMethod::None => "none",
    }
}

/// The answer for an IdP failure: the IdP's own texts when it refused.
fn idp_error(error: DcrError, doing: &str) -> ApiError {
    let message = format!("{doing}: {error}");
    match error {
        DcrError::InvalidMetadata { field, reason } => ApiError::invalid(field, reason),
        DcrError::Misconfigured { .. } => ApiError::DcrMisconfigured(message),
        DcrError::Transport(transport) => ApiError::IdpUnavailable {
            timeout: matches!(transport, TransportError::Timeout { .. }),
            message,
        },
        DcrError::Rejected { status, .. } if status >= 500 => ApiError::IdpUnavailable {
            timeout: false,
            message,
        },
        DcrError::Rejected {
            error,
            error_description,
            ..
        } => ApiError::IdpRejected {
            status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            message,
            idp_error: error,
            idp_error_description: error_description,
        },
        DcrError::Unauthorized {
            error,
            error_description,
            ..
        } => ApiError::IdpRejected {
            status: axum::http::StatusCode::BAD_GATEWAY,
            message,
            idp_error: error,
            idp_error_description: error_description,
        },
        DcrError::ClientNotFound { .. } => ApiError::IdpRejected {
            status: axum::http::StatusCode::BAD_GATEWAY,
            message,
            idp_error: None,
            idp_error_description: None,
        },
        DcrError::InvalidResponse { .. } | DcrError::UnusableRegistration { .. } => {
            ApiError::IdpInvalidResponse(message)
        }
        DcrError::ManagementNotSupported { .. } => ApiError::ManagementNotSupported(message),
    }
}

/// Puts `context` before the message of an IdP error.
fn prefixed(error: ApiError, context: &str) -> ApiError {
    match error {
        ApiError::IdpRejected {
            status,
            message,
            idp_error,
            idp_error_description,
        } => ApiError::IdpRejected {
            status,
            message: format!("{context}: {message}"),
            idp_error,
            idp_error_description,
        },
        ApiError::IdpUnavailable { message, timeout } => ApiError::IdpUnavailable {
            message: format!("{context}: {message}"),
            timeout,
        },
        ApiError::IdpInvalidResponse(message) => {
            ApiError::IdpInvalidResponse(format!("{context}: {message}"))
        }
        ApiError::ManagementNotSupported(message) => {
            ApiError::ManagementNotSupported(format!("{context}: {message}"))
        }
        ApiError::DcrMisconfigured(message) => {
            ApiError::DcrMisconfigured(format!("{context}: {message}"))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests;
