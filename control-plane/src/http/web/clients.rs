//! OAuth clients: the list, the create wizard (choose an API, then name and redirect URIs,
//! then the result with the credentials), a client's page (the time left on its access and
//! its renewal, rotate the secret, edit redirect URIs, delete with a confirmation step). Only the creation and rotation results show the
//! secret.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use super::account::field_error;
use super::views::{
    Choose, ClientPage, ClientView, Clients, ConfirmDelete, FieldErrors, IssuedPage, Layout,
    NewClient, UsageChart,
};
use super::{Member, Visit, message, page};
use crate::error::ApiError;
use crate::http::extract::Path;
use crate::http::present::{issued_api_calls, issued_token_request};
use crate::service::AppState;
use crate::service::developers::Developer;
use crate::service::oauth_clients::unix_seconds;
use crate::service::registration::{ClientRequest, IdempotencyKey, Issued, RedirectUris};

/// The routes of this page group.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/portal/clients", get(list).post(create))
        .route("/portal/clients/new", get(choose))
        .route("/portal/clients/new/{entry}", get(new_client))
        .route("/portal/clients/{id}", get(show))
        .route(
            "/portal/clients/{id}/redirect-uris",
            post(set_redirect_uris),
        )
        .route("/portal/clients/{id}/rotate", post(rotate))
        .route("/portal/clients/{id}/renew", post(renew))
        .route(
            "/portal/clients/{id}/delete",
            get(confirm_delete).post(delete),
        )
}

/// The create form's fields.
#[derive(Debug, Deserialize)]
pub struct CreateForm {
    csrf: String,
    idempotency_key: String,
    catalogue_entry: String,
    client_name: String,
    #[serde(default)]
    redirect_uris: String,
}

/// The redirect-URI form's fields.
#[derive(Debug, Deserialize)]
pub struct RedirectUriForm {
    csrf: String,
    #[serde(default)]
    redirect_uris: String,
}

/// A form with only its CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

/// The redirect URIs typed in a text area, one per line (browsers send CR LF); blank lines
/// are skipped, everything else is checked as typed.
pub fn lines(text: &str) -> Vec<String> {
    text.split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Where an error goes on a client form: next to a field, or above the form.
fn place(error: &ApiError) -> (FieldErrors, Option<String>) {
    let mut errors = FieldErrors::new();
    if let Some((field, message)) = field_error(error, &["client_name", "redirect_uris"]) {
        let named = error.body().field.unwrap_or_default();
        let message = match named
            .strip_prefix("redirect_uris[")
            .and_then(|rest| rest.strip_suffix(']'))
            .and_then(|index| index.parse::<usize>().ok())
        {
            Some(index) => format!("Line {}: {message}", index + 1),
            None => message,
        };
        errors.insert(field, message);
        return (errors, None);
    }
    let body = error.body();
    let text = match (body.idp_error, body.idp_error_description) {
        (Some(code), Some(description)) => {
            format!("The identity provider refused: {description} ({code})")
        }
        (Some(code), None) => format!("The identity provider refused: {code}"),
        _ => body.message,
    };
    (errors, Some(text))
}

async fn list(
    State(state): State<AppState>,
    Member(developer, visit): Member,
) -> Result<Response, ApiError> {
    let clients = state.registrations().list_for(&developer)?;
    let now = unix_seconds(state.now());
    Ok(page(
        StatusCode::OK,
        &Clients {
            layout: Layout::new(&state, &visit),
            clients: clients
                .iter()
                .map(|client| ClientView::new(client, now))
                .collect(),
        },
    ))
}

async fn choose(
    State(state): State<AppState>,
    Member(_, visit): Member,
) -> Result<Response, ApiError> {
    Ok(page(
        StatusCode::OK,
        &Choose {
            layout: Layout::new(&state, &visit),
            entries: state.portal().catalogue()?,
        },
    ))
}

async fn new_client(
    State(state): State<AppState>,
    Member(_, visit): Member,
    Path(entry): Path<String>,
) -> Result<Response, ApiError> {
    let entry = match state.portal().entry(&entry) {
        Ok(detail) => detail.entry,
        Err(error) => return Ok(message(&visit, &state, &error, "/portal/clients/new")),
    };
    Ok(page(
        StatusCode::OK,
        &NewClient {
            layout: Layout::new(&state, &visit),
            entry,
            idempotency_key: crate::service::random_id("form-")?,
            client_name: String::new(),
            redirect_uris: String::new(),
            errors: FieldErrors::new(),
            form_error: None,
        },
    ))
}

/// The page that shows a just-issued secret.
fn issued_page(state: &AppState, visit: &Visit, heading: &str, issued: &Issued) -> IssuedPage {
    IssuedPage {
        layout: Layout::new(state, visit),
        heading: heading.to_owned(),
        id: issued.client.id.clone(),
        client_name: issued.client.client_name.clone(),
        client_id: issued.client.client_id.clone(),
        client_secret: issued
            .client_secret
            .as_ref()
            .map_or_else(String::new, |secret| secret.expose().to_owned()),
        token_endpoint: issued.token_endpoint.clone(),
        token_request: issued_token_request(issued),
        api_calls: issued_api_calls(issued),
    }
}

async fn create(
    State(state): State<AppState>,
    Member(developer, visit): Member,
    Form(form): Form<CreateForm>,
) -> Result<Response, ApiError> {
    visit.check(&form.csrf)?;
    let key = IdempotencyKey::parse(&form.idempotency_key)?;
    let request = ClientRequest {
        catalogue_entries: vec![form.catalogue_entry.clone()],
        client_name: form.client_name.clone(),
        redirect_uris: lines(&form.redirect_uris),
    };
    match state
        .registrations()
        .register(&developer, key, request)
        .await
    {
        Ok(issued) if issued.client_secret.is_some() => Ok(page(
            StatusCode::CREATED,
            &issued_page(&state, &visit, "Client created", &issued),
        )),
        Ok(issued) => {
            Ok(Redirect::to(&format!("/portal/clients/{}", issued.client.id)).into_response())
        }
        Err(error) => {
            let entry = state.portal().entry(&form.catalogue_entry)?.entry;
            let (errors, form_error) = place(&error);
            Ok(page(
                error.status(),
                &NewClient {
                    layout: Layout::new(&state, &visit),
                    entry,
                    idempotency_key: form.idempotency_key,
                    client_name: form.client_name,
                    redirect_uris: form.redirect_uris,
                    errors,
                    form_error,
                },
            ))
        }
    }
}

/// A client's page, with what was typed in a refused edit and where the error goes.
fn client_page(
    state: &AppState,
    visit: &Visit,
    developer: &Developer,
    id: &str,
    typed: Option<String>,
    error: Option<&ApiError>,
) -> Response {
    let issued = match state.registrations().get_for(developer, id) {
        Ok(issued) => issued,
        Err(error) => return message(visit, state, &error, "/portal/clients"),
    };
    let (errors, form_error) = error.map_or_else(|| (FieldErrors::new(), None), place);
    let now = unix_seconds(state.now());
    let usage = match state.usage().of_client(id) {
        Ok(usage) => UsageChart::new(&usage.last_days(now, 30)),
        Err(error) => return message(visit, state, &error, "/portal/clients"),
    };
    page(
        error.map_or(StatusCode::OK, ApiError::status),
        &ClientPage {
            layout: Layout::new(state, visit),
            client: ClientView::new(&issued.client, unix_seconds(state.now())),
            token_endpoint: issued.token_endpoint.clone(),
            token_request: issued_token_request(&issued),
            api_calls: issued_api_calls(&issued),
            renewable: issued.renewable,
            usage,
            redirect_uris: typed.unwrap_or_else(|| issued.client.redirect_uris.join("\n")),
            errors,
            form_error,
        },
    )
}

async fn show(
    State(state): State<AppState>,
    Member(developer, visit): Member,
    Path(id): Path<String>,
) -> Response {
    client_page(&state, &visit, &developer, &id, None, None)
}

async fn set_redirect_uris(
    State(state): State<AppState>,
    Member(developer, visit): Member,
    Path(id): Path<String>,
    Form(form): Form<RedirectUriForm>,
) -> Result<Response, ApiError> {
    visit.check(&form.csrf)?;
    let input = RedirectUris {
        redirect_uris: lines(&form.redirect_uris),
    };
    match state
        .registrations()
        .set_redirect_uris(&developer, &id, input)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/portal/clients/{id}")).into_response()),
        Err(error) => Ok(client_page(
            &state,
            &visit,
            &developer,
            &id,
            Some(form.redirect_uris),
            Some(&error),
        )),
    }
}

async fn rotate(
    State(state): State<AppState>,
    Member(developer, visit): Member,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, ApiError> {
    visit.check(&form.csrf)?;
    match state.registrations().rotate_secret(&developer, &id).await {
        Ok(issued) => Ok(page(
            StatusCode::OK,
            &issued_page(&state, &visit, "New client secret", &issued),
        )),
        Err(error) => Ok(client_page(
            &state,
            &visit,
            &developer,
            &id,
            None,
            Some(&error),
        )),
    }
}

/// Renews the client's access, then shows its page with the new time left.
async fn renew(
    State(state): State<AppState>,
    Member(developer, visit): Member,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, ApiError> {
    visit.check(&form.csrf)?;
    match state.registrations().renew_for(&developer, &id).await {
        Ok(_) => Ok(Redirect::to(&format!("/portal/clients/{id}")).into_response()),
        Err(error) => {
            let back = if error.status() == StatusCode::NOT_FOUND {
                "/portal/clients".to_owned()
            } else {
                format!("/portal/clients/{id}")
            };
            Ok(message(&visit, &state, &error, &back))
        }
    }
}

async fn confirm_delete(
    State(state): State<AppState>,
    Member(developer, visit): Member,
    Path(id): Path<String>,
) -> Response {
    match state.registrations().get_for(&developer, &id) {
        Ok(issued) => page(
            StatusCode::OK,
            &ConfirmDelete {
                layout: Layout::new(&state, &visit),
                client: ClientView::new(&issued.client, unix_seconds(state.now())),
            },
        ),
        Err(error) => message(&visit, &state, &error, "/portal/clients"),
    }
}

async fn delete(
    State(state): State<AppState>,
    Member(developer, visit): Member,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, ApiError> {
    visit.check(&form.csrf)?;
    match state.registrations().delete_for(&developer, &id).await {
        Ok(()) => Ok(Redirect::to("/portal/clients").into_response()),
        Err(error) => Ok(message(&visit, &state, &error, "/portal/clients")),
    }
}
