//! JWK and JWKS parsing into verifying keys (RFC 7517, RFC 7518 §6, RFC 8037).
//!
//! A key set is parsed key by key: a key Portico cannot use is skipped with its reason and never
//! makes the whole set fail, because real IdPs publish such keys next to good ones. Shared
//! secrets (HMAC) never come from a JWKS; they come from configuration through
//! [`VerifyingKey::hmac`].
//!
//! A key carries its certificate thumbprints (RFC 7517 §4.8–4.9): the `x5t` (SHA-1) and
//! `x5t#S256` (SHA-256) members, and, when the key has an `x5c` chain, the same digests of the
//! first certificate's DER. A member that disagrees with the certificate makes the key unusable
//! ([`JwkError::ThumbprintMismatch`]): one of the two is wrong, and a token naming the key by
//! thumbprint could otherwise select the wrong key. Tokens may name a key by thumbprint instead
//! of `kid` (RFC 7515 §4.1.7–4.1.8), see [`KeyName`].

use std::fmt;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use rsa::pkcs8::EncodePublicKey as _;
use serde_json::{Map, Value};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use crate::alg::{Algorithm, KeyFamily};

/// The smallest RSA modulus Portico accepts, in bits (NIST SP 800-131A).
pub const MIN_RSA_BITS: usize = 2048;
/// The largest RSA modulus Portico accepts, in bits; larger keys only cost time.
pub const MAX_RSA_BITS: usize = 8192;

/// Base64url for key members: the RFC says unpadded, but a padded member from an IdP's key set
/// is harmless, so both are read. Tokens use the strict engine in [`crate::token`].
const KEY_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Base64 (not base64url) for `x5c` certificates (RFC 7517 §4.7), padding optional.
const CERT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why one key of a set cannot be used; the key is skipped, the rest of the set still counts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    /// The entry in `keys` is not a JSON object.
    #[error("key is not a JSON object")]
    NotAnObject,
    /// A required member is absent.
    #[error("missing member `{0}`")]
    MissingMember(&'static str),
    /// A member has the wrong JSON type.
    #[error("member `{0}` has the wrong type")]
    WrongType(&'static str),
    /// A member is not valid base64url.
    #[error("member `{0}` is not valid base64url")]
    BadBase64(&'static str),
    /// The key type is not one Portico verifies with.
    #[error("unsupported key type `{0}`")]
    UnsupportedKeyType(String),
    /// The curve is not one Portico verifies with.
    #[error("unsupported curve `{0}`")]
    UnsupportedCurve(String),
    /// `use` says the key is not for signatures.
    #[error("key is for `{0}`, not for signatures")]
    NotForSignatures(String),
    /// `key_ops` is present and does not include `verify`.
    #[error("key_ops does not allow `verify`")]
    VerifyNotAllowed,
    /// `alg` names an algorithm Portico does not accept (or `none`).
    #[error("unsupported algorithm `{0}`")]
    UnsupportedAlgorithm(String),
    /// `alg` names an algorithm of another key type or curve.
    #[error("algorithm `{alg}` does not fit this key")]
    AlgorithmMismatch {
        /// The algorithm the key declared.
        alg: Algorithm,
    },
    /// An EC coordinate has a length other than the curve's (or that plus one leading zero).
    #[error("coordinate `{member}` is {len} bytes, expected {expected}")]
    BadCoordinateLength {
        /// `x` or `y`.
        member: &'static str,
        /// The decoded length.
        len: usize,
        /// The curve's coordinate length.
        expected: usize,
    },
    /// The RSA modulus is too small to be safe.
    #[error("RSA modulus of {bits} bits is under the minimum of {MIN_RSA_BITS}")]
    RsaModulusTooSmall {
        /// The modulus size.
        bits: usize,
    },
    /// The RSA modulus is larger than Portico verifies.
    #[error("RSA modulus of {bits} bits is over the maximum of {MAX_RSA_BITS}")]
    RsaModulusTooLarge {
        /// The modulus size.
        bits: usize,
    },
    /// The key's numbers do not form a valid public key (point off the curve, even modulus…).
    #[error("invalid key material: {0}")]
    InvalidKey(&'static str),
    /// A thumbprint member differs from the digest of the first `x5c` certificate.
    #[error("member `{0}` does not match the first `x5c` certificate")]
    ThumbprintMismatch(&'static str),
    /// A symmetric key was published in a key set; HMAC secrets come only from configuration.
    #[error("symmetric (`oct`) keys are never taken from a key set")]
    SymmetricKeyInSet,
    /// A configured HMAC secret is shorter than the algorithm's digest.
    #[error("HMAC secret of {len} bytes is shorter than the {min} bytes {alg} needs")]
    HmacSecretTooShort {
        /// The secret's length.
        len: usize,
        /// The minimum length.
        min: usize,
        /// The algorithm.
        alg: Algorithm,
    },
}

/// Why a key set document as a whole cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// The document is not JSON.
    #[error("key set is not valid JSON: {0}")]
    Json(String),
    /// The document is not an object with a `keys` array.
    #[error("key set has no `keys` array")]
    NoKeysArray,
}

/// A key that verifies signatures, with its `kid`, its certificate thumbprints and optional
/// `alg` restriction.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: Option<Box<str>>,
    thumbprints: Thumbprints,
    alg: Option<Algorithm>,
    material: KeyMaterial,
}

/// The certificate thumbprints of a key, when it has any (RFC 7517 §4.8–4.9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Thumbprints {
    /// SHA-1 of the certificate's DER (`x5t`).
    sha1: Option<[u8; 20]>,
    /// SHA-256 of the certificate's DER (`x5t#S256`).
    sha256: Option<[u8; 32]>,
}

/// How a token names the key that signed it (RFC 7515 §4.1.4, §4.1.7, §4.1.8).
///
/// A name also travels as text, in the `kid` of [`crate::token::TokenError::UnknownKid`] and in
/// the filter's unknown-key report to the control plane ([`KeyName::to_text`],
/// [`KeyName::from_text`]): a `kid` as it is, a thumbprint as `x5t#S256:<base64url>` or
/// `x5t:<base64url>` (unpadded). A `kid` that itself starts with one of those prefixes reads
/// as a thumbprint; such a report at worst refreshes a key set once more than needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyName {
    /// The `kid` header parameter.
    Kid(String),
    /// The `x5t#S256` header parameter, decoded: SHA-256 of the certificate's DER.
    X5tS256([u8; 32]),
    /// The `x5t` header parameter, decoded: SHA-1 of the certificate's DER.
    X5t([u8; 20]),
}

const X5T_S256_PREFIX: &str = "x5t#S256:";
const X5T_PREFIX: &str = "x5t:";

// === impl KeyName ===

impl KeyName {
    /// The name as text (see the type's docs).
    pub fn to_text(&self) -> String {
        match self {
            KeyName::Kid(kid) => kid.clone(),
            KeyName::X5tS256(digest) => {
                format!("{X5T_S256_PREFIX}{}", URL_SAFE_NO_PAD.encode(digest))
            }
            KeyName::X5t(digest) => format!("{X5T_PREFIX}{}", URL_SAFE_NO_PAD.encode(digest)),
        }
    }

    /// Reads a name written by [`KeyName::to_text`]; text that is not a well-formed thumbprint
    /// is a `kid`.
    pub fn from_text(text: &str) -> KeyName {
        let thumbprint = if let Some(encoded) = text.strip_prefix(X5T_S256_PREFIX) {
            decode_thumbprint(encoded).map(KeyName::X5tS256)
        } else if let Some(encoded) = text.strip_prefix(X5T_PREFIX) {
            decode_thumbprint(encoded).map(KeyName::X5t)
        } else {
            None
        };
        thumbprint.unwrap_or_else(|| KeyName::Kid(text.to_owned()))
    }
}

/// A base64url thumbprint (padding tolerated) of exactly `N` bytes.
pub(crate) fn decode_thumbprint<const N: usize>(encoded: &str) -> Option<[u8; N]> {
    KEY_BASE64.decode(encoded).ok()?.try_into().ok()
}

/// The public key itself, in the form each verifier needs.
#[derive(Clone)]
pub(crate) enum KeyMaterial {
    Rsa {
        key: rsa::PublicKey,
        spki_der: Box<[u8]>,
    },
    P256 {
        key: p256::ecdsa::VerifyingKey,
        spki_der: Box<[u8]>,
    },
    P384 {
        key: p384::ecdsa::VerifyingKey,
        spki_der: Box<[u8]>,
    },
    Ed25519(ed25519_dalek::VerifyingKey),
    Hmac(Box<[u8]>),
}

/// A key that was skipped, with enough to identify it in logs and the admin API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedKey {
    /// The key's position in the `keys` array.
    pub index: usize,
    /// The key's `kid`, when it has a readable one.
    pub kid: Option<String>,
    /// Why it was skipped.
    pub reason: JwkError,
}

/// The usable keys of a key set, and the skipped ones with their reasons.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    /// Keys that verify signatures.
    pub keys: Vec<VerifyingKey>,
    /// Keys that were left out, each with its reason.
    pub skipped: Vec<SkippedKey>,
}

// === impl KeySet ===

impl KeySet {
    /// Parses a JWKS document (`{"keys": [...]}`), keeping every usable key.
    pub fn parse(document: &[u8]) -> Result<KeySet, JwksError> {
        let value: Value =
            serde_json::from_slice(document).map_err(|err| JwksError::Json(err.to_string()))?;
        KeySet::from_value(&value)
    }

    /// Parses an already-decoded JWKS document.
    pub fn from_value(document: &Value) -> Result<KeySet, JwksError> {
        let keys = document
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(JwksError::NoKeysArray)?;
        Ok(KeySet::from_jwks(keys))
    }

    /// Parses each JWK of a `keys` array.
    pub fn from_jwks(jwks: &[Value]) -> KeySet {
        let mut set = KeySet::default();
        for (index, jwk) in jwks.iter().enumerate() {
            match VerifyingKey::from_jwk(jwk) {
                Ok(key) => set.keys.push(key),
                Err(reason) => set.skipped.push(SkippedKey {
                    index,
                    kid: jwk.get("kid").and_then(Value::as_str).map(str::to_owned),
                    reason,
                }),
            }
        }
        set
    }
}

/// Members that only private or symmetric keys carry (RFC 7518 §6.2.2, §6.3.2, §6.4.1; RFC
/// 8037 §2): a JWK Set that Portico keeps, shows or sends to filters never holds them.
pub const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Whether a JWK is public key material only: not an `oct` (symmetric) key and without any
/// of the [`PRIVATE_MEMBERS`].
///
/// # Errors
/// A [`crate::rules::RuleViolation`] naming the key (by `kid` when it has one) and the member.
pub fn public_only(jwk: &Value) -> Result<(), crate::rules::RuleViolation> {
    let Some(object) = jwk.as_object() else {
        return Ok(());
    };
    let name = match object.get("kid").and_then(Value::as_str) {
        Some(kid) => format!("key `{kid}`"),
        None => "this key".to_owned(),
    };
    if object.get("kty").and_then(Value::as_str) == Some("oct") {
        return Err(crate::rules::RuleViolation(format!(
            "{name} is a symmetric (`oct`) key; HMAC secrets are configured as sealed issuer \
             secrets, never in a key set"
        )));
    }
    if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| object.contains_key(**m)) {
        return Err(crate::rules::RuleViolation(format!(
            "{name} carries the private member `{member}`; give the public key only"
        )));
    }
    Ok(())
}

/// The largest JWK an operator may write inline, in bytes of JSON (an RSA 8192-bit key with a
/// certificate chain fits).
pub const MAX_INLINE_JWK_BYTES: usize = 16 * 1024;

/// Whether a JWK written by an operator has the shape of a JWK (RFC 7517 §4): members that
/// are strings, numbers, booleans or arrays of strings (`x5c`, `key_ops`), nothing nested
/// deeper, at most [`MAX_INLINE_JWK_BYTES`] of JSON, and no member that is a private one in
/// another letter case (`D`).
///
/// # Errors
/// A [`crate::rules::RuleViolation`] naming the member.
pub fn plain_shape(jwk: &Value) -> Result<(), crate::rules::RuleViolation> {
    let violation = |message: String| Err(crate::rules::RuleViolation(message));
    let Some(object) = jwk.as_object() else {
        return violation("a key must be a JSON object".to_owned());
    };
    if serde_json::to_string(jwk).map_or(usize::MAX, |text| text.len()) > MAX_INLINE_JWK_BYTES {
        return violation(format!(
            "a key is at most {MAX_INLINE_JWK_BYTES} bytes of JSON"
        ));
    }
    for (name, value) in object {
        let plain = match value {
            Value::Array(items) => items.iter().all(Value::is_string),
            Value::Object(_) => false,
            _ => true,
        };
        if !plain {
            return violation(format!(
                "member `{name}` is not a string, a number or a list of strings"
            ));
        }
        let lower = name.to_ascii_lowercase();
        if lower != *name && PRIVATE_MEMBERS.contains(&lower.as_str()) {
            return violation(format!(
                "member `{name}` looks like the private member `{lower}`; give the public key only"
            ));
        }
    }
    Ok(())
}

// === impl VerifyingKey ===

impl VerifyingKey {
    /// Parses one JWK (RFC 7517 §4) into a verifying key.
    pub fn from_jwk(jwk: &Value) -> Result<VerifyingKey, JwkError> {
        let jwk = jwk.as_object().ok_or(JwkError::NotAnObject)?;
        let kid = optional_str(jwk, "kid")?.map(Box::from);
        if let Some(usage) = optional_str(jwk, "use")?
            && usage != "sig"
        {
            return Err(JwkError::NotForSignatures(usage.to_owned()));
        }
        if let Some(ops) = jwk.get("key_ops") {
            let ops = ops.as_array().ok_or(JwkError::WrongType("key_ops"))?;
            if !ops.iter().any(|op| op.as_str() == Some("verify")) {
                return Err(JwkError::VerifyNotAllowed);
            }
        }
        let alg = match optional_str(jwk, "alg")? {
            None => None,
            Some(name) => Some(
                Algorithm::from_name(name)
                    .ok_or_else(|| JwkError::UnsupportedAlgorithm(name.to_owned()))?,
            ),
        };
        let material = match required_str(jwk, "kty")? {
            "RSA" => rsa_material(jwk)?,
            "EC" => ec_material(jwk)?,
            "OKP" => okp_material(jwk)?,
            "oct" => return Err(JwkError::SymmetricKeyInSet),
            other => return Err(JwkError::UnsupportedKeyType(other.to_owned())),
        };
        let thumbprints = thumbprints(jwk)?;
        let key = VerifyingKey {
            kid,
            thumbprints,
            alg,
            material,
        };
        if let Some(alg) = alg
            && alg.family() != key.family()
        {
            return Err(JwkError::AlgorithmMismatch { alg });
        }
        Ok(key)
    }

    /// A shared-secret key from configuration (never from a key set). With `alg` set the key
    /// verifies only that algorithm; the secret must be at least as long as the digest.
    pub fn hmac(
        kid: Option<String>,
        alg: Option<Algorithm>,
        secret: Vec<u8>,
    ) -> Result<VerifyingKey, JwkError> {
        let algs: Vec<Algorithm> = match alg {
            Some(alg) if alg.family() != KeyFamily::Hmac => {
                return Err(JwkError::AlgorithmMismatch { alg });
            }
            Some(alg) => vec![alg],
            None => vec![Algorithm::HS256],
        };
        for alg in algs {
            let min = alg.digest().map_or(0, |digest| digest.output_len());
            if secret.len() < min {
                return Err(JwkError::HmacSecretTooShort {
                    len: secret.len(),
                    min,
                    alg,
                });
            }
        }
        Ok(VerifyingKey {
            kid: kid.map(Box::from),
            thumbprints: Thumbprints::default(),
            alg,
            material: KeyMaterial::Hmac(secret.into_boxed_slice()),
        })
    }

    /// The key id (`kid`), if the key has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Whether `name` names this key: its `kid`, or one of its certificate thumbprints.
    pub fn is_named(&self, name: &KeyName) -> bool {
        match name {
            KeyName::Kid(kid) => self.kid() == Some(kid.as_str()),
            KeyName::X5tS256(digest) => self.thumbprints.sha256.as_ref() == Some(digest),
            KeyName::X5t(digest) => self.thumbprints.sha1.as_ref() == Some(digest),
        }
    }

    /// The algorithm the key is restricted to (its `alg` member), if any.
    pub fn alg(&self) -> Option<Algorithm> {
        self.alg
    }

    /// The family of algorithms this key can verify.
    pub fn family(&self) -> KeyFamily {
        match &self.material {
            KeyMaterial::Rsa { .. } => KeyFamily::Rsa,
            KeyMaterial::P256 { .. } => KeyFamily::P256,
            KeyMaterial::P384 { .. } => KeyFamily::P384,
            KeyMaterial::Ed25519(_) => KeyFamily::Ed25519,
            KeyMaterial::Hmac(_) => KeyFamily::Hmac,
        }
    }

    /// Whether this key may verify a signature made with `alg`: same family, and the key's own
    /// `alg` restriction (if any) names it. HMAC secrets also need to be long enough for it.
    pub fn supports(&self, alg: Algorithm) -> bool {
        if self.family() != alg.family() || self.alg.is_some_and(|own| own != alg) {
            return false;
        }
        match &self.material {
            KeyMaterial::Hmac(secret) => alg
                .digest()
                .is_some_and(|digest| secret.len() >= digest.output_len()),
            _ => true,
        }
    }

    /// The DER SubjectPublicKeyInfo of an RSA or EC key, as host crypto expects it.
    pub fn spki_der(&self) -> Option<&[u8]> {
        match &self.material {
            KeyMaterial::Rsa { spki_der, .. }
            | KeyMaterial::P256 { spki_der, .. }
            | KeyMaterial::P384 { spki_der, .. } => Some(spki_der),
            KeyMaterial::Ed25519(_) | KeyMaterial::Hmac(_) => None,
        }
    }

    pub(crate) fn material(&self) -> &KeyMaterial {
        &self.material
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field(
                "x5t",
                &self.thumbprints.sha1.map(|d| URL_SAFE_NO_PAD.encode(d)),
            )
            .field(
                "x5t#S256",
                &self.thumbprints.sha256.map(|d| URL_SAFE_NO_PAD.encode(d)),
            )
            .field("alg", &self.alg)
            .field("family", &self.family())
            .finish_non_exhaustive()
    }
}

/// The key's thumbprints: from its `x5t` and `x5t#S256` members and from the first certificate
/// of its `x5c` chain (standard base64 of DER, RFC 7517 §4.7), which must agree when both are
/// there. The certificate itself is not parsed: it only names the key, whose material comes
/// from the other members, so a certificate for another key cannot make a signature verify.
fn thumbprints(jwk: &Map<String, Value>) -> Result<Thumbprints, JwkError> {
    let from_members = Thumbprints {
        sha1: thumbprint_member::<20>(jwk, "x5t")?,
        sha256: thumbprint_member::<32>(jwk, "x5t#S256")?,
    };
    let Some(chain) = jwk.get("x5c") else {
        return Ok(from_members);
    };
    let first = chain
        .as_array()
        .ok_or(JwkError::WrongType("x5c"))?
        .first()
        .ok_or(JwkError::MissingMember("x5c"))?
        .as_str()
        .ok_or(JwkError::WrongType("x5c"))?;
    let der = CERT_BASE64
        .decode(first)
        .map_err(|_| JwkError::BadBase64("x5c"))?;
    let computed = Thumbprints {
        sha1: Some(Sha1::digest(&der).into()),
        sha256: Some(Sha256::digest(&der).into()),
    };
    if from_members
        .sha1
        .is_some_and(|member| Some(member) != computed.sha1)
    {
        return Err(JwkError::ThumbprintMismatch("x5t"));
    }
    if from_members
        .sha256
        .is_some_and(|member| Some(member) != computed.sha256)
    {
        return Err(JwkError::ThumbprintMismatch("x5t#S256"));
    }
    Ok(computed)
}

/// A thumbprint member's digest of `N` bytes; `None` when it is absent or not base64url of `N`
/// bytes. Such a member is ignored rather than taken to spoil the key: a thumbprint only names
/// the key, and IdPs publish non-conforming ones (Auth0's `x5t` is base64url of the hex SHA-1
/// text, WSO2's `x5t#S256` of the hex SHA-256), which would otherwise make their whole key set
/// unusable. The key is still named by its `kid` and by the digests of its `x5c` certificate.
fn thumbprint_member<const N: usize>(
    jwk: &Map<String, Value>,
    member: &'static str,
) -> Result<Option<[u8; N]>, JwkError> {
    let Some(encoded) = optional_str(jwk, member)? else {
        return Ok(None);
    };
    Ok(KEY_BASE64
        .decode(encoded)
        .ok()
        .and_then(|bytes| bytes.try_into().ok()))
}

fn rsa_material(jwk: &Map<String, Value>) -> Result<KeyMaterial, JwkError> {
    let n = base64_member(jwk, "n")?;
    let e = base64_member(jwk, "e")?;
    let n = strip_leading_zeros(&n);
    let e = strip_leading_zeros(&e);
    let bits = bit_length(n);
    if bits < MIN_RSA_BITS {
        return Err(JwkError::RsaModulusTooSmall { bits });
    }
    if bits > MAX_RSA_BITS {
        return Err(JwkError::RsaModulusTooLarge { bits });
    }
    if e.is_empty() || e.len() > 8 {
        return Err(JwkError::InvalidKey("RSA exponent out of range"));
    }
    let n = rsa::BoxedUint::from_be_slice_vartime(n);
    let e = rsa::BoxedUint::from_be_slice_vartime(e);
    let key = rsa::PublicKey::new_with_size_limits(n, e, MIN_RSA_BITS..=MAX_RSA_BITS)
        .map_err(|_| JwkError::InvalidKey("RSA modulus or exponent rejected"))?;
    let spki_der = key
        .to_public_key_der()
        .map_err(|_| JwkError::InvalidKey("RSA key cannot be DER-encoded"))?
        .into_vec()
        .into_boxed_slice();
    Ok(KeyMaterial::Rsa { key, spki_der })
}

fn ec_material(jwk: &Map<String, Value>) -> Result<KeyMaterial, JwkError> {
    let curve = required_str(jwk, "crv")?;
    let coordinate_len = match curve {
        "P-256" => 32,
        "P-384" => 48,
        other => return Err(JwkError::UnsupportedCurve(other.to_owned())),
    };
    let x = base64_member(jwk, "x")?;
    let y = base64_member(jwk, "y")?;
    let mut point = Vec::with_capacity(1 + 2 * coordinate_len);
    point.push(0x04);
    push_coordinate(&mut point, "x", &x, coordinate_len)?;
    push_coordinate(&mut point, "y", &y, coordinate_len)?;
    if curve == "P-256" {
        let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
            .map_err(|_| JwkError::InvalidKey("point is not on P-256"))?;
        let spki_der = key
            .to_public_key_der()
            .map_err(|_| JwkError::InvalidKey("P-256 key cannot be DER-encoded"))?
            .into_vec()
            .into_boxed_slice();
        Ok(KeyMaterial::P256 { key, spki_der })
    } else {
        let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(&point)
            .map_err(|_| JwkError::InvalidKey("point is not on P-384"))?;
        let spki_der = key
            .to_public_key_der()
            .map_err(|_| JwkError::InvalidKey("P-384 key cannot be DER-encoded"))?
            .into_vec()
            .into_boxed_slice();
        Ok(KeyMaterial::P384 { key, spki_der })
    }
}

fn okp_material(jwk: &Map<String, Value>) -> Result<KeyMaterial, JwkError> {
    let curve = required_str(jwk, "crv")?;
    if curve != "Ed25519" {
        return Err(JwkError::UnsupportedCurve(curve.to_owned()));
    }
    let x = base64_member(jwk, "x")?;
    let x: [u8; 32] = x
        .as_slice()
        .try_into()
        .map_err(|_| JwkError::BadCoordinateLength {
            member: "x",
            len: x.len(),
            expected: 32,
        })?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&x)
        .map_err(|_| JwkError::InvalidKey("not an Ed25519 point"))?;
    Ok(KeyMaterial::Ed25519(key))
}

/// Appends an EC coordinate of the curve's length (`expected` bytes) to `point`. RFC 7518
/// §6.2.1.2 asks for exactly that length, but big-integer encoders publish other lengths for
/// the same number, and rejecting them would reject an IdP's whole key set: one extra leading
/// zero byte (a sign byte: Gluu's P-256 coordinates of 33 bytes) is removed, and a coordinate
/// whose leading zero bytes were dropped (Keycloak before 21 and jwcrypto, for about one key in
/// 128) is padded back. Either reading is the same number, so the point is unambiguous; any
/// other length is [`JwkError::BadCoordinateLength`].
fn push_coordinate(
    point: &mut Vec<u8>,
    member: &'static str,
    bytes: &[u8],
    expected: usize,
) -> Result<(), JwkError> {
    match bytes {
        [0, rest @ ..] if rest.len() == expected => point.extend_from_slice(rest),
        short if !short.is_empty() && short.len() <= expected => {
            point.resize(point.len() + expected - short.len(), 0);
            point.extend_from_slice(short);
        }
        _ => {
            return Err(JwkError::BadCoordinateLength {
                member,
                len: bytes.len(),
                expected,
            });
        }
    }
    Ok(())
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes
        .iter()
        .position(|byte| *byte != 0)
        .unwrap_or(bytes.len());
    &bytes[first..]
}

fn bit_length(big_endian: &[u8]) -> usize {
    match big_endian.first() {
        None => 0,
        Some(first) => big_endian.len() * 8 - first.leading_zeros() as usize,
    }
}

fn required_str<'a>(
    jwk: &'a Map<String, Value>,
    member: &'static str,
) -> Result<&'a str, JwkError> {
    optional_str(jwk, member)?.ok_or(JwkError::MissingMember(member))
}

fn optional_str<'a>(
    jwk: &'a Map<String, Value>,
    member: &'static str,
) -> Result<Option<&'a str>, JwkError> {
    match jwk.get(member) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(JwkError::WrongType(member)),
    }
}

fn base64_member(jwk: &Map<String, Value>, member: &'static str) -> Result<Vec<u8>, JwkError> {
    let encoded = required_str(jwk, member)?;
    KEY_BASE64
        .decode(encoded)
        .map_err(|_| JwkError::BadBase64(member))
}

#[cfg(test)]
mod tests;
