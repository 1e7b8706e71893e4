//! The admin API over real HTTP: a server on 127.0.0.1:0 with a temporary data directory, one
//! module per resource covering its success paths and its error paths.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test by panicking"
)]

mod api_docs;
mod apis;
mod audit;
mod catalogue;
mod dcr;
mod developers;
mod general;
mod issuers;
mod oauth_clients;
mod policies;
mod registration_limits;
mod support;
