//! Secrets: a redacting wrapper, the at-rest cipher and admin-key verification.
//!
//! - [`Secret`] holds a write-only value (a client secret, an initial access token, a password).
//!   Its `Debug` and `Display` print `[redacted]`, it has no `Serialize`, and its memory is wiped
//!   on drop, so it cannot reach a log line or a response by accident.
//! - [`SecretCipher`] encrypts secrets at rest with XChaCha20-Poly1305 under the configured
//!   [`SecretKey`], with a random nonce per value and associated data naming the record and the
//!   field, so that a ciphertext moved to another record or field fails to decrypt.
//! - [`AdminKeys`] verifies `Authorization: Bearer` keys in constant time against SHA-256
//!   digests, and answers with the key's id (which the audit log records) instead of the key.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

const REDACTED: &str = "[redacted]";
const SEALED_PREFIX: &str = "v1.";
const NONCE_LEN: usize = 24;

// === impl Secret ===

/// A write-only value. Never printed, never serialized, wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The value, for the few places that must use it (encryption, hashing, an IdP call).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Generates `bytes` random bytes and encodes them as lower-case hex.
    pub fn random_hex(bytes: usize) -> Result<Self, getrandom::Error> {
        let mut buf = Zeroizing::new(vec![0u8; bytes]);
        getrandom::fill(&mut buf)?;
        Ok(Secret::new(hex(&buf)))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}

// === impl SecretKey ===

/// The 32-byte key that encrypts secrets at rest.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

/// Why a secret key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a secret key must be 32 bytes written as 64 hex digits or as base64 (found {found} characters \
     that are neither)"
)]
pub struct SecretKeyError {
    found: usize,
}

impl SecretKey {
    /// Parses 32 bytes written as hex or base64 (standard or URL-safe, padded or not).
    /// Surrounding whitespace is ignored.
    pub fn parse(text: &str) -> Result<Self, SecretKeyError> {
        let text = text.trim();
        let error = SecretKeyError { found: text.len() };
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut key = [0u8; 32];
            for (i, byte) in key.iter_mut().enumerate() {
                *byte =
                    u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| error.clone())?;
            }
            return Ok(SecretKey(key));
        }
        for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
            if let Ok(bytes) = engine.decode(text) {
                let bytes = Zeroizing::new(bytes);
                if let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) {
                    return Ok(SecretKey(key));
                }
            }
        }
        Err(error)
    }

    /// Generates a random key.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key)?;
        Ok(SecretKey(key))
    }

    /// The key as 64 hex digits (for writing a generated key file).
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex(&self.0))
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

// === impl SecretCipher ===

/// Where a sealed value belongs: it is bound to this as associated data.
#[derive(Debug, Clone, Copy)]
pub struct SealContext<'a> {
    /// The kind of record, e.g. `oauth_client`.
    pub kind: &'a str,
    /// The record's id.
    pub id: &'a str,
    /// The field, e.g. `client_secret`.
    pub field: &'a str,
}

impl SealContext<'_> {
    fn associated_data(&self) -> Vec<u8> {
        // Length-prefixed so that no two contexts share an encoding.
        let mut data = b"portico-secret-v1".to_vec();
        for part in [self.kind, self.id, self.field] {
            data.extend_from_slice(&(part.len() as u64).to_be_bytes());
            data.extend_from_slice(part.as_bytes());
        }
        data
    }
}

/// Why a sealed value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsealError {
    /// The stored text is not a sealed value.
    #[error("the sealed value is malformed")]
    Malformed,
    /// The key, the record or the field does not match the one it was sealed for.
    #[error("the sealed value does not decrypt under this key for this record and field")]
    Decrypt,
}

/// Why a value could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The system random number generator failed.
    #[error("no randomness for a nonce: {0}")]
    Random(getrandom::Error),
    /// The cipher refused the input.
    #[error("encryption failed")]
    Encrypt,
}

/// Encrypts and decrypts secrets at rest.
#[derive(Clone)]
pub struct SecretCipher {
    aead: XChaCha20Poly1305,
}

impl SecretCipher {
    /// A cipher under `key`.
    pub fn new(key: &SecretKey) -> Self {
        SecretCipher {
            aead: XChaCha20Poly1305::new(&key.0.into()),
        }
    }

    /// Encrypts `secret` for `context` with a fresh random nonce. The result is printable text
    /// (`v1.` followed by base64url of nonce and ciphertext).
    pub fn seal(&self, secret: &Secret, context: SealContext<'_>) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(SealError::Random)?;
        let aad = context.associated_data();
        let ciphertext = self
            .aead
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: secret.expose().as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Encrypt)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        Ok(format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// Decrypts a value sealed by [`SecretCipher::seal`] for the same context.
    pub fn open(&self, sealed: &str, context: SealContext<'_>) -> Result<Secret, UnsealError> {
        let encoded = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(UnsealError::Malformed)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| UnsealError::Malformed)?;
        if bytes.len() < NONCE_LEN {
            return Err(UnsealError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| UnsealError::Malformed)?;
        let aad = context.associated_data();
        let plaintext = Zeroizing::new(
            self.aead
                .decrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| UnsealError::Decrypt)?,
        );
        let text = std::str::from_utf8(&plaintext).map_err(|_| UnsealError::Malformed)?;
        Ok(Secret::new(text))
    }
}

impl fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretCipher([redacted])")
    }
}

// === impl AdminKeys ===

/// The admin API keys: ids with the SHA-256 digest of each key. The keys themselves are not
/// kept.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminKeys {
    keys: Vec<(String, [u8; 32])>,
}

impl AdminKeys {
    /// Keys given as `(id, key)`.
    pub fn new<'a>(keys: impl IntoIterator<Item = (&'a str, &'a Secret)>) -> Self {
        AdminKeys {
            keys: keys
                .into_iter()
                .map(|(id, key)| (id.to_owned(), digest(key.expose())))
                .collect(),
        }
    }

    /// Keys given as `(id, SHA-256 digest of the key)`, e.g. a generated key whose digest is
    /// stored in the data directory.
    pub fn from_digests(keys: impl IntoIterator<Item = (String, [u8; 32])>) -> Self {
        AdminKeys {
            keys: keys.into_iter().collect(),
        }
    }

    /// The SHA-256 digest under which a key is kept.
    pub fn digest(key: &Secret) -> [u8; 32] {
        digest(key.expose())
    }

    /// The ids of the keys.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }

    /// The id of the key equal to `presented`, if any. Every configured key is compared, each
    /// in constant time, so the time taken does not depend on how much of a key matched.
    pub fn verify(&self, presented: &str) -> Option<&str> {
        let presented = digest(presented);
        let mut found = None;
        for (id, key) in &self.keys {
            if bool::from(key.ct_eq(&presented)) && found.is_none() {
                found = Some(id.as_str());
            }
        }
        found
    }
}

impl fmt::Debug for AdminKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminKeys")
            .field("ids", &self.ids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTEXT: SealContext<'static> = SealContext {
        kind: "oauth_client",
        id: "cli_1",
        field: "client_secret",
    };

    #[test]
    fn secret_never_prints_its_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&secret)), "Some([redacted])");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn secret_key_parses_hex_and_base64_and_rejects_other_lengths() {
        let hex_key = "00".repeat(31) + "ff";
        assert_eq!(SecretKey::parse(&hex_key).unwrap().0[31], 0xff);
        let b64 = STANDARD.encode([7u8; 32]);
        assert_eq!(SecretKey::parse(&format!(" {b64}\n")).unwrap().0, [7u8; 32]);
        let b64url = URL_SAFE_NO_PAD.encode([0xfbu8; 32]);
        assert_eq!(SecretKey::parse(&b64url).unwrap().0, [0xfb; 32]);
        assert!(SecretKey::parse(&STANDARD.encode([1u8; 16])).is_err());
        assert!(SecretKey::parse("not a key").is_err());
        assert_eq!(format!("{:?}", SecretKey([1; 32])), "[redacted]");
    }

    #[test]
    fn generated_key_round_trips_through_hex() {
        let key = SecretKey::generate().unwrap();
        assert_eq!(SecretKey::parse(&key.to_hex()).unwrap().0, key.0);
    }

    #[test]
    fn sealed_secret_opens_only_with_the_same_key_record_and_field() {
        let cipher = SecretCipher::new(&SecretKey([9; 32]));
        let sealed = cipher.seal(&Secret::new("s3cr3t"), CONTEXT).unwrap();
        assert!(!sealed.contains("s3cr3t"));
        assert_eq!(cipher.open(&sealed, CONTEXT).unwrap().expose(), "s3cr3t");

        let other_record = SealContext {
            id: "cli_2",
            ..CONTEXT
        };
        assert_eq!(
            cipher.open(&sealed, other_record).unwrap_err(),
            UnsealError::Decrypt
        );
        let other_field = SealContext {
            field: "registration_access_token",
            ..CONTEXT
        };
        assert_eq!(
            cipher.open(&sealed, other_field).unwrap_err(),
            UnsealError::Decrypt
        );
        let other_key = SecretCipher::new(&SecretKey([8; 32]));
        assert_eq!(
            other_key.open(&sealed, CONTEXT).unwrap_err(),
            UnsealError::Decrypt
        );
        assert_eq!(
            cipher.open("v1.!!", CONTEXT).unwrap_err(),
            UnsealError::Malformed
        );
    }

    #[test]
    fn sealing_twice_uses_fresh_nonces() {
        let cipher = SecretCipher::new(&SecretKey([9; 32]));
        let a = cipher.seal(&Secret::new("same"), CONTEXT).unwrap();
        let b = cipher.seal(&Secret::new("same"), CONTEXT).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn admin_keys_answer_with_the_matching_id_only() {
        let ops = Secret::new("ops-key-0123456789");
        let ci = Secret::new("ci-key-0123456789");
        let keys = AdminKeys::new([("ops", &ops), ("ci", &ci)]);
        assert_eq!(keys.verify("ci-key-0123456789"), Some("ci"));
        assert_eq!(keys.verify("ops-key-0123456789"), Some("ops"));
        assert_eq!(keys.verify("ops-key-012345678"), None);
        assert_eq!(keys.verify(""), None);
        assert!(!format!("{keys:?}").contains("key-0123"));
    }
}
