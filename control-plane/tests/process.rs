//! The `portico` binary as a process: acknowledged writes survive SIGKILL, a second instance
//! on the same data directory fails clearly, bad configuration exits 64 with one line, no
//! configuration starts with safe local defaults, and SIGTERM lets in-flight requests finish.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail the test by panicking"
)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const KEY: &str = "ops-key-0123456789abcdef";
const SECRET_KEY: &str = "5f2b9c0d1e3a4b6c7d8e9f00112233445566778899aabbccddeeff0011223344";
const TOKEN: &str = "initial-access-token-77e1";
const PATIENCE: Duration = Duration::from_secs(30);

/// A running `portico` process.
struct Portico {
    child: Child,
    base: String,
    lines: Vec<String>,
    stdout: mpsc::UnboundedReceiver<String>,
    stderr: JoinHandle<String>,
    client: reqwest::Client,
}

fn command(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portico"));
    command
        .env_clear()
        .env("PORTICO_DATA_DIR", data_dir)
        .env("PORTICO_LISTEN", "127.0.0.1:0")
        .env("PORTICO_ADMIN_KEYS", format!("ops:{KEY}"))
        .env("PORTICO_SECRET_KEY", SECRET_KEY);
    command
}

impl Portico {
    /// Starts the process and waits (bounded) until `/readyz` answers.
    async fn start(mut command: Command) -> Portico {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            stderr.read_to_string(&mut text).await.ok();
            text
        });
        let mut portico = Portico {
            child,
            base: String::new(),
            lines: Vec::new(),
            stdout: receiver,
            stderr,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
        };
        let listening = portico.line_containing("listening on http://").await;
        let addr = listening
            .rsplit("http://")
            .next()
            .unwrap()
            .trim()
            .to_owned();
        portico.base = format!("http://{addr}");
        portico.wait_ready().await;
        portico
    }

    /// The first stdout line containing `text`, waiting for it (bounded).
    async fn line_containing(&mut self, text: &str) -> String {
        if let Some(line) = self.lines.iter().find(|line| line.contains(text)) {
            return line.clone();
        }
        let deadline = portico_control_plane::service::monotonic_now() + PATIENCE;
        loop {
            let line = tokio::time::timeout_at(deadline, self.stdout.recv())
                .await
                .unwrap_or_else(|_| panic!("no line with {text:?} in {:?}", self.lines))
                .unwrap_or_else(|| panic!("stdout closed without {text:?}: {:?}", self.lines));
            self.lines.push(line.clone());
            if line.contains(text) {
                return line;
            }
        }
    }

    async fn wait_ready(&self) {
        let deadline = portico_control_plane::service::monotonic_now() + PATIENCE;
        loop {
            let ready = self
                .client
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if ready {
                return;
            }
            assert!(
                portico_control_plane::service::monotonic_now() < deadline,
                "portico never became ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key)
            .timeout(PATIENCE);
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(tag) = if_match {
            request = request.header("If-Match", tag);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, body)
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, KEY, None, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value, expected: u16) -> Value {
        let (status, answer) = self.call(method, path, KEY, Some(body), Some("*")).await;
        assert_eq!(status, expected, "{path}: {answer}");
        answer
    }

    /// An issuer, API, policy (`gold`, named `gold 0`) and catalogue entry `orders` on the IdP
    /// at `idp`, DCR enabled there (`/reg`), and one developer signed up; returns the session
    /// cookie and the developer. One password hash: the session outlives restarts.
    async fn seed_dcr_and_sign_up(&self, idp: &str) -> (String, Value) {
        use reqwest::Method;
        for (path, body) in [
            ("/admin/v1/issuers", json!({"id": "idp", "issuer": idp})),
            (
                "/admin/v1/apis",
                json!({"id": "orders", "name": "Orders", "listen_path": "/orders", "issuers": ["idp"], "accept_any_audience": true}),
            ),
            (
                "/admin/v1/policies",
                json!({"id": "gold", "name": "gold 0", "access_rights": [{"api": "orders"}]}),
            ),
            (
                "/admin/v1/catalogue",
                json!({"id": "orders", "name": "Orders", "policy": "gold"}),
            ),
        ] {
            self.send(Method::POST, path, body, 201).await;
        }
        let dcr = json!({"enabled": true, "issuer": idp, "registration_endpoint": format!("{idp}/reg"),
                         "token_endpoint": format!("{idp}/token"), "initial_access_token": TOKEN});
        self.send(Method::PUT, "/admin/v1/dcr", dcr, 200).await;
        let signed_up = self
            .client
            .post(format!("{}/portal/api/v1/signup", self.base))
            .json(&json!({"email": "ada@example.com", "name": "Ada", "password": "correct horse battery"}))
            .send()
            .await
            .unwrap();
        assert_eq!(signed_up.status(), 201);
        let cookie = signed_up.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        (cookie, signed_up.json().await.unwrap())
    }

    /// Sends a signal to the process.
    async fn signal(&self, name: &str) {
        let pid = self.child.id().unwrap().to_string();
        let status = Command::new("kill")
            .args([name, &pid])
            .status()
            .await
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit; returns its exit code and stderr.
    async fn exit(mut self) -> (Option<i32>, String) {
        let status = tokio::time::timeout(PATIENCE, self.child.wait())
            .await
            .expect("portico did not exit in time")
            .unwrap();
        let stderr = self.stderr.await.unwrap();
        (status.code(), stderr)
    }

    /// SIGKILL: no chance to flush anything.
    async fn kill(mut self) -> String {
        self.child.kill().await.unwrap();
        self.stderr.await.unwrap()
    }
}

/// Runs `portico` to completion (it is expected to fail at start-up).
async fn run_to_exit(mut command: Command) -> (Option<i32>, String, String) {
    let output = tokio::time::timeout(
        PATIENCE,
        command.stdin(Stdio::null()).kill_on_drop(true).output(),
    )
    .await
    .expect("portico did not exit in time")
    .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut first = command(&data);
    first.env("PORTICO_LOG_FORMAT", "json");
    let portico = Portico::start(first).await;
    use reqwest::Method;

    portico
        .send(
            Method::POST,
            "/admin/v1/issuers",
            json!({"id": "idp", "issuer": "https://idp.example.com"}),
            201,
        )
        .await;
    portico
        .send(
            Method::POST,
            "/admin/v1/apis",
            json!({"id": "orders", "name": "Orders", "listen_path": "/orders", "issuers": ["idp"], "accept_any_audience": true}),
            201,
        )
        .await;
    portico
        .send(
            Method::POST,
            "/admin/v1/policies",
            json!({"id": "gold", "name": "Gold", "access_rights": [{"api": "orders"}]}),
            201,
        )
        .await;
    portico
        .send(
            Method::POST,
            "/admin/v1/catalogue",
            json!({"id": "orders", "name": "Orders", "policy": "gold"}),
            201,
        )
        .await;
    portico
        .send(Method::PUT, "/admin/v1/dcr", json!({"enabled": true, "issuer": "https://idp.example.com", "registration_endpoint": "https://idp.example.com/reg", "token_endpoint": "https://idp.example.com/token", "initial_access_token": TOKEN}), 200)
        .await;
    let developer = portico
        .send(
            Method::POST,
            "/admin/v1/developers",
            json!({"email": "ada@example.com", "name": "Ada", "password": "correct horse battery"}),
            201,
        )
        .await;
    let mut written = vec![];
    for i in 0..40 {
        let id = format!("bulk-{i:02}");
        let body = portico
            .send(
                Method::POST,
                "/admin/v1/issuers",
                json!({"id": id, "issuer": format!("https://{id}.example.com")}),
                201,
            )
            .await;
        written.push(body);
    }
    let last = portico
        .send(
            Method::PUT,
            "/admin/v1/issuers/bulk-39",
            json!({"issuer": "https://last.example.com"}),
            200,
        )
        .await;
    let revision_before = portico.get("/readyz").await["revision"].clone();
    assert_eq!(revision_before, 47);

    let stderr = portico.kill().await;
    for line in stderr.lines().filter(|line| !line.trim().is_empty()) {
        let entry: Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        assert!(entry["level"].is_string(), "{line}");
    }
    assert!(stderr.contains("committed change"));
    for secret in [KEY, SECRET_KEY, TOKEN, "correct horse battery"] {
        assert!(!stderr.contains(secret), "a secret reached the log");
    }

    let portico = Portico::start(command(&data)).await;
    assert_eq!(portico.get("/readyz").await["revision"], revision_before);
    assert_eq!(
        portico.get("/admin/v1/apis/orders").await["issuers"],
        json!(["idp"])
    );
    assert_eq!(
        portico.get("/admin/v1/policies/gold").await["access_rights"][0]["api"],
        "orders"
    );
    assert_eq!(
        portico.get("/admin/v1/catalogue/orders").await["policy"],
        "gold"
    );
    assert_eq!(
        portico.get("/admin/v1/dcr").await["initial_access_token_set"],
        true
    );
    let id = developer["id"].as_str().unwrap();
    assert_eq!(
        portico.get(&format!("/admin/v1/developers/{id}")).await,
        developer
    );
    // An issuer reads back as written, plus the state of its keys.
    let without_keys = |mut issuer: serde_json::Value| {
        issuer.as_object_mut().unwrap().remove("keys");
        issuer
    };
    for body in &written[..39] {
        let id = body["id"].as_str().unwrap();
        let read = portico.get(&format!("/admin/v1/issuers/{id}")).await;
        assert_eq!(&without_keys(read), body);
    }
    assert_eq!(
        without_keys(portico.get("/admin/v1/issuers/bulk-39").await),
        last
    );
    let audit = portico.get("/admin/v1/audit?limit=1").await;
    assert_eq!(audit["items"][0]["revision"], revision_before);
    portico.signal("-TERM").await;
    let (code, _) = portico.exit().await;
    assert_eq!(code, Some(0));

    let mut wrong_key = command(&data);
    wrong_key.env("PORTICO_SECRET_KEY", "ab".repeat(32));
    let (code, _, stderr) = run_to_exit(wrong_key).await;
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("the secret key does not match"), "{stderr}");
}

#[tokio::test]
async fn a_second_instance_on_the_same_data_directory_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = Portico::start(command(&data)).await;
    let (code, _, stderr) = run_to_exit(command(&data)).await;
    assert!(matches!(code, Some(code) if code != 0), "{code:?} {stderr}");
    assert!(
        stderr.contains("in use by another portico process"),
        "{stderr}"
    );
    assert!(stderr.contains(data.to_str().unwrap()), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    first.get("/admin/v1/apis").await;
    first.signal("-TERM").await;
    assert_eq!(first.exit().await.0, Some(0));
}

/// Arguments, environment, and the setting that the error must name.
type BadConfig<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[tokio::test]
async fn bad_configuration_exits_64_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad_file = dir.path().join("portico.toml");
    std::fs::write(&bad_file, "listen = \"127.0.0.1:0\"\nadmin_key = \"x\"\n").unwrap();
    let bad_file = bad_file.display().to_string();
    let cases: [BadConfig<'_>; 6] = [
        (&[], &[("PORTICO_LISTEN", "nowhere")], "PORTICO_LISTEN"),
        (&["--bogus"], &[], "--bogus"),
        (
            &[],
            &[("PORTICO_ADMIN_KEYS", "ops:short")],
            "PORTICO_ADMIN_KEYS",
        ),
        (&[], &[("PORTICO_SECRET_KEY", "abc")], "PORTICO_SECRET_KEY"),
        (&["--config", &bad_file], &[], "admin_key"),
        (
            &[],
            &[("PORTICO_STORE", "mysql://u:pw-never-shown@db/x")],
            "PORTICO_STORE",
        ),
    ];
    for (args, env, named) in cases {
        let mut command = Command::new(env!("CARGO_BIN_EXE_portico"));
        command
            .env_clear()
            .env("PORTICO_DATA_DIR", dir.path().join("data"))
            .args(args);
        for (key, value) in env {
            command.env(key, value);
        }
        let (code, _, stderr) = run_to_exit(command).await;
        assert_eq!(code, Some(64), "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("portico: bad configuration: "),
            "{stderr}"
        );
        assert!(stderr.contains(named), "{stderr}");
        assert!(!stderr.contains("pw-never-shown"), "{stderr}");
    }
    assert!(!dir.path().join("data").exists());
}

#[tokio::test]
async fn no_configuration_starts_with_local_defaults_and_says_how_to_authenticate() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_portico"));
        command
            .env_clear()
            .current_dir(dir.path())
            .args(["--listen", "127.0.0.1:0"]);
        command
    };
    let mut portico = Portico::start(start()).await;
    let data = dir.path().join("data");
    let data_line = portico.line_containing("data directory:").await;
    assert!(data_line.contains(data.to_str().unwrap()), "{data_line}");
    let secret_line = portico.line_containing("secret-encryption key:").await;
    assert!(secret_line.contains("generated"), "{secret_line}");
    portico.line_containing("admin key `local` generated").await;
    let curl = portico.line_containing("authenticate with: curl").await;
    let key = curl
        .split("Bearer ")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap()
        .to_owned();
    assert_eq!(key.len(), 64);
    let (status, _) = portico
        .call(reqwest::Method::GET, "/admin/v1/apis", &key, None, None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = portico
        .call(
            reqwest::Method::GET,
            "/admin/v1/apis",
            "not-the-key-at-all",
            None,
            None,
        )
        .await;
    assert_eq!(status, 403);
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data.join("secret.key")), 0o600);
    assert_eq!(mode(&data), 0o700);
    portico.signal("-TERM").await;
    let (code, stderr) = portico.exit().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains(&key), "the generated key reached the log");

    let mut portico = Portico::start(start()).await;
    let admin = portico
        .line_containing("admin key: the key `local` printed at first start")
        .await;
    assert!(!admin.contains(&key));
    assert!(
        portico
            .line_containing("secret-encryption key:")
            .await
            .contains("read from")
    );
    let (status, _) = portico
        .call(reqwest::Method::GET, "/admin/v1/apis", &key, None, None)
        .await;
    assert_eq!(status, 200);
    portico.signal("-INT").await;
    assert_eq!(portico.exit().await.0, Some(0));
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish() {
    let dir = tempfile::tempdir().unwrap();
    let portico = Portico::start(command(&dir.path().join("data"))).await;
    let addr = portico.base.trim_start_matches("http://").to_owned();
    let body = br#"{"id": "idp", "issuer": "https://idp.example.com"}"#;
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /admin/v1/issuers HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server asks for the body once the handler reads it: the request is in flight.
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tokio::time::timeout(PATIENCE, stream.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        interim.push(byte[0]);
    }
    assert!(String::from_utf8_lossy(&interim).starts_with("HTTP/1.1 100"));

    portico.signal("-TERM").await;
    let deadline = portico_control_plane::service::monotonic_now() + PATIENCE;
    while tokio::net::TcpStream::connect(&addr).await.is_ok() {
        assert!(
            portico_control_plane::service::monotonic_now() < deadline,
            "still accepting connections"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    let (code, stderr) = portico.exit().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
}

#[tokio::test]
async fn sigterm_exits_within_the_grace_period_whatever_clients_do() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = command(&dir.path().join("data"));
    command.env("PORTICO_SHUTDOWN_GRACE_SECONDS", "1");
    let portico = Portico::start(command).await;
    let addr = portico.base.trim_start_matches("http://").to_owned();
    // One client never finishes its request headers, another never sends its announced body.
    let mut headers_only = tokio::net::TcpStream::connect(&addr).await.unwrap();
    headers_only
        .write_all(format!("GET /admin/v1/apis HTTP/1.1\r\nHost: {addr}\r\n").as_bytes())
        .await
        .unwrap();
    let mut no_body = tokio::net::TcpStream::connect(&addr).await.unwrap();
    no_body
        .write_all(
            format!(
                "POST /admin/v1/issuers HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {KEY}\r\n\
                 Content-Type: application/json\r\nContent-Length: 1000\r\n\
                 Expect: 100-continue\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // The handler is waiting for the body before the signal: the server asks for it with
    // `100 Continue` once the handler reads (a connection still unread at the signal would be
    // closed at once, and the grace period never tested).
    let mut interim = [0_u8; 64];
    let read = tokio::time::timeout(PATIENCE, no_body.read(&mut interim))
        .await
        .expect("an interim answer")
        .unwrap();
    assert!(
        interim[..read].starts_with(b"HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&interim[..read])
    );

    portico.signal("-TERM").await;
    // The grace period is 1 s: well within this bound, and the default 10 s is not.
    let (code, stderr) = tokio::time::timeout(Duration::from_secs(8), portico.exit())
        .await
        .expect("portico exits once the grace period is over, clients or not");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("grace period over"), "{stderr}");
    drop((headers_only, no_body));
}

/// An IdP for the durability test: registers clients `c1`, `c2`, … (one per request, so a
/// registration cut short by a kill leaves a number unused, never a duplicate).
struct CountingIdp(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl wiremock::Respond for CountingIdp {
    fn respond(&self, _request: &wiremock::Request) -> wiremock::ResponseTemplate {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        wiremock::ResponseTemplate::new(201).set_body_json(json!({
            "client_id": format!("c{n}"), "client_secret": format!("secret-{n}"),
            "client_secret_expires_at": 0, "client_name": "App",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_post",
            "response_types": [], "redirect_uris": [],
        }))
    }
}

/// What a writer was told succeeded.
#[derive(Debug)]
enum Acknowledged {
    /// An issuer created by the operator.
    Issuer(String),
    /// The policy `gold` renamed `gold <n>` by the operator (n grows).
    Rename(u64),
    /// An OAuth client registered by the developer through the portal (its Portico id).
    Client(String),
}

/// Writes until the connection fails (the process is killed), and returns what was
/// acknowledged; `first` is told of the first acknowledgement. `kind`: 0 creates issuers,
/// 1 renames the policy, 2 registers clients.
async fn write_until_killed(
    base: String,
    cookie: String,
    kind: u8,
    round: u32,
    first: tokio::sync::oneshot::Sender<()>,
) -> Vec<Acknowledged> {
    let mut first = Some(first);
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(PATIENCE)
        .build()
        .unwrap();
    let mut done = Vec::new();
    for n in 0_u64.. {
        let request = match kind {
            0 => client
                .post(format!("{base}/admin/v1/issuers"))
                .bearer_auth(KEY)
                .json(&json!({"id": format!("r{round}-{n}"), "issuer": format!("https://r{round}-{n}.example.com")})),
            1 => client
                .put(format!("{base}/admin/v1/policies/gold"))
                .bearer_auth(KEY)
                .header("If-Match", "*")
                .json(&json!({"name": format!("gold {}", u64::from(round) * 1_000_000 + n), "access_rights": [{"api": "orders"}]})),
            _ => client
                .post(format!("{base}/portal/api/v1/oauth-clients"))
                .header("Cookie", &cookie)
                .header("Idempotency-Key", format!("r{round}-{n}"))
                .json(&json!({"catalogue_entries": ["orders"], "client_name": "App"})),
        };
        let Ok(response) = request.send().await else {
            return done;
        };
        let status = response.status().as_u16();
        let Ok(body) = response.json::<Value>().await else {
            return done;
        };
        match (kind, status) {
            (0, 201) => done.push(Acknowledged::Issuer(
                body["id"].as_str().unwrap().to_owned(),
            )),
            (1, 200) => done.push(Acknowledged::Rename(u64::from(round) * 1_000_000 + n)),
            (2, 201) => done.push(Acknowledged::Client(
                body["client"]["id"].as_str().unwrap().to_owned(),
            )),
            _ => panic!("writer {kind}: unexpected {status}: {body}"),
        }
        if let Some(first) = first.take() {
            let _ = first.send(());
        }
    }
    done
}

/// Every item of a paged admin list, following `next_cursor`.
async fn every_item(portico: &Portico, path: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor = None::<String>;
    loop {
        let page = match &cursor {
            None => portico.get(&format!("{path}?limit=500")).await,
            Some(cursor) => {
                portico
                    .get(&format!("{path}?limit=500&cursor={cursor}"))
                    .await
            }
        };
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}

/// Every entry of the audit log, oldest first (paged through).
async fn whole_audit_log(portico: &Portico) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut path = "/admin/v1/audit?limit=500".to_owned();
    loop {
        let page = portico.get(&path).await;
        entries.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/admin/v1/audit?limit=500&cursor={cursor}"),
            None => break,
        }
    }
    entries.reverse();
    entries
}

#[tokio::test]
async fn every_acknowledged_write_survives_a_hundred_sigkills_at_random_moments() {
    const ROUNDS: u32 = 100;
    let idp = wiremock::MockServer::start().await;
    let created_at_idp = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(CountingIdp(std::sync::Arc::clone(&created_at_idp)))
        .mount(&idp)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let start = || {
        let mut command = command(&data);
        command
            .env("PORTICO_PORTAL_MAX_CLIENTS", "1000")
            .env("PORTICO_PORTAL_REGISTRATIONS_PER_HOUR", "1000");
        Portico::start(command)
    };
    let mut portico = start().await;
    let (cookie, _) = portico.seed_dcr_and_sign_up(&idp.uri()).await;

    let mut issuers = Vec::new();
    let mut clients = Vec::new();
    let mut renamed = 0;
    for round in 0..ROUNDS {
        let (writers, first_acknowledgements): (Vec<_>, Vec<_>) = (0..3)
            .map(|kind| {
                let (first, acknowledged) = tokio::sync::oneshot::channel();
                let writer = tokio::spawn(write_until_killed(
                    portico.base.clone(),
                    cookie.clone(),
                    kind,
                    round,
                    first,
                ));
                (writer, acknowledged)
            })
            .unzip();
        // Every writer is under way (one write acknowledged each, however loaded the machine),
        // then a moment spread over 0–299 ms by a fixed sequence, so that kills land before,
        // during and after commits and a failure can be replayed.
        for (kind, acknowledged) in first_acknowledgements.into_iter().enumerate() {
            tokio::time::timeout(PATIENCE, acknowledged)
                .await
                .unwrap_or_else(|_| panic!("round {round}: writer {kind} made no write"))
                .unwrap_or_else(|_| panic!("round {round}: writer {kind} stopped before a write"));
        }
        let moment = u64::from(round) * 7919 % 300;
        tokio::time::sleep(Duration::from_millis(moment)).await;
        portico.kill().await;
        let mut acknowledged = Vec::new();
        for writer in writers {
            acknowledged.extend(writer.await.unwrap());
        }
        portico = start().await;
        // Every write acknowledged before the kill is there, with its audit entry.
        for write in acknowledged {
            match write {
                Acknowledged::Issuer(id) => {
                    portico.get(&format!("/admin/v1/issuers/{id}")).await;
                    let audit = portico
                        .get(&format!(
                            "/admin/v1/audit?resource_type=issuer&resource_id={id}"
                        ))
                        .await;
                    assert_eq!(audit["items"][0]["action"], "create", "round {round}: {id}");
                    issuers.push(id);
                }
                Acknowledged::Rename(n) => renamed = renamed.max(n),
                Acknowledged::Client(id) => {
                    portico.get(&format!("/admin/v1/oauth-clients/{id}")).await;
                    let audit = portico
                        .get(&format!(
                            "/admin/v1/audit?resource_type=oauth_client&resource_id={id}"
                        ))
                        .await;
                    assert_eq!(audit["items"][0]["action"], "create", "round {round}: {id}");
                    clients.push(id);
                }
            }
        }
        // A rename may have landed after its last acknowledgement, never before.
        let name = portico.get("/admin/v1/policies/gold").await["name"].clone();
        let stored: u64 = name.as_str().unwrap()["gold ".len()..].parse().unwrap();
        assert!(
            stored >= renamed,
            "round {round}: {name} lost rename {renamed}"
        );
    }
    // No half-written record: every record reads whole, and every revision has exactly one
    // audit entry, in order.
    let readiness = portico.get("/readyz").await;
    let log = whole_audit_log(&portico).await;
    let revisions: Vec<u64> = log
        .iter()
        .map(|entry| entry["revision"].as_u64().unwrap())
        .collect();
    assert_eq!(
        revisions,
        (1..=readiness["revision"].as_u64().unwrap()).collect::<Vec<_>>()
    );
    for id in issuers.iter().chain(&clients) {
        let kind = if id.starts_with("cli_") {
            "oauth-clients"
        } else {
            "issuers"
        };
        portico.get(&format!("/admin/v1/{kind}/{id}")).await;
    }
    for list in [
        "issuers",
        "apis",
        "policies",
        "catalogue",
        "developers",
        "oauth-clients",
    ] {
        portico.get(&format!("/admin/v1/{list}?limit=500")).await;
    }
    // No client at the IdP that the operators cannot see: each one the IdP created is recorded,
    // or its registration is listed as interrupted (a kill between the IdP's answer and the
    // commit).
    let recorded = every_item(&portico, "/admin/v1/oauth-clients").await.len();
    let interrupted = every_item(&portico, "/admin/v1/interrupted-registrations").await;
    let created = created_at_idp.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        created <= recorded + interrupted.len(),
        "the IdP created {created} clients; {recorded} are recorded and {} interrupted",
        interrupted.len()
    );
    assert!(
        interrupted
            .iter()
            .all(|entry| entry["reason"] == "process_stopped"),
        "{interrupted:?}"
    );
}

#[tokio::test]
async fn a_client_too_slow_with_its_headers_or_sending_too_many_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = command(&dir.path().join("data"));
    command.env("PORTICO_HEADER_READ_TIMEOUT_SECONDS", "1");
    let portico = Portico::start(command).await;
    let addr = portico.base.trim_start_matches("http://").to_owned();
    // A slow-loris client: a request line and one header, then nothing.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(format!("GET /admin/v1/apis HTTP/1.1\r\nHost: {addr}\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, slow.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    // Headers too large to hold are refused, not buffered.
    let mut large = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let huge = "a".repeat(512 * 1024);
    large
        .write_all(
            format!("GET /admin/v1/apis HTTP/1.1\r\nHost: {addr}\r\nX-Huge: {huge}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .ok();
    let mut refusal = Vec::new();
    tokio::time::timeout(PATIENCE, large.read_to_end(&mut refusal))
        .await
        .expect("the server answers and closes")
        .ok();
    let refusal = String::from_utf8_lossy(&refusal);
    assert!(refusal.starts_with("HTTP/1.1 431"), "{refusal}");
    // A client that sends its headers in time is served.
    let (status, _) = portico
        .call(reqwest::Method::GET, "/admin/v1/apis", KEY, None, None)
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_registration_cut_short_by_a_kill_is_shown_to_the_operator_at_the_next_start() {
    // The IdP holds the registration (it may have created the client) until the kill.
    let idp = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(
            wiremock::ResponseTemplate::new(201)
                .set_body_json(json!({"client_id": "held", "client_secret": "s"}))
                .set_delay(Duration::from_secs(600)),
        )
        .mount(&idp)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let portico = Portico::start(command(&data)).await;
    let (cookie, developer) = portico.seed_dcr_and_sign_up(&idp.uri()).await;
    use reqwest::Method;
    let registering = tokio::spawn(
        portico
            .client
            .post(format!("{}/portal/api/v1/oauth-clients", portico.base))
            .header("Cookie", cookie)
            .header("Idempotency-Key", "k1")
            .json(&json!({"catalogue_entries": ["orders"], "client_name": "Held app"}))
            .send(),
    );
    let deadline = portico_control_plane::service::monotonic_now() + PATIENCE;
    while !idp
        .received_requests()
        .await
        .unwrap()
        .iter()
        .any(|request| request.method.as_str() == "POST")
    {
        assert!(
            portico_control_plane::service::monotonic_now() < deadline,
            "the IdP was never called"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    portico.kill().await;
    assert!(registering.await.unwrap().is_err(), "the answer was lost");

    let mut portico = Portico::start(command(&data)).await;
    let warning = portico
        .line_containing("interrupted before their outcome")
        .await;
    assert!(warning.contains("1 client registration"), "{warning}");
    let listed = portico.get("/admin/v1/interrupted-registrations").await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed}");
    let entry = &items[0];
    assert_eq!(entry["reason"], "process_stopped");
    assert_eq!(entry["operation"], "register");
    assert_eq!(entry["client_name"], "Held app");
    assert_eq!(entry["developer_id"], developer["id"]);
    assert_eq!(entry["catalogue_entries"], json!(["orders"]));
    assert_eq!(entry["registration_endpoint"], format!("{}/reg", idp.uri()));
    let metrics = portico
        .client
        .get(format!("{}/metrics", portico.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("portico_interrupted_registrations 1"),
        "{metrics}"
    );
    // The operator checked the IdP, deleted the client there, and acknowledges.
    let id = entry["id"].as_str().unwrap();
    let (status, _) = portico
        .call(
            Method::DELETE,
            &format!("/admin/v1/interrupted-registrations/{id}"),
            KEY,
            None,
            Some("*"),
        )
        .await;
    assert_eq!(status, 204);
    let listed = portico.get("/admin/v1/interrupted-registrations").await;
    assert_eq!(listed["items"], json!([]));
    let audit = portico
        .get(&format!(
            "/admin/v1/audit?resource_type=interrupted_registration&resource_id={id}"
        ))
        .await;
    assert_eq!(audit["items"][0]["action"], "delete", "{audit}");
    assert_eq!(audit["items"][0]["before"]["client_name"], "Held app");
}
