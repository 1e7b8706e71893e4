//! `portico store export` and `portico store import` with the real binary (issue 16, items 5
//! and 6): a populated sled store (issuer, API, policy, catalogue entry, DCR settings with a
//! sealed token, developers, OAuth clients registered through the portal with sealed secrets,
//! a revocation, the audit log) moves to PostgreSQL and back entry for entry; a changed,
//! truncated or trailerless file is refused with nothing written, and so is an import into a
//! store that holds data; a restored store refuses to serve until an operator confirms, and
//! then publishes a snapshot version above every version published after the export.

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

use portico_tests::control_plane::DATA_PLANE_TOKEN;
use portico_tests::fast_idp::INITIAL_ACCESS_TOKEN;
use portico_tests::{ControlPlane, FastIdp, PortalSession, eventually, postgres};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(30);
const PASSWORD: &str = "correct horse battery staple";
/// `EX_DATAERR`: the file cannot be imported.
const EXIT_BAD_FILE: i32 = 65;
/// `EX_USAGE`: among others, a restored store that no operator confirmed yet.
const EXIT_UNCONFIRMED: i32 = 64;

/// Runs a store command that must succeed; answers its standard output.
async fn succeeds(cp: &ControlPlane, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let output = cp.portico(args, stdin).await;
    assert!(
        output.status.success(),
        "portico {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A command that must fail with `code` and one line `portico: …` on standard error (among
/// the log's lines); answers the line.
fn fails(output: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("portico: "))
        .collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    lines[0].to_owned()
}

/// An export file, line by line: the header, the metadata values by key, the entry lines in
/// order (as written) and the trailer.
#[derive(Debug)]
struct Parsed {
    header: Value,
    meta: BTreeMap<String, String>,
    entries: Vec<String>,
    trailer: Value,
}

fn parse(file: &[u8]) -> Parsed {
    let text = std::str::from_utf8(file).unwrap();
    assert!(text.ends_with('\n'));
    let lines: Vec<&str> = text.lines().collect();
    let object = |line: &str| serde_json::from_str::<Value>(line).unwrap();
    let mut meta = BTreeMap::new();
    let mut entries = Vec::new();
    for line in &lines[1..lines.len() - 1] {
        let value = object(line);
        if let Some(pair) = value.get("meta") {
            let key = pair["key"].as_str().unwrap().to_owned();
            meta.insert(key, pair["value"].as_str().unwrap().to_owned());
        } else {
            assert!(value.get("entry").is_some(), "{line}");
            entries.push((*line).to_owned());
        }
    }
    Parsed {
        header: object(lines[0])["header"].clone(),
        meta,
        entries,
        trailer: object(lines[lines.len() - 1])["trailer"].clone(),
    }
}

/// The trees that the entry lines hold, each once.
fn trees(parsed: &Parsed) -> Vec<String> {
    let mut trees: Vec<String> = parsed
        .entries
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["entry"]["tree"].to_string())
        .collect();
    trees.dedup();
    trees
}

/// What an import adds to what it loads: `copy` holds `original`'s entries in the same
/// order, its metadata but for the snapshot's version record (raised to the floor) and the
/// restore mark, and its header but for the time and the snapshot's version.
fn assert_same_store(original: &Parsed, copy: &Parsed) {
    assert_eq!(copy.entries, original.entries);
    assert_eq!(copy.trailer["entries"], original.trailer["entries"]);
    let without = |meta: &BTreeMap<String, String>| {
        let mut meta = meta.clone();
        meta.remove("snapshot");
        meta.remove("restored");
        meta
    };
    assert_eq!(without(&copy.meta), without(&original.meta));
    assert!(copy.meta.contains_key("restored"));
    for field in ["format", "format_version", "portico_version", "revision"] {
        assert_eq!(copy.header[field], original.header[field], "{field}");
    }
    let version = |parsed: &Parsed| parsed.header["snapshot"]["version"].as_u64().unwrap_or(0);
    assert!(version(copy) > version(original));
    assert_eq!(copy.header["snapshot"]["hash"], "");
}

/// Operator resources on `cp` through the admin API (the issuer is `idp`), a developer made
/// by an operator and one who signs up in the portal and registers two OAuth clients, one of
/// which the operator revokes. Answers the registered clients' record ids.
async fn populate(cp: &ControlPlane, idp: &FastIdp) -> Vec<String> {
    cp.create("/issuers", json!({"id": "idp", "issuer": idp.issuer()}))
        .await;
    cp.create(
        "/apis",
        json!({"id": "orders", "name": "Orders", "listen_path": "/orders",
               "issuers": ["idp"], "accept_any_audience": true,
               "identity_claims": ["client_id", "sub"]}),
    )
    .await;
    cp.create(
        "/policies",
        json!({"id": "gold", "name": "Gold", "access_rights": [{"api": "orders"}]}),
    )
    .await;
    cp.create(
        "/catalogue",
        json!({"id": "orders", "name": "Orders", "policy": "gold"}),
    )
    .await;
    cp.replace("/dcr", idp.dcr_settings()).await;
    cp.create(
        "/developers",
        json!({"email": "grace@example.com", "name": "Grace", "password": PASSWORD}),
    )
    .await;
    let developer = PortalSession::sign_up(cp, "ada@example.com", PASSWORD).await;
    let mut clients = Vec::new();
    for name in ["shop", "warehouse"] {
        let created = developer
            .register(
                name,
                &json!({"catalogue_entries": ["orders"], "client_name": name}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        clients.push(created.body["client"]["id"].as_str().unwrap().to_owned());
    }
    on_client(cp, Method::POST, &format!("{}/revoke", clients[1])).await;
    clients
}

/// The version of the snapshot in force, once one is published.
async fn published_version(cp: &ControlPlane) -> u64 {
    eventually("a published snapshot", PATIENCE, || async {
        let answer = cp.admin(Method::GET, "/snapshot", None, None).await;
        (answer.status == StatusCode::OK)
            .then(|| answer.body["version"].as_u64())
            .flatten()
    })
    .await
}

#[tokio::test]
async fn a_populated_sled_store_moves_to_postgres_and_back_entry_for_entry() {
    let idp = FastIdp::start().await;
    let mut source = ControlPlane::start(&[]).await;
    let clients = populate(&source, &idp).await;
    published_version(&source).await;
    source.kill();
    let from_sled = succeeds(&source, &["store", "export"], b"").await;
    let original = parse(&from_sled);
    for tree in [
        "issuers",
        "apis",
        "policies",
        "catalogue",
        "settings",
        "developers",
        "developer_emails",
        "oauth_clients",
        "oauth_client_ids",
        "audit",
        "sessions",
        "idempotency",
    ] {
        assert!(
            trees(&original).contains(&format!("\"{tree}\"")),
            "{tree} in {:?}",
            trees(&original)
        );
    }
    assert!(original.meta.contains_key("secret_key_check"));
    // Secrets travel sealed: neither the IdP's client secrets nor the DCR token appear, not
    // even inside the base64 of a value.
    for line in &original.entries {
        let value = serde_json::from_str::<Value>(line).unwrap()["entry"]["value"].clone();
        let bytes = base64_decode(value.as_str().unwrap());
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("secret-0000"), "{text}");
        assert!(!text.contains(INITIAL_ACCESS_TOKEN), "{text}");
        assert!(!text.contains(PASSWORD), "{text}");
    }

    let database = postgres::shared().await.database().await;
    let mut on_postgres = ControlPlane::stopped(&[("PORTICO_STORE", database.as_str())]);
    succeeds(&on_postgres, &["store", "import"], &from_sled).await;
    let from_postgres = succeeds(&on_postgres, &["store", "export"], b"").await;
    let copied = parse(&from_postgres);
    assert_same_store(&original, &copied);

    let back_on_sled = ControlPlane::stopped(&[]);
    succeeds(&back_on_sled, &["store", "import"], &from_postgres).await;
    let from_sled_again = parse(&succeeds(&back_on_sled, &["store", "export"], b"").await);
    assert_same_store(&copied, &from_sled_again);
    assert_eq!(from_sled_again.entries, original.entries);

    // The PostgreSQL copy serves once confirmed, with its secrets usable: the developer logs
    // in with the same password, and deleting a client calls the IdP with the client's
    // (unsealed) registration access token.
    succeeds(&on_postgres, &["store", "confirm-restore"], b"").await;
    on_postgres.restart().await;
    PortalSession::log_in(&on_postgres, "ada@example.com", PASSWORD).await;
    assert_eq!(
        on_postgres.read("/dcr").await["initial_access_token_set"],
        true
    );
    let listed = on_postgres.read("/oauth-clients").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");
    on_client(&on_postgres, Method::DELETE, &clients[0]).await;
}

/// `method /admin/v1/oauth-clients/<path>` unconditionally, which must succeed.
async fn on_client(cp: &ControlPlane, method: Method, path: &str) {
    let answer = cp
        .admin(method, &format!("/oauth-clients/{path}"), None, Some("*"))
        .await;
    assert!(answer.status.is_success(), "{path}: {:?}", answer.body);
}

/// A control plane on sled whose store holds one issuer.
async fn with_one_issuer() -> ControlPlane {
    let cp = ControlPlane::start(&[]).await;
    cp.create(
        "/issuers",
        json!({"id": "idp", "issuer": "https://idp.example.com"}),
    )
    .await;
    cp
}

#[tokio::test]
async fn a_damaged_file_is_refused_with_nothing_written_and_so_is_an_import_over_data() {
    let mut source = with_one_issuer().await;
    source.kill();
    let file = succeeds(&source, &["store", "export"], b"").await;
    let text = std::str::from_utf8(&file).unwrap();
    let trailer_at = text.trim_end_matches('\n').rfind('\n').unwrap() + 1;
    let entry_at = text.find("{\"entry\"").unwrap();
    let mut changed = file.clone();
    // One byte of the issuer's base64 value.
    changed[entry_at + text[entry_at..].find("\"value\":\"").unwrap() + 12] ^= 0x01;
    let damaged: [(&str, Vec<u8>, &str); 3] = [
        ("one byte changed", changed, "SHA-256 does not match"),
        (
            "truncated",
            file[..file.len() * 2 / 3].to_vec(),
            "truncated",
        ),
        (
            "trailer missing",
            file[..trailer_at].to_vec(),
            "trailer line is missing",
        ),
    ];
    let database = postgres::shared().await.database().await;
    let on_postgres = ControlPlane::stopped(&[("PORTICO_STORE", database.as_str())]);
    let on_sled = ControlPlane::stopped(&[]);
    for (what, bytes, reason) in &damaged {
        for target in [&on_sled, &on_postgres] {
            let refusal = fails(
                &target.portico(&["store", "import"], bytes).await,
                EXIT_BAD_FILE,
            );
            assert!(refusal.contains(reason), "{what}: {refusal}");
        }
    }
    // Nothing was written: no sled database was even created, and both stores take the
    // whole file afterwards.
    assert!(!on_sled.data_dir().join("db").exists());
    for target in [&on_sled, &on_postgres] {
        succeeds(target, &["store", "import"], &file).await;
        let refusal = fails(&target.portico(&["store", "import"], &file).await, 1);
        assert!(refusal.contains("already holds data"), "{refusal}");
    }
    let refusal = fails(&source.portico(&["store", "import"], &file).await, 1);
    assert!(refusal.contains("already holds data"), "{refusal}");
}

#[tokio::test]
async fn a_restored_store_serves_only_once_confirmed_and_above_every_version_since_the_export() {
    let mut source = with_one_issuer().await;
    let exported_version = published_version(&source).await;
    source.kill();
    let backup = succeeds(&source, &["store", "export"], b"").await;
    source.restart().await;
    for n in 0..3 {
        source
            .create(
                "/issuers",
                json!({"id": format!("later-{n}"), "issuer": format!("https://{n}.example.com")}),
            )
            .await;
    }
    let later_version = eventually("the later changes to be published", PATIENCE, || async {
        let version = published_version(&source).await;
        (version >= exported_version + 3).then_some(version)
    })
    .await;
    source.kill();

    let mut restored = ControlPlane::stopped(&[]);
    succeeds(&restored, &["store", "import", "--input", "-"], &backup).await;
    let refusal = fails(&restored.portico(&[], b"").await, EXIT_UNCONFIRMED);
    for part in [
        "restored",
        "revoked",
        "GET /admin/v1/audit",
        "confirm-restore",
    ] {
        assert!(refusal.contains(part), "{part}: {refusal}");
    }
    succeeds(&restored, &["store", "confirm-restore"], b"").await;
    restored.restart().await;
    let version = published_version(&restored).await;
    assert!(
        version > later_version,
        "restored at {version}, the old store was at {later_version}"
    );
    // Filters poll with the version they hold: one holding the old store's latest version is
    // answered at once with the restored snapshot.
    let answer = reqwest::Client::new()
        .get(restored.url(&format!("/v1/snapshot?since={later_version}&wait=0")))
        .bearer_auth(DATA_PLANE_TOKEN)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let snapshot: Value = answer.json().await.unwrap();
    assert_eq!(snapshot["version"], version);
    assert_eq!(snapshot["issuers"].as_array().unwrap().len(), 1);
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}
