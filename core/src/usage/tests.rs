use super::*;

const T0: Duration = Duration::from_secs(1_800_000_000);
const TIMEOUT: Duration = Duration::from_secs(5);
const MS: Duration = Duration::from_millis(1);

/// A recorder whose first, empty report (sequence 1, sent at once to learn the rate share)
/// was acknowledged at `T0 - 2 s`.
fn recorder() -> UsageRecorder {
    let mut usage = UsageRecorder::new("0123456789abcdef-00000000000000aa".to_owned());
    let start = T0 - 2 * REPORT_INTERVAL;
    let hello = usage.due(start, TIMEOUT).cloned().unwrap();
    assert_eq!(
        (hello.sequence, hello.clients.len(), hello.quotas.len()),
        (1, 0, 0)
    );
    usage.sent(99, start);
    assert_eq!(
        usage.answered(99, Some(200), start),
        ReportOutcome::Acknowledged
    );
    usage
}

#[test]
fn counts_wait_for_the_interval_then_leave_as_one_numbered_batch() {
    let mut usage = recorder();
    assert!(usage.due(T0, TIMEOUT).is_none(), "nothing to report");
    usage.rate_charged();
    usage.rate_charged();
    usage.allowed("cli_a");
    usage.allowed("cli_a");
    usage.refused("cli_a", "rate_limited");
    usage.refused("cli_b", "access_denied");
    usage.quota_charged("gold", "d:dev_ada");
    usage.quota_charged("gold", "d:dev_ada");
    let first = usage.due(T0, TIMEOUT).cloned().unwrap();
    assert_eq!((first.sequence, first.rate_requests), (2, 2));
    let mut clients = first.clients.clone();
    clients.sort_by(|a, b| a.client.cmp(&b.client));
    assert_eq!(
        clients,
        [
            ClientUsage {
                client: "cli_a".to_owned(),
                allowed: 2,
                refused: BTreeMap::from([("rate_limited".to_owned(), 1)]),
            },
            ClientUsage {
                client: "cli_b".to_owned(),
                allowed: 0,
                refused: BTreeMap::from([("access_denied".to_owned(), 1)]),
            },
        ]
    );
    assert_eq!(
        first.quotas,
        [QuotaUsage {
            policy: "gold".to_owned(),
            subject: "d:dev_ada".to_owned(),
            requests: 2
        }]
    );
    usage.sent(7, T0);
    assert_eq!(
        usage.answered(7, Some(204), T0 + MS),
        ReportOutcome::Acknowledged
    );
    usage.allowed("cli_a");
    assert!(
        usage.due(T0 + 500 * MS, TIMEOUT).is_none(),
        "the next batch waits for the interval"
    );
    let second = usage.due(T0 + REPORT_INTERVAL, TIMEOUT).unwrap();
    assert_eq!((second.sequence, second.rate_requests), (3, 0));
    assert_eq!(second.clients[0].allowed, 1);
}

#[test]
fn an_unacknowledged_report_is_sent_again_unchanged_and_later_counts_wait() {
    let mut usage = recorder();
    usage.allowed("cli_a");
    let first = usage.due(T0, TIMEOUT).cloned().unwrap();
    usage.sent(1, T0);
    usage.allowed("cli_a");
    assert!(
        usage.due(T0 + MS, TIMEOUT).is_none(),
        "one report in flight"
    );
    // A 503: sent again a second later, with the same number and the same counts.
    assert_eq!(usage.answered(1, Some(503), T0 + MS), ReportOutcome::Retry);
    assert!(usage.due(T0 + 2 * MS, TIMEOUT).is_none(), "not at once");
    let again = usage
        .due(T0 + MS + REPORT_INTERVAL, TIMEOUT)
        .cloned()
        .unwrap();
    assert_eq!(again, first);
    usage.sent(2, T0 + MS + REPORT_INTERVAL);
    // No answer at all: sent again after the timeout.
    assert!(usage.due(T0 + REPORT_INTERVAL + TIMEOUT, TIMEOUT).is_none());
    let timed_out = usage
        .due(T0 + MS + REPORT_INTERVAL + TIMEOUT, TIMEOUT)
        .cloned()
        .unwrap();
    assert_eq!(timed_out, first);
    usage.sent(3, T0 + MS + REPORT_INTERVAL + TIMEOUT);
    assert_eq!(
        usage.answered(2, Some(200), T0),
        ReportOutcome::Stale,
        "an old call"
    );
    assert_eq!(
        usage.answered(3, Some(200), T0 + 10 * REPORT_INTERVAL),
        ReportOutcome::Acknowledged
    );
    let next = usage.due(T0 + 10 * REPORT_INTERVAL, TIMEOUT).unwrap();
    assert_eq!((next.sequence, next.clients[0].allowed), (3, 1));
}

#[test]
fn a_failed_dispatch_is_tried_again_after_the_interval() {
    let mut usage = recorder();
    usage.quota_charged("gold", "c:cli_a");
    assert!(usage.due(T0, TIMEOUT).is_some());
    usage.not_sent(T0);
    assert!(usage.due(T0 + MS, TIMEOUT).is_none());
    assert_eq!(
        usage.due(T0 + REPORT_INTERVAL, TIMEOUT).unwrap().sequence,
        2
    );
}

#[test]
fn batches_and_waiting_entries_are_bounded() {
    let mut usage = recorder();
    for n in 0..MAX_PENDING_ENTRIES + 10 {
        usage.allowed(&format!("cli_{n}"));
    }
    usage.quota_charged("gold", "c:one-too-many");
    assert_eq!(usage.dropped(), 11);
    let batch = usage.due(T0, TIMEOUT).unwrap();
    assert_eq!(batch.clients.len(), MAX_BATCH_ENTRIES);
    usage.sent(1, T0);
    usage.answered(1, Some(200), T0);
    // A full batch waits no interval.
    assert_eq!(usage.due(T0 + MS, TIMEOUT).unwrap().sequence, 3);
}

#[test]
fn reports_round_trip_as_json_and_refuse_unknown_members() {
    let report = UsageReport {
        reporter: "r".to_owned(),
        sequence: 3,
        instance: Some("0123456789abcdef".to_owned()),
        rate_requests: 4,
        clients: vec![ClientUsage {
            client: "cli_a".to_owned(),
            allowed: 1,
            refused: BTreeMap::new(),
        }],
        quotas: Vec::new(),
    };
    let json = serde_json::to_string(&report).unwrap();
    assert_eq!(serde_json::from_str::<UsageReport>(&json).unwrap(), report);
    assert!(
        serde_json::from_str::<UsageReport>(r#"{"reporter":"r","sequence":1,"extra":1}"#).is_err()
    );
}

#[test]
fn an_idle_recorder_reports_empty_every_share_refresh_and_reads_its_share() {
    let mut usage = recorder();
    let last = T0 - 2 * REPORT_INTERVAL;
    usage.set_instance("0123456789abcdef");
    assert!(usage.due(last + SHARE_REFRESH - MS, TIMEOUT).is_none());
    let refresh = usage.due(last + SHARE_REFRESH, TIMEOUT).unwrap();
    assert_eq!(refresh.instance.as_deref(), Some("0123456789abcdef"));
    assert!(refresh.clients.is_empty() && refresh.quotas.is_empty());
    assert_eq!(
        share_in_answer(br#"{"outcome":"counted","rate_share":375}"#),
        Some(375)
    );
    assert_eq!(share_in_answer(br#"{"outcome":"counted"}"#), None);
    assert_eq!(share_in_answer(br#"{"rate_share":0}"#), None);
    assert_eq!(share_in_answer(br#"{"rate_share":1001}"#), None);
    assert_eq!(share_in_answer(b"not json"), None);
}

#[test]
fn a_report_the_control_plane_refuses_for_good_is_dropped_and_later_counts_move_on() {
    let mut usage = recorder();
    usage.allowed("cli_a");
    assert_eq!(usage.due(T0, TIMEOUT).unwrap().sequence, 2);
    usage.sent(1, T0);
    usage.allowed("cli_b");
    // A 400 will be a 400 again: sending the same report forever would hold every later
    // count behind it until they are dropped.
    assert_eq!(
        usage.answered(1, Some(400), T0 + MS),
        ReportOutcome::Rejected
    );
    let next = usage.due(T0 + REPORT_INTERVAL, TIMEOUT).unwrap();
    assert_eq!(
        (next.sequence, next.clients[0].client.as_str()),
        (3, "cli_b")
    );
    usage.sent(2, T0 + REPORT_INTERVAL);
    // A 403 may be fixed by an operator: the report is kept.
    assert_eq!(
        usage.answered(2, Some(403), T0 + REPORT_INTERVAL),
        ReportOutcome::Retry
    );
}

#[test]
fn identities_of_any_letters_are_reported_and_unreportable_subjects_are_dropped() {
    let mut usage = recorder();
    usage.quota_charged("gold", "i:José Ñandú");
    usage.quota_charged("gold", &format!("i:{}", "x".repeat(MAX_SUBJECT_BYTES)));
    usage.quota_charged("gold", "i:tab\there");
    assert_eq!(usage.dropped(), 2);
    let report = usage.due(T0, TIMEOUT).unwrap();
    assert_eq!(report.quotas.len(), 1);
    assert_eq!(report.quotas[0].subject, "i:José Ñandú");
}
