//! The names of the filter's metrics, and which series a decision counts in.
//!
//! The filter reports through proxy-wasm metrics, which are plain Envoy stats named by a
//! string (Envoy prefixes them `wasmcustom.`). Labels are written into the name the way Envoy's
//! own stats carry them, `<name>.<tag>.<value>`, and the shipped Envoy configurations extract
//! them with `stats_config.stats_tags` ([`TAG_REGEXES`]), so that `/stats/prometheus` shows,
//! for instance, `portico_filter_decisions{api="orders",reason="allowed"}` (Envoy drops the
//! `wasmcustom` namespace in Prometheus names).
//!
//! Everything here is pure: the filter asks [`DecisionSeries`] which series a decision counts
//! in, defines the metric once when the answer is [`Series::New`], and from then on only
//! increments by slot, with no string built on the request path.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use crate::alg::Algorithm;
use crate::crypto::CryptoPath;
use crate::decision::Decision;
use crate::sync::SyncEvent;

/// The prefix of every filter metric (after Envoy's `wasmcustom.`).
pub const PREFIX: &str = "portico.filter";
/// The most distinct `api` label values the decision counter takes in one VM. Decisions of
/// further APIs count under [`OTHER_API`]: Envoy keeps every stat it was ever given for the
/// life of the process, so the label set must stay bounded whatever snapshots arrive.
pub const MAX_API_SERIES: usize = 100;
/// The `api` label of decisions for APIs beyond [`MAX_API_SERIES`].
pub const OTHER_API: &str = "_other";
/// The `api` label of decisions that matched no API (requests passed through, `no_api`,
/// `snapshot_unavailable` before any API is known).
pub const NO_API: &str = "_none";
/// The `reason` of an allowed request.
pub const ALLOWED: &str = "allowed";
/// The `reason` of a request outside every protected API, or a CORS preflight let through.
pub const PASSED_THROUGH: &str = "passed_through";

/// Counter: token-cache lookups that found a verdict.
pub const TOKEN_CACHE_HITS: &str = "portico.filter.token_cache_hits";
/// Counter: token-cache lookups that found none (the token was verified).
pub const TOKEN_CACHE_MISSES: &str = "portico.filter.token_cache_misses";
/// Gauge: the version of the snapshot in force.
pub const SNAPSHOT_VERSION: &str = "portico.filter.snapshot_version";
/// Counter: unknown `kid`s reported to the control plane.
pub const UNKNOWN_KID_REPORTS: &str = "portico.filter.unknown_kid_reports";
/// Gauge: the VM's linear memory, in bytes.
pub const VM_MEMORY_BYTES: &str = "portico.filter.vm_memory_bytes";
/// Gauge: this Envoy's share of every rate limit, in thousandths, as the control plane last
/// answered (see `docs/limits.md`).
pub const RATE_SHARE: &str = "portico.filter.rate_share";
/// Counter: changes of the share of the rate limits.
pub const RATE_SHARE_UPDATES: &str = "portico.filter.rate_share_updates";

/// The Envoy `stats_tags` that turn the tagged names into labels: (`tag_name`, `regex`). In
/// each regex the first group is cut from the name and the second is the label's value.
/// Every shipped `envoy/*.yaml` carries them (a test checks that).
pub const TAG_REGEXES: [(&str, &str); 5] = [
    (
        "api",
        r"^wasmcustom\.portico\.filter\.decisions(\.api\.([^.]+))\.reason\.[^.]+$",
    ),
    (
        "reason",
        r"^wasmcustom\.portico\.filter\.decisions(?:\.api\.[^.]+)?(\.reason\.([^.]+))$",
    ),
    (
        "alg",
        r"^wasmcustom\.portico\.filter\.verifications(\.alg\.([^.]+))\.path\.[^.]+$",
    ),
    (
        "path",
        r"^wasmcustom\.portico\.filter\.verifications(?:\.alg\.[^.]+)?(\.path\.([^.]+))$",
    ),
    (
        "outcome",
        r"^wasmcustom\.portico\.filter\.syncs(\.outcome\.([^.]+))$",
    ),
];

/// The counter of decisions for the API labelled `api` (already a [`label_value`]) and
/// `reason`: `portico.filter.decisions.api.<api>.reason.<reason>`.
pub fn decision_metric(api: &str, reason: &str) -> String {
    format!("{PREFIX}.decisions.api.{api}.reason.{reason}")
}

/// The counter of signature checks of `alg` on `path`:
/// `portico.filter.verifications.alg.<alg>.path.<host|software>`.
pub fn verification_metric(alg: Algorithm, path: CryptoPath) -> String {
    format!(
        "{PREFIX}.verifications.alg.{}.path.{}",
        alg.name(),
        path.label()
    )
}

/// How a step of the snapshot sync ended, as the `outcome` label of [`sync_metric`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncOutcome {
    /// A whole snapshot was put in force (from the control plane, from another worker, or, in
    /// static mode, from the plugin configuration).
    Applied,
    /// A delta from the control plane was checked and its result put in force.
    DeltaApplied,
    /// A delta from the control plane did not apply (another base, another digest, a result
    /// that does not compile): nothing changed, and the whole snapshot is fetched at once.
    DeltaRefused,
    /// A snapshot did not decode or validate; the last good one stays in force.
    Rejected,
    /// A poll could not be sent to the control plane's cluster.
    Unreachable,
    /// A poll got an error status or no answer.
    Failed,
}

// === impl SyncOutcome ===

impl SyncOutcome {
    /// Every outcome.
    pub const ALL: [SyncOutcome; 6] = [
        SyncOutcome::Applied,
        SyncOutcome::DeltaApplied,
        SyncOutcome::DeltaRefused,
        SyncOutcome::Rejected,
        SyncOutcome::Unreachable,
        SyncOutcome::Failed,
    ];

    /// The outcome of a sync event, `None` for events that are no outcome (a dropped late
    /// answer, a failed publication to shared data, unknown-kid reports).
    pub fn of(event: &SyncEvent) -> Option<SyncOutcome> {
        match event {
            SyncEvent::Applied {
                delta_from: None, ..
            } => Some(SyncOutcome::Applied),
            SyncEvent::Applied {
                delta_from: Some(_),
                ..
            } => Some(SyncOutcome::DeltaApplied),
            SyncEvent::DeltaRefused { .. } => Some(SyncOutcome::DeltaRefused),
            SyncEvent::PublishedRejected { .. } | SyncEvent::AnswerRejected { .. } => {
                Some(SyncOutcome::Rejected)
            }
            SyncEvent::DispatchFailed { .. } => Some(SyncOutcome::Unreachable),
            SyncEvent::PollFailed { .. } => Some(SyncOutcome::Failed),
            SyncEvent::PublishFailed { .. }
            | SyncEvent::AnswerDropped
            | SyncEvent::KidReported { .. }
            | SyncEvent::KidReportNotSent { .. } => None,
        }
    }

    /// The position in [`SyncOutcome::ALL`].
    pub fn index(self) -> usize {
        // `ALL` lists every variant in declaration order, so the discriminant is the index.
        self as usize
    }

    /// The label value: `applied`, `delta_applied`, `delta_refused`, `rejected`,
    /// `unreachable` or `failed`.
    pub fn label(self) -> &'static str {
        match self {
            SyncOutcome::Applied => "applied",
            SyncOutcome::DeltaApplied => "delta_applied",
            SyncOutcome::DeltaRefused => "delta_refused",
            SyncOutcome::Rejected => "rejected",
            SyncOutcome::Unreachable => "unreachable",
            SyncOutcome::Failed => "failed",
        }
    }
}

/// The counter of sync steps that ended with `outcome`:
/// `portico.filter.syncs.outcome.<outcome>`.
pub fn sync_metric(outcome: SyncOutcome) -> String {
    format!("{PREFIX}.syncs.outcome.{}", outcome.label())
}

/// `text` as one segment of a stat name: ASCII letters, digits, `_` and `-` kept, anything
/// else (a `.` would split the segment) replaced by `_`; empty becomes `_`.
pub fn label_value(text: &str) -> String {
    if text.is_empty() {
        return "_".to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The `reason` label of a decision: [`ALLOWED`], [`PASSED_THROUGH`] or the refusal's error
/// code (see `docs/errors.md`).
pub fn reason(decision: &Decision) -> &'static str {
    match decision {
        Decision::Allow(_) => ALLOWED,
        Decision::PassThrough | Decision::Preflight { .. } => PASSED_THROUGH,
        Decision::Deny { denial, .. } => denial.code(),
    }
}

/// The snapshot index of the API a decision matched, if any.
pub fn api_index(decision: &Decision) -> Option<usize> {
    match decision {
        Decision::Allow(grant) => Some(grant.api),
        Decision::Preflight { api } => Some(*api),
        Decision::Deny { api, .. } => *api,
        Decision::PassThrough => None,
    }
}

/// Where a decision counts: a slot the filter already defined, or a new one to define under
/// `name` (then kept at `slot`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Series {
    /// Increment the metric at this slot.
    Known(usize),
    /// Define the metric `name`, keep it at `slot` (the next free one), and increment it.
    New {
        /// The slot to keep it at.
        slot: usize,
        /// The full metric name ([`decision_metric`]).
        name: String,
    },
}

/// Which decision counter each (API, reason) counts in, for one VM.
///
/// Lookups by API index and reason are cached until the snapshot changes
/// ([`DecisionSeries::snapshot_changed`]), so an allowed request finds its slot by indexing a
/// vector; names are kept for the life of the VM, so an API that comes back after a snapshot
/// change reuses its slot instead of defining its metric again. At most [`MAX_API_SERIES`]
/// distinct API labels are handed out; later APIs share [`OTHER_API`].
#[derive(Debug, Default)]
pub struct DecisionSeries {
    /// Per API index of the current snapshot: the allowed slot, and the other reasons' slots.
    by_index: Vec<IndexSlots>,
    /// Decisions that matched no API, by reason.
    unmatched: Vec<(&'static str, usize)>,
    /// Every name defined so far, with its slot.
    names: HashMap<String, usize>,
    /// The API labels handed out so far (at most [`MAX_API_SERIES`]).
    api_labels: HashSet<String>,
}

#[derive(Debug, Default, Clone)]
struct IndexSlots {
    allowed: Option<usize>,
    others: Vec<(&'static str, usize)>,
}

// === impl DecisionSeries ===

impl DecisionSeries {
    /// Forgets the cached API indices (they point into the previous snapshot); slots stay.
    pub fn snapshot_changed(&mut self) {
        self.by_index.clear();
    }

    /// The series of a decision with `reason` for the API at `index` whose id is `api_id`
    /// (`None` when it matched no API). `api_id` is read only the first time an index and
    /// reason meet after a snapshot change.
    pub fn series(
        &mut self,
        index: Option<usize>,
        api_id: impl FnOnce() -> Option<String>,
        reason: &'static str,
    ) -> Series {
        let cached = match index {
            Some(index) => self.by_index.get(index).and_then(|slots| {
                if reason == ALLOWED {
                    slots.allowed
                } else {
                    find(&slots.others, reason)
                }
            }),
            None => find(&self.unmatched, reason),
        };
        if let Some(slot) = cached {
            return Series::Known(slot);
        }
        let label = match index.and_then(|_| api_id()) {
            Some(id) => self.api_label(&id),
            None => NO_API.to_owned(),
        };
        let name = decision_metric(&label, reason);
        let next = self.names.len();
        let (slot, series) = match self.names.entry(name) {
            Entry::Occupied(entry) => (*entry.get(), Series::Known(*entry.get())),
            Entry::Vacant(entry) => {
                let name = entry.key().clone();
                entry.insert(next);
                (next, Series::New { slot: next, name })
            }
        };
        match index {
            Some(index) => {
                if self.by_index.len() <= index {
                    self.by_index.resize(index + 1, IndexSlots::default());
                }
                let slots = &mut self.by_index[index];
                if reason == ALLOWED {
                    slots.allowed = Some(slot);
                } else {
                    slots.others.push((reason, slot));
                }
            }
            None => self.unmatched.push((reason, slot)),
        }
        series
    }

    /// The label for API `id`: its [`label_value`] while fewer than [`MAX_API_SERIES`]
    /// labels are out (or when it already has one), else [`OTHER_API`].
    fn api_label(&mut self, id: &str) -> String {
        let label = label_value(id);
        if self.api_labels.contains(&label) {
            return label;
        }
        if self.api_labels.len() >= MAX_API_SERIES {
            return OTHER_API.to_owned();
        }
        self.api_labels.insert(label.clone());
        label
    }
}

fn find(slots: &[(&'static str, usize)], reason: &str) -> Option<usize> {
    slots
        .iter()
        .find(|(known, _)| *known == reason)
        .map(|(_, slot)| *slot)
}

#[cfg(test)]
mod tests;
