//! Measures the control plane at scale: the real `portico` binary with `CLIENTS` OAuth clients
//! (default 100,000), 1,000 APIs and 1,000 policies in its store, against a fast local IdP
//! (an in-process RFC 7591/7592 stand-in that answers at once). Prints, as markdown:
//!
//! - the time from a portal registration's answer until a snapshot long poll (made as a
//!   filter makes it, binary encoding) has the new version, and the same after an admin write;
//! - the publication time the control plane logs for each snapshot (`build_ms`: build,
//!   encode, compile);
//! - the latency of a portal registration and of an admin write (a policy replaced);
//! - the snapshot's size, the control plane's resident memory (VmRSS, VmHWM) without and with
//!   the clients and at the end, its CPU time per registration and per write, and how long a
//!   restart takes to publish the full snapshot;
//! - the bytes each change sends to a filter: to one that asks for the whole snapshot (every
//!   filter before deltas), and to one that asks for deltas (a second long poll, made as
//!   today's filter makes it).
//!
//! Registrations and writes are measured one at a time, each after the previous one's
//! snapshot reached the long poll, so each figure is one change on a quiet control plane;
//! first (fewer of them) with the APIs and policies but no clients, for comparison, then
//! with every client.
//!
//! Every OAuth client is registered through the portal, as developers do. Through one
//! control plane that would take more than a day at this scale (each registration costs CPU
//! time in proportion to the clients already stored: compare the two columns printed), so
//! the store is filled in shards: small control planes (the same secret key, issuer and
//! catalogue entries, with the entries' policies and APIs) each take the registrations of one
//! developer through their portal, stop, and their developers, OAuth clients, `client_id` index and idempotency
//! records are copied as they are into the large control plane's store (stopped meanwhile)
//! with the control plane's own store code. Only the large store's audit log lacks the fill's
//! entries; nothing reads it to build snapshots.
//!
//! Usage: `portico-cp-scale [CLIENTS] [CHANGES]`: `CHANGES` registrations and as many admin
//! writes are measured at scale (default 200). Needs the built `portico` binary next to this
//! one (scripts/bench.sh builds both in release mode); never part of the tests.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use portico_control_plane::store::sled::SledStore;
use portico_control_plane::store::{Order, Store, Tree, Write};
use portico_core::snapshot::{BINARY_MEDIA_TYPE, DELTA_MEDIA_TYPE};
use portico_tests::control_plane::DATA_PLANE_TOKEN;
use portico_tests::memory::{cpu_seconds, mib, peak_rss, rss};
use portico_tests::{ControlPlane, FastIdp, PortalSession};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const APIS: usize = 1_000;
const POLICIES: usize = 1_000;
/// Catalogue entries developers register for (each publishes one of the first policies).
const CATALOGUE_ENTRIES: usize = 10;
/// Clients per developer: the most the control plane can be configured to allow one.
const CLIENTS_PER_DEVELOPER: usize = 1_000;
/// Registrations, and admin writes, measured one at a time once the store is full, unless
/// the command line says otherwise.
const CHANGES: usize = 200;
/// Registrations measured one at a time before the clients are stored (APIs and policies
/// only), for comparison.
const BASELINE_REGISTRATIONS: usize = 50;
/// Admin writes measured one at a time before the clients are stored.
const BASELINE_WRITES: usize = 50;
/// Registrations in flight at once while the store is filled.
const FILL_CONCURRENCY: usize = 4;
const PASSWORD: &str = "correct horse battery staple";
/// A change may take at most this long to reach the long poll before the run is declared
/// broken.
const BOUND: Duration = Duration::from_secs(900);
/// The settings of every control plane here, large and small.
const SETTINGS: [(&str, &str); 4] = [
    ("PORTICO_LOG", "info"),
    ("PORTICO_PORTAL_MAX_CLIENTS", "1000"),
    ("PORTICO_PORTAL_REGISTRATIONS_PER_HOUR", "1000"),
    // Registrations wait for the store's single writer; at scale that may take a while, and a
    // timeout would fail the run rather than measure it.
    ("PORTICO_REQUEST_TIMEOUT_SECONDS", "900"),
];

#[tokio::main]
async fn main() {
    let count = |at: usize, default: usize| match std::env::args().nth(at).map(|n| n.parse()) {
        None => default,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: portico-cp-scale [CLIENTS] [CHANGES]");
            std::process::exit(64);
        }
    };
    let (clients, changes) = (count(1, 100_000), count(2, CHANGES));
    let idp = FastIdp::start().await;
    let mut control_plane = ControlPlane::start(&SETTINGS).await;
    let pid = control_plane.pid().expect("a running control plane");
    println!("{clients} clients, {APIS} APIs, {POLICIES} policies");
    let mut memory = vec![Memory::read("started, empty store", pid)];

    let started = Instant::now();
    seed_operator_resources(&control_plane, &idp, APIS).await;
    println!(
        "{APIS} APIs, {POLICIES} policies, {CATALOGUE_ENTRIES} catalogue entries and DCR settings \
         through the admin API: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let measuring = PortalSession::sign_up(&control_plane, "measure@example.com", PASSWORD).await;
    memory.push(Memory::read("after those admin writes", pid));
    control_plane.restart().await;
    let pid = control_plane.pid().expect("a running control plane");
    eventually_snapshot(&control_plane, |_| true).await;
    memory.push(Memory::read(
        "restarted: APIs and policies, no clients",
        pid,
    ));
    let baseline = measure(
        &control_plane,
        &measuring,
        pid,
        "baseline",
        BASELINE_REGISTRATIONS,
        BASELINE_WRITES,
    )
    .await;

    control_plane.kill();
    let fill = fill(
        &idp,
        &control_plane
            .data_dir()
            .join(portico_control_plane::DATABASE_DIR),
        clients,
    )
    .await;
    let stored = clients + BASELINE_REGISTRATIONS;

    let restarted = Instant::now();
    control_plane.restart().await;
    let pid = control_plane.pid().expect("a running control plane");
    let info = eventually_snapshot(&control_plane, |info| {
        info["counts"]["client_bindings"].as_u64() == Some(stored as u64)
    })
    .await;
    let restart_to_snapshot = restarted.elapsed();
    memory.push(Memory::read(
        "restarted with every client, snapshot published",
        pid,
    ));
    let at_scale = measure(&control_plane, &measuring, pid, "scale", changes, changes).await;
    memory.push(Memory::read("end", pid));

    println!();
    println!(
        "filling the store: {clients} clients registered through the portals of {} small \
         control planes ({FILL_CONCURRENCY} registrations in flight), copied into the large \
         store: {:.0} s in all, {:.0} s of it registering ({:.0} registrations/s)",
        fill.shards,
        fill.took.as_secs_f64(),
        fill.registering.as_secs_f64(),
        clients as f64 / fill.registering.as_secs_f64()
    );
    println!(
        "restart with {stored} clients until the snapshot is published: {:.1} s",
        restart_to_snapshot.as_secs_f64()
    );
    println!(
        "snapshot with {stored} client bindings: {} bytes binary, {} bytes JSON (`GET \
         /admin/v1/snapshot`); the long poll downloaded {} bytes",
        info["binary_bytes"], info["json_bytes"], at_scale.first_bytes,
    );
    println!();
    println!(
        "| measure | up to {BASELINE_REGISTRATIONS} clients: p50 | p99 | {stored} clients: p50 \
         | p99 | max | samples |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for ((what, before), (_, after)) in baseline.series().into_iter().zip(at_scale.series()) {
        let (before, after) = (Figures::of(before), Figures::of(after));
        println!(
            "| {what} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {} + {} |",
            before.p50, before.p99, after.p50, after.p99, after.max, before.samples, after.samples
        );
    }
    println!(
        "| control-plane CPU per registration (with its publication and download) | {:.1} ms | | \
         {:.1} ms | | | |",
        baseline.cpu_per_registration * 1000.0,
        at_scale.cpu_per_registration * 1000.0
    );
    println!(
        "| control-plane CPU per admin write (with its publication and download) | {:.1} ms | | \
         {:.1} ms | | | |",
        baseline.cpu_per_write * 1000.0,
        at_scale.cpu_per_write * 1000.0
    );
    println!();
    println!(
        "| bytes sent to each filter | up to {BASELINE_REGISTRATIONS} clients: p50 | max | \
         {stored} clients: p50 | max | samples |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for ((what, before), (_, after)) in baseline.bytes().into_iter().zip(at_scale.bytes()) {
        println!(
            "| {what} | {} | {} | {} | {} | {} + {} |",
            median(before),
            before.iter().max().unwrap_or(&0),
            median(after),
            after.iter().max().unwrap_or(&0),
            before.len(),
            after.len()
        );
    }
    let early = baseline.early + at_scale.early;
    if early > 0 {
        println!("({early} changes reached the long poll before their answer: counted as 0 ms)");
    }
    println!();
    println!("| control plane | VmRSS | VmHWM |");
    println!("| --- | ---: | ---: |");
    for reading in &memory {
        println!(
            "| {} | {:.1} MiB | {:.1} MiB |",
            reading.label,
            mib(reading.rss),
            mib(reading.hwm)
        );
    }
}

/// What one round of measurements saw.
struct Phase {
    /// The size of the first snapshot the long poll downloaded.
    first_bytes: usize,
    registration: Vec<Duration>,
    registration_to_poll: Vec<Duration>,
    registration_builds: Vec<Duration>,
    write: Vec<Duration>,
    write_to_poll: Vec<Duration>,
    write_builds: Vec<Duration>,
    cpu_per_registration: f64,
    cpu_per_write: f64,
    /// Changes that reached the long poll before their answer.
    early: usize,
    /// Per registration, the bytes a filter downloaded: asking for the whole snapshot, and
    /// asking for deltas.
    registration_bytes: (Vec<usize>, Vec<usize>),
    /// The same per admin write.
    write_bytes: (Vec<usize>, Vec<usize>),
}

impl Phase {
    /// Each series of bytes sent to a filter per change, with its name.
    fn bytes(&self) -> [(&'static str, &[usize]); 4] {
        [
            (
                "per registration, to a filter without deltas (the whole snapshot)",
                &self.registration_bytes.0,
            ),
            (
                "per registration, to a filter asking for deltas",
                &self.registration_bytes.1,
            ),
            (
                "per admin write, to a filter without deltas",
                &self.write_bytes.0,
            ),
            (
                "per admin write, to a filter asking for deltas",
                &self.write_bytes.1,
            ),
        ]
    }

    /// Each series of latencies, with its name.
    fn series(&self) -> [(&'static str, &[Duration]); 6] {
        [
            (
                "portal registration answered → long poll has the new version",
                &self.registration_to_poll,
            ),
            (
                "admin write answered → long poll has the new version",
                &self.write_to_poll,
            ),
            (
                "publication after a registration (`build_ms` in the log: build, encode, compile)",
                &self.registration_builds,
            ),
            ("publication after an admin write", &self.write_builds),
            (
                "portal registration (`POST /portal/api/v1/oauth-clients`)",
                &self.registration,
            ),
            ("admin write (`PUT /admin/v1/policies/{id}`)", &self.write),
        ]
    }
}

/// `registrations` portal registrations by `measuring`'s developer, then `writes` admin writes
/// (a policy's rate limit changed, so that every write changes the snapshot), one at a time,
/// each after the previous one reached a long poll.
async fn measure(
    control_plane: &ControlPlane,
    measuring: &PortalSession,
    pid: u32,
    tag: &str,
    registrations: usize,
    writes: usize,
) -> Phase {
    let mut poll = LongPoll::start(control_plane, false);
    let mut delta_poll = LongPoll::start(control_plane, true);
    let first_bytes = poll.beyond(0).await.bytes;
    delta_poll.reach(poll.version()).await;
    let polls = [&mut poll, &mut delta_poll];
    let registrations = timed_changes(polls, pid, registrations, async |n| {
        let body = json!({"catalogue_entries": [catalogue_id(n % CATALOGUE_ENTRIES)],
                          "client_name": format!("measured app {tag} {n}")});
        let answer = measuring
            .register(&format!("measure-{tag}-{n}"), &body)
            .await;
        assert_eq!(
            answer.status, 201,
            "a measured registration: {}",
            answer.body
        );
    })
    .await;
    let polls = [&mut poll, &mut delta_poll];
    let writes = timed_changes(polls, pid, writes, async |n| {
        let policy = policy_body(POLICIES / 2, 1 + n % 2);
        let answer = control_plane
            .admin(
                Method::PUT,
                &format!("/policies/{}", policy_id(POLICIES / 2)),
                Some(&policy),
                Some("*"),
            )
            .await;
        assert_eq!(answer.status, 200, "a measured write: {:?}", answer.body);
    })
    .await;

    let bytes_of = |versions: (u64, u64)| (poll.bytes_in(versions), delta_poll.bytes_in(versions));
    let builds = published_build_times(&control_plane.log());
    let builds_in = |(from, to): (u64, u64)| -> Vec<Duration> {
        builds
            .iter()
            .filter(|(version, _)| *version > from && *version <= to)
            .map(|(_, took)| *took)
            .collect()
    };
    Phase {
        first_bytes,
        registration_builds: builds_in(registrations.versions),
        write_builds: builds_in(writes.versions),
        early: registrations.early + writes.early,
        registration: registrations.answered,
        registration_to_poll: registrations.to_poll,
        cpu_per_registration: registrations.cpu_per_change,
        write: writes.answered,
        write_to_poll: writes.to_poll,
        cpu_per_write: writes.cpu_per_change,
        registration_bytes: bytes_of(registrations.versions),
        write_bytes: bytes_of(writes.versions),
    }
}

fn median(values: &[usize]) -> usize {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}

/// What [`timed_changes`] measured.
struct Changes {
    /// Each change's time until it was answered.
    answered: Vec<Duration>,
    /// Each change's time from its answer until the long poll had a newer version.
    to_poll: Vec<Duration>,
    /// The poll's version before the first change and after the last.
    versions: (u64, u64),
    /// The control plane's CPU seconds per change, its publication and download included.
    cpu_per_change: f64,
    /// Changes that reached the long poll before their answer.
    early: usize,
}

/// Makes `count` changes with `change` (given its index), one at a time, each after the
/// previous one reached both polls: times are measured on `poll` (the whole snapshot), and
/// `deltas` (asking for deltas) is waited for so that it downloads each version on its own;
/// `pid` is the control plane's process, for its CPU time.
#[allow(clippy::cast_precision_loss, reason = "a figure for people")]
async fn timed_changes(
    [poll, deltas]: [&mut LongPoll; 2],
    pid: u32,
    count: usize,
    mut change: impl AsyncFnMut(usize),
) -> Changes {
    let mut answered = Vec::with_capacity(count);
    let mut to_poll = Vec::with_capacity(count);
    let mut early = 0;
    let first_version = poll.version();
    let cpu_before = cpu_seconds(pid);
    for n in 0..count {
        let before = poll.version();
        let sent = Instant::now();
        change(n).await;
        let answer = Instant::now();
        let received = poll.beyond(before).await;
        deltas.reach(received.version).await;
        answered.push(answer - sent);
        if received.at < answer {
            early += 1;
        }
        to_poll.push(received.at.saturating_duration_since(answer));
    }
    Changes {
        answered,
        to_poll,
        versions: (first_version, poll.version()),
        cpu_per_change: (cpu_seconds(pid) - cpu_before) / count as f64,
        early,
    }
}

// === The store's content ===

fn api_id(n: usize) -> String {
    format!("api-{n:04}")
}

fn policy_id(n: usize) -> String {
    format!("policy-{n:04}")
}

fn catalogue_id(n: usize) -> String {
    format!("catalogue-{n:02}")
}

/// Policy `n`: access to API `n`, and a rate limit (`variant` varies it, so that replacing
/// the policy changes the snapshot).
fn policy_body(n: usize, variant: usize) -> Value {
    json!({"name": format!("Policy {n}"), "access_rights": [{"api": api_id(n)}],
           "rate_limit": {"requests": 100 + variant, "per_seconds": 60}})
}

/// Through the admin API: the issuer (the IdP stand-in), `apis` APIs and as many policies
/// (one per API), `CATALOGUE_ENTRIES` catalogue entries and the global DCR settings.
async fn seed_operator_resources(control_plane: &ControlPlane, idp: &FastIdp, apis: usize) {
    control_plane
        .create("/issuers", json!({"id": "idp", "issuer": idp.issuer()}))
        .await;
    for n in 0..apis {
        let id = api_id(n);
        control_plane
            .create(
                "/apis",
                json!({"id": id, "name": format!("API {n}"), "listen_path": format!("/{id}"),
                       "issuers": ["idp"], "audiences": [format!("https://api.example.com/{id}")],
                       "identity_claims": ["client_id", "sub"]}),
            )
            .await;
    }
    for n in 0..apis {
        let mut body = policy_body(n, 0);
        body["id"] = json!(policy_id(n));
        control_plane.create("/policies", body).await;
    }
    for n in 0..CATALOGUE_ENTRIES {
        control_plane
            .create(
                "/catalogue",
                json!({"id": catalogue_id(n), "name": format!("Catalogue entry {n}"),
                       "policy": policy_id(n)}),
            )
            .await;
    }
    control_plane.replace("/dcr", idp.dcr_settings()).await;
}

/// How the store was filled.
struct Fill {
    shards: usize,
    /// Everything: small control planes started, seeded, filled, stopped and copied.
    took: Duration,
    /// The portal registrations alone.
    registering: Duration,
}

/// Registers `clients` OAuth clients through the portals of small control planes, one
/// developer (`CLIENTS_PER_DEVELOPER` clients) each, and copies each one's developer, OAuth
/// clients, `client_id` index and idempotency records into the store at `into`.
async fn fill(idp: &FastIdp, into: &Path, clients: usize) -> Fill {
    let store = SledStore::open(into).expect("the large control plane's store");
    let shards = clients.div_ceil(CLIENTS_PER_DEVELOPER);
    let started = Instant::now();
    let mut registering = Duration::ZERO;
    for shard in 0..shards {
        let first = shard * CLIENTS_PER_DEVELOPER;
        let count = CLIENTS_PER_DEVELOPER.min(clients - first);
        let mut small = ControlPlane::start(&SETTINGS).await;
        seed_operator_resources(&small, idp, CATALOGUE_ENTRIES).await;
        let session = Arc::new(
            PortalSession::sign_up(&small, &format!("dev-{shard:05}@example.com"), PASSWORD).await,
        );
        let registered = Instant::now();
        register_many(&session, first, count).await;
        registering += registered.elapsed();
        small.kill();
        let copied = copy_registrations(
            &small.data_dir().join(portico_control_plane::DATABASE_DIR),
            &store,
        );
        assert_eq!(copied, count, "shard {shard}: every client copied");
        if (shard + 1) % shards.div_ceil(10) == 0 || shard + 1 == shards {
            println!(
                "  fill: {} clients after {:.0} s (this shard: {:.0} registrations/s)",
                first + count,
                started.elapsed().as_secs_f64(),
                count as f64 / registered.elapsed().as_secs_f64()
            );
        }
    }
    Fill {
        shards,
        took: started.elapsed(),
        registering,
    }
}

/// Registers clients `first..first + count` for `session`'s developer, `FILL_CONCURRENCY`
/// at a time.
async fn register_many(session: &Arc<PortalSession>, first: usize, count: usize) {
    let next = Arc::new(AtomicUsize::new(first));
    let workers: Vec<JoinHandle<()>> = (0..FILL_CONCURRENCY)
        .map(|_| {
            let (session, next) = (Arc::clone(session), Arc::clone(&next));
            tokio::spawn(async move {
                // Bounded: each turn takes one of `count` numbers.
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= first + count {
                        return;
                    }
                    let body = json!({"catalogue_entries": [catalogue_id(n % CATALOGUE_ENTRIES)],
                                      "client_name": format!("app {n}")});
                    let answer = session.register(&format!("fill-{n}"), &body).await;
                    assert_eq!(answer.status, 201, "registration {n}: {}", answer.body);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a registering task");
    }
}

/// Copies what the portal's registrations wrote in the (stopped) store at `from` — developers
/// and their email index, OAuth clients and their `client_id` index, idempotency records —
/// byte for byte into `into`, in one transaction. Returns the number of OAuth clients.
fn copy_registrations(from: &Path, into: &SledStore) -> usize {
    let small = SledStore::open(from).expect("a small control plane's store");
    let mut writes = Vec::new();
    let mut clients = 0;
    for tree in [
        Tree::Developers,
        Tree::DeveloperEmails,
        Tree::OAuthClients,
        Tree::OAuthClientIds,
        Tree::Idempotency,
    ] {
        for entry in small.scan(tree, None, Order::Ascending) {
            let (key, value) = entry.expect("a stored record");
            if tree == Tree::OAuthClients {
                clients += 1;
            }
            writes.push(Write::put(tree, key, value));
        }
    }
    into.write_unversioned(&writes).expect("the records copied");
    clients
}

/// Reads `GET /admin/v1/snapshot` until `ready` holds, for at most [`BOUND`].
async fn eventually_snapshot(
    control_plane: &ControlPlane,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    portico_tests::eventually("the snapshot", BOUND, || async {
        let answer = control_plane
            .admin(Method::GET, "/snapshot", None, None)
            .await;
        (answer.status == 200 && answer.body["last_publish_error"].is_null() && ready(&answer.body))
            .then_some(answer.body)
    })
    .await
}

/// Each published version's `build_ms`, from the control plane's log lines
/// `snapshot published version=… bytes=… build_ms=…`.
fn published_build_times(log: &str) -> Vec<(u64, Duration)> {
    let field = |line: &str, name: &str| -> Option<u64> {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))?
            .parse()
            .ok()
    };
    log.lines()
        .filter(|line| line.contains("snapshot published"))
        .filter_map(|line| {
            Some((
                field(line, "version")?,
                Duration::from_millis(field(line, "build_ms")?),
            ))
        })
        .collect()
}

// === The long poll ===

/// A snapshot the long poll received.
#[derive(Debug, Clone, Copy)]
struct Received {
    version: u64,
    /// When its last byte arrived.
    at: Instant,
    /// Its size (binary encoding).
    bytes: usize,
}

/// A snapshot long poll as a filter makes it (`since`, `wait`, the data-plane token, the
/// binary encoding, and with `deltas` the delta encoding first), on its own task, telling what
/// it received.
struct LongPoll {
    received: watch::Receiver<Option<Received>>,
    /// Everything received, in order.
    history: Arc<std::sync::Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl LongPoll {
    fn start(control_plane: &ControlPlane, deltas: bool) -> LongPoll {
        let accept = if deltas {
            format!("{DELTA_MEDIA_TYPE}, {BINARY_MEDIA_TYPE}")
        } else {
            BINARY_MEDIA_TYPE.to_owned()
        };
        let history = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = Arc::clone(&history);
        let url = control_plane.url("/v1/snapshot");
        let (sender, received) = watch::channel(None);
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(120))
            .build()
            .expect("an HTTP client");
        let task = tokio::spawn(async move {
            let mut since = 0;
            // Ends when the receiver is dropped (and the task is aborted with it).
            while !sender.is_closed() {
                let response = http
                    .get(format!("{url}?since={since}&wait=60&node=portico-cp-scale"))
                    .header("accept", &accept)
                    .bearer_auth(DATA_PLANE_TOKEN)
                    .send()
                    .await
                    .expect("a snapshot answer");
                match response.status().as_u16() {
                    304 => {}
                    200 => {
                        let version = response
                            .headers()
                            .get("x-portico-snapshot-version")
                            .and_then(|value| value.to_str().ok()?.parse().ok())
                            .expect("a snapshot version");
                        let body = response.bytes().await.expect("the snapshot");
                        let received = Received {
                            version,
                            at: Instant::now(),
                            bytes: body.len(),
                        };
                        kept.lock().expect("not poisoned").push(received);
                        sender.send_replace(Some(received));
                        since = version;
                    }
                    status => panic!("the snapshot poll answered {status}"),
                }
            }
        });
        LongPoll {
            received,
            history,
            task,
        }
    }

    /// The sizes of what it received for the versions after `from` up to `to`.
    fn bytes_in(&self, (from, to): (u64, u64)) -> Vec<usize> {
        self.history
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|received| received.version > from && received.version <= to)
            .map(|received| received.bytes)
            .collect()
    }

    /// Waits (at most [`BOUND`]) until it has received `version` or a later one.
    async fn reach(&mut self, version: u64) {
        tokio::time::timeout(
            BOUND,
            self.received
                .wait_for(|received| received.is_some_and(|received| received.version >= version)),
        )
        .await
        .unwrap_or_else(|_| panic!("the poll did not reach version {version} within {BOUND:?}"))
        .expect("the long poll is running");
    }

    /// The version received last (0: none yet).
    fn version(&self) -> u64 {
        self.received
            .borrow()
            .map_or(0, |received| received.version)
    }

    /// Waits (at most [`BOUND`]) for a version other than `version`.
    async fn beyond(&mut self, version: u64) -> Received {
        let received = tokio::time::timeout(
            BOUND,
            self.received
                .wait_for(|received| received.is_some_and(|received| received.version != version)),
        )
        .await
        .unwrap_or_else(|_| panic!("no snapshot beyond version {version} within {BOUND:?}"))
        .expect("the long poll is running");
        received.expect("a snapshot")
    }
}

impl Drop for LongPoll {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// === Figures ===

/// The control plane's memory at one moment.
struct Memory {
    label: &'static str,
    rss: u64,
    hwm: u64,
}

impl Memory {
    fn read(label: &'static str, pid: u32) -> Memory {
        Memory {
            label,
            rss: rss(pid),
            hwm: peak_rss(pid),
        }
    }
}

/// The p50, p99 and maximum of some latencies, in milliseconds.
struct Figures {
    samples: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

impl Figures {
    fn of(latencies: &[Duration]) -> Figures {
        let mut sorted = latencies.to_vec();
        sorted.sort();
        let percentile = |p: usize| {
            sorted
                .get((sorted.len() * p / 100).min(sorted.len().saturating_sub(1)))
                .map_or(f64::NAN, |latency| ms(*latency))
        };
        Figures {
            samples: sorted.len(),
            p50: percentile(50),
            p99: percentile(99),
            max: sorted.last().map_or(f64::NAN, |latency| ms(*latency)),
        }
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
