//! Handler tests without a socket: the whole [`app`] driven by `oneshot`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::http::portal::BASE;
use crate::secret::{Secret, SecretKey};
use crate::service::test_support;
use crate::service::{Settings, SystemClock};
use crate::store::sled::SledStore;

const KEY: &str = "ops-key-0123456789";
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, header::HeaderMap, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = headers
        .get(header::CONTENT_TYPE)
        .is_none_or(|value| value.as_bytes().starts_with(b"application/json"));
    let body = if bytes.is_empty() {
        Value::Null
    } else if !json {
        // `/metrics` answers in Prometheus' text format.
        Value::String(String::from_utf8_lossy(&bytes).into_owned())
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("not JSON ({status}): {}", String::from_utf8_lossy(&bytes)))
    };
    (status, headers, body)
}

fn request(method: &str, path: &str, body: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"));
    if body.is_some() {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    builder
        .body(body.map_or_else(Body::empty, |body| Body::from(body.to_owned())))
        .unwrap()
}

/// `(path, method)` of every operation in the OpenAPI document.
fn documented_operations() -> BTreeSet<(String, String)> {
    let document = serde_json::to_value(openapi()).unwrap();
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if METHODS.contains(&method.to_uppercase().as_str()) {
                operations.insert((path.clone(), method.to_uppercase()));
            }
        }
    }
    operations
}

/// Every path registered in the router (not its fallback router). axum's `Router` has no route
/// listing, but its `Debug` output names each registered path; if that output ever changes, the
/// assertion that the set is non-empty fails loudly.
fn router_paths(router: &Router) -> BTreeSet<String> {
    let debug = format!("{router:?}");
    let start = debug.find("path_router:").unwrap_or(debug.len());
    let end = debug.find("fallback_router:").unwrap_or(debug.len());
    let mut paths = BTreeSet::new();
    let mut rest = debug.get(start..end).unwrap_or_default();
    while let Some(start) = rest.find("\"/") {
        let tail = &rest[start + 1..];
        let Some(end) = tail.find('"') else { break };
        paths.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    paths
}

fn concrete(path: &str) -> String {
    path.replace("{id}", "no-such-id")
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_operation_is_routed() {
    let (state, _dir) = test_support::state();
    let app = app(state);
    let operations = documented_operations();
    let documented_paths: BTreeSet<String> =
        operations.iter().map(|(path, _)| path.clone()).collect();
    let mut routed_paths = router_paths(&app);
    assert!(
        !routed_paths.is_empty(),
        "could not read the router's paths"
    );
    // The portal's web pages answer HTML to browsers; they are not API operations.
    routed_paths
        .retain(|path| !(path == "/" || path.starts_with("/portal") && !path.starts_with(BASE)));
    assert_eq!(routed_paths, documented_paths);

    for path in &documented_paths {
        for method in METHODS {
            let documented = operations.contains(&(path.clone(), method.to_owned()));
            let body = matches!(method, "POST" | "PUT" | "PATCH").then_some("{}");
            let (status, _, answer) = send(&app, request(method, &concrete(path), body)).await;
            if documented {
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert!(
                    !(status == StatusCode::NOT_FOUND
                        && answer["message"]
                            .as_str()
                            .unwrap_or("")
                            .starts_with("no route")),
                    "{method} {path} is documented but not routed"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is routed but not documented"
                );
                assert_eq!(answer["error"], "method_not_allowed");
            }
        }
    }
}

#[tokio::test]
async fn every_secured_operation_requires_a_valid_credential_of_its_kind() {
    let (state, _dir) = test_support::state();
    let app = app(state);
    let document = serde_json::to_value(openapi()).unwrap();
    for (path, method) in documented_operations() {
        if path.starts_with(portal::BASE) {
            continue;
        }
        let secured = document["paths"][&path][method.to_lowercase()]["security"]
            .as_array()
            .is_some_and(|security| !security.is_empty());
        let data_plane = path.starts_with("/v1/");
        assert_eq!(
            secured,
            data_plane || (path.starts_with("/admin/v1/") && path != "/admin/v1/openapi.json"),
            "{method} {path}"
        );
        let without = Request::builder()
            .method(method.as_str())
            .uri(concrete(&path))
            .body(Body::empty())
            .unwrap();
        let (status, headers, body) = send(&app, without).await;
        if !secured {
            assert!(status.is_success(), "{method} {path}: {status}");
            continue;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(body["error"], "unauthorized");
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");

        // The other kind's credential is as wrong as a made-up one.
        let other_kind = if data_plane {
            format!("Bearer {KEY}")
        } else {
            "Bearer dp-token-0123456789".to_owned()
        };
        for authorization in [
            "Bearer wrong-key-0123456789",
            "Basic b3BzOmtleQ==",
            &other_kind,
        ] {
            let request = Request::builder()
                .method(method.as_str())
                .uri(concrete(&path))
                .header(header::AUTHORIZATION, authorization)
                .body(Body::empty())
                .unwrap();
            let (status, _, body) = send(&app, request).await;
            if authorization.starts_with("Bearer") {
                assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
                assert_eq!(body["error"], "forbidden");
            } else {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
            }
        }
    }
}

#[tokio::test]
async fn every_portal_operation_but_the_account_ones_requires_a_session() {
    let (state, _dir) = test_support::state();
    let app = app(state);
    let document = serde_json::to_value(openapi()).unwrap();
    let public = ["/signup", "/login", "/logout"].map(|path| format!("{}{path}", portal::BASE));
    let mut seen = 0;
    for (path, method) in documented_operations() {
        if !path.starts_with(portal::BASE) {
            continue;
        }
        seen += 1;
        let security = &document["paths"][&path][method.to_lowercase()]["security"];
        let secured = !public.contains(&path);
        assert_eq!(
            security[0].get("portal_session").is_some(),
            secured,
            "{method} {path}"
        );
        let mut builder = Request::builder()
            .method(method.as_str())
            .uri(concrete(&path))
            .header(header::COOKIE, "portico_session=no-such-session");
        let body = if method == "GET" {
            Body::empty()
        } else {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            Body::from("{}")
        };
        let (status, _, answer) = send(&app, builder.body(body).unwrap()).await;
        if secured {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert_eq!(answer["error"], "unauthenticated", "{method} {path}");
        } else {
            assert_ne!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        }
    }
    assert!(seen >= 10, "the portal's operations are documented");
}

#[test]
fn openapi_document_is_3_1_and_docs_copy_is_current() {
    let document = openapi().to_pretty_json().unwrap();
    let value: Value = serde_json::from_str(&document).unwrap();
    assert!(value["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(
        value["components"]["securitySchemes"]["admin_key"]["scheme"],
        "bearer"
    );
    let mut ids = BTreeSet::new();
    for item in value["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            let id = operation["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        }
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    let expected = format!("{document}\n");
    if std::env::var_os("PORTICO_BLESS").is_some() {
        std::fs::write(path, &expected).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == expected,
        "docs/openapi.json is stale: run `PORTICO_BLESS=1 cargo test -p portico-control-plane \
         openapi_document` and commit the result"
    );
}

#[tokio::test]
async fn openapi_document_is_served_without_credentials() {
    let (state, _dir) = test_support::state();
    let request = Request::builder()
        .uri("/admin/v1/openapi.json")
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = send(&app(state), request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(body, serde_json::to_value(openapi()).unwrap());
}

#[tokio::test]
async fn bad_bodies_are_answered_in_the_json_error_shape() {
    let (state, _dir) = test_support::state();
    let app = app(state);

    let (status, _, body) = send(
        &app,
        request("POST", "/admin/v1/issuers", Some("{\"id\": ")),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "malformed_json");

    let (status, _, body) = send(
        &app,
        request(
            "POST",
            "/admin/v1/issuers",
            Some(r#"{"id": "idp", "issuer": "https://idp.example.com", "colour": "red"}"#),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(body["field"], "colour");

    let no_type = Request::builder()
        .method("POST")
        .uri("/admin/v1/issuers")
        .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
        .body(Body::from("{}"))
        .unwrap();
    let (status, _, body) = send(&app, no_type).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(body["error"], "unsupported_media_type");

    let big = format!("{{\"id\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let (status, _, body) = send(&app, request("POST", "/admin/v1/issuers", Some(&big))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"], "payload_too_large");

    let (status, _, body) = send(&app, request("GET", "/admin/v1/issuers?limit=many", None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "limit");

    let (status, _, body) = send(&app, request("GET", "/admin/v1/issuers?colour=red", None)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "colour");

    let (status, _, body) = send(&app, request("GET", "/admin/v1/nothing-here", None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
}

#[tokio::test]
async fn create_read_update_delete_through_the_router() {
    let (state, _dir) = test_support::state();
    let app = app(state);
    let (status, headers, body) = send(
        &app,
        request(
            "POST",
            "/admin/v1/issuers",
            Some(r#"{"id": "idp", "issuer": "https://idp.example.com"}"#),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(headers[header::ETAG], "\"1\"");
    assert_eq!(
        headers[header::LOCATION],
        "http://portico.test/admin/v1/issuers/idp"
    );

    let mut update = request(
        "PUT",
        "/admin/v1/issuers/idp",
        Some(r#"{"issuer": "https://idp2.example.com"}"#),
    );
    update
        .headers_mut()
        .insert(header::IF_MATCH, "\"1\"".parse().unwrap());
    let (status, headers, body) = send(&app, update).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers[header::ETAG], "\"2\"");
    assert_eq!(body["issuer"], "https://idp2.example.com");

    let mut stale = request("DELETE", "/admin/v1/issuers/idp", None);
    stale
        .headers_mut()
        .insert(header::IF_MATCH, "\"1\"".parse().unwrap());
    let (status, _, body) = send(&app, stale).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(body["error"], "precondition_failed");

    let (status, _, body) = send(&app, request("DELETE", "/admin/v1/issuers/idp", None)).await;
    assert_eq!(status, StatusCode::PRECONDITION_REQUIRED);
    assert_eq!(body["error"], "precondition_required");

    let mut delete = request("DELETE", "/admin/v1/issuers/idp", None);
    delete
        .headers_mut()
        .insert(header::IF_MATCH, "*".parse().unwrap());
    let (status, _, _) = send(&app, delete).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn slow_requests_are_answered_with_a_json_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let state = AppState::new(
        Arc::new(SledStore::open(dir.path()).unwrap()),
        crate::secret::SecretCipher::new(&SecretKey::generate().unwrap()),
        crate::secret::AdminKeys::new([("ops", &Secret::new(KEY))]),
        Settings {
            public_base_url: "http://portico.test".to_owned(),
            body_limit: 1024,
            request_timeout: Duration::from_millis(50),
            data_plane_tokens: crate::secret::AdminKeys::new([]),
            jwks: crate::config::JwksConfig::default(),
            portal: crate::config::PortalConfig::default(),
        },
        Arc::new(SystemClock),
        crate::service::test_support::http_idp(crate::idp::HttpTimeouts::default()),
    )
    .unwrap();
    let slow = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .layer(middleware::from_fn_with_state(state.clone(), timeout))
        .with_state(state);
    let (status, _, body) = send(&slow, request("GET", "/slow", None)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "timeout");
}

#[tokio::test]
async fn readiness_turns_503_when_draining() {
    let (state, _dir) = test_support::state();
    let app = app(state.clone());
    let ready = || {
        Request::builder()
            .uri("/readyz")
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, body) = send(&app, ready()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"status": "ready", "revision": 0}));
    state.begin_drain();
    let (status, _, body) = send(&app, ready()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"], "not_ready");
}

#[tokio::test]
async fn refreshing_an_issuer_with_inline_keys_is_a_conflict_that_schedules_nothing() {
    let (state, _dir) = test_support::state();
    let app = app(state.clone());
    let jwk = portico_core::testing::TestKey::rsa_a().public_jwk();
    let body = serde_json::json!({
        "id": "static", "issuer": "https://static.example.com",
        "jwks": {"inline": {"keys": [jwk]}}
    })
    .to_string();
    let (status, _, body) = send(&app, request("POST", "/admin/v1/issuers", Some(&body))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    crate::service::jwks::sync_issuers(&state).unwrap();
    let (status, _, body) = send(
        &app,
        request("POST", "/admin/v1/issuers/static/refresh", None),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "keys_not_fetched");
    assert!(
        body["message"].as_str().unwrap().contains("inline keys"),
        "{body}"
    );
    // Even the registry's own forced refresh never schedules a fetch of inline keys.
    let status = state.keys().refresh_now("static").await.unwrap();
    assert_eq!(status.consecutive_failures, 0);
    assert_eq!(status.next_refresh, None);
    assert_eq!(status.last_error, None);
}

#[tokio::test]
async fn the_expiring_bindings_gauge_moves_with_the_clock_between_publications() {
    const DAY: u64 = 86_400;
    let (state, _store, clock, _dir) =
        test_support::flaky_state("http://portico.test", crate::idp::HttpTimeouts::default());
    let actor = test_support::ops();
    let jwk = portico_core::testing::TestKey::rsa_a().public_jwk();
    state
        .issuers()
        .create(
            &actor,
            serde_json::from_value(json!({"id": "idp", "issuer": "https://idp.example.com",
                                          "jwks": {"inline": {"keys": [jwk]}}}))
            .unwrap(),
        )
        .await
        .unwrap();
    state
        .apis()
        .create(
            &actor,
            serde_json::from_value(json!({"id": "orders", "name": "Orders",
                                          "listen_path": "/orders", "issuers": ["idp"],
                                          "accept_any_audience": true}))
            .unwrap(),
        )
        .await
        .unwrap();
    state
        .policies()
        .create(
            &actor,
            serde_json::from_value(json!({"id": "trial", "name": "Trial",
                                          "access_rights": [{"api": "orders"}],
                                          "lifetime_seconds": 8 * DAY}))
            .unwrap(),
        )
        .await
        .unwrap();
    state
        .catalogue()
        .create(
            &actor,
            serde_json::from_value(json!({"id": "orders", "name": "Orders", "policy": "trial"}))
                .unwrap(),
        )
        .await
        .unwrap();
    let developer = state
        .developers()
        .create(
            &actor,
            serde_json::from_value(json!({"email": "ada@example.com", "name": "Ada",
                                          "password": "correct horse battery"}))
            .unwrap(),
        )
        .await
        .unwrap();
    state
        .oauth_clients()
        .create(
            &actor,
            test_support::new_client(&developer.value.id, &["orders"], "App", "client-1"),
        )
        .await
        .unwrap();
    crate::service::snapshot::publish(&state).unwrap();
    let app = app(state);
    let gauge = || async {
        let request = Request::builder()
            .uri("/metrics")
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = send(&app, request).await;
        assert_eq!(status, StatusCode::OK);
        let text = body.as_str().unwrap().to_owned();
        text.lines()
            .find_map(|line| line.strip_prefix("portico_bindings_expiring_within_7_days "))
            .unwrap_or_else(|| panic!("the gauge in {text}"))
            .to_owned()
    };
    assert_eq!(gauge().await, "0", "8 days left");
    clock.advance(Duration::from_secs(2 * DAY));
    assert_eq!(gauge().await, "1", "6 days left, with no new snapshot");
    clock.advance(Duration::from_secs(7 * DAY));
    assert_eq!(gauge().await, "0", "expired");
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_gauge_the_snapshot() {
    let (state, _dir) = test_support::state();
    crate::service::snapshot::publish(&state).unwrap();
    let app = app(state);
    for _ in 0..2 {
        let (status, _, _) = send(&app, request("GET", "/admin/v1/apis/missing", None)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, _, _) = send(&app, request("GET", "/no/such/route?key=secret", None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, body) = send(&app, request("GET", "/metrics", None)).await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().unwrap();
    for line in [
        r#"portico_http_requests_total{route="/admin/v1/apis/{id}",method="GET",status="404"} 2"#,
        r#"portico_http_requests_total{route="unmatched",method="GET",status="404"} 1"#,
        "portico_snapshot_version 1",
        "portico_snapshot_build_duration_seconds_count 1",
        "portico_snapshot_publish_failures_total 0",
        "portico_connected_filters 0",
        "portico_open_long_polls 0",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
    assert!(!text.contains("secret"), "{text}");
}

/// A snapshot poll from `since` that returns at once, with the data-plane token and `accept`
/// (if any): the status, the headers and the raw body.
async fn poll(
    app: &Router,
    since: u64,
    accept: Option<&str>,
) -> (StatusCode, header::HeaderMap, Vec<u8>) {
    let mut builder = Request::builder()
        .uri(format!("/v1/snapshot?since={since}&wait=0&node=edge"))
        .header(header::AUTHORIZATION, "Bearer dp-token-0123456789");
    if let Some(accept) = accept {
        builder = builder.header(header::ACCEPT, accept);
    }
    let response = app
        .clone()
        .oneshot(builder.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, bytes.to_vec())
}

/// A JSON snapshot poll from `since` held for at most `wait` seconds: the status and the
/// version answered (0 for none).
async fn poll_waiting(app: &Router, since: u64, wait: u64) -> (StatusCode, u64) {
    let request = Request::builder()
        .uri(format!("/v1/snapshot?since={since}&wait={wait}&node=edge"))
        .header(header::AUTHORIZATION, "Bearer dp-token-0123456789")
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let version = response
        .headers()
        .get("x-portico-snapshot-version")
        .map_or(0, |value| value.to_str().unwrap().parse().unwrap());
    (response.status(), version)
}

#[tokio::test(start_paused = true)]
async fn a_replica_behind_a_filter_catches_up_before_answering_it_and_never_sends_an_older_version()
{
    use crate::service::replicas::CATCH_UP;

    let (state, _dir) = test_support::shared_state();
    crate::service::replicas::renew_lease(&state);
    test_support::seed_orders(&state, "https://idp.example.com", "").await;
    let first = crate::service::snapshot::publish(&state).unwrap();
    let app = app(state.clone());
    let policy = |id: &str| {
        serde_json::from_value(json!({"id": id, "name": id, "access_rights": [{"api": "orders"}]}))
            .unwrap()
    };
    // The filter holds the next version already, from the replica that loaded it first.
    let ahead = first.version + 1;
    let held = tokio::spawn({
        let app = app.clone();
        async move { poll_waiting(&app, ahead, 30).await }
    });
    tokio::time::sleep(CATCH_UP / 2).await;
    assert!(!held.is_finished(), "the older version is not sent");
    state
        .policies()
        .create(&test_support::ops(), policy("silver"))
        .await
        .unwrap();
    assert_eq!(
        crate::service::snapshot::publish(&state).unwrap().version,
        ahead
    );
    state
        .policies()
        .create(&test_support::ops(), policy("bronze"))
        .await
        .unwrap();
    assert_eq!(
        crate::service::snapshot::publish(&state).unwrap().version,
        ahead + 1
    );
    assert_eq!(held.await.unwrap(), (StatusCode::OK, ahead + 1));
    // A filter of a restored store or of another control plane stays ahead: it gets this
    // replica's version once the catch-up time has passed, within its wait.
    let started = crate::service::monotonic_now();
    assert_eq!(
        poll_waiting(&app, 99, 30).await,
        (StatusCode::OK, ahead + 1)
    );
    assert!(crate::service::monotonic_now() - started >= CATCH_UP);
    // A poll that does not wait that long gets it when its wait ends.
    let started = crate::service::monotonic_now();
    assert_eq!(poll_waiting(&app, 99, 1).await, (StatusCode::OK, ahead + 1));
    assert_eq!(
        crate::service::monotonic_now() - started,
        Duration::from_secs(1)
    );
}

#[tokio::test]
async fn a_poll_that_accepts_deltas_gets_what_changed_since_its_version_and_others_the_snapshot() {
    use portico_core::snapshot::{BINARY_MEDIA_TYPE, DELTA_MEDIA_TYPE, Snapshot, SnapshotDelta};

    let (state, _dir) = test_support::state();
    test_support::seed_orders(&state, "https://idp.example.com", "").await;
    let first = crate::service::snapshot::publish(&state).unwrap();
    state
        .policies()
        .create(
            &test_support::ops(),
            serde_json::from_value(
                json!({"id": "silver", "name": "Silver", "access_rights": [{"api": "orders"}]}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let second = crate::service::snapshot::publish(&state).unwrap();
    let app = app(state);
    let both = format!("{DELTA_MEDIA_TYPE}, {BINARY_MEDIA_TYPE}");

    let (status, headers, body) = poll(&app, first.version, Some(&both)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], DELTA_MEDIA_TYPE);
    assert_eq!(headers["x-portico-snapshot-version"], "2");
    assert_eq!(headers["x-portico-snapshot-delta-base"], "1");
    assert_eq!(headers[header::VARY], "accept");
    let delta = SnapshotDelta::decode(&body).unwrap();
    let base = Snapshot::decode(&first.binary).unwrap();
    assert_eq!(
        delta.apply(base).unwrap(),
        Snapshot::decode(&second.binary).unwrap()
    );
    let delta_bytes = body.len();

    // The whole snapshot: to filters that do not ask for deltas (old ones), to a new filter,
    // and to one at a version the log does not reach.
    for (since, accept, content_type) in [
        (1, Some(BINARY_MEDIA_TYPE), BINARY_MEDIA_TYPE),
        (1, None, "application/json"),
        (0, Some(both.as_str()), BINARY_MEDIA_TYPE),
        (7, Some(both.as_str()), BINARY_MEDIA_TYPE),
    ] {
        let (status, headers, body) = poll(&app, since, accept).await;
        assert_eq!(status, StatusCode::OK, "{since} {accept:?}");
        assert_eq!(
            headers[header::CONTENT_TYPE],
            content_type,
            "{since} {accept:?}"
        );
        assert!(headers.get("x-portico-snapshot-delta-base").is_none());
        assert_eq!(
            Snapshot::decode(&body).unwrap(),
            Snapshot::decode(&second.binary).unwrap()
        );
    }

    let (_, _, metrics) = send(&app, request("GET", "/metrics", None)).await;
    let metrics = metrics.as_str().unwrap();
    let full_bytes = 3 * second.binary.len() + second.json.len();
    for line in [
        r#"portico_snapshot_answers_total{kind="delta"} 1"#.to_owned(),
        r#"portico_snapshot_answers_total{kind="full"} 4"#.to_owned(),
        format!(r#"portico_snapshot_answer_bytes_total{{kind="delta"}} {delta_bytes}"#),
        format!(r#"portico_snapshot_answer_bytes_total{{kind="full"}} {full_bytes}"#),
    ] {
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }

    let (status, _, info) = send(&app, request("GET", "/admin/v1/snapshot", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["deltas_since"], 1);
    assert_eq!(info["digest"], second.digest.to_string());
}

#[tokio::test]
async fn a_full_disk_refuses_writes_clearly_keeps_reads_and_recovers() {
    let (state, store, _clock, _dir) =
        test_support::flaky_state("http://portico.test", crate::idp::HttpTimeouts::default());
    let app = app(state.clone());
    let create = |id: &str| {
        request(
            "POST",
            "/admin/v1/issuers",
            Some(&format!(
                r#"{{"id": "{id}", "issuer": "https://{id}.example.com"}}"#
            )),
        )
    };
    let (status, _, _) = send(&app, create("before")).await;
    assert_eq!(status, StatusCode::CREATED);

    store.set_disk_full(true);
    let (status, _, body) = send(&app, create("during")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "storage_unavailable");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("nothing was changed"),
        "{body}"
    );
    // Reads keep working, and show nothing of the refused write.
    let (status, _, body) = send(&app, request("GET", "/admin/v1/issuers", None)).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<_> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|issuer| issuer["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["before"]);

    // Once space is freed, writes work again and the revisions and the audit log agree.
    store.set_disk_full(false);
    let (status, _, body) = send(&app, create("during")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, _, audit) = send(&app, request("GET", "/admin/v1/audit", None)).await;
    let revisions: Vec<_> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(revisions, [2, 1]);
    assert_eq!(state.revision().unwrap(), 2);
}

#[tokio::test]
async fn every_portal_write_from_another_origin_is_refused_as_documented() {
    let (state, _dir) = test_support::state();
    let app = app(state);
    let document = serde_json::to_value(openapi()).unwrap();
    let mut seen = 0;
    for (path, method) in documented_operations() {
        if !path.starts_with(portal::BASE) || method == "GET" {
            continue;
        }
        seen += 1;
        let documented = &document["paths"][&path][method.to_lowercase()]["responses"]["403"];
        assert!(
            documented["description"]
                .as_str()
                .is_some_and(|description| description.contains("`forbidden_origin`")),
            "{method} {path} documents its 403: {documented}"
        );
        let request = Request::builder()
            .method(method.as_str())
            .uri(concrete(&path))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ORIGIN, "https://elsewhere.example")
            .body(Body::from("{}"))
            .unwrap();
        let (status, _, answer) = send(&app, request).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(answer["error"], "forbidden_origin", "{method} {path}");
    }
    assert!(seen >= 7, "the portal's writes are documented");
}

#[tokio::test]
async fn every_operation_taking_if_match_documents_the_400_for_a_malformed_one() {
    let (state, _dir) = test_support::state();
    let app = app(state);
    let document = serde_json::to_value(openapi()).unwrap();
    let mut seen = 0;
    for (path, method) in documented_operations() {
        let operation = &document["paths"][&path][method.to_lowercase()];
        let takes_if_match = operation["parameters"]
            .as_array()
            .is_some_and(|parameters| parameters.iter().any(|p| p["name"] == "If-Match"));
        if !takes_if_match {
            continue;
        }
        seen += 1;
        assert!(
            operation["responses"]["400"]["description"]
                .as_str()
                .is_some_and(|description| description.contains("If-Match")),
            "{method} {path} documents a malformed If-Match"
        );
        let mut request = request(&method, &concrete(&path), Some("{}"));
        request
            .headers_mut()
            .insert(header::IF_MATCH, "not-a-tag".parse().unwrap());
        let (status, _, answer) = send(&app, request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {answer}");
        assert_eq!(answer["field"], "If-Match", "{method} {path}");
    }
    assert!(seen >= 15, "the conditional operations are documented");
}

#[test]
fn creates_of_resources_with_operator_chosen_ids_require_the_id() {
    let document = serde_json::to_value(openapi()).unwrap();
    for collection in ["issuers", "apis", "policies", "catalogue"] {
        let body = &document["paths"][format!("/admin/v1/{collection}")]["post"]["requestBody"];
        let schema = &body["content"]["application/json"]["schema"];
        let added = &schema["allOf"][1];
        assert_eq!(added["required"], json!(["id"]), "{collection}: {schema}");
        let pattern = added["properties"]["id"]["pattern"].as_str().unwrap();
        assert_eq!(pattern, ID_PATTERN);
    }
}
