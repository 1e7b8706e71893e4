//! Provider `keycloak`: Keycloak's OpenID Connect client registration service.
//!
//! It is RFC 7591 / RFC 7592 with these differences (sources in `docs/providers.md`):
//!
//! - The endpoint is `<base>/realms/<realm>/clients-registrations/openid-connect` (older
//!   releases put `/auth` before `/realms`, which belongs in the base); see
//!   [`registration_endpoint`]. A client is managed at `<endpoint>/<client_id>`, which Keycloak
//!   also reports as `registration_client_uri`.
//! - Registration takes an initial access token (which expires and allows a limited number of
//!   clients; both failures answer 401 `invalid_token` with a description saying which), a
//!   bearer token of an account with `create-client`, or nothing when the realm's anonymous
//!   policies allow it. A `client_id` in the registration request is refused.
//! - The registration access token rotates: every update returns a new one and the old one
//!   stops working ("Registration access tokens are only valid once"); a read returns one too.
//!   The driver returns whatever came back, so the caller always stores the newest.
//! - An update whose `client_id` differs from the path is refused ("Client Identifier
//!   modified"); the driver always sends it.
//! - With a registration access token, a client that no longer exists answers 401, not 404.

use url::Url;

use super::rfc7591::{Protocol, Rfc7591Driver};
use super::{ClientUriStyle, DcrError, Provider};
use crate::idp::IdpHttp;

/// The path of the OpenID Connect registration provider under a realm.
const REGISTRATION_PATH: [&str; 2] = ["clients-registrations", "openid-connect"];

/// `<base>/realms/<realm>/clients-registrations/openid-connect`, with `realm` escaped as a
/// path segment. `base` is Keycloak's root URL (`https://sso.example.com`, or
/// `https://sso.example.com/auth` for releases before 17).
pub fn registration_endpoint(base: &Url, realm: &str) -> Result<Url, DcrError> {
    let misconfigured = |reason: &str| DcrError::Misconfigured {
        reason: reason.to_owned(),
    };
    if realm.is_empty() {
        return Err(misconfigured("the Keycloak realm is empty"));
    }
    let mut endpoint = base.clone();
    endpoint.set_query(None);
    endpoint.set_fragment(None);
    endpoint
        .path_segments_mut()
        .map_err(|()| misconfigured("the Keycloak base URL cannot have a path"))?
        .pop_if_empty()
        .push("realms")
        .push(realm)
        .extend(REGISTRATION_PATH);
    Ok(endpoint)
}

/// The Keycloak driver: RFC 7591 / RFC 7592 with the differences listed above, sending its requests with
/// `http`.
pub fn driver(http: IdpHttp) -> Rfc7591Driver {
    Rfc7591Driver::with_protocol(
        http,
        Protocol {
            provider: Provider::Keycloak,
            client_uri: ClientUriStyle::PathSegment,
            rotates_token: true,
            extra_members: &[],
        },
    )
}

#[cfg(test)]
mod tests;
