use serde_json::{Value, json};

use super::*;
use crate::routing::NormalizedPath;
use crate::testing::TestKey;

fn base() -> Value {
    json!({
        "version": 7,
        "apis": [{"id": "orders", "listen_path": "/orders", "audiences": ["https://api.example.com"], "issuers": ["idp"],
                  "default_policies": ["basic"], "identity_header": "X-Caller"}],
        "issuers": [{"id": "idp", "issuer": "https://idp.example.com",
                     "keys": [TestKey::rsa_a().public_jwk(), {"kty": "EC", "crv": "P-521"}]}],
        "policies": [{"id": "basic", "access_rights": [{"api": "orders", "methods": ["get"]}]}],
        "clients": [{"client_id": "c1", "policies": ["basic"]}],
        "revoked_clients": ["c2"]
    })
}

fn compile(value: Value) -> Result<CompiledSnapshot, SnapshotError> {
    CompiledSnapshot::compile(serde_json::from_value(value).unwrap())
}

fn error_at(mutate: impl FnOnce(&mut Value)) -> SnapshotError {
    let mut value = base();
    mutate(&mut value);
    compile(value).unwrap_err()
}

fn policies_of(bound: &[crate::snapshot::BoundPolicy]) -> Vec<usize> {
    bound.iter().map(|bound| bound.policy).collect()
}

#[test]
fn binding_expiries_belong_to_bound_policies() {
    let mut value = base();
    value["clients"] =
        json!([{"client_id": "c1", "policies": ["basic"], "expires_at": {"basic": 1000}}]);
    let snapshot = compile(value).unwrap();
    assert_eq!(snapshot.bindings("c1")[0].expires_at, Some(1000));
    assert!(!snapshot.bindings("c1")[0].live_at(1000));
    assert!(snapshot.bindings("c1")[0].live_at(999));
    let error = error_at(|value| {
        value["clients"] =
            json!([{"client_id": "c1", "policies": ["basic"], "expires_at": {"other": 1}}]);
    });
    assert_eq!(error.path, "clients[0].expires_at.other");
}

#[test]
fn metadata_and_metadata_headers_follow_the_rules() {
    let error = error_at(|value| {
        value["policies"][0]["metadata"] = json!({"plan": "gold\r\nx-evil: 1"});
    });
    assert_eq!(error.path, "policies[0].metadata.plan");
    let error = error_at(|value| {
        value["policies"][0]["lifetime_seconds"] = json!(0);
    });
    assert_eq!(error.path, "policies[0].lifetime_seconds");
    let error = error_at(|value| {
        value["apis"][0]["metadata_headers"] = json!({"x-plan": "plan"});
    });
    assert_eq!(error.path, "apis[0].metadata_headers.x-plan");
    let error = error_at(|value| {
        value["apis"][0]["metadata_headers"] = json!({"X-Caller": "{policy.metadata.plan}"});
    });
    assert!(error.message.contains("must differ"), "{error}");
    let error = error_at(|value| {
        value["apis"][0]["metadata_headers"] =
            json!({"x-plan": "{policy.metadata.plan}", "X-Plan": "{policy.metadata.tier}"});
    });
    assert!(error.message.contains("repeats"), "{error}");
    let mut value = base();
    value["apis"][0]["metadata_headers"] = json!({"X-Plan": "{policy.metadata.plan}"});
    let snapshot = compile(value).unwrap();
    assert_eq!(
        snapshot.apis[0].metadata_headers,
        [("x-plan".to_owned(), "plan".to_owned())]
    );
    assert!(snapshot.trusted_headers.contains(&"x-plan".to_owned()));
}

#[test]
fn compiles_lookups_for_every_section() {
    let snapshot = compile(base()).unwrap();
    assert_eq!(snapshot.version, 7);
    assert_eq!(snapshot.route("/orders/1", None), Some(0));
    assert_eq!(snapshot.policy("basic"), Some(0));
    assert_eq!(policies_of(snapshot.bindings("c1")), [0]);
    assert!(snapshot.bindings("c2").is_empty());
    assert!(snapshot.is_revoked("c2"));
    assert_eq!(snapshot.apis[0].identity_header, "x-caller");
    assert_eq!(snapshot.policies[0].access[0].methods, ["GET"]);
    assert_eq!(snapshot.issuers[0].trusted.keys.len(), 1);
    assert_eq!(snapshot.issuers[0].skipped_keys.len(), 1);
}

#[test]
fn every_broken_reference_is_named_by_path() {
    type Mutation = Box<dyn FnOnce(&mut Value)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (
            Box::new(|v| v["apis"][0]["issuers"] = json!(["nope"])),
            "apis[0].issuers[0]",
        ),
        (
            Box::new(|v| v["apis"][0]["default_policies"] = json!(["nope"])),
            "apis[0].default_policies[0]",
        ),
        (
            Box::new(|v| v["policies"][0]["access_rights"][0]["api"] = json!("nope")),
            "policies[0].access_rights[0].api",
        ),
        (
            Box::new(|v| v["clients"][0]["policies"] = json!(["nope"])),
            "clients[0].policies[0]",
        ),
        (
            Box::new(|v| v["apis"][0]["issuers"] = json!([])),
            "apis[0].issuers",
        ),
        (
            Box::new(|v| v["apis"][0]["listen_path"] = json!("orders")),
            "apis[0].listen_path",
        ),
        (
            Box::new(|v| v["apis"][0]["identity_claims"] = json!([])),
            "apis[0].identity_claims",
        ),
        (
            Box::new(|v| v["apis"][0]["allowed_algorithms"] = json!([])),
            "apis[0].allowed_algorithms",
        ),
        (
            Box::new(|v| v["apis"][0]["clock_skew_seconds"] = json!(601)),
            "apis[0].clock_skew_seconds",
        ),
        (
            Box::new(|v| v["apis"][0]["identity_header"] = json!("bad header")),
            "apis[0].identity_header",
        ),
        (
            Box::new(|v| v["apis"][0]["policies_header"] = json!("Authorization")),
            "apis[0].policies_header",
        ),
        (
            Box::new(|v| v["policies"][0]["rate_limit"] = json!({"requests": 0, "per_seconds": 1})),
            "policies[0].rate_limit.requests",
        ),
        (
            Box::new(|v| v["policies"][0]["access_rights"][0]["path_prefixes"] = json!(["v1"])),
            "policies[0].access_rights[0].path_prefixes[0]",
        ),
        (
            Box::new(|v| v["issuers"][0]["hmac_secrets"] = json!([{"secret": "c2hvcnQ"}])),
            "issuers[0].hmac_secrets[0]",
        ),
        (
            Box::new(|v| v["issuers"][0]["issuer"] = json!("")),
            "issuers[0].issuer",
        ),
    ];
    for (mutate, path) in cases {
        assert_eq!(error_at(mutate).path, path);
    }
}

#[test]
fn duplicate_ids_and_routes_are_refused() {
    let err = error_at(|v| {
        let api = v["apis"][0].clone();
        v["apis"].as_array_mut().unwrap().push(api);
    });
    assert_eq!(err.path, "apis[1].id");
    let err = error_at(|v| {
        let mut api = v["apis"][0].clone();
        api["id"] = json!("orders-v2");
        api["listen_path"] = json!("/orders/");
        v["apis"].as_array_mut().unwrap().push(api);
    });
    assert_eq!(err.path, "apis[1].listen_path");
    assert!(err.message.contains("`orders`"), "{err}");
    let err = error_at(|v| {
        let client = v["clients"][0].clone();
        v["clients"].as_array_mut().unwrap().push(client);
    });
    assert_eq!(err.path, "clients");
    assert_eq!(err.message, "duplicate client `c1`");
}

#[test]
fn bindings_are_found_whatever_order_they_arrive_in() {
    let mut value = base();
    value["policies"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "gold", "access_rights": [{"api": "orders"}]}));
    value["clients"] = json!([
        {"client_id": "zeta", "policies": ["gold"]},
        {"client_id": "alpha", "policies": ["basic", "gold"]},
        {"client_id": "mid", "policies": []}
    ]);
    let snapshot = compile(value).unwrap();
    assert_eq!(policies_of(snapshot.bindings("alpha")), [0, 1]);
    assert_eq!(policies_of(snapshot.bindings("zeta")), [1]);
    assert!(snapshot.bindings("mid").is_empty());
    assert!(snapshot.bindings("nobody").is_empty());
}

#[test]
fn hmac_secrets_become_keys() {
    let mut value = base();
    value["issuers"][0]["hmac_secrets"] =
        json!([{"kid": "shared", "alg": "HS256", "secret": crate::testing::b64(&[7u8; 32])}]);
    let snapshot = compile(value).unwrap();
    let keys = &snapshot.issuers[0].trusted.keys;
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[1].kid(), Some("shared"));
}

#[test]
fn fingerprint_changes_with_keys_and_apis_but_not_with_bindings() {
    let first = compile(base()).unwrap().verification_fingerprint();
    let mut bindings = base();
    bindings["clients"] = json!([]);
    bindings["revoked_clients"] = json!(["x"]);
    bindings["version"] = json!(8);
    assert_eq!(compile(bindings).unwrap().verification_fingerprint(), first);
    let mut keys = base();
    keys["issuers"][0]["keys"] = json!([TestKey::rsa_b().public_jwk()]);
    assert_ne!(compile(keys).unwrap().verification_fingerprint(), first);
    let mut apis = base();
    apis["apis"][0]["audiences"] = json!(["orders"]);
    assert_ne!(compile(apis).unwrap().verification_fingerprint(), first);
}

#[test]
fn unknown_fields_are_refused() {
    let mut value = base();
    value["apis"][0]["listen"] = json!("/x");
    assert!(serde_json::from_value::<Snapshot>(value).is_err());
}

#[test]
fn hmac_secrets_are_redacted_in_debug_output() {
    let spec = HmacSecretSpec {
        kid: None,
        alg: None,
        secret: "super-secret".to_owned(),
    };
    assert!(!format!("{spec:?}").contains("super-secret"));
}

#[test]
fn jwks_are_a_json_array_in_json_and_a_string_in_binary_formats() {
    let jwks = JwkList(vec![json!({"kty": "RSA", "n": "x", "e": "AQAB"})]);
    let text = serde_json::to_string(&jwks).unwrap();
    assert!(text.starts_with("[{"), "{text}");
    assert_eq!(serde_json::from_str::<JwkList>(&text).unwrap(), jwks);
}

#[test]
fn both_encodings_round_trip() {
    let snapshot: Snapshot = serde_json::from_value(base()).unwrap();
    let json = serde_json::to_vec(&snapshot).unwrap();
    assert_eq!(Snapshot::decode(&json).unwrap(), snapshot);
    let binary = snapshot.to_binary().unwrap();
    assert!(
        binary.len() < json.len(),
        "{} >= {}",
        binary.len(),
        json.len()
    );
    assert_eq!(Snapshot::decode(&binary).unwrap(), snapshot);
}

/// The layout of the binary format `PSN\x05`, as filters of that format decode it: the
/// snapshot before `exhausted_quotas`.
#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct SnapshotV5 {
    version: u64,
    apis: Vec<ApiSpec>,
    issuers: Vec<IssuerSpec>,
    policies: Vec<PolicySpec>,
    clients: Vec<ClientBinding>,
    revoked_clients: Vec<String>,
    global: GlobalSpec,
}

#[test]
fn a_filter_of_the_previous_binary_format_never_misreads_this_one() {
    // With `unmatched: deny` and no spent quota, this layout ends `0 (no exhausted quota),
    // 1 (deny), 0 (no public prefix)`: under the same magic, a `PSN\x05` filter would decode
    // `unmatched: pass` and one public prefix `""`, fields the control plane never sent
    // (most other snapshots it would refuse, every one, and keep its old one).
    let mut snapshot: Snapshot = serde_json::from_value(base()).unwrap();
    snapshot.global.unmatched = Unmatched::Deny;
    let binary = snapshot.to_binary().unwrap();
    let misread = binary.strip_prefix(b"PSN\x05").and_then(|payload| {
        postcard::take_from_bytes::<SnapshotV5>(payload)
            .ok()
            .filter(|(_, rest)| rest.is_empty())
    });
    assert!(misread.is_none(), "{misread:?}");
    assert_eq!(Snapshot::decode(&binary).unwrap(), snapshot);
}

#[test]
fn garbage_and_truncated_snapshots_are_errors_not_panics() {
    let snapshot: Snapshot = serde_json::from_value(base()).unwrap();
    let binary = snapshot.to_binary().unwrap();
    for cut in [4, 5, binary.len() / 2, binary.len() - 1] {
        assert!(Snapshot::decode(&binary[..cut]).is_err(), "cut at {cut}");
    }
    let mut trailing = binary;
    trailing.push(0);
    assert!(Snapshot::decode(&trailing).is_err());
    assert!(Snapshot::decode(b"<html>502 Bad Gateway</html>").is_err());
    assert!(Snapshot::decode(b"").is_err());
    let err = Snapshot::decode(br#"{"apis": [{"id": 5}]}"#).unwrap_err();
    assert_eq!(err.path, "apis[0].id");
}

#[test]
fn apis_know_whether_their_policies_restrict_methods() {
    let plain = compile(base()).unwrap();
    assert!(
        plain.apis[0].restricts_methods,
        "the base policy restricts methods"
    );
    let mut value = base();
    value["policies"][0]["access_rights"][0]["methods"] = json!([]);
    assert!(!compile(value).unwrap().apis[0].restricts_methods);
}

#[test]
fn a_route_clash_names_both_apis_whatever_the_spelling() {
    for (listen_path, hosts_a, hosts_b) in [
        ("/orders/", json!([]), json!([])),
        (
            "/orders",
            json!(["example.com"]),
            json!(["Example.com:8443"]),
        ),
        (
            "/orders",
            json!(["*.example.com"]),
            json!(["*.EXAMPLE.com"]),
        ),
    ] {
        let err = error_at(|v| {
            v["apis"][0]["hosts"] = hosts_a.clone();
            let mut api = v["apis"][0].clone();
            api["id"] = json!("orders-v2");
            api["listen_path"] = json!(listen_path);
            api["hosts"] = hosts_b.clone();
            v["apis"].as_array_mut().unwrap().push(api);
        });
        let subject = err.subject.clone().unwrap();
        assert_eq!(
            (subject.section, subject.id.as_str()),
            (Section::Apis, "orders-v2")
        );
        assert_eq!(subject.field, "listen_path");
        assert_eq!(
            err.conflicts_with.unwrap().id,
            "orders",
            "{listen_path} {hosts_b}"
        );
    }
}

#[test]
fn listen_paths_not_in_normal_form_are_refused() {
    for path in ["//orders", "/%6Frders", "/x/../orders"] {
        let err = error_at(|v| v["apis"][0]["listen_path"] = json!(path));
        assert_eq!(err.path, "apis[0].listen_path", "{path}");
        assert!(err.message.contains("normal form"), "{err}");
    }
}

#[test]
fn reserved_and_envoy_headers_cannot_carry_identity() {
    for header in [
        "te",
        "Connection",
        "x-envoy-original-path",
        "cookie",
        ":path",
    ] {
        let err = error_at(|v| v["apis"][0]["identity_header"] = json!(header));
        assert_eq!(err.path, "apis[0].identity_header", "{header}");
    }
}

#[test]
fn audiences_are_required_unless_any_audience_is_accepted_explicitly() {
    let err = error_at(|v| v["apis"][0]["audiences"] = json!([]));
    assert_eq!(err.path, "apis[0].audiences");
    assert!(err.message.contains("accept_any_audience"), "{err}");
    let mut value = base();
    value["apis"][0]["audiences"] = json!([]);
    value["apis"][0]["accept_any_audience"] = json!(true);
    assert!(compile(value).is_ok());
}

#[test]
fn private_and_symmetric_key_material_is_refused_by_key() {
    let mut private = TestKey::rsa_a().public_jwk();
    private["d"] = json!("AQAB");
    private["kid"] = json!("leaked");
    for (key, member) in [
        (private, "`d`"),
        (json!({"kty": "oct", "k": "c2VjcmV0"}), "`oct`"),
    ] {
        let err = error_at(|v| v["issuers"][0]["keys"] = json!([key]));
        assert_eq!(err.path, "issuers[0].keys[0]");
        assert!(err.message.contains(member), "{err}");
    }
}

#[test]
fn hmac_algorithms_need_an_issuer_secret() {
    let err = error_at(|v| v["apis"][0]["allowed_algorithms"] = json!(["HS256"]));
    assert_eq!(err.path, "apis[0].allowed_algorithms[0]");
    let mut value = base();
    value["apis"][0]["allowed_algorithms"] = json!(["HS256"]);
    value["issuers"][0]["hmac_secrets"] =
        json!([{"secret": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}]);
    assert!(compile(value).is_ok());
}

#[test]
fn the_global_section_checks_public_prefixes() {
    let err =
        error_at(|v| v["global"] = json!({"unmatched": "deny", "public_prefixes": ["health"]}));
    assert_eq!(err.path, "global.public_prefixes[0]");
    let err = error_at(|v| {
        v["global"] = json!({"unmatched": "deny", "public_prefixes": ["/health", "/health/"]});
    });
    assert_eq!(err.path, "global.public_prefixes[1]");
    let mut value = base();
    value["global"] = json!({"unmatched": "deny", "public_prefixes": ["/health"]});
    let snapshot = compile(value).unwrap();
    assert!(
        snapshot
            .unmatched
            .passes(&NormalizedPath::new("/health/live"))
    );
    assert!(!snapshot.unmatched.passes(&NormalizedPath::new("/healthz")));
}

#[test]
fn apis_are_found_by_id_for_route_metadata() {
    let snapshot = compile(base()).unwrap();
    assert_eq!(snapshot.api("orders"), Some(0));
    assert_eq!(snapshot.api("nope"), None);
}
