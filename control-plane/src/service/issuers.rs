//! Trusted token issuers: the `iss` value and where its signing keys come from.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::apis::Api;
use super::{
    Actor, AppState, Page, PageRequest, Precondition, Resource, ResourceKind, ResourceRef,
    Versioned, to_value, validate,
};
use crate::error::ApiError;
use crate::store::Tree;

/// The most keys an inline key set may hold.
pub const MAX_INLINE_KEYS: usize = 100;

/// A trusted issuer of access tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Issuer {
    /// The issuer's id (an operator-chosen slug).
    pub id: String,
    /// The `iss` value of its tokens, compared byte for byte.
    pub issuer: String,
    /// Where its signing keys come from.
    pub jwks: JwksSource,
    /// The longest lifetime (`exp` − `iat`, seconds) of its tokens. Filters refuse a token of
    /// this issuer that lives longer or lacks `iat` or `exp` (`token_lifetime_too_long`,
    /// `missing_iat`, `missing_exp`); in exchange, a client deleted at the IdP leaves every
    /// snapshot's revocation list once this time (plus twice the largest clock skew) has
    /// passed. Default 86,400 (24 hours).
    #[serde(default = "default_max_token_lifetime")]
    pub max_token_lifetime_seconds: u64,
}

fn default_max_token_lifetime() -> u64 {
    portico_core::rules::DEFAULT_MAX_TOKEN_LIFETIME_SECONDS
}

/// Where an issuer's signing keys come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JwksSource {
    /// OpenID Connect discovery: the document at `url` names the `jwks_uri`.
    Discovery {
        /// The discovery document's URL.
        url: String,
    },
    /// A JWKS URL.
    JwksUri(String),
    /// Keys given inline (public JWKs).
    Inline {
        /// The JSON Web Keys.
        #[schema(value_type = Vec<Object>)]
        keys: Vec<serde_json::Map<String, serde_json::Value>>,
    },
}

/// The body of a create or update of an issuer.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssuerInput {
    /// The id: required on create; on update it may be given but must match the path.
    #[serde(default)]
    pub id: Option<String>,
    /// The `iss` value of its tokens: an http or https URL.
    pub issuer: String,
    /// Where its keys come from. Default: discovery at
    /// `<issuer>/.well-known/openid-configuration`.
    #[serde(default)]
    pub jwks: Option<JwksSourceInput>,
    /// The longest lifetime of its tokens, in seconds (`exp` − `iat`): 1 to 316,224,000 (ten
    /// years). Default 86,400 (24 hours). Set it to the IdP's longest access-token lifetime.
    #[serde(default)]
    pub max_token_lifetime_seconds: Option<u64>,
}

/// Where an issuer's keys come from, as written.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum JwksSourceInput {
    /// OpenID Connect discovery.
    Discovery {
        /// The discovery URL. Default: `<issuer>/.well-known/openid-configuration`.
        #[serde(default)]
        url: Option<String>,
    },
    /// A JWKS URL.
    JwksUri(String),
    /// Keys given inline (public JWKs, each with a `kty`).
    Inline {
        /// The JSON Web Keys.
        #[schema(value_type = Vec<Object>)]
        keys: Vec<serde_json::Map<String, serde_json::Value>>,
    },
}

/// Which issuers to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuerFilter {
    /// Only the issuer with this `iss` value.
    pub issuer: Option<String>,
}

impl Resource for Issuer {
    const KIND: ResourceKind = ResourceKind::Issuer;
    const TREE: Tree = Tree::Issuers;

    fn id(&self) -> &str {
        &self.id
    }

    fn audit_view(&self) -> serde_json::Value {
        to_value(self)
    }
}

impl IssuerInput {
    fn validate(self, id: String) -> Result<Issuer, ApiError> {
        let issuer = validate::http_url("issuer", &self.issuer)?;
        if issuer.contains('?') {
            return Err(ApiError::invalid(
                "issuer",
                "an issuer URL has no query (?...)",
            ));
        }
        let jwks = match self.jwks {
            None | Some(JwksSourceInput::Discovery { url: None }) => JwksSource::Discovery {
                url: format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                ),
            },
            Some(JwksSourceInput::Discovery { url: Some(url) }) => JwksSource::Discovery {
                url: validate::http_url("jwks.discovery.url", &url)?,
            },
            Some(JwksSourceInput::JwksUri(uri)) => {
                JwksSource::JwksUri(validate::http_url("jwks.jwks_uri", &uri)?)
            }
            Some(JwksSourceInput::Inline { keys }) => {
                validate::non_empty("jwks.inline.keys", &keys)?;
                if keys.len() > MAX_INLINE_KEYS {
                    return Err(ApiError::invalid(
                        "jwks.inline.keys",
                        format!("must contain at most {MAX_INLINE_KEYS} keys"),
                    ));
                }
                for (index, key) in keys.iter().enumerate() {
                    let field = format!("jwks.inline.keys[{index}]");
                    match key.get("kty") {
                        Some(serde_json::Value::String(kty)) if !kty.is_empty() => {}
                        _ => {
                            return Err(ApiError::invalid(
                                format!("{field}.kty"),
                                "every key needs a `kty` string",
                            ));
                        }
                    }
                    let jwk = serde_json::Value::Object(key.clone());
                    validate::rule(&field, portico_core::jwk::plain_shape(&jwk))?;
                    validate::rule(&field, portico_core::jwk::public_only(&jwk)).map_err(
                        |error| match error {
                            ApiError::InvalidRequest { field, message } => {
                                ApiError::InvalidSnapshot { field, message }
                            }
                            other => other,
                        },
                    )?;
                }
                check_usable(&keys)?;
                JwksSource::Inline { keys }
            }
        };
        let max_token_lifetime_seconds = self
            .max_token_lifetime_seconds
            .unwrap_or_else(default_max_token_lifetime);
        validate::rule(
            "max_token_lifetime_seconds",
            portico_core::rules::lifetime_seconds(max_token_lifetime_seconds),
        )?;
        Ok(Issuer {
            id,
            issuer,
            jwks,
            max_token_lifetime_seconds,
        })
    }
}

/// Inline keys must give filters something to verify with, each `kid` once: a set of only
/// unusable keys, or two keys with one `kid`, is refused (422 `invalid_snapshot`) rather than
/// published to fail every token.
fn check_usable(keys: &[serde_json::Map<String, serde_json::Value>]) -> Result<(), ApiError> {
    let values: Vec<serde_json::Value> = keys
        .iter()
        .cloned()
        .map(serde_json::Value::Object)
        .collect();
    let set = portico_core::jwk::KeySet::from_jwks(&values);
    if set.keys.is_empty() {
        let reasons: Vec<String> = set
            .skipped
            .iter()
            .map(|skipped| format!("#{}: {}", skipped.index, skipped.reason))
            .collect();
        return Err(ApiError::InvalidSnapshot {
            field: Some("jwks.inline.keys".to_owned()),
            message: format!("no key can verify a signature ({})", reasons.join("; ")),
        });
    }
    let mut seen = std::collections::HashSet::new();
    for (index, key) in keys.iter().enumerate() {
        if let Some(kid) = key.get("kid").and_then(serde_json::Value::as_str)
            && (kid.is_empty() || !seen.insert(kid))
        {
            return Err(ApiError::InvalidSnapshot {
                field: Some(format!("jwks.inline.keys[{index}].kid")),
                message: format!("`kid` \"{kid}\" is empty or names an earlier key too"),
            });
        }
    }
    Ok(())
}

/// Trusted token issuers.
#[derive(Debug, Clone, Copy)]
pub struct Issuers<'a> {
    state: &'a AppState,
}

impl<'a> Issuers<'a> {
    pub(crate) fn new(state: &'a AppState) -> Self {
        Issuers { state }
    }

    /// Creates an issuer. 409 if the id or the `iss` value is taken.
    pub async fn create(
        &self,
        actor: &Actor,
        input: IssuerInput,
    ) -> Result<Versioned<Issuer>, ApiError> {
        let id = validate::new_id(input.id.as_deref())?;
        let value = input.validate(id)?;
        self.state
            .create_checked(actor, value, |value| self.check_unique_url(value))
            .await
    }

    /// Every issuer (the snapshot and the key fetcher read them all; there are few).
    pub fn all(&self) -> Result<Vec<Issuer>, ApiError> {
        self.state.values::<Issuer>()
    }

    /// Reads an issuer.
    pub fn get(&self, id: &str) -> Result<Versioned<Issuer>, ApiError> {
        self.state.fetch(id)
    }

    /// Lists issuers in id order.
    pub fn list(
        &self,
        page: &PageRequest,
        filter: &IssuerFilter,
    ) -> Result<Page<Versioned<Issuer>>, ApiError> {
        self.state.page(page, |issuer: &Issuer| {
            filter
                .issuer
                .as_ref()
                .is_none_or(|iss| issuer.issuer == *iss)
        })
    }

    /// Replaces an issuer.
    pub async fn update(
        &self,
        actor: &Actor,
        id: &str,
        precondition: &Precondition,
        input: IssuerInput,
    ) -> Result<Versioned<Issuer>, ApiError> {
        validate::same_id(id, input.id.as_deref())?;
        let value = input.validate(id.to_owned())?;
        self.state
            .replace_checked(actor, precondition, value, |value| {
                self.check_unique_url(value)
            })
            .await
    }

    /// Deletes an issuer. 409 while an API trusts it.
    pub async fn delete(
        &self,
        actor: &Actor,
        id: &str,
        precondition: &Precondition,
    ) -> Result<(), ApiError> {
        self.state
            .delete_unreferenced::<Issuer>(
                actor,
                id,
                precondition,
                || {
                    Ok(self
                        .state
                        .values::<Api>()?
                        .into_iter()
                        .filter(|api| api.issuers.iter().any(|issuer| issuer == id))
                        .map(|api| ResourceRef::new(ResourceKind::Api, api.id))
                        .collect())
                },
                || Ok(Vec::new()),
            )
            .await
    }

    /// Two issuer resources with the same `iss` would make token routing ambiguous.
    fn check_unique_url(&self, issuer: &Issuer) -> Result<(), ApiError> {
        let clash = self
            .state
            .load_all::<Issuer>()?
            .into_iter()
            .find(|other| other.value.id != issuer.id && other.value.issuer == issuer.issuer);
        match clash {
            Some(other) => Err(ApiError::AlreadyExists {
                field: "issuer".to_owned(),
                message: format!(
                    "issuer `{}` already has the issuer URL `{}`",
                    other.value.id, issuer.issuer
                ),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::test_support::{ops, state};

    fn input(value: serde_json::Value) -> IssuerInput {
        serde_json::from_value(value).unwrap()
    }

    #[tokio::test]
    async fn discovery_url_defaults_to_the_well_known_document() {
        let (state, _dir) = state();
        let created = state
            .issuers()
            .create(
                &ops(),
                input(serde_json::json!({"id": "idp", "issuer": "https://idp.example.com/"})),
            )
            .await
            .unwrap();
        assert_eq!(
            created.value.jwks,
            JwksSource::Discovery {
                url: "https://idp.example.com/.well-known/openid-configuration".to_owned()
            }
        );
        assert_eq!(created.value.issuer, "https://idp.example.com/");
    }

    #[tokio::test]
    async fn inline_private_keys_are_refused() {
        let (state, _dir) = state();
        let error = state
            .issuers()
            .create(
                &ops(),
                input(serde_json::json!({
                    "id": "idp", "issuer": "https://idp.example.com",
                    "jwks": {"inline": {"keys": [{"kty": "EC", "kid": "k1", "d": "secret"}]}}
                })),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(error, ApiError::InvalidSnapshot { field: Some(ref f), ref message }
                if f == "jwks.inline.keys[0]" && message.contains("`k1`") && message.contains("`d`")),
            "{error:?}"
        );
        for key in [
            serde_json::json!({"kty": "oct", "k": "c2VjcmV0"}),
            serde_json::json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "qi": "x"}),
        ] {
            let error = state
                .issuers()
                .create(
                    &ops(),
                    input(serde_json::json!({
                        "id": "idp", "issuer": "https://idp.example.com",
                        "jwks": {"inline": {"keys": [key]}}
                    })),
                )
                .await
                .unwrap_err();
            assert_eq!(error.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
        }
    }

    #[tokio::test]
    async fn inline_keys_must_be_plain_usable_and_named_once() {
        let (state, _dir) = state();
        let rsa = portico_core::testing::TestKey::rsa_a().public_jwk();
        let mut deep = rsa.clone();
        deep["x_deep"] = serde_json::json!([[["deep"]]]);
        let mut upper = rsa.clone();
        upper["D"] = serde_json::json!("secret");
        let mut huge = rsa.clone();
        huge["x_pad"] = serde_json::json!("A".repeat(20_000));
        let unusable = serde_json::json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"});
        let mut twin = rsa.clone();
        twin["kid"] = serde_json::json!("same");
        let mut twin_b = portico_core::testing::TestKey::rsa_b().public_jwk();
        twin_b["kid"] = serde_json::json!("same");
        for (keys, status) in [
            (serde_json::json!([deep]), 400),
            (serde_json::json!([upper]), 400),
            (serde_json::json!([huge]), 400),
            (serde_json::json!([unusable]), 422),
            (serde_json::json!([twin, twin_b]), 422),
        ] {
            let error = state
                .issuers()
                .create(
                    &ops(),
                    input(serde_json::json!({
                        "id": "idp", "issuer": "https://idp.example.com",
                        "jwks": {"inline": {"keys": keys}}
                    })),
                )
                .await
                .unwrap_err();
            assert_eq!(error.status().as_u16(), status, "{error:?}");
        }
    }
}
