//! A bounded cache of token verification results, so that a token seen before costs a hash
//! instead of a signature check.
//!
//! Entries are keyed by a keyed 128-bit SipHash of the API id and the whole token: the key is
//! random per VM, so nobody can craft two tokens that share an entry. Valid entries expire with
//! their token; refusals (bad signatures, which are what a forged-token flood costs) are kept
//! for a short while. The whole cache is dropped whenever keys or APIs change.
//!
//! Two generations bound the size without per-entry bookkeeping: new entries go to the current
//! generation; when it holds `capacity` entries, it becomes the previous one and the old
//! previous one is dropped. A hit in the previous generation moves the entry forward, so hot
//! tokens stay. The cache therefore always holds the `capacity` most recently inserted entries,
//! and at most twice that: a working set of `capacity` tokens, cycled in any order, always hits.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::Duration;

use siphasher::sip128::{Hasher128 as _, SipHasher13};

use crate::token::TokenError;

/// How long a refusal is remembered.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(60);
/// How long a valid token without `exp` is remembered.
pub const NO_EXPIRY_TTL: Duration = Duration::from_secs(300);

/// What verification established about a caller, kept for the token's lifetime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCaller {
    /// The caller's identity (the first present identity claim).
    pub identity: Arc<str>,
    /// The other OAuth clients the token names as the one it was issued to
    /// ([`crate::policy::client_ids`]), without the identity: a revocation of any refuses it.
    pub clients: Box<[Arc<str>]>,
    /// The policy ids named in the token's policy claim.
    pub claimed_policies: Box<[Box<str>]>,
    /// The index of the issuer (among the API's issuers) that signed the token.
    pub issuer_index: usize,
}

/// A cached outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The token verified.
    Valid(Arc<VerifiedCaller>),
    /// The token was refused for a reason that will not change while the keys stay the same.
    Invalid(TokenError),
}

/// A cache key: a keyed hash of the API id and the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey(u128);

#[derive(Clone, Debug)]
struct Entry {
    verdict: Verdict,
    expires_at: Duration,
}

/// The keys are already uniform hashes; hashing them again would only cost time.
#[derive(Default)]
struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }
    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }
}

type Generation = HashMap<CacheKey, Entry, BuildHasherDefault<PassThroughHasher>>;

/// The verification cache of one VM.
pub struct TokenCache {
    hash_key: [u8; 16],
    generation_size: usize,
    current: Generation,
    previous: Generation,
    counts: CacheCounts,
}

/// Lookups in a [`TokenCache`] since the counts were last taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheCounts {
    /// Lookups that found a verdict still valid.
    pub hits: u64,
    /// Lookups that found none (absent or expired): the token was verified.
    pub misses: u64,
}

// === impl TokenCache ===

impl TokenCache {
    /// A cache that keeps at least the `capacity` most recent entries (and at most twice as
    /// many), hashing with the secret `hash_key` (random per VM). A capacity of zero disables
    /// caching.
    pub fn new(capacity: usize, hash_key: [u8; 16]) -> Self {
        let generation_size = capacity;
        TokenCache {
            hash_key,
            generation_size,
            current: Generation::with_capacity_and_hasher(
                generation_size.min(4096),
                Default::default(),
            ),
            previous: Generation::default(),
            counts: CacheCounts::default(),
        }
    }

    /// The hits and misses since the last call (for metrics).
    pub fn take_counts(&mut self) -> CacheCounts {
        std::mem::take(&mut self.counts)
    }

    /// The key for `token` presented to API `api`.
    pub fn key(&self, api: &str, token: &str) -> CacheKey {
        let mut hasher = SipHasher13::new_with_key(&self.hash_key);
        hasher.write(api.as_bytes());
        hasher.write_u8(0xff);
        hasher.write(token.as_bytes());
        CacheKey(hasher.finish128().as_u128())
    }

    /// The cached verdict, unless absent or expired at `now`; counted as a hit or a miss.
    pub fn get(&mut self, key: CacheKey, now: Duration) -> Option<Verdict> {
        let verdict = self.lookup(key, now);
        if verdict.is_some() {
            self.counts.hits = self.counts.hits.saturating_add(1);
        } else {
            self.counts.misses = self.counts.misses.saturating_add(1);
        }
        verdict
    }

    fn lookup(&mut self, key: CacheKey, now: Duration) -> Option<Verdict> {
        if let Some(entry) = self.current.get(&key) {
            if entry.expires_at > now {
                return Some(entry.verdict.clone());
            }
            self.current.remove(&key);
            return None;
        }
        let entry = self.previous.remove(&key)?;
        if entry.expires_at <= now {
            return None;
        }
        let verdict = entry.verdict.clone();
        self.store(key, entry);
        Some(verdict)
    }

    /// Remembers a verdict until `expires_at`.
    pub fn insert(&mut self, key: CacheKey, verdict: Verdict, expires_at: Duration) {
        if self.generation_size == 0 {
            return;
        }
        self.store(
            key,
            Entry {
                verdict,
                expires_at,
            },
        );
    }

    /// Forgets everything (keys or APIs changed).
    pub fn clear(&mut self) {
        self.current.clear();
        self.previous.clear();
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn store(&mut self, key: CacheKey, entry: Entry) {
        if self.current.len() >= self.generation_size && !self.current.contains_key(&key) {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, entry);
    }
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("generation_size", &self.generation_size)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Duration = Duration::from_secs(1_800_000_000);

    fn caller(id: &str) -> Verdict {
        Verdict::Valid(Arc::new(VerifiedCaller {
            identity: Arc::from(id),
            clients: Box::new([]),
            claimed_policies: Box::new([]),
            issuer_index: 0,
        }))
    }

    #[test]
    fn returns_what_was_stored_until_it_expires() {
        let mut cache = TokenCache::new(10, [7; 16]);
        let key = cache.key("orders", "t1");
        cache.insert(key, caller("a"), NOW + Duration::from_secs(5));
        assert_eq!(cache.get(key, NOW), Some(caller("a")));
        assert_eq!(cache.get(key, NOW + Duration::from_secs(5)), None);
        assert!(cache.is_empty());
    }

    #[test]
    fn counts_hits_and_misses_until_taken() {
        let mut cache = TokenCache::new(10, [7; 16]);
        let key = cache.key("orders", "t1");
        assert_eq!(cache.get(key, NOW), None);
        cache.insert(key, caller("a"), NOW + Duration::from_secs(5));
        assert!(cache.get(key, NOW).is_some());
        assert!(cache.get(key, NOW).is_some());
        assert_eq!(cache.get(key, NOW + Duration::from_secs(5)), None);
        assert_eq!(cache.take_counts(), CacheCounts { hits: 2, misses: 2 });
        assert_eq!(cache.take_counts(), CacheCounts::default());
    }

    #[test]
    fn keys_differ_by_api_token_and_secret() {
        let cache = TokenCache::new(10, [1; 16]);
        let other_secret = TokenCache::new(10, [2; 16]);
        let key = cache.key("orders", "token");
        assert_ne!(key, cache.key("payments", "token"));
        assert_ne!(key, cache.key("orders", "token2"));
        assert_ne!(key, cache.key("orderst", "oken"));
        assert_ne!(key, other_secret.key("orders", "token"));
        assert_eq!(key, cache.key("orders", "token"));
    }

    #[test]
    fn never_holds_more_than_twice_its_capacity() {
        let mut cache = TokenCache::new(100, [3; 16]);
        for n in 0..1_000 {
            let key = cache.key("api", &format!("token-{n}"));
            cache.insert(key, caller("x"), NOW + Duration::from_secs(60));
            assert!(cache.len() <= 200, "{} entries after {n}", cache.len());
        }
    }

    #[test]
    fn a_working_set_of_capacity_tokens_cycled_in_order_always_hits() {
        let mut cache = TokenCache::new(100, [8; 16]);
        let keys: Vec<CacheKey> = (0..100)
            .map(|n| cache.key("api", &format!("t{n}")))
            .collect();
        for key in &keys {
            cache.insert(*key, caller("x"), NOW + Duration::from_secs(60));
        }
        for round in 0..5 {
            for key in &keys {
                assert!(cache.get(*key, NOW).is_some(), "miss in round {round}");
            }
        }
    }

    #[test]
    fn hot_entries_survive_generation_turnover() {
        let mut cache = TokenCache::new(4, [4; 16]);
        let hot = cache.key("api", "hot");
        cache.insert(hot, caller("hot"), NOW + Duration::from_secs(60));
        for n in 0..20 {
            let key = cache.key("api", &format!("cold-{n}"));
            cache.insert(key, caller("cold"), NOW + Duration::from_secs(60));
            assert_eq!(cache.get(hot, NOW), Some(caller("hot")), "lost after {n}");
        }
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let mut cache = TokenCache::new(0, [5; 16]);
        let key = cache.key("api", "t");
        cache.insert(key, caller("a"), NOW + Duration::from_secs(60));
        assert_eq!(cache.get(key, NOW), None);
    }

    #[test]
    fn clear_forgets_everything() {
        let mut cache = TokenCache::new(10, [6; 16]);
        let key = cache.key("api", "t");
        cache.insert(
            key,
            Verdict::Invalid(TokenError::BadSignature),
            NOW + NEGATIVE_TTL,
        );
        assert_eq!(
            cache.get(key, NOW),
            Some(Verdict::Invalid(TokenError::BadSignature))
        );
        cache.clear();
        assert_eq!(cache.get(key, NOW), None);
    }
}
