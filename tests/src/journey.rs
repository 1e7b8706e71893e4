//! The whole system for a developer's journey: a real OpenID provider (`oidc-provider`), the
//! control plane, Envoy with the filter and an echo upstream, and what the operator sets up
//! through the admin API.

use std::time::Duration;

use serde_json::{Value, json};

use crate::control_plane::DATA_PLANE_TOKEN;
use crate::{ControlPlane, EchoUpstream, Envoy, EnvoyConfig, Idp, IdpOptions};

/// The initial access token the IdP requires for registration.
pub const INITIAL_ACCESS_TOKEN: &str = "initial-access-token-for-the-journey";
/// How long a change may take to reach Envoy.
pub const BOUND: Duration = Duration::from_secs(15);

/// The running system, stopped when dropped.
#[derive(Debug)]
pub struct Journey {
    /// The IdP.
    pub idp: Idp,
    /// The control plane.
    pub control_plane: ControlPlane,
    /// Envoy with the filter, synced from the control plane.
    pub envoy: Envoy,
    config: EnvoyConfig,
    _upstream: EchoUpstream,
}

impl Journey {
    /// Starts every process; `env` adds control-plane settings.
    pub async fn start(env: &[(&str, &str)]) -> Journey {
        let idp = Idp::start(IdpOptions {
            initial_access_token: Some(INITIAL_ACCESS_TOKEN.to_owned()),
            ..IdpOptions::default()
        })
        .await;
        let control_plane = ControlPlane::start(env).await;
        let upstream = EchoUpstream::start().await;
        // Debug logging, so that the journey's log scan sees every refusal line.
        let plugin = json!({"control_plane": {"cluster": "portico", "token": DATA_PLANE_TOKEN},
                            "log_level": "debug"});
        let mut config = EnvoyConfig::new(plugin.to_string(), upstream.addr);
        config
            .clusters
            .push(("portico".to_owned(), control_plane.addr));
        let envoy = Envoy::start(&config).await;
        Journey {
            idp,
            control_plane,
            envoy,
            config,
            _upstream: upstream,
        }
    }

    /// Another Envoy configured as the first, for a fleet of two.
    pub async fn another_envoy(&self) -> Envoy {
        Envoy::start(&self.config).await
    }

    /// What the operator does: the IdP as issuer, two APIs, a policy granting one of them
    /// (with a rate limit), a catalogue entry publishing it with that policy, and DCR settings
    /// (provider `other`).
    pub async fn operator_sets_up(&self) {
        Journey::operator_sets_up_on(&self.control_plane, &self.idp).await;
    }

    /// [`Journey::operator_sets_up`] on the control plane `cp`, with `idp` as the issuer.
    pub async fn operator_sets_up_on(cp: &ControlPlane, idp: &Idp) {
        cp.create("/issuers", json!({"id": "idp", "issuer": idp.issuer}))
            .await;
        for id in ["orders", "reports"] {
            cp.create(
                "/apis",
                json!({"id": id, "name": id, "listen_path": format!("/{id}"), "issuers": ["idp"], "audiences": ["https://api.portico.test"],
                       "identity_claims": ["client_id"], "policy_claim": "pol"}),
            )
            .await;
        }
        cp.create(
            "/policies",
            json!({"id": "orders-read", "name": "Orders", "access_rights": [{"api": "orders"}],
                   "rate_limit": {"requests": 20, "per_seconds": 10}}),
        )
        .await;
        cp.create(
            "/catalogue",
            json!({"id": "orders", "name": "Orders API",
                   "description": "Read and place orders for the shop.",
                   "policy": "orders-read"}),
        )
        .await;
        cp.replace(
            "/dcr",
            json!({"enabled": true, "provider": "other", "issuer": idp.issuer,
                   "initial_access_token": INITIAL_ACCESS_TOKEN}),
        )
        .await;
    }

    /// A call through Envoy: the status and the JSON body.
    pub async fn call(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.envoy.call(path, token).await
    }

    /// Waits (bounded) until a call with `token` answers `status` (and `code`).
    pub async fn await_status(
        &self,
        what: &str,
        path: &str,
        token: &str,
        status: u16,
        code: Option<&str>,
    ) -> Value {
        self.envoy
            .await_outcome(what, BOUND, (path, Some(token)), (status, code))
            .await
    }
}
