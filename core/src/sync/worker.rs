//! The sync protocol that the worker VMs of one Envoy run between themselves and the control
//! plane, behind a [`SyncHost`] trait, so that it runs (and is tested) without Envoy.
//!
//! The rules, each enforced by [`SyncWorker`]:
//!
//! - **Who polls.** One VM at a time holds the lease under [`LEASE_KEY`] (see [`Lease`]), and
//!   only the holder long-polls the control plane. Every claim and renewal is a compare-and-swap
//!   over a value that exists: Envoy ignores the CAS token when the key is absent, so a VM that
//!   finds no lease writes a lapsed one and claims it from its next tick. Two VMs claiming at
//!   once therefore cannot both win.
//! - **A poll dies with the lease.** A VM that no longer holds the lease forgets its poll on its
//!   next tick, and checks the lease again when an answer arrives: an answer that reaches a VM
//!   whose lease another VM has taken is dropped, neither published nor applied.
//! - **Bytes before the version.** The holder decodes and compiles an answer, writes its bytes
//!   under [`SNAPSHOT_KEY`], then its version under [`VERSION_KEY`]. A reader reads the version,
//!   then the bytes, and records the version of the bytes it decoded, not the one announced, so a
//!   publication that lands between its two reads costs nothing.
//! - **Rejected once.** A published version that does not decode or compile here is remembered
//!   and not tried again until another version is published; the last good snapshot stays.
//! - **The control plane's version wins.** Any version other than the one in force is applied,
//!   lower ones too: a control plane restored from a backup answers `since=<newer>` with its own
//!   older version, and the filter follows it rather than enforcing what the control plane no
//!   longer has.
//! - **Deltas, checked, or the whole snapshot.** A VM with a version in force asks for a delta
//!   (`Accept` lists [`DELTA_MEDIA_TYPE`] before [`BINARY_MEDIA_TYPE`]). A delta is applied to
//!   the snapshot published under [`SNAPSHOT_KEY`] (the version in force, which its holder
//!   published or picked up: a VM keeps no second copy), and counts only if it names that
//!   version as its base, its result has the digest it announces and compiles. The result is
//!   published whole, so the other VMs pick it up as any snapshot. A delta that fails any check
//!   changes nothing, and the next poll leaves at once asking for the whole snapshot only.
//! - **Backoff.** A failed dispatch, an error status, no answer, or an answer that does not
//!   decode backs off (see [`super::backoff_delay`]); a snapshot or a 304 polls again at once.

use std::collections::HashSet;
use std::time::Duration;

use crate::config::ControlPlaneConfig;
use crate::rate_limit::CounterStore;
use crate::rules;
use crate::snapshot::{
    BINARY_MEDIA_TYPE, CompiledSnapshot, DELTA_MEDIA_TYPE, Snapshot, SnapshotDelta,
};
use crate::usage::UsageRecorder;

use super::{
    INSTANCE_KEY, KidReports, LEASE_KEY, Lease, LeaseClaim, PollOutcome, SNAPSHOT_KEY, SyncMachine,
    VERSION_KEY, decode_version, instance_id,
};

/// How often the host should call [`SyncWorker::on_tick`]: how soon a VM picks up a snapshot
/// another VM published. A tick reads one 8-byte shared-data value, so a short period costs next
/// to nothing.
pub const SYNC_TICK: Duration = Duration::from_millis(20);
/// How long the sync lease lasts without renewal; the holder renews it on the first tick after
/// half of it has passed.
pub const LEASE_DURATION: Duration = Duration::from_secs(2);
/// How long an unknown-kid report may take.
pub const REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// An HTTP call for the host to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCall<'a> {
    /// The Envoy cluster to send it to.
    pub cluster: &'a str,
    /// Pseudo-headers (`:method`, `:path`, `:authority`) and headers, in order.
    pub headers: Vec<(&'static str, String)>,
    /// The request body, if any.
    pub body: Option<Vec<u8>>,
    /// How long the host waits for the answer before failing the call.
    pub timeout: Duration,
}

/// The answer to an HTTP call, as [`SyncHost::answer`] reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpAnswer {
    /// The HTTP status; `None` when the call failed without one (connection refused, timeout,
    /// reset).
    pub status: Option<u16>,
    /// The body (empty when there is none).
    pub body: Vec<u8>,
}

/// The host refused to send a call (an unknown cluster, a bad header); the host's own status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the host refused the call: {0}")]
pub struct DispatchError(pub String);

/// What the sync protocol needs of its host. Time is not read here: every [`SyncWorker`]
/// method takes `now`, and the host arranges for [`SyncWorker::on_tick`] to run every
/// [`SYNC_TICK`].
pub trait SyncHost {
    /// The shared data of all worker VMs of this plugin, with compare-and-swap. A write with a
    /// CAS token to a key that does not exist succeeds, as in Envoy.
    fn shared(&mut self) -> &mut dyn CounterStore;
    /// Sends `call`; the answer arrives later through [`SyncWorker::on_http_response`] with the
    /// returned token.
    fn dispatch(&mut self, call: HttpCall<'_>) -> Result<u32, DispatchError>;
    /// The answer being delivered; only meaningful during [`SyncWorker::on_http_response`].
    fn answer(&self) -> HttpAnswer;
}

/// What happened during a callback, for the host to act on (apply, log, count).
#[derive(Debug)]
pub enum SyncEvent {
    /// This snapshot is now the one in force: the host applies it.
    Applied {
        /// The snapshot, decoded and compiled.
        snapshot: Box<CompiledSnapshot>,
        /// The length of what was received, in bytes: the snapshot's encoding, or the delta's.
        size: usize,
        /// The version a delta from the control plane was applied to; `None` for a whole
        /// snapshot (from the control plane or from another VM).
        delta_from: Option<u64>,
    },
    /// The control plane answered a delta that does not apply here (another base, a result
    /// with another digest or that does not compile, no base in shared data): nothing changed,
    /// and the next poll, sent at once, asks for the whole snapshot.
    DeltaRefused {
        /// Why it was refused.
        error: String,
    },
    /// A version another VM published does not decode or compile here; it is not tried again
    /// until another version is published.
    PublishedRejected {
        /// The version announced in shared data.
        version: u64,
        /// Why it failed.
        error: String,
    },
    /// The control plane answered a snapshot that does not decode or compile: not published,
    /// not applied, and the worker backs off.
    AnswerRejected {
        /// Why it failed.
        error: String,
    },
    /// A snapshot applied here could not be written to shared data.
    PublishFailed {
        /// Its version.
        version: u64,
    },
    /// A poll could not be sent; the worker backs off.
    DispatchFailed {
        /// The host's reason.
        error: DispatchError,
    },
    /// A poll failed (an error status, or no answer); the worker backs off.
    PollFailed {
        /// What went wrong.
        reason: String,
        /// Failures since the last success, this one included.
        failures: u32,
    },
    /// A poll's answer arrived after another VM took the lease, and was dropped.
    AnswerDropped,
    /// An unknown `kid` was reported to the control plane.
    KidReported {
        /// The token's issuer.
        issuer: String,
        /// The `kid` the snapshot lacks.
        kid: String,
    },
    /// An unknown-kid report could not be sent; it is not retried.
    KidReportNotSent {
        /// The host's reason.
        error: DispatchError,
    },
}

/// The snapshot sync of one worker VM in dynamic mode: the host calls [`SyncWorker::on_tick`]
/// every [`SYNC_TICK`] and [`SyncWorker::on_http_response`] for every call it dispatched.
#[derive(Debug)]
pub struct SyncWorker {
    config: ControlPlaneConfig,
    node: String,
    machine: SyncMachine,
    /// This VM's id in the lease, and the instance id it offers.
    vm_id: u64,
    /// The version in force here (from this VM's own poll or from shared data).
    applied: Option<u64>,
    /// A published version that failed to decode here; not retried until it changes.
    rejected: Option<u64>,
    /// Whether the next poll may be answered with a delta: not before a version is in force,
    /// nor right after a delta was refused.
    deltas: bool,
    /// Whether the poll in flight asked for a delta.
    asked_delta: bool,
    /// Calls carrying unknown-kid reports, whose answers are ignored.
    report_calls: HashSet<u32>,
}

// === impl SyncWorker ===

impl SyncWorker {
    /// A worker that syncs from `config`'s cluster, naming itself `node`. `seed` is random per
    /// VM: it is the VM's lease id, the instance id it offers, and its backoff jitter.
    pub fn new(config: ControlPlaneConfig, node: String, seed: u64) -> Self {
        SyncWorker {
            machine: SyncMachine::new(config.timing(), seed),
            config,
            node,
            vm_id: seed,
            applied: None,
            rejected: None,
            deltas: true,
            asked_delta: false,
            report_calls: HashSet::new(),
        }
    }

    /// The Envoy cluster that reaches the control plane.
    pub fn cluster(&self) -> &str {
        &self.config.cluster
    }

    /// The version in force here, if any.
    pub fn applied(&self) -> Option<u64> {
        self.applied
    }

    /// The timer: picks up a snapshot another VM published, holds or takes the lease and polls
    /// if this VM holds it (else forgets its poll), then sends the unknown-kid reports that are
    /// due. `now` is the time since the Unix epoch.
    pub fn on_tick(
        &mut self,
        host: &mut dyn SyncHost,
        now: Duration,
        kid_reports: &mut KidReports,
    ) -> Vec<SyncEvent> {
        let mut events = Vec::new();
        self.pick_up_published(host, &mut events);
        if self.lead(host, now) {
            self.poll(host, now, &mut events);
        } else {
            self.machine.abandon();
        }
        self.report_unknown_kids(host, now, kid_reports, &mut events);
        events
    }

    /// The answer to call `token` has arrived (read through [`SyncHost::answer`]). Answers to
    /// reports and to forgotten polls are ignored; a poll's answer counts only while this VM
    /// holds the lease. A snapshot, or the result of a delta that passes every check, is
    /// published (bytes, then version) and applied, and the next poll leaves at once, as after a
    /// 304; so does the next poll after a refused delta, asking for the whole snapshot.
    pub fn on_http_response(
        &mut self,
        host: &mut dyn SyncHost,
        token: u32,
        now: Duration,
    ) -> Vec<SyncEvent> {
        let mut events = Vec::new();
        if self.report_calls.remove(&token)
            || self.machine.phase() != (super::SyncPhase::InFlight { token })
        {
            return events;
        }
        if !self.lead(host, now) {
            self.machine.abandon();
            events.push(SyncEvent::AnswerDropped);
            return events;
        }
        let answer = host.answer();
        let poll_again = match self.machine.response(token, answer.status, now) {
            PollOutcome::Snapshot if SnapshotDelta::is_encoded(&answer.body) => {
                match self.apply_delta(host, &answer.body) {
                    Ok((snapshot, encoded, base)) => {
                        self.publish(
                            host,
                            snapshot,
                            &encoded,
                            answer.body.len(),
                            Some(base),
                            &mut events,
                        );
                        true
                    }
                    Err(error) if self.asked_delta => {
                        self.deltas = false;
                        events.push(SyncEvent::DeltaRefused { error });
                        true
                    }
                    Err(error) => {
                        self.machine.snapshot_rejected(now);
                        events.push(SyncEvent::AnswerRejected { error });
                        false
                    }
                }
            }
            PollOutcome::Snapshot => match decode_and_compile(&answer.body) {
                Ok(snapshot) => {
                    self.publish(
                        host,
                        snapshot,
                        &answer.body,
                        answer.body.len(),
                        None,
                        &mut events,
                    );
                    true
                }
                Err(error) => {
                    self.machine.snapshot_rejected(now);
                    events.push(SyncEvent::AnswerRejected { error });
                    false
                }
            },
            PollOutcome::NotModified => true,
            PollOutcome::Failed(reason) => {
                events.push(SyncEvent::PollFailed {
                    reason,
                    failures: self.machine.consecutive_failures(),
                });
                false
            }
            PollOutcome::Stale => false,
        };
        if poll_again {
            self.poll(host, now, &mut events);
        }
        events
    }

    /// Publishes `snapshot`, received as `size` bytes and encoded as `encoded`, to the other VMs
    /// (bytes, then version) and puts it in force here.
    fn publish(
        &mut self,
        host: &mut dyn SyncHost,
        snapshot: CompiledSnapshot,
        encoded: &[u8],
        size: usize,
        delta_from: Option<u64>,
        events: &mut Vec<SyncEvent>,
    ) {
        let version = snapshot.version;
        let shared = host.shared();
        let published = shared
            .set(SNAPSHOT_KEY, encoded, None)
            .and_then(|()| shared.set(VERSION_KEY, &version.to_le_bytes(), None));
        if published.is_err() {
            events.push(SyncEvent::PublishFailed { version });
        }
        self.applied = Some(version);
        self.deltas = true;
        self.machine.snapshot_applied();
        events.push(SyncEvent::Applied {
            snapshot: Box::new(snapshot),
            size,
            delta_from,
        });
    }

    /// Applies the delta in `body` to the version in force, read back from shared data: the
    /// compiled result, its binary encoding (to publish) and the version it was applied to.
    /// The error says why the delta does not apply here.
    fn apply_delta(
        &self,
        host: &mut dyn SyncHost,
        body: &[u8],
    ) -> Result<(CompiledSnapshot, Vec<u8>, u64), String> {
        let delta = SnapshotDelta::decode(body).map_err(|err| err.to_string())?;
        let base = delta.base;
        if self.applied != Some(base) {
            return Err(format!(
                "the delta applies to version {base}, this Envoy enforces {}",
                self.applied
                    .map_or_else(|| "none".to_owned(), |version| version.to_string())
            ));
        }
        let (bytes, _) = host
            .shared()
            .get(SNAPSHOT_KEY)
            .ok_or_else(|| "no snapshot in shared data to apply the delta to".to_owned())?;
        let in_force = Snapshot::decode(&bytes).map_err(|err| err.to_string())?;
        drop(bytes);
        let (snapshot, encoded) = delta
            .apply_encoded(in_force)
            .map_err(|err| err.to_string())?;
        let compiled = CompiledSnapshot::compile(snapshot)
            .map_err(|err| format!("the delta's result does not compile: {err}"))?;
        Ok((compiled, encoded, base))
    }

    /// Applies the snapshot published in shared data if its version is neither the one in
    /// force nor one rejected here.
    fn pick_up_published(&mut self, host: &mut dyn SyncHost, events: &mut Vec<SyncEvent>) {
        let shared = host.shared();
        let Some(version) = shared
            .get(VERSION_KEY)
            .and_then(|(bytes, _)| decode_version(&bytes))
        else {
            return;
        };
        if Some(version) == self.applied || Some(version) == self.rejected {
            return;
        }
        let Some((bytes, _)) = shared.get(SNAPSHOT_KEY) else {
            return;
        };
        match decode_and_compile(&bytes) {
            Ok(snapshot) => {
                // The bytes may be newer than the version read first: record theirs.
                self.applied = Some(snapshot.version);
                events.push(SyncEvent::Applied {
                    snapshot: Box::new(snapshot),
                    size: bytes.len(),
                    delta_from: None,
                });
            }
            Err(error) => {
                self.rejected = Some(version);
                events.push(SyncEvent::PublishedRejected { version, error });
            }
        }
    }

    /// Holds, renews or takes the lease at `now`; whether this VM holds it afterwards.
    fn lead(&mut self, host: &mut dyn SyncHost, now: Duration) -> bool {
        let shared = host.shared();
        let Some((value, cas)) = shared.get(LEASE_KEY) else {
            // A CAS write to an absent key always succeeds, so claims start from a lapsed
            // lease that exists; whoever wrote it last, the claim on the next tick is a CAS.
            let lapsed = Lease {
                owner: 0,
                expires_at_ms: 0,
            };
            let _ = shared.set(LEASE_KEY, &lapsed.encode(), None);
            return false;
        };
        match Lease::claim(Lease::decode(&value), self.vm_id, now, LEASE_DURATION) {
            LeaseClaim::Lost => false,
            LeaseClaim::Held => true,
            LeaseClaim::Write(lease) => shared.set(LEASE_KEY, &lease.encode(), Some(cas)).is_ok(),
        }
    }

    /// Sends a poll unless one is under way or the worker is backing off:
    /// `GET /v1/snapshot?since=<version in force, 0 for none>&wait=<seconds>&node=<node,
    /// percent-encoded>&instance=<instance id>`, with the data-plane token as a bearer token and
    /// the binary encoding asked for, preceded by the delta encoding when a delta may come.
    fn poll(&mut self, host: &mut dyn SyncHost, now: Duration, events: &mut Vec<SyncEvent>) {
        if !self.machine.should_poll(now) {
            return;
        }
        let path = format!(
            "/v1/snapshot?since={}&wait={}&node={}&instance={}",
            self.applied.unwrap_or(0),
            self.machine.timing().poll_wait.as_secs(),
            percent_encode(&self.node),
            shared_instance_id(host.shared(), self.vm_id)
        );
        let asked_delta = self.deltas && self.applied.is_some();
        let accept = if asked_delta {
            format!("{DELTA_MEDIA_TYPE}, {BINARY_MEDIA_TYPE}")
        } else {
            BINARY_MEDIA_TYPE.to_owned()
        };
        let call = HttpCall {
            cluster: &self.config.cluster,
            headers: vec![
                (":method", "GET".to_owned()),
                (":path", path),
                (":authority", self.config.authority().to_owned()),
                ("authorization", format!("Bearer {}", self.config.token)),
                ("accept", accept),
            ],
            body: None,
            timeout: self.machine.timing().request_timeout,
        };
        match host.dispatch(call) {
            Ok(token) => {
                self.asked_delta = asked_delta;
                self.machine.dispatched(token);
            }
            Err(error) => {
                self.machine.dispatch_failed(now);
                events.push(SyncEvent::DispatchFailed { error });
            }
        }
    }

    /// Publishes `share` (thousandths of every rate limit, from the control plane's answer to
    /// a usage report) to the other VMs of this Envoy ([`super::RATE_SHARE_KEY`]).
    pub fn publish_rate_share(&self, host: &mut dyn SyncHost, share: u32) {
        let _ = host
            .shared()
            .set(super::RATE_SHARE_KEY, &share.to_le_bytes(), None);
    }

    /// The share of every rate limit that a VM of this Envoy last published, if any.
    pub fn published_rate_share(&self, host: &mut dyn SyncHost) -> Option<u32> {
        let (bytes, _) = host.shared().get(super::RATE_SHARE_KEY)?;
        Some(u32::from_le_bytes(bytes.as_slice().try_into().ok()?))
    }

    /// A report to the control plane: `POST path` with the JSON `body` and the data-plane
    /// token, answered within [`REPORT_TIMEOUT`].
    fn report_call(&self, path: &str, body: Vec<u8>) -> HttpCall<'_> {
        HttpCall {
            cluster: &self.config.cluster,
            headers: vec![
                (":method", "POST".to_owned()),
                (":path", path.to_owned()),
                (":authority", self.config.authority().to_owned()),
                ("authorization", format!("Bearer {}", self.config.token)),
                ("content-type", "application/json".to_owned()),
            ],
            body: Some(body),
            timeout: REPORT_TIMEOUT,
        }
    }

    /// Sends the usage report that `usage` has due at `now`, if any: `POST /v1/usage` with
    /// the report as JSON and the data-plane token (see [`crate::usage`]). The host hands the
    /// answer to [`UsageRecorder::answered`] when [`UsageRecorder::is_report_call`] says it is
    /// the report's. Errors: the host's refusal to send (the report is tried again later).
    pub fn report_usage(
        &self,
        host: &mut dyn SyncHost,
        now: Duration,
        usage: &mut UsageRecorder,
    ) -> Result<(), DispatchError> {
        usage.set_instance(&shared_instance_id(host.shared(), self.vm_id));
        let Some(report) = usage.due(now, REPORT_TIMEOUT) else {
            return Ok(());
        };
        let body = serde_json::to_vec(report).map_err(|error| DispatchError(error.to_string()))?;
        match host.dispatch(self.report_call("/v1/usage", body)) {
            Ok(token) => {
                usage.sent(token, now);
                Ok(())
            }
            Err(error) => {
                usage.not_sent(now);
                Err(error)
            }
        }
    }

    /// Sends the reports that `kid_reports` lets out at `now`: `POST /v1/unknown-kid` with
    /// `{"issuer": …, "kid": …}`, answers ignored.
    fn report_unknown_kids(
        &mut self,
        host: &mut dyn SyncHost,
        now: Duration,
        kid_reports: &mut KidReports,
        events: &mut Vec<SyncEvent>,
    ) {
        for (issuer, kid) in kid_reports.take_due(now) {
            let body = serde_json::json!({ "issuer": issuer, "kid": kid }).to_string();
            match host.dispatch(self.report_call("/v1/unknown-kid", body.into_bytes())) {
                Ok(token) => {
                    self.report_calls.insert(token);
                    events.push(SyncEvent::KidReported { issuer, kid });
                }
                Err(error) => events.push(SyncEvent::KidReportNotSent { error }),
            }
        }
    }
}

/// Decodes and compiles a snapshot's bytes; the error says why they are not a snapshot.
fn decode_and_compile(bytes: &[u8]) -> Result<CompiledSnapshot, String> {
    let snapshot = Snapshot::decode(bytes).map_err(|err| err.to_string())?;
    CompiledSnapshot::compile(snapshot).map_err(|err| err.to_string())
}

/// This Envoy's filter instance id: the one a VM already published under [`INSTANCE_KEY`],
/// else this VM's own, published for the others (read at every poll, so that after a start-up
/// race every VM sends the one that stayed).
fn shared_instance_id(shared: &mut dyn CounterStore, vm_id: u64) -> String {
    if let Some((bytes, _)) = shared.get(INSTANCE_KEY)
        && let Ok(published) = String::from_utf8(bytes)
        && rules::is_instance_id(&published)
    {
        return published;
    }
    let own = instance_id(vm_id);
    let _ = shared.set(INSTANCE_KEY, own.as_bytes(), None);
    own
}

/// Percent-encodes all but RFC 3986's unreserved characters, for a query value.
fn percent_encode(value: &str) -> String {
    const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(value, RESERVED).to_string()
}

#[cfg(test)]
mod tests;
