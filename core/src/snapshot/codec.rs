//! The two encodings of a [`Snapshot`]: compact binary (postcard behind a magic prefix), which
//! filters ask for, and JSON, which people read and static configurations carry.

use super::{Snapshot, SnapshotError};

/// The media type of the binary snapshot encoding.
pub const BINARY_MEDIA_TYPE: &str = "application/vnd.portico.snapshot.v7+postcard";
/// The first bytes of a binary snapshot: a magic number and the format version, so that a
/// filter can tell the encodings apart and never misreads another format.
const BINARY_MAGIC: &[u8; 4] = b"PSN\x07";

// === impl Snapshot ===

impl Snapshot {
    /// The compact binary encoding (postcard, behind a magic prefix).
    ///
    /// # Errors
    /// A [`SnapshotError`] at `.` when postcard cannot encode a value.
    pub fn to_binary(&self) -> Result<Vec<u8>, SnapshotError> {
        let out = BINARY_MAGIC.to_vec();
        postcard::to_extend(self, out)
            .map_err(|err| SnapshotError::at(".", format!("cannot encode: {err}")))
    }

    /// Decodes either encoding: binary when the magic prefix is there, JSON otherwise.
    ///
    /// # Errors
    /// A [`SnapshotError`] naming the JSON path of the first bad field, or `.` for binary
    /// input that does not decode or has trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        match bytes.strip_prefix(BINARY_MAGIC) {
            Some(payload) => {
                let (snapshot, rest) =
                    postcard::take_from_bytes::<Snapshot>(payload).map_err(|err| {
                        SnapshotError::at(".", format!("not a binary snapshot: {err}"))
                    })?;
                if !rest.is_empty() {
                    return Err(SnapshotError::at(
                        ".",
                        format!("{} bytes after the snapshot", rest.len()),
                    ));
                }
                Ok(snapshot)
            }
            None => {
                let mut deserializer = serde_json::Deserializer::from_slice(bytes);
                serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
                    let message = err.inner().to_string();
                    let message = message
                        .split(" at line ")
                        .next()
                        .unwrap_or(&message)
                        .to_owned();
                    SnapshotError::at(crate::config::error_path(err.path()), message)
                })
            }
        }
    }
}
