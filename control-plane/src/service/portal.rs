//! The developer portal's accounts: sign-up, log-in, sessions, log-out, password changes,
//! the self sign-up switch, and the catalogue as developers see it.
//!
//! - Passwords: see [`passwords`](super::passwords) (NIST SP 800-63B policy, argon2id hashing
//!   bounded in concurrency).
//! - Log-in answers the same 401 `invalid_credentials` for an unknown email and a wrong
//!   password, after the same work (an unknown email is checked against a dummy argon2id
//!   hash). A disabled account with the right password is 403 `account_disabled`. An email
//!   longer than 254 bytes or a password longer than 1024 bytes is refused before anything
//!   else (no such account can exist).
//! - Throttling, per email (any case) and per client address: every attempt is charged
//!   **before** the password is checked, so concurrent guesses cannot exceed the budget.
//!   After [`FREE_FAILURES`] attempts for one email (or [`FREE_ADDRESS_FAILURES`] from one
//!   address), each further attempt must wait twice as long as the previous one (1 s, 2 s,
//!   4 s, … up to [`MAX_LOCKOUT`]), answered 429 `too_many_attempts` with `Retry-After` and
//!   without checking the password. A successful log-in forgets the email's count and takes
//!   back its own charge from the address. Counts are forgotten an hour after the last
//!   attempt; each table holds at most [`MAX_TRACKED_KEYS`] keys (about 3 MiB for emails).
//! - Sessions: a random 256-bit id, sent only in the cookie; the store keeps its SHA-256 digest
//!   with the developer, the developer's session epoch, the creation and last-use times. A
//!   session ends [`SESSION_LIFETIME`] after log-in, after [`SESSION_IDLE_TIMEOUT`] without a
//!   request, at log-out, and for good when the developer is disabled or their password is
//!   reset or changed (each moves the developer's session epoch on). A developer has at most
//!   [`MAX_SESSIONS_PER_DEVELOPER`] sessions: a new one ends the least recently used. Each
//!   log-in opens a new session id (no fixation) and ends the one the browser had.
//! - Self sign-up: on unless configuration or the admin API switched it off; then sign-up is
//!   403 `signup_disabled` and only operators create developers.

use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::apis::Api;
use super::catalogue::CatalogueEntry;
use super::developers::{
    Developer, DeveloperState, MAX_EMAIL_LEN, NewDeveloper, PasswordReset, StoredDeveloper,
    email_key,
};
use super::passwords::MAX_PASSWORD_BYTES;
use super::policies::Policy;
use super::throttle::{FailureThrottle, retry_after};
use super::{Actor, AppState, Precondition, ResourceKind, ResourceRef, Versioned};
use crate::error::ApiError;
use crate::secret::Secret;
use crate::store::{Order, Tree, Write};
use portico_core::snapshot::{QuotaSpec as Quota, RateLimitSpec as RateLimit};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "portico_session";
/// How long a session lasts after log-in.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// A session unused for this long is over.
pub const SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The most sessions one developer may have at once.
pub const MAX_SESSIONS_PER_DEVELOPER: usize = 10;
/// Log-in attempts per email before attempts are delayed.
pub const FREE_FAILURES: u32 = 5;
/// Failed log-in attempts per client address before attempts are delayed.
pub const FREE_ADDRESS_FAILURES: u32 = 20;
/// The longest delay between two log-in attempts.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// After this long without an attempt, a key's failures are forgotten.
const FAILURE_MEMORY: Duration = Duration::from_secs(60 * 60);
/// At most this many emails (and, separately, addresses) are tracked by the log-in throttle.
pub const MAX_TRACKED_KEYS: usize = 10_000;
/// Expired sessions are swept at most this often.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// A session's last use is written at most this often (reads in between do not write).
const LAST_USE_GRANULARITY: Duration = Duration::from_secs(60);
/// Where the self sign-up switch is stored in the settings tree.
const SETTINGS_KEY: &str = "portal";

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

/// A catalogue entry's page: the entry and what its policy grants.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryDetail {
    /// The entry.
    pub entry: PortalEntry,
    /// The APIs the entry's policy grants, in the policy's order.
    pub grants: Vec<Grant>,
    /// The policy's rate limit, per client.
    pub rate_limit: Option<RateLimit>,
    /// The policy's quota, per client.
    pub quota: Option<Quota>,
    /// How long a registration keeps its access, in seconds; none: for ever.
    pub lifetime_seconds: Option<u64>,
    /// Whether developers renew that access in the portal (else an operator extends it).
    pub renewable: bool,
}

/// Access to one API, as a developer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The API's name.
    pub api_name: String,
    /// Where the gateway serves it.
    pub listen_path: String,
    /// Allowed methods; empty: all.
    pub methods: Vec<String>,
    /// Allowed path prefixes; empty: the whole API.
    pub path_prefixes: Vec<String>,
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

/// The body of a password change by the developer.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The current password.
    #[schema(value_type = String, write_only)]
    pub current_password: Secret,
    /// The new password, under the sign-up policy.
    #[schema(value_type = String, write_only)]
    pub new_password: Secret,
}

/// The portal's settings that operators change at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortalSettings {
    /// Whether developers may sign themselves up. Off: the sign-up page says so, sign-up is
    /// 403 `signup_disabled`, and only operators create developers (admin API).
    pub self_signup: bool,
}

/// A session as stored (under the digest of its id).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSession {
    developer_id: String,
    /// The developer's session epoch when the session was opened.
    #[serde(default)]
    epoch: u64,
    /// Seconds since the epoch.
    expires_at: u64,
    /// Seconds since the epoch.
    #[serde(default)]
    last_used: u64,
}

/// The portal's in-memory state: the log-in throttles, the last session sweep, the dummy hash.
#[derive(Debug)]
pub(crate) struct PortalRuntime {
    emails: FailureThrottle<String>,
    addresses: FailureThrottle<IpAddr>,
    last_sweep: Mutex<Option<SystemTime>>,
    /// Computed once, by the first log-in for an unknown email; concurrent ones wait for it.
    dummy_hash: tokio::sync::OnceCell<String>,
}

impl Default for PortalRuntime {
    fn default() -> Self {
        PortalRuntime {
            emails: FailureThrottle::new(
                FREE_FAILURES,
                MAX_LOCKOUT,
                FAILURE_MEMORY,
                MAX_TRACKED_KEYS,
            ),
            addresses: FailureThrottle::new(
                FREE_ADDRESS_FAILURES,
                MAX_LOCKOUT,
                FAILURE_MEMORY,
                MAX_TRACKED_KEYS,
            ),
            last_sweep: Mutex::new(None),
            dummy_hash: tokio::sync::OnceCell::new(),
        }
    }
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |duration| duration.as_secs())
}

fn session_key(id: &str) -> Vec<u8> {
    Sha256::digest(id.as_bytes()).to_vec()
}

fn index_prefix(developer_id: &str) -> Vec<u8> {
    let mut prefix = developer_id.as_bytes().to_vec();
    prefix.push(0);
    prefix
}

fn index_key(developer_id: &str, key: &[u8]) -> Vec<u8> {
    let mut index = index_prefix(developer_id);
    index.extend_from_slice(key);
    index
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

    /// Whether self sign-up is on: the admin API's setting, else the configuration's.
    pub fn settings(&self) -> Result<Versioned<PortalSettings>, ApiError> {
        self.state.setting(SETTINGS_KEY, || self.default_settings())
    }

    /// Replaces the portal settings (an operator, through the admin API). Writing the
    /// settings they already hold answers the current revision without committing.
    pub async fn put_settings(
        &self,
        actor: &Actor,
        precondition: &Precondition,
        settings: PortalSettings,
    ) -> Result<Versioned<PortalSettings>, ApiError> {
        let resource = ResourceRef::new(ResourceKind::PortalSettings, "portal");
        self.state
            .put_setting(
                actor,
                precondition,
                (SETTINGS_KEY, resource),
                settings,
                || self.default_settings(),
            )
            .await
    }

    fn default_settings(&self) -> PortalSettings {
        PortalSettings {
            self_signup: self.state.settings().portal.self_signup,
        }
    }

    /// Creates an account and signs it in. 403 when self sign-up is off, 409 if the email is
    /// taken.
    pub async fn sign_up(&self, input: SignUp) -> Result<NewSession, ApiError> {
        if !self.settings()?.value.self_signup {
            return Err(ApiError::SignupDisabled);
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
        self.open_session(developer.value, 0)
    }

    /// Checks the credentials (see the module docs) and opens a session. `address` is the
    /// client's address, when known.
    pub async fn log_in(
        &self,
        input: LogIn,
        address: Option<IpAddr>,
    ) -> Result<NewSession, ApiError> {
        let email = input.email.trim().to_lowercase();
        if email.len() > MAX_EMAIL_LEN || input.password.expose().len() > MAX_PASSWORD_BYTES {
            return Err(ApiError::InvalidCredentials);
        }
        // A place in the hashing queue first: a log-in shed in a flood is not counted.
        let place = self.state.hasher().reserve()?;
        let now = self.state.now();
        self.charge_attempt(&email, address, now)?;
        let stored = self.find(&email)?;
        let hash = match &stored {
            Some(stored) => stored.password_hash.clone(),
            None => self.dummy_hash().await?,
        };
        let valid = place.verify(&input.password, hash).await? && stored.is_some();
        let Some(stored) = stored.filter(|_| valid) else {
            return Err(ApiError::InvalidCredentials);
        };
        let runtime = self.state.portal_runtime();
        runtime.emails.forget(&email);
        if let Some(address) = address {
            runtime.addresses.refund(&address);
        }
        if stored.developer.state != DeveloperState::Active {
            return Err(ApiError::AccountDisabled);
        }
        self.sweep_sessions(now);
        self.open_session(stored.developer, stored.session_epoch)
    }

    /// Changes the signed-in developer's password after checking the current one: every
    /// session of the developer ends, and a new one is opened for this browser.
    pub async fn change_password(
        &self,
        developer: &Developer,
        input: PasswordChange,
    ) -> Result<NewSession, ApiError> {
        let stored = self.state.fetch::<StoredDeveloper>(&developer.id)?.value;
        if input.current_password.expose().len() > MAX_PASSWORD_BYTES
            || !self
                .state
                .hasher()
                .verify(&input.current_password, stored.password_hash)
                .await?
        {
            return Err(ApiError::invalid(
                "current_password",
                "is not your current password",
            ));
        }
        self.state
            .developers()
            .reset_password(
                &Actor::Developer {
                    id: developer.id.clone(),
                },
                &developer.id,
                &Precondition::Missing,
                PasswordReset {
                    password: input.new_password,
                },
            )
            .await?;
        let stored = self.state.fetch::<StoredDeveloper>(&developer.id)?.value;
        self.open_session(stored.developer, stored.session_epoch)
    }

    /// The active developer of a session id; 401 `unauthenticated` when the session does not
    /// exist, expired, sat idle too long, belongs to an earlier epoch of its developer, or its
    /// developer is gone or disabled (the session is then removed). A use is recorded at most
    /// once a minute.
    pub fn session(&self, id: &str) -> Result<Developer, ApiError> {
        let key = session_key(id);
        let Some(mut session) = self
            .state
            .load_from::<StoredSession>(Tree::Sessions, &key)?
        else {
            return Err(ApiError::Unauthenticated);
        };
        let now = unix(self.state.now());
        let live = now < session.expires_at
            && now
                < session
                    .last_used
                    .saturating_add(SESSION_IDLE_TIMEOUT.as_secs());
        let developer = if live {
            self.state
                .load::<StoredDeveloper>(&session.developer_id)?
                .map(|stored| stored.value)
                .filter(|stored| {
                    stored.developer.state == DeveloperState::Active
                        && stored.session_epoch == session.epoch
                })
                .map(|stored| stored.developer)
        } else {
            None
        };
        let Some(developer) = developer else {
            self.end(&session.developer_id, &key)?;
            return Err(ApiError::Unauthenticated);
        };
        if now >= session.last_used + LAST_USE_GRANULARITY.as_secs() {
            session.last_used = now;
            let bytes =
                serde_json::to_vec(&session).map_err(|error| ApiError::Internal(error.into()))?;
            self.state
                .store()
                .write_unversioned(&[Write::put(Tree::Sessions, key, bytes)])?;
        }
        Ok(developer)
    }

    /// Ends a session (nothing happens for an unknown one).
    pub fn log_out(&self, id: &str) -> Result<(), ApiError> {
        let key = session_key(id);
        match self
            .state
            .load_from::<StoredSession>(Tree::Sessions, &key)?
        {
            Some(session) => self.end(&session.developer_id, &key),
            None => Ok(()),
        }
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

    /// One listed catalogue entry with what its policy grants; 404 for an entry that does not
    /// exist or is not listed (DCR not enabled).
    pub fn entry(&self, id: &str) -> Result<EntryDetail, ApiError> {
        let entry = self
            .catalogue()?
            .into_iter()
            .find(|entry| entry.id == id)
            .ok_or_else(|| ApiError::NotFound {
                kind: "catalogue entry",
                id: id.to_owned(),
            })?;
        let catalogue_entry = self.state.fetch::<CatalogueEntry>(id)?.value;
        let policy = self.state.load::<Policy>(&catalogue_entry.policy)?;
        let mut grants = Vec::new();
        let (mut rate_limit, mut quota, mut lifetime_seconds) = (None, None, None);
        if let Some(policy) = policy.map(|policy| policy.value) {
            rate_limit = policy.rate_limit;
            quota = policy.quota;
            lifetime_seconds = policy.lifetime_seconds;
            for right in policy.access_rights {
                if let Some(api) = self.state.load::<Api>(&right.api)? {
                    grants.push(Grant {
                        api_name: api.value.name,
                        listen_path: api.value.listen_path,
                        methods: right.methods,
                        path_prefixes: right.path_prefixes,
                    });
                }
            }
        }
        Ok(EntryDetail {
            entry,
            grants,
            rate_limit,
            quota,
            lifetime_seconds,
            renewable: catalogue_entry.renewable,
        })
    }

    /// Charges a log-in attempt to the email and the address, or says how long to wait.
    fn charge_attempt(
        &self,
        email: &str,
        address: Option<IpAddr>,
        now: SystemTime,
    ) -> Result<(), ApiError> {
        let runtime = self.state.portal_runtime();
        let email_wait = runtime.emails.wait(&email.to_owned(), now);
        let address_wait = address.map_or(Duration::ZERO, |address| {
            runtime.addresses.wait(&address, now)
        });
        let wait = email_wait.max(address_wait);
        if !wait.is_zero() {
            return Err(ApiError::TooManyAttempts {
                retry_after: retry_after(wait),
            });
        }
        runtime.emails.charge(email.to_owned(), now);
        if let Some(address) = address {
            runtime.addresses.charge(address, now);
        }
        Ok(())
    }

    fn open_session(&self, developer: Developer, epoch: u64) -> Result<NewSession, ApiError> {
        let id = random_token()?;
        let now = unix(self.state.now());
        let session = StoredSession {
            developer_id: developer.id.clone(),
            epoch,
            expires_at: now + SESSION_LIFETIME.as_secs(),
            last_used: now,
        };
        let bytes =
            serde_json::to_vec(&session).map_err(|error| ApiError::Internal(error.into()))?;
        let key = session_key(id.expose());
        let mut writes = self.over_cap(&developer.id)?;
        writes.push(Write::put(Tree::Sessions, key.clone(), bytes));
        writes.push(Write::put(
            Tree::DeveloperSessions,
            index_key(&developer.id, &key),
            now.to_be_bytes().to_vec(),
        ));
        self.state.store().write_unversioned(&writes)?;
        Ok(NewSession {
            id,
            max_age: SESSION_LIFETIME,
            developer,
        })
    }

    /// The removals that leave room for one more session of the developer: sessions that are
    /// gone or over, then the least recently used ones beyond the cap.
    fn over_cap(&self, developer_id: &str) -> Result<Vec<Write>, ApiError> {
        let prefix = index_prefix(developer_id);
        let now = unix(self.state.now());
        let mut live = Vec::new();
        let mut writes = Vec::new();
        for entry in
            self.state
                .store()
                .scan(Tree::DeveloperSessions, Some(&prefix), Order::Ascending)
        {
            let (index, _) = entry?;
            if !index.starts_with(&prefix) {
                break;
            }
            let key = index[prefix.len()..].to_vec();
            match self
                .state
                .load_from::<StoredSession>(Tree::Sessions, &key)?
            {
                Some(session)
                    if now < session.expires_at
                        && now < session.last_used + SESSION_IDLE_TIMEOUT.as_secs() =>
                {
                    live.push((session.last_used, key, index));
                }
                _ => {
                    writes.push(Write::remove(Tree::Sessions, key));
                    writes.push(Write::remove(Tree::DeveloperSessions, index));
                }
            }
        }
        live.sort();
        let excess = (live.len() + 1).saturating_sub(MAX_SESSIONS_PER_DEVELOPER);
        for (_, key, index) in live.into_iter().take(excess) {
            writes.push(Write::remove(Tree::Sessions, key));
            writes.push(Write::remove(Tree::DeveloperSessions, index));
        }
        Ok(writes)
    }

    /// Removes a session and its index entry.
    fn end(&self, developer_id: &str, key: &[u8]) -> Result<(), ApiError> {
        self.state.store().write_unversioned(&[
            Write::remove(Tree::Sessions, key.to_vec()),
            Write::remove(Tree::DeveloperSessions, index_key(developer_id, key)),
        ])?;
        Ok(())
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
        let hasher = self.state.hasher();
        self.state
            .portal_runtime()
            .dummy_hash
            .get_or_try_init(|| async move {
                hasher
                    .hash(&Secret::new("portico dummy password for unknown accounts"))
                    .await
            })
            .await
            .cloned()
    }

    /// Removes expired and idle sessions, at most once per [`SWEEP_INTERVAL`].
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
            .filter_map(|(key, bytes)| {
                let session = serde_json::from_slice::<StoredSession>(&bytes).ok();
                let over = session.as_ref().is_none_or(|session| {
                    session.expires_at <= now
                        || session.last_used + SESSION_IDLE_TIMEOUT.as_secs() <= now
                });
                over.then(|| {
                    let mut writes = vec![Write::remove(Tree::Sessions, key.clone())];
                    if let Some(session) = session {
                        writes.push(Write::remove(
                            Tree::DeveloperSessions,
                            index_key(&session.developer_id, &key),
                        ));
                    }
                    writes
                })
            })
            .flatten()
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

#[cfg(test)]
mod tests;
