//! Usage reports counted once, quotas spent across the fleet, usage per client.

use std::collections::BTreeMap;

use portico_core::usage::{ClientUsage, QuotaUsage};
use serde_json::json;

use super::*;
use crate::idp::HttpTimeouts;
use crate::service::Precondition;
use crate::service::test_support::{FakeClock, flaky_state, ops, restarted, seed_orders};

async fn state() -> (AppState, std::sync::Arc<FakeClock>, tempfile::TempDir) {
    let (state, _store, clock, dir) = flaky_state("http://portico.test", HttpTimeouts::default());
    seed_orders(&state, "https://idp.example.com", "").await;
    // `gold` gets a quota of 5 a day.
    state
        .policies()
        .update(
            &ops(),
            "gold",
            &Precondition::Any,
            serde_json::from_value(json!({"name": "Gold", "access_rights": [{"api": "orders"}],
                                          "quota": {"max": 5, "renewal_seconds": 86400}}))
            .unwrap(),
        )
        .await
        .unwrap();
    (state, clock, dir)
}

fn report(reporter: &str, sequence: u64, allowed: u64, charged: u64) -> UsageReport {
    UsageReport {
        reporter: reporter.to_owned(),
        sequence,
        instance: None,
        rate_requests: 0,
        clients: vec![ClientUsage {
            client: "cli_a".to_owned(),
            allowed,
            refused: BTreeMap::from([("rate_limited".to_owned(), 1)]),
        }],
        quotas: vec![QuotaUsage {
            policy: "gold".to_owned(),
            subject: "d:dev_ada".to_owned(),
            requests: charged,
        }],
    }
}

#[tokio::test]
async fn a_report_sent_again_is_counted_once_even_after_a_restart() {
    let (state, _clock, _dir) = state().await;
    let usage = state.usage();
    assert_eq!(
        usage
            .record("dp", &report("vm-1", 1, 2, 2))
            .await
            .unwrap()
            .outcome,
        ReportOutcome::Counted
    );
    assert_eq!(
        usage
            .record("dp", &report("vm-1", 1, 2, 2))
            .await
            .unwrap()
            .outcome,
        ReportOutcome::Duplicate
    );
    let again = restarted(&state);
    assert_eq!(
        again
            .usage()
            .record("dp", &report("vm-1", 1, 2, 2))
            .await
            .unwrap()
            .outcome,
        ReportOutcome::Duplicate
    );
    // Another reporter's first report is its own.
    assert_eq!(
        again
            .usage()
            .record("dp", &report("vm-2", 1, 1, 1))
            .await
            .unwrap()
            .outcome,
        ReportOutcome::Counted
    );
    let view = again.usage().of_client("cli_a").unwrap();
    assert_eq!(view.total.allowed, 3);
    assert_eq!(view.total.refused["rate_limited"], 2);
    assert_eq!(view.hourly.len(), 1);
    assert_eq!(view.daily.len(), 1);
}

#[tokio::test]
async fn a_quota_spent_across_reporters_is_listed_until_its_window_ends() {
    let (state, clock, _dir) = state().await;
    let usage = state.usage();
    let mut spent = usage.exhausted_generations();
    usage.record("dp", &report("vm-1", 1, 3, 3)).await.unwrap();
    assert!(usage.exhausted(state.now()).unwrap().is_empty());
    assert!(!spent.has_changed().unwrap());
    usage.record("dp", &report("vm-2", 1, 2, 2)).await.unwrap();
    let exhausted = usage.exhausted(state.now()).unwrap();
    let renews = unix_seconds(state.now()) + 86_400;
    assert_eq!(
        exhausted,
        [ExhaustedQuota {
            policy: "gold".to_owned(),
            subject: "d:dev_ada".to_owned(),
            until: renews
        }]
    );
    assert!(spent.has_changed().unwrap(), "the snapshot is rebuilt");
    spent.mark_unchanged();
    assert_eq!(
        crate::service::snapshot::build(&state)
            .unwrap()
            .exhausted_quotas,
        exhausted
    );
    // More reports while spent do not wake the snapshot again.
    usage.record("dp", &report("vm-1", 2, 1, 1)).await.unwrap();
    assert!(!spent.has_changed().unwrap());
    // The window ends: nothing is spent, and the next report starts a new window.
    clock.advance(Duration::from_secs(86_400));
    assert!(usage.exhausted(state.now()).unwrap().is_empty());
    usage.record("dp", &report("vm-1", 3, 4, 4)).await.unwrap();
    assert!(usage.exhausted(state.now()).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_counting_into_one_quota_at_once_lose_no_increment() {
    let (state, _clock, _dir) = state().await;
    let other = crate::service::test_support::another_replica(&state);
    let mut counting = Vec::new();
    for i in 0..40 {
        for (n, replica) in [&state, &other].into_iter().enumerate() {
            let replica = replica.clone();
            counting.push(tokio::spawn(async move {
                replica
                    .usage()
                    .record("dp", &report(&format!("vm-{n}-{i}"), 1, 1, 1))
                    .await
                    .unwrap()
            }));
        }
    }
    for task in counting {
        task.await.unwrap();
    }
    let window: QuotaWindow = decode(
        &state
            .store()
            .get(Tree::QuotaCounters, &quota_key("gold", "d:dev_ada"))
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(window.count, 80);
}

#[tokio::test]
async fn a_policy_without_a_quota_counts_nothing() {
    let (state, _clock, _dir) = state().await;
    let mut unknown = report("vm-1", 1, 9, 9);
    unknown.quotas[0].policy = "no-such-policy".to_owned();
    state.usage().record("dp", &unknown).await.unwrap();
    assert!(state.usage().exhausted(state.now()).unwrap().is_empty());
}

#[tokio::test]
async fn usage_is_kept_per_hour_and_day_for_thirty_days() {
    let (state, clock, _dir) = state().await;
    let usage = state.usage();
    usage.record("dp", &report("vm-1", 1, 1, 0)).await.unwrap();
    clock.advance(Duration::from_secs(3600));
    usage.record("dp", &report("vm-1", 2, 2, 0)).await.unwrap();
    clock.advance(Duration::from_secs(24 * 3600));
    usage.record("dp", &report("vm-1", 3, 4, 0)).await.unwrap();
    let view = usage.of_client("cli_a").unwrap();
    assert_eq!(
        view.hourly
            .iter()
            .map(|hour| hour.allowed)
            .collect::<Vec<_>>(),
        [1, 2, 4]
    );
    assert_eq!(view.total.allowed, 7);
    assert!(view.daily.len() >= 2);
    assert_eq!(view.daily.iter().map(|day| day.allowed).sum::<u64>(), 7);
    assert!(usage.of_client("cli_other").unwrap().hourly.is_empty());
    // 32 days later, the old hours are gone (purged with the next report).
    clock.advance(Duration::from_secs(32 * 24 * 3600));
    usage.record("dp", &report("vm-1", 4, 1, 0)).await.unwrap();
    assert_eq!(usage.of_client("cli_a").unwrap().total.allowed, 1);
    assert_eq!(
        state
            .store()
            .scan(Tree::UsageHours, None, Order::Ascending)
            .count(),
        1
    );
}

/// The field an `invalid_request` names.
fn field(error: &ApiError) -> Option<&str> {
    match error {
        ApiError::InvalidRequest { field, .. } => field.as_deref(),
        _ => None,
    }
}

#[tokio::test]
async fn malformed_reports_are_refused_naming_the_field() {
    let (state, _clock, _dir) = state().await;
    let mut bad = report("vm 1", 1, 1, 1);
    let error = state.usage().record("dp", &bad).await.unwrap_err();
    assert_eq!(
        (error.code(), field(&error)),
        ("invalid_request", Some("reporter"))
    );
    bad.reporter = "vm-1".to_owned();
    bad.sequence = 0;
    let error = state.usage().record("dp", &bad).await.unwrap_err();
    assert_eq!(field(&error), Some("sequence"));
    bad.sequence = 1;
    bad.clients = (0..=MAX_BATCH_ENTRIES)
        .map(|n| ClientUsage {
            client: format!("cli_{n}"),
            allowed: 1,
            refused: BTreeMap::new(),
        })
        .collect();
    let error = state.usage().record("dp", &bad).await.unwrap_err();
    assert_eq!(field(&error), Some("clients"));
}

#[tokio::test]
async fn rate_shares_follow_each_instance_s_recent_traffic() {
    let (state, clock, _dir) = state().await;
    let usage = state.usage();
    let mut first = report("vm-1", 1, 0, 0);
    first.instance = Some("aaaaaaaaaaaaaaaa".to_owned());
    first.rate_requests = 30;
    // Alone: the whole allowance.
    assert_eq!(
        usage.record("dp", &first).await.unwrap().rate_share,
        Some(1_000)
    );
    let mut second = report("vm-2", 1, 0, 0);
    second.instance = Some("bbbbbbbbbbbbbbbb".to_owned());
    second.rate_requests = 10;
    // Two instances: the newcomer's own traffic has not settled, the other's counts at once:
    // it starts from its floor, so the two never hold more than the whole.
    assert_eq!(
        usage.record("dp", &second).await.unwrap().rate_share,
        Some(125)
    );
    // Once settled, 30 and 10 requests: a floor of 125 each, the rest by traffic.
    clock.advance(SHARE_SETTLE);
    assert_eq!(usage.rate_share("bbbbbbbbbbbbbbbb", 0), 125 + 750 / 4);
    assert_eq!(usage.last_rate_share("bbbbbbbbbbbbbbbb"), Some(312));
    // A report sent again adds no traffic.
    assert_eq!(
        usage.record("dp", &second).await.unwrap().outcome,
        ReportOutcome::Duplicate
    );
    assert_eq!(usage.rate_share("aaaaaaaaaaaaaaaa", 0), 125 + 750 * 3 / 4);
    // Traffic older than the window no longer counts: the one still reporting gets it all,
    // the one gone is forgotten.
    clock.advance(SHARE_WINDOW + Duration::from_secs(1));
    usage.rate_share("bbbbbbbbbbbbbbbb", 5);
    clock.advance(SHARE_SETTLE);
    assert_eq!(usage.rate_share("bbbbbbbbbbbbbbbb", 0), 1_000);
    assert_eq!(usage.last_rate_share("aaaaaaaaaaaaaaaa"), None);
}

#[tokio::test]
async fn a_quota_of_a_caller_whose_identity_is_not_ascii_is_counted() {
    // The identity is any string claim; the filter reports it as it is, and a 400 here would
    // hold that filter's reports back for good.
    let (state, _clock, _dir) = state().await;
    let mut named = report("vm-1", 1, 0, 5);
    named.quotas[0].subject = "i:José Ñandú".to_owned();
    assert_eq!(
        state.usage().record("dp", &named).await.unwrap().outcome,
        ReportOutcome::Counted
    );
    let exhausted = state.usage().exhausted(state.now()).unwrap();
    assert_eq!(exhausted.len(), 1);
    assert_eq!(exhausted[0].subject, "i:José Ñandú");
    let mut controlled = report("vm-1", 2, 0, 1);
    controlled.quotas[0].subject = "i:a\u{0}b".to_owned();
    let error = state.usage().record("dp", &controlled).await.unwrap_err();
    assert_eq!(field(&error), Some("quotas[].subject"));
}

#[tokio::test]
async fn a_quota_window_that_ended_is_purged() {
    // A counter per subject and window: kept for 366 days whatever the renewal, millions of
    // short windows would pile up and be scanned by every snapshot build.
    let (state, clock, _dir) = state().await;
    let usage = state.usage();
    usage.record("dp", &report("vm-1", 1, 1, 2)).await.unwrap();
    let counters = || {
        state
            .store()
            .scan(Tree::QuotaCounters, None, Order::Ascending)
            .count()
    };
    assert_eq!(counters(), 1);
    // The day's window ends; the next purge (an hour after the last) drops it.
    clock.advance(Duration::from_secs(2 * 86_400));
    let mut later = report("vm-1", 2, 1, 0);
    later.quotas.clear();
    usage.record("dp", &later).await.unwrap();
    assert_eq!(counters(), 0);
    // A window that runs is kept.
    usage.record("dp", &report("vm-1", 3, 1, 2)).await.unwrap();
    clock.advance(Duration::from_secs(2 * 3600));
    let mut later = report("vm-1", 4, 1, 0);
    later.quotas.clear();
    usage.record("dp", &later).await.unwrap();
    assert_eq!(counters(), 1);
    // A report that charges an ended window at a purge starts the new window, and keeps it.
    clock.advance(Duration::from_secs(2 * 86_400));
    usage.record("dp", &report("vm-1", 5, 1, 5)).await.unwrap();
    assert_eq!(counters(), 1);
    assert_eq!(usage.exhausted(state.now()).unwrap().len(), 1);
}

#[tokio::test]
async fn a_holder_of_another_token_cannot_make_a_reporter_s_reports_duplicates() {
    // `edge` names `vm-1` with the highest sequence: were reporters shared between tokens,
    // every later report of the `dp` token's `vm-1` would be acknowledged and not counted.
    let (state, _clock, _dir) = state().await;
    let usage = state.usage();
    let mut forged = report("vm-1", u64::MAX, 0, 0);
    forged.clients.clear();
    forged.quotas.clear();
    assert_eq!(
        usage.record("edge", &forged).await.unwrap().outcome,
        ReportOutcome::Counted
    );
    assert_eq!(
        usage
            .record("dp", &report("vm-1", 1, 1, 0))
            .await
            .unwrap()
            .outcome,
        ReportOutcome::Counted
    );
    assert_eq!(usage.of_client("cli_a").unwrap().total.allowed, 1);
}

#[tokio::test]
async fn a_report_naming_an_entry_twice_is_refused_rather_than_counted_once() {
    let (state, _clock, _dir) = state().await;
    let mut twice = report("vm-1", 1, 1, 1);
    twice.clients.push(twice.clients[0].clone());
    let error = state.usage().record("dp", &twice).await.unwrap_err();
    assert_eq!(field(&error), Some("clients[].client"));
    let mut twice = report("vm-1", 1, 1, 1);
    twice.quotas.push(twice.quotas[0].clone());
    let error = state.usage().record("dp", &twice).await.unwrap_err();
    assert_eq!(field(&error), Some("quotas[]"));
    assert!(state.usage().of_client("cli_a").unwrap().hourly.is_empty());
}

#[tokio::test]
async fn equal_traffic_gives_equal_shares_that_make_the_whole() {
    let (state, clock, _dir) = state().await;
    let usage = state.usage();
    for second in 0..8 {
        usage.rate_share("aaaaaaaaaaaaaaaa", 10);
        usage.rate_share("bbbbbbbbbbbbbbbb", 10);
        if second < 7 {
            clock.advance(Duration::from_secs(1));
        }
    }
    let a = usage.rate_share("aaaaaaaaaaaaaaaa", 0);
    let b = usage.rate_share("bbbbbbbbbbbbbbbb", 0);
    assert_eq!((a, b), (500, 500));
}
