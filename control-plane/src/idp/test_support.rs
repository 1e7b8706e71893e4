//! Helpers shared by the IdP layer's tests: HTTP clients, the one request a mock received, a
//! URL where nothing listens, and an IdP client that answers without HTTP ([`FakeIdp`]).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use url::Url;
use wiremock::{MockServer, Request};

use super::client::{IdpClient, IdpFuture};
use super::dcr::{
    ClientMetadata, DcrDriver, DcrError, DcrFuture, Deletion, ManagedClient, Provider,
    RegisteredClient, RegistrationTarget,
};
use super::discovery::{DiscoveryError, ProviderMetadata};
use super::jwks_fetch::{FetchedJwks, JwksFetchConfig, JwksFetchError};
use super::{HttpTimeouts, IdpHttp, http_client};

/// A client with the default timeouts.
pub(crate) fn client() -> IdpHttp {
    http_client(&HttpTimeouts::default()).unwrap()
}

/// A client that gives up after 200 ms, for tests of the timeout path.
pub(crate) fn impatient_client() -> IdpHttp {
    http_client(&HttpTimeouts {
        connect: Duration::from_millis(200),
        total: Duration::from_millis(200),
    })
    .unwrap()
}

/// How long a mock waits before answering in timeout tests: far longer than
/// [`impatient_client`] waits, short enough not to hold the test up when the server shuts down.
pub(crate) const SLOW: Duration = Duration::from_secs(3);

/// `path` on the mock server.
pub(crate) fn url(server: &MockServer, path: &str) -> Url {
    Url::parse(&format!("{}{path}", server.uri())).unwrap()
}

/// The single request the server received (fails the test if there were more or none).
pub(crate) async fn only_request(server: &MockServer) -> Request {
    let mut requests = server.received_requests().await.unwrap();
    assert_eq!(
        requests.len(),
        1,
        "expected exactly one request: {requests:?}"
    );
    requests.remove(0)
}

/// A header of a received request as text.
pub(crate) fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers
        .get(name)
        .map(|value| value.to_str().unwrap())
}

/// A URL on 127.0.0.1 where nothing listens: the port was bound and released.
pub(crate) fn refused_url(path: &str) -> Url {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    Url::parse(&format!("http://127.0.0.1:{port}{path}")).unwrap()
}

/// The JSON body of a received request.
pub(crate) fn json_body(request: &Request) -> serde_json::Value {
    serde_json::from_slice(&request.body).unwrap()
}

/// An [`IdpClient`] that answers without HTTP, for service tests: no discovery document, key
/// sets as scripted ([`FakeIdp::answer_jwks`]; an unscripted fetch finds no `keys` array),
/// and for every provider one [`FakeDriver`] that plays scripted answers and records what it
/// was asked.
#[derive(Debug, Default)]
pub(crate) struct FakeIdp {
    pub(crate) driver: FakeDriver,
    jwks_answers: Mutex<VecDeque<Result<FetchedJwks, JwksFetchError>>>,
    /// When each key-set fetch was made (tokio's clock).
    jwks_fetches: tokio::sync::watch::Sender<Vec<tokio::time::Instant>>,
}

impl FakeIdp {
    /// Scripts the answer to the next key-set fetch.
    pub(crate) fn answer_jwks(&self, answer: Result<FetchedJwks, JwksFetchError>) {
        self.jwks_answers.lock().unwrap().push_back(answer);
    }

    /// Waits until `count` key sets have been fetched, and answers when each was (tokio's
    /// clock: under paused time, the wait lets the clock run to the next timer).
    pub(crate) async fn jwks_fetched(&self, count: usize) -> Vec<tokio::time::Instant> {
        self.jwks_fetches
            .subscribe()
            .wait_for(|fetches| fetches.len() >= count)
            .await
            .unwrap()
            .clone()
    }
}

impl IdpClient for FakeIdp {
    fn metadata<'a>(
        &'a self,
        discovery_url: &'a Url,
        _expected_issuer: &'a str,
    ) -> IdpFuture<'a, ProviderMetadata, DiscoveryError> {
        let error = DiscoveryError::MissingField {
            url: discovery_url.to_string(),
            field: "issuer",
        };
        Box::pin(async move { Err(error) })
    }

    fn forget_metadata(&self, _discovery_url: &Url) {}

    fn jwks<'a>(
        &'a self,
        jwks_uri: &'a Url,
        _config: &'a JwksFetchConfig,
    ) -> IdpFuture<'a, FetchedJwks, JwksFetchError> {
        self.jwks_fetches
            .send_modify(|fetches| fetches.push(crate::service::monotonic_now()));
        let answer = self.jwks_answers.lock().unwrap().pop_front();
        let answer = answer.unwrap_or_else(|| {
            Err(JwksFetchError::NoKeysArray {
                url: jwks_uri.to_string(),
            })
        });
        Box::pin(async move { answer })
    }

    fn driver(&self, _provider: Provider) -> &dyn DcrDriver {
        &self.driver
    }
}

/// A DCR driver with scripted answers: each call takes the next answer scripted for it (an
/// unscripted call fails), and is recorded as `register`, `read <client_id>`,
/// `update <client_id>` or `delete <client_id>`.
#[derive(Debug, Default)]
pub(crate) struct FakeDriver {
    registrations: Mutex<VecDeque<Result<RegisteredClient, DcrError>>>,
    deletions: Mutex<VecDeque<Result<Deletion, DcrError>>>,
    calls: Mutex<Vec<String>>,
}

impl FakeDriver {
    /// Scripts the answer to the next registration.
    pub(crate) fn answer_register(&self, answer: Result<RegisteredClient, DcrError>) {
        self.registrations.lock().unwrap().push_back(answer);
    }

    /// Scripts the answer to the next deletion.
    pub(crate) fn answer_delete(&self, answer: Result<Deletion, DcrError>) {
        self.deletions.lock().unwrap().push_back(answer);
    }

    /// The calls so far, in order.
    pub(crate) fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

fn unscripted<T>(call: &str) -> Result<T, DcrError> {
    Err(DcrError::InvalidResponse {
        reason: format!("the fake driver has no answer scripted for {call}"),
    })
}

impl DcrDriver for FakeDriver {
    fn provider(&self) -> Provider {
        Provider::Other
    }

    fn register<'a>(
        &'a self,
        _target: &'a RegistrationTarget,
        _metadata: &'a ClientMetadata,
    ) -> DcrFuture<'a, RegisteredClient> {
        self.record("register".to_owned());
        let answer = self.registrations.lock().unwrap().pop_front();
        Box::pin(async move { answer.unwrap_or_else(|| unscripted("register")) })
    }

    fn read<'a>(
        &'a self,
        _target: &'a RegistrationTarget,
        client: &'a ManagedClient,
    ) -> DcrFuture<'a, RegisteredClient> {
        self.record(format!("read {}", client.client_id));
        Box::pin(async move { unscripted("read") })
    }

    fn update<'a>(
        &'a self,
        _target: &'a RegistrationTarget,
        client: &'a ManagedClient,
        _metadata: &'a ClientMetadata,
    ) -> DcrFuture<'a, RegisteredClient> {
        self.record(format!("update {}", client.client_id));
        Box::pin(async move { unscripted("update") })
    }

    fn delete<'a>(
        &'a self,
        _target: &'a RegistrationTarget,
        client: &'a ManagedClient,
    ) -> DcrFuture<'a, Deletion> {
        self.record(format!("delete {}", client.client_id));
        let answer = self.deletions.lock().unwrap().pop_front();
        Box::pin(async move { answer.unwrap_or_else(|| unscripted("delete")) })
    }
}
