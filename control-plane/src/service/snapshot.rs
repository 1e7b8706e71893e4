//! The snapshot that every filter syncs: built from the store (APIs, policies, client
//! bindings, revocations) and the issuers' keys, validated with portico-core exactly as a
//! filter will validate it, and published with a version that grows whenever its content
//! changes — also across restarts, since the version and the content's digest are kept in the
//! store's metadata. Each publication also records the delta from the version before
//! ([`deltas`]), so that filters a few versions behind download only what changed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use portico_core::snapshot::{
    CompiledSnapshot, IssuerSpec, JwkList, Section, Snapshot, SnapshotDelta, SnapshotDigest,
    SnapshotError,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use utoipa::ToSchema;

use super::apis::Api;
use super::issuers::Issuer;
use super::policies::Policy;
use super::{AppState, Reader, ResourceKind, ResourceRef, monotonic_now};
use crate::error::ApiError;
use crate::store::{Staged, StoreError, Write};

pub mod deltas;

/// The metadata key of the [`VersionRecord`].
pub(crate) const META_KEY: &str = "snapshot";
/// Filter instances whose last poll ended this long ago (and hold no poll open) leave the list
/// of connected filters: a filter polls again at most `MAX_WAIT_SECONDS` (300 s) after the last.
const FORGET_FILTERS_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// A published snapshot, in both encodings.
#[derive(Debug)]
pub struct Published {
    /// Its version.
    pub version: u64,
    /// When it was built (RFC 3339).
    pub built_at: String,
    /// The JSON encoding.
    pub json: Vec<u8>,
    /// The binary encoding (what filters ask for).
    pub binary: Vec<u8>,
    /// What it holds.
    pub counts: SnapshotCounts,
    /// When each expiring binding (client, policy) ends, in seconds since the Unix epoch,
    /// for the metrics: `GET /metrics` counts those ending within the next 7 days at its own
    /// time, so the figure moves with the clock between publications.
    pub binding_expiries: Vec<u64>,
    /// When a revocation it holds can leave the snapshot, in seconds since the Unix epoch
    /// ([`portico_core::rules::revocation_ends_at`]): the publisher builds again then.
    pub next_revocation_end: Option<u64>,
    /// The digest of its content ([`Snapshot::digest`]), which deltas to it announce.
    pub digest: SnapshotDigest,
    /// The deltas that lead to it from the last few versions.
    pub deltas: deltas::DeltaChain,
    /// Delta answers encoded so far, by the version they start from (`None`: that version
    /// gets the whole snapshot); at most one per step of `deltas`.
    delta_answers: Mutex<BTreeMap<u64, Option<Arc<Vec<u8>>>>>,
}

// === impl Published ===

impl Published {
    /// The binary delta from version `since` to this one, when the change log still reaches
    /// back to `since` and the delta is smaller than the whole snapshot; `None` otherwise (the
    /// filter then gets the whole snapshot). Encoded once per `since` and kept.
    pub fn delta_since(&self, since: u64) -> Option<Arc<Vec<u8>>> {
        let mut answers = self
            .delta_answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(answer) = answers.get(&since) {
            return answer.clone();
        }
        let answer = match self.deltas.since(since)? {
            Ok(delta) => match delta.to_binary() {
                Ok(bytes) => (bytes.len() < self.binary.len()).then(|| Arc::new(bytes)),
                Err(error) => {
                    tracing::warn!(since, %error, "cannot encode a snapshot delta");
                    None
                }
            },
            Err(error) => {
                tracing::warn!(since, %error, "cannot compose a snapshot delta");
                None
            }
        };
        answers.insert(since, answer.clone());
        answer
    }
}

/// What a snapshot holds, for operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct SnapshotCounts {
    /// Protected APIs.
    pub apis: usize,
    /// Issuers.
    pub issuers: usize,
    /// Usable keys over all issuers.
    pub keys: usize,
    /// Policies.
    pub policies: usize,
    /// Clients with bound policies.
    pub client_bindings: usize,
    /// Revoked clients.
    pub revoked_clients: usize,
    /// Quotas spent across the fleet (refused until they renew).
    pub exhausted_quotas: usize,
}

/// A filter instance (one Envoy process) that synced recently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ConnectedFilter {
    /// The node name the filter reported (Envoy's `node.id` unless configured).
    pub node: String,
    /// The id the filter generated when its Envoy started (shared by the Envoy's workers);
    /// absent for filters that send none. Several Envoys with one node name are one row each.
    pub instance: Option<String>,
    /// The id of the data-plane token it used.
    pub token_id: String,
    /// The snapshot version it had when it last asked.
    pub version: u64,
    /// How many versions it is behind the one in force (0: up to date).
    pub versions_behind: u64,
    /// When it last asked (RFC 3339).
    pub last_sync: String,
    /// Seconds since it last asked.
    pub seconds_since_last_sync: u64,
    /// Whether a poll of it is being held right now.
    pub polling: bool,
    /// Its share of every rate limit, in thousandths, as last answered to its usage reports
    /// (absent before its first report; see `docs/limits.md`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_share: Option<u32>,
}

/// What a row of the filter list is keyed by: a poll can only update the row of its own
/// token, node name and instance.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct FilterKey {
    node: String,
    instance: Option<String>,
    token_id: String,
}

#[derive(Debug)]
struct FilterRecord {
    version: u64,
    last_sync: String,
    /// When a poll last started or ended (Tokio's clock, so that tests can move it).
    seen: tokio::time::Instant,
    open_polls: usize,
}

/// How publication is going: a failure here means every filter still enforces an older
/// snapshot than the store describes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct PublishStatus {
    /// When a snapshot was last published (RFC 3339), if one was.
    pub last_published_at: Option<String>,
    /// Why the last attempt failed, naming the field at fault; absent when it succeeded.
    pub last_publish_error: Option<String>,
    /// Attempts that failed in a row since the last success.
    pub consecutive_failures: u64,
}

/// The current snapshot and the filters that sync it.
#[derive(Debug)]
pub struct SnapshotHub {
    current: watch::Sender<Option<Arc<Published>>>,
    filters: Mutex<BTreeMap<FilterKey, FilterRecord>>,
    /// When rows were last forgotten: at most every [`FORGET_SWEEP_EVERY`], not on every poll
    /// (a sweep visits every row: per poll, a fleet's polls would cost filters² visits).
    swept_at: Mutex<Option<tokio::time::Instant>>,
    status: Mutex<PublishStatus>,
}

/// How often the rows of forgotten filters are swept away (listings skip them in between).
const FORGET_SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl Default for SnapshotHub {
    fn default() -> Self {
        SnapshotHub {
            current: watch::channel(None).0,
            filters: Mutex::new(BTreeMap::new()),
            swept_at: Mutex::new(None),
            status: Mutex::new(PublishStatus::default()),
        }
    }
}

// === impl SnapshotHub ===

impl SnapshotHub {
    /// The snapshot in force, once the first one is built.
    pub fn current(&self) -> Option<Arc<Published>> {
        self.current.borrow().clone()
    }

    /// A receiver that changes with every publication.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Published>>> {
        self.current.subscribe()
    }

    /// How publication is going.
    pub fn status(&self) -> PublishStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, outcome: Result<&Published, String>) {
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Ok(published) => {
                status.last_published_at = Some(published.built_at.clone());
                status.last_publish_error = None;
                status.consecutive_failures = 0;
            }
            Err(error) => {
                status.last_publish_error = Some(error);
                status.consecutive_failures += 1;
            }
        }
    }

    /// Wakes every held poll (at shutdown, so that they answer at once).
    pub fn wake_polls(&self) {
        self.current.send_modify(|_| {});
    }

    /// Notes that the filter instance `instance` of `node`, polling with the data-plane token
    /// `token_id`, asks for a snapshot newer than `version`; the returned guard marks the poll
    /// as open until it is dropped. Rows without an open poll that have not polled for
    /// [`FORGET_FILTERS_AFTER`] are forgotten (swept at most every minute).
    pub fn poll_started(
        &self,
        node: &str,
        instance: Option<&str>,
        token_id: &str,
        version: u64,
        now: String,
    ) -> PollGuard<'_> {
        let key = FilterKey {
            node: node.to_owned(),
            instance: instance.map(str::to_owned),
            token_id: token_id.to_owned(),
        };
        let instant = monotonic_now();
        let mut filters = self.lock();
        let sweep = {
            let mut swept_at = self.swept_at.lock().unwrap_or_else(PoisonError::into_inner);
            let due = swept_at
                .is_none_or(|at| instant.saturating_duration_since(at) >= FORGET_SWEEP_EVERY);
            if due {
                *swept_at = Some(instant);
            }
            due
        };
        if sweep {
            filters.retain(|_, record| {
                record.open_polls > 0
                    || instant.saturating_duration_since(record.seen) < FORGET_FILTERS_AFTER
            });
        }
        let record = filters.entry(key.clone()).or_insert_with(|| FilterRecord {
            version,
            last_sync: now.clone(),
            seen: instant,
            open_polls: 0,
        });
        record.version = version;
        record.last_sync = now;
        record.seen = instant;
        record.open_polls += 1;
        PollGuard { hub: self, key }
    }

    /// The filter instances that polled in the last [`FORGET_FILTERS_AFTER`] or hold a poll
    /// open, by node name, then instance, then token id.
    pub fn filters(&self) -> Vec<ConnectedFilter> {
        let in_force = self.current().map_or(0, |published| published.version);
        self.lock()
            .iter()
            .filter(|(_, record)| {
                record.open_polls > 0
                    || monotonic_now().saturating_duration_since(record.seen) < FORGET_FILTERS_AFTER
            })
            .map(|(key, record)| ConnectedFilter {
                node: key.node.clone(),
                instance: key.instance.clone(),
                token_id: key.token_id.clone(),
                version: record.version,
                versions_behind: in_force.saturating_sub(record.version),
                last_sync: record.last_sync.clone(),
                seconds_since_last_sync: monotonic_now()
                    .saturating_duration_since(record.seen)
                    .as_secs(),
                polling: record.open_polls > 0,
                rate_share: None,
            })
            .collect()
    }

    /// How many snapshot polls are held open right now, across every filter.
    pub fn open_polls(&self) -> usize {
        self.lock().values().map(|record| record.open_polls).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<FilterKey, FilterRecord>> {
        // Records are updated field by field from plain values; nothing can be half-written.
        self.filters.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An open poll; dropping it closes the poll in the filter list.
#[derive(Debug)]
pub struct PollGuard<'a> {
    hub: &'a SnapshotHub,
    key: FilterKey,
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        if let Some(record) = self.hub.lock().get_mut(&self.key) {
            // The filter was connected until now: its row ages from here.
            record.seen = monotonic_now();
            record.open_polls = record.open_polls.saturating_sub(1);
        }
    }
}

/// The version and content digest ([`Snapshot::digest`], in hex) of the last published
/// snapshot, kept across restarts in the store's metadata (JSON under the key `snapshot`).
/// Records written before the digest was introduced hold a SHA-256 of the JSON encoding, which
/// never matches: the first publication after the upgrade takes a new version. A restore
/// ([`super::restore`]) writes one with an empty `hash` and its version floor, so that the
/// next publication takes the floor plus one.
///
/// `revision` is the store revision the snapshot was built from (0 in records written before
/// replicas): among replicas on a shared store, a build from an older revision than the
/// record's never replaces it, and the record is replaced by compare-and-swap, so that two
/// replicas never publish two contents under one version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// The version last published.
    pub version: u64,
    /// The digest of its content, in hex (empty: matches no content).
    pub hash: String,
    /// The store revision it was built from.
    #[serde(default)]
    pub revision: u64,
}

impl VersionRecord {
    /// The record kept in `store`, if there is one that decodes.
    pub(crate) fn read(store: &dyn crate::store::Store) -> Result<Option<Self>, StoreError> {
        Ok(store
            .meta_get(META_KEY)?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }
}

/// The metadata key under which the publishing replica keeps the binary encoding of the
/// snapshot it published, for the other replicas on a shared store ([`follow`]).
pub(crate) const PUBLISHED_KEY: &str = "snapshot/binary";
/// Builds a publication tries before giving up to another replica that keeps publishing.
const PUBLISH_ATTEMPTS: usize = 4;

/// Builds the snapshot content from the store and the keys (version 0: set on publication).
/// The trees are read one after the other; when a write lands in between, the build starts
/// over, so a snapshot never mixes two revisions.
pub fn build(state: &AppState) -> Result<Snapshot, ApiError> {
    Ok(build_consistent(state)?.0)
}

/// [`build`], with when a revocation it holds can leave and the revision it was read at.
fn build_consistent(state: &AppState) -> Result<(Snapshot, Option<u64>, u64), ApiError> {
    let mut attempts = 0;
    loop {
        let before = state.revision()?;
        // The key registry first follows the issuers as stored (inline keys, or the last good
        // ones the store keeps), within the revision check: the key task wakes on the same
        // change, and without this a process that just started, or took over from another
        // replica, published its issuers without keys (filters refused every token until that
        // task caught up), and a changed issuer went out with its old configuration's keys.
        super::jwks::sync_issuers(state)?;
        let (snapshot, next_revocation_end) = build_from(state, Reader::new(state.store()))?;
        attempts += 1;
        if state.revision()? == before || attempts >= 8 {
            return Ok((snapshot, next_revocation_end, before));
        }
    }
}

/// The snapshot that `reader`'s store holds: its resources as they are (the store's types are
/// core's wire types), the issuers' current keys, the client bindings and revocations, and the
/// gateway settings; and when one of its revocations can leave (seconds since the Unix epoch).
fn build_from(state: &AppState, reader: Reader<'_>) -> Result<(Snapshot, Option<u64>), ApiError> {
    let apis = reader.values::<Api>()?;
    let issuers = reader.values::<Issuer>()?;
    let bindings = super::oauth_clients::bindings_in(
        reader,
        super::oauth_clients::unix_seconds(state.now()),
        &super::oauth_clients::Retention::of(&issuers, &apis),
    )?;
    let snapshot = Snapshot {
        version: 0,
        apis,
        issuers: issuers
            .into_iter()
            .map(|issuer| IssuerSpec {
                keys: JwkList(state.keys().keys(&issuer.id)),
                id: issuer.id,
                issuer: issuer.issuer,
                hmac_secrets: Vec::new(),
                max_token_lifetime_seconds: Some(issuer.max_token_lifetime_seconds),
            })
            .collect(),
        policies: reader.values::<Policy>()?,
        clients: bindings
            .active
            .into_iter()
            .filter(|binding| !binding.policies.is_empty())
            .collect(),
        revoked_clients: bindings.revoked,
        exhausted_quotas: state.usage().exhausted(state.now())?,
        global: super::gateway::read(reader)?,
    };
    Ok((snapshot, bindings.next_revocation_end))
}

/// Refuses a change whose snapshot would not compile: the snapshot is built from the store
/// with `writes` applied (nothing is written) and compiled with core's compiler, exactly as
/// every filter will. A change is let through when the store's current snapshot already fails
/// with the same error, so that an old fault (from before an upgrade, or from a key refresh)
/// never blocks unrelated writes or the write that repairs it.
///
/// # Errors
/// 409 `conflict` when the change clashes with another resource (two APIs on one route),
/// naming both; 422 `invalid_snapshot` for any other rule, naming the resource and field.
pub(crate) fn check_candidate(
    state: &AppState,
    writes: &[Write],
    resource: &ResourceRef,
) -> Result<(), ApiError> {
    let staged = Staged::new(state.store(), writes);
    let (candidate, _) = build_from(state, Reader::new(&staged))?;
    let Err(error) = CompiledSnapshot::compile(candidate) else {
        return Ok(());
    };
    let (current, _) = build_from(state, Reader::new(state.store()))?;
    if CompiledSnapshot::compile(current).err().as_ref() == Some(&error) {
        return Ok(());
    }
    Err(refusal(&error, resource))
}

/// The admin answer to a change whose snapshot does not compile.
fn refusal(error: &SnapshotError, resource: &ResourceRef) -> ApiError {
    let name = |section: Section, id: &str| match section {
        Section::Apis => format!("API `{id}`"),
        Section::Issuers => format!("issuer `{id}`"),
        Section::Policies => format!("policy `{id}`"),
        Section::Clients => format!("OAuth client `{id}`"),
        Section::Global => "the gateway settings".to_owned(),
    };
    let own = error.subject.as_ref().filter(|subject| {
        let kind = match subject.section {
            Section::Apis => ResourceKind::Api,
            Section::Issuers => ResourceKind::Issuer,
            Section::Policies => ResourceKind::Policy,
            Section::Clients => ResourceKind::OauthClient,
            Section::Global => ResourceKind::GatewaySettings,
        };
        kind == resource.kind && (subject.id == resource.id || subject.section == Section::Global)
    });
    match (own, &error.conflicts_with) {
        (Some(subject), Some(_)) => ApiError::Conflict {
            field: Some(subject.field.clone()),
            message: error.message.clone(),
        },
        (Some(subject), None) => ApiError::InvalidSnapshot {
            field: Some(subject.field.clone()),
            message: error.message.clone(),
        },
        (None, _) => {
            let at = error.subject.as_ref().map_or_else(
                || error.path.clone(),
                |subject| format!("{} ({})", name(subject.section, &subject.id), subject.field),
            );
            let message = format!(
                "this change would leave a snapshot that filters refuse: {at}: {}",
                error.message
            );
            if error.conflicts_with.is_some() {
                ApiError::Conflict {
                    field: None,
                    message,
                }
            } else {
                ApiError::InvalidSnapshot {
                    field: None,
                    message,
                }
            }
        }
    }
}

/// Builds, validates and (when the content changed) publishes a snapshot, and records the
/// outcome in [`SnapshotHub::status`]. A failure is logged at error level on every attempt
/// with the field at fault.
///
/// # Errors
/// 500 `internal` when the store cannot be read or the snapshot does not compile (the
/// previous snapshot stays in force).
pub fn publish(state: &AppState) -> Result<Arc<Published>, ApiError> {
    let outcome = publish_once(state);
    match &outcome {
        Ok(published) => state.snapshots().record(Ok(published)),
        Err(error) => {
            let reason = match error {
                ApiError::Internal(inner) => format!("{inner:#}"),
                other => other.to_string(),
            };
            let failures = state.snapshots().status().consecutive_failures + 1;
            tracing::error!(
                error = %reason,
                consecutive_failures = failures,
                "cannot publish a snapshot; filters keep the previous one"
            );
            state.snapshots().record(Err(reason));
            state.metrics().record_publish_failure();
        }
    }
    outcome
}

fn publish_once(state: &AppState) -> Result<Arc<Published>, ApiError> {
    let started = state.instant();
    let shared = state.store().changes().is_some();
    for _ in 0..PUBLISH_ATTEMPTS {
        let (mut snapshot, next_revocation_end, revision) = build_consistent(state)?;
        let digest = snapshot
            .digest()
            .map_err(|error| ApiError::Internal(anyhow::anyhow!("{error}")))?;
        let hash = digest.to_string();
        let stored = state.store().meta_get(META_KEY)?;
        let record: VersionRecord = stored
            .as_deref()
            .and_then(|bytes| serde_json::from_slice(bytes).ok())
            .unwrap_or_default();
        let hub = state.snapshots();
        if record.hash == hash
            && let Some(current) = hub.current()
            && current.version == record.version
            && current.next_revocation_end == next_revocation_end
        {
            return Ok(current);
        }
        if record.revision > revision {
            // Another replica published from a newer revision since this build began.
            state.note_revision(record.revision);
            continue;
        }
        let version = if record.hash == hash {
            record.version.max(1)
        } else {
            record.version + 1
        };
        snapshot.version = version;
        let binary = snapshot
            .to_binary()
            .map_err(|error| ApiError::Internal(anyhow::anyhow!("{error}")))?;
        // Checked before it is numbered: a snapshot that does not compile takes no version.
        let published = prepare(state, snapshot, binary, digest, next_revocation_end)?;
        if record.version != version || record.hash != hash {
            let bytes = serde_json::to_vec(&VersionRecord {
                version,
                hash,
                revision,
            })
            .map_err(|error| ApiError::Internal(error.into()))?;
            if !number(state, shared, stored.as_deref(), &bytes, &published.binary)? {
                // Another replica numbered a snapshot meanwhile: build again on its record.
                continue;
            }
        }
        return Ok(put_in_force(state, &published, started));
    }
    Err(ApiError::Internal(anyhow::anyhow!(
        "other replicas kept publishing during {PUBLISH_ATTEMPTS} builds; trying again on the next change"
    )))
}

/// Numbers a publication: replaces the version record `stored` with `record`, only if it is
/// still `stored`. On a shared store also only while this replica holds the publication lease
/// exactly as it last wrote it, and with the snapshot's `binary` encoding for the other
/// replicas in the same transaction, so that the record never names a snapshot the store does
/// not hold and a replica that lost the lease publishes nothing. Answers whether it did (not:
/// another replica numbered a snapshot meanwhile). Errors: the store's; 500 `internal` when
/// this replica does not hold the lease.
fn number(
    state: &AppState,
    shared: bool,
    stored: Option<&[u8]>,
    record: &[u8],
    binary: &[u8],
) -> Result<bool, ApiError> {
    let store = state.store();
    if !shared {
        return Ok(store.meta_compare_and_swap(META_KEY, stored, record)?);
    }
    for _ in 0..PUBLISH_ATTEMPTS {
        let Some(lease) = state.replica().lease() else {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "this replica no longer holds the publication lease"
            )));
        };
        if store.meta_swap(
            &[
                (META_KEY, stored),
                (super::replicas::LEASE_KEY, Some(&lease)),
            ],
            &[(META_KEY, record), (PUBLISHED_KEY, binary)],
        )? {
            return Ok(true);
        }
        if store.meta_get(META_KEY)?.as_deref() != stored {
            return Ok(false);
        }
        // Only the lease moved: this replica renewed it meanwhile, or lost it (checked again).
    }
    Err(ApiError::Internal(anyhow::anyhow!(
        "the publication lease kept moving during {PUBLISH_ATTEMPTS} attempts to number a snapshot"
    )))
}

/// On a replica that does not publish (see [`super::replicas`]): loads the snapshot the
/// publisher keeps in the store when it is newer than the one in force, checks that it
/// compiles, and serves it (with deltas from the version in force). Failures are logged; the
/// snapshot in force stays.
pub fn follow(state: &AppState) {
    let loaded = (|| -> Result<Option<Arc<Published>>, ApiError> {
        let current = state
            .snapshots()
            .current()
            .map(|published| published.version);
        let record: Option<VersionRecord> = state
            .store()
            .meta_get(META_KEY)?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let Some(record) =
            record.filter(|record| current.is_none_or(|current| record.version > current))
        else {
            return Ok(None);
        };
        let Some(binary) = state.store().meta_get(PUBLISHED_KEY)? else {
            return Ok(None);
        };
        let started = state.instant();
        let snapshot = Snapshot::decode(&binary)
            .map_err(|error| ApiError::Internal(anyhow::anyhow!("{error}")))?;
        if snapshot.version != record.version {
            // The record moved ahead of the kept snapshot (the publisher writes the record,
            // then the snapshot): the notification of the snapshot's write brings it.
            return Ok(None);
        }
        let digest = snapshot
            .digest()
            .map_err(|error| ApiError::Internal(anyhow::anyhow!("{error}")))?;
        let published = prepare(state, snapshot, binary, digest, None)?;
        Ok(Some(put_in_force(state, &published, started)))
    })();
    match loaded {
        Ok(Some(published)) => state.snapshots().record(Ok(&published)),
        Ok(None) => {}
        Err(error) => {
            tracing::error!(%error, "cannot load the snapshot another replica published");
            state.snapshots().record(Err(error.to_string()));
        }
    }
}

/// Checks that `snapshot` (numbered, with its `binary` encoding and `digest`) compiles as a
/// filter would compile it, and prepares its publication: counted, with its deltas from the
/// snapshot in force ([`put_in_force`] then announces it).
fn prepare(
    state: &AppState,
    snapshot: Snapshot,
    binary: Vec<u8>,
    digest: SnapshotDigest,
    next_revocation_end: Option<u64>,
) -> Result<Arc<Published>, ApiError> {
    let hub = state.snapshots();
    let version = snapshot.version;
    let json = serde_json::to_vec(&snapshot).map_err(|error| ApiError::Internal(error.into()))?;
    state
        .metrics()
        .record_exhausted(snapshot.exhausted_quotas.len());
    let binding_expiries: Vec<u64> = snapshot
        .clients
        .iter()
        .flat_map(|binding| binding.expires_at.values().copied())
        .collect();
    let counts = SnapshotCounts {
        apis: snapshot.apis.len(),
        issuers: snapshot.issuers.len(),
        keys: snapshot
            .issuers
            .iter()
            .map(|issuer| issuer.keys.0.len())
            .sum(),
        policies: snapshot.policies.len(),
        client_bindings: snapshot.clients.len(),
        revoked_clients: snapshot.revoked_clients.len(),
        exhausted_quotas: snapshot.exhausted_quotas.len(),
    };
    let deltas = hub
        .current()
        .map(|previous| chain_to(&previous, &snapshot))
        .unwrap_or_default();
    // Exactly the check a filter makes: what does not compile here would be refused there.
    CompiledSnapshot::compile(snapshot).map_err(|error| {
        let at = error
            .subject
            .as_ref()
            .filter(|subject| !subject.id.is_empty())
            .map(|subject| format!(" (`{}`)", subject.id))
            .unwrap_or_default();
        ApiError::Internal(anyhow::anyhow!(
            "the snapshot does not compile: {}{at}: {}",
            error.path,
            error.message
        ))
    })?;
    let published = Arc::new(Published {
        version,
        built_at: state.now_rfc3339(),
        json,
        binary,
        counts,
        binding_expiries,
        next_revocation_end,
        digest,
        deltas,
        delta_answers: Mutex::new(BTreeMap::new()),
    });
    Ok(published)
}

/// Puts `published` (prepared by [`prepare`] from `started` on) in force: counted, logged, and
/// announced to the held polls.
fn put_in_force(
    state: &AppState,
    published: &Arc<Published>,
    started: tokio::time::Instant,
) -> Arc<Published> {
    let (version, counts) = (published.version, published.counts);
    let took = state.instant().saturating_duration_since(started);
    state.metrics().record_publish(
        version,
        published.binary.len(),
        published.json.len(),
        took.as_secs_f64(),
    );
    tracing::info!(
        version,
        bytes = published.binary.len(),
        build_ms = took.as_millis(),
        apis = counts.apis,
        keys = counts.keys,
        client_bindings = counts.client_bindings,
        revoked_clients = counts.revoked_clients,
        "snapshot published"
    );
    state
        .snapshots()
        .current
        .send_replace(Some(Arc::clone(published)));
    Arc::clone(published)
}

/// The change log that leads to `snapshot`: `previous`'s, followed by the delta from
/// `previous` (decoded from its binary encoding, so that no second copy of the snapshot stays
/// in memory) to `snapshot`. A failure is logged and starts an empty log: filters then get the
/// whole snapshot.
fn chain_to(previous: &Published, snapshot: &Snapshot) -> deltas::DeltaChain {
    let delta = Snapshot::decode(&previous.binary)
        .map_err(|error| error.to_string())
        .and_then(|base| SnapshotDelta::diff(&base, snapshot).map_err(|error| error.to_string()))
        .and_then(|delta| {
            let bytes = delta.to_binary().map_err(|error| error.to_string())?.len();
            Ok((delta, bytes))
        });
    match delta {
        Ok((delta, bytes)) => previous.deltas.then(delta, bytes),
        Err(error) => {
            tracing::warn!(%error, "cannot compute the snapshot delta; filters get the whole snapshot");
            deltas::DeltaChain::default()
        }
    }
}

/// Publishes a snapshot now and after every change to the store, to the keys or to the set of
/// quotas spent across the fleet, until
/// `shutdown` changes. A snapshot that cannot be built or validated is logged and never
/// published; the previous one stays in force.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let mut revisions = state.revisions();
    let mut keys = state.keys().generations();
    let mut spent = state.usage().exhausted_generations();
    let mut publishing = state.replica().publisher_changes();
    loop {
        // A failure is recorded and logged by `publish`; the loop retries on the next change.
        // Among replicas on a shared store, only the lease holder publishes (the others
        // follow it: `follow`).
        if state.replica().is_publisher() {
            let _ = publish(&state);
        }
        // A revocation leaving the snapshot is a change no write announces. At least a second
        // apart, so that a publication that keeps failing is not retried in a busy loop.
        let revocation_ends = state
            .snapshots()
            .current()
            .and_then(|published| published.next_revocation_end)
            .map(|at| {
                let now = super::oauth_clients::unix_seconds(state.now());
                std::time::Duration::from_secs(at.saturating_sub(now).max(1))
            });
        let revocation_end = async {
            match revocation_ends {
                Some(after) => tokio::time::sleep(after).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = revisions.changed() => if changed.is_err() { return },
            changed = keys.changed() => if changed.is_err() { return },
            changed = spent.changed() => if changed.is_err() { return },
            changed = publishing.changed() => if changed.is_err() { return },
            () = revocation_end => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests;
