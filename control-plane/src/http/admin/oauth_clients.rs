//! `/admin/v1/oauth-clients`: OAuth clients registered for developers (list, inspect, revoke,
//! delete at the IdP, purge). They are created by the registration flow, not through this API.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Tagged, page};
use crate::error::{ApiError, ErrorBody};
use crate::http::extract::{IfMatch, JsonBody, Operator, Path, Query};
use crate::service::oauth_clients::{
    AccessExpiryInput, OAuthClient, OAuthClientFilter, OAuthClientState,
};
use crate::service::usage::ClientUsageView;
use crate::service::{AppState, Page, PageRequest};

/// Query parameters of the OAuth client list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListOAuthClients {
    /// Items per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only clients of this developer id.
    developer: Option<String>,
    /// Only clients registered for this catalogue entry id.
    catalogue_entry: Option<String>,
    /// Only clients in this state.
    state: Option<OAuthClientState>,
    /// Only the client with this IdP `client_id`.
    client_id: Option<String>,
    /// Only clients with some access expiring before this time (RFC 3339, e.g.
    /// `2027-01-01T00:00:00Z`), expired access included.
    expires_before: Option<String>,
}

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get, delete))
        .routes(routes!(revoke))
        .routes(routes!(set_access))
        .routes(routes!(usage))
}

/// List OAuth clients, in id order.
#[utoipa::path(
    get,
    path = "/admin/v1/oauth-clients",
    tag = "oauth-clients",
    params(ListOAuthClients),
    responses(
        (status = 200, description = "A page of OAuth clients", body = Page<OAuthClient>),
        (status = 400, description = "Bad parameter (`invalid_request`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListOAuthClients>,
) -> Result<axum::Json<Page<OAuthClient>>, ApiError> {
    let request = PageRequest::new(query.limit, query.cursor.as_deref())?;
    let filter = OAuthClientFilter {
        developer: query.developer,
        catalogue_entry: query.catalogue_entry,
        state: query.state,
        client_id: query.client_id,
        expires_before: query
            .expires_before
            .as_deref()
            .map(|text| {
                humantime::parse_rfc3339_weak(text)
                    .map(crate::service::oauth_clients::unix_seconds)
                    .map_err(|_| {
                        ApiError::invalid(
                            "expires_before",
                            "must be an RFC 3339 time such as 2027-01-01T00:00:00Z",
                        )
                    })
            })
            .transpose()?,
    };
    Ok(page(state.oauth_clients().list(&request, &filter)?))
}

/// Inspect an OAuth client (its secrets are reported as set or not, never returned).
#[utoipa::path(
    get,
    path = "/admin/v1/oauth-clients/{id}",
    tag = "oauth-clients",
    params(("id" = String, Path, description = "The OAuth client's id")),
    responses(
        (status = 200, description = "The OAuth client", body = OAuthClient, headers(("ETag" = String))),
        (status = 404, description = "No such OAuth client (`not_found`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Tagged<OAuthClient>, ApiError> {
    Ok(Tagged(state.oauth_clients().get(&id)?))
}

/// An OAuth client's usage over the last 30 days, per hour and per day (UTC): requests let
/// through and refused by reason, as the filters reported them (about 1 s late).
#[utoipa::path(
    get,
    path = "/admin/v1/oauth-clients/{id}/usage",
    operation_id = "get_usage",
    tag = "oauth-clients",
    params(("id" = String, Path, description = "The OAuth client's id")),
    responses(
        (status = 200, description = "The usage", body = ClientUsageView),
        (status = 404, description = "No such OAuth client (`not_found`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn usage(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<axum::Json<ClientUsageView>, ApiError> {
    state.oauth_clients().get(&id)?;
    Ok(axum::Json(state.usage().of_client(&id)?))
}

/// Revoke an OAuth client: the data plane refuses it from the next snapshot on. If-Match is
/// optional.
#[utoipa::path(
    post,
    path = "/admin/v1/oauth-clients/{id}/revoke",
    tag = "oauth-clients",
    params(
        ("id" = String, Path, description = "The OAuth client's id"),
        ("If-Match" = Option<String>, Header, description = "Optional: the ETag from your last read"),
    ),
    responses(
        (status = 200, description = "Revoked", body = OAuthClient, headers(("ETag" = String))),
        (status = 404, description = "No such OAuth client (`not_found`)", body = ErrorBody),
        (status = 412, description = "The client changed since your read (`precondition_failed`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn revoke(
    State(state): State<AppState>,
    Operator(actor): Operator,
    Path(id): Path<String>,
    IfMatch(precondition): IfMatch,
) -> Result<Tagged<OAuthClient>, ApiError> {
    Ok(Tagged(
        state
            .oauth_clients()
            .revoke(&actor, &id, &precondition)
            .await?,
    ))
}

/// Extend, shorten or end an OAuth client's access (the expiry of its bindings), or make it
/// never expire; published at once and audited (`set_access_expiry`). If-Match is not needed.
#[utoipa::path(
    put,
    path = "/admin/v1/oauth-clients/{id}/access",
    tag = "oauth-clients",
    params(("id" = String, Path, description = "The OAuth client's id")),
    request_body = AccessExpiryInput,
    responses(
        (status = 200, description = "The client with its new `access_expires_at`", body = OAuthClient, headers(("ETag" = String))),
        (status = 400, description = "Bad body, or a catalogue entry the client is not registered for (`invalid_request`)", body = ErrorBody),
        (status = 404, description = "No such OAuth client (`not_found`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn set_access(
    State(state): State<AppState>,
    Operator(actor): Operator,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<AccessExpiryInput>,
) -> Result<Tagged<OAuthClient>, ApiError> {
    Ok(Tagged(
        state
            .oauth_clients()
            .set_access_expiry(&actor, &id, input)
            .await?,
    ))
}

/// Query parameters of the delete.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteOAuthClient {
    /// Mark the client deleted without calling the IdP (when it was removed at the IdP by
    /// hand, or the IdP cannot manage it). Default: false.
    #[serde(default)]
    skip_idp: bool,
}

/// Delete an OAuth client: the first delete deletes it at the IdP (RFC 7592) and keeps it
/// `revoked` with `deleted_at`, so that the data plane refuses tokens it got before; a delete
/// of a client already deleted at the IdP removes the record for good.
#[utoipa::path(
    delete,
    path = "/admin/v1/oauth-clients/{id}",
    tag = "oauth-clients",
    params(
        ("id" = String, Path, description = "The OAuth client's id"),
        ("If-Match" = String, Header, description = "The ETag from your last read, or `*`"),
        DeleteOAuthClient,
    ),
    responses(
        (status = 204, description = "Deleted at the IdP and revoked, or (already deleted at the IdP) purged"),
        (status = 404, description = "No such OAuth client (`not_found`)", body = ErrorBody),
        (status = 409, description = "The IdP cannot manage this client (`management_not_supported`): it is revoked; use `skip_idp=true` once it is gone at the IdP. Or a purge before the client's revocation has ended (`conflict`): its tokens can still pass; the message says from when it can be purged", body = ErrorBody),
        (status = 412, description = "The client changed since your read (`precondition_failed`)", body = ErrorBody),
        (status = 428, description = "No If-Match header (`precondition_required`)", body = ErrorBody),
        (status = 502, description = "The IdP refused or failed (`idp_rejected`, `idp_unavailable`): the client is revoked; delete again to retry", body = ErrorBody),
        (status = 504, description = "The IdP did not answer in time (`idp_unavailable`): the client is revoked; delete again to retry", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn delete(
    State(state): State<AppState>,
    Operator(actor): Operator,
    Path(id): Path<String>,
    IfMatch(precondition): IfMatch,
    Query(query): Query<DeleteOAuthClient>,
) -> Result<StatusCode, ApiError> {
    state
        .registrations()
        .delete_as_operator(&actor, &id, &precondition, query.skip_idp)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
