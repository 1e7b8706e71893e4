use serde_json::json;

use super::*;
use crate::snapshot::{CompiledSnapshot, Snapshot};

fn snapshot() -> CompiledSnapshot {
    let spec: Snapshot = serde_json::from_value(json!({
        "apis": [{"id": "a", "listen_path": "/a", "audiences": ["https://api.example.com"], "issuers": ["i"], "default_policies": ["d"]}],
        "issuers": [{"id": "i", "issuer": "https://i"}],
        "policies": [
            {"id": "d", "access_rights": [{"api": "a"}]},
            {"id": "p", "access_rights": [{"api": "a", "path_prefixes": ["/a/v1/"], "methods": ["GET", "head"]}]},
            {"id": "root", "access_rights": [{"api": "a", "path_prefixes": ["/"]}]}
        ],
        "clients": [{"client_id": "bound", "policies": ["p"]}]
    }))
    .unwrap();
    CompiledSnapshot::compile(spec).unwrap()
}

fn names(list: &[&str]) -> Box<[Box<str>]> {
    list.iter().map(|name| Box::from(*name)).collect()
}

#[test]
fn held_policies_merge_claims_and_bindings_without_duplicates() {
    let snapshot = snapshot();
    let api = &snapshot.apis[0];
    let claimed = names(&["p", "x", "p"]);
    let held = held_policies(&snapshot, api, &claimed, "bound", 0);
    assert_eq!(held.live, [1]);
    assert_eq!(held.unknown, ["x"]);
    let none = names(&[]);
    let held = held_policies(&snapshot, api, &none, "stranger", 0);
    assert_eq!(held.live, [0], "defaults when nothing else");
}

#[test]
fn expired_bindings_are_held_apart_and_give_no_defaults() {
    let spec: Snapshot = serde_json::from_value(json!({
        "apis": [{"id": "a", "listen_path": "/a", "audiences": ["x"], "issuers": ["i"], "default_policies": ["d"]}],
        "issuers": [{"id": "i", "issuer": "https://i"}],
        "policies": [{"id": "d"}, {"id": "p"}, {"id": "q"}],
        "clients": [{"client_id": "c", "policies": ["p", "q"], "expires_at": {"p": 100, "q": 200}}]
    }))
    .unwrap();
    let snapshot = CompiledSnapshot::compile(spec).unwrap();
    let api = &snapshot.apis[0];
    let none = names(&[]);
    let at = |now| {
        let held = held_policies(&snapshot, api, &none, "c", now);
        (held.live, held.expired)
    };
    assert_eq!(at(99), (vec![1, 2], vec![]), "before either expiry");
    assert_eq!(at(100), (vec![2], vec![1]), "at the first expiry");
    assert_eq!(at(199), (vec![2], vec![1]));
    assert_eq!(
        at(200),
        (vec![], vec![1, 2]),
        "no defaults once all expired"
    );
    let claimed = names(&["p"]);
    let held = held_policies(&snapshot, api, &claimed, "c", 300);
    assert_eq!(
        held.live,
        [1],
        "a claimed policy is not bound by the binding's expiry"
    );
    assert_eq!(held.expired, [2]);
}

#[test]
fn access_checks_method_and_path_prefix() {
    let snapshot = snapshot();
    assert_eq!(
        granting_policies(&snapshot, &[1], 0, "get", "/a/v1/x?y=1"),
        [1]
    );
    assert_eq!(granting_policies(&snapshot, &[1], 0, "HEAD", "/a/v1"), [1]);
    assert!(granting_policies(&snapshot, &[1], 0, "DELETE", "/a/v1/x").is_empty());
    assert!(granting_policies(&snapshot, &[1], 0, "GET", "/a/v10").is_empty());
    assert!(granting_policies(&snapshot, &[1], 0, "GET", "/a/v1/../v2").is_empty());
    assert_eq!(
        granting_policies(&snapshot, &[2], 0, "GET", "/anything"),
        [2]
    );
}

#[test]
fn identity_skips_absent_and_non_string_claims() {
    let snapshot = snapshot();
    let claims =
        crate::token::Claims::from(json!({"sub": 5, "azp": "app"}).as_object().unwrap().clone());
    let mut api = snapshot.apis.into_iter().next().unwrap();
    api.identity_claims = vec!["sub".to_owned(), "azp".to_owned()];
    assert_eq!(identity(&api, &claims), Some("app"));
    api.identity_claims = vec!["cid".to_owned()];
    assert_eq!(identity(&api, &claims), None);
}
