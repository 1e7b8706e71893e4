use portico_control_plane::error::ApiError;
use portico_control_plane::secret::Secret;
use portico_control_plane::service::oauth_clients::NewOAuthClient;
use portico_control_plane::service::{Actor, Clock, Versioned};
use serde_json::json;

use crate::support::TestServer;

const CLIENT_SECRET: &str = "client-secret-8c1d4e";
const RAT: &str = "registration-access-token-9a7f";

fn registration(developer: &str, entries: &[&str], client_id: &str) -> NewOAuthClient {
    NewOAuthClient {
        developer_id: developer.to_owned(),
        catalogue_entries: entries.iter().map(|entry| (*entry).to_owned()).collect(),
        client_name: "Ada's app".to_owned(),
        redirect_uris: vec!["https://app.example.com/callback".to_owned()],
        client_id: client_id.to_owned(),
        client_secret: Some(Secret::new(CLIENT_SECRET)),
        registration_access_token: Some(Secret::new(RAT)),
        registration_client_uri: Some(format!("https://idp.example.com/register/{client_id}")),
        client_secret_expires_at: Some(0),
        client_id_issued_at: Some(1_700_000_000),
        orphan_reason: None,
    }
}

async fn setup(server: &TestServer) -> String {
    server.issuer("idp").await;
    server.api("orders", "idp").await;
    server.policy("gold", "orders").await;
    server.entry("orders", "gold").await;
    server.entry("billing", "gold").await;
    let developer = server.developer("ada@example.com").await;
    developer.body["id"].as_str().unwrap().to_owned()
}

async fn register(
    server: &TestServer,
    developer: &str,
    entries: &[&str],
    client_id: &str,
) -> Result<Versioned<portico_control_plane::service::oauth_clients::OAuthClient>, ApiError> {
    server
        .state
        .oauth_clients()
        .create(
            &Actor::Developer {
                id: developer.to_owned(),
            },
            registration(developer, entries, client_id),
        )
        .await
}

#[tokio::test]
async fn clients_created_by_the_service_are_listed_inspected_revoked_and_deleted() {
    let server = TestServer::start().await;
    let developer = setup(&server).await;
    let client = register(&server, &developer, &["orders"], "idp-client-1")
        .await
        .unwrap();
    register(&server, &developer, &["billing"], "idp-client-2")
        .await
        .unwrap();
    let path = format!("/admin/v1/oauth-clients/{}", client.value.id);

    let inspected = server.get(&path).await;
    let body = inspected.ok(200);
    assert!(body["id"].as_str().unwrap().starts_with("cli_"));
    assert_eq!(body["developer_id"], developer.as_str());
    assert_eq!(body["catalogue_entries"], json!(["orders"]));
    assert_eq!(body["client_id"], "idp-client-1");
    assert_eq!(body["client_secret_set"], true);
    assert_eq!(body["registration_access_token_set"], true);
    assert_eq!(body["state"], "active");
    assert!(!inspected.text.contains(CLIENT_SECRET) && !inspected.text.contains(RAT));

    let secrets = server
        .state
        .oauth_clients()
        .secrets(&client.value.id)
        .unwrap();
    assert_eq!(secrets.client_secret.unwrap().expose(), CLIENT_SECRET);
    assert_eq!(secrets.registration_access_token.unwrap().expose(), RAT);

    let by_entry = server
        .get("/admin/v1/oauth-clients?catalogue_entry=billing")
        .await;
    assert_eq!(by_entry.ok(200)["items"][0]["client_id"], "idp-client-2");
    let by_developer = server
        .get(&format!("/admin/v1/oauth-clients?developer={developer}"))
        .await;
    assert_eq!(by_developer.ok(200)["items"].as_array().unwrap().len(), 2);
    let by_client_id = server
        .get("/admin/v1/oauth-clients?client_id=idp-client-1")
        .await;
    assert_eq!(
        by_client_id.ok(200)["items"][0]["id"],
        client.value.id.as_str()
    );
    assert_eq!(server.list_all("/admin/v1/oauth-clients", 1).await.len(), 2);

    let revoked = server
        .action(&format!("{path}/revoke"), Some(inspected.etag()))
        .await;
    assert_eq!(revoked.ok(200)["state"], "revoked");
    let again = server.action(&format!("{path}/revoke"), None).await;
    assert_eq!(again.ok(200)["revoked_at"], revoked.body["revoked_at"]);
    assert_eq!(
        again.etag(),
        revoked.etag(),
        "a no-op revoke keeps the revision"
    );
    let revoked_list = server.get("/admin/v1/oauth-clients?state=revoked").await;
    assert_eq!(revoked_list.ok(200)["items"].as_array().unwrap().len(), 1);

    let in_use = server
        .delete(&format!("/admin/v1/developers/{developer}"), Some("*"))
        .await;
    in_use.error(409, "in_use");
    assert_eq!(in_use.body["referrers"].as_array().unwrap().len(), 2);
    let entry_in_use = server.delete("/admin/v1/catalogue/orders", Some("*")).await;
    entry_in_use.error(409, "in_use");
    assert_eq!(
        entry_in_use.body["referrers"],
        json!([{"type": "oauth_client", "id": client.value.id}])
    );

    server
        .delete(&path, None)
        .await
        .error(428, "precondition_required");
    server
        .delete(&path, Some(inspected.etag()))
        .await
        .error(412, "precondition_failed");
    // The IdP of these records does not exist: the operator says it is gone there.
    server
        .delete(&format!("{path}?skip_idp=true"), Some(revoked.etag()))
        .await
        .ok(204);
    let deleted = server.get(&path).await;
    assert_eq!(deleted.ok(200)["state"], "revoked");
    assert!(deleted.body["deleted_at"].is_string());
    assert!(deleted.body["revoked_at"].is_string());
    // Its tokens can still pass for a day: a purge now would drop its revocation.
    let purge = server.delete(&path, Some(deleted.etag())).await;
    purge.error(409, "conflict");
    assert!(
        purge.body["message"]
            .as_str()
            .unwrap()
            .contains("purge it after")
    );
    assert_eq!(server.get(&path).await.ok(200)["state"], "revoked");
    server.stop().await;
}

#[tokio::test]
async fn client_errors() {
    let server = TestServer::start().await;
    let developer = setup(&server).await;
    register(&server, &developer, &["orders"], "idp-client-1")
        .await
        .unwrap();

    let duplicate = register(&server, &developer, &["orders"], "idp-client-1")
        .await
        .unwrap_err();
    assert!(matches!(duplicate, ApiError::AlreadyExists { ref field, .. } if field == "client_id"));
    let no_developer = register(&server, "dev_nobody", &["orders"], "idp-client-2")
        .await
        .unwrap_err();
    assert!(
        matches!(no_developer, ApiError::UnprocessableReference { ref field, .. } if field == "developer_id")
    );
    let no_entry = register(&server, &developer, &["orders", "ghost"], "idp-client-2")
        .await
        .unwrap_err();
    assert!(
        matches!(no_entry, ApiError::UnprocessableReference { ref field, .. } if field == "catalogue_entries[1]")
    );
    let no_entries = register(&server, &developer, &[], "idp-client-2")
        .await
        .unwrap_err();
    assert!(matches!(no_entries, ApiError::InvalidRequest { .. }));

    server
        .post("/admin/v1/oauth-clients", json!({"client_id": "x"}))
        .await
        .error(405, "method_not_allowed");
    server
        .get("/admin/v1/oauth-clients/cli_missing")
        .await
        .error(404, "not_found");
    server
        .action("/admin/v1/oauth-clients/cli_missing/revoke", None)
        .await
        .error(404, "not_found");
    server
        .get("/admin/v1/oauth-clients?state=gone")
        .await
        .invalid("state");
    server.stop().await;
}

#[tokio::test]
async fn a_policy_lifetime_gives_expiring_bindings_that_operators_and_developers_change() {
    let server = TestServer::start().await;
    server.issuer("idp").await;
    let api = server
        .post(
            "/admin/v1/apis",
            json!({"id": "orders", "name": "Orders", "listen_path": "/orders", "issuers": ["idp"],
                   "audiences": ["https://api.example.com"],
                   "metadata_headers": {"x-plan": "{policy.metadata.plan}"}}),
        )
        .await;
    api.ok(201);
    server
        .post(
            "/admin/v1/policies",
            json!({"id": "trial", "name": "Trial", "access_rights": [{"api": "orders"}],
                   "lifetime_seconds": 3600, "metadata": {"plan": "trial"}}),
        )
        .await
        .ok(201);
    server
        .post(
            "/admin/v1/policies",
            json!({"id": "bad", "name": "Bad", "access_rights": [{"api": "orders"}],
                   "metadata": {"plan": "a\r\nx-evil: 1"}}),
        )
        .await
        .invalid("metadata.plan");
    server.entry("orders", "trial").await;
    server.entry("forever", "trial").await;
    let developer = server.developer("ada@example.com").await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let client = register(&server, &developer, &["orders"], "idp-client-1")
        .await
        .unwrap();
    let expires_at = client.value.access_expires_at["orders"];
    let path = format!("/admin/v1/oauth-clients/{}", client.value.id);

    let snapshot = portico_control_plane::service::snapshot::build(&server.state).unwrap();
    assert_eq!(snapshot.clients[0].expires_at["trial"], expires_at);
    assert_eq!(
        snapshot.apis[0].metadata_headers["x-plan"],
        "{policy.metadata.plan}"
    );
    portico_control_plane::service::snapshot::publish(&server.state).unwrap();
    let metrics = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("portico_bindings_expiring_within_7_days 1"),
        "{metrics}"
    );

    let soon = server
        .get("/admin/v1/oauth-clients?expires_before=2999-01-01T00:00:00Z")
        .await;
    assert_eq!(soon.ok(200)["items"][0]["client_id"], "idp-client-1");
    let long_ago = server
        .get("/admin/v1/oauth-clients?expires_before=1971-01-01T00:00:00Z")
        .await;
    assert!(long_ago.ok(200)["items"].as_array().unwrap().is_empty());
    server
        .get("/admin/v1/oauth-clients?expires_before=tomorrow")
        .await
        .invalid("expires_before");

    let actor = Actor::Developer {
        id: developer.clone(),
    };
    let refused = server
        .state
        .oauth_clients()
        .renew(&actor, &developer, &client.value.id)
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        "conflict",
        "the entry does not allow renewal"
    );
    server
        .put(
            "/admin/v1/catalogue/orders",
            json!({"name": "Orders", "policy": "trial", "renewable": true}),
            Some("*"),
        )
        .await
        .ok(200);
    let renewed = server
        .state
        .oauth_clients()
        .renew(&actor, &developer, &client.value.id)
        .await
        .unwrap();
    assert!(renewed.value.access_expires_at.contains_key("orders"));
    let stranger = server
        .state
        .oauth_clients()
        .renew(&actor, "dev_other", &client.value.id)
        .await
        .unwrap_err();
    assert_eq!(stranger.code(), "not_found");

    let ended = server
        .put(&format!("{path}/access"), json!({"expires_at": 0}), None)
        .await;
    assert_eq!(ended.ok(200)["access_expires_at"], json!({"orders": 0}));
    let snapshot = portico_control_plane::service::snapshot::build(&server.state).unwrap();
    assert_eq!(snapshot.clients[0].expires_at["trial"], 0);
    let forever = server
        .put(&format!("{path}/access"), json!({"expires_at": null}), None)
        .await;
    assert_eq!(forever.ok(200)["access_expires_at"], json!({}));
    server
        .put(
            &format!("{path}/access"),
            json!({"expires_at": 5, "catalogue_entry": "forever"}),
            None,
        )
        .await
        .invalid("catalogue_entry");
    let audit = server
        .get(&format!("/admin/v1/audit?resource_id={}", client.value.id))
        .await;
    let actions: Vec<&str> = audit.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|entry| entry["action"].as_str())
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|action| **action == "set_access_expiry")
            .count(),
        3,
        "{actions:?}"
    );

    // A policy's new lifetime applies to new registrations only (issue 9, item 4).
    const YEAR_2100: u64 = 4_102_444_800;
    server
        .put(
            &format!("{path}/access"),
            json!({"expires_at": YEAR_2100}),
            None,
        )
        .await
        .ok(200);
    server
        .put(
            "/admin/v1/policies/trial",
            json!({"name": "Trial", "access_rights": [{"api": "orders"}],
                   "lifetime_seconds": 60, "metadata": {"plan": "trial"}}),
            Some("*"),
        )
        .await
        .ok(200);
    let kept = server.get(&path).await;
    assert_eq!(
        kept.ok(200)["access_expires_at"],
        json!({"orders": YEAR_2100})
    );
    let before = portico_control_plane::service::oauth_clients::unix_seconds(
        portico_control_plane::service::SystemClock.now(),
    );
    let newer = register(&server, &developer, &["orders"], "idp-client-2")
        .await
        .unwrap();
    let after = portico_control_plane::service::oauth_clients::unix_seconds(
        portico_control_plane::service::SystemClock.now(),
    );
    let newer_expiry = newer.value.access_expires_at["orders"];
    assert!(
        (before + 60..=after + 60).contains(&newer_expiry),
        "{before} {newer_expiry} {after}"
    );
    let snapshot = portico_control_plane::service::snapshot::build(&server.state).unwrap();
    let expiry_of = |client_id: &str| {
        snapshot
            .clients
            .iter()
            .find(|binding| binding.client_id == client_id)
            .map(|binding| binding.expires_at["trial"])
    };
    assert_eq!(expiry_of("idp-client-1"), Some(YEAR_2100));
    assert_eq!(expiry_of("idp-client-2"), Some(newer_expiry));
}
