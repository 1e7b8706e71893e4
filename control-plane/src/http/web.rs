//! The developer portal's web pages under `/portal`: server-rendered HTML (askama templates in
//! `control-plane/templates/`) that works without JavaScript, with its stylesheet and logo
//! served from the binary.
//!
//! Every page goes through [`visit`], which:
//! - resolves the `portico_session` cookie to the signed-in developer (if any);
//! - keeps a random `portico_csrf` cookie, from which (with the session id) the CSRF token of
//!   every form is derived: a `POST` whose `csrf` field does not match is refused with 403
//!   ([`Visit::check`]);
//! - sets the security headers: a `Content-Security-Policy` that allows nothing but this
//!   origin's stylesheet and images (no script at all, no other origin, no framing),
//!   `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`
//!   and `Cache-Control: no-store`.
//!
//! Handlers are thin: they call the services and render [`views`]; the presentation of
//! commands and limits is in [`super::present`].

pub mod account;
pub mod catalogue;
pub mod clients;
pub mod views;

use askama::Template;
use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::service::AppState;
use crate::service::developers::Developer;

/// The CSRF cookie's name.
pub const CSRF_COOKIE: &str = "portico_csrf";

/// The Content-Security-Policy of every page.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLESHEET: &str = include_str!("../../assets/portal.css");
const DEFAULT_LOGO: &str = include_str!("../../assets/logo.svg");

/// The pages and their assets, with the [`visit`] layer.
pub fn router(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/portal") }))
        .route("/portal/assets/portal.css", get(stylesheet))
        .route("/portal/assets/logo", get(logo))
        .merge(account::router())
        .merge(catalogue::router())
        .merge(clients::router())
        .layer(middleware::from_fn_with_state(state.clone(), visit))
}

/// Who is visiting: the signed-in developer (if any), the session id and the CSRF seed.
#[derive(Debug, Clone)]
pub struct Visit {
    /// The signed-in developer.
    pub developer: Option<Developer>,
    /// The session id from the cookie (live or not).
    pub session: Option<String>,
    seed: String,
}

impl Visit {
    /// The CSRF token of this visit's forms: SHA-256 of the CSRF cookie and the session id,
    /// base64url.
    pub fn csrf(&self) -> String {
        csrf_token(&self.seed, self.session.as_deref())
    }

    /// 403 `csrf` unless `token` is this visit's CSRF token.
    pub fn check(&self, token: &str) -> Result<(), ApiError> {
        if bool::from(self.csrf().as_bytes().ct_eq(token.as_bytes())) {
            Ok(())
        } else {
            Err(ApiError::Csrf)
        }
    }
}

fn csrf_token(seed: &str, session: Option<&str>) -> String {
    let mut digest = Sha256::new();
    digest.update(b"portico-csrf\0");
    digest.update(seed.as_bytes());
    digest.update(b"\0");
    digest.update(session.unwrap_or_default().as_bytes());
    URL_SAFE_NO_PAD.encode(digest.finalize())
}

impl<S: Send + Sync> FromRequestParts<S> for Visit {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Visit>()
            .cloned()
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a page without its visit layer")))
    }
}

/// A signed-in developer, or a redirect to the log-in page.
#[derive(Debug, Clone)]
pub struct Member(pub Developer, pub Visit);

impl<S: Send + Sync> FromRequestParts<S> for Member {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let visit = Visit::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        match visit.developer.clone() {
            Some(developer) => Ok(Member(developer, visit)),
            None => Err(Redirect::to("/portal/login").into_response()),
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// Resolves the visit, runs the page, and adds the CSRF cookie and the security headers.
pub async fn visit(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let session = super::portal::session_cookie(request.headers());
    let developer = session
        .as_deref()
        .and_then(|id| match state.portal().session(id) {
            Ok(developer) => Some(developer),
            Err(ApiError::Unauthenticated) => None,
            Err(error) => {
                tracing::warn!(%error, "could not read a portal session");
                None
            }
        });
    let existing = cookie(request.headers(), CSRF_COOKIE)
        .filter(|seed| seed.len() <= 64 && seed.bytes().all(|b| b.is_ascii_graphic()));
    let seed = match existing.clone() {
        Some(seed) => seed,
        None => match crate::service::random_id("") {
            Ok(seed) => seed,
            Err(error) => return error.into_response(),
        },
    };
    request.extensions_mut().insert(Visit {
        developer,
        session,
        seed: seed.clone(),
    });
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if existing.is_none() {
        let secure = if state.settings().public_base_url.starts_with("https://") {
            "; Secure"
        } else {
            ""
        };
        if let Ok(value) = HeaderValue::from_str(&format!(
            "{CSRF_COOKIE}={seed}; HttpOnly; SameSite=Lax; Path=/portal{secure}"
        )) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// A rendered page with a status (askama escapes every value as HTML).
pub fn page(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(error) => {
            ApiError::Internal(anyhow::anyhow!("rendering a page: {error}")).into_response()
        }
    }
}

/// A page that says what went wrong, with a link back.
pub fn message(visit: &Visit, state: &AppState, error: &ApiError, back: &str) -> Response {
    let heading = match error.status() {
        StatusCode::NOT_FOUND => "Not found",
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::TOO_MANY_REQUESTS => "Too many requests",
        status if status.is_server_error() => "Something went wrong",
        _ => "That did not work",
    };
    page(
        error.status(),
        &views::Message {
            layout: views::Layout::new(state, visit),
            heading,
            message: error.body().message,
            back: back.to_owned(),
        },
    )
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLESHEET,
    )
}

async fn logo(State(state): State<AppState>) -> Response {
    match &state.settings().portal.logo {
        Some(logo) => (
            [(header::CONTENT_TYPE, logo.content_type)],
            logo.bytes.clone(),
        )
            .into_response(),
        None => ([(header::CONTENT_TYPE, "image/svg+xml")], DEFAULT_LOGO).into_response(),
    }
}

#[cfg(test)]
mod tests;
