//! The root context: parses and validates the plugin configuration, owns the per-VM decision
//! state, and creates an HTTP context per request.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use log::{error, info, warn};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use portico_core::cache::TokenCache;
use portico_core::config::{PluginConfig, ValidConfig};
use portico_core::crypto::HostVerifier;
use portico_core::decision::Gateway;
use portico_core::snapshot::CompiledSnapshot;

use crate::BUILD;
use crate::host::{EnvoyCrypto, Metrics};
use crate::http::PorticoHttp;

/// How often housekeeping runs (logging policy names that tokens claimed but nobody defined).
const HOUSEKEEPING_PERIOD: Duration = Duration::from_secs(10);

/// What every HTTP context of this VM shares.
#[derive(Debug)]
pub struct VmState {
    /// The current snapshot and the verification cache.
    pub gateway: RefCell<Gateway>,
    /// Signature verification: Envoy's crypto first, pure Rust as fallback.
    pub verifier: HostVerifier<EnvoyCrypto>,
    /// Request counters.
    pub metrics: Metrics,
}

/// The plugin's root context, one per VM (worker thread).
#[derive(Debug)]
pub struct PorticoRoot {
    context_id: u32,
    state: Option<Rc<VmState>>,
}

// === impl PorticoRoot ===

impl PorticoRoot {
    /// A root context that has not been configured yet.
    pub fn new(context_id: u32) -> Self {
        PorticoRoot {
            context_id,
            state: None,
        }
    }

    fn configure(&mut self, config: ValidConfig) {
        log_snapshot(self.context_id, &config.snapshot);
        let cache = TokenCache::new(
            config.token_cache.capacity,
            self.cache_key(config.token_cache.capacity),
        );
        let mut gateway = Gateway::new(cache, &config.fail_open_paths);
        gateway.apply(config.snapshot);
        self.state = Some(Rc::new(VmState {
            gateway: RefCell::new(gateway),
            verifier: HostVerifier::new(EnvoyCrypto),
            metrics: Metrics::define(),
        }));
    }

    /// A random secret for the cache's hash, so nobody can craft colliding tokens.
    fn cache_key(&self, capacity: usize) -> [u8; 16] {
        let mut key = [0u8; 16];
        if capacity > 0 && getrandom::fill(&mut key).is_err() {
            warn!(
                "[context {}] no randomness from the host: the token cache is keyed by time only",
                self.context_id
            );
            let now = self.get_current_time();
            let nanos = now
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            key = nanos.to_le_bytes();
        }
        key
    }
}

fn log_snapshot(context_id: u32, snapshot: &CompiledSnapshot) {
    let keys: usize = snapshot
        .issuers
        .iter()
        .map(|issuer| issuer.trusted.keys.len())
        .sum();
    info!(
        "[context {context_id}] snapshot {} applied: {} APIs, {} issuers, {keys} keys, {} policies",
        snapshot.version,
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

impl Context for PorticoRoot {}

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
                self.set_tick_period(HOUSEKEEPING_PERIOD);
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
        let Some(state) = &self.state else { return };
        let unknown = state.gateway.borrow_mut().take_unknown_policy_names();
        if !unknown.is_empty() {
            warn!(
                "[context {}] tokens named policies that do not exist (ignored): {}",
                self.context_id,
                unknown.join(", ")
            );
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let state = Rc::clone(self.state.as_ref()?);
        Some(Box::new(PorticoHttp::new(context_id, state)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
