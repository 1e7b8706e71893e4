//! Envoy with the built filter: bootstrap generation, start-up on ephemeral ports, readiness,
//! stats, and clean shutdown.

use std::fmt::Write as _;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use tempfile::TempDir;

use crate::eventually::eventually_ok;
use crate::paths::{envoy_binary, filter_wasm};

/// How long Envoy may take to become ready.
const READY_BOUND: Duration = Duration::from_secs(20);

/// What an Envoy under test runs: one listener whose every route goes to `upstream`, with the
/// filter configured by `plugin_config`.
#[derive(Clone, Debug)]
pub struct EnvoyConfig {
    /// The plugin configuration (JSON).
    pub plugin_config: String,
    /// The upstream that every route forwards to.
    pub upstream: SocketAddr,
    /// Further clusters, by name (e.g. the control plane); a name given several times makes
    /// one cluster with an endpoint per address (round robin: replicas of a control plane).
    pub clusters: Vec<(String, SocketAddr)>,
    /// Worker threads (and so filter VMs).
    pub concurrency: u32,
    /// Whether the connection manager hands the filter and the upstream the path as received
    /// and keeps headers with `_` in their names: an Envoy without the settings the shipped
    /// configurations recommend, to show what the filter protects on its own.
    pub raw_requests: bool,
    /// Routes tried before the catch-all, as YAML list items indented for `routes:` (to bind
    /// a route to an API through its metadata, say).
    pub routes: Vec<String>,
}

impl EnvoyConfig {
    /// A configuration whose filter syncs snapshots from the control plane at `control_plane`
    /// (cluster `portico`, the harness's data-plane token, 10 s polls), forwarding to
    /// `upstream`.
    pub fn synced(control_plane: SocketAddr, upstream: SocketAddr) -> Self {
        let plugin = serde_json::json!({"control_plane": {"cluster": "portico",
            "token": crate::control_plane::DATA_PLANE_TOKEN, "poll_wait_seconds": 10}});
        let mut config = EnvoyConfig::new(plugin.to_string(), upstream);
        config.clusters.push(("portico".to_owned(), control_plane));
        config
    }

    /// A configuration with two workers and no further clusters.
    pub fn new(plugin_config: impl Into<String>, upstream: SocketAddr) -> Self {
        EnvoyConfig {
            plugin_config: plugin_config.into(),
            upstream,
            clusters: Vec::new(),
            concurrency: 2,
            raw_requests: false,
            routes: Vec::new(),
        }
    }

    /// The bootstrap YAML, loading `wasm`.
    pub fn bootstrap(&self, wasm: &Path) -> String {
        let plugin = serde_json::to_string(&self.plugin_config).expect("a string serializes");
        let mut clusters = cluster_yaml("upstream", self.upstream);
        let mut names: Vec<&str> = self
            .clusters
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        names.dedup();
        for name in names {
            let endpoints: Vec<SocketAddr> = self
                .clusters
                .iter()
                .filter(|(other, _)| other == name)
                .map(|(_, addr)| *addr)
                .collect();
            clusters.push_str(&cluster_yaml_endpoints(name, &endpoints));
        }
        let request_handling = if self.raw_requests {
            ""
        } else {
            "normalize_path: true
          merge_slashes: true
          path_with_escaped_slashes_action: UNESCAPE_AND_FORWARD
          common_http_protocol_options:
            headers_with_underscores_action: DROP_HEADER"
        };
        format!(
            r#"node: {{id: {NODE_ID}, cluster: portico-test}}
{stats_config}admin:
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
          stat_prefix: ingress
          {request_handling}
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format:
                text_format_source:
                  inline_string: "{access_log_format}"
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
{routes}              - match: {{prefix: "/"}}
                route: {{cluster: upstream}}
          http_filters:
          - name: envoy.filters.http.wasm
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
                  value: {plugin}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{clusters}"#,
            wasm = wasm.display(),
            access_log_format = ACCESS_LOG_FORMAT,
            routes = self.routes.concat(),
            stats_config = stats_config_yaml(),
        )
    }
}

/// The `stats_config` that turns the filter's tagged metric names into labels
/// ([`portico_core::metrics::TAG_REGEXES`]), as top-level bootstrap YAML: the same tags every
/// shipped configuration carries.
pub fn stats_config_yaml() -> String {
    let mut yaml = "stats_config:\n  stats_tags:\n".to_owned();
    for (tag, regex) in portico_core::metrics::TAG_REGEXES {
        yaml.push_str(&format!("  - tag_name: {tag}\n    regex: '{regex}'\n"));
    }
    yaml
}

/// The `node.id` of every Envoy the harness starts (several Envoys share it, as replicas of
/// one deployment do).
pub const NODE_ID: &str = "portico-test-envoy";

/// The access-log line of the shipped configurations (`envoy/*.yaml`), as a YAML
/// double-quoted string's content.
pub const ACCESS_LOG_FORMAT: &str = "[%START_TIME%] \\\"%REQ(:METHOD)% %PATH(NQ:ORIG_OR_PATH)% %PROTOCOL%\\\" \
     %RESPONSE_CODE% portico_reason=%FILTER_STATE(wasm.portico.reason:PLAIN)% \
     request_id=%REQ(X-REQUEST-ID)% duration_ms=%DURATION%\\n";

/// A static cluster named `name` with the one endpoint `addr`, as bootstrap YAML.
pub fn cluster_yaml(name: &str, addr: SocketAddr) -> String {
    cluster_yaml_endpoints(name, &[addr])
}

/// A static cluster named `name` with an endpoint per address of `endpoints` (round robin), as
/// bootstrap YAML.
pub fn cluster_yaml_endpoints(name: &str, endpoints: &[SocketAddr]) -> String {
    let mut yaml = String::new();
    let _ = write!(
        yaml,
        r#"  - name: {name}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
"#
    );
    for addr in endpoints {
        let _ = write!(
            yaml,
            r#"        - endpoint:
            address: {{socket_address: {{address: {ip}, port_value: {port}}}}}
"#,
            ip = addr.ip(),
            port = addr.port(),
        );
    }
    yaml
}

/// A running Envoy, killed when dropped.
#[derive(Debug)]
pub struct Envoy {
    child: Child,
    dir: TempDir,
    /// The admin interface, `host:port`.
    pub admin: SocketAddr,
    /// The listener.
    pub listener: SocketAddr,
    http: reqwest::Client,
}

impl Envoy {
    /// Starts Envoy with `config` and waits until it is ready and its listener is bound.
    pub async fn start(config: &EnvoyConfig) -> Envoy {
        Envoy::start_bootstrap(
            &config.bootstrap(&filter_wasm()),
            config.concurrency,
            "debug",
        )
        .await
    }

    /// The Envoy process's id (for reading its memory from `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts Envoy with a complete `bootstrap` (its admin address and first listener may use
    /// port 0), `concurrency` workers and the wasm component logging at `wasm_log_level`.
    pub async fn start_bootstrap(bootstrap: &str, concurrency: u32, wasm_log_level: &str) -> Envoy {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let bootstrap_path = dir.path().join("envoy.yaml");
        std::fs::write(&bootstrap_path, bootstrap).expect("write the bootstrap");
        let admin_path = dir.path().join("admin-address");
        let log = File::create(dir.path().join("envoy.log")).expect("create the log");
        let access_log =
            File::create(dir.path().join("access.log")).expect("create the access log");
        let child = Command::new(envoy_binary())
            .arg("-c")
            .arg(&bootstrap_path)
            .arg("--admin-address-path")
            .arg(&admin_path)
            // Access-log lines reach the file within 100 ms instead of Envoy's default 10 s.
            .args(["--file-flush-interval-msec", "100"])
            .args(["--disable-hot-restart", "--concurrency"])
            .arg(concurrency.to_string())
            .args(["--log-level", "warn", "--component-log-level"])
            .arg(format!("wasm:{wasm_log_level}"))
            .stdout(access_log)
            .stderr(log)
            .spawn()
            .expect("start envoy");
        let mut envoy = Envoy {
            child,
            dir,
            admin: "0.0.0.0:0".parse().expect("valid address"),
            listener: "0.0.0.0:0".parse().expect("valid address"),
            http: reqwest::Client::new(),
        };
        let deadline = std::time::Instant::now() + READY_BOUND;
        envoy.admin = loop {
            let text = std::fs::read_to_string(&admin_path).unwrap_or_default();
            if let Ok(addr) = text.trim().parse::<SocketAddr>() {
                break addr;
            }
            assert!(
                envoy.is_running(),
                "Envoy exited at start:\n{}",
                envoy.log()
            );
            assert!(
                std::time::Instant::now() < deadline,
                "gave up after {READY_BOUND:?} waiting for Envoy to write its admin address"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let ready_url = format!("http://{}/ready", envoy.admin);
        eventually_ok("Envoy to be ready", &ready_url, READY_BOUND).await;
        envoy.listener = envoy.bound_listener().await;
        envoy
    }

    async fn bound_listener(&self) -> SocketAddr {
        let url = format!("http://{}/listeners?format=json", self.admin);
        let listeners: serde_json::Value = self
            .http
            .get(&url)
            .send()
            .await
            .expect("admin /listeners")
            .json()
            .await
            .expect("JSON");
        let address = &listeners["listener_statuses"][0]["local_address"]["socket_address"];
        let port = address["port_value"].as_u64().expect("a bound port");
        format!("127.0.0.1:{port}").parse().expect("valid address")
    }

    /// A URL on the listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listener)
    }

    /// A `GET` of `path` on a fresh connection (so that requests spread over every worker),
    /// with the bearer `token` if any: the status and the JSON body (`Null` if none).
    pub async fn call(&self, path: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        self.call_host(path, None, token).await
    }

    /// [`Envoy::call`] with a `Host` header of the caller's choosing.
    pub async fn call_host(
        &self,
        path: &str,
        host: Option<&str>,
        token: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut request = self.http.get(self.url(path)).header("connection", "close");
        if let Some(host) = host {
            request = request.header("host", host);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("an answer from Envoy");
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// Waits (at most `bound`) until `path` with `token` answers `status` — and, for a
    /// refusal, the error `code` — on four fresh connections in a row, so that every worker
    /// has caught up; returns the last body.
    pub async fn await_outcome(
        &self,
        what: &str,
        bound: Duration,
        (path, token): (&str, Option<&str>),
        (status, code): (u16, Option<&str>),
    ) -> serde_json::Value {
        self.await_outcome_at_host(what, bound, (path, None, token), (status, code))
            .await
    }

    /// [`Envoy::await_outcome`] with a `Host` header of the caller's choosing.
    pub async fn await_outcome_at_host(
        &self,
        what: &str,
        bound: Duration,
        (path, host, token): (&str, Option<&str>, Option<&str>),
        (status, code): (u16, Option<&str>),
    ) -> serde_json::Value {
        crate::eventually(what, bound, || async {
            let mut last = serde_json::Value::Null;
            for _ in 0..4 {
                let (got, body) = self.call_host(path, host, token).await;
                if got != status || code.is_some_and(|code| body["error"] != code) {
                    return None;
                }
                last = body;
            }
            Some(last)
        })
        .await
    }

    /// The value of a counter or gauge (`None` when Envoy has no such stat).
    pub async fn stat(&self, name: &str) -> Option<u64> {
        let url = format!(
            "http://{}/stats?filter=^{}$",
            self.admin,
            name.replace('.', "\\.")
        );
        let text = self.http.get(&url).send().await.ok()?.text().await.ok()?;
        text.lines().find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(": ")?
                .trim()
                .parse()
                .ok()
        })
    }

    /// Waits until a stat is `expected` (the filter hands its counters to Envoy once a
    /// second), panicking with its last value after a bound.
    pub async fn await_stat(&self, name: &str, expected: u64) {
        self.await_stat_where(name, &format!("{expected}"), |value| value == expected)
            .await;
    }

    /// Waits until a stat is at least `minimum`.
    pub async fn await_stat_at_least(&self, name: &str, minimum: u64) {
        self.await_stat_where(name, &format!("at least {minimum}"), |value| {
            value >= minimum
        })
        .await;
    }

    async fn await_stat_where(&self, name: &str, wanted: &str, accept: impl Fn(u64) -> bool) {
        let deadline = std::time::Instant::now() + READY_BOUND;
        loop {
            let value = self.stat(name).await;
            if value.is_some_and(&accept) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name} is {value:?}, not {wanted}, after {READY_BOUND:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every access-log line Envoy wrote so far (its standard output).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// Everything Envoy logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of the Envoy log ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Runs `envoy --mode validate -c <config>` from `cwd` (relative paths in the file resolve
/// against it).
pub fn validate(config: &Path, cwd: &Path) -> Output {
    Command::new(envoy_binary())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(config)
        .current_dir(cwd)
        .output()
        .expect("run envoy --mode validate")
}

/// Every bootstrap in `envoy/` (the directory's own `*.yaml` files).
pub fn shipped_configs() -> Vec<PathBuf> {
    let dir = crate::paths::workspace_root().join("envoy");
    let mut configs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the envoy/ directory")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    configs.sort();
    configs
}
