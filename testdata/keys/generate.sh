#!/usr/bin/env bash
# Regenerates the test keys: PKCS#8 DER private keys read by portico-core's `test-util`
# feature, so tokens in tests and benchmarks are signed with fixed, committed keys.
# Never use these keys for anything but tests.
set -euo pipefail
cd "$(dirname "$0")"

gen() { # name, openssl genpkey arguments...
  local name=$1; shift
  # `genpkey -outform DER` writes some key types in their traditional form; `pkcs8 -topk8`
  # makes every file a PKCS#8 PrivateKeyInfo.
  openssl genpkey "$@" 2>/dev/null |
    openssl pkcs8 -topk8 -nocrypt -outform DER -out "$name.pk8.der"
  chmod 644 "$name.pk8.der"
}

gen rsa-2048-a -algorithm RSA -pkeyopt rsa_keygen_bits:2048
gen rsa-2048-b -algorithm RSA -pkeyopt rsa_keygen_bits:2048
gen rsa-1024 -algorithm RSA -pkeyopt rsa_keygen_bits:1024
gen p256-a -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve
gen p256-b -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve
gen p384-a -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -pkeyopt ec_param_enc:named_curve
gen ed25519-a -algorithm ED25519
