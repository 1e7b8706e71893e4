//! `/admin/v1/catalogue/{id}/openapi` over real HTTP: uploads in JSON and YAML, OpenAPI 3.0
//! and 3.1, the 422s that say where a document is wrong, the size limit, ETags, the audit
//! entry, no effect on the snapshot, and the portal API's copy.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{OPS_KEY, Reply, TestServer};

const PATH: &str = "/admin/v1/catalogue/orders/openapi";
const AUTH: (&str, &str) = ("authorization", "Bearer ops-key-0123456789abcdef");

const DOC_30_JSON: &str = r#"{
  "openapi": "3.0.3",
  "info": {"title": "Orders", "version": "1.0.0"},
  "paths": {"/orders": {"get": {"responses": {"200": {"description": "The orders"}}}}}
}"#;

const DOC_31_YAML: &str = "openapi: 3.1.0
info:
  title: Orders
  version: 2.0.0
paths:
  /orders/{id}:
    get:
      responses:
        200:
          description: The order
    delete:
      responses:
        204:
          description: Deleted
";

async fn upload(
    server: &TestServer,
    content_type: &str,
    body: &str,
    if_match: Option<&str>,
) -> Reply {
    let mut headers = vec![AUTH, ("content-type", content_type)];
    if let Some(tag) = if_match {
        headers.push(("if-match", tag));
    }
    server
        .raw(Method::PUT, PATH, &headers, body.as_bytes().to_vec())
        .await
}

async fn setup() -> TestServer {
    let server = TestServer::start().await;
    server.issuer("idp").await;
    server.api("orders", "idp").await;
    server.policy("gold", "orders").await;
    server.entry("orders", "gold").await;
    server
}

async fn snapshot_version(server: &TestServer) -> Value {
    // The publication follows the store revision; wait for it to catch up before reading.
    let revision = server.state.revision().unwrap();
    for _ in 0..200 {
        let snapshot = server.get("/admin/v1/snapshot").await;
        let body = snapshot.ok(200);
        if server.state.snapshots().current().is_some()
            && server.state.revision().unwrap() == revision
            && body["last_published_at"].is_string()
        {
            return body["version"].clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("no snapshot was published");
}

#[tokio::test]
async fn documents_are_attached_read_replaced_and_removed_in_json_and_yaml() {
    let server = setup().await;
    let version_before = snapshot_version(&server).await;

    let created = upload(&server, "application/json", DOC_30_JSON, None).await;
    assert_eq!(
        created.ok(201),
        &json!({"catalogue_entry": "orders", "media_type": "application/json",
                "openapi": "3.0.3", "title": "Orders", "version": "1.0.0", "operations": 1,
                "bytes": DOC_30_JSON.len(), "sha256": created.body["sha256"]})
    );
    assert!(created.location.as_deref().unwrap().ends_with(PATH));
    let (status, headers, text) = server.text(Method::GET, PATH, &[AUTH], Vec::new()).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["etag"].to_str().unwrap(), created.etag());
    assert_eq!(text, DOC_30_JSON, "answered byte for byte as uploaded");

    upload(&server, "application/yaml", DOC_31_YAML, None)
        .await
        .error(428, "precondition_required");
    let replaced = upload(
        &server,
        "application/yaml",
        DOC_31_YAML,
        Some(created.etag()),
    )
    .await;
    assert_eq!(replaced.ok(200)["openapi"], "3.1.0");
    assert_eq!(replaced.body["media_type"], "application/yaml");
    assert_eq!(replaced.body["operations"], 2);
    let again = upload(&server, "application/yaml", DOC_31_YAML, Some("*")).await;
    assert_eq!(again.ok(200)["sha256"], replaced.body["sha256"]);
    assert_eq!(
        again.etag(),
        replaced.etag(),
        "the same document again changes nothing"
    );
    let (_, headers, text) = server.text(Method::GET, PATH, &[AUTH], Vec::new()).await;
    assert_eq!(headers["content-type"], "application/yaml");
    assert_eq!(text, DOC_31_YAML);

    let audit = server
        .get("/admin/v1/audit?resource_type=catalogue_openapi&resource_id=orders")
        .await;
    let items = audit.ok(200)["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["action"], "update");
    assert_eq!(items[0]["actor"], json!({"type": "admin_key", "id": "ops"}));
    assert_eq!(items[0]["before"]["openapi"], "3.0.3");
    assert_eq!(items[0]["after"]["openapi"], "3.1.0");
    assert_eq!(items[1]["action"], "create");
    assert_eq!(
        snapshot_version(&server).await,
        version_before,
        "documents are not part of the snapshot"
    );

    server
        .delete(PATH, None)
        .await
        .error(428, "precondition_required");
    server.delete(PATH, Some(replaced.etag())).await.ok(204);
    server.get(PATH).await.error(404, "not_found");
    server.delete(PATH, Some("*")).await.error(404, "not_found");
    server.stop().await;
}

#[tokio::test]
async fn a_document_that_does_not_parse_is_refused_with_its_line_and_column() {
    let server = setup().await;
    let json = upload(
        &server,
        "application/json",
        "{\n  \"openapi\": \"3.1.0\"\n  \"info\": {}\n}",
        None,
    )
    .await;
    let message = json.error(422, "invalid_openapi")["message"]
        .as_str()
        .unwrap();
    assert!(
        message.contains("not valid JSON at line 3, column 3: expected `,` or `}`"),
        "{message}"
    );
    let yaml = upload(
        &server,
        "application/yaml",
        "openapi: 3.1.0\ninfo:\n  title: [x\n",
        None,
    )
    .await;
    let message = yaml.error(422, "invalid_openapi")["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("not valid YAML at line "), "{message}");
    assert!(message.contains(", column "), "{message}");
    server.get(PATH).await.error(404, "not_found");
    server.stop().await;
}

#[tokio::test]
async fn a_document_of_the_wrong_shape_is_refused_with_the_path_at_fault() {
    let server = setup().await;
    let no_responses = r#"{"openapi": "3.0.0", "info": {"title": "T", "version": "1"},
        "paths": {"/orders": {"get": {"summary": "no responses"}}}}"#;
    let refused = upload(&server, "application/json", no_responses, None).await;
    let body = refused.error(422, "invalid_openapi");
    assert_eq!(body["field"], r#"paths["/orders"].get"#);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("missing field `responses`")
    );

    let bad_31 = "openapi: 3.1.0\ninfo:\n  title: T\n  version: {major: 1}\n";
    let refused = upload(&server, "application/yaml", bad_31, None).await;
    assert_eq!(
        refused.error(422, "invalid_openapi")["field"],
        "info.version"
    );

    let swagger = r#"{"swagger": "2.0", "info": {"title": "T", "version": "1"}, "paths": {}}"#;
    let refused = upload(&server, "application/json", swagger, None).await;
    assert_eq!(refused.error(422, "invalid_openapi")["field"], "swagger");
    server.stop().await;
}

#[tokio::test]
async fn oversized_unknown_and_unsupported_uploads_are_refused() {
    let server = setup().await;
    let padding = " ".repeat(64 * 1024);
    let oversized = format!("{DOC_30_JSON}{padding}");
    upload(&server, "application/json", &oversized, None)
        .await
        .error(413, "payload_too_large");
    upload(&server, "text/plain", DOC_30_JSON, None)
        .await
        .error(415, "unsupported_media_type");
    let unknown = server
        .raw(
            Method::PUT,
            "/admin/v1/catalogue/nope/openapi",
            &[AUTH, ("content-type", "application/json")],
            DOC_30_JSON.as_bytes().to_vec(),
        )
        .await;
    unknown.error(404, "not_found");
    let anonymous = server
        .raw(
            Method::PUT,
            PATH,
            &[("content-type", "application/json")],
            DOC_30_JSON.as_bytes().to_vec(),
        )
        .await;
    anonymous.error(401, "unauthorized");
    assert_eq!(OPS_KEY, AUTH.1.trim_start_matches("Bearer "));
    server.stop().await;
}

#[tokio::test]
async fn developers_read_the_document_of_a_listed_entry_through_the_portal_api() {
    let server = setup().await;
    server
        .put(
            "/admin/v1/dcr",
            json!({"enabled": true, "issuer": "https://idp.idp.example.com",
                   "registration_endpoint": "https://idp.idp.example.com/reg",
                   "token_endpoint": "https://idp.idp.example.com/token"}),
            Some("*"),
        )
        .await
        .ok(200);
    let signup = server
        .text(
            Method::POST,
            "/portal/api/v1/signup",
            &[("content-type", "application/json")],
            json!({"email": "ada@example.com", "name": "Ada", "password": "correct horse battery"})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(signup.0, 201, "{}", signup.2);
    let cookie = signup.1["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let portal_path = "/portal/api/v1/catalogue/orders/openapi";
    let missing = server
        .text(Method::GET, portal_path, &[("cookie", &cookie)], Vec::new())
        .await;
    assert_eq!(missing.0, 404, "{}", missing.2);
    upload(&server, "application/yaml", DOC_31_YAML, None)
        .await
        .ok(201);
    let (status, headers, text) = server
        .text(Method::GET, portal_path, &[("cookie", &cookie)], Vec::new())
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/yaml");
    assert_eq!(text, DOC_31_YAML);
    let anonymous = server.text(Method::GET, portal_path, &[], Vec::new()).await;
    assert_eq!(anonymous.0, 401);
    server.stop().await;
}
