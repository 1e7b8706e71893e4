//! Host services behind portico-core's traits: Envoy's native signature verification, shared
//! data as the rate-limit counter store, and metrics.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{MetricType, Status};

use portico_core::crypto::{HostCrypto, HostCryptoError, VerificationCounts};
use portico_core::rate_limit::{CasConflict, CounterStore};

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

/// The filter's counters, as Envoy stats (prefixed `wasmcustom.` by Envoy).
#[derive(Clone, Copy, Debug, Default)]
pub struct Metrics {
    allowed: Option<u32>,
    passed_through: Option<u32>,
    denied_401: Option<u32>,
    denied_403: Option<u32>,
    denied_429: Option<u32>,
    denied_503: Option<u32>,
    host_signature_checks: Option<u32>,
    software_signature_checks: Option<u32>,
    snapshot_version: Option<u32>,
    snapshots_rejected: Option<u32>,
    sync_failures: Option<u32>,
    unknown_kid_reports: Option<u32>,
    vm_memory_bytes: Option<u32>,
}

// === impl Metrics ===

impl Metrics {
    /// Defines the counters (idempotent per name across VMs).
    pub fn define() -> Metrics {
        let counter = |name: &str| hostcalls::define_metric(MetricType::Counter, name).ok();
        let gauge = |name: &str| hostcalls::define_metric(MetricType::Gauge, name).ok();
        Metrics {
            allowed: counter("portico.requests_allowed"),
            passed_through: counter("portico.requests_passed_through"),
            denied_401: counter("portico.requests_denied_401"),
            denied_403: counter("portico.requests_denied_403"),
            denied_429: counter("portico.requests_denied_429"),
            denied_503: counter("portico.requests_denied_503"),
            host_signature_checks: counter("portico.signature_checks_host"),
            software_signature_checks: counter("portico.signature_checks_software"),
            snapshot_version: gauge("portico.snapshot_version"),
            snapshots_rejected: counter("portico.snapshots_rejected"),
            sync_failures: counter("portico.sync_failures"),
            unknown_kid_reports: counter("portico.unknown_kid_reports"),
            vm_memory_bytes: gauge("portico.vm_memory_bytes"),
        }
    }

    /// Counts an allowed request.
    pub fn allowed(&self) {
        increment(self.allowed);
    }

    /// Counts a request outside every protected API.
    pub fn passed_through(&self) {
        increment(self.passed_through);
    }

    /// Counts a refused request by its status.
    pub fn denied(&self, status: u16) {
        increment(match status {
            401 => self.denied_401,
            403 => self.denied_403,
            429 => self.denied_429,
            _ => self.denied_503,
        });
    }

    /// Records the version of the snapshot in force.
    pub fn snapshot_version(&self, version: u64) {
        record(self.snapshot_version, version);
    }

    /// Counts a snapshot that failed to decode or validate (and was not applied).
    pub fn snapshot_rejected(&self) {
        increment(self.snapshots_rejected);
    }

    /// Counts a failed sync attempt (no answer, an error status, or a rejected snapshot).
    pub fn sync_failure(&self) {
        increment(self.sync_failures);
    }

    /// Counts an unknown `kid` reported to the control plane.
    pub fn unknown_kid_reported(&self) {
        increment(self.unknown_kid_reports);
    }

    /// Records the VM's linear memory size.
    pub fn vm_memory(&self, bytes: u64) {
        record(self.vm_memory_bytes, bytes);
    }

    /// Counts signature checks by where they ran.
    pub fn signature_checks(&self, counts: VerificationCounts) {
        add(self.host_signature_checks, counts.host);
        add(self.software_signature_checks, counts.software);
    }
}

fn record(metric: Option<u32>, value: u64) {
    if let Some(id) = metric {
        let _ = hostcalls::record_metric(id, value);
    }
}

fn increment(metric: Option<u32>) {
    add(metric, 1);
}

fn add(metric: Option<u32>, count: u64) {
    if let (Some(id), Ok(offset)) = (metric, i64::try_from(count))
        && offset > 0
    {
        let _ = hostcalls::increment_metric(id, offset);
    }
}
