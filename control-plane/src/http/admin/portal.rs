//! `/admin/v1/portal`: the portal settings operators change at run time (self sign-up).

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Tagged;
use crate::error::{ApiError, ErrorBody};
use crate::http::extract::{IfMatch, JsonBody, Operator};
use crate::service::AppState;
use crate::service::portal::PortalSettings;

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_settings, put_settings))
}

/// Read the portal settings (the configuration's value, with ETag `"0"`, until first written).
#[utoipa::path(
    get,
    path = "/admin/v1/portal",
    tag = "developers",
    responses(
        (status = 200, description = "The settings", body = PortalSettings, headers(("ETag" = String))),
    ),
    security(("admin_key" = []))
)]
async fn get_settings(State(state): State<AppState>) -> Result<Tagged<PortalSettings>, ApiError> {
    Ok(Tagged(state.portal().settings()?))
}

/// Replace the portal settings: `{"self_signup": false}` closes sign-up (only operators then
/// create developers); `true` opens it.
#[utoipa::path(
    put,
    path = "/admin/v1/portal",
    tag = "developers",
    params(("If-Match" = String, Header, description = "The ETag from your last read, or `*`")),
    request_body = PortalSettings,
    responses(
        (status = 200, description = "Replaced", body = PortalSettings, headers(("ETag" = String))),
        (status = 400, description = "Bad field (`invalid_request`) or body (`malformed_json`)", body = ErrorBody),
        (status = 412, description = "The settings changed since your read (`precondition_failed`)", body = ErrorBody),
        (status = 428, description = "No If-Match header (`precondition_required`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn put_settings(
    State(state): State<AppState>,
    Operator(actor): Operator,
    IfMatch(precondition): IfMatch,
    JsonBody(input): JsonBody<PortalSettings>,
) -> Result<Tagged<PortalSettings>, ApiError> {
    Ok(Tagged(
        state
            .portal()
            .put_settings(&actor, &precondition, input)
            .await?,
    ))
}
