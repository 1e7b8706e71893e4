//! A control plane served over real HTTP on 127.0.0.1:0 with a temporary data directory, and a
//! small client for it.

use std::time::Duration;

use portico_control_plane::Server;
use portico_control_plane::config::{AdminKeyConfig, Config};
use portico_control_plane::secret::Secret;
use portico_control_plane::service::AppState;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The `ops` admin key.
pub(crate) const OPS_KEY: &str = "ops-key-0123456789abcdef";
/// The data-plane token of test servers.
pub(crate) const DATA_PLANE_TOKEN: &str = "dp-token-0123456789abcdef";
/// The `ci` admin key.
pub(crate) const CI_KEY: &str = "ci-key-0123456789abcdef";

/// A running server and its data directory.
pub(crate) struct TestServer {
    pub(crate) base: String,
    pub(crate) state: AppState,
    client: reqwest::Client,
    key: &'static str,
    shutdown: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

/// One answer: status, headers of interest and JSON body (`Null` when empty).
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) etag: Option<String>,
    pub(crate) location: Option<String>,
    pub(crate) body: Value,
    pub(crate) text: String,
}

impl Reply {
    /// Asserts the status and the error code, returns the body.
    #[track_caller]
    pub(crate) fn error(&self, status: u16, code: &str) -> &Value {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.body["error"], code, "{}", self.text);
        assert!(self.body["message"].as_str().is_some_and(|m| !m.is_empty()));
        &self.body
    }

    /// Asserts a 400 `invalid_request` naming `field`.
    #[track_caller]
    pub(crate) fn invalid(&self, field: &str) {
        self.error(400, "invalid_request");
        assert_eq!(self.body["field"], field, "{}", self.text);
    }

    /// Asserts the status, returns the body.
    #[track_caller]
    pub(crate) fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "{}", self.text);
        &self.body
    }

    /// The ETag, which must be present.
    #[track_caller]
    pub(crate) fn etag(&self) -> &str {
        self.etag.as_deref().expect("an ETag header")
    }
}

impl TestServer {
    /// Starts a server with the admin keys `ops` and `ci`.
    pub(crate) async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// [`TestServer::start`], with the configuration changed by `change` first.
    pub(crate) async fn start_with(change: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_data_dir(
            dir.path().join("data"),
            vec![
                AdminKeyConfig {
                    id: "ops".to_owned(),
                    key: Secret::new(OPS_KEY),
                },
                AdminKeyConfig {
                    id: "ci".to_owned(),
                    key: Secret::new(CI_KEY),
                },
            ],
        );
        config.body_limit = 64 * 1024;
        config.data_plane_tokens = vec![AdminKeyConfig {
            id: "envoy".to_owned(),
            key: Secret::new(DATA_PLANE_TOKEN),
        }];
        change(&mut config);
        let server = Server::bind(&config).await.unwrap();
        let base = format!("http://{}", server.local_addr());
        let state = server.state().clone();
        let (shutdown, stop) = oneshot::channel::<()>();
        let serving = tokio::spawn(async move {
            server
                .serve(async move {
                    stop.await.ok();
                })
                .await
                .unwrap();
        });
        TestServer {
            base,
            state,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            key: OPS_KEY,
            shutdown: Some(shutdown),
            serving: Some(serving),
            _dir: Some(dir),
        }
    }

    /// The same server, seen through another admin key.
    pub(crate) fn with_key(&self, key: &'static str) -> TestServer {
        TestServer {
            base: self.base.clone(),
            state: self.state.clone(),
            client: self.client.clone(),
            key,
            shutdown: None,
            serving: None,
            _dir: None,
        }
    }

    /// Sends a request with the admin key.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> Reply {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.key)
            .timeout(Duration::from_secs(30));
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(tag) = if_match {
            request = request.header("If-Match", tag);
        }
        reply(request.send().await.unwrap()).await
    }

    /// Sends a raw request (no admin key unless given in `headers`).
    pub(crate) async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        reply(self.send_raw(method, path, headers, body).await).await
    }

    async fn send_raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    /// Sends a request whose answer need not be JSON: status, headers, body text.
    pub(crate) async fn text(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let response = self.send_raw(method, path, headers, body).await;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.text().await.unwrap())
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body), None).await
    }

    pub(crate) async fn action(&self, path: &str, if_match: Option<&str>) -> Reply {
        self.call(Method::POST, path, None, if_match).await
    }

    pub(crate) async fn put(&self, path: &str, body: Value, if_match: Option<&str>) -> Reply {
        self.call(Method::PUT, path, Some(body), if_match).await
    }

    pub(crate) async fn delete(&self, path: &str, if_match: Option<&str>) -> Reply {
        self.call(Method::DELETE, path, None, if_match).await
    }

    /// Reads every page of a list, following `next_cursor`, with `limit` items per page.
    pub(crate) async fn list_all(&self, path: &str, limit: usize) -> Vec<Value> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..1000 {
            let url = match &cursor {
                Some(cursor) => format!("{path}{separator}limit={limit}&cursor={cursor}"),
                None => format!("{path}{separator}limit={limit}"),
            };
            let page = self.get(&url).await;
            let body = page.ok(200);
            let batch = body["items"].as_array().unwrap();
            assert!(batch.len() <= limit);
            items.extend(batch.iter().cloned());
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return items,
            }
        }
        panic!("the list never ended");
    }

    /// Stops the server gracefully.
    pub(crate) async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            shutdown.send(()).ok();
        }
        if let Some(serving) = self.serving.take() {
            tokio::time::timeout(Duration::from_secs(10), serving)
                .await
                .unwrap()
                .unwrap();
        }
    }

    // === fixtures ===

    pub(crate) async fn issuer(&self, id: &str) -> Reply {
        let reply = self
            .post(
                "/admin/v1/issuers",
                json!({"id": id, "issuer": format!("https://{id}.idp.example.com")}),
            )
            .await;
        reply.ok(201);
        reply
    }

    pub(crate) async fn api(&self, id: &str, issuer: &str) -> Reply {
        let reply = self
            .post(
                "/admin/v1/apis",
                json!({"id": id, "name": format!("API {id}"), "listen_path": format!("/{id}"), "issuers": [issuer], "audiences": ["https://api.example.com"]}),
            )
            .await;
        reply.ok(201);
        reply
    }

    pub(crate) async fn policy(&self, id: &str, api: &str) -> Reply {
        let reply = self
            .post(
                "/admin/v1/policies",
                json!({"id": id, "name": format!("Policy {id}"), "access_rights": [{"api": api}]}),
            )
            .await;
        reply.ok(201);
        reply
    }

    pub(crate) async fn entry(&self, id: &str, policy: &str) -> Reply {
        let reply = self
            .post(
                "/admin/v1/catalogue",
                json!({"id": id, "name": format!("Entry {id}"), "policy": policy}),
            )
            .await;
        reply.ok(201);
        reply
    }

    pub(crate) async fn developer(&self, email: &str) -> Reply {
        let reply = self
            .post(
                "/admin/v1/developers",
                json!({"email": email, "name": "Ada Lovelace", "password": "correct horse battery"}),
            )
            .await;
        reply.ok(201);
        reply
    }
}

async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let etag = header("etag");
    let location = header("location");
    let content_type = header("content-type");
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        assert_eq!(
            content_type.as_deref(),
            Some("application/json"),
            "every answer is JSON: {text}"
        );
        serde_json::from_str(&text).unwrap()
    };
    Reply {
        status,
        etag,
        location,
        body,
        text,
    }
}
