//! `/admin/v1/apis`: protected APIs.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Created, Tagged, page};
use crate::error::{ApiError, ErrorBody};
use crate::http::extract::{IfMatch, JsonBody, Operator, Path, Query};
use crate::service::apis::{Api, ApiFilter, ApiInput};
use crate::service::{AppState, Page, PageRequest};

/// Query parameters of the API list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListApis {
    /// Items per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only APIs that trust this issuer id.
    issuer: Option<String>,
    /// Only APIs served on this host.
    host: Option<String>,
    /// Only APIs with this listen path.
    listen_path: Option<String>,
}

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
}

/// List APIs, in id order.
#[utoipa::path(
    get,
    path = "/admin/v1/apis",
    tag = "apis",
    params(ListApis),
    responses(
        (status = 200, description = "A page of APIs", body = Page<Api>),
        (status = 400, description = "Bad parameter (`invalid_request`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListApis>,
) -> Result<axum::Json<Page<Api>>, ApiError> {
    let request = PageRequest::new(query.limit, query.cursor.as_deref())?;
    let filter = ApiFilter {
        issuer: query.issuer,
        host: query.host,
        listen_path: query.listen_path,
    };
    Ok(page(state.apis().list(&request, &filter)?))
}

/// Create an API.
#[utoipa::path(
    post,
    path = "/admin/v1/apis",
    tag = "apis",
    request_body = ApiInput,
    responses(
        (status = 201, description = "Created", body = Api,
            headers(("ETag" = String), ("Location" = String))),
        (status = 400, description = "Bad field (`invalid_request`) or body (`malformed_json`)", body = ErrorBody),
        (status = 409, description = "The id is taken (`already_exists`) or another API serves the same listen path and hosts (`conflict`)", body = ErrorBody),
        (status = 422, description = "An issuer or default policy does not exist (`unprocessable_reference`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn create(
    State(state): State<AppState>,
    Operator(actor): Operator,
    JsonBody(input): JsonBody<ApiInput>,
) -> Result<Created<Api>, ApiError> {
    let api = state.apis().create(&actor, input).await?;
    let path = format!("{}/apis/{}", super::BASE, api.value.id);
    Ok(Created::new(&state, &path, api))
}

/// Read an API.
#[utoipa::path(
    get,
    path = "/admin/v1/apis/{id}",
    tag = "apis",
    params(("id" = String, Path, description = "The API's id")),
    responses(
        (status = 200, description = "The API", body = Api, headers(("ETag" = String))),
        (status = 404, description = "No such API (`not_found`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Tagged<Api>, ApiError> {
    Ok(Tagged(state.apis().get(&id)?))
}

/// Replace an API.
#[utoipa::path(
    put,
    path = "/admin/v1/apis/{id}",
    tag = "apis",
    params(
        ("id" = String, Path, description = "The API's id"),
        ("If-Match" = String, Header, description = "The ETag from your last read, or `*`"),
    ),
    request_body = ApiInput,
    responses(
        (status = 200, description = "Replaced", body = Api, headers(("ETag" = String))),
        (status = 400, description = "Bad field (`invalid_request`) or body (`malformed_json`)", body = ErrorBody),
        (status = 404, description = "No such API (`not_found`)", body = ErrorBody),
        (status = 409, description = "Another API serves the same listen path and hosts (`conflict`)", body = ErrorBody),
        (status = 412, description = "The API changed since your read (`precondition_failed`)", body = ErrorBody),
        (status = 422, description = "An issuer or default policy does not exist (`unprocessable_reference`)", body = ErrorBody),
        (status = 428, description = "No If-Match header (`precondition_required`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn update(
    State(state): State<AppState>,
    Operator(actor): Operator,
    Path(id): Path<String>,
    IfMatch(precondition): IfMatch,
    JsonBody(input): JsonBody<ApiInput>,
) -> Result<Tagged<Api>, ApiError> {
    Ok(Tagged(
        state
            .apis()
            .update(&actor, &id, &precondition, input)
            .await?,
    ))
}

/// Delete an API.
#[utoipa::path(
    delete,
    path = "/admin/v1/apis/{id}",
    tag = "apis",
    params(
        ("id" = String, Path, description = "The API's id"),
        ("If-Match" = String, Header, description = "The ETag from your last read, or `*`"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such API (`not_found`)", body = ErrorBody),
        (status = 409, description = "A policy still grants access to it (`in_use`, with `referrers`)", body = ErrorBody),
        (status = 412, description = "The API changed since your read (`precondition_failed`)", body = ErrorBody),
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
    state.apis().delete(&actor, &id, &precondition).await?;
    Ok(StatusCode::NO_CONTENT)
}
