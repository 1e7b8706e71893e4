//! Waiting for a condition with a bound, never for a fixed time.

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
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

/// Waits until `url` answers a 2xx status, for at most `bound`; panics naming `what`.
pub async fn eventually_ok(what: &str, url: &str, bound: Duration) {
    let http = reqwest::Client::new();
    eventually(what, bound, || {
        let request = http.get(url).send();
        async move { request.await.ok()?.status().is_success().then_some(()) }
    })
    .await;
}

/// The first value `parse` finds in a line of `output` (a child's stdout), read on a thread;
/// the receiver fails when the output ends without one.
pub fn first_line_matching<T: Send + 'static>(
    output: impl Read + Send + 'static,
    parse: impl Fn(&str) -> Option<T> + Send + 'static,
) -> tokio::sync::oneshot::Receiver<T> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut sender = Some(sender);
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { break };
            if let Some(value) = parse(&line)
                && let Some(sender) = sender.take()
            {
                let _ = sender.send(value);
            }
        }
    });
    receiver
}
