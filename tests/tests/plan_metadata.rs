//! Plan metadata upstream (issue 9, item 5), end to end: an API names a header filled from the
//! granting policy's metadata; the upstream receives the policy's value, and a client-sent copy
//! of the header never reaches it. Waits are bounded polls (15 s).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portico_core::alg::Algorithm;
use portico_core::testing::TestKey;
use portico_tests::{ControlPlane, EchoUpstream, Envoy, EnvoyConfig, KeyServer};
use serde_json::json;

const BOUND: Duration = Duration::from_secs(15);

fn token(issuer: &str, pol: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    TestKey::rsa_a().token(
        Algorithm::RS256,
        &json!({"iss": issuer, "aud": "https://api.portico.test", "client_id": "app",
                "pol": pol, "exp": now + 600, "iat": now}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_granting_policy_s_plan_reaches_the_upstream_and_client_copies_do_not() {
    let keys = KeyServer::start(&[&TestKey::rsa_a()]).await;
    let control_plane = ControlPlane::start(&[]).await;
    let upstream = EchoUpstream::start().await;
    let config = EnvoyConfig::synced(control_plane.addr, upstream.addr);
    let envoy = Envoy::start(&config).await;
    let cp = &control_plane;
    cp.create("/issuers", json!({"id": "idp", "issuer": keys.issuer()}))
        .await;
    cp.create(
        "/apis",
        json!({"id": "orders", "name": "Orders", "listen_path": "/orders", "issuers": ["idp"],
               "audiences": ["https://api.portico.test"], "identity_claims": ["client_id"],
               "metadata_headers": {"x-plan": "{policy.metadata.plan}"}}),
    )
    .await;
    cp.create(
        "/policies",
        json!({"id": "gold", "name": "Gold", "access_rights": [{"api": "orders"}],
               "metadata": {"plan": "gold"}}),
    )
    .await;
    cp.create(
        "/policies",
        json!({"id": "plain", "name": "Plain", "access_rights": [{"api": "orders"}]}),
    )
    .await;
    let gold = token(&keys.issuer(), "gold");
    let echoed = envoy
        .await_outcome(
            "the gold token is allowed",
            BOUND,
            ("/orders/1", Some(&gold)),
            (200, None),
        )
        .await;
    assert_eq!(echoed["headers"]["x-plan"], "gold");

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let forged = |token: String| {
        http.get(envoy.url("/orders/1"))
            .header("connection", "close")
            .header("x-plan", "platinum")
            .bearer_auth(token)
            .send()
    };
    let echoed: serde_json::Value = forged(gold.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(
        echoed["headers"]["x-plan"], "gold",
        "the client's copy is replaced"
    );
    let echoed: serde_json::Value = forged(token(&keys.issuer(), "plain"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        echoed["headers"].get("x-plan").is_none(),
        "a policy without the key sets nothing, and the client's copy is removed: {echoed}"
    );
}
