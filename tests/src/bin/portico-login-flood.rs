//! Measures what a flood of portal log-ins does to the control plane: the real `portico`
//! binary takes `FLOOD` concurrent log-ins (default 150, each with a wrong password, so each
//! costs an argon2id check), while one developer logs in with the right password and an
//! operator calls the admin API. Prints the control plane's resident memory (VmRSS) before
//! and at its peak during the flood, and the latency of that log-in and that admin call,
//! idle and during the flood. Log-ins beyond the hashing queue are shed with 503 `login_busy`;
//! the real developer retries after `Retry-After` as a person would, and the figure is the
//! time until signed in.
//!
//! Two floods: from `FLOOD` different client addresses (127.0.1.x, so neither the per-email
//! nor the per-address throttle stops any attempt: every one is hashed, the worst case for
//! memory), then from one address (the per-address throttle answers most with 429 at once).
//!
//! Usage: `portico-login-flood [FLOOD]`. Needs the built `portico` binary next to this one
//! (scripts/bench.sh builds both in release mode); never part of the tests.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portico_tests::ControlPlane;
use portico_tests::control_plane::ADMIN_KEY;
use portico_tests::memory::{mib, rss};
use serde_json::json;

const EMAIL: &str = "ada@example.com";
const PASSWORD: &str = "correct horse battery staple";

#[tokio::main]
async fn main() {
    let flood: u8 = match std::env::args().nth(1).map(|n| n.parse()) {
        None => 150,
        Some(Ok(n)) if n > 0 && n < 250 => n,
        Some(_) => {
            eprintln!("usage: portico-login-flood [FLOOD] (1 to 249)");
            std::process::exit(64);
        }
    };
    let control_plane = ControlPlane::start(&[]).await;
    let pid = control_plane.pid().expect("a running control plane");
    control_plane
        .create(
            "/developers",
            json!({"email": EMAIL, "name": "Ada", "password": PASSWORD}),
        )
        .await;
    let login_url = control_plane.url("/portal/api/v1/login");
    let admin_url = control_plane.url("/admin/v1/apis");
    let real = client(Ipv4Addr::new(127, 0, 0, 2));

    // Warm up, then the idle figures.
    for _ in 0..3 {
        log_in(&real, &login_url, EMAIL, PASSWORD).await;
        admin_call(&real, &admin_url).await;
    }
    let idle_login = log_in(&real, &login_url, EMAIL, PASSWORD).await;
    let idle_admin = admin_call(&real, &admin_url).await;
    println!("control plane: pid {pid}, {flood} concurrent log-ins per flood");
    println!(
        "idle: a log-in {:.0} ms, an admin call {:.1} ms, RSS {:.1} MiB",
        ms(idle_login.0),
        ms(idle_admin),
        mib(rss(pid))
    );
    println!();
    println!(
        "| flood | statuses | flood took | RSS before | RSS peak | growth | real log-in (tries) | admin call |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for spread in [true, false] {
        // Every flood needs fresh throttle tables: a new email per attempt, and (spread) a new
        // address per attempt.
        let label = if spread {
            format!("from {flood} addresses")
        } else {
            "from one address".to_owned()
        };
        let before = rss(pid);
        let peak = Arc::new(AtomicU64::new(before));
        let running = Arc::new(AtomicBool::new(true));
        let sampler = {
            let (peak, running) = (Arc::clone(&peak), Arc::clone(&running));
            tokio::spawn(async move {
                while running.load(Ordering::SeqCst) {
                    peak.fetch_max(rss(pid), Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        // Clients are built before the clock starts: building one is CPU work in this process
        // that would otherwise delay the measured calls, not the control plane.
        let clients: Vec<_> = (1..=flood)
            .map(|n| {
                let address = if spread {
                    Ipv4Addr::new(127, 0, 1, n)
                } else {
                    Ipv4Addr::new(127, 0, 0, 3)
                };
                (n, client(address))
            })
            .collect();
        let started = Instant::now();
        let attempts: Vec<_> = clients
            .into_iter()
            .map(|(n, client)| {
                let url = login_url.clone();
                let email = format!("flood-{}-{n}@example.com", u8::from(spread));
                tokio::spawn(async move {
                    log_in(&client, &url, &email, "a wrong password, surely")
                        .await
                        .1
                })
            })
            .collect();
        // Let the flood queue up, then the real developer and the operator.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (login, admin) = tokio::join!(
            log_in_as_a_person(&real, &login_url),
            admin_call(&real, &admin_url)
        );
        let mut statuses = std::collections::BTreeMap::new();
        for attempt in attempts {
            *statuses
                .entry(attempt.await.expect("a flood task"))
                .or_insert(0) += 1;
        }
        let took = started.elapsed();
        running.store(false, Ordering::SeqCst);
        sampler.await.expect("the sampler");
        let peak = peak.load(Ordering::SeqCst);
        let statuses: Vec<String> = statuses
            .iter()
            .map(|(status, count)| format!("{count}× {status}"))
            .collect();
        println!(
            "| {label} | {} | {:.1} s | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.2} s ({}) | {:.1} ms |",
            statuses.join(", "),
            took.as_secs_f64(),
            mib(before),
            mib(peak),
            mib(peak.saturating_sub(before)),
            login.0.as_secs_f64(),
            login.1,
            ms(admin)
        );
    }
}

/// An HTTP client whose connections come from `address` (any 127.0.0.0/8 address is local).
fn client(address: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::V4(address))
        .timeout(Duration::from_secs(300))
        .build()
        .expect("an HTTP client")
}

/// One log-in: how long it took and the status.
async fn log_in(
    client: &reqwest::Client,
    url: &str,
    email: &str,
    password: &str,
) -> (Duration, u16) {
    let started = Instant::now();
    let status = client
        .post(url)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .map_or(0, |response| response.status().as_u16());
    (started.elapsed(), status)
}

/// The real developer's log-in as a person (or a browser) does it: retried after
/// `Retry-After` when it is shed (503 `login_busy`), at most 30 times. The time until signed
/// in, and how many tries it took.
async fn log_in_as_a_person(client: &reqwest::Client, url: &str) -> (Duration, u32) {
    let started = Instant::now();
    for tries in 1..=30 {
        let response = client
            .post(url)
            .json(&json!({"email": EMAIL, "password": PASSWORD}))
            .send()
            .await
            .expect("a log-in answer");
        match response.status().as_u16() {
            200 => return (started.elapsed(), tries),
            503 => {
                let wait: u64 = response
                    .headers()
                    .get("retry-after")
                    .and_then(|value| value.to_str().ok()?.parse().ok())
                    .expect("a Retry-After on 503");
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
            status => panic!("the real log-in answered {status}"),
        }
    }
    panic!("the real log-in was shed 30 times");
}

/// One admin call (list the APIs): how long it took.
async fn admin_call(client: &reqwest::Client, url: &str) -> Duration {
    let started = Instant::now();
    let response = client
        .get(url)
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("an admin answer");
    assert_eq!(response.status(), 200, "the admin call succeeds");
    started.elapsed()
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
