//! Access that expires (issue 9), end to end with real processes: a real OpenID provider
//! (`oidc-provider`), the `portico` binary, Envoy with the filter and an upstream. A policy gives
//! registrations a lifetime of a few seconds; a developer registers through the portal, the
//! application's token works through Envoy until the binding expires, then Envoy refuses it with
//! 403 `access_expired` without a new snapshot; renewal in the portal makes the same token work
//! again. A second test covers the portal API's renewal rules: only where the catalogue entry
//! allows it, only the owner's clients, audited and published at once. Every wait is a bounded
//! poll on the condition.

use portico_tests::control_plane::DATA_PLANE_TOKEN;
use portico_tests::journey::BOUND;
use portico_tests::{Journey, PortalSession, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The policy's lifetime: long enough for the first call to pass on a loaded machine, short
/// enough to wait for.
const LIFETIME_SECONDS: u64 = 8;

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("`{field}` in {value}"))
}

/// The journey's setup, with a lifetime on the catalogue's policy and renewal allowed or not.
/// The policy has no rate limit: the bounded polls below call as fast as they can.
async fn operator_sets_up_expiring_access(journey: &Journey, renewable: bool) {
    journey.operator_sets_up().await;
    let cp = &journey.control_plane;
    cp.replace(
        "/policies/orders-read",
        json!({"name": "Orders", "access_rights": [{"api": "orders"}],
               "lifetime_seconds": LIFETIME_SECONDS}),
    )
    .await;
    cp.replace(
        "/catalogue/orders",
        json!({"name": "Orders API", "description": "Read and place orders for the shop.",
               "policy": "orders-read", "renewable": renewable}),
    )
    .await;
}

/// Registers a client for the `orders` entry: its record id, `client_id` and secret.
async fn register(developer: &PortalSession, form: &str) -> (String, String, String) {
    let created = developer
        .register(
            form,
            &json!({"catalogue_entries": ["orders"], "client_name": form}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let client = &created.body["client"];
    (
        text(client, "id").to_owned(),
        text(client, "client_id").to_owned(),
        text(&created.body, "client_secret").to_owned(),
    )
}

async fn renew(developer: &PortalSession, record: &str) -> (StatusCode, Value) {
    let answer = developer
        .call(
            Method::POST,
            &format!("/oauth-clients/{record}/renew"),
            None,
            &[],
        )
        .await;
    (answer.status, answer.body)
}

#[tokio::test]
async fn a_token_works_until_the_binding_expires_then_access_expired_then_again_after_renewal() {
    let journey = Journey::start(&[]).await;
    operator_sets_up_expiring_access(&journey, true).await;
    let cp = &journey.control_plane;
    let developer =
        PortalSession::sign_up(cp, "ada@example.com", "correct horse battery staple").await;
    let (record, client_id, secret) = register(&developer, "form-1").await;
    let (status, token) = journey.idp.token(&client_id, &secret).await;
    assert_eq!(status, 200, "{token}");
    let token = text(&token, "access_token").to_owned();

    // The binding reaches Envoy and grants until its expiry.
    journey
        .await_status(
            "the new client's call to pass",
            "/orders/1",
            &token,
            200,
            None,
        )
        .await;
    let shown = developer
        .call(Method::GET, &format!("/oauth-clients/{record}"), None, &[])
        .await;
    let left = shown.body["access_seconds_left"]["orders"]
        .as_u64()
        .unwrap_or_else(|| panic!("time left on the client: {}", shown.body));
    assert!(left <= LIFETIME_SECONDS, "{left}");
    assert_eq!(shown.body["renewable"], true);

    // Expiry: the filter refuses at the binding's second, with no new snapshot to tell it.
    let version = cp.read("/snapshot").await["version"].clone();
    let refused = journey
        .await_status(
            "the expired binding to be refused",
            "/orders/1",
            &token,
            403,
            Some("access_expired"),
        )
        .await;
    assert!(
        text(&refused, "message").contains("renew"),
        "the message says what to do: {refused}"
    );
    assert_eq!(
        cp.read("/snapshot").await["version"],
        version,
        "expiry is enforced by the filter's clock, not by a new snapshot"
    );
    let expired = developer
        .call(Method::GET, &format!("/oauth-clients/{record}"), None, &[])
        .await;
    assert_eq!(expired.body["access_seconds_left"]["orders"], 0);

    // Renewal in the portal: the same token works again.
    let (status, renewed) = renew(&developer, &record).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    assert!(
        renewed["access_seconds_left"]["orders"]
            .as_u64()
            .is_some_and(|left| left > 0 && left <= LIFETIME_SECONDS),
        "{renewed}"
    );
    journey
        .await_status(
            "the renewed client's call to pass",
            "/orders/1",
            &token,
            200,
            None,
        )
        .await;
}

#[tokio::test]
async fn the_portal_renews_only_where_the_catalogue_allows_only_its_owner_and_publishes_at_once() {
    let journey = Journey::start(&[]).await;
    operator_sets_up_expiring_access(&journey, false).await;
    let cp = &journey.control_plane;
    let ada = PortalSession::sign_up(cp, "ada@example.com", "correct horse battery staple").await;
    let grace =
        PortalSession::sign_up(cp, "grace@example.com", "another correct horse battery").await;
    let (record, client_id, _) = register(&ada, "form-1").await;

    // The catalogue entry does not allow renewal: 409, and nothing changes.
    let before = cp.read(&format!("/oauth-clients/{record}")).await;
    let (status, refused) = renew(&ada, &record).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (StatusCode::CONFLICT, Some("conflict")),
        "{refused}"
    );
    let shown = ada
        .call(Method::GET, &format!("/oauth-clients/{record}"), None, &[])
        .await;
    assert_eq!(shown.body["renewable"], false);
    assert_eq!(
        cp.read(&format!("/oauth-clients/{record}")).await["access_expires_at"],
        before["access_expires_at"]
    );

    // Once the operator allows it (and has ended the access), the owner renews: audited, and
    // published at once.
    cp.replace(
        "/catalogue/orders",
        json!({"name": "Orders API", "policy": "orders-read", "renewable": true}),
    )
    .await;
    cp.replace(
        &format!("/oauth-clients/{record}/access"),
        json!({"expires_at": 0}),
    )
    .await;
    let (status, stranger) = renew(&grace, &record).await;
    assert_eq!(
        (status, stranger["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found")),
        "another developer's client: {stranger}"
    );
    let (status, renewed) = renew(&ada, &record).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    assert_eq!(renewed["renewable"], true);
    let expires_at = renewed["client"]["access_expires_at"]["orders"]
        .as_u64()
        .unwrap();
    assert!(expires_at > 0, "{renewed}");
    let audit = cp.read(&format!("/audit?resource_id={record}")).await;
    let actors: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["action"] == "set_access_expiry")
        .filter_map(|entry| entry["actor"]["type"].as_str())
        .collect();
    assert_eq!(
        actors,
        ["developer", "admin_key"],
        "the renewal and the operator's end, newest first: {audit}"
    );

    // The data plane's snapshot carries the renewed expiry for the client's binding.
    let http = reqwest::Client::new();
    eventually("the renewal to be published", BOUND, || {
        let request = http
            .get(cp.url("/v1/snapshot?since=0"))
            .bearer_auth(DATA_PLANE_TOKEN)
            .send();
        let client_id = client_id.clone();
        async move {
            let snapshot: Value = request.await.ok()?.json().await.ok()?;
            let binding = snapshot["clients"]
                .as_array()?
                .iter()
                .find(|binding| binding["client_id"] == client_id.as_str())?
                .clone();
            (binding["expires_at"]["orders-read"] == expires_at).then_some(())
        }
    })
    .await;
}

/// How long the issuer's tokens may live in the ageing step: long enough to see the revocation
/// published after the deletion on a loaded machine, short enough to wait for its end.
const AGEING_LIFETIME_SECONDS: u64 = 10;

#[tokio::test]
async fn an_issuer_bounds_token_lifetimes_and_a_deleted_clients_revocation_then_ages_out() {
    let journey = Journey::start(&[]).await;
    journey.operator_sets_up().await;
    let cp = &journey.control_plane;
    let issuer = journey.idp.issuer.clone();
    let developer =
        PortalSession::sign_up(cp, "ada@example.com", "correct horse battery staple").await;
    let (record, client_id, secret) = register(&developer, "form-1").await;
    let (status, token) = journey.idp.token(&client_id, &secret).await;
    assert_eq!(status, 200, "{token}");
    let token = text(&token, "access_token").to_owned();

    // The IdP's access tokens live an hour: an issuer bounded to ten minutes refuses them.
    cp.replace(
        "/issuers/idp",
        json!({"issuer": issuer, "max_token_lifetime_seconds": 600}),
    )
    .await;
    journey
        .await_status(
            "a token living longer than the issuer's bound to be refused",
            "/orders/1",
            &token,
            401,
            Some("token_lifetime_too_long"),
        )
        .await;
    cp.replace(
        "/issuers/idp",
        json!({"issuer": issuer, "max_token_lifetime_seconds": 3600}),
    )
    .await;
    journey
        .await_status("the token to pass again", "/orders/1", &token, 200, None)
        .await;

    // No clock skew and a short bound, then the developer deletes the client at the IdP: its
    // revocation is published, and leaves the snapshot on its own once no token can pass.
    for id in ["orders", "reports"] {
        let mut api = cp.read(&format!("/apis/{id}")).await;
        api["clock_skew_seconds"] = json!(0);
        cp.replace(&format!("/apis/{id}"), api).await;
    }
    cp.replace(
        "/issuers/idp",
        json!({"issuer": issuer, "max_token_lifetime_seconds": AGEING_LIFETIME_SECONDS}),
    )
    .await;
    let deleted = developer
        .call(
            Method::DELETE,
            &format!("/oauth-clients/{record}"),
            None,
            &[],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    let published = eventually("the revocation to be published", BOUND, || async {
        let now = cp.read("/snapshot").await;
        (now["counts"]["revoked_clients"] == 1).then_some(now)
    })
    .await;
    let version = published["version"].as_u64().unwrap_or_default();
    let aged = eventually(
        "the deleted client's revocation to leave the snapshot",
        std::time::Duration::from_secs(AGEING_LIFETIME_SECONDS) + BOUND,
        || async {
            let now = cp.read("/snapshot").await;
            (now["counts"]["revoked_clients"] == 0).then_some(now)
        },
    )
    .await;
    assert!(
        aged["version"].as_u64().unwrap_or_default() > version,
        "a new version carries the change to every filter: {aged}"
    );
}
