//! The audit trail is complete: every admin and portal write, driven through the whole app,
//! changes exactly the resources its audit entries name (cascades and records kept alongside
//! included), and replaying the audit log gives the store's resources.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use wiremock::{Mock, MockServer, Respond, ResponseTemplate};

use super::*;
use crate::idp::HttpTimeouts;
use crate::service::audit::{AuditAction, AuditEntry};
use crate::service::test_support::flaky_state;
use crate::service::{AppState, ResourceRef, audited_as};
use crate::store::{Order, Tree, Write};

const KEY: &str = "ops-key-0123456789";
const ORIGIN: &str = "http://portico.test";
const INITIAL_TOKEN: &str = "initial-token-1";

/// An IdP that registers clients `c1`, `c2`, … with secret `secret-<client_id>`, keeps the
/// secret on an RFC 7592 update (so a rotation re-registers), and deletes anything.
struct Idp {
    uri: String,
    next: AtomicUsize,
}

impl Respond for Idp {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let path = request.url.path();
        let client_id = match (request.method.as_str(), path) {
            ("POST", "/reg") => format!("c{}", self.next.fetch_add(1, Ordering::SeqCst) + 1),
            ("DELETE", _) => return ResponseTemplate::new(204),
            (_, path) => path.trim_start_matches("/reg/").to_owned(),
        };
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(json!({}));
        ResponseTemplate::new(if path == "/reg" { 201 } else { 200 }).set_body_json(json!({
            "client_id": client_id, "client_secret": format!("secret-{client_id}"),
            "client_secret_expires_at": 0, "client_id_issued_at": 1_800_000_000_u64,
            "client_name": body.get("client_name").cloned().unwrap_or(json!("App")),
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_post",
            "response_types": [],
            "redirect_uris": body.get("redirect_uris").cloned().unwrap_or(json!([])),
            "registration_access_token": format!("rat-{client_id}"),
            "registration_client_uri": format!("{}/reg/{client_id}", self.uri),
        }))
    }
}

/// Every audited resource in the store: (kind, id) to its stored bytes. Interrupted
/// registrations count too: written unaudited by a registration (operational state), their
/// acknowledgement by an operator is an audited change.
fn resources(state: &AppState) -> BTreeMap<(String, String), Vec<u8>> {
    let mut found = BTreeMap::new();
    for tree in Tree::ALL {
        for entry in state.store().scan(tree, None, Order::Ascending) {
            let (key, value) = entry.unwrap();
            if tree == Tree::RegistrationIntents {
                let id = String::from_utf8(key.clone()).unwrap();
                found.insert(("interrupted_registration".to_owned(), id), value);
                continue;
            }
            let write = Write::put(tree, key, value.clone());
            if let Some(resource) = audited_as(&write) {
                found.insert(name(&resource.unwrap()), value);
            }
        }
    }
    found
}

fn name(resource: &ResourceRef) -> (String, String) {
    (
        serde_json::to_value(resource.kind)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned(),
        resource.id.clone(),
    )
}

/// Whether an audited change removes the stored record: a deletion does, except an OAuth
/// client's, which keeps the record (revoked, with `deleted_at`) so that the data plane keeps
/// refusing its `client_id`.
fn removes((kind, _): &(String, String), action: AuditAction) -> bool {
    action == AuditAction::Delete && kind != "oauth_client"
}

fn audit_log(state: &AppState) -> Vec<AuditEntry> {
    state
        .store()
        .scan(Tree::Audit, None, Order::Ascending)
        .map(|entry| serde_json::from_slice(&entry.unwrap().1).unwrap())
        .collect()
}

/// Drives the app and checks each write against the audit log as it goes.
struct Run {
    app: Router,
    state: AppState,
    cookie: Option<String>,
    before: BTreeMap<(String, String), Vec<u8>>,
    audited: usize,
    done: BTreeSet<String>,
    sent: usize,
}

impl Run {
    /// Sends one request; `operation` is its OpenAPI operation id. Checks the answer's status
    /// is `expected`, then that the resources it changed are exactly those named by the audit
    /// entries it added, each with the right action.
    async fn call(
        &mut self,
        operation: &str,
        (method, path): (&str, &str),
        body: Option<Value>,
        expected: StatusCode,
    ) -> Value {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::ORIGIN, ORIGIN)
            .header("idempotency-key", format!("key-{}", self.sent));
        self.sent += 1;
        // Changes to what exists say so; a PUT that creates must not.
        if expected != StatusCode::CREATED {
            builder = builder.header(header::IF_MATCH, "*");
        }
        if path.starts_with("/admin/") {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {KEY}"));
        }
        if let Some(cookie) = &self.cookie {
            builder = builder.header(header::COOKIE, cookie);
        }
        // The portal takes only JSON requests, with a body or not.
        let request = builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(
                body.as_ref()
                    .map_or_else(Body::empty, |body| Body::from(body.to_string())),
            )
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        if let Some(cookie) = response.headers().get(header::SET_COOKIE) {
            let pair = cookie
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_owned();
            self.cookie = Some(pair);
        }
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert_eq!(status, expected, "{operation} {path}: {answer}");
        self.done.insert(operation.to_owned());
        self.check(operation);
        answer
    }

    fn check(&mut self, operation: &str) {
        let after = resources(&self.state);
        let log = audit_log(&self.state);
        let new_entries = &log[self.audited..];
        let mut named = BTreeMap::new();
        for entry in new_entries {
            named.insert(name(&entry.resource), entry.action);
            for also in &entry.also {
                named.insert(name(&also.resource), also.action);
            }
        }
        let keys: BTreeSet<_> = self.before.keys().chain(after.keys()).cloned().collect();
        let changed: BTreeMap<_, _> = keys
            .into_iter()
            .filter(|key| self.before.get(key) != after.get(key))
            .map(|key| {
                let gone = !after.contains_key(&key);
                (key, gone)
            })
            .collect();
        assert_eq!(
            changed.keys().collect::<Vec<_>>(),
            named.keys().collect::<Vec<_>>(),
            "{operation}: the resources changed and the resources audited differ"
        );
        for (key, gone) in &changed {
            assert_eq!(
                *gone,
                removes(key, named[key]),
                "{operation}: {key:?} was {} but audited as {:?}",
                if *gone { "removed" } else { "written" },
                named[key]
            );
        }
        self.before = after;
        self.audited = log.len();
    }
}

#[tokio::test]
async fn every_admin_and_portal_write_is_audited_with_exactly_what_it_changed() {
    let idp_server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(Idp {
            uri: idp_server.uri(),
            next: AtomicUsize::new(0),
        })
        .mount(&idp_server)
        .await;
    let idp = idp_server.uri();
    let (state, _store, _clock, _dir) = flaky_state(ORIGIN, HttpTimeouts::default());
    // A registration an earlier run of the process left interrupted, for the operator to
    // acknowledge.
    crate::service::test_support::restarted(&state)
        .interrupted_registrations()
        .begin(crate::service::interrupted::IntentStart {
            operation: crate::service::interrupted::RegistrationOperation::Register,
            oauth_client: None,
            developer_id: "dev_gone",
            client_name: "App",
            redirect_uris: &[],
            catalogue_entries: &["orders".to_owned()],
            provider: crate::idp::dcr::Provider::Other,
            registration_endpoint: &format!("{idp}/reg"),
        })
        .unwrap();
    let mut run = Run {
        app: crate::http::app(state.clone()),
        before: resources(&state),
        state,
        cookie: None,
        audited: 0,
        done: BTreeSet::new(),
        sent: 0,
    };
    use StatusCode as S;
    let admin = |path: &str| format!("/admin/v1{path}");
    let portal = |path: &str| format!("/portal/api/v1{path}");

    // The operator's resources, each created, changed and (for a spare set) deleted.
    for id in ["idp", "spare"] {
        let body = json!({"id": id, "issuer": format!("{idp}/{id}"), "jwks": {"jwks_uri": format!("{idp}/jwks")}});
        run.call(
            "issuers_create",
            ("POST", &admin("/issuers")),
            Some(body),
            S::CREATED,
        )
        .await;
    }
    let body = json!({"issuer": idp, "jwks": {"jwks_uri": format!("{idp}/jwks")}});
    run.call(
        "issuers_update",
        ("PUT", &admin("/issuers/idp")),
        Some(body),
        S::OK,
    )
    .await;
    for id in ["orders", "spare"] {
        let body = json!({"id": id, "name": id, "listen_path": format!("/{id}"), "issuers": [if id == "orders" { "idp" } else { "spare" }], "accept_any_audience": true});
        run.call(
            "apis_create",
            ("POST", &admin("/apis")),
            Some(body),
            S::CREATED,
        )
        .await;
    }
    let body = json!({"name": "Orders", "listen_path": "/orders", "issuers": ["idp"], "accept_any_audience": true});
    run.call(
        "apis_update",
        ("PUT", &admin("/apis/orders")),
        Some(body),
        S::OK,
    )
    .await;
    for id in ["gold", "spare"] {
        let body = json!({"id": id, "name": id, "access_rights": [{"api": if id == "gold" { "orders" } else { "spare" }}]});
        run.call(
            "policies_create",
            ("POST", &admin("/policies")),
            Some(body),
            S::CREATED,
        )
        .await;
    }
    let body =
        json!({"name": "Gold", "access_rights": [{"api": "orders"}], "lifetime_seconds": 3600});
    run.call(
        "policies_update",
        ("PUT", &admin("/policies/gold")),
        Some(body),
        S::OK,
    )
    .await;
    for (id, policy) in [("orders", "gold"), ("spare", "spare")] {
        let body = json!({"id": id, "name": id, "policy": policy});
        run.call(
            "catalogue_create",
            ("POST", &admin("/catalogue")),
            Some(body),
            S::CREATED,
        )
        .await;
    }
    let body = json!({"name": "Orders", "policy": "gold", "renewable": true});
    run.call(
        "catalogue_update",
        ("PUT", &admin("/catalogue/orders")),
        Some(body),
        S::OK,
    )
    .await;
    let document =
        json!({"openapi": "3.0.3", "info": {"title": "Spare", "version": "1"}, "paths": {}});
    for _ in 0..2 {
        run.call(
            "catalogue_put_openapi",
            ("PUT", &admin("/catalogue/spare/openapi")),
            Some(document.clone()),
            S::CREATED,
        )
        .await;
        if !run.done.contains("catalogue_delete_openapi") {
            run.call(
                "catalogue_delete_openapi",
                ("DELETE", &admin("/catalogue/spare/openapi")),
                None,
                S::NO_CONTENT,
            )
            .await;
        }
    }
    let dcr = json!({"enabled": true, "issuer": idp, "registration_endpoint": format!("{idp}/reg"),
                     "token_endpoint": format!("{idp}/token"), "initial_access_token": INITIAL_TOKEN});
    run.call(
        "dcr_put_global",
        ("PUT", &admin("/dcr")),
        Some(dcr.clone()),
        S::OK,
    )
    .await;
    for _ in 0..2 {
        run.call(
            "dcr_put_override",
            ("PUT", &admin("/catalogue/spare/dcr")),
            Some(dcr.clone()),
            S::CREATED,
        )
        .await;
        if !run.done.contains("dcr_delete_override") {
            run.call(
                "dcr_delete_override",
                ("DELETE", &admin("/catalogue/spare/dcr")),
                None,
                S::NO_CONTENT,
            )
            .await;
        }
    }
    // The spare entry goes with its DCR override and its document: one entry, three changes.
    run.call(
        "catalogue_delete",
        ("DELETE", &admin("/catalogue/spare")),
        None,
        S::NO_CONTENT,
    )
    .await;
    run.call(
        "policies_delete",
        ("DELETE", &admin("/policies/spare")),
        None,
        S::NO_CONTENT,
    )
    .await;
    run.call(
        "apis_delete",
        ("DELETE", &admin("/apis/spare")),
        None,
        S::NO_CONTENT,
    )
    .await;
    run.call(
        "issuers_delete",
        ("DELETE", &admin("/issuers/spare")),
        None,
        S::NO_CONTENT,
    )
    .await;
    let body = json!({"unmatched": "deny", "public_prefixes": ["/health"]});
    run.call(
        "gateway_put_settings",
        ("PUT", &admin("/gateway")),
        Some(body),
        S::OK,
    )
    .await;
    for self_signup in [false, true] {
        run.call(
            "developers_put_settings",
            ("PUT", &admin("/portal")),
            Some(json!({"self_signup": self_signup})),
            S::OK,
        )
        .await;
    }

    // Developers, by the operator.
    let body =
        json!({"email": "grace@example.com", "name": "Grace", "password": "correct horse battery"});
    let grace = run
        .call(
            "developers_create",
            ("POST", &admin("/developers")),
            Some(body),
            S::CREATED,
        )
        .await;
    let grace = grace["id"].as_str().unwrap().to_owned();
    let body = json!({"email": "grace.hopper@example.com", "name": "Grace Hopper"});
    run.call(
        "developers_update",
        ("PUT", &admin(&format!("/developers/{grace}"))),
        Some(body),
        S::OK,
    )
    .await;
    run.call(
        "developers_disable",
        ("POST", &admin(&format!("/developers/{grace}/disable"))),
        None,
        S::OK,
    )
    .await;
    run.call(
        "developers_enable",
        ("POST", &admin(&format!("/developers/{grace}/enable"))),
        None,
        S::OK,
    )
    .await;
    let body = json!({"password": "another long passphrase"});
    run.call(
        "developers_reset_password",
        (
            "POST",
            &admin(&format!("/developers/{grace}/reset-password")),
        ),
        Some(body),
        S::OK,
    )
    .await;
    run.call(
        "developers_delete",
        ("DELETE", &admin(&format!("/developers/{grace}"))),
        None,
        S::NO_CONTENT,
    )
    .await;

    // A developer's journey in the portal (sessions are operational state, not audited).
    let body =
        json!({"email": "ada@example.com", "name": "Ada", "password": "correct horse battery"});
    run.call(
        "portal_signup",
        ("POST", &portal("/signup")),
        Some(body),
        S::CREATED,
    )
    .await;
    run.call(
        "portal_logout",
        ("POST", &portal("/logout")),
        None,
        S::NO_CONTENT,
    )
    .await;
    let body = json!({"email": "ada@example.com", "password": "correct horse battery"});
    run.call(
        "portal_login",
        ("POST", &portal("/login")),
        Some(body),
        S::OK,
    )
    .await;
    let mut clients = Vec::new();
    for name in ["first", "second", "third"] {
        let body =
            json!({"catalogue_entries": ["orders"], "client_name": name, "redirect_uris": []});
        let issued = run
            .call(
                "portal_create_oauth_client",
                ("POST", &portal("/oauth-clients")),
                Some(body),
                S::CREATED,
            )
            .await;
        let client = &issued["client"];
        clients.push(client["id"].as_str().unwrap().to_owned());
    }
    let first = &clients[0];
    let body = json!({"redirect_uris": ["https://app.example.com/cb"]});
    run.call(
        "portal_set_redirect_uris",
        (
            "PUT",
            &portal(&format!("/oauth-clients/{first}/redirect-uris")),
        ),
        Some(body),
        S::OK,
    )
    .await;
    run.call(
        "portal_renew",
        ("POST", &portal(&format!("/oauth-clients/{first}/renew"))),
        None,
        S::OK,
    )
    .await;
    // The IdP keeps the secret on update, so the rotation re-registers: the record kept for
    // the old `client_id` is audited with it.
    run.call(
        "portal_rotate_secret",
        (
            "POST",
            &portal(&format!("/oauth-clients/{first}/rotate-secret")),
        ),
        None,
        S::OK,
    )
    .await;
    run.call(
        "portal_delete_oauth_client",
        ("DELETE", &portal(&format!("/oauth-clients/{first}"))),
        None,
        S::NO_CONTENT,
    )
    .await;

    // The operator's hand on clients.
    let second = &clients[1];
    let body = json!({"expires_at": 4_102_444_800_u64});
    run.call(
        "oauth_clients_set_access",
        ("PUT", &admin(&format!("/oauth-clients/{second}/access"))),
        Some(body),
        S::OK,
    )
    .await;
    run.call(
        "oauth_clients_revoke",
        ("POST", &admin(&format!("/oauth-clients/{second}/revoke"))),
        None,
        S::OK,
    )
    .await;
    let third = &clients[2];
    run.call(
        "oauth_clients_delete",
        ("DELETE", &admin(&format!("/oauth-clients/{third}"))),
        None,
        S::NO_CONTENT,
    )
    .await;
    let interrupted = run.state.interrupted_registrations().list().unwrap()[0]
        .value
        .id
        .clone();
    run.call(
        "oauth_clients_delete_interrupted_registration",
        (
            "DELETE",
            &admin(&format!("/interrupted-registrations/{interrupted}")),
        ),
        None,
        S::NO_CONTENT,
    )
    .await;

    // Every write operation the API documents was performed, except those that change no
    // resource: a forced key refresh and a filter's unknown-`kid` report (key state, kept in
    // the store's metadata), and a filter's usage report (operational counts).
    let document = serde_json::to_value(openapi()).unwrap();
    let mut writes = BTreeSet::new();
    for item in document["paths"].as_object().unwrap().values() {
        for (method, operation) in item.as_object().unwrap() {
            if ["post", "put", "delete", "patch"].contains(&method.as_str()) {
                writes.insert(operation["operationId"].as_str().unwrap().to_owned());
            }
        }
    }
    for unaudited in [
        "issuers_refresh",
        "data_plane_unknown_kid",
        "data_plane_usage",
    ] {
        assert!(writes.remove(unaudited), "{unaudited} is documented");
    }
    assert_eq!(run.done, writes, "every documented write is exercised");

    // Replaying the whole log gives the store's resources: nothing changed without an entry.
    let mut replayed = BTreeSet::new();
    for entry in audit_log(&run.state) {
        let changes = std::iter::once((entry.action, &entry.resource))
            .chain(entry.also.iter().map(|also| (also.action, &also.resource)));
        for (action, resource) in changes {
            let key = name(resource);
            if removes(&key, action) {
                replayed.remove(&key);
            } else {
                replayed.insert(key);
            }
        }
    }
    assert_eq!(
        replayed,
        resources(&run.state).into_keys().collect::<BTreeSet<_>>()
    );

    // No secret reached the log: not the initial access token, the clients' secrets and
    // registration access tokens, the admin key or the passwords.
    let log = serde_json::to_string(&audit_log(&run.state)).unwrap();
    for secret in [
        INITIAL_TOKEN,
        "secret-c",
        "rat-c",
        KEY,
        "correct horse battery",
        "another long passphrase",
    ] {
        assert!(!log.contains(secret), "{secret} is in the audit log");
    }

    // An operator looking for what happened to the spare entry's DCR override finds the
    // cascade too.
    let page = run
        .state
        .audit()
        .list(
            &crate::service::PageRequest {
                limit: 10,
                after: None,
            },
            &crate::service::audit::AuditFilter {
                resource_type: Some(crate::service::ResourceKind::CatalogueDcr),
                resource_id: Some("spare".to_owned()),
                admin_key: None,
            },
        )
        .unwrap();
    let cascade = &page.items[0];
    assert_eq!(cascade.resource.id, "spare");
    assert_eq!(
        cascade.resource.kind,
        crate::service::ResourceKind::CatalogueEntry
    );
    assert_eq!(cascade.also.len(), 2, "{cascade:?}");
}
