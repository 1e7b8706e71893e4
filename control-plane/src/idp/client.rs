//! The one IdP client of a control plane, built at start-up and handed to the services as a
//! trait object ([`IdpClient`]).
//!
//! [`HttpIdp`] owns the HTTP clients ([`IdpHttp`]), the one discovery cache ([`Discoverer`],
//! shared by the key refresher and the registration flow, so a document fetched for one serves
//! the other), the key-set fetch and one DCR driver per provider. Services never build any of
//! these: the key refresher, the DCR settings and the registration flow call the trait, so
//! their tests can substitute a fake that answers without HTTP (see `test_support::FakeIdp`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use url::Url;

use super::dcr::{DcrDriver, Provider, driver_for};
use super::discovery::{Discoverer, DiscoveryConfig, DiscoveryError, ProviderMetadata};
use super::jwks_fetch::{FetchedJwks, JwksFetchConfig, JwksFetchError, fetch_jwks};
use super::{HttpTimeouts, IdpHttp, TransportError};
use crate::service::monotonic_now;

/// The future the [`IdpClient`] methods return: pinned, boxed and `Send`, so that the trait is
/// object-safe (see `idp::dcr` for why a trait object).
pub type IdpFuture<'a, T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'a>>;

/// Everything the services ask of identity providers.
pub trait IdpClient: Send + Sync + fmt::Debug {
    /// The provider metadata at `discovery_url` for `expected_issuer` (OpenID Connect
    /// Discovery §4), from the shared cache while fresh, otherwise fetched and cached.
    fn metadata<'a>(
        &'a self,
        discovery_url: &'a Url,
        expected_issuer: &'a str,
    ) -> IdpFuture<'a, ProviderMetadata, DiscoveryError>;

    /// Forgets the cached document at `discovery_url`, so that the next call fetches it.
    fn forget_metadata(&self, discovery_url: &Url);

    /// Fetches the key set at `jwks_uri` (see [`fetch_jwks`]).
    fn jwks<'a>(
        &'a self,
        jwks_uri: &'a Url,
        config: &'a JwksFetchConfig,
    ) -> IdpFuture<'a, FetchedJwks, JwksFetchError>;

    /// The DCR driver for `provider` (RFC 7591 / RFC 7592).
    fn driver(&self, provider: Provider) -> &dyn DcrDriver;
}

/// The [`IdpClient`] that speaks HTTP.
#[derive(Debug)]
pub struct HttpIdp {
    http: IdpHttp,
    discoverer: Discoverer,
    drivers: [Box<dyn DcrDriver>; 4],
}

// === impl HttpIdp ===

impl HttpIdp {
    /// The client with these bounds on every call (a key-set fetch may have its own total
    /// bound, [`JwksFetchConfig::timeout`]). Fails only when the TLS backend cannot start.
    pub fn new(timeouts: &HttpTimeouts) -> Result<Self, TransportError> {
        let http = IdpHttp::new(timeouts)?;
        let drivers = Provider::ALL.map(|provider| driver_for(provider, http.clone()));
        Ok(HttpIdp {
            discoverer: Discoverer::new(http.clone(), DiscoveryConfig::default()),
            http,
            drivers,
        })
    }
}

impl IdpClient for HttpIdp {
    fn metadata<'a>(
        &'a self,
        discovery_url: &'a Url,
        expected_issuer: &'a str,
    ) -> IdpFuture<'a, ProviderMetadata, DiscoveryError> {
        Box::pin(self.discoverer.metadata(
            discovery_url,
            expected_issuer,
            monotonic_now().into_std(),
        ))
    }

    fn forget_metadata(&self, discovery_url: &Url) {
        self.discoverer.invalidate(discovery_url);
    }

    fn jwks<'a>(
        &'a self,
        jwks_uri: &'a Url,
        config: &'a JwksFetchConfig,
    ) -> IdpFuture<'a, FetchedJwks, JwksFetchError> {
        Box::pin(fetch_jwks(&self.http, jwks_uri, config))
    }

    fn driver(&self, provider: Provider) -> &dyn DcrDriver {
        self.drivers[provider.index()].as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_has_its_own_driver() {
        let idp = HttpIdp::new(&HttpTimeouts::default()).unwrap();
        for provider in Provider::ALL {
            assert_eq!(idp.driver(provider).provider(), provider);
        }
    }
}
