//! A developer in the portal's JSON API: signs up or logs in, keeps the session cookie, and
//! sends JSON requests the way the portal pages do.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::ControlPlane;

/// A developer's session with the portal API.
#[derive(Debug)]
pub struct PortalSession {
    base: String,
    cookie: String,
    http: reqwest::Client,
}

/// A portal answer.
#[derive(Debug)]
pub struct PortalAnswer {
    /// The status.
    pub status: StatusCode,
    /// The JSON body (`Null` when empty).
    pub body: Value,
}

impl PortalSession {
    /// Signs a new developer up (and in), panicking unless it answers 201.
    pub async fn sign_up(control_plane: &ControlPlane, email: &str, password: &str) -> Self {
        Self::enter(
            control_plane,
            "/signup",
            json!({"email": email, "name": "Ada Lovelace", "password": password}),
            StatusCode::CREATED,
        )
        .await
    }

    /// The session cookie's value (the part after `portico_session=`), a credential.
    pub fn session_id(&self) -> &str {
        self.cookie.split_once('=').map_or("", |(_, value)| value)
    }

    /// Logs a developer in, panicking unless it answers 200.
    pub async fn log_in(control_plane: &ControlPlane, email: &str, password: &str) -> Self {
        Self::enter(
            control_plane,
            "/login",
            json!({"email": email, "password": password}),
            StatusCode::OK,
        )
        .await
    }

    async fn enter(
        control_plane: &ControlPlane,
        path: &str,
        body: Value,
        expected: StatusCode,
    ) -> Self {
        let base = control_plane.url("/portal/api/v1");
        let http = reqwest::Client::new();
        let response = http
            .post(format!("{base}{path}"))
            .json(&body)
            .send()
            .await
            .expect("an answer from the portal");
        let status = response.status();
        let cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .unwrap_or_default()
            .to_owned();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, expected, "POST {path}: {answer}");
        assert!(cookie.starts_with("portico_session="), "a session cookie");
        PortalSession { base, cookie, http }
    }

    /// Sends a request (JSON when `body` is given; state-changing requests always say JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> PortalAnswer {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("cookie", &self.cookie);
        if method != Method::GET {
            request = request.header("content-type", "application/json");
        }
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("an answer from the portal");
        let status = response.status();
        PortalAnswer {
            status,
            body: response.json().await.unwrap_or(Value::Null),
        }
    }

    /// Registers a client for catalogue entries with a fresh idempotency key (`key`).
    pub async fn register(&self, key: &str, body: &Value) -> PortalAnswer {
        self.call(
            Method::POST,
            "/oauth-clients",
            Some(body),
            &[("idempotency-key", key)],
        )
        .await
    }
}
