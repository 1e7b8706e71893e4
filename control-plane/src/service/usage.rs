//! Usage across the fleet: the filters' usage reports (`POST /v1/usage`, see
//! [`portico_core::usage`]) counted once each, per OAuth client and hour (for
//! `GET /admin/v1/oauth-clients/{id}/usage` and the portal) and per quota counter (for the
//! quotas spent across the fleet, published in the snapshot as `exhausted_quotas`).
//!
//! - **Counted once.** A report is `(reporter, sequence)`; a filter VM sends one at a time and
//!   sends it again, unchanged, until it is acknowledged. The last sequence counted per
//!   reporter (of each data-plane token: one token's holder cannot touch another's
//!   reporters) is written in the same transaction as the counts, so a report sent again (an
//!   answer lost, a control plane restarted) is acknowledged without being counted again.
//! - **Quotas.** A counter's window starts with the first report that charges it and lasts
//!   the policy's `renewal_seconds`; when its count reaches the policy's `max`, the quota is
//!   spent until the window ends, and the next snapshot lists it. A policy without a quota (or
//!   deleted) counts nothing.
//! - **Hours** are those in which the reports arrived (at most about 1 s after the requests).
//!   Hours older than [`USAGE_RETENTION`], reporters silent for as long, and windows that
//!   ended (or of a policy without a quota now) are purged at most once an hour.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use portico_core::snapshot::{ExhaustedQuota, PolicySpec, QuotaSpec};
use portico_core::usage::{
    MAX_BATCH_ENTRIES, MAX_SUBJECT_BYTES, UsageReport, is_reportable_subject,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};
use utoipa::ToSchema;

use super::AppState;
use super::oauth_clients::unix_seconds;
use crate::error::ApiError;
use crate::store::{Order, Tree, Write};

/// How long usage per hour is kept.
pub const USAGE_RETENTION: Duration = Duration::from_secs(31 * 24 * 3600);
/// How far back `GET …/usage` looks.
pub const USAGE_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);
/// The longest reporter id, client id or subject in a report, in bytes.
const MAX_ID_BYTES: usize = 300;
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// How many times a report is counted again from what another replica wrote meanwhile
/// before it is answered 503 (the filter sends it again).
const COUNT_ATTEMPTS: usize = 8;

/// How far back the rate-limited traffic of each filter instance counts for its share.
pub const SHARE_WINDOW: Duration = Duration::from_secs(5);
/// How old an instance's own reported traffic must be before it raises that instance's share:
/// long enough for every instance's report of the same moment to have arrived (reports leave
/// at most every second). The others' traffic counts at once, so that the instance that
/// happens to report first in a burst never takes more than its part: shares computed this
/// way add up to at most the whole.
pub const SHARE_SETTLE: Duration = Duration::from_secs(2);

/// The usage service's shared state: one report counted at a time (with the time of the last
/// purge), the generation of the set of spent quotas (the snapshot is rebuilt when it moves),
/// and each filter instance's recent rate-limited traffic and last share (in memory: after a
/// restart, shares start equal and follow the traffic again within [`SHARE_WINDOW`]).
#[derive(Debug)]
pub struct UsageRuntime {
    lock: Mutex<u64>,
    exhausted: watch::Sender<u64>,
    traffic: std::sync::Mutex<Traffic>,
}

/// Per filter instance: its reports' rate-limited requests (second, count) within
/// [`SHARE_WINDOW`], and the share last answered.
#[derive(Debug, Default)]
struct Traffic {
    recent: HashMap<String, VecDeque<(u64, u64)>>,
    shares: HashMap<String, u32>,
}

impl Default for UsageRuntime {
    fn default() -> Self {
        UsageRuntime {
            lock: Mutex::new(0),
            exhausted: watch::channel(0).0,
            traffic: std::sync::Mutex::new(Traffic::default()),
        }
    }
}

/// The last report counted from one reporter.
#[derive(Debug, Serialize, Deserialize)]
struct ReporterState {
    sequence: u64,
    seen_at: u64,
}

/// A quota counter's window.
#[derive(Debug, Serialize, Deserialize)]
struct QuotaWindow {
    started_at: u64,
    count: u64,
}

/// The requests of one period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageCounts {
    /// The period's start (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub start: String,
    /// Requests let through.
    pub allowed: u64,
    /// Requests refused, by `error` code.
    pub refused: BTreeMap<String, u64>,
}

/// A client's usage over the last 30 days: the hours and days with any request, oldest
/// first. Hours and days are UTC.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct ClientUsageView {
    /// The client's record id.
    pub client: String,
    /// Per hour.
    pub hourly: Vec<UsageCounts>,
    /// Per day.
    pub daily: Vec<UsageCounts>,
    /// All 30 days together (`start` absent).
    pub total: UsageCounts,
}

/// What became of a report, and the reporting instance's share of the rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// Counted now, or before.
    pub outcome: ReportOutcome,
    /// The instance's share of every rate limit, in thousandths, when the report named its
    /// instance.
    pub rate_share: Option<u32>,
}

/// What became of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportOutcome {
    /// Counted now.
    Counted,
    /// Counted before (a report sent again): not counted twice.
    Duplicate,
}

impl ReportOutcome {
    /// The outcome as a metric label.
    pub fn label(self) -> &'static str {
        match self {
            ReportOutcome::Counted => "counted",
            ReportOutcome::Duplicate => "duplicate",
        }
    }
}

/// Usage.
#[derive(Debug, Clone, Copy)]
pub struct Usage<'a> {
    state: &'a AppState,
}

fn hour_key(client: &str, hour: u64) -> Vec<u8> {
    let mut key = client.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&hour.to_be_bytes());
    key
}

/// A reporter's key: its data-plane token's id, then the reporter (which has no NUL), so that a
/// holder of one token cannot name another token's reporter and have its reports taken as
/// duplicates.
fn reporter_key(token: &str, reporter: &str) -> Vec<u8> {
    let mut key = token.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(reporter.as_bytes());
    key
}

fn quota_key(policy: &str, subject: &str) -> Vec<u8> {
    let mut key = policy.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(subject.as_bytes());
    key
}

/// The policy and the subject of a [`quota_key`].
fn split_quota_key(key: &[u8]) -> Option<(std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)> {
    let split = key.iter().position(|byte| *byte == 0)?;
    Some((
        String::from_utf8_lossy(&key[..split]),
        String::from_utf8_lossy(&key[split + 1..]),
    ))
}

/// The policies' quotas read once per scan of the quota counters (one policy has many).
#[derive(Debug, Default)]
struct QuotaCache(BTreeMap<String, Option<QuotaSpec>>);

impl QuotaCache {
    fn get(&mut self, usage: &Usage<'_>, policy: &str) -> Result<Option<&QuotaSpec>, ApiError> {
        if !self.0.contains_key(policy) {
            let spec = usage.quota_of(policy)?;
            self.0.insert(policy.to_owned(), spec);
        }
        Ok(self.0.get(policy).and_then(Option::as_ref))
    }
}

fn encode(value: &impl Serialize) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value).map_err(|error| ApiError::Internal(error.into()))
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|error| ApiError::Internal(error.into()))
}

fn rfc3339(seconds: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(seconds))
        .to_string()
}

/// Checks a report's shape: 400 `invalid_request` naming the field at fault.
fn check(report: &UsageReport) -> Result<(), ApiError> {
    let id = |field: &str, value: &str| {
        if value.is_empty()
            || value.len() > MAX_ID_BYTES
            || !value.bytes().all(|b| b.is_ascii_graphic())
        {
            Err(ApiError::invalid(
                field,
                format!("must be 1 to {MAX_ID_BYTES} visible ASCII characters"),
            ))
        } else {
            Ok(())
        }
    };
    id("reporter", &report.reporter)?;
    if let Some(instance) = &report.instance {
        id("instance", instance)?;
    }
    if report.sequence == 0 {
        return Err(ApiError::invalid("sequence", "sequences start at 1"));
    }
    if report.clients.len() + report.quotas.len() > MAX_BATCH_ENTRIES {
        return Err(ApiError::invalid(
            "clients",
            format!("a report holds at most {MAX_BATCH_ENTRIES} clients and quotas together"),
        ));
    }
    // Each entry is read and written once per report: a second one would overwrite the first.
    let mut seen = std::collections::BTreeSet::new();
    for client in &report.clients {
        id("clients[].client", &client.client)?;
        if !seen.insert(client.client.as_str()) {
            return Err(ApiError::invalid(
                "clients[].client",
                "names a client twice",
            ));
        }
        if client.refused.len() > 64 {
            return Err(ApiError::invalid("clients[].refused", "at most 64 reasons"));
        }
        for code in client.refused.keys() {
            id("clients[].refused", code)?;
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for quota in &report.quotas {
        id("quotas[].policy", &quota.policy)?;
        if !seen.insert((quota.policy.as_str(), quota.subject.as_str())) {
            return Err(ApiError::invalid(
                "quotas[]",
                "names a policy and subject twice",
            ));
        }
        if !is_reportable_subject(&quota.subject) {
            return Err(ApiError::invalid(
                "quotas[].subject",
                format!("must be 1 to {MAX_SUBJECT_BYTES} bytes without control characters"),
            ));
        }
    }
    Ok(())
}

impl<'a> Usage<'a> {
    pub(crate) fn new(state: &'a AppState) -> Self {
        Usage { state }
    }

    /// The current quota of policy `id`, if it exists and has one.
    fn quota_of(&self, id: &str) -> Result<Option<QuotaSpec>, ApiError> {
        Ok(self
            .state
            .load::<PolicySpec>(id)?
            .and_then(|policy| policy.value.quota))
    }

    /// Notes that another replica counted a report that spent a quota (the snapshot is
    /// rebuilt, as after one counted here).
    pub fn note_spent_elsewhere(&self) {
        self.state
            .usage_runtime()
            .exhausted
            .send_modify(|generation| *generation += 1);
    }

    /// A receiver that changes whenever the set of spent quotas may have changed.
    pub fn exhausted_generations(&self) -> watch::Receiver<u64> {
        self.state.usage_runtime().exhausted.subscribe()
    }

    /// Counts `report`, sent with the data-plane token `token` (its id), once (see the module
    /// docs), and answers the reporting instance's share of the rate limits
    /// ([`Usage::rate_share`]). Errors: 400 `invalid_request` for a bad field; the store's
    /// (503 `storage_unavailable` on a full disk: the filter sends the report again).
    pub async fn record(&self, token: &str, report: &UsageReport) -> Result<Recorded, ApiError> {
        let outcome = self.count(token, report).await?;
        let rate_share = report.instance.as_deref().map(|instance| {
            let traffic = match outcome {
                ReportOutcome::Counted => report.rate_requests,
                ReportOutcome::Duplicate => 0,
            };
            self.rate_share(instance, traffic)
        });
        Ok(Recorded {
            outcome,
            rate_share,
        })
    }

    /// Adds `requests` rate-limited requests of filter `instance` now, and answers its share of
    /// every rate limit, in thousandths, by core's [`portico_core::rate_limit::rate_share`]:
    /// from its own traffic reported between [`SHARE_SETTLE`] and [`SHARE_SETTLE`] +
    /// [`SHARE_WINDOW`] ago, and the traffic every other live instance (those polling for
    /// snapshots, and those that reported recently) reported in the last [`SHARE_WINDOW`]
    /// (spans of equal length, so that equal traffic gives equal shares).
    pub fn rate_share(&self, instance: &str, requests: u64) -> u32 {
        let now = unix_seconds(self.state.now());
        let settled = now.saturating_sub(SHARE_SETTLE.as_secs());
        let since = settled.saturating_sub(SHARE_WINDOW.as_secs());
        let connected: Vec<String> = self
            .state
            .snapshots()
            .filters()
            .into_iter()
            .filter_map(|filter| filter.instance)
            .collect();
        let mut traffic = self
            .state
            .usage_runtime()
            .traffic
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let recent = traffic.recent.entry(instance.to_owned()).or_default();
        recent.push_back((now, requests));
        for entries in traffic.recent.values_mut() {
            while entries.front().is_some_and(|(at, _)| *at < since) {
                entries.pop_front();
            }
        }
        traffic.recent.retain(|_, entries| !entries.is_empty());
        let mut live: Vec<String> = connected;
        live.extend(traffic.recent.keys().cloned());
        live.push(instance.to_owned());
        live.sort_unstable();
        live.dedup();
        // Spans of equal length, so that equal traffic gives equal shares: the own one ends
        // `SHARE_SETTLE` ago, the others' now.
        let window = SHARE_WINDOW.as_secs();
        let sum = |id: &str| {
            let until = if id == instance { settled } else { now };
            let from = until.saturating_sub(window);
            traffic.recent.get(id).map_or(0, |entries| {
                entries
                    .iter()
                    .filter(|(at, _)| (from..=until).contains(at))
                    .fold(0_u64, |total, (_, n)| total.saturating_add(*n))
            })
        };
        let all: Vec<u64> = live.iter().map(|id| sum(id)).collect();
        let share = portico_core::rate_limit::rate_share(sum(instance), &all);
        traffic.shares.insert(instance.to_owned(), share);
        traffic.shares.retain(|id, _| live.contains(id));
        share
    }

    /// The share of the rate limits last answered to filter `instance`, in thousandths.
    pub fn last_rate_share(&self, instance: &str) -> Option<u32> {
        self.state
            .usage_runtime()
            .traffic
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .shares
            .get(instance)
            .copied()
    }

    async fn count(&self, token: &str, report: &UsageReport) -> Result<ReportOutcome, ApiError> {
        check(report)?;
        let runtime = self.state.usage_runtime();
        let mut last_purge = runtime.lock.lock().await;
        let store = self.state.store();
        let now = unix_seconds(self.state.now());
        let reporter_key = reporter_key(token, &report.reporter);
        // Another replica may count into the same keys at once (this lock is this process's):
        // the writes land only if every key read still holds what was read, else the report is
        // counted again from what the other wrote.
        let mut counted = None;
        for _ in 0..COUNT_ATTEMPTS {
            let mut expected = Vec::new();
            let mut read = |tree: Tree, key: &[u8]| -> Result<Option<Vec<u8>>, ApiError> {
                let value = store.get(tree, key)?;
                expected.push(Write {
                    tree,
                    key: key.to_vec(),
                    value: value.clone(),
                });
                Ok(value)
            };
            if let Some(bytes) = read(Tree::UsageReporters, &reporter_key)? {
                let seen: ReporterState = decode(&bytes)?;
                if report.sequence <= seen.sequence {
                    return Ok(ReportOutcome::Duplicate);
                }
            }
            let mut writes = Vec::new();
            let hour = now / HOUR * HOUR;
            for client in &report.clients {
                let key = hour_key(&client.client, hour);
                let mut counts: UsageCounts = match read(Tree::UsageHours, &key)? {
                    Some(bytes) => decode(&bytes)?,
                    None => UsageCounts::default(),
                };
                counts.allowed = counts.allowed.saturating_add(client.allowed);
                for (code, n) in &client.refused {
                    let total = counts.refused.entry(code.clone()).or_default();
                    *total = total.saturating_add(*n);
                }
                writes.push(Write::put(Tree::UsageHours, key, encode(&counts)?));
            }
            let mut newly_spent = false;
            for quota in &report.quotas {
                let Some(spec) = self.quota_of(&quota.policy)? else {
                    continue;
                };
                let key = quota_key(&quota.policy, &quota.subject);
                let mut window = match read(Tree::QuotaCounters, &key)? {
                    Some(bytes) => decode::<QuotaWindow>(&bytes)?,
                    None => QuotaWindow {
                        started_at: now,
                        count: 0,
                    },
                };
                if now >= window.started_at.saturating_add(spec.renewal_seconds) {
                    window = QuotaWindow {
                        started_at: now,
                        count: 0,
                    };
                }
                let before = window.count;
                window.count = window.count.saturating_add(quota.requests);
                newly_spent |= before < spec.max && window.count >= spec.max;
                writes.push(Write::put(Tree::QuotaCounters, key, encode(&window)?));
            }
            writes.push(Write::put(
                Tree::UsageReporters,
                reporter_key.clone(),
                encode(&ReporterState {
                    sequence: report.sequence,
                    seen_at: now,
                })?,
            ));
            let purging = now >= *last_purge + HOUR;
            if purging {
                // Removals first: a counter or reporter this report writes is kept as written.
                let mut purge = self.expired(now)?;
                purge.append(&mut writes);
                writes = purge;
            }
            if store.write_unversioned_if(&expected, &writes)? {
                if purging {
                    *last_purge = now;
                }
                counted = Some(newly_spent);
                break;
            }
        }
        let Some(newly_spent) = counted else {
            return Err(ApiError::Store(crate::store::StoreError::Unavailable(
                format!(
                    "other replicas kept counting into the same keys during {COUNT_ATTEMPTS} attempts; \
                 the filter sends the report again"
                ),
            )));
        };
        drop(last_purge);
        if newly_spent {
            runtime.exhausted.send_modify(|generation| *generation += 1);
            if let Err(error) = super::replicas::Signals::new(self.state).quota_spent() {
                tracing::warn!(%error, "cannot tell the publishing replica that a quota is spent");
            }
        }
        Ok(ReportOutcome::Counted)
    }

    /// The removals of what is past keeping at `now` (seconds since the Unix epoch).
    fn expired(&self, now: u64) -> Result<Vec<Write>, ApiError> {
        let store = self.state.store();
        let horizon = now.saturating_sub(USAGE_RETENTION.as_secs());
        let mut removals = Vec::new();
        for entry in store.scan(Tree::UsageHours, None, Order::Ascending) {
            let (key, _) = entry?;
            let hour = key
                .len()
                .checked_sub(8)
                .and_then(|at| key.get(at..))
                .and_then(|bytes| bytes.try_into().ok())
                .map_or(0, u64::from_be_bytes);
            if hour < horizon {
                removals.push(Write::remove(Tree::UsageHours, key));
            }
        }
        for entry in store.scan(Tree::UsageReporters, None, Order::Ascending) {
            let (key, bytes) = entry?;
            if decode::<ReporterState>(&bytes)?.seen_at < horizon {
                removals.push(Write::remove(Tree::UsageReporters, key));
            }
        }
        let mut quotas = QuotaCache::default();
        for entry in store.scan(Tree::QuotaCounters, None, Order::Ascending) {
            let (key, bytes) = entry?;
            // A window that ended, or of a policy without a quota now, counts nothing: the
            // next report that charges it starts a new one.
            let window: QuotaWindow = decode(&bytes)?;
            let spec = match split_quota_key(&key) {
                Some((policy, _)) => quotas.get(self, &policy)?,
                None => None,
            };
            if spec.is_none_or(|spec| now >= window.started_at.saturating_add(spec.renewal_seconds))
            {
                removals.push(Write::remove(Tree::QuotaCounters, key));
            }
        }
        Ok(removals)
    }

    /// The quotas spent across the fleet at `now`, for the snapshot: every counter whose count
    /// reached its policy's current `max` in a window that has not ended. Errors: the store's.
    pub fn exhausted(&self, now: std::time::SystemTime) -> Result<Vec<ExhaustedQuota>, ApiError> {
        let now = unix_seconds(now);
        let mut spent = Vec::new();
        let mut quotas = QuotaCache::default();
        for entry in self
            .state
            .store()
            .scan(Tree::QuotaCounters, None, Order::Ascending)
        {
            let (key, bytes) = entry?;
            let Some((policy, subject)) = split_quota_key(&key) else {
                continue;
            };
            let Some(spec) = quotas.get(self, &policy)? else {
                continue;
            };
            let window: QuotaWindow = decode(&bytes)?;
            let until = window.started_at.saturating_add(spec.renewal_seconds);
            if window.count >= spec.max && now < until {
                spent.push(ExhaustedQuota {
                    policy: policy.into_owned(),
                    subject: subject.into_owned(),
                    until,
                });
            }
        }
        Ok(spent)
    }

    /// The usage of the client with record id `client` over the last 30 days (nothing for a
    /// client without requests). Errors: the store's.
    pub fn of_client(&self, client: &str) -> Result<ClientUsageView, ApiError> {
        let now = unix_seconds(self.state.now());
        let since = now.saturating_sub(USAGE_WINDOW.as_secs()) / HOUR * HOUR;
        let mut view = ClientUsageView {
            client: client.to_owned(),
            ..ClientUsageView::default()
        };
        let mut prefix = client.as_bytes().to_vec();
        prefix.push(0);
        let start = hour_key(client, since);
        let mut days: BTreeMap<u64, UsageCounts> = BTreeMap::new();
        let after = start.clone();
        let first = self.state.store().get(Tree::UsageHours, &start)?;
        let entries = first
            .map(|bytes| Ok((start.clone(), bytes)))
            .into_iter()
            .chain(
                self.state
                    .store()
                    .scan(Tree::UsageHours, Some(&after), Order::Ascending),
            );
        for entry in entries {
            let (key, bytes) = entry?;
            if !key.starts_with(&prefix) || key.len() != prefix.len() + 8 {
                break;
            }
            let hour = key[prefix.len()..].try_into().map_or(0, u64::from_be_bytes);
            let mut counts: UsageCounts = decode(&bytes)?;
            let day = days.entry(hour / DAY * DAY).or_default();
            add(day, &counts);
            add(&mut view.total, &counts);
            counts.start = rfc3339(hour);
            view.hourly.push(counts);
        }
        view.daily = days
            .into_iter()
            .map(|(day, mut counts)| {
                counts.start = rfc3339(day);
                counts
            })
            .collect();
        Ok(view)
    }
}

impl ClientUsageView {
    /// The last `days` days up to today (UTC) at `now` (seconds since the Unix epoch), oldest
    /// first, days without requests included (zero), for the portal's chart.
    pub fn last_days(&self, now: u64, days: u64) -> Vec<UsageCounts> {
        let today = now / DAY * DAY;
        (0..days)
            .rev()
            .map(|back| {
                let start = rfc3339(today.saturating_sub(back * DAY));
                self.daily
                    .iter()
                    .find(|day| day.start == start)
                    .cloned()
                    .unwrap_or(UsageCounts {
                        start,
                        ..UsageCounts::default()
                    })
            })
            .collect()
    }
}

fn add(into: &mut UsageCounts, counts: &UsageCounts) {
    into.allowed = into.allowed.saturating_add(counts.allowed);
    for (code, n) in &counts.refused {
        let total = into.refused.entry(code.clone()).or_default();
        *total = total.saturating_add(*n);
    }
}

#[cfg(test)]
mod tests;
