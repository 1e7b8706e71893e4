//! Interoperability at the edges (issue 12), through a real Envoy: every spelling of a
//! protected path that some upstream reads as the protected one needs a token; a token sent
//! two ways is refused; a token in a place the API does not read never reaches the upstream;
//! method overrides are refused where policies restrict methods; no spelling of a trusted
//! header reaches the upstream. Each case runs through an Envoy configured as shipped
//! (normalising paths, dropping headers with `_`) and through one that hands the filter the
//! request as received, so the filter's own protection shows.

use std::time::{SystemTime, UNIX_EPOCH};

use portico_core::alg::Algorithm;
use portico_core::testing::{TestKey, jwks};
use portico_tests::{EchoUpstream, Echoed, Envoy, EnvoyConfig};
use reqwest::Method;
use serde_json::{Value, json};

const ISSUER: &str = "https://idp.portico.test";

fn plugin_config() -> String {
    let api = |id: &str, path: &str| {
        json!({
            "id": id,
            "listen_path": path,
            "issuers": ["idp"],
            "accept_any_audience": true,
            "identity_claims": ["client_id"],
            "default_policies": ["reader"]
        })
    };
    let mut web = api("web", "/web");
    web["bypass_cors_preflight"] = json!(true);
    web["token_sources"] = json!({"header": true, "cookie": "session"});
    json!({
        "snapshot": {
            "version": 1,
            "apis": [api("orders", "/orders"), web],
            "issuers": [{"id": "idp", "issuer": ISSUER, "keys": jwks(&[&TestKey::rsa_a()])["keys"]}],
            "policies": [{"id": "reader", "access_rights": [
                {"api": "orders", "methods": ["GET"]},
                {"api": "web", "methods": ["GET"]}
            ]}]
        }
    })
    .to_string()
}

fn token(client_id: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    TestKey::rsa_a().token(
        Algorithm::RS256,
        &json!({"iss": ISSUER, "client_id": client_id, "exp": now + 300, "iat": now}),
    )
}

struct Setup {
    /// Configured as shipped.
    shipped: Envoy,
    /// Without path normalisation or the underscore rule.
    raw: Envoy,
    _upstream: EchoUpstream,
    http: reqwest::Client,
}

async fn setup() -> Setup {
    let upstream = EchoUpstream::start().await;
    let shipped = Envoy::start(&EnvoyConfig::new(plugin_config(), upstream.addr)).await;
    let mut raw_config = EnvoyConfig::new(plugin_config(), upstream.addr);
    raw_config.raw_requests = true;
    let raw = Envoy::start(&raw_config).await;
    Setup {
        shipped,
        raw,
        _upstream: upstream,
        http: reqwest::Client::new(),
    }
}

impl Setup {
    fn envoys(&self) -> [(&'static str, &Envoy); 2] {
        [("shipped", &self.shipped), ("raw", &self.raw)]
    }

    async fn send(
        &self,
        envoy: &Envoy,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self.http.request(method, envoy.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("an answer from Envoy");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, headers, body)
    }

    async fn get(&self, envoy: &Envoy, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let (status, _, body) = self.send(envoy, Method::GET, path, headers).await;
        (status, body)
    }
}

fn echoed(body: Value) -> Echoed {
    serde_json::from_value(body).expect("the echo upstream's answer")
}

#[tokio::test]
async fn every_spelling_of_a_protected_path_needs_a_token() {
    let setup = setup().await;
    for (name, envoy) in setup.envoys() {
        for path in [
            "/orders;jsessionid=0/1",
            "/Orders/42",
            "/%4Frders/42",
            "/%4frders/42",
            "/orders;/42",
            "/orders%20",
            "/orders.json",
            "/orders.",
            "/orders%3Bjsessionid=0/1",
            "/x%2F..%2Forders/1",
            "/x/..;/orders/1",
            "/%EF%BD%8F%EF%BD%92%EF%BD%84%EF%BD%85%EF%BD%92%EF%BD%93/1",
        ] {
            let (status, body) = setup.get(envoy, path, &[]).await;
            assert_eq!(status, 401, "{name} {path}: {body}");
            assert_eq!(body["error"], "missing_token", "{name} {path}");
        }
        let (status, body) = setup.get(envoy, "/orders%00.json", &[]).await;
        assert_eq!(status, 400, "{name}: {body}");
        let (status, _) = setup.get(envoy, "/ordersx/1", &[]).await;
        assert_eq!(status, 200, "{name}: other paths still pass");
    }
    // The raw Envoy really hands the request on as received.
    let (_, body) = setup.get(&setup.raw, "/public//x%41", &[]).await;
    assert_eq!(echoed(body).path, "/public//x%41");
    let (_, body) = setup.get(&setup.shipped, "/public//x%41", &[]).await;
    assert_eq!(echoed(body).path, "/public/xA");
}

#[tokio::test]
async fn a_token_sent_two_ways_is_refused_and_nothing_is_forwarded() {
    let setup = setup().await;
    let header = format!("Bearer {}", token("client-a"));
    let path = format!("/orders/1?access_token={}", token("client-b"));
    for (name, envoy) in setup.envoys() {
        let (status, headers, body) = setup
            .send(envoy, Method::GET, &path, &[("authorization", &header)])
            .await;
        assert_eq!(status, 400, "{name}: {body}");
        assert_eq!(body["error"], "invalid_request", "{name}: {body}");
        let challenge = headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.contains("error=\"invalid_request\""),
            "{challenge}"
        );
        // The query token alone is in a place the API does not read.
        let (status, body) = setup.get(envoy, &path, &[]).await;
        assert_eq!((status, &body["error"]), (401, &json!("missing_token")));
    }
}

#[tokio::test]
async fn token_places_the_api_does_not_read_are_stripped_before_forwarding() {
    let setup = setup().await;
    let header = format!("Bearer {}", token("client-a"));
    for (name, envoy) in setup.envoys() {
        let (status, body) = setup
            .get(
                envoy,
                "/orders/1?access_token=&x=1",
                &[("authorization", &header)],
            )
            .await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(echoed(body).path, "/orders/1?x=1", "{name}");
        // A CORS preflight passes without a token, and without any token it carried.
        let (status, _, body) = setup
            .send(
                envoy,
                Method::OPTIONS,
                "/web/items?access_token=abc&x=1",
                &[
                    ("origin", "https://app.example.com"),
                    ("access-control-request-method", "GET"),
                    ("authorization", &header),
                    ("cookie", "theme=dark; session=abc"),
                ],
            )
            .await;
        assert_eq!(status, 200, "{name}: {body}");
        let echoed = echoed(body);
        assert_eq!(echoed.method, "OPTIONS");
        assert_eq!(echoed.path, "/web/items?x=1", "{name}");
        assert!(!echoed.headers.contains_key("authorization"), "{name}");
        assert_eq!(echoed.headers["cookie"], "theme=dark", "{name}");
        // A preflight on an API that does not let them pass needs a token.
        let (status, _, _) = setup
            .send(
                envoy,
                Method::OPTIONS,
                "/orders/1",
                &[
                    ("origin", "https://app.example.com"),
                    ("access-control-request-method", "GET"),
                ],
            )
            .await;
        assert_eq!(status, 401, "{name}");
    }
}

#[tokio::test]
async fn methods_are_what_the_policy_granted() {
    let setup = setup().await;
    let header = format!("Bearer {}", token("client-a"));
    for (name, envoy) in setup.envoys() {
        for (path, extra) in [
            ("/orders/1", ("x-http-method-override", "DELETE")),
            ("/orders/1", ("x-method-override", "DELETE")),
            ("/orders/1?_method=DELETE", ("x-other", "1")),
        ] {
            let (status, body) = setup
                .get(envoy, path, &[("authorization", &header), extra])
                .await;
            assert_eq!(status, 400, "{name} {path} {extra:?}: {body}");
            assert_eq!(body["error"], "method_override", "{name} {path}");
        }
        // HEAD is granted with GET (RFC 9110 §9.3.2); DELETE is not.
        let (status, _, _) = setup
            .send(
                envoy,
                Method::HEAD,
                "/orders/1",
                &[("authorization", &header)],
            )
            .await;
        assert_eq!(status, 200, "{name}");
        let (status, _, body) = setup
            .send(
                envoy,
                Method::DELETE,
                "/orders/1",
                &[("authorization", &header)],
            )
            .await;
        assert_eq!((status, &body["error"]), (403, &json!("access_denied")));
    }
}

#[tokio::test]
async fn no_spelling_of_a_trusted_header_reaches_the_upstream() {
    let setup = setup().await;
    let header = format!("Bearer {}", token("client-a"));
    let spoofed = [
        ("x_portico_client_id", "spoofed"),
        ("x-portico_client-id", "spoofed"),
        ("x-portico-client-id", "spoofed"),
    ];
    for (name, envoy) in setup.envoys() {
        let mut allowed = spoofed.to_vec();
        allowed.push(("authorization", &header));
        for (path, headers, identity) in [
            ("/Orders/42", allowed.as_slice(), Some("client-a")),
            ("/public/x", &spoofed[..], None),
        ] {
            let (status, body) = setup.get(envoy, path, headers).await;
            assert_eq!(status, 200, "{name} {path}: {body}");
            let echoed = echoed(body);
            assert!(
                !echoed
                    .headers
                    .keys()
                    .any(|header| header.contains("portico_") || header.contains("_client")),
                "{name} {path}: {:?}",
                echoed.headers
            );
            assert_eq!(
                echoed
                    .headers
                    .get("x-portico-client-id")
                    .map(String::as_str),
                identity,
                "{name} {path}"
            );
        }
    }
}
