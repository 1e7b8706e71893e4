//! OAuth Dynamic Client Registration (RFC 7591) and its management protocol (RFC 7592).
//!
//! The control plane registers one OAuth client at the IdP per developer application
//! ([`DcrDriver::register`]), and later reads, updates or deletes it. IdPs differ in the
//! details (the form of the `Authorization` header, required fields, where a registered
//! client is managed, whether the registration access token rotates), so each provider family
//! has a driver; [`driver_for`] picks it. The differences, with their sources, are in
//! `docs/providers.md`.
//!
//! # Why a trait object with boxed futures
//!
//! [`DcrDriver`] is object-safe: its methods return [`DcrFuture`], a pinned, boxed, `Send`
//! future. The provider is chosen at run time from settings that operators change through the
//! admin API (globally or per catalogue entry), so the IdP client ([`super::client::HttpIdp`])
//! holds one `Box<dyn DcrDriver>` per provider and hands out `&dyn DcrDriver` rather than a type
//! parameter; and the registration flow's tests substitute a fake driver without any HTTP at all
//! (`idp::test_support::FakeDriver`), the way the style guide's host traits get builder fakes. An
//! enum of drivers would do the first but not the second. `async fn` in a trait is not yet
//! object-safe, hence the explicit boxing; one allocation per IdP round trip costs nothing next
//! to the round trip.
//!
//! # What the caller stores
//!
//! Every operation that returns a [`RegisteredClient`] returns the registration access token to
//! use *from now on*: the new one when the IdP rotated it (Keycloak does on every use), else
//! the one that was sent. The caller always overwrites its stored token with it. A client
//! secret is returned only when the IdP sent one (most IdPs send it on registration only).
//!
//! Nothing here logs or formats a secret: tokens go into `Authorization` headers marked
//! sensitive, error messages carry the IdP's `error` and `error_description` (or an excerpt of
//! a non-JSON error body) but never a successful answer, which may contain a client secret.

pub mod gluu;
pub mod keycloak;
pub mod okta;
pub mod rfc7591;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use super::{
    CallOutcome, IdpHttp, TransportError, authorization, excerpt, read_body_limited,
    refuse_redirect, snippet, without_bom,
};
use crate::secret::Secret;

/// The largest answer accepted from a registration or management endpoint, in bytes.
pub const MAX_DCR_BODY_BYTES: usize = 256 * 1024;
/// The longest `error_description` kept from an IdP's error, in characters.
const MAX_DESCRIPTION_CHARS: usize = 500;

/// The identity provider family, which decides the driver. It is also the `provider` of the
/// DCR settings (schema `DcrProvider` in the admin API).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
#[schema(as = DcrProvider)]
pub enum Provider {
    /// Any RFC 7591 / RFC 7592 registration endpoint.
    #[default]
    Other,
    /// Keycloak (and Red Hat build of Keycloak).
    Keycloak,
    /// Okta's `/oauth2/v1/clients` API.
    Okta,
    /// Gluu Server (oxAuth) and Janssen (jans-auth).
    Gluu,
}

// === impl Provider ===

impl Provider {
    /// Every provider, in the order of [`Provider::index`].
    pub const ALL: [Provider; 4] = [
        Provider::Other,
        Provider::Keycloak,
        Provider::Okta,
        Provider::Gluu,
    ];

    /// The provider's name in the admin API and in metric labels: `other`, `keycloak`,
    /// `okta` or `gluu`.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Other => "other",
            Provider::Keycloak => "keycloak",
            Provider::Okta => "okta",
            Provider::Gluu => "gluu",
        }
    }

    /// The provider's position in [`Provider::ALL`], for tables with one entry per provider.
    pub fn index(self) -> usize {
        match self {
            Provider::Other => 0,
            Provider::Keycloak => 1,
            Provider::Okta => 2,
            Provider::Gluu => 3,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The client metadata Portico asks for (RFC 7591 §2), decoupled from storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMetadata {
    /// Human-readable name, shown by the IdP (and required by Okta).
    pub client_name: String,
    /// Grant types, e.g. `["client_credentials"]`.
    pub grant_types: Vec<String>,
    /// How the client authenticates at the token endpoint, e.g. `client_secret_post`.
    pub token_endpoint_auth_method: String,
    /// Response types: `[]` for `client_credentials` clients (some IdPs, e.g. node
    /// `oidc-provider`, reject `["token"]`); always sent, even empty.
    pub response_types: Vec<String>,
    /// Redirect URIs: required for `authorization_code` and `implicit`; always sent, even empty
    /// (node `oidc-provider` wants the member present).
    pub redirect_uris: Vec<String>,
    /// Space-separated scopes, when the IdP should restrict the client to them.
    pub scope: Option<String>,
    /// `application_type`: OpenID Connect's `web`/`native`, Okta's
    /// `web`/`native`/`browser`/`service` (Okta needs it; its driver infers `service` for
    /// `client_credentials`-only clients when this is `None`).
    pub application_type: Option<String>,
}

/// Where and with what clients are registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationTarget {
    /// The registration endpoint (configured, or from discovery).
    pub registration_endpoint: Url,
    /// The token that authorizes registration: an RFC 7591 initial access token, sent as
    /// `Bearer`; for Okta an API token (sent as `SSWS`) or an OAuth access token with the
    /// `okta.clients.register` scope (a JWT, sent as `Bearer`). Optional where the IdP allows
    /// open registration (Gluu, Curity, Keycloak with anonymous policies); Okta requires it and
    /// also uses it to manage clients.
    pub initial_access_token: Option<Secret>,
}

/// What Portico stored about a registered client, needed to manage it (RFC 7592).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedClient {
    /// The IdP's `client_id`.
    pub client_id: String,
    /// The client configuration endpoint, as the IdP reported it (or as derived for IdPs that
    /// report none, see each driver).
    pub registration_client_uri: Option<Url>,
    /// The newest registration access token.
    pub registration_access_token: Option<Secret>,
}

/// Client metadata as the IdP echoed it: `None` where the answer left a member out. IdPs may
/// change what was asked (Okta sets grant types and the authentication method from the
/// application type), so the portal shows these values, not the requested ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EchoedMetadata {
    /// `client_name`.
    pub client_name: Option<String>,
    /// `grant_types`.
    pub grant_types: Option<Vec<String>>,
    /// `token_endpoint_auth_method`.
    pub token_endpoint_auth_method: Option<String>,
    /// `response_types`.
    pub response_types: Option<Vec<String>>,
    /// `redirect_uris`.
    pub redirect_uris: Option<Vec<String>>,
    /// `scope`.
    pub scope: Option<String>,
    /// `application_type`.
    pub application_type: Option<String>,
}

/// A client as the IdP describes it after a registration, read or update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredClient {
    /// The IdP's `client_id`.
    pub client_id: String,
    /// The client secret, when the IdP sent one (usually on registration only).
    pub client_secret: Option<Secret>,
    /// When the secret expires, in seconds since the epoch; `0` means never (RFC 7591 §3.2.1).
    pub client_secret_expires_at: Option<u64>,
    /// When the `client_id` was issued, in seconds since the epoch.
    pub client_id_issued_at: Option<u64>,
    /// The registration access token to store from now on (see the module docs).
    pub registration_access_token: Option<Secret>,
    /// The client configuration endpoint.
    pub registration_client_uri: Option<Url>,
    /// The metadata the IdP echoed.
    pub metadata: EchoedMetadata,
}

// === impl RegisteredClient ===

impl RegisteredClient {
    /// What is needed to manage this client later.
    pub fn managed(&self) -> ManagedClient {
        ManagedClient {
            client_id: self.client_id.clone(),
            registration_client_uri: self.registration_client_uri.clone(),
            registration_access_token: self.registration_access_token.clone(),
        }
    }
}

/// The outcome of a deletion. Both mean the client no longer exists at the IdP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// The IdP deleted the client.
    Deleted,
    /// The IdP answered 404 or 410: the client was already gone.
    AlreadyGone,
}

/// Why a registration or management call failed. Every message can be shown to a developer or
/// an operator: none contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DcrError {
    /// The metadata cannot be sent as it is; nothing was sent.
    #[error("invalid client metadata `{field}`: {reason}")]
    InvalidMetadata {
        /// The member at fault.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The DCR settings cannot work with this provider; nothing was sent.
    #[error("the DCR settings cannot work: {reason}")]
    Misconfigured {
        /// What is wrong and what to change.
        reason: String,
    },
    /// The IdP could not be reached or did not answer in time.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The IdP refused the request (RFC 7591 §3.2.2), or failed (5xx).
    #[error("the identity provider refused the request (HTTP {status}{}){}",
        ErrorCode(.error.as_deref()), Explanation(.error_description.as_deref(), .body_snippet.as_deref()))]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The IdP's `error`, e.g. `invalid_redirect_uri`, `invalid_client_metadata`.
        error: Option<String>,
        /// The IdP's `error_description`, bounded.
        error_description: Option<String>,
        /// A bounded excerpt of a body that carried no `error` (an HTML error page).
        body_snippet: Option<String>,
    },
    /// The IdP did not accept the token (401 or 403): expired, used up, revoked, or lacking
    /// permission.
    #[error("the identity provider did not accept Portico's token (HTTP {status}{}){}",
        ErrorCode(.error.as_deref()), Explanation(.error_description.as_deref(), None))]
    Unauthorized {
        /// The HTTP status.
        status: u16,
        /// The IdP's `error`, e.g. `invalid_token`.
        error: Option<String>,
        /// The IdP's `error_description`, bounded.
        error_description: Option<String>,
    },
    /// The IdP has no such client (404 or 410 on read or update).
    #[error("the identity provider has no client `{client_id}`")]
    ClientNotFound {
        /// The `client_id` asked for.
        client_id: String,
    },
    /// The IdP answered success with something Portico cannot use.
    #[error("the identity provider's answer is unusable: {reason}")]
    InvalidResponse {
        /// What is missing or wrong (never the answer itself, which may hold a secret).
        reason: String,
    },
    /// The IdP answered a registration with success, so the client exists there, but Portico
    /// cannot use the answer. The caller must delete the client at the IdP (RFC 7592) or
    /// record it as an orphan, so that no unknown client stays behind.
    #[error("the identity provider created the client, but its answer is unusable: {reason}")]
    UnusableRegistration {
        /// What is missing or wrong (never the answer itself, which may hold a secret).
        reason: String,
        /// What identifies the created client, when the answer has a `client_id`: with its
        /// `registration_client_uri` (reported, or derived as the driver does) and
        /// `registration_access_token` when the answer has them.
        created: Option<Box<ManagedClient>>,
    },
    /// This client cannot be managed through the IdP's API.
    #[error("the client cannot be managed at the identity provider: {reason}")]
    ManagementNotSupported {
        /// What is missing.
        reason: &'static str,
    },
}

// === impl DcrError ===

impl DcrError {
    /// The failure as a [`CallOutcome`] (the `outcome` label of the DCR metrics).
    pub fn outcome(&self) -> CallOutcome {
        match self {
            DcrError::InvalidMetadata { .. }
            | DcrError::Misconfigured { .. }
            | DcrError::ManagementNotSupported { .. } => CallOutcome::NotSent,
            DcrError::Transport(error) => error.outcome(),
            DcrError::Rejected { status, .. } => CallOutcome::of_status(*status),
            DcrError::Unauthorized { .. } => CallOutcome::Unauthorized,
            DcrError::ClientNotFound { .. } => CallOutcome::NotFound,
            DcrError::InvalidResponse { .. } | DcrError::UnusableRegistration { .. } => {
                CallOutcome::InvalidResponse
            }
        }
    }
}

/// ` invalid_redirect_uri` after the status, when there is a code.
struct ErrorCode<'a>(Option<&'a str>);

impl fmt::Display for ErrorCode<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(code) => write!(f, ", {code}"),
            None => Ok(()),
        }
    }
}

/// `: <description>` or `: <snippet>` after the parenthesis, when there is one.
struct Explanation<'a>(Option<&'a str>, Option<&'a str>);

impl fmt::Display for Explanation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.or(self.1) {
            Some(text) if !text.is_empty() => write!(f, ": {text}"),
            _ => Ok(()),
        }
    }
}

/// The future every [`DcrDriver`] method returns.
pub type DcrFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DcrError>> + Send + 'a>>;

/// Registers and manages OAuth clients at one kind of IdP.
pub trait DcrDriver: Send + Sync + fmt::Debug {
    /// The provider family this driver speaks to.
    fn provider(&self) -> Provider;

    /// Registers a client (RFC 7591 §3.1).
    fn register<'a>(
        &'a self,
        target: &'a RegistrationTarget,
        metadata: &'a ClientMetadata,
    ) -> DcrFuture<'a, RegisteredClient>;

    /// Reads a client's registration (RFC 7592 §2.1). Store the returned
    /// `registration_access_token`: some IdPs rotate it on every use.
    fn read<'a>(
        &'a self,
        target: &'a RegistrationTarget,
        client: &'a ManagedClient,
    ) -> DcrFuture<'a, RegisteredClient>;

    /// Replaces a client's registration with `metadata` (RFC 7592 §2.2: the whole registration,
    /// with the `client_id`, is sent). Store the returned `registration_access_token`.
    fn update<'a>(
        &'a self,
        target: &'a RegistrationTarget,
        client: &'a ManagedClient,
        metadata: &'a ClientMetadata,
    ) -> DcrFuture<'a, RegisteredClient>;

    /// Deletes a client (RFC 7592 §2.3). A client that is already gone is not an error.
    fn delete<'a>(
        &'a self,
        target: &'a RegistrationTarget,
        client: &'a ManagedClient,
    ) -> DcrFuture<'a, Deletion>;
}

/// The driver for `provider`, sending its requests with `http` (see [`super::http_client`]).
pub fn driver_for(provider: Provider, http: IdpHttp) -> Box<dyn DcrDriver> {
    match provider {
        Provider::Other => Box::new(rfc7591::Rfc7591Driver::new(http)),
        Provider::Keycloak => Box::new(keycloak::driver(http)),
        Provider::Okta => Box::new(okta::OktaDriver::new(http)),
        Provider::Gluu => Box::new(gluu::driver(http)),
    }
}

// === impl ClientMetadata ===

impl ClientMetadata {
    /// Metadata for a machine-to-machine client: `client_credentials`, `client_secret_post`,
    /// no response types, no redirect URIs.
    pub fn client_credentials(client_name: impl Into<String>) -> Self {
        ClientMetadata {
            client_name: client_name.into(),
            grant_types: vec!["client_credentials".to_owned()],
            token_endpoint_auth_method: "client_secret_post".to_owned(),
            response_types: Vec::new(),
            redirect_uris: Vec::new(),
            scope: None,
            application_type: None,
        }
    }

    /// Checks what every IdP needs before anything is sent.
    fn check(&self) -> Result<(), DcrError> {
        let invalid = |field, reason: &str| {
            Err(DcrError::InvalidMetadata {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.client_name.trim().is_empty() {
            return invalid("client_name", "must not be empty");
        }
        if self.grant_types.is_empty() {
            return invalid("grant_types", "must name at least one grant type");
        }
        if self.token_endpoint_auth_method.trim().is_empty() {
            return invalid("token_endpoint_auth_method", "must not be empty");
        }
        for uri in &self.redirect_uris {
            match Url::parse(uri) {
                Ok(parsed) if parsed.fragment().is_none() => {}
                Ok(_) => return invalid("redirect_uris", &format!("{uri:?} has a fragment")),
                Err(_) => {
                    return invalid("redirect_uris", &format!("{uri:?} is not an absolute URI"));
                }
            }
        }
        let redirect_based = self
            .grant_types
            .iter()
            .any(|grant| grant == "authorization_code" || grant == "implicit");
        if redirect_based && self.redirect_uris.is_empty() {
            return invalid(
                "redirect_uris",
                "the authorization_code and implicit grants need at least one redirect URI",
            );
        }
        Ok(())
    }

    /// The registration request body (RFC 7591 §2): every member Portico sets, empty arrays
    /// included.
    fn to_json(&self) -> Map<String, Value> {
        let strings = |values: &[String]| Value::from(values.to_vec());
        let mut body = Map::new();
        body.insert(
            "client_name".to_owned(),
            Value::from(self.client_name.as_str()),
        );
        body.insert("grant_types".to_owned(), strings(&self.grant_types));
        body.insert(
            "token_endpoint_auth_method".to_owned(),
            Value::from(self.token_endpoint_auth_method.as_str()),
        );
        body.insert("response_types".to_owned(), strings(&self.response_types));
        body.insert("redirect_uris".to_owned(), strings(&self.redirect_uris));
        if let Some(scope) = &self.scope {
            body.insert("scope".to_owned(), Value::from(scope.as_str()));
        }
        if let Some(application_type) = &self.application_type {
            body.insert(
                "application_type".to_owned(),
                Value::from(application_type.as_str()),
            );
        }
        body
    }
}

// === The exchange shared by the drivers ===

/// The credential a request carries.
#[derive(Clone, Copy)]
enum Credential<'a> {
    /// No `Authorization` header (open registration).
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(&'a Secret),
    /// `Authorization: SSWS <token>` (Okta API tokens).
    Ssws(&'a Secret),
}

impl Credential<'_> {
    fn header(self) -> Result<Option<HeaderValue>, DcrError> {
        let (scheme, token) = match self {
            Credential::None => return Ok(None),
            Credential::Bearer(token) => ("Bearer", token),
            Credential::Ssws(token) => ("SSWS", token),
        };
        authorization(scheme, token)
            .map(Some)
            .ok_or_else(|| DcrError::Misconfigured {
                reason: "the token contains characters that cannot be sent in an HTTP header"
                    .to_owned(),
            })
    }
}

/// An IdP's answer.
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

/// Sends one request and reads the answer (bounded by [`MAX_DCR_BODY_BYTES`]).
async fn exchange(
    http: &IdpHttp,
    method: Method,
    url: &Url,
    credential: Credential<'_>,
    body: Option<&Map<String, Value>>,
) -> Result<Answer, DcrError> {
    let mut request = http
        .request(method.clone(), url.clone())
        .header(ACCEPT, "application/json");
    if let Some(header) = credential.header()? {
        request = request.header(AUTHORIZATION, header);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = http.send(request, url).await?;
    refuse_redirect(&response, &method, url)?;
    let status = response.status();
    let body = read_body_limited(response, url, MAX_DCR_BODY_BYTES).await?;
    Ok(Answer { status, body })
}

/// The error for a non-success answer: 401/403 are [`DcrError::Unauthorized`], the rest
/// [`DcrError::Rejected`].
fn failure(answer: &Answer) -> DcrError {
    let status = answer.status.as_u16();
    let (error, error_description) = error_members(&answer.body);
    if matches!(
        answer.status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    ) {
        return DcrError::Unauthorized {
            status,
            error,
            error_description,
        };
    }
    let body_snippet = (error.is_none() && !answer.body.is_empty()).then(|| snippet(&answer.body));
    DcrError::Rejected {
        status,
        error,
        error_description,
        body_snippet,
    }
}

/// `error` and `error_description` (RFC 7591 §3.2.2), or Okta's API error shape
/// (`errorCode`, `errorSummary`, `errorCauses[].errorSummary`).
fn error_members(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(without_bom(body)) else {
        return (None, None);
    };
    let text = |member: &str| {
        object
            .get(member)
            .and_then(Value::as_str)
            .map(|text| excerpt(text, MAX_DESCRIPTION_CHARS))
    };
    if let Some(error) = text("error") {
        return (Some(error), text("error_description"));
    }
    let Some(code) = text("errorCode") else {
        return (None, None);
    };
    let mut summary = text("errorSummary").unwrap_or_default();
    let causes = object.get("errorCauses").and_then(Value::as_array);
    for cause in causes.into_iter().flatten() {
        if let Some(cause) = cause.get("errorSummary").and_then(Value::as_str) {
            summary.push_str(if summary.is_empty() { "" } else { "; " });
            summary.push_str(cause);
        }
    }
    let summary = excerpt(&summary, MAX_DESCRIPTION_CHARS);
    (Some(code), (!summary.is_empty()).then_some(summary))
}

/// Reads a successful registration or management answer (RFC 7591 §3.2.1). Unknown members
/// are ignored; known members of the wrong type are an error.
fn parse_client(body: &[u8]) -> Result<RegisteredClient, DcrError> {
    let invalid = |reason: String| DcrError::InvalidResponse { reason };
    // The parser's message has a position, not content: safe with a secret in the body.
    let value: Value = serde_json::from_slice(without_bom(body))
        .map_err(|err| invalid(format!("the answer is not JSON ({err})")))?;
    let Value::Object(object) = value else {
        return Err(invalid("the answer is not a JSON object".to_owned()));
    };
    let client_id = match object.get("client_id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return Err(invalid("the answer has no `client_id`".to_owned()));
        }
        Some(_) => return Err(invalid("`client_id` is not a string".to_owned())),
    };
    let registration_client_uri = match optional_string(&object, "registration_client_uri")? {
        None => None,
        Some(uri) => Some(Url::parse(&uri).map_err(|_| {
            invalid(format!(
                "`registration_client_uri` {uri:?} is not an absolute URL"
            ))
        })?),
    };
    Ok(RegisteredClient {
        client_id,
        client_secret: optional_string(&object, "client_secret")?.map(Secret::new),
        client_secret_expires_at: optional_timestamp(&object, "client_secret_expires_at")?,
        client_id_issued_at: optional_timestamp(&object, "client_id_issued_at")?,
        registration_access_token: optional_string(&object, "registration_access_token")?
            .filter(|token| !token.is_empty())
            .map(Secret::new),
        registration_client_uri,
        metadata: EchoedMetadata {
            client_name: optional_string(&object, "client_name")?,
            grant_types: optional_strings(&object, "grant_types")?,
            token_endpoint_auth_method: optional_string(&object, "token_endpoint_auth_method")?,
            response_types: optional_strings(&object, "response_types")?,
            redirect_uris: optional_strings(&object, "redirect_uris")?,
            scope: optional_string(&object, "scope")?,
            application_type: optional_string(&object, "application_type")?,
        },
    })
}

fn wrong_type(member: &str, expected: &str) -> DcrError {
    DcrError::InvalidResponse {
        reason: format!("`{member}` is not {expected}"),
    }
}

fn optional_string(object: &Map<String, Value>, member: &str) -> Result<Option<String>, DcrError> {
    match object.get(member) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(wrong_type(member, "a string")),
    }
}

/// Reads a successful registration answer. When it cannot be used, the client exists at the
/// IdP anyway: the error is [`DcrError::UnusableRegistration`] with what identifies the client,
/// its URI derived in `style` when the answer has none.
fn parse_registration(
    body: &[u8],
    style: ClientUriStyle,
    registration_endpoint: &Url,
) -> Result<RegisteredClient, DcrError> {
    parse_client(body).map_err(|error| {
        let reason = match error {
            DcrError::InvalidResponse { reason } => reason,
            other => other.to_string(),
        };
        let created = created_client(body).map(|mut client| {
            if client.registration_client_uri.is_none() {
                client.registration_client_uri =
                    style.derive(registration_endpoint, &client.client_id);
            }
            Box::new(client)
        });
        DcrError::UnusableRegistration { reason, created }
    })
}

/// What identifies a client in an answer [`parse_client`] refused: a non-empty string
/// `client_id`, with the registration client URI and access token when they are usable.
fn created_client(body: &[u8]) -> Option<ManagedClient> {
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(without_bom(body)) else {
        return None;
    };
    let text = |member: &str| object.get(member).and_then(Value::as_str);
    let client_id = text("client_id").filter(|id| !id.is_empty())?;
    Some(ManagedClient {
        client_id: client_id.to_owned(),
        registration_client_uri: text("registration_client_uri").and_then(|u| Url::parse(u).ok()),
        registration_access_token: text("registration_access_token")
            .filter(|token| !token.is_empty())
            .map(Secret::new),
    })
}

fn optional_timestamp(object: &Map<String, Value>, member: &str) -> Result<Option<u64>, DcrError> {
    object.get(member).map_or(Ok(None), |value| {
        timestamp(value).ok_or_else(|| {
            wrong_type(
                member,
                "a number of seconds (an integer, a float without fraction, or such a decimal \
                 string)",
            )
        })
    })
}

/// An RFC 7591 §3.2.1 time (`client_id_issued_at`, `client_secret_expires_at`: seconds since
/// the epoch), read tolerantly because IdPs differ in how they write it: a non-negative JSON
/// integer, a float without fraction (`1.8e9`, `0.0`), or a string of decimal digits (`"0"`);
/// `null` means unknown (`Some(None)`). Anything else is not a time (`None`).
fn timestamp(value: &Value) -> Option<Option<u64>> {
    match value {
        Value::Null => Some(None),
        Value::Number(number) => match number.as_u64() {
            Some(seconds) => Some(Some(seconds)),
            None => {
                let seconds = number.as_f64()?;
                let whole = seconds.is_finite()
                    && seconds >= 0.0
                    && seconds.fract() == 0.0
                    && seconds <= u64::MAX as f64;
                // Exact: a whole float within range converts without loss of meaning.
                whole.then_some(Some(seconds as u64))
            }
        },
        Value::String(text) => {
            let digits = !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
            digits.then(|| text.parse::<u64>().ok()).flatten().map(Some)
        }
        _ => None,
    }
}

/// An array of strings; a lone string is read as a one-element array (some IdPs echo
/// `redirect_uris` that way).
fn optional_strings(
    object: &Map<String, Value>,
    member: &str,
) -> Result<Option<Vec<String>>, DcrError> {
    match object.get(member) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(vec![text.clone()])),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| wrong_type(member, "an array of strings")),
        Some(_) => Err(wrong_type(member, "an array of strings")),
    }
}

/// Logs when the IdP registered something other than what was asked: the portal must then
/// show the IdP's values (e.g. the authentication method for the sample token request).
fn warn_on_overrides(
    provider: Provider,
    asked: &ClientMetadata,
    echoed: &EchoedMetadata,
    client_id: &str,
) {
    if let Some(method) = &echoed.token_endpoint_auth_method
        && *method != asked.token_endpoint_auth_method
    {
        tracing::warn!(
            %provider,
            client_id,
            asked = %asked.token_endpoint_auth_method,
            registered = %method,
            "the identity provider registered another token endpoint authentication method",
        );
    }
    if let Some(grants) = &echoed.grant_types
        && *grants != asked.grant_types
    {
        tracing::warn!(
            %provider,
            client_id,
            asked = ?asked.grant_types,
            registered = ?grants,
            "the identity provider registered other grant types",
        );
    }
}

/// Where a registered client is managed when the IdP's answer did not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientUriStyle {
    /// Only what the IdP reports (plain RFC 7592: the URI is opaque).
    Reported,
    /// `<registration_endpoint>/<client_id>` (Keycloak, Okta).
    PathSegment,
    /// `<registration_endpoint>?client_id=<client_id>` (Gluu, Janssen).
    QueryParameter,
}

impl ClientUriStyle {
    fn derive(self, registration_endpoint: &Url, client_id: &str) -> Option<Url> {
        let mut uri = registration_endpoint.clone();
        match self {
            ClientUriStyle::Reported => return None,
            ClientUriStyle::PathSegment => {
                uri.path_segments_mut().ok()?.pop_if_empty().push(client_id);
            }
            ClientUriStyle::QueryParameter => {
                uri.query_pairs_mut().append_pair("client_id", client_id);
            }
        }
        Some(uri)
    }
}

#[cfg(test)]
mod tests;
