//! Restoring a store from an export file, so that it cannot silently undo what happened
//! after the export, nor move filters' snapshot version backwards.
//!
//! [`import`] loads a checked export ([`super::backup::read`]) into an empty store and, in
//! the same atomic import, writes two metadata values of its own:
//!
//! - **A version floor.** Filters may hold any version the old control plane published after
//!   the export. A restored store that published one of those numbers again with other
//!   content would leave every filter that holds it on its stale snapshot (the control plane
//!   answers a poll at once only when the versions differ). So the snapshot's
//!   [`VersionRecord`] becomes [`version_floor`] with an empty digest, and the first
//!   publication takes the floor plus one. The floor is the exported version plus
//!   [`VERSIONS_PER_SECOND`] for every second from the export to the import, plus
//!   [`CLOCK_ALLOWANCE_SECONDS`] of them for clocks that disagree: sound as long as the old
//!   control plane published fewer than [`VERSIONS_PER_SECOND`] versions a second on average
//!   since the export (each publication needs a durable change and a whole snapshot built and
//!   compiled, far slower than that), and the exporting and importing clocks are less than a
//!   day apart.
//! - **A restore mark** ([`RestoreMark`], under `restored`): the control plane refuses to
//!   serve until an operator runs `portico store confirm-restore` ([`confirm`]), because the
//!   changes made to the old store after the export are not in this one: revoked or deleted
//!   OAuth clients work again, deleted developers, APIs and policies are back, rotated secrets
//!   are the old ones. The refusal ([`RestoreMark::refusal`]) says so and points at the old
//!   store's audit log, which lists what to re-apply.
//!
//! Every import is marked, a move from sled to PostgreSQL too: the store cannot tell a
//! fresh export of a stopped control plane from an old backup. `docs/backup.md` is the
//! operator's guide.

use serde::{Deserialize, Serialize};

use super::backup::{Backup, BackupError};
use super::snapshot::{self, VersionRecord};
use crate::store::{Store, StoreError};

/// The metadata key of the [`RestoreMark`].
const META_KEY: &str = "restored";
/// The most snapshot versions a control plane is assumed to publish per second, on average,
/// between an export and its import.
pub const VERSIONS_PER_SECOND: u64 = 10_000;
/// How far apart, in seconds, the clocks of the exporting and the importing machine may be.
pub const CLOCK_ALLOWANCE_SECONDS: u64 = 86_400;

/// What an import records about itself (JSON in the store's metadata).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreMark {
    /// When the export was made, in seconds since the Unix epoch (the file's header).
    pub backup_created_at: u64,
    /// The store revision exported.
    pub backup_revision: u64,
    /// The portico version that made the export.
    pub backup_portico_version: String,
    /// When the import was made, in seconds since the Unix epoch.
    pub restored_at: u64,
    /// The snapshot version the import set: the first publication takes the next one.
    pub version_floor: u64,
    /// When an operator confirmed the restore (seconds since the Unix epoch); `None` until
    /// then, and the control plane refuses to serve.
    pub confirmed_at: Option<u64>,
}

impl RestoreMark {
    /// Why a control plane on this store does not serve yet, in one line, for the operator
    /// (`database` names the store).
    pub fn refusal(&self, database: &str) -> String {
        format!(
            "the store in {database} was restored at {} from an export made at {} (revision \
             {}); changes made to the old store after the export are not in it: OAuth clients \
             revoked or deleted since then work again, deleted developers, APIs and policies \
             are back, rotated secrets are the old ones. The old store's audit log lists them \
             (GET /admin/v1/audit, entries above revision {}); once you know what to re-apply, \
             run `portico store confirm-restore` with the same store settings, start portico \
             and re-apply them",
            rfc3339(self.restored_at),
            rfc3339(self.backup_created_at),
            self.backup_revision,
            self.backup_revision,
        )
    }
}

fn rfc3339(seconds: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// The version that a store restored at `now` from an export made at `created_at` (both in
/// seconds since the Unix epoch), whose last published version was `exported`, publishes
/// above: `exported` + [`VERSIONS_PER_SECOND`] × (the seconds from `created_at` to `now`,
/// none if the clock went back, + [`CLOCK_ALLOWANCE_SECONDS`]), saturating.
pub fn version_floor(exported: u64, created_at: u64, now: u64) -> u64 {
    let seconds = now
        .saturating_sub(created_at)
        .saturating_add(CLOCK_ALLOWANCE_SECONDS);
    exported.saturating_add(seconds.saturating_mul(VERSIONS_PER_SECOND))
}

/// Loads `backup` into `store` (which must be empty) at `now` (seconds since the Unix epoch),
/// with the version floor and the restore mark, in one [`Store::import`]: atomic on
/// PostgreSQL, marked incomplete until done on sled.
///
/// # Errors
/// [`BackupError::Store`]: [`StoreError::NotEmpty`] when the store holds data (nothing is
/// written), or a failure of the store.
pub fn import(store: &dyn Store, backup: Backup, now: u64) -> Result<RestoreMark, BackupError> {
    let Backup {
        header,
        meta,
        entries,
        ..
    } = backup;
    let stored = meta
        .iter()
        .find(|(key, _)| key == snapshot::META_KEY)
        .and_then(|(_, bytes)| serde_json::from_slice::<VersionRecord>(bytes).ok());
    let exported = [header.snapshot.as_ref(), stored.as_ref()]
        .into_iter()
        .flatten()
        .map(|record| record.version)
        .max()
        .unwrap_or(0);
    let mark = RestoreMark {
        backup_created_at: header.created_at,
        backup_revision: header.revision,
        backup_portico_version: header.portico_version,
        restored_at: now,
        version_floor: version_floor(exported, header.created_at, now),
        confirmed_at: None,
    };
    let floor = VersionRecord {
        version: mark.version_floor,
        hash: String::new(),
        revision: 0,
    };
    // Left out: what the import replaces, the snapshot the exporting publisher kept for other
    // replicas (older than the floor), and the replicas' lease and requests of another run.
    let mut meta: Vec<(String, Vec<u8>)> = meta
        .into_iter()
        .filter(|(key, _)| {
            key != snapshot::META_KEY
                && key != META_KEY
                && key != snapshot::PUBLISHED_KEY
                && !key.starts_with(super::replicas::META_PREFIX)
        })
        .collect();
    meta.push((snapshot::META_KEY.to_owned(), encode(&floor)?));
    meta.push((META_KEY.to_owned(), encode(&mark)?));
    store.import(header.revision, &meta, &mut entries.into_iter())?;
    Ok(mark)
}

fn encode(value: &impl Serialize) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|error| StoreError::Backend(error.to_string()))
}

/// The restore mark of `store` while it waits for an operator's confirmation; `None` when the
/// store was never restored or the restore is confirmed.
///
/// # Errors
/// [`StoreError::Corrupt`] when the mark does not decode (the control plane then refuses to
/// serve rather than skip the check).
pub fn unconfirmed(store: &dyn Store) -> Result<Option<RestoreMark>, StoreError> {
    Ok(read(store)?.filter(|mark| mark.confirmed_at.is_none()))
}

fn read(store: &dyn Store) -> Result<Option<RestoreMark>, StoreError> {
    store
        .meta_get(META_KEY)?
        .map(|bytes| {
            serde_json::from_slice(&bytes).map_err(|error| StoreError::Corrupt {
                tree: "meta",
                reason: format!("the restore mark does not decode: {error}"),
            })
        })
        .transpose()
}

/// Confirms the restore of `store` at `now` (seconds since the Unix epoch), so that a control
/// plane serves on it; answers the mark confirmed, or `None` when there was none waiting.
///
/// # Errors
/// A failure of the store, or [`StoreError::Corrupt`] as [`unconfirmed`].
pub fn confirm(store: &dyn Store, now: u64) -> Result<Option<RestoreMark>, StoreError> {
    let Some(mut mark) = unconfirmed(store)? else {
        return Ok(None);
    };
    mark.confirmed_at = Some(now);
    store.meta_put(META_KEY, &encode(&mark)?)?;
    Ok(Some(mark))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::service::backup;
    use crate::store::sled::SledStore;
    use crate::store::{Commit, Tree, Write};

    fn sled(dir: &tempfile::TempDir, name: &str) -> SledStore {
        SledStore::open(&dir.path().join(name)).unwrap()
    }

    #[test]
    fn an_import_sets_the_version_floor_and_waits_for_confirmation() {
        let dir = tempfile::tempdir().unwrap();
        let old = sled(&dir, "old");
        old.commit(&Commit {
            base_revision: 0,
            writes: vec![Write::put(Tree::Apis, "orders", b"{}".to_vec())],
            audit: b"audit".to_vec(),
        })
        .unwrap();
        let published = VersionRecord {
            version: 9,
            hash: "abc".to_owned(),
            revision: 1,
        };
        old.meta_put(snapshot::META_KEY, &serde_json::to_vec(&published).unwrap())
            .unwrap();
        // What the publisher kept for other replicas, and the lease of a run long gone.
        old.meta_put(snapshot::PUBLISHED_KEY, b"PSN\x07 version 9")
            .unwrap();
        old.meta_put(crate::service::replicas::LEASE_KEY, b"{}")
            .unwrap();
        let file = backup::export(&old, 1_000).unwrap().bytes;
        let read = || backup::read(&mut Cursor::new(&file)).unwrap();

        let new = sled(&dir, "new");
        assert_eq!(unconfirmed(&new).unwrap(), None);
        let mark = import(&new, read(), 1_060).unwrap();
        assert_eq!(mark.version_floor, version_floor(9, 1_000, 1_060));
        assert_eq!((mark.backup_revision, mark.restored_at), (1, 1_060));
        assert_eq!(
            VersionRecord::read(&new).unwrap(),
            Some(VersionRecord {
                version: mark.version_floor,
                hash: String::new(),
                revision: 0,
            })
        );
        assert_eq!(new.revision().unwrap(), 1);
        assert_eq!(new.meta_get(snapshot::PUBLISHED_KEY).unwrap(), None);
        assert_eq!(
            new.meta_get(crate::service::replicas::LEASE_KEY).unwrap(),
            None
        );
        assert_eq!(
            new.get(Tree::Apis, b"orders").unwrap(),
            Some(b"{}".to_vec())
        );
        assert_eq!(unconfirmed(&new).unwrap(), Some(mark));

        // A second import is refused: the store holds data now.
        assert!(matches!(
            import(&new, read(), 1_070),
            Err(BackupError::Store(StoreError::NotEmpty { revision: 1 }))
        ));

        let confirmed = confirm(&new, 1_100).unwrap().unwrap();
        assert_eq!(confirmed.confirmed_at, Some(1_100));
        assert_eq!(unconfirmed(&new).unwrap(), None);
        assert_eq!(confirm(&new, 1_200).unwrap(), None);
    }

    #[test]
    fn the_floor_grows_with_the_time_since_the_export_and_never_falls_below_it() {
        let allowance = CLOCK_ALLOWANCE_SECONDS * VERSIONS_PER_SECOND;
        assert_eq!(version_floor(17, 1_000, 1_000), 17 + allowance);
        assert_eq!(
            version_floor(17, 1_000, 1_060),
            17 + allowance + 60 * VERSIONS_PER_SECOND
        );
        // A clock behind the exporter's counts no time, never less.
        assert_eq!(version_floor(17, 1_000, 900), 17 + allowance);
        assert_eq!(version_floor(u64::MAX - 1, 0, u64::MAX), u64::MAX);
    }

    #[test]
    fn the_refusal_names_the_export_and_what_to_re_apply_in_one_line() {
        let mark = RestoreMark {
            backup_created_at: 1_767_225_600,
            backup_revision: 42,
            backup_portico_version: "0.1.0".to_owned(),
            restored_at: 1_767_312_000,
            version_floor: 7,
            confirmed_at: None,
        };
        let refusal = mark.refusal("/var/lib/portico/db");
        assert!(!refusal.contains('\n'), "{refusal}");
        for part in [
            "/var/lib/portico/db",
            "2026-01-01T00:00:00Z",
            "2026-01-02T00:00:00Z",
            "revision 42",
            "revoked or deleted",
            "rotated secrets",
            "GET /admin/v1/audit",
            "portico store confirm-restore",
        ] {
            assert!(refusal.contains(part), "{part}: {refusal}");
        }
    }
}
