//! Every bootstrap shipped in `envoy/` is valid for the Envoy release the project installs
//! (validation also loads the filter and runs its configuration check), and a broken plugin
//! configuration is refused with a log line naming the field.

use portico_tests::envoy::{ACCESS_LOG_FORMAT, shipped_configs, validate};
use portico_tests::paths::{filter_wasm, workspace_root};

#[test]
fn every_shipped_envoy_config_validates() {
    filter_wasm();
    let configs = shipped_configs();
    assert!(!configs.is_empty(), "envoy/ has no configurations");
    for config in configs {
        let output = validate(&config, &workspace_root());
        assert!(
            output.status.success(),
            "{} does not validate:\n{}",
            config.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let text = std::fs::read_to_string(&config).expect("read the configuration");
        assert!(
            text.contains(&format!("inline_string: \"{ACCESS_LOG_FORMAT}\"")),
            "{} does not write the access-log line the end-to-end tests check",
            config.display()
        );
        let bootstrap: serde_json::Value = yaml_serde::from_str(&text).unwrap();
        let tags: Vec<(String, String)> = bootstrap["stats_config"]["stats_tags"]
            .as_array()
            .unwrap_or_else(|| panic!("{} has no stats_config.stats_tags", config.display()))
            .iter()
            .map(|tag| {
                let field = |name: &str| tag[name].as_str().unwrap_or_default().to_owned();
                (field("tag_name"), field("regex"))
            })
            .collect();
        let expected: Vec<(String, String)> = portico_core::metrics::TAG_REGEXES
            .iter()
            .map(|(tag, regex)| ((*tag).to_owned(), (*regex).to_owned()))
            .collect();
        assert_eq!(
            tags,
            expected,
            "{} must carry the filter's stats tags",
            config.display()
        );
    }
}

#[test]
fn a_plugin_configuration_with_an_unknown_field_is_refused_naming_it() {
    let config = portico_tests::EnvoyConfig::new(
        r#"{"snapshot": {"apis": [{"id": "a", "listen_pth": "/a", "issuers": []}]}}"#,
        "127.0.0.1:9".parse().unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, config.bootstrap(&filter_wasm())).unwrap();
    let output = validate(&path, dir.path());
    assert!(
        !output.status.success(),
        "a broken plugin configuration was accepted"
    );
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains(
            "invalid plugin configuration: snapshot.apis[0].listen_pth: unknown field `listen_pth`"
        ),
        "{log}"
    );
}

#[test]
fn the_istio_wasm_plugin_carries_a_valid_plugin_configuration() {
    let path = workspace_root().join("envoy/istio/wasmplugin.yaml");
    let plugin: serde_json::Value =
        yaml_serde::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(plugin["kind"], "WasmPlugin");
    let config = serde_json::to_vec(&plugin["spec"]["pluginConfig"]).unwrap();
    let parsed = portico_core::config::PluginConfig::parse(&config)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    assert!(matches!(
        parsed.source,
        portico_core::config::SnapshotSource::ControlPlane(_)
    ));
}
