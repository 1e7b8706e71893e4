//! Two `portico` replicas on one PostgreSQL database behave as one control plane, with the real
//! binary, a real IdP, PostgreSQL and Envoy: a write on either is read on the other; they serve
//! one version sequence; a write on one wakes the long polls held on the other; and with both
//! behind one Envoy cluster, killing the replica that publishes (and that the filter polls)
//! leaves the filter syncing from the other, which takes over publication, so that a
//! revocation made there is enforced. Waits are bounded polls on the expected outcome.

use std::time::Duration;

use portico_tests::control_plane::DATA_PLANE_TOKEN;
use portico_tests::journey::INITIAL_ACCESS_TOKEN;
use portico_tests::{
    ControlPlane, EchoUpstream, Envoy, EnvoyConfig, Idp, IdpOptions, Journey, PortalSession,
    eventually, postgres,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Long enough for the publication lease of a killed replica to expire (10 s), the survivor
/// to take it (every 2 s), publish, and the filter to poll again after its backoff.
const FAILOVER: Duration = Duration::from_secs(45);
const BOUND: Duration = Duration::from_secs(15);

/// A replica on the database at `url`.
async fn replica(url: &str) -> ControlPlane {
    ControlPlane::start(&[("PORTICO_STORE", url), ("PORTICO_STORE_POOL_SIZE", "4")]).await
}

/// The version and digest a replica serves (`GET /admin/v1/snapshot`).
async fn served(cp: &ControlPlane) -> (u64, String) {
    let snapshot = cp.read("/snapshot").await;
    (
        snapshot["version"].as_u64().unwrap_or(0),
        snapshot["digest"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Waits until both replicas serve one version with one digest, and answers it.
async fn one_snapshot(a: &ControlPlane, b: &ControlPlane) -> (u64, String) {
    eventually("both replicas to serve one snapshot", BOUND, || async {
        let (first, second) = (served(a).await, served(b).await);
        (first.0 > 0 && first == second).then_some(first)
    })
    .await
}

/// Whether `cp` says it publishes (`portico_publisher` in its metrics).
async fn publishes(cp: &ControlPlane) -> bool {
    let text = reqwest::get(cp.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    match text
        .lines()
        .find_map(|line| line.strip_prefix("portico_publisher "))
    {
        Some("1") => true,
        Some("0") => false,
        other => panic!("portico_publisher is {other:?} in {text}"),
    }
}

/// Whether the filter of the Envoy under test has synced from `cp`.
async fn polled_by_the_filter(cp: &ControlPlane) -> bool {
    cp.read("/filters").await["items"]
        .as_array()
        .is_some_and(|items| !items.is_empty())
}

#[tokio::test]
async fn two_replicas_behave_as_one_control_plane_and_a_filter_survives_losing_the_publisher() {
    let database = postgres::shared().await.database().await;
    let idp = Idp::start(IdpOptions {
        initial_access_token: Some(INITIAL_ACCESS_TOKEN.to_owned()),
        ..IdpOptions::default()
    })
    .await;
    // The first replica takes the publication lease; the second follows it.
    let mut first = replica(&database).await;
    let second = replica(&database).await;

    // A write on one is read on the other at once.
    Journey::operator_sets_up_on(&first, &idp).await;
    assert_eq!(second.read("/policies/orders-read").await["name"], "Orders");
    let (version, _) = one_snapshot(&first, &second).await;
    assert!(publishes(&first).await);
    assert!(!publishes(&second).await);

    // A write on the follower wakes a long poll held on the publisher, and both go on with one
    // version sequence.
    let http = reqwest::Client::new();
    let held = http
        .get(first.url(&format!("/v1/snapshot?since={version}&wait=30")))
        .bearer_auth(DATA_PLANE_TOKEN)
        .header("accept", "application/json")
        .send();
    let held = tokio::spawn(held);
    second
        .create(
            "/apis",
            json!({"id": "billing", "name": "billing", "listen_path": "/billing",
                   "issuers": ["idp"], "accept_any_audience": true}),
        )
        .await;
    let answer = held.await.unwrap().unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let body: Value = answer.json().await.unwrap();
    assert!(body["version"].as_u64().unwrap() > version, "{body}");
    assert!(
        body["apis"]
            .as_array()
            .unwrap()
            .iter()
            .any(|api| api["id"] == "billing")
    );
    let (version, _) = one_snapshot(&first, &second).await;
    assert_eq!(body["version"].as_u64(), Some(version));

    // Envoy with both replicas behind one cluster; a developer registers through the
    // follower's portal (DCR at the real IdP, the client stored for both).
    let upstream = EchoUpstream::start().await;
    let plugin = json!({"control_plane": {"cluster": "portico", "token": DATA_PLANE_TOKEN,
                                          "poll_wait_seconds": 5}});
    let mut config = EnvoyConfig::new(plugin.to_string(), upstream.addr);
    config.clusters.push(("portico".to_owned(), first.addr));
    config.clusters.push(("portico".to_owned(), second.addr));
    let envoy = Envoy::start(&config).await;
    let developer =
        PortalSession::sign_up(&second, "ada@example.com", "correct horse battery staple").await;
    let created = developer
        .register(
            "form-1",
            &json!({"catalogue_entries": ["orders"], "client_name": "Ada's app"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let field = |value: &Value, name: &str| value[name].as_str().expect(name).to_owned();
    let (status, answer) = idp
        .token(
            &field(&created.body["client"], "client_id"),
            &field(&created.body, "client_secret"),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let token = field(&answer, "access_token");
    envoy
        .await_outcome(
            "the client to be bound",
            BOUND,
            ("/orders/1", Some(&token)),
            (200, None),
        )
        .await;
    eventually("the filter to have polled the publisher", BOUND, || async {
        polled_by_the_filter(&first).await.then_some(())
    })
    .await;

    // The publisher dies without giving its lease up. The follower takes over: it answers the
    // filter, publishes the revocation made on it, and the filter enforces it.
    first.kill();
    second
        .revoke_client(&field(&created.body["client"], "id"))
        .await;
    envoy
        .await_outcome(
            "the revocation made on the survivor to be enforced",
            FAILOVER,
            ("/orders/1", Some(&token)),
            (401, Some("client_revoked")),
        )
        .await;
    let (survivor_version, _) = served(&second).await;
    assert!(survivor_version > version);
    assert!(polled_by_the_filter(&second).await);
    assert!(publishes(&second).await);
    assert!(
        second.log().contains("publication lease taken"),
        "{}",
        second.log()
    );
}
