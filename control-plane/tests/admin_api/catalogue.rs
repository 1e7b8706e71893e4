use serde_json::json;

use crate::support::TestServer;

#[tokio::test]
async fn catalogue_crud_and_filters() {
    let server = TestServer::start().await;
    server.issuer("idp").await;
    server.api("orders", "idp").await;
    server.policy("gold", "orders").await;
    server.policy("silver", "orders").await;
    let created = server
        .post(
            "/admin/v1/catalogue",
            json!({
                "id": "orders", "name": "Orders API", "description": "Place and track orders.",
                "policy": "gold", "documentation_url": "https://docs.example.com/orders"
            }),
        )
        .await;
    assert_eq!(
        created.ok(201),
        &json!({
            "id": "orders", "name": "Orders API", "description": "Place and track orders.",
            "policy": "gold", "documentation_url": "https://docs.example.com/orders",
            "renewable": false
        })
    );
    server.entry("orders-lite", "silver").await;

    let by_policy = server.get("/admin/v1/catalogue?policy=silver").await;
    assert_eq!(by_policy.ok(200)["items"][0]["id"], "orders-lite");
    assert_eq!(by_policy.body["items"][0]["description"], "");
    assert_eq!(server.list_all("/admin/v1/catalogue", 1).await.len(), 2);

    let updated = server
        .put(
            "/admin/v1/catalogue/orders",
            json!({"name": "Orders", "policy": "silver"}),
            Some(created.etag()),
        )
        .await;
    assert_eq!(updated.ok(200)["policy"], "silver");
    assert_eq!(updated.body["documentation_url"], json!(null));

    server
        .delete("/admin/v1/catalogue/orders-lite", Some("*"))
        .await
        .ok(204);
    server
        .get("/admin/v1/catalogue/orders-lite")
        .await
        .error(404, "not_found");
    server.stop().await;
}

#[tokio::test]
async fn catalogue_errors() {
    let server = TestServer::start().await;
    server.issuer("idp").await;
    server.api("orders", "idp").await;
    server.policy("gold", "orders").await;

    let unknown = server
        .post(
            "/admin/v1/catalogue",
            json!({"id": "e", "name": "E", "policy": "platinum"}),
        )
        .await;
    unknown.error(422, "unprocessable_reference");
    assert_eq!(unknown.body["field"], "policy");
    server
        .post(
            "/admin/v1/catalogue",
            json!({"id": "e", "name": "E", "policy": "gold", "documentation_url": "docs"}),
        )
        .await
        .invalid("documentation_url");
    server
        .post("/admin/v1/catalogue", json!({"id": "e", "name": "E"}))
        .await
        .invalid("policy");
    server
        .post(
            "/admin/v1/catalogue",
            json!({"id": "e", "name": "E", "policy": "gold", "dcr": {}}),
        )
        .await
        .invalid("dcr");

    let entry = server.entry("e", "gold").await;
    server
        .post(
            "/admin/v1/catalogue",
            json!({"id": "e", "name": "E", "policy": "gold"}),
        )
        .await
        .error(409, "already_exists");
    server
        .put(
            "/admin/v1/catalogue/e",
            json!({"name": "E", "policy": "gold"}),
            None,
        )
        .await
        .error(428, "precondition_required");
    server
        .put(
            "/admin/v1/catalogue/e",
            json!({"name": "E", "policy": "gold"}),
            Some("\"7\""),
        )
        .await
        .error(412, "precondition_failed");
    server
        .put(
            "/admin/v1/catalogue/e",
            json!({"name": "E", "policy": "nope"}),
            Some(entry.etag()),
        )
        .await
        .error(422, "unprocessable_reference");
    server
        .delete("/admin/v1/catalogue/e", None)
        .await
        .error(428, "precondition_required");
    server
        .delete("/admin/v1/catalogue/nope", Some("*"))
        .await
        .error(404, "not_found");
    server.stop().await;
}

#[tokio::test]
async fn deleting_an_entry_deletes_its_dcr_override_in_the_same_change() {
    let server = TestServer::start().await;
    server.issuer("idp").await;
    server.api("orders", "idp").await;
    server.policy("gold", "orders").await;
    server.entry("e", "gold").await;
    server
        .put(
            "/admin/v1/catalogue/e/dcr",
            json!({"provider": "keycloak", "keycloak_realm": "demo"}),
            None,
        )
        .await
        .ok(201);
    let before = server.state.revision().unwrap();
    server
        .delete("/admin/v1/catalogue/e", Some("*"))
        .await
        .ok(204);
    assert_eq!(server.state.revision().unwrap(), before + 1);
    server.entry("e", "gold").await;
    server
        .get("/admin/v1/catalogue/e/dcr")
        .await
        .error(404, "not_found");
    server.stop().await;
}
