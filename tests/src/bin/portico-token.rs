//! Mints demo tokens with the committed test keys (`testdata/keys/`), for the static demo and
//! benchmarks. Never use these keys for anything but demos and tests.
//!
//! Usage:
//!   portico-token [--key rsa-a|rsa-b|ec-a|ec-b] [--issuer URL] [--client-id ID] [--audience AUD]
//!                 [--policy ID]... [--ttl SECONDS]
//!   portico-token jwks      prints the public keys as a JWKS document

use std::time::{SystemTime, UNIX_EPOCH};

use portico_core::alg::Algorithm;
use portico_core::testing::{TestKey, jwks};
use serde_json::json;

const USAGE: &str = "usage: portico-token [jwks] [--key rsa-a|rsa-b|ec-a|ec-b] [--issuer URL] \
                     [--client-id ID] [--audience AUD] [--policy ID]... [--ttl SECONDS]";

fn main() {
    match run(std::env::args().skip(1).collect()) {
        Ok(output) => println!("{output}"),
        Err(message) => {
            eprintln!("portico-token: {message}\n{USAGE}");
            std::process::exit(64);
        }
    }
}

fn run(args: Vec<String>) -> Result<String, String> {
    if args.iter().any(|arg| arg == "--help" || arg == "-h") {
        return Ok(USAGE.to_owned());
    }
    if args.first().map(String::as_str) == Some("jwks") {
        let keys = [
            TestKey::rsa_a(),
            TestKey::rsa_b(),
            TestKey::p256_a(),
            TestKey::p256_b(),
        ];
        return Ok(jwks(&keys.iter().collect::<Vec<_>>()).to_string());
    }
    let mut key = TestKey::rsa_a();
    let mut alg = Algorithm::RS256;
    let mut issuer = "https://demo.portico.local".to_owned();
    let mut client_id = "demo-client".to_owned();
    let mut audience = "https://api.portico.local".to_owned();
    let mut policies = Vec::new();
    let mut ttl: u64 = 3600;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--key" => {
                (key, alg) = match value()?.as_str() {
                    "rsa-a" => (TestKey::rsa_a(), Algorithm::RS256),
                    "rsa-b" => (TestKey::rsa_b(), Algorithm::RS256),
                    "ec-a" => (TestKey::p256_a(), Algorithm::ES256),
                    "ec-b" => (TestKey::p256_b(), Algorithm::ES256),
                    other => return Err(format!("unknown key `{other}`")),
                }
            }
            "--issuer" => issuer = value()?,
            "--client-id" => client_id = value()?,
            "--audience" => audience = value()?,
            "--policy" => policies.push(value()?),
            "--ttl" => {
                ttl = value()?
                    .parse()
                    .map_err(|_| "--ttl takes seconds".to_owned())?;
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let mut claims = json!({"iss": issuer, "aud": audience, "sub": client_id, "client_id": client_id, "iat": now, "exp": now + ttl});
    if !policies.is_empty() {
        claims["pol"] = json!(policies);
    }
    Ok(key.token(alg, &claims))
}
