//! The pages' templates (askama, `control-plane/templates/`), each with the data it shows.
//! askama escapes every interpolated value as HTML.

use std::collections::HashMap;

use askama::Template;

use super::Visit;
use crate::http::present::access_in_words;
use crate::http::present::api_doc::DocView;
use crate::service::AppState;
use crate::service::developers::Developer;
use crate::service::oauth_clients::{OAuthClient, OAuthClientState};
use crate::service::portal::{EntryDetail, PortalEntry};
use crate::service::usage::UsageCounts;

/// What every page's frame shows: the portal's name, who is signed in, the CSRF token.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The portal's name.
    pub portal_name: String,
    /// The signed-in developer's name.
    pub developer_name: Option<String>,
    /// The CSRF token for the page's forms.
    pub csrf: String,
    /// Whether a logo is shown (always: the configured one or Portico's).
    pub has_logo: bool,
}

impl Layout {
    /// The frame for a visit.
    pub fn new(state: &AppState, visit: &Visit) -> Self {
        Layout {
            portal_name: state.settings().portal.name.clone(),
            developer_name: visit
                .developer
                .as_ref()
                .map(|developer| developer.name.clone()),
            csrf: visit.csrf(),
            has_logo: true,
        }
    }
}

/// Messages by field name, shown next to the field.
pub type FieldErrors = HashMap<&'static str, String>;

/// The front page for visitors.
#[derive(Debug, Template)]
#[template(path = "home.html")]
pub struct Home {
    /// The frame.
    pub layout: Layout,
    /// The welcome text.
    pub welcome: String,
}

/// The sign-up form.
#[derive(Debug, Template)]
#[template(path = "signup.html")]
pub struct SignUpPage {
    /// The frame.
    pub layout: Layout,
    /// Whether self sign-up is on.
    pub open: bool,
    /// The name typed.
    pub name: String,
    /// The email typed.
    pub email: String,
    /// Errors by field.
    pub errors: FieldErrors,
    /// An error about the whole form.
    pub form_error: Option<String>,
}

/// The log-in form.
#[derive(Debug, Template)]
#[template(path = "login.html")]
pub struct LogInPage {
    /// The frame.
    pub layout: Layout,
    /// The email typed.
    pub email: String,
    /// Why the last attempt failed.
    pub form_error: Option<String>,
}

/// The profile and the password change.
#[derive(Debug, Template)]
#[template(path = "profile.html")]
pub struct Profile {
    /// The frame.
    pub layout: Layout,
    /// The developer.
    pub developer: Developer,
    /// Whether the password was just changed.
    pub changed: bool,
    /// Errors by field.
    pub errors: FieldErrors,
}

/// The catalogue.
#[derive(Debug, Template)]
#[template(path = "catalogue.html")]
pub struct Catalogue {
    /// The frame.
    pub layout: Layout,
    /// The listed entries.
    pub entries: Vec<PortalEntry>,
}

/// One API's page: its description, what its policy grants, and its OpenAPI document when
/// one is attached and readable.
#[derive(Debug, Template)]
#[template(path = "api.html")]
pub struct ApiPage {
    /// The frame.
    pub layout: Layout,
    /// The entry.
    pub detail: EntryDetail,
    /// What its policy grants, in words.
    pub grants: Vec<String>,
    /// Its limits, in words.
    pub limits: Vec<String>,
    /// How long a registration's access lasts and who renews it, in words; none: for ever.
    pub lifetime: Option<String>,
    /// Its API reference, from the attached OpenAPI document (none: the description alone).
    pub doc: Option<DocView>,
    /// The developer's active clients for this entry, for the examples' token step.
    pub clients: Vec<ClientChoice>,
    /// The chosen client's token request, with a placeholder for the secret.
    pub token_request: Option<String>,
}

/// A client offered in the API page's client choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientChoice {
    /// Portico's id (`cli_…`), the choice's value.
    pub id: String,
    /// `<client name> (<client_id>)`.
    pub label: String,
    /// Whether it is the chosen one.
    pub selected: bool,
}

/// A client's usage as a bar chart (SVG, no script): one bar per day, requests let through
/// below and refused above, scaled to the busiest day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageChart {
    /// The bars, oldest day first.
    pub bars: Vec<UsageBar>,
    /// The busiest day's requests (the chart's top); 0 when there were none.
    pub busiest: u64,
    /// Requests let through over the days shown.
    pub allowed: u64,
    /// Requests refused over the days shown.
    pub refused: u64,
}

/// One day of a [`UsageChart`], in SVG user units (the chart is [`UsageChart::WIDTH`] by
/// [`UsageChart::HEIGHT`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageBar {
    /// The bar's left edge.
    pub x: u32,
    /// The top of the part let through, and its height.
    pub allowed_y: u32,
    /// The height of the part let through.
    pub allowed_height: u32,
    /// The top of the part refused.
    pub refused_y: u32,
    /// The height of the part refused.
    pub refused_height: u32,
    /// The tooltip: the day and its counts.
    pub title: String,
}

impl UsageChart {
    /// The chart's width.
    pub const WIDTH: u32 = 600;
    /// The chart's height.
    pub const HEIGHT: u32 = 120;
    /// One bar's width (the slot less a 2-unit gap).
    pub const BAR_WIDTH: u32 = 18;

    /// The chart of `days` (oldest first, as
    /// [`crate::service::usage::ClientUsageView::last_days`] gives them).
    pub fn new(days: &[UsageCounts]) -> Self {
        let refused_of = |day: &UsageCounts| day.refused.values().sum::<u64>();
        let busiest = days
            .iter()
            .map(|day| day.allowed.saturating_add(refused_of(day)))
            .max()
            .unwrap_or(0);
        let slot = Self::WIDTH / u32::try_from(days.len().max(1)).unwrap_or(u32::MAX);
        let scale = |count: u64| {
            if busiest == 0 {
                return 0;
            }
            let height = u128::from(count) * u128::from(Self::HEIGHT) / u128::from(busiest);
            u32::try_from(height).unwrap_or(Self::HEIGHT)
        };
        let bars = days
            .iter()
            .zip(0u32..)
            .map(|(day, index)| {
                let refused = refused_of(day);
                let allowed_height = scale(day.allowed);
                let refused_height = scale(day.allowed.saturating_add(refused)) - allowed_height;
                UsageBar {
                    x: index * slot,
                    allowed_y: Self::HEIGHT - allowed_height,
                    allowed_height,
                    refused_y: Self::HEIGHT - allowed_height - refused_height,
                    refused_height,
                    title: format!(
                        "{}: {} allowed, {refused} refused",
                        day.start.get(..10).unwrap_or(&day.start),
                        day.allowed
                    ),
                }
            })
            .collect();
        UsageChart {
            bars,
            busiest,
            allowed: days.iter().map(|day| day.allowed).sum(),
            refused: days.iter().map(refused_of).sum(),
        }
    }
}

/// A client as listed and shown.
#[derive(Debug, Clone)]
pub struct ClientView {
    /// Portico's id (`cli_…`).
    pub id: String,
    /// The name.
    pub client_name: String,
    /// The IdP's `client_id`.
    pub client_id: String,
    /// `Active` or `Revoked`.
    pub state: &'static str,
    /// When it was created.
    pub created_at: String,
    /// The time left on its access, in words (`Expires in 3 days 4 hours (…)`).
    pub access: String,
    /// Whether some access of the client has ended.
    pub expired: bool,
}

impl ClientView {
    /// The client as shown at `now` (seconds since the Unix epoch).
    pub fn new(client: &OAuthClient, now: u64) -> Self {
        ClientView {
            access: access_in_words(client, now),
            expired: client.access_expires_at.values().any(|at| *at <= now),
            id: client.id.clone(),
            client_name: client.client_name.clone(),
            client_id: client.client_id.clone(),
            state: match client.state {
                OAuthClientState::Active => "Active",
                OAuthClientState::Revoked => "Revoked",
                OAuthClientState::Orphaned => "Orphaned",
            },
            created_at: client.created_at.clone(),
        }
    }
}

/// The list of clients.
#[derive(Debug, Template)]
#[template(path = "clients.html")]
pub struct Clients {
    /// The frame.
    pub layout: Layout,
    /// The developer's clients.
    pub clients: Vec<ClientView>,
}

/// Step 1 of the wizard: choose an API.
#[derive(Debug, Template)]
#[template(path = "choose.html")]
pub struct Choose {
    /// The frame.
    pub layout: Layout,
    /// The listed entries.
    pub entries: Vec<PortalEntry>,
}

/// Step 2 of the wizard: name and redirect URIs.
#[derive(Debug, Template)]
#[template(path = "new_client.html")]
pub struct NewClient {
    /// The frame.
    pub layout: Layout,
    /// The chosen entry.
    pub entry: PortalEntry,
    /// A key made for this form, so that a repeated submit creates one client.
    pub idempotency_key: String,
    /// The name typed.
    pub client_name: String,
    /// The redirect URIs typed, one per line.
    pub redirect_uris: String,
    /// Errors by field.
    pub errors: FieldErrors,
    /// An error about the whole form (e.g. the IdP's refusal).
    pub form_error: Option<String>,
}

/// The result of a creation or rotation: the only pages that show the secret.
#[derive(Debug, Template)]
#[template(path = "issued.html")]
pub struct IssuedPage {
    /// The frame.
    pub layout: Layout,
    /// "Client created" or "New secret".
    pub heading: String,
    /// Portico's id.
    pub id: String,
    /// The name.
    pub client_name: String,
    /// The IdP's `client_id`.
    pub client_id: String,
    /// The secret, in full.
    pub client_secret: String,
    /// The IdP's token endpoint.
    pub token_endpoint: Option<String>,
    /// The token request with the secret.
    pub token_request: Option<String>,
    /// Calls through the gateway.
    pub api_calls: Vec<String>,
}

/// A client's page: its data, redirect URIs, rotation and deletion.
#[derive(Debug, Template)]
#[template(path = "client.html")]
pub struct ClientPage {
    /// The frame.
    pub layout: Layout,
    /// The client.
    pub client: ClientView,
    /// The IdP's token endpoint.
    pub token_endpoint: Option<String>,
    /// The token request with a placeholder for the secret.
    pub token_request: Option<String>,
    /// Calls through the gateway.
    pub api_calls: Vec<String>,
    /// Whether the developer can renew the client's access here.
    pub renewable: bool,
    /// Its usage over the last 30 days.
    pub usage: UsageChart,
    /// The redirect URIs, one per line (as typed after a refused edit).
    pub redirect_uris: String,
    /// Errors by field.
    pub errors: FieldErrors,
    /// An error about the whole form.
    pub form_error: Option<String>,
}

/// The confirmation step of a deletion.
#[derive(Debug, Template)]
#[template(path = "delete.html")]
pub struct ConfirmDelete {
    /// The frame.
    pub layout: Layout,
    /// The client.
    pub client: ClientView,
}

/// A message with a link back (errors).
#[derive(Debug, Template)]
#[template(path = "message.html")]
pub struct Message {
    /// The frame.
    pub layout: Layout,
    /// The heading.
    pub heading: &'static str,
    /// The text.
    pub message: String,
    /// Where the link goes.
    pub back: String,
}
