//! The root context: parses and validates the plugin configuration, owns the per-VM decision
//! state, keeps the snapshot in sync with the control plane, and creates an HTTP context per
//! request.
//!
//! In dynamic mode one VM per Envoy (the holder of a lease in shared data) long-polls the
//! control plane and publishes each new snapshot to shared data; every VM picks published
//! snapshots up on its timer, so all workers converge on the same version.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use log::{debug, error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use portico_core::cache::TokenCache;
use portico_core::config::{
    ControlPlaneConfig, LogLevel, PluginConfig, SnapshotSource, ValidConfig,
};
use portico_core::crypto::HostVerifier;
use portico_core::decision::Gateway;
use portico_core::rules;
use portico_core::snapshot::{BINARY_MEDIA_TYPE, CompiledSnapshot, Snapshot};
use portico_core::sync::{
    INSTANCE_KEY, KidReports, LEASE_KEY, Lease, LeaseClaim, PollOutcome, SNAPSHOT_KEY, SyncMachine,
    VERSION_KEY, decode_version, instance_id,
};

use crate::BUILD;
use crate::host::{EnvoyCrypto, Metrics};
use crate::http::PorticoHttp;

/// How often housekeeping runs (logging policy names that tokens claimed but nobody defined).
const HOUSEKEEPING_PERIOD: Duration = Duration::from_secs(10);
/// The timer period in static mode: how often counters reach Envoy's stats.
const STATIC_TICK: Duration = Duration::from_secs(1);
/// The timer period in dynamic mode: how soon a VM picks up a snapshot another VM published.
/// A tick reads one 8-byte shared-data value, so a short period costs next to nothing.
const SYNC_TICK: Duration = Duration::from_millis(20);
/// How long the sync lease lasts without renewal (the holder renews it on every tick).
const LEASE_DURATION: Duration = Duration::from_secs(2);
/// How long an unknown-kid report may take.
const REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// What every HTTP context of this VM shares.
#[derive(Debug)]
pub struct VmState {
    /// The current snapshot and the verification cache.
    pub gateway: RefCell<Gateway>,
    /// Signature verification: Envoy's crypto first, pure Rust as fallback.
    pub verifier: HostVerifier<EnvoyCrypto>,
    /// Counters and gauges.
    pub metrics: Metrics,
    /// Unknown `kid`s waiting to be reported to the control plane (dynamic mode).
    pub kid_reports: RefCell<KidReports>,
}

/// Dynamic mode: the sync with the control plane.
#[derive(Debug)]
struct Sync {
    config: ControlPlaneConfig,
    node: String,
    machine: SyncMachine,
    /// This VM's id in the lease.
    vm_id: u64,
    /// The version this VM applied (from its own poll or from shared data).
    applied: Option<u64>,
    /// A published version that failed to decode here; not retried until it changes.
    rejected: Option<u64>,
    /// Calls carrying unknown-kid reports, whose answers are only logged.
    report_calls: HashSet<u32>,
}

/// The plugin's root context, one per VM.
#[derive(Debug)]
pub struct PorticoRoot {
    context_id: u32,
    state: Option<Rc<VmState>>,
    sync: Option<Sync>,
    last_housekeeping: Duration,
}

// === impl PorticoRoot ===

impl PorticoRoot {
    /// A root context that has not been configured yet.
    pub fn new(context_id: u32) -> Self {
        PorticoRoot {
            context_id,
            state: None,
            sync: None,
            last_housekeeping: Duration::ZERO,
        }
    }

    fn now(&self) -> Duration {
        self.get_current_time()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }

    fn configure(&mut self, config: ValidConfig) {
        proxy_wasm::set_log_level(match config.log_level {
            LogLevel::Debug => proxy_wasm::types::LogLevel::Debug,
            LogLevel::Info => proxy_wasm::types::LogLevel::Info,
            LogLevel::Warn => proxy_wasm::types::LogLevel::Warn,
            LogLevel::Error => proxy_wasm::types::LogLevel::Error,
        });
        let metrics = Metrics::define();
        let mut random = [0u8; 24];
        if getrandom::fill(&mut random).is_err() {
            warn!(
                "[context {}] no randomness from the host: the token cache key and sync jitter \
                 are derived from the clock",
                self.context_id
            );
            random[..16].copy_from_slice(&self.now().as_nanos().to_le_bytes());
        }
        let (cache_key, seed) = random.split_at(16);
        let cache_key: [u8; 16] = cache_key.try_into().unwrap_or_default();
        let seed = u64::from_le_bytes(seed.try_into().unwrap_or_default());
        let cache = TokenCache::new(config.token_cache.capacity, cache_key);
        let mut gateway = Gateway::new(cache, &config.fail_open_paths, config.unmatched.clone());
        match config.source {
            SnapshotSource::Static(snapshot) => {
                log_snapshot(self.context_id, &snapshot, None);
                metrics.snapshot_version(snapshot.version);
                gateway.apply(*snapshot);
                self.set_tick_period(STATIC_TICK);
            }
            SnapshotSource::ControlPlane(control_plane) => {
                let node = control_plane.node_id.clone().unwrap_or_else(envoy_node_id);
                info!(
                    "[context {}] syncing snapshots from cluster `{}` as node `{node}`",
                    self.context_id, control_plane.cluster
                );
                self.sync = Some(Sync {
                    machine: SyncMachine::new(control_plane.timing(), seed),
                    config: control_plane,
                    node,
                    vm_id: seed,
                    applied: None,
                    rejected: None,
                    report_calls: HashSet::new(),
                });
                self.set_tick_period(SYNC_TICK);
            }
        }
        self.state = Some(Rc::new(VmState {
            gateway: RefCell::new(gateway),
            verifier: HostVerifier::new(EnvoyCrypto),
            metrics,
            kid_reports: RefCell::new(KidReports::default()),
        }));
    }

    /// Applies the snapshot another VM (or this one) published to shared data, if it is not
    /// the one in use.
    fn pick_up_published(&mut self, now: Duration) {
        let (Some(state), Some(sync)) = (&self.state, &mut self.sync) else {
            return;
        };
        let published = match hostcalls::get_shared_data(VERSION_KEY) {
            Ok((Some(bytes), _)) => decode_version(&bytes),
            _ => None,
        };
        let Some(version) = published else { return };
        if Some(version) == sync.applied || Some(version) == sync.rejected {
            return;
        }
        let Ok((Some(bytes), _)) = hostcalls::get_shared_data(SNAPSHOT_KEY) else {
            return;
        };
        match decode_and_compile(&bytes) {
            Ok(snapshot) => {
                apply(self.context_id, state, snapshot, bytes.len(), now);
                sync.applied = Some(version);
            }
            Err(err) => {
                warn!(
                    "[context {}] published snapshot {version} rejected, keeping the last good \
                     one: {err}",
                    self.context_id
                );
                state.metrics.snapshot_rejected();
                sync.rejected = Some(version);
            }
        }
    }

    /// Holds or takes the lease; only the holder polls.
    fn lead(&mut self, now: Duration) -> bool {
        let Some(sync) = &self.sync else { return false };
        let (current, cas) = match hostcalls::get_shared_data(LEASE_KEY) {
            Ok((value, cas)) => (value.as_deref().and_then(Lease::decode), cas),
            Err(_) => (None, None),
        };
        match Lease::claim(current, sync.vm_id, now, LEASE_DURATION) {
            LeaseClaim::Lost => false,
            LeaseClaim::Held => true,
            LeaseClaim::Write(lease) => {
                hostcalls::set_shared_data(LEASE_KEY, Some(&lease.encode()), cas).is_ok()
            }
        }
    }

    fn poll(&mut self, now: Duration) {
        let Some(sync) = &mut self.sync else { return };
        if !sync.machine.should_poll(now) {
            return;
        }
        let since = sync.applied.unwrap_or(0);
        let path = format!(
            "/v1/snapshot?since={since}&wait={}&node={}&instance={}",
            sync.machine.timing().poll_wait.as_secs(),
            percent_encode(&sync.node),
            shared_instance_id(sync.vm_id)
        );
        let authorization = format!("Bearer {}", sync.config.token);
        let headers = vec![
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", sync.config.authority()),
            ("authorization", authorization.as_str()),
            ("accept", BINARY_MEDIA_TYPE),
        ];
        let timeout = sync.machine.timing().request_timeout;
        match hostcalls::dispatch_http_call(&sync.config.cluster, headers, None, vec![], timeout) {
            Ok(token) => sync.machine.dispatched(token),
            Err(status) => {
                warn!(
                    "[context {}] cannot reach cluster `{}` ({status:?}); retrying with backoff",
                    self.context_id, sync.config.cluster
                );
                sync.machine.dispatch_failed(now);
                if let Some(state) = &self.state {
                    state.metrics.sync_failure();
                }
            }
        }
    }

    fn report_unknown_kids(&mut self, now: Duration) {
        let (Some(state), Some(sync)) = (&self.state, &mut self.sync) else {
            return;
        };
        let due = state.kid_reports.borrow_mut().take_due(now);
        for (issuer, kid) in due {
            let body = format!(
                "{{\"issuer\":{},\"kid\":{}}}",
                json_string(&issuer),
                json_string(&kid)
            );
            let authorization = format!("Bearer {}", sync.config.token);
            let headers = vec![
                (":method", "POST"),
                (":path", "/v1/unknown-kid"),
                (":authority", sync.config.authority()),
                ("authorization", authorization.as_str()),
                ("content-type", "application/json"),
            ];
            match hostcalls::dispatch_http_call(
                &sync.config.cluster,
                headers,
                Some(body.as_bytes()),
                vec![],
                REPORT_TIMEOUT,
            ) {
                Ok(token) => {
                    sync.report_calls.insert(token);
                    state.metrics.unknown_kid_reported();
                    info!(
                        "[context {}] asked the control plane to refresh issuer `{issuer}` for \
                         unknown kid `{kid}`",
                        self.context_id
                    );
                }
                Err(status) => debug!(
                    "[context {}] unknown-kid report not sent: {status:?}",
                    self.context_id
                ),
            }
        }
    }

    fn on_poll_answer(&mut self, token: u32, body_size: usize, now: Duration) {
        let status = self
            .get_http_call_response_header_bytes(":status")
            .and_then(|bytes| std::str::from_utf8(&bytes).ok()?.parse::<u16>().ok());
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        let context_id = self.context_id;
        let (Some(state), Some(sync)) = (&self.state, &mut self.sync) else {
            return;
        };
        let poll_again = match sync.machine.response(token, status, now) {
            PollOutcome::Snapshot => match decode_and_compile(&body) {
                Ok(snapshot) => {
                    let version = snapshot.version;
                    // The bytes first, then the version that announces them.
                    let published = hostcalls::set_shared_data(SNAPSHOT_KEY, Some(&body), None)
                        .and_then(|()| {
                            let version = version.to_le_bytes();
                            hostcalls::set_shared_data(VERSION_KEY, Some(&version), None)
                        });
                    if published.is_err() {
                        warn!(
                            "[context {context_id}] could not publish snapshot {version} to shared data"
                        );
                    }
                    apply(context_id, state, snapshot, body.len(), now);
                    sync.applied = Some(version);
                    sync.machine.snapshot_applied();
                    true
                }
                Err(err) => {
                    warn!(
                        "[context {context_id}] the control plane sent a snapshot that is not \
                         valid, keeping the last good one: {err}"
                    );
                    state.metrics.snapshot_rejected();
                    state.metrics.sync_failure();
                    sync.machine.snapshot_rejected(now);
                    false
                }
            },
            PollOutcome::NotModified => true,
            PollOutcome::Failed(reason) => {
                state.metrics.sync_failure();
                let failures = sync.machine.consecutive_failures();
                if failures == 1 || failures.is_power_of_two() {
                    warn!(
                        "[context {context_id}] snapshot sync failed ({failures} in a row): \
                         {reason}; enforcing snapshot {:?} meanwhile",
                        sync.applied
                    );
                }
                false
            }
            PollOutcome::Stale => false,
        };
        if poll_again {
            // Ask for the next change straight away.
            self.poll(now);
        }
    }

    fn housekeeping(&mut self, now: Duration) {
        if let Some(state) = &self.state {
            state.metrics.flush();
        }
        if now < self.last_housekeeping + HOUSEKEEPING_PERIOD {
            return;
        }
        self.last_housekeeping = now;
        let Some(state) = &self.state else { return };
        state.metrics.vm_memory(wasm_memory_bytes());
        let unknown = state.gateway.borrow_mut().take_unknown_policy_names();
        if !unknown.is_empty() {
            warn!(
                "[context {}] tokens named policies that do not exist (ignored): {}",
                self.context_id,
                unknown.join(", ")
            );
        }
    }
}

fn decode_and_compile(bytes: &[u8]) -> Result<CompiledSnapshot, String> {
    let snapshot = Snapshot::decode(bytes).map_err(|err| err.to_string())?;
    CompiledSnapshot::compile(snapshot).map_err(|err| err.to_string())
}

fn apply(
    context_id: u32,
    state: &VmState,
    snapshot: CompiledSnapshot,
    size: usize,
    started: Duration,
) {
    let version = snapshot.version;
    log_snapshot(context_id, &snapshot, Some(size));
    let flushed = state.gateway.borrow_mut().apply(snapshot);
    let finished = hostcalls::get_current_time()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .unwrap_or(started);
    let memory = wasm_memory_bytes();
    info!(
        "[context {context_id}] snapshot {version} in force ({} ms to decode and apply{}; VM \
         memory {} KiB)",
        finished.saturating_sub(started).as_millis(),
        if flushed { ", token cache cleared" } else { "" },
        memory / 1024
    );
    state.metrics.snapshot_version(version);
    state.metrics.vm_memory(memory);
}

fn log_snapshot(context_id: u32, snapshot: &CompiledSnapshot, size: Option<usize>) {
    let keys: usize = snapshot
        .issuers
        .iter()
        .map(|issuer| issuer.trusted.keys.len())
        .sum();
    info!(
        "[context {context_id}] snapshot {}{}: {} APIs, {} issuers, {keys} keys, {} policies",
        snapshot.version,
        size.map(|bytes| format!(" ({bytes} bytes)"))
            .unwrap_or_default(),
        snapshot.apis.len(),
        snapshot.issuers.len(),
        snapshot.policies.len(),
    );
    for issuer in &snapshot.issuers {
        for skipped in &issuer.skipped_keys {
            warn!(
                "[context {context_id}] issuer `{}`: key #{} (kid {:?}) skipped: {}",
                issuer.id, skipped.index, skipped.kid, skipped.reason
            );
        }
    }
}

/// This Envoy's filter instance id: the one a VM already published in shared data, else this
/// VM's own, published for the others (read at every poll, so that after a start-up race
/// every VM sends the one that stayed).
fn shared_instance_id(vm_id: u64) -> String {
    if let Ok((Some(bytes), _)) = hostcalls::get_shared_data(INSTANCE_KEY)
        && let Ok(published) = String::from_utf8(bytes)
        && rules::is_instance_id(&published)
    {
        return published;
    }
    let own = instance_id(vm_id);
    if hostcalls::set_shared_data(INSTANCE_KEY, Some(own.as_bytes()), None).is_err() {
        warn!("could not publish the filter instance id in shared data");
    }
    own
}

/// Envoy's `node.id`, or `unknown` when Envoy has none. Envoy 1.40 exposes the local node as
/// the `xds.node` attribute; older releases as the wasm attribute `node`.
fn envoy_node_id() -> String {
    [vec!["xds", "node", "id"], vec!["node", "id"]]
        .into_iter()
        .find_map(|path| {
            hostcalls::get_property(path)
                .ok()
                .flatten()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .filter(|id| !id.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The VM's linear memory, in bytes.
fn wasm_memory_bytes() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        (core::arch::wasm32::memory_size(0) as u64) * 65_536
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0
    }
}

fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn json_string(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}

impl Context for PorticoRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let now = self.now();
        if let Some(sync) = &mut self.sync
            && sync.report_calls.remove(&token_id)
        {
            return;
        }
        self.on_poll_answer(token_id, body_size, now);
    }
}

impl RootContext for PorticoRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        info!(
            "[context {}] portico filter {BUILD} starting",
            self.context_id
        );
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let Some(bytes) = self.get_plugin_configuration() else {
            error!(
                "[context {}] invalid plugin configuration: it is empty",
                self.context_id
            );
            return false;
        };
        match PluginConfig::parse(&bytes) {
            Ok(config) => {
                self.configure(config);
                true
            }
            Err(err) => {
                error!(
                    "[context {}] invalid plugin configuration: {err}",
                    self.context_id
                );
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let now = self.now();
        if self.sync.is_some() {
            self.pick_up_published(now);
            if self.lead(now) {
                self.poll(now);
            } else if let Some(sync) = &mut self.sync {
                sync.machine.abandon();
            }
            self.report_unknown_kids(now);
        }
        self.housekeeping(now);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let state = Rc::clone(self.state.as_ref()?);
        Some(Box::new(PorticoHttp::new(
            context_id,
            state,
            self.sync.is_some(),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
