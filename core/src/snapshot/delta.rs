//! Snapshot deltas: what changed from one version to the next, section by section, so that a
//! filter holding version N downloads a few hundred bytes instead of the whole snapshot.
//!
//! Every keyed section (`apis`, `issuers`, `policies` by id, `clients` by `client_id`,
//! `revoked_clients` by the id itself, `exhausted_quotas` by policy and subject) changes by
//! **upserts** (items added or replaced) and **removals** (keys), both sorted by key; `global`
//! is sent whole when it changed. A section whose items are not sorted by a key without
//! repeats (the control plane's always are) is sent whole instead ([`SectionDelta::Replace`]),
//! so that [`SnapshotDelta::diff`] works for any two snapshots.
//!
//! A delta names the version it applies to (`base`), the version it produces and the
//! [`SnapshotDigest`] of the result. [`SnapshotDelta::apply`] checks all three, so a delta
//! applied to anything but its base never yields a snapshot. The control plane keeps one delta
//! per published version and joins consecutive ones with [`SnapshotDelta::compose`] to answer
//! a filter several versions behind.

use std::cmp::Ordering;
use std::fmt::Debug;
use std::iter::Peekable;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{
    ApiSpec, ClientBinding, ExhaustedQuota, GlobalSpec, IssuerSpec, PolicySpec, Snapshot,
    SnapshotDigest, SnapshotError,
};

/// The media type of the binary delta encoding. A filter that lists it in `Accept` next to
/// [`super::BINARY_MEDIA_TYPE`] may be answered a delta instead of a whole snapshot.
pub const DELTA_MEDIA_TYPE: &str = "application/vnd.portico.snapshot-delta.v7+postcard";
/// The first bytes of a binary delta: `PSD` and the snapshot format version it carries items
/// of (the same as [`super::BINARY_MEDIA_TYPE`]'s).
const DELTA_MAGIC: &[u8; 4] = b"PSD\x07";

/// Why a delta cannot be decoded, composed or applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    /// The bytes are not a binary delta of this format.
    #[error("not a snapshot delta: {0}")]
    Malformed(String),
    /// The delta applies to another version than the snapshot at hand.
    #[error("the delta applies to version {expected}, not to version {found}")]
    WrongBase {
        /// The delta's base version.
        expected: u64,
        /// The version it was offered.
        found: u64,
    },
    /// Two deltas that do not follow each other were composed.
    #[error("a delta to version {first} cannot be followed by one from version {next}")]
    NotConsecutive {
        /// The version the first delta produces.
        first: u64,
        /// The base version of the next one.
        next: u64,
    },
    /// A section is out of order: the base's items, or the delta's upserts or removals, are not
    /// sorted by key without repeats, or one key is both upserted and removed.
    #[error("{section}: {problem}")]
    Unsorted {
        /// The section (`clients`, …).
        section: &'static str,
        /// What is out of order.
        problem: &'static str,
    },
    /// The result of the delta is not the snapshot the control plane announced.
    #[error("the result's digest {found} differs from the announced {expected}")]
    DigestMismatch {
        /// The digest the delta announced.
        expected: SnapshotDigest,
        /// The digest of what applying it produced.
        found: SnapshotDigest,
    },
    /// The result could not be encoded to compute its digest.
    #[error("cannot digest the result: {0}")]
    Digest(String),
}

/// An item of a keyed section.
pub trait Keyed: Clone + PartialEq {
    /// The key, owned: what a removal carries.
    type Key: Clone + Ord + Debug + Serialize + DeserializeOwned;
    /// The key, borrowed from an item or from a [`Keyed::Key`].
    type KeyRef<'a>: Copy
    where
        Self: 'a;
    /// The section's name, for errors.
    const SECTION: &'static str;

    /// This item's key.
    fn key(&self) -> Self::KeyRef<'_>;
    /// An owned key, borrowed.
    fn borrow_key(key: &Self::Key) -> Self::KeyRef<'_>;
    /// A borrowed key, owned.
    fn own_key(key: Self::KeyRef<'_>) -> Self::Key;
    /// How two keys, borrowed for any lifetimes, compare.
    fn compare(a: Self::KeyRef<'_>, b: Self::KeyRef<'_>) -> Ordering;
}

/// How one section changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(bound(serialize = "T: Serialize", deserialize = "T: DeserializeOwned"))]
pub enum SectionDelta<T: Keyed> {
    /// Items added or replaced, and keys removed, each sorted by key; a key is in one list at
    /// most. Removing a key the base does not hold changes nothing (a composed delta may
    /// remove an item that an earlier step added).
    Patch {
        /// Items to add, or to put in place of the item with the same key.
        upserts: Vec<T>,
        /// Keys of the items to remove.
        removals: Vec<T::Key>,
    },
    /// The section's new items, whole.
    Replace(Vec<T>),
}

/// What changed between two snapshots, and what the result must be.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotDelta {
    /// The version the delta applies to.
    pub base: u64,
    /// The version it produces.
    pub version: u64,
    /// The digest of the snapshot it produces ([`Snapshot::digest`]).
    pub digest: SnapshotDigest,
    /// Changes to `apis`, by id.
    pub apis: SectionDelta<ApiSpec>,
    /// Changes to `issuers`, by id.
    pub issuers: SectionDelta<IssuerSpec>,
    /// Changes to `policies`, by id.
    pub policies: SectionDelta<PolicySpec>,
    /// Changes to `clients`, by `client_id`.
    pub clients: SectionDelta<ClientBinding>,
    /// Changes to `revoked_clients`: ids added (upserts) and ids no longer revoked (removals).
    pub revoked_clients: SectionDelta<String>,
    /// Changes to `exhausted_quotas`, by policy and subject.
    pub exhausted_quotas: SectionDelta<ExhaustedQuota>,
    /// The new `global`, when it changed.
    pub global: Option<GlobalSpec>,
}

// === impl SnapshotDelta ===

impl SnapshotDelta {
    /// The delta that turns `base` into `new`: from `base.version` to `new.version`, with
    /// `new`'s digest. For any two snapshots, `diff(a, b).apply(a) == b`.
    ///
    /// # Errors
    /// A [`SnapshotError`] at `.` when `new` cannot be encoded to compute its digest.
    pub fn diff(base: &Snapshot, new: &Snapshot) -> Result<SnapshotDelta, SnapshotError> {
        Ok(SnapshotDelta {
            base: base.version,
            version: new.version,
            digest: new.digest()?,
            apis: diff_section(&base.apis, &new.apis),
            issuers: diff_section(&base.issuers, &new.issuers),
            policies: diff_section(&base.policies, &new.policies),
            clients: diff_section(&base.clients, &new.clients),
            revoked_clients: diff_section(&base.revoked_clients, &new.revoked_clients),
            exhausted_quotas: diff_section(&base.exhausted_quotas, &new.exhausted_quotas),
            global: (base.global != new.global).then(|| new.global.clone()),
        })
    }

    /// Applies the delta to `base`, which it consumes (nothing is copied but the changes).
    ///
    /// # Errors
    /// [`DeltaError::WrongBase`] when `base` is not at the delta's base version;
    /// [`DeltaError::Unsorted`] when a patched section of `base`, or the delta's own lists, are
    /// out of order; [`DeltaError::DigestMismatch`] when the result is not the announced
    /// snapshot (a base with the right version but other content). No error leaves a partial
    /// result: the caller keeps whatever it had.
    pub fn apply(self, base: Snapshot) -> Result<Snapshot, DeltaError> {
        self.apply_encoded(base).map(|(snapshot, _)| snapshot)
    }

    /// Applies the delta as [`SnapshotDelta::apply`] does, and also returns the result's binary
    /// encoding ([`Snapshot::to_binary`]), from which its digest is checked: for a caller that
    /// passes the result on encoded (a filter publishing it to its other workers) without
    /// encoding it twice.
    ///
    /// # Errors
    /// As [`SnapshotDelta::apply`]; [`DeltaError::Digest`] when the result cannot be encoded.
    pub fn apply_encoded(self, base: Snapshot) -> Result<(Snapshot, Vec<u8>), DeltaError> {
        if base.version != self.base {
            return Err(DeltaError::WrongBase {
                expected: self.base,
                found: base.version,
            });
        }
        let result = Snapshot {
            version: self.version,
            apis: apply_section(base.apis, self.apis)?,
            issuers: apply_section(base.issuers, self.issuers)?,
            policies: apply_section(base.policies, self.policies)?,
            clients: apply_section(base.clients, self.clients)?,
            revoked_clients: apply_section(base.revoked_clients, self.revoked_clients)?,
            exhausted_quotas: apply_section(base.exhausted_quotas, self.exhausted_quotas)?,
            global: self.global.unwrap_or(base.global),
        };
        let encoded = result
            .to_binary()
            .map_err(|error| DeltaError::Digest(error.to_string()))?;
        let found = SnapshotDigest::of_binary(&encoded)
            .map_err(|error| DeltaError::Digest(error.to_string()))?;
        if found != self.digest {
            return Err(DeltaError::DigestMismatch {
                expected: self.digest,
                found,
            });
        }
        Ok((result, encoded))
    }

    /// This delta followed by `next`: one delta from this one's base to `next`'s version, with
    /// `next`'s digest. Applying it gives what applying both in turn gives.
    ///
    /// # Errors
    /// [`DeltaError::NotConsecutive`] unless `next` applies to the version this one produces;
    /// [`DeltaError::Unsorted`] when either delta's lists are out of order.
    pub fn compose(self, next: SnapshotDelta) -> Result<SnapshotDelta, DeltaError> {
        if next.base != self.version {
            return Err(DeltaError::NotConsecutive {
                first: self.version,
                next: next.base,
            });
        }
        Ok(SnapshotDelta {
            base: self.base,
            version: next.version,
            digest: next.digest,
            apis: compose_section(self.apis, next.apis)?,
            issuers: compose_section(self.issuers, next.issuers)?,
            policies: compose_section(self.policies, next.policies)?,
            clients: compose_section(self.clients, next.clients)?,
            revoked_clients: compose_section(self.revoked_clients, next.revoked_clients)?,
            exhausted_quotas: compose_section(self.exhausted_quotas, next.exhausted_quotas)?,
            global: next.global.or(self.global),
        })
    }

    /// The binary encoding: postcard behind the magic `PSD` and the format version.
    ///
    /// # Errors
    /// [`DeltaError::Malformed`] when postcard cannot encode a value.
    pub fn to_binary(&self) -> Result<Vec<u8>, DeltaError> {
        postcard::to_extend(self, DELTA_MAGIC.to_vec())
            .map_err(|err| DeltaError::Malformed(format!("cannot encode: {err}")))
    }

    /// Whether `bytes` are a binary delta (they start with its magic), as opposed to a
    /// snapshot.
    pub fn is_encoded(bytes: &[u8]) -> bool {
        bytes.starts_with(DELTA_MAGIC)
    }

    /// Decodes the binary encoding.
    ///
    /// # Errors
    /// [`DeltaError::Malformed`] when the magic is missing, the payload does not decode, or
    /// bytes follow it.
    pub fn decode(bytes: &[u8]) -> Result<SnapshotDelta, DeltaError> {
        let payload = bytes
            .strip_prefix(DELTA_MAGIC)
            .ok_or_else(|| DeltaError::Malformed("no delta magic".to_owned()))?;
        let (delta, rest) = postcard::take_from_bytes::<SnapshotDelta>(payload)
            .map_err(|err| DeltaError::Malformed(err.to_string()))?;
        if !rest.is_empty() {
            return Err(DeltaError::Malformed(format!(
                "{} bytes after the delta",
                rest.len()
            )));
        }
        Ok(delta)
    }
}

// === impl SectionDelta ===

impl<T: Keyed> SectionDelta<T> {
    /// No change.
    pub fn unchanged() -> Self {
        SectionDelta::Patch {
            upserts: Vec::new(),
            removals: Vec::new(),
        }
    }
}

/// One change to one key.
enum Op<T: Keyed> {
    Upsert(T),
    Remove(T::Key),
}

impl<T: Keyed> Op<T> {
    fn key(&self) -> T::KeyRef<'_> {
        match self {
            Op::Upsert(item) => item.key(),
            Op::Remove(key) => T::borrow_key(key),
        }
    }
}

/// Whether `items` are sorted by key without repeats.
fn is_canonical<T: Keyed>(items: &[T]) -> bool {
    items
        .windows(2)
        .all(|pair| T::compare(pair[0].key(), pair[1].key()) == Ordering::Less)
}

fn unsorted(section: &'static str, problem: &'static str) -> DeltaError {
    DeltaError::Unsorted { section, problem }
}

fn diff_section<T: Keyed>(base: &[T], new: &[T]) -> SectionDelta<T> {
    if base == new {
        return SectionDelta::unchanged();
    }
    if !is_canonical(base) || !is_canonical(new) {
        return SectionDelta::Replace(new.to_vec());
    }
    let mut upserts = Vec::new();
    let mut removals = Vec::new();
    let mut old = base.iter().peekable();
    let mut current = new.iter().peekable();
    loop {
        let order = match (old.peek(), current.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(was), Some(now)) => T::compare(was.key(), now.key()),
        };
        match order {
            Ordering::Less => {
                if let Some(was) = old.next() {
                    removals.push(T::own_key(was.key()));
                }
            }
            Ordering::Greater => {
                if let Some(now) = current.next() {
                    upserts.push(now.clone());
                }
            }
            Ordering::Equal => {
                if let (Some(was), Some(now)) = (old.next(), current.next())
                    && was != now
                {
                    upserts.push(now.clone());
                }
            }
        }
    }
    // Emptying a section takes more removals than its new items take room.
    if upserts.len() + removals.len() > new.len() {
        return SectionDelta::Replace(new.to_vec());
    }
    SectionDelta::Patch { upserts, removals }
}

/// A patch's upserts and removals as one list of changes sorted by key.
fn ops<T: Keyed>(upserts: Vec<T>, removals: Vec<T::Key>) -> Result<Vec<Op<T>>, DeltaError> {
    if !is_canonical(&upserts) {
        return Err(unsorted(T::SECTION, "upserts are not sorted by key"));
    }
    if !removals.windows(2).all(|pair| pair[0] < pair[1]) {
        return Err(unsorted(T::SECTION, "removals are not sorted"));
    }
    let mut merged = Vec::with_capacity(upserts.len() + removals.len());
    let mut upserts = upserts.into_iter().peekable();
    let mut removals = removals.into_iter().peekable();
    loop {
        let order = match (upserts.peek(), removals.peek()) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(item), Some(key)) => T::compare(item.key(), T::borrow_key(key)),
        };
        match order {
            Ordering::Less => merged.extend(upserts.next().map(Op::Upsert)),
            Ordering::Greater => merged.extend(removals.next().map(Op::Remove)),
            Ordering::Equal => {
                return Err(unsorted(T::SECTION, "a key is both upserted and removed"));
            }
        }
    }
    Ok(merged)
}

/// Changes sorted by key, back into a patch.
fn patch<T: Keyed>(ops: Vec<Op<T>>) -> SectionDelta<T> {
    let mut upserts = Vec::new();
    let mut removals = Vec::new();
    for op in ops {
        match op {
            Op::Upsert(item) => upserts.push(item),
            Op::Remove(key) => removals.push(key),
        }
    }
    SectionDelta::Patch { upserts, removals }
}

/// The next change of `ops` if its key sorts before `key` (or at it, with `or_equal`).
fn next_before<T: Keyed, I: Iterator<Item = Op<T>>>(
    ops: &mut Peekable<I>,
    key: T::KeyRef<'_>,
    or_equal: bool,
) -> Option<Op<T>> {
    ops.next_if(|op| match T::compare(op.key(), key) {
        Ordering::Less => true,
        Ordering::Equal => or_equal,
        Ordering::Greater => false,
    })
}

/// Patches of at most this many changes are applied in place (a binary search, then an
/// insertion, a replacement or a removal each) rather than by merging into a new vector: one
/// registration among 100,000 bindings then moves a few bindings instead of all of them.
const IN_PLACE_CHANGES: usize = 16;

fn apply_section<T: Keyed>(base: Vec<T>, delta: SectionDelta<T>) -> Result<Vec<T>, DeltaError> {
    let (upserts, removals) = match delta {
        SectionDelta::Replace(items) => return Ok(items),
        SectionDelta::Patch { upserts, removals } if upserts.is_empty() && removals.is_empty() => {
            return Ok(base);
        }
        SectionDelta::Patch { upserts, removals } => (upserts, removals),
    };
    if !is_canonical(&base) {
        return Err(unsorted(T::SECTION, "the base is not sorted by key"));
    }
    let ops = ops(upserts, removals)?;
    Ok(if ops.len() <= IN_PLACE_CHANGES {
        patch_in_place(base, ops)
    } else {
        merge(base, ops)
    })
}

/// Applies changes sorted by key to items sorted by key, each where a binary search puts it.
fn patch_in_place<T: Keyed>(mut items: Vec<T>, ops: Vec<Op<T>>) -> Vec<T> {
    for op in ops {
        let found = items.binary_search_by(|item| T::compare(item.key(), op.key()));
        match (found, op) {
            (Ok(at), Op::Upsert(item)) => items[at] = item,
            (Ok(at), Op::Remove(_)) => {
                items.remove(at);
            }
            (Err(at), Op::Upsert(item)) => items.insert(at, item),
            (Err(_), Op::Remove(_)) => {}
        }
    }
    items
}

/// Applies changes sorted by key to items sorted by key in one pass, into a new vector.
fn merge<T: Keyed>(base: Vec<T>, ops: Vec<Op<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(base.len() + ops.len());
    let mut ops = ops.into_iter().peekable();
    for item in base {
        while let Some(op) = next_before(&mut ops, item.key(), false) {
            if let Op::Upsert(added) = op {
                out.push(added);
            }
        }
        match next_before(&mut ops, item.key(), true) {
            Some(Op::Upsert(replacement)) => out.push(replacement),
            Some(Op::Remove(_)) => {}
            None => out.push(item),
        }
    }
    out.extend(ops.filter_map(|op| match op {
        Op::Upsert(added) => Some(added),
        Op::Remove(_) => None,
    }));
    out
}

fn compose_section<T: Keyed>(
    first: SectionDelta<T>,
    next: SectionDelta<T>,
) -> Result<SectionDelta<T>, DeltaError> {
    match (first, next) {
        (_, SectionDelta::Replace(items)) => Ok(SectionDelta::Replace(items)),
        (SectionDelta::Replace(items), next) => {
            apply_section(items, next).map(SectionDelta::Replace)
        }
        (
            SectionDelta::Patch { upserts, removals },
            SectionDelta::Patch {
                upserts: next_upserts,
                removals: next_removals,
            },
        ) => {
            let earlier = ops(upserts, removals)?;
            let later = ops(next_upserts, next_removals)?;
            let mut merged = Vec::with_capacity(earlier.len() + later.len());
            let mut earlier = earlier.into_iter().peekable();
            for op in later {
                while let Some(before) = next_before(&mut earlier, op.key(), false) {
                    merged.push(before);
                }
                // The later change to the same key wins.
                let _replaced = next_before(&mut earlier, op.key(), true);
                merged.push(op);
            }
            merged.extend(earlier);
            Ok(patch(merged))
        }
    }
}

// === impl Keyed ===

/// `Keyed` for a section keyed by one string field (`$field` of the item, or the item itself).
macro_rules! keyed_by_str {
    ($type:ty, $section:literal, |$item:ident| $key:expr) => {
        impl Keyed for $type {
            type Key = String;
            type KeyRef<'a> = &'a str;
            const SECTION: &'static str = $section;

            fn key(&self) -> &str {
                let $item = self;
                $key
            }
            fn borrow_key(key: &String) -> &str {
                key
            }
            fn own_key(key: &str) -> String {
                key.to_owned()
            }
            fn compare(a: &str, b: &str) -> Ordering {
                a.cmp(b)
            }
        }
    };
}

keyed_by_str!(ApiSpec, "apis", |item| &item.id);
keyed_by_str!(IssuerSpec, "issuers", |item| &item.id);
keyed_by_str!(PolicySpec, "policies", |item| &item.id);
keyed_by_str!(ClientBinding, "clients", |item| &item.client_id);
keyed_by_str!(String, "revoked_clients", |item| item);

impl Keyed for ExhaustedQuota {
    type Key = (String, String);
    type KeyRef<'a> = (&'a str, &'a str);
    const SECTION: &'static str = "exhausted_quotas";

    fn key(&self) -> (&str, &str) {
        (&self.policy, &self.subject)
    }
    fn borrow_key(key: &(String, String)) -> (&str, &str) {
        (&key.0, &key.1)
    }
    fn own_key(key: (&str, &str)) -> (String, String) {
        (key.0.to_owned(), key.1.to_owned())
    }
    fn compare(a: (&str, &str), b: (&str, &str)) -> Ordering {
        a.cmp(&b)
    }
}

#[cfg(test)]
mod tests;
