use serde_json::json;

use crate::support::TestServer;

#[tokio::test]
async fn issuers_crud_with_etags_and_pagination() {
    let server = TestServer::start().await;
    let created = server
        .post(
            "/admin/v1/issuers",
            json!({"id": "gluu", "issuer": "https://gluu.example.com", "jwks": {"jwks_uri": "https://gluu.example.com/jwks"}}),
        )
        .await;
    assert_eq!(
        created.ok(201),
        &json!({"id": "gluu", "issuer": "https://gluu.example.com", "jwks": {"jwks_uri": "https://gluu.example.com/jwks"},
                "max_token_lifetime_seconds": 86_400})
    );
    assert_eq!(
        created.location.as_deref(),
        Some(format!("{}/admin/v1/issuers/gluu", server.base).as_str())
    );
    let etag = created.etag().to_owned();

    let read = server.get("/admin/v1/issuers/gluu").await;
    let mut issuer = read.ok(200).clone();
    let keys = issuer.as_object_mut().unwrap().remove("keys").unwrap();
    assert!(keys.is_null() || keys["key_ids"].is_array(), "{keys}");
    assert_eq!(&issuer, created.ok(201));
    assert_eq!(read.etag(), etag);

    let updated = server
        .put(
            "/admin/v1/issuers/gluu",
            json!({"id": "gluu", "issuer": "https://gluu.example.com", "jwks": {"discovery": {}}}),
            Some(&etag),
        )
        .await;
    assert_eq!(
        updated.ok(200)["jwks"],
        json!({"discovery": {"url": "https://gluu.example.com/.well-known/openid-configuration"}})
    );
    assert_ne!(updated.etag(), etag);

    for id in ["keycloak", "okta", "auth0"] {
        server.issuer(id).await;
    }
    let all = server.list_all("/admin/v1/issuers", 2).await;
    let ids: Vec<_> = all
        .iter()
        .map(|issuer| issuer["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["auth0", "gluu", "keycloak", "okta"]);
    let first = server.get("/admin/v1/issuers?limit=3").await;
    assert_eq!(first.ok(200)["items"].as_array().unwrap().len(), 3);
    assert!(first.body["next_cursor"].is_string());

    let filtered = server
        .get("/admin/v1/issuers?issuer=https://okta.idp.example.com")
        .await;
    assert_eq!(filtered.ok(200)["items"][0]["id"], "okta");
    assert!(filtered.body.get("next_cursor").is_none());

    server
        .delete("/admin/v1/issuers/gluu", Some(updated.etag()))
        .await
        .ok(204);
    server
        .get("/admin/v1/issuers/gluu")
        .await
        .error(404, "not_found");
    server.stop().await;
}

#[tokio::test]
async fn issuer_errors() {
    let server = TestServer::start().await;
    let created = server.issuer("idp").await;

    server
        .post(
            "/admin/v1/issuers",
            json!({"id": "idp", "issuer": "https://other.example.com"}),
        )
        .await
        .error(409, "already_exists");
    let taken = server
        .post(
            "/admin/v1/issuers",
            json!({"id": "idp2", "issuer": "https://idp.idp.example.com"}),
        )
        .await;
    taken.error(409, "already_exists");
    assert_eq!(taken.body["field"], "issuer");

    server
        .post(
            "/admin/v1/issuers",
            json!({"id": "Bad Id", "issuer": "https://x.example.com"}),
        )
        .await
        .invalid("id");
    server
        .post(
            "/admin/v1/issuers",
            json!({"issuer": "https://x.example.com"}),
        )
        .await
        .invalid("id");
    server
        .post(
            "/admin/v1/issuers",
            json!({"id": "x", "issuer": "not a url"}),
        )
        .await
        .invalid("issuer");
    server
        .post(
            "/admin/v1/issuers",
            json!({"id": "x", "issuer": "https://x.example.com", "jwks": {"jwks_uri": "ftp://x"}}),
        )
        .await
        .invalid("jwks.jwks_uri");
    server
        .post("/admin/v1/issuers", json!({"id": "x", "issuer": "https://x.example.com", "jwks": {"inline": {"keys": [{"n": "abc"}]}}}))
        .await
        .invalid("jwks.inline.keys[0].kty");
    server
        .post(
            "/admin/v1/issuers",
            json!({"id": "x", "issuer": "https://x.example.com", "jwks": {"pigeon": {}}}),
        )
        .await
        .invalid("jwks");
    server
        .post(
            "/admin/v1/issuers",
            json!({"id": "x", "issuer": "https://x.example.com", "name": "X"}),
        )
        .await
        .invalid("name");

    let path = "/admin/v1/issuers/idp";
    let body = json!({"issuer": "https://new.example.com"});
    server
        .put(path, body.clone(), None)
        .await
        .error(428, "precondition_required");
    server
        .put(path, body.clone(), Some("\"999\""))
        .await
        .error(412, "precondition_failed");
    server
        .put(
            path,
            json!({"id": "other", "issuer": "https://new.example.com"}),
            Some("*"),
        )
        .await
        .invalid("id");
    server
        .put("/admin/v1/issuers/missing", body, Some("*"))
        .await
        .error(404, "not_found");
    server
        .delete(path, None)
        .await
        .error(428, "precondition_required");
    server
        .delete("/admin/v1/issuers/missing", Some("*"))
        .await
        .error(404, "not_found");

    server.api("orders", "idp").await;
    let in_use = server.delete(path, Some(created.etag())).await;
    in_use.error(409, "in_use");
    assert_eq!(
        in_use.body["referrers"],
        json!([{"type": "api", "id": "orders"}])
    );
    server.stop().await;
}
