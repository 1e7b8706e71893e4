//! Measures what a flood of distinct forged tokens does to the filter's memory: one Envoy
//! (`--concurrency 1`) with Portico and a static snapshot takes requests from `wrk` for
//! `SECONDS` (default 120), each with a different forged RS256 token (a valid header and
//! payload, a signature that is not the key's, so every one costs a signature check). Every one
//! must be refused 401. Prints how many distinct tokens were sent, Envoy's resident memory
//! (VmRSS) before, at each tenth of the run, at its peak and at the end, and checks that a
//! valid token still passes afterwards.
//!
//! The filter remembers refusals in its token cache, which holds at most twice
//! `token_cache.capacity` entries (10,000 by default), so the memory should stop growing once
//! the cache is full, whatever the flood's length.
//!
//! Usage: `portico-forged-memory [SECONDS]` (scripts/bench.sh builds it and wrk; never part of
//! the tests).

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portico_core::alg::Algorithm;
use portico_core::testing::{TestKey, b64, jwks};
use portico_tests::envoy::EnvoyConfig;
use portico_tests::memory::{mib, rss};
use portico_tests::paths::{filter_wasm, workspace_root};
use portico_tests::{EchoUpstream, Envoy};
use serde_json::json;

const ISSUER: &str = "https://idp.bench.portico.test";

/// Sends, as the n-th request, the forged token `args[1]` with the 6 signature characters
/// before the last 4 replaced by n in base64url: all distinct, all well-formed.
const WRK_SCRIPT: &str = r#"
local head, tail, count = nil, nil, 0
local digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
init = function(args)
  local token = args[1]
  head = token:sub(1, #token - 10)
  tail = token:sub(#token - 3)
end
request = function()
  count = count + 1
  local n, middle = count, ""
  for _ = 1, 6 do
    local d = n % 64
    middle = middle .. digits:sub(d + 1, d + 1)
    n = math.floor(n / 64)
  end
  return wrk.format("GET", "/orders/1", { ["Authorization"] = "Bearer " .. head .. middle .. tail })
end
done = function(summary, latency, requests)
  io.write(string.format('{"requests":%d,"status_errors":%d,"socket_errors":%d}\n',
    summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"#;

#[tokio::main]
async fn main() {
    let seconds: u64 = match std::env::args().nth(1).map(|n| n.parse()) {
        None => 120,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: portico-forged-memory [SECONDS]");
            std::process::exit(64);
        }
    };
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("portico-forged-memory: wrk is not installed: run `scripts/setup.sh --bench`");
        std::process::exit(69);
    }
    let out = workspace_root().join("target/bench");
    std::fs::create_dir_all(&out).expect("create target/bench");
    let script = out.join("forged-memory.lua");
    std::fs::write(&script, WRK_SCRIPT).expect("write the wrk script");

    let key = TestKey::rsa_a();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let valid = key.token(
        Algorithm::RS256,
        &json!({"iss": ISSUER, "client_id": "bench", "aud": "orders", "iat": now, "exp": now + 3600}),
    );
    let (signing_input, _) = valid.rsplit_once('.').expect("three parts");
    let junk: Vec<u8> = (0..256_u32).map(|i| (i * 31 % 251) as u8).collect();
    let forged = format!("{signing_input}.{}", b64(&junk));

    let upstream = EchoUpstream::start().await;
    let mut config = EnvoyConfig::new(
        json!({"snapshot": {
            "version": 1,
            "apis": [{"id": "orders", "listen_path": "/orders", "issuers": ["idp"],
                      "allowed_algorithms": ["RS256"], "audiences": ["orders"],
                      "identity_claims": ["client_id"], "default_policies": ["bench"]}],
            "issuers": [{"id": "idp", "issuer": ISSUER, "keys": jwks(&[&key])["keys"]}],
            "policies": [{"id": "bench", "access_rights": [{"api": "orders"}]}]
        }})
        .to_string(),
        upstream.addr,
    );
    config.concurrency = 1;
    let envoy = Envoy::start_bootstrap(&config.bootstrap(&filter_wasm()), 1, "info").await;
    let pid = envoy.pid();
    assert_eq!(envoy.call("/orders/1", Some(&forged)).await.0, 401);
    assert_eq!(envoy.call("/orders/1", Some(&valid)).await.0, 200);

    let before = rss(pid);
    let peak = Arc::new(AtomicU64::new(before));
    let running = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, running) = (Arc::clone(&peak), Arc::clone(&running));
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while running.load(Ordering::SeqCst) {
                let now = rss(pid);
                peak.fetch_max(now, Ordering::SeqCst);
                samples.push(now);
                // Sampling interval, not a wait for a condition.
                #[allow(clippy::disallowed_methods, reason = "a sampling interval")]
                std::thread::sleep(Duration::from_millis(250));
            }
            samples
        })
    };
    let started = std::time::Instant::now();
    let output = Command::new("wrk")
        .args(["-t1", "-c16", "--timeout", "5s"])
        .arg(format!("-d{seconds}s"))
        .arg("-s")
        .arg(&script)
        .arg(envoy.url("/orders/1"))
        .arg("--")
        .arg(&forged)
        .output()
        .expect("run wrk");
    let took = started.elapsed();
    running.store(false, Ordering::SeqCst);
    let samples = sampler.join().expect("the sampler");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: serde_json::Value = stdout
        .lines()
        .find(|line| line.starts_with('{'))
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("wrk printed no result:\n{stdout}"));
    let sent = summary["requests"].as_u64().expect("requests");
    assert_eq!(summary["socket_errors"], 0, "{summary}");
    assert_eq!(
        summary["status_errors"].as_u64(),
        Some(sent),
        "every forged token is refused: {summary}"
    );
    assert_eq!(
        envoy.call("/orders/1", Some(&valid)).await.0,
        200,
        "a valid token still passes"
    );
    let after = rss(pid);
    println!(
        "{sent} distinct forged tokens in {:.1} s ({:.0} requests/s), every one 401",
        took.as_secs_f64(),
        sent as f64 / took.as_secs_f64()
    );
    println!(
        "Envoy VmRSS: before {:.1} MiB, peak {:.1} MiB (+{:.1} MiB), after {:.1} MiB",
        mib(before),
        mib(peak.load(Ordering::SeqCst)),
        mib(peak.load(Ordering::SeqCst).saturating_sub(before)),
        mib(after)
    );
    let tenths: Vec<String> = (1..=10)
        .map(|tenth| {
            let index = (samples.len() * tenth / 10).saturating_sub(1);
            format!("{:.1}", mib(samples.get(index).copied().unwrap_or(after)))
        })
        .collect();
    println!(
        "VmRSS at each tenth of the flood (MiB): {}",
        tenths.join(", ")
    );
}
