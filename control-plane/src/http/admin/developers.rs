//! `/admin/v1/developers`: developer accounts (create, read, update, disable, enable, reset
//! password, delete). Ids are assigned by the server.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Created, Tagged, page};
use crate::error::{ApiError, ErrorBody};
use crate::http::extract::{IfMatch, JsonBody, Operator, Path, Query};
use crate::service::developers::{
    Developer, DeveloperFilter, DeveloperState, DeveloperUpdate, NewDeveloper, PasswordReset,
};
use crate::service::{AppState, Page, PageRequest};

/// Query parameters of the developer list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListDevelopers {
    /// Items per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only the developer with this email (any case).
    email: Option<String>,
    /// Only developers in this state.
    state: Option<DeveloperState>,
}

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
        .routes(routes!(disable))
        .routes(routes!(enable))
        .routes(routes!(reset_password))
}

/// List developers, in id order.
#[utoipa::path(
    get,
    path = "/admin/v1/developers",
    tag = "developers",
    params(ListDevelopers),
    responses(
        (status = 200, description = "A page of developers", body = Page<Developer>),
        (status = 400, description = "Bad parameter (`invalid_request`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListDevelopers>,
) -> Result<axum::Json<Page<Developer>>, ApiError> {
    let request = PageRequest::new(query.limit, query.cursor.as_deref())?;
    let filter = DeveloperFilter {
        email: query.email,
        state: query.state,
    };
    Ok(page(state.developers().list(&request, &filter)?))
}

/// Create a developer (active, with a server-assigned id).
#[utoipa::path(
    post,
    path = "/admin/v1/developers",
    tag = "developers",
    request_body = NewDeveloper,
    responses(
        (status = 201, description = "Created", body = Developer,
            headers(("ETag" = String), ("Location" = String))),
        (status = 400, description = "Bad field (`invalid_request`) or body (`malformed_json`)", body = ErrorBody),
        (status = 409, description = "The email is taken (`already_exists`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn create(
    State(state): State<AppState>,
    Operator(actor): Operator,
    JsonBody(input): JsonBody<NewDeveloper>,
) -> Result<Created<Developer>, ApiError> {
    let developer = state.developers().create(&actor, input).await?;
    let path = format!("{}/developers/{}", super::BASE, developer.value.id);
    Ok(Created::new(&state, &path, developer))
}

/// Read a developer.
#[utoipa::path(
    get,
    path = "/admin/v1/developers/{id}",
    tag = "developers",
    params(("id" = String, Path, description = "The developer's id")),
    responses(
        (status = 200, description = "The developer", body = Developer, headers(("ETag" = String))),
        (status = 404, description = "No such developer (`not_found`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Tagged<Developer>, ApiError> {
    Ok(Tagged(state.developers().get(&id)?))
}

/// Change a developer's email and name.
#[utoipa::path(
    put,
    path = "/admin/v1/developers/{id}",
    tag = "developers",
    params(
        ("id" = String, Path, description = "The developer's id"),
        ("If-Match" = String, Header, description = "The ETag from your last read, or `*`"),
    ),
    request_body = DeveloperUpdate,
    responses(
        (status = 200, description = "Updated", body = Developer, headers(("ETag" = String))),
        (status = 400, description = "Bad field (`invalid_request`) or body (`malformed_json`)", body = ErrorBody),
        (status = 404, description = "No such developer (`not_found`)", body = ErrorBody),
        (status = 409, description = "The email is taken (`already_exists`)", body = ErrorBody),
        (status = 412, description = "The developer changed since your read (`precondition_failed`)", body = ErrorBody),
        (status = 428, description = "No If-Match header (`precondition_required`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn update(
    State(state): State<AppState>,
    Operator(actor): Operator,
    Path(id): Path<String>,
    IfMatch(precondition): IfMatch,
    JsonBody(input): JsonBody<DeveloperUpdate>,
) -> Result<Tagged<Developer>, ApiError> {
    Ok(Tagged(
        state
            .developers()
            .update(&actor, &id, &precondition, input)
            .await?,
    ))
}

/// Delete a developer.
#[utoipa::path(
    delete,
    path = "/admin/v1/developers/{id}",
    tag = "developers",
    params(
        ("id" = String, Path, description = "The developer's id"),
        ("If-Match" = String, Header, description = "The ETag from your last read, or `*`"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such developer (`not_found`)", body = ErrorBody),
        (status = 409, description = "The developer still owns OAuth clients (`in_use`, with `referrers`)", body = ErrorBody),
        (status = 412, description = "The developer changed since your read (`precondition_failed`)", body = ErrorBody),
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
        .developers()
        .delete(&actor, &id, &precondition)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Disable a developer (they can no longer sign in). If-Match is optional.
#[utoipa::path(
    post,
    path = "/admin/v1/developers/{id}/disable",
    tag = "developers",
    params(
        ("id" = String, Path, description = "The developer's id"),
        ("If-Match" = Option<String>, Header, description = "Optional: the ETag from your last read"),
    ),
    responses(
        (status = 200, description = "Disabled", body = Developer, headers(("ETag" = String))),
        (status = 404, description = "No such developer (`not_found`)", body = ErrorBody),
        (status = 412, description = "The developer changed since your read (`precondition_failed`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn disable(
    State(state): State<AppState>,
    Operator(actor): Operator,
    Path(id): Path<String>,
    IfMatch(precondition): IfMatch,
) -> Result<Tagged<Developer>, ApiError> {
    Ok(Tagged(
        state
            .developers()
            .set_state(&actor, &id, &precondition, DeveloperState::Disabled)
            .await?,
    ))
}

/// Enable a developer. If-Match is optional.
#[utoipa::path(
    post,
    path = "/admin/v1/developers/{id}/enable",
    tag = "developers",
    params(
        ("id" = String, Path, description = "The developer's id"),
        ("If-Match" = Option<String>, Header, description = "Optional: the ETag from your last read"),
    ),
    responses(
        (status = 200, description = "Enabled", body = Developer, headers(("ETag" = String))),
        (status = 404, description = "No such developer (`not_found`)", body = ErrorBody),
        (status = 412, description = "The developer changed since your read (`precondition_failed`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn enable(
    State(state): State<AppState>,
    Operator(actor): Operator,
    Path(id): Path<String>,
    IfMatch(precondition): IfMatch,
) -> Result<Tagged<Developer>, ApiError> {
    Ok(Tagged(
        state
            .developers()
            .set_state(&actor, &id, &precondition, DeveloperState::Active)
            .await?,
    ))
}

/// Set a developer's password. If-Match is optional.
#[utoipa::path(
    post,
    path = "/admin/v1/developers/{id}/reset-password",
    tag = "developers",
    params(
        ("id" = String, Path, description = "The developer's id"),
        ("If-Match" = Option<String>, Header, description = "Optional: the ETag from your last read"),
    ),
    request_body = PasswordReset,
    responses(
        (status = 200, description = "Password set", body = Developer, headers(("ETag" = String))),
        (status = 400, description = "Bad password (`invalid_request`) or body (`malformed_json`)", body = ErrorBody),
        (status = 404, description = "No such developer (`not_found`)", body = ErrorBody),
        (status = 412, description = "The developer changed since your read (`precondition_failed`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn reset_password(
    State(state): State<AppState>,
    Operator(actor): Operator,
    Path(id): Path<String>,
    IfMatch(precondition): IfMatch,
    JsonBody(input): JsonBody<PasswordReset>,
) -> Result<Tagged<Developer>, ApiError> {
    Ok(Tagged(
        state
            .developers()
            .reset_password(&actor, &id, &precondition, input)
            .await?,
    ))
}
