//! Portico's control plane: the operators' REST admin API over an embedded store.
//!
//! Layers, top to bottom:
//! - [`http`]: axum routers (one per resource under `/admin/v1`), extractors, health
//!   endpoints and the OpenAPI document. Handlers only translate HTTP to service calls.
//! - [`service`]: validation, reference checks, ETag preconditions, secrets sealing and the
//!   audit log; every change is one store transaction that bumps the store revision, published
//!   on [`service::AppState::revisions`].
//! - [`store`]: the [`store::Store`] trait and its implementations: sled (embedded, the
//!   default) and PostgreSQL (shared by several processes).
//!
//! [`Server`] opens the store and the data directory (creating the local secret key and admin key when none is
//! configured), binds the listener and serves until a shutdown signal; [`run`] is what the
//! `portico` binary calls.

pub mod commands;
pub mod config;
pub mod error;
pub mod http;
pub mod idp;
pub mod redact;
pub mod secret;
pub mod service;
pub mod store;

use std::fmt;
use std::future::Future;
use std::io::{IsTerminal as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::{Config, LogConfig, LogFormat, StoreConfig};
use crate::idp::HttpTimeouts;
use crate::idp::client::HttpIdp;
use crate::secret::{AdminKeys, SealContext, Secret, SecretCipher, SecretKey};
use crate::service::{AppState, Settings, SystemClock};
use crate::store::postgres::PgStore;
use crate::store::sled::SledStore;
use crate::store::{Store, StoreError};

/// The id of the admin key generated when none is configured.
pub const GENERATED_ADMIN_KEY_ID: &str = "local";
/// The name of the secret-key file generated in the data directory when none is configured.
pub const GENERATED_SECRET_KEY_FILE: &str = "secret.key";
/// The file holding the data-plane token generated for local use (in the data directory).
pub const GENERATED_DATA_PLANE_TOKEN_FILE: &str = "data-plane.token";
/// The database's directory inside the data directory.
pub const DATABASE_DIR: &str = "db";

const META_KEY_CHECK: &str = "secret_key_check";
const META_GENERATED_ADMIN_KEY: &str = "generated_admin_key_sha256";
const KEY_CHECK_CONTEXT: SealContext<'static> = SealContext {
    kind: "meta",
    id: "secret_key_check",
    field: "value",
};

/// Why the control plane could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The store could not be opened (e.g. another process holds its lock).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The configured secret key is not the one that sealed this store's secrets (the store
    /// is named: its directory, or its PostgreSQL URL without credentials).
    #[error(
        "the secret key does not match the one that encrypted the secrets in {0}; configure the \
         original key (PORTICO_SECRET_KEY or --secret-key-file)"
    )]
    WrongSecretKey(String),
    /// A file in the data directory could not be created, read or parsed.
    #[error("{context}: {reason}")]
    DataDir {
        /// What was being done.
        context: String,
        /// What went wrong.
        reason: String,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The failure.
        source: std::io::Error,
    },
    /// The server failed while serving.
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
    /// The HTTP client for identity providers could not be built (its TLS backend failed).
    #[error(transparent)]
    Idp(crate::idp::TransportError),
    /// The store was restored from an export and no operator has confirmed it yet
    /// ([`service::restore`]); the message says what the restore lost and how to confirm.
    #[error("{0}")]
    RestoreUnconfirmed(String),
    /// `portico store export` or `import` failed (nothing was imported).
    #[error(transparent)]
    Backup(#[from] service::backup::BackupError),
    /// A store command names a sled store that does not exist.
    #[error(
        "there is no store in {}; check --data-dir (PORTICO_DATA_DIR) and --store (PORTICO_STORE)",
        .0.display()
    )]
    NoStore(PathBuf),
}

impl RunError {
    /// The process exit code: 64 (`EX_USAGE`) for a configuration that does not fit the data
    /// directory and for a restored store not yet confirmed (the operator must act), 65
    /// (`EX_DATAERR`) for an export file that cannot be imported, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        use service::backup::BackupError;
        match self {
            RunError::WrongSecretKey(_) | RunError::RestoreUnconfirmed(_) => 64,
            RunError::Backup(BackupError::Invalid(_) | BackupError::UnsupportedVersion { .. }) => {
                65
            }
            _ => 1,
        }
    }
}

fn data_dir_error(context: String, error: impl fmt::Display) -> RunError {
    RunError::DataDir {
        context,
        reason: error.to_string(),
    }
}

/// Where the secret-encryption key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretKeyOrigin {
    /// From `PORTICO_SECRET_KEY` or `--secret-key-file`.
    Configured,
    /// From (or newly written to) this file in the data directory.
    LocalFile {
        /// The file.
        path: PathBuf,
        /// Whether it was created at this start.
        created: bool,
    },
}

/// Where the admin keys came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminKeyOrigin {
    /// Configured keys, by id.
    Configured(Vec<String>),
    /// Generated at this start: the key, shown once.
    Generated(Secret),
    /// Generated at an earlier start (only its digest is stored).
    PreviouslyGenerated,
}

/// Where the data-plane tokens came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataPlaneTokenOrigin {
    /// Configured tokens, by id.
    Configured(Vec<String>),
    /// The local token file (created at this start or an earlier one).
    LocalFile {
        /// The file.
        path: PathBuf,
        /// Whether this start created it.
        created: bool,
    },
}

/// Where the control plane's data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// The sled database in this directory.
    Sled(PathBuf),
    /// A PostgreSQL database, named by its URL without credentials or query.
    Postgres(String),
}

impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Database::Sled(path) => write!(f, "{}", path.display()),
            Database::Postgres(target) => write!(f, "PostgreSQL at {target}"),
        }
    }
}

/// What an operator needs to know at start-up: where the data lives and how to authenticate.
/// Its `Display` is what `portico` prints on stdout.
#[derive(Debug, Clone)]
pub struct StartupNotice {
    /// The address the server listens on.
    pub listen: SocketAddr,
    /// The public base URL.
    pub base_url: String,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Where the data lives.
    pub database: Database,
    /// The secret key's origin.
    pub secret_key: SecretKeyOrigin,
    /// The admin keys' origin.
    pub admin_keys: AdminKeyOrigin,
    /// The data-plane tokens' origin.
    pub data_plane_tokens: DataPlaneTokenOrigin,
    /// Registrations an earlier run left interrupted at the IdP (see
    /// [`service::interrupted`]); the notice asks the operator to check them when there are any.
    pub interrupted_registrations: usize,
}

impl fmt::Display for StartupNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "portico {} listening on http://{}",
            env!("CARGO_PKG_VERSION"),
            self.listen
        )?;
        writeln!(
            f,
            "  admin API: {}/admin/v1 (OpenAPI: {}/admin/v1/openapi.json)",
            self.base_url, self.base_url
        )?;
        match &self.database {
            Database::Sled(path) => writeln!(
                f,
                "  data directory: {} (database in {})",
                self.data_dir.display(),
                path.display()
            )?,
            Database::Postgres(_) => writeln!(
                f,
                "  data directory: {} (local key files only); database: {}",
                self.data_dir.display(),
                self.database
            )?,
        }
        match &self.secret_key {
            SecretKeyOrigin::Configured => {
                writeln!(f, "  secret-encryption key: configured")?;
            }
            SecretKeyOrigin::LocalFile { path, created } => {
                writeln!(
                    f,
                    "  secret-encryption key: {} {} (for local use; in production set \
                     PORTICO_SECRET_KEY or --secret-key-file)",
                    if *created { "generated" } else { "read from" },
                    path.display()
                )?;
            }
        }
        match &self.data_plane_tokens {
            DataPlaneTokenOrigin::Configured(ids) => {
                writeln!(f, "  data-plane tokens: {} (configured)", ids.join(", "))?;
            }
            DataPlaneTokenOrigin::LocalFile { path, created } => {
                writeln!(
                    f,
                    "  data-plane token (for Envoy's filter configuration): {} {} (for local \
                     use; in production set PORTICO_DATA_PLANE_TOKENS)",
                    if *created {
                        "generated in"
                    } else {
                        "read from"
                    },
                    path.display()
                )?;
            }
        }
        writeln!(
            f,
            "  snapshot endpoint for filters: {}/v1/snapshot",
            self.base_url
        )?;
        match &self.admin_keys {
            AdminKeyOrigin::Configured(ids) => {
                writeln!(f, "  admin keys: {} (configured)", ids.join(", "))?;
                writeln!(f, "  authenticate with: Authorization: Bearer <admin key>")?;
            }
            AdminKeyOrigin::Generated(key) => {
                writeln!(
                    f,
                    "  admin key `{GENERATED_ADMIN_KEY_ID}` generated; it is shown only this once \
                     (only its hash is stored):"
                )?;
                writeln!(f, "    {}", key.expose())?;
                writeln!(
                    f,
                    "  authenticate with: curl -H 'Authorization: Bearer {}' {}/admin/v1/apis",
                    key.expose(),
                    self.base_url
                )?;
                writeln!(
                    f,
                    "  to use your own keys, set PORTICO_ADMIN_KEYS=id:key[,id:key...]"
                )?;
            }
            AdminKeyOrigin::PreviouslyGenerated => {
                writeln!(
                    f,
                    "  admin key: the key `{GENERATED_ADMIN_KEY_ID}` printed at first start \
                     (Authorization: Bearer <key>); to replace it, set PORTICO_ADMIN_KEYS=id:key"
                )?;
            }
        }
        if self.interrupted_registrations > 0 {
            writeln!(
                f,
                "  WARNING: {} client registration(s) were interrupted before their outcome at \
                 the identity provider was known; check the IdP for each, then acknowledge it: \
                 {}/admin/v1/interrupted-registrations",
                self.interrupted_registrations, self.base_url
            )?;
        }
        Ok(())
    }
}

/// A bound, ready-to-serve control plane.
#[derive(Debug)]
pub struct Server {
    state: AppState,
    listener: TcpListener,
    local_addr: SocketAddr,
    /// The listener of `PORTICO_METRICS_LISTEN`, with its bound address.
    metrics_listener: Option<(TcpListener, SocketAddr)>,
    notice: StartupNotice,
    shutdown_grace: Duration,
    header_read_timeout: Duration,
}

impl Server {
    /// Opens the data directory (creating it, and the local keys when none are configured),
    /// and binds the listen address (and the metrics address, when one is configured).
    pub async fn bind(config: &Config) -> Result<Server, RunError> {
        let data_dir = &std::path::absolute(&config.data_dir).map_err(|error| {
            data_dir_error(
                format!("the data directory {}", config.data_dir.display()),
                error,
            )
        })?;
        create_private_dir(data_dir)?;
        let (store, database) = open_store(&config.store, data_dir).await?;
        if let Some(mark) = service::restore::unconfirmed(store.as_ref())? {
            return Err(RunError::RestoreUnconfirmed(
                mark.refusal(&database.to_string()),
            ));
        }
        let (key, secret_key) = match &config.secret_key {
            Some(key) => (key.clone(), SecretKeyOrigin::Configured),
            None => local_secret_key(data_dir)?,
        };
        let cipher = SecretCipher::new(&key);
        check_secret_key(store.as_ref(), &cipher, &database)?;
        let (admin_keys, admin_origin) = admin_keys(config, store.as_ref())?;
        let (data_plane_tokens, data_plane_origin) = data_plane_tokens(config, data_dir)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| RunError::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| RunError::Bind {
            addr: config.listen,
            source,
        })?;
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(bind_metrics(addr).await?),
            None => None,
        };
        let base_url = config
            .public_base_url
            .clone()
            .unwrap_or_else(|| default_base_url(local_addr));
        let state = AppState::new(
            store,
            cipher,
            admin_keys,
            Settings {
                public_base_url: base_url.clone(),
                body_limit: config.body_limit,
                request_timeout: config.request_timeout,
                data_plane_tokens,
                jwks: config.jwks,
                portal: config.portal.clone(),
            },
            Arc::new(SystemClock),
            Arc::new(HttpIdp::new(&HttpTimeouts::default()).map_err(RunError::Idp)?),
        )?;
        let interrupted_registrations = state
            .interrupted_registrations()
            .list()
            .map_err(|error| RunError::Store(StoreError::Backend(error.to_string())))?
            .len();
        let notice = StartupNotice {
            listen: local_addr,
            base_url,
            data_dir: data_dir.clone(),
            database,
            secret_key,
            admin_keys: admin_origin,
            data_plane_tokens: data_plane_origin,
            interrupted_registrations,
        };
        Ok(Server {
            state,
            listener,
            local_addr,
            metrics_listener,
            notice,
            shutdown_grace: config.shutdown_grace,
            header_read_timeout: config.header_read_timeout,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound metrics address (`PORTICO_METRICS_LISTEN`), if one is configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(|(_, addr)| *addr)
    }

    /// The shared state (for the services that run beside the HTTP server).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// What to tell the operator.
    pub fn notice(&self) -> &StartupNotice {
        &self.notice
    }

    /// Serves until `shutdown` completes, then stops accepting connections, answers `/readyz`
    /// with 503 and lets in-flight requests finish, for at most the configured grace period.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), RunError> {
        let state = self.state.clone();
        let (stop_tasks, tasks_stopped) = tokio::sync::watch::channel(false);
        let keys = tokio::spawn(service::jwks::run(state.clone(), tasks_stopped.clone()));
        let metrics = self.metrics_listener.map(|(listener, _)| {
            let mut stopped = tasks_stopped.clone();
            let app = http::ops::metrics_app(state.clone());
            tokio::spawn(async move {
                let stop = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                if let Err(error) = axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
                {
                    tracing::error!(%error, "the metrics listener failed");
                }
            })
        });
        let replicas = tokio::spawn(service::replicas::run(state.clone(), tasks_stopped.clone()));
        let snapshots = tokio::spawn(service::snapshot::run(state.clone(), tasks_stopped));
        let router = http::app(self.state);
        let connections = hyper_util::server::graceful::GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => serve_connection(
                        &connections,
                        router.clone(),
                        stream,
                        peer,
                        self.header_read_timeout,
                    ),
                    Err(error) => {
                        // Out of file descriptors and the like: the listener recovers once
                        // connections end.
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(ACCEPT_RETRY).await;
                    }
                },
                () = &mut shutdown => break,
            }
        }
        drop(self.listener);
        state.begin_drain();
        // Held snapshot polls answer at once instead of holding the shutdown up.
        state.snapshots().wake_polls();
        stop_tasks.send(true).ok();
        tracing::info!("shutting down: no new connections, finishing in-flight requests");
        let grace = self.shutdown_grace;
        tokio::select! {
            () = connections.shutdown() => {}
            () = tokio::time::sleep(grace) => {
                tracing::warn!(?grace, "grace period over; closing the remaining connections");
            }
        }
        keys.abort();
        replicas.abort();
        snapshots.abort();
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Opens the configured store: sled in `<data_dir>/db` (its lock held names `data_dir`), or
/// PostgreSQL (connected on a blocking thread: opening waits for the database, bounded by
/// [`store::postgres::ACQUIRE_TIMEOUT`] per attempt).
pub(crate) async fn open_store(
    config: &StoreConfig,
    data_dir: &Path,
) -> Result<(Arc<dyn Store>, Database), RunError> {
    match config {
        StoreConfig::Sled => {
            let path = data_dir.join(DATABASE_DIR);
            let store = SledStore::open(&path).map_err(|error| match error {
                StoreError::Locked(_) => StoreError::Locked(data_dir.to_path_buf()),
                other => other,
            })?;
            Ok((Arc::new(store), Database::Sled(path)))
        }
        StoreConfig::Postgres { url, pool_size } => {
            let (url, pool_size) = (url.clone(), *pool_size);
            let store = tokio::task::spawn_blocking(move || PgStore::open(url.expose(), pool_size))
                .await
                .map_err(|error| RunError::Store(StoreError::Backend(error.to_string())))??;
            let database = Database::Postgres(store.target().to_owned());
            Ok((Arc::new(store), database))
        }
    }
}

/// Binds the metrics address, answering its bound address too (useful with port 0).
async fn bind_metrics(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), RunError> {
    let bind_error = |source| RunError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    Ok((listener, bound))
}

/// How long to wait before accepting again after `accept` failed.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Serves one HTTP/1.1 connection from `peer` with `router` (which sees the peer as
/// `ConnectInfo<SocketAddr>`), closing it when a request's headers take longer than
/// `header_read_timeout` to arrive (from the connection, or from the end of the previous
/// request); registered with `connections` so that a shutdown can end it gracefully.
fn serve_connection(
    connections: &hyper_util::server::graceful::GracefulShutdown,
    router: axum::Router,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    header_read_timeout: Duration,
) {
    let service = tower::ServiceExt::map_request(
        router,
        move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            request.map(axum::body::Body::new)
        },
    );
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(
            hyper_util::rt::TokioIo::new(stream),
            hyper_util::service::TowerToHyperService::new(service),
        );
    let connection = connections.watch(connection);
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%peer, %error, "connection ended with an error");
        }
    });
}

/// Runs the control plane until SIGTERM or SIGINT: opens the data directory, prints the
/// start-up notice on stdout, and serves.
pub async fn run(config: Config) -> Result<(), RunError> {
    let server = Server::bind(&config).await?;
    print_notice(server.notice());
    tracing::info!(
        listen = %server.local_addr(),
        data_dir = %server.notice().data_dir.display(),
        database = %server.notice().database,
        "portico started"
    );
    if let Some(addr) = server.metrics_addr() {
        tracing::info!(listen = %addr, "serving GET /metrics on the metrics address too");
    }
    if server.notice().interrupted_registrations > 0 {
        tracing::warn!(
            count = server.notice().interrupted_registrations,
            "client registrations were interrupted before their outcome at the identity \
             provider was known: check the IdP, then acknowledge them at \
             GET /admin/v1/interrupted-registrations"
        );
    }
    server.serve(shutdown_signal()).await
}

#[allow(
    clippy::print_stdout,
    reason = "the start-up notice is meant for the operator's terminal"
)]
fn print_notice(notice: &StartupNotice) {
    print!("{notice}");
    std::io::stdout().flush().ok();
}

/// Completes on SIGTERM or SIGINT. Both handlers are installed when this is called, not when
/// the future is first polled: a signal that arrives while the accept loop is busy must stop
/// the server gracefully, not kill it with the default disposition.
fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        let received = |signal: std::io::Result<tokio::signal::unix::Signal>,
                        name: &'static str| async move {
            match signal {
                Ok(mut signal) => {
                    signal.recv().await;
                    tracing::info!("received {name}");
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for {name}");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            () = received(terminate, "SIGTERM") => {}
            () = received(interrupt, "SIGINT") => {}
        }
    }
}

/// Starts logging to stderr, as text or JSON, filtered by the configured filter.
pub fn init_tracing(log: &LogConfig) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::builder().parse(&log.filter)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    }
    .map_err(|error| anyhow::anyhow!("cannot start logging: {error}"))
}

fn default_base_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

pub(crate) fn create_private_dir(path: &Path) -> Result<(), RunError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|error| data_dir_error(format!("cannot create {}", path.display()), error))
}

/// Reads the local key file, or creates it (mode 0600) with a new random key.
fn local_secret_key(data_dir: &Path) -> Result<(SecretKey, SecretKeyOrigin), RunError> {
    let path = data_dir.join(GENERATED_SECRET_KEY_FILE);
    let (text, created) = read_or_create_private_file(&path, || {
        SecretKey::generate()
            .map(|key| key.to_hex().as_str().to_owned())
            .map_err(|error| data_dir_error("generating a secret key".to_owned(), error))
    })?;
    let key = SecretKey::parse(&text)
        .map_err(|error| data_dir_error(format!("the key file {}", path.display()), error))?;
    Ok((key, SecretKeyOrigin::LocalFile { path, created }))
}

/// The configured data-plane tokens, or the local one kept in the data directory (created,
/// mode 0600, at first start) for local use.
fn data_plane_tokens(
    config: &Config,
    data_dir: &Path,
) -> Result<(AdminKeys, DataPlaneTokenOrigin), RunError> {
    if !config.data_plane_tokens.is_empty() {
        let tokens = AdminKeys::new(
            config
                .data_plane_tokens
                .iter()
                .map(|token| (token.id.as_str(), &token.key)),
        );
        let ids = config
            .data_plane_tokens
            .iter()
            .map(|token| token.id.clone())
            .collect();
        return Ok((tokens, DataPlaneTokenOrigin::Configured(ids)));
    }
    let path = data_dir.join(GENERATED_DATA_PLANE_TOKEN_FILE);
    let (text, created) = read_or_create_private_file(&path, || {
        Secret::random_hex(32)
            .map(|token| token.expose().to_owned())
            .map_err(|error| data_dir_error("generating a data-plane token".to_owned(), error))
    })?;
    let token = Secret::new(text.trim());
    Ok((
        AdminKeys::new([(GENERATED_ADMIN_KEY_ID, &token)]),
        DataPlaneTokenOrigin::LocalFile { path, created },
    ))
}

/// The content of a private file, created (mode 0600, synced) from `generate` when absent;
/// also says whether it was created.
fn read_or_create_private_file(
    path: &Path,
    generate: impl FnOnce() -> Result<String, RunError>,
) -> Result<(String, bool), RunError> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((text, false)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let text = generate()?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|error| {
                    data_dir_error(format!("cannot create {}", path.display()), error)
                })?;
            file.write_all(format!("{text}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|error| {
                    data_dir_error(format!("cannot write {}", path.display()), error)
                })?;
            Ok((text, true))
        }
        Err(error) => Err(data_dir_error(
            format!("cannot read {}", path.display()),
            error,
        )),
    }
}

/// The first start seals a known value; later starts check that the key still opens it, so a
/// wrong key is refused at start instead of failing on the first secret read.
fn check_secret_key(
    store: &dyn Store,
    cipher: &SecretCipher,
    database: &Database,
) -> Result<(), RunError> {
    const CHECK_VALUE: &str = "portico secret key check";
    match store.meta_get(META_KEY_CHECK)? {
        Some(sealed) => {
            let sealed = String::from_utf8(sealed)
                .map_err(|error| data_dir_error("the stored key check".to_owned(), error))?;
            match cipher.open(&sealed, KEY_CHECK_CONTEXT) {
                Ok(value) if value.expose() == CHECK_VALUE => Ok(()),
                _ => Err(RunError::WrongSecretKey(database.to_string())),
            }
        }
        None => {
            let sealed = cipher
                .seal(&Secret::new(CHECK_VALUE), KEY_CHECK_CONTEXT)
                .map_err(|error| data_dir_error("sealing the key check".to_owned(), error))?;
            store.meta_put(META_KEY_CHECK, sealed.as_bytes())?;
            Ok(())
        }
    }
}

/// The configured admin keys, or the generated one (created at first start).
fn admin_keys(config: &Config, store: &dyn Store) -> Result<(AdminKeys, AdminKeyOrigin), RunError> {
    if !config.admin_keys.is_empty() {
        let keys = AdminKeys::new(
            config
                .admin_keys
                .iter()
                .map(|key| (key.id.as_str(), &key.key)),
        );
        let ids = config.admin_keys.iter().map(|key| key.id.clone()).collect();
        return Ok((keys, AdminKeyOrigin::Configured(ids)));
    }
    match store.meta_get(META_GENERATED_ADMIN_KEY)? {
        Some(digest) => {
            let digest: [u8; 32] = digest.as_slice().try_into().map_err(|_| {
                data_dir_error(
                    "the stored admin key digest".to_owned(),
                    "it is not 32 bytes long",
                )
            })?;
            Ok((
                AdminKeys::from_digests([(GENERATED_ADMIN_KEY_ID.to_owned(), digest)]),
                AdminKeyOrigin::PreviouslyGenerated,
            ))
        }
        None => {
            let key = Secret::random_hex(32)
                .map_err(|error| data_dir_error("generating an admin key".to_owned(), error))?;
            let digest = AdminKeys::digest(&key);
            store.meta_put(META_GENERATED_ADMIN_KEY, &digest)?;
            Ok((
                AdminKeys::from_digests([(GENERATED_ADMIN_KEY_ID.to_owned(), digest)]),
                AdminKeyOrigin::Generated(key),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_metrics_address_serves_metrics_only_and_the_main_listener_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_data_dir(
            dir.path(),
            vec![config::AdminKeyConfig {
                id: "ops".to_owned(),
                key: Secret::new("an-admin-key-long-enough-for-tests"),
            }],
        );
        config.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        let server = Server::bind(&config).await.unwrap();
        let main = server.local_addr();
        let metrics = server.metrics_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let get = |addr: SocketAddr, path: &str| {
            let request = client.get(format!("http://{addr}{path}"));
            async move {
                let response = request.send().await.unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            }
        };
        for addr in [metrics, main] {
            let (status, body) = get(addr, "/metrics").await;
            assert_eq!(status, 200);
            assert!(
                body.contains("portico_snapshot_publish_failures_total"),
                "{body}"
            );
        }
        assert_eq!(get(metrics, "/admin/v1/apis").await.0, 404);
        assert_eq!(get(metrics, "/healthz").await.0, 404);
        stop.send(()).unwrap();
        serving.await.unwrap().unwrap();
    }
}
