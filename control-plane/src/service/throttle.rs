//! In-memory limits of the portal, each with a bound on its memory:
//! - [`FailureThrottle`]: failed log-ins per key (an email, a client address), charged before
//!   the password is checked, with an exponential delay once the free attempts are spent.
//! - [`EventWindow`]: at most N events per key in a sliding hour (registrations and secret
//!   rotations per developer).
//!
//! Each keeps at most `capacity` keys: entries past their memory are dropped first, then the
//! least recently touched one. Time is an argument (the service's clock).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// Seconds to wait, rounded up, for a 429's `Retry-After`.
pub fn retry_after(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

fn age(now: SystemTime, then: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}

// === FailureThrottle ===

/// Failed attempts per key with an exponential delay (see the module docs).
#[derive(Debug)]
pub struct FailureThrottle<K> {
    free: u32,
    max_delay: Duration,
    memory: Duration,
    capacity: usize,
    entries: Mutex<HashMap<K, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: SystemTime,
}

impl<K: Hash + Eq + Clone> FailureThrottle<K> {
    /// `free` attempts, then 1 s, 2 s, 4 s ... up to `max_delay` between two; counts are
    /// forgotten `memory` after the last attempt; at most `capacity` keys are kept.
    pub fn new(free: u32, max_delay: Duration, memory: Duration, capacity: usize) -> Self {
        FailureThrottle {
            free,
            max_delay,
            memory,
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn delay(&self, count: u32) -> Duration {
        if count < self.free {
            return Duration::ZERO;
        }
        let doublings = (count - self.free).min(20);
        Duration::from_secs(1u64 << doublings).min(self.max_delay)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Failures>> {
        // Counters hold no invariant that a panicking holder could break.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long `key` must still wait (zero: it may try now).
    pub fn wait(&self, key: &K, now: SystemTime) -> Duration {
        self.lock().get(key).map_or(Duration::ZERO, |entry| {
            (entry.last + self.delay(entry.count))
                .duration_since(now)
                .unwrap_or_default()
        })
    }

    /// Charges one attempt to `key`: counted as a failure until [`FailureThrottle::refund`] or
    /// [`FailureThrottle::forget`].
    pub fn charge(&self, key: K, now: SystemTime) {
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, entry| age(now, entry.last) < self.memory);
            if entries.len() >= self.capacity
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, entry)| entry.last)
                    .map(|(key, _)| key.clone())
            {
                entries.remove(&oldest);
            }
        }
        let entry = entries.entry(key).or_insert(Failures {
            count: 0,
            last: now,
        });
        if age(now, entry.last) >= self.memory {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
    }

    /// Takes back one charged attempt (it succeeded).
    pub fn refund(&self, key: &K) {
        let mut entries = self.lock();
        if let Some(entry) = entries.get_mut(key) {
            entry.count = entry.count.saturating_sub(1);
            if entry.count == 0 {
                entries.remove(key);
            }
        }
    }

    /// Forgets every attempt of `key`.
    pub fn forget(&self, key: &K) {
        self.lock().remove(key);
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// === EventWindow ===

/// At most `limit` events per key in any `window` (see the module docs).
#[derive(Debug)]
pub struct EventWindow<K> {
    window: Duration,
    capacity: usize,
    entries: Mutex<HashMap<K, VecDeque<SystemTime>>>,
}

impl<K: Hash + Eq + Clone> EventWindow<K> {
    /// Events are remembered for `window`; at most `capacity` keys are kept.
    pub fn new(window: Duration, capacity: usize) -> Self {
        EventWindow {
            window,
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Records an event for `key` when fewer than `limit` happened in the window; otherwise
    /// answers how long until one may.
    pub fn record(&self, key: K, limit: u32, now: SystemTime) -> Result<(), Duration> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, events| {
                events
                    .back()
                    .is_some_and(|last| age(now, *last) < self.window)
            });
            if entries.len() >= self.capacity
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, events)| events.back().copied())
                    .map(|(key, _)| key.clone())
            {
                entries.remove(&oldest);
            }
        }
        let events = entries.entry(key).or_default();
        while events
            .front()
            .is_some_and(|first| age(now, *first) >= self.window)
        {
            events.pop_front();
        }
        if events.len() >= limit as usize {
            let first = events.front().copied().unwrap_or(now);
            return Err((first + self.window)
                .duration_since(now)
                .unwrap_or_default());
        }
        events.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seconds)
    }

    #[test]
    fn attempts_are_free_then_doubling_delays() {
        let throttle = FailureThrottle::new(3, 15 * MINUTE, 60 * MINUTE, 10);
        for _ in 0..3 {
            assert_eq!(throttle.wait(&"a", at(0)), Duration::ZERO);
            throttle.charge("a", at(0));
        }
        assert_eq!(throttle.wait(&"a", at(0)), Duration::from_secs(1));
        throttle.charge("a", at(1));
        assert_eq!(throttle.wait(&"a", at(1)), Duration::from_secs(2));
        assert_eq!(throttle.wait(&"b", at(1)), Duration::ZERO);
    }

    #[test]
    fn a_refund_takes_back_one_charge_and_forget_all() {
        let throttle = FailureThrottle::new(1, MINUTE, MINUTE, 10);
        throttle.charge("a", at(0));
        throttle.refund(&"a");
        assert!(throttle.is_empty());
        throttle.charge("a", at(0));
        throttle.charge("a", at(0));
        throttle.forget(&"a");
        assert_eq!(throttle.wait(&"a", at(0)), Duration::ZERO);
    }

    #[test]
    fn the_table_never_holds_more_than_its_capacity() {
        let throttle = FailureThrottle::new(5, MINUTE, 60 * MINUTE, 100);
        for i in 0..1000u64 {
            throttle.charge(i, at(i));
        }
        assert_eq!(throttle.len(), 100);
        // The newest keys are the ones kept.
        throttle.charge(999, at(1000));
        assert_eq!(throttle.len(), 100);
    }

    #[test]
    fn a_window_allows_the_limit_then_says_when() {
        let window = EventWindow::new(60 * MINUTE, 10);
        assert!(window.record("dev", 2, at(0)).is_ok());
        assert!(window.record("dev", 2, at(10)).is_ok());
        assert_eq!(
            window.record("dev", 2, at(20)),
            Err(Duration::from_secs(3600 - 20))
        );
        assert!(window.record("other", 2, at(20)).is_ok());
        assert!(window.record("dev", 2, at(3600)).is_ok());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after(Duration::ZERO), 1);
    }
}
