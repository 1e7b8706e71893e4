//! The pages' HTTP rules through the whole app with `oneshot`: security headers, CSRF,
//! redirects for visitors, HTML escaping.

use askama::Template;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::views::{ClientView, Clients, Layout};
use crate::idp::HttpTimeouts;
use crate::service::test_support::flaky_state;

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
