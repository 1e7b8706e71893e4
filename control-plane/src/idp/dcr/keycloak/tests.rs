use serde_json::json;
use url::Url;
use wiremock::matchers::{header as header_is, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::idp::dcr::{
    ClientMetadata, DcrDriver, Deletion, ManagedClient, RegisteredClient, RegistrationTarget,
};
use crate::idp::test_support::{client, header, json_body, only_request, url};
use crate::secret::Secret;

const ENDPOINT: &str = "/realms/portico/clients-registrations/openid-connect";
const CLIENT: &str = "/realms/portico/clients-registrations/openid-connect/8d0c-cli";

fn driver() -> super::Rfc7591Driver {
    super::driver(client())
}

fn target(server: &MockServer) -> RegistrationTarget {
    RegistrationTarget {
        registration_endpoint: url(server, ENDPOINT),
        initial_access_token: Some(Secret::new("iat-keycloak")),
    }
}

fn answer(server: &MockServer, token: &str) -> serde_json::Value {
    json!({
        "client_id": "8d0c-cli",
        "client_secret": "kc-secret",
        "client_secret_expires_at": 0,
        "client_id_issued_at": 1_700_000_000,
        "registration_access_token": token,
        "registration_client_uri": format!("{}{CLIENT}", server.uri()),
        "client_name": "Payments app",
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "client_secret_post",
        "response_types": [],
        "redirect_uris": [],
    })
}

fn managed(server: &MockServer, token: &str) -> ManagedClient {
    ManagedClient {
        client_id: "8d0c-cli".to_owned(),
        registration_client_uri: Some(url(server, CLIENT)),
        registration_access_token: Some(Secret::new(token)),
    }
}

fn token(client: &RegisteredClient) -> Option<&str> {
    client
        .registration_access_token
        .as_ref()
        .map(Secret::expose)
}

#[test]
fn registration_endpoint_is_under_the_realm() {
    let base = Url::parse("https://sso.example.com").unwrap();
    assert_eq!(
        registration_endpoint(&base, "portico").unwrap().as_str(),
        "https://sso.example.com/realms/portico/clients-registrations/openid-connect"
    );
    let legacy = Url::parse("https://sso.example.com/auth/").unwrap();
    assert_eq!(
        registration_endpoint(&legacy, "my realm").unwrap().as_str(),
        "https://sso.example.com/auth/realms/my%20realm/clients-registrations/openid-connect"
    );
    assert!(matches!(
        registration_endpoint(&base, ""),
        Err(DcrError::Misconfigured { .. })
    ));
}

#[tokio::test]
async fn register_posts_to_the_realm_endpoint_with_the_initial_access_token_and_no_client_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(ENDPOINT))
        .respond_with(ResponseTemplate::new(201).set_body_json(answer(&server, "rat-1")))
        .mount(&server)
        .await;
    let registered = driver()
        .register(
            &target(&server),
            &ClientMetadata::client_credentials("Payments app"),
        )
        .await
        .unwrap();
    let request = only_request(&server).await;
    assert_eq!(
        header(&request, "authorization"),
        Some("Bearer iat-keycloak")
    );
    assert_eq!(header(&request, "content-type"), Some("application/json"));
    let body = json_body(&request);
    assert_eq!(body.get("client_id"), None);
    assert_eq!(body["response_types"], json!([]));
    assert_eq!(token(&registered), Some("rat-1"));
    assert_eq!(registered.managed(), managed(&server, "rat-1"));
}

#[tokio::test]
async fn register_derives_the_client_uri_when_keycloak_omits_it() {
    let server = MockServer::start().await;
    let mut body = answer(&server, "rat-1");
    body.as_object_mut()
        .unwrap()
        .remove("registration_client_uri");
    Mock::given(method("POST"))
        .and(path(ENDPOINT))
        .respond_with(ResponseTemplate::new(201).set_body_json(body))
        .mount(&server)
        .await;
    let registered = driver()
        .register(
            &target(&server),
            &ClientMetadata::client_credentials("Payments app"),
        )
        .await
        .unwrap();
    assert_eq!(
        registered.registration_client_uri,
        Some(url(&server, CLIENT))
    );
}

#[tokio::test]
async fn register_with_an_exhausted_initial_access_token_says_why() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(ENDPOINT))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "invalid_token",
            "error_description": "No remaining count on initial access token",
        })))
        .mount(&server)
        .await;
    let err = driver()
        .register(
            &target(&server),
            &ClientMetadata::client_credentials("Payments app"),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the identity provider did not accept Portico's token (HTTP 401, invalid_token): No remaining count on initial access token"
    );
}

#[tokio::test]
async fn every_update_rotates_the_registration_access_token_and_the_newest_is_used_next() {
    let server = MockServer::start().await;
    for (sent, returned) in [("rat-1", "rat-2"), ("rat-2", "rat-3")] {
        Mock::given(method("PUT"))
            .and(path(CLIENT))
            .and(header_is(
                "authorization",
                format!("Bearer {sent}").as_str(),
            ))
            .respond_with(ResponseTemplate::new(200).set_body_json(answer(&server, returned)))
            .expect(1)
            .mount(&server)
            .await;
    }
    let metadata = ClientMetadata::client_credentials("Payments app");
    let first = driver()
        .update(&target(&server), &managed(&server, "rat-1"), &metadata)
        .await
        .unwrap();
    assert_eq!(token(&first), Some("rat-2"));
    let second = driver()
        .update(&target(&server), &first.managed(), &metadata)
        .await
        .unwrap();
    assert_eq!(token(&second), Some("rat-3"));
    let requests = server.received_requests().await.unwrap();
    assert_eq!(json_body(&requests[0])["client_id"], json!("8d0c-cli"));
    server.verify().await;
}

#[tokio::test]
async fn read_returns_the_token_keycloak_sends_back() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(CLIENT))
        .and(header_is("authorization", "Bearer rat-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer(&server, "rat-1b")))
        .mount(&server)
        .await;
    let read = driver()
        .read(&target(&server), &managed(&server, "rat-1"))
        .await
        .unwrap();
    assert_eq!(token(&read), Some("rat-1b"));
}

#[tokio::test]
async fn an_update_answer_without_a_token_keeps_the_one_used() {
    let server = MockServer::start().await;
    let mut body = answer(&server, "unused");
    body.as_object_mut()
        .unwrap()
        .remove("registration_access_token");
    Mock::given(method("PUT"))
        .and(path(CLIENT))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    let updated = driver()
        .update(
            &target(&server),
            &managed(&server, "rat-1"),
            &ClientMetadata::client_credentials("Payments app"),
        )
        .await
        .unwrap();
    assert_eq!(token(&updated), Some("rat-1"));
}

#[tokio::test]
async fn delete_uses_the_registration_access_token_at_the_client_path() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path(CLIENT))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let outcome = driver()
        .delete(&target(&server), &managed(&server, "rat-1"))
        .await;
    assert_eq!(outcome, Ok(Deletion::Deleted));
    assert_eq!(
        header(&only_request(&server).await, "authorization"),
        Some("Bearer rat-1")
    );
}
