//! `/portal/api/v1/{signup,login,logout,me}`: developer accounts and sessions.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{SignedIn, session_cookie, session_set_cookie};
use crate::error::{ApiError, ErrorBody};
use crate::http::extract::{ClientAddress, JsonBody};
use crate::service::AppState;
use crate::service::developers::Developer;
use crate::service::portal::{LogIn, NewSession, SignUp};

/// Sign-up, log-in, log-out: no session needed.
pub fn public_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup))
        .routes(routes!(login))
        .routes(routes!(logout))
}

/// The signed-in developer.
pub fn private_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(me))
}

/// The developer with the session cookie.
fn with_cookie(state: &AppState, status: StatusCode, session: NewSession) -> Response {
    let mut response = (status, axum::Json(session.developer)).into_response();
    if let Some(cookie) = session_set_cookie(
        state,
        Some((session.id.expose(), session.max_age.as_secs())),
    ) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// Create a developer account and sign it in (sets the session cookie).
#[utoipa::path(
    post,
    path = "/portal/api/v1/signup",
    tag = "portal",
    request_body = SignUp,
    responses(
        (status = 201, description = "Created and signed in", body = Developer, headers(("Set-Cookie" = String))),
        (status = 400, description = "Bad field (`invalid_request`), e.g. a password shorter than 12 characters or a common one", body = ErrorBody),
        (status = 403, description = "Self sign-up is off (`signup_disabled`) or cross-site request (`forbidden_origin`)", body = ErrorBody),
        (status = 409, description = "The email is taken (`already_exists`)", body = ErrorBody),
    )
)]
async fn signup(
    State(state): State<AppState>,
    JsonBody(input): JsonBody<SignUp>,
) -> Result<Response, ApiError> {
    let session = state.portal().sign_up(input).await?;
    Ok(with_cookie(&state, StatusCode::CREATED, session))
}

/// Sign in (sets the session cookie).
#[utoipa::path(
    post,
    path = "/portal/api/v1/login",
    tag = "portal",
    request_body = LogIn,
    responses(
        (status = 200, description = "Signed in", body = Developer, headers(("Set-Cookie" = String))),
        (status = 400, description = "Bad body: not JSON (`malformed_json`), or a field missing, of the wrong type or unknown (`invalid_request`)", body = ErrorBody),
        (status = 401, description = "Wrong email or password (`invalid_credentials`)", body = ErrorBody),
        (status = 403, description = "Disabled account (`account_disabled`) or cross-site request (`forbidden_origin`)", body = ErrorBody),
        (status = 429, description = "Too many failed attempts for the email or from the address (`too_many_attempts`); see Retry-After", body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 503, description = "So many log-ins are being checked at once that this one is not queued (`login_busy`); not counted as an attempt; see Retry-After", body = ErrorBody, headers(("Retry-After" = u64))),
    )
)]
async fn login(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    JsonBody(input): JsonBody<LogIn>,
) -> Result<Response, ApiError> {
    let session = state.portal().log_in(input, address).await?;
    Ok(with_cookie(&state, StatusCode::OK, session))
}

/// Sign out: ends the session and removes the cookie (also without a session).
#[utoipa::path(
    post,
    path = "/portal/api/v1/logout",
    tag = "portal",
    responses(
        (status = 204, description = "Signed out", headers(("Set-Cookie" = String))),
        (status = 403, description = "Cross-site request (`forbidden_origin`)", body = ErrorBody),
    )
)]
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(id) = session_cookie(&headers) {
        state.portal().log_out(&id)?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(cookie) = session_set_cookie(&state, None) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// The signed-in developer.
#[utoipa::path(
    get,
    path = "/portal/api/v1/me",
    tag = "portal",
    responses(
        (status = 200, description = "The developer", body = Developer),
    ),
    security(("portal_session" = []))
)]
async fn me(SignedIn(developer): SignedIn) -> axum::Json<Developer> {
    axum::Json(developer)
}
