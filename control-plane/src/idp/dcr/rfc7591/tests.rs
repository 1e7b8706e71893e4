use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::idp::TransportError;
use crate::idp::test_support::{
    SLOW, client, header, impatient_client, json_body, only_request, refused_url, url,
};

const REGISTER: &str = "/reg";

fn driver() -> Rfc7591Driver {
    Rfc7591Driver::new(client())
}

fn target(server: &MockServer, token: Option<&str>) -> RegistrationTarget {
    RegistrationTarget {
        registration_endpoint: url(server, REGISTER),
        initial_access_token: token.map(Secret::new),
    }
}

fn metadata() -> ClientMetadata {
    ClientMetadata::client_credentials("Payments app")
}

fn registered(server: &MockServer) -> serde_json::Value {
    json!({
        "client_id": "cli-123",
        "client_secret": "s3cr3t-value",
        "client_secret_expires_at": 0,
        "client_id_issued_at": 1_700_000_000,
        "registration_access_token": "rat-1",
        "registration_client_uri": format!("{}/reg/cli-123", server.uri()),
        "client_name": "Payments app",
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "client_secret_post",
        "response_types": [],
        "redirect_uris": [],
        "unknown_extension": {"ignored": true},
    })
}

fn managed(server: &MockServer, token: &str) -> ManagedClient {
    ManagedClient {
        client_id: "cli-123".to_owned(),
        registration_client_uri: Some(url(server, "/reg/cli-123")),
        registration_access_token: Some(Secret::new(token)),
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

// === register ===

#[tokio::test]
async fn register_sends_the_initial_access_token_as_bearer() {
    let server = answering("POST", REGISTER, ResponseTemplate::new(201)).await;
    let _ = driver()
        .register(&target(&server, Some("iat-123")), &metadata())
        .await;
    let request = only_request(&server).await;
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), REGISTER);
    assert_eq!(request.url.query(), None);
    assert_eq!(header(&request, "authorization"), Some("Bearer iat-123"));
    assert_eq!(header(&request, "content-type"), Some("application/json"));
    assert_eq!(header(&request, "accept"), Some("application/json"));
    assert_eq!(
        json_body(&request),
        json!({
            "client_name": "Payments app",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_post",
            "response_types": [],
            "redirect_uris": [],
        })
    );
}

#[tokio::test]
async fn register_without_a_token_sends_no_authorization_header() {
    let server = answering("POST", REGISTER, ResponseTemplate::new(201)).await;
    let _ = driver().register(&target(&server, None), &metadata()).await;
    let request = only_request(&server).await;
    assert_eq!(header(&request, "authorization"), None);
}

#[tokio::test]
async fn register_sends_scope_application_type_and_redirect_uris_when_set() {
    let server = answering("POST", REGISTER, ResponseTemplate::new(201)).await;
    let metadata = ClientMetadata {
        grant_types: vec!["authorization_code".to_owned(), "refresh_token".to_owned()],
        response_types: vec!["code".to_owned()],
        redirect_uris: vec!["https://app.example.com/cb".to_owned()],
        scope: Some("read write".to_owned()),
        application_type: Some("web".to_owned()),
        ..metadata()
    };
    let _ = driver().register(&target(&server, None), &metadata).await;
    let body = json_body(&only_request(&server).await);
    assert_eq!(
        body["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(body["response_types"], json!(["code"]));
    assert_eq!(body["redirect_uris"], json!(["https://app.example.com/cb"]));
    assert_eq!(body["scope"], json!("read write"));
    assert_eq!(body["application_type"], json!("web"));
}

#[tokio::test]
async fn register_returns_the_client_with_its_secret_token_and_configuration_uri() {
    let server = MockServer::start().await;
    let response = ResponseTemplate::new(201).set_body_json(registered(&server));
    Mock::given(method("POST"))
        .and(path(REGISTER))
        .respond_with(response)
        .mount(&server)
        .await;
    let client = driver()
        .register(&target(&server, Some("iat")), &metadata())
        .await
        .unwrap();
    assert_eq!(client.client_id, "cli-123");
    assert_eq!(
        client.client_secret.as_ref().map(Secret::expose),
        Some("s3cr3t-value")
    );
    assert_eq!(client.client_secret_expires_at, Some(0));
    assert_eq!(client.client_id_issued_at, Some(1_700_000_000));
    assert_eq!(
        client
            .registration_access_token
            .as_ref()
            .map(Secret::expose),
        Some("rat-1")
    );
    assert_eq!(
        client.registration_client_uri,
        Some(url(&server, "/reg/cli-123"))
    );
    assert_eq!(
        client.metadata.grant_types,
        Some(vec!["client_credentials".to_owned()])
    );
    assert_eq!(client.metadata.response_types, Some(Vec::new()));
    assert_eq!(client.managed(), managed(&server, "rat-1"));
    assert!(!format!("{client:?}").contains("s3cr3t-value"));
    assert!(!format!("{client:?}").contains("rat-1"));
}

#[tokio::test]
async fn register_without_a_configuration_uri_leaves_the_client_unmanageable() {
    let server = answering(
        "POST",
        REGISTER,
        ResponseTemplate::new(201)
            .set_body_json(json!({"client_id": "cli-9", "client_secret": "x"})),
    )
    .await;
    let client = driver()
        .register(&target(&server, None), &metadata())
        .await
        .unwrap();
    assert_eq!(client.registration_client_uri, None);
    assert_eq!(client.registration_access_token, None);
    let err = driver()
        .delete(&target(&server, None), &client.managed())
        .await
        .unwrap_err();
    assert!(
        matches!(err, DcrError::ManagementNotSupported { .. }),
        "{err:?}"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn register_reports_the_idps_error_and_description() {
    let server = answering(
        "POST",
        REGISTER,
        ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_redirect_uri",
            "error_description": "redirect_uris must use https",
        })),
    )
    .await;
    let err = driver()
        .register(&target(&server, None), &metadata())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        DcrError::Rejected {
            status: 400,
            error: Some("invalid_redirect_uri".to_owned()),
            error_description: Some("redirect_uris must use https".to_owned()),
            body_snippet: None,
        }
    );
    assert_eq!(
        err.to_string(),
        "the identity provider refused the request (HTTP 400, invalid_redirect_uri): redirect_uris must use https"
    );
}

#[tokio::test]
async fn register_keeps_a_bounded_snippet_of_a_non_json_server_error() {
    let page = format!(
        "<html><body>{}</body></html>",
        "Service Unavailable ".repeat(50)
    );
    let server = answering(
        "POST",
        REGISTER,
        ResponseTemplate::new(503).set_body_string(page),
    )
    .await;
    let err = driver()
        .register(&target(&server, None), &metadata())
        .await
        .unwrap_err();
    let DcrError::Rejected {
        status: 503,
        error: None,
        body_snippet: Some(snippet),
        ..
    } = &err
    else {
        panic!("unexpected {err:?}")
    };
    assert!(snippet.starts_with("<html><body>Service Unavailable"));
    assert!(snippet.chars().count() <= crate::idp::SNIPPET_CHARS + 1);
    assert!(
        err.to_string()
            .starts_with("the identity provider refused the request (HTTP 503): <html>")
    );
}

#[tokio::test]
async fn register_reports_a_refused_token_as_unauthorized() {
    let server = answering(
        "POST",
        REGISTER,
        ResponseTemplate::new(401)
            .set_body_json(json!({"error": "invalid_token", "error_description": "token expired"})),
    )
    .await;
    let err = driver()
        .register(&target(&server, Some("old")), &metadata())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        DcrError::Unauthorized {
            status: 401,
            error: Some("invalid_token".to_owned()),
            error_description: Some("token expired".to_owned()),
        }
    );
    assert!(!err.to_string().contains("old"));
}

#[tokio::test]
async fn register_times_out_when_the_idp_is_slow() {
    let server = answering("POST", REGISTER, ResponseTemplate::new(201).set_delay(SLOW)).await;
    let err = Rfc7591Driver::new(impatient_client())
        .register(&target(&server, None), &metadata())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        DcrError::Transport(TransportError::Timeout {
            url: url(&server, REGISTER).to_string()
        })
    );
    assert!(err.to_string().contains("did not answer in time"));
}

#[tokio::test]
async fn register_reports_a_refused_connection() {
    let target = RegistrationTarget {
        registration_endpoint: refused_url(REGISTER),
        initial_access_token: None,
    };
    let err = driver().register(&target, &metadata()).await.unwrap_err();
    assert!(
        matches!(err, DcrError::Transport(TransportError::Connect { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn register_rejects_a_success_without_client_id_and_never_echoes_the_answer() {
    let server = answering(
        "POST",
        REGISTER,
        ResponseTemplate::new(201).set_body_json(json!({"client_secret": "leaky-secret"})),
    )
    .await;
    let err = driver()
        .register(&target(&server, None), &metadata())
        .await
        .unwrap_err();
    assert!(
        matches!(err, DcrError::UnusableRegistration { created: None, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("no `client_id`"));
    assert!(!format!("{err} {err:?}").contains("leaky-secret"));
}

#[tokio::test]
async fn invalid_metadata_is_refused_before_anything_is_sent() {
    let server = answering("POST", REGISTER, ResponseTemplate::new(201)).await;
    let metadata = ClientMetadata {
        grant_types: vec!["authorization_code".to_owned()],
        ..metadata()
    };
    let err = driver()
        .register(&target(&server, None), &metadata)
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

// === read, update, delete ===

#[tokio::test]
async fn read_gets_the_configuration_uri_with_the_registration_access_token() {
    let server = MockServer::start().await;
    let mut body = registered(&server);
    body.as_object_mut().unwrap().remove("client_secret");
    body.as_object_mut()
        .unwrap()
        .remove("registration_access_token");
    Mock::given(method("GET"))
        .and(path("/reg/cli-123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    let client = driver()
        .read(&target(&server, None), &managed(&server, "rat-1"))
        .await
        .unwrap();
    let request = only_request(&server).await;
    assert_eq!(request.method.as_str(), "GET");
    assert_eq!(header(&request, "authorization"), Some("Bearer rat-1"));
    assert!(request.body.is_empty());
    assert_eq!(client.client_secret, None);
    assert_eq!(
        client
            .registration_access_token
            .as_ref()
            .map(Secret::expose),
        Some("rat-1")
    );
}

#[tokio::test]
async fn update_puts_the_whole_registration_including_the_client_id() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/reg/cli-123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(registered(&server)))
        .mount(&server)
        .await;
    let new_metadata = ClientMetadata {
        client_name: "Payments app v2".to_owned(),
        ..metadata()
    };
    driver()
        .update(
            &target(&server, Some("iat")),
            &managed(&server, "rat-1"),
            &new_metadata,
        )
        .await
        .unwrap();
    let request = only_request(&server).await;
    assert_eq!(request.method.as_str(), "PUT");
    assert_eq!(header(&request, "authorization"), Some("Bearer rat-1"));
    assert_eq!(header(&request, "content-type"), Some("application/json"));
    assert_eq!(
        json_body(&request),
        json!({
            "client_id": "cli-123",
            "client_name": "Payments app v2",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_post",
            "response_types": [],
            "redirect_uris": [],
        })
    );
}

#[tokio::test]
async fn update_returns_a_new_registration_access_token() {
    let server = MockServer::start().await;
    let mut body = registered(&server);
    body["registration_access_token"] = json!("rat-2");
    Mock::given(method("PUT"))
        .and(path("/reg/cli-123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    let updated = driver()
        .update(
            &target(&server, None),
            &managed(&server, "rat-1"),
            &metadata(),
        )
        .await
        .unwrap();
    assert_eq!(
        updated
            .registration_access_token
            .as_ref()
            .map(Secret::expose),
        Some("rat-2")
    );
}

#[tokio::test]
async fn update_keeps_the_token_used_when_the_answer_has_none() {
    let server = MockServer::start().await;
    let mut body = registered(&server);
    body.as_object_mut()
        .unwrap()
        .remove("registration_access_token");
    body.as_object_mut()
        .unwrap()
        .remove("registration_client_uri");
    Mock::given(method("PUT"))
        .and(path("/reg/cli-123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    let updated = driver()
        .update(
            &target(&server, None),
            &managed(&server, "rat-1"),
            &metadata(),
        )
        .await
        .unwrap();
    assert_eq!(updated.managed(), managed(&server, "rat-1"));
}

#[tokio::test]
async fn update_of_a_missing_client_is_client_not_found() {
    let server = answering("PUT", "/reg/cli-123", ResponseTemplate::new(404)).await;
    let err = driver()
        .update(
            &target(&server, None),
            &managed(&server, "rat-1"),
            &metadata(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        DcrError::ClientNotFound {
            client_id: "cli-123".to_owned()
        }
    );
}

#[tokio::test]
async fn an_answer_about_another_client_is_refused() {
    let server = MockServer::start().await;
    let mut body = registered(&server);
    body["client_id"] = json!("someone-else");
    Mock::given(method("GET"))
        .and(path("/reg/cli-123"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(&server)
        .await;
    let err = driver()
        .read(&target(&server, None), &managed(&server, "rat-1"))
        .await
        .unwrap_err();
    assert!(matches!(err, DcrError::InvalidResponse { .. }), "{err:?}");
}

#[tokio::test]
async fn delete_sends_the_registration_access_token_and_reads_204_as_deleted() {
    let server = answering("DELETE", "/reg/cli-123", ResponseTemplate::new(204)).await;
    let outcome = driver()
        .delete(&target(&server, None), &managed(&server, "rat-1"))
        .await;
    assert_eq!(outcome, Ok(Deletion::Deleted));
    let request = only_request(&server).await;
    assert_eq!(request.method.as_str(), "DELETE");
    assert_eq!(header(&request, "authorization"), Some("Bearer rat-1"));
}

#[tokio::test]
async fn delete_treats_404_and_410_as_already_gone() {
    for status in [404, 410] {
        let server = answering("DELETE", "/reg/cli-123", ResponseTemplate::new(status)).await;
        let outcome = driver()
            .delete(&target(&server, None), &managed(&server, "rat-1"))
            .await;
        assert_eq!(outcome, Ok(Deletion::AlreadyGone), "{status}");
    }
}

#[tokio::test]
async fn delete_with_a_refused_token_is_unauthorized_not_gone() {
    let server = answering(
        "DELETE",
        "/reg/cli-123",
        ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_token"})),
    )
    .await;
    let err = driver()
        .delete(&target(&server, None), &managed(&server, "rat-1"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DcrError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn management_without_a_registration_access_token_is_not_supported() {
    let server = MockServer::start().await;
    let client = ManagedClient {
        registration_access_token: None,
        ..managed(&server, "unused")
    };
    for err in [
        driver()
            .read(&target(&server, None), &client)
            .await
            .unwrap_err(),
        driver()
            .update(&target(&server, None), &client, &metadata())
            .await
            .unwrap_err(),
    ] {
        assert!(
            matches!(err, DcrError::ManagementNotSupported { .. }),
            "{err:?}"
        );
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}
