//! The control plane (`portico`) as a process: a temporary data directory, configured keys,
//! an ephemeral port read from its start-up line, admin-API helpers, kill and restart.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tempfile::TempDir;

use crate::eventually::{eventually_ok, first_line_matching};

/// The admin key the harness configures.
pub const ADMIN_KEY: &str = "test-admin-key-0123456789abcdef";
/// The data-plane token the harness configures (and Envoy's plugin configuration carries).
pub const DATA_PLANE_TOKEN: &str = "test-data-plane-token-0123456789";
/// The key the control plane seals stored secrets with (hex, 32 bytes), itself a secret.
pub const SECRET_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// The built `portico` binary. Panics with the command that builds it when it is missing.
pub fn portico_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    // Tests run from target/<profile>/deps/, binaries from target/<profile>/.
    let mut profile_dir = exe.parent().expect("a target directory");
    if profile_dir.file_name().is_some_and(|name| name == "deps") {
        profile_dir = profile_dir.parent().expect("a target directory");
    }
    let binary = profile_dir.join("portico");
    assert!(
        binary.is_file(),
        "the control plane is not built at {}: run `cargo build -p portico-control-plane` \
         (scripts/test.sh builds every binary first)",
        binary.display()
    );
    binary
}

/// A running control plane, killed when dropped.
#[derive(Debug)]
pub struct ControlPlane {
    child: Option<Child>,
    data: TempDir,
    env: Vec<(String, String)>,
    /// Where it listens.
    pub addr: SocketAddr,
    http: reqwest::Client,
}

/// An admin-API answer.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The `ETag`, if any.
    pub etag: Option<String>,
    /// The JSON body (`Null` when empty or not JSON).
    pub body: Value,
}

impl ControlPlane {
    /// Starts a control plane on a fresh data directory; `env` adds or overrides settings.
    pub async fn start(env: &[(&str, &str)]) -> ControlPlane {
        let mut control_plane = ControlPlane::stopped(env);
        control_plane.spawn("127.0.0.1:0").await;
        control_plane
    }

    /// A control plane on a fresh data directory, not started: [`ControlPlane::portico`] runs
    /// commands on its store, [`ControlPlane::restart`] starts it.
    pub fn stopped(env: &[(&str, &str)]) -> ControlPlane {
        let data = tempfile::tempdir().expect("a temporary data directory");
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ControlPlane {
            child: None,
            data,
            env,
            addr: "127.0.0.1:0".parse().expect("an address"),
            http: reqwest::Client::new(),
        }
    }

    /// `portico` with this control plane's settings, listening on `listen`.
    fn command(&self, listen: &str) -> Command {
        let mut command = Command::new(portico_binary());
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PORTICO_LISTEN", listen)
            .env("PORTICO_DATA_DIR", self.data_dir())
            .env("PORTICO_ADMIN_KEYS", format!("test:{ADMIN_KEY}"))
            .env("PORTICO_SECRET_KEY", SECRET_KEY)
            .env(
                "PORTICO_DATA_PLANE_TOKENS",
                format!("test:{DATA_PLANE_TOKEN}"),
            )
            .env("PORTICO_LOG", "info,portico_control_plane=debug");
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
    }

    /// Runs `portico <args>` with this control plane's settings (its store, data directory
    /// and keys) to its end, feeding it `stdin`; for the store commands, and for a start that
    /// must fail. Panics when it runs longer than 60 s (a start that serves instead).
    pub async fn portico(&self, args: &[&str], stdin: &[u8]) -> Output {
        use tokio::io::AsyncWriteExt as _;
        let mut command = tokio::process::Command::from(self.command("127.0.0.1:0"));
        let mut child = command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start portico");
        let mut input = child.stdin.take().expect("piped stdin");
        input.write_all(stdin).await.expect("write to portico");
        drop(input);
        tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("`portico {}` did not end within 60 s", args.join(" ")))
            .expect("portico's output")
    }

    async fn spawn(&mut self, listen: &str) {
        let mut command = self.command(listen);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.path().join("portico.log"))
            .expect("open the log");
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start portico");
        let stdout = child.stdout.take().expect("piped stdout");
        let receiver = first_line_matching(stdout, |line| {
            let rest = line.split("listening on http://").nth(1)?;
            rest.split_whitespace().next()?.parse::<SocketAddr>().ok()
        });
        self.child = Some(child);
        self.addr = tokio::time::timeout(Duration::from_secs(20), receiver)
            .await
            .unwrap_or_else(|_| panic!("portico did not start:\n{}", self.log()))
            .unwrap_or_else(|_| panic!("portico exited at start:\n{}", self.log()));
        let url = self.url("/readyz");
        eventually_ok(
            "the control plane to be ready",
            &url,
            Duration::from_secs(20),
        )
        .await;
    }

    /// The process id of the running control plane.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its data directory (`PORTICO_DATA_DIR`; the store is in its `db/`). Read or write it
    /// only while the control plane is stopped: the store holds a lock while it runs.
    pub fn data_dir(&self) -> PathBuf {
        self.data.path().join("data")
    }

    /// A URL on the control plane.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("portico.log")).unwrap_or_default()
    }

    /// Kills it with SIGKILL (no shutdown at all).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same data directory and port.
    pub async fn restart(&mut self) {
        self.kill();
        let listen = self.addr.to_string();
        self.spawn(&listen).await;
    }

    /// Calls the admin API with the harness's admin key.
    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Answer {
        let mut request = self
            .http
            .request(method, self.url(&format!("/admin/v1{path}")))
            .bearer_auth(ADMIN_KEY);
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(etag) = if_match {
            request = request.header("if-match", etag);
        }
        answer(request.send().await.expect("an answer from the admin API")).await
    }

    /// Sends `body` as it is with `content_type` (an OpenAPI document in YAML, say) to the
    /// admin API.
    pub async fn admin_raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: &str,
        if_match: Option<&str>,
    ) -> Answer {
        let mut request = self
            .http
            .request(method, self.url(&format!("/admin/v1{path}")))
            .bearer_auth(ADMIN_KEY)
            .header("content-type", content_type)
            .body(body.to_owned());
        if let Some(etag) = if_match {
            request = request.header("if-match", etag);
        }
        answer(request.send().await.expect("an answer from the admin API")).await
    }

    /// Creates a resource, panicking unless it answers 201.
    pub async fn create(&self, collection: &str, body: Value) -> Value {
        let answer = self
            .admin(Method::POST, collection, Some(&body), None)
            .await;
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "POST {collection}: {:?}",
            answer.body
        );
        answer.body
    }

    /// Replaces a resource unconditionally (`If-Match: *`), panicking unless it answers 200.
    pub async fn replace(&self, path: &str, body: Value) -> Value {
        let answer = self.admin(Method::PUT, path, Some(&body), Some("*")).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "PUT {path}: {:?}",
            answer.body
        );
        answer.body
    }

    /// Reads a resource, panicking unless it answers 200.
    pub async fn read(&self, path: &str) -> Value {
        let answer = self.admin(Method::GET, path, None, None).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "GET {path}: {:?}",
            answer.body
        );
        answer.body
    }

    /// Revokes the OAuth client with record id `id`, panicking unless it answers 200.
    pub async fn revoke_client(&self, id: &str) -> Value {
        let path = format!("/oauth-clients/{id}/revoke");
        let answer = self.admin(Method::POST, &path, None, None).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "POST {path}: {:?}",
            answer.body
        );
        answer.body
    }
}

/// An admin-API answer read: status, `ETag`, JSON body.
async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let etag = response
        .headers()
        .get("etag")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = response.json().await.unwrap_or(Value::Null);
    Answer { status, etag, body }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of the control plane log ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}
