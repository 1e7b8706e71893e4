//! One contract for every store: the same cases run against the embedded sled store (in a
//! temporary directory) and the PostgreSQL store (a fresh database on the binary's shared
//! throwaway server, see `portico_tests::postgres`). Whatever the services rely on is here:
//! reads, ordered scans that resume after a key, the revision and its audit record, optimistic
//! concurrency, atomicity, unversioned writes, metadata, export and import, and the schema
//! version check.

use std::collections::BTreeSet;
use std::sync::Arc;

use portico_control_plane::store::postgres::PgStore;
use portico_control_plane::store::sled::SledStore;
use portico_control_plane::store::{
    Commit, Order, SCHEMA_VERSION, SCHEMA_VERSION_KEY, Store, StoreError, Tree, Write,
};

/// Where a store lives, so that a case can open it again (what a restart sees).
enum Fixture {
    Sled(tempfile::TempDir),
    Postgres(String),
}

impl Fixture {
    fn sled() -> Fixture {
        Fixture::Sled(tempfile::tempdir().unwrap())
    }

    async fn postgres() -> Fixture {
        Fixture::Postgres(portico_tests::postgres::shared().await.database().await)
    }

    /// Opens the store (a sled store must be dropped before it is opened again).
    fn open(&self) -> Result<Arc<dyn Store>, StoreError> {
        Ok(match self {
            Fixture::Sled(dir) => Arc::new(SledStore::open(dir.path())?),
            Fixture::Postgres(url) => Arc::new(PgStore::open(url, 4)?),
        })
    }

    /// Another empty store of the same kind (an import's target).
    async fn another(&self) -> Fixture {
        match self {
            Fixture::Sled(_) => Fixture::sled(),
            Fixture::Postgres(_) => Fixture::postgres().await,
        }
    }
}

fn commit(base: u64, writes: Vec<Write>) -> Commit {
    Commit {
        base_revision: base,
        writes,
        audit: format!("audit of {}", base + 1).into_bytes(),
    }
}

fn keys(store: &dyn Store, tree: Tree, after: Option<&[u8]>, order: Order) -> Vec<Vec<u8>> {
    store
        .scan(tree, after, order)
        .map(|entry| entry.unwrap().0)
        .collect()
}

/// Every entry of every tree, for comparing two stores.
fn everything(store: &dyn Store) -> Vec<(Tree, Vec<u8>, Vec<u8>)> {
    Tree::ALL
        .iter()
        .flat_map(|tree| {
            store
                .scan(*tree, None, Order::Ascending)
                .map(|entry| {
                    let (key, value) = entry.unwrap();
                    (*tree, key, value)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn puts_and_removes_are_read_back(fixture: Fixture) {
    let store = fixture.open().unwrap();
    assert_eq!(store.revision().unwrap(), 0);
    assert_eq!(store.get(Tree::Apis, b"a").unwrap(), None);
    let revision = store
        .commit(&commit(
            0,
            vec![
                Write::put(Tree::Apis, "a", b"1".to_vec()),
                Write::put(Tree::Policies, "a", b"2".to_vec()),
                Write::put(Tree::Apis, "b", vec![0, 255, 0]),
            ],
        ))
        .unwrap();
    assert_eq!(revision, 1);
    assert_eq!(store.get(Tree::Apis, b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(
        store.get(Tree::Policies, b"a").unwrap(),
        Some(b"2".to_vec())
    );
    assert_eq!(store.get(Tree::Apis, b"b").unwrap(), Some(vec![0, 255, 0]));
    // Writes apply in order: the last one to a key wins.
    store
        .commit(&commit(
            1,
            vec![
                Write::remove(Tree::Apis, "a"),
                Write::put(Tree::Apis, "b", b"first".to_vec()),
                Write::put(Tree::Apis, "b", b"second".to_vec()),
                Write::put(Tree::Apis, "c", b"gone".to_vec()),
                Write::remove(Tree::Apis, "c"),
                Write::remove(Tree::Apis, "never-there"),
            ],
        ))
        .unwrap();
    assert_eq!(store.get(Tree::Apis, b"a").unwrap(), None);
    assert_eq!(
        store.get(Tree::Apis, b"b").unwrap(),
        Some(b"second".to_vec())
    );
    assert_eq!(store.get(Tree::Apis, b"c").unwrap(), None);
    assert_eq!(
        store.get(Tree::Policies, b"a").unwrap(),
        Some(b"2".to_vec())
    );
}

async fn scans_are_in_byte_order_both_ways_and_resume_strictly_after_a_key(fixture: Fixture) {
    let store = fixture.open().unwrap();
    // More keys than one PostgreSQL batch, including bytes above 0x7f and a prefix of
    // another key, in a scrambled order.
    let mut all: Vec<Vec<u8>> = (0..1100u32)
        .map(|i| format!("k{:04}", (i * 7919) % 1100).into_bytes())
        .collect();
    all.extend([b"k".to_vec(), vec![0xff], vec![0x80, 1], vec![0x00]]);
    let writes = all
        .iter()
        .map(|key| Write::put(Tree::Issuers, key.clone(), key.clone()))
        .collect();
    store.commit(&commit(0, writes)).unwrap();
    store
        .commit(&commit(1, vec![Write::put(Tree::Apis, "other", vec![1])]))
        .unwrap();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(keys(&*store, Tree::Issuers, None, Order::Ascending), sorted);
    let descending: Vec<_> = sorted.iter().rev().cloned().collect();
    assert_eq!(
        keys(&*store, Tree::Issuers, None, Order::Descending),
        descending
    );
    let after = b"k0511".as_slice();
    let expected: Vec<_> = sorted
        .iter()
        .filter(|key| key.as_slice() > after)
        .cloned()
        .collect();
    assert_eq!(
        keys(&*store, Tree::Issuers, Some(after), Order::Ascending),
        expected
    );
    let expected: Vec<_> = descending
        .iter()
        .filter(|key| key.as_slice() < after)
        .cloned()
        .collect();
    assert_eq!(
        keys(&*store, Tree::Issuers, Some(after), Order::Descending),
        expected
    );
    // A key that is not stored resumes just the same.
    assert_eq!(
        keys(&*store, Tree::Issuers, Some(b"k0511x"), Order::Ascending)[0],
        b"k0512"
    );
    assert!(keys(&*store, Tree::Issuers, Some(&[0xff]), Order::Ascending).is_empty());
    assert!(keys(&*store, Tree::Policies, None, Order::Ascending).is_empty());
    // Values come with their keys.
    let (key, value) = store
        .scan(Tree::Issuers, None, Order::Ascending)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(key, value);
}

async fn each_commit_bumps_the_revision_and_records_its_audit_under_it(fixture: Fixture) {
    let store = fixture.open().unwrap();
    for base in 0..3u64 {
        let next = store
            .commit(&commit(
                base,
                vec![Write::put(Tree::Apis, format!("api-{base}"), vec![1])],
            ))
            .unwrap();
        assert_eq!(next, base + 1);
        assert_eq!(store.revision().unwrap(), base + 1);
    }
    // Audit keys are big-endian revisions, so they scan in revision order.
    let audit: Vec<_> = store
        .scan(Tree::Audit, None, Order::Descending)
        .map(Result::unwrap)
        .collect();
    let expected: Vec<_> = (1..=3u64)
        .rev()
        .map(|revision| {
            (
                revision.to_be_bytes().to_vec(),
                format!("audit of {revision}").into_bytes(),
            )
        })
        .collect();
    assert_eq!(audit, expected);
    // Data, revision and metadata survive opening the store again.
    store.meta_put("k", b"v").unwrap();
    drop(store);
    let store = fixture.open().unwrap();
    assert_eq!(store.revision().unwrap(), 3);
    assert_eq!(store.get(Tree::Apis, b"api-2").unwrap(), Some(vec![1]));
    assert_eq!(store.meta_get("k").unwrap(), Some(b"v".to_vec()));
}

async fn a_commit_from_a_stale_revision_conflicts_and_writes_nothing(fixture: Fixture) {
    let store = fixture.open().unwrap();
    store
        .commit(&commit(0, vec![Write::put(Tree::Apis, "a", b"1".to_vec())]))
        .unwrap();
    let error = store
        .commit(&commit(
            0,
            vec![
                Write::put(Tree::Apis, "b", b"2".to_vec()),
                Write::remove(Tree::Apis, "a"),
            ],
        ))
        .unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Conflict {
                expected: 0,
                found: 1
            }
        ),
        "{error}"
    );
    let ahead = store.commit(&commit(5, Vec::new())).unwrap_err();
    assert!(matches!(ahead, StoreError::Conflict { .. }), "{ahead}");
    assert_eq!(store.get(Tree::Apis, b"b").unwrap(), None);
    assert_eq!(store.get(Tree::Apis, b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(store.revision().unwrap(), 1);
    assert_eq!(store.scan(Tree::Audit, None, Order::Ascending).count(), 1);
}

async fn concurrent_committers_get_exactly_one_winner_per_revision(fixture: Fixture) {
    const WRITERS: usize = 6;
    const EACH: usize = 8;
    let store = fixture.open().unwrap();
    let won: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let store = Arc::clone(&store);
                scope.spawn(move || {
                    let mut won = Vec::new();
                    let mut conflicts = 0;
                    while won.len() < EACH {
                        let base = store.revision().unwrap();
                        let key = format!("w{writer}-{}", won.len());
                        let change = Commit {
                            base_revision: base,
                            writes: vec![Write::put(Tree::Issuers, key.clone(), vec![])],
                            audit: key.into_bytes(),
                        };
                        match store.commit(&change) {
                            Ok(revision) => {
                                assert_eq!(revision, base + 1);
                                won.push(revision);
                            }
                            Err(StoreError::Conflict { .. }) => conflicts += 1,
                            Err(other) => panic!("writer {writer}: {other}"),
                        }
                        assert!(conflicts < 10_000, "writer {writer} never wins");
                    }
                    won
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total = (WRITERS * EACH) as u64;
    let revisions: BTreeSet<u64> = won.iter().flatten().copied().collect();
    assert_eq!(revisions, (1..=total).collect::<BTreeSet<_>>());
    assert_eq!(store.revision().unwrap(), total);
    // Each revision's audit record is the winner's, and its write is there.
    for (writer, revisions) in won.iter().enumerate() {
        for (index, revision) in revisions.iter().enumerate() {
            let key = format!("w{writer}-{index}");
            assert_eq!(
                store.get(Tree::Audit, &revision.to_be_bytes()).unwrap(),
                Some(key.clone().into_bytes())
            );
            assert!(store.get(Tree::Issuers, key.as_bytes()).unwrap().is_some());
        }
    }
}

async fn unversioned_writes_change_neither_the_revision_nor_the_audit_log(fixture: Fixture) {
    let store = fixture.open().unwrap();
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
    // A commit after them still builds on revision 0.
    assert_eq!(store.commit(&commit(0, Vec::new())).unwrap(), 1);
}

async fn a_conditional_unversioned_write_lands_only_on_what_it_read(fixture: Fixture) {
    let store = fixture.open().unwrap();
    let counter = |value: &[u8]| Write::put(Tree::QuotaCounters, "q", value.to_vec());
    let absent = Write::remove(Tree::QuotaCounters, "q");
    assert!(
        store
            .write_unversioned_if(std::slice::from_ref(&absent), &[counter(b"1")])
            .unwrap()
    );
    // Another process counted meanwhile: what was read is gone, nothing is written.
    assert!(
        !store
            .write_unversioned_if(
                &[absent],
                &[
                    counter(b"1"),
                    Write::put(Tree::UsageHours, "h", b"x".to_vec())
                ]
            )
            .unwrap()
    );
    assert_eq!(store.get(Tree::UsageHours, b"h").unwrap(), None);
    assert!(
        store
            .write_unversioned_if(&[counter(b"1")], &[counter(b"2")])
            .unwrap()
    );
    assert_eq!(
        store.get(Tree::QuotaCounters, b"q").unwrap(),
        Some(b"2".to_vec())
    );
    assert_eq!(store.revision().unwrap(), 0);
}

async fn metadata_is_kept_apart_and_exported_without_the_stores_own_keys(fixture: Fixture) {
    let store = fixture.open().unwrap();
    assert_eq!(store.meta_get("b").unwrap(), None);
    store.meta_put("b", b"2").unwrap();
    store.meta_put("a", b"1").unwrap();
    store.meta_put("b", b"3").unwrap();
    store.meta_put("jwks:\u{e9}", &[0, 1]).unwrap();
    assert_eq!(store.meta_get("b").unwrap(), Some(b"3".to_vec()));
    assert_eq!(
        store.meta_entries().unwrap(),
        vec![
            ("a".to_owned(), b"1".to_vec()),
            ("b".to_owned(), b"3".to_vec()),
            ("jwks:\u{e9}".to_owned(), vec![0, 1]),
        ]
    );
    // Metadata is neither a tree entry nor a change.
    assert_eq!(store.revision().unwrap(), 0);
    assert!(
        Tree::ALL
            .iter()
            .all(|tree| store.scan(*tree, None, Order::Ascending).next().is_none())
    );
}

async fn an_export_imports_whole_into_an_empty_store_and_never_into_a_used_one(fixture: Fixture) {
    let source = fixture.open().unwrap();
    for base in 0..3u64 {
        let writes = (0..700u32)
            .map(|i| {
                Write::put(
                    Tree::OAuthClients,
                    format!("c{base}-{i:03}"),
                    vec![base as u8],
                )
            })
            .chain([Write::put(Tree::Settings, "dcr", b"sealed".to_vec())])
            .collect();
        source.commit(&commit(base, writes)).unwrap();
    }
    source
        .write_unversioned(&[Write::put(Tree::Sessions, "s", b"x".to_vec())])
        .unwrap();
    source
        .meta_put("secret_key_check", b"sealed check")
        .unwrap();
    let revision = source.revision().unwrap();
    let meta = source.meta_entries().unwrap();
    let exported = everything(&*source);
    assert_eq!(exported.len(), 3 * 700 + 1 + 3 + 1);

    let target_fixture = fixture.another().await;
    let target = target_fixture.open().unwrap();
    // A store's first start writes metadata of its own; the import replaces it.
    target.meta_put("secret_key_check", b"another").unwrap();
    target
        .import(revision, &meta, &mut exported.clone().into_iter())
        .unwrap();
    assert_eq!(target.revision().unwrap(), revision);
    assert_eq!(everything(&*target), exported);
    assert_eq!(target.meta_entries().unwrap(), meta);
    assert_eq!(
        target.commit(&commit(revision, Vec::new())).unwrap(),
        revision + 1
    );

    // Never into a store that holds anything, nor with a store's own metadata key.
    let error = target
        .import(revision, &meta, &mut exported.clone().into_iter())
        .unwrap_err();
    assert!(matches!(error, StoreError::NotEmpty { .. }), "{error}");
    let used_fixture = fixture.another().await;
    let used = used_fixture.open().unwrap();
    used.write_unversioned(&[Write::put(Tree::Sessions, "s", b"x".to_vec())])
        .unwrap();
    let error = used
        .import(revision, &meta, &mut exported.clone().into_iter())
        .unwrap_err();
    assert!(
        matches!(error, StoreError::NotEmpty { revision: 0 }),
        "{error}"
    );
    let empty_fixture = fixture.another().await;
    let empty = empty_fixture.open().unwrap();
    let reserved = vec![(SCHEMA_VERSION_KEY.to_owned(), vec![0; 8])];
    let error = empty
        .import(1, &reserved, &mut std::iter::empty())
        .unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    assert_eq!(empty.revision().unwrap(), 0);
}

async fn a_failed_import_leaves_nothing_visible(fixture: Fixture) {
    let store = fixture.open().unwrap();
    let twice = vec![
        (Tree::Apis, b"a".to_vec(), b"1".to_vec()),
        (Tree::Apis, b"a".to_vec(), b"2".to_vec()),
    ];
    let error = store
        .import(
            7,
            &[("m".to_owned(), b"v".to_vec())],
            &mut twice.into_iter(),
        )
        .unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    drop(store);
    // PostgreSQL rolled the whole import back; sled refuses to open a store cut short.
    match fixture.open() {
        Ok(store) => {
            assert_eq!(store.revision().unwrap(), 0);
            assert_eq!(store.get(Tree::Apis, b"a").unwrap(), None);
            assert_eq!(store.meta_get("m").unwrap(), None);
        }
        Err(error) => assert!(error.to_string().contains("import"), "{error}"),
    }
}

async fn a_store_written_by_a_newer_schema_is_refused(fixture: Fixture) {
    let store = fixture.open().unwrap();
    assert_eq!(
        store.meta_get(SCHEMA_VERSION_KEY).unwrap(),
        Some(SCHEMA_VERSION.to_be_bytes().to_vec())
    );
    store
        .meta_put(SCHEMA_VERSION_KEY, &(SCHEMA_VERSION + 1).to_be_bytes())
        .unwrap();
    drop(store);
    let error = fixture.open().map(drop).unwrap_err();
    assert!(
        matches!(error, StoreError::SchemaTooNew { found, supported }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{error}"
    );
}

async fn a_compare_and_swap_replaces_only_the_expected_value_and_one_of_racers_wins(
    fixture: Fixture,
) {
    let store = fixture.open().unwrap();
    assert!(store.meta_compare_and_swap("lease", None, b"a").unwrap());
    assert!(!store.meta_compare_and_swap("lease", None, b"b").unwrap());
    assert!(
        !store
            .meta_compare_and_swap("lease", Some(b"b"), b"c")
            .unwrap()
    );
    assert_eq!(store.meta_get("lease").unwrap(), Some(b"a".to_vec()));
    assert!(
        store
            .meta_compare_and_swap("lease", Some(b"a"), b"d")
            .unwrap()
    );
    assert_eq!(store.meta_get("lease").unwrap(), Some(b"d".to_vec()));
    // Racers that read the same value: exactly one replaces it.
    let winners: Vec<bool> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..8u8)
            .map(|racer| {
                let store = Arc::clone(&store);
                scope.spawn(move || {
                    store
                        .meta_compare_and_swap("lease", Some(b"d"), &[racer])
                        .unwrap()
                })
            })
            .collect();
        racers
            .into_iter()
            .map(|racer| racer.join().unwrap())
            .collect()
    });
    assert_eq!(winners.iter().filter(|won| **won).count(), 1, "{winners:?}");
    let winner = winners.iter().position(|won| *won).unwrap();
    assert_eq!(store.meta_get("lease").unwrap(), Some(vec![winner as u8]));
    // Several keys at once: all expectations hold and every value is written, or nothing is.
    assert!(
        !store
            .meta_swap(
                &[("lease", Some(&[winner as u8])), ("record", Some(b"old"))],
                &[("record", b"new"), ("binary", b"bytes")],
            )
            .unwrap()
    );
    assert_eq!(store.meta_get("binary").unwrap(), None);
    assert!(
        store
            .meta_swap(
                &[("lease", Some(&[winner as u8])), ("record", None)],
                &[("record", b"new"), ("binary", b"bytes")],
            )
            .unwrap()
    );
    assert_eq!(store.meta_get("record").unwrap(), Some(b"new".to_vec()));
    assert_eq!(store.meta_get("binary").unwrap(), Some(b"bytes".to_vec()));
    // Metadata is not a change.
    assert_eq!(store.revision().unwrap(), 0);
}

/// Each case once per store, as `sled::<case>` and `postgres::<case>`.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod sled {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::Fixture::sled()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(super::Fixture::postgres().await).await;
                }
            )*
        }
    };
}

contract!(
    puts_and_removes_are_read_back,
    scans_are_in_byte_order_both_ways_and_resume_strictly_after_a_key,
    each_commit_bumps_the_revision_and_records_its_audit_under_it,
    a_commit_from_a_stale_revision_conflicts_and_writes_nothing,
    concurrent_committers_get_exactly_one_winner_per_revision,
    unversioned_writes_change_neither_the_revision_nor_the_audit_log,
    metadata_is_kept_apart_and_exported_without_the_stores_own_keys,
    an_export_imports_whole_into_an_empty_store_and_never_into_a_used_one,
    a_failed_import_leaves_nothing_visible,
    a_store_written_by_a_newer_schema_is_refused,
    a_compare_and_swap_replaces_only_the_expected_value_and_one_of_racers_wins,
    a_conditional_unversioned_write_lands_only_on_what_it_read,
);

/// Several processes on one database: each store's `changes` moves when another process
/// commits or writes metadata (PostgreSQL notifications). A store that one process owns has
/// none.
#[tokio::test]
async fn a_shared_store_hears_the_commits_and_metadata_writes_of_another_process() {
    assert!(Fixture::sled().open().unwrap().changes().is_none());
    let fixture = Fixture::postgres().await;
    let (listening, writing) = (fixture.open().unwrap(), fixture.open().unwrap());
    let mut changes = listening.changes().expect("a shared store has changes");
    let heard = |changes: &mut tokio::sync::watch::Receiver<u64>| {
        let mut changes = changes.clone();
        async move {
            tokio::time::timeout(std::time::Duration::from_secs(10), changes.changed())
                .await
                .expect("a notification within 10 s")
                .unwrap();
        }
    };
    // The listener connects in the background; once it listens, the receiver moves.
    heard(&mut changes).await;
    changes.borrow_and_update();
    let writing = Arc::clone(&writing);
    let revision = tokio::task::spawn_blocking(move || {
        writing
            .commit(&commit(0, vec![Write::put(Tree::Apis, "a", b"1".to_vec())]))
            .unwrap();
        writing.meta_put("k", b"v").unwrap();
        writing
    })
    .await
    .unwrap();
    heard(&mut changes).await;
    assert_eq!(listening.revision().unwrap(), 1);
    changes.borrow_and_update();
    tokio::task::spawn_blocking(move || revision.meta_compare_and_swap("k", Some(b"v"), b"w"))
        .await
        .unwrap()
        .unwrap();
    heard(&mut changes).await;
}
