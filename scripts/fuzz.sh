#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (cargo-fuzz, libFuzzer, nightly) for a bounded time each,
# one after another, starting from a scratch copy of the committed seeds in fuzz/corpus/, then
# prints each target's executions, exec/s, coverage (libFuzzer's cov: edges, ft: features),
# corpus size and crashes. Exits 1 when any target crashed or failed. Not part of
# scripts/test.sh. Needs `scripts/setup.sh --fuzz` once. See docs/fuzzing.md.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]    default: 60 s, every target
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
[ $# -gt 0 ] && shift
case "$seconds" in
  '' | *[!0-9]*) echo "fuzz.sh: SECONDS_PER_TARGET must be a whole number, not $seconds" >&2; exit 64 ;;
esac
if ! command -v cargo-fuzz >/dev/null 2>&1 || ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz.sh: cargo-fuzz or the nightly toolchain is missing: run scripts/setup.sh --fuzz" >&2
  exit 69
fi

say() { printf '==> %s\n' "$*"; }

# Safe Rust throughout (`unsafe_code = "forbid"`), so no sanitizer: it would halve the speed
# and find nothing the borrow checker has not. Optimised, with debug assertions and overflow
# checks, so an arithmetic overflow is a crash as it is in tests.
flags=(-O -a -s none)
cd fuzz
if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo +nightly fuzz list); fi

failed=0
rows=()
for target in "${targets[@]}"; do
  scratch="scratch/$target"
  rm -rf "$scratch" && mkdir -p "$scratch" "artifacts/$target"
  cp corpus/"$target"/* "$scratch"/
  seeds=$(find "corpus/$target" -type f | wc -l)
  log="scratch/$target.log"
  say "building and fuzzing $target for ${seconds}s ($seeds seeds; log in fuzz/$log)"
  before=$(find "artifacts/$target" -type f | wc -l)
  # Only this target needs the control plane, the slowest crate to build.
  features=()
  [ "$target" = control_plane_bodies ] && features=(--features control-plane)
  status=0
  cargo +nightly fuzz run "${flags[@]}" "${features[@]}" "$target" "$scratch" -- \
    -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=4096 \
    >"$log" 2>&1 || status=$?
  stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
  field() { sed -n "s/.* $1: \([^ ]*\).*/\1/p" <<<"$last"; }
  crashes=$(( $(find "artifacts/$target" -type f | wc -l) - before ))
  if [ "$status" -ne 0 ]; then
    failed=1
    [ "$crashes" -eq 0 ] && crashes="exit $status"
    grep -E '^(panicked|thread .* panicked)|^SUMMARY|^artifact_prefix|Test unit written' "$log" | sed 's/^/    /' || true
  fi
  rows+=("$(printf '%-22s %12s %8s %7s %7s %6s/%-6s %s' "$target" \
    "$(stat number_of_executed_units)" "$(stat average_exec_per_sec)" \
    "$(field cov)" "$(field ft)" "$seeds" "$(field corp | cut -d/ -f1)" "$crashes")")
done

printf '\n%-22s %12s %8s %7s %7s %13s %s\n' target executions exec/s cov ft seeds/corpus crashes
printf '%s\n' "${rows[@]}"
exit "$failed"
