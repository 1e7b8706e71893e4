use serde_json::json;

use crate::support::TestServer;

#[tokio::test]
async fn developer_lifecycle() {
    let server = TestServer::start().await;
    let created = server
        .post(
            "/admin/v1/developers",
            json!({"email": "Ada@Example.com", "name": "Ada Lovelace", "password": "correct horse battery"}),
        )
        .await;
    let developer = created.ok(201).clone();
    let id = developer["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("dev_") && id.len() == 36, "{id}");
    assert_eq!(developer["email"], "Ada@Example.com");
    assert_eq!(developer["state"], "active");
    assert!(developer["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(!created.text.contains("password") && !created.text.contains("correct horse"));
    let path = format!("/admin/v1/developers/{id}");

    let read = server.get(&path).await;
    assert_eq!(read.ok(200), &developer);

    server.developer("grace@example.com").await;
    let by_email = server
        .get("/admin/v1/developers?email=ADA@example.COM")
        .await;
    assert_eq!(by_email.ok(200)["items"].as_array().unwrap().len(), 1);
    assert_eq!(by_email.body["items"][0]["id"], id.as_str());
    assert_eq!(server.list_all("/admin/v1/developers", 1).await.len(), 2);

    let updated = server
        .put(
            &path,
            json!({"email": "ada@lovelace.org", "name": "Ada King"}),
            Some(read.etag()),
        )
        .await;
    assert_eq!(updated.ok(200)["email"], "ada@lovelace.org");
    server.developer("ada@example.com").await;

    let disabled = server.action(&format!("{path}/disable"), None).await;
    assert_eq!(disabled.ok(200)["state"], "disabled");
    let again = server.action(&format!("{path}/disable"), None).await;
    assert_eq!(again.ok(200)["state"], "disabled");
    assert_eq!(
        again.etag(),
        disabled.etag(),
        "a no-op disable keeps the revision"
    );
    let disabled_list = server.get("/admin/v1/developers?state=disabled").await;
    assert_eq!(disabled_list.ok(200)["items"][0]["id"], id.as_str());
    server
        .action(&format!("{path}/enable"), Some(updated.etag()))
        .await
        .error(412, "precondition_failed");
    let enabled = server
        .action(&format!("{path}/enable"), Some(disabled.etag()))
        .await;
    assert_eq!(enabled.ok(200)["state"], "active");

    let reset = server
        .post(
            &format!("{path}/reset-password"),
            json!({"password": "a much better passphrase"}),
        )
        .await;
    assert_eq!(reset.ok(200)["id"], id.as_str());
    assert!(!reset.text.contains("passphrase"));

    server.delete(&path, Some(reset.etag())).await.ok(204);
    server.get(&path).await.error(404, "not_found");
    server.developer("ada@lovelace.org").await;
    server.stop().await;
}

#[tokio::test]
async fn developer_errors() {
    let server = TestServer::start().await;
    let ada = server.developer("ada@example.com").await;
    let id = ada.body["id"].as_str().unwrap().to_owned();
    let path = format!("/admin/v1/developers/{id}");

    let duplicate = server
        .post(
            "/admin/v1/developers",
            json!({"email": "ADA@EXAMPLE.COM", "name": "Imposter", "password": "correct horse battery"}),
        )
        .await;
    duplicate.error(409, "already_exists");
    assert_eq!(duplicate.body["field"], "email");

    for (body, field) in [
        (
            json!({"email": "not-an-email", "name": "X", "password": "correct horse battery"}),
            "email",
        ),
        (
            json!({"email": "x@example.com", "name": "X", "password": "short"}),
            "password",
        ),
        (
            json!({"email": "x@example.com", "name": "", "password": "correct horse battery"}),
            "name",
        ),
        (json!({"email": "x@example.com", "name": "X"}), "password"),
        (
            json!({"email": "x@example.com", "name": "X", "password": "correct horse battery", "state": "disabled"}),
            "state",
        ),
        (
            json!({"id": "dev_mine", "email": "x@example.com", "name": "X", "password": "correct horse battery"}),
            "id",
        ),
    ] {
        server
            .post("/admin/v1/developers", body)
            .await
            .invalid(field);
    }

    let grace = server.developer("grace@example.com").await;
    let taken = server
        .put(
            &format!(
                "/admin/v1/developers/{}",
                grace.body["id"].as_str().unwrap()
            ),
            json!({"email": "Ada@example.com", "name": "Grace"}),
            Some(grace.etag()),
        )
        .await;
    taken.error(409, "already_exists");
    server
        .put(
            &path,
            json!({"email": "ada@example.com", "name": "Ada", "password": "x"}),
            Some("*"),
        )
        .await
        .invalid("password");
    server
        .put(
            &path,
            json!({"email": "ada@example.com", "name": "Ada"}),
            None,
        )
        .await
        .error(428, "precondition_required");
    server
        .put(
            &path,
            json!({"email": "ada@example.com", "name": "Ada"}),
            Some("\"99\""),
        )
        .await
        .error(412, "precondition_failed");
    server
        .post(
            &format!("{path}/reset-password"),
            json!({"password": "short"}),
        )
        .await
        .invalid("password");
    server
        .post(&format!("{path}/reset-password"), json!({}))
        .await
        .invalid("password");
    server
        .action("/admin/v1/developers/dev_missing/disable", None)
        .await
        .error(404, "not_found");
    server
        .post(
            "/admin/v1/developers/dev_missing/reset-password",
            json!({"password": "correct horse battery"}),
        )
        .await
        .error(404, "not_found");
    server
        .delete(&path, None)
        .await
        .error(428, "precondition_required");
    server.stop().await;
}
