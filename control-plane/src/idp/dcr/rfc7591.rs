//! Provider `other`: plain RFC 7591 registration and RFC 7592 management.
//!
//! - Register: `POST` the metadata to the registration endpoint, with
//!   `Authorization: Bearer <initial access token>` when one is configured and without any
//!   `Authorization` header otherwise (open registration, e.g. Curity or `oidc-provider`
//!   configured so).
//! - Read, update, delete: at the `registration_client_uri` the IdP returned, with
//!   `Authorization: Bearer <registration access token>`. The URI is opaque (RFC 7592 §1.1):
//!   this driver never builds one, so a client registered without both is
//!   [`DcrError::ManagementNotSupported`].
//! - Update sends the whole registration with the `client_id` (RFC 7592 §2.2), and never the
//!   members the client must not send (`registration_access_token`,
//!   `registration_client_uri`, `client_secret_expires_at`, `client_id_issued_at`).
//! - A new `registration_access_token` in a read or update answer replaces the old one
//!   (RFC 7592 §3 allows rotation on any use).
//! - Delete answers 204; 404 and 410 mean the client was already gone.
//!
//! `Protocol` implements all of this once, parametrized by what differs between the
//! RFC 7592-speaking providers (where the client URI is when unreported, whether the token
//! always rotates); the Keycloak and Gluu drivers are this protocol with their parameters.

use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};
use url::Url;

use super::{
    Answer, ClientMetadata, ClientUriStyle, Credential, DcrDriver, DcrError, DcrFuture, Deletion,
    ManagedClient, Provider, RegisteredClient, RegistrationTarget, exchange, failure, parse_client,
    parse_registration, warn_on_overrides,
};
use crate::idp::IdpHttp;
use crate::secret::Secret;

/// The RFC 7591/7592 exchange, with the parameters that differ between providers.
#[derive(Debug, Clone, Copy)]
pub(super) struct Protocol {
    /// Who is spoken to (for logs).
    pub(super) provider: Provider,
    /// Where the client is managed when the registration answer does not say.
    pub(super) client_uri: ClientUriStyle,
    /// Whether the IdP rotates the registration access token on every use, so that an answer
    /// without one deserves a warning.
    pub(super) rotates_token: bool,
    /// Provider-specific members added to every registration and update body (e.g. Gluu's
    /// request for JWT access tokens).
    pub(super) extra_members: &'static [(&'static str, ExtraValue)],
}

/// The value of a provider-specific member (see [`Protocol::extra_members`]).
#[derive(Debug, Clone, Copy)]
pub(super) enum ExtraValue {
    Bool(bool),
    Str(&'static str),
}

impl Protocol {
    /// The body for `metadata`, with the provider's extra members.
    fn body(&self, metadata: &ClientMetadata) -> Map<String, Value> {
        let mut body = metadata.to_json();
        for (member, value) in self.extra_members {
            let value = match value {
                ExtraValue::Bool(flag) => Value::from(*flag),
                ExtraValue::Str(text) => Value::from(*text),
            };
            body.insert((*member).to_owned(), value);
        }
        body
    }
}

// === impl Protocol ===

impl Protocol {
    pub(super) async fn register(
        &self,
        http: &IdpHttp,
        target: &RegistrationTarget,
        metadata: &ClientMetadata,
    ) -> Result<RegisteredClient, DcrError> {
        metadata.check()?;
        let credential = target
            .initial_access_token
            .as_ref()
            .map_or(Credential::None, Credential::Bearer);
        let body = self.body(metadata);
        let answer = exchange(
            http,
            Method::POST,
            &target.registration_endpoint,
            credential,
            Some(&body),
        )
        .await?;
        if !answer.status.is_success() {
            return Err(failure(&answer));
        }
        let mut client =
            parse_registration(&answer.body, self.client_uri, &target.registration_endpoint)?;
        if client.registration_client_uri.is_none() {
            client.registration_client_uri = self
                .client_uri
                .derive(&target.registration_endpoint, &client.client_id);
        }
        warn_on_overrides(self.provider, metadata, &client.metadata, &client.client_id);
        tracing::info!(
            provider = %self.provider,
            client_id = %client.client_id,
            manageable = client.registration_client_uri.is_some()
                && client.registration_access_token.is_some(),
            "registered client at the identity provider",
        );
        Ok(client)
    }

    pub(super) async fn read(
        &self,
        http: &IdpHttp,
        client: &ManagedClient,
    ) -> Result<RegisteredClient, DcrError> {
        let (uri, token) = management(client)?;
        let answer = exchange(http, Method::GET, uri, Credential::Bearer(token), None).await?;
        self.managed_answer(&answer, client)
    }

    pub(super) async fn update(
        &self,
        http: &IdpHttp,
        client: &ManagedClient,
        metadata: &ClientMetadata,
    ) -> Result<RegisteredClient, DcrError> {
        metadata.check()?;
        let (uri, token) = management(client)?;
        let mut body = self.body(metadata);
        body.insert("client_id".to_owned(), client.client_id.clone().into());
        let answer = exchange(
            http,
            Method::PUT,
            uri,
            Credential::Bearer(token),
            Some(&body),
        )
        .await?;
        let updated = self.managed_answer(&answer, client)?;
        warn_on_overrides(
            self.provider,
            metadata,
            &updated.metadata,
            &updated.client_id,
        );
        Ok(updated)
    }

    pub(super) async fn delete(
        &self,
        http: &IdpHttp,
        client: &ManagedClient,
    ) -> Result<Deletion, DcrError> {
        let (uri, token) = management(client)?;
        let answer = exchange(http, Method::DELETE, uri, Credential::Bearer(token), None).await?;
        deletion(&answer, self.provider, &client.client_id)
    }

    /// Reads a read or update answer: the same client, with the newest token and URI.
    fn managed_answer(
        &self,
        answer: &Answer,
        client: &ManagedClient,
    ) -> Result<RegisteredClient, DcrError> {
        if matches!(answer.status, StatusCode::NOT_FOUND | StatusCode::GONE) {
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
        if current.registration_access_token.is_none() {
            if self.rotates_token {
                tracing::warn!(
                    provider = %self.provider,
                    client_id = %client.client_id,
                    "the identity provider usually rotates the registration access token but sent none; keeping the one used",
                );
            }
            current.registration_access_token = client.registration_access_token.clone();
        }
        if current.registration_client_uri.is_none() {
            current.registration_client_uri = client.registration_client_uri.clone();
        }
        Ok(current)
    }
}

/// The client configuration endpoint and registration access token, both required.
fn management(client: &ManagedClient) -> Result<(&Url, &Secret), DcrError> {
    let uri = client
        .registration_client_uri
        .as_ref()
        .ok_or(DcrError::ManagementNotSupported {
            reason: "the identity provider returned no registration_client_uri for this client",
        })?;
    let token = client.registration_access_token.as_ref().ok_or(
        DcrError::ManagementNotSupported {
            reason: "the identity provider returned no registration_access_token for this client",
        },
    )?;
    Ok((uri, token))
}

/// Reads a delete answer: success is deleted, 404 and 410 already gone.
pub(super) fn deletion(
    answer: &Answer,
    provider: Provider,
    client_id: &str,
) -> Result<Deletion, DcrError> {
    let outcome = if answer.status.is_success() {
        Deletion::Deleted
    } else if matches!(answer.status, StatusCode::NOT_FOUND | StatusCode::GONE) {
        Deletion::AlreadyGone
    } else {
        return Err(failure(answer));
    };
    tracing::info!(%provider, client_id, ?outcome, "deleted client at the identity provider");
    Ok(outcome)
}

/// The driver for any RFC 7591 / RFC 7592 endpoint; the Keycloak and Gluu drivers are this
/// driver with their own [`Protocol`] variations.
#[derive(Debug, Clone)]
pub struct Rfc7591Driver {
    http: IdpHttp,
    protocol: Protocol,
}

impl Rfc7591Driver {
    /// A plain RFC 7591 / RFC 7592 driver (provider `other`) sending its requests with `http`.
    pub fn new(http: IdpHttp) -> Self {
        Rfc7591Driver::with_protocol(
            http,
            Protocol {
                provider: Provider::Other,
                client_uri: ClientUriStyle::Reported,
                rotates_token: false,
                extra_members: &[],
            },
        )
    }

    /// A driver for a provider that varies the protocol as `protocol` says.
    pub(super) fn with_protocol(http: IdpHttp, protocol: Protocol) -> Self {
        Rfc7591Driver { http, protocol }
    }
}

impl DcrDriver for Rfc7591Driver {
    fn provider(&self) -> Provider {
        self.protocol.provider
    }

    fn register<'a>(
        &'a self,
        target: &'a RegistrationTarget,
        metadata: &'a ClientMetadata,
    ) -> DcrFuture<'a, RegisteredClient> {
        Box::pin(self.protocol.register(&self.http, target, metadata))
    }

    fn read<'a>(
        &'a self,
        _target: &'a RegistrationTarget,
        client: &'a ManagedClient,
    ) -> DcrFuture<'a, RegisteredClient> {
        Box::pin(self.protocol.read(&self.http, client))
    }

    fn update<'a>(
        &'a self,
        _target: &'a RegistrationTarget,
        client: &'a ManagedClient,
        metadata: &'a ClientMetadata,
    ) -> DcrFuture<'a, RegisteredClient> {
        Box::pin(self.protocol.update(&self.http, client, metadata))
    }

    fn delete<'a>(
        &'a self,
        _target: &'a RegistrationTarget,
        client: &'a ManagedClient,
    ) -> DcrFuture<'a, Deletion> {
        Box::pin(self.protocol.delete(&self.http, client))
    }
}

#[cfg(test)]
mod tests;
