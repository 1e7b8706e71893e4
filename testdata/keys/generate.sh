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

# Self-signed X.509 certificates (DER) for the RSA keys, published as a JWK's `x5c` in tests of
# key selection by thumbprint (`x5t`, `x5t#S256`, RFC 7515 §4.1.7–4.1.8). The test expectations
# for their thumbprints are printed by `thumbprints` below, from OpenSSL, not from Portico.
cert() { # key name, subject common name
  openssl req -new -x509 -key <(openssl pkey -inform DER -in "$1.pk8.der") -subj "/CN=$2" \
    -days 36500 -outform DER -out "$1.cert.der"
  chmod 644 "$1.cert.der"
}
cert rsa-2048-a rsa-a
cert rsa-2048-b rsa-b

thumbprints() { # certificate name: prints x5t and x5t#S256 (base64url, unpadded)
  for digest in sha1 sha256; do
    printf '%s %s %s\n' "$1" "$digest" \
      "$(openssl dgst -"$digest" -binary "$1.cert.der" | basenc --base64url | tr -d '=')"
  done
}
thumbprints rsa-2048-a
thumbprints rsa-2048-b
