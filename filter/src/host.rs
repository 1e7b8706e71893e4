//! Host services behind portico-core's traits: Envoy's native signature verification, shared
//! data as the rate-limit counter store, the snapshot sync's host (shared data and HTTP calls),
//! and metrics.

use std::cell::Cell;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};

use portico_core::crypto::{HostCrypto, HostCryptoError, VerificationCounts};
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

/// The filter's counters and gauges, as Envoy stats (prefixed `wasmcustom.` by Envoy).
/// Counters reach Envoy on the root context's timer ([`Metrics::flush`]); gauges at once.
#[derive(Debug, Default)]
pub struct Metrics {
    allowed: Counter,
    passed_through: Counter,
    denied_400: Counter,
    denied_401: Counter,
    denied_403: Counter,
    denied_404: Counter,
    denied_429: Counter,
    denied_503: Counter,
    host_signature_checks: Counter,
    software_signature_checks: Counter,
    snapshots_rejected: Counter,
    sync_failures: Counter,
    unknown_kid_reports: Counter,
    snapshot_version: Option<u32>,
    vm_memory_bytes: Option<u32>,
}

// === impl Metrics ===

impl Metrics {
    /// Defines the metrics (idempotent per name across VMs).
    pub fn define() -> Metrics {
        let gauge = |name: &str| hostcalls::define_metric(MetricType::Gauge, name).ok();
        Metrics {
            allowed: Counter::new("portico.requests_allowed"),
            passed_through: Counter::new("portico.requests_passed_through"),
            denied_400: Counter::new("portico.requests_denied_400"),
            denied_401: Counter::new("portico.requests_denied_401"),
            denied_403: Counter::new("portico.requests_denied_403"),
            denied_404: Counter::new("portico.requests_denied_404"),
            denied_429: Counter::new("portico.requests_denied_429"),
            denied_503: Counter::new("portico.requests_denied_503"),
            host_signature_checks: Counter::new("portico.signature_checks_host"),
            software_signature_checks: Counter::new("portico.signature_checks_software"),
            snapshots_rejected: Counter::new("portico.snapshots_rejected"),
            sync_failures: Counter::new("portico.sync_failures"),
            unknown_kid_reports: Counter::new("portico.unknown_kid_reports"),
            snapshot_version: gauge("portico.snapshot_version"),
            vm_memory_bytes: gauge("portico.vm_memory_bytes"),
        }
    }

    /// Hands the gathered counts to Envoy.
    pub fn flush(&self) {
        for counter in [
            &self.allowed,
            &self.passed_through,
            &self.denied_400,
            &self.denied_401,
            &self.denied_403,
            &self.denied_404,
            &self.denied_429,
            &self.denied_503,
            &self.host_signature_checks,
            &self.software_signature_checks,
            &self.snapshots_rejected,
            &self.sync_failures,
            &self.unknown_kid_reports,
        ] {
            counter.flush();
        }
    }

    /// Counts an allowed request.
    pub fn allowed(&self) {
        self.allowed.add(1);
    }

    /// Counts a request outside every protected API.
    pub fn passed_through(&self) {
        self.passed_through.add(1);
    }

    /// Counts a refused request by its status (400, 401, 403, 404, 429; 503 for the rest,
    /// which is only `snapshot_unavailable`).
    pub fn denied(&self, status: u16) {
        match status {
            400 => &self.denied_400,
            401 => &self.denied_401,
            403 => &self.denied_403,
            404 => &self.denied_404,
            429 => &self.denied_429,
            _ => &self.denied_503,
        }
        .add(1);
    }

    /// Records the version of the snapshot in force.
    pub fn snapshot_version(&self, version: u64) {
        record(self.snapshot_version, version);
    }

    /// Counts a snapshot that failed to decode or validate (and was not applied).
    pub fn snapshot_rejected(&self) {
        self.snapshots_rejected.add(1);
    }

    /// Counts a failed sync attempt (no answer, an error status, or a rejected snapshot).
    pub fn sync_failure(&self) {
        self.sync_failures.add(1);
    }

    /// Counts an unknown `kid` reported to the control plane.
    pub fn unknown_kid_reported(&self) {
        self.unknown_kid_reports.add(1);
    }

    /// Records the VM's linear memory size.
    pub fn vm_memory(&self, bytes: u64) {
        record(self.vm_memory_bytes, bytes);
    }

    /// Counts signature checks by where they ran.
    pub fn signature_checks(&self, counts: VerificationCounts) {
        self.host_signature_checks.add(counts.host);
        self.software_signature_checks.add(counts.software);
    }
}

fn record(metric: Option<u32>, value: u64) {
    if let Some(id) = metric {
        let _ = hostcalls::record_metric(id, value);
    }
}
