//! The catalogue: the list and each API's page. An API's page shows its OpenAPI document when
//! one is attached ([`crate::http::present::api_doc`]), with the token step of the developer's
//! chosen client (`?client=cli_…`, a plain GET form: no script); a document that cannot be
//! read leaves the page with the description alone.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::views::{ApiPage, Catalogue, ClientChoice, Layout};
use super::{Member, message, page};
use crate::error::ApiError;
use crate::http::extract::{Path, Query};
use crate::http::present::api_doc::{self, DocView};
use crate::http::present::{
    grant_in_words, issued_token_request, lifetime_in_words, limits_in_words,
};
use crate::service::AppState;
use crate::service::api_docs::document;
use crate::service::developers::Developer;
use crate::service::oauth_clients::OAuthClientState;

/// The routes of this page group.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/portal/catalogue", get(list))
        .route("/portal/catalogue/{id}", get(show))
}

/// The API page's query: which of the developer's clients the examples use.
#[derive(Debug, Default, Deserialize)]
pub struct ShowQuery {
    /// A client id (`cli_…`) of the developer's, bound to this entry; default: the first.
    #[serde(default)]
    client: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    Member(_, visit): Member,
) -> Result<Response, ApiError> {
    Ok(page(
        StatusCode::OK,
        &Catalogue {
            layout: Layout::new(&state, &visit),
            entries: state.portal().catalogue()?,
        },
    ))
}

async fn show(
    State(state): State<AppState>,
    Member(developer, visit): Member,
    Path(id): Path<String>,
    Query(query): Query<ShowQuery>,
) -> Response {
    let detail = match state.portal().entry(&id) {
        Ok(detail) => detail,
        Err(error) => return message(&visit, &state, &error, "/portal/catalogue"),
    };
    let base = detail
        .grants
        .first()
        .map_or("", |grant| grant.listen_path.as_str());
    let doc = document_view(&state, &id, base);
    let (clients, token_request) = if doc.is_some() {
        client_choice(&state, &developer, &id, query.client.as_deref())
    } else {
        (Vec::new(), None)
    };
    page(
        StatusCode::OK,
        &ApiPage {
            layout: Layout::new(&state, &visit),
            grants: detail.grants.iter().map(grant_in_words).collect(),
            limits: limits_in_words(detail.rate_limit, detail.quota),
            lifetime: lifetime_in_words(detail.lifetime_seconds, detail.renewable),
            detail,
            doc,
            clients,
            token_request,
        },
    )
}

/// The entry's document as a view, or `None` when it has none or it cannot be read (logged:
/// the page then shows the description alone, never an error).
fn document_view(state: &AppState, entry: &str, base: &str) -> Option<DocView> {
    let stored = match state.api_docs().find(entry) {
        Ok(stored) => stored?.value,
        Err(error) => {
            tracing::warn!(entry, %error, "could not read an API's OpenAPI document");
            return None;
        }
    };
    match document::parse(stored.text.as_bytes(), stored.summary.media_type) {
        Ok(tree) => Some(api_doc::view(&tree, base)),
        Err(error) => {
            tracing::warn!(
                entry,
                error = %error.message,
                "a stored OpenAPI document does not parse; showing the description alone"
            );
            None
        }
    }
}

/// The developer's active clients for the entry (the chosen one, else the first, selected)
/// and the chosen client's token request with a placeholder for the secret.
fn client_choice(
    state: &AppState,
    developer: &Developer,
    entry: &str,
    wanted: Option<&str>,
) -> (Vec<ClientChoice>, Option<String>) {
    let clients: Vec<_> = match state.registrations().list_for(developer) {
        Ok(clients) => clients
            .into_iter()
            .filter(|client| {
                client.state == OAuthClientState::Active
                    && client.catalogue_entries.iter().any(|bound| bound == entry)
            })
            .collect(),
        Err(error) => {
            tracing::warn!(%error, "could not list a developer's clients");
            Vec::new()
        }
    };
    let chosen = wanted
        .filter(|wanted| clients.iter().any(|client| client.id == *wanted))
        .or_else(|| clients.first().map(|client| client.id.as_str()))
        .map(str::to_owned);
    let token_request = chosen.as_deref().and_then(|id| {
        state
            .registrations()
            .get_for(developer, id)
            .ok()
            .and_then(|issued| issued_token_request(&issued))
    });
    let choices = clients
        .into_iter()
        .map(|client| ClientChoice {
            selected: chosen.as_deref() == Some(client.id.as_str()),
            label: format!("{} ({})", client.client_name, client.client_id),
            id: client.id,
        })
        .collect();
    (choices, token_request)
}
