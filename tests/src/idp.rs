//! A real OpenID provider for the tests: `tests/idp/idp.mjs` (npm `oidc-provider`) run with the
//! machine's Node.js on an ephemeral port, killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::eventually::{eventually_ok, first_line_matching};
use crate::paths::workspace_root;

/// How the IdP is started.
#[derive(Debug, Clone, Default)]
pub struct IdpOptions {
    /// The initial access token registration requires; `None`: open registration.
    pub initial_access_token: Option<String>,
    /// A JWKS with private keys to sign with (the first key signs); `None`: the IdP generates
    /// an RSA key.
    pub signing_keys: Option<Value>,
    /// The `aud` of access tokens (an absolute URI); `None`: `https://api.portico.test`.
    pub audience: Option<String>,
}

/// A running IdP.
#[derive(Debug)]
pub struct Idp {
    child: Option<Child>,
    dir: TempDir,
    /// The issuer, `http://127.0.0.1:<port>`.
    pub issuer: String,
    http: reqwest::Client,
}

/// The IdP script. Panics with the command that installs its dependencies when they are
/// missing.
fn script() -> PathBuf {
    let dir = workspace_root().join("tests/idp");
    assert!(
        dir.join("node_modules/oidc-provider").is_dir(),
        "the test IdP's dependencies are not installed in {}: run `scripts/setup.sh` (it runs \
         `npm ci --prefix tests/idp`)",
        dir.display()
    );
    dir.join("idp.mjs")
}

impl Idp {
    /// Starts the IdP and waits until it serves its discovery document.
    pub async fn start(options: IdpOptions) -> Idp {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let node = std::env::var_os("PORTICO_NODE").unwrap_or_else(|| "node".into());
        let mut command = Command::new(node);
        command
            .arg(script())
            .arg("--port")
            .arg("0")
            .env_remove("IDP_INITIAL_ACCESS_TOKEN")
            .env_remove("IDP_JWKS_FILE");
        if let Some(token) = &options.initial_access_token {
            command.env("IDP_INITIAL_ACCESS_TOKEN", token);
        }
        if let Some(audience) = &options.audience {
            command.env("IDP_AUDIENCE", audience);
        }
        if let Some(keys) = &options.signing_keys {
            let path = dir.path().join("jwks.json");
            std::fs::write(&path, keys.to_string()).expect("write the signing keys");
            command.env("IDP_JWKS_FILE", path);
        }
        let log = std::fs::File::create(dir.path().join("idp.log")).expect("create the log");
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start node (install Node.js, or set PORTICO_NODE)");
        let stdout = child.stdout.take().expect("piped stdout");
        let receiver = first_line_matching(stdout, |line| {
            let event = serde_json::from_str::<Value>(line).ok()?;
            (event["event"] == "listening").then(|| event["issuer"].as_str().map(str::to_owned))?
        });
        let mut idp = Idp {
            child: Some(child),
            dir,
            issuer: String::new(),
            http: reqwest::Client::new(),
        };
        idp.issuer = match tokio::time::timeout(Duration::from_secs(20), receiver).await {
            Ok(Ok(issuer)) => issuer,
            Ok(Err(_)) => panic!("the IdP exited at start:\n{}", idp.log()),
            Err(_) => panic!("the IdP did not announce its port:\n{}", idp.log()),
        };
        let url = idp.url("/.well-known/openid-configuration");
        eventually_ok(
            "the IdP's discovery document",
            &url,
            Duration::from_secs(20),
        )
        .await;
        idp
    }

    /// A URL on the IdP.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// The token endpoint.
    pub fn token_endpoint(&self) -> String {
        self.url("/token")
    }

    /// A client_credentials token request with `client_secret_post`: the status and the JSON
    /// answer.
    pub async fn token(&self, client_id: &str, client_secret: &str) -> (u16, Value) {
        let response = self
            .http
            .post(self.token_endpoint())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("grant_type", "client_credentials")
                    .append_pair("client_id", client_id)
                    .append_pair("client_secret", client_secret)
                    .finish(),
            )
            .send()
            .await
            .expect("an answer from the token endpoint");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("idp.log")).unwrap_or_default()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of the IdP log ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}
