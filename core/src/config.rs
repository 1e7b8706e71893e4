//! The filter's plugin configuration: JSON in Envoy's `configuration` field, parsed once and
//! compiled before the filter accepts it. Unknown fields are rejected, so a typo fails loudly,
//! and every error names the field by its path.

use std::time::Duration;

use serde::Deserialize;

use crate::snapshot::{CompiledSnapshot, GlobalSpec, Snapshot, UnmatchedRule, compile_global};
use crate::sync::SyncTiming;

/// The default number of verified tokens each worker remembers.
pub const DEFAULT_TOKEN_CACHE_CAPACITY: usize = 10_000;

/// The plugin configuration as written.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Static mode: the whole snapshot, inline.
    #[serde(default)]
    pub snapshot: Option<Snapshot>,
    /// Dynamic mode: where to sync snapshots from.
    #[serde(default)]
    pub control_plane: Option<ControlPlaneConfig>,
    /// The verification cache.
    #[serde(default)]
    pub token_cache: TokenCacheConfig,
    /// Path prefixes that pass untouched while no snapshot has arrived yet (everything else is
    /// refused with 503 until then).
    #[serde(default)]
    pub fail_open_paths: Vec<String>,
    /// The filter's own log level (Envoy's `wasm` component level applies on top).
    #[serde(default)]
    pub log_level: LogLevel,
    /// What happens to requests that match no API, for this Envoy: when set, it replaces the
    /// snapshot's `global` section (both `unmatched` and `public_prefixes`).
    #[serde(default)]
    pub global: Option<GlobalSpec>,
    /// Whether each request's Envoy route is asked for the API it names
    /// (`filter_metadata.portico.api`, see [`crate::request::Request::route_api`]). Default
    /// `true`. Reading route metadata is one property lookup in Envoy per request (a few µs of
    /// CPU: BENCHMARKS.md); an Envoy whose routes never name an API can turn it off, and then
    /// every request is matched by listen path and host.
    #[serde(default = "default_route_metadata")]
    pub route_metadata: bool,
}

fn default_route_metadata() -> bool {
    true
}

/// How much the filter logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Every decision's refusals and unknown `kid`s, besides everything below.
    Debug,
    /// Configuration and snapshot changes, besides everything below.
    #[default]
    Info,
    /// Skipped keys, sync failures, unknown policy names.
    Warn,
    /// Only configuration errors.
    Error,
}

/// Where and how to sync snapshots from the control plane.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneConfig {
    /// The Envoy cluster that reaches the control plane.
    pub cluster: String,
    /// The `:authority` of sync requests (default: the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    /// The data-plane token the control plane expects.
    pub token: String,
    /// How long the control plane may hold a poll, in seconds (1 to 300).
    #[serde(default = "default_poll_wait")]
    pub poll_wait_seconds: u64,
    /// The first retry delay after a failure, in milliseconds.
    #[serde(default = "default_backoff_initial")]
    pub backoff_initial_ms: u64,
    /// The longest retry delay, in milliseconds.
    #[serde(default = "default_backoff_max")]
    pub backoff_max_ms: u64,
    /// How this Envoy names itself to the control plane (default: Envoy's `node.id`).
    #[serde(default)]
    pub node_id: Option<String>,
}

impl std::fmt::Debug for ControlPlaneConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlaneConfig")
            .field("cluster", &self.cluster)
            .field("authority", &self.authority)
            .field("token", &"[redacted]")
            .field("poll_wait_seconds", &self.poll_wait_seconds)
            .field("backoff_initial_ms", &self.backoff_initial_ms)
            .field("backoff_max_ms", &self.backoff_max_ms)
            .field("node_id", &self.node_id)
            .finish()
    }
}

fn default_poll_wait() -> u64 {
    30
}
fn default_backoff_initial() -> u64 {
    250
}
fn default_backoff_max() -> u64 {
    30_000
}

// === impl ControlPlaneConfig ===

impl ControlPlaneConfig {
    /// The `:authority` of sync requests.
    pub fn authority(&self) -> &str {
        self.authority.as_deref().unwrap_or(&self.cluster)
    }

    /// The sync timing: the request timeout leaves the control plane ten seconds beyond the
    /// poll wait to answer.
    pub fn timing(&self) -> SyncTiming {
        SyncTiming {
            poll_wait: Duration::from_secs(self.poll_wait_seconds),
            request_timeout: Duration::from_secs(self.poll_wait_seconds + 10),
            backoff_initial: Duration::from_millis(self.backoff_initial_ms),
            backoff_max: Duration::from_millis(self.backoff_max_ms),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let field = |name: &str, message: &str| ConfigError {
            path: format!("control_plane.{name}"),
            message: message.to_owned(),
        };
        if self.cluster.is_empty() {
            return Err(field("cluster", "must not be empty"));
        }
        if self.token.is_empty() {
            return Err(field("token", "must not be empty"));
        }
        if !(1..=300).contains(&self.poll_wait_seconds) {
            return Err(field("poll_wait_seconds", "must be between 1 and 300"));
        }
        if self.backoff_initial_ms == 0 || self.backoff_max_ms < self.backoff_initial_ms {
            return Err(field(
                "backoff_max_ms",
                "backoff_initial_ms must be positive and at most backoff_max_ms",
            ));
        }
        Ok(())
    }
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

/// Where the filter's snapshot comes from.
#[derive(Debug)]
pub enum SnapshotSource {
    /// Inline in the configuration, compiled.
    Static(Box<CompiledSnapshot>),
    /// Synced from the control plane.
    ControlPlane(ControlPlaneConfig),
}

/// A configuration that passed validation.
#[derive(Debug)]
pub struct ValidConfig {
    /// Where snapshots come from.
    pub source: SnapshotSource,
    /// Cache settings.
    pub token_cache: TokenCacheConfig,
    /// Prefixes that pass before the first snapshot.
    pub fail_open_paths: Vec<String>,
    /// The filter's log level.
    pub log_level: LogLevel,
    /// The plugin configuration's own rule for unmatched requests, overriding the snapshot's.
    pub unmatched: Option<UnmatchedRule>,
    /// Whether requests' routes are asked for the API they name.
    pub route_metadata: bool,
}

/// Where a JSON error is, as `serde_path_to_error` writes it, except that an empty key at the
/// top level (which it writes as nothing at all) is `.`, the top level, so the path is never
/// empty.
pub(crate) fn error_path(path: &serde_path_to_error::Path) -> String {
    let path = path.to_string();
    if path.is_empty() {
        ".".to_owned()
    } else {
        path
    }
}

// === impl PluginConfig ===

impl PluginConfig {
    /// Parses and validates the plugin configuration.
    pub fn parse(bytes: &[u8]) -> Result<ValidConfig, ConfigError> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let config: PluginConfig =
            serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
                let path = error_path(err.path());
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
            crate::rules::path_prefix(path, true).map_err(|violation| ConfigError {
                path: format!("fail_open_paths[{index}]"),
                message: violation.0,
            })?;
        }
        let unmatched = config
            .global
            .as_ref()
            .map(compile_global)
            .transpose()
            .map_err(|(path, message)| ConfigError {
                path: format!("global.{path}"),
                message,
            })?;
        let source = match (config.snapshot, config.control_plane) {
            (Some(snapshot), None) => {
                let compiled = CompiledSnapshot::compile(snapshot).map_err(|err| ConfigError {
                    path: format!("snapshot.{}", err.path),
                    message: err.message,
                })?;
                SnapshotSource::Static(Box::new(compiled))
            }
            (None, Some(control_plane)) => {
                control_plane.validate()?;
                SnapshotSource::ControlPlane(control_plane)
            }
            _ => {
                return Err(ConfigError {
                    path: ".".to_owned(),
                    message: "exactly one of `snapshot` (static mode) and `control_plane` \
                              (dynamic mode) is required"
                        .to_owned(),
                });
            }
        };
        Ok(ValidConfig {
            source,
            token_cache: config.token_cache,
            fail_open_paths: config.fail_open_paths,
            log_level: config.log_level,
            unmatched,
            route_metadata: config.route_metadata,
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
        "apis": [{"id": "orders", "listen_path": "/orders", "audiences": ["https://api.example.com"], "issuers": ["idp"]}],
        "issuers": [{"id": "idp", "issuer": "https://idp.example.com", "keys": []}]
    }}"#;

    #[test]
    fn minimal_static_configuration_gets_the_documented_defaults() {
        let config = PluginConfig::parse(MINIMAL.as_bytes()).unwrap();
        let SnapshotSource::Static(snapshot) = &config.source else {
            panic!("not static: {config:?}");
        };
        let api = &snapshot.apis[0];
        assert_eq!(api.identity_claims, ["sub"]);
        assert_eq!(api.identity_header, "x-portico-client-id");
        assert_eq!(api.policy_claim, "pol");
        assert_eq!(api.rules.clock_skew_seconds, 60);
        assert!(api.rules.require_exp);
        assert_eq!(api.rules.max_token_bytes, 16 * 1024);
        assert_eq!(config.token_cache.capacity, DEFAULT_TOKEN_CACHE_CAPACITY);
        assert!(
            config.route_metadata,
            "route metadata is read unless turned off"
        );
    }

    #[test]
    fn reading_route_metadata_can_be_turned_off() {
        let config = MINIMAL.replacen('{', r#"{"route_metadata": false, "#, 1);
        let config = PluginConfig::parse(config.as_bytes()).unwrap();
        assert!(!config.route_metadata);
        let err = error(&MINIMAL.replacen('{', r#"{"route_metadata": "no", "#, 1));
        assert_eq!(err.path, "route_metadata");
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let err = error(&MINIMAL.replace("\"listen_path\"", "\"listen_pth\""));
        assert_eq!(err.path, "snapshot.apis[0].listen_pth");
        assert!(err.message.contains("unknown field `listen_pth`"), "{err}");
        let err = error(r#"{"snapshot": {}, "token_cach": {}}"#);
        assert_eq!(err.path, "token_cach");
    }

    /// Found by the `plugin_config` fuzz target: an unknown field with an empty key at the top
    /// level had an empty path.
    #[test]
    fn an_unknown_empty_key_is_named_at_the_top_level() {
        let err = error(r#"{"": ["/health"], "snapshot": {}}"#);
        assert_eq!(err.path, ".");
        assert!(err.message.contains("unknown field ``"), "{err}");
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
            "snapshot.apis[0].listen_path: `orders` must start with `/`"
        );
    }

    #[test]
    fn dynamic_mode_takes_the_documented_defaults_and_hides_the_token() {
        let config =
            PluginConfig::parse(br#"{"control_plane": {"cluster": "portico", "token": "s3cret"}}"#)
                .unwrap();
        let SnapshotSource::ControlPlane(control_plane) = &config.source else {
            panic!("not dynamic: {config:?}");
        };
        assert_eq!(control_plane.authority(), "portico");
        let timing = control_plane.timing();
        assert_eq!(timing.poll_wait, Duration::from_secs(30));
        assert_eq!(timing.request_timeout, Duration::from_secs(40));
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn dynamic_mode_settings_are_validated() {
        let err = error(r#"{"control_plane": {"cluster": "p", "token": ""}}"#);
        assert_eq!(err.path, "control_plane.token");
        let err =
            error(r#"{"control_plane": {"cluster": "p", "token": "t", "poll_wait_seconds": 0}}"#);
        assert_eq!(err.path, "control_plane.poll_wait_seconds");
        let err =
            error(r#"{"control_plane": {"cluster": "p", "token": "t", "backoff_max_ms": 1}}"#);
        assert_eq!(err.path, "control_plane.backoff_max_ms");
    }

    #[test]
    fn exactly_one_source_is_required_and_json_must_be_valid() {
        assert!(error("{}").message.contains("exactly one of"));
        let both = r#"{"snapshot": {}, "control_plane": {"cluster": "p", "token": "t"}}"#;
        assert!(error(both).message.contains("exactly one of"));
        assert!(!error("{\"snapshot\": ").message.is_empty());
        assert_eq!(error("42").path, ".");
    }

    #[test]
    fn fail_open_paths_must_be_paths() {
        let config = MINIMAL.replacen('{', r#"{"fail_open_paths": ["health"],"#, 1);
        assert_eq!(error(&config).path, "fail_open_paths[0]");
    }
}
