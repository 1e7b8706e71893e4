//! The storage boundary: a small [`Store`] trait over named trees of bytes.
//!
//! The services see only this trait, so that a shared database can serve several
//! control-plane replicas. The embedded implementation is [`sled::SledStore`]; the shared one
//! is [`postgres::PgStore`] (PostgreSQL). Both keep the same guarantees, checked by one
//! contract suite run against each (`tests/tests/store_contract.rs`).
//!
//! Every change goes through [`Store::commit`]: it applies all writes of one logical change,
//! appends the change's audit record and bumps the store revision, atomically, and returns only
//! when the change is durable. A commit names the revision it was computed from, and fails with
//! [`StoreError::Conflict`] if another writer got there first (optimistic concurrency).

pub mod postgres;
pub mod sled;

use std::fmt;
use std::path::PathBuf;

/// The schema version that this build writes and reads. Stored in the database so that a
/// future layout change can migrate old data, and so that an older binary refuses newer data.
pub const SCHEMA_VERSION: u64 = 1;

/// The metadata key under which every store keeps its [`SCHEMA_VERSION`] (a big-endian `u64`).
pub const SCHEMA_VERSION_KEY: &str = "schema_version";

/// Metadata keys that belong to a store itself, not to the services: its schema version, the
/// revision (sled keeps it in its metadata) and the mark of an unfinished import.
/// [`Store::meta_entries`] leaves them out and [`Store::import`] refuses them, so an export
/// carries only the services' metadata.
pub const RESERVED_META_KEYS: [&str; 3] = [SCHEMA_VERSION_KEY, "revision", "import_incomplete"];

/// One tree (key space) per resource, plus the audit log and secondary indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tree {
    /// Trusted token issuers, by id.
    Issuers,
    /// APIs, by id.
    Apis,
    /// Policies, by id.
    Policies,
    /// Catalogue entries, by id.
    Catalogue,
    /// Per-catalogue-entry DCR overrides, by catalogue entry id.
    CatalogueDcr,
    /// Per-catalogue-entry OpenAPI documents (shown in the portal, never in the snapshot), by
    /// catalogue entry id.
    CatalogueOpenapi,
    /// Global settings (such as the DCR settings), by name.
    Settings,
    /// Developers, by id.
    Developers,
    /// Index: lower-cased developer email to developer id.
    DeveloperEmails,
    /// OAuth clients, by id.
    OAuthClients,
    /// Index: the IdP's `client_id` to OAuth client id.
    OAuthClientIds,
    /// The audit log, keyed by the big-endian revision of the change it records.
    Audit,
    /// Portal sessions, keyed by the SHA-256 digest of the session id (operational state:
    /// written with [`Store::write_unversioned`]).
    Sessions,
    /// Index of portal sessions by developer: the developer id, a zero byte and the session's
    /// digest, to the session's creation time (big-endian seconds); operational state like
    /// [`Tree::Sessions`].
    DeveloperSessions,
    /// Idempotency records of the portal's client registrations, keyed by developer id, a zero
    /// byte and the idempotency key (written with the registration's commit, purged unversioned).
    Idempotency,
    /// Registrations in progress at the IdP, by intent id: written durably before the IdP is
    /// called and removed in the commit that records the outcome, so that one cut short (a
    /// kill, an IdP that never answered) is left for the operators to see (operational state,
    /// written with [`Store::write_unversioned`]).
    RegistrationIntents,
    /// Usage reporters (filter VMs): the reporter id to the last batch counted and when
    /// (operational state; see [`crate::service::usage`]).
    UsageReporters,
    /// Usage per OAuth client and hour: the client's record id, a zero byte and the hour's
    /// start (big-endian seconds since the Unix epoch), to its counts (operational state).
    UsageHours,
    /// Quota counters across the fleet: the policy id, a zero byte and the subject, to the
    /// window's start and count (operational state).
    QuotaCounters,
}

impl Tree {
    /// Every tree, in a fixed order (the order of their indexes in a transaction).
    pub const ALL: [Tree; 19] = [
        Tree::Issuers,
        Tree::Apis,
        Tree::Policies,
        Tree::Catalogue,
        Tree::CatalogueDcr,
        Tree::Settings,
        Tree::Developers,
        Tree::DeveloperEmails,
        Tree::OAuthClients,
        Tree::OAuthClientIds,
        Tree::Audit,
        Tree::Sessions,
        Tree::Idempotency,
        Tree::DeveloperSessions,
        Tree::CatalogueOpenapi,
        Tree::RegistrationIntents,
        Tree::UsageReporters,
        Tree::UsageHours,
        Tree::QuotaCounters,
    ];

    /// The tree's name on disk.
    pub fn name(self) -> &'static str {
        match self {
            Tree::Issuers => "issuers",
            Tree::Apis => "apis",
            Tree::Policies => "policies",
            Tree::Catalogue => "catalogue",
            Tree::CatalogueDcr => "catalogue_dcr",
            Tree::Settings => "settings",
            Tree::Developers => "developers",
            Tree::DeveloperEmails => "developer_emails",
            Tree::OAuthClients => "oauth_clients",
            Tree::OAuthClientIds => "oauth_client_ids",
            Tree::Audit => "audit",
            Tree::Sessions => "sessions",
            Tree::Idempotency => "idempotency",
            Tree::DeveloperSessions => "developer_sessions",
            Tree::CatalogueOpenapi => "catalogue_openapi",
            Tree::RegistrationIntents => "registration_intents",
            Tree::UsageReporters => "usage_reporters",
            Tree::UsageHours => "usage_hours",
            Tree::QuotaCounters => "quota_counters",
        }
    }

    /// The tree called `name` on disk (the inverse of [`Tree::name`]); `None` for a name no
    /// tree has.
    pub fn from_name(name: &str) -> Option<Tree> {
        Tree::ALL.into_iter().find(|tree| tree.name() == name)
    }

    /// Whether the data-plane snapshot is built from this tree (a write to it must leave a
    /// snapshot that compiles).
    pub fn feeds_snapshot(self) -> bool {
        matches!(
            self,
            Tree::Issuers
                | Tree::Apis
                | Tree::Policies
                | Tree::Catalogue
                | Tree::Settings
                | Tree::Developers
                | Tree::OAuthClients
        )
    }

    fn index(self) -> usize {
        match self {
            Tree::Issuers => 0,
            Tree::Apis => 1,
            Tree::Policies => 2,
            Tree::Catalogue => 3,
            Tree::CatalogueDcr => 4,
            Tree::Settings => 5,
            Tree::Developers => 6,
            Tree::DeveloperEmails => 7,
            Tree::OAuthClients => 8,
            Tree::OAuthClientIds => 9,
            Tree::Audit => 10,
            Tree::Sessions => 11,
            Tree::Idempotency => 12,
            Tree::DeveloperSessions => 13,
            Tree::CatalogueOpenapi => 14,
            Tree::RegistrationIntents => 15,
            Tree::UsageReporters => 16,
            Tree::UsageHours => 17,
            Tree::QuotaCounters => 18,
        }
    }
}

/// Scan direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Ascending key order.
    Ascending,
    /// Descending key order.
    Descending,
}

/// One key written or removed by a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The tree written to.
    pub tree: Tree,
    /// The key.
    pub key: Vec<u8>,
    /// The new value, or `None` to remove the key.
    pub value: Option<Vec<u8>>,
}

impl Write {
    /// Inserts or replaces `key` in `tree`.
    pub fn put(tree: Tree, key: impl Into<Vec<u8>>, value: Vec<u8>) -> Self {
        Write {
            tree,
            key: key.into(),
            value: Some(value),
        }
    }

    /// Removes `key` from `tree`.
    pub fn remove(tree: Tree, key: impl Into<Vec<u8>>) -> Self {
        Write {
            tree,
            key: key.into(),
            value: None,
        }
    }
}

/// One logical change: its writes and its audit record, applied atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The revision that the change was computed from. The commit fails with
    /// [`StoreError::Conflict`] unless it is still the current revision.
    pub base_revision: u64,
    /// The writes, applied in order.
    pub writes: Vec<Write>,
    /// The audit record, stored under the new revision in [`Tree::Audit`].
    pub audit: Vec<u8>,
}

/// A key/value pair read from a tree.
pub type Entry = (Vec<u8>, Vec<u8>);

/// An iterator over a tree's entries.
pub type Entries<'a> = Box<dyn Iterator<Item = Result<Entry, StoreError>> + Send + 'a>;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the database's lock.
    #[error(
        "the data directory {} is in use by another portico process (the database lock is held)",
        .0.display()
    )]
    Locked(PathBuf),
    /// The database was written by a newer schema than this build understands.
    #[error(
        "the data directory was written with schema version {found}, newer than this portico \
         (schema version {supported}); upgrade portico"
    )]
    SchemaTooNew {
        /// The version found on disk.
        found: u64,
        /// The newest version this build supports.
        supported: u64,
    },
    /// The revision moved between reading and committing.
    #[error("the store changed concurrently (expected revision {expected}, found {found})")]
    Conflict {
        /// The revision the change was computed from.
        expected: u64,
        /// The current revision.
        found: u64,
    },
    /// Stored bytes could not be decoded.
    #[error("corrupt data in tree {tree}: {reason}")]
    Corrupt {
        /// The tree (or `meta`).
        tree: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The data directory cannot take writes: the disk is full, the file system is read-only,
    /// or permissions or a quota forbid it. Reads keep working; writes work again once the
    /// operator frees space or fixes the directory.
    #[error("the data directory cannot be written: {0}")]
    Unwritable(String),
    /// The database server cannot be reached or cannot take the change right now: it is down
    /// or restarting, the network or a timeout cut the connection, or it refuses (too many
    /// connections, full disk, read-only, credentials). Nothing is served from it until it
    /// answers again; the in-memory published snapshot keeps serving the data plane. When a
    /// commit fails this way after the database was asked to commit, the change may have been
    /// stored: the message says so.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// [`Store::import`] into a store that already holds data: a revision above 0 or any
    /// entry in a tree.
    #[error(
        "the store already holds data (revision {revision}); import only into a new, empty store"
    )]
    NotEmpty {
        /// The store's revision.
        revision: u64,
    },
    /// The storage engine failed.
    #[error("storage failure: {0}")]
    Backend(String),
}

impl StoreError {
    /// The error for a failed I/O operation of the storage engine: [`StoreError::Unwritable`]
    /// for a full disk, a read-only file system, a quota or denied permissions (the operator
    /// can fix those), [`StoreError::Backend`] otherwise.
    pub fn from_io(error: &std::io::Error) -> Self {
        use std::io::ErrorKind;
        match error.kind() {
            ErrorKind::StorageFull
            | ErrorKind::ReadOnlyFilesystem
            | ErrorKind::QuotaExceeded
            | ErrorKind::PermissionDenied => StoreError::Unwritable(error.to_string()),
            _ => StoreError::Backend(error.to_string()),
        }
    }
}

/// The storage used by the services.
///
/// Reads see committed data only. Writes happen only through [`Store::commit`].
pub trait Store: Send + Sync + fmt::Debug {
    /// Reads one key.
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Iterates a tree in key order, starting strictly after `after` when given.
    fn scan(&self, tree: Tree, after: Option<&[u8]>, order: Order) -> Entries<'_>;

    /// The current store revision: the number of commits ever made.
    fn revision(&self) -> Result<u64, StoreError>;

    /// Applies a change atomically, bumps the revision and makes it durable before returning
    /// the new revision.
    fn commit(&self, commit: &Commit) -> Result<u64, StoreError>;

    /// Applies writes atomically and durably *without* bumping the revision or writing an
    /// audit record. Only for operational state that no data-plane snapshot depends on and that
    /// changes too often to audit: portal sessions, usage counts and the purge of expired
    /// idempotency records.
    fn write_unversioned(&self, writes: &[Write]) -> Result<(), StoreError> {
        self.write_unversioned_if(&[], writes).map(drop)
    }

    /// [`Store::write_unversioned`], only if every key of `expected` holds what that [`Write`]
    /// would leave (its value; `None`: absent) when the writes are applied, atomically with
    /// them; answers whether it wrote. What several processes counting into one key agree
    /// through (usage and quota counters).
    fn write_unversioned_if(
        &self,
        expected: &[Write],
        writes: &[Write],
    ) -> Result<bool, StoreError>;

    /// Reads an internal metadata value (not part of any resource, not audited).
    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Writes an internal metadata value durably (not audited, does not bump the revision).
    fn meta_put(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;

    /// Writes the metadata values `puts` only if every key of `expected` holds its value now
    /// (`None`: absent), atomically and durably; answers whether it did. What replicas on one
    /// shared store agree through (the publication lease, the snapshot version and the
    /// published snapshot, written together under the lease).
    fn meta_swap(
        &self,
        expected: &[(&str, Option<&[u8]>)],
        puts: &[(&str, &[u8])],
    ) -> Result<bool, StoreError>;

    /// [`Store::meta_swap`] of one key: replaces the value under `key` with `new` only if it is
    /// `expected` now.
    fn meta_compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError> {
        self.meta_swap(&[(key, expected)], &[(key, new)])
    }

    /// A receiver that changes whenever another process may have changed this store (a commit,
    /// a metadata write), for a store that several processes share; `None` for a store that
    /// one process owns (sled). Changes may be coalesced, and it also changes when the
    /// store cannot tell what it missed (a lost notification connection): a receiver re-reads
    /// what it cares about.
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Every internal metadata value, in key order (bytes of the UTF-8 key), without the
    /// store's own keys ([`RESERVED_META_KEYS`]): what an export carries besides the trees.
    fn meta_entries(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Loads a whole exported store into this one, atomically and durably: every entry of
    /// every tree (in any order; a key twice in one tree is refused), the metadata values
    /// (replacing any this store wrote at its first start, such as the key check) and the
    /// revision, with no new audit record and no revision bump beyond `revision`. Refuses with
    /// [`StoreError::NotEmpty`] unless this store has revision 0 and no entries, and with
    /// [`StoreError::Corrupt`] a metadata key of [`RESERVED_META_KEYS`]. Meant for an offline
    /// store (`portico store import`): other readers may see the entries before the import
    /// ends, never a revision without them.
    fn import(
        &self,
        revision: u64,
        meta: &[(String, Vec<u8>)],
        entries: &mut dyn Iterator<Item = (Tree, Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError>;
}

/// Checks the schema version a store holds (the big-endian `u64` under
/// [`SCHEMA_VERSION_KEY`]): [`StoreError::SchemaTooNew`] when a newer portico wrote it.
pub(crate) fn check_schema_version(stored: &[u8]) -> Result<(), StoreError> {
    let found = decode_u64(stored, "schema version")?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// A big-endian `u64` kept in a store's metadata (`what` names it in the error).
pub(crate) fn decode_u64(bytes: &[u8], what: &str) -> Result<u64, StoreError> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        tree: "meta",
        reason: format!("the {what} is {} bytes long, expected 8", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(array))
}

/// [`StoreError::Corrupt`] for an import whose metadata holds one of the store's own keys.
pub fn check_import_meta(meta: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
    match meta
        .iter()
        .find(|(key, _)| RESERVED_META_KEYS.contains(&key.as_str()))
    {
        Some((key, _)) => Err(StoreError::Corrupt {
            tree: "meta",
            reason: format!("the import holds the store's own metadata key `{key}`"),
        }),
        None => Ok(()),
    }
}

/// A store seen with one change's writes applied on top, without committing them: what the
/// store would hold after the change. The services build the candidate snapshot from it
/// before they commit, so that a change whose snapshot would not compile is refused. Reads
/// only: every write answers [`StoreError::Backend`].
#[derive(Debug)]
pub struct Staged<'a> {
    base: &'a dyn Store,
    writes: &'a [Write],
}

// === impl Staged ===

impl<'a> Staged<'a> {
    /// `base` with `writes` applied in order.
    pub fn new(base: &'a dyn Store, writes: &'a [Write]) -> Self {
        Staged { base, writes }
    }

    fn read_only() -> StoreError {
        StoreError::Backend("a staged view is read-only".to_owned())
    }
}

impl Store for Staged<'_> {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self
            .writes
            .iter()
            .rev()
            .find(|write| write.tree == tree && write.key == key)
        {
            Some(write) => Ok(write.value.clone()),
            None => self.base.get(tree, key),
        }
    }

    fn scan(&self, tree: Tree, after: Option<&[u8]>, order: Order) -> Entries<'_> {
        let mut entries = std::collections::BTreeMap::new();
        for entry in self.base.scan(tree, after, order) {
            match entry {
                Ok((key, value)) => {
                    entries.insert(key, value);
                }
                Err(error) => return Box::new(std::iter::once(Err(error))),
            }
        }
        for write in self.writes.iter().filter(|write| write.tree == tree) {
            let beyond = after.is_none_or(|after| match order {
                Order::Ascending => write.key.as_slice() > after,
                Order::Descending => write.key.as_slice() < after,
            });
            match &write.value {
                Some(value) if beyond => {
                    entries.insert(write.key.clone(), value.clone());
                }
                Some(_) => {}
                None => {
                    entries.remove(&write.key);
                }
            }
        }
        match order {
            Order::Ascending => Box::new(entries.into_iter().map(Ok)),
            Order::Descending => Box::new(entries.into_iter().rev().map(Ok)),
        }
    }

    fn revision(&self) -> Result<u64, StoreError> {
        self.base.revision()
    }

    fn commit(&self, _commit: &Commit) -> Result<u64, StoreError> {
        Err(Self::read_only())
    }

    fn write_unversioned_if(
        &self,
        _expected: &[Write],
        _writes: &[Write],
    ) -> Result<bool, StoreError> {
        Err(Self::read_only())
    }

    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.base.meta_get(key)
    }

    fn meta_put(&self, _key: &str, _value: &[u8]) -> Result<(), StoreError> {
        Err(Self::read_only())
    }

    fn meta_swap(
        &self,
        _expected: &[(&str, Option<&[u8]>)],
        _puts: &[(&str, &[u8])],
    ) -> Result<bool, StoreError> {
        Err(Self::read_only())
    }

    fn meta_entries(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.base.meta_entries()
    }

    fn import(
        &self,
        _revision: u64,
        _meta: &[(String, Vec<u8>)],
        _entries: &mut dyn Iterator<Item = (Tree, Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        Err(Self::read_only())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    use super::{StoreError, Tree};

    #[test]
    fn every_tree_is_found_by_its_name_and_no_other_name_is() {
        for tree in Tree::ALL {
            assert_eq!(Tree::from_name(tree.name()), Some(tree));
        }
        assert_eq!(Tree::from_name("meta"), None);
    }

    #[test]
    fn what_an_operator_can_fix_is_unwritable_and_the_rest_a_backend_failure() {
        // ENOSPC, EROFS, EDQUOT, EACCES.
        for code in [28, 30, 122, 13] {
            let error = StoreError::from_io(&Error::from_raw_os_error(code));
            assert!(
                matches!(error, StoreError::Unwritable(_)),
                "{code}: {error:?}"
            );
        }
        let error = StoreError::from_io(&Error::from(ErrorKind::UnexpectedEof));
        assert!(matches!(error, StoreError::Backend(_)), "{error:?}");
    }
}
