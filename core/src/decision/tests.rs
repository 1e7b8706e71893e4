use std::cell::Cell;

use serde_json::{Value, json};

use super::*;
use crate::alg::Algorithm;
use crate::crypto::{PureRustVerifier, SignatureError};
use crate::jwk::VerifyingKey;
use crate::rate_limit::MemoryCounters;
use crate::snapshot::Snapshot;
use crate::testing::TestKey;

const ISSUER: &str = "https://idp.example.com";
const NOW: Duration = Duration::from_secs(1_800_000_000);

/// Counts signature checks, so tests can tell a cache hit from a verification.
#[derive(Default)]
struct CountingVerifier {
    calls: Cell<usize>,
}

impl SignatureVerifier for CountingVerifier {
    fn verify(
        &self,
        alg: Algorithm,
        key: &VerifyingKey,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        self.calls.set(self.calls.get() + 1);
        PureRustVerifier.verify(alg, key, message, signature)
    }
}

fn snapshot_json() -> Value {
    json!({
        "version": 1,
        "apis": [
            {"id": "orders", "listen_path": "/orders", "audiences": ["https://api.example.com"], "issuers": ["idp"],
             "identity_claims": ["client_id", "sub"], "default_policies": ["basic"],
             "policies_header": "x-portico-policies"},
            {"id": "payments", "listen_path": "/payments", "audiences": ["https://api.example.com"], "issuers": ["idp"],
             "identity_claims": ["client_id"]},
            {"id": "reports", "listen_path": "/reports", "audiences": ["https://api.example.com"], "issuers": ["idp"],
             "identity_claims": ["client_id"]}
        ],
        "issuers": [{"id": "idp", "issuer": ISSUER, "keys": [TestKey::rsa_a().public_jwk()]}],
        "policies": [
            {"id": "basic", "access_rights": [{"api": "orders", "methods": ["GET"]}]},
            {"id": "gold", "access_rights": [{"api": "orders"}, {"api": "payments"}],
             "rate_limit": {"requests": 3, "per_seconds": 60}},
            {"id": "reports-v1", "access_rights": [{"api": "reports", "path_prefixes": ["/reports/v1"]}],
             "quota": {"max": 2, "renewal_seconds": 3600}},
            {"id": "retired", "state": "inactive", "access_rights": [{"api": "payments"}]},
            {"id": "silver", "access_rights": [{"api": "payments"}],
             "rate_limit": {"requests": 1, "per_seconds": 60}}
        ],
        "clients": [{"client_id": "bound-client", "policies": ["gold"]}],
        "revoked_clients": ["revoked-client"]
    })
}

fn gateway_with(snapshot: Value) -> Gateway {
    let snapshot: Snapshot = serde_json::from_value(snapshot).unwrap();
    let mut gateway = Gateway::new(TokenCache::new(100, [9; 16]), &[], None);
    gateway.apply(CompiledSnapshot::compile(snapshot).unwrap());
    gateway
}

fn gateway() -> Gateway {
    gateway_with(snapshot_json())
}

fn token(claims: Value) -> String {
    let mut all = json!({"iss": ISSUER, "aud": "https://api.example.com",
                         "exp": NOW.as_secs() + 600, "iat": NOW.as_secs()});
    for (name, value) in claims.as_object().unwrap() {
        all[name] = value.clone();
    }
    TestKey::rsa_a().token(Algorithm::RS256, &all)
}

struct Call<'a> {
    method: &'a str,
    path: &'a str,
    token: Option<String>,
}

fn get(path: &str, token: Option<String>) -> Call<'_> {
    Call {
        method: "GET",
        path,
        token,
    }
}

fn decide(gateway: &mut Gateway, call: &Call<'_>) -> Decision {
    decide_at(gateway, call, &mut MemoryCounters::default(), NOW)
}

fn decide_at(
    gateway: &mut Gateway,
    call: &Call<'_>,
    counters: &mut MemoryCounters,
    now: Duration,
) -> Decision {
    let authorization = call.token.as_ref().map(|token| format!("Bearer {token}"));
    let headers = authorization_headers(authorization.as_deref());
    let request = Request {
        method: call.method,
        path: call.path,
        host: Some("api.example.com"),
        headers: &headers,
        route_api: None,
    };
    gateway.decide(&request, &PureRustVerifier, counters, now)
}

/// The headers of a request with this `Authorization` value, if any.
fn authorization_headers(authorization: Option<&str>) -> Vec<(&'static str, &str)> {
    authorization
        .map(|value| ("authorization", value))
        .into_iter()
        .collect()
}

fn denial(decision: Decision) -> Denial {
    match decision {
        Decision::Deny { denial, .. } => denial,
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn grant(decision: Decision) -> Grant {
    match decision {
        Decision::Allow(grant) => grant,
        other => panic!("expected an allow, got {other:?}"),
    }
}

fn policy_ids(grant: &Grant) -> Vec<&str> {
    grant.policies.iter().map(|id| &**id).collect()
}

#[test]
fn refuses_with_503_before_the_first_snapshot() {
    let mut gateway = Gateway::new(TokenCache::new(10, [0; 16]), &[], None);
    let decision = decide(&mut gateway, &get("/orders", Some(token(json!({})))));
    assert_eq!(denial(decision), Denial::SnapshotUnavailable);
}

#[test]
fn fail_open_paths_pass_before_the_first_snapshot_only() {
    let mut gateway = Gateway::new(TokenCache::new(10, [0; 16]), &["/orders".to_owned()], None);
    assert_eq!(
        decide(&mut gateway, &get("/orders/1", None)),
        Decision::PassThrough
    );
    assert_eq!(
        denial(decide(&mut gateway, &get("/payments", None))),
        Denial::SnapshotUnavailable
    );
    assert_eq!(
        denial(decide(&mut gateway, &get("/orders/%00", None))),
        Denial::InvalidPath(NUL_IN_PATH)
    );
    gateway.apply(
        CompiledSnapshot::compile(serde_json::from_value(snapshot_json()).unwrap()).unwrap(),
    );
    assert_eq!(
        denial(decide(&mut gateway, &get("/orders/1", None))),
        Denial::MissingToken
    );
}

#[test]
fn paths_outside_every_api_pass_through() {
    let mut gateway = gateway();
    assert_eq!(
        decide(&mut gateway, &get("/health", None)),
        Decision::PassThrough
    );
    assert_eq!(
        decide(&mut gateway, &get("/ordersx", None)),
        Decision::PassThrough
    );
}

#[test]
fn unmatched_deny_refuses_with_no_api_except_under_public_prefixes() {
    let mut value = snapshot_json();
    value["global"] = json!({"unmatched": "deny", "public_prefixes": ["/health"]});
    let mut gateway = gateway_with(value);
    assert_eq!(
        denial(decide(&mut gateway, &get("/admin", None))),
        Denial::NoApi
    );
    assert_eq!(
        denial(decide(&mut gateway, &get("/ordersx", None))),
        Denial::NoApi
    );
    assert_eq!(
        decide(&mut gateway, &get("/health/ready", None)),
        Decision::PassThrough
    );
    assert_eq!(
        denial(decide(&mut gateway, &get("/orders/1", None))),
        Denial::MissingToken
    );
}

#[test]
fn the_plugin_configuration_overrides_the_snapshot_rule_for_unmatched_requests() {
    let rule = crate::snapshot::compile_global(
        &serde_json::from_value(json!({"unmatched": "deny", "public_prefixes": ["/status"]}))
            .unwrap(),
    )
    .unwrap();
    let mut gateway = Gateway::new(TokenCache::new(10, [0; 16]), &[], Some(rule));
    gateway.apply(
        CompiledSnapshot::compile(serde_json::from_value(snapshot_json()).unwrap()).unwrap(),
    );
    assert_eq!(
        denial(decide(&mut gateway, &get("/admin", None))),
        Denial::NoApi
    );
    assert_eq!(
        decide(&mut gateway, &get("/status", None)),
        Decision::PassThrough
    );
}

#[test]
fn route_metadata_selects_the_api_before_any_path_matching() {
    let mut gateway = gateway();
    let header = format!("Bearer {}", token(json!({"client_id": "c", "pol": "gold"})));
    let decide_routed = |gateway: &mut Gateway, path, route_api, authorization| {
        let headers = authorization_headers(authorization);
        let request = Request {
            method: "GET",
            path,
            host: None,
            headers: &headers,
            route_api,
        };
        gateway.decide(
            &request,
            &PureRustVerifier,
            &mut MemoryCounters::default(),
            NOW,
        )
    };
    // A path that matches no listen path is still protected when its route names the API.
    let decision = decide_routed(&mut gateway, "/v2/anything", Some("payments"), None);
    assert_eq!(denial(decision), Denial::MissingToken);
    let decision = decide_routed(&mut gateway, "/orders/1", Some("payments"), Some(&header));
    assert_eq!(grant(decision).api, 1);
    // A route naming an API the snapshot lacks fails closed.
    let decision = decide_routed(&mut gateway, "/health", Some("gone"), None);
    assert_eq!(denial(decision), Denial::NoApi);
}

#[test]
fn missing_or_non_bearer_credentials_are_a_missing_token() {
    let mut gateway = gateway();
    assert_eq!(
        denial(decide(&mut gateway, &get("/orders", None))),
        Denial::MissingToken
    );
    let request = Request {
        method: "GET",
        path: "/orders",
        host: None,
        headers: &[("authorization", "Basic dXNlcjpwYXNz")],
        route_api: None,
    };
    let decision = gateway.decide(
        &request,
        &PureRustVerifier,
        &mut MemoryCounters::default(),
        NOW,
    );
    assert_eq!(denial(decision), Denial::MissingToken);
}

#[test]
fn bearer_scheme_is_case_insensitive_and_needs_a_token() {
    assert_eq!(bearer_token(Some("Bearer abc")), Some("abc"));
    assert_eq!(bearer_token(Some("bearer   abc ")), Some("abc"));
    assert_eq!(bearer_token(Some("BEARER abc")), Some("abc"));
    assert_eq!(bearer_token(Some("Bearer")), None);
    assert_eq!(bearer_token(Some("Bearer ")), None);
    assert_eq!(bearer_token(Some("Bearerabc")), None);
    assert_eq!(bearer_token(Some("Token abc")), None);
    assert_eq!(bearer_token(None), None);
}

#[test]
fn invalid_tokens_are_refused_with_their_reason() {
    let mut gateway = gateway();
    let expired = {
        let claims = json!({"iss": ISSUER, "client_id": "c", "exp": NOW.as_secs() - 3600});
        TestKey::rsa_a().token(Algorithm::RS256, &claims)
    };
    let decision = decide(&mut gateway, &get("/orders", Some(expired)));
    assert_eq!(denial(decision), Denial::InvalidToken(TokenError::Expired));
}

#[test]
fn identity_is_the_first_present_identity_claim() {
    let mut gateway = gateway();
    let both = grant(decide(
        &mut gateway,
        &get(
            "/orders",
            Some(token(json!({"client_id": "cid", "sub": "user"}))),
        ),
    ));
    assert_eq!(&*both.identity, "cid");
    let sub_only = grant(decide(
        &mut gateway,
        &get("/orders", Some(token(json!({"sub": "user"})))),
    ));
    assert_eq!(&*sub_only.identity, "user");
    let empty_first = grant(decide(
        &mut gateway,
        &get(
            "/orders",
            Some(token(json!({"client_id": "", "sub": "user"}))),
        ),
    ));
    assert_eq!(&*empty_first.identity, "user");
}

#[test]
fn a_token_without_any_identity_claim_is_refused() {
    let mut gateway = gateway();
    let decision = decide(
        &mut gateway,
        &get("/payments", Some(token(json!({"sub": "user"})))),
    );
    assert_eq!(denial(decision), Denial::MissingIdentity);
}

#[test]
fn revoked_clients_are_refused_even_with_valid_tokens() {
    let mut gateway = gateway();
    let decision = decide(
        &mut gateway,
        &get(
            "/orders",
            Some(token(json!({"client_id": "revoked-client"}))),
        ),
    );
    assert_eq!(denial(decision), Denial::ClientRevoked);
}

#[test]
fn a_revoked_clients_tokens_are_refused_whichever_claim_names_it() {
    let mut gateway = gateway();
    // The orders API identifies callers by `client_id`, then `sub`: a user's token of a
    // revoked client names the user in `sub` and the client in another claim.
    for claims in [
        json!({"sub": "user-42", "azp": "revoked-client"}),
        json!({"sub": "user-42", "cid": "revoked-client"}),
        json!({"sub": "user-42", "clientId": "revoked-client"}),
        json!({"sub": "revoked-client", "azp": "other-app"}),
    ] {
        let decision = decide(&mut gateway, &get("/orders", Some(token(claims.clone()))));
        assert_eq!(denial(decision), Denial::ClientRevoked, "{claims}");
    }
    let other = decide(
        &mut gateway,
        &get(
            "/orders",
            Some(token(json!({"sub": "user-42", "azp": "other-app"}))),
        ),
    );
    assert!(matches!(other, Decision::Allow(_)), "{other:?}");
}

#[test]
fn policy_claim_grants_as_string_or_array() {
    let mut gateway = gateway();
    let one = grant(decide(
        &mut gateway,
        &get(
            "/payments",
            Some(token(json!({"client_id": "c", "pol": "gold"}))),
        ),
    ));
    assert_eq!(policy_ids(&one), ["gold"]);
    let many = grant(decide(
        &mut gateway,
        &get(
            "/payments",
            Some(token(json!({"client_id": "c", "pol": ["silver", "gold"]}))),
        ),
    ));
    assert_eq!(policy_ids(&many), ["silver", "gold"]);
}

#[test]
fn unknown_claimed_policies_are_ignored_and_reported_once() {
    let mut gateway = gateway();
    let claims = json!({"client_id": "c", "pol": ["platinum", "gold", "platinum"]});
    let granted = grant(decide(&mut gateway, &get("/payments", Some(token(claims)))));
    assert_eq!(policy_ids(&granted), ["gold"]);
    assert_eq!(gateway.take_unknown_policy_names(), ["platinum"]);
    assert!(gateway.take_unknown_policy_names().is_empty());
}

#[test]
fn client_bindings_add_to_claimed_policies() {
    let mut gateway = gateway();
    let bound = grant(decide(
        &mut gateway,
        &get(
            "/payments",
            Some(token(json!({"client_id": "bound-client"}))),
        ),
    ));
    assert_eq!(policy_ids(&bound), ["gold"]);
    let both = grant(decide(
        &mut gateway,
        &get(
            "/payments",
            Some(token(json!({"client_id": "bound-client", "pol": "silver"}))),
        ),
    ));
    assert_eq!(policy_ids(&both), ["silver", "gold"]);
}

#[test]
fn default_policies_apply_only_to_callers_without_policies() {
    let mut gateway = gateway();
    let default = grant(decide(
        &mut gateway,
        &get("/orders", Some(token(json!({"client_id": "c"})))),
    ));
    assert_eq!(policy_ids(&default), ["basic"]);
    // A caller with its own policy does not also get the default one.
    let own = grant(decide(
        &mut gateway,
        &get(
            "/orders",
            Some(token(json!({"client_id": "c", "pol": "gold"}))),
        ),
    ));
    assert_eq!(policy_ids(&own), ["gold"]);
}

#[test]
fn no_policy_at_all_is_refused_with_no_policy() {
    let mut gateway = gateway();
    let decision = decide(
        &mut gateway,
        &get("/payments", Some(token(json!({"client_id": "c"})))),
    );
    assert_eq!(denial(decision), Denial::NoPolicy);
    let unknown_only = decide(
        &mut gateway,
        &get(
            "/payments",
            Some(token(json!({"client_id": "c", "pol": "nope"}))),
        ),
    );
    assert_eq!(denial(unknown_only), Denial::NoPolicy);
}

#[test]
fn a_policy_for_another_api_is_access_denied() {
    let mut gateway = gateway();
    let decision = decide(
        &mut gateway,
        &get(
            "/reports/v1",
            Some(token(json!({"client_id": "c", "pol": "gold"}))),
        ),
    );
    assert_eq!(denial(decision), Denial::AccessDenied);
}

#[test]
fn an_inactive_policy_grants_nothing() {
    let mut gateway = gateway();
    let decision = decide(
        &mut gateway,
        &get(
            "/payments",
            Some(token(json!({"client_id": "c", "pol": "retired"}))),
        ),
    );
    assert_eq!(denial(decision), Denial::AccessDenied);
}

#[test]
fn method_restrictions_are_enforced() {
    let mut gateway = gateway();
    let caller = token(json!({"client_id": "c"}));
    assert!(matches!(
        decide(&mut gateway, &get("/orders", Some(caller.clone()))),
        Decision::Allow(_)
    ));
    let post = Call {
        method: "POST",
        path: "/orders",
        token: Some(caller),
    };
    assert_eq!(denial(decide(&mut gateway, &post)), Denial::AccessDenied);
}

#[test]
fn path_restrictions_are_enforced_at_segment_boundaries() {
    let mut gateway = gateway();
    let caller = || Some(token(json!({"client_id": "c", "pol": "reports-v1"})));
    let mut counters = MemoryCounters::default();
    assert!(matches!(
        decide_at(
            &mut gateway,
            &get("/reports/v1/daily", caller()),
            &mut counters,
            NOW
        ),
        Decision::Allow(_)
    ));
    assert_eq!(
        denial(decide(&mut gateway, &get("/reports/v2", caller()))),
        Denial::AccessDenied
    );
    assert_eq!(
        denial(decide(&mut gateway, &get("/reports/v10", caller()))),
        Denial::AccessDenied
    );
    assert_eq!(
        denial(decide(&mut gateway, &get("/reports/v1/../v2", caller()))),
        Denial::AccessDenied
    );
}

#[test]
fn rate_limit_refuses_after_the_allowance_and_reports_state() {
    let mut gateway = gateway();
    let mut counters = MemoryCounters::default();
    let caller = || Some(token(json!({"client_id": "c", "pol": "gold"})));
    for remaining in [2, 1, 0] {
        let granted = grant(decide_at(
            &mut gateway,
            &get("/payments", caller()),
            &mut counters,
            NOW,
        ));
        assert_eq!(granted.rate_limit.unwrap().remaining, remaining);
    }
    match denial(decide_at(
        &mut gateway,
        &get("/payments", caller()),
        &mut counters,
        NOW,
    )) {
        Denial::RateLimited(state) => assert_eq!(state.retry_after, Duration::from_secs(20)),
        other => panic!("{other:?}"),
    }
    // Another caller has its own allowance.
    let other = Some(token(json!({"client_id": "d", "pol": "gold"})));
    assert!(matches!(
        decide_at(&mut gateway, &get("/payments", other), &mut counters, NOW),
        Decision::Allow(_)
    ));
}

#[test]
fn the_most_generous_rate_limit_applies() {
    let mut gateway = gateway();
    let mut counters = MemoryCounters::default();
    let caller = || Some(token(json!({"client_id": "c", "pol": ["silver", "gold"]})));
    for _ in 0..3 {
        assert!(matches!(
            decide_at(
                &mut gateway,
                &get("/payments", caller()),
                &mut counters,
                NOW
            ),
            Decision::Allow(_)
        ));
    }
    assert!(matches!(
        denial(decide_at(
            &mut gateway,
            &get("/payments", caller()),
            &mut counters,
            NOW
        )),
        Denial::RateLimited(_)
    ));
}

#[test]
fn a_granting_policy_without_a_limit_means_no_limit() {
    let mut gateway = gateway();
    let mut counters = MemoryCounters::default();
    // `gold` is limited on payments; `basic` (orders, GET only) is not, and grants orders.
    let caller = || Some(token(json!({"client_id": "c", "pol": ["gold", "basic"]})));
    for _ in 0..10 {
        let granted = grant(decide_at(
            &mut gateway,
            &get("/orders", caller()),
            &mut counters,
            NOW,
        ));
        assert_eq!(granted.rate_limit, None);
    }
}

#[test]
fn quota_refuses_when_spent() {
    let mut gateway = gateway();
    let mut counters = MemoryCounters::default();
    let caller = || Some(token(json!({"client_id": "c", "pol": "reports-v1"})));
    for _ in 0..2 {
        assert!(matches!(
            decide_at(
                &mut gateway,
                &get("/reports/v1", caller()),
                &mut counters,
                NOW
            ),
            Decision::Allow(_)
        ));
    }
    assert!(matches!(
        denial(decide_at(
            &mut gateway,
            &get("/reports/v1", caller()),
            &mut counters,
            NOW
        )),
        Denial::QuotaExceeded(_)
    ));
}

#[test]
fn a_repeated_token_is_verified_once() {
    let mut gateway = gateway();
    let verifier = CountingVerifier::default();
    let header = format!("Bearer {}", token(json!({"client_id": "c"})));
    let request = Request {
        method: "GET",
        path: "/orders",
        host: None,
        headers: &[("authorization", &header)],
        route_api: None,
    };
    let mut counters = MemoryCounters::default();
    for _ in 0..5 {
        let decision = gateway.decide(&request, &verifier, &mut counters, NOW);
        assert!(matches!(decision, Decision::Allow(_)));
    }
    assert_eq!(verifier.calls.get(), 1);
    assert_eq!(gateway.cached_tokens(), 1);
}

#[test]
fn a_cached_token_still_expires() {
    let mut gateway = gateway();
    let claims = json!({"iss": ISSUER, "aud": "https://api.example.com", "client_id": "c",
                        "exp": NOW.as_secs() + 10});
    let call = get(
        "/orders",
        Some(TestKey::rsa_a().token(Algorithm::RS256, &claims)),
    );
    let mut counters = MemoryCounters::default();
    assert!(matches!(
        decide_at(&mut gateway, &call, &mut counters, NOW),
        Decision::Allow(_)
    ));
    let later = NOW + Duration::from_secs(70);
    assert_eq!(
        denial(decide_at(&mut gateway, &call, &mut counters, later)),
        Denial::InvalidToken(TokenError::Expired)
    );
}

#[test]
fn revocation_applies_to_cached_tokens() {
    let mut gateway = gateway();
    let call = get("/orders", Some(token(json!({"client_id": "c"}))));
    assert!(matches!(decide(&mut gateway, &call), Decision::Allow(_)));
    let mut revoked = snapshot_json();
    revoked["version"] = json!(2);
    revoked["revoked_clients"] = json!(["c"]);
    let flushed =
        gateway.apply(CompiledSnapshot::compile(serde_json::from_value(revoked).unwrap()).unwrap());
    assert!(!flushed, "a revocation must not cost the cache");
    assert_eq!(denial(decide(&mut gateway, &call)), Denial::ClientRevoked);
}

#[test]
fn removing_the_key_drops_cached_tokens() {
    let mut gateway = gateway();
    let call = get("/orders", Some(token(json!({"client_id": "c"}))));
    assert!(matches!(decide(&mut gateway, &call), Decision::Allow(_)));
    let mut rotated = snapshot_json();
    rotated["issuers"][0]["keys"] = json!([TestKey::rsa_b().public_jwk()]);
    assert!(
        gateway.apply(CompiledSnapshot::compile(serde_json::from_value(rotated).unwrap()).unwrap())
    );
    assert_eq!(gateway.cached_tokens(), 0);
    let decision = decide(&mut gateway, &call);
    assert!(matches!(
        denial(decision),
        Denial::InvalidToken(TokenError::UnknownKid { .. })
    ));
}

#[test]
fn a_forged_token_is_checked_once_then_refused_from_the_cache() {
    let mut gateway = gateway();
    let verifier = CountingVerifier::default();
    let claims = json!({"iss": ISSUER, "client_id": "c", "exp": NOW.as_secs() + 60});
    let forged = format!(
        "Bearer {}",
        TestKey::rsa_b()
            .with_kid("rsa-a")
            .token(Algorithm::RS256, &claims)
    );
    let request = Request {
        method: "GET",
        path: "/orders",
        host: None,
        headers: &[("authorization", &forged)],
        route_api: None,
    };
    for _ in 0..3 {
        let decision = gateway.decide(&request, &verifier, &mut MemoryCounters::default(), NOW);
        assert_eq!(
            denial(decision),
            Denial::InvalidToken(TokenError::BadSignature)
        );
    }
    assert_eq!(verifier.calls.get(), 1);
}

#[test]
fn the_same_token_is_cached_per_api() {
    let mut gateway = gateway();
    let verifier = CountingVerifier::default();
    let header = format!("Bearer {}", token(json!({"client_id": "c", "pol": "gold"})));
    for path in ["/orders", "/payments"] {
        let request = Request {
            method: "GET",
            path,
            host: None,
            headers: &[("authorization", &header)],
            route_api: None,
        };
        assert!(matches!(
            gateway.decide(&request, &verifier, &mut MemoryCounters::default(), NOW),
            Decision::Allow(_)
        ));
    }
    assert_eq!(verifier.calls.get(), 2);
}

#[test]
fn unknown_kid_refusals_name_the_issuer_and_kid() {
    let mut gateway = gateway();
    let claims = json!({"iss": ISSUER, "client_id": "c", "exp": NOW.as_secs() + 60});
    let call = get(
        "/orders",
        Some(
            TestKey::rsa_b()
                .with_kid("rotated")
                .token(Algorithm::RS256, &claims),
        ),
    );
    let decision = decide(&mut gateway, &call);
    assert_eq!(gateway.unknown_kid(&decision), Some(("idp", "rotated")));
    let other = decide(&mut gateway, &get("/orders", None));
    assert_eq!(gateway.unknown_kid(&other), None);
}

#[test]
fn unknown_thumbprint_refusals_are_reported_like_unknown_kids() {
    let mut gateway = gateway();
    let claims = json!({"iss": ISSUER, "client_id": "c", "exp": NOW.as_secs() + 60});
    let x5t = "r6isxvvcPXMSfx3kRsNyx1nWIhE";
    let token = TestKey::rsa_b().sign_json(
        Algorithm::RS256,
        &json!({"alg": "RS256", "x5t": x5t}),
        &claims,
    );
    let decision = decide(&mut gateway, &get("/orders", Some(token)));
    let name = format!("x5t:{x5t}");
    assert_eq!(gateway.unknown_kid(&decision), Some(("idp", name.as_str())));
}

#[test]
fn trusted_headers_cover_every_api() {
    let gateway = gateway();
    let snapshot = gateway.snapshot().unwrap();
    assert_eq!(
        snapshot.trusted_headers,
        ["x-portico-client-id", "x-portico-policies"]
    );
}

fn decide_with(
    gateway: &mut Gateway,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Decision {
    let request = Request {
        method,
        path,
        host: Some("api.example.com"),
        headers,
        route_api: None,
    };
    gateway.decide(
        &request,
        &PureRustVerifier,
        &mut MemoryCounters::default(),
        NOW,
    )
}

#[test]
fn a_token_sent_two_ways_is_refused_with_400_before_it_is_verified() {
    let mut gateway = gateway();
    let header = format!("Bearer {}", token(json!({"client_id": "c"})));
    let other = token(json!({"client_id": "other"}));
    let path = format!("/orders/1?access_token={other}");
    let decision = decide_with(&mut gateway, "GET", &path, &[("authorization", &header)]);
    assert!(matches!(denial(decision), Denial::InvalidRequest(_)));
    let twice = [
        ("authorization", header.as_str()),
        ("authorization", header.as_str()),
    ];
    let decision = decide_with(&mut gateway, "GET", "/orders/1", &twice);
    assert!(matches!(denial(decision), Denial::InvalidRequest(_)));
    // The query token alone is in a place the API does not read.
    let decision = decide_with(&mut gateway, "GET", &path, &[]);
    assert_eq!(denial(decision), Denial::MissingToken);
}

#[test]
fn an_api_may_read_its_token_from_a_query_parameter_or_a_cookie() {
    let mut snapshot = snapshot_json();
    snapshot["apis"][0]["token_sources"] =
        json!({"header": false, "query": "token", "cookie": "session"});
    let mut gateway = gateway_with(snapshot);
    let token = token(json!({"client_id": "c"}));
    let decision = decide_with(&mut gateway, "GET", &format!("/orders?token={token}"), &[]);
    assert_eq!(grant(decision).identity.as_ref(), "c");
    let cookie = format!("session={token}");
    let decision = decide_with(&mut gateway, "GET", "/orders", &[("cookie", &cookie)]);
    assert_eq!(grant(decision).identity.as_ref(), "c");
    let header = format!("Bearer {token}");
    let decision = decide_with(
        &mut gateway,
        "GET",
        "/orders",
        &[("authorization", &header)],
    );
    assert_eq!(denial(decision), Denial::MissingToken);
}

#[test]
fn method_overrides_are_refused_where_policies_restrict_methods() {
    let mut gateway = gateway();
    let header = format!("Bearer {}", token(json!({"client_id": "c"})));
    let decision = decide_with(
        &mut gateway,
        "GET",
        "/orders/1",
        &[
            ("authorization", &header),
            ("x-http-method-override", "DELETE"),
        ],
    );
    assert_eq!(denial(decision), Denial::MethodOverride);
    let decision = decide_with(
        &mut gateway,
        "GET",
        "/orders/1?_method=DELETE",
        &[("authorization", &header)],
    );
    assert_eq!(denial(decision), Denial::MethodOverride);
    // `payments` has no method restriction: overrides are the upstream's business.
    let gold = format!("Bearer {}", token(json!({"client_id": "c", "pol": "gold"})));
    let decision = decide_with(
        &mut gateway,
        "GET",
        "/payments/1",
        &[("authorization", &gold), ("x_http_method", "DELETE")],
    );
    assert!(matches!(decision, Decision::Allow(_)));
    // A CORS preflight passes without a token, but not with an override along.
    let mut snapshot = snapshot_json();
    snapshot["apis"][0]["bypass_cors_preflight"] = json!(true);
    let mut gateway = gateway_with(snapshot);
    let preflight = [
        ("origin", "https://app.example.com"),
        ("access-control-request-method", "GET"),
    ];
    assert_eq!(
        decide_with(&mut gateway, "OPTIONS", "/orders/1", &preflight),
        Decision::Preflight { api: 0 }
    );
    let decision = decide_with(
        &mut gateway,
        "OPTIONS",
        "/orders/1?_method=DELETE",
        &preflight,
    );
    assert_eq!(denial(decision), Denial::MethodOverride);
}

#[test]
fn a_policy_granting_get_grants_head() {
    let mut gateway = gateway();
    let header = format!("Bearer {}", token(json!({"client_id": "c"})));
    let headers = [("authorization", header.as_str())];
    assert!(matches!(
        decide_with(&mut gateway, "HEAD", "/orders/1", &headers),
        Decision::Allow(_)
    ));
    assert_eq!(
        denial(decide_with(&mut gateway, "POST", "/orders/1", &headers)),
        Denial::AccessDenied
    );
}

#[test]
fn cors_preflights_pass_only_where_the_api_allows_them() {
    let preflight = [
        ("origin", "https://app.example.com"),
        ("access-control-request-method", "GET"),
    ];
    let mut gateway = gateway();
    assert_eq!(
        denial(decide_with(
            &mut gateway,
            "OPTIONS",
            "/orders/1",
            &preflight
        )),
        Denial::MissingToken
    );
    let mut snapshot = snapshot_json();
    snapshot["apis"][0]["bypass_cors_preflight"] = json!(true);
    let mut gateway = gateway_with(snapshot);
    assert_eq!(
        decide_with(&mut gateway, "OPTIONS", "/orders/1", &preflight),
        Decision::Preflight { api: 0 }
    );
    // Without the CORS headers, OPTIONS needs a token like any method.
    assert_eq!(
        denial(decide_with(&mut gateway, "OPTIONS", "/orders/1", &[])),
        Denial::MissingToken
    );
}

#[test]
fn no_spelling_that_some_upstream_reads_outside_a_path_prefix_grant_is_granted() {
    let token = token(json!({"client_id": "c"}));
    let header = format!("Bearer {token}");
    let headers = [("authorization", header.as_str())];
    let mut snapshot = snapshot_json();
    snapshot["policies"][0]["access_rights"][0]["path_prefixes"] = json!(["/orders/public"]);
    let mut gateway = gateway_with(snapshot);
    for granted in [
        "/orders/public/1",
        "/orders/%70ublic/1",
        "/orders/public/x/../1",
    ] {
        assert!(
            matches!(
                decide_with(&mut gateway, "GET", granted, &headers),
                Decision::Allow(_)
            ),
            "{granted}"
        );
    }
    // A grant holds only for what every upstream reads under it: not for another letter case
    // (a case-sensitive upstream serves `/orders/PUBLIC` as another resource), nor for `;`
    // parameters (a segment `public;x=1` is not `public` to an upstream that keeps them).
    for refused in [
        "/orders/public;x=1/../private",
        "/orders/public/..;/private",
        "/orders/public%3B/..%2Fprivate",
        "/orders/private",
        "/orders/public.json",
        "/orders/publicity",
        "/Orders/PUBLIC/1",
        "/orders/PUBLIC",
        "/orders/public;x=1/1",
        // Each of these reaches an upstream that matches the path as received, decoded once,
        // under `/orders/private`, or as a name that is not `public`.
        "/orders/private/../public",
        "/orders/private/%2e%2e/public",
        "/orders/private/..%20/public",
        "/orders/private/..;/public",
        "/orders/private/..%3B/public",
        "/orders/private/..%252Fpublic",
        "/orders/private/%252e%252e/public",
        "/orders/private/..%2Fpublic",
        "/orders/private/..%5Cpublic",
        "/orders/private%2F..%2Fpublic/x",
        "/orders/admin/%252e%252e/public",
        "/orders/publ%C4%B1c",
        "/orders/%EF%BD%90ublic",
        "/orders/public%20",
        "/orders/public.",
    ] {
        assert_eq!(
            denial(decide_with(&mut gateway, "GET", refused, &headers)),
            Denial::AccessDenied,
            "{refused}"
        );
    }
}

#[test]
fn case_sensitive_apis_match_only_their_spelling() {
    let mut snapshot = snapshot_json();
    snapshot["apis"][0]["case_sensitive_paths"] = json!(true);
    let mut gateway = gateway_with(snapshot);
    assert_eq!(
        denial(decide(&mut gateway, &get("/orders/1", None))),
        Denial::MissingToken
    );
    assert_eq!(
        decide(&mut gateway, &get("/Orders/1", None)),
        Decision::PassThrough
    );
    let mut gateway = self::gateway();
    assert_eq!(
        denial(decide(&mut gateway, &get("/Orders/1", None))),
        Denial::MissingToken
    );
}

#[test]
fn a_path_with_a_nul_byte_is_refused_everywhere() {
    let mut gateway = gateway();
    for path in ["/orders%00.json", "/status%00", "/x%2500/../orders"] {
        assert_eq!(
            denial(decide(&mut gateway, &get(path, None))),
            Denial::InvalidPath(NUL_IN_PATH),
            "{path}"
        );
    }
}

/// `orders` and `payments` bound with different expiries, `basic` granted by the token alone.
fn expiring_gateway() -> Gateway {
    let mut snapshot = snapshot_json();
    snapshot["clients"] = json!([{
        "client_id": "expiring",
        "policies": ["gold", "silver"],
        "expires_at": {"gold": NOW.as_secs() + 10, "silver": NOW.as_secs() + 20}
    }]);
    gateway_with(snapshot)
}

fn expiring_token(pol: Value) -> Option<String> {
    Some(token(json!({"client_id": "expiring", "pol": pol})))
}

#[test]
fn a_binding_grants_until_its_expiry_second_and_then_access_expired() {
    let mut gateway = expiring_gateway();
    let call = get("/payments", expiring_token(json!([])));
    let mut counters = MemoryCounters::default();
    let before = NOW + Duration::from_secs(9);
    let at = NOW + Duration::from_secs(20);
    let after = NOW + Duration::from_secs(21);
    assert_eq!(
        policy_ids(&grant(decide_at(
            &mut gateway,
            &call,
            &mut counters,
            before
        ))),
        ["gold", "silver"],
        "both bindings grant before the first expiry"
    );
    let mut counters = MemoryCounters::default();
    let between = NOW + Duration::from_secs(10);
    assert_eq!(
        policy_ids(&grant(decide_at(
            &mut gateway,
            &call,
            &mut counters,
            between
        ))),
        ["silver"],
        "gold expired at its second, silver still grants"
    );
    let mut counters = MemoryCounters::default();
    for now in [at, after] {
        let decision = decide_at(&mut gateway, &call, &mut counters, now);
        assert_eq!(denial(decision), Denial::AccessExpired);
    }
}

#[test]
fn a_non_expiring_claimed_policy_keeps_granting_after_the_binding_expires() {
    let mut gateway = expiring_gateway();
    let late = NOW + Duration::from_secs(30);
    let mut counters = MemoryCounters::default();
    let orders = get("/orders", expiring_token(json!(["basic"])));
    assert_eq!(
        policy_ids(&grant(decide_at(
            &mut gateway,
            &orders,
            &mut counters,
            late
        ))),
        ["basic"]
    );
    let payments = get("/payments", expiring_token(json!(["basic"])));
    assert_eq!(
        denial(decide_at(&mut gateway, &payments, &mut counters, late)),
        Denial::AccessExpired,
        "basic does not grant payments; the expired binding would have"
    );
    let reports = get("/reports/v1", expiring_token(json!(["basic"])));
    assert_eq!(
        denial(decide_at(&mut gateway, &reports, &mut counters, late)),
        Denial::AccessDenied,
        "nothing, expired or not, grants reports"
    );
}

#[test]
fn metadata_headers_come_from_the_first_granting_policy_that_has_the_key() {
    let mut snapshot = snapshot_json();
    snapshot["apis"][0]["metadata_headers"] =
        json!({"x-plan": "{policy.metadata.plan}", "x-tier": "{policy.metadata.tier}"});
    snapshot["policies"][0]["metadata"] = json!({"plan": "basic"});
    snapshot["policies"][1]["metadata"] = json!({"plan": "gold", "tier": "2"});
    let mut gateway = gateway_with(snapshot);
    let both = grant(decide(
        &mut gateway,
        &get(
            "/orders",
            Some(token(json!({"client_id": "c", "pol": ["basic", "gold"]}))),
        ),
    ));
    assert_eq!(
        both.metadata_headers,
        [
            ("x-plan".to_owned(), "basic".to_owned()),
            ("x-tier".to_owned(), "2".to_owned())
        ]
    );
    let none = grant(decide(
        &mut gateway,
        &get(
            "/orders",
            Some(token(json!({"client_id": "d", "pol": "silver-less"}))),
        ),
    ));
    assert_eq!(
        none.metadata_headers,
        [("x-plan".to_owned(), "basic".to_owned())]
    );
}

/// A snapshot where `gold` (3 per minute on payments) is limited with `scope`, and developer
/// `dev_ada` has two clients, `a1` (Portico client `cli_a1`) and `a2` (`cli_a2`); `lone` is
/// bound without naming a Portico client or developer (an older control plane).
fn scoped_gateway(scope: &str) -> Gateway {
    let mut snapshot = snapshot_json();
    snapshot["policies"][1]["limit_scope"] = json!(scope);
    snapshot["clients"] = json!([
        {"client_id": "a1", "policies": ["gold"], "client": "cli_a1", "developer": "dev_ada"},
        {"client_id": "a2", "policies": ["gold"], "client": "cli_a2", "developer": "dev_ada"},
        {"client_id": "lone", "policies": ["gold"]}
    ]);
    gateway_with(snapshot)
}

/// How many requests to `/payments`, one by each client of `clients` in turn, are allowed.
fn allowed_of(gateway: &mut Gateway, counters: &mut MemoryCounters, clients: &[&str]) -> usize {
    clients
        .iter()
        .filter(|client| {
            let call = get("/payments", Some(token(json!({"client_id": client}))));
            matches!(decide_at(gateway, &call, counters, NOW), Decision::Allow(_))
        })
        .count()
}

#[test]
fn by_default_a_developer_s_clients_share_one_limit() {
    let mut gateway = gateway_with({
        let mut snapshot = snapshot_json();
        snapshot["clients"] = json!([
            {"client_id": "a1", "policies": ["gold"], "client": "cli_a1", "developer": "dev_ada"},
            {"client_id": "a2", "policies": ["gold"], "client": "cli_a2", "developer": "dev_ada"}
        ]);
        snapshot
    });
    let mut counters = MemoryCounters::default();
    // Three a minute in all, however the developer spreads them over clients.
    assert_eq!(
        allowed_of(
            &mut gateway,
            &mut counters,
            &["a1", "a2", "a1", "a2", "a1", "a2"]
        ),
        3
    );
    assert_eq!(
        scoped_gateway("developer").limit_subject_of("a2", "gold"),
        ('d', "dev_ada".to_owned())
    );
}

#[test]
fn a_client_scope_gives_each_client_its_own_limit() {
    let mut gateway = scoped_gateway("client");
    let mut counters = MemoryCounters::default();
    assert_eq!(
        allowed_of(
            &mut gateway,
            &mut counters,
            &["a1", "a2", "a1", "a2", "a1", "a2", "a1", "a2"]
        ),
        6
    );
}

#[test]
fn callers_that_are_not_registered_clients_count_alone_under_either_scope() {
    for scope in ["developer", "client"] {
        let mut gateway = scoped_gateway(scope);
        let mut counters = MemoryCounters::default();
        // `c` holds gold by claim, `lone` by a binding naming no client or developer.
        assert_eq!(
            allowed_of(
                &mut gateway,
                &mut counters,
                &["lone", "lone", "lone", "lone"]
            ),
            3,
            "{scope}"
        );
        let claimed = |gateway: &mut Gateway, counters: &mut MemoryCounters| {
            let call = get(
                "/payments",
                Some(token(json!({"client_id": "c", "pol": "gold"}))),
            );
            matches!(decide_at(gateway, &call, counters, NOW), Decision::Allow(_))
        };
        assert_eq!(
            (0..4)
                .filter(|_| claimed(&mut gateway, &mut counters))
                .count(),
            3,
            "{scope}"
        );
    }
}

#[test]
fn counters_follow_the_portico_client_across_a_new_client_id() {
    // A quota of 2 an hour on reports, per client; the client's secret is rotated by
    // re-registration: its `client_id` changes, its Portico client does not.
    let with_client_id = |client_id: &str| {
        let mut snapshot = snapshot_json();
        snapshot["policies"][2]["limit_scope"] = json!("client");
        snapshot["clients"] = json!([
            {"client_id": client_id, "policies": ["reports-v1"], "client": "cli_a1", "developer": "dev_ada"}
        ]);
        snapshot["revoked_clients"] = json!([]);
        serde_json::from_value::<Snapshot>(snapshot).unwrap()
    };
    let mut gateway = gateway_with(serde_json::to_value(with_client_id("before")).unwrap());
    let mut counters = MemoryCounters::default();
    let call = |client_id: &str| get("/reports/v1", Some(token(json!({"client_id": client_id}))));
    for _ in 0..2 {
        grant(decide_at(&mut gateway, &call("before"), &mut counters, NOW));
    }
    gateway.apply(CompiledSnapshot::compile(with_client_id("after")).unwrap());
    assert!(matches!(
        denial(decide_at(&mut gateway, &call("after"), &mut counters, NOW)),
        Denial::QuotaExceeded(_)
    ));
}

impl Gateway {
    /// The subject part of `policy`'s counter key for caller `identity`.
    fn limit_subject_of(&self, identity: &str, policy: &str) -> (char, String) {
        let snapshot = self.snapshot.as_ref().unwrap();
        let policy = &snapshot.policies[snapshot.policy(policy).unwrap()];
        let binding = snapshot.caller_binding(identity);
        let subject = binding.limit_subject(identity, policy.limit_scope);
        let (kind, id) = subject.key_part();
        (kind, id.to_owned())
    }
}

#[test]
fn a_quota_spent_across_the_fleet_is_refused_until_it_renews() {
    let with_exhausted = |until: u64| {
        let mut snapshot = snapshot_json();
        snapshot["policies"][2]["limit_scope"] = json!("client");
        snapshot["clients"] = json!([
            {"client_id": "a1", "policies": ["reports-v1"], "client": "cli_a1", "developer": "dev_ada"}
        ]);
        snapshot["exhausted_quotas"] =
            json!([{"policy": "reports-v1", "subject": "c:cli_a1", "until": until}]);
        gateway_with(snapshot)
    };
    let call = get("/reports/v1/x", Some(token(json!({"client_id": "a1"}))));
    let mut counters = MemoryCounters::default();
    let mut gateway = with_exhausted(NOW.as_secs() + 90);
    match denial(decide_at(&mut gateway, &call, &mut counters, NOW)) {
        Denial::QuotaExceeded(state) => {
            assert_eq!(state.retry_after, Duration::from_secs(90));
            assert_eq!((state.limit, state.remaining), (2, 0));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        counters.get("portico/quota/reports-v1/c:cli_a1").is_none(),
        "nothing charged here for a refused request"
    );
    // Renewed: this Envoy's own count applies again.
    let renewed = NOW + Duration::from_secs(90);
    grant(decide_at(&mut gateway, &call, &mut counters, renewed));
    // Another subject is not concerned.
    let mut gateway = with_exhausted(NOW.as_secs() + 90);
    let other = get(
        "/reports/v1/x",
        Some(token(json!({"client_id": "c", "pol": "reports-v1"}))),
    );
    grant(decide_at(&mut gateway, &other, &mut counters, NOW));
}

/// The usage report the gateway has due now.
fn due_report(gateway: &mut Gateway) -> crate::usage::UsageReport {
    gateway
        .usage_mut()
        .expect("usage is reported")
        .due(NOW, Duration::from_secs(5))
        .cloned()
        .expect("a report is due")
}

#[test]
fn usage_is_recorded_per_registered_client_and_per_quota_counter() {
    let mut snapshot = snapshot_json();
    snapshot["clients"] = json!([
        {"client_id": "a1", "policies": ["reports-v1"], "client": "cli_a1", "developer": "dev_ada"}
    ]);
    let mut gateway = gateway_with(snapshot);
    gateway.report_usage_as("reporter-1".to_owned());
    let mut counters = MemoryCounters::default();
    let a1 = || Some(token(json!({"client_id": "a1"})));
    for path in [
        "/reports/v1/x",
        "/reports/v1/y",
        "/reports/v1/z",
        "/reports/v2/x",
    ] {
        decide_at(&mut gateway, &get(path, a1()), &mut counters, NOW);
    }
    // A caller that is not a registered client counts for quotas only.
    let claimed = Some(token(json!({"client_id": "c", "pol": "reports-v1"})));
    decide_at(
        &mut gateway,
        &get("/reports/v1/x", claimed),
        &mut counters,
        NOW,
    );
    let report = due_report(&mut gateway);
    assert_eq!(report.reporter, "reporter-1");
    assert_eq!(report.clients.len(), 1);
    assert_eq!(report.clients[0].client, "cli_a1");
    assert_eq!(report.clients[0].allowed, 2);
    assert_eq!(
        report.clients[0].refused,
        std::collections::BTreeMap::from([
            ("quota_exceeded".to_owned(), 1),
            ("access_denied".to_owned(), 1)
        ])
    );
    let mut quotas = report.quotas;
    quotas.sort_by(|a, b| a.subject.cmp(&b.subject));
    let charged: Vec<_> = quotas
        .iter()
        .map(|quota| {
            (
                quota.policy.as_str(),
                quota.subject.as_str(),
                quota.requests,
            )
        })
        .collect();
    assert_eq!(
        charged,
        [("reports-v1", "d:dev_ada", 2), ("reports-v1", "i:c", 1)]
    );
}

#[test]
fn an_envoy_enforces_its_share_of_a_rate_limit_and_reports_the_traffic() {
    let mut gateway = gateway();
    gateway.report_usage_as("reporter-1".to_owned());
    gateway.set_rate_share(500);
    assert_eq!(gateway.rate_share(), 500);
    let mut counters = MemoryCounters::default();
    // gold: 3 a minute; half of it here is 2 (rounded up).
    let allowed = (0..4)
        .filter(|_| {
            let call = get(
                "/payments",
                Some(token(json!({"client_id": "c", "pol": "gold"}))),
            );
            matches!(
                decide_at(&mut gateway, &call, &mut counters, NOW),
                Decision::Allow(_)
            )
        })
        .count();
    assert_eq!(allowed, 2);
    let report = due_report(&mut gateway);
    assert_eq!(report.rate_requests, 4, "refusals are traffic too");
    gateway.set_rate_share(0);
    assert_eq!(gateway.rate_share(), 1, "never nothing");
}

#[test]
fn a_path_that_any_reading_puts_under_an_api_is_protected() {
    let mut gateway = gateway_with(snapshot_json());
    // Normalised, each is `/` (no API); read strictly, each is below `/orders`.
    for protected in [
        "/orders/..%20",
        "/orders/..;",
        "/orders/..%3B",
        "/orders/1%252F..%252F..",
        "/orders/1%2F..%2F..",
        "/orders/x%2F..%2F..%2Fanything",
        "/orders/1%5C..%5C..",
        // A full-width `／` that NFKC would make a separator must not shift the strict
        // reading's folded cuts away from its exact ones.
        "/orders/%252e%252e/a%EF%BC%8Fb%EF%BC%8Fc",
        "/orders/..%20/a%EF%BC%8Fb",
    ] {
        assert_eq!(
            denial(decide_with(&mut gateway, "GET", protected, &[])),
            Denial::MissingToken,
            "{protected}"
        );
    }
}

#[test]
fn a_public_prefix_exempts_only_what_every_reading_puts_under_it() {
    let mut value = snapshot_json();
    value["global"] = json!({"unmatched": "deny", "public_prefixes": ["/healthz"]});
    let mut gateway = gateway_with(value);
    for exempt in ["/healthz/live", "/healthz/%6Cive", "/healthz/a%3Fb"] {
        assert_eq!(
            decide_with(&mut gateway, "GET", exempt, &[]),
            Decision::PassThrough,
            "{exempt}"
        );
    }
    for refused in [
        "/secret/..%20/healthz",
        "/secret/%252e%252e/healthz",
        "/secret/..%252Fhealthz",
        "/secret/..%2Fhealthz",
        "/secret/..;/healthz",
        "/secret/..%3B/healthz",
    ] {
        assert_eq!(
            denial(decide_with(&mut gateway, "GET", refused, &[])),
            Denial::NoApi,
            "{refused}"
        );
    }
}

#[test]
fn a_path_whose_readings_fall_under_two_apis_is_refused() {
    let mut value = snapshot_json();
    value["apis"].as_array_mut().unwrap().push(json!(
        {"id": "orders-admin", "listen_path": "/orders/admin", "issuers": ["idp"],
         "audiences": ["https://api.example.com"], "identity_claims": ["client_id"]}
    ));
    let mut gateway = gateway_with(value);
    let header = format!("Bearer {}", token(json!({"client_id": "c"})));
    // Normalised, `/orders/users` (orders); as received, below `/orders/admin`, where Envoy's
    // prefix route and an upstream reading `..%20` or `..;` as a name send it.
    for ambiguous in ["/orders/admin/..%20/users", "/orders/admin/..;/users"] {
        let decision = decide_with(
            &mut gateway,
            "GET",
            ambiguous,
            &[("authorization", &header)],
        );
        let Decision::Deny { api: None, denial } = decision else {
            panic!("{ambiguous}: {decision:?}");
        };
        assert_eq!(denial.code(), "invalid_path", "{ambiguous}");
    }
    assert!(matches!(
        decide_with(
            &mut gateway,
            "GET",
            "/orders/1",
            &[("authorization", &header)]
        ),
        Decision::Allow(_)
    ));
}
