use std::sync::Arc;

use super::*;
use crate::decision::Grant;
use crate::denial::Denial;

/// Applies the tag regexes the way Envoy does: each regex is matched against the name, its
/// first group is cut out and its second group is the tag's value.
fn extract(name: &str) -> (String, Vec<(&'static str, String)>) {
    let mut remaining = name.to_owned();
    let mut tags = Vec::new();
    for (tag, pattern) in TAG_REGEXES {
        let regex = regex::Regex::new(pattern).unwrap();
        let Some(captures) = regex.captures(&remaining) else {
            continue;
        };
        let cut = captures.get(1).unwrap().range();
        tags.push((tag, captures.get(2).unwrap().as_str().to_owned()));
        remaining.replace_range(cut, "");
    }
    (remaining, tags)
}

/// Every code in the tables of `docs/errors.md`.
fn documented_codes() -> Vec<&'static str> {
    include_str!("../../../docs/errors.md")
        .lines()
        .filter_map(|line| line.strip_prefix("| `")?.split('`').next())
        .collect()
}

#[test]
fn every_documented_reason_becomes_api_and_reason_labels() {
    let codes = documented_codes();
    assert!(codes.len() > 20, "{codes:?}");
    for reason in codes.into_iter().chain([ALLOWED, PASSED_THROUGH]) {
        assert_eq!(label_value(reason), reason);
        let name = format!("wasmcustom.{}", decision_metric("orders-v2", reason));
        let (remaining, tags) = extract(&name);
        assert_eq!(remaining, "wasmcustom.portico.filter.decisions", "{name}");
        assert_eq!(
            tags,
            [
                ("api", "orders-v2".to_owned()),
                ("reason", reason.to_owned())
            ]
        );
    }
}

#[test]
fn verifications_become_alg_and_path_labels() {
    for alg in Algorithm::ALL {
        for path in CryptoPath::ALL {
            let name = format!("wasmcustom.{}", verification_metric(alg, path));
            let (remaining, tags) = extract(&name);
            assert_eq!(remaining, "wasmcustom.portico.filter.verifications");
            assert_eq!(
                tags,
                [
                    ("alg", alg.name().to_owned()),
                    ("path", path.label().to_owned())
                ]
            );
        }
    }
}

#[test]
fn sync_steps_become_outcome_labels() {
    for outcome in SyncOutcome::ALL {
        let name = format!("wasmcustom.{}", sync_metric(outcome));
        let (remaining, tags) = extract(&name);
        assert_eq!(remaining, "wasmcustom.portico.filter.syncs");
        assert_eq!(tags, [("outcome", outcome.label().to_owned())]);
    }
    let failed = SyncEvent::PollFailed {
        reason: "HTTP 503".to_owned(),
        failures: 1,
    };
    assert_eq!(SyncOutcome::of(&failed), Some(SyncOutcome::Failed));
    let rejected = SyncEvent::AnswerRejected {
        error: "not a snapshot".to_owned(),
    };
    assert_eq!(SyncOutcome::of(&rejected), Some(SyncOutcome::Rejected));
    let refused = SyncEvent::DeltaRefused {
        error: "another base".to_owned(),
    };
    assert_eq!(SyncOutcome::of(&refused), Some(SyncOutcome::DeltaRefused));
    assert_eq!(SyncOutcome::of(&SyncEvent::AnswerDropped), None);
    for (index, outcome) in SyncOutcome::ALL.into_iter().enumerate() {
        assert_eq!(outcome.index(), index, "{outcome:?}");
    }
}

#[test]
fn plain_metrics_carry_no_tags() {
    for name in [TOKEN_CACHE_HITS, SNAPSHOT_VERSION, UNKNOWN_KID_REPORTS] {
        let full = format!("wasmcustom.{name}");
        assert_eq!(extract(&full), (full.clone(), Vec::new()));
    }
}

#[test]
fn label_values_keep_one_name_segment() {
    assert_eq!(label_value("orders_v2-beta"), "orders_v2-beta");
    assert_eq!(label_value("a.b c/é"), "a_b_c__");
    assert_eq!(label_value(""), "_");
}

fn allow(api: usize) -> Decision {
    Decision::Allow(Grant {
        api,
        identity: Arc::from("client"),
        policies: Vec::new(),
        rate_limit: None,
        metadata_headers: Vec::new(),
    })
}

#[test]
fn decisions_name_their_reason_and_api() {
    assert_eq!(reason(&allow(2)), ALLOWED);
    assert_eq!(api_index(&allow(2)), Some(2));
    assert_eq!(reason(&Decision::PassThrough), PASSED_THROUGH);
    assert_eq!(api_index(&Decision::PassThrough), None);
    assert_eq!(reason(&Decision::Preflight { api: 1 }), PASSED_THROUGH);
    let deny = Decision::Deny {
        api: Some(0),
        denial: Denial::MissingToken,
    };
    assert_eq!(reason(&deny), "missing_token");
    assert_eq!(api_index(&deny), Some(0));
}

#[test]
fn a_series_is_defined_once_then_found_by_index_without_reading_the_id() {
    let mut series = DecisionSeries::default();
    let id = || Some("orders".to_owned());
    assert_eq!(
        series.series(Some(0), id, ALLOWED),
        Series::New {
            slot: 0,
            name: "portico.filter.decisions.api.orders.reason.allowed".to_owned()
        }
    );
    let unread = || -> Option<String> { unreachable!("the id is not read again") };
    assert_eq!(series.series(Some(0), unread, ALLOWED), Series::Known(0));
    assert_eq!(
        series.series(Some(0), id, "rate_limited"),
        Series::New {
            slot: 1,
            name: "portico.filter.decisions.api.orders.reason.rate_limited".to_owned()
        }
    );
    assert_eq!(
        series.series(Some(0), unread, "rate_limited"),
        Series::Known(1)
    );
    assert_eq!(
        series.series(None, unread, PASSED_THROUGH),
        Series::New {
            slot: 2,
            name: "portico.filter.decisions.api._none.reason.passed_through".to_owned()
        }
    );
    assert_eq!(
        series.series(None, unread, PASSED_THROUGH),
        Series::Known(2)
    );
}

#[test]
fn after_a_snapshot_change_an_api_keeps_its_slot_under_a_new_index() {
    let mut series = DecisionSeries::default();
    series.series(Some(0), || Some("orders".to_owned()), ALLOWED);
    series.series(Some(1), || Some("billing".to_owned()), ALLOWED);
    series.snapshot_changed();
    // `billing` moved to index 0, `orders` to index 3.
    assert_eq!(
        series.series(Some(0), || Some("billing".to_owned()), ALLOWED),
        Series::Known(1)
    );
    assert_eq!(
        series.series(Some(3), || Some("orders".to_owned()), ALLOWED),
        Series::Known(0)
    );
}

#[test]
fn api_labels_are_capped_and_later_apis_share_the_other_label() {
    let mut series = DecisionSeries::default();
    for index in 0..MAX_API_SERIES {
        let id = format!("api-{index}");
        assert!(matches!(
            series.series(Some(index), || Some(id), ALLOWED),
            Series::New { .. }
        ));
    }
    let beyond = series.series(Some(MAX_API_SERIES), || Some("late".to_owned()), ALLOWED);
    let Series::New { name, .. } = beyond else {
        panic!("{beyond:?}")
    };
    assert_eq!(name, "portico.filter.decisions.api._other.reason.allowed");
    // A second late API shares the series.
    assert!(matches!(
        series.series(
            Some(MAX_API_SERIES + 1),
            || Some("later".to_owned()),
            ALLOWED
        ),
        Series::Known(_)
    ));
    // An API that already has its label keeps it.
    series.snapshot_changed();
    assert_eq!(
        series.series(Some(0), || Some("api-5".to_owned()), ALLOWED),
        Series::Known(5)
    );
}
