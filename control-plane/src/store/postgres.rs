//! The shared [`Store`]: PostgreSQL, through `sqlx`'s connection pool, so that several
//! control-plane processes can share one database.
//!
//! # Layout
//!
//! Versioned migrations (`control-plane/migrations/`, embedded with `sqlx::migrate!` and run at
//! [`PgStore::open`], under sqlx's advisory lock so that processes starting together migrate
//! once) create three tables: `portico_entries(tree, key, value)` holds every tree's entries
//! (primary key `(tree, key)`, keys compared as bytes, the order sled keeps);
//! `portico_meta(key, value)` the internal metadata, among which [`SCHEMA_VERSION_KEY`]; and
//! `portico_revision`, one row holding the revision. A database migrated by a newer portico
//! (an unknown migration, or a newer schema version) is refused, as the sled store refuses a
//! newer data directory.
//!
//! # Commits
//!
//! A commit is one transaction: it locks the revision row (`SELECT … FOR UPDATE`, which orders
//! the commits of every process on the database), answers [`StoreError::Conflict`] if the
//! revision moved, applies the writes in order, stores the audit record under the new revision
//! (its big-endian `u64` in the `audit` tree, as sled does), bumps the revision and sends
//! `NOTIFY portico_changes, '<new revision>'` ([`CHANGES_CHANNEL`]; delivered only if the
//! transaction commits). A metadata write (`meta_put`, a successful compare-and-swap) notifies
//! the same channel with `meta:<key>` in its transaction. It returns once `COMMIT` is acknowledged, which with PostgreSQL's
//! default `synchronous_commit = on` means the change is in the server's flushed WAL. When
//! the connection fails during `COMMIT` the outcome is unknown; the store then reads the audit
//! record back on a fresh connection, and answers success if it is there with this change's
//! bytes, [`StoreError::Unavailable`] saying so if the database cannot tell.
//!
//! # Notifications
//!
//! Each store listens on [`CHANGES_CHANNEL`] on a connection of its own (outside the pool, so
//! that a pool of one connection still serves operations) and moves the receiver of
//! [`Store::changes`] on every notification, from any process on the database, its own
//! included. When that connection fails, the receiver moves again once a new one listens
//! (what was sent in between is lost, so the replicas re-read everything they follow), and
//! the listener reconnects every [`LISTEN_RETRY`] until it can.
//!
//! # Sync trait, async driver
//!
//! [`Store`] is synchronous: the services call reads from async handlers on tokio's worker
//! threads, and commits through `spawn_blocking`. A sync method therefore cannot
//! `Handle::block_on` the caller's runtime (that panics inside a runtime, and would starve it
//! besides). So the store owns a small runtime of its own (two worker threads): each method
//! spawns its future there and waits for the answer on a `std::sync::mpsc` channel, which
//! blocks only the calling thread and works inside or outside any runtime. The pool and its
//! connections live and are dropped on that runtime only (sqlx returns a connection to its
//! pool with a task spawned on the current runtime). The runtime is shut down in the
//! background when the store is dropped, so dropping it inside an async test is fine.
//!
//! # Failures
//!
//! Every operation is bounded: acquiring a connection (which includes connecting) by
//! [`ACQUIRE_TIMEOUT`], the whole operation by [`OPERATION_TIMEOUT`]. A database that is
//! down, unreachable, restarting, refusing connections or out of disk answers
//! [`StoreError::Unavailable`] (503 `storage_unavailable` at the HTTP layer). After such a
//! failure the store answers at once, without trying, for [`RETRY_AFTER`]: callers on the
//! services' worker threads are not held for the acquire timeout one after another while the
//! database is away (the data plane's long polls keep being served from memory). Error
//! messages name the database by its URL with the credentials and query redacted
//! ([`crate::redact::url`]), never the password.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{
    Commit, Entries, Entry, Order, RESERVED_META_KEYS, SCHEMA_VERSION, SCHEMA_VERSION_KEY, Store,
    StoreError, Tree, Write, check_import_meta, check_schema_version,
};

/// The channel every commit notifies, with the new revision (decimal) as the payload, and
/// every metadata write, with `meta:<key>`.
pub const CHANGES_CHANNEL: &str = "portico_changes";
/// How often the listener on [`CHANGES_CHANNEL`] tries to connect again after losing its
/// connection.
pub const LISTEN_RETRY: Duration = Duration::from_secs(1);
/// The longest wait for a pooled connection, connecting included.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest time one store operation may take (a commit, a read, one batch of a scan).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the store answers [`StoreError::Unavailable`] without trying, after the database
/// could not be reached.
pub const RETRY_AFTER: Duration = Duration::from_millis(500);
/// Inserts or replaces one metadata value (`$1` key, `$2` value).
const UPSERT_META: &str = "INSERT INTO portico_meta (key, value) VALUES ($1, $2) \
     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value";
/// The key of the advisory lock that serialises conditional unversioned writes
/// (`Store::write_unversioned_if`).
const CONDITIONAL_WRITE_LOCK: i64 = 0x706f_7274_6963_6f02;
/// The key of the advisory lock that serialises metadata swaps (`Store::meta_swap`).
const META_SWAP_LOCK: i64 = 0x706f_7274_6963_6f01;
/// Rows per query of a scan (keyset pagination: each batch starts after the last key).
const SCAN_BATCH: usize = 512;
/// Entries per `INSERT` of an import.
const IMPORT_BATCH: usize = 1000;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A PostgreSQL database shared by one or more control-plane processes.
#[derive(Debug)]
pub struct PgStore {
    pool: PgPool,
    bridge: Bridge,
    /// The database's URL without credentials, for messages.
    target: String,
    /// Until when to answer [`StoreError::Unavailable`] without trying.
    down_until: Mutex<Option<Instant>>,
    /// Moved by the listener on every notification (see the module docs).
    changes: watch::Receiver<u64>,
}

// === impl PgStore ===

impl PgStore {
    /// Connects to the database at `url` (`postgres://` or `postgresql://`, as libpq reads it;
    /// a password missing from the URL comes from `PGPASSWORD` or `~/.pgpass`) with a pool of
    /// at most `pool_size` connections, runs the migrations and checks the schema version.
    /// Errors: [`StoreError::Unavailable`] when the database cannot be reached within
    /// [`ACQUIRE_TIMEOUT`], [`StoreError::SchemaTooNew`] for a database written by a newer
    /// portico, [`StoreError::Backend`] for a bad URL or a failed migration.
    pub fn open(url: &str, pool_size: u32) -> Result<Self, StoreError> {
        let target = redacted(url);
        let options: PgConnectOptions = url.parse().map_err(|error: sqlx::Error| {
            StoreError::Backend(format!(
                "the PostgreSQL URL {target} is not usable: {error}"
            ))
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("portico-postgres")
            .enable_all()
            .build()
            .map_err(|error| StoreError::Backend(format!("cannot start the runtime: {error}")))?;
        let bridge = Bridge {
            runtime: Some(runtime),
        };
        // A pool connects lazily, and connections are made on the bridge's runtime.
        let listen_options = options.clone();
        let (pool, listen_pool) = bridge.run(async move {
            let pool = PgPoolOptions::new()
                .max_connections(pool_size.max(1))
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_lazy_with(options);
            let listen_pool = PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_lazy_with(listen_options);
            Ok((pool, listen_pool))
        })?;
        let (changed, changes) = watch::channel(0);
        let store = PgStore {
            pool,
            bridge,
            target,
            down_until: Mutex::new(None),
            changes,
        };
        store.migrate()?;
        store
            .bridge
            .handle()?
            .spawn(listen(listen_pool, store.target.clone(), changed));
        Ok(store)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let pool = self.pool.clone();
        let target = self.target.clone();
        self.run(async move {
            MIGRATOR.run(&pool).await.map_err(|error| match error {
                sqlx::migrate::MigrateError::Execute(error) => pg_error(&target, error),
                sqlx::migrate::MigrateError::VersionMissing(version) => StoreError::Backend(format!(
                    "the database {target} holds migration {version}, which this portico does \
                     not know: a newer portico wrote it; upgrade portico"
                )),
                other => StoreError::Backend(format!("migrating {target}: {other}")),
            })?;
            let schema = SCHEMA_VERSION.to_be_bytes();
            sqlx::query(
                "INSERT INTO portico_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            )
            .bind(SCHEMA_VERSION_KEY)
            .bind(schema.as_slice())
            .execute(&pool)
            .await
            .map_err(|error| pg_error(&target, error))?;
            let stored: Vec<u8> =
                sqlx::query_scalar("SELECT value FROM portico_meta WHERE key = $1")
                    .bind(SCHEMA_VERSION_KEY)
                    .fetch_one(&pool)
                    .await
                    .map_err(|error| pg_error(&target, error))?;
            check_schema_version(&stored)
        })
    }

    /// The database's URL without credentials or query (for messages and logs).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Runs `future` on the store's runtime, bounded by [`OPERATION_TIMEOUT`], answering at
    /// once while the database is known to be down, and noting when it is.
    fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let now = crate::service::monotonic_now();
        if let Some(until) = *self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            && now < until
        {
            // Whatever the future owns (an import's open transaction) is dropped on the
            // store's runtime.
            if let Ok(handle) = self.bridge.handle() {
                handle.spawn(async move { drop(future) });
            }
            return Err(StoreError::Unavailable(format!(
                "{} could not be reached a moment ago; retry later",
                self.target
            )));
        }
        let target = self.target.clone();
        let result = self.bridge.run(async move {
            match tokio::time::timeout(OPERATION_TIMEOUT, future).await {
                Ok(result) => result,
                Err(_) => Err(StoreError::Unavailable(format!(
                    "{target} did not answer within {} s (a change in flight may or may not \
                     have been stored)",
                    OPERATION_TIMEOUT.as_secs()
                ))),
            }
        });
        let mut down_until = self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *down_until = match &result {
            Err(StoreError::Unavailable(_)) => Some(crate::service::monotonic_now() + RETRY_AFTER),
            _ => None,
        };
        result
    }

    /// One batch of a scan: at most [`SCAN_BATCH`] entries of `tree` strictly after `after`.
    fn scan_batch(
        &self,
        tree: Tree,
        after: Option<Vec<u8>>,
        order: Order,
    ) -> Result<Vec<Entry>, StoreError> {
        let sql = match (&after, order) {
            (None, Order::Ascending) => {
                "SELECT key, value FROM portico_entries WHERE tree = $1 ORDER BY key LIMIT $2"
            }
            (None, Order::Descending) => {
                "SELECT key, value FROM portico_entries WHERE tree = $1 ORDER BY key DESC LIMIT $2"
            }
            (Some(_), Order::Ascending) => {
                "SELECT key, value FROM portico_entries WHERE tree = $1 AND key > $3 \
                 ORDER BY key LIMIT $2"
            }
            (Some(_), Order::Descending) => {
                "SELECT key, value FROM portico_entries WHERE tree = $1 AND key < $3 \
                 ORDER BY key DESC LIMIT $2"
            }
        };
        let pool = self.pool.clone();
        let target = self.target.clone();
        self.run(async move {
            let query = sqlx::query_as::<_, (Vec<u8>, Vec<u8>)>(sql)
                .bind(tree.name())
                .bind(SCAN_BATCH as i64);
            let query = match after {
                Some(after) => query.bind(after),
                None => query,
            };
            query
                .fetch_all(&pool)
                .await
                .map_err(|error| pg_error(&target, error))
        })
    }

    /// Begins the import's transaction: refuses a store that holds data, writes the metadata.
    async fn begin_import(
        pool: PgPool,
        target: String,
        meta: Vec<(String, Vec<u8>)>,
    ) -> Result<Transaction<'static, Postgres>, StoreError> {
        let error = |error| pg_error(&target, error);
        let mut tx = pool.begin().await.map_err(error)?;
        let revision = lock_revision(&mut tx, &target).await?;
        let has_entries: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM portico_entries)")
            .fetch_one(&mut *tx)
            .await
            .map_err(error)?;
        if revision != 0 || has_entries {
            return Err(StoreError::NotEmpty { revision });
        }
        for (key, value) in meta {
            sqlx::query(UPSERT_META)
                .bind(key)
                .bind(value)
                .execute(&mut *tx)
                .await
                .map_err(error)?;
        }
        Ok(tx)
    }
}

impl Store for PgStore {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let pool = self.pool.clone();
        let target = self.target.clone();
        let key = key.to_vec();
        self.run(async move {
            sqlx::query_scalar("SELECT value FROM portico_entries WHERE tree = $1 AND key = $2")
                .bind(tree.name())
                .bind(key)
                .fetch_optional(&pool)
                .await
                .map_err(|error| pg_error(&target, error))
        })
    }

    fn scan(&self, tree: Tree, after: Option<&[u8]>, order: Order) -> Entries<'_> {
        Box::new(Scan {
            store: self,
            tree,
            order,
            after: after.map(<[u8]>::to_vec),
            batch: Vec::new().into_iter(),
            done: false,
        })
    }

    fn revision(&self) -> Result<u64, StoreError> {
        let pool = self.pool.clone();
        let target = self.target.clone();
        self.run(async move {
            let revision: i64 = sqlx::query_scalar("SELECT revision FROM portico_revision")
                .fetch_one(&pool)
                .await
                .map_err(|error| pg_error(&target, error))?;
            to_revision(revision)
        })
    }

    fn commit(&self, commit: &Commit) -> Result<u64, StoreError> {
        let pool = self.pool.clone();
        let target = self.target.clone();
        let commit = commit.clone();
        self.run(async move {
            let error = |error| pg_error(&target, error);
            let mut tx = pool.begin().await.map_err(error)?;
            let found = lock_revision(&mut tx, &target).await?;
            if found != commit.base_revision {
                return Err(StoreError::Conflict {
                    expected: commit.base_revision,
                    found,
                });
            }
            let next = found + 1;
            let audit_key = next.to_be_bytes();
            apply(&mut tx, &target, &commit.writes).await?;
            put(&mut tx, &target, Tree::Audit, &audit_key, &commit.audit).await?;
            sqlx::query("UPDATE portico_revision SET revision = $1")
                .bind(from_revision(next)?)
                .execute(&mut *tx)
                .await
                .map_err(error)?;
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANGES_CHANNEL)
                .bind(next.to_string())
                .execute(&mut *tx)
                .await
                .map_err(error)?;
            match tx.commit().await {
                Ok(()) => Ok(next),
                Err(failure) => {
                    resolve_commit(&pool, &target, &audit_key, &commit.audit, failure).await?;
                    Ok(next)
                }
            }
        })
    }

    fn write_unversioned_if(
        &self,
        expected: &[Write],
        writes: &[Write],
    ) -> Result<bool, StoreError> {
        let pool = self.pool.clone();
        let target = self.target.clone();
        let (expected, writes) = (expected.to_vec(), writes.to_vec());
        self.run(async move {
            let error = |error| pg_error(&target, error);
            let mut tx = pool.begin().await.map_err(error)?;
            if !expected.is_empty() {
                // Conditional writes are serialised by one transaction-level advisory lock: an
                // absent key has no row to lock.
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(CONDITIONAL_WRITE_LOCK)
                    .execute(&mut *tx)
                    .await
                    .map_err(error)?;
            }
            for expect in &expected {
                let stored: Option<Vec<u8>> = sqlx::query_scalar(
                    "SELECT value FROM portico_entries WHERE tree = $1 AND key = $2",
                )
                .bind(expect.tree.name())
                .bind(&expect.key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(error)?;
                if stored != expect.value {
                    return Ok(false);
                }
            }
            apply(&mut tx, &target, &writes).await?;
            tx.commit().await.map_err(error)?;
            Ok(true)
        })
    }

    fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let pool = self.pool.clone();
        let target = self.target.clone();
        let key = key.to_owned();
        self.run(async move {
            sqlx::query_scalar("SELECT value FROM portico_meta WHERE key = $1")
                .bind(key)
                .fetch_optional(&pool)
                .await
                .map_err(|error| pg_error(&target, error))
        })
    }

    fn meta_put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let pool = self.pool.clone();
        let target = self.target.clone();
        let (key, value) = (key.to_owned(), value.to_vec());
        self.run(async move {
            let error = |error| pg_error(&target, error);
            let mut tx = pool.begin().await.map_err(error)?;
            sqlx::query(UPSERT_META)
                .bind(&key)
                .bind(value)
                .execute(&mut *tx)
                .await
                .map_err(error)?;
            notify_meta(&mut tx, &target, &key).await?;
            tx.commit().await.map_err(error)
        })
    }

    fn meta_swap(
        &self,
        expected: &[(&str, Option<&[u8]>)],
        puts: &[(&str, &[u8])],
    ) -> Result<bool, StoreError> {
        let pool = self.pool.clone();
        let target = self.target.clone();
        let expected: Vec<(String, Option<Vec<u8>>)> = expected
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.map(<[u8]>::to_vec)))
            .collect();
        let puts: Vec<(String, Vec<u8>)> = puts
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.to_vec()))
            .collect();
        self.run(async move {
            let error = |error| pg_error(&target, error);
            let mut tx = pool.begin().await.map_err(error)?;
            // Swaps are serialised by one transaction-level advisory lock: an absent key has no
            // row to lock, and two swaps that both find it absent must not both write it.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(META_SWAP_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(error)?;
            for (key, value) in &expected {
                let stored: Option<Vec<u8>> =
                    sqlx::query_scalar("SELECT value FROM portico_meta WHERE key = $1")
                        .bind(key)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(error)?;
                if stored != *value {
                    return Ok(false);
                }
            }
            for (key, value) in puts {
                sqlx::query(UPSERT_META)
                    .bind(&key)
                    .bind(value)
                    .execute(&mut *tx)
                    .await
                    .map_err(error)?;
                notify_meta(&mut tx, &target, &key).await?;
            }
            tx.commit().await.map_err(error)?;
            Ok(true)
        })
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.changes.clone())
    }

    fn meta_entries(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let pool = self.pool.clone();
        let target = self.target.clone();
        let reserved: Vec<String> = RESERVED_META_KEYS.iter().map(|k| (*k).to_owned()).collect();
        self.run(async move {
            sqlx::query_as::<_, (String, Vec<u8>)>(
                "SELECT key, value FROM portico_meta WHERE key <> ALL($1) ORDER BY key",
            )
            .bind(reserved)
            .fetch_all(&pool)
            .await
            .map_err(|error| pg_error(&target, error))
        })
    }

    /// One transaction, fed in batches: the caller's iterator is read on the caller's thread
    /// (it need not be `Send`), and the open transaction travels to the store's runtime with
    /// each batch and back ([`Held`] drops it there if the import stops half-way).
    fn import(
        &self,
        revision: u64,
        meta: &[(String, Vec<u8>)],
        entries: &mut dyn Iterator<Item = (Tree, Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        check_import_meta(meta)?;
        let revision = from_revision(revision)?;
        let handle = self.bridge.handle()?;
        let begin = Self::begin_import(self.pool.clone(), self.target.clone(), meta.to_vec());
        let mut tx = Held::new(self.run(begin)?, handle);
        loop {
            let batch: Vec<_> = (&mut *entries).take(IMPORT_BATCH).collect();
            if batch.is_empty() {
                break;
            }
            let mut open = tx.take()?;
            let target = self.target.clone();
            let mut trees = Vec::with_capacity(batch.len());
            let mut keys = Vec::with_capacity(batch.len());
            let mut values = Vec::with_capacity(batch.len());
            for (tree, key, value) in batch {
                trees.push(tree.name());
                keys.push(key);
                values.push(value);
            }
            tx.put(self.run(async move {
                sqlx::query(
                    "INSERT INTO portico_entries (tree, key, value) \
                     SELECT * FROM UNNEST($1::text[], $2::bytea[], $3::bytea[])",
                )
                .bind(trees)
                .bind(keys)
                .bind(values)
                .execute(&mut *open)
                .await
                .map_err(|error| match &error {
                    sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Corrupt {
                        tree: "entries",
                        reason: "the import holds a key twice in one tree".to_owned(),
                    },
                    _ => pg_error(&target, error),
                })?;
                Ok(open)
            })?);
        }
        let mut open = tx.take()?;
        let target = self.target.clone();
        self.run(async move {
            let error = |error| pg_error(&target, error);
            sqlx::query("UPDATE portico_revision SET revision = $1")
                .bind(revision)
                .execute(&mut *open)
                .await
                .map_err(error)?;
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANGES_CHANNEL)
                .bind(revision.to_string())
                .execute(&mut *open)
                .await
                .map_err(error)?;
            open.commit().await.map_err(error)
        })
    }
}

/// Locks the revision row for the rest of `tx` and reads it.
async fn lock_revision(
    tx: &mut Transaction<'static, Postgres>,
    target: &str,
) -> Result<u64, StoreError> {
    let revision: i64 = sqlx::query_scalar("SELECT revision FROM portico_revision FOR UPDATE")
        .fetch_one(&mut **tx)
        .await
        .map_err(|error| pg_error(target, error))?;
    to_revision(revision)
}

/// Applies `writes` in order inside `tx`.
async fn apply(
    tx: &mut Transaction<'static, Postgres>,
    target: &str,
    writes: &[Write],
) -> Result<(), StoreError> {
    for write in writes {
        match &write.value {
            Some(value) => put(tx, target, write.tree, &write.key, value).await?,
            None => {
                sqlx::query("DELETE FROM portico_entries WHERE tree = $1 AND key = $2")
                    .bind(write.tree.name())
                    .bind(write.key.as_slice())
                    .execute(&mut **tx)
                    .await
                    .map_err(|error| pg_error(target, error))?;
            }
        }
    }
    Ok(())
}

/// Inserts or replaces one entry inside `tx`.
async fn put(
    tx: &mut Transaction<'static, Postgres>,
    target: &str,
    tree: Tree,
    key: &[u8],
    value: &[u8],
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO portico_entries (tree, key, value) VALUES ($1, $2, $3) \
         ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value",
    )
    .bind(tree.name())
    .bind(key)
    .bind(value)
    .execute(&mut **tx)
    .await
    .map(drop)
    .map_err(|error| pg_error(target, error))
}

/// After `COMMIT` failed with `failure`: `Ok` if the audit record under `key` holds `audit`
/// (the commit happened, only its acknowledgement was lost), the failure otherwise, or
/// [`StoreError::Unavailable`] saying that the outcome is unknown when the database cannot
/// be asked.
async fn resolve_commit(
    pool: &PgPool,
    target: &str,
    key: &[u8],
    audit: &[u8],
    failure: sqlx::Error,
) -> Result<(), StoreError> {
    let stored: Result<Option<Vec<u8>>, sqlx::Error> =
        sqlx::query_scalar("SELECT value FROM portico_entries WHERE tree = $1 AND key = $2")
            .bind(Tree::Audit.name())
            .bind(key)
            .fetch_optional(pool)
            .await;
    match stored {
        Ok(Some(stored)) if stored == audit => Ok(()),
        Ok(_) => Err(pg_error(target, failure)),
        Err(_) => Err(StoreError::Unavailable(format!(
            "{target}: the connection failed while committing ({failure}); the change may or \
             may not have been stored"
        ))),
    }
}

/// A lazy scan: [`SCAN_BATCH`] rows per query, each starting after the last key seen.
struct Scan<'a> {
    store: &'a PgStore,
    tree: Tree,
    order: Order,
    after: Option<Vec<u8>>,
    batch: std::vec::IntoIter<Entry>,
    done: bool,
}

impl Iterator for Scan<'_> {
    type Item = Result<Entry, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(entry) = self.batch.next() {
            return Some(Ok(entry));
        }
        if self.done {
            return None;
        }
        match self
            .store
            .scan_batch(self.tree, self.after.take(), self.order)
        {
            Ok(batch) => {
                self.done = batch.len() < SCAN_BATCH;
                self.after = batch.last().map(|(key, _)| key.clone());
                self.batch = batch.into_iter();
                self.batch.next().map(Ok)
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

/// Notifies [`CHANGES_CHANNEL`] that the metadata value `key` changed, when `tx` commits.
async fn notify_meta(
    tx: &mut Transaction<'static, Postgres>,
    target: &str,
    key: &str,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANGES_CHANNEL)
        .bind(format!("meta:{key}"))
        .execute(&mut **tx)
        .await
        .map(drop)
        .map_err(|error| pg_error(target, error))
}

/// Listens on [`CHANGES_CHANNEL`] with `pool`'s one connection and moves `changed` on every
/// notification, and once more whenever a new connection listens (notifications sent while
/// none did are lost), until every receiver is gone.
async fn listen(pool: PgPool, target: String, changed: watch::Sender<u64>) {
    let bump = |changed: &watch::Sender<u64>| changed.send_modify(|n| *n = n.wrapping_add(1));
    while !changed.is_closed() {
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANGES_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match listening.await {
            Ok(mut listener) => {
                bump(&changed);
                loop {
                    match listener.try_recv().await {
                        Ok(Some(_)) => bump(&changed),
                        // The connection was lost and made again: anything may have been missed.
                        Ok(None) => bump(&changed),
                        Err(error) => {
                            tracing::warn!(database = %target, %error, "lost the notification connection");
                            break;
                        }
                    }
                    if changed.is_closed() {
                        return;
                    }
                }
            }
            Err(error) => {
                tracing::warn!(database = %target, %error, "cannot listen for changes; retrying");
            }
        }
        tokio::time::sleep(LISTEN_RETRY).await;
    }
}

/// The store's own tokio runtime, shut down in the background on drop (never blocking: the
/// store may be dropped on an async task).
#[derive(Debug)]
struct Bridge {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Bridge {
    fn handle(&self) -> Result<tokio::runtime::Handle, StoreError> {
        self.runtime
            .as_ref()
            .map(|runtime| runtime.handle().clone())
            .ok_or_else(stopped)
    }

    /// Spawns `future` on the runtime and blocks the calling thread (only) for its answer.
    fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        self.handle()?.spawn(async move {
            // The receiver waits until the answer is sent; it cannot be gone.
            let _ = sender.send(future.await);
        });
        receiver.recv().unwrap_or_else(|_| Err(stopped()))
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Backend("the PostgreSQL store's runtime has stopped".to_owned())
}

/// A value owned by the store's runtime while the caller's thread holds it between two
/// operations (an import's open transaction): dropped on the runtime, where sqlx can hand its
/// connection back to the pool.
struct Held<T: Send + 'static> {
    value: Option<T>,
    handle: tokio::runtime::Handle,
}

impl<T: Send + 'static> Held<T> {
    fn new(value: T, handle: tokio::runtime::Handle) -> Self {
        Held {
            value: Some(value),
            handle,
        }
    }

    fn take(&mut self) -> Result<T, StoreError> {
        self.value.take().ok_or_else(stopped)
    }

    fn put(&mut self, value: T) {
        self.value = Some(value);
    }
}

impl<T: Send + 'static> Drop for Held<T> {
    fn drop(&mut self) {
        if let Some(value) = self.value.take() {
            self.handle.spawn(async move { drop(value) });
        }
    }
}

/// The URL as a log line may show it: no credentials, no query.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => crate::redact::url(&parsed),
        Err(_) => "the configured PostgreSQL URL".to_owned(),
    }
}

/// A driver error as a [`StoreError`]: [`StoreError::Unavailable`] for what makes the
/// database unreachable or unable to take changes for now (I/O, TLS, pool time-outs,
/// SQLSTATE classes 08 connection exception, 28 invalid authorization, 53 insufficient
/// resources, 57P0x shutdown or start-up, 25006 read-only transaction), prefixed with the
/// redacted `target`; [`StoreError::Backend`] for everything else.
fn pg_error(target: &str, error: sqlx::Error) -> StoreError {
    let unavailable = match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08")
                || code.starts_with("28")
                || code.starts_with("53")
                || code.starts_with("57P0")
                || code == "25006"
        }),
        _ => false,
    };
    if unavailable {
        StoreError::Unavailable(format!("{target}: {error}"))
    } else {
        StoreError::Backend(format!("{target}: {error}"))
    }
}

fn to_revision(revision: i64) -> Result<u64, StoreError> {
    u64::try_from(revision).map_err(|_| StoreError::Corrupt {
        tree: "revision",
        reason: format!("the revision is negative ({revision})"),
    })
}

fn from_revision(revision: u64) -> Result<i64, StoreError> {
    i64::try_from(revision).map_err(|_| {
        StoreError::Backend(format!(
            "the revision {revision} does not fit PostgreSQL's bigint"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_reaches_a_message() {
        let target = redacted("postgres://portico:s3cr3t@db.example:5432/portico?sslmode=disable");
        assert_eq!(
            target,
            "postgres://REDACTED@db.example:5432/portico?sslmode=REDACTED"
        );
        let error = pg_error(&target, sqlx::Error::PoolTimedOut);
        assert!(matches!(error, StoreError::Unavailable(_)), "{error}");
        assert!(!error.to_string().contains("s3cr3t"), "{error}");
        assert_eq!(redacted("not a url"), "the configured PostgreSQL URL");
    }

    #[test]
    fn a_database_that_cannot_be_reached_is_unavailable_at_open() {
        // A port that was just free on the loopback: connecting is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("postgres://portico:pw@127.0.0.1:{port}/portico");
        let error = PgStore::open(&url, 2).unwrap_err();
        assert!(matches!(error, StoreError::Unavailable(_)), "{error}");
        assert!(!error.to_string().contains(":pw@"), "{error}");
    }
}
