//! The demo upstream: answers every request with a JSON echo of its method, path and headers.
//!
//! Usage: `portico-echo [ADDRESS]` (default `127.0.0.1:8081`).

use portico_tests::EchoUpstream;

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8081".to_owned());
    let addr = match addr.parse() {
        Ok(addr) => addr,
        Err(err) => {
            eprintln!("portico-echo: `{addr}` is not an address: {err}");
            std::process::exit(64);
        }
    };
    let upstream = EchoUpstream::start_on(addr).await;
    println!("portico-echo listening on http://{}", upstream.addr);
    let _ = tokio::signal::ctrl_c().await;
}
