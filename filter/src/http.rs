//! The HTTP context: reads the request headers, asks the gateway, and forwards (with the
//! caller's identity) or answers with the refusal.

use std::rc::Rc;
use std::time::UNIX_EPOCH;

use log::debug;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use portico_core::decision::{Decision, Grant, Request};
use portico_core::denial::{Denial, rate_limit_headers};
use portico_core::rate_limit::LimitState;
use portico_core::snapshot::CompiledSnapshot;

use crate::host::SharedDataCounters;
use crate::root::VmState;

/// The request headers the decision reads.
#[derive(Debug)]
struct RequestHeaders {
    method: String,
    path: String,
    host: Option<String>,
    authorization: Option<String>,
    route_api: Option<String>,
}

/// The property path of the API id in the Envoy route's metadata
/// (`metadata.filter_metadata.portico.api` on the route): Envoy 1.40 exposes the route's
/// metadata as the `xds.route_metadata` attribute and resolves the rest of the path inside it.
const ROUTE_API_PROPERTY: [&str; 5] =
    ["xds", "route_metadata", "filter_metadata", "portico", "api"];

/// One request's context.
#[derive(Debug)]
pub struct PorticoHttp {
    context_id: u32,
    state: Rc<VmState>,
    /// Rate-limit state to report on the response of an allowed request.
    rate_limit: Option<LimitState>,
    /// Whether unknown `kid`s are reported to a control plane (dynamic mode).
    report_unknown_kids: bool,
}

// === impl PorticoHttp ===

impl PorticoHttp {
    /// A context for request `context_id`; in dynamic mode, unknown `kid`s are queued for the
    /// control plane.
    pub fn new(context_id: u32, state: Rc<VmState>, report_unknown_kids: bool) -> Self {
        PorticoHttp {
            context_id,
            state,
            rate_limit: None,
            report_unknown_kids,
        }
    }

    /// The headers the decision reads, and only those: every host call that returns data costs
    /// a round trip into the VM's allocator, so the method and the host are read only when
    /// some policy or API looks at them. Header values may hold bytes that are not UTF-8;
    /// they are replaced rather than trusted (a path still matches its protected prefix, a
    /// token still fails verification), and never allowed to abort the VM.
    fn read_headers(&self, snapshot: Option<&CompiledSnapshot>) -> RequestHeaders {
        let (method, host) = snapshot.map_or((true, true), |snapshot| {
            (snapshot.reads_method, snapshot.reads_host)
        });
        RequestHeaders {
            method: if method { self.header(":method") } else { None }.unwrap_or_default(),
            path: self.header(":path").unwrap_or_default(),
            host: if host {
                self.header(":authority")
            } else {
                None
            },
            authorization: self.header("authorization"),
            route_api: self
                .get_property(ROUTE_API_PROPERTY.to_vec())
                .filter(|bytes| !bytes.is_empty())
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
        }
    }

    fn header(&self, name: &str) -> Option<String> {
        self.get_http_request_header_bytes(name).map(|bytes| {
            String::from_utf8(bytes)
                .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned())
        })
    }

    /// Removes every trusted header (identity, policies, metadata) but `except`, so that no client can
    /// hand the upstream an identity of its choosing.
    fn strip(&self, snapshot: Option<&CompiledSnapshot>, except: &[&str]) {
        let trusted = snapshot.map_or(&[][..], |snapshot| &snapshot.trusted_headers);
        for name in trusted {
            if !except.contains(&name.as_str()) {
                self.set_http_request_header(name, None);
            }
        }
    }

    fn forward(&mut self, grant: Grant, snapshot: Option<&CompiledSnapshot>) {
        let api = snapshot.and_then(|snapshot| snapshot.apis.get(grant.api));
        // The headers set below replace any client-sent copy; the others are removed.
        // A metadata header that no granting policy fills is removed with the others.
        let set: Vec<&str> = api.map_or_else(Vec::new, |api| {
            std::iter::once(api.identity_header.as_str())
                .chain(api.policies_header.as_deref())
                .chain(grant.metadata_headers.iter().map(|(name, _)| name.as_str()))
                .collect()
        });
        self.strip(snapshot, &set);
        if let Some(api) = api {
            self.set_http_request_header(&api.identity_header, Some(&grant.identity));
            if let Some(header) = &api.policies_header {
                let policies: Vec<&str> = grant.policies.iter().map(|id| &**id).collect();
                self.set_http_request_header(header, Some(&policies.join(",")));
            }
            for (name, value) in &grant.metadata_headers {
                self.set_http_request_header(name, Some(value));
            }
        }
        self.rate_limit = grant.rate_limit;
        self.state.metrics.allowed();
    }

    fn refuse(&self, denial: &Denial) {
        let extra = denial.headers();
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(extra.len() + 2);
        headers.push(("content-type", "application/json"));
        headers.push(("cache-control", "no-store"));
        headers.extend(extra.iter().map(|(name, value)| (*name, value.as_str())));
        self.send_http_response(
            u32::from(denial.status()),
            headers,
            Some(denial.body().as_bytes()),
        );
        self.state.metrics.denied(denial.status());
    }
}

impl Context for PorticoHttp {}

impl HttpContext for PorticoHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let state = Rc::clone(&self.state);
        let snapshot = state.gateway.borrow().snapshot().cloned();
        let headers = self.read_headers(snapshot.as_deref());
        let request = Request {
            method: &headers.method,
            path: &headers.path,
            host: headers.host.as_deref(),
            authorization: headers.authorization.as_deref(),
            route_api: headers.route_api.as_deref(),
        };
        let now = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut gateway = state.gateway.borrow_mut();
        let decision = gateway.decide(&request, &state.verifier, &mut SharedDataCounters, now);
        if let Some((issuer, kid)) = gateway.unknown_kid(&decision) {
            debug!(
                "[context {}] token names unknown kid `{kid}` of issuer `{issuer}`",
                self.context_id
            );
            if self.report_unknown_kids {
                state.kid_reports.borrow_mut().note(issuer, kid, now);
            }
        }
        drop(gateway);
        state.metrics.signature_checks(state.verifier.take_counts());
        match decision {
            Decision::PassThrough => {
                self.strip(snapshot.as_deref(), &[]);
                state.metrics.passed_through();
                Action::Continue
            }
            Decision::Allow(grant) => {
                self.forward(grant, snapshot.as_deref());
                Action::Continue
            }
            Decision::Deny { denial, .. } => {
                debug!(
                    "[context {}] {} {}: {}",
                    self.context_id,
                    headers.method,
                    headers.path,
                    denial.code()
                );
                self.refuse(&denial);
                Action::Pause
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(state) = self.rate_limit.take() {
            for (name, value) in rate_limit_headers(&state) {
                self.set_http_response_header(name, Some(&value));
            }
        }
        Action::Continue
    }
}
