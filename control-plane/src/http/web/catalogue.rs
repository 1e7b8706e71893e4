//! The catalogue: the list and each API's page.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;

use super::views::{ApiPage, Catalogue, Layout};
use super::{Member, message, page};
use crate::error::ApiError;
use crate::http::extract::Path;
use crate::http::present::{grant_in_words, lifetime_in_words, limits_in_words};
use crate::service::AppState;

/// The routes of this page group.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/portal/catalogue", get(list))
        .route("/portal/catalogue/{id}", get(show))
}

async fn list(
    State(state): State<AppState>,
    Member(_, visit): Member,
) -> Result<Response, ApiError> {
    Ok(page(
        StatusCode::OK,
        &Catalogue {
            layout: Layout::new(&state, &visit),
            entries: state.portal().catalogue()?,
        },
    ))
}

async fn show(
    State(state): State<AppState>,
    Member(_, visit): Member,
    Path(id): Path<String>,
) -> Response {
    match state.portal().entry(&id) {
        Ok(detail) => page(
            StatusCode::OK,
            &ApiPage {
                layout: Layout::new(&state, &visit),
                grants: detail.grants.iter().map(grant_in_words).collect(),
                limits: limits_in_words(detail.rate_limit, detail.quota),
                lifetime: lifetime_in_words(detail.lifetime_seconds, detail.renewable),
                detail,
            },
        ),
        Err(error) => message(&visit, &state, &error, "/portal/catalogue"),
    }
}
