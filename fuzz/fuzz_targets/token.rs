//! Token parsing and verification (`token::verify`) against fixed issuers and a fixed clock.
//!
//! The first byte chooses the mode: even, the rest is the token as sent (any bytes that are
//! UTF-8); odd, the rest is `header JSON` + newline + `claims JSON`, which the target signs
//! with the HMAC issuer's key (HS256), so that fuzzing gets past the signature to the claim
//! checks. Bit 1 of the first byte makes the API require the audience `api`.
//!
//! Checks: a refusal has a stable code; an accepted token used an allowed algorithm, came
//! from a configured issuer, is not expired at the clock (with the skew) and names the
//! audience when one is required.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use portico_core::alg::Algorithm;
use portico_core::crypto::PureRustVerifier;
use portico_core::jwk::{KeySet, VerifyingKey};
use portico_core::testing::{TestKey, b64, jwks};
use portico_core::token::{TokenRules, TrustedIssuer, verify};
use serde_json::Value;

const NOW: i64 = 1_800_000_000;
const SKEW: u64 = 60;

struct Fixture {
    issuers: Vec<TrustedIssuer>,
    hmac: TestKey,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let asymmetric = jwks(&[&TestKey::rsa_a(), &TestKey::p256_a(), &TestKey::ed25519_a()]);
    let hmac = TestKey::hmac("hs", 32);
    let hmac_key = VerifyingKey::hmac(Some("hs".to_owned()), None, hmac.secret().to_vec())
        .expect("a 32-byte HS256 secret");
    Fixture {
        issuers: vec![
            TrustedIssuer {
                issuer: "https://idp.example.com".to_owned(),
                keys: KeySet::from_value(&asymmetric).expect("test JWKS").keys,
                max_token_lifetime_seconds: None,
            },
            TrustedIssuer {
                issuer: "https://hs.example.com".to_owned(),
                keys: vec![hmac_key],
                max_token_lifetime_seconds: None,
            },
        ],
        hmac,
    }
});

fn rules(audience: bool) -> TokenRules {
    TokenRules {
        allowed_algorithms: [
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
            Algorithm::HS256,
        ]
        .into_iter()
        .collect(),
        max_token_bytes: portico_core::rules::DEFAULT_MAX_TOKEN_BYTES,
        require_exp: true,
        clock_skew_seconds: SKEW,
        audiences: if audience {
            vec!["api".to_owned()]
        } else {
            Vec::new()
        },
        expected_typ: None,
    }
}

fuzz_target!(|bytes: &[u8]| {
    let Some((&mode, rest)) = bytes.split_first() else {
        return;
    };
    let Ok(rest) = std::str::from_utf8(rest) else {
        return;
    };
    let fixture = &*FIXTURE;
    let token = if mode & 1 == 1 {
        let (header, claims) = rest.split_once('\n').unwrap_or((rest, "{}"));
        let signing_input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let signature = fixture
            .hmac
            .sign_raw(Algorithm::HS256, signing_input.as_bytes());
        format!("{signing_input}.{}", b64(&signature))
    } else {
        rest.to_owned()
    };
    let rules = rules(mode & 2 == 2);
    let issuers: Vec<&TrustedIssuer> = fixture.issuers.iter().collect();
    match verify(&token, &rules, &issuers, &PureRustVerifier, NOW) {
        Ok(verified) => {
            assert!(rules.allowed_algorithms.contains(verified.alg));
            assert!(verified.issuer_index < issuers.len());
            let exp = verified.expires_at.expect("exp is required");
            assert!(
                NOW < exp.saturating_add(SKEW as i64),
                "expired token accepted"
            );
            if !rules.audiences.is_empty() {
                let named = match verified.claims.get("aud") {
                    Some(Value::String(aud)) => aud == "api",
                    Some(Value::Array(auds)) => auds.iter().any(|aud| aud == "api"),
                    _ => false,
                };
                assert!(named, "token without the required audience accepted");
            }
            assert_eq!(
                verified.claims.str("iss"),
                Some(issuers[verified.issuer_index].issuer.as_str())
            );
        }
        Err(error) => {
            assert!(!error.code().is_empty());
            assert!(!error.to_string().is_empty());
        }
    }
});
