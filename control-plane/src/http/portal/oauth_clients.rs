//! `/portal/api/v1/oauth-clients`: a developer's OAuth clients, registered at the IdP.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::SignedIn;
use crate::error::{ApiError, ErrorBody};
use crate::http::extract::{JsonBody, Path};
use crate::http::present::IssuedClient;
use crate::service::oauth_clients::OAuthClient;
use crate::service::registration::{ClientRequest, IdempotencyKey, RedirectUris};
use crate::service::usage::ClientUsageView;
use crate::service::{AppState, Page};

/// The header that marks a replayed create.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, delete))
        .routes(routes!(rotate_secret))
        .routes(routes!(renew))
        .routes(routes!(set_redirect_uris))
        .routes(routes!(usage))
}

/// List your OAuth clients (those deleted are not listed).
#[utoipa::path(
    get,
    path = "/portal/api/v1/oauth-clients",
    operation_id = "list_oauth_clients",
    tag = "portal",
    responses(
        (status = 200, description = "Your clients (one page, no cursor)", body = Page<OAuthClient>),
    ),
    security(("portal_session" = []))
)]
async fn list(
    State(state): State<AppState>,
    SignedIn(developer): SignedIn,
) -> Result<axum::Json<Page<OAuthClient>>, ApiError> {
    Ok(axum::Json(Page {
        items: state.registrations().list_for(&developer)?,
        next_cursor: None,
    }))
}

/// Register an OAuth client at the IdP for catalogue entries. Send a new `Idempotency-Key` per
/// form: a repeated request with the same key answers the same client (`replayed: true`, the
/// secret only within 10 minutes of the creation) instead of registering a second one.
#[utoipa::path(
    post,
    path = "/portal/api/v1/oauth-clients",
    operation_id = "create_oauth_client",
    tag = "portal",
    params(("Idempotency-Key" = String, Header, description = "A key made once per form (e.g. a UUID), 1-255 visible ASCII characters")),
    request_body = ClientRequest,
    responses(
        (status = 201, description = "Registered: the client secret is shown this once", body = IssuedClient, headers(("Location" = String), ("Idempotent-Replayed" = String))),
        (status = 400, description = "Bad field or missing Idempotency-Key (`invalid_request`)", body = ErrorBody),
        (status = 403, description = "Cross-site request (`forbidden_origin`)", body = ErrorBody),
        (status = 409, description = "DCR is not enabled for the entry (`dcr_disabled`) or not configured correctly (`dcr_misconfigured`), or you have the most clients allowed (`client_limit`)", body = ErrorBody),
        (status = 429, description = "Too many registrations and rotations in the last hour (`rate_limited`); see Retry-After", body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 422, description = "A catalogue entry does not exist (`unprocessable_reference`), the IdP refused the registration (`idp_rejected`, with `idp_error` and `idp_error_description`), or the Idempotency-Key was used for another request (`idempotency_key_reused`)", body = ErrorBody),
        (status = 502, description = "The IdP refused Portico's credentials (`idp_rejected`), failed or is unreachable (`idp_unavailable`), or answered success with something unusable (`idp_invalid_response`: the client it created is deleted there again, or recorded as orphaned for the operators)", body = ErrorBody),
        (status = 504, description = "The IdP did not answer in time (`idp_unavailable`)", body = ErrorBody),
    ),
    security(("portal_session" = []))
)]
async fn create(
    State(state): State<AppState>,
    SignedIn(developer): SignedIn,
    headers: HeaderMap,
    JsonBody(request): JsonBody<ClientRequest>,
) -> Result<Response, ApiError> {
    let key = headers
        .get("idempotency-key")
        .ok_or_else(|| {
            ApiError::invalid(
                "Idempotency-Key",
                "send an Idempotency-Key header (a new one per form), so that a repeated submit \
                 does not register a second client",
            )
        })?
        .to_str()
        .map_err(|_| ApiError::invalid("Idempotency-Key", "must be visible ASCII"))?;
    let key = IdempotencyKey::parse(key)?;
    let issued = state
        .registrations()
        .register(&developer, key, request)
        .await?;
    let location = format!(
        "{}{}/oauth-clients/{}",
        state.settings().public_base_url,
        super::BASE,
        issued.client.id
    );
    let replayed = issued.replayed;
    let mut response =
        (StatusCode::CREATED, axum::Json(IssuedClient::from(issued))).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::try_from(location) {
        headers.insert(header::LOCATION, value);
    }
    if replayed {
        headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Inspect one of your clients, with its token endpoint and sample requests (without the
/// secret).
#[utoipa::path(
    get,
    path = "/portal/api/v1/oauth-clients/{id}",
    operation_id = "get_oauth_client",
    tag = "portal",
    params(("id" = String, Path, description = "The client's id (`cli_…`)")),
    responses(
        (status = 200, description = "The client", body = IssuedClient),
        (status = 404, description = "Not one of your clients (`not_found`)", body = ErrorBody),
    ),
    security(("portal_session" = []))
)]
async fn get(
    State(state): State<AppState>,
    SignedIn(developer): SignedIn,
    Path(id): Path<String>,
) -> Result<axum::Json<IssuedClient>, ApiError> {
    Ok(axum::Json(
        state.registrations().get_for(&developer, &id)?.into(),
    ))
}

/// One of your clients' usage over the last 30 days, per hour and per day (UTC): requests
/// let through and refused by reason.
#[utoipa::path(
    get,
    path = "/portal/api/v1/oauth-clients/{id}/usage",
    operation_id = "get_usage",
    tag = "portal",
    params(("id" = String, Path, description = "The client's id (`cli_…`)")),
    responses(
        (status = 200, description = "The usage", body = ClientUsageView),
        (status = 404, description = "Not one of your clients (`not_found`)", body = ErrorBody),
    ),
    security(("portal_session" = []))
)]
async fn usage(
    State(state): State<AppState>,
    SignedIn(developer): SignedIn,
    Path(id): Path<String>,
) -> Result<axum::Json<ClientUsageView>, ApiError> {
    state.registrations().get_for(&developer, &id)?;
    Ok(axum::Json(state.usage().of_client(&id)?))
}

/// Delete one of your clients at the IdP; the gateway refuses it at once.
#[utoipa::path(
    delete,
    path = "/portal/api/v1/oauth-clients/{id}",
    operation_id = "delete_oauth_client",
    tag = "portal",
    params(("id" = String, Path, description = "The client's id (`cli_…`)")),
    responses(
        (status = 204, description = "Deleted at the IdP and revoked"),
        (status = 404, description = "Not one of your clients (`not_found`)", body = ErrorBody),
        (status = 409, description = "The IdP cannot manage this client (`management_not_supported`); it is revoked", body = ErrorBody),
        (status = 502, description = "The IdP refused or failed (`idp_rejected`, `idp_unavailable`); the client is revoked, delete again to retry", body = ErrorBody),
        (status = 504, description = "The IdP did not answer in time (`idp_unavailable`); the client is revoked, delete again to retry", body = ErrorBody),
    ),
    security(("portal_session" = []))
)]
async fn delete(
    State(state): State<AppState>,
    SignedIn(developer): SignedIn,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.registrations().delete_for(&developer, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rotate the client secret. The new secret is shown this once; the old one stops working.
/// When the IdP keeps secrets on update (RFC 7592), the client is re-registered: the answer
/// then has a new `client_id` too.
#[utoipa::path(
    post,
    path = "/portal/api/v1/oauth-clients/{id}/rotate-secret",
    tag = "portal",
    params(("id" = String, Path, description = "The client's id (`cli_…`)")),
    responses(
        (status = 200, description = "Rotated: the new secret is shown this once", body = IssuedClient),
        (status = 404, description = "Not one of your clients (`not_found`)", body = ErrorBody),
        (status = 409, description = "The client is revoked (`conflict`), cannot be managed (`management_not_supported`), or Dynamic Client Registration is disabled for one of its catalogue entries (`dcr_disabled`): a rotation may register a new client", body = ErrorBody),
        (status = 422, description = "The IdP refused the update (`idp_rejected`)", body = ErrorBody),
        (status = 429, description = "Too many registrations and rotations in the last hour (`rate_limited`); see Retry-After", body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 502, description = "The IdP refused or failed (`idp_rejected`, `idp_unavailable`), or answered a replacement registration with something unusable (`idp_invalid_response`; the replacement is deleted at the IdP or recorded as orphaned)", body = ErrorBody),
        (status = 504, description = "The IdP did not answer in time (`idp_unavailable`)", body = ErrorBody),
    ),
    security(("portal_session" = []))
)]
async fn rotate_secret(
    State(state): State<AppState>,
    SignedIn(developer): SignedIn,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let issued = state.registrations().rotate_secret(&developer, &id).await?;
    let mut response = axum::Json(IssuedClient::from(issued)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Renew the client's access: every catalogue entry that allows renewal and whose policy has a
/// lifetime gives access until now plus that lifetime. Published to the gateways at once.
#[utoipa::path(
    post,
    path = "/portal/api/v1/oauth-clients/{id}/renew",
    tag = "portal",
    params(("id" = String, Path, description = "The client's id (`cli_…`)")),
    responses(
        (status = 200, description = "Renewed: `access_seconds_left` shows the new time left", body = IssuedClient),
        (status = 404, description = "Not one of your clients (`not_found`)", body = ErrorBody),
        (status = 409, description = "The client is revoked, or no catalogue entry of the client allows renewal (`conflict`): ask the operator", body = ErrorBody),
    ),
    security(("portal_session" = []))
)]
async fn renew(
    State(state): State<AppState>,
    SignedIn(developer): SignedIn,
    Path(id): Path<String>,
) -> Result<axum::Json<IssuedClient>, ApiError> {
    Ok(axum::Json(
        state
            .registrations()
            .renew_for(&developer, &id)
            .await?
            .into(),
    ))
}

/// Replace the client's redirect URIs at the IdP (RFC 7592 update of the whole registration).
#[utoipa::path(
    put,
    path = "/portal/api/v1/oauth-clients/{id}/redirect-uris",
    tag = "portal",
    params(("id" = String, Path, description = "The client's id (`cli_…`)")),
    request_body = RedirectUris,
    responses(
        (status = 200, description = "Updated", body = IssuedClient),
        (status = 400, description = "Bad field (`invalid_request`)", body = ErrorBody),
        (status = 404, description = "Not one of your clients (`not_found`)", body = ErrorBody),
        (status = 409, description = "The client is revoked (`conflict`) or cannot be managed (`management_not_supported`)", body = ErrorBody),
        (status = 422, description = "The IdP refused the URIs (`idp_rejected`)", body = ErrorBody),
        (status = 502, description = "The IdP refused or failed (`idp_rejected`, `idp_unavailable`)", body = ErrorBody),
        (status = 504, description = "The IdP did not answer in time (`idp_unavailable`)", body = ErrorBody),
    ),
    security(("portal_session" = []))
)]
async fn set_redirect_uris(
    State(state): State<AppState>,
    SignedIn(developer): SignedIn,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<RedirectUris>,
) -> Result<axum::Json<IssuedClient>, ApiError> {
    Ok(axum::Json(
        state
            .registrations()
            .set_redirect_uris(&developer, &id, input)
            .await?
            .into(),
    ))
}
