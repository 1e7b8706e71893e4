//! The documents' store conventions: one audited transaction per change, ETags, no-op
//! rewrites, removal with the catalogue entry, and no effect on the data-plane snapshot.

use super::*;
use crate::service::audit::AuditFilter;
use crate::service::test_support::{ops, seed_orders, state};
use crate::service::{PageRequest, snapshot};

const DOCUMENT: &str = "openapi: 3.1.0\ninfo: {title: Orders, version: '1'}\npaths:\n  /orders:\n    get:\n      responses: {'200': {description: ok}}\n";

async fn seed(state: &AppState) {
    seed_orders(state, "https://idp.example.com", "").await;
}

#[tokio::test]
async fn a_document_is_audited_but_never_reaches_the_snapshot() {
    let (state, _dir) = state();
    seed(&state).await;
    let before = snapshot::build(&state).unwrap();
    let (summary, created) = state
        .api_docs()
        .put(
            &ops(),
            "orders",
            &Precondition::Missing,
            DocumentFormat::Yaml,
            DOCUMENT.as_bytes(),
        )
        .await
        .unwrap();
    assert!(created);
    assert_eq!(summary.value.title, "Orders");
    assert_eq!(summary.value.operations, 1);
    assert_eq!(summary.value.bytes, DOCUMENT.len());
    let after = snapshot::build(&state).unwrap();
    assert_eq!(before, after, "the snapshot's content does not change");

    let log = state
        .audit()
        .list(
            &PageRequest::new(Some(1), None).unwrap(),
            &AuditFilter::default(),
        )
        .unwrap();
    let entry = &log.items[0];
    assert_eq!(entry.revision, summary.revision);
    assert_eq!(
        entry.resource,
        ResourceRef::new(ResourceKind::CatalogueOpenapi, "orders")
    );
    assert_eq!(entry.action, AuditAction::Create);
    assert_eq!(
        entry.after.as_ref().unwrap()["sha256"],
        summary.value.sha256.as_str()
    );
    assert!(
        entry.after.as_ref().unwrap().get("text").is_none(),
        "the audit keeps the summary only"
    );

    let stored = state.api_docs().get("orders").unwrap();
    assert_eq!(stored.value.text, DOCUMENT);
    assert_eq!(stored.revision, summary.revision);
}

#[tokio::test]
async fn replacing_needs_the_etag_and_the_same_document_is_a_no_op() {
    let (state, _dir) = state();
    seed(&state).await;
    let docs = state.api_docs();
    let put = |precondition: Precondition, text: &'static str| {
        let state = state.clone();
        async move {
            state
                .api_docs()
                .put(
                    &ops(),
                    "orders",
                    &precondition,
                    DocumentFormat::Yaml,
                    text.as_bytes(),
                )
                .await
        }
    };
    assert!(matches!(
        put(Precondition::Any, DOCUMENT).await,
        Err(ApiError::PreconditionFailed { current: None })
    ));
    let (first, _) = put(Precondition::Missing, DOCUMENT).await.unwrap();
    assert!(matches!(
        put(Precondition::Missing, DOCUMENT).await,
        Err(ApiError::PreconditionRequired)
    ));
    let revision = state.revision().unwrap();
    let (same, created) = put(Precondition::Any, DOCUMENT).await.unwrap();
    assert!(!created);
    assert_eq!(same.revision, first.revision);
    assert_eq!(state.revision().unwrap(), revision, "no new revision");
    let changed = "openapi: 3.0.3\ninfo: {title: Orders, version: '2'}\npaths: {}\n";
    let (second, created) = put(Precondition::Etags(vec![first.etag()]), changed)
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(second.value.version, "2");
    assert!(matches!(
        docs.delete(&ops(), "orders", &Precondition::Etags(vec![first.etag()]))
            .await,
        Err(ApiError::PreconditionFailed { .. })
    ));
    docs.delete(&ops(), "orders", &Precondition::Any)
        .await
        .unwrap();
    assert!(matches!(docs.get("orders"), Err(ApiError::NotFound { .. })));
}

#[tokio::test]
async fn deleting_the_entry_deletes_its_document() {
    let (state, _dir) = state();
    seed(&state).await;
    state
        .api_docs()
        .put(
            &ops(),
            "orders",
            &Precondition::Missing,
            DocumentFormat::Yaml,
            DOCUMENT.as_bytes(),
        )
        .await
        .unwrap();
    state
        .catalogue()
        .delete(&ops(), "orders", &Precondition::Any)
        .await
        .unwrap();
    assert_eq!(state.api_docs().find("orders").unwrap(), None);
}

#[tokio::test]
async fn an_invalid_or_oversized_document_or_a_missing_entry_stores_nothing() {
    let (state, _dir) = state();
    seed(&state).await;
    let revision = state.revision().unwrap();
    let docs = state.api_docs();
    let invalid = docs
        .put(
            &ops(),
            "orders",
            &Precondition::Missing,
            DocumentFormat::Json,
            b"{\"openapi\": ",
        )
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), "invalid_openapi");
    let huge = vec![b' '; state.settings().body_limit + 1];
    let too_large = docs
        .put(
            &ops(),
            "orders",
            &Precondition::Missing,
            DocumentFormat::Json,
            &huge,
        )
        .await
        .unwrap_err();
    assert_eq!(too_large.code(), "payload_too_large");
    let missing = docs
        .put(
            &ops(),
            "nope",
            &Precondition::Missing,
            DocumentFormat::Yaml,
            DOCUMENT.as_bytes(),
        )
        .await
        .unwrap_err();
    assert_eq!(missing.code(), "not_found");
    assert_eq!(state.revision().unwrap(), revision);
}
