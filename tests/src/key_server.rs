//! A tiny OpenID provider stand-in that serves discovery and a JWKS whose keys a test can
//! change at any time (to rotate keys, publish bad ones, or fail).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use portico_core::testing::TestKey;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

#[derive(Debug)]
struct Shared {
    issuer: String,
    jwks: Value,
    status: StatusCode,
    jwks_requests: usize,
}

/// A running key server on 127.0.0.1.
#[derive(Debug)]
pub struct KeyServer {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<()>,
}

impl KeyServer {
    /// Starts a key server publishing `keys`; its issuer is its own URL.
    pub async fn start(keys: &[&TestKey]) -> KeyServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("bound");
        let shared = Arc::new(Mutex::new(Shared {
            issuer: format!("http://{addr}"),
            jwks: portico_core::testing::jwks(keys),
            status: StatusCode::OK,
            jwks_requests: 0,
        }));
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("serve the key server");
        });
        KeyServer { addr, shared, task }
    }

    /// The issuer (`iss`) this server stands for.
    pub fn issuer(&self) -> String {
        self.lock().issuer.clone()
    }

    /// Publishes `keys` from now on.
    pub fn set_keys(&self, keys: &[&TestKey]) {
        self.lock().jwks = portico_core::testing::jwks(keys);
    }

    /// Publishes this JWKS document from now on.
    pub fn set_document(&self, jwks: Value) {
        self.lock().jwks = jwks;
    }

    /// Answers the JWKS with this status (e.g. 503) from now on.
    pub fn set_status(&self, status: StatusCode) {
        self.lock().status = status;
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_requests(&self) -> usize {
        self.lock().jwks_requests
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().expect("the key server's state")
    }
}

impl Drop for KeyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn discovery(State(shared): State<Arc<Mutex<Shared>>>) -> axum::Json<Value> {
    let issuer = shared.lock().expect("state").issuer.clone();
    axum::Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks"),
        "token_endpoint": format!("{issuer}/token"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"]
    }))
}

async fn jwks(State(shared): State<Arc<Mutex<Shared>>>) -> Response {
    let mut shared = shared.lock().expect("state");
    shared.jwks_requests += 1;
    if shared.status != StatusCode::OK {
        return (shared.status, "unavailable").into_response();
    }
    (
        [("cache-control", "max-age=3600")],
        axum::Json(shared.jwks.clone()),
    )
        .into_response()
}
