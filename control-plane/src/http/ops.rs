//! Operations endpoints: liveness (`/healthz`), readiness (`/readyz`), Prometheus metrics
//! (`/metrics`, also on the optional metrics address) and the OpenAPI document
//! (`/admin/v1/openapi.json`). None of them requires credentials.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::service::AppState;

/// The liveness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

/// The readiness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// Always `ready`.
    pub status: &'static str,
    /// The current store revision.
    pub revision: u64,
}

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(openapi_json))
        .routes(routes!(metrics))
}

/// The app of the metrics address (`PORTICO_METRICS_LISTEN`): `GET /metrics` only, with the
/// same answer as on the main listener; any other path is 404. Its requests are not counted
/// in the HTTP metrics.
pub fn metrics_app(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .with_state(state)
}

/// Prometheus metrics, in the text exposition format: requests by route template, method and
/// status with their durations, the snapshot's version, size, build time and publication
/// failures, connected filters and open long polls, and the bindings expiring within 7 days
/// (the names and labels are in README's metrics section).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "The metrics (text/plain; version=0.0.4)", body = String))
)]
async fn metrics(State(state): State<AppState>) -> Response {
    let expiries = state
        .snapshots()
        .current()
        .map(|published| published.binding_expiries.clone())
        .unwrap_or_default();
    let hub = state.snapshots();
    state.metrics().record_filters(
        hub.filters().len(),
        hub.open_polls(),
        state.replica().is_publisher(),
    );
    if let Ok(interrupted) = state.interrupted_registrations().list() {
        state
            .metrics()
            .record_interrupted_registrations(interrupted.len());
    }
    state.metrics().record_bindings(
        expiries.into_iter(),
        crate::service::oauth_clients::unix_seconds(state.now()),
    );
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics().render(),
    )
        .into_response()
}

/// Liveness: the process serves HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "Alive", body = Health))
)]
async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// Readiness: the store answers, the server is not shutting down, and the published snapshot
/// is the store's (publication does not fail).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Shutting down, store unavailable, or the published snapshot lags the store because publication fails (`not_ready`)", body = ErrorBody),
    )
)]
async fn readyz(State(state): State<AppState>) -> Result<axum::Json<Readiness>, ApiError> {
    if state.is_draining() {
        return Err(ApiError::NotReady("shutting down".to_owned()));
    }
    let revision = state.revision().map_err(|error| {
        tracing::warn!(%error, "readiness check failed");
        ApiError::NotReady("the store is unavailable".to_owned())
    })?;
    let publication = state.snapshots().status();
    if let Some(error) = publication.last_publish_error {
        return Err(ApiError::NotReady(format!(
            "the published snapshot is older than the store: {} attempt(s) to publish failed: \
             {error}",
            publication.consecutive_failures
        )));
    }
    Ok(axum::Json(Readiness {
        status: "ready",
        revision,
    }))
}

/// The OpenAPI 3.1 document of this server.
#[utoipa::path(
    get,
    path = "/admin/v1/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"))
)]
async fn openapi_json() -> Result<Response, ApiError> {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let document = match DOCUMENT.get() {
        Some(document) => document,
        None => {
            let json = crate::http::openapi()
                .to_pretty_json()
                .map_err(|error| ApiError::Internal(error.into()))?;
            DOCUMENT.get_or_init(|| json)
        }
    };
    let mut response = document.clone().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
