//! `/admin/v1/policies`: access policies.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Created, Tagged, page};
use crate::error::{ApiError, ErrorBody};
use crate::http::extract::{IfMatch, JsonBody, Operator, Path, Query};
use crate::service::policies::{Policy, PolicyFilter, PolicyInput};
use crate::service::{AppState, Page, PageRequest};
use portico_core::snapshot::PolicyState;

/// Query parameters of the policy list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListPolicies {
    /// Items per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only policies granting access to this API id.
    api: Option<String>,
    /// Only policies in this state.
    state: Option<PolicyState>,
}

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
}

/// List policys, in id order.
#[utoipa::path(
    get,
    path = "/admin/v1/policies",
    tag = "policies",
    params(ListPolicies),
    responses(
        (status = 200, description = "A page of policys", body = Page<Policy>),
        (status = 400, description = "Bad parameter (`invalid_request`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListPolicies>,
) -> Result<axum::Json<Page<Policy>>, ApiError> {
    let request = PageRequest::new(query.limit, query.cursor.as_deref())?;
    let filter = PolicyFilter {
        api: query.api,
        state: query.state,
    };
    Ok(page(state.policies().list(&request, &filter)?))
}

/// Create a policy.
#[utoipa::path(
    post,
    path = "/admin/v1/policies",
    tag = "policies",
    request_body = PolicyInput,
    responses(
        (status = 201, description = "Created", body = Policy,
            headers(("ETag" = String), ("Location" = String))),
        (status = 400, description = "Bad field (`invalid_request`) or body (`malformed_json`)", body = ErrorBody),
        (status = 409, description = "The id is taken (`already_exists`)", body = ErrorBody),
        (status = 422, description = "An access right names an API that does not exist (`unprocessable_reference`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn create(
    State(state): State<AppState>,
    Operator(actor): Operator,
    JsonBody(input): JsonBody<PolicyInput>,
) -> Result<Created<Policy>, ApiError> {
    let policy = state.policies().create(&actor, input).await?;
    let path = format!("{}/policies/{}", super::BASE, policy.value.id);
    Ok(Created::new(&state, &path, policy))
}

/// Read a policy.
#[utoipa::path(
    get,
    path = "/admin/v1/policies/{id}",
    tag = "policies",
    params(("id" = String, Path, description = "The policy's id")),
    responses(
        (status = 200, description = "The policy", body = Policy, headers(("ETag" = String))),
        (status = 404, description = "No such policy (`not_found`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Tagged<Policy>, ApiError> {
    Ok(Tagged(state.policies().get(&id)?))
}

/// Replace a policy.
#[utoipa::path(
    put,
    path = "/admin/v1/policies/{id}",
    tag = "policies",
    params(
        ("id" = String, Path, description = "The policy's id"),
        ("If-Match" = String, Header, description = "The ETag from your last read, or `*`"),
    ),
    request_body = PolicyInput,
    responses(
        (status = 200, description = "Replaced", body = Policy, headers(("ETag" = String))),
        (status = 400, description = "Bad field (`invalid_request`) or body (`malformed_json`)", body = ErrorBody),
        (status = 404, description = "No such policy (`not_found`)", body = ErrorBody),
        (status = 412, description = "The policy changed since your read (`precondition_failed`)", body = ErrorBody),
        (status = 422, description = "An access right names an API that does not exist (`unprocessable_reference`)", body = ErrorBody),
        (status = 428, description = "No If-Match header (`precondition_required`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn update(
    State(state): State<AppState>,
    Operator(actor): Operator,
    Path(id): Path<String>,
    IfMatch(precondition): IfMatch,
    JsonBody(input): JsonBody<PolicyInput>,
) -> Result<Tagged<Policy>, ApiError> {
    Ok(Tagged(
        state
            .policies()
            .update(&actor, &id, &precondition, input)
            .await?,
    ))
}

/// Delete a policy.
#[utoipa::path(
    delete,
    path = "/admin/v1/policies/{id}",
    tag = "policies",
    params(
        ("id" = String, Path, description = "The policy's id"),
        ("If-Match" = String, Header, description = "The ETag from your last read, or `*`"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such policy (`not_found`)", body = ErrorBody),
        (status = 409, description = "An API (default policies) or a catalogue entry still uses it (`in_use`, with `referrers`)", body = ErrorBody),
        (status = 412, description = "The policy changed since your read (`precondition_failed`)", body = ErrorBody),
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
    state.policies().delete(&actor, &id, &precondition).await?;
    Ok(StatusCode::NO_CONTENT)
}
