use serde_json::json;

use crate::support::TestServer;

#[tokio::test]
async fn api_defaults_filters_updates_and_delete() {
    let server = TestServer::start().await;
    server.issuer("gluu").await;
    server.issuer("okta").await;
    let created = server
        .post(
            "/admin/v1/apis",
            json!({"id": "orders", "name": "Orders", "listen_path": "/orders", "issuers": ["gluu"]}),
        )
        .await;
    assert_eq!(
        created.ok(201),
        &json!({
            "id": "orders",
            "name": "Orders",
            "listen_path": "/orders",
            "hosts": [],
            "issuers": ["gluu"],
            "allowed_algorithms": ["RS256", "ES256"],
            "audiences": [],
            "identity_claims": ["sub"],
            "policy_claim": "pol",
            "default_policies": [],
            "clock_skew_seconds": 60,
            "require_exp": true,
            "expected_typ": null,
            "identity_header": "x-portico-client-id",
            "policies_header": null
        })
    );
    server
        .post(
            "/admin/v1/apis",
            json!({
                "id": "billing", "name": "Billing", "listen_path": "/billing",
                "hosts": ["API.example.com"], "issuers": ["okta", "gluu"],
                "allowed_algorithms": ["PS256", "EdDSA"], "audiences": ["billing"],
                "identity_claims": ["client_id", "cid", "azp"], "policy_claim": "policies",
                "clock_skew_seconds": 600, "require_exp": false, "expected_typ": "at+jwt",
                "identity_header": "X-Client", "policies_header": "x-policies"
            }),
        )
        .await
        .ok(201);
    server.policy("gold", "orders").await;

    let by_issuer = server.get("/admin/v1/apis?issuer=okta").await;
    assert_eq!(by_issuer.ok(200)["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        by_issuer.body["items"][0]["hosts"],
        json!(["api.example.com"])
    );
    assert_eq!(by_issuer.body["items"][0]["identity_header"], "x-client");
    let by_host = server.get("/admin/v1/apis?host=api.example.com").await;
    assert_eq!(by_host.ok(200)["items"][0]["id"], "billing");
    let by_path = server.get("/admin/v1/apis?listen_path=/orders").await;
    assert_eq!(by_path.ok(200)["items"][0]["id"], "orders");
    assert_eq!(server.list_all("/admin/v1/apis", 1).await.len(), 2);

    let updated = server
        .put(
            "/admin/v1/apis/orders",
            json!({"name": "Orders v2", "listen_path": "/orders", "issuers": ["gluu"], "default_policies": ["gold"]}),
            Some(created.etag()),
        )
        .await;
    assert_eq!(updated.ok(200)["default_policies"], json!(["gold"]));
    assert_eq!(
        server.get("/admin/v1/apis/orders").await.ok(200)["name"],
        "Orders v2"
    );

    let in_use = server.delete("/admin/v1/apis/orders", Some("*")).await;
    in_use.error(409, "in_use");
    assert_eq!(
        in_use.body["referrers"],
        json!([{"type": "policy", "id": "gold"}])
    );
    server
        .delete("/admin/v1/apis/billing", Some("*"))
        .await
        .ok(204);
    server
        .get("/admin/v1/apis/billing")
        .await
        .error(404, "not_found");
    server.stop().await;
}

#[tokio::test]
async fn api_validation_and_reference_errors() {
    let server = TestServer::start().await;
    server.issuer("gluu").await;
    let base =
        json!({"id": "orders", "name": "Orders", "listen_path": "/orders", "issuers": ["gluu"]});
    let with = |field: &str, value: serde_json::Value| {
        let mut body = base.clone();
        body[field] = value;
        body
    };

    let unknown_issuer = server
        .post("/admin/v1/apis", with("issuers", json!(["gluu", "nope"])))
        .await;
    unknown_issuer.error(422, "unprocessable_reference");
    assert_eq!(unknown_issuer.body["field"], "issuers[1]");
    let unknown_policy = server
        .post("/admin/v1/apis", with("default_policies", json!(["nope"])))
        .await;
    unknown_policy.error(422, "unprocessable_reference");
    assert_eq!(unknown_policy.body["field"], "default_policies[0]");

    for (field, value, at) in [
        (
            "allowed_algorithms",
            json!(["none"]),
            "allowed_algorithms[0]",
        ),
        (
            "allowed_algorithms",
            json!(["HS256"]),
            "allowed_algorithms[0]",
        ),
        ("allowed_algorithms", json!([]), "allowed_algorithms"),
        ("listen_path", json!("orders"), "listen_path"),
        ("issuers", json!([]), "issuers"),
        ("issuers", json!(["gluu", "gluu"]), "issuers[1]"),
        ("hosts", json!(["bad host"]), "hosts[0]"),
        ("clock_skew_seconds", json!(601), "clock_skew_seconds"),
        ("clock_skew_seconds", json!(-1), "clock_skew_seconds"),
        ("identity_claims", json!([]), "identity_claims"),
        ("identity_header", json!("Authorization"), "identity_header"),
        ("name", json!(""), "name"),
        ("fail_open", json!(true), "fail_open"),
        ("upstream", json!("http://x"), "upstream"),
    ] {
        server
            .post("/admin/v1/apis", with(field, value))
            .await
            .invalid(at);
    }

    let created = server.post("/admin/v1/apis", base.clone()).await;
    created.ok(201);
    server
        .post("/admin/v1/apis", base.clone())
        .await
        .error(409, "already_exists");
    let clash = server
        .post("/admin/v1/apis", with("id", json!("orders2")))
        .await;
    clash.error(409, "conflict");
    assert_eq!(clash.body["field"], "listen_path");
    let other_host = server
        .post(
            "/admin/v1/apis",
            json!({"id": "orders2", "name": "O", "listen_path": "/orders", "hosts": ["a.example.com"], "issuers": ["gluu"]}),
        )
        .await;
    other_host.ok(201);

    server
        .put("/admin/v1/apis/orders", base.clone(), None)
        .await
        .error(428, "precondition_required");
    server
        .put("/admin/v1/apis/orders", base.clone(), Some("\"1\""))
        .await
        .error(412, "precondition_failed");
    server
        .put(
            "/admin/v1/apis/orders",
            with("issuers", json!(["nope"])),
            Some(created.etag()),
        )
        .await
        .error(422, "unprocessable_reference");
    server
        .put("/admin/v1/apis/nope", with("id", json!("nope")), Some("*"))
        .await
        .error(404, "not_found");
    server.stop().await;
}
