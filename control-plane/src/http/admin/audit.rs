//! `/admin/v1/audit`: the audit log, newest first.

use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::http::extract::Query;
use crate::service::audit::{AuditEntry, AuditFilter};
use crate::service::{AppState, Page, PageRequest, ResourceKind};

/// Query parameters of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListAudit {
    /// Items per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only changes to this kind of resource.
    resource_type: Option<ResourceKind>,
    /// Only changes to resources with this id.
    resource_id: Option<String>,
    /// Only changes made with the admin key of this id.
    admin_key: Option<String>,
}

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// List audit entries, newest first.
#[utoipa::path(
    get,
    path = "/admin/v1/audit",
    tag = "audit",
    params(ListAudit),
    responses(
        (status = 200, description = "A page of audit entries", body = Page<AuditEntry>),
        (status = 400, description = "Bad parameter (`invalid_request`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListAudit>,
) -> Result<axum::Json<Page<AuditEntry>>, ApiError> {
    let request = PageRequest::new(query.limit, query.cursor.as_deref())?;
    let filter = AuditFilter {
        resource_type: query.resource_type,
        resource_id: query.resource_id,
        admin_key: query.admin_key,
    };
    Ok(axum::Json(state.audit().list(&request, &filter)?))
}
