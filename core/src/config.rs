//! The filter's plugin configuration: JSON in Envoy's `configuration` field, parsed once and
//! compiled before the filter accepts it. Unknown fields are rejected, so a typo fails loudly,
//! and every error names the field by its path.

use serde::Deserialize;

use crate::snapshot::{CompiledSnapshot, Snapshot};

/// The default number of verified tokens each worker remembers.
pub const DEFAULT_TOKEN_CACHE_CAPACITY: usize = 10_000;

/// The plugin configuration as written.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Static mode: the whole snapshot, inline.
    #[serde(default)]
    pub snapshot: Option<Snapshot>,
    /// The verification cache.
    #[serde(default)]
    pub token_cache: TokenCacheConfig,
    /// Path prefixes that pass untouched while no snapshot has arrived yet (everything else is
    /// refused with 503 until then).
    #[serde(default)]
    pub fail_open_paths: Vec<String>,
}

/// Settings of the verification cache.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCacheConfig {
    /// How many verified tokens each worker remembers; 0 disables the cache.
    #[serde(default = "default_cache_capacity")]
    pub capacity: usize,
}

impl Default for TokenCacheConfig {
    fn default() -> Self {
        TokenCacheConfig {
            capacity: DEFAULT_TOKEN_CACHE_CAPACITY,
        }
    }
}

fn default_cache_capacity() -> usize {
    DEFAULT_TOKEN_CACHE_CAPACITY
}

/// Why a plugin configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// The offending field (`.` for the document itself).
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

/// A configuration that passed validation.
#[derive(Debug)]
pub struct ValidConfig {
    /// The static snapshot, compiled.
    pub snapshot: CompiledSnapshot,
    /// Cache settings.
    pub token_cache: TokenCacheConfig,
    /// Prefixes that pass before the first snapshot.
    pub fail_open_paths: Vec<String>,
}

// === impl PluginConfig ===

impl PluginConfig {
    /// Parses and validates the plugin configuration.
    pub fn parse(bytes: &[u8]) -> Result<ValidConfig, ConfigError> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let config: PluginConfig =
            serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
                let path = err.path().to_string();
                let message = err.inner().to_string();
                // serde_json appends " at line L column C"; the path says more.
                let message = message
                    .split(" at line ")
                    .next()
                    .unwrap_or(&message)
                    .to_owned();
                ConfigError { path, message }
            })?;
        for (index, path) in config.fail_open_paths.iter().enumerate() {
            if !path.starts_with('/') {
                return Err(ConfigError {
                    path: format!("fail_open_paths[{index}]"),
                    message: "must start with `/`".to_owned(),
                });
            }
        }
        let snapshot = config.snapshot.ok_or_else(|| ConfigError {
            path: "snapshot".to_owned(),
            message: "is required".to_owned(),
        })?;
        let snapshot = CompiledSnapshot::compile(&snapshot).map_err(|err| ConfigError {
            path: format!("snapshot.{}", err.path),
            message: err.message,
        })?;
        Ok(ValidConfig {
            snapshot,
            token_cache: config.token_cache,
            fail_open_paths: config.fail_open_paths,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(json: &str) -> ConfigError {
        PluginConfig::parse(json.as_bytes()).unwrap_err()
    }

    const MINIMAL: &str = r#"{"snapshot": {
        "apis": [{"id": "orders", "listen_path": "/orders", "issuers": ["idp"]}],
        "issuers": [{"id": "idp", "issuer": "https://idp.example.com", "keys": []}]
    }}"#;

    #[test]
    fn minimal_static_configuration_gets_the_documented_defaults() {
        let config = PluginConfig::parse(MINIMAL.as_bytes()).unwrap();
        let api = &config.snapshot.apis[0];
        assert_eq!(api.identity_claims, ["sub"]);
        assert_eq!(api.identity_header, "x-portico-client-id");
        assert_eq!(api.policy_claim, "pol");
        assert_eq!(api.rules.clock_skew_seconds, 60);
        assert!(api.rules.require_exp);
        assert_eq!(api.rules.max_token_bytes, 16 * 1024);
        assert_eq!(config.token_cache.capacity, DEFAULT_TOKEN_CACHE_CAPACITY);
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let err = error(&MINIMAL.replace("\"listen_path\"", "\"listen_pth\""));
        assert_eq!(err.path, "snapshot.apis[0].listen_pth");
        assert!(err.message.contains("unknown field `listen_pth`"), "{err}");
        let err = error(r#"{"snapshot": {}, "token_cach": {}}"#);
        assert_eq!(err.path, "token_cach");
    }

    #[test]
    fn wrong_types_are_named_with_their_path() {
        let err = error(&MINIMAL.replace("[\"idp\"]", "\"idp\""));
        assert_eq!(err.path, "snapshot.apis[0].issuers");
        assert!(err.message.contains("invalid type"), "{err}");
    }

    #[test]
    fn semantic_errors_are_named_with_their_path() {
        let err = error(&MINIMAL.replace("[\"idp\"]", "[\"other\"]"));
        assert_eq!(err.path, "snapshot.apis[0].issuers[0]");
        assert_eq!(err.message, "unknown issuer `other`");
        let err = error(&MINIMAL.replace("\"/orders\"", "\"orders\""));
        assert_eq!(
            err.to_string(),
            "snapshot.apis[0].listen_path: must start with `/`"
        );
    }

    #[test]
    fn a_snapshot_is_required_and_json_must_be_valid() {
        assert_eq!(error("{}").path, "snapshot");
        assert!(!error("{\"snapshot\": ").message.is_empty());
        assert_eq!(error("42").path, ".");
    }

    #[test]
    fn fail_open_paths_must_be_paths() {
        let config = MINIMAL.replacen('{', r#"{"fail_open_paths": ["health"],"#, 1);
        assert_eq!(error(&config).path, "fail_open_paths[0]");
    }
}
