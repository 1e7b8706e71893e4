use std::time::Duration;

use portico_core::jwk::JwkError;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::idp::test_support::{
    SLOW, client, header, impatient_client, only_request, refused_url, url,
};

// Keys from RFC 7517 appendix A.1 and RFC 8037 appendix A.2: valid public keys.
const RSA_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

fn rsa_key() -> Value {
    json!({"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256", "n": RSA_N, "e": "AQAB"})
}

fn ed25519_key() -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed-1", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})
}

fn encryption_key() -> Value {
    json!({"kty": "EC", "crv": "P-256", "kid": "enc-1", "use": "enc",
        "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
        "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"})
}

async fn serve(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(response)
        .mount(&server)
        .await;
    server
}

async fn fetch(server: &MockServer) -> Result<FetchedJwks, JwksFetchError> {
    fetch_jwks(
        &client(),
        &url(server, "/jwks"),
        &JwksFetchConfig::default(),
    )
    .await
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

const BOUNDS: RefreshBounds = RefreshBounds {
    min: Duration::from_secs(300),
    max: Duration::from_secs(86_400),
    default: Duration::from_secs(3600),
};

// === refresh_after ===

#[test]
fn refresh_after_uses_the_default_without_caching_headers() {
    assert_eq!(
        refresh_after(&HeaderMap::new(), &BOUNDS),
        Duration::from_secs(3600)
    );
}

#[test]
fn refresh_after_honours_max_age_within_bounds() {
    let hint = |value| refresh_after(&headers(&[("cache-control", value)]), &BOUNDS);
    assert_eq!(hint("public, max-age=7200"), Duration::from_secs(7200));
    assert_eq!(hint("max-age=\"900\""), Duration::from_secs(900));
    assert_eq!(
        hint("MAX-AGE=1000, must-revalidate"),
        Duration::from_secs(1000)
    );
}

#[test]
fn refresh_after_clamps_max_age_to_the_bounds() {
    let hint = |value| refresh_after(&headers(&[("cache-control", value)]), &BOUNDS);
    assert_eq!(hint("max-age=10"), BOUNDS.min);
    assert_eq!(hint("max-age=0"), BOUNDS.min);
    assert_eq!(hint("max-age=31536000"), BOUNDS.max);
    assert_eq!(hint("max-age=99999999999999999999999"), BOUNDS.max);
}

#[test]
fn refresh_after_takes_the_minimum_for_no_store_and_no_cache() {
    let hint = |value| refresh_after(&headers(&[("cache-control", value)]), &BOUNDS);
    assert_eq!(hint("no-store"), BOUNDS.min);
    assert_eq!(hint("max-age=7200, no-cache"), BOUNDS.min);
}

#[test]
fn refresh_after_ignores_malformed_max_age() {
    let hint = |value| refresh_after(&headers(&[("cache-control", value)]), &BOUNDS);
    assert_eq!(hint("max-age=soon"), BOUNDS.default);
    assert_eq!(hint("max-age=-5"), BOUNDS.default);
    assert_eq!(hint("max-age="), BOUNDS.default);
}

#[test]
fn refresh_after_reads_every_cache_control_header() {
    let map = headers(&[
        ("cache-control", "public"),
        ("cache-control", "max-age=1200"),
    ]);
    assert_eq!(refresh_after(&map, &BOUNDS), Duration::from_secs(1200));
}

#[test]
fn refresh_after_subtracts_the_age_of_a_cached_answer() {
    let map = headers(&[("cache-control", "max-age=7200"), ("age", "1200")]);
    assert_eq!(refresh_after(&map, &BOUNDS), Duration::from_secs(6000));
}

#[test]
fn refresh_after_uses_expires_relative_to_date_when_max_age_is_absent() {
    let map = headers(&[
        ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ("expires", "Sun, 06 Nov 1994 10:49:37 GMT"),
    ]);
    assert_eq!(refresh_after(&map, &BOUNDS), Duration::from_secs(7200));
    let with_max_age = headers(&[
        ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ("expires", "Sun, 06 Nov 1994 10:49:37 GMT"),
        ("cache-control", "max-age=600"),
    ]);
    assert_eq!(
        refresh_after(&with_max_age, &BOUNDS),
        Duration::from_secs(600)
    );
}

#[test]
fn refresh_after_treats_an_invalid_expires_as_already_expired() {
    let map = headers(&[("date", "Sun, 06 Nov 1994 08:49:37 GMT"), ("expires", "0")]);
    assert_eq!(refresh_after(&map, &BOUNDS), BOUNDS.min);
    let past = headers(&[
        ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ("expires", "Sat, 05 Nov 1994 08:49:37 GMT"),
    ]);
    assert_eq!(refresh_after(&past, &BOUNDS), BOUNDS.min);
}

#[test]
fn refresh_after_uses_the_default_for_expires_without_date() {
    let map = headers(&[("expires", "Sun, 06 Nov 2094 08:49:37 GMT")]);
    assert_eq!(refresh_after(&map, &BOUNDS), BOUNDS.default);
}

#[test]
fn http_dates_parse_to_unix_seconds() {
    assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
    assert_eq!(
        parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(784_111_777)
    );
    assert_eq!(
        parse_http_date("Tue, 29 Feb 2000 12:00:00 GMT"),
        Some(951_825_600)
    );
    assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
    assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 PST"), None);
    assert_eq!(parse_http_date("Sun, 06 Nov 1994 25:49:37 GMT"), None);
}

// === fetch_jwks ===

#[tokio::test]
async fn fetch_returns_usable_keys_as_published_with_the_refresh_hint() {
    let server = serve(
        ResponseTemplate::new(200)
            .insert_header("cache-control", "public, max-age=1800")
            .set_body_json(json!({"keys": [rsa_key(), ed25519_key()]})),
    )
    .await;
    let fetched = fetch(&server).await.unwrap();
    assert_eq!(fetched.keys, vec![rsa_key(), ed25519_key()]);
    assert!(fetched.skipped.is_empty());
    assert_eq!(fetched.refresh_after, Duration::from_secs(1800));
    let request = only_request(&server).await;
    assert_eq!(request.method.as_str(), "GET");
    assert_eq!(
        header(&request, "accept"),
        Some("application/jwk-set+json, application/json")
    );
}

#[tokio::test]
async fn fetch_skips_unusable_keys_with_their_reasons() {
    let server = serve(ResponseTemplate::new(200).set_body_json(json!({"keys": [
        encryption_key(),
        rsa_key(),
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {"kty": "EC", "crv": "P-256", "kid": "short", "x": "AAAA", "y": "AAAA"},
    ]})))
    .await;
    let fetched = fetch(&server).await.unwrap();
    assert_eq!(fetched.keys, vec![rsa_key()]);
    let skipped: Vec<_> = fetched
        .skipped
        .iter()
        .map(|key| (key.index, key.kid.as_deref(), key.reason.clone()))
        .collect();
    assert_eq!(
        skipped[0],
        (
            0,
            Some("enc-1"),
            JwkError::NotForSignatures("enc".to_owned())
        )
    );
    assert_eq!(skipped[1], (2, Some("hmac"), JwkError::SymmetricKeyInSet));
    assert!(matches!(
        skipped[2],
        (3, Some("short"), JwkError::InvalidKey(_))
    ));
    assert_eq!(fetched.refresh_after, RefreshBounds::JWKS.default);
}

#[tokio::test]
async fn fetch_never_passes_on_private_key_members() {
    let mut leaked = ed25519_key();
    leaked["d"] = json!("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A");
    let server = serve(ResponseTemplate::new(200).set_body_json(json!({"keys": [leaked]}))).await;
    let fetched = fetch(&server).await.unwrap();
    assert_eq!(fetched.keys, vec![ed25519_key()]);
}

#[tokio::test]
async fn fetch_fails_when_no_key_is_usable_instead_of_returning_an_empty_set() {
    let server =
        serve(ResponseTemplate::new(200).set_body_json(json!({"keys": [encryption_key()]}))).await;
    let err = fetch(&server).await.unwrap_err();
    let JwksFetchError::NoUsableKeys { skipped, .. } = &err else {
        panic!("unexpected {err:?}")
    };
    assert_eq!(skipped.len(), 1);
    assert!(
        err.to_string()
            .contains("#0 kid \"enc-1\": key is for `enc`, not for signatures")
    );
}

#[tokio::test]
async fn fetch_fails_on_an_empty_key_set() {
    let server = serve(ResponseTemplate::new(200).set_body_json(json!({"keys": []}))).await;
    let err = fetch(&server).await.unwrap_err();
    assert_eq!(
        err,
        JwksFetchError::NoUsableKeys {
            url: url(&server, "/jwks").to_string(),
            skipped: Vec::new()
        }
    );
    assert!(err.to_string().ends_with("(the set is empty)"));
}

#[tokio::test]
async fn fetch_reports_an_error_status_with_a_snippet_of_the_body() {
    let server =
        serve(ResponseTemplate::new(503).set_body_string("<html>upstream down</html>")).await;
    let err = fetch(&server).await.unwrap_err();
    assert_eq!(
        err,
        JwksFetchError::Status {
            url: url(&server, "/jwks").to_string(),
            status: 503,
            body_snippet: "<html>upstream down</html>".to_owned(),
        }
    );
}

#[tokio::test]
async fn fetch_reports_a_body_that_is_not_json() {
    let server = serve(ResponseTemplate::new(200).set_body_string("<html>login</html>")).await;
    let err = fetch(&server).await.unwrap_err();
    assert!(
        matches!(&err, JwksFetchError::NotJson { reason, .. } if reason.ends_with("the body starts with: <html>login</html>")),
        "{err:?}"
    );
}

#[tokio::test]
async fn fetch_reports_a_document_without_a_keys_array() {
    for body in [
        json!({"issuer": "x"}),
        json!([rsa_key()]),
        json!({"keys": {"kty": "RSA"}}),
    ] {
        let server = serve(ResponseTemplate::new(200).set_body_json(body)).await;
        let err = fetch(&server).await.unwrap_err();
        assert_eq!(
            err,
            JwksFetchError::NoKeysArray {
                url: url(&server, "/jwks").to_string()
            }
        );
    }
}

#[tokio::test]
async fn fetch_refuses_a_body_over_the_size_cap() {
    let keys: Vec<Value> = (0..40).map(|_| rsa_key()).collect();
    let server = serve(ResponseTemplate::new(200).set_body_json(json!({ "keys": keys }))).await;
    let config = JwksFetchConfig {
        max_body_bytes: 4096,
        ..JwksFetchConfig::default()
    };
    let err = fetch_jwks(&client(), &url(&server, "/jwks"), &config)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        JwksFetchError::Transport(TransportError::TooLarge {
            url: url(&server, "/jwks").to_string(),
            limit: 4096
        })
    );
}

#[tokio::test]
async fn fetch_times_out_when_the_idp_is_slow() {
    let server = serve(
        ResponseTemplate::new(200)
            .set_body_json(json!({"keys": [rsa_key()]}))
            .set_delay(SLOW),
    )
    .await;
    let err = fetch_jwks(
        &impatient_client(),
        &url(&server, "/jwks"),
        &JwksFetchConfig::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        JwksFetchError::Transport(TransportError::Timeout {
            url: url(&server, "/jwks").to_string()
        })
    );
}

#[tokio::test]
async fn fetch_reports_a_refused_connection() {
    let target = refused_url("/jwks");
    let err = fetch_jwks(&client(), &target, &JwksFetchConfig::default())
        .await
        .unwrap_err();
    let JwksFetchError::Transport(TransportError::Connect { url, reason }) = &err else {
        panic!("unexpected {err:?}")
    };
    assert_eq!(url, target.as_str());
    assert!(reason.to_lowercase().contains("refused"), "{reason}");
}

#[tokio::test]
async fn a_key_set_after_a_byte_order_mark_is_read() {
    // A static jwks.json saved on Windows starts with EF BB BF (RFC 8259 §8.1 allows ignoring it).
    let mut body = b"\xEF\xBB\xBF".to_vec();
    body.extend_from_slice(json!({"keys": [rsa_key()]}).to_string().as_bytes());
    let server = serve(ResponseTemplate::new(200).set_body_raw(body, "application/json")).await;
    let fetched = fetch_jwks(
        &client(),
        &url(&server, "/jwks"),
        &JwksFetchConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(fetched.keys, [rsa_key()]);
}

#[tokio::test]
async fn a_get_follows_a_redirect_to_the_key_set() {
    let server =
        serve(ResponseTemplate::new(200).set_body_json(json!({"keys": [rsa_key()]}))).await;
    Mock::given(method("GET"))
        .and(path("/old-jwks"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "/jwks"))
        .mount(&server)
        .await;
    let fetched = fetch_jwks(
        &client(),
        &url(&server, "/old-jwks"),
        &JwksFetchConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(fetched.keys, [rsa_key()]);
}
