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
//! and the binary `Accept`; it decodes every snapshot it receives and holds it, as a filter
//! does, and records the instant, the body's size and the kind of every version it receives.
//! With `--deltas` it also lists the delta media type in `Accept` (`docs/snapshot.md`,
//! "Deltas") and applies each delta to the snapshot it holds; a delta it cannot apply (another
//! base, a digest that does not match) makes it poll again with `since=0` for the whole
//! snapshot, as a filter does, and is counted. Once every filter holds the version in force, the
//! changes are made one after another through the admin API (a policy's rate limit replaced, so
//! that each one changes the snapshot), each after every filter received the previous one.
//!
//! Usage: `portico-fleet [--filters 1000] [--changes 100] [--wait 30] [--deltas]
//! [--replicas N [--postgres]] [--alternate-writes] [--control-plane URL ...]`.
//!
//! - Without `--control-plane` it starts the built `portico` (the binary next to this one;
//!   scripts/bench.sh builds both in release mode) on a fresh sled store; with `--replicas N`
//!   (N above 1, or 1 with `--postgres`) it starts a throwaway PostgreSQL server
//!   ([`portico_tests::postgres`]) and N `portico` processes on one fresh database, one after
//!   another (so the first takes the publication lease), all with the harness's secret key,
//!   admin key and data-plane token. The filters are spread round-robin over the replicas and
//!   the admin writes go to the first (`--alternate-writes`: to each in turn). The report gives
//!   each replica's CPU, memory and sockets, PostgreSQL's CPU (the server and its backends),
//!   the latency to the filters of each replica, and the warnings and errors each replica
//!   logged.
//! - With one or more `--control-plane http://127.0.0.1:PORT` (loopback only) it polls running
//!   control planes instead, spread round-robin, the admin writes going to the first; the key
//!   and token come from `PORTICO_ADMIN_KEY` and `PORTICO_DATA_PLANE_TOKEN` (the harness's by
//!   default); CPU, memory and sockets are then not read (they are another machine's or user's
//!   processes).
//!
//! Every filter holds a socket here and one on a control plane, so the soft limit on open
//! files (`ulimit -n`) must exceed the filters: the tool checks it first and says how to
//! raise it. Never part of the tests.

use std::collections::HashSet;
use std::error::Error as _;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portico_core::snapshot::{BINARY_MEDIA_TYPE, DELTA_MEDIA_TYPE, Snapshot, SnapshotDelta};
use portico_core::testing::TestKey;
use portico_tests::control_plane::{ADMIN_KEY, DATA_PLANE_TOKEN};
use portico_tests::memory::{cpu_seconds, mib, peak_rss, rss};
use portico_tests::{ControlPlane, Postgres};
use reqwest::{Method, Url};
use serde_json::{Value, json};
use tokio::sync::watch;

const USAGE: &str = "usage: portico-fleet [--filters N] [--changes N] [--wait SECONDS] \
                     [--deltas] [--replicas N [--postgres]] [--alternate-writes] \
                     [--control-plane http://127.0.0.1:PORT ...]";
/// The response header naming the snapshot's version (`docs/snapshot.md`).
const VERSION_HEADER: &str = "x-portico-snapshot-version";
/// The response header naming the version a delta applies to (`docs/snapshot.md`, "Deltas").
const DELTA_BASE_HEADER: &str = "x-portico-snapshot-delta-base";
/// How many of each replica's distinct warnings and errors the report quotes.
const LOG_LINES_QUOTED: usize = 5;
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
    /// Whether the filters ask for deltas.
    deltas: bool,
    /// How many control planes to start (replicas on PostgreSQL when more than one).
    replicas: usize,
    /// Whether one started control plane runs on PostgreSQL rather than sled.
    postgres: bool,
    /// Whether the admin writes go to each control plane in turn rather than to the first.
    alternate_writes: bool,
    /// Control planes to poll (base URLs without a trailing `/`); empty: start them.
    control_planes: Vec<String>,
    /// Where to copy the logs of the control planes started here (`<n>.log`), if anywhere.
    keep_logs: Option<std::path::PathBuf>,
}

impl Options {
    /// Whether the control planes started here run on PostgreSQL.
    fn on_postgres(&self) -> bool {
        self.postgres || self.replicas > 1
    }
}

/// Parses the arguments after the program's name.
fn parse_options(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        filters: 1_000,
        changes: 100,
        wait: 30,
        deltas: false,
        replicas: 1,
        postgres: false,
        alternate_writes: false,
        control_planes: Vec::new(),
        keep_logs: None,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} takes a value"));
        match flag.as_str() {
            "--filters" => options.filters = positive(&flag, &value()?)?,
            "--changes" => options.changes = positive(&flag, &value()?)?,
            "--wait" => match positive(&flag, &value()?)? {
                wait @ 1..=300 => options.wait = wait,
                _ => return Err("--wait is at most 300 seconds".to_owned()),
            },
            "--deltas" => options.deltas = true,
            "--replicas" => options.replicas = positive(&flag, &value()?)?,
            "--postgres" => options.postgres = true,
            "--alternate-writes" => options.alternate_writes = true,
            "--control-plane" => options.control_planes.push(loopback_url(&value()?)?),
            "--keep-logs" => options.keep_logs = Some(value()?.into()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if !options.control_planes.is_empty() && (options.replicas > 1 || options.postgres) {
        return Err(
            "--replicas and --postgres start control planes: not with --control-plane".to_owned(),
        );
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

/// The control planes started here and their database, stopped when dropped: the control
/// planes first (fields drop in order), then PostgreSQL.
struct Started {
    control_planes: Vec<ControlPlane>,
    postgres: Option<Postgres>,
}

impl Started {
    /// Nothing when `--control-plane` names running ones; otherwise one control plane on a
    /// fresh sled store, or `--replicas` on one fresh PostgreSQL database, started one after
    /// another so that the first takes the publication lease. Every one has the harness's
    /// secret key, admin key and data-plane token ([`ControlPlane::start`]).
    async fn start(options: &Options) -> Started {
        let mut started = Started {
            control_planes: Vec::new(),
            postgres: None,
        };
        if !options.control_planes.is_empty() {
            return started;
        }
        let database = if options.on_postgres() {
            let postgres = Postgres::start().await;
            let database = postgres.database().await;
            started.postgres = Some(postgres);
            Some(database)
        } else {
            None
        };
        for _ in 0..options.replicas {
            let mut env = vec![("PORTICO_LOG", "info")];
            if let Some(database) = &database {
                env.push(("PORTICO_STORE", database.as_str()));
            }
            started.control_planes.push(ControlPlane::start(&env).await);
        }
        started
    }

    /// What the filters poll: the control planes started here, else those given.
    fn endpoints(&self, options: &Options) -> Vec<Endpoint> {
        if self.control_planes.is_empty() {
            options
                .control_planes
                .iter()
                .map(|url| Endpoint {
                    url: url.clone(),
                    pid: None,
                })
                .collect()
        } else {
            self.control_planes
                .iter()
                .map(|control_plane| Endpoint {
                    url: control_plane.url(""),
                    pid: control_plane.pid(),
                })
                .collect()
        }
    }

    /// PostgreSQL's CPU seconds so far, when it runs here.
    fn database_cpu(&self) -> Option<f64> {
        self.postgres
            .as_ref()
            .map(|postgres| postgres_cpu_seconds(postgres.port()))
    }

    /// Copies the log of each control plane started here to `dir/<n>.log` (from 1).
    fn keep_logs(&self, dir: &std::path::Path) -> Result<(), String> {
        std::fs::create_dir_all(dir)
            .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
        for (index, control_plane) in self.control_planes.iter().enumerate() {
            let path = dir.join(format!("{}.log", index + 1));
            std::fs::write(&path, control_plane.log())
                .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        }
        Ok(())
    }

    /// What each control plane started here logged that matters to the run.
    fn logs(&self) -> Vec<LogFindings> {
        self.control_planes
            .iter()
            .map(|control_plane| LogFindings::of(&control_plane.log()))
            .collect()
    }
}

/// What one control plane logged that matters to a run: whether it took the publication
/// lease, and its warnings and errors.
#[derive(Debug, Default, PartialEq)]
struct LogFindings {
    /// `publication lease taken` lines.
    leases_taken: usize,
    /// `publication lease lost` lines.
    leases_lost: usize,
    warnings: usize,
    errors: usize,
    /// The first [`LOG_LINES_QUOTED`] distinct warning and error messages (without timestamps).
    quoted: Vec<String>,
}

impl LogFindings {
    /// Reads a control plane's text log (tracing's format: timestamp, level, target, message).
    fn of(log: &str) -> LogFindings {
        let mut findings = LogFindings::default();
        for line in log.lines() {
            if line.contains("publication lease taken") {
                findings.leases_taken += 1;
            }
            if line.contains("publication lease lost") {
                findings.leases_lost += 1;
            }
            let mut words = line.split_whitespace();
            let level = words.nth(1);
            match level {
                Some("WARN") => findings.warnings += 1,
                Some("ERROR") => findings.errors += 1,
                _ => continue,
            }
            let message = words.collect::<Vec<_>>().join(" ");
            let message = format!("{} {message}", level.unwrap_or_default());
            if findings.quoted.len() < LOG_LINES_QUOTED && !findings.quoted.contains(&message) {
                findings.quoted.push(message);
            }
        }
        findings
    }
}

/// The whole run: control planes, measurement, report. Errors say what failed; the control
/// planes and the database started here are stopped either way, after their logs are read.
async fn run(options: &Options) -> Result<(), String> {
    check_open_files_limit(options.filters)?;
    let started = Started::start(options).await;
    let endpoints = started.endpoints(options);
    let measured = measure(options, &endpoints, &started).await;
    let logs = started.logs();
    let kept = options
        .keep_logs
        .as_deref()
        .map(|dir| started.keep_logs(dir));
    drop(started);
    if let Some(Err(message)) = kept {
        eprintln!("portico-fleet: {message}");
    }
    match measured {
        Ok(report) => {
            print_report(&report, &logs);
            print_logs(&endpoints, &logs);
            Ok(())
        }
        Err(message) => {
            print_logs(&endpoints, &logs);
            Err(message)
        }
    }
}

/// Seed, fleet, warm-up, changes, readings.
async fn measure<'a>(
    options: &'a Options,
    endpoints: &'a [Endpoint],
    started: &Started,
) -> Result<Report<'a>, String> {
    let secret = |name: &str, default: &str| {
        std::env::var(name)
            .ok()
            .filter(|value| !value.is_empty())
            .unwrap_or_else(|| default.to_owned())
    };
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|error| format!("an HTTP client: {error}"))?;
    let admins: Vec<Admin> = endpoints
        .iter()
        .map(|endpoint| Admin {
            http: http.clone(),
            url: endpoint.url.clone(),
            key: secret("PORTICO_ADMIN_KEY", ADMIN_KEY),
        })
        .collect();
    let admin = &admins[0];
    let first_limit = seed(admin).await?;
    let spec = Arc::new(PollSpec {
        wait_seconds: options.wait,
        token: secret("PORTICO_DATA_PLANE_TOKEN", DATA_PLANE_TOKEN),
        run: std::process::id(),
        deltas: options.deltas,
    });

    let warming = Instant::now();
    let mut fleet = Fleet::start(endpoints, options.filters, &spec);
    let mut version = fleet.holding_version_in_force(admin).await?;
    let warm_up = warming.elapsed();
    let warm = Readings::once_polling(endpoints, options.filters, started).await;

    let tool = std::process::id();
    let cpu_before = (cpu_of(endpoints), started.database_cpu(), cpu_seconds(tool));
    let mut changes = Vec::with_capacity(options.changes);
    for n in 0..options.changes {
        let writer = if options.alternate_writes {
            &admins[n % admins.len()]
        } else {
            admin
        };
        let before = version;
        let sent = Instant::now();
        writer.change(first_limit + 1 + n as u64).await?;
        let answered = sent.elapsed();
        version = fleet.settled(|version| version != before).await?;
        changes.push(Change {
            before,
            after: version,
            sent,
            answered,
        });
    }
    let cpu = Cpu {
        control_planes: cpu_of(endpoints)
            .iter()
            .zip(&cpu_before.0)
            .map(|(after, before)| Some((*after)? - (*before)?))
            .collect(),
        database: started
            .database_cpu()
            .zip(cpu_before.1)
            .map(|(after, before)| after - before),
        tool: cpu_seconds(tool) - cpu_before.2,
    };
    let end = Readings::once_polling(endpoints, options.filters, started).await;
    let (receipts, counts) = fleet.stop().await;

    Ok(Report {
        options,
        endpoints,
        on_postgres: started.postgres.is_some(),
        warm_up,
        deliveries: deliveries(&changes, &receipts),
        answers_during_changes: changes.first().map_or((0, 0, 0), |first| {
            let during: Vec<&Received> = receipts
                .iter()
                .flatten()
                .filter(|received| received.at >= first.sent)
                .collect();
            let versions: HashSet<u64> = during.iter().map(|received| received.version).collect();
            (
                during.len(),
                during.iter().filter(|received| received.delta).count(),
                versions.len(),
            )
        }),
        changes,
        counts,
        cpu,
        readings: [("after the warm-up", warm), ("at the end", end)],
    })
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
    /// Whether the filters ask for deltas.
    deltas: bool,
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
        .header("accept", self.accept())
        .bearer_auth(&self.token)
    }
}

impl PollSpec {
    /// The `Accept` of every poll: the binary snapshot, after the delta when asking for deltas
    /// (as a filter asks, `docs/snapshot.md`, "Deltas").
    fn accept(&self) -> String {
        if self.deltas {
            format!("{DELTA_MEDIA_TYPE}, {BINARY_MEDIA_TYPE}")
        } else {
            BINARY_MEDIA_TYPE.to_owned()
        }
    }
}

/// A version a filter received and now holds.
#[derive(Debug, Clone, Copy)]
struct Received {
    version: u64,
    /// When it held it: the answer's last byte arrived and was decoded (and applied).
    at: Instant,
    /// The body's size, plus those of the deltas before it that could not be applied.
    bytes: usize,
    /// Whether it came as a delta.
    delta: bool,
}

/// What the filters have reached, shared with the coordinator.
#[derive(Debug, Default)]
struct Progress {
    /// Each filter's version (0: none yet).
    versions: Vec<u64>,
    /// Why a filter stopped, when one did.
    failure: Option<String>,
    counts: Counts,
}

/// Events the report counts, over the whole run.
#[derive(Debug, Default, Clone)]
struct Counts {
    /// Transport errors, each retried after [`RETRY_AFTER`].
    retries: usize,
    /// Deltas a filter could not apply (it then polled with `since=0`).
    unapplied_deltas: usize,
    /// Why the first of them could not be applied.
    first_unapplied: Option<String>,
    /// Answers carrying the version the filter held (a 200 where a 304 was due).
    repeated: usize,
    /// Answers carrying a version lower than the one the filter held.
    stepped_back: usize,
    /// The first of them: (filter, version held, version received).
    first_step_back: Option<(usize, u64, u64)>,
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

    /// Stops every filter; what each received, and what was counted.
    async fn stop(self) -> (Vec<Vec<Received>>, Counts) {
        self.stop.send_replace(true);
        let mut receipts = Vec::with_capacity(self.tasks.len());
        for task in self.tasks {
            receipts.push(task.await.unwrap_or_default());
        }
        let counts = self.progress.borrow().counts.clone();
        (receipts, counts)
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

/// One filter: polls `url` until `stop` turns true, holding the decoded snapshot of its
/// version and publishing each version it receives in `progress`; answers what it received.
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
    let mut held: Option<Snapshot> = None;
    // The bytes of deltas that could not be applied, counted with the answer that then
    // brought the version.
    let mut unapplied_bytes = 0;
    // Bounded: ends when the run ends (`stop`), or at the first failure.
    loop {
        let since = held.as_ref().map_or(0, |snapshot| snapshot.version);
        let answer = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => return received,
            answer = poll(&spec, &http, &url, filter, since) => answer,
        };
        match answer {
            Ok(Some(answer)) => match take(&mut held, &answer) {
                Ok(()) => {
                    let version = answer.version;
                    received.push(Received {
                        version,
                        at: Instant::now(),
                        bytes: answer.body.len() + std::mem::take(&mut unapplied_bytes),
                        delta: answer.delta_base.is_some(),
                    });
                    progress.send_modify(|progress| {
                        progress.versions[filter] = version;
                        if version == since {
                            progress.counts.repeated += 1;
                        }
                        if since != 0 && version < since {
                            progress.counts.stepped_back += 1;
                            progress
                                .counts
                                .first_step_back
                                .get_or_insert((filter, since, version));
                        }
                    });
                }
                Err(Refused::Delta(why)) => {
                    // `held` is empty now: the next poll asks for the whole snapshot.
                    unapplied_bytes += answer.body.len();
                    progress.send_modify(|progress| {
                        progress.counts.unapplied_deltas += 1;
                        progress
                            .counts
                            .first_unapplied
                            .get_or_insert(format!("filter {filter}: {why}"));
                    });
                }
                Err(Refused::Snapshot(why)) => {
                    fail(format!("filter {filter}: {why}"));
                    return received;
                }
            },
            Ok(None) => {}
            Err(PollError::Failed(message)) => {
                fail(format!("filter {filter}: {message}"));
                return received;
            }
            Err(PollError::Retry) => {
                progress.send_modify(|progress| progress.counts.retries += 1);
                tokio::select! {
                    _ = stop.wait_for(|stop| *stop) => return received,
                    () = tokio::time::sleep(RETRY_AFTER) => {}
                }
            }
        }
    }
}

/// A 200 answer to a poll.
#[derive(Debug)]
struct Answer {
    /// Its `x-portico-snapshot-version`.
    version: u64,
    /// Its `x-portico-snapshot-delta-base` when it is a delta (its content type says so).
    delta_base: Option<u64>,
    body: Vec<u8>,
}

/// Why an answer was not taken.
#[derive(Debug, PartialEq)]
enum Refused {
    /// A delta that does not apply to what the filter holds: it polls for the whole snapshot.
    Delta(String),
    /// A whole snapshot that does not decode, or not at the announced version: the run ends.
    Snapshot(String),
}

/// Takes `answer` as a filter does: a whole snapshot is decoded and held in place of
/// `held`; a delta is applied to `held`, which it consumes, so that on any error the filter
/// holds nothing and polls with `since=0`.
fn take(held: &mut Option<Snapshot>, answer: &Answer) -> Result<(), Refused> {
    let Some(base) = answer.delta_base else {
        let snapshot = Snapshot::decode(&answer.body).map_err(|error| {
            Refused::Snapshot(format!("a snapshot that does not decode: {error}"))
        })?;
        if snapshot.version != answer.version {
            return Err(Refused::Snapshot(format!(
                "snapshot {} announced as version {}",
                snapshot.version, answer.version
            )));
        }
        *held = Some(snapshot);
        return Ok(());
    };
    let snapshot = held
        .take()
        .ok_or_else(|| Refused::Delta(format!("a delta from {base} while holding nothing")))?;
    if snapshot.version != base {
        return Err(Refused::Delta(format!(
            "a delta from {base} while holding {}",
            snapshot.version
        )));
    }
    let delta = SnapshotDelta::decode(&answer.body)
        .map_err(|error| Refused::Delta(format!("a delta that does not decode: {error}")))?;
    if delta.version != answer.version {
        return Err(Refused::Delta(format!(
            "a delta to {} announced as version {}",
            delta.version, answer.version
        )));
    }
    let snapshot = delta.apply(snapshot).map_err(|error| {
        Refused::Delta(format!("a delta from {base} that does not apply: {error}"))
    })?;
    *held = Some(snapshot);
    Ok(())
}

/// Why a poll brought nothing.
enum PollError {
    /// A transport error (a connection reset, a timeout): poll again.
    Retry,
    /// Anything else ends the run: out of file descriptors, an unexpected status.
    Failed(String),
}

/// One poll: `Some` answer (200), `None` when nothing changed within `wait` (304).
async fn poll(
    spec: &PollSpec,
    http: &reqwest::Client,
    url: &str,
    filter: usize,
    since: u64,
) -> Result<Option<Answer>, PollError> {
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
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned)
            };
            let version = header(VERSION_HEADER)
                .and_then(|value| value.parse().ok())
                .ok_or_else(|| PollError::Failed(format!("a 200 without `{VERSION_HEADER}`")))?;
            let is_delta = header("content-type").is_some_and(|content_type| {
                content_type.split(';').next().map(str::trim) == Some(DELTA_MEDIA_TYPE)
            });
            let delta_base = if is_delta {
                Some(
                    header(DELTA_BASE_HEADER)
                        .and_then(|value| value.parse().ok())
                        .ok_or_else(|| {
                            PollError::Failed(format!("a delta without `{DELTA_BASE_HEADER}`"))
                        })?,
                )
            } else {
                None
            };
            let body = response.bytes().await.map_err(transport)?.to_vec();
            Ok(Some(Answer {
                version,
                delta_base,
                body,
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
    /// The version every filter held after it.
    after: u64,
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
    /// The body of the answer that carried it (and of deltas before it that did not apply).
    bytes: usize,
    /// Whether it came as a delta.
    delta: bool,
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
                            delta: r.delta,
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

/// The value at `percent` of sorted `values` (nearest rank); the default when empty.
fn nearest_rank<T: Copy + Default>(sorted: &[T], percent: usize) -> T {
    let index = (sorted.len() * percent).div_ceil(100).saturating_sub(1);
    sorted.get(index).copied().unwrap_or_default()
}

impl Figures {
    fn of(mut durations: Vec<Duration>) -> Figures {
        durations.sort_unstable();
        Figures {
            samples: durations.len(),
            p50: nearest_rank(&durations, 50),
            p99: nearest_rank(&durations, 99),
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

/// Each control plane's CPU seconds so far, when it runs here.
fn cpu_of(endpoints: &[Endpoint]) -> Vec<Option<f64>> {
    endpoints
        .iter()
        .map(|endpoint| endpoint.pid.map(cpu_seconds))
        .collect()
}

/// CPU seconds over the changes.
#[derive(Debug)]
struct Cpu {
    /// Each control plane's, when it runs here.
    control_planes: Vec<Option<f64>>,
    /// PostgreSQL's, when it runs here.
    database: Option<f64>,
    /// This tool's.
    tool: f64,
}

/// PostgreSQL's CPU seconds so far, for the server listening on `port`: the postmaster's own
/// and that of the children it reaped (`cutime + cstime`), and its live children's (backends,
/// writers). 0 when the server is not found.
#[allow(clippy::cast_precision_loss, reason = "a figure for people")]
fn postgres_cpu_seconds(port: u16) -> f64 {
    const USER_HZ: f64 = 100.0;
    let port = port.to_string();
    let processes: Vec<(u32, Vec<String>)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            Some((pid, stat_fields(pid)?))
        })
        .collect();
    let Some(postmaster) = processes.iter().map(|(pid, _)| *pid).find(|pid| {
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        let args: Vec<&[u8]> = cmdline.split(|byte| *byte == 0).collect();
        args.first()
            .is_some_and(|program| program.ends_with(b"/postgres"))
            && args
                .windows(2)
                .any(|pair| pair[0] == b"-p" && pair[1] == port.as_bytes())
    }) else {
        return 0.0;
    };
    let ticks = |fields: &[String], range: std::ops::Range<usize>| -> u64 {
        fields[range]
            .iter()
            .filter_map(|field| field.parse::<u64>().ok())
            .sum()
    };
    // After the command name: state (0), ppid (1), … utime (11), stime (12), cutime (13),
    // cstime (14).
    processes
        .iter()
        .filter(|(_, fields)| fields.len() > 14)
        .map(|(pid, fields)| {
            if *pid == postmaster {
                ticks(fields, 11..15)
            } else if fields[1] == postmaster.to_string() {
                ticks(fields, 11..13)
            } else {
                0
            }
        })
        .sum::<u64>() as f64
        / USER_HZ
}

/// The fields of `/proc/<pid>/stat` after the command name (which may hold spaces).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// One control plane's state at one moment.
#[derive(Debug)]
struct Reading {
    /// Its process's memory and sockets, when it runs here.
    process: Option<ProcessReading>,
    /// Its `portico_open_long_polls` gauge.
    open_polls: Option<f64>,
}

/// A control-plane process's memory and sockets.
#[derive(Debug)]
struct ProcessReading {
    /// VmRSS in bytes.
    rss: u64,
    /// VmHWM in bytes.
    hwm: u64,
    /// ESTABLISHED TCP sockets but those to the database: the filters' and this tool's.
    sockets: usize,
    /// ESTABLISHED TCP sockets to the database (PostgreSQL started here).
    database_sockets: usize,
}

/// Every control plane's [`Reading`], in the order of the endpoints.
#[derive(Debug)]
struct Readings(Vec<Reading>);

impl Readings {
    /// Readings taken once the control planes hold `filters` polls open in all (the filters
    /// poll again the moment they receive a snapshot, but not all at once), or after
    /// [`SETTLE_POLLS`] if they never do (a control plane without the gauge, say).
    async fn once_polling(endpoints: &[Endpoint], filters: usize, started: &Started) -> Readings {
        let database_port = started.postgres.as_ref().map(Postgres::port);
        let deadline = Instant::now() + SETTLE_POLLS;
        // Bounded by the deadline.
        loop {
            let readings = Readings::take(endpoints, database_port).await;
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

    async fn take(endpoints: &[Endpoint], database_port: Option<u16>) -> Readings {
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
                process: endpoint.pid.map(|pid| {
                    let (sockets, database_sockets) = established_sockets(pid, database_port);
                    ProcessReading {
                        rss: rss(pid),
                        hwm: peak_rss(pid),
                        sockets,
                        database_sockets,
                    }
                }),
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
/// `/proc/<pid>/net/tcp` or `tcp6` (proc(5)); those to remote port `database_port` apart.
fn established_sockets(pid: u32, database_port: Option<u16>) -> (usize, usize) {
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
        .fold((0, 0), |counts, table| {
            established_inodes(&table)
                .filter(|(inode, _)| inodes.contains(inode))
                .fold(counts, |(others, database), (_, port)| {
                    if Some(port) == database_port {
                        (others, database + 1)
                    } else {
                        (others + 1, database)
                    }
                })
        })
}

/// The inode of a descriptor's link `socket:[inode]`.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The inodes and remote ports of the ESTABLISHED (`st` = `01`) sockets of a
/// `/proc/net/tcp` table.
fn established_inodes(table: &str) -> impl Iterator<Item = (u64, u16)> + '_ {
    table.lines().skip(1).filter_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(3) == Some(&"01") {
            let port = fields.get(2)?.rsplit(':').next()?;
            Some((
                fields.get(9)?.parse().ok()?,
                u16::from_str_radix(port, 16).ok()?,
            ))
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
    /// Whether the control planes started here run on PostgreSQL.
    on_postgres: bool,
    warm_up: Duration,
    changes: Vec<Change>,
    deliveries: Vec<Vec<Option<Delivery>>>,
    /// Versions received during the changes, how many of them as deltas, and how many
    /// distinct versions.
    answers_during_changes: (usize, usize, usize),
    counts: Counts,
    cpu: Cpu,
    readings: [(&'static str, Readings); 2],
}

/// How the report names control plane `index`: with its role when replicas started here
/// logged one.
fn endpoint_name(report: &Report<'_>, logs: &[LogFindings], index: usize) -> String {
    if report.endpoints.len() == 1 && !report.on_postgres {
        return "control plane".to_owned();
    }
    let role = match logs.get(index) {
        Some(log) if report.on_postgres => match (log.leases_taken, log.leases_lost) {
            (0, _) => ", follower",
            (_, 0) => ", publisher",
            _ => ", publisher that lost the lease",
        },
        _ => "",
    };
    format!("replica {}{role}", index + 1)
}

fn print_report(report: &Report<'_>, logs: &[LogFindings]) {
    let Options {
        filters,
        changes,
        wait,
        deltas,
        alternate_writes,
        ..
    } = *report.options;
    let local = report
        .endpoints
        .iter()
        .any(|endpoint| endpoint.pid.is_some());
    let count = report.endpoints.len();
    println!(
        "{filters} filters long-polling {count} control plane(s) {}, `wait={wait}`, {}, \
         {changes} changes (`PUT /admin/v1/policies/{POLICY_ID}`, the rate limit replaced) one \
         after another, written {}",
        match (local, report.on_postgres) {
            (false, _) => "given with --control-plane",
            (true, false) => "started here (release `portico`, fresh sled store)",
            (true, true) => "started here (release `portico` on one fresh PostgreSQL database)",
        },
        if deltas {
            "asking for deltas"
        } else {
            "whole snapshots only"
        },
        if alternate_writes && count > 1 {
            "to each control plane in turn"
        } else {
            "to the first control plane"
        }
    );
    println!(
        "warm-up: {:.2} s from the first filter started until all {filters} held the version in \
         force",
        report.warm_up.as_secs_f64()
    );
    let latencies = |on: Option<usize>| -> (Vec<Duration>, Vec<Duration>) {
        let of_replica = |filter: &usize| on.is_none_or(|replica| filter % count == replica);
        let pairs = report
            .deliveries
            .iter()
            .flat_map(|change| {
                change
                    .iter()
                    .enumerate()
                    .filter(|(filter, _)| of_replica(filter))
                    .filter_map(|(_, delivery)| Some(delivery.as_ref()?.latency))
            })
            .collect();
        let slowest = report
            .deliveries
            .iter()
            .map(|change| {
                change
                    .iter()
                    .enumerate()
                    .filter(|(filter, _)| of_replica(filter))
                    .filter_map(|(_, delivery)| Some(delivery.as_ref()?.latency))
                    .max()
                    .unwrap_or_default()
            })
            .collect();
        (pairs, slowest)
    };
    let (pairs, to_every) = latencies(None);
    let missing = filters * report.changes.len() - pairs.len();
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
        to_every.row("**until every filter has it** (per change: the slowest filter)")
    );
    if count > 1 {
        for replica in 0..count {
            let name = endpoint_name(report, logs, replica);
            let (pairs, slowest) = latencies(Some(replica));
            println!(
                "{}",
                Figures::of(pairs).row(&format!("until a filter of {name} has it"))
            );
            println!(
                "{}",
                Figures::of(slowest)
                    .row(&format!("until every filter of {name} has it (per change)"))
            );
        }
    }
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
    if let (Some(first), Some(last)) = (report.changes.first(), report.changes.last()) {
        let jumps: Vec<String> = report
            .changes
            .iter()
            .filter(|change| change.after != change.before + 1)
            .map(|change| format!("{} → {}", change.before, change.after))
            .collect();
        println!(
            "versions: {} before the changes, {} after them{}",
            first.before,
            last.after,
            if jumps.is_empty() {
                String::new()
            } else {
                format!(
                    " (changes that moved it by other than 1: {})",
                    jumps.join(", ")
                )
            }
        );
    }

    let every: Vec<Delivery> = report
        .deliveries
        .iter()
        .flatten()
        .flatten()
        .copied()
        .collect();
    let mut per_change: Vec<usize> = report
        .deliveries
        .iter()
        .map(|change| change.iter().flatten().map(|delivery| delivery.bytes).sum())
        .collect();
    per_change.sort_unstable();
    let mut per_filter: Vec<usize> = every.iter().map(|delivery| delivery.bytes).collect();
    per_filter.sort_unstable();
    let bytes = |sorted: &[usize]| {
        format!(
            "p50 {} bytes, max {} (min {})",
            nearest_rank(sorted, 50),
            sorted.last().copied().unwrap_or_default(),
            sorted.first().copied().unwrap_or_default()
        )
    };
    let delivered_as_deltas = every.iter().filter(|delivery| delivery.delta).count();
    let changes_made = report.changes.len().max(1) as f64;
    println!();
    println!("| measure | value |");
    println!("| --- | ---: |");
    println!(
        "| bytes sent per change, to all filters (bodies of the answers that carried it) | {} |",
        bytes(&per_change)
    );
    println!(
        "| bytes sent per change, to one filter | {} |",
        bytes(&per_filter)
    );
    println!(
        "| deliveries that came as deltas | {delivered_as_deltas} of {} |",
        every.len()
    );
    let (answers, delta_answers, versions) = report.answers_during_changes;
    let counts = &report.counts;
    println!(
        "| versions received during the changes (expected {filters} × {changes}); as deltas; \
         the version already held | {answers}; {delta_answers}; {} |",
        counts.repeated
    );
    println!("| distinct versions received during the changes (expected {changes}) | {versions} |");
    println!(
        "| deltas a filter could not apply (it then polled with `since=0`) | {}{} |",
        counts.unapplied_deltas,
        counts
            .first_unapplied
            .as_ref()
            .map(|why| format!(" (first: {why})"))
            .unwrap_or_default()
    );
    println!(
        "| answers older than the version the filter held | {}{} |",
        counts.stepped_back,
        counts
            .first_step_back
            .map(|(filter, held, got)| format!(
                " (first: filter {filter} held {held}, received {got})"
            ))
            .unwrap_or_default()
    );
    println!("| transport errors, each retried | {} |", counts.retries);
    for (index, cpu) in report.cpu.control_planes.iter().enumerate() {
        if let Some(cpu) = cpu {
            println!(
                "| {} CPU time over the changes | {cpu:.2} s, {:.1} ms per change |",
                endpoint_name(report, logs, index),
                cpu * 1000.0 / changes_made
            );
        }
    }
    if let Some(cpu) = report.cpu.database {
        println!(
            "| PostgreSQL CPU time over the changes (server and backends) | {cpu:.2} s, {:.1} ms \
             per change |",
            cpu * 1000.0 / changes_made
        );
    }
    println!(
        "| this tool's CPU time over the changes (it shares the machine) | {:.2} s, {:.1} ms per \
         change |",
        report.cpu.tool,
        report.cpu.tool * 1000.0 / changes_made
    );
    for (when, readings) in &report.readings {
        for (index, reading) in readings.0.iter().enumerate() {
            let name = endpoint_name(report, logs, index);
            if let Some(process) = &reading.process {
                println!(
                    "| {name} {when}: VmRSS / VmHWM | {:.1} / {:.1} MiB |",
                    mib(process.rss),
                    mib(process.hwm)
                );
                println!(
                    "| {name} {when}: ESTABLISHED TCP sockets (the filters', and this tool's \
                     admin and metrics connections) | {} |",
                    process.sockets
                );
                if report.on_postgres {
                    println!(
                        "| {name} {when}: ESTABLISHED TCP sockets to PostgreSQL | {} |",
                        process.database_sockets
                    );
                }
            }
            if let Some(open) = reading.open_polls {
                println!("| {name} {when}: `portico_open_long_polls` | {open:.0} |");
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

/// What the control planes started here logged: lease changes, warnings and errors.
fn print_logs(endpoints: &[Endpoint], logs: &[LogFindings]) {
    if logs.is_empty() {
        return;
    }
    println!();
    for (endpoint, log) in endpoints.iter().zip(logs) {
        println!(
            "log of {}: {} warning(s), {} error(s), publication lease taken {} time(s), lost {}",
            endpoint.url, log.warnings, log.errors, log.leases_taken, log.leases_lost
        );
        for line in &log.quoted {
            println!("    {line}");
        }
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
                deltas: false,
                replicas: 1,
                postgres: false,
                alternate_writes: false,
                control_planes: Vec::new(),
                keep_logs: None
            })
        );
        let options = parse_options(args("--deltas --replicas 2 --alternate-writes")).unwrap();
        assert!(options.deltas && options.alternate_writes && options.on_postgres());
        assert_eq!(options.replicas, 2);
        let options = parse_options(args("--replicas 1 --postgres")).unwrap();
        assert!(options.on_postgres());
        assert!(!parse_options(args("--replicas 1")).unwrap().on_postgres());
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
            "--replicas 0",
            "--replicas 2 --control-plane http://127.0.0.1:8080",
            "--postgres --control-plane http://127.0.0.1:8080",
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
        assert_eq!(
            established_inodes(table).collect::<Vec<_>>(),
            [(222, 0xA1B2)]
        );
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
            delta: false,
        };
        let changes = [
            Change {
                before: 7,
                after: 8,
                sent: at(100),
                answered: Duration::from_millis(5),
            },
            Change {
                before: 8,
                after: 9,
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
                delta: false,
            })
        };
        assert_eq!(deliveries[0], [delivery(30, 60), delivery(40, 60)]);
        assert_eq!(deliveries[1], [delivery(50, 61), None]);
    }

    fn answer(version: u64, delta_base: Option<u64>, body: Vec<u8>) -> Answer {
        Answer {
            version,
            delta_base,
            body,
        }
    }

    #[test]
    fn a_filter_holds_whole_snapshots_and_applies_deltas_to_them() {
        let first = portico_core::testing::large_snapshot(3, 2, 2);
        let mut second = first.clone();
        second.version = 2;
        second.revoked_clients.push("client-0".to_owned());
        let delta = SnapshotDelta::diff(&first, &second).unwrap();

        let mut held = None;
        take(&mut held, &answer(1, None, first.to_binary().unwrap())).unwrap();
        assert_eq!(held.as_ref(), Some(&first));
        take(&mut held, &answer(2, Some(1), delta.to_binary().unwrap())).unwrap();
        assert_eq!(held.as_ref(), Some(&second));
    }

    #[test]
    fn a_delta_that_does_not_apply_leaves_the_filter_holding_nothing() {
        let first = portico_core::testing::large_snapshot(3, 2, 2);
        let mut second = first.clone();
        second.version = 2;
        second.revoked_clients.push("client-0".to_owned());
        let delta = SnapshotDelta::diff(&first, &second)
            .unwrap()
            .to_binary()
            .unwrap();
        let mut other = first.clone();
        other.revoked_clients.push("client-1".to_owned());

        // Another base version, and the right version with other content (digest mismatch).
        for base in [second.clone(), other] {
            let mut held = Some(base);
            let refused = take(&mut held, &answer(2, Some(1), delta.clone()));
            assert!(matches!(refused, Err(Refused::Delta(_))), "{refused:?}");
            assert_eq!(held, None);
        }
        // A whole snapshot that is not the announced version ends the run.
        let mut held = None;
        let refused = take(&mut held, &answer(5, None, first.to_binary().unwrap()));
        assert!(matches!(refused, Err(Refused::Snapshot(_))), "{refused:?}");
    }

    #[test]
    fn log_findings_count_leases_warnings_and_errors() {
        let log = "2026-11-30T10:00:00.000000Z  INFO portico_control_plane::service::replicas: publication lease taken replica=a publishing=true\n\
                   2026-11-30T10:00:01.000000Z  WARN portico_control_plane::store: slow commit ms=900\n\
                   2026-11-30T10:00:02.000000Z  WARN portico_control_plane::store: slow commit ms=900\n\
                   2026-11-30T10:00:03.000000Z ERROR portico_control_plane::service::snapshot: cannot load\n";
        let findings = LogFindings::of(log);
        assert_eq!(
            findings,
            LogFindings {
                leases_taken: 1,
                leases_lost: 0,
                warnings: 2,
                errors: 1,
                quoted: vec![
                    "WARN portico_control_plane::store: slow commit ms=900".to_owned(),
                    "ERROR portico_control_plane::service::snapshot: cannot load".to_owned(),
                ],
            }
        );
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
