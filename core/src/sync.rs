//! Snapshot sync with the control plane, as a state machine the filter drives from its timer
//! and HTTP-call callbacks: `Idle | InFlight { token } | Backoff { until }`.
//!
//! One worker VM per Envoy holds a short lease in shared data and long-polls the control plane;
//! it publishes each new snapshot to shared data, where every worker (itself included) picks it
//! up. The lease, the published version and the backoff arithmetic are pure functions here;
//! [`SyncWorker`] runs the whole protocol over a [`SyncHost`] (shared data, HTTP calls), and
//! its module documentation lists the protocol's rules.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

mod worker;

pub use worker::{
    DispatchError, HttpAnswer, HttpCall, LEASE_DURATION, REPORT_TIMEOUT, SYNC_TICK, SyncEvent,
    SyncHost, SyncWorker,
};

/// Sync timing, from the plugin configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncTiming {
    /// How long the control plane may hold a poll before answering 304.
    pub poll_wait: Duration,
    /// How long the filter waits for an answer (more than `poll_wait`).
    pub request_timeout: Duration,
    /// The first retry delay after a failure.
    pub backoff_initial: Duration,
    /// The longest retry delay.
    pub backoff_max: Duration,
}

impl Default for SyncTiming {
    fn default() -> Self {
        SyncTiming {
            poll_wait: Duration::from_secs(30),
            request_timeout: Duration::from_secs(40),
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// Where the sync stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPhase {
    /// Ready to poll.
    Idle,
    /// A poll is under way; its answer carries `token`.
    InFlight {
        /// The host's call token.
        token: u32,
    },
    /// Waiting after a failure.
    Backoff {
        /// When polling may resume (time since the Unix epoch).
        until: Duration,
    },
}

/// What an answer to a poll means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PollOutcome {
    /// A newer snapshot: decode, validate and publish it, then report with
    /// [`SyncMachine::snapshot_applied`] or [`SyncMachine::snapshot_rejected`].
    Snapshot,
    /// Nothing newer within the wait: poll again at once.
    NotModified,
    /// The poll failed; the machine is backing off.
    Failed(String),
    /// An answer to a call this machine no longer waits for.
    Stale,
}

/// The sync state machine of one VM.
#[derive(Clone, Debug)]
pub struct SyncMachine {
    timing: SyncTiming,
    phase: SyncPhase,
    consecutive_failures: u32,
    rng: u64,
}

// === impl SyncMachine ===

impl SyncMachine {
    /// A machine ready to poll; `seed` makes its jitter differ from other VMs'.
    pub fn new(timing: SyncTiming, seed: u64) -> Self {
        SyncMachine {
            timing,
            phase: SyncPhase::Idle,
            consecutive_failures: 0,
            rng: seed | 1,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> SyncPhase {
        self.phase
    }

    /// Failures since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// The timing in use.
    pub fn timing(&self) -> SyncTiming {
        self.timing
    }

    /// Whether a poll should be sent now.
    pub fn should_poll(&mut self, now: Duration) -> bool {
        match self.phase {
            SyncPhase::Idle => true,
            SyncPhase::InFlight { .. } => false,
            SyncPhase::Backoff { until } if now >= until => {
                self.phase = SyncPhase::Idle;
                true
            }
            SyncPhase::Backoff { .. } => false,
        }
    }

    /// A poll was sent; its answer will carry `token`.
    pub fn dispatched(&mut self, token: u32) {
        self.phase = SyncPhase::InFlight { token };
    }

    /// The poll could not even be sent (unknown cluster, host refused).
    pub fn dispatch_failed(&mut self, now: Duration) {
        self.fail(now);
    }

    /// This VM is no longer the one polling (it lost the lease): forget the poll under way.
    pub fn abandon(&mut self) {
        if matches!(self.phase, SyncPhase::InFlight { .. }) {
            self.phase = SyncPhase::Idle;
        }
    }

    /// Interprets the answer to call `token`: its HTTP status (`None` when the call failed
    /// without one: connection refused, timeout, reset).
    pub fn response(&mut self, token: u32, status: Option<u16>, now: Duration) -> PollOutcome {
        if self.phase != (SyncPhase::InFlight { token }) {
            return PollOutcome::Stale;
        }
        match status {
            Some(200) => {
                self.phase = SyncPhase::Idle;
                PollOutcome::Snapshot
            }
            Some(304) => {
                self.phase = SyncPhase::Idle;
                self.consecutive_failures = 0;
                PollOutcome::NotModified
            }
            Some(status) => {
                self.fail(now);
                PollOutcome::Failed(format!("control plane answered HTTP {status}"))
            }
            None => {
                self.fail(now);
                PollOutcome::Failed("no answer from the control plane".to_owned())
            }
        }
    }

    /// The snapshot of the last answer was valid and is now current.
    pub fn snapshot_applied(&mut self) {
        self.consecutive_failures = 0;
    }

    /// The snapshot of the last answer failed to decode or validate: keep the last good one and
    /// back off, so a control plane answering garbage is not hammered.
    pub fn snapshot_rejected(&mut self, now: Duration) {
        self.fail(now);
    }

    fn fail(&mut self, now: Duration) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let delay = backoff_delay(self.timing, self.consecutive_failures, self.next_random());
        self.phase = SyncPhase::Backoff { until: now + delay };
    }

    /// xorshift64: jitter needs spread, not secrecy.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

/// The delay before retry number `failures` (1-based): exponential from `backoff_initial`,
/// capped at `backoff_max`, with "equal jitter" (between half and all of it) so that many
/// Envoys do not retry in step.
pub fn backoff_delay(timing: SyncTiming, failures: u32, random: u64) -> Duration {
    let exponent = failures.saturating_sub(1).min(20);
    let full = timing
        .backoff_initial
        .saturating_mul(1 << exponent)
        .min(timing.backoff_max);
    let half = full / 2;
    let spread = u64::try_from(half.as_micros()).unwrap_or(u64::MAX);
    let jitter = if spread == 0 {
        0
    } else {
        random % (spread + 1)
    };
    half + Duration::from_micros(jitter)
}

/// The shared-data lease that elects the one VM per Envoy that polls the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The holder's random id.
    pub owner: u64,
    /// When the lease lapses (time since the Unix epoch, in milliseconds).
    pub expires_at_ms: u64,
}

// === impl Lease ===

impl Lease {
    /// The lease's shared-data value.
    pub fn encode(&self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.owner.to_le_bytes());
        bytes[8..].copy_from_slice(&self.expires_at_ms.to_le_bytes());
        bytes
    }

    /// Reads a lease value; anything else counts as no lease.
    pub fn decode(bytes: &[u8]) -> Option<Lease> {
        let owner = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let expires_at_ms = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
        (bytes.len() == 16).then_some(Lease {
            owner,
            expires_at_ms,
        })
    }

    /// What `me` should do about the lease at `now`, for leases lasting `duration`. A lease
    /// of `me` with more than half its time left needs no write, so the holder writes shared
    /// data a few times per lease rather than on every tick.
    pub fn claim(current: Option<Lease>, me: u64, now: Duration, duration: Duration) -> LeaseClaim {
        let now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
        let duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        match current {
            Some(lease) if lease.owner != me && lease.expires_at_ms > now_ms => LeaseClaim::Lost,
            Some(lease) if lease.owner == me && lease.expires_at_ms > now_ms + duration_ms / 2 => {
                LeaseClaim::Held
            }
            _ => LeaseClaim::Write(Lease {
                owner: me,
                expires_at_ms: now_ms.saturating_add(duration_ms),
            }),
        }
    }
}

/// The outcome of [`Lease::claim`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseClaim {
    /// Another VM holds a live lease.
    Lost,
    /// `me` holds the lease and it is fresh: nothing to write.
    Held,
    /// Write this lease (compare-and-swap) to hold or take leadership.
    Write(Lease),
}

/// Shared-data key of the sync lease.
pub const LEASE_KEY: &str = "portico/sync/lease";
/// Shared-data key of the published snapshot's version (8 bytes, little-endian).
pub const VERSION_KEY: &str = "portico/snapshot/version";
/// Shared-data key of the published snapshot (its wire encoding).
pub const SNAPSHOT_KEY: &str = "portico/snapshot/bytes";

/// Shared-data key of the Envoy's share of the rate limits, in thousandths (4 bytes,
/// little-endian): written by the VM that last heard it from the control plane, read by every
/// VM on its tick, so that all workers, which share the counters, enforce the same share.
pub const RATE_SHARE_KEY: &str = "portico/rate_share";

/// Shared-data key of the Envoy's filter instance id (see [`instance_id`]).
pub const INSTANCE_KEY: &str = "portico/instance";

/// A filter instance id from a VM's random `seed`: 16 lower-case hex digits. The first VM of an
/// Envoy to poll publishes its id under [`INSTANCE_KEY`] and every VM of that Envoy sends the
/// published one, so the control plane lists one row per Envoy process
/// ([`crate::rules::is_instance_id`] accepts it).
pub fn instance_id(seed: u64) -> String {
    format!("{seed:016x}")
}

/// The 24 bytes a VM draws at start (its token cache key, then its `seed`) when the host gives
/// no randomness: all of them derived from the clock `now`, spread by SplitMix64. The seed
/// names the VM (its lease id, instance id and usage reporter), so it must differ between
/// VMs started at different moments; a constant one would make every such VM of the fleet
/// one reporter, whose reports the control plane would take as duplicates of each other.
pub fn randomness_from_clock(now: Duration) -> [u8; 24] {
    let nanos = now.as_nanos();
    let mut state = (nanos as u64) ^ ((nanos >> 64) as u64);
    let mut bytes = [0u8; 24];
    for chunk in bytes.chunks_exact_mut(8) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    bytes
}

/// Reads a published version value.
pub fn decode_version(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// The same (issuer, `kid`) is reported at most once in this window.
pub const KID_REPORT_DEDUP: Duration = Duration::from_secs(10);
/// At most this many reports leave one VM per second (`kid`s come from untrusted tokens).
pub const KID_REPORTS_PER_SECOND: u32 = 2;
/// Reports waiting beyond this are dropped.
const MAX_PENDING_KID_REPORTS: usize = 32;
/// `kid`s longer than this are not reported.
const MAX_REPORTED_KID_LEN: usize = 256;

/// Unknown `kid`s to tell the control plane about, so it refreshes that issuer's keys at once:
/// deduplicated per (issuer, `kid`) and rate-limited, because anyone can send a token with any
/// `kid`.
#[derive(Clone, Debug, Default)]
pub struct KidReports {
    last_reported: HashMap<(Box<str>, Box<str>), Duration>,
    pending: VecDeque<(String, String)>,
    window_start: Duration,
    sent_in_window: u32,
}

// === impl KidReports ===

impl KidReports {
    /// Notes that a token of `issuer` named the unknown `kid` at `now`.
    pub fn note(&mut self, issuer: &str, kid: &str, now: Duration) {
        if kid.len() > MAX_REPORTED_KID_LEN || self.pending.len() >= MAX_PENDING_KID_REPORTS {
            return;
        }
        if self.last_reported.len() > 1024 {
            self.last_reported
                .retain(|_, at| now < *at + KID_REPORT_DEDUP);
        }
        let key = (Box::from(issuer), Box::from(kid));
        if self
            .last_reported
            .get(&key)
            .is_some_and(|at| now < *at + KID_REPORT_DEDUP)
        {
            return;
        }
        self.last_reported.insert(key, now);
        self.pending.push_back((issuer.to_owned(), kid.to_owned()));
    }

    /// The reports to send now, within the rate limit.
    pub fn take_due(&mut self, now: Duration) -> Vec<(String, String)> {
        if now >= self.window_start + Duration::from_secs(1) {
            self.window_start = now;
            self.sent_in_window = 0;
        }
        let mut due = Vec::new();
        while self.sent_in_window < KID_REPORTS_PER_SECOND {
            let Some(report) = self.pending.pop_front() else {
                break;
            };
            self.sent_in_window += 1;
            due.push(report);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn randomness_from_the_clock_gives_each_moment_its_own_seed() {
        // The seed is the last 8 bytes: zero for every VM would make the whole fleet one
        // usage reporter.
        let seed = |nanos: u64| {
            let bytes = randomness_from_clock(Duration::from_nanos(nanos));
            u64::from_le_bytes(bytes[16..].try_into().unwrap())
        };
        let t = 1_800_000_000_000_000_000;
        assert_ne!(seed(t), 0);
        assert_ne!(seed(t), seed(t + 1));
        let bytes = randomness_from_clock(Duration::from_nanos(t));
        assert_ne!(bytes[..8], bytes[8..16]);
    }

    #[test]
    fn an_instance_id_is_what_the_control_plane_accepts() {
        for seed in [0, 1, u64::MAX, 0x0123_4567_89ab_cdef] {
            let id = instance_id(seed);
            assert_eq!(id.len(), 16);
            assert!(crate::rules::is_instance_id(&id), "{id}");
        }
        assert_ne!(instance_id(1), instance_id(2));
        for refused in ["", "a b", "a/b", "\u{e9}", &"a".repeat(65)] {
            assert!(!crate::rules::is_instance_id(refused), "{refused:?}");
        }
    }

    const T0: Duration = Duration::from_secs(1_800_000_000);

    fn timing() -> SyncTiming {
        SyncTiming {
            poll_wait: Duration::from_secs(30),
            request_timeout: Duration::from_secs(40),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
        }
    }

    #[test]
    fn polls_when_idle_and_not_while_in_flight() {
        let mut machine = SyncMachine::new(timing(), 42);
        assert!(machine.should_poll(T0));
        machine.dispatched(7);
        assert!(!machine.should_poll(T0));
        assert_eq!(machine.response(7, Some(304), T0), PollOutcome::NotModified);
        assert!(machine.should_poll(T0));
    }

    #[test]
    fn a_snapshot_answer_is_handed_over_and_success_resets_failures() {
        let mut machine = SyncMachine::new(timing(), 42);
        machine.dispatched(1);
        assert!(matches!(
            machine.response(1, Some(503), T0),
            PollOutcome::Failed(_)
        ));
        assert_eq!(machine.consecutive_failures(), 1);
        let later = T0 + Duration::from_secs(60);
        assert!(machine.should_poll(later));
        machine.dispatched(2);
        assert_eq!(machine.response(2, Some(200), later), PollOutcome::Snapshot);
        machine.snapshot_applied();
        assert_eq!(machine.consecutive_failures(), 0);
    }

    #[test]
    fn failures_back_off_before_the_next_poll() {
        let mut machine = SyncMachine::new(timing(), 42);
        machine.dispatched(1);
        assert!(matches!(
            machine.response(1, None, T0),
            PollOutcome::Failed(_)
        ));
        let SyncPhase::Backoff { until } = machine.phase() else {
            panic!("not backing off: {:?}", machine.phase());
        };
        assert!(
            until >= T0 + Duration::from_millis(50) && until <= T0 + Duration::from_millis(100)
        );
        assert!(!machine.should_poll(until - Duration::from_millis(1)));
        assert!(machine.should_poll(until));
    }

    #[test]
    fn rejected_snapshots_count_as_failures() {
        let mut machine = SyncMachine::new(timing(), 42);
        machine.dispatched(1);
        assert_eq!(machine.response(1, Some(200), T0), PollOutcome::Snapshot);
        machine.snapshot_rejected(T0);
        assert_eq!(machine.consecutive_failures(), 1);
        assert!(!machine.should_poll(T0));
    }

    #[test]
    fn answers_to_forgotten_calls_are_stale() {
        let mut machine = SyncMachine::new(timing(), 42);
        machine.dispatched(1);
        assert_eq!(machine.response(9, Some(200), T0), PollOutcome::Stale);
        machine.abandon();
        assert_eq!(machine.response(1, Some(200), T0), PollOutcome::Stale);
        assert!(machine.should_poll(T0));
    }

    #[test]
    fn backoff_grows_exponentially_with_equal_jitter_and_a_cap() {
        let timing = timing();
        for (failures, full_ms) in [(1, 100), (2, 200), (3, 400), (8, 10_000), (40, 10_000)] {
            let full = Duration::from_millis(full_ms);
            for random in [0, 1, 12_345, u64::MAX] {
                let delay = backoff_delay(timing, failures, random);
                assert!(delay >= full / 2 && delay <= full, "{failures}: {delay:?}");
            }
        }
    }

    #[test]
    fn jitter_spreads_retries_of_different_vms() {
        let delays: std::collections::HashSet<Duration> = (1..50u64)
            .map(|seed| {
                let mut machine = SyncMachine::new(timing(), seed * 0x9e37_79b9);
                machine.dispatched(1);
                machine.response(1, None, T0);
                match machine.phase() {
                    SyncPhase::Backoff { until } => until,
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        assert!(delays.len() > 40, "only {} distinct delays", delays.len());
    }

    #[test]
    fn a_live_lease_of_another_vm_is_respected_and_an_expired_one_taken() {
        let lease = Duration::from_secs(5);
        let other = Lease {
            owner: 2,
            expires_at_ms: (T0 + Duration::from_secs(3)).as_millis() as u64,
        };
        let write = |claim: LeaseClaim| match claim {
            LeaseClaim::Write(lease) => lease,
            other => panic!("expected a write, got {other:?}"),
        };
        assert_eq!(Lease::claim(Some(other), 1, T0, lease), LeaseClaim::Lost);
        let soon = T0 + Duration::from_secs(1);
        let renewed = write(Lease::claim(Some(other), 2, soon, lease));
        assert_eq!(renewed.expires_at_ms, (soon + lease).as_millis() as u64);
        let taken = write(Lease::claim(
            Some(other),
            1,
            T0 + Duration::from_secs(4),
            lease,
        ));
        assert_eq!(taken.owner, 1);
        assert_eq!(write(Lease::claim(None, 1, T0, lease)).owner, 1);
    }

    #[test]
    fn a_fresh_lease_of_my_own_needs_no_write() {
        let duration = Duration::from_secs(2);
        let mine = Lease {
            owner: 1,
            expires_at_ms: (T0 + duration).as_millis() as u64,
        };
        assert_eq!(Lease::claim(Some(mine), 1, T0, duration), LeaseClaim::Held);
        let later = T0 + Duration::from_millis(999);
        assert_eq!(
            Lease::claim(Some(mine), 1, later, duration),
            LeaseClaim::Held
        );
        let half = T0 + Duration::from_secs(1);
        assert!(matches!(
            Lease::claim(Some(mine), 1, half, duration),
            LeaseClaim::Write(_)
        ));
    }

    #[test]
    fn kid_reports_are_deduplicated_per_issuer_and_kid() {
        let mut reports = KidReports::default();
        reports.note("idp", "k1", T0);
        reports.note("idp", "k1", T0 + Duration::from_secs(1));
        reports.note("other", "k1", T0);
        assert_eq!(
            reports.take_due(T0),
            [
                ("idp".to_owned(), "k1".to_owned()),
                ("other".to_owned(), "k1".to_owned())
            ]
        );
        reports.note("idp", "k1", T0 + Duration::from_secs(5));
        assert!(reports.take_due(T0 + Duration::from_secs(5)).is_empty());
        reports.note("idp", "k1", T0 + KID_REPORT_DEDUP);
        assert_eq!(reports.take_due(T0 + KID_REPORT_DEDUP).len(), 1);
    }

    #[test]
    fn kid_reports_are_rate_limited_and_bounded() {
        let mut reports = KidReports::default();
        for n in 0..100 {
            reports.note("idp", &format!("kid-{n}"), T0);
        }
        assert_eq!(reports.take_due(T0).len(), 2);
        assert!(reports.take_due(T0 + Duration::from_millis(500)).is_empty());
        assert_eq!(reports.take_due(T0 + Duration::from_secs(1)).len(), 2);
        let mut drained = 4;
        for second in 2..100 {
            drained += reports.take_due(T0 + Duration::from_secs(second)).len();
        }
        assert_eq!(drained, MAX_PENDING_KID_REPORTS);
        reports.note("idp", &"x".repeat(1000), T0 + Duration::from_secs(200));
        assert!(reports.take_due(T0 + Duration::from_secs(200)).is_empty());
    }

    #[test]
    fn leases_and_versions_round_trip_and_reject_other_sizes() {
        let lease = Lease {
            owner: u64::MAX - 3,
            expires_at_ms: 123_456,
        };
        assert_eq!(Lease::decode(&lease.encode()), Some(lease));
        assert_eq!(Lease::decode(&[1, 2, 3]), None);
        assert_eq!(Lease::decode(&[0; 17]), None);
        assert_eq!(decode_version(&42u64.to_le_bytes()), Some(42));
        assert_eq!(decode_version(&[1]), None);
    }
}
