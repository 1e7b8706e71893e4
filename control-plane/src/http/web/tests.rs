//! The pages' HTTP rules through the whole app with `oneshot`: security headers, CSRF,
//! redirects for visitors, HTML escaping.

use askama::Template;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::views::{ClientView, Clients, Layout, UsageChart};
use crate::idp::HttpTimeouts;
use crate::service::test_support::flaky_state;
use crate::service::usage::{ClientUsageView, UsageCounts};

async fn send(
    app: &axum::Router,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn get(path: &str) -> Request<Body> {
    Request::builder().uri(path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn every_page_forbids_scripts_framing_and_caching() {
    let (state, _store, _clock, _dir) = flaky_state("http://portico.test", HttpTimeouts::default());
    let app = crate::http::app(state);
    for path in ["/portal", "/portal/login", "/portal/signup"] {
        let (status, headers, body) = send(&app, get(path)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            super::CONTENT_SECURITY_POLICY
        );
        assert!(!super::CONTENT_SECURITY_POLICY.contains("script-src"));
        assert!(super::CONTENT_SECURITY_POLICY.starts_with("default-src 'none'"));
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert!(!body.contains("<script"), "{path} has no script");
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path} loads nothing from elsewhere"
        );
    }
}

#[tokio::test]
async fn visitors_are_sent_to_log_in_and_forms_without_the_token_are_refused() {
    let (state, _store, _clock, _dir) = flaky_state("http://portico.test", HttpTimeouts::default());
    let app = crate::http::app(state);
    for path in [
        "/portal/catalogue",
        "/portal/clients",
        "/portal/clients/new",
        "/portal/profile",
    ] {
        let (status, headers, _) = send(&app, get(path)).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(headers[header::LOCATION], "/portal/login");
    }
    for path in [
        "/portal/clients/cli_1/renew",
        "/portal/clients/cli_1/rotate",
    ] {
        let form = Request::builder()
            .method("POST")
            .uri(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("csrf=whatever"))
            .unwrap();
        let (status, headers, _) = send(&app, form).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(headers[header::LOCATION], "/portal/login");
    }
    let (_, headers, _) = send(&app, get("/portal/login")).await;
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.starts_with("portico_csrf=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let seed = cookie.split(';').next().unwrap().to_owned();
    let forged = Request::builder()
        .method("POST")
        .uri("/portal/login")
        .header(header::COOKIE, &seed)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(
            "csrf=forged&email=a%40b.example&password=whatever-it-is",
        ))
        .unwrap();
    let (status, _, body) = send(&app, forged).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("csrf"), "{body}");
}

#[test]
fn client_names_are_escaped_as_text() {
    let page = Clients {
        layout: Layout {
            portal_name: "Portal <b>".to_owned(),
            developer_name: Some("Ada".to_owned()),
            csrf: "token".to_owned(),
            has_logo: true,
        },
        clients: vec![ClientView {
            id: "cli_1".to_owned(),
            client_name: "<script>alert(1)</script>".to_owned(),
            client_id: "c\"id".to_owned(),
            state: "Active",
            created_at: "2026-11-30T00:00:00Z".to_owned(),
            access: "Expires in 1 day (<soon>)".to_owned(),
            expired: false,
        }],
    };
    let html = page.render().unwrap();
    assert!(
        html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{html}"
    );
    assert!(!html.contains("<script>"));
    assert!(html.contains("Portal &#60;b&#62;"));
    assert!(html.contains("Expires in 1 day (&#60;soon&#62;)"), "{html}");
    assert!(!html.contains("c\"id"));
}

/// A state with an `orders` entry listed in the portal (DCR on, explicit endpoints), and the
/// session cookie of a developer who signed up through the portal API.
async fn portal_with_entry() -> (
    axum::Router,
    crate::service::AppState,
    String,
    tempfile::TempDir,
) {
    use crate::service::Precondition;
    use crate::service::test_support::ops;
    fn from<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
        serde_json::from_value(value).unwrap()
    }
    let (state, _store, _clock, dir) = flaky_state("http://portico.test", HttpTimeouts::default());
    let idp = "https://idp.example.com";
    crate::service::test_support::seed_orders(&state, idp, "Place orders.").await;
    state
        .dcr()
        .put_global(
            &ops(),
            &Precondition::Any,
            from(serde_json::json!({"enabled": true, "issuer": idp,
                                    "registration_endpoint": format!("{idp}/reg"),
                                    "token_endpoint": format!("{idp}/token")})),
        )
        .await
        .unwrap();
    let app = crate::http::app(state.clone());
    let signup = Request::builder()
        .method("POST")
        .uri("/portal/api/v1/signup")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            r#"{"email": "ada@example.com", "name": "Ada", "password": "correct horse battery"}"#,
        ))
        .unwrap();
    let (status, headers, body) = send(&app, signup).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let cookie = headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    (app, state, cookie, dir)
}

fn get_with(path: &str, cookie: &str) -> Request<Body> {
    Request::builder()
        .uri(path)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn an_api_page_shows_its_openapi_document_escaped_with_curl_examples() {
    use crate::service::Precondition;
    use crate::service::api_docs::document::DocumentFormat;
    use crate::service::test_support::ops;
    let (app, state, cookie, _dir) = portal_with_entry().await;
    let (_, _, before) = send(&app, get_with("/portal/catalogue/orders", &cookie)).await;
    assert!(before.contains("Place orders."));
    assert!(!before.contains("API reference"), "no document yet");

    let document = "openapi: 3.0.3
info: {title: Orders API, version: '1.0'}
paths:
  /orders/{id}:
    get:
      summary: <script>alert(1)</script> Read an order
      parameters: [{name: id, in: path, required: true, schema: {type: integer}}]
      responses: {'200': {description: The order}}
";
    state
        .api_docs()
        .put(
            &ops(),
            "orders",
            &Precondition::Missing,
            DocumentFormat::Yaml,
            document.as_bytes(),
        )
        .await
        .unwrap();
    let (status, _, html) = send(&app, get_with("/portal/catalogue/orders", &cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("API reference: Orders API"), "{html}");
    assert!(
        html.contains(r#"<span class="method">GET</span> <code class="path">/orders/{id}</code>"#),
        "{html}"
    );
    assert!(
        html.contains("&#60;script&#62;alert(1)&#60;/script&#62; Read an order"),
        "{html}"
    );
    assert!(!html.contains("<script>"));
    assert!(
        html.contains(
            "curl -H &#34;Authorization: Bearer $ACCESS_TOKEN&#34; &#34;$GATEWAY/orders/{id}&#34;"
        ),
        "{html}"
    );
    assert!(
        html.contains("You have no client for this API yet"),
        "{html}"
    );
}

#[tokio::test]
async fn a_stored_document_that_no_longer_reads_leaves_the_description_alone() {
    use crate::store::{Tree, Write};
    let (app, state, cookie, _dir) = portal_with_entry().await;
    let broken = serde_json::json!({
        "revision": 1,
        "value": {
            "summary": {"catalogue_entry": "orders", "media_type": "application/yaml",
                        "openapi": "3.1.0", "title": "T", "version": "1", "operations": 0,
                        "bytes": 3, "sha256": "00"},
            "text": "a: [",
        },
    });
    state
        .store()
        .write_unversioned(&[Write::put(
            Tree::CatalogueOpenapi,
            "orders",
            serde_json::to_vec(&broken).unwrap(),
        )])
        .unwrap();
    let (status, _, html) = send(&app, get_with("/portal/catalogue/orders", &cookie)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Place orders."));
    assert!(!html.contains("API reference"));
}

#[tokio::test]
async fn a_log_in_goes_only_to_the_portal_whatever_the_request_asks() {
    let (state, _store, _clock, _dir) = flaky_state("http://portico.test", HttpTimeouts::default());
    state
        .developers()
        .create(
            &crate::service::test_support::ops(),
            crate::service::developers::NewDeveloper {
                email: "ada@example.com".to_owned(),
                name: "Ada".to_owned(),
                password: crate::secret::Secret::new("correct horse battery"),
            },
        )
        .await
        .unwrap();
    let app = crate::http::app(state);
    let hostile = "next=https%3A%2F%2Fevil.example%2F&redirect_uri=%2F%2Fevil.example&return_to=https:evil.example";
    let (_, headers, page) = send(&app, get(&format!("/portal/login?{hostile}"))).await;
    let seed = headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the form's CSRF token");
    assert!(!page.contains("evil.example"), "the page carries no target");
    let form = Request::builder()
        .method("POST")
        .uri(format!("/portal/login?{hostile}"))
        .header(header::COOKIE, &seed)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "csrf={csrf}&email=ada%40example.com&password=correct+horse+battery&{hostile}"
        )))
        .unwrap();
    let (status, headers, _) = send(&app, form).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/portal/catalogue");
}

fn day(start: &str, allowed: u64, refused: u64) -> UsageCounts {
    UsageCounts {
        start: start.to_owned(),
        allowed,
        refused: std::collections::BTreeMap::from([("quota_exceeded".to_owned(), refused)]),
    }
}

#[test]
fn the_usage_chart_stacks_refusals_on_allowed_requests_scaled_to_the_busiest_day() {
    let chart = UsageChart::new(&[
        day("2026-11-28T00:00:00Z", 0, 0),
        day("2026-11-29T00:00:00Z", 30, 10),
        day("2026-11-30T00:00:00Z", 60, 0),
    ]);
    assert_eq!((chart.busiest, chart.allowed, chart.refused), (60, 90, 10));
    let slot = UsageChart::WIDTH / 3;
    let heights: Vec<_> = chart
        .bars
        .iter()
        .map(|bar| (bar.x, bar.allowed_height, bar.refused_height))
        .collect();
    assert_eq!(heights, [(0, 0, 0), (slot, 60, 20), (2 * slot, 120, 0)]);
    let middle = &chart.bars[1];
    assert_eq!(middle.allowed_y, UsageChart::HEIGHT - 60);
    assert_eq!(middle.refused_y, UsageChart::HEIGHT - 80);
    assert_eq!(middle.title, "2026-11-29: 30 allowed, 10 refused");
    // Nothing at all: flat bars, no division by zero.
    let empty = UsageChart::new(&[day("2026-11-30T00:00:00Z", 0, 0)]);
    assert_eq!(empty.bars[0].allowed_height, 0);
    // Huge counts stay within the chart.
    let huge = UsageChart::new(&[day("2026-11-30T00:00:00Z", u64::MAX, u64::MAX)]);
    assert!(huge.bars[0].allowed_height + huge.bars[0].refused_height <= UsageChart::HEIGHT);
}

#[test]
fn the_last_thirty_days_are_all_shown_oldest_first_with_empty_days_at_zero() {
    let view = ClientUsageView {
        client: "cli_1".to_owned(),
        hourly: Vec::new(),
        daily: vec![day("2026-11-29T00:00:00Z", 5, 1)],
        total: UsageCounts::default(),
    };
    // 2026-11-30T12:00:00Z
    let days = view.last_days(1_796_040_000, 30);
    assert_eq!(days.len(), 30);
    assert_eq!(days[29].start, "2026-11-30T00:00:00Z");
    assert_eq!(days[28].allowed, 5);
    assert_eq!(days[0].start, "2026-11-01T00:00:00Z");
    assert!(days.iter().filter(|day| day.allowed > 0).count() == 1);
}
