//! Rate-limit and quota arithmetic over a shared counter store with compare-and-swap.
//!
//! Every worker of one Envoy has its own VM, so counters live in the host's shared data and are
//! updated with compare-and-swap: a lost race retries with the fresh value, so concurrent
//! workers never double-spend a slot.
//!
//! The rate limit is a GCRA (generic cell rate algorithm): one timestamp per caller and policy,
//! smooth refill, and a burst of the full allowance. The quota is a fixed window that starts
//! with the caller's first request.

use std::collections::HashMap;
use std::time::Duration;

use crate::snapshot::{QuotaSpec, RateLimitSpec};

/// How many times a lost compare-and-swap race is retried before the request is let through;
/// contention beyond this means the host is overloaded, and refusing traffic then would turn a
/// limiter into an outage.
pub const MAX_CAS_ATTEMPTS: usize = 8;

/// A whole allowance, in thousandths: the share of an Envoy alone in its fleet.
pub const FULL_SHARE: u32 = 1_000;

/// The share of every rate limit that one Envoy (filter instance) enforces, in thousandths
/// (1 to [`FULL_SHARE`]), from the rate-limited requests that each live instance reported over
/// the last few seconds: `own` is this instance's, `all` every live instance's (its own
/// included). Each instance keeps a floor of a quarter of an equal share, so that one that was
/// idle can serve a first burst; the rest follows the traffic. Without traffic anywhere, the
/// shares are equal. The shares of all instances add up to at most [`FULL_SHARE`] (rounding
/// down), so the fleet admits at most the limit plus one request per instance (each share's
/// allowance is rounded up: [`shared_spec`]). See `docs/limits.md`.
pub fn rate_share(own: u64, all: &[u64]) -> u32 {
    let instances = u128::try_from(all.len().max(1)).unwrap_or(u128::MAX);
    let full = u128::from(FULL_SHARE);
    let total: u128 = all.iter().map(|traffic| u128::from(*traffic)).sum();
    let floor = full / (4 * instances);
    let rest = full - floor * instances;
    let share = (rest * u128::from(own).min(total))
        .checked_div(total)
        .map_or(full / instances, |by_traffic| floor + by_traffic);
    u32::try_from(share.clamp(1, full)).unwrap_or(FULL_SHARE)
}

/// `spec` as one Envoy holding `share` thousandths enforces it: the requests scaled and
/// rounded up (at least 1), over the same period.
pub fn shared_spec(spec: RateLimitSpec, share: u32) -> RateLimitSpec {
    if share >= FULL_SHARE {
        return spec;
    }
    let scaled = (u64::from(spec.requests) * u64::from(share)).div_ceil(u64::from(FULL_SHARE));
    RateLimitSpec {
        requests: u32::try_from(scaled.max(1)).unwrap_or(spec.requests),
        per_seconds: spec.per_seconds,
    }
}

/// The host's shared key-value store, with a version token per value: rate-limit counters, and
/// the snapshot sync's lease and publication ([`crate::sync::SyncHost::shared`]).
pub trait CounterStore {
    /// The value under `key` and its version token, if there is one.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes `value` if the stored version is still `cas` (`None`: write unconditionally).
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasConflict>;
}

/// Another writer changed the value since it was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("value changed concurrently")]
pub struct CasConflict;

/// Where a caller stands against one limit, for `X-RateLimit-*` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitState {
    /// Requests allowed per period.
    pub limit: u64,
    /// Requests still allowed right now.
    pub remaining: u64,
    /// Until the allowance is whole again.
    pub reset_after: Duration,
    /// For a refused request: until one more request would pass.
    pub retry_after: Duration,
}

/// The outcome of charging one request against a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitOutcome {
    /// The request fits; it was counted.
    Allowed(LimitState),
    /// The request does not fit; nothing was counted.
    Exceeded(LimitState),
}

/// Charges one request against a GCRA rate limit under `key`.
pub fn charge_rate(
    store: &mut dyn CounterStore,
    key: &str,
    spec: RateLimitSpec,
    now: Duration,
) -> LimitOutcome {
    let period = nanos(Duration::from_secs(u64::from(spec.per_seconds)));
    let interval = (period / u128::from(spec.requests.max(1))).max(1);
    let now = nanos(now);
    let limit = u64::from(spec.requests);
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (stored, cas) = read_u128s::<1>(store, key);
        let tat = stored.map_or(now, |[tat]| tat.max(now));
        let new_tat = tat + interval;
        let horizon = now + period;
        if new_tat > horizon {
            return LimitOutcome::Exceeded(LimitState {
                limit,
                remaining: 0,
                reset_after: duration(tat - now),
                retry_after: duration(new_tat - horizon),
            });
        }
        if store.set(key, &new_tat.to_le_bytes(), cas).is_ok() {
            return LimitOutcome::Allowed(LimitState {
                limit,
                remaining: u64::try_from((horizon - new_tat) / interval).unwrap_or(u64::MAX),
                reset_after: duration(new_tat - now),
                retry_after: Duration::ZERO,
            });
        }
    }
    LimitOutcome::Allowed(LimitState {
        limit,
        remaining: 0,
        reset_after: Duration::ZERO,
        retry_after: Duration::ZERO,
    })
}

/// Charges one request against a fixed-window quota under `key`.
pub fn charge_quota(
    store: &mut dyn CounterStore,
    key: &str,
    spec: QuotaSpec,
    now: Duration,
) -> LimitOutcome {
    let window = nanos(Duration::from_secs(spec.renewal_seconds));
    let now = nanos(now);
    for _ in 0..MAX_CAS_ATTEMPTS {
        let (stored, cas) = read_u128s::<2>(store, key);
        let (start, used) = match stored {
            Some([start, used]) if now < start + window => (start, used),
            _ => (now, 0),
        };
        let reset_after = duration(start + window - now);
        let max = u128::from(spec.max);
        if used >= max {
            return LimitOutcome::Exceeded(LimitState {
                limit: spec.max,
                remaining: 0,
                reset_after,
                retry_after: reset_after,
            });
        }
        let mut value = [0u8; 32];
        value[..16].copy_from_slice(&start.to_le_bytes());
        value[16..].copy_from_slice(&(used + 1).to_le_bytes());
        if store.set(key, &value, cas).is_ok() {
            return LimitOutcome::Allowed(LimitState {
                limit: spec.max,
                remaining: u64::try_from(max - used - 1).unwrap_or(u64::MAX),
                reset_after,
                retry_after: Duration::ZERO,
            });
        }
    }
    LimitOutcome::Allowed(LimitState {
        limit: spec.max,
        remaining: 0,
        reset_after: Duration::ZERO,
        retry_after: Duration::ZERO,
    })
}

/// Reads `N` little-endian u128 values; a value of another size counts as absent, so that a
/// counter written by an incompatible version restarts instead of failing.
fn read_u128s<const N: usize>(
    store: &dyn CounterStore,
    key: &str,
) -> (Option<[u128; N]>, Option<u32>) {
    match store.get(key) {
        None => (None, None),
        Some((bytes, cas)) if bytes.len() == 16 * N => {
            let mut values = [0u128; N];
            for (value, chunk) in values.iter_mut().zip(bytes.chunks_exact(16)) {
                let mut raw = [0u8; 16];
                raw.copy_from_slice(chunk);
                *value = u128::from_le_bytes(raw);
            }
            (Some(values), Some(cas))
        }
        Some((_, cas)) => (None, Some(cas)),
    }
}

fn nanos(duration: Duration) -> u128 {
    duration.as_nanos()
}

fn duration(nanos: u128) -> Duration {
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// An in-process [`CounterStore`], for hosts without shared data and for tests.
#[derive(Clone, Debug, Default)]
pub struct MemoryCounters {
    values: HashMap<String, (Vec<u8>, u32)>,
}

// === impl MemoryCounters ===

impl CounterStore for MemoryCounters {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.values.get(key).cloned()
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasConflict> {
        let current = self.values.get(key).map(|(_, version)| *version);
        if cas.is_some() && cas != current {
            return Err(CasConflict);
        }
        let next = current.map_or(1, |version| version.wrapping_add(1));
        self.values.insert(key.to_owned(), (value.to_vec(), next));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Duration = Duration::from_secs(1_800_000_000);

    fn rate(requests: u32, per_seconds: u32) -> RateLimitSpec {
        RateLimitSpec {
            requests,
            per_seconds,
        }
    }

    fn allowed(outcome: LimitOutcome) -> bool {
        matches!(outcome, LimitOutcome::Allowed(_))
    }

    #[test]
    fn rate_limit_allows_a_full_burst_then_refuses() {
        let mut store = MemoryCounters::default();
        for n in 0..10 {
            match charge_rate(&mut store, "k", rate(10, 60), T0) {
                LimitOutcome::Allowed(state) => assert_eq!(state.remaining, 9 - n),
                other @ LimitOutcome::Exceeded(_) => panic!("request {n} refused: {other:?}"),
            }
        }
        match charge_rate(&mut store, "k", rate(10, 60), T0) {
            LimitOutcome::Exceeded(state) => {
                assert_eq!(state.remaining, 0);
                assert_eq!(state.retry_after, Duration::from_secs(6));
                assert_eq!(state.reset_after, Duration::from_secs(60));
            }
            other @ LimitOutcome::Allowed(_) => panic!("11th request allowed: {other:?}"),
        }
    }

    #[test]
    fn rate_limit_refills_one_slot_per_interval() {
        let mut store = MemoryCounters::default();
        for _ in 0..10 {
            charge_rate(&mut store, "k", rate(10, 60), T0);
        }
        let almost = T0 + Duration::from_millis(5_999);
        assert!(!allowed(charge_rate(&mut store, "k", rate(10, 60), almost)));
        let refilled = T0 + Duration::from_secs(6);
        assert!(allowed(charge_rate(
            &mut store,
            "k",
            rate(10, 60),
            refilled
        )));
        assert!(!allowed(charge_rate(
            &mut store,
            "k",
            rate(10, 60),
            refilled
        )));
    }

    #[test]
    fn rate_limit_keys_are_independent() {
        let mut store = MemoryCounters::default();
        assert!(allowed(charge_rate(&mut store, "a", rate(1, 1), T0)));
        assert!(!allowed(charge_rate(&mut store, "a", rate(1, 1), T0)));
        assert!(allowed(charge_rate(&mut store, "b", rate(1, 1), T0)));
    }

    #[test]
    fn rate_limit_handles_sub_millisecond_intervals() {
        let mut store = MemoryCounters::default();
        let spec = rate(100_000, 1);
        let passed = (0..100_001)
            .filter(|_| allowed(charge_rate(&mut store, "k", spec, T0)))
            .count();
        assert_eq!(passed, 100_000);
        assert!(allowed(charge_rate(
            &mut store,
            "k",
            spec,
            T0 + Duration::from_micros(10)
        )));
    }

    #[test]
    fn quota_counts_within_a_window_and_renews_after_it() {
        let mut store = MemoryCounters::default();
        let spec = QuotaSpec {
            max: 3,
            renewal_seconds: 3600,
        };
        for remaining in [2, 1, 0] {
            match charge_quota(&mut store, "q", spec, T0 + Duration::from_secs(10)) {
                LimitOutcome::Allowed(state) => assert_eq!(state.remaining, remaining),
                other @ LimitOutcome::Exceeded(_) => panic!("{other:?}"),
            }
        }
        match charge_quota(&mut store, "q", spec, T0 + Duration::from_secs(20)) {
            LimitOutcome::Exceeded(state) => {
                assert_eq!(state.retry_after, Duration::from_secs(3590));
            }
            other @ LimitOutcome::Allowed(_) => panic!("{other:?}"),
        }
        let renewed = T0 + Duration::from_secs(3610);
        assert!(allowed(charge_quota(&mut store, "q", spec, renewed)));
    }

    #[test]
    fn a_zero_quota_refuses_everything() {
        let mut store = MemoryCounters::default();
        let spec = QuotaSpec {
            max: 0,
            renewal_seconds: 60,
        };
        assert!(!allowed(charge_quota(&mut store, "q", spec, T0)));
    }

    /// A store where another worker wins the first `losses` races.
    struct Contended {
        inner: MemoryCounters,
        losses: usize,
    }

    impl CounterStore for Contended {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.inner.get(key)
        }
        fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasConflict> {
            if self.losses > 0 {
                self.losses -= 1;
                // The other worker's write lands first: on an empty counter it takes the slot
                // we were about to take; otherwise it rewrites the value, bumping the version.
                let competing = match self.inner.get(key) {
                    Some((current, _)) => current,
                    None => value.to_vec(),
                };
                self.inner.set(key, &competing, None).unwrap();
                return Err(CasConflict);
            }
            self.inner.set(key, value, cas)
        }
    }

    #[test]
    fn lost_races_retry_with_the_fresh_value() {
        let mut store = Contended {
            inner: MemoryCounters::default(),
            losses: 2,
        };
        assert!(allowed(charge_rate(&mut store, "k", rate(2, 60), T0)));
        // The competitor's write counted one slot, ours the other: the third request is refused.
        assert!(!allowed(charge_rate(&mut store, "k", rate(2, 60), T0)));
    }

    /// A store where every write loses a race, as under extreme contention.
    struct AlwaysConflicting;

    impl CounterStore for AlwaysConflicting {
        fn get(&self, _key: &str) -> Option<(Vec<u8>, u32)> {
            Some((T0.as_nanos().to_le_bytes().to_vec(), 1))
        }
        fn set(&mut self, _key: &str, _value: &[u8], _cas: Option<u32>) -> Result<(), CasConflict> {
            Err(CasConflict)
        }
    }

    #[test]
    fn endless_contention_lets_the_request_through() {
        assert!(allowed(charge_rate(
            &mut AlwaysConflicting,
            "k",
            rate(1, 60),
            T0
        )));
    }

    #[test]
    fn a_counter_of_unexpected_size_restarts() {
        let mut store = MemoryCounters::default();
        store.set("k", b"garbage", None).unwrap();
        assert!(allowed(charge_rate(&mut store, "k", rate(1, 60), T0)));
        assert!(!allowed(charge_rate(&mut store, "k", rate(1, 60), T0)));
    }

    #[test]
    fn shares_follow_traffic_above_a_floor_and_add_up_to_the_whole() {
        assert_eq!(rate_share(0, &[0]), FULL_SHARE, "alone");
        assert_eq!(rate_share(0, &[0, 0]), 500, "no traffic: equal");
        // Two instances, all traffic on one: the other keeps its floor (125).
        assert_eq!(rate_share(100, &[100, 0]), 875);
        assert_eq!(rate_share(0, &[100, 0]), 125);
        assert_eq!(rate_share(30, &[30, 10]), 125 + 750 * 3 / 4);
        for all in [vec![1, 2, 3], vec![7, 0, 0, 9], vec![u64::MAX, u64::MAX]] {
            let sum: u32 = all.iter().map(|own| rate_share(*own, &all)).sum();
            assert!(sum <= FULL_SHARE, "{all:?}: {sum}");
            assert!(sum + 4 >= FULL_SHARE, "{all:?}: {sum}");
        }
    }

    #[test]
    fn a_shared_spec_rounds_up_and_keeps_at_least_one_request() {
        let spec = RateLimitSpec {
            requests: 20,
            per_seconds: 10,
        };
        assert_eq!(shared_spec(spec, FULL_SHARE), spec);
        assert_eq!(shared_spec(spec, 500).requests, 10);
        assert_eq!(shared_spec(spec, 333).requests, 7);
        assert_eq!(shared_spec(spec, 1).requests, 1);
        assert_eq!(shared_spec(spec, 500).per_seconds, 10);
    }
}
