//! The admin API under `/admin/v1`: JSON only, authenticated with
//! `Authorization: Bearer <admin key>`. One module per resource, each with its `router()`.
//! The operators' guide, `docs/admin-api.md`, follows.
//!
#![doc = include_str!("../../../docs/admin-api.md")]

pub mod api_docs;
pub mod apis;
pub mod audit;
pub mod catalogue;
pub mod dcr;
pub mod developers;
pub mod gateway;
pub mod interrupted_registrations;
pub mod issuers;
pub mod oauth_clients;
pub mod policies;
pub mod portal;
pub mod snapshot;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;
use crate::service::{Actor, AppState, Page, Versioned};

/// The name of the bearer security scheme in the OpenAPI document.
pub const SECURITY_SCHEME: &str = "admin_key";

/// The base path of the admin API.
pub const BASE: &str = "/admin/v1";

/// All admin routes, without authentication (which [`super::app`] adds as a route layer).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(issuers::router())
        .merge(apis::router())
        .merge(policies::router())
        .merge(catalogue::router())
        .merge(api_docs::router())
        .merge(dcr::router())
        .merge(gateway::router())
        .merge(developers::router())
        .merge(portal::router())
        .merge(oauth_clients::router())
        .merge(interrupted_registrations::router())
        .merge(audit::router())
        .merge(snapshot::router())
}

/// Authenticates the admin key: 401 without `Authorization: Bearer`, 403 when the key matches
/// no configured key (compared in constant time). On success the key's id is put in the
/// request as the [`Actor`].
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = bearer_token(request.headers()).ok_or(ApiError::Unauthorized)?;
    let id = state
        .admin_keys()
        .verify(presented)
        .ok_or(ApiError::Forbidden)?;
    request
        .extensions_mut()
        .insert(Actor::AdminKey { id: id.to_owned() });
    Ok(next.run(request).await)
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim())
                .filter(|token| !token.is_empty())
        })
}

/// A 200 with the resource as JSON and its `ETag`.
#[derive(Debug)]
pub struct Tagged<T>(pub Versioned<T>);

impl<T: Serialize> IntoResponse for Tagged<T> {
    fn into_response(self) -> Response {
        let etag = self.0.etag();
        let mut response = axum::Json(self.0.value).into_response();
        if let Ok(value) = HeaderValue::try_from(etag) {
            response.headers_mut().insert(header::ETAG, value);
        }
        response
    }
}

/// A 201 with the resource as JSON, its `ETag` and its `Location`.
#[derive(Debug)]
pub struct Created<T> {
    location: String,
    resource: Versioned<T>,
}

impl<T> Created<T> {
    /// The resource at `path` (below the public base URL).
    pub fn new(state: &AppState, path: &str, resource: Versioned<T>) -> Self {
        Created {
            location: format!("{}{path}", state.settings().public_base_url),
            resource,
        }
    }
}

impl<T: Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        let mut response = Tagged(self.resource).into_response();
        *response.status_mut() = StatusCode::CREATED;
        if let Ok(value) = HeaderValue::try_from(self.location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        response
    }
}

/// A page of resources as JSON (the revisions are dropped; each item's ETag comes with a GET).
pub fn page<T: Serialize>(page: Page<Versioned<T>>) -> axum::Json<Page<T>> {
    axum::Json(page.map(|record| record.value))
}
