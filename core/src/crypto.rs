//! Signature verification behind one trait: the host's native crypto where the host has it, pure
//! Rust where it does not.
//!
//! Inside a wasm VM, pure-Rust RSA is about ten times slower than native code. Envoy exposes its
//! BoringSSL through the `verify_signature` foreign function (RSA PKCS#1 v1.5 and ECDSA), so
//! [`HostVerifier`] sends those algorithms there and keeps pure Rust for the rest (PS*, EdDSA,
//! HS*), for hosts without the function, and for native tests.

use std::cell::{Cell, RefCell};

use p256::ecdsa::signature::Verifier as _;
use sha2::Digest as _;

use crate::alg::{Algorithm, KeyFamily};
use crate::jwk::{KeyMaterial, VerifyingKey};

/// Why a signature was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature is well formed but does not match the message and key.
    #[error("signature does not match")]
    Mismatch,
    /// The signature cannot be a signature of this algorithm (wrong length, zero scalars…).
    #[error("signature is malformed for {0}")]
    Malformed(Algorithm),
    /// The key cannot verify this algorithm (a caller bug: keys are matched before verifying).
    #[error("key cannot verify {0}")]
    KeyMismatch(Algorithm),
}

/// Verifies a JWS signature over `message` (the ASCII `header.payload`) with `key`.
pub trait SignatureVerifier {
    /// `Ok(())` when `signature` is a valid `alg` signature of `message` under `key`.
    fn verify(
        &self,
        alg: Algorithm,
        key: &VerifyingKey,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError>;
}

/// Verification with RustCrypto: works on every host and natively.
#[derive(Clone, Copy, Debug, Default)]
pub struct PureRustVerifier;

// === impl PureRustVerifier ===

impl SignatureVerifier for PureRustVerifier {
    fn verify(
        &self,
        alg: Algorithm,
        key: &VerifyingKey,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        if !key.supports(alg) {
            return Err(SignatureError::KeyMismatch(alg));
        }
        match (key.material(), alg) {
            (KeyMaterial::Rsa { key, .. }, Algorithm::RS256) => rsa_verify(
                key,
                rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                &sha2::Sha256::digest(message),
                signature,
            ),
            (KeyMaterial::Rsa { key, .. }, Algorithm::RS384) => rsa_verify(
                key,
                rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
                &sha2::Sha384::digest(message),
                signature,
            ),
            (KeyMaterial::Rsa { key, .. }, Algorithm::RS512) => rsa_verify(
                key,
                rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
                &sha2::Sha512::digest(message),
                signature,
            ),
            (KeyMaterial::Rsa { key, .. }, Algorithm::PS256) => rsa_verify(
                key,
                rsa::Pss::<sha2::Sha256>::new(),
                &sha2::Sha256::digest(message),
                signature,
            ),
            (KeyMaterial::Rsa { key, .. }, Algorithm::PS384) => rsa_verify(
                key,
                rsa::Pss::<sha2::Sha384>::new(),
                &sha2::Sha384::digest(message),
                signature,
            ),
            (KeyMaterial::Rsa { key, .. }, Algorithm::PS512) => rsa_verify(
                key,
                rsa::Pss::<sha2::Sha512>::new(),
                &sha2::Sha512::digest(message),
                signature,
            ),
            (KeyMaterial::P256 { key, .. }, Algorithm::ES256) => {
                let signature = p256::ecdsa::Signature::from_slice(signature)
                    .map_err(|_| SignatureError::Malformed(alg))?;
                key.verify(message, &signature)
                    .map_err(|_| SignatureError::Mismatch)
            }
            (KeyMaterial::P384 { key, .. }, Algorithm::ES384) => {
                let signature = p384::ecdsa::Signature::from_slice(signature)
                    .map_err(|_| SignatureError::Malformed(alg))?;
                key.verify(message, &signature)
                    .map_err(|_| SignatureError::Mismatch)
            }
            (KeyMaterial::Ed25519(key), Algorithm::EdDSA) => {
                let signature = ed25519_dalek::Signature::from_slice(signature)
                    .map_err(|_| SignatureError::Malformed(alg))?;
                key.verify_strict(message, &signature)
                    .map_err(|_| SignatureError::Mismatch)
            }
            (KeyMaterial::Hmac(secret), Algorithm::HS256) => {
                hmac_verify::<hmac::Hmac<sha2::Sha256>>(secret, message, signature)
            }
            (KeyMaterial::Hmac(secret), Algorithm::HS384) => {
                hmac_verify::<hmac::Hmac<sha2::Sha384>>(secret, message, signature)
            }
            (KeyMaterial::Hmac(secret), Algorithm::HS512) => {
                hmac_verify::<hmac::Hmac<sha2::Sha512>>(secret, message, signature)
            }
            _ => Err(SignatureError::KeyMismatch(alg)),
        }
    }
}

fn rsa_verify(
    key: &rsa::PublicKey,
    scheme: impl rsa::traits::SignatureScheme,
    hashed: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    key.verify(scheme, hashed, signature)
        .map_err(|_| SignatureError::Mismatch)
}

fn hmac_verify<M: hmac::Mac + hmac::KeyInit>(
    secret: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    let mut mac =
        <M as hmac::KeyInit>::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
    mac.update(message);
    // `verify_slice` compares in constant time.
    mac.verify_slice(signature)
        .map_err(|_| SignatureError::Mismatch)
}

/// Why the host's `verify_signature` could not answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostCryptoError {
    /// The host does not offer the function: stop asking it.
    #[error("host has no verify_signature function")]
    Unavailable,
    /// The call failed this time (bad argument, allocation…): verify in pure Rust instead.
    #[error("host verify_signature failed: {0}")]
    Failed(String),
}

/// The host's `verify_signature` foreign function: protobuf `VerifySignatureArguments` in,
/// protobuf `VerifySignatureResult` out. The filter implements it over the proxy-wasm hostcall.
pub trait HostCrypto {
    /// Calls the function with encoded arguments and returns the encoded result.
    fn verify_signature(&self, arguments: &[u8]) -> Result<Vec<u8>, HostCryptoError>;
}

/// Sends RS256/384/512 and ES256/384 to the host, everything else to [`PureRustVerifier`]. When
/// the host turns out not to have the function, it stops asking.
#[derive(Debug)]
pub struct HostVerifier<H> {
    host: H,
    host_available: Cell<bool>,
    arguments: RefCell<Vec<u8>>,
    counts: Cell<VerificationCounts>,
}

/// Where a signature was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CryptoPath {
    /// By the host's native crypto (Envoy's BoringSSL through `verify_signature`).
    Host,
    /// In pure Rust (algorithms the host lacks, or a host without the function).
    Software,
}

// === impl CryptoPath ===

impl CryptoPath {
    /// Both paths.
    pub const ALL: [CryptoPath; 2] = [CryptoPath::Host, CryptoPath::Software];

    /// The metric label: `host` or `software`.
    pub fn label(self) -> &'static str {
        match self {
            CryptoPath::Host => "host",
            CryptoPath::Software => "software",
        }
    }
}

/// How many signatures were checked, by algorithm and [`CryptoPath`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerificationCounts {
    host: [u64; Algorithm::ALL.len()],
    software: [u64; Algorithm::ALL.len()],
}

// === impl VerificationCounts ===

impl VerificationCounts {
    /// Counts one check of `alg` on `path`.
    pub fn add(&mut self, alg: Algorithm, path: CryptoPath) {
        let slot = &mut self.row_mut(path)[alg.index()];
        *slot = slot.saturating_add(1);
    }

    /// The checks of `alg` on `path`.
    pub fn get(&self, alg: Algorithm, path: CryptoPath) -> u64 {
        self.row(path)[alg.index()]
    }

    /// The checks on `path`, all algorithms together.
    pub fn total(&self, path: CryptoPath) -> u64 {
        self.row(path).iter().sum()
    }

    /// Every (algorithm, path, count) with a count above zero.
    pub fn nonzero(&self) -> impl Iterator<Item = (Algorithm, CryptoPath, u64)> + '_ {
        CryptoPath::ALL.into_iter().flat_map(move |path| {
            Algorithm::ALL
                .into_iter()
                .map(move |alg| (alg, path, self.get(alg, path)))
                .filter(|(_, _, count)| *count > 0)
        })
    }

    fn row(&self, path: CryptoPath) -> &[u64; Algorithm::ALL.len()] {
        match path {
            CryptoPath::Host => &self.host,
            CryptoPath::Software => &self.software,
        }
    }

    fn row_mut(&mut self, path: CryptoPath) -> &mut [u64; Algorithm::ALL.len()] {
        match path {
            CryptoPath::Host => &mut self.host,
            CryptoPath::Software => &mut self.software,
        }
    }
}

// === impl HostVerifier ===

impl<H: HostCrypto> HostVerifier<H> {
    /// A verifier that tries `host` first.
    pub fn new(host: H) -> Self {
        HostVerifier {
            host,
            host_available: Cell::new(true),
            arguments: RefCell::new(Vec::with_capacity(2048)),
            counts: Cell::new(VerificationCounts::default()),
        }
    }

    /// The checks made since the last call, by algorithm and where they ran (for metrics).
    pub fn take_counts(&self) -> VerificationCounts {
        self.counts.take()
    }

    /// Whether the host's function is still in use (false once it proved to be missing).
    pub fn host_available(&self) -> bool {
        self.host_available.get()
    }

    /// Asks the host; `None` means "verify in pure Rust instead".
    fn verify_on_host(
        &self,
        alg: Algorithm,
        key: &VerifyingKey,
        message: &[u8],
        signature: &[u8],
    ) -> Option<Result<(), SignatureError>> {
        if !self.host_available.get() || !key.supports(alg) || is_pss(alg) {
            return None;
        }
        let spki = key.spki_der()?;
        let digest = alg.digest()?;
        let der_signature;
        let signature = match key.family() {
            KeyFamily::Rsa => signature,
            KeyFamily::P256 | KeyFamily::P384 => match ecdsa_signature_der(key.family(), signature)
            {
                Some(der) => {
                    der_signature = der;
                    &der_signature
                }
                None => return Some(Err(SignatureError::Malformed(alg))),
            },
            KeyFamily::Ed25519 | KeyFamily::Hmac => return None,
        };
        self.call_host(digest.host_name(), spki, signature, message)
    }

    fn call_host(
        &self,
        hash: &str,
        spki: &[u8],
        signature: &[u8],
        message: &[u8],
    ) -> Option<Result<(), SignatureError>> {
        let mut arguments = self.arguments.borrow_mut();
        encode_verify_arguments(&mut arguments, hash, spki, signature, message);
        match self.host.verify_signature(&arguments) {
            Ok(result) => match decode_verify_result(&result) {
                Some(true) => Some(Ok(())),
                Some(false) => Some(Err(SignatureError::Mismatch)),
                None => None,
            },
            Err(HostCryptoError::Unavailable) => {
                self.host_available.set(false);
                None
            }
            Err(HostCryptoError::Failed(_)) => None,
        }
    }
}

impl<H: HostCrypto> SignatureVerifier for HostVerifier<H> {
    fn verify(
        &self,
        alg: Algorithm,
        key: &VerifyingKey,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        let mut counts = self.counts.get();
        let outcome = match self.verify_on_host(alg, key, message, signature) {
            Some(outcome) => {
                counts.add(alg, CryptoPath::Host);
                outcome
            }
            None => {
                counts.add(alg, CryptoPath::Software);
                PureRustVerifier.verify(alg, key, message, signature)
            }
        };
        self.counts.set(counts);
        outcome
    }
}

/// JOSE signs ECDSA as the raw `r || s`; host crypto wants a DER `ECDSA-Sig-Value`. `None` when
/// the bytes are not a valid signature for the curve (wrong length, zero or oversized scalars).
fn ecdsa_signature_der(family: KeyFamily, raw: &[u8]) -> Option<Vec<u8>> {
    match family {
        KeyFamily::P256 => p256::ecdsa::Signature::from_slice(raw)
            .ok()
            .map(|signature| signature.to_der().as_bytes().to_vec()),
        KeyFamily::P384 => p384::ecdsa::Signature::from_slice(raw)
            .ok()
            .map(|signature| signature.to_der().as_bytes().to_vec()),
        KeyFamily::Rsa | KeyFamily::Ed25519 | KeyFamily::Hmac => None,
    }
}

fn is_pss(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512)
}

/// Encodes Envoy's `VerifySignatureArguments { string hash_function = 1; bytes public_key = 2;
/// bytes signature = 3; bytes text = 4; }` into `out` (cleared first).
pub fn encode_verify_arguments(
    out: &mut Vec<u8>,
    hash_function: &str,
    public_key_der: &[u8],
    signature: &[u8],
    text: &[u8],
) {
    out.clear();
    for (field, bytes) in [
        (1u8, hash_function.as_bytes()),
        (2, public_key_der),
        (3, signature),
        (4, text),
    ] {
        out.push(field << 3 | WIRE_LEN);
        push_varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
}

/// Decodes Envoy's `VerifySignatureResult { bool result = 1; string error = 2; }`, returning
/// `result`; `None` when the bytes are not such a message.
pub fn decode_verify_result(mut bytes: &[u8]) -> Option<bool> {
    let mut result = false;
    while !bytes.is_empty() {
        let key = read_varint(&mut bytes)?;
        let (field, wire) = (key >> 3, (key & 7) as u8);
        match wire {
            WIRE_VARINT => {
                let value = read_varint(&mut bytes)?;
                if field == 1 {
                    result = value != 0;
                }
            }
            WIRE_LEN => {
                let len = usize::try_from(read_varint(&mut bytes)?).ok()?;
                bytes = bytes.get(len..)?;
            }
            WIRE_FIXED64 => bytes = bytes.get(8..)?,
            WIRE_FIXED32 => bytes = bytes.get(4..)?,
            _ => return None,
        }
    }
    Some(result)
}

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests;
