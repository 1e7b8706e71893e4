use std::collections::HashMap;
use std::io::Write as _;

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

fn load(args: &[&str], pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let args = std::iter::once("portico").chain(args.iter().copied());
    Config::load(args, &env(pairs)).map(|invocation| invocation.config)
}

fn invalid(result: Result<Config, ConfigError>) -> String {
    match result {
        Err(ConfigError::Invalid(reason)) => {
            assert!(!reason.contains('\n'), "not one line: {reason}");
            reason
        }
        other => panic!("expected an invalid configuration, got {other:?}"),
    }
}

fn file_with(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

#[test]
fn no_configuration_gives_safe_local_defaults() {
    let config = load(&[], &[]).unwrap();
    assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(config.data_dir, PathBuf::from("./data"));
    assert!(config.admin_keys.is_empty());
    assert!(config.secret_key.is_none());
    assert!(config.public_base_url.is_none());
    assert!(config.metrics_listen.is_none());
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.log.filter, "info");
    assert_eq!(config.body_limit, DEFAULT_BODY_LIMIT);
}

#[test]
fn flags_beat_environment_which_beats_the_file() {
    let file =
        file_with("listen = \"127.0.0.1:7000\"\ndata_dir = \"/from/file\"\nlog = \"warn\"\n");
    let path = file.path().to_str().unwrap();
    let config = load(
        &["--config", path, "--listen", "127.0.0.1:9000"],
        &[
            ("PORTICO_LISTEN", "127.0.0.1:8000"),
            ("PORTICO_DATA_DIR", "/from/env"),
        ],
    )
    .unwrap();
    assert_eq!(config.listen.port(), 9000);
    assert_eq!(config.data_dir, PathBuf::from("/from/env"));
    assert_eq!(config.log.filter, "warn");
}

#[test]
fn config_file_can_come_from_the_environment() {
    let file = file_with("request_timeout_seconds = 5\nbody_limit_bytes = 2048\n");
    let config = load(&[], &[("PORTICO_CONFIG", file.path().to_str().unwrap())]).unwrap();
    assert_eq!(config.request_timeout, Duration::from_secs(5));
    assert_eq!(config.body_limit, 2048);
}

#[test]
fn empty_environment_variables_count_as_unset() {
    let config = load(&[], &[("PORTICO_LISTEN", ""), ("PORTICO_ADMIN_KEYS", " ")]).unwrap();
    assert_eq!(config.listen.port(), 8080);
    assert!(config.admin_keys.is_empty());
}

#[test]
fn admin_keys_are_parsed_from_id_key_pairs() {
    let config = load(
        &[],
        &[(
            "PORTICO_ADMIN_KEYS",
            "ops:0123456789abcdef,ci:fedcba9876543210",
        )],
    )
    .unwrap();
    let ids: Vec<_> = config.admin_keys.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(ids, ["ops", "ci"]);
    assert_eq!(config.admin_keys[1].key.expose(), "fedcba9876543210");
    assert!(!format!("{config:?}").contains("fedcba9876543210"));
}

#[test]
fn admin_keys_file_skips_comments_and_blank_lines() {
    let file = file_with("# operators\nops:0123456789abcdef\n\nci:fedcba9876543210\n");
    let config = load(&["--admin-keys-file", file.path().to_str().unwrap()], &[]).unwrap();
    assert_eq!(config.admin_keys.len(), 2);
}

#[test]
fn bad_admin_keys_are_named() {
    let reason = invalid(load(&[], &[("PORTICO_ADMIN_KEYS", "ops")]));
    assert!(reason.starts_with("PORTICO_ADMIN_KEYS: "), "{reason}");
    assert!(invalid(load(&[], &[("PORTICO_ADMIN_KEYS", "ops:short")])).contains("at least 16"));
    assert!(invalid(load(&[], &[("PORTICO_ADMIN_KEYS", "Ops:0123456789abcdef")])).contains("id"));
    assert!(
        invalid(load(
            &[],
            &[(
                "PORTICO_ADMIN_KEYS",
                "a:0123456789abcdef,a:0123456789abcdeX"
            )]
        ))
        .contains("twice")
    );
    assert!(
        invalid(load(
            &[],
            &[(
                "PORTICO_ADMIN_KEYS",
                "a:0123456789abcdef,b:0123456789abcdef"
            )]
        ))
        .contains("same as another")
    );
}

#[test]
fn both_forms_of_a_secret_in_one_layer_are_refused() {
    let file = file_with(&"ab".repeat(32));
    let reason = invalid(load(
        &[],
        &[
            ("PORTICO_SECRET_KEY", &"cd".repeat(32)),
            ("PORTICO_SECRET_KEY_FILE", file.path().to_str().unwrap()),
        ],
    ));
    assert!(reason.contains("both set"), "{reason}");
}

#[test]
fn secret_key_flag_file_beats_environment_key() {
    let file = file_with(&"ab".repeat(32));
    let config = load(
        &["--secret-key-file", file.path().to_str().unwrap()],
        &[("PORTICO_SECRET_KEY", "not even a key")],
    )
    .unwrap();
    assert_eq!(
        config.secret_key.unwrap().to_hex().as_str(),
        "ab".repeat(32)
    );
}

#[test]
fn a_separate_metrics_address_comes_from_the_environment_or_a_flag() {
    let config = load(&[], &[("PORTICO_METRICS_LISTEN", "127.0.0.1:9464")]).unwrap();
    assert_eq!(
        config.metrics_listen,
        Some("127.0.0.1:9464".parse().unwrap())
    );
    let config = load(&["--metrics-listen", "[::1]:9465"], &[]).unwrap();
    assert_eq!(config.metrics_listen, Some("[::1]:9465".parse().unwrap()));
    assert!(
        invalid(load(&[], &[("PORTICO_METRICS_LISTEN", "9464")]))
            .starts_with("PORTICO_METRICS_LISTEN: ")
    );
}

#[test]
fn bad_values_name_the_setting_and_its_origin() {
    assert!(invalid(load(&["--listen", "nowhere"], &[])).starts_with("--listen: "));
    assert!(invalid(load(&[], &[("PORTICO_LISTEN", "nowhere")])).starts_with("PORTICO_LISTEN: "));
    assert!(
        invalid(load(&[], &[("PORTICO_SECRET_KEY", "short")])).starts_with("PORTICO_SECRET_KEY: ")
    );
    assert!(invalid(load(&[], &[("PORTICO_LOG_FORMAT", "xml")])).contains("text"));
    assert!(invalid(load(&[], &[("PORTICO_PUBLIC_BASE_URL", "ftp://x")])).contains("http"));
    assert!(invalid(load(&[], &[("PORTICO_REQUEST_TIMEOUT_SECONDS", "0")])).contains("between 1"));
    assert!(invalid(load(&["--bogus"], &[])).contains("--bogus"));
    assert!(invalid(load(&["--secret-key-file", "/nonexistent/key"], &[])).contains("cannot read"));
}

#[test]
fn the_store_is_sled_by_default_or_a_postgres_url_with_a_pool_size() {
    assert_eq!(load(&[], &[]).unwrap().store, StoreConfig::Sled);
    assert_eq!(
        load(&["--store", "sled"], &[]).unwrap().store,
        StoreConfig::Sled
    );
    let url = "postgresql://portico:pw@db.internal:5432/portico";
    let config = load(&[], &[("PORTICO_STORE", url)]).unwrap();
    assert_eq!(
        config.store,
        StoreConfig::Postgres {
            url: Secret::new(url),
            pool_size: DEFAULT_STORE_POOL_SIZE
        }
    );
    assert!(!format!("{config:?}").contains(":pw@"));
    let file = file_with("store = \"postgres://portico@db/portico\"\nstore_pool_size = 4\n");
    let config = load(&["--config", file.path().to_str().unwrap()], &[]).unwrap();
    assert!(matches!(
        config.store,
        StoreConfig::Postgres { pool_size: 4, .. }
    ));
}

#[test]
fn a_bad_store_is_named_without_repeating_its_password() {
    for (args, env, named) in [
        (&["--store", "mysql://x"][..], &[][..], "--store: "),
        (
            &[],
            &[("PORTICO_STORE", "postgres//x:secret-pw@db")][..],
            "PORTICO_STORE: ",
        ),
        (
            &["--store", "postgres://u:secret-pw@db/x"],
            &[],
            "--store: ",
        ),
        (
            &[],
            &[(
                "PORTICO_STORE",
                "postgres://u:secret-pw@db/x?sslmode=require",
            )],
            "PORTICO_STORE: ",
        ),
        (
            &[],
            &[(
                "PORTICO_STORE",
                "postgres://u:secret-pw@db/x?sslmode=sometimes",
            )],
            "PORTICO_STORE: ",
        ),
        (
            &[],
            &[
                ("PORTICO_STORE", "postgres://u@db/x"),
                ("PORTICO_STORE_POOL_SIZE", "0"),
            ],
            "PORTICO_STORE_POOL_SIZE: ",
        ),
    ] {
        let reason = invalid(load(args, env));
        assert!(reason.starts_with(named), "{reason}");
        assert!(!reason.contains("secret-pw"), "{reason}");
    }
}

#[test]
fn unknown_keys_in_the_file_are_errors_with_a_line_number() {
    let file = file_with("listen = \"127.0.0.1:1\"\nlisten_adress = \"x\"\n");
    let reason = invalid(load(&["--config", file.path().to_str().unwrap()], &[]));
    assert!(reason.contains("line 2"), "{reason}");
    assert!(reason.contains("listen_adress"), "{reason}");
}

#[test]
fn public_base_url_loses_its_trailing_slash() {
    let config = load(&["--public-base-url", "https://portico.example.com/"], &[]).unwrap();
    assert_eq!(
        config.public_base_url.as_deref(),
        Some("https://portico.example.com")
    );
}

#[test]
fn help_is_information_not_an_error() {
    assert!(
        matches!(load(&["--help"], &[]), Err(ConfigError::Info(text)) if text.contains("PORTICO_LISTEN"))
    );
}

#[test]
fn the_sample_configuration_file_is_valid() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/portico.sample.toml");
    load(&["--config", sample], &[]).unwrap();
}

#[test]
fn the_store_subcommands_take_the_store_settings_before_or_after_them() {
    fn args<'a>(args: &[&'a str]) -> Vec<&'a str> {
        std::iter::once("portico")
            .chain(args.iter().copied())
            .collect()
    }
    let invocation = Config::load(args(&["--data-dir", "/d"]), &env(&[])).unwrap();
    assert_eq!(invocation.command, Command::Serve);
    let invocation = Config::load(
        args(&[
            "store",
            "export",
            "--output",
            "/tmp/x.jsonl",
            "--data-dir",
            "/d",
        ]),
        &env(&[("PORTICO_STORE", "postgres://portico@db/portico")]),
    )
    .unwrap();
    assert_eq!(
        invocation.command,
        Command::Store(StoreCommand::Export {
            output: Some(PathBuf::from("/tmp/x.jsonl"))
        })
    );
    assert_eq!(invocation.config.data_dir, PathBuf::from("/d"));
    assert!(matches!(
        invocation.config.store,
        StoreConfig::Postgres { .. }
    ));
    let invocation =
        Config::load(args(&["--store", "sled", "store", "import"]), &env(&[])).unwrap();
    assert_eq!(
        invocation.command,
        Command::Store(StoreCommand::Import { input: None })
    );
    let invocation = Config::load(args(&["store", "import", "--input", "-"]), &env(&[])).unwrap();
    assert_eq!(
        invocation.command,
        Command::Store(StoreCommand::Import { input: None })
    );
    let invocation = Config::load(args(&["store", "confirm-restore"]), &env(&[])).unwrap();
    assert_eq!(
        invocation.command,
        Command::Store(StoreCommand::ConfirmRestore)
    );
    assert!(matches!(
        Config::load(args(&["store", "erase"]), &env(&[])),
        Err(ConfigError::Invalid(_))
    ));
}
