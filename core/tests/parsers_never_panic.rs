//! Property tests of the parsers that read untrusted input: tokens (from any client) and key
//! sets (from IdPs). Whatever the bytes, they answer with a value or an error, never a panic;
//! and no change to a valid token's bytes is ever accepted.

#![allow(
    clippy::unwrap_used,
    reason = "test fixtures: a broken one should stop the test"
)]

use portico_core::alg::Algorithm;
use portico_core::crypto::PureRustVerifier;
use portico_core::jwk::KeySet;
use portico_core::rules::DEFAULT_MAX_TOKEN_BYTES;
use portico_core::testing::{TestKey, jwks};
use portico_core::token::{TokenRules, TrustedIssuer, verify};
use proptest::prelude::*;
use serde_json::json;

const ISSUER: &str = "https://idp.example.com";
const NOW: i64 = 1_800_000_000;

fn rules() -> TokenRules {
    TokenRules {
        allowed_algorithms: [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
            .into_iter()
            .collect(),
        max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
        require_exp: true,
        clock_skew_seconds: 60,
        audiences: vec!["orders".to_owned()],
        expected_typ: None,
    }
}

fn issuer() -> TrustedIssuer {
    TrustedIssuer {
        issuer: ISSUER.to_owned(),
        keys: KeySet::from_value(&jwks(&[&TestKey::p256_a(), &TestKey::ed25519_a()]))
            .unwrap()
            .keys,
        // Bounded, so that arbitrary `iat` and `exp` go through the lifetime check too.
        max_token_lifetime_seconds: Some(3600),
    }
}

fn valid_token() -> String {
    TestKey::p256_a().token(
        Algorithm::ES256,
        &json!({"iss": ISSUER, "sub": "c", "aud": "orders", "exp": NOW + 600}),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_string_is_answered_without_panicking(token in ".{0,400}") {
        let _ = verify(&token, &rules(), &[&issuer()], &PureRustVerifier, NOW);
    }

    #[test]
    fn any_three_base64url_parts_are_answered_without_panicking(
        header in prop::collection::vec(any::<u8>(), 0..120),
        payload in prop::collection::vec(any::<u8>(), 0..200),
        signature in prop::collection::vec(any::<u8>(), 0..130),
    ) {
        let token = format!(
            "{}.{}.{}",
            portico_core::testing::b64(&header),
            portico_core::testing::b64(&payload),
            portico_core::testing::b64(&signature)
        );
        prop_assert!(verify(&token, &rules(), &[&issuer()], &PureRustVerifier, NOW).is_err());
    }

    #[test]
    fn no_change_to_a_valid_token_is_accepted(index in 0usize..10_000, byte in any::<u8>()) {
        let token = valid_token();
        let mut bytes = token.into_bytes();
        let index = index % bytes.len();
        prop_assume!(bytes[index] != byte);
        bytes[index] = byte;
        if let Ok(changed) = String::from_utf8(bytes) {
            // base64url has redundant encodings of the last character's spare bits; the
            // strict decoder refuses them, so every change is refused.
            prop_assert!(verify(&changed, &rules(), &[&issuer()], &PureRustVerifier, NOW).is_err());
        }
    }

    #[test]
    fn any_bytes_as_a_key_set_are_answered_without_panicking(
        document in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let _ = KeySet::parse(&document);
    }

    #[test]
    fn any_json_members_in_a_jwk_are_answered_without_panicking(
        kty in prop::sample::select(vec!["RSA", "EC", "OKP", "oct", "x"]),
        crv in prop::sample::select(vec!["P-256", "P-384", "Ed25519", "X25519", ""]),
        x in prop::collection::vec(any::<u8>(), 0..70),
        y in prop::collection::vec(any::<u8>(), 0..70),
        n in prop::collection::vec(any::<u8>(), 0..300),
        e in prop::collection::vec(any::<u8>(), 0..9),
    ) {
        let b64 = portico_core::testing::b64;
        let jwk = json!({"kty": kty, "crv": crv, "x": b64(&x), "y": b64(&y), "n": b64(&n), "e": b64(&e)});
        let set = KeySet::from_value(&json!({"keys": [jwk]})).unwrap();
        prop_assert_eq!(set.keys.len() + set.skipped.len(), 1);
    }
}
