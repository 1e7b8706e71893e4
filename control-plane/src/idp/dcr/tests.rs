use serde_json::json;

use super::*;

fn metadata() -> ClientMetadata {
    ClientMetadata::client_credentials("Payments app")
}

fn rejected(error: Option<&str>, description: Option<&str>, snippet: Option<&str>) -> DcrError {
    DcrError::Rejected {
        status: 400,
        error: error.map(str::to_owned),
        error_description: description.map(str::to_owned),
        body_snippet: snippet.map(str::to_owned),
    }
}

#[test]
fn client_credentials_metadata_asks_for_no_response_types() {
    let body = metadata().to_json();
    assert_eq!(body["response_types"], json!([]));
    assert_eq!(body["redirect_uris"], json!([]));
    assert_eq!(body["grant_types"], json!(["client_credentials"]));
    assert_eq!(
        body["token_endpoint_auth_method"],
        json!("client_secret_post")
    );
    assert!(!body.contains_key("scope"));
    assert!(!body.contains_key("application_type"));
    assert_eq!(metadata().check(), Ok(()));
}

#[test]
fn metadata_checks_name_grants_method_and_redirect_uris() {
    let cases = [
        (
            ClientMetadata {
                client_name: " ".to_owned(),
                ..metadata()
            },
            "client_name",
        ),
        (
            ClientMetadata {
                grant_types: Vec::new(),
                ..metadata()
            },
            "grant_types",
        ),
        (
            ClientMetadata {
                token_endpoint_auth_method: String::new(),
                ..metadata()
            },
            "token_endpoint_auth_method",
        ),
        (
            ClientMetadata {
                redirect_uris: vec!["/relative".to_owned()],
                ..metadata()
            },
            "redirect_uris",
        ),
        (
            ClientMetadata {
                redirect_uris: vec!["https://a.example/cb#frag".to_owned()],
                ..metadata()
            },
            "redirect_uris",
        ),
        (
            ClientMetadata {
                grant_types: vec!["authorization_code".to_owned()],
                ..metadata()
            },
            "redirect_uris",
        ),
    ];
    for (metadata, field) in cases {
        let err = metadata.check().unwrap_err();
        assert!(
            matches!(err, DcrError::InvalidMetadata { field: f, .. } if f == field),
            "{err:?}"
        );
    }
}

#[test]
fn rejection_messages_show_the_idps_code_and_description_or_snippet() {
    assert_eq!(
        rejected(Some("invalid_client_metadata"), Some("bad grant"), None).to_string(),
        "the identity provider refused the request (HTTP 400, invalid_client_metadata): bad grant"
    );
    assert_eq!(
        rejected(Some("invalid_client_metadata"), None, None).to_string(),
        "the identity provider refused the request (HTTP 400, invalid_client_metadata)"
    );
    assert_eq!(
        rejected(None, None, Some("<h1>Bad Request</h1>")).to_string(),
        "the identity provider refused the request (HTTP 400): <h1>Bad Request</h1>"
    );
    assert_eq!(
        rejected(None, None, None).to_string(),
        "the identity provider refused the request (HTTP 400)"
    );
}

#[test]
fn error_members_read_rfc7591_and_okta_shapes_and_bound_descriptions() {
    let long = "x".repeat(2000);
    let body = json!({"error": "invalid_redirect_uri", "error_description": long}).to_string();
    let (error, description) = error_members(body.as_bytes());
    assert_eq!(error.as_deref(), Some("invalid_redirect_uri"));
    assert_eq!(
        description.unwrap().chars().count(),
        MAX_DESCRIPTION_CHARS + 1
    );

    let okta = json!({
        "errorCode": "E0000001",
        "errorSummary": "Api validation failed: client_name",
        "errorCauses": [{"errorSummary": "client_name: The field cannot be left blank"}],
    })
    .to_string();
    assert_eq!(
        error_members(okta.as_bytes()),
        (
            Some("E0000001".to_owned()),
            Some(
                "Api validation failed: client_name; client_name: The field cannot be left blank"
                    .to_owned()
            )
        )
    );
    assert_eq!(error_members(b"<html>"), (None, None));
    assert_eq!(error_members(br#"{"message": "nope"}"#), (None, None));
}

#[test]
fn parse_client_reads_the_registration_response_and_ignores_unknown_members() {
    let body = json!({
        "client_id": "abc",
        "client_secret": "shh",
        "client_secret_expires_at": 0,
        "registration_access_token": "",
        "redirect_uris": "https://app.example.com/cb",
        "x-vendor": [1, 2, 3],
    })
    .to_string();
    let client = parse_client(body.as_bytes()).unwrap();
    assert_eq!(client.client_id, "abc");
    assert_eq!(client.client_secret, Some(Secret::new("shh")));
    assert_eq!(client.client_secret_expires_at, Some(0));
    assert_eq!(client.client_id_issued_at, None);
    assert_eq!(
        client.registration_access_token, None,
        "an empty token is no token"
    );
    assert_eq!(
        client.metadata.redirect_uris,
        Some(vec!["https://app.example.com/cb".to_owned()])
    );
}

#[test]
fn parse_client_refuses_wrong_types_without_echoing_values() {
    for body in [
        json!({"client_id": 42}),
        json!({"client_id": ""}),
        json!({"client_id": "a", "client_secret_expires_at": -1}),
        json!({"client_id": "a", "client_secret_expires_at": "soon"}),
        json!({"client_id": "a", "registration_client_uri": "relative/path"}),
        json!({"client_id": "a", "grant_types": [1]}),
        json!({"client_id": "a", "client_secret": {"value": "hidden-secret"}}),
        json!(["client_id"]),
    ] {
        let err = parse_client(body.to_string().as_bytes()).unwrap_err();
        assert!(
            matches!(err, DcrError::InvalidResponse { .. }),
            "{body}: {err:?}"
        );
        assert!(!err.to_string().contains("hidden-secret"));
    }
    assert!(matches!(
        parse_client(b"{\"client_secret\": \"shh"),
        Err(DcrError::InvalidResponse { .. })
    ));
}

#[test]
fn registration_times_are_read_tolerantly() {
    // RFC 7591 §3.2.1 says JSON numbers; IdPs also send strings, whole floats and null.
    for (value, expected) in [
        (json!(0), Some(Some(0))),
        (json!(1_800_000_000u64), Some(Some(1_800_000_000))),
        (json!("0"), Some(Some(0))),
        (json!("1800000000"), Some(Some(1_800_000_000))),
        (json!(1.8e9), Some(Some(1_800_000_000))),
        (json!(0.0), Some(Some(0))),
        (json!(null), Some(None)),
        (json!(1.5), None),
        (json!(-1), None),
        (json!("-1"), None),
        (json!(""), None),
        (json!("soon"), None),
        (json!("1e9"), None),
        (json!(true), None),
    ] {
        assert_eq!(timestamp(&value), expected, "{value}");
    }
    let client = parse_client(
        json!({"client_id": "a", "client_secret_expires_at": "0", "client_id_issued_at": 1.7e9})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(client.client_secret_expires_at, Some(0));
    assert_eq!(client.client_id_issued_at, Some(1_700_000_000));
    let absent = parse_client(br#"{"client_id": "a", "client_secret_expires_at": null}"#).unwrap();
    assert_eq!(absent.client_secret_expires_at, None);
    assert_eq!(absent.client_id_issued_at, None);
}

/// The client a refused registration answer names.
fn created_by(err: DcrError) -> ManagedClient {
    match err {
        DcrError::UnusableRegistration {
            created: Some(created),
            ..
        } => *created,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_refused_registration_answer_names_the_client_it_created() {
    let endpoint = Url::parse("https://idp.example.com/register").unwrap();
    let body = json!({
        "client_id": "c-1", "client_secret_expires_at": "soon",
        "registration_access_token": "rat", "registration_client_uri": "https://idp.example.com/register/c-1",
    });
    let err = parse_registration(
        body.to_string().as_bytes(),
        ClientUriStyle::Reported,
        &endpoint,
    )
    .unwrap_err();
    let created = created_by(err);
    assert_eq!(created.client_id, "c-1");
    assert_eq!(
        created.registration_client_uri.unwrap().as_str(),
        "https://idp.example.com/register/c-1"
    );
    assert_eq!(created.registration_access_token.unwrap().expose(), "rat");
    // Without a usable URI the driver's own form is used; without a client_id nothing is named.
    let err = parse_registration(
        br#"{"client_id": "c-2", "registration_client_uri": "relative"}"#,
        ClientUriStyle::QueryParameter,
        &endpoint,
    )
    .unwrap_err();
    let created = created_by(err);
    assert_eq!(
        created.registration_client_uri.unwrap().as_str(),
        "https://idp.example.com/register?client_id=c-2"
    );
    assert!(created.registration_access_token.is_none());
    let err = parse_registration(
        br#"{"client_secret": "x"}"#,
        ClientUriStyle::Reported,
        &endpoint,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        DcrError::UnusableRegistration { created: None, .. }
    ));
}

#[test]
fn a_registration_answer_after_a_byte_order_mark_is_read() {
    let client = parse_client(b"\xEF\xBB\xBF{\"client_id\": \"a\"}").unwrap();
    assert_eq!(client.client_id, "a");
}

#[tokio::test]
async fn a_redirected_delete_is_an_error_not_a_deletion() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use crate::idp::TransportError;
    use crate::idp::test_support::{client, url};

    // The HTTP library would repeat a redirected DELETE as a GET; the GET answering 200 would
    // read as "deleted" while the client still exists.
    let server = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/reg/c-1"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "/moved/c-1"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/moved/c-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"client_id": "c-1"})))
        .mount(&server)
        .await;
    let target = RegistrationTarget {
        registration_endpoint: url(&server, "/reg"),
        // Okta manages clients with the org credential.
        initial_access_token: Some(Secret::new("token")),
    };
    let client_to_delete = ManagedClient {
        client_id: "c-1".to_owned(),
        registration_client_uri: Some(url(&server, "/reg/c-1")),
        registration_access_token: Some(Secret::new("rat")),
    };
    for provider in ALL {
        let err = driver_for(provider, client())
            .delete(&target, &client_to_delete)
            .await
            .unwrap_err();
        let DcrError::Transport(TransportError::Redirect { reason, .. }) = &err else {
            panic!("{provider}: {err:?}");
        };
        assert!(reason.contains("HTTP 302"), "{reason}");
    }
    let followed = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|request| request.method.as_str() == "GET")
        .count();
    assert_eq!(followed, 0, "the redirect was not followed");
}

#[test]
fn client_uris_are_derived_by_path_or_query_and_never_for_plain_rfc7592() {
    let endpoint = Url::parse("https://idp.example.com/register/").unwrap();
    assert_eq!(
        ClientUriStyle::PathSegment
            .derive(&endpoint, "a/b")
            .unwrap()
            .as_str(),
        "https://idp.example.com/register/a%2Fb"
    );
    assert_eq!(
        ClientUriStyle::QueryParameter
            .derive(&endpoint, "@!1&2")
            .unwrap()
            .as_str(),
        "https://idp.example.com/register/?client_id=%40%211%262"
    );
    assert_eq!(ClientUriStyle::Reported.derive(&endpoint, "a"), None);
}

#[test]
fn driver_for_picks_the_provider_s_driver() {
    let http = crate::idp::test_support::client();
    for provider in [
        Provider::Other,
        Provider::Keycloak,
        Provider::Okta,
        Provider::Gluu,
    ] {
        assert_eq!(driver_for(provider, http.clone()).provider(), provider);
    }
}

#[test]
fn providers_are_named_as_in_the_dcr_settings() {
    assert_eq!(
        serde_json::to_value(Provider::Keycloak).unwrap(),
        json!("keycloak")
    );
    assert_eq!(
        serde_json::from_value::<Provider>(json!("gluu")).unwrap(),
        Provider::Gluu
    );
    assert_eq!(Provider::Other.to_string(), "other");
}

#[test]
fn secrets_never_show_in_debug_output_of_targets_and_clients() {
    let target = RegistrationTarget {
        registration_endpoint: Url::parse("https://idp.example.com/reg").unwrap(),
        initial_access_token: Some(Secret::new("iat-value")),
    };
    let client = ManagedClient {
        client_id: "c".to_owned(),
        registration_client_uri: None,
        registration_access_token: Some(Secret::new("rat-value")),
    };
    let printed = format!("{target:?} {client:?}");
    assert!(
        !printed.contains("iat-value") && !printed.contains("rat-value"),
        "{printed}"
    );
}

const ALL: [Provider; 4] = [
    Provider::Other,
    Provider::Keycloak,
    Provider::Okta,
    Provider::Gluu,
];

async fn register_with(
    provider: Provider,
    http: crate::idp::IdpHttp,
    endpoint: Url,
) -> Result<RegisteredClient, DcrError> {
    let target = RegistrationTarget {
        registration_endpoint: endpoint,
        initial_access_token: Some(Secret::new("token")),
    };
    driver_for(provider, http)
        .register(&target, &metadata())
        .await
}

#[tokio::test]
async fn every_driver_reports_idp_errors_timeouts_and_refused_connections() {
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use crate::idp::TransportError;
    use crate::idp::test_support::{SLOW, client, impatient_client, refused_url, url};

    let invalid = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_client_metadata",
            "error_description": "grant_types is not allowed",
        })))
        .mount(&invalid)
        .await;
    let down = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(502).set_body_string("Bad Gateway"))
        .mount(&down)
        .await;
    let slow = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_delay(SLOW))
        .mount(&slow)
        .await;

    for provider in ALL {
        let err = register_with(provider, client(), url(&invalid, "/reg"))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            rejected(
                Some("invalid_client_metadata"),
                Some("grant_types is not allowed"),
                None
            ),
            "{provider}"
        );
        let err = register_with(provider, client(), url(&down, "/reg"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, DcrError::Rejected { status: 502, body_snippet: Some(s), .. } if s == "Bad Gateway"),
            "{provider}: {err:?}"
        );
        let err = register_with(provider, impatient_client(), url(&slow, "/reg"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, DcrError::Transport(TransportError::Timeout { .. })),
            "{provider}: {err:?}"
        );
        let err = register_with(provider, client(), refused_url("/reg"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, DcrError::Transport(TransportError::Connect { .. })),
            "{provider}: {err:?}"
        );
    }
}
