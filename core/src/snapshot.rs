//! The snapshot: everything a filter needs to decide, as the control plane publishes it (or as
//! a static plugin configuration carries it), and its compiled, validated runtime form.
//!
//! - `wire`: [`Snapshot`] and its parts, plain serde types with unknown fields rejected and
//!   every default taken from [`crate::rules`].
//! - `compile`: [`CompiledSnapshot::compile`] checks every rule and reference and builds the
//!   lookup structures used on each request; a snapshot that does not compile is never
//!   applied, and its [`SnapshotError`] names the item at fault.
//! - `codec`: the binary and JSON encodings, and the content digest.
//! - `delta`: [`SnapshotDelta`], what changed from one version to another, which the control
//!   plane computes and filters apply.

mod codec;
mod compile;
mod delta;
mod wire;

pub use codec::{BINARY_MEDIA_TYPE, SnapshotDigest};
pub use compile::{
    BoundPolicy, CallerBinding, CompiledAccess, CompiledApi, CompiledIssuer, CompiledPolicy,
    CompiledSnapshot, LimitSubject, Section, SnapshotError, Subject, UnmatchedRule, compile_global,
};
pub use delta::{DELTA_MEDIA_TYPE, DeltaError, Keyed, SectionDelta, SnapshotDelta};
pub use wire::{
    AccessRight, ApiSpec, ClientBinding, ExhaustedQuota, GlobalSpec, HmacSecretSpec, IssuerSpec,
    JwkList, LimitScope, PolicySpec, PolicyState, QuotaSpec, RateLimitSpec, Snapshot, TokenSources,
    Unmatched,
};

#[cfg(test)]
mod tests;
