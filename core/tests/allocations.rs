//! How many heap allocations one decision for a cached token costs, counted with dhat in
//! testing mode. Inside Envoy every allocation runs the VM's own allocator, and the filter's
//! work on a cached token is mostly allocation (BENCHMARKS.md, "What each optimisation
//! bought"), so the count is held here, where it is exact and does not depend on the machine.
//! The test owns the process's global allocator, so it lives alone in this file.

#![allow(
    clippy::expect_used,
    reason = "test setup: a broken fixture should stop the test"
)]

use std::time::Duration;

use portico_core::alg::Algorithm;
use portico_core::cache::TokenCache;
use portico_core::crypto::PureRustVerifier;
use portico_core::decision::{Decision, Gateway, Request};
use portico_core::rate_limit::MemoryCounters;
use portico_core::request::edits;
use portico_core::snapshot::{CompiledSnapshot, Snapshot};
use portico_core::testing::{TestKey, jwks};
use serde_json::json;

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

const ISSUER: &str = "https://idp.example.com";
const NOW: u64 = 1_800_000_000;

/// Blocks allocated by `run`.
fn allocations(run: impl FnOnce()) -> u64 {
    let before = dhat::HeapStats::get().total_blocks;
    run();
    dhat::HeapStats::get().total_blocks - before
}

#[test]
fn a_cached_decision_allocates_little() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let snapshot: Snapshot = serde_json::from_value(json!({
        "apis": [{"id": "orders", "listen_path": "/orders", "issuers": ["idp"],
                  "audiences": ["orders"], "identity_claims": ["client_id"],
                  "default_policies": ["p"]}],
        "issuers": [{"id": "idp", "issuer": ISSUER, "keys": jwks(&[&TestKey::rsa_a()])["keys"]}],
        "policies": [{"id": "p", "access_rights": [{"api": "orders"}]}]
    }))
    .expect("a snapshot");
    let compiled = CompiledSnapshot::compile(snapshot).expect("valid");
    let mut gateway = Gateway::new(TokenCache::new(10_000, [1; 16]), &[], None);
    gateway.apply(compiled);
    let token = TestKey::rsa_a().token(
        Algorithm::RS256,
        &json!({"iss": ISSUER, "aud": "orders", "client_id": "c-1", "sub": "c-1",
                "iat": NOW, "exp": NOW + 3600, "scope": "orders:read"}),
    );
    let authorization = format!("Bearer {token}");
    // What Envoy hands a filter for `wrk`'s request: pseudo-headers, then the rest.
    let headers = [
        (":authority", "127.0.0.1:10000"),
        (":path", "/orders/1"),
        (":method", "GET"),
        (":scheme", "http"),
        ("authorization", authorization.as_str()),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "0f8e4d53-8b9c-4c1e-9d6a-2f1b3c4d5e6f"),
    ];
    let mut counters = MemoryCounters::default();
    let now = Duration::from_secs(NOW);
    let mut decide = || {
        let request = Request::from_headers(&headers, None);
        let decision = gateway.decide(&request, &PureRustVerifier, &mut counters, now);
        assert!(matches!(decision, Decision::Allow(_)), "{decision:?}");
        let edits = edits(gateway.snapshot().map(|s| &**s), &decision, &request);
        assert_eq!(edits.set.len(), 1, "{edits:?}");
    };
    // The first decision verifies the token and fills the cache.
    decide();
    let count = allocations(&mut decide);
    writeln_stderr(count);
    // Seven: the token places found, the held and the granting policies, the granting
    // policies' ids, and the edits (their list, the identity header's name and value). Cutting
    // the route's candidate prefixes without a list took it from nine.
    assert!(
        count <= 7,
        "a cached decision allocated {count} times (seven before)"
    );
}

fn writeln_stderr(count: u64) {
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "allocations per cached decision: {count}"
    );
}
