use serde_json::{Value, json};

use super::*;
use crate::crypto::PureRustVerifier;
use crate::jwk::{KeyName, KeySet};
use crate::testing::{TestKey, b64, jwks};

const ISSUER: &str = "https://idp.example.com";
const NOW: i64 = 1_800_000_000;

fn rules() -> TokenRules {
    TokenRules {
        allowed_algorithms: [
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ]
        .into_iter()
        .collect(),
        max_token_bytes: crate::rules::DEFAULT_MAX_TOKEN_BYTES,
        require_exp: true,
        clock_skew_seconds: 60,
        audiences: Vec::new(),
        expected_typ: None,
    }
}

fn issuer_with(keys: &[&TestKey]) -> TrustedIssuer {
    TrustedIssuer {
        issuer: ISSUER.to_owned(),
        keys: KeySet::from_value(&jwks(keys)).unwrap().keys,
        max_token_lifetime_seconds: None,
    }
}

fn issuer() -> TrustedIssuer {
    issuer_with(&[&TestKey::rsa_a(), &TestKey::p256_a(), &TestKey::ed25519_a()])
}

fn claims() -> Value {
    json!({"iss": ISSUER, "sub": "client-1", "client_id": "client-1", "exp": NOW + 300, "iat": NOW - 10})
}

fn check(token: &str) -> Result<VerifiedToken, TokenError> {
    check_with(token, &rules(), &issuer())
}

fn check_with(
    token: &str,
    rules: &TokenRules,
    issuer: &TrustedIssuer,
) -> Result<VerifiedToken, TokenError> {
    verify(token, rules, &[issuer], &PureRustVerifier, NOW)
}

fn code(token: &str) -> &'static str {
    check(token).unwrap_err().code()
}

/// A token with a hand-written header and claims, signed with `key` under `alg`.
fn signed(key: &TestKey, alg: Algorithm, header: Value, claims: Value) -> String {
    key.sign_json(alg, &header, &claims)
}

/// `header.payload.signature` from raw parts, for tokens no signer would produce.
fn raw(header: &str, payload: &str, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.as_bytes()),
        b64(payload.as_bytes()),
        b64(signature)
    )
}

#[test]
fn accepts_rs256_es256_and_eddsa_tokens() {
    for (key, alg) in [
        (TestKey::rsa_a(), Algorithm::RS256),
        (TestKey::rsa_a(), Algorithm::PS256),
        (TestKey::p256_a(), Algorithm::ES256),
        (TestKey::ed25519_a(), Algorithm::EdDSA),
    ] {
        let verified = check(&key.token(alg, &claims())).unwrap();
        assert_eq!(verified.alg, alg);
        assert_eq!(verified.kid.as_deref(), Some(key.kid()));
        assert_eq!(verified.expires_at, Some(NOW + 300));
        assert_eq!(verified.claims.str("client_id"), Some("client-1"));
    }
}

#[test]
fn accepts_es384_with_a_p384_key() {
    let key = TestKey::p384_a();
    let issuer = issuer_with(&[&key]);
    assert!(check_with(&key.token(Algorithm::ES384, &claims()), &rules(), &issuer).is_ok());
}

#[test]
fn rejects_alg_none_in_any_letter_case() {
    for alg in ["none", "None", "NONE", "nOnE"] {
        let token = raw(
            &format!(r#"{{"alg":"{alg}","kid":"rsa-a"}}"#),
            &claims().to_string(),
            b"",
        );
        assert_eq!(code(&token), "alg_none", "{alg}");
    }
}

#[test]
fn rejects_hs256_signed_with_the_rsa_public_key_as_secret() {
    // Algorithm confusion: the attacker HMACs with the issuer's public key bytes.
    let rsa = TestKey::rsa_a();
    let public_key = KeySet::from_value(&jwks(&[&rsa])).unwrap().keys.remove(0);
    let secret = public_key.spki_der().unwrap().to_vec();
    let signing_input = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","kid":"rsa-a"}"#),
        b64(claims().to_string().as_bytes())
    );
    let mac = {
        use hmac::{KeyInit as _, Mac as _};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&secret).unwrap();
        mac.update(signing_input.as_bytes());
        mac.finalize().into_bytes().to_vec()
    };
    let token = format!("{signing_input}.{}", b64(&mac));
    // Not in the allow-list: refused before any key is looked at.
    assert_eq!(code(&token), "alg_not_allowed");
    // Even where an API allows HS256, the RSA key named by kid cannot verify it.
    let mut permissive = rules();
    permissive.allowed_algorithms = permissive.allowed_algorithms.with(Algorithm::HS256);
    let err = check_with(&token, &permissive, &issuer()).unwrap_err();
    assert_eq!(err.code(), "key_mismatch");
    // And without a kid there is no HMAC key to pick.
    let no_kid = format!(
        "{}.{}.{}",
        b64(br#"{"alg":"HS256"}"#),
        b64(claims().to_string().as_bytes()),
        b64(&mac)
    );
    assert_eq!(
        check_with(&no_kid, &permissive, &issuer())
            .unwrap_err()
            .code(),
        "no_matching_key"
    );
}

#[test]
fn rejects_kid_naming_a_key_of_another_type() {
    // Signed with the EC key, but claims the RSA key's kid.
    let token = signed(
        &TestKey::p256_a(),
        Algorithm::ES256,
        json!({"alg": "ES256", "kid": "rsa-a"}),
        claims(),
    );
    assert_eq!(
        check(&token).unwrap_err(),
        TokenError::KeyMismatch {
            kid: "rsa-a".to_owned(),
            alg: Algorithm::ES256
        }
    );
}

#[test]
fn rejects_kid_naming_a_key_restricted_to_another_algorithm() {
    let mut jwk = TestKey::rsa_a().public_jwk();
    jwk["alg"] = json!("PS256");
    let issuer = TrustedIssuer {
        issuer: ISSUER.to_owned(),
        keys: KeySet::from_value(&json!({"keys": [jwk]})).unwrap().keys,
        max_token_lifetime_seconds: None,
    };
    let token = TestKey::rsa_a().token(Algorithm::RS256, &claims());
    assert_eq!(
        check_with(&token, &rules(), &issuer).unwrap_err().code(),
        "key_mismatch"
    );
}

#[test]
fn rejects_unknown_kid_and_says_which_issuer() {
    let token = TestKey::rsa_b().token(Algorithm::RS256, &claims());
    assert_eq!(
        check(&token).unwrap_err(),
        TokenError::UnknownKid {
            kid: "rsa-b".to_owned(),
            issuer_index: 0
        }
    );
}

#[test]
fn without_kid_uses_the_only_key_for_the_algorithm() {
    let token = signed(
        &TestKey::rsa_a(),
        Algorithm::RS256,
        json!({"alg": "RS256"}),
        claims(),
    );
    assert!(check(&token).is_ok());
}

#[test]
fn rejects_missing_kid_when_several_keys_match() {
    let issuer = issuer_with(&[&TestKey::p256_a(), &TestKey::p256_b()]);
    let token = signed(
        &TestKey::p256_a(),
        Algorithm::ES256,
        json!({"alg": "ES256"}),
        claims(),
    );
    assert_eq!(
        check_with(&token, &rules(), &issuer).unwrap_err(),
        TokenError::AmbiguousKey { candidates: 2 }
    );
}

#[test]
fn rejects_missing_kid_when_no_key_fits() {
    let issuer = issuer_with(&[&TestKey::rsa_a()]);
    let token = signed(
        &TestKey::p256_a(),
        Algorithm::ES256,
        json!({"alg": "ES256"}),
        claims(),
    );
    assert_eq!(
        check_with(&token, &rules(), &issuer).unwrap_err().code(),
        "no_matching_key"
    );
}

#[test]
fn rejects_two_and_four_part_tokens() {
    let token = TestKey::rsa_a().token(Algorithm::RS256, &claims());
    let (two, _) = token.rsplit_once('.').unwrap();
    assert_eq!(check(two).unwrap_err(), TokenError::Malformed { parts: 2 });
    assert_eq!(
        check(&format!("{token}.e30")).unwrap_err(),
        TokenError::Malformed { parts: 4 }
    );
    assert_eq!(check("").unwrap_err(), TokenError::Malformed { parts: 1 });
}

#[test]
fn rejects_bad_base64url_in_each_part() {
    let token = TestKey::rsa_a().token(Algorithm::RS256, &claims());
    let parts: Vec<&str> = token.split('.').collect();
    for (index, part) in [TokenPart::Header, TokenPart::Payload, TokenPart::Signature]
        .into_iter()
        .enumerate()
    {
        let mut broken = parts.clone();
        let bad = format!("{}*", &parts[index][1..]);
        broken[index] = &bad;
        assert_eq!(
            check(&broken.join(".")).unwrap_err(),
            TokenError::BadBase64(part)
        );
    }
    // Standard (non-url) alphabet and padding are not base64url either.
    let padded = format!("{}=.{}.{}", parts[0], parts[1], parts[2]);
    assert_eq!(check(&padded).unwrap_err().code(), "invalid_base64");
}

#[test]
fn rejects_header_that_is_not_a_json_object() {
    for header in [
        "[\"RS256\"]",
        "\"RS256\"",
        "{\"alg\":",
        "not json",
        "{\"alg\": 256}",
    ] {
        let token = raw(header, &claims().to_string(), b"sig");
        assert_eq!(code(&token), "invalid_header", "{header}");
    }
    let token = raw(r#"{"typ":"JWT"}"#, &claims().to_string(), b"sig");
    assert_eq!(
        check(&token).unwrap_err(),
        TokenError::InvalidHeader("missing `alg`".to_owned())
    );
}

#[test]
fn rejects_header_with_duplicate_alg() {
    let token = raw(
        r#"{"alg":"RS256","alg":"none"}"#,
        &claims().to_string(),
        b"sig",
    );
    assert_eq!(code(&token), "invalid_header");
}

#[test]
fn rejects_payload_that_is_not_a_json_object() {
    for payload in ["[1,2]", "\"claims\"", "{\"iss\":", "null"] {
        let token = signed(
            &TestKey::rsa_a(),
            Algorithm::RS256,
            json!({"alg": "RS256", "kid": "rsa-a"}),
            json!(null),
        );
        let (header, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let token = format!("{header}.{}.{signature}", b64(payload.as_bytes()));
        assert_eq!(code(&token), "invalid_payload", "{payload}");
    }
}

#[test]
fn rejects_tokens_over_the_size_limit_before_parsing() {
    let mut big_claims = claims();
    big_claims["padding"] = json!("x".repeat(crate::rules::DEFAULT_MAX_TOKEN_BYTES));
    let token = TestKey::rsa_a().token(Algorithm::RS256, &big_claims);
    assert!(matches!(
        check(&token).unwrap_err(),
        TokenError::TooLarge { max: 16384, .. }
    ));
    let mut roomy = rules();
    roomy.max_token_bytes = 64 * 1024;
    assert!(check_with(&token, &roomy, &issuer()).is_ok());
}

#[test]
fn rejects_headers_that_point_at_other_keys() {
    let rsa = TestKey::rsa_a();
    for (parameter, value) in [
        ("jku", json!("https://attacker.example/jwks.json")),
        ("x5u", json!("https://attacker.example/cert.pem")),
        ("jwk", rsa.public_jwk()),
        ("x5c", json!(["MIIB..."])),
    ] {
        let mut header = json!({"alg": "RS256", "kid": "rsa-a"});
        header[parameter] = value;
        let token = signed(&rsa, Algorithm::RS256, header, claims());
        assert_eq!(
            check(&token).unwrap_err(),
            TokenError::ForbiddenHeader(match parameter {
                "jku" => "jku",
                "x5u" => "x5u",
                "jwk" => "jwk",
                _ => "x5c",
            })
        );
    }
}

#[test]
fn rejects_crit_naming_any_extension() {
    let rsa = TestKey::rsa_a();
    for (crit, named) in [
        (json!(["exp"]), "exp"),
        (json!(["b64"]), "b64"),
        (json!([]), "[]"),
    ] {
        let header = json!({"alg": "RS256", "kid": "rsa-a", "crit": crit, "b64": true, "exp": 1});
        let token = signed(&rsa, Algorithm::RS256, header, claims());
        assert_eq!(
            check(&token).unwrap_err(),
            TokenError::UnsupportedCrit(named.to_owned())
        );
    }
}

#[test]
fn rejects_exp_given_as_a_string() {
    let mut bad = claims();
    bad["exp"] = json!((NOW + 300).to_string());
    let token = TestKey::rsa_a().token(Algorithm::RS256, &bad);
    assert_eq!(check(&token).unwrap_err(), TokenError::InvalidClaim("exp"));
}

#[test]
fn rejects_nbf_and_iat_of_the_wrong_type() {
    for claim in ["nbf", "iat"] {
        let mut bad = claims();
        bad[claim] = json!(true);
        let token = TestKey::rsa_a().token(Algorithm::RS256, &bad);
        assert_eq!(code(&token), "invalid_claim", "{claim}");
    }
}

#[test]
fn rejects_a_correct_signature_over_a_token_from_another_issuer() {
    let mut foreign = claims();
    foreign["iss"] = json!("https://other-idp.example.com");
    let token = TestKey::rsa_a().token(Algorithm::RS256, &foreign);
    assert_eq!(
        check(&token).unwrap_err(),
        TokenError::UntrustedIssuer {
            issuer: Some("https://other-idp.example.com".to_owned())
        }
    );
    let mut anonymous = claims();
    anonymous.as_object_mut().unwrap().remove("iss");
    let token = TestKey::rsa_a().token(Algorithm::RS256, &anonymous);
    assert_eq!(
        check(&token).unwrap_err(),
        TokenError::UntrustedIssuer { issuer: None }
    );
}

#[test]
fn picks_the_issuer_named_by_iss_among_several() {
    let other = TrustedIssuer {
        issuer: "https://other.example.com".to_owned(),
        keys: KeySet::from_value(&jwks(&[&TestKey::rsa_b()]))
            .unwrap()
            .keys,
        max_token_lifetime_seconds: None,
    };
    let main = issuer();
    let mut other_claims = claims();
    other_claims["iss"] = json!("https://other.example.com");
    let token = TestKey::rsa_b().token(Algorithm::RS256, &other_claims);
    let verified = verify(&token, &rules(), &[&main, &other], &PureRustVerifier, NOW).unwrap();
    assert_eq!(verified.issuer_index, 1);
    // The other issuer's key does not vouch for the main issuer.
    let token = TestKey::rsa_b().token(Algorithm::RS256, &claims());
    let err = verify(&token, &rules(), &[&main, &other], &PureRustVerifier, NOW).unwrap_err();
    assert_eq!(err.code(), "unknown_kid");
}

#[test]
fn rejects_a_forged_signature() {
    // The attacker signs with their own key under the real key's kid.
    let forged = TestKey::rsa_b()
        .with_kid("rsa-a")
        .token(Algorithm::RS256, &claims());
    assert_eq!(check(&forged).unwrap_err(), TokenError::BadSignature);
    // And a valid signature moved onto other claims.
    let good = TestKey::rsa_a().token(Algorithm::RS256, &claims());
    let mut other = claims();
    other["client_id"] = json!("admin");
    let tampered_payload = b64(other.to_string().as_bytes());
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = format!("{}.{tampered_payload}.{}", parts[0], parts[2]);
    assert_eq!(check(&tampered).unwrap_err(), TokenError::BadSignature);
}

#[test]
fn rejects_algorithms_outside_the_allow_list_and_unknown_ones() {
    let token = TestKey::rsa_a().token(Algorithm::RS384, &claims());
    assert_eq!(
        check(&token).unwrap_err(),
        TokenError::AlgNotAllowed("RS384".to_owned())
    );
    let token = raw(r#"{"alg":"XS256"}"#, &claims().to_string(), b"sig");
    assert_eq!(
        check(&token).unwrap_err(),
        TokenError::AlgNotAllowed("XS256".to_owned())
    );
}

#[test]
fn expiry_is_required_by_default_and_can_be_waived() {
    let mut no_exp = claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    let token = TestKey::rsa_a().token(Algorithm::RS256, &no_exp);
    assert_eq!(check(&token).unwrap_err(), TokenError::MissingExp);
    let mut lenient = rules();
    lenient.require_exp = false;
    let verified = check_with(&token, &lenient, &issuer()).unwrap();
    assert_eq!(verified.expires_at, None);
}

#[test]
fn expiry_honours_the_clock_skew() {
    let rsa = TestKey::rsa_a();
    let at = |exp: i64| {
        let mut c = claims();
        c["exp"] = json!(exp);
        rsa.token(Algorithm::RS256, &c)
    };
    assert!(check(&at(NOW - 59)).is_ok());
    assert_eq!(check(&at(NOW - 60)).unwrap_err(), TokenError::Expired);
    assert_eq!(check(&at(NOW - 3600)).unwrap_err(), TokenError::Expired);
    let mut strict = rules();
    strict.clock_skew_seconds = 0;
    assert_eq!(
        check_with(&at(NOW), &strict, &issuer()).unwrap_err(),
        TokenError::Expired
    );
    assert!(check_with(&at(NOW + 1), &strict, &issuer()).is_ok());
}

#[test]
fn fractional_numeric_dates_are_accepted() {
    let mut c = claims();
    c["exp"] = json!((NOW + 10) as f64 + 0.5);
    c["iat"] = json!((NOW - 10) as f64 + 0.25);
    let verified = check(&TestKey::rsa_a().token(Algorithm::RS256, &c)).unwrap();
    assert_eq!(verified.expires_at, Some(NOW + 10));
}

#[test]
fn not_before_and_issued_at_honour_the_clock_skew() {
    let rsa = TestKey::rsa_a();
    let with_claim = |name: &str, value: i64| {
        let mut c = claims();
        c[name] = json!(value);
        rsa.token(Algorithm::RS256, &c)
    };
    assert!(check(&with_claim("nbf", NOW + 60)).is_ok());
    assert_eq!(
        check(&with_claim("nbf", NOW + 61)).unwrap_err(),
        TokenError::NotYetValid
    );
    assert!(check(&with_claim("iat", NOW + 60)).is_ok());
    assert_eq!(
        check(&with_claim("iat", NOW + 61)).unwrap_err(),
        TokenError::IssuedInFuture
    );
}

#[test]
fn an_issuer_that_bounds_token_lifetimes_refuses_longer_tokens_and_tokens_without_iat_or_exp() {
    let rsa = TestKey::rsa_a();
    let mut bounded = issuer();
    bounded.max_token_lifetime_seconds = Some(3600);
    let token = |iat: Option<i64>, exp: Option<i64>| {
        let mut c = claims();
        let object = c.as_object_mut().unwrap();
        object.remove("iat");
        object.remove("exp");
        if let Some(iat) = iat {
            c["iat"] = json!(iat);
        }
        if let Some(exp) = exp {
            c["exp"] = json!(exp);
        }
        rsa.token(Algorithm::RS256, &c)
    };
    let mut no_exp_required = rules();
    no_exp_required.require_exp = false;
    let at = |iat, exp| check_with(&token(iat, exp), &no_exp_required, &bounded);
    // Exactly the bound passes; one second more does not, however close expiry is.
    assert!(at(Some(NOW - 3000), Some(NOW + 600)).is_ok());
    assert_eq!(
        at(Some(NOW - 3001), Some(NOW + 600)).unwrap_err(),
        TokenError::LifetimeTooLong {
            lifetime: 3601,
            max: 3600
        }
    );
    assert_eq!(
        at(Some(NOW - 10), Some(NOW + 86_400)).unwrap_err().code(),
        "token_lifetime_too_long"
    );
    // The bound needs both times, even where the API lets tokens go without `exp`.
    assert_eq!(
        at(None, Some(NOW + 60)).unwrap_err(),
        TokenError::MissingIat
    );
    assert_eq!(
        at(Some(NOW - 10), None).unwrap_err(),
        TokenError::MissingExp
    );
    // Without the bound, the same tokens pass as before.
    let unbounded = issuer();
    assert!(
        check_with(
            &token(None, Some(NOW + 86_400)),
            &no_exp_required,
            &unbounded
        )
        .is_ok()
    );
    assert!(check_with(&token(Some(NOW - 10), None), &no_exp_required, &unbounded).is_ok());
}

#[test]
fn audience_is_checked_when_configured_as_string_or_array() {
    let rsa = TestKey::rsa_a();
    let mut with_aud = rules();
    with_aud.audiences = vec!["orders".to_owned(), "payments".to_owned()];
    let token_with = |aud: Value| {
        let mut c = claims();
        c["aud"] = aud;
        rsa.token(Algorithm::RS256, &c)
    };
    let issuer = issuer();
    assert!(check_with(&token_with(json!("orders")), &with_aud, &issuer).is_ok());
    assert!(check_with(&token_with(json!(["x", "payments"])), &with_aud, &issuer).is_ok());
    assert_eq!(
        check_with(&token_with(json!("billing")), &with_aud, &issuer).unwrap_err(),
        TokenError::AudienceMismatch
    );
    assert_eq!(
        check_with(&token_with(json!([])), &with_aud, &issuer).unwrap_err(),
        TokenError::AudienceMismatch
    );
    assert_eq!(
        check_with(&token_with(json!(7)), &with_aud, &issuer).unwrap_err(),
        TokenError::InvalidClaim("aud")
    );
    let no_aud = rsa.token(Algorithm::RS256, &claims());
    assert_eq!(
        check_with(&no_aud, &with_aud, &issuer).unwrap_err(),
        TokenError::AudienceMismatch
    );
    // Without configured audiences, aud is not looked at.
    assert!(check(&token_with(json!("anything"))).is_ok());
}

#[test]
fn typ_is_checked_when_configured() {
    let rsa = TestKey::rsa_a();
    let mut at_jwt = rules();
    at_jwt.expected_typ = Some("at+jwt".to_owned());
    let with_typ = |typ: Option<&str>| {
        let mut header = json!({"alg": "RS256", "kid": "rsa-a"});
        if let Some(typ) = typ {
            header["typ"] = json!(typ);
        }
        signed(&rsa, Algorithm::RS256, header, claims())
    };
    let issuer = issuer();
    assert!(check_with(&with_typ(Some("at+jwt")), &at_jwt, &issuer).is_ok());
    assert!(check_with(&with_typ(Some("application/AT+JWT")), &at_jwt, &issuer).is_ok());
    assert_eq!(
        check_with(&with_typ(Some("JWT")), &at_jwt, &issuer).unwrap_err(),
        TokenError::TypeMismatch {
            expected: "at+jwt".to_owned(),
            found: "JWT".to_owned()
        }
    );
    assert_eq!(
        check_with(&with_typ(None), &at_jwt, &issuer)
            .unwrap_err()
            .code(),
        "invalid_type"
    );
}

#[test]
fn claims_read_strings_and_string_lists() {
    let claims = Claims(
        json!({"one": "a", "many": ["b", 3, "c"], "num": 5})
            .as_object()
            .unwrap()
            .clone(),
    );
    assert_eq!(claims.strings("one").collect::<Vec<_>>(), ["a"]);
    assert_eq!(claims.strings("many").collect::<Vec<_>>(), ["b", "c"]);
    assert_eq!(claims.strings("num").count(), 0);
    assert_eq!(claims.strings("absent").count(), 0);
    assert_eq!(claims.str("many"), None);
}

#[test]
fn every_error_has_a_distinct_stable_code() {
    let errors = [
        TokenError::TooLarge { len: 1, max: 0 },
        TokenError::Malformed { parts: 2 },
        TokenError::BadBase64(TokenPart::Header),
        TokenError::InvalidHeader(String::new()),
        TokenError::InvalidPayload,
        TokenError::AlgNone,
        TokenError::AlgNotAllowed(String::new()),
        TokenError::ForbiddenHeader("jku"),
        TokenError::UnsupportedCrit(String::new()),
        TokenError::TypeMismatch {
            expected: String::new(),
            found: String::new(),
        },
        TokenError::UntrustedIssuer { issuer: None },
        TokenError::UnknownKid {
            kid: String::new(),
            issuer_index: 0,
        },
        TokenError::KeyMismatch {
            kid: String::new(),
            alg: Algorithm::RS256,
        },
        TokenError::NoMatchingKey(Algorithm::RS256),
        TokenError::AmbiguousKey { candidates: 2 },
        TokenError::BadSignature,
        TokenError::InvalidClaim("exp"),
        TokenError::MissingExp,
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::IssuedInFuture,
        TokenError::MissingIat,
        TokenError::LifetimeTooLong {
            lifetime: 2,
            max: 1,
        },
        TokenError::AudienceMismatch,
    ];
    let mut codes: Vec<_> = errors.iter().map(TokenError::code).collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), errors.len());
}

#[test]
fn every_hostile_token_class_is_refused_with_its_code() {
    let issuer = issuer_with(&[&TestKey::rsa_a(), &TestKey::p256_a(), &TestKey::p256_b()]);
    let mut rules = rules();
    rules.allowed_algorithms = [Algorithm::RS256, Algorithm::ES256].into_iter().collect();
    let now = u64::try_from(NOW).unwrap();
    for hostile in crate::testing::hostile_tokens(ISSUER, now) {
        let err = verify(&hostile.token, &rules, &[&issuer], &PureRustVerifier, NOW).unwrap_err();
        assert_eq!(err.code(), hostile.code, "{}: {err}", hostile.class);
    }
}

// Thumbprints of the committed certificates, as OpenSSL computes them
// (`testdata/keys/generate.sh` prints them): SHA-1 and SHA-256 of the DER, base64url.
const RSA_A_X5T: &str = "C31HeZXVpmJ45D69Le36tQdsWe4";
const RSA_A_X5T_S256: &str = "Gq2ii03nhRppLrfIK2VM7X_5bOW51tAFGbN1xV9VU2E";
const RSA_B_X5T: &str = "r6isxvvcPXMSfx3kRsNyx1nWIhE";
const RSA_B_X5T_S256: &str = "J0fO6brBUeILPacjR-e18dHtYlM_P0A-pZJ9g35SK_s";

/// The key's JWK as ADFS or Azure AD publish it: `x5c` with the certificate, and the
/// thumbprints as members.
fn jwk_with_certificate(key: &TestKey, der: &[u8], x5t: &str, x5t_s256: &str) -> Value {
    use base64::engine::general_purpose::STANDARD;
    let mut jwk = key.public_jwk();
    jwk["x5c"] = json!([STANDARD.encode(der)]);
    jwk["x5t"] = json!(x5t);
    jwk["x5t#S256"] = json!(x5t_s256);
    jwk
}

/// Two RS256 keys, each with its certificate and thumbprints.
fn issuer_with_certificates() -> TrustedIssuer {
    use crate::testing::{RSA_A_CERT, RSA_B_CERT};
    let a = jwk_with_certificate(&TestKey::rsa_a(), RSA_A_CERT, RSA_A_X5T, RSA_A_X5T_S256);
    let b = jwk_with_certificate(&TestKey::rsa_b(), RSA_B_CERT, RSA_B_X5T, RSA_B_X5T_S256);
    let set = KeySet::from_value(&json!({"keys": [a, b]})).unwrap();
    assert!(set.skipped.is_empty(), "{:?}", set.skipped);
    TrustedIssuer {
        issuer: ISSUER.to_owned(),
        keys: set.keys,
        max_token_lifetime_seconds: None,
    }
}

fn rsa_b_token(header: Value) -> String {
    signed(&TestKey::rsa_b(), Algorithm::RS256, header, claims())
}

#[test]
fn selects_the_key_named_by_x5t_when_the_token_has_no_kid() {
    let issuer = issuer_with_certificates();
    let token = rsa_b_token(json!({"alg": "RS256", "x5t": RSA_B_X5T}));
    let verified = check_with(&token, &rules(), &issuer).unwrap();
    assert_eq!(verified.kid, None);
}

#[test]
fn selects_the_key_named_by_x5t_s256_before_x5t() {
    let issuer = issuer_with_certificates();
    let token = rsa_b_token(json!({"alg": "RS256", "x5t#S256": RSA_B_X5T_S256}));
    assert!(check_with(&token, &rules(), &issuer).is_ok());
    // `x5t#S256` wins over a contradicting `x5t`: key b verifies, so b was chosen.
    let token = rsa_b_token(json!({"alg": "RS256", "x5t#S256": RSA_B_X5T_S256, "x5t": RSA_A_X5T}));
    assert!(check_with(&token, &rules(), &issuer).is_ok());
    // And `kid` wins over both.
    let token = rsa_b_token(json!({"alg": "RS256", "kid": "rsa-b", "x5t#S256": RSA_A_X5T_S256}));
    assert!(check_with(&token, &rules(), &issuer).is_ok());
}

#[test]
fn without_any_key_name_two_keys_for_the_algorithm_are_ambiguous() {
    let issuer = issuer_with_certificates();
    let token = rsa_b_token(json!({"alg": "RS256"}));
    assert_eq!(
        check_with(&token, &rules(), &issuer).unwrap_err(),
        TokenError::AmbiguousKey { candidates: 2 }
    );
}

#[test]
fn a_thumbprint_naming_no_key_is_an_unknown_kid_with_the_thumbprint() {
    let issuer = issuer_with(&[&TestKey::rsa_a(), &TestKey::rsa_b()]);
    let token = rsa_b_token(json!({"alg": "RS256", "x5t": RSA_B_X5T}));
    assert_eq!(
        check_with(&token, &rules(), &issuer).unwrap_err(),
        TokenError::UnknownKid {
            kid: format!("x5t:{RSA_B_X5T}"),
            issuer_index: 0
        }
    );
    let token = rsa_b_token(json!({"alg": "RS256", "x5t#S256": RSA_B_X5T_S256}));
    assert_eq!(
        check_with(&token, &rules(), &issuer).unwrap_err(),
        TokenError::UnknownKid {
            kid: format!("x5t#S256:{RSA_B_X5T_S256}"),
            issuer_index: 0
        }
    );
}

#[test]
fn the_unknown_thumbprint_reads_back_as_the_same_key_name() {
    let issuer = issuer_with_certificates();
    let name = KeyName::from_text(&format!("x5t#S256:{RSA_B_X5T_S256}"));
    assert!(issuer.keys[1].is_named(&name));
    assert!(!issuer.keys[0].is_named(&name));
    assert!(issuer.keys[0].is_named(&KeyName::from_text(&format!("x5t:{RSA_A_X5T}"))));
    assert_eq!(
        KeyName::from_text("x5t:short"),
        KeyName::Kid("x5t:short".to_owned())
    );
    assert_eq!(
        KeyName::from_text("rsa-a"),
        KeyName::Kid("rsa-a".to_owned())
    );
}

#[test]
fn a_thumbprint_of_the_wrong_length_is_an_invalid_header() {
    let issuer = issuer_with_certificates();
    for header in [
        json!({"alg": "RS256", "x5t": RSA_B_X5T_S256}),
        json!({"alg": "RS256", "x5t#S256": RSA_B_X5T}),
        json!({"alg": "RS256", "x5t": "not base64url!"}),
    ] {
        let token = rsa_b_token(header.clone());
        assert_eq!(
            check_with(&token, &rules(), &issuer).unwrap_err().code(),
            "invalid_header",
            "{header}"
        );
    }
}

#[test]
fn a_thumbprint_naming_a_key_that_did_not_sign_is_a_bad_signature() {
    let issuer = issuer_with_certificates();
    let token = rsa_b_token(json!({"alg": "RS256", "x5t": RSA_A_X5T}));
    assert_eq!(
        check_with(&token, &rules(), &issuer).unwrap_err(),
        TokenError::BadSignature
    );
}
