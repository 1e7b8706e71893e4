//! The developer portal in a real browser (headless Chromium from Debian), against the real
//! system: the IdP (`oidc-provider`), the `portico` binary and Envoy with the filter. A
//! developer signs up, creates a client in the wizard, reads the credentials from the page,
//! gets a token from the IdP and calls the API through Envoy; sees validation errors; sees the
//! time left on the client's access and renews it; rotates the secret (the old one stops
//! working); deletes the client (its token stops working at Envoy). The API's page shows the
//! OpenAPI document the operator attached, with a curl call per operation and the token step of
//! the developer's client. With self sign-up switched off, the sign-up page says so and offers
//! no form. Every page is checked with axe-core (no serious or critical violation), at 375 px
//! as well, and screenshotted to
//! `test-artifacts/portal/`.

use portico_tests::{Browser, Journey};
use reqwest::Method;

const PASSWORD: &str = "correct horse battery staple";

/// The API reference the operator attaches to the `orders` entry.
const ORDERS_OPENAPI: &str = "openapi: 3.1.0
info:
  title: Orders API
  version: 1.4.0
  description: Read and place the shop's orders.
tags:
  - name: orders
    description: The shop's orders
paths:
  /orders/{id}:
    get:
      tags: [orders]
      summary: Read an order
      parameters:
        - {name: id, in: path, required: true, schema: {type: integer, format: int64}}
      responses:
        200:
          description: The order
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Order'}
        404: {description: No such order}
  /orders:
    post:
      tags: [orders]
      summary: Place an order
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [sku]
              properties:
                sku: {type: string, description: The item to order}
                quantity: {type: integer, default: 1}
      responses:
        201: {description: Placed}
components:
  schemas:
    Order:
      type: object
      required: [id, state]
      properties:
        id: {type: integer, format: int64}
        state: {type: string, enum: [placed, shipped]}
        note: {type: [string, 'null']}
";

#[tokio::test]
async fn a_developer_signs_up_creates_a_client_calls_the_api_rotates_and_deletes_it_in_the_browser()
{
    let journey = Journey::start(&[("PORTICO_PORTAL_NAME", "Acme developer portal")]).await;
    journey.operator_sets_up().await;
    // Access through the catalogue lasts 30 days, and developers renew it here (issue 9).
    journey
        .control_plane
        .replace(
            "/policies/orders-read",
            serde_json::json!({"name": "Orders", "access_rights": [{"api": "orders"}],
                               "rate_limit": {"requests": 20, "per_seconds": 10},
                               "lifetime_seconds": 30 * 86_400}),
        )
        .await;
    journey
        .control_plane
        .replace(
            "/catalogue/orders",
            serde_json::json!({"name": "Orders API",
                               "description": "Read and place orders for the shop.",
                               "policy": "orders-read", "renewable": true}),
        )
        .await;
    let attached = journey
        .control_plane
        .admin_raw(
            Method::PUT,
            "/catalogue/orders/openapi",
            "application/yaml",
            ORDERS_OPENAPI,
            None,
        )
        .await;
    assert_eq!(attached.status, 201, "{:?}", attached.body);
    let base = journey.control_plane.url("");
    let browser = Browser::start("portal", 1024, 900).await;

    // Visitor: the front page and the sign-up form.
    browser.open(&format!("{base}/")).await;
    assert_eq!(browser.path().await, "/portal");
    assert!(browser.page_text().await.contains("Acme developer portal"));
    browser.check_page("01-home").await;
    browser.click("a.button[href='/portal/signup']").await;
    browser.fill("#name", "Ada Lovelace").await;
    browser.fill("#email", "ada@example.com").await;
    browser.fill("#password", "short").await;
    browser.click("main form button[type=submit]").await;
    assert!(
        browser
            .text("#password-error")
            .await
            .contains("at least 12")
    );
    assert_eq!(
        browser
            .client
            .find(fantoccini::Locator::Css("#email"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("ada@example.com"),
        "what was typed is kept"
    );
    browser.check_page("02-signup-error").await;
    browser.fill("#password", PASSWORD).await;
    browser.click("main form button[type=submit]").await;

    // The catalogue and the API's page.
    assert_eq!(browser.path().await, "/portal/catalogue");
    browser.check_page("03-catalogue").await;
    browser.click("a[href='/portal/catalogue/orders']").await;
    let api_page = browser.page_text().await;
    assert!(
        api_page.contains("20 requests per 10 seconds"),
        "{api_page}"
    );
    assert!(
        api_page.contains("Access lasts 30 days from registration; renew it here"),
        "{api_page}"
    );
    assert!(api_page.contains("API reference: Orders API"), "{api_page}");
    assert!(api_page.contains("You have no client for this API yet"));
    browser.check_page("04-api").await;

    // The wizard: choose the API, then name the client.
    browser.open(&format!("{base}/portal/clients/new")).await;
    browser.check_page("05-choose-api").await;
    browser.click("a[href='/portal/clients/new/orders']").await;
    browser.check_page("06-new-client").await;
    browser.fill("#client_name", "   ").await;
    browser.click("main form button[type=submit]").await;
    let page = browser.page_text().await;
    assert!(page.contains("must not be empty"), "{page}");
    browser
        .fill("#client_name", "<script>alert(1)</script> Ada's app")
        .await;
    browser
        .fill(
            "#redirect_uris",
            "https://app.example.com/cb\nhttp://evil.example/cb",
        )
        .await;
    browser.click("main form button[type=submit]").await;
    let error = browser.text("#redirect_uris-error").await;
    assert!(
        error.contains("Line 2") && error.contains("https"),
        "{error}"
    );
    browser.check_page("07-new-client-errors").await;
    browser
        .fill("#redirect_uris", "https://app.example.com/cb")
        .await;
    browser.click("main form button[type=submit]").await;

    // The result: the credentials, read from the page, work.
    assert!(browser.page_text().await.contains("Client created"));
    browser.check_page("08-client-created").await;
    let client_id = browser.text("#client-id").await;
    let secret = browser.text("#client-secret").await;
    assert!(!client_id.is_empty() && !secret.is_empty());
    assert!(browser.text("#token-request").await.contains(&secret));
    let (status, token) = journey.idp.token(&client_id, &secret).await;
    assert_eq!(status, 200, "{token}");
    let token = token["access_token"].as_str().unwrap().to_owned();
    journey
        .await_status(
            "the new client's call to pass",
            "/orders/1",
            &token,
            200,
            None,
        )
        .await;

    // The API's reference, now with the developer's client for the token step.
    browser
        .open(&format!("{base}/portal/catalogue/orders"))
        .await;
    assert_eq!(
        browser.text("#client option[selected]").await,
        format!("<script>alert(1)</script> Ada's app ({client_id})")
    );
    let token_step = browser.text("#doc-token-request").await;
    assert!(
        token_step.contains(&format!("client_id={client_id}"))
            && token_step.contains("client_secret=<client_secret>"),
        "{token_step}"
    );
    assert!(!browser.page_text().await.contains(&secret));
    let read = browser.text("#op-0-0").await;
    assert!(
        read.contains("GET /orders/{id}") && read.contains("Read an order"),
        "{read}"
    );
    assert!(
        read.contains("id in path integer (int64) required"),
        "{read}"
    );
    assert!(
        read.contains("state string, one of: \"placed\", \"shipped\" required"),
        "{read}"
    );
    assert!(read.contains("note string or null"), "{read}");
    assert_eq!(
        browser.text("#op-0-0 .operation-call").await,
        "curl -H \"Authorization: Bearer $ACCESS_TOKEN\" \"$GATEWAY/orders/{id}\""
    );
    assert_eq!(
        browser.text("#op-0-1 .operation-call").await,
        "curl -X POST -H \"Authorization: Bearer $ACCESS_TOKEN\" -H 'Content-Type: application/json' \
         -d '{\"quantity\":1,\"sku\":\"string\"}' \"$GATEWAY/orders\""
    );
    browser.check_page("08b-api-reference").await;
    browser.scroll_to("#op-0-0").await;
    browser.screenshot("08c-api-operations").await;
    browser.open(&format!("{base}/portal/clients")).await;

    // The list and the client's page: the name is text, the secret is not shown again.
    browser.click("td a[href^='/portal/clients/cli_']").await;
    let client_page = browser.page_text().await;
    assert!(client_page.contains("<script>alert(1)</script> Ada's app"));
    assert!(
        !client_page.contains(&secret),
        "the secret is shown only once"
    );
    let access = browser.text("#access").await;
    assert!(
        access.starts_with("Expires in 29 days 23 hours")
            || access.starts_with("Expires in 30 days"),
        "{access}"
    );
    browser.check_page("09-client").await;

    // Renew the access: a form with the CSRF token, back to the client's page.
    let client_path = browser.path().await;
    browser.click("form[action$='/renew'] button").await;
    assert_eq!(browser.path().await, client_path);
    let renewed = browser.text("#access").await;
    assert!(renewed.starts_with("Expires in"), "{renewed}");
    browser.check_page("09b-client-renewed").await;
    browser.open(&format!("{base}/portal/clients")).await;
    browser.check_page("10-clients").await;

    // Rotate: the old secret stops working, the new one works.
    browser.click("td a[href^='/portal/clients/cli_']").await;
    browser.click("form[action$='/rotate'] button").await;
    assert!(browser.page_text().await.contains("New client secret"));
    browser.check_page("11-rotated").await;
    let rotated_id = browser.text("#client-id").await;
    let rotated_secret = browser.text("#client-secret").await;
    assert_ne!(rotated_secret, secret);
    let (status, refused) = journey.idp.token(&client_id, &secret).await;
    assert_eq!(status, 401, "the old secret is refused: {refused}");
    let (status, fresh) = journey.idp.token(&rotated_id, &rotated_secret).await;
    assert_eq!(status, 200, "{fresh}");
    let fresh = fresh["access_token"].as_str().unwrap().to_owned();
    journey
        .await_status(
            "the rotated client's call to pass",
            "/orders/1",
            &fresh,
            200,
            None,
        )
        .await;

    // Delete, with a confirmation step: the token stops working at Envoy.
    browser
        .click("a.button[href^='/portal/clients/cli_']")
        .await;
    browser.click("a.danger").await;
    browser.check_page("12-confirm-delete").await;
    browser.click("main form button.danger").await;
    assert_eq!(browser.path().await, "/portal/clients");
    journey
        .await_status(
            "the deleted client's token to be refused",
            "/orders/1",
            &fresh,
            401,
            Some("client_revoked"),
        )
        .await;

    // The profile, then every page again at 375 px wide.
    browser.open(&format!("{base}/portal/profile")).await;
    browser.check_page("13-profile").await;
    browser.resize(375, 800).await;
    for (name, path) in [
        ("14-mobile-catalogue", "/portal/catalogue"),
        ("15-mobile-api", "/portal/catalogue/orders"),
        ("16-mobile-new-client", "/portal/clients/new/orders"),
        ("17-mobile-clients", "/portal/clients"),
        ("18-mobile-profile", "/portal/profile"),
    ] {
        browser.open(&format!("{base}{path}")).await;
        browser.check_page(name).await;
    }

    // Log out: the pages send the browser to log in; logging in works again.
    browser.click("form[action='/portal/logout'] button").await;
    assert_eq!(browser.path().await, "/portal/login");
    browser.check_page("19-mobile-login").await;

    // Sign-up switched off: the page says so and offers no form.
    journey
        .control_plane
        .replace("/portal", serde_json::json!({"self_signup": false}))
        .await;
    browser.open(&format!("{base}/portal/signup")).await;
    let closed = browser.page_text().await;
    assert!(
        closed.contains("Sign-up is closed on this portal"),
        "{closed}"
    );
    assert!(
        browser
            .client
            .find(fantoccini::Locator::Css("main form"))
            .await
            .is_err(),
        "no sign-up form is offered"
    );
    browser.check_page("20-mobile-signup-closed").await;
    browser.open(&format!("{base}/portal/clients")).await;
    assert_eq!(browser.path().await, "/portal/login");
    browser.fill("#email", "ada@example.com").await;
    browser.fill("#password", PASSWORD).await;
    browser.click("main form button[type=submit]").await;
    assert_eq!(browser.path().await, "/portal/catalogue");
    browser.close().await;
}
