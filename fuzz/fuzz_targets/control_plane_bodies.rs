//! The control plane's JSON request bodies, parsed by `http::extract::parse_json`, the function
//! the `JsonBody` extractor calls, into the input type of each handler that takes one.
//!
//! The first byte chooses the type (see `BODIES`); the rest is the body. Checks: a body either
//! parses or is refused with a 400 (`malformed_json` or `invalid_request`), and a shape error
//! names a field whenever serde names one; types that also serialise round-trip.
//!
//! The services' field validation (`ApiInput::validate` and the like) is private and runs
//! inside store transactions, so it is reached here only through its tests, not fuzzed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico_control_plane::error::ApiError;
use portico_control_plane::http::data_plane::UnknownKid;
use portico_control_plane::http::extract::parse_json;
use portico_control_plane::service::{
    apis, catalogue, dcr, developers, gateway, issuers, oauth_clients, policies, portal,
    registration,
};
use serde::de::DeserializeOwned;

/// Parses `body` as `T`; a refusal must be one of the two 400s.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    match parse_json::<T>(body) {
        Ok(value) => Some(value),
        Err(error) => {
            assert_eq!(error.status().as_u16(), 400, "{error:?}");
            match &error {
                ApiError::MalformedJson(message) => assert!(!message.is_empty()),
                ApiError::InvalidRequest { field, message } => {
                    assert!(!message.is_empty());
                    if message.starts_with("unknown field `")
                        || message.starts_with("missing field `")
                    {
                        assert!(field.is_some(), "{error:?}");
                    }
                }
                other => panic!("unexpected refusal {other:?}"),
            }
            None
        }
    }
}

/// For a type that also serialises: what parsed serialises, parses again, and serialises the
/// same.
fn round_trip<T: DeserializeOwned + serde::Serialize>(body: &[u8]) {
    if let Some(value) = parse::<T>(body) {
        let first = serde_json::to_vec(&value).expect("a parsed body serialises");
        let again = parse_json::<T>(&first).expect("a serialised body parses again");
        let second = serde_json::to_vec(&again).expect("serialises again");
        assert_eq!(first, second, "round trip changed the body");
    }
}

const BODIES: u8 = 16;

fuzz_target!(|bytes: &[u8]| {
    let Some((&selector, body)) = bytes.split_first() else {
        return;
    };
    match selector % BODIES {
        0 => drop(parse::<issuers::IssuerInput>(body)),
        1 => drop(parse::<developers::NewDeveloper>(body)),
        2 => drop(parse::<developers::DeveloperUpdate>(body)),
        3 => drop(parse::<developers::PasswordReset>(body)),
        4 => drop(parse::<oauth_clients::AccessExpiryInput>(body)),
        5 => drop(parse::<gateway::GatewaySettingsInput>(body)),
        6 => drop(parse::<policies::PolicyInput>(body)),
        7 => drop(parse::<catalogue::CatalogueEntryInput>(body)),
        8 => round_trip::<portal::PortalSettings>(body),
        9 => drop(parse::<apis::ApiInput>(body)),
        10 => drop(parse::<dcr::DcrSettingsInput>(body)),
        11 => drop(parse::<UnknownKid>(body)),
        12 => round_trip::<registration::ClientRequest>(body),
        13 => drop(parse::<registration::RedirectUris>(body)),
        14 => drop(parse::<portal::SignUp>(body)),
        _ => drop(parse::<portal::LogIn>(body)),
    }
});
