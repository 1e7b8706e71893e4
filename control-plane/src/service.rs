//! Services: the rules and transactions behind the admin API.
//!
//! [`AppState`] is the handle that handlers (and later the portal, DCR and snapshot services)
//! hold. Its domain accessors (`state.apis()`, `state.policies()`, ...) validate input, check
//! references, and write through [`Store::commit`] so that every
//! change and its audit record land in one transaction.
//!
//! Writers are serialised by one async lock, and each commit also names the revision it was
//! computed from, so a check such as "no policy refers to this API" cannot race with a
//! concurrent write. Every successful commit bumps the store revision, which is published on a
//! [`tokio::sync::watch`] channel: see [`AppState::revisions`].

pub mod api_docs;
pub mod apis;
pub mod audit;
pub mod backup;
pub mod catalogue;
pub mod dcr;
pub mod developers;
pub mod gateway;
pub mod interrupted;
pub mod issuers;
pub mod jwks;
pub mod metrics;
pub mod oauth_clients;
pub mod passwords;
pub mod policies;
pub mod portal;
pub mod redirect_uri;
pub mod registration;
pub mod replicas;
pub mod restore;
pub mod snapshot;
pub mod throttle;
pub mod usage;
pub mod validate;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, MutexGuard, watch};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::idp::client::IdpClient;
use crate::secret::{AdminKeys, SecretCipher};
use crate::store::{Commit, Order, Store, StoreError, Tree, Write};

use self::audit::{AuditAction, AuditEntry};

/// The default page size of lists.
pub const DEFAULT_PAGE_LIMIT: usize = 50;
/// The largest page size of lists.
pub const MAX_PAGE_LIMIT: usize = 500;

// === Clock ===

/// The source of the current time, injected so that tests can fix it. The control plane reads
/// time only here (`control-plane/clippy.toml` refuses `SystemTime::now` and `Instant::now`
/// elsewhere):
///
/// - [`Clock::now`], wall time, for what is stored or shown: timestamps, expiries, sessions,
///   throttles.
/// - [`Clock::instant`] (or [`monotonic_now`] where no clock is at hand), monotonic time for
///   schedules, deadlines and durations: tokio's clock, which tests stop and move with
///   `tokio::time::pause` and `advance` (or `#[tokio::test(start_paused = true)]`).
pub trait Clock: Send + Sync + fmt::Debug {
    /// Wall time now.
    fn now(&self) -> SystemTime;

    /// Monotonic time now (tokio's clock).
    fn instant(&self) -> tokio::time::Instant {
        monotonic_now()
    }
}

/// Monotonic time now: tokio's clock, paused and advanced by tests. The one place the control
/// plane reads it.
#[allow(
    clippy::disallowed_methods,
    reason = "the monotonic clock itself, which everything else reads through"
)]
pub fn monotonic_now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(
        clippy::disallowed_methods,
        reason = "the wall clock itself, which everything else reads through"
    )]
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

// === Shared types ===

/// Who made a change, as recorded in the audit log. Admin keys appear by their id only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Actor {
    /// An operator, through the admin API, with the admin key of this id.
    AdminKey {
        /// The admin key's id.
        id: String,
    },
    /// A developer, through the portal.
    Developer {
        /// The developer's id.
        id: String,
    },
    /// The control plane itself (e.g. a background job).
    System,
}

/// The kinds of resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    /// A trusted token issuer.
    Issuer,
    /// A protected API.
    Api,
    /// An access policy.
    Policy,
    /// A catalogue entry.
    CatalogueEntry,
    /// A catalogue entry's DCR override.
    CatalogueDcr,
    /// A catalogue entry's OpenAPI document.
    CatalogueOpenapi,
    /// The global DCR settings.
    DcrSettings,
    /// The gateway settings (the snapshot's global section).
    GatewaySettings,
    /// A developer.
    Developer,
    /// An OAuth client.
    OauthClient,
    /// The portal's settings (self sign-up).
    PortalSettings,
    /// A registration interrupted before its outcome at the IdP was known or recorded.
    InterruptedRegistration,
}

impl ResourceKind {
    /// The kind in words, for messages.
    pub fn label(self) -> &'static str {
        match self {
            ResourceKind::Issuer => "issuer",
            ResourceKind::Api => "API",
            ResourceKind::Policy => "policy",
            ResourceKind::CatalogueEntry => "catalogue entry",
            ResourceKind::CatalogueDcr => "DCR override of catalogue entry",
            ResourceKind::CatalogueOpenapi => "OpenAPI document of catalogue entry",
            ResourceKind::DcrSettings => "DCR settings",
            ResourceKind::GatewaySettings => "gateway settings",
            ResourceKind::Developer => "developer",
            ResourceKind::OauthClient => "OAuth client",
            ResourceKind::PortalSettings => "portal settings",
            ResourceKind::InterruptedRegistration => "interrupted registration",
        }
    }
}

/// A reference to one resource: its kind and id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResourceRef {
    /// The kind of resource.
    #[serde(rename = "type")]
    pub kind: ResourceKind,
    /// Its id.
    pub id: String,
}

impl ResourceRef {
    /// A reference to `id` of `kind`.
    pub fn new(kind: ResourceKind, id: impl Into<String>) -> Self {
        ResourceRef {
            kind,
            id: id.into(),
        }
    }
}

/// A value with the store revision at which it was last written. The revision is the
/// resource's ETag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Versioned<T> {
    /// The store revision of the last write of this value.
    pub revision: u64,
    /// The value.
    pub value: T,
}

impl<T> Versioned<T> {
    /// The ETag header value, e.g. `"42"`.
    pub fn etag(&self) -> String {
        etag(self.revision)
    }

    /// Maps the value, keeping the revision.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Versioned<U> {
        Versioned {
            revision: self.revision,
            value: f(self.value),
        }
    }
}

/// The ETag for a revision.
pub fn etag(revision: u64) -> String {
    format!("\"{revision}\"")
}

/// What the client's `If-Match` header asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// No `If-Match` header.
    Missing,
    /// `If-Match: *`.
    Any,
    /// `If-Match` with these entity tags (as sent, quotes included).
    Etags(Vec<String>),
}

impl Precondition {
    /// Checks the precondition against the current revision. `required`: whether a missing
    /// header is an error (428) or means "unconditionally".
    pub fn check(&self, current: u64, required: bool) -> Result<(), ApiError> {
        match self {
            Precondition::Missing if required => Err(ApiError::PreconditionRequired),
            Precondition::Missing | Precondition::Any => Ok(()),
            Precondition::Etags(tags) => {
                let current = etag(current);
                if tags.contains(&current) {
                    Ok(())
                } else {
                    Err(ApiError::PreconditionFailed {
                        current: Some(current),
                    })
                }
            }
        }
    }
}

/// A page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Maps the items.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

/// Which page of a list to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Items per page.
    pub limit: usize,
    /// Resume after this store key (decoded from the opaque cursor).
    pub after: Option<Vec<u8>>,
}

impl PageRequest {
    /// Validates the `limit` and `cursor` query parameters.
    pub fn new(limit: Option<usize>, cursor: Option<&str>) -> Result<Self, ApiError> {
        let limit = match limit {
            None => DEFAULT_PAGE_LIMIT,
            Some(limit) if (1..=MAX_PAGE_LIMIT).contains(&limit) => limit,
            Some(_) => {
                return Err(ApiError::invalid(
                    "limit",
                    format!("limit must be between 1 and {MAX_PAGE_LIMIT}"),
                ));
            }
        };
        let after = match cursor {
            None => None,
            Some(cursor) => Some(
                URL_SAFE_NO_PAD
                    .decode(cursor)
                    .ok()
                    .filter(|key| !key.is_empty())
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "cursor",
                            "the cursor is not one returned by this list (next_cursor)",
                        )
                    })?,
            ),
        };
        Ok(PageRequest { limit, after })
    }
}

fn encode_cursor(key: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

// === Resource ===

/// A stored resource: its kind, tree and id, and its audit view.
pub(crate) trait Resource: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The kind of resource.
    const KIND: ResourceKind;
    /// The tree it is stored in, keyed by id.
    const TREE: Tree;
    /// Its id.
    fn id(&self) -> &str;
    /// What the audit log records: the non-secret fields (as the API shows them).
    fn audit_view(&self) -> serde_json::Value;
}

/// A server-assigned id: `prefix` followed by 16 random bytes in hex.
pub(crate) fn random_id(prefix: &str) -> Result<String, ApiError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|error| ApiError::Internal(anyhow::anyhow!("no randomness for an id: {error}")))?;
    Ok(format!("{prefix}{}", crate::secret::hex(&bytes)))
}

/// Serialises an audit view.
pub(crate) fn to_value(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value)
        .unwrap_or_else(|error| serde_json::json!({ "unserializable": error.to_string() }))
}

/// A write of `value` at `revision` into its tree.
pub(crate) fn put<T: Resource>(revision: u64, value: &T) -> Result<Write, ApiError> {
    let bytes = serde_json::to_vec(&Versioned { revision, value })
        .map_err(|error| ApiError::Internal(error.into()))?;
    Ok(Write::put(T::TREE, value.id().as_bytes(), bytes))
}

/// The removal of `id` from `T`'s tree.
pub(crate) fn remove<T: Resource>(id: &str) -> Write {
    Write::remove(T::TREE, id.as_bytes())
}

fn decode<T: DeserializeOwned>(tree: Tree, bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|error| {
        ApiError::Store(StoreError::Corrupt {
            tree: tree.name(),
            reason: error.to_string(),
        })
    })
}

// === AppState ===

/// Settings that the HTTP layer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The public base URL, without a trailing slash (used in `Location` headers).
    pub public_base_url: String,
    /// The largest request body accepted, in bytes.
    pub body_limit: usize,
    /// The longest time a request may take.
    pub request_timeout: Duration,
    /// The tokens filters present to sync snapshots.
    pub data_plane_tokens: AdminKeys,
    /// Fetching issuers' keys.
    pub jwks: crate::config::JwksConfig,
    /// The developer portal's look and limits.
    pub portal: crate::config::PortalConfig,
}

/// The shared state of the control plane: store, cipher, admin keys, revision channel.
/// Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    cipher: SecretCipher,
    admin_keys: AdminKeys,
    settings: Settings,
    clock: Arc<dyn Clock>,
    idp: Arc<dyn IdpClient>,
    registration_locks: registration::KeyedLocks,
    /// Registrations and secret rotations per developer in the last hour.
    registration_budget: throttle::EventWindow<String>,
    portal: portal::PortalRuntime,
    hasher: passwords::Hasher,
    revisions: watch::Sender<u64>,
    write_lock: Mutex<()>,
    draining: AtomicBool,
    keys: jwks::KeyRegistry,
    snapshots: snapshot::SnapshotHub,
    metrics: Arc<metrics::Metrics>,
    /// This run of the process (see [`interrupted::run_id`]).
    run: String,
    usage: usage::UsageRuntime,
    replica: replicas::ReplicaRuntime,
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.inner.store)
            .field("admin_keys", &self.inner.admin_keys)
            .field("settings", &self.inner.settings)
            .field("revision", &*self.inner.revisions.borrow())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Builds the state over an opened store, with the IdP client every service uses (built
    /// once at start-up: [`crate::idp::client::HttpIdp`], or a fake in tests), whose DCR calls
    /// are counted in [`AppState::metrics`] ([`crate::idp::metered::MeteredIdp`]).
    pub fn new(
        store: Arc<dyn Store>,
        cipher: SecretCipher,
        admin_keys: AdminKeys,
        settings: Settings,
        clock: Arc<dyn Clock>,
        idp: Arc<dyn IdpClient>,
    ) -> Result<Self, StoreError> {
        let revision = store.revision()?;
        let (revisions, _) = watch::channel(revision);
        let keys = jwks::KeyRegistry::new(settings.jwks);
        let metrics = Arc::new(metrics::Metrics::default());
        let idp = Arc::new(crate::idp::metered::MeteredIdp::new(idp, &metrics));
        let run = interrupted::run_id(clock.now());
        Ok(AppState {
            inner: Arc::new(Inner {
                keys,
                snapshots: snapshot::SnapshotHub::default(),
                metrics,
                replica: replicas::ReplicaRuntime::new(run.clone(), store.changes().is_some()),
                run,
                usage: usage::UsageRuntime::default(),
                store,
                cipher,
                admin_keys,
                settings,
                clock,
                idp,
                registration_locks: registration::KeyedLocks::default(),
                registration_budget: throttle::EventWindow::new(
                    Duration::from_secs(60 * 60),
                    registration::MAX_TRACKED_DEVELOPERS,
                ),
                portal: portal::PortalRuntime::default(),
                hasher: passwords::Hasher::default(),
                revisions,
                write_lock: Mutex::new(()),
                draining: AtomicBool::new(false),
            }),
        })
    }

    /// A receiver of the store revision. It holds the revision at the time of the call and
    /// changes after every committed change (the new revision is durable by then). A consumer
    /// such as the snapshot service loops on `changed().await`, then reads
    /// `*receiver.borrow_and_update()` and rebuilds from the store; several quick commits may
    /// be seen as one change, which is what a rebuild wants.
    pub fn revisions(&self) -> watch::Receiver<u64> {
        self.inner.revisions.subscribe()
    }

    /// Moves the revision that [`AppState::revisions`] announces forward to `revision`, a
    /// revision of the store read after another process committed (never backwards).
    pub fn note_revision(&self, revision: u64) {
        self.inner.revisions.send_if_modified(|current| {
            let newer = revision > *current;
            if newer {
                *current = revision;
            }
            newer
        });
    }

    /// This process's place among the replicas on a shared store.
    pub fn replica(&self) -> &replicas::ReplicaRuntime {
        &self.inner.replica
    }

    /// The current store revision.
    pub fn revision(&self) -> Result<u64, StoreError> {
        self.inner.store.revision()
    }

    /// The admin API keys.
    pub fn admin_keys(&self) -> &AdminKeys {
        &self.inner.admin_keys
    }

    /// The HTTP settings.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Marks the server as shutting down: `/readyz` answers 503 from now on.
    pub fn begin_drain(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the server is shutting down.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Issuers' keys and their fetch status.
    pub fn keys(&self) -> &jwks::KeyRegistry {
        &self.inner.keys
    }

    /// The published snapshot and the filters that sync it.
    pub fn snapshots(&self) -> &snapshot::SnapshotHub {
        &self.inner.snapshots
    }

    /// Trusted token issuers.
    pub fn issuers(&self) -> issuers::Issuers<'_> {
        issuers::Issuers::new(self)
    }

    /// Protected APIs.
    pub fn apis(&self) -> apis::Apis<'_> {
        apis::Apis::new(self)
    }

    /// Access policies.
    pub fn policies(&self) -> policies::Policies<'_> {
        policies::Policies::new(self)
    }

    /// Catalogue entries.
    pub fn catalogue(&self) -> catalogue::Catalogue<'_> {
        catalogue::Catalogue::new(self)
    }

    /// The OpenAPI documents of catalogue entries.
    pub fn api_docs(&self) -> api_docs::ApiDocs<'_> {
        api_docs::ApiDocs::new(self)
    }

    /// DCR settings, global and per catalogue entry.
    pub fn dcr(&self) -> dcr::Dcr<'_> {
        dcr::Dcr::new(self)
    }

    /// The gateway settings (what happens to requests that match no API).
    pub fn gateway(&self) -> gateway::Gateway<'_> {
        gateway::Gateway::new(self)
    }

    /// Developers.
    pub fn developers(&self) -> developers::Developers<'_> {
        developers::Developers::new(self)
    }

    /// The registrations interrupted before their outcome at the IdP was known or recorded.
    pub fn interrupted_registrations(&self) -> interrupted::Intents<'_> {
        interrupted::Intents::new(self)
    }

    /// Usage across the fleet: the filters' reports, usage per client, spent quotas.
    pub fn usage(&self) -> usage::Usage<'_> {
        usage::Usage::new(self)
    }

    pub(crate) fn usage_runtime(&self) -> &usage::UsageRuntime {
        &self.inner.usage
    }

    /// This run of the process: an identifier no other run shares.
    pub(crate) fn run(&self) -> &str {
        &self.inner.run
    }

    /// OAuth clients.
    pub fn oauth_clients(&self) -> oauth_clients::OAuthClients<'_> {
        oauth_clients::OAuthClients::new(self)
    }

    /// The audit log.
    pub fn audit(&self) -> audit::Audit<'_> {
        audit::Audit::new(self)
    }

    /// Developers' OAuth clients at the IdP: registration and RFC 7592 management.
    pub fn registrations(&self) -> registration::Registrations<'_> {
        registration::Registrations::new(self)
    }

    /// The developer portal's accounts and sessions.
    pub fn portal(&self) -> portal::Portal<'_> {
        portal::Portal::new(self)
    }

    /// Password hashing, bounded in concurrency.
    pub fn hasher(&self) -> &passwords::Hasher {
        &self.inner.hasher
    }

    /// The IdP client (discovery, key sets, DCR drivers).
    pub(crate) fn idp(&self) -> &dyn IdpClient {
        self.inner.idp.as_ref()
    }

    /// The IdP client, to move into a task.
    pub(crate) fn idp_client(&self) -> Arc<dyn IdpClient> {
        Arc::clone(&self.inner.idp)
    }

    /// The registration flow's per-key locks (idempotency keys, clients).
    pub(crate) fn registration_locks(&self) -> &registration::KeyedLocks {
        &self.inner.registration_locks
    }

    /// Registrations and secret rotations per developer in the last hour (an hourly limit).
    pub(crate) fn registration_budget(&self) -> &throttle::EventWindow<String> {
        &self.inner.registration_budget
    }

    pub(crate) fn portal_runtime(&self) -> &portal::PortalRuntime {
        &self.inner.portal
    }

    /// Now.
    /// The control plane's metrics.
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }

    pub(crate) fn now(&self) -> SystemTime {
        self.inner.clock.now()
    }

    /// Monotonic now, from the injected clock ([`Clock::instant`]).
    pub(crate) fn instant(&self) -> tokio::time::Instant {
        self.inner.clock.instant()
    }

    pub(crate) fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    pub(crate) fn cipher(&self) -> &SecretCipher {
        &self.inner.cipher
    }

    /// Now, as an RFC 3339 UTC timestamp with seconds.
    pub(crate) fn now_rfc3339(&self) -> String {
        humantime::format_rfc3339_seconds(self.inner.clock.now()).to_string()
    }

    /// Reads one resource.
    pub(crate) fn load<T: Resource>(&self, id: &str) -> Result<Option<Versioned<T>>, ApiError> {
        self.load_from(T::TREE, id.as_bytes())
    }

    /// Reads one resource, answering 404 when it does not exist.
    pub(crate) fn fetch<T: Resource>(&self, id: &str) -> Result<Versioned<T>, ApiError> {
        self.load::<T>(id)?.ok_or_else(|| ApiError::NotFound {
            kind: T::KIND.label(),
            id: id.to_owned(),
        })
    }

    /// Reads one value of any stored type from `tree`.
    pub(crate) fn load_from<T: DeserializeOwned>(
        &self,
        tree: Tree,
        key: &[u8],
    ) -> Result<Option<T>, ApiError> {
        match self.store().get(tree, key)? {
            None => Ok(None),
            Some(bytes) => decode(tree, &bytes).map(Some),
        }
    }

    /// Whether a resource exists.
    pub(crate) fn exists<T: Resource>(&self, id: &str) -> Result<bool, ApiError> {
        Ok(self.store().get(T::TREE, id.as_bytes())?.is_some())
    }

    /// Every value of a kind, in id order, without revisions (reference checks, the snapshot).
    pub(crate) fn values<T: Resource>(&self) -> Result<Vec<T>, ApiError> {
        Reader::new(self.store()).values()
    }

    /// Creates `value`: 409 when its id is taken; `check` (references, uniqueness) runs under
    /// the write lock, so nothing can change between the check and the write.
    pub(crate) async fn create_checked<T: Resource>(
        &self,
        actor: &Actor,
        value: T,
        check: impl FnOnce(&T) -> Result<(), ApiError>,
    ) -> Result<Versioned<T>, ApiError> {
        let writer = self.writer().await?;
        if self.exists::<T>(value.id())? {
            return Err(ApiError::AlreadyExists {
                field: "id".to_owned(),
                message: format!("{} `{}` already exists", T::KIND.label(), value.id()),
            });
        }
        check(&value)?;
        let revision = writer.revision();
        let change = Change {
            writes: vec![put(revision, &value)?],
            action: AuditAction::Create,
            resource: ResourceRef::new(T::KIND, value.id()),
            before: None,
            after: Some(value.audit_view()),
            also: Vec::new(),
        };
        writer.commit(actor, change).await?;
        Ok(Versioned { revision, value })
    }

    /// Replaces resource `id` with `value` once `precondition` holds (an `If-Match` is
    /// required) and `check` passes, under the write lock. A replacement by an equal value
    /// answers the current record without committing.
    pub(crate) async fn replace_checked<T: Resource>(
        &self,
        actor: &Actor,
        precondition: &Precondition,
        value: T,
        check: impl FnOnce(&T) -> Result<(), ApiError>,
    ) -> Result<Versioned<T>, ApiError> {
        let writer = self.writer().await?;
        let current = self.fetch::<T>(value.id())?;
        precondition.check(current.revision, true)?;
        check(&value)?;
        if to_value(&value) == to_value(&current.value) {
            // Replacing a resource with itself changes nothing: no revision, audit or snapshot.
            return Ok(current);
        }
        let revision = writer.revision();
        let change = Change {
            writes: vec![put(revision, &value)?],
            action: AuditAction::Update,
            resource: ResourceRef::new(T::KIND, value.id()),
            before: Some(current.value.audit_view()),
            after: Some(value.audit_view()),
            also: Vec::new(),
        };
        writer.commit(actor, change).await?;
        Ok(Versioned { revision, value })
    }

    /// Deletes resource `id` (with the `also` writes, in the same transaction) once
    /// `precondition` holds, unless `referrers` names resources that still refer to it (409
    /// listing them).
    pub(crate) async fn delete_unreferenced<T: Resource>(
        &self,
        actor: &Actor,
        id: &str,
        precondition: &Precondition,
        referrers: impl FnOnce() -> Result<Vec<ResourceRef>, ApiError>,
        cascade: impl FnOnce() -> Result<Vec<(Write, audit::AuditChange)>, ApiError>,
    ) -> Result<(), ApiError> {
        let writer = self.writer().await?;
        let current = self.fetch::<T>(id)?;
        precondition.check(current.revision, true)?;
        let referrers = referrers()?;
        if !referrers.is_empty() {
            return Err(ApiError::InUse {
                kind: T::KIND.label(),
                id: id.to_owned(),
                referrers,
            });
        }
        let (cascade_writes, also): (Vec<_>, Vec<_>) = cascade()?.into_iter().unzip();
        let mut writes = vec![remove::<T>(id)];
        writes.extend(cascade_writes);
        let change = Change {
            writes,
            action: AuditAction::Delete,
            resource: ResourceRef::new(T::KIND, id),
            before: Some(current.value.audit_view()),
            after: None,
            also,
        };
        writer.commit(actor, change).await?;
        Ok(())
    }

    /// Every resource of a kind (for reference checks; the data sets are small).
    pub(crate) fn load_all<T: Resource>(&self) -> Result<Vec<Versioned<T>>, ApiError> {
        Reader::new(self.store()).load_all()
    }

    /// One page of the resources of a kind that pass `filter`, in id order.
    pub(crate) fn page<T: Resource>(
        &self,
        request: &PageRequest,
        filter: impl Fn(&T) -> bool,
    ) -> Result<Page<Versioned<T>>, ApiError> {
        self.page_of(
            T::TREE,
            request,
            Order::Ascending,
            |record: &Versioned<T>| filter(&record.value),
        )
    }

    /// One page of `tree` in `order`, keeping the values that pass `filter`.
    pub(crate) fn page_of<T: DeserializeOwned>(
        &self,
        tree: Tree,
        request: &PageRequest,
        order: Order,
        filter: impl Fn(&T) -> bool,
    ) -> Result<Page<T>, ApiError> {
        let mut items = Vec::new();
        let mut last_key = None;
        let mut next_cursor = None;
        for entry in self.store().scan(tree, request.after.as_deref(), order) {
            let (key, bytes) = entry?;
            let value: T = decode(tree, &bytes)?;
            if !filter(&value) {
                continue;
            }
            if items.len() == request.limit {
                next_cursor = last_key.as_deref().map(encode_cursor);
                break;
            }
            items.push(value);
            last_key = Some(key);
        }
        Ok(Page { items, next_cursor })
    }

    /// A one-record setting from [`Tree::Settings`] (the gateway or portal settings), or
    /// `default` at revision 0 until it is first written.
    pub(crate) fn setting<T: DeserializeOwned>(
        &self,
        key: &str,
        default: impl FnOnce() -> T,
    ) -> Result<Versioned<T>, ApiError> {
        Ok(self
            .load_from::<Versioned<T>>(Tree::Settings, key.as_bytes())?
            .unwrap_or_else(|| Versioned {
                revision: 0,
                value: default(),
            }))
    }

    /// Replaces a one-record setting once `precondition` (required) holds, audited as an
    /// update of `resource`. Writing the value it already holds answers the current record
    /// without committing.
    pub(crate) async fn put_setting<T: Serialize + DeserializeOwned + PartialEq>(
        &self,
        actor: &Actor,
        precondition: &Precondition,
        (key, resource): (&str, ResourceRef),
        value: T,
        default: impl FnOnce() -> T,
    ) -> Result<Versioned<T>, ApiError> {
        let writer = self.writer().await?;
        let current = self.setting(key, default)?;
        precondition.check(current.revision, true)?;
        if current.value == value {
            return Ok(current);
        }
        let revision = writer.revision();
        let bytes = serde_json::to_vec(&Versioned {
            revision,
            value: &value,
        })
        .map_err(|error| ApiError::Internal(error.into()))?;
        let change = Change {
            writes: vec![Write::put(Tree::Settings, key.as_bytes(), bytes)],
            action: AuditAction::Update,
            resource,
            before: Some(to_value(&current.value)),
            after: Some(to_value(&value)),
            also: Vec::new(),
        };
        writer.commit(actor, change).await?;
        Ok(Versioned { revision, value })
    }

    /// Takes the write lock and reads the revision that the next commit builds on.
    pub(crate) async fn writer(&self) -> Result<Writer<'_>, ApiError> {
        let guard = self.inner.write_lock.lock().await;
        let base = self.revision()?;
        Ok(Writer {
            state: self,
            _guard: guard,
            base,
        })
    }
}

/// Reads whole kinds of resources from a store: the committed one, or a [`crate::store::Staged`] view of
/// it with a change applied (the candidate snapshot is built through this).
#[derive(Clone, Copy)]
pub(crate) struct Reader<'s> {
    store: &'s dyn Store,
}

impl<'s> Reader<'s> {
    pub(crate) fn new(store: &'s dyn Store) -> Self {
        Reader { store }
    }

    /// Every resource of a kind, in id order.
    pub(crate) fn load_all<T: Resource>(&self) -> Result<Vec<Versioned<T>>, ApiError> {
        self.store
            .scan(T::TREE, None, Order::Ascending)
            .map(|entry| {
                let (_, bytes) = entry?;
                decode(T::TREE, &bytes)
            })
            .collect()
    }

    /// Every value of a kind, in id order, without revisions.
    pub(crate) fn values<T: Resource>(&self) -> Result<Vec<T>, ApiError> {
        Ok(self
            .load_all::<T>()?
            .into_iter()
            .map(|versioned| versioned.value)
            .collect())
    }

    /// One value of any stored type.
    pub(crate) fn load_from<T: DeserializeOwned>(
        &self,
        tree: Tree,
        key: &[u8],
    ) -> Result<Option<T>, ApiError> {
        match self.store.get(tree, key)? {
            None => Ok(None),
            Some(bytes) => decode(tree, &bytes).map(Some),
        }
    }
}

/// The right to commit one change: holds the write lock and the base revision.
pub(crate) struct Writer<'a> {
    state: &'a AppState,
    _guard: MutexGuard<'a, ()>,
    base: u64,
}

/// One audited change: what it writes and what the audit log says about it. Every write to
/// a resource must be named by `resource` or by one of `also` (see [`audited_as`]); a change
/// that writes a resource it does not name is refused before anything is written.
pub(crate) struct Change {
    pub(crate) writes: Vec<Write>,
    pub(crate) action: AuditAction,
    pub(crate) resource: ResourceRef,
    pub(crate) before: Option<serde_json::Value>,
    pub(crate) after: Option<serde_json::Value>,
    pub(crate) also: Vec<audit::AuditChange>,
}

/// The resource a write changes, as the audit log names it; `None` for the trees that only
/// index or accompany a named resource (emails and `client_id`s to ids, idempotency records)
/// and for the operational trees that are never committed with an audit record (sessions).
/// A settings key this does not know is named by itself under no kind, so that a commit of it
/// is refused until it is given one.
pub(crate) fn audited_as(write: &Write) -> Option<Result<ResourceRef, String>> {
    let id = || String::from_utf8_lossy(&write.key).into_owned();
    let kind = match write.tree {
        Tree::Issuers => ResourceKind::Issuer,
        Tree::Apis => ResourceKind::Api,
        Tree::Policies => ResourceKind::Policy,
        Tree::Catalogue => ResourceKind::CatalogueEntry,
        Tree::CatalogueDcr => ResourceKind::CatalogueDcr,
        Tree::CatalogueOpenapi => ResourceKind::CatalogueOpenapi,
        Tree::Developers => ResourceKind::Developer,
        Tree::OAuthClients => ResourceKind::OauthClient,
        Tree::Settings => {
            return Some(match write.key.as_slice() {
                b"dcr" => Ok(ResourceRef::new(ResourceKind::DcrSettings, "global")),
                b"gateway" => Ok(ResourceRef::new(ResourceKind::GatewaySettings, "global")),
                b"portal" => Ok(ResourceRef::new(ResourceKind::PortalSettings, "portal")),
                _ => Err(format!("settings `{}`", id())),
            });
        }
        Tree::DeveloperEmails
        | Tree::OAuthClientIds
        | Tree::Idempotency
        | Tree::RegistrationIntents
        | Tree::UsageReporters
        | Tree::UsageHours
        | Tree::QuotaCounters
        | Tree::Audit
        | Tree::Sessions
        | Tree::DeveloperSessions => return None,
    };
    Some(Ok(ResourceRef::new(kind, id())))
}

impl Writer<'_> {
    /// The revision that this change will have.
    pub(crate) fn revision(&self) -> u64 {
        self.base + 1
    }

    /// Commits the change with its audit record, durably, then publishes the new revision.
    /// A change to anything the data plane sees is first checked against the snapshot it
    /// would produce (see [`snapshot::check_candidate`]): one that would not compile is
    /// refused (409 `conflict` or 422 `invalid_snapshot`) and nothing is written.
    pub(crate) async fn commit(self, actor: &Actor, change: Change) -> Result<u64, ApiError> {
        if change
            .writes
            .iter()
            .any(|write| write.tree.feeds_snapshot())
        {
            snapshot::check_candidate(self.state, &change.writes, &change.resource)?;
        }
        for write in &change.writes {
            let named = match audited_as(write) {
                None => continue,
                Some(Ok(resource)) => {
                    resource == change.resource
                        || change.also.iter().any(|also| also.resource == resource)
                }
                Some(Err(_)) => false,
            };
            if !named {
                return Err(ApiError::Internal(anyhow::anyhow!(
                    "a change to {:?} writes {:?} key {:?} without an audit record for it",
                    change.resource,
                    write.tree,
                    String::from_utf8_lossy(&write.key)
                )));
            }
        }
        let entry = AuditEntry {
            revision: self.revision(),
            at: self.state.now_rfc3339(),
            actor: actor.clone(),
            action: change.action,
            resource: change.resource,
            before: change.before,
            after: change.after,
            also: change.also,
        };
        let commit = Commit {
            base_revision: self.base,
            writes: change.writes,
            audit: serde_json::to_vec(&entry).map_err(|error| ApiError::Internal(error.into()))?,
        };
        let store = Arc::clone(&self.state.inner.store);
        let revision = tokio::task::spawn_blocking(move || store.commit(&commit))
            .await
            .map_err(|error| ApiError::Internal(error.into()))??;
        self.state.inner.revisions.send_replace(revision);
        tracing::info!(
            revision,
            action = ?entry.action,
            kind = ?entry.resource.kind,
            id = %entry.resource.id,
            actor = ?entry.actor,
            "committed change"
        );
        Ok(revision)
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A state over a temporary sled store, for service unit tests.

    use super::*;
    use crate::idp::HttpTimeouts;
    use crate::idp::client::HttpIdp;
    use crate::secret::{Secret, SecretKey};
    use crate::store::sled::SledStore;

    /// Creates issuer `idp` (`https://idp.example.com`) whose keys come from the `jwks_uri`
    /// `https://idp.example.com/jwks`.
    pub(crate) async fn create_remote_issuer(state: &AppState) {
        state
            .issuers()
            .create(
                &ops(),
                serde_json::from_value(serde_json::json!({
                    "id": "idp", "issuer": "https://idp.example.com",
                    "jwks": {"jwks_uri": "https://idp.example.com/jwks"}
                }))
                .unwrap(),
            )
            .await
            .unwrap();
    }

    /// Another process on `state`'s store: a replica with its own in-memory state (locks,
    /// budgets, snapshot) sharing the store, the keys, the clock and the IdP client.
    pub(crate) fn another_replica(state: &AppState) -> AppState {
        let inner = &state.inner;
        AppState::new(
            Arc::clone(&inner.store),
            inner.cipher.clone(),
            inner.admin_keys.clone(),
            inner.settings.clone(),
            Arc::clone(&inner.clock),
            Arc::clone(&inner.idp),
        )
        .unwrap()
    }

    /// A state, and the directory that must outlive it.
    pub(crate) fn state() -> (AppState, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (state_in(dir.path()), dir)
    }

    /// A state over the store in `dir` (opened anew: what a restart sees).
    pub(crate) fn state_in(dir: &std::path::Path) -> AppState {
        state_over(Arc::new(SledStore::open(dir).unwrap()))
    }

    /// A replica on a shared store (a sled store in a temporary directory that answers
    /// [`Store::changes`], as PostgreSQL does): it does not publish until it holds the lease.
    pub(crate) fn shared_state() -> (AppState, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SharedStore {
            inner: SledStore::open(dir.path()).unwrap(),
            changes: watch::channel(0).0,
        };
        (state_over(Arc::new(store)), dir)
    }

    /// A sled store that presents itself as shared by several processes.
    #[derive(Debug)]
    struct SharedStore {
        inner: SledStore,
        changes: watch::Sender<u64>,
    }

    impl Store for SharedStore {
        fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(tree, key)
        }

        fn scan(
            &self,
            tree: Tree,
            after: Option<&[u8]>,
            order: crate::store::Order,
        ) -> crate::store::Entries<'_> {
            self.inner.scan(tree, after, order)
        }

        fn revision(&self) -> Result<u64, StoreError> {
            self.inner.revision()
        }

        fn commit(&self, commit: &Commit) -> Result<u64, StoreError> {
            self.inner.commit(commit)
        }

        fn write_unversioned_if(
            &self,
            expected: &[Write],
            writes: &[Write],
        ) -> Result<bool, StoreError> {
            self.inner.write_unversioned_if(expected, writes)
        }

        fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.meta_get(key)
        }

        fn meta_put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
            self.inner.meta_put(key, value)
        }

        fn meta_swap(
            &self,
            expected: &[(&str, Option<&[u8]>)],
            puts: &[(&str, &[u8])],
        ) -> Result<bool, StoreError> {
            self.inner.meta_swap(expected, puts)
        }

        fn changes(&self) -> Option<watch::Receiver<u64>> {
            Some(self.changes.subscribe())
        }

        fn meta_entries(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
            self.inner.meta_entries()
        }

        fn import(
            &self,
            revision: u64,
            meta: &[(String, Vec<u8>)],
            entries: &mut dyn Iterator<Item = (Tree, Vec<u8>, Vec<u8>)>,
        ) -> Result<(), StoreError> {
            self.inner.import(revision, meta, entries)
        }
    }

    /// A state over `store`, with the test settings.
    fn state_over(store: Arc<dyn Store>) -> AppState {
        AppState::new(
            store,
            SecretCipher::new(&SecretKey::generate().unwrap()),
            AdminKeys::new([("ops", &Secret::new("ops-key-0123456789"))]),
            Settings {
                public_base_url: "http://portico.test".to_owned(),
                body_limit: 1024 * 1024,
                request_timeout: Duration::from_secs(30),
                data_plane_tokens: AdminKeys::new([("dp", &Secret::new("dp-token-0123456789"))]),
                jwks: crate::config::JwksConfig::default(),
                portal: crate::config::PortalConfig::default(),
            },
            Arc::new(SystemClock),
            http_idp(HttpTimeouts::default()),
        )
        .unwrap()
    }

    /// The real IdP client with these bounds.
    pub(crate) fn http_idp(timeouts: HttpTimeouts) -> Arc<dyn IdpClient> {
        Arc::new(HttpIdp::new(&timeouts).unwrap())
    }

    /// A client as the registration flow records it, for `developer_id` and `entries`.
    pub(crate) fn new_client(
        developer_id: &str,
        entries: &[&str],
        name: &str,
        client_id: &str,
    ) -> oauth_clients::NewOAuthClient {
        oauth_clients::NewOAuthClient {
            developer_id: developer_id.to_owned(),
            catalogue_entries: entries.iter().map(|entry| (*entry).to_owned()).collect(),
            client_name: name.to_owned(),
            redirect_uris: Vec::new(),
            client_id: client_id.to_owned(),
            client_secret: Some(Secret::new("s")),
            registration_access_token: None,
            registration_client_uri: None,
            client_secret_expires_at: None,
            client_id_issued_at: None,
            orphan_reason: None,
        }
    }

    /// Issuer `idp` at `issuer`, API `orders` on `/orders` (any audience), policy `gold`
    /// granting it, and catalogue entry `orders` (named "Orders", with `description`) handing
    /// out `gold`.
    pub(crate) async fn seed_orders(state: &AppState, issuer: &str, description: &str) {
        fn from<T: DeserializeOwned>(value: serde_json::Value) -> T {
            serde_json::from_value(value).unwrap()
        }
        state
            .issuers()
            .create(
                &ops(),
                from(serde_json::json!({"id": "idp", "issuer": issuer})),
            )
            .await
            .unwrap();
        state
            .apis()
            .create(
                &ops(),
                from(
                    serde_json::json!({"id": "orders", "name": "Orders", "listen_path": "/orders",
                                        "issuers": ["idp"], "accept_any_audience": true}),
                ),
            )
            .await
            .unwrap();
        state
            .policies()
            .create(
                &ops(),
                from(serde_json::json!({"id": "gold", "name": "Gold",
                                        "access_rights": [{"api": "orders"}]})),
            )
            .await
            .unwrap();
        state
            .catalogue()
            .create(
                &ops(),
                from(serde_json::json!({"id": "orders", "name": "Orders",
                                        "description": description, "policy": "gold"})),
            )
            .await
            .unwrap();
    }

    /// The operator used by tests.
    pub(crate) fn ops() -> Actor {
        Actor::AdminKey {
            id: "ops".to_owned(),
        }
    }

    /// A clock that tests move by hand.
    #[derive(Debug)]
    pub(crate) struct FakeClock(std::sync::Mutex<SystemTime>);

    impl FakeClock {
        pub(crate) fn new() -> Arc<FakeClock> {
            Arc::new(FakeClock(std::sync::Mutex::new(
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            )))
        }

        pub(crate) fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> SystemTime {
            *self.0.lock().unwrap()
        }
    }

    /// A sled store whose next commit can be made to fail (after the IdP call, in the
    /// registration tests).
    #[derive(Debug)]
    pub(crate) struct FlakyStore {
        inner: SledStore,
        fail_next_commit: AtomicBool,
        unwritable: AtomicBool,
        unreadable_meta: AtomicBool,
    }

    impl FlakyStore {
        /// Makes the next commit fail with a backend error.
        pub(crate) fn fail_next_commit(&self) {
            self.fail_next_commit.store(true, Ordering::SeqCst);
        }

        /// Makes every metadata read fail with a backend error, until called with `false`.
        pub(crate) fn set_meta_unreadable(&self, unreadable: bool) {
            self.unreadable_meta.store(unreadable, Ordering::SeqCst);
        }

        /// Makes every write fail as a full disk does (`ENOSPC`), until called with `false`.
        pub(crate) fn set_disk_full(&self, full: bool) {
            self.unwritable.store(full, Ordering::SeqCst);
        }

        fn check_writable(&self) -> Result<(), StoreError> {
            if self.unwritable.load(Ordering::SeqCst) {
                return Err(StoreError::from_io(&std::io::Error::from_raw_os_error(28)));
            }
            Ok(())
        }
    }

    impl Store for FlakyStore {
        fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(tree, key)
        }

        fn scan(
            &self,
            tree: Tree,
            after: Option<&[u8]>,
            order: Order,
        ) -> crate::store::Entries<'_> {
            self.inner.scan(tree, after, order)
        }

        fn revision(&self) -> Result<u64, StoreError> {
            self.inner.revision()
        }

        fn commit(&self, commit: &Commit) -> Result<u64, StoreError> {
            if self.fail_next_commit.swap(false, Ordering::SeqCst) {
                return Err(StoreError::Backend("injected failure".to_owned()));
            }
            self.check_writable()?;
            self.inner.commit(commit)
        }

        fn write_unversioned_if(
            &self,
            expected: &[Write],
            writes: &[Write],
        ) -> Result<bool, StoreError> {
            self.check_writable()?;
            self.inner.write_unversioned_if(expected, writes)
        }

        fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            if self.unreadable_meta.load(Ordering::SeqCst) {
                return Err(StoreError::Backend("injected failure".to_owned()));
            }
            self.inner.meta_get(key)
        }

        fn meta_put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
            self.check_writable()?;
            self.inner.meta_put(key, value)
        }

        fn meta_swap(
            &self,
            expected: &[(&str, Option<&[u8]>)],
            puts: &[(&str, &[u8])],
        ) -> Result<bool, StoreError> {
            self.check_writable()?;
            self.inner.meta_swap(expected, puts)
        }

        fn meta_entries(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
            self.inner.meta_entries()
        }

        fn import(
            &self,
            revision: u64,
            meta: &[(String, Vec<u8>)],
            entries: &mut dyn Iterator<Item = (Tree, Vec<u8>, Vec<u8>)>,
        ) -> Result<(), StoreError> {
            self.check_writable()?;
            self.inner.import(revision, meta, entries)
        }
    }

    /// A state over a [`FlakyStore`] with a fake clock and the given IdP timeouts.
    pub(crate) fn flaky_state(
        base_url: &str,
        idp_timeouts: HttpTimeouts,
    ) -> (AppState, Arc<FlakyStore>, Arc<FakeClock>, tempfile::TempDir) {
        flaky_state_with(base_url, http_idp(idp_timeouts))
    }

    /// [`flaky_state`] with another IdP client (a fake that answers without HTTP).
    pub(crate) fn flaky_state_with(
        base_url: &str,
        idp: Arc<dyn IdpClient>,
    ) -> (AppState, Arc<FlakyStore>, Arc<FakeClock>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FlakyStore {
            inner: SledStore::open(dir.path()).unwrap(),
            fail_next_commit: AtomicBool::new(false),
            unwritable: AtomicBool::new(false),
            unreadable_meta: AtomicBool::new(false),
        });
        let clock = FakeClock::new();
        let state = AppState::new(
            Arc::clone(&store) as Arc<dyn Store>,
            SecretCipher::new(&SecretKey::generate().unwrap()),
            AdminKeys::new([("ops", &Secret::new("ops-key-0123456789"))]),
            Settings {
                public_base_url: base_url.to_owned(),
                body_limit: 1024 * 1024,
                request_timeout: Duration::from_secs(30),
                data_plane_tokens: AdminKeys::new([]),
                jwks: crate::config::JwksConfig::default(),
                portal: crate::config::PortalConfig::default(),
            },
            Arc::clone(&clock) as Arc<dyn Clock>,
            idp,
        )
        .unwrap();
        (state, store, clock, dir)
    }

    /// The state a restart of `state`'s process would have: the same store, keys, settings,
    /// clock and IdP client, and a new run (nothing in memory kept).
    pub(crate) fn restarted(state: &AppState) -> AppState {
        let inner = &state.inner;
        AppState::new(
            Arc::clone(&inner.store),
            inner.cipher.clone(),
            inner.admin_keys.clone(),
            inner.settings.clone(),
            Arc::clone(&inner.clock),
            Arc::clone(&inner.idp),
        )
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precondition_accepts_current_etag_or_star_and_rejects_stale() {
        assert!(Precondition::Any.check(3, true).is_ok());
        assert!(Precondition::Missing.check(3, false).is_ok());
        assert!(matches!(
            Precondition::Missing.check(3, true),
            Err(ApiError::PreconditionRequired)
        ));
        let tags = Precondition::Etags(vec!["\"2\"".to_owned(), "\"3\"".to_owned()]);
        assert!(tags.check(3, true).is_ok());
        assert!(matches!(
            tags.check(4, true),
            Err(ApiError::PreconditionFailed { current: Some(current) }) if current == "\"4\""
        ));
    }

    #[test]
    fn page_request_validates_limit_and_cursor() {
        assert_eq!(
            PageRequest::new(None, None).unwrap().limit,
            DEFAULT_PAGE_LIMIT
        );
        assert!(PageRequest::new(Some(0), None).is_err());
        assert!(PageRequest::new(Some(MAX_PAGE_LIMIT + 1), None).is_err());
        let cursor = encode_cursor(b"orders");
        assert_eq!(
            PageRequest::new(Some(2), Some(&cursor)).unwrap().after,
            Some(b"orders".to_vec())
        );
        let error = PageRequest::new(None, Some("%%%")).unwrap_err();
        assert!(matches!(error, ApiError::InvalidRequest { field: Some(f), .. } if f == "cursor"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_each_get_their_own_revision_and_audit_entry() {
        let (state, _dir) = test_support::state();
        let writers: Vec<_> = (0..24)
            .map(|i| {
                let state = state.clone();
                tokio::spawn(async move {
                    state
                        .issuers()
                        .create(
                            &test_support::ops(),
                            serde_json::from_value(serde_json::json!({
                                "id": format!("idp-{i}"),
                                "issuer": format!("https://idp-{i}.example.com"),
                            }))
                            .unwrap(),
                        )
                        .await
                        .unwrap()
                        .revision
                })
            })
            .collect();
        let mut revisions = Vec::new();
        for writer in writers {
            revisions.push(writer.await.unwrap());
        }
        revisions.sort_unstable();
        assert_eq!(revisions, (1..=24).collect::<Vec<u64>>());
        assert_eq!(state.revision().unwrap(), 24);
        let log = state
            .audit()
            .list(
                &PageRequest::new(Some(100), None).unwrap(),
                &audit::AuditFilter::default(),
            )
            .unwrap();
        assert_eq!(log.items.len(), 24);
        assert_eq!(*state.revisions().borrow(), 24);
    }

    #[tokio::test]
    async fn revision_watch_sees_every_commit() {
        let (state, _dir) = test_support::state();
        let mut revisions = state.revisions();
        assert_eq!(*revisions.borrow_and_update(), 0);
        state
            .issuers()
            .create(
                &test_support::ops(),
                serde_json::from_value(serde_json::json!({
                    "id": "idp", "issuer": "https://idp.example.com"
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        revisions.changed().await.unwrap();
        assert_eq!(*revisions.borrow_and_update(), 1);
        assert_eq!(state.revision().unwrap(), 1);
    }
}
