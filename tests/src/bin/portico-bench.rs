//! Load benchmark: Portico's filter against Envoy's own `jwt_authn`, side by side, measured
//! with `wrk` in interleaved rounds so that drift on a noisy machine hits every configuration
//! alike. Prints requests/s and p50/p99 latency per configuration and workload (medians of the
//! rounds) and the ratios Portico/jwt_authn, Portico/jwt_authn+cache and Portico/no-filter.
//!
//! Usage: `portico-bench [--rounds N] [--seconds S] [--connections C] [--out DIR]
//! [--workload NAME]` (only the workloads whose name contains NAME)
//! (scripts/bench.sh builds everything first and passes its arguments here).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use portico_core::alg::Algorithm;
use portico_core::snapshot::Snapshot;
use portico_core::testing::{TestKey, b64, jwks, large_snapshot};
use portico_tests::Envoy;
use portico_tests::envoy::cluster_yaml;
use portico_tests::paths::filter_wasm;
use serde::Deserialize;
use serde_json::{Value, json};

const ISSUER: &str = "https://idp.bench.portico.test";
const DISTINCT_TOKENS: usize = 10_000;
const WRK_SCRIPT: &str = r#"
local tokens = {}
local next_index = 0
init = function(args)
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
end
request = function()
  next_index = next_index % #tokens + 1
  return wrk.format("GET", "/orders/1", { ["Authorization"] = "Bearer " .. tokens[next_index] })
end
done = function(summary, latency, requests)
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"status_errors":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"#;

struct Options {
    rounds: usize,
    seconds: u32,
    connections: u32,
    out: PathBuf,
    /// Only workloads whose name contains this.
    workload: Option<String>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        rounds: 3,
        seconds: 8,
        connections: 16,
        out: portico_tests::paths::workspace_root().join("target/bench"),
        workload: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--rounds" => {
                options.rounds = value()?.parse().map_err(|_| "--rounds takes a number")?;
            }
            "--seconds" => {
                options.seconds = value()?.parse().map_err(|_| "--seconds takes a number")?;
            }
            "--connections" => {
                options.connections = value()?
                    .parse()
                    .map_err(|_| "--connections takes a number")?;
            }
            "--out" => options.out = PathBuf::from(value()?),
            "--workload" => options.workload = Some(value()?),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if options.rounds < 3 {
        return Err("at least 3 rounds are needed for a median".to_owned());
    }
    Ok(options)
}

/// One benchmarked Envoy configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Setup {
    NoFilter,
    JwtAuthn,
    JwtAuthnCached,
    Portico,
    PorticoAtScale,
}

impl Setup {
    fn label(self) -> &'static str {
        match self {
            Setup::NoFilter => "(a) no auth filter",
            Setup::JwtAuthn => "(b) jwt_authn",
            Setup::JwtAuthnCached => "(c) jwt_authn + jwt_cache_config",
            Setup::Portico => "(d) Portico",
            Setup::PorticoAtScale => "(e) Portico, 100k clients/1k APIs/1k policies",
        }
    }
}

/// One workload: a token file, and the status every request must get.
struct Workload {
    name: &'static str,
    tokens: PathBuf,
    expected_status: u16,
    setups: &'static [Setup],
}

#[derive(Clone, Copy, Debug, Deserialize)]
struct WrkResult {
    requests: u64,
    duration_us: u64,
    p50_us: u64,
    p99_us: u64,
    status_errors: u64,
    socket_errors: u64,
}

impl WrkResult {
    fn rps(&self) -> f64 {
        self.requests as f64 / (self.duration_us as f64 / 1e6)
    }
}

#[tokio::main]
async fn main() {
    let options = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("portico-bench: {message}");
            std::process::exit(64);
        }
    };
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("portico-bench: wrk is not installed: run `scripts/setup.sh --bench`");
        std::process::exit(69);
    }
    std::fs::create_dir_all(&options.out).expect("create the output directory");
    println!("preparing tokens ({DISTINCT_TOKENS} distinct per workload)...");
    let mut workloads = write_workloads(&options.out);
    if let Some(only) = &options.workload {
        workloads.retain(|workload| workload.name.contains(only.as_str()));
    }
    std::fs::write(options.out.join("bench.lua"), WRK_SCRIPT).expect("write the wrk script");

    let snapshot_server = start_snapshot_server(large_snapshot_with_bench_api()).await;
    // The same upstream for every configuration: an Envoy answering every request itself.
    let upstream = Envoy::start_bootstrap(&upstream_bootstrap(), 1, "info").await;
    let mut envoys = BTreeMap::new();
    for setup in [
        Setup::NoFilter,
        Setup::JwtAuthn,
        Setup::JwtAuthnCached,
        Setup::Portico,
        Setup::PorticoAtScale,
    ] {
        let bootstrap = bootstrap(setup, snapshot_server, upstream.listener);
        let envoy = Envoy::start_bootstrap(&bootstrap, 1, "info").await;
        envoys.insert(setup, envoy);
    }
    let scale = wait_for_scale_snapshot(&envoys[&Setup::PorticoAtScale]).await;

    let mut results: BTreeMap<(&str, Setup), Vec<WrkResult>> = BTreeMap::new();
    for round in 1..=options.rounds {
        for workload in &workloads {
            for setup in workload.setups {
                let envoy = &envoys[setup];
                check_status(envoy, workload).await;
                let result = run_wrk(&options, envoy, &workload.tokens);
                println!(
                    "round {round} {:<22} {:<48} {:>9.0} req/s  p50 {:>6} us  p99 {:>6} us",
                    workload.name,
                    setup.label(),
                    result.rps(),
                    result.p50_us,
                    result.p99_us
                );
                assert_eq!(result.socket_errors, 0, "socket errors: {result:?}");
                let expected_errors = if workload.expected_status == 200 {
                    0
                } else {
                    result.requests
                };
                assert_eq!(
                    result.status_errors, expected_errors,
                    "{}: responses with an unexpected status: {result:?}",
                    workload.name
                );
                results
                    .entry((workload.name, *setup))
                    .or_default()
                    .push(result);
            }
        }
    }
    let report = report(&options, &workloads, &results, &scale);
    println!("\n{report}");
    std::fs::write(options.out.join("results.md"), &report).expect("write the report");
    println!(
        "(also written to {})",
        options.out.join("results.md").display()
    );
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

fn bench_claims(n: usize) -> Value {
    // Shaped like an IdP access token: a UUID client id, scopes, a jti.
    let client = format!("{n:08x}-bench-4000-8000-{:012x}", n * 7919);
    json!({
        "iss": ISSUER, "sub": client, "client_id": client, "aud": "orders",
        "iat": now(), "exp": now() + 86_400, "jti": format!("jti-{n}"),
        "scope": "orders:read orders:write"
    })
}

fn write_tokens(dir: &Path, name: &str, tokens: impl Iterator<Item = String>) -> PathBuf {
    let path = dir.join(format!("{name}.tokens"));
    let text: String = tokens.map(|token| token + "\n").collect();
    std::fs::write(&path, text).expect("write tokens");
    path
}

fn write_workloads(dir: &Path) -> Vec<Workload> {
    let rsa = TestKey::rsa_a();
    let ec = TestKey::p256_a();
    const ALL: &[Setup] = &[
        Setup::NoFilter,
        Setup::JwtAuthn,
        Setup::JwtAuthnCached,
        Setup::Portico,
        Setup::PorticoAtScale,
    ];
    const AUTH_ONLY: &[Setup] = &[Setup::JwtAuthn, Setup::JwtAuthnCached, Setup::Portico];
    let forged = (0..DISTINCT_TOKENS).map(|n| {
        let token = rsa.token(Algorithm::RS256, &bench_claims(n));
        let (signing_input, _) = token.rsplit_once('.').expect("three parts");
        // A valid structure and key id, but a signature of the right length that is random.
        let junk: Vec<u8> = (0..256).map(|i| ((i * 31 + n * 17) % 251) as u8).collect();
        format!("{signing_input}.{}", b64(&junk))
    });
    vec![
        Workload {
            name: "RS256 repeated token",
            tokens: write_tokens(
                dir,
                "rs256-one",
                std::iter::once(rsa.token(Algorithm::RS256, &bench_claims(0))),
            ),
            expected_status: 200,
            setups: ALL,
        },
        Workload {
            name: "RS256 10k tokens",
            tokens: write_tokens(
                dir,
                "rs256-many",
                (0..DISTINCT_TOKENS).map(|n| rsa.token(Algorithm::RS256, &bench_claims(n))),
            ),
            expected_status: 200,
            setups: ALL,
        },
        Workload {
            name: "ES256 repeated token",
            tokens: write_tokens(
                dir,
                "es256-one",
                std::iter::once(ec.token(Algorithm::ES256, &bench_claims(0))),
            ),
            expected_status: 200,
            setups: AUTH_ONLY,
        },
        Workload {
            name: "ES256 10k tokens",
            tokens: write_tokens(
                dir,
                "es256-many",
                (0..DISTINCT_TOKENS).map(|n| ec.token(Algorithm::ES256, &bench_claims(n))),
            ),
            expected_status: 200,
            setups: AUTH_ONLY,
        },
        Workload {
            name: "forged RS256 10k",
            tokens: write_tokens(dir, "forged", forged),
            expected_status: 401,
            setups: AUTH_ONLY,
        },
    ]
}

fn bench_jwks() -> String {
    jwks(&[&TestKey::rsa_a(), &TestKey::p256_a()]).to_string()
}

fn portico_static_config() -> String {
    json!({"snapshot": {
        "version": 1,
        "apis": [bench_api()],
        "issuers": [{"id": "idp", "issuer": ISSUER, "keys": jwks(&[&TestKey::rsa_a(), &TestKey::p256_a()])["keys"]}],
        "policies": [{"id": "bench", "access_rights": [{"api": "orders"}]}]
    }})
    .to_string()
}

fn bench_api() -> Value {
    json!({"id": "orders", "listen_path": "/orders", "issuers": ["idp"],
           "allowed_algorithms": ["RS256", "ES256"], "audiences": ["orders"],
           "identity_claims": ["client_id"], "default_policies": ["bench"]})
}

/// The scale snapshot, with the benchmarked API and its policy added to it.
fn large_snapshot_with_bench_api() -> Snapshot {
    let mut snapshot = large_snapshot(100_000, 1_000, 1_000);
    snapshot.issuers[0].issuer = ISSUER.to_owned();
    snapshot
        .apis
        .push(serde_json::from_value(bench_api()).expect("a valid API"));
    snapshot.policies.push(
        serde_json::from_value(json!({"id": "bench", "access_rights": [{"api": "orders"}]}))
            .expect("a valid policy"),
    );
    snapshot
        .clients
        .sort_by(|a, b| a.client_id.cmp(&b.client_id));
    snapshot
}

/// The upstream: answers `200 ok` to everything, as cheaply as Envoy can.
fn upstream_bootstrap() -> String {
    r#"admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 0}}
static_resources:
  listeners:
  - name: main
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: upstream
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                direct_response: {status: 200, body: {inline_string: "ok"}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#
    .to_owned()
}

fn bootstrap(setup: Setup, snapshot_server: SocketAddr, upstream: SocketAddr) -> String {
    let filter = match setup {
        Setup::NoFilter => String::new(),
        Setup::JwtAuthn | Setup::JwtAuthnCached => {
            let cache = if setup == Setup::JwtAuthnCached {
                "\n                  jwt_cache_config: {jwt_cache_size: 10000}"
            } else {
                ""
            };
            format!(
                r#"          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                bench:
                  issuer: {ISSUER}
                  audiences: [orders]
                  local_jwks: {{inline_string: {jwks}}}
                  forward: true{cache}
              rules:
              - match: {{prefix: /}}
                requires: {{provider_name: bench}}
"#,
                jwks = serde_json::to_string(&bench_jwks()).expect("a string")
            )
        }
        Setup::Portico | Setup::PorticoAtScale => {
            let config = if setup == Setup::Portico {
                portico_static_config()
            } else {
                json!({"control_plane": {"cluster": "snapshots", "token": "bench"}}).to_string()
            };
            format!(
                r#"          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: portico
                root_id: portico
                failure_policy: FAIL_RELOAD
                vm_config:
                  runtime: envoy.wasm.runtime.v8
                  code: {{local: {{filename: "{wasm}"}}}}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: {config}
"#,
                wasm = filter_wasm().display(),
                config = serde_json::to_string(&config).expect("a string")
            )
        }
    };
    format!(
        r#"admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
static_resources:
  listeners:
  - name: main
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: upstream}}
          http_filters:
{filter}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{upstream}{snapshots}"#,
        upstream = cluster_yaml("upstream", upstream),
        snapshots = cluster_yaml("snapshots", snapshot_server),
    )
}

/// A minimal snapshot server for the scale setup: answers the binary snapshot to any poll
/// that does not already have its version, and holds the others for the requested wait.
async fn start_snapshot_server(snapshot: Snapshot) -> SocketAddr {
    let version = snapshot.version;
    let body = snapshot.to_binary().expect("encodes");
    println!("scale snapshot: {} bytes binary", body.len());
    let state = std::sync::Arc::new((version, body));
    let app = axum::Router::new()
        .route(
            "/v1/snapshot",
            axum::routing::get(
                |State(state): State<std::sync::Arc<(u64, Vec<u8>)>>,
                 Query(query): Query<BTreeMap<String, String>>| async move {
                    let since: u64 = query.get("since").and_then(|v| v.parse().ok()).unwrap_or(0);
                    if since != state.0 {
                        let mut headers = HeaderMap::new();
                        headers.insert(
                            "content-type",
                            portico_core::snapshot::BINARY_MEDIA_TYPE
                                .parse()
                                .expect("a header value"),
                        );
                        return (StatusCode::OK, headers, state.1.clone()).into_response();
                    }
                    let wait: u64 = query.get("wait").and_then(|v| v.parse().ok()).unwrap_or(30);
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                    Response::builder()
                        .status(StatusCode::NOT_MODIFIED)
                        .body(axum::body::Body::empty())
                        .expect("a response")
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

/// What the scale setup reported once its snapshot was in force.
struct ScaleFacts {
    apply_ms: Vec<u64>,
    vm_memory_bytes: u64,
}

async fn wait_for_scale_snapshot(envoy: &Envoy) -> ScaleFacts {
    portico_tests::eventually(
        "the scale snapshot to be in force",
        Duration::from_secs(60),
        || async {
            (envoy
                .stat("wasmcustom.portico.filter.snapshot_version")
                .await
                == Some(1))
            .then_some(())
        },
    )
    .await;
    let apply_ms = envoy
        .log()
        .lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once("snapshot 1 in force (")?;
            rest.split(' ').next()?.parse().ok()
        })
        .collect();
    ScaleFacts {
        apply_ms,
        vm_memory_bytes: envoy
            .stat("wasmcustom.portico.filter.vm_memory_bytes")
            .await
            .unwrap_or(0),
    }
}

async fn check_status(envoy: &Envoy, workload: &Workload) {
    let token = std::fs::read_to_string(&workload.tokens).expect("read tokens");
    let token = token.lines().next().expect("a token");
    let status = reqwest::Client::new()
        .get(envoy.url("/orders/1"))
        .bearer_auth(token)
        .send()
        .await
        .expect("a response")
        .status()
        .as_u16();
    assert_eq!(
        status, workload.expected_status,
        "{}: wrong status before measuring",
        workload.name
    );
}

fn run_wrk(options: &Options, envoy: &Envoy, tokens: &Path) -> WrkResult {
    let output = Command::new("wrk")
        .args(["-t1", "--timeout", "5s"])
        .arg(format!("-c{}", options.connections))
        .arg(format!("-d{}s", options.seconds))
        .arg("-s")
        .arg(options.out.join("bench.lua"))
        .arg(envoy.url("/orders/1"))
        .arg("--")
        .arg(tokens)
        .output()
        .expect("run wrk");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|line| line.starts_with('{'))
        .unwrap_or_else(|| {
            panic!(
                "wrk printed no result:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    serde_json::from_str(line).expect("wrk's JSON line")
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn report(
    options: &Options,
    workloads: &[Workload],
    results: &BTreeMap<(&str, Setup), Vec<WrkResult>>,
    scale: &ScaleFacts,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Envoy 1.40 (--concurrency 1), wrk -t1 -c{} -d{}s, {} interleaved rounds, medians; \
         every configuration forwards to the same upstream (an Envoy answering `200 ok`).\n",
        options.connections, options.seconds, options.rounds
    );
    for workload in workloads {
        let _ = writeln!(out, "### {}\n", workload.name);
        let _ = writeln!(out, "| configuration | requests/s | p50 µs | p99 µs |");
        let _ = writeln!(out, "| --- | ---: | ---: | ---: |");
        let mut rps = BTreeMap::new();
        let mut p99 = BTreeMap::new();
        for setup in workload.setups {
            let runs = &results[&(workload.name, *setup)];
            let med_rps = median(runs.iter().map(WrkResult::rps).collect());
            let med_p50 = median(runs.iter().map(|r| r.p50_us as f64).collect());
            let med_p99 = median(runs.iter().map(|r| r.p99_us as f64).collect());
            rps.insert(*setup, med_rps);
            p99.insert(*setup, med_p99);
            let _ = writeln!(
                out,
                "| {} | {med_rps:.0} | {med_p50:.0} | {med_p99:.0} |",
                setup.label()
            );
        }
        let ratio = |a: Setup, b: Setup| match (rps.get(&a), rps.get(&b)) {
            (Some(a), Some(b)) => format!("{:.2}", a / b),
            _ => "n/a".to_owned(),
        };
        let _ = writeln!(
            out,
            "\nd/b = {}, d/c = {}, d/a = {}; p99 d/b = {}{}\n",
            ratio(Setup::Portico, Setup::JwtAuthn),
            ratio(Setup::Portico, Setup::JwtAuthnCached),
            ratio(Setup::Portico, Setup::NoFilter),
            match (p99.get(&Setup::Portico), p99.get(&Setup::JwtAuthn)) {
                (Some(d), Some(b)) => format!("{:.2}", d / b),
                _ => "n/a".to_owned(),
            },
            if rps.contains_key(&Setup::PorticoAtScale) {
                format!(", e/d = {}", ratio(Setup::PorticoAtScale, Setup::Portico))
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(
        out,
        "### Scale snapshot (100,000 bindings, 1,001 APIs, 1,001 policies)\n\n\
         decode and apply in the filter, per VM: {:?} ms; VM linear memory after apply: {:.1} MiB",
        scale.apply_ms,
        scale.vm_memory_bytes as f64 / (1024.0 * 1024.0)
    );
    out
}
