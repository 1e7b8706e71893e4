//! The embedded [`Store`]: sled, one tree per resource, one transaction per commit.
//!
//! Its behaviour is checked by the contract suite shared with the PostgreSQL store
//! (`tests/tests/store_contract.rs`).

use std::ops::Bound;
use std::path::Path;

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{
    Commit, Entries, Order, RESERVED_META_KEYS, SCHEMA_VERSION, SCHEMA_VERSION_KEY, Store,
    StoreError, Tree, Write, check_import_meta, check_schema_version, decode_u64,
};

const META_TREE: &str = "meta";
const REVISION_KEY: &[u8] = b"revision";
const SCHEMA_KEY: &[u8] = SCHEMA_VERSION_KEY.as_bytes();
/// Set while [`Store::import`] writes entries, removed with the revision that ends it: a store
/// that still has it was cut short mid-import and is refused at open.
const IMPORT_MARK: &[u8] = b"import_incomplete";
/// Entries written per batch by an import.
const IMPORT_BATCH: usize = 1024;

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
        if store.meta.contains_key(IMPORT_MARK).map_err(backend)? {
            return Err(StoreError::Corrupt {
                tree: META_TREE,
                reason: format!(
                    "an import into {} was cut short; delete the directory and import again",
                    path.display()
                ),
            });
        }
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
            Some(bytes) => check_schema_version(&bytes),
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
        let next = result.map_err(transaction_error)?;
        self.db.flush().map_err(backend)?;
        Ok(next)
    }

    fn write_unversioned_if(
        &self,
        expected: &[Write],
        writes: &[Write],
    ) -> Result<bool, StoreError> {
        let result = self.trees.as_slice().transaction(|trees| {
            for expect in expected {
                let stored = trees[expect.tree.index()].get(expect.key.as_slice())?;
                if stored.as_deref() != expect.value.as_deref() {
                    return Ok(false);
                }
            }
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
            Ok::<bool, ConflictableTransactionError<StoreError>>(true)
        });
        let written = result.map_err(transaction_error)?;
        if written {
            self.db.flush().map_err(backend)?;
        }
        Ok(written)
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

    fn meta_swap(
        &self,
        expected: &[(&str, Option<&[u8]>)],
        puts: &[(&str, &[u8])],
    ) -> Result<bool, StoreError> {
        let result = self.meta.transaction(|tree| {
            for (key, value) in expected {
                if tree.get(key.as_bytes())?.as_deref() != *value {
                    return Ok(false);
                }
            }
            for (key, value) in puts {
                tree.insert(key.as_bytes(), *value)?;
            }
            Ok::<bool, ConflictableTransactionError<StoreError>>(true)
        });
        let swapped = result.map_err(transaction_error)?;
        if swapped {
            self.db.flush().map_err(backend)?;
        }
        Ok(swapped)
    }

    fn meta_entries(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut entries = Vec::new();
        for item in &self.meta {
            let (key, value) = item.map_err(backend)?;
            let key = String::from_utf8(key.to_vec()).map_err(|_| StoreError::Corrupt {
                tree: META_TREE,
                reason: "a metadata key is not UTF-8".to_owned(),
            })?;
            if !RESERVED_META_KEYS.contains(&key.as_str()) {
                entries.push((key, value.to_vec()));
            }
        }
        Ok(entries)
    }

    /// Marks the import as unfinished (durably), writes the entries in batches, then sets the
    /// metadata and the revision and removes the mark in one transaction: a store cut short
    /// keeps the mark and is refused at open, so no reader ever takes partial data for a
    /// whole store.
    fn import(
        &self,
        revision: u64,
        meta: &[(String, Vec<u8>)],
        entries: &mut dyn Iterator<Item = (Tree, Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        check_import_meta(meta)?;
        let current = self.revision()?;
        let has_entries = Tree::ALL.iter().any(|tree| !self.tree(*tree).is_empty());
        if current != 0 || has_entries {
            return Err(StoreError::NotEmpty { revision: current });
        }
        self.meta.insert(IMPORT_MARK, &[]).map_err(backend)?;
        self.db.flush().map_err(backend)?;
        let mut batch: Vec<(Tree, Vec<u8>, Vec<u8>)> = Vec::with_capacity(IMPORT_BATCH);
        loop {
            batch.clear();
            batch.extend((&mut *entries).take(IMPORT_BATCH));
            if batch.is_empty() {
                break;
            }
            for (tree, key, value) in &batch {
                let previous = self
                    .tree(*tree)
                    .insert(key.as_slice(), value.as_slice())
                    .map_err(backend)?;
                if previous.is_some() {
                    return Err(duplicate(*tree, key));
                }
            }
        }
        self.db.flush().map_err(backend)?;
        let result = self.meta.transaction(|tree| {
            for (key, value) in meta {
                tree.insert(key.as_bytes(), value.as_slice())?;
            }
            tree.insert(REVISION_KEY, &revision.to_be_bytes())?;
            tree.remove(IMPORT_MARK)?;
            Ok::<(), ConflictableTransactionError<StoreError>>(())
        });
        result.map_err(transaction_error)?;
        self.db.flush().map_err(backend)?;
        Ok(())
    }
}

/// [`StoreError::Corrupt`] for an import that holds `key` twice in `tree`.
fn duplicate(tree: Tree, key: &[u8]) -> StoreError {
    StoreError::Corrupt {
        tree: tree.name(),
        reason: format!(
            "the import holds the key {:?} twice",
            String::from_utf8_lossy(key)
        ),
    }
}

fn transaction_error(error: TransactionError<StoreError>) -> StoreError {
    match error {
        TransactionError::Abort(error) => error,
        TransactionError::Storage(error) => backend(error),
    }
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
