//! Passwords: the policy a new password must meet, and argon2id hashing bounded in
//! concurrency.
//!
//! - **Policy** (NIST SP 800-63B §3.1.1.2): the password is normalised with Unicode NFKC, then
//!   must be at least [`MIN_PASSWORD_CHARS`] characters long, at most [`MAX_PASSWORD_BYTES`]
//!   bytes as sent, not the account's email address, and not in the shipped list of common
//!   passwords (`passwords/common.txt`, compared in lower case). No composition rules. The
//!   normalised form is what is hashed and verified, so the same password typed with another
//!   Unicode composition still matches.
//! - **Hashing**: argon2id with the crate's default parameters (19 MiB, 2 passes), on the
//!   blocking pool, at most [`Hasher::permits`] at a time. Each hash holds 19 MiB while it
//!   runs, so without the bound a flood of log-ins would take memory and CPU from every other
//!   request; with it, a flood only makes log-ins wait for a permit.
//! - **Shedding**: a log-in first takes a place with [`Hasher::reserve`]; at most
//!   [`QUEUE_PER_PERMIT`] log-ins per permit may be running or waiting, and one more is answered
//!   at once with 503 `login_busy` (`Retry-After: 1`) before its attempt is counted. So the
//!   wait of a log-in during a flood is bounded (about that many hashes' time, ~0.6 s for
//!   16 × 38 ms on one permit) instead of growing with the flood.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;
use unicode_normalization::UnicodeNormalization;

use crate::error::ApiError;
use crate::secret::Secret;

/// The fewest characters (after NFKC normalisation) a password may have.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The most bytes (UTF-8, as sent) a password may have.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// How many password hashes are computed at once by default: one fewer than the cores the
/// process may use, at least one, so that a log-in flood leaves a core to the admin API, the
/// snapshot and the long polls (each argon2id hash holds a core and 19 MiB while it runs).
pub fn default_hashing_permits() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .saturating_sub(1)
        .max(1)
}

/// How many log-ins per hashing permit may be running or waiting for one at once; one more
/// is shed with 503 `login_busy`.
pub const QUEUE_PER_PERMIT: usize = 16;

/// The shipped list of common passwords, one a line (`#` starts a comment line).
const COMMON_PASSWORDS: &str = include_str!("passwords/common.txt");

/// The NFKC normalisation of a password, as hashed and verified.
pub fn normalise(password: &Secret) -> Secret {
    Secret::new(password.expose().nfkc().collect::<String>())
}

/// Whether `password` (normalised) is in the shipped list of common passwords.
pub fn is_common(password: &str) -> bool {
    let lower = password.to_lowercase();
    COMMON_PASSWORDS
        .lines()
        .filter(|line| !line.starts_with('#'))
        .any(|line| line == lower)
}

/// Checks a new password against the policy (see the module docs); `email` is the account's
/// address. The error names the field `password`.
pub fn check_policy(password: &Secret, email: &str) -> Result<(), ApiError> {
    if password.expose().len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::invalid(
            "password",
            format!("must be at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    let normalised = normalise(password);
    let text = normalised.expose();
    if text.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::invalid(
            "password",
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if text.trim().to_lowercase() == email.trim().to_lowercase() {
        return Err(ApiError::invalid(
            "password",
            "must not be the email address",
        ));
    }
    if is_common(text) {
        return Err(ApiError::invalid(
            "password",
            "is one of the most common passwords; choose another",
        ));
    }
    Ok(())
}

/// Hashes and verifies passwords, at most a fixed number at a time.
#[derive(Debug, Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    count: usize,
    /// Log-ins holding a [`Reservation`] (running or waiting).
    reserved: Arc<AtomicUsize>,
    max_reserved: usize,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher::new(default_hashing_permits())
    }
}

impl Hasher {
    /// A hasher running at most `permits` hashes at once (at least one), admitting at most
    /// [`QUEUE_PER_PERMIT`] log-ins per permit.
    pub fn new(permits: usize) -> Self {
        let count = permits.max(1);
        Hasher {
            permits: Arc::new(Semaphore::new(count)),
            count,
            reserved: Arc::new(AtomicUsize::new(0)),
            max_reserved: count * QUEUE_PER_PERMIT,
        }
    }

    /// How many hashes may run at once.
    pub fn permits(&self) -> usize {
        self.count
    }

    /// A place for one log-in's password check, held until [`Reservation::verify`] ends or the
    /// reservation is dropped.
    ///
    /// Errors: 503 `login_busy` (`Retry-After: 1`) when `permits × QUEUE_PER_PERMIT` log-ins
    /// already hold one.
    pub fn reserve(&self) -> Result<Reservation, ApiError> {
        let taken = self.reserved.fetch_add(1, Ordering::SeqCst);
        let reservation = Reservation {
            hasher: self.clone(),
        };
        if taken >= self.max_reserved {
            return Err(ApiError::LoginBusy { retry_after: 1 });
        }
        Ok(reservation)
    }

    /// The argon2id PHC string of the normalised password (random salt).
    pub async fn hash(&self, password: &Secret) -> Result<String, ApiError> {
        let password = normalise(password);
        self.run(move || {
            Argon2::default()
                .hash_password(password.expose().as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|error| ApiError::Internal(anyhow::anyhow!("hashing a password: {error}")))
        })
        .await?
    }

    /// Whether the normalised password matches a PHC hash (false for a malformed hash).
    pub async fn verify(&self, password: &Secret, hash: String) -> Result<bool, ApiError> {
        let password = normalise(password);
        self.run(move || {
            PasswordHash::new(&hash).is_ok_and(|hash| {
                Argon2::default()
                    .verify_password(password.expose().as_bytes(), &hash)
                    .is_ok()
            })
        })
        .await
    }

    /// Runs `work` on the blocking pool once a permit is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|error| ApiError::Internal(error.into()))?;
        // The permit is released once the blocking thread is back in the pool (not inside the
        // closure), so the next hash reuses that thread instead of starting one more: each
        // thread that ever hashed keeps its argon2 memory in the allocator. The outer task keeps
        // the permit until the work ends even if the caller goes away.
        tokio::spawn(async move {
            let outcome = tokio::task::spawn_blocking(work).await;
            drop(permit);
            outcome
        })
        .await
        .map_err(|error| ApiError::Internal(error.into()))?
        .map_err(|error| ApiError::Internal(error.into()))
    }
}

/// A log-in's place in the hashing queue (see [`Hasher::reserve`]); dropping it frees the
/// place.
#[derive(Debug)]
pub struct Reservation {
    hasher: Hasher,
}

impl Reservation {
    /// Whether the normalised password matches a PHC hash (false for a malformed hash), as
    /// [`Hasher::verify`]; the place is freed when the check ends.
    pub async fn verify(self, password: &Secret, hash: String) -> Result<bool, ApiError> {
        self.hasher.verify(password, hash).await
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.hasher.reserved.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_leaves_a_core_to_the_rest() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        assert_eq!(default_hashing_permits(), cores.saturating_sub(1).max(1));
        assert_eq!(Hasher::default().permits(), default_hashing_permits());
    }

    #[test]
    fn log_ins_beyond_the_queue_are_shed_until_a_place_frees() {
        let hasher = Hasher::new(2);
        let mut places: Vec<_> = (0..2 * QUEUE_PER_PERMIT)
            .map(|_| hasher.reserve().expect("a place"))
            .collect();
        assert!(matches!(
            hasher.reserve(),
            Err(ApiError::LoginBusy { retry_after: 1 })
        ));
        // A shed log-in holds no place: after one is freed, exactly one more is admitted.
        drop(places.pop());
        let again = hasher.reserve().expect("the freed place");
        assert!(hasher.reserve().is_err());
        drop(again);
        assert!(hasher.reserve().is_ok());
    }

    #[tokio::test]
    async fn a_reservation_verifies_and_frees_its_place() {
        let hasher = Hasher::new(1);
        let hash = hasher
            .hash(&Secret::new("correct horse battery staple"))
            .await
            .expect("a hash");
        for _ in 0..=QUEUE_PER_PERMIT {
            let place = hasher.reserve().expect("a place");
            assert!(
                place
                    .verify(&Secret::new("correct horse battery staple"), hash.clone())
                    .await
                    .expect("a check")
            );
        }
    }

    fn field_error(password: &str, email: &str) -> String {
        match check_policy(&Secret::new(password), email) {
            Err(ApiError::InvalidRequest { message, .. }) => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_long_uncommon_password_passes() {
        assert!(check_policy(&Secret::new("correct horse battery staple"), "a@b.example").is_ok());
    }

    #[test]
    fn length_counts_characters_after_nfkc() {
        // Eleven full-width letters are eleven characters after NFKC: refused.
        assert!(field_error("ＡＢＣＤＥＦＧＨＩＪＫ", "a@b.example").contains("at least 12"));
        // "ﬃ" (one character) becomes "ffi" (three): ten characters as typed, twelve after
        // NFKC, accepted.
        assert!(check_policy(&Secret::new("ﬃabcdefghi"), "a@b.example").is_ok());
    }

    #[test]
    fn common_passwords_and_the_email_are_refused() {
        assert!(field_error("qwerty123456", "a@b.example").contains("common"));
        assert!(field_error("QWERTY123456", "a@b.example").contains("common"));
        assert!(
            field_error("ada.lovelace@example.com", "Ada.Lovelace@example.com").contains("email")
        );
    }

    #[test]
    fn passwords_longer_than_the_byte_bound_are_refused() {
        assert!(field_error(&"é".repeat(513), "a@b.example").contains("1024 bytes"));
        assert!(check_policy(&Secret::new("x".repeat(1024)), "a@b.example").is_ok());
    }

    #[tokio::test]
    async fn a_hash_verifies_the_same_password_in_another_composition() {
        let hasher = Hasher::new(1);
        let hash = hasher
            .hash(&Secret::new("cafe\u{301} au lait, s'il vous plaît"))
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(
            hasher
                .verify(
                    &Secret::new("caf\u{e9} au lait, s'il vous plaît"),
                    hash.clone()
                )
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(&Secret::new("another password entirely"), hash)
                .await
                .unwrap()
        );
    }
}
