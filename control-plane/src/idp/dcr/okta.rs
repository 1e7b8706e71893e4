//! Provider `okta`: Okta's Dynamic Client Registration API (`/oauth2/v1/clients`).
//!
//! It "largely follows" RFC 7591, but manages clients with the org's credential instead of
//! RFC 7592 registration access tokens (sources in `docs/providers.md`):
//!
//! - Every call (register, read, replace, delete) needs the org credential: an API token,
//!   sent as `Authorization: SSWS <token>`, or an OAuth 2.0 access token with the
//!   `okta.clients.register` / `okta.clients.manage` scopes, sent as `Bearer`. The driver sends
//!   a token that looks like a JWT (three dot-separated parts) as `Bearer` and anything else as
//!   `SSWS`; API tokens never contain dots. There is no open registration.
//! - `application_type` decides which grant types are valid (`service` is the one for
//!   `client_credentials`) and defaults to `web`, which refuses a `client_credentials`-only
//!   client. When the metadata has none, the driver sends `service` for a client whose grant
//!   types are all `client_credentials`. Okta may set grant types and the authentication
//!   method from the application type; the echoed values are what the client really has.
//! - Okta returns no `registration_access_token` nor `registration_client_uri`; a client lives
//!   at `<endpoint>/<client_id>`, which the driver reports as the `registration_client_uri`.
//! - A replacement (`PUT`) must carry every setting, or it fails; the client secret may be
//!   left out (it is then kept), `client_id_issued_at` and `client_secret_expires_at` must be.
//!   The driver sends the whole metadata with the `client_id`.
//! - `scope` is not an Okta client setting (scopes are granted by authorization server
//!   policies), so it is not sent.
//! - A read never returns the client secret.
//! - Delete answers 204; 404 means the client was already gone.

use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};
use url::Url;

use super::rfc7591::deletion;
use super::{
    Answer, ClientMetadata, ClientUriStyle, Credential, DcrDriver, DcrError, DcrFuture, Deletion,
    ManagedClient, Provider, RegisteredClient, RegistrationTarget, exchange, failure, parse_client,
    parse_registration, warn_on_overrides,
};
use crate::idp::IdpHttp;

/// The Okta driver.
#[derive(Debug, Clone)]
pub struct OktaDriver {
    http: IdpHttp,
}

impl OktaDriver {
    /// A driver sending its requests with `http`.
    pub fn new(http: IdpHttp) -> Self {
        OktaDriver { http }
    }

    async fn register(
        &self,
        target: &RegistrationTarget,
        metadata: &ClientMetadata,
    ) -> Result<RegisteredClient, DcrError> {
        metadata.check()?;
        let credential = credential(target)?;
        let body = body(metadata);
        let endpoint = &target.registration_endpoint;
        let answer = exchange(&self.http, Method::POST, endpoint, credential, Some(&body)).await?;
        if !answer.status.is_success() {
            return Err(failure(&answer));
        }
        let mut client = parse_registration(&answer.body, ClientUriStyle::PathSegment, endpoint)?;
        if client.registration_client_uri.is_none() {
            client.registration_client_uri =
                ClientUriStyle::PathSegment.derive(endpoint, &client.client_id);
        }
        warn_on_overrides(
            Provider::Okta,
            metadata,
            &client.metadata,
            &client.client_id,
        );
        tracing::info!(provider = %Provider::Okta, client_id = %client.client_id, "registered client at the identity provider");
        Ok(client)
    }

    async fn read(
        &self,
        target: &RegistrationTarget,
        client: &ManagedClient,
    ) -> Result<RegisteredClient, DcrError> {
        let credential = credential(target)?;
        let uri = client_uri(target, client)?;
        let answer = exchange(&self.http, Method::GET, &uri, credential, None).await?;
        managed_answer(&answer, client)
    }

    async fn update(
        &self,
        target: &RegistrationTarget,
        client: &ManagedClient,
        metadata: &ClientMetadata,
    ) -> Result<RegisteredClient, DcrError> {
        metadata.check()?;
        let credential = credential(target)?;
        let uri = client_uri(target, client)?;
        let mut body = body(metadata);
        body.insert("client_id".to_owned(), client.client_id.clone().into());
        let answer = exchange(&self.http, Method::PUT, &uri, credential, Some(&body)).await?;
        let updated = managed_answer(&answer, client)?;
        warn_on_overrides(
            Provider::Okta,
            metadata,
            &updated.metadata,
            &updated.client_id,
        );
        Ok(updated)
    }

    async fn delete(
        &self,
        target: &RegistrationTarget,
        client: &ManagedClient,
    ) -> Result<Deletion, DcrError> {
        let credential = credential(target)?;
        let uri = client_uri(target, client)?;
        let answer = exchange(&self.http, Method::DELETE, &uri, credential, None).await?;
        deletion(&answer, Provider::Okta, &client.client_id)
    }
}

/// The org credential: required; `Bearer` for an OAuth access token (a JWT), `SSWS` for an API
/// token.
fn credential(target: &RegistrationTarget) -> Result<Credential<'_>, DcrError> {
    let token = target
        .initial_access_token
        .as_ref()
        .ok_or_else(|| DcrError::Misconfigured {
            reason: "Okta needs a token to register and manage clients: set the initial access \
                     token to an Okta API token, or to an OAuth access token with the \
                     okta.clients.register and okta.clients.manage scopes"
                .to_owned(),
        })?;
    let looks_like_jwt = token.expose().split('.').count() == 3;
    Ok(if looks_like_jwt {
        Credential::Bearer(token)
    } else {
        Credential::Ssws(token)
    })
}

/// The request body: the standard members without `scope`, with an `application_type`.
fn body(metadata: &ClientMetadata) -> Map<String, Value> {
    let mut body = metadata.to_json();
    body.remove("scope");
    if metadata.application_type.is_none()
        && metadata
            .grant_types
            .iter()
            .all(|grant| grant == "client_credentials")
    {
        body.insert("application_type".to_owned(), Value::from("service"));
    }
    body
}

/// Where the client lives: what was stored, else `<endpoint>/<client_id>`.
fn client_uri(target: &RegistrationTarget, client: &ManagedClient) -> Result<Url, DcrError> {
    client
        .registration_client_uri
        .clone()
        .or_else(|| {
            ClientUriStyle::PathSegment.derive(&target.registration_endpoint, &client.client_id)
        })
        .ok_or(DcrError::ManagementNotSupported {
            reason: "no client URL can be derived from the registration endpoint",
        })
}

/// Reads a read or replace answer; Okta has no registration access token, so none is kept.
fn managed_answer(answer: &Answer, client: &ManagedClient) -> Result<RegisteredClient, DcrError> {
    if answer.status == StatusCode::NOT_FOUND {
        return Err(DcrError::ClientNotFound {
            client_id: client.client_id.clone(),
        });
    }
    if !answer.status.is_success() {
        return Err(failure(answer));
    }
    let mut current = parse_client(&answer.body)?;
    if current.client_id != client.client_id {
        return Err(DcrError::InvalidResponse {
            reason: format!(
                "the answer is for client `{}`, not `{}`",
                current.client_id, client.client_id
            ),
        });
    }
    if current.registration_client_uri.is_none() {
        current.registration_client_uri = client.registration_client_uri.clone();
    }
    Ok(current)
}

impl DcrDriver for OktaDriver {
    fn provider(&self) -> Provider {
        Provider::Okta
    }

    fn register<'a>(
        &'a self,
        target: &'a RegistrationTarget,
        metadata: &'a ClientMetadata,
    ) -> DcrFuture<'a, RegisteredClient> {
        Box::pin(OktaDriver::register(self, target, metadata))
    }

    fn read<'a>(
        &'a self,
        target: &'a RegistrationTarget,
        client: &'a ManagedClient,
    ) -> DcrFuture<'a, RegisteredClient> {
        Box::pin(OktaDriver::read(self, target, client))
    }

    fn update<'a>(
        &'a self,
        target: &'a RegistrationTarget,
        client: &'a ManagedClient,
        metadata: &'a ClientMetadata,
    ) -> DcrFuture<'a, RegisteredClient> {
        Box::pin(OktaDriver::update(self, target, client, metadata))
    }

    fn delete<'a>(
        &'a self,
        target: &'a RegistrationTarget,
        client: &'a ManagedClient,
    ) -> DcrFuture<'a, Deletion> {
        Box::pin(OktaDriver::delete(self, target, client))
    }
}

#[cfg(test)]
mod tests;
