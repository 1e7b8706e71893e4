use portico_control_plane::service::dcr::DcrSource;
use serde_json::json;

use crate::support::TestServer;

const TOKEN: &str = "initial-access-token-5f2b9c";

#[tokio::test]
async fn global_settings_default_then_write_with_write_only_token() {
    let server = TestServer::start().await;
    let defaults = server.get("/admin/v1/dcr").await;
    assert_eq!(defaults.etag(), "\"0\"");
    assert_eq!(
        defaults.ok(200),
        &json!({
            "enabled": false, "provider": "other", "issuer": null,
            "registration_endpoint": null, "token_endpoint": null,
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_post",
            "response_types": [], "scope": null, "keycloak_realm": null,
            "okta_application_type": null, "initial_access_token_set": false
        })
    );

    let body = json!({
        "enabled": true, "provider": "gluu", "issuer": "https://gluu.example.com",
        "registration_endpoint": "https://gluu.example.com/oxauth/restv1/register",
        "token_endpoint": "https://gluu.example.com/oxauth/restv1/token",
        "scope": "openid profile", "initial_access_token": TOKEN
    });
    server
        .put("/admin/v1/dcr", body.clone(), None)
        .await
        .error(428, "precondition_required");
    server
        .put("/admin/v1/dcr", body.clone(), Some("\"5\""))
        .await
        .error(412, "precondition_failed");
    let written = server
        .put("/admin/v1/dcr", body, Some(defaults.etag()))
        .await;
    assert_eq!(written.ok(200)["initial_access_token_set"], true);
    assert_eq!(written.body["provider"], "gluu");
    assert!(!written.text.contains(TOKEN));
    let read = server.get("/admin/v1/dcr").await;
    assert!(!read.text.contains(TOKEN));
    assert_eq!(read.etag(), written.etag());

    let effective = {
        server.issuer("idp").await;
        server.api("orders", "idp").await;
        server.policy("gold", "orders").await;
        server.entry("orders", "gold").await;
        server.state.dcr().effective("orders").unwrap()
    };
    assert_eq!(effective.source, DcrSource::Global);
    assert_eq!(effective.initial_access_token.unwrap().expose(), TOKEN);

    let kept = server
        .put(
            "/admin/v1/dcr",
            json!({"enabled": false, "provider": "gluu", "issuer": "https://gluu.example.com"}),
            Some("*"),
        )
        .await;
    assert_eq!(kept.ok(200)["initial_access_token_set"], true);
    assert_eq!(kept.body["registration_endpoint"], json!(null));
    let cleared = server
        .put(
            "/admin/v1/dcr",
            json!({"initial_access_token": null}),
            Some(kept.etag()),
        )
        .await;
    assert_eq!(cleared.ok(200)["initial_access_token_set"], false);
    assert_eq!(cleared.body["enabled"], false);
    server.stop().await;
}

#[tokio::test]
async fn global_settings_validation() {
    let server = TestServer::start().await;
    for (body, field) in [
        (json!({"enabled": true}), "issuer"),
        (json!({"provider": "ping"}), "provider"),
        (json!({"issuer": "gluu.example.com"}), "issuer"),
        (json!({"grant_types": []}), "grant_types"),
        (
            json!({"grant_types": ["client credentials"]}),
            "grant_types[0]",
        ),
        (
            json!({"token_endpoint_auth_method": "magic"}),
            "token_endpoint_auth_method",
        ),
        (
            json!({"provider": "okta", "keycloak_realm": "x"}),
            "keycloak_realm",
        ),
        (
            json!({"provider": "keycloak", "okta_application_type": "service"}),
            "okta_application_type",
        ),
        (json!({"initial_access_token": ""}), "initial_access_token"),
        (json!({"initial_access_token": 42}), "initial_access_token"),
        (json!({"client_secret": "x"}), "client_secret"),
    ] {
        server
            .put("/admin/v1/dcr", body, Some("*"))
            .await
            .invalid(field);
    }
    server.stop().await;
}

#[tokio::test]
async fn catalogue_override_lifecycle() {
    let server = TestServer::start().await;
    server.issuer("idp").await;
    server.api("orders", "idp").await;
    server.policy("gold", "orders").await;
    server.entry("orders", "gold").await;
    let path = "/admin/v1/catalogue/orders/dcr";

    server.get(path).await.error(404, "not_found");
    server
        .get("/admin/v1/catalogue/nope/dcr")
        .await
        .error(404, "not_found");
    server
        .put("/admin/v1/catalogue/nope/dcr", json!({}), None)
        .await
        .error(404, "not_found");
    server
        .put(path, json!({"provider": "okta"}), Some("\"1\""))
        .await
        .error(412, "precondition_failed");

    let body = json!({
        "enabled": true, "provider": "okta", "issuer": "https://dev-1.okta.com/oauth2/default",
        "registration_endpoint": "https://dev-1.okta.com/oauth2/v1/clients",
        "token_endpoint": "https://dev-1.okta.com/oauth2/default/v1/token",
        "okta_application_type": "service", "initial_access_token": TOKEN
    });
    let created = server.put(path, body.clone(), None).await;
    assert_eq!(created.ok(201)["okta_application_type"], "service");
    assert_eq!(
        created.location.as_deref(),
        Some(format!("{}{path}", server.base).as_str())
    );
    assert!(!created.text.contains(TOKEN));

    let effective = server.state.dcr().effective("orders").unwrap();
    assert_eq!(effective.source, DcrSource::Override);
    assert_eq!(effective.initial_access_token.unwrap().expose(), TOKEN);

    server
        .put(path, body.clone(), None)
        .await
        .error(428, "precondition_required");
    server
        .put(path, body.clone(), Some("\"1\""))
        .await
        .error(412, "precondition_failed");
    let replaced = server
        .put(
            path,
            json!({"provider": "keycloak", "keycloak_realm": "demo"}),
            Some(created.etag()),
        )
        .await;
    assert_eq!(replaced.ok(200)["initial_access_token_set"], true);
    assert_eq!(server.get(path).await.ok(200)["keycloak_realm"], "demo");

    server
        .delete(path, None)
        .await
        .error(428, "precondition_required");
    server
        .delete(path, Some("\"1\""))
        .await
        .error(412, "precondition_failed");
    server.delete(path, Some(replaced.etag())).await.ok(204);
    server.get(path).await.error(404, "not_found");
    server.delete(path, Some("*")).await.error(404, "not_found");
    assert_eq!(
        server.state.dcr().effective("orders").unwrap().source,
        DcrSource::Global
    );
    server.stop().await;
}

/// A mock IdP whose discovery document is `document(<its own URL>)`.
async fn idp_with_document(document: impl Fn(&str) -> serde_json::Value) -> wiremock::MockServer {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::path(
        "/.well-known/openid-configuration",
    ))
    .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(document(&server.uri())))
    .mount(&server)
    .await;
    server
}

#[tokio::test]
async fn enabling_dcr_discovers_the_endpoints_and_refuses_an_idp_that_cannot_register() {
    let server = TestServer::start().await;
    let body =
        |issuer: &str| json!({"enabled": true, "issuer": issuer, "initial_access_token": TOKEN});

    let other_issuer = idp_with_document(|_| {
        json!({"issuer": "https://elsewhere.example.com", "jwks_uri": "https://elsewhere.example.com/jwks"})
    })
    .await;
    let error = server
        .put("/admin/v1/dcr", body(&other_issuer.uri()), Some("*"))
        .await;
    let message = error.error(422, "discovery_failed")["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("elsewhere.example.com"), "{message}");

    let no_registration =
        idp_with_document(|issuer| json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")}))
            .await;
    let error = server
        .put("/admin/v1/dcr", body(&no_registration.uri()), Some("*"))
        .await;
    let message = error.error(422, "discovery_failed")["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("registration_endpoint"), "{message}");

    let not_json = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::path(
        "/.well-known/openid-configuration",
    ))
    .respond_with(wiremock::ResponseTemplate::new(200).set_body_string("<html>hello</html>"))
    .mount(&not_json)
    .await;
    let error = server
        .put("/admin/v1/dcr", body(&not_json.uri()), Some("*"))
        .await;
    let message = error.error(422, "discovery_failed")["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("not JSON"), "{message}");

    let unreachable = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let error = server
        .put("/admin/v1/dcr", body(&unreachable), Some("*"))
        .await;
    let message = error.error(422, "discovery_failed")["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("unreachable"), "{message}");
    assert_eq!(
        server.get("/admin/v1/dcr").await.etag(),
        "\"0\"",
        "nothing was saved"
    );

    let good = idp_with_document(|issuer| {
        json!({
            "issuer": issuer, "jwks_uri": format!("{issuer}/jwks"),
            "registration_endpoint": format!("{issuer}/reg"),
            "token_endpoint": format!("{issuer}/token"),
        })
    })
    .await;
    let issuer = good.uri();
    let saved = server.put("/admin/v1/dcr", body(&issuer), Some("*")).await;
    assert_eq!(saved.ok(200)["enabled"], true);
    assert_eq!(
        saved.body["registration_endpoint"],
        json!(null),
        "settings keep what was given"
    );
    server.issuer("idp").await;
    server.api("orders", "idp").await;
    server.policy("gold", "orders").await;
    server.entry("orders", "gold").await;
    let resolved = server.state.dcr().resolve("orders").await.unwrap();
    assert_eq!(
        resolved.registration_endpoint.as_str(),
        format!("{issuer}/reg")
    );
    assert_eq!(
        resolved.token_endpoint.unwrap().as_str(),
        format!("{issuer}/token")
    );
    assert_eq!(
        resolved.jwks_uri.unwrap().as_str(),
        format!("{issuer}/jwks")
    );

    server
        .put("/admin/v1/catalogue/orders/dcr", body(&unreachable), None)
        .await
        .error(422, "discovery_failed");
    server.stop().await;
}
