use serde_json::json;

use super::*;
use crate::service::developers::DeveloperState;
use crate::service::test_support::{new_client, ops, state};
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
                new_client(&developer.value.id, &["orders-entry"], name, client_id),
            )
            .await
            .unwrap();
    }
    jwks::sync_issuers(state).unwrap();
    developer.value.id
}

/// Replaces the seeded policy `gold` (`GET` on `orders`) with one granting every method.
async fn grant_every_method(state: &AppState) {
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
}

/// Revokes the seeded OAuth client whose IdP `client_id` is `client_id`.
async fn revoke(state: &AppState, client_id: &str) {
    let client = state
        .oauth_clients()
        .all()
        .unwrap()
        .into_iter()
        .find(|client| client.value.client_id == client_id)
        .unwrap()
        .value;
    state
        .oauth_clients()
        .revoke(&ops(), &client.id, &Precondition::Missing)
        .await
        .unwrap();
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
    revoke(&state, "client-a").await;
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
    grant_every_method(&state).await;
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
async fn a_restarted_control_plane_publishes_its_issuers_with_their_keys_from_the_start() {
    let (state, dir) = state();
    seed(&state).await;
    jwks::sync_issuers(&state).unwrap();
    let before = publish(&state).unwrap();
    drop(state);
    // A new process over the same store, its publication task started before any key task.
    let reopened = crate::service::test_support::state_in(dir.path());
    let mut published = reopened.snapshots().subscribe();
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run(reopened.clone(), stopped));
    let first = published
        .wait_for(Option::is_some)
        .await
        .unwrap()
        .clone()
        .unwrap();
    assert_eq!(
        (first.version, first.digest),
        (before.version, before.digest),
        "the same content, keys included, under the same version"
    );
    assert!(
        !Snapshot::decode(&first.binary).unwrap().issuers[0]
            .keys
            .0
            .is_empty()
    );
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn an_issuer_written_to_the_store_is_published_with_its_keys_at_once() {
    let (state, _dir) = state();
    let mut published = state.snapshots().subscribe();
    let (stop, stopped) = watch::channel(false);
    // The publication task alone: no key task follows the store here.
    let task = tokio::spawn(run(state.clone(), stopped));
    seed(&state).await;
    let first = published
        .wait_for(|published| {
            published.as_ref().is_some_and(|published| {
                !Snapshot::decode(&published.binary)
                    .unwrap()
                    .issuers
                    .is_empty()
            })
        })
        .await
        .unwrap()
        .clone()
        .unwrap();
    let snapshot = Snapshot::decode(&first.binary).unwrap();
    assert_eq!(snapshot.issuers[0].id, "idp");
    assert!(
        !snapshot.issuers[0].keys.0.is_empty(),
        "the first snapshot with the issuer has its keys"
    );
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn held_polls_are_listed_as_connected_filters_until_they_stop() {
    let hub = SnapshotHub::default();
    {
        let _poll = hub.poll_started(
            "envoy-1",
            Some("00000000000000a1"),
            "dp",
            3,
            "2026-11-28T10:00:00Z".to_owned(),
        );
        let filters = hub.filters();
        assert_eq!(filters.len(), 1);
        assert_eq!(filters[0].node, "envoy-1");
        assert_eq!(filters[0].instance.as_deref(), Some("00000000000000a1"));
        assert_eq!(filters[0].version, 3);
        assert!(filters[0].polling);
        // A held poll keeps its row however long it is held.
        tokio::time::advance(FORGET_FILTERS_AFTER * 2).await;
        assert_eq!(hub.filters().len(), 1);
    }
    assert!(!hub.filters()[0].polling);
    tokio::time::advance(FORGET_FILTERS_AFTER - std::time::Duration::from_secs(1)).await;
    assert_eq!(hub.filters().len(), 1, "still within the window");
    tokio::time::advance(std::time::Duration::from_secs(1)).await;
    assert!(hub.filters().is_empty(), "aged out");
    // Its row goes at the next sweep (at most a minute apart, not on every poll).
    drop(hub.poll_started("envoy-2", None, "dp", 1, "2026-11-28T10:30:00Z".to_owned()));
    assert_eq!(hub.lock().len(), 1);
    drop(hub.poll_started("envoy-3", None, "dp", 1, "2026-11-28T10:30:00Z".to_owned()));
    assert_eq!(hub.lock().len(), 2);
}

#[tokio::test]
async fn a_poll_updates_only_the_row_of_its_own_node_instance_and_token() {
    let hub = SnapshotHub::default();
    let now = || "2026-11-28T10:00:00Z".to_owned();
    drop(hub.poll_started("envoy", Some("a"), "dp", 3, now()));
    drop(hub.poll_started("envoy", Some("b"), "dp", 3, now()));
    // Same node name, another token or no instance: rows of their own.
    drop(hub.poll_started("envoy", Some("a"), "other", 1, now()));
    drop(hub.poll_started("envoy", None, "dp", 1, now()));
    let filters = hub.filters();
    assert_eq!(filters.len(), 4);
    let row = |instance: Option<&str>, token: &str| {
        filters
            .iter()
            .find(|row| row.instance.as_deref() == instance && row.token_id == token)
            .unwrap()
            .version
    };
    assert_eq!(row(Some("a"), "dp"), 3);
    assert_eq!(row(Some("b"), "dp"), 3);
    assert_eq!(row(Some("a"), "other"), 1);
    assert_eq!(row(None, "dp"), 1);
}

/// A log writer that keeps every line, for asserting what an operator would read.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_change_injected_below_the_admin_api_that_does_not_compile_is_loud() {
    use tower::ServiceExt as _;

    let (state, _dir) = state();
    seed(&state).await;
    let published = publish(&state).unwrap();
    // Below the admin API: a second API on the same route, committed straight to the store.
    let mut clash: Api = state.apis().get("orders").unwrap().value;
    clash.id = "orders-2".to_owned();
    clash.listen_path = "/orders/".to_owned();
    let writer = state.writer().await.unwrap();
    let revision = writer.revision();
    let commit = crate::store::Commit {
        base_revision: revision - 1,
        writes: vec![crate::service::put(revision, &clash).unwrap()],
        audit: b"{}".to_vec(),
    };
    state.store().commit(&commit).unwrap();
    drop(writer);

    let log = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let log = log.clone();
            move || log.clone()
        })
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        assert!(publish(&state).is_err());
        assert!(publish(&state).is_err());
    });
    let lines = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        lines.matches("cannot publish a snapshot").count(),
        2,
        "{lines}"
    );
    assert!(lines.contains("ERROR"), "{lines}");
    assert!(
        lines.contains("apis[1].listen_path") && lines.contains("orders-2"),
        "{lines}"
    );

    let status = state.snapshots().status();
    assert_eq!(status.consecutive_failures, 2);
    assert!(
        status
            .last_publish_error
            .unwrap()
            .contains("apis[1].listen_path")
    );
    assert_eq!(
        state.snapshots().current().unwrap().version,
        published.version
    );
    // Nor does it take a version: the record still names the published one.
    assert_eq!(
        VersionRecord::read(state.store()).unwrap().unwrap().version,
        published.version
    );

    let app = crate::http::app(state.clone());
    let ready = app
        .clone()
        .oneshot(
            axum::http::Request::get("/readyz")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(ready.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
    let body = axum::body::to_bytes(ready.into_body(), 1 << 16)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "not_ready");
    assert!(
        body["message"].as_str().unwrap().contains("orders-2"),
        "{body}"
    );
    let info = app
        .oneshot(
            axum::http::Request::get("/admin/v1/snapshot")
                .header("authorization", "Bearer ops-key-0123456789")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let body = axum::body::to_bytes(info.into_body(), 1 << 16)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["consecutive_failures"], 2, "{body}");
    assert!(
        body["last_publish_error"]
            .as_str()
            .unwrap()
            .contains("listen_path")
    );
    assert!(body["last_published_at"].is_string());
    assert_eq!(body["version"], published.version);

    // An unrelated write is not blocked by the old fault, and the repair publishes again.
    state
        .policies()
        .create(
            &ops(),
            serde_json::from_value(json!({
                "id": "silver", "name": "Silver", "access_rights": [{"api": "orders"}]
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    state
        .apis()
        .delete(&ops(), "orders-2", &Precondition::Any)
        .await
        .unwrap();
    assert!(publish(&state).unwrap().version > published.version);
    assert_eq!(state.snapshots().status().consecutive_failures, 0);
}

#[tokio::test]
async fn a_write_whose_snapshot_would_not_compile_is_refused_and_stores_nothing() {
    let (state, _dir) = state();
    seed(&state).await;
    let revision = state.revision().unwrap();
    let error = state
        .apis()
        .create(
            &ops(),
            serde_json::from_value(json!({
                "id": "orders-2", "name": "O", "listen_path": "/orders/", "issuers": ["idp"],
                "audiences": ["x"]
            }))
            .unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ApiError::Conflict { field: Some(field), message }
            if field == "listen_path" && message.contains("`orders`")),
        "{error:?}"
    );
    assert_eq!(state.revision().unwrap(), revision);
}

/// One admin write of the property test below.
#[derive(Debug, Clone)]
enum AdminWrite {
    /// Create or replace an API.
    PutApi {
        id: usize,
        path: &'static str,
        hosts: Vec<&'static str>,
        header: &'static str,
    },
    /// Delete an API (refused while a policy grants it).
    DeleteApi(usize),
    /// Create or replace a policy granting some APIs, with path prefixes.
    PutPolicy {
        id: usize,
        apis: Vec<usize>,
        prefix: &'static str,
    },
    /// Delete a policy.
    DeletePolicy(usize),
}

fn admin_write() -> impl proptest::strategy::Strategy<Value = AdminWrite> {
    use proptest::prelude::*;
    const PATHS: [&str; 10] = [
        "/orders",
        "/orders/",
        "//orders",
        "/%6Frders",
        "/x/../orders",
        "/Orders",
        "/",
        "/a/b",
        "/a/b/",
        "orders",
    ];
    const HOSTS: [&str; 9] = [
        "example.com",
        "example.com:8443",
        "*.example.com",
        "*.EXAMPLE.com",
        "a.example.com",
        "A.Example.com.",
        "*",
        "[::1]:80",
        "bad host",
    ];
    const HEADERS: [&str; 6] = [
        "x-client",
        "X-Client",
        "te",
        "connection",
        "x_client",
        "x-envoy-a",
    ];
    const PREFIXES: [&str; 5] = ["/", "/v1", "v1", "/a/../b", "/%41"];
    prop_oneof![
        (
            0..4usize,
            proptest::sample::select(&PATHS[..]),
            proptest::collection::vec(proptest::sample::select(&HOSTS[..]), 0..3),
            proptest::sample::select(&HEADERS[..])
        )
            .prop_map(|(id, path, hosts, header)| AdminWrite::PutApi {
                id,
                path,
                hosts,
                header
            }),
        (0..4usize).prop_map(AdminWrite::DeleteApi),
        (
            0..3usize,
            proptest::collection::vec(0..4usize, 1..3),
            proptest::sample::select(&PREFIXES[..])
        )
            .prop_map(|(id, apis, prefix)| AdminWrite::PutPolicy { id, apis, prefix }),
        (0..3usize).prop_map(AdminWrite::DeletePolicy),
    ]
}

async fn apply(state: &AppState, write: &AdminWrite) -> Result<(), ApiError> {
    let actor = ops();
    match write {
        AdminWrite::PutApi {
            id,
            path,
            hosts,
            header,
        } => {
            let input = serde_json::from_value(json!({
                "id": format!("api-{id}"), "name": "API", "listen_path": path, "hosts": hosts,
                "issuers": ["idp"], "audiences": ["aud"], "identity_header": header
            }))
            .unwrap();
            match state.apis().create(&actor, input).await {
                Err(ApiError::AlreadyExists { .. }) => {
                    let input = serde_json::from_value(json!({
                        "name": "API", "listen_path": path, "hosts": hosts, "issuers": ["idp"],
                        "audiences": ["aud"], "identity_header": header
                    }))
                    .unwrap();
                    state
                        .apis()
                        .update(&actor, &format!("api-{id}"), &Precondition::Any, input)
                        .await
                        .map(drop)
                }
                other => other.map(drop),
            }
        }
        AdminWrite::DeleteApi(id) => {
            state
                .apis()
                .delete(&actor, &format!("api-{id}"), &Precondition::Any)
                .await
        }
        AdminWrite::PutPolicy { id, apis, prefix } => {
            let rights: Vec<_> = apis
                .iter()
                .map(|api| json!({"api": format!("api-{api}"), "path_prefixes": [prefix]}))
                .collect();
            let body = json!({"name": "P", "access_rights": rights});
            let mut create = body.clone();
            create["id"] = json!(format!("policy-{id}"));
            match state
                .policies()
                .create(&actor, serde_json::from_value(create).unwrap())
                .await
            {
                Err(ApiError::AlreadyExists { .. }) => state
                    .policies()
                    .update(
                        &actor,
                        &format!("policy-{id}"),
                        &Precondition::Any,
                        serde_json::from_value(body).unwrap(),
                    )
                    .await
                    .map(drop),
                other => other.map(drop),
            }
        }
        AdminWrite::DeletePolicy(id) => {
            state
                .policies()
                .delete(&actor, &format!("policy-{id}"), &Precondition::Any)
                .await
        }
    }
}

/// Everything the store holds, tree by tree, for "nothing changed" comparisons.
fn dump(state: &AppState) -> Vec<(crate::store::Tree, Vec<u8>, Vec<u8>)> {
    crate::store::Tree::ALL
        .iter()
        .flat_map(|tree| {
            state
                .store()
                .scan(*tree, None, crate::store::Order::Ascending)
                .map(move |entry| {
                    let (key, value) = entry.unwrap();
                    (*tree, key, value)
                })
        })
        .collect()
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 48, ..Default::default() })]

    /// Random sequences of admin writes (paths spelled many ways, hosts with ports and
    /// wildcards, reserved headers, policies and deletions): every acknowledged state compiles
    /// in core, and every refused write leaves the store exactly as it was.
    #[test]
    fn every_acknowledged_state_compiles_and_refusals_change_nothing(
        writes in proptest::collection::vec(admin_write(), 1..14)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (state, _dir) = state();
            state
                .issuers()
                .create(&ops(), serde_json::from_value(json!({
                    "id": "idp", "issuer": "https://idp.example.com",
                    "jwks": {"inline": {"keys": [rsa_jwk()]}}
                })).unwrap())
                .await
                .unwrap();
            for write in &writes {
                let before = dump(&state);
                let revision = state.revision().unwrap();
                match apply(&state, write).await {
                    Ok(()) => {
                        let snapshot = build(&state).unwrap();
                        if let Err(error) = CompiledSnapshot::compile(snapshot) {
                            panic!("{write:?} was acknowledged but the snapshot fails: {error}");
                        }
                    }
                    Err(_) => {
                        assert_eq!(state.revision().unwrap(), revision, "{write:?}");
                        assert!(dump(&state) == before, "{write:?} was refused but changed the store");
                    }
                }
            }
        });
    }
}

#[tokio::test]
async fn a_client_deleted_at_the_idp_leaves_the_revocations_once_its_tokens_cannot_pass() {
    let (state, _store, clock, _dir) = crate::service::test_support::flaky_state(
        "http://portico.test",
        crate::idp::HttpTimeouts::default(),
    );
    seed(&state).await;
    // The issuer bounds its tokens to an hour; the API tolerates 60 s of clock skew.
    state
        .issuers()
        .update(
            &ops(),
            "idp",
            &Precondition::Any,
            serde_json::from_value(json!({
                "issuer": "https://idp.example.com", "max_token_lifetime_seconds": 3600,
                "jwks": {"inline": {"keys": [rsa_jwk()]}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let clients = state.oauth_clients().all().unwrap();
    let id_of = |client_id: &str| {
        clients
            .iter()
            .find(|client| client.value.client_id == client_id)
            .map(|client| client.value.id.clone())
            .unwrap()
    };
    // client-a is gone from the IdP; client-b is only revoked here, so the IdP may still
    // issue it tokens and its revocation stays for good.
    state
        .oauth_clients()
        .mark_deleted(&ops(), &id_of("client-a"))
        .await
        .unwrap();
    state
        .oauth_clients()
        .revoke(&ops(), &id_of("client-b"), &Precondition::Missing)
        .await
        .unwrap();
    let deleted_at = crate::service::oauth_clients::unix_seconds(state.now());
    let published = publish(&state).unwrap();
    assert_eq!(published.counts.revoked_clients, 2);
    // The lifetime, plus twice the skew: the IdP's clock and ours may each be off by it.
    assert_eq!(published.next_revocation_end, Some(deleted_at + 3600 + 120));
    assert!(build(&state).unwrap().issuers[0].max_token_lifetime_seconds == Some(3600));

    clock.advance(std::time::Duration::from_secs(3600 + 119));
    assert_eq!(
        build(&state).unwrap().revoked_clients,
        ["client-a", "client-b"]
    );
    clock.advance(std::time::Duration::from_secs(1));
    let published = publish(&state).unwrap();
    let snapshot = Snapshot::decode(&published.binary).unwrap();
    assert_eq!(snapshot.revoked_clients, ["client-b"]);
    assert_eq!(published.next_revocation_end, None);
    // The record itself stays, revoked and readable, until an operator purges it.
    assert_eq!(
        state
            .oauth_clients()
            .get(&id_of("client-a"))
            .unwrap()
            .value
            .state,
        crate::service::oauth_clients::OAuthClientState::Revoked
    );
}

#[tokio::test]
async fn a_disabled_developers_deleted_client_stays_revoked() {
    let (state, _store, clock, _dir) = crate::service::test_support::flaky_state(
        "http://portico.test",
        crate::idp::HttpTimeouts::default(),
    );
    let developer = seed(&state).await;
    let client = state
        .oauth_clients()
        .all()
        .unwrap()
        .into_iter()
        .find(|client| client.value.client_id == "client-a")
        .unwrap();
    state
        .oauth_clients()
        .mark_deleted(&ops(), &client.value.id)
        .await
        .unwrap();
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
    clock.advance(std::time::Duration::from_secs(
        portico_core::rules::DEFAULT_MAX_TOKEN_LIFETIME_SECONDS + 3600,
    ));
    assert_eq!(
        build(&state).unwrap().revoked_clients,
        ["client-a", "client-b"]
    );
}

#[tokio::test]
async fn each_publication_keeps_the_deltas_from_the_last_versions_until_a_restart() {
    let (state, dir) = state();
    seed(&state).await;
    let first = publish(&state).unwrap();
    assert_eq!(first.deltas.oldest_base(), None, "nothing before the first");
    revoke(&state, "client-a").await;
    let second = publish(&state).unwrap();
    assert_eq!(second.version, 2);
    assert_eq!(second.deltas.oldest_base(), Some(1));
    let bytes = second.delta_since(1).unwrap();
    assert!(bytes.len() < 256, "{} bytes", bytes.len());
    assert!(bytes.len() < second.binary.len());
    let delta = SnapshotDelta::decode(&bytes).unwrap();
    assert_eq!(
        (delta.base, delta.version, delta.digest),
        (1, 2, second.digest)
    );
    let decoded = |published: &Published| Snapshot::decode(&published.binary).unwrap();
    assert_eq!(delta.apply(decoded(&first)).unwrap(), decoded(&second));
    // Filters compute the digest from what they decode, in either encoding.
    assert_eq!(decoded(&second).digest().unwrap(), second.digest);
    assert_eq!(
        Snapshot::decode(&second.json).unwrap().digest().unwrap(),
        second.digest
    );
    assert!(second.delta_since(0).is_none());
    assert!(second.delta_since(2).is_none(), "its own version");
    assert!(second.delta_since(9).is_none(), "a version never published");

    grant_every_method(&state).await;
    let third = publish(&state).unwrap();
    assert_eq!(third.deltas.oldest_base(), Some(1));
    for from in [&first, &second] {
        let delta = SnapshotDelta::decode(&third.delta_since(from.version).unwrap()).unwrap();
        assert_eq!(delta.apply(decoded(from)).unwrap(), decoded(&third));
    }
    assert!(
        Arc::ptr_eq(
            &third.delta_since(1).unwrap(),
            &third.delta_since(1).unwrap()
        ),
        "encoded once"
    );

    // A new process over the same store keeps the version and its digest, but no log.
    drop(state);
    let reopened = crate::service::test_support::state_in(dir.path());
    jwks::sync_issuers(&reopened).unwrap();
    let restarted = publish(&reopened).unwrap();
    assert_eq!(
        (restarted.version, restarted.digest),
        (third.version, third.digest)
    );
    assert_eq!(restarted.deltas.oldest_base(), None);
    assert!(restarted.delta_since(2).is_none());
}
