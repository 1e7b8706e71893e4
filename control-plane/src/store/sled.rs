//! The embedded [`Store`]: sled, one tree per resource, one transaction per commit.

use std::ops::Bound;
use std::path::Path;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{Commit, Entries, Order, SCHEMA_VERSION, Store, StoreError, Tree, Write};

const META_TREE: &str = "meta";
const REVISION_KEY: &[u8] = b"revision";
const SCHEMA_KEY: &[u8] = b"schema_version";

/// A sled database in a directory.
#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    meta: sled::Tree,
    /// The resource trees followed by `meta`, indexed by `Tree::index`; `meta` is last.
    trees: Vec<sled::Tree>,
}

impl SledStore {
    /// Opens (creating if needed) the database in `path`, checks the schema version and takes
    /// sled's exclusive lock. A second process on the same directory gets
    /// [`StoreError::Locked`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .open()
            .map_err(|error| open_error(path, &error))?;
        let meta = db.open_tree(META_TREE).map_err(backend)?;
        let mut trees = Vec::with_capacity(Tree::ALL.len() + 1);
        for tree in Tree::ALL {
            trees.push(db.open_tree(tree.name()).map_err(backend)?);
        }
        trees.push(meta.clone());
        let store = SledStore { db, meta, trees };
        store.check_schema()?;
        Ok(store)
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        match self.meta.get(SCHEMA_KEY).map_err(backend)? {
            None => {
                self.meta
                    .insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())
                    .map_err(backend)?;
                self.db.flush().map_err(backend)?;
                Ok(())
            }
            Some(bytes) => {
                let found = decode_u64(&bytes, "schema version")?;
                if found > SCHEMA_VERSION {
                    return Err(StoreError::SchemaTooNew {
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                Ok(())
            }
        }
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        &self.trees[tree.index()]
    }
}

impl Store for SledStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree(tree)
            .get(key)
            .map_err(backend)?
            .map(|value| value.to_vec()))
    }

    fn scan(&self, tree: Tree, after: Option<&[u8]>, order: Order) -> Entries<'_> {
        let tree = self.tree(tree);
        let iter = match (after, order) {
            (None, _) => tree.iter(),
            (Some(after), Order::Ascending) => {
                tree.range::<&[u8], _>((Bound::Excluded(after), Bound::Unbounded))
            }
            (Some(after), Order::Descending) => {
                tree.range::<&[u8], _>((Bound::Unbounded, Bound::Excluded(after)))
            }
        };
        let map = |item: sled::Result<(sled::IVec, sled::IVec)>| {
            item.map(|(key, value)| (key.to_vec(), value.to_vec()))
                .map_err(backend)
        };
        match order {
            Order::Ascending => Box::new(iter.map(map)),
            Order::Descending => Box::new(iter.rev().map(map)),
        }
    }

    fn revision(&self) -> Result<u64, StoreError> {
        match self.meta.get(REVISION_KEY).map_err(backend)? {
            None => Ok(0),
            Some(bytes) => decode_u64(&bytes, "revision"),
        }
    }

    fn commit(&self, commit: &Commit) -> Result<u64, StoreError> {
        let meta_index = self.trees.len() - 1;
        let result = self.trees.as_slice().transaction(|trees| {
            let meta = &trees[meta_index];
            let found = match meta.get(REVISION_KEY)? {
                None => 0,
                Some(bytes) => {
                    decode_u64(&bytes, "revision").map_err(ConflictableTransactionError::Abort)?
                }
            };
            if found != commit.base_revision {
                return Err(ConflictableTransactionError::Abort(StoreError::Conflict {
                    expected: commit.base_revision,
                    found,
                }));
            }
            let next = found + 1;
            for write in &commit.writes {
                let tree = &trees[write.tree.index()];
                match &write.value {
                    Some(value) => {
                        tree.insert(write.key.as_slice(), value.as_slice())?;
                    }
                    None => {
                        tree.remove(write.key.as_slice())?;
                    }
                }
            }
            trees[Tree::Audit.index()].insert(&next.to_be_bytes(), commit.audit.as_slice())?;
            meta.insert(REVISION_KEY, &next.to_be_bytes())?;
            Ok(next)
        });
        let next = result.map_err(|error| match error {
            TransactionError::Abort(error) => error,
            TransactionError::Storage(error) => backend(error),
        })?;
        self.db.flush().map_err(backend)?;
        Ok(next)
    }

    fn write_unversioned(&self, writes: &[Write]) -> Result<(), StoreError> {
        let result = self.trees.as_slice().transaction(|trees| {
            for write in writes {
                let tree = &trees[write.tree.index()];
                match &write.value {
                    Some(value) => {
                        tree.insert(write.key.as_slice(), value.as_slice())?;
                    }
                    None => {
                        tree.remove(write.key.as_slice())?;
                    }
                }
            }
            Ok::<(), ConflictableTransactionError<StoreError>>(())
        });
        result.map_err(|error| match error {
            TransactionError::Abort(error) => error,
            TransactionError::Storage(error) => backend(error),
        })?;
        self.db.flush().map_err(backend)?;
        Ok(())
    }

    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .meta
            .get(key.as_bytes())
            .map_err(backend)?
            .map(|value| value.to_vec()))
    }

    fn meta_put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.meta.insert(key.as_bytes(), value).map_err(backend)?;
        self.db.flush().map_err(backend)?;
        Ok(())
    }
}

fn decode_u64(bytes: &[u8], what: &str) -> Result<u64, StoreError> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        tree: META_TREE,
        reason: format!("the {what} is {} bytes long, expected 8", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(array))
}

fn backend(error: sled::Error) -> StoreError {
    match &error {
        sled::Error::Io(io) => StoreError::from_io(io),
        _ => StoreError::Backend(error.to_string()),
    }
}

/// sled reports a held lock as an I/O error whose text says so; name the directory instead.
fn open_error(path: &Path, error: &sled::Error) -> StoreError {
    match error {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            StoreError::Locked(path.to_path_buf())
        }
        other => StoreError::Backend(format!("cannot open {}: {other}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(base: u64, writes: Vec<Write>) -> Commit {
        Commit {
            base_revision: base,
            writes,
            audit: format!("audit {base}").into_bytes(),
        }
    }

    #[test]
    fn commit_applies_writes_bumps_revision_and_records_audit() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.revision().unwrap(), 0);
        let rev = store
            .commit(&commit(
                0,
                vec![
                    Write::put(Tree::Apis, "a", b"1".to_vec()),
                    Write::put(Tree::Policies, "p", b"2".to_vec()),
                ],
            ))
            .unwrap();
        assert_eq!(rev, 1);
        assert_eq!(store.get(Tree::Apis, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(
            store.get(Tree::Policies, b"p").unwrap(),
            Some(b"2".to_vec())
        );
        assert_eq!(
            store.get(Tree::Audit, &1u64.to_be_bytes()).unwrap(),
            Some(b"audit 0".to_vec())
        );
        store
            .commit(&commit(1, vec![Write::remove(Tree::Apis, "a")]))
            .unwrap();
        assert_eq!(store.get(Tree::Apis, b"a").unwrap(), None);
        assert_eq!(store.revision().unwrap(), 2);
    }

    #[test]
    fn commit_from_a_stale_revision_conflicts_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store
            .commit(&commit(0, vec![Write::put(Tree::Apis, "a", b"1".to_vec())]))
            .unwrap();
        let error = store
            .commit(&commit(0, vec![Write::put(Tree::Apis, "b", b"2".to_vec())]))
            .unwrap_err();
        assert!(matches!(
            error,
            StoreError::Conflict {
                expected: 0,
                found: 1
            }
        ));
        assert_eq!(store.get(Tree::Apis, b"b").unwrap(), None);
        assert_eq!(store.revision().unwrap(), 1);
    }

    #[test]
    fn scan_resumes_after_a_key_in_both_directions() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let writes = ["a", "b", "c", "d"]
            .into_iter()
            .map(|key| Write::put(Tree::Issuers, key, key.as_bytes().to_vec()))
            .collect();
        store.commit(&commit(0, writes)).unwrap();
        let keys = |after: Option<&[u8]>, order| {
            store
                .scan(Tree::Issuers, after, order)
                .map(|entry| String::from_utf8(entry.unwrap().0).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(None, Order::Ascending), ["a", "b", "c", "d"]);
        assert_eq!(keys(Some(b"b"), Order::Ascending), ["c", "d"]);
        assert_eq!(keys(None, Order::Descending), ["d", "c", "b", "a"]);
        assert_eq!(keys(Some(b"c"), Order::Descending), ["b", "a"]);
    }

    #[test]
    fn unversioned_writes_change_neither_the_revision_nor_the_audit_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store
            .write_unversioned(&[
                Write::put(Tree::Sessions, "s1", b"a".to_vec()),
                Write::put(Tree::Sessions, "s2", b"b".to_vec()),
            ])
            .unwrap();
        store
            .write_unversioned(&[Write::remove(Tree::Sessions, "s1")])
            .unwrap();
        assert_eq!(store.get(Tree::Sessions, b"s1").unwrap(), None);
        assert_eq!(
            store.get(Tree::Sessions, b"s2").unwrap(),
            Some(b"b".to_vec())
        );
        assert_eq!(store.revision().unwrap(), 0);
        assert_eq!(store.scan(Tree::Audit, None, Order::Ascending).count(), 0);
    }

    #[test]
    fn data_and_revision_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            store
                .commit(&commit(0, vec![Write::put(Tree::Apis, "a", b"1".to_vec())]))
                .unwrap();
            store.meta_put("k", b"v").unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.revision().unwrap(), 1);
        assert_eq!(store.get(Tree::Apis, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.meta_get("k").unwrap(), Some(b"v".to_vec()));
    }

    #[test]
    fn a_newer_schema_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            store
                .meta
                .insert(SCHEMA_KEY, &(SCHEMA_VERSION + 1).to_be_bytes())
                .unwrap();
            store.db.flush().unwrap();
        }
        let error = SledStore::open(dir.path()).unwrap_err();
        assert!(matches!(error, StoreError::SchemaTooNew { .. }), "{error}");
    }
}
