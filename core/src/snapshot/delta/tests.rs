use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::*;
use crate::snapshot::{
    AccessRight, CompiledSnapshot, JwkList, LimitScope, PolicyState, RateLimitSpec, Unmatched,
};
use crate::testing::large_snapshot;

// === Arbitrary snapshots ===

/// Keys from a small alphabet, so that two snapshots share, change and drop items.
const KEYS: [&str; 5] = ["a", "b", "c", "d", "e"];

fn key() -> impl Strategy<Value = String> {
    proptest::sample::select(&KEYS[..]).prop_map(str::to_owned)
}

/// A section of up to 5 items: sorted by key without repeats three times out of four (as the
/// control plane sends them), in any order with repeats otherwise.
fn section<T: Keyed + Debug>(item: impl Strategy<Value = T>) -> impl Strategy<Value = Vec<T>> {
    (proptest::collection::vec(item, 0..6), 0..4u8).prop_map(|(mut items, shape)| {
        if shape > 0 {
            items.sort_by(|a, b| T::compare(a.key(), b.key()));
            items.dedup_by(|a, b| T::compare(a.key(), b.key()).is_eq());
        }
        items
    })
}

fn api() -> impl Strategy<Value = ApiSpec> {
    (key(), 0..3u8).prop_map(|(id, variant)| {
        serde_json::from_value(json!({
            "id": id, "name": format!("variant {variant}"), "listen_path": format!("/{id}"),
            "issuers": ["idp"], "accept_any_audience": variant == 1
        }))
        .unwrap()
    })
}

fn issuer() -> impl Strategy<Value = IssuerSpec> {
    (key(), 0..3u8).prop_map(|(id, variant)| IssuerSpec {
        issuer: format!("https://{id}.example.com/{variant}"),
        keys: JwkList(vec![
            json!({"kty": "RSA", "kid": format!("k{variant}"), "n": "AQAB", "e": "AQAB"}),
        ]),
        hmac_secrets: Vec::new(),
        max_token_lifetime_seconds: (variant > 0).then_some(3600 * u64::from(variant)),
        id,
    })
}

fn policy() -> impl Strategy<Value = PolicySpec> {
    (key(), any::<bool>(), proptest::option::of(1..5u32)).prop_map(|(id, active, rate)| {
        PolicySpec {
            name: String::new(),
            state: if active {
                PolicyState::Active
            } else {
                PolicyState::Inactive
            },
            access_rights: vec![AccessRight {
                api: id.clone(),
                methods: Vec::new(),
                path_prefixes: Vec::new(),
            }],
            rate_limit: rate.map(|requests| RateLimitSpec {
                requests,
                per_seconds: 60,
            }),
            quota: None,
            limit_scope: LimitScope::Developer,
            lifetime_seconds: None,
            metadata: BTreeMap::new(),
            id,
        }
    })
}

fn binding() -> impl Strategy<Value = ClientBinding> {
    (
        key(),
        proptest::collection::vec(key(), 0..3),
        proptest::option::of(1..3u64),
        proptest::option::of(key()),
    )
        .prop_map(|(client_id, policies, expiry, developer)| ClientBinding {
            expires_at: expiry
                .into_iter()
                .filter_map(|at| Some((policies.first()?.clone(), at)))
                .collect(),
            client_id,
            policies,
            client: None,
            developer,
        })
}

fn quota() -> impl Strategy<Value = ExhaustedQuota> {
    (key(), key(), 1..3u64).prop_map(|(policy, subject, until)| ExhaustedQuota {
        policy,
        subject: format!("c:{subject}"),
        until,
    })
}

fn global() -> impl Strategy<Value = GlobalSpec> {
    (any::<bool>(), proptest::collection::vec(key(), 0..2)).prop_map(|(deny, prefixes)| {
        GlobalSpec {
            unmatched: if deny {
                Unmatched::Deny
            } else {
                Unmatched::Pass
            },
            public_prefixes: prefixes.into_iter().map(|p| format!("/{p}")).collect(),
        }
    })
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    (
        0..4u64,
        section(api()),
        section(issuer()),
        section(policy()),
        section(binding()),
        section(key()),
        section(quota()),
        global(),
    )
        .prop_map(|parts| Snapshot {
            version: parts.0,
            apis: parts.1,
            issuers: parts.2,
            policies: parts.3,
            clients: parts.4,
            revoked_clients: parts.5,
            exhausted_quotas: parts.6,
            global: parts.7,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn applying_the_diff_of_two_snapshots_gives_the_second(a in snapshot(), b in snapshot()) {
        let delta = SnapshotDelta::diff(&a, &b).unwrap();
        prop_assert_eq!(delta.base, a.version);
        prop_assert_eq!(delta.version, b.version);
        let decoded = SnapshotDelta::decode(&delta.to_binary().unwrap()).unwrap();
        prop_assert_eq!(&decoded, &delta);
        prop_assert_eq!(delta.apply(a).unwrap(), b);
    }

    #[test]
    fn composing_deltas_gives_what_diffing_the_ends_gives(
        a in snapshot(),
        b in snapshot(),
        c in snapshot(),
    ) {
        let b = Snapshot { version: a.version + 1, ..b };
        let c = Snapshot { version: a.version + 2, ..c };
        let composed = SnapshotDelta::diff(&a, &b)
            .unwrap()
            .compose(SnapshotDelta::diff(&b, &c).unwrap())
            .unwrap();
        let direct = SnapshotDelta::diff(&a, &c).unwrap();
        prop_assert_eq!(
            (composed.base, composed.version, composed.digest),
            (direct.base, direct.version, direct.digest)
        );
        prop_assert_eq!(&composed.apply(a.clone()).unwrap(), &c);
        prop_assert_eq!(direct.apply(a).unwrap(), c);
    }

    #[test]
    fn a_delta_applied_to_another_snapshot_of_its_base_version_is_refused(
        a in snapshot(),
        b in snapshot(),
        other in snapshot(),
    ) {
        let other = Snapshot { version: a.version, ..other };
        let b = Snapshot { version: a.version + 1, ..b };
        let delta = SnapshotDelta::diff(&a, &b).unwrap();
        match delta.apply(other) {
            // The changes happened to give the same result on this base too.
            Ok(result) => prop_assert_eq!(result, b),
            Err(error) => prop_assert!(
                matches!(error, DeltaError::DigestMismatch { .. } | DeltaError::Unsorted { .. }),
                "{error}"
            ),
        }
    }

    #[test]
    fn any_bytes_decode_or_fail_and_whatever_decodes_applies_or_fails_without_panicking(
        base in snapshot(),
        next in snapshot(),
        noise in proptest::collection::vec(any::<u8>(), 0..64),
        cut in 0..1000usize,
    ) {
        let mut bytes = SnapshotDelta::diff(&base, &next).unwrap().to_binary().unwrap();
        // Truncated, or with bytes changed from a point on.
        let at = cut % bytes.len();
        if noise.is_empty() {
            bytes.truncate(at);
        } else {
            bytes.splice(at.., noise);
        }
        if let Ok(delta) = SnapshotDelta::decode(&bytes) {
            let announced = delta.digest;
            if let Ok(result) = delta.apply(base) {
                prop_assert_eq!(result.digest().unwrap(), announced);
            }
        }
    }

    #[test]
    fn patching_in_place_and_merging_give_the_same_section(
        base in proptest::collection::btree_set(0..400u32, 0..300),
        changes in proptest::collection::btree_map(0..400u32, any::<bool>(), 0..40),
    ) {
        let ids = |n: &u32| format!("{n:03}");
        let base: Vec<String> = base.iter().map(ids).collect();
        let ops = || -> Vec<Op<String>> {
            changes
                .iter()
                .map(|(n, upsert)| if *upsert { Op::Upsert(ids(n)) } else { Op::Remove(ids(n)) })
                .collect()
        };
        let merged = merge(base.clone(), ops());
        prop_assert!(is_canonical(&merged));
        prop_assert_eq!(patch_in_place(base, ops()), merged);
    }

    #[test]
    fn the_digest_is_sha256_of_the_magic_and_the_binary_encoding_after_the_version(
        a in snapshot(),
    ) {
        let binary = a.to_binary().unwrap();
        // The version's varint ends at the first byte below 0x80 after the magic.
        let varint = binary[4..].iter().position(|byte| *byte < 0x80).unwrap() + 1;
        let mut hasher = Sha256::new();
        hasher.update(&binary[..4]);
        hasher.update(&binary[4 + varint..]);
        let expected = SnapshotDigest(hasher.finalize().into());
        prop_assert_eq!(a.digest().unwrap(), expected);
        prop_assert_eq!(SnapshotDigest::of_binary(&binary).unwrap(), expected);
    }
}

// === Examples ===

fn two_versions() -> (Snapshot, Snapshot) {
    let base = large_snapshot(1_000, 10, 10);
    let mut next = base.clone();
    next.version = base.version + 1;
    next.clients.push(ClientBinding {
        client_id: "ffffffff-ffff-4fff-8fff-ffffffffffff".to_owned(),
        policies: vec!["policy-1".to_owned()],
        expires_at: BTreeMap::new(),
        client: Some(format!("cli_{:032x}", u128::MAX)),
        developer: Some(format!("dev_{:032x}", 7)),
    });
    (base, next)
}

#[test]
fn a_registration_is_a_delta_of_one_binding_far_smaller_than_the_snapshot() {
    let (base, next) = two_versions();
    let delta = SnapshotDelta::diff(&base, &next).unwrap();
    assert_eq!(delta.apis, SectionDelta::unchanged());
    assert_eq!(delta.policies, SectionDelta::unchanged());
    assert_eq!(
        delta.clients,
        SectionDelta::Patch {
            upserts: vec![next.clients[1_000].clone()],
            removals: Vec::new()
        }
    );
    let bytes = delta.to_binary().unwrap();
    assert!(bytes.len() < 256, "{} bytes", bytes.len());
    assert!(SnapshotDelta::is_encoded(&bytes));
    assert!(!SnapshotDelta::is_encoded(&next.to_binary().unwrap()));
    let applied = SnapshotDelta::decode(&bytes).unwrap().apply(base).unwrap();
    assert_eq!(applied, next);
    CompiledSnapshot::compile(applied).unwrap();
}

#[test]
fn a_revocation_moves_the_client_from_the_bindings_to_the_revoked_list() {
    let (base, _) = two_versions();
    let mut next = base.clone();
    next.version += 1;
    let revoked = next.clients.remove(10);
    next.revoked_clients.push(revoked.client_id.clone());
    let delta = SnapshotDelta::diff(&base, &next).unwrap();
    assert_eq!(
        delta.clients,
        SectionDelta::Patch {
            upserts: Vec::new(),
            removals: vec![revoked.client_id.clone()]
        }
    );
    assert_eq!(
        delta.revoked_clients,
        SectionDelta::Patch {
            upserts: vec![revoked.client_id],
            removals: Vec::new()
        }
    );
    assert_eq!(delta.apply(base).unwrap(), next);
}

#[test]
fn a_delta_names_its_base_and_refuses_any_other_version() {
    let (base, next) = two_versions();
    let delta = SnapshotDelta::diff(&base, &next).unwrap();
    let newer = Snapshot {
        version: base.version + 5,
        ..base
    };
    assert_eq!(
        delta.apply(newer),
        Err(DeltaError::WrongBase {
            expected: 1,
            found: 6
        })
    );
}

#[test]
fn a_delta_whose_result_differs_from_the_announced_digest_is_refused() {
    let (base, next) = two_versions();
    let mut delta = SnapshotDelta::diff(&base, &next).unwrap();
    delta.digest.0[0] ^= 1;
    assert!(matches!(
        delta.apply(base),
        Err(DeltaError::DigestMismatch { .. })
    ));
}

#[test]
fn a_patch_to_a_base_out_of_order_is_refused() {
    let (mut base, next) = two_versions();
    let delta = SnapshotDelta::diff(&base, &next).unwrap();
    base.clients.swap(0, 1);
    assert_eq!(
        delta.apply(base),
        Err(DeltaError::Unsorted {
            section: "clients",
            problem: "the base is not sorted by key"
        })
    );
}

#[test]
fn a_delta_with_its_lists_out_of_order_is_refused() {
    let (base, _) = two_versions();
    let mut next = base.clone();
    next.version += 1;
    next.clients.truncate(990);
    let mut delta = SnapshotDelta::diff(&base, &next).unwrap();
    let SectionDelta::Patch { removals, .. } = &mut delta.clients else {
        panic!("a patch: {:?}", delta.clients);
    };
    removals.reverse();
    assert_eq!(
        delta.apply(base),
        Err(DeltaError::Unsorted {
            section: "clients",
            problem: "removals are not sorted"
        })
    );
}

#[test]
fn sections_out_of_order_are_sent_whole() {
    let (mut base, mut next) = two_versions();
    base.revoked_clients = vec!["z".to_owned(), "a".to_owned()];
    next.revoked_clients = vec!["z".to_owned(), "a".to_owned(), "b".to_owned()];
    let delta = SnapshotDelta::diff(&base, &next).unwrap();
    assert_eq!(
        delta.revoked_clients,
        SectionDelta::Replace(next.revoked_clients.clone())
    );
    assert_eq!(delta.apply(base).unwrap(), next);
}

#[test]
fn emptying_a_section_sends_it_whole_rather_than_every_key() {
    let (base, _) = two_versions();
    let next = Snapshot {
        version: 2,
        clients: Vec::new(),
        ..base.clone()
    };
    let delta = SnapshotDelta::diff(&base, &next).unwrap();
    assert_eq!(delta.clients, SectionDelta::Replace(Vec::new()));
}

#[test]
fn only_consecutive_deltas_compose() {
    let (base, next) = two_versions();
    let first = SnapshotDelta::diff(&base, &next).unwrap();
    assert_eq!(
        first.clone().compose(first),
        Err(DeltaError::NotConsecutive { first: 2, next: 1 })
    );
}

#[test]
fn a_client_added_then_removed_leaves_at_most_a_harmless_removal() {
    let (base, next) = two_versions();
    let last = Snapshot {
        version: 3,
        ..base.clone()
    };
    let composed = SnapshotDelta::diff(&base, &next)
        .unwrap()
        .compose(SnapshotDelta::diff(&next, &last).unwrap())
        .unwrap();
    assert_eq!(composed.apply(base).unwrap(), last);
}

#[test]
fn garbage_and_trailing_bytes_are_not_deltas() {
    let (base, next) = two_versions();
    let mut bytes = SnapshotDelta::diff(&base, &next)
        .unwrap()
        .to_binary()
        .unwrap();
    assert!(matches!(
        SnapshotDelta::decode(&bytes[4..]),
        Err(DeltaError::Malformed(_))
    ));
    assert!(matches!(
        SnapshotDelta::decode(b"PSD\x07\xff\xff\xff"),
        Err(DeltaError::Malformed(_))
    ));
    bytes.push(0);
    assert!(matches!(
        SnapshotDelta::decode(&bytes),
        Err(DeltaError::Malformed(_))
    ));
}

#[test]
fn the_digest_ignores_the_version_and_survives_both_encodings() {
    let (base, next) = two_versions();
    let renumbered = Snapshot {
        version: 99,
        ..base.clone()
    };
    assert_eq!(base.digest().unwrap(), renumbered.digest().unwrap());
    assert_ne!(base.digest().unwrap(), next.digest().unwrap());
    // Keys travel as JSON text inside the binary encoding: decoding either encoding must give
    // back the same digest, or filters would refuse every delta.
    let from_binary = Snapshot::decode(&base.to_binary().unwrap()).unwrap();
    let from_json = Snapshot::decode(&serde_json::to_vec(&base).unwrap()).unwrap();
    assert_eq!(from_binary.digest().unwrap(), base.digest().unwrap());
    assert_eq!(from_json.digest().unwrap(), base.digest().unwrap());
    assert_eq!(base.digest().unwrap().to_string().len(), 64);
    let huge = Snapshot {
        version: u64::MAX,
        ..base.clone()
    };
    assert_eq!(
        SnapshotDigest::of_binary(&huge.to_binary().unwrap()).unwrap(),
        base.digest().unwrap()
    );
    for garbage in [&b""[..], b"PSN\x07", b"PSN\x07\xff\xff\xff", b"JSON"] {
        assert!(SnapshotDigest::of_binary(garbage).is_err(), "{garbage:?}");
    }
}

#[test]
fn the_delta_format_follows_the_snapshot_format() {
    let version = crate::snapshot::BINARY_MEDIA_TYPE
        .split('.')
        .find_map(|part| part.strip_prefix('v'))
        .and_then(|rest| rest.split('+').next())
        .unwrap();
    assert_eq!(
        DELTA_MEDIA_TYPE,
        format!("application/vnd.portico.snapshot-delta.v{version}+postcard")
    );
    assert_eq!(DELTA_MAGIC[3], version.parse::<u8>().unwrap());
    assert_eq!(super::super::codec::BINARY_MAGIC[3], DELTA_MAGIC[3]);
}
