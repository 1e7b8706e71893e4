use reqwest::Method;
use serde_json::json;

use crate::support::{CI_KEY, DATA_PLANE_TOKEN, OPS_KEY, TestServer};

#[tokio::test]
async fn credentials_are_required_and_checked() {
    let server = TestServer::start().await;
    let missing = server
        .raw(Method::GET, "/admin/v1/apis", &[], Vec::new())
        .await;
    missing.error(401, "unauthorized");
    let basic = server
        .raw(
            Method::GET,
            "/admin/v1/apis",
            &[("Authorization", "Basic b3BzOnB3")],
            Vec::new(),
        )
        .await;
    basic.error(401, "unauthorized");
    let wrong = server
        .raw(
            Method::GET,
            "/admin/v1/apis",
            &[("Authorization", "Bearer ops-key-0123456789abcdeX")],
            Vec::new(),
        )
        .await;
    wrong.error(403, "forbidden");
    for key in [OPS_KEY, CI_KEY] {
        let authorization = format!("bearer {key}");
        server
            .raw(
                Method::GET,
                "/admin/v1/apis",
                &[("Authorization", &authorization)],
                Vec::new(),
            )
            .await
            .ok(200);
    }
    let public = server
        .raw(Method::GET, "/admin/v1/openapi.json", &[], Vec::new())
        .await;
    assert_eq!(public.ok(200)["openapi"], "3.1.0");
    assert_eq!(
        server
            .raw(Method::GET, "/healthz", &[], Vec::new())
            .await
            .ok(200),
        &json!({"status": "ok"})
    );
    assert_eq!(
        server
            .raw(Method::GET, "/readyz", &[], Vec::new())
            .await
            .ok(200)["status"],
        "ready"
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_requests_get_json_errors() {
    let server = TestServer::start().await;
    let auth = format!("Bearer {OPS_KEY}");
    let json_headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];

    let malformed = server
        .raw(
            Method::POST,
            "/admin/v1/policies",
            &json_headers,
            b"{\"id\": \"gold\",".to_vec(),
        )
        .await;
    malformed.error(400, "malformed_json");
    let not_object = server
        .raw(
            Method::POST,
            "/admin/v1/policies",
            &json_headers,
            b"[1, 2]".to_vec(),
        )
        .await;
    not_object.error(400, "invalid_request");
    let empty = server
        .raw(
            Method::POST,
            "/admin/v1/policies",
            &json_headers,
            Vec::new(),
        )
        .await;
    empty.error(400, "malformed_json");

    let form = server
        .raw(
            Method::POST,
            "/admin/v1/policies",
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            b"id=gold".to_vec(),
        )
        .await;
    form.error(415, "unsupported_media_type");

    let huge = format!(
        "{{\"id\": \"gold\", \"name\": \"{}\"}}",
        "x".repeat(100 * 1024)
    );
    let too_large = server
        .raw(
            Method::POST,
            "/admin/v1/policies",
            &json_headers,
            huge.into_bytes(),
        )
        .await;
    too_large.error(413, "payload_too_large");
    assert!(
        too_large.body["message"]
            .as_str()
            .unwrap()
            .contains("65536")
    );

    server
        .get("/admin/v1/teapots")
        .await
        .error(404, "not_found");
    server
        .call(Method::PATCH, "/admin/v1/apis", Some(json!({})), None)
        .await
        .error(405, "method_not_allowed");
    server.stop().await;
}

#[tokio::test]
async fn two_operators_cannot_silently_overwrite_each_other() {
    let server = TestServer::start().await;
    let ci = server.with_key(CI_KEY);
    server.issuer("idp").await;
    let first_read = server.get("/admin/v1/issuers/idp").await;
    let second_read = ci.get("/admin/v1/issuers/idp").await;
    assert_eq!(first_read.etag(), second_read.etag());
    server
        .put(
            "/admin/v1/issuers/idp",
            json!({"issuer": "https://a.example.com"}),
            Some(first_read.etag()),
        )
        .await
        .ok(200);
    let lost = ci
        .put(
            "/admin/v1/issuers/idp",
            json!({"issuer": "https://b.example.com"}),
            Some(second_read.etag()),
        )
        .await;
    lost.error(412, "precondition_failed");
    assert_eq!(
        server.get("/admin/v1/issuers/idp").await.ok(200)["issuer"],
        "https://a.example.com"
    );
    server.stop().await;
}

#[tokio::test]
async fn each_acknowledged_write_bumps_the_published_revision() {
    let server = TestServer::start().await;
    let mut revisions = server.state.revisions();
    assert_eq!(*revisions.borrow_and_update(), 0);
    server.issuer("idp").await;
    assert!(revisions.has_changed().unwrap());
    assert_eq!(*revisions.borrow_and_update(), 1);
    server
        .post(
            "/admin/v1/issuers",
            json!({"id": "idp", "issuer": "https://x.example.com"}),
        )
        .await
        .error(409, "already_exists");
    assert!(!revisions.has_changed().unwrap());
    server.api("orders", "idp").await;
    assert_eq!(*revisions.borrow_and_update(), 2);
    assert_eq!(
        server
            .raw(Method::GET, "/readyz", &[], Vec::new())
            .await
            .ok(200)["revision"],
        2
    );
    server.stop().await;
}

#[tokio::test]
async fn every_documented_operation_answers_auth_and_body_errors_in_json() {
    let server = TestServer::start().await;
    let document = server
        .raw(Method::GET, "/admin/v1/openapi.json", &[], Vec::new())
        .await
        .body;
    let admin_auth = format!("Bearer {OPS_KEY}");
    let data_plane_auth = format!("Bearer {DATA_PLANE_TOKEN}");
    let huge = vec![b' '; 65 * 1024];
    let mut checked = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        if path.starts_with("/portal/") {
            // The portal answers 401 without a session first: see the portal tests.
            continue;
        }
        for (method, operation) in item.as_object().unwrap() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let concrete = path.replace("{id}", "some-id");
            let auth = if path.starts_with("/v1/") {
                &data_plane_auth
            } else {
                &admin_auth
            };
            let secured = operation["security"]
                .as_array()
                .is_some_and(|security| !security.is_empty());
            if secured {
                server
                    .raw(method.clone(), &concrete, &[], Vec::new())
                    .await
                    .error(401, "unauthorized");
                server
                    .raw(
                        method.clone(),
                        &concrete,
                        &[("Authorization", "Bearer not-a-valid-admin-key")],
                        Vec::new(),
                    )
                    .await
                    .error(403, "forbidden");
            }
            if let Some(body) = operation.get("requestBody") {
                let with_type = [
                    ("Authorization", auth.as_str()),
                    ("Content-Type", "application/json"),
                ];
                // An OpenAPI document (JSON or YAML) is content, not a request: what is wrong
                // with it is 422 `invalid_openapi`, saying where.
                let document = body["content"].get("application/yaml").is_some();
                let (status, code) = if document {
                    (422, "invalid_openapi")
                } else {
                    (400, "malformed_json")
                };
                server
                    .raw(method.clone(), &concrete, &with_type, b"{\"id\": ".to_vec())
                    .await
                    .error(status, code);
                server
                    .raw(method.clone(), &concrete, &with_type, huge.clone())
                    .await
                    .error(413, "payload_too_large");
                server
                    .raw(
                        method.clone(),
                        &concrete,
                        &[
                            ("Authorization", auth.as_str()),
                            ("Content-Type", "text/plain"),
                        ],
                        b"{}".to_vec(),
                    )
                    .await
                    .error(415, "unsupported_media_type");
                server
                    .raw(
                        method.clone(),
                        &concrete,
                        &with_type,
                        b"{\"surprise\": 1}".to_vec(),
                    )
                    .await
                    .error(
                        if document { 422 } else { 400 },
                        if document {
                            "invalid_openapi"
                        } else {
                            "invalid_request"
                        },
                    );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 60);
    server.stop().await;
}
