//! The root context: parses and validates the plugin configuration, owns the per-VM decision
//! state, keeps the snapshot in sync with the control plane, and creates an HTTP context per
//! request.
//!
//! In dynamic mode the sync protocol (the lease, publication to the other workers, backoff) is
//! [`portico_core::sync::SyncWorker`]'s; this file feeds it the timer and HTTP-call callbacks
//! over [`EnvoySync`] and acts on the events it returns (apply, log, count).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use log::{debug, error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use portico_core::cache::TokenCache;
use portico_core::config::{LogLevel, PluginConfig, SnapshotSource, ValidConfig};
use portico_core::crypto::HostVerifier;
use portico_core::decision::Gateway;
use portico_core::metrics::SyncOutcome;
use portico_core::snapshot::CompiledSnapshot;
use portico_core::sync::{KidReports, SYNC_TICK, SyncEvent, SyncHost, SyncWorker};
use portico_core::usage::{ReportOutcome, share_in_answer};

use crate::BUILD;
use crate::host::{EnvoyCrypto, EnvoySync, Metrics};
use crate::http::PorticoHttp;

/// How often housekeeping runs (logging policy names that tokens claimed but nobody defined).
const HOUSEKEEPING_PERIOD: Duration = Duration::from_secs(10);
/// The timer period in static mode: how often counters reach Envoy's stats.
const STATIC_TICK: Duration = Duration::from_secs(1);

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
    /// Whether each request's route is asked for the API it names (plugin configuration
    /// `route_metadata`).
    pub route_metadata: bool,
}

/// Where the VM's snapshot comes from.
#[derive(Debug)]
enum Mode {
    /// No valid plugin configuration yet: no HTTP contexts.
    Unconfigured,
    /// The snapshot came inline in the plugin configuration.
    Static(Rc<VmState>),
    /// Snapshots are synced from the control plane.
    Dynamic(Rc<VmState>, Box<SyncWorker>),
}

/// The plugin's root context, one per VM.
#[derive(Debug)]
pub struct PorticoRoot {
    context_id: u32,
    mode: Mode,
    last_housekeeping: Duration,
}

// === impl PorticoRoot ===

impl PorticoRoot {
    /// A root context that has not been configured yet.
    pub fn new(context_id: u32) -> Self {
        PorticoRoot {
            context_id,
            mode: Mode::Unconfigured,
            last_housekeeping: Duration::ZERO,
        }
    }

    fn now(&self) -> Duration {
        self.get_current_time()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }

    fn state(&self) -> Option<&Rc<VmState>> {
        match &self.mode {
            Mode::Unconfigured => None,
            Mode::Static(state) | Mode::Dynamic(state, _) => Some(state),
        }
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
            random = portico_core::sync::randomness_from_clock(self.now());
        }
        let (cache_key, seed) = random.split_at(16);
        let cache_key: [u8; 16] = cache_key.try_into().unwrap_or_default();
        let seed = u64::from_le_bytes(seed.try_into().unwrap_or_default());
        let cache = TokenCache::new(config.token_cache.capacity, cache_key);
        let mut gateway = Gateway::new(cache, &config.fail_open_paths, config.unmatched.clone());
        let worker = match config.source {
            SnapshotSource::Static(snapshot) => {
                log_snapshot(self.context_id, &snapshot, None);
                metrics.snapshot_version(snapshot.version);
                metrics.sync(SyncOutcome::Applied);
                gateway.apply(*snapshot);
                self.set_tick_period(STATIC_TICK);
                None
            }
            SnapshotSource::ControlPlane(control_plane) => {
                let node = control_plane.node_id.clone().unwrap_or_else(envoy_node_id);
                info!(
                    "[context {}] syncing snapshots from cluster `{}` as node `{node}`",
                    self.context_id, control_plane.cluster
                );
                self.set_tick_period(SYNC_TICK);
                gateway.report_usage_as(format!("vm-{seed:016x}"));
                Some(SyncWorker::new(control_plane, node, seed))
            }
        };
        let state = Rc::new(VmState {
            gateway: RefCell::new(gateway),
            verifier: HostVerifier::new(EnvoyCrypto),
            metrics,
            kid_reports: RefCell::new(KidReports::default()),
            route_metadata: config.route_metadata,
        });
        self.mode = match worker {
            Some(worker) => Mode::Dynamic(state, Box::new(worker)),
            None => Mode::Static(state),
        };
    }

    fn housekeeping(&mut self, now: Duration) {
        let Some(state) = self.state() else { return };
        // Counted in the decision state per request, handed to the metrics here.
        state
            .metrics
            .token_cache(state.gateway.borrow_mut().take_cache_counts());
        state.metrics.signature_checks(state.verifier.take_counts());
        state.metrics.flush();
        if now < self.last_housekeeping + HOUSEKEEPING_PERIOD {
            return;
        }
        state.metrics.vm_memory(wasm_memory_bytes());
        let unknown = state.gateway.borrow_mut().take_unknown_policy_names();
        if !unknown.is_empty() {
            warn!(
                "[context {}] tokens named policies that do not exist (ignored): {}",
                self.context_id,
                unknown.join(", ")
            );
        }
        self.last_housekeeping = now;
    }
}

/// Acts on what `worker` reports: applies snapshots, logs, counts. `now` is when the callback
/// started, for the time a snapshot took to apply.
fn handle(
    context_id: u32,
    state: &VmState,
    worker: &SyncWorker,
    events: Vec<SyncEvent>,
    now: Duration,
) {
    for event in events {
        if let Some(outcome) = SyncOutcome::of(&event) {
            state.metrics.sync(outcome);
        }
        match event {
            SyncEvent::Applied {
                snapshot,
                size,
                delta_from,
            } => {
                apply(context_id, state, *snapshot, size, delta_from, now);
            }
            SyncEvent::DeltaRefused { error } => {
                warn!(
                    "[context {context_id}] a delta from the control plane does not apply here                      ({error}); fetching the whole snapshot"
                );
            }
            SyncEvent::PublishedRejected { version, error } => {
                warn!(
                    "[context {context_id}] published snapshot {version} rejected, keeping the \
                     last good one: {error}"
                );
            }
            SyncEvent::AnswerRejected { error } => {
                warn!(
                    "[context {context_id}] the control plane sent a snapshot that is not valid, \
                     keeping the last good one: {error}"
                );
            }
            SyncEvent::PublishFailed { version } => {
                warn!("[context {context_id}] could not publish snapshot {version} to shared data");
            }
            SyncEvent::DispatchFailed { error } => {
                warn!(
                    "[context {context_id}] cannot reach cluster `{}` ({error}); retrying with \
                     backoff",
                    worker.cluster()
                );
            }
            SyncEvent::PollFailed { reason, failures } => {
                if failures == 1 || failures.is_power_of_two() {
                    warn!(
                        "[context {context_id}] snapshot sync failed ({failures} in a row): \
                         {reason}; enforcing snapshot {:?} meanwhile",
                        worker.applied()
                    );
                }
            }
            SyncEvent::AnswerDropped => {
                debug!(
                    "[context {context_id}] a poll's answer arrived after another worker took \
                     the lease; dropped"
                );
            }
            SyncEvent::KidReported { issuer, kid } => {
                state.metrics.unknown_kid_reported();
                info!(
                    "[context {context_id}] asked the control plane to refresh issuer \
                     `{issuer}` for unknown kid `{kid}`"
                );
            }
            SyncEvent::KidReportNotSent { error } => {
                debug!("[context {context_id}] unknown-kid report not sent: {error}");
            }
        }
    }
}

fn apply(
    context_id: u32,
    state: &VmState,
    snapshot: CompiledSnapshot,
    size: usize,
    delta_from: Option<u64>,
    started: Duration,
) {
    let version = snapshot.version;
    log_snapshot(context_id, &snapshot, Some((size, delta_from)));
    let flushed = state.gateway.borrow_mut().apply(snapshot);
    let finished = hostcalls::get_current_time()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .unwrap_or(started);
    let memory = wasm_memory_bytes();
    info!(
        "[context {context_id}] snapshot {version} in force ({} ms to {}{}; VM memory {} KiB)",
        finished.saturating_sub(started).as_millis(),
        match delta_from {
            Some(base) => format!("apply the delta on version {base}"),
            None => "decode and apply".to_owned(),
        },
        if flushed { ", token cache cleared" } else { "" },
        memory / 1024
    );
    state.metrics.snapshot_changed();
    state.metrics.snapshot_version(version);
    state.metrics.vm_memory(memory);
}

/// Logs what `snapshot` holds; `received` is the size of what came from the control plane, in
/// bytes, and the version the delta was applied to when it was one.
fn log_snapshot(
    context_id: u32,
    snapshot: &CompiledSnapshot,
    received: Option<(usize, Option<u64>)>,
) {
    let keys: usize = snapshot
        .issuers
        .iter()
        .map(|issuer| issuer.trusted.keys.len())
        .sum();
    info!(
        "[context {context_id}] snapshot {}{}: {} APIs, {} issuers, {keys} keys, {} policies",
        snapshot.version,
        received
            .map(|(bytes, delta_from)| match delta_from {
                Some(base) => format!(" (a delta of {bytes} bytes on version {base})"),
                None => format!(" ({bytes} bytes)"),
            })
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

impl Context for PorticoRoot {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let now = self.now();
        if let Mode::Dynamic(state, worker) = &mut self.mode {
            let mut host = EnvoySync::new(body_size);
            let mut gateway = state.gateway.borrow_mut();
            if let Some(usage) = gateway.usage_mut()
                && usage.is_report_call(token_id)
            {
                let answer = host.answer();
                match usage.answered(token_id, answer.status, now) {
                    ReportOutcome::Retry => warn!(
                        "[context {}] the control plane did not take a usage report (status \
                         {:?}); it is sent again",
                        self.context_id, answer.status
                    ),
                    ReportOutcome::Rejected => warn!(
                        "[context {}] the control plane refused a usage report for good (status \
                         {:?}); it is dropped",
                        self.context_id, answer.status
                    ),
                    ReportOutcome::Stale => {}
                    ReportOutcome::Acknowledged => {
                        if let Some(share) = share_in_answer(&answer.body)
                            && share != gateway.rate_share()
                        {
                            debug!(
                                "[context {}] this Envoy's share of the rate limits is now \
                                 {share}/1000",
                                self.context_id
                            );
                            gateway.set_rate_share(share);
                            state.metrics.rate_share(share);
                            worker.publish_rate_share(&mut host, share);
                        }
                    }
                }
                return;
            }
            drop(gateway);
            let events = worker.on_http_response(&mut host, token_id, now);
            handle(self.context_id, state, worker, events, now);
        }
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
        if let Mode::Dynamic(state, worker) = &mut self.mode {
            let events = worker.on_tick(
                &mut EnvoySync::new(0),
                now,
                &mut state.kid_reports.borrow_mut(),
            );
            handle(self.context_id, state, worker, events, now);
            let mut gateway = state.gateway.borrow_mut();
            if let Some(share) = worker.published_rate_share(&mut EnvoySync::new(0))
                && share != gateway.rate_share()
            {
                gateway.set_rate_share(share);
                state.metrics.rate_share(share);
            }
            drop(gateway);
            if let Some(usage) = state.gateway.borrow_mut().usage_mut()
                && let Err(error) = worker.report_usage(&mut EnvoySync::new(0), now, usage)
            {
                warn!(
                    "[context {}] a usage report could not be sent: {error}",
                    self.context_id
                );
            }
        }
        self.housekeeping(now);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let state = Rc::clone(self.state()?);
        let dynamic = matches!(self.mode, Mode::Dynamic(..));
        Some(Box::new(PorticoHttp::new(context_id, state, dynamic)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
