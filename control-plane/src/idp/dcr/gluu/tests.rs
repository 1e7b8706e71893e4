use serde_json::json;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::idp::dcr::DcrError;
use crate::idp::dcr::{ClientMetadata, DcrDriver, Deletion, ManagedClient, RegistrationTarget};
use crate::idp::test_support::{client, header, json_body, only_request, url};
use crate::secret::Secret;

const OXAUTH: &str = "/oxauth/restv1/register";
const JANSSEN: &str = "/jans-auth/restv1/register";
const CLIENT_ID: &str = "@!3BBD.C34D!0008!9C65.DE26";

fn driver() -> super::Rfc7591Driver {
    super::driver(client())
}

fn target(server: &MockServer, at: &str, token: Option<&str>) -> RegistrationTarget {
    RegistrationTarget {
        registration_endpoint: url(server, at),
        initial_access_token: token.map(Secret::new),
    }
}

fn answer(server: &MockServer, at: &str) -> serde_json::Value {
    json!({
        "client_id": CLIENT_ID,
        "client_secret": "gluu-secret",
        "registration_access_token": "gluu-rat",
        "registration_client_uri": format!("{}{at}?client_id={CLIENT_ID}", server.uri()),
        "client_id_issued_at": 1_503_370_360,
        "client_secret_expires_at": 1_503_456_760,
        "grant_types": ["client_credentials"],
        "response_types": [],
        "application_type": "web",
        "token_endpoint_auth_method": "client_secret_post",
        "scopes": ["openid"],
    })
}

fn managed(server: &MockServer, at: &str) -> ManagedClient {
    let mut uri = url(server, at);
    uri.query_pairs_mut().append_pair("client_id", CLIENT_ID);
    ManagedClient {
        client_id: CLIENT_ID.to_owned(),
        registration_client_uri: Some(uri),
        registration_access_token: Some(Secret::new("gluu-rat")),
    }
}

#[tokio::test]
async fn register_without_an_initial_access_token_sends_no_authorization_header() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(OXAUTH))
        .respond_with(ResponseTemplate::new(201).set_body_json(answer(&server, OXAUTH)))
        .mount(&server)
        .await;
    let registered = driver()
        .register(
            &target(&server, OXAUTH, None),
            &ClientMetadata::client_credentials("Payments app"),
        )
        .await
        .unwrap();
    let request = only_request(&server).await;
    assert_eq!(request.url.path(), OXAUTH);
    assert_eq!(header(&request, "authorization"), None);
    assert_eq!(header(&request, "content-type"), Some("application/json"));
    assert_eq!(
        json_body(&request),
        json!({
            "client_name": "Payments app",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_post",
            "response_types": [],
            "redirect_uris": [],
            "access_token_as_jwt": true,
            "access_token_signing_alg": "RS256",
        })
    );
    assert_eq!(
        registered.registration_client_uri.map(String::from),
        Some(format!("{}{OXAUTH}?client_id={CLIENT_ID}", server.uri()))
    );
    assert_eq!(registered.client_secret_expires_at, Some(1_503_456_760));
}

#[tokio::test]
async fn register_sends_a_configured_initial_access_token_as_bearer() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(JANSSEN))
        .respond_with(ResponseTemplate::new(201).set_body_json(answer(&server, JANSSEN)))
        .mount(&server)
        .await;
    driver()
        .register(
            &target(&server, JANSSEN, Some("gluu-iat")),
            &ClientMetadata::client_credentials("Payments app"),
        )
        .await
        .unwrap();
    assert_eq!(
        header(&only_request(&server).await, "authorization"),
        Some("Bearer gluu-iat")
    );
}

#[tokio::test]
async fn register_derives_the_client_id_query_uri_when_none_is_reported() {
    let server = MockServer::start().await;
    let mut body = answer(&server, JANSSEN);
    body.as_object_mut()
        .unwrap()
        .remove("registration_client_uri");
    Mock::given(method("POST"))
        .and(path(JANSSEN))
        .respond_with(ResponseTemplate::new(201).set_body_json(body))
        .mount(&server)
        .await;
    let registered = driver()
        .register(
            &target(&server, JANSSEN, None),
            &ClientMetadata::client_credentials("Payments app"),
        )
        .await
        .unwrap();
    assert_eq!(registered.managed(), managed(&server, JANSSEN));
    assert!(
        registered
            .registration_client_uri
            .unwrap()
            .as_str()
            .ends_with("/jans-auth/restv1/register?client_id=%40%213BBD.C34D%210008%219C65.DE26")
    );
}

#[tokio::test]
async fn read_uses_the_client_id_query_and_the_registration_access_token() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(OXAUTH))
        .and(query_param("client_id", CLIENT_ID))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer(&server, OXAUTH)))
        .mount(&server)
        .await;
    let read = driver()
        .read(&target(&server, OXAUTH, None), &managed(&server, OXAUTH))
        .await
        .unwrap();
    let request = only_request(&server).await;
    assert_eq!(header(&request, "authorization"), Some("Bearer gluu-rat"));
    assert_eq!(read.client_id, CLIENT_ID);
}

#[tokio::test]
async fn update_puts_the_registration_with_the_client_id_at_the_query_uri() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path(OXAUTH))
        .and(query_param("client_id", CLIENT_ID))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer(&server, OXAUTH)))
        .mount(&server)
        .await;
    driver()
        .update(
            &target(&server, OXAUTH, None),
            &managed(&server, OXAUTH),
            &ClientMetadata::client_credentials("Renamed app"),
        )
        .await
        .unwrap();
    let request = only_request(&server).await;
    assert_eq!(header(&request, "authorization"), Some("Bearer gluu-rat"));
    let body = json_body(&request);
    assert_eq!(body["client_id"], json!(CLIENT_ID));
    assert_eq!(body["client_name"], json!("Renamed app"));
}

#[tokio::test]
async fn delete_at_the_query_uri_reads_204_as_deleted() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path(OXAUTH))
        .and(query_param("client_id", CLIENT_ID))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let outcome = driver()
        .delete(&target(&server, OXAUTH, None), &managed(&server, OXAUTH))
        .await;
    assert_eq!(outcome, Ok(Deletion::Deleted));
}

#[tokio::test]
async fn deleting_a_client_gluu_no_longer_knows_is_unauthorized() {
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path(OXAUTH))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "invalid_token",
            "error_description": "The Access Token is not valid for the Client ID.",
        })))
        .mount(&server)
        .await;
    let err = driver()
        .delete(&target(&server, OXAUTH, None), &managed(&server, OXAUTH))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DcrError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_redirect_based_client_without_redirect_uris_is_refused_locally() {
    let server = MockServer::start().await;
    let metadata = ClientMetadata {
        grant_types: vec!["implicit".to_owned()],
        response_types: vec!["token".to_owned()],
        ..ClientMetadata::client_credentials("Browser app")
    };
    let err = driver()
        .register(&target(&server, JANSSEN, None), &metadata)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DcrError::InvalidMetadata {
                field: "redirect_uris",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn register_and_update_ask_for_jwt_access_tokens() {
    // Gluu 4 and Janssen issue opaque access tokens unless the client metadata asks for JWTs
    // (`access_token_as_jwt`, `access_token_signing_alg`: Janssen's RegisterRequestParam).
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(JANSSEN))
        .respond_with(ResponseTemplate::new(201).set_body_json(answer(&server, JANSSEN)))
        .mount(&server)
        .await;
    driver()
        .register(
            &target(&server, JANSSEN, None),
            &ClientMetadata::client_credentials("orders-app"),
        )
        .await
        .unwrap();
    let body = json_body(&only_request(&server).await);
    assert_eq!(body["access_token_as_jwt"], json!(true));
    assert_eq!(body["access_token_signing_alg"], json!("RS256"));

    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path(JANSSEN))
        .and(query_param("client_id", CLIENT_ID))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer(&server, JANSSEN)))
        .mount(&server)
        .await;
    driver()
        .update(
            &target(&server, JANSSEN, None),
            &managed(&server, JANSSEN),
            &ClientMetadata::client_credentials("orders-app"),
        )
        .await
        .unwrap();
    let body = json_body(&only_request(&server).await);
    assert_eq!(body["access_token_as_jwt"], json!(true));
    assert_eq!(body["access_token_signing_alg"], json!("RS256"));
}
