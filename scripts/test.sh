#!/usr/bin/env bash
# Runs every check and test of Portico, installing what they need first (scripts/setup.sh):
# formatting, clippy (native and wasm32-wasip1), the filter build, then all tests, including
# the end-to-end tests against real Envoy.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

# A clean CI build gains nothing from incremental compilation, whose caches would roughly
# double the target directory.
if [[ "${CI:-}" == "true" ]]; then
  export CARGO_INCREMENTAL=0
fi

say() { printf '==> %s\n' "$*"; }

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (native)"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "cargo clippy (wasm32-wasip1: core and filter)"
cargo clippy -p portico-core -p portico-filter --target wasm32-wasip1 --locked -- -D warnings

say "building the filter (wasm32-wasip1, wasm-release)"
cargo build -p portico-filter --target wasm32-wasip1 --profile wasm-release --locked

say "building the tests"
cargo test --workspace --locked --no-run

say "running the tests"
cargo test --workspace --locked
