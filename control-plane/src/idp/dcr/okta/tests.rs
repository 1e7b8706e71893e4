use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::idp::test_support::{client, header, json_body, only_request, url};
use crate::secret::Secret;

const CLIENTS: &str = "/oauth2/v1/clients";
const CLIENT: &str = "/oauth2/v1/clients/0oa1bcd";
const API_TOKEN: &str = "00QCjAl4MlV-WPXM-0HmjFx-vbGua";
const ACCESS_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzY3AiOlsib2t0YS5jbGllbnRzLnJlZ2lzdGVyIl19.c2ln";

fn driver() -> OktaDriver {
    OktaDriver::new(client())
}

fn target(server: &MockServer, token: Option<&str>) -> RegistrationTarget {
    RegistrationTarget {
        registration_endpoint: url(server, CLIENTS),
        initial_access_token: token.map(Secret::new),
    }
}

/// Okta's answer: no registration access token, no configuration URI, Okta's own members.
fn answer() -> serde_json::Value {
    json!({
        "client_id": "0oa1bcd",
        "client_id_issued_at": 1_453_913_425,
        "client_name": "Payments app",
        "client_secret": "okta-secret",
        "client_secret_expires_at": 0,
        "application_type": "service",
        "redirect_uris": [],
        "response_types": ["token"],
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "client_secret_basic",
        "urn:okta:client_status": "active",
        "_links": {"app": {"href": "https://example.okta.com/api/v1/apps/0oa1bcd"}},
    })
}

fn managed(server: &MockServer) -> ManagedClient {
    ManagedClient {
        client_id: "0oa1bcd".to_owned(),
        registration_client_uri: Some(url(server, CLIENT)),
        registration_access_token: None,
    }
}

async fn answering(verb: &str, at: &str, response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method(verb))
        .and(path(at))
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn register_sends_the_api_token_as_ssws_and_asks_for_a_service_app() {
    let server = answering(
        "POST",
        CLIENTS,
        ResponseTemplate::new(201).set_body_json(answer()),
    )
    .await;
    let metadata = ClientMetadata {
        scope: Some("payments:read".to_owned()),
        ..ClientMetadata::client_credentials("Payments app")
    };
    let registered = driver()
        .register(&target(&server, Some(API_TOKEN)), &metadata)
        .await
        .unwrap();
    let request = only_request(&server).await;
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), CLIENTS);
    assert_eq!(
        header(&request, "authorization"),
        Some(format!("SSWS {API_TOKEN}").as_str())
    );
    assert_eq!(header(&request, "content-type"), Some("application/json"));
    assert_eq!(
        json_body(&request),
        json!({
            "client_name": "Payments app",
            "application_type": "service",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_post",
            "response_types": [],
            "redirect_uris": [],
        })
    );
    assert_eq!(
        registered.client_secret.as_ref().map(Secret::expose),
        Some("okta-secret")
    );
    assert_eq!(registered.registration_access_token, None);
    assert_eq!(registered.managed(), managed(&server));
    assert_eq!(
        registered.metadata.token_endpoint_auth_method.as_deref(),
        Some("client_secret_basic"),
        "the portal must show what Okta registered"
    );
}

#[tokio::test]
async fn register_sends_an_oauth_access_token_as_bearer() {
    let server = answering(
        "POST",
        CLIENTS,
        ResponseTemplate::new(201).set_body_json(answer()),
    )
    .await;
    driver()
        .register(
            &target(&server, Some(ACCESS_TOKEN)),
            &ClientMetadata::client_credentials("Payments app"),
        )
        .await
        .unwrap();
    let request = only_request(&server).await;
    assert_eq!(
        header(&request, "authorization"),
        Some(format!("Bearer {ACCESS_TOKEN}").as_str())
    );
}

#[tokio::test]
async fn register_keeps_an_explicit_application_type() {
    let server = answering(
        "POST",
        CLIENTS,
        ResponseTemplate::new(201).set_body_json(answer()),
    )
    .await;
    let metadata = ClientMetadata {
        grant_types: vec!["authorization_code".to_owned()],
        response_types: vec!["code".to_owned()],
        redirect_uris: vec!["https://app.example.com/cb".to_owned()],
        application_type: Some("web".to_owned()),
        ..ClientMetadata::client_credentials("Web app")
    };
    let _ = driver()
        .register(&target(&server, Some(API_TOKEN)), &metadata)
        .await;
    assert_eq!(
        json_body(&only_request(&server).await)["application_type"],
        json!("web")
    );
}

#[tokio::test]
async fn register_without_a_token_is_refused_before_anything_is_sent() {
    let server = answering("POST", CLIENTS, ResponseTemplate::new(201)).await;
    let err = driver()
        .register(
            &target(&server, None),
            &ClientMetadata::client_credentials("Payments app"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, DcrError::Misconfigured { .. }), "{err:?}");
    assert!(err.to_string().contains("Okta needs a token"));
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn register_reports_oktas_error_description() {
    let server = answering(
        "POST",
        CLIENTS,
        ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_client_metadata",
            "error_description": "'grant_types' must contain 'authorization_code' when 'application_type' is 'web'.",
        })),
    )
    .await;
    let err = driver()
        .register(
            &target(&server, Some(API_TOKEN)),
            &ClientMetadata::client_credentials("Payments app"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DcrError::Rejected { status: 400, error: Some(code), .. } if code == "invalid_client_metadata"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_rejected_api_token_reports_oktas_error_summary() {
    let server = answering(
        "POST",
        CLIENTS,
        ResponseTemplate::new(401).set_body_json(json!({
            "errorCode": "E0000011",
            "errorSummary": "Invalid token provided",
            "errorLink": "E0000011",
            "errorId": "oaeXXXX",
            "errorCauses": [],
        })),
    )
    .await;
    let err = driver()
        .register(
            &target(&server, Some(API_TOKEN)),
            &ClientMetadata::client_credentials("Payments app"),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        DcrError::Unauthorized {
            status: 401,
            error: Some("E0000011".to_owned()),
            error_description: Some("Invalid token provided".to_owned()),
        }
    );
    assert!(!err.to_string().contains(API_TOKEN));
}

#[tokio::test]
async fn read_gets_the_client_with_the_api_token() {
    let server = MockServer::start().await;
    let mut body = answer();
    body.as_object_mut().unwrap().remove("client_secret");
    Mock::given(method("GET"))
        .and(path(CLIENT))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    let read = driver()
        .read(&target(&server, Some(API_TOKEN)), &managed(&server))
        .await
        .unwrap();
    let request = only_request(&server).await;
    assert_eq!(
        header(&request, "authorization"),
        Some(format!("SSWS {API_TOKEN}").as_str())
    );
    assert_eq!(read.client_secret, None);
    assert_eq!(read.managed(), managed(&server));
}

#[tokio::test]
async fn update_puts_every_setting_with_the_client_id_to_the_client_url() {
    let server = answering(
        "PUT",
        CLIENT,
        ResponseTemplate::new(200).set_body_json(answer()),
    )
    .await;
    let stored_without_uri = ManagedClient {
        registration_client_uri: None,
        ..managed(&server)
    };
    let updated = driver()
        .update(
            &target(&server, Some(API_TOKEN)),
            &stored_without_uri,
            &ClientMetadata::client_credentials("Payments app v2"),
        )
        .await
        .unwrap();
    let request = only_request(&server).await;
    assert_eq!(request.method.as_str(), "PUT");
    assert_eq!(request.url.path(), CLIENT);
    assert_eq!(
        header(&request, "authorization"),
        Some(format!("SSWS {API_TOKEN}").as_str())
    );
    assert_eq!(
        json_body(&request),
        json!({
            "client_id": "0oa1bcd",
            "client_name": "Payments app v2",
            "application_type": "service",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_post",
            "response_types": [],
            "redirect_uris": [],
        })
    );
    assert_eq!(updated.registration_access_token, None);
}

#[tokio::test]
async fn update_of_a_deleted_client_is_client_not_found() {
    let server = answering("PUT", CLIENT, ResponseTemplate::new(404)).await;
    let err = driver()
        .update(
            &target(&server, Some(API_TOKEN)),
            &managed(&server),
            &ClientMetadata::client_credentials("Payments app"),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        DcrError::ClientNotFound {
            client_id: "0oa1bcd".to_owned()
        }
    );
}

#[tokio::test]
async fn delete_answers_deleted_for_204_and_already_gone_for_404() {
    let server = answering("DELETE", CLIENT, ResponseTemplate::new(204)).await;
    let outcome = driver()
        .delete(&target(&server, Some(API_TOKEN)), &managed(&server))
        .await;
    assert_eq!(outcome, Ok(Deletion::Deleted));
    let request = only_request(&server).await;
    assert_eq!(
        header(&request, "authorization"),
        Some(format!("SSWS {API_TOKEN}").as_str())
    );

    let server = answering("DELETE", CLIENT, ResponseTemplate::new(404)).await;
    let outcome = driver()
        .delete(&target(&server, Some(API_TOKEN)), &managed(&server))
        .await;
    assert_eq!(outcome, Ok(Deletion::AlreadyGone));
}
