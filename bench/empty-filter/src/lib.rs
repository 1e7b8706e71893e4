//! The floor of the load benchmark (`portico-bench`): a proxy-wasm HTTP filter that does
//! nothing but return `Continue` from every callback, configuration (f); or that first makes
//! the host calls its plugin configuration lists, so that the benchmark can price each of them
//! in the same run: (g) reading the request's header map in one host call, the least a filter
//! that looks at every header must do; (g1) reading the `authorization` header alone, the
//! least any filter that checks a bearer token must do; (h) the host calls Portico makes on a
//! cached request (the header map, the clock, one header set) without its decision; and
//! amplified probes that repeat one call 100 times per request, so that its cost stands out of
//! the machine's noise.
//!
//! The configuration is a list of steps separated by spaces, each run in order on every
//! request's headers: `headers` (the header map), `header:NAME` (one header's value), `clock`
//! (the current time) or `set:NAME` (replace one request header), each optionally followed by
//! `*N` to run it N times. An empty configuration is (f). A step it does not know fails the
//! plugin's configuration, so a typo cannot pass for a cheap filter.
//!
//! It is built with the same SDK (`proxy-wasm` 0.2.5), target (`wasm32-wasip1`) and profile
//! (`wasm-release`) as Portico's filter and loaded with the same VM settings, so that what
//! Envoy spends on (f) is exactly what the proxy-wasm ABI costs per request: creating the HTTP
//! context, calling into the VM for each callback, and deleting the context. Not shipped;
//! `scripts/bench.sh` builds it.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

/// The module's entry point: Envoy calls `_initialize`, which registers the root context.
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| Box::new(super::FloorRoot::default()));
    }}
}

/// One host call a request makes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    /// The request's header map, in one call.
    Headers,
    /// One request header's value.
    Header(String),
    /// The host's clock.
    Clock,
    /// Replaces one request header.
    Set(String),
}

/// Parses the plugin configuration into the calls each request makes, in order; `None` for a
/// step it does not know or a repetition that is not a positive number.
fn parse(configuration: &str) -> Option<Vec<Call>> {
    let mut calls = Vec::new();
    for step in configuration.split_whitespace() {
        let (step, times) = match step.split_once('*') {
            Some((step, times)) => (step, times.parse::<usize>().ok().filter(|n| *n > 0)?),
            None => (step, 1),
        };
        let call = match step.split_once(':') {
            None if step == "headers" => Call::Headers,
            None if step == "clock" => Call::Clock,
            Some(("header", name)) if !name.is_empty() => Call::Header(name.to_owned()),
            Some(("set", name)) if !name.is_empty() => Call::Set(name.to_owned()),
            _ => return None,
        };
        calls.extend(std::iter::repeat_n(call, times));
    }
    Some(calls)
}

/// The root context: makes a [`FloorHttp`] for every request.
#[derive(Default)]
struct FloorRoot {
    calls: Rc<Vec<Call>>,
}

impl Context for FloorRoot {}

impl RootContext for FloorRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let configuration = self.get_plugin_configuration().unwrap_or_default();
        let Some(calls) = std::str::from_utf8(&configuration).ok().and_then(parse) else {
            return false;
        };
        self.calls = Rc::new(calls);
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(FloorHttp {
            calls: Rc::clone(&self.calls),
        }))
    }
}

/// One request's context: every callback keeps the SDK's default, `Continue`, after making
/// the configured calls on the request headers.
struct FloorHttp {
    calls: Rc<Vec<Call>>,
}

impl Context for FloorHttp {}

impl HttpContext for FloorHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // What each call answers is dropped: the benchmark measures only what making it costs.
        for call in self.calls.iter() {
            match call {
                Call::Headers => drop(self.get_http_request_headers_bytes()),
                Call::Header(name) => drop(self.get_http_request_header_bytes(name)),
                Call::Clock => drop(self.get_current_time()),
                Call::Set(name) => self.set_http_request_header(name, Some("floor")),
            }
        }
        Action::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::{Call, parse};

    #[test]
    fn the_configuration_lists_the_calls_in_order_with_their_repetitions() {
        assert_eq!(parse(""), Some(vec![]));
        assert_eq!(
            parse("headers clock*2 set:x-id"),
            Some(vec![
                Call::Headers,
                Call::Clock,
                Call::Clock,
                Call::Set("x-id".to_owned())
            ])
        );
        assert_eq!(
            parse("header:authorization*3").map(|calls| calls.len()),
            Some(3)
        );
    }

    #[test]
    fn an_unknown_step_or_a_bad_repetition_fails_the_configuration() {
        for bad in [
            "read_headers",
            "header:",
            "clock*0",
            "clock*x",
            "headers*",
            "set",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
