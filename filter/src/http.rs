//! The HTTP context: reads the request headers, asks the gateway, and forwards with core's
//! edits (the caller's identity, client-sent trusted headers and unread token places removed)
//! or answers with the refusal.

use std::rc::Rc;
use std::time::UNIX_EPOCH;

use log::debug;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use portico_core::decision::{Decision, Request};
use portico_core::denial::{Denial, rate_limit_headers};
use portico_core::rate_limit::LimitState;
use portico_core::request::{Edits, edits};

use crate::host::SharedDataCounters;
use crate::root::VmState;

/// The property path of the API id in the Envoy route's metadata
/// (`metadata.filter_metadata.portico.api` on the route): Envoy 1.40 exposes the route's
/// metadata as the `xds.route_metadata` attribute and resolves the rest of the path inside it.
const ROUTE_API_PROPERTY: [&str; 5] =
    ["xds", "route_metadata", "filter_metadata", "portico", "api"];

/// The property a refusal's reason code is written to. Envoy keeps it as the filter state
/// object `wasm.portico.reason`, which an access log reads with
/// `%FILTER_STATE(wasm.portico.reason:PLAIN)%` (see the shipped `envoy/*.yaml`).
const REASON_PROPERTY: [&str; 1] = ["portico.reason"];

/// The API the request's Envoy route names in its metadata, `None` when it names none. A value
/// Envoy cannot hand over (it fails to serialise `api: null`, for one) is read as naming the
/// empty id, which no API has, so that the request is refused with `no_api` (fail closed)
/// rather than the SDK's panic, which would break the VM for every route.
fn route_api() -> Option<String> {
    match hostcalls::get_property(ROUTE_API_PROPERTY.to_vec()) {
        Ok(Some(bytes)) if !bytes.is_empty() => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Ok(_) => None,
        Err(_) => Some(String::new()),
    }
}

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

    /// Every request header, pseudo-headers included, in one host call: the decision reads
    /// the token from any of its places and looks at every header name (trusted headers in
    /// any spelling, method overrides, CORS), and Envoy's single-header read returns only the
    /// first of repeated headers. Values that are not UTF-8 are replaced rather than trusted
    /// (a path still matches its protected prefix, a token still fails verification), and
    /// never allowed to abort the VM.
    fn read_headers(&self) -> Vec<(String, String)> {
        self.get_http_request_headers_bytes()
            .into_iter()
            .map(|(name, value)| {
                let value = String::from_utf8(value)
                    .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned());
                (name, value)
            })
            .collect()
    }

    /// Applies core's edits to a request that goes upstream: removals, then the headers set,
    /// then the new `:path`.
    fn apply(&self, edits: Edits) {
        for name in &edits.remove {
            self.set_http_request_header(name, None);
        }
        for (name, value) in &edits.set {
            self.set_http_request_header(name, Some(value));
        }
        if let Some(path) = &edits.path {
            self.set_http_request_header(":path", Some(path));
        }
    }

    /// Answers `denial` with the request's id (when it has an echoable one) in the body and in
    /// `x-request-id`, and leaves the reason code in the filter state
    /// [`REASON_PROPERTY`] for the access log.
    fn refuse(&self, denial: &Denial, request_id: Option<&str>) {
        self.set_property(REASON_PROPERTY.to_vec(), Some(denial.code().as_bytes()));
        let extra = denial.headers();
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(extra.len() + 3);
        headers.push(("content-type", "application/json"));
        headers.push(("cache-control", "no-store"));
        if let Some(id) = request_id {
            headers.push(("x-request-id", id));
        }
        headers.extend(extra.iter().map(|(name, value)| (*name, value.as_str())));
        self.send_http_response(
            u32::from(denial.status()),
            headers,
            Some(denial.body(request_id).as_bytes()),
        );
    }
}

impl Context for PorticoHttp {}

impl HttpContext for PorticoHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let state = Rc::clone(&self.state);
        let snapshot = state.gateway.borrow().snapshot().cloned();
        let owned = self.read_headers();
        let headers: Vec<(&str, &str)> = owned
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let route_api = if state.route_metadata {
            route_api()
        } else {
            None
        };
        let request = Request::from_headers(&headers, route_api.as_deref());
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
        state.metrics.decision(&decision, || {
            let index = portico_core::metrics::api_index(&decision)?;
            Some(snapshot.as_deref()?.apis.get(index)?.id.clone())
        });
        match &decision {
            Decision::Deny { api, denial } => {
                let api = api
                    .and_then(|index| snapshot.as_deref()?.apis.get(index))
                    .map_or("-", |api| api.id.as_str());
                debug!(
                    "[context {}] refused {} {} (api {api}): {}",
                    self.context_id,
                    request.method,
                    request.path_without_query(),
                    denial.code()
                );
                self.refuse(denial, request.request_id());
                return Action::Pause;
            }
            Decision::Allow(grant) => self.rate_limit = grant.rate_limit,
            Decision::PassThrough | Decision::Preflight { .. } => {}
        }
        self.apply(edits(snapshot.as_deref(), &decision, &request));
        Action::Continue
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
