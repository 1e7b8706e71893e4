//! Snapshots pushed to a real Envoy: the control plane fetches the issuer's keys from a key
//! server, combines them with APIs and policies into snapshots, and the filter in Envoy
//! enforces every change, whole or as deltas. Waits are bounded polls on the expected outcome
//! (15 s), never assertions on how fast a change arrives (the benchmark measures that).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse as _;
use portico_core::alg::Algorithm;
use portico_core::snapshot::{BINARY_MEDIA_TYPE, DELTA_MEDIA_TYPE, Snapshot, SnapshotDelta};
use portico_core::testing::{TestKey, jwks};
use portico_tests::control_plane::DATA_PLANE_TOKEN;
use portico_tests::envoy::NODE_ID;
use portico_tests::{
    ControlPlane, EchoUpstream, Envoy, EnvoyConfig, Journey, KeyServer, PortalSession, eventually,
    serve_local,
};
use reqwest::Method;
use serde_json::{Value, json};

const BOUND: Duration = Duration::from_secs(15);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(key: &TestKey, issuer: &str, client: &str) -> String {
    let alg = if key.kid().starts_with("ec") {
        Algorithm::ES256
    } else {
        Algorithm::RS256
    };
    key.token(
        alg,
        &json!({"iss": issuer, "client_id": client, "exp": now() + 600, "iat": now()}),
    )
}

fn dynamic_config(cluster: &str) -> String {
    json!({"control_plane": {"cluster": cluster, "token": DATA_PLANE_TOKEN, "poll_wait_seconds": 10},
           "fail_open_paths": ["/health"]})
    .to_string()
}

/// The sync steps that failed so far: snapshots rejected, polls not sent or not answered.
async fn sync_failures(envoy: &Envoy) -> u64 {
    let mut failures = 0;
    for outcome in ["rejected", "unreachable", "failed"] {
        let name = format!("wasmcustom.portico.filter.syncs.outcome.{outcome}");
        failures += envoy.stat(&name).await.unwrap_or_default();
    }
    failures
}

struct World {
    keys: KeyServer,
    control_plane: ControlPlane,
    envoy: Envoy,
    upstream: EchoUpstream,
    /// What `envoy` was started with (to start it again).
    config: EnvoyConfig,
}

impl World {
    async fn start() -> World {
        let keys = KeyServer::start(&[&TestKey::rsa_a(), &TestKey::p256_a()]).await;
        let control_plane = ControlPlane::start(&[]).await;
        let upstream = EchoUpstream::start().await;
        let mut config = EnvoyConfig::new(dynamic_config("portico"), upstream.addr);
        config
            .clusters
            .push(("portico".to_owned(), control_plane.addr));
        let envoy = Envoy::start(&config).await;
        World {
            keys,
            control_plane,
            envoy,
            upstream,
            config,
        }
    }

    /// The issuer (discovery at the key server), the API `/orders`, and the policy `gold`
    /// granting it to every caller by default.
    async fn configure(&self) {
        let cp = &self.control_plane;
        cp.create(
            "/issuers",
            json!({"id": "idp", "issuer": self.keys.issuer()}),
        )
        .await;
        let api = |id: &str, defaults: Value| {
            json!({"id": id, "name": id, "listen_path": format!("/{id}"), "issuers": ["idp"], "accept_any_audience": true,
                   "identity_claims": ["client_id"], "default_policies": defaults})
        };
        cp.create("/apis", api("orders", json!([]))).await;
        cp.create("/apis", api("reports", json!([]))).await;
        cp.create(
            "/policies",
            json!({"id": "gold", "name": "Gold", "access_rights": [{"api": "orders"}]}),
        )
        .await;
        cp.replace("/apis/orders", api("orders", json!(["gold"])))
            .await;
    }

    /// Grants `gold` either `/orders` or only `/reports`.
    async fn grant_orders(&self, grant: bool) {
        let rights = if grant {
            json!([{"api": "orders"}])
        } else {
            json!([{"api": "reports"}])
        };
        self.control_plane
            .replace(
                "/policies/gold",
                json!({"name": "Gold", "access_rights": rights}),
            )
            .await;
    }

    /// A request on a fresh connection, so that every Envoy worker gets its share.
    async fn call(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.envoy.call(path, token).await
    }

    /// Waits until `token` on `/orders` gets `status` (and `code`, for refusals) on several
    /// fresh connections in a row.
    async fn await_outcome(
        &self,
        what: &str,
        token: Option<&str>,
        status: u16,
        code: Option<&str>,
    ) {
        self.envoy
            .await_outcome(what, BOUND, ("/orders/1", token), (status, code))
            .await;
    }
}

#[tokio::test]
async fn every_change_reaches_envoy_and_is_enforced() {
    let world = World::start().await;
    let issuer = world.keys.issuer();
    let caller = token(&TestKey::rsa_a(), &issuer, "app-1");

    world.configure().await;
    world
        .await_outcome(
            "the API to be protected and granted",
            Some(&caller),
            200,
            None,
        )
        .await;
    let (_, echoed) = world.call("/orders/1", Some(&caller)).await;
    assert_eq!(echoed["headers"]["x-portico-client-id"], "app-1");
    world
        .await_outcome("no token to be refused", None, 401, Some("missing_token"))
        .await;

    world.grant_orders(false).await;
    world
        .await_outcome(
            "the policy change to deny access",
            Some(&caller),
            403,
            Some("access_denied"),
        )
        .await;
    world.grant_orders(true).await;
    world
        .await_outcome(
            "the policy change to grant access again",
            Some(&caller),
            200,
            None,
        )
        .await;

    // The IdP rotates: rsa-b replaces rsa-a; the operator forces a refresh.
    world
        .keys
        .set_keys(&[&TestKey::rsa_b(), &TestKey::p256_a()]);
    let status = world
        .control_plane
        .admin(Method::POST, "/issuers/idp/refresh", None, None)
        .await;
    assert_eq!(status.status, StatusCode::OK, "{:?}", status.body);
    assert_eq!(status.body["key_ids"], json!(["rsa-b", "ec-a"]));
    assert_eq!(status.body["last_error"], Value::Null);
    let rotated = token(&TestKey::rsa_b(), &issuer, "app-1");
    world
        .await_outcome(
            "a token of the new key to be accepted",
            Some(&rotated),
            200,
            None,
        )
        .await;
    world
        .await_outcome(
            "a token of the removed key to be refused",
            Some(&caller),
            401,
            Some("unknown_kid"),
        )
        .await;

    // The operator sees the filter, on the version in force, waiting for the next one.
    let snapshot = world.control_plane.read("/snapshot").await;
    let filter = eventually(
        "the filter to report the version in force",
        BOUND,
        || async {
            let filters = world.control_plane.read("/filters").await;
            let filter = filters["items"][0].clone();
            (filter["version"] == snapshot["version"] && filter["polling"] == true)
                .then_some(filter)
        },
    )
    .await;
    assert_eq!(filter["token_id"], "test");
}

#[tokio::test]
async fn two_envoys_with_one_node_name_are_two_rows_and_neither_can_take_the_other_s() {
    let world = World::start().await;
    world.configure().await;
    let mut config = EnvoyConfig::new(dynamic_config("portico"), world.upstream.addr);
    config
        .clusters
        .push(("portico".to_owned(), world.control_plane.addr));
    let second = Envoy::start(&config).await;
    let version = world.control_plane.read("/snapshot").await["version"].clone();
    let rows = eventually(
        "both Envoys to be listed on the version in force",
        BOUND,
        || async {
            let rows = world.control_plane.read("/filters").await["items"].clone();
            let rows = rows.as_array()?.clone();
            (rows.len() == 2
                && rows.iter().all(|row| {
                    row["version"] == version
                        && row["versions_behind"] == 0
                        && row["node"] == NODE_ID
                        && row["token_id"] == "test"
                }))
            .then_some(rows)
        },
    )
    .await;
    let instances: Vec<&str> = rows
        .iter()
        .map(|row| row["instance"].as_str().expect("an instance id"))
        .collect();
    assert_ne!(instances[0], instances[1], "{rows:?}");
    assert!(instances.iter().all(|id| id.len() == 16), "{instances:?}");

    // A poll naming the same node without the instance is a row of its own: it cannot move
    // either Envoy's version.
    let poll = reqwest::Client::new()
        .get(
            world
                .control_plane
                .url(&format!("/v1/snapshot?since=0&wait=0&node={NODE_ID}")),
        )
        .bearer_auth(DATA_PLANE_TOKEN)
        .send()
        .await
        .expect("an answer to the poll");
    assert_eq!(poll.status(), StatusCode::OK);
    let rows = world.control_plane.read("/filters").await["items"].clone();
    let rows = rows.as_array().expect("a list");
    assert_eq!(rows.len(), 3, "{rows:?}");
    for instance in &instances {
        let row = rows
            .iter()
            .find(|row| row["instance"] == *instance)
            .expect("each Envoy keeps its row");
        assert_eq!(row["version"], version);
    }
    let bad = reqwest::Client::new()
        .get(
            world
                .control_plane
                .url("/v1/snapshot?since=0&wait=0&instance=a%20b"),
        )
        .bearer_auth(DATA_PLANE_TOKEN)
        .send()
        .await
        .expect("an answer to the poll");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    drop(second);
}

#[tokio::test]
async fn an_unknown_kid_makes_the_control_plane_fetch_the_new_keys_at_once() {
    let world = World::start().await;
    let issuer = world.keys.issuer();
    world.configure().await;
    world
        .await_outcome(
            "the API to be ready",
            Some(&token(&TestKey::rsa_a(), &issuer, "a")),
            200,
            None,
        )
        .await;

    // The IdP adds a key and starts signing with it; nobody tells Portico.
    world
        .keys
        .set_keys(&[&TestKey::rsa_a(), &TestKey::rsa_b(), &TestKey::p256_a()]);
    let fresh = token(&TestKey::rsa_b(), &issuer, "a");
    let started = Instant::now();
    let (status, body) = world.call("/orders/1", Some(&fresh)).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("unknown_kid")));
    world
        .await_outcome(
            "the new key to be fetched and pushed",
            Some(&fresh),
            200,
            None,
        )
        .await;
    println!(
        "unknown kid to acceptance: {} ms",
        started.elapsed().as_millis()
    );
    world
        .envoy
        .await_stat_at_least("wasmcustom.portico.filter.unknown_kid_reports", 1)
        .await;
    let issuer_status = world.control_plane.read("/issuers/idp").await;
    assert_eq!(
        issuer_status["keys"]["key_ids"],
        json!(["rsa-a", "rsa-b", "ec-a"])
    );
}

#[tokio::test]
async fn key_failures_keep_the_last_good_keys_and_show_why() {
    let world = World::start().await;
    let issuer = world.keys.issuer();
    let caller = token(&TestKey::rsa_a(), &issuer, "a");
    world.configure().await;
    world
        .await_outcome("the API to be ready", Some(&caller), 200, None)
        .await;

    world.keys.set_status(StatusCode::SERVICE_UNAVAILABLE);
    let status = world
        .control_plane
        .admin(Method::POST, "/issuers/idp/refresh", None, None)
        .await;
    assert!(
        status.body["last_error"].as_str().unwrap().contains("503"),
        "{:?}",
        status.body
    );
    assert_eq!(
        status.body["key_ids"],
        json!(["rsa-a", "ec-a"]),
        "the last good keys stay"
    );
    assert_eq!(status.body["consecutive_failures"], 1);

    // An empty key set is a failure too, never a replacement.
    world.keys.set_status(StatusCode::OK);
    world.keys.set_document(json!({"keys": []}));
    let status = world
        .control_plane
        .admin(Method::POST, "/issuers/idp/refresh", None, None)
        .await;
    assert!(
        status.body["last_error"].as_str().is_some(),
        "{:?}",
        status.body
    );
    assert_eq!(status.body["key_ids"], json!(["rsa-a", "ec-a"]));

    // Unusable keys next to good ones are skipped, with their reason.
    let mut document = jwks(&[&TestKey::rsa_a(), &TestKey::p256_a()]);
    document["keys"]
        .as_array_mut()
        .unwrap()
        .push(TestKey::rsa_1024().public_jwk());
    world.keys.set_document(document);
    let status = world
        .control_plane
        .admin(Method::POST, "/issuers/idp/refresh", None, None)
        .await;
    assert_eq!(status.body["last_error"], Value::Null, "{:?}", status.body);
    assert_eq!(status.body["skipped_keys"][0]["kid"], "rsa-1024");
    assert!(
        status.body["skipped_keys"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("2048")
    );
    world
        .await_outcome(
            "tokens to keep working throughout",
            Some(&caller),
            200,
            None,
        )
        .await;
}

#[tokio::test]
async fn envoy_keeps_enforcing_without_the_control_plane_and_resumes_after_restart() {
    let mut world = World::start().await;
    let issuer = world.keys.issuer();
    let caller = token(&TestKey::rsa_a(), &issuer, "a");
    let forged = token(&TestKey::rsa_b().with_kid("rsa-a"), &issuer, "a");
    world.configure().await;
    world
        .await_outcome("the API to be ready", Some(&caller), 200, None)
        .await;

    world.control_plane.kill();
    eventually("the filter to notice", BOUND, || async {
        let failures = sync_failures(&world.envoy).await;
        (failures >= 1).then_some(())
    })
    .await;
    world
        .await_outcome("valid tokens to still pass", Some(&caller), 200, None)
        .await;
    world
        .await_outcome(
            "forged tokens to still be refused",
            Some(&forged),
            401,
            Some("bad_signature"),
        )
        .await;

    world.control_plane.restart().await;
    world.grant_orders(false).await;
    world
        .await_outcome(
            "sync to resume after the restart",
            Some(&caller),
            403,
            Some("access_denied"),
        )
        .await;
}

#[tokio::test]
async fn an_envoy_restarted_while_the_control_plane_runs_enforces_what_changed_meanwhile() {
    let world = World::start().await;
    let caller = token(&TestKey::rsa_a(), &world.keys.issuer(), "a");
    world.configure().await;
    world
        .await_outcome("the API to be ready", Some(&caller), 200, None)
        .await;

    let World {
        keys,
        control_plane,
        envoy,
        upstream,
        config,
    } = world;
    drop(envoy);
    // While Envoy is down, `gold` stops granting `/orders`.
    control_plane
        .replace(
            "/policies/gold",
            json!({"name": "Gold", "access_rights": [{"api": "reports"}]}),
        )
        .await;
    let world = World {
        keys,
        control_plane,
        envoy: Envoy::start(&config).await,
        upstream,
        config,
    };
    // The new Envoy starts from the current snapshot, then follows changes.
    world
        .await_outcome(
            "the change made while it was down",
            Some(&caller),
            403,
            Some("access_denied"),
        )
        .await;
    world.grant_orders(true).await;
    world
        .await_outcome("the next change", Some(&caller), 200, None)
        .await;
}

#[tokio::test]
async fn before_the_first_snapshot_protected_paths_fail_closed_except_fail_open_paths() {
    let upstream = EchoUpstream::start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = EnvoyConfig::new(dynamic_config("nowhere"), upstream.addr);
    config.clusters.push(("nowhere".to_owned(), closed));
    let envoy = Envoy::start(&config).await;
    let http = reqwest::Client::new();
    let answer = http.get(envoy.url("/orders")).send().await.unwrap();
    assert_eq!(answer.status(), 503);
    assert_eq!(answer.headers()["retry-after"], "1");
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"], "snapshot_unavailable");
    let passed = http.get(envoy.url("/health/live")).send().await.unwrap();
    assert_eq!(passed.status(), 200);
}

/// A control plane that serves one valid snapshot, then answers every poll with garbage.
async fn garbage_control_plane(snapshot: Snapshot) -> std::net::SocketAddr {
    let good = snapshot.to_binary().unwrap();
    let app = axum::Router::new().route(
        "/v1/snapshot",
        axum::routing::get(
            move |Query(query): Query<std::collections::HashMap<String, String>>| {
                let good = good.clone();
                async move {
                    let body = if query.get("since").map(String::as_str) == Some("0") {
                        good
                    } else {
                        b"PSN\x07\xff\xff\xff garbage".to_vec()
                    };
                    ([("content-type", BINARY_MEDIA_TYPE)], body)
                }
            },
        ),
    );
    serve_local(app).await
}

#[tokio::test]
async fn a_control_plane_answering_garbage_never_replaces_the_last_good_snapshot() {
    let issuer = "https://idp.portico.test";
    let snapshot: Snapshot = serde_json::from_value(json!({
        "version": 7,
        "apis": [{"id": "orders", "listen_path": "/orders", "issuers": ["idp"], "accept_any_audience": true,
                  "identity_claims": ["client_id"], "default_policies": ["gold"]}],
        "issuers": [{"id": "idp", "issuer": issuer, "keys": jwks(&[&TestKey::rsa_a()])["keys"]}],
        "policies": [{"id": "gold", "access_rights": [{"api": "orders"}]}]
    }))
    .unwrap();
    let fake = garbage_control_plane(snapshot).await;
    let upstream = EchoUpstream::start().await;
    let mut config = EnvoyConfig::new(dynamic_config("fake"), upstream.addr);
    config.clusters.push(("fake".to_owned(), fake));
    let envoy = Envoy::start(&config).await;
    let http = reqwest::Client::new();
    let caller = token(&TestKey::rsa_a(), issuer, "a");
    eventually("the good snapshot to be applied", BOUND, || async {
        let status = http
            .get(envoy.url("/orders"))
            .bearer_auth(&caller)
            .send()
            .await
            .ok()?
            .status();
        (status == 200).then_some(())
    })
    .await;
    eventually("garbage to be rejected repeatedly", BOUND, || async {
        let rejected = envoy
            .stat("wasmcustom.portico.filter.syncs.outcome.rejected")
            .await?;
        (rejected >= 2).then_some(())
    })
    .await;
    assert_eq!(
        envoy
            .stat("wasmcustom.portico.filter.snapshot_version")
            .await,
        Some(7)
    );
    for _ in 0..5 {
        let status = http
            .get(envoy.url("/orders"))
            .bearer_auth(&caller)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
}

// === Deltas ===

const DELTA_APPLIED: &str = "wasmcustom.portico.filter.syncs.outcome.delta_applied";
const DELTA_REFUSED: &str = "wasmcustom.portico.filter.syncs.outcome.delta_refused";
const SNAPSHOT_VERSION: &str = "wasmcustom.portico.filter.snapshot_version";

/// The control plane's count of snapshot answers of `kind` (`delta` or `full`).
async fn answers(control_plane: &ControlPlane, kind: &str) -> u64 {
    let text = reqwest::get(control_plane.url("/metrics"))
        .await
        .expect("the control plane's metrics")
        .text()
        .await
        .expect("a text body");
    let series = format!("portico_snapshot_answers_total{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series)?.parse().ok())
        .unwrap_or_else(|| panic!("{series} in {text}"))
}

/// Waits until Envoy enforces the control plane's version.
async fn await_version_in_force(envoy: &Envoy, control_plane: &ControlPlane) -> u64 {
    let version = control_plane.read("/snapshot").await["version"]
        .as_u64()
        .expect("a version");
    envoy.await_stat(SNAPSHOT_VERSION, version).await;
    version
}

#[tokio::test]
async fn a_revocation_reaches_a_running_filter_as_a_delta_and_is_enforced() {
    let journey = Journey::start(&[]).await;
    journey.operator_sets_up().await;
    let cp = &journey.control_plane;
    let developer =
        PortalSession::sign_up(cp, "ada@example.com", "correct horse battery staple").await;
    let created = developer
        .register(
            "form-1",
            &json!({"catalogue_entries": ["orders"], "client_name": "Ada's app"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let field = |value: &Value, name: &str| value[name].as_str().expect(name).to_owned();
    let (status, answer) = journey
        .idp
        .token(
            &field(&created.body["client"], "client_id"),
            &field(&created.body, "client_secret"),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let token = field(&answer, "access_token");
    journey
        .await_status("the client to be bound", "/orders/1", &token, 200, None)
        .await;
    let before = await_version_in_force(&journey.envoy, cp).await;
    let applied = journey.envoy.stat(DELTA_APPLIED).await.unwrap_or(0);
    let (deltas, full) = (answers(cp, "delta").await, answers(cp, "full").await);

    cp.revoke_client(&field(&created.body["client"], "id"))
        .await;
    journey
        .await_status(
            "the revoked client to be refused",
            "/orders/1",
            &token,
            401,
            Some("client_revoked"),
        )
        .await;
    assert!(await_version_in_force(&journey.envoy, cp).await > before);
    journey
        .envoy
        .await_stat_at_least(DELTA_APPLIED, applied + 1)
        .await;
    assert_eq!(journey.envoy.stat(DELTA_REFUSED).await.unwrap_or(0), 0);
    assert!(answers(cp, "delta").await > deltas);
    assert_eq!(
        answers(cp, "full").await,
        full,
        "no whole snapshot was sent for the revocation"
    );
}

/// Copies the directory tree `from` into `to` (created).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test]
async fn after_a_restore_a_filter_ahead_of_the_control_plane_gets_the_whole_snapshot_then_deltas() {
    let mut world = World::start().await;
    let caller = token(&TestKey::rsa_a(), &world.keys.issuer(), "a");
    world.configure().await;
    world
        .await_outcome("the API to be ready", Some(&caller), 200, None)
        .await;
    // A backup of the store, taken while the control plane is stopped.
    let backup = tempfile::tempdir().unwrap();
    world.control_plane.kill();
    copy_tree(&world.control_plane.data_dir(), backup.path());
    world.control_plane.restart().await;
    let backed_up = await_version_in_force(&world.envoy, &world.control_plane).await;

    world.grant_orders(false).await;
    world
        .await_outcome(
            "the change after the backup",
            Some(&caller),
            403,
            Some("access_denied"),
        )
        .await;
    assert!(await_version_in_force(&world.envoy, &world.control_plane).await > backed_up);
    world.envoy.await_stat_at_least(DELTA_APPLIED, 1).await;
    let applied = world.envoy.stat(DELTA_APPLIED).await.unwrap_or(0);

    // The backup comes back: the filter is at a version this store never published.
    world.control_plane.kill();
    let data = world.control_plane.data_dir();
    std::fs::remove_dir_all(&data).unwrap();
    copy_tree(backup.path(), &data);
    world.control_plane.restart().await;
    world
        .await_outcome(
            "the restored snapshot to be enforced",
            Some(&caller),
            200,
            None,
        )
        .await;
    assert_eq!(
        await_version_in_force(&world.envoy, &world.control_plane).await,
        backed_up
    );
    assert!(answers(&world.control_plane, "full").await >= 1);
    assert_eq!(answers(&world.control_plane, "delta").await, 0);

    // From the version they share again, changes travel as deltas.
    world.grant_orders(false).await;
    world
        .await_outcome("the next change", Some(&caller), 403, Some("access_denied"))
        .await;
    world
        .envoy
        .await_stat_at_least(DELTA_APPLIED, applied + 1)
        .await;
    assert!(answers(&world.control_plane, "delta").await >= 1);
    assert_eq!(world.envoy.stat(DELTA_REFUSED).await.unwrap_or(0), 0);
}

/// The polls a fake control plane received: `since` and the `Accept` header of each.
type Polls = Arc<Mutex<Vec<(u64, String)>>>;

/// A control plane that serves `first` to a new filter and then, from version `first`, a
/// delta that does not apply to it (`delta`) to polls that accept deltas and `second` whole to
/// the others; a poll at `second` is held 5 s and answered 304.
async fn delta_control_plane(
    first: &Snapshot,
    delta: Vec<u8>,
    second: &Snapshot,
) -> (std::net::SocketAddr, Polls) {
    let polls = Polls::default();
    let (first_version, first) = (first.version, first.to_binary().unwrap());
    let (second_version, second) = (second.version, second.to_binary().unwrap());
    let seen = Arc::clone(&polls);
    let app = axum::Router::new().route(
        "/v1/snapshot",
        axum::routing::get(
            move |Query(query): Query<std::collections::HashMap<String, String>>,
                  headers: HeaderMap| {
                let (first, delta, second) = (first.clone(), delta.clone(), second.clone());
                let seen = Arc::clone(&seen);
                async move {
                    let since: u64 = query["since"].parse().unwrap();
                    let accept = headers
                        .get("accept")
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    seen.lock().unwrap().push((since, accept.clone()));
                    let (content_type, body, version) = if since == 0 {
                        (BINARY_MEDIA_TYPE, first, first_version)
                    } else if since == first_version && accept.contains(DELTA_MEDIA_TYPE) {
                        (DELTA_MEDIA_TYPE, delta, second_version)
                    } else if since == first_version {
                        (BINARY_MEDIA_TYPE, second, second_version)
                    } else {
                        // Held as a long poll, then nothing newer.
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        return StatusCode::NOT_MODIFIED.into_response();
                    };
                    (
                        [
                            ("content-type", content_type.to_owned()),
                            ("x-portico-snapshot-version", version.to_string()),
                        ],
                        body,
                    )
                        .into_response()
                }
            },
        ),
    );
    (serve_local(app).await, polls)
}

#[tokio::test]
async fn a_filter_whose_version_holds_other_content_refuses_the_delta_and_fetches_the_whole_snapshot()
 {
    let issuer = "https://idp.portico.test";
    // This Envoy's version 1 has a policy `silver` that the control plane's version 1 lacks
    // (two control planes, say): the delta from the latter cannot give version 2 here.
    let ours: Snapshot = serde_json::from_value(json!({
        "version": 1,
        "apis": [{"id": "orders", "listen_path": "/orders", "issuers": ["idp"], "accept_any_audience": true,
                  "identity_claims": ["client_id"], "default_policies": ["gold"]}],
        "issuers": [{"id": "idp", "issuer": issuer, "keys": jwks(&[&TestKey::rsa_a()])["keys"]}],
        "policies": [{"id": "gold", "access_rights": [{"api": "orders"}]},
                     {"id": "silver", "access_rights": [{"api": "orders"}]}]
    }))
    .unwrap();
    let theirs = Snapshot {
        policies: ours.policies[..1].to_vec(),
        ..ours.clone()
    };
    let second = Snapshot {
        version: 2,
        revoked_clients: vec!["app-1".to_owned()],
        ..theirs.clone()
    };
    let delta = SnapshotDelta::diff(&theirs, &second)
        .unwrap()
        .to_binary()
        .unwrap();
    let (fake, polls) = delta_control_plane(&ours, delta, &second).await;
    let upstream = EchoUpstream::start().await;
    let mut config = EnvoyConfig::new(dynamic_config("fake"), upstream.addr);
    config.clusters.push(("fake".to_owned(), fake));
    let envoy = Envoy::start(&config).await;

    envoy
        .await_outcome(
            "version 2, fetched whole, to be enforced",
            BOUND,
            (
                "/orders/1",
                Some(&token(&TestKey::rsa_a(), issuer, "app-1")),
            ),
            (401, Some("client_revoked")),
        )
        .await;
    envoy.await_stat(SNAPSHOT_VERSION, 2).await;
    envoy.await_stat_at_least(DELTA_REFUSED, 1).await;
    assert_eq!(envoy.stat(DELTA_APPLIED).await.unwrap_or(0), 0);
    assert_eq!(sync_failures(&envoy).await, 0);
    let polls = polls.lock().unwrap().clone();
    let from_first: Vec<bool> = polls
        .iter()
        .filter(|(since, _)| *since == 1)
        .map(|(_, accept)| accept.contains(DELTA_MEDIA_TYPE))
        .collect();
    assert_eq!(
        from_first,
        [true, false],
        "a delta asked, refused, then the whole snapshot asked: {polls:?}"
    );
    assert!(
        polls
            .iter()
            .all(|(_, accept)| accept.contains(BINARY_MEDIA_TYPE))
    );
}
