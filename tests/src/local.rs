//! Fakes served in-process: an axum app on an ephemeral loopback port.

use std::net::SocketAddr;

/// Serves `app` on `127.0.0.1` at a port the system picks, on a task of its own for as long as
/// the runtime lives; where it listens.
pub async fn serve_local(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}
