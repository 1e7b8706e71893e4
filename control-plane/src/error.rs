//! The control plane's one error type, [`ApiError`], and its mapping to HTTP.
//!
//! This is the only place where an error becomes a status code. The body is always
//! `{"error": "<stable code>", "message": "<human text>"}`, plus `field` for a request field
//! at fault, `referrers` when a resource is still in use, and `idp_error` /
//! `idp_error_description` when an identity provider refused a request. Internal errors answer
//! 500 with a generic message; their details go to the log only.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::service::ResourceRef;
use crate::store::StoreError;

/// Every error that the admin API and the portal API can answer with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `invalid_request`: a field (or parameter, or header) has a bad value.
    #[error("{message}")]
    InvalidRequest {
        /// The field at fault, as a path such as `access_rights[0].api`.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// 400 `malformed_json`: the body is not JSON.
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    /// 401 `unauthorized`: no admin credentials.
    #[error("admin credentials are required: send `Authorization: Bearer <admin key>`")]
    Unauthorized,
    /// 403 `forbidden`: credentials that match no admin key.
    #[error("the admin key is not valid")]
    Forbidden,
    /// 404 `not_found`: the resource does not exist.
    #[error("{kind} `{id}` does not exist")]
    NotFound {
        /// The kind of resource, in words.
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// 404 `not_found`: no route matches the path.
    #[error("no route for {0}")]
    NoRoute(String),
    /// 405 `method_not_allowed`: the path exists, the method does not.
    #[error("method {0} is not allowed on this path")]
    MethodNotAllowed(String),
    /// 409 `already_exists`: a resource with this id (or unique field) exists.
    #[error("{message}")]
    AlreadyExists {
        /// The unique field, e.g. `id` or `email`.
        field: String,
        /// What exists already.
        message: String,
    },
    /// 409 `conflict`: the change clashes with another resource or a concurrent change.
    #[error("{message}")]
    Conflict {
        /// The field at fault, if one is.
        field: Option<String>,
        /// What clashes.
        message: String,
    },
    /// 422 `invalid_snapshot`: the change would leave a snapshot that filters refuse (core's
    /// rules); nothing was stored.
    #[error("{message}")]
    InvalidSnapshot {
        /// The field at fault, when it is one of this request's.
        field: Option<String>,
        /// What rule it breaks, naming the resource.
        message: String,
    },
    /// 409 `in_use`: the resource is still referenced.
    #[error("{kind} `{id}` is still referenced by {} other resource(s)", .referrers.len())]
    InUse {
        /// The kind of resource, in words.
        kind: &'static str,
        /// Its id.
        id: String,
        /// What refers to it.
        referrers: Vec<ResourceRef>,
    },
    /// 412 `precondition_failed`: `If-Match` names a version that is no longer current (or
    /// the resource does not exist).
    #[error("{}", match .current {
        Some(current) => format!(
            "the resource has changed since you read it (its ETag is now {current}); read it \
             again and retry"
        ),
        None => "If-Match was sent but the resource does not exist".to_owned(),
    })]
    PreconditionFailed {
        /// The current ETag, if the resource exists.
        current: Option<String>,
    },
    /// 428 `precondition_required`: an update or delete without `If-Match`.
    #[error(
        "this change requires an If-Match header with the ETag from your last read \
         (or If-Match: * to overwrite unconditionally)"
    )]
    PreconditionRequired,
    /// 413 `payload_too_large`: the body exceeds the limit.
    #[error("the request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// 415 `unsupported_media_type`: a body that is not `application/json`.
    #[error("the request body must be JSON: send Content-Type: application/json")]
    UnsupportedMediaType,
    /// 422 `unprocessable_reference`: the body names a resource that does not exist.
    #[error("{message}")]
    UnprocessableReference {
        /// The field holding the reference.
        field: String,
        /// Which reference is missing.
        message: String,
    },
    /// 401 `invalid_credentials`: the email and password do not match an account (the same
    /// answer whether or not the email exists).
    #[error("the email address or the password is wrong")]
    InvalidCredentials,
    /// 401 `unauthenticated`: a portal operation without a valid session.
    #[error("sign in first: this needs a portal session (log in at /portal/api/v1/login)")]
    Unauthenticated,
    /// 403 `account_disabled`: the right password for a disabled developer account.
    #[error("this developer account is disabled; ask the portal's operators")]
    AccountDisabled,
    /// 403 `forbidden_origin`: a state-changing portal request from another site.
    #[error(
        "the request's Origin {0:?} is not this portal's ({1}); cross-site requests are refused"
    )]
    ForbiddenOrigin(String, String),
    /// 429 `too_many_attempts`: too many failed log-ins for this email or from this address;
    /// retry later.
    #[error("too many failed log-in attempts; retry in {retry_after} seconds")]
    TooManyAttempts {
        /// Seconds until the next attempt is accepted (sent as `Retry-After`).
        retry_after: u64,
    },
    /// 503 `login_busy`: so many log-ins are being checked at once that this one is not
    /// queued (a log-in flood); retry later. The attempt is not counted.
    #[error("too many log-ins are being checked right now; retry in {retry_after} seconds")]
    LoginBusy {
        /// Seconds to wait before retrying (sent as `Retry-After`).
        retry_after: u64,
    },
    /// 429 `rate_limited`: too many client registrations or secret rotations by this developer
    /// in the last hour; retry later.
    #[error("too many client registrations or secret rotations; retry in {retry_after} seconds")]
    RateLimited {
        /// Seconds until the next one is accepted (sent as `Retry-After`).
        retry_after: u64,
    },
    /// 409 `client_limit`: the developer already has the most OAuth clients allowed.
    #[error("you already have {0} OAuth clients, the most allowed; delete one first")]
    ClientLimit(u32),
    /// 403 `signup_disabled`: self sign-up is switched off; operators create developers.
    #[error("sign-up is closed on this portal; ask its operators for an account")]
    SignupDisabled,
    /// 403 `csrf`: a portal form without the token of the page that showed it.
    #[error(
        "this form has expired or did not come from this portal; reload the page and try again"
    )]
    Csrf,
    /// 422 `invalid_openapi`: an uploaded OpenAPI document that cannot be read (syntax: the
    /// message gives the line and column) or is not a valid OpenAPI 3.0.x/3.1.x document
    /// (structure: `field` is the path to the part at fault).
    #[error("{message}")]
    InvalidOpenApi {
        /// The path to the part of the document at fault, e.g. `paths["/orders"].get`.
        field: Option<String>,
        /// What is wrong, and where.
        message: String,
    },
    /// 415 `unsupported_media_type`: an OpenAPI document sent as neither JSON nor YAML.
    #[error(
        "an OpenAPI document must be sent as Content-Type: application/json or application/yaml"
    )]
    UnsupportedDocumentType,
    /// 422 `idempotency_key_reused`: the `Idempotency-Key` was used for a different request.
    #[error(
        "this Idempotency-Key was already used for a different request; use a new key for a new \
         form"
    )]
    IdempotencyKeyReused,
    /// 409 `dcr_disabled`: Dynamic Client Registration is not enabled for the catalogue entry
    /// (registering a client, or rotating a secret, which may register a replacement).
    #[error("{0}")]
    DcrDisabled(String),
    /// 409 `keys_not_fetched`: the issuer's keys are given inline, so there is nothing to fetch.
    #[error(
        "issuer `{0}` has inline keys: Portico never fetches them; change the keys with PUT \
         /admin/v1/issuers/{0}"
    )]
    KeysNotFetched(String),
    /// 409 `dcr_misconfigured`: the DCR settings cannot work with their provider.
    #[error("{0}")]
    DcrMisconfigured(String),
    /// 422 `discovery_failed`: saving enabled DCR settings needed the IdP's discovery document,
    /// and it could not be used.
    #[error("the identity provider's discovery failed: {0}")]
    DiscoveryFailed(String),
    /// 422 (the IdP refused the request's data) or 502 (the IdP refused Portico's credentials,
    /// or has no such client) `idp_rejected`, with the IdP's `error` and `error_description`.
    #[error("{message}")]
    IdpRejected {
        /// The status Portico answers with.
        status: StatusCode,
        /// What happened, including the IdP's texts.
        message: String,
        /// The IdP's `error`.
        idp_error: Option<String>,
        /// The IdP's `error_description`.
        idp_error_description: Option<String>,
    },
    /// 504 (timeout) or 502 `idp_unavailable`: the IdP could not be reached, did not answer in
    /// time, or failed (5xx).
    #[error("{message}")]
    IdpUnavailable {
        /// What happened.
        message: String,
        /// Whether the IdP did not answer in time.
        timeout: bool,
    },
    /// 502 `idp_invalid_response`: the IdP answered success with something unusable.
    #[error("{0}")]
    IdpInvalidResponse(String),
    /// 409 `management_not_supported`: the client cannot be managed at the IdP (RFC 7592).
    #[error("{0}")]
    ManagementNotSupported(String),
    /// 503 `timeout`: the request took longer than the configured limit.
    #[error("the request took longer than {seconds} seconds")]
    Timeout {
        /// The limit in seconds.
        seconds: u64,
    },
    /// 503 `not_ready`: the server is shutting down or its store is unavailable.
    #[error("not ready: {0}")]
    NotReady(String),
    /// A storage failure (logged, not returned): 409 `conflict` for a concurrent change, 503
    /// `storage_unavailable` when the data directory cannot be written or the database cannot
    /// be reached, 500 `internal` otherwise.
    #[error("storage failure")]
    Store(#[from] StoreError),
    /// 500 `internal`: any other failure (logged, not returned).
    #[error("internal failure")]
    Internal(#[from] anyhow::Error),
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable code, e.g. `invalid_request`.
    pub error: &'static str,
    /// A human-readable explanation.
    pub message: String,
    /// The request field at fault (validation and reference errors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The resources that still refer to the one being deleted (`in_use`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrers: Option<Vec<ResourceRef>>,
    /// The identity provider's `error` (`idp_rejected`), e.g. `invalid_redirect_uri`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idp_error: Option<String>,
    /// The identity provider's `error_description` (`idp_rejected`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idp_error_description: Option<String>,
}

impl ApiError {
    /// A 400 for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidRequest {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// A 422 for a reference in `field`.
    pub fn unknown_reference(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::UnprocessableReference {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest { .. } | ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } | ApiError::NoRoute(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } | ApiError::InUse { .. } => {
                StatusCode::CONFLICT
            }
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType | ApiError::UnsupportedDocumentType => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::UnprocessableReference { .. }
            | ApiError::InvalidSnapshot { .. }
            | ApiError::IdempotencyKeyReused
            | ApiError::InvalidOpenApi { .. }
            | ApiError::DiscoveryFailed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::ClientLimit(_) => StatusCode::CONFLICT,
            ApiError::SignupDisabled | ApiError::Csrf => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::InvalidCredentials | ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::AccountDisabled | ApiError::ForbiddenOrigin(..) => StatusCode::FORBIDDEN,
            ApiError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::DcrDisabled(_)
            | ApiError::KeysNotFetched(_)
            | ApiError::DcrMisconfigured(_)
            | ApiError::ManagementNotSupported(_) => StatusCode::CONFLICT,
            ApiError::IdpRejected { status, .. } => *status,
            ApiError::IdpUnavailable { timeout: true, .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::IdpUnavailable { .. } | ApiError::IdpInvalidResponse(_) => {
                StatusCode::BAD_GATEWAY
            }
            ApiError::Timeout { .. } | ApiError::NotReady(_) | ApiError::LoginBusy { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Store(StoreError::Conflict { .. }) => StatusCode::CONFLICT,
            ApiError::Store(StoreError::Unwritable(_) | StoreError::Unavailable(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Store(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The seconds a client should wait before retrying (sent as `Retry-After`, RFC 9110
    /// §10.2.3), for the errors that have one: 429 `too_many_attempts`, 429 `rate_limited`
    /// and 503 `login_busy`.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::TooManyAttempts { retry_after }
            | ApiError::RateLimited { retry_after }
            | ApiError::LoginBusy { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest { .. } => "invalid_request",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::NotFound { .. } | ApiError::NoRoute(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::AlreadyExists { .. } => "already_exists",
            ApiError::Conflict { .. } | ApiError::Store(StoreError::Conflict { .. }) => "conflict",
            ApiError::Store(StoreError::Unwritable(_) | StoreError::Unavailable(_)) => {
                "storage_unavailable"
            }
            ApiError::InUse { .. } => "in_use",
            ApiError::InvalidSnapshot { .. } => "invalid_snapshot",
            ApiError::PreconditionFailed { .. } => "precondition_failed",
            ApiError::PreconditionRequired => "precondition_required",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType | ApiError::UnsupportedDocumentType => {
                "unsupported_media_type"
            }
            ApiError::UnprocessableReference { .. } => "unprocessable_reference",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::AccountDisabled => "account_disabled",
            ApiError::ForbiddenOrigin(..) => "forbidden_origin",
            ApiError::TooManyAttempts { .. } => "too_many_attempts",
            ApiError::LoginBusy { .. } => "login_busy",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::ClientLimit(_) => "client_limit",
            ApiError::SignupDisabled => "signup_disabled",
            ApiError::Csrf => "csrf",
            ApiError::InvalidOpenApi { .. } => "invalid_openapi",
            ApiError::DcrDisabled(_) => "dcr_disabled",
            ApiError::KeysNotFetched(_) => "keys_not_fetched",
            ApiError::DcrMisconfigured(_) => "dcr_misconfigured",
            ApiError::DiscoveryFailed(_) => "discovery_failed",
            ApiError::IdpRejected { .. } => "idp_rejected",
            ApiError::IdpUnavailable { .. } => "idp_unavailable",
            ApiError::IdpInvalidResponse(_) => "idp_invalid_response",
            ApiError::ManagementNotSupported(_) => "management_not_supported",
            ApiError::Timeout { .. } => "timeout",
            ApiError::NotReady(_) => "not_ready",
            ApiError::Store(_) | ApiError::Internal(_) => "internal",
        }
    }

    /// The body sent to the client.
    pub fn body(&self) -> ErrorBody {
        let message = match self {
            ApiError::Store(StoreError::Conflict { .. }) => {
                "another change was committed at the same time; retry".to_owned()
            }
            ApiError::Store(StoreError::Unwritable(_)) => {
                "the control plane cannot store changes right now (its data directory cannot be \
                 written); nothing was changed, reads keep working; retry later"
                    .to_owned()
            }
            ApiError::Store(StoreError::Unavailable(_)) => {
                "the control plane cannot reach its database right now; the data plane keeps \
                 its last snapshot; retry later (if this answered a change, read before \
                 retrying: the change may have been stored just before the database was lost)"
                    .to_owned()
            }
            ApiError::Store(_) | ApiError::Internal(_) => {
                "an internal error occurred; the details are in the server log".to_owned()
            }
            other => other.to_string(),
        };
        let field = match self {
            ApiError::InvalidRequest { field, .. }
            | ApiError::Conflict { field, .. }
            | ApiError::InvalidSnapshot { field, .. }
            | ApiError::InvalidOpenApi { field, .. } => field.clone(),
            ApiError::AlreadyExists { field, .. }
            | ApiError::UnprocessableReference { field, .. } => Some(field.clone()),
            _ => None,
        };
        let referrers = match self {
            ApiError::InUse { referrers, .. } => Some(referrers.clone()),
            _ => None,
        };
        let (idp_error, idp_error_description) = match self {
            ApiError::IdpRejected {
                idp_error,
                idp_error_description,
                ..
            } => (idp_error.clone(), idp_error_description.clone()),
            _ => (None, None),
        };
        ErrorBody {
            error: self.code(),
            message,
            field,
            referrers,
            idp_error,
            idp_error_description,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Store(StoreError::Conflict { .. }) => {
                tracing::warn!(error = %self, "concurrent store change");
            }
            ApiError::Store(error) => {
                tracing::error!(%error, "storage failure");
            }
            ApiError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "internal failure");
            }
            _ => {}
        }
        let mut response = (self.status(), Json(self.body())).into_response();
        if matches!(self, ApiError::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::InvalidRequest {
            field: None,
            message: rejection.body_text(),
        }
    }
}
