//! The gateway settings: the snapshot's `global` section, which concerns every request a
//! filter sees, matched by an API or not (`unmatched: pass | deny` and the public prefixes
//! that `deny` lets through). One record, written with `If-Match` like the DCR settings.

use portico_core::rules;
use portico_core::snapshot::{GlobalSpec, Unmatched};
use serde::Deserialize;
use utoipa::ToSchema;

use super::validate;
use super::{Actor, AppState, Precondition, Reader, ResourceKind, ResourceRef, Versioned};
use crate::error::ApiError;
use crate::store::Tree;

/// The key of the gateway settings in [`Tree::Settings`].
const KEY: &str = "gateway";

/// The body of a replacement of the gateway settings.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettingsInput {
    /// What happens to a request that matches no API. Default: `pass`.
    #[serde(default)]
    pub unmatched: Unmatched,
    /// With `deny`: path prefixes that still pass untouched (each starts with `/`; at most
    /// 100). Default: none.
    #[serde(default)]
    pub public_prefixes: Vec<String>,
}

/// The gateway settings at `reader`'s store: defaults (`pass`, no public prefixes) until
/// first written.
pub(crate) fn read(reader: Reader<'_>) -> Result<GlobalSpec, ApiError> {
    Ok(reader
        .load_from::<Versioned<GlobalSpec>>(Tree::Settings, KEY.as_bytes())?
        .map(|versioned| versioned.value)
        .unwrap_or_default())
}

/// The gateway settings service.
#[derive(Debug, Clone, Copy)]
pub struct Gateway<'a> {
    state: &'a AppState,
}

impl<'a> Gateway<'a> {
    pub(crate) fn new(state: &'a AppState) -> Self {
        Gateway { state }
    }

    /// The settings and their revision (`0` until first written).
    pub fn get(&self) -> Result<Versioned<GlobalSpec>, ApiError> {
        self.state.setting(KEY, GlobalSpec::default)
    }

    /// Replaces the settings once `precondition` (required) holds. Writing the settings they
    /// already hold changes nothing and answers the current revision.
    ///
    /// # Errors
    /// 400 for a bad prefix (named by field), 412/428 for the precondition.
    pub async fn put(
        &self,
        actor: &Actor,
        precondition: &Precondition,
        input: GatewaySettingsInput,
    ) -> Result<Versioned<GlobalSpec>, ApiError> {
        validate::distinct("public_prefixes", &input.public_prefixes)?;
        for (i, prefix) in input.public_prefixes.iter().enumerate() {
            validate::rule(
                &format!("public_prefixes[{i}]"),
                rules::path_prefix(prefix, true),
            )?;
        }
        let value = GlobalSpec {
            unmatched: input.unmatched,
            public_prefixes: input.public_prefixes,
        };
        let resource = ResourceRef::new(ResourceKind::GatewaySettings, "global");
        self.state
            .put_setting(
                actor,
                precondition,
                (KEY, resource),
                value,
                GlobalSpec::default,
            )
            .await
    }
}
