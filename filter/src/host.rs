//! Host services behind portico-core's traits: Envoy's native signature verification, shared
//! data as the rate-limit counter store, the snapshot sync's host (shared data and HTTP calls),
//! and metrics.

use std::cell::{Cell, RefCell};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};

use portico_core::cache::CacheCounts;
use portico_core::crypto::{CryptoPath, HostCrypto, HostCryptoError, VerificationCounts};
use portico_core::decision::Decision;
use portico_core::metrics::{self as names, DecisionSeries, Series, SyncOutcome};
use portico_core::rate_limit::{CasConflict, CounterStore};
use portico_core::sync::{DispatchError, HttpAnswer, HttpCall, SyncHost};

/// Envoy's `verify_signature` foreign function (BoringSSL).
#[derive(Clone, Copy, Debug, Default)]
pub struct EnvoyCrypto;

impl HostCrypto for EnvoyCrypto {
    fn verify_signature(&self, arguments: &[u8]) -> Result<Vec<u8>, HostCryptoError> {
        match hostcalls::call_foreign_function("verify_signature", Some(arguments)) {
            Ok(result) => Ok(result.unwrap_or_default()),
            Err(Status::NotFound) => Err(HostCryptoError::Unavailable),
            Err(status) => Err(HostCryptoError::Failed(format!("{status:?}"))),
        }
    }
}

/// Envoy's shared data: one store for all worker VMs of the plugin, with compare-and-swap.
#[derive(Clone, Copy, Debug, Default)]
pub struct SharedDataCounters;

impl CounterStore for SharedDataCounters {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), Some(cas))) => Some((value, cas)),
            _ => None,
        }
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasConflict> {
        hostcalls::set_shared_data(key, Some(value), cas).map_err(|_| CasConflict)
    }
}

/// The snapshot sync's host: Envoy's shared data and `dispatch_http_call`.
#[derive(Clone, Copy, Debug, Default)]
pub struct EnvoySync {
    shared: SharedDataCounters,
    /// The size of the answer being delivered, in bytes (0 outside `on_http_call_response`).
    body_size: usize,
}

impl EnvoySync {
    /// The host for a callback that delivers an answer of `body_size` bytes (0 for the timer).
    pub fn new(body_size: usize) -> Self {
        EnvoySync {
            shared: SharedDataCounters,
            body_size,
        }
    }
}

impl SyncHost for EnvoySync {
    fn shared(&mut self) -> &mut dyn CounterStore {
        &mut self.shared
    }

    fn dispatch(&mut self, call: HttpCall<'_>) -> Result<u32, DispatchError> {
        let headers = call
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        hostcalls::dispatch_http_call(
            call.cluster,
            headers,
            call.body.as_deref(),
            vec![],
            call.timeout,
        )
        .map_err(|status| DispatchError(format!("{status:?}")))
    }

    fn answer(&self) -> HttpAnswer {
        let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|bytes| std::str::from_utf8(&bytes).ok()?.parse::<u16>().ok());
        let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, self.body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        HttpAnswer { status, body }
    }
}

/// A counter whose increments are gathered in the VM and handed to Envoy on the timer:
/// per-request counting costs no host call.
#[derive(Debug, Default)]
struct Counter {
    id: Option<u32>,
    pending: Cell<u64>,
}

impl Counter {
    fn new(name: &str) -> Counter {
        Counter {
            id: hostcalls::define_metric(MetricType::Counter, name).ok(),
            pending: Cell::new(0),
        }
    }

    fn add(&self, count: u64) {
        self.pending.set(self.pending.get().saturating_add(count));
    }

    fn flush(&self) {
        let count = self.pending.take();
        if let (Some(id), Ok(offset)) = (self.id, i64::try_from(count))
            && offset > 0
        {
            let _ = hostcalls::increment_metric(id, offset);
        }
    }
}

/// The filter's counters and gauges, as Envoy stats (prefixed `wasmcustom.` by Envoy; names
/// from [`portico_core::metrics`], listed in `docs/filter-config.md#metrics`). Counters reach
/// Envoy on the root context's timer ([`Metrics::flush`]); gauges at once. Tagged counters
/// (decisions, verifications) are defined the first time their series is needed.
#[derive(Debug)]
pub struct Metrics {
    series: RefCell<DecisionSeries>,
    /// The decision counters, by the slot [`DecisionSeries`] gave them.
    decisions: RefCell<Vec<Counter>>,
    /// Signature checks by algorithm and path: index `alg.index() * 2 + path`.
    verifications: RefCell<Vec<Option<Counter>>>,
    cache_hits: Counter,
    cache_misses: Counter,
    /// Sync steps, by [`SyncOutcome::index`].
    syncs: [Counter; SyncOutcome::ALL.len()],
    unknown_kid_reports: Counter,
    snapshot_version: Option<u32>,
    vm_memory_bytes: Option<u32>,
    rate_share: Option<u32>,
    rate_share_updates: Counter,
}

// === impl Metrics ===

impl Metrics {
    /// Defines the metrics whose names are fixed (idempotent per name across VMs); decisions
    /// and verifications are defined later, per series.
    pub fn define() -> Metrics {
        let gauge = |name: &str| hostcalls::define_metric(MetricType::Gauge, name).ok();
        Metrics {
            series: RefCell::new(DecisionSeries::default()),
            decisions: RefCell::new(Vec::new()),
            verifications: RefCell::new(Vec::new()),
            cache_hits: Counter::new(names::TOKEN_CACHE_HITS),
            cache_misses: Counter::new(names::TOKEN_CACHE_MISSES),
            syncs: SyncOutcome::ALL.map(|outcome| Counter::new(&names::sync_metric(outcome))),
            unknown_kid_reports: Counter::new(names::UNKNOWN_KID_REPORTS),
            snapshot_version: gauge(names::SNAPSHOT_VERSION),
            vm_memory_bytes: gauge(names::VM_MEMORY_BYTES),
            rate_share: gauge(names::RATE_SHARE),
            rate_share_updates: Counter::new(names::RATE_SHARE_UPDATES),
        }
    }

    /// Hands the gathered counts to Envoy.
    pub fn flush(&self) {
        for counter in [
            &self.cache_hits,
            &self.cache_misses,
            &self.unknown_kid_reports,
            &self.rate_share_updates,
        ]
        .into_iter()
        .chain(&self.syncs)
        {
            counter.flush();
        }
        self.decisions.borrow().iter().for_each(Counter::flush);
        self.verifications
            .borrow()
            .iter()
            .flatten()
            .for_each(Counter::flush);
    }

    /// Counts a decision by API and reason; `api_id` names the matched API, read only when
    /// its series is not known yet.
    pub fn decision(&self, decision: &Decision, api_id: impl FnOnce() -> Option<String>) {
        let series = self.series.borrow_mut().series(
            names::api_index(decision),
            api_id,
            names::reason(decision),
        );
        let mut counters = self.decisions.borrow_mut();
        let slot = match series {
            Series::Known(slot) => slot,
            Series::New { slot, name } => {
                counters.push(Counter::new(&name));
                slot
            }
        };
        if let Some(counter) = counters.get(slot) {
            counter.add(1);
        }
    }

    /// The snapshot changed: API indices mean other APIs from now on.
    pub fn snapshot_changed(&self) {
        self.series.borrow_mut().snapshot_changed();
    }

    /// Records the version of the snapshot in force.
    pub fn snapshot_version(&self, version: u64) {
        record(self.snapshot_version, version);
    }

    /// Counts a sync step by how it ended.
    pub fn sync(&self, outcome: SyncOutcome) {
        if let Some(counter) = self.syncs.get(outcome.index()) {
            counter.add(1);
        }
    }

    /// Counts an unknown `kid` reported to the control plane.
    pub fn unknown_kid_reported(&self) {
        self.unknown_kid_reports.add(1);
    }

    /// Records a new share of the rate limits (thousandths) from the control plane.
    pub fn rate_share(&self, share: u32) {
        record(self.rate_share, u64::from(share));
        self.rate_share_updates.add(1);
    }

    /// Records the VM's linear memory size.
    pub fn vm_memory(&self, bytes: u64) {
        record(self.vm_memory_bytes, bytes);
    }

    /// Counts token-cache lookups.
    pub fn token_cache(&self, counts: CacheCounts) {
        self.cache_hits.add(counts.hits);
        self.cache_misses.add(counts.misses);
    }

    /// Counts signature checks by algorithm and where they ran.
    pub fn signature_checks(&self, counts: VerificationCounts) {
        let mut nonzero = counts.nonzero().peekable();
        if nonzero.peek().is_none() {
            return;
        }
        let mut counters = self.verifications.borrow_mut();
        for (alg, path, count) in nonzero {
            let index = alg.index() * 2 + usize::from(path == CryptoPath::Software);
            if counters.len() <= index {
                counters.resize_with(index + 1, || None);
            }
            if let Some(slot) = counters.get_mut(index) {
                slot.get_or_insert_with(|| Counter::new(&names::verification_metric(alg, path)))
                    .add(count);
            }
        }
    }
}

fn record(metric: Option<u32>, value: u64) {
    if let Some(id) = metric {
        let _ = hostcalls::record_metric(id, value);
    }
}
