#!/usr/bin/env bash
# Builds Portico and runs the demo: the echo upstream on 127.0.0.1:8081 and Envoy with the
# filter on 127.0.0.1:10000 (admin on 127.0.0.1:9901), protecting /orders with the static
# configuration of envoy/static-demo.yaml. Prints what to curl; Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
say() { printf '==> %s\n' "$*"; }

say "building the filter and the demo tools"
cargo build --quiet -p portico-filter --target wasm32-wasip1 --profile wasm-release
cargo build --quiet --release -p portico-tests --bin portico-echo --bin portico-token

envoy_bin=$(ls .venv/lib/python3*/site-packages/envoy/_bin/envoy)
run_dir=.demo
mkdir -p "$run_dir"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

target/release/portico-echo 127.0.0.1:8081 >"$run_dir/echo.log" 2>&1 &
pids+=($!)
"$envoy_bin" -c envoy/static-demo.yaml --disable-hot-restart --concurrency 2 \
  --component-log-level wasm:info >"$run_dir/envoy.log" 2>&1 &
pids+=($!)

for _ in $(seq 100); do
  curl -sf http://127.0.0.1:9901/ready >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf http://127.0.0.1:9901/ready >/dev/null || { echo "Envoy did not start; see $run_dir/envoy.log" >&2; exit 1; }

token=$(target/release/portico-token --client-id demo-client)
cat <<EOT

Portico demo is running (logs in $run_dir/).

  # A valid token: 200, and the upstream sees x-portico-client-id: demo-client
  curl -s http://127.0.0.1:10000/orders/42 -H "Authorization: Bearer $token"

  # No token: 401 missing_token
  curl -si http://127.0.0.1:10000/orders/42

  # A token signed by a key the issuer never published: 401 unknown_kid
  curl -si http://127.0.0.1:10000/orders/42 -H "Authorization: Bearer \$(target/release/portico-token --key rsa-b)"

  # Outside /orders: passes through untouched
  curl -s http://127.0.0.1:10000/public

  # More tokens: target/release/portico-token --help
  # Filter counters: curl -s http://127.0.0.1:9901/stats | grep portico

Press Ctrl-C to stop.
EOT
wait
