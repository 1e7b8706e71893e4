//! The developer portal's JSON API under `/portal/api/v1`: accounts and sessions, the
//! catalogue, and developers' OAuth clients. `docs/portal-api.md` is the guide; it follows.
//!
//! Two layers guard it:
//! - [`same_origin_json`] on every portal route: a state-changing request (`POST`, `PUT`,
//!   `PATCH`, `DELETE`) must say `Content-Type: application/json` (a cross-site HTML form cannot)
//!   and, when it carries an `Origin` header, come from the public base URL's origin.
//! - [`require_session`] on every route but sign-up, log-in and log-out: the `portico_session`
//!   cookie must name a live session of an active developer, who is put in the request as
//!   [`SignedIn`].
//!
#![doc = include_str!("../../../docs/portal-api.md")]

pub mod account;
pub mod catalogue;
pub mod oauth_clients;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;
use crate::http::extract::is_json;
use crate::service::AppState;
use crate::service::developers::Developer;
use crate::service::portal::SESSION_COOKIE;

/// The name of the session-cookie security scheme in the OpenAPI document.
pub const SECURITY_SCHEME: &str = "portal_session";

/// The base path of the portal API.
pub const BASE: &str = "/portal/api/v1";

/// The routes that need no session.
fn public() -> OpenApiRouter<AppState> {
    account::public_router()
}

/// The routes that need a session.
fn private() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(account::private_router())
        .merge(catalogue::router())
        .merge(oauth_clients::router())
}

/// Every portal route, without its layers (for the OpenAPI document).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().merge(public()).merge(private())
}

/// Every portal route with its layers: sessions where needed, the same-origin JSON rule
/// everywhere.
pub fn guarded_router(state: &AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(public())
        .merge(private().route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_session,
        )))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            same_origin_json,
        ))
}

/// Refuses state-changing requests that are not JSON (415) or come from another origin (403);
/// every answer says `Cache-Control: no-store`.
pub async fn same_origin_json(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !safe {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        if let Some(origin) = request.headers().get(header::ORIGIN) {
            let expected = origin_of(&state.settings().public_base_url);
            let sent = origin.to_str().unwrap_or_default();
            if sent != expected {
                return Err(ApiError::ForbiddenOrigin(sent.to_owned(), expected));
            }
        }
    }
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Puts the session's developer in the request; 401 `unauthenticated` without a live session.
pub async fn require_session(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let id = session_cookie(request.headers()).ok_or(ApiError::Unauthenticated)?;
    let developer = state.portal().session(&id)?;
    request.extensions_mut().insert(SignedIn(developer));
    Ok(next.run(request).await)
}

/// The signed-in developer, put in the request by [`require_session`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn(pub Developer);

impl<S: Send + Sync> FromRequestParts<S> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<SignedIn>()
            .cloned()
            .ok_or(ApiError::Unauthenticated)
    }
}

/// The `scheme://host[:port]` of a base URL, as browsers send it in `Origin`.
fn origin_of(base_url: &str) -> String {
    url::Url::parse(base_url).map_or_else(
        |_| base_url.to_owned(),
        |url| url.origin().ascii_serialization(),
    )
}

/// The session id from the `Cookie` headers.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// The `Set-Cookie` value for a session (or, with `None`, the one that removes it):
/// `HttpOnly; SameSite=Lax; Path=/`, and `Secure` when the public base URL is https.
pub fn session_set_cookie(state: &AppState, session: Option<(&str, u64)>) -> Option<HeaderValue> {
    let secure = if state.settings().public_base_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let (value, max_age) = session.unwrap_or(("", 0));
    let mut header = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Lax; Path=/; Max-Age={max_age}{secure}"
    ))
    .ok()?;
    header.set_sensitive(true);
    Some(header)
}

#[cfg(test)]
mod tests;
