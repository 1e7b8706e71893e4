//! Dynamic Client Registration against a real IdP (node `oidc-provider`) and the real
//! `portico` binary: an operator configures DCR, a developer signs up and registers a client,
//! the client gets tokens from the IdP, rotation and deletion take effect at the IdP, and
//! failures show the IdP's error without storing anything.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portico_tests::{ControlPlane, Idp, IdpOptions, PortalSession};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const INITIAL_ACCESS_TOKEN: &str = "initial-access-token-for-tests-7f3a";
const PASSWORD: &str = "correct horse battery staple";

/// An IdP, a control plane configured for it through the admin API (DCR with provider
/// `other`, an issuer, an API, a policy and a catalogue entry), and a signed-up developer.
async fn setup() -> (Idp, ControlPlane, PortalSession) {
    let idp = Idp::start(IdpOptions {
        initial_access_token: Some(INITIAL_ACCESS_TOKEN.to_owned()),
        ..IdpOptions::default()
    })
    .await;
    let control_plane = ControlPlane::start(&[]).await;
    control_plane
        .replace(
            "/dcr",
            json!({
                "enabled": true, "provider": "other", "issuer": idp.issuer,
                "initial_access_token": INITIAL_ACCESS_TOKEN,
            }),
        )
        .await;
    control_plane
        .create("/issuers", json!({"id": "idp", "issuer": idp.issuer}))
        .await;
    control_plane
        .create(
            "/apis",
            json!({
                "id": "orders", "name": "Orders", "listen_path": "/orders", "issuers": ["idp"], "audiences": ["https://api.portico.test"],
                "identity_claims": ["client_id", "sub"],
            }),
        )
        .await;
    control_plane
        .create(
            "/policies",
            json!({"id": "gold", "name": "Gold", "access_rights": [{"api": "orders"}]}),
        )
        .await;
    control_plane
        .create(
            "/catalogue",
            json!({"id": "orders", "name": "Orders API", "policy": "gold"}),
        )
        .await;
    let developer = PortalSession::sign_up(&control_plane, "ada@example.com", PASSWORD).await;
    (idp, control_plane, developer)
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("`{field}` in {value}"))
}

#[tokio::test]
async fn a_developer_registers_a_client_that_gets_tokens_until_it_is_deleted() {
    let (idp, control_plane, developer) = setup().await;
    let catalogue = developer.call(Method::GET, "/catalogue", None, &[]).await;
    assert_eq!(catalogue.status, StatusCode::OK);
    assert_eq!(catalogue.body["items"][0]["id"], "orders");

    let request = json!({"catalogue_entries": ["orders"], "client_name": "Ada's app"});
    let created = developer.register("form-1", &request).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let issued = &created.body;
    let client = &issued["client"];
    let client_id = text(client, "client_id");
    let secret = text(issued, "client_secret");
    assert_eq!(issued["token_endpoint"], idp.token_endpoint());
    let token_request = text(issued, "token_request");
    assert!(
        token_request.contains(&idp.token_endpoint()),
        "{token_request}"
    );
    assert!(token_request.contains(client_id) && token_request.contains(secret));
    assert_eq!(
        issued["api_calls"][0],
        "curl -H \"Authorization: Bearer $ACCESS_TOKEN\" \"$GATEWAY/orders\""
    );

    let (status, token) = idp.token(client_id, secret).await;
    assert_eq!(status, 200, "{token}");
    let claims = claims(text(&token, "access_token"));
    assert_eq!(claims["client_id"], client_id);
    assert_eq!(claims["iss"], idp.issuer);

    // A double submit of the same form answers the same client, secret included.
    let replayed = developer.register("form-1", &request).await;
    assert_eq!(replayed.status, StatusCode::CREATED);
    assert_eq!(replayed.body["replayed"], true);
    assert_eq!(replayed.body["client"]["id"], client["id"]);
    assert_eq!(replayed.body["client_secret"], secret);
    let listed = developer
        .call(Method::GET, "/oauth-clients", None, &[])
        .await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);

    // Redirect URIs are replaced at the IdP (the registration access token rotates).
    let id = text(client, "id");
    let updated = developer
        .call(
            Method::PUT,
            &format!("/oauth-clients/{id}/redirect-uris"),
            Some(&json!({"redirect_uris": ["https://app.example.com/callback"]})),
            &[],
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(
        updated.body["client"]["redirect_uris"],
        json!(["https://app.example.com/callback"])
    );

    // oidc-provider keeps secrets on RFC 7592 updates, so rotation re-registers.
    let rotated = developer
        .call(
            Method::POST,
            &format!("/oauth-clients/{id}/rotate-secret"),
            None,
            &[],
        )
        .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let new_client_id = text(&rotated.body["client"], "client_id");
    let new_secret = text(&rotated.body, "client_secret");
    assert_ne!(new_secret, secret);
    assert_eq!(
        rotated.body["client"]["id"], id,
        "the portal record stays the same"
    );
    assert_eq!(
        rotated.body["client"]["redirect_uris"],
        json!(["https://app.example.com/callback"])
    );
    let (status, refused) = idp.token(client_id, secret).await;
    assert_eq!((status, &refused["error"]), (401, &json!("invalid_client")));
    let (status, token) = idp.token(new_client_id, new_secret).await;
    assert_eq!(status, 200, "{token}");
    let revoked_old = control_plane
        .read(&format!("/oauth-clients?client_id={client_id}"))
        .await;
    assert_eq!(revoked_old["items"][0]["state"], "revoked");
    assert!(revoked_old["items"][0]["deleted_at"].is_string());
    assert_eq!(revoked_old["items"][0]["replaced_by"], id);

    let deleted = developer
        .call(Method::DELETE, &format!("/oauth-clients/{id}"), None, &[])
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    let (status, refused) = idp.token(new_client_id, new_secret).await;
    assert_eq!((status, &refused["error"]), (401, &json!("invalid_client")));
    let record = control_plane.read(&format!("/oauth-clients/{id}")).await;
    assert_eq!(record["state"], "revoked");
    assert!(record["deleted_at"].is_string());
    let listed = developer
        .call(Method::GET, "/oauth-clients", None, &[])
        .await;
    assert_eq!(listed.body["items"], json!([]));
}

#[tokio::test]
async fn failed_registrations_show_the_idp_error_and_store_nothing() {
    let (idp, control_plane, developer) = setup().await;
    control_plane
        .replace(
            "/dcr",
            json!({
                "enabled": true, "provider": "other", "issuer": idp.issuer,
                "initial_access_token": "not-the-initial-access-token",
            }),
        )
        .await;
    let request = json!({"catalogue_entries": ["orders"], "client_name": "Ada's app"});
    let refused = developer.register("form-1", &request).await;
    assert_eq!(refused.status, StatusCode::BAD_GATEWAY, "{}", refused.body);
    assert_eq!(refused.body["error"], "idp_rejected");
    assert_eq!(refused.body["idp_error"], "invalid_token");
    assert!(refused.body["idp_error_description"].is_string());

    control_plane
        .replace(
            "/dcr",
            json!({
                "enabled": true, "provider": "other", "issuer": idp.issuer,
                "initial_access_token": INITIAL_ACCESS_TOKEN, "scope": "not-offered",
            }),
        )
        .await;
    let refused = developer.register("form-2", &request).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert_eq!(refused.body["error"], "idp_rejected");
    assert!(refused.body["idp_error"].is_string(), "{}", refused.body);

    let clients = control_plane.read("/oauth-clients").await;
    assert_eq!(clients["items"], json!([]), "nothing was stored");
    // The same key works once the settings are fixed: failures are not remembered.
    control_plane
        .replace(
            "/dcr",
            json!({
                "enabled": true, "provider": "other", "issuer": idp.issuer,
                "initial_access_token": INITIAL_ACCESS_TOKEN,
            }),
        )
        .await;
    let created = developer.register("form-1", &request).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
}

#[tokio::test]
async fn an_operator_delete_deletes_the_client_at_the_idp_and_keeps_it_revoked() {
    let (idp, control_plane, developer) = setup().await;
    let created = developer
        .register(
            "form-1",
            &json!({"catalogue_entries": ["orders"], "client_name": "Ada's app"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = text(&created.body["client"], "id");
    let client_id = text(&created.body["client"], "client_id");
    let secret = text(&created.body, "client_secret");
    assert_eq!(idp.token(client_id, secret).await.0, 200);

    let path = format!("/oauth-clients/{id}");
    let deleted = control_plane
        .admin(Method::DELETE, &path, None, Some("*"))
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    let (status, refused) = idp.token(client_id, secret).await;
    assert_eq!((status, &refused["error"]), (401, &json!("invalid_client")));
    let record = control_plane.read(&path).await;
    assert_eq!(record["state"], "revoked");
    assert!(record["deleted_at"].is_string());
    assert_eq!(record["client_secret_set"], true, "secrets are never shown");
    assert!(!record.to_string().contains(secret));

    // The token just issued can pass until it expires: the record cannot be purged yet.
    let purge = control_plane
        .admin(Method::DELETE, &path, None, Some("*"))
        .await;
    assert_eq!(purge.status, StatusCode::CONFLICT, "{:?}", purge.body);
    assert_eq!(purge.body["error"], "conflict");
    assert_eq!(control_plane.read(&path).await["state"], "revoked");
}
