//! The `portico store …` subcommands: `export`, `import` and `confirm-restore`, on the store
//! that the configuration names (the same `store`, `data_dir` and `store_pool_size` settings
//! as serving). Each answers a one-line summary for standard error, or a [`RunError`] whose
//! message is one line too; neither ever holds a stored value. `docs/backup.md` is the
//! operator's guide; it follows.
//!
#![doc = include_str!("../../docs/backup.md")]

use std::fs::File;
use std::io::{BufReader, Write as _};
use std::path::Path;

use crate::config::{Config, StoreCommand, StoreConfig};
use crate::service::backup::{self, BackupError};
use crate::service::oauth_clients::unix_seconds;
use crate::service::{Clock, SystemClock, restore};
use crate::{DATABASE_DIR, RunError, create_private_dir, open_store};

/// Runs `command` on the store configured in `config`; answers what it did, in one line.
///
/// # Errors
/// [`RunError::NoStore`] when an export or confirmation names a sled store that does not
/// exist; [`RunError::Backup`] when the export file cannot be written, read or imported
/// (nothing is imported then; [`crate::store::StoreError::NotEmpty`] for a store that holds
/// data); [`RunError::Store`] when the store cannot be opened or fails.
pub async fn run(config: &Config, command: &StoreCommand) -> Result<String, RunError> {
    let data_dir = &std::path::absolute(&config.data_dir).map_err(|error| RunError::DataDir {
        context: format!("the data directory {}", config.data_dir.display()),
        reason: error.to_string(),
    })?;
    let now = unix_seconds(SystemClock.now());
    match command {
        StoreCommand::Export { output } => {
            require_sled_store(&config.store, data_dir)?;
            let (store, database) = open_store(&config.store, data_dir).await?;
            let export = backup::export(store.as_ref(), now)?;
            let destination = write_export(output.as_deref(), &export.bytes)?;
            Ok(format!(
                "exported revision {} of {database} to {destination}: {} metadata values, {} \
                 entries, {} bytes (secrets stay sealed: keep the secret key with the file)",
                export.header.revision,
                export.meta,
                export.entries,
                export.bytes.len()
            ))
        }
        StoreCommand::Import { input } => {
            // The whole file is checked before the store is even opened.
            let backup = read_export(input.as_deref())?;
            let (revision, meta, entries, bytes) = (
                backup.header.revision,
                backup.meta.len(),
                backup.entries.len(),
                backup.bytes,
            );
            if config.store == StoreConfig::Sled {
                create_private_dir(data_dir)?;
            }
            let (store, database) = open_store(&config.store, data_dir).await?;
            let mark = restore::import(store.as_ref(), backup, now)?;
            Ok(format!(
                "imported revision {revision} into {database}: {meta} metadata values, \
                 {entries} entries, {bytes} bytes; snapshot versions continue above {}; portico \
                 serves this store only after `portico store confirm-restore` (see \
                 docs/backup.md)",
                mark.version_floor
            ))
        }
        StoreCommand::ConfirmRestore => {
            require_sled_store(&config.store, data_dir)?;
            let (store, database) = open_store(&config.store, data_dir).await?;
            Ok(match restore::confirm(store.as_ref(), now)? {
                Some(mark) => format!(
                    "confirmed the restore of {database} (export of revision {}); portico \
                     serves it now: re-apply the changes made after the export",
                    mark.backup_revision
                ),
                None => format!("{database} has no restore waiting for confirmation"),
            })
        }
    }
}

/// [`RunError::NoStore`] when the configured store is a sled database that does not exist
/// (opening it would create an empty one).
fn require_sled_store(store: &StoreConfig, data_dir: &Path) -> Result<(), RunError> {
    let path = data_dir.join(DATABASE_DIR);
    if *store == StoreConfig::Sled && !path.is_dir() {
        return Err(RunError::NoStore(path));
    }
    Ok(())
}

/// Writes `bytes` to `output` (created with mode 0600, replaced if present, and synced) or to
/// standard output; answers where, for the summary.
fn write_export(output: Option<&Path>, bytes: &[u8]) -> Result<String, BackupError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let Some(path) = output else {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(bytes)
            .and_then(|()| stdout.flush())
            .map_err(|source| io_error("writing the export to standard output", source))?;
        return Ok("standard output".to_owned());
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| io_error(&format!("creating {}", path.display()), source))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|source| io_error(&format!("writing {}", path.display()), source))?;
    Ok(path.display().to_string())
}

/// Reads and checks the export file at `input`, or on standard input.
fn read_export(input: Option<&Path>) -> Result<backup::Backup, BackupError> {
    match input {
        Some(path) => {
            let file = File::open(path)
                .map_err(|source| io_error(&format!("opening {}", path.display()), source))?;
            backup::read(&mut BufReader::new(file))
        }
        None => backup::read(&mut std::io::stdin().lock()),
    }
}

fn io_error(what: &str, source: std::io::Error) -> BackupError {
    BackupError::Io {
        what: what.to_owned(),
        source,
    }
}
