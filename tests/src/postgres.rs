//! A throwaway PostgreSQL server for tests: Debian's `postgresql` binaries (installed by
//! `scripts/setup.sh`), `initdb` into a temporary directory, an ephemeral port on 127.0.0.1,
//! unix sockets in that directory, `fsync=on`, and a fresh database per test.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root (CI does) the server runs
//! as `nobody` (through `setpriv`), owning its directory. The server is started under a small
//! shell watchdog that stops it (fast shutdown) as soon as its standard input closes: when the
//! [`Postgres`] is dropped or stopped, and also when the test process ends in any way, so no
//! server outlives the tests. [`shared`] gives one server per test binary (started once, on
//! first use, in about a second); [`Postgres::start`] a server of the test's own, which it may
//! stop and start again (an outage).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Connection as _;

/// How long a start (initdb excluded) may take before the test fails.
const START_PATIENCE: Duration = Duration::from_secs(30);
/// The superuser `initdb` creates (authentication is `trust` on the loopback).
pub const SUPERUSER: &str = "postgres";

/// Runs postgres (`$1` the binary, `$2..` its arguments) until standard input closes, then
/// stops it with SIGQUIT (immediate shutdown: no shutdown checkpoint, so a test's outage is a
/// crash that the next start recovers from its WAL), waits for it, and removes
/// the directory named by `PORTICO_PG_REMOVE` if set (the shared server's, whose owner never
/// drops it).
const WATCHDOG: &str = r#"bin="$1"; shift
"$bin" "$@" &
pid=$!
read -r _ || true
kill -QUIT "$pid" 2>/dev/null
wait "$pid"
if [ -n "${PORTICO_PG_REMOVE:-}" ]; then rm -rf "$PORTICO_PG_REMOVE"; fi
"#;

/// A running PostgreSQL server.
#[derive(Debug)]
pub struct Postgres {
    dir: PathBuf,
    /// Removes the directory when a test's own server is dropped; `None` for the shared one
    /// (its watchdog removes it when the process ends).
    _owned: Option<tempfile::TempDir>,
    bin: PathBuf,
    as_nobody: bool,
    port: u16,
    server: Option<Server>,
}

/// One run of the server: the watchdog, its standard input (closing it stops the server) and
/// the lines the server logged.
#[derive(Debug)]
struct Server {
    watchdog: Child,
    stdin: ChildStdin,
    log: Arc<Mutex<Vec<String>>>,
}

static SHARED: tokio::sync::OnceCell<Postgres> = tokio::sync::OnceCell::const_new();
static DATABASES: AtomicU64 = AtomicU64::new(0);

/// The server shared by the tests of this binary, started on first use.
pub async fn shared() -> &'static Postgres {
    SHARED
        .get_or_init(|| async { Postgres::init(false).await })
        .await
}

impl Postgres {
    /// A server of the test's own, stopped and removed when dropped.
    pub async fn start() -> Postgres {
        Postgres::init(true).await
    }

    async fn init(owned: bool) -> Postgres {
        let bin = binaries();
        let as_nobody = std::fs::metadata("/proc/self")
            .map(|meta| meta.uid() == 0)
            .unwrap_or(false);
        let temp = tempfile::Builder::new()
            .prefix("portico-pg-")
            .tempdir()
            .expect("a temporary directory for PostgreSQL");
        let dir = temp.path().to_path_buf();
        if as_nobody {
            let status = Command::new("chown")
                .args(["nobody:nogroup"])
                .arg(&dir)
                .status()
                .expect("run chown");
            assert!(status.success(), "chown nobody {}", dir.display());
        }
        let output = user_command(as_nobody, &bin.join("initdb"))
            .arg("-D")
            .arg(dir.join("data"))
            .args([
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .expect("run initdb");
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // The shared server's directory lives until the process ends; its watchdog removes it.
        let owned = if owned {
            Some(temp)
        } else {
            let _ = temp.keep();
            None
        };
        let mut postgres = Postgres {
            dir,
            _owned: owned,
            bin,
            as_nobody,
            port: free_port(),
            server: None,
        };
        postgres.run().await;
        postgres
    }

    /// Starts the server (again) on its port and waits until it accepts connections.
    async fn run(&mut self) {
        let (log_sender, ready) = tokio::sync::oneshot::channel();
        let mut watchdog = user_command(self.as_nobody, Path::new("sh"))
            .args(["-c", WATCHDOG, "watchdog"])
            .arg(self.bin.join("postgres"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=on",
                "-c",
                "synchronous_commit=on",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=16MB",
                // After a crash (an outage test), one syncfs instead of an fsync per file.
                "-c",
                "recovery_init_sync_method=syncfs",
            ])
            .env(
                "PORTICO_PG_REMOVE",
                if self._owned.is_some() {
                    PathBuf::new()
                } else {
                    self.dir.clone()
                },
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start postgres");
        let stdin = watchdog.stdin.take().expect("piped stdin");
        let stderr = watchdog.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut log_sender = Some(log_sender);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let ready = line.contains("ready to accept connections");
                lines.lock().expect("the log").push(line);
                if ready && let Some(sender) = log_sender.take() {
                    let _ = sender.send(());
                }
            }
        });
        let started = tokio::time::timeout(START_PATIENCE, ready).await;
        let server = Server {
            watchdog,
            stdin,
            log,
        };
        assert!(
            matches!(started, Ok(Ok(()))),
            "PostgreSQL did not start on port {}:\n{}",
            self.port,
            server.log()
        );
        self.server = Some(server);
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A new, empty database; answers its URL (as the superuser, no password needed).
    pub async fn database(&self) -> String {
        let name = format!(
            "portico_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::SeqCst)
        );
        let mut admin = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connect to PostgreSQL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("CREATE DATABASE");
        admin.close().await.ok();
        self.url(&name)
    }

    /// The URL of `database` on this server, as the superuser.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the server (immediate shutdown, as a crash) and waits until it has exited.
    pub async fn stop(&mut self) {
        let Some(server) = self.server.take() else {
            return;
        };
        let Server {
            mut watchdog,
            stdin,
            log,
        } = server;
        drop(stdin);
        let waited = tokio::time::timeout(
            START_PATIENCE,
            tokio::task::spawn_blocking(move || watchdog.wait()),
        )
        .await;
        assert!(
            matches!(waited, Ok(Ok(Ok(_)))),
            "PostgreSQL did not stop:\n{}",
            log.lock().expect("the log").join("\n")
        );
    }

    /// Starts a stopped server again, on the same port and data.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.run().await;
    }

    /// What the server logged in its current run.
    pub fn log(&self) -> String {
        self.server.as_ref().map(Server::log).unwrap_or_default()
    }
}

impl Server {
    fn log(&self) -> String {
        self.log.lock().expect("the log").join("\n")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            drop(server.stdin);
            let _ = server.watchdog.wait();
        }
    }
}

/// A command run as `nobody` (through `setpriv`) when `as_nobody`, else as the current user.
fn user_command(as_nobody: bool, program: &Path) -> Command {
    if as_nobody {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// The directory of `initdb` and `postgres`: from `PATH`, else the newest
/// `/usr/lib/postgresql/<version>/bin`. Fails with the command that installs them.
fn binaries() -> PathBuf {
    let from_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
    });
    if let Some(dir) = from_path {
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed (no initdb in PATH or /usr/lib/postgresql/*/bin): run \
             scripts/setup.sh, which installs Debian's postgresql package"
        )
    })
}

/// A port that was free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}
