//! Issuers' signing keys: fetched at start and whenever an issuer's configuration changes,
//! refreshed on a schedule that honours the IdP's `Cache-Control` within bounds, refreshed at
//! once when a filter meets an unknown `kid` (at most once per [`UNKNOWN_KID_INTERVAL`] per
//! issuer), and kept at their last good value on any failure.
//!
//! The [`KeyRegistry`] holds the keys and their status (shown to operators at
//! `/admin/v1/issuers/{id}`); [`run`] is the background task that fetches. The last good key
//! set of each issuer is also kept in the store's metadata, so a restart while the IdP is down
//! still publishes keys.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Notify, oneshot, watch};
use tokio::time::Instant;
use url::Url;
use utoipa::ToSchema;

use super::issuers::{Issuer, JwksSource};
use super::{AppState, monotonic_now};
use portico_core::jwk::{KeyName, KeySet};

use crate::config::JwksConfig;
use crate::idp::CallOutcome;
use crate::idp::client::IdpClient;
use crate::idp::jwks_fetch::{FetchedJwks, JwksFetchConfig, RefreshBounds};

/// An unknown `kid` triggers at most one refresh of an issuer's keys in this interval.
pub const UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(10);
/// The first retry delay after a failed fetch; it doubles up to the minimum refresh interval.
const FIRST_RETRY: Duration = Duration::from_secs(5);
const META_PREFIX: &str = "jwks/";

/// What operators see about an issuer's keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyStatus {
    /// The key set's URL (configured, or found by discovery); absent for inline keys.
    pub jwks_uri: Option<String>,
    /// The `kid` of every usable key (`null` for a key without one), in the IdP's order.
    pub key_ids: Vec<Option<String>>,
    /// Keys that were left out, with the reason.
    pub skipped_keys: Vec<SkippedKeyView>,
    /// When the keys were last fetched successfully (RFC 3339).
    pub last_success: Option<String>,
    /// When a fetch was last attempted (RFC 3339).
    pub last_attempt: Option<String>,
    /// Why the last attempt failed (cleared by a success).
    pub last_error: Option<String>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// When the next scheduled fetch happens (RFC 3339).
    pub next_refresh: Option<String>,
}

/// A key that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SkippedKeyView {
    /// Its position in the key set.
    pub index: usize,
    /// Its `kid`, if readable.
    pub kid: Option<String>,
    /// Why it was left out.
    pub reason: String,
}

/// The outcome of a filter's unknown-`kid` report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KidReportOutcome {
    /// A refresh of the issuer's keys has started.
    Refreshing,
    /// The key is already known (the filter's snapshot is about to catch up).
    AlreadyKnown,
    /// An unknown `kid` triggered a refresh less than 10 s ago; the next one is scheduled
    /// for when the interval has passed.
    Scheduled,
    /// The keys are given inline: there is nothing to fetch.
    NotFetched,
    /// No such issuer.
    UnknownIssuer,
}

/// One issuer's keys and fetch state.
#[derive(Debug)]
struct Entry {
    /// The configuration the keys come from; a change refetches.
    source: (String, JwksSource),
    keys: Vec<Value>,
    status: KeyStatus,
    due: Option<Instant>,
    /// When an unknown `kid` last triggered a refresh (those are rate-limited).
    last_kid_refresh: Option<Instant>,
    fetching: bool,
    waiters: Vec<oneshot::Sender<()>>,
}

/// The last good key set, as kept in the store's metadata.
#[derive(Debug, Serialize, Deserialize)]
struct Persisted {
    issuer: String,
    source: JwksSource,
    keys: Vec<Value>,
    fetched_at: Option<String>,
}

/// Every issuer's keys, shared by the fetch task, the snapshot builder and the HTTP layer.
#[derive(Debug)]
pub struct KeyRegistry {
    config: JwksConfig,
    entries: Mutex<HashMap<String, Entry>>,
    wake: Notify,
    generation: watch::Sender<u64>,
}

// === impl KeyRegistry ===

impl KeyRegistry {
    /// An empty registry.
    pub fn new(config: JwksConfig) -> Self {
        KeyRegistry {
            config,
            entries: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            generation: watch::channel(0).0,
        }
    }

    /// Changes whenever any issuer's usable keys change.
    pub fn generations(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The usable keys of an issuer (empty when none are known yet).
    pub fn keys(&self, issuer_id: &str) -> Vec<Value> {
        self.lock()
            .get(issuer_id)
            .map(|entry| entry.keys.clone())
            .unwrap_or_default()
    }

    /// The status of an issuer's keys, if the registry knows the issuer yet.
    pub fn status(&self, issuer_id: &str) -> Option<KeyStatus> {
        self.lock().get(issuer_id).map(|entry| entry.status.clone())
    }

    /// A filter met a token naming a key this issuer lacks, by `kid` or by thumbprint
    /// (`x5t#S256:<thumbprint>`, `x5t:<thumbprint>`, see [`KeyName`]): refresh at once, unless
    /// the key is known or the issuer was refreshed less than [`UNKNOWN_KID_INTERVAL`] ago.
    pub fn report_unknown_kid(&self, issuer_id: &str, kid: &str) -> KidReportOutcome {
        let outcome = {
            let mut entries = self.lock();
            let Some(entry) = entries.get_mut(issuer_id) else {
                return KidReportOutcome::UnknownIssuer;
            };
            let name = KeyName::from_text(kid);
            let known = KeySet::from_jwks(&entry.keys)
                .keys
                .iter()
                .any(|key| key.is_named(&name));
            let now = monotonic_now();
            let allowed_at = entry
                .last_kid_refresh
                .map_or(now, |at| at + UNKNOWN_KID_INTERVAL);
            if known {
                KidReportOutcome::AlreadyKnown
            } else if matches!(entry.source.1, JwksSource::Inline { .. }) {
                KidReportOutcome::NotFetched
            } else if entry.due.is_some_and(|due| due <= allowed_at) {
                // A fetch is already due by then (or under way): it will bring the key.
                KidReportOutcome::Scheduled
            } else {
                entry.due = Some(allowed_at.max(now));
                entry.last_kid_refresh = Some(allowed_at.max(now));
                if allowed_at <= now {
                    KidReportOutcome::Refreshing
                } else {
                    KidReportOutcome::Scheduled
                }
            }
        };
        if matches!(
            outcome,
            KidReportOutcome::Refreshing | KidReportOutcome::Scheduled
        ) {
            self.wake.notify_one();
        }
        outcome
    }

    /// Schedules a fetch of an issuer's keys now, without waiting for it (a forced refresh
    /// another replica passed on). Unknown issuers and inline keys are left alone.
    pub fn refresh_soon(&self, issuer_id: &str) {
        let scheduled = {
            let mut entries = self.lock();
            match entries.get_mut(issuer_id) {
                Some(entry) if !matches!(entry.source.1, JwksSource::Inline { .. }) => {
                    entry.due = Some(monotonic_now());
                    true
                }
                _ => false,
            }
        };
        if scheduled {
            self.wake.notify_one();
        }
    }

    /// Fetches an issuer's keys now (operators' forced refresh) and waits for the attempt to
    /// finish, at most a little longer than one fetch may take. `None`: no such issuer. Inline
    /// keys are never fetched: their status is answered at once.
    pub async fn refresh_now(&self, issuer_id: &str) -> Option<KeyStatus> {
        let done = {
            let mut entries = self.lock();
            let entry = entries.get_mut(issuer_id)?;
            if matches!(entry.source.1, JwksSource::Inline { .. }) {
                // Nothing to fetch: answering with the status never schedules a fetch.
                return Some(entry.status.clone());
            }
            let (sender, receiver) = oneshot::channel();
            entry.waiters.push(sender);
            entry.due = Some(monotonic_now());
            receiver
        };
        self.wake.notify_one();
        // Discovery and the key set are two fetches; leave room for both.
        let bound = self.config.fetch_timeout * 2 + Duration::from_secs(1);
        let _ = tokio::time::timeout(bound, done).await;
        self.status(issuer_id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // Entries are replaced whole under the lock; a panicking holder leaves no half state.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bump(&self) {
        self.generation.send_modify(|generation| *generation += 1);
    }
}

/// Fetches and refreshes issuers' keys until `shutdown` changes to `true`.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let registry = state.keys();
    let fetch_config = JwksFetchConfig {
        refresh: RefreshBounds {
            min: registry.config.refresh_min,
            max: registry.config.refresh_max,
            default: Duration::from_secs(3600)
                .clamp(registry.config.refresh_min, registry.config.refresh_max),
        },
        timeout: Some(registry.config.fetch_timeout),
        ..JwksFetchConfig::default()
    };
    let mut revisions = state.revisions();
    let mut publishing = state.replica().publisher_changes();
    loop {
        if let Err(error) = sync_issuers(&state) {
            tracing::warn!(%error, "cannot read the issuers; keeping the keys as they are");
        }
        let mut fetches = tokio::task::JoinSet::new();
        // Among replicas on a shared store, only the publisher fetches; the others load what it
        // keeps in the store (`follow`).
        let due = if state.replica().is_publisher() {
            take_due(registry, state.instant())
        } else {
            Vec::new()
        };
        for (id, source) in due {
            let plan = fetch_plan(&source.1, &source.0);
            let idp = state.idp_client();
            fetches.spawn(async move {
                let started = monotonic_now();
                let (outcome, call) = fetch(idp.as_ref(), plan, &fetch_config).await;
                let seconds = monotonic_now()
                    .saturating_duration_since(started)
                    .as_secs_f64();
                (id, source, outcome, call, seconds)
            });
        }
        while let Some(joined) = fetches.join_next().await {
            match joined {
                Ok((id, source, outcome, call, seconds)) => {
                    state.metrics().record_key_fetch(&id, call, seconds);
                    record(&state, &id, &source, outcome);
                }
                Err(error) => tracing::error!(%error, "a key fetch task failed"),
            }
        }
        let next_due = registry
            .lock()
            .values()
            .filter_map(|entry| entry.due)
            .min()
            .filter(|_| state.replica().is_publisher());
        let sleep = async {
            match next_due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = sleep => {}
            () = registry.wake.notified() => {}
            changed = revisions.changed() => if changed.is_err() { return },
            changed = publishing.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

/// On a replica that does not fetch (see [`super::replicas`]): takes each issuer's last good
/// keys from the store, where the publishing replica keeps them, when they are of the issuer's
/// current configuration and differ from the registry's.
pub(crate) fn follow(state: &AppState) {
    let registry = state.keys();
    let sources: Vec<(String, (String, JwksSource))> = registry
        .lock()
        .iter()
        .filter(|(_, entry)| !matches!(entry.source.1, JwksSource::Inline { .. }))
        .map(|(id, entry)| (id.clone(), entry.source.clone()))
        .collect();
    let mut changed = false;
    for (id, source) in sources {
        let persisted = match state.store().meta_get(&format!("{META_PREFIX}{id}")) {
            Ok(bytes) => bytes.and_then(|bytes| serde_json::from_slice::<Persisted>(&bytes).ok()),
            Err(error) => {
                tracing::warn!(issuer = %id, %error, "cannot read the issuer's keys from the store");
                continue;
            }
        };
        let Some(persisted) = persisted
            .filter(|persisted| persisted.issuer == source.0 && persisted.source == source.1)
        else {
            continue;
        };
        let mut entries = registry.lock();
        if let Some(entry) = entries.get_mut(&id)
            && entry.source == source
            && entry.keys != persisted.keys
        {
            let status = status_of(&persisted.keys, &[]);
            entry.status.key_ids = status.key_ids;
            entry.status.last_success = persisted.fetched_at;
            entry.keys = persisted.keys;
            changed = true;
        }
    }
    if changed {
        registry.bump();
    }
}

/// Where to fetch from: a JWKS URL directly, or a discovery URL and the issuer it must name.
#[derive(Debug, Clone)]
enum FetchPlan {
    Discovery { url: String, issuer: String },
    Direct(String),
}

fn fetch_plan(source: &JwksSource, issuer: &str) -> FetchPlan {
    match source {
        JwksSource::Discovery { url } => FetchPlan::Discovery {
            url: url.clone(),
            issuer: issuer.to_owned(),
        },
        JwksSource::JwksUri(uri) => FetchPlan::Direct(uri.clone()),
        // Inline keys are never fetched; `take_due` does not hand them out.
        JwksSource::Inline { .. } => FetchPlan::Direct(String::new()),
    }
}

/// A fetch attempt's result: the URL used and the key set, or why not.
type Outcome = (Option<String>, Result<FetchedJwks, String>);

/// Fetches the key set `plan` names: the result, and how the call ended for the metrics.
async fn fetch(
    idp: &dyn IdpClient,
    plan: FetchPlan,
    config: &JwksFetchConfig,
) -> (Outcome, CallOutcome) {
    let uri = match plan {
        FetchPlan::Direct(uri) => uri,
        FetchPlan::Discovery { url, issuer } => {
            let url = match Url::parse(&url) {
                Ok(url) => url,
                Err(error) => {
                    let reason = format!("discovery URL {url}: {error}");
                    return ((None, Err(reason)), CallOutcome::NotSent);
                }
            };
            match idp.metadata(&url, &issuer).await {
                Ok(metadata) => metadata.jwks_uri.to_string(),
                Err(error) => {
                    let reason = format!("discovery failed: {error}");
                    return ((None, Err(reason)), error.outcome());
                }
            }
        }
    };
    let url = match Url::parse(&uri) {
        Ok(url) => url,
        Err(error) => {
            let reason = format!("jwks_uri {uri}: {error}");
            return ((Some(uri), Err(reason)), CallOutcome::NotSent);
        }
    };
    match idp.jwks(&url, config).await {
        Ok(fetched) => ((Some(uri), Ok(fetched)), CallOutcome::Ok),
        Err(error) => ((Some(uri), Err(error.to_string())), error.outcome()),
    }
}

/// Brings the registry in line with the stored issuers: new or changed ones start from their
/// inline keys or the last good keys the store keeps for their configuration (and are fetched),
/// removed ones are forgotten. Errors: the store's; an issuer whose kept keys could not be read
/// is left out of the registry (no keys) until a later call reads them.
pub(crate) fn sync_issuers(state: &AppState) -> Result<(), crate::error::ApiError> {
    let issuers = state.issuers().all()?;
    let registry = state.keys();
    let mut changed = false;
    let mut failure = None;
    {
        let mut entries = registry.lock();
        let ids: HashSet<&str> = issuers.iter().map(|issuer| issuer.id.as_str()).collect();
        let before = entries.len();
        entries.retain(|id, _| ids.contains(id.as_str()));
        changed |= entries.len() != before;
        for issuer in &issuers {
            let source = (issuer.issuer.clone(), issuer.jwks.clone());
            if entries
                .get(&issuer.id)
                .is_some_and(|entry| entry.source == source)
            {
                continue;
            }
            match new_entry(state, issuer, source) {
                Ok(entry) => {
                    changed |= !entry.keys.is_empty()
                        || entries
                            .get(&issuer.id)
                            .is_some_and(|old| !old.keys.is_empty());
                    entries.insert(issuer.id.clone(), entry);
                }
                Err(error) => {
                    // Neither the old configuration's keys nor an entry without the kept ones:
                    // none, until a sync reads the store again.
                    changed |= entries
                        .remove(&issuer.id)
                        .is_some_and(|old| !old.keys.is_empty());
                    failure = Some(error);
                }
            }
        }
    }
    if changed {
        registry.bump();
    }
    failure.map_or(Ok(()), Err)
}

/// A registry entry for `issuer` as configured by `source`: its inline keys, or the last good
/// keys the store keeps for this very configuration. Errors: the store's, so that an entry is
/// never installed without the keys a failed read would have given it (the next sync reads
/// again).
fn new_entry(
    state: &AppState,
    issuer: &Issuer,
    source: (String, JwksSource),
) -> Result<Entry, crate::error::ApiError> {
    let mut entry = Entry {
        source,
        keys: Vec::new(),
        status: KeyStatus::default(),
        due: Some(state.instant()),
        last_kid_refresh: None,
        fetching: false,
        waiters: Vec::new(),
    };
    if let JwksSource::Inline { keys } = &issuer.jwks {
        let keys: Vec<Value> = keys.iter().cloned().map(Value::Object).collect();
        let set = portico_core::jwk::KeySet::from_jwks(&keys);
        let usable: HashSet<usize> = (0..keys.len())
            .filter(|index| !set.skipped.iter().any(|skipped| skipped.index == *index))
            .collect();
        entry.keys = keys
            .into_iter()
            .enumerate()
            .filter(|(index, _)| usable.contains(index))
            .map(|(_, key)| key)
            .collect();
        entry.status = status_of(&entry.keys, &set.skipped);
        entry.status.last_success = Some(state.now_rfc3339());
        entry.due = None;
        return Ok(entry);
    }
    // Start from the last good keys of this very configuration, if the store has them.
    let persisted = state
        .store()
        .meta_get(&format!("{META_PREFIX}{}", issuer.id))?
        .and_then(|bytes| serde_json::from_slice::<Persisted>(&bytes).ok())
        .filter(|persisted| persisted.issuer == issuer.issuer && persisted.source == issuer.jwks);
    if let Some(persisted) = persisted {
        entry.status = status_of(&persisted.keys, &[]);
        entry.status.last_success = persisted.fetched_at;
        entry.keys = persisted.keys;
    }
    Ok(entry)
}

fn status_of(keys: &[Value], skipped: &[portico_core::jwk::SkippedKey]) -> KeyStatus {
    KeyStatus {
        key_ids: keys
            .iter()
            .map(|key| key.get("kid").and_then(Value::as_str).map(str::to_owned))
            .collect(),
        skipped_keys: skipped
            .iter()
            .map(|skipped| SkippedKeyView {
                index: skipped.index,
                kid: skipped.kid.clone(),
                reason: skipped.reason.to_string(),
            })
            .collect(),
        ..KeyStatus::default()
    }
}

/// The issuers whose fetch is due now, marked as fetching: each id with the configuration
/// (issuer identifier and key source) the fetch is for.
fn take_due(registry: &KeyRegistry, now: Instant) -> Vec<(String, (String, JwksSource))> {
    let mut entries = registry.lock();
    entries
        .iter_mut()
        .filter(|(_, entry)| {
            !entry.fetching
                && entry.due.is_some_and(|due| due <= now)
                && !matches!(entry.source.1, JwksSource::Inline { .. })
        })
        .map(|(id, entry)| {
            entry.fetching = true;
            entry.due = None;
            (id.clone(), entry.source.clone())
        })
        .collect()
}

/// Records a fetch attempt for issuer `id` as configured by `fetched_for` (issuer identifier
/// and key source): new keys on success, the error (and the old keys) on failure. An attempt
/// for a configuration the issuer no longer has is dropped whole: its keys are not the
/// issuer's, and the replaced entry schedules its own fetch.
fn record(state: &AppState, id: &str, fetched_for: &(String, JwksSource), (uri, result): Outcome) {
    let registry = state.keys();
    let now_text = state.now_rfc3339();
    let mut persist = None;
    let mut keys_changed = false;
    {
        let mut entries = registry.lock();
        let Some(entry) = entries
            .get_mut(id)
            .filter(|entry| entry.source == *fetched_for)
        else {
            return;
        };
        entry.fetching = false;
        entry.status.last_attempt = Some(now_text.clone());
        entry.status.jwks_uri = uri;
        let delay = match result {
            Ok(fetched) => {
                keys_changed = fetched.keys != entry.keys;
                let skipped = status_of(&fetched.keys, &fetched.skipped);
                entry.status.key_ids = skipped.key_ids;
                entry.status.skipped_keys = skipped.skipped_keys;
                entry.status.last_success = Some(now_text.clone());
                entry.status.last_error = None;
                entry.status.consecutive_failures = 0;
                for skipped in &fetched.skipped {
                    tracing::warn!(issuer = %id, index = skipped.index, kid = ?skipped.kid, reason = %skipped.reason, "key skipped");
                }
                if keys_changed {
                    tracing::info!(issuer = %id, keys = ?entry.status.key_ids, "issuer keys changed");
                    persist = Some(Persisted {
                        issuer: entry.source.0.clone(),
                        source: entry.source.1.clone(),
                        keys: fetched.keys.clone(),
                        fetched_at: Some(now_text),
                    });
                }
                entry.keys = fetched.keys;
                fetched.refresh_after
            }
            Err(error) => {
                entry.status.consecutive_failures += 1;
                tracing::warn!(
                    issuer = %id,
                    failures = entry.status.consecutive_failures,
                    %error,
                    kept_keys = entry.keys.len(),
                    "fetching issuer keys failed; keeping the last good keys"
                );
                entry.status.last_error = Some(error);
                retry_delay(
                    entry.status.consecutive_failures,
                    registry.config.refresh_min,
                )
            }
        };
        // A refresh asked for while this one was under way still happens.
        let next = state.instant() + delay;
        entry.due = Some(entry.due.map_or(next, |asked| asked.min(next)));
        entry.status.next_refresh =
            Some(humantime::format_rfc3339_seconds(state.now() + delay).to_string());
        for waiter in entry.waiters.drain(..) {
            let _ = waiter.send(());
        }
    }
    if let Some(persisted) = persist {
        let stored = serde_json::to_vec(&persisted)
            .map_err(|error| error.to_string())
            .and_then(|bytes| {
                state
                    .store()
                    .meta_put(&format!("{META_PREFIX}{id}"), &bytes)
                    .map_err(|error| error.to_string())
            });
        if let Err(error) = stored {
            tracing::warn!(issuer = %id, %error, "cannot keep the new keys in the store");
        }
    }
    if keys_changed {
        registry.bump();
    }
}

/// After a failure: 5 s, then doubling, never beyond the minimum refresh interval.
fn retry_delay(failures: u32, refresh_min: Duration) -> Duration {
    FIRST_RETRY
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(refresh_min)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::idp::jwks_fetch::JwksFetchError;
    use crate::idp::test_support::FakeIdp;
    use crate::service::test_support::{create_remote_issuer, flaky_state_with, ops, state};

    const RSA_A_X5T: &str = "C31HeZXVpmJ45D69Le36tQdsWe4";

    async fn registry_with_fetched_issuer() -> (AppState, tempfile::TempDir) {
        let (state, dir) = state();
        create_remote_issuer(&state).await;
        sync_issuers(&state).unwrap();
        let due = take_due(state.keys(), monotonic_now());
        assert_eq!(due.len(), 1);
        let mut key = portico_core::testing::TestKey::rsa_a().public_jwk();
        // SHA-1 of testdata/keys/rsa-2048-a.cert.der (a thumbprint names the key too).
        key["x5t"] = serde_json::json!(RSA_A_X5T);
        let fetched = FetchedJwks {
            keys: vec![key],
            skipped: Vec::new(),
            refresh_after: Duration::from_secs(3600),
        };
        record(
            &state,
            "idp",
            &due[0].1,
            (Some("https://idp.example.com/jwks".to_owned()), Ok(fetched)),
        );
        (state, dir)
    }

    #[tokio::test]
    async fn an_unknown_kid_refreshes_at_once_then_at_most_every_ten_seconds() {
        let (state, _dir) = registry_with_fetched_issuer().await;
        let keys = state.keys();
        assert_eq!(
            keys.report_unknown_kid("idp", "rsa-a"),
            KidReportOutcome::AlreadyKnown
        );
        assert_eq!(
            keys.report_unknown_kid("nope", "k"),
            KidReportOutcome::UnknownIssuer
        );
        assert_eq!(
            keys.report_unknown_kid("idp", "new-1"),
            KidReportOutcome::Refreshing
        );
        let due = take_due(keys, monotonic_now());
        assert_eq!(due.len(), 1, "the refresh is due now");
        record(
            &state,
            "idp",
            &due[0].1,
            (None, Err("unreachable".to_owned())),
        );
        assert_eq!(
            keys.report_unknown_kid("idp", "new-2"),
            KidReportOutcome::Scheduled
        );
        assert!(
            take_due(keys, monotonic_now()).is_empty(),
            "not before ten seconds have passed"
        );
        let status = keys.status("idp").unwrap();
        assert_eq!(
            status.key_ids,
            [Some("rsa-a".to_owned())],
            "a failure keeps the keys"
        );
        assert_eq!(status.last_error.as_deref(), Some("unreachable"));
    }

    #[tokio::test]
    async fn a_thumbprint_report_is_known_by_the_keys_thumbprints() {
        let (state, _dir) = registry_with_fetched_issuer().await;
        let keys = state.keys();
        assert_eq!(
            keys.report_unknown_kid("idp", &format!("x5t:{RSA_A_X5T}")),
            KidReportOutcome::AlreadyKnown
        );
        assert_eq!(
            keys.report_unknown_kid(
                "idp",
                "x5t#S256:J0fO6brBUeILPacjR-e18dHtYlM_P0A-pZJ9g35SK_s"
            ),
            KidReportOutcome::Refreshing
        );
    }

    /// The configuration the registry holds for issuer `id`.
    fn source_of(state: &AppState, id: &str) -> (String, JwksSource) {
        state.keys().lock()[id].source.clone()
    }

    #[tokio::test]
    async fn a_fetch_for_a_configuration_the_issuer_no_longer_has_is_dropped() {
        let (state, _dir) = registry_with_fetched_issuer().await;
        state.keys().refresh_soon("idp");
        let due = take_due(state.keys(), monotonic_now());
        assert_eq!(due.len(), 1);
        // While the old key source is being fetched, the operator moves the issuer to inline
        // keys, and the registry follows the store.
        state
            .issuers()
            .update(
                &ops(),
                "idp",
                &crate::service::Precondition::Any,
                serde_json::from_value(serde_json::json!({
                    "issuer": "https://idp.example.com",
                    "jwks": {"inline": {"keys": [portico_core::testing::TestKey::rsa_b().public_jwk()]}}
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        sync_issuers(&state).unwrap();
        let inline = state.keys().keys("idp");
        let generations = state.keys().generations();
        let before = *generations.borrow();
        let stale = FetchedJwks {
            keys: vec![portico_core::testing::TestKey::rsa_a().public_jwk()],
            skipped: Vec::new(),
            refresh_after: Duration::from_secs(3600),
        };
        record(&state, "idp", &due[0].1, (None, Ok(stale)));
        assert_eq!(state.keys().keys("idp"), inline, "the inline keys stay");
        assert_eq!(*generations.borrow(), before);
        let status = state.keys().status("idp").unwrap();
        assert_eq!(
            status.key_ids,
            vec![Some(
                portico_core::testing::TestKey::rsa_b().kid().to_owned()
            )]
        );
        let kept: Persisted = serde_json::from_slice(
            &state
                .store()
                .meta_get(&format!("{META_PREFIX}idp"))
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            kept.source,
            JwksSource::JwksUri("https://idp.example.com/jwks".to_owned()),
            "nothing kept as the inline configuration's keys"
        );
    }

    #[tokio::test]
    async fn an_issuer_whose_kept_keys_cannot_be_read_is_synced_again_not_left_without_them() {
        let (state, store, _clock, _dir) = flaky_state_with(
            "http://portico.test",
            Arc::new(FakeIdp::default()) as Arc<dyn IdpClient>,
        );
        let source = JwksSource::JwksUri("https://idp.example.com/jwks".to_owned());
        let kept = Persisted {
            issuer: "https://idp.example.com".to_owned(),
            source: source.clone(),
            keys: vec![portico_core::testing::TestKey::rsa_a().public_jwk()],
            fetched_at: None,
        };
        state
            .store()
            .meta_put(
                &format!("{META_PREFIX}idp"),
                &serde_json::to_vec(&kept).unwrap(),
            )
            .unwrap();
        create_remote_issuer(&state).await;
        store.set_meta_unreadable(true);
        assert!(sync_issuers(&state).is_err());
        assert!(
            state.keys().status("idp").is_none(),
            "no entry without its keys"
        );
        store.set_meta_unreadable(false);
        sync_issuers(&state).unwrap();
        assert_eq!(state.keys().keys("idp"), kept.keys);
    }

    #[tokio::test]
    async fn a_key_change_bumps_the_generation_and_an_identical_set_does_not() {
        let (state, _dir) = registry_with_fetched_issuer().await;
        let generations = state.keys().generations();
        let before = *generations.borrow();
        let same = FetchedJwks {
            keys: state.keys().keys("idp"),
            skipped: Vec::new(),
            refresh_after: Duration::from_secs(3600),
        };
        record(&state, "idp", &source_of(&state, "idp"), (None, Ok(same)));
        assert_eq!(*generations.borrow(), before);
        let other = FetchedJwks {
            keys: vec![portico_core::testing::TestKey::rsa_b().public_jwk()],
            skipped: Vec::new(),
            refresh_after: Duration::from_secs(3600),
        };
        record(&state, "idp", &source_of(&state, "idp"), (None, Ok(other)));
        assert_eq!(*generations.borrow(), before + 1);
    }

    /// A state whose IdP is `idp`, with issuer `idp` fetching its keys from a `jwks_uri`, and
    /// the key task running (under paused time, it runs whenever the test waits).
    async fn running_with(
        idp: &Arc<FakeIdp>,
    ) -> (AppState, watch::Sender<bool>, tempfile::TempDir) {
        let (state, _store, _clock, dir) =
            flaky_state_with("http://portico.test", Arc::clone(idp) as Arc<dyn IdpClient>);
        create_remote_issuer(&state).await;
        let (stop, shutdown) = watch::channel(false);
        tokio::spawn(run(state.clone(), shutdown));
        (state, stop, dir)
    }

    fn fetched(refresh_after: Duration) -> Result<FetchedJwks, JwksFetchError> {
        Ok(FetchedJwks {
            keys: vec![portico_core::testing::TestKey::rsa_a().public_jwk()],
            skipped: Vec::new(),
            refresh_after,
        })
    }

    /// The seconds between consecutive fetches.
    fn gaps(fetches: &[Instant]) -> Vec<u64> {
        fetches
            .windows(2)
            .map(|pair| pair[1].saturating_duration_since(pair[0]).as_secs())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_refetched_when_due_and_failures_back_off_doubling_to_the_minimum_refresh() {
        let idp = Arc::new(FakeIdp::default());
        // The first fetch asks to be refreshed after 600 s; every later one fails.
        idp.answer_jwks(fetched(Duration::from_secs(600)));
        let (state, _stop, _dir) = running_with(&idp).await;
        let fetches = idp.jwks_fetched(9).await;
        // After 600 s it refreshes; then the retries wait 5 s and double up to the minimum
        // refresh interval (300 s by default), and stay there.
        assert_eq!(gaps(&fetches), [600, 5, 10, 20, 40, 80, 160, 300]);
        let status = state.keys().status("idp").unwrap();
        assert_eq!(
            status.key_ids,
            [Some("rsa-a".to_owned())],
            "failures keep the last good keys"
        );
        // Each fetch is counted by the issuer's Portico id and its outcome (the eighth at the
        // latest before the ninth began).
        let text = state.metrics().render();
        assert!(
            text.contains("portico_key_fetches_total{issuer=\"idp\",outcome=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "portico_key_fetch_duration_seconds_count{issuer=\"idp\",outcome=\"invalid_response\"}"
            ),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_kid_refetches_at_once_then_not_again_for_ten_seconds() {
        let idp = Arc::new(FakeIdp::default());
        for _ in 0..3 {
            idp.answer_jwks(fetched(Duration::from_secs(3600)));
        }
        let (state, _stop, _dir) = running_with(&idp).await;
        idp.jwks_fetched(1).await;
        assert_eq!(
            state.keys().report_unknown_kid("idp", "new-1"),
            KidReportOutcome::Refreshing
        );
        idp.jwks_fetched(2).await;
        assert_eq!(
            state.keys().report_unknown_kid("idp", "new-2"),
            KidReportOutcome::Scheduled
        );
        let fetches = idp.jwks_fetched(3).await;
        assert_eq!(gaps(&fetches), [0, UNKNOWN_KID_INTERVAL.as_secs()]);
    }

    #[test]
    fn retries_double_from_five_seconds_up_to_the_minimum_refresh() {
        let min = Duration::from_secs(300);
        let delays: Vec<u64> = (1..=8).map(|n| retry_delay(n, min).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(retry_delay(u32::MAX, min), min);
    }
}
