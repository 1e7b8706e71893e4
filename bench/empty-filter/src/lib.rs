//! The floor of the load benchmark (`portico-bench`, configuration (f)): a proxy-wasm HTTP
//! filter that does nothing but return `Continue` from every callback.
//!
//! It is built with the same SDK (`proxy-wasm` 0.2.5), target (`wasm32-wasip1`) and profile
//! (`wasm-release`) as Portico's filter and loaded with the same VM settings, so that what
//! Envoy spends on it is exactly what the proxy-wasm ABI costs per request: creating the HTTP
//! context, calling into the VM for each callback, and deleting the context. Whatever Portico
//! costs above it is Portico's own work. Not shipped; `scripts/bench.sh` builds it.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

/// The module's entry point: Envoy calls `_initialize`, which registers the root context.
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| Box::new(super::EmptyRoot));
    }}
}

/// The root context: makes an [`EmptyHttp`] for every request.
struct EmptyRoot;

impl Context for EmptyRoot {}

impl RootContext for EmptyRoot {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(EmptyHttp))
    }
}

/// One request's context: every callback keeps the SDK's default, `Continue`.
struct EmptyHttp;

impl Context for EmptyHttp {}

impl HttpContext for EmptyHttp {}
