//! `/admin/v1/dcr` (global DCR settings) and `/admin/v1/catalogue/{id}/dcr` (a catalogue
//! entry's override).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Created, Tagged};
use crate::error::{ApiError, ErrorBody};
use crate::http::extract::{IfMatch, JsonBody, Operator, Path};
use crate::service::AppState;
use crate::service::dcr::{DcrSettings, DcrSettingsInput};

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_global, put_global))
        .routes(routes!(get_override, put_override, delete_override))
}

/// Read the global DCR settings (defaults with ETag `"0"` until first written).
#[utoipa::path(
    get,
    path = "/admin/v1/dcr",
    tag = "dcr",
    responses(
        (status = 200, description = "The global settings", body = DcrSettings, headers(("ETag" = String))),
    ),
    security(("admin_key" = []))
)]
async fn get_global(State(state): State<AppState>) -> Result<Tagged<DcrSettings>, ApiError> {
    Ok(Tagged(state.dcr().global()?))
}

/// Replace the global DCR settings.
#[utoipa::path(
    put,
    path = "/admin/v1/dcr",
    tag = "dcr",
    params(("If-Match" = String, Header, description = "The ETag from your last read, or `*`")),
    request_body = DcrSettingsInput,
    responses(
        (status = 200, description = "Replaced", body = DcrSettings, headers(("ETag" = String))),
        (status = 400, description = "Bad field (`invalid_request`) or body (`malformed_json`)", body = ErrorBody),
        (status = 412, description = "The settings changed since your read (`precondition_failed`)", body = ErrorBody),
        (status = 422, description = "Enabled settings need the IdP's discovery document, and it could not be fetched or read (`discovery_failed`)", body = ErrorBody),
        (status = 428, description = "No If-Match header (`precondition_required`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn put_global(
    State(state): State<AppState>,
    Operator(actor): Operator,
    IfMatch(precondition): IfMatch,
    JsonBody(input): JsonBody<DcrSettingsInput>,
) -> Result<Tagged<DcrSettings>, ApiError> {
    Ok(Tagged(
        state.dcr().put_global(&actor, &precondition, input).await?,
    ))
}

/// Read a catalogue entry's DCR override.
#[utoipa::path(
    get,
    path = "/admin/v1/catalogue/{id}/dcr",
    tag = "dcr",
    params(("id" = String, Path, description = "The catalogue entry's id")),
    responses(
        (status = 200, description = "The override", body = DcrSettings, headers(("ETag" = String))),
        (status = 404, description = "No such entry, or it has no override (`not_found`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn get_override(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Tagged<DcrSettings>, ApiError> {
    Ok(Tagged(state.dcr().get_override(&id)?))
}

/// Create (no If-Match) or replace (If-Match required) a catalogue entry's DCR override.
#[utoipa::path(
    put,
    path = "/admin/v1/catalogue/{id}/dcr",
    tag = "dcr",
    params(
        ("id" = String, Path, description = "The catalogue entry's id"),
        ("If-Match" = Option<String>, Header, description = "Required to replace an existing override: the ETag from your last read, or `*`"),
    ),
    request_body = DcrSettingsInput,
    responses(
        (status = 200, description = "Replaced", body = DcrSettings, headers(("ETag" = String))),
        (status = 201, description = "Created", body = DcrSettings, headers(("ETag" = String), ("Location" = String))),
        (status = 400, description = "Bad field (`invalid_request`) or body (`malformed_json`)", body = ErrorBody),
        (status = 404, description = "No such catalogue entry (`not_found`)", body = ErrorBody),
        (status = 412, description = "The override changed since your read, or If-Match was sent for an override that does not exist (`precondition_failed`)", body = ErrorBody),
        (status = 422, description = "Enabled settings need the IdP's discovery document, and it could not be fetched or read (`discovery_failed`)", body = ErrorBody),
        (status = 428, description = "Replacing without If-Match (`precondition_required`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn put_override(
    State(state): State<AppState>,
    Operator(actor): Operator,
    Path(id): Path<String>,
    IfMatch(precondition): IfMatch,
    JsonBody(input): JsonBody<DcrSettingsInput>,
) -> Result<Response, ApiError> {
    let (settings, created) = state
        .dcr()
        .put_override(&actor, &id, &precondition, input)
        .await?;
    Ok(if created {
        let path = format!("{}/catalogue/{id}/dcr", super::BASE);
        Created::new(&state, &path, settings).into_response()
    } else {
        Tagged(settings).into_response()
    })
}

/// Delete a catalogue entry's DCR override (the entry then uses the global settings).
#[utoipa::path(
    delete,
    path = "/admin/v1/catalogue/{id}/dcr",
    tag = "dcr",
    params(
        ("id" = String, Path, description = "The catalogue entry's id"),
        ("If-Match" = String, Header, description = "The ETag from your last read, or `*`"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such entry, or it has no override (`not_found`)", body = ErrorBody),
        (status = 412, description = "The override changed since your read (`precondition_failed`)", body = ErrorBody),
        (status = 428, description = "No If-Match header (`precondition_required`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn delete_override(
    State(state): State<AppState>,
    Operator(actor): Operator,
    Path(id): Path<String>,
    IfMatch(precondition): IfMatch,
) -> Result<StatusCode, ApiError> {
    state
        .dcr()
        .delete_override(&actor, &id, &precondition)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
