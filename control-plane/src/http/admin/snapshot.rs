//! `/admin/v1/snapshot` and `/admin/v1/filters`: what the filters are told, and which filters
//! are listening.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::service::AppState;
use crate::service::snapshot::{ConnectedFilter, PublishStatus, SnapshotCounts};

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(snapshot))
        .routes(routes!(filters))
}

/// The snapshot in force.
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotInfo {
    /// Its version (filters report theirs in `/admin/v1/filters`).
    pub version: u64,
    /// When it was built (RFC 3339).
    pub built_at: String,
    /// Its size in the binary encoding that filters fetch, in bytes.
    pub binary_bytes: usize,
    /// Its size as JSON, in bytes.
    pub json_bytes: usize,
    /// The SHA-256 digest of its content (64 hex digits; see `docs/snapshot.md`): what a
    /// filter checks the result of a delta against.
    pub digest: String,
    /// The oldest version from which a filter is answered a delta rather than the whole
    /// snapshot; absent when none is (just after a start, or after a very large change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deltas_since: Option<u64>,
    /// What it holds.
    pub counts: SnapshotCounts,
    /// How publication is going: a `last_publish_error` means the store has changed since this
    /// snapshot and the change could not be published.
    #[serde(flatten)]
    pub publication: PublishStatus,
}

/// The filters seen in the last day.
#[derive(Debug, Serialize, ToSchema)]
pub struct Filters {
    /// One per node name.
    pub items: Vec<ConnectedFilter>,
}

/// Read the version and size of the snapshot in force.
#[utoipa::path(
    get,
    path = "/admin/v1/snapshot",
    tag = "snapshot",
    responses(
        (status = 200, description = "The snapshot in force", body = SnapshotInfo),
        (status = 503, description = "No snapshot built yet (`not_ready`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn snapshot(State(state): State<AppState>) -> Result<axum::Json<SnapshotInfo>, ApiError> {
    let current = state
        .snapshots()
        .current()
        .ok_or_else(|| ApiError::NotReady("no snapshot has been built yet".to_owned()))?;
    Ok(axum::Json(SnapshotInfo {
        version: current.version,
        built_at: current.built_at.clone(),
        binary_bytes: current.binary.len(),
        json_bytes: current.json.len(),
        digest: current.digest.to_string(),
        deltas_since: current.deltas.oldest_base(),
        counts: current.counts,
        publication: state.snapshots().status(),
    }))
}

/// List the filters that synced in the last day: their node name, the version they have, when
/// they last asked, and whether they are waiting for the next change right now.
#[utoipa::path(
    get,
    path = "/admin/v1/filters",
    tag = "snapshot",
    responses((status = 200, description = "The filters", body = Filters)),
    security(("admin_key" = []))
)]
async fn filters(State(state): State<AppState>) -> axum::Json<Filters> {
    let mut items = state.snapshots().filters();
    for filter in &mut items {
        filter.rate_share = filter
            .instance
            .as_deref()
            .and_then(|instance| state.usage().last_rate_share(instance));
    }
    axum::Json(Filters { items })
}
