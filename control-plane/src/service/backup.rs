//! The export file of `portico store export` and `portico store import`: the whole store
//! (every tree's entries, secrets still sealed, the audit log, the services' metadata) in one
//! self-describing file, which is both a backup and the way to move a store from sled to
//! PostgreSQL and back. [`export`] writes it; [`read`] checks all of it before anything is
//! written anywhere; [`super::restore::import`] loads what [`read`] accepted.
//!
//! # Format `portico-store-export`, version 1
//!
//! JSON lines: UTF-8, one JSON object per line, every line ending with `\n`. Each object has a
//! single key that names the line's kind:
//!
//! 1. `{"header": {"format": "portico-store-export", "format_version": 1,
//!    "portico_version": "0.1.0", "revision": 42, "created_at": 1767225600,
//!    "snapshot": {"version": 17, "hash": "…"}}}`: the store's revision, when the export was
//!    made (seconds since the Unix epoch) and the last published snapshot's
//!    [`VersionRecord`] (`null` when none was published).
//! 2. One `{"meta": {"key": "secret_key_check", "value": "<base64>"}}` per metadata value of
//!    the services ([`Store::meta_entries`]: without the store's own keys).
//! 3. One `{"entry": {"tree": "oauth_clients", "key": "<base64>", "value": "<base64>"}}` per
//!    entry, tree by tree in [`Tree::ALL`]'s order, keys ascending. Values are the stored
//!    bytes: secrets stay sealed with the store's secret key, which the file does not hold.
//! 4. `{"trailer": {"meta": 3, "entries": 120, "sha256": "<hex>"}}`: the numbers of meta and
//!    entry lines, and the SHA-256 of every byte before the trailer line.
//!
//! Base64 is the standard alphabet with padding (RFC 4648 §4). A reader refuses a format
//! version other than [`FORMAT_VERSION`], unknown fields and kinds, a line after the trailer,
//! and a file whose digest or counts do not match its trailer.
//!
//! # Consistency
//!
//! The [`Store`] trait offers no snapshot read, so [`export`] reads the store revision, every
//! tree and the metadata, then the revision again, and starts over (up to [`EXPORT_ATTEMPTS`]
//! times) when a commit landed in between: the resources and the audit log are those of one
//! revision. Operational state written without a revision (portal sessions, usage and quota
//! counters, registration intents) and the metadata may be a moment apart from them. A sled
//! store is locked by a running control plane, so it is exported while the control plane is
//! stopped, and is then exactly consistent.
//!
//! Both sides hold the whole store in memory (about the size of the file).

use std::collections::HashSet;
use std::io::{self, BufRead};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::snapshot::VersionRecord;
use crate::secret::hex;
use crate::store::{Order, Store, StoreError, Tree, check_import_meta};

/// The format's name, in every header.
pub const FORMAT: &str = "portico-store-export";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// How many times [`export`] reads the store before it gives up on a store that keeps
/// changing.
pub const EXPORT_ATTEMPTS: usize = 5;

/// The first line of an export file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] of the portico that wrote it.
    pub format_version: u32,
    /// The version of the portico that wrote it (its `CARGO_PKG_VERSION`).
    pub portico_version: String,
    /// The store revision exported (the number of commits made).
    pub revision: u64,
    /// When the export was made, in seconds since the Unix epoch.
    pub created_at: u64,
    /// The last published snapshot's version and digest; `None` when none was published.
    pub snapshot: Option<VersionRecord>,
}

/// The last line: what came before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Trailer {
    meta: usize,
    entries: usize,
    /// Lower-case hex SHA-256 of every byte before the trailer line.
    sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetaLine {
    key: String,
    value: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryLine {
    tree: String,
    key: String,
    value: String,
}

/// One line of the file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    Header(Header),
    Meta(MetaLine),
    Entry(EntryLine),
    Trailer(Trailer),
}

/// What the header says about the format, read before anything else so that a file of
/// another format version is named as such.
#[derive(Debug, Deserialize)]
struct Probe {
    header: ProbeHeader,
}

#[derive(Debug, Deserialize)]
struct ProbeHeader {
    format: String,
    format_version: u32,
    #[serde(default)]
    portico_version: String,
}

/// A whole export file, checked: every line decoded, the digest and counts matched.
#[derive(Debug)]
pub struct Backup {
    /// Its header.
    pub header: Header,
    /// The metadata values, as exported.
    pub meta: Vec<(String, Vec<u8>)>,
    /// Every entry, as exported (no key twice in one tree).
    pub entries: Vec<(Tree, Vec<u8>, Vec<u8>)>,
    /// The file's size in bytes.
    pub bytes: usize,
}

/// An encoded export file and what it holds.
#[derive(Debug)]
pub struct Export {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// Its header.
    pub header: Header,
    /// How many metadata values it holds.
    pub meta: usize,
    /// How many entries it holds.
    pub entries: usize,
}

/// Why an export or an import failed. Messages never include stored values.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The store failed (or, on import, already holds data: [`StoreError::NotEmpty`]).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading or writing the file failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the file.
        what: String,
        /// The failure.
        source: io::Error,
    },
    /// Commits kept landing while the store was read.
    #[error(
        "the store changed while it was read, {0} times in a row; export again when it is \
         quieter (or with the control planes stopped)"
    )]
    Busy(usize),
    /// The file was written in another format version.
    #[error(
        "the file is format {FORMAT} version {found} (written by portico {portico_version}); \
         this portico reads version {FORMAT_VERSION}"
    )]
    UnsupportedVersion {
        /// The version in the file's header.
        found: u32,
        /// The portico that wrote it, as its header says.
        portico_version: String,
    },
    /// The file is not a whole, unchanged export file. Nothing was written.
    #[error("the file cannot be imported: {0}")]
    Invalid(String),
}

/// Reads the whole of `store` into an export file made at `created_at` (seconds since the
/// Unix epoch), at one revision (see the module's "Consistency").
///
/// # Errors
/// [`BackupError::Store`] when the store cannot be read, [`BackupError::Busy`] when a commit
/// landed during each of [`EXPORT_ATTEMPTS`] reads.
pub fn export(store: &dyn Store, created_at: u64) -> Result<Export, BackupError> {
    for _ in 0..EXPORT_ATTEMPTS {
        let revision = store.revision()?;
        let export = encode(store, revision, created_at)?;
        if store.revision()? == revision {
            return Ok(export);
        }
    }
    Err(BackupError::Busy(EXPORT_ATTEMPTS))
}

fn encode(store: &dyn Store, revision: u64, created_at: u64) -> Result<Export, BackupError> {
    let header = Header {
        format: FORMAT.to_owned(),
        format_version: FORMAT_VERSION,
        portico_version: env!("CARGO_PKG_VERSION").to_owned(),
        revision,
        created_at,
        snapshot: VersionRecord::read(store)?,
    };
    let mut bytes = Vec::new();
    push(&mut bytes, &Line::Header(header.clone()))?;
    let meta = store.meta_entries()?;
    for (key, value) in &meta {
        let line = MetaLine {
            key: key.clone(),
            value: STANDARD.encode(value),
        };
        push(&mut bytes, &Line::Meta(line))?;
    }
    let mut entries = 0;
    for tree in Tree::ALL {
        for entry in store.scan(tree, None, Order::Ascending) {
            let (key, value) = entry?;
            let line = EntryLine {
                tree: tree.name().to_owned(),
                key: STANDARD.encode(key),
                value: STANDARD.encode(value),
            };
            push(&mut bytes, &Line::Entry(line))?;
            entries += 1;
        }
    }
    let trailer = Trailer {
        meta: meta.len(),
        entries,
        sha256: hex(&Sha256::digest(&bytes)),
    };
    push(&mut bytes, &Line::Trailer(trailer))?;
    Ok(Export {
        bytes,
        header,
        meta: meta.len(),
        entries,
    })
}

/// Appends `line` and its `\n`.
fn push(bytes: &mut Vec<u8>, line: &Line) -> Result<(), BackupError> {
    serde_json::to_writer(&mut *bytes, line)
        .map_err(|error| BackupError::Invalid(format!("cannot encode a line: {error}")))?;
    bytes.push(b'\n');
    Ok(())
}

/// Reads and checks a whole export file from `input`, writing nothing anywhere: the header's
/// format and version first, then every line; the digest and the counts against the trailer;
/// no metadata key of the store's own ([`crate::store::RESERVED_META_KEYS`]) and no key twice
/// in a tree.
///
/// # Errors
/// [`BackupError::UnsupportedVersion`] for another format version; [`BackupError::Invalid`]
/// naming the first problem: a file that is empty, truncated (no trailer, or a last line
/// without `\n`), changed (the digest differs: checked before the lines' content, so that a
/// changed byte is reported as such), or holds a line of another shape (by its number);
/// [`BackupError::Io`] when `input` cannot be read.
pub fn read(input: &mut dyn BufRead) -> Result<Backup, BackupError> {
    let mut reader = Reader::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = input
            .read_until(b'\n', &mut line)
            .map_err(|source| BackupError::Io {
                what: "reading the export file".to_owned(),
                source,
            })?;
        if read == 0 {
            break;
        }
        reader.line(&line)?;
    }
    reader.finish()
}

/// The state of [`read`]: what was decoded so far, and the first malformed line (reported
/// only once the digest is known to match, so that a changed byte is reported as a change).
#[derive(Debug, Default)]
struct Reader {
    number: usize,
    bytes: usize,
    digest: Sha256,
    header: Option<Header>,
    meta: Vec<(String, Vec<u8>)>,
    entries: Vec<(Tree, Vec<u8>, Vec<u8>)>,
    trailer: Option<Trailer>,
    first_error: Option<String>,
}

impl Reader {
    fn line(&mut self, line: &[u8]) -> Result<(), BackupError> {
        self.number += 1;
        self.bytes += line.len();
        if self.number == 1 {
            self.digest.update(line);
            return self.header(line);
        }
        let number = self.number;
        let Some(text) = line.strip_suffix(b"\n") else {
            self.note(format!("line {number} ends without a line feed"));
            return Ok(());
        };
        if self.trailer.is_some() {
            self.note(format!("line {number} follows the trailer"));
            return Ok(());
        }
        match serde_json::from_slice::<Line>(text) {
            Ok(Line::Trailer(trailer)) => self.trailer = Some(trailer),
            Ok(parsed) => {
                self.digest.update(line);
                if let Err(reason) = self.take(parsed) {
                    self.note(format!("line {number}: {reason}"));
                }
            }
            Err(error) => {
                self.digest.update(line);
                self.note(format!(
                    "line {number} is not a line of this format: {error}"
                ));
            }
        }
        Ok(())
    }

    /// Checks the header's format and version, then reads it whole.
    fn header(&mut self, line: &[u8]) -> Result<(), BackupError> {
        let probe: Probe = serde_json::from_slice(line).map_err(|_| {
            BackupError::Invalid(format!(
                "line 1 is not the header of a {FORMAT} file (was it made by `portico store \
                 export`?)"
            ))
        })?;
        if probe.header.format != FORMAT {
            return Err(BackupError::Invalid(format!(
                "the file is format `{}`, not {FORMAT}",
                probe.header.format
            )));
        }
        if probe.header.format_version != FORMAT_VERSION {
            return Err(BackupError::UnsupportedVersion {
                found: probe.header.format_version,
                portico_version: probe.header.portico_version,
            });
        }
        match serde_json::from_slice::<Line>(line) {
            Ok(Line::Header(header)) => self.header = Some(header),
            Ok(_) | Err(_) => self.note("line 1 is not a well-formed header".to_owned()),
        }
        Ok(())
    }

    fn take(&mut self, line: Line) -> Result<(), String> {
        match line {
            Line::Header(_) => Err("a second header".to_owned()),
            Line::Meta(meta) => {
                let value = base64(&meta.value, "value")?;
                self.meta.push((meta.key, value));
                Ok(())
            }
            Line::Entry(entry) => {
                let tree = Tree::from_name(&entry.tree)
                    .ok_or_else(|| format!("unknown tree `{}`", entry.tree))?;
                let key = base64(&entry.key, "key")?;
                let value = base64(&entry.value, "value")?;
                self.entries.push((tree, key, value));
                Ok(())
            }
            Line::Trailer(_) => Err("a second trailer".to_owned()),
        }
    }

    fn note(&mut self, reason: String) {
        self.first_error.get_or_insert(reason);
    }

    fn finish(self) -> Result<Backup, BackupError> {
        let invalid = |reason: &str| Err(BackupError::Invalid(reason.to_owned()));
        if self.number == 0 {
            return invalid("the file is empty");
        }
        let Some(trailer) = self.trailer else {
            return invalid("the trailer line is missing: the file is truncated");
        };
        if hex(&self.digest.finalize()) != trailer.sha256 {
            return invalid(
                "its SHA-256 does not match the one in its trailer: the file was changed or \
                 damaged after it was written",
            );
        }
        if let Some(reason) = self.first_error {
            return Err(BackupError::Invalid(reason));
        }
        let Some(header) = self.header else {
            return invalid("line 1 is not a well-formed header");
        };
        if trailer.meta != self.meta.len() || trailer.entries != self.entries.len() {
            return Err(BackupError::Invalid(format!(
                "the trailer counts {} metadata values and {} entries, the file holds {} and {}",
                trailer.meta,
                trailer.entries,
                self.meta.len(),
                self.entries.len()
            )));
        }
        check_import_meta(&self.meta).map_err(|error| BackupError::Invalid(error.to_string()))?;
        let mut seen = HashSet::with_capacity(self.entries.len());
        if let Some((tree, _, _)) = self
            .entries
            .iter()
            .find(|(tree, key, _)| !seen.insert((*tree, key.as_slice())))
        {
            return Err(BackupError::Invalid(format!(
                "it holds a key twice in the tree `{}`",
                tree.name()
            )));
        }
        Ok(Backup {
            header,
            meta: self.meta,
            entries: self.entries,
            bytes: self.bytes,
        })
    }
}

fn base64(text: &str, what: &str) -> Result<Vec<u8>, String> {
    STANDARD
        .decode(text)
        .map_err(|error| format!("the {what} is not base64: {error}"))
}

#[cfg(test)]
mod tests;
