//! Portico's decisions, as pure functions over plain inputs: JWK parsing, token verification,
//! policy decisions, rate-limit arithmetic and the snapshot format.
//!
//! This crate does no I/O and never reads a clock: time is always an argument, and host
//! services (native crypto, shared counters) come in through traits. It builds natively, where
//! all of its tests run, and for `wasm32-wasip1`, where the filter uses it.

pub mod alg;
pub mod cache;
pub mod config;
pub mod crypto;
pub mod decision;
pub mod denial;
pub mod jwk;
pub mod metrics;
pub mod policy;
pub mod rate_limit;
pub mod request;
pub mod routing;
pub mod rules;
pub mod snapshot;
pub mod sync;
pub mod token;
pub mod usage;

#[cfg(feature = "test-util")]
pub mod testing;
