//! `/admin/v1/issuers`: trusted token issuers.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Created, Tagged, page};
use crate::error::{ApiError, ErrorBody};
use crate::http::extract::{IfMatch, JsonBody, Operator, Path, Query};
use crate::service::issuers::{Issuer, IssuerFilter, IssuerInput, JwksSource};
use crate::service::jwks::KeyStatus;
use crate::service::{AppState, Page, PageRequest};

/// Query parameters of the issuer list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListIssuers {
    /// Items per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only the issuer with this `iss` URL.
    issuer: Option<String>,
}

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
        .routes(routes!(refresh))
}

/// An issuer with the state of its keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuerWithKeys {
    /// The issuer.
    #[serde(flatten)]
    pub issuer: Issuer,
    /// Its keys: ids, skipped keys with reasons, last success, last error, next refresh.
    /// Absent until the key fetcher has seen the issuer (moments after its creation).
    pub keys: Option<KeyStatus>,
}

/// List issuers, in id order.
#[utoipa::path(
    get,
    path = "/admin/v1/issuers",
    tag = "issuers",
    params(ListIssuers),
    responses(
        (status = 200, description = "A page of issuers", body = Page<Issuer>),
        (status = 400, description = "Bad parameter (`invalid_request`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListIssuers>,
) -> Result<axum::Json<Page<Issuer>>, ApiError> {
    let request = PageRequest::new(query.limit, query.cursor.as_deref())?;
    let filter = IssuerFilter {
        issuer: query.issuer,
    };
    Ok(page(state.issuers().list(&request, &filter)?))
}

/// Create an issuer.
#[utoipa::path(
    post,
    path = "/admin/v1/issuers",
    tag = "issuers",
    request_body = IssuerInput,
    responses(
        (status = 201, description = "Created", body = Issuer,
            headers(("ETag" = String), ("Location" = String))),
        (status = 400, description = "Bad field (`invalid_request`) or body (`malformed_json`)", body = ErrorBody),
        (status = 409, description = "The id or the issuer URL is taken (`already_exists`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn create(
    State(state): State<AppState>,
    Operator(actor): Operator,
    JsonBody(input): JsonBody<IssuerInput>,
) -> Result<Created<Issuer>, ApiError> {
    let issuer = state.issuers().create(&actor, input).await?;
    let path = format!("{}/issuers/{}", super::BASE, issuer.value.id);
    Ok(Created::new(&state, &path, issuer))
}

/// Read an issuer.
#[utoipa::path(
    get,
    path = "/admin/v1/issuers/{id}",
    tag = "issuers",
    params(("id" = String, Path, description = "The issuer's id")),
    responses(
        (status = 200, description = "The issuer and the state of its keys", body = IssuerWithKeys, headers(("ETag" = String))),
        (status = 404, description = "No such issuer (`not_found`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Tagged<IssuerWithKeys>, ApiError> {
    let issuer = state.issuers().get(&id)?;
    let keys = state.keys().status(&id);
    Ok(Tagged(issuer.map(|issuer| IssuerWithKeys { issuer, keys })))
}

/// Fetch an issuer's keys now (discovery, then the key set), and answer with the outcome.
/// A failure keeps the last good keys; its reason is in `last_error`. Inline keys are never
/// fetched: 409 `keys_not_fetched`.
#[utoipa::path(
    post,
    path = "/admin/v1/issuers/{id}/refresh",
    tag = "issuers",
    params(("id" = String, Path, description = "The issuer's id")),
    responses(
        (status = 200, description = "The state of the issuer's keys after the attempt (on a replica that does not publish: the refresh is passed to the publisher, and this replica's copy of the status is answered at once)", body = KeyStatus),
        (status = 404, description = "No such issuer (`not_found`)", body = ErrorBody),
        (status = 409, description = "The issuer's keys are inline, so nothing is fetched (`keys_not_fetched`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn refresh(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<KeyStatus>, ApiError> {
    let issuer = state.issuers().get(&id)?;
    if matches!(issuer.value.jwks, JwksSource::Inline { .. }) {
        return Err(ApiError::KeysNotFetched(id));
    }
    // The key registry follows the store asynchronously; an issuer created a moment ago must
    // not answer 404 here.
    crate::service::jwks::sync_issuers(&state)?;
    let not_found = || ApiError::NotFound {
        kind: "issuer",
        id: id.clone(),
    };
    if !state.replica().is_publisher() {
        // Among replicas only the publisher fetches: pass the refresh on and answer this
        // replica's copy of the status, which follows what the publisher stores.
        crate::service::replicas::Signals::new(&state).request_key_refresh(&id, "")?;
        return Ok(axum::Json(state.keys().status(&id).ok_or_else(not_found)?));
    }
    let status = state.keys().refresh_now(&id).await.ok_or_else(not_found)?;
    Ok(axum::Json(status))
}

/// Replace an issuer.
#[utoipa::path(
    put,
    path = "/admin/v1/issuers/{id}",
    tag = "issuers",
    params(
        ("id" = String, Path, description = "The issuer's id"),
        ("If-Match" = String, Header, description = "The ETag from your last read, or `*`"),
    ),
    request_body = IssuerInput,
    responses(
        (status = 200, description = "Replaced", body = Issuer, headers(("ETag" = String))),
        (status = 400, description = "Bad field (`invalid_request`) or body (`malformed_json`)", body = ErrorBody),
        (status = 404, description = "No such issuer (`not_found`)", body = ErrorBody),
        (status = 409, description = "Another issuer has the same URL (`already_exists`)", body = ErrorBody),
        (status = 412, description = "The issuer changed since your read (`precondition_failed`)", body = ErrorBody),
        (status = 428, description = "No If-Match header (`precondition_required`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn update(
    State(state): State<AppState>,
    Operator(actor): Operator,
    Path(id): Path<String>,
    IfMatch(precondition): IfMatch,
    JsonBody(input): JsonBody<IssuerInput>,
) -> Result<Tagged<Issuer>, ApiError> {
    Ok(Tagged(
        state
            .issuers()
            .update(&actor, &id, &precondition, input)
            .await?,
    ))
}

/// Delete an issuer.
#[utoipa::path(
    delete,
    path = "/admin/v1/issuers/{id}",
    tag = "issuers",
    params(
        ("id" = String, Path, description = "The issuer's id"),
        ("If-Match" = String, Header, description = "The ETag from your last read, or `*`"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such issuer (`not_found`)", body = ErrorBody),
        (status = 409, description = "An API still trusts it (`in_use`, with `referrers`)", body = ErrorBody),
        (status = 412, description = "The issuer changed since your read (`precondition_failed`)", body = ErrorBody),
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
    state.issuers().delete(&actor, &id, &precondition).await?;
    Ok(StatusCode::NO_CONTENT)
}
