//! Measures what snapshot deltas change for a filter at scale: Envoy (2 workers) with the
//! built filter syncs the scale snapshot (`CLIENTS` bindings, default 100,000, with 1,000 APIs
//! and 1,000 policies) from a snapshot server, then `CHANGES` registrations (default 20: one
//! more binding each, shaped like the control plane's) are published one at a time, each after
//! the previous one is in force. Twice, each time in a fresh Envoy: first every change is
//! answered with the whole snapshot (a filter before deltas, or one that does not ask), then
//! with the delta from the version the filter has. Prints, as markdown:
//!
//! - the bytes each change sent to the filter;
//! - the filter's own time from the answer to enforcement on the worker that polls (its log
//!   line `snapshot N in force (X ms …)`), and on the other worker, which picks the snapshot
//!   up from shared data;
//! - Envoy's CPU time per change (`utime + stime` of `/proc/<pid>/stat`);
//! - the VM's linear memory after the last change (`portico.filter.vm_memory_bytes`) and
//!   Envoy's resident memory.
//!
//! The snapshot server answers from precomputed encodings, so only the filter is measured.
//! Usage: `portico-delta-scale [CLIENTS] [CHANGES]` (release build, with the filter built by
//! `cargo build -p portico-filter --target wasm32-wasip1 --profile wasm-release`); never part
//! of the tests.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use portico_core::snapshot::{BINARY_MEDIA_TYPE, ClientBinding, DELTA_MEDIA_TYPE, SnapshotDelta};
use portico_core::testing::large_snapshot;
use portico_tests::memory::{cpu_seconds, mib, rss};
use portico_tests::{EchoUpstream, Envoy, EnvoyConfig, eventually, serve_local};
use tokio::sync::watch;

const APIS: usize = 1_000;
const POLICIES: usize = 1_000;
/// How long one change may take to be in force before the run is declared broken.
const BOUND: Duration = Duration::from_secs(300);

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).map(|arg| arg.parse::<usize>());
    let (clients, changes) = match (args.next(), args.next()) {
        (None, _) => (100_000, 20),
        (Some(Ok(clients)), None) if clients > 0 => (clients, 20),
        (Some(Ok(clients)), Some(Ok(changes))) if clients > 0 && changes > 0 => (clients, changes),
        _ => {
            eprintln!("usage: portico-delta-scale [CLIENTS] [CHANGES]");
            std::process::exit(64);
        }
    };
    let versions = Arc::new(Versions::new(clients, changes));
    println!(
        "{clients} bindings, {APIS} APIs, {POLICIES} policies: the snapshot is {} bytes; {changes} \
         registrations",
        versions.whole[0].len()
    );
    let upstream = EchoUpstream::start().await;
    let whole = run(&versions, false, upstream.addr).await;
    let deltas = run(&versions, true, upstream.addr).await;

    println!();
    println!(
        "| per registration, {clients} bindings | whole snapshots (before) | deltas (after) |"
    );
    println!("| --- | ---: | ---: |");
    let row =
        |what: &str, before: String, after: String| println!("| {what} | {before} | {after} |");
    row(
        "bytes sent to the filter (p50 / max)",
        format!("{} / {}", median(&whole.bytes), max(&whole.bytes)),
        format!("{} / {}", median(&deltas.bytes), max(&deltas.bytes)),
    );
    row(
        "polling worker: answer to enforcement, ms (p50 / max)",
        format!("{} / {}", median(&whole.poller_ms), max(&whole.poller_ms)),
        format!("{} / {}", median(&deltas.poller_ms), max(&deltas.poller_ms)),
    );
    row(
        "other worker: picked up from shared data, ms (p50 / max)",
        format!("{} / {}", median(&whole.reader_ms), max(&whole.reader_ms)),
        format!("{} / {}", median(&deltas.reader_ms), max(&deltas.reader_ms)),
    );
    row(
        "Envoy CPU time per change, ms",
        format!("{:.0}", whole.cpu_per_change * 1000.0),
        format!("{:.0}", deltas.cpu_per_change * 1000.0),
    );
    row(
        "VM linear memory after the last change, MiB",
        format!("{:.1}", mib(whole.vm_memory)),
        format!("{:.1}", mib(deltas.vm_memory)),
    );
    row(
        "Envoy VmRSS after the last change, MiB",
        format!("{:.1}", mib(whole.rss)),
        format!("{:.1}", mib(deltas.rss)),
    );
    println!();
    println!(
        "deltas: {} applied, {} refused",
        deltas.delta_applied, deltas.delta_refused
    );
}

/// Every version's encodings: version `n` (1-based) is the scale snapshot with `n - 1` more
/// bindings, `whole[n - 1]` its binary encoding, `deltas[n - 2]` the delta from `n - 1`.
struct Versions {
    whole: Vec<Vec<u8>>,
    deltas: Vec<Vec<u8>>,
}

impl Versions {
    fn new(clients: usize, changes: usize) -> Versions {
        let mut snapshot = large_snapshot(clients, APIS, POLICIES);
        let mut whole = vec![snapshot.to_binary().expect("encodes")];
        let mut deltas = Vec::new();
        for n in 0..changes {
            let mut next = snapshot.clone();
            next.version += 1;
            // Sorts after every generated id, as a UUID starting with `f` mostly does.
            next.clients.push(ClientBinding {
                client_id: format!("ffffffff-ffff-4fff-8fff-{n:012x}"),
                policies: vec![format!("policy-{}", n % POLICIES)],
                expires_at: BTreeMap::new(),
                client: Some(format!("cli_{:032x}", u128::MAX - n as u128)),
                developer: Some(format!("dev_{:032x}", u128::MAX)),
            });
            whole.push(next.to_binary().expect("encodes"));
            deltas.push(
                SnapshotDelta::diff(&snapshot, &next)
                    .expect("diffs")
                    .to_binary()
                    .expect("encodes"),
            );
            snapshot = next;
        }
        Versions { whole, deltas }
    }

    fn last(&self) -> u64 {
        self.whole.len() as u64
    }
}

/// The snapshot server's state: the version published now, and every answer's size.
#[derive(Clone)]
struct Server {
    versions: Arc<Versions>,
    deltas: bool,
    published: watch::Receiver<u64>,
    sent: Arc<Mutex<Vec<(u64, usize)>>>,
}

async fn snapshot(
    State(mut server): State<Server>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let since: u64 = query.get("since").and_then(|v| v.parse().ok()).unwrap_or(0);
    let accepts_deltas = headers
        .get("accept")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains(DELTA_MEDIA_TYPE));
    let waited = tokio::time::timeout(
        Duration::from_secs(30),
        server.published.wait_for(|published| *published != since),
    )
    .await;
    let Ok(Ok(published)) = waited else {
        return StatusCode::NOT_MODIFIED.into_response();
    };
    let version = *published;
    let index = usize::try_from(version).expect("a small version") - 1;
    let (content_type, body) = if server.deltas && accepts_deltas && since + 1 == version {
        (DELTA_MEDIA_TYPE, server.versions.deltas[index - 1].clone())
    } else {
        (BINARY_MEDIA_TYPE, server.versions.whole[index].clone())
    };
    server
        .sent
        .lock()
        .expect("not poisoned")
        .push((version, body.len()));
    (
        [
            ("content-type", content_type.to_owned()),
            ("x-portico-snapshot-version", version.to_string()),
        ],
        body,
    )
        .into_response()
}

/// What one Envoy showed over the changes.
struct Run {
    bytes: Vec<u64>,
    poller_ms: Vec<u64>,
    reader_ms: Vec<u64>,
    cpu_per_change: f64,
    vm_memory: u64,
    rss: u64,
    delta_applied: u64,
    delta_refused: u64,
}

/// Syncs a fresh Envoy to version 1, then publishes every later version in turn.
#[allow(clippy::cast_precision_loss, reason = "a figure for people")]
async fn run(versions: &Arc<Versions>, deltas: bool, upstream: SocketAddr) -> Run {
    let (publish, published) = watch::channel(1u64);
    let server = Server {
        versions: Arc::clone(versions),
        deltas,
        published,
        sent: Arc::default(),
    };
    let addr = serve_local(
        axum::Router::new()
            .route("/v1/snapshot", axum::routing::get(snapshot))
            .with_state(server.clone()),
    )
    .await;
    let plugin = serde_json::json!({"control_plane": {"cluster": "snapshots", "token": "t",
                                    "poll_wait_seconds": 30}, "log_level": "info"});
    let mut config = EnvoyConfig::new(plugin.to_string(), upstream);
    config.clusters.push(("snapshots".to_owned(), addr));
    let envoy = Envoy::start(&config).await;
    in_force(&envoy, 1).await;
    let cpu_before = cpu_seconds(envoy.pid());
    for version in 2..=versions.last() {
        publish.send_replace(version);
        in_force(&envoy, version).await;
    }
    let changes = (versions.last() - 1) as f64;
    let cpu_per_change = (cpu_seconds(envoy.pid()) - cpu_before) / changes;
    let bytes = server
        .sent
        .lock()
        .expect("not poisoned")
        .iter()
        .filter(|(version, _)| *version > 1)
        .map(|(_, bytes)| *bytes as u64)
        .collect();
    let (poller_ms, reader_ms) = apply_times(&envoy.log());
    let stat = |name: &'static str| {
        let envoy = &envoy;
        async move {
            envoy
                .stat(&format!("wasmcustom.portico.filter.{name}"))
                .await
                .unwrap_or(0)
        }
    };
    Run {
        bytes,
        poller_ms,
        reader_ms,
        cpu_per_change,
        vm_memory: stat("vm_memory_bytes").await,
        rss: rss(envoy.pid()),
        delta_applied: stat("syncs.outcome.delta_applied").await,
        delta_refused: stat("syncs.outcome.delta_refused").await,
    }
}

/// Waits until both workers of `envoy` enforce `version` (each logs it as in force).
async fn in_force(envoy: &Envoy, version: u64) {
    let line = format!("snapshot {version} in force (");
    eventually(
        &format!("version {version} on both workers"),
        BOUND,
        || async { (envoy.log().matches(&line).count() >= 2).then_some(()) },
    )
    .await;
}

/// The filter's times from an answer to enforcement, from its log, for every version after
/// the first: on the worker that polls (the one whose line comes first, or the one that
/// applied a delta) and on the other one.
fn apply_times(log: &str) -> (Vec<u64>, Vec<u64>) {
    let mut by_version: BTreeMap<u64, Vec<(bool, u64)>> = BTreeMap::new();
    for line in log.lines() {
        let Some((_, rest)) = line.split_once("] snapshot ") else {
            continue;
        };
        let Some((version, rest)) = rest.split_once(" in force (") else {
            continue;
        };
        let (Ok(version), Some(ms)) = (
            version.parse::<u64>(),
            rest.split(' ').next().and_then(|ms| ms.parse().ok()),
        ) else {
            continue;
        };
        by_version
            .entry(version)
            .or_default()
            .push((rest.contains("apply the delta"), ms));
    }
    let (mut poller, mut reader) = (Vec::new(), Vec::new());
    for (_, mut lines) in by_version.into_iter().filter(|(version, _)| *version > 1) {
        let first = lines.iter().position(|(delta, _)| *delta).unwrap_or(0);
        if first < lines.len() {
            poller.push(lines.remove(first).1);
        }
        reader.extend(lines.into_iter().map(|(_, ms)| ms));
    }
    (poller, reader)
}

fn median(values: &[u64]) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}

fn max(values: &[u64]) -> u64 {
    values.iter().copied().max().unwrap_or(0)
}
