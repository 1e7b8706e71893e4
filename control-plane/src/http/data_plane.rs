//! `/v1`: what filters call, authenticated with a data-plane token: the snapshot long poll
//! and the unknown-`kid` report.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use portico_core::snapshot::{BINARY_MEDIA_TYPE, DELTA_MEDIA_TYPE};
use portico_core::usage::UsageReport;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::http::extract::{JsonBody, Query};
use crate::service::AppState;
use crate::service::jwks::KidReportOutcome;
use crate::service::snapshot::Published;

/// The OpenAPI security scheme of the data-plane routes.
pub const SECURITY_SCHEME: &str = "data_plane_token";
/// The longest a poll may be held, in seconds.
pub const MAX_WAIT_SECONDS: u64 = 300;
/// The wait when the filter asks none, in seconds.
pub const DEFAULT_WAIT_SECONDS: u64 = 30;
/// The response header naming the snapshot's version.
pub const VERSION_HEADER: &str = "x-portico-snapshot-version";
/// The response header of a delta answer naming the version the delta applies to (the poll's
/// `since`).
pub const DELTA_BASE_HEADER: &str = "x-portico-snapshot-delta-base";

/// The routes of this module, without authentication (which [`super::app`] adds).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(snapshot))
        .routes(routes!(unknown_kid))
        .routes(routes!(usage))
}

/// The token's id, put in the request by [`authenticate`].
#[derive(Debug, Clone)]
pub struct DataPlaneToken(pub String);

/// Authenticates the data-plane token: 401 without `Authorization: Bearer`, 403 when it
/// matches no configured token (compared in constant time).
pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = super::admin::bearer_token(request.headers()).ok_or(ApiError::Unauthorized)?;
    let id = state
        .settings()
        .data_plane_tokens
        .verify(presented)
        .ok_or(ApiError::Forbidden)?;
    request
        .extensions_mut()
        .insert(DataPlaneToken(id.to_owned()));
    Ok(next.run(request).await)
}

/// Query parameters of the snapshot poll.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SnapshotQuery {
    /// The version the filter has (0: none). A different version is answered at once.
    since: Option<u64>,
    /// How long to hold the poll when nothing is newer, in seconds (default 30, at most 300).
    #[param(maximum = 300)]
    wait: Option<u64>,
    /// The filter's node name, for the list of connected filters.
    node: Option<String>,
    /// The filter instance's id (1 to 64 letters, digits or `-`), generated when its Envoy
    /// started: one row per instance in the list of connected filters.
    instance: Option<String>,
}

/// Get the snapshot: at once when the server's version differs from `since`, otherwise when
/// it next changes, or 304 after `wait` seconds. Send `Accept:` with core's
/// `BINARY_MEDIA_TYPE` (`application/vnd.portico.snapshot.v7+postcard`) for the binary encoding;
/// JSON otherwise. A filter that also lists core's `DELTA_MEDIA_TYPE`
/// (`application/vnd.portico.snapshot-delta.v7+postcard`) is answered only what changed since
/// `since` when the control plane still holds that change (the last 64 versions published since
/// it started, within 8 MiB) and it is smaller than the snapshot; the whole snapshot otherwise.
#[utoipa::path(
    get,
    path = "/v1/snapshot",
    tag = "data-plane",
    params(SnapshotQuery),
    responses(
        (status = 200, description = "The snapshot (JSON or binary), or with a delta `Accept`, a delta from `since` \
            (`content-type: application/vnd.portico.snapshot-delta.v7+postcard`, base version in `x-portico-snapshot-delta-base`)",
            content(
                ("application/json"),
                ("application/vnd.portico.snapshot.v7+postcard"),
                ("application/vnd.portico.snapshot-delta.v7+postcard"),
            ),
            headers(
                ("x-portico-snapshot-version" = u64, description = "The version of the snapshot (or of the delta's result)"),
                ("x-portico-snapshot-delta-base" = u64, description = "With a delta only: the version it applies to"),
            )),
        (status = 304, description = "Nothing newer than `since` within `wait`"),
        (status = 400, description = "Bad parameter (`invalid_request`)", body = ErrorBody),
    ),
    security(("data_plane_token" = []))
)]
async fn snapshot(
    State(state): State<AppState>,
    axum::Extension(DataPlaneToken(token_id)): axum::Extension<DataPlaneToken>,
    Query(query): Query<SnapshotQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let since = query.since.unwrap_or(0);
    let wait = query.wait.unwrap_or(DEFAULT_WAIT_SECONDS);
    if wait > MAX_WAIT_SECONDS {
        return Err(ApiError::invalid(
            "wait",
            format!("wait must be at most {MAX_WAIT_SECONDS} seconds"),
        ));
    }
    let node = query.node.unwrap_or_else(|| "unknown".to_owned());
    if node.is_empty() || node.len() > 256 || node.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "node",
            "node must be 1 to 256 printable characters",
        ));
    }
    if let Some(instance) = &query.instance
        && !portico_core::rules::is_instance_id(instance)
    {
        return Err(ApiError::invalid(
            "instance",
            "instance must be 1 to 64 ASCII letters, digits or `-`",
        ));
    }
    let accepts = |media_type: &str| {
        headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .any(|value| value.contains(media_type))
    };
    let encoding = Encoding {
        binary: accepts(BINARY_MEDIA_TYPE),
        deltas: accepts(DELTA_MEDIA_TYPE),
    };
    let hub = state.snapshots();
    let mut changes = hub.subscribe();
    let _poll = hub.poll_started(
        &node,
        query.instance.as_deref(),
        &token_id,
        since,
        state.now_rfc3339(),
    );
    let deadline = state.instant() + Duration::from_secs(wait);
    // Among replicas on a shared store a filter can be a version ahead of this replica for a
    // moment (it polled one that loaded the version first): catch up before answering rather
    // than send it an older version, which would undo what it enforces (a revocation).
    let catch_up = state
        .store()
        .changes()
        .is_some()
        .then(|| state.instant() + crate::service::replicas::CATCH_UP);
    loop {
        let current = changes.borrow_and_update().clone();
        let catching_up = catch_up.filter(|until| state.instant() < *until);
        if let Some(current) = current
            && current.version != since
            && (current.version > since || catching_up.is_none())
        {
            return Ok(snapshot_response(&state, &current, since, encoding));
        }
        if state.is_draining() {
            break;
        }
        let until = catching_up.map_or(deadline, |until| until.min(deadline));
        match tokio::time::timeout_at(until, changes.changed()).await {
            Ok(Ok(())) => {}
            Err(_) if state.instant() < deadline => {}
            Err(_) => {
                // A wait shorter than the catch-up time ends with what this replica has.
                let current = changes.borrow_and_update().clone();
                if let Some(current) = current
                    && current.version != since
                {
                    return Ok(snapshot_response(&state, &current, since, encoding));
                }
                break;
            }
            Ok(Err(_)) => break,
        }
    }
    Ok(StatusCode::NOT_MODIFIED.into_response())
}

/// What a poll's `Accept` allows.
#[derive(Debug, Clone, Copy)]
struct Encoding {
    /// The binary snapshot encoding (else JSON).
    binary: bool,
    /// A binary delta instead of the whole snapshot, when there is one from `since`.
    deltas: bool,
}

/// The answer to a poll from version `since`: a delta when `encoding` allows it and the change
/// log has one, the whole snapshot otherwise; counted in the metrics by kind, with its size.
fn snapshot_response(
    state: &AppState,
    published: &Published,
    since: u64,
    encoding: Encoding,
) -> Response {
    let delta = if encoding.deltas && since != 0 {
        published.delta_since(since)
    } else {
        None
    };
    let (content_type, body) = match &delta {
        Some(delta) => (DELTA_MEDIA_TYPE, delta.as_ref().clone()),
        None if encoding.binary => (BINARY_MEDIA_TYPE, published.binary.clone()),
        None => ("application/json", published.json.clone()),
    };
    state
        .metrics()
        .record_snapshot_answer(delta.is_some(), body.len());
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::VARY, HeaderValue::from_static("accept"));
    if let Ok(version) = HeaderValue::try_from(published.version.to_string()) {
        headers.insert(VERSION_HEADER, version);
    }
    if delta.is_some()
        && let Ok(base) = HeaderValue::try_from(since.to_string())
    {
        headers.insert(DELTA_BASE_HEADER, base);
    }
    response
}

/// A filter's report of a token naming a key its snapshot lacks.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnknownKid {
    /// The issuer's id (as in the snapshot).
    pub issuer: String,
    /// The key the token named: its `kid`, or a certificate thumbprint written
    /// `x5t#S256:<base64url>` or `x5t:<base64url>` when the token named its key that way
    /// (RFC 7515 §4.1.7–4.1.8).
    pub kid: String,
}

/// What became of a report.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnknownKidAnswer {
    /// The outcome.
    pub outcome: KidReportOutcome,
}

/// What became of a usage report.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageAnswer {
    /// `counted`, or `duplicate` for a report counted before (sent again): either way, the
    /// filter forgets it.
    pub outcome: crate::service::usage::ReportOutcome,
    /// The reporting Envoy's share of every rate limit, in thousandths (1 to 1000), when the
    /// report named its `instance`: it enforces that part of each limit (`docs/limits.md`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_share: Option<u32>,
}

/// Report usage: the requests a filter VM let through and refused per OAuth client, and
/// charged per quota counter, since its last report. Each `(reporter, sequence)` is counted
/// once; quotas spent across the fleet reach every filter with the next snapshot.
#[utoipa::path(
    post,
    path = "/v1/usage",
    tag = "data-plane",
    request_body = UsageReport,
    responses(
        (status = 200, description = "Counted, or counted before", body = UsageAnswer),
        (status = 400, description = "Bad field (`invalid_request`) or body (`malformed_json`)", body = ErrorBody),
        (status = 503, description = "The store cannot be written or reached (`storage_unavailable`): send the report again", body = ErrorBody),
    ),
    security(("data_plane_token" = []))
)]
async fn usage(
    State(state): State<AppState>,
    axum::Extension(DataPlaneToken(token_id)): axum::Extension<DataPlaneToken>,
    JsonBody(report): JsonBody<UsageReport>,
) -> Result<axum::Json<UsageAnswer>, ApiError> {
    let recorded = state.usage().record(&token_id, &report).await?;
    state
        .metrics()
        .record_usage_report(recorded.outcome.label());
    Ok(axum::Json(UsageAnswer {
        outcome: recorded.outcome,
        rate_share: recorded.rate_share,
    }))
}

/// Report an unknown `kid`: the issuer's keys are refreshed at once (at most once per 10 s per
/// issuer), and new keys reach every filter with the next snapshot.
#[utoipa::path(
    post,
    path = "/v1/unknown-kid",
    tag = "data-plane",
    request_body = UnknownKid,
    responses(
        (status = 202, description = "Taken into account", body = UnknownKidAnswer),
        (status = 400, description = "Bad field (`invalid_request`) or body (`malformed_json`)", body = ErrorBody),
    ),
    security(("data_plane_token" = []))
)]
async fn unknown_kid(
    State(state): State<AppState>,
    JsonBody(report): JsonBody<UnknownKid>,
) -> Result<(StatusCode, axum::Json<UnknownKidAnswer>), ApiError> {
    if report.kid.is_empty() || report.kid.len() > 256 {
        return Err(ApiError::invalid("kid", "kid must be 1 to 256 characters"));
    }
    let outcome = state.keys().report_unknown_kid(&report.issuer, &report.kid);
    if matches!(
        outcome,
        crate::service::jwks::KidReportOutcome::Refreshing
            | crate::service::jwks::KidReportOutcome::Scheduled
    ) {
        // On a replica that does not publish, the publisher fetches. A failure to pass the
        // report on costs only this report (the filter reports again on the next such token).
        if let Err(error) = crate::service::replicas::Signals::new(&state)
            .request_key_refresh(&report.issuer, &report.kid)
        {
            tracing::warn!(issuer = %report.issuer, %error, "cannot pass the unknown kid on to the publishing replica");
        }
    }
    tracing::info!(issuer = %report.issuer, kid = %report.kid, ?outcome, "unknown kid reported");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(UnknownKidAnswer { outcome }),
    ))
}
