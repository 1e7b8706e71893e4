//! Sign-up, log-in, log-out and the profile (password change).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::views::{FieldErrors, Home, Layout, LogInPage, Profile, SignUpPage};
use super::{Member, Visit, page};
use crate::error::ApiError;
use crate::http::extract::ClientAddress;
use crate::http::portal::session_set_cookie;
use crate::secret::Secret;
use crate::service::AppState;
use crate::service::portal::{LogIn, NewSession, PasswordChange, SignUp};

/// The routes of this page group.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/portal", get(home))
        .route("/portal/signup", get(signup_page).post(signup))
        .route("/portal/login", get(login_page).post(login))
        .route("/portal/logout", post(logout))
        .route("/portal/profile", get(profile))
        .route("/portal/profile/password", post(change_password))
}

/// The sign-up form's fields.
#[derive(Debug, Deserialize)]
pub struct SignUpForm {
    csrf: String,
    name: String,
    email: String,
    password: Secret,
}

/// The log-in form's fields.
#[derive(Debug, Deserialize)]
pub struct LogInForm {
    csrf: String,
    email: String,
    password: Secret,
}

/// A form with only its CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// The password form's fields.
#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    csrf: String,
    current_password: Secret,
    new_password: Secret,
}

/// The field an error names, among `fields`, with its message.
pub fn field_error(error: &ApiError, fields: &[&'static str]) -> Option<(&'static str, String)> {
    let named = error.body().field?;
    let base = named.split('[').next().unwrap_or_default();
    fields
        .iter()
        .find(|field| **field == base)
        .map(|field| (*field, error.to_string()))
}

/// A redirect that also sets (or clears) the session cookie.
fn signed_in(state: &AppState, session: Option<&NewSession>, to: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    let cookie = session_set_cookie(
        state,
        session.map(|session| (session.id.expose(), session.max_age.as_secs())),
    );
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

async fn home(State(state): State<AppState>, visit: Visit) -> Response {
    if visit.developer.is_some() {
        return Redirect::to("/portal/catalogue").into_response();
    }
    page(
        StatusCode::OK,
        &Home {
            layout: Layout::new(&state, &visit),
            welcome: state.settings().portal.welcome.clone(),
        },
    )
}

fn signup_form(state: &AppState, visit: &Visit, open: bool) -> SignUpPage {
    SignUpPage {
        layout: Layout::new(state, visit),
        open,
        name: String::new(),
        email: String::new(),
        errors: FieldErrors::new(),
        form_error: None,
    }
}

async fn signup_page(State(state): State<AppState>, visit: Visit) -> Result<Response, ApiError> {
    let open = state.portal().settings()?.value.self_signup;
    Ok(page(StatusCode::OK, &signup_form(&state, &visit, open)))
}

async fn signup(
    State(state): State<AppState>,
    visit: Visit,
    Form(form): Form<SignUpForm>,
) -> Result<Response, ApiError> {
    visit.check(&form.csrf)?;
    let input = SignUp {
        email: form.email.clone(),
        name: form.name.clone(),
        password: form.password,
    };
    match state.portal().sign_up(input).await {
        Ok(session) => {
            if let Some(old) = &visit.session {
                state.portal().log_out(old)?;
            }
            Ok(signed_in(&state, Some(&session), "/portal/catalogue"))
        }
        Err(error) => {
            let mut view = signup_form(&state, &visit, !matches!(error, ApiError::SignupDisabled));
            view.name = form.name;
            view.email = form.email;
            match field_error(&error, &["name", "email", "password"]) {
                Some((field, message)) => {
                    view.errors.insert(field, message);
                }
                None => view.form_error = Some(error.to_string()),
            }
            Ok(page(error.status(), &view))
        }
    }
}

async fn login_page(State(state): State<AppState>, visit: Visit) -> Response {
    page(
        StatusCode::OK,
        &LogInPage {
            layout: Layout::new(&state, &visit),
            email: String::new(),
            form_error: None,
        },
    )
}

async fn login(
    State(state): State<AppState>,
    visit: Visit,
    ClientAddress(address): ClientAddress,
    Form(form): Form<LogInForm>,
) -> Result<Response, ApiError> {
    visit.check(&form.csrf)?;
    let input = LogIn {
        email: form.email.clone(),
        password: form.password,
    };
    match state.portal().log_in(input, address).await {
        Ok(session) => {
            // A new session id at every log-in; the browser's old session ends.
            if let Some(old) = &visit.session {
                state.portal().log_out(old)?;
            }
            Ok(signed_in(&state, Some(&session), "/portal/catalogue"))
        }
        Err(error) => {
            let mut response = page(
                error.status(),
                &LogInPage {
                    layout: Layout::new(&state, &visit),
                    email: form.email,
                    form_error: Some(error.to_string()),
                },
            );
            if let Some(seconds) = error.retry_after() {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            Ok(response)
        }
    }
}

async fn logout(
    State(state): State<AppState>,
    visit: Visit,
    Form(form): Form<CsrfForm>,
) -> Result<Response, ApiError> {
    visit.check(&form.csrf)?;
    if let Some(session) = &visit.session {
        state.portal().log_out(session)?;
    }
    Ok(signed_in(&state, None, "/portal/login"))
}

async fn profile(State(state): State<AppState>, Member(developer, visit): Member) -> Response {
    page(
        StatusCode::OK,
        &Profile {
            layout: Layout::new(&state, &visit),
            developer,
            changed: false,
            errors: FieldErrors::new(),
        },
    )
}

async fn change_password(
    State(state): State<AppState>,
    Member(developer, visit): Member,
    Form(form): Form<PasswordForm>,
) -> Result<Response, ApiError> {
    visit.check(&form.csrf)?;
    let change = PasswordChange {
        current_password: form.current_password,
        new_password: form.new_password,
    };
    match state.portal().change_password(&developer, change).await {
        Ok(session) => {
            let visit = Visit {
                session: Some(session.id.expose().to_owned()),
                ..visit
            };
            let mut response = page(
                StatusCode::OK,
                &Profile {
                    layout: Layout::new(&state, &visit),
                    developer,
                    changed: true,
                    errors: FieldErrors::new(),
                },
            );
            if let Some(cookie) = session_set_cookie(
                &state,
                Some((session.id.expose(), session.max_age.as_secs())),
            ) {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            Ok(response)
        }
        Err(error) => {
            let Some((field, message)) = field_error(&error, &["current_password", "password"])
            else {
                return Err(error);
            };
            let mut errors = FieldErrors::new();
            errors.insert(field, message);
            Ok(page(
                error.status(),
                &Profile {
                    layout: Layout::new(&state, &visit),
                    developer,
                    changed: false,
                    errors,
                },
            ))
        }
    }
}
