//! Measures change-to-enforcement latency: the time from the admin API acknowledging a policy
//! change to Envoy enforcing it, over many changes, with the real control plane, the real
//! filter in Envoy and a local key server. Prints p50, p90, p99 and the maximum.
//!
//! Usage: `portico-sync-latency [CHANGES]` (default 100). Needs the built filter, the built
//! `portico` binary and Envoy (scripts/bench.sh builds and installs them).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use portico_core::alg::Algorithm;
use portico_core::testing::TestKey;
use portico_tests::control_plane::DATA_PLANE_TOKEN;
use portico_tests::{ControlPlane, EchoUpstream, Envoy, EnvoyConfig, KeyServer};
use serde_json::{Value, json};

/// One change may take at most this long to be enforced before the run is declared broken.
const BOUND: Duration = Duration::from_secs(15);

#[tokio::main]
async fn main() {
    let changes: usize = match std::env::args().nth(1).map(|n| n.parse()) {
        None => 100,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: portico-sync-latency [CHANGES]");
            std::process::exit(64);
        }
    };
    let keys = KeyServer::start(&[&TestKey::rsa_a()]).await;
    let control_plane = ControlPlane::start(&[]).await;
    let upstream = EchoUpstream::start().await;
    let plugin = json!({"control_plane": {"cluster": "portico", "token": DATA_PLANE_TOKEN}});
    let mut config = EnvoyConfig::new(plugin.to_string(), upstream.addr);
    config
        .clusters
        .push(("portico".to_owned(), control_plane.addr));
    let envoy = Envoy::start_bootstrap(
        &config.bootstrap(&portico_tests::paths::filter_wasm()),
        2,
        "info",
    )
    .await;

    let api = |id: &str, defaults: Value| {
        json!({"id": id, "name": id, "listen_path": format!("/{id}"), "issuers": ["idp"], "accept_any_audience": true,
               "identity_claims": ["client_id"], "default_policies": defaults})
    };
    control_plane
        .create("/issuers", json!({"id": "idp", "issuer": keys.issuer()}))
        .await;
    control_plane
        .create("/apis", api("orders", json!([])))
        .await;
    control_plane
        .create("/apis", api("reports", json!([])))
        .await;
    control_plane
        .create(
            "/policies",
            json!({"id": "gold", "name": "Gold", "access_rights": [{"api": "orders"}]}),
        )
        .await;
    control_plane
        .replace("/apis/orders", api("orders", json!(["gold"])))
        .await;

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let token = TestKey::rsa_a().token(
        Algorithm::RS256,
        &json!({"iss": keys.issuer(), "client_id": "bench", "exp": now + 3600}),
    );
    let http = reqwest::Client::new();
    // A fresh connection per request, so that requests land on every worker, not only the one
    // that happens to hold the sync lease.
    let status = || async {
        http.get(envoy.url("/orders/1"))
            .header("connection", "close")
            .bearer_auth(&token)
            .send()
            .await
            .map(|response| response.status().as_u16())
            .unwrap_or(0)
    };
    let everywhere = || async {
        for _ in 0..8 {
            let got = status().await;
            if got != 200 && got != 403 {
                return got;
            }
            if got != status().await {
                return 0;
            }
        }
        status().await
    };
    wait_for(&status, 200).await;

    let mut first = Vec::with_capacity(changes);
    let mut latencies = Vec::with_capacity(changes);
    for change in 0..changes {
        let grant = change % 2 == 1;
        let (rights, expected) = if grant {
            (json!([{"api": "orders"}]), 200)
        } else {
            (json!([{"api": "reports"}]), 403)
        };
        control_plane
            .replace(
                "/policies/gold",
                json!({"name": "Gold", "access_rights": rights}),
            )
            .await;
        let acknowledged = Instant::now();
        wait_for(&status, expected).await;
        first.push(acknowledged.elapsed());
        wait_for(&everywhere, expected).await;
        latencies.push(acknowledged.elapsed());
    }
    println!(
        "change-to-enforcement over {changes} changes (policy grant/revoke, 2 Envoy workers):"
    );
    report("first request enforcing it", first);
    report("16 fresh connections in a row enforcing it", latencies);
}

fn report(what: &str, mut latencies: Vec<Duration>) {
    latencies.sort();
    let percentile = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)];
    println!(
        "  {what}: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(50)),
        ms(percentile(90)),
        ms(percentile(99)),
        ms(latencies[latencies.len() - 1])
    );
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Polls until the status is `expected`, for at most [`BOUND`].
async fn wait_for<F, Fut>(status: &F, expected: u16)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let deadline = Instant::now() + BOUND;
    while status().await != expected {
        assert!(
            Instant::now() < deadline,
            "a change was not enforced within {BOUND:?}"
        );
    }
}
