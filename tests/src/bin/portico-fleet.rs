//! Measures a fleet: `F` filters (default 1,000) long-polling the control plane, and how fast
//! `C` changes (default 100) reach every one of them. Prints, as markdown:
//!
//! - the latency from just before each admin write was sent until each filter had the new
//!   version, p50 / p99 / max over every (filter, change) pair, and per change until every
//!   filter had it (the slowest filter), p50 / p99 / max, against the target of p99 under 1 s;
//! - the control plane's CPU time over the changes (in all and per change), its resident
//!   memory (VmRSS, VmHWM) after the warm-up and at the end, and its open connections (the
//!   ESTABLISHED TCP sockets of its process, and its `portico_open_long_polls` gauge);
//! - the bytes sent per change: the bodies of the answers that carried it, over every filter
//!   and per filter.
//!
//! Each filter is one task with a client of its own, so one HTTP/1.1 keep-alive connection,
//! polling as a filter polls (`docs/snapshot.md`, "The long poll"): `GET
//! /v1/snapshot?since=<version it has>&wait=<wait>&node=…&instance=…` with the data-plane token
//! and the binary `Accept`; it records the instant and the body's size of every version it
//! receives. Once every filter holds the version in force, the changes are made one after
//! another through the admin API (a policy's rate limit replaced, so that each one changes the
//! snapshot), each after every filter received the previous one.
//!
//! Usage: `portico-fleet [--filters 1000] [--changes 100] [--wait 30] [--control-plane URL ...]`.
//! Without `--control-plane` it starts the built `portico` (the binary next to this one;
//! scripts/bench.sh builds both in release mode) on a fresh store. With one or more
//! `--control-plane http://127.0.0.1:PORT` (loopback only) the filters are spread round-robin
//! over them, the admin writes go to the first, and the key and token come from
//! `PORTICO_ADMIN_KEY` and `PORTICO_DATA_PLANE_TOKEN` (the harness's by default); CPU, memory
//! and sockets are then not read (they are another machine's or user's processes).
//!
//! Every filter holds a socket here and one on the control plane, so the soft limit on open
//! files (`ulimit -n`) must exceed the filters: the tool checks it first and says how to
//! raise it. Never part of the tests.

use std::collections::HashSet;
use std::error::Error as _;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portico_core::snapshot::BINARY_MEDIA_TYPE;
use portico_core::testing::TestKey;
use portico_tests::ControlPlane;
use portico_tests::control_plane::{ADMIN_KEY, DATA_PLANE_TOKEN};
use portico_tests::memory::{cpu_seconds, mib, peak_rss, rss};
use reqwest::{Method, Url};
use serde_json::{Value, json};
use tokio::sync::watch;

const USAGE: &str = "usage: portico-fleet [--filters N] [--changes N] [--wait SECONDS] \
                     [--control-plane http://127.0.0.1:PORT ...]";
/// The response header naming the snapshot's version (`docs/snapshot.md`).
const VERSION_HEADER: &str = "x-portico-snapshot-version";
/// How long every filter may take to hold the version in force at the start.
const WARM_UP_BOUND: Duration = Duration::from_secs(120);
/// How long a change may take to reach every filter before the run is declared broken.
const CHANGE_BOUND: Duration = Duration::from_secs(60);
/// How long a filter waits before polling again after a transport error.
const RETRY_AFTER: Duration = Duration::from_millis(100);
/// How long the readings wait for every filter's poll to be open again.
const SETTLE_POLLS: Duration = Duration::from_secs(5);
/// File descriptors needed beyond one per filter (the runtime, the log, the admin client,
/// and the control plane's own files when it runs here, inheriting the limit).
const SPARE_FILES: u64 = 256;
/// The target of issue 16: p99 of a change's time to every filter.
const TARGET: Duration = Duration::from_secs(1);
const ISSUER_ID: &str = "fleet-issuer";
const API_ID: &str = "fleet-api";
const POLICY_ID: &str = "fleet-policy";
const CATALOGUE_ID: &str = "fleet-catalogue";

#[tokio::main]
async fn main() {
    let options = match parse_options(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            std::process::exit(64);
        }
    };
    if let Err(message) = run(&options).await {
        eprintln!("portico-fleet: {message}");
        std::process::exit(1);
    }
}

/// The command line.
#[derive(Debug, PartialEq)]
struct Options {
    filters: usize,
    changes: usize,
    /// The long poll's `wait`, in seconds (1 to 300, the control plane's maximum).
    wait: u64,
    /// Control planes to poll (base URLs without a trailing `/`); empty: start one.
    control_planes: Vec<String>,
}

/// Parses the arguments after the program's name.
fn parse_options(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        filters: 1_000,
        changes: 100,
        wait: 30,
        control_planes: Vec::new(),
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} takes a value"));
        match flag.as_str() {
            "--filters" => options.filters = positive(&flag, &value?)?,
            "--changes" => options.changes = positive(&flag, &value?)?,
            "--wait" => match positive(&flag, &value?)? {
                wait @ 1..=300 => options.wait = wait,
                _ => return Err("--wait is at most 300 seconds".to_owned()),
            },
            "--control-plane" => options.control_planes.push(loopback_url(&value?)?),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(options)
}

/// `value`, the value of `flag`, as a whole number above 0.
fn positive<T: FromStr + Default + PartialEq>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .ok()
        .filter(|n| *n != T::default())
        .ok_or_else(|| format!("{flag} takes a whole number above 0, not `{value}`"))
}

/// `url` without its trailing `/`, when it is `http://` on a loopback address.
fn loopback_url(url: &str) -> Result<String, String> {
    let parsed = Url::parse(url).map_err(|error| format!("`{url}` is not a URL: {error}"))?;
    let loopback = parsed.host_str().is_some_and(|host| {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    });
    if parsed.scheme() != "http" || !loopback {
        return Err(format!(
            "`{url}`: only http:// control planes on a loopback address (127.0.0.1) are polled"
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// A control plane the fleet polls: its base URL, and its process when it runs here.
#[derive(Debug, Clone)]
struct Endpoint {
    url: String,
    pid: Option<u32>,
}

/// The whole measurement: control plane, seed, fleet, warm-up, changes, report. Errors say
/// what failed; the control plane started here is stopped either way (when `started` drops).
async fn run(options: &Options) -> Result<(), String> {
    check_open_files_limit(options.filters)?;
    // Kept alive until the end: dropping it stops the control plane.
    let mut started = None;
    let endpoints = if options.control_planes.is_empty() {
        let control_plane = ControlPlane::start(&[("PORTICO_LOG", "info")]).await;
        let endpoint = Endpoint {
            url: control_plane.url(""),
            pid: control_plane.pid(),
        };
        started = Some(control_plane);
        vec![endpoint]
    } else {
        options
            .control_planes
            .iter()
            .map(|url| Endpoint {
                url: url.clone(),
                pid: None,
            })
            .collect()
    };
    let secret = |name: &str, default: &str| {
        std::env::var(name)
            .ok()
            .filter(|value| !value.is_empty())
            .unwrap_or_else(|| default.to_owned())
    };
    let admin = Admin {
        http: reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|error| format!("an HTTP client: {error}"))?,
        url: endpoints[0].url.clone(),
        key: secret("PORTICO_ADMIN_KEY", ADMIN_KEY),
    };
    let first_limit = seed(&admin).await?;
    let spec = Arc::new(PollSpec {
        wait_seconds: options.wait,
        token: secret("PORTICO_DATA_PLANE_TOKEN", DATA_PLANE_TOKEN),
        run: std::process::id(),
    });

    let warming = Instant::now();
    let mut fleet = Fleet::start(&endpoints, options.filters, &spec);
    let mut version = fleet.holding_version_in_force(&admin).await?;
    let warm_up = warming.elapsed();
    let warm = Readings::once_polling(&endpoints, options.filters).await;

    let tool = std::process::id();
    let cpu_before = (cpu_of(&endpoints), cpu_seconds(tool));
    let mut changes = Vec::with_capacity(options.changes);
    for n in 0..options.changes {
        let before = version;
        let sent = Instant::now();
        admin.change(first_limit + 1 + n as u64).await?;
        let answered = sent.elapsed();
        version = fleet.settled(|version| version != before).await?;
        changes.push(Change {
            before,
            sent,
            answered,
        });
    }
    let cpu = (
        cpu_of(&endpoints) - cpu_before.0,
        cpu_seconds(tool) - cpu_before.1,
    );
    let end = Readings::once_polling(&endpoints, options.filters).await;
    let (receipts, retries) = fleet.stop().await;
    drop(started);

    print_report(&Report {
        options,
        endpoints: &endpoints,
        warm_up,
        deliveries: deliveries(&changes, &receipts),
        changes: &changes,
        answers_during_changes: changes.first().map_or(0, |first| {
            receipts
                .iter()
                .flatten()
                .filter(|received| received.at >= first.sent)
                .count()
        }),
        retries,
        cpu,
        readings: [("after the warm-up", warm), ("at the end", end)],
    });
    Ok(())
}

// === File descriptors ===

/// Fails, saying how to raise it, when the soft `RLIMIT_NOFILE` (from `/proc/self/limits`)
/// cannot hold a socket per filter here and on a control plane started here (which inherits it).
fn check_open_files_limit(filters: usize) -> Result<(), String> {
    let needed = filters as u64 + SPARE_FILES;
    let limits = std::fs::read_to_string("/proc/self/limits")
        .map_err(|error| format!("cannot read /proc/self/limits: {error}"))?;
    match soft_open_files_limit(&limits) {
        Some(soft) if soft < needed => Err(format!(
            "the soft limit on open files is {soft}, and {filters} filters need about {needed} \
             (a socket each here and on the control plane): raise it with `ulimit -n {needed}` \
             before running (scripts/bench.sh does), or run fewer filters"
        )),
        _ => Ok(()),
    }
}

/// The soft limit of `Max open files` in a `/proc/<pid>/limits` table; `None` when absent or
/// `unlimited`.
fn soft_open_files_limit(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether `error` comes from running out of file descriptors (`EMFILE`, `ENFILE`).
fn out_of_files(error: &reqwest::Error) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    std::iter::successors(error.source(), |cause| (*cause).source()).any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .is_some_and(|code| code == EMFILE || code == ENFILE)
    })
}

/// What to say when `error` is [`out_of_files`].
fn out_of_files_message(error: &reqwest::Error) -> String {
    format!(
        "out of file descriptors ({error}): raise the soft limit with `ulimit -n` (at least \
         the filters + {SPARE_FILES}) before running"
    )
}

// === The admin API ===

/// Admin-API calls on one control plane, with an admin key.
struct Admin {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl Admin {
    /// Sends `body` (if any) to `/admin/v1{path}` (a `PUT` with `If-Match: *`); the status and JSON body (`Null` if none).
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}/admin/v1{path}", self.url))
            .bearer_auth(&self.key);
        if method == Method::PUT {
            request = request.header("if-match", "*");
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|error| format!("{method} /admin/v1{path}: {error}"))?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    /// A change: the policy's rate limit replaced by `requests` a minute.
    async fn change(&self, requests: u64) -> Result<(), String> {
        let path = format!("/policies/{POLICY_ID}");
        match self
            .send(Method::PUT, &path, Some(&policy(requests)))
            .await?
        {
            (200, _) => Ok(()),
            (status, body) => Err(format!("PUT /admin/v1{path} answered {status}: {body}")),
        }
    }
}

/// The policy: access to the API, and a rate limit of `requests` a minute.
fn policy(requests: u64) -> Value {
    json!({"id": POLICY_ID, "name": "Fleet", "access_rights": [{"api": API_ID}],
           "rate_limit": {"requests": requests, "per_seconds": 60}})
}

/// Through the admin API: an issuer (inline keys: nothing to fetch), an API, a policy and a
/// catalogue entry. Resources already there (a control plane seeded by an earlier run) are
/// kept. Answers the policy's rate limit, which the changes then raise by one each, so that
/// each one changes the snapshot, on a control plane seeded by an earlier run too.
async fn seed(admin: &Admin) -> Result<u64, String> {
    let resources = [
        (
            "/issuers",
            json!({"id": ISSUER_ID, "issuer": "https://fleet.example.com",
                   "jwks": {"inline": portico_core::testing::jwks(&[&TestKey::rsa_a()])}}),
        ),
        (
            "/apis",
            json!({"id": API_ID, "name": "Fleet", "listen_path": "/fleet",
                   "issuers": [ISSUER_ID], "accept_any_audience": true,
                   "identity_claims": ["client_id"]}),
        ),
        ("/policies", policy(100)),
        (
            "/catalogue",
            json!({"id": CATALOGUE_ID, "name": "Fleet", "policy": POLICY_ID}),
        ),
    ];
    for (collection, body) in resources {
        match admin.send(Method::POST, collection, Some(&body)).await? {
            (201, _) => {}
            (409, answer) if answer["error"] == "already_exists" => {}
            (status, answer) => {
                return Err(format!(
                    "POST /admin/v1{collection} answered {status}: {answer}"
                ));
            }
        }
    }
    let path = format!("/policies/{POLICY_ID}");
    match admin.send(Method::GET, &path, None).await? {
        (200, policy) => policy["rate_limit"]["requests"]
            .as_u64()
            .ok_or_else(|| format!("GET /admin/v1{path}: no rate limit in {policy}")),
        (status, answer) => Err(format!("GET /admin/v1{path} answered {status}: {answer}")),
    }
}

// === The fleet ===

/// How every filter polls: the parameters of `GET /v1/snapshot` (`docs/snapshot.md`).
#[derive(Debug)]
struct PollSpec {
    /// The `wait` parameter, in seconds.
    wait_seconds: u64,
    /// The data-plane token (a secret: never printed).
    token: String,
    /// Part of every instance id, so that the rows of an earlier run stay apart in
    /// `GET /admin/v1/filters`.
    run: u32,
}

impl PollSpec {
    /// A filter's client: its own connection pool, so its own keep-alive connection. Plain
    /// HTTP on loopback: no TLS roots, so that building a thousand clients does not read the
    /// system's certificates a thousand times.
    fn client(&self) -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .no_proxy()
            .tls_certs_only(Vec::<reqwest::Certificate>::new())
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(self.wait_seconds + 30))
            .build()
    }

    /// Filter `filter`'s poll for anything other than version `since` (0: none yet) on the
    /// control plane at `url`.
    fn request(
        &self,
        http: &reqwest::Client,
        url: &str,
        filter: usize,
        since: u64,
    ) -> reqwest::RequestBuilder {
        http.get(format!(
            "{url}/v1/snapshot?since={since}&wait={}&node=portico-fleet&instance={:08x}-{filter:06}",
            self.wait_seconds, self.run
        ))
        .header("accept", BINARY_MEDIA_TYPE)
        .bearer_auth(&self.token)
    }
}

/// A snapshot a filter received.
#[derive(Debug, Clone, Copy)]
struct Received {
    version: u64,
    /// When its last byte arrived.
    at: Instant,
    /// The body's size.
    bytes: usize,
}

/// What the filters have reached, shared with the coordinator.
#[derive(Debug, Default)]
struct Progress {
    /// Each filter's version (0: none yet).
    versions: Vec<u64>,
    /// Why a filter stopped, when one did.
    failure: Option<String>,
    /// Transport errors, each retried after [`RETRY_AFTER`].
    retries: usize,
}

/// The running filters.
struct Fleet {
    progress: watch::Receiver<Progress>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Received>>>,
}

impl Fleet {
    /// Starts `filters` filters, spread round-robin over `endpoints`.
    fn start(endpoints: &[Endpoint], filters: usize, spec: &Arc<PollSpec>) -> Fleet {
        let (progress_sender, progress) = watch::channel(Progress {
            versions: vec![0; filters],
            ..Progress::default()
        });
        let progress_sender = Arc::new(progress_sender);
        let (stop, stopped) = watch::channel(false);
        let tasks = (0..filters)
            .map(|filter| {
                tokio::spawn(poll_loop(
                    filter,
                    endpoints[filter % endpoints.len()].url.clone(),
                    Arc::clone(spec),
                    Arc::clone(&progress_sender),
                    stopped.clone(),
                ))
            })
            .collect();
        Fleet {
            progress,
            stop,
            tasks,
        }
    }

    /// Waits (at most [`CHANGE_BOUND`]) until every filter holds one version that `wanted`
    /// accepts, and answers it.
    async fn settled(&mut self, wanted: impl Fn(u64) -> bool) -> Result<u64, String> {
        self.settled_within(CHANGE_BOUND, wanted).await
    }

    async fn settled_within(
        &mut self,
        bound: Duration,
        wanted: impl Fn(u64) -> bool,
    ) -> Result<u64, String> {
        let settled = |progress: &Progress| {
            let first = *progress.versions.first()?;
            (first != 0 && wanted(first) && progress.versions.iter().all(|v| *v == first))
                .then_some(first)
        };
        // The channel's guard is dropped at once: the filters cannot publish while it is held.
        let waited = tokio::time::timeout(
            bound,
            self.progress
                .wait_for(|progress| progress.failure.is_some() || settled(progress).is_some()),
        )
        .await
        .is_ok_and(|result| result.is_ok());
        let progress = self.progress.borrow();
        if let Some(failure) = &progress.failure {
            return Err(failure.clone());
        }
        match (waited, settled(&progress)) {
            (true, Some(version)) => Ok(version),
            _ => Err(format!(
                "the filters did not settle on one version within {bound:?}: {}",
                describe_versions(&progress.versions)
            )),
        }
    }

    /// Waits (at most [`WARM_UP_BOUND`]) until every filter holds the version in force, as
    /// `GET /admin/v1/snapshot` tells it, and answers it.
    async fn holding_version_in_force(&mut self, admin: &Admin) -> Result<u64, String> {
        let deadline = Instant::now() + WARM_UP_BOUND;
        // Bounded by the deadline: each turn waits for the fleet, then checks the version.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let version = self.settled_within(left, |_| true).await?;
            let (status, info) = admin.send(Method::GET, "/snapshot", None).await?;
            if status == 200 && info["version"].as_u64() == Some(version) {
                return Ok(version);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the filters hold version {version}, the control plane answers {status} \
                     {info}"
                ));
            }
            tokio::time::sleep(RETRY_AFTER).await;
        }
    }

    /// Stops every filter; what each received, and the transport errors retried.
    async fn stop(self) -> (Vec<Vec<Received>>, usize) {
        self.stop.send_replace(true);
        let mut receipts = Vec::with_capacity(self.tasks.len());
        for task in self.tasks {
            receipts.push(task.await.unwrap_or_default());
        }
        let retries = self.progress.borrow().retries;
        (receipts, retries)
    }
}

/// Counts of filters by version, for a message.
fn describe_versions(versions: &[u64]) -> String {
    let mut counts = std::collections::BTreeMap::<u64, usize>::new();
    for version in versions {
        *counts.entry(*version).or_default() += 1;
    }
    counts
        .iter()
        .map(|(version, count)| format!("{count} at version {version}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One filter: polls `url` until `stop` turns true, publishing each version it receives in
/// `progress`; answers what it received.
async fn poll_loop(
    filter: usize,
    url: String,
    spec: Arc<PollSpec>,
    progress: Arc<watch::Sender<Progress>>,
    mut stop: watch::Receiver<bool>,
) -> Vec<Received> {
    let fail = |message: String| {
        progress.send_modify(|progress| {
            progress.failure.get_or_insert(message);
        });
    };
    let http = match spec.client() {
        Ok(http) => http,
        Err(error) if out_of_files(&error) => {
            fail(format!("filter {filter}: {}", out_of_files_message(&error)));
            return Vec::new();
        }
        Err(error) => {
            fail(format!("filter {filter}: an HTTP client: {error}"));
            return Vec::new();
        }
    };
    let mut received = Vec::new();
    let mut since = 0;
    // Bounded: ends when the run ends (`stop`), or at the first failure.
    loop {
        let answer = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => return received,
            answer = poll(&spec, &http, &url, filter, since) => answer,
        };
        match answer {
            Ok(Some(snapshot)) => {
                since = snapshot.version;
                received.push(snapshot);
                progress.send_modify(|progress| progress.versions[filter] = snapshot.version);
            }
            Ok(None) => {}
            Err(PollError::Failed(message)) => {
                fail(format!("filter {filter}: {message}"));
                return received;
            }
            Err(PollError::Retry) => {
                progress.send_modify(|progress| progress.retries += 1);
                tokio::select! {
                    _ = stop.wait_for(|stop| *stop) => return received,
                    () = tokio::time::sleep(RETRY_AFTER) => {}
                }
            }
        }
    }
}

/// Why a poll brought nothing.
enum PollError {
    /// A transport error (a connection reset, a timeout): poll again.
    Retry,
    /// Anything else ends the run: out of file descriptors, an unexpected status.
    Failed(String),
}

/// One poll: `Some` snapshot (200), `None` when nothing changed within `wait` (304).
async fn poll(
    spec: &PollSpec,
    http: &reqwest::Client,
    url: &str,
    filter: usize,
    since: u64,
) -> Result<Option<Received>, PollError> {
    let transport = |error: reqwest::Error| {
        if out_of_files(&error) {
            PollError::Failed(out_of_files_message(&error))
        } else {
            PollError::Retry
        }
    };
    let response = spec
        .request(http, url, filter, since)
        .send()
        .await
        .map_err(transport)?;
    match response.status().as_u16() {
        304 => Ok(None),
        200 => {
            let version = response
                .headers()
                .get(VERSION_HEADER)
                .and_then(|value| value.to_str().ok()?.parse().ok())
                .ok_or_else(|| PollError::Failed(format!("a 200 without `{VERSION_HEADER}`")))?;
            let body = response.bytes().await.map_err(transport)?;
            Ok(Some(Received {
                version,
                at: Instant::now(),
                bytes: body.len(),
            }))
        }
        status => Err(PollError::Failed(format!(
            "the snapshot poll answered {status}"
        ))),
    }
}

// === Figures ===

/// One change as it was made.
#[derive(Debug, Clone, Copy)]
struct Change {
    /// The version every filter held before it.
    before: u64,
    /// Just before the admin write was sent.
    sent: Instant,
    /// The admin write's time until its answer.
    answered: Duration,
}

/// How one change reached one filter.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Delivery {
    /// From just before the admin write was sent until the filter had the new version.
    latency: Duration,
    /// The body of the answer that carried it.
    bytes: usize,
}

/// For each change, each filter's delivery: its first receipt, from the instant the change
/// was sent, of a version other than the one every filter held before; `None` when it has
/// none. `receipts[filter]` is in the order received.
fn deliveries(changes: &[Change], receipts: &[Vec<Received>]) -> Vec<Vec<Option<Delivery>>> {
    changes
        .iter()
        .map(|change| {
            receipts
                .iter()
                .map(|received| {
                    let from = received.partition_point(|r| r.at < change.sent);
                    received[from..]
                        .iter()
                        .find(|r| r.version != change.before)
                        .map(|r| Delivery {
                            latency: r.at - change.sent,
                            bytes: r.bytes,
                        })
                })
                .collect()
        })
        .collect()
}

/// The p50, p99 and maximum of some durations (nearest rank), and how many there are.
#[derive(Debug, PartialEq)]
struct Figures {
    samples: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Figures {
    fn of(mut durations: Vec<Duration>) -> Figures {
        durations.sort_unstable();
        let rank = |percent: usize| {
            let index = (durations.len() * percent).div_ceil(100).saturating_sub(1);
            durations.get(index).copied().unwrap_or_default()
        };
        Figures {
            samples: durations.len(),
            p50: rank(50),
            p99: rank(99),
            max: durations.last().copied().unwrap_or_default(),
        }
    }

    /// A markdown table row.
    fn row(&self, what: &str) -> String {
        format!(
            "| {what} | {:.1} ms | {:.1} ms | {:.1} ms | {} |",
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.samples
        )
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The control planes' CPU seconds so far (those running here).
fn cpu_of(endpoints: &[Endpoint]) -> f64 {
    endpoints
        .iter()
        .filter_map(|endpoint| endpoint.pid)
        .map(cpu_seconds)
        .sum()
}

/// One control plane's state at one moment.
#[derive(Debug)]
struct Reading {
    /// VmRSS and VmHWM in bytes, and ESTABLISHED TCP sockets: when it runs here.
    process: Option<(u64, u64, usize)>,
    /// Its `portico_open_long_polls` gauge.
    open_polls: Option<f64>,
}

/// Every control plane's [`Reading`], in the order of the endpoints.
#[derive(Debug)]
struct Readings(Vec<Reading>);

impl Readings {
    /// Readings taken once the control planes hold `filters` polls open in all (the filters
    /// poll again the moment they receive a snapshot, but not all at once), or after
    /// [`SETTLE_POLLS`] if they never do (a control plane without the gauge, say).
    async fn once_polling(endpoints: &[Endpoint], filters: usize) -> Readings {
        let deadline = Instant::now() + SETTLE_POLLS;
        // Bounded by the deadline.
        loop {
            let readings = Readings::take(endpoints).await;
            let open: f64 = readings
                .0
                .iter()
                .filter_map(|reading| reading.open_polls)
                .sum();
            if open >= filters as f64 || Instant::now() >= deadline {
                return readings;
            }
            tokio::time::sleep(RETRY_AFTER).await;
        }
    }

    async fn take(endpoints: &[Endpoint]) -> Readings {
        let http = reqwest::Client::builder().no_proxy().build().ok();
        let mut readings = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let metrics = match &http {
                Some(http) => match http.get(format!("{}/metrics", endpoint.url)).send().await {
                    Ok(response) => response.text().await.ok(),
                    Err(_) => None,
                },
                None => None,
            };
            readings.push(Reading {
                process: endpoint
                    .pid
                    .map(|pid| (rss(pid), peak_rss(pid), established_sockets(pid))),
                open_polls: metrics
                    .as_deref()
                    .and_then(|text| metric_value(text, "portico_open_long_polls")),
            });
        }
        Readings(readings)
    }
}

/// The ESTABLISHED TCP sockets (IPv4 and IPv6) of process `pid`: its descriptors that are
/// sockets (`/proc/<pid>/fd/*` → `socket:[inode]`) whose inode has state `01` in
/// `/proc/<pid>/net/tcp` or `tcp6` (proc(5)).
fn established_sockets(pid: u32) -> usize {
    let inodes: HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let link = std::fs::read_link(entry.ok()?.path()).ok()?;
            socket_inode(&link.to_string_lossy())
        })
        .collect();
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok())
        .map(|table| {
            established_inodes(&table)
                .filter(|inode| inodes.contains(inode))
                .count()
        })
        .sum()
}

/// The inode of a descriptor's link `socket:[inode]`.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The inodes of the ESTABLISHED (`st` = `01`) sockets of a `/proc/net/tcp` table.
fn established_inodes(table: &str) -> impl Iterator<Item = u64> + '_ {
    table.lines().skip(1).filter_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(3) == Some(&"01") {
            fields.get(9)?.parse().ok()
        } else {
            None
        }
    })
}

/// The value of the unlabelled sample `name` in a Prometheus text exposition.
fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next()? == name).then(|| words.next()?.parse().ok())?
    })
}

/// Everything the report prints.
struct Report<'a> {
    options: &'a Options,
    endpoints: &'a [Endpoint],
    warm_up: Duration,
    changes: &'a [Change],
    deliveries: Vec<Vec<Option<Delivery>>>,
    answers_during_changes: usize,
    retries: usize,
    /// The control planes' and this tool's CPU seconds over the changes.
    cpu: (f64, f64),
    readings: [(&'static str, Readings); 2],
}

fn print_report(report: &Report<'_>) {
    let Options {
        filters,
        changes,
        wait,
        ..
    } = *report.options;
    let local = report
        .endpoints
        .iter()
        .any(|endpoint| endpoint.pid.is_some());
    println!(
        "{filters} filters long-polling {} control plane(s) {}, `wait={wait}`, {changes} changes \
         (`PUT /admin/v1/policies/{POLICY_ID}`, the rate limit replaced), one after another",
        report.endpoints.len(),
        if local {
            "started here (release `portico`, fresh sled store)"
        } else {
            "given with --control-plane"
        }
    );
    println!(
        "warm-up: {:.2} s from the first filter started until all {filters} held the version in \
         force",
        report.warm_up.as_secs_f64()
    );
    let every: Vec<Delivery> = report
        .deliveries
        .iter()
        .flatten()
        .flatten()
        .copied()
        .collect();
    let pairs: Vec<Duration> = every.iter().map(|delivery| delivery.latency).collect();
    let missing = filters * report.changes.len() - pairs.len();
    let to_every: Vec<Duration> = report
        .deliveries
        .iter()
        .map(|change| {
            change
                .iter()
                .flatten()
                .map(|delivery| delivery.latency)
                .max()
                .unwrap_or_default()
        })
        .collect();
    let to_every = Figures::of(to_every);
    println!();
    println!("| from just before the admin write was sent | p50 | p99 | max | samples |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    println!(
        "{}",
        Figures::of(pairs).row("until a filter has the new version (every filter, every change)")
    );
    println!(
        "{}",
        to_every.row("until every filter has it (per change: the slowest filter)")
    );
    println!(
        "{}",
        Figures::of(
            report
                .changes
                .iter()
                .map(|change| change.answered)
                .collect()
        )
        .row("until the admin write is answered")
    );
    println!();
    println!(
        "target (issue 16): p99 under 1 s to all {filters} filters: **{}** ({:.1} ms)",
        if to_every.p99 < TARGET {
            "met"
        } else {
            "not met"
        },
        ms(to_every.p99)
    );
    if missing > 0 {
        println!(
            "({missing} (filter, change) pairs without a delivery: a filter skipped a version)"
        );
    }

    let per_change: Vec<usize> = report
        .deliveries
        .iter()
        .map(|change| change.iter().flatten().map(|delivery| delivery.bytes).sum())
        .collect();
    let per_filter: Vec<usize> = every.iter().map(|delivery| delivery.bytes).collect();
    let range = |values: &[usize]| {
        format!(
            "{} to {} bytes",
            values.iter().min().copied().unwrap_or_default(),
            values.iter().max().copied().unwrap_or_default()
        )
    };
    let count = report.changes.len().max(1) as f64;
    println!();
    println!("| measure | value |");
    println!("| --- | ---: |");
    println!(
        "| bytes sent per change, to all filters (bodies of the answers that carried it) | {} |",
        range(&per_change)
    );
    println!(
        "| bytes sent per change, to one filter | {} |",
        range(&per_filter)
    );
    println!(
        "| snapshots received during the changes (expected {filters} × {changes}) | {} |",
        report.answers_during_changes
    );
    println!("| transport errors, each retried | {} |", report.retries);
    if local {
        println!(
            "| control-plane CPU time over the changes | {:.2} s, {:.1} ms per change |",
            report.cpu.0,
            report.cpu.0 * 1000.0 / count
        );
    }
    println!(
        "| this tool's CPU time over the changes (it shares the machine) | {:.2} s, {:.1} ms per \
         change |",
        report.cpu.1,
        report.cpu.1 * 1000.0 / count
    );
    for (when, readings) in &report.readings {
        for (endpoint, reading) in report.endpoints.iter().zip(&readings.0) {
            let name = if report.endpoints.len() > 1 {
                format!(" ({})", endpoint.url)
            } else {
                String::new()
            };
            if let Some((rss, hwm, established)) = reading.process {
                println!(
                    "| control plane{name} {when}: VmRSS / VmHWM | {:.1} / {:.1} MiB |",
                    mib(rss),
                    mib(hwm)
                );
                println!(
                    "| control plane{name} {when}: ESTABLISHED TCP sockets (the filters', and \
                     this tool's admin and metrics connections) | {established} |"
                );
            }
            if let Some(open) = reading.open_polls {
                println!("| control plane{name} {when}: `portico_open_long_polls` | {open:.0} |");
            }
        }
    }
    if !local {
        println!();
        println!(
            "(control planes given with --control-plane: their CPU time, memory and sockets \
             are not read)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> impl Iterator<Item = String> + '_ {
        line.split_whitespace().map(str::to_owned)
    }

    #[test]
    fn options_default_and_parse() {
        assert_eq!(
            parse_options(args("")),
            Ok(Options {
                filters: 1_000,
                changes: 100,
                wait: 30,
                control_planes: Vec::new()
            })
        );
        let options = parse_options(args(
            "--filters 10 --changes 3 --wait 5 --control-plane http://127.0.0.1:8080/ \
             --control-plane http://[::1]:9000",
        ))
        .unwrap();
        assert_eq!((options.filters, options.changes, options.wait), (10, 3, 5));
        assert_eq!(
            options.control_planes,
            ["http://127.0.0.1:8080", "http://[::1]:9000"]
        );
    }

    #[test]
    fn options_refuse_what_would_leave_the_machine_or_make_no_sense() {
        for line in [
            "--filters 0",
            "--filters many",
            "--wait 301",
            "--changes",
            "--clients 5",
            "--control-plane http://example.com",
            "--control-plane https://127.0.0.1:8080",
        ] {
            assert!(parse_options(args(line)).is_err(), "{line}");
        }
    }

    #[test]
    fn open_files_limit_is_read_from_the_limits_table() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             95852                95852                processes\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(soft_open_files_limit(limits), Some(1024));
        assert_eq!(
            soft_open_files_limit("Max open files unlimited unlimited files"),
            None
        );
    }

    #[test]
    fn established_sockets_are_read_from_the_tcp_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0 100 0 0 10 0\n\
           1: 0100007F:1F90 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000  1000        0 222 1 0 20 4 30 10 -1\n\
           2: 0100007F:1F90 0100007F:A1B3 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0\n";
        assert_eq!(established_inodes(table).collect::<Vec<_>>(), [222]);
        assert_eq!(socket_inode("socket:[222]"), Some(222));
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn metric_value_takes_the_unlabelled_sample() {
        let text = "# HELP portico_open_long_polls Snapshot long polls held open\n\
                    # TYPE portico_open_long_polls gauge\n\
                    portico_open_long_polls 1000\n\
                    portico_open_long_polls_total 3\n";
        assert_eq!(metric_value(text, "portico_open_long_polls"), Some(1000.0));
        assert_eq!(metric_value(text, "portico_connected_filters"), None);
    }

    #[test]
    fn a_delivery_is_the_first_new_version_after_the_change_was_sent() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let received = |version, ms, bytes| Received {
            version,
            at: at(ms),
            bytes,
        };
        let changes = [
            Change {
                before: 7,
                sent: at(100),
                answered: Duration::from_millis(5),
            },
            Change {
                before: 8,
                sent: at(200),
                answered: Duration::from_millis(5),
            },
        ];
        let receipts = vec![
            vec![
                received(7, 10, 50),
                received(8, 130, 60),
                received(9, 250, 61),
            ],
            // Held version 7 again after the change (a repeated answer), then 8; missed 9.
            vec![
                received(7, 10, 50),
                received(7, 110, 50),
                received(8, 140, 60),
            ],
        ];
        let deliveries = deliveries(&changes, &receipts);
        let delivery = |ms, bytes| {
            Some(Delivery {
                latency: Duration::from_millis(ms),
                bytes,
            })
        };
        assert_eq!(deliveries[0], [delivery(30, 60), delivery(40, 60)]);
        assert_eq!(deliveries[1], [delivery(50, 61), None]);
    }

    #[test]
    fn figures_are_nearest_rank() {
        let figures = Figures::of((1..=200).rev().map(Duration::from_millis).collect());
        assert_eq!(
            figures,
            Figures {
                samples: 200,
                p50: Duration::from_millis(100),
                p99: Duration::from_millis(198),
                max: Duration::from_millis(200),
            }
        );
        assert_eq!(Figures::of(Vec::new()).samples, 0);
    }
}
