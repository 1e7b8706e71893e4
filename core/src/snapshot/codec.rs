//! The two encodings of a [`Snapshot`]: compact binary (postcard behind a magic prefix), which
//! filters ask for, and JSON, which people read and static configurations carry; and the
//! content digest that both the control plane and the filters compute from the binary
//! encoding.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{
    ApiSpec, ClientBinding, ExhaustedQuota, GlobalSpec, IssuerSpec, PolicySpec, Snapshot,
    SnapshotError,
};

/// The media type of the binary snapshot encoding.
pub const BINARY_MEDIA_TYPE: &str = "application/vnd.portico.snapshot.v7+postcard";
/// The first bytes of a binary snapshot: a magic number and the format version, so that a
/// filter can tell the encodings apart and never misreads another format.
pub(super) const BINARY_MAGIC: &[u8; 4] = b"PSN\x07";

/// The SHA-256 digest of a snapshot's content, everything but its version (see
/// [`Snapshot::digest`]): 32 bytes, shown as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SnapshotDigest(pub [u8; 32]);

/// A snapshot's sections without its version, serialised exactly as they follow the version in
/// the binary encoding (postcard writes a slice as it writes a `Vec`).
#[derive(Serialize)]
struct Content<'a> {
    apis: &'a [ApiSpec],
    issuers: &'a [IssuerSpec],
    policies: &'a [PolicySpec],
    clients: &'a [ClientBinding],
    revoked_clients: &'a [String],
    exhausted_quotas: &'a [ExhaustedQuota],
    global: &'a GlobalSpec,
}

/// A postcard output that feeds a SHA-256 hasher instead of a buffer, so that a snapshot of
/// many megabytes is digested without being encoded in memory first.
struct Hashing(Sha256);

impl postcard::ser_flavors::Flavor for Hashing {
    type Output = Sha256;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.update(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.update([data]);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Sha256> {
        Ok(self.0)
    }
}

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

    /// The digest of the snapshot's content: SHA-256 over the binary encoding with the version
    /// left out, that is the 4-byte magic (`PSN` and the format version) followed by every byte
    /// after the version's varint. Two snapshots with the same sections have the same digest
    /// whatever their versions; the control plane keeps it to tell whether a build changed
    /// anything, and a filter checks the snapshot a delta produced against the digest the delta
    /// announces ([`super::SnapshotDelta`]).
    ///
    /// # Errors
    /// A [`SnapshotError`] at `.` when postcard cannot encode a value.
    pub fn digest(&self) -> Result<SnapshotDigest, SnapshotError> {
        let content = Content {
            apis: &self.apis,
            issuers: &self.issuers,
            policies: &self.policies,
            clients: &self.clients,
            revoked_clients: &self.revoked_clients,
            exhausted_quotas: &self.exhausted_quotas,
            global: &self.global,
        };
        let mut hasher = Sha256::new();
        hasher.update(BINARY_MAGIC);
        let hasher = postcard::serialize_with_flavor(&content, Hashing(hasher))
            .map_err(|err| SnapshotError::at(".", format!("cannot encode: {err}")))?;
        Ok(SnapshotDigest(hasher.finalize().into()))
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

// === impl SnapshotDigest ===

impl SnapshotDigest {
    /// The digest of the snapshot whose binary encoding is `bytes` ([`Snapshot::to_binary`]),
    /// hashed from the bytes as they are: the same as [`Snapshot::digest`] of the decoded
    /// snapshot, without decoding or encoding anything.
    ///
    /// # Errors
    /// A [`SnapshotError`] at `.` when `bytes` do not start with the binary magic and a
    /// version.
    pub fn of_binary(bytes: &[u8]) -> Result<SnapshotDigest, SnapshotError> {
        let not_binary = || SnapshotError::at(".", "not a binary snapshot");
        let payload = bytes.strip_prefix(BINARY_MAGIC).ok_or_else(not_binary)?;
        // The version is a varint of at most 10 bytes: every byte but the last has its high
        // bit set.
        let version = payload
            .iter()
            .take(10)
            .position(|byte| byte & 0x80 == 0)
            .ok_or_else(not_binary)?;
        let mut hasher = Sha256::new();
        hasher.update(BINARY_MAGIC);
        hasher.update(&payload[version + 1..]);
        Ok(SnapshotDigest(hasher.finalize().into()))
    }
}

impl std::fmt::Display for SnapshotDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl std::fmt::Debug for SnapshotDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SnapshotDigest({self})")
    }
}
