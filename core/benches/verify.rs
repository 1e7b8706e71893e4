//! Native microbenchmarks: token verification per algorithm (pure Rust, no cache), and a
//! whole decision for a token that is already in the cache.
//!
//! Run with `cargo bench -p portico-core --bench verify`.

#![allow(
    clippy::expect_used,
    reason = "benchmark setup: a broken fixture should stop the run"
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use portico_core::alg::Algorithm;
use portico_core::cache::TokenCache;
use portico_core::crypto::PureRustVerifier;
use portico_core::decision::{Decision, Gateway, Request};
use portico_core::jwk::{KeySet, VerifyingKey};
use portico_core::rate_limit::MemoryCounters;
use portico_core::rules::DEFAULT_MAX_TOKEN_BYTES;
use portico_core::snapshot::{CompiledSnapshot, Snapshot};
use portico_core::testing::{TestKey, jwks};
use portico_core::token::{TokenRules, TrustedIssuer, verify};
use serde_json::json;

const ISSUER: &str = "https://idp.example.com";
const NOW: u64 = 1_800_000_000;

fn claims() -> serde_json::Value {
    json!({"iss": ISSUER, "sub": "client", "client_id": "client", "exp": NOW + 600, "iat": NOW,
           "aud": "orders", "scope": "orders:read orders:write", "jti": "2b8f3c1e-9d57-4e0e-8f0a-1c2d3e4f5a6b"})
}

fn verification(c: &mut Criterion) {
    let secret = TestKey::hmac("shared", 64);
    let cases = [
        (TestKey::rsa_a(), Algorithm::RS256),
        (TestKey::rsa_a(), Algorithm::RS384),
        (TestKey::rsa_a(), Algorithm::RS512),
        (TestKey::rsa_a(), Algorithm::PS256),
        (TestKey::p256_a(), Algorithm::ES256),
        (TestKey::p384_a(), Algorithm::ES384),
        (TestKey::ed25519_a(), Algorithm::EdDSA),
        (secret.clone(), Algorithm::HS256),
    ];
    let mut keys = KeySet::from_value(&jwks(&[
        &TestKey::rsa_a(),
        &TestKey::p256_a(),
        &TestKey::p384_a(),
        &TestKey::ed25519_a(),
    ]))
    .expect("a key set")
    .keys;
    keys.push(
        VerifyingKey::hmac(Some("shared".to_owned()), None, secret.secret().to_vec())
            .expect("a secret"),
    );
    let issuer = TrustedIssuer {
        issuer: ISSUER.to_owned(),
        keys,
        max_token_lifetime_seconds: None,
    };
    let mut group = c.benchmark_group("verify");
    for (key, alg) in cases {
        let rules = TokenRules {
            allowed_algorithms: [alg].into_iter().collect(),
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            require_exp: true,
            clock_skew_seconds: 60,
            audiences: vec!["orders".to_owned()],
            expected_typ: None,
        };
        let token = key.token(alg, &claims());
        group.bench_function(alg.name(), |b| {
            b.iter(|| {
                verify(
                    black_box(&token),
                    &rules,
                    &[&issuer],
                    &PureRustVerifier,
                    NOW as i64,
                )
                .expect("valid")
            });
        });
    }
    group.finish();
}

fn cached_decision(c: &mut Criterion) {
    let snapshot: Snapshot = serde_json::from_value(json!({
        "apis": [{"id": "orders", "listen_path": "/orders", "issuers": ["idp"], "accept_any_audience": true,
                  "identity_claims": ["client_id"], "default_policies": ["p"]}],
        "issuers": [{"id": "idp", "issuer": ISSUER, "keys": jwks(&[&TestKey::rsa_a()])["keys"]}],
        "policies": [{"id": "p", "access_rights": [{"api": "orders"}]}]
    }))
    .expect("a snapshot");
    let mut gateway = Gateway::new(TokenCache::new(10_000, [1; 16]), &[], None);
    gateway.apply(CompiledSnapshot::compile(snapshot).expect("valid"));
    let header = format!(
        "Bearer {}",
        TestKey::rsa_a().token(Algorithm::RS256, &claims())
    );
    let request = Request {
        method: "GET",
        path: "/orders/42",
        host: Some("api.example.com"),
        headers: &[("authorization", &header)],
        route_api: None,
    };
    let mut counters = MemoryCounters::default();
    let now = Duration::from_secs(NOW);
    c.bench_function("decide/cached_token", |b| {
        b.iter(|| {
            let decision =
                gateway.decide(black_box(&request), &PureRustVerifier, &mut counters, now);
            assert!(matches!(decision, Decision::Allow(_)));
        });
    });
}

criterion_group!(benches, verification, cached_decision);
criterion_main!(benches);
