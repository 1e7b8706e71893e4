#!/usr/bin/env bash
# Builds everything in release mode and runs the benchmarks (separate from the tests, which
# never assert on time):
#   1. portico-bench: Portico's filter against Envoy's jwt_authn (with and without its cache),
#      no filter and the proxy-wasm floor (bench/empty-filter), with wrk, in interleaved rounds,
#      with the Envoy's CPU time per request; writes target/bench/results.md.
#   2. portico-sync-latency: change-to-enforcement latency over 100 changes.
#   3. portico-login-flood: 150 concurrent portal log-ins against the control plane (memory
#      growth, and the latency of a real log-in and an admin call meanwhile).
#   4. portico-forged-memory: Envoy's memory under 240 s of distinct forged tokens.
#   5. portico-delta-scale: the filter syncing 20 registrations on the 100,000-client snapshot,
#      as whole snapshots and as deltas (bytes, apply time, Envoy CPU, VM memory).
#   6. portico-cp-scale: the control plane with 100,000 OAuth clients, 1,000 APIs and 1,000
#      policies (publication time, registration and admin-write latency, memory, bytes sent per
#      change with and without deltas); about an hour.
#   7. portico-fleet: 1,000 filters long-polling one control plane on sled, then two replicas on
#      one throwaway PostgreSQL (needs scripts/setup.sh's postgresql), each with whole snapshots
#      and with deltas, 100 changes each (change-to-every-filter latency, each control plane's
#      CPU, memory and connections, PostgreSQL's CPU, bytes per change); a minute or two each.
# Arguments are passed to portico-bench (e.g. --rounds 5 --seconds 10).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --bench
say() { printf '==> %s\n' "$*"; }

say "building (release)"
cargo build --quiet -p portico-filter -p portico-empty-filter --target wasm32-wasip1 --profile wasm-release
cargo build --quiet --release -p portico-control-plane -p portico-tests \
  --bin portico --bin portico-bench --bin portico-sync-latency --bin portico-login-flood \
  --bin portico-forged-memory --bin portico-delta-scale --bin portico-cp-scale --bin portico-fleet

say "machine"
echo "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
grep -m1 'model name' /proc/cpuinfo || true

say "load benchmark"
target/release/portico-bench "$@"

say "change-to-enforcement latency"
target/release/portico-sync-latency 100

say "log-in flood"
target/release/portico-login-flood 150

say "memory under distinct forged tokens"
target/release/portico-forged-memory 240

say "filter deltas at scale"
target/release/portico-delta-scale 100000 20

say "control plane at scale"
target/release/portico-cp-scale 100000

# A socket per filter in the tool and in the control planes it starts (which inherit the limit):
# raise the soft limit on open files, within the hard one, for these steps only.
(
  if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 4096 ]; then
    ulimit -n 4096 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  fi
  say "a fleet of 1,000 filters long-polling one control plane (sled), whole snapshots"
  target/release/portico-fleet --filters 1000 --changes 100
  say "a fleet of 1,000 filters long-polling one control plane (sled), deltas"
  target/release/portico-fleet --filters 1000 --changes 100 --deltas
  say "a fleet of 1,000 filters long-polling two replicas on PostgreSQL, whole snapshots"
  target/release/portico-fleet --filters 1000 --changes 100 --replicas 2
  say "a fleet of 1,000 filters long-polling two replicas on PostgreSQL, deltas"
  target/release/portico-fleet --filters 1000 --changes 100 --replicas 2 --deltas
)
