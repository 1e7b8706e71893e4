use serde_json::json;

use crate::support::TestServer;

#[tokio::test]
async fn policy_crud_and_filters() {
    let server = TestServer::start().await;
    server.issuer("idp").await;
    server.api("orders", "idp").await;
    server.api("billing", "idp").await;
    let created = server
        .post(
            "/admin/v1/policies",
            json!({
                "id": "gold", "name": "Gold",
                "access_rights": [{"api": "orders", "methods": ["get", "POST"], "path_prefixes": ["/orders/v1"]}],
                "rate_limit": {"requests": 100, "per_seconds": 60},
                "quota": {"max": 10000, "renewal_seconds": 86400}
            }),
        )
        .await;
    assert_eq!(
        created.ok(201),
        &json!({
            "id": "gold", "name": "Gold",
            "access_rights": [{"api": "orders", "methods": ["GET", "POST"], "path_prefixes": ["/orders/v1"]}],
            "rate_limit": {"requests": 100, "per_seconds": 60},
            "quota": {"max": 10000, "renewal_seconds": 86400},
            "limit_scope": "developer",
            "state": "active",
            "lifetime_seconds": null,
            "metadata": {}
        })
    );
    server
        .post(
            "/admin/v1/policies",
            json!({"id": "bronze", "name": "Bronze", "access_rights": [{"api": "billing"}], "state": "inactive"}),
        )
        .await
        .ok(201);

    let by_api = server.get("/admin/v1/policies?api=billing").await;
    assert_eq!(by_api.ok(200)["items"][0]["id"], "bronze");
    assert_eq!(
        by_api.body["items"][0]["access_rights"][0]["methods"],
        json!([])
    );
    let active = server.get("/admin/v1/policies?state=active").await;
    let ids: Vec<_> = active.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].clone())
        .collect();
    assert_eq!(ids, [json!("gold")]);
    server
        .get("/admin/v1/policies?state=sleeping")
        .await
        .invalid("state");

    let updated = server
        .put(
            "/admin/v1/policies/gold",
            json!({"name": "Gold", "access_rights": [{"api": "orders"}, {"api": "billing"}], "state": "inactive"}),
            Some(created.etag()),
        )
        .await;
    assert_eq!(updated.ok(200)["state"], "inactive");
    assert_eq!(updated.body["rate_limit"], json!(null));

    server
        .delete("/admin/v1/policies/bronze", Some("*"))
        .await
        .ok(204);
    server
        .get("/admin/v1/policies/bronze")
        .await
        .error(404, "not_found");
    server.stop().await;
}

#[tokio::test]
async fn policy_errors_and_referrers() {
    let server = TestServer::start().await;
    server.issuer("idp").await;
    server.api("orders", "idp").await;

    let unknown = server
        .post(
            "/admin/v1/policies",
            json!({"id": "gold", "name": "Gold", "access_rights": [{"api": "orders"}, {"api": "ghost"}]}),
        )
        .await;
    unknown.error(422, "unprocessable_reference");
    assert_eq!(unknown.body["field"], "access_rights[1].api");

    for (body, field) in [
        (
            json!({"id": "p", "name": "P", "access_rights": []}),
            "access_rights",
        ),
        (
            json!({"id": "p", "name": "P", "access_rights": [{"api": "orders", "methods": ["G3T"]}]}),
            "access_rights[0].methods[0]",
        ),
        (
            json!({"id": "p", "name": "P", "access_rights": [{"api": "orders", "path_prefixes": ["v1"]}]}),
            "access_rights[0].path_prefixes[0]",
        ),
        (
            json!({"id": "p", "name": "P", "access_rights": [{"api": "orders", "verbs": ["GET"]}]}),
            "access_rights[0].verbs",
        ),
        (
            json!({"id": "p", "name": "P", "access_rights": [{"api": "orders"}], "rate_limit": {"requests": 0, "per_seconds": 1}}),
            "rate_limit.requests",
        ),
        (
            json!({"id": "p", "name": "P", "access_rights": [{"api": "orders"}], "quota": {"max": 5}}),
            "quota.renewal_seconds",
        ),
        (
            json!({"id": "p", "name": "P", "access_rights": [{"api": "orders"}], "state": "on"}),
            "state",
        ),
        (
            json!({"id": "p", "access_rights": [{"api": "orders"}]}),
            "name",
        ),
    ] {
        server.post("/admin/v1/policies", body).await.invalid(field);
    }

    let gold = server.policy("gold", "orders").await;
    server
        .post(
            "/admin/v1/policies",
            json!({"id": "gold", "name": "Gold", "access_rights": [{"api": "orders"}]}),
        )
        .await
        .error(409, "already_exists");
    server
        .put(
            "/admin/v1/policies/gold",
            json!({"name": "G", "access_rights": [{"api": "orders"}]}),
            None,
        )
        .await
        .error(428, "precondition_required");
    server
        .put(
            "/admin/v1/policies/gold",
            json!({"name": "G", "access_rights": [{"api": "orders"}]}),
            Some("\"0\""),
        )
        .await
        .error(412, "precondition_failed");

    let api = server.get("/admin/v1/apis/orders").await;
    server
        .put(
            "/admin/v1/apis/orders",
            json!({"name": "Orders", "listen_path": "/orders", "issuers": ["idp"], "audiences": ["https://api.example.com"], "default_policies": ["gold"]}),
            Some(api.etag()),
        )
        .await
        .ok(200);
    server.entry("orders-entry", "gold").await;
    let in_use = server
        .delete("/admin/v1/policies/gold", Some(gold.etag()))
        .await;
    in_use.error(409, "in_use");
    assert_eq!(
        in_use.body["referrers"],
        json!([{"type": "api", "id": "orders"}, {"type": "catalogue_entry", "id": "orders-entry"}])
    );
    server.stop().await;
}
