//! `/admin/v1/catalogue`: catalogue entries published in the developer portal.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Created, Tagged, page};
use crate::error::{ApiError, ErrorBody};
use crate::http::extract::{IfMatch, JsonBody, Operator, Path, Query};
use crate::service::catalogue::{CatalogueEntry, CatalogueEntryInput, CatalogueFilter};
use crate::service::{AppState, Page, PageRequest};

/// Query parameters of the catalogue list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListCatalogue {
    /// Items per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only entries handing out this policy id.
    policy: Option<String>,
}

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
}

/// List catalogue entries, in id order.
#[utoipa::path(
    get,
    path = "/admin/v1/catalogue",
    tag = "catalogue",
    params(ListCatalogue),
    responses(
        (status = 200, description = "A page of catalogue entries", body = Page<CatalogueEntry>),
        (status = 400, description = "Bad parameter (`invalid_request`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListCatalogue>,
) -> Result<axum::Json<Page<CatalogueEntry>>, ApiError> {
    let request = PageRequest::new(query.limit, query.cursor.as_deref())?;
    let filter = CatalogueFilter {
        policy: query.policy,
    };
    Ok(page(state.catalogue().list(&request, &filter)?))
}

/// Create a catalogue entry.
#[utoipa::path(
    post,
    path = "/admin/v1/catalogue",
    tag = "catalogue",
    request_body = CatalogueEntryInput,
    responses(
        (status = 201, description = "Created", body = CatalogueEntry,
            headers(("ETag" = String), ("Location" = String))),
        (status = 400, description = "Bad field (`invalid_request`) or body (`malformed_json`)", body = ErrorBody),
        (status = 409, description = "The id is taken (`already_exists`)", body = ErrorBody),
        (status = 422, description = "The policy does not exist (`unprocessable_reference`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn create(
    State(state): State<AppState>,
    Operator(actor): Operator,
    JsonBody(input): JsonBody<CatalogueEntryInput>,
) -> Result<Created<CatalogueEntry>, ApiError> {
    let entry = state.catalogue().create(&actor, input).await?;
    let path = format!("{}/catalogue/{}", super::BASE, entry.value.id);
    Ok(Created::new(&state, &path, entry))
}

/// Read a catalogue entry.
#[utoipa::path(
    get,
    path = "/admin/v1/catalogue/{id}",
    tag = "catalogue",
    params(("id" = String, Path, description = "The catalogue entry's id")),
    responses(
        (status = 200, description = "The catalogue entry", body = CatalogueEntry, headers(("ETag" = String))),
        (status = 404, description = "No such catalogue entry (`not_found`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Tagged<CatalogueEntry>, ApiError> {
    Ok(Tagged(state.catalogue().get(&id)?))
}

/// Replace a catalogue entry.
#[utoipa::path(
    put,
    path = "/admin/v1/catalogue/{id}",
    tag = "catalogue",
    params(
        ("id" = String, Path, description = "The catalogue entry's id"),
        ("If-Match" = String, Header, description = "The ETag from your last read, or `*`"),
    ),
    request_body = CatalogueEntryInput,
    responses(
        (status = 200, description = "Replaced", body = CatalogueEntry, headers(("ETag" = String))),
        (status = 400, description = "Bad field (`invalid_request`) or body (`malformed_json`)", body = ErrorBody),
        (status = 404, description = "No such catalogue entry (`not_found`)", body = ErrorBody),
        (status = 412, description = "The catalogue entry changed since your read (`precondition_failed`)", body = ErrorBody),
        (status = 422, description = "The policy does not exist (`unprocessable_reference`)", body = ErrorBody),
        (status = 428, description = "No If-Match header (`precondition_required`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn update(
    State(state): State<AppState>,
    Operator(actor): Operator,
    Path(id): Path<String>,
    IfMatch(precondition): IfMatch,
    JsonBody(input): JsonBody<CatalogueEntryInput>,
) -> Result<Tagged<CatalogueEntry>, ApiError> {
    Ok(Tagged(
        state
            .catalogue()
            .update(&actor, &id, &precondition, input)
            .await?,
    ))
}

/// Delete a catalogue entry.
#[utoipa::path(
    delete,
    path = "/admin/v1/catalogue/{id}",
    tag = "catalogue",
    params(
        ("id" = String, Path, description = "The catalogue entry's id"),
        ("If-Match" = String, Header, description = "The ETag from your last read, or `*`"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such catalogue entry (`not_found`)", body = ErrorBody),
        (status = 409, description = "An OAuth client is still registered for it (`in_use`, with `referrers`)", body = ErrorBody),
        (status = 412, description = "The catalogue entry changed since your read (`precondition_failed`)", body = ErrorBody),
        (status = 428, description = "No If-Match header (`precondition_required`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn delete(
    State(state): State<AppState>,
    Operator(actor): Operator,
    Path(id): Path<String>,
    IfMatch(precondition): IfMatch,
) -> Result<StatusCode, ApiError> {
    state.catalogue().delete(&actor, &id, &precondition).await?;
    Ok(StatusCode::NO_CONTENT)
}
