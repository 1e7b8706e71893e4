//! Several control-plane processes (replicas) on one shared store (PostgreSQL), behaving as one
//! control plane.
//!
//! - **Writes** go to the store from any replica; reads come from it, so a write on one is
//!   visible on all at once.
//! - **One publisher.** The replica that holds the publication lease (the metadata value
//!   [`LEASE_KEY`], taken and renewed by compare-and-swap, [`Store::meta_compare_and_swap`])
//!   builds the snapshots, numbers them (one version sequence, fenced by a compare-and-swap of
//!   the version record) and keeps the last one in the store; it alone fetches issuers' keys, so
//!   each issuer's keys are refreshed by one replica at a time. The others load each published
//!   snapshot from the store and serve it to their filters (with deltas from the versions
//!   they loaded). A lease lasts [`LEASE`] and is renewed every [`RENEW_EVERY`]: when the
//!   publisher stops, another replica publishes within [`LEASE`] + [`RENEW_EVERY`]. Replicas
//!   compare the lease's expiry with their own clocks, so their clocks must agree to well
//!   within [`LEASE`] (NTP does).
//! - **Wake-ups.** Every commit and metadata write notifies every replica
//!   ([`Store::changes`]); a replica then moves its revision (waking its key registry and, on
//!   the publisher, the snapshot builder), loads a newer published snapshot (waking its long
//!   polls) and keys, and passes on what filters reported to other replicas (an unknown `kid`, a quota
//!   spent: [`Signals`]).
//!
//! A store that one process owns (sled) has no notifications: that process is the publisher
//! from the start and nothing here runs.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::AppState;
use crate::store::{Store, StoreError};

/// How long a publication lease lasts without renewal.
pub const LEASE: Duration = Duration::from_secs(10);
/// How often a replica renews its lease (or tries to take a free or expired one).
pub const RENEW_EVERY: Duration = Duration::from_secs(2);
/// How long a replica that is behind the version a filter polls from waits to catch up
/// before answering it with its own (older) version: a restore's case, not a lagging replica's.
pub const CATCH_UP: Duration = Duration::from_secs(5);
/// The prefix of the metadata keys through which replicas agree (a restore leaves them out).
pub const META_PREFIX: &str = "replicas/";
/// The metadata key of the publication lease.
pub const LEASE_KEY: &str = "replicas/lease";
/// The metadata key under which replicas ask the publisher to refresh issuers' keys.
const KEY_REFRESH_KEY: &str = "replicas/key-refresh";
/// The metadata key a replica moves when a quota is newly spent.
const QUOTA_SPENT_KEY: &str = "replicas/quota-spent";
/// Compare-and-swap attempts before a replica gives up a request to the others.
const SWAP_ATTEMPTS: usize = 8;

/// The publication lease, as kept in the store (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The replica that holds it (see [`ReplicaRuntime::id`]).
    pub holder: String,
    /// Until when, in milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
}

/// What a replica does about the lease it read (`current`, if any) at `now_ms`
/// (milliseconds since the Unix epoch): the lease to write, when it takes or renews it;
/// `None` when another replica holds a lease that has not expired.
pub fn next_lease(current: Option<&Lease>, me: &str, now_ms: u64) -> Option<Lease> {
    let free = current.is_none_or(|lease| lease.holder == me || lease.expires_at_ms <= now_ms);
    free.then(|| Lease {
        holder: me.to_owned(),
        expires_at_ms: now_ms.saturating_add(millis(LEASE)),
    })
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}

/// This process's place among the replicas: its id, whether it publishes, and what it last
/// passed on from the others.
#[derive(Debug)]
pub struct ReplicaRuntime {
    id: String,
    publisher: watch::Sender<bool>,
    /// The lease as this replica last wrote it (JSON), while it holds it: publication writes
    /// only if the store still holds exactly this (a replica that lost the lease without
    /// knowing it yet publishes nothing).
    lease: Mutex<Option<Vec<u8>>>,
    seen: Mutex<Seen>,
}

/// The last value of each signal this replica acted on.
#[derive(Debug, Default)]
struct Seen {
    key_refresh: BTreeMap<String, u64>,
    quota_spent: Option<Vec<u8>>,
    /// When this replica last relayed a refresh of each issuer's keys (monotonic): at most one
    /// per [`super::jwks::UNKNOWN_KID_INTERVAL`], so that a flood of unknown `kid`s costs the
    /// store nothing more.
    relayed: BTreeMap<String, tokio::time::Instant>,
}

// === impl ReplicaRuntime ===

impl ReplicaRuntime {
    /// A replica named `id` (unique per process run), the publisher from the start when
    /// `shared` is false (a store that one process owns).
    pub fn new(id: String, shared: bool) -> Self {
        ReplicaRuntime {
            id,
            publisher: watch::channel(!shared).0,
            lease: Mutex::new(None),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// This replica's id: the process run's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether this replica builds and publishes snapshots and fetches keys now.
    pub fn is_publisher(&self) -> bool {
        *self.publisher.borrow()
    }

    /// A receiver that changes when this replica starts or stops publishing.
    pub fn publisher_changes(&self) -> watch::Receiver<bool> {
        self.publisher.subscribe()
    }

    /// The lease as this replica last wrote it, while it holds it (JSON, compared byte for
    /// byte by [`Store::meta_swap`]); `None` when it does not hold it.
    pub fn lease(&self) -> Option<Vec<u8>> {
        self.lease
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_lease(&self, lease: Option<Vec<u8>>) {
        *self.lease.lock().unwrap_or_else(PoisonError::into_inner) = lease;
    }

    fn set_publisher(&self, publishing: bool) {
        self.publisher.send_if_modified(|current| {
            let changed = *current != publishing;
            *current = publishing;
            changed
        });
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What replicas ask one another through the store: the publisher refreshes an issuer's keys
/// when a filter reported an unknown `kid` to another replica, and rebuilds when a quota was
/// newly spent by reports to another replica.
#[derive(Debug)]
pub struct Signals<'a> {
    state: &'a AppState,
}

impl<'a> Signals<'a> {
    /// The signals of `state`'s replica.
    pub fn new(state: &'a AppState) -> Self {
        Signals { state }
    }

    /// Whether another replica may act on what this one is told: the store is shared and this
    /// replica does not publish.
    fn relayed(&self) -> bool {
        self.state.store().changes().is_some() && !self.state.replica().is_publisher()
    }

    /// Asks the publisher to refresh issuer `issuer`'s keys for `kid` (empty: an operator's
    /// forced refresh), at most once per [`super::jwks::UNKNOWN_KID_INTERVAL`] per issuer
    /// (no-op on the publisher, which refreshes itself). Errors: the store's.
    pub fn request_key_refresh(&self, issuer: &str, kid: &str) -> Result<(), StoreError> {
        if !self.relayed() {
            return Ok(());
        }
        let now = self.state.instant();
        {
            let mut seen = self.state.replica().seen();
            if !kid.is_empty()
                && seen.relayed.get(issuer).is_some_and(|at| {
                    now.saturating_duration_since(*at) < super::jwks::UNKNOWN_KID_INTERVAL
                })
            {
                return Ok(());
            }
            seen.relayed.insert(issuer.to_owned(), now);
        }
        let at = unix_ms(self.state.now());
        update_json::<BTreeMap<String, KeyRefresh>>(
            self.state.store(),
            KEY_REFRESH_KEY,
            |requests| {
                requests.insert(
                    issuer.to_owned(),
                    KeyRefresh {
                        kid: kid.to_owned(),
                        at_ms: at,
                    },
                );
            },
        )
    }

    /// Tells the publisher that a quota was newly spent (no-op on the publisher). Errors: the
    /// store's.
    pub fn quota_spent(&self) -> Result<(), StoreError> {
        if !self.relayed() {
            return Ok(());
        }
        let mut marker = self.state.replica().id().as_bytes().to_vec();
        marker.extend_from_slice(&unix_ms(self.state.now()).to_be_bytes());
        self.state.store().meta_put(QUOTA_SPENT_KEY, &marker)
    }

    /// On the publisher: acts on what other replicas asked since it last looked (refreshes
    /// keys, rebuilds for spent quotas). Errors: the store's.
    fn act(&self) -> Result<(), StoreError> {
        let store = self.state.store();
        let requests: BTreeMap<String, KeyRefresh> = store
            .meta_get(KEY_REFRESH_KEY)?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let spent = store.meta_get(QUOTA_SPENT_KEY)?;
        let runtime = self.state.replica();
        let publisher = runtime.is_publisher();
        let mut refresh = Vec::new();
        let newly_spent = {
            let mut seen = runtime.seen();
            for (issuer, request) in &requests {
                if seen.key_refresh.get(issuer) != Some(&request.at_ms) {
                    seen.key_refresh.insert(issuer.clone(), request.at_ms);
                    refresh.push((issuer.clone(), request.kid.clone()));
                }
            }
            let newly_spent = spent.is_some() && seen.quota_spent != spent;
            seen.quota_spent = spent;
            newly_spent
        };
        // A replica that does not publish only remembers what it saw, so that on taking the
        // lease it acts on later requests, not on every past one.
        if publisher {
            for (issuer, kid) in refresh {
                if kid.is_empty() {
                    self.state.keys().refresh_soon(&issuer);
                    tracing::info!(%issuer, "key refresh relayed by another replica");
                } else {
                    let outcome = self.state.keys().report_unknown_kid(&issuer, &kid);
                    tracing::info!(%issuer, %kid, ?outcome, "unknown kid relayed by another replica");
                }
            }
            if newly_spent {
                self.state.usage().note_spent_elsewhere();
            }
        }
        Ok(())
    }
}

/// An unknown-`kid` report relayed to the publisher.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyRefresh {
    kid: String,
    at_ms: u64,
}

/// Reads the JSON metadata value `key` (absent or unreadable: the default), changes it with
/// `change` and writes it back if no other replica wrote it meanwhile, trying again otherwise.
fn update_json<T: Default + Serialize + for<'de> Deserialize<'de>>(
    store: &dyn Store,
    key: &str,
    change: impl Fn(&mut T),
) -> Result<(), StoreError> {
    for _ in 0..SWAP_ATTEMPTS {
        let stored = store.meta_get(key)?;
        let mut value: T = stored
            .as_deref()
            .and_then(|bytes| serde_json::from_slice(bytes).ok())
            .unwrap_or_default();
        change(&mut value);
        let bytes = serde_json::to_vec(&value)
            .map_err(|error| StoreError::Backend(format!("encoding {key}: {error}")))?;
        if store.meta_compare_and_swap(key, stored.as_deref(), &bytes)? {
            return Ok(());
        }
    }
    Err(StoreError::Unavailable(format!(
        "{key} kept changing under {SWAP_ATTEMPTS} attempts; retry"
    )))
}

/// Takes or renews the publication lease; answers whether this replica holds it now. A store
/// error answers `false`: a replica that cannot reach the store cannot know it still holds
/// the lease.
fn hold_lease(state: &AppState) -> bool {
    let store = state.store();
    let me = state.replica().id();
    let attempt = || -> Result<bool, StoreError> {
        let stored = store.meta_get(LEASE_KEY)?;
        let current = stored
            .as_deref()
            .and_then(|bytes| serde_json::from_slice::<Lease>(bytes).ok());
        let Some(next) = next_lease(current.as_ref(), me, unix_ms(state.now())) else {
            state.replica().set_lease(None);
            return Ok(false);
        };
        let bytes = serde_json::to_vec(&next)
            .map_err(|error| StoreError::Backend(format!("encoding the lease: {error}")))?;
        let held = store.meta_compare_and_swap(LEASE_KEY, stored.as_deref(), &bytes)?;
        state.replica().set_lease(held.then_some(bytes));
        Ok(held)
    };
    match attempt() {
        Ok(held) => held,
        Err(error) => {
            state.replica().set_lease(None);
            tracing::warn!(%error, "cannot renew the publication lease; not publishing");
            false
        }
    }
}

/// Gives the publication lease up, if this replica holds it, so that another replica takes it
/// at its next renewal instead of when it expires (a rolling restart).
fn release_lease(state: &AppState) {
    if !state.replica().is_publisher() {
        return;
    }
    state.replica().set_publisher(false);
    state.replica().set_lease(None);
    let store = state.store();
    let released = store.meta_get(LEASE_KEY).and_then(|stored| {
        let Some(stored) = stored else {
            return Ok(false);
        };
        let mine = serde_json::from_slice::<Lease>(&stored)
            .is_ok_and(|lease| lease.holder == state.replica().id());
        let expired = serde_json::to_vec(&Lease {
            holder: state.replica().id().to_owned(),
            expires_at_ms: 0,
        })
        .map_err(|error| StoreError::Backend(format!("encoding the lease: {error}")))?;
        if mine {
            store.meta_compare_and_swap(LEASE_KEY, Some(&stored), &expired)
        } else {
            Ok(false)
        }
    });
    match released {
        Ok(released) => tracing::info!(released, "publication lease given up"),
        Err(error) => {
            tracing::warn!(%error, "cannot give the publication lease up; it expires on its own");
        }
    }
}

/// Follows the other replicas until `shutdown` changes: renews or takes the publication lease
/// every [`RENEW_EVERY`], and on every change another replica made, moves the revision, loads
/// the published snapshot and keys (when not publishing) and acts on the signals (when
/// publishing). Returns at once for a store that one process owns.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let Some(mut changes) = state.store().changes() else {
        return;
    };
    let mut renew = tokio::time::interval(RENEW_EVERY);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The store's calls block (up to its operation timeout) and a follower decodes whole
    // snapshots: both run on the blocking pool, never on the runtime's workers.
    let blocking = |work: fn(&AppState)| {
        let state = state.clone();
        async move {
            if let Err(error) = tokio::task::spawn_blocking(move || work(&state)).await {
                tracing::error!(%error, "a replica task failed");
            }
        }
    };
    loop {
        tokio::select! {
            _ = renew.tick() => blocking(renew_lease).await,
            changed = changes.changed() => if changed.is_err() {
                // Without notifications this replica cannot follow the others: it stops
                // publishing, and another takes the lease when it expires.
                state.replica().set_publisher(false);
                state.replica().set_lease(None);
                tracing::error!("the store's notifications stopped; this replica no longer publishes");
                return;
            },
            _ = shutdown.changed() => {
                blocking(release_lease).await;
                return;
            }
        }
        blocking(follow).await;
    }
}

/// Takes or renews the lease, and starts or stops publishing accordingly.
pub(crate) fn renew_lease(state: &AppState) {
    let held = hold_lease(state);
    if held != state.replica().is_publisher() {
        tracing::info!(replica = %state.replica().id(), publishing = held, "publication lease {}", if held { "taken" } else { "lost" });
    }
    state.replica().set_publisher(held);
}

/// Catches up with what other replicas changed: the revision, and on a replica that does not
/// publish, the published snapshot and the issuers' keys; then the signals.
fn follow(state: &AppState) {
    match state.store().revision() {
        Ok(revision) => state.note_revision(revision),
        Err(error) => tracing::warn!(%error, "cannot read the store revision"),
    }
    if !state.replica().is_publisher() {
        super::snapshot::follow(state);
        super::jwks::follow(state);
    }
    if let Err(error) = Signals::new(state).act() {
        tracing::warn!(%error, "cannot read what other replicas asked");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::test_support::{another_replica, create_remote_issuer, ops, shared_state};

    #[tokio::test]
    async fn what_replicas_are_told_reaches_the_publisher_once_and_the_publisher_relays_nothing() {
        let (publisher, _dir) = shared_state();
        let follower = another_replica(&publisher);
        publisher.replica().set_publisher(true);
        assert!(!follower.replica().is_publisher());
        create_remote_issuer(&publisher).await;
        let requests = |state: &AppState| {
            state
                .store()
                .meta_get(KEY_REFRESH_KEY)
                .unwrap()
                .map(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).unwrap())
        };

        // The publisher refreshes by itself: nothing is written for the others.
        Signals::new(&publisher)
            .request_key_refresh("idp", "k1")
            .unwrap();
        Signals::new(&publisher).quota_spent().unwrap();
        assert_eq!(requests(&publisher), None);
        assert_eq!(publisher.store().meta_get(QUOTA_SPENT_KEY).unwrap(), None);

        // A follower's reports are written for the publisher, which acts on each once.
        let mut spent = publisher.usage().exhausted_generations();
        Signals::new(&follower)
            .request_key_refresh("idp", "k2")
            .unwrap();
        Signals::new(&follower).quota_spent().unwrap();
        assert_eq!(requests(&follower).unwrap()["idp"]["kid"], "k2");
        // A flood of unknown kids costs the store one request per issuer and interval.
        Signals::new(&follower)
            .request_key_refresh("idp", "k3")
            .unwrap();
        assert_eq!(requests(&follower).unwrap()["idp"]["kid"], "k2");
        Signals::new(&publisher).act().unwrap();
        assert!(spent.has_changed().unwrap(), "the snapshot is rebuilt");
        spent.borrow_and_update();
        let seen = publisher.replica().seen().key_refresh.get("idp").copied();
        assert!(seen.is_some(), "the refresh was acted on");
        Signals::new(&publisher).act().unwrap();
        assert!(!spent.has_changed().unwrap(), "acted on once");
        assert_eq!(
            publisher.replica().seen().key_refresh.get("idp").copied(),
            seen
        );
        // A follower that looks only remembers.
        let follower_spent = follower.usage().exhausted_generations();
        Signals::new(&follower).act().unwrap();
        assert!(!follower_spent.has_changed().unwrap());
    }

    #[tokio::test]
    async fn a_publisher_that_lost_its_lease_numbers_nothing_and_the_store_keeps_record_and_snapshot_together()
     {
        use crate::service::snapshot::{PUBLISHED_KEY, VersionRecord, publish};
        use portico_core::snapshot::Snapshot;

        let (state, _dir) = shared_state();
        renew_lease(&state);
        assert!(state.replica().is_publisher());
        crate::service::test_support::seed_orders(&state, "https://idp.example.com", "").await;
        let first = publish(&state).unwrap();
        let stored = |state: &AppState| {
            let record = VersionRecord::read(state.store()).unwrap().unwrap();
            let binary = state.store().meta_get(PUBLISHED_KEY).unwrap().unwrap();
            (record.version, Snapshot::decode(&binary).unwrap().version)
        };
        assert_eq!(stored(&state), (first.version, first.version));

        // Another replica took the lease (this one's renewal was late); this one does not know.
        let other = serde_json::to_vec(&Lease {
            holder: "another-run".to_owned(),
            expires_at_ms: u64::MAX,
        })
        .unwrap();
        state.store().meta_put(LEASE_KEY, &other).unwrap();
        state
            .policies()
            .create(
                &ops(),
                serde_json::from_value(serde_json::json!({
                    "id": "silver", "name": "Silver", "access_rights": [{"api": "orders"}]
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        assert!(publish(&state).is_err());
        assert_eq!(stored(&state), (first.version, first.version));
        assert_eq!(state.snapshots().current().unwrap().version, first.version);
        // At its next renewal it learns it lost the lease.
        renew_lease(&state);
        assert!(!state.replica().is_publisher());
        assert_eq!(state.replica().lease(), None);
    }

    #[test]
    fn a_replica_takes_a_free_or_expired_lease_renews_its_own_and_leaves_anothers() {
        let lease = |holder: &str, expires_at_ms| Lease {
            holder: holder.to_owned(),
            expires_at_ms,
        };
        let taken = lease("a", 1_000 + millis(LEASE));
        assert_eq!(next_lease(None, "a", 1_000), Some(taken.clone()));
        assert_eq!(
            next_lease(Some(&lease("a", 1_500)), "a", 1_000),
            Some(taken.clone())
        );
        assert_eq!(next_lease(Some(&lease("b", 1_001)), "a", 1_000), None);
        assert_eq!(
            next_lease(Some(&lease("b", 1_000)), "a", 1_000),
            Some(taken)
        );
    }
}
