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
//! - Access tokens are opaque (reference tokens) unless the client asks for JWTs, which the
//!   gateway needs: every registration and update sends `access_token_as_jwt: true` and
//!   `access_token_signing_alg` ([`ACCESS_TOKEN_SIGNING_ALG`]), the client metadata of
//!   Janssen's `RegisterRequestParam` and of oxAuth since GluuFederation/oxAuth#638.

/// The algorithm Gluu is asked to sign access tokens with: RS256, which every IdP supports
/// (OpenID Connect Discovery §3) and every Portico API allows unless an operator removes it.
pub const ACCESS_TOKEN_SIGNING_ALG: &str = "RS256";

use super::rfc7591::{ExtraValue, Protocol, Rfc7591Driver};
use super::{ClientUriStyle, Provider};
use crate::idp::IdpHttp;

/// The Gluu / Janssen driver: RFC 7591 / RFC 7592 with the differences listed above, sending its requests with
/// `http`.
pub fn driver(http: IdpHttp) -> Rfc7591Driver {
    Rfc7591Driver::with_protocol(
        http,
        Protocol {
            provider: Provider::Gluu,
            client_uri: ClientUriStyle::QueryParameter,
            rotates_token: false,
            extra_members: &[
                ("access_token_as_jwt", ExtraValue::Bool(true)),
                (
                    "access_token_signing_alg",
                    ExtraValue::Str(ACCESS_TOKEN_SIGNING_ALG),
                ),
            ],
        },
    )
}

#[cfg(test)]
mod tests;
