//! The change log behind snapshot deltas: for each of the last published versions, the delta
//! from the version before it (core's [`SnapshotDelta`]), so that a filter a few versions
//! behind is answered what changed since its version instead of the whole snapshot.
//!
//! The log keeps deltas, never whole snapshots: with 100,000 clients a registration's delta is
//! a few hundred bytes where the snapshot is 13 MB. It is bounded by [`MAX_DELTA_VERSIONS`]
//! and [`MAX_DELTA_BYTES`], and it lives in memory only: after a start every filter behind
//! gets the whole snapshot once.

use std::sync::Arc;

use portico_core::snapshot::{DeltaError, SnapshotDelta};

/// The most versions a filter can be behind and still be answered a delta.
pub const MAX_DELTA_VERSIONS: usize = 64;
/// The most bytes the kept deltas take, encoded; older ones are dropped first, and a delta
/// larger than this on its own is not kept (filters behind get the whole snapshot).
pub const MAX_DELTA_BYTES: usize = 8 << 20;

/// One published version's delta from the version before it.
#[derive(Debug)]
struct Step {
    delta: SnapshotDelta,
    /// Its binary encoding's length, in bytes.
    bytes: usize,
}

/// The deltas that lead to one published version, oldest first, each from the version the
/// previous one produces. A chain never changes: each publication makes a new one that shares
/// the steps it keeps.
#[derive(Debug, Default, Clone)]
pub struct DeltaChain {
    steps: Vec<Arc<Step>>,
}

// === impl DeltaChain ===

impl DeltaChain {
    /// This chain followed by `delta`, whose encoding is `bytes` long, trimmed to the limits
    /// from its oldest end. A `delta` that does not follow the chain's last version starts a
    /// chain of its own.
    pub fn then(&self, delta: SnapshotDelta, bytes: usize) -> DeltaChain {
        let follows = self
            .steps
            .last()
            .is_none_or(|last| last.delta.version == delta.base);
        let mut steps: Vec<Arc<Step>> = if follows {
            self.steps.clone()
        } else {
            Vec::new()
        };
        steps.push(Arc::new(Step { delta, bytes }));
        let mut total = 0usize;
        let keep = steps
            .iter()
            .rev()
            .take(MAX_DELTA_VERSIONS)
            .take_while(|step| {
                total = total.saturating_add(step.bytes);
                total <= MAX_DELTA_BYTES
            })
            .count();
        steps.drain(..steps.len() - keep);
        DeltaChain { steps }
    }

    /// The oldest version a filter can hold and be answered a delta, if any.
    pub fn oldest_base(&self) -> Option<u64> {
        self.steps.first().map(|step| step.delta.base)
    }

    /// The delta from version `base` to the chain's last version, composed from the steps;
    /// `None` when no step starts at `base`.
    ///
    /// # Errors
    /// A [`DeltaError`] from composing, which only a broken chain can cause.
    pub fn since(&self, base: u64) -> Option<Result<SnapshotDelta, DeltaError>> {
        let start = self.steps.iter().position(|step| step.delta.base == base)?;
        let mut steps = self.steps[start..].iter();
        let first = steps.next()?.delta.clone();
        Some(steps.try_fold(first, |composed, step| composed.compose(step.delta.clone())))
    }
}

#[cfg(test)]
mod tests {
    use portico_core::snapshot::Snapshot;

    use super::*;

    fn snapshot(version: u64, revoked: &[&str]) -> Snapshot {
        Snapshot {
            version,
            revoked_clients: revoked.iter().map(|id| (*id).to_owned()).collect(),
            ..Snapshot::default()
        }
    }

    /// Versions 1..=`last`, version `n` revoking clients `c1` to `cn`.
    fn versions(last: u64) -> Vec<Snapshot> {
        (1..=last)
            .map(|n| {
                let ids: Vec<String> = (1..=n).map(|i| format!("c{i:03}")).collect();
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                snapshot(n, &ids)
            })
            .collect()
    }

    fn chain_of(snapshots: &[Snapshot]) -> DeltaChain {
        snapshots
            .windows(2)
            .fold(DeltaChain::default(), |chain, pair| {
                chain.then(SnapshotDelta::diff(&pair[0], &pair[1]).unwrap(), 100)
            })
    }

    #[test]
    fn a_filter_at_any_version_of_the_chain_gets_one_delta_to_the_last() {
        let snapshots = versions(5);
        let chain = chain_of(&snapshots);
        assert_eq!(chain.oldest_base(), Some(1));
        for (at, snapshot) in snapshots.iter().enumerate().take(4) {
            let delta = chain.since(snapshot.version).unwrap().unwrap();
            assert_eq!((delta.base, delta.version), (snapshot.version, 5), "{at}");
            assert_eq!(delta.apply(snapshot.clone()).unwrap(), snapshots[4]);
        }
        assert!(chain.since(5).is_none(), "the last version has no delta");
        assert!(chain.since(0).is_none());
        assert!(chain.since(9).is_none());
    }

    #[test]
    fn the_chain_keeps_the_last_versions_within_its_limits() {
        // 74 versions, 73 deltas: the last 64 start from versions 10 to 73.
        let snapshots = versions(u64::try_from(MAX_DELTA_VERSIONS).unwrap() + 10);
        let chain = chain_of(&snapshots);
        assert_eq!(chain.steps.len(), MAX_DELTA_VERSIONS);
        assert_eq!(chain.oldest_base(), Some(10));
        assert!(chain.since(9).is_none());

        let last = snapshots.last().unwrap();
        let next = snapshot(last.version + 1, &[]);
        let huge = chain.then(
            SnapshotDelta::diff(last, &next).unwrap(),
            MAX_DELTA_BYTES - 50,
        );
        assert_eq!(huge.oldest_base(), Some(last.version));
        let bigger = snapshot(next.version + 1, &["x"]);
        let over = huge.then(
            SnapshotDelta::diff(&next, &bigger).unwrap(),
            MAX_DELTA_BYTES / 2,
        );
        assert_eq!(over.oldest_base(), Some(next.version), "the big one went");
        let alone = over.then(
            SnapshotDelta::diff(&bigger, &snapshot(bigger.version + 1, &[])).unwrap(),
            MAX_DELTA_BYTES + 1,
        );
        assert_eq!(alone.oldest_base(), None, "too big to keep");
    }

    #[test]
    fn a_delta_that_does_not_follow_starts_a_new_chain() {
        let snapshots = versions(3);
        let chain = chain_of(&snapshots);
        let restored = snapshot(7, &[]);
        let next = snapshot(8, &["a"]);
        let chain = chain.then(SnapshotDelta::diff(&restored, &next).unwrap(), 10);
        assert_eq!(chain.oldest_base(), Some(7));
        assert!(chain.since(1).is_none());
    }
}
