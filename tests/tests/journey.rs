//! The whole journey with real processes: a real OpenID provider (`oidc-provider`), the
//! control plane, Envoy with the filter, and an upstream. The operator sets everything up
//! through the admin API, a developer registers a client in the portal, the application gets a
//! token from the IdP and calls the API through Envoy; deleting the client at the portal makes
//! the IdP refuse it and Envoy refuse its still-unexpired token.

use portico_tests::control_plane::{ADMIN_KEY, DATA_PLANE_TOKEN, SECRET_KEY};
use portico_tests::journey::{BOUND, INITIAL_ACCESS_TOKEN};
use portico_tests::{Journey, PortalSession};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The developer's password.
const PASSWORD: &str = "correct horse battery staple";

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("`{field}` in {value}"))
}

#[tokio::test]
async fn a_registered_client_calls_the_api_through_envoy_until_its_developer_deletes_it() {
    let journey = Journey::start(&[]).await;
    journey.operator_sets_up().await;

    let developer =
        PortalSession::sign_up(&journey.control_plane, "ada@example.com", PASSWORD).await;
    let created = developer
        .register(
            "form-1",
            &json!({"catalogue_entries": ["orders"], "client_name": "Ada's app"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let client_id = text(&created.body["client"], "client_id").to_owned();
    let secret = text(&created.body, "client_secret").to_owned();
    let record_id = text(&created.body["client"], "id").to_owned();

    // The application gets a token from the IdP (client_credentials, client_secret_post).
    let (status, token) = journey.idp.token(&client_id, &secret).await;
    assert_eq!(status, 200, "{token}");
    let token = text(&token, "access_token").to_owned();

    // The binding reaches Envoy: no `pol` claim needed.
    let echoed = journey
        .await_status(
            "the client's first call to pass",
            "/orders/42",
            &token,
            200,
            None,
        )
        .await;
    assert_eq!(echoed["headers"]["x-portico-client-id"], client_id.as_str());
    let (status, body) = journey.call("/orders/42", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("missing_token"))
    );
    let (status, body) = journey.call("/reports/1", Some(&token)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("access_denied"))
    );

    // The developer deletes the client: the IdP refuses it, and Envoy its unexpired token.
    let deleted = developer
        .call(
            Method::DELETE,
            &format!("/oauth-clients/{record_id}"),
            None,
            &[],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    let (status, refused) = journey.idp.token(&client_id, &secret).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (401, Some("invalid_client"))
    );
    journey
        .await_status(
            "the deleted client's token to be refused",
            "/orders/42",
            &token,
            401,
            Some("client_revoked"),
        )
        .await;

    // Credentials sent where they are not read are refused, and no log line of the run holds
    // any secret it used.
    let misplaced = reqwest::get(
        journey
            .control_plane
            .url(&format!("/admin/v1/apis?key={ADMIN_KEY}")),
    )
    .await
    .expect("an answer from the admin API");
    assert_eq!(misplaced.status(), StatusCode::UNAUTHORIZED);
    let refused = reqwest::get(
        journey
            .envoy
            .url(&format!("/orders/42?access_token={token}")),
    )
    .await
    .expect("an answer from Envoy");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let request_id = refused
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .expect("the refusal names its request")
        .to_owned();
    let body: Value = refused.json().await.expect("a JSON refusal");
    assert_eq!(body["error"], "missing_token");
    assert_eq!(body["request_id"], request_id.as_str());
    let line = format!(
        "\"GET /orders/42 HTTP/1.1\" 401 portico_reason=missing_token request_id={request_id} "
    );
    portico_tests::eventually("the refusal's access-log line", BOUND, || async {
        journey.envoy.access_log().contains(&line).then_some(())
    })
    .await;
    let secrets = [
        ("client secret", secret.as_str()),
        ("access token", token.as_str()),
        ("admin key", ADMIN_KEY),
        ("data-plane token", DATA_PLANE_TOKEN),
        ("secret key", SECRET_KEY),
        ("initial access token", INITIAL_ACCESS_TOKEN),
        ("password", PASSWORD),
        ("session id", developer.session_id()),
    ];
    let log = journey.control_plane.log();
    assert!(
        log.lines()
            .any(|line| line.contains("identity provider call")
                && line.contains("method=POST")
                && line.contains("status=201")
                && line.contains("duration_ms=")),
        "one line for the registration at the IdP"
    );
    assert!(
        log.lines()
            .any(|line| line.contains("target=/admin/v1/apis?key=REDACTED")
                && line.contains("status=401")),
        "one line for the refused admin request, its query redacted"
    );
    assert!(
        journey
            .envoy
            .log()
            .contains("refused GET /orders/42 (api orders): missing_token"),
        "the filter's line for the query-token refusal, without the query"
    );
    for (source, log) in [
        ("control plane", journey.control_plane.log()),
        ("Envoy", journey.envoy.log()),
        ("Envoy access", journey.envoy.access_log()),
    ] {
        assert!(!log.is_empty(), "the {source} logged nothing");
        for (what, value) in secrets {
            assert!(!value.is_empty(), "the {what} is known");
            assert!(!log.contains(value), "the {source} log holds the {what}");
        }
    }
}

#[tokio::test]
async fn an_operator_revocation_and_a_disabled_developer_stop_tokens_at_once() {
    let journey = Journey::start(&[]).await;
    journey.operator_sets_up().await;
    let cp = &journey.control_plane;
    let developer =
        PortalSession::sign_up(cp, "grace@example.com", "another correct horse battery").await;
    let mut tokens = Vec::new();
    let mut records = Vec::new();
    for form in ["form-a", "form-b"] {
        let created = developer
            .register(
                form,
                &json!({"catalogue_entries": ["orders"], "client_name": form}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let (_, token) = journey
            .idp
            .token(
                text(&created.body["client"], "client_id"),
                text(&created.body, "client_secret"),
            )
            .await;
        tokens.push(text(&token, "access_token").to_owned());
        records.push(text(&created.body["client"], "id").to_owned());
    }
    for token in &tokens {
        journey
            .await_status("the client to be bound", "/orders/1", token, 200, None)
            .await;
    }

    cp.revoke_client(&records[0]).await;
    journey
        .await_status(
            "the revoked client to be refused",
            "/orders/1",
            &tokens[0],
            401,
            Some("client_revoked"),
        )
        .await;
    let (status, _) = journey.call("/orders/1", Some(&tokens[1])).await;
    assert_eq!(status, 200, "the other client is unaffected");

    let me = developer.call(Method::GET, "/me", None, &[]).await;
    let developer_id = text(&me.body, "id");
    let disabled = cp
        .admin(
            Method::POST,
            &format!("/developers/{developer_id}/disable"),
            None,
            None,
        )
        .await;
    assert_eq!(disabled.status, StatusCode::OK, "{:?}", disabled.body);
    journey
        .await_status(
            "a disabled developer's client to be refused",
            "/orders/1",
            &tokens[1],
            401,
            Some("client_revoked"),
        )
        .await;
}
