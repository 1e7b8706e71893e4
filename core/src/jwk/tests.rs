use serde_json::{Value, json};

use super::*;
use crate::testing::{TestKey, b64, jwks};

fn only_key(jwk: Value) -> Result<VerifyingKey, JwkError> {
    VerifyingKey::from_jwk(&jwk)
}

fn with(mut jwk: Value, member: &str, value: Value) -> Value {
    jwk[member] = value;
    jwk
}

fn without(mut jwk: Value, member: &str) -> Value {
    jwk.as_object_mut().unwrap().remove(member);
    jwk
}

#[test]
fn parses_rsa_ec_and_okp_keys_with_their_kids() {
    let set = KeySet::from_value(&jwks(&[
        &TestKey::rsa_a(),
        &TestKey::p256_a(),
        &TestKey::p384_a(),
        &TestKey::ed25519_a(),
    ]))
    .unwrap();
    assert!(set.skipped.is_empty(), "{:?}", set.skipped);
    let families: Vec<_> = set
        .keys
        .iter()
        .map(|key| (key.kid().unwrap(), key.family()))
        .collect();
    assert_eq!(
        families,
        [
            ("rsa-a", KeyFamily::Rsa),
            ("ec-a", KeyFamily::P256),
            ("ec384-a", KeyFamily::P384),
            ("ed-a", KeyFamily::Ed25519),
        ]
    );
}

#[test]
fn rsa_key_supports_every_rsa_algorithm_and_nothing_else() {
    let key = only_key(TestKey::rsa_a().public_jwk()).unwrap();
    for alg in Algorithm::ALL {
        assert_eq!(key.supports(alg), alg.family() == KeyFamily::Rsa, "{alg}");
    }
}

#[test]
fn alg_member_restricts_the_key_to_that_algorithm() {
    let key = only_key(with(TestKey::rsa_a().public_jwk(), "alg", json!("PS256"))).unwrap();
    assert!(key.supports(Algorithm::PS256));
    assert!(!key.supports(Algorithm::RS256));
}

#[test]
fn skips_key_whose_alg_belongs_to_another_key_type() {
    let err = only_key(with(TestKey::p256_a().public_jwk(), "alg", json!("RS256"))).unwrap_err();
    assert_eq!(
        err,
        JwkError::AlgorithmMismatch {
            alg: Algorithm::RS256
        }
    );
}

#[test]
fn skips_key_with_alg_none_or_unknown_alg() {
    for alg in ["none", "RSA-OAEP", "rs256"] {
        let err = only_key(with(TestKey::rsa_a().public_jwk(), "alg", json!(alg))).unwrap_err();
        assert_eq!(err, JwkError::UnsupportedAlgorithm(alg.to_owned()));
    }
}

#[test]
fn normalises_p256_coordinates_padded_with_a_leading_zero() {
    let jwk = TestKey::p256_a().public_jwk();
    let mut padded = jwk.clone();
    for member in ["x", "y"] {
        let mut bytes = vec![0u8];
        bytes.extend(KEY_BASE64.decode(jwk[member].as_str().unwrap()).unwrap());
        assert_eq!(bytes.len(), 33);
        padded[member] = json!(b64(&bytes));
    }
    let normalised = only_key(padded).unwrap();
    let plain = only_key(jwk).unwrap();
    assert_eq!(normalised.spki_der(), plain.spki_der());
}

#[test]
fn skips_ec_coordinates_of_any_other_length() {
    let jwk = TestKey::p256_a().public_jwk();
    let x = KEY_BASE64.decode(jwk["x"].as_str().unwrap()).unwrap();
    for bad in [
        &[][..],
        &[&[1u8][..], &x[..]].concat()[..],
        &[&[0u8, 0][..], &x[..]].concat()[..],
    ] {
        let err = only_key(with(jwk.clone(), "x", json!(b64(bad)))).unwrap_err();
        assert_eq!(
            err,
            JwkError::BadCoordinateLength {
                member: "x",
                len: bad.len(),
                expected: 32
            }
        );
    }
}

#[test]
fn skips_ec_point_that_is_not_on_the_curve() {
    let jwk = TestKey::p256_a().public_jwk();
    let err = only_key(with(jwk, "y", json!(b64(&[7u8; 32])))).unwrap_err();
    assert!(matches!(err, JwkError::InvalidKey(_)), "{err:?}");
}

#[test]
fn skips_unknown_key_types_and_curves() {
    assert_eq!(
        only_key(json!({"kty": "RSA-HSM", "n": "AQAB", "e": "AQAB"})).unwrap_err(),
        JwkError::UnsupportedKeyType("RSA-HSM".to_owned())
    );
    let p256 = TestKey::p256_a().public_jwk();
    assert_eq!(
        only_key(with(p256, "crv", json!("secp256k1"))).unwrap_err(),
        JwkError::UnsupportedCurve("secp256k1".to_owned())
    );
    let ed = TestKey::ed25519_a().public_jwk();
    assert_eq!(
        only_key(with(ed, "crv", json!("X25519"))).unwrap_err(),
        JwkError::UnsupportedCurve("X25519".to_owned())
    );
}

#[test]
fn skips_encryption_keys_and_keys_that_may_not_verify() {
    let jwk = TestKey::rsa_a().public_jwk();
    assert_eq!(
        only_key(with(jwk.clone(), "use", json!("enc"))).unwrap_err(),
        JwkError::NotForSignatures("enc".to_owned())
    );
    assert_eq!(
        only_key(with(jwk.clone(), "key_ops", json!(["encrypt"]))).unwrap_err(),
        JwkError::VerifyNotAllowed
    );
    assert!(only_key(with(jwk, "key_ops", json!(["verify"]))).is_ok());
}

#[test]
fn skips_keys_with_missing_members() {
    for (jwk, member) in [
        (without(TestKey::rsa_a().public_jwk(), "n"), "n"),
        (without(TestKey::rsa_a().public_jwk(), "e"), "e"),
        (without(TestKey::p256_a().public_jwk(), "y"), "y"),
        (without(TestKey::p256_a().public_jwk(), "crv"), "crv"),
        (without(TestKey::ed25519_a().public_jwk(), "x"), "x"),
        (without(TestKey::rsa_a().public_jwk(), "kty"), "kty"),
    ] {
        assert_eq!(only_key(jwk).unwrap_err(), JwkError::MissingMember(member));
    }
}

#[test]
fn skips_keys_with_bad_base64url_or_wrong_member_types() {
    let jwk = TestKey::rsa_a().public_jwk();
    assert_eq!(
        only_key(with(jwk.clone(), "n", json!("not*base64"))).unwrap_err(),
        JwkError::BadBase64("n")
    );
    assert_eq!(
        only_key(with(jwk.clone(), "e", json!(65537))).unwrap_err(),
        JwkError::WrongType("e")
    );
    assert_eq!(
        only_key(with(jwk, "kid", json!(["a"]))).unwrap_err(),
        JwkError::WrongType("kid")
    );
    assert_eq!(only_key(json!("a key")).unwrap_err(), JwkError::NotAnObject);
}

#[test]
fn accepts_padded_base64url_in_key_members() {
    let jwk = TestKey::rsa_a().public_jwk();
    let mut padded_n = jwk["n"].as_str().unwrap().to_owned();
    assert!(
        !padded_n.len().is_multiple_of(4),
        "the test needs a member that pads"
    );
    while !padded_n.len().is_multiple_of(4) {
        padded_n.push('=');
    }
    assert!(only_key(with(jwk, "n", json!(padded_n))).is_ok());
}

#[test]
fn skips_rsa_modulus_under_2048_bits() {
    assert_eq!(
        only_key(TestKey::rsa_1024().public_jwk()).unwrap_err(),
        JwkError::RsaModulusTooSmall { bits: 1024 }
    );
}

#[test]
fn skips_rsa_key_with_even_modulus_or_bad_exponent() {
    let jwk = TestKey::rsa_a().public_jwk();
    let mut n = KEY_BASE64.decode(jwk["n"].as_str().unwrap()).unwrap();
    *n.last_mut().unwrap() &= 0xfe;
    assert!(matches!(
        only_key(with(jwk.clone(), "n", json!(b64(&n)))).unwrap_err(),
        JwkError::InvalidKey(_)
    ));
    assert!(matches!(
        only_key(with(jwk, "e", json!(b64(&[])))).unwrap_err(),
        JwkError::InvalidKey(_)
    ));
}

#[test]
fn never_takes_symmetric_keys_from_a_key_set() {
    assert_eq!(
        only_key(TestKey::hmac("shared", 32).public_jwk()).unwrap_err(),
        JwkError::SymmetricKeyInSet
    );
}

#[test]
fn bad_keys_are_skipped_with_reasons_while_good_keys_stay() {
    let document = json!({"keys": [
        TestKey::rsa_1024().public_jwk(),
        with(TestKey::p256_b().public_jwk(), "use", json!("enc")),
        TestKey::rsa_a().public_jwk(),
        {"kty": "EC", "crv": "P-521", "kid": "big", "x": "AA", "y": "AA"},
        TestKey::p256_a().public_jwk(),
        42,
    ]});
    let set = KeySet::parse(document.to_string().as_bytes()).unwrap();
    let kids: Vec<_> = set.keys.iter().map(|key| key.kid().unwrap()).collect();
    assert_eq!(kids, ["rsa-a", "ec-a"]);
    let skipped: Vec<_> = set
        .skipped
        .iter()
        .map(|skipped| (skipped.index, skipped.kid.as_deref()))
        .collect();
    assert_eq!(
        skipped,
        [
            (0, Some("rsa-1024")),
            (1, Some("ec-b")),
            (3, Some("big")),
            (5, None)
        ]
    );
    assert_eq!(
        set.skipped[2].reason,
        JwkError::UnsupportedCurve("P-521".to_owned())
    );
}

#[test]
fn a_document_without_a_keys_array_is_an_error() {
    assert_eq!(
        KeySet::parse(b"{\"key\": []}").unwrap_err(),
        JwksError::NoKeysArray
    );
    assert!(matches!(
        KeySet::parse(b"<html>").unwrap_err(),
        JwksError::Json(_)
    ));
}

#[test]
fn hmac_secret_must_be_as_long_as_the_digest() {
    assert!(VerifyingKey::hmac(None, Some(Algorithm::HS256), vec![1; 32]).is_ok());
    assert_eq!(
        VerifyingKey::hmac(None, Some(Algorithm::HS512), vec![1; 32]).unwrap_err(),
        JwkError::HmacSecretTooShort {
            len: 32,
            min: 64,
            alg: Algorithm::HS512
        }
    );
    assert_eq!(
        VerifyingKey::hmac(None, Some(Algorithm::RS256), vec![1; 64]).unwrap_err(),
        JwkError::AlgorithmMismatch {
            alg: Algorithm::RS256
        }
    );
}

#[test]
fn unrestricted_hmac_secret_supports_only_the_digests_it_is_long_enough_for() {
    let key = VerifyingKey::hmac(Some("s".to_owned()), None, vec![1; 48]).unwrap();
    assert!(key.supports(Algorithm::HS256));
    assert!(key.supports(Algorithm::HS384));
    assert!(!key.supports(Algorithm::HS512));
    assert!(!key.supports(Algorithm::RS256));
}

#[test]
fn spki_der_is_present_for_rsa_and_ec_keys_only() {
    assert!(
        only_key(TestKey::rsa_a().public_jwk())
            .unwrap()
            .spki_der()
            .is_some()
    );
    assert!(
        only_key(TestKey::p384_a().public_jwk())
            .unwrap()
            .spki_der()
            .is_some()
    );
    assert!(
        only_key(TestKey::ed25519_a().public_jwk())
            .unwrap()
            .spki_der()
            .is_none()
    );
}

#[test]
fn debug_output_names_the_key_without_its_material() {
    let key = VerifyingKey::hmac(Some("k".to_owned()), None, vec![0xab; 32]).unwrap();
    let text = format!("{key:?}");
    assert!(text.contains("\"k\"") && !text.contains("171"), "{text}");
}

// SHA-1 and SHA-256 of `testdata/keys/rsa-2048-a.cert.der`, as OpenSSL computes them.
const RSA_A_X5T: &str = "C31HeZXVpmJ45D69Le36tQdsWe4";
const RSA_A_X5T_S256: &str = "Gq2ii03nhRppLrfIK2VM7X_5bOW51tAFGbN1xV9VU2E";

fn rsa_a_with_x5c() -> Value {
    use base64::engine::general_purpose::STANDARD;
    with(
        TestKey::rsa_a().public_jwk(),
        "x5c",
        json!([STANDARD.encode(crate::testing::RSA_A_CERT)]),
    )
}

fn thumbprint(text: &str) -> KeyName {
    KeyName::from_text(text)
}

#[test]
fn computes_thumbprints_from_the_first_x5c_certificate() {
    let key = only_key(rsa_a_with_x5c()).unwrap();
    assert!(key.is_named(&thumbprint(&format!("x5t:{RSA_A_X5T}"))));
    assert!(key.is_named(&thumbprint(&format!("x5t#S256:{RSA_A_X5T_S256}"))));
    assert!(key.is_named(&KeyName::Kid("rsa-a".to_owned())));
}

#[test]
fn takes_thumbprint_members_without_a_certificate() {
    let jwk = with(TestKey::rsa_a().public_jwk(), "x5t", json!(RSA_A_X5T));
    let key = only_key(jwk).unwrap();
    assert!(key.is_named(&thumbprint(&format!("x5t:{RSA_A_X5T}"))));
    assert!(!key.is_named(&thumbprint(&format!("x5t#S256:{RSA_A_X5T_S256}"))));
}

#[test]
fn accepts_thumbprint_members_that_match_the_certificate() {
    let jwk = with(rsa_a_with_x5c(), "x5t", json!(RSA_A_X5T));
    let jwk = with(jwk, "x5t#S256", json!(RSA_A_X5T_S256));
    assert!(only_key(jwk).is_ok());
}

#[test]
fn skips_key_whose_thumbprint_member_contradicts_its_certificate() {
    let other_sha1 = "r6isxvvcPXMSfx3kRsNyx1nWIhE";
    let other_sha256 = "J0fO6brBUeILPacjR-e18dHtYlM_P0A-pZJ9g35SK_s";
    assert_eq!(
        only_key(with(rsa_a_with_x5c(), "x5t", json!(other_sha1))).unwrap_err(),
        JwkError::ThumbprintMismatch("x5t")
    );
    assert_eq!(
        only_key(with(rsa_a_with_x5c(), "x5t#S256", json!(other_sha256))).unwrap_err(),
        JwkError::ThumbprintMismatch("x5t#S256")
    );
}

#[test]
fn skips_key_with_malformed_certificates() {
    let rsa = TestKey::rsa_a().public_jwk();
    assert_eq!(
        only_key(with(rsa.clone(), "x5c", json!("MIIB"))).unwrap_err(),
        JwkError::WrongType("x5c")
    );
    assert_eq!(
        only_key(with(rsa.clone(), "x5c", json!([]))).unwrap_err(),
        JwkError::MissingMember("x5c")
    );
    assert_eq!(
        only_key(with(rsa, "x5c", json!(["not*base64"]))).unwrap_err(),
        JwkError::BadBase64("x5c")
    );
}

#[test]
fn reads_ec_coordinates_whose_leading_zero_bytes_were_dropped() {
    use p256::pkcs8::EncodePublicKey;
    // A P-256 key whose x coordinate starts with a zero byte (about one in 256): its SPKI ends
    // with the uncompressed point's x and y, 32 bytes each.
    let (x, y) = (1u32..)
        .find_map(|n| {
            let mut scalar = [0u8; 32];
            scalar[28..].copy_from_slice(&n.to_be_bytes());
            let key = p256::ecdsa::SigningKey::from_slice(&scalar).ok()?;
            let der = key.verifying_key().to_public_key_der().ok()?.into_vec();
            let point = &der[der.len() - 64..];
            (point[0] == 0).then(|| (point[..32].to_vec(), point[32..].to_vec()))
        })
        .unwrap();
    let full = json!({"kty": "EC", "crv": "P-256", "kid": "k", "x": b64(&x), "y": b64(&y)});
    // Keycloak before 21 and jwcrypto publish it without that byte: 31 bytes, the same number.
    let short = with(full.clone(), "x", json!(b64(&x[1..])));
    let full = only_key(full).unwrap();
    let short = only_key(short).unwrap();
    assert!(short.spki_der().is_some());
    assert_eq!(short.spki_der(), full.spki_der());
}

#[test]
fn ignores_malformed_thumbprint_members_and_names_the_key_by_its_certificate() {
    // Auth0 publishes `kid` and `x5t` as base64url of the upper-case hex SHA-1 text (40
    // bytes); WSO2 `x5t#S256` as base64url of the lower-case hex SHA-256 text (64 bytes).
    let hex = |digest: &[u8], upper: bool| -> String {
        let text: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        if upper { text.to_uppercase() } else { text }
    };
    let sha1 = KEY_BASE64.decode(RSA_A_X5T).unwrap();
    let sha256 = KEY_BASE64.decode(RSA_A_X5T_S256).unwrap();
    let auth0 = b64(hex(&sha1, true).as_bytes());
    let wso2 = b64(hex(&sha256, false).as_bytes());
    let jwk = with(rsa_a_with_x5c(), "kid", json!(auth0));
    let jwk = with(jwk, "x5t", json!(auth0));
    let jwk = with(jwk, "x5t#S256", json!(wso2));
    let key = only_key(jwk).unwrap();
    assert!(key.is_named(&KeyName::Kid(auth0)));
    assert!(key.is_named(&thumbprint(&format!("x5t:{RSA_A_X5T}"))));
    assert!(key.is_named(&thumbprint(&format!("x5t#S256:{RSA_A_X5T_S256}"))));
    // Without a certificate, such a member names nothing, and the key is still read.
    let rsa = TestKey::rsa_a().public_jwk();
    assert!(only_key(with(rsa.clone(), "x5t", json!(RSA_A_X5T_S256))).is_ok());
    assert!(only_key(with(rsa, "x5t#S256", json!("***"))).is_ok());
}
