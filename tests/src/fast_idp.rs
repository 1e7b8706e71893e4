//! A fast local IdP for tests and benchmarks: an in-process RFC 7591/7592 stand-in that
//! answers at once from memory, so that OAuth clients can be registered through the portal
//! without a real OpenID provider.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use portico_core::testing::TestKey;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// The initial access token the stand-in requires for registration (RFC 7591 §3).
pub const INITIAL_ACCESS_TOKEN: &str = "cp-scale-initial-access-token";

/// A fast local IdP: OpenID discovery and a JWKS for the issuer, RFC 7591 registration and
/// RFC 7592 deletion, each answered at once from memory.
#[derive(Debug)]
pub struct FastIdp {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

#[derive(Clone)]
struct IdpState {
    issuer: String,
    registered: Arc<AtomicU64>,
}

impl FastIdp {
    /// Starts it on an ephemeral port of 127.0.0.1.
    pub async fn start() -> FastIdp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("bound");
        let state = IdpState {
            issuer: format!("http://{addr}"),
            registered: Arc::new(AtomicU64::new(0)),
        };
        let app = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/register", post(register))
            .route("/register/{client_id}", delete(unregister))
            .with_state(state);
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("serve the IdP stand-in");
        });
        FastIdp { addr, task }
    }

    /// Its issuer URL (`http://127.0.0.1:<port>`), under which every endpoint lives.
    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The control plane's global DCR settings (`PUT /admin/v1/dcr`) that register clients
    /// here.
    pub fn dcr_settings(&self) -> Value {
        let issuer = self.issuer();
        json!({"enabled": true, "issuer": issuer,
               "registration_endpoint": format!("{issuer}/register"),
               "token_endpoint": format!("{issuer}/token"),
               "initial_access_token": INITIAL_ACCESS_TOKEN})
    }
}

impl Drop for FastIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// OpenID Connect Discovery 1.0 §3 (with RFC 8414's `registration_endpoint`).
async fn discovery(State(state): State<IdpState>) -> axum::Json<Value> {
    let issuer = &state.issuer;
    axum::Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks"),
        "token_endpoint": format!("{issuer}/token"),
        "registration_endpoint": format!("{issuer}/register"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"]
    }))
}

async fn jwks() -> ([(&'static str, &'static str); 1], axum::Json<Value>) {
    (
        [("cache-control", "max-age=3600")],
        axum::Json(portico_core::testing::jwks(&[&TestKey::rsa_a()])),
    )
}

/// RFC 7591 §3.1–3.2.1: the client metadata is registered as sent and echoed back with the
/// client's credentials: `client_id`, `client_secret`, `client_id_issued_at` and
/// `client_secret_expires_at` (0: never); RFC 7592 §3 adds the `registration_access_token` and
/// `registration_client_uri` that manage it. 201 Created; a missing or wrong initial access
/// token is 401 (RFC 7591 §3).
async fn register(
    State(state): State<IdpState>,
    headers: HeaderMap,
    axum::Json(metadata): axum::Json<Value>,
) -> (StatusCode, axum::Json<Value>) {
    let expected = format!("Bearer {INITIAL_ACCESS_TOKEN}");
    if headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        != Some(&expected)
    {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_token"})),
        );
    }
    let Value::Object(mut client) = metadata else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_client_metadata"})),
        );
    };
    let n = state.registered.fetch_add(1, Ordering::SeqCst);
    // Shaped like the random identifiers real IdPs issue (a UUID; secrets of 43 characters).
    let client_id = format!(
        "{n:08x}-5ca1-4e00-8000-{:012x}",
        n.wrapping_mul(0x9E37_79B9) & 0xffff_ffff_ffff
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    client.insert("client_id".to_owned(), json!(client_id));
    client.insert(
        "client_secret".to_owned(),
        json!(format!("secret-{n:036x}")),
    );
    client.insert("client_id_issued_at".to_owned(), json!(now));
    client.insert("client_secret_expires_at".to_owned(), json!(0));
    client.insert(
        "registration_access_token".to_owned(),
        json!(format!("rat-{n:039x}")),
    );
    client.insert(
        "registration_client_uri".to_owned(),
        json!(format!("{}/register/{client_id}", state.issuer)),
    );
    (StatusCode::CREATED, axum::Json(Value::Object(client)))
}

/// RFC 7592 §2.3: 204 No Content once the client is deleted.
async fn unregister(UrlPath(_client_id): UrlPath<String>) -> StatusCode {
    StatusCode::NO_CONTENT
}
