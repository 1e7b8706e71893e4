//! Metrics for every DCR call, whoever makes it: [`MeteredIdp`] wraps the control plane's
//! [`IdpClient`] and hands out drivers that time each call and count it by provider,
//! operation and [`CallOutcome`] (see [`crate::service::metrics::DCR_CALLS`]). Nothing from
//! the call (client ids, secrets, URLs) reaches a label.
//!
//! Key-set fetches are counted by the key refresher instead (`service::jwks`), which knows
//! the issuer's Portico id that labels them.

use std::sync::Arc;

use url::Url;

use super::CallOutcome;
use super::client::{IdpClient, IdpFuture};
use super::dcr::{
    ClientMetadata, DcrDriver, DcrError, DcrFuture, Deletion, ManagedClient, Provider,
    RegisteredClient, RegistrationTarget,
};
use super::discovery::{DiscoveryError, ProviderMetadata};
use super::jwks_fetch::{FetchedJwks, JwksFetchConfig, JwksFetchError};
use crate::service::metrics::Metrics;
use crate::service::monotonic_now;

/// A DCR operation, as the `operation` label of the DCR metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DcrOperation {
    /// RFC 7591 registration.
    Register,
    /// RFC 7592 read.
    Read,
    /// RFC 7592 update.
    Update,
    /// RFC 7592 deletion.
    Delete,
}

// === impl DcrOperation ===

impl DcrOperation {
    /// The label value: `register`, `read`, `update` or `delete`.
    pub fn label(self) -> &'static str {
        match self {
            DcrOperation::Register => "register",
            DcrOperation::Read => "read",
            DcrOperation::Update => "update",
            DcrOperation::Delete => "delete",
        }
    }
}

/// The outcome of a DCR call's result.
pub fn dcr_outcome<T>(result: &Result<T, DcrError>) -> CallOutcome {
    match result {
        Ok(_) => CallOutcome::Ok,
        Err(error) => error.outcome(),
    }
}

/// An [`IdpClient`] whose DCR drivers record every call in `metrics`; discovery and key sets
/// pass through unchanged.
#[derive(Debug)]
pub struct MeteredIdp {
    inner: Arc<dyn IdpClient>,
    drivers: [MeteredDriver; 4],
}

// === impl MeteredIdp ===

impl MeteredIdp {
    /// Wraps `inner`, recording in `metrics`.
    pub fn new(inner: Arc<dyn IdpClient>, metrics: &Arc<Metrics>) -> Self {
        let drivers = Provider::ALL.map(|provider| MeteredDriver {
            inner: Arc::clone(&inner),
            provider,
            metrics: Arc::clone(metrics),
        });
        MeteredIdp { inner, drivers }
    }
}

impl IdpClient for MeteredIdp {
    fn metadata<'a>(
        &'a self,
        discovery_url: &'a Url,
        expected_issuer: &'a str,
    ) -> IdpFuture<'a, ProviderMetadata, DiscoveryError> {
        self.inner.metadata(discovery_url, expected_issuer)
    }

    fn forget_metadata(&self, discovery_url: &Url) {
        self.inner.forget_metadata(discovery_url);
    }

    fn jwks<'a>(
        &'a self,
        jwks_uri: &'a Url,
        config: &'a JwksFetchConfig,
    ) -> IdpFuture<'a, FetchedJwks, JwksFetchError> {
        self.inner.jwks(jwks_uri, config)
    }

    fn driver(&self, provider: Provider) -> &dyn DcrDriver {
        &self.drivers[provider.index()]
    }
}

/// One provider's driver of the wrapped client, timed.
#[derive(Debug)]
struct MeteredDriver {
    inner: Arc<dyn IdpClient>,
    provider: Provider,
    metrics: Arc<Metrics>,
}

// === impl MeteredDriver ===

impl MeteredDriver {
    fn driver(&self) -> &dyn DcrDriver {
        self.inner.driver(self.provider)
    }

    /// `call`, recorded as `operation` once it ends.
    fn timed<'a, T: Send + 'a>(
        &'a self,
        operation: DcrOperation,
        call: DcrFuture<'a, T>,
    ) -> DcrFuture<'a, T> {
        Box::pin(async move {
            let started = monotonic_now();
            let result = call.await;
            let seconds = monotonic_now()
                .saturating_duration_since(started)
                .as_secs_f64();
            self.metrics
                .record_dcr_call(self.provider, operation, dcr_outcome(&result), seconds);
            result
        })
    }
}

impl DcrDriver for MeteredDriver {
    fn provider(&self) -> Provider {
        self.provider
    }

    fn register<'a>(
        &'a self,
        target: &'a RegistrationTarget,
        metadata: &'a ClientMetadata,
    ) -> DcrFuture<'a, RegisteredClient> {
        self.timed(
            DcrOperation::Register,
            self.driver().register(target, metadata),
        )
    }

    fn read<'a>(
        &'a self,
        target: &'a RegistrationTarget,
        client: &'a ManagedClient,
    ) -> DcrFuture<'a, RegisteredClient> {
        self.timed(DcrOperation::Read, self.driver().read(target, client))
    }

    fn update<'a>(
        &'a self,
        target: &'a RegistrationTarget,
        client: &'a ManagedClient,
        metadata: &'a ClientMetadata,
    ) -> DcrFuture<'a, RegisteredClient> {
        self.timed(
            DcrOperation::Update,
            self.driver().update(target, client, metadata),
        )
    }

    fn delete<'a>(
        &'a self,
        target: &'a RegistrationTarget,
        client: &'a ManagedClient,
    ) -> DcrFuture<'a, Deletion> {
        self.timed(DcrOperation::Delete, self.driver().delete(target, client))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idp::TransportError;
    use crate::idp::test_support::FakeIdp;

    fn target() -> RegistrationTarget {
        RegistrationTarget {
            registration_endpoint: Url::parse("http://idp.test/reg").unwrap(),
            initial_access_token: None,
        }
    }

    #[tokio::test]
    async fn every_dcr_call_is_counted_by_provider_operation_and_outcome_without_client_ids() {
        let fake = Arc::new(FakeIdp::default());
        fake.driver.answer_delete(Ok(Deletion::AlreadyGone));
        fake.driver
            .answer_register(Err(DcrError::Transport(TransportError::Timeout {
                url: "http://idp.test/reg".to_owned(),
            })));
        let metrics = Arc::new(Metrics::default());
        let idp = MeteredIdp::new(fake.clone(), &metrics);
        let client = ManagedClient {
            client_id: "secret-client-id".to_owned(),
            registration_client_uri: None,
            registration_access_token: None,
        };
        let metadata = ClientMetadata::client_credentials("app");
        let okta = idp.driver(Provider::Okta);
        assert_eq!(okta.provider(), Provider::Okta);
        okta.delete(&target(), &client).await.unwrap();
        okta.register(&target(), &metadata).await.unwrap_err();
        idp.driver(Provider::Gluu)
            .read(&target(), &client)
            .await
            .unwrap_err();
        assert_eq!(fake.driver.calls().len(), 3);
        let text = metrics.render();
        for line in [
            "portico_dcr_calls_total{provider=\"okta\",operation=\"delete\",outcome=\"ok\"} 1",
            "portico_dcr_calls_total{provider=\"okta\",operation=\"register\",outcome=\"timeout\"} 1",
            "portico_dcr_calls_total{provider=\"gluu\",operation=\"read\",outcome=\"invalid_response\"} 1",
            "portico_dcr_call_duration_seconds_count{provider=\"okta\",operation=\"delete\",outcome=\"ok\"} 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(!text.contains("secret-client-id"), "{text}");
    }

    #[test]
    fn error_answers_map_to_the_fixed_outcomes() {
        let rejected = |status| DcrError::Rejected {
            status,
            error: None,
            error_description: None,
            body_snippet: None,
        };
        assert_eq!(rejected(400).outcome(), CallOutcome::Refused);
        assert_eq!(rejected(503).outcome(), CallOutcome::Refused);
        assert_eq!(rejected(403).outcome(), CallOutcome::Unauthorized);
        assert_eq!(rejected(410).outcome(), CallOutcome::NotFound);
        let connect = TransportError::Connect {
            url: String::new(),
            reason: String::new(),
        };
        assert_eq!(
            DcrError::Transport(connect).outcome(),
            CallOutcome::Unreachable
        );
        let too_large = TransportError::TooLarge {
            url: String::new(),
            limit: 1,
        };
        assert_eq!(too_large.outcome(), CallOutcome::InvalidResponse);
        let unsent = DcrError::Misconfigured {
            reason: String::new(),
        };
        assert_eq!(unsent.outcome(), CallOutcome::NotSent);
        let labels: std::collections::HashSet<_> = CallOutcome::ALL
            .iter()
            .map(|outcome| outcome.label())
            .collect();
        assert_eq!(labels.len(), CallOutcome::ALL.len());
    }
}
