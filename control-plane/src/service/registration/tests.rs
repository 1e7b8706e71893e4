//! The registration flow against a mock IdP: failures store nothing and orphan nothing,
//! double submits register once, management refusals keep local state consistent.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::http::present::{issued_api_calls, issued_token_request};
use crate::idp::HttpTimeouts;
use crate::service::developers::NewDeveloper;
use crate::service::interrupted::InterruptedRegistration;
use crate::service::test_support::{FakeClock, FlakyStore, flaky_state, ops, seed_orders};
use crate::service::{ResourceKind, ResourceRef};

const INITIAL_TOKEN: &str = "initial-token-1";
const RAT: &str = "rat-1";

struct Fixture {
    state: AppState,
    store: Arc<FlakyStore>,
    clock: Arc<FakeClock>,
    idp: MockServer,
    developer: Developer,
    _dir: tempfile::TempDir,
}

fn from<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).unwrap()
}

/// A state with DCR pointing at a mock IdP (explicit endpoints, no discovery), one
/// catalogue entry `orders` and one developer.
async fn fixture(timeouts: HttpTimeouts) -> Fixture {
    let idp = MockServer::start().await;
    let (state, store, clock, dir) = flaky_state("http://portico.test", timeouts);
    let developer = seed(&state, &idp.uri()).await;
    Fixture {
        state,
        store,
        clock,
        idp,
        developer,
        _dir: dir,
    }
}

/// DCR at the IdP at `idp_uri` (explicit endpoints, no discovery), one catalogue entry
/// `orders` and one developer, who is returned.
async fn seed(state: &AppState, idp_uri: &str) -> Developer {
    seed_orders(state, idp_uri, "").await;
    state
        .dcr()
        .put_global(
            &ops(),
            &Precondition::Any,
            from(json!({
                "enabled": true, "issuer": idp_uri,
                "registration_endpoint": format!("{idp_uri}/reg"),
                "token_endpoint": format!("{idp_uri}/token"),
                "initial_access_token": INITIAL_TOKEN,
            })),
        )
        .await
        .unwrap();
    state
        .developers()
        .create(
            &ops(),
            NewDeveloper {
                email: "ada@example.com".to_owned(),
                name: "Ada".to_owned(),
                password: Secret::new("correct horse battery"),
            },
        )
        .await
        .unwrap()
        .value
}

/// The IdP's answer to a registration of `client_id`.
fn registered(idp: &MockServer, client_id: &str, secret: &str, token: &str) -> Value {
    json!({
        "client_id": client_id, "client_secret": secret, "client_secret_expires_at": 0,
        "client_id_issued_at": 1_800_000_000u64, "client_name": "App",
        "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_post",
        "response_types": [], "redirect_uris": [],
        "registration_access_token": token,
        "registration_client_uri": format!("{}/reg/{client_id}", idp.uri()),
    })
}

async fn mount_registration(idp: &MockServer, client_id: &str) {
    Mock::given(method("POST"))
        .and(path("/reg"))
        .and(header(
            "authorization",
            format!("Bearer {INITIAL_TOKEN}").as_str(),
        ))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(registered(idp, client_id, "secret-1", RAT)),
        )
        .mount(idp)
        .await;
}

fn request() -> ClientRequest {
    ClientRequest {
        catalogue_entries: vec!["orders".to_owned()],
        client_name: "App".to_owned(),
        redirect_uris: Vec::new(),
    }
}

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::parse(text).unwrap()
}

async fn requests_to(idp: &MockServer, verb: &str, at: &str) -> usize {
    idp.received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|request| request.method.as_str() == verb && request.url.path() == at)
        .count()
}

#[tokio::test]
async fn a_registration_answers_the_secret_once_with_a_ready_token_request() {
    let f = fixture(HttpTimeouts::default()).await;
    mount_registration(&f.idp, "client-a").await;
    let issued = f
        .state
        .registrations()
        .register(&f.developer, key("k1"), request())
        .await
        .unwrap();
    assert_eq!(issued.client.client_id, "client-a");
    assert_eq!(
        issued.client_secret.as_ref().map(Secret::expose),
        Some("secret-1")
    );
    assert!(
        !format!("{issued:?}").contains("secret-1"),
        "Debug redacts it"
    );
    assert_eq!(
        issued_token_request(&issued).as_deref(),
        Some(
            format!(
                "curl -s -d grant_type=client_credentials --data-urlencode 'client_id=client-a' \
                 --data-urlencode 'client_secret=secret-1' '{}/token'",
                f.idp.uri()
            )
            .as_str()
        )
    );
    assert_eq!(
        issued_api_calls(&issued),
        ["curl -H \"Authorization: Bearer $ACCESS_TOKEN\" \"$GATEWAY/orders\""]
    );
    let body: Value =
        serde_json::from_slice(&f.idp.received_requests().await.unwrap()[0].body).unwrap();
    assert_eq!(
        body,
        json!({
            "client_name": "App", "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_post", "response_types": [],
            "redirect_uris": [],
        })
    );
    let shown = f
        .state
        .registrations()
        .get_for(&f.developer, &issued.client.id)
        .unwrap();
    assert!(shown.client_secret.is_none(), "the secret is shown once");
    assert!(
        issued_token_request(&shown)
            .unwrap()
            .contains("<client_secret>")
    );
}

#[tokio::test]
async fn a_store_failure_after_the_idp_created_the_client_deletes_it_there() {
    let f = fixture(HttpTimeouts::default()).await;
    mount_registration(&f.idp, "client-a").await;
    Mock::given(method("DELETE"))
        .and(path("/reg/client-a"))
        .and(header("authorization", format!("Bearer {RAT}").as_str()))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&f.idp)
        .await;
    f.store.fail_next_commit();
    let error = f
        .state
        .registrations()
        .register(&f.developer, key("k1"), request())
        .await
        .unwrap_err();
    assert!(matches!(error, ApiError::Store(_)), "{error:?}");
    assert_eq!(requests_to(&f.idp, "DELETE", "/reg/client-a").await, 1);
    assert!(f.state.oauth_clients().all().unwrap().is_empty());
    assert_eq!(
        f.state
            .store()
            .scan(Tree::Idempotency, None, Order::Ascending)
            .count(),
        0,
        "no idempotency record either"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_double_submit_registers_one_client() {
    let f = fixture(HttpTimeouts::default()).await;
    Mock::given(method("POST"))
        .and(path("/reg"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(registered(&f.idp, "client-a", "secret-1", RAT))
                .set_delay(Duration::from_millis(300)),
        )
        .mount(&f.idp)
        .await;
    let submit = || {
        let state = f.state.clone();
        let developer = f.developer.clone();
        tokio::spawn(async move {
            state
                .registrations()
                .register(&developer, key("same-form"), request())
                .await
        })
    };
    let (first, second) = (submit(), submit());
    let (first, second) = (
        first.await.unwrap().unwrap(),
        second.await.unwrap().unwrap(),
    );
    assert_eq!(requests_to(&f.idp, "POST", "/reg").await, 1);
    assert_eq!(first.client.id, second.client.id);
    assert!(
        first.replayed != second.replayed,
        "one of them is the replay"
    );
    let replay = if first.replayed { &first } else { &second };
    assert_eq!(
        replay.client_secret.as_ref().map(Secret::expose),
        Some("secret-1")
    );
    assert_eq!(f.state.oauth_clients().all().unwrap().len(), 1);

    // After the replay window the secret is no longer shown; a different request with the
    // same key is refused; a new key registers again.
    f.clock
        .advance(SECRET_REPLAY_WINDOW + Duration::from_secs(1));
    let late = f
        .state
        .registrations()
        .register(&f.developer, key("same-form"), request())
        .await
        .unwrap();
    assert!(late.replayed);
    assert!(late.client_secret.is_none());
    let other = ClientRequest {
        client_name: "Another".to_owned(),
        ..request()
    };
    let error = f
        .state
        .registrations()
        .register(&f.developer, key("same-form"), other)
        .await
        .unwrap_err();
    assert!(matches!(error, ApiError::IdempotencyKeyReused), "{error:?}");
}

#[tokio::test]
async fn one_idempotency_key_served_by_two_replicas_at_once_records_one_client() {
    let f = fixture(HttpTimeouts::default()).await;
    // Each replica's registration reaches the IdP (their locks are their own); the IdP
    // answers each with its own client.
    for client_id in ["client-a", "client-b"] {
        Mock::given(method("POST"))
            .and(path("/reg"))
            .respond_with(
                ResponseTemplate::new(201)
                    .set_body_json(registered(&f.idp, client_id, "secret-1", RAT))
                    .set_delay(Duration::from_millis(300)),
            )
            .up_to_n_times(1)
            .mount(&f.idp)
            .await;
    }
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&f.idp)
        .await;
    let other = crate::service::test_support::another_replica(&f.state);
    let submit = |state: &AppState| {
        let state = state.clone();
        let developer = f.developer.clone();
        tokio::spawn(async move {
            state
                .registrations()
                .register(&developer, key("same-form"), request())
                .await
        })
    };
    let (first, second) = (submit(&f.state), submit(&other));
    let outcomes = [first.await.unwrap(), second.await.unwrap()];
    assert_eq!(requests_to(&f.idp, "POST", "/reg").await, 2);
    let won: Vec<&Issued> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(won.len(), 1, "{outcomes:?}");
    let lost = outcomes.iter().find_map(|o| o.as_ref().err()).unwrap();
    assert!(
        matches!(
            lost,
            ApiError::Store(crate::store::StoreError::Conflict { .. })
        ),
        "{lost:?}"
    );
    // The loser's client is deleted at the IdP; one client is recorded, and a retry on
    // either replica replays it.
    let winner = won[0].client.client_id.clone();
    let loser = if winner == "client-a" {
        "client-b"
    } else {
        "client-a"
    };
    assert_eq!(
        requests_to(&f.idp, "DELETE", &format!("/reg/{loser}")).await,
        1
    );
    assert_eq!(
        requests_to(&f.idp, "DELETE", &format!("/reg/{winner}")).await,
        0
    );
    let clients = f.state.oauth_clients().all().unwrap();
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0].value.client_id, winner);
    for state in [&f.state, &other] {
        let retry = state
            .registrations()
            .register(&f.developer, key("same-form"), request())
            .await
            .unwrap();
        assert!(retry.replayed);
        assert_eq!(retry.client.client_id, winner);
    }
}

#[tokio::test]
async fn idp_refusals_show_the_idp_texts_and_store_nothing() {
    let f = fixture(HttpTimeouts::default()).await;
    Mock::given(method("POST"))
        .and(path("/reg"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_redirect_uri", "error_description": "redirect_uris must be https",
        })))
        .mount(&f.idp)
        .await;
    let error = f
        .state
        .registrations()
        .register(&f.developer, key("k1"), request())
        .await
        .unwrap_err();
    assert_eq!(error.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
    let body = error.body();
    assert_eq!(body.error, "idp_rejected");
    assert_eq!(body.idp_error.as_deref(), Some("invalid_redirect_uri"));
    assert_eq!(
        body.idp_error_description.as_deref(),
        Some("redirect_uris must be https")
    );
    assert!(body.message.contains("redirect_uris must be https"));
    assert!(f.state.oauth_clients().all().unwrap().is_empty());
}

#[tokio::test]
async fn a_slow_idp_is_idp_unavailable_and_stores_nothing() {
    let f = fixture(HttpTimeouts {
        connect: Duration::from_millis(200),
        total: Duration::from_millis(200),
    })
    .await;
    Mock::given(method("POST"))
        .and(path("/reg"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(registered(&f.idp, "client-a", "secret-1", RAT))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&f.idp)
        .await;
    let error = f
        .state
        .registrations()
        .register(&f.developer, key("k1"), request())
        .await
        .unwrap_err();
    assert_eq!(error.status(), axum::http::StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(error.code(), "idp_unavailable");
    assert!(f.state.oauth_clients().all().unwrap().is_empty());
    // The request reached the IdP, which may have created the client: the operators see it.
    let interrupted = interrupted(&f.state);
    assert_eq!(interrupted.len(), 1, "{interrupted:?}");
    assert_eq!(interrupted[0].reason, Some(InterruptionReason::NoAnswer));
    assert_eq!(interrupted[0].operation, RegistrationOperation::Register);
    assert_eq!(interrupted[0].developer_id, f.developer.id);
    assert_eq!(interrupted[0].client_name, "App");
    assert_eq!(interrupted[0].catalogue_entries, ["orders"]);
    assert_eq!(
        interrupted[0].registration_endpoint,
        format!("{}/reg", f.idp.uri())
    );
    assert!(
        interrupted[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("did not answer in time"),
        "{interrupted:?}"
    );
}

#[tokio::test]
async fn an_oversized_answer_to_a_registration_is_left_for_the_operators() {
    // The IdP created the client and answered 201 with a body larger than Portico reads: the
    // client exists at the IdP, so its intent must stay listed.
    let f = fixture(HttpTimeouts::default()).await;
    let mut answer = registered(&f.idp, "client-a", "secret-1", RAT);
    answer["logo"] = json!("x".repeat(crate::idp::dcr::MAX_DCR_BODY_BYTES));
    Mock::given(method("POST"))
        .and(path("/reg"))
        .respond_with(ResponseTemplate::new(201).set_body_json(answer))
        .mount(&f.idp)
        .await;
    f.register().await.unwrap_err();
    assert!(f.state.oauth_clients().all().unwrap().is_empty());
    let interrupted = interrupted(&f.state);
    assert_eq!(interrupted.len(), 1, "{interrupted:?}");
    assert_eq!(interrupted[0].reason, Some(InterruptionReason::NoAnswer));
    assert!(
        interrupted[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("larger than"),
        "{interrupted:?}"
    );
}

#[tokio::test]
async fn a_gateway_timeout_in_front_of_the_idp_is_left_for_the_operators() {
    // A 504 is a proxy that stopped waiting for the IdP, which may still create the client.
    let f = fixture(HttpTimeouts::default()).await;
    Mock::given(method("POST"))
        .and(path("/reg"))
        .respond_with(ResponseTemplate::new(504).set_body_string("Gateway Timeout"))
        .mount(&f.idp)
        .await;
    f.register().await.unwrap_err();
    let interrupted = interrupted(&f.state);
    assert_eq!(interrupted.len(), 1, "{interrupted:?}");
    assert_eq!(interrupted[0].reason, Some(InterruptionReason::NoAnswer));
}

/// The interrupted registrations the operators see.
fn interrupted(state: &AppState) -> Vec<InterruptedRegistration> {
    state
        .interrupted_registrations()
        .list()
        .unwrap()
        .into_iter()
        .map(|entry| entry.value)
        .collect()
}

impl Fixture {
    /// Registers the usual request with idempotency key `k1`.
    async fn register(&self) -> Result<Issued, ApiError> {
        self.state
            .registrations()
            .register(&self.developer, key("k1"), request())
            .await
    }
}

/// Asserts that no registration intent is left for the next run of the process.
fn assert_nothing_left(state: &AppState) {
    let left = interrupted(&crate::service::test_support::restarted(state));
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn settled_registrations_leave_nothing_interrupted() {
    // Recorded, refused by the IdP, deleted again after a refused answer, recorded as an
    // orphan: each outcome is known, so no intent is left behind.
    let f = fixture(HttpTimeouts::default()).await;
    mount_registration(&f.idp, "client-a").await;
    f.register().await.unwrap();
    assert!(interrupted(&f.state).is_empty());
    assert_nothing_left(&f.state);

    let refused = fixture(HttpTimeouts::default()).await;
    Mock::given(method("POST"))
        .and(path("/reg"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(
                json!({"error": "invalid_client_metadata", "error_description": "no"}),
            ),
        )
        .mount(&refused.idp)
        .await;
    refused.register().await.unwrap_err();
    assert_nothing_left(&refused.state);

    let deleted = refused_registration_deleted_with(204).await;
    deleted.register().await.unwrap_err();
    assert_nothing_left(&deleted.state);

    let orphaned = refused_registration_deleted_with(500).await;
    orphaned.register().await.unwrap_err();
    assert_eq!(orphans(&orphaned.state).len(), 1);
    // The orphan's record took the intent's place.
    assert_nothing_left(&orphaned.state);
}

#[tokio::test]
async fn an_answer_without_client_id_is_left_for_the_operators() {
    let f = fixture(HttpTimeouts::default()).await;
    mount_registration_answer(&f.idp, "client-a", json!({"client_id": null})).await;
    f.register().await.unwrap_err();
    assert!(f.state.oauth_clients().all().unwrap().is_empty());
    let interrupted = interrupted(&f.state);
    assert_eq!(interrupted.len(), 1, "{interrupted:?}");
    assert_eq!(interrupted[0].reason, Some(InterruptionReason::Unrecorded));
}

#[tokio::test]
async fn a_registration_cut_short_is_listed_after_a_restart_and_acknowledged_with_an_audit_entry() {
    let f = fixture(HttpTimeouts::default()).await;
    // The IdP holds the registration; the process "stops" while it waits.
    Mock::given(method("POST"))
        .and(path("/reg"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(registered(&f.idp, "client-a", "secret-1", RAT))
                .set_delay(Duration::from_secs(300)),
        )
        .mount(&f.idp)
        .await;
    let state = f.state.clone();
    let developer = f.developer.clone();
    let pending = tokio::spawn(async move {
        state
            .registrations()
            .register(&developer, key("k1"), request())
            .await
    });
    let deadline = crate::service::monotonic_now() + Duration::from_secs(30);
    while requests_to(&f.idp, "POST", "/reg").await == 0 {
        assert!(
            crate::service::monotonic_now() < deadline,
            "the IdP was never called"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        interrupted(&f.state).is_empty(),
        "in progress in this run, not interrupted"
    );
    pending.abort();
    let restarted = crate::service::test_support::restarted(&f.state);
    let listed = restarted.interrupted_registrations().list().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    let entry = &listed[0].value;
    assert_eq!(entry.reason, Some(InterruptionReason::ProcessStopped));
    assert_eq!(entry.developer_id, f.developer.id);
    let id = entry.id.clone();
    assert_eq!(
        restarted
            .interrupted_registrations()
            .acknowledge(&ops(), &id, &Precondition::Missing)
            .await
            .unwrap_err()
            .code(),
        "precondition_required"
    );
    restarted
        .interrupted_registrations()
        .acknowledge(&ops(), &id, &Precondition::Any)
        .await
        .unwrap();
    assert!(interrupted(&restarted).is_empty());
    assert_eq!(
        restarted
            .interrupted_registrations()
            .get(&id)
            .unwrap_err()
            .code(),
        "not_found"
    );
    let audit = restarted
        .audit()
        .list(
            &crate::service::PageRequest {
                limit: 100,
                after: None,
            },
            &Default::default(),
        )
        .unwrap();
    let acknowledged: Vec<_> = audit
        .items
        .iter()
        .filter(|entry| {
            entry.resource == ResourceRef::new(ResourceKind::InterruptedRegistration, &id)
        })
        .collect();
    assert_eq!(acknowledged.len(), 1, "{:?}", audit.items);
    assert_eq!(acknowledged[0].action, AuditAction::Delete);
}

#[tokio::test]
async fn a_refused_delete_revokes_locally_and_a_retry_that_finds_it_gone_finishes() {
    let f = fixture(HttpTimeouts::default()).await;
    mount_registration(&f.idp, "client-a").await;
    let issued = f
        .state
        .registrations()
        .register(&f.developer, key("k1"), request())
        .await
        .unwrap();
    let id = issued.client.id;
    Mock::given(method("DELETE"))
        .and(path("/reg/client-a"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": "invalid_token", "error_description": "invalid token provided",
        })))
        .up_to_n_times(1)
        .mount(&f.idp)
        .await;
    let error = f
        .state
        .registrations()
        .delete_for(&f.developer, &id)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "idp_rejected");
    assert!(error.body().message.contains("revoked"), "{error}");
    let client = f.state.oauth_clients().get(&id).unwrap().value;
    assert_eq!(client.state, OAuthClientState::Revoked);
    assert_eq!(client.deleted_at, None);
    assert_eq!(
        f.state.oauth_clients().bindings().unwrap().revoked,
        ["client-a"]
    );

    Mock::given(method("DELETE"))
        .and(path("/reg/client-a"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&f.idp)
        .await;
    f.state
        .registrations()
        .delete_for(&f.developer, &id)
        .await
        .unwrap();
    let client = f.state.oauth_clients().get(&id).unwrap().value;
    assert!(client.deleted_at.is_some(), "an IdP 404 counts as deleted");
    assert!(
        f.state
            .registrations()
            .list_for(&f.developer)
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_rotation_keeps_the_client_when_the_idp_issues_a_new_secret() {
    let f = fixture(HttpTimeouts::default()).await;
    mount_registration(&f.idp, "client-a").await;
    let issued = f
        .state
        .registrations()
        .register(&f.developer, key("k1"), request())
        .await
        .unwrap();
    Mock::given(method("PUT"))
        .and(path("/reg/client-a"))
        .and(header("authorization", format!("Bearer {RAT}").as_str()))
        .and(body_partial_json(
            json!({"client_id": "client-a", "client_name": "App"}),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(registered(&f.idp, "client-a", "secret-2", "rat-2")),
        )
        .mount(&f.idp)
        .await;
    let rotated = f
        .state
        .registrations()
        .rotate_secret(&f.developer, &issued.client.id)
        .await
        .unwrap();
    assert_eq!(rotated.client.client_id, "client-a");
    assert_eq!(
        rotated.client_secret.as_ref().map(Secret::expose),
        Some("secret-2")
    );
    let secrets = f.state.oauth_clients().secrets(&issued.client.id).unwrap();
    assert_eq!(secrets.client_secret.unwrap().expose(), "secret-2");
    assert_eq!(
        secrets.registration_access_token.unwrap().expose(),
        "rat-2",
        "the rotated registration access token replaces the stored one"
    );
    assert_eq!(
        requests_to(&f.idp, "POST", "/reg").await,
        1,
        "no re-registration"
    );
}

#[tokio::test]
async fn bindings_list_active_clients_with_their_policies_and_revoked_client_ids() {
    let f = fixture(HttpTimeouts::default()).await;
    mount_registration(&f.idp, "client-a").await;
    let issued = f
        .state
        .registrations()
        .register(&f.developer, key("k1"), request())
        .await
        .unwrap();
    let bindings = f.state.oauth_clients().bindings().unwrap();
    assert_eq!(
        bindings.active,
        [portico_core::snapshot::ClientBinding {
            client_id: "client-a".to_owned(),
            policies: vec!["gold".to_owned()],
            expires_at: std::collections::BTreeMap::new(),
            client: Some(issued.client.id.clone()),
            developer: Some(f.developer.id.clone()),
        }]
    );
    assert!(bindings.revoked.is_empty());
    f.state
        .oauth_clients()
        .revoke(&ops(), &issued.client.id, &Precondition::Missing)
        .await
        .unwrap();
    let bindings = f.state.oauth_clients().bindings().unwrap();
    assert!(bindings.active.is_empty());
    assert_eq!(bindings.revoked, ["client-a"]);
}

#[test]
fn idempotency_keys_are_visible_ascii_of_bounded_length() {
    assert!(IdempotencyKey::parse("2f1c8f6e-uuid").is_ok());
    assert!(IdempotencyKey::parse("").is_err());
    assert!(IdempotencyKey::parse("has space").is_err());
    assert!(IdempotencyKey::parse(&"k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1)).is_err());
}

/// A 201 answer to a registration, with `changes` applied (a member set to `null` is removed).
async fn mount_registration_answer(idp: &MockServer, client_id: &str, changes: Value) {
    let mut answer = registered(idp, client_id, "secret-1", RAT);
    for (member, value) in changes.as_object().unwrap() {
        if value.is_null() {
            answer.as_object_mut().unwrap().remove(member);
        } else {
            answer[member] = value.clone();
        }
    }
    Mock::given(method("POST"))
        .and(path("/reg"))
        .respond_with(ResponseTemplate::new(201).set_body_json(answer))
        .mount(idp)
        .await;
}

/// A fixture whose IdP answers a registration of `client-a` with an unreadable
/// `client_secret_expires_at`, and its deletion (once, with the registration access token) with
/// `status`.
async fn refused_registration_deleted_with(status: u16) -> Fixture {
    let f = fixture(HttpTimeouts::default()).await;
    mount_registration_answer(
        &f.idp,
        "client-a",
        json!({"client_secret_expires_at": "soon"}),
    )
    .await;
    Mock::given(method("DELETE"))
        .and(path("/reg/client-a"))
        .and(header("authorization", format!("Bearer {RAT}").as_str()))
        .respond_with(ResponseTemplate::new(status))
        .expect(1)
        .mount(&f.idp)
        .await;
    f
}

fn orphans(state: &AppState) -> Vec<OAuthClient> {
    state
        .oauth_clients()
        .all()
        .unwrap()
        .into_iter()
        .map(|record| record.value)
        .filter(|client| client.state == OAuthClientState::Orphaned)
        .collect()
}

#[tokio::test]
async fn registration_times_written_as_strings_are_accepted() {
    let f = fixture(HttpTimeouts::default()).await;
    mount_registration_answer(
        &f.idp,
        "client-a",
        json!({"client_secret_expires_at": "0", "client_id_issued_at": 1.8e9}),
    )
    .await;
    let issued = f
        .state
        .registrations()
        .register(&f.developer, key("k1"), request())
        .await
        .unwrap();
    assert_eq!(issued.client.client_secret_expires_at, Some(0));
    assert_eq!(issued.client.client_id_issued_at, Some(1_800_000_000));
}

#[tokio::test]
async fn a_refused_answer_is_deleted_at_the_idp_when_it_can_be_managed() {
    let f = refused_registration_deleted_with(204).await;
    let error = f
        .state
        .registrations()
        .register(&f.developer, key("k1"), request())
        .await
        .unwrap_err();
    assert_eq!(error.code(), "idp_invalid_response", "{error:?}");
    assert_eq!(requests_to(&f.idp, "DELETE", "/reg/client-a").await, 1);
    assert!(f.state.oauth_clients().all().unwrap().is_empty());
}

#[tokio::test]
async fn a_refused_answer_without_management_is_recorded_as_an_orphan() {
    let f = fixture(HttpTimeouts::default()).await;
    mount_registration_answer(
        &f.idp,
        "client-a",
        json!({
            "client_secret_expires_at": "soon",
            "registration_access_token": null, "registration_client_uri": null,
        }),
    )
    .await;
    let error = f
        .state
        .registrations()
        .register(&f.developer, key("k1"), request())
        .await
        .unwrap_err();
    assert_eq!(error.code(), "idp_invalid_response", "{error:?}");
    assert_eq!(requests_to(&f.idp, "DELETE", "/reg/client-a").await, 0);
    let orphans = orphans(&f.state);
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0].client_id, "client-a");
    assert!(
        orphans[0]
            .orphan_reason
            .as_deref()
            .unwrap()
            .contains("client_secret_expires_at"),
        "{:?}",
        orphans[0].orphan_reason
    );
    assert!(
        f.state
            .registrations()
            .list_for(&f.developer)
            .unwrap()
            .is_empty(),
        "the developer never received it"
    );
    let bindings = f.state.oauth_clients().bindings().unwrap();
    assert_eq!(bindings.revoked, ["client-a"], "the gateway refuses it");
    let audit = f
        .state
        .audit()
        .list(
            &crate::service::PageRequest {
                limit: 100,
                after: None,
            },
            &Default::default(),
        )
        .unwrap();
    assert!(
        audit
            .items
            .iter()
            .any(|entry| entry.action == AuditAction::RecordOrphan),
        "the orphan is audited"
    );
}

#[tokio::test]
async fn a_refused_answer_whose_deletion_fails_is_recorded_as_an_orphan() {
    let f = refused_registration_deleted_with(500).await;
    f.state
        .registrations()
        .register(&f.developer, key("k1"), request())
        .await
        .unwrap_err();
    let orphans = orphans(&f.state);
    assert_eq!(orphans.len(), 1);
    assert!(
        orphans[0]
            .orphan_reason
            .as_deref()
            .unwrap()
            .contains("deleting it at the identity provider failed"),
        "{:?}",
        orphans[0].orphan_reason
    );
}

#[tokio::test]
async fn a_rotation_is_refused_when_dcr_is_disabled_for_the_entry() {
    let f = fixture(HttpTimeouts::default()).await;
    mount_registration(&f.idp, "client-a").await;
    let issued = f
        .state
        .registrations()
        .register(&f.developer, key("k1"), request())
        .await
        .unwrap();
    f.state
        .dcr()
        .put_global(&ops(), &Precondition::Any, from(json!({"enabled": false})))
        .await
        .unwrap();
    let error = f
        .state
        .registrations()
        .rotate_secret(&f.developer, &issued.client.id)
        .await
        .unwrap_err();
    assert_eq!(error.code(), "dcr_disabled", "{error:?}");
    assert!(
        error.to_string().contains("catalogue entry `orders`"),
        "{error}"
    );
    assert_eq!(
        f.idp.received_requests().await.unwrap().len(),
        1,
        "nothing but the first registration reached the IdP"
    );
}

#[tokio::test]
async fn with_a_fake_idp_an_undeletable_refused_client_is_orphaned_without_any_http() {
    use crate::idp::test_support::FakeIdp;
    use crate::service::test_support::flaky_state_with;

    let idp = Arc::new(FakeIdp::default());
    idp.driver
        .answer_register(Err(DcrError::UnusableRegistration {
            reason: "`client_secret_expires_at` is not a number of seconds".to_owned(),
            created: Some(Box::new(ManagedClient {
                client_id: "client-z".to_owned(),
                registration_client_uri: None,
                registration_access_token: None,
            })),
        }));
    idp.driver
        .answer_delete(Err(DcrError::ManagementNotSupported {
            reason: "the identity provider returned no registration_client_uri for this client",
        }));
    let (state, _store, _clock, _dir) =
        flaky_state_with("http://portico.test", Arc::clone(&idp) as _);
    // Nothing listens here: any HTTP call would fail the test with another error.
    let developer = seed(&state, "http://127.0.0.1:9").await;
    let error = state
        .registrations()
        .register(&developer, key("k1"), request())
        .await
        .unwrap_err();
    assert_eq!(error.code(), "idp_invalid_response", "{error:?}");
    assert_eq!(idp.driver.calls(), ["register", "delete client-z"]);
    let orphans = orphans(&state);
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0].client_id, "client-z");
    assert_eq!(orphans[0].developer_id, developer.id);
}

#[tokio::test]
async fn a_deleted_client_is_purged_only_once_none_of_its_tokens_can_pass() {
    let f = fixture(HttpTimeouts::default()).await;
    mount_registration(&f.idp, "client-a").await;
    let issued = f
        .state
        .registrations()
        .register(&f.developer, key("k1"), request())
        .await
        .unwrap();
    let id = issued.client.id;
    // The operator says the client is gone at the IdP: it is kept, revoked, with deleted_at.
    f.state
        .registrations()
        .delete_as_operator(&ops(), &id, &Precondition::Any, true)
        .await
        .unwrap();
    let revoked = || f.state.oauth_clients().bindings().unwrap().revoked;
    assert_eq!(revoked(), ["client-a"]);

    // Its tokens issued just before can pass for the issuer's token lifetime plus twice the
    // skew: until then, a purge would drop the revocation and let them through again.
    let lifetime = portico_core::rules::DEFAULT_MAX_TOKEN_LIFETIME_SECONDS;
    let skew = portico_core::rules::DEFAULT_CLOCK_SKEW_SECONDS;
    f.clock
        .advance(std::time::Duration::from_secs(lifetime + 2 * skew - 1));
    let refused = f
        .state
        .registrations()
        .delete_as_operator(&ops(), &id, &Precondition::Any, false)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "conflict");
    assert!(
        refused.body().message.contains("purge it after"),
        "{refused}"
    );
    assert!(
        f.state.oauth_clients().get(&id).is_ok(),
        "nothing was removed"
    );
    assert_eq!(revoked(), ["client-a"]);

    f.clock.advance(Duration::from_secs(1));
    assert!(revoked().is_empty(), "the revocation has ended");
    f.state
        .registrations()
        .delete_as_operator(&ops(), &id, &Precondition::Any, false)
        .await
        .unwrap();
    assert_eq!(
        f.state.oauth_clients().get(&id).unwrap_err().code(),
        "not_found"
    );
}
