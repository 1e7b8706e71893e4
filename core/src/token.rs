//! Bearer-token verification: structure, algorithm allow-list, key selection, signature, then
//! the time and audience claims against a `now` the caller passes in.
//!
//! Every rejection has its own [`TokenError`] variant with a stable code, so that operators and
//! client developers can tell a clock problem from a key rotation from an attack.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};

use crate::alg::{Algorithm, AlgorithmSet};
use crate::crypto::{SignatureError, SignatureVerifier};
use crate::jwk::{KeyName, VerifyingKey, decode_thumbprint};

/// What a token must satisfy besides its signature; one per protected API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRules {
    /// The algorithms the API accepts (never `none`).
    pub allowed_algorithms: AlgorithmSet,
    /// Tokens longer than this are rejected before any parsing.
    pub max_token_bytes: usize,
    /// Whether a token without `exp` is rejected.
    pub require_exp: bool,
    /// Tolerance for clock differences, in seconds.
    pub clock_skew_seconds: u64,
    /// When not empty, the token's `aud` must name one of these.
    pub audiences: Vec<String>,
    /// When set, the header's `typ` must equal it (e.g. `at+jwt`, RFC 9068).
    pub expected_typ: Option<String>,
}

/// An issuer whose tokens an API accepts, with the keys that verify them.
#[derive(Clone, Debug)]
pub struct TrustedIssuer {
    /// The exact `iss` value.
    pub issuer: String,
    /// The issuer's usable keys.
    pub keys: Vec<VerifyingKey>,
    /// When set, the longest lifetime (`exp` − `iat`, seconds) its tokens may have; tokens
    /// without `iat` or `exp` are then refused too.
    pub max_token_lifetime_seconds: Option<u64>,
}

/// Which part of a token a base64url error is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenPart {
    /// The JOSE header.
    Header,
    /// The claims.
    Payload,
    /// The signature.
    Signature,
}

/// Why a token was rejected. Each variant has a stable code ([`TokenError::code`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token is longer than the API allows.
    #[error("token is {len} bytes, over the limit of {max}")]
    TooLarge {
        /// The token's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not three dot-separated parts (a JWE, a truncated or padded token…).
    #[error("token has {parts} parts, expected 3")]
    Malformed {
        /// How many parts it had.
        parts: usize,
    },
    /// A part is not unpadded base64url.
    #[error("token {0} is not valid base64url")]
    BadBase64(TokenPart),
    /// The header is not a JSON object with a string `alg`.
    #[error("token header is invalid: {0}")]
    InvalidHeader(String),
    /// The payload is not a JSON object.
    #[error("token payload is not a JSON object")]
    InvalidPayload,
    /// `alg` is `none`, in any letter case.
    #[error("unsigned tokens (alg none) are never accepted")]
    AlgNone,
    /// `alg` is not in the API's allow-list (or not an algorithm at all).
    #[error("algorithm `{0}` is not accepted")]
    AlgNotAllowed(String),
    /// The header asks for a key from somewhere else (`jku`, `x5u`, `jwk`, `x5c`).
    #[error("header parameter `{0}` is not accepted: keys come only from the trusted issuer")]
    ForbiddenHeader(&'static str),
    /// `crit` names an extension Portico does not implement.
    #[error("critical header extension `{0}` is not supported")]
    UnsupportedCrit(String),
    /// The header's `typ` is not the one the API expects.
    #[error("token type `{found}` is not the expected `{expected}`")]
    TypeMismatch {
        /// The expected type.
        expected: String,
        /// The token's type (empty when absent).
        found: String,
    },
    /// The token's `iss` is missing or not trusted by this API.
    #[error("issuer is not trusted")]
    UntrustedIssuer {
        /// The token's `iss`, when it had one.
        issuer: Option<String>,
    },
    /// The token names a key the issuer's key set does not have (yet), by `kid` or by
    /// certificate thumbprint.
    #[error("no key named `{kid}`")]
    UnknownKid {
        /// The name the token gave, as [`KeyName::to_text`] writes it: the `kid`, or
        /// `x5t#S256:<thumbprint>` / `x5t:<thumbprint>`.
        kid: String,
        /// The index of the issuer among the API's trusted issuers.
        issuer_index: usize,
    },
    /// The token's `kid` (or thumbprint) names a key of another type or algorithm.
    #[error("key `{kid}` cannot verify {alg}")]
    KeyMismatch {
        /// The key's name, as in [`TokenError::UnknownKid`].
        kid: String,
        /// The token's algorithm.
        alg: Algorithm,
    },
    /// No `kid` nor thumbprint, and the issuer has no key for the algorithm.
    #[error("no key for {0}")]
    NoMatchingKey(Algorithm),
    /// No `kid` nor thumbprint, and the issuer has several keys for the algorithm.
    #[error("token names no key (kid, x5t#S256, x5t) and {candidates} keys could verify it")]
    AmbiguousKey {
        /// How many keys fit.
        candidates: usize,
    },
    /// The signature does not verify.
    #[error("signature is invalid")]
    BadSignature,
    /// A registered claim has the wrong type (e.g. `exp` as a string).
    #[error("claim `{0}` has the wrong type")]
    InvalidClaim(&'static str),
    /// `exp` is required and absent.
    #[error("token has no expiry (exp)")]
    MissingExp,
    /// `exp` is in the past (beyond the skew).
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the skew).
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iat` is in the future (beyond the skew).
    #[error("token was issued in the future")]
    IssuedInFuture,
    /// The issuer bounds its tokens' lifetime and the token has no `iat`.
    #[error("token has no issue time (iat) and its issuer bounds token lifetimes")]
    MissingIat,
    /// The token lives longer (`exp` − `iat`) than its issuer's maximum token lifetime.
    #[error("token lifetime of {lifetime} s exceeds its issuer's maximum of {max} s")]
    LifetimeTooLong {
        /// `exp` − `iat`, in seconds.
        lifetime: i64,
        /// The issuer's maximum, in seconds.
        max: u64,
    },
    /// `aud` does not name an audience the API accepts.
    #[error("token audience is not accepted")]
    AudienceMismatch,
}

impl std::fmt::Display for TokenPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenPart::Header => "header",
            TokenPart::Payload => "payload",
            TokenPart::Signature => "signature",
        })
    }
}

// === impl TokenError ===

impl TokenError {
    /// The stable error code, as sent in the response body.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::TooLarge { .. } => "token_too_large",
            TokenError::Malformed { .. } => "malformed_token",
            TokenError::BadBase64(_) => "invalid_base64",
            TokenError::InvalidHeader(_) => "invalid_header",
            TokenError::InvalidPayload => "invalid_payload",
            TokenError::AlgNone => "alg_none",
            TokenError::AlgNotAllowed(_) => "alg_not_allowed",
            TokenError::ForbiddenHeader(_) => "forbidden_header",
            TokenError::UnsupportedCrit(_) => "unsupported_crit",
            TokenError::TypeMismatch { .. } => "invalid_type",
            TokenError::UntrustedIssuer { .. } => "untrusted_issuer",
            TokenError::UnknownKid { .. } => "unknown_kid",
            TokenError::KeyMismatch { .. } => "key_mismatch",
            TokenError::NoMatchingKey(_) => "no_matching_key",
            TokenError::AmbiguousKey { .. } => "ambiguous_key",
            TokenError::BadSignature => "bad_signature",
            TokenError::InvalidClaim(_) => "invalid_claim",
            TokenError::MissingExp => "missing_exp",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::IssuedInFuture => "token_issued_in_future",
            TokenError::MissingIat => "missing_iat",
            TokenError::LifetimeTooLong { .. } => "token_lifetime_too_long",
            TokenError::AudienceMismatch => "audience_mismatch",
        }
    }
}

/// The claims of a verified token.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Claims(Map<String, Value>);

// === impl Claims ===

impl From<Map<String, Value>> for Claims {
    fn from(claims: Map<String, Value>) -> Self {
        Claims(claims)
    }
}

impl Claims {
    /// The claim as a string, when it is one.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    /// A claim that holds one string or an array of strings (such as a policy claim or `aud`);
    /// other JSON types yield nothing.
    pub fn strings<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> {
        let (one, many) = match self.0.get(name) {
            Some(Value::String(one)) => (Some(one.as_str()), None),
            Some(Value::Array(many)) => (None, Some(many.iter().filter_map(Value::as_str))),
            _ => (None, None),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// The raw claim.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }
}

/// A token whose signature and claims checked out.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedToken {
    /// The algorithm it was signed with.
    pub alg: Algorithm,
    /// The `kid` of the key that verified it.
    pub kid: Option<String>,
    /// The index of its issuer among the issuers passed to [`verify`].
    pub issuer_index: usize,
    /// When it expires (`exp`, seconds since the epoch), if it does.
    pub expires_at: Option<i64>,
    /// All its claims.
    pub claims: Claims,
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    x5t: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "x5t#S256")]
    x5t_s256: Option<Cow<'a, str>>,
    #[serde(borrow)]
    typ: Option<Cow<'a, str>>,
    crit: Option<Vec<Value>>,
    jku: Option<IgnoredAny>,
    x5u: Option<IgnoredAny>,
    jwk: Option<IgnoredAny>,
    x5c: Option<IgnoredAny>,
}

/// Verifies `token` (the compact JWS without the `Bearer ` prefix) against `rules` and the
/// API's trusted `issuers`, at `now` (seconds since the epoch).
pub fn verify(
    token: &str,
    rules: &TokenRules,
    issuers: &[&TrustedIssuer],
    verifier: &dyn SignatureVerifier,
    now: i64,
) -> Result<VerifiedToken, TokenError> {
    if token.len() > rules.max_token_bytes {
        return Err(TokenError::TooLarge {
            len: token.len(),
            max: rules.max_token_bytes,
        });
    }
    let (signing_input, encoded_signature) = split_token(token)?;
    let (encoded_header, encoded_payload) = signing_input
        .split_once('.')
        .ok_or(TokenError::Malformed { parts: 1 })?;

    let header_bytes = decode(encoded_header, TokenPart::Header)?;
    let header: Header<'_> = serde_json::from_slice(&header_bytes)
        .map_err(|err| TokenError::InvalidHeader(header_json_reason(&err)))?;
    let alg = check_header(&header, rules)?;

    let payload = decode(encoded_payload, TokenPart::Payload)?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&payload).map_err(|_| TokenError::InvalidPayload)?;

    let issuer_index = match claims.get("iss") {
        Some(Value::String(iss)) => issuers.iter().position(|trusted| trusted.issuer == *iss),
        _ => None,
    }
    .ok_or_else(|| TokenError::UntrustedIssuer {
        issuer: claims.get("iss").and_then(Value::as_str).map(str::to_owned),
    })?;
    let name = key_name(&header)?;
    let candidates = select_keys(
        &issuers[issuer_index].keys,
        name.as_ref(),
        alg,
        issuer_index,
    )?;

    let signature = decode(encoded_signature, TokenPart::Signature)?;
    verify_with_any(
        verifier,
        alg,
        &candidates,
        signing_input.as_bytes(),
        &signature,
    )?;

    let expires_at = check_time_claims(&claims, rules, now)?;
    if let Some(max) = issuers[issuer_index].max_token_lifetime_seconds {
        check_lifetime(&claims, max)?;
    }
    check_audience(&claims, &rules.audiences)?;
    Ok(VerifiedToken {
        alg,
        kid: header.kid.as_deref().map(str::to_owned),
        issuer_index,
        expires_at,
        claims: Claims(claims),
    })
}

/// Splits off the signature, insisting on exactly three parts.
fn split_token(token: &str) -> Result<(&str, &str), TokenError> {
    let dots = token.bytes().filter(|byte| *byte == b'.').count();
    if dots != 2 {
        return Err(TokenError::Malformed { parts: dots + 1 });
    }
    token
        .rsplit_once('.')
        .ok_or(TokenError::Malformed { parts: 1 })
}

fn decode(part: &str, which: TokenPart) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::BadBase64(which))
}

fn header_json_reason(err: &serde_json::Error) -> String {
    if err.is_syntax() || err.is_eof() {
        "not JSON".to_owned()
    } else {
        // "duplicate field `alg`", "invalid type: …, expected a string", "… expected struct Header".
        let text = err.to_string();
        let text = text.split(" at line ").next().unwrap_or(&text);
        text.replace("struct Header", "a JSON object")
    }
}

fn check_header(header: &Header<'_>, rules: &TokenRules) -> Result<Algorithm, TokenError> {
    let name = header
        .alg
        .as_deref()
        .ok_or_else(|| TokenError::InvalidHeader("missing `alg`".to_owned()))?;
    if name.eq_ignore_ascii_case("none") {
        return Err(TokenError::AlgNone);
    }
    let alg = Algorithm::from_name(name)
        .filter(|alg| rules.allowed_algorithms.contains(*alg))
        .ok_or_else(|| TokenError::AlgNotAllowed(name.to_owned()))?;
    for (present, parameter) in [
        (header.jku.is_some(), "jku"),
        (header.x5u.is_some(), "x5u"),
        (header.jwk.is_some(), "jwk"),
        (header.x5c.is_some(), "x5c"),
    ] {
        if present {
            return Err(TokenError::ForbiddenHeader(parameter));
        }
    }
    if let Some(crit) = &header.crit {
        // No extension is understood, so any `crit` (even an empty one, which RFC 7515 forbids)
        // is refused.
        let first = crit.first().map_or_else(
            || "[]".to_owned(),
            |name| {
                name.as_str()
                    .map_or_else(|| name.to_string(), str::to_owned)
            },
        );
        return Err(TokenError::UnsupportedCrit(first));
    }
    if let Some(expected) = &rules.expected_typ {
        let found = header.typ.as_deref().unwrap_or("");
        if !media_types_equal(expected, found) {
            return Err(TokenError::TypeMismatch {
                expected: expected.clone(),
                found: found.to_owned(),
            });
        }
    }
    Ok(alg)
}

/// `typ` values compare case-insensitively, with the `application/` prefix optional
/// (RFC 7515 §4.1.9).
fn media_types_equal(a: &str, b: &str) -> bool {
    fn short(value: &str) -> &str {
        match value.get(..12) {
            Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &value[12..],
            _ => value,
        }
    }
    short(a).eq_ignore_ascii_case(short(b))
}

/// How the header names its key, in the order of precedence: `kid`, else `x5t#S256`, else
/// `x5t` (RFC 7515 §4.1.4, §4.1.8, §4.1.7). A thumbprint that is not base64url of its digest's
/// length names no key at all and is an invalid header.
fn key_name(header: &Header<'_>) -> Result<Option<KeyName>, TokenError> {
    if let Some(kid) = &header.kid {
        return Ok(Some(KeyName::Kid(kid.clone().into_owned())));
    }
    let invalid = |member: &str, bytes: usize| {
        TokenError::InvalidHeader(format!(
            "`{member}` is not a base64url thumbprint of {bytes} bytes"
        ))
    };
    if let Some(encoded) = &header.x5t_s256 {
        return decode_thumbprint(encoded)
            .map(|digest| Some(KeyName::X5tS256(digest)))
            .ok_or_else(|| invalid("x5t#S256", 32));
    }
    if let Some(encoded) = &header.x5t {
        return decode_thumbprint(encoded)
            .map(|digest| Some(KeyName::X5t(digest)))
            .ok_or_else(|| invalid("x5t", 20));
    }
    Ok(None)
}

/// The keys that may verify this token: those it names (by `kid` or thumbprint) when it names
/// one, else the issuer's only key for the algorithm.
fn select_keys<'k>(
    keys: &'k [VerifyingKey],
    name: Option<&KeyName>,
    alg: Algorithm,
    issuer_index: usize,
) -> Result<Vec<&'k VerifyingKey>, TokenError> {
    match name {
        Some(name) => {
            let mut named = keys.iter().filter(|key| key.is_named(name)).peekable();
            if named.peek().is_none() {
                return Err(TokenError::UnknownKid {
                    kid: name.to_text(),
                    issuer_index,
                });
            }
            let usable: Vec<_> = named.filter(|key| key.supports(alg)).collect();
            if usable.is_empty() {
                return Err(TokenError::KeyMismatch {
                    kid: name.to_text(),
                    alg,
                });
            }
            Ok(usable)
        }
        None => {
            let usable: Vec<_> = keys.iter().filter(|key| key.supports(alg)).collect();
            match usable.len() {
                0 => Err(TokenError::NoMatchingKey(alg)),
                1 => Ok(usable),
                candidates => Err(TokenError::AmbiguousKey { candidates }),
            }
        }
    }
}

/// Accepts when one of the candidates (almost always exactly one) verifies the signature.
fn verify_with_any(
    verifier: &dyn SignatureVerifier,
    alg: Algorithm,
    candidates: &[&VerifyingKey],
    signing_input: &[u8],
    signature: &[u8],
) -> Result<(), TokenError> {
    for key in candidates {
        match verifier.verify(alg, key, signing_input, signature) {
            Ok(()) => return Ok(()),
            Err(SignatureError::Mismatch | SignatureError::Malformed(_)) => {}
            Err(SignatureError::KeyMismatch(_)) => {}
        }
    }
    Err(TokenError::BadSignature)
}

fn check_time_claims(
    claims: &Map<String, Value>,
    rules: &TokenRules,
    now: i64,
) -> Result<Option<i64>, TokenError> {
    let skew = i64::try_from(rules.clock_skew_seconds).unwrap_or(i64::MAX);
    let exp = numeric_date(claims, "exp")?;
    match exp {
        None if rules.require_exp => return Err(TokenError::MissingExp),
        Some(exp) if now >= exp.saturating_add(skew) => return Err(TokenError::Expired),
        _ => {}
    }
    if let Some(nbf) = numeric_date(claims, "nbf")?
        && nbf > now.saturating_add(skew)
    {
        return Err(TokenError::NotYetValid);
    }
    if let Some(iat) = numeric_date(claims, "iat")?
        && iat > now.saturating_add(skew)
    {
        return Err(TokenError::IssuedInFuture);
    }
    Ok(exp)
}

/// Refuses a token without `iat` or `exp`, or whose `exp` − `iat` exceeds `max` seconds: with
/// the bound, no token issued before a moment can still be valid `max` seconds after it.
fn check_lifetime(claims: &Map<String, Value>, max: u64) -> Result<(), TokenError> {
    let iat = numeric_date(claims, "iat")?.ok_or(TokenError::MissingIat)?;
    let exp = numeric_date(claims, "exp")?.ok_or(TokenError::MissingExp)?;
    let lifetime = exp.saturating_sub(iat);
    if lifetime > i64::try_from(max).unwrap_or(i64::MAX) {
        return Err(TokenError::LifetimeTooLong { lifetime, max });
    }
    Ok(())
}

/// A NumericDate claim (RFC 7519 §2): a JSON number of seconds, possibly fractional.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(number)) => match number.as_i64() {
            Some(seconds) => Ok(Some(seconds)),
            None => number
                .as_f64()
                .filter(|seconds| seconds.is_finite())
                // Saturating float-to-int conversion; the fraction is dropped.
                .map(|seconds| Some(seconds.floor() as i64))
                .ok_or(TokenError::InvalidClaim(name)),
        },
        Some(_) => Err(TokenError::InvalidClaim(name)),
    }
}

fn check_audience(claims: &Map<String, Value>, accepted: &[String]) -> Result<(), TokenError> {
    if accepted.is_empty() {
        return Ok(());
    }
    let matches = |aud: &str| accepted.iter().any(|accepted| accepted == aud);
    let ok = match claims.get("aud") {
        None => false,
        Some(Value::String(aud)) => matches(aud),
        Some(Value::Array(auds)) => {
            let mut any = false;
            for aud in auds {
                let aud = aud.as_str().ok_or(TokenError::InvalidClaim("aud"))?;
                any |= matches(aud);
            }
            any
        }
        Some(_) => return Err(TokenError::InvalidClaim("aud")),
    };
    if ok {
        Ok(())
    } else {
        Err(TokenError::AudienceMismatch)
    }
}

#[cfg(test)]
mod tests;
