use std::io::Cursor;

use super::*;
use crate::store::sled::SledStore;
use crate::store::{Commit, Write};

/// A sled store with two commits (an API, a sealed-looking secret), a session written
/// without a revision and a metadata value.
fn populated() -> (tempfile::TempDir, SledStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(&dir.path().join("db")).unwrap();
    store
        .commit(&Commit {
            base_revision: 0,
            writes: vec![Write::put(
                Tree::Apis,
                "orders",
                b"{\"id\":\"orders\"}".to_vec(),
            )],
            audit: b"audit-1".to_vec(),
        })
        .unwrap();
    store
        .commit(&Commit {
            base_revision: 1,
            writes: vec![Write::put(Tree::Settings, "dcr", vec![0, 159, 146, 150])],
            audit: b"audit-2".to_vec(),
        })
        .unwrap();
    store
        .write_unversioned(&[Write::put(Tree::Sessions, "s", b"session".to_vec())])
        .unwrap();
    store.meta_put("secret_key_check", b"sealed").unwrap();
    (dir, store)
}

fn exported() -> Vec<u8> {
    let (_dir, store) = populated();
    export(&store, 1_767_225_600).unwrap().bytes
}

fn refusal(bytes: &[u8]) -> String {
    match read(&mut Cursor::new(bytes)) {
        Err(BackupError::Invalid(reason)) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn an_export_reads_back_whole_with_its_header_and_every_entry() {
    let (_dir, store) = populated();
    let export = export(&store, 1_767_225_600).unwrap();
    assert_eq!((export.meta, export.entries), (1, 5));
    let backup = read(&mut Cursor::new(&export.bytes)).unwrap();
    assert_eq!(backup.header, export.header);
    assert_eq!(backup.header.revision, 2);
    assert_eq!(backup.header.created_at, 1_767_225_600);
    assert_eq!(backup.header.format_version, FORMAT_VERSION);
    assert_eq!(backup.bytes, export.bytes.len());
    assert_eq!(
        backup.meta,
        vec![("secret_key_check".to_owned(), b"sealed".to_vec())]
    );
    let mut expected = Vec::new();
    for tree in Tree::ALL {
        for entry in store.scan(tree, None, Order::Ascending) {
            let (key, value) = entry.unwrap();
            expected.push((tree, key, value));
        }
    }
    assert_eq!(backup.entries, expected);
    // Values travel as the stored bytes, not as text.
    assert!(
        backup
            .entries
            .iter()
            .any(|(_, _, value)| value == &[0, 159, 146, 150])
    );
}

/// Where the trailer line starts.
fn trailer_start(bytes: &[u8]) -> usize {
    bytes[..bytes.len() - 1]
        .iter()
        .rposition(|byte| *byte == b'\n')
        .unwrap()
        + 1
}

#[test]
fn a_changed_byte_is_refused_as_a_change_wherever_it_is() {
    let bytes = exported();
    let trailer = trailer_start(&bytes);
    // Every byte of every line before the trailer, except the header's (a damaged header is
    // refused as not being a header at all), and a digit of the trailer's digest.
    let header_end = bytes.iter().position(|byte| *byte == b'\n').unwrap() + 1;
    let digest = trailer
        + bytes[trailer..]
            .windows(9)
            .position(|w| w == b"sha256\":\"")
            .unwrap()
        + 9;
    for at in (header_end..trailer - 1).chain([digest]) {
        let mut changed = bytes.clone();
        changed[at] ^= 0x01;
        let reason = refusal(&changed);
        assert!(reason.contains("SHA-256"), "byte {at}: {reason}");
    }
}

#[test]
fn a_truncated_file_or_one_without_its_trailer_is_refused() {
    let bytes = exported();
    assert!(refusal(&bytes[..trailer_start(&bytes)]).contains("trailer line is missing"));
    assert!(refusal(&bytes[..bytes.len() - 1]).contains("trailer line is missing"));
    assert!(refusal(&bytes[..bytes.len() / 2]).contains("trailer line is missing"));
    assert!(refusal(b"").contains("empty"));
    let mut appended = bytes;
    appended.extend_from_slice(b"{\"meta\":{\"key\":\"x\",\"value\":\"\"}}\n");
    assert!(refusal(&appended).contains("follows the trailer"));
}

#[test]
fn another_format_version_is_named_before_anything_else() {
    let bytes = exported();
    let text = String::from_utf8(bytes).unwrap();
    let newer = text.replacen("\"format_version\":1", "\"format_version\":2", 1);
    match read(&mut Cursor::new(newer.as_bytes())) {
        Err(BackupError::UnsupportedVersion { found: 2, .. }) => {}
        other => panic!("expected the version to be refused, got {other:?}"),
    }
    assert!(refusal(b"{\"hello\":1}\n").contains("not the header"));
}

#[test]
fn counts_that_disagree_with_the_lines_are_refused_even_with_a_matching_digest() {
    let bytes = exported();
    let text = String::from_utf8(bytes).unwrap();
    let (body, _) = text
        .trim_end_matches('\n')
        .rsplit_once('\n')
        .map(|(body, trailer)| (format!("{body}\n"), trailer.to_owned()))
        .unwrap();
    let sha256 = hex(&Sha256::digest(body.as_bytes()));
    let forged =
        format!("{body}{{\"trailer\":{{\"meta\":1,\"entries\":4,\"sha256\":\"{sha256}\"}}}}\n");
    assert!(refusal(forged.as_bytes()).contains("the trailer counts"));
}

#[test]
fn the_store_s_own_metadata_and_a_key_twice_are_refused_before_any_write() {
    let line = |line: &Line| {
        let mut bytes = Vec::new();
        push(&mut bytes, line).unwrap();
        bytes
    };
    let header = Header {
        format: FORMAT.to_owned(),
        format_version: FORMAT_VERSION,
        portico_version: "0.0.0".to_owned(),
        revision: 1,
        created_at: 0,
        snapshot: None,
    };
    let file = |body: Vec<Line>, meta: usize, entries: usize| {
        let mut bytes = line(&Line::Header(header.clone()));
        for body_line in &body {
            bytes.extend(line(body_line));
        }
        let sha256 = hex(&Sha256::digest(&bytes));
        bytes.extend(line(&Line::Trailer(Trailer {
            meta,
            entries,
            sha256,
        })));
        bytes
    };
    let reserved = file(
        vec![Line::Meta(MetaLine {
            key: "revision".to_owned(),
            value: String::new(),
        })],
        1,
        0,
    );
    assert!(refusal(&reserved).contains("own metadata key `revision`"));
    let entry = || {
        Line::Entry(EntryLine {
            tree: "apis".to_owned(),
            key: STANDARD.encode("orders"),
            value: String::new(),
        })
    };
    let twice = file(vec![entry(), entry()], 0, 2);
    assert!(refusal(&twice).contains("twice in the tree `apis`"));
    let unknown = file(
        vec![Line::Entry(EntryLine {
            tree: "nope".to_owned(),
            key: String::new(),
            value: String::new(),
        })],
        0,
        1,
    );
    assert!(refusal(&unknown).contains("line 2: unknown tree `nope`"));
}

#[test]
fn an_export_gives_up_on_a_store_that_keeps_changing() {
    /// A store whose revision moves on every read.
    #[derive(Debug)]
    struct Moving(std::sync::atomic::AtomicU64);
    impl Store for Moving {
        fn get(&self, _: Tree, _: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(None)
        }
        fn scan(&self, _: Tree, _: Option<&[u8]>, _: Order) -> crate::store::Entries<'_> {
            Box::new(std::iter::empty())
        }
        fn revision(&self) -> Result<u64, StoreError> {
            Ok(self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
        }
        fn commit(&self, _: &Commit) -> Result<u64, StoreError> {
            unreachable!()
        }
        fn write_unversioned_if(&self, _: &[Write], _: &[Write]) -> Result<bool, StoreError> {
            unreachable!()
        }
        fn meta_get(&self, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(None)
        }
        fn meta_put(&self, _: &str, _: &[u8]) -> Result<(), StoreError> {
            unreachable!()
        }
        fn meta_swap(
            &self,
            _: &[(&str, Option<&[u8]>)],
            _: &[(&str, &[u8])],
        ) -> Result<bool, StoreError> {
            unreachable!()
        }
        fn meta_entries(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
            Ok(Vec::new())
        }
        fn import(
            &self,
            _: u64,
            _: &[(String, Vec<u8>)],
            _: &mut dyn Iterator<Item = (Tree, Vec<u8>, Vec<u8>)>,
        ) -> Result<(), StoreError> {
            unreachable!()
        }
    }
    let store = Moving(std::sync::atomic::AtomicU64::new(0));
    assert!(matches!(
        export(&store, 0),
        Err(BackupError::Busy(EXPORT_ATTEMPTS))
    ));
}
