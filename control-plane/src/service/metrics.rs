//! The control plane's Prometheus metrics, rendered by `GET /metrics` in the text exposition
//! format. Each [`AppState`](super::AppState) owns its recorder (no global one), so several
//! control planes in one process (tests) keep their figures apart.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

use crate::idp::CallOutcome;
use crate::idp::dcr::Provider;
use crate::idp::metered::DcrOperation;

/// The gauge of bindings (client, policy) whose access ends within the next 7 days.
pub const BINDINGS_EXPIRING_WITHIN_7_DAYS: &str = "portico_bindings_expiring_within_7_days";

/// Counter of answered HTTP requests, labelled `route` (the route template, `unmatched` when
/// none matched), `method` (the standard methods, else `other`) and `status`.
pub const HTTP_REQUESTS: &str = "portico_http_requests_total";
/// Histogram of the time to answer an HTTP request, in seconds, labelled `route` and `method`
/// (long polls included: they are held up to 300 s by design).
pub const HTTP_REQUEST_DURATION: &str = "portico_http_request_duration_seconds";
/// Gauge of the published snapshot's version.
pub const SNAPSHOT_VERSION: &str = "portico_snapshot_version";
/// Gauge of the published snapshot's size in bytes, labelled `encoding` (`binary`, `json`).
pub const SNAPSHOT_BYTES: &str = "portico_snapshot_bytes";
/// Histogram of the time to build, check and encode a snapshot that was published, in seconds.
pub const SNAPSHOT_BUILD_DURATION: &str = "portico_snapshot_build_duration_seconds";
/// Counter of snapshot publications that failed (the previous snapshot stayed in force).
pub const SNAPSHOT_PUBLISH_FAILURES: &str = "portico_snapshot_publish_failures_total";
/// Counter of snapshot polls answered with a snapshot, labelled `kind`: `delta` (what changed
/// since the filter's version) or `full` (the whole snapshot).
pub const SNAPSHOT_ANSWERS: &str = "portico_snapshot_answers_total";
/// Counter of the bytes of those answers' bodies, labelled `kind` like [`SNAPSHOT_ANSWERS`].
pub const SNAPSHOT_ANSWER_BYTES: &str = "portico_snapshot_answer_bytes_total";
/// Gauge of filter instances listed in `/admin/v1/filters` (counted at each scrape).
pub const CONNECTED_FILTERS: &str = "portico_connected_filters";
/// Gauge of snapshot long polls held open right now (counted at each scrape).
pub const OPEN_LONG_POLLS: &str = "portico_open_long_polls";
/// Gauge: 1 when this replica publishes snapshots (holds the publication lease, or owns its
/// store), 0 otherwise; at each scrape.
pub const PUBLISHER: &str = "portico_publisher";
/// Counter of usage reports from filters, labelled `outcome` (`counted`, `duplicate`: a
/// report sent again and not counted twice).
pub const USAGE_REPORTS: &str = "portico_quota_reports_total";
/// Gauge of quotas spent across the fleet in the published snapshot (one per policy and
/// subject: a developer, a client or a caller identity).
pub const CLIENTS_EXHAUSTED: &str = "portico_clients_exhausted";
/// Gauge of registrations interrupted before their outcome at the IdP was known (listed at
/// `GET /admin/v1/interrupted-registrations`; counted at each scrape). Alert when above 0.
pub const INTERRUPTED_REGISTRATIONS: &str = "portico_interrupted_registrations";

/// Counter of DCR calls to identity providers, labelled `provider` (`other`, `keycloak`,
/// `okta`, `gluu`), `operation` (`register`, `read`, `update`, `delete`) and `outcome` (see
/// [`CallOutcome::label`]).
pub const DCR_CALLS: &str = "portico_dcr_calls_total";
/// Histogram of the time a DCR call took, in seconds, labelled like [`DCR_CALLS`].
pub const DCR_CALL_DURATION: &str = "portico_dcr_call_duration_seconds";
/// Counter of key-set (JWKS) fetches, discovery included, labelled `issuer` (the issuer's
/// Portico id: as many values as issuers configured since the process started) and `outcome`
/// (see [`CallOutcome::label`]).
pub const KEY_FETCHES: &str = "portico_key_fetches_total";
/// Histogram of the time a key-set fetch took (discovery included), in seconds, labelled
/// like [`KEY_FETCHES`].
pub const KEY_FETCH_DURATION: &str = "portico_key_fetch_duration_seconds";

/// Histogram buckets, in seconds: from 1 ms to the longest long poll.
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0,
];

/// Seven days, in seconds.
const WEEK_SECONDS: u64 = 7 * 24 * 3600;

/// The control plane's metrics.
pub struct Metrics {
    recorder: PrometheusRecorder,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&DURATION_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        let metrics = Metrics { recorder };
        metrics.with(|| {
            metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests answered");
            metrics::describe_histogram!(
                HTTP_REQUEST_DURATION,
                metrics::Unit::Seconds,
                "Time to answer an HTTP request"
            );
            metrics::describe_gauge!(SNAPSHOT_VERSION, "Version of the published snapshot");
            metrics::describe_gauge!(
                SNAPSHOT_BYTES,
                metrics::Unit::Bytes,
                "Size of the published snapshot"
            );
            metrics::describe_histogram!(
                SNAPSHOT_BUILD_DURATION,
                metrics::Unit::Seconds,
                "Time to build, check and encode a published snapshot"
            );
            metrics::describe_counter!(
                SNAPSHOT_PUBLISH_FAILURES,
                "Snapshot publications that failed (filters keep the previous snapshot)"
            );
            metrics::describe_counter!(
                SNAPSHOT_ANSWERS,
                "Snapshot polls answered with a delta or the whole snapshot"
            );
            metrics::describe_counter!(
                SNAPSHOT_ANSWER_BYTES,
                metrics::Unit::Bytes,
                "Bytes of the snapshots and deltas sent to filters"
            );
            for kind in ["delta", "full"] {
                metrics::counter!(SNAPSHOT_ANSWERS, "kind" => kind).absolute(0);
                metrics::counter!(SNAPSHOT_ANSWER_BYTES, "kind" => kind).absolute(0);
            }
            metrics::describe_gauge!(CONNECTED_FILTERS, "Filter instances syncing snapshots");
            metrics::describe_gauge!(OPEN_LONG_POLLS, "Snapshot long polls held open");
            metrics::describe_gauge!(PUBLISHER, "1 when this replica publishes snapshots");
            metrics::describe_counter!(USAGE_REPORTS, "Usage reports received from filters");
            for outcome in ["counted", "duplicate"] {
                metrics::counter!(USAGE_REPORTS, "outcome" => outcome).absolute(0);
            }
            metrics::describe_gauge!(
                CLIENTS_EXHAUSTED,
                "Quotas spent across the fleet in the published snapshot"
            );
            metrics::describe_gauge!(
                INTERRUPTED_REGISTRATIONS,
                "Client registrations whose outcome at the identity provider is unknown"
            );
            metrics::describe_counter!(DCR_CALLS, "Dynamic client registration calls to IdPs");
            metrics::describe_histogram!(
                DCR_CALL_DURATION,
                metrics::Unit::Seconds,
                "Time a dynamic client registration call to an IdP took"
            );
            metrics::describe_counter!(KEY_FETCHES, "Key-set fetches from issuers");
            metrics::describe_histogram!(
                KEY_FETCH_DURATION,
                metrics::Unit::Seconds,
                "Time a key-set fetch took, discovery included"
            );
            metrics::counter!(SNAPSHOT_PUBLISH_FAILURES).absolute(0);
        });
        metrics.record_bindings(std::iter::empty(), 0);
        metrics
    }
}

/// A method as a label: the standard ones as they are, anything else `other` (so that a
/// client cannot grow the label set).
fn method_label(method: &str) -> &'static str {
    const STANDARD: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    STANDARD
        .into_iter()
        .find(|standard| *standard == method)
        .unwrap_or("other")
}

// Counts and sizes stay far below 2^53, where f64 is exact.
#[allow(clippy::cast_precision_loss)]
fn as_f64(value: usize) -> f64 {
    value as f64
}

impl Metrics {
    fn with(&self, record: impl FnOnce()) {
        metrics::with_local_recorder(&self.recorder, record);
    }

    /// Records one answered request: `route` is the route template (or `None` when no route
    /// matched), `method` the request's, `status` the answer's, `seconds` the time to answer.
    pub fn record_request(&self, route: Option<&str>, method: &str, status: u16, seconds: f64) {
        let route = route.unwrap_or("unmatched").to_owned();
        let method = method_label(method);
        self.with(|| {
            metrics::counter!(
                HTTP_REQUESTS,
                "route" => route.clone(),
                "method" => method,
                "status" => status.to_string()
            )
            .increment(1);
            metrics::histogram!(HTTP_REQUEST_DURATION, "route" => route, "method" => method)
                .record(seconds);
        });
    }

    /// Records a published snapshot: its `version`, its sizes in bytes and the time its build
    /// took, in seconds.
    pub fn record_publish(
        &self,
        version: u64,
        binary_bytes: usize,
        json_bytes: usize,
        build_seconds: f64,
    ) {
        self.with(|| {
            // Versions stay far below 2^53.
            #[allow(clippy::cast_precision_loss)]
            metrics::gauge!(SNAPSHOT_VERSION).set(version as f64);
            metrics::gauge!(SNAPSHOT_BYTES, "encoding" => "binary").set(as_f64(binary_bytes));
            metrics::gauge!(SNAPSHOT_BYTES, "encoding" => "json").set(as_f64(json_bytes));
            metrics::histogram!(SNAPSHOT_BUILD_DURATION).record(build_seconds);
        });
    }

    /// Records one DCR call to `provider`'s IdP: its `operation`, how it ended and the
    /// `seconds` it took.
    pub fn record_dcr_call(
        &self,
        provider: Provider,
        operation: DcrOperation,
        outcome: CallOutcome,
        seconds: f64,
    ) {
        let labels = [
            ("provider", provider.name()),
            ("operation", operation.label()),
            ("outcome", outcome.label()),
        ];
        self.with(|| {
            metrics::counter!(DCR_CALLS, &labels).increment(1);
            metrics::histogram!(DCR_CALL_DURATION, &labels).record(seconds);
        });
    }

    /// Records one key-set fetch for the issuer whose Portico id is `issuer`: how it ended
    /// and the `seconds` it took.
    pub fn record_key_fetch(&self, issuer: &str, outcome: CallOutcome, seconds: f64) {
        let labels = [
            ("issuer", issuer.to_owned()),
            ("outcome", outcome.label().to_owned()),
        ];
        self.with(|| {
            metrics::counter!(KEY_FETCHES, &labels).increment(1);
            metrics::histogram!(KEY_FETCH_DURATION, &labels).record(seconds);
        });
    }

    /// Records a poll answered with a snapshot: a delta (`delta`) or the whole snapshot, whose
    /// body is `bytes` long.
    pub fn record_snapshot_answer(&self, delta: bool, bytes: usize) {
        let kind = if delta { "delta" } else { "full" };
        self.with(|| {
            metrics::counter!(SNAPSHOT_ANSWERS, "kind" => kind).increment(1);
            metrics::counter!(SNAPSHOT_ANSWER_BYTES, "kind" => kind)
                .increment(u64::try_from(bytes).unwrap_or(u64::MAX));
        });
    }

    /// Records a failed snapshot publication.
    pub fn record_publish_failure(&self) {
        self.with(|| metrics::counter!(SNAPSHOT_PUBLISH_FAILURES).increment(1));
    }

    /// Records the filter instances syncing, the long polls held open and whether this
    /// replica publishes, at a scrape.
    pub fn record_filters(&self, connected: usize, open_polls: usize, publisher: bool) {
        self.with(|| {
            metrics::gauge!(CONNECTED_FILTERS).set(as_f64(connected));
            metrics::gauge!(OPEN_LONG_POLLS).set(as_f64(open_polls));
            metrics::gauge!(PUBLISHER).set(if publisher { 1.0 } else { 0.0 });
        });
    }

    /// Records a usage report received, by outcome (`counted`, `duplicate`).
    pub fn record_usage_report(&self, outcome: &'static str) {
        self.with(|| metrics::counter!(USAGE_REPORTS, "outcome" => outcome).increment(1));
    }

    /// Records the number of quotas spent across the fleet in the published snapshot.
    pub fn record_exhausted(&self, count: usize) {
        self.with(|| metrics::gauge!(CLIENTS_EXHAUSTED).set(as_f64(count)));
    }

    /// Records the number of interrupted registrations, at a scrape.
    pub fn record_interrupted_registrations(&self, count: usize) {
        self.with(|| metrics::gauge!(INTERRUPTED_REGISTRATIONS).set(as_f64(count)));
    }

    /// Recounts [`BINDINGS_EXPIRING_WITHIN_7_DAYS`] from the published bindings' expiries
    /// (seconds since the Unix epoch) at `now` (seconds since the Unix epoch): those that
    /// expire at or after `now` and before `now` plus 7 days. `GET /metrics` recounts at every
    /// scrape.
    pub fn record_bindings(&self, expiries: impl Iterator<Item = u64>, now: u64) {
        let horizon = now.saturating_add(WEEK_SECONDS);
        let count = expiries.filter(|at| (now..horizon).contains(at)).count();
        let value = as_f64(count);
        self.with(|| {
            metrics::describe_gauge!(
                BINDINGS_EXPIRING_WITHIN_7_DAYS,
                "Client bindings of the published snapshot whose access ends within the next \
                 7 days"
            );
            metrics::gauge!(BINDINGS_EXPIRING_WITHIN_7_DAYS).set(value);
        });
    }

    /// Every metric, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        self.recorder.handle().render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_route_template_method_and_status() {
        let metrics = Metrics::default();
        metrics.record_request(Some("/admin/v1/apis/{id}"), "GET", 200, 0.002);
        metrics.record_request(Some("/admin/v1/apis/{id}"), "GET", 200, 0.003);
        metrics.record_request(None, "BREW", 404, 0.001);
        let text = metrics.render();
        assert!(
            text.contains(
                "portico_http_requests_total{route=\"/admin/v1/apis/{id}\",method=\"GET\",status=\"200\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "portico_http_requests_total{route=\"unmatched\",method=\"other\",status=\"404\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("portico_http_request_duration_seconds_bucket{route=\"/admin/v1/apis/{id}\",method=\"GET\",le=\"0.005\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn publications_and_filters_are_gauged() {
        let metrics = Metrics::default();
        assert!(
            metrics
                .render()
                .contains("portico_snapshot_publish_failures_total 0")
        );
        metrics.record_publish(7, 1200, 3400, 0.02);
        metrics.record_publish_failure();
        metrics.record_filters(3, 2, true);
        let text = metrics.render();
        for line in [
            "portico_snapshot_version 7",
            "portico_snapshot_bytes{encoding=\"binary\"} 1200",
            "portico_snapshot_bytes{encoding=\"json\"} 3400",
            "portico_snapshot_build_duration_seconds_count 1",
            "portico_snapshot_publish_failures_total 1",
            "portico_connected_filters 3",
            "portico_open_long_polls 2",
            "portico_publisher 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn dcr_calls_are_counted_by_provider_operation_and_outcome() {
        let metrics = Metrics::default();
        metrics.record_dcr_call(
            Provider::Keycloak,
            DcrOperation::Register,
            CallOutcome::Ok,
            0.2,
        );
        metrics.record_dcr_call(
            Provider::Keycloak,
            DcrOperation::Delete,
            CallOutcome::Timeout,
            10.0,
        );
        let text = metrics.render();
        for line in [
            "portico_dcr_calls_total{provider=\"keycloak\",operation=\"register\",outcome=\"ok\"} 1",
            "portico_dcr_calls_total{provider=\"keycloak\",operation=\"delete\",outcome=\"timeout\"} 1",
            "portico_dcr_call_duration_seconds_bucket{provider=\"keycloak\",operation=\"register\",outcome=\"ok\",le=\"0.25\"} 1",
            "portico_dcr_call_duration_seconds_count{provider=\"keycloak\",operation=\"delete\",outcome=\"timeout\"} 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn key_fetches_are_counted_by_issuer_id_and_outcome() {
        let metrics = Metrics::default();
        metrics.record_key_fetch("corp-idp", CallOutcome::Ok, 0.01);
        metrics.record_key_fetch("corp-idp", CallOutcome::InvalidResponse, 0.01);
        let text = metrics.render();
        for line in [
            "portico_key_fetches_total{issuer=\"corp-idp\",outcome=\"ok\"} 1",
            "portico_key_fetches_total{issuer=\"corp-idp\",outcome=\"invalid_response\"} 1",
            "portico_key_fetch_duration_seconds_sum{issuer=\"corp-idp\",outcome=\"ok\"} 0.01",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn counts_only_bindings_expiring_within_the_week() {
        let metrics = Metrics::default();
        let now = 1_000_000;
        metrics.record_bindings(
            [now - 1, now, now + WEEK_SECONDS - 1, now + WEEK_SECONDS].into_iter(),
            now,
        );
        assert!(
            metrics
                .render()
                .contains(&format!("{BINDINGS_EXPIRING_WITHIN_7_DAYS} 2")),
            "{}",
            metrics.render()
        );
    }
}
