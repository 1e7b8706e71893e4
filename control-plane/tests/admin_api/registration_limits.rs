//! The portal's limits on a developer's OAuth clients, over real HTTP against a mock IdP:
//! the per-developer cap on clients (409 `client_limit`) and the hourly budget of
//! registrations and secret rotations (429 `rate_limited` with `Retry-After`), both set by
//! the operator's configuration.

use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::Method;
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::TestServer;

const INITIAL_TOKEN: &str = "initial-token-for-limits";

/// Registers each client under a new `client_id`.
struct Registrar {
    base: String,
    next: AtomicUsize,
}

impl Respond for Registrar {
    fn respond(&self, _request: &Request) -> ResponseTemplate {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        ResponseTemplate::new(201).set_body_json(json!({
            "client_id": format!("client-{n}"), "client_secret": format!("secret-{n}"),
            "client_secret_expires_at": 0, "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_post", "response_types": [],
            "redirect_uris": [], "client_name": "App",
            "registration_access_token": format!("rat-{n}"),
            "registration_client_uri": format!("{}/reg/client-{n}", self.base),
        }))
    }
}

/// Answers an RFC 7592 update with a new secret for the client in the path.
struct Updater;

impl Respond for Updater {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut answer: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        answer["client_secret"] = json!("rotated-secret");
        answer["registration_access_token"] = json!("rat-rotated");
        ResponseTemplate::new(200).set_body_json(answer)
    }
}

async fn idp() -> MockServer {
    let idp = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex("^/reg$"))
        .respond_with(Registrar {
            base: idp.uri(),
            next: AtomicUsize::new(1),
        })
        .mount(&idp)
        .await;
    Mock::given(method("PUT"))
        .and(path_regex("^/reg/client-[0-9]+$"))
        .respond_with(Updater)
        .mount(&idp)
        .await;
    Mock::given(method("DELETE"))
        .and(path_regex("^/reg/client-[0-9]+$"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&idp)
        .await;
    idp
}

/// A developer's portal session: sends JSON with the session cookie.
struct Developer<'a> {
    server: &'a TestServer,
    cookie: String,
}

impl Developer<'_> {
    async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Value,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut headers = vec![
            ("content-type", "application/json"),
            ("cookie", self.cookie.as_str()),
        ];
        if let Some(key) = key {
            headers.push(("idempotency-key", key));
        }
        let (status, headers, text) = self
            .server
            .text(
                method,
                &format!("/portal/api/v1{path}"),
                &headers,
                body.to_string().into_bytes(),
            )
            .await;
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    async fn register(&self, key: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        self.send(
            Method::POST,
            "/oauth-clients",
            Some(key),
            json!({"catalogue_entries": ["orders"], "client_name": "App"}),
        )
        .await
    }
}

#[tokio::test]
async fn the_client_cap_and_the_hourly_budget_answer_their_documented_codes() {
    let server = TestServer::start_with(|config| {
        config.portal.max_clients_per_developer = 2;
        config.portal.registrations_per_hour = 3;
    })
    .await;
    let idp = idp().await;
    server.issuer("idp").await;
    server.api("orders", "idp").await;
    server.policy("gold", "orders").await;
    server.entry("orders", "gold").await;
    server
        .put(
            "/admin/v1/dcr",
            json!({"enabled": true, "issuer": idp.uri(),
                   "registration_endpoint": format!("{}/reg", idp.uri()),
                   "token_endpoint": format!("{}/token", idp.uri()),
                   "initial_access_token": INITIAL_TOKEN}),
            Some("*"),
        )
        .await
        .ok(200);
    let (status, headers, text) = server
        .text(
            Method::POST,
            "/portal/api/v1/signup",
            &[("content-type", "application/json")],
            json!({"email": "ada@example.com", "name": "Ada", "password": "correct horse battery"})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(status, 201, "{text}");
    let developer = Developer {
        server: &server,
        cookie: headers["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned(),
    };

    // Two clients: the cap.
    let (status, _, first) = developer.register("key-1").await;
    assert_eq!(status, 201, "{first}");
    let (status, _, second) = developer.register("key-2").await;
    assert_eq!(status, 201, "{second}");
    let (status, _, capped) = developer.register("key-3").await;
    assert_eq!(status, 409, "{capped}");
    assert_eq!(capped["error"], "client_limit");
    assert!(
        capped["message"]
            .as_str()
            .unwrap()
            .contains("2 OAuth clients"),
        "{capped}"
    );

    // A rotation spends the third of the hour's three (the refused registration did not).
    let first_id = first["client"]["id"].as_str().unwrap();
    let (status, _, rotated) = developer
        .send(
            Method::POST,
            &format!("/oauth-clients/{first_id}/rotate-secret"),
            None,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["client_secret"], "rotated-secret");

    // Under the cap again, but the hour's budget is spent: registrations and rotations wait.
    let second_id = second["client"]["id"].as_str().unwrap();
    let (status, _, deleted) = developer
        .send(
            Method::DELETE,
            &format!("/oauth-clients/{second_id}"),
            None,
            json!({}),
        )
        .await;
    assert_eq!(status, 204, "{deleted}");
    let (status, headers, limited) = developer.register("key-4").await;
    assert_eq!(status, 429, "{limited}");
    assert_eq!(limited["error"], "rate_limited");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((3500..=3600).contains(&retry_after), "{retry_after}");
    let (status, _, limited) = developer
        .send(
            Method::POST,
            &format!("/oauth-clients/{first_id}/rotate-secret"),
            None,
            json!({}),
        )
        .await;
    assert_eq!(status, 429, "{limited}");
    assert_eq!(limited["error"], "rate_limited");
    server.stop().await;
}
