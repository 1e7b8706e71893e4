//! `/admin/v1/interrupted-registrations`: client registrations whose outcome at the IdP is
//! unknown (a kill mid-registration, an IdP that never answered), for the operators to check
//! at the IdP and acknowledge (see [`crate::service::interrupted`]).

use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Tagged;
use crate::error::{ApiError, ErrorBody};
use crate::http::extract::{IfMatch, Operator, Path};
use crate::service::interrupted::InterruptedRegistration;
use crate::service::{AppState, Page};

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get, delete))
}

/// List the registrations interrupted before their outcome at the IdP was known or recorded,
/// oldest first (all of them: one page).
#[utoipa::path(
    get,
    path = "/admin/v1/interrupted-registrations",
    operation_id = "list_interrupted_registrations",
    tag = "oauth-clients",
    responses(
        (status = 200, description = "Every interrupted registration", body = Page<InterruptedRegistration>),
    ),
    security(("admin_key" = []))
)]
async fn list(
    State(state): State<AppState>,
) -> Result<axum::Json<Page<InterruptedRegistration>>, ApiError> {
    let items = state.interrupted_registrations().list()?;
    Ok(axum::Json(Page {
        items: items.into_iter().map(|item| item.value).collect(),
        next_cursor: None,
    }))
}

/// Read an interrupted registration.
#[utoipa::path(
    get,
    path = "/admin/v1/interrupted-registrations/{id}",
    operation_id = "get_interrupted_registration",
    tag = "oauth-clients",
    params(("id" = String, Path, description = "The interrupted registration's id")),
    responses(
        (status = 200, description = "The interrupted registration", body = InterruptedRegistration, headers(("ETag" = String))),
        (status = 404, description = "No such interrupted registration, or it is still in progress (`not_found`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Tagged<InterruptedRegistration>, ApiError> {
    Ok(Tagged(state.interrupted_registrations().get(&id)?))
}

/// Acknowledge an interrupted registration, once the client it may have created was found
/// and deleted at the IdP (or not found there). Audited.
#[utoipa::path(
    delete,
    path = "/admin/v1/interrupted-registrations/{id}",
    operation_id = "delete_interrupted_registration",
    tag = "oauth-clients",
    params(
        ("id" = String, Path, description = "The interrupted registration's id"),
        ("If-Match" = String, Header, description = "The ETag from your last read, or `*`"),
    ),
    responses(
        (status = 204, description = "Acknowledged and removed"),
        (status = 404, description = "No such interrupted registration (`not_found`)", body = ErrorBody),
        (status = 412, description = "The ETag does not match (`precondition_failed`)", body = ErrorBody),
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
    state
        .interrupted_registrations()
        .acknowledge(&actor, &id, &precondition)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
