//! The `portico` binary on PostgreSQL (`PORTICO_STORE=postgres://…`): every acknowledged
//! write and its audit entry survive a SIGKILL, secrets reach the database sealed and the
//! database's password never reaches the log; and while PostgreSQL is down, writes answer 503
//! `storage_unavailable` while filters keep getting the last published snapshot, until the
//! database is back.

use std::time::Duration;

use portico_tests::control_plane::{ControlPlane, DATA_PLANE_TOKEN};
use portico_tests::eventually;
use portico_tests::postgres::{self, Postgres};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection as _;

const PATIENCE: Duration = Duration::from_secs(30);
const DCR_TOKEN: &str = "initial-access-token-7f3a9c";
const PASSWORD: &str = "correct horse battery";
/// The database password in the URL (the throwaway server trusts the loopback, so any
/// password is accepted; the point is that none reaches the log).
const DB_PASSWORD: &str = "pg-password-5ecret";

/// `url` with [`DB_PASSWORD`] for its user.
fn with_password(url: &str) -> String {
    url.replacen(
        &format!("{}@", postgres::SUPERUSER),
        &format!("{}:{DB_PASSWORD}@", postgres::SUPERUSER),
        1,
    )
}

/// A control plane on the database at `url`.
async fn control_plane(url: &str) -> ControlPlane {
    ControlPlane::start(&[("PORTICO_STORE", url), ("PORTICO_STORE_POOL_SIZE", "4")]).await
}

#[tokio::test]
async fn acknowledged_writes_and_their_audit_survive_sigkill_on_postgres() {
    let database = postgres::shared().await.database().await;
    let mut cp = control_plane(&with_password(&database)).await;
    let mut acknowledged: Vec<(String, Value)> = Vec::new();
    for (collection, body) in [
        (
            "/issuers",
            json!({"id": "idp", "issuer": "https://idp.example.com"}),
        ),
        (
            "/apis",
            json!({"id": "orders", "name": "Orders", "listen_path": "/orders",
                   "issuers": ["idp"], "accept_any_audience": true}),
        ),
        (
            "/policies",
            json!({"id": "gold", "name": "Gold", "access_rights": [{"api": "orders"}]}),
        ),
        (
            "/catalogue",
            json!({"id": "orders", "name": "Orders", "policy": "gold"}),
        ),
        (
            "/developers",
            json!({"email": "ada@example.com", "name": "Ada", "password": PASSWORD}),
        ),
    ] {
        let created = cp.create(collection, body).await;
        let id = created["id"].as_str().unwrap().to_owned();
        acknowledged.push((format!("{collection}/{id}"), created));
    }
    cp.replace(
        "/dcr",
        json!({"enabled": true, "issuer": "https://idp.example.com",
               "registration_endpoint": "https://idp.example.com/reg",
               "token_endpoint": "https://idp.example.com/token",
               "initial_access_token": DCR_TOKEN}),
    )
    .await;
    for i in 0..30 {
        let id = format!("bulk-{i:02}");
        let created = cp
            .create(
                "/issuers",
                json!({"id": id, "issuer": format!("https://{id}.example.com")}),
            )
            .await;
        acknowledged.push((format!("/issuers/{id}"), created));
    }
    let renamed = cp
        .replace(
            "/policies/gold",
            json!({"name": "Gold 2", "access_rights": [{"api": "orders"}]}),
        )
        .await;
    acknowledged.retain(|(path, _)| path != "/policies/gold");
    acknowledged.push(("/policies/gold".to_owned(), renamed));
    let revision = readiness(&cp).await["revision"].as_u64().unwrap();
    assert_eq!(revision, 37);

    cp.kill();
    cp.restart().await;

    assert_eq!(readiness(&cp).await["revision"], revision);
    let without_keys = |mut value: Value| {
        value.as_object_mut().unwrap().remove("keys");
        value
    };
    for (path, written) in &acknowledged {
        let read = cp.read(path).await;
        assert_eq!(without_keys(read), without_keys(written.clone()), "{path}");
    }
    assert_eq!(cp.read("/dcr").await["initial_access_token_set"], true);
    let audit = cp.read("/audit?limit=100").await;
    let revisions: Vec<u64> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(revisions, (1..=revision).rev().collect::<Vec<_>>());

    // Secrets are sealed before they reach the database, exactly as with sled.
    let mut db = sqlx::PgConnection::connect(&database).await.unwrap();
    let rows: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT tree, value FROM portico_entries WHERE tree <> 'audit'")
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert!(rows.iter().any(|(tree, _)| tree == "settings"));
    for (tree, value) in &rows {
        let text = String::from_utf8_lossy(value);
        assert!(!text.contains(DCR_TOKEN), "{tree} holds the DCR token");
        assert!(!text.contains(PASSWORD), "{tree} holds the password");
    }
    db.close().await.ok();
    let log = cp.log();
    assert!(log.contains("committed change"), "{log}");
    assert!(
        !log.contains(DB_PASSWORD),
        "the database password reached the log"
    );
}

#[tokio::test]
async fn with_postgres_down_writes_answer_503_and_filters_keep_their_snapshot() {
    let mut server = Postgres::start().await;
    let database = server.database().await;
    let cp = control_plane(&database).await;
    cp.create(
        "/issuers",
        json!({"id": "idp", "issuer": "https://idp.example.com"}),
    )
    .await;
    cp.create(
        "/apis",
        json!({"id": "orders", "name": "Orders", "listen_path": "/orders",
               "issuers": ["idp"], "accept_any_audience": true}),
    )
    .await;
    let http = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .unwrap();
    let poll = |since: u64, wait: u64| {
        http.get(cp.url(&format!("/v1/snapshot?since={since}&wait={wait}")))
            .bearer_auth(DATA_PLANE_TOKEN)
            .header("accept", "application/json")
            .send()
    };
    // The snapshot with the API (published a moment after the write).
    let version = eventually("the API to be published", PATIENCE, || {
        let answer = poll(0, 0);
        async move {
            let answer = answer.await.ok()?;
            let version = snapshot_version(&answer);
            let snapshot: Value = answer.json().await.ok()?;
            snapshot["apis"]
                .as_array()?
                .iter()
                .any(|api| api["id"] == "orders")
                .then_some(version)
        }
    })
    .await;

    server.stop().await;
    let answer = cp
        .admin(
            Method::POST,
            "/issuers",
            Some(&json!({"id": "late", "issuer": "https://late.example.com"})),
            None,
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        answer.body
    );
    assert_eq!(answer.body["error"], "storage_unavailable");
    // The data plane keeps being served from memory: the snapshot, and a long poll that ends
    // with 304 because nothing changed.
    let current = poll(0, 0).await.unwrap();
    assert_eq!(current.status(), StatusCode::OK);
    assert_eq!(snapshot_version(&current), version);
    assert_eq!(
        poll(version, 1).await.unwrap().status(),
        StatusCode::NOT_MODIFIED
    );

    server.restart().await;
    let policy = json!({"id": "gold", "name": "Gold", "access_rights": [{"api": "orders"}]});
    eventually("writes to work again", PATIENCE, || {
        let request = cp.admin(Method::POST, "/policies", Some(&policy), None);
        async move {
            let status = request.await.status;
            (status == StatusCode::CREATED || status == StatusCode::CONFLICT).then_some(())
        }
    })
    .await;
    let newer = poll(version, 10).await.unwrap();
    assert_eq!(newer.status(), StatusCode::OK);
    assert!(snapshot_version(&newer) > version);
    assert_eq!(cp.read("/policies/gold").await["name"], "Gold");
}

/// `/readyz`'s body, which must answer 200.
async fn readiness(cp: &ControlPlane) -> Value {
    let response = reqwest::get(cp.url("/readyz")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

fn snapshot_version(response: &reqwest::Response) -> u64 {
    response.headers()["x-portico-snapshot-version"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}
