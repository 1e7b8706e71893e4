//! The floor of the load benchmark (`portico-bench`): a proxy-wasm HTTP filter that does
//! nothing but return `Continue` from every callback, configuration (f); or, when its plugin
//! configuration is the string `read_headers`, that first reads the request's header map in one
//! host call, configuration (g): the least any filter that looks at a bearer token must do.
//!
//! It is built with the same SDK (`proxy-wasm` 0.2.5), target (`wasm32-wasip1`) and profile
//! (`wasm-release`) as Portico's filter and loaded with the same VM settings, so that what
//! Envoy spends on (f) is exactly what the proxy-wasm ABI costs per request: creating the HTTP
//! context, calling into the VM for each callback, and deleting the context; (g) adds what
//! handing the headers to the VM costs. Whatever Portico costs above them is Portico's own
//! work. Not shipped; `scripts/bench.sh` builds it.

use std::cell::Cell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

/// The module's entry point: Envoy calls `_initialize`, which registers the root context.
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| Box::new(super::FloorRoot::default()));
    }}
}

/// The plugin configuration that turns on reading the request headers.
const READ_HEADERS: &[u8] = b"read_headers";

/// The root context: makes a [`FloorHttp`] for every request.
#[derive(Default)]
struct FloorRoot {
    read_headers: Rc<Cell<bool>>,
}

impl Context for FloorRoot {}

impl RootContext for FloorRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let configuration = self.get_plugin_configuration().unwrap_or_default();
        self.read_headers.set(configuration == READ_HEADERS);
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(FloorHttp {
            read_headers: self.read_headers.get(),
        }))
    }
}

/// One request's context: every callback keeps the SDK's default, `Continue`, after reading
/// the request headers in (g).
struct FloorHttp {
    read_headers: bool,
}

impl Context for FloorHttp {}

impl HttpContext for FloorHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.read_headers {
            // Read and dropped: the benchmark measures only what handing them over costs.
            drop(self.get_http_request_headers_bytes());
        }
        Action::Continue
    }
}
