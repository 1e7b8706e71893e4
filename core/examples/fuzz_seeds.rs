//! Writes the seed corpora of the fuzz targets in `fuzz/` that need core to make them: signed
//! tokens, JWK Sets, and snapshots in both encodings (built from the plugin configurations that
//! `fuzz/seeds.py` extracted from `envoy/*.yaml`, and from `testing::large_snapshot`).
//!
//! Run with `python3 fuzz/seeds.py` (which calls this example), or alone as
//! `cargo run -p portico-core --example fuzz_seeds -- fuzz/corpus`.

#![allow(
    clippy::expect_used,
    reason = "a seed generator: a broken fixture should stop the run"
)]

use std::fs;
use std::path::{Path, PathBuf};

use portico_core::alg::Algorithm;
use portico_core::snapshot::Snapshot;
use portico_core::testing::{TestKey, hostile_tokens, jwks, large_snapshot};
use serde_json::{Value, json};

const ISSUER: &str = "https://idp.example.com";
const HMAC_ISSUER: &str = "https://hs.example.com";
/// The fuzz target `token`'s clock.
const NOW: u64 = 1_800_000_000;

/// The request targets of the interop tests (`tests/tests/interop.rs`) and routing's docs.
const PATHS: &[&str] = &[
    "/orders/1",
    "/orders;jsessionid=0/1",
    "/Orders/42",
    "/%4Frders/42",
    "/%4frders/42",
    "/orders;/42",
    "/orders%20",
    "/orders.json",
    "/orders.",
    "/orders%3Bjsessionid=0/1",
    "/x%2F..%2Forders/1",
    "/x/..;/orders/1",
    "/%EF%BD%8F%EF%BD%92%EF%BD%84%EF%BD%85%EF%BD%92%EF%BD%93/1",
    "/orders%00.json",
    "/ordersx/1",
    "/public//x%41",
    "/orders/1?access_token=&x=1",
    "/web/items?access_token=abc&x=1#frag",
    "/a\\b/%252e%252e/c",
    "/%E2%84%AA/%C5%BF",
];

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("create the corpus directory");
    fs::write(dir.join(name), bytes).expect("write a seed");
}

fn main() {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );

    // token: mode byte 0 then the token; mode 1 then header JSON, newline, claims JSON.
    let dir = root.join("token");
    let claims = json!({"iss": ISSUER, "sub": "client-1", "client_id": "client-1",
                        "aud": "api", "exp": NOW + 300, "iat": NOW - 10});
    let signed = [
        ("rs256", TestKey::rsa_a().token(Algorithm::RS256, &claims)),
        ("ps256", TestKey::rsa_a().token(Algorithm::PS256, &claims)),
        ("es256", TestKey::p256_a().token(Algorithm::ES256, &claims)),
        (
            "eddsa",
            TestKey::ed25519_a().token(Algorithm::EdDSA, &claims),
        ),
    ];
    for (name, token) in signed {
        write(
            &dir,
            &format!("valid-{name}"),
            &[&[0], token.as_bytes()].concat(),
        );
        write(
            &dir,
            &format!("valid-{name}-aud"),
            &[&[2], token.as_bytes()].concat(),
        );
    }
    for (index, hostile) in hostile_tokens(ISSUER, NOW).iter().enumerate() {
        write(
            &dir,
            &format!("hostile-{index:02}"),
            &[&[0], hostile.token.as_bytes()].concat(),
        );
    }
    let hmac_claims = [
        json!({"iss": HMAC_ISSUER, "sub": "c", "aud": ["api", "x"], "exp": NOW + 60, "nbf": NOW - 1, "iat": NOW}),
        json!({"iss": HMAC_ISSUER, "exp": (NOW as f64) + 0.5}),
        json!({"iss": HMAC_ISSUER, "exp": NOW - 61}),
    ];
    for (index, claims) in hmac_claims.iter().enumerate() {
        let header = json!({"alg": "HS256", "kid": "hs", "typ": "JWT"});
        let body = format!("{header}\n{claims}");
        write(
            &dir,
            &format!("hs256-{index}"),
            &[&[1], body.as_bytes()].concat(),
        );
        write(
            &dir,
            &format!("hs256-{index}-aud"),
            &[&[3], body.as_bytes()].concat(),
        );
    }

    // jwk_set: the test keys' public JWKs, together and one by one.
    let dir = root.join("jwk_set");
    let keys = [
        TestKey::rsa_a(),
        TestKey::rsa_1024(),
        TestKey::p256_a(),
        TestKey::p384_a(),
        TestKey::ed25519_a(),
        TestKey::hmac("oct", 32),
    ];
    write(
        &dir,
        "all",
        jwks(&keys.iter().collect::<Vec<_>>())
            .to_string()
            .as_bytes(),
    );
    for key in &keys {
        let mut jwk = key.public_jwk();
        write(
            &dir,
            &format!("one-{}", key.kid()),
            json!({"keys": [jwk]}).to_string().as_bytes(),
        );
        jwk["alg"] = json!("RS256");
        write(
            &dir,
            &format!("alg-{}", key.kid()),
            json!({"keys": [jwk]}).to_string().as_bytes(),
        );
    }

    // snapshot_binary (postcard payload, without the magic prefix the target adds) and
    // snapshot_json: every static plugin config's snapshot, and a small generated one.
    let mut snapshots = vec![("large".to_owned(), large_snapshot(3, 3, 3))];
    let configs =
        fs::read_dir(root.join("plugin_config")).map(|dir| dir.flatten().collect::<Vec<_>>());
    for entry in configs.unwrap_or_default() {
        let config: Value =
            serde_json::from_slice(&fs::read(entry.path()).expect("read a plugin config"))
                .expect("a plugin config seed is JSON");
        if let Some(snapshot) = config.get("snapshot") {
            let snapshot: Snapshot =
                serde_json::from_value(snapshot.clone()).expect("a shipped snapshot decodes");
            snapshots.push((
                entry
                    .path()
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                snapshot,
            ));
        }
    }
    for (name, snapshot) in &snapshots {
        let binary = snapshot.to_binary().expect("a snapshot encodes");
        write(&root.join("snapshot_binary"), name, &binary[4..]);
        let json = serde_json::to_vec_pretty(snapshot).expect("a snapshot encodes");
        write(&root.join("snapshot_json"), name, &json);
    }

    // path_and_routing: a target, a host, then the interop tests' listen paths.
    let dir = root.join("path_and_routing");
    for (index, path) in PATHS.iter().enumerate() {
        let seed = format!(
            "{path}\napi.example.com\n/orders\n/web\n!/Public\t*.example.com\n/orders/\tapi.example.com"
        );
        write(&dir, &format!("path-{index:02}"), seed.as_bytes());
    }
}
