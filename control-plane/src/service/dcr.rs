//! Dynamic Client Registration settings: one global set, and an optional override per
//! catalogue entry. The initial registration access token is write-only and sealed at rest.
//!
//! The settings that apply to an entry are its override when set, else the global settings
//! ([`Dcr::effective`]). Endpoints that are not configured (registration endpoint, token
//! endpoint) are discovered from `<issuer>/.well-known/openid-configuration`, cached
//! ([`Dcr::resolve`]). Saving settings with `enabled: true` runs that discovery at once, so that
//! an unreachable IdP, a document for another issuer or one without a registration endpoint is
//! the operator's `422 discovery_failed` instead of a developer's failed registration later.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::audit::{AuditAction, AuditChange};
use super::catalogue::CatalogueEntry;
use super::{
    Actor, AppState, Change, Precondition, ResourceKind, ResourceRef, Versioned, to_value, validate,
};
use url::Url;

use crate::error::ApiError;
use crate::idp::TransportError;
use crate::idp::dcr::Provider;
use crate::idp::discovery::{DiscoveryError, ProviderMetadata, well_known_url};
use crate::secret::{SealContext, Secret};
use crate::store::{Tree, Write};

const GLOBAL_KEY: &str = "dcr";
const TOKEN_FIELD: &str = "initial_access_token";
/// The longest initial access token accepted.
pub const MAX_TOKEN_LEN: usize = 8192;

/// How the registered client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuthMethod {
    /// `client_id` and `client_secret` in the form body.
    #[default]
    ClientSecretPost,
    /// HTTP Basic authentication.
    ClientSecretBasic,
    /// A JWT signed with the client secret.
    ClientSecretJwt,
    /// A JWT signed with the client's private key.
    PrivateKeyJwt,
    /// No authentication (public clients).
    None,
}

/// Okta's `application_type` for registered clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OktaApplicationType {
    /// Machine-to-machine.
    Service,
    /// Server-side web application.
    Web,
    /// Native application.
    Native,
    /// Single-page application.
    Browser,
}

/// DCR settings as the API shows them: the initial access token is reported as set or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DcrSettings {
    /// Whether developers may register clients.
    pub enabled: bool,
    /// The IdP family.
    pub provider: Provider,
    /// The IdP's issuer URL (discovery at `<issuer>/.well-known/openid-configuration`).
    pub issuer: Option<String>,
    /// The registration endpoint; when absent it is discovered.
    pub registration_endpoint: Option<String>,
    /// The token endpoint shown to developers; when absent it is discovered.
    pub token_endpoint: Option<String>,
    /// Grant types requested for new clients.
    pub grant_types: Vec<String>,
    /// Token endpoint authentication method requested for new clients.
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    /// Response types requested for new clients (empty suits `client_credentials`).
    pub response_types: Vec<String>,
    /// The scope requested for new clients.
    pub scope: Option<String>,
    /// Keycloak only: the realm.
    pub keycloak_realm: Option<String>,
    /// Okta only: the application type.
    pub okta_application_type: Option<OktaApplicationType>,
    /// Whether an initial registration access token is stored (it is never returned).
    pub initial_access_token_set: bool,
}

impl Default for DcrSettings {
    fn default() -> Self {
        DcrSettings {
            enabled: false,
            provider: Provider::Other,
            issuer: None,
            registration_endpoint: None,
            token_endpoint: None,
            grant_types: vec!["client_credentials".to_owned()],
            token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretPost,
            response_types: Vec::new(),
            scope: None,
            keycloak_realm: None,
            okta_application_type: None,
            initial_access_token_set: false,
        }
    }
}

/// A change to a write-only value: keep it (field omitted), clear it (`null`) or set it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SecretUpdate {
    /// The field was omitted: keep the stored value.
    #[default]
    Keep,
    /// The field was `null`: remove the stored value.
    Clear,
    /// The field was a string: store it.
    Set(Secret),
}

fn secret_update<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SecretUpdate, D::Error> {
    Ok(match Option::<Secret>::deserialize(deserializer)? {
        None => SecretUpdate::Clear,
        Some(secret) => SecretUpdate::Set(secret),
    })
}

/// The body of a write of DCR settings. It replaces the settings: omitted fields take their
/// defaults, except `initial_access_token`, which is kept when omitted and removed when `null`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DcrSettingsInput {
    /// Default: `false`.
    #[serde(default)]
    pub enabled: bool,
    /// Default: `other`.
    #[serde(default)]
    pub provider: Provider,
    /// Required when `enabled`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Default: discovered.
    #[serde(default)]
    pub registration_endpoint: Option<String>,
    /// Default: discovered.
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// Default: `["client_credentials"]`.
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    /// Default: `client_secret_post`.
    #[serde(default)]
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    /// Default: `[]`.
    #[serde(default)]
    pub response_types: Vec<String>,
    /// Default: none.
    #[serde(default)]
    pub scope: Option<String>,
    /// Keycloak only.
    #[serde(default)]
    pub keycloak_realm: Option<String>,
    /// Okta only.
    #[serde(default)]
    pub okta_application_type: Option<OktaApplicationType>,
    /// Write-only. Omitted: keep the stored token; `null`: remove it; a string: store it.
    #[serde(default, deserialize_with = "secret_update")]
    #[schema(value_type = Option<String>, write_only)]
    pub initial_access_token: SecretUpdate,
}

/// DCR settings as stored: the view plus the sealed token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoredDcr {
    settings: DcrSettings,
    initial_access_token: Option<String>,
}

/// Where effective settings came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DcrSource {
    /// The global settings.
    Global,
    /// The catalogue entry's override.
    Override,
}

/// The settings that apply to a catalogue entry, with the token decrypted, for the
/// registration flow.
#[derive(Debug, Clone)]
pub struct EffectiveDcr {
    /// Which settings apply.
    pub source: DcrSource,
    /// The settings.
    pub settings: DcrSettings,
    /// The initial registration access token, if one is stored.
    pub initial_access_token: Option<Secret>,
}

/// Effective settings with their endpoints resolved: what a registration uses.
#[derive(Debug, Clone)]
pub struct ResolvedDcr {
    /// The effective settings.
    pub effective: EffectiveDcr,
    /// The registration endpoint: configured, else discovered.
    pub registration_endpoint: Url,
    /// The token endpoint: configured, else discovered (absent when the IdP names none).
    pub token_endpoint: Option<Url>,
    /// The IdP's `jwks_uri`, when discovery ran.
    pub jwks_uri: Option<Url>,
}

/// Endpoints of enabled settings.
#[derive(Debug, Clone)]
struct Endpoints {
    registration_endpoint: Url,
    token_endpoint: Option<Url>,
    jwks_uri: Option<Url>,
}

/// Why endpoints could not be resolved.
#[derive(Debug)]
enum EndpointError {
    /// The IdP could not be reached or answered too late.
    Unreachable(TransportError),
    /// The document or the settings cannot give the endpoints.
    Unusable(String),
}

impl EndpointError {
    /// For an operator saving settings: 422 `discovery_failed`.
    fn on_save(self) -> ApiError {
        match self {
            EndpointError::Unreachable(error) => {
                ApiError::DiscoveryFailed(format!("the IdP is unreachable: {error}"))
            }
            EndpointError::Unusable(reason) => ApiError::DiscoveryFailed(reason),
        }
    }

    /// For a developer registering: the IdP is unavailable (502/504), or the settings no
    /// longer work (409 `dcr_misconfigured`).
    fn on_use(self) -> ApiError {
        match self {
            EndpointError::Unreachable(error) => ApiError::IdpUnavailable {
                timeout: matches!(error, TransportError::Timeout { .. }),
                message: format!(
                    "the identity provider's discovery document could not be read: {error}"
                ),
            },
            EndpointError::Unusable(reason) => ApiError::DcrMisconfigured(format!(
                "client registration is not configured correctly ({reason}); tell the portal's \
                 operators"
            )),
        }
    }
}

impl DcrSettingsInput {
    fn validate(self) -> Result<(DcrSettings, SecretUpdate), ApiError> {
        let url = |field: &str, value: &Option<String>| match value {
            Some(value) => validate::http_url(field, value).map(Some),
            None => Ok(None),
        };
        let issuer = url("issuer", &self.issuer)?;
        if self.enabled && issuer.is_none() {
            return Err(ApiError::invalid(
                "issuer",
                "the IdP's issuer URL is required when DCR is enabled",
            ));
        }
        let registration_endpoint = url("registration_endpoint", &self.registration_endpoint)?;
        let token_endpoint = url("token_endpoint", &self.token_endpoint)?;
        let grant_types = self
            .grant_types
            .unwrap_or_else(|| vec!["client_credentials".to_owned()]);
        validate::non_empty("grant_types", &grant_types)?;
        validate::distinct("grant_types", &grant_types)?;
        for (i, grant) in grant_types.iter().enumerate() {
            validate::token(&format!("grant_types[{i}]"), grant)?;
        }
        validate::distinct("response_types", &self.response_types)?;
        for (i, response_type) in self.response_types.iter().enumerate() {
            validate::name(&format!("response_types[{i}]"), response_type)?;
        }
        if let Some(scope) = &self.scope {
            for (i, value) in scope.split(' ').enumerate() {
                validate::token(&format!("scope ({}. value)", i + 1), value)?;
            }
        }
        if let Some(realm) = &self.keycloak_realm {
            if self.provider != Provider::Keycloak {
                return Err(ApiError::invalid(
                    "keycloak_realm",
                    "only applies when provider is keycloak",
                ));
            }
            validate::token("keycloak_realm", realm)?;
        }
        if self.okta_application_type.is_some() && self.provider != Provider::Okta {
            return Err(ApiError::invalid(
                "okta_application_type",
                "only applies when provider is okta",
            ));
        }
        if let SecretUpdate::Set(token) = &self.initial_access_token {
            let token = token.expose();
            if token.is_empty()
                || token.len() > MAX_TOKEN_LEN
                || token.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(ApiError::invalid(
                    TOKEN_FIELD,
                    format!(
                        "must be 1 to {MAX_TOKEN_LEN} characters without spaces (or null to remove it)"
                    ),
                ));
            }
        }
        let settings = DcrSettings {
            enabled: self.enabled,
            provider: self.provider,
            issuer,
            registration_endpoint,
            token_endpoint,
            grant_types,
            token_endpoint_auth_method: self.token_endpoint_auth_method,
            response_types: self.response_types,
            scope: self.scope,
            keycloak_realm: self.keycloak_realm,
            okta_application_type: self.okta_application_type,
            initial_access_token_set: false,
        };
        Ok((settings, self.initial_access_token))
    }
}

/// DCR settings.
#[derive(Debug, Clone, Copy)]
pub struct Dcr<'a> {
    state: &'a AppState,
}

impl<'a> Dcr<'a> {
    pub(crate) fn new(state: &'a AppState) -> Self {
        Dcr { state }
    }

    /// The global settings (the defaults, at revision 0, until first written).
    pub fn global(&self) -> Result<Versioned<DcrSettings>, ApiError> {
        Ok(self.load_global()?.map(|stored| stored.settings))
    }

    /// Replaces the global settings.
    pub async fn put_global(
        &self,
        actor: &Actor,
        precondition: &Precondition,
        input: DcrSettingsInput,
    ) -> Result<Versioned<DcrSettings>, ApiError> {
        let (settings, token) = input.validate()?;
        self.check_on_save(&settings).await?;
        let writer = self.state.writer().await?;
        let current = self.load_global()?;
        precondition.check(current.revision, true)?;
        let context = SealContext {
            kind: "dcr_settings",
            id: "global",
            field: TOKEN_FIELD,
        };
        let stored = self.seal(
            settings,
            token,
            current.value.initial_access_token.clone(),
            context,
        )?;
        let revision = writer.revision();
        let change = Change {
            writes: vec![Write::put(
                Tree::Settings,
                GLOBAL_KEY.as_bytes(),
                encode(revision, &stored)?,
            )],
            action: AuditAction::Update,
            resource: ResourceRef::new(ResourceKind::DcrSettings, "global"),
            before: Some(to_value(&current.value.settings)),
            after: Some(to_value(&stored.settings)),
            also: Vec::new(),
        };
        writer.commit(actor, change).await?;
        Ok(Versioned {
            revision,
            value: stored.settings,
        })
    }

    /// A catalogue entry's override. 404 if the entry or its override does not exist.
    pub fn get_override(&self, entry: &str) -> Result<Versioned<DcrSettings>, ApiError> {
        self.state.fetch::<CatalogueEntry>(entry)?;
        Ok(self.fetch_override(entry)?.map(|stored| stored.settings))
    }

    /// Creates or replaces a catalogue entry's override. Replacing needs `If-Match`; creating
    /// does not. Returns the settings and whether they were created.
    pub async fn put_override(
        &self,
        actor: &Actor,
        entry: &str,
        precondition: &Precondition,
        input: DcrSettingsInput,
    ) -> Result<(Versioned<DcrSettings>, bool), ApiError> {
        let (settings, token) = input.validate()?;
        self.state.fetch::<CatalogueEntry>(entry)?;
        self.check_on_save(&settings).await?;
        let writer = self.state.writer().await?;
        self.state.fetch::<CatalogueEntry>(entry)?;
        let current = self.load_override(entry)?;
        let previous_token = match &current {
            Some(current) => {
                precondition.check(current.revision, true)?;
                current.value.initial_access_token.clone()
            }
            None if *precondition == Precondition::Missing => None,
            None => {
                return Err(ApiError::PreconditionFailed { current: None });
            }
        };
        let context = SealContext {
            kind: "catalogue_dcr",
            id: entry,
            field: TOKEN_FIELD,
        };
        let stored = self.seal(settings, token, previous_token, context)?;
        let revision = writer.revision();
        let created = current.is_none();
        let change = Change {
            writes: vec![Write::put(
                Tree::CatalogueDcr,
                entry.as_bytes(),
                encode(revision, &stored)?,
            )],
            action: if created {
                AuditAction::Create
            } else {
                AuditAction::Update
            },
            resource: ResourceRef::new(ResourceKind::CatalogueDcr, entry),
            before: current.map(|current| to_value(&current.value.settings)),
            after: Some(to_value(&stored.settings)),
            also: Vec::new(),
        };
        writer.commit(actor, change).await?;
        Ok((
            Versioned {
                revision,
                value: stored.settings,
            },
            created,
        ))
    }

    /// Removes a catalogue entry's override; the entry then uses the global settings.
    pub async fn delete_override(
        &self,
        actor: &Actor,
        entry: &str,
        precondition: &Precondition,
    ) -> Result<(), ApiError> {
        let writer = self.state.writer().await?;
        self.state.fetch::<CatalogueEntry>(entry)?;
        let current = self.fetch_override(entry)?;
        precondition.check(current.revision, true)?;
        let (write, removal) = override_removal(entry, &current.value);
        let change = Change {
            writes: vec![write],
            action: removal.action,
            resource: removal.resource,
            before: removal.before,
            after: None,
            also: Vec::new(),
        };
        writer.commit(actor, change).await?;
        Ok(())
    }

    /// The removal of a catalogue entry's override and its audit record, when it has one:
    /// what deleting the entry also does. Read under the caller's write lock.
    pub(crate) fn cascade_removal(
        &self,
        entry: &str,
    ) -> Result<Option<(Write, AuditChange)>, ApiError> {
        Ok(self
            .load_override(entry)?
            .map(|current| override_removal(entry, &current.value)))
    }

    /// The settings that apply to a catalogue entry (its override, else the global settings),
    /// with the initial access token decrypted.
    pub fn effective(&self, entry: &str) -> Result<EffectiveDcr, ApiError> {
        self.state.fetch::<CatalogueEntry>(entry)?;
        let (source, stored, context) = match self.load_override(entry)? {
            Some(stored) => (
                DcrSource::Override,
                stored.value,
                SealContext {
                    kind: "catalogue_dcr",
                    id: entry,
                    field: TOKEN_FIELD,
                },
            ),
            None => (
                DcrSource::Global,
                self.load_global()?.value,
                SealContext {
                    kind: "dcr_settings",
                    id: "global",
                    field: TOKEN_FIELD,
                },
            ),
        };
        let initial_access_token = match &stored.initial_access_token {
            Some(sealed) => Some(
                self.state
                    .cipher()
                    .open(sealed, context)
                    .map_err(|error| ApiError::Internal(error.into()))?,
            ),
            None => None,
        };
        Ok(EffectiveDcr {
            source,
            settings: stored.settings,
            initial_access_token,
        })
    }

    /// The effective settings of an entry with their endpoints resolved (discovery cached).
    /// 409 `dcr_disabled` when DCR is not enabled for the entry.
    pub async fn resolve(&self, entry: &str) -> Result<ResolvedDcr, ApiError> {
        let effective = self.effective(entry)?;
        if !effective.settings.enabled {
            return Err(ApiError::DcrDisabled(format!(
                "clients cannot be registered for catalogue entry `{entry}`: Dynamic Client \
                 Registration is not enabled for it"
            )));
        }
        let endpoints = self
            .endpoints(&effective.settings, false)
            .await
            .map_err(EndpointError::on_use)?;
        Ok(ResolvedDcr {
            effective,
            registration_endpoint: endpoints.registration_endpoint,
            token_endpoint: endpoints.token_endpoint,
            jwks_uri: endpoints.jwks_uri,
        })
    }

    /// Enabled settings must resolve their endpoints now, from a fresh discovery document.
    async fn check_on_save(&self, settings: &DcrSettings) -> Result<(), ApiError> {
        if settings.enabled {
            self.endpoints(settings, true)
                .await
                .map_err(EndpointError::on_save)?;
        }
        Ok(())
    }

    /// The configured endpoints, completed by discovery when one is missing. `fresh`: skip
    /// the cache (a save checks the IdP as it is now).
    async fn endpoints(
        &self,
        settings: &DcrSettings,
        fresh: bool,
    ) -> Result<Endpoints, EndpointError> {
        let parse = |field: &str, value: &Option<String>| match value {
            Some(value) => Url::parse(value)
                .map(Some)
                .map_err(|error| EndpointError::Unusable(format!("`{field}`: {error}"))),
            None => Ok(None),
        };
        let registration_endpoint =
            parse("registration_endpoint", &settings.registration_endpoint)?;
        let token_endpoint = parse("token_endpoint", &settings.token_endpoint)?;
        if let (Some(registration_endpoint), Some(token_endpoint)) =
            (&registration_endpoint, &token_endpoint)
        {
            return Ok(Endpoints {
                registration_endpoint: registration_endpoint.clone(),
                token_endpoint: Some(token_endpoint.clone()),
                jwks_uri: None,
            });
        }
        let issuer = settings.issuer.as_deref().ok_or_else(|| {
            EndpointError::Unusable("no issuer is configured to discover the endpoints".to_owned())
        })?;
        let metadata = self.discover(issuer, fresh).await?;
        let registration_endpoint = registration_endpoint
            .or(metadata.registration_endpoint)
            .ok_or_else(|| {
                EndpointError::Unusable(format!(
                    "the discovery document of {issuer} names no `registration_endpoint`: the \
                     IdP does not offer Dynamic Client Registration there; enable it at the IdP \
                     or configure `registration_endpoint`"
                ))
            })?;
        Ok(Endpoints {
            registration_endpoint,
            token_endpoint: token_endpoint.or(metadata.token_endpoint),
            jwks_uri: Some(metadata.jwks_uri),
        })
    }

    async fn discover(&self, issuer: &str, fresh: bool) -> Result<ProviderMetadata, EndpointError> {
        let url =
            well_known_url(issuer).map_err(|error| EndpointError::Unusable(error.to_string()))?;
        let idp = self.state.idp();
        if fresh {
            idp.forget_metadata(&url);
        }
        idp.metadata(&url, issuer)
            .await
            .map_err(|error| match error {
                DiscoveryError::Transport(error) => EndpointError::Unreachable(error),
                other => EndpointError::Unusable(other.to_string()),
            })
    }

    fn seal(
        &self,
        mut settings: DcrSettings,
        token: SecretUpdate,
        previous: Option<String>,
        context: SealContext<'_>,
    ) -> Result<StoredDcr, ApiError> {
        let initial_access_token = match token {
            SecretUpdate::Keep => previous,
            SecretUpdate::Clear => None,
            SecretUpdate::Set(token) => Some(
                self.state
                    .cipher()
                    .seal(&token, context)
                    .map_err(|error| ApiError::Internal(error.into()))?,
            ),
        };
        settings.initial_access_token_set = initial_access_token.is_some();
        Ok(StoredDcr {
            settings,
            initial_access_token,
        })
    }

    fn load_global(&self) -> Result<Versioned<StoredDcr>, ApiError> {
        Ok(self
            .state
            .load_from(Tree::Settings, GLOBAL_KEY.as_bytes())?
            .unwrap_or_else(|| Versioned {
                revision: 0,
                value: StoredDcr {
                    settings: DcrSettings::default(),
                    initial_access_token: None,
                },
            }))
    }

    fn load_override(&self, entry: &str) -> Result<Option<Versioned<StoredDcr>>, ApiError> {
        self.state.load_from(Tree::CatalogueDcr, entry.as_bytes())
    }

    fn fetch_override(&self, entry: &str) -> Result<Versioned<StoredDcr>, ApiError> {
        self.load_override(entry)?
            .ok_or_else(|| ApiError::NotFound {
                kind: ResourceKind::CatalogueDcr.label(),
                id: entry.to_owned(),
            })
    }
}

/// Removing `entry`'s override `stored`: the write, and its audit record (the settings
/// before; never the initial access token).
fn override_removal(entry: &str, stored: &StoredDcr) -> (Write, AuditChange) {
    (
        Write::remove(Tree::CatalogueDcr, entry.as_bytes()),
        AuditChange {
            action: AuditAction::Delete,
            resource: ResourceRef::new(ResourceKind::CatalogueDcr, entry),
            before: Some(to_value(&stored.settings)),
            after: None,
        },
    )
}

fn encode(revision: u64, stored: &StoredDcr) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(&Versioned {
        revision,
        value: stored,
    })
    .map_err(|error| ApiError::Internal(error.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::test_support::{ops, state};

    fn input(value: serde_json::Value) -> DcrSettingsInput {
        serde_json::from_value(value).unwrap()
    }

    #[tokio::test]
    async fn token_is_kept_when_omitted_cleared_when_null_and_never_stored_in_clear() {
        let (state, _dir) = state();
        let dcr = state.dcr();
        let written = dcr
            .put_global(
                &ops(),
                &Precondition::Any,
                input(serde_json::json!({
                    "enabled": true, "issuer": "https://idp.example.com",
                    "registration_endpoint": "https://idp.example.com/reg",
                    "token_endpoint": "https://idp.example.com/token",
                    "initial_access_token": "iat-123"
                })),
            )
            .await
            .unwrap();
        assert!(written.value.initial_access_token_set);
        let raw = state
            .store()
            .get(Tree::Settings, GLOBAL_KEY.as_bytes())
            .unwrap()
            .unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("iat-123"));

        let kept = dcr
            .put_global(
                &ops(),
                &Precondition::Any,
                input(serde_json::json!({
                    "enabled": true, "issuer": "https://idp.example.com",
                    "registration_endpoint": "https://idp.example.com/reg",
                    "token_endpoint": "https://idp.example.com/token"
                })),
            )
            .await
            .unwrap();
        assert!(kept.value.initial_access_token_set);

        let cleared = dcr
            .put_global(
                &ops(),
                &Precondition::Any,
                input(serde_json::json!({"initial_access_token": null})),
            )
            .await
            .unwrap();
        assert!(!cleared.value.initial_access_token_set);
    }

    #[test]
    fn provider_specific_fields_need_their_provider() {
        let error = input(serde_json::json!({"provider": "okta", "keycloak_realm": "x"}))
            .validate()
            .unwrap_err();
        assert!(
            matches!(error, ApiError::InvalidRequest { field: Some(ref f), .. } if f == "keycloak_realm")
        );
        let error = input(serde_json::json!({"enabled": true}))
            .validate()
            .unwrap_err();
        assert!(
            matches!(error, ApiError::InvalidRequest { field: Some(ref f), .. } if f == "issuer")
        );
    }
}
