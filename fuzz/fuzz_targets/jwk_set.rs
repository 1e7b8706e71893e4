//! JWK Set parsing (`KeySet::parse`, what the control plane does with an IdP's `jwks_uri`
//! answer and the filter with a snapshot's keys). Every entry of `keys` is either kept or
//! skipped with its index; a kept key parses again the same way on its own; the rule checks
//! on single JWKs never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico_core::jwk::{KeySet, VerifyingKey, plain_shape, public_only};
use serde_json::Value;

fuzz_target!(|bytes: &[u8]| {
    let Ok(set) = KeySet::parse(bytes) else {
        return;
    };
    let document: Value = serde_json::from_slice(bytes).expect("KeySet::parse accepted it");
    let entries = document["keys"]
        .as_array()
        .expect("KeySet::parse found `keys`");
    assert_eq!(set.keys.len() + set.skipped.len(), entries.len());
    let mut kept = set.keys.iter();
    let mut skipped = set.skipped.iter().peekable();
    for (index, entry) in entries.iter().enumerate() {
        let _ = public_only(entry);
        let _ = plain_shape(entry);
        if skipped.peek().is_some_and(|skip| skip.index == index) {
            let skip = skipped.next().expect("peeked");
            assert_eq!(
                VerifyingKey::from_jwk(entry).err(),
                Some(skip.reason.clone())
            );
            assert!(!skip.reason.to_string().is_empty());
        } else {
            let key = kept.next().expect("a key for every entry not skipped");
            let again = VerifyingKey::from_jwk(entry).expect("a kept key parses again");
            assert_eq!(again.kid(), key.kid());
            assert_eq!(again.alg(), key.alg());
            assert_eq!(again.family(), key.family());
            assert_eq!(again.spki_der(), key.spki_der());
            if let Some(alg) = key.alg() {
                assert!(key.supports(alg), "a key does not support its own `alg`");
            }
        }
    }
});
