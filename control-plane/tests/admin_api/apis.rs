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
            json!({"id": "orders", "name": "Orders", "listen_path": "/orders", "issuers": ["gluu"],
                   "audiences": ["https://orders.example.com"]}),
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
            "audiences": ["https://orders.example.com"],
            "accept_any_audience": false,
            "identity_claims": ["sub"],
            "policy_claim": "pol",
            "default_policies": [],
            "clock_skew_seconds": 60,
            "require_exp": true,
            "expected_typ": null,
            "max_token_bytes": 16384,
            "identity_header": "x-portico-client-id",
            "policies_header": null,
            "metadata_headers": {},
            "token_sources": {"header": true, "query": null, "cookie": null},
            "case_sensitive_paths": false,
            "bypass_cors_preflight": false
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
            json!({"name": "Orders v2", "listen_path": "/orders", "issuers": ["gluu"],
                   "audiences": ["https://orders.example.com"], "default_policies": ["gold"]}),
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
    let base = json!({"id": "orders", "name": "Orders", "listen_path": "/orders",
                      "issuers": ["gluu"], "audiences": ["orders"]});
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
            json!({"id": "orders2", "name": "O", "listen_path": "/orders", "hosts": ["a.example.com"],
                   "issuers": ["gluu"], "audiences": ["orders"]}),
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

/// Every spelling of one route beside an existing API is refused with 409 naming the API it
/// clashes with, and nothing is stored (the store revision does not move).
#[tokio::test]
async fn every_write_that_would_stall_publication_is_refused_and_names_the_clash() {
    let server = TestServer::start().await;
    server.issuer("idp").await;
    let api = |id: &str, path: &str, hosts: serde_json::Value| {
        json!({"id": id, "name": id, "listen_path": path, "hosts": hosts, "issuers": ["idp"],
               "audiences": ["orders"]})
    };
    server
        .post("/admin/v1/apis", api("orders", "/orders", json!([])))
        .await
        .ok(201);
    server
        .post(
            "/admin/v1/apis",
            api("hosted", "/hosted", json!(["example.com"])),
        )
        .await
        .ok(201);
    let revision = server.get("/readyz").await.ok(200)["revision"].clone();
    let clash = server
        .post("/admin/v1/apis", api("orders-2", "/orders/", json!([])))
        .await;
    clash.error(409, "conflict");
    assert_eq!(clash.body["field"], "listen_path");
    let message = clash.body["message"].as_str().unwrap();
    assert!(
        message.contains("`/orders/`") && message.contains("`orders`"),
        "{message}"
    );
    let port = server
        .post(
            "/admin/v1/apis",
            api("hosted-2", "/hosted", json!(["Example.com:8443"])),
        )
        .await;
    port.error(409, "conflict");
    assert!(port.body["message"].as_str().unwrap().contains("`hosted`"));
    for spelling in ["//orders", "/%6Frders", "/x/../orders"] {
        let refused = server
            .post("/admin/v1/apis", api("orders-3", spelling, json!([])))
            .await;
        refused.invalid("listen_path");
        assert!(
            refused.body["message"]
                .as_str()
                .unwrap()
                .contains("write `/orders`")
        );
    }
    for header in ["te", "Connection", "x-envoy-decorator-operation", "cookie"] {
        let mut body = api("headers", "/headers", json!([]));
        body["identity_header"] = json!(header);
        server
            .post("/admin/v1/apis", body)
            .await
            .invalid("identity_header");
    }
    assert_eq!(server.get("/readyz").await.ok(200)["revision"], revision);
    server.stop().await;
}

/// Wildcard hosts are canonical (`*.example.com`, lower case, no port) and never clash with
/// exact hosts; a wildcard spelled two ways is one route.
#[tokio::test]
async fn wildcard_hosts_are_accepted_in_canonical_form() {
    let server = TestServer::start().await;
    server.issuer("idp").await;
    let body = |id: &str, hosts: serde_json::Value| {
        json!({"id": id, "name": id, "listen_path": "/secure", "hosts": hosts,
               "issuers": ["idp"], "audiences": ["secure"]})
    };
    let created = server
        .post("/admin/v1/apis", body("wild", json!(["*.Example.com:443"])))
        .await;
    assert_eq!(created.ok(201)["hosts"], json!(["*.example.com"]));
    server
        .post("/admin/v1/apis", body("exact", json!(["a.example.com"])))
        .await
        .ok(201);
    server
        .post("/admin/v1/apis", body("again", json!(["*.EXAMPLE.COM"])))
        .await
        .error(409, "conflict");
    for bad in ["*", "a.*.com", "*example.com", "example.*"] {
        server
            .post("/admin/v1/apis", body("bad", json!([bad])))
            .await
            .invalid("hosts[0]");
    }
    server.stop().await;
}

/// Audiences are required unless the operator opts out; HMAC is static-only; the token size
/// limit is settable within core's bounds.
#[tokio::test]
async fn audiences_hmac_and_token_size_follow_the_rulebook() {
    let server = TestServer::start().await;
    server.issuer("idp").await;
    let base = json!({"id": "a", "name": "A", "listen_path": "/a", "issuers": ["idp"]});
    let with = |field: &str, value: serde_json::Value| {
        let mut body = base.clone();
        body[field] = value;
        body
    };
    let missing = server.post("/admin/v1/apis", base.clone()).await;
    missing.invalid("audiences");
    assert!(
        missing.body["message"]
            .as_str()
            .unwrap()
            .contains("accept_any_audience")
    );
    let mut any = with("accept_any_audience", json!(true));
    any["max_token_bytes"] = json!(65536);
    let created = server.post("/admin/v1/apis", any).await;
    assert_eq!(created.ok(201)["accept_any_audience"], true);
    assert_eq!(created.body["max_token_bytes"], 65536);
    let mut too_big = with("audiences", json!(["a"]));
    too_big["id"] = json!("b");
    too_big["max_token_bytes"] = json!(65537);
    server
        .post("/admin/v1/apis", too_big)
        .await
        .invalid("max_token_bytes");
    let mut hmac = with("audiences", json!(["a"]));
    hmac["id"] = json!("c");
    hmac["allowed_algorithms"] = json!(["HS256"]);
    let refused = server.post("/admin/v1/apis", hmac).await;
    refused.invalid("allowed_algorithms[0]");
    assert!(refused.body["message"].as_str().unwrap().contains("static"));
    server.stop().await;
}

/// Writes that change nothing answer the current record without a new revision.
#[tokio::test]
async fn no_op_writes_do_not_bump_the_revision() {
    let server = TestServer::start().await;
    server.issuer("idp").await;
    let body = json!({"id": "a", "name": "A", "listen_path": "/a", "issuers": ["idp"],
                      "audiences": ["a"]});
    let created = server.post("/admin/v1/apis", body.clone()).await;
    created.ok(201);
    let revision = server.get("/readyz").await.ok(200)["revision"].clone();
    let same = server
        .put("/admin/v1/apis/a", body, Some(created.etag()))
        .await;
    same.ok(200);
    assert_eq!(same.etag(), created.etag());
    assert_eq!(server.get("/readyz").await.ok(200)["revision"], revision);
    server.stop().await;
}

/// The one-record settings (gateway, portal) answer a write of what they hold with their
/// current ETag, and a change with a new one.
#[tokio::test]
async fn settings_writes_that_change_nothing_keep_their_etag() {
    let server = TestServer::start().await;
    for (path, body) in [
        (
            "/admin/v1/gateway",
            json!({"unmatched": "deny", "public_prefixes": ["/health"]}),
        ),
        ("/admin/v1/portal", json!({"self_signup": false})),
    ] {
        let first = server.put(path, body.clone(), Some("*")).await;
        first.ok(200);
        let again = server.put(path, body, Some("*")).await;
        again.ok(200);
        assert_eq!(again.etag(), first.etag(), "{path}");
        assert_ne!(first.etag(), "\"0\"", "{path}");
    }
    server.stop().await;
}
