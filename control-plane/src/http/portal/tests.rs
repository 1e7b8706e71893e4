//! The portal's HTTP rules, driven through the whole app with `oneshot`: cookie attributes,
//! the same-origin JSON rule, sessions, the idempotency header.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::idp::HttpTimeouts;
use crate::service::test_support::flaky_state;

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

async fn send(app: &axum::Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

fn post(path: &str, body: &Value, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::builder()
        .method("POST")
        .uri(format!("{BASE}{path}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::from(body.to_string())).unwrap()
}

const JSON: (&str, &str) = ("content-type", "application/json");

fn sign_up_body() -> Value {
    json!({"email": "ada@example.com", "name": "Ada", "password": "correct horse battery"})
}

fn app_at(base_url: &str) -> (axum::Router, tempfile::TempDir) {
    let (state, _store, _clock, dir) = flaky_state(base_url, HttpTimeouts::default());
    (crate::http::app(state), dir)
}

fn cookie_of(answer: &Answer) -> String {
    answer.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_session_cookie_is_http_only_lax_for_the_whole_site_and_secure_on_https() {
    let (app, _dir) = app_at("http://portico.test");
    let answer = send(&app, post("/signup", &sign_up_body(), &[JSON])).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let cookie = cookie_of(&answer);
    assert!(cookie.starts_with("portico_session="), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(!cookie.contains("Secure"));
    assert_eq!(answer.body["email"], "ada@example.com");
    assert!(answer.body.get("password_hash").is_none());

    let (app, _dir) = app_at("https://portal.example.com");
    let answer = send(&app, post("/signup", &sign_up_body(), &[JSON])).await;
    assert!(cookie_of(&answer).ends_with("; Secure"));
}

#[tokio::test]
async fn the_session_cookie_opens_the_private_routes_until_log_out() {
    let (app, _dir) = app_at("http://portico.test");
    let answer = send(&app, post("/signup", &sign_up_body(), &[JSON])).await;
    let cookie = cookie_of(&answer);
    let session = cookie.split(';').next().unwrap().to_owned();
    let me = |session: String| {
        Request::builder()
            .uri(format!("{BASE}/me"))
            .header(header::COOKIE, format!("theme=dark; {session}"))
            .body(Body::empty())
            .unwrap()
    };
    let answer = send(&app, me(session.clone())).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["email"], "ada@example.com");

    let logout = send(
        &app,
        post("/logout", &json!({}), &[JSON, ("cookie", session.as_str())]),
    )
    .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    assert!(cookie_of(&logout).contains("Max-Age=0"));
    let answer = send(&app, me(session)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.body["error"], "unauthenticated");
}

#[tokio::test]
async fn state_changing_requests_must_be_json_and_come_from_the_portal_origin() {
    let (app, _dir) = app_at("http://portico.test:8080/base");
    let form = send(
        &app,
        post(
            "/login",
            &json!({}),
            &[("content-type", "application/x-www-form-urlencoded")],
        ),
    )
    .await;
    assert_eq!(form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(form.body["error"], "unsupported_media_type");
    let no_type = send(&app, post("/logout", &json!({}), &[])).await;
    assert_eq!(no_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    for origin in ["https://evil.example.com", "null", "http://portico.test"] {
        let cross = send(
            &app,
            post("/signup", &sign_up_body(), &[JSON, ("origin", origin)]),
        )
        .await;
        assert_eq!(cross.status, StatusCode::FORBIDDEN, "{origin}");
        assert_eq!(cross.body["error"], "forbidden_origin");
    }
    let same = send(
        &app,
        post(
            "/signup",
            &sign_up_body(),
            &[JSON, ("origin", "http://portico.test:8080")],
        ),
    )
    .await;
    assert_eq!(same.status, StatusCode::CREATED, "{}", same.body);
    let without_origin = send(
        &app,
        post(
            "/login",
            &json!({"email": "ada@example.com", "password": "correct horse battery"}),
            &[JSON],
        ),
    )
    .await;
    assert_eq!(without_origin.status, StatusCode::OK);
}

#[tokio::test]
async fn wrong_credentials_are_401_and_repeated_ones_429_with_retry_after() {
    let (app, _dir) = app_at("http://portico.test");
    send(&app, post("/signup", &sign_up_body(), &[JSON])).await;
    let wrong = json!({"email": "ada@example.com", "password": "wrong password!"});
    for _ in 0..crate::service::portal::FREE_FAILURES {
        let answer = send(&app, post("/login", &wrong, &[JSON])).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.body["error"], "invalid_credentials");
        assert!(answer.headers.get(header::SET_COOKIE).is_none());
    }
    let answer = send(&app, post("/login", &wrong, &[JSON])).await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(answer.body["error"], "too_many_attempts");
    assert_eq!(answer.headers[header::RETRY_AFTER], "1");
}

#[tokio::test]
async fn creating_a_client_needs_an_idempotency_key() {
    let (app, _dir) = app_at("http://portico.test");
    let answer = send(&app, post("/signup", &sign_up_body(), &[JSON])).await;
    let cookie = cookie_of(&answer);
    let session = cookie.split(';').next().unwrap();
    let body = json!({"catalogue_entries": ["orders"], "client_name": "App"});
    let answer = send(
        &app,
        post("/oauth-clients", &body, &[JSON, ("cookie", session)]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.body["field"], "Idempotency-Key");
    let answer = send(
        &app,
        post(
            "/oauth-clients",
            &body,
            &[JSON, ("cookie", session), ("idempotency-key", "form-1")],
        ),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.body
    );
    assert_eq!(answer.body["error"], "unprocessable_reference");
}
