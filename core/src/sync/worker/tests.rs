//! Several workers over one fake shared store, with hooks that run one worker in the middle of
//! another's shared-data reads and writes, the way Envoy's worker threads interleave.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use super::*;
use crate::rate_limit::CasConflict;
use crate::sync::SyncPhase;

const T0: Duration = Duration::from_secs(1_800_000_000);
const MS: Duration = Duration::from_millis(1);

type Hook = Box<dyn FnOnce()>;

/// Envoy's shared data: a CAS token per value, CAS ignored for absent keys, and hooks that run
/// once right after a read or a write of a key.
#[derive(Default)]
struct Store {
    values: HashMap<String, (Vec<u8>, u32)>,
    last_cas: u32,
    writes: Vec<String>,
    after_get: Vec<(String, Hook)>,
    after_set: Vec<(String, Hook)>,
}

#[derive(Clone, Default)]
struct SharedStore(Rc<RefCell<Store>>);

impl SharedStore {
    fn after_get(&self, key: &str, hook: impl FnOnce() + 'static) {
        let hook: Hook = Box::new(hook);
        self.0.borrow_mut().after_get.push((key.to_owned(), hook));
    }

    fn after_set(&self, key: &str, hook: impl FnOnce() + 'static) {
        let hook: Hook = Box::new(hook);
        self.0.borrow_mut().after_set.push((key.to_owned(), hook));
    }

    fn value(&self, key: &str) -> Option<Vec<u8>> {
        self.0
            .borrow()
            .values
            .get(key)
            .map(|(value, _)| value.clone())
    }

    fn version(&self) -> Option<u64> {
        decode_version(&self.value(VERSION_KEY)?)
    }

    fn lease(&self) -> Option<Lease> {
        Lease::decode(&self.value(LEASE_KEY)?)
    }

    fn put(&self, key: &str, value: &[u8]) {
        let mut copy = self.clone();
        copy.set(key, value, None).expect("unconditional write");
    }

    fn run_hook(&self, hooks: fn(&mut Store) -> &mut Vec<(String, Hook)>, key: &str) {
        let hook = {
            let mut store = self.0.borrow_mut();
            let hooks = hooks(&mut store);
            let at = hooks.iter().position(|(hooked, _)| hooked == key);
            at.map(|at| hooks.remove(at).1)
        };
        if let Some(hook) = hook {
            hook();
        }
    }
}

impl CounterStore for SharedStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        let value = self.0.borrow().values.get(key).cloned();
        self.run_hook(|store| &mut store.after_get, key);
        value
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), CasConflict> {
        {
            let mut store = self.0.borrow_mut();
            if let (Some((_, current)), Some(cas)) = (store.values.get(key), cas)
                && *current != cas
            {
                return Err(CasConflict);
            }
            store.last_cas += 1;
            let cas = store.last_cas;
            store.values.insert(key.to_owned(), (value.to_vec(), cas));
            store.writes.push(key.to_owned());
        }
        self.run_hook(|store| &mut store.after_set, key);
        Ok(())
    }
}

/// A call the fake host sent.
#[derive(Debug)]
struct Sent {
    token: u32,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    timeout: Duration,
}

impl Sent {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(header, _)| *header == name)
            .map(|(_, value)| value.as_str())
            .unwrap_or_default()
    }
}

struct FakeHost {
    store: SharedStore,
    sent: Vec<Sent>,
    refuse: bool,
    answer: HttpAnswer,
}

impl SyncHost for FakeHost {
    fn shared(&mut self) -> &mut dyn CounterStore {
        &mut self.store
    }

    fn dispatch(&mut self, call: HttpCall<'_>) -> Result<u32, DispatchError> {
        assert_eq!(call.cluster, "portico");
        if self.refuse {
            return Err(DispatchError("BadArgument".to_owned()));
        }
        let token = u32::try_from(self.sent.len()).expect("few calls") + 1;
        self.sent.push(Sent {
            token,
            headers: call.headers,
            body: call.body,
            timeout: call.timeout,
        });
        Ok(token)
    }

    fn answer(&self) -> HttpAnswer {
        self.answer.clone()
    }
}

/// One worker VM: its sync worker, its host over the shared store, its unknown-kid queue.
struct Vm {
    worker: SyncWorker,
    host: FakeHost,
    reports: KidReports,
}

type SharedVm = Rc<RefCell<Vm>>;

impl Vm {
    fn new(store: &SharedStore, seed: u64) -> Vm {
        let config = ControlPlaneConfig {
            cluster: "portico".to_owned(),
            authority: Some("control-plane".to_owned()),
            token: "dp-token".to_owned(),
            poll_wait_seconds: 30,
            backoff_initial_ms: 100,
            backoff_max_ms: 1_000,
            node_id: None,
        };
        Vm {
            worker: SyncWorker::new(config, "edge 1".to_owned(), seed),
            host: FakeHost {
                store: store.clone(),
                sent: Vec::new(),
                refuse: false,
                answer: HttpAnswer::default(),
            },
            reports: KidReports::default(),
        }
    }

    fn shared(store: &SharedStore, seed: u64) -> SharedVm {
        Rc::new(RefCell::new(Vm::new(store, seed)))
    }

    fn tick(&mut self, now: Duration) -> Vec<SyncEvent> {
        self.worker.on_tick(&mut self.host, now, &mut self.reports)
    }

    /// Delivers an answer to the last call this VM sent.
    fn answer(&mut self, status: Option<u16>, body: Vec<u8>, now: Duration) -> Vec<SyncEvent> {
        let token = self.last().token;
        self.answer_call(token, status, body, now)
    }

    fn answer_call(
        &mut self,
        token: u32,
        status: Option<u16>,
        body: Vec<u8>,
        now: Duration,
    ) -> Vec<SyncEvent> {
        self.host.answer = HttpAnswer { status, body };
        self.worker.on_http_response(&mut self.host, token, now)
    }

    fn last(&self) -> &Sent {
        self.host.sent.last().expect("a call was sent")
    }

    fn polls(&self) -> usize {
        self.host.sent.len()
    }

    fn in_flight(&self) -> bool {
        matches!(self.worker.machine.phase(), SyncPhase::InFlight { .. })
    }
}

/// A worker alone on `store` with a poll in flight: its first tick seeds the lease, its second
/// claims it and polls.
fn polling(store: &SharedStore, seed: u64, now: Duration) -> Vm {
    let mut vm = Vm::new(store, seed);
    vm.tick(now);
    vm.tick(now);
    assert!(vm.in_flight());
    vm
}

/// A worker that holds the lease and has `version` in force, published.
fn leader(store: &SharedStore, seed: u64, version: u64, now: Duration) -> Vm {
    let mut vm = polling(store, seed, now);
    let events = vm.answer(Some(200), snapshot(version), now);
    assert_eq!(applied(&events), [version]);
    vm
}

fn snapshot(version: u64) -> Vec<u8> {
    crate::snapshot::Snapshot {
        version,
        ..Default::default()
    }
    .to_binary()
    .expect("encodes")
}

fn applied(events: &[SyncEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|event| match event {
            SyncEvent::Applied { snapshot, .. } => Some(snapshot.version),
            _ => None,
        })
        .collect()
}

fn since(sent: &Sent) -> u64 {
    let path = sent.header(":path");
    let query = path.split_once("since=").expect("since").1;
    query.split('&').next().unwrap().parse().unwrap()
}

#[test]
fn the_first_tick_seeds_the_lease_and_the_second_claims_it_and_polls() {
    let store = SharedStore::default();
    let mut vm = Vm::new(&store, 0xabc);
    assert!(vm.tick(T0).is_empty());
    assert_eq!(vm.polls(), 0);
    assert_eq!(store.lease().map(|lease| lease.owner), Some(0));
    vm.tick(T0 + MS);
    assert_eq!(vm.polls(), 1);
    let lease = store.lease().expect("a lease");
    assert_eq!(lease.owner, 0xabc);
    assert_eq!(
        u128::from(lease.expires_at_ms),
        (T0 + MS + LEASE_DURATION).as_millis()
    );
    let poll = vm.last();
    assert_eq!(
        poll.header(":path"),
        "/v1/snapshot?since=0&wait=30&node=edge%201&instance=0000000000000abc"
    );
    assert_eq!(poll.header(":method"), "GET");
    assert_eq!(poll.header(":authority"), "control-plane");
    assert_eq!(poll.header("authorization"), "Bearer dp-token");
    assert_eq!(poll.header("accept"), BINARY_MEDIA_TYPE);
    assert_eq!(poll.timeout, Duration::from_secs(40));
    assert_eq!(
        store.value(INSTANCE_KEY).as_deref(),
        Some(&b"0000000000000abc"[..])
    );
}

#[test]
fn two_workers_finding_no_lease_both_seed_it_and_exactly_one_claims_it() {
    let store = SharedStore::default();
    let a = Vm::shared(&store, 1);
    let b = Vm::shared(&store, 2);
    // Both read "no lease" before either writes: both seed, neither polls.
    let b_first = Rc::clone(&b);
    store.after_get(LEASE_KEY, move || {
        b_first.borrow_mut().tick(T0);
    });
    a.borrow_mut().tick(T0);
    // Both read the same lapsed lease before either claims it: one CAS wins.
    let b_second = Rc::clone(&b);
    store.after_get(LEASE_KEY, move || {
        b_second.borrow_mut().tick(T0 + MS);
    });
    a.borrow_mut().tick(T0 + MS);
    assert_eq!(a.borrow().polls() + b.borrow().polls(), 1);
    assert_eq!(b.borrow().polls(), 1, "B claimed first");
    assert_eq!(store.lease().map(|lease| lease.owner), Some(2));
    // A keeps out while B's lease lives.
    a.borrow_mut().tick(T0 + LEASE_DURATION - MS);
    assert_eq!(a.borrow().polls(), 0);
}

#[test]
fn a_poll_answer_after_the_lease_passed_to_another_worker_is_dropped() {
    let store = SharedStore::default();
    let mut a = polling(&store, 1, T0);
    // A's ticks stall past its lease; B takes over and polls.
    let later = T0 + LEASE_DURATION + MS;
    let mut b = Vm::new(&store, 2);
    b.tick(later);
    assert_eq!(b.polls(), 1);
    assert_eq!(store.lease().map(|lease| lease.owner), Some(2));
    // A's answer arrives first: it is neither published nor applied, and A does not poll again.
    let events = a.answer(Some(200), snapshot(5), later);
    assert!(matches!(events.as_slice(), [SyncEvent::AnswerDropped]));
    assert_eq!(store.version(), None);
    assert_eq!(a.worker.applied(), None);
    assert!(!a.in_flight());
    assert_eq!(a.polls(), 1);
    // B's answer is published, and A picks it up as a reader.
    assert_eq!(applied(&b.answer(Some(200), snapshot(6), later)), [6]);
    assert_eq!(store.version(), Some(6));
    assert_eq!(applied(&a.tick(later + MS)), [6]);
    assert_eq!(a.polls(), 1);
}

#[test]
fn a_poll_answer_after_the_lease_lapsed_unclaimed_retakes_it_and_counts() {
    let store = SharedStore::default();
    let mut a = polling(&store, 1, T0);
    let later = T0 + LEASE_DURATION + MS;
    assert_eq!(applied(&a.answer(Some(200), snapshot(5), later)), [5]);
    assert_eq!(store.version(), Some(5));
    let lease = store.lease().expect("a lease");
    assert_eq!(lease.owner, 1);
    assert_eq!(
        u128::from(lease.expires_at_ms),
        (later + LEASE_DURATION).as_millis()
    );
    assert!(a.in_flight(), "the next poll left at once");
}

#[test]
fn a_worker_that_loses_the_lease_forgets_its_poll_on_its_next_tick() {
    let store = SharedStore::default();
    let mut a = polling(&store, 1, T0);
    let later = T0 + LEASE_DURATION + MS;
    let taken = Lease {
        owner: 2,
        expires_at_ms: u64::try_from((later + LEASE_DURATION).as_millis()).unwrap(),
    };
    store.put(LEASE_KEY, &taken.encode());
    assert!(a.tick(later).is_empty());
    assert!(!a.in_flight());
    assert_eq!(a.polls(), 1);
    assert!(a.answer(Some(200), snapshot(5), later).is_empty());
    assert_eq!(store.version(), None);
}

#[test]
fn a_snapshot_published_while_another_worker_reads_is_recorded_at_the_version_of_its_bytes() {
    let store = SharedStore::default();
    let b = Rc::new(RefCell::new(leader(&store, 2, 2, T0)));
    let mut a = Vm::new(&store, 1);
    // A reads version 2; B publishes 3 before A reads the bytes.
    let b_answers = Rc::clone(&b);
    store.after_get(VERSION_KEY, move || {
        let events = b_answers
            .borrow_mut()
            .answer(Some(200), snapshot(3), T0 + MS);
        assert_eq!(applied(&events), [3]);
    });
    assert_eq!(applied(&a.tick(T0 + MS)), [3]);
    assert_eq!(a.worker.applied(), Some(3));
    assert!(a.tick(T0 + 2 * MS).is_empty(), "3 is not applied twice");

    // B publishes 4: a read between its two writes still sees 3, never a version without bytes.
    let a = Rc::new(RefCell::new(a));
    let a_reads = Rc::clone(&a);
    store.after_set(SNAPSHOT_KEY, move || {
        assert!(a_reads.borrow_mut().tick(T0 + 3 * MS).is_empty());
        assert_eq!(a_reads.borrow().worker.applied(), Some(3));
    });
    store.0.borrow_mut().writes.clear();
    b.borrow_mut().answer(Some(200), snapshot(4), T0 + 3 * MS);
    let writes = store.0.borrow().writes.clone();
    let bytes_at = writes.iter().position(|key| key == SNAPSHOT_KEY).unwrap();
    let version_at = writes.iter().position(|key| key == VERSION_KEY).unwrap();
    assert!(bytes_at < version_at, "{writes:?}");
    assert_eq!(applied(&a.borrow_mut().tick(T0 + 4 * MS)), [4]);
}

#[test]
fn garbage_from_the_control_plane_is_neither_published_nor_applied_and_backs_off() {
    let store = SharedStore::default();
    let mut vm = leader(&store, 1, 1, T0);
    let events = vm.answer(Some(200), b"PSN\x07 not a snapshot".to_vec(), T0);
    assert!(matches!(
        events.as_slice(),
        [SyncEvent::AnswerRejected { .. }]
    ));
    assert_eq!(store.version(), Some(1));
    assert_eq!(store.value(SNAPSHOT_KEY), Some(snapshot(1)));
    assert_eq!(vm.worker.applied(), Some(1));
    assert_eq!(vm.worker.machine.consecutive_failures(), 1);
    let polls = vm.polls();
    vm.tick(T0 + 49 * MS);
    assert_eq!(
        vm.polls(),
        polls,
        "backing off for at least half the first delay"
    );
    vm.tick(T0 + 100 * MS);
    assert_eq!(vm.polls(), polls + 1);
    assert_eq!(since(vm.last()), 1);
}

#[test]
fn a_published_version_that_does_not_decode_is_rejected_once_and_the_last_good_kept() {
    let store = SharedStore::default();
    let holder = Lease {
        owner: 99,
        expires_at_ms: u64::MAX,
    };
    store.put(LEASE_KEY, &holder.encode());
    store.put(SNAPSHOT_KEY, &snapshot(1));
    store.put(VERSION_KEY, &1u64.to_le_bytes());
    let mut reader = Vm::new(&store, 1);
    assert_eq!(applied(&reader.tick(T0)), [1]);
    store.put(SNAPSHOT_KEY, b"garbage");
    store.put(VERSION_KEY, &7u64.to_le_bytes());
    let events = reader.tick(T0 + MS);
    assert!(matches!(
        events.as_slice(),
        [SyncEvent::PublishedRejected { version: 7, .. }]
    ));
    assert!(reader.tick(T0 + 2 * MS).is_empty(), "not tried again");
    assert_eq!(reader.worker.applied(), Some(1));
    assert_eq!(reader.polls(), 0);
    store.put(SNAPSHOT_KEY, &snapshot(8));
    store.put(VERSION_KEY, &8u64.to_le_bytes());
    assert_eq!(applied(&reader.tick(T0 + 3 * MS)), [8]);
}

#[test]
fn a_version_going_backwards_after_a_restore_is_followed_by_every_worker() {
    let store = SharedStore::default();
    let mut lead = leader(&store, 1, 10, T0);
    let mut reader = Vm::new(&store, 2);
    assert_eq!(applied(&reader.tick(T0)), [10]);
    assert_eq!(since(lead.last()), 10);
    // The restored control plane is at 7: it differs from `since`, so it answers 7 at once.
    assert_eq!(applied(&lead.answer(Some(200), snapshot(7), T0 + MS)), [7]);
    assert_eq!(store.version(), Some(7));
    assert_eq!(since(lead.last()), 7);
    assert_eq!(applied(&reader.tick(T0 + 2 * MS)), [7]);
    assert_eq!(reader.worker.applied(), Some(7));
}

#[test]
fn backoff_doubles_from_the_initial_delay_up_to_the_cap_and_resets_on_success() {
    let store = SharedStore::default();
    let mut vm = leader(&store, 1, 1, T0);
    let mut now = T0;
    for (failures, full_ms) in [
        (1, 100),
        (2, 200),
        (3, 400),
        (4, 800),
        (5, 1_000),
        (6, 1_000),
    ] {
        let events = vm.answer(Some(503), Vec::new(), now);
        match events.as_slice() {
            [
                SyncEvent::PollFailed {
                    failures: counted,
                    reason,
                },
            ] => {
                assert_eq!(*counted, failures);
                assert!(reason.contains("503"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let SyncPhase::Backoff { until } = vm.worker.machine.phase() else {
            panic!("not backing off");
        };
        let full = Duration::from_millis(full_ms);
        assert!(until >= now + full / 2 && until <= now + full, "{failures}");
        let polls = vm.polls();
        vm.tick(until - MS);
        assert_eq!(vm.polls(), polls);
        now = until;
        vm.tick(now);
        assert_eq!(vm.polls(), polls + 1);
    }
    // A host that refuses the call counts too; then a 304 resets the count.
    vm.host.refuse = true;
    vm.answer(None, Vec::new(), now);
    let SyncPhase::Backoff { until } = vm.worker.machine.phase() else {
        panic!("not backing off");
    };
    let events = vm.tick(until);
    assert!(matches!(
        events.as_slice(),
        [SyncEvent::DispatchFailed { .. }]
    ));
    assert_eq!(vm.worker.machine.consecutive_failures(), 8);
    vm.host.refuse = false;
    let SyncPhase::Backoff { until } = vm.worker.machine.phase() else {
        panic!("not backing off");
    };
    vm.tick(until);
    assert!(vm.answer(Some(304), Vec::new(), until).is_empty());
    assert_eq!(vm.worker.machine.consecutive_failures(), 0);
    assert!(vm.in_flight(), "a 304 polls again at once");
    vm.answer(None, Vec::new(), until);
    let SyncPhase::Backoff { until: next } = vm.worker.machine.phase() else {
        panic!("not backing off");
    };
    assert!(next <= until + Duration::from_millis(100));
}

#[test]
fn unknown_kids_are_reported_and_the_answers_leave_the_poll_alone() {
    let store = SharedStore::default();
    let mut vm = leader(&store, 1, 1, T0);
    let poll = vm.last().token;
    vm.reports.note("https://idp", "k\"2", T0);
    let events = vm.tick(T0 + MS);
    assert!(matches!(
        events.as_slice(),
        [SyncEvent::KidReported { issuer, kid }] if issuer == "https://idp" && kid == "k\"2"
    ));
    let report = vm.last();
    assert_eq!(report.header(":method"), "POST");
    assert_eq!(report.header(":path"), "/v1/unknown-kid");
    assert_eq!(report.header("authorization"), "Bearer dp-token");
    assert_eq!(report.timeout, REPORT_TIMEOUT);
    assert_eq!(
        report.body.as_deref(),
        Some(&br#"{"issuer":"https://idp","kid":"k\"2"}"#[..])
    );
    let report = report.token;
    assert!(vm.answer_call(report, Some(202), Vec::new(), T0).is_empty());
    assert_eq!(
        vm.worker.machine.phase(),
        SyncPhase::InFlight { token: poll }
    );
    assert_eq!(
        applied(&vm.answer_call(poll, Some(200), snapshot(2), T0)),
        [2]
    );
}

#[test]
fn usage_reports_go_to_the_control_plane_and_are_sent_again_until_acknowledged() {
    let store = SharedStore::default();
    let mut vm = leader(&store, 1, 1, T0);
    let mut usage = crate::usage::UsageRecorder::new("vm-1".to_owned());
    usage.allowed("cli_a");
    vm.worker
        .report_usage(&mut vm.host, T0 + MS, &mut usage)
        .unwrap();
    let sent = vm.last();
    let (sent_token, sent_body) = (sent.token, sent.body.clone());
    assert_eq!(sent.header(":method"), "POST");
    assert_eq!(sent.header(":path"), "/v1/usage");
    assert_eq!(sent.header("authorization"), "Bearer dp-token");
    let report: crate::usage::UsageReport =
        serde_json::from_slice(sent.body.as_deref().unwrap()).unwrap();
    assert_eq!((report.reporter.as_str(), report.sequence), ("vm-1", 1));
    assert!(usage.is_report_call(sent_token));
    // Refused: the same report leaves again a second later.
    usage.answered(sent_token, Some(503), T0 + 2 * MS);
    let calls = vm.host.sent.len();
    vm.worker
        .report_usage(&mut vm.host, T0 + 3 * MS, &mut usage)
        .unwrap();
    assert_eq!(vm.host.sent.len(), calls, "not at once");
    vm.worker
        .report_usage(
            &mut vm.host,
            T0 + 2 * MS + crate::usage::REPORT_INTERVAL,
            &mut usage,
        )
        .unwrap();
    let again = vm.last();
    assert_eq!(again.body, sent_body);
    assert_eq!(
        usage.answered(
            again.token,
            Some(200),
            T0 + 2 * crate::usage::REPORT_INTERVAL
        ),
        crate::usage::ReportOutcome::Acknowledged
    );
}

#[test]
fn a_rate_share_published_by_one_vm_is_read_by_the_others() {
    let store = SharedStore::default();
    let mut first = leader(&store, 1, 1, T0);
    let mut second = Vm::new(&store, 2);
    assert_eq!(second.worker.published_rate_share(&mut second.host), None);
    first.worker.publish_rate_share(&mut first.host, 375);
    assert_eq!(
        second.worker.published_rate_share(&mut second.host),
        Some(375)
    );
}

// === Deltas ===

/// A snapshot at `version` that revokes `ids` (any such snapshot compiles).
fn revoking(version: u64, ids: &[&str]) -> Snapshot {
    Snapshot {
        version,
        revoked_clients: ids.iter().map(|id| (*id).to_owned()).collect(),
        ..Default::default()
    }
}

/// The binary delta from `base` to `next`.
fn delta(base: &Snapshot, next: &Snapshot) -> Vec<u8> {
    SnapshotDelta::diff(base, next)
        .expect("diffs")
        .to_binary()
        .expect("encodes")
}

/// The versions applied, each with the version its delta was applied to (none for a whole
/// snapshot).
fn applied_with_base(events: &[SyncEvent]) -> Vec<(u64, Option<u64>)> {
    events
        .iter()
        .filter_map(|event| match event {
            SyncEvent::Applied {
                snapshot,
                delta_from,
                ..
            } => Some((snapshot.version, *delta_from)),
            _ => None,
        })
        .collect()
}

fn refused(events: &[SyncEvent]) -> Option<&str> {
    events.iter().find_map(|event| match event {
        SyncEvent::DeltaRefused { error } => Some(error.as_str()),
        _ => None,
    })
}

const BOTH: &str = "application/vnd.portico.snapshot-delta.v7+postcard, \
                    application/vnd.portico.snapshot.v7+postcard";

#[test]
fn a_worker_with_a_version_in_force_asks_for_a_delta_and_applies_it_to_the_published_snapshot() {
    let store = SharedStore::default();
    let mut lead = leader(&store, 1, 1, T0);
    let mut reader = Vm::new(&store, 2);
    assert_eq!(applied(&reader.tick(T0)), [1]);
    assert_eq!(lead.last().header("accept"), BOTH);
    assert_eq!(since(lead.last()), 1);

    let next = revoking(2, &["app-1"]);
    let body = delta(&revoking(1, &[]), &next);
    let size = body.len();
    let events = lead.answer(Some(200), body, T0 + MS);
    assert_eq!(applied_with_base(&events), [(2, Some(1))]);
    match events.as_slice() {
        [
            SyncEvent::Applied {
                snapshot,
                size: received,
                ..
            },
        ] => {
            assert_eq!(*received, size);
            assert!(snapshot.is_revoked("app-1"));
        }
        other => panic!("{other:?}"),
    }
    // Published whole: the other workers pick it up as any snapshot.
    assert_eq!(store.version(), Some(2));
    assert_eq!(
        store.value(SNAPSHOT_KEY),
        Some(next.to_binary().expect("encodes"))
    );
    assert_eq!(applied_with_base(&reader.tick(T0 + 2 * MS)), [(2, None)]);
    assert_eq!(lead.last().header("accept"), BOTH);
    assert_eq!(since(lead.last()), 2);
    assert_eq!(lead.worker.machine.consecutive_failures(), 0);
}

/// A leader with version 1 (no revocations) in force, answered `body`: whatever it refuses
/// leaves version 1 in force and published, and its next poll leaves at once for the whole
/// snapshot; which the test then answers with version 3.
fn refuses_then_fetches_the_whole_snapshot(store: &SharedStore, body: Vec<u8>) -> String {
    let mut lead = leader(store, 1, 1, T0);
    let polls = lead.polls();
    let events = lead.answer(Some(200), body, T0 + MS);
    let error = refused(&events)
        .unwrap_or_else(|| panic!("the delta is refused: {events:?}"))
        .to_owned();
    assert!(applied(&events).is_empty(), "{events:?}");
    assert_eq!(lead.worker.applied(), Some(1));
    assert_eq!(store.version(), Some(1));
    assert_eq!(store.value(SNAPSHOT_KEY), Some(snapshot(1)));
    assert_eq!(lead.polls(), polls + 1, "the next poll left at once");
    assert_eq!(lead.last().header("accept"), BINARY_MEDIA_TYPE);
    assert_eq!(since(lead.last()), 1);
    let whole = revoking(3, &["app-1"]).to_binary().expect("encodes");
    let events = lead.answer(Some(200), whole, T0 + 2 * MS);
    assert_eq!(applied_with_base(&events), [(3, None)]);
    assert_eq!(lead.last().header("accept"), BOTH, "deltas again");
    error
}

#[test]
fn a_delta_for_another_base_is_refused_and_the_whole_snapshot_fetched() {
    let store = SharedStore::default();
    let error = refuses_then_fetches_the_whole_snapshot(
        &store,
        delta(&revoking(2, &[]), &revoking(3, &["app-1"])),
    );
    assert!(error.contains("applies to version 2"), "{error}");
}

#[test]
fn a_delta_whose_result_is_not_the_announced_snapshot_is_refused() {
    // The control plane's version 1 revoked `old`; this Envoy's version 1 did not.
    let store = SharedStore::default();
    let error = refuses_then_fetches_the_whole_snapshot(
        &store,
        delta(&revoking(1, &["old"]), &revoking(2, &["app-1", "old"])),
    );
    assert!(error.contains("digest"), "{error}");
}

#[test]
fn a_delta_whose_result_does_not_compile_is_refused() {
    let base = revoking(1, &[]);
    let mut next = revoking(2, &[]);
    next.apis.push(
        serde_json::from_value(
            serde_json::json!({"id": "orders", "listen_path": "/orders", "issuers": []}),
        )
        .expect("an API"),
    );
    let store = SharedStore::default();
    let error = refuses_then_fetches_the_whole_snapshot(&store, delta(&base, &next));
    assert!(error.contains("does not compile"), "{error}");
}

#[test]
fn a_delta_that_does_not_decode_is_refused() {
    let store = SharedStore::default();
    let error = refuses_then_fetches_the_whole_snapshot(&store, b"PSD\x07\xff\xff".to_vec());
    assert!(error.contains("not a snapshot delta"), "{error}");
}

#[test]
fn a_delta_without_a_published_base_is_refused() {
    let store = SharedStore::default();
    let mut lead = leader(&store, 1, 1, T0);
    store.put(SNAPSHOT_KEY, b"lost");
    let events = lead.answer(
        Some(200),
        delta(&revoking(1, &[]), &revoking(2, &["app-1"])),
        T0 + MS,
    );
    assert!(refused(&events).is_some(), "{events:?}");
    assert_eq!(lead.worker.applied(), Some(1));
    assert_eq!(lead.last().header("accept"), BINARY_MEDIA_TYPE);
}

#[test]
fn a_refused_delta_answering_a_request_for_the_whole_snapshot_backs_off() {
    let store = SharedStore::default();
    let mut lead = leader(&store, 1, 1, T0);
    let wrong = delta(&revoking(5, &[]), &revoking(6, &[]));
    assert!(refused(&lead.answer(Some(200), wrong.clone(), T0 + MS)).is_some());
    // The control plane ignores the request for the whole snapshot and sends a delta again.
    let events = lead.answer(Some(200), wrong, T0 + 2 * MS);
    assert!(
        matches!(events.as_slice(), [SyncEvent::AnswerRejected { .. }]),
        "{events:?}"
    );
    assert!(matches!(
        lead.worker.machine.phase(),
        SyncPhase::Backoff { .. }
    ));
}
