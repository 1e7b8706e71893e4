//! HTTP: the admin API under `/admin/v1`, the developer portal's API under `/portal/api/v1`,
//! the health endpoints, and the middleware around them (body limit, timeout, request tracing,
//! JSON answers for unknown routes and methods).
//!
//! Every route is registered through `utoipa_axum::routes!`, which takes the method and path
//! from the handler's `#[utoipa::path]`, so the router and the OpenAPI document
//! ([`openapi`]) come from the same declarations.

pub mod admin;
pub mod data_plane;
pub mod extract;
pub mod ops;
pub mod portal;
pub mod present;
pub mod web;

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{
    AllOfBuilder, ContentBuilder, ObjectBuilder, OpenApi as OpenApiDocument, Ref, RefOr,
    ResponseBuilder, Schema, Type,
};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use crate::error::{ApiError, ErrorBody};
use crate::service::AppState;

/// The document-level parts of the OpenAPI document; the paths come from the routers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Portico admin API",
        description = "Operators' REST API of the Portico control plane, and the developer \
                       portal's JSON API. Every operation under /admin/v1 except this document \
                       requires `Authorization: Bearer <admin key>`; portal operations under \
                       /portal/api/v1 (except sign-up, log-in and log-out) require the \
                       `portico_session` cookie. See docs/admin-api.md and docs/portal-api.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "issuers", description = "Trusted token issuers and their keys"),
        (name = "apis", description = "Protected APIs"),
        (name = "policies", description = "Access policies"),
        (name = "catalogue", description = "Catalogue entries published in the portal"),
        (name = "dcr", description = "Dynamic Client Registration settings"),
        (name = "developers", description = "Developer accounts"),
        (name = "oauth-clients", description = "OAuth clients registered for developers"),
        (name = "audit", description = "The audit log"),
        (name = "snapshot", description = "The snapshot in force and the filters that sync it"),
        (name = "data-plane", description = "What filters call, with a data-plane token"),
        (name = "portal", description = "The developer portal: accounts, catalogue, OAuth clients"),
        (name = "operations", description = "Health, readiness and this document")
    )
)]
struct ApiDoc;

/// Declares the bearer scheme, adds the responses that every operation can give, and makes
/// operation ids unique by prefixing them with the operation's tag (`issuers_list`, ...).
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut OpenApiDocument) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            admin::SECURITY_SCHEME,
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            data_plane::SECURITY_SCHEME,
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        components.add_security_scheme(
            portal::SECURITY_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::service::portal::SESSION_COOKIE,
            ))),
        );
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                        .build(),
                )
                .build()
        };
        let schemas = components.schemas.clone();
        for (path, item) in &mut openapi.paths.paths {
            let on_portal = path.starts_with(portal::BASE);
            for (method, operation) in [
                (Method::GET, item.get.as_mut()),
                (Method::POST, item.post.as_mut()),
                (Method::PUT, item.put.as_mut()),
                (Method::DELETE, item.delete.as_mut()),
            ]
            .into_iter()
            .filter_map(|(method, operation)| operation.map(|operation| (method, operation)))
            {
                let changes_state = method != Method::GET;
                if let (Some(id), Some(tag)) = (
                    operation.operation_id.as_mut(),
                    operation.tags.as_ref().and_then(|tags| tags.first()),
                ) {
                    *id = format!("{}_{id}", tag.replace('-', "_"));
                }
                let secured = operation
                    .security
                    .as_ref()
                    .is_some_and(|security| !security.is_empty());
                let credential = if operation.tags.as_ref().and_then(|tags| tags.first())
                    == Some(&"data-plane".to_owned())
                {
                    "data-plane token"
                } else {
                    "admin key"
                };
                let has_body = operation.request_body.is_some();
                let has_if_match = operation.parameters.as_ref().is_some_and(|parameters| {
                    parameters.iter().any(|parameter| {
                        matches!(parameter, RefOr::T(parameter)
                            if parameter.parameter_in == ParameterIn::Header
                                && parameter.name.eq_ignore_ascii_case("if-match"))
                    })
                });
                let creates =
                    method == Method::POST && operation.responses.responses.contains_key("201");
                if creates && let Some(RefOr::T(body)) = operation.request_body.as_mut() {
                    require_id(body, &schemas);
                }
                let responses = &mut operation.responses.responses;
                if has_body {
                    add_cause(
                        responses,
                        "400",
                        "malformed_json",
                        "Bad body: not JSON (`malformed_json`), or a field missing, of the wrong \
                         type or unknown (`invalid_request`)",
                        &error,
                    );
                }
                if has_if_match {
                    add_cause(
                        responses,
                        "400",
                        "If-Match",
                        "If-Match is not a list of entity tags or `*` (`invalid_request`)",
                        &error,
                    );
                }
                if on_portal && changes_state {
                    add_cause(
                        responses,
                        "403",
                        "forbidden_origin",
                        "Cross-site request: the Origin is not the portal's (`forbidden_origin`)",
                        &error,
                    );
                }
                if secured && on_portal {
                    responses.insert(
                        "401".to_owned(),
                        error("No live session (`unauthenticated`): log in first").into(),
                    );
                } else if secured {
                    responses.insert(
                        "401".to_owned(),
                        error(&format!("No {credential} (`unauthorized`)")).into(),
                    );
                    responses.insert(
                        "403".to_owned(),
                        error(&format!("The {credential} is not valid (`forbidden`)")).into(),
                    );
                }
                if has_body {
                    responses.insert(
                        "413".to_owned(),
                        error("The body exceeds the limit (`payload_too_large`)").into(),
                    );
                }
                if has_body || (on_portal && changes_state) {
                    responses.insert(
                        "415".to_owned(),
                        error("The body (or, on the portal, the request) is not JSON (`unsupported_media_type`)").into(),
                    );
                }
                responses.insert(
                    "500".to_owned(),
                    error("Internal failure (`internal`); details are logged").into(),
                );
                // An operation's own 503 (e.g. `login_busy`) keeps its description and
                // headers; the shared causes are added to it.
                const UNAVAILABLE: &str = "timed out (`timeout`), shutting down (`not_ready`) or \
                     the store is unavailable: the data directory cannot be written, or the \
                     PostgreSQL database cannot be reached (`storage_unavailable`)";
                match responses.get_mut("503") {
                    Some(RefOr::T(own)) => {
                        own.description = format!("{}; or {UNAVAILABLE}", own.description);
                    }
                    _ => {
                        responses.insert(
                            "503".to_owned(),
                            error(&format!("Unavailable: {UNAVAILABLE}")).into(),
                        );
                    }
                }
            }
        }
    }
}

/// An operator-chosen id, as `service::validate::is_slug` accepts it.
const ID_PATTERN: &str = "^[a-z0-9][a-z0-9_-]{0,63}$";

/// Makes `id` required in the body of a create whose input schema has one: the schema is shared
/// with the update, where the id may be left out, but a create without it is refused.
fn require_id(body: &mut RequestBody, schemas: &BTreeMap<String, RefOr<Schema>>) {
    for content in body.content.values_mut() {
        let RefOr::T(content) = content else {
            continue;
        };
        let Some(RefOr::Ref(input)) = &content.schema else {
            continue;
        };
        let name = input.ref_location.rsplit('/').next().unwrap_or_default();
        let Some(RefOr::T(Schema::Object(object))) = schemas.get(name) else {
            continue;
        };
        if !object.properties.contains_key("id") {
            continue;
        }
        let id = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(ID_PATTERN))
            .description(Some(
                "The new resource's id: 1 to 64 lower-case letters, digits, `-` or `_`, \
                 starting with a letter or digit",
            ));
        let required = ObjectBuilder::new().required("id").property("id", id);
        content.schema = Some(
            AllOfBuilder::new()
                .item(RefOr::Ref(input.clone()))
                .item(required)
                .into(),
        );
    }
}

/// Documents `cause` under `status`: a new error response with `description`, or, when the
/// operation already documents `status` without mentioning `cause`, `description` appended to
/// its own.
fn add_cause(
    responses: &mut BTreeMap<String, RefOr<utoipa::openapi::Response>>,
    status: &str,
    cause: &str,
    description: &str,
    error: &dyn Fn(&str) -> utoipa::openapi::Response,
) {
    match responses.get_mut(status) {
        Some(RefOr::T(own)) => {
            if !own.description.contains(cause) {
                own.description = format!("{}; or {description}", own.description);
            }
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            responses.insert(status.to_owned(), error(description).into());
        }
    }
}

/// The routes without middleware, with their OpenAPI declarations.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(admin::router())
        .merge(data_plane::router())
        .merge(portal::router())
        .merge(ops::router())
}

/// The OpenAPI 3.1 document of every route of [`app`].
pub fn openapi() -> OpenApiDocument {
    let mut document = routes().into_openapi();
    Conventions.modify(&mut document);
    document
}

/// The whole HTTP application over `state`.
pub fn app(state: AppState) -> Router {
    let (router, _) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(admin::router().route_layer(middleware::from_fn_with_state(
            state.clone(),
            admin::authenticate,
        )))
        .merge(
            data_plane::router().route_layer(middleware::from_fn_with_state(
                state.clone(),
                data_plane::authenticate,
            )),
        )
        .merge(portal::guarded_router(&state))
        .merge(ops::router())
        .split_for_parts();
    router
        .merge(web::router(&state))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.settings().body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), timeout))
        .layer(middleware::from_fn_with_state(state.clone(), count_request))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .with_state(state)
}

/// The span every request's log lines carry: method, route template (`/admin/v1/apis/{id}`,
/// absent when no route matched) and target with query values redacted
/// ([`crate::redact::path_and_query`]); never headers, so no credential reaches a log line.
fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let uri = request.uri();
    tracing::info_span!(
        "request",
        method = %request.method(),
        route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str),
        target = %crate::redact::path_and_query(uri.path(), uri.query()),
    )
}

async fn no_route(uri: Uri) -> ApiError {
    ApiError::NoRoute(uri.path().to_owned())
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}

/// Counts every answered request in the metrics, by route template, method and status.
async fn count_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let method = request.method().clone();
    let started = state.instant();
    let response = next.run(request).await;
    state.metrics().record_request(
        route.as_deref(),
        method.as_str(),
        response.status().as_u16(),
        state
            .instant()
            .saturating_duration_since(started)
            .as_secs_f64(),
    );
    response
}

/// Answers 503 `timeout` when a request takes longer than the configured limit.
async fn timeout(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // A snapshot poll is held on purpose; it has its own bound.
    let limit = if request.uri().path() == "/v1/snapshot" {
        std::time::Duration::from_secs(data_plane::MAX_WAIT_SECONDS + 10)
    } else {
        state.settings().request_timeout
    };
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout {
            seconds: limit.as_secs(),
        }
        .into_response(),
    }
}

#[cfg(test)]
mod audit_tests;
#[cfg(test)]
mod tests;
