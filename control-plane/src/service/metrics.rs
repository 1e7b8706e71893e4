//! The control plane's Prometheus metrics, rendered by `GET /metrics` in the text exposition
//! format. Each [`AppState`](super::AppState) owns its recorder (no global one), so several
//! control planes in one process (tests) keep their figures apart.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

/// The gauge of bindings (client, policy) whose access ends within the next 7 days.
pub const BINDINGS_EXPIRING_WITHIN_7_DAYS: &str = "portico_bindings_expiring_within_7_days";

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
        let recorder = PrometheusBuilder::new().build_recorder();
        let metrics = Metrics { recorder };
        metrics.record_bindings(std::iter::empty(), 0);
        metrics
    }
}

impl Metrics {
    /// Recounts [`BINDINGS_EXPIRING_WITHIN_7_DAYS`] from the published bindings' expiries
    /// (seconds since the Unix epoch) at `now` (seconds since the Unix epoch): those that
    /// expire at or after `now` and before `now` plus 7 days. `GET /metrics` recounts at every
    /// scrape.
    pub fn record_bindings(&self, expiries: impl Iterator<Item = u64>, now: u64) {
        let horizon = now.saturating_add(WEEK_SECONDS);
        let count = expiries.filter(|at| (now..horizon).contains(at)).count();
        // Counts stay far below 2^53, where f64 is exact.
        #[allow(clippy::cast_precision_loss)]
        let value = count as f64;
        metrics::with_local_recorder(&self.recorder, || {
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
