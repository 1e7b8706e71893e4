//! Helpers shared by the IdP layer's tests: HTTP clients, the one request a mock received, and
//! a URL where nothing listens.

use std::time::Duration;

use url::Url;
use wiremock::{MockServer, Request};

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
