//! The Grafana dashboard (`deploy/grafana/portico.json`) queries only metrics that a running
//! `portico` and Envoy with the filter export: the journey runs (an IdP, a registration, allowed
//! and refused calls), both are scraped, and every metric name in every PromQL expression of
//! the dashboard must appear in one of the scrapes. Envoy's Prometheus output must carry the
//! filter's `api`, `reason`, `alg`, `path` and `outcome` labels (the shipped `stats_config`
//! tags).

use std::collections::BTreeSet;

use portico_tests::journey::BOUND;
use portico_tests::paths::workspace_root;
use portico_tests::{Journey, PortalSession, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Every PromQL expression of the dashboard: the panels' `targets[].expr` (rows and nested
/// panels included) and the query variables' queries.
fn promql_expressions(dashboard: &Value) -> Vec<String> {
    fn walk(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(object) => {
                for (key, item) in object {
                    match (key.as_str(), item) {
                        ("expr", Value::String(expr)) => found.push(expr.clone()),
                        _ => walk(item, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(&dashboard["panels"], &mut found);
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] == "query" {
            found.push(variable["query"]["query"].as_str().unwrap().to_owned());
        }
    }
    found
}

/// The metric names an expression reads: identifiers with the exported prefix `portico_`
/// (the control plane's `portico_*` and the filter's `portico_filter_*`, which Envoy exports
/// without its `envoy_` prefix because `wasmcustom` is a custom stat namespace).
fn metric_names(expr: &str) -> Vec<String> {
    let identifier = regex::Regex::new(r"\bportico_[A-Za-z0-9_:]+").unwrap();
    identifier
        .find_iter(expr)
        .map(|found| found.as_str().to_owned())
        .collect()
}

/// The names of the series in a Prometheus text exposition.
fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Whether `text` has a series of `name` with every one of `labels` (in any order).
fn has_series(text: &str, name: &str, labels: &[(&str, &str)]) -> bool {
    text.lines().any(|line| {
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('{'))
            .is_some_and(|rest| {
                labels
                    .iter()
                    .all(|(label, value)| rest.contains(&format!("{label}=\"{value}\"")))
            })
    })
}

async fn scrape(url: &str) -> String {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{url}");
    response.text().await.unwrap()
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exported_by_portico_and_envoy() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_root().join("deploy/grafana/portico.json")).unwrap(),
    )
    .unwrap();
    let expressions = promql_expressions(&dashboard);
    let wanted: BTreeSet<String> = expressions
        .iter()
        .flat_map(|expr| metric_names(expr))
        .collect();
    assert!(wanted.len() >= 20, "{wanted:?} from {expressions:?}");

    // The journey: a registration at the IdP (a DCR call), key fetches, allowed and refused
    // requests through Envoy.
    let journey = Journey::start(&[]).await;
    journey.operator_sets_up().await;
    let developer = PortalSession::sign_up(
        &journey.control_plane,
        "metrics@example.com",
        "correct horse battery staple",
    )
    .await;
    let created = developer
        .register(
            "form-1",
            &json!({"catalogue_entries": ["orders"], "client_name": "Metrics app"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let client_id = created.body["client"]["client_id"].as_str().unwrap();
    let secret = created.body["client_secret"].as_str().unwrap();
    let (status, token) = journey.idp.token(client_id, secret).await;
    assert_eq!(status, 200, "{token}");
    let token = token["access_token"].as_str().unwrap().to_owned();
    journey
        .await_status("an allowed call", "/orders/1", &token, 200, None)
        .await;
    assert_eq!(journey.call("/orders/1", None).await.0, 401);
    assert_eq!(journey.call("/reports/1", Some(&token)).await.0, 403);

    let control_plane_url = journey.control_plane.url("/metrics");
    let envoy_url = format!("http://{}/stats/prometheus", journey.envoy.admin);
    // The filter hands its counts to Envoy on its timer: wait for the refusals to show.
    let envoy_text = eventually("the refusals in Envoy's metrics", BOUND, || async {
        let text = scrape(&envoy_url).await;
        has_series(
            &text,
            "portico_filter_decisions",
            &[("api", "reports"), ("reason", "access_denied")],
        )
        .then_some(text)
    })
    .await;
    let control_plane_text = scrape(&control_plane_url).await;

    let exported: BTreeSet<String> = exported_names(&control_plane_text)
        .union(&exported_names(&envoy_text))
        .cloned()
        .collect();
    let missing: Vec<&String> = wanted.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics nobody exports: {missing:?}\n\nportico:\n{control_plane_text}\n\nEnvoy (portico lines):\n{}",
        envoy_text
            .lines()
            .filter(|line| line.contains("portico"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // `api` and `reason` are labels, with the values of this run.
    for (api, reason) in [
        ("orders", "allowed"),
        ("orders", "missing_token"),
        ("reports", "access_denied"),
    ] {
        assert!(
            has_series(
                &envoy_text,
                "portico_filter_decisions",
                &[("api", api), ("reason", reason)]
            ),
            "no decisions for api {api}, reason {reason} in:\n{envoy_text}"
        );
    }
    assert!(
        has_series(
            &envoy_text,
            "portico_filter_verifications",
            &[("alg", "RS256"), ("path", "host")]
        ),
        "{envoy_text}"
    );
    assert!(
        has_series(
            &envoy_text,
            "portico_filter_syncs",
            &[("outcome", "applied")]
        ),
        "{envoy_text}"
    );
    // The control plane counted the registration and the key fetches, without client ids.
    assert!(
        control_plane_text.contains(
            "portico_dcr_calls_total{provider=\"other\",operation=\"register\",outcome=\"ok\"} 1"
        ),
        "{control_plane_text}"
    );
    assert!(
        control_plane_text.contains("portico_key_fetches_total{issuer=\"idp\",outcome=\"ok\"}"),
        "{control_plane_text}"
    );
    assert!(!control_plane_text.contains(client_id));
    assert!(!envoy_text.contains(client_id));
}
