//! Checks shared by Portico's fuzz targets (see `docs/fuzzing.md`).

use portico_core::snapshot::{CompiledSnapshot, Snapshot};

/// What must hold for any snapshot that decoded, from either encoding: it re-encodes in both
/// encodings and each decodes back to the same value, and compiling it either fails with an
/// error naming where, or yields lookups that find every API and policy by its id.
pub fn check_decoded_snapshot(snapshot: Snapshot) {
    let binary = snapshot
        .to_binary()
        .expect("a decoded snapshot encodes to binary");
    let from_binary = Snapshot::decode(&binary).expect("a re-encoded binary snapshot decodes");
    assert_eq!(
        from_binary, snapshot,
        "binary round trip changed the snapshot"
    );

    let json = serde_json::to_vec(&snapshot).expect("a decoded snapshot encodes to JSON");
    let from_json = Snapshot::decode(&json).expect("a re-encoded JSON snapshot decodes");
    assert_eq!(from_json, snapshot, "JSON round trip changed the snapshot");

    match CompiledSnapshot::compile(snapshot.clone()) {
        Ok(compiled) => {
            assert_eq!(compiled.version, snapshot.version);
            assert_eq!(compiled.apis.len(), snapshot.apis.len());
            for (index, api) in snapshot.apis.iter().enumerate() {
                assert_eq!(
                    compiled.api(&api.id),
                    Some(index),
                    "api `{}` not found",
                    api.id
                );
                // An API's own listen path routes to it or to another API at the same key
                // (on other hosts); never to nothing when the API accepts any host.
                if api.hosts.is_empty() {
                    assert!(
                        compiled.route(api.listen_path.as_str(), None).is_some(),
                        "listen path `{}` of api `{}` routes nowhere",
                        api.listen_path,
                        api.id
                    );
                }
            }
            for (index, policy) in snapshot.policies.iter().enumerate() {
                assert_eq!(compiled.policy(&policy.id), Some(index));
            }
        }
        Err(error) => {
            assert!(
                !error.message.is_empty(),
                "an empty snapshot error at {}",
                error.path
            );
        }
    }
}
