//! `/portal/api/v1/catalogue`: the APIs developers can register clients for, and their
//! OpenAPI documents.

use axum::extract::State;
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::http::admin::api_docs::document_response;
use crate::http::extract::Path;
use crate::service::portal::PortalEntry;
use crate::service::{AppState, Page};

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(openapi))
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

/// A listed catalogue entry's OpenAPI document, as the operators uploaded it.
#[utoipa::path(
    get,
    path = "/portal/api/v1/catalogue/{id}/openapi",
    operation_id = "catalogue_openapi",
    tag = "portal",
    params(("id" = String, Path, description = "The catalogue entry's id")),
    responses(
        (status = 200, description = "The document (`application/json` or `application/yaml`)", headers(("ETag" = String)),
            content(("application/json"), ("application/yaml"))),
        (status = 404, description = "No such listed entry, or it has no document (`not_found`)", body = ErrorBody),
    ),
    security(("portal_session" = []))
)]
async fn openapi(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.portal().entry(&id)?;
    Ok(document_response(state.api_docs().get(&id)?))
}
