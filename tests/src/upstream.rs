//! An upstream that answers every request with a JSON echo of what it received, so tests can
//! see exactly which headers the filter forwarded.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Json;
use axum::extract::Request;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the upstream received.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Echoed {
    /// The method.
    pub method: String,
    /// The path and query.
    pub path: String,
    /// Header names (lower-case) and values; repeated headers are joined with `, `.
    pub headers: BTreeMap<String, String>,
}

/// A running echo upstream on 127.0.0.1.
#[derive(Debug)]
pub struct EchoUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl EchoUpstream {
    /// Starts an echo upstream on an ephemeral port of 127.0.0.1.
    pub async fn start() -> EchoUpstream {
        EchoUpstream::start_on("127.0.0.1:0".parse().expect("valid address")).await
    }

    /// Starts an echo upstream on `addr`.
    pub async fn start_on(addr: SocketAddr) -> EchoUpstream {
        let listener = TcpListener::bind(addr)
            .await
            .expect("bind the echo upstream");
        let addr = listener.local_addr().expect("bound address");
        let app = axum::Router::new().fallback(echo);
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("serve the echo upstream");
        });
        EchoUpstream { addr, task }
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(request: Request) -> Json<Echoed> {
    let mut headers = BTreeMap::new();
    for (name, value) in request.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|joined: &mut String| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert(value);
    }
    Json(Echoed {
        method: request.method().to_string(),
        path: request
            .uri()
            .path_and_query()
            .map(ToString::to_string)
            .unwrap_or_default(),
        headers,
    })
}
