//! The developer portal's accounts: sign-up, log-in, sessions, log-out, and the catalogue as
//! developers see it.
//!
//! - Passwords: 12 to 1024 characters, not the email address, hashed with argon2id.
//! - Log-in answers the same 401 `invalid_credentials` for an unknown email and a wrong
//!   password, after the same work (an unknown email is checked against a dummy argon2id
//!   hash). A disabled account with the right password is 403 `account_disabled`.
//! - Throttling, per email (any case): after [`FREE_FAILURES`] failed attempts, each further
//!   attempt must wait twice as long as the previous one (1 s, 2 s, 4 s, … up to
//!   [`MAX_LOCKOUT`]), answered 429 `too_many_attempts` with `Retry-After` and without checking
//!   the password. A successful log-in resets the count; counts older than an hour are
//!   forgotten. Counts live in memory (one control plane holds the store).
//! - Sessions: a random 256-bit id, sent only in the cookie; the store keeps its SHA-256 digest
//!   with the developer id and the expiry ([`SESSION_LIFETIME`] after log-in). Every request
//!   checks the expiry and that the developer still exists and is active, so disabling a
//!   developer ends their sessions at once. Expired sessions are removed when met, and swept
//!   at most once a minute at log-in.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::catalogue::CatalogueEntry;
use super::developers::{Developer, DeveloperState, NewDeveloper, StoredDeveloper, email_key};
use super::{Actor, AppState};
use crate::error::ApiError;
use crate::secret::Secret;
use crate::store::{Order, Tree, Write};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "portico_session";
/// How long a session lasts after log-in.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Failed log-ins per email before attempts are delayed.
pub const FREE_FAILURES: u32 = 5;
/// The longest delay between two log-in attempts for one email.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// After this long without a failure, an email's failures are forgotten.
const FAILURE_MEMORY: Duration = Duration::from_secs(60 * 60);
/// At most this many emails' failures are remembered (older ones are dropped first).
const MAX_TRACKED_EMAILS: usize = 100_000;
/// Expired sessions are swept at most this often.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// The body of a sign-up.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUp {
    /// The email address (unique regardless of case).
    pub email: String,
    /// The developer's name.
    pub name: String,
    /// The password (write-only): 12 to 1024 characters, not the email address.
    #[schema(value_type = String, write_only)]
    pub password: Secret,
}

/// The body of a log-in.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogIn {
    /// The email address (any case).
    pub email: String,
    /// The password.
    #[schema(value_type = String, write_only)]
    pub password: Secret,
}

/// A catalogue entry as developers see it (only entries with DCR enabled are listed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PortalEntry {
    /// The entry's id (what `catalogue_entries` of a client request names).
    pub id: String,
    /// The name.
    pub name: String,
    /// The description.
    pub description: String,
    /// A link to the API's documentation.
    pub documentation_url: Option<String>,
}

/// A new session: the id for the cookie, and when it expires.
#[derive(Debug)]
pub struct NewSession {
    /// The session id (only ever sent in the `Set-Cookie` header).
    pub id: Secret,
    /// Its lifetime.
    pub max_age: Duration,
    /// The developer signed in.
    pub developer: Developer,
}

/// A session as stored (under the digest of its id).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSession {
    developer_id: String,
    /// Seconds since the epoch.
    expires_at: u64,
}

/// An email's failed log-ins.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: SystemTime,
}

/// The portal's in-memory state: log-in failures, the last session sweep, the dummy hash.
#[derive(Debug, Default)]
pub(crate) struct PortalRuntime {
    failures: Mutex<HashMap<String, Failures>>,
    last_sweep: Mutex<Option<SystemTime>>,
    dummy_hash: OnceLock<String>,
}

/// The delay that `count` failures impose after the last one.
fn lockout(count: u32) -> Duration {
    if count < FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (count - FREE_FAILURES).min(20);
    Duration::from_secs(1u64 << doublings).min(MAX_LOCKOUT)
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |duration| duration.as_secs())
}

fn session_key(id: &str) -> Vec<u8> {
    Sha256::digest(id.as_bytes()).to_vec()
}

/// The portal's accounts and sessions.
#[derive(Debug, Clone, Copy)]
pub struct Portal<'a> {
    state: &'a AppState,
}

impl<'a> Portal<'a> {
    pub(crate) fn new(state: &'a AppState) -> Self {
        Portal { state }
    }

    /// Creates an account and signs it in. 409 if the email is taken.
    pub async fn sign_up(&self, input: SignUp) -> Result<NewSession, ApiError> {
        if input.password.expose().trim().to_lowercase() == input.email.trim().to_lowercase() {
            return Err(ApiError::invalid(
                "password",
                "must not be the email address",
            ));
        }
        let developer = self
            .state
            .developers()
            .create(
                &Actor::System,
                NewDeveloper {
                    email: input.email,
                    name: input.name,
                    password: input.password,
                },
            )
            .await?;
        self.open_session(developer.value)
    }

    /// Checks the credentials (see the module docs) and opens a session.
    pub async fn log_in(&self, input: LogIn) -> Result<NewSession, ApiError> {
        let email = input.email.trim().to_lowercase();
        let now = self.state.now();
        self.check_throttle(&email, now)?;
        let stored = self.find(&email)?;
        let hash = match &stored {
            Some(stored) => stored.password_hash.clone(),
            None => self.dummy_hash().await?,
        };
        let valid = verify(input.password, hash).await? && stored.is_some();
        let Some(stored) = stored.filter(|_| valid) else {
            self.record_failure(email, now);
            return Err(ApiError::InvalidCredentials);
        };
        self.forget_failures(&email);
        if stored.developer.state != DeveloperState::Active {
            return Err(ApiError::AccountDisabled);
        }
        self.sweep_sessions(now);
        self.open_session(stored.developer)
    }

    /// The active developer of a session id; 401 `unauthenticated` when the session does not
    /// exist, expired, or its developer is gone or disabled (the session is then removed).
    pub fn session(&self, id: &str) -> Result<Developer, ApiError> {
        let key = session_key(id);
        let Some(session) = self
            .state
            .load_from::<StoredSession>(Tree::Sessions, &key)?
        else {
            return Err(ApiError::Unauthenticated);
        };
        let developer = if unix(self.state.now()) < session.expires_at {
            self.state
                .load::<StoredDeveloper>(&session.developer_id)?
                .map(|stored| stored.value.developer)
                .filter(|developer| developer.state == DeveloperState::Active)
        } else {
            None
        };
        match developer {
            Some(developer) => Ok(developer),
            None => {
                self.state
                    .store()
                    .write_unversioned(&[Write::remove(Tree::Sessions, key)])?;
                Err(ApiError::Unauthenticated)
            }
        }
    }

    /// Ends a session (nothing happens for an unknown one).
    pub fn log_out(&self, id: &str) -> Result<(), ApiError> {
        self.state
            .store()
            .write_unversioned(&[Write::remove(Tree::Sessions, session_key(id))])?;
        Ok(())
    }

    /// The catalogue entries developers can register clients for.
    pub fn catalogue(&self) -> Result<Vec<PortalEntry>, ApiError> {
        let mut entries = Vec::new();
        for entry in self.state.load_all::<CatalogueEntry>()? {
            let entry = entry.value;
            if self.state.dcr().effective(&entry.id)?.settings.enabled {
                entries.push(PortalEntry {
                    id: entry.id,
                    name: entry.name,
                    description: entry.description,
                    documentation_url: entry.documentation_url,
                });
            }
        }
        Ok(entries)
    }

    fn open_session(&self, developer: Developer) -> Result<NewSession, ApiError> {
        let id = random_token()?;
        let session = StoredSession {
            developer_id: developer.id.clone(),
            expires_at: unix(self.state.now()) + SESSION_LIFETIME.as_secs(),
        };
        let bytes =
            serde_json::to_vec(&session).map_err(|error| ApiError::Internal(error.into()))?;
        self.state.store().write_unversioned(&[Write::put(
            Tree::Sessions,
            session_key(id.expose()),
            bytes,
        )])?;
        Ok(NewSession {
            id,
            max_age: SESSION_LIFETIME,
            developer,
        })
    }

    fn find(&self, email: &str) -> Result<Option<StoredDeveloper>, ApiError> {
        let Some(id) = self
            .state
            .store()
            .get(Tree::DeveloperEmails, &email_key(email))?
        else {
            return Ok(None);
        };
        let id = String::from_utf8_lossy(&id).into_owned();
        Ok(self
            .state
            .load::<StoredDeveloper>(&id)?
            .map(|stored| stored.value))
    }

    async fn dummy_hash(&self) -> Result<String, ApiError> {
        let runtime = self.state.portal_runtime();
        if let Some(hash) = runtime.dummy_hash.get() {
            return Ok(hash.clone());
        }
        let hash = tokio::task::spawn_blocking(|| {
            Argon2::default()
                .hash_password(b"portico dummy password for unknown accounts")
                .map(|hash| hash.to_string())
                .map_err(|error| ApiError::Internal(anyhow::anyhow!("hashing: {error}")))
        })
        .await
        .map_err(|error| ApiError::Internal(error.into()))??;
        Ok(runtime.dummy_hash.get_or_init(|| hash).clone())
    }

    fn check_throttle(&self, email: &str, now: SystemTime) -> Result<(), ApiError> {
        let failures = self.failures();
        let Some(entry) = failures.get(email) else {
            return Ok(());
        };
        let until = entry.last + lockout(entry.count);
        match until.duration_since(now) {
            Ok(wait) if !wait.is_zero() => Err(ApiError::TooManyAttempts {
                retry_after: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            }),
            _ => Ok(()),
        }
    }

    fn record_failure(&self, email: String, now: SystemTime) {
        let mut failures = self.failures();
        if failures.len() >= MAX_TRACKED_EMAILS {
            failures.retain(|_, entry| {
                now.duration_since(entry.last)
                    .is_ok_and(|age| age < FAILURE_MEMORY)
            });
        }
        let entry = failures.entry(email).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now
            .duration_since(entry.last)
            .is_ok_and(|age| age >= FAILURE_MEMORY)
        {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
    }

    fn forget_failures(&self, email: &str) {
        self.failures().remove(email);
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        // Counters hold no invariant that a panicking holder could break.
        self.state
            .portal_runtime()
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes expired sessions, at most once per [`SWEEP_INTERVAL`].
    fn sweep_sessions(&self, now: SystemTime) {
        {
            let mut last = self
                .state
                .portal_runtime()
                .last_sweep
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|last| {
                now.duration_since(last)
                    .is_ok_and(|age| age < SWEEP_INTERVAL)
            }) {
                return;
            }
            *last = Some(now);
        }
        let now = unix(now);
        let expired: Vec<Write> = self
            .state
            .store()
            .scan(Tree::Sessions, None, Order::Ascending)
            .filter_map(Result::ok)
            .filter(|(_, bytes)| {
                serde_json::from_slice::<StoredSession>(bytes)
                    .map_or(true, |session| session.expires_at <= now)
            })
            .map(|(key, _)| Write::remove(Tree::Sessions, key))
            .collect();
        if !expired.is_empty()
            && let Err(error) = self.state.store().write_unversioned(&expired)
        {
            tracing::warn!(%error, "could not sweep expired portal sessions");
        }
    }
}

/// A random 256-bit session id, base64url.
fn random_token() -> Result<Secret, ApiError> {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut())
        .map_err(|error| ApiError::Internal(anyhow::anyhow!("no randomness: {error}")))?;
    Ok(Secret::new(URL_SAFE_NO_PAD.encode(bytes.as_ref())))
}

/// Verifies a password against a PHC hash off the async threads.
async fn verify(password: Secret, hash: String) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        let Ok(hash) = PasswordHash::new(&hash) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.expose().as_bytes(), &hash)
            .is_ok()
    })
    .await
    .map_err(|error| ApiError::Internal(error.into()))
}

#[cfg(test)]
mod tests;
