use serde_json::json;

use crate::support::{CI_KEY, OPS_KEY, TestServer};

#[tokio::test]
async fn every_change_is_audited_with_the_key_id_never_the_key() {
    let server = TestServer::start().await;
    let ci = server.with_key(CI_KEY);
    let created = server.issuer("idp").await;
    let updated = ci
        .put(
            "/admin/v1/issuers/idp",
            json!({"issuer": "https://idp2.example.com"}),
            Some(created.etag()),
        )
        .await;
    updated.ok(200);
    server
        .put(
            "/admin/v1/dcr",
            json!({"initial_access_token": "iat-secret-31d7"}),
            Some("*"),
        )
        .await
        .ok(200);
    server.developer("ada@example.com").await;
    server
        .delete("/admin/v1/issuers/idp", Some(updated.etag()))
        .await
        .ok(204);

    let log = server.get("/admin/v1/audit").await;
    assert!(!log.text.contains(OPS_KEY) && !log.text.contains(CI_KEY));
    assert!(!log.text.contains("iat-secret-31d7"));
    assert!(!log.text.contains("correct horse") && !log.text.contains("argon2"));
    let entries = log.ok(200)["items"].as_array().unwrap();
    let summary: Vec<_> = entries
        .iter()
        .map(|entry| {
            (
                entry["revision"].as_u64().unwrap(),
                entry["action"].as_str().unwrap(),
                entry["resource"]["type"].as_str().unwrap(),
                entry["actor"]["id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (5, "delete", "issuer", "ops"),
            (4, "create", "developer", "ops"),
            (3, "update", "dcr_settings", "ops"),
            (2, "update", "issuer", "ci"),
            (1, "create", "issuer", "ops"),
        ]
    );
    let update = &entries[3];
    assert_eq!(update["actor"], json!({"type": "admin_key", "id": "ci"}));
    assert_eq!(update["before"]["issuer"], "https://idp.idp.example.com");
    assert_eq!(update["after"]["issuer"], "https://idp2.example.com");
    assert!(update["at"].as_str().unwrap().ends_with('Z'));
    assert!(entries[0].get("after").is_none());
    assert!(entries[4].get("before").is_none());
    assert_eq!(entries[2]["after"]["initial_access_token_set"], true);

    let paged = server.list_all("/admin/v1/audit", 2).await;
    assert_eq!(paged.len(), 5);
    assert_eq!(paged[0]["revision"], 5);
    assert_eq!(paged[4]["revision"], 1);

    let issuers = server
        .get("/admin/v1/audit?resource_type=issuer&resource_id=idp")
        .await;
    assert_eq!(issuers.ok(200)["items"].as_array().unwrap().len(), 3);
    let by_ci = server.get("/admin/v1/audit?admin_key=ci").await;
    assert_eq!(by_ci.ok(200)["items"].as_array().unwrap().len(), 1);

    server
        .get("/admin/v1/audit?cursor=bm9wZQ")
        .await
        .invalid("cursor");
    server
        .get("/admin/v1/audit?cursor=***")
        .await
        .invalid("cursor");
    server.get("/admin/v1/audit?limit=0").await.invalid("limit");
    server
        .get("/admin/v1/audit?limit=501")
        .await
        .invalid("limit");
    server
        .get("/admin/v1/audit?resource_type=pigeon")
        .await
        .invalid("resource_type");
    server.stop().await;
}
