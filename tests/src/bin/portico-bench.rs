//! Load benchmark: Portico's filter against Envoy's own `jwt_authn` and against an empty
//! proxy-wasm filter (the ABI floor), side by side, measured with `wrk` in interleaved rounds
//! so that drift on a noisy machine hits every configuration alike. Prints, per configuration
//! and workload (medians of the rounds), requests/s, the Envoy under test's CPU time per
//! request (user + system from `/proc/<pid>/stat` around each round, in µs), and p50/p99
//! latency, and the hypervisor's steal time over each round (`/proc/stat`); then the ratios
//! against the floor (f), `jwt_authn` (b) and its cache (c), and whether issue 10's targets are
//! met. On the repeated-token workload it also prices the host calls Portico makes on a cached
//! request: (h) the floor filter making them once each without a decision, and amplified
//! probes making one of them 100 times per request, whose CPU over the floor divided by 100
//! stands out of the rounds' drift. A target is judged round by round (the two configurations
//! it compares, measured one after the other in the same round) and answered yes or no only
//! when every round agrees; otherwise it is reported as not readable, with the range of the
//! rounds' figures, since the machine drifted by more than the margin being judged.
//!
//! Usage: `portico-bench [--rounds N] [--seconds S] [--connections C] [--out DIR]
//! [--workload NAME] [--variant LABEL=WASM]...` (only the workloads whose name contains NAME;
//! each `--variant` adds a configuration like (d) loaded with another build of the filter, for
//! measuring a change by elimination in the same run)
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
use portico_core::rules::DEFAULT_IDENTITY_HEADER;
use portico_core::snapshot::Snapshot;
use portico_core::testing::{TestKey, b64, jwks, large_snapshot};
use portico_tests::Envoy;
use portico_tests::envoy::cluster_yaml;
use portico_tests::memory::cpu_seconds;
use portico_tests::paths::filter_wasm;
use serde::Deserialize;
use serde_json::{Value, json};

const ISSUER: &str = "https://idp.bench.portico.test";
const DISTINCT_TOKENS: usize = 10_000;
/// How many times the amplified probes (p) and (p1) make their host call per request: enough
/// that a call's cost of a fraction of a µs stands out of the rounds' drift of tens of µs.
const PROBE_CALLS: usize = 100;
/// The floor filters that price Portico's host calls; run on one workload only, since they
/// do not look at the token.
const PROBES: [Setup; 5] = [
    Setup::PorticoCallsWasm,
    Setup::Probe(HostCall::HeaderMap),
    Setup::Probe(HostCall::OneHeader),
    Setup::Probe(HostCall::Clock),
    Setup::Probe(HostCall::SetHeader),
];

/// A host call that Portico makes on every cached request, priced by an amplified probe: the
/// floor filter making it [`PROBE_CALLS`] times per request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum HostCall {
    /// The request's header map, in one call.
    HeaderMap,
    /// The `authorization` header alone: the least any filter that checks a bearer token reads.
    OneHeader,
    /// The host's clock.
    Clock,
    /// Setting the identity header.
    SetHeader,
}

impl HostCall {
    const ALL: [HostCall; 4] = [
        HostCall::HeaderMap,
        HostCall::OneHeader,
        HostCall::Clock,
        HostCall::SetHeader,
    ];

    fn label(self) -> &'static str {
        match self {
            HostCall::HeaderMap => "the header map",
            HostCall::OneHeader => "one header",
            HostCall::Clock => "the clock",
            HostCall::SetHeader => "a header set",
        }
    }

    /// The floor filter's configuration for the probe (`bench/empty-filter`).
    fn probe_configuration(self) -> String {
        let step = match self {
            HostCall::HeaderMap => "headers".to_owned(),
            HostCall::OneHeader => "header:authorization".to_owned(),
            HostCall::Clock => "clock".to_owned(),
            HostCall::SetHeader => format!("set:{DEFAULT_IDENTITY_HEADER}"),
        };
        format!("{step}*{PROBE_CALLS}")
    }
}
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
    /// Extra configurations like (d) with other builds of the filter: label and module.
    variants: Vec<(String, PathBuf)>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        rounds: 3,
        seconds: 8,
        connections: 16,
        out: portico_tests::paths::workspace_root().join("target/bench"),
        workload: None,
        variants: Vec::new(),
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
            "--variant" => {
                let value = value()?;
                let (label, wasm) = value.split_once('=').ok_or("--variant takes LABEL=WASM")?;
                if !Path::new(wasm).is_file() {
                    return Err(format!("--variant {label}: no file at {wasm}"));
                }
                options
                    .variants
                    .push((label.to_owned(), PathBuf::from(wasm)));
            }
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
    EmptyWasm,
    HeadersWasm,
    /// The floor filter making the host calls Portico makes on a cached request, once each.
    PorticoCallsWasm,
    /// The floor filter making one host call [`PROBE_CALLS`] times per request.
    Probe(HostCall),
    Portico,
    PorticoLimited,
    PorticoRouteMetadata,
    PorticoAtScale,
    /// The `--variant` at this index.
    Variant(usize),
}

impl Setup {
    const ALL: [Setup; 14] = [
        Setup::NoFilter,
        Setup::JwtAuthn,
        Setup::JwtAuthnCached,
        Setup::EmptyWasm,
        Setup::HeadersWasm,
        Setup::PorticoCallsWasm,
        Setup::Probe(HostCall::HeaderMap),
        Setup::Probe(HostCall::OneHeader),
        Setup::Probe(HostCall::Clock),
        Setup::Probe(HostCall::SetHeader),
        Setup::Portico,
        Setup::PorticoLimited,
        Setup::PorticoRouteMetadata,
        Setup::PorticoAtScale,
    ];

    fn label(self, options: &Options) -> String {
        let label = match self {
            Setup::NoFilter => "(a) no auth filter",
            Setup::JwtAuthn => "(b) jwt_authn",
            Setup::JwtAuthnCached => "(c) jwt_authn + jwt_cache_config",
            Setup::EmptyWasm => "(f) empty proxy-wasm filter (Continue)",
            Setup::HeadersWasm => "(g) proxy-wasm filter reading the header map",
            Setup::PorticoCallsWasm => "(h) Portico's host calls, no decision",
            Setup::Probe(call) => return format!("(p) {} ×{PROBE_CALLS}", call.label()),
            Setup::Portico => "(d) Portico, decision only",
            Setup::PorticoLimited => "(d') Portico with a rate limit",
            Setup::PorticoRouteMetadata => "(d\") Portico reading route metadata",
            Setup::PorticoAtScale => "(e) Portico, 100k clients/1k APIs/1k policies",
            Setup::Variant(index) => return format!("(v) {}", options.variants[index].0),
        };
        label.to_owned()
    }
}

/// One workload: a token file, and the status every request must get.
struct Workload {
    name: &'static str,
    tokens: PathBuf,
    expected_status: u16,
    setups: Vec<Setup>,
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

/// One round of one configuration: wrk's result and the CPU the Envoy under test spent.
#[derive(Clone, Copy, Debug)]
struct Round {
    wrk: WrkResult,
    /// The Envoy's user + system CPU time over the round, in seconds.
    cpu_seconds: f64,
    /// The share of the machine's CPU time that the hypervisor gave to others over the round
    /// (`steal` in `/proc/stat`), from 0 to 1.
    steal_share: f64,
}

impl Round {
    /// CPU time per request served, in µs.
    fn cpu_us(&self) -> f64 {
        self.cpu_seconds * 1e6 / self.wrk.requests.max(1) as f64
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
    // (d)'s plugin configuration, for profiling the module outside Envoy
    // (bench/vm-profile/host.mjs).
    std::fs::write(
        options.out.join("portico-config.json"),
        portico_static_config(None, false),
    )
    .expect("write the plugin configuration");

    let snapshot_server = start_snapshot_server(large_snapshot_with_bench_api()).await;
    // The same upstream for every configuration: an Envoy answering every request itself.
    let upstream = Envoy::start_bootstrap(&upstream_bootstrap(), 1, "info").await;
    let variants = (0..options.variants.len()).map(Setup::Variant);
    for workload in &mut workloads {
        if workload.setups.contains(&Setup::Portico) {
            workload.setups.extend(variants.clone());
        }
    }
    let mut envoys = BTreeMap::new();
    for setup in Setup::ALL.into_iter().chain(variants) {
        let bootstrap = bootstrap(&options, setup, snapshot_server, upstream.listener);
        let envoy = Envoy::start_bootstrap(&bootstrap, 1, "info").await;
        envoys.insert(setup, envoy);
    }
    let scale = wait_for_scale_snapshot(&envoys[&Setup::PorticoAtScale]).await;

    let mut results: BTreeMap<(&str, Setup), Vec<Round>> = BTreeMap::new();
    for round in 1..=options.rounds {
        for workload in &workloads {
            for setup in &workload.setups {
                let envoy = &envoys[setup];
                check_status(envoy, workload).await;
                let cpu_before = cpu_seconds(envoy.pid());
                let machine_before = MachineTimes::read();
                let result = run_wrk(&options, envoy, &workload.tokens);
                let measured = Round {
                    wrk: result,
                    cpu_seconds: cpu_seconds(envoy.pid()) - cpu_before,
                    steal_share: MachineTimes::read().steal_share_since(machine_before),
                };
                println!(
                    "round {round} {:<22} {:<48} {:>9.0} req/s  {:>6.1} us CPU/req  p50 {:>6} us  p99 {:>6} us  steal {:>4.1}%",
                    workload.name,
                    setup.label(&options),
                    result.rps(),
                    measured.cpu_us(),
                    result.p50_us,
                    result.p99_us,
                    measured.steal_share * 100.0
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
                    .push(measured);
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
    const ALL: &[Setup] = &Setup::ALL;
    const VALID_ONLY: &[Setup] = &[
        Setup::JwtAuthn,
        Setup::JwtAuthnCached,
        Setup::EmptyWasm,
        Setup::HeadersWasm,
        Setup::Portico,
        Setup::PorticoLimited,
    ];
    // The floor filters let a forged token through, so they have no place in the forged flood.
    const AUTH_ONLY: &[Setup] = &[
        Setup::JwtAuthn,
        Setup::JwtAuthnCached,
        Setup::Portico,
        Setup::PorticoLimited,
    ];
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
            setups: ALL.to_vec(),
        },
        Workload {
            name: "RS256 10k tokens",
            tokens: write_tokens(
                dir,
                "rs256-many",
                (0..DISTINCT_TOKENS).map(|n| rsa.token(Algorithm::RS256, &bench_claims(n))),
            ),
            expected_status: 200,
            setups: ALL
                .iter()
                .filter(|setup| !PROBES.contains(setup))
                .copied()
                .collect(),
        },
        Workload {
            name: "ES256 repeated token",
            tokens: write_tokens(
                dir,
                "es256-one",
                std::iter::once(ec.token(Algorithm::ES256, &bench_claims(0))),
            ),
            expected_status: 200,
            setups: VALID_ONLY.to_vec(),
        },
        Workload {
            name: "ES256 10k tokens",
            tokens: write_tokens(
                dir,
                "es256-many",
                (0..DISTINCT_TOKENS).map(|n| ec.token(Algorithm::ES256, &bench_claims(n))),
            ),
            expected_status: 200,
            setups: VALID_ONLY.to_vec(),
        },
        Workload {
            name: "forged RS256 10k",
            tokens: write_tokens(dir, "forged", forged),
            expected_status: 401,
            setups: AUTH_ONLY.to_vec(),
        },
    ]
}

fn bench_jwks() -> String {
    jwks(&[&TestKey::rsa_a(), &TestKey::p256_a()]).to_string()
}

/// Portico's static configuration: the benchmarked API and one policy granting it, with
/// `rate_limit` as the policy's rate limit (none for (d), one that never refuses for (d'):
/// a billion requests a second per client, so that every request pays for counting).
/// The benchmark's route names no API, so route metadata is read only when `route_metadata`
/// is set, as in (d"), which measures what reading it costs.
fn portico_static_config(rate_limit: Option<Value>, route_metadata: bool) -> String {
    let mut policy = json!({"id": "bench", "access_rights": [{"api": "orders"}]});
    if let Some(limit) = rate_limit {
        policy["rate_limit"] = limit;
    }
    json!({"route_metadata": route_metadata, "snapshot": {
        "version": 1,
        "apis": [bench_api()],
        "issuers": [{"id": "idp", "issuer": ISSUER, "keys": jwks(&[&TestKey::rsa_a(), &TestKey::p256_a()])["keys"]}],
        "policies": [policy]
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

fn bootstrap(
    options: &Options,
    setup: Setup,
    snapshot_server: SocketAddr,
    upstream: SocketAddr,
) -> String {
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
        Setup::EmptyWasm
        | Setup::HeadersWasm
        | Setup::PorticoCallsWasm
        | Setup::Probe(_)
        | Setup::Portico
        | Setup::PorticoLimited
        | Setup::PorticoRouteMetadata
        | Setup::PorticoAtScale
        | Setup::Variant(_) => {
            let (wasm, config) = match setup {
                Setup::EmptyWasm => (empty_filter_wasm(), String::new()),
                Setup::HeadersWasm => (empty_filter_wasm(), "headers".to_owned()),
                Setup::PorticoCallsWasm => (
                    empty_filter_wasm(),
                    format!("headers clock set:{DEFAULT_IDENTITY_HEADER}"),
                ),
                Setup::Probe(call) => (empty_filter_wasm(), call.probe_configuration()),
                Setup::Portico => (filter_wasm(), portico_static_config(None, false)),
                Setup::PorticoRouteMetadata => (filter_wasm(), portico_static_config(None, true)),
                Setup::Variant(index) => (
                    options.variants[index].1.clone(),
                    portico_static_config(None, false),
                ),
                Setup::PorticoLimited => (
                    filter_wasm(),
                    portico_static_config(
                        Some(json!({"requests": 1_000_000_000, "per_seconds": 1})),
                        false,
                    ),
                ),
                _ => (
                    filter_wasm(),
                    json!({"control_plane": {"cluster": "snapshots", "token": "bench"}})
                        .to_string(),
                ),
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
                wasm = wasm.display(),
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
    portico_tests::serve_local(app).await
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

/// The machine's CPU time counters (`/proc/stat`'s `cpu` line, in clock ticks): all of them,
/// and `steal`, the time a virtual machine's CPUs waited while the hypervisor ran others.
#[derive(Clone, Copy, Debug, Default)]
struct MachineTimes {
    total: u64,
    steal: u64,
}

impl MachineTimes {
    /// The counters now; zeros where `/proc/stat` cannot be read.
    fn read() -> MachineTimes {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let ticks: Vec<u64> = stat
            .lines()
            .find(|line| line.starts_with("cpu "))
            .map(|line| {
                line.split_whitespace()
                    .skip(1)
                    .filter_map(|field| field.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        // user nice system idle iowait irq softirq steal guest guest_nice (proc(5)); guest
        // time is already counted in user and nice.
        MachineTimes {
            total: ticks.iter().take(8).sum(),
            steal: ticks.get(7).copied().unwrap_or(0),
        }
    }

    /// The share of the time since `before` that was stolen, from 0 to 1.
    fn steal_share_since(self, before: MachineTimes) -> f64 {
        let total = self.total.saturating_sub(before.total);
        if total == 0 {
            return 0.0;
        }
        self.steal.saturating_sub(before.steal) as f64 / total as f64
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The empty filter (configuration (f)), built by `scripts/bench.sh`.
fn empty_filter_wasm() -> PathBuf {
    let path = portico_tests::paths::workspace_root()
        .join("target/wasm32-wasip1/wasm-release/portico_empty_filter.wasm");
    assert!(
        path.is_file(),
        "the empty filter is not built at {}: run `cargo build -p portico-empty-filter \
         --target wasm32-wasip1 --profile wasm-release` (scripts/bench.sh does this)",
        path.display()
    );
    path
}

/// The medians of one configuration's rounds.
#[derive(Clone, Copy, Debug)]
struct Medians {
    rps: f64,
    cpu_us: f64,
    p50_us: f64,
    p99_us: f64,
}

impl Medians {
    fn of(rounds: &[Round]) -> Medians {
        Medians {
            rps: median(rounds.iter().map(|r| r.wrk.rps()).collect()),
            cpu_us: median(rounds.iter().map(Round::cpu_us).collect()),
            p50_us: median(rounds.iter().map(|r| r.wrk.p50_us as f64).collect()),
            p99_us: median(rounds.iter().map(|r| r.wrk.p99_us as f64).collect()),
        }
    }
}

/// One of issue 10's targets on one workload: the figure of the medians, and the verdict of
/// the rounds, each of which compares two configurations measured one after the other.
struct Target {
    workload: &'static str,
    what: String,
    verdict: Verdict,
}

/// Whether a target was met: only when every round agrees is the answer yes or no; rounds
/// that disagree mean the machine's drift between rounds was larger than the margin judged.
#[derive(Clone, Copy, Debug)]
enum Verdict {
    Met,
    NotMet,
    /// Some rounds met it and some did not: the per-round figures ranged over `low..=high`.
    Unreadable {
        low: f64,
        high: f64,
    },
}

impl Verdict {
    /// The verdict over per-round `(figure, met)` pairs.
    fn of(rounds: &[(f64, bool)]) -> Verdict {
        if rounds.iter().all(|(_, met)| *met) {
            return Verdict::Met;
        }
        if rounds.iter().all(|(_, met)| !*met) {
            return Verdict::NotMet;
        }
        let figures = rounds.iter().map(|(figure, _)| *figure);
        Verdict::Unreadable {
            low: figures.clone().fold(f64::INFINITY, f64::min),
            high: figures.fold(f64::NEG_INFINITY, f64::max),
        }
    }

    fn cell(self) -> String {
        match self {
            Verdict::Met => "yes".to_owned(),
            Verdict::NotMet => "**no**".to_owned(),
            Verdict::Unreadable { low, high } => {
                format!("not readable: the rounds disagree ({low:.2} to {high:.2})")
            }
        }
    }
}

/// Per-round `(figure, met)` of a target comparing configuration `of` with `to`, rounds paired
/// in the order they ran.
fn paired(
    of: &[Round],
    to: &[Round],
    figure: impl Fn(&Round, &Round) -> f64,
    met: impl Fn(f64) -> bool,
) -> Vec<(f64, bool)> {
    of.iter()
        .zip(to)
        .map(|(a, b)| {
            let value = figure(a, b);
            (value, met(value))
        })
        .collect()
}

fn report(
    options: &Options,
    workloads: &[Workload],
    results: &BTreeMap<(&str, Setup), Vec<Round>>,
    scale: &ScaleFacts,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Envoy 1.40 (--concurrency 1), wrk -t1 -c{} -d{}s, {} interleaved rounds, medians; \
         every configuration forwards to the same upstream (an Envoy answering `200 ok`). \
         CPU is the Envoy under test's user + system time (/proc/<pid>/stat) per request \
         served. A target is met (or not) only when every round, comparing two \
         configurations measured one after the other, agrees. The hypervisor's steal time \
         over the rounds: median {:.1} %, max {:.1} %.\n",
        options.connections,
        options.seconds,
        options.rounds,
        median(
            results
                .values()
                .flatten()
                .map(|round| round.steal_share * 100.0)
                .collect()
        ),
        results
            .values()
            .flatten()
            .map(|round| round.steal_share * 100.0)
            .fold(0.0, f64::max)
    );
    let mut targets = Vec::new();
    for workload in workloads {
        let _ = writeln!(out, "### {}\n", workload.name);
        let _ = writeln!(
            out,
            "| configuration | requests/s | CPU µs/request | p50 µs | p99 µs |"
        );
        let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: |");
        let medians: BTreeMap<Setup, Medians> = workload
            .setups
            .iter()
            .map(|setup| (*setup, Medians::of(&results[&(workload.name, *setup)])))
            .collect();
        for (setup, m) in &medians {
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.1} | {:.0} | {:.0} |",
                setup.label(options),
                m.rps,
                m.cpu_us,
                m.p50_us,
                m.p99_us
            );
        }
        let ratio = |of: Setup, to: Setup, field: fn(&Medians) -> f64| match (
            medians.get(&of),
            medians.get(&to),
        ) {
            (Some(a), Some(b)) => format!("{:.2}", field(a) / field(b)),
            _ => "n/a".to_owned(),
        };
        let rps = |m: &Medians| m.rps;
        let cpu = |m: &Medians| m.cpu_us;
        let p99 = |m: &Medians| m.p99_us;
        let _ = writeln!(
            out,
            "\nrequests/s: d/f = {}, d/b = {}, d/c = {}, d/a = {}, d'/d = {}; \
             CPU per request: d/f = {}, d/b = {}, d/c = {}, d'/d = {}; p99 d/b = {}{}\n",
            ratio(Setup::Portico, Setup::EmptyWasm, rps),
            ratio(Setup::Portico, Setup::JwtAuthn, rps),
            ratio(Setup::Portico, Setup::JwtAuthnCached, rps),
            ratio(Setup::Portico, Setup::NoFilter, rps),
            ratio(Setup::PorticoLimited, Setup::Portico, rps),
            ratio(Setup::Portico, Setup::EmptyWasm, cpu),
            ratio(Setup::Portico, Setup::JwtAuthn, cpu),
            ratio(Setup::Portico, Setup::JwtAuthnCached, cpu),
            ratio(Setup::PorticoLimited, Setup::Portico, cpu),
            ratio(Setup::Portico, Setup::JwtAuthn, p99),
            if medians.contains_key(&Setup::PorticoAtScale) {
                format!(
                    ", e/d = {}",
                    ratio(Setup::PorticoAtScale, Setup::Portico, rps)
                )
            } else {
                String::new()
            }
        );
        let over = |of: Setup, to: Setup| match (medians.get(&of), medians.get(&to)) {
            (Some(a), Some(b)) => format!("{:+.1}", a.cpu_us - b.cpu_us),
            _ => "n/a".to_owned(),
        };
        let _ = writeln!(
            out,
            "CPU µs per request over the floor: g−f = {} (handing the headers over), d−g = {} \
             (Portico's own work), d−f = {}, d'−d = {} (a rate limit), d\"−d = {} (route \
             metadata)\n",
            over(Setup::HeadersWasm, Setup::EmptyWasm),
            over(Setup::Portico, Setup::HeadersWasm),
            over(Setup::Portico, Setup::EmptyWasm),
            over(Setup::PorticoLimited, Setup::Portico),
            over(Setup::PorticoRouteMetadata, Setup::Portico),
        );
        if let Some(f) = medians.get(&Setup::EmptyWasm)
            && medians.contains_key(&Setup::PorticoCallsWasm)
        {
            let per_call: Vec<String> = HostCall::ALL
                .into_iter()
                .filter_map(|call| {
                    let probe = medians.get(&Setup::Probe(call))?;
                    Some(format!(
                        "{} {:.2} µs",
                        call.label(),
                        (probe.cpu_us - f.cpu_us) / PROBE_CALLS as f64
                    ))
                })
                .collect();
            let _ = writeln!(
                out,
                "Portico's host calls in the same run: h−f = {} (the header map, the clock, one \
                 header set, once each), d−h = {} (Portico's decision in the VM). Each call \
                 alone, amplified ((p) − f) / {PROBE_CALLS}, a lower bound since repeated calls \
                 find the data warm: {}\n",
                over(Setup::PorticoCallsWasm, Setup::EmptyWasm),
                over(Setup::Portico, Setup::PorticoCallsWasm),
                per_call.join(", "),
            );
        }
        let (Some(d), Some(b)) = (medians.get(&Setup::Portico), medians.get(&Setup::JwtAuthn))
        else {
            continue;
        };
        let rounds = |setup: Setup| results[&(workload.name, setup)].as_slice();
        targets.push(Target {
            workload: workload.name,
            what: format!("p99 d/b ≤ 1.0: {:.0} µs vs {:.0} µs", d.p99_us, b.p99_us),
            verdict: Verdict::of(&paired(
                rounds(Setup::Portico),
                rounds(Setup::JwtAuthn),
                |d, b| d.wrk.p99_us as f64 / b.wrk.p99_us.max(1) as f64,
                |ratio| ratio <= 1.0,
            )),
        });
        if workload.name.contains("repeated")
            && let Some(f) = medians.get(&Setup::EmptyWasm)
        {
            targets.push(Target {
                workload: workload.name,
                what: format!(
                    "CPU d − f ≤ 1.0 µs: {:.1} µs vs {:.1} µs ({:+.1})",
                    d.cpu_us,
                    f.cpu_us,
                    d.cpu_us - f.cpu_us
                ),
                verdict: Verdict::of(&paired(
                    rounds(Setup::Portico),
                    rounds(Setup::EmptyWasm),
                    |d, f| d.cpu_us() - f.cpu_us(),
                    |over| over <= 1.0,
                )),
            });
            let one_header = Setup::Probe(HostCall::OneHeader);
            if let Some(p1) = medians.get(&one_header) {
                targets.push(Target {
                    workload: workload.name,
                    what: format!(
                        "room under that target: one header read ≤ 1.0 µs: {:.2} µs",
                        (p1.cpu_us - f.cpu_us) / PROBE_CALLS as f64
                    ),
                    verdict: Verdict::of(&paired(
                        rounds(one_header),
                        rounds(Setup::EmptyWasm),
                        |p1, f| (p1.cpu_us() - f.cpu_us()) / PROBE_CALLS as f64,
                        |per_call| per_call <= 1.0,
                    )),
                });
            }
            targets.push(Target {
                workload: workload.name,
                what: format!("requests/s d/f ≥ 0.97: {:.3}", d.rps / f.rps),
                verdict: Verdict::of(&paired(
                    rounds(Setup::Portico),
                    rounds(Setup::EmptyWasm),
                    |d, f| d.wrk.rps() / f.wrk.rps(),
                    |ratio| ratio >= 0.97,
                )),
            });
        }
        if workload.name.contains("10k")
            && workload.expected_status == 200
            && let Some(c) = medians.get(&Setup::JwtAuthnCached)
        {
            targets.push(Target {
                workload: workload.name,
                what: format!("requests/s d/c ≥ 1.0: {:.3}", d.rps / c.rps),
                verdict: Verdict::of(&paired(
                    rounds(Setup::Portico),
                    rounds(Setup::JwtAuthnCached),
                    |d, c| d.wrk.rps() / c.wrk.rps(),
                    |ratio| ratio >= 1.0,
                )),
            });
        }
    }
    let _ = writeln!(out, "### Targets (issue 10)\n");
    let _ = writeln!(out, "| workload | target | met |");
    let _ = writeln!(out, "| --- | --- | --- |");
    for target in &targets {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            target.workload,
            target.what,
            target.verdict.cell()
        );
    }
    let _ = writeln!(
        out,
        "\n### Scale snapshot (100,000 bindings, 1,001 APIs, 1,001 policies)\n\n\
         decode and apply in the filter, per VM: {:?} ms; VM linear memory after apply: {:.1} MiB",
        scale.apply_ms,
        scale.vm_memory_bytes as f64 / (1024.0 * 1024.0)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::Verdict;

    #[test]
    fn a_target_is_judged_only_when_every_round_agrees() {
        assert!(matches!(
            Verdict::of(&[(0.5, true), (0.9, true), (1.0, true)]),
            Verdict::Met
        ));
        assert!(matches!(
            Verdict::of(&[(1.5, false), (3.0, false)]),
            Verdict::NotMet
        ));
        let Verdict::Unreadable { low, high } =
            Verdict::of(&[(-29.0, true), (24.2, false), (3.0, false)])
        else {
            panic!("rounds that disagree are not readable");
        };
        assert_eq!((low, high), (-29.0, 24.2));
    }
}
