//! The API contract, tested by a tool: schemathesis (PyPI, installed in `.venv` by
//! `scripts/setup.sh`) reads the OpenAPI document the running `portico` serves, generates
//! valid and invalid requests for every operation of the portal, data-plane, admin and
//! operations APIs, and checks each answer: no 5xx, and every status, content type, header and
//! body documented and conforming to its schema.
//!
//! The control plane talks to a real IdP (tests/idp) with DCR enabled, so the operations that
//! call the IdP (client registration, secret rotation, redirect URIs, deletion, discovery when
//! DCR settings are saved) answer from a real provider rather than from a refused connection.
//! The runs go from the least to the most destructive: the portal with a developer's session,
//! then log-out (which ends that session), the data plane, and last the admin API, whose
//! generated writes may delete or replace what the earlier runs relied on.
//!
//! Half the generated path ids are drawn from the ids of the seeded resources (a
//! schemathesis dictionary), so operations on one resource get past their 404.
//! The seed is fixed, so a failure reproduces; each run prints schemathesis's report when it
//! fails. Runs alone with `cargo test -p portico-tests --test contract`.

use std::path::Path;
use std::process::Command;

use portico_tests::control_plane::{ADMIN_KEY, DATA_PLANE_TOKEN};
use portico_tests::journey::INITIAL_ACCESS_TOKEN;
use portico_tests::paths::schemathesis_binary;
use portico_tests::{ControlPlane, Idp, IdpOptions, PortalSession};
use reqwest::Method;
use serde_json::json;

/// The public base URL the control plane is given; portal writes must come from its origin.
const ORIGIN: &str = "http://portal.portico.test";
/// The seed of every run, so a failure reproduces.
const SEED: &str = "20261130";
/// What each answer is checked for. `negative_data_rejection` and `positive_data_acceptance`
/// are left out: the document does not (and cannot, in JSON Schema) state every rule the
/// services apply (references that must exist, listen paths that must not overlap), so a
/// valid-looking body may rightly be refused and a test of them would flag the server for
/// being stricter than a schema can say. The authentication checks (`ignored_auth`,
/// `missing_required_header`) are covered by the control plane's own tests of every route.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

/// One schemathesis run over the operations whose path matches `paths`.
struct Run<'a> {
    name: &'a str,
    paths: &'a str,
    headers: Vec<String>,
    extra: Vec<&'a str>,
    max_examples: u32,
}

impl Run<'_> {
    fn execute(&self, schema: &str, dir: &Path) {
        let mut command = Command::new(schemathesis_binary());
        command
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .arg("--no-color")
            .arg("--config-file")
            .arg(dir.join("schemathesis.toml"))
            .arg("run")
            .arg(schema)
            .args(["--include-path-regex", self.paths])
            .args(["--checks", CHECKS])
            .args(["--phases", "examples,coverage,fuzzing"])
            .args(["--max-examples", &self.max_examples.to_string()])
            .args(["--seed", SEED])
            // One worker: schemathesis's workers are threads, and CPython 3.11 (the `.venv`'s
            // interpreter here) tracks `ast.parse`'s recursion depth in state its threads share,
            // so two threads describing hypothesis lambdas at once can fail with "SystemError:
            // AST constructor recursion depth mismatch" (CPython gh-106905), as a CI run did.
            .args(["--workers", "1"])
            .args(["--generation-database", "none"])
            .args(["--request-timeout", "20"])
            .args(&self.extra);
        for header in &self.headers {
            command.args(["--header", header]);
        }
        eprintln!("{command:?}");
        let started = std::time::Instant::now();
        let output = command.output().expect("run schemathesis");
        let report = String::from_utf8_lossy(&output.stdout);
        eprintln!(
            "schemathesis over the {} API: {} in {:.0?}\n{report}",
            self.name,
            output.status,
            started.elapsed()
        );
        assert!(
            output.status.success(),
            "schemathesis found contract failures in the {} API ({}):\n{report}\n{}",
            self.name,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_api_keeps_its_documented_contract_for_generated_requests() {
    let idp = Idp::start(IdpOptions {
        initial_access_token: Some(INITIAL_ACCESS_TOKEN.to_owned()),
        ..IdpOptions::default()
    })
    .await;
    let control_plane = ControlPlane::start(&[("PORTICO_PUBLIC_BASE_URL", ORIGIN)]).await;
    let cp = &control_plane;
    cp.create("/issuers", json!({"id": "idp", "issuer": idp.issuer}))
        .await;
    cp.create(
        "/apis",
        json!({"id": "orders", "name": "Orders", "listen_path": "/orders", "issuers": ["idp"],
               "audiences": ["https://api.portico.test"], "identity_claims": ["client_id"]}),
    )
    .await;
    cp.create(
        "/policies",
        json!({"id": "orders-read", "name": "Orders", "access_rights": [{"api": "orders"}]}),
    )
    .await;
    cp.create(
        "/catalogue",
        json!({"id": "orders", "name": "Orders API", "description": "Orders.",
               "policy": "orders-read"}),
    )
    .await;
    cp.replace(
        "/dcr",
        json!({"enabled": true, "provider": "other", "issuer": idp.issuer,
               "initial_access_token": INITIAL_ACCESS_TOKEN}),
    )
    .await;
    cp.replace("/portal", json!({"self_signup": true})).await;
    let password = "correct horse battery staple";
    let developer = cp
        .create(
            "/developers",
            json!({"email": "ada@example.com", "name": "Ada", "password": password}),
        )
        .await;
    let session = PortalSession::log_in(cp, "ada@example.com", password).await;
    let answer = session
        .register(
            "contract-seed",
            &json!({"catalogue_entries": ["orders"], "client_name": "Seed"}),
        )
        .await;
    assert_eq!(answer.status, 201, "a first client: {}", answer.body);
    let client = answer.body["client"]["id"].clone();
    assert!(client.is_string(), "the client's id: {}", answer.body);
    let answer = session
        .call(Method::GET, "/me", None, &[("origin", ORIGIN)])
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    let schema = cp.url("/admin/v1/openapi.json");
    let dir = tempfile::tempdir().expect("a working directory for schemathesis");
    // Half the generated `{id}`s name a resource that exists, so the operations on one
    // resource reach past their 404 (the IdP included, for the developer's client).
    let ids = json!(["idp", "orders", "orders-read", developer["id"], client]);
    std::fs::write(
        dir.path().join("schemathesis.toml"),
        format!(
            "[dictionaries.ids]\nvalues = {ids}\n\n\
             [parameters]\n\"path.id\" = {{ dictionary = \"ids\", probability = 0.5 }}\n"
        ),
    )
    .expect("write schemathesis.toml");
    let cookie = format!("Cookie: portico_session={}", session.session_id());
    let origin = format!("Origin: {ORIGIN}");
    let runs = [
        Run {
            name: "portal",
            paths: "^/portal/api/v1/",
            headers: vec![cookie.clone(), origin.clone()],
            extra: vec!["--exclude-operation-id", "portal_logout"],
            max_examples: 40,
        },
        Run {
            name: "portal log-out",
            paths: "^/portal/api/v1/logout$",
            headers: vec![cookie, origin],
            extra: vec![],
            max_examples: 10,
        },
        Run {
            name: "data-plane",
            paths: "^/v1/",
            headers: vec![format!("Authorization: Bearer {DATA_PLANE_TOKEN}")],
            extra: vec![],
            max_examples: 20,
        },
        Run {
            name: "admin and operations",
            paths: "^/(admin/v1/.*|healthz|readyz|metrics)$",
            headers: vec![format!("Authorization: Bearer {ADMIN_KEY}")],
            extra: vec![],
            max_examples: 20,
        },
    ];
    for run in &runs {
        run.execute(&schema, dir.path());
        if run.name == "portal" {
            // The portal's operations were tested signed in, not refused with 401.
            let answer = session.call(Method::GET, "/me", None, &[]).await;
            assert_eq!(
                answer.status, 200,
                "the session outlived the run: {}",
                answer.body
            );
        }
    }
}
