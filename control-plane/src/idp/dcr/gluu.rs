//! Provider `gluu`: Gluu Server's oxAuth and its successor Janssen's jans-auth.
//!
//! It is RFC 7591 / RFC 7592 with these differences (sources in `docs/providers.md`):
//!
//! - The endpoint is `/oxauth/restv1/register` (Gluu 4) or `/jans-auth/restv1/register`
//!   (Janssen); discovery names it.
//! - Registration may be open: the initial access token is optional, and without one no
//!   `Authorization` header is sent.
//! - A client is managed at `<endpoint>?client_id=<client_id>` (the `registration_client_uri`
//!   it reports has that form), with `Authorization: Bearer <registration access token>`.
//! - `redirect_uris` is required only for redirect-based flows (`authorization_code`,
//!   `implicit`, or `code`/`token`/`id_token` response types), which
//!   [`ClientMetadata`] already checks; a `client_credentials` client with `response_types: []`
//!   needs none.
//! - Dynamically registered clients expire by default (`dynamicRegistrationExpirationTime`,
//!   one day in Gluu 4's defaults): `client_secret_expires_at` says when.
//! - The registration access token does not rotate unless the server enables
//!   `rotateClientRegistrationAccessTokenOnUsage`; a rotated one is returned like any other.
//! - A client that no longer exists answers 401 `invalid_token`, not 404, so a deletion of an
//!   already deleted client surfaces as [`super::DcrError::Unauthorized`].

use super::rfc7591::{Protocol, Rfc7591Driver};
use super::{ClientUriStyle, Provider};

/// The Gluu / Janssen driver: RFC 7591 / RFC 7592 with the differences listed above, sending its requests with
/// `http`.
pub fn driver(http: reqwest::Client) -> Rfc7591Driver {
    Rfc7591Driver::with_protocol(
        http,
        Protocol {
            provider: Provider::Gluu,
            client_uri: ClientUriStyle::QueryParameter,
            rotates_token: false,
        },
    )
}

#[cfg(test)]
mod tests;
