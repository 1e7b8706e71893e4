//! Portico's proxy-wasm HTTP filter for Envoy.
//!
//! Only glue lives here: each callback reads what the host offers, hands it to
//! [`portico_core`], and turns the decision back into host calls. The root context owns the
//! configuration and the per-VM decision state ([`root`]); each request gets an HTTP context
//! ([`http`]); host services (native crypto, shared counters, metrics) are in [`host`].

pub mod host;
pub mod http;
pub mod root;

/// The filter's version and the commit it was built from, logged when the VM starts.
pub const BUILD: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PORTICO_GIT_HASH"),
    ")"
);

/// The module's entry point: Envoy calls `_initialize`, which registers the root context.
mod entry {
    use proxy_wasm::types::LogLevel;

    use crate::root::PorticoRoot;

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Info);
        // A panic would leave the VM broken (every later request answered 503); make sure it
        // is at least loud. This crate denies unwrap/expect/panic; this is the last guard.
        std::panic::set_hook(Box::new(|info| {
            let message = format!("portico: panic: {info}");
            let _ = proxy_wasm::hostcalls::log(LogLevel::Critical, &message);
        }));
        proxy_wasm::set_root_context(|context_id| Box::new(PorticoRoot::new(context_id)));
    }}
}
