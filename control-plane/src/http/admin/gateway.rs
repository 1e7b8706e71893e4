//! `/admin/v1/gateway`: the settings that concern every request a filter sees.

use axum::extract::State;
use portico_core::snapshot::GlobalSpec;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Tagged;
use crate::error::{ApiError, ErrorBody};
use crate::http::extract::{IfMatch, JsonBody, Operator};
use crate::service::AppState;
use crate::service::gateway::GatewaySettingsInput;

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_settings, put_settings))
}

/// Read the gateway settings (defaults, `unmatched: pass`, with ETag `"0"` until first
/// written).
#[utoipa::path(
    get,
    path = "/admin/v1/gateway",
    tag = "gateway",
    responses(
        (status = 200, description = "The gateway settings", body = GlobalSpec, headers(("ETag" = String))),
    ),
    security(("admin_key" = []))
)]
async fn get_settings(State(state): State<AppState>) -> Result<Tagged<GlobalSpec>, ApiError> {
    Ok(Tagged(state.gateway().get()?))
}

/// Replace the gateway settings. Every filter applies them with the next snapshot, unless its
/// plugin configuration sets its own `global` section.
#[utoipa::path(
    put,
    path = "/admin/v1/gateway",
    tag = "gateway",
    params(("If-Match" = String, Header, description = "The ETag from your last read, or `*`")),
    request_body = GatewaySettingsInput,
    responses(
        (status = 200, description = "Replaced", body = GlobalSpec, headers(("ETag" = String))),
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
    JsonBody(input): JsonBody<GatewaySettingsInput>,
) -> Result<Tagged<GlobalSpec>, ApiError> {
    Ok(Tagged(
        state.gateway().put(&actor, &precondition, input).await?,
    ))
}
