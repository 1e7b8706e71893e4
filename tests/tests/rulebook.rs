//! The rulebook end to end (issue 11's cases): what the admin API accepts is what the filter in
//! Envoy enforces. A wildcard host is protected; a write that would freeze publication is
//! refused and enforcement keeps moving; a route bound to an API through Envoy metadata is
//! protected whatever its path; `unmatched: deny` refuses what no API matches. Waits are
//! bounded polls (15 s) on the expected outcome.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use portico_core::alg::Algorithm;
use portico_core::testing::TestKey;
use portico_tests::{ControlPlane, EchoUpstream, Envoy, EnvoyConfig, KeyServer};
use reqwest::Method;
use serde_json::json;

const BOUND: Duration = Duration::from_secs(15);

fn token(issuer: &str, client: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    TestKey::rsa_a().token(
        Algorithm::RS256,
        &json!({"iss": issuer, "aud": "https://api.portico.test", "client_id": client,
                "exp": now + 600, "iat": now}),
    )
}

/// A route under `/v2/` whose metadata binds it to the API `orders`.
const BOUND_ROUTE: &str = r#"              - match: {prefix: "/v2/"}
                route: {cluster: upstream}
                metadata: {filter_metadata: {portico: {api: orders}}}
"#;

/// A route under `/v4/` whose metadata names a null API.
const NULL_BOUND_ROUTE: &str = r#"              - match: {prefix: "/v4/"}
                route: {cluster: upstream}
                metadata: {filter_metadata: {portico: {api: null}}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_admin_api_accepts_is_what_envoy_enforces() {
    let keys = KeyServer::start(&[&TestKey::rsa_a()]).await;
    let control_plane = ControlPlane::start(&[]).await;
    let upstream = EchoUpstream::start().await;
    let mut config = EnvoyConfig::synced(control_plane.addr, upstream.addr);
    config.routes.push(BOUND_ROUTE.to_owned());
    let envoy = Envoy::start(&config).await;
    let cp = &control_plane;
    cp.create("/issuers", json!({"id": "idp", "issuer": keys.issuer()}))
        .await;
    let api = |id: &str, path: &str, hosts: serde_json::Value| {
        json!({"id": id, "name": id, "listen_path": path, "hosts": hosts, "issuers": ["idp"],
               "audiences": ["https://api.portico.test"], "identity_claims": ["client_id"],
               "default_policies": []})
    };
    cp.create("/apis", api("orders", "/orders", json!([])))
        .await;
    cp.create(
        "/policies",
        json!({"id": "gold", "name": "Gold", "access_rights": [{"api": "orders"}]}),
    )
    .await;
    let mut orders = api("orders", "/orders", json!([]));
    orders["default_policies"] = json!(["gold"]);
    cp.replace("/apis/orders", orders).await;
    let good = token(&keys.issuer(), "client-1");
    envoy
        .await_outcome(
            "orders protected",
            BOUND,
            ("/orders/1", None),
            (401, Some("missing_token")),
        )
        .await;
    envoy
        .await_outcome(
            "orders granted",
            BOUND,
            ("/orders/1", Some(&good)),
            (200, None),
        )
        .await;

    // 1. A wildcard host protects every subdomain, and only those.
    cp.create("/apis", api("secure", "/secure", json!(["*.example.com"])))
        .await;
    // On every worker: the assertions below may reach either.
    envoy
        .await_outcome_at_host(
            "the wildcard API is enforced",
            BOUND,
            ("/secure/x", Some("a.example.com"), None),
            (401, Some("missing_token")),
        )
        .await;
    let (status, _) = envoy
        .call_host("/secure/x", Some("a.b.EXAMPLE.com:8443"), None)
        .await;
    assert_eq!(status, 401);
    let (status, _) = envoy
        .call_host("/secure/x", Some("example.com"), None)
        .await;
    assert_eq!(status, 200, "the bare domain is not under the wildcard");

    // 2. A write that would freeze publication is refused, and enforcement keeps moving.
    cp.create("/apis", api("hosted", "/hosted", json!(["example.com"])))
        .await;
    for (id, path, hosts, status) in [
        ("orders-2", "/orders/", json!([]), StatusCode::CONFLICT),
        (
            "secure-2",
            "/secure",
            json!(["*.EXAMPLE.com:443"]),
            StatusCode::CONFLICT,
        ),
        (
            "hosted-2",
            "/hosted",
            json!(["example.com:8443"]),
            StatusCode::CONFLICT,
        ),
        ("orders-3", "//orders", json!([]), StatusCode::BAD_REQUEST),
        ("orders-4", "/%6Frders", json!([]), StatusCode::BAD_REQUEST),
        (
            "orders-5",
            "/x/../orders",
            json!([]),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let refused = cp
            .admin(Method::POST, "/apis", Some(&api(id, path, hosts)), None)
            .await;
        assert_eq!(refused.status, status, "{id}: {:?}", refused.body);
    }
    let mut te = api("te", "/te", json!([]));
    te["identity_header"] = json!("te");
    let refused = cp.admin(Method::POST, "/apis", Some(&te), None).await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "{:?}",
        refused.body
    );
    assert_eq!(refused.body["field"], "identity_header");
    cp.create("/apis", api("reports", "/reports", json!([])))
        .await;
    envoy
        .await_outcome(
            "a later API still reaches Envoy",
            BOUND,
            ("/reports", None),
            (401, Some("missing_token")),
        )
        .await;
    let snapshot = cp.read("/snapshot").await;
    assert!(snapshot["last_publish_error"].is_null(), "{snapshot}");
    assert_eq!(snapshot["consecutive_failures"], 0);

    // 3. A route bound to `orders` by its metadata is protected at a path no API lists.
    envoy
        .await_outcome(
            "the bound route is protected",
            BOUND,
            ("/v2/anything", None),
            (401, Some("missing_token")),
        )
        .await;
    envoy
        .await_outcome(
            "the bound route grants orders",
            BOUND,
            ("/v2/anything", Some(&good)),
            (200, None),
        )
        .await;

    // 4. `unmatched: deny` refuses what no API matches, except the public prefixes.
    let (status, _) = envoy.call("/elsewhere", None).await;
    assert_eq!(status, 200);
    cp.replace(
        "/gateway",
        json!({"unmatched": "deny", "public_prefixes": ["/health"]}),
    )
    .await;
    envoy
        .await_outcome(
            "unmatched requests are denied",
            BOUND,
            ("/elsewhere", None),
            (404, Some("no_api")),
        )
        .await;
    let (status, _) = envoy.call("/health/ready", None).await;
    assert_eq!(status, 200);
}

/// `route_metadata: false` saves the per-request lookup of the route's metadata, and then a
/// route's binding is ignored: its requests are matched by listen path like any other. With
/// the default, the same route is protected. Static snapshots, so each Envoy enforces at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_metadata_is_read_unless_the_configuration_turns_it_off() {
    let upstream = EchoUpstream::start().await;
    let keys = portico_core::testing::jwks(&[&TestKey::rsa_a()]);
    let issuer = "https://idp.portico.test";
    let plugin = |route_metadata: Option<bool>| {
        let mut plugin = json!({"snapshot": {
            "apis": [{"id": "orders", "listen_path": "/orders", "issuers": ["idp"],
                      "audiences": ["https://api.portico.test"],
                      "identity_claims": ["client_id"], "default_policies": ["gold"]}],
            "issuers": [{"id": "idp", "issuer": issuer, "keys": keys["keys"]}],
            "policies": [{"id": "gold", "access_rights": [{"api": "orders"}]}]
        }});
        if let Some(read) = route_metadata {
            plugin["route_metadata"] = json!(read);
        }
        plugin.to_string()
    };
    let good = token(issuer, "client-1");
    for (route_metadata, unauthenticated, null_bound) in [
        (None, (401, Some("missing_token")), (404, Some("no_api"))),
        (
            Some(true),
            (401, Some("missing_token")),
            (404, Some("no_api")),
        ),
        (Some(false), (200, None), (200, None)),
    ] {
        let mut config = EnvoyConfig::new(plugin(route_metadata), upstream.addr);
        config.routes.push(BOUND_ROUTE.to_owned());
        config.routes.push(NULL_BOUND_ROUTE.to_owned());
        let envoy = Envoy::start(&config).await;
        // A null API in a route's metadata is refused, and leaves the VM working for the
        // other routes (it panicked the VM once: Envoy cannot serialise the null).
        for _ in 0..2 {
            let (status, body) = envoy.call("/v4/anything", Some(&good)).await;
            assert_eq!(
                (status, body["error"].as_str()),
                null_bound,
                "route_metadata {route_metadata:?}, a null API: {body}"
            );
        }
        let (status, body) = envoy.call("/v2/anything", None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            unauthenticated,
            "route_metadata {route_metadata:?}: {body}"
        );
        let (status, _) = envoy.call("/v2/anything", Some(&good)).await;
        assert_eq!(status, 200, "route_metadata {route_metadata:?}");
        let (status, body) = envoy.call("/orders/1", None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("missing_token")),
            "the listen path is protected either way"
        );
    }
}
