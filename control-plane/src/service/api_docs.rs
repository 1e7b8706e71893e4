//! The OpenAPI documents of catalogue entries: what developers read on an API's page in the
//! portal.
//!
//! An operator attaches one document per entry (OpenAPI 3.0.x or 3.1.x, JSON or YAML),
//! validated on upload by [`document::read`]: a document that does not parse or is not valid
//! OpenAPI is refused with 422 `invalid_openapi`, saying where. It is kept as uploaded (bytes
//! and format), with a [`DocumentSummary`], in [`Tree::CatalogueOpenapi`].
//!
//! A document is for people only: it is **not** part of the data-plane snapshot (its tree does
//! not feed the snapshot, so an upload never changes what a filter sees or the snapshot
//! version). Its writes still follow the store's rules: one transaction with its audit entry
//! (the summary and the document's SHA-256 as `before`/`after`, never the whole document),
//! ETags with `If-Match` as for a catalogue entry's DCR override (creating needs none,
//! replacing and deleting need one), and a write of the same document is a no-op. Deleting the
//! catalogue entry deletes its document in the same transaction.

pub mod document;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::audit::{AuditAction, AuditChange};
use super::catalogue::CatalogueEntry;
use super::{
    Actor, AppState, Change, Precondition, ResourceKind, ResourceRef, Versioned, to_value,
};
use crate::error::ApiError;
use crate::store::{Tree, Write};

use self::document::{DocumentError, DocumentFormat};

/// What an attached document is about: the admin API's answer to an upload, and what the
/// audit log records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DocumentSummary {
    /// The catalogue entry it documents.
    pub catalogue_entry: String,
    /// How it was uploaded and is served: `application/json` or `application/yaml`.
    pub media_type: DocumentFormat,
    /// Its `openapi` version, e.g. `3.1.0`.
    pub openapi: String,
    /// Its `info.title`.
    pub title: String,
    /// Its `info.version`.
    pub version: String,
    /// How many operations it describes.
    pub operations: usize,
    /// Its size in bytes.
    pub bytes: usize,
    /// The SHA-256 of its bytes, hex.
    pub sha256: String,
}

/// A document as stored: its summary and its text as uploaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDocument {
    /// What it is about.
    pub summary: DocumentSummary,
    /// The document, byte for byte as uploaded (it was checked to be UTF-8).
    pub text: String,
}

impl From<DocumentError> for ApiError {
    fn from(error: DocumentError) -> Self {
        ApiError::InvalidOpenApi {
            field: error.path,
            message: error.message,
        }
    }
}

/// The OpenAPI documents of catalogue entries.
#[derive(Debug, Clone, Copy)]
pub struct ApiDocs<'a> {
    state: &'a AppState,
}

impl<'a> ApiDocs<'a> {
    pub(crate) fn new(state: &'a AppState) -> Self {
        ApiDocs { state }
    }

    /// An entry's document. 404 `not_found` when the entry or its document does not exist.
    pub fn get(&self, entry: &str) -> Result<Versioned<StoredDocument>, ApiError> {
        self.state.fetch::<CatalogueEntry>(entry)?;
        self.find(entry)?.ok_or_else(|| ApiError::NotFound {
            kind: ResourceKind::CatalogueOpenapi.label(),
            id: entry.to_owned(),
        })
    }

    /// An entry's document, if it has one (no check that the entry exists).
    pub fn find(&self, entry: &str) -> Result<Option<Versioned<StoredDocument>>, ApiError> {
        self.state
            .load_from(Tree::CatalogueOpenapi, entry.as_bytes())
    }

    /// Attaches a document to an entry, or replaces its document. The bytes are validated
    /// first, like any request body (422 `invalid_openapi`; 413 `payload_too_large` beyond
    /// the body limit), then the entry is looked up (404). Creating
    /// needs no `If-Match` (one sent for a missing document is 412); replacing needs it (428,
    /// 412). 404 when the entry does not exist. Returns the summary and whether the document
    /// was created; the same document again answers the current one without a change.
    pub async fn put(
        &self,
        actor: &Actor,
        entry: &str,
        precondition: &Precondition,
        format: DocumentFormat,
        bytes: &[u8],
    ) -> Result<(Versioned<DocumentSummary>, bool), ApiError> {
        let limit = self.state.settings().body_limit;
        if bytes.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        let read = document::read(bytes, format)?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|error| ApiError::Internal(anyhow::anyhow!("checked as UTF-8: {error}")))?;
        let summary = DocumentSummary {
            catalogue_entry: entry.to_owned(),
            media_type: format,
            openapi: read.summary.openapi,
            title: read.summary.title,
            version: read.summary.version,
            operations: read.summary.operations,
            bytes: bytes.len(),
            sha256: crate::secret::hex(&Sha256::digest(bytes)),
        };
        let writer = self.state.writer().await?;
        self.state.fetch::<CatalogueEntry>(entry)?;
        let current = self.find(entry)?;
        match &current {
            Some(current) => precondition.check(current.revision, true)?,
            None if *precondition == Precondition::Missing => {}
            None => return Err(ApiError::PreconditionFailed { current: None }),
        }
        if let Some(current) = &current
            && current.value.summary == summary
        {
            return Ok((current.clone().map(|stored| stored.summary), false));
        }
        let revision = writer.revision();
        let stored = StoredDocument {
            summary: summary.clone(),
            text,
        };
        let bytes = serde_json::to_vec(&Versioned {
            revision,
            value: &stored,
        })
        .map_err(|error| ApiError::Internal(error.into()))?;
        let created = current.is_none();
        let change = Change {
            writes: vec![Write::put(Tree::CatalogueOpenapi, entry.as_bytes(), bytes)],
            action: if created {
                AuditAction::Create
            } else {
                AuditAction::Update
            },
            resource: ResourceRef::new(ResourceKind::CatalogueOpenapi, entry),
            before: current.map(|current| to_value(&current.value.summary)),
            after: Some(to_value(&summary)),
            also: Vec::new(),
        };
        writer.commit(actor, change).await?;
        Ok((
            Versioned {
                revision,
                value: summary,
            },
            created,
        ))
    }

    /// Removes an entry's document (`If-Match` required). 404 when the entry or its document
    /// does not exist.
    pub async fn delete(
        &self,
        actor: &Actor,
        entry: &str,
        precondition: &Precondition,
    ) -> Result<(), ApiError> {
        let writer = self.state.writer().await?;
        let current = self.get(entry)?;
        precondition.check(current.revision, true)?;
        let (write, removal) = document_removal(entry, &current.value);
        let change = Change {
            writes: vec![write],
            action: removal.action,
            resource: removal.resource,
            before: removal.before,
            after: None,
            also: Vec::new(),
        };
        writer.commit(actor, change).await?;
        Ok(())
    }

    /// The removal of a catalogue entry's document and its audit record, when it has one:
    /// what deleting the entry also does. Read under the caller's write lock.
    pub(crate) fn cascade_removal(
        &self,
        entry: &str,
    ) -> Result<Option<(Write, AuditChange)>, ApiError> {
        Ok(self
            .find(entry)?
            .map(|current| document_removal(entry, &current.value)))
    }
}

/// Removing `entry`'s document `stored`: the write, and its audit record (the document's
/// summary before).
fn document_removal(entry: &str, stored: &StoredDocument) -> (Write, AuditChange) {
    (
        Write::remove(Tree::CatalogueOpenapi, entry.as_bytes()),
        AuditChange {
            action: AuditAction::Delete,
            resource: ResourceRef::new(ResourceKind::CatalogueOpenapi, entry),
            before: Some(to_value(&stored.summary)),
            after: None,
        },
    )
}

#[cfg(test)]
mod tests;
