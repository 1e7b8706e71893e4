//! Waiting for a condition with a bound, never for a fixed time.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long to wait between two checks.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Checks `condition` until it yields `Some`, for at most `bound`; panics naming `what` when
/// the bound passes.
pub async fn eventually<T, F, Fut>(what: &str, bound: Duration, mut condition: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + bound;
    loop {
        if let Some(value) = condition().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after {bound:?} waiting for {what}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
