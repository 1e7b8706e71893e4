//! Usage reports: what one filter VM let through and refused, sent to the control plane in
//! batches so that quotas are counted across the whole fleet and developers see their usage.
//!
//! The gateway records every decision made for a known caller ([`UsageRecorder`]): per
//! Portico OAuth client (the binding's `client`), the requests allowed and refused by reason
//! code; per quota counter (policy and subject, as [`crate::decision`] keys them), the requests
//! charged. At most every [`REPORT_INTERVAL`], or as soon as [`MAX_BATCH_ENTRIES`] entries
//! wait, the pending counts become one [`UsageReport`] with the next sequence number of this
//! reporter. One report is in flight at a time; it is sent again, unchanged, until the
//! control plane acknowledges it, so that `(reporter, sequence)` identifies a batch and the
//! control plane counts each batch once, whatever is retried or restarted.
//!
//! Recording is bounded: beyond [`MAX_PENDING_ENTRIES`] distinct entries waiting (a control
//! plane unreachable for long), new entries are dropped and counted in
//! [`UsageRecorder::dropped`].

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The longest time counts wait before they are reported.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// The most entries (clients plus quota counters) in one report.
pub const MAX_BATCH_ENTRIES: usize = 1_000;
/// The most entries waiting to be reported; more are dropped.
pub const MAX_PENDING_ENTRIES: usize = 20_000;
/// The longest time between two reports, empty ones included: how soon an idle VM learns its
/// new share of the rate limits when the fleet changes.
pub const SHARE_REFRESH: Duration = Duration::from_secs(3);
/// The longest quota subject a report names, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 300;

/// Whether a report may name the quota subject `subject` ([`QuotaUsage::subject`]): 1 to
/// [`MAX_SUBJECT_BYTES`] bytes without control characters. An identity is any string claim
/// (spaces and non-ASCII letters included), so this is the one rule the recorder and the
/// control plane share; a subject outside it is counted by each Envoy alone.
pub fn is_reportable_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject.len() <= MAX_SUBJECT_BYTES
        && !subject.chars().any(char::is_control)
}

/// One batch of usage from one filter VM (`POST /v1/usage`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageReport {
    /// The reporting VM: `vm-` and the 16 hex digits of the VM's random seed, new for each
    /// VM start. 1 to 300 visible ASCII characters.
    pub reporter: String,
    /// 1 for the reporter's first batch, then one more for each; a batch sent again keeps its
    /// number.
    pub sequence: u64,
    /// The Envoy (filter instance id, shared by its VMs) the reporter runs in: rate-limit
    /// shares are per instance.
    #[serde(default)]
    pub instance: Option<String>,
    /// Requests charged to a rate limit (let through or refused) since the last report: the
    /// traffic that the instance's share of the rate limits follows.
    #[serde(default)]
    pub rate_requests: u64,
    /// Requests per Portico OAuth client.
    #[serde(default)]
    pub clients: Vec<ClientUsage>,
    /// Requests charged per quota counter.
    #[serde(default)]
    pub quotas: Vec<QuotaUsage>,
}

/// The requests of one Portico OAuth client in a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientUsage {
    /// The client's record id (`cli_…`, the binding's `client`).
    pub client: String,
    /// Requests let through.
    #[serde(default)]
    pub allowed: u64,
    /// Requests refused, by `error` code (`rate_limited`, `quota_exceeded`, `access_denied`,
    /// …; see `docs/errors.md`).
    #[serde(default)]
    pub refused: BTreeMap<String, u64>,
}

/// The requests charged to one quota counter in a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuotaUsage {
    /// The policy whose quota was charged.
    pub policy: String,
    /// Whom it counts: `d:<developer id>`, `c:<client record id>` or `i:<identity>`.
    pub subject: String,
    /// Requests charged.
    pub requests: u64,
}

/// Counts of one client waiting to be reported.
#[derive(Debug, Default)]
struct ClientCounts {
    allowed: u64,
    refused: BTreeMap<&'static str, u64>,
}

/// A report not yet acknowledged: the host's call token while a sending is under way (since
/// `sent_at`), else when to send it (again).
#[derive(Debug)]
struct InFlight {
    report: UsageReport,
    token: Option<u32>,
    sent_at: Duration,
    send_at: Duration,
}

/// The usage of one filter VM, recorded per decision and handed out as reports.
#[derive(Debug)]
pub struct UsageRecorder {
    reporter: String,
    instance: Option<String>,
    rate_requests: u64,
    next_sequence: u64,
    clients: HashMap<Box<str>, ClientCounts>,
    quotas: HashMap<(Box<str>, Box<str>), u64>,
    in_flight: Option<InFlight>,
    last_report: Duration,
    dropped: u64,
}

impl UsageRecorder {
    /// A recorder for the VM `reporter` (see [`UsageReport::reporter`]).
    pub fn new(reporter: String) -> Self {
        UsageRecorder {
            reporter,
            instance: None,
            rate_requests: 0,
            next_sequence: 1,
            clients: HashMap::new(),
            quotas: HashMap::new(),
            in_flight: None,
            last_report: Duration::ZERO,
            dropped: 0,
        }
    }

    /// Entries dropped because too many were waiting.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn pending(&self) -> usize {
        self.clients.len() + self.quotas.len()
    }

    /// The Envoy instance this VM runs in, for the next reports.
    pub fn set_instance(&mut self, instance: &str) {
        if self.instance.as_deref() != Some(instance) {
            self.instance = Some(instance.to_owned());
        }
    }

    /// Records one request charged to a rate limit.
    pub fn rate_charged(&mut self) {
        self.rate_requests = self.rate_requests.saturating_add(1);
    }

    fn client(&mut self, client: &str) -> Option<&mut ClientCounts> {
        if !self.clients.contains_key(client) {
            if self.pending() >= MAX_PENDING_ENTRIES {
                self.dropped += 1;
                return None;
            }
            self.clients
                .insert(Box::from(client), ClientCounts::default());
        }
        self.clients.get_mut(client)
    }

    /// Records a request of `client` (a record id) let through.
    pub fn allowed(&mut self, client: &str) {
        if let Some(counts) = self.client(client) {
            counts.allowed += 1;
        }
    }

    /// Records a request of `client` refused with `code`.
    pub fn refused(&mut self, client: &str, code: &'static str) {
        if let Some(counts) = self.client(client) {
            *counts.refused.entry(code).or_default() += 1;
        }
    }

    /// Records one request charged to the quota of `policy` for `subject`; a subject a report
    /// cannot name ([`is_reportable_subject`]) is dropped.
    pub fn quota_charged(&mut self, policy: &str, subject: &str) {
        if !is_reportable_subject(subject) {
            self.dropped += 1;
            return;
        }
        let key = (Box::from(policy), Box::from(subject));
        if let Some(requests) = self.quotas.get_mut(&key) {
            *requests += 1;
        } else if self.pending() >= MAX_PENDING_ENTRIES {
            self.dropped += 1;
        } else {
            self.quotas.insert(key, 1);
        }
    }

    /// The report to send at `now` (time since the Unix epoch), if one is due: the
    /// unacknowledged one, [`REPORT_INTERVAL`] after its sending failed or `timeout` after it
    /// was sent without an answer; else a new one when counts wait and [`REPORT_INTERVAL`] has
    /// passed since the last (or [`MAX_BATCH_ENTRIES`] wait), or, empty, when
    /// [`SHARE_REFRESH`] has passed (the first one at once), so that the VM learns its share of
    /// the rate limits. Pass the host's call token to [`UsageRecorder::sent`].
    pub fn due(&mut self, now: Duration, timeout: Duration) -> Option<&UsageReport> {
        if let Some(in_flight) = &self.in_flight {
            let ready = match in_flight.token {
                None => now >= in_flight.send_at,
                Some(_) => now >= in_flight.sent_at + timeout,
            };
            return if ready {
                self.in_flight.as_ref().map(|in_flight| &in_flight.report)
            } else {
                None
            };
        }
        let pending = self.pending() + usize::from(self.rate_requests > 0);
        let counts_due = pending > 0
            && (pending >= MAX_BATCH_ENTRIES || now >= self.last_report + REPORT_INTERVAL);
        let refresh_due = self.next_sequence == 1 || now >= self.last_report + SHARE_REFRESH;
        if !counts_due && !refresh_due {
            return None;
        }
        let report = self.take_batch();
        self.last_report = now;
        self.in_flight = Some(InFlight {
            report,
            token: None,
            sent_at: now,
            send_at: now,
        });
        self.in_flight.as_ref().map(|in_flight| &in_flight.report)
    }

    /// Moves at most [`MAX_BATCH_ENTRIES`] pending entries into a new report.
    fn take_batch(&mut self) -> UsageReport {
        let mut clients = Vec::new();
        let keys: Vec<Box<str>> = self
            .clients
            .keys()
            .take(MAX_BATCH_ENTRIES)
            .cloned()
            .collect();
        for key in keys {
            if let Some(counts) = self.clients.remove(&key) {
                clients.push(ClientUsage {
                    client: key.into_string(),
                    allowed: counts.allowed,
                    refused: counts
                        .refused
                        .into_iter()
                        .map(|(code, n)| (code.to_owned(), n))
                        .collect(),
                });
            }
        }
        let room = MAX_BATCH_ENTRIES - clients.len();
        let keys: Vec<(Box<str>, Box<str>)> = self.quotas.keys().take(room).cloned().collect();
        let mut quotas = Vec::new();
        for key in keys {
            if let Some(requests) = self.quotas.remove(&key) {
                quotas.push(QuotaUsage {
                    policy: key.0.into_string(),
                    subject: key.1.into_string(),
                    requests,
                });
            }
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        UsageReport {
            reporter: self.reporter.clone(),
            sequence,
            instance: self.instance.clone(),
            rate_requests: std::mem::take(&mut self.rate_requests),
            clients,
            quotas,
        }
    }

    /// The report from [`UsageRecorder::due`] was dispatched at `now` as call `token`.
    pub fn sent(&mut self, token: u32, now: Duration) {
        if let Some(in_flight) = &mut self.in_flight {
            in_flight.token = Some(token);
            in_flight.sent_at = now;
        }
    }

    /// The report from [`UsageRecorder::due`] could not be dispatched at `now`: it is tried
    /// again [`REPORT_INTERVAL`] later.
    pub fn not_sent(&mut self, now: Duration) {
        if let Some(in_flight) = &mut self.in_flight {
            in_flight.token = None;
            in_flight.send_at = now + REPORT_INTERVAL;
        }
    }

    /// Whether `token` is the call carrying the report in flight.
    pub fn is_report_call(&self, token: u32) -> bool {
        self.in_flight
            .as_ref()
            .is_some_and(|in_flight| in_flight.token == Some(token))
    }

    /// The answer to call `token` arrived at `now` with `status` (`None`: no answer): a 2xx
    /// acknowledges the report in flight, which is forgotten; a 400, 413 or 422 says the
    /// control plane will never take this report as it is, so it is dropped rather than sent
    /// again forever with every later count held behind it; anything else leaves it to be sent
    /// again [`REPORT_INTERVAL`] later (a 401, 403 or 404 too: counts are kept rather than
    /// lost while an operator fixes the token or the control plane). Answers to other calls
    /// are ignored.
    pub fn answered(&mut self, token: u32, status: Option<u16>, now: Duration) -> ReportOutcome {
        if !self.is_report_call(token) {
            return ReportOutcome::Stale;
        }
        if status.is_some_and(|status| (200..300).contains(&status)) {
            self.in_flight = None;
            ReportOutcome::Acknowledged
        } else if matches!(status, Some(400 | 413 | 422)) {
            self.in_flight = None;
            ReportOutcome::Rejected
        } else {
            self.not_sent(now);
            ReportOutcome::Retry
        }
    }
}

/// The share of the rate limits (thousandths) in the control plane's answer to a report
/// (`{"rate_share": n, …}`), when it names a valid one (1 to
/// [`crate::rate_limit::FULL_SHARE`]).
pub fn share_in_answer(body: &[u8]) -> Option<u32> {
    #[derive(Deserialize)]
    struct Answer {
        rate_share: Option<u32>,
    }
    serde_json::from_slice::<Answer>(body)
        .ok()?
        .rate_share
        .filter(|share| (1..=crate::rate_limit::FULL_SHARE).contains(share))
}

/// What an answer did to the report in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportOutcome {
    /// Acknowledged: the next report gets the next sequence number.
    Acknowledged,
    /// Not acknowledged: the same report is sent again on the next tick.
    Retry,
    /// Refused for good (400, 413, 422): the report is dropped, and the next report gets the
    /// next sequence number.
    Rejected,
    /// Not the report's call.
    Stale,
}

#[cfg(test)]
mod tests;
