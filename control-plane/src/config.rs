//! Configuration of the `portico` binary.
//!
//! Every setting can come from a flag, an environment variable or the TOML file named by
//! `--config` (or `PORTICO_CONFIG`). Precedence: flags, then environment, then file, then
//! defaults. Environment variables are read through [`ConfigSource`], so tests pass a
//! `HashMap` instead of changing the process environment. Any bad value is a
//! [`ConfigError::Invalid`] whose one-line message names the setting and where it came from.
//! `docs/configuration.md` is the reference; it follows.
//!
#![doc = include_str!("../../docs/configuration.md")]

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::secret::{Secret, SecretKey};

/// The default listen address: loopback only, safe for local use.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The default data directory.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// The default request timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The default limit on request bodies.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// The default time that in-flight requests get to finish after SIGTERM.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The default time a client has to send a request's headers, from the connection or the end
/// of the previous request.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The shortest admin key accepted from configuration.
pub const MIN_ADMIN_KEY_LEN: usize = 16;
/// The default shortest time between two scheduled fetches of an issuer's keys.
pub const DEFAULT_JWKS_REFRESH_MIN: Duration = Duration::from_secs(300);
/// The default longest time between two scheduled fetches of an issuer's keys.
pub const DEFAULT_JWKS_REFRESH_MAX: Duration = Duration::from_secs(86_400);
/// The default bound on one discovery or key-set fetch.
pub const DEFAULT_JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The default number of PostgreSQL connections one process may open.
pub const DEFAULT_STORE_POOL_SIZE: u32 = 10;
/// The most PostgreSQL connections one process may be configured to open.
pub const MAX_STORE_POOL_SIZE: u32 = 100;

/// Where environment variables come from.
pub trait ConfigSource {
    /// The value of `key`, if set.
    fn get(&self, key: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Environment;

impl ConfigSource for Environment {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl<S: BuildHasher> ConfigSource for HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<String> {
        HashMap::get(self, key).cloned()
    }
}

/// The control plane's configuration, resolved and validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address the HTTP server listens on.
    pub listen: SocketAddr,
    /// A second address that serves only `GET /metrics` (for a Prometheus that should not
    /// reach the admin API). `None`: none; the main listener serves `/metrics` either way.
    pub metrics_listen: Option<SocketAddr>,
    /// The directory holding the sled database (`db/`) and, for local use, generated key
    /// files (with PostgreSQL too).
    pub data_dir: PathBuf,
    /// Where the resources, secrets (sealed) and audit log are stored.
    pub store: StoreConfig,
    /// The admin API keys. Empty: a key is generated at first start and printed once.
    pub admin_keys: Vec<AdminKeyConfig>,
    /// The key that encrypts secrets at rest. `None`: a key file is generated in the data
    /// directory (for local use only).
    pub secret_key: Option<SecretKey>,
    /// The URL under which operators and developers reach this server, without a trailing
    /// slash. `None`: derived from the listen address.
    pub public_base_url: Option<String>,
    /// Logging.
    pub log: LogConfig,
    /// The longest time a request may take before it is answered with 503 `timeout`.
    pub request_timeout: Duration,
    /// The largest request body accepted, in bytes (larger: 413).
    pub body_limit: usize,
    /// How long in-flight requests may take to finish after SIGTERM or SIGINT.
    pub shutdown_grace: Duration,
    /// How long a client may take to send a request's headers before the connection is
    /// closed (slow clients cannot hold connections open).
    pub header_read_timeout: Duration,
    /// The tokens filters present to sync snapshots. Empty: a token is generated in the data
    /// directory at first start (for local use).
    pub data_plane_tokens: Vec<AdminKeyConfig>,
    /// Fetching issuers' keys.
    pub jwks: JwksConfig,
    /// The developer portal's look and limits.
    pub portal: PortalConfig,
}

/// Where the control plane stores its data (`store` / `--store` / `PORTICO_STORE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// `sled` (the default): the embedded database in `<data_dir>/db`, one process at a time.
    Sled,
    /// A `postgres://` or `postgresql://` URL: a PostgreSQL database that several processes
    /// may share.
    Postgres {
        /// The connection URL (libpq's form; a password in it is a secret: its `Debug` is
        /// redacted and it is never logged).
        url: Secret,
        /// The most connections this process opens (`store_pool_size`, 1 to
        /// [`MAX_STORE_POOL_SIZE`]).
        pool_size: u32,
    },
}

/// The developer portal: what it is called and shows, and what developers may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalConfig {
    /// The portal's name, in every page's header and title.
    pub name: String,
    /// A short welcome text on the front page (plain text).
    pub welcome: String,
    /// The logo shown beside the name; `None`: the name alone.
    pub logo: Option<Logo>,
    /// Whether developers may sign themselves up (the admin API can switch this at run time;
    /// this is the value until it does).
    pub self_signup: bool,
    /// The most OAuth clients one developer may have (deleted ones do not count).
    pub max_clients_per_developer: u32,
    /// The most client registrations and secret rotations one developer may make per hour.
    pub registrations_per_hour: u32,
}

/// A logo image, read from a file at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logo {
    /// The image's media type (`image/png`, `image/svg+xml`, `image/jpeg` or `image/webp`,
    /// from the file's extension).
    pub content_type: &'static str,
    /// The image, at most [`MAX_LOGO_BYTES`].
    pub bytes: Vec<u8>,
}

/// The default portal name.
pub const DEFAULT_PORTAL_NAME: &str = "Portico developer portal";
/// The default welcome text.
pub const DEFAULT_PORTAL_WELCOME: &str = "Register OAuth clients for our APIs, get tokens from \
    our identity provider and call the APIs through the gateway.";
/// The default cap on a developer's OAuth clients.
pub const DEFAULT_MAX_CLIENTS_PER_DEVELOPER: u32 = 20;
/// The default hourly cap on a developer's registrations and secret rotations.
pub const DEFAULT_REGISTRATIONS_PER_HOUR: u32 = 10;
/// The largest logo file accepted, in bytes.
pub const MAX_LOGO_BYTES: usize = 256 * 1024;
/// The longest portal name accepted, in characters.
pub const MAX_PORTAL_NAME_CHARS: usize = 80;
/// The longest welcome text accepted, in characters.
pub const MAX_PORTAL_WELCOME_CHARS: usize = 1000;

impl Default for PortalConfig {
    fn default() -> Self {
        PortalConfig {
            name: DEFAULT_PORTAL_NAME.to_owned(),
            welcome: DEFAULT_PORTAL_WELCOME.to_owned(),
            logo: None,
            self_signup: true,
            max_clients_per_developer: DEFAULT_MAX_CLIENTS_PER_DEVELOPER,
            registrations_per_hour: DEFAULT_REGISTRATIONS_PER_HOUR,
        }
    }
}

/// How issuers' keys are fetched and refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksConfig {
    /// A key set is not refetched on schedule sooner than this, whatever its `Cache-Control`.
    pub refresh_min: Duration,
    /// A key set is refetched at the latest after this.
    pub refresh_max: Duration,
    /// The bound on one discovery or key-set fetch.
    pub fetch_timeout: Duration,
}

impl Default for JwksConfig {
    fn default() -> Self {
        JwksConfig {
            refresh_min: DEFAULT_JWKS_REFRESH_MIN,
            refresh_max: DEFAULT_JWKS_REFRESH_MAX,
            fetch_timeout: DEFAULT_JWKS_FETCH_TIMEOUT,
        }
    }
}

/// One admin API key: an id (recorded in the audit log) and the key itself.
#[derive(Debug, Clone)]
pub struct AdminKeyConfig {
    /// The key's id, a slug such as `ops`.
    pub id: String,
    /// The key.
    pub key: Secret,
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Line format.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `portico_control_plane=debug,info`.
    pub filter: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// Why the configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `--help` or `--version` was asked for: print this and exit successfully.
    Info(String),
    /// The configuration is bad: print this one line and exit with code 64.
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Info(text) => f.write_str(text),
            ConfigError::Invalid(reason) => write!(f, "bad configuration: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Command-line flags. Every flag can also be set through the environment variable named in its
/// help, or in the configuration file.
#[derive(Debug, Parser)]
#[command(
    name = "portico",
    version,
    about = "Portico control plane: admin API for JWT-protected APIs behind Envoy",
    after_help = "Precedence: flags, then environment variables, then the --config file, then \
                  defaults. Admin keys and the secret-encryption key are never read from flags: \
                  use PORTICO_ADMIN_KEYS / --admin-keys-file and PORTICO_SECRET_KEY / \
                  --secret-key-file. See docs/configuration.md."
)]
struct Flags {
    /// TOML configuration file [env: PORTICO_CONFIG]
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<String>,
    /// Listen address [env: PORTICO_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Extra address serving only /metrics, e.g. 127.0.0.1:9464 [env: PORTICO_METRICS_LISTEN]
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Data directory [env: PORTICO_DATA_DIR] [default: ./data]
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<String>,
    /// Store: sled, or a postgres:// URL without a password (use PORTICO_STORE, PGPASSWORD or ~/.pgpass for it) [env: PORTICO_STORE] [default: sled]
    #[arg(long, global = true, value_name = "STORE")]
    store: Option<String>,
    /// Most PostgreSQL connections, 1-100 [env: PORTICO_STORE_POOL_SIZE] [default: 10]
    #[arg(long, global = true, value_name = "COUNT")]
    store_pool_size: Option<String>,
    /// File of admin keys, one `id:key` per line [env: PORTICO_ADMIN_KEYS_FILE]
    #[arg(long, value_name = "FILE")]
    admin_keys_file: Option<String>,
    /// File holding the 32-byte secret-encryption key, hex or base64 [env: PORTICO_SECRET_KEY_FILE]
    #[arg(long, value_name = "FILE")]
    secret_key_file: Option<String>,
    /// Public base URL, e.g. https://portico.example.com [env: PORTICO_PUBLIC_BASE_URL]
    #[arg(long, value_name = "URL")]
    public_base_url: Option<String>,
    /// Log format: text or json [env: PORTICO_LOG_FORMAT] [default: text]
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<String>,
    /// Log filter, e.g. info or portico_control_plane=debug [env: PORTICO_LOG] [default: info]
    #[arg(long, global = true, value_name = "FILTER")]
    log: Option<String>,
    /// Request timeout in seconds, 1-3600 [env: PORTICO_REQUEST_TIMEOUT_SECONDS] [default: 30]
    #[arg(long, value_name = "SECONDS")]
    request_timeout_seconds: Option<String>,
    /// Request body limit in bytes, 1024-67108864 [env: PORTICO_BODY_LIMIT_BYTES] [default: 1048576]
    #[arg(long, value_name = "BYTES")]
    body_limit_bytes: Option<String>,
    /// Seconds in-flight requests get after SIGTERM, 0-3600 [env: PORTICO_SHUTDOWN_GRACE_SECONDS] [default: 10]
    #[arg(long, value_name = "SECONDS")]
    shutdown_grace_seconds: Option<String>,
    /// Seconds a client may take to send a request's headers, 1-300 [env: PORTICO_HEADER_READ_TIMEOUT_SECONDS] [default: 10]
    #[arg(long, value_name = "SECONDS")]
    header_read_timeout_seconds: Option<String>,
    /// File of data-plane tokens, one `id:token` per line [env: PORTICO_DATA_PLANE_TOKENS_FILE]
    #[arg(long, value_name = "FILE")]
    data_plane_tokens_file: Option<String>,
    /// Shortest scheduled key-set refresh, 60-86400 [env: PORTICO_JWKS_REFRESH_MIN_SECONDS] [default: 300]
    #[arg(long, value_name = "SECONDS")]
    jwks_refresh_min_seconds: Option<String>,
    /// Longest scheduled key-set refresh, 60-604800 [env: PORTICO_JWKS_REFRESH_MAX_SECONDS] [default: 86400]
    #[arg(long, value_name = "SECONDS")]
    jwks_refresh_max_seconds: Option<String>,
    /// Bound on one key-set or discovery fetch, 1-120 [env: PORTICO_JWKS_FETCH_TIMEOUT_SECONDS] [default: 10]
    #[arg(long, value_name = "SECONDS")]
    jwks_fetch_timeout_seconds: Option<String>,
    /// The portal's name [env: PORTICO_PORTAL_NAME] [default: Portico developer portal]
    #[arg(long, value_name = "TEXT")]
    portal_name: Option<String>,
    /// The portal's welcome text [env: PORTICO_PORTAL_WELCOME]
    #[arg(long, value_name = "TEXT")]
    portal_welcome: Option<String>,
    /// A PNG, SVG, JPEG or WebP logo for the portal [env: PORTICO_PORTAL_LOGO_FILE]
    #[arg(long, value_name = "FILE")]
    portal_logo_file: Option<String>,
    /// Whether developers may sign up, true or false [env: PORTICO_PORTAL_SELF_SIGNUP] [default: true]
    #[arg(long, value_name = "BOOL")]
    portal_self_signup: Option<String>,
    /// Most OAuth clients per developer, 1-1000 [env: PORTICO_PORTAL_MAX_CLIENTS] [default: 20]
    #[arg(long, value_name = "COUNT")]
    portal_max_clients: Option<String>,
    /// Most registrations and secret rotations per developer and hour, 1-1000 [env: PORTICO_PORTAL_REGISTRATIONS_PER_HOUR] [default: 10]
    #[arg(long, value_name = "COUNT")]
    portal_registrations_per_hour: Option<String>,
    #[command(subcommand)]
    command: Option<CommandFlags>,
}

/// The subcommands; none: serve.
#[derive(Debug, clap::Subcommand)]
enum CommandFlags {
    /// Export, import or confirm a restore of the store (see docs/backup.md)
    #[command(subcommand)]
    Store(StoreFlags),
}

/// `portico store …`. They use the store settings (--store, --data-dir, --config and their
/// environment variables) as serving does.
#[derive(Debug, clap::Subcommand)]
enum StoreFlags {
    /// Write every resource, secret (still sealed), audit entry and metadata value to an export file
    Export {
        /// The file to write (mode 0600, replaced if present), or - for standard output
        #[arg(long, value_name = "FILE", default_value = "-")]
        output: String,
    },
    /// Load an export file into a new, empty store; the control plane then serves only after confirm-restore
    Import {
        /// The file to read, or - for standard input
        #[arg(long, value_name = "FILE", default_value = "-")]
        input: String,
    },
    /// Let the control plane serve a restored store: changes made after the export are lost unless re-applied
    ConfirmRestore,
}

/// What the `portico` binary was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// No subcommand: serve the control plane.
    Serve,
    /// `portico store …`: one maintenance command on the configured store, then exit.
    Store(StoreCommand),
}

/// A `portico store` subcommand. `None` as a file means standard input or output (`-`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreCommand {
    /// `portico store export [--output FILE|-]`: the whole store as an export file
    /// ([`crate::service::backup`]).
    Export {
        /// The file to write; `None`: standard output.
        output: Option<PathBuf>,
    },
    /// `portico store import [--input FILE|-]`: an export file into a new, empty store,
    /// marked restored ([`crate::service::restore`]).
    Import {
        /// The file to read; `None`: standard input.
        input: Option<PathBuf>,
    },
    /// `portico store confirm-restore`: lets a control plane serve a restored store.
    ConfirmRestore,
}

impl From<CommandFlags> for Command {
    fn from(flags: CommandFlags) -> Self {
        let file = |path: String| (path != "-").then(|| PathBuf::from(path));
        Command::Store(match flags {
            CommandFlags::Store(StoreFlags::Export { output }) => StoreCommand::Export {
                output: file(output),
            },
            CommandFlags::Store(StoreFlags::Import { input }) => {
                StoreCommand::Import { input: file(input) }
            }
            CommandFlags::Store(StoreFlags::ConfirmRestore) => StoreCommand::ConfirmRestore,
        })
    }
}

/// A parsed command line: the configuration and what to do with it.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The configuration (the store settings are all that the store commands use).
    pub config: Config,
    /// What to do.
    pub command: Command,
}

/// The TOML file. Unknown keys are errors, so that a typo fails loudly.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    metrics_listen: Option<String>,
    data_dir: Option<String>,
    store: Option<String>,
    store_pool_size: Option<u64>,
    admin_keys: Option<Vec<String>>,
    admin_keys_file: Option<String>,
    secret_key_file: Option<String>,
    public_base_url: Option<String>,
    log_format: Option<String>,
    log: Option<String>,
    request_timeout_seconds: Option<u64>,
    body_limit_bytes: Option<u64>,
    shutdown_grace_seconds: Option<u64>,
    header_read_timeout_seconds: Option<u64>,
    data_plane_tokens: Option<Vec<String>>,
    data_plane_tokens_file: Option<String>,
    jwks_refresh_min_seconds: Option<u64>,
    jwks_refresh_max_seconds: Option<u64>,
    jwks_fetch_timeout_seconds: Option<u64>,
    portal_name: Option<String>,
    portal_welcome: Option<String>,
    portal_logo_file: Option<String>,
    portal_self_signup: Option<bool>,
    portal_max_clients: Option<u64>,
    portal_registrations_per_hour: Option<u64>,
}

/// The settings of one layer (flags, environment or file), still as text.
#[derive(Debug, Default)]
struct Layer {
    listen: Option<String>,
    metrics_listen: Option<String>,
    data_dir: Option<String>,
    store: Option<String>,
    store_pool_size: Option<String>,
    admin_keys: Option<String>,
    admin_keys_file: Option<String>,
    secret_key: Option<String>,
    secret_key_file: Option<String>,
    public_base_url: Option<String>,
    log_format: Option<String>,
    log: Option<String>,
    request_timeout_seconds: Option<String>,
    body_limit_bytes: Option<String>,
    shutdown_grace_seconds: Option<String>,
    header_read_timeout_seconds: Option<String>,
    data_plane_tokens: Option<String>,
    data_plane_tokens_file: Option<String>,
    jwks_refresh_min_seconds: Option<String>,
    jwks_refresh_max_seconds: Option<String>,
    jwks_fetch_timeout_seconds: Option<String>,
    portal_name: Option<String>,
    portal_welcome: Option<String>,
    portal_logo_file: Option<String>,
    portal_self_signup: Option<String>,
    portal_max_clients: Option<String>,
    portal_registrations_per_hour: Option<String>,
}

/// Which layer a value came from, to name it in errors.
#[derive(Debug, Clone)]
enum Origin {
    Flag,
    Env,
    File(PathBuf),
}

impl Origin {
    fn name(&self, setting: Setting) -> String {
        match self {
            Origin::Flag => match setting.flag {
                Some(flag) => format!("--{flag}"),
                None => setting.env.to_owned(),
            },
            Origin::Env => setting.env.to_owned(),
            Origin::File(path) => format!("{}: {}", path.display(), setting.key),
        }
    }
}

/// A setting's names in each layer.
#[derive(Debug, Clone, Copy)]
struct Setting {
    key: &'static str,
    flag: Option<&'static str>,
    env: &'static str,
}

const fn setting(key: &'static str, flag: Option<&'static str>, env: &'static str) -> Setting {
    Setting { key, flag, env }
}

const CONFIG: Setting = setting("config", Some("config"), "PORTICO_CONFIG");
const LISTEN: Setting = setting("listen", Some("listen"), "PORTICO_LISTEN");
const METRICS_LISTEN: Setting = setting(
    "metrics_listen",
    Some("metrics-listen"),
    "PORTICO_METRICS_LISTEN",
);
const DATA_DIR: Setting = setting("data_dir", Some("data-dir"), "PORTICO_DATA_DIR");
const STORE: Setting = setting("store", Some("store"), "PORTICO_STORE");
const STORE_POOL_SIZE: Setting = setting(
    "store_pool_size",
    Some("store-pool-size"),
    "PORTICO_STORE_POOL_SIZE",
);
const ADMIN_KEYS: Setting = setting("admin_keys", None, "PORTICO_ADMIN_KEYS");
const ADMIN_KEYS_FILE: Setting = setting(
    "admin_keys_file",
    Some("admin-keys-file"),
    "PORTICO_ADMIN_KEYS_FILE",
);
const SECRET_KEY: Setting = setting("secret_key", None, "PORTICO_SECRET_KEY");
const SECRET_KEY_FILE: Setting = setting(
    "secret_key_file",
    Some("secret-key-file"),
    "PORTICO_SECRET_KEY_FILE",
);
const PUBLIC_BASE_URL: Setting = setting(
    "public_base_url",
    Some("public-base-url"),
    "PORTICO_PUBLIC_BASE_URL",
);
const LOG_FORMAT: Setting = setting("log_format", Some("log-format"), "PORTICO_LOG_FORMAT");
const LOG: Setting = setting("log", Some("log"), "PORTICO_LOG");
const REQUEST_TIMEOUT: Setting = setting(
    "request_timeout_seconds",
    Some("request-timeout-seconds"),
    "PORTICO_REQUEST_TIMEOUT_SECONDS",
);
const BODY_LIMIT: Setting = setting(
    "body_limit_bytes",
    Some("body-limit-bytes"),
    "PORTICO_BODY_LIMIT_BYTES",
);
const DATA_PLANE_TOKENS: Setting = setting("data_plane_tokens", None, "PORTICO_DATA_PLANE_TOKENS");
const DATA_PLANE_TOKENS_FILE: Setting = setting(
    "data_plane_tokens_file",
    Some("data-plane-tokens-file"),
    "PORTICO_DATA_PLANE_TOKENS_FILE",
);
const JWKS_REFRESH_MIN: Setting = setting(
    "jwks_refresh_min_seconds",
    Some("jwks-refresh-min-seconds"),
    "PORTICO_JWKS_REFRESH_MIN_SECONDS",
);
const JWKS_REFRESH_MAX: Setting = setting(
    "jwks_refresh_max_seconds",
    Some("jwks-refresh-max-seconds"),
    "PORTICO_JWKS_REFRESH_MAX_SECONDS",
);
const JWKS_FETCH_TIMEOUT: Setting = setting(
    "jwks_fetch_timeout_seconds",
    Some("jwks-fetch-timeout-seconds"),
    "PORTICO_JWKS_FETCH_TIMEOUT_SECONDS",
);
const PORTAL_NAME: Setting = setting("portal_name", Some("portal-name"), "PORTICO_PORTAL_NAME");
const PORTAL_WELCOME: Setting = setting(
    "portal_welcome",
    Some("portal-welcome"),
    "PORTICO_PORTAL_WELCOME",
);
const PORTAL_LOGO_FILE: Setting = setting(
    "portal_logo_file",
    Some("portal-logo-file"),
    "PORTICO_PORTAL_LOGO_FILE",
);
const PORTAL_SELF_SIGNUP: Setting = setting(
    "portal_self_signup",
    Some("portal-self-signup"),
    "PORTICO_PORTAL_SELF_SIGNUP",
);
const PORTAL_MAX_CLIENTS: Setting = setting(
    "portal_max_clients",
    Some("portal-max-clients"),
    "PORTICO_PORTAL_MAX_CLIENTS",
);
const PORTAL_REGISTRATIONS_PER_HOUR: Setting = setting(
    "portal_registrations_per_hour",
    Some("portal-registrations-per-hour"),
    "PORTICO_PORTAL_REGISTRATIONS_PER_HOUR",
);
const SHUTDOWN_GRACE: Setting = setting(
    "shutdown_grace_seconds",
    Some("shutdown-grace-seconds"),
    "PORTICO_SHUTDOWN_GRACE_SECONDS",
);
const HEADER_READ_TIMEOUT: Setting = setting(
    "header_read_timeout_seconds",
    Some("header-read-timeout-seconds"),
    "PORTICO_HEADER_READ_TIMEOUT_SECONDS",
);

// === impl Config ===

impl Config {
    /// Resolves the configuration and the subcommand from command-line arguments (the first
    /// is the program name) and environment variables.
    pub fn load<I, T>(args: I, env: &dyn ConfigSource) -> Result<Invocation, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let flags = Flags::try_parse_from(args).map_err(|error| match error.kind() {
            clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayVersion
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                ConfigError::Info(error.to_string())
            }
            _ => ConfigError::Invalid(first_line(&error.to_string())),
        })?;
        let env_layer = env_layer(env);
        let config_file = flags
            .config
            .clone()
            .map(|path| (Origin::Flag, path))
            .or_else(|| env_get(env, CONFIG).map(|path| (Origin::Env, path)));
        let file_layer = match config_file {
            Some((origin, path)) => Some(read_file_layer(&origin.name(CONFIG), Path::new(&path))?),
            None => None,
        };
        let flag_layer = Layer {
            listen: flags.listen,
            metrics_listen: flags.metrics_listen,
            data_dir: flags.data_dir,
            store: flags.store,
            store_pool_size: flags.store_pool_size,
            admin_keys_file: flags.admin_keys_file,
            secret_key_file: flags.secret_key_file,
            public_base_url: flags.public_base_url,
            log_format: flags.log_format,
            log: flags.log,
            request_timeout_seconds: flags.request_timeout_seconds,
            body_limit_bytes: flags.body_limit_bytes,
            shutdown_grace_seconds: flags.shutdown_grace_seconds,
            header_read_timeout_seconds: flags.header_read_timeout_seconds,
            data_plane_tokens_file: flags.data_plane_tokens_file,
            jwks_refresh_min_seconds: flags.jwks_refresh_min_seconds,
            jwks_refresh_max_seconds: flags.jwks_refresh_max_seconds,
            jwks_fetch_timeout_seconds: flags.jwks_fetch_timeout_seconds,
            portal_name: flags.portal_name,
            portal_welcome: flags.portal_welcome,
            portal_logo_file: flags.portal_logo_file,
            portal_self_signup: flags.portal_self_signup,
            portal_max_clients: flags.portal_max_clients,
            portal_registrations_per_hour: flags.portal_registrations_per_hour,
            ..Layer::default()
        };
        let mut layers = vec![(Origin::Flag, flag_layer), (Origin::Env, env_layer)];
        if let Some((path, layer)) = file_layer {
            layers.push((Origin::File(path), layer));
        }
        Ok(Invocation {
            config: Resolver { layers }.resolve()?,
            command: flags.command.map_or(Command::Serve, Command::from),
        })
    }

    /// A configuration for tests and embedding: a data directory, one admin key and a secret
    /// key, everything else at its default.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>, admin_keys: Vec<AdminKeyConfig>) -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_listen: None,
            data_dir: data_dir.into(),
            store: StoreConfig::Sled,
            admin_keys,
            secret_key: None,
            public_base_url: None,
            log: LogConfig {
                format: LogFormat::Text,
                filter: "info".to_owned(),
            },
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            body_limit: DEFAULT_BODY_LIMIT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            data_plane_tokens: Vec::new(),
            jwks: JwksConfig::default(),
            portal: PortalConfig::default(),
        }
    }
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

/// Empty environment variables count as unset.
fn env_get(env: &dyn ConfigSource, setting: Setting) -> Option<String> {
    env.get(setting.env)
        .filter(|value| !value.trim().is_empty())
}

fn env_layer(env: &dyn ConfigSource) -> Layer {
    Layer {
        listen: env_get(env, LISTEN),
        metrics_listen: env_get(env, METRICS_LISTEN),
        data_dir: env_get(env, DATA_DIR),
        store: env_get(env, STORE),
        store_pool_size: env_get(env, STORE_POOL_SIZE),
        admin_keys: env_get(env, ADMIN_KEYS),
        admin_keys_file: env_get(env, ADMIN_KEYS_FILE),
        secret_key: env_get(env, SECRET_KEY),
        secret_key_file: env_get(env, SECRET_KEY_FILE),
        public_base_url: env_get(env, PUBLIC_BASE_URL),
        log_format: env_get(env, LOG_FORMAT),
        log: env_get(env, LOG),
        request_timeout_seconds: env_get(env, REQUEST_TIMEOUT),
        body_limit_bytes: env_get(env, BODY_LIMIT),
        shutdown_grace_seconds: env_get(env, SHUTDOWN_GRACE),
        header_read_timeout_seconds: env_get(env, HEADER_READ_TIMEOUT),
        data_plane_tokens: env_get(env, DATA_PLANE_TOKENS),
        data_plane_tokens_file: env_get(env, DATA_PLANE_TOKENS_FILE),
        jwks_refresh_min_seconds: env_get(env, JWKS_REFRESH_MIN),
        jwks_refresh_max_seconds: env_get(env, JWKS_REFRESH_MAX),
        jwks_fetch_timeout_seconds: env_get(env, JWKS_FETCH_TIMEOUT),
        portal_name: env_get(env, PORTAL_NAME),
        portal_welcome: env_get(env, PORTAL_WELCOME),
        portal_logo_file: env_get(env, PORTAL_LOGO_FILE),
        portal_self_signup: env_get(env, PORTAL_SELF_SIGNUP),
        portal_max_clients: env_get(env, PORTAL_MAX_CLIENTS),
        portal_registrations_per_hour: env_get(env, PORTAL_REGISTRATIONS_PER_HOUR),
    }
}

fn read_file_layer(origin: &str, path: &Path) -> Result<(PathBuf, Layer), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigError::Invalid(format!("{origin}: cannot read {}: {error}", path.display()))
    })?;
    let file: FileConfig = toml::from_str(&text).map_err(|error| {
        let line = error
            .span()
            .and_then(|span| text.get(..span.start))
            .map(|before| before.matches('\n').count() + 1);
        let message = error.message().replace('\n', " ");
        ConfigError::Invalid(match line {
            Some(line) => format!("{}: line {line}: {message}", path.display()),
            None => format!("{}: {message}", path.display()),
        })
    })?;
    let layer = Layer {
        listen: file.listen,
        metrics_listen: file.metrics_listen,
        data_dir: file.data_dir,
        store: file.store,
        store_pool_size: file.store_pool_size.map(|v| v.to_string()),
        admin_keys: file.admin_keys.map(|keys| keys.join(",")),
        admin_keys_file: file.admin_keys_file,
        secret_key: None,
        secret_key_file: file.secret_key_file,
        public_base_url: file.public_base_url,
        log_format: file.log_format,
        log: file.log,
        request_timeout_seconds: file.request_timeout_seconds.map(|v| v.to_string()),
        body_limit_bytes: file.body_limit_bytes.map(|v| v.to_string()),
        shutdown_grace_seconds: file.shutdown_grace_seconds.map(|v| v.to_string()),
        header_read_timeout_seconds: file.header_read_timeout_seconds.map(|v| v.to_string()),
        data_plane_tokens: file.data_plane_tokens.map(|tokens| tokens.join(",")),
        data_plane_tokens_file: file.data_plane_tokens_file,
        jwks_refresh_min_seconds: file.jwks_refresh_min_seconds.map(|v| v.to_string()),
        jwks_refresh_max_seconds: file.jwks_refresh_max_seconds.map(|v| v.to_string()),
        jwks_fetch_timeout_seconds: file.jwks_fetch_timeout_seconds.map(|v| v.to_string()),
        portal_name: file.portal_name,
        portal_welcome: file.portal_welcome,
        portal_logo_file: file.portal_logo_file,
        portal_self_signup: file.portal_self_signup.map(|v| v.to_string()),
        portal_max_clients: file.portal_max_clients.map(|v| v.to_string()),
        portal_registrations_per_hour: file.portal_registrations_per_hour.map(|v| v.to_string()),
    };
    Ok((path.to_path_buf(), layer))
}

/// Picks each setting from the first layer that has it, and parses it.
struct Resolver {
    layers: Vec<(Origin, Layer)>,
}

/// Where a pair of alternative settings (inline value or file) was found.
enum Choice<'a> {
    Inline(String, &'a str),
    File(String, &'a str),
}

impl Resolver {
    fn pick(
        &self,
        setting: Setting,
        get: impl Fn(&Layer) -> Option<&String>,
    ) -> Option<(String, &str)> {
        self.layers.iter().find_map(|(origin, layer)| {
            get(layer).map(|value| (origin.name(setting), value.as_str()))
        })
    }

    /// The highest layer that sets either form of a secret wins; both forms in one layer is an
    /// error, since one of them would be silently ignored.
    fn pick_pair(
        &self,
        inline: Setting,
        file: Setting,
        get_inline: impl Fn(&Layer) -> Option<&String>,
        get_file: impl Fn(&Layer) -> Option<&String>,
    ) -> Result<Option<Choice<'_>>, ConfigError> {
        for (origin, layer) in &self.layers {
            match (get_inline(layer), get_file(layer)) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::Invalid(format!(
                        "{} and {} are both set; set only one",
                        origin.name(inline),
                        origin.name(file)
                    )));
                }
                (Some(value), None) => {
                    return Ok(Some(Choice::Inline(origin.name(inline), value)));
                }
                (None, Some(value)) => return Ok(Some(Choice::File(origin.name(file), value))),
                (None, None) => {}
            }
        }
        Ok(None)
    }

    fn resolve(&self) -> Result<Config, ConfigError> {
        let listen = match self.pick(LISTEN, |l| l.listen.as_ref()) {
            Some((name, value)) => parse_listen(&name, value)?,
            None => parse_listen("default", DEFAULT_LISTEN)?,
        };
        let metrics_listen = self
            .pick(METRICS_LISTEN, |l| l.metrics_listen.as_ref())
            .map(|(name, value)| parse_listen(&name, value))
            .transpose()?;
        let data_dir = match self.pick(DATA_DIR, |l| l.data_dir.as_ref()) {
            Some((name, value)) if value.trim().is_empty() => {
                return Err(invalid(&name, "must not be empty"));
            }
            Some((_, value)) => PathBuf::from(value),
            None => PathBuf::from(DEFAULT_DATA_DIR),
        };
        let store = self.store()?;
        let admin_keys = self.keys(
            ADMIN_KEYS,
            ADMIN_KEYS_FILE,
            |l| l.admin_keys.as_ref(),
            |l| l.admin_keys_file.as_ref(),
        )?;
        let data_plane_tokens = self.keys(
            DATA_PLANE_TOKENS,
            DATA_PLANE_TOKENS_FILE,
            |l| l.data_plane_tokens.as_ref(),
            |l| l.data_plane_tokens_file.as_ref(),
        )?;
        let seconds = |setting: Setting,
                       get: fn(&Layer) -> Option<&String>,
                       min: u64,
                       max: u64,
                       default: Duration|
         -> Result<Duration, ConfigError> {
            match self.pick(setting, get) {
                Some((name, value)) => {
                    Ok(Duration::from_secs(parse_number(&name, value, min, max)?))
                }
                None => Ok(default),
            }
        };
        let jwks = JwksConfig {
            refresh_min: seconds(
                JWKS_REFRESH_MIN,
                |l| l.jwks_refresh_min_seconds.as_ref(),
                60,
                86_400,
                DEFAULT_JWKS_REFRESH_MIN,
            )?,
            refresh_max: seconds(
                JWKS_REFRESH_MAX,
                |l| l.jwks_refresh_max_seconds.as_ref(),
                60,
                604_800,
                DEFAULT_JWKS_REFRESH_MAX,
            )?,
            fetch_timeout: seconds(
                JWKS_FETCH_TIMEOUT,
                |l| l.jwks_fetch_timeout_seconds.as_ref(),
                1,
                120,
                DEFAULT_JWKS_FETCH_TIMEOUT,
            )?,
        };
        if jwks.refresh_max < jwks.refresh_min {
            return Err(ConfigError::Invalid(format!(
                "{} ({} s) is shorter than {} ({} s)",
                JWKS_REFRESH_MAX.env,
                jwks.refresh_max.as_secs(),
                JWKS_REFRESH_MIN.env,
                jwks.refresh_min.as_secs()
            )));
        }
        let secret_key = match self.pick_pair(
            SECRET_KEY,
            SECRET_KEY_FILE,
            |l| l.secret_key.as_ref(),
            |l| l.secret_key_file.as_ref(),
        )? {
            Some(Choice::Inline(name, value)) => {
                Some(SecretKey::parse(value).map_err(|error| invalid(&name, &error.to_string()))?)
            }
            Some(Choice::File(name, path)) => {
                let text = read_secret_file(&name, path)?;
                Some(SecretKey::parse(&text).map_err(|error| invalid(&name, &error.to_string()))?)
            }
            None => None,
        };
        let public_base_url = match self.pick(PUBLIC_BASE_URL, |l| l.public_base_url.as_ref()) {
            Some((name, value)) => Some(parse_base_url(&name, value)?),
            None => None,
        };
        let format = match self.pick(LOG_FORMAT, |l| l.log_format.as_ref()) {
            Some((_, "text")) | None => LogFormat::Text,
            Some((_, "json")) => LogFormat::Json,
            Some((name, other)) => {
                return Err(invalid(
                    &name,
                    &format!("unknown log format `{other}`; use `text` or `json`"),
                ));
            }
        };
        let filter = match self.pick(LOG, |l| l.log.as_ref()) {
            Some((name, value)) => {
                tracing_subscriber::EnvFilter::builder()
                    .parse(value)
                    .map_err(|error| invalid(&name, &format!("bad log filter: {error}")))?;
                value.to_owned()
            }
            None => "info".to_owned(),
        };
        let request_timeout =
            match self.pick(REQUEST_TIMEOUT, |l| l.request_timeout_seconds.as_ref()) {
                Some((name, value)) => Duration::from_secs(parse_number(&name, value, 1, 3600)?),
                None => DEFAULT_REQUEST_TIMEOUT,
            };
        let body_limit = match self.pick(BODY_LIMIT, |l| l.body_limit_bytes.as_ref()) {
            Some((name, value)) => {
                let limit = parse_number(&name, value, 1024, 64 * 1024 * 1024)?;
                usize::try_from(limit).map_err(|_| invalid(&name, "too large"))?
            }
            None => DEFAULT_BODY_LIMIT,
        };
        let shutdown_grace = match self.pick(SHUTDOWN_GRACE, |l| l.shutdown_grace_seconds.as_ref())
        {
            Some((name, value)) => Duration::from_secs(parse_number(&name, value, 0, 3600)?),
            None => DEFAULT_SHUTDOWN_GRACE,
        };
        let header_read_timeout = match self.pick(HEADER_READ_TIMEOUT, |l| {
            l.header_read_timeout_seconds.as_ref()
        }) {
            Some((name, value)) => Duration::from_secs(parse_number(&name, value, 1, 300)?),
            None => DEFAULT_HEADER_READ_TIMEOUT,
        };
        Ok(Config {
            listen,
            metrics_listen,
            data_dir,
            store,
            admin_keys,
            secret_key,
            public_base_url,
            log: LogConfig { format, filter },
            request_timeout,
            body_limit,
            shutdown_grace,
            header_read_timeout,
            data_plane_tokens,
            jwks,
            portal: self.portal()?,
        })
    }

    fn store(&self) -> Result<StoreConfig, ConfigError> {
        let Some((name, value)) = self.pick(STORE, |l| l.store.as_ref()) else {
            return Ok(StoreConfig::Sled);
        };
        let from_flag = STORE.flag.is_some_and(|flag| name == format!("--{flag}"));
        let url = parse_store(&name, value, from_flag)?;
        let Some(url) = url else {
            return Ok(StoreConfig::Sled);
        };
        let pool_size = match self.pick(STORE_POOL_SIZE, |l| l.store_pool_size.as_ref()) {
            Some((name, value)) => {
                u32::try_from(parse_number(&name, value, 1, MAX_STORE_POOL_SIZE.into())?)
                    .map_err(|_| invalid(&name, "too large"))?
            }
            None => DEFAULT_STORE_POOL_SIZE,
        };
        Ok(StoreConfig::Postgres { url, pool_size })
    }

    fn portal(&self) -> Result<PortalConfig, ConfigError> {
        let defaults = PortalConfig::default();
        let text = |setting: Setting,
                    get: fn(&Layer) -> Option<&String>,
                    max: usize,
                    default: String|
         -> Result<String, ConfigError> {
            match self.pick(setting, get) {
                Some((name, value)) => {
                    let value = value.trim();
                    if value.chars().count() > max
                        || value.chars().any(crate::service::validate::is_deceptive)
                    {
                        return Err(invalid(
                            &name,
                            &format!(
                                "must be at most {max} characters, without control, bidi or \
                                 zero-width characters"
                            ),
                        ));
                    }
                    Ok(value.to_owned())
                }
                None => Ok(default),
            }
        };
        let count = |setting: Setting,
                     get: fn(&Layer) -> Option<&String>,
                     default: u32|
         -> Result<u32, ConfigError> {
            match self.pick(setting, get) {
                Some((name, value)) => u32::try_from(parse_number(&name, value, 1, 1000)?)
                    .map_err(|_| invalid(&name, "too large")),
                None => Ok(default),
            }
        };
        let logo = match self.pick(PORTAL_LOGO_FILE, |l| l.portal_logo_file.as_ref()) {
            Some((name, path)) => Some(read_logo(&name, Path::new(path))?),
            None => None,
        };
        let self_signup = match self.pick(PORTAL_SELF_SIGNUP, |l| l.portal_self_signup.as_ref()) {
            Some((_, "true")) | None => true,
            Some((_, "false")) => false,
            Some((name, _)) => return Err(invalid(&name, "must be `true` or `false`")),
        };
        Ok(PortalConfig {
            name: text(
                PORTAL_NAME,
                |l| l.portal_name.as_ref(),
                MAX_PORTAL_NAME_CHARS,
                defaults.name,
            )?,
            welcome: text(
                PORTAL_WELCOME,
                |l| l.portal_welcome.as_ref(),
                MAX_PORTAL_WELCOME_CHARS,
                defaults.welcome,
            )?,
            logo,
            self_signup,
            max_clients_per_developer: count(
                PORTAL_MAX_CLIENTS,
                |l| l.portal_max_clients.as_ref(),
                defaults.max_clients_per_developer,
            )?,
            registrations_per_hour: count(
                PORTAL_REGISTRATIONS_PER_HOUR,
                |l| l.portal_registrations_per_hour.as_ref(),
                defaults.registrations_per_hour,
            )?,
        })
    }

    /// `id:key` pairs given inline (comma-separated) or in a file (one per line).
    fn keys(
        &self,
        inline: Setting,
        file: Setting,
        get_inline: impl Fn(&Layer) -> Option<&String>,
        get_file: impl Fn(&Layer) -> Option<&String>,
    ) -> Result<Vec<AdminKeyConfig>, ConfigError> {
        Ok(match self.pick_pair(inline, file, get_inline, get_file)? {
            Some(Choice::Inline(name, value)) => parse_admin_keys(&name, value.split(','))?,
            Some(Choice::File(name, path)) => {
                let text = read_secret_file(&name, path)?;
                let lines = text
                    .lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty() && !line.starts_with('#'));
                parse_admin_keys(&name, lines)?
            }
            None => Vec::new(),
        })
    }
}

/// Reads a logo file: its type from the extension, at most [`MAX_LOGO_BYTES`].
fn read_logo(name: &str, path: &Path) -> Result<Logo, ConfigError> {
    let extension = path
        .extension()
        .and_then(|extension| extension.to_str())
        .map(str::to_ascii_lowercase);
    let content_type = match extension.as_deref() {
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        _ => return Err(invalid(name, "must be a .png, .svg, .jpg or .webp file")),
    };
    let bytes = std::fs::read(path)
        .map_err(|error| invalid(name, &format!("cannot read {}: {error}", path.display())))?;
    if bytes.len() > MAX_LOGO_BYTES {
        return Err(invalid(
            name,
            &format!("is larger than {MAX_LOGO_BYTES} bytes"),
        ));
    }
    Ok(Logo {
        content_type,
        bytes,
    })
}

fn invalid(name: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid(format!("{name}: {reason}"))
}

fn parse_listen(name: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.trim().parse().map_err(|_| {
        invalid(
            name,
            &format!("`{value}` is not a socket address such as 127.0.0.1:8080 or [::]:8080"),
        )
    })
}

fn parse_number(name: &str, value: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    match value.trim().parse::<u64>() {
        Ok(number) if (min..=max).contains(&number) => Ok(number),
        _ => Err(invalid(
            name,
            &format!("`{value}` is not a whole number between {min} and {max}"),
        )),
    }
}

/// `sled` (`None`), or a PostgreSQL URL that this build can use. Messages never repeat the
/// value, which may hold a password; a password given as a flag (which other users can read
/// in the process list) is refused.
fn parse_store(name: &str, value: &str, from_flag: bool) -> Result<Option<Secret>, ConfigError> {
    let value = value.trim();
    if value == "sled" {
        return Ok(None);
    }
    let usage = "must be `sled` or a postgres:// or postgresql:// URL";
    let Some((scheme, _)) = value.split_once("://") else {
        return Err(invalid(name, usage));
    };
    if !matches!(scheme, "postgres" | "postgresql") {
        return Err(invalid(name, usage));
    }
    let url = url::Url::parse(value)
        .map_err(|error| invalid(name, &format!("not a usable PostgreSQL URL: {error}")))?;
    if from_flag && url.password().is_some() {
        return Err(invalid(
            name,
            "a password in a flag can be read by other users in the process list; set \
             PORTICO_STORE or `store` in the configuration file, or give the password in \
             PGPASSWORD or ~/.pgpass",
        ));
    }
    let tls = url
        .query_pairs()
        .find(|(key, _)| key == "sslmode" || key == "ssl-mode")
        .is_some_and(|(_, mode)| matches!(mode.as_ref(), "require" | "verify-ca" | "verify-full"));
    if tls {
        return Err(invalid(
            name,
            "this build does not speak TLS to PostgreSQL; use sslmode=disable or prefer (or a \
             TLS tunnel)",
        ));
    }
    value
        .parse::<sqlx::postgres::PgConnectOptions>()
        .map_err(|error| invalid(name, &format!("not a usable PostgreSQL URL: {error}")))?;
    Ok(Some(Secret::new(value)))
}

fn parse_base_url(name: &str, value: &str) -> Result<String, ConfigError> {
    let url = url::Url::parse(value.trim())
        .map_err(|error| invalid(name, &format!("`{value}` is not a URL: {error}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(name, "must be an http or https URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(invalid(
            name,
            "must not contain credentials, a query or a fragment",
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn read_secret_file(name: &str, path: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|error| invalid(name, &format!("cannot read {path}: {error}")))
}

fn parse_admin_keys<'a>(
    name: &str,
    entries: impl Iterator<Item = &'a str>,
) -> Result<Vec<AdminKeyConfig>, ConfigError> {
    let mut keys: Vec<AdminKeyConfig> = Vec::new();
    let mut ids = BTreeSet::new();
    for (index, entry) in entries.enumerate() {
        let position = index + 1;
        let Some((id, key)) = entry.trim().split_once(':') else {
            return Err(invalid(
                name,
                &format!("key #{position} is not written as `id:key`"),
            ));
        };
        if !crate::service::validate::is_slug(id) {
            return Err(invalid(
                name,
                &format!(
                    "key #{position}: the id `{id}` must be lower-case letters, digits, `-` or `_` \
                     (at most 64, starting with a letter or digit)"
                ),
            ));
        }
        if key.chars().count() < MIN_ADMIN_KEY_LEN || key.chars().any(char::is_whitespace) {
            return Err(invalid(
                name,
                &format!(
                    "the key with id `{id}` must be at least {MIN_ADMIN_KEY_LEN} characters \
                     without spaces"
                ),
            ));
        }
        if !ids.insert(id.to_owned()) {
            return Err(invalid(name, &format!("the key id `{id}` appears twice")));
        }
        if keys.iter().any(|other| other.key.expose() == key) {
            return Err(invalid(
                name,
                &format!("the key with id `{id}` is the same as another key"),
            ));
        }
        keys.push(AdminKeyConfig {
            id: id.to_owned(),
            key: Secret::new(key),
        });
    }
    if keys.is_empty() {
        return Err(invalid(name, "no keys given"));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests;
