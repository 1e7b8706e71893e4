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

use crate::host::SharedDataCounters;
use crate::root::VmState;

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

    /// A request header as text. Header values may hold bytes that are not UTF-8; they are
    /// replaced rather than trusted (a path still matches its protected prefix, a token still
    /// fails verification), and never allowed to abort the VM.
    fn header(&self, name: &str) -> Option<String> {
        self.get_http_request_header_bytes(name).map(|bytes| {
            String::from_utf8(bytes)
                .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned())
        })
    }

    fn strip_trusted_headers(&self, trusted: &[String]) {
        for name in trusted {
            self.set_http_request_header(name, None);
        }
    }

    fn forward(&mut self, grant: Grant, trusted: &[String]) {
        self.strip_trusted_headers(trusted);
        let snapshot = self.state.gateway.borrow().snapshot().cloned();
        if let Some(api) = snapshot
            .as_ref()
            .and_then(|snapshot| snapshot.apis.get(grant.api))
        {
            self.set_http_request_header(&api.identity_header, Some(&grant.identity));
            if let Some(header) = &api.policies_header {
                let policies: Vec<&str> = grant.policies.iter().map(|id| &**id).collect();
                self.set_http_request_header(header, Some(&policies.join(",")));
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
        let method = self.header(":method").unwrap_or_default();
        let path = self.header(":path").unwrap_or_default();
        let host = self.header(":authority");
        let authorization = self.header("authorization");
        let request = Request {
            method: &method,
            path: &path,
            host: host.as_deref(),
            authorization: authorization.as_deref(),
        };
        let now = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let state = Rc::clone(&self.state);
        let mut gateway = state.gateway.borrow_mut();
        let decision = gateway.decide(&request, &state.verifier, &mut SharedDataCounters, now);
        let trusted = gateway.trusted_headers().to_vec();
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
        self.state
            .metrics
            .signature_checks(self.state.verifier.take_counts());
        match decision {
            Decision::PassThrough => {
                self.strip_trusted_headers(&trusted);
                self.state.metrics.passed_through();
                Action::Continue
            }
            Decision::Allow(grant) => {
                self.forward(grant, &trusted);
                Action::Continue
            }
            Decision::Deny { denial, .. } => {
                debug!(
                    "[context {}] {} {}: {}",
                    self.context_id,
                    method,
                    path,
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
