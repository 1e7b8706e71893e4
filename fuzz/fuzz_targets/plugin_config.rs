//! The filter's plugin configuration, parsed and compiled exactly as `on_configure` does
//! (`PluginConfig::parse`). A refusal names a path and a reason, without serde_json's
//! line/column suffix; an accepted configuration's fail-open paths obey the path rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico_core::config::{PluginConfig, SnapshotSource};

fuzz_target!(|bytes: &[u8]| {
    match PluginConfig::parse(bytes) {
        Ok(config) => {
            for path in &config.fail_open_paths {
                assert!(
                    portico_core::rules::path_prefix(path, true).is_ok(),
                    "accepted fail-open path `{path}` breaks the path rules"
                );
            }
            if let SnapshotSource::Static(compiled) = &config.source {
                for (index, api) in compiled.apis.iter().enumerate() {
                    assert_eq!(compiled.api(&api.id), Some(index));
                }
            }
        }
        Err(error) => {
            assert!(
                !error.path.is_empty(),
                "config error without a path: {error:?}"
            );
            assert!(
                !error.message.is_empty(),
                "config error without a reason: {error:?}"
            );
            assert!(!error.message.contains(" at line "), "{error:?}");
        }
    }
});
