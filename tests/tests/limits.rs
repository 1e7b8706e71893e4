//! Limits that mean what the policy says, with real processes (the IdP, `portico`, Envoy with
//! the filter): a developer cannot multiply a rate limit by registering more clients, and a
//! quota is not reset by a secret rotation that gives the client a new `client_id`.

use portico_tests::journey::BOUND;
use portico_tests::{Journey, PortalSession, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";

/// The journey's system, plus two plans on the `orders` API: `shared`, 5 requests an hour
/// counted per developer (the default scope), and `metered`, a quota of 3 a day counted per
/// client. The periods are long so that nothing refills while the test runs.
async fn start() -> (Journey, PortalSession) {
    let journey = Journey::start(&[]).await;
    journey.operator_sets_up().await;
    let cp = &journey.control_plane;
    cp.create(
        "/policies",
        json!({"id": "shared", "name": "Shared", "access_rights": [{"api": "orders"}],
               "rate_limit": {"requests": 5, "per_seconds": 3600}}),
    )
    .await;
    cp.create(
        "/policies",
        json!({"id": "metered", "name": "Metered", "access_rights": [{"api": "orders"}],
               "quota": {"max": 3, "renewal_seconds": 86400}, "limit_scope": "client"}),
    )
    .await;
    for (entry, policy) in [("shared", "shared"), ("metered", "metered")] {
        cp.create(
            "/catalogue",
            json!({"id": entry, "name": entry, "policy": policy}),
        )
        .await;
    }
    let developer =
        PortalSession::sign_up(&journey.control_plane, "ada@example.com", PASSWORD).await;
    (journey, developer)
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("`{field}` in {value}"))
}

/// Registers a client for catalogue `entry`; returns its record id and an access token.
async fn client_for(
    journey: &Journey,
    developer: &PortalSession,
    entry: &str,
    n: usize,
) -> (String, String) {
    let created = developer
        .register(
            &format!("{entry}-{n}"),
            &json!({"catalogue_entries": [entry], "client_name": format!("App {n}")}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let record = text(&created.body["client"], "id").to_owned();
    let token = token_of(journey, &created.body).await;
    (record, token)
}

/// An access token for the client in a portal answer (`client.client_id`, `client_secret`).
async fn token_of(journey: &Journey, issued: &Value) -> String {
    let (status, token) = journey
        .idp
        .token(
            text(&issued["client"], "client_id"),
            text(issued, "client_secret"),
        )
        .await;
    assert_eq!(status, 200, "{token}");
    text(&token, "access_token").to_owned()
}

/// The first answer to a call with `token` once its binding has reached Envoy (before that,
/// Envoy answers 403 `no_policy`, which charges no limit). That answer is charged.
async fn first_bound_call(journey: &Journey, token: &str) -> (u16, Value) {
    eventually("the client's binding to reach Envoy", BOUND, || async {
        let (status, body) = journey.call("/orders/1", Some(token)).await;
        (body["error"] != "no_policy").then_some((status, body))
    })
    .await
}

#[tokio::test]
async fn a_developer_s_clients_share_one_rate_limit_by_default() {
    let (journey, developer) = start().await;
    let mut tokens = Vec::new();
    for n in 0..3 {
        tokens.push(client_for(&journey, &developer, "shared", n).await.1);
    }
    let mut allowed = 0;
    for token in &tokens {
        let (status, body) = first_bound_call(&journey, token).await;
        assert_eq!(status, 200, "{body}");
        allowed += 1;
    }
    // Round robin over the three clients: 5 an hour in all, not 5 each.
    for round in 0..4 {
        for token in &tokens {
            let (status, body) = journey.call("/orders/1", Some(token)).await;
            match status {
                200 => allowed += 1,
                429 => assert_eq!(body["error"], "rate_limited", "round {round}: {body}"),
                _ => panic!("round {round}: {status} {body}"),
            }
        }
    }
    assert_eq!(allowed, 5, "three clients of one developer share the limit");
}

#[tokio::test]
async fn a_rotated_secret_keeps_the_client_s_spent_quota() {
    let (journey, developer) = start().await;
    let (record, token) = client_for(&journey, &developer, "metered", 0).await;
    let (status, body) = first_bound_call(&journey, &token).await;
    assert_eq!(status, 200, "{body}");
    for _ in 0..2 {
        assert_eq!(journey.call("/orders/1", Some(&token)).await.0, 200);
    }
    let (status, body) = journey.call("/orders/1", Some(&token)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("quota_exceeded"))
    );

    // The node IdP keeps secrets on RFC 7592 updates, so the rotation re-registers: a new
    // `client_id` for the same Portico client.
    let rotated = developer
        .call(
            Method::POST,
            &format!("/oauth-clients/{record}/rotate-secret"),
            None,
            &[],
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    assert_eq!(rotated.body["client"]["id"], record.as_str());
    let rotated_token = token_of(&journey, &rotated.body).await;
    let (status, body) = first_bound_call(&journey, &rotated_token).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("quota_exceeded")),
        "the quota follows the client across its new client_id: {body}"
    );

    // Counted per client: another client of the same developer has its own quota.
    let (_, other) = client_for(&journey, &developer, "metered", 1).await;
    let (status, body) = first_bound_call(&journey, &other).await;
    assert_eq!(status, 200, "{body}");
}
