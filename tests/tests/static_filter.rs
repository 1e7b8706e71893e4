//! The filter in a real Envoy with a static snapshot: valid tokens reach the upstream with the
//! caller's identity, every hostile token class is refused with its code, unprotected paths
//! pass untouched.

use std::time::{SystemTime, UNIX_EPOCH};

use portico_core::alg::Algorithm;
use portico_core::testing::{TestKey, hostile_tokens, jwks};
use portico_tests::{EchoUpstream, Echoed, Envoy, EnvoyConfig};
use serde_json::{Value, json};

const ISSUER: &str = "https://idp.portico.test";

fn plugin_config() -> String {
    json!({
        "snapshot": {
            "version": 1,
            "apis": [{
                "id": "orders",
                "listen_path": "/orders",
                "issuers": ["idp"],
                "accept_any_audience": true,
                "allowed_algorithms": ["RS256", "ES256"],
                "identity_claims": ["client_id", "sub"],
                "default_policies": ["everyone"]
            }],
            "issuers": [{
                "id": "idp",
                "issuer": ISSUER,
                "keys": jwks(&[&TestKey::rsa_a(), &TestKey::p256_a(), &TestKey::p256_b()])["keys"]
            }],
            "policies": [{"id": "everyone", "access_rights": [{"api": "orders"}]}]
        }
    })
    .to_string()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(client_id: &str) -> Value {
    json!({"iss": ISSUER, "client_id": client_id, "sub": "ignored", "exp": now() + 300, "iat": now()})
}

struct Setup {
    envoy: Envoy,
    _upstream: EchoUpstream,
    http: reqwest::Client,
}

async fn setup() -> Setup {
    let upstream = EchoUpstream::start().await;
    let envoy = Envoy::start(&EnvoyConfig::new(plugin_config(), upstream.addr)).await;
    Setup {
        envoy,
        _upstream: upstream,
        http: reqwest::Client::new(),
    }
}

impl Setup {
    async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self
            .http
            .get(self.envoy.url(path))
            .header("x-portico-client-id", "spoofed-by-client");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("a response from Envoy")
    }
}

#[tokio::test]
async fn valid_rs256_and_es256_tokens_reach_the_upstream_with_the_identity_header() {
    let setup = setup().await;
    for (key, alg, client) in [
        (TestKey::rsa_a(), Algorithm::RS256, "rsa-client"),
        (TestKey::p256_a(), Algorithm::ES256, "ec-client"),
    ] {
        let token = key.token(alg, &claims(client));
        let response = setup.get("/orders/42?expand=items", Some(&token)).await;
        assert_eq!(response.status(), 200, "{alg}");
        let echoed: Echoed = response.json().await.unwrap();
        assert_eq!(echoed.path, "/orders/42?expand=items");
        assert_eq!(
            echoed
                .headers
                .get("x-portico-client-id")
                .map(String::as_str),
            Some(client),
            "{alg}: the client's spoofed copy must be replaced"
        );
    }
    setup
        .envoy
        .await_stat(
            "wasmcustom.portico.filter.decisions.api.orders.reason.allowed",
            2,
        )
        .await;
    // Both algorithms are checked by Envoy's BoringSSL, not by the pure-Rust fallback.
    for alg in ["RS256", "ES256"] {
        let checks = format!("wasmcustom.portico.filter.verifications.alg.{alg}.path");
        setup.envoy.await_stat(&format!("{checks}.host"), 1).await;
        assert_eq!(setup.envoy.stat(&format!("{checks}.software")).await, None);
    }
}

#[tokio::test]
async fn every_hostile_token_class_is_refused_with_its_code() {
    let setup = setup().await;
    for hostile in hostile_tokens(ISSUER, now()) {
        let response = setup.get("/orders", Some(&hostile.token)).await;
        assert_eq!(response.status(), 401, "{}", hostile.class);
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            challenge.starts_with(
                "Bearer realm=\"portico\", error=\"invalid_token\", error_description=\""
            ),
            "{}: {challenge}",
            hostile.class
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], hostile.code, "{}: {body}", hostile.class);
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_request_without_a_token_is_refused_with_a_bearer_challenge() {
    let setup = setup().await;
    let response = setup.get("/orders", None).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"portico\""
    );
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "missing_token");
}

#[tokio::test]
async fn paths_outside_the_api_pass_untouched_except_for_spoofed_identity() {
    let setup = setup().await;
    let response = setup.get("/ordersx/public?q=1", None).await;
    assert_eq!(response.status(), 200);
    let echoed: Echoed = response.json().await.unwrap();
    assert_eq!(echoed.path, "/ordersx/public?q=1");
    assert!(!echoed.headers.contains_key("x-portico-client-id"));
    setup
        .envoy
        .await_stat(
            "wasmcustom.portico.filter.decisions.api._none.reason.passed_through",
            1,
        )
        .await;
}

#[tokio::test]
async fn path_tricks_do_not_reach_the_api_without_a_token() {
    let setup = setup().await;
    for path in [
        "/public/../orders/1",
        "//orders",
        "/%6Frders/1",
        "/x/%2e%2e/orders",
    ] {
        let response = setup.get(path, None).await;
        assert_eq!(response.status(), 401, "{path}");
    }
}
