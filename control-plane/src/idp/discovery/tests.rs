use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::idp::test_support::{
    SLOW, client, header, impatient_client, only_request, refused_url, url,
};

const ISSUER: &str = "https://idp.example.com/realms/portico";

fn document() -> Value {
    json!({
        "issuer": ISSUER,
        "jwks_uri": "https://idp.example.com/realms/portico/protocol/openid-connect/certs",
        "registration_endpoint": "https://idp.example.com/realms/portico/clients-registrations/openid-connect",
        "token_endpoint": "https://idp.example.com/realms/portico/protocol/openid-connect/token",
        "response_types_supported": ["code"],
    })
}

async fn serve(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(WELL_KNOWN_PATH))
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

fn discovery_url(server: &MockServer) -> Url {
    url(server, WELL_KNOWN_PATH)
}

async fn fetch(server: &MockServer) -> Result<Discovered, DiscoveryError> {
    discover(
        &client(),
        &discovery_url(server),
        ISSUER,
        &DiscoveryConfig::default(),
    )
    .await
}

fn parse(document: Value) -> Result<ProviderMetadata, DiscoveryError> {
    let url = Url::parse("https://idp.example.com/.well-known/openid-configuration").unwrap();
    parse_metadata(&url, document.to_string().as_bytes(), ISSUER)
}

#[test]
fn well_known_url_appends_the_path_to_the_issuer() {
    assert_eq!(
        well_known_url(ISSUER).unwrap().as_str(),
        "https://idp.example.com/realms/portico/.well-known/openid-configuration"
    );
    assert_eq!(
        well_known_url("https://idp.example.com/").unwrap().as_str(),
        "https://idp.example.com/.well-known/openid-configuration"
    );
}

#[test]
fn well_known_url_rejects_issuers_that_are_not_http_urls() {
    for issuer in [
        "idp.example.com",
        "ftp://idp.example.com",
        "https://idp.example.com/?a=b",
    ] {
        assert!(
            matches!(
                well_known_url(issuer),
                Err(DiscoveryError::InvalidIssuer { .. })
            ),
            "{issuer}"
        );
    }
}

#[test]
fn metadata_keeps_the_four_fields_portico_needs() {
    let metadata = parse(document()).unwrap();
    assert_eq!(metadata.issuer, ISSUER);
    assert_eq!(
        metadata.jwks_uri.as_str(),
        "https://idp.example.com/realms/portico/protocol/openid-connect/certs"
    );
    assert!(metadata.registration_endpoint.is_some());
    assert!(metadata.token_endpoint.is_some());
}

#[test]
fn metadata_without_registration_or_token_endpoint_is_fine() {
    let mut doc = document();
    doc.as_object_mut().unwrap().remove("registration_endpoint");
    doc["token_endpoint"] = Value::Null;
    let metadata = parse(doc).unwrap();
    assert_eq!(metadata.registration_endpoint, None);
    assert_eq!(metadata.token_endpoint, None);
}

#[test]
fn metadata_requires_jwks_uri_and_issuer() {
    let mut doc = document();
    doc.as_object_mut().unwrap().remove("jwks_uri");
    assert!(matches!(
        parse(doc),
        Err(DiscoveryError::MissingField {
            field: "jwks_uri",
            ..
        })
    ));
    let mut doc = document();
    doc.as_object_mut().unwrap().remove("issuer");
    assert!(matches!(
        parse(doc),
        Err(DiscoveryError::MissingField {
            field: "issuer",
            ..
        })
    ));
}

#[test]
fn metadata_rejects_urls_that_do_not_parse_or_are_not_http() {
    for (field, value) in [
        ("jwks_uri", json!("not a url")),
        ("jwks_uri", json!(42)),
        ("registration_endpoint", json!("/relative/path")),
        ("token_endpoint", json!("javascript:alert(1)")),
    ] {
        let mut doc = document();
        doc[field] = value;
        let err = parse(doc).unwrap_err();
        assert!(
            matches!(&err, DiscoveryError::InvalidField { field: f, .. } if *f == field),
            "{field}: {err:?}"
        );
    }
}

#[test]
fn metadata_must_name_exactly_the_expected_issuer() {
    let mut doc = document();
    doc["issuer"] = json!("https://evil.example.com/realms/portico");
    let err = parse(doc).unwrap_err();
    assert!(
        matches!(err, DiscoveryError::IssuerMismatch { ref found, .. } if found == "https://evil.example.com/realms/portico")
    );
    assert!(!err.to_string().contains("trailing slash"));
}

#[test]
fn issuer_mismatch_by_a_trailing_slash_says_so() {
    let mut doc = document();
    doc["issuer"] = json!(format!("{ISSUER}/"));
    let err = parse(doc).unwrap_err();
    assert!(matches!(err, DiscoveryError::IssuerMismatch { .. }));
    assert!(
        err.to_string().contains("only in the trailing slash"),
        "{err}"
    );
}

#[test]
fn metadata_must_be_a_json_object() {
    assert!(matches!(
        parse(json!(["issuer"])),
        Err(DiscoveryError::NotAnObject { .. })
    ));
}

#[tokio::test]
async fn discover_fetches_the_document_with_its_cache_lifetime() {
    let server = serve(
        ResponseTemplate::new(200)
            .insert_header("cache-control", "max-age=600")
            .set_body_json(document()),
    )
    .await;
    let discovered = fetch(&server).await.unwrap();
    assert_eq!(discovered.metadata, parse(document()).unwrap());
    assert_eq!(discovered.refresh_after, Duration::from_secs(600));
    let request = only_request(&server).await;
    assert_eq!(request.method.as_str(), "GET");
    assert_eq!(request.url.path(), WELL_KNOWN_PATH);
    assert_eq!(header(&request, "accept"), Some("application/json"));
}

#[tokio::test]
async fn discover_keeps_a_document_one_hour_without_caching_headers_and_bounds_max_age() {
    let server = serve(ResponseTemplate::new(200).set_body_json(document())).await;
    assert_eq!(
        fetch(&server).await.unwrap().refresh_after,
        Duration::from_secs(3600)
    );
    let server = serve(
        ResponseTemplate::new(200)
            .insert_header("cache-control", "max-age=9999999")
            .set_body_json(document()),
    )
    .await;
    assert_eq!(
        fetch(&server).await.unwrap().refresh_after,
        Duration::from_secs(24 * 3600)
    );
}

#[tokio::test]
async fn discover_reports_an_issuer_mismatch() {
    let mut doc = document();
    doc["issuer"] = json!("https://other.example.com");
    let server = serve(ResponseTemplate::new(200).set_body_json(doc)).await;
    assert_eq!(
        fetch(&server).await.unwrap_err(),
        DiscoveryError::IssuerMismatch {
            url: discovery_url(&server).to_string(),
            expected: ISSUER.to_owned(),
            found: "https://other.example.com".to_owned(),
        }
    );
}

#[tokio::test]
async fn discover_reports_status_and_non_json_bodies() {
    let server = serve(ResponseTemplate::new(404).set_body_string("Not Found")).await;
    assert_eq!(
        fetch(&server).await.unwrap_err(),
        DiscoveryError::Status {
            url: discovery_url(&server).to_string(),
            status: 404,
            body_snippet: "Not Found".to_owned()
        }
    );
    let server = serve(ResponseTemplate::new(200).set_body_string("<html>")).await;
    assert!(matches!(
        fetch(&server).await,
        Err(DiscoveryError::NotJson { .. })
    ));
}

#[tokio::test]
async fn discover_refuses_an_oversized_document() {
    let mut doc = document();
    doc["padding"] = json!("x".repeat(2048));
    let server = serve(ResponseTemplate::new(200).set_body_json(doc)).await;
    let config = DiscoveryConfig {
        max_body_bytes: 1024,
        ..DiscoveryConfig::default()
    };
    let err = discover(&client(), &discovery_url(&server), ISSUER, &config)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        DiscoveryError::Transport(TransportError::TooLarge {
            url: discovery_url(&server).to_string(),
            limit: 1024
        })
    );
}

#[tokio::test]
async fn discover_times_out_and_reports_refused_connections() {
    let server = serve(
        ResponseTemplate::new(200)
            .set_body_json(document())
            .set_delay(SLOW),
    )
    .await;
    let err = discover(
        &impatient_client(),
        &discovery_url(&server),
        ISSUER,
        &DiscoveryConfig::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            DiscoveryError::Transport(TransportError::Timeout { .. })
        ),
        "{err:?}"
    );

    let refused = refused_url(WELL_KNOWN_PATH);
    let err = discover(&client(), &refused, ISSUER, &DiscoveryConfig::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DiscoveryError::Transport(TransportError::Connect { .. })
        ),
        "{err:?}"
    );
}

#[test]
fn cache_serves_a_document_until_its_refresh_time() {
    let url = Url::parse("https://idp.example.com/.well-known/openid-configuration").unwrap();
    let metadata = parse(document()).unwrap();
    let mut cache = DiscoveryCache::default();
    let t0 = crate::service::monotonic_now().into_std();
    assert_eq!(cache.get(&url, ISSUER, t0), None);
    cache.insert(
        url.clone(),
        Discovered {
            metadata: metadata.clone(),
            refresh_after: Duration::from_secs(600),
        },
        t0,
    );
    assert_eq!(
        cache.get(&url, ISSUER, t0 + Duration::from_secs(599)),
        Some(&metadata)
    );
    assert_eq!(cache.get(&url, ISSUER, t0 + Duration::from_secs(600)), None);
    assert_eq!(cache.get(&url, "https://other.example.com", t0), None);
    cache.invalidate(&url);
    assert_eq!(cache.get(&url, ISSUER, t0), None);
}

#[tokio::test]
async fn discoverer_fetches_once_while_fresh_and_again_when_stale() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(WELL_KNOWN_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("cache-control", "max-age=300")
                .set_body_json(document()),
        )
        .expect(2)
        .mount(&server)
        .await;
    let discoverer = Discoverer::new(client(), DiscoveryConfig::default());
    let url = discovery_url(&server);
    let t0 = crate::service::monotonic_now().into_std();
    let first = discoverer.metadata(&url, ISSUER, t0).await.unwrap();
    let cached = discoverer
        .metadata(&url, ISSUER, t0 + Duration::from_secs(299))
        .await
        .unwrap();
    assert_eq!(first, cached);
    discoverer
        .metadata(&url, ISSUER, t0 + Duration::from_secs(300))
        .await
        .unwrap();
    server.verify().await;
}

#[tokio::test]
async fn discoverer_caches_no_failure() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(WELL_KNOWN_PATH))
        .respond_with(ResponseTemplate::new(503))
        .expect(2)
        .mount(&server)
        .await;
    let discoverer = Discoverer::new(client(), DiscoveryConfig::default());
    let url = discovery_url(&server);
    let now = crate::service::monotonic_now().into_std();
    assert!(discoverer.metadata(&url, ISSUER, now).await.is_err());
    assert!(discoverer.metadata(&url, ISSUER, now).await.is_err());
    server.verify().await;
}

#[tokio::test]
async fn a_document_after_a_byte_order_mark_is_read() {
    // RFC 8259 §8.1: a parser may ignore a leading BOM; Windows editors write one.
    let mut body = b"\xEF\xBB\xBF".to_vec();
    body.extend_from_slice(document().to_string().as_bytes());
    let server = serve(ResponseTemplate::new(200).set_body_raw(body, "application/json")).await;
    let discovered = fetch(&server).await.unwrap();
    assert_eq!(discovered.metadata.issuer, ISSUER);
}
