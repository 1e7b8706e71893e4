use std::cell::RefCell;

use super::*;
use crate::testing::TestKey;

fn key(test_key: &TestKey) -> VerifyingKey {
    VerifyingKey::from_jwk(&test_key.public_jwk()).unwrap()
}

fn hmac_key(test_key: &TestKey) -> VerifyingKey {
    VerifyingKey::hmac(
        Some(test_key.kid().to_owned()),
        None,
        test_key.secret().to_vec(),
    )
    .unwrap()
}

const MESSAGE: &[u8] = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0";

fn cases() -> Vec<(TestKey, VerifyingKey, Algorithm)> {
    let rsa = TestKey::rsa_a();
    let p256 = TestKey::p256_a();
    let p384 = TestKey::p384_a();
    let ed = TestKey::ed25519_a();
    let secret = TestKey::hmac("s", 64);
    let mut cases = Vec::new();
    for alg in [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ] {
        cases.push((rsa.clone(), key(&rsa), alg));
    }
    cases.push((p256.clone(), key(&p256), Algorithm::ES256));
    cases.push((p384.clone(), key(&p384), Algorithm::ES384));
    cases.push((ed.clone(), key(&ed), Algorithm::EdDSA));
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        cases.push((secret.clone(), hmac_key(&secret), alg));
    }
    cases
}

#[test]
fn pure_rust_verifies_every_algorithm() {
    for (signer, key, alg) in cases() {
        let signature = signer.sign_raw(alg, MESSAGE);
        assert_eq!(
            PureRustVerifier.verify(alg, &key, MESSAGE, &signature),
            Ok(()),
            "{alg}"
        );
    }
}

#[test]
fn pure_rust_rejects_a_signature_over_another_message() {
    for (signer, key, alg) in cases() {
        let signature = signer.sign_raw(alg, b"something else");
        let outcome = PureRustVerifier.verify(alg, &key, MESSAGE, &signature);
        assert!(outcome.is_err(), "{alg}");
    }
}

#[test]
fn pure_rust_rejects_a_flipped_bit_in_every_algorithm() {
    for (signer, key, alg) in cases() {
        let mut signature = signer.sign_raw(alg, MESSAGE);
        signature[5] ^= 0x01;
        assert!(
            PureRustVerifier
                .verify(alg, &key, MESSAGE, &signature)
                .is_err(),
            "{alg}"
        );
    }
}

#[test]
fn ecdsa_signature_of_the_wrong_length_is_malformed() {
    let signer = TestKey::p256_a();
    let signature = signer.sign_raw(Algorithm::ES256, MESSAGE);
    assert_eq!(
        PureRustVerifier.verify(Algorithm::ES256, &key(&signer), MESSAGE, &signature[..63]),
        Err(SignatureError::Malformed(Algorithm::ES256))
    );
}

#[test]
fn a_key_never_verifies_another_family() {
    let rsa = key(&TestKey::rsa_a());
    assert_eq!(
        PureRustVerifier.verify(Algorithm::HS256, &rsa, MESSAGE, &[0; 32]),
        Err(SignatureError::KeyMismatch(Algorithm::HS256))
    );
}

/// A host that answers like Envoy's `verify_signature`, verifying with pure Rust, and records
/// the calls it received.
#[derive(Default)]
struct FakeHost {
    calls: RefCell<Vec<Vec<u8>>>,
    answer: Option<Result<Vec<u8>, HostCryptoError>>,
}

impl HostCrypto for FakeHost {
    fn verify_signature(&self, arguments: &[u8]) -> Result<Vec<u8>, HostCryptoError> {
        self.calls.borrow_mut().push(arguments.to_vec());
        self.answer.clone().unwrap_or(Ok(vec![0x08, 0x01]))
    }
}

/// Reads back the four length-delimited fields of `VerifySignatureArguments`.
fn decode_arguments(mut bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let key = read_varint(&mut bytes).unwrap();
        assert_eq!(key & 7, u64::from(WIRE_LEN));
        let len = read_varint(&mut bytes).unwrap() as usize;
        fields.push((key >> 3, bytes[..len].to_vec()));
        bytes = &bytes[len..];
    }
    fields
}

#[test]
fn host_receives_rsa_signatures_with_the_spki_and_hash_name() {
    let signer = TestKey::rsa_a();
    let key = key(&signer);
    let signature = signer.sign_raw(Algorithm::RS384, MESSAGE);
    let verifier = HostVerifier::new(FakeHost::default());
    assert_eq!(
        verifier.verify(Algorithm::RS384, &key, MESSAGE, &signature),
        Ok(())
    );
    let calls = verifier.host.calls.borrow();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        decode_arguments(&calls[0]),
        [
            (1, b"sha384".to_vec()),
            (2, key.spki_der().unwrap().to_vec()),
            (3, signature),
            (4, MESSAGE.to_vec()),
        ]
    );
}

#[test]
fn host_receives_ecdsa_signatures_as_der() {
    let signer = TestKey::p256_a();
    let key = key(&signer);
    let raw = signer.sign_raw(Algorithm::ES256, MESSAGE);
    let verifier = HostVerifier::new(FakeHost::default());
    verifier
        .verify(Algorithm::ES256, &key, MESSAGE, &raw)
        .unwrap();
    let fields = decode_arguments(&verifier.host.calls.borrow()[0]);
    let der = &fields[2].1;
    let parsed = p256::ecdsa::Signature::from_der(der).unwrap();
    assert_eq!(parsed.to_bytes().to_vec(), raw);
    assert_eq!(fields[0].1, b"sha256");
}

#[test]
fn host_answer_false_is_a_mismatch() {
    let signer = TestKey::p384_a();
    let raw = signer.sign_raw(Algorithm::ES384, MESSAGE);
    let host = FakeHost {
        answer: Some(Ok(vec![0x08, 0x00, 0x12, 0x03, b'b', b'a', b'd'])),
        ..FakeHost::default()
    };
    let verifier = HostVerifier::new(host);
    assert_eq!(
        verifier.verify(Algorithm::ES384, &key(&signer), MESSAGE, &raw),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn pss_eddsa_and_hmac_never_go_to_the_host() {
    let verifier = HostVerifier::new(FakeHost::default());
    for (signer, key, alg) in cases() {
        let host_capable =
            alg.family() != KeyFamily::Ed25519 && alg.family() != KeyFamily::Hmac && !is_pss(alg);
        if host_capable {
            continue;
        }
        let signature = signer.sign_raw(alg, MESSAGE);
        assert_eq!(
            verifier.verify(alg, &key, MESSAGE, &signature),
            Ok(()),
            "{alg}"
        );
    }
    assert!(verifier.host.calls.borrow().is_empty());
}

#[test]
fn a_host_without_the_function_is_asked_once_then_pure_rust_takes_over() {
    let signer = TestKey::rsa_a();
    let key = key(&signer);
    let signature = signer.sign_raw(Algorithm::RS256, MESSAGE);
    let host = FakeHost {
        answer: Some(Err(HostCryptoError::Unavailable)),
        ..FakeHost::default()
    };
    let verifier = HostVerifier::new(host);
    for _ in 0..3 {
        assert_eq!(
            verifier.verify(Algorithm::RS256, &key, MESSAGE, &signature),
            Ok(())
        );
    }
    assert!(!verifier.host_available());
    assert_eq!(verifier.host.calls.borrow().len(), 1);
    let counts = verifier.take_counts();
    assert_eq!(counts.get(Algorithm::RS256, CryptoPath::Software), 3);
    assert_eq!(counts.total(CryptoPath::Host), 0);
    assert_eq!(
        counts.nonzero().collect::<Vec<_>>(),
        [(Algorithm::RS256, CryptoPath::Software, 3)]
    );
    assert_eq!(verifier.take_counts(), VerificationCounts::default());
}

#[test]
fn a_failed_host_call_falls_back_to_pure_rust_and_still_rejects_forgeries() {
    let signer = TestKey::rsa_a();
    let key = key(&signer);
    let host = FakeHost {
        answer: Some(Err(HostCryptoError::Failed("bad argument".to_owned()))),
        ..FakeHost::default()
    };
    let verifier = HostVerifier::new(host);
    let good = signer.sign_raw(Algorithm::RS256, MESSAGE);
    let forged = TestKey::rsa_b().sign_raw(Algorithm::RS256, MESSAGE);
    assert_eq!(
        verifier.verify(Algorithm::RS256, &key, MESSAGE, &good),
        Ok(())
    );
    assert_eq!(
        verifier.verify(Algorithm::RS256, &key, MESSAGE, &forged),
        Err(SignatureError::Mismatch)
    );
    assert!(verifier.host_available());
}

#[test]
fn decodes_results_with_unknown_fields_and_rejects_truncated_ones() {
    assert_eq!(decode_verify_result(&[]), Some(false));
    assert_eq!(decode_verify_result(&[0x08, 0x01]), Some(true));
    // Field 9 (fixed32) and field 10 (varint) are skipped.
    assert_eq!(
        decode_verify_result(&[0x4d, 1, 2, 3, 4, 0x50, 0x05, 0x08, 0x01]),
        Some(true)
    );
    assert_eq!(decode_verify_result(&[0x12, 0x05, b'a']), None);
    assert_eq!(decode_verify_result(&[0x08]), None);
    assert_eq!(decode_verify_result(&[0x0b]), None);
}

#[test]
fn varints_round_trip_across_byte_boundaries() {
    for value in [
        0u64,
        1,
        127,
        128,
        300,
        16_383,
        16_384,
        u64::from(u32::MAX),
        u64::MAX,
    ] {
        let mut out = Vec::new();
        push_varint(&mut out, value);
        let mut slice = &out[..];
        assert_eq!(read_varint(&mut slice), Some(value));
        assert!(slice.is_empty());
    }
}
