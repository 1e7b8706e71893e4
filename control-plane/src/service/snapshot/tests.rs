use serde_json::json;

use super::*;
use crate::secret::Secret;
use crate::service::developers::DeveloperState;
use crate::service::oauth_clients::NewOAuthClient;
use crate::service::test_support::{ops, state};
use crate::service::{Precondition, jwks};

fn rsa_jwk() -> serde_json::Value {
    portico_core::testing::TestKey::rsa_a().public_jwk()
}

async fn seed(state: &AppState) -> String {
    let actor = ops();
    state
        .issuers()
        .create(&actor, serde_json::from_value(json!({
            "id": "idp", "issuer": "https://idp.example.com",
            "jwks": {"inline": {"keys": [rsa_jwk(), {"kty": "EC", "crv": "P-521", "kid": "odd"}]}}
        })).unwrap())
        .await
        .unwrap();
    state
        .apis()
        .create(
            &actor,
            serde_json::from_value(json!({
                "id": "orders", "name": "Orders", "listen_path": "/orders", "issuers": ["idp"], "audiences": ["https://api.example.com"],
                "identity_claims": ["client_id"], "allowed_algorithms": ["RS256", "PS256"]
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    state
        .policies()
        .create(&actor, serde_json::from_value(json!({
            "id": "gold", "name": "Gold", "access_rights": [{"api": "orders", "methods": ["GET"]}],
            "rate_limit": {"requests": 1_000_000_000, "per_seconds": 60}
        })).unwrap())
        .await
        .unwrap();
    state
        .catalogue()
        .create(
            &actor,
            serde_json::from_value(json!({
                "id": "orders-entry", "name": "Orders", "description": "", "policy": "gold"
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let developer = state
        .developers()
        .create(
            &actor,
            serde_json::from_value(json!({
                "email": "ada@example.com", "name": "Ada", "password": "correct horse battery"
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    for (name, client_id) in [("one", "client-b"), ("two", "client-a")] {
        state
            .oauth_clients()
            .create(
                &actor,
                NewOAuthClient {
                    developer_id: developer.value.id.clone(),
                    catalogue_entries: vec!["orders-entry".to_owned()],
                    client_name: name.to_owned(),
                    redirect_uris: Vec::new(),
                    client_id: client_id.to_owned(),
                    client_secret: Some(Secret::new("s")),
                    registration_access_token: None,
                    registration_client_uri: None,
                    client_secret_expires_at: None,
                    client_id_issued_at: None,
                    orphan_reason: None,
                },
            )
            .await
            .unwrap();
    }
    jwks::sync_issuers(state).unwrap();
    developer.value.id
}

#[tokio::test]
async fn the_snapshot_holds_what_filters_need_and_compiles() {
    let (state, _dir) = state();
    seed(&state).await;
    let snapshot = build(&state).unwrap();
    assert_eq!(snapshot.apis[0].id, "orders");
    assert_eq!(snapshot.apis[0].identity_claims, ["client_id"]);
    assert_eq!(
        snapshot.apis[0].allowed_algorithms,
        [
            portico_core::alg::Algorithm::RS256,
            portico_core::alg::Algorithm::PS256
        ]
    );
    assert_eq!(
        snapshot.issuers[0].keys.0,
        [rsa_jwk()],
        "the unusable key is left out"
    );
    assert_eq!(
        snapshot.policies[0].rate_limit.unwrap().requests,
        1_000_000_000
    );
    let bindings: Vec<(&str, &[String])> = snapshot
        .clients
        .iter()
        .map(|binding| (binding.client_id.as_str(), binding.policies.as_slice()))
        .collect();
    assert_eq!(
        bindings,
        [
            ("client-a", &["gold".to_owned()][..]),
            ("client-b", &["gold".to_owned()][..])
        ],
        "bindings are sorted by client id"
    );
    assert!(snapshot.revoked_clients.is_empty());
    CompiledSnapshot::compile(snapshot).unwrap();
}

#[tokio::test]
async fn revoked_clients_and_clients_of_disabled_developers_are_listed_as_revoked() {
    let (state, _dir) = state();
    let developer = seed(&state).await;
    let client = state
        .oauth_clients()
        .all()
        .unwrap()
        .into_iter()
        .find(|client| client.value.client_id == "client-a")
        .unwrap()
        .value;
    state
        .oauth_clients()
        .revoke(&ops(), &client.id, &Precondition::Missing)
        .await
        .unwrap();
    let snapshot = build(&state).unwrap();
    assert_eq!(snapshot.revoked_clients, ["client-a"]);
    assert_eq!(snapshot.clients.len(), 1);
    state
        .developers()
        .set_state(
            &ops(),
            &developer,
            &Precondition::Missing,
            DeveloperState::Disabled,
        )
        .await
        .unwrap();
    let snapshot = build(&state).unwrap();
    assert_eq!(snapshot.revoked_clients, ["client-a", "client-b"]);
    assert!(snapshot.clients.is_empty());
}

#[tokio::test]
async fn the_version_grows_only_when_the_content_changes_and_survives_restarts() {
    let (state, dir) = state();
    seed(&state).await;
    let first = publish(&state).unwrap();
    assert_eq!(first.version, 1);
    assert_eq!(
        publish(&state).unwrap().version,
        1,
        "no change, no new version"
    );
    state
        .policies()
        .update(
            &ops(),
            "gold",
            &Precondition::Any,
            serde_json::from_value(json!({"name": "Gold", "access_rights": [{"api": "orders"}]}))
                .unwrap(),
        )
        .await
        .unwrap();
    let second = publish(&state).unwrap();
    assert_eq!(second.version, 2);
    assert_eq!(
        Snapshot::decode(&second.binary).unwrap(),
        Snapshot::decode(&second.json).unwrap()
    );
    assert_eq!(state.snapshots().current().unwrap().version, 2);
    // A new process over the same store keeps the version of the same content.
    drop(state);
    let reopened = crate::service::test_support::state_in(dir.path());
    jwks::sync_issuers(&reopened).unwrap();
    assert_eq!(publish(&reopened).unwrap().version, 2);
}

#[tokio::test]
async fn held_polls_are_listed_as_connected_filters() {
    let hub = SnapshotHub::default();
    {
        let _poll = hub.poll_started("envoy-1", "dp", 3, "2026-11-28T10:00:00Z".to_owned());
        let filters = hub.filters();
        assert_eq!(filters.len(), 1);
        assert_eq!(filters[0].node, "envoy-1");
        assert_eq!(filters[0].version, 3);
        assert!(filters[0].polling);
    }
    assert!(!hub.filters()[0].polling);
}
