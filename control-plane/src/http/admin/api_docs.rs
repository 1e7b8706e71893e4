//! `/admin/v1/catalogue/{id}/openapi`: the OpenAPI document (3.0.x or 3.1.x, JSON or YAML)
//! that the portal shows on a catalogue entry's page. Not part of the data-plane snapshot.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Created, Tagged};
use crate::error::{ApiError, ErrorBody};
use crate::http::extract::{DocumentBody, IfMatch, Operator, Path};
use crate::service::api_docs::{DocumentSummary, StoredDocument};
use crate::service::{AppState, Versioned};

/// The routes of this resource.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get, put, delete))
}

/// A stored document as uploaded, with its media type and `ETag`.
pub fn document_response(document: Versioned<StoredDocument>) -> Response {
    let etag = document.etag();
    let media_type = document.value.summary.media_type.media_type();
    let mut response = (
        [(header::CONTENT_TYPE, HeaderValue::from_static(media_type))],
        document.value.text,
    )
        .into_response();
    if let Ok(value) = HeaderValue::try_from(etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// Read a catalogue entry's OpenAPI document, as uploaded (`application/json` or
/// `application/yaml`).
#[utoipa::path(
    get,
    path = "/admin/v1/catalogue/{id}/openapi",
    operation_id = "get_openapi",
    tag = "catalogue",
    params(("id" = String, Path, description = "The catalogue entry's id")),
    responses(
        (status = 200, description = "The document, byte for byte as uploaded", headers(("ETag" = String)),
            content(("application/json"), ("application/yaml"))),
        (status = 404, description = "No such entry, or it has no document (`not_found`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(document_response(state.api_docs().get(&id)?))
}

/// Attach (no If-Match) or replace (If-Match required) a catalogue entry's OpenAPI document:
/// OpenAPI 3.0.x or 3.1.x, as JSON or YAML, at most the body limit.
#[utoipa::path(
    put,
    path = "/admin/v1/catalogue/{id}/openapi",
    operation_id = "put_openapi",
    tag = "catalogue",
    params(
        ("id" = String, Path, description = "The catalogue entry's id"),
        ("If-Match" = Option<String>, Header, description = "Required to replace an existing document: the ETag from your last read, or `*`"),
    ),
    request_body(
        description = "An OpenAPI 3.0.x or 3.1.x document",
        content(("application/json"), ("application/yaml"))
    ),
    responses(
        (status = 200, description = "Replaced (or unchanged)", body = DocumentSummary, headers(("ETag" = String))),
        (status = 201, description = "Attached", body = DocumentSummary, headers(("ETag" = String), ("Location" = String))),
        (status = 404, description = "No such catalogue entry (`not_found`)", body = ErrorBody),
        (status = 412, description = "The document changed since your read, or If-Match was sent for a document that does not exist (`precondition_failed`)", body = ErrorBody),
        (status = 415, description = "Neither JSON nor YAML (`unsupported_media_type`)", body = ErrorBody),
        (status = 422, description = "Not a readable OpenAPI 3.0.x/3.1.x document (`invalid_openapi`): the message says where (line and column, or the path, also in `field`)", body = ErrorBody),
        (status = 428, description = "Replacing without If-Match (`precondition_required`)", body = ErrorBody),
    ),
    security(("admin_key" = []))
)]
async fn put(
    State(state): State<AppState>,
    Operator(actor): Operator,
    Path(id): Path<String>,
    IfMatch(precondition): IfMatch,
    body: DocumentBody,
) -> Result<Response, ApiError> {
    let (summary, created) = state
        .api_docs()
        .put(&actor, &id, &precondition, body.format, &body.bytes)
        .await?;
    Ok(if created {
        let path = format!("{}/catalogue/{id}/openapi", super::BASE);
        Created::new(&state, &path, summary).into_response()
    } else {
        Tagged(summary).into_response()
    })
}

/// Remove a catalogue entry's OpenAPI document (the portal then shows its description alone).
#[utoipa::path(
    delete,
    path = "/admin/v1/catalogue/{id}/openapi",
    operation_id = "delete_openapi",
    tag = "catalogue",
    params(
        ("id" = String, Path, description = "The catalogue entry's id"),
        ("If-Match" = String, Header, description = "The ETag from your last read, or `*`"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such entry, or it has no document (`not_found`)", body = ErrorBody),
        (status = 412, description = "The document changed since your read (`precondition_failed`)", body = ErrorBody),
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
    state.api_docs().delete(&actor, &id, &precondition).await?;
    Ok(StatusCode::NO_CONTENT)
}
