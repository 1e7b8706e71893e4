//! `/portal/api/v1/catalogue`: the APIs developers can register clients for.

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::service::portal::PortalEntry;
use crate::service::{AppState, Page};

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// List the catalogue entries with Dynamic Client Registration enabled, in id order.
#[utoipa::path(
    get,
    path = "/portal/api/v1/catalogue",
    operation_id = "list_catalogue",
    tag = "portal",
    responses(
        (status = 200, description = "The entries (one page, no cursor)", body = Page<PortalEntry>),
    ),
    security(("portal_session" = []))
)]
async fn list(State(state): State<AppState>) -> Result<axum::Json<Page<PortalEntry>>, ApiError> {
    Ok(axum::Json(Page {
        items: state.portal().catalogue()?,
        next_cursor: None,
    }))
}
